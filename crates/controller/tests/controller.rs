//! The controller's tests, each an explicit timeline of inputs and the actions expected.

use hafen_controller::{
    Action, ClusterController, ClusterSnapshot, ControllerConfig, DriverKind, DriverOutcome,
    FenceConfirmation, FenceResult, FencingMethod, FencingState, Heartbeat, HeartbeatAck,
    HostRecord, HostRole, NodeAction, NodeConfig, NodeController, Operation, OperationKind,
    OperationResult, Outcome, Phase, ResourceRecord, Transition, apply_transition,
};

fn cluster(methods: &[FencingMethod]) -> ClusterSnapshot {
    let mut snapshot = ClusterSnapshot {
        quorate: true,
        ..ClusterSnapshot::default()
    };
    for (index, method) in methods.iter().enumerate() {
        let mut host = HostRecord::member(format!("h{}", index + 1), *method);
        host.capacity.insert("cpu".to_string(), 4);
        snapshot.hosts.push(host);
    }
    let mut resource = hafen_scheduler::Resource::new("vm1");
    resource.utilization.insert("cpu".to_string(), 1);
    snapshot.resources.push(ResourceRecord::new(resource));
    snapshot
}

/// Commits every proposed transition and feeds the snapshot back; returns the other actions.
fn settle(
    controller: &mut ClusterController,
    state: &mut ClusterSnapshot,
    now_ms: u64,
    actions: Vec<Action>,
) -> Vec<Action> {
    let mut pending = actions;
    let mut others = Vec::new();
    for _ in 0..20 {
        let mut committed = false;
        for action in std::mem::take(&mut pending) {
            match action {
                Action::Commit(transition) => {
                    if apply_transition(state, &transition).is_ok() {
                        state.revision += 1;
                        committed = true;
                    }
                }
                other => others.push(other),
            }
        }
        if !committed {
            break;
        }
        pending = controller.handle_snapshot(now_ms, state.clone());
    }
    others
}

fn heartbeat(host: &str, now_ms: u64, running: Vec<(String, u64)>) -> Heartbeat {
    Heartbeat {
        host: host.to_string(),
        sequence: now_ms,
        sent_at_ms: now_ms,
        running,
    }
}

fn leader(state: &ClusterSnapshot, config: ControllerConfig) -> ClusterController {
    let mut controller = ClusterController::new(config, 0);
    controller.handle_leadership_gained(0);
    controller.handle_snapshot(0, state.clone());
    controller
}

/// Place vm1 on h1 and report it running, so the timelines start from a steady state.
fn running_on_h1(controller: &mut ClusterController, state: &mut ClusterSnapshot) {
    let mut actions = Vec::new();
    for host in ["h1", "h2", "h3"] {
        if state.host(host).is_some() {
            actions.extend(controller.handle_heartbeat(100, heartbeat(host, 100, Vec::new())));
        }
    }
    actions.extend(controller.handle_tick(150));
    let actions = settle(controller, state, 150, actions);
    let start = actions
        .iter()
        .find_map(|action| match action {
            Action::Execute(operation) if operation.kind == OperationKind::Start => {
                Some(operation.clone())
            }
            _ => None,
        })
        .expect("vm1 is started somewhere");
    let actions = controller.handle_operation_result(
        200,
        OperationResult {
            action_id: start.action_id,
            host: start.host.clone(),
            resource: start.resource.clone(),
            generation: start.generation,
            outcome: Outcome::Success,
        },
    );
    settle(controller, state, 200, actions);
    let assignment = &state.resource("vm1").unwrap().assignments[0];
    assert_eq!(assignment.phase, Phase::Running);
    assert_eq!(assignment.host, start.host);
}

fn commits(actions: &[Action]) -> Vec<&Transition> {
    actions
        .iter()
        .filter_map(|action| match action {
            Action::Commit(transition) => Some(transition),
            _ => None,
        })
        .collect()
}

