//! The native layers over real HTTP: compression, auth, access log and headers, each in
//! front of a real WSGI app (static files: tests/static_files.rs).

mod common;

use std::io::{BufRead, BufReader, Read, Write};

use common::{eventually, scratch_dir, GatewayBuilder};

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn compression_gateway() -> common::Gateway {
    GatewayBuilder::new()
        .app("contract:text_app")
        .config("[[middleware]]\nkind = \"compression\"\n")
        .start()
}

#[test]
fn compression_negotiates_gzip_br_and_zstd() {
    let gateway = compression_gateway();
    let plain = gateway.get("/page");
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("accept-encoding"));

    let gzip = gateway.request("GET", "/page", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(gzip.header("content-encoding"), Some("gzip"));
    assert_eq!(gzip.header("content-length"), None);
    assert_eq!(gzip.header("vary"), Some("accept-encoding"));
    assert_eq!(gunzip(&gzip.body), plain.body);

    let br = gateway.request(
        "GET",
        "/page",
        &[("Accept-Encoding", "gzip;q=0.5, br")],
        b"",
    );
    assert_eq!(br.header("content-encoding"), Some("br"));
    let mut decoded = Vec::new();
    brotli::Decompressor::new(&br.body[..], 4096)
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, plain.body);

    let zstd = gateway.request(
        "GET",
        "/page",
        &[("Accept-Encoding", "zstd, gzip;q=0.9")],
        b"",
    );
    assert_eq!(zstd.header("content-encoding"), Some("zstd"));
    assert_eq!(zstd::decode_all(&zstd.body[..]).unwrap(), plain.body);

    let refused = gateway.request(
        "GET",
        "/page",
        &[("Accept-Encoding", "gzip;q=0, identity")],
        b"",
    );
    assert_eq!(refused.header("content-encoding"), None);
}

