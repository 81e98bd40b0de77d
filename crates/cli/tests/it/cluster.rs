//! Cluster-core tests: daemons started by `hafen dev-cluster`, killed with SIGKILL, restarted,
//! corrupted, and driven through the API, on loopback and in network namespaces.

use crate::support::*;
use hafen_client::{Client, ClientError};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
/// Kills the leader, measures the time to a new leader, checks acknowledged changes
/// survived, restarts the killed node and checks it catches up.
fn leader_failover(extra: &[&str]) {
    let mut cluster = DevCluster::up(3, extra);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(10));
    let old_leader = runtime.block_on(leader(&client)).expect("a leader");
    let mut acknowledged = Vec::new();
    for value in 1..=20 {
        runtime
            .block_on(client.set_property("default-resource-stickiness", &value.to_string()))
            .unwrap();
        acknowledged.push(value);
    }
    let killed_at = Instant::now();
    cluster.kill(&old_leader);
    let survivors: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|node| node["name"].as_str().unwrap().to_string())
        .filter(|name| *name != old_leader)
        .collect();
    let survivor = cluster
        .node_client(&survivors[0])
        .with_deadline(Duration::from_millis(500));
    let new_leader = runtime.block_on(eventually(
        "a new leader",
        Duration::from_secs(10),
        || async { leader(&survivor).await.filter(|name| *name != old_leader) },
    ));
    let failover = killed_at.elapsed();
    println!(
        "leader failover ({}): {} -> {new_leader} in {:.3} s",
        if extra.is_empty() {
            "loopback"
        } else {
            "netns"
        },
        old_leader,
        failover.as_secs_f64()
    );
    assert!(
        failover < Duration::from_secs(3),
        "new leader took {failover:?}"
    );
    let history = runtime.block_on(client.history()).unwrap();
    for value in &acknowledged {
        let summary = format!("set default-resource-stickiness={value}");
        assert_eq!(
            history
                .iter()
                .filter(|entry| entry.summary == summary)
                .count(),
            1,
            "{summary}"
        );
    }
    // A change while the old leader is down, then the old leader rejoins and catches up.
    runtime
        .block_on(client.set_property("migration-limit", "7"))
        .unwrap();
    let mut child = cluster.restart(&old_leader);
    let status = runtime.block_on(eventually(
        "the restarted node to catch up",
        Duration::from_secs(20),
        || async {
            let status = client.status().await.ok()?;
            let leader_index = status.nodes.iter().find(|node| node.leader)?.log_index?;
            let rejoined = status.nodes.iter().find(|node| node.name == old_leader)?;
            (rejoined.log_index? >= leader_index
                && rejoined.state == hafen_api_types::NodeState::Online)
                .then_some(status)
        },
    ));
    assert_eq!(status.nodes.len(), 3);
    // The rejoined node serves the current configuration through its own API too.
    let own = cluster.node_client(&old_leader);
    assert_eq!(
        runtime
            .block_on(own.property("migration-limit"))
            .unwrap()
            .value,
        "7"
    );
    drop(cluster);
    let _ = child.wait();
}

#[test]
fn leader_kill_on_loopback_elects_a_new_leader_within_3_s_and_the_node_catches_up() {
    let _serial = serial();
    leader_failover(&[]);
}

#[test]
fn leader_kill_in_network_namespaces_elects_a_new_leader_within_3_s_and_the_node_catches_up() {
    let _serial = serial();
    leader_failover(&["--netns"]);
}

/// Stops every daemon and starts them all again: configuration and history are intact.
#[test]
fn a_full_restart_keeps_the_state() {
    let _serial = serial();
    let mut cluster = DevCluster::up(3, &[]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(15));
    runtime
        .block_on(client.set_property("cluster-name", "restart-proof"))
        .unwrap();
    runtime
        .block_on(client.set_property("migration-limit", "9"))
        .unwrap();
    let before = runtime.block_on(client.history()).unwrap();
    let names: Vec<String> = cluster
        .nodes()
        .iter()
        .map(|node| node["name"].as_str().unwrap().to_string())
        .collect();
    for name in &names {
        cluster.stop(name);
    }
    let mut children: Vec<_> = names.iter().map(|name| cluster.restart(name)).collect();
    let status = runtime.block_on(eventually(
        "the restarted cluster to elect a leader",
        Duration::from_secs(20),
        || async {
            client
                .status()
                .await
                .ok()
                .filter(|status| status.leader.is_some())
        },
    ));
    assert_eq!(status.nodes.len(), 3);
    assert_eq!(
        runtime
            .block_on(client.property("migration-limit"))
            .unwrap()
            .value,
        "9"
    );
    assert_eq!(
        runtime
            .block_on(client.property("cluster-name"))
            .unwrap()
            .value,
        "restart-proof"
    );
    let after = runtime.block_on(client.history()).unwrap();
    assert_eq!(before.len(), after.len());
    assert_eq!(before.last().unwrap().epoch, after.last().unwrap().epoch);
    drop(cluster);
    for child in &mut children {
        let _ = child.wait();
    }
}

