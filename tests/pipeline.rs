//! The pipeline: the order of `[[middleware]]` is the order a request meets the layers,
//! native and Python alike; native layers between Python layers share the environ and
//! the Python thread, and really transform what passes; startup errors name the entry.

mod common;

use std::io::Read;

use common::GatewayBuilder;

fn field<'a>(body: &'a str, name: &str) -> &'a str {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

const INTERLEAVED: &str = r#"
[app]
wsgi = "trail:trail_app"

[[middleware]]
kind = "headers"
request.append = { "X-Trail" = "native-a" }
response.append = { "X-Trail" = "native-a" }

[[middleware]]
kind = "python"
factory = "trail:make_trail"
options = { name = "py-b", mark = true }

[[middleware]]
kind = "headers"
request.append = { "X-Trail" = "native-c" }
response.append = { "X-Trail" = "native-c" }

[[middleware]]
kind = "python"
filter_factory = "trail:trail_filter_factory"
options = { name = "py-d" }
"#;

#[test]
fn the_config_order_is_the_order_a_request_meets_the_layers() {
    let gateway = GatewayBuilder::new()
        .no_app_flag()
        .config(INTERLEAVED)
        .start();
    let response = gateway.get("/");
    assert_eq!(response.status, 200, "{}", gateway.logs());
    let body = response.text();
    assert_eq!(field(&body, "trail"), "native-a,py-b,native-c,py-d");
    // On the way out the order reverses: app, py-d, native-c, py-b, native-a.
    let trail: Vec<&str> = response
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-trail"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(trail.first(), Some(&"app,py-d,py-b"), "{trail:?}");
    assert_eq!(trail.last(), Some(&"native-a"), "{trail:?}");
    assert!(trail.contains(&"native-c,py-b"), "{trail:?}");
}

#[test]
fn pastedeploy_factory_forms_get_their_global_conf() {
    let gateway = GatewayBuilder::new()
        .no_app_flag()
        .config(
            r#"
[app]
wsgi = "trail:trail_app"

[[middleware]]
kind = "python"
filter_app_factory = "trail:trail_filter_app_factory"
options = { name = "app-form" }
global_conf = { site = "example", here = "sub" }

[[middleware]]
kind = "python"
filter_factory = "trail:trail_global_filter_factory"
options = { name = "filter-form" }
"#,
        )
        .start();
    let response = gateway.get("/");
    assert_eq!(response.status, 200, "{}", gateway.logs());
    // filter_app_factory(app, global_conf, **options), with `here` resolved against the
    // config file's folder; filter_factory without global_conf gets an empty dict.
    assert_eq!(
        field(&response.text(), "trail"),
        "app-form:example:abs-sub,filter-form:-:rel-"
    );
}

#[test]
fn the_environ_and_the_python_thread_are_shared_across_a_native_layer() {
    let gateway = GatewayBuilder::new()
        .no_app_flag()
        .config(INTERLEAVED)
        .start();
    let body = gateway.get("/").text();
    // What py-b put in the environ reached the app through the native layer...
    assert_eq!(field(&body, "marker"), "set-by-py-b");
    // ... on the same Python thread, so its thread-locals hold.
    assert_eq!(field(&body, "thread"), field(&body, "outer_thread"));
    assert_eq!(field(&body, "local"), "local-from-py-b");
    // py-b calls the Rust bridge that runs native-c, which calls py-d inline.
    assert_eq!(field(&body, "py-b_wraps"), "NativeLayers");
    assert_eq!(field(&body, "py-d_wraps"), "function");
}

#[test]
fn a_native_layer_between_python_layers_transforms_what_passes() {
    let config = r#"
[app]
wsgi = "trail:trail_app"

[[middleware]]
kind = "python"
factory = "trail:make_trail"
options = { name = "outer" }

[[middleware]]
kind = "compression"
encodings = ["gzip"]

[[middleware]]
kind = "python"
factory = "trail:make_trail"
options = { name = "inner" }
"#;
    let gateway = GatewayBuilder::new().no_app_flag().config(config).start();
    let response = gateway.request(
        "GET",
        "/",
        &[("Accept-Encoding", "gzip"), ("X-Repeat", "50")],
        b"",
    );
    assert_eq!(response.status, 200, "{}", gateway.logs());
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&response.body[..])
        .read_to_string(&mut plain)
        .unwrap();
    assert_eq!(field(&plain, "trail"), "outer,inner");
    assert!(
        response.body.len() < plain.len() / 5,
        "compressed {} of {}",
        response.body.len(),
        plain.len()
    );
    assert_eq!(response.header("x-trail"), Some("app,inner,outer"));
}

