//! What the benchmark binaries share.

/// The machine lock the tests and the benchmarks take around a dev cluster: they all use
/// the same namespaces and addresses.
pub const MACHINE_LOCK: &str = "/var/tmp/hafen-dev-cluster.lock";

/// Takes the machine lock (waiting for whoever holds it) and returns the file that holds
/// it until dropped. std's lock is close-on-exec, so daemons started meanwhile do not
/// inherit it.
pub fn machine_lock() -> Result<std::fs::File, String> {
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(MACHINE_LOCK)
        .map_err(|error| format!("{MACHINE_LOCK}: {error}"))?;
    lock.lock()
        .map_err(|error| format!("{MACHINE_LOCK}: {error}"))?;
    Ok(lock)
}