/// A host with a fence device goes silent: suspected after node_timeout (not before), fenced,
/// and its VM assigned elsewhere only once the fence confirmation is committed.
#[test]
fn a_silent_host_is_suspected_fenced_and_only_then_recovered() {
    let mut state = cluster(&[FencingMethod::Device; 3]);
    let mut controller = leader(&state, ControllerConfig::default());
    running_on_h1(&mut controller, &mut state);
    let host = state.resource("vm1").unwrap().assignments[0].host.clone();
    let others: Vec<String> = ["h1", "h2", "h3"]
        .iter()
        .filter(|name| **name != host)
        .map(|name| name.to_string())
        .collect();
    // t=100..1100: the others keep heartbeating, `host` is silent since t=100.
    for now_ms in (300..=1100).step_by(200) {
        for other in &others {
            controller.handle_heartbeat(now_ms, heartbeat(other, now_ms, Vec::new()));
        }
    }
    assert!(
        commits(&controller.handle_tick(1_100)).is_empty(),
        "1000 ms is not yet a timeout"
    );
    let actions = controller.handle_tick(1_150);
    assert!(matches!(
        commits(&actions)[..],
        [Transition::HostSuspected { .. }]
    ));
    let actions = settle(&mut controller, &mut state, 1_150, actions);
    let fence_id = actions
        .iter()
        .find_map(|action| match action {
            Action::Fence {
                action_id,
                host: fenced,
                ..
            } if *fenced == host => Some(*action_id),
            _ => None,
        })
        .expect("the unclean host is fenced");
    // Nothing is recovered while the host is unclean.
    assert!(commits(&controller.handle_tick(1_300)).is_empty());
    let actions = controller.handle_fence_result(
        1_600,
        FenceResult {
            action_id: fence_id,
            host: host.clone(),
            success: true,
            message: "off".to_string(),
        },
    );
    assert_eq!(
        commits(&actions),
        vec![&Transition::HostFenced {
            host: host.clone(),
            how: FenceConfirmation::Device
        }]
    );
    settle(&mut controller, &mut state, 1_600, actions);
    let assignment = &state.resource("vm1").unwrap().assignments[0];
    assert_ne!(assignment.host, host);
    assert_eq!(
        assignment.generation, 2,
        "a recovery takes a new generation"
    );
}

/// A self-fencing host is confirmed fenced exactly at last heartbeat + lease + drift margin.
#[test]
fn lease_expiry_confirms_a_self_fencing_host() {
    let mut state = cluster(&[FencingMethod::SelfFence; 3]);
    let config = ControllerConfig::default();
    let mut controller = leader(&state, config.clone());
    running_on_h1(&mut controller, &mut state);
    let host = state.resource("vm1").unwrap().assignments[0].host.clone();
    let others: Vec<&str> = ["h1", "h2", "h3"]
        .into_iter()
        .filter(|name| *name != host)
        .collect();
    let confirmed_at_ms = 100 + config.lease_ms + config.drift_margin_ms;
    let mut fenced_at = None;
    for now_ms in (300..=confirmed_at_ms + 200).step_by(50) {
        for other in &others {
            controller.handle_heartbeat(now_ms, heartbeat(other, now_ms, Vec::new()));
        }
        let actions = controller.handle_tick(now_ms);
        if commits(&actions)
            .iter()
            .any(|transition| matches!(transition, Transition::HostFenced { .. }))
        {
            fenced_at = Some(now_ms);
        }
        settle(&mut controller, &mut state, now_ms, actions);
        if fenced_at.is_some() {
            break;
        }
    }
    assert_eq!(fenced_at, Some(confirmed_at_ms));
}

/// A new leader starts every host's timer afresh: a host silent since before the change is
/// not suspected until node_timeout after the change.
#[test]
fn a_leader_change_never_causes_a_false_failover() {
    let mut state = cluster(&[FencingMethod::Device; 3]);
    let mut controller = ClusterController::new(ControllerConfig::default(), 1 << 32);
    controller.handle_leadership_gained(50_000);
    controller.handle_snapshot(50_000, state.clone());
    let actions = controller.handle_tick(50_900);
    assert!(commits(&actions).is_empty());
    // h1 stays silent; the others answer, so the quorum does not rest on h1.
    for other in ["h2", "h3"] {
        controller.handle_heartbeat(51_000, heartbeat(other, 51_000, Vec::new()));
    }
    let actions = {
        let tick = controller.handle_tick(51_050);
        settle(&mut controller, &mut state, 51_050, tick)
    };
    assert!(
        actions
            .iter()
            .any(|action| matches!(action, Action::Fence { .. }))
    );
}

/// Without quorum the leader commits, starts and fences nothing.
#[test]
fn a_leader_without_quorum_does_nothing() {
    let mut state = cluster(&[FencingMethod::Device; 3]);
    state.quorate = false;
    let mut controller = leader(&state, ControllerConfig::default());
    let actions = controller.handle_tick(5_000);
    assert!(
        actions
            .iter()
            .all(|action| matches!(action, Action::Status { .. }))
    );
    let acks = controller.handle_heartbeat(5_000, heartbeat("h1", 5_000, Vec::new()));
    assert!(acks.is_empty(), "no lease renewal without quorum");
}