/// 1,000 changes from 4 concurrent clients while the leader is killed: every acknowledged
/// change is in the history exactly once (retries carry their request id).
#[test]
fn a_thousand_changes_from_four_clients_across_a_leader_kill_apply_exactly_once() {
    let _serial = serial();
    let cluster = DevCluster::up(3, &[]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(15));
    // Every change must stay in the history to be counted (the default keeps 200).
    runtime
        .block_on(client.set_property("config-history-limit", "2000"))
        .unwrap();
    let old_leader = runtime.block_on(leader(&client)).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let acknowledged = runtime.block_on(async {
        let mut tasks = Vec::new();
        for worker in 0..4u64 {
            let client = client.clone();
            let done = done.clone();
            tasks.push(tokio::spawn(async move {
                let mut acknowledged = Vec::new();
                for index in 0..250u64 {
                    let value = worker * 1000 + index + 1;
                    if client
                        .set_property("default-resource-stickiness", &value.to_string())
                        .await
                        .is_ok()
                    {
                        acknowledged.push(value);
                    }
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                acknowledged
            }));
        }
        // Kill the leader a third of the way through.
        eventually("300 changes", Duration::from_secs(120), || async {
            (done.load(std::sync::atomic::Ordering::Relaxed) >= 300).then_some(())
        })
        .await;
        cluster.kill(&old_leader);
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all
    });
    println!(
        "acknowledged {} of 1000 changes across the leader kill",
        acknowledged.len()
    );
    assert!(
        acknowledged.len() >= 990,
        "too many changes failed: {}",
        acknowledged.len()
    );
    let history = runtime.block_on(client.history()).unwrap();
    let mut counts = std::collections::BTreeMap::new();
    for entry in &history {
        if let Some(value) = entry
            .summary
            .strip_prefix("set default-resource-stickiness=")
        {
            *counts.entry(value.parse::<u64>().unwrap()).or_insert(0) += 1;
        }
    }
    for value in &acknowledged {
        assert_eq!(
            counts.get(value),
            Some(&1),
            "change {value} is present {:?} times",
            counts.get(value)
        );
    }
    assert!(
        counts.values().all(|count| *count == 1),
        "a change was applied twice"
    );
}

/// Node-to-node endpoints need a cluster certificate; the API needs credentials.
#[test]
fn without_a_cluster_certificate_or_credentials_requests_are_refused() {
    let _serial = serial();
    let cluster = DevCluster::up(1, &[]);
    let runtime = runtime();
    let url = cluster.nodes()[0]["api_url"].as_str().unwrap().to_string();
    let anonymous = Client::new(vec![url.clone()], &cluster.ca_pem(), None).unwrap();
    let error = runtime.block_on(anonymous.status()).unwrap_err();
    assert!(
        matches!(&error, ClientError::Api { status: 401, .. }),
        "{error}"
    );
    let wrong = Client::new(
        vec![url.clone()],
        &cluster.ca_pem(),
        Some("hafen-admin.wrong".into()),
    )
    .unwrap();
    let error = runtime.block_on(wrong.status()).unwrap_err();
    assert!(
        matches!(&error, ClientError::Api { status: 401, .. }),
        "{error}"
    );
    // A client with the right API token but no certificate cannot speak Raft.
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(hafen_rpc::tls::anonymous_client_config(&cluster.ca_pem()).unwrap())
        .build()
        .unwrap();
    for path in [
        "/internal/raft/vote",
        "/internal/raft/append",
        "/internal/heartbeat",
    ] {
        let response = runtime
            .block_on(
                http.post(format!("{url}{path}"))
                    .bearer_auth(cluster.token())
                    .body("{}")
                    .send(),
            )
            .unwrap();
        assert_eq!(response.status().as_u16(), 403, "{path}");
    }
    // A certificate from another CA is refused in the TLS handshake itself.
    let other_ca = hafen_rpc::tls::generate_ca("other").unwrap();
    let (key_pem, request_pem) = hafen_rpc::tls::node_key_and_request("intruder").unwrap();
    let cert_pem = hafen_rpc::tls::sign_node_request(
        &other_ca,
        &request_pem,
        "intruder",
        "127.0.0.1".parse().unwrap(),
    )
    .unwrap();
    let intruder = hafen_rpc::Identity {
        ca_pem: cluster.ca_pem(),
        cert_pem,
        key_pem,
    };
    let intruder = hafen_rpc::PeerClient::new(&intruder).unwrap();
    let address = url.trim_start_matches("https://");
    let refused = runtime.block_on(intruder.post(
        address,
        "/internal/raft/vote",
        b"{}".to_vec(),
        Duration::from_secs(2),
    ));
    assert!(refused.is_err(), "a foreign certificate was accepted");
}

fn node_config(dir: &Path, name: &str) -> PathBuf {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "node_name = \"{name}\"\nlisten = \"127.0.0.1:{port}\"\ndata_dir = \"{}\"\n",
            dir.join(name).display()
        ),
    )
    .unwrap();
    path
}

