//! Text renderings for people; JSON output is the API types themselves.

use hafen_api_types::{
    ConfigReport, DiffReport, EpochChange, EventEntry, HistoryEntry, NodeState, NodeStatus,
    StatusReport,
};
use std::fmt::Write;

/// Like `crm_mon -1`: summary, node list, resources, warnings.
pub fn status_text(report: &StatusReport) -> String {
    let mut out = String::new();
    let voters = report.nodes.iter().filter(|node| node.voter).count();
    let _ = writeln!(out, "Cluster Summary:");
    let _ = writeln!(
        out,
        "  * Cluster: {} (configuration epoch {}, term {})",
        report.cluster_name, report.epoch, report.term
    );
    let _ = writeln!(
        out,
        "  * Leader: {}",
        report.leader.as_deref().unwrap_or("none")
    );
    let _ = writeln!(
        out,
        "  * {} nodes configured, {voters} voters, {} resources configured",
        report.nodes.len(),
        report.resources.len()
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Node List:");
    for state in [
        NodeState::Online,
        NodeState::Standby,
        NodeState::Maintenance,
        NodeState::Unclean,
        NodeState::Fenced,
        NodeState::Offline,
    ] {
        let names: Vec<&str> = report
            .nodes
            .iter()
            .filter(|node| node.state == state)
            .map(|node| node.name.as_str())
            .collect();
        if !names.is_empty() {
            let label = state.as_str();
            let mut label = label.to_string();
            label[..1].make_ascii_uppercase();
            let _ = writeln!(out, "  * {label}: [ {} ]", names.join(" "));
        }
    }
    let _ = writeln!(out);
    out.push_str(&nodes_table(&report.nodes));
    let _ = writeln!(out);
    let _ = writeln!(out, "Full List of Resources:");
    if report.resources.is_empty() {
        let _ = writeln!(out, "  * No resources");
    }
    for resource in &report.resources {
        let _ = writeln!(
            out,
            "  * {}\t({}):\t {}{}",
            resource.name,
            resource.kind,
            resource.state,
            resource
                .node
                .as_ref()
                .map(|node| format!(" {node}"))
                .unwrap_or_default()
        );
    }
    if !report.warnings.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(out, "Warnings:");
        for warning in &report.warnings {
            let _ = writeln!(out, "  * {warning}");
        }
    }
    out
}

pub fn nodes_table(nodes: &[NodeStatus]) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "ID".to_string(),
        "ROLE".to_string(),
        "STATE".to_string(),
        "RAFT".to_string(),
        "ADDRESS".to_string(),
        "LAST SEEN".to_string(),
    ]];
    for node in nodes {
        rows.push([
            node.name.clone(),
            node.node_id.to_string(),
            node.role.clone(),
            node.state.as_str().to_string(),
            if node.leader {
                "leader".to_string()
            } else if node.voter {
                "voter".to_string()
            } else {
                "learner".to_string()
            },
            node.address.clone(),
            node.last_seen_ms
                .map(|ms| format!("{ms} ms ago"))
                .unwrap_or_else(|| "never".to_string()),
        ]);
    }
    table(&rows)
}

fn table<const N: usize>(rows: &[[String; N]]) -> String {
    let mut widths = [0usize; N];
    for row in rows {
        for (index, cell) in row.iter().enumerate() {
            widths[index] = widths[index].max(cell.len());
        }
    }
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(index, cell)| format!("{cell:<width$}", width = widths[index]))
            .collect();
        let _ = writeln!(out, "  {}", cells.join("  ").trim_end());
    }
    out
}

pub fn config_text(report: &ConfigReport) -> String {
    let mut rows = vec![[
        "PROPERTY".to_string(),
        "VALUE".to_string(),
        "DEFAULT".to_string(),
    ]];
    for entry in &report.properties {
        rows.push([
            entry.key.clone(),
            entry.value.clone(),
            if entry.is_default {
                "(default)".to_string()
            } else {
                entry.default.clone()
            },
        ]);
    }
    format!("configuration epoch {}\n{}", report.epoch, table(&rows))
}

pub fn epoch_text(change: &EpochChange) -> String {
    let mut out = format!("configuration epoch {}\n", change.epoch);
    for line in &change.diff {
        out.push_str(&diff_line(line));
    }
    out
}

fn diff_line(line: &hafen_api_types::DiffLine) -> String {
    match (&line.before, &line.after) {
        (Some(before), Some(after)) => format!("  ~ {}: {before} -> {after}\n", line.path),
        (None, Some(after)) => format!("  + {}: {after}\n", line.path),
        (Some(before), None) => format!("  - {}: {before}\n", line.path),
        (None, None) => String::new(),
    }
}

pub fn diff_text(report: &DiffReport) -> String {
    let mut out = format!("epoch {} -> {}\n", report.from, report.to);
    if report.lines.is_empty() {
        out.push_str("  (no differences)\n");
    }
    for line in &report.lines {
        out.push_str(&diff_line(line));
    }
    out
}

pub fn history_text(history: &[HistoryEntry]) -> String {
    let mut rows = vec![[
        "EPOCH".to_string(),
        "AT (ms since epoch)".to_string(),
        "CHANGE".to_string(),
    ]];
    for entry in history {
        rows.push([
            entry.epoch.to_string(),
            entry.at_ms.to_string(),
            entry.summary.clone(),
        ]);
    }
    table(&rows)
}

pub fn event_line(event: &EventEntry) -> String {
    format!(
        "{:>6}  {}  {:<10}  {}",
        event.id, event.at_ms, event.kind, event.message
    )
}

