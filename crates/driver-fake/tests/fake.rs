//! The fake driver's tests: the shared driver-api suites, fault injection, and determinism.

use std::net::{Ipv4Addr, SocketAddr};

use hafen_driver_api::hypervisor::conformance::{self, Fixture, Host};
use hafen_driver_api::hypervisor::{
    BootSpec, DiskBus, DiskCache, DiskSpec, Hypervisor, MigrateVmError, MigrationError,
    OutgoingMigration, StatusVmError, StopOutcome, StopRequest, VmSpec, VmState, migrate,
};
use hafen_driver_api::storage::{self, CreateVolume, StoragePool, VolumeFormat};
use hafen_driver_fake::{FakeHypervisor, FakeStoragePool, FakeWorld, Fault};

const POOL: &str = "shared";

struct FakeFixture {
    world: FakeWorld,
    pool: FakeStoragePool,
}

impl FakeFixture {
    fn new(seed: u64) -> FakeFixture {
        let world = FakeWorld::new(seed);
        let pool = world.pool(POOL);
        FakeFixture { world, pool }
    }
}

fn host_name(host: Host) -> &'static str {
    match host {
        Host::A => "a",
        Host::B => "b",
    }
}

fn spec(name: &str, volume: &str) -> VmSpec {
    VmSpec {
        name: name.to_string(),
        uuid: "00000000-0000-4000-8000-000000000001".to_string(),
        vcpus: 1,
        memory_mib: 128,
        machine: "pc".to_string(),
        cpu_model: "qemu64".to_string(),
        disks: vec![DiskSpec {
            pool: POOL.to_string(),
            volume: volume.to_string(),
            format: VolumeFormat::Qcow2,
            bus: DiskBus::Virtio,
            cache: DiskCache::Writeback,
        }],
        nics: Vec::new(),
        boot: BootSpec::Disk,
        vnc: None,
    }
}

fn listen(host: Host) -> SocketAddr {
    let last = match host {
        Host::A => 1,
        Host::B => 2,
    };
    SocketAddr::from((Ipv4Addr::new(10, 0, 0, last), 0))
}

fn migration() -> OutgoingMigration {
    OutgoingMigration {
        target: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        max_bandwidth_bytes_per_second: 100_000_000,
        downtime_limit_ms: 100,
        timeout_ms: 10_000,
    }
}

impl Fixture for FakeFixture {
    type Hypervisor = FakeHypervisor;
    type Pool = FakeStoragePool;

    async fn hypervisor(&self, host: Host) -> FakeHypervisor {
        self.world.hypervisor(host_name(host), &[POOL])
    }

    fn pool(&self) -> &FakeStoragePool {
        &self.pool
    }

    fn vm_spec(&self, name: &str, volume: &str, _host: Host) -> VmSpec {
        spec(name, volume)
    }

    fn migration_listen(&self, host: Host) -> SocketAddr {
        listen(host)
    }

    fn unreachable_target(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::new(10, 0, 0, 99), 4444))
    }

    async fn guest_boot_id(&self, name: &str, host: Host) -> Result<String, String> {
        self.world
            .request_guest(host_name(host), name)
            .map(|guest| guest.boot_id)
            .ok_or_else(|| format!("vm {name} does not run on host {host:?}"))
    }

    fn stop_request(&self) -> StopRequest {
        StopRequest { timeout_ms: 1000 }
    }

    fn migration(&self) -> OutgoingMigration {
        migration()
    }
}

/// Proves the fake passes the whole hypervisor suite.
#[tokio::test]
async fn hypervisor_conformance() {
    conformance::run_all(&FakeFixture::new(7)).await;
}

/// Proves the fake pool passes the whole storage suite.
#[tokio::test]
async fn storage_conformance() {
    let world = FakeWorld::new(1);
    storage::conformance::run_all(&world.pool("suite")).await;
}

async fn running_vm(fixture: &FakeFixture, name: &str) -> (FakeHypervisor, VmSpec) {
    let hypervisor = fixture.hypervisor(Host::A).await;
    let volume = format!("{name}-disk");
    fixture
        .pool
        .create(CreateVolume {
            name: &volume,
            format: VolumeFormat::Qcow2,
            size_bytes: 1 << 20,
        })
        .await
        .expect("create volume");
    let spec = spec(name, &volume);
    hypervisor.start(&spec).await.expect("start");
    (hypervisor, spec)
}

/// Proves a destination dying mid-migration leaves the guest running on the source,
/// unchanged, and nothing on the destination.
#[tokio::test]
async fn destination_dies_during_migration() {
    let fixture = FakeFixture::new(3);
    let (source, spec) = running_vm(&fixture, "victim").await;
    let destination = fixture.hypervisor(Host::B).await;
    let before = fixture
        .world
        .request_guest("a", "victim")
        .expect("guest runs");
    fixture.world.inject(Fault::DestinationDiesDuringMigration {
        vm: "victim".to_string(),
    });
    let result = migrate(&source, &destination, &spec, listen(Host::B), migration()).await;
    assert!(
        matches!(
            result,
            Err(MigrationError::Outgoing(MigrateVmError::Failed { .. }))
        ),
        "got {result:?}"
    );
    let after = fixture
        .world
        .request_guest("a", "victim")
        .expect("guest still runs");
    assert_eq!(after.boot_id, before.boot_id);
    assert_eq!(after.counter, before.counter + 1, "the counter goes on");
    assert!(destination.list().await.expect("list").is_empty());
}

/// Proves injected faults show up as the matching outcomes.
#[tokio::test]
async fn faults_change_outcomes() {
    let fixture = FakeFixture::new(4);
    let (hypervisor, spec) = running_vm(&fixture, "stubborn").await;
    fixture.world.inject(Fault::Unresponsive {
        vm: "stubborn".to_string(),
    });
    let status = hypervisor.status(&spec.name).await;
    assert!(
        matches!(status, Err(StatusVmError::Unresponsive { .. })),
        "got {status:?}"
    );
    fixture.world.inject(Fault::IgnoreAcpi {
        vm: "stubborn".to_string(),
    });
    let outcome = hypervisor
        .stop(&spec.name, StopRequest { timeout_ms: 10 })
        .await
        .expect("stop");
    assert_eq!(outcome, StopOutcome::Quit);
    fixture.world.inject(Fault::StartFails {
        vm: "stubborn".to_string(),
        reason: "no memory".to_string(),
    });
    let start = hypervisor.start(&spec).await;
    assert!(start.is_err(), "got {start:?}");
    hypervisor.start(&spec).await.expect("the fault fired once");
    fixture.world.power_off_host("a");
    let status = hypervisor.status(&spec.name).await.expect("status");
    assert_eq!(
        status.state,
        VmState::Stopped,
        "a powered-off host runs nothing"
    );
}

/// Proves the same seed gives the same boot ids and pids (replayable simulations).
#[tokio::test]
async fn same_seed_same_run() {
    let mut runs = Vec::new();
    for _ in 0..2 {
        let fixture = FakeFixture::new(42);
        let (hypervisor, spec) = running_vm(&fixture, "replay").await;
        let status = hypervisor.status(&spec.name).await.expect("status");
        let guest = fixture.world.guest("a", "replay").expect("guest");
        runs.push((status.pid, guest.boot_id));
    }
    assert_eq!(runs[0], runs[1]);
    let other = FakeFixture::new(43);
    let (_hypervisor, _spec) = running_vm(&other, "replay").await;
    assert_ne!(
        other.world.guest("a", "replay").expect("guest").boot_id,
        runs[0].1
    );
}
