//! Resource agents in a real cluster: Debian's unchanged `ocf:heartbeat:Dummy` (parameter
//! validation at configuration time, probes that find copies started by hand, monitor-driven
//! recovery), a service address by `ocf:heartbeat:IPaddr2` failing over with its host, and
//! `systemd:` units refused where systemd does not run.

use crate::support::*;
use hafen_api_types::ResourceAddRequest;
use std::path::PathBuf;
use std::time::Duration;

const DUMMY: &str = "/usr/lib/ocf/resource.d/heartbeat/Dummy";

fn state_dir(cluster: &DevCluster, node: &str) -> PathBuf {
    PathBuf::from(cluster.node(node)["data_dir"].as_str().unwrap()).join("ocf")
}

/// Runs the agent by hand, as an administrator would before the cluster manages it.
fn start_by_hand(cluster: &DevCluster, node: &str, name: &str) {
    let dir = state_dir(cluster, node);
    std::fs::create_dir_all(&dir).unwrap();
    let status = std::process::Command::new(DUMMY)
        .arg("start")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("OCF_ROOT", "/usr/lib/ocf")
        .env("OCF_RESOURCE_INSTANCE", name)
        .env("HA_RSCTMP", &dir)
        .env("HA_LOGFACILITY", "none")
        .status()
        .unwrap_or_else(|error| panic!("{DUMMY} must be installed (resource-agents): {error}"));
    assert!(status.success());
}

fn runs_on(cluster: &DevCluster, node: &str, name: &str) -> bool {
    state_dir(cluster, node)
        .join(format!("Dummy-{name}.state"))
        .exists()
}

fn add(name: &str, parameters: &[(&str, &str)]) -> ResourceAddRequest {
    ResourceAddRequest {
        name: name.into(),
        agent: "ocf:heartbeat:Dummy".into(),
        parameters: parameters
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        monitor_interval_ms: Some(1000),
        timeout_ms: Some(20_000),
        host: None,
        start: Some(true),
        clone: None,
    }
}

#[test]
fn ocf_resources_are_validated_probed_monitored_and_recovered() {
    let _serial = serial();
    let cluster = DevCluster::up(3, &[]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));

    // A parameter the agent's meta-data does not know is refused, naming it; nothing changes.
    let error = runtime
        .block_on(client.add_resource(&add("web", &[("colour", "red")])))
        .unwrap_err();
    assert!(error.to_string().contains("colour"), "{error}");
    assert!(runtime.block_on(client.resources()).unwrap().is_empty());

    // Started by hand on two hosts before it is added: the probe keeps one, stops the other.
    start_by_hand(&cluster, "node2", "web");
    start_by_hand(&cluster, "node3", "web");
    let added = runtime
        .block_on(client.add_resource(&add("web", &[("fake", "hello")])))
        .unwrap();
    assert_eq!(
        (added.state.as_str(), added.node.as_deref()),
        ("running", Some("node2")),
        "{added:?}"
    );
    assert!(
        runs_on(&cluster, "node2", "web"),
        "the kept copy was stopped"
    );
    assert!(
        !runs_on(&cluster, "node3", "web"),
        "the second copy still runs"
    );
    assert!(!runs_on(&cluster, "node1", "web"));
    let events = runtime.block_on(client.events(None)).unwrap();
    assert!(
        events.iter().any(|event| event
            .message
            .contains("probe found it active on node2, node3")),
        "{events:?}"
    );

    // The agent's monitor notices a crash (state file gone); the cluster restarts it.
    std::fs::remove_file(state_dir(&cluster, "node2").join("Dummy-web.state")).unwrap();
    let recovered = runtime.block_on(eventually(
        "web to be restarted after its failure",
        Duration::from_secs(30),
        || async {
            let resource = client.resource("web").await.ok()?;
            (resource.state == "running" && resource.fail_counts.values().sum::<u32>() == 1)
                .then_some(resource)
        },
    ));
    let host = recovered.node.unwrap();
    assert!(runs_on(&cluster, &host, "web"));
    let events = runtime.block_on(client.events(None)).unwrap();
    assert!(
        events
            .iter()
            .any(|event| event.message.contains("found stopped by the monitor")),
        "no clear failure event"
    );

    // Stop and delete leave nothing running anywhere.
    runtime.block_on(client.delete_resource("web")).unwrap();
    for node in ["node1", "node2", "node3"] {
        assert!(!runs_on(&cluster, node, "web"), "web still runs on {node}");
    }
}

