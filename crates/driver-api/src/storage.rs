//! The storage port (owned by the VM driver work).
