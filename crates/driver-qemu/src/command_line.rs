//! The QEMU command line, derived deterministically from a VM spec and the host's resolved paths: the same inputs give the same arguments, byte for byte, on every host.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use hafen_driver_api::hypervisor::{BootSpec, DiskCache, ForwardProtocol, NicBackend, VmSpec};

use crate::probe::Accel;

/// The files of one VM under the driver's run directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmFiles {
    pub directory: PathBuf,
}

impl VmFiles {
    pub fn new(run_dir: &Path, name: &str) -> VmFiles {
        VmFiles {
            directory: run_dir.join(name),
        }
    }
    pub fn pidfile(&self) -> PathBuf {
        self.directory.join("qemu.pid")
    }
    pub fn qmp_socket(&self) -> PathBuf {
        self.directory.join("qmp.sock")
    }
    pub fn vnc_socket(&self) -> PathBuf {
        self.directory.join("vnc.sock")
    }
    /// The guest's serial console, appended across boots.
    pub fn console_log(&self) -> PathBuf {
        self.directory.join("console.log")
    }
    /// QEMU's own messages (its stderr), rewritten at each launch: why a start failed,
    /// and warnings while the VM runs.
    pub fn qemu_log(&self) -> PathBuf {
        self.directory.join("qemu.log")
    }
    /// The spec the VM was started with, read back on adoption.
    pub fn spec_file(&self) -> PathBuf {
        self.directory.join("spec.json")
    }
}

/// Everything the command line depends on.
#[derive(Debug, Clone, Copy)]
pub struct LaunchPlan<'a> {
    pub spec: &'a VmSpec,
    pub accel: Accel,
    pub files: &'a VmFiles,
    /// The file of each of `spec.disks`, in order.
    pub disk_paths: &'a [PathBuf],
    /// Destination of a live migration: listen here instead of booting.
    pub incoming: Option<SocketAddr>,
}

