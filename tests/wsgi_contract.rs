//! PEP 3333 as the application sees it: environ, start_response, write(), exc_info,
//! wsgi.input, file_wrapper, Content-Length, bodiless responses and close().

mod common;

use std::io::{BufReader, Read, Write};

use common::{eventually, read_response, GatewayBuilder};

#[test]
fn environ_holds_cgi_values_as_latin1_strings() {
    let gateway = GatewayBuilder::new().start();
    let mut stream = gateway.connect();
    stream
        .write_all(
            b"GET /environ/caf%C3%A9/x?q=caf%C3%A9&a=1 HTTP/1.1\r\nHost: example.org:8080\r\n\
              Content-Type: text/plain\r\nX-Multi: one\r\nX-Multi: two\r\nCookie: a=1\r\nCookie: b=2\r\n\
              X-Latin: caf\xe9\r\nX_Auth_User: spoofed\r\nX-Auth-User: real\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    let env = response.json();
    // The path is percent-decoded, then each byte is one code point (latin-1).
    assert_eq!(env["PATH_INFO"], "/environ/caf\u{c3}\u{a9}/x");
    assert_eq!(env["QUERY_STRING"], "q=caf%C3%A9&a=1");
    assert_eq!(env["RAW_URI"], "/environ/caf%C3%A9/x?q=caf%C3%A9&a=1");
    assert_eq!(env["SCRIPT_NAME"], "");
    assert_eq!(env["REQUEST_METHOD"], "GET");
    assert_eq!(env["SERVER_PROTOCOL"], "HTTP/1.1");
    assert_eq!(env["SERVER_NAME"], "example.org");
    assert_eq!(env["SERVER_PORT"], "8080");
    assert_eq!(env["HTTP_HOST"], "example.org:8080");
    assert_eq!(env["REMOTE_ADDR"], "127.0.0.1");
    assert!(env["REMOTE_PORT"].as_str().unwrap().parse::<u16>().unwrap() > 0);
    assert_eq!(env["CONTENT_TYPE"], "text/plain");
    assert!(env.get("HTTP_CONTENT_TYPE").is_none());
    assert_eq!(env["HTTP_X_MULTI"], "one,two");
    assert_eq!(env["HTTP_COOKIE"], "a=1; b=2");
    assert_eq!(env["HTTP_X_LATIN"], "caf\u{e9}");
    // X_Auth_User would map to the same key as X-Auth-User: it is dropped.
    assert_eq!(env["HTTP_X_AUTH_USER"], "real");
    assert_eq!(env["wsgi.version"], serde_json::json!([1, 0]));
    assert_eq!(env["wsgi.url_scheme"], "http");
    assert_eq!(env["wsgi.input_terminated"], true);
    assert_eq!(env["wsgi.run_once"], false);
    assert_eq!(env["wsgi.multiprocess"], false);
}

#[test]
fn server_name_falls_back_to_the_local_address_without_host() {
    let gateway = GatewayBuilder::new().start();
    let mut stream = gateway.connect();
    stream.write_all(b"GET /environ HTTP/1.0\r\n\r\n").unwrap();
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    let env = response.json();
    assert_eq!(env["SERVER_NAME"], "127.0.0.1");
    assert_eq!(env["SERVER_PORT"], gateway.addr.port().to_string());
    assert_eq!(env["SERVER_PROTOCOL"], "HTTP/1.0");
    assert!(env.get("CONTENT_LENGTH").is_none());
}

#[test]
fn script_name_is_the_mount_prefix() {
    let gateway = GatewayBuilder::new()
        .config("[app]\nscript_name = \"/api\"\n")
        .start();
    let env = gateway.get_json("/api/environ?x=1");
    assert_eq!(env["SCRIPT_NAME"], "/api");
    assert_eq!(env["PATH_INFO"], "/environ");
    assert_eq!(gateway.get("/other").status, 404);
    assert_eq!(gateway.get("/apix/environ").status, 404);
}

#[test]
fn multithread_tells_the_truth() {
    let one = GatewayBuilder::new().arg("--threads=1").start();
    assert_eq!(one.get_json("/environ")["wsgi.multithread"], false);
    let four = GatewayBuilder::new().arg("--threads=4").start();
    assert_eq!(four.get_json("/environ")["wsgi.multithread"], true);
}

#[test]
fn write_callable_sends_before_the_iterable() {
    let gateway = GatewayBuilder::new().start();
    let response = gateway.get("/write");
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "written then returned");
}

#[test]
fn start_response_with_exc_info_replaces_the_head_before_the_body() {
    let gateway = GatewayBuilder::new().start();
    let response = gateway.get("/exc-info-before");
    assert_eq!(response.status, 503);
    assert_eq!(response.text(), "replaced");
}