/// Two members and no witness: a silent member is suspected but never fenced automatically,
/// and the controller says why.
#[test]
fn two_members_without_a_witness_refuse_recovery() {
    let mut state = cluster(&[FencingMethod::Device; 2]);
    let mut controller = leader(&state, ControllerConfig::default());
    let actions = {
        let tick = controller.handle_tick(1_500);
        settle(&mut controller, &mut state, 1_500, tick)
    };
    let actions = [actions, controller.handle_tick(1_600)].concat();
    assert!(
        !actions
            .iter()
            .any(|action| matches!(action, Action::Fence { .. }))
    );
    assert!(actions.iter().any(|action| matches!(
        action,
        Action::Status { message } if message.contains("without a witness")
    )));
    // With a witness the same silence leads to fencing.
    let mut state = cluster(&[FencingMethod::Device; 2]);
    let mut witness = HostRecord::member("w", FencingMethod::None);
    witness.role = HostRole::Witness;
    state.hosts.push(witness);
    let mut controller = leader(&state, ControllerConfig::default());
    for other in ["h2", "w"] {
        controller.handle_heartbeat(900, heartbeat(other, 900, Vec::new()));
    }
    let actions = {
        let tick = controller.handle_tick(1_500);
        settle(&mut controller, &mut state, 1_500, tick)
    };
    assert!(
        actions
            .iter()
            .any(|action| matches!(action, Action::Fence { .. }))
    );
}

/// An unclean host's heartbeats are never acknowledged, so its lease surely lapses.
#[test]
fn a_suspected_host_gets_no_lease_renewal() {
    let mut state = cluster(&[FencingMethod::SelfFence; 3]);
    let mut controller = leader(&state, ControllerConfig::default());
    for other in ["h2", "h3"] {
        controller.handle_heartbeat(900, heartbeat(other, 900, Vec::new()));
    }
    {
        let tick = controller.handle_tick(1_500);
        settle(&mut controller, &mut state, 1_500, tick)
    };
    assert!(matches!(
        state.host("h1").unwrap().fencing,
        FencingState::Unclean { .. }
    ));
    assert!(
        !controller
            .handle_heartbeat(1_600, heartbeat("h1", 1_600, Vec::new()))
            .iter()
            .any(|action| matches!(action, Action::AckHeartbeat(_)))
    );
}

/// A stale proposal (an older generation) is rejected whole.
#[test]
fn a_stale_assignment_is_rejected() {
    let mut state = cluster(&[FencingMethod::Device; 3]);
    let assign = |generation| Transition::Assign {
        resource: "vm1".to_string(),
        host: "h1".to_string(),
        generation,
    };
    apply_transition(&mut state, &assign(1)).unwrap();
    let before = state.clone();
    assert!(apply_transition(&mut state, &assign(1)).is_err());
    assert_eq!(state, before);
}

fn operation(kind: OperationKind, generation: u64, revision: u64) -> Operation {
    Operation {
        action_id: generation * 10 + revision,
        host: "h1".to_string(),
        resource: "vm1".to_string(),
        kind,
        generation,
        revision,
        timeout_ms: 1_000,
        monitor_interval_ms: 500,
        monitor_timeout_ms: 100,
    }
}

fn ack(sent_at_ms: u64, revision: u64) -> HeartbeatAck {
    HeartbeatAck {
        host: "h1".to_string(),
        sent_at_ms,
        revision,
    }
}

fn driver_commands(actions: &[NodeAction]) -> Vec<(u64, DriverKind)> {
    actions
        .iter()
        .filter_map(|action| match action {
            NodeAction::Driver(command) => Some((command.command_id, command.kind.clone())),
            _ => None,
        })
        .collect()
}

