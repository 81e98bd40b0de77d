//! Validated names: node names are DNS labels, so they can appear in certificates, namespaces and host names.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A node's name: 1-40 characters of lowercase ASCII letters, digits and '-', starting with a letter.
///
/// The limit of 40 keeps `hafen-<node>` network-namespace and interface names within Linux limits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

/// Why a string is not a valid node name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node name {name:?}: {reason}")]
pub struct InvalidName {
    pub name: String,
    pub reason: &'static str,
}

impl NodeName {
    pub const MAX_LEN: usize = 40;

    pub fn new(name: impl Into<String>) -> Result<Self, InvalidName> {
        let name = name.into();
        let fail = |reason| {
            Err(InvalidName {
                name: name.clone(),
                reason,
            })
        };
        if name.is_empty() {
            return fail("it is empty");
        }
        if name.len() > Self::MAX_LEN {
            return fail("it is longer than 40 characters");
        }
        if !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            return fail("it must start with a lowercase letter");
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return fail("only lowercase letters, digits and '-' are allowed");
        }
        if name.ends_with('-') {
            return fail("it must not end with '-'");
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeName {
    type Error = InvalidName;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<NodeName> for String {
    fn from(value: NodeName) -> Self {
        value.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_dns_labels_and_refuses_the_rest_naming_the_reason() {
        assert!(NodeName::new("node-1").is_ok());
        for (bad, reason) in [
            ("", "empty"),
            ("1node", "start with"),
            ("Node", "start with"),
            ("no_de", "only lowercase"),
            ("node-", "end with"),
        ] {
            let error = NodeName::new(bad).unwrap_err().to_string();
            assert!(error.contains(reason), "{bad:?}: {error}");
        }
        assert!(NodeName::new("a".repeat(41)).is_err());
    }
}
