//! Real-process tests of hafen: daemons and QEMU guests on this machine, hosts as network namespaces.
//!
//! The tests share the machine's two cores and the namespace names, so they run one at a time.

mod cli;
mod clones;
mod cluster;
mod faults;
mod fencing;
mod ocf;
mod reactions;
mod support;
mod vms;