/// The agent starts nothing without a lease, runs what it was given while the lease holds,
/// and kills everything at once when the lease (from the heartbeat's send time) lapses.
#[test]
fn the_agent_lease_governs_starts_and_self_fencing() {
    let config = NodeConfig::default();
    let mut node = NodeController::new("h1", config.clone());
    // t=0: no lease yet.
    let actions = node.handle_operation(0, operation(OperationKind::Start, 1, 0));
    assert!(matches!(
        &actions[..],
        [NodeAction::ReportResult(OperationResult {
            outcome: Outcome::Refused { .. },
            ..
        })]
    ));
    // t=100: heartbeat sent at 100 acknowledged: lease until 100 + lease_ms.
    node.handle_tick(100);
    node.handle_heartbeat_ack(120, ack(100, 1));
    let actions = node.handle_operation(130, operation(OperationKind::Start, 1, 1));
    let commands = driver_commands(&actions);
    assert_eq!(commands.len(), 1);
    let actions = node.handle_driver_result(400, commands[0].0, DriverOutcome::Success);
    assert!(matches!(
        &actions[..],
        [NodeAction::ReportResult(OperationResult {
            outcome: Outcome::Success,
            ..
        })]
    ));
    // No more acknowledgements: the lease lapses at 100 + lease_ms exactly.
    let lapse_ms = 100 + config.lease_ms;
    let before: Vec<NodeAction> = node.handle_tick(lapse_ms - 1);
    assert!(
        !before
            .iter()
            .any(|action| matches!(action, NodeAction::SelfFence { .. }))
    );
    let actions = node.handle_tick(lapse_ms);
    assert!(actions.iter().any(|action| matches!(
        action,
        NodeAction::SelfFence { resources, .. } if resources == &vec!["vm1".to_string()]
    )));
    assert!(node.running().is_empty());
    // Contact again (revision 9): an operation issued before that revision is refused, and the
    // agent starts nothing on its own.
    node.handle_heartbeat_ack(lapse_ms + 100, ack(lapse_ms + 90, 9));
    assert!(
        node.handle_tick(lapse_ms + 150)
            .iter()
            .all(|action| !matches!(action, NodeAction::Driver(_)))
    );
    let actions = node.handle_operation(lapse_ms + 160, operation(OperationKind::Start, 2, 5));
    assert!(matches!(
        &actions[..],
        [NodeAction::ReportResult(OperationResult {
            outcome: Outcome::Refused { .. },
            ..
        })]
    ));
}

/// Generations: an older start than one seen, or one already stopped, is refused.
#[test]
fn the_agent_refuses_stale_generations() {
    let mut node = NodeController::new("h1", NodeConfig::default());
    node.handle_heartbeat_ack(0, ack(0, 0));
    let actions = node.handle_operation(10, operation(OperationKind::Stop, 3, 0));
    assert!(matches!(
        &actions[..],
        [NodeAction::ReportResult(OperationResult {
            outcome: Outcome::Success,
            ..
        })]
    ));
    for generation in [2, 3] {
        let actions = node.handle_operation(20, operation(OperationKind::Start, generation, 0));
        assert!(matches!(
            &actions[..],
            [NodeAction::ReportResult(OperationResult {
                outcome: Outcome::Refused { .. },
                ..
            })]
        ));
    }
    let actions = node.handle_operation(30, operation(OperationKind::Start, 4, 0));
    assert_eq!(driver_commands(&actions).len(), 1);
}

/// A failing monitor is reported once, and the next start of that resource here waits for
/// the restart back-off.
#[test]
fn monitor_failures_are_reported_and_restarts_back_off() {
    let config = NodeConfig::default();
    let mut node = NodeController::new("h1", config.clone());
    node.handle_heartbeat_ack(0, ack(0, 0));
    let commands =
        driver_commands(&node.handle_operation(0, operation(OperationKind::Start, 1, 0)));
    node.handle_driver_result(100, commands[0].0, DriverOutcome::Success);
    // The monitor is due 500 ms after the start finished.
    assert!(driver_commands(&node.handle_tick(599)).is_empty());
    let monitor = driver_commands(&node.handle_tick(600));
    assert_eq!(monitor[0].1, DriverKind::Monitor);
    let actions = node.handle_driver_result(
        610,
        monitor[0].0,
        DriverOutcome::Failure {
            severity: hafen_controller::Severity::Soft,
            message: "not running".to_string(),
        },
    );
    assert!(matches!(&actions[..], [NodeAction::ReportFailure(_)]));
    // The leader stops it and starts it again: the start waits restart_backoff_ms.
    let stop = driver_commands(&node.handle_operation(620, operation(OperationKind::Stop, 1, 0)));
    node.handle_driver_result(700, stop[0].0, DriverOutcome::Success);
    let actions = node.handle_operation(710, operation(OperationKind::Start, 2, 0));
    assert!(driver_commands(&actions).is_empty());
    assert!(
        driver_commands(&node.handle_tick(710 + config.restart_backoff_ms - 1))
            .iter()
            .all(|(_, kind)| *kind != DriverKind::Start)
    );
    assert!(
        driver_commands(&node.handle_tick(710 + config.restart_backoff_ms))
            .iter()
            .any(|(_, kind)| *kind == DriverKind::Start)
    );
}

