//! hafen's sans-IO HA controller: the leader's cluster part and each agent's node part.
//!
//! Both are state machines: inputs are `handle_*(now_ms, event)` calls, outputs are returned
//! action lists that a thin runtime performs (commit a transition, send an operation to an
//! agent, fence a host, acknowledge a heartbeat, run a driver command). No I/O, no clock, no
//! randomness, no hash-map iteration: the same inputs always give the same outputs.
//!
//! - [`ClusterController`] (the leader): failure detection from heartbeats, fencing and its
//!   confirmation (device, certain lease expiry, operator), and plan execution through the
//!   scheduler with bounded parallelism. Safety invariants I1 (single active), I2 (fence
//!   before recovery), I3 (only the quorate side acts) and I5 (capacity) from DESIGN section 4.
//! - [`NodeController`] (each agent): the lease and self-fencing, the per-resource lifecycle
//!   (start, monitor, failure reports, restart back-off) and the generation checks.
//! - [`apply_transition`]: what each committed [`Transition`] does to the state.
//!
//! Operator commands are committed configuration changes the controller reacts to (host mode
//! for standby, online, maintenance and evacuate; fail-count cleanup; a manual migration is a
//! location constraint), except `confirm-fenced`, which the daemon commits as
//! [`Transition::HostFenced`] with [`FenceConfirmation::Operator`].

pub mod execution;
pub mod fencing;
mod leader;
mod node;
mod state;
mod types;

pub use leader::{Action, ClusterController, ControllerConfig, scheduler_view};
pub use node::{
    CommandId, DriverCommand, DriverKind, DriverOutcome, NodeAction, NodeConfig, NodeController,
};
pub use state::{Rejection, apply_transition};
pub use types::{
    ActionId, Assignment, ClusterSnapshot, FAIL_COUNT_INFINITY, FenceConfirmation, FenceResult,
    FencingMethod, FencingState, Heartbeat, HeartbeatAck, HostMode, HostRecord, HostRole,
    Operation, OperationKind, OperationResult, OperationTimeouts, Outcome, Phase, ResourceFailure,
    ResourceRecord, Severity, Transition,
};
