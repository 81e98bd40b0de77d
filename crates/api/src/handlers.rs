//! Handlers of the public API; each runs on the leader (see `forward`).

use crate::SharedContext;
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use hafen_api_types::{
    CaResponse, ConfigReport, DiffLine, DiffReport, EpochChange, EventEntry, HistoryEntry,
    JoinRequest, JoinResponse, JoinToken, NodeState, NodeStatus, PropertyEntry, REQUEST_ID_HEADER,
    RollbackRequest, SetPropertyRequest, StatusReport, TokenRequest, TokenResponse,
};
use hafen_model::command::NewNode;
use hafen_model::config::ConfigChange;
use hafen_model::property::{self, PROPERTIES};
use hafen_model::state::NodeRole;
use hafen_model::{ClusterState, Command, Envelope, Outcome};
use serde::Deserialize;
use std::time::Instant;

type ApiResult<T> = Result<Json<T>, ApiError>;

fn request_id(headers: &HeaderMap) -> Result<String, ApiError> {
    match headers.get(REQUEST_ID_HEADER) {
        Some(value) => {
            let text = value.to_str().map_err(|_| {
                ApiError::Invalid(format!("header {REQUEST_ID_HEADER} is not ASCII"))
            })?;
            if text.is_empty() || text.len() > 128 {
                return Err(ApiError::Invalid(format!(
                    "header {REQUEST_ID_HEADER} must be 1-128 characters"
                )));
            }
            Ok(text.to_string())
        }
        None => Ok(crate::random_hex(16)),
    }
}

/// Proposes one step of a request that commits several commands: each step gets its own
/// request id derived from the request's, so a retried request repeats no step and skips none.
pub(crate) async fn submit_step(
    context: &SharedContext,
    headers: &HeaderMap,
    step: &str,
    command: Command,
) -> Result<Outcome, ApiError> {
    let envelope = Envelope {
        request_id: format!("{}/{step}", request_id(headers)?),
        now_ms: crate::now_ms(),
        command,
    };
    Ok(context.replica.write(envelope).await??)
}

/// Whether this request's `step` was applied already: the client resent the request
/// (same request id) after a timeout, and the handler carries on after that step.
pub(crate) fn step_applied(state: &ClusterState, headers: &HeaderMap, step: &str) -> bool {
    headers
        .get(REQUEST_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|id| {
            matches!(
                state.recent_requests.get(&format!("{id}/{step}")),
                Some(Ok(_))
            )
        })
}

/// Proposes a command and waits for every replica's verdict.
pub(crate) async fn submit(
    context: &SharedContext,
    headers: &HeaderMap,
    command: Command,
) -> Result<Outcome, ApiError> {
    let envelope = Envelope {
        request_id: request_id(headers)?,
        now_ms: crate::now_ms(),
        command,
    };
    Ok(context.replica.write(envelope).await??)
}

fn epoch_change(outcome: Outcome) -> Result<Json<EpochChange>, ApiError> {
    match outcome {
        Outcome::Epoch { epoch, diff } => Ok(Json(EpochChange {
            epoch,
            diff: diff.into_iter().map(diff_line).collect(),
        })),
        other => Err(ApiError::Internal(format!("unexpected outcome {other:?}"))),
    }
}

fn diff_line(line: hafen_model::config::DiffLine) -> DiffLine {
    DiffLine {
        path: line.path,
        before: line.before,
        after: line.after,
    }
}

