//! The resource-agent port (owned by the OCF driver work).
