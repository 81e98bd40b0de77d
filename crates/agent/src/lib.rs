//! The node agent and the leader's resource orchestrator.
//!
//! - [`local::Agent`] runs on every node: it turns model VM configurations into driver
//!   specs and drives the local hypervisor (start, stop, kill, status, migration halves,
//!   volumes). It refuses work for an assignment older than one it has seen, and starts
//!   nothing without a [`lease::Lease`]; when the lease lapses it self-fences.
//! - [`orchestrator::Orchestrator`] runs on the leader: it commits each step of a VM's
//!   lifecycle and asks the right node's agent to perform it, over mTLS.

pub mod capacity;
pub mod lease;
pub mod liveness;
pub mod local;
pub mod orchestrator;
pub mod protocol;
mod resource_drivers;

pub use liveness::Liveness;
pub use local::{Agent, AgentError};
pub use orchestrator::{Orchestrator, OrchestratorError};