/// The nodes with their liveness as the leader sees it.
fn node_statuses(context: &SharedContext, state: &ClusterState) -> Vec<NodeStatus> {
    let raft = context.replica.status();
    let now = Instant::now();
    context.liveness.observe_leadership(raft.is_leader, now);
    state
        .nodes
        .values()
        .map(|node| {
            let (alive, age) = if node.node_id == context.local.node_id {
                (true, Some(std::time::Duration::ZERO))
            } else {
                context.liveness.check(node.node_id, now)
            };
            let mode = match node.mode {
                hafen_model::NodeMode::Online => NodeState::Online,
                hafen_model::NodeMode::Standby => NodeState::Standby,
                hafen_model::NodeMode::Maintenance => NodeState::Maintenance,
            };
            NodeStatus {
                name: node.name.to_string(),
                mode: mode.as_str().to_string(),
                node_id: node.node_id,
                address: node.address.clone(),
                role: match node.role {
                    NodeRole::Member => "member".to_string(),
                    NodeRole::Witness => "witness".to_string(),
                },
                state: match &node.fencing {
                    hafen_model::fencing::Fencing::Fenced { .. } if !alive => NodeState::Fenced,
                    hafen_model::fencing::Fencing::Unclean { .. } => NodeState::Unclean,
                    _ if alive => mode,
                    _ => NodeState::Offline,
                },
                leader: raft.leader_id == Some(node.node_id),
                voter: raft.voters.contains(&node.node_id),
                last_seen_ms: age.map(|age| u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
                log_index: if node.node_id == context.local.node_id {
                    raft.last_log_index
                } else {
                    raft.matched.get(&node.node_id).copied().flatten()
                },
            }
        })
        .collect()
}

/// One node's status, or the refusal naming it.
fn node_status(
    context: &SharedContext,
    state: &ClusterState,
    name: &str,
) -> Result<NodeStatus, ApiError> {
    node_statuses(context, state)
        .into_iter()
        .find(|node| node.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no node named {name}")))
}

fn warnings(state: &ClusterState, nodes: &[NodeStatus]) -> Vec<String> {
    let mut warnings = Vec::new();
    let members = nodes.iter().filter(|node| node.role == "member").count();
    let witnesses = nodes.len() - members;
    if members == 2 && witnesses == 0 {
        warnings.push(
            "two nodes without a witness: automatic recovery is refused (add a witness with `hafen cluster join --role witness`)"
                .to_string(),
        );
    }
    let wanted = usize::try_from(state.config.integer("voter-count"))
        .unwrap_or(3)
        .min(nodes.len());
    let voters: Vec<&NodeStatus> = nodes.iter().filter(|node| node.voter).collect();
    if voters.len() < wanted {
        warnings.push(format!(
            "only {} of {wanted} voters are configured yet",
            voters.len()
        ));
    }
    let offline_voters: Vec<&str> = voters
        .iter()
        .filter(|node| node.state == NodeState::Offline)
        .map(|node| node.name.as_str())
        .collect();
    if !offline_voters.is_empty() {
        warnings.push(format!(
            "voters offline: {}; {} more lost would cost the quorum",
            offline_voters.join(", "),
            (voters.len() / 2).saturating_sub(offline_voters.len())
        ));
    }
    warnings
}

#[utoipa::path(get, path = "/api/v1/status", responses((status = 200, body = StatusReport)))]
pub(crate) async fn status(State(context): State<SharedContext>) -> ApiResult<StatusReport> {
    let state = context.replica.read_shared().await?;
    let identity = state
        .identity
        .as_ref()
        .ok_or_else(|| ApiError::Unavailable("the cluster is not bootstrapped yet".to_string()))?;
    let nodes = node_statuses(&context, &state);
    let raft = context.replica.status();
    let leader = nodes
        .iter()
        .find(|node| node.leader)
        .map(|node| node.name.clone());
    Ok(Json(StatusReport {
        cluster_name: identity.name.clone(),
        epoch: state.epoch,
        leader,
        term: raft.term,
        warnings: warnings(&state, &nodes),
        nodes,
        resources: resources(&state),
    }))
}

/// A plain acknowledgement.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Done {
    pub done: bool,
}

fn resources(state: &ClusterState) -> Vec<hafen_api_types::ResourceStatus> {
    state
        .config
        .resources
        .keys()
        .filter_map(|name| crate::resources::resource_info(state, name))
        .map(|resource| hafen_api_types::ResourceStatus {
            name: resource.name,
            kind: resource.kind,
            state: resource.state,
            node: resource.node,
            target: Some(resource.target),
        })
        .collect()
}

#[utoipa::path(get, path = "/api/v1/nodes", responses((status = 200, body = Vec<NodeStatus>)))]
pub(crate) async fn list_nodes(State(context): State<SharedContext>) -> ApiResult<Vec<NodeStatus>> {
    let state = context.replica.read_shared().await?;
    Ok(Json(node_statuses(&context, &state)))
}

#[utoipa::path(get, path = "/api/v1/nodes/{name}", responses((status = 200, body = NodeStatus), (status = 404, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn show_node(
    State(context): State<SharedContext>,
    Path(name): Path<String>,
) -> ApiResult<NodeStatus> {
    let state = context.replica.read_shared().await?;
    node_status(&context, &state, &name).map(Json)
}

