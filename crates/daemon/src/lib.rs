//! The node daemon: loads the configuration and data directory, starts the replica, serves the API,
//! heartbeats to the leader and, while leading, reconciles Raft membership.

pub mod config;
pub mod datadir;
mod heartbeat;
mod membership;
pub mod setup;

use config::NodeConfig;
use datadir::{DataDir, DataDirError};
use hafen_api::{ApiContext, Liveness, LocalNode};
use hafen_model::Rejection;
use hafen_rpc::{Identity, Network, PeerClient};
use hafen_store::{PeerNode, Replica};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Why the daemon could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Store(#[from] hafen_store::StoreError),
    #[error(transparent)]
    Tls(#[from] hafen_rpc::TlsError),
    #[error("cannot listen on {address}: {detail}")]
    Listen { address: String, detail: String },
    #[error("bootstrap of the new cluster failed: {0}")]
    Bootstrap(String),
}

/// How long the first node waits to win its own election before committing the bootstrap.
const BOOTSTRAP_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the daemon until `shutdown` completes; `ready` is called once the node serves requests.
pub async fn run(
    config: NodeConfig,
    shutdown: impl Future<Output = ()>,
    ready: impl FnOnce(),
) -> Result<(), DaemonError> {
    let data_dir = DataDir::new(&config.data_dir);
    let node = data_dir.load_identity()?;
    let identity = Identity::load(&data_dir.tls_dir())?;
    let peer = PeerClient::new(&identity)?;
    let liveness = Arc::new(Liveness::new(
        Duration::from_millis(config.timeouts.node_timeout_ms),
        Duration::from_millis(config.timeouts.lease_ms),
    ));
    // A peer answering Raft is alive, whatever became of its heartbeats: under heavy loss a
    // node whose answers keep our quorum must never be suspected and fenced.
    let network = Network::new(peer.clone(), node.node_id).on_reply({
        let liveness = liveness.clone();
        Arc::new(move |node_id| liveness.record(node_id, std::time::Instant::now()))
    });
    let replica = Replica::start(
        node.node_id,
        &config.data_dir,
        config.raft_timing(),
        network,
    )
    .await?;
    let advertise = config.advertise_address().to_string();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|error| DaemonError::Listen {
            address: config.listen.to_string(),
            detail: error.to_string(),
        })?;
    let agent = Arc::new(hafen_agent::Agent::new(
        &node.name,
        &config.data_dir.join("qemu"),
        config.advertise_address().ip(),
    ));
    tokio::spawn({
        let agent = agent.clone();
        async move { agent.warm_up().await }
    });
    let lease = agent.lease().clone();
    let orchestrator = Arc::new(hafen_agent::Orchestrator::new(
        replica.clone(),
        peer.clone(),
        agent.clone(),
        node.name.clone(),
        liveness.clone(),
        config.fence_agent_dirs.clone(),
        config
            .watchdog_device
            .as_ref()
            .map(|_| config.watchdog_timeout_ms),
    ));
    let capacity = orchestrator.local_capacity().clone();
    let context = Arc::new(ApiContext {
        replica: replica.clone(),
        peer: peer.clone(),
        local: LocalNode {
            node_id: node.node_id,
            name: node.name.clone(),
            address: advertise.clone(),
        },
        liveness: liveness.clone(),
        identity: identity.clone(),
        orchestrator: orchestrator.clone(),
    });
    let (stop, stopped) = watch::channel(false);
    let server = tokio::spawn(hafen_api::serve(
        listener,
        identity.server_config()?,
        hafen_api::router(context),
        stopped.clone(),
    ));
    if let Some(bootstrap) = data_dir.pending_bootstrap()? {
        let node = PeerNode {
            name: node.name.clone(),
            address: advertise.clone(),
        };
        if let Err(error) = commit_bootstrap(&replica, node, bootstrap).await {
            let _ = stop.send(true);
            replica.shutdown().await;
            return Err(error);
        }
        data_dir.clear_bootstrap()?;
    }
    let background = [
        tokio::spawn(membership::reconcile_loop(
            replica.clone(),
            liveness.clone(),
            stopped.clone(),
        )),
        tokio::spawn(resources_loop(
            replica.clone(),
            orchestrator.clone(),
            stopped.clone(),
        )),
        tokio::spawn(fencing_loop(
            orchestrator,
            Duration::from_millis(config.timeouts.heartbeat_interval_ms / 2),
            stopped.clone(),
        )),
        tokio::spawn(heartbeat::heartbeat_loop(
            replica.clone(),
            peer,
            liveness,
            lease,
            hafen_api_types::Heartbeat {
                node_id: node.node_id,
                name: node.name.clone(),
                watchdog_timeout_ms: config
                    .watchdog_device
                    .as_ref()
                    .map(|_| config.watchdog_timeout_ms),
                capacity: capacity.clone(),
            },
            Duration::from_millis(config.timeouts.heartbeat_interval_ms),
            stopped.clone(),
        )),
        tokio::spawn(hafen_agent::lease::guard_loop(
            agent,
            config.watchdog_device.clone(),
            Duration::from_millis(config.timeouts.heartbeat_interval_ms),
            Duration::from_millis(config.timeouts.lease_ms),
            stopped.clone(),
        )),
    ];
    tracing::info!(node = %node.name, node_id = node.node_id, address = %advertise, "node serving");
    ready();
    shutdown.await;
    tracing::info!("shutting down");
    let _ = stop.send(true);
    for task in background {
        let _ = task.await;
    }
    let _ = server.await;
    replica.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

/// The leader's resource reconciliation: after every change and at least every second.
async fn resources_loop(
    replica: Replica,
    orchestrator: Arc<hafen_agent::Orchestrator>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut applied = replica.subscribe_applied();
    loop {
        tokio::select! {
            _ = orchestrator.reconcile_once() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        tokio::select! {
            _ = applied.changed() => {}
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// The leader's failure detection and fencing, on a tick of half the heartbeat interval.
async fn fencing_loop(
    orchestrator: Arc<hafen_agent::Orchestrator>,
    tick: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        tokio::select! {
            _ = orchestrator.fence_once() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Makes this node the single voter of a new cluster and commits the bootstrap command.
async fn commit_bootstrap(
    replica: &Replica,
    node: PeerNode,
    mut bootstrap: hafen_model::Envelope,
) -> Result<(), DaemonError> {
    replica
        .initialize(node)
        .await
        .map_err(|error| DaemonError::Bootstrap(error.to_string()))?;
    let mut metrics = replica.subscribe_metrics();
    // The guard `wait_for` returns holds the metrics lock: turn it into a bool at once,
    // or openraft cannot publish metrics and the write below never completes.
    let became_leader = tokio::time::timeout(BOOTSTRAP_TIMEOUT, async {
        metrics
            .wait_for(|metrics| metrics.current_leader == Some(replica.node_id()))
            .await
            .is_ok()
    })
    .await
    .unwrap_or(false);
    if !became_leader {
        return Err(DaemonError::Bootstrap(format!(
            "this node did not become leader of its new cluster within {} s",
            BOOTSTRAP_TIMEOUT.as_secs()
        )));
    }
    bootstrap.now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0);
    match replica.write(bootstrap).await {
        Ok(Ok(_)) | Ok(Err(Rejection::Conflict(_))) => Ok(()),
        Ok(Err(rejection)) => Err(DaemonError::Bootstrap(rejection.to_string())),
        Err(error) => Err(DaemonError::Bootstrap(error.to_string())),
    }
}

/// Tells systemd the daemon is ready (a no-op when not run by systemd).
pub fn notify_ready() {
    if let Err(error) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::debug!(%error, "sd_notify failed");
    }
}
