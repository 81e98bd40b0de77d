//! The cluster's PKI: a CA made at `cluster init`, node certificates signed at join, and rustls configurations.
//!
//! Every node presents its certificate to peers (mutual TLS); the API listener accepts
//! clients without a certificate too, but internal endpoints require a verified one.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

/// Why a certificate operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("malformed certificate signing request: {0}")]
    BadRequest(String),
    #[error("malformed PEM in {what}: {detail}")]
    Pem { what: String, detail: String },
    #[error("tls configuration failed: {0}")]
    Config(String),
    #[error("cannot read {path}: {detail}")]
    Read { path: String, detail: String },
    #[error("cannot write {path}: {detail}")]
    Write { path: String, detail: String },
}

fn generate_error(error: rcgen::Error) -> TlsError {
    TlsError::Generate(error.to_string())
}

/// The cluster CA's certificate and private key, both PEM.
#[derive(Debug, Clone)]
pub struct CaMaterial {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Makes a new cluster CA, valid for 20 years.
pub fn generate_ca(cluster_name: &str) -> Result<CaMaterial, TlsError> {
    let key = KeyPair::generate().map_err(generate_error)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(generate_error)?;
    let mut name = DistinguishedName::new();
    name.push(
        DnType::CommonName,
        format!("hafen cluster CA {cluster_name}"),
    );
    name.push(DnType::OrganizationName, "hafen");
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2045, 1, 1);
    let cert = params.self_signed(&key).map_err(generate_error)?;
    Ok(CaMaterial {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A new node key and a signing request for it, both PEM.
pub fn node_key_and_request(node_name: &str) -> Result<(String, String), TlsError> {
    let key = KeyPair::generate().map_err(generate_error)?;
    let mut params = CertificateParams::new(vec![node_name.to_string()]).map_err(generate_error)?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, node_name);
    params.distinguished_name = name;
    let request = params.serialize_request(&key).map_err(generate_error)?;
    let request_pem = request.pem().map_err(generate_error)?;
    Ok((key.serialize_pem(), request_pem))
}

/// Signs a node's request with the CA. The names are ours, not the request's: the
/// certificate is valid for exactly the node's name and its advertised address.
pub fn sign_node_request(
    ca: &CaMaterial,
    request_pem: &str,
    node_name: &str,
    address: IpAddr,
) -> Result<String, TlsError> {
    let mut request = CertificateSigningRequestParams::from_pem(request_pem)
        .map_err(|error| TlsError::BadRequest(error.to_string()))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, node_name);
    request.params.distinguished_name = name;
    request.params.subject_alt_names = vec![
        SanType::DnsName(
            node_name
                .to_string()
                .try_into()
                .map_err(|error: rcgen::Error| TlsError::BadRequest(error.to_string()))?,
        ),
        SanType::IpAddress(address),
    ];
    request.params.is_ca = IsCa::ExplicitNoCa;
    request.params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    request.params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    request.params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    request.params.not_after = rcgen::date_time_ymd(2045, 1, 1);
    let (issuer, issuer_key) = load_issuer(ca)?;
    let cert = request
        .signed_by(&issuer, &issuer_key)
        .map_err(generate_error)?;
    Ok(cert.pem())
}

/// Checks that `request_pem` is a well-formed signing request, before a join is committed.
pub fn node_request_is_valid(request_pem: &str) -> Result<(), TlsError> {
    CertificateSigningRequestParams::from_pem(request_pem)
        .map(|_| ())
        .map_err(|error| TlsError::BadRequest(error.to_string()))
}

fn load_issuer(ca: &CaMaterial) -> Result<(rcgen::Certificate, KeyPair), TlsError> {
    let key = KeyPair::from_pem(&ca.key_pem).map_err(|error| TlsError::Pem {
        what: "the CA key".to_string(),
        detail: error.to_string(),
    })?;
    let params =
        CertificateParams::from_ca_cert_pem(&ca.cert_pem).map_err(|error| TlsError::Pem {
            what: "the CA certificate".to_string(),
            detail: error.to_string(),
        })?;
    // Re-signing the same subject with the same key yields an issuer that verifies identically.
    let cert = params.self_signed(&key).map_err(generate_error)?;
    Ok((cert, key))
}

/// SHA-256 of the first certificate in `pem`, lowercase hex: what join tokens pin.
pub fn fingerprint(pem: &str) -> Result<String, TlsError> {
    let certs = parse_certs(pem, "certificate")?;
    let first = certs.first().ok_or_else(|| TlsError::Pem {
        what: "certificate".to_string(),
        detail: "no certificate found".to_string(),
    })?;
    Ok(hex::encode(Sha256::digest(first.as_ref())))
}

fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            what: what.to_string(),
            detail: error.to_string(),
        })
}

fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|error| TlsError::Pem {
            what: "the node key".to_string(),
            detail: error.to_string(),
        })?
        .ok_or_else(|| TlsError::Pem {
            what: "the node key".to_string(),
            detail: "no private key found".to_string(),
        })
}

/// A node's TLS identity: the cluster CA and its own certificate and key.
#[derive(Debug, Clone)]
pub struct Identity {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub const CA_FILE: &str = "ca.pem";
pub const CERT_FILE: &str = "node.pem";
pub const KEY_FILE: &str = "node.key";

impl Identity {
    /// Reads the identity from `dir` (`ca.pem`, `node.pem`, `node.key`).
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let read = |name: &str| {
            let path = dir.join(name);
            std::fs::read_to_string(&path).map_err(|error| TlsError::Read {
                path: path.display().to_string(),
                detail: error.to_string(),
            })
        };
        let identity = Identity {
            ca_pem: read(CA_FILE)?,
            cert_pem: read(CERT_FILE)?,
            key_pem: read(KEY_FILE)?,
        };
        // Parse now so a damaged file is named at start-up, not at the first connection.
        identity.server_config()?;
        Ok(identity)
    }

    /// Writes the identity into `dir`; the key is readable by the owner only.
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::create_dir_all(dir).map_err(|error| TlsError::Write {
            path: dir.display().to_string(),
            detail: error.to_string(),
        })?;
        for (name, content, mode) in [
            (CA_FILE, &self.ca_pem, 0o644),
            (CERT_FILE, &self.cert_pem, 0o644),
            (KEY_FILE, &self.key_pem, 0o600),
        ] {
            let path = dir.join(name);
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(mode)
                    .open(&path)?;
                file.write_all(content.as_bytes())?;
                file.sync_all()
            };
            write().map_err(|error| TlsError::Write {
                path: path.display().to_string(),
                detail: error.to_string(),
            })?;
        }
        Ok(())
    }

    fn roots(&self) -> Result<rustls::RootCertStore, TlsError> {
        roots_from_pem(&self.ca_pem)
    }

    /// The listener's configuration: our certificate; client certificates optional but verified.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(self.roots()?),
            provider.clone(),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|error| TlsError::Config(error.to_string()))?;
        let mut chain = parse_certs(&self.cert_pem, "the node certificate")?;
        chain.extend(parse_certs(&self.ca_pem, "the CA certificate")?);
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Config(error.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, parse_key(&self.key_pem)?)
            .map_err(|error| TlsError::Config(error.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A client configuration that trusts the cluster CA and presents our certificate.
    pub fn client_config(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| TlsError::Config(error.to_string()))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(
                parse_certs(&self.cert_pem, "the node certificate")?,
                parse_key(&self.key_pem)?,
            )
            .map_err(|error| TlsError::Config(error.to_string()))
    }
}

fn roots_from_pem(ca_pem: &str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in parse_certs(ca_pem, "the CA certificate")? {
        roots
            .add(cert)
            .map_err(|error| TlsError::Config(error.to_string()))?;
    }
    Ok(roots)
}

/// A client configuration that trusts the cluster CA and presents no certificate (CLI, joiners).
pub fn anonymous_client_config(ca_pem: &str) -> Result<rustls::ClientConfig, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::Config(error.to_string()))?
        .with_root_certificates(roots_from_pem(ca_pem)?)
        .with_no_client_auth())
}

/// A client configuration that accepts any server certificate.
///
/// Used only to download the cluster CA before joining; the downloaded CA is then
/// checked against the fingerprint pinned in the join token, and nothing secret is
/// sent over this connection.
pub fn unverified_client_config() -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)))
        .with_no_client_auth()
}

#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_node_certificate_builds_server_and_client_configs() {
        let ca = generate_ca("test").unwrap();
        let (key_pem, request_pem) = node_key_and_request("alpha").unwrap();
        let cert_pem =
            sign_node_request(&ca, &request_pem, "alpha", "127.0.0.1".parse().unwrap()).unwrap();
        let identity = Identity {
            ca_pem: ca.cert_pem.clone(),
            cert_pem,
            key_pem,
        };
        identity.server_config().unwrap();
        identity.client_config().unwrap();
        assert_eq!(fingerprint(&ca.cert_pem).unwrap().len(), 64);
        assert!(sign_node_request(&ca, "garbage", "alpha", "127.0.0.1".parse().unwrap()).is_err());
    }
}
