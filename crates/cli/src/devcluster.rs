//! `hafen dev-cluster`: N daemons on this machine, on loopback ports or one network namespace per host.
//!
//! Namespace topology (DESIGN section 9): a switch namespace `hafen-sw` holds a bridge;
//! each host namespace `hafen-<node>` has its own bridge `br0` carrying the host's
//! address (and later its guests' taps) with a veth uplink into the switch; the root
//! namespace reaches everything through one more veth. `down` removes all of it.

use crate::GlobalArgs;
use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use hafen_client::{Client, Credentials};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(Debug, Subcommand)]
pub enum DevClusterCommand {
    /// Start a cluster; returns once the leader is elected and every node joined.
    Up {
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// One network namespace per host (needs root and iproute2).
        #[arg(long)]
        netns: bool,
        /// Where configs, data, logs and cluster.json go.
        #[arg(long)]
        dir: PathBuf,
        /// Node names are PREFIX1..PREFIXN.
        #[arg(long, default_value = "node")]
        prefix: String,
        /// The last K nodes join as witnesses (voters that run no workloads).
        #[arg(long, default_value_t = 0)]
        witnesses: usize,
        /// Create N VMs from the test guest on a shared dir pool under DIR (needs --netns).
        #[arg(long, default_value_t = 0)]
        demo_vms: usize,
        /// How hosts are fenced: `device` (with --netns: `fence_hafen_netns`, which kills
        /// every process of the namespace) or `self` (no device: each daemon self-fences
        /// when its lease lapses and declares a watchdog; a plain file under DIR stands in
        /// for /dev/watchdog, so nothing resets a hung host — for trying the lease path).
        #[arg(long, value_enum, default_value_t = DevFencing::Device)]
        fencing: DevFencing,
        #[command(flatten)]
        guest: GuestArgs,
    },
    /// Stop every daemon and remove every namespace and link the cluster made.
    Down {
        #[arg(long)]
        dir: PathBuf,
    },
}

/// The test guest built by `guest/build.sh` (`eval "$(guest/build.sh)"` sets the variables).
#[derive(Debug, Clone, clap::Args)]
pub struct GuestArgs {
    #[arg(long, env = "HAFEN_GUEST_KERNEL")]
    pub guest_kernel: Option<PathBuf>,
    #[arg(long, env = "HAFEN_GUEST_INITRD")]
    pub guest_initrd: Option<PathBuf>,
    #[arg(long, env = "HAFEN_GUEST_CMDLINE")]
    pub guest_cmdline: Option<String>,
}

impl GuestArgs {
    /// The kernel, initrd and command line, checked to exist.
    fn resolve(&self) -> anyhow::Result<(PathBuf, PathBuf, String)> {
        let missing = || {
            anyhow!(
                "--demo-vms needs the test guest: run `eval \"$(guest/build.sh)\"` or pass --guest-kernel/--guest-initrd/--guest-cmdline"
            )
        };
        let kernel = self.guest_kernel.clone().ok_or_else(missing)?;
        let initrd = self.guest_initrd.clone().ok_or_else(missing)?;
        let cmdline = self.guest_cmdline.clone().ok_or_else(missing)?;
        for path in [&kernel, &initrd] {
            if !path.exists() {
                bail!(
                    "test guest file {} is missing; run guest/build.sh",
                    path.display()
                );
            }
        }
        Ok((kernel, initrd, cmdline))
    }
}

/// A demo VM and where its HTTP service answers from the root namespace.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmEntry {
    pub name: String,
    pub service_url: String,
    pub address: String,
}