/// `hafen ARGS` as an operator runs it against the dev cluster.
fn cli(cluster: &DevCluster, args: &[&str]) -> std::process::Output {
    hafen()
        .env(
            "HAFEN_CREDENTIALS",
            cluster.file["credentials_file"].as_str().unwrap(),
        )
        .env_remove("HAFEN_SERVER")
        .env_remove("HAFEN_TOKEN")
        .args(args)
        .output()
        .unwrap()
}

// Proves a `systemd:` resource is refused before anything is committed where the leader
// cannot run it. On a host without systemd (this machine: PID 1 is not systemd) the refusal
// names the node and says systemd is not running, and `agent list` shows no units; where
// systemd runs, an unknown unit is refused as not installed. The CLI prints the refusal and
// exits non-zero; the resource list and the configuration epoch are unchanged.
#[test]
fn a_systemd_resource_is_refused_where_it_cannot_run() {
    let _serial = serial();
    let cluster = DevCluster::up(1, &[]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));
    let before = runtime.block_on(client.status()).unwrap();
    let systemd_runs = std::path::Path::new("/run/systemd/system").is_dir();
    let (agent, refusal) = if systemd_runs {
        (
            "systemd:hafen-test-no-such-unit",
            "not installed".to_string(),
        )
    } else {
        (
            "systemd:cron",
            "node node1 cannot run systemd:cron: systemd is not running".to_string(),
        )
    };

    let output = cli(&cluster, &["resource", "add", "svc", agent]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "the resource was added: {stderr}");
    assert!(stderr.contains(&refusal), "{stderr}");
    let request = ResourceAddRequest {
        name: "svc".into(),
        agent: agent.into(),
        parameters: Default::default(),
        monitor_interval_ms: None,
        timeout_ms: None,
        host: None,
        start: Some(true),
        clone: None,
    };
    let error = runtime.block_on(client.add_resource(&request)).unwrap_err();
    assert!(error.to_string().contains(&refusal), "{error}");

    let after = runtime.block_on(client.status()).unwrap();
    assert_eq!(
        after.epoch, before.epoch,
        "a configuration change was committed"
    );
    assert!(runtime.block_on(client.resources()).unwrap().is_empty());
    let listed = cli(&cluster, &["resource", "list"]);
    assert!(listed.status.success());
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("svc"));

    let agents = runtime.block_on(client.agents()).unwrap();
    assert!(agents.iter().any(|agent| agent == "ocf:heartbeat:Dummy"));
    if !systemd_runs {
        assert!(
            !agents.iter().any(|agent| agent.starts_with("systemd:")),
            "{agents:?}"
        );
        let info = cli(&cluster, &["agent", "info", "systemd:cron"]);
        let stderr = String::from_utf8_lossy(&info.stderr);
        assert!(!info.status.success());
        assert!(stderr.contains("systemd is not running"), "{stderr}");
    }
}

const SERVICE_IP: &str = "10.213.0.50";

fn ip_json(args: &[&str]) -> serde_json::Value {
    let output = std::process::Command::new("ip")
        .arg("-j")
        .args(args)
        .output()
        .unwrap();
    assert!(output.status.success(), "ip {args:?} failed");
    serde_json::from_slice(&output.stdout).unwrap_or(serde_json::Value::Null)
}

/// The hardware address of a namespace host's bridge: the one its ARP answers carry.
fn bridge_mac(namespace: &str) -> String {
    ip_json(&["-n", namespace, "link", "show", "br0"])[0]["address"]
        .as_str()
        .unwrap()
        .to_string()
}

fn holds_address(namespace: &str, address: &str) -> bool {
    let links = ip_json(&["-n", namespace, "addr", "show", "dev", "br0"]);
    links[0]["addr_info"]
        .as_array()
        .is_some_and(|addresses| addresses.iter().any(|entry| entry["local"] == address))
}

