//! Generic resource handlers (OCF agents and VMs alike) and the agent catalogue.

use crate::SharedContext;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use hafen_agent::protocol::{AgentAnswer, AgentRequest};
use hafen_api_types::{ResourceAddRequest, ResourceInfo};
use hafen_model::config::ConfigChange;
use hafen_model::resource::{
    OcfResourceConfig, Phase, ResourceConfig, ResourceKind, TargetRole, Transition,
};
use hafen_model::{ClusterState, Command};

type ApiResult<T> = Result<Json<T>, ApiError>;

pub(crate) fn resource_info(state: &ClusterState, name: &str) -> Option<ResourceInfo> {
    let resource = state.config.resources.get(name)?;
    let runtime = state.runtime.get(name).cloned().unwrap_or_default();
    let parameters = match &resource.kind {
        ResourceKind::Ocf(ocf) => ocf.parameters.clone(),
        ResourceKind::Vm(_) => Default::default(),
    };
    Some(ResourceInfo {
        name: name.to_string(),
        kind: resource.kind.name(),
        state: runtime.phase.name().to_string(),
        node: runtime.host.clone(),
        target: match resource.target_role {
            TargetRole::Started => "started".to_string(),
            TargetRole::Stopped => "stopped".to_string(),
        },
        generation: runtime.generation,
        parameters,
        last_error: runtime.last_error.clone(),
        fail_counts: runtime.fail_counts.clone(),
        instances: runtime
            .instances
            .iter()
            .map(|(host, instance)| hafen_api_types::InstanceInfo {
                node: host.clone(),
                state: instance.phase.name().to_string(),
                promoted: instance.promoted,
            })
            .collect(),
        meta: resource.meta.pairs().into_iter().collect(),
        clone: resource.clone.map(|clone| {
            if clone.promotable {
                "promotable clone".to_string()
            } else {
                "clone".to_string()
            }
        }),
    })
}

/// `resource cleanup`: forgets a resource's (VM or agent) failures, so the scheduler may
/// place it where they had banned it.
#[utoipa::path(post, path = "/api/v1/resources/{name}/cleanup", responses((status = 200, body = ResourceInfo), (status = 404, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn cleanup_resource(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<ResourceInfo> {
    crate::handlers::submit(
        &context,
        &headers,
        hafen_model::Command::CleanupResource { name: name.clone() },
    )
    .await?;
    let state = context.replica.read_shared().await?;
    Ok(Json(lookup(&state, &name)?))
}

/// `resource meta NAME key=value ...`: sets or unsets meta-attributes, all or none.
#[utoipa::path(post, path = "/api/v1/resources/{name}/meta", request_body = hafen_api_types::MetaRequest, responses((status = 200, body = ResourceInfo), (status = 400, body = hafen_api_types::ErrorBody), (status = 404, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn set_meta(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(request): Json<hafen_api_types::MetaRequest>,
) -> ApiResult<ResourceInfo> {
    let change = hafen_model::ConfigChange::SetMeta {
        name: name.clone(),
        values: request.values,
    };
    crate::handlers::submit(
        &context,
        &headers,
        hafen_model::Command::Configure { change },
    )
    .await?;
    let state = context.replica.read_shared().await?;
    Ok(Json(lookup(&state, &name)?))
}

/// `resource group list`.
#[utoipa::path(get, path = "/api/v1/groups", responses((status = 200, body = Vec<hafen_api_types::GroupInfo>)))]
pub(crate) async fn list_groups(
    State(context): State<SharedContext>,
) -> ApiResult<Vec<hafen_api_types::GroupInfo>> {
    let state = context.replica.read_shared().await?;
    Ok(Json(
        state
            .config
            .groups
            .values()
            .map(|group| hafen_api_types::GroupInfo {
                name: group.name.clone(),
                members: group.members.clone(),
            })
            .collect(),
    ))
}

