//! `bench/cluster`: commit latency of a configuration change on 3 voters, and a daemon's idle memory.
//!
//! Starts a loopback dev cluster with the `hafen` binary next to this executable (or
//! `--hafen PATH`), writes through the leader one change at a time, then lets the cluster
//! idle and reads each daemon's resident memory. The last line is a JSON summary.

use hafen_client::Client;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// corosync + pacemaker idle RSS measured on this machine (issue 2), for the ratio.
const PACEMAKER_IDLE_RSS_MB: f64 = 205.0;

struct Options {
    hafen: PathBuf,
    changes: usize,
    idle_s: u64,
}

fn options() -> Options {
    let mut hafen = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("hafen")))
        .unwrap_or_else(|| PathBuf::from("hafen"));
    let mut changes = 1000;
    let mut idle_s = 5;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--hafen" => hafen = PathBuf::from(value()),
            "--changes" => changes = value().parse().expect("--changes takes a number"),
            "--idle-s" => idle_s = value().parse().expect("--idle-s takes seconds"),
            other => panic!("unknown argument {other} (use --hafen PATH, --changes N, --idle-s S)"),
        }
    }
    Options {
        hafen,
        changes,
        idle_s,
    }
}

fn percentile(sorted: &[f64], fraction: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * fraction).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn rss_mb(pid: u64) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn main() {
    let options = options();
    let dir = std::env::temp_dir().join(format!("hafen-bench-cluster-{}", std::process::id()));
    let up = Command::new(&options.hafen)
        .args(["dev-cluster", "up", "--nodes", "3", "--dir"])
        .arg(&dir)
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", options.hafen.display()));
    let down = || {
        let _ = Command::new(&options.hafen)
            .args(["dev-cluster", "down", "--dir"])
            .arg(&dir)
            .output();
        let _ = std::fs::remove_dir_all(&dir);
    };
    if !up.status.success() {
        down();
        panic!(
            "dev-cluster up failed: {}",
            String::from_utf8_lossy(&up.stderr)
        );
    }
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cluster.json")).unwrap()).unwrap();
    let ca_pem = std::fs::read_to_string(file["ca_file"].as_str().unwrap()).unwrap();
    let token = file["admin_token"].as_str().unwrap().to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let summary = runtime.block_on(async {
        let all: Vec<String> = file["nodes"].as_array().unwrap().iter().map(|node| node["api_url"].as_str().unwrap().to_string()).collect();
        let any = Client::new(all.clone(), &ca_pem, Some(token.clone())).unwrap();
        let leader = any.status().await.unwrap().leader.unwrap();
        let leader_url = file["nodes"].as_array().unwrap().iter().find(|node| node["name"] == leader.as_str()).unwrap()["api_url"].as_str().unwrap().to_string();
        let client = Client::new(vec![leader_url], &ca_pem, Some(token)).unwrap();
        // Idle first: a settled cluster doing nothing, as an operator's hosts are most of the time.
        tokio::time::sleep(Duration::from_secs(options.idle_s)).await;
        let pids: Vec<u64> = file["nodes"].as_array().unwrap().iter().map(|node| node["pid"].as_u64().unwrap()).collect();
        let idle: Vec<f64> = pids.iter().map(|pid| rss_mb(*pid)).collect();
        for value in 0..50 {
            client.set_property("default-resource-stickiness", &value.to_string()).await.unwrap();
        }
        let mut latencies = Vec::with_capacity(options.changes);
        for value in 0..options.changes {
            let started = Instant::now();
            client.set_property("default-resource-stickiness", &(value + 100).to_string()).await.unwrap();
            latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let loaded: Vec<f64> = pids.iter().map(|pid| rss_mb(*pid)).collect();
        let max_rss = idle.iter().cloned().fold(0.0, f64::max);
        let max_loaded = loaded.iter().cloned().fold(0.0, f64::max);
        json!({
            "nodes": 3,
            "changes": options.changes,
            "commit_p50_ms": (percentile(&latencies, 0.50) * 1000.0).round() / 1000.0,
            "commit_p99_ms": (percentile(&latencies, 0.99) * 1000.0).round() / 1000.0,
            "commit_max_ms": (latencies[latencies.len() - 1] * 1000.0).round() / 1000.0,
            "idle_rss_mb": (max_rss * 10.0).round() / 10.0,
            "idle_rss_mb_per_node": idle.iter().map(|mb| (mb * 10.0).round() / 10.0).collect::<Vec<_>>(),
            "rss_after_changes_mb": (max_loaded * 10.0).round() / 10.0,
            "goal": {"commit_p50_ms": 5, "commit_p99_ms": 20, "idle_rss_mb": 30},
            "pacemaker_idle_rss_mb_reference": PACEMAKER_IDLE_RSS_MB,
            "rss_ratio": ((PACEMAKER_IDLE_RSS_MB / max_rss) * 10.0).round() / 10.0,
        })
    });
    down();
    println!(
        "commit latency through the leader over {} changes, idle RSS after {} s",
        options.changes, options.idle_s
    );
    println!("{summary}");
}