#[test]
fn adjacent_python_entries_form_one_segment() {
    let config = r#"
[app]
wsgi = "trail:trail_app"

[[middleware]]
kind = "python"
factory = "trail:make_trail"
options = { name = "one", mark = true }

[[middleware]]
kind = "python"
factory = "trail:make_trail"
options = { name = "two" }
"#;
    let gateway = GatewayBuilder::new().no_app_flag().config(config).start();
    let body = gateway.get("/").text();
    assert_eq!(field(&body, "trail"), "one,two");
    assert_eq!(field(&body, "thread"), field(&body, "outer_thread"));
    // Fused: "one" calls "two" directly, with no bridge or crossing in between.
    assert_eq!(field(&body, "one_wraps"), "Trail");
    assert_eq!(field(&body, "two_wraps"), "function");
    let logs = gateway.logs();
    assert!(
        logs.contains("pipeline: [python trail:make_trail, python trail:make_trail] -> app"),
        "{logs}"
    );
}

#[test]
fn startup_errors_name_the_entry() {
    let cases = [
        (
            "[[middleware]]\nkind = \"compresion\"\n",
            "middleware[0]",
            "unknown variant",
        ),
        (
            "[[middleware]]\nkind = \"compression\"\nlevel = 3\n",
            "middleware[0]",
            "level",
        ),
        (
            "[[middleware]]\nkind = \"compression\"\nencodings = [\"lzma\"]\n",
            "middleware[0]",
            "lzma",
        ),
        (
            "[[middleware]]\nkind = \"python\"\n",
            "middleware[0]",
            "exactly one of factory and filter_factory",
        ),
        (
            "[[middleware]]\nkind = \"auth\"\nhtpasswd = \"/nonexistent/htpasswd\"\n",
            "middleware[0]",
            "/nonexistent/htpasswd",
        ),
        (
            "[[middleware]]\nkind = \"static\"\nmount = \"/s\"\ndir = \"/nonexistent/dir\"\n",
            "middleware[0]",
            "/nonexistent/dir",
        ),
        (
            "[[middleware]]\nkind = \"access_log\"\nformat = \"%(zz)s\"\n",
            "middleware[0]",
            "%(zz)s",
        ),
    ];
    for (toml, key, detail) in cases {
        let output = GatewayBuilder::new().config(toml).run();
        assert_eq!(output.status.code(), Some(2), "{toml}\n{output:?}");
        assert!(
            output.stderr.contains(key),
            "{key} not named for {toml}: {}",
            output.stderr
        );
        assert!(
            output.stderr.contains(detail),
            "{detail} missing for {toml}: {}",
            output.stderr
        );
        assert!(output.stderr.contains("gateway.toml"), "{}", output.stderr);
    }
}

#[test]
fn an_unimportable_or_failing_factory_prints_its_traceback() {
    let output = GatewayBuilder::new()
        .config("[[middleware]]\nkind = \"python\"\nfactory = \"no_such_module:make\"\n")
        .run();
    assert!(!output.status.success());
    assert!(output.stderr.contains("middleware[0]"), "{}", output.stderr);
    assert!(
        output.stderr.contains("No module named 'no_such_module'"),
        "{}",
        output.stderr
    );

    let output = GatewayBuilder::new()
        .config("[[middleware]]\nkind = \"python\"\nfactory = \"trail:make_trail\"\noptions = { nme = \"typo\" }\n")
        .run();
    assert!(!output.status.success());
    assert!(output.stderr.contains("middleware[0]"), "{}", output.stderr);
    assert!(output.stderr.contains("TypeError"), "{}", output.stderr);
    assert!(output.stderr.contains("'nme'"), "{}", output.stderr);
}
