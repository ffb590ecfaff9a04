//! The response path under careless or hostile use (issue 11, items 3, 8, 9 and 11):
//! access log lines a client cannot forge fields into, `write()` from another thread,
//! HEAD answered with the headers GET would carry, and tiny chunks that do not inflate
//! the output. Real binary, raw sockets where the bytes on the wire are the point.

mod common;

use std::io::{BufRead, BufReader, Read, Write};

use common::{eventually, scratch_dir, GatewayBuilder};

/// The contract app's `noise(n)`: a 31-bit LCG's high bits, bytes that do not compress.
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 12345;
    (0..n)
        .map(|_| {
            x = (x * 1_103_515_245 + 12_345) & 0x7FFF_FFFF;
            ((x >> 16) & 0xFF) as u8
        })
        .collect()
}

/// A response as it came off the wire: its head, and the bytes after the head.
struct Wire {
    status: u16,
    headers: Vec<(String, String)>,
    /// Everything after the blank line: chunk framing included.
    after_head: Vec<u8>,
}

impl Wire {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body with chunked framing removed (if it is chunked).
    fn body(&self) -> Vec<u8> {
        if self.header("transfer-encoding") != Some("chunked") {
            return self.after_head.clone();
        }
        let mut body = Vec::new();
        let mut rest = &self.after_head[..];
        loop {
            let line_end = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size = std::str::from_utf8(&rest[..line_end]).unwrap();
            let size = usize::from_str_radix(size.split(';').next().unwrap(), 16).unwrap();
            rest = &rest[line_end + 2..];
            if size == 0 {
                return body;
            }
            body.extend_from_slice(&rest[..size]);
            assert_eq!(&rest[size..size + 2], b"\r\n", "chunk framing");
            rest = &rest[size + 2..];
        }
    }
}

/// Send `head` (a whole request head) on a new connection and read until the server
/// closes it.
fn exchange(gateway: &common::Gateway, head: &str) -> Wire {
    let mut stream = gateway.connect();
    stream.write_all(head.as_bytes()).unwrap();
    let bytes = common::read_to_close(&mut stream);
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let text = String::from_utf8_lossy(&bytes[..end]).into_owned();
    let mut lines = text.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap();
    let headers = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_ascii_lowercase(), value.trim().to_owned())
        })
        .collect();
    Wire {
        status: status.parse().unwrap(),
        headers,
        after_head: bytes[end + 4..].to_vec(),
    }
}

fn get_head(target: &str, accept_encoding: Option<&str>) -> String {
    let encoding = accept_encoding
        .map(|e| format!("Accept-Encoding: {e}\r\n"))
        .unwrap_or_default();
    format!("GET {target} HTTP/1.1\r\nHost: t\r\n{encoding}Connection: close\r\n\r\n")
}

fn decode(encoding: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        "gzip" => {
            flate2::read::GzDecoder::new(data)
                .read_to_end(&mut out)
                .unwrap();
        }
        "br" => {
            brotli::Decompressor::new(data, 4096)
                .read_to_end(&mut out)
                .unwrap();
        }
        "zstd" => out = zstd::decode_all(data).unwrap(),
        other => panic!("unexpected coding {other}"),
    }
    out
}

fn compression_gateway(app: &str) -> common::Gateway {
    GatewayBuilder::new()
        .app(app)
        .config("[[middleware]]\nkind = \"compression\"\n")
        .start()
}

/// The most the bytes after the head may exceed the body by: a small constant plus a
/// hundredth (chunk sizes and compressor flushes when the app pauses). Before coalescing
/// it was 6x (chunked framing) and 4x to 7x (one compressor flush per byte).
fn allowed_on_the_wire(body: usize) -> usize {
    body + body / 100 + 1024
}

const TINY_CHUNKS: usize = 100_000;

#[test]
fn one_byte_chunks_leave_in_few_frames() {
    let gateway = GatewayBuilder::new().start();
    let wire = exchange(
        &gateway,
        &get_head(&format!("/tiny-chunks?n={TINY_CHUNKS}"), None),
    );
    assert_eq!(wire.status, 200);
    assert_eq!(wire.header("transfer-encoding"), Some("chunked"));
    assert_eq!(wire.body(), noise(TINY_CHUNKS));
    assert!(
        wire.after_head.len() <= allowed_on_the_wire(TINY_CHUNKS),
        "{} bytes of chunked framing for a {TINY_CHUNKS}-byte body",
        wire.after_head.len()
    );
    // The server keeps serving.
    assert_eq!(gateway.get("/pid").status, 200);
}

