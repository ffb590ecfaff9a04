//! The reverse proxy against real upstreams the tests start: the small server in
//! `common/upstream.rs` (echo, stall, reset, malformed, hop-by-hop, WebSocket) and
//! nginx from Debian (plain, TLS with a test CA and client certificates, HTTP/2).

mod common;
#[path = "common/upstream.rs"]
mod upstream;

use std::io::{BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
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

/// A server may reset a kept-alive connection just as a request arrives on it. A
/// request that can be sent again as it is (idempotent, no body) goes once more on a
/// fresh connection to the same server, even with `retries = 0` (nginx does the same
/// for its cached connections); one with a body is not sent twice: 502.
#[test]
fn a_get_lost_on_a_pooled_connection_goes_again_on_a_fresh_one() {
    let api = Upstream::start("api");
    let gateway = gateway(&format!(
        "[upstream.api]\nservers = [\"{}\"]\nretries = 0\n[[route]]\nproxy = \"api\"\n",
        api.addr
    ));
    // Leaves a pooled connection that the upstream resets at its next request.
    assert_eq!(gateway.get("/reset-next").status, 200);
    let response = gateway.get("/after");
    assert_eq!(response.status, 200, "{response:?}\n{}", gateway.logs());
    assert_eq!(upstream_json(&response)["target"], "/after");
    assert_eq!(
        api.connections.load(Ordering::Relaxed),
        2,
        "one fresh connection"
    );

    assert_eq!(gateway.get("/reset-next").status, 200);
    let response = gateway.request("POST", "/posted", &[], b"data");
    assert_eq!(response.status, 502, "{response:?}\n{}", gateway.logs());
    gateway.wait_for_log("connection closed before the response head");
    assert_eq!(gateway.get("/still").status, 200);
}

/// A redirect to the server's own address comes back as a path on the gateway, the
/// stripped prefix put back (nginx's `proxy_redirect default`); other hosts are left
/// alone, and `rewrite_location = false` passes it on as sent.
#[test]
fn a_redirect_to_the_servers_own_address_becomes_a_path_here() {
    let api = Upstream::start("api");
    let gateway = gateway(&format!(
        "[upstream.api]\nservers = [\"{addr}\"]\nhost = \"upstream\"\nstrip_prefix = \"/api\"\n\
         [upstream.raw]\nservers = [\"{addr}\"]\nhost = \"upstream\"\nstrip_prefix = \"/raw\"\n\
         rewrite_location = false\n\
         [[route]]\npath = \"/api\"\nproxy = \"api\"\n[[route]]\npath = \"/raw\"\nproxy = \"raw\"\n",
        addr = api.addr
    ));
    let response = gateway.get("/api/redirect-self");
    assert_eq!(response.status, 302, "{response:?}");
    assert_eq!(
        response.header("location"),
        Some("/api/landing?from=redirect"),
        "{response:?}"
    );
    // Only Location, as nginx: Content-Location is the server's own business.
    assert_eq!(
        response.header("content-location"),
        Some(format!("http://{}/x", api.addr).as_str())
    );
    let response = gateway.get("/api/redirect-away");
    assert_eq!(
        response.header("location"),
        Some("http://example.com/landing")
    );
    let response = gateway.get("/raw/redirect-self");
    assert_eq!(
        response.header("location"),
        Some(format!("http://{}/landing?from=redirect", api.addr).as_str())
    );
}

/// Responses are framed as RFC 9112 has them: chunked (extensions and trailers read
/// past), until the server closes, after an interim 103; the connection is pooled
/// after each response that ends cleanly. A response that a lenient client and a
/// strict one could frame differently (both `Content-Length` and
/// `Transfer-Encoding`, a coding other than `chunked`) is 502, and a malformed chunk
/// cuts the response; each is logged and the gateway serves on.
#[test]
fn responses_are_framed_strictly_and_pooled_only_when_clean() {
    let api = Upstream::start("api");
    let gateway = gateway(&format!(
        "[upstream.api]\nservers = [\"{}\"]\n[[route]]\nproxy = \"api\"\n",
        api.addr
    ));
    let chunked = gateway.get("/chunked");
    assert_eq!(chunked.status, 200, "{chunked:?}");
    assert_eq!(chunked.body, b"hello, world");
    assert!(chunked.complete);
    let early = gateway.get("/early-hints");
    assert_eq!((early.status, early.body.as_slice()), (200, &b"final"[..]));
    assert_eq!(
        api.connections.load(Ordering::Relaxed),
        1,
        "one pooled connection"
    );
    // The same through hyper's client (a request with a body): the trailers end the
    // body and the connection is pooled again.
    for _ in 0..2 {
        let posted = gateway.request("POST", "/chunked", &[], b"data");
        assert_eq!(posted.body, b"hello, world", "{posted:?}");
    }
    assert_eq!(
        api.connections.load(Ordering::Relaxed),
        1,
        "still one connection"
    );

    let until = gateway.get("/until-close");
    assert_eq!(until.body, b"until the end");
    assert!(until.complete, "{until:?}");
    assert_eq!(upstream_json(&gateway.get("/after"))["target"], "/after");
    assert_eq!(
        api.connections.load(Ordering::Relaxed),
        2,
        "not pooled after it"
    );

    for path in ["/cl-and-te", "/te-gzip"] {
        let refused = gateway.get(path);
        assert_eq!(refused.status, 502, "{path}: {refused:?}");
    }
    gateway.wait_for_log(
        "GET /cl-and-te malformed response: both Content-Length and Transfer-Encoding: 502",
    );
    gateway.wait_for_log("unsupported Transfer-Encoding \"gzip, chunked\": 502");

    let mut stream = gateway.connect();
    stream
        .write_all(b"GET /bad-chunk HTTP/1.1\r\nHost: test.local\r\n\r\n")
        .unwrap();
    let mut cut = Vec::new();
    let _ = stream.read_to_end(&mut cut);
    let cut = String::from_utf8_lossy(&cut);
    // The head may or may not have gone out before the bad chunk was read; the
    // response never ends as a whole one would.
    assert!(
        !cut.contains("0\r\n\r\n") && !cut.contains("content-length"),
        "a cut body must not end cleanly: {cut:?}"
    );
    gateway.wait_for_log("response body: invalid chunk size");
    assert_eq!(upstream_json(&gateway.get("/still"))["target"], "/still");
}

/// No connection is pooled after a response that could leave it out of step: one to
/// a HEAD (a server that sends a body to a HEAD a moment late would answer the next
/// request with it), or one over HTTP/1.0 (a chunked upload would then go out as a
/// request without a body).
#[test]
fn no_connection_is_pooled_after_a_head_or_an_http_1_0_response() {
    let api = Upstream::start("api");
    let gateway = gateway(&format!(
        "[upstream.api]\nservers = [\"{}\"]\n[[route]]\nproxy = \"api\"\n",
        api.addr
    ));
    for round in 0..5 {
        let head = gateway.request("HEAD", "/head-body-later", &[], b"");
        assert_eq!(head.status, 200, "{head:?}");
        let next = gateway.get(&format!("/next{round}"));
        assert_eq!(upstream_json(&next)["target"], format!("/next{round}"));
    }

    let before = api.connections.load(Ordering::Relaxed);
    assert_eq!(gateway.get("/http10").status, 200);
    assert_eq!(
        upstream_json(&gateway.get("/after-http10"))["target"],
        "/after-http10"
    );
    // /http10 went on the pooled connection; the one after it needs a new one.
    assert_eq!(
        api.connections.load(Ordering::Relaxed),
        before + 1,
        "the HTTP/1.0 connection is not pooled"
    );
    assert_eq!(gateway.get("/http10").status, 200);
    let mut stream = gateway.connect();
    stream
        .write_all(
            b"POST /upload HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\
              Transfer-Encoding: chunked\r\n\r\n7\r\nPAYLOAD\r\n0\r\n\r\n",
        )
        .unwrap();
    let upload = read_response(&mut BufReader::new(stream), false).expect("a response");
    let echo = upstream_json(&upload);
    assert_eq!(echo["body"], "PAYLOAD", "{echo}");
}

/// An HTTP/1.0 request without `Host` reaches the upstream with the server's own
/// `host:port` under the default `host = "client"`, never with an empty one.
#[test]
fn a_request_without_host_gets_the_servers() {
    let api = Upstream::start("api");
    let gateway = gateway(&format!(
        "[upstream.api]\nservers = [\"{}\"]\n[[route]]\nproxy = \"api\"\n",
        api.addr
    ));
    let mut stream = gateway.connect();
    stream.write_all(b"GET /old HTTP/1.0\r\n\r\n").unwrap();
    let response = read_response(&mut BufReader::new(stream), false).expect("a response");
    let echo = upstream_json(&response);
    assert_eq!(
        header(&echo, "host"),
        Some(api.addr.to_string().as_str()),
        "{echo}"
    );
}

/// Sockets to `peer` in CLOSE_WAIT (the peer closed, this side did not), from
/// /proc/net/tcp: local and remote addresses as `0100007F:1F90`, state `08`.
fn close_wait_to(peer: SocketAddr) -> usize {
    let SocketAddr::V4(peer) = peer else {
        panic!("an IPv4 upstream")
    };
    let remote = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(peer.ip().octets()),
        peer.port()
    );
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"08")
        })
        .count()
}

