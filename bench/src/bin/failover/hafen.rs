//! hafen's side of `bench/failover`: a 3-host namespace dev cluster at its defaults, fencing
//! through `fence_hafen_netns` (configured by `dev-cluster --netns`), with one test-guest VM
//! and `options.resources` `ocf:heartbeat:Dummy` resources spread over the hosts by
//! location preferences (so they fail back after each run). A host that is not the leader
//! and carries the VM and a third of the resources is powered off: every process of its
//! namespace killed.

use crate::{Options, RunFigures};
use hafen_api_types::{ConstraintInfo, NodeState, ResourceAddRequest};
use hafen_client::Client;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// Location preference of each resource for its home host: enough to fail back after the
/// host returns, far below INFINITY so the resource recovers elsewhere meanwhile.
const HOME_SCORE: i64 = 1000;

pub fn measure(options: &Options) -> Result<Vec<RunFigures>, String> {
    let _lock = hafen_bench::machine_lock()?;
    let dir = std::env::temp_dir().join(format!("hafen-bench-failover-{}", std::process::id()));
    let bed = Bed::up(&options.hafen, &dir)?;
    let result = bed.run(options);
    bed.down();
    result
}

struct Bed {
    hafen: PathBuf,
    dir: PathBuf,
    file: Value,
    client: Client,
    http: reqwest::Client,
    runtime: tokio::runtime::Runtime,
}

