//! The shared test suite of the hypervisor port: every [`Hypervisor`] implementation runs it through a [`Fixture`] (the fake in its unit tests, `driver-qemu` with real guests).
//!
//! Functions panic with a message naming the broken expectation. Each uses its own VM
//! and volume names (prefix `conf-`), and leaves nothing running or allocated when it
//! passes. They only need what every driver has, plus the fixture's view into the guest
//! (its per-boot id), which is how "the same guest" is told from "a guest".

use std::future::Future;
use std::net::SocketAddr;

use super::{
    AdoptVmError, FinishMigrationError, Hypervisor, MigrateVmError, MigrationError,
    OutgoingMigration, SpecError, StartVmError, StatusVmError, StopOutcome, StopRequest,
    StopVmError, VmSpec, VmState, migrate,
};
use crate::storage::{
    CreateVolume, DeleteVolumeError, ResizeVolumeError, StoragePool, VolumeFormat,
};

/// The two hosts a fixture provides (migration needs two).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Host {
    A,
    B,
}

/// What an implementation provides so the suite can run against it.
pub trait Fixture: Send + Sync {
    type Hypervisor: Hypervisor;
    type Pool: StoragePool;

    /// A new driver object for `host`. A second call for the same host models an agent
    /// restart: the new object sees the VMs the old one left running.
    fn hypervisor(&self, host: Host) -> impl Future<Output = Self::Hypervisor> + Send;

    /// The pool the specs' disks live in, shared by both hosts.
    fn pool(&self) -> &Self::Pool;

    /// A runnable spec named `name` whose only disk is the qcow2 `volume` of [`Self::pool`],
    /// as it runs on `host` (host-side port forwards may differ per host).
    fn vm_spec(&self, name: &str, volume: &str, host: Host) -> VmSpec;

    /// Where `host` listens for incoming migrations (port 0 lets the driver choose).
    fn migration_listen(&self, host: Host) -> SocketAddr;

    /// An address on which nothing listens.
    fn unreachable_target(&self) -> SocketAddr;

    /// The per-boot id of the guest `name` on `host`, waiting (bounded) until it answers.
    fn guest_boot_id(
        &self,
        name: &str,
        host: Host,
    ) -> impl Future<Output = Result<String, String>> + Send;

    /// Long enough for the fixture's guest to power off on ACPI.
    fn stop_request(&self) -> StopRequest;

    /// Bandwidth, downtime and timeout for migrations (the target is filled in).
    fn migration(&self) -> OutgoingMigration;
}

const MIB: u64 = 1024 * 1024;

/// Runs every test of the suite in order.
pub async fn run_all<F: Fixture>(fixture: &F) {
    start_status_stop(fixture).await;
    kill_is_idempotent(fixture).await;
    adopt_after_driver_restart(fixture).await;
    volume_in_use_is_protected(fixture).await;
    bad_specs_are_refused(fixture).await;
    live_migration_keeps_the_guest(fixture).await;
}

/// Proves the basic lifecycle: start runs the guest, a second start is refused, a
/// graceful stop lets the guest power off by itself, and stopping again is harmless.
pub async fn start_status_stop<F: Fixture>(fixture: &F) {
    let hypervisor = fixture.hypervisor(Host::A).await;
    let spec = with_volume(fixture, "conf-start", Host::A).await;
    assert_state(&hypervisor, &spec.name, VmState::Stopped).await;

    let started = hypervisor.start(&spec).await.expect("start");
    assert_eq!(
        started.state,
        VmState::Running,
        "start returns a running vm"
    );
    assert!(started.pid.is_some(), "a running vm has a process");
    assert_state(&hypervisor, &spec.name, VmState::Running).await;
    assert_eq!(
        hypervisor.list().await.expect("list"),
        vec![spec.name.clone()]
    );
    let again = hypervisor.start(&spec).await;
    assert!(
        matches!(again, Err(StartVmError::AlreadyRunning { .. })),
        "a second start is refused, got {again:?}"
    );
    fixture
        .guest_boot_id(&spec.name, Host::A)
        .await
        .expect("the guest answers");

    let outcome = hypervisor
        .stop(&spec.name, fixture.stop_request())
        .await
        .expect("stop");
    assert_eq!(
        outcome,
        StopOutcome::PoweredOff,
        "the guest powers off on ACPI"
    );
    assert_state(&hypervisor, &spec.name, VmState::Stopped).await;
    assert!(hypervisor.list().await.expect("list").is_empty());
    let outcome = hypervisor
        .stop(&spec.name, fixture.stop_request())
        .await
        .expect("stop a stopped vm");
    assert_eq!(outcome, StopOutcome::AlreadyStopped);
    delete_volume(fixture, &spec).await;
}

