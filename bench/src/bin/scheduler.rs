//! Scheduler benchmark: full placement and re-plan after a host failure on generated
//! clusters, optionally against Pacemaker's `crm_simulate`; prints a JSON summary last.
//!
//! `cargo run --release -p hafen-bench --bin scheduler -- [--hosts N] [--resources M]
//! [--repeat R] [--compare-pacemaker] [--pacemaker-timeout-s S]`

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hafen_scheduler::{
    ClusterView, Colocation, Host, HostState, Location, Ordering, OrderingKind, PlacementStrategy,
    Plan, Request, Resource, Score, apply_plan, schedule,
};
use serde_json::json;

struct Options {
    hosts: usize,
    resources: usize,
    repeat: usize,
    seed: u64,
    compare_pacemaker: bool,
    pacemaker_timeout_s: u64,
}

fn parse_options() -> Result<Options, String> {
    let mut options = Options {
        hosts: 32,
        resources: 10_000,
        repeat: 5,
        seed: 1,
        compare_pacemaker: false,
        pacemaker_timeout_s: 240,
    };
    let mut arguments = std::env::args().skip(1);
    while let Some(argument) = arguments.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            arguments
                .next()
                .and_then(|value| value.parse().ok())
                .ok_or_else(|| format!("{name} needs a number"))
        };
        match argument.as_str() {
            "--hosts" => options.hosts = value("--hosts")? as usize,
            "--resources" => options.resources = value("--resources")? as usize,
            "--repeat" => options.repeat = (value("--repeat")? as usize).max(1),
            "--seed" => options.seed = value("--seed")?,
            "--pacemaker-timeout-s" => {
                options.pacemaker_timeout_s = value("--pacemaker-timeout-s")?
            }
            "--compare-pacemaker" => options.compare_pacemaker = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if options.hosts < 2 {
        return Err("--hosts must be at least 2 (one fails)".to_string());
    }
    Ok(options)
}

