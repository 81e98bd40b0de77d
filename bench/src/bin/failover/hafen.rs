//! hafen's side of `bench/failover`: a 3-host namespace dev cluster at its defaults.

use crate::{Options, RunFigures};

/// Runs `options.runs` host kills against a hafen dev cluster.
pub fn measure(_options: &Options) -> Result<Vec<RunFigures>, String> {
    Err("not built yet".to_string())
}
