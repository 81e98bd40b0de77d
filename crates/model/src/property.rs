//! Cluster properties (like `pcs property set`): a closed registry of known keys, each with a type, a default and bounds.

use serde::{Deserialize, Serialize};
use std::fmt;

/// A property's value after validation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PropertyValue {
    Bool(bool),
    Integer(i64),
    Text(String),
}

impl fmt::Display for PropertyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PropertyValue::Bool(value) => write!(f, "{value}"),
            PropertyValue::Integer(value) => write!(f, "{value}"),
            PropertyValue::Text(value) => f.write_str(value),
        }
    }
}

/// The type of a property and the values it admits.
#[derive(Debug, Clone, Copy)]
pub enum PropertyKind {
    Bool,
    /// An integer within inclusive bounds.
    Integer {
        min: i64,
        max: i64,
    },
    /// An integer from a fixed set.
    OneOfInteger(&'static [i64]),
    /// A string from a fixed set.
    OneOf(&'static [&'static str]),
    /// A free string of at most 200 characters.
    Text,
}

/// One known cluster property.
#[derive(Debug, Clone, Copy)]
pub struct PropertyDef {
    pub key: &'static str,
    pub kind: PropertyKind,
    pub default: &'static str,
    pub description: &'static str,
}

/// Every property the cluster knows; anything else is refused by name.
pub const PROPERTIES: &[PropertyDef] = &[
    PropertyDef {
        key: "cluster-name",
        kind: PropertyKind::Text,
        default: "hafen",
        description: "the cluster's display name",
    },
    PropertyDef {
        key: "voter-count",
        kind: PropertyKind::OneOfInteger(&[3, 5]),
        default: "3",
        description: "how many members hold a Raft vote (witnesses count); the others are learners",
    },
    PropertyDef {
        key: "stonith-enabled",
        kind: PropertyKind::Bool,
        default: "true",
        description: "whether unresponsive hosts are fenced; when false nothing is fenced and nothing of an unresponsive host recovers",
    },
    PropertyDef {
        key: "unsafe-recovery-without-fencing",
        kind: PropertyKind::Bool,
        default: "false",
        description: "UNSAFE, for testing the fault checker only: an unresponsive host counts as fenced without any confirmation, so its resources may run twice",
    },
    PropertyDef {
        key: "no-quorum-policy",
        kind: PropertyKind::OneOf(&["stop", "freeze"]),
        default: "stop",
        description: "what a partition without quorum does with its resources",
    },
    PropertyDef {
        key: "maintenance-mode",
        kind: PropertyKind::Bool,
        default: "false",
        description: "when true the cluster observes but neither starts nor stops anything",
    },
    PropertyDef {
        key: "symmetric-cluster",
        kind: PropertyKind::Bool,
        default: "true",
        description: "whether resources may run anywhere unless a constraint says otherwise",
    },
    PropertyDef {
        key: "default-resource-stickiness",
        kind: PropertyKind::Integer {
            min: -1_000_000,
            max: 1_000_000,
        },
        default: "1",
        description: "preference of a resource to stay where it runs (1, as pcs sets, so equal scores never shuffle)",
    },
    PropertyDef {
        key: "placement-strategy",
        kind: PropertyKind::OneOf(&["default", "utilization", "balanced", "minimal"]),
        default: "balanced",
        description: "how utilization steers placement",
    },
    PropertyDef {
        key: "migration-limit",
        kind: PropertyKind::Integer { min: 1, max: 64 },
        default: "2",
        description: "live migrations at a time involving one host, as source or destination (Pacemaker's per-node limit)",
    },
    PropertyDef {
        key: "start-parallelism",
        kind: PropertyKind::Integer { min: 1, max: 1024 },
        default: "32",
        description: "resource starts run in parallel at most",
    },
    PropertyDef {
        key: "config-history-limit",
        kind: PropertyKind::Integer {
            min: 10,
            max: 10_000,
        },
        default: "200",
        description: "configuration versions kept for history, diff and rollback",
    },
];

/// Why a property assignment is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
pub enum PropertyError {
    #[error("unknown property {key:?} (known: {known})")]
    Unknown { key: String, known: String },
    #[error("bad value {value:?} for property {key:?}: {reason}")]
    BadValue {
        key: String,
        value: String,
        reason: String,
    },
}

pub fn lookup(key: &str) -> Result<&'static PropertyDef, PropertyError> {
    PROPERTIES
        .iter()
        .find(|def| def.key == key)
        .ok_or_else(|| PropertyError::Unknown {
            key: key.to_string(),
            known: PROPERTIES
                .iter()
                .map(|def| def.key)
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Parses `value` for property `key`, naming the key and the reason on failure.
pub fn parse(key: &str, value: &str) -> Result<PropertyValue, PropertyError> {
    let def = lookup(key)?;
    let bad = |reason: String| PropertyError::BadValue {
        key: key.to_string(),
        value: value.to_string(),
        reason,
    };
    match def.kind {
        PropertyKind::Bool => match value {
            "true" | "yes" | "on" | "1" => Ok(PropertyValue::Bool(true)),
            "false" | "no" | "off" | "0" => Ok(PropertyValue::Bool(false)),
            _ => Err(bad("expected true or false".to_string())),
        },
        PropertyKind::Integer { min, max } => {
            let number = parse_integer(value).map_err(bad)?;
            if number < min || number > max {
                return Err(bad(format!("must be between {min} and {max}")));
            }
            Ok(PropertyValue::Integer(number))
        }
        PropertyKind::OneOfInteger(allowed) => {
            let number = parse_integer(value).map_err(bad)?;
            if !allowed.contains(&number) {
                let list: Vec<String> = allowed.iter().map(i64::to_string).collect();
                return Err(bad(format!("must be one of {}", list.join(", "))));
            }
            Ok(PropertyValue::Integer(number))
        }
        PropertyKind::OneOf(allowed) => {
            if !allowed.contains(&value) {
                return Err(bad(format!("must be one of {}", allowed.join(", "))));
            }
            Ok(PropertyValue::Text(value.to_string()))
        }
        PropertyKind::Text => {
            if value.is_empty() || value.len() > 200 || value.chars().any(char::is_control) {
                return Err(bad(
                    "must be 1-200 characters without control characters".to_string()
                ));
            }
            Ok(PropertyValue::Text(value.to_string()))
        }
    }
}

fn parse_integer(value: &str) -> Result<i64, String> {
    match value {
        "INFINITY" | "+INFINITY" => Ok(1_000_000),
        "-INFINITY" => Ok(-1_000_000),
        _ => value
            .parse::<i64>()
            .map_err(|_| "expected an integer".to_string()),
    }
}

/// The default value of a known property.
pub fn default_value(def: &PropertyDef) -> PropertyValue {
    parse(def.key, def.default).expect("every property default parses")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_is_valid_for_its_own_property() {
        for def in PROPERTIES {
            parse(def.key, def.default).unwrap_or_else(|error| panic!("{}: {error}", def.key));
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused_naming_the_key() {
        let error = parse("stonith-enable", "true").unwrap_err().to_string();
        assert!(
            error.contains("unknown property \"stonith-enable\""),
            "{error}"
        );
        let error = parse("voter-count", "4").unwrap_err().to_string();
        assert!(
            error.contains("voter-count") && error.contains("3, 5"),
            "{error}"
        );
        let error = parse("stonith-enabled", "maybe").unwrap_err().to_string();
        assert!(error.contains("stonith-enabled"), "{error}");
        assert_eq!(
            parse("default-resource-stickiness", "INFINITY").unwrap(),
            PropertyValue::Integer(1_000_000)
        );
    }
}
