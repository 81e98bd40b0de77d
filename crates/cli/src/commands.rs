//! Carries out each subcommand: the daemon and local set-up directly, everything else through the API.

use crate::output;
use crate::{
    ClusterCommand, ConfigCommand, ConstraintCommand, GlobalArgs, NodeCommand, OutputFormat,
    PoolCommand, TemplateCommand, TopCommand, VmCommand,
};
use anyhow::{Context, anyhow, bail};
use clap::CommandFactory;
use hafen_client::{Client, Credentials};
use hafen_daemon::config::NodeConfig;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub async fn run(cli: crate::Cli) -> anyhow::Result<()> {
    let global = cli.global;
    match cli.command {
        TopCommand::Daemon { config } => daemon(&config).await,
        TopCommand::Cluster(command) => cluster(&global, command).await,
        TopCommand::Status { watch } => status(&global, watch).await,
        TopCommand::Node(command) => node(&global, command).await,
        TopCommand::Config(command) => config(&global, command).await,
        TopCommand::Events { follow } => events(&global, follow).await,
        TopCommand::Vm(command) => vm(&global, command).await,
        TopCommand::Constraint(command) => constraint(&global, command).await,
        TopCommand::Resource(command) => resource(&global, command).await,
        TopCommand::Agent(command) => agent(&global, command).await,
        TopCommand::FenceDevice(command) => fence_device(&global, command).await,
        TopCommand::Pool(command) => pool(&global, command).await,
        TopCommand::Template(command) => template(&global, command).await,
        TopCommand::Explain { resource } => {
            let explanation = client(&global)?.explain(&resource).await?;
            if global.output == OutputFormat::Json {
                print_json(&explanation);
            } else {
                print!("{}", explanation.text);
            }
            Ok(())
        }
        TopCommand::Sim {
            seeds,
            seed,
            time_box_s,
        } => {
            let status = hafen_sim::cli_main(seeds, seed, time_box_s.map(|seconds| seconds * 1000));
            if status != 0 {
                std::process::exit(status);
            }
            Ok(())
        }
        TopCommand::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut crate::Cli::command(),
                "hafen",
                &mut std::io::stdout(),
            );
            Ok(())
        }
        TopCommand::DevCluster(command) => crate::devcluster::run(&global, command).await,
    }
}

/// The default credentials file, `~/.config/hafen/credentials.json`.
pub fn default_credentials_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("hafen").join("credentials.json"))
}

/// A client from flags, environment and the credentials file, in that order.
pub fn client(global: &GlobalArgs) -> anyhow::Result<Client> {
    let credentials = match &global.credentials {
        Some(path) => Some(Credentials::load(path)?),
        None => match default_credentials_path() {
            Some(path) if path.exists() => Some(Credentials::load(&path)?),
            _ => None,
        },
    };
    let servers = if global.server.is_empty() {
        credentials
            .as_ref()
            .map(|credentials| credentials.servers.clone())
            .ok_or_else(|| anyhow!("no server: pass --server, set HAFEN_SERVER, or use the credentials file of `hafen cluster init`"))?
    } else {
        global.server.clone()
    };
    let token = global.token.clone().or_else(|| {
        credentials
            .as_ref()
            .map(|credentials| credentials.token.clone())
    });
    let ca_pem = match &global.ca {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("cannot read CA file {}", path.display()))?,
        None => credentials
            .as_ref()
            .map(|credentials| credentials.ca_pem.clone())
            .ok_or_else(|| anyhow!("no cluster CA certificate: pass --ca, set HAFEN_CA, or use the credentials file"))?,
    };
    Ok(Client::new(servers, &ca_pem, token)?)
}

fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serializes")
    );
}