#[test]
fn start_response_with_exc_info_after_the_head_reraises_and_cuts_the_body() {
    let gateway = GatewayBuilder::new().start();
    let response = gateway.get("/exc-info-after");
    assert_eq!(response.status, 200);
    assert!(
        !response.complete,
        "the client must see that the body was cut: {response:?}"
    );
    assert_eq!(response.text(), "first chunk");
    gateway.wait_for_log("too late");
}

#[test]
fn second_start_response_without_exc_info_is_an_error() {
    let gateway = GatewayBuilder::new().start();
    assert_eq!(gateway.get("/start-twice").status, 500);
    gateway.wait_for_log("start_response() called a second time without exc_info");
}

#[test]
fn start_response_may_be_called_lazily_from_the_iterable() {
    let gateway = GatewayBuilder::new().start();
    let response = gateway.get("/lazy-start");
    assert_eq!(response.status, 201);
    assert_eq!(response.text(), "lazy");
}

#[test]
fn a_body_without_start_response_is_an_error() {
    let gateway = GatewayBuilder::new().start();
    assert_eq!(gateway.get("/no-start").status, 500);
}

#[test]
fn app_exception_is_a_logged_traceback_and_a_500_and_serving_goes_on() {
    let gateway = GatewayBuilder::new().start();
    let response = gateway.get("/raise");
    assert_eq!(response.status, 500);
    assert!(
        !response.text().contains("boom"),
        "details must not reach the client"
    );
    let logs = gateway.wait_for_log("RuntimeError: boom from the app");
    assert!(logs.contains("Traceback (most recent call last)"), "{logs}");
    assert!(logs.contains("contract.py"), "{logs}");
    assert_eq!(gateway.get("/write").status, 200);
}

#[test]
fn non_bytes_body_is_an_error() {
    let gateway = GatewayBuilder::new().start();
    assert_eq!(gateway.get("/not-bytes").status, 500);
    gateway.wait_for_log("a WSGI body is made of bytes");
}

#[test]
fn hop_by_hop_and_crlf_headers_from_the_app_are_errors() {
    let gateway = GatewayBuilder::new().start();
    let response = gateway.get("/hop-by-hop");
    assert_eq!(response.status, 500);
    gateway.wait_for_log("hop-by-hop header \"Connection\"");
    let response = gateway.get("/crlf-header");
    assert_eq!(response.status, 500);
    assert!(response.header("Injected").is_none());
    gateway.wait_for_log("CR, LF or NUL");
}

#[test]
fn body_longer_than_content_length_is_truncated() {
    let gateway = GatewayBuilder::new().start();
    for path in ["/cl-more", "/cl-more-stream"] {
        let mut stream = gateway.connect();
        // Two requests on one connection: the second proves no stray bytes were sent.
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\nGET /write HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
            .unwrap();
        let mut reader = BufReader::new(stream);
        let first = read_response(&mut reader, false).unwrap();
        assert_eq!(first.body, b"0123456789", "{path}");
        let second = read_response(&mut reader, false).unwrap();
        assert_eq!(second.text(), "written then returned", "{path}");
    }
}

#[test]
fn body_shorter_than_content_length_closes_the_connection() {
    let gateway = GatewayBuilder::new().start();
    for path in ["/cl-less", "/cl-less-stream"] {
        let mut stream = gateway.connect();
        stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .unwrap();
        let response = read_response(&mut BufReader::new(stream), false).unwrap();
        assert_eq!(response.body, b"only ten b", "{path}");
        assert!(
            !response.complete,
            "{path}: the connection must close early"
        );
    }
}

#[test]
fn head_204_and_304_carry_no_body_and_close_is_still_called() {
    let gateway = GatewayBuilder::new().start();
    let mut stream = gateway.connect();
    stream
        .write_all(
            b"HEAD /status?code=200&id=head HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /status?code=204&id=s204 HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /status?code=304&id=s304 HTTP/1.1\r\nHost: x\r\n\r\n\
              GET /write HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    // The app produced "some body" three times; none of it may reach the wire.
    assert!(!text.contains("some body"), "{text}");
    let mut reader = BufReader::new(&all[..]);
    let head = read_response(&mut reader, true).unwrap();
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), Some("9"));
    let no_content = read_response(&mut reader, false).unwrap();
    assert_eq!(no_content.status, 204);
    assert_eq!(no_content.header("content-length"), None);
    let not_modified = read_response(&mut reader, false).unwrap();
    assert_eq!(not_modified.status, 304);
    let last = read_response(&mut reader, false).unwrap();
    assert_eq!(last.text(), "written then returned");
    let closes = gateway.get_json("/closes");
    for id in ["head", "s204", "s304"] {
        assert_eq!(closes[id], 1, "{id}: {closes}");
    }
}

