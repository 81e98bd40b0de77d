//! Tests of the state machine: whole-or-nothing application, idempotent retries, tokens, history.

use super::*;
use crate::command::NewNode;
use crate::config::ConfigChange;
use proptest::prelude::*;

fn envelope(request_id: &str, now_ms: u64, command: Command) -> Envelope {
    Envelope {
        request_id: request_id.to_string(),
        now_ms,
        command,
    }
}

fn new_node(name: &str, port: u16) -> NewNode {
    NewNode {
        name: name.to_string(),
        address: format!("127.0.0.1:{port}"),
        role: NodeRole::Member,
    }
}

fn bootstrapped() -> ClusterState {
    let mut state = ClusterState::default();
    state
        .apply(&envelope(
            "boot",
            1_000,
            Command::Bootstrap {
                cluster_name: "test".into(),
                ca_cert_pem: "CA".into(),
                ca_key_pem: "KEY".into(),
                node: new_node("alpha", 7001),
                admin_token_sha256: "hash".into(),
            },
        ))
        .unwrap();
    state
}

fn set(key: &str, value: &str) -> Command {
    Command::Configure {
        change: ConfigChange::SetProperty {
            key: key.into(),
            value: value.into(),
        },
    }
}

#[test]
fn bootstrap_admits_the_first_node_with_id_one_and_starts_at_epoch_one() {
    let state = bootstrapped();
    assert_eq!(state.epoch, 1);
    assert_eq!(state.nodes.len(), 1);
    assert_eq!(state.nodes.values().next().unwrap().node_id, 1);
    assert_eq!(state.authenticate("hash"), Some("admin"));
}

#[test]
fn a_refused_change_names_the_key_and_changes_nothing() {
    let mut state = bootstrapped();
    let before = state.clone();
    let error = state
        .apply(&envelope("r1", 2_000, set("migration-limit", "zero")))
        .unwrap_err();
    assert!(error.to_string().contains("migration-limit"), "{error}");
    // Only the remembered request id differs: the refusal itself is replayed on retry.
    assert_eq!(state.epoch, before.epoch);
    assert_eq!(state.config, before.config);
    assert_eq!(state.events, before.events);
}

#[test]
fn a_retried_request_is_applied_once() {
    let mut state = bootstrapped();
    let first = state.apply(&envelope("same", 2_000, set("migration-limit", "3")));
    let again = state.apply(&envelope("same", 3_000, set("migration-limit", "3")));
    assert_eq!(first, again);
    assert_eq!(state.epoch, 2);
    assert_eq!(state.history.len(), 2);
}

#[test]
fn rollback_restores_an_old_configuration_as_a_new_epoch() {
    let mut state = bootstrapped();
    state
        .apply(&envelope("a", 2, set("migration-limit", "3")))
        .unwrap();
    state
        .apply(&envelope("b", 3, set("migration-limit", "4")))
        .unwrap();
    let outcome = state
        .apply(&envelope("c", 4, Command::Rollback { epoch: 2 }))
        .unwrap();
    assert!(matches!(outcome, Outcome::Epoch { epoch: 4, .. }));
    assert_eq!(state.config.integer("migration-limit"), 3);
    let error = state
        .apply(&envelope("d", 5, Command::Rollback { epoch: 99 }))
        .unwrap_err();
    assert!(error.to_string().contains("epoch 99"), "{error}");
}

