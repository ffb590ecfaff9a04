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

/// One response head, 1xx included (`read_response` skips interim responses).
fn read_head(reader: &mut impl std::io::BufRead) -> Option<Response> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end().to_owned();
        if line.is_empty() {
            break;
        }
        lines.push(line);
    }
    let status = lines.first()?.split(' ').nth(1)?.parse().ok()?;
    let headers = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Response {
        version: "HTTP/1.1".into(),
        status,
        headers,
        body: Vec::new(),
        complete: true,
    })
}

/// The server answering each of `count` requests to `target`.
fn servers_answering(gateway: &Gateway, target: &str, count: usize) -> Vec<String> {
    (0..count)
        .map(|_| {
            upstream_json(&gateway.get(target))["server"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn a_failing_server_is_ejected_then_restored() {
    let mut a = Upstream::start("a");
    let b = Upstream::start("b");
    let gateway = gateway(&format!(
        r#"
[upstream.pair]
servers = ["{}", "{}"]
health = {{ max_fails = 2, cooldown = "1s" }}
[[route]]
proxy = "pair"
"#,
        a.addr, b.addr
    ));
    let both = servers_answering(&gateway, "/x", 4);
    assert!(
        both.contains(&"a".to_owned()) && both.contains(&"b".to_owned()),
        "{both:?}"
    );
    a.stop();
    // Every request still succeeds: connect errors go to b, and a is ejected.
    assert!(servers_answering(&gateway, "/x", 6)
        .iter()
        .all(|s| s == "b"));
    gateway.wait_for_log("server ejected for 1s");
    let a = a.restart();
    // After its cooldown, a takes requests again.
    eventually("a answers again", || {
        servers_answering(&gateway, "/x", 2)
            .contains(&"a".to_owned())
            .then_some(())
    });
    gateway.wait_for_log("server answers again");
    assert!(a.requests.load(Ordering::Relaxed) > 0);
}

#[test]
fn active_health_checks_take_a_server_out_and_bring_it_back() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let gateway = gateway(&format!(
        r#"
[upstream.pair]
servers = ["{}", "{}"]
[upstream.pair.health]
path = "/healthz"
interval = "100ms"
unhealthy_threshold = 1
healthy_threshold = 1
[[route]]
proxy = "pair"
"#,
        a.addr, b.addr
    ));
    a.healthy.store(false, Ordering::Relaxed);
    gateway.wait_for_log("server taken out");
    assert!(servers_answering(&gateway, "/x", 6)
        .iter()
        .all(|s| s == "b"));
    a.healthy.store(true, Ordering::Relaxed);
    gateway.wait_for_log("server back");
    eventually("a answers again", || {
        servers_answering(&gateway, "/x", 2)
            .contains(&"a".to_owned())
            .then_some(())
    });
}

#[test]
fn balancing_by_weight_and_by_key() {
    let a = Upstream::start("a");
    let b = Upstream::start("b");
    let c = Upstream::start("c");
    let gateway = gateway(&format!(
        r#"
[upstream.weighted]
servers = [{{ address = "{a}", weight = 3 }}, "{b}"]
[upstream.by_user]
servers = ["{a}", "{b}", "{c}"]
balance = "hash"
hash_by = "header:X-User"
[upstream.by_cookie]
servers = ["{a}", "{b}", "{c}"]
balance = "hash"
hash_by = "cookie:sid"
[upstream.least]
servers = ["{a}", "{b}"]
balance = "least_requests"
[[route]]
path = "/weighted"
proxy = "weighted"
[[route]]
path = "/user"
proxy = "by_user"
[[route]]
path = "/cookie"
proxy = "by_cookie"
[[route]]
path = "/least"
proxy = "least"
"#,
        a = a.addr,
        b = b.addr,
        c = c.addr
    ));
    let answers = servers_answering(&gateway, "/weighted", 8);
    let to_a = answers.iter().filter(|s| *s == "a").count();
    assert_eq!(to_a, 6, "weight 3 to 1: {answers:?}");
    let mut seen = std::collections::BTreeSet::new();
    for user in 0..12 {
        let name = format!("user{user}");
        let first = upstream_json(&gateway.request("GET", "/user", &[("X-User", &name)], b""));
        for _ in 0..2 {
            let again = upstream_json(&gateway.request("GET", "/user", &[("X-User", &name)], b""));
            assert_eq!(again["server"], first["server"], "{name} is sticky");
        }
        let cookie = format!("theme=dark; sid={name}");
        let by_cookie =
            upstream_json(&gateway.request("GET", "/cookie", &[("Cookie", &cookie)], b""));
        let again = upstream_json(&gateway.request("GET", "/cookie", &[("Cookie", &cookie)], b""));
        assert_eq!(by_cookie["server"], again["server"]);
        seen.insert(first["server"].as_str().unwrap().to_owned());
    }
    assert!(seen.len() >= 2, "keys spread over the servers: {seen:?}");
    // Nothing in flight anywhere: least_requests takes turns.
    let answers = servers_answering(&gateway, "/least", 4);
    assert!(answers.contains(&"a".to_owned()) && answers.contains(&"b".to_owned()));
}

#[test]
fn websocket_echo_through_the_proxy() {
    let api = Upstream::start("ws");
    let gateway = gateway(&format!(
        "[[route]]\npath = \"/ws\"\nproxy = \"http://{}\"\n",
        api.addr
    ));
    let mut stream = gateway.connect();
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    stream
        .write_all(
            format!(
                "GET /ws HTTP/1.1\r\nHost: test.local\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                 Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let head = read_head(&mut reader).expect("a 101");
    assert_eq!(head.status, 101, "{head:?}");
    assert_eq!(head.header("upgrade"), Some("websocket"));
    assert_eq!(
        head.header("sec-websocket-accept"),
        Some(upstream::accept_key(key).as_str())
    );
    // Frames both ways, including ones with bare LFs the HTTP/1 framing check would
    // refuse in a request head.
    // "\u{b}" masked with 1 is a bare LF on the wire.
    for message in ["hello", "\u{b}line one\nline two", &"x".repeat(70_000)] {
        let frame = upstream::frame_with(0x1, message.as_bytes(), Some([1, 2, 3, 4]));
        stream.write_all(&frame).unwrap();
        let (opcode, payload) = upstream::read_frame(&mut reader).expect("an echoed frame");
        assert_eq!(opcode, 0x1);
        assert_eq!(payload, message.as_bytes());
    }
    stream
        .write_all(&upstream::frame_with(0x8, b"", Some([9, 9, 9, 9])))
        .unwrap();
    let (opcode, _) = upstream::read_frame(&mut reader).expect("a close frame");
    assert_eq!(opcode, 0x8);
    // An upgrade the upstream refuses is an ordinary response.
    let response = gateway.request("GET", "/ws", &[], b"");
    assert_eq!(response.status, 426, "{response:?}");
    assert_eq!(
        upstream_json(&gateway.get("/ws/other"))["target"],
        "/ws/other"
    );
}
