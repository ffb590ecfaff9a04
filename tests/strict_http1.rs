//! Strict HTTP/1 (RFC 9110, RFC 9112), one module per class of malformed request.
//!
//! Every case is raw bytes on a real socket. A request refused in its head gets 400 and
//! a closed connection, never reaches the application (the contract app counts its
//! calls), and a well-formed request pipelined behind it is never served. A chunked
//! body is read only as the application reads it, so a framing error there makes
//! `wsgi.input` raise: the client gets 400 and a closed connection, the log says
//! "malformed request body", and there is no application error. After each case a new
//! connection is served. What the grammar allows stays accepted.

mod common;

use std::io::{BufReader, Write};
use std::net::Shutdown;

use common::{eventually, read_response, read_to_close, Gateway, GatewayBuilder, Response};

/// How many times the app has been called, this poll included.
fn app_calls(gateway: &Gateway) -> i64 {
    gateway.get_json("/calls")["count"].as_i64().unwrap()
}

fn log_count(gateway: &Gateway, needle: &str) -> usize {
    gateway.logs().matches(needle).count()
}

/// A well-formed request on a new connection is served.
fn still_serves(gateway: &Gateway) {
    assert_eq!(gateway.get("/status?code=200").status, 200);
}

/// A request on its own connection, `Connection: close` added by the caller if wanted.
fn send(gateway: &Gateway, raw: &[u8]) -> Response {
    let mut stream = gateway.connect();
    stream.write_all(raw).unwrap();
    read_response(&mut BufReader::new(stream), raw.starts_with(b"HEAD"))
        .unwrap_or_else(|| panic!("no response to {}", String::from_utf8_lossy(raw)))
}

/// `raw` is refused by the framing check in its head: 400 and a closed connection, the
/// log names `reason`, the app is not called, and a request pipelined behind it is never
/// served.
fn refused_before_the_app(gateway: &Gateway, case: &str, raw: &[u8], reason: &str) {
    let before = app_calls(gateway);
    let reasons_before = log_count(gateway, reason);
    let mut bytes = raw.to_vec();
    bytes.extend_from_slice(b"GET /status?code=200 HTTP/1.1\r\nHost: x\r\n\r\n");
    let response = gateway.raw(&bytes);
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 400 "), "{case}: {text}");
    assert!(
        text.to_ascii_lowercase()
            .contains("\r\nconnection: close\r\n"),
        "{case}: {text}"
    );
    assert_eq!(
        text.matches("HTTP/1.1 ").count(),
        1,
        "{case}: the pipelined request was served: {text}"
    );
    assert_eq!(
        app_calls(gateway),
        before + 1,
        "{case} reached the application"
    );
    eventually(&format!("{case}: the log to say {reason:?}"), || {
        (log_count(gateway, reason) > reasons_before).then_some(())
    });
    still_serves(gateway);
}

/// `raw` (a chunked request to a route that reads `wsgi.input`) is refused while the
/// app reads: 400 with a closed connection, "malformed request body" in the log, no
/// application error. With `half_close`, the client then shuts its sending side, as a
/// client whose body ends early does.
fn refused_while_the_app_reads(gateway: &Gateway, case: &str, raw: &[u8], half_close: bool) {
    let malformed_before = log_count(gateway, "malformed request body");
    let mut stream = gateway.connect();
    stream.write_all(raw).unwrap();
    if half_close {
        stream.shutdown(Shutdown::Write).unwrap();
    }
    let all = read_to_close(&mut stream);
    let text = String::from_utf8_lossy(&all).into_owned();
    let response =
        read_response(&mut &all[..], false).unwrap_or_else(|| panic!("{case}: no response"));
    assert_eq!(response.status, 400, "{case}: {text}");
    assert_eq!(
        response.header("connection"),
        Some("close"),
        "{case}: {text}"
    );
    assert_eq!(response.text(), "400 Bad Request\n", "{case}");
    assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{case}: {text}");
    eventually(
        &format!("{case}: \"malformed request body\" in the log"),
        || (log_count(gateway, "malformed request body") > malformed_before).then_some(()),
    );
    let logs = gateway.logs();
    assert!(
        !logs.contains("application error") && !logs.contains("Traceback"),
        "{case}: logged as an application error:\n{logs}"
    );
    still_serves(gateway);
}