/// Which bridge answers for `address` from the root namespace, if any. A TCP connection
/// attempt to the API port makes the root namespace resolve the address by ARP; the host
/// holding it answers (no daemon listens on this address, so its kernel refuses the
/// connection: an answer all the same), and the root's neighbour entry then names that
/// host's bridge. Nobody holding it means no answer at all.
async fn answering_mac(address: &str) -> Option<String> {
    let connect = tokio::net::TcpStream::connect((address, 7000));
    match tokio::time::timeout(Duration::from_secs(1), connect).await {
        Ok(Ok(_)) => {}
        Ok(Err(error)) if error.kind() == std::io::ErrorKind::ConnectionRefused => {}
        _ => return None,
    }
    let neighbours = ip_json(&["neigh", "show", "to", address]);
    neighbours[0]["lladdr"].as_str().map(str::to_string)
}

/// A power-off as far as a namespace can have one. `fence_hafen_netns` (and `power_off`)
/// kill every process, but the namespace's kernel keeps its addresses and goes on answering
/// ARP and TCP for them, IPaddr2's address included: a powered-off machine answers nothing.
/// So its links go down too, which is what the switch sees when a machine loses power. The
/// service address is deliberately not removed from the dead host: nobody can do that to a
/// machine that is off, and the test must not do the cluster's work for it.
fn power_off_with_network(namespace: &str) {
    power_off(namespace);
    for link in ip_json(&["-n", namespace, "link", "show"])
        .as_array()
        .unwrap()
    {
        let name = link["ifname"].as_str().unwrap();
        if name != "lo" {
            let status = std::process::Command::new("ip")
                .args(["-n", namespace, "link", "set", name, "down"])
                .status()
                .unwrap();
            assert!(status.success(), "cannot take {name} down in {namespace}");
        }
    }
}

// Proves a service address fails over with its host: Debian's unchanged IPaddr2 adds
// 10.213.0.50 to a namespace host's bridge; the root namespace reaches it there (its ARP
// answer carries that host's bridge address). The host is powered off; the leader fences
// it, then starts the address on another host, and the root namespace reaches it there.
#[test]
fn a_service_address_fails_over_with_its_host() {
    let _serial = serial();
    let cluster = DevCluster::up(3, &["--netns"]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));
    let namespace = |host: &str| format!("hafen-{host}");
    let hosts = ["node1", "node2", "node3"];
    let leader = runtime.block_on(leader(&client)).unwrap();
    // Not the leader, so the failure detector is not reset by an election.
    let first = hosts.into_iter().find(|host| *host != leader).unwrap();
    let request = ResourceAddRequest {
        name: "vip".into(),
        agent: "ocf:heartbeat:IPaddr2".into(),
        parameters: [("ip", SERVICE_IP), ("cidr_netmask", "24"), ("nic", "br0")]
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect(),
        monitor_interval_ms: Some(1000),
        timeout_ms: Some(20_000),
        host: Some(first.to_string()),
        start: Some(true),
        clone: None,
    };
    let added = runtime.block_on(client.add_resource(&request)).unwrap();
    assert_eq!(
        (added.state.as_str(), added.node.as_deref()),
        ("running", Some(first)),
        "{added:?}"
    );
    for host in hosts {
        assert_eq!(
            holds_address(&namespace(host), SERVICE_IP),
            host == first,
            "{SERVICE_IP} on {host}"
        );
    }
    let first_mac = bridge_mac(&namespace(first));
    runtime.block_on(eventually(
        "the service address to answer from its first host",
        Duration::from_secs(10),
        || async { (answering_mac(SERVICE_IP).await? == first_mac).then_some(()) },
    ));

    let powered_off = std::time::Instant::now();
    power_off_with_network(&namespace(first));
    let moved = runtime.block_on(eventually(
        "the service address to run on another host",
        Duration::from_secs(60),
        || async {
            let vip = client.resource("vip").await.ok()?;
            let host = vip.node.filter(|host| host != first)?;
            (vip.state == "running").then_some(host)
        },
    ));
    let moved_after = powered_off.elapsed();
    assert!(holds_address(&namespace(&moved), SERVICE_IP));
    let third = hosts
        .into_iter()
        .find(|host| *host != first && *host != moved)
        .unwrap();
    assert!(!holds_address(&namespace(third), SERVICE_IP));
    // The dead host keeps the address in its (dead) configuration, but nothing runs there
    // and its links are down: it answers nothing.
    assert!(namespace_processes(&namespace(first)).is_empty());
    let moved_mac = bridge_mac(&namespace(&moved));
    runtime.block_on(eventually(
        "the service address to answer from its new host",
        Duration::from_secs(30),
        || async { (answering_mac(SERVICE_IP).await? == moved_mac).then_some(()) },
    ));
    let answering_after = powered_off.elapsed();
    println!(
        "{SERVICE_IP} moved from {first} to {moved}: running after {:.2} s, answering after {:.2} s",
        moved_after.as_secs_f64(),
        answering_after.as_secs_f64()
    );

    // I2 from the event log: the old host was fenced before the address started elsewhere.
    let events = runtime.block_on(client.events(None)).unwrap();
    let fenced_at = events
        .iter()
        .position(|event| event.message.starts_with(&format!("node {first} fenced")))
        .expect("fence event");
    let started_at = events
        .iter()
        .position(|event| {
            event
                .message
                .starts_with(&format!("vip starting on {moved}"))
        })
        .expect("start event on the new host");
    assert!(fenced_at < started_at, "{events:?}");
}

