//! The reverse proxy against real upstreams the tests start: the small server in
//! `common/upstream.rs` (echo, stall, reset, malformed, hop-by-hop, WebSocket) and
//! nginx from Debian (plain, TLS with a test CA and client certificates, HTTP/2).

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{eventually, read_response, scratch_dir, Gateway, GatewayBuilder, Response};
use upstream::Upstream;

/// A gateway with only `config` (no app): every request goes through a route.
fn gateway(config: &str) -> Gateway {
    GatewayBuilder::new().no_app_flag().config(config).start()
}

/// A port nobody listens on (bound, then released).
fn refused_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

fn upstream_json(response: &Response) -> serde_json::Value {
    assert_eq!(response.status, 200, "{response:?}");
    response.json()
}

fn header<'a>(echo: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    echo["headers"][name][0].as_str()
}

#[test]
fn proxies_through_a_pool_with_forwarding_headers_and_a_stripped_prefix() {
    let api = Upstream::start("api");
    // The client (127.0.0.1) is no trusted proxy here: what it claims is replaced.
    let gateway = gateway(&format!(
        r#"
[server]
forwarded_allow_ips = "192.0.2.1"
[upstream.api]
servers = ["{}"]
strip_prefix = "/api"
[[route]]
path = "/api"
proxy = "api"
"#,
        api.addr
    ));
    for round in 0..5 {
        let response = gateway.request(
            "GET",
            &format!("/api/users?round={round}"),
            &[("X-Forwarded-For", "6.6.6.6"), ("Forwarded", "for=6.6.6.6")],
            b"",
        );
        let echo = upstream_json(&response);
        assert_eq!(echo["target"], format!("/users?round={round}"));
        assert_eq!(
            header(&echo, "host"),
            Some("test.local"),
            "the client's Host"
        );
        assert_eq!(
            header(&echo, "x-forwarded-for"),
            Some("127.0.0.1"),
            "replaced, not appended"
        );
        assert_eq!(header(&echo, "x-forwarded-proto"), Some("http"));
        assert_eq!(header(&echo, "x-forwarded-host"), Some("test.local"));
        assert_eq!(header(&echo, "x-forwarded-prefix"), Some("/api"));
        assert!(echo["headers"].get("forwarded").is_none());
    }
    assert_eq!(
        api.connections.load(Ordering::Relaxed),
        1,
        "five requests over one pooled connection"
    );
    let body = vec![b'x'; 200_000];
    let echo = upstream_json(&gateway.request("POST", "/api/upload", &[], &body));
    assert_eq!(echo["body_len"], 200_000);
    assert_eq!(
        gateway.get("/elsewhere").status,
        404,
        "no route, no default app"
    );
}

