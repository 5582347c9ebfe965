//! TLS for the Postgres wire server: a rustls acceptor (ring provider) from PEM files.
//!
//! Clients ask for TLS with an SSLRequest (`sslmode=require` and up) or, from PostgreSQL 17,
//! start TLS directly (`sslnegotiation=direct`), which needs the ALPN protocol `postgresql`.

use std::path::Path;
use std::sync::Arc;

use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::TlsConfig;

/// The ALPN protocol name PostgreSQL 17 clients send for direct TLS.
const ALPN_POSTGRESQL: &[u8] = b"postgresql";

/// A loaded certificate and key, ready to accept TLS connections.
pub struct Tls {
    /// The acceptor handed to pgwire's `process_socket`.
    pub acceptor: TlsAcceptor,
    /// The certificate file's PEM text: SCRAM channel binding (`tls-server-end-point`) hashes
    /// the server certificate.
    pub cert_pem: Vec<u8>,
}

impl Tls {
    /// Reads and checks the certificate chain and private key of `config`.
    pub fn load(config: &TlsConfig) -> Result<Tls, String> {
        let cert_pem = std::fs::read(&config.cert)
            .map_err(|e| format!("cannot read TLS certificate {}: {e}", config.cert.display()))?;
        let certs = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| pem_error(&config.cert, "certificate", e))?;
        if certs.is_empty() {
            return Err(format!(
                "TLS certificate file {} holds no PEM certificate",
                config.cert.display()
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&config.key)
            .map_err(|e| pem_error(&config.key, "private key", e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| {
                format!(
                    "TLS certificate {} and key {} do not work together: {e}",
                    config.cert.display(),
                    config.key.display()
                )
            })?;
        server.alpn_protocols = vec![ALPN_POSTGRESQL.to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            cert_pem,
        })
    }
}

fn pem_error(path: &Path, what: &str, err: rustls::pki_types::pem::Error) -> String {
    format!("cannot read TLS {what} from {}: {err}", path.display())
}