/// `DIR/cluster.json`: what scripts and tests need to drive and kill hosts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterFile {
    pub nodes: Vec<NodeEntry>,
    pub admin_token: String,
    pub ca_file: PathBuf,
    pub credentials_file: PathBuf,
    /// Namespaces and root-side links created, for `down`.
    pub network: Option<NetworkEntry>,
    #[serde(default)]
    pub vms: Vec<VmEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeEntry {
    pub name: String,
    pub api_url: String,
    pub netns: Option<String>,
    pub pid: u32,
    pub config: PathBuf,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkEntry {
    pub namespaces: Vec<String>,
    pub root_links: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DevFencing {
    Device,
    #[value(name = "self")]
    SelfFencing,
}

/// The watchdog timeout the `--fencing self` daemons declare (their "watchdog" is a file).
const DEV_WATCHDOG_TIMEOUT_MS: u64 = 500;

const SWITCH_NAMESPACE: &str = "hafen-sw";
/// The fence agent that powers a namespace host off by killing every process in it.
const NETNS_FENCE_AGENT: &str = include_str!("../../../contrib/fence/fence_hafen_netns");
const ROOT_LINK: &str = "hafen-root";
const SUBNET_PREFIX: &str = "10.213.0";
const ROOT_ADDRESS: &str = "10.213.0.254";
const NETNS_PORT: u16 = 7000;
const READY_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn run(global: &GlobalArgs, command: DevClusterCommand) -> anyhow::Result<()> {
    match command {
        DevClusterCommand::Up {
            nodes,
            netns,
            dir,
            prefix,
            witnesses,
            demo_vms,
            fencing,
            guest,
        } => {
            if demo_vms > 0 && !netns {
                bail!(
                    "--demo-vms needs --netns: a VM keeps its address across hosts only on the namespace network"
                );
            }
            let guest_files = if demo_vms > 0 {
                Some(guest.resolve()?)
            } else {
                None
            };
            let mut file = up(nodes, netns, &dir, &prefix, witnesses, fencing).await?;
            if let Some(guest_files) = guest_files {
                let dir = std::path::absolute(&dir)?;
                let result = create_demo_vms(&dir, &mut file, demo_vms, &guest_files).await;
                write_cluster_file(&dir, &file)?;
                result?;
            }
            if global.output == crate::OutputFormat::Json {
                println!("{}", serde_json::to_string_pretty(&file)?);
            } else {
                println!(
                    "dev cluster of {nodes} nodes is up; see {}",
                    dir.join("cluster.json").display()
                );
                println!(
                    "try: HAFEN_CREDENTIALS={} hafen status",
                    file.credentials_file.display()
                );
            }
            Ok(())
        }
        DevClusterCommand::Down { dir } => down(&dir),
    }
}

fn node_name(prefix: &str, index: usize) -> String {
    format!("{prefix}{index}")
}

async fn up(
    count: usize,
    netns: bool,
    dir: &Path,
    prefix: &str,
    witnesses: usize,
    fencing: DevFencing,
) -> anyhow::Result<ClusterFile> {
    if !(1..=64).contains(&count) {
        bail!("--nodes must be between 1 and 64");
    }
    if witnesses >= count {
        bail!("--witnesses must be fewer than --nodes (the first node is always a member)");
    }
    hafen_model::NodeName::new(node_name(prefix, count))
        .map_err(|error| anyhow!("--prefix: {error}"))?;
    let dir = std::path::absolute(dir).context("resolving --dir")?;
    if dir.join("cluster.json").exists() {
        bail!(
            "{} already holds a dev cluster; run `hafen dev-cluster down --dir {}` first",
            dir.display(),
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let names: Vec<String> = (1..=count).map(|index| node_name(prefix, index)).collect();
    let network = if netns {
        Some(create_network(&names)?)
    } else {
        None
    };
    let mut file = ClusterFile {
        nodes: Vec::new(),
        admin_token: String::new(),
        ca_file: dir.join("ca.pem"),
        credentials_file: dir.join("credentials.json"),
        network,
        vms: Vec::new(),
    };
    install_fence_agent(&dir)?;
    let mut result = start_nodes(
        &dir,
        &names,
        netns,
        count - witnesses,
        fencing == DevFencing::SelfFencing,
        &mut file,
    )
    .await;
    if result.is_ok() && netns && fencing == DevFencing::Device {
        result = configure_netns_fencing(&file).await;
    }
    // Whatever happened, record what exists so `down` can remove it.
    write_cluster_file(&dir, &file)?;
    result?;
    Ok(file)
}

async fn start_nodes(
    dir: &Path,
    names: &[String],
    netns: bool,
    members: usize,
    self_fencing: bool,
    file: &mut ClusterFile,
) -> anyhow::Result<()> {
    let mut credentials: Option<Credentials> = None;
    for (index, name) in names.iter().enumerate() {
        let node_dir = dir.join(name);
        std::fs::create_dir_all(&node_dir)?;
        let address = if netns {
            format!("{SUBNET_PREFIX}.{}:{NETNS_PORT}", index + 1)
        } else {
            format!("127.0.0.1:{}", free_port()?)
        };
        let config_path = node_dir.join("hafen.toml");
        let data_dir = node_dir.join("data");
        let mut text = format!(
            "node_name = \"{name}\"\nlisten = \"{address}\"\ndata_dir = \"{}\"\nrole = \"{}\"\nfence_agent_dirs = [\"{}\", \"/usr/sbin\"]\n",
            data_dir.display(),
            if index < members { "member" } else { "witness" },
            dir.join("fence").display()
        );
        if self_fencing {
            let watchdog = node_dir.join("watchdog");
            std::fs::write(&watchdog, "")?;
            text.push_str(&format!(
                "watchdog_device = \"{}\"\nwatchdog_timeout_ms = {DEV_WATCHDOG_TIMEOUT_MS}\n",
                watchdog.display()
            ));
        }
        std::fs::write(&config_path, text)?;
        let config = hafen_daemon::config::NodeConfig::load(&config_path)?;
        match &credentials {
            None => {
                let outcome = hafen_daemon::setup::init_cluster(&config, "dev")?;
                std::fs::write(&file.ca_file, &outcome.credentials.ca_pem)?;
                file.admin_token = outcome.credentials.token.clone();
                credentials = Some(outcome.credentials);
            }
            Some(credentials) => {
                let client = Client::new(
                    credentials.servers.clone(),
                    &credentials.ca_pem,
                    Some(credentials.token.clone()),
                )?;
                let token = client.issue_token(Some(600)).await?.token;
                hafen_daemon::setup::join_cluster(&config, &credentials.servers[0], &token)
                    .await
                    .with_context(|| format!("joining {name}"))?;
            }
        }
        let log = node_dir.join("daemon.log");
        let namespace = netns.then(|| format!("hafen-{name}"));
        let pid = spawn_daemon(&config_path, &log, namespace.as_deref())?;
        file.nodes.push(NodeEntry {
            name: name.clone(),
            api_url: format!("https://{address}"),
            netns: namespace,
            pid,
            config: config_path,
            data_dir,
            log: log.clone(),
        });
        let credentials = credentials.as_mut().expect("set by the first node");
        credentials.servers = file.nodes.iter().map(|node| node.api_url.clone()).collect();
        credentials.save(&file.credentials_file)?;
        wait_until_member(credentials, name, &log).await?;
    }
    let credentials = credentials.expect("at least one node");
    wait_until_settled(&credentials, names.len()).await
}

fn spawn_daemon(config: &Path, log: &Path, namespace: Option<&str>) -> anyhow::Result<u32> {
    use std::os::unix::process::CommandExt;
    let executable = std::env::current_exe().context("locating the hafen binary")?;
    let output = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let mut command = match namespace {
        Some(namespace) => {
            let mut command = Command::new("ip");
            command.args(["netns", "exec", namespace]).arg(&executable);
            command
        }
        None => Command::new(&executable),
    };
    command
        .arg("daemon")
        .arg("--config")
        .arg(config)
        .stdin(std::process::Stdio::null())
        .stdout(output.try_clone()?)
        .stderr(output)
        // Its own process group: a Ctrl-C at the terminal that ran `up` does not stop the cluster.
        .process_group(0);
    let child = command
        .spawn()
        .with_context(|| format!("starting daemon for {}", config.display()))?;
    Ok(child.id())
}

/// Waits until `name` answers through the API and is listed as a member.
async fn wait_until_member(
    credentials: &Credentials,
    name: &str,
    log: &Path,
) -> anyhow::Result<()> {
    let client = Client::new(
        credentials.servers.clone(),
        &credentials.ca_pem,
        Some(credentials.token.clone()),
    )?
    .with_deadline(Duration::from_secs(2));
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        if let Ok(status) = client.status().await
            && status.nodes.iter().any(|node| node.name == name)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!(
                "node {name} did not join within {} s; its log ends: {}",
                READY_TIMEOUT.as_secs(),
                tail.join(" | ")
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until a leader is elected, every node is online and the voter set is complete.
async fn wait_until_settled(credentials: &Credentials, count: usize) -> anyhow::Result<()> {
    let client = Client::new(
        credentials.servers.clone(),
        &credentials.ca_pem,
        Some(credentials.token.clone()),
    )?
    .with_deadline(Duration::from_secs(2));
    let voters_wanted = count.min(3);
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut last;
    loop {
        match client.status().await {
            Ok(status) => {
                let online = status
                    .nodes
                    .iter()
                    .filter(|node| node.state == hafen_api_types::NodeState::Online)
                    .count();
                let voters = status.nodes.iter().filter(|node| node.voter).count();
                if status.leader.is_some()
                    && status.nodes.len() == count
                    && online == count
                    && voters == voters_wanted
                {
                    return Ok(());
                }
                last = format!(
                    "{} nodes, {online} online, {voters} voters, leader {:?}",
                    status.nodes.len(),
                    status.leader
                );
            }
            Err(error) => last = error.to_string(),
        }
        if Instant::now() > deadline {
            bail!(
                "cluster did not settle within {} s: {last}",
                READY_TIMEOUT.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Defines the shared pool and the test-guest template, creates the VMs round-robin over
/// the members and waits until every guest's HTTP service answers from the root namespace.
async fn create_demo_vms(
    dir: &Path,
    file: &mut ClusterFile,
    count: usize,
    (kernel, initrd, cmdline): &(PathBuf, PathBuf, String),
) -> anyhow::Result<()> {
    let credentials = Credentials::load(&file.credentials_file)?;
    let client = Client::new(
        credentials.servers.clone(),
        &credentials.ca_pem,
        Some(credentials.token.clone()),
    )?;
    let pool_path = dir.join("pool");
    std::fs::create_dir_all(&pool_path)?;
    client
        .define_pool(&hafen_api_types::PoolRequest {
            name: "shared".to_string(),
            kind: None,
            path: pool_path.display().to_string(),
        })
        .await?;
    client
        .define_template(&hafen_api_types::TemplateRequest {
            name: "test-guest".to_string(),
            pool: "shared".to_string(),
            kernel: Some(kernel.display().to_string()),
            initrd: Some(initrd.display().to_string()),
            cmdline: Some(cmdline.clone()),
            base_volume: None,
            disk_size_mib: 16,
            bridge: "br0".to_string(),
            memory_mib: Some(128),
            vcpus: Some(1),
        })
        .await?;
    let members: Vec<String> = file.nodes.iter().map(|node| node.name.clone()).collect();
    for index in 1..=count {
        let name = format!("vm{index}");
        let ip = format!("{SUBNET_PREFIX}.{}", 100 + index);
        client
            .create_vm(&hafen_api_types::VmCreateRequest {
                name: name.clone(),
                template: "test-guest".to_string(),
                vcpus: None,
                memory_mib: None,
                host: Some(members[(index - 1) % members.len()].clone()),
                address: Some(format!("{ip}/24")),
                start: Some(true),
            })
            .await
            .with_context(|| format!("creating {name}"))?;
        file.vms.push(VmEntry {
            name,
            service_url: format!("http://{ip}/"),
            address: ip,
        });
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let deadline = Instant::now() + Duration::from_secs(180);
    for vm in &file.vms {
        loop {
            if let Ok(response) = http.get(&vm.service_url).send().await
                && response.status().is_success()
            {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer at {} within 180 s",
                    vm.name,
                    vm.service_url
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

/// Writes the namespace fence agent where the daemons look for fence agents first.
fn install_fence_agent(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let agents = dir.join("fence");
    std::fs::create_dir_all(&agents)?;
    let path = agents.join("fence_hafen_netns");
    std::fs::write(&path, NETNS_FENCE_AGENT)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// Every namespace host is fenced by killing every process in its namespace (power off).
async fn configure_netns_fencing(file: &ClusterFile) -> anyhow::Result<()> {
    let credentials = Credentials::load(&file.credentials_file)?;
    let client = Client::new(
        credentials.servers.clone(),
        &credentials.ca_pem,
        Some(credentials.token.clone()),
    )?;
    client
        .add_fence_device(&serde_json::json!({"name": "netns", "agent": "fence_hafen_netns"}))
        .await
        .context("configuring the namespace fence device")?;
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

fn write_cluster_file(dir: &Path, file: &ClusterFile) -> anyhow::Result<()> {
    let path = dir.join("cluster.json");
    std::fs::write(&path, serde_json::to_string_pretty(file)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// Runs `ip ARGS`, failing with its stderr.
fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("running `ip` (install iproute2)")?;
    if !output.status.success() {
        bail!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn namespace_exists(name: &str) -> bool {
    Path::new("/run/netns").join(name).exists()
}

fn create_network(names: &[String]) -> anyhow::Result<NetworkEntry> {
    if namespace_exists(SWITCH_NAMESPACE) {
        bail!(
            "a netns dev cluster is already running here (namespace {SWITCH_NAMESPACE} exists); run `hafen dev-cluster down --dir <its dir>` first"
        );
    }
    let mut entry = NetworkEntry {
        namespaces: Vec::new(),
        root_links: Vec::new(),
    };
    let result = build_network(names, &mut entry);
    if result.is_err() {
        remove_network(&entry);
    }
    result.map(|()| entry)
}

fn build_network(names: &[String], entry: &mut NetworkEntry) -> anyhow::Result<()> {
    ip(&["netns", "add", SWITCH_NAMESPACE])?;
    entry.namespaces.push(SWITCH_NAMESPACE.to_string());
    ip(&["-n", SWITCH_NAMESPACE, "link", "set", "lo", "up"])?;
    ip(&[
        "-n",
        SWITCH_NAMESPACE,
        "link",
        "add",
        "br0",
        "type",
        "bridge",
    ])?;
    ip(&["-n", SWITCH_NAMESPACE, "link", "set", "br0", "up"])?;
    ip(&[
        "link",
        "add",
        ROOT_LINK,
        "type",
        "veth",
        "peer",
        "name",
        "up-root",
        "netns",
        SWITCH_NAMESPACE,
    ])?;
    entry.root_links.push(ROOT_LINK.to_string());
    ip(&[
        "-n",
        SWITCH_NAMESPACE,
        "link",
        "set",
        "up-root",
        "master",
        "br0",
        "up",
    ])?;
    ip(&[
        "addr",
        "add",
        &format!("{ROOT_ADDRESS}/24"),
        "dev",
        ROOT_LINK,
    ])?;
    ip(&["link", "set", ROOT_LINK, "up"])?;
    for (index, name) in names.iter().enumerate() {
        let namespace = format!("hafen-{name}");
        let host_link = format!("hh{}", index + 1);
        let switch_link = format!("hs{}", index + 1);
        ip(&["netns", "add", &namespace])?;
        entry.namespaces.push(namespace.clone());
        ip(&["-n", &namespace, "link", "set", "lo", "up"])?;
        ip(&["-n", &namespace, "link", "add", "br0", "type", "bridge"])?;
        ip(&[
            "-n",
            &namespace,
            "addr",
            "add",
            &format!("{SUBNET_PREFIX}.{}/24", index + 1),
            "dev",
            "br0",
        ])?;
        ip(&["-n", &namespace, "link", "set", "br0", "up"])?;
        ip(&[
            "-n",
            &namespace,
            "link",
            "add",
            &host_link,
            "type",
            "veth",
            "peer",
            "name",
            &switch_link,
            "netns",
            SWITCH_NAMESPACE,
        ])?;
        ip(&[
            "-n", &namespace, "link", "set", &host_link, "master", "br0", "up",
        ])?;
        ip(&[
            "-n",
            SWITCH_NAMESPACE,
            "link",
            "set",
            &switch_link,
            "master",
            "br0",
            "up",
        ])?;
    }
    Ok(())
}

fn remove_network(entry: &NetworkEntry) {
    for namespace in entry.namespaces.iter().rev() {
        kill_namespace_processes(namespace);
        let _ = ip(&["netns", "del", namespace]);
    }
    for link in &entry.root_links {
        let _ = ip(&["link", "del", link]);
    }
}

/// Kills every process left in a namespace (daemons, and later their VMs).
fn kill_namespace_processes(namespace: &str) {
    let Ok(output) = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
    else {
        return;
    };
    for pid in String::from_utf8_lossy(&output.stdout).split_whitespace() {
        if let Ok(pid) = pid.parse::<i32>() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

fn process_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|stat| {
                stat.split(") ")
                    .nth(1)
                    .is_some_and(|rest| rest.starts_with('Z'))
            })
            .unwrap_or(true)
}

fn down(dir: &Path) -> anyhow::Result<()> {
    let path = dir.join("cluster.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no dev cluster at {}", dir.display()))?;
    let file: ClusterFile =
        serde_json::from_str(&text).with_context(|| format!("{} is malformed", path.display()))?;
    for node in &file.nodes {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(node.pid).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while file.nodes.iter().any(|node| process_alive(node.pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for node in file.nodes.iter().filter(|node| process_alive(node.pid)) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(node.pid).unwrap_or(i32::MAX));
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
    }
    if let Some(network) = &file.network {
        remove_network(network);
    }
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    println!("dev cluster at {} is down", dir.display());
    Ok(())
}