/// The id of the first event (after `after`) whose message starts with `prefix`.
fn event_id(events: &[hafen_api_types::EventEntry], after: u64, prefix: &str) -> Option<u64> {
    events
        .iter()
        .find(|event| event.id > after && event.message.starts_with(prefix))
        .map(|event| event.id)
}

// Proves colocation and ordering constraints work in a real cluster as Pacemaker users know
// them: `web` placed with `db` (INFINITY) and ordered after it runs where db runs; stopping
// db stops web (mandatory: web cannot run without db); starting db again starts web only
// after db runs (the event log shows the order). A constraint naming an unknown resource is
// refused naming it and changes nothing; `constraint list` shows every kind.
#[test]
fn colocation_and_ordering_constraints_place_and_sequence_agent_resources() {
    let _serial = serial();
    let cluster = DevCluster::up(3, &[]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));
    runtime
        .block_on(client.add_resource(&add("db", &[("fake", "db")])))
        .unwrap();
    let mut web = add("web", &[("fake", "web")]);
    web.start = Some(false);
    runtime.block_on(client.add_resource(&web)).unwrap();

    let refused = cli(
        &cluster,
        &["constraint", "add", "order", "db", "--then", "nothing"],
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("nothing"), "{stderr}");
    let refused = cli(
        &cluster,
        &["constraint", "add", "colocation", "web", "--score", "100"],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--with"),
        "{refused:?}"
    );
    assert!(runtime.block_on(client.constraints()).unwrap().is_empty());

    for args in [
        &["constraint", "add", "order", "db", "--then", "web"][..],
        &[
            "constraint",
            "add",
            "colocation",
            "web",
            "--with",
            "db",
            "--score",
            "INFINITY",
        ],
    ] {
        let output = cli(&cluster, args);
        assert!(output.status.success(), "{args:?}: {output:?}");
    }
    let listed = cli(&cluster, &["constraint", "list"]);
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(
        table.contains("then web") && table.contains("with db") && table.contains("mandatory"),
        "{table}"
    );

    let both_on_one_host = || async {
        let db = client.resource("db").await.ok()?;
        let web = client.resource("web").await.ok()?;
        (db.state == "running" && web.state == "running" && db.node == web.node).then_some(db.node?)
    };
    assert!(
        cli(&cluster, &["resource", "start", "web"])
            .status
            .success()
    );
    let host = runtime.block_on(eventually(
        "web to run with db",
        Duration::from_secs(30),
        both_on_one_host,
    ));
    assert!(runs_on(&cluster, &host, "web") && runs_on(&cluster, &host, "db"));

    let before_stop = runtime
        .block_on(client.events(None))
        .unwrap()
        .last()
        .map_or(0, |event| event.id);
    assert!(cli(&cluster, &["resource", "stop", "db"]).status.success());
    runtime.block_on(eventually(
        "web to stop with db",
        Duration::from_secs(30),
        || async {
            let web = client.resource("web").await.ok()?;
            let db = client.resource("db").await.ok()?;
            (web.state == "stopped" && db.state == "stopped").then_some(())
        },
    ));
    assert!(!runs_on(&cluster, &host, "web"));

    let before_start = runtime
        .block_on(client.events(None))
        .unwrap()
        .last()
        .map_or(before_stop, |event| event.id);
    assert!(cli(&cluster, &["resource", "start", "db"]).status.success());
    runtime.block_on(eventually(
        "db and then web to run again, together",
        Duration::from_secs(30),
        both_on_one_host,
    ));
    let events = runtime.block_on(client.events(None)).unwrap();
    let db_running = event_id(&events, before_start, "db running").expect("db ran");
    // Every member declared what it can hold (the scheduler's capacity for VMs).
    runtime.block_on(eventually(
        "each node to declare its capacity",
        Duration::from_secs(10),
        || async {
            let events = client.events(None).await.ok()?;
            ["node1", "node2", "node3"]
                .iter()
                .all(|node| {
                    events.iter().any(|event| {
                        event
                            .message
                            .starts_with(&format!("node {node} declares capacity cpu="))
                    })
                })
                .then_some(())
        },
    ));
    let web_starting = event_id(&events, before_start, "web starting").expect("web started");
    assert!(
        db_running < web_starting,
        "web started before db ran: {events:?}"
    );
}