#[test]
fn join_tokens_are_one_time_expiring_and_checked_before_anything_changes() {
    let mut state = bootstrapped();
    state
        .apply(&envelope(
            "t",
            10,
            Command::IssueJoinToken {
                token_id: "tok".into(),
                secret_sha256: "s".into(),
                expires_ms: 100,
            },
        ))
        .unwrap();
    let join = |secret: &str, name: &str, port| Command::Join {
        token_id: "tok".into(),
        secret_sha256: secret.into(),
        node: new_node(name, port),
    };
    let before = state.nodes.clone();
    let wrong = state
        .apply(&envelope("j1", 20, join("x", "beta", 7002)))
        .unwrap_err();
    assert!(wrong.to_string().contains("wrong"), "{wrong}");
    let taken = state
        .apply(&envelope("j2", 20, join("s", "alpha", 7002)))
        .unwrap_err();
    assert!(taken.to_string().contains("alpha"), "{taken}");
    assert_eq!(state.nodes, before);
    let admitted = state
        .apply(&envelope("j3", 20, join("s", "beta", 7002)))
        .unwrap();
    assert!(matches!(admitted, Outcome::Admitted { node } if node.node_id == 2));
    let reused = state
        .apply(&envelope("j4", 30, join("s", "gamma", 7003)))
        .unwrap_err();
    assert!(reused.to_string().contains("already used"), "{reused}");
    state
        .apply(&envelope(
            "t2",
            40,
            Command::IssueJoinToken {
                token_id: "late".into(),
                secret_sha256: "s".into(),
                expires_ms: 50,
            },
        ))
        .unwrap();
    let expired = state
        .apply(&envelope(
            "j5",
            60,
            Command::Join {
                token_id: "late".into(),
                secret_sha256: "s".into(),
                node: new_node("gamma", 7003),
            },
        ))
        .unwrap_err();
    assert!(expired.to_string().contains("expired"), "{expired}");
    assert_eq!(state.nodes.len(), 2);
}

#[test]
fn node_ids_are_never_reused_after_removal() {
    let mut state = bootstrapped();
    for (index, name) in ["beta", "gamma"].iter().enumerate() {
        let token = format!("t{index}");
        state
            .apply(&envelope(
                &format!("i{index}"),
                1,
                Command::IssueJoinToken {
                    token_id: token.clone(),
                    secret_sha256: "s".into(),
                    expires_ms: 1_000_000,
                },
            ))
            .unwrap();
        if index == 1 {
            state
                .apply(&envelope(
                    "rm",
                    2,
                    Command::RemoveNode {
                        name: "beta".into(),
                    },
                ))
                .unwrap();
        }
        state
            .apply(&envelope(
                &format!("j{index}"),
                3,
                Command::Join {
                    token_id: token,
                    secret_sha256: "s".into(),
                    node: new_node(name, 7100 + index as u16),
                },
            ))
            .unwrap();
    }
    let gamma = state
        .nodes
        .values()
        .find(|n| n.name.as_str() == "gamma")
        .unwrap();
    assert_eq!(gamma.node_id, 3);
}

fn arbitrary_command() -> impl Strategy<Value = Command> {
    let keys = prop::sample::select(vec![
        "migration-limit",
        "voter-count",
        "stonith-enabled",
        "no-such-key",
        "placement-strategy",
    ]);
    let values = prop::sample::select(vec!["1", "3", "5", "true", "balanced", "x", "-4"]);
    prop_oneof![
        (keys.clone(), values).prop_map(|(key, value)| set(key, value)),
        keys.prop_map(|key| Command::Configure {
            change: ConfigChange::UnsetProperty { key: key.into() }
        }),
        (0u64..8).prop_map(|epoch| Command::Rollback { epoch }),
        prop::sample::select(vec!["alpha", "beta", "zeta"])
            .prop_map(|name| Command::RemoveNode { name: name.into() }),
    ]
}

proptest! {
    /// Every command either succeeds or leaves configuration, epoch, nodes and events as they were.
    #[test]
    fn commands_apply_whole_or_not_at_all(commands in prop::collection::vec(arbitrary_command(), 1..40)) {
        let mut state = bootstrapped();
        for (index, command) in commands.into_iter().enumerate() {
            let before = state.clone();
            let result = state.apply(&envelope(&format!("p{index}"), 10 + index as u64, command));
            if result.is_err() {
                prop_assert_eq!(&state.config, &before.config);
                prop_assert_eq!(state.epoch, before.epoch);
                prop_assert_eq!(&state.nodes, &before.nodes);
                prop_assert_eq!(&state.events, &before.events);
            } else {
                prop_assert!(state.epoch >= before.epoch);
            }
        }
    }
}