/// `resource group add`: defines (or redefines) a group.
#[utoipa::path(post, path = "/api/v1/groups", request_body = hafen_api_types::GroupInfo, responses((status = 200, body = hafen_api_types::GroupInfo), (status = 400, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn set_group(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Json(request): Json<hafen_api_types::GroupInfo>,
) -> ApiResult<hafen_api_types::GroupInfo> {
    let change = hafen_model::ConfigChange::SetGroup {
        group: hafen_model::resource::GroupConfig {
            name: request.name.clone(),
            members: request.members.clone(),
        },
    };
    crate::handlers::submit(
        &context,
        &headers,
        hafen_model::Command::Configure { change },
    )
    .await?;
    Ok(Json(request))
}

/// `resource group remove`: the members stay, ungrouped.
#[utoipa::path(delete, path = "/api/v1/groups/{name}", responses((status = 200, body = crate::handlers::Done), (status = 404, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn remove_group(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<crate::handlers::Done> {
    let change = hafen_model::ConfigChange::RemoveGroup { name };
    crate::handlers::submit(
        &context,
        &headers,
        hafen_model::Command::Configure { change },
    )
    .await?;
    Ok(Json(crate::handlers::Done { done: true }))
}

fn lookup(state: &ClusterState, name: &str) -> Result<ResourceInfo, ApiError> {
    resource_info(state, name)
        .ok_or_else(|| ApiError::NotFound(format!("no resource named {name}")))
}

fn agent_failure(answer: AgentAnswer) -> Result<AgentAnswer, ApiError> {
    match answer {
        AgentAnswer::Failed { error, .. } => Err(ApiError::Invalid(error)),
        other => Ok(other),
    }
}