/// splitmix64, so every run of a size benchmarks the same cluster.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut value = self.0;
        value = (value ^ (value >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        value = (value ^ (value >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        value ^ (value >> 31)
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound.max(1)
    }
}

const CPU_PER_RESOURCE_MAX: u64 = 4;
const MEMORY_MIB_PER_RESOURCE_MAX: u64 = 8192;

fn host_name(index: usize) -> String {
    format!("host{index:04}")
}

/// VMs with utilization on hosts sized for about 65 % load; about 10 % of the VMs prefer a
/// host, 5 % are in colocation pairs (half mandatory), 1 % are ordered after another VM;
/// balanced placement.
fn generate(options: &Options) -> ClusterView {
    let mut random = Random(options.seed);
    let mut view = ClusterView::default();
    view.options.placement_strategy = PlacementStrategy::Balanced;
    let per_host = options.resources.div_ceil(options.hosts) as u64;
    let average_cpu = CPU_PER_RESOURCE_MAX.div_ceil(2) + 1;
    let average_memory_mib = MEMORY_MIB_PER_RESOURCE_MAX / 2 + 512;
    for index in 0..options.hosts {
        let mut host = Host {
            name: host_name(index),
            ..Host::default()
        };
        host.attributes
            .insert("rack".to_string(), format!("rack{}", index % 4));
        host.capacity.insert(
            "cpu".to_string(),
            (per_host * average_cpu * 3 / 2).max(CPU_PER_RESOURCE_MAX),
        );
        host.capacity.insert(
            "memory_mib".to_string(),
            (per_host * average_memory_mib * 3 / 2).max(MEMORY_MIB_PER_RESOURCE_MAX),
        );
        view.hosts.push(host);
    }
    for index in 0..options.resources {
        let mut resource = Resource::new(format!("vm{index:06}"));
        resource.allow_migrate = true;
        resource
            .utilization
            .insert("cpu".to_string(), 1 + random.below(CPU_PER_RESOURCE_MAX));
        resource.utilization.insert(
            "memory_mib".to_string(),
            1024 * (1 + random.below(MEMORY_MIB_PER_RESOURCE_MAX / 1024)),
        );
        view.resources.push(resource);
        let draw = random.below(1000);
        if draw < 100 {
            view.constraints.locations.push(Location {
                id: format!("prefer-vm{index:06}"),
                resource: format!("vm{index:06}"),
                host: Some(host_name(random.below(options.hosts as u64) as usize)),
                score: Some(Score::new(100 + random.below(900) as i64)),
                ..Location::default()
            });
        } else if draw < 125 && index > 0 {
            // Pairs with the previous VM: 2.5 % dependents + their primaries = 5 %.
            let mandatory = random.below(2) == 0;
            view.constraints.colocations.push(Colocation {
                id: format!("with-vm{index:06}"),
                dependent: format!("vm{index:06}"),
                primary: format!("vm{:06}", index - 1),
                score: if mandatory {
                    Score::INFINITY
                } else {
                    Score::new(500)
                },
                dependent_role: hafen_scheduler::Role::Started,
                primary_role: hafen_scheduler::Role::Started,
                influence: true,
            });
        } else if draw < 135 && index > 0 {
            let first = random.below(index as u64) as usize;
            view.constraints.orderings.push(Ordering {
                id: format!("after-vm{index:06}"),
                first: format!("vm{first:06}"),
                then: format!("vm{index:06}"),
                kind: if random.below(2) == 0 {
                    OrderingKind::Mandatory
                } else {
                    OrderingKind::Optional
                },
                symmetrical: true,
            });
        }
    }
    view
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    hwm_mb(&status)
}

fn hwm_mb(status: &str) -> f64 {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Median wall time of `repeat` runs, and the plan of the last.
fn time_schedule(view: &ClusterView, repeat: usize) -> Result<(f64, Plan), String> {
    let request = Request {
        now_ms: 0,
        include_scores: false,
    };
    let mut times = Vec::new();
    let mut plan = Plan::default();
    for _ in 0..repeat {
        let started = Instant::now();
        plan = schedule(view, &request).map_err(|error| error.to_string())?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], plan))
}

fn main() {
    if let Err(error) = run() {
        eprintln!("scheduler bench: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let options = parse_options()?;
    let view = generate(&options);
    eprintln!(
        "cluster: {} hosts, {} resources, {} locations, {} colocations, {} orderings",
        view.hosts.len(),
        view.resources.len(),
        view.constraints.locations.len(),
        view.constraints.colocations.len(),
        view.constraints.orderings.len()
    );
    let (place_ms, placement) = time_schedule(&view, options.repeat)?;
    let placed = apply_plan(&view, &placement);
    let running = placed
        .resources
        .iter()
        .filter(|resource| !resource.instances.is_empty())
        .count();
    eprintln!(
        "full placement: {place_ms:.1} ms, {} actions, {running} running, {} pending",
        placement.actions.len(),
        placement.pending.len()
    );
    let mut failed = placed.clone();
    failed.hosts[0].state = HostState::Fenced;
    let (replan_ms, replan) = time_schedule(&failed, options.repeat)?;
    eprintln!(
        "re-plan after {} failed: {replan_ms:.1} ms, {} actions, {} pending",
        failed.hosts[0].name,
        replan.actions.len(),
        replan.pending.len()
    );
    let mut summary = json!({
        "hosts": options.hosts,
        "resources": options.resources,
        "place_ms": round(place_ms),
        "replan_ms": round(replan_ms),
        "peak_rss_mb": round(peak_rss_mb()),
        "place_actions": placement.actions.len(),
        "replan_actions": replan.actions.len(),
        "scores_included": false,
    });
    if options.compare_pacemaker {
        let comparison = compare_pacemaker(&options, &view, &placed, place_ms, replan_ms);
        if let Some(object) = summary.as_object_mut() {
            for (key, value) in comparison {
                object.insert(key, value);
            }
        }
    }
    println!("{summary}");
    Ok(())
}

fn round(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}

/// Writes both clusters as CIB XML, runs `crm_simulate` on each under a time cap, and
/// returns the `pacemaker` and `ratio` summary entries.
fn compare_pacemaker(
    options: &Options,
    view: &ClusterView,
    placed: &ClusterView,
    place_ms: f64,
    replan_ms: f64,
) -> BTreeMap<String, serde_json::Value> {
    let mut entries = BTreeMap::new();
    let directory = std::env::temp_dir().join(format!("hafen-bench-{}", std::process::id()));
    if let Err(error) = std::fs::create_dir_all(&directory) {
        entries.insert(
            "pacemaker".to_string(),
            json!({ "error": format!("cannot create {}: {error}", directory.display()) }),
        );
        return entries;
    }
    let timeout = Duration::from_secs(options.pacemaker_timeout_s);
    let place_file = directory.join("place.xml");
    let replan_file = directory.join("replan.xml");
    let written = std::fs::write(&place_file, cib(view, None))
        .and_then(|()| std::fs::write(&replan_file, cib(placed, Some(0))));
    if let Err(error) = written {
        entries.insert(
            "pacemaker".to_string(),
            json!({ "error": format!("cannot write the CIB: {error}") }),
        );
        return entries;
    }
    eprintln!(
        "crm_simulate on {} (cap {} s) ...",
        place_file.display(),
        timeout.as_secs()
    );
    let place = run_crm_simulate(&place_file, timeout);
    eprintln!(
        "crm_simulate on {} (cap {} s) ...",
        replan_file.display(),
        timeout.as_secs()
    );
    let replan = run_crm_simulate(&replan_file, timeout);
    let mut pacemaker = serde_json::Map::new();
    let mut peak = 0.0f64;
    let mut ratio = serde_json::Map::new();
    for (name, outcome, ours_ms) in [
        ("place_s", &place, place_ms),
        ("replan_s", &replan, replan_ms),
    ] {
        match outcome {
            Ok(run) => {
                pacemaker.insert(name.to_string(), json!(round(run.seconds)));
                peak = peak.max(run.peak_rss_mb);
                let key = name.trim_end_matches("_s");
                ratio.insert(
                    key.to_string(),
                    json!(round(run.seconds * 1000.0 / ours_ms.max(0.001))),
                );
            }
            Err(reason) => {
                pacemaker.insert(name.to_string(), serde_json::Value::Null);
                pacemaker.insert(format!("{name}_skipped"), json!(reason));
            }
        }
    }
    pacemaker.insert("peak_rss_mb".to_string(), json!(round(peak)));
    entries.insert(
        "pacemaker".to_string(),
        serde_json::Value::Object(pacemaker),
    );
    entries.insert("ratio".to_string(), serde_json::Value::Object(ratio));
    // Keep the CIB files for inspection only when asked; they can be large.
    if std::env::var_os("HAFEN_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&directory);
    }
    entries
}

struct CrmRun {
    seconds: f64,
    peak_rss_mb: f64,
}

/// Runs `crm_simulate -x FILE` (computes the transition without executing it), polling its
/// peak memory from /proc; kills it after `timeout`.
fn run_crm_simulate(file: &Path, timeout: Duration) -> Result<CrmRun, String> {
    let started = Instant::now();
    let mut child = Command::new("crm_simulate")
        .arg("--xml-file")
        .arg(file)
        .arg("--run")
        .arg("--quiet")
        .env("PCMK_logfile", "/dev/null")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| {
            format!("cannot run crm_simulate (apt-get install pacemaker-cli-utils): {error}")
        })?;
    let status_path: PathBuf = PathBuf::from(format!("/proc/{}/status", child.id()));
    let mut peak = 0.0f64;
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_path) {
            peak = peak.max(hwm_mb(&status));
        }
        match child.try_wait() {
            Ok(Some(status)) => {
                let seconds = started.elapsed().as_secs_f64();
                if !status.success() {
                    let mut stderr = String::new();
                    if let Some(mut pipe) = child.stderr.take() {
                        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                    }
                    let last = stderr.lines().last().unwrap_or("").to_string();
                    return Err(format!("crm_simulate failed ({status}): {last}"));
                }
                return Ok(CrmRun {
                    seconds,
                    peak_rss_mb: peak,
                });
            }
            Ok(None) => {}
            Err(error) => return Err(format!("cannot wait for crm_simulate: {error}")),
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("did not finish within {} s", timeout.as_secs()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn pacemaker_score(score: Score) -> String {
    score.to_string()
}

/// The cluster as a Pacemaker CIB: same hosts, capacities, VMs (as `ocf:pacemaker:Dummy`
/// with `allow-migrate`), constraints and placement strategy. With `down_host`, that host is
/// cleanly down (fencing is off, so its resources are simply recovered).
fn cib(view: &ClusterView, down_host: Option<usize>) -> String {
    let mut xml = String::new();
    let strategy = match view.options.placement_strategy {
        PlacementStrategy::Default => "default",
        PlacementStrategy::Utilization => "utilization",
        PlacementStrategy::Balanced => "balanced",
        PlacementStrategy::Minimal => "minimal",
    };
    let _ = write!(
        xml,
        r#"<cib crm_feature_set="3.17.4" validate-with="pacemaker-3.9" epoch="1" num_updates="0" admin_epoch="0" have-quorum="1" dc-uuid="1">
  <configuration>
    <crm_config>
      <cluster_property_set id="options">
        <nvpair id="o-stonith" name="stonith-enabled" value="false"/>
        <nvpair id="o-strategy" name="placement-strategy" value="{strategy}"/>
        <nvpair id="o-quorum" name="no-quorum-policy" value="ignore"/>
      </cluster_property_set>
    </crm_config>
    <nodes>
"#
    );
    for (index, host) in view.hosts.iter().enumerate() {
        let name = xml_escape(&host.name);
        let _ = writeln!(xml, r#"      <node id="{}" uname="{name}">"#, index + 1);
        let _ = writeln!(
            xml,
            r#"        <instance_attributes id="{name}-attributes">"#
        );
        for (key, value) in &host.attributes {
            let _ = writeln!(
                xml,
                r#"          <nvpair id="{name}-{key}" name="{key}" value="{}"/>"#,
                xml_escape(value)
            );
        }
        let _ = writeln!(xml, r#"        </instance_attributes>"#);
        let _ = writeln!(xml, r#"        <utilization id="{name}-utilization">"#);
        for (key, value) in &host.capacity {
            let _ = writeln!(
                xml,
                r#"          <nvpair id="{name}-u-{key}" name="{key}" value="{value}"/>"#
            );
        }
        let _ = writeln!(xml, "        </utilization>\n      </node>");
    }
    let _ = writeln!(
        xml,
        r#"    </nodes>
    <resources>"#
    );
    for resource in &view.resources {
        let name = xml_escape(&resource.name);
        let _ = writeln!(
            xml,
            r#"      <primitive id="{name}" class="ocf" provider="pacemaker" type="Dummy">"#
        );
        let _ = writeln!(
            xml,
            r#"        <meta_attributes id="{name}-meta"><nvpair id="{name}-migrate" name="allow-migrate" value="{}"/></meta_attributes>"#,
            resource.allow_migrate
        );
        let _ = writeln!(xml, r#"        <utilization id="{name}-utilization">"#);
        for (key, value) in &resource.utilization {
            let _ = writeln!(
                xml,
                r#"          <nvpair id="{name}-u-{key}" name="{key}" value="{value}"/>"#
            );
        }
        let _ = writeln!(xml, "        </utilization>\n      </primitive>");
    }
    let _ = writeln!(
        xml,
        r#"    </resources>
    <constraints>"#
    );
    for location in &view.constraints.locations {
        if let (Some(host), Some(score)) = (&location.host, location.score) {
            let _ = writeln!(
                xml,
                r#"      <rsc_location id="{}" rsc="{}" node="{}" score="{}"/>"#,
                xml_escape(&location.id),
                xml_escape(&location.resource),
                xml_escape(host),
                pacemaker_score(score)
            );
        }
    }
    for colocation in &view.constraints.colocations {
        let _ = writeln!(
            xml,
            r#"      <rsc_colocation id="{}" rsc="{}" with-rsc="{}" score="{}"/>"#,
            xml_escape(&colocation.id),
            xml_escape(&colocation.dependent),
            xml_escape(&colocation.primary),
            pacemaker_score(colocation.score)
        );
    }
    for ordering in &view.constraints.orderings {
        let kind = match ordering.kind {
            OrderingKind::Mandatory => "Mandatory",
            OrderingKind::Optional => "Optional",
        };
        let _ = writeln!(
            xml,
            r#"      <rsc_order id="{}" first="{}" then="{}" kind="{kind}" symmetrical="{}"/>"#,
            xml_escape(&ordering.id),
            xml_escape(&ordering.first),
            xml_escape(&ordering.then),
            ordering.symmetrical
        );
    }
    let stickiness = view.options.default_stickiness;
    let _ = write!(
        xml,
        r#"    </constraints>
    <rsc_defaults>
      <meta_attributes id="rsc-options"><nvpair id="rsc-stickiness" name="resource-stickiness" value="{stickiness}"/></meta_attributes>
    </rsc_defaults>
  </configuration>
  <status>
"#
    );
    for (index, host) in view.hosts.iter().enumerate() {
        let name = xml_escape(&host.name);
        let up = down_host != Some(index) && host.state == HostState::Online;
        let (crmd, join, expected, in_ccm) = if up {
            ("online", "member", "member", "true")
        } else {
            ("offline", "down", "down", "false")
        };
        let _ = writeln!(
            xml,
            r#"    <node_state id="{}" uname="{name}" in_ccm="{in_ccm}" crmd="{crmd}" join="{join}" expected="{expected}">"#,
            index + 1
        );
        // Probe history for every resource on every live host (running or not), as a real
        // cluster has it; without it crm_simulate would also plan hosts x resources probes.
        if up {
            let _ = writeln!(
                xml,
                "      <lrm id=\"{}\">\n        <lrm_resources>",
                index + 1
            );
            for resource in &view.resources {
                let running = resource
                    .instances
                    .iter()
                    .any(|instance| instance.host == host.name);
                let rsc = xml_escape(&resource.name);
                let (operation, rc) = if running {
                    ("start", 0)
                } else {
                    ("monitor", 7)
                };
                let _ = writeln!(
                    xml,
                    r#"          <lrm_resource id="{rsc}" class="ocf" provider="pacemaker" type="Dummy"><lrm_rsc_op id="{rsc}_last_0" operation_key="{rsc}_{operation}_0" operation="{operation}" crm-debug-origin="bench" crm_feature_set="3.17.4" transition-key="1:1:0:bench" transition-magic="0:{rc};1:1:0:bench" call-id="1" rc-code="{rc}" op-status="0" interval="0" exec-time="1" queue-time="0" op-digest="f2317cad3d54cec5d7d7aa7d0bf35cf8" on_node="{name}"/></lrm_resource>"#
                );
            }
            let _ = writeln!(xml, "        </lrm_resources>\n      </lrm>");
        }
        let _ = writeln!(xml, "    </node_state>");
    }
    let _ = writeln!(xml, "  </status>\n</cib>");
    xml
}