#[test]
fn hop_by_hop_fields_are_removed_both_ways() {
    let api = Upstream::start("api");
    let gateway = gateway(&format!(
        "[[route]]\npath = \"/\"\nproxy = \"http://{}\"\n",
        api.addr
    ));
    let response = gateway.request(
        "GET",
        "/echo",
        &[
            ("Connection", "X-Secret, keep-alive"),
            ("X-Secret", "do not forward"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
            ("TE", "gzip"),
            ("X-Visible", "yes"),
        ],
        b"",
    );
    let echo = upstream_json(&response);
    for gone in [
        "x-secret",
        "keep-alive",
        "proxy-authorization",
        "te",
        "connection",
    ] {
        assert!(
            echo["headers"].get(gone).is_none(),
            "{gone} reached the upstream: {echo}"
        );
    }
    assert_eq!(header(&echo, "x-visible"), Some("yes"));
    let response = gateway.get("/hop");
    assert_eq!(response.status, 200);
    assert_eq!(response.header("x-kept"), Some("yes"));
    for gone in ["x-internal", "keep-alive", "proxy-connection"] {
        assert!(
            response.header(gone).is_none(),
            "{gone} reached the client: {response:?}"
        );
    }
}

#[test]
fn host_policies_and_the_forwarded_header() {
    let api = Upstream::start("api");
    let gateway = gateway(&format!(
        r#"
[upstream.upstream_host]
servers = ["{addr}"]
host = "upstream"
forwarded = "forwarded"
[upstream.fixed_host]
servers = ["http://{addr}"]
host = "internal.example"
forwarded = "none"
[[route]]
path = "/a"
proxy = "upstream_host"
[[route]]
path = "/b"
proxy = "fixed_host"
"#,
        addr = api.addr
    ));
    let echo = upstream_json(&gateway.get("/a"));
    assert_eq!(header(&echo, "host"), Some(api.addr.to_string().as_str()));
    assert_eq!(
        header(&echo, "forwarded"),
        Some("for=127.0.0.1;proto=http;host=\"test.local\"")
    );
    assert!(echo["headers"].get("x-forwarded-for").is_none());
    let echo = upstream_json(&gateway.get("/b"));
    assert_eq!(header(&echo, "host"), Some("internal.example"));
    assert!(echo["headers"].get("x-forwarded-for").is_none());
    assert!(echo["headers"].get("forwarded").is_none());
}

#[test]
fn retries_go_elsewhere_only_where_safe() {
    let good = Upstream::start("good");
    let resetting = Upstream::start("resetting").acting_as("/reset");
    let gateway = gateway(&format!(
        r#"
[upstream.refused]
servers = ["{refused}", "{good}"]
health = {{ max_fails = 0 }}
[upstream.resets]
servers = ["{resetting}", "{good}"]
health = {{ max_fails = 0 }}
[upstream.no_retry]
servers = ["{resetting}", "{good}"]
retries = 0
health = {{ max_fails = 0 }}
[[route]]
path = "/refused"
proxy = "refused"
[[route]]
path = "/resets"
proxy = "resets"
[[route]]
path = "/no_retry"
proxy = "no_retry"
"#,
        refused = refused_port(),
        good = good.addr,
        resetting = resetting.addr,
    ));
    // A connect error: the request never left, any method goes to the other server.
    for method in ["GET", "POST", "GET", "POST"] {
        let response = gateway.request(method, "/refused/x", &[], b"payload");
        assert_eq!(upstream_json(&response)["server"], "good", "{method}");
    }
    // A reset before any response byte: idempotent requests go elsewhere...
    for _ in 0..4 {
        assert_eq!(upstream_json(&gateway.get("/resets/x"))["server"], "good");
    }
    assert!(
        resetting.requests.load(Ordering::Relaxed) >= 1,
        "round robin reached it"
    );
    // ... a POST (it may have had an effect) is not retried.
    let before = resetting.requests.load(Ordering::Relaxed);
    let statuses: Vec<u16> = (0..4)
        .map(|_| gateway.request("POST", "/resets/x", &[], b"once").status)
        .collect();
    let reset_posts = resetting.requests.load(Ordering::Relaxed) - before;
    assert!(reset_posts >= 1, "{statuses:?}");
    assert_eq!(
        statuses.iter().filter(|&&s| s == 502).count(),
        reset_posts,
        "each POST that met a reset is a 502, never retried: {statuses:?}"
    );
    // With retries = 0, nothing is retried.
    let statuses: Vec<u16> = (0..4).map(|_| gateway.get("/no_retry/x").status).collect();
    assert!(statuses.contains(&502), "{statuses:?}");
    assert!(gateway.logs().contains("retrying on another server"));
    assert!(gateway
        .logs()
        .contains(&format!("server={}", resetting.addr)));
}

#[test]
fn failures_are_502_or_504_logged_with_the_upstream_address() {
    let stalling = Upstream::start("stalling").acting_as("/stall");
    let malformed = Upstream::start("malformed").acting_as("/malformed");
    let good = Upstream::start("good");
    // A TCP listener that never speaks TLS: the handshake hangs until connect_timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let refused = refused_port();
    let gateway = gateway(&format!(
        r#"
[upstream.stalls]
servers = ["{stalling}"]
read_timeout = "1s"
[upstream.malformed]
servers = ["{malformed}"]
[upstream.refused]
servers = ["{refused}"]
[upstream.silent]
servers = ["https://{silent}"]
connect_timeout = "500ms"
[upstream.good]
servers = ["{good}"]
[[route]]
path = "/stall"
proxy = "stalls"
[[route]]
path = "/malformed"
proxy = "malformed"
[[route]]
path = "/refused"
proxy = "refused"
[[route]]
path = "/silent"
proxy = "silent"
[[route]]
proxy = "good"
"#,
        stalling = stalling.addr,
        malformed = malformed.addr,
        silent = silent.local_addr().unwrap(),
        good = good.addr,
    ));
    let cases = [
        (
            "/stall",
            504,
            "no response head within 1s",
            stalling.addr.to_string(),
        ),
        (
            "/malformed",
            502,
            "malformed response",
            malformed.addr.to_string(),
        ),
        ("/refused", 502, "connect", refused.to_string()),
        (
            "/silent",
            502,
            "connect timed out",
            format!("https://{}", silent.local_addr().unwrap()),
        ),
    ];
    for (path, status, reason, server) in cases {
        let response = gateway.get(path);
        assert_eq!(response.status, status, "{path}: {response:?}");
        let logs = gateway.wait_for_log(reason);
        assert!(
            logs.lines()
                .any(|line| line.contains(reason) && line.contains(&format!("server={server}"))),
            "{path}: no log line with {reason:?} and {server}:\n{logs}"
        );
        // The worker keeps serving.
        assert_eq!(upstream_json(&gateway.get("/fine"))["server"], "good");
    }
}