#[test]
fn close_is_called_exactly_once_on_normal_end_and_on_error() {
    let gateway = GatewayBuilder::new().start();
    assert_eq!(gateway.get("/tracked?id=normal&n=3").body, b"xxx");
    let response = gateway.get("/raise-iter?id=failing");
    assert!(!response.complete || response.status == 500, "{response:?}");
    let closes = gateway.get_json("/closes");
    assert_eq!(closes["normal"], 1);
    assert_eq!(closes["failing"], 1);
    gateway.wait_for_log("failure while iterating");
}

#[test]
fn close_is_called_exactly_once_when_the_client_goes_away() {
    let gateway = GatewayBuilder::new().start();
    let mut stream = gateway.connect();
    // 200 chunks, 20 ms apart: the client leaves after the first bytes.
    stream
        .write_all(b"GET /tracked?id=gone&n=200&delay=0.02&size=1000 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 64];
    let n = stream.read(&mut first).unwrap();
    assert!(n > 0);
    drop(stream);
    let closes = eventually("close() after the client left", || {
        let closes = gateway.get_json("/closes");
        closes.get("gone").cloned()
    });
    assert_eq!(closes, 1);
}

#[test]
fn a_slow_reader_does_not_pin_a_python_thread_past_write_timeout() {
    let gateway = GatewayBuilder::new()
        .config("[server]\nthreads = 1\nwrite_timeout = \"1s\"\n")
        .start();
    let mut stream = gateway.connect();
    // 64 MiB that the client never reads.
    stream
        .write_all(b"GET /big-stream?id=stalled&n=1024&size=65536 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // With its only Python thread freed, the gateway serves others and the stalled
    // iterable is closed.
    let closes = eventually("the stalled response to be abandoned", || {
        gateway.get_json("/closes").get("stalled").cloned()
    });
    assert_eq!(closes, 1);
    drop(stream);
}

#[test]
fn large_streamed_response_arrives_whole() {
    let gateway = GatewayBuilder::new().start();
    let response = gateway.get("/big-stream?n=300&size=65536");
    assert_eq!(response.status, 200);
    assert!(response.complete);
    assert_eq!(response.body.len(), 300 * 65536);
    for (i, chunk) in response.body.chunks(65536).enumerate() {
        assert!(chunk.iter().all(|&b| b == (i % 256) as u8), "chunk {i}");
    }
}

#[test]
fn file_wrapper_serves_real_files_from_their_position_up_to_content_length() {
    let gateway = GatewayBuilder::new().start();
    let dir = common::scratch_dir("files");
    let file = dir.join("data.bin");
    let content: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &content).unwrap();
    let name = file.display().to_string();

    let whole = gateway.get(&format!("/file?name={name}"));
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("content-length"), Some("300000"));
    assert_eq!(whole.body, content);

    let tail = gateway.get(&format!("/file?name={name}&seek=1000"));
    assert_eq!(tail.body, &content[1000..]);

    let capped = gateway.get(&format!("/file?name={name}&cl=500"));
    assert_eq!(capped.header("content-length"), Some("500"));
    assert_eq!(capped.body, &content[..500]);

    let head = gateway.request("HEAD", &format!("/file?name={name}"), &[], b"");
    assert_eq!(head.header("content-length"), Some("300000"));
    assert!(head.body.is_empty());
}

#[test]
fn file_wrapper_iterates_file_like_objects_that_are_not_files() {
    let gateway = GatewayBuilder::new().start();
    let response = gateway.get("/filelike");
    assert_eq!(response.text(), "from a BytesIO ".repeat(3));
}

#[test]
fn wsgi_errors_goes_to_the_log() {
    let gateway = GatewayBuilder::new().start();
    assert_eq!(gateway.get("/errors").text(), "logged");
    gateway.wait_for_log("a line for the error log");
    gateway.wait_for_log("second line");
}

#[test]
fn requests_run_concurrently_on_the_configured_threads() {
    let gateway = GatewayBuilder::new().arg("--threads=4").start();
    // Four requests that each wait for the other three: only four threads can pass.
    let handles: Vec<_> = (0..4)
        .map(|_| gateway.get_in_background("/barrier?id=four&n=4"))
        .collect();
    let mut threads = std::collections::HashSet::new();
    for handle in handles {
        let response = handle.join().unwrap();
        assert_eq!(response.status, 200, "{}", response.text());
        threads.insert(response.json()["thread"].as_str().unwrap().to_owned());
    }
    assert_eq!(threads.len(), 4, "{threads:?}");
}
