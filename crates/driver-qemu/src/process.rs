//! The QEMU process seen from outside: its pidfile, whether it still lives (and is ours, not a recycled pid), signals, and a bounded wait for it to vanish.
//!
//! QEMU outlives the agent that started it (an agent restart adopts it), so whether it
//! is our child or was reparented, the driver judges it from outside: its QMP socket
//! closing is the event we await; this module then confirms the process is gone.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::time::Instant;

/// How often [`wait_gone`] looks: QEMU exits within milliseconds of closing its socket,
/// and a look is a few reads under `/proc`, so looking often costs nothing and a waiter
/// (the end of a migration's source, a stop) learns of the exit at once.
const POLL_INTERVAL: Duration = Duration::from_millis(2);

pub fn read_pidfile(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether `pid` is a live QEMU whose command line names `marker` (the VM's QMP socket
/// path), which rules out a recycled pid.
///
/// Every thread counts: after SIGKILL the thread-group leader can be a zombie while other
/// threads are still exiting and holding the image files (and their locks) open.
pub fn is_alive(pid: u32, marker: &Path) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    let marker = marker.to_string_lossy();
    for task in tasks.filter_map(|task| task.ok()) {
        let task_path = task.path();
        let Ok(stat) = std::fs::read_to_string(task_path.join("stat")) else {
            continue;
        };
        // The state follows the parenthesised command name, which may contain spaces.
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        if matches!(state, Some("Z" | "X" | "x") | None) {
            continue;
        }
        // A live thread still has the process's memory, so its command line is readable.
        let Ok(command_line) = std::fs::read(task_path.join("cmdline")) else {
            continue;
        };
        return command_line
            .split(|byte| *byte == 0)
            .any(|argument| String::from_utf8_lossy(argument).contains(marker.as_ref()));
    }
    false
}

/// Sends SIGKILL; a process that is already gone is fine.
pub fn kill_now(pid: u32) -> Result<(), String> {
    let Ok(raw) = i32::try_from(pid) else {
        return Err(format!("pid {pid} out of range"));
    };
    match kill(Pid::from_raw(raw), Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
        Err(error) => Err(format!("kill {pid}: {error}")),
    }
}

/// Waits until the process is gone; false if it still lives at the deadline.
pub async fn wait_gone(pid: u32, marker: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !is_alive(pid, marker) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Every live process whose command line names `marker`. A failed launch can leave a
/// process exiting, or one from an older daemonizing launch, with no pidfile to find it by.
pub fn processes_with(marker: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|pid| is_alive(*pid, marker))
        .collect();
    pids.sort_unstable();
    pids
}

/// Kills every process naming `marker` and waits until none is left; false on timeout.
pub async fn kill_all_with(marker: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let pids = processes_with(marker);
        if pids.is_empty() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        for pid in pids {
            let _ = kill_now(pid);
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Whether any process holds a lock on `path` (QEMU locks image files with OFD locks).
pub fn image_locked(path: &Path) -> bool {
    use nix::fcntl::{FcntlArg, fcntl};
    use nix::libc;
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    // Asking whether a whole-file write lock could be taken reports any lock by anyone.
    let mut probe = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    match fcntl(&file, FcntlArg::F_OFD_GETLK(&mut probe)) {
        Ok(_) => probe.l_type != libc::F_UNLCK as libc::c_short,
        Err(_) => false,
    }
}

/// Waits until no lock is held on any of `paths`; false on timeout. The kernel releases
/// a dead process's locks with its files, which can lag its threads' exit by milliseconds.
pub async fn wait_images_released(paths: &[std::path::PathBuf], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !paths.iter().any(|path| image_locked(path)) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[cfg(test)]
mod tests {
    //! The lock probe against a lock this test takes on its own, separate file
    //! description, as QEMU does on its image (a shared lock on one byte).

    use super::*;
    use nix::fcntl::{FcntlArg, fcntl};
    use nix::libc;

    /// Proves a single-byte read lock is seen, and its release too.
    #[test]
    fn image_lock_probe_sees_ofd_locks() {
        let directory = tempfile::tempdir().expect("tempdir");
        let path = directory.path().join("image");
        std::fs::write(&path, vec![0_u8; 4096]).expect("write");
        assert!(!image_locked(&path), "a fresh file is unlocked");
        let holder = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .expect("open");
        let lock = libc::flock {
            l_type: libc::F_RDLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 100,
            l_len: 1,
            l_pid: 0,
        };
        fcntl(&holder, FcntlArg::F_OFD_SETLK(&lock)).expect("lock one byte");
        assert!(image_locked(&path), "the lock is seen");
        drop(holder);
        assert!(!image_locked(&path), "closing the file releases it");
    }
}