/// The arguments after the binary name.
///
/// The VM is not daemonized (the driver starts it in its own process group, and it
/// outlives the agent; skipping QEMU's double fork and its parent's wait makes it answer
/// sooner), starts paused unless it is a migration destination (the driver sets it up
/// over QMP, then continues it), and exits when the guest powers off.
pub fn command_line(plan: &LaunchPlan<'_>) -> Vec<String> {
    let spec = plan.spec;
    let files = plan.files;
    let mut arguments: Vec<String> = Vec::new();
    let mut push = |option: &str, value: String| {
        arguments.push(option.to_string());
        arguments.push(value);
    };
    push("-name", format!("guest={}", escape(&spec.name)));
    push("-uuid", spec.uuid.clone());
    push("-machine", escape(&spec.machine));
    push(
        "-accel",
        match plan.accel {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
        .to_string(),
    );
    push("-cpu", escape(&spec.cpu_model));
    push("-smp", spec.vcpus.to_string());
    push("-m", format!("{}M", spec.memory_mib));
    push("-display", "none".to_string());
    push("-pidfile", path(&files.pidfile()));
    push(
        "-qmp",
        format!(
            "unix:{},server=on,wait=off",
            escape(&path(&files.qmp_socket()))
        ),
    );
    push(
        "-chardev",
        format!(
            "file,id=serial0,path={},append=on",
            escape(&path(&files.console_log()))
        ),
    );
    push("-serial", "chardev:serial0".to_string());
    push("-msg", "timestamp=on".to_string());
    for (index, (disk, disk_path)) in spec.disks.iter().zip(plan.disk_paths).enumerate() {
        push(
            "-drive",
            format!(
                "file={},if=none,id=disk{index},format={},cache={}",
                escape(&path(disk_path)),
                disk.format.as_str(),
                cache_mode(disk.cache)
            ),
        );
        let mut device = format!("virtio-blk-pci,drive=disk{index},id=disk{index}-device");
        if index == 0 && spec.boot == BootSpec::Disk {
            device.push_str(",bootindex=0");
        }
        push("-device", device);
    }
    for (index, nic) in spec.nics.iter().enumerate() {
        push("-netdev", netdev(index, &nic.backend, &spec.name));
        // No option ROM: nothing boots from the network, and it keeps the firmware out
        // of the migration's compatibility concerns.
        push(
            "-device",
            format!(
                "virtio-net-pci,netdev=net{index},id=net{index}-device,mac={},romfile=",
                nic.mac.to_ascii_lowercase()
            ),
        );
    }
    if let BootSpec::Kernel {
        kernel,
        initrd,
        cmdline,
    } = &spec.boot
    {
        push("-kernel", path(kernel));
        if let Some(initrd) = initrd {
            push("-initrd", path(initrd));
        }
        push("-append", cmdline.clone());
    }
    if let Some(vnc) = &spec.vnc {
        // The raw VNC port stays a unix socket; only the websocket (what the UI proxies)
        // listens on TCP, on loopback.
        push(
            "-vnc",
            format!(
                "unix:{},websocket=127.0.0.1:{},password=on",
                escape(&path(&files.vnc_socket())),
                vnc.websocket_port
            ),
        );
    }
    match plan.incoming {
        Some(address) => push("-incoming", format!("tcp:{}", tcp_address(address))),
        None => arguments.push("-S".to_string()),
    }
    arguments.extend(
        ["-nodefaults", "-no-user-config"]
            .iter()
            .map(|flag| flag.to_string()),
    );
    arguments
}

/// The tap device of a VM's NIC: at most 15 bytes (Linux's limit), the same on every host,
/// distinct per VM (a 40-bit hash of its name) and NIC. QEMU creates it; the driver
/// attaches it to the bridge while QEMU goes on starting, instead of QEMU forking a
/// script in the middle of its start-up.
pub fn tap_name(vm: &str, nic_index: usize) -> String {
    // FNV-1a: stable across releases, unlike the standard library's hasher.
    let hash = vm.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("hf{:010x}{nic_index:x}", hash & 0xff_ffff_ffff)
}

fn netdev(index: usize, backend: &NicBackend, vm: &str) -> String {
    match backend {
        NicBackend::User { port_forwards } => {
            let mut option = format!("user,id=net{index}");
            for forward in port_forwards {
                let protocol = match forward.protocol {
                    ForwardProtocol::Tcp => "tcp",
                    ForwardProtocol::Udp => "udp",
                };
                let host = match forward.host_address {
                    std::net::IpAddr::V4(address) => address.to_string(),
                    std::net::IpAddr::V6(address) => format!("[{address}]"),
                };
                option.push_str(&format!(
                    ",hostfwd={protocol}:{host}:{}-:{}",
                    forward.host_port, forward.guest_port
                ));
            }
            option
        }
        NicBackend::Tap { .. } => format!(
            "tap,id=net{index},ifname={},script=no,downscript=no",
            tap_name(vm, index)
        ),
    }
}

fn cache_mode(cache: DiskCache) -> &'static str {
    match cache {
        DiskCache::None => "none",
        DiskCache::Writeback => "writeback",
        DiskCache::Writethrough => "writethrough",
        DiskCache::Directsync => "directsync",
        DiskCache::Unsafe => "unsafe",
    }
}

pub fn tcp_address(address: SocketAddr) -> String {
    match address {
        SocketAddr::V4(v4) => format!("{}:{}", v4.ip(), v4.port()),
        SocketAddr::V6(v6) => format!("[{}]:{}", v6.ip(), v6.port()),
    }
}