/// A suspected host without a device that answers again before any fence is confirmed is
/// cleared: nothing of it was recovered elsewhere, so there is nothing to race.
#[test]
fn a_suspected_self_fencing_host_that_answers_again_is_cleared() {
    let mut state = cluster(&[FencingMethod::SelfFence; 3]);
    let mut controller = leader(&state, ControllerConfig::default());
    for other in ["h2", "h3"] {
        controller.handle_heartbeat(900, heartbeat(other, 900, Vec::new()));
    }
    let tick = controller.handle_tick(1_500);
    settle(&mut controller, &mut state, 1_500, tick);
    assert!(matches!(
        state.host("h1").unwrap().fencing,
        FencingState::Unclean { .. }
    ));
    let answer = controller.handle_heartbeat(1_600, heartbeat("h1", 1_600, Vec::new()));
    assert!(
        commits(&answer).iter().any(
            |transition| matches!(transition, Transition::HostRejoined { host } if host == "h1")
        )
    );
    settle(&mut controller, &mut state, 1_600, answer);
    assert!(matches!(
        state.host("h1").unwrap().fencing,
        FencingState::None
    ));
}

/// A silent member whose vote the quorum needs is not suspected: the leader could not
/// commit the suspicion without it, so it is late, not dead.
#[test]
fn a_member_the_quorum_rests_on_is_never_suspected() {
    let mut state = cluster(&[FencingMethod::Device; 3]);
    let mut controller = leader(&state, ControllerConfig::default());
    // Only h3 (say, the leader's own host) answers; h1 and h2 are silent.
    controller.handle_heartbeat(900, heartbeat("h3", 900, Vec::new()));
    let tick = controller.handle_tick(1_500);
    assert!(
        !commits(&tick)
            .iter()
            .any(|transition| matches!(transition, Transition::HostSuspected { .. }))
    );
    settle(&mut controller, &mut state, 1_500, tick);
    // h2 answers again: now the quorum stands without h1, which is suspected.
    let answer = controller.handle_heartbeat(1_550, heartbeat("h2", 1_550, Vec::new()));
    let actions = [answer, controller.handle_tick(1_600)].concat();
    assert!(commits(&actions).iter().any(
        |transition| matches!(transition, Transition::HostSuspected { host, .. } if host == "h1")
    ));
}

/// A mandatory ordering db -> app: app is assigned only once db runs, however many
/// snapshots arrive while db is starting (a plan is carried out to its end before the
/// next, as Pacemaker's transition engine does).
#[test]
fn what_is_ordered_after_a_start_waits_until_it_runs() {
    let mut state = cluster(&[FencingMethod::Device, FencingMethod::Device]);
    state.resources[0].config.name = "db".to_string();
    let mut app = hafen_scheduler::Resource::new("app");
    app.utilization.insert("cpu".to_string(), 1);
    state.resources.push(ResourceRecord::new(app));
    state.constraints.orderings.push(hafen_scheduler::Ordering {
        id: "db-then-app".to_string(),
        first: "db".to_string(),
        then: "app".to_string(),
        kind: hafen_scheduler::OrderingKind::Mandatory,
        symmetrical: true,
    });
    let mut controller = leader(&state, ControllerConfig::default());
    let mut actions = Vec::new();
    for host in ["h1", "h2"] {
        actions.extend(controller.handle_heartbeat(100, heartbeat(host, 100, Vec::new())));
    }
    actions.extend(controller.handle_tick(150));
    let actions = settle(&mut controller, &mut state, 150, actions);
    let started: Vec<&Operation> = actions
        .iter()
        .filter_map(|action| match action {
            Action::Execute(operation) if operation.kind == OperationKind::Start => Some(operation),
            _ => None,
        })
        .collect();
    assert_eq!(started.len(), 1, "{actions:?}");
    let db = started[0].clone();
    assert_eq!(db.resource, "db");
    // Ticks and heartbeats while db starts change nothing for app.
    for now in [300, 600, 1_200] {
        let mut actions = controller.handle_tick(now);
        for host in ["h1", "h2"] {
            actions.extend(controller.handle_heartbeat(now, heartbeat(host, now, Vec::new())));
        }
        let actions = settle(&mut controller, &mut state, now, actions);
        assert!(
            state.resource("app").unwrap().assignments.is_empty(),
            "app assigned while db starts: {actions:?}"
        );
    }
    let actions = controller.handle_operation_result(
        1_300,
        OperationResult {
            action_id: db.action_id,
            host: db.host.clone(),
            resource: db.resource.clone(),
            generation: db.generation,
            outcome: Outcome::Success,
        },
    );
    let actions = settle(&mut controller, &mut state, 1_300, actions);
    let app = state.resource("app").unwrap();
    assert_eq!(app.assignments.len(), 1, "{actions:?}");
    assert!(actions.iter().any(|action| matches!(
        action,
        Action::Execute(operation) if operation.resource == "app" && operation.kind == OperationKind::Start
    )));
}
