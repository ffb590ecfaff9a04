//! Real WSGI middleware from PyPI in the pipeline: Beaker sessions, Paste TransLogger
//! and urlmap, werkzeug ProxyFix, with Flask at the bottom; PasteDeploy stacks served
//! unchanged, and the shipped paste-stack example against its native rewrite.

mod common;

use std::io::Read;
use std::path::Path;

use common::{test_venv, GatewayBuilder};

fn with_venv() -> GatewayBuilder {
    GatewayBuilder::new().env("VIRTUAL_ENV", test_venv().to_str().unwrap())
}

fn cookie_of(response: &common::Response) -> String {
    let set_cookie = response.header("set-cookie").expect("a session cookie");
    set_cookie.split(';').next().unwrap().to_owned()
}

fn gunzip(data: &[u8]) -> String {
    let mut out = String::new();
    flate2::read::GzDecoder::new(data)
        .read_to_string(&mut out)
        .unwrap();
    out
}

#[test]
fn beaker_sessions_survive_across_requests_with_flask_at_the_bottom() {
    let gateway = with_venv()
        .app("flask_app:app")
        .config(
            r#"
[[middleware]]
kind = "python"
factory = "beaker.middleware:SessionMiddleware"
options = { "session.type" = "cookie", "session.key" = "sid", "session.validate_key" = "test-secret" }
"#,
        )
        .start();
    let first = gateway.get("/beaker");
    assert_eq!(first.json()["visits"], 1, "{}", gateway.logs());
    let cookie = cookie_of(&first);
    assert!(cookie.starts_with("sid="), "{cookie}");
    let second = gateway.request("GET", "/beaker", &[("Cookie", &cookie)], b"");
    assert_eq!(second.json()["visits"], 2);
    let third = gateway.request("GET", "/beaker", &[("Cookie", &cookie_of(&second))], b"");
    assert_eq!(third.json()["visits"], 3);
}

#[test]
fn paste_translogger_logs_every_request() {
    let gateway = with_venv()
        .app("flask_app:app")
        .config(
            r#"
[[middleware]]
kind = "python"
factory = "paste.translogger:TransLogger"
options = { logger_name = "translog", setup_console_handler = true }
"#,
        )
        .start();
    assert_eq!(gateway.get("/whoami?x=1").status, 200);
    gateway.wait_for_log("\"GET /whoami?x=1 HTTP/1.1\" 200");
}

#[test]
fn werkzeug_proxy_fix_sees_forwarded_headers() {
    let gateway = with_venv()
        .app("flask_app:app")
        .config(
            r#"
[[middleware]]
kind = "python"
factory = "werkzeug.middleware.proxy_fix:ProxyFix"
options = { x_for = 1, x_proto = 1, x_host = 1 }
"#,
        )
        .start();
    let response = gateway.request(
        "GET",
        "/whoami",
        &[
            ("X-Forwarded-For", "203.0.113.9"),
            ("X-Forwarded-Proto", "https"),
            ("X-Forwarded-Host", "shop.example"),
        ],
        b"",
    );
    let who = response.json();
    assert_eq!(who["remote"], "203.0.113.9");
    assert_eq!(who["scheme"], "https");
    assert_eq!(who["host"], "shop.example");
    assert_eq!(who["url"], "https://shop.example/whoami");
}

#[test]
fn a_paste_urlmap_composite_is_served_unchanged() {
    let ini = common::apps_dir().join("urlmap.ini");
    let gateway = with_venv()
        .no_app_flag()
        .config(&format!("[app]\npaste = \"{}\"\n", ini.display()))
        .start();
    assert_eq!(gateway.get("/flask/").text(), "hello from flask");
    let who = gateway.get_json("/flask/whoami");
    assert_eq!(who["url"], "http://test.local/flask/whoami");
    let env = gateway.get_json("/environ");
    assert_eq!(env["SCRIPT_NAME"], "");
    assert_eq!(env["PATH_INFO"], "/environ");
}

fn example(file: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/examples/paste-stack")
        .join(file)
        .display()
        .to_string()
}

/// What a client sees of the paste-stack example, over two requests.
fn visit_twice(gateway: &common::Gateway) -> (String, String, String) {
    let first = gateway.request("GET", "/", &[("Accept-Encoding", "gzip")], b"");
    assert_eq!(first.status, 200, "{}", gateway.logs());
    assert_eq!(first.header("content-encoding"), Some("gzip"));
    assert!(first
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    let cookie = cookie_of(&first);
    let second = gateway.request(
        "GET",
        "/",
        &[("Accept-Encoding", "gzip"), ("Cookie", &cookie)],
        b"",
    );
    assert_eq!(second.header("content-encoding"), Some("gzip"));
    (
        cookie.split('=').next().unwrap().to_owned(),
        gunzip(&first.body),
        gunzip(&second.body),
    )
}

#[test]
fn the_paste_stack_and_its_native_rewrite_look_the_same_to_clients() {
    let paste = with_venv()
        .no_app_flag()
        .arg(&format!("--config={}", example("paste.toml")))
        .start();
    let native = with_venv()
        .no_app_flag()
        .arg(&format!("--config={}", example("gateway.toml")))
        .start();
    let (paste_cookie, paste_first, paste_second) = visit_twice(&paste);
    let (native_cookie, native_first, native_second) = visit_twice(&native);
    assert_eq!(paste_cookie, "visits_session");
    assert_eq!(paste_cookie, native_cookie);
    assert!(paste_first.contains("You have been here 1 time(s)."));
    assert!(paste_second.contains("You have been here 2 time(s)."));
    assert_eq!(paste_first, native_first);
    assert_eq!(paste_second, native_second);
    // TransLogger (through the .ini's [loggers]) and the native access log both log.
    paste.wait_for_log("\"GET / HTTP/1.1\" 200");
    native.wait_for_log("\"GET / HTTP/1.1\" 200");
}
