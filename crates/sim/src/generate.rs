//! Draws a cluster and a fault schedule from a seed.

use hafen_controller::{ControllerConfig, FencingMethod, HostMode, HostRole, NodeConfig};

use crate::rng::Rng;
use crate::world::{Fault, HostSpec, NetworkConfig, ResourceSpec, SimConfig};

/// Faults are injected in this window; then they stop and liveness has until `END_MS`.
const FAULTS_START_MS: u64 = 2_000;
const FAULTS_END_MS: u64 = 12_000;
const END_MS: u64 = 42_000;

/// The cluster and faults of `seed`.
pub fn random_config(seed: u64, unsafe_recover_without_fence_confirmation: bool) -> SimConfig {
    let mut rng = Rng::new(seed ^ 0x6861_6665_6e5f_7369);
    let (members, witness) = match rng.below(10) {
        0..=1 => (2, true),
        2..=5 => (3, false),
        6..=7 => (4, false),
        _ => (5, false),
    };
    let mut hosts = Vec::new();
    for index in 0..members {
        let self_fence = rng.chance(50);
        hosts.push(HostSpec {
            name: format!("h{}", index + 1),
            role: HostRole::Member,
            fencing_method: if self_fence {
                FencingMethod::SelfFence
            } else {
                FencingMethod::Device
            },
            watchdog_timeout_ms: (self_fence && rng.chance(50)).then_some(1_000),
            cpu: rng.between(4, 8),
        });
    }
    if witness {
        hosts.push(HostSpec {
            name: "w".to_string(),
            role: HostRole::Witness,
            fencing_method: FencingMethod::None,
            watchdog_timeout_ms: None,
            cpu: 0,
        });
    }
    let resource_count = rng.between(2, 6);
    let mut resources: Vec<ResourceSpec> = (0..resource_count)
        .map(|index| ResourceSpec {
            name: format!("vm{}", index + 1),
            cpu: rng.between(1, 2),
            allow_migrate: rng.chance(50),
            migration_threshold: rng.chance(50).then(|| rng.between(2, 3) as u32),
            prefers: rng
                .chance(30)
                .then(|| format!("h{}", rng.between(1, members as u64))),
            after: (index > 0 && rng.chance(30)).then(|| format!("vm{index}")),
            group: None,
        })
        .collect();
    if resources.len() >= 3 && rng.chance(25) {
        for spec in resources.iter_mut().rev().take(2) {
            spec.group = Some("g1".to_string());
        }
    }
    let faults = random_faults(&mut rng, &hosts, members, &resources);
    let mut controller = ControllerConfig {
        unsafe_recover_without_fence_confirmation,
        ..ControllerConfig::default()
    };
    controller.operation_grace_ms = 1_000;
    SimConfig {
        seed,
        hosts,
        resources,
        faults,
        network: NetworkConfig {
            min_delay_ms: 1,
            max_delay_ms: rng.between(2, 30),
            drop_permille: rng.below(30),
        },
        faults_end_ms: FAULTS_END_MS,
        end_ms: END_MS,
        controller,
        node: NodeConfig::default(),
        fixed_timing: false,
        record_log: false,
    }
}

fn random_faults(
    rng: &mut Rng,
    hosts: &[HostSpec],
    members: usize,
    resources: &[ResourceSpec],
) -> Vec<(u64, Fault)> {
    let mut faults = Vec::new();
    let count = rng.between(1, 3);
    for _ in 0..count {
        let at_ms = rng.between(FAULTS_START_MS, FAULTS_END_MS - 1_000);
        let member = rng.below(members as u64) as usize;
        let any_host = rng.below(hosts.len() as u64) as usize;
        let resource = resources[rng.below(resources.len() as u64) as usize]
            .name
            .clone();
        match rng.below(10) {
            0 => faults.push((
                at_ms,
                Fault::Crash {
                    host: member,
                    reboot_after_ms: rng.between(1_000, 8_000),
                },
            )),
            1 | 2 => {
                faults.push((at_ms, Fault::Hang { host: any_host }));
                let resume_ms = at_ms + rng.between(300, 6_000);
                faults.push((resume_ms, Fault::Resume { host: any_host }));
            }
            3 | 4 => {
                let size = rng.between(1, (hosts.len() as u64 / 2).max(1));
                let mut isolated: Vec<usize> = Vec::new();
                while (isolated.len() as u64) < size {
                    let host = rng.below(hosts.len() as u64) as usize;
                    if !isolated.contains(&host) {
                        isolated.push(host);
                    }
                }
                isolated.sort_unstable();
                faults.push((
                    at_ms,
                    Fault::Partition {
                        groups: vec![isolated],
                    },
                ));
                faults.push((at_ms + rng.between(300, 5_000), Fault::Heal));
            }
            5 => faults.push((
                at_ms,
                Fault::FenceFails {
                    host: member,
                    times: rng.between(1, 2) as u32,
                },
            )),
            6 => faults.push((
                at_ms,
                Fault::MonitorFails {
                    resource,
                    times: rng.between(1, 3) as u32,
                },
            )),
            7 => faults.push((
                at_ms,
                Fault::StartFails {
                    resource,
                    times: rng.between(1, 2) as u32,
                },
            )),
            8 => faults.push((at_ms, Fault::LeaderChange)),
            _ => {
                if rng.chance(50) {
                    faults.push((at_ms, Fault::Slow { host: member }));
                } else {
                    faults.push((
                        at_ms,
                        Fault::SetMode {
                            host: member,
                            mode: HostMode::Standby,
                        },
                    ));
                    faults.push((
                        at_ms + rng.between(500, 4_000),
                        Fault::SetMode {
                            host: member,
                            mode: HostMode::Online,
                        },
                    ));
                }
            }
        }
    }
    faults.sort_by_key(|(at_ms, _)| *at_ms);
    faults
}
