//! Native decisions on a path are taken on the path the application sees: no encoding
//! trick gets a request past `auth`, out of a static mount, or to the app with a path
//! the layers did not see. Requests are sent as raw bytes, so the tricks reach the server
//! exactly as written.

mod common;

use std::io::{BufReader, Write};

use common::{read_response, scratch_dir, Gateway, GatewayBuilder, Response};

/// `GET target` sent byte for byte, with optional extra header lines.
fn raw_get(gateway: &Gateway, target: &str, extra: &str) -> Response {
    let mut stream = gateway.connect();
    write!(
        stream,
        "GET {target} HTTP/1.1\r\nHost: test.local\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut BufReader::new(stream), false).unwrap()
}

/// A gateway whose bearer auth protects `/environ/admin`.
fn guarded(extra_config: &str) -> Gateway {
    GatewayBuilder::new()
        .env("GW_PATH_TOKENS", "ops:tok-1")
        .config(&format!(
            "{extra_config}\n[[middleware]]\nkind = \"auth\"\nscheme = \"bearer\"\n\
             tokens_env = \"GW_PATH_TOKENS\"\npaths = [\"/environ/admin\"]\n"
        ))
        .start()
}

const TOKEN: &str = "Authorization: Bearer tok-1\r\n";

#[test]
fn encodings_of_a_protected_path_still_need_credentials() {
    let gateway = guarded("");
    for target in [
        "/environ/admin",
        "/environ/%61dmin",
        "/environ/%61%64%6D%69%6E",
        "/%65nviron/admin",
        "//environ//admin",
        "/environ///admin/",
        "/environ/admin/x",
        "/environ/admin;jsessionid=1",
        "/environ/admin;x=1/secret",
        "/environ/%61dmin?x=/environ/public",
    ] {
        let response = raw_get(&gateway, target, "");
        assert_eq!(response.status, 401, "{target}: {}", response.text());
    }
    // With credentials, the app sees the same path the layer decided on, and the target
    // as the client sent it.
    let response = raw_get(&gateway, "//environ/%61dmin", TOKEN);
    assert_eq!(response.status, 200, "{}", response.text());
    let env = response.json();
    assert_eq!(env["PATH_INFO"], "/environ/admin");
    assert_eq!(env["REMOTE_USER"], "ops");
    assert_eq!(env["RAW_URI"], "//environ/%61dmin");
    assert_eq!(env["REQUEST_URI"], "//environ/%61dmin");
    // Not under the prefix at a segment boundary: public.
    assert_eq!(raw_get(&gateway, "/environ/administrator", "").status, 200);
}

#[test]
fn encoded_slashes_dot_segments_and_overlong_utf8_are_refused() {
    let gateway = guarded("");
    for target in [
        "/environ/admin%2Fx",
        "/environ/admin%2fx",
        "/environ%2Fadmin",
        "/environ/x/../admin",
        "/environ/x/%2e%2e/admin",
        "/environ/x/%2E%2e/admin",
        "/environ/x/.%2e/admin",
        "/environ/./admin",
        "/environ/%2e/admin",
        "/environ/admin/..",
        "/environ/%C0%AE%C0%AE/admin",
        "/environ%C0%AFadmin",
        "/environ/%E0%80%AFadmin",
        "/environ/%00",
        "/environ/%zz",
    ] {
        let response = raw_get(&gateway, target, TOKEN);
        assert_eq!(response.status, 400, "{target}: {}", response.text());
        assert_eq!(response.header("connection"), Some("close"), "{target}");
    }
    // The app was never called with any of them, and the server keeps serving.
    let calls = gateway.get_json("/calls");
    assert_eq!(calls["count"], 1, "only /calls itself reached the app");
    assert_eq!(raw_get(&gateway, "/environ/public", "").status, 200);
    assert!(
        gateway
            .logs()
            .contains("refused: dot segment in the path (400)"),
        "{}",
        gateway.logs()
    );
}

/// An access log placed first logs the requests the canonical path refuses, with the
/// target as the client sent it (nginx logs its 400s too); the path rules still run
/// before every other layer.
#[test]
fn a_leading_access_log_records_refused_paths() {
    let dir = scratch_dir("refused-log");
    let log = dir.join("access.log");
    let gateway = guarded(&format!(
        "[[middleware]]\nkind = \"access_log\"\nformat = '%(r)s %(s)s'\noutput = \"{}\"\n",
        log.display()
    ));
    assert_eq!(raw_get(&gateway, "/environ%2Fadmin", TOKEN).status, 400);
    assert_eq!(raw_get(&gateway, "/environ/x/../admin", "").status, 400);
    assert_eq!(raw_get(&gateway, "/environ/admin", "").status, 401);
    let lines = common::eventually("three access log lines", || {
        let text = std::fs::read_to_string(&log).ok()?;
        (text.lines().count() >= 3).then_some(text)
    });
    let lines: Vec<&str> = lines.lines().collect();
    assert_eq!(
        lines,
        [
            "GET /environ%2Fadmin HTTP/1.1 400",
            "GET /environ/x/../admin HTTP/1.1 400",
            "GET /environ/admin HTTP/1.1 401",
        ]
    );
    let calls = gateway.get_json("/calls");
    assert_eq!(calls["count"], 1, "only /calls itself reached the app");
}

#[test]
fn names_with_dots_and_escaped_bytes_stay_valid() {
    let gateway = guarded("");
    for (target, path_info) in [
        ("/environ/.well-known/x", "/environ/.well-known/x"),
        ("/environ/..x/y.", "/environ/..x/y."),
        ("/environ/caf%c3%a9", "/environ/caf\u{c3}\u{a9}"),
        ("/environ/a%20b%25", "/environ/a b%"),
        ("/environ/a%3Bb", "/environ/a;b"),
    ] {
        let response = raw_get(&gateway, target, "");
        assert_eq!(response.status, 200, "{target}: {}", response.text());
        assert_eq!(response.json()["PATH_INFO"], path_info, "{target}");
    }
}

#[test]
fn encoded_slashes_when_allowed_reach_the_app_and_stay_protected() {
    let gateway = guarded("[limits]\nallow_encoded_slashes = true\n");
    let response = raw_get(&gateway, "/environ/a%2Fb", "");
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json()["PATH_INFO"], "/environ/a/b");
    // The app would see /environ/admin/x: the layer counts %2F as a boundary too.
    assert_eq!(raw_get(&gateway, "/environ/admin%2Fx", "").status, 401);
    assert_eq!(raw_get(&gateway, "/environ/admin%2fx", TOKEN).status, 200);
    // Dot segments hidden between encoded slashes are still refused.
    assert_eq!(raw_get(&gateway, "/environ/x%2F..%2Fadmin", "").status, 400);
}

#[test]
fn static_mounts_match_the_decoded_path() {
    let site = scratch_dir("path-static");
    std::fs::write(site.join("app.css"), "body{}").unwrap();
    let gateway = GatewayBuilder::new()
        .config(&format!(
            "[[middleware]]\nkind = \"static\"\nmount = \"/static\"\ndir = \"{}\"\nfallthrough = false\n",
            site.display()
        ))
        .start();
    for target in [
        "/static/app.css",
        "/%73tatic/app.css",
        "//static//app%2Ecss",
    ] {
        let response = raw_get(&gateway, target, "");
        assert_eq!(response.status, 200, "{target}: {}", response.text());
        assert_eq!(response.text(), "body{}", "{target}");
    }
    assert_eq!(raw_get(&gateway, "/static/../app.css", "").status, 400);
}
