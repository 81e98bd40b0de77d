//! Finding the QEMU binaries and deciding between KVM and TCG: KVM is used only when a probe shows it can run guest code to the end of the firmware, because `/dev/kvm` can exist and still fail real guests (nested virtualization).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::OnceCell;
use tokio::time::Instant;

/// Which accelerator a VM runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accel {
    Kvm,
    Tcg,
}

/// What the configuration asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccelChoice {
    /// KVM when the probe passes, else TCG.
    Auto,
    Kvm,
    Tcg,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmProbe {
    pub usable: bool,
    /// Why, in words for the log.
    pub reason: String,
}

/// Firmware output that means the guest ran through SeaBIOS's whole start-up.
const FIRMWARE_DONE_MARKERS: [&str; 3] = ["No bootable device", "Booting from", "Boot failed"];
const PROBE_POLL_INTERVAL: Duration = Duration::from_millis(20);

static PROBE: OnceCell<KvmProbe> = OnceCell::const_new();

/// Looks `binary` up in `PATH` unless it is a path already.
pub fn find_binary(binary: &Path) -> Option<PathBuf> {
    if binary.components().count() > 1 {
        return binary.is_file().then(|| binary.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(binary))
        .find(|candidate| candidate.is_file())
}

/// The probe's result, computed once per process.
pub async fn probe_kvm_cached(qemu_binary: &Path, scratch: &Path, timeout: Duration) -> KvmProbe {
    PROBE
        .get_or_init(|| probe_kvm(qemu_binary, scratch, timeout))
        .await
        .clone()
}

/// Boots SeaBIOS under KVM with no disks and checks, through its debug console, that it
/// reaches the boot-device stage within `timeout`.
pub async fn probe_kvm(qemu_binary: &Path, scratch: &Path, timeout: Duration) -> KvmProbe {
    if let Err(error) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        return unusable(format!("/dev/kvm cannot be opened: {error}"));
    }
    if let Err(error) = std::fs::create_dir_all(scratch) {
        return unusable(format!("probe directory {scratch:?}: {error}"));
    }
    let log = scratch.join("kvm-probe-firmware.log");
    let _ = std::fs::remove_file(&log);
    // Unlike a VM, the probe must not outlive the daemon: killed during the probe (tests
    // SIGKILL daemons), it would leave this QEMU spinning. util-linux's setpriv (essential
    // on Debian) makes the kernel kill it with its parent.
    let mut command = match find_binary(Path::new("setpriv")) {
        Some(setpriv) => {
            let mut command = Command::new(setpriv);
            command.args(["--pdeathsig", "KILL", "--"]).arg(qemu_binary);
            command
        }
        None => Command::new(qemu_binary),
    };
    let child = command
        .args([
            "-accel",
            "kvm",
            "-machine",
            "pc",
            "-nodefaults",
            "-no-user-config",
        ])
        .args(["-display", "none", "-m", "16", "-no-reboot"])
        .arg("-debugcon")
        .arg(format!("file:{}", log.display()))
        .args(["-global", "isa-debugcon.iobase=0x402"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(error) => return unusable(format!("cannot run {qemu_binary:?}: {error}")),
    };
    let deadline = Instant::now() + timeout;
    let verdict = loop {
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        if FIRMWARE_DONE_MARKERS
            .iter()
            .any(|marker| output.contains(marker))
        {
            break KvmProbe {
                usable: true,
                reason: "a guest ran its firmware to the boot stage under kvm".to_string(),
            };
        }
        if let Ok(Some(status)) = child.try_wait() {
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), pipe.read_to_string(&mut stderr))
                        .await;
            }
            break unusable(format!(
                "qemu exited ({status}) under kvm: {}",
                stderr.trim()
            ));
        }
        if Instant::now() >= deadline {
            let last = output.lines().last().unwrap_or("nothing").to_string();
            break unusable(format!(
                "a guest under kvm did not finish its firmware within {} ms (last output: {last})",
                timeout.as_millis()
            ));
        }
        tokio::time::sleep(PROBE_POLL_INTERVAL).await;
    };
    let _ = child.start_kill();
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    let _ = std::fs::remove_file(&log);
    verdict
}

fn unusable(reason: String) -> KvmProbe {
    KvmProbe {
        usable: false,
        reason,
    }
}
