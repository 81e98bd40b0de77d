//! The hypervisor port (owned by the VM driver work).
