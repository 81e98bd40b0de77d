//! A plan carried out the way Pacemaker's transition engine carries out a transition graph:
//! an action starts once every action it comes `after` succeeded, an action whose
//! dependency failed is skipped (the next plan decides afresh), at most `parallel` actions
//! run at a time, and at most `migrations_per_host` live migrations involve any one host
//! (Pacemaker's per-node `migration-limit`), counting migrations already under way outside
//! the plan (an operator's `vm migrate`).
//!
//! Pure bookkeeping: the daemon's orchestrator and [`crate::ClusterController`] ask it what
//! to launch and tell it how each action ended; neither carries out a plan another way.

use std::collections::{BTreeMap, BTreeSet};

use hafen_scheduler::{Action, ActionKind};

/// How much of a plan may run at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Actions running at a time (at least one).
    pub parallel: usize,
    /// Live migrations involving one host, as source or destination (at least one).
    pub migrations_per_host: usize,
}

/// What [`Execution::next`] decided.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Launch these now, then report each with [`Execution::finished`].
    pub launch: Vec<Action>,
    /// Never launched: an action they come after failed or was skipped.
    pub skipped: Vec<Action>,
}

/// One plan being carried out.
#[derive(Debug)]
pub struct Execution {
    limits: Limits,
    waiting: Vec<Action>,
    /// Launched and not yet finished, by action id.
    running: BTreeMap<u32, Action>,
    /// How each finished (or skipped) action ended.
    outcome: BTreeMap<u32, bool>,
    /// Migrations under way per host: outside the plan, plus the plan's running ones.
    migrations: BTreeMap<String, usize>,
}

impl Execution {
    /// `under_way` names the (source, destination) of every live migration already running
    /// outside this plan.
    pub fn new<'a>(
        actions: Vec<Action>,
        limits: Limits,
        under_way: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Execution {
        let mut migrations = BTreeMap::new();
        for (from, to) in under_way {
            for host in [from, to] {
                *migrations.entry(host.to_string()).or_insert(0) += 1;
            }
        }
        Execution {
            limits: Limits {
                parallel: limits.parallel.max(1),
                migrations_per_host: limits.migrations_per_host.max(1),
            },
            waiting: actions,
            running: BTreeMap::new(),
            outcome: BTreeMap::new(),
            migrations,
        }
    }

    /// The actions to launch now, in plan order, among those `admit` accepts (a caller's
    /// own conditions: a resource busy with another operation, a host not heard from). An
    /// action not admitted stays waiting; one whose dependency failed is skipped.
    pub fn next(&mut self, mut admit: impl FnMut(&Action) -> bool) -> Step {
        let mut step = Step::default();
        let mut index = 0;
        while index < self.waiting.len() {
            let action = &self.waiting[index];
            if action
                .after
                .iter()
                .any(|id| self.outcome.get(id) == Some(&false))
            {
                let action = self.waiting.remove(index);
                self.outcome.insert(action.id, false);
                step.skipped.push(action);
                // An action skipped now may be the dependency of one looked at before.
                index = 0;
                continue;
            }
            let ready = action.after.iter().all(|id| self.outcome.contains_key(id));
            if !ready
                || self.running.len() >= self.limits.parallel
                || !self.migration_allowed(action)
                || !admit(action)
            {
                index += 1;
                continue;
            }
            let action = self.waiting.remove(index);
            if let Some((from, to)) = migration_ends(&action) {
                for host in [from, to] {
                    *self.migrations.entry(host.to_string()).or_insert(0) += 1;
                }
            }
            self.running.insert(action.id, action.clone());
            step.launch.push(action);
        }
        step
    }

    /// A launched action ended; `succeeded` decides whether the actions after it run.
    pub fn finished(&mut self, id: u32, succeeded: bool) {
        let Some(action) = self.running.remove(&id) else {
            return;
        };
        if let Some((from, to)) = migration_ends(&action) {
            for host in [from, to] {
                if let Some(count) = self.migrations.get_mut(host) {
                    *count = count.saturating_sub(1);
                }
            }
        }
        self.outcome.insert(id, succeeded);
    }

