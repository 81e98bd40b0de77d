//! VM, pool and template handlers: configuration changes committed here, lifecycle steps run by the orchestrator.

use crate::SharedContext;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use hafen_agent::OrchestratorError;
use hafen_agent::protocol::{AgentAnswer, AgentRequest};
use hafen_api_types::{
    MigrateRequest, MigrationResult, PoolRequest, TemplateRequest, VmCreateRequest, VmInfo,
};
use hafen_model::config::ConfigChange;
use hafen_model::resource::{
    PoolConfig, ResourceConfig, ResourceKind, TargetRole, TemplateConfig, VmBoot, VmConfig, VmDisk,
    VmNic,
};
use hafen_model::{ClusterState, Command};

type ApiResult<T> = Result<Json<T>, ApiError>;

impl From<OrchestratorError> for ApiError {
    fn from(error: OrchestratorError) -> Self {
        match error {
            OrchestratorError::NotFound(message) => ApiError::NotFound(message),
            OrchestratorError::Conflict(message) => ApiError::Conflict(message),
            OrchestratorError::Invalid(message) => ApiError::Invalid(message),
            OrchestratorError::Unavailable(message) => ApiError::Unavailable(message),
            OrchestratorError::Failed(message) => ApiError::Failed(message),
        }
    }
}

pub(crate) fn vm_info(state: &ClusterState, name: &str) -> Option<VmInfo> {
    let resource = state.config.resources.get(name)?;
    let ResourceKind::Vm(vm) = &resource.kind else {
        return None;
    };
    let runtime = state.runtime.get(name).cloned().unwrap_or_default();
    Some(VmInfo {
        name: name.to_string(),
        state: runtime.phase.name().to_string(),
        node: runtime.host.clone(),
        target: match resource.target_role {
            TargetRole::Started => "started".to_string(),
            TargetRole::Stopped => "stopped".to_string(),
        },
        generation: runtime.generation,
        vcpus: vm.vcpus,
        memory_mib: vm.memory_mib,
        address: vm.address.clone(),
        disks: vm
            .disks
            .iter()
            .map(|disk| format!("{}/{}", disk.pool, disk.volume))
            .collect(),
        last_error: runtime.last_error.clone(),
        fail_counts: runtime.fail_counts.clone(),
    })
}

async fn configure(
    context: &SharedContext,
    headers: &HeaderMap,
    change: ConfigChange,
) -> Result<(), ApiError> {
    crate::handlers::submit(context, headers, Command::Configure { change })
        .await
        .map(|_| ())
}

fn lookup(state: &ClusterState, name: &str) -> Result<VmInfo, ApiError> {
    vm_info(state, name).ok_or_else(|| ApiError::NotFound(format!("no vm named {name}")))
}

/// A stable, locally administered MAC derived from the VM's name.
fn mac_for(name: &str) -> String {
    let mut hash: u32 = 2_166_136_261;
    for byte in name.bytes() {
        hash = (hash ^ u32::from(byte)).wrapping_mul(16_777_619);
    }
    let bytes = hash.to_be_bytes();
    format!(
        "52:54:00:{:02x}:{:02x}:{:02x}",
        bytes[1], bytes[2], bytes[3]
    )
}

