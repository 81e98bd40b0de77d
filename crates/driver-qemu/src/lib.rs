//! The QEMU/KVM hypervisor driver (the only code in hafen that knows QMP and QEMU's command line) and the `dir` storage pool.
//!
//! Each VM runs as a `qemu-system-x86_64` in its own process group (so it outlives the
//! agent) with a pidfile, a QMP socket, a log of QEMU's messages and a serial-console log
//! in `RUN_DIR/<vm>/`. A new [`QemuDriver`] over the same run directory adopts running VMs
//! without touching them.
//!
//! ```text
//! QemuDriver::new(QemuConfig::new(run_dir), vec![DirPool::new("shared", dir, "qemu-img".as_ref())?]).await?
//! ```

mod command_line;
mod dir_pool;
mod driver;
mod probe;
mod process;
mod qmp;

pub use command_line::{LaunchPlan, VmFiles, command_line};
pub use dir_pool::{DEFAULT_QEMU_IMG_TIMEOUT_MS, DirPool, NewPoolError};
pub use driver::{MigrationProgress, NewDriverError, QemuConfig, QemuDriver};
pub use probe::{Accel, AccelChoice, KvmProbe, probe_kvm};
pub use qmp::{QmpClient, QmpError, QmpEvent};

/// Whether QEMU or `qemu-img` refused an image because another process holds its lock.
pub(crate) fn is_lock_failure(message: &str) -> bool {
    message.contains("Failed to get") && message.contains("lock")
}
