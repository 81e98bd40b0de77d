//! The `hafen` binary: `hafen daemon` on every host, everything else a client of the REST API.

mod commands;
mod devcluster;
mod output;

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "hafen",
    version,
    about = "High-availability cluster manager for virtual machines"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: TopCommand,
}

/// Options every client command takes.
#[derive(Debug, clap::Args, Clone)]
pub struct GlobalArgs {
    /// API address(es), comma-separated: https://HOST:PORT. Default: from the credentials file.
    #[arg(long, global = true, env = "HAFEN_SERVER", value_delimiter = ',')]
    pub server: Vec<String>,
    /// API token. Default: from the credentials file.
    #[arg(long, global = true, env = "HAFEN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// The cluster CA certificate (PEM). Default: from the credentials file.
    #[arg(long, global = true, env = "HAFEN_CA")]
    pub ca: Option<PathBuf>,
    /// Credentials file written by `hafen cluster init`. Default: ~/.config/hafen/credentials.json.
    #[arg(long, global = true, env = "HAFEN_CREDENTIALS")]
    pub credentials: Option<PathBuf>,
    /// Output format.
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub output: OutputFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum TopCommand {
    /// Run the node daemon.
    Daemon {
        #[arg(long)]
        config: PathBuf,
    },
    /// Create, join and leave clusters.
    #[command(subcommand)]
    Cluster(ClusterCommand),
    /// Show the cluster like `crm_mon -1`.
    Status {
        /// Redraw every second until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Inspect and remove nodes.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Cluster properties and the versioned configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Virtual machines.
    #[command(subcommand)]
    Vm(VmCommand),
    /// Cluster resources (today VMs; OCF agents come next).
    #[command(subcommand)]
    Resource(ResourceCommand),
    /// Fence devices (standard fence agents).
    #[command(subcommand, name = "fence-device")]
    FenceDevice(FenceDeviceCommand),
    /// Resource agents (OCF).
    #[command(subcommand)]
    Agent(AgentCommand),
    /// Placement constraints (manual moves show up here as cli-prefer-*/cli-ban-*).
    #[command(subcommand)]
    Constraint(ConstraintCommand),
    /// Storage pools (directories every host mounts at the same path).
    #[command(subcommand)]
    Pool(PoolCommand),
    /// Templates new VMs are made from.
    #[command(subcommand)]
    Template(TemplateCommand),
    /// The cluster's event log.
    Events {
        /// Keep printing new events.
        #[arg(long)]
        follow: bool,
    },
    /// A resource's per-host scores and the constraints behind them.
    Explain { resource: String },
    /// Run the deterministic HA simulator: random seeds, or replay one.
    Sim {
        /// How many random seeds to run.
        #[arg(long)]
        seeds: Option<u64>,
        /// Replay exactly this seed and print its event log if it fails.
        #[arg(long)]
        seed: Option<u64>,
        /// Stop starting new seeds after this many seconds.
        #[arg(long)]
        time_box_s: Option<u64>,
    },
    /// Print a shell completion script.
    Completions { shell: clap_complete::Shell },
    /// Run a local cluster of several daemons for development, demos and tests.
    #[command(subcommand, name = "dev-cluster")]
    DevCluster(devcluster::DevClusterCommand),
}

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Create a new cluster with this node as its first member (run before the first `hafen daemon`).
    Init {
        #[arg(long)]
        config: PathBuf,
        /// The cluster's name.
        #[arg(long, default_value = "hafen")]
        name: String,
        /// Where to write the admin credentials. Default: ~/.config/hafen/credentials.json.
        #[arg(long)]
        credentials_out: Option<PathBuf>,
    },
    /// Join the cluster at ADDR with a one-time token (run before this node's first `hafen daemon`).
    Join {
        /// Any member's API address, HOST:PORT.
        addr: String,
        #[arg(long)]
        token: String,
        #[arg(long)]
        config: PathBuf,
    },
    /// Issue a one-time join token.
    Token {
        /// Validity, e.g. 30m, 1h, 2d.
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// Remove the node of this config from the cluster.
    Leave {
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum VmCommand {
    /// Create a VM from a template (and start it unless --no-start).
    Create {
        name: String,
        #[arg(long)]
        template: String,
        #[arg(long)]
        cpus: Option<u32>,
        /// Memory in MiB.
        #[arg(long)]
        memory: Option<u64>,
        /// Preferred host for the first start.
        #[arg(long)]
        host: Option<String>,
        /// The guest's static address, ip/prefix.
        #[arg(long)]
        address: Option<String>,
        #[arg(long)]
        no_start: bool,
    },
    List,
    Show {
        name: String,
    },
    Start {
        name: String,
    },
    /// Graceful stop: ACPI power-down, then quit, then kill.
    Stop {
        name: String,
    },
    Restart {
        name: String,
    },
    /// Live-migrate a running VM.
    Migrate {
        name: String,
        #[arg(long)]
        to: Option<String>,
        /// Bandwidth cap in MiB/s (default 1024).
        #[arg(long)]
        bandwidth: Option<u64>,
        /// How long the move's constraint applies (e.g. 30m); default until `constraint remove`.
        #[arg(long)]
        lifetime: Option<String>,
    },
    /// Delete a stopped VM and its disks.
    Delete {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ResourceCommand {
    /// Add a resource run by a standard agent: `resource add web ocf:heartbeat:Dummy fake=x --op monitor interval=10s timeout=20s`.
    Add {
        name: String,
        /// `ocf:<provider>:<type>` or `systemd:<unit>`.
        agent: String,
        /// Agent parameters as `name=value`.
        parameters: Vec<String>,
        /// `monitor interval=10s timeout=20s`.
        #[arg(long, num_args = 1..)]
        op: Vec<String>,
        #[arg(long)]
        host: Option<String>,
        #[arg(long)]
        no_start: bool,
        /// Run as a clone: an instance on every eligible host (or `--clone-max`).
        #[arg(long)]
        clone: bool,
        /// Run as a promotable clone (implies --clone): one instance promoted.
        #[arg(long)]
        promotable: bool,
        #[arg(long)]
        clone_max: Option<u32>,
        #[arg(long)]
        promoted_max: Option<u32>,
    },
    List,
    Show {
        name: String,
    },
    Start {
        name: String,
    },
    Stop {
        name: String,
    },
    /// Stop and remove a resource.
    Delete {
        name: String,
    },
    /// Forget a resource's failures so it may run where it failed before.
    Cleanup {
        name: String,
    },
    /// Meta-attributes: `resource meta NAME resource-stickiness=100 migration-threshold=1`;
    /// `key=` unsets one.
    Meta {
        name: String,
        #[arg(required = true)]
        values: Vec<String>,
    },
    /// Groups: members run on one host and start in the order listed (stop in reverse).
    #[command(subcommand)]
    Group(GroupCommand),
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// `group add NAME MEMBER...`: define (or redefine) a group.
    Add {
        name: String,
        #[arg(required = true)]
        members: Vec<String>,
    },
    List,
    /// Remove a group; its members stay, ungrouped.
    Remove {
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Every resource agent installed on the node serving the request.
    List,
    /// An agent's parameters and actions, from its meta-data.
    Info { agent: String },
}

#[derive(Debug, Subcommand)]
pub enum ConstraintCommand {
    /// `location RESOURCE --host H --score S`: prefer (positive) or avoid (negative) a host;
    /// `colocation RESOURCE --with OTHER --score S`: place RESOURCE with (positive) or away
    /// from (negative) OTHER, ±INFINITY mandatory; `order FIRST --then THEN [--optional]
    /// [--asymmetrical]`: start THEN after FIRST (and stop it before FIRST).
    Add {
        /// location, colocation or order.
        kind: String,
        resource: String,
        /// location: the host.
        #[arg(long)]
        host: Option<String>,
        /// location and colocation: an integer, INFINITY or -INFINITY.
        #[arg(long, allow_hyphen_values = true)]
        score: Option<String>,
        /// colocation: the resource to place RESOURCE relative to.
        #[arg(long)]
        with: Option<String>,
        /// order: the resource that starts after RESOURCE.
        #[arg(long)]
        then: Option<String>,
        /// order: only order what happens in the same plan (THEN may run without RESOURCE).
        #[arg(long)]
        optional: bool,
        /// order: THEN need not stop before RESOURCE stops.
        #[arg(long)]
        asymmetrical: bool,
        #[arg(long)]
        id: Option<String>,
        /// location: how long it applies (e.g. 30m).
        #[arg(long)]
        lifetime: Option<String>,
    },
    List,
    Remove {
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Define a `dir` pool.
    Add {
        name: String,
        #[arg(long)]
        path: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum TemplateCommand {
    /// Define a template: kernel boot (--kernel/--initrd/--cmdline) or disk boot (--base-volume).
    Add {
        name: String,
        #[arg(long)]
        pool: String,
        #[arg(long)]
        kernel: Option<String>,
        #[arg(long)]
        initrd: Option<String>,
        #[arg(long)]
        cmdline: Option<String>,
        #[arg(long)]
        base_volume: Option<String>,
        /// Size of each VM's disk in MiB.
        #[arg(long, default_value_t = 64)]
        disk_size: u64,
        #[arg(long)]
        bridge: String,
        #[arg(long)]
        memory: Option<u64>,
        #[arg(long)]
        cpus: Option<u32>,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    List,
    Show {
        name: String,
    },
    Remove {
        name: String,
    },
    /// Take no resources; what runs there moves away (live-migrated when allowed).
    Standby {
        name: String,
    },
    /// Take resources again (they return only where scores beat stickiness).
    Online {
        name: String,
    },
    /// Leave its resources exactly as they are and take nothing new.
    Maintenance {
        name: String,
    },
    /// Standby, then wait until everything has moved away.
    Evacuate {
        name: String,
    },
    /// Power a node off through its fence devices now; its resources recover elsewhere.
    Fence {
        name: String,
    },
    /// Declare a node off without a device (DANGEROUS if it is not): its resources recover elsewhere.
    ConfirmFenced {
        name: String,
        /// Confirms you have checked the node is powered off.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum FenceDeviceCommand {
    /// Add a fence device: `fence-device add ipmi1 --agent fence_ipmilan ip=10.0.0.9 username=admin password=x --secret password`.
    Add {
        name: String,
        #[arg(long)]
        agent: String,
        /// Agent parameters as `name=value`.
        parameters: Vec<String>,
        /// Parameters whose values are secrets (also any name containing passw/secret).
        #[arg(long)]
        secret: Vec<String>,
        /// `node=plug` pairs; a node not listed is its own plug.
        #[arg(long, value_delimiter = ',')]
        host_map: Vec<String>,
    },
    /// Configured devices (secrets redacted).
    List,
    /// Ask a device for a node's power state (fences nothing).
    Test {
        name: String,
        #[arg(long)]
        node: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// All properties with their values.
    Show,
    Get {
        key: String,
    },
    Set {
        key: String,
        value: String,
    },
    /// Return a property to its default.
    Unset {
        key: String,
    },
    /// Configuration versions, newest last.
    History,
    /// What changed from epoch A to epoch B (default: the current one).
    Diff {
        from: u64,
        to: Option<u64>,
    },
    /// Restore the configuration of an earlier epoch (as a new epoch).
    Rollback {
        epoch: u64,
    },
    /// Check a daemon configuration file without starting anything.
    Validate {
        file: PathBuf,
    },
}

fn main() {
    let cli = Cli::parse();
    // reqwest is built without a default TLS provider; ours is ring, everywhere.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime starts");
    let result = runtime.block_on(commands::run(cli));
    if let Err(error) = result {
        eprintln!("error: {}", one_line(&error));
        std::process::exit(1);
    }
}

/// The error and its causes on one line, as the CLI contract asks.
fn one_line(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|part| part.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ").replace('\n', " ")
}