fn random_uuid() -> String {
    let hex = crate::random_hex(16);
    // Version 4, RFC 4122 variant.
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

#[utoipa::path(get, path = "/api/v1/vms", responses((status = 200, body = Vec<VmInfo>)))]
pub(crate) async fn list_vms(State(context): State<SharedContext>) -> ApiResult<Vec<VmInfo>> {
    let state = context.replica.read_shared().await?;
    Ok(Json(
        state
            .config
            .resources
            .keys()
            .filter_map(|name| vm_info(&state, name))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/vms/{name}", responses((status = 200, body = VmInfo), (status = 404, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn show_vm(
    State(context): State<SharedContext>,
    Path(name): Path<String>,
) -> ApiResult<VmInfo> {
    let state = context.replica.read_shared().await?;
    Ok(Json(lookup(&state, &name)?))
}

#[utoipa::path(post, path = "/api/v1/vms", request_body = VmCreateRequest, responses((status = 200, body = VmInfo), (status = 400, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn create_vm(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Json(request): Json<VmCreateRequest>,
) -> ApiResult<VmInfo> {
    let state = context.replica.read_shared().await?;
    let template = state
        .config
        .templates
        .get(&request.template)
        .ok_or_else(|| ApiError::NotFound(format!("unknown template {:?}", request.template)))?
        .clone();
    let volume = format!("{}-disk", request.name);
    let boot = match &template.boot {
        VmBoot::Disk => VmBoot::Disk,
        VmBoot::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            let mut cmdline = format!("{cmdline} hafen.name={}", request.name);
            if let Some(address) = &request.address {
                cmdline.push_str(&format!(" hafen.ip={address}"));
            }
            VmBoot::Kernel {
                kernel: kernel.clone(),
                initrd: initrd.clone(),
                cmdline,
            }
        }
    };
    let resource = ResourceConfig {
        name: request.name.clone(),
        kind: ResourceKind::Vm(VmConfig {
            uuid: random_uuid(),
            vcpus: request.vcpus.unwrap_or(template.vcpus),
            memory_mib: request.memory_mib.unwrap_or(template.memory_mib),
            machine: "pc".to_string(),
            cpu_model: "qemu64".to_string(),
            disks: vec![VmDisk {
                pool: template.pool.clone(),
                volume: volume.clone(),
                format: "qcow2".to_string(),
            }],
            nics: vec![VmNic {
                mac: mac_for(&request.name),
                bridge: template.bridge.clone(),
            }],
            boot: boot.clone(),
            address: request.address.clone(),
        }),
        target_role: if request.start.unwrap_or(true) {
            TargetRole::Started
        } else {
            TargetRole::Stopped
        },
        priority: 0,
        preferred_host: request.host.clone(),
        clone: None,
        meta: Default::default(),
    };
    if let Some(host) = &request.host
        && !state.nodes.keys().any(|node| node.as_str() == host)
    {
        return Err(ApiError::NotFound(format!("no node named {host}")));
    }
    let change = ConfigChange::AddResource {
        resource: resource.clone(),
    };
    // Validate the whole change before anything is created on disk.
    state.config.with_change(&change)?;
    for file in hafen_model::ClusterConfig::boot_files(&boot) {
        if !std::path::Path::new(file).exists() {
            return Err(ApiError::Invalid(format!(
                "template {}: image {file} is missing",
                template.name
            )));
        }
    }
    if let Some(base) = &template.base_volume {
        let pool = &state.config.pools[&template.pool];
        if !std::path::Path::new(&pool.path).join(base).exists() {
            return Err(ApiError::Invalid(format!(
                "template {}: base volume {base} is missing from pool {}",
                template.name, pool.name
            )));
        }
    }
    let agent = context.orchestrator.local_agent();
    let created = agent
        .handle(AgentRequest::CreateVolume {
            pool: template.pool.clone(),
            volume: volume.clone(),
            size_mib: template.disk_size_mib,
            base: template.base_volume.clone(),
            pools: state.config.pools.clone(),
        })
        .await;
    if let AgentAnswer::Failed { error, .. } = created {
        return Err(ApiError::Failed(format!(
            "cannot create volume {volume}: {error}"
        )));
    }
    if let Err(error) = configure(&context, &headers, change).await {
        // Leave nothing behind when the commit is refused.
        let _ = agent
            .handle(AgentRequest::DeleteVolume {
                pool: template.pool.clone(),
                volume,
                pools: state.config.pools.clone(),
            })
            .await;
        return Err(error);
    }
    if request.start.unwrap_or(true) {
        context.orchestrator.start(&request.name).await?;
    }
    let state = context.replica.read_shared().await?;
    Ok(Json(lookup(&state, &request.name)?))
}

#[utoipa::path(post, path = "/api/v1/vms/{name}/start", responses((status = 200, body = VmInfo)))]
pub(crate) async fn start_vm(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<VmInfo> {
    crate::resources::set_target(&context, &headers, &name, TargetRole::Started).await?;
    context.orchestrator.start(&name).await?;
    let state = context.replica.read_shared().await?;
    Ok(Json(lookup(&state, &name)?))
}

#[utoipa::path(post, path = "/api/v1/vms/{name}/stop", responses((status = 200, body = VmInfo)))]
pub(crate) async fn stop_vm(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<VmInfo> {
    crate::resources::set_target(&context, &headers, &name, TargetRole::Stopped).await?;
    context.orchestrator.stop(&name).await?;
    let state = context.replica.read_shared().await?;
    Ok(Json(lookup(&state, &name)?))
}

#[utoipa::path(post, path = "/api/v1/vms/{name}/restart", responses((status = 200, body = VmInfo)))]
pub(crate) async fn restart_vm(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<VmInfo> {
    crate::resources::set_target(&context, &headers, &name, TargetRole::Started).await?;
    context.orchestrator.stop(&name).await?;
    context.orchestrator.start(&name).await?;
    let state = context.replica.read_shared().await?;
    Ok(Json(lookup(&state, &name)?))
}

/// Records a manual move as a visible constraint (as `crm_resource --move/--ban` does), so the
/// scheduler keeps the VM where the operator put it until the constraint is removed or expires.
fn record_move(
    state: &ClusterState,
    name: &str,
    to: Option<&str>,
    lifetime_s: Option<u64>,
) -> Result<Vec<Command>, ApiError> {
    let vm = lookup(state, name)?;
    let expires_ms = lifetime_s.map(|seconds| crate::now_ms() + seconds * 1000);
    let constraint = match to {
        Some(target) => hafen_model::resource::LocationConstraint {
            id: format!("cli-prefer-{name}"),
            resource: name.to_string(),
            host: target.to_string(),
            score: hafen_model::validate::INFINITY,
            expires_ms,
        },
        None => {
            let source = vm.node.ok_or_else(|| {
                ApiError::Conflict(format!("{name} runs nowhere; nothing to move"))
            })?;
            hafen_model::resource::LocationConstraint {
                id: format!("cli-ban-{name}-on-{source}"),
                resource: name.to_string(),
                host: source,
                score: -hafen_model::validate::INFINITY,
                expires_ms,
            }
        }
    };
    let mut commands = Vec::new();
    // A ban on the chosen target would outweigh the preference: the explicit move lifts it.
    if let Some(target) = to {
        let ban = format!("cli-ban-{name}-on-{target}");
        if state.config.constraints.contains_key(&ban) {
            commands.push(Command::Configure {
                change: ConfigChange::RemoveConstraint { id: ban },
            });
        }
    }
    commands.push(Command::Configure {
        change: ConfigChange::SetConstraint { constraint },
    });
    Ok(commands)
}

#[utoipa::path(post, path = "/api/v1/vms/{name}/migrate", request_body = MigrateRequest, responses((status = 200, body = MigrationResult)))]
pub(crate) async fn migrate_vm(
    State(context): State<SharedContext>,
    Path(name): Path<String>,
    Json(request): Json<MigrateRequest>,
) -> ApiResult<MigrationResult> {
    if request.bandwidth_mib_per_second == Some(0) {
        return Err(ApiError::Invalid(
            "bandwidth_mib_per_second must be at least 1".to_string(),
        ));
    }
    let bandwidth = request
        .bandwidth_mib_per_second
        .unwrap_or(1024)
        .saturating_mul(1024 * 1024);
    context
        .orchestrator
        .check_migration(&name, request.to.as_deref())
        .await?;
    let state = context.replica.read_shared().await?;
    let record = record_move(&state, &name, request.to.as_deref(), request.lifetime_s)?;
    let figures = context
        .orchestrator
        .migrate_recording(&name, request.to.as_deref(), bandwidth, record)
        .await?;
    Ok(Json(MigrationResult {
        from: figures.from,
        to: figures.to,
        qemu_total_time_ms: figures.qemu_total_time_ms,
        downtime_ms: figures.downtime_ms,
        transferred_bytes: figures.transferred_bytes,
        orchestration_total_ms: figures.orchestration_total_ms,
        step_ms: figures.step_ms,
    }))
}

#[utoipa::path(delete, path = "/api/v1/vms/{name}", responses((status = 200, body = VmInfo), (status = 409, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn delete_vm(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<VmInfo> {
    let state = context.replica.read_shared().await?;
    let info = lookup(&state, &name)?;
    let ResourceKind::Vm(vm) = &state.config.resources[&name].kind else {
        return Err(ApiError::Invalid(format!(
            "{name} is not a vm; use `hafen resource delete`"
        )));
    };
    configure(
        &context,
        &headers,
        ConfigChange::RemoveResource { name: name.clone() },
    )
    .await?;
    for disk in &vm.disks {
        let answer = context
            .orchestrator
            .local_agent()
            .handle(AgentRequest::DeleteVolume {
                pool: disk.pool.clone(),
                volume: disk.volume.clone(),
                pools: state.config.pools.clone(),
            })
            .await;
        if let AgentAnswer::Failed { error, .. } = answer {
            tracing::warn!(vm = %name, volume = %disk.volume, %error, "volume of a deleted vm not removed");
        }
    }
    Ok(Json(info))
}

#[utoipa::path(post, path = "/api/v1/pools", request_body = PoolRequest, responses((status = 200, body = crate::handlers::Done)))]
pub(crate) async fn define_pool(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Json(request): Json<PoolRequest>,
) -> ApiResult<crate::handlers::Done> {
    let pool = PoolConfig {
        name: request.name,
        kind: request.kind.unwrap_or_else(|| "dir".to_string()),
        path: request.path,
    };
    configure(&context, &headers, ConfigChange::DefinePool { pool }).await?;
    Ok(Json(crate::handlers::Done { done: true }))
}

#[utoipa::path(post, path = "/api/v1/templates", request_body = TemplateRequest, responses((status = 200, body = crate::handlers::Done)))]
pub(crate) async fn define_template(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Json(request): Json<TemplateRequest>,
) -> ApiResult<crate::handlers::Done> {
    let boot = match request.kernel {
        Some(kernel) => VmBoot::Kernel {
            kernel,
            initrd: request.initrd,
            cmdline: request.cmdline.unwrap_or_default(),
        },
        None => VmBoot::Disk,
    };
    let template = TemplateConfig {
        name: request.name,
        boot,
        pool: request.pool,
        base_volume: request.base_volume,
        disk_size_mib: request.disk_size_mib,
        bridge: request.bridge,
        memory_mib: request.memory_mib.unwrap_or(128),
        vcpus: request.vcpus.unwrap_or(1),
    };
    configure(
        &context,
        &headers,
        ConfigChange::DefineTemplate { template },
    )
    .await?;
    Ok(Json(crate::handlers::Done { done: true }))
}

/// The node agent's endpoint: the leader's orchestrator sends one request at a time per resource.
pub(crate) async fn agent(
    State(context): State<SharedContext>,
    Json(request): Json<AgentRequest>,
) -> Json<AgentAnswer> {
    Json(context.orchestrator.local_agent().handle(request).await)
}

fn constraint_info(
    constraint: &hafen_model::resource::LocationConstraint,
) -> hafen_api_types::ConstraintInfo {
    hafen_api_types::ConstraintInfo {
        id: constraint.id.clone(),
        kind: "location".to_string(),
        resource: constraint.resource.clone(),
        host: constraint.host.clone(),
        score: constraint.score,
        expires_ms: constraint.expires_ms,
        ..Default::default()
    }
}

fn colocation_info(
    constraint: &hafen_model::resource::ColocationConstraint,
) -> hafen_api_types::ConstraintInfo {
    hafen_api_types::ConstraintInfo {
        id: constraint.id.clone(),
        kind: "colocation".to_string(),
        resource: constraint.resource.clone(),
        score: constraint.score,
        with: Some(constraint.with.clone()),
        ..Default::default()
    }
}

fn ordering_info(
    constraint: &hafen_model::resource::OrderingConstraint,
) -> hafen_api_types::ConstraintInfo {
    hafen_api_types::ConstraintInfo {
        id: constraint.id.clone(),
        kind: "order".to_string(),
        resource: constraint.first.clone(),
        then: Some(constraint.then.clone()),
        ordering: Some(
            match constraint.kind {
                hafen_model::resource::OrderingKind::Mandatory => "mandatory",
                hafen_model::resource::OrderingKind::Optional => "optional",
            }
            .to_string(),
        ),
        symmetrical: Some(constraint.symmetrical),
        ..Default::default()
    }
}

#[utoipa::path(get, path = "/api/v1/constraints", responses((status = 200, body = Vec<hafen_api_types::ConstraintInfo>)))]
pub(crate) async fn list_constraints(
    State(context): State<SharedContext>,
) -> ApiResult<Vec<hafen_api_types::ConstraintInfo>> {
    let state = context.replica.read_shared().await?;
    let config = &state.config;
    Ok(Json(
        config
            .constraints
            .values()
            .map(constraint_info)
            .chain(config.colocations.values().map(colocation_info))
            .chain(config.orderings.values().map(ordering_info))
            .collect(),
    ))
}

#[utoipa::path(post, path = "/api/v1/constraints", request_body = hafen_api_types::ConstraintInfo, responses((status = 200, body = hafen_api_types::ConstraintInfo), (status = 400, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn add_constraint(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Json(request): Json<hafen_api_types::ConstraintInfo>,
) -> ApiResult<hafen_api_types::ConstraintInfo> {
    let state = context.replica.read_shared().await?;
    let config = &state.config;
    if config.constraints.contains_key(&request.id)
        || config.colocations.contains_key(&request.id)
        || config.orderings.contains_key(&request.id)
    {
        return Err(ApiError::Conflict(format!(
            "a constraint with id {} exists already",
            request.id
        )));
    }
    let (change, info) = constraint_change(request)?;
    configure(&context, &headers, change).await?;
    Ok(Json(info))
}

/// The configuration change a `constraint add` request asks for, refusing fields that do
/// not belong to its kind (a misplaced field is a misunderstanding, not a detail).
fn constraint_change(
    request: hafen_api_types::ConstraintInfo,
) -> Result<(ConfigChange, hafen_api_types::ConstraintInfo), ApiError> {
    let refuse = |field: &str| {
        Err(ApiError::Invalid(format!(
            "constraint {}: a {} constraint has no {field}",
            request.id, request.kind
        )))
    };
    match request.kind.as_str() {
        "location" => {
            if request.with.is_some() {
                return refuse("with");
            }
            if request.then.is_some() || request.ordering.is_some() || request.symmetrical.is_some()
            {
                return refuse("then, ordering or symmetrical");
            }
            let constraint = hafen_model::resource::LocationConstraint {
                id: request.id,
                resource: request.resource,
                host: request.host,
                score: request.score,
                expires_ms: request.expires_ms,
            };
            let info = constraint_info(&constraint);
            Ok((ConfigChange::SetConstraint { constraint }, info))
        }
        "colocation" => {
            if !request.host.is_empty() || request.expires_ms.is_some() {
                return refuse("host or expiry");
            }
            if request.then.is_some() || request.ordering.is_some() || request.symmetrical.is_some()
            {
                return refuse("then, ordering or symmetrical");
            }
            let Some(with) = request.with else {
                return Err(ApiError::Invalid(format!(
                    "constraint {}: a colocation needs `with`, the resource to place {} with",
                    request.id, request.resource
                )));
            };
            let constraint = hafen_model::resource::ColocationConstraint {
                id: request.id,
                resource: request.resource,
                with,
                score: request.score,
            };
            let info = colocation_info(&constraint);
            Ok((ConfigChange::SetColocation { constraint }, info))
        }
        "order" => {
            if !request.host.is_empty() || request.expires_ms.is_some() || request.score != 0 {
                return refuse("host, score or expiry");
            }
            if request.with.is_some() {
                return refuse("with");
            }
            let Some(then) = request.then else {
                return Err(ApiError::Invalid(format!(
                    "constraint {}: an order needs `then`, the resource that starts after {}",
                    request.id, request.resource
                )));
            };
            let kind = match request.ordering.as_deref() {
                None | Some("mandatory") => hafen_model::resource::OrderingKind::Mandatory,
                Some("optional") => hafen_model::resource::OrderingKind::Optional,
                Some(other) => {
                    return Err(ApiError::Invalid(format!(
                        "constraint {}: ordering {other:?} must be mandatory or optional",
                        request.id
                    )));
                }
            };
            let constraint = hafen_model::resource::OrderingConstraint {
                id: request.id,
                first: request.resource,
                then,
                kind,
                symmetrical: request.symmetrical.unwrap_or(true),
            };
            let info = ordering_info(&constraint);
            Ok((ConfigChange::SetOrdering { constraint }, info))
        }
        other => Err(ApiError::Invalid(format!(
            "constraint kind {other:?} must be location, colocation or order"
        ))),
    }
}

#[utoipa::path(delete, path = "/api/v1/constraints/{id}", responses((status = 200, body = crate::handlers::Done), (status = 404, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn remove_constraint(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<crate::handlers::Done> {
    configure(&context, &headers, ConfigChange::RemoveConstraint { id }).await?;
    Ok(Json(crate::handlers::Done { done: true }))
}