fn join(config: &Path, server: &str, token: &str) -> std::process::Output {
    hafen()
        .args(["cluster", "join", server, "--token", token, "--config"])
        .arg(config)
        .output()
        .unwrap()
}

/// Wrong, expired and reused join tokens are refused with a clear message and change nothing.
#[test]
fn wrong_expired_and_reused_join_tokens_are_refused_and_change_nothing() {
    let _serial = serial();
    let cluster = DevCluster::up(1, &[]);
    let runtime = runtime();
    let client = cluster.client();
    let server = cluster.nodes()[0]["api_url"].as_str().unwrap().to_string();
    let token = runtime
        .block_on(client.issue_token(Some(600)))
        .unwrap()
        .token;
    let nodes_before = runtime.block_on(client.nodes()).unwrap().len();
    let scratch = tempfile::tempdir().unwrap();

    let mut wrong: Vec<&str> = token.split('.').collect();
    let bad_secret = "0".repeat(32);
    wrong[2] = &bad_secret;
    let output = join(
        &node_config(scratch.path(), "wrong"),
        &server,
        &wrong.join("."),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("join token is wrong"),
        "{stderr}"
    );
    assert!(
        !scratch.path().join("wrong").join("node.json").exists(),
        "a refused join wrote an identity"
    );

    let output = join(
        &node_config(scratch.path(), "garbage"),
        &server,
        "hafen-join.nonsense",
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("malformed join token"),
        "{stderr}"
    );

    let output = join(&node_config(scratch.path(), "first"), &server, &token);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = join(&node_config(scratch.path(), "second"), &server, &token);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("already used"),
        "{stderr}"
    );

    let short = runtime.block_on(client.issue_token(Some(1))).unwrap().token;
    // The token's validity is wall-clock time; letting it pass is the point of the test.
    std::thread::sleep(Duration::from_millis(1100));
    let output = join(&node_config(scratch.path(), "late"), &server, &short);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains("expired"),
        "{stderr}"
    );

    // Only the one good join was admitted.
    let names: Vec<String> = runtime
        .block_on(client.nodes())
        .unwrap()
        .into_iter()
        .map(|node| node.name)
        .collect();
    assert_eq!(names.len(), nodes_before + 1, "{names:?}");
    assert!(names.contains(&"first".to_string()));
}

