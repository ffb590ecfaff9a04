//! wsgi.input: streaming reads with every file method, chunked bodies, 100-continue,
//! body limits.

mod common;

use std::io::{BufRead, BufReader, Read, Write};

use common::{read_response, GatewayBuilder};

const LINES: &str = "first line\nsecond, longer line\n\nlast without newline";

fn post_chunked(gateway: &common::Gateway, target: &str, pieces: &[&[u8]]) -> common::Response {
    let mut stream = gateway.connect();
    let mut raw = format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    for piece in pieces {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    stream.write_all(&raw).unwrap();
    read_response(&mut BufReader::new(stream), false).unwrap()
}

fn parts(response: &common::Response) -> Vec<String> {
    let json = response.json();
    assert_eq!(json["eof"], true, "{json}");
    json["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn every_read_method_sees_the_same_body_with_content_length_and_chunked() {
    let gateway = GatewayBuilder::new().start();
    let expected_lines = vec![
        "first line\n".to_owned(),
        "second, longer line\n".to_owned(),
        "\n".to_owned(),
        "last without newline".to_owned(),
    ];
    // Chunk boundaries that fall inside lines.
    let pieces: Vec<&[u8]> = vec![
        b"first li",
        b"ne\nsecond, lo",
        b"nger line\n\nlast",
        b" without newline",
    ];
    for mode in ["readline", "readlines", "iter"] {
        let with_length = gateway.request(
            "POST",
            &format!("/input?mode={mode}"),
            &[],
            LINES.as_bytes(),
        );
        assert_eq!(
            parts(&with_length),
            expected_lines,
            "{mode} with Content-Length"
        );
        let chunked = post_chunked(&gateway, &format!("/input?mode={mode}"), &pieces);
        assert_eq!(parts(&chunked), expected_lines, "{mode} chunked");
    }
    let read = post_chunked(&gateway, "/input?mode=read", &pieces);
    assert_eq!(parts(&read), vec![LINES.to_owned()]);
    assert_eq!(read.json()["content_length"], serde_json::Value::Null);

    let read_n = gateway.request("POST", "/input?mode=read-n&n=7", &[], LINES.as_bytes());
    let got = parts(&read_n);
    assert!(got[..got.len() - 1].iter().all(|p| p.len() == 7), "{got:?}");
    assert_eq!(got.concat(), LINES);
    let read_n = post_chunked(&gateway, "/input?mode=read-n&n=7", &pieces);
    assert_eq!(parts(&read_n).concat(), LINES);

    let readline_n = post_chunked(&gateway, "/input?mode=readline-n&n=6", &pieces);
    let got = parts(&readline_n);
    assert_eq!(got[0], "first ");
    assert_eq!(got[1], "line\n");
    assert!(got.iter().all(|p| p.len() <= 6), "{got:?}");
    assert_eq!(got.concat(), LINES);
}

#[test]
fn a_large_upload_streams_through_intact() {
    let gateway = GatewayBuilder::new().start();
    let body: Vec<u8> = (0..8_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
    let expected = {
        let output = std::process::Command::new("sha256sum")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                child.stdin.take().unwrap().write_all(&body)?;
                child.wait_with_output()
            })
            .unwrap();
        String::from_utf8(output.stdout).unwrap()[..64].to_owned()
    };
    let response = gateway.request("POST", "/digest", &[], &body);
    assert_eq!(response.json()["sha256"], expected.as_str());
    assert_eq!(response.json()["bytes"], 8_000_000);
    let pieces: Vec<&[u8]> = body.chunks(100_003).collect();
    let response = post_chunked(&gateway, "/digest", &pieces);
    assert_eq!(response.json()["sha256"], expected.as_str());
}

#[test]
fn expect_100_continue_is_answered_when_the_app_reads() {
    let gateway = GatewayBuilder::new().start();
    let mut stream = gateway.connect();
    stream
        .write_all(b"POST /input?mode=read HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 100 Continue"), "{status:?}");
    let mut blank = String::new();
    reader.read_line(&mut blank).unwrap();
    assert_eq!(blank, "\r\n");
    stream.write_all(b"hello").unwrap();
    let response = read_response(&mut reader, false).unwrap();
    assert_eq!(response.json()["parts"][0], "hello");
}