#[utoipa::path(delete, path = "/api/v1/nodes/{name}", responses((status = 200, body = NodeStatus), (status = 404, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn remove_node(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<NodeStatus> {
    let before = context.replica.read_shared().await?;
    let status = node_statuses(&context, &before)
        .into_iter()
        .find(|node| node.name == name);
    submit(
        &context,
        &headers,
        Command::RemoveNode { name: name.clone() },
    )
    .await?;
    status
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no node named {name}")))
}

fn property_entry(state: &ClusterState, def: &property::PropertyDef) -> PropertyEntry {
    let set = state.config.properties.get(def.key);
    let default = property::default_value(def);
    PropertyEntry {
        key: def.key.to_string(),
        value: set.unwrap_or(&default).to_string(),
        default: default.to_string(),
        is_default: set.is_none(),
        description: def.description.to_string(),
    }
}

#[utoipa::path(get, path = "/api/v1/config", responses((status = 200, body = ConfigReport)))]
pub(crate) async fn show_config(State(context): State<SharedContext>) -> ApiResult<ConfigReport> {
    let report = context
        .replica
        .read(|state| ConfigReport {
            epoch: state.epoch,
            properties: PROPERTIES
                .iter()
                .map(|def| property_entry(state, def))
                .collect(),
        })
        .await?;
    Ok(Json(report))
}

#[utoipa::path(get, path = "/api/v1/config/properties/{key}", responses((status = 200, body = PropertyEntry), (status = 404, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn get_property(
    State(context): State<SharedContext>,
    Path(key): Path<String>,
) -> ApiResult<PropertyEntry> {
    let def = property::lookup(&key).map_err(|error| ApiError::NotFound(error.to_string()))?;
    Ok(Json(
        context
            .replica
            .read(|state| property_entry(state, def))
            .await?,
    ))
}

#[utoipa::path(put, path = "/api/v1/config/properties/{key}", request_body = SetPropertyRequest, responses((status = 200, body = EpochChange), (status = 400, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn set_property(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(key): Path<String>,
    Json(body): Json<SetPropertyRequest>,
) -> ApiResult<EpochChange> {
    let change = ConfigChange::SetProperty {
        key,
        value: body.value,
    };
    epoch_change(submit(&context, &headers, Command::Configure { change }).await?)
}

#[utoipa::path(delete, path = "/api/v1/config/properties/{key}", responses((status = 200, body = EpochChange), (status = 400, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn unset_property(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(key): Path<String>,
) -> ApiResult<EpochChange> {
    let change = ConfigChange::UnsetProperty { key };
    epoch_change(submit(&context, &headers, Command::Configure { change }).await?)
}

