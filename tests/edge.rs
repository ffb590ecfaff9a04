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