#[test]
fn expect_100_continue_is_not_sent_when_the_app_does_not_read() {
    let gateway = GatewayBuilder::new().start();
    let mut stream = gateway.connect();
    stream
        .write_all(b"POST /ignore-body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(response.status, 200);
    assert!(
        response.header("x-test-saw-interim").is_none(),
        "{response:?}"
    );
    assert_eq!(response.text(), "did not read");
}

#[test]
fn declared_body_over_the_limit_gets_413_before_the_app_runs() {
    let gateway = GatewayBuilder::new()
        .config("[limits]\nmax_body_size = \"1KiB\"\n")
        .start();
    let calls_before = gateway.get_json("/calls")["count"].as_i64().unwrap();
    let mut stream = gateway.connect();
    stream
        .write_all(b"POST /digest HTTP/1.1\r\nHost: x\r\nContent-Length: 2048\r\n\r\n")
        .unwrap();
    let response = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(response.status, 413);
    let calls_after = gateway.get_json("/calls")["count"].as_i64().unwrap();
    assert_eq!(
        calls_after,
        calls_before + 1,
        "only the /calls probe reached the app"
    );
}

/// 16 MiB, far more than the socket buffers hold.
const UPLOAD_PIECES: usize = 256;
const UPLOAD_PIECE: usize = 64 << 10;

/// POST a 16 MiB body with `extra` header lines, written whole before anything is
/// read, as `http.client` and curl do; `before_piece(n)` runs before piece `n`. Panics
/// if the server cuts the upload; returns the answer read after it.
fn upload_then_read(
    gateway: &common::Gateway,
    extra: &str,
    mut before_piece: impl FnMut(usize),
) -> common::Response {
    let mut stream = gateway.connect();
    let head = format!(
        "POST /digest HTTP/1.1\r\nHost: x\r\n{extra}Content-Length: {}\r\n\r\n",
        UPLOAD_PIECE * UPLOAD_PIECES
    );
    stream.write_all(head.as_bytes()).unwrap();
    let piece = vec![b'a'; UPLOAD_PIECE];
    for sent in 0..UPLOAD_PIECES {
        before_piece(sent);
        if let Err(error) = stream.write_all(&piece) {
            panic!("the upload was cut after {sent} of {UPLOAD_PIECES} pieces: {error}");
        }
    }
    read_response(&mut BufReader::new(stream), false).expect("the answer")
}

/// A client that sends a body the server refuses before reading it (413 for a
/// declared length over `max_body_size`, 431 for a head too large) can send all of it
/// and still read the answer: the server drains the rest (lingering close, as nginx
/// does) instead of resetting the connection, which makes curl and browsers report a
/// failed upload instead of the answer.
#[test]
fn a_refused_upload_can_be_sent_whole_and_its_answer_read() {
    let gateway = GatewayBuilder::new()
        .config("[limits]\nmax_body_size = \"1KiB\"\n")
        .start();
    assert_eq!(upload_then_read(&gateway, "", |_| {}).status, 413);
    assert_eq!(gateway.get("/calls").status, 200);
    // A head refused before any body exists: 431 for a field too large.
    let big = format!("X-Big: {}\r\n", "b".repeat(100 << 10));
    assert_eq!(upload_then_read(&gateway, &big, |_| {}).status, 431);
}

/// A refused upload still lingering when the gateway is told to stop keeps draining
/// while the worker drains (up to `server.graceful_timeout`): the client still sends
/// all of it and reads its 413.
#[test]
fn a_stopping_gateway_lets_a_refused_upload_finish() {
    let gateway = GatewayBuilder::new()
        .config("[limits]\nmax_body_size = \"1KiB\"\n")
        .start();
    let response = upload_then_read(&gateway, "", |sent| {
        if sent == 32 {
            // The 413 has gone out; the socket lingers.
            gateway.signal(libc::SIGTERM);
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    });
    assert_eq!(response.status, 413);
}

#[test]
fn chunked_body_growing_over_the_limit_gets_413() {
    let gateway = GatewayBuilder::new()
        .config("[limits]\nmax_body_size = \"100KiB\"\n")
        .start();
    let piece = vec![b'a'; 30_000];
    let pieces: Vec<&[u8]> = vec![&piece; 5];
    let response = post_chunked(&gateway, "/digest", &pieces);
    assert_eq!(response.status, 413);
    let within: Vec<&[u8]> = vec![&piece; 3];
    assert_eq!(
        post_chunked(&gateway, "/digest", &within).json()["bytes"],
        90_000
    );
}

#[test]
fn an_unread_body_does_not_leak_into_the_next_request() {
    let gateway = GatewayBuilder::new().start();
    let mut stream = gateway.connect();
    // The body looks like a request; it must never be served as one.
    let smuggled = "GET /raise HTTP/1.1\r\nHost: x\r\n\r\n";
    stream
        .write_all(
            format!(
                "POST /ignore-body HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{smuggled}\
                 GET /write HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                smuggled.len()
            )
            .as_bytes(),
        )
        .unwrap();
    let mut all = Vec::new();
    stream.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all);
    assert!(!text.contains("500"), "{text}");
    assert!(!gateway.logs().contains("boom"), "{}", gateway.logs());
}