#[utoipa::path(get, path = "/api/v1/config/history", responses((status = 200, body = Vec<HistoryEntry>)))]
pub(crate) async fn config_history(
    State(context): State<SharedContext>,
) -> ApiResult<Vec<HistoryEntry>> {
    let history = context
        .replica
        .read(|state| {
            state
                .history
                .iter()
                .map(|version| HistoryEntry {
                    epoch: version.epoch,
                    at_ms: version.at_ms,
                    summary: version.summary.clone(),
                    request_id: version.request_id.clone(),
                })
                .collect()
        })
        .await?;
    Ok(Json(history))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct DiffQuery {
    from: u64,
    /// Defaults to the current epoch.
    to: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/config/diff", params(DiffQuery), responses((status = 200, body = DiffReport), (status = 404, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn config_diff(
    State(context): State<SharedContext>,
    Query(query): Query<DiffQuery>,
) -> ApiResult<DiffReport> {
    let report = context
        .replica
        .read(|state| {
            let to = query.to.unwrap_or(state.epoch);
            let config_at = |epoch: u64| {
                state.config_at(epoch).ok_or_else(|| {
                    ApiError::NotFound(format!("epoch {epoch} is not in the configuration history"))
                })
            };
            let lines = hafen_model::config::diff(config_at(query.from)?, config_at(to)?);
            Ok::<_, ApiError>(DiffReport {
                from: query.from,
                to,
                lines: lines.into_iter().map(diff_line).collect(),
            })
        })
        .await??;
    Ok(Json(report))
}

#[utoipa::path(post, path = "/api/v1/config/rollback", request_body = RollbackRequest, responses((status = 200, body = EpochChange), (status = 404, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn config_rollback(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Json(body): Json<RollbackRequest>,
) -> ApiResult<EpochChange> {
    epoch_change(submit(&context, &headers, Command::Rollback { epoch: body.epoch }).await?)
}

/// Join tokens live at most a week.
const TOKEN_TTL_MAX_S: u64 = 7 * 24 * 3600;

#[utoipa::path(post, path = "/api/v1/cluster/token", request_body = TokenRequest, responses((status = 200, body = TokenResponse)))]
pub(crate) async fn issue_token(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Json(body): Json<TokenRequest>,
) -> ApiResult<TokenResponse> {
    let ttl_s = body.ttl_s.unwrap_or(3600);
    if ttl_s == 0 || ttl_s > TOKEN_TTL_MAX_S {
        return Err(ApiError::Invalid(format!(
            "ttl_s must be between 1 and {TOKEN_TTL_MAX_S} seconds"
        )));
    }
    let ca_pem = context
        .replica
        .read(|state| {
            state
                .identity
                .as_ref()
                .map(|identity| identity.ca_cert_pem.clone())
        })
        .await?
        .ok_or_else(|| ApiError::Unavailable("the cluster is not bootstrapped yet".to_string()))?;
    let token = JoinToken {
        id: crate::random_hex(4),
        secret: crate::random_hex(16),
        ca_fingerprint: hafen_rpc::tls::fingerprint(&ca_pem)
            .map_err(|error| ApiError::Internal(error.to_string()))?,
    };
    let expires_ms = crate::now_ms() + ttl_s * 1000;
    submit(
        &context,
        &headers,
        Command::IssueJoinToken {
            token_id: token.id.clone(),
            secret_sha256: crate::sha256_hex(&token.secret),
            expires_ms,
        },
    )
    .await?;
    Ok(Json(TokenResponse {
        token: token.to_string(),
        expires_ms,
    }))
}

#[utoipa::path(post, path = "/api/v1/cluster/join", request_body = JoinRequest, responses((status = 200, body = JoinResponse), (status = 401, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn join(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Json(body): Json<JoinRequest>,
) -> ApiResult<JoinResponse> {
    let address: std::net::SocketAddr = body
        .address
        .parse()
        .map_err(|_| ApiError::Invalid(format!("address {:?} is not an ip:port", body.address)))?;
    let role: NodeRole = body.role.parse().map_err(ApiError::Invalid)?;
    // Check the request is signable before anything is committed.
    hafen_rpc::tls::node_request_is_valid(&body.csr_pem)
        .map_err(|error| ApiError::Invalid(error.to_string()))?;
    let outcome = submit(
        &context,
        &headers,
        Command::Join {
            token_id: body.token_id.clone(),
            secret_sha256: crate::sha256_hex(&body.secret),
            node: NewNode {
                name: body.name.clone(),
                address: body.address.clone(),
                role,
            },
        },
    )
    .await?;
    let Outcome::Admitted { node } = outcome else {
        return Err(ApiError::Internal(format!(
            "unexpected outcome {outcome:?}"
        )));
    };
    let identity = context
        .replica
        .read_local(|state| state.identity.clone())
        .ok_or_else(|| ApiError::Internal("cluster identity missing after join".to_string()))?;
    let ca = hafen_rpc::tls::CaMaterial {
        cert_pem: identity.ca_cert_pem.clone(),
        key_pem: identity.ca_key_pem.clone(),
    };
    let cert_pem = hafen_rpc::tls::sign_node_request(&ca, &body.csr_pem, &node.name, address.ip())
        .map_err(|error| ApiError::Internal(error.to_string()))?;
    Ok(Json(JoinResponse {
        node_id: node.node_id,
        cluster_name: identity.name,
        cert_pem,
        ca_pem: identity.ca_cert_pem,
    }))
}