#[test]
fn compression_skips_small_bodies_and_event_streams() {
    let gateway = compression_gateway();
    let small = gateway.request("GET", "/small", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(small.header("content-encoding"), None);
    assert_eq!(small.text(), "tiny");
    let sse = gateway.request("GET", "/sse", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(sse.header("content-encoding"), None);
    // HEAD gets the head GET gets (RFC 9110 section 9.3.2), and no body.
    let head = gateway.request("HEAD", "/page", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(head.header("content-encoding"), Some("gzip"));
    assert!(head.body.is_empty());
}

#[test]
fn compression_flushes_a_streamed_response_chunk_by_chunk() {
    let gateway = compression_gateway();
    let flag = scratch_dir("flush").join("go");
    let mut stream = gateway.connect();
    stream
        .write_all(
            format!(
                "GET /flush?flag={} HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
                flag.display()
            )
            .as_bytes(),
        )
        .unwrap();
    // The app waits for the flag before its second chunk: the first chunk must be
    // decodable on its own before the flag exists.
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    line.clear();
    reader.read_line(&mut line).unwrap();
    let size = usize::from_str_radix(line.trim(), 16).unwrap();
    let mut chunk = vec![0u8; size + 2];
    reader.read_exact(&mut chunk).unwrap();
    let mut decoder = flate2::write::GzDecoder::new(Vec::new());
    decoder.write_all(&chunk[..size]).unwrap();
    decoder.flush().unwrap();
    let so_far = String::from_utf8(decoder.get_ref().clone()).unwrap();
    assert!(so_far.starts_with("first chunk"), "{so_far:?}");
    assert!(!so_far.contains("second"));
    std::fs::write(&flag, "go").unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert!(!rest.is_empty());
}

fn htpasswd(dir: &std::path::Path) -> std::path::PathBuf {
    let bcrypt_hash = bcrypt::hash("s3cret", 4).unwrap();
    let sha512 = std::process::Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt; print(crypt.crypt('hunter2', crypt.mksalt(crypt.METHOD_SHA512)))",
        ])
        .output()
        .unwrap();
    let sha512 = String::from_utf8(sha512.stdout).unwrap();
    let file = dir.join("htpasswd");
    std::fs::write(
        &file,
        format!("alice:{bcrypt_hash}\nbob:{}\n", sha512.trim()),
    )
    .unwrap();
    file
}

fn basic(user: &str, password: &str) -> String {
    use std::fmt::Write as _;
    let raw = format!("{user}:{password}");
    // Minimal base64 for the test (standard alphabet, padded).
    const TABLE: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::from("Basic ");
    for chunk in raw.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                let _ = write!(out, "{}", TABLE[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn basic_auth_against_htpasswd_sets_remote_user() {
    let dir = scratch_dir("auth");
    let file = htpasswd(&dir);
    let gateway = GatewayBuilder::new()
        .config(&format!(
            "[[middleware]]\nkind = \"auth\"\nhtpasswd = \"{}\"\nrealm = \"Staff\"\nexclude = [\"/status\"]\n",
            file.display()
        ))
        .start();
    let denied = gateway.get("/environ");
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.header("www-authenticate"),
        Some("Basic realm=\"Staff\", charset=\"UTF-8\"")
    );
    let wrong = gateway.request(
        "GET",
        "/environ",
        &[("Authorization", &basic("alice", "nope"))],
        b"",
    );
    assert_eq!(wrong.status, 401);
    let unknown = gateway.request(
        "GET",
        "/environ",
        &[("Authorization", &basic("mallory", "s3cret"))],
        b"",
    );
    assert_eq!(unknown.status, 401);
    for _ in 0..2 {
        let ok = gateway.request(
            "GET",
            "/environ",
            &[("Authorization", &basic("alice", "s3cret"))],
            b"",
        );
        assert_eq!(ok.status, 200);
        assert_eq!(ok.json()["REMOTE_USER"], "alice");
    }
    let sha = gateway.request(
        "GET",
        "/environ",
        &[("Authorization", &basic("bob", "hunter2"))],
        b"",
    );
    assert_eq!(sha.json()["REMOTE_USER"], "bob");
    assert_eq!(gateway.get("/status?code=200").status, 200, "excluded path");
    assert!(
        !gateway.logs().contains("s3cret"),
        "credentials must not be logged"
    );
}

#[test]
fn plain_text_htpasswd_entries_are_refused_at_startup() {
    let dir = scratch_dir("auth-plain");
    let file = dir.join("htpasswd");
    std::fs::write(&file, "carol:letmein\n").unwrap();
    let output = GatewayBuilder::new()
        .config(&format!(
            "[[middleware]]\nkind = \"auth\"\nhtpasswd = \"{}\"\n",
            file.display()
        ))
        .run();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stderr.contains("plain text"), "{}", output.stderr);
    assert!(output.stderr.contains("line 1"), "{}", output.stderr);
}

#[test]
fn bearer_tokens_from_the_environment() {
    let gateway = GatewayBuilder::new()
        .env("GW_TEST_TOKENS", "ci:tok-123, deploy:tok-456")
        .config("[[middleware]]\nkind = \"auth\"\nscheme = \"bearer\"\ntokens_env = \"GW_TEST_TOKENS\"\npaths = [\"/environ\"]\n")
        .start();
    let denied = gateway.get("/environ");
    assert_eq!(denied.status, 401);
    assert_eq!(
        denied.header("www-authenticate"),
        Some("Bearer realm=\"restricted\"")
    );
    let bad = gateway.request(
        "GET",
        "/environ",
        &[("Authorization", "Bearer tok-999")],
        b"",
    );
    assert_eq!(bad.status, 401);
    assert!(bad
        .header("www-authenticate")
        .unwrap()
        .contains("invalid_token"));
    let ok = gateway.request(
        "GET",
        "/environ",
        &[("Authorization", "Bearer tok-456")],
        b"",
    );
    assert_eq!(ok.json()["REMOTE_USER"], "deploy");
    assert_eq!(gateway.get("/status?code=200").status, 200, "outside paths");
}

#[test]
fn access_log_writes_combined_json_and_gunicorn_formats() {
    let dir = scratch_dir("access");
    let combined = dir.join("combined.log");
    let json = dir.join("json.log");
    let custom = dir.join("custom.log");
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
format = '%(m)s %(U)s %(q)s %(s)s %(B)s %({{x-request-id}}i)s %({{content-type}}o)s %(D)s'
output = "{}"
"#,
        combined.display(),
        json.display(),
        custom.display()
    );
    let gateway = GatewayBuilder::new().config(&config).start();
    let response = gateway.request(
        "GET",
        "/write?x=1",
        &[
            ("Referer", "http://ref.example/"),
            ("User-Agent", "tester/1.0"),
            ("X-Request-Id", "req-42"),
        ],
        b"",
    );
    assert_eq!(response.status, 200);
    let read = |path: &std::path::Path| {
        eventually("the access log line", || {
            std::fs::read_to_string(path)
                .ok()
                .filter(|t| t.ends_with('\n'))
        })
    };
    let line = read(&combined);
    assert!(line.starts_with("127.0.0.1 - - ["), "{line}");
    assert!(
        line.contains(
            "] \"GET /write?x=1 HTTP/1.1\" 200 21 \"http://ref.example/\" \"tester/1.0\""
        ),
        "{line}"
    );
    let entry: serde_json::Value = serde_json::from_str(read(&json).trim()).unwrap();
    assert_eq!(entry["request_id"], "req-42");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["bytes"], 21);
    assert_eq!(entry["path"], "/write");
    assert!(entry["duration_ms"].as_f64().unwrap() >= 0.0);
    let line = read(&custom);
    let parts: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &parts[..7],
        ["GET", "/write", "x=1", "200", "21", "req-42", "text/plain"],
        "{line}"
    );
    assert!(parts[7].parse::<u64>().is_ok(), "{line}");
}

#[test]
fn headers_layer_sets_security_headers_and_strips_request_headers() {
    let gateway = GatewayBuilder::new()
        .config(
            r#"
[[middleware]]
kind = "headers"
request.remove = ["X-Debug"]
request.set = { "X-Forwarded-Proto" = "https" }
response.set = { "Strict-Transport-Security" = "max-age=63072000", "X-Content-Type-Options" = "nosniff" }
"#,
        )
        .start();
    let response = gateway.request("GET", "/environ", &[("X-Debug", "1")], b"");
    assert_eq!(
        response.header("strict-transport-security"),
        Some("max-age=63072000")
    );
    assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
    let env = response.json();
    assert!(env.get("HTTP_X_DEBUG").is_none());
    assert_eq!(env["HTTP_X_FORWARDED_PROTO"], "https");
}
