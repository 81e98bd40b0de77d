//! Pacemaker's side of `bench/failover`: corosync + pacemaker on 3 namespace hosts.

use crate::{Options, RunFigures};

/// Runs `options.runs` host kills against a corosync + pacemaker cluster, at defaults or
/// tuned (token 1000, token_coefficient 0).
pub fn measure(_options: &Options, _tuned: bool) -> Result<Vec<RunFigures>, String> {
    Err("not built yet".to_string())
}
