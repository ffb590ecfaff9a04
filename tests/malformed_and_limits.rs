//! Malformed and smuggling-shaped requests get a 4xx and never reach the application;
//! size limits give 413/414/431; the server keeps serving others.

mod common;

use common::{Gateway, GatewayBuilder};

fn status_of(raw: &[u8]) -> u16 {
    let text = String::from_utf8_lossy(raw);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"))
}

fn app_calls(gateway: &Gateway) -> i64 {
    gateway.get_json("/calls")["count"].as_i64().unwrap()
}

/// Each request must be refused with `status` without reaching the application, and
/// the gateway must still serve a normal request afterwards.
fn assert_refused(gateway: &Gateway, cases: &[(&str, &[u8], u16)]) {
    for (name, raw, status) in cases {
        let before = app_calls(gateway);
        let response = gateway.raw(raw);
        assert_eq!(
            status_of(&response),
            *status,
            "{name}: {}",
            String::from_utf8_lossy(&response)
        );
        // `before` and this probe are the only calls that reached the app.
        assert_eq!(
            app_calls(gateway),
            before + 1,
            "{name} reached the application"
        );
    }
}

#[test]
fn smuggling_shaped_requests_are_refused() {
    let gateway = GatewayBuilder::new().start();
    let cases: &[(&str, &[u8], u16)] = &[
        (
            "content-length with chunked",
            b"POST /raise HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "chunked then content-length",
            b"POST /raise HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "unknown transfer coding",
            b"POST /raise HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "obfuscated chunked",
            b"POST /raise HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "chunked twice",
            b"POST /raise HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        (
            "conflicting content-lengths",
            b"POST /raise HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
            400,
        ),
        ("negative content-length", b"POST /raise HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (
            "transfer-encoding in HTTP/1.0",
            b"POST /raise HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
        ),
        ("bare LF in headers", b"GET /raise HTTP/1.1\r\nHost: x\nX: y\r\n\r\n", 400),
        ("bare LF everywhere", b"GET /raise HTTP/1.1\nHost: x\n\n", 400),
        ("NUL in a header value", b"GET /raise HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n", 400),
        ("space before colon", b"GET /raise HTTP/1.1\r\nHost : x\r\n\r\n", 400),
        ("obsolete line folding", b"GET /raise HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400),
        ("invalid method", b"G@T /raise HTTP/1.1\r\nHost: x\r\n\r\n", 400),
        ("invalid version", b"GET /raise HTTP/1.7\r\nHost: x\r\n\r\n", 400),
        ("garbage", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", 400),
    ];
    assert_refused(&gateway, cases);
}

#[test]
fn a_smuggled_request_inside_a_refused_one_is_never_served() {
    let gateway = GatewayBuilder::new().start();
    let before = app_calls(&gateway);
    // A front proxy honouring Content-Length would forward this as one request; a
    // server honouring chunked would see a second request "GET /raise" in the body.
    let raw = gateway.raw(
        b"POST /status?code=200 HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n\
          0\r\n\r\nGET /raise HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_eq!(status_of(&raw), 400);
    assert_eq!(String::from_utf8_lossy(&raw).matches("HTTP/1.1").count(), 1);
    assert_eq!(app_calls(&gateway), before + 1);
    assert!(!gateway.logs().contains("boom"));
}

#[test]
fn oversized_request_parts_get_414_and_431() {
    let gateway = GatewayBuilder::new().start();
    let long_target = format!(
        "GET /raise?{} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(5000)
    );
    let long_header = format!(
        "GET /raise HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "b".repeat(9000)
    );
    let many_headers = format!(
        "GET /raise HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..120)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let huge_head = format!(
        "GET /raise HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..20)
            .map(|i| format!("X-H{i}: {}\r\n", "c".repeat(8000)))
            .collect::<String>()
    );
    let cases: &[(&str, &[u8], u16)] = &[
        ("request line over 4094 bytes", long_target.as_bytes(), 414),
        ("header field over 8190 bytes", long_header.as_bytes(), 431),
        ("more than 100 header fields", many_headers.as_bytes(), 431),
        ("head over 64 KiB", huge_head.as_bytes(), 431),
    ];
    assert_refused(&gateway, cases);
    // Just under the limits is fine.
    let target = format!("/status?code=200&pad={}", "a".repeat(4000));
    assert_eq!(gateway.get(&target).status, 200);
}

#[test]
fn limits_are_configurable() {
    let gateway = GatewayBuilder::new()
        .config("[limits]\nmax_request_line = 100\nmax_header_size = 200\nmax_header_count = 10\n")
        .start();
    let target = format!("/status?code=200&pad={}", "a".repeat(100));
    assert_eq!(gateway.get(&target).status, 414);
    let big = "v".repeat(300);
    assert_eq!(
        gateway
            .request("GET", "/status?code=200", &[("X-Big", &big)], b"")
            .status,
        431
    );
    assert_eq!(gateway.get("/status?code=200").status, 200);
}

#[test]
fn the_server_keeps_serving_while_bad_clients_misbehave() {
    let gateway = GatewayBuilder::new().start();
    // Bounded: 50 rounds of a malformed request, a reset mid-head and a good request.
    for _ in 0..50 {
        let raw = gateway.raw(b"GET /raise HTTP/1.1\r\nHost: x\nBad: y\r\n\r\n");
        assert_eq!(status_of(&raw), 400);
        {
            use std::io::Write;
            let mut half = gateway.connect();
            half.write_all(b"GET /raise HTTP/1.1\r\nHo").unwrap();
        }
        assert_eq!(gateway.get("/status?code=200").status, 200);
    }
}