fn path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// QEMU option values end at a comma; a literal comma is written twice.
fn escape(value: &str) -> String {
    value.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    //! The command line for a full spec, compared with the expected arguments.

    use super::*;
    use hafen_driver_api::hypervisor::{DiskBus, DiskSpec, NicSpec, PortForward, VncSpec};
    use hafen_driver_api::storage::VolumeFormat;

    fn spec() -> VmSpec {
        VmSpec {
            name: "web1".to_string(),
            uuid: "6f1c2a4e-0000-4000-8000-00000000abcd".to_string(),
            vcpus: 2,
            memory_mib: 128,
            machine: "pc".to_string(),
            cpu_model: "qemu64".to_string(),
            disks: vec![DiskSpec {
                pool: "shared".to_string(),
                volume: "web1-disk".to_string(),
                format: VolumeFormat::Qcow2,
                bus: DiskBus::Virtio,
                cache: DiskCache::None,
            }],
            nics: vec![
                NicSpec {
                    mac: "52:54:00:AA:00:01".to_string(),
                    backend: NicBackend::User {
                        port_forwards: vec![PortForward {
                            protocol: ForwardProtocol::Tcp,
                            host_address: "127.0.0.1".parse().expect("ip"),
                            host_port: 8080,
                            guest_port: 80,
                        }],
                    },
                },
                NicSpec {
                    mac: "52:54:00:aa:00:02".to_string(),
                    backend: NicBackend::Tap {
                        bridge: "br0".to_string(),
                    },
                },
            ],
            boot: BootSpec::Kernel {
                kernel: "/guest/vmlinuz".into(),
                initrd: Some("/guest/initrd.img".into()),
                cmdline: "console=ttyS0 no_timer_check".to_string(),
            },
            vnc: Some(VncSpec {
                websocket_port: 5701,
                password: "secret".to_string(),
            }),
        }
    }

    /// Proves every part of the spec lands in the expected option, and nothing else.
    #[test]
    fn full_spec() {
        let spec = spec();
        let files = VmFiles::new(Path::new("/run/hafen"), "web1");
        let disks = [PathBuf::from("/pool/web1-disk.qcow2")];
        let plan = LaunchPlan {
            spec: &spec,
            accel: Accel::Tcg,
            files: &files,
            disk_paths: &disks,
            incoming: None,
        };
        let expected = [
            "-name",
            "guest=web1",
            "-uuid",
            "6f1c2a4e-0000-4000-8000-00000000abcd",
            "-machine",
            "pc",
            "-accel",
            "tcg",
            "-cpu",
            "qemu64",
            "-smp",
            "2",
            "-m",
            "128M",
            "-display",
            "none",
            "-pidfile",
            "/run/hafen/web1/qemu.pid",
            "-qmp",
            "unix:/run/hafen/web1/qmp.sock,server=on,wait=off",
            "-chardev",
            "file,id=serial0,path=/run/hafen/web1/console.log,append=on",
            "-serial",
            "chardev:serial0",
            "-msg",
            "timestamp=on",
            "-drive",
            "file=/pool/web1-disk.qcow2,if=none,id=disk0,format=qcow2,cache=none",
            "-device",
            "virtio-blk-pci,drive=disk0,id=disk0-device",
            "-netdev",
            "user,id=net0,hostfwd=tcp:127.0.0.1:8080-:80",
            "-device",
            "virtio-net-pci,netdev=net0,id=net0-device,mac=52:54:00:aa:00:01,romfile=",
            "-netdev",
            "tap,id=net1,ifname=hff619ea40401,script=no,downscript=no",
            "-device",
            "virtio-net-pci,netdev=net1,id=net1-device,mac=52:54:00:aa:00:02,romfile=",
            "-kernel",
            "/guest/vmlinuz",
            "-initrd",
            "/guest/initrd.img",
            "-append",
            "console=ttyS0 no_timer_check",
            "-vnc",
            "unix:/run/hafen/web1/vnc.sock,websocket=127.0.0.1:5701,password=on",
            "-S",
            "-nodefaults",
            "-no-user-config",
        ];
        assert_eq!(command_line(&plan), expected);
        assert_eq!(command_line(&plan), command_line(&plan), "deterministic");
    }

    /// Proves tap names fit Linux's 15 bytes, are stable, and differ per VM and NIC.
    #[test]
    fn tap_names() {
        let long = "a".repeat(64);
        assert_eq!(tap_name("web1", 1), "hff619ea40401");
        assert!(tap_name(&long, 4095).len() <= 15);
        assert_ne!(tap_name("web1", 0), tap_name("web2", 0));
        assert_ne!(tap_name("web1", 0), tap_name("web1", 1));
    }

    /// Proves a migration destination listens instead of starting paused, a disk boot
    /// marks the first disk bootable, and commas in paths are escaped.
    #[test]
    fn incoming_disk_boot_and_escaping() {
        let mut spec = spec();
        spec.boot = BootSpec::Disk;
        spec.nics.clear();
        spec.vnc = None;
        let files = VmFiles::new(Path::new("/run/a,b"), "web1");
        let disks = [PathBuf::from("/pool/web1-disk.qcow2")];
        let plan = LaunchPlan {
            spec: &spec,
            accel: Accel::Kvm,
            files: &files,
            disk_paths: &disks,
            incoming: Some("[::1]:4444".parse().expect("address")),
        };
        let arguments = command_line(&plan);
        let joined = arguments.join(" ");
        assert!(joined.contains("-accel kvm"));
        assert!(joined.contains("virtio-blk-pci,drive=disk0,id=disk0-device,bootindex=0"));
        assert!(joined.contains("-incoming tcp:[::1]:4444"));
        assert!(!arguments.contains(&"-S".to_string()));
        assert!(joined.contains("unix:/run/a,,b/web1/qmp.sock,server=on"));
        assert!(!joined.contains("-kernel"));
    }
}