/// Proves kill ends a VM at once and can be repeated (self-fencing relies on that).
pub async fn kill_is_idempotent<F: Fixture>(fixture: &F) {
    let hypervisor = fixture.hypervisor(Host::A).await;
    let spec = with_volume(fixture, "conf-kill", Host::A).await;
    hypervisor
        .kill(&spec.name)
        .await
        .expect("kill a vm never started");
    hypervisor.start(&spec).await.expect("start");
    hypervisor.kill(&spec.name).await.expect("kill");
    assert_state(&hypervisor, &spec.name, VmState::Stopped).await;
    hypervisor.kill(&spec.name).await.expect("kill again");
    delete_volume(fixture, &spec).await;
}

/// Proves a VM outlives its driver object and a new object adopts the same guest (same
/// boot id) without disturbing it; until then the new object refuses to manage it.
pub async fn adopt_after_driver_restart<F: Fixture>(fixture: &F) {
    let spec = with_volume(fixture, "conf-adopt", Host::A).await;
    let boot_id = {
        let first = fixture.hypervisor(Host::A).await;
        first.start(&spec).await.expect("start");
        fixture
            .guest_boot_id(&spec.name, Host::A)
            .await
            .expect("the guest answers")
    };
    let second = fixture.hypervisor(Host::A).await;
    assert_eq!(
        second.list().await.expect("list"),
        vec![spec.name.clone()],
        "a new driver object sees the running vm"
    );
    let status = second.status(&spec.name).await;
    assert!(
        matches!(status, Err(StatusVmError::NotAdopted { .. })),
        "status before adoption is refused, got {status:?}"
    );
    let stop = second.stop(&spec.name, fixture.stop_request()).await;
    assert!(
        matches!(stop, Err(StopVmError::NotAdopted { .. })),
        "stop before adoption is refused, got {stop:?}"
    );
    let adopted = second.adopt(&spec.name).await.expect("adopt");
    assert_eq!(adopted.state, VmState::Running);
    second
        .adopt(&spec.name)
        .await
        .expect("adopting twice is harmless");
    assert_state(&second, &spec.name, VmState::Running).await;
    let after = fixture
        .guest_boot_id(&spec.name, Host::A)
        .await
        .expect("the guest answers after adoption");
    assert_eq!(after, boot_id, "adoption keeps the same guest");
    let missing = second.adopt("conf-never-started").await;
    assert!(
        matches!(missing, Err(AdoptVmError::NotRunning { .. })),
        "adopting a vm that does not run is refused, got {missing:?}"
    );
    second.kill(&spec.name).await.expect("kill");
    delete_volume(fixture, &spec).await;
}

/// Proves a running VM's volume cannot be deleted, resized or opened by a second VM.
pub async fn volume_in_use_is_protected<F: Fixture>(fixture: &F) {
    let hypervisor = fixture.hypervisor(Host::A).await;
    let spec = with_volume(fixture, "conf-inuse", Host::A).await;
    let volume = spec.disks[0].volume.clone();
    hypervisor.start(&spec).await.expect("start");

    let delete = fixture.pool().delete(&volume).await;
    assert!(
        matches!(delete, Err(DeleteVolumeError::InUse { .. })),
        "deleting a volume in use is refused, got {delete:?}"
    );
    let resize = fixture.pool().resize(&volume, 64 * MIB).await;
    assert!(
        matches!(resize, Err(ResizeVolumeError::InUse { .. })),
        "resizing a volume in use is refused, got {resize:?}"
    );
    let mut intruder = fixture.vm_spec("conf-intruder", &volume, Host::A);
    // The intruder must not collide with the first VM's host ports: give it none.
    intruder.nics.clear();
    let second = hypervisor.start(&intruder).await;
    assert!(
        matches!(second, Err(StartVmError::VolumeLocked { .. })),
        "a second vm cannot open the disk of a running vm, got {second:?}"
    );
    assert_state(&hypervisor, &intruder.name, VmState::Stopped).await;

    hypervisor.kill(&spec.name).await.expect("kill");
    fixture
        .pool()
        .delete(&volume)
        .await
        .expect("a volume no longer in use can be deleted");
}

