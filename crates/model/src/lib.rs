//! hafen's vocabulary: replicated cluster state, the commands that change it, and their validation (pure, no I/O).
//!
//! Everything here is deterministic: time comes in with each command ([`Envelope::now_ms`]),
//! maps are `BTreeMap`s, and [`ClusterState::apply`] either applies a command whole or
//! refuses it with a [`Rejection`] and leaves the state untouched.

pub mod command;
pub mod config;
pub mod fencing;
pub mod membership;
pub mod names;
pub mod placement;
pub mod property;
pub mod resource;
pub mod state;
pub mod validate;

pub use command::{ApplyResult, Command, Envelope, Outcome, Rejection};
pub use config::{ClusterConfig, ConfigChange, ConfigError};
pub use names::NodeName;
pub use property::{PROPERTIES, PropertyValue};
pub use state::{ClusterIdentity, ClusterState, EventRecord, NodeMode, NodeRecord, NodeRole};