/// A pooled connection the upstream closes while it is idle (its keep-alive timeout
/// ran out) is closed by the gateway within about a second, as nginx does at once,
/// not left in CLOSE_WAIT until `idle_timeout` (60 s) or the next checkout.
#[test]
fn an_idle_connection_the_upstream_closes_is_closed_soon() {
    let api = Upstream::start("api");
    let gateway = gateway(&format!(
        "[upstream.api]\nservers = [\"{}\"]\n[[route]]\nproxy = \"api\"\n",
        api.addr
    ));
    assert_eq!(gateway.get("/then-close").status, 200);
    assert_eq!(api.connections.load(Ordering::Relaxed), 1);
    // The upstream closes 300 ms after its answer; the pool looks every second.
    std::thread::sleep(Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(5);
    while close_wait_to(api.addr) > 0 {
        assert!(
            Instant::now() < deadline,
            "the closed upstream connection is still in CLOSE_WAIT\n{}",
            gateway.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The next request goes on a fresh connection.
    assert_eq!(upstream_json(&gateway.get("/next"))["target"], "/next");
    assert_eq!(api.connections.load(Ordering::Relaxed), 2);
}

/// A WebSocket open when the gateway is told to stop keeps working while the worker
/// drains (up to `server.graceful_timeout`), as with nginx: the worker waits for it to
/// close, then exits cleanly.
#[test]
fn a_draining_worker_keeps_its_websockets_until_they_close() {
    let api = Upstream::start("ws");
    let mut gateway = gateway(&format!(
        "[server]\ngraceful_timeout = \"20s\"\n[[route]]\npath = \"/ws\"\nproxy = \"http://{}\"\n",
        api.addr
    ));
    let mut stream = gateway.connect();
    stream
        .write_all(
            b"GET /ws HTTP/1.1\r\nHost: test.local\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let head = read_head(&mut reader).expect("a 101");
    assert_eq!(head.status, 101, "{head:?}");
    let mut echo = |message: &str| {
        let frame = upstream::frame_with(0x1, message.as_bytes(), Some([1, 2, 3, 4]));
        stream.write_all(&frame).unwrap();
        let (opcode, payload) = upstream::read_frame(&mut reader).expect("an echoed frame");
        assert_eq!((opcode, payload.as_slice()), (0x1, message.as_bytes()));
    };
    echo("before");
    gateway.signal(libc::SIGTERM);
    gateway.wait_for_log("waiting for upgraded connections (WebSockets) to close");
    echo("while draining");
    stream
        .write_all(&upstream::frame_with(0x8, b"", Some([9, 9, 9, 9])))
        .unwrap();
    let (opcode, _) = upstream::read_frame(&mut reader).expect("a close frame");
    assert_eq!(opcode, 0x8);
    drop(stream);
    drop(reader);
    let status = gateway.wait_exit();
    assert!(status.success(), "{status:?}\n{}", gateway.logs());
    let logs = gateway.logs();
    assert!(logs.contains("all connections closed; exiting"), "{logs}");
    assert!(!logs.contains("graceful_timeout reached"), "{logs}");
}

/// The worker process of a one-worker gateway.
fn worker_pid(gateway: &Gateway) -> u32 {
    let supervisor = gateway.pid();
    eventually("the worker process", || {
        std::fs::read_dir("/proc")
            .ok()?
            .flatten()
            .find_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                let after_name = &stat[stat.rfind(')')? + 2..];
                let ppid: u32 = after_name.split(' ').nth(1)?.parse().ok()?;
                (ppid == supervisor).then_some(pid)
            })
    })
}

/// A field of /proc/PID/status in KiB (`VmRSS`, `VmHWM`).
fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").parse().ok())
        .unwrap()
}

#[test]
fn streams_64_mib_each_way_without_buffering() {
    const SIZE: u64 = 64 << 20;
    let api = Upstream::start("api");
    let gateway = gateway(&format!(
        "[[route]]\nproxy = \"http://{}\"\n[limits]\nmax_body_size = \"1GiB\"\n",
        api.addr
    ));
    assert_eq!(upstream_json(&gateway.get("/warm-up"))["server"], "api");
    let worker = worker_pid(&gateway);
    let before = memory_kib(worker, "VmRSS");
    // Up: a chunked upload, streamed to the upstream as it arrives.
    let mut stream = gateway.connect();
    stream
        .write_all(b"POST /sink HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        .unwrap();
    let chunk = vec![b'u'; 1 << 20];
    let mut frame = format!("{:x}\r\n", chunk.len()).into_bytes();
    frame.extend_from_slice(&chunk);
    frame.extend_from_slice(b"\r\n");
    for _ in 0..SIZE >> 20 {
        stream.write_all(&frame).unwrap();
    }
    stream.write_all(b"0\r\n\r\n").unwrap();
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(upstream_json(&response)["body_len"], SIZE);
    // Down: read in small pieces, so the proxy must wait for this client.
    let mut stream = gateway.connect();
    stream
        .write_all(
            format!("GET /bytes/{SIZE} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .unwrap();
    let mut received = 0u64;
    let mut buf = [0u8; 16 << 10];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => received += n as u64,
            Err(e) => panic!("download failed after {received} bytes: {e}"),
        }
    }
    assert!(received > SIZE, "the head and {SIZE} bytes: {received}");
    let peak = memory_kib(worker, "VmHWM");
    assert!(
        peak < before + 24 * 1024,
        "the worker's peak RSS grew from {before} KiB to {peak} KiB"
    );
}

/// nginx from Debian with a server block the test writes, on a free port.
struct Nginx {
    child: Child,
    port: u16,
    /// Its folder (`{dir}` in the server block).
    dir: std::path::PathBuf,
}

impl Nginx {
    /// Start nginx; `server` is the body of one `server {}` block; `{port}` in it is
    /// replaced by the port it listens on, `{dir}` by its folder.
    fn start(name: &str, server: &str) -> Self {
        let dir = scratch_dir(&format!("nginx-{name}"));
        let port = refused_port().port();
        let server = server
            .replace("{port}", &port.to_string())
            .replace("{dir}", &dir.display().to_string());
        let temp = |what: &str| dir.join(what).display().to_string();
        let config = format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {pid};\nerror_log {log} info;\n\
             events {{ worker_connections 256; }}\n\
             http {{\n access_log off;\n client_body_temp_path {body};\n proxy_temp_path {proxy};\n\
             fastcgi_temp_path {fcgi};\n uwsgi_temp_path {uwsgi};\n scgi_temp_path {scgi};\n\
             server {{\n{server}\n}}\n}}\n",
            pid = temp("nginx.pid"),
            log = temp("error.log"),
            body = temp("body"),
            proxy = temp("proxy"),
            fcgi = temp("fastcgi"),
            uwsgi = temp("uwsgi"),
            scgi = temp("scgi"),
        );
        let file = dir.join("nginx.conf");
        std::fs::write(&file, config).unwrap();
        let child = Command::new("/usr/sbin/nginx")
            .arg("-c")
            .arg(&file)
            .arg("-p")
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start /usr/sbin/nginx");
        let deadline = Instant::now() + common::WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "nginx did not listen: {}",
                std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Nginx { child, port, dir }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn nginx_as_the_upstream() {
    let nginx = Nginx::start(
        "plain",
        r#"listen 127.0.0.1:{port};
listen unix:{dir}/nginx.sock;
location / { return 200 "$request_uri|$host|$http_x_forwarded_for|$http_x_forwarded_proto|$connection"; }"#,
    );
    let gateway = gateway(&format!(
        "[[route]]\npath = \"/\"\nproxy = \"http://127.0.0.1:{}\"\n",
        nginx.port
    ));
    let mut connections = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let response = gateway.get("/hello?x=1");
        assert_eq!(response.status, 200, "{response:?}");
        let text = response.text();
        let fields: Vec<&str> = text.split('|').collect();
        assert_eq!(
            &fields[..4],
            ["/hello?x=1", "test.local", "127.0.0.1", "http"]
        );
        connections.insert(fields[4].to_owned());
    }
    assert_eq!(
        connections.len(),
        1,
        "one kept-alive connection to nginx: {connections:?}"
    );
    // The same nginx on a unix socket, kept alive too.
    let local = self::gateway(&format!(
        "[upstream.local]\nservers = [\"unix:{}\"]\n[[route]]\nproxy = \"local\"\n",
        nginx.dir.join("nginx.sock").display()
    ));
    let mut over_unix = std::collections::BTreeSet::new();
    for _ in 0..3 {
        let response = local.get("/sock?y=2");
        assert_eq!(response.status, 200, "{response:?}\n{}", local.logs());
        let text = response.text();
        let fields: Vec<&str> = text.split('|').collect();
        assert_eq!(&fields[..2], ["/sock?y=2", "test.local"]);
        over_unix.insert(fields[4].to_owned());
    }
    assert_eq!(
        over_unix.len(),
        1,
        "one kept-alive unix connection: {over_unix:?}"
    );
    // HTTP/2 with prior knowledge (h2c) to an nginx that speaks only that.
    let h2c = Nginx::start(
        "h2c",
        r#"listen 127.0.0.1:{port} http2;
location / { return 200 "$server_protocol|$host|$request_uri"; }"#,
    );
    let second = self::gateway(&format!(
        "[upstream.h2c]\nservers = [\"127.0.0.1:{}\"]\nhttp2 = true\n[[route]]\nproxy = \"h2c\"\n",
        h2c.port
    ));
    for _ in 0..2 {
        let response = second.get("/two?x=1");
        assert_eq!(
            response.text(),
            "HTTP/2.0|test.local|/two?x=1",
            "{response:?}"
        );
    }
}

#[test]
fn https_upstreams_verify_against_a_ca_and_present_a_client_certificate() {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let dir = scratch_dir("proxy-pki");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Proxy Test CA");
    let ca_key = KeyPair::generate().unwrap();
    let ca = ca_params.clone().self_signed(&ca_key).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
    let issue = |stem: &str, names: &[&str], common_name: &str| {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().unwrap();
        let cert = params
            .signed_by(&key, &Issuer::from_params(&ca_params, &ca_key))
            .unwrap();
        std::fs::write(dir.join(format!("{stem}.pem")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
    };
    issue("server", &["localhost", "127.0.0.1"], "localhost");
    issue("client", &[], "gateway-client");
    let d = dir.display();
    let nginx = Nginx::start(
        "tls",
        &format!(
            r#"listen 127.0.0.1:{{port}} ssl http2;
ssl_certificate {d}/server.pem;
ssl_certificate_key {d}/server.key;
ssl_client_certificate {d}/ca.pem;
ssl_verify_client optional;
location / {{ return 200 "$ssl_client_s_dn|$server_protocol|$ssl_server_name"; }}"#
        ),
    );
    let port = nginx.port;
    let gateway = gateway(&format!(
        r#"
[upstream.mtls]
servers = ["https://localhost:{port}"]
tls = {{ ca = "{d}/ca.pem", cert = "{d}/client.pem", key = "{d}/client.key" }}
[upstream.h2]
servers = ["https://127.0.0.1:{port}"]
http2 = true
tls = {{ ca = "{d}/ca.pem", server_name = "localhost" }}
[upstream.by_ip]
servers = ["https://127.0.0.1:{port}"]
tls = {{ ca = "{d}/ca.pem" }}
[upstream.system_roots]
servers = ["https://localhost:{port}"]
[[route]]
path = "/mtls"
proxy = "mtls"
[[route]]
path = "/h2"
proxy = "h2"
[[route]]
path = "/by_ip"
proxy = "by_ip"
[[route]]
path = "/system"
proxy = "system_roots"
"#
    ));
    let text = |path: &str| {
        let response = gateway.get(path);
        assert_eq!(response.status, 200, "{path}: {response:?}");
        response.text()
    };
    let fields = text("/mtls");
    assert_eq!(
        fields, "CN=gateway-client|HTTP/1.1|localhost",
        "client certificate and SNI"
    );
    assert_eq!(
        text("/h2"),
        "|HTTP/2.0|localhost",
        "ALPN h2, SNI from tls.server_name"
    );
    assert_eq!(
        text("/by_ip"),
        "|HTTP/1.1|",
        "verified by its IP address, no SNI"
    );
    // The test CA is not among the system's roots: the handshake fails.
    assert_eq!(gateway.get("/system").status, 502);
    gateway.wait_for_log("TLS handshake");
}

#[test]
fn python_middleware_wraps_an_upstream_through_the_bridge() {
    let api = Upstream::start("api");
    let gateway = GatewayBuilder::new()
        .no_app_flag()
        .env("VIRTUAL_ENV", common::test_venv().to_str().unwrap())
        .config(&format!(
            r#"
[[middleware]]
kind = "access_log"
format = "%(r)s %(s)s upstream=%(upstream_addr)s"
[[route]]
path = "/app"
proxy = "http://{}"
[[route.middleware]]
kind = "python"
factory = "beaker.middleware:SessionMiddleware"
options = {{ "session.type" = "cookie", "session.key" = "sid", "session.validate_key" = "test-secret" }}
[[route.middleware]]
kind = "python"
factory = "session_visits:factory"
"#,
            api.addr
        ))
        .start();
    let first = gateway.get("/app/page");
    let echo = upstream_json(&first);
    assert_eq!(header(&echo, "x-visits"), Some("1"), "{}", gateway.logs());
    assert_eq!(first.header("x-seen-by"), Some("python"));
    // The access log names the upstream though the response came out of Python.
    gateway.wait_for_log(&format!("GET /app/page HTTP/1.1 200 upstream={}", api.addr));
    let cookie_of = |response: &Response| {
        let set_cookie = response.header("set-cookie").expect("Beaker's cookie");
        set_cookie.split(';').next().unwrap().to_owned()
    };
    let second = gateway.request("GET", "/app/page", &[("Cookie", &cookie_of(&first))], b"");
    assert_eq!(header(&upstream_json(&second), "x-visits"), Some("2"));
    let cookie = cookie_of(&second);
    // A body larger than the server reads ahead is fed from the Python thread.
    let body = vec![b'p'; 300_000];
    let posted = gateway.request("POST", "/app/upload", &[("Cookie", &cookie)], &body);
    let echo = upstream_json(&posted);
    assert_eq!(echo["body_len"], 300_000);
    assert_eq!(header(&echo, "x-visits"), Some("3"));
}

#[test]
fn access_log_metrics_and_trace_context_name_the_upstream() {
    let api = Upstream::start("api");
    let receiver = TcpListener::bind("127.0.0.1:0").unwrap();
    let gateway = GatewayBuilder::new()
        .no_app_flag()
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .config(&format!(
            r#"
[telemetry]
admin_bind = "127.0.0.1:0"
otlp_endpoint = "http://{otlp}"
otlp_protocol = "http/protobuf"
[upstream.api]
servers = ["{api}"]
[[middleware]]
kind = "access_log"
format = "%(r)s %(s)s upstream=%(upstream_addr)s time=%(upstream_time)s"
[[route]]
proxy = "api"
"#,
            otlp = receiver.local_addr().unwrap(),
            api = api.addr,
        ))
        .start();
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let response = gateway.request(
        "GET",
        "/traced",
        &[(
            "traceparent",
            &format!("00-{client_trace}-00f067aa0ba902b7-01"),
        )],
        b"",
    );
    let echo = upstream_json(&response);
    let traceparent = header(&echo, "traceparent").expect("a traceparent upstream");
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(
        parts[1], client_trace,
        "the client's trace continues upstream"
    );
    assert_ne!(
        parts[2], "00f067aa0ba902b7",
        "the parent is the gateway's client span"
    );
    let line = gateway.wait_for_log("GET /traced HTTP/1.1 200 upstream=");
    let line = line.lines().find(|l| l.contains("GET /traced")).unwrap();
    assert!(
        line.contains(&format!("upstream={} time=0.", api.addr)),
        "{line}"
    );
    let metrics = gateway.admin_get("/metrics").text();
    let series = format!(
        "wsgi_gateway_upstream_requests_total{{upstream=\"api\",server=\"{}\",outcome=\"2xx\"}} 1",
        api.addr
    );
    assert!(metrics.contains(&series), "{metrics}");
    assert!(metrics.contains(&format!(
        "wsgi_gateway_upstream_healthy{{upstream=\"api\",server=\"{}\"}} 1",
        api.addr
    )));
    assert!(metrics.contains("wsgi_gateway_upstream_duration_seconds_count{upstream=\"api\""));
    // Valid Prometheus text, the upstream families included.
    common::promtool_check(&metrics);
}

#[test]
fn configuration_errors_name_the_route_and_the_key() {
    let check = |toml: &str| {
        let dir = scratch_dir("proxy-config");
        let file = dir.join("gateway.toml");
        std::fs::write(&file, toml).unwrap();
        let finished = GatewayBuilder::check_file(&file);
        assert!(!finished.status.success(), "{toml}");
        finished.stderr
    };
    let error = check("[upstream.api]\nservers = [\"127.0.0.1:1\"]\n[[route]]\nproxy = \"apii\"\n");
    assert!(
        error.contains("route[0].proxy: no [upstream.apii]; defined: api"),
        "{error}"
    );
    let error = check("[upstream.api]\nservers = [\"ftp://x:1\"]\n[[route]]\nproxy = \"api\"\n");
    assert!(error.contains("upstream.api.servers"), "{error}");
    let error = check("[upstream.api]\nservers = []\n[[route]]\nproxy = \"api\"\n");
    assert!(
        error.contains("upstream.api.servers: at least one server"),
        "{error}"
    );
    let error = check(
        "[upstream.api]\nservers = [\"a:1\"]\nbalance = \"random\"\n[[route]]\nproxy = \"api\"\n",
    );
    assert!(error.contains("upstream.api.balance"), "{error}");
    let error = check("[upstream.api]\nservers = [\"a:1\"]\nhash_by = \"cookie:sid\"\n[[route]]\nproxy = \"api\"\n");
    assert!(
        error.contains("upstream.api.hash_by: applies only with balance = \"hash\""),
        "{error}"
    );
    let error = check("[upstream.api]\nservers = [\"a:1\"]\nhealth = { pth = \"/x\" }\n[[route]]\nproxy = \"api\"\n");
    assert!(error.contains("unknown key \"pth\""), "{error}");
}

#[test]
fn read_timeout_counts_from_the_end_of_a_slow_upload() {
    let api = Upstream::start("api");
    let gateway = gateway(&format!(
        "[upstream.api]\nservers = [\"{}\"]\nread_timeout = \"1s\"\n[[route]]\nproxy = \"api\"\n",
        api.addr
    ));
    // A client that sends its body in pieces over longer than read_timeout: each piece
    // is progress, so the upload is not cut.
    let mut stream = gateway.connect();
    stream
        .write_all(b"POST /slow HTTP/1.1\r\nHost: test.local\r\nContent-Length: 8\r\nConnection: close\r\n\r\n")
        .unwrap();
    for piece in [b"ab", b"cd", b"ef", b"gh"] {
        std::thread::sleep(Duration::from_millis(400));
        stream.write_all(piece).unwrap();
    }
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(upstream_json(&response)["body"], "abcdefgh");
    // A client that stops sending gets 408 (its fault, not the upstream's).
    let mut stream = gateway.connect();
    stream
        .write_all(b"POST /stuck HTTP/1.1\r\nHost: test.local\r\nContent-Length: 8\r\nConnection: close\r\n\r\nab")
        .unwrap();
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(response.status, 408, "{response:?}");
    assert_eq!(upstream_json(&gateway.get("/after"))["server"], "api");
}