/// A chunked POST to `target` with `body` as its raw chunked framing.
fn chunked(target: &str, body: &str) -> Vec<u8> {
    format!("POST {target} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
        .into_bytes()
}

/// What `/input?mode=read` read from a chunked body, which must be accepted.
fn accepted_body(gateway: &Gateway, case: &str, framing: &str) -> String {
    let mut raw = chunked("/input?mode=read", framing);
    // Close after the response, so a stray byte would show as a second response.
    let at = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    raw.splice(at + 2..at + 2, b"Connection: close\r\n".iter().copied());
    let response = send(gateway, &raw);
    assert_eq!(response.status, 200, "{case}: {response:?}");
    response.json()["parts"][0].as_str().unwrap().to_owned()
}

mod chunk_framing {
    use super::*;

    #[test]
    fn malformed_chunk_size_lines_are_400_while_the_app_reads() {
        let gateway = GatewayBuilder::new().start();
        let cases = [
            ("underscore in the size", "6_0\r\nhello!\r\n0\r\n\r\n"),
            ("negative size", "-5\r\nhello\r\n0\r\n\r\n"),
            ("plus sign", "+5\r\nhello\r\n0\r\n\r\n"),
            ("empty size", "\r\nhello\r\n0\r\n\r\n"),
            ("only an extension", ";foo=bar\r\nhello\r\n0\r\n\r\n"),
            ("whitespace before the size", " 5\r\nhello\r\n0\r\n\r\n"),
            (
                "whitespace after the size, no extension",
                "5 \r\nhello\r\n0\r\n\r\n",
            ),
            (
                "whitespace after the last-chunk size",
                "5\r\nhello\r\n0 \r\n\r\n",
            ),
            ("bare CR in a chunk line", "5\r;x\r\nhello\r\n0\r\n\r\n"),
            ("bare CR in an extension", "5;a\rb\r\nhello\r\n0\r\n\r\n"),
            ("bare LF ends a chunk line", "5;ext\nhello\r\n0\r\n\r\n"),
            ("bare LF after the size", "5\nhello\r\n0\r\n\r\n"),
            (
                "size over 64 bits",
                "10000000000000005\r\nhello\r\n0\r\n\r\n",
            ),
        ];
        for (case, body) in cases {
            refused_while_the_app_reads(&gateway, case, &chunked("/input", body), false);
        }
    }

    #[test]
    fn chunk_data_without_crlf_and_bodies_cut_short_are_400_while_the_app_reads() {
        let gateway = GatewayBuilder::new().start();
        refused_while_the_app_reads(
            &gateway,
            "chunk data not followed by CRLF",
            &chunked("/input", "5\r\nhelloXX0\r\n\r\n"),
            false,
        );
        refused_while_the_app_reads(
            &gateway,
            "chunk data followed by CR and no LF",
            &chunked("/input", "5\r\nhello\rX0\r\n\r\n"),
            false,
        );
        refused_while_the_app_reads(
            &gateway,
            "no last-chunk",
            &chunked("/input", "5\r\nhello\r\n"),
            true,
        );
        refused_while_the_app_reads(
            &gateway,
            "last-chunk without the final CRLF",
            &chunked("/input", "5\r\nhello\r\n0\r\n"),
            true,
        );
    }

    #[test]
    fn an_app_that_catches_the_read_error_answers_itself() {
        let gateway = GatewayBuilder::new().start();
        let mut stream = gateway.connect();
        stream
            .write_all(&chunked("/input-caught", "6_0\r\nhello!\r\n0\r\n\r\n"))
            .unwrap();
        let all = read_to_close(&mut stream);
        let response = read_response(&mut &all[..], false).unwrap();
        assert_eq!(response.status, 422, "{response:?}");
        let caught = response.json()["caught"].as_str().unwrap().to_owned();
        assert!(caught.contains("malformed request body"), "{caught}");
        // The connection still ends: what follows the bad chunk cannot be trusted.
        assert_eq!(
            String::from_utf8_lossy(&all).matches("HTTP/1.1 ").count(),
            1
        );
        assert!(!gateway.logs().contains("application error"));
        still_serves(&gateway);
    }

    #[test]
    fn chunk_lines_the_grammar_allows_stay_accepted() {
        let gateway = GatewayBuilder::new().start();
        let cases = [
            ("extension with a value", "5;ext=val\r\nhello\r\n0\r\n\r\n"),
            ("BWS before the semicolon", "5 ;ext\r\nhello\r\n0\r\n\r\n"),
            ("tab before the semicolon", "5\t;ext\r\nhello\r\n0\r\n\r\n"),
            ("BWS around = ", "5; ext = val\r\nhello\r\n0\r\n\r\n"),
            ("uppercase hex", "A\r\nhelloworld\r\n0\r\n\r\n"),
            ("lowercase hex", "a\r\nhelloworld\r\n0\r\n\r\n"),
            ("leading zeros", "0005\r\nhello\r\n00000\r\n\r\n"),
            (
                "quoted extension value",
                "5;name=\"a quoted; \\\"value\\\"\"\r\nhello\r\n0\r\n\r\n",
            ),
            (
                "several extensions",
                "5;a;b=1;c=\"x\"\r\nhello\r\n0;last\r\n\r\n",
            ),
        ];
        for (case, framing) in cases {
            let body = accepted_body(&gateway, case, framing);
            let expected = if framing.contains("helloworld") {
                "helloworld"
            } else {
                "hello"
            };
            assert_eq!(body, expected, "{case}");
        }
    }
}

mod trailers {
    use super::*;

    #[test]
    fn fields_that_must_not_be_trailers_are_400() {
        let gateway = GatewayBuilder::new().start();
        for field in [
            "Transfer-Encoding: chunked",
            "Content-Length: 5",
            "Host: other.example",
            "TE: trailers",
            "Trailer: X-Checksum",
            "Content-Type: text/plain",
            "Content-Encoding: gzip",
            "Authorization: Basic YTpi",
        ] {
            let body = format!("5\r\nhello\r\n0\r\n{field}\r\n\r\n");
            refused_while_the_app_reads(&gateway, field, &chunked("/input", &body), false);
        }
        refused_while_the_app_reads(
            &gateway,
            "a malformed trailer line",
            &chunked("/input", "5\r\nhello\r\n0\r\nX-Checksum : abc\r\n\r\n"),
            false,
        );
    }

    #[test]
    fn other_trailers_are_accepted_and_ignored() {
        let gateway = GatewayBuilder::new().start();
        let body = accepted_body(
            &gateway,
            "allowed trailers",
            "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nServer-Timing: db;dur=53\r\n\r\n",
        );
        assert_eq!(body, "hello");
    }
}

mod host {
    use super::*;

    #[test]
    fn a_second_missing_or_invalid_host_is_400() {
        let gateway = GatewayBuilder::new().start();
        refused_before_the_app(
            &gateway,
            "a second Host",
            b"GET /raise HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
            "more than one Host field",
        );
        refused_before_the_app(
            &gateway,
            "the same Host twice",
            b"GET /raise HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n\r\n",
            "more than one Host field",
        );
        refused_before_the_app(
            &gateway,
            "a second Host in HTTP/1.0",
            b"GET /raise HTTP/1.0\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
            "more than one Host field",
        );
        refused_before_the_app(
            &gateway,
            "HTTP/1.1 without Host",
            b"GET /raise HTTP/1.1\r\nX-Other: 1\r\n\r\n",
            "an HTTP/1.1 request without Host",
        );
        refused_before_the_app(
            &gateway,
            "a Host with a path and userinfo",
            b"GET /raise HTTP/1.1\r\nHost: good.example/x@evil.example\r\n\r\n",
            "an invalid Host value",
        );
        refused_before_the_app(
            &gateway,
            "a Host with a non-numeric port",
            b"GET /raise HTTP/1.1\r\nHost: good.example:80x\r\n\r\n",
            "an invalid Host value",
        );
    }

    #[test]
    fn valid_hosts_and_http10_without_host_are_served() {
        let gateway = GatewayBuilder::new().start();
        for host in [
            "example.com",
            "example.com:8080",
            "[::1]:8000",
            "127.0.0.1",
            "",
        ] {
            let response = send(
                &gateway,
                format!(
                    "GET /status?code=200 HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
                )
                .as_bytes(),
            );
            assert_eq!(response.status, 200, "Host: {host:?}");
        }
        let response = send(&gateway, b"GET /status?code=200 HTTP/1.0\r\n\r\n");
        assert_eq!(response.status, 200);
    }
}

mod singleton_fields {
    use super::*;

    #[test]
    fn repeated_singleton_fields_are_400() {
        let gateway = GatewayBuilder::new().start();
        refused_before_the_app(
            &gateway,
            "two Content-Type",
            b"POST /raise HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            "a repeated singleton field",
        );
        refused_before_the_app(
            &gateway,
            "two Authorization",
            b"GET /raise HTTP/1.1\r\nHost: x\r\nAuthorization: Basic YTpi\r\nauthorization: Basic Yzpk\r\n\r\n",
            "a repeated singleton field",
        );
        refused_before_the_app(
            &gateway,
            "two different Content-Length",
            b"POST /raise HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
            "an invalid or conflicting Content-Length",
        );
    }

    #[test]
    fn repeated_list_fields_and_equal_content_lengths_are_served() {
        let gateway = GatewayBuilder::new().start();
        let response = send(
            &gateway,
            b"GET /environ HTTP/1.1\r\nHost: x\r\nAccept: text/html\r\nAccept: text/plain\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(response.json()["HTTP_ACCEPT"], "text/html,text/plain");
        let response = send(
            &gateway,
            b"POST /input?mode=read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        );
        assert_eq!(response.json()["parts"][0], "hello");
    }
}

mod target_forms {
    use super::*;

    #[test]
    fn a_form_the_method_does_not_allow_is_400() {
        let gateway = GatewayBuilder::new().start();
        let reason = "a request-target form the method does not allow";
        for line in [
            "GET * HTTP/1.1",
            "POST * HTTP/1.1",
            "GET example.com:80 HTTP/1.1",
            "OPTIONS example.com:443 HTTP/1.1",
            "CONNECT /raise HTTP/1.1",
        ] {
            let raw = format!("{line}\r\nHost: x\r\n\r\n");
            refused_before_the_app(&gateway, line, raw.as_bytes(), reason);
        }
    }

    #[test]
    fn asterisk_options_and_absolute_form_reach_the_app() {
        let gateway = GatewayBuilder::new().start();
        let before = app_calls(&gateway);
        let response = send(
            &gateway,
            b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        // The contract app has no route for `*`: its own 404 shows it was called.
        assert_eq!(response.status, 404, "{response:?}");
        assert_eq!(response.text(), "no such route: *");
        let response = send(
            &gateway,
            b"GET http://x/status?code=200 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(app_calls(&gateway), before + 3);
    }
}

mod methods {
    use super::*;

    const UNCONVENTIONAL: [&str; 5] = ["get", "-bl", "GE", "M#X", "ABCDEFGHIJKLMNOPQRSTU"];

    #[test]
    fn unconventional_methods_are_400_by_default() {
        let gateway = GatewayBuilder::new().start();
        for method in UNCONVENTIONAL {
            let raw = format!("{method} /raise HTTP/1.1\r\nHost: x\r\n\r\n");
            refused_before_the_app(&gateway, method, raw.as_bytes(), "an unconventional method");
        }
        // Conventional extension methods still reach the app (its 404 says so).
        for method in ["PROPFIND", "M-SEARCH"] {
            let raw = format!("{method} /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            assert_eq!(send(&gateway, raw.as_bytes()).status, 404, "{method}");
        }
    }

    #[test]
    fn permit_unconventional_methods_lets_any_token_through() {
        let gateway = GatewayBuilder::new()
            .config("[limits]\npermit_unconventional_methods = true\n")
            .start();
        for method in UNCONVENTIONAL {
            let raw = format!("{method} /environ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let response = send(&gateway, raw.as_bytes());
            assert_eq!(response.status, 200, "{method}: {response:?}");
            assert_eq!(response.json()["REQUEST_METHOD"], method);
        }
        // Still a token: hyper refuses anything else.
        let raw = gateway.raw(b"G@T /raise HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(raw.starts_with(b"HTTP/1.1 400 "));
    }

    /// The status of `method /environ` over HTTP/2 with prior knowledge.
    fn over_http2(gateway: &Gateway, method: &str) -> u16 {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
            let (mut sender, connection) = hyper::client::conn::http2::handshake(
                hyper_util::rt::TokioExecutor::new(),
                hyper_util::rt::TokioIo::new(tcp),
            )
            .await
            .unwrap();
            tokio::spawn(connection);
            let request = http::Request::builder()
                .method(method)
                .uri("http://h2.test/environ")
                .body(http_body_util::Empty::<bytes::Bytes>::new())
                .unwrap();
            let response = tokio::time::timeout(common::WAIT, sender.send_request(request))
                .await
                .expect("an HTTP/2 response in time")
                .unwrap();
            response.status().as_u16()
        })
    }

    #[test]
    fn the_method_rule_applies_to_http2_too() {
        let strict = GatewayBuilder::new().start();
        let before = app_calls(&strict);
        assert_eq!(over_http2(&strict, "get"), 400);
        assert_eq!(app_calls(&strict), before + 1, "get reached the app");
        assert_eq!(over_http2(&strict, "GET"), 200);
        let permissive = GatewayBuilder::new()
            .config("[limits]\npermit_unconventional_methods = true\n")
            .start();
        assert_eq!(over_http2(&permissive, "get"), 200);
    }
}

mod long_header_lines {
    use super::*;

    #[test]
    fn a_header_line_over_16_kib_gets_431_like_a_shorter_one() {
        let gateway = GatewayBuilder::new().start();
        for size in [9_000, 16 << 10, 17_000, 30_000] {
            let before = app_calls(&gateway);
            let raw = format!(
                "GET /raise HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
                "b".repeat(size)
            );
            let response = send(&gateway, raw.as_bytes());
            assert_eq!(response.status, 431, "a {size}-byte value: {response:?}");
            assert_eq!(app_calls(&gateway), before + 1, "{size} reached the app");
        }
        assert!(!gateway
            .logs()
            .contains("refusing a malformed HTTP/1 request"));
        still_serves(&gateway);
    }
}

mod environ {
    use super::*;

    #[test]
    fn server_port_is_the_port_the_request_arrived_on_unless_host_names_one() {
        let gateway = GatewayBuilder::new().start();
        let env = gateway.get_json("/environ");
        assert_eq!(env["HTTP_HOST"], "test.local");
        assert_eq!(env["SERVER_NAME"], "test.local");
        assert_eq!(env["SERVER_PORT"], gateway.addr.port().to_string());
        let response = send(
            &gateway,
            b"GET /environ HTTP/1.1\r\nHost: test.local:8443\r\nConnection: close\r\n\r\n",
        );
        assert_eq!(response.json()["SERVER_NAME"], "test.local");
        assert_eq!(response.json()["SERVER_PORT"], "8443");
    }
}

mod response_headers {
    use super::*;

    #[test]
    fn header_values_from_the_app_are_sent_without_surrounding_whitespace() {
        let gateway = GatewayBuilder::new().start();
        let raw =
            gateway.raw(b"GET /padded-headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
        assert!(text.starts_with("http/1.1 200 "), "{text}");
        assert!(
            text.contains("\r\nset-cookie: session=abc; path=/\r\n"),
            "{text}"
        );
        assert!(text.contains("\r\nx-padded: value\r\n"), "{text}");
    }
}
