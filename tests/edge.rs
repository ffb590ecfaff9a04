//! The edge: proxy trust (forwarded headers from trusted peers only) and unix sockets.

mod common;

use common::GatewayBuilder;

const FORWARDED: &[(&str, &str)] = &[
    ("X-Forwarded-For", "198.51.100.7, 127.0.0.1"),
    ("X-Forwarded-Proto", "https"),
    ("X-Forwarded-Host", "shop.example"),
];

#[test]
fn forwarded_headers_from_a_trusted_peer_set_client_scheme_and_host() {
    // Loopback is trusted by default: the test client plays the proxy.
    let gateway = GatewayBuilder::new().start();
    let env = gateway.request("GET", "/environ", FORWARDED, b"").json();
    assert_eq!(env["REMOTE_ADDR"], "198.51.100.7");
    assert_eq!(env["wsgi.url_scheme"], "https");
    assert_eq!(env["HTTP_HOST"], "shop.example");
    assert_eq!(env["SERVER_NAME"], "shop.example");
    assert_eq!(env["SERVER_PORT"], "443");

    let env = gateway
        .request(
            "GET",
            "/environ",
            &[(
                "Forwarded",
                "for=\"[2001:db8::17]:4711\";proto=https;host=rfc.example",
            )],
            b"",
        )
        .json();
    assert_eq!(env["REMOTE_ADDR"], "2001:db8::17");
    assert_eq!(env["REMOTE_PORT"], "4711");
    assert_eq!(env["wsgi.url_scheme"], "https");
    assert_eq!(env["HTTP_HOST"], "rfc.example");
}

#[test]
fn forwarded_headers_from_an_untrusted_peer_are_passed_through_untouched() {
    let gateway = GatewayBuilder::new()
        .config("[server]\nforwarded_allow_ips = [\"10.0.0.0/8\"]\n")
        .start();
    let env = gateway.request("GET", "/environ", FORWARDED, b"").json();
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert_eq!(env["wsgi.url_scheme"], "http");
    assert_eq!(env["HTTP_HOST"], "test.local");
    assert_eq!(env["HTTP_X_FORWARDED_FOR"], "198.51.100.7, 127.0.0.1");
    assert_eq!(env["HTTP_X_FORWARDED_PROTO"], "https");
}

#[test]
fn a_bad_forwarded_allow_ips_entry_is_named() {
    let output = GatewayBuilder::new()
        .config("[server]\nforwarded_allow_ips = [\"10.0.0.0/40\"]\n")
        .run();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        output.stderr.contains("server.forwarded_allow_ips"),
        "{}",
        output.stderr
    );
}

#[test]
fn serves_on_a_unix_socket_with_its_permissions() {
    use std::io::{BufReader, Write};
    use std::os::unix::fs::PermissionsExt;
    let dir = common::scratch_dir("unix");
    let socket = dir.join("gateway.sock");
    let mut gateway = GatewayBuilder::new()
        .arg(&format!("--bind=unix:{}", socket.display()))
        .config("[server]\nunix_socket_mode = \"600\"\n")
        .start();
    gateway.wait_for_log(&format!("listening on unix:{}", socket.display()));
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    stream.set_read_timeout(Some(common::WAIT)).unwrap();
    stream
        .write_all(b"GET /environ HTTP/1.1\r\nHost: app.local\r\nX-Forwarded-For: 203.0.113.5\r\nConnection: close\r\n\r\n")
        .unwrap();
    let env = common::read_response(&mut BufReader::new(stream), false)
        .unwrap()
        .json();
    assert_eq!(env["HTTP_HOST"], "app.local");
    assert_eq!(env["SERVER_NAME"], "app.local");
    // A local proxy on the unix socket is trusted like loopback.
    assert_eq!(env["REMOTE_ADDR"], "203.0.113.5");
    gateway.signal(libc::SIGTERM);
    assert!(gateway.wait_exit().success());
    assert!(!socket.exists(), "the socket file is removed on exit");
}

/// REMOTE_ADDR seen by the app for a request over a unix socket with X-Forwarded-For,
/// under `forwarded_allow_ips`.
fn remote_addr_over_unix(allow: &str) -> String {
    use std::io::{BufReader, Write};
    let dir = common::scratch_dir("unix-trust");
    let socket = dir.join("gateway.sock");
    let gateway = GatewayBuilder::new()
        .arg(&format!("--bind=unix:{}", socket.display()))
        .config(&format!("[server]\nforwarded_allow_ips = {allow}\n"))
        .start();
    gateway.wait_for_log(&format!("listening on unix:{}", socket.display()));
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).unwrap();
    stream.set_read_timeout(Some(common::WAIT)).unwrap();
    stream
        .write_all(b"GET /environ HTTP/1.1\r\nHost: app.local\r\nX-Forwarded-For: 203.0.113.5\r\nConnection: close\r\n\r\n")
        .unwrap();
    let env = common::read_response(&mut BufReader::new(stream), false)
        .unwrap()
        .json();
    env["REMOTE_ADDR"].as_str().unwrap_or("").to_owned()
}

#[test]
fn unix_socket_peers_are_trusted_when_the_list_says_unix_or_loopback() {
    assert_eq!(remote_addr_over_unix(r#"["unix"]"#), "203.0.113.5");
    assert_eq!(remote_addr_over_unix(r#"["127.0.0.1"]"#), "203.0.113.5");
    // A list naming only remote proxies does not trust local peers.
    assert_ne!(remote_addr_over_unix(r#"["10.0.0.0/8"]"#), "203.0.113.5");
}

#[test]
fn proxy_protocol_v1_and_v2_set_the_client_address() {
    use std::io::{BufReader, Write};
    let gateway = GatewayBuilder::new()
        .config("[server]\nproxy_protocol = true\n")
        .start();
    let request = b"GET /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    let mut stream = gateway.connect();
    stream
        .write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\n")
        .unwrap();
    stream.write_all(request).unwrap();
    let env = common::read_response(&mut BufReader::new(stream), false)
        .unwrap()
        .json();
    assert_eq!(env["REMOTE_ADDR"], "203.0.113.9");
    assert_eq!(env["REMOTE_PORT"], "5555");

    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend_from_slice(&[
        0x21, 0x11, 0, 12, 198, 51, 100, 7, 127, 0, 0, 1, 0x1f, 0x90, 0, 80,
    ]);
    let mut stream = gateway.connect();
    stream.write_all(&v2).unwrap();
    stream.write_all(request).unwrap();
    let env = common::read_response(&mut BufReader::new(stream), false)
        .unwrap()
        .json();
    assert_eq!(env["REMOTE_ADDR"], "198.51.100.7");
    assert_eq!(env["REMOTE_PORT"], "8080");

    // Without the header the connection is refused, and serving goes on.
    let raw = gateway.raw(request);
    assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));
    gateway.wait_for_log("invalid PROXY header");
}

#[test]
fn proxy_protocol_from_an_untrusted_peer_is_refused() {
    use std::io::Write;
    let gateway = GatewayBuilder::new()
        .config("[server]\nproxy_protocol = true\nforwarded_allow_ips = [\"10.0.0.0/8\"]\n")
        .start();
    let mut stream = gateway.connect();
    stream
        .write_all(b"PROXY TCP4 203.0.113.9 127.0.0.1 5555 80\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    assert!(common::read_to_close(&mut stream).is_empty());
    gateway.wait_for_log("PROXY protocol from a peer outside forwarded_allow_ips");
}