async fn daemon(config_path: &Path) -> anyhow::Result<()> {
    let config = NodeConfig::load(config_path)?;
    init_logging(&config.log.level);
    let shutdown = async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler installs");
        tokio::select! {
            _ = terminate.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    hafen_daemon::run(config, shutdown, hafen_daemon::notify_ready).await?;
    Ok(())
}

/// Logs to journald when systemd started us with its journal, else to stderr.
fn init_logging(filter: &str) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_env("HAFEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(filter));
    let registry = tracing_subscriber::registry().with(filter);
    if std::env::var_os("JOURNAL_STREAM").is_some()
        && let Ok(journald) = tracing_journald::layer()
    {
        registry.with(journald).init();
        return;
    }
    registry
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
        .init();
}

/// Parses `30s`, `10m`, `1h`, `2d` (a bare number means seconds).
pub fn parse_duration_s(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let value: u64 = number
        .parse()
        .map_err(|_| anyhow!("bad duration {text:?}: expected e.g. 30s, 10m, 1h or 2d"))?;
    let factor = match unit {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("bad duration {text:?}: unknown unit {unit:?} (use s, m, h or d)"),
    };
    Ok(value * factor)
}

async fn cluster(global: &GlobalArgs, command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Init {
            config,
            name,
            credentials_out,
        } => {
            let config = NodeConfig::load(&config)?;
            let outcome = hafen_daemon::setup::init_cluster(&config, &name)?;
            let path = credentials_out
                .or_else(default_credentials_path)
                .ok_or_else(|| anyhow!("no home directory: pass --credentials-out"))?;
            outcome.credentials.save(&path)?;
            if global.output == OutputFormat::Json {
                print_json(&serde_json::json!({
                    "node_id": outcome.node_id,
                    "credentials_file": path,
                    "server": outcome.credentials.servers,
                }));
            } else {
                println!("cluster {name:?} created; {} is node 1", config.node_name);
                println!("admin credentials written to {}", path.display());
                println!("next: start the daemon: hafen daemon --config <this config>");
            }
            Ok(())
        }
        ClusterCommand::Join {
            addr,
            token,
            config,
        } => {
            let config = NodeConfig::load(&config)?;
            let outcome = hafen_daemon::setup::join_cluster(&config, &addr, &token).await?;
            if global.output == OutputFormat::Json {
                print_json(
                    &serde_json::json!({"node_id": outcome.node_id, "cluster_name": outcome.cluster_name}),
                );
            } else {
                println!(
                    "{} joined cluster {:?} as node {}; next: start its daemon",
                    config.node_name, outcome.cluster_name, outcome.node_id
                );
            }
            Ok(())
        }
        ClusterCommand::Token { ttl } => {
            let ttl_s = parse_duration_s(&ttl)?;
            let response = client(global)?.issue_token(Some(ttl_s)).await?;
            if global.output == OutputFormat::Json {
                print_json(&response);
            } else {
                println!("{}", response.token);
            }
            Ok(())
        }
        ClusterCommand::Leave { config } => {
            let config = NodeConfig::load(&config)?;
            client(global)?.remove_node(&config.node_name).await?;
            println!("{} left the cluster; stop its daemon now", config.node_name);
            Ok(())
        }
    }
}