#[test]
fn one_byte_chunks_compress_to_no_more_than_the_body() {
    let gateway = compression_gateway("contract:application");
    for encoding in ["gzip", "br", "zstd"] {
        let wire = exchange(
            &gateway,
            &get_head(&format!("/tiny-chunks?n={TINY_CHUNKS}"), Some(encoding)),
        );
        assert_eq!(wire.status, 200);
        assert_eq!(wire.header("content-encoding"), Some(encoding));
        assert_eq!(
            decode(encoding, &wire.body()),
            noise(TINY_CHUNKS),
            "{encoding}"
        );
        assert!(
            wire.after_head.len() <= allowed_on_the_wire(TINY_CHUNKS),
            "{encoding}: {} bytes on the wire for a {TINY_CHUNKS}-byte body",
            wire.after_head.len()
        );
    }
}

/// A decoder fed chunk by chunk, for codings that must be decodable mid-stream.
enum Partial {
    Identity(Vec<u8>),
    Gzip(Box<flate2::write::GzDecoder<Vec<u8>>>),
    Brotli(Box<brotli::DecompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Decoder<'static, Vec<u8>>),
}

impl Partial {
    fn new(encoding: Option<&str>) -> Self {
        match encoding {
            None => Partial::Identity(Vec::new()),
            Some("gzip") => Partial::Gzip(Box::new(flate2::write::GzDecoder::new(Vec::new()))),
            Some("br") => {
                Partial::Brotli(Box::new(brotli::DecompressorWriter::new(Vec::new(), 4096)))
            }
            Some("zstd") => Partial::Zstd(zstd::stream::write::Decoder::new(Vec::new()).unwrap()),
            Some(other) => panic!("unexpected coding {other}"),
        }
    }

    /// Feed `data`; everything decodable so far.
    fn feed(&mut self, data: &[u8]) -> Vec<u8> {
        match self {
            Partial::Identity(out) => {
                out.extend_from_slice(data);
                out.clone()
            }
            Partial::Gzip(d) => {
                d.write_all(data).unwrap();
                d.flush().unwrap();
                d.get_ref().clone()
            }
            Partial::Brotli(d) => {
                d.write_all(data).unwrap();
                d.flush().unwrap();
                d.get_ref().clone()
            }
            Partial::Zstd(d) => {
                d.write_all(data).unwrap();
                d.flush().unwrap();
                d.get_ref().clone()
            }
        }
    }
}

/// Coalescing must not hold back a chunk the app has yielded before it waits: the app
/// yields a first chunk, then waits for a flag file that the test creates only once it
/// has decoded that whole chunk, with every coding and without.
#[test]
fn a_chunk_before_a_pause_reaches_the_client_at_once() {
    let gateway = compression_gateway("contract:text_app");
    let first = "first chunk ".repeat(40);
    for encoding in [None, Some("gzip"), Some("br"), Some("zstd")] {
        let flag = scratch_dir("pause").join("go");
        let mut stream = gateway.connect();
        stream
            .write_all(get_head(&format!("/flush?flag={}", flag.display()), encoding).as_bytes())
            .unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(coding) = line.to_ascii_lowercase().strip_prefix("content-encoding:") {
                assert_eq!(Some(coding.trim()), encoding);
            }
        }
        let mut decoder = Partial::new(encoding);
        let mut so_far = Vec::new();
        while so_far.len() < first.len() {
            line.clear();
            reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap();
            assert!(size > 0, "{encoding:?}: the body ended early");
            let mut chunk = vec![0u8; size + 2];
            reader.read_exact(&mut chunk).unwrap();
            so_far = decoder.feed(&chunk[..size]);
        }
        let text = String::from_utf8(so_far).unwrap();
        assert_eq!(
            text, first,
            "{encoding:?}: only the first chunk, before the flag"
        );
        std::fs::write(&flag, "go").unwrap();
        let mut rest = Vec::new();
        reader.read_to_end(&mut rest).unwrap();
        assert!(!rest.is_empty());
    }
}

/// Status, then the header fields that must be equal between GET and HEAD (RFC 9110
/// section 9.3.2): all but Date, and Transfer-Encoding, which a HEAD response omits.
fn comparable(wire: &Wire) -> (u16, Vec<(String, String)>) {
    let mut headers: Vec<(String, String)> = wire
        .headers
        .iter()
        .filter(|(name, _)| name != "date" && name != "transfer-encoding")
        .cloned()
        .collect();
    headers.sort();
    (wire.status, headers)
}

fn head_head(target: &str, accept_encoding: Option<&str>) -> String {
    get_head(target, accept_encoding).replacen("GET", "HEAD", 1)
}

