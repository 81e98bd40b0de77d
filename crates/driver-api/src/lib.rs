//! Driver ports: the traits every hypervisor, storage pool and resource-agent adapter implements, with plain types and the shared test suites every implementation runs.

pub mod fence;
pub mod hypervisor;
pub mod resource;
pub mod storage;