#[utoipa::path(get, path = "/api/v1/cluster/ca", security(()), responses((status = 200, body = CaResponse)))]
pub(crate) async fn cluster_ca(State(context): State<SharedContext>) -> ApiResult<CaResponse> {
    // Served from the local TLS identity: it exists before the state is replicated here.
    let ca_pem = context.local_ca_pem();
    let fingerprint = hafen_rpc::tls::fingerprint(&ca_pem)
        .map_err(|error| ApiError::Internal(error.to_string()))?;
    Ok(Json(CaResponse {
        ca_pem,
        fingerprint,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct EventsQuery {
    /// Only events with a larger id.
    after: Option<u64>,
}

#[utoipa::path(get, path = "/api/v1/events", params(EventsQuery), responses((status = 200, body = Vec<EventEntry>)))]
pub(crate) async fn events(
    State(context): State<SharedContext>,
    Query(query): Query<EventsQuery>,
) -> ApiResult<Vec<EventEntry>> {
    let after = query.after.unwrap_or(0);
    let events = context
        .replica
        .read(|state| {
            state
                .events
                .iter()
                .filter(|event| event.id > after)
                .map(|event| EventEntry {
                    id: event.id,
                    at_ms: event.at_ms,
                    kind: event.kind.clone(),
                    message: event.message.clone(),
                })
                .collect()
        })
        .await?;
    Ok(Json(events))
}

#[utoipa::path(post, path = "/api/v1/nodes/{name}/mode", request_body = hafen_api_types::NodeModeRequest, responses((status = 200, body = NodeStatus), (status = 404, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn set_node_mode(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
    Json(body): Json<hafen_api_types::NodeModeRequest>,
) -> ApiResult<NodeStatus> {
    let mode: hafen_model::NodeMode = body.mode.parse().map_err(ApiError::Invalid)?;
    submit(
        &context,
        &headers,
        Command::SetNodeMode {
            name: name.clone(),
            mode,
        },
    )
    .await?;
    let state = context.replica.read_shared().await?;
    node_status(&context, &state, &name).map(Json)
}

#[utoipa::path(get, path = "/api/v1/explain/{resource}", responses((status = 200, body = hafen_api_types::Explanation), (status = 404, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn explain(
    State(context): State<SharedContext>,
    Path(resource): Path<String>,
) -> ApiResult<hafen_api_types::Explanation> {
    let text = context.orchestrator.explain(&resource).await?;
    Ok(Json(hafen_api_types::Explanation { resource, text }))
}

/// A fence device as `fence-device list` shows it: secret values are never returned.
#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct FenceDeviceBody {
    pub name: String,
    pub agent: String,
    #[serde(default)]
    pub parameters: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    pub secret_parameters: std::collections::BTreeSet<String>,
    #[serde(default)]
    pub host_map: std::collections::BTreeMap<String, String>,
}

fn redacted(device: &hafen_model::fencing::FenceDeviceConfig) -> FenceDeviceBody {
    let secret = |name: &str| {
        let lowercase = name.to_ascii_lowercase();
        device.secret_parameters.contains(name)
            || lowercase.contains("passw")
            || lowercase.contains("secret")
    };
    FenceDeviceBody {
        name: device.name.clone(),
        agent: device.agent.clone(),
        parameters: device
            .parameters
            .iter()
            .map(|(key, value)| {
                (
                    key.clone(),
                    if secret(key) {
                        "<redacted>".to_string()
                    } else {
                        value.clone()
                    },
                )
            })
            .collect(),
        secret_parameters: device.secret_parameters.clone(),
        host_map: device.host_map.clone(),
    }
}

#[utoipa::path(post, path = "/api/v1/fence-devices", request_body = FenceDeviceBody, responses((status = 200, body = FenceDeviceBody), (status = 400, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn add_fence_device(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Json(body): Json<FenceDeviceBody>,
) -> ApiResult<FenceDeviceBody> {
    let device = hafen_model::fencing::FenceDeviceConfig {
        name: body.name,
        agent: body.agent,
        parameters: body.parameters,
        secret_parameters: body.secret_parameters,
        host_map: body.host_map,
    };
    context.orchestrator.check_fence_device(&device).await?;
    let change = hafen_model::ConfigChange::SetFenceDevice {
        device: device.clone(),
    };
    submit(&context, &headers, Command::Configure { change }).await?;
    Ok(Json(redacted(&device)))
}

