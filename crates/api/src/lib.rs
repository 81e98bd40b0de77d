//! The REST API (`/api/...`) and the internal node-to-node endpoints (`/internal/...`) on one TLS listener.
//!
//! Every `/api/v1` request is authenticated, then served by the leader: a follower
//! forwards it whole, so clients may talk to any node. Internal endpoints require a
//! client certificate signed by the cluster CA.

mod error;
mod forward;
mod handlers;
mod internal;
mod resources;
mod serve;
mod vms;

pub use error::ApiError;
pub use hafen_agent::Liveness;
pub use serve::{PeerVerified, serve};

use axum::Router;
use axum::routing::{get, post};
use hafen_rpc::PeerClient;
use hafen_store::Replica;
use std::sync::Arc;
use utoipa::OpenApi;

/// The node serving the API.
#[derive(Debug, Clone)]
pub struct LocalNode {
    pub node_id: u64,
    pub name: String,
    pub address: String,
}

/// Everything a request handler needs.
#[derive(Debug)]
pub struct ApiContext {
    pub replica: Replica,
    pub peer: PeerClient,
    pub local: LocalNode,
    pub liveness: Arc<Liveness>,
    pub identity: hafen_rpc::Identity,
    pub orchestrator: Arc<hafen_agent::Orchestrator>,
}

impl ApiContext {
    pub(crate) fn local_ca_pem(&self) -> String {
        self.identity.ca_pem.clone()
    }
}

pub type SharedContext = Arc<ApiContext>;

#[derive(OpenApi)]
#[openapi(
    info(title = "hafen", description = "High-availability cluster manager for virtual machines"),
    paths(
        handlers::status,
        handlers::list_nodes,
        handlers::show_node,
        handlers::remove_node,
        handlers::show_config,
        handlers::get_property,
        handlers::set_property,
        handlers::unset_property,
        handlers::config_history,
        handlers::config_diff,
        handlers::config_rollback,
        handlers::issue_token,
        handlers::join,
        handlers::cluster_ca,
        handlers::events,
        handlers::set_node_mode,
        handlers::explain,
        vms::list_vms,
        vms::show_vm,
        vms::create_vm,
        vms::start_vm,
        vms::stop_vm,
        vms::restart_vm,
        vms::migrate_vm,
        vms::delete_vm,
        vms::define_pool,
        vms::define_template,
        vms::list_constraints,
        vms::add_constraint,
        vms::remove_constraint,
        resources::cleanup_resource,
        resources::set_meta,
        resources::list_groups,
        resources::set_group,
        resources::remove_group,
        resources::list_resources,
        resources::show_resource,
        resources::add_resource,
        resources::start_resource,
        resources::stop_resource,
        resources::delete_resource,
        resources::list_agents,
        resources::agent_info,
        handlers::add_fence_device,
        handlers::list_fence_devices,
        handlers::fence_node,
        handlers::confirm_fenced,
        handlers::test_fence_device,
    ),
    components(schemas(hafen_api_types::ErrorBody)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The OpenAPI document as JSON.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serializes")
}

/// All routes of a node.
pub fn router(context: SharedContext) -> Router {
    let api = Router::new()
        .route("/status", get(handlers::status))
        .route("/nodes", get(handlers::list_nodes))
        .route(
            "/nodes/{name}",
            get(handlers::show_node).delete(handlers::remove_node),
        )
        .route("/config", get(handlers::show_config))
        .route(
            "/config/properties/{key}",
            get(handlers::get_property)
                .put(handlers::set_property)
                .delete(handlers::unset_property),
        )
        .route("/config/history", get(handlers::config_history))
        .route("/config/diff", get(handlers::config_diff))
        .route("/config/rollback", post(handlers::config_rollback))
        .route("/cluster/token", post(handlers::issue_token))
        .route("/cluster/join", post(handlers::join))
        .route("/events", get(handlers::events))
        .route("/nodes/{name}/mode", post(handlers::set_node_mode))
        .route("/explain/{resource}", get(handlers::explain))
        .route("/vms", get(vms::list_vms).post(vms::create_vm))
        .route("/vms/{name}", get(vms::show_vm).delete(vms::delete_vm))
        .route("/vms/{name}/start", post(vms::start_vm))
        .route("/vms/{name}/stop", post(vms::stop_vm))
        .route("/vms/{name}/restart", post(vms::restart_vm))
        .route("/vms/{name}/migrate", post(vms::migrate_vm))
        .route("/pools", post(vms::define_pool))
        .route("/templates", post(vms::define_template))
        .route(
            "/constraints",
            get(vms::list_constraints).post(vms::add_constraint),
        )
        .route(
            "/constraints/{id}",
            axum::routing::delete(vms::remove_constraint),
        )
        .route(
            "/resources/{name}/cleanup",
            post(resources::cleanup_resource),
        )
        .route("/resources/{name}/meta", post(resources::set_meta))
        .route(
            "/groups",
            get(resources::list_groups).post(resources::set_group),
        )
        .route(
            "/groups/{name}",
            axum::routing::delete(resources::remove_group),
        )
        .route(
            "/resources",
            get(resources::list_resources).post(resources::add_resource),
        )
        .route(
            "/resources/{name}",
            get(resources::show_resource).delete(resources::delete_resource),
        )
        .route("/resources/{name}/start", post(resources::start_resource))
        .route("/resources/{name}/stop", post(resources::stop_resource))
        .route("/agents", get(resources::list_agents))
        .route(
            "/fence-devices",
            get(handlers::list_fence_devices).post(handlers::add_fence_device),
        )
        .route("/nodes/{name}/fence", post(handlers::fence_node))
        .route(
            "/fence-devices/{name}/test",
            post(handlers::test_fence_device),
        )
        .route(
            "/nodes/{name}/confirm-fenced",
            post(handlers::confirm_fenced),
        )
        .route("/agents/{agent}", get(resources::agent_info))
        .layer(axum::middleware::from_fn_with_state(
            context.clone(),
            forward::to_leader,
        ))
        .layer(axum::middleware::from_fn_with_state(
            context.clone(),
            forward::authenticate,
        ));
    let open = Router::new()
        .route("/api/v1/cluster/ca", get(handlers::cluster_ca))
        .route(
            "/api/openapi.json",
            get(|| async { ([("content-type", "application/json")], openapi_json()) }),
        );
    let internal = Router::new()
        .route("/raft/{rpc}", post(internal::raft))
        .route("/heartbeat", post(internal::heartbeat))
        .route("/agent", post(vms::agent))
        .layer(axum::middleware::from_fn(
            internal::require_peer_certificate,
        ));
    Router::new()
        .nest("/api/v1", api)
        .nest("/internal", internal)
        .merge(open)
        .route("/health", get(|| async { "ok" }))
        .fallback(|| async { ApiError::NotFound("no such endpoint".to_string()) })
        .layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024))
        .with_state(context)
}

/// Wall-clock milliseconds, stamped into commands by the leader.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A fresh random identifier: `bytes` random bytes, hex.
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// SHA-256, hex: how secrets are stored.
pub fn sha256_hex(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}