/// Runs the guest build script when its variables are not set, and returns them.
fn guest_env() -> Result<Vec<(String, String)>, String> {
    if std::env::var_os("HAFEN_GUEST_KERNEL").is_some() {
        return Ok(Vec::new());
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../guest/build.sh");
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .map_err(|error| format!("guest/build.sh: {error}"))?;
    if !output.status.success() {
        return Err(format!(
            "guest/build.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_string(), value.trim_matches('"').to_string()))
        .collect())
}

async fn poll<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if Instant::now() > deadline {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The test guest's boot id, from its `GET /` answer.
async fn boot_id(http: &reqwest::Client, url: &str) -> Option<String> {
    let reply: Value = http.get(url).send().await.ok()?.json().await.ok()?;
    reply["boot_id"].as_str().map(str::to_string)
}

impl Bed {
    fn up(hafen: &Path, dir: &Path) -> Result<Self, String> {
        let output = Command::new(hafen)
            .envs(guest_env()?)
            .args([
                "dev-cluster",
                "up",
                "--nodes",
                "3",
                "--netns",
                "--demo-vms",
                "1",
                "--dir",
            ])
            .arg(dir)
            .output()
            .map_err(|error| format!("{}: {error}", hafen.display()))?;
        if !output.status.success() {
            let _ = Command::new(hafen)
                .args(["dev-cluster", "down", "--dir"])
                .arg(dir)
                .output();
            return Err(format!(
                "dev-cluster up failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let file: Value = std::fs::read_to_string(dir.join("cluster.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .ok_or("dev-cluster wrote no cluster.json")?;
        let ca = std::fs::read_to_string(file["ca_file"].as_str().unwrap_or_default())
            .map_err(|error| format!("the cluster CA: {error}"))?;
        let servers = file["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|node| node["api_url"].as_str().map(str::to_string))
            .collect();
        let client = Client::new(
            servers,
            &ca,
            file["admin_token"].as_str().map(str::to_string),
        )
        .map_err(|error| error.to_string())?
        .with_deadline(Duration::from_secs(30));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|error| error.to_string())?;
        Ok(Self {
            hafen: hafen.to_path_buf(),
            dir: dir.to_path_buf(),
            file,
            client,
            http: reqwest::Client::builder()
                .timeout(Duration::from_millis(500))
                .build()
                .map_err(|error| error.to_string())?,
            runtime,
        })
    }

    fn down(self) {
        let _ = Command::new(&self.hafen)
            .args(["dev-cluster", "down", "--dir"])
            .arg(&self.dir)
            .output();
        // HAFEN_BENCH_KEEP=1 keeps configs and logs for a look afterwards.
        if std::env::var_os("HAFEN_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!("hafen: kept {}", self.dir.display());
        }
    }

    fn node(&self, name: &str) -> Option<&Value> {
        self.file["nodes"]
            .as_array()?
            .iter()
            .find(|node| node["name"] == name)
    }

    fn run(&self, options: &Options) -> Result<Vec<RunFigures>, String> {
        let runtime = &self.runtime;
        let client = &self.client;
        let hosts: Vec<String> = self.file["nodes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|node| node["name"].as_str().map(str::to_string))
            .collect();
        let leader = runtime.block_on(poll("a leader", Duration::from_secs(30), || async {
            client.status().await.ok()?.leader
        }))?;
        let victim = hosts
            .iter()
            .find(|host| **host != leader)
            .cloned()
            .ok_or("no host besides the leader")?;
        let vm = self.file["vms"][0]["name"]
            .as_str()
            .ok_or("no demo VM")?
            .to_string();
        let url = self.file["vms"][0]["service_url"]
            .as_str()
            .ok_or("no demo VM url")?
            .to_string();
        // Homes: the VM and every third resource on the victim, the rest on the others.
        let mut homes: BTreeMap<String, String> = BTreeMap::new();
        homes.insert(vm.clone(), victim.clone());
        let ordered: Vec<&String> = std::iter::once(&victim)
            .chain(hosts.iter().filter(|host| **host != victim))
            .collect();
        eprintln!(
            "hafen: adding {} Dummy resources, victim {victim}, leader {leader}",
            options.resources
        );
        for index in 0..options.resources {
            homes.insert(
                format!("dummy{}", index + 1),
                ordered[index % ordered.len()].clone(),
            );
        }
        // Added 2 at a time: each addition probes every host before it starts.
        runtime.block_on(async {
            let mut pending = homes.iter().filter(|(name, _)| **name != vm);
            loop {
                let mut batch = tokio::task::JoinSet::new();
                for (name, home) in pending.by_ref().take(2) {
                    let client = client.clone();
                    let request = ResourceAddRequest {
                        name: name.clone(),
                        agent: "ocf:heartbeat:Dummy".into(),
                        parameters: Default::default(),
                        monitor_interval_ms: Some(10_000),
                        timeout_ms: Some(20_000),
                        host: Some(home.clone()),
                        start: Some(true),
                        clone: None,
                    };
                    batch.spawn(async move {
                        client
                            .add_resource(&request)
                            .await
                            .map(|_| ())
                            .map_err(|error| format!("adding {}: {error}", request.name))
                    });
                }
                if batch.is_empty() {
                    break;
                }
                while let Some(result) = batch.join_next().await {
                    result.map_err(|error| error.to_string())??;
                }
            }
            for (resource, host) in &homes {
                client
                    .add_constraint(&ConstraintInfo {
                        id: format!("home-{resource}"),
                        kind: "location".into(),
                        resource: resource.clone(),
                        host: host.clone(),
                        score: HOME_SCORE,
                        ..ConstraintInfo::default()
                    })
                    .await
                    .map_err(|error| format!("constraint for {resource}: {error}"))?;
            }
            Ok::<(), String>(())
        })?;
        let mut runs = Vec::new();
        for run in 0..options.runs {
            self.settle(&homes, &url)?;
            let moved: Vec<String> = homes
                .iter()
                .filter(|(_, home)| **home == victim)
                .map(|(name, _)| name.clone())
                .collect();
            let before = runtime
                .block_on(boot_id(&self.http, &url))
                .ok_or("the guest does not answer")?;
            let namespace = format!("hafen-{victim}");
            let killed = Instant::now();
            power_off(&namespace);
            let figures = runtime.block_on(self.observe(&victim, &moved, &url, &before, killed))?;
            eprintln!(
                "hafen run {}: {} resources of {victim}: detected {:.3} s, fenced {:.3} s, running {:.3} s, guest answering {:.3} s",
                run + 1,
                moved.len(),
                figures.detected_s,
                figures.fenced_s,
                figures.running_s,
                figures.guest_answering_s.unwrap_or(f64::NAN)
            );
            runs.push(figures);
            self.restart(&victim)?;
            runtime.block_on(poll(
                "the victim to rejoin",
                Duration::from_secs(60),
                || async {
                    let status = client.status().await.ok()?;
                    status
                        .nodes
                        .iter()
                        .any(|node| node.name == victim && node.state == NodeState::Online)
                        .then_some(())
                },
            ))?;
        }
        Ok(runs)
    }

    /// Waits until everything runs at home and the guest answers.
    fn settle(&self, homes: &BTreeMap<String, String>, url: &str) -> Result<(), String> {
        let client = &self.client;
        self.runtime.block_on(poll(
            "every resource to run on its home host",
            Duration::from_secs(300),
            || async {
                let mut placed: BTreeMap<String, (String, String)> = BTreeMap::new();
                for resource in client.resources().await.ok()? {
                    placed.insert(
                        resource.name,
                        (resource.state, resource.node.unwrap_or_default()),
                    );
                }
                let home = homes.iter().all(|(name, host)| {
                    placed
                        .get(name)
                        .is_some_and(|(state, node)| state == "running" && node == host)
                });
                (home && boot_id(&self.http, url).await.is_some()).then_some(())
            },
        ))
    }

    /// Polls the phases after the kill: the cluster's view and the guest each in their own
    /// loop, so a guest request waiting for its timeout never delays reading the cluster.
    async fn observe(
        &self,
        victim: &str,
        moved: &[String],
        url: &str,
        before: &str,
        killed: Instant,
    ) -> Result<RunFigures, String> {
        let client = &self.client;
        let deadline = killed + Duration::from_secs(120);
        let elapsed = || killed.elapsed().as_secs_f64();
        let cluster = async {
            let (mut detected, mut fenced, mut running) = (None, None, None);
            while detected.is_none() || fenced.is_none() || running.is_none() {
                if Instant::now() > deadline {
                    return Err(format!(
                        "after 120 s: detected {detected:?}, fenced {fenced:?}, running {running:?}"
                    ));
                }
                if (detected.is_none() || fenced.is_none())
                    && let Ok(status) = client.status().await
                    && let Some(node) = status.nodes.iter().find(|node| node.name == victim)
                {
                    if node.state != NodeState::Online && detected.is_none() {
                        detected = Some(elapsed());
                    }
                    if node.state == NodeState::Fenced && fenced.is_none() {
                        fenced = Some(elapsed());
                    }
                }
                if running.is_none()
                    && let Ok(resources) = client.resources().await
                {
                    let elsewhere = moved.iter().all(|name| {
                        resources.iter().any(|resource| {
                            resource.name == *name
                                && resource.state == "running"
                                && resource.node.as_deref().is_some_and(|node| node != victim)
                        })
                    });
                    if elsewhere {
                        running = Some(elapsed());
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok((
                detected.unwrap_or(f64::NAN),
                fenced.unwrap_or(f64::NAN),
                running.unwrap_or(f64::NAN),
            ))
        };
        let guest = async {
            loop {
                if Instant::now() > deadline {
                    return Err("after 120 s the guest does not answer".to_string());
                }
                if let Some(boot) = boot_id(&self.http, url).await
                    && boot != before
                {
                    return Ok(elapsed());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        let (phases, answering) = tokio::join!(cluster, guest);
        let (detected_s, fenced_s, running_s) = phases?;
        Ok(RunFigures {
            detected_s,
            fenced_s,
            running_s,
            guest_answering_s: Some(answering?),
        })
    }

    /// Starts the victim's daemon again in its namespace, as after a reboot.
    fn restart(&self, name: &str) -> Result<(), String> {
        let node = self.node(name).ok_or(format!("no node {name}"))?;
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(node["log"].as_str().unwrap_or_default())
            .map_err(|error| format!("{name}'s log: {error}"))?;
        let namespace = node["netns"].as_str().ok_or("not a namespace host")?;
        Command::new("ip")
            .args(["netns", "exec", namespace])
            .arg(&self.hafen)
            .args([
                "daemon",
                "--config",
                node["config"].as_str().unwrap_or_default(),
            ])
            .stdout(log.try_clone().map_err(|error| error.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|error| format!("restarting {name}: {error}"))?;
        Ok(())
    }
}

/// Kills every process of a namespace host at once: the host loses power.
fn power_off(namespace: &str) {
    let output = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
        .expect("ip runs");
    let pids: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect();
    if !pids.is_empty() {
        let _ = Command::new("kill").arg("-9").args(&pids).status();
    }
}