/// Proves specs that cannot run are refused with the specific reason and create nothing.
pub async fn bad_specs_are_refused<F: Fixture>(fixture: &F) {
    let hypervisor = fixture.hypervisor(Host::A).await;
    let spec = with_volume(fixture, "conf-bad", Host::A).await;

    let mut zero_memory = spec.clone();
    zero_memory.memory_mib = 0;
    let result = hypervisor.start(&zero_memory).await;
    assert_eq!(
        result,
        Err(StartVmError::InvalidSpec(SpecError::ZeroMemory))
    );

    let mut unknown_pool = spec.clone();
    unknown_pool.disks[0].pool = "conf-no-such-pool".to_string();
    let result = hypervisor.start(&unknown_pool).await;
    assert!(
        matches!(&result, Err(StartVmError::UnknownPool { pool }) if pool == "conf-no-such-pool"),
        "an unknown pool is refused, got {result:?}"
    );

    let mut missing_volume = spec.clone();
    missing_volume.disks[0].volume = "conf-no-such-volume".to_string();
    let result = hypervisor.start(&missing_volume).await;
    assert!(
        matches!(&result, Err(StartVmError::MissingVolume { volume, .. }) if volume == "conf-no-such-volume"),
        "a missing volume is refused, got {result:?}"
    );
    assert_state(&hypervisor, &spec.name, VmState::Stopped).await;
    assert!(
        hypervisor.list().await.expect("list").is_empty(),
        "refused specs started nothing"
    );

    // The same name twice, even with other disks, is one VM too many on a host.
    hypervisor.start(&spec).await.expect("start");
    let mut duplicate = fixture.vm_spec(&spec.name, "conf-bad-other", Host::A);
    duplicate.nics.clear();
    let result = hypervisor.start(&duplicate).await;
    assert!(
        matches!(result, Err(StartVmError::AlreadyRunning { .. })),
        "a duplicate name is refused, got {result:?}"
    );
    hypervisor.kill(&spec.name).await.expect("kill");
    delete_volume(fixture, &spec).await;
}

/// Proves live migration moves the same guest (same boot id) from host A to host B and
/// leaves nothing on A, and that a migration to an unreachable target leaves the guest
/// running where it was.
pub async fn live_migration_keeps_the_guest<F: Fixture>(fixture: &F) {
    let source = fixture.hypervisor(Host::A).await;
    let destination = fixture.hypervisor(Host::B).await;
    let spec = with_volume(fixture, "conf-migrate", Host::A).await;
    source.start(&spec).await.expect("start on the source");
    let boot_id = fixture
        .guest_boot_id(&spec.name, Host::A)
        .await
        .expect("the guest answers on the source");

    let unreachable = source
        .migrate_outgoing(
            &spec.name,
            OutgoingMigration {
                target: fixture.unreachable_target(),
                ..fixture.migration()
            },
        )
        .await;
    assert!(
        matches!(
            unreachable,
            Err(MigrateVmError::TargetUnreachable { .. } | MigrateVmError::Failed { .. })
        ),
        "a migration to an unreachable target fails, got {unreachable:?}"
    );
    assert_state(&source, &spec.name, VmState::Running).await;
    assert_eq!(
        fixture.guest_boot_id(&spec.name, Host::A).await.as_ref(),
        Ok(&boot_id),
        "the guest keeps running on the source after a failed migration"
    );

    let destination_spec = fixture.vm_spec(&spec.name, &spec.disks[0].volume, Host::B);
    let report = migrate(
        &source,
        &destination,
        &destination_spec,
        fixture.migration_listen(Host::B),
        fixture.migration(),
    )
    .await
    .unwrap_or_else(|error: MigrationError| panic!("migration failed: {error}"));
    assert!(
        report.downtime_ms <= report.total_time_ms,
        "downtime is part of the total time: {report:?}"
    );
    assert_state(&source, &spec.name, VmState::Stopped).await;
    assert_state(&destination, &spec.name, VmState::Running).await;
    assert!(
        source.list().await.expect("list").is_empty(),
        "nothing left on the source"
    );
    assert_eq!(
        fixture.guest_boot_id(&spec.name, Host::B).await.as_ref(),
        Ok(&boot_id),
        "the same guest runs on the destination"
    );
    let late = source.complete_outgoing(&spec.name).await;
    assert!(
        matches!(late, Err(FinishMigrationError::NotMigrated { .. })),
        "completing a migration twice is refused, got {late:?}"
    );

    destination.kill(&spec.name).await.expect("kill");
    delete_volume(fixture, &spec).await;
}

async fn with_volume<F: Fixture>(fixture: &F, name: &str, host: Host) -> VmSpec {
    let volume = format!("{name}-disk");
    fixture
        .pool()
        .create(CreateVolume {
            name: &volume,
            format: VolumeFormat::Qcow2,
            size_bytes: 16 * MIB,
        })
        .await
        .unwrap_or_else(|error| panic!("create volume {volume}: {error}"));
    fixture.vm_spec(name, &volume, host)
}

async fn delete_volume<F: Fixture>(fixture: &F, spec: &VmSpec) {
    for disk in &spec.disks {
        fixture
            .pool()
            .delete(&disk.volume)
            .await
            .unwrap_or_else(|error| panic!("delete volume {}: {error}", disk.volume));
    }
}

async fn assert_state<H: Hypervisor>(hypervisor: &H, name: &str, expected: VmState) {
    let status = hypervisor
        .status(name)
        .await
        .unwrap_or_else(|error| panic!("status of {name}: {error}"));
    assert_eq!(status.state, expected, "state of vm {name}");
    assert_eq!(status.name, name);
}
