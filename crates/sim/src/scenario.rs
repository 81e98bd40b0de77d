//! Scripted scenarios: a cluster and timed inputs in a small text format, run with fixed
//! timings so that the event log is exact (the way Proxmox's HA tests pin timelines).
//!
//! ```text
//! # what this scenario proves
//! host h1 device            # name, fencing: device | self | self-watchdog | none
//! host h2 self cpu=4
//! witness w
//! resource vm1 cpu=1 migrate threshold=2 prefers=h1
//! end 30000                 # faults stop after the last input (at least at half-time),
//! faults-end 20000          # unless `faults-end` says otherwise
//! at 2000 crash h2 reboot=5000
//! at 2000 hang h2 | resume h2 | partition h1 | h2,w | heal | fence-fails h2 2
//! at 2000 monitor-fails vm1 3 | start-fails vm1 1 | slow h2 | leader-change
//! at 2000 standby h1 | online h1 | maintenance h1 | confirm-fenced h2
//! ```

use hafen_controller::{ControllerConfig, FencingMethod, HostMode, HostRole, NodeConfig};
use thiserror::Error;

use crate::world::{Fault, HostSpec, NetworkConfig, ResourceSpec, SimConfig, World};

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScenarioError {
    #[error("line {line}: {message}")]
    Syntax { line: usize, message: String },
}