#[utoipa::path(get, path = "/api/v1/resources", responses((status = 200, body = Vec<ResourceInfo>)))]
pub(crate) async fn list_resources(
    State(context): State<SharedContext>,
) -> ApiResult<Vec<ResourceInfo>> {
    let state = context.replica.read_shared().await?;
    Ok(Json(
        state
            .config
            .resources
            .keys()
            .filter_map(|name| resource_info(&state, name))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/resources/{name}", responses((status = 200, body = ResourceInfo), (status = 404, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn show_resource(
    State(context): State<SharedContext>,
    Path(name): Path<String>,
) -> ApiResult<ResourceInfo> {
    let state = context.replica.read_shared().await?;
    Ok(Json(lookup(&state, &name)?))
}

/// Adds an OCF resource: parameters are checked against the agent's meta-data first; then
/// every online host probes for it, so a copy started by hand is found (and only one kept).
#[utoipa::path(post, path = "/api/v1/resources", request_body = ResourceAddRequest, responses((status = 200, body = ResourceInfo), (status = 400, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn add_resource(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Json(request): Json<ResourceAddRequest>,
) -> ApiResult<ResourceInfo> {
    let ocf = OcfResourceConfig {
        agent: request.agent.clone(),
        parameters: request.parameters.clone(),
        monitor_interval_ms: request.monitor_interval_ms.unwrap_or(10_000),
        operation_timeout_ms: request.timeout_ms.unwrap_or(20_000),
    };
    let start = request.start.unwrap_or(true);
    let resource = ResourceConfig {
        name: request.name.clone(),
        kind: ResourceKind::Ocf(ocf.clone()),
        // Stopped until the probes have told where it may run already.
        target_role: TargetRole::Stopped,
        priority: 0,
        preferred_host: request.host.clone(),
        clone: request
            .clone
            .map(|spec| hafen_model::resource::CloneConfig {
                max: spec.max,
                node_max: 1,
                promotable: spec.promotable,
                promoted_max: spec.promoted_max.unwrap_or(1),
            }),
        meta: Default::default(),
    };
    // Held from the probe to the start: in between the resource may run (a copy the probe
    // kept) while its role is still Stopped, and the reconciler must not stop it.
    let held = context.orchestrator.hold(&request.name).await?;
    let state = context.replica.read_shared().await?;
    // A retried request (the client resends with the same request id after a timeout)
    // finds its own resource: it carries on with the remaining steps instead of failing.
    let retried = crate::handlers::step_applied(&state, &headers, "add");
    let change = ConfigChange::AddResource { resource };
    if !retried {
        state.config.with_change(&change)?;
    }
    let agent = context.orchestrator.local_agent();
    agent_failure(
        agent
            .handle(AgentRequest::OcfCheck {
                name: request.name.clone(),
                ocf: ocf.clone(),
            })
            .await,
    )?;
    if !retried {
        crate::handlers::submit_step(&context, &headers, "add", Command::Configure { change })
            .await?;
    }
    let state = context.replica.read_shared().await?;
    if !crate::handlers::step_applied(&state, &headers, "probe") {
        probe(&context, &headers, &request.name, &ocf).await?;
    }
    if start {
        crate::handlers::submit_step(
            &context,
            &headers,
            "start",
            Command::Configure {
                change: ConfigChange::SetTargetRole {
                    name: request.name.clone(),
                    role: TargetRole::Started,
                },
            },
        )
        .await?;
        // A clone's instances are placed by the reconciler; a primitive starts now.
        if request.clone.is_none() {
            context
                .orchestrator
                .start_held(&request.name, &held)
                .await?;
        }
    }
    drop(held);
    let state = context.replica.read_shared().await?;
    Ok(Json(lookup(&state, &request.name)?))
}

/// Learns where a new resource already runs: keeps the first copy found and stops the rest (I1).
async fn probe(
    context: &SharedContext,
    headers: &HeaderMap,
    name: &str,
    ocf: &OcfResourceConfig,
) -> Result<(), ApiError> {
    let state = context.replica.read_shared().await?;
    let mut active = Vec::new();
    for host in context.orchestrator.online_members(&state) {
        let request = AgentRequest::OcfMonitor {
            name: name.to_string(),
            ocf: ocf.clone(),
            probe: true,
        };
        let answer = context
            .orchestrator
            .call(
                &state,
                &host,
                request,
                std::time::Duration::from_millis(ocf.operation_timeout_ms),
            )
            .await?;
        if matches!(
            answer.state(),
            Some("running" | "promoted" | "failed" | "unknown")
        ) {
            active.push(host);
        }
    }
    let cloned = state
        .config
        .resources
        .get(name)
        .is_some_and(|resource| resource.clone.is_some());
    if cloned {
        // A clone may run everywhere: every copy found becomes an instance.
        for host in &active {
            crate::handlers::submit_step(
                context,
                headers,
                &format!("probe-{host}"),
                Command::InstanceTransition {
                    transition: hafen_model::resource::InstanceTransition {
                        resource: name.to_string(),
                        host: host.clone(),
                        phase: Phase::Running,
                        promoted: false,
                        error: None,
                        reaction: None,
                    },
                },
            )
            .await?;
        }
        return Ok(());
    }
    let Some(keeper) = active.first().cloned() else {
        return Ok(());
    };
    // Already placed (a retried request whose first attempt went further, and the
    // reconciler started it meanwhile): nothing to learn.
    let state = context.replica.read_shared().await?;
    let current = state.runtime.get(name).cloned().unwrap_or_default();
    if current.phase != Phase::Stopped || current.host.is_some() {
        return Ok(());
    }
    for host in active.iter().skip(1) {
        let request = AgentRequest::OcfStop {
            name: name.to_string(),
            ocf: ocf.clone(),
        };
        let answer = context
            .orchestrator
            .call(
                &state,
                host,
                request,
                std::time::Duration::from_millis(ocf.operation_timeout_ms),
            )
            .await?;
        if let AgentAnswer::Failed { error, .. } = answer {
            return Err(ApiError::Failed(format!(
                "{name} runs on {host} too and could not be stopped there: {error}"
            )));
        }
        tracing::warn!(resource = %name, %host, "probe found a second active copy; stopped it");
    }
    crate::handlers::submit_step(
        context,
        headers,
        "probe",
        Command::Transition {
            transition: Transition {
                resource: name.to_string(),
                generation: current.generation,
                phase: Phase::Running,
                host: Some(keeper.clone()),
                new_assignment: true,
                error: (active.len() > 1).then(|| {
                    format!(
                        "probe found it active on {}; kept on {keeper}",
                        active.join(", ")
                    )
                }),
                reaction: None,
            },
        },
    )
    .await?;
    Ok(())
}

/// Commits the operator's wanted state, if it changes (one step of a larger request).
pub(crate) async fn set_target(
    context: &SharedContext,
    headers: &HeaderMap,
    name: &str,
    role: TargetRole,
) -> Result<(), ApiError> {
    let state = context.replica.read_shared().await?;
    let info = lookup(&state, name)?;
    let wanted = if role == TargetRole::Started {
        "started"
    } else {
        "stopped"
    };
    if info.target != wanted {
        let change = ConfigChange::SetTargetRole {
            name: name.to_string(),
            role,
        };
        crate::handlers::submit_step(
            context,
            headers,
            "target-role",
            Command::Configure { change },
        )
        .await?;
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/resources/{name}/start", responses((status = 200, body = ResourceInfo)))]
pub(crate) async fn start_resource(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<ResourceInfo> {
    set_target(&context, &headers, &name, TargetRole::Started).await?;
    context.orchestrator.start(&name).await?;
    let state = context.replica.read_shared().await?;
    Ok(Json(lookup(&state, &name)?))
}

#[utoipa::path(post, path = "/api/v1/resources/{name}/stop", responses((status = 200, body = ResourceInfo)))]
pub(crate) async fn stop_resource(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<ResourceInfo> {
    set_target(&context, &headers, &name, TargetRole::Stopped).await?;
    context.orchestrator.stop(&name).await?;
    let state = context.replica.read_shared().await?;
    Ok(Json(lookup(&state, &name)?))
}

/// Stops the resource (as `pcs resource delete` does) and removes it.
#[utoipa::path(delete, path = "/api/v1/resources/{name}", responses((status = 200, body = ResourceInfo), (status = 404, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn delete_resource(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<ResourceInfo> {
    let state = context.replica.read_shared().await?;
    let info = lookup(&state, &name)?;
    if matches!(state.config.resources[&name].kind, ResourceKind::Vm(_)) {
        return Err(ApiError::Invalid(format!(
            "{name} is a vm; use `hafen vm delete`"
        )));
    }
    set_target(&context, &headers, &name, TargetRole::Stopped).await?;
    context.orchestrator.stop(&name).await?;
    let change = ConfigChange::RemoveResource { name: name.clone() };
    crate::handlers::submit_step(&context, &headers, "remove", Command::Configure { change })
        .await?;
    Ok(Json(info))
}

#[utoipa::path(get, path = "/api/v1/agents", responses((status = 200, body = Vec<String>)))]
pub(crate) async fn list_agents(State(context): State<SharedContext>) -> ApiResult<Vec<String>> {
    match context
        .orchestrator
        .local_agent()
        .handle(AgentRequest::OcfListAgents)
        .await
    {
        AgentAnswer::Agents { agents } => Ok(Json(agents)),
        AgentAnswer::Failed { error, .. } => Err(ApiError::Failed(error)),
        other => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
    }
}

#[utoipa::path(get, path = "/api/v1/agents/{agent}", responses((status = 200, body = serde_json::Value), (status = 400, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn agent_info(
    State(context): State<SharedContext>,
    Path(agent): Path<String>,
) -> ApiResult<serde_json::Value> {
    match context
        .orchestrator
        .local_agent()
        .handle(AgentRequest::OcfMetadata { agent })
        .await
    {
        AgentAnswer::Metadata { metadata } => Ok(Json(metadata)),
        AgentAnswer::Failed { error, .. } => Err(ApiError::NotFound(error)),
        other => Err(ApiError::Internal(format!("unexpected answer {other:?}"))),
    }
}