pub fn vms_table(vms: &[hafen_api_types::VmInfo]) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "STATE".to_string(),
        "NODE".to_string(),
        "TARGET".to_string(),
        "CPUS".to_string(),
        "MEMORY".to_string(),
        "ADDRESS".to_string(),
        "LAST ERROR".to_string(),
    ]];
    for vm in vms {
        rows.push([
            vm.name.clone(),
            vm.state.clone(),
            vm.node.clone().unwrap_or_else(|| "-".to_string()),
            vm.target.clone(),
            vm.vcpus.to_string(),
            format!("{} MiB", vm.memory_mib),
            vm.address.clone().unwrap_or_else(|| "-".to_string()),
            vm.last_error.clone().unwrap_or_default(),
        ]);
    }
    table(&rows)
}

pub fn constraints_table(constraints: &[hafen_api_types::ConstraintInfo]) -> String {
    let mut rows = vec![[
        "ID".to_string(),
        "KIND".to_string(),
        "RESOURCE".to_string(),
        "HOST / WITH / THEN".to_string(),
        "SCORE".to_string(),
        "EXPIRES (ms since epoch)".to_string(),
    ]];
    for constraint in constraints {
        let score = match constraint.score {
            1_000_000 => "INFINITY".to_string(),
            -1_000_000 => "-INFINITY".to_string(),
            score => score.to_string(),
        };
        let (target, score) = match constraint.kind.as_str() {
            "colocation" => (
                format!("with {}", constraint.with.as_deref().unwrap_or("?")),
                score,
            ),
            "order" => (
                format!("then {}", constraint.then.as_deref().unwrap_or("?")),
                format!(
                    "{}{}",
                    constraint.ordering.as_deref().unwrap_or("mandatory"),
                    if constraint.symmetrical == Some(false) {
                        ", asymmetrical"
                    } else {
                        ""
                    }
                ),
            ),
            _ => (constraint.host.clone(), score),
        };
        rows.push([
            constraint.id.clone(),
            constraint.kind.clone(),
            constraint.resource.clone(),
            target,
            score,
            constraint
                .expires_ms
                .map(|ms| ms.to_string())
                .unwrap_or_else(|| "never".to_string()),
        ]);
    }
    table(&rows)
}

pub fn resources_table(resources: &[hafen_api_types::ResourceInfo]) -> String {
    let mut rows = vec![[
        "NAME".to_string(),
        "KIND".to_string(),
        "STATE".to_string(),
        "NODE".to_string(),
        "TARGET".to_string(),
        "LAST ERROR".to_string(),
    ]];
    for resource in resources {
        rows.push([
            resource.name.clone(),
            match &resource.clone {
                Some(clone) => format!("{} ({clone})", resource.kind),
                None => resource.kind.clone(),
            },
            resource.state.clone(),
            instances_or_node(resource),
            resource.target.clone(),
            resource.last_error.clone().unwrap_or_default(),
        ]);
    }
    table(&rows)
}

/// A primitive's node, or a clone's instances as `node1 (promoted), node2, node3`.
fn instances_or_node(resource: &hafen_api_types::ResourceInfo) -> String {
    if resource.clone.is_none() {
        return resource.node.clone().unwrap_or_else(|| "-".to_string());
    }
    if resource.instances.is_empty() {
        return "-".to_string();
    }
    resource
        .instances
        .iter()
        .map(
            |instance| match (instance.promoted, instance.state.as_str()) {
                (true, "running") => format!("{} (promoted)", instance.node),
                (_, "running") => instance.node.clone(),
                (_, state) => format!("{} ({state})", instance.node),
            },
        )
        .collect::<Vec<_>>()
        .join(", ")
}

/// An agent's meta-data: its parameters with required flags, types and defaults, then its actions.
pub fn agent_text(agent: &str, metadata: &serde_json::Value) -> String {
    let mut out = format!("{agent}\n");
    if let Some(description) = metadata
        .get("short_description")
        .and_then(|value| value.as_str())
    {
        let _ = writeln!(out, "  {description}");
    }
    let _ = writeln!(out, "\nParameters:");
    for parameter in metadata
        .get("parameters")
        .and_then(|value| value.as_array())
        .into_iter()
        .flatten()
    {
        let text = |key: &str| {
            parameter
                .get(key)
                .and_then(|value| value.as_str())
                .unwrap_or("")
                .to_string()
        };
        let required = parameter
            .get("required")
            .and_then(|value| value.as_bool())
            .unwrap_or(false);
        let default = parameter
            .get("default")
            .and_then(|value| value.as_str())
            .map(|value| format!(" (default {value})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {}{} [{}]{default}: {}",
            text("name"),
            if required { " (required)" } else { "" },
            parameter
                .get("parameter_type")
                .map(|kind| kind.to_string().trim_matches('"').to_string())
                .unwrap_or_default(),
            text("short_description")
        );
    }
    let _ = writeln!(out, "\nActions:");
    for action in metadata
        .get("actions")
        .and_then(|value| value.as_array())
        .into_iter()
        .flatten()
    {
        let name = action
            .get("name")
            .and_then(|value| value.as_str())
            .unwrap_or("");
        let timeout = action
            .get("timeout_ms")
            .and_then(|value| value.as_u64())
            .map(|ms| format!(" timeout={}s", ms / 1000))
            .unwrap_or_default();
        let interval = action
            .get("interval_ms")
            .and_then(|value| value.as_u64())
            .filter(|ms| *ms > 0)
            .map(|ms| format!(" interval={}s", ms / 1000))
            .unwrap_or_default();
        let _ = writeln!(out, "  {name}{timeout}{interval}");
    }
    out
}
