//! The versioned cluster configuration: what operators declare (properties now; resources and constraints later).
//!
//! Membership (nodes, tokens, credentials) is deliberately not part of it: rolling the
//! configuration back must never evict a host or revive a used join token.

use crate::property::{self, PropertyError, PropertyValue};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The declarative configuration, versioned by the state's epoch.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterConfig {
    /// Properties set explicitly; a missing key means its default.
    pub properties: BTreeMap<String, PropertyValue>,
}

/// One validated change of the configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum ConfigChange {
    SetProperty { key: String, value: String },
    UnsetProperty { key: String },
}

impl ConfigChange {
    /// A one-line description for history listings.
    pub fn summary(&self) -> String {
        match self {
            ConfigChange::SetProperty { key, value } => format!("set {key}={value}"),
            ConfigChange::UnsetProperty { key } => format!("unset {key}"),
        }
    }
}

impl ClusterConfig {
    /// The effective value of a property: the one set, else its default.
    pub fn property(&self, key: &str) -> Result<PropertyValue, PropertyError> {
        let def = property::lookup(key)?;
        Ok(self
            .properties
            .get(key)
            .cloned()
            .unwrap_or_else(|| property::default_value(def)))
    }

    /// The effective value of an integer property (panics on a non-integer key: that is a bug).
    pub fn integer(&self, key: &str) -> i64 {
        match self.property(key) {
            Ok(PropertyValue::Integer(value)) => value,
            other => panic!("property {key} is not an integer: {other:?}"),
        }
    }

    /// The configuration with `change` applied, or the reason it is refused.
    pub fn with_change(&self, change: &ConfigChange) -> Result<ClusterConfig, PropertyError> {
        let mut next = self.clone();
        match change {
            ConfigChange::SetProperty { key, value } => {
                let parsed = property::parse(key, value)?;
                next.properties.insert(key.clone(), parsed);
            }
            ConfigChange::UnsetProperty { key } => {
                property::lookup(key)?;
                next.properties.remove(key);
            }
        }
        Ok(next)
    }

    /// Flattens the configuration to `path -> value` lines, the unit of `config diff`.
    pub fn flatten(&self) -> BTreeMap<String, String> {
        let value = serde_json::to_value(self).expect("configuration serializes");
        let mut lines = BTreeMap::new();
        flatten_into(&mut lines, String::new(), &value);
        lines
    }
}

fn flatten_into(lines: &mut BTreeMap<String, String>, prefix: String, value: &serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                flatten_into(lines, path, child);
            }
        }
        serde_json::Value::Array(items) => {
            for (index, child) in items.iter().enumerate() {
                flatten_into(lines, format!("{prefix}[{index}]"), child);
            }
        }
        serde_json::Value::String(text) => {
            lines.insert(prefix, text.clone());
        }
        other => {
            lines.insert(prefix, other.to_string());
        }
    }
}

/// One line of a configuration diff.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffLine {
    pub path: String,
    pub before: Option<String>,
    pub after: Option<String>,
}

/// What changed between two configurations, path by path in sorted order.
pub fn diff(before: &ClusterConfig, after: &ClusterConfig) -> Vec<DiffLine> {
    let left = before.flatten();
    let right = after.flatten();
    let mut paths: Vec<&String> = left.keys().chain(right.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter(|path| left.get(*path) != right.get(*path))
        .map(|path| DiffLine {
            path: path.clone(),
            before: left.get(path).cloned(),
            after: right.get(path).cloned(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_each_changed_path_once() {
        let base = ClusterConfig::default();
        let changed = base
            .with_change(&ConfigChange::SetProperty {
                key: "migration-limit".into(),
                value: "4".into(),
            })
            .unwrap();
        let lines = diff(&base, &changed);
        assert_eq!(
            lines,
            vec![DiffLine {
                path: "properties.migration-limit".into(),
                before: None,
                after: Some("4".into())
            }]
        );
        assert!(diff(&changed, &changed).is_empty());
    }
}
