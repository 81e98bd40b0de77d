//! How the cluster reacts to every outcome of a resource agent, with the test agent
//! `ocf:hafentest:Coded` (tests/it/agents/Coded) installed under the system's OCF root the
//! way an administrator installs a custom agent: each OCF exit code of start, a hanging
//! start, garbage output and a failing monitor, each with its documented reaction (soft:
//! count a failure and recover; hard: ban from that host; fatal: stop everywhere) and a
//! clear event.

use crate::support::*;
use hafen_api_types::{EventEntry, ResourceAddRequest, ResourceInfo};
use hafen_client::Client;
use std::time::Duration;

const INFINITY: u32 = 1_000_000;

fn install_agent() {
    let dir = std::path::Path::new("/usr/lib/ocf/resource.d/hafentest");
    std::fs::create_dir_all(dir).unwrap();
    let source = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/agents/Coded");
    let target = dir.join("Coded");
    // Through a temporary name: a running agent is never rewritten in place.
    let temporary = dir.join(".Coded.new");
    std::fs::copy(source, &temporary).unwrap();
    std::fs::rename(&temporary, &target).unwrap();
}

fn coded(name: &str, parameters: &[(&str, &str)], timeout_ms: u64) -> ResourceAddRequest {
    ResourceAddRequest {
        name: name.into(),
        agent: "ocf:hafentest:Coded".into(),
        parameters: parameters
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        monitor_interval_ms: Some(1000),
        timeout_ms: Some(timeout_ms),
        host: Some("node1".into()),
        start: Some(true),
        clone: None,
    }
}

/// The first event reporting `name` failed.
async fn first_failure(client: &Client, name: &str) -> Option<EventEntry> {
    client
        .events(None)
        .await
        .ok()?
        .into_iter()
        .find(|event| event.message.starts_with(&format!("{name} failed")))
}

/// Adds the resource; its first start may fail (that is the point), the addition may not.
fn add(runtime: &tokio::runtime::Runtime, client: &Client, request: &ResourceAddRequest) {
    if let Err(error) = runtime.block_on(client.add_resource(request)) {
        assert!(
            error
                .to_string()
                .contains(&format!("starting {} on", request.name)),
            "adding {}: {error}",
            request.name
        );
    }
    runtime.block_on(client.resource(&request.name)).unwrap();
}

async fn resource(client: &Client, name: &str) -> Option<ResourceInfo> {
    client.resource(name).await.ok()
}

