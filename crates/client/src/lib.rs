//! A typed client of the REST API: used by the CLI, the benchmarks, the tests and joining nodes.
//!
//! Every call carries one request id across its retries, so a write retried after a lost
//! answer or a leader change is applied exactly once. Connection failures rotate through
//! the configured servers; `503 unavailable` answers (no leader yet) are retried until the
//! call's deadline.

use hafen_api_types::*;
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The cluster answered and refused.
    #[error("{message}")]
    Api {
        status: u16,
        kind: String,
        message: String,
    },
    #[error("cannot reach {server}: {detail}")]
    Unreachable { server: String, detail: String },
    #[error("no answer within {seconds} s: {last}")]
    Deadline { seconds: u64, last: String },
    #[error("malformed answer from {server}: {detail}")]
    Decode { server: String, detail: String },
    #[error("{0}")]
    Setup(String),
}

/// What `hafen cluster init` writes so the CLI can reach the cluster without flags.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub servers: Vec<String>,
    pub token: String,
    pub ca_pem: String,
}

impl Credentials {
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let text = std::fs::read_to_string(path).map_err(|error| {
            ClientError::Setup(format!(
                "cannot read credentials file {}: {error}",
                path.display()
            ))
        })?;
        serde_json::from_str(&text).map_err(|error| {
            ClientError::Setup(format!(
                "credentials file {} is malformed: {error}",
                path.display()
            ))
        })
    }

    /// Writes the file readable by its owner only.
    pub fn save(&self, path: &Path) -> Result<(), ClientError> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|error| {
                ClientError::Setup(format!("cannot create {}: {error}", parent.display()))
            })?;
        }
        let text = serde_json::to_string_pretty(self).expect("credentials serialize");
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|error| {
                ClientError::Setup(format!("cannot write {}: {error}", path.display()))
            })?;
        file.write_all(text.as_bytes()).map_err(|error| {
            ClientError::Setup(format!("cannot write {}: {error}", path.display()))
        })
    }
}

/// A client of one cluster.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    servers: Arc<Vec<String>>,
    current: Arc<AtomicUsize>,
    token: Option<String>,
    deadline: Duration,
}

impl Client {
    /// A client that trusts `ca_pem` and sends `token`.
    pub fn new(
        servers: Vec<String>,
        ca_pem: &str,
        token: Option<String>,
    ) -> Result<Self, ClientError> {
        let tls = hafen_rpc::tls::anonymous_client_config(ca_pem)
            .map_err(|error| ClientError::Setup(error.to_string()))?;
        Self::with_tls(servers, tls, token)
    }

    /// A client that accepts any server certificate; only for fetching the CA before a join.
    pub fn unverified(server: String) -> Result<Self, ClientError> {
        Self::with_tls(
            vec![server],
            hafen_rpc::tls::unverified_client_config(),
            None,
        )
    }