#[utoipa::path(get, path = "/api/v1/fence-devices", responses((status = 200, body = Vec<FenceDeviceBody>)))]
pub(crate) async fn list_fence_devices(
    State(context): State<SharedContext>,
) -> ApiResult<Vec<FenceDeviceBody>> {
    let devices = context
        .replica
        .read(|state| state.config.fence_devices.values().map(redacted).collect())
        .await?;
    Ok(Json(devices))
}

/// Fences a node now (`hafen node fence`): it is marked unclean, powered off through its
/// devices, and its resources recover elsewhere once the confirmation is committed.
#[utoipa::path(post, path = "/api/v1/nodes/{name}/fence", responses((status = 200, body = NodeStatus)))]
pub(crate) async fn fence_node(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<NodeStatus> {
    let state = context.replica.read_shared().await?;
    let node = state
        .nodes
        .values()
        .find(|node| node.name.as_str() == name)
        .ok_or_else(|| ApiError::NotFound(format!("no node named {name}")))?;
    if node.node_id == context.local.node_id {
        return Err(ApiError::Invalid(format!(
            "{name} serves this request; ask another node to fence it"
        )));
    }
    if node.fencing == hafen_model::fencing::Fencing::None {
        crate::handlers::submit_step(
            &context,
            &headers,
            "suspect",
            Command::HostSuspected { name: name.clone() },
        )
        .await?;
    }
    let state = context.replica.read_shared().await?;
    context.orchestrator.fence_host(&state, &name).await?;
    let state = context.replica.read_shared().await?;
    node_status(&context, &state, &name).map(Json)
}

/// An operator's word that a node is off (for nodes without a device): its resources may
/// start elsewhere. Wrong use can run a VM twice; the CLI warns loudly.
#[utoipa::path(post, path = "/api/v1/nodes/{name}/confirm-fenced", responses((status = 200, body = NodeStatus)))]
pub(crate) async fn confirm_fenced(
    State(context): State<SharedContext>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> ApiResult<NodeStatus> {
    let command = Command::HostFenced {
        name: name.clone(),
        how: "operator confirmation".to_string(),
    };
    submit(&context, &headers, command).await?;
    let state = context.replica.read_shared().await?;
    node_status(&context, &state, &name).map(Json)
}

#[derive(Debug, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub(crate) struct FenceTestBody {
    pub node: String,
}

#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct FenceTestResult {
    pub device: String,
    pub node: String,
    /// As the device reports it: `on`, `off` (or `unknown`).
    pub power: String,
}

/// `fence-device test`: asks the device for a node's power state; fences nothing.
#[utoipa::path(post, path = "/api/v1/fence-devices/{name}/test", request_body = FenceTestBody, responses((status = 200, body = FenceTestResult), (status = 404, body = hafen_api_types::ErrorBody)))]
pub(crate) async fn test_fence_device(
    State(context): State<SharedContext>,
    Path(name): Path<String>,
    Json(body): Json<FenceTestBody>,
) -> ApiResult<FenceTestResult> {
    let state = context.replica.read_shared().await?;
    let power = context
        .orchestrator
        .test_fence_device(&state, &name, &body.node)
        .await?;
    Ok(Json(FenceTestResult {
        device: name,
        node: body.node,
        power,
    }))
}
