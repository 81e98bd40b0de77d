//! `bench/migration`: orchestration overhead of `hafen vm migrate` over QEMU's own migration time, and VM start latency.
//!
//! Starts a 3-host namespace dev cluster with one test-guest VM (needs root, iproute2,
//! QEMU and the guest from `guest/build.sh`, found through `HAFEN_GUEST_*` or by running
//! the script), migrates the VM around the hosts, stops and starts it, and prints a JSON
//! summary as its last line.

use hafen_client::Client;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn round(value: f64) -> f64 {
    (value * 10.0).round() / 10.0
}

fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut hafen = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("hafen")))
        .unwrap_or_else(|| PathBuf::from("hafen"));
    let mut migrations = 10usize;
    let mut starts = 3usize;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--hafen" => hafen = PathBuf::from(value()),
            "--migrations" => migrations = value().parse().expect("--migrations takes a number"),
            "--starts" => starts = value().parse().expect("--starts takes a number"),
            other => {
                panic!("unknown argument {other} (use --hafen PATH, --migrations N, --starts N)")
            }
        }
    }
    let mut up = Command::new(&hafen);
    if std::env::var_os("HAFEN_GUEST_KERNEL").is_none() {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../guest/build.sh");
        let output = Command::new("bash")
            .arg(&script)
            .output()
            .expect("guest/build.sh runs");
        assert!(
            output.status.success(),
            "guest/build.sh failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            if let Some((key, value)) = line.split_once('=') {
                up.env(key, value.trim_matches('"'));
            }
        }
    }
    // Held while the dev cluster runs: tests and other benchmarks use the same namespaces.
    let _lock = hafen_bench::machine_lock().unwrap_or_else(|error| panic!("{error}"));
    let dir = std::env::temp_dir().join(format!("hafen-bench-migration-{}", std::process::id()));
    let output = up
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
        .arg(&dir)
        .output()
        .expect("hafen runs");
    let down = || {
        // `HAFEN_TEST_LOGS=DIR` keeps the daemons' logs, as for the tests.
        if let Some(keep) = std::env::var_os("HAFEN_TEST_LOGS").map(PathBuf::from) {
            let _ = std::fs::create_dir_all(&keep);
            for node in ["node1", "node2", "node3"] {
                let _ = std::fs::copy(
                    dir.join(node).join("daemon.log"),
                    keep.join(format!("{node}.log")),
                );
            }
        }
        let _ = Command::new(&hafen)
            .args(["dev-cluster", "down", "--dir"])
            .arg(&dir)
            .output();
        let _ = std::fs::remove_dir_all(&dir);
    };
    if !output.status.success() {
        down();
        panic!(
            "dev-cluster up failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).unwrap()).unwrap();
    let ca_pem = std::fs::read_to_string(file["ca_file"].as_str().unwrap()).unwrap();
    let servers: Vec<String> = file["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["api_url"].as_str().unwrap().to_string())
        .collect();
    let hosts: Vec<String> = file["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| node["name"].as_str().unwrap().to_string())
        .collect();
    let service_url = file["vms"][0]["service_url"].as_str().unwrap().to_string();
    let client = Client::new(
        servers,
        &ca_pem,
        Some(file["admin_token"].as_str().unwrap().to_string()),
    )
    .unwrap();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let summary = runtime.block_on(async {
        let mut overhead = Vec::new();
        let mut qemu = Vec::new();
        let mut downtime = Vec::new();
        let mut client_total = Vec::new();
        let mut prepare_destination = Vec::new();
        for round_index in 0..migrations {
            let current = client.vm("vm1").await.unwrap().node.unwrap();
            let position = hosts.iter().position(|host| *host == current).unwrap();
            let target = hosts[(position + 1 + round_index % 2) % hosts.len()].clone();
            let target = if target == current {
                hosts[(position + 1) % hosts.len()].clone()
            } else {
                target
            };
            let started = Instant::now();
            let result = client.migrate_vm("vm1", Some(&target), None).await.unwrap();
            let total_ms = started.elapsed().as_secs_f64() * 1000.0;
            client_total.push(total_ms);
            qemu.push(result.qemu_total_time_ms as f64);
            downtime.push(result.downtime_ms as f64);
            overhead.push(total_ms - result.qemu_total_time_ms as f64);
            let step = |name: &str| {
                result
                    .step_ms
                    .iter()
                    .find(|(step, _)| step == name)
                    .map(|(_, ms)| *ms as f64)
                    .unwrap_or(0.0)
            };
            // The destination's QEMU start (the migrating step commits alongside); the
            // source's exit is not waited for.
            prepare_destination.push(step("prepare destination"));
            if round_index == migrations - 1 {
                println!("steps of the last migration (ms): {:?}", result.step_ms);
            }
            // Twice the goal: name the steps of an outlier (a stalled commit, a slow start).
            if total_ms - result.qemu_total_time_ms as f64 > 100.0 {
                println!(
                    "slow migration {round_index} ({} -> {}): {total_ms:.1} ms, QEMU {} ms, steps (ms): {:?}",
                    result.from, result.to, result.qemu_total_time_ms, result.step_ms
                );
            }
        }
        let mut to_running = Vec::new();
        let mut to_service = Vec::new();
        for _ in 0..starts {
            client.vm_action("vm1", "stop").await.unwrap();
            let started = Instant::now();
            client.vm_action("vm1", "start").await.unwrap();
            to_running.push(started.elapsed().as_secs_f64() * 1000.0);
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                if let Ok(response) = http.get(&service_url).send().await
                    && response.status().is_success()
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the guest did not answer within 120 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            to_service.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        let mut own: Vec<f64> = overhead
            .iter()
            .zip(&prepare_destination)
            .map(|(overhead, prepare)| overhead - prepare)
            .collect();
        for values in [
            &mut overhead,
            &mut qemu,
            &mut downtime,
            &mut client_total,
            &mut to_running,
            &mut to_service,
            &mut prepare_destination,
            &mut own,
        ] {
            values.sort_by(|a, b| a.partial_cmp(b).unwrap());
        }
        json!({
            "migrations": migrations,
            "overhead_p50_ms": round(percentile(&overhead, 0.5)),
            "overhead_max_ms": round(percentile(&overhead, 1.0)),
            "overhead_prepare_destination_p50_ms": round(percentile(&prepare_destination, 0.5)),
            "overhead_hafen_own_p50_ms": round(percentile(&own, 0.5)),
            "qemu_total_p50_ms": round(percentile(&qemu, 0.5)),
            "downtime_p50_ms": round(percentile(&downtime, 0.5)),
            "hafen_migrate_p50_ms": round(percentile(&client_total, 0.5)),
            "start_to_running_p50_ms": round(percentile(&to_running, 0.5)),
            "start_to_service_p50_ms": round(percentile(&to_service, 0.5)),
            "goal": {"overhead_p50_ms": 50},
            "accelerator": "tcg or kvm as probed",
        })
    });
    down();
    println!(
        "hafen vm migrate (client-measured) minus QEMU's own total time, over {migrations} migrations; start latency over {starts} starts"
    );
    println!("{summary}");
}
