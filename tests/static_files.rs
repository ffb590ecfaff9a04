//! The `static` layer over real HTTP, in front of the contract app: freshness of the
//! in-memory cache, its byte budget, preconditions and ranges, HEAD, containment,
//! fallthrough, precompressed siblings and variants compressed once behind
//! `compression`.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{scratch_dir, GatewayBuilder, Response};

/// How long a change on disk may take to be served: the layer's one-second bound plus
/// slack for a loaded machine.
const FRESH_WITHIN: Duration = Duration::from_secs(3);

const CSS: &str = "body { color: red }\n";

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn unbrotli(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    brotli::Decompressor::new(data, 4096)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// A site folder next to a secret file, with a symlink out of the site.
fn site() -> PathBuf {
    let root = scratch_dir("static-files");
    let site = root.join("site");
    std::fs::create_dir_all(site.join("docs")).unwrap();
    std::fs::write(site.join("app.css"), CSS.repeat(100)).unwrap();
    std::fs::write(site.join("docs/index.html"), "<h1>docs</h1>").unwrap();
    std::fs::write(root.join("secret.txt"), "top secret").unwrap();
    std::fs::create_dir_all(root.join("private")).unwrap();
    std::fs::write(root.join("private/key.txt"), "top secret key").unwrap();
    std::os::unix::fs::symlink(root.join("secret.txt"), site.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(root.join("private"), site.join("linked")).unwrap();
    site
}

/// A gateway with `before` entries (e.g. compression), then the static layer on
/// `/static` with `extra` keys, in front of the contract app.
fn gateway_with(site: &Path, before: &str, extra: &str) -> common::Gateway {
    GatewayBuilder::new()
        .env("RUST_LOG", "info,gateway_middleware::static_files=debug")
        .config(&format!(
            "{before}[[middleware]]\nkind = \"static\"\nmount = \"/static\"\ndir = \"{}\"\n\
             cache_control = \"public, max-age=60\"\n{extra}",
            site.display()
        ))
        .start()
}

fn gateway(site: &Path) -> common::Gateway {
    gateway_with(site, "", "")
}

/// Poll `check` until it returns Some, for at most `within`.
fn within<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not seen within {within:?}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn get_with(gateway: &common::Gateway, target: &str, headers: &[(&str, &str)]) -> Response {
    gateway.request("GET", target, headers, b"")
}

#[test]
fn changed_replaced_and_deleted_files_are_served_fresh_within_a_second() {
    let site = site();
    let gateway = gateway(&site);
    let first = gateway.get("/static/app.css");
    assert_eq!(first.text(), CSS.repeat(100));
    let first_tag = first.header("etag").unwrap().to_owned();
    // Cached now: the second request is answered from memory.
    assert_eq!(gateway.get("/static/app.css").body, first.body);
    gateway.wait_for_log("static cache: stored path=\"/app.css\"");

    // Modified in place, same size.
    let edited = CSS.replace("red", "tan").repeat(100);
    std::fs::write(site.join("app.css"), &edited).unwrap();
    let seen = within(FRESH_WITHIN, "the edited file", || {
        let response = gateway.get("/static/app.css");
        (response.text() == edited).then_some(response)
    });
    assert_ne!(seen.header("etag").unwrap(), first_tag);

    // Replaced by an atomic rename.
    let replaced = "main { display: grid }\n".repeat(50);
    std::fs::write(site.join(".app.css.tmp"), &replaced).unwrap();
    std::fs::rename(site.join(".app.css.tmp"), site.join("app.css")).unwrap();
    within(FRESH_WITHIN, "the replaced file", || {
        (gateway.get("/static/app.css").text() == replaced).then_some(())
    });

    // Deleted: the miss falls through to the app.
    std::fs::remove_file(site.join("app.css")).unwrap();
    within(FRESH_WITHIN, "the deletion", || {
        let response = gateway.get("/static/app.css");
        response
            .text()
            .contains("no such route: /static/app.css")
            .then_some(())
    });

    // Created again after a remembered miss.
    std::fs::write(site.join("app.css"), "p { }\n").unwrap();
    within(FRESH_WITHIN, "the new file", || {
        (gateway.get("/static/app.css").text() == "p { }\n").then_some(())
    });
}

/// A deploy that swaps a `current` symlink to a new release is served within the same
/// one-second bound (nginx follows the link for each file it opens), small files from
/// the cache and large ones from disk; the old release stays on disk untouched.
#[test]
fn a_swapped_release_symlink_is_followed_within_a_second() {
    let root = scratch_dir("static-releases");
    let release = |name: &str, css: &str, big: u8| {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.css"), css).unwrap();
        std::fs::write(dir.join("big.bin"), vec![big; 3 << 20]).unwrap();
    };
    release("r1", "body { color: red }\n", 1);
    release("r2", "body { color: blue }\n", 2);
    let current = root.join("current");
    std::os::unix::fs::symlink(root.join("r1"), &current).unwrap();
    let gateway = gateway(&current);
    assert_eq!(
        gateway.get("/static/app.css").text(),
        "body { color: red }\n"
    );
    assert_eq!(gateway.get("/static/big.bin").body[0], 1);
    // The deploy: a new link renamed over the old one (atomic).
    std::os::unix::fs::symlink(root.join("r2"), root.join("current.new")).unwrap();
    std::fs::rename(root.join("current.new"), &current).unwrap();
    within(FRESH_WITHIN, "the new release's stylesheet", || {
        (gateway.get("/static/app.css").text() == "body { color: blue }\n").then_some(())
    });
    let big = gateway.get("/static/big.bin");
    assert_eq!(big.body.len(), 3 << 20);
    assert!(
        big.body.iter().all(|&b| b == 2),
        "the new release's large file"
    );
}

/// Every `static cache:` debug line's `bytes=` and `budget=`.
fn cache_lines(logs: &str) -> Vec<(u64, u64, u64)> {
    let field = |line: &str, name: &str| -> Option<u64> {
        let at = line.find(&format!(" {name}="))? + name.len() + 2;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    logs.lines()
        .filter(|line| line.contains("static cache: stored"))
        .map(|line| {
            (
                field(line, "bytes").expect("bytes="),
                field(line, "budget").expect("budget="),
                field(line, "evicted").expect("evicted="),
            )
        })
        .collect()
}

#[test]
fn a_scan_of_many_files_keeps_the_cache_within_its_budget() {
    let site = site();
    let files = 200;
    for n in 0..files {
        std::fs::write(
            site.join(format!("f{n}.css")),
            format!("/* {n} */\n").repeat(400),
        )
        .unwrap();
    }
    let gateway = gateway_with(&site, "", "cache_size = \"64KiB\"\n");
    for n in 0..files {
        let response = gateway.get(&format!("/static/f{n}.css"));
        assert_eq!(response.status, 200);
        assert_eq!(response.text(), format!("/* {n} */\n").repeat(400));
    }
    let logs = gateway.wait_for_log(&format!(
        "static cache: stored path=\"/f{}.css\"",
        files - 1
    ));
    let lines = cache_lines(&logs);
    assert_eq!(lines.len(), files, "one store per file:\n{logs}");
    for (bytes, budget, _) in &lines {
        assert_eq!(*budget, 64 * 1024);
        assert!(bytes <= budget, "{bytes} bytes held, budget {budget}");
    }
    let evicted: u64 = lines.iter().map(|(_, _, evicted)| evicted).sum();
    assert!(evicted >= files as u64 - 32, "only {evicted} evictions");
    // An evicted file is read again.
    assert_eq!(
        gateway.get("/static/f0.css").text(),
        "/* 0 */\n".repeat(400)
    );
}

#[test]
fn conditional_requests_ranges_and_head() {
    let site = site();
    // The second file is over cache_max_file: the same rules hold when streaming.
    let large: Vec<u8> = (0..300_000u32).map(|n| (n % 251) as u8).collect();
    std::fs::write(site.join("large.bin"), &large).unwrap();
    let gateway = gateway_with(&site, "", "cache_max_file = \"64KiB\"\n");
    let css = std::fs::read(site.join("app.css")).unwrap();
    for (target, content) in [("/static/app.css", &css), ("/static/large.bin", &large)] {
        let full = gateway.get(target);
        assert_eq!(full.status, 200, "{target}");
        assert_eq!(&full.body, content, "{target}");
        assert_eq!(full.header("accept-ranges"), Some("bytes"));
        assert_eq!(full.header("cache-control"), Some("public, max-age=60"));
        let length = content.len().to_string();
        assert_eq!(full.header("content-length"), Some(length.as_str()));
        let etag = full.header("etag").unwrap().to_owned();
        let modified = full.header("last-modified").unwrap().to_owned();

        let not_modified = get_with(&gateway, target, &[("If-None-Match", &etag)]);
        assert_eq!(not_modified.status, 304, "{target}");
        assert!(not_modified.body.is_empty());
        assert_eq!(not_modified.header("etag"), Some(etag.as_str()));
        assert_eq!(
            not_modified.header("cache-control"),
            Some("public, max-age=60")
        );
        let weak = format!("\"other\", W/{etag}");
        assert_eq!(
            get_with(&gateway, target, &[("If-None-Match", &weak)]).status,
            304
        );
        let since = get_with(&gateway, target, &[("If-Modified-Since", &modified)]);
        assert_eq!(since.status, 304, "{target}");
        let stale = get_with(&gateway, target, &[("If-None-Match", "\"stale\"")]);
        assert_eq!((stale.status, &stale.body), (200, content));
        let failed = get_with(&gateway, target, &[("If-Match", "\"stale\"")]);
        assert_eq!(failed.status, 412, "{target}");

        let range = get_with(&gateway, target, &[("Range", "bytes=7-11")]);
        assert_eq!(range.status, 206, "{target}");
        assert_eq!(range.body, content[7..12]);
        let total = content.len();
        let expected = format!("bytes 7-11/{total}");
        assert_eq!(range.header("content-range"), Some(expected.as_str()));
        let suffix = get_with(&gateway, target, &[("Range", "bytes=-5")]);
        assert_eq!(suffix.body, content[total - 5..]);
        let open = get_with(&gateway, target, &[("Range", "bytes=1000-")]);
        assert_eq!(open.body, content[1000..]);
        // Single-range policy: several ranges get the whole file.
        let multi = get_with(&gateway, target, &[("Range", "bytes=0-1,5-6")]);
        assert_eq!((multi.status, &multi.body), (200, content));
        let outdated = get_with(
            &gateway,
            target,
            &[("Range", "bytes=0-1"), ("If-Range", "\"stale\"")],
        );
        assert_eq!(outdated.status, 200);
        let current = get_with(
            &gateway,
            target,
            &[("Range", "bytes=0-1"), ("If-Range", &etag)],
        );
        assert_eq!(current.status, 206);
        let unsatisfiable = get_with(&gateway, target, &[("Range", "bytes=999999-")]);
        assert_eq!(unsatisfiable.status, 416, "{target}");
        let expected = format!("bytes */{total}");
        assert_eq!(
            unsatisfiable.header("content-range"),
            Some(expected.as_str())
        );

        // HEAD: the headers of the GET, no body.
        let mut stream = gateway.connect();
        write!(
            stream,
            "HEAD {target} HTTP/1.1\r\nHost: t\r\n\r\nGET {target} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut reader = std::io::BufReader::new(stream);
        let head = common::read_response(&mut reader, true).unwrap();
        assert_eq!(head.status, 200);
        for name in ["content-length", "content-type", "etag", "last-modified"] {
            assert_eq!(head.header(name), full.header(name), "HEAD {target} {name}");
        }
        // The GET after it on the same connection proves HEAD sent no body bytes.
        let after = common::read_response(&mut reader, false).unwrap();
        assert_eq!(&after.body, content, "{target}");
    }
}

#[test]
fn large_files_stream_from_disk_in_full() {
    let site = site();
    let large: Vec<u8> = (0..3_000_000u32)
        .map(|n| (n.wrapping_mul(7919) >> 3) as u8)
        .collect();
    std::fs::write(site.join("video.bin"), &large).unwrap();
    let gateway = gateway(&site);
    let response = gateway.get("/static/video.bin");
    assert!(response.complete);
    assert_eq!(response.body.len(), large.len());
    assert!(response.body == large, "streamed bytes differ");
    let middle = get_with(
        &gateway,
        "/static/video.bin",
        &[("Range", "bytes=262000-1048700")],
    );
    assert_eq!(middle.status, 206);
    assert!(
        middle.body == large[262_000..=1_048_700],
        "range across chunks"
    );
    assert!(
        !gateway.logs().contains("/video.bin"),
        "a large file is not cached"
    );
}

#[test]
fn directories_serve_their_index_and_redirect_without_the_slash() {
    let site = site();
    let gateway = gateway(&site);
    assert_eq!(gateway.get("/static/docs/").text(), "<h1>docs</h1>");
    let redirect = gateway.get("/static/docs?x=1");
    assert_eq!(redirect.status, 301);
    assert_eq!(redirect.header("location"), Some("/static/docs/?x=1"));
    // A folder without an index is a miss.
    std::fs::create_dir_all(site.join("empty")).unwrap();
    assert!(gateway
        .get("/static/empty/")
        .text()
        .contains("no such route"));
}

#[test]
fn static_files_never_leave_their_folder() {
    let site = site();
    let gateway = gateway(&site);
    // Dot segments and encoded slashes are refused before any layer sees them.
    for target in [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E%2Fsecret.txt",
        "/static/docs/%2E%2E%2F..%2Fsecret.txt",
        "/static/%00secret.txt",
    ] {
        let response = gateway.get(target);
        assert_eq!(response.status, 400, "{target}: {}", response.text());
        assert!(!response.text().contains("top secret"), "{target}");
        assert_eq!(gateway.get("/static/app.css").status, 200, "after {target}");
    }
    // Symlinks out of the folder (a file, a directory) and backslashes: 404, not the app.
    for target in [
        "/static/..%5csecret.txt",
        "/static/leak.txt",
        "/static/linked/key.txt",
    ] {
        for _ in 0..2 {
            // Twice: the second answer comes from the remembered miss.
            let response = gateway.get(target);
            assert_eq!(response.status, 404, "{target}: {}", response.text());
            assert!(!response.text().contains("top secret"), "{target}");
            assert!(!response.text().contains("no such route"), "{target}");
        }
        assert_eq!(gateway.get("/static/app.css").status, 200, "after {target}");
    }
    // The same with raw bytes on the socket.
    let raw = gateway
        .raw(b"GET /static/../../etc/passwd HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
    assert!(String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 400"));
    assert_eq!(gateway.get("/static/app.css").status, 200);
}

#[test]
fn misses_and_other_methods_fall_through_to_the_app_unless_told_not_to() {
    let site = site();
    let gateway = gateway(&site);
    let miss = gateway.get("/static/not-a-file");
    assert!(
        miss.text().contains("no such route: /static/not-a-file"),
        "the app answered: {}",
        miss.text()
    );
    let post = gateway.request("POST", "/static/app.css", &[], b"x");
    assert!(post.text().contains("no such route"), "{}", post.text());
    assert_eq!(gateway.get("/environ").status, 200, "outside the mount");
    let strict = gateway_with(&site, "", "fallthrough = false\n");
    let miss = strict.get("/static/not-a-file");
    assert_eq!(miss.status, 404);
    assert!(!miss.text().contains("no such route"), "{}", miss.text());
}

#[test]
fn precompressed_siblings_follow_accept_encoding() {
    let site = site();
    let js = "console.log(1);\n".repeat(1000);
    std::fs::write(site.join("big.js"), &js).unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(js.as_bytes()).unwrap();
    std::fs::write(site.join("big.js.gz"), gz.finish().unwrap()).unwrap();
    let mut br = brotli::CompressorWriter::new(Vec::new(), 4096, 9, 20);
    br.write_all(js.as_bytes()).unwrap();
    std::fs::write(site.join("big.js.br"), br.into_inner()).unwrap();
    let gateway = gateway(&site);

    let plain = gateway.get("/static/big.js");
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("accept-encoding"));
    assert_eq!(plain.text(), js);
    let gz = get_with(&gateway, "/static/big.js", &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("accept-encoding"));
    assert_eq!(gunzip(&gz.body), js.as_bytes());
    let br = get_with(
        &gateway,
        "/static/big.js",
        &[("Accept-Encoding", "gzip, br")],
    );
    assert_eq!(br.header("content-encoding"), Some("br"));
    assert_eq!(unbrotli(&br.body), js.as_bytes());
    let refused = get_with(
        &gateway,
        "/static/big.js",
        &[("Accept-Encoding", "br;q=0, gzip;q=0")],
    );
    assert_eq!(refused.header("content-encoding"), None);
    let tags = [&plain, &gz, &br].map(|r| r.header("etag").unwrap().to_owned());
    assert!(
        tags[0] != tags[1] && tags[1] != tags[2] && tags[0] != tags[2],
        "{tags:?}"
    );
    // The sibling's own ETag validates the sibling.
    let cached = get_with(
        &gateway,
        "/static/big.js",
        &[("Accept-Encoding", "gzip"), ("If-None-Match", &tags[1])],
    );
    assert_eq!(cached.status, 304);
    assert_eq!(cached.header("vary"), Some("accept-encoding"));
    let other = get_with(
        &gateway,
        "/static/big.js",
        &[("Accept-Encoding", "br"), ("If-None-Match", &tags[1])],
    );
    assert_eq!(
        other.status, 200,
        "a gzip ETag does not validate the br variant"
    );
}

#[test]
fn text_files_are_compressed_once_behind_the_compression_layer() {
    let site = site();
    let css = std::fs::read(site.join("app.css")).unwrap();
    let gateway = gateway_with(&site, "[[middleware]]\nkind = \"compression\"\n", "");
    let identity = gateway.get("/static/app.css");
    let identity_tag = identity.header("etag").unwrap().to_owned();
    for (token, decode) in [
        ("br", unbrotli as fn(&[u8]) -> Vec<u8>),
        ("gzip", gunzip),
        ("zstd", |data: &[u8]| zstd::decode_all(data).unwrap()),
    ] {
        // The first requests are compressed per request (weak ETag, no length) while
        // the variant is made; then it comes from memory with its own strong ETag.
        let variant = within(common::WAIT, &format!("the {token} variant"), || {
            let response = get_with(&gateway, "/static/app.css", &[("Accept-Encoding", token)]);
            assert_eq!(response.header("content-encoding"), Some(token));
            assert_eq!(decode(&response.body), css, "{token}");
            let tag = response.header("etag").unwrap();
            (!tag.starts_with("W/")).then_some(response)
        });
        let tag = variant.header("etag").unwrap();
        assert_ne!(tag, identity_tag);
        assert!(tag.ends_with(&format!("-{token}\"")), "{tag}");
        assert_eq!(variant.header("vary"), Some("accept-encoding"));
        let length = variant.body.len().to_string();
        assert_eq!(variant.header("content-length"), Some(length.as_str()));
        let logs = gateway.wait_for_log(&format!("encoding=\"{token}\""));
        assert!(logs.contains("static cache: compressed once"));
        let revalidated = get_with(
            &gateway,
            "/static/app.css",
            &[("Accept-Encoding", token), ("If-None-Match", tag)],
        );
        assert_eq!(revalidated.status, 304);
        let head = gateway.request(
            "HEAD",
            "/static/app.css",
            &[("Accept-Encoding", token)],
            b"",
        );
        assert_eq!(head.header("content-encoding"), Some(token));
        assert_eq!(head.header("content-length"), Some(length.as_str()));
    }
    // Made once: one line per coding, however many requests.
    let logs = gateway.logs();
    assert_eq!(
        logs.matches("static cache: compressed once").count(),
        3,
        "{logs}"
    );
    // Clients that accept nothing get the file itself.
    assert_eq!(gateway.get("/static/app.css").body, css);
}

/// nginx's `send_timeout`: a client that takes no bytes of a large file for
/// `server.write_timeout` loses its connection, instead of holding it (and the file)
/// forever; the server keeps serving.
#[test]
fn a_client_that_stops_reading_is_cut_after_write_timeout() {
    let site = site();
    let size: u64 = 256 << 20;
    // Sparse: 256 MiB of zeros that take no disk, far more than socket buffers hold.
    std::fs::File::create(site.join("huge.bin"))
        .unwrap()
        .set_len(size)
        .unwrap();
    let gateway = gateway_with(&site, "[server]\nwrite_timeout = \"1s\"\n", "");
    let mut stream = gateway.connect();
    stream
        .write_all(b"GET /static/huge.bin HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    gateway.wait_for_log("client took no response bytes within server.write_timeout; closing");
    // What the kernel buffered still arrives, then the end: far from the whole file.
    let mut received: u64 = 0;
    let mut buffer = vec![0; 1 << 20];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => received += n as u64,
        }
    }
    assert!(
        received > 0 && received < size / 4,
        "{received} bytes of {size}"
    );
    let response = get_with(&gateway, "/static/app.css", &[]);
    assert_eq!(response.status, 200, "{}", gateway.logs());
}
