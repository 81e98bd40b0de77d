//! Node-to-node transport: the cluster CA and certificates, mutual-TLS HTTP clients, and openraft's network over them.

pub mod network;
pub mod peer;
pub mod tls;

pub use network::Network;
pub use peer::{PeerClient, PeerError};
pub use tls::{Identity, TlsError};
