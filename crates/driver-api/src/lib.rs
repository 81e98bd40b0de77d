//! Driver ports: the traits every hypervisor, storage pool and resource-agent adapter implements, with plain types.

pub mod hypervisor;
pub mod resource;
pub mod storage;