/// One flipped byte in a node's data file: that node refuses to start naming the file; the others keep serving.
#[test]
fn a_corrupted_data_file_stops_only_that_node_with_the_file_named() {
    let _serial = serial();
    let mut cluster = DevCluster::up(3, &[]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(10));
    runtime
        .block_on(client.set_property("cluster-name", "corruption-canary"))
        .unwrap();
    let leader_name = runtime.block_on(leader(&client)).unwrap();
    let victim = cluster
        .nodes()
        .iter()
        .map(|node| node["name"].as_str().unwrap().to_string())
        .find(|name| *name != leader_name)
        .unwrap();
    // Wait until the victim holds the entry, then stop it.
    runtime.block_on(eventually(
        "the change to reach every node",
        Duration::from_secs(10),
        || async {
            let status = client.status().await.ok()?;
            let top = status.nodes.iter().find(|node| node.leader)?.log_index?;
            status
                .nodes
                .iter()
                .all(|node| node.log_index >= Some(top))
                .then_some(())
        },
    ));
    cluster.stop(&victim);
    let path = cluster.data_file(&victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let marker = b"corruption-canary";
    let position = bytes
        .windows(marker.len())
        .position(|window| window == marker)
        .expect("the change is in the file");
    bytes[position + 4] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    let mut child = cluster.restart(&victim);
    let exit = child.wait().unwrap();
    assert!(!exit.success(), "the node started on a corrupted file");
    let log = std::fs::read_to_string(cluster.node(&victim)["log"].as_str().unwrap()).unwrap();
    assert!(
        log.contains(&path.display().to_string()) && log.contains("corrupted"),
        "log does not name the file: {log}"
    );
    // The other two still form a quorum and take changes.
    runtime
        .block_on(client.set_property("migration-limit", "5"))
        .unwrap();
    assert_eq!(
        runtime
            .block_on(client.property("migration-limit"))
            .unwrap()
            .value,
        "5"
    );
}

/// A write sent to a follower is forwarded to the leader; the OpenAPI document is served.
#[test]
fn requests_to_a_follower_reach_the_leader_and_the_openapi_document_is_served() {
    let _serial = serial();
    let cluster = DevCluster::up(3, &[]);
    let runtime = runtime();
    let client = cluster.client();
    let leader_name = runtime.block_on(leader(&client)).unwrap();
    let follower = cluster
        .nodes()
        .iter()
        .map(|node| node["name"].as_str().unwrap().to_string())
        .find(|name| *name != leader_name)
        .unwrap();
    let through_follower = cluster.node_client(&follower);
    let change = runtime
        .block_on(through_follower.set_property("placement-strategy", "balanced"))
        .unwrap();
    assert_eq!(change.diff.len(), 1);
    assert_eq!(
        runtime
            .block_on(client.property("placement-strategy"))
            .unwrap()
            .value,
        "balanced"
    );
    let refused = runtime
        .block_on(through_follower.set_property("placement-strategy", "random"))
        .unwrap_err();
    assert!(
        refused.to_string().contains("placement-strategy"),
        "{refused}"
    );
    let document = runtime.block_on(through_follower.openapi()).unwrap();
    for path in [
        "/api/v1/status",
        "/api/v1/config/properties/{key}",
        "/api/v1/cluster/join",
    ] {
        assert!(
            document["paths"].get(path).is_some(),
            "{path} missing from the OpenAPI document"
        );
    }
}

/// Five members keep three voters; removing a voter promotes a learner; a witness always votes.
#[test]
fn membership_keeps_the_voter_count_promotes_learners_and_witnesses_vote() {
    let _serial = serial();
    let cluster = DevCluster::up(5, &["--witnesses", "1"]);
    let runtime = runtime();
    let client = cluster.client().with_deadline(Duration::from_secs(10));
    let status = runtime.block_on(client.status()).unwrap();
    let voters: Vec<&str> = status
        .nodes
        .iter()
        .filter(|node| node.voter)
        .map(|node| node.name.as_str())
        .collect();
    assert_eq!(voters.len(), 3, "{voters:?}");
    let witness = status
        .nodes
        .iter()
        .find(|node| node.role == "witness")
        .unwrap();
    assert!(witness.voter, "the witness is not a voter");
    let victim = status
        .nodes
        .iter()
        .find(|node| node.voter && !node.leader && node.role == "member")
        .unwrap()
        .name
        .clone();
    runtime.block_on(client.remove_node(&victim)).unwrap();
    cluster.stop(&victim);
    let status = runtime.block_on(eventually(
        "a learner to be promoted",
        Duration::from_secs(15),
        || async {
            let status = client.status().await.ok()?;
            (status.nodes.len() == 4 && status.nodes.iter().filter(|node| node.voter).count() == 3)
                .then_some(status)
        },
    ));
    assert!(status.nodes.iter().all(|node| node.name != victim));
    // Five voters on request.
    runtime
        .block_on(client.set_property("voter-count", "5"))
        .unwrap();
    runtime.block_on(eventually(
        "all four nodes to vote",
        Duration::from_secs(15),
        || async {
            let status = client.status().await.ok()?;
            (status.nodes.iter().filter(|node| node.voter).count() == 4).then_some(())
        },
    ));
}
