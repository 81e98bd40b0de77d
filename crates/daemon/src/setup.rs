//! `cluster init` and `cluster join`: give a fresh data directory its identity and certificates.

use crate::config::NodeConfig;
use crate::datadir::{DataDir, DataDirError, NODE_FILE_VERSION, NodeIdentity};
use hafen_api_types::{JoinRequest, JoinToken};
use hafen_client::{Client, ClientError, Credentials};
use hafen_model::command::NewNode;
use hafen_model::{Command, Envelope, NodeRole};
use hafen_rpc::tls::{self, Identity, TlsError};

/// Why init or join failed; nothing was written to the data directory.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("{0}")]
    Token(String),
    #[error(
        "the server at {server} is not the cluster this token belongs to (its CA fingerprint is {found}, the token expects {expected})"
    )]
    WrongCluster {
        server: String,
        found: String,
        expected: String,
    },
    #[error("join refused: {0}")]
    Refused(String),
    #[error("{0}")]
    Client(#[from] ClientError),
}

/// What `cluster init` hands the operator.
#[derive(Debug)]
pub struct InitOutcome {
    pub credentials: Credentials,
    pub node_id: u64,
}

/// Creates a new cluster's CA, this node's certificate and the admin credential.
///
/// The first command (bootstrap) is stored in the data directory and committed by the
/// daemon on its first start, so init works without a running daemon.
pub fn init_cluster(config: &NodeConfig, cluster_name: &str) -> Result<InitOutcome, SetupError> {
    let data_dir = DataDir::new(&config.data_dir);
    data_dir.ensure_fresh()?;
    let role: NodeRole = config.role.parse().map_err(SetupError::Token)?;
    let advertise = config.advertise_address();
    let ca = tls::generate_ca(cluster_name)?;
    let (key_pem, request_pem) = tls::node_key_and_request(&config.node_name)?;
    let cert_pem = tls::sign_node_request(&ca, &request_pem, &config.node_name, advertise.ip())?;
    let admin_token = format!("hafen-admin.{}", hafen_client::random_hex(24));
    let bootstrap = Envelope {
        request_id: format!("bootstrap-{}", hafen_client::random_hex(8)),
        now_ms: 0,
        command: Command::Bootstrap {
            cluster_name: cluster_name.to_string(),
            ca_cert_pem: ca.cert_pem.clone(),
            ca_key_pem: ca.key_pem.clone(),
            node: NewNode {
                name: config.node_name.clone(),
                address: advertise.to_string(),
                role,
            },
            admin_token_sha256: hafen_api::sha256_hex(&admin_token),
        },
    };
    Identity {
        ca_pem: ca.cert_pem.clone(),
        cert_pem,
        key_pem,
    }
    .save(&data_dir.tls_dir())?;
    data_dir.save_bootstrap(&bootstrap)?;
    // The node file last: its presence marks the directory as initialized.
    data_dir.save_identity(&NodeIdentity {
        version: NODE_FILE_VERSION,
        node_id: 1,
        name: config.node_name.clone(),
        cluster_name: cluster_name.to_string(),
    })?;
    Ok(InitOutcome {
        credentials: Credentials {
            servers: vec![format!("https://{advertise}")],
            token: admin_token,
            ca_pem: ca.cert_pem,
        },
        node_id: 1,
    })
}

/// What `cluster join` reports.
#[derive(Debug)]
pub struct JoinOutcome {
    pub node_id: u64,
    pub cluster_name: String,
}

/// Joins the cluster at `server` with a one-time token: pins the CA, obtains a signed certificate.
pub async fn join_cluster(
    config: &NodeConfig,
    server: &str,
    token: &str,
) -> Result<JoinOutcome, SetupError> {
    let data_dir = DataDir::new(&config.data_dir);
    data_dir.ensure_fresh()?;
    let token: JoinToken = token.parse().map_err(SetupError::Token)?;
    let server = if server.starts_with("https://") {
        server.to_string()
    } else {
        format!("https://{server}")
    };
    let anonymous =
        Client::unverified(server.clone())?.with_deadline(std::time::Duration::from_secs(10));
    let ca_pem = anonymous.cluster_ca().await?.ca_pem;
    let found = tls::fingerprint(&ca_pem)?;
    if found != token.ca_fingerprint {
        return Err(SetupError::WrongCluster {
            server,
            found,
            expected: token.ca_fingerprint,
        });
    }
    let (key_pem, request_pem) = tls::node_key_and_request(&config.node_name)?;
    let client =
        Client::new(vec![server], &ca_pem, None)?.with_deadline(std::time::Duration::from_secs(15));
    let response = client
        .join(&JoinRequest {
            token_id: token.id,
            secret: token.secret,
            name: config.node_name.clone(),
            address: config.advertise_address().to_string(),
            role: config.role.clone(),
            csr_pem: request_pem,
        })
        .await
        .map_err(|error| match error {
            ClientError::Api { message, .. } => SetupError::Refused(message),
            other => SetupError::Client(other),
        })?;
    Identity {
        ca_pem,
        cert_pem: response.cert_pem,
        key_pem,
    }
    .save(&data_dir.tls_dir())?;
    data_dir.save_identity(&NodeIdentity {
        version: NODE_FILE_VERSION,
        node_id: response.node_id,
        name: config.node_name.clone(),
        cluster_name: response.cluster_name.clone(),
    })?;
    Ok(JoinOutcome {
        node_id: response.node_id,
        cluster_name: response.cluster_name,
    })
}
