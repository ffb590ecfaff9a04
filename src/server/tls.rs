//! TLS listeners (rustls): certificate chain and key from PEM files, ALPN `h2` and
//! `http/1.1`, and optional mutual TLS against a client CA.
//!
//! Certificates are read when a worker starts, so `SIGHUP` (a rolling restart of the
//! workers) picks up renewed certificates without dropping a connection.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or holds nothing usable.
    #[error("server.tls.{key}: {path}: {message}")]
    File {
        /// The key under `server.tls` (`cert`, `key`, `client_ca`).
        key: &'static str,
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// rustls refused the certificate, key or CA.
    #[error("server.tls: {0}")]
    Rustls(String),
}

fn certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |message: String| TlsError::File {
        key,
        path: path.display().to_string(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// Build the acceptor from the configured files.
pub fn acceptor(config: &TlsConfig, http2: bool) -> Result<TlsAcceptor, TlsError> {
    let cert_path = config.cert.relative();
    let key_path = config.key.relative();
    let chain = certificates("cert", &cert_path)?;
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsError::File {
        key: "key",
        path: key_path.display().to_string(),
        message: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let builder = match &config.client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in certificates("client_ca", &ca.relative())? {
                roots
                    .add(cert)
                    .map_err(|e| TlsError::Rustls(format!("client_ca: {e}")))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::Rustls(format!("client_ca: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Rustls(format!("cert/key: {e}")))?;
    server.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(TlsAcceptor::from(Arc::new(server)))
}

/// The session facts of an established connection.
pub fn session<IO>(stream: &tokio_rustls::server::TlsStream<IO>) -> crate::types::TlsSession {
    let (_, connection) = stream.get_ref();
    let client_subject = connection
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| x509_parser::parse_x509_certificate(leaf.as_ref()).ok())
        .map(|(_, cert)| cert.subject().to_string());
    crate::types::TlsSession { client_subject }
}