/// Parses a scenario script into a simulator configuration.
pub fn parse(text: &str) -> Result<SimConfig, ScenarioError> {
    let mut hosts: Vec<HostSpec> = Vec::new();
    let mut resources: Vec<ResourceSpec> = Vec::new();
    let mut timed: Vec<(usize, u64, Vec<String>)> = Vec::new();
    let mut end_ms = 30_000;
    let mut faults_end_ms = None;
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let error = |message: String| ScenarioError::Syntax { line, message };
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let words: Vec<String> = content.split_whitespace().map(str::to_string).collect();
        match words[0].as_str() {
            "host" | "witness" => {
                let name = words
                    .get(1)
                    .ok_or_else(|| error("host needs a name".into()))?;
                let witness = words[0] == "witness";
                let method = if witness {
                    "none"
                } else {
                    words.get(2).map_or("device", String::as_str)
                };
                let (fencing_method, watchdog_timeout_ms) = match method {
                    "device" => (FencingMethod::Device, None),
                    "self" => (FencingMethod::SelfFence, None),
                    "self-watchdog" => (FencingMethod::SelfFence, Some(1_000)),
                    "none" => (FencingMethod::None, None),
                    other => return Err(error(format!("unknown fencing {other:?}"))),
                };
                let cpu = option(&words, "cpu").map_or(Ok(if witness { 0 } else { 8 }), |v| {
                    v.parse().map_err(|_| error(format!("bad cpu {v:?}")))
                })?;
                hosts.push(HostSpec {
                    name: name.clone(),
                    role: if witness {
                        HostRole::Witness
                    } else {
                        HostRole::Member
                    },
                    fencing_method,
                    watchdog_timeout_ms,
                    cpu,
                });
            }
            "resource" => {
                let name = words
                    .get(1)
                    .ok_or_else(|| error("resource needs a name".into()))?;
                let number = |key: &str, default: u64| -> Result<u64, ScenarioError> {
                    option(&words, key).map_or(Ok(default), |v| {
                        v.parse().map_err(|_| error(format!("bad {key} {v:?}")))
                    })
                };
                resources.push(ResourceSpec {
                    name: name.clone(),
                    cpu: number("cpu", 1)?,
                    allow_migrate: words.iter().any(|word| word == "migrate"),
                    migration_threshold: option(&words, "threshold")
                        .map(|_| number("threshold", 0).map(|value| value as u32))
                        .transpose()?,
                    prefers: option(&words, "prefers").map(str::to_string),
                    after: option(&words, "after").map(str::to_string),
                    group: option(&words, "group").map(str::to_string),
                });
            }
            "end" => {
                end_ms = number_at(&words, 1).ok_or_else(|| error("end needs a time".into()))?
            }
            "faults-end" => {
                faults_end_ms = Some(
                    number_at(&words, 1).ok_or_else(|| error("faults-end needs a time".into()))?,
                )
            }
            "at" => {
                let at_ms = number_at(&words, 1).ok_or_else(|| error("at needs a time".into()))?;
                timed.push((line, at_ms, words[2..].to_vec()));
            }
            other => return Err(error(format!("unknown command {other:?}"))),
        }
    }
    let host_index = |line: usize, name: &str| -> Result<usize, ScenarioError> {
        hosts
            .iter()
            .position(|host| host.name == name)
            .ok_or_else(|| ScenarioError::Syntax {
                line,
                message: format!("unknown host {name:?}"),
            })
    };
    let mut faults = Vec::new();
    for (line, at_ms, words) in timed {
        let error = |message: String| ScenarioError::Syntax { line, message };
        let word = |position: usize| -> Result<&str, ScenarioError> {
            words
                .get(position)
                .map(String::as_str)
                .ok_or_else(|| error("missing argument".into()))
        };
        let count = |position: usize| -> Result<u32, ScenarioError> {
            word(position)?
                .parse()
                .map_err(|_| error("bad count".into()))
        };
        let fault = match word(0)? {
            "crash" => Fault::Crash {
                host: host_index(line, word(1)?)?,
                reboot_after_ms: option(&words, "reboot")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(5_000),
            },
            "hang" => Fault::Hang {
                host: host_index(line, word(1)?)?,
            },
            "resume" => Fault::Resume {
                host: host_index(line, word(1)?)?,
            },
            "partition" => {
                let mut groups = Vec::new();
                for group in words[1..].join(" ").split('|') {
                    let mut members = Vec::new();
                    for name in group
                        .split(',')
                        .map(str::trim)
                        .filter(|name| !name.is_empty())
                    {
                        members.push(host_index(line, name)?);
                    }
                    groups.push(members);
                }
                Fault::Partition { groups }
            }
            "heal" => Fault::Heal,
            "fence-fails" => Fault::FenceFails {
                host: host_index(line, word(1)?)?,
                times: count(2)?,
            },
            "monitor-fails" => Fault::MonitorFails {
                resource: word(1)?.to_string(),
                times: count(2)?,
            },
            "start-fails" => Fault::StartFails {
                resource: word(1)?.to_string(),
                times: count(2)?,
            },
            "slow" => Fault::Slow {
                host: host_index(line, word(1)?)?,
            },
            "leader-change" => Fault::LeaderChange,
            "standby" | "online" | "maintenance" => Fault::SetMode {
                host: host_index(line, word(1)?)?,
                mode: match word(0)? {
                    "standby" => HostMode::Standby,
                    "online" => HostMode::Online,
                    _ => HostMode::Maintenance,
                },
            },
            "confirm-fenced" => Fault::ConfirmFenced {
                host: host_index(line, word(1)?)?,
            },
            other => return Err(error(format!("unknown input {other:?}"))),
        };
        faults.push((at_ms, fault));
    }
    // By default faults stop after the last scripted input, and not before half-time.
    let last_ms = faults
        .iter()
        .map(|(at_ms, _)| *at_ms + 1)
        .max()
        .unwrap_or(0);
    let faults_end_ms = faults_end_ms.unwrap_or(last_ms.max(end_ms / 2));
    Ok(SimConfig {
        seed: 0,
        hosts,
        resources,
        faults,
        network: NetworkConfig {
            min_delay_ms: 5,
            max_delay_ms: 5,
            drop_permille: 0,
        },
        faults_end_ms,
        end_ms,
        controller: ControllerConfig::default(),
        node: NodeConfig::default(),
        fixed_timing: true,
        record_log: true,
    })
}

/// Runs a scenario script; returns its event log (violations appear in it as lines).
pub fn run(text: &str) -> Result<String, ScenarioError> {
    let config = parse(text)?;
    let mut world = World::new(config);
    world.run();
    let mut log = world.log.join("\n");
    for violation in &world.violations {
        log.push_str(&format!("\nviolation: {violation}"));
    }
    log.push('\n');
    Ok(log)
}

fn option<'a>(words: &'a [String], key: &str) -> Option<&'a str> {
    words.iter().find_map(|word| {
        word.strip_prefix(key)
            .and_then(|rest| rest.strip_prefix('='))
    })
}

fn number_at(words: &[String], position: usize) -> Option<u64> {
    words.get(position)?.parse().ok()
}