#[test]
fn cleanup_forgets_failures_of_a_known_resource_only() {
    let mut state = bootstrapped();
    let error = state
        .apply(&envelope(
            "c1",
            5,
            Command::CleanupResource {
                name: "ghost".into(),
            },
        ))
        .unwrap_err();
    assert!(error.to_string().contains("ghost"), "{error}");
}

/// A fenced host's resources are released with a new generation, so an operation still in
/// flight there cannot record its outcome over the release; a VM migrating away from it is
/// starting on its destination (its only possible copy).
#[test]
fn fencing_releases_with_a_new_generation_and_keeps_a_migration_destination() {
    let mut state = bootstrapped();
    state
        .apply(&envelope(
            "t",
            10,
            Command::IssueJoinToken {
                token_id: "tok".into(),
                secret_sha256: "s".into(),
                expires_ms: 100,
            },
        ))
        .unwrap();
    state
        .apply(&envelope(
            "j",
            20,
            Command::Join {
                token_id: "tok".into(),
                secret_sha256: "s".into(),
                node: new_node("beta", 7002),
            },
        ))
        .unwrap();
    for name in ["still", "moving"] {
        state.config.resources.insert(
            name.into(),
            crate::resource::test_agent_resource(name, "ocf:heartbeat:Dummy"),
        );
        let runtime = state.runtime.entry(name.into()).or_default();
        runtime.generation = 4;
        runtime.host = Some("alpha".into());
        runtime.phase = if name == "moving" {
            Phase::Migrating { to: "beta".into() }
        } else {
            Phase::Running
        };
    }
    state
        .apply(&envelope(
            "s",
            30,
            Command::HostSuspected {
                name: "alpha".into(),
            },
        ))
        .unwrap();
    state
        .apply(&envelope(
            "f",
            40,
            Command::HostFenced {
                name: "alpha".into(),
                how: "test".into(),
            },
        ))
        .unwrap();
    let still = &state.runtime["still"];
    assert_eq!(
        (&still.phase, still.host.as_deref(), still.generation),
        (&Phase::Stopped, None, 5)
    );
    let moving = &state.runtime["moving"];
    assert_eq!(
        (&moving.phase, moving.host.as_deref(), moving.generation),
        (&Phase::Starting, Some("beta"), 5)
    );
    // The failed migration's outcome, from before the fence, is refused.
    let before = state.runtime.clone();
    let error = state
        .apply(&envelope(
            "late",
            50,
            Command::Transition {
                transition: Transition {
                    resource: "still".into(),
                    generation: 4,
                    phase: Phase::Running,
                    host: Some("alpha".into()),
                    new_assignment: false,
                    error: Some("migration to beta failed".into()),
                    reaction: None,
                },
            },
        ))
        .unwrap_err();
    assert!(error.to_string().contains("stale transition"), "{error}");
    assert_eq!(state.runtime, before);
}

// Proves a node's capacity declaration is committed once (the same again is refused, so
// heartbeats do not flood the log) and an unknown key or a zero is refused, naming it.
#[test]
fn capacity_declarations_are_checked_and_committed_once() {
    let mut state = bootstrapped();
    let declare = |id: &str, capacity: &[(&str, u64)]| {
        envelope(
            id,
            2_000,
            Command::DeclareCapacity {
                name: "alpha".into(),
                capacity: capacity
                    .iter()
                    .map(|(key, value)| (key.to_string(), *value))
                    .collect(),
            },
        )
    };
    state
        .apply(&declare("a", &[("cpu", 2), ("memory", 1024)]))
        .unwrap();
    let node = state.nodes.values().next().unwrap();
    assert_eq!(node.capacity["memory"], 1024);
    let again = state
        .apply(&declare("b", &[("cpu", 2), ("memory", 1024)]))
        .unwrap_err();
    assert!(again.to_string().contains("already declared"), "{again}");
    for (id, bad, says) in [("c", ("gpu", 1), "gpu"), ("d", ("cpu", 0), "cpu")] {
        let before = state.clone();
        let error = state.apply(&declare(id, &[bad])).unwrap_err().to_string();
        assert!(error.contains(says), "{error}");
        assert_eq!(state.nodes, before.nodes, "a refusal changes nothing");
    }
}