async fn status(global: &GlobalArgs, watch: bool) -> anyhow::Result<()> {
    let client = client(global)?;
    if !watch {
        let report = client.status().await?;
        match global.output {
            OutputFormat::Json => print_json(&report),
            OutputFormat::Text => print!("{}", output::status_text(&report)),
        }
        return Ok(());
    }
    let client = client.with_deadline(Duration::from_secs(2));
    loop {
        let screen = match client.status().await {
            Ok(report) => output::status_text(&report),
            Err(error) => format!("cannot get status: {error}\n"),
        };
        // Clear the screen and redraw from the top, like `crm_mon`.
        print!(
            "\x1b[2J\x1b[H{}\n(refreshing every second; Ctrl-C to quit)\n",
            screen
        );
        use std::io::Write;
        let _ = std::io::stdout().flush();
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn node(global: &GlobalArgs, command: NodeCommand) -> anyhow::Result<()> {
    let client = client(global)?;
    match command {
        NodeCommand::List => {
            let nodes = client.nodes().await?;
            match global.output {
                OutputFormat::Json => print_json(&nodes),
                OutputFormat::Text => print!("{}", output::nodes_table(&nodes)),
            }
        }
        NodeCommand::Show { name } => {
            let node = client.node(&name).await?;
            match global.output {
                OutputFormat::Json => print_json(&node),
                OutputFormat::Text => {
                    print!("{}", output::nodes_table(std::slice::from_ref(&node)))
                }
            }
        }
        NodeCommand::Standby { name } => {
            print_node(global, &client.set_node_mode(&name, "standby").await?)
        }
        NodeCommand::Online { name } => {
            print_node(global, &client.set_node_mode(&name, "online").await?)
        }
        NodeCommand::Maintenance { name } => {
            print_node(global, &client.set_node_mode(&name, "maintenance").await?)
        }
        NodeCommand::Evacuate { name } => {
            client.set_node_mode(&name, "standby").await?;
            let deadline = std::time::Instant::now() + Duration::from_secs(600);
            loop {
                let left: Vec<String> = client
                    .vms()
                    .await?
                    .into_iter()
                    .filter(|vm| vm.node.as_deref() == Some(name.as_str()) && vm.state != "stopped")
                    .map(|vm| vm.name)
                    .collect();
                if left.is_empty() {
                    println!("node {name} is evacuated (standby)");
                    break;
                }
                if std::time::Instant::now() > deadline {
                    bail!("node {name} still runs {} after 600 s", left.join(", "));
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        NodeCommand::Fence { name } => print_node(global, &client.fence_node(&name).await?),
        NodeCommand::ConfirmFenced { name, yes } => {
            eprintln!(
                "WARNING: confirming that {name} is fenced lets its resources start elsewhere. If {name} still runs them, they run twice and data may be destroyed."
            );
            if !yes {
                bail!("refusing without --yes: check that {name} is powered off first");
            }
            print_node(global, &client.confirm_fenced(&name).await?)
        }
        NodeCommand::Remove { name } => {
            let node = client.remove_node(&name).await?;
            match global.output {
                OutputFormat::Json => print_json(&node),
                OutputFormat::Text => println!("node {} removed", node.name),
            }
        }
    }
    Ok(())
}

async fn config(global: &GlobalArgs, command: ConfigCommand) -> anyhow::Result<()> {
    if let ConfigCommand::Validate { file } = &command {
        NodeConfig::load(file)?;
        println!("{}: valid", file.display());
        return Ok(());
    }
    let client = client(global)?;
    let json = global.output == OutputFormat::Json;
    match command {
        ConfigCommand::Show => {
            let report = client.config().await?;
            if json {
                print_json(&report)
            } else {
                print!("{}", output::config_text(&report))
            }
        }
        ConfigCommand::Get { key } => {
            let entry = client.property(&key).await?;
            if json {
                print_json(&entry)
            } else {
                println!("{}", entry.value)
            }
        }
        ConfigCommand::Set { key, value } => {
            let change = client.set_property(&key, &value).await?;
            if json {
                print_json(&change)
            } else {
                print!("{}", output::epoch_text(&change))
            }
        }
        ConfigCommand::Unset { key } => {
            let change = client.unset_property(&key).await?;
            if json {
                print_json(&change)
            } else {
                print!("{}", output::epoch_text(&change))
            }
        }
        ConfigCommand::History => {
            let history = client.history().await?;
            if json {
                print_json(&history)
            } else {
                print!("{}", output::history_text(&history))
            }
        }
        ConfigCommand::Diff { from, to } => {
            let report = client.diff(from, to).await?;
            if json {
                print_json(&report)
            } else {
                print!("{}", output::diff_text(&report))
            }
        }
        ConfigCommand::Rollback { epoch } => {
            let change = client.rollback(epoch).await?;
            if json {
                print_json(&change)
            } else {
                print!("{}", output::epoch_text(&change))
            }
        }
        ConfigCommand::Validate { .. } => unreachable!("handled above"),
    }
    Ok(())
}

async fn events(global: &GlobalArgs, follow: bool) -> anyhow::Result<()> {
    let client = client(global)?;
    let mut after = None;
    loop {
        let events = client.events(after).await?;
        for event in &events {
            if global.output == OutputFormat::Json {
                println!("{}", serde_json::to_string(event).expect("serializes"));
            } else {
                println!("{}", output::event_line(event));
            }
        }
        if let Some(last) = events.last() {
            after = Some(last.id);
        }
        if !follow {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

async fn vm(global: &GlobalArgs, command: VmCommand) -> anyhow::Result<()> {
    let client = client(global)?;
    let json = global.output == OutputFormat::Json;
    let show = |info: &hafen_api_types::VmInfo| {
        if json {
            print_json(info)
        } else {
            print!("{}", output::vms_table(std::slice::from_ref(info)))
        }
    };
    match command {
        VmCommand::Create {
            name,
            template,
            cpus,
            memory,
            host,
            address,
            no_start,
        } => {
            let info = client
                .create_vm(&hafen_api_types::VmCreateRequest {
                    name,
                    template,
                    vcpus: cpus,
                    memory_mib: memory,
                    host,
                    address,
                    start: Some(!no_start),
                })
                .await?;
            show(&info);
        }
        VmCommand::List => {
            let vms = client.vms().await?;
            if json {
                print_json(&vms)
            } else {
                print!("{}", output::vms_table(&vms))
            }
        }
        VmCommand::Show { name } => show(&client.vm(&name).await?),
        VmCommand::Start { name } => show(&client.vm_action(&name, "start").await?),
        VmCommand::Stop { name } => show(&client.vm_action(&name, "stop").await?),
        VmCommand::Restart { name } => show(&client.vm_action(&name, "restart").await?),
        VmCommand::Migrate {
            name,
            to,
            bandwidth,
            lifetime,
        } => {
            let result = match lifetime {
                Some(lifetime) => {
                    let lifetime_s = parse_duration_s(&lifetime)?;
                    client
                        .migrate_vm_for(&name, to.as_deref(), lifetime_s)
                        .await?
                }
                None => client.migrate_vm(&name, to.as_deref(), bandwidth).await?,
            };
            if json {
                print_json(&result)
            } else {
                println!(
                    "{name} migrated {} -> {} in {} ms (QEMU {} ms, downtime {} ms)",
                    result.from,
                    result.to,
                    result.orchestration_total_ms,
                    result.qemu_total_time_ms,
                    result.downtime_ms
                );
            }
        }
        VmCommand::Delete { name } => {
            client.delete_vm(&name).await?;
            if !json {
                println!("vm {name} deleted");
            }
        }
    }
    Ok(())
}

async fn pool(global: &GlobalArgs, command: PoolCommand) -> anyhow::Result<()> {
    let PoolCommand::Add { name, path } = command;
    client(global)?
        .define_pool(&hafen_api_types::PoolRequest {
            name: name.clone(),
            kind: None,
            path,
        })
        .await?;
    println!("pool {name} defined");
    Ok(())
}

async fn template(global: &GlobalArgs, command: TemplateCommand) -> anyhow::Result<()> {
    let TemplateCommand::Add {
        name,
        pool,
        kernel,
        initrd,
        cmdline,
        base_volume,
        disk_size,
        bridge,
        memory,
        cpus,
    } = command;
    client(global)?
        .define_template(&hafen_api_types::TemplateRequest {
            name: name.clone(),
            pool,
            kernel,
            initrd,
            cmdline,
            base_volume,
            disk_size_mib: disk_size,
            bridge,
            memory_mib: memory,
            vcpus: cpus,
        })
        .await?;
    println!("template {name} defined");
    Ok(())
}

fn print_node(global: &GlobalArgs, node: &hafen_api_types::NodeStatus) {
    match global.output {
        OutputFormat::Json => print_json(node),
        OutputFormat::Text => print!("{}", output::nodes_table(std::slice::from_ref(node))),
    }
}

fn parse_score(text: &str) -> anyhow::Result<i64> {
    hafen_model::resource::parse_score(text).ok_or_else(|| {
        anyhow!("bad score {text:?}: expected an integer within ±1000000, INFINITY or -INFINITY")
    })
}

async fn constraint(global: &GlobalArgs, command: ConstraintCommand) -> anyhow::Result<()> {
    let client = client(global)?;
    let json = global.output == OutputFormat::Json;
    match command {
        ConstraintCommand::Add {
            kind,
            resource,
            host,
            score,
            with,
            then,
            optional,
            asymmetrical,
            id,
            lifetime,
        } => {
            let expires_ms = match lifetime {
                Some(lifetime) => {
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)?
                        .as_millis();
                    Some(u64::try_from(now)? + parse_duration_s(&lifetime)? * 1000)
                }
                None => None,
            };
            let score = score.as_deref().map(parse_score).transpose()?;
            if kind != "order" && (optional || asymmetrical || then.is_some()) {
                anyhow::bail!(
                    "--then, --optional and --asymmetrical are for order constraints, not {kind}"
                );
            }
            if kind != "colocation" && with.is_some() {
                anyhow::bail!("--with is for colocation constraints, not {kind}");
            }
            let needs = |what: &str| anyhow::anyhow!("a {kind} constraint needs {what}");
            let request = match kind.as_str() {
                "location" => {
                    let host = host.ok_or_else(|| needs("--host"))?;
                    hafen_api_types::ConstraintInfo {
                        id: id.unwrap_or_else(|| format!("location-{resource}-{host}")),
                        score: score.ok_or_else(|| needs("--score"))?,
                        host,
                        expires_ms,
                        ..Default::default()
                    }
                }
                "colocation" => {
                    let with = with.ok_or_else(|| needs("--with"))?;
                    hafen_api_types::ConstraintInfo {
                        id: id.unwrap_or_else(|| format!("colocation-{resource}-{with}")),
                        score: score.ok_or_else(|| needs("--score"))?,
                        with: Some(with),
                        host: host.unwrap_or_default(),
                        expires_ms,
                        ..Default::default()
                    }
                }
                "order" => {
                    let then = then.ok_or_else(|| needs("--then"))?;
                    hafen_api_types::ConstraintInfo {
                        id: id.unwrap_or_else(|| format!("order-{resource}-{then}")),
                        then: Some(then),
                        ordering: Some(if optional { "optional" } else { "mandatory" }.into()),
                        symmetrical: Some(!asymmetrical),
                        host: host.unwrap_or_default(),
                        score: score.unwrap_or_default(),
                        expires_ms,
                        ..Default::default()
                    }
                }
                other => {
                    anyhow::bail!("constraint kind {other:?} must be location, colocation or order")
                }
            };
            let added = client
                .add_constraint(&hafen_api_types::ConstraintInfo {
                    kind,
                    resource,
                    ..request
                })
                .await?;
            if json {
                print_json(&added)
            } else {
                println!("constraint {} added", added.id)
            }
        }
        ConstraintCommand::List => {
            let constraints = client.constraints().await?;
            if json {
                print_json(&constraints)
            } else {
                print!("{}", output::constraints_table(&constraints))
            }
        }
        ConstraintCommand::Remove { id } => {
            client.remove_constraint(&id).await?;
            if !json {
                println!("constraint {id} removed");
            }
        }
    }
    Ok(())
}

/// Parses `500ms`, `10s`, `2m`/`2min`, `1h` (a bare number means seconds).
pub fn parse_duration_ms(text: &str) -> anyhow::Result<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number
        .parse()
        .map_err(|_| anyhow!("bad duration {text:?}: expected e.g. 500ms, 10s, 2min or 1h"))?;
    let factor = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => bail!("bad duration {text:?}: unknown unit {unit:?} (use ms, s, min or h)"),
    };
    Ok(value * factor)
}

async fn resource(global: &GlobalArgs, command: crate::ResourceCommand) -> anyhow::Result<()> {
    use crate::ResourceCommand;
    let client = client(global)?;
    let json = global.output == OutputFormat::Json;
    let show = |info: &hafen_api_types::ResourceInfo| {
        if json {
            print_json(info)
        } else {
            print!("{}", output::resources_table(std::slice::from_ref(info)))
        }
    };
    match command {
        ResourceCommand::Add {
            name,
            agent,
            parameters,
            op,
            host,
            no_start,
            clone,
            promotable,
            clone_max,
            promoted_max,
        } => {
            let clone = (clone || promotable || clone_max.is_some() || promoted_max.is_some())
                .then_some(hafen_api_types::CloneSpec {
                    max: clone_max,
                    promotable: promotable || promoted_max.is_some(),
                    promoted_max,
                });
            let mut values = std::collections::BTreeMap::new();
            for parameter in &parameters {
                let (key, value) = parameter
                    .split_once('=')
                    .ok_or_else(|| anyhow!("parameter {parameter:?} is not name=value"))?;
                values.insert(key.to_string(), value.to_string());
            }
            let (mut interval, mut timeout) = (None, None);
            if let Some((kind, settings)) = op.split_first() {
                if kind != "monitor" {
                    bail!("--op {kind}: only the monitor operation can be set here");
                }
                for setting in settings {
                    match setting.split_once('=') {
                        Some(("interval", value)) => interval = Some(parse_duration_ms(value)?),
                        Some(("timeout", value)) => timeout = Some(parse_duration_ms(value)?),
                        _ => bail!(
                            "--op monitor: unknown setting {setting:?} (use interval=10s timeout=20s)"
                        ),
                    }
                }
            }
            let info = client
                .add_resource(&hafen_api_types::ResourceAddRequest {
                    name,
                    agent,
                    parameters: values,
                    monitor_interval_ms: interval,
                    timeout_ms: timeout,
                    host,
                    start: Some(!no_start),
                    clone,
                })
                .await?;
            show(&info);
        }
        ResourceCommand::List => {
            let resources = client.resources().await?;
            if json {
                print_json(&resources)
            } else {
                print!("{}", output::resources_table(&resources))
            }
        }
        ResourceCommand::Show { name } => show(&client.resource(&name).await?),
        ResourceCommand::Start { name } => show(&client.resource_action(&name, "start").await?),
        ResourceCommand::Stop { name } => show(&client.resource_action(&name, "stop").await?),
        ResourceCommand::Delete { name } => {
            client.delete_resource(&name).await?;
            if !json {
                println!("resource {name} stopped and deleted");
            }
        }
        ResourceCommand::Cleanup { name } => {
            let info = client.cleanup_resource(&name).await?;
            if json {
                print_json(&info);
            } else {
                println!("{name}: failures forgotten");
            }
        }
        ResourceCommand::Meta { name, values } => {
            let mut parsed = std::collections::BTreeMap::new();
            for pair in values {
                let Some((key, value)) = pair.split_once('=') else {
                    anyhow::bail!("{pair:?}: meta-attributes are key=value (key= unsets)");
                };
                let value = (!value.is_empty()).then(|| value.to_string());
                parsed.insert(key.to_string(), value);
            }
            let info = client.set_meta(&name, parsed).await?;
            show(&info);
            if !json {
                for (key, value) in &info.meta {
                    println!("{key}={value}");
                }
            }
        }
        ResourceCommand::Group(crate::GroupCommand::Add { name, members }) => {
            let group = client
                .set_group(&hafen_api_types::GroupInfo { name, members })
                .await?;
            if json {
                print_json(&group);
            } else {
                println!("group {}: {}", group.name, group.members.join(", "));
            }
        }
        ResourceCommand::Group(crate::GroupCommand::List) => {
            let groups = client.groups().await?;
            if json {
                print_json(&groups);
            } else {
                for group in groups {
                    println!("{}: {}", group.name, group.members.join(", "));
                }
            }
        }
        ResourceCommand::Group(crate::GroupCommand::Remove { name }) => {
            client.remove_group(&name).await?;
            if json {
                print_json(&serde_json::json!({ "removed": name }));
            } else {
                println!("group {name} removed");
            }
        }
    }
    Ok(())
}

async fn agent(global: &GlobalArgs, command: crate::AgentCommand) -> anyhow::Result<()> {
    let client = client(global)?;
    match command {
        crate::AgentCommand::List => {
            let agents = client.agents().await?;
            if global.output == OutputFormat::Json {
                print_json(&agents);
            } else {
                for agent in agents {
                    println!("{agent}");
                }
            }
        }
        crate::AgentCommand::Info { agent } => {
            let metadata = client.agent_info(&agent).await?;
            if global.output == OutputFormat::Json {
                print_json(&metadata);
            } else {
                print!("{}", output::agent_text(&agent, &metadata));
            }
        }
    }
    Ok(())
}

async fn fence_device(
    global: &GlobalArgs,
    command: crate::FenceDeviceCommand,
) -> anyhow::Result<()> {
    let client = client(global)?;
    match command {
        crate::FenceDeviceCommand::Add {
            name,
            agent,
            parameters,
            secret,
            host_map,
        } => {
            let mut values = serde_json::Map::new();
            for parameter in &parameters {
                let (key, value) = parameter.split_once('=').ok_or_else(|| {
                    anyhow!(
                        "parameter {:?} is not name=value",
                        parameter.split('=').next().unwrap_or("")
                    )
                })?;
                values.insert(
                    key.to_string(),
                    serde_json::Value::String(value.to_string()),
                );
            }
            let mut hosts = serde_json::Map::new();
            for pair in &host_map {
                let (node, plug) = pair
                    .split_once('=')
                    .ok_or_else(|| anyhow!("--host-map {pair:?} is not node=plug"))?;
                hosts.insert(
                    node.to_string(),
                    serde_json::Value::String(plug.to_string()),
                );
            }
            let device = serde_json::json!({
                "name": name, "agent": agent, "parameters": values,
                "secret_parameters": secret, "host_map": hosts,
            });
            let added = client.add_fence_device(&device).await?;
            if global.output == OutputFormat::Json {
                print_json(&added);
            } else {
                println!(
                    "fence device {} added",
                    added["name"].as_str().unwrap_or_default()
                );
            }
        }
        crate::FenceDeviceCommand::List => print_json(&client.fence_devices().await?),
        crate::FenceDeviceCommand::Test { name, node } => {
            let result = client.test_fence_device(&name, &node).await?;
            if global.output == OutputFormat::Json {
                print_json(&result);
            } else {
                println!(
                    "{name} reports {node} powered {}",
                    result["power"].as_str().unwrap_or("unknown")
                );
            }
        }
    }
    Ok(())
}
