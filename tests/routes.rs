//! `[[route]]` over real HTTP: host, path and method conditions, first match wins,
//! SCRIPT_NAME/PATH_INFO per app, route middleware on its route only, every action,
//! the default app and the 404 without one, and `check` naming the route.

mod common;

use std::io::{BufReader, Write};

use common::{read_response, scratch_dir, Gateway, GatewayBuilder, Response};

/// `GET target` with `Host: host`, sent byte for byte.
fn get(gateway: &Gateway, host: &str, target: &str) -> Response {
    send(gateway, "GET", host, target)
}

fn send(gateway: &Gateway, method: &str, host: &str, target: &str) -> Response {
    let mut stream = gateway.connect();
    write!(
        stream,
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    read_response(&mut BufReader::new(stream), method == "HEAD").unwrap()
}

/// Which app answered (the contract app's /environ dump or the admin app's JSON).
fn who(response: &Response) -> String {
    assert_eq!(response.status, 200, "{}", response.text());
    let json = response.json();
    json.get("app")
        .and_then(|a| a.as_str())
        .unwrap_or("default")
        .to_owned()
}

const SITE: &str = r#"
[apps.admin]
wsgi = "admin_app:application"

[[route]]
host = "admin.example.com"
app = "admin"

[[route]]
host = ["*.tenants.example.com", "example.com:8443"]
path = "/t"
app = "admin"

[[route]]
path = "/tools"
methods = ["GET", "POST"]
app = "admin"
[[route.middleware]]
kind = "headers"
response.set = { x-route = "tools" }

[[route]]
path = "/tools"
app = "default"

[[route]]
path = "/old"
redirect = "/new"

[[route]]
path = "/moved"
redirect = { to = "https://example.org/elsewhere", status = 308, keep_path = false, keep_query = false }

[[route]]
path = "/down"
respond = { status = 503, body = "down for maintenance\n", headers = { retry-after = "120" } }
"#;

#[test]
fn hosts_exact_wildcard_and_with_port() {
    let gateway = GatewayBuilder::new().config(SITE).start();
    let admin = get(&gateway, "admin.example.com", "/environ/x");
    assert_eq!(who(&admin), "admin");
    let json = admin.json();
    // A host-only route mounts the app at the root.
    assert_eq!(json["SCRIPT_NAME"], "");
    assert_eq!(json["PATH_INFO"], "/environ/x");
    assert_eq!(
        who(&get(&gateway, "ADMIN.example.com:8000", "/environ")),
        "admin"
    );
    assert_eq!(
        who(&get(&gateway, "www.example.com", "/environ")),
        "default"
    );

    assert_eq!(
        who(&get(&gateway, "a.tenants.example.com", "/t/x")),
        "admin"
    );
    assert_eq!(
        who(&get(&gateway, "a.b.tenants.example.com", "/t")),
        "admin"
    );
    assert_eq!(
        who(&get(&gateway, "tenants.example.com", "/environ/t")),
        "default"
    );
    assert_eq!(who(&get(&gateway, "example.com:8443", "/t/x")), "admin");
    // The port is part of the condition.
    let other_port = get(&gateway, "example.com:8080", "/t/x");
    assert_eq!(other_port.status, 404, "the default app has no /t/x");
}

#[test]
fn path_prefixes_match_at_segment_boundaries_and_mount_the_app() {
    let gateway = GatewayBuilder::new().config(SITE).start();
    for (target, script_name, path_info) in [
        ("/tools", "/tools", ""),
        ("/tools/", "/tools", "/"),
        ("/tools/a/b?q=1", "/tools", "/a/b"),
        ("/%74ools/a", "/tools", "/a"),
        ("//tools//a", "/tools", "/a"),
    ] {
        let response = get(&gateway, "www.example.com", target);
        assert_eq!(who(&response), "admin", "{target}");
        let json = response.json();
        assert_eq!(json["SCRIPT_NAME"], script_name, "{target}");
        assert_eq!(json["PATH_INFO"], path_info, "{target}");
        assert_eq!(response.header("x-route"), Some("tools"), "{target}");
    }
    assert_eq!(get(&gateway, "x", "/tools").json()["QUERY_STRING"], "");
    // Not at a boundary: the default app, without the route's middleware.
    let response = get(&gateway, "www.example.com", "/toolsX");
    assert_eq!(response.status, 404);
    assert!(
        response.text().contains("no such route: /toolsX"),
        "{}",
        response.text()
    );
    assert_eq!(response.header("x-route"), None);
}

#[test]
fn methods_and_the_first_matching_route_win() {
    let gateway = GatewayBuilder::new().config(SITE).start();
    assert_eq!(who(&send(&gateway, "POST", "x", "/tools/a")), "admin");
    let head = send(&gateway, "HEAD", "x", "/tools/a");
    assert_eq!(head.status, 200);
    assert_eq!(head.header("x-route"), Some("tools"), "GET takes HEAD too");
    // DELETE is not in the first /tools route: the second one (the default app,
    // mounted at /tools, without the first route's middleware) takes it.
    let delete = send(&gateway, "DELETE", "x", "/tools/environ");
    assert_eq!(delete.status, 200, "{}", delete.text());
    let env = delete.json();
    assert!(env.get("app").is_none());
    assert_eq!(env["SCRIPT_NAME"], "/tools");
    assert_eq!(env["PATH_INFO"], "/environ");
    assert_eq!(delete.header("x-route"), None);
}

#[test]
fn redirect_and_respond_actions() {
    let gateway = GatewayBuilder::new().config(SITE).start();
    let kept = get(&gateway, "x", "/old/a/b?q=1");
    assert_eq!(kept.status, 301);
    assert_eq!(kept.header("location"), Some("/new/a/b?q=1"));
    assert_eq!(get(&gateway, "x", "/old").header("location"), Some("/new"));
    let moved = get(&gateway, "x", "/moved/a?q=1");
    assert_eq!(moved.status, 308);
    assert_eq!(
        moved.header("location"),
        Some("https://example.org/elsewhere")
    );
    let down = get(&gateway, "x", "/down/anything");
    assert_eq!(down.status, 503);
    assert_eq!(down.header("retry-after"), Some("120"));
    assert_eq!(down.text(), "down for maintenance\n");
    // None of these reached an application.
    assert_eq!(get(&gateway, "x", "/calls").json()["count"], 1);
}

#[test]
fn static_action_and_route_middleware_of_every_kind() {
    let dir = scratch_dir("routes-static");
    std::fs::create_dir_all(dir.join("assets")).unwrap();
    std::fs::write(dir.join("assets/app.css"), "body{}").unwrap();
    let config = format!(
        r#"
[apps.admin]
wsgi = "admin_app:application"

[[route]]
path = "/assets"
static = "{assets}"

[[route]]
path = "/files"
static = {{ dir = "{assets}", cache_control = "public, max-age=60" }}

[[route]]
path = "/admin"
app = "admin"
[[route.middleware]]
kind = "auth"
scheme = "bearer"
tokens_env = "ROUTE_TOKENS"
[[route.middleware]]
kind = "python"
factory = "trail:make_trail"
options = {{ name = "route-py" }}
"#,
        assets = dir.join("assets").display()
    );
    let gateway = GatewayBuilder::new()
        .env("ROUTE_TOKENS", "ops:tok")
        .config(&config)
        .start();
    let css = get(&gateway, "x", "/assets/app.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.text(), "body{}");
    assert_eq!(get(&gateway, "x", "/assets/missing.css").status, 404);
    let cached = get(&gateway, "x", "/files/app.css");
    assert_eq!(cached.header("cache-control"), Some("public, max-age=60"));

    // The route's auth guards its route, also through an encoded path ...
    assert_eq!(get(&gateway, "x", "/admin/x").status, 401);
    assert_eq!(get(&gateway, "x", "/%61dmin/x").status, 401);
    let mut stream = gateway.connect();
    stream
        .write_all(b"GET /admin/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer tok\r\nConnection: close\r\n\r\n")
        .unwrap();
    let admin = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(who(&admin), "admin");
    // ... and its Python middleware wraps its app only.
    assert_eq!(admin.json()["HTTP_X_TRAIL"], "route-py");
    assert_eq!(
        admin.header("x-trail"),
        None,
        "admin_app sets no X-Trail of its own"
    );
    // Other routes and the default app see neither.
    let env = get(&gateway, "x", "/environ");
    assert_eq!(env.status, 200);
    assert!(env.json().get("HTTP_X_TRAIL").is_none());
}

#[test]
fn without_a_default_app_unrouted_requests_get_404() {
    let gateway = GatewayBuilder::new()
        .no_app_flag()
        .config("[apps.admin]\nwsgi = \"admin_app:application\"\n[[route]]\npath = \"/admin\"\napp = \"admin\"\n")
        .start();
    assert_eq!(who(&get(&gateway, "x", "/admin")), "admin");
    let miss = get(&gateway, "x", "/elsewhere");
    assert_eq!(miss.status, 404);
    assert_eq!(miss.text(), "404 Not Found\n");
}

#[test]
fn check_names_the_route() {
    for (toml, key, detail) in [
        ("[[route]]\npath = \"/a\"\napp = \"nope\"\n", "route[0].app", "no app named \"nope\""),
        (
            "[[route]]\npath = \"/a\"\nredirect = \"/b\"\nrespond = { body = \"x\" }\n",
            "route[0]",
            "one action per route, found redirect and respond",
        ),
        ("[[route]]\npath = \"/a\"\n", "route[0]", "no action"),
        (
            "[[route]]\nrespond = { body = \"all\" }\n[[route]]\npath = \"/late\"\nrespond = { body = \"x\" }\n",
            "route[1]",
            "can never match: route[0] before it takes every request",
        ),
        ("[[route]]\nhost = \"bad host\"\nrespond = {}\n", "route[0]", "is not a host name"),
        (
            "[[route]]\npath = \"/s\"\nstatic = \"/nonexistent/dir\"\n",
            "route[0]",
            "/nonexistent/dir",
        ),
        (
            "[[route]]\npath = \"/a\"\nrespond = {}\n[[route.middleware]]\nkind = \"auth\"\nhtpasswd = \"/nonexistent/htpasswd\"\n",
            "route[0].middleware[0]",
            "/nonexistent/htpasswd",
        ),
    ] {
        // `check` and `serve` run the same start-up checks.
        let checked = GatewayBuilder::new()
            .config(&format!("[app]\nwsgi = \"contract:application\"\n{toml}"))
            .run_as_check();
        assert_eq!(checked.status.code(), Some(2), "{toml}\n{}", checked.stderr);
        assert!(checked.stderr.contains(key), "{key} not named for {toml}: {}", checked.stderr);
        let output = GatewayBuilder::new().config(toml).run();
        assert_eq!(output.status.code(), Some(2), "{toml}\n{}", output.stderr);
        assert!(output.stderr.contains(key), "{key} not named for {toml}: {}", output.stderr);
        assert!(output.stderr.contains(detail), "{detail} not said for {toml}: {}", output.stderr);
        assert!(output.stderr.contains("gateway.toml"), "{}", output.stderr);
    }
}

#[test]
fn the_example_site_serves() {
    let site = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples/site");
    // The example's upstream, on a free port instead of its 8001.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut api = std::process::Command::new("python3")
        .arg(site.join("api_service.py"))
        .arg(port.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("start the example's api_service.py");
    struct Kill<'a>(&'a mut std::process::Child);
    impl Drop for Kill<'_> {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _api = Kill(&mut api);
    common::eventually("the example's api service", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    let gateway = GatewayBuilder::new()
        .no_app_flag()
        .env("VIRTUAL_ENV", common::test_venv().to_str().unwrap())
        .env(
            "GATEWAY_UPSTREAM__API__SERVERS",
            &format!("[\"127.0.0.1:{port}\"]"),
        )
        .arg(&format!("--config={}", site.join("gateway.toml").display()))
        .start();
    let items = get(&gateway, "127.0.0.1", "/api/items");
    assert_eq!(items.status, 200, "{}", gateway.logs());
    assert_eq!(items.json()["items"][0]["name"], "teapot");
    assert_eq!(items.json()["client"], "127.0.0.1");
    let home = get(&gateway, "127.0.0.1", "/");
    assert_eq!(home.status, 200, "{}", gateway.logs());
    assert!(home.text().contains("Served by Flask"), "{}", home.text());
    let css = get(&gateway, "127.0.0.1", "/static/site.css");
    assert_eq!(css.status, 200);
    assert_eq!(css.header("cache-control"), Some("public, max-age=3600"));
    assert_eq!(
        css.body,
        std::fs::read(site.join("static/site.css")).unwrap()
    );
    let old = get(&gateway, "127.0.0.1", "/blog/2019/hello?ref=x");
    assert_eq!(old.status, 301);
    assert_eq!(old.header("location"), Some("/posts/2019/hello?ref=x"));
    let post = get(&gateway, "127.0.0.1", "/posts/2019/hello");
    assert_eq!(post.json()["slug"], "hello");
    assert_eq!(get(&gateway, "127.0.0.1", "/ping").text(), "pong\n");
    assert_eq!(get(&gateway, "admin.localhost", "/").status, 401);
    let mut stream = gateway.connect();
    stream
        .write_all(b"GET /users HTTP/1.1\r\nHost: admin.localhost\r\nAuthorization: Bearer change-this-token\r\nConnection: close\r\n\r\n")
        .unwrap();
    let admin = read_response(&mut BufReader::new(stream), false).unwrap();
    assert_eq!(admin.json()["user"], "ops");
    assert_eq!(admin.json()["path"], "/users");
}

#[test]
fn a_reload_reads_routes_again_and_a_broken_app_keeps_the_old_workers() {
    let dir = scratch_dir("routes-reload");
    let config = dir.join("gateway.toml");
    let write = |toml: &str| std::fs::write(&config, toml).unwrap();
    write("[app]\nwsgi = \"contract:application\"\n[[route]]\npath = \"/ping\"\nrespond = { body = \"v1\" }\n");
    let gateway = GatewayBuilder::new()
        .no_app_flag()
        .arg(&format!("--config={}", config.display()))
        .start();
    assert_eq!(get(&gateway, "x", "/ping").text(), "v1");
    write("[app]\nwsgi = \"contract:application\"\n[apps.admin]\nwsgi = \"admin_app:application\"\n[[route]]\npath = \"/ping\"\nrespond = { body = \"v2\" }\n[[route]]\npath = \"/admin\"\napp = \"admin\"\n");
    gateway.signal(libc::SIGHUP);
    gateway.wait_for_log("reload complete");
    common::eventually("the new routes served", || {
        (get(&gateway, "x", "/ping").text() == "v2").then_some(())
    });
    assert_eq!(who(&get(&gateway, "x", "/admin/x")), "admin");
    // A route naming an app that does not import: the reload fails, the old workers serve.
    write("[app]\nwsgi = \"contract:application\"\n[apps.admin]\nwsgi = \"broken_import:application\"\n[[route]]\npath = \"/ping\"\nrespond = { body = \"v3\" }\n[[route]]\npath = \"/admin\"\napp = \"admin\"\n");
    gateway.signal(libc::SIGHUP);
    gateway.wait_for_log("reload failed");
    for _ in 0..5 {
        assert_eq!(get(&gateway, "x", "/ping").text(), "v2");
    }
}