#[test]
fn head_carries_the_headers_get_would() {
    let plain = GatewayBuilder::new().start();
    let compressing = compression_gateway("contract:application");
    let cases = [
        (&plain, "/big", None),
        (&plain, "/big-gen", None),
        (&compressing, "/big", None),
        (&compressing, "/big", Some("gzip")),
        (&compressing, "/big-gen", Some("br")),
    ];
    for (gateway, target, encoding) in cases {
        let get = exchange(gateway, &get_head(target, encoding));
        let head = exchange(gateway, &head_head(target, encoding));
        assert_eq!(
            comparable(&head),
            comparable(&get),
            "{target} with Accept-Encoding {encoding:?}"
        );
        assert!(head.after_head.is_empty(), "a HEAD response has no body");
    }
    // The defect as filed: GET /big had Content-Length: 5000, HEAD none; through
    // compression GET had Content-Encoding: gzip and HEAD did not.
    let head = exchange(&plain, &head_head("/big", None));
    assert_eq!(head.header("content-length"), Some("5000"));
    let head = exchange(&compressing, &head_head("/big", Some("gzip")));
    assert_eq!(head.header("content-encoding"), Some("gzip"));
    assert_eq!(head.header("content-length"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_over_http2_has_the_length_and_no_body() {
    use http_body_util::BodyExt;
    let gateway = GatewayBuilder::new().start();
    let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    for method in ["GET", "HEAD"] {
        let request = http::Request::builder()
            .method(method)
            .uri("http://h2.test/big")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.headers().get("content-length").unwrap(),
            "5000",
            "{method}"
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(body.len(), if method == "GET" { 5000 } else { 0 });
    }
}

/// Undo the access log's `\xHH` escapes.
fn unescape(field: &str) -> Vec<u8> {
    let bytes = field.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' {
            assert_eq!(bytes[i + 1], b'x', "only \\xHH escapes: {field}");
            let hex = std::str::from_utf8(&bytes[i + 2..i + 4]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// Split a combined-format line into its nine fields, refusing any extra quote.
fn combined_fields(line: &str) -> Vec<String> {
    let line = line.trim_end_matches('\n');
    assert!(!line.contains('\n'), "one line: {line:?}");
    assert!(
        line.bytes().all(|b| (0x20..0x7f).contains(&b)),
        "printable ASCII only: {line:?}"
    );
    let quoted: Vec<&str> = line.split('"').collect();
    assert_eq!(quoted.len(), 7, "exactly three quoted fields: {line}");
    let (head, request, middle, referer, between, agent, end) = (
        quoted[0], quoted[1], quoted[2], quoted[3], quoted[4], quoted[5], quoted[6],
    );
    assert_eq!((between, end), (" ", ""), "{line}");
    let head: Vec<&str> = head.trim_end().splitn(4, ' ').collect();
    let middle: Vec<&str> = middle.split_whitespace().collect();
    assert_eq!(head.len(), 4, "{line}");
    assert_eq!(middle.len(), 2, "{line}");
    let mut fields: Vec<String> = head.iter().map(|s| s.to_string()).collect();
    fields.push(request.into());
    fields.extend(middle.iter().map(|s| s.to_string()));
    fields.push(referer.into());
    fields.push(agent.into());
    fields
}

#[test]
fn access_log_lines_cannot_be_forged_by_the_client() {
    let dir = scratch_dir("access-escape");
    let combined = dir.join("combined.log");
    let json = dir.join("json.log");
    let atoms = dir.join("atoms.log");
    let config = format!(
        r#"
[[middleware]]
kind = "access_log"
output = "{}"

[[middleware]]
kind = "access_log"
format = "json"
output = "{}"

[[middleware]]
kind = "access_log"
format = '%(r)s|%(U)s|%(q)s|%(a)s|%(f)s|%({{x-note}}i)s|%({{x-echo}}o)s'
output = "{}"
"#,
        combined.display(),
        json.display(),
        atoms.display()
    );
    let gateway = GatewayBuilder::new().config(&config).start();
    // A User-Agent that closes its quotes and forges a status, size, referer and agent
    // of its own, with a backslash, a tab and a byte that is not ASCII; a Referer with a
    // quote; a target with a quote (the canonical path spells it %22) and a backslash.
    let agent: &[u8] = b"evil\" 200 1 \"http://forged/\" \"forged\\\tagent\xff";
    let referer: &[u8] = b"http://r/\"x";
    let mut request = Vec::new();
    request.extend_from_slice(b"GET /environ\"x?a=\\ HTTP/1.1\r\nHost: t\r\nUser-Agent: ");
    request.extend_from_slice(agent);
    request.extend_from_slice(b"\r\nReferer: ");
    request.extend_from_slice(referer);
    request.extend_from_slice(b"\r\nX-Note: \"note\"\r\nConnection: close\r\n\r\n");
    let mut stream = gateway.connect();
    stream.write_all(&request).unwrap();
    let response = common::read_to_close(&mut stream);
    assert!(
        response.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&response)
    );

    let read = |path: &std::path::Path| {
        eventually("the access log line", || {
            std::fs::read_to_string(path)
                .ok()
                .filter(|t| t.ends_with('\n'))
        })
    };
    // The target as the client sent it (as nginx's `$request`), its quote escaped.
    let request_line = b"GET /environ\"x?a=\\ HTTP/1.1";
    let line = read(&combined);
    let fields = combined_fields(&line);
    assert_eq!(fields[0], "127.0.0.1", "{line}");
    assert_eq!(unescape(&fields[4]), request_line, "{line}");
    assert_eq!(fields[5], "200", "{line}");
    assert_eq!(unescape(&fields[7]), referer, "{line}");
    assert_eq!(unescape(&fields[8]), agent, "{line}");
    assert!(line.contains(r#"?a=\x5C HTTP/1.1"#), "{line}");
    assert!(
        line.contains(r#"evil\x22 200 1 \x22http://forged/\x22"#),
        "{line}"
    );
    assert!(line.contains(r"forged\x5C\x09agent\xFF"), "{line}");

    let entry: serde_json::Value = serde_json::from_str(read(&json).trim()).unwrap();
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["path"], "/environ\"x");
    assert_eq!(entry["query"], "a=\\");
    assert_eq!(entry["referer"], "http://r/\"x");
    assert_eq!(
        entry["user_agent"],
        "evil\" 200 1 \"http://forged/\" \"forged\\\tagent\u{FFFD}"
    );

    let line = read(&atoms);
    let fields: Vec<&str> = line.trim_end_matches('\n').split('|').collect();
    assert_eq!(fields.len(), 7, "{line}");
    assert_eq!(unescape(fields[0]), request_line);
    assert_eq!(fields[1], r"/environ\x22x");
    assert_eq!(fields[2], r"a=\x5C");
    assert_eq!(unescape(fields[3]), agent);
    assert_eq!(unescape(fields[4]), referer);
    assert_eq!(fields[5], r"\x22note\x22");
    assert_eq!(fields[6], "-");
    assert_eq!(gateway.get("/pid").status, 200);
}

/// The app calls `write()` from a producer thread while its iterable waits; the
/// iterable yields a chunk while one of those `write()` calls is blocked on a client
/// that is not reading. Every byte arrives, in order per thread, and `close()` runs
/// exactly once.
#[test]
fn write_from_another_thread_while_the_iterable_waits() {
    let gateway = GatewayBuilder::new().start();
    const CHUNKS: usize = 128;
    const SIZE: usize = 256 << 10;
    let mut stream = gateway.connect();
    stream
        .write_all(
            get_head(
                &format!("/write-from-thread?id=w1&n={CHUNKS}&size={SIZE}"),
                None,
            )
            .as_bytes(),
        )
        .unwrap();
    // Read nothing until the producer is stuck in write() and the iterable yields.
    eventually("the iterable to yield while write() waits", || {
        let state = gateway.get_json("/writer-state?id=w1");
        (state["yielding"] == true).then_some(())
    });
    let mut reader = BufReader::new(stream);
    let response = common::read_response(&mut reader, false).unwrap();
    assert_eq!(response.status, 200);
    assert!(response.complete, "the body was cut short");
    let body = response.body;
    let marker = b"<iterable chunk>";
    let at = body
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the iterable's chunk");
    let mut written = body[..at].to_vec();
    written.extend_from_slice(&body[at + marker.len()..]);
    assert!(written.ends_with(b"<end>"));
    written.truncate(written.len() - b"<end>".len());
    assert_eq!(written.len(), CHUNKS * SIZE);
    for (i, chunk) in written.chunks(SIZE).enumerate() {
        let letter = b'A' + (i % 26) as u8;
        assert!(chunk.iter().all(|&b| b == letter), "chunk {i}");
    }
    assert_eq!(at % SIZE, 0, "the iterable's chunk fell between two writes");
    let state = gateway.get_json("/writer-state?id=w1");
    assert_eq!(state["error"], serde_json::Value::Null, "{state}");
    assert_eq!(state["written"], CHUNKS);
    eventually("close() to be called", || {
        let closes = gateway.get_json("/closes");
        (closes["w1"] == 1).then_some(())
    });
    assert!(!gateway.logs().contains("panicked"), "{}", gateway.logs());
}
