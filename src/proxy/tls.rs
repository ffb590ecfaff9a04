//! TLS to `https` upstreams (rustls): the system's roots or a `ca` file, SNI, an
//! optional client certificate, and ALPN (`h2` only when `http2` is on).

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::ProxyError;
use crate::config::UpstreamTls;

/// The client configurations of one upstream: one that offers `h2` (when enabled) and
/// one that speaks HTTP/1.1 only, for upgrades.
#[derive(Clone)]
pub(crate) struct TlsClient {
    /// ALPN as configured.
    pub(crate) default: Arc<rustls::ClientConfig>,
    /// ALPN `http/1.1` only.
    pub(crate) http1: Arc<rustls::ClientConfig>,
    /// SNI override (`tls.server_name`).
    pub(crate) server_name: Option<String>,
}

fn certificates(key: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, ProxyError> {
    let fail = |message: String| ProxyError::Tls(format!("{key}: {}: {message}", path.display()));
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// Build the client configurations: files are read now.
pub(crate) fn client(settings: &UpstreamTls, http2: bool) -> Result<TlsClient, ProxyError> {
    let mut roots = rustls::RootCertStore::empty();
    match &settings.ca {
        Some(ca) => {
            for cert in certificates("tls.ca", &ca.relative())? {
                roots
                    .add(cert)
                    .map_err(|e| ProxyError::Tls(format!("tls.ca: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(ProxyError::Tls(
                    "no system CA certificates found: set tls.ca".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxyError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let config = match (&settings.cert, &settings.key) {
        (Some(cert), Some(key)) => {
            let chain = certificates("tls.cert", &cert.relative())?;
            let key_path = key.relative();
            let key = PrivateKeyDer::from_pem_file(&key_path)
                .map_err(|e| ProxyError::Tls(format!("tls.key: {}: {e}", key_path.display())))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| ProxyError::Tls(format!("tls.cert/tls.key: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    let mut http1 = config.clone();
    http1.alpn_protocols = vec![b"http/1.1".to_vec()];
    let mut default = config;
    default.alpn_protocols = if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    };
    Ok(TlsClient {
        default: Arc::new(default),
        http1: Arc::new(http1),
        server_name: settings.server_name.clone(),
    })
}