    fn with_tls(
        servers: Vec<String>,
        tls: rustls_config::ClientConfig,
        token: Option<String>,
    ) -> Result<Self, ClientError> {
        if servers.is_empty() {
            return Err(ClientError::Setup(
                "no server given: pass --server or set HAFEN_SERVER".to_string(),
            ));
        }
        let servers = servers
            .into_iter()
            .map(|server| normalize(&server))
            .collect::<Result<Vec<_>, _>>()?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(200))
            .tcp_nodelay(true)
            .build()
            .map_err(|error| ClientError::Setup(error.to_string()))?;
        Ok(Self {
            http,
            servers: Arc::new(servers),
            current: Arc::new(AtomicUsize::new(0)),
            token,
            deadline: Duration::from_secs(20),
        })
    }

    /// How long a call keeps retrying before it gives up.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline;
        self
    }

    pub fn servers(&self) -> &[String] {
        &self.servers
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, ClientError> {
        let request_id = random_hex(16);
        let started = Instant::now();
        let mut pause = Duration::from_millis(25);
        loop {
            let index = self.current.load(Ordering::Relaxed) % self.servers.len();
            let server = &self.servers[index];
            let attempt = self
                .attempt(server, &method, path, body.as_ref(), &request_id)
                .await;
            let retryable = match attempt {
                Ok(value) => return Ok(value),
                Err(Attempt::Final(error)) => return Err(error),
                Err(Attempt::Unreachable(detail)) => {
                    // Try the next server at once: this one may be down.
                    self.current.store(index + 1, Ordering::Relaxed);
                    format!("cannot reach {server}: {detail}")
                }
                Err(Attempt::Unavailable(detail)) => detail,
            };
            if started.elapsed() + pause > self.deadline {
                return Err(ClientError::Deadline {
                    seconds: self.deadline.as_secs(),
                    last: retryable,
                });
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(400));
        }
    }

    async fn attempt<T: DeserializeOwned>(
        &self,
        server: &str,
        method: &Method,
        path: &str,
        body: Option<&serde_json::Value>,
        request_id: &str,
    ) -> Result<T, Attempt> {
        let mut request = self
            .http
            .request(method.clone(), format!("{server}{path}"))
            .header(REQUEST_ID_HEADER, request_id);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| Attempt::Unreachable(hafen_rpc::peer::error_chain(&error)))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| Attempt::Unreachable(hafen_rpc::peer::error_chain(&error)))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|error| {
                Attempt::Final(ClientError::Decode {
                    server: server.to_string(),
                    detail: error.to_string(),
                })
            });
        }
        let (kind, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => (body.kind, body.error),
            Err(_) => (
                "unknown".to_string(),
                format!(
                    "{status}: {}",
                    String::from_utf8_lossy(&bytes)
                        .chars()
                        .take(200)
                        .collect::<String>()
                ),
            ),
        };
        if status == StatusCode::SERVICE_UNAVAILABLE {
            return Err(Attempt::Unavailable(message));
        }
        Err(Attempt::Final(ClientError::Api {
            status: status.as_u16(),
            kind,
            message,
        }))
    }

    pub async fn status(&self) -> Result<StatusReport, ClientError> {
        self.call(Method::GET, "/api/v1/status", None).await
    }

    pub async fn nodes(&self) -> Result<Vec<NodeStatus>, ClientError> {
        self.call(Method::GET, "/api/v1/nodes", None).await
    }

    pub async fn node(&self, name: &str) -> Result<NodeStatus, ClientError> {
        self.call(
            Method::GET,
            &format!("/api/v1/nodes/{}", encode(name)),
            None,
        )
        .await
    }

    pub async fn remove_node(&self, name: &str) -> Result<NodeStatus, ClientError> {
        self.call(
            Method::DELETE,
            &format!("/api/v1/nodes/{}", encode(name)),
            None,
        )
        .await
    }

    pub async fn config(&self) -> Result<ConfigReport, ClientError> {
        self.call(Method::GET, "/api/v1/config", None).await
    }

    pub async fn property(&self, key: &str) -> Result<PropertyEntry, ClientError> {
        self.call(
            Method::GET,
            &format!("/api/v1/config/properties/{}", encode(key)),
            None,
        )
        .await
    }

    pub async fn set_property(&self, key: &str, value: &str) -> Result<EpochChange, ClientError> {
        let body = serde_json::to_value(SetPropertyRequest {
            value: value.to_string(),
        })
        .expect("serializes");
        self.call(
            Method::PUT,
            &format!("/api/v1/config/properties/{}", encode(key)),
            Some(body),
        )
        .await
    }

    pub async fn unset_property(&self, key: &str) -> Result<EpochChange, ClientError> {
        self.call(
            Method::DELETE,
            &format!("/api/v1/config/properties/{}", encode(key)),
            None,
        )
        .await
    }

    pub async fn history(&self) -> Result<Vec<HistoryEntry>, ClientError> {
        self.call(Method::GET, "/api/v1/config/history", None).await
    }

    pub async fn diff(&self, from: u64, to: Option<u64>) -> Result<DiffReport, ClientError> {
        let path = match to {
            Some(to) => format!("/api/v1/config/diff?from={from}&to={to}"),
            None => format!("/api/v1/config/diff?from={from}"),
        };
        self.call(Method::GET, &path, None).await
    }

    pub async fn rollback(&self, epoch: u64) -> Result<EpochChange, ClientError> {
        let body = serde_json::to_value(RollbackRequest { epoch }).expect("serializes");
        self.call(Method::POST, "/api/v1/config/rollback", Some(body))
            .await
    }

    pub async fn issue_token(&self, ttl_s: Option<u64>) -> Result<TokenResponse, ClientError> {
        let body = serde_json::to_value(TokenRequest { ttl_s }).expect("serializes");
        self.call(Method::POST, "/api/v1/cluster/token", Some(body))
            .await
    }

    pub async fn join(&self, request: &JoinRequest) -> Result<JoinResponse, ClientError> {
        let body = serde_json::to_value(request).expect("serializes");
        self.call(Method::POST, "/api/v1/cluster/join", Some(body))
            .await
    }

    pub async fn cluster_ca(&self) -> Result<CaResponse, ClientError> {
        self.call(Method::GET, "/api/v1/cluster/ca", None).await
    }

    pub async fn events(&self, after: Option<u64>) -> Result<Vec<EventEntry>, ClientError> {
        let path = match after {
            Some(after) => format!("/api/v1/events?after={after}"),
            None => "/api/v1/events".to_string(),
        };
        self.call(Method::GET, &path, None).await
    }

    pub async fn vms(&self) -> Result<Vec<VmInfo>, ClientError> {
        self.call(Method::GET, "/api/v1/vms", None).await
    }

    pub async fn vm(&self, name: &str) -> Result<VmInfo, ClientError> {
        self.call(Method::GET, &format!("/api/v1/vms/{}", encode(name)), None)
            .await
    }

    pub async fn create_vm(&self, request: &VmCreateRequest) -> Result<VmInfo, ClientError> {
        let body = serde_json::to_value(request).expect("serializes");
        self.call(Method::POST, "/api/v1/vms", Some(body)).await
    }

    /// `start`, `stop` or `restart`.
    pub async fn vm_action(&self, name: &str, action: &str) -> Result<VmInfo, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/v1/vms/{}/{action}", encode(name)),
            None,
        )
        .await
    }

    pub async fn migrate_vm(
        &self,
        name: &str,
        to: Option<&str>,
        bandwidth_mib_per_second: Option<u64>,
    ) -> Result<MigrationResult, ClientError> {
        let request = MigrateRequest {
            to: to.map(str::to_string),
            bandwidth_mib_per_second,
            lifetime_s: None,
        };
        let body = serde_json::to_value(request).expect("serializes");
        self.call(
            Method::POST,
            &format!("/api/v1/vms/{}/migrate", encode(name)),
            Some(body),
        )
        .await
    }

    pub async fn delete_vm(&self, name: &str) -> Result<VmInfo, ClientError> {
        self.call(
            Method::DELETE,
            &format!("/api/v1/vms/{}", encode(name)),
            None,
        )
        .await
    }

    pub async fn define_pool(
        &self,
        request: &PoolRequest,
    ) -> Result<serde_json::Value, ClientError> {
        let body = serde_json::to_value(request).expect("serializes");
        self.call(Method::POST, "/api/v1/pools", Some(body)).await
    }

    pub async fn define_template(
        &self,
        request: &TemplateRequest,
    ) -> Result<serde_json::Value, ClientError> {
        let body = serde_json::to_value(request).expect("serializes");
        self.call(Method::POST, "/api/v1/templates", Some(body))
            .await
    }

    pub async fn set_node_mode(&self, name: &str, mode: &str) -> Result<NodeStatus, ClientError> {
        let body = serde_json::to_value(NodeModeRequest {
            mode: mode.to_string(),
        })
        .expect("serializes");
        self.call(
            Method::POST,
            &format!("/api/v1/nodes/{}/mode", encode(name)),
            Some(body),
        )
        .await
    }

    pub async fn explain(&self, resource: &str) -> Result<Explanation, ClientError> {
        self.call(
            Method::GET,
            &format!("/api/v1/explain/{}", encode(resource)),
            None,
        )
        .await
    }

    /// Migrates with the move's constraint expiring after `lifetime_s`.
    pub async fn migrate_vm_for(
        &self,
        name: &str,
        to: Option<&str>,
        lifetime_s: u64,
    ) -> Result<MigrationResult, ClientError> {
        let request = MigrateRequest {
            to: to.map(str::to_string),
            bandwidth_mib_per_second: None,
            lifetime_s: Some(lifetime_s),
        };
        let body = serde_json::to_value(request).expect("serializes");
        self.call(
            Method::POST,
            &format!("/api/v1/vms/{}/migrate", encode(name)),
            Some(body),
        )
        .await
    }

    pub async fn constraints(&self) -> Result<Vec<ConstraintInfo>, ClientError> {
        self.call(Method::GET, "/api/v1/constraints", None).await
    }

    pub async fn add_constraint(
        &self,
        constraint: &ConstraintInfo,
    ) -> Result<ConstraintInfo, ClientError> {
        let body = serde_json::to_value(constraint).expect("serializes");
        self.call(Method::POST, "/api/v1/constraints", Some(body))
            .await
    }

    pub async fn remove_constraint(&self, id: &str) -> Result<serde_json::Value, ClientError> {
        self.call(
            Method::DELETE,
            &format!("/api/v1/constraints/{}", encode(id)),
            None,
        )
        .await
    }

    pub async fn set_meta(
        &self,
        name: &str,
        values: std::collections::BTreeMap<String, Option<String>>,
    ) -> Result<ResourceInfo, ClientError> {
        let body =
            serde_json::to_value(hafen_api_types::MetaRequest { values }).expect("serializes");
        self.call(
            Method::POST,
            &format!("/api/v1/resources/{}/meta", encode(name)),
            Some(body),
        )
        .await
    }

    pub async fn groups(&self) -> Result<Vec<hafen_api_types::GroupInfo>, ClientError> {
        self.call(Method::GET, "/api/v1/groups", None).await
    }

    pub async fn set_group(
        &self,
        group: &hafen_api_types::GroupInfo,
    ) -> Result<hafen_api_types::GroupInfo, ClientError> {
        let body = serde_json::to_value(group).expect("serializes");
        self.call(Method::POST, "/api/v1/groups", Some(body)).await
    }

    pub async fn remove_group(&self, name: &str) -> Result<serde_json::Value, ClientError> {
        self.call(
            Method::DELETE,
            &format!("/api/v1/groups/{}", encode(name)),
            None,
        )
        .await
    }

    pub async fn cleanup_resource(&self, name: &str) -> Result<ResourceInfo, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/v1/resources/{}/cleanup", encode(name)),
            None,
        )
        .await
    }

    pub async fn resources(&self) -> Result<Vec<ResourceInfo>, ClientError> {
        self.call(Method::GET, "/api/v1/resources", None).await
    }

    pub async fn resource(&self, name: &str) -> Result<ResourceInfo, ClientError> {
        self.call(
            Method::GET,
            &format!("/api/v1/resources/{}", encode(name)),
            None,
        )
        .await
    }

    pub async fn add_resource(
        &self,
        request: &ResourceAddRequest,
    ) -> Result<ResourceInfo, ClientError> {
        let body = serde_json::to_value(request).expect("serializes");
        self.call(Method::POST, "/api/v1/resources", Some(body))
            .await
    }

    /// `start` or `stop`.
    pub async fn resource_action(
        &self,
        name: &str,
        action: &str,
    ) -> Result<ResourceInfo, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/v1/resources/{}/{action}", encode(name)),
            None,
        )
        .await
    }

    pub async fn delete_resource(&self, name: &str) -> Result<ResourceInfo, ClientError> {
        self.call(
            Method::DELETE,
            &format!("/api/v1/resources/{}", encode(name)),
            None,
        )
        .await
    }

    pub async fn agents(&self) -> Result<Vec<String>, ClientError> {
        self.call(Method::GET, "/api/v1/agents", None).await
    }

    pub async fn agent_info(&self, agent: &str) -> Result<serde_json::Value, ClientError> {
        self.call(
            Method::GET,
            &format!("/api/v1/agents/{}", encode(agent)),
            None,
        )
        .await
    }

    pub async fn add_fence_device(
        &self,
        device: &serde_json::Value,
    ) -> Result<serde_json::Value, ClientError> {
        self.call(Method::POST, "/api/v1/fence-devices", Some(device.clone()))
            .await
    }

    pub async fn fence_devices(&self) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, "/api/v1/fence-devices", None).await
    }

    pub async fn test_fence_device(
        &self,
        device: &str,
        node: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let body = serde_json::json!({ "node": node });
        self.call(
            Method::POST,
            &format!("/api/v1/fence-devices/{}/test", encode(device)),
            Some(body),
        )
        .await
    }

    pub async fn fence_node(&self, name: &str) -> Result<NodeStatus, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/v1/nodes/{}/fence", encode(name)),
            None,
        )
        .await
    }

    pub async fn confirm_fenced(&self, name: &str) -> Result<NodeStatus, ClientError> {
        self.call(
            Method::POST,
            &format!("/api/v1/nodes/{}/confirm-fenced", encode(name)),
            None,
        )
        .await
    }

    /// The raw OpenAPI document.
    pub async fn openapi(&self) -> Result<serde_json::Value, ClientError> {
        self.call(Method::GET, "/api/openapi.json", None).await
    }
}

enum Attempt {
    Unreachable(String),
    Unavailable(String),
    Final(ClientError),
}

mod rustls_config {
    pub use rustls::ClientConfig;
}

fn normalize(server: &str) -> Result<String, ClientError> {
    let server = server.trim().trim_end_matches('/');
    if server.is_empty() {
        return Err(ClientError::Setup("empty server address".to_string()));
    }
    if let Some(rest) = server.strip_prefix("http://") {
        return Err(ClientError::Setup(format!(
            "server {server} uses http://; hafen only speaks https (try https://{rest})"
        )));
    }
    if server.starts_with("https://") {
        Ok(server.to_string())
    } else {
        Ok(format!("https://{server}"))
    }
}

fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|byte| match byte {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => {
                (byte as char).to_string()
            }
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// A fresh random identifier: `bytes` random bytes, hex.
pub fn random_hex(bytes: usize) -> String {
    use rand::RngCore;
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}
