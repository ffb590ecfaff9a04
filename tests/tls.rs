//! TLS listeners: HTTP/1.1 and HTTP/2 through ALPN, mutual TLS accept and reject, and
//! certificates replaced on SIGHUP. Certificates are made at test time with rcgen.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::GatewayBuilder;
use http_body_util::BodyExt;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

struct Pki {
    dir: PathBuf,
    ca_pem: String,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

impl Pki {
    fn new(name: &str) -> Self {
        let dir = common::scratch_dir(name);
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Test CA");
        let ca_key = KeyPair::generate().unwrap();
        let ca = params.clone().self_signed(&ca_key).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir,
            ca_pem: ca.pem(),
            ca_params: params,
            ca_key,
        }
    }

    /// A certificate for `names` signed by the CA, written as `stem.pem`/`stem.key`.
    fn issue(&self, stem: &str, names: &[&str], common_name: &str) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Example");
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (cert_path, key_path) = (
            self.dir.join(format!("{stem}.pem")),
            self.dir.join(format!("{stem}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    fn client_config(
        &self,
        alpn: &[&[u8]],
        client: Option<(&Path, &Path)>,
    ) -> rustls::ClientConfig {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match client {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_file_iter(cert)
                        .unwrap()
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_file(key).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        config
    }
}

fn tls_gateway(pki: &Pki, extra: &str) -> common::Gateway {
    let (cert, key) = pki.issue("server", &["localhost"], "localhost");
    GatewayBuilder::new()
        .config(&format!(
            "[server.tls]\nbind = [\"127.0.0.1:0\"]\ncert = \"{}\"\nkey = \"{}\"\n{extra}",
            cert.display(),
            key.display()
        ))
        .start()
}

fn https_port(gateway: &common::Gateway) -> u16 {
    let logs = gateway.wait_for_log("listening on https://");
    let at = logs.find("listening on https://").unwrap();
    let rest = &logs[at + "listening on https://".len()..];
    let addr: std::net::SocketAddr = rest.split_whitespace().next().unwrap().parse().unwrap();
    addr.port()
}

async fn connect(
    port: u16,
    config: rustls::ClientConfig,
) -> std::io::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

async fn get(
    stream: tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    path: &str,
) -> Result<(http::Version, serde_json::Value), hyper::Error> {
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = hyper_util::rt::TokioIo::new(stream);
    let request = http::Request::builder()
        .uri(format!("https://localhost{path}"))
        .header("host", "localhost")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let response = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await?;
        tokio::spawn(connection);
        sender.send_request(request).await?
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(connection);
        sender.send_request(request).await?
    };
    let version = response.version();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((version, serde_json::from_slice(&body).unwrap()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_alpn_h2_and_http1() {
    let pki = Pki::new("tls-alpn");
    let gateway = tls_gateway(&pki, "");
    let port = https_port(&gateway);

    let stream = connect(port, pki.client_config(&[b"h2", b"http/1.1"], None))
        .await
        .unwrap();
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (version, env) = get(stream, "/environ").await.unwrap();
    assert_eq!(version, http::Version::HTTP_2);
    assert_eq!(env["wsgi.url_scheme"], "https");
    assert_eq!(env["HTTPS"], "on");
    assert_eq!(env["SERVER_PROTOCOL"], "HTTP/2");

    let stream = connect(port, pki.client_config(&[b"http/1.1"], None))
        .await
        .unwrap();
    let (version, env) = get(stream, "/environ").await.unwrap();
    assert_eq!(version, http::Version::HTTP_11);
    assert_eq!(env["wsgi.url_scheme"], "https");
    assert_eq!(
        env["SERVER_PORT"],
        port.to_string(),
        "Host has no port: the port the request arrived on"
    );
    // The plain listener is still plain.
    assert_eq!(gateway.get_json("/environ")["wsgi.url_scheme"], "http");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_accepts_known_clients_and_rejects_others() {
    let pki = Pki::new("tls-mtls");
    let gateway = tls_gateway(
        &pki,
        &format!("client_ca = \"{}\"\n", pki.dir.join("ca.pem").display()),
    );
    let port = https_port(&gateway);
    let (client_cert, client_key) = pki.issue("alice", &[], "alice");

    let stream = connect(
        port,
        pki.client_config(&[b"http/1.1"], Some((&client_cert, &client_key))),
    )
    .await
    .unwrap();
    let (_, env) = get(stream, "/environ").await.unwrap();
    assert_eq!(env["SSL_CLIENT_VERIFY"], "SUCCESS");
    let subject = env["SSL_CLIENT_S_DN"].as_str().unwrap();
    assert!(
        subject.contains("CN=alice") && subject.contains("O=Example"),
        "{subject}"
    );

    // Without a client certificate the handshake (or the first request) fails.
    let refused = match connect(port, pki.client_config(&[b"http/1.1"], None)).await {
        Err(_) => true,
        Ok(stream) => get(stream, "/environ").await.is_err(),
    };
    assert!(refused, "a client without a certificate must be refused");
    // A certificate from another CA is refused too.
    let stranger = Pki::new("tls-stranger");
    let (cert, key) = stranger.issue("mallory", &[], "mallory");
    let refused = match connect(port, pki.client_config(&[b"http/1.1"], Some((&cert, &key)))).await
    {
        Err(_) => true,
        Ok(stream) => get(stream, "/environ").await.is_err(),
    };
    assert!(refused, "a certificate from an unknown CA must be refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_loads_a_renewed_certificate() {
    let pki = Pki::new("tls-renew");
    let gateway = tls_gateway(&pki, "");
    let port = https_port(&gateway);
    let first = connect(port, pki.client_config(&[b"http/1.1"], None))
        .await
        .unwrap();
    let serial = |s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>| {
        s.get_ref().1.peer_certificates().unwrap()[0]
            .as_ref()
            .to_vec()
    };
    let before = serial(&first);
    pki.issue("server", &["localhost"], "localhost");
    gateway.signal(libc::SIGHUP);
    // Until the old worker has seen its SIGTERM it may still accept a connection (and
    // serve it with the old certificate): wait until it is gone.
    gateway.wait_for_log("worker exited after draining");
    let second = connect(port, pki.client_config(&[b"http/1.1"], None))
        .await
        .unwrap();
    assert_ne!(serial(&second), before, "the renewed certificate is served");
}

#[test]
fn tls_errors_name_the_key_and_the_file() {
    let output = GatewayBuilder::new()
        .config("[server.tls]\nbind = [\"127.0.0.1:0\"]\ncert = \"/nonexistent/cert.pem\"\nkey = \"/nonexistent/key.pem\"\n")
        .run();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stderr.contains("server.tls"), "{}", output.stderr);
    assert!(
        output.stderr.contains("/nonexistent/cert.pem"),
        "{}",
        output.stderr
    );
}