// Proves a group runs its members on one host, starting them in the order listed (the event
// log shows it) and stopping what follows a member that stops; a member of another group or
// an unknown resource is refused, naming it, and changes nothing.
#[test]
fn a_group_runs_its_members_together_and_in_order() {
    let _serial = serial();
    let cluster = DevCluster::up(3, &[]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(30));
    for name in ["ip", "app"] {
        let mut resource = add(name, &[("fake", name)]);
        resource.start = Some(false);
        runtime.block_on(client.add_resource(&resource)).unwrap();
    }
    let before = runtime
        .block_on(client.events(None))
        .unwrap()
        .last()
        .map_or(0, |event| event.id);
    let output = cli(&cluster, &["resource", "group", "add", "svc", "ip", "app"]);
    assert!(output.status.success(), "{output:?}");
    for (args, says) in [
        (
            &["resource", "group", "add", "other", "app"][..],
            "member of group svc",
        ),
        (
            &["resource", "group", "add", "other", "nothing"][..],
            "nothing",
        ),
    ] {
        let refused = cli(&cluster, args);
        assert!(!refused.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let groups = runtime.block_on(client.groups()).unwrap();
    assert_eq!(groups.len(), 1, "{groups:?}");

    // Meta-attributes: all or none, an unknown one named.
    let refused = cli(
        &cluster,
        &[
            "resource",
            "meta",
            "app",
            "resource-stickiness=50",
            "colour=red",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("colour"),
        "{refused:?}"
    );
    let output = cli(
        &cluster,
        &["resource", "meta", "app", "resource-stickiness=INFINITY"],
    );
    assert!(output.status.success(), "{output:?}");
    let app = runtime.block_on(client.resource("app")).unwrap();
    assert_eq!(
        app.meta.get("resource-stickiness").map(String::as_str),
        Some("INFINITY"),
        "{app:?}"
    );

    for name in ["app", "ip"] {
        assert!(cli(&cluster, &["resource", "start", name]).status.success());
    }
    let together = || async {
        let ip = client.resource("ip").await.ok()?;
        let app = client.resource("app").await.ok()?;
        (ip.state == "running" && app.state == "running" && ip.node == app.node).then_some(ip.node?)
    };
    let host = runtime.block_on(eventually(
        "both members to run on one host",
        Duration::from_secs(30),
        together,
    ));
    assert!(runs_on(&cluster, &host, "ip") && runs_on(&cluster, &host, "app"));
    let events = runtime.block_on(client.events(None)).unwrap();
    let ip_running = event_id(&events, before, "ip running").expect("ip ran");
    let app_starting = event_id(&events, before, "app starting").expect("app started");
    assert!(
        ip_running < app_starting,
        "app started before ip ran: {events:?}"
    );

    // The first member stops: the one after it cannot run without it.
    assert!(cli(&cluster, &["resource", "stop", "ip"]).status.success());
    runtime.block_on(eventually(
        "app to stop after ip",
        Duration::from_secs(30),
        || async {
            let app = client.resource("app").await.ok()?;
            (app.state == "stopped").then_some(())
        },
    ));
    assert!(!runs_on(&cluster, &host, "app"));
}
