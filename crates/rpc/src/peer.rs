//! The mutual-TLS HTTP client a node uses to reach its peers.

use crate::tls::{Identity, TlsError};
use std::time::Duration;

/// Why a peer request failed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("peer {address} unreachable: {detail}")]
    Unreachable { address: String, detail: String },
    #[error("peer {address} timed out after {timeout_ms} ms")]
    Timeout { address: String, timeout_ms: u64 },
    #[error("peer {address} answered {status}: {body}")]
    Status {
        address: String,
        status: u16,
        body: String,
    },
}

/// An HTTPS client that trusts the cluster CA and presents this node's certificate.
#[derive(Debug, Clone)]
pub struct PeerClient {
    http: reqwest::Client,
}

impl PeerClient {
    pub fn new(identity: &Identity) -> Result<Self, TlsError> {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(identity.client_config()?)
            .connect_timeout(Duration::from_millis(500))
            .pool_idle_timeout(Duration::from_secs(30))
            .tcp_nodelay(true)
            .build()
            .map_err(|error| TlsError::Config(error.to_string()))?;
        Ok(Self { http })
    }

    /// The underlying client, for forwarding whole API requests.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// POSTs `body` (JSON) to `https://{address}{path}` and returns the response body of a 2xx answer.
    pub async fn post(
        &self,
        address: &str,
        path: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, PeerError> {
        let url = format!("https://{address}{path}");
        let response = self
            .http
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|error| classify(address, timeout, error))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| classify(address, timeout, error))?;
        if !status.is_success() {
            return Err(PeerError::Status {
                address: address.to_string(),
                status: status.as_u16(),
                body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
            });
        }
        Ok(bytes.to_vec())
    }
}

fn classify(address: &str, timeout: Duration, error: reqwest::Error) -> PeerError {
    if error.is_timeout() {
        PeerError::Timeout {
            address: address.to_string(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        }
    } else {
        PeerError::Unreachable {
            address: address.to_string(),
            detail: error_chain(&error),
        }
    }
}

/// The error with its causes, because reqwest's top-level message hides the TLS or socket reason.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