    /// An event made the rest of the plan stale (Pacemaker aborts its transition): nothing
    /// more is launched, what runs ends, and the caller plans afresh once [`is_done`]. The
    /// actions never launched are returned.
    ///
    /// [`is_done`]: Execution::is_done
    pub fn abort(&mut self) -> Vec<Action> {
        let dropped = std::mem::take(&mut self.waiting);
        for action in &dropped {
            self.outcome.insert(action.id, false);
        }
        dropped
    }

    /// Nothing waits and nothing runs: the plan is carried out as far as it goes.
    pub fn is_done(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    /// Actions launched and not yet finished.
    pub fn running(&self) -> usize {
        self.running.len()
    }

    /// Resources with an action waiting or running.
    pub fn resources(&self) -> BTreeSet<&str> {
        self.waiting
            .iter()
            .chain(self.running.values())
            .map(|action| action.resource.as_str())
            .collect()
    }

    fn migration_allowed(&self, action: &Action) -> bool {
        migration_ends(action).is_none_or(|(from, to)| {
            [from, to].iter().all(|host| {
                self.migrations.get(*host).copied().unwrap_or(0) < self.limits.migrations_per_host
            })
        })
    }
}

fn migration_ends(action: &Action) -> Option<(&str, &str)> {
    match &action.kind {
        ActionKind::Migrate { from, to } => Some((from, to)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn action(id: u32, resource: &str, kind: ActionKind, after: &[u32]) -> Action {
        Action {
            id,
            resource: resource.to_string(),
            kind,
            reason: String::new(),
            after: after.to_vec(),
        }
    }

    fn migrate(id: u32, resource: &str, from: &str, to: &str) -> Action {
        action(
            id,
            resource,
            ActionKind::Migrate {
                from: from.into(),
                to: to.into(),
            },
            &[],
        )
    }

    fn start(id: u32, resource: &str, after: &[u32]) -> Action {
        action(id, resource, ActionKind::Start { host: "h1".into() }, after)
    }

    fn ids(actions: &[Action]) -> Vec<u32> {
        actions.iter().map(|action| action.id).collect()
    }

    const WIDE: Limits = Limits {
        parallel: 32,
        migrations_per_host: 2,
    };

    #[test]
    fn an_action_waits_for_what_it_comes_after_and_is_skipped_when_that_fails() {
        let plan = vec![
            start(0, "a", &[]),
            start(1, "b", &[0]),
            start(2, "c", &[1]),
            start(3, "d", &[]),
        ];
        let mut execution = Execution::new(plan, WIDE, []);
        assert_eq!(ids(&execution.next(|_| true).launch), [0, 3]);
        assert!(execution.next(|_| true).launch.is_empty());
        execution.finished(0, false);
        let step = execution.next(|_| true);
        assert!(step.launch.is_empty());
        assert_eq!(
            ids(&step.skipped),
            [1, 2],
            "the failure reaches every later step"
        );
        execution.finished(3, true);
        assert!(execution.is_done());
    }

    #[test]
    fn successors_run_once_every_dependency_succeeded() {
        let plan = vec![
            start(0, "a", &[]),
            start(1, "b", &[]),
            start(2, "c", &[0, 1]),
        ];
        let mut execution = Execution::new(plan, WIDE, []);
        assert_eq!(ids(&execution.next(|_| true).launch), [0, 1]);
        execution.finished(0, true);
        assert!(execution.next(|_| true).launch.is_empty());
        execution.finished(1, true);
        assert_eq!(ids(&execution.next(|_| true).launch), [2]);
    }

    #[test]
    fn parallelism_bounds_what_runs_at_once() {
        let plan = (0..5).map(|id| start(id, &format!("r{id}"), &[])).collect();
        let limits = Limits {
            parallel: 2,
            migrations_per_host: 2,
        };
        let mut execution = Execution::new(plan, limits, []);
        assert_eq!(ids(&execution.next(|_| true).launch), [0, 1]);
        execution.finished(1, true);
        assert_eq!(ids(&execution.next(|_| true).launch), [2]);
        assert_eq!(execution.running(), 2);
    }

    #[test]
    fn the_migration_limit_counts_per_host_both_ends_and_migrations_under_way() {
        let plan = vec![
            migrate(0, "a", "h1", "h2"),
            migrate(1, "b", "h1", "h3"),
            migrate(2, "c", "h4", "h5"),
            migrate(3, "d", "h3", "h2"),
        ];
        let limits = Limits {
            parallel: 32,
            migrations_per_host: 1,
        };
        // An operator's migration h5 -> h6 is under way: c must wait for it.
        let mut execution = Execution::new(plan, limits, [("h5", "h6")]);
        assert_eq!(ids(&execution.next(|_| true).launch), [0]);
        execution.finished(0, true);
        assert_eq!(
            ids(&execution.next(|_| true).launch),
            [1],
            "h2 and h3 each take one"
        );
        execution.finished(1, true);
        assert_eq!(ids(&execution.next(|_| true).launch), [3]);
        let limits = Limits {
            parallel: 32,
            migrations_per_host: 2,
        };
        let plan = vec![migrate(0, "a", "h1", "h2"), migrate(1, "b", "h1", "h3")];
        let mut execution = Execution::new(plan, limits, []);
        assert_eq!(ids(&execution.next(|_| true).launch), [0, 1]);
    }

    #[test]
    fn an_action_not_admitted_stays_waiting() {
        let plan = vec![start(0, "busy", &[]), start(1, "free", &[])];
        let mut execution = Execution::new(plan, WIDE, []);
        assert_eq!(
            ids(&execution.next(|action| action.resource != "busy").launch),
            [1]
        );
        assert_eq!(execution.resources(), BTreeSet::from(["busy", "free"]));
        assert_eq!(ids(&execution.next(|_| true).launch), [0]);
    }

    /// A random plan (each action after some earlier ones; starts and migrations among four
    /// hosts), random outcomes, random completion order.
    fn plan_and_outcomes()
    -> impl proptest::strategy::Strategy<Value = (Vec<Action>, Vec<bool>, Vec<usize>)> {
        use proptest::prelude::*;
        (1usize..24)
            .prop_flat_map(|n| {
                let actions = (0..n)
                    .map(|id| {
                        (
                            proptest::collection::vec(0..id.max(1), 0..3),
                            proptest::option::of((0usize..4, 0usize..4)),
                        )
                    })
                    .collect::<Vec<_>>();
                (
                    actions,
                    proptest::collection::vec(any::<bool>(), n),
                    proptest::collection::vec(0usize..64, 4 * n),
                )
            })
            .prop_map(|(shape, outcomes, order)| {
                let plan = shape
                    .into_iter()
                    .enumerate()
                    .map(|(id, (after, migration))| {
                        let id = u32::try_from(id).expect("small");
                        let mut after: Vec<u32> = after
                            .into_iter()
                            .filter_map(|before| u32::try_from(before).ok())
                            .filter(|before| *before < id)
                            .collect();
                        after.sort_unstable();
                        after.dedup();
                        match migration {
                            Some((from, to)) if from != to => action(
                                id,
                                &format!("r{id}"),
                                ActionKind::Migrate {
                                    from: format!("h{from}"),
                                    to: format!("h{to}"),
                                },
                                &after,
                            ),
                            _ => start(id, &format!("r{id}"), &after),
                        }
                    })
                    .collect();
                (plan, outcomes, order)
            })
    }

    proptest::proptest! {
        #[test]
        fn limits_and_orderings_hold_and_every_action_ends(
            (plan, outcomes, order) in plan_and_outcomes(),
            parallel in 1usize..4,
            per_host in 1usize..3,
        ) {
            let limits = Limits { parallel, migrations_per_host: per_host };
            let under_way = [("h0", "h1")];
            let mut execution = Execution::new(plan.clone(), limits, under_way);
            let mut ended: BTreeMap<u32, bool> = BTreeMap::new();
            let mut running: Vec<Action> = Vec::new();
            let mut order = order.into_iter().cycle();
            loop {
                let step = execution.next(|_| true);
                for action in &step.skipped {
                    proptest::prop_assert!(
                        action.after.iter().any(|id| ended.get(id) == Some(&false)),
                        "{} skipped without a failed dependency", action.id
                    );
                    ended.insert(action.id, false);
                }
                for action in step.launch {
                    proptest::prop_assert!(
                        action.after.iter().all(|id| ended.get(id) == Some(&true)),
                        "{} launched before its dependencies succeeded", action.id
                    );
                    running.push(action);
                }
                proptest::prop_assert!(running.len() <= parallel);
                for host in ["h0", "h1", "h2", "h3"] {
                    let outside = usize::from(host == "h0" || host == "h1");
                    let migrations = running
                        .iter()
                        .filter_map(migration_ends)
                        .filter(|(from, to)| *from == host || *to == host)
                        .count();
                    // Under way outside counts; a plan migration may not exceed the limit
                    // even then (one outside already at the limit blocks the host).
                    proptest::prop_assert!(
                        migrations == 0 || migrations + outside <= per_host,
                        "{host}: {migrations} migrations + {outside} under way, limit {per_host}"
                    );
                }
                if running.is_empty() {
                    break;
                }
                let index = order.next().unwrap_or(0) % running.len();
                let action = running.remove(index);
                let ok = outcomes[action.id as usize];
                ended.insert(action.id, ok);
                execution.finished(action.id, ok);
            }
            // Left waiting: only migrations the outside one blocks (at a limit of one), and
            // what comes after them.
            let mut blocked: BTreeSet<u32> = BTreeSet::new();
            for action in &plan {
                let held = per_host == 1
                    && migration_ends(action)
                        .is_some_and(|(from, to)| [from, to].iter().any(|h| *h == "h0" || *h == "h1"));
                let behind = action.after.iter().any(|id| blocked.contains(id))
                    && !action.after.iter().any(|id| ended.get(id) == Some(&false));
                if (held || behind) && !ended.contains_key(&action.id) {
                    blocked.insert(action.id);
                }
            }
            proptest::prop_assert_eq!(ended.len() + blocked.len(), plan.len());
            proptest::prop_assert_eq!(execution.is_done(), blocked.is_empty());
        }
    }

    #[test]
    fn an_aborted_plan_launches_nothing_more_and_ends_with_what_runs() {
        let plan = vec![start(0, "a", &[]), start(1, "b", &[0]), start(2, "c", &[])];
        let limits = Limits {
            parallel: 1,
            migrations_per_host: 1,
        };
        let mut execution = Execution::new(plan, limits, []);
        assert_eq!(ids(&execution.next(|_| true).launch), [0]);
        assert_eq!(ids(&execution.abort()), [1, 2]);
        assert!(!execution.is_done(), "a is still running");
        execution.finished(0, true);
        assert_eq!(execution.next(|_| true), Step::default());
        assert!(execution.is_done());
    }

    #[test]
    fn unknown_or_repeated_results_change_nothing() {
        let mut execution = Execution::new(vec![start(0, "a", &[]), start(1, "b", &[0])], WIDE, []);
        execution.next(|_| true);
        execution.finished(7, false);
        execution.finished(0, true);
        execution.finished(0, false);
        assert_eq!(ids(&execution.next(|_| true).launch), [1]);
    }
}