#[test]
fn every_start_exit_code_meets_its_reaction_with_a_clear_event() {
    let _serial = serial();
    install_agent();
    let cluster = DevCluster::up(3, &[]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));
    for code in 0..=9 {
        let code = code.to_string();
        add(
            &runtime,
            &client,
            &coded(&format!("code{code}"), &[("start_code", &code)], 5_000),
        );
    }
    let running = runtime.block_on(eventually(
        "code0 to run",
        Duration::from_secs(30),
        || async {
            resource(&client, "code0")
                .await
                .filter(|r| r.state == "running")
        },
    ));
    assert_eq!(running.node.as_deref(), Some("node1"));
    for code in 1..=9u32 {
        let name = format!("code{code}");
        let event = runtime.block_on(eventually(
            &format!("{name} to fail"),
            Duration::from_secs(60),
            || async { first_failure(&client, &name).await },
        ));
        println!("exit {code}: {}", event.message);
        assert!(
            event.message.contains(&format!("(exit code {code})"))
                || event.message.contains(&format!("exit code {code}")),
            "the event names the exit code: {}",
            event.message
        );
        assert!(
            event.message.contains("node1"),
            "the event names the host: {}",
            event.message
        );
        let hard = event.message.contains("hard error: banned from this host");
        let fatal = event.message.contains("fatal error: stopped everywhere");
        match code {
            2..=5 => assert!(
                hard && !fatal,
                "exit {code} is a hard error: {}",
                event.message
            ),
            6 => assert!(fatal && !hard, "exit 6 is fatal: {}", event.message),
            _ => assert!(
                !hard && !fatal,
                "exit {code} is a soft error: {}",
                event.message
            ),
        }
        if (1..=9).contains(&code) && code != 6 && !(2..=5).contains(&code) {
            assert!(
                event
                    .message
                    .contains(&format!("start told to exit {code}"))
                    || code == 7,
                "the agent's exit reason is in the event: {}",
                event.message
            );
        }
    }
    // Hard: banned from node1 only. Fatal: banned everywhere, and never started again.
    let hard = runtime.block_on(resource(&client, "code5")).unwrap();
    assert_eq!(hard.fail_counts.get("node1"), Some(&INFINITY), "{hard:?}");
    let fatal = runtime.block_on(eventually(
        "code6 to be stopped",
        Duration::from_secs(30),
        || async {
            resource(&client, "code6")
                .await
                .filter(|r| r.state != "starting")
        },
    ));
    for node in ["node1", "node2", "node3"] {
        assert_eq!(fatal.fail_counts.get(node), Some(&INFINITY), "{fatal:?}");
    }
    let soft = runtime.block_on(resource(&client, "code1")).unwrap();
    let soft_count = soft.fail_counts.get("node1").copied().unwrap_or(0);
    assert!((1..INFINITY).contains(&soft_count), "{soft:?}");
    let starts = |events: &[EventEntry]| {
        events
            .iter()
            .filter(|event| event.message.starts_with("code6 starting"))
            .count()
    };
    let before = starts(&runtime.block_on(client.events(None)).unwrap());
    std::thread::sleep(Duration::from_secs(3)); // a window in which a retry would show
    let after = starts(&runtime.block_on(client.events(None)).unwrap());
    assert_eq!(before, 1, "code6 was started {before} times");
    assert_eq!(after, before, "code6 was retried after a fatal error");
    // `resource cleanup` forgets the failures; a fatal one may then be tried again.
    runtime.block_on(client.cleanup_resource("code6")).unwrap();
    let cleaned = runtime.block_on(resource(&client, "code6")).unwrap();
    assert!(
        cleaned.fail_counts.values().all(|count| *count < INFINITY),
        "{cleaned:?}"
    );
}

#[test]
fn a_hanging_agent_times_out_garbage_is_contained_and_a_failing_monitor_recovers() {
    let _serial = serial();
    install_agent();
    let cluster = DevCluster::up(3, &[]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));
    add(
        &runtime,
        &client,
        &coded("hangs", &[("hang", "start")], 2_000),
    );
    add(
        &runtime,
        &client,
        &coded("noisy", &[("garbage", "1")], 5_000),
    );
    // Starts fine, then its monitor says "not installed" (5): a hard error on that host.
    add(
        &runtime,
        &client,
        &coded("vanishes", &[("monitor_code", "5")], 5_000),
    );

    let hang = runtime.block_on(eventually(
        "the hanging start to time out",
        Duration::from_secs(60),
        || async { first_failure(&client, "hangs").await },
    ));
    println!("hang: {}", hang.message);
    assert!(hang.message.contains("timed out"), "{}", hang.message);
    assert!(!hang.message.contains("hard error") && !hang.message.contains("fatal error"));

    let noisy = runtime.block_on(eventually(
        "the noisy resource to run",
        Duration::from_secs(30),
        || async {
            resource(&client, "noisy")
                .await
                .filter(|r| r.state == "running")
        },
    ));
    assert!(noisy.last_error.is_none(), "{noisy:?}");

    let vanished = runtime.block_on(eventually(
        "the failing monitor to be noticed",
        Duration::from_secs(60),
        || async { first_failure(&client, "vanishes").await },
    ));
    println!("monitor 5: {}", vanished.message);
    assert!(
        vanished.message.contains("by the monitor")
            && vanished
                .message
                .contains("hard error: banned from this host"),
        "{}",
        vanished.message
    );
    // Every event stays one readable line: no agent garbage reaches the log.
    for event in runtime.block_on(client.events(None)).unwrap() {
        assert!(
            !event.message.chars().any(|c| c.is_control()),
            "control characters in an event: {:?}",
            event.message
        );
    }
}
