//! `wsgi-gateway convert`: PasteDeploy `.ini` files (tests/apps/convert/) converted by
//! the real binary, each output passed through `wsgi-gateway check`, then served next
//! to the `.ini` served as it is (`paste = "file.ini#main"`), and the answers to the
//! same requests compared: status, body, `Content-Encoding` and the headers the
//! filters add.

mod common;

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{scratch_dir, test_venv, Finished, Gateway, GatewayBuilder, Response, WAIT};

/// A fresh copy of tests/apps/convert/ (the converter writes next to the `.ini`, as a
/// user would, so relative paths are exercised; the repository is left alone).
fn fixtures() -> PathBuf {
    let copy = scratch_dir("convert-fixtures");
    copy_tree(&common::apps_dir().join("convert"), &copy);
    copy
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_tree(&entry.path(), &target);
            }
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn with_venv() -> GatewayBuilder {
    GatewayBuilder::new()
        .env("VIRTUAL_ENV", test_venv().to_str().unwrap())
        .no_app_flag()
}

/// Run the binary in tests/apps/convert with the test virtualenv, bounded in time.
fn run(args: &[&str], cwd: &Path) -> Finished {
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsgi-gateway"))
        .args(args)
        .current_dir(cwd)
        .env("VIRTUAL_ENV", test_venv())
        .env_remove("GATEWAY_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn wsgi-gateway");
    let deadline = Instant::now() + WAIT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("wsgi-gateway {args:?} did not exit within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    Finished {
        status: output.status,
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A converted file and what the converter said on stderr.
struct Converted {
    file: PathBuf,
    text: String,
    stderr: String,
}

/// `convert INI -o gateway.toml [extra]` in the fixture folder `dir`, which must
/// succeed, then `check` on the output, which must pass.
fn convert(dir: &Path, ini: &str, extra: &[&str]) -> Converted {
    let out = dir.join("gateway.toml");
    let _ = std::fs::remove_file(&out);
    let mut args = vec!["convert", ini, "-o", "gateway.toml"];
    args.extend_from_slice(extra);
    let done = run(&args, dir);
    assert!(done.status.success(), "convert failed: {done:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    let checked = run(&["check", "--config=gateway.toml"], dir);
    assert!(
        checked.status.success() && checked.stdout.contains("configuration OK"),
        "check refused the converted file:\n{text}\n{checked:?}"
    );
    Converted {
        file: out,
        text,
        stderr: done.stderr,
    }
}

/// The `.ini` in `dir` served as it is.
fn serve_ini(dir: &Path, ini: &str, name: &str) -> Gateway {
    let file = dir.join(ini);
    with_venv()
        .config(&format!(
            "[app]\npaste = \"{}#{name}\"\npython_path = [\"{}\"]\n",
            file.display(),
            dir.display()
        ))
        .start()
}

fn serve_converted(converted: &Converted) -> Gateway {
    with_venv()
        .arg(&format!("--config={}", converted.file.display()))
        .start()
}

/// One request of a comparison.
struct Probe {
    method: &'static str,
    target: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    /// Compare the (decoded) bodies and the named headers too; error pages of Paste and
    /// of the gateway differ.
    body: bool,
}

fn get(target: &'static str) -> Probe {
    Probe {
        method: "GET",
        target,
        headers: Vec::new(),
        body: true,
    }
}

fn gzip_get(target: &'static str) -> Probe {
    Probe {
        headers: vec![("Accept-Encoding", "gzip")],
        ..get(target)
    }
}

impl Probe {
    fn with(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    fn status_only(mut self) -> Self {
        self.body = false;
        self
    }

    fn send(&self, gateway: &Gateway) -> Response {
        let host = self
            .headers
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case("host"));
        let Some((_, host)) = host else {
            return gateway.request(self.method, self.target, &self.headers, b"");
        };
        // A Host of our own: `Gateway::request` always sends `Host: test.local`.
        let mut head = format!(
            "{} {} HTTP/1.1\r\nHost: {host}\r\n",
            self.method, self.target
        );
        for (name, value) in self
            .headers
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
        {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        let mut stream = gateway.connect();
        stream.write_all(head.as_bytes()).unwrap();
        common::read_response(&mut BufReader::new(stream), self.method == "HEAD")
            .expect("a complete response")
    }
}

fn decoded(response: &Response) -> Vec<u8> {
    if response.header("content-encoding") == Some("gzip") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(response.body.as_slice())
            .read_to_end(&mut out)
            .expect("a gzip body");
        out
    } else {
        response.body.clone()
    }
}

/// Send every probe to both and compare what a client sees; returns the converted
/// gateway's responses for further checks.
fn same_answers(
    original: &Gateway,
    converted: &Gateway,
    probes: &[Probe],
    headers: &[&str],
) -> Vec<Response> {
    let mut answers = Vec::new();
    for probe in probes {
        let before = probe.send(original);
        let after = probe.send(converted);
        let what = format!("{} {} {:?}", probe.method, probe.target, probe.headers);
        assert_eq!(
            before.status,
            after.status,
            "{what}: status\nini: {}\nconverted: {}\n{}",
            before.text(),
            after.text(),
            converted.logs()
        );
        assert_eq!(
            before.header("content-encoding"),
            after.header("content-encoding"),
            "{what}: Content-Encoding"
        );
        if probe.body {
            assert_eq!(
                String::from_utf8_lossy(&decoded(&before)),
                String::from_utf8_lossy(&decoded(&after)),
                "{what}: body"
            );
        }
        // Error pages of Paste and of the gateway differ in body and type; the headers
        // compared are those of answers that come from the same code.
        for name in headers.iter().filter(|_| probe.body) {
            assert_eq!(before.header(name), after.header(name), "{what}: {name}");
        }
        answers.push(after);
    }
    answers
}

/// The `[[route]]` tables of a converted file, in order, as `host path -> action`.
fn routes(text: &str) -> Vec<String> {
    let parsed: toml::Value = text.parse().expect("the output is TOML");
    parsed
        .get("route")
        .and_then(|r| r.as_array())
        .map(|routes| {
            routes
                .iter()
                .map(|route| {
                    let field = |key: &str| {
                        route.get(key).map_or_else(String::new, |v| match v {
                            toml::Value::String(s) => s.clone(),
                            toml::Value::Table(_) => "{...}".into(),
                            other => other.to_string(),
                        })
                    };
                    let action = ["app", "static", "proxy", "respond"]
                        .iter()
                        .find_map(|key| route.get(*key).map(|_| format!("{key} {}", field(key))))
                        .unwrap_or_default();
                    format!("{} {} -> {action}", field("host"), field("path"))
                        .trim()
                        .to_owned()
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_urlmap_of_two_pipelines_becomes_routes_that_answer_the_same() {
    let dir = fixtures();
    let converted = convert(&dir, "urlmap.ini", &[]);
    assert_eq!(
        routes(&converted.text),
        [
            "admin.test.local  -> app admin",
            "/docs/v1 -> app api_app",
            "/docs -> respond {...}",
            "/api -> app api_app",
            "/ -> app site_app"
        ],
        "URLMap's order: domains first, then the longest prefix\n{}",
        converted.text
    );
    // The site's TransLogger and gzipper are native, in the site's route only.
    assert!(converted.text.contains("kind = \"access_log\""));
    assert!(converted.text.contains("gzip_level = 5"));
    assert!(
        converted.stderr.contains("[filter:stamp]"),
        "{}",
        converted.stderr
    );

    let original = serve_ini(&dir, "urlmap.ini", "main");
    let native = serve_converted(&converted);
    let answers = same_answers(
        &original,
        &native,
        &[
            gzip_get("/"),
            gzip_get("/page?q=1"),
            get("/page?q=1"),
            gzip_get("/api"),
            get("/api/items/7?full=yes"),
            get("/apix"),
            gzip_get("/missing"),
            get("/").with("Host", "admin.test.local"),
            get("/deep/path").with("Host", "admin.test.local:8080"),
            get("/docs/v1/x?y=1"),
            // The nested urlmap's own 404, not the site at `/`.
            get("/docs/other").status_only(),
            get("/docsx"),
        ],
        &["x-api-stamp", "content-type"],
    );
    assert_eq!(answers[0].header("content-encoding"), Some("gzip"));
    assert_eq!(answers[3].header("x-api-stamp"), Some("api-v1"));
    let api = serde_json::from_slice::<serde_json::Value>(&answers[4].body).unwrap();
    assert_eq!(
        (api["script_name"].as_str(), api["path_info"].as_str()),
        (Some("/api"), Some("/items/7"))
    );
    let admin = serde_json::from_slice::<serde_json::Value>(&answers[7].body).unwrap();
    assert_eq!(admin["greeting"], "hello from the admin host");
    let docs = serde_json::from_slice::<serde_json::Value>(&answers[9].body).unwrap();
    assert_eq!(
        (docs["script_name"].as_str(), docs["path_info"].as_str()),
        (Some("/docs/v1"), Some("/x"))
    );
    assert_eq!(answers[10].status, 404);
    let site = serde_json::from_slice::<serde_json::Value>(&answers[11].body).unwrap();
    assert_eq!(site["greeting"], "hello from the site");
    // TransLogger (stderr) and the native access log write the same request line.
    original.wait_for_log("\"GET /page?q=1 HTTP/1.1\" 200");
    native.wait_for_log("\"GET /page?q=1 HTTP/1.1\" 200");
}

#[test]
fn a_python_filter_above_a_urlmap_is_repeated_in_every_route() {
    let dir = fixtures();
    let converted = convert(&dir, "above.ini", &[]);
    let parsed: toml::Value = converted.text.parse().unwrap();
    let global: Vec<&str> = parsed["middleware"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(global, ["compression"], "{}", converted.text);
    assert_eq!(
        routes(&converted.text),
        ["/files -> app files", "/ -> app home"],
        "Paste's static app stays in Python below a Python filter\n{}",
        converted.text
    );
    for route in parsed["route"].as_array().unwrap() {
        assert_eq!(
            route["middleware"][0]["filter_factory"].as_str(),
            Some("stack_apps:stamp_filter_factory")
        );
    }
    assert!(converted.text.contains("NOTE: repeated in every route"));
    let original = serve_ini(&dir, "above.ini", "main");
    let native = serve_converted(&converted);
    let answers = same_answers(
        &original,
        &native,
        &[
            gzip_get("/"),
            // Not gzip: Paste's FileApp sends Content-Range on every file, which the
            // native compression leaves alone and gzipper did not (the converted file
            // says so).
            get("/files/site.css"),
            get("/files/docs/"),
            gzip_get("/x/y"),
        ],
        &["x-above", "content-type"],
    );
    assert!(answers.iter().all(|a| a.header("x-above") == Some("above")));
    assert_eq!(answers[0].header("content-encoding"), Some("gzip"));
    assert_eq!(answers[1].text(), "body { color: teal; }\n");
}

#[test]
fn translogger_gzip_and_a_custom_filter_become_native_layers_and_a_python_entry() {
    let dir = fixtures();
    let converted = convert(&dir, "filters.ini", &[]);
    let text = &converted.text;
    let parsed: toml::Value = text.parse().unwrap();
    let kinds: Vec<&str> = parsed["middleware"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["access_log", "compression", "python"], "{text}");
    let custom = &parsed["middleware"][2];
    assert_eq!(
        custom["filter_app_factory"].as_str(),
        Some("stack_apps:stamp_filter_app_factory")
    );
    assert_eq!(custom["options"]["value"].as_str(), Some("vanilla-custom"));
    assert_eq!(custom["global_conf"]["flavour"].as_str(), Some("vanilla"));
    assert_eq!(custom["global_conf"]["here"].as_str(), Some("."));
    assert_eq!(
        custom["global_conf"]["__file__"].as_str(),
        Some("filters.ini")
    );
    assert_eq!(parsed["middleware"][1]["gzip_level"].as_integer(), Some(9));
    // [loggers] sent the "access" logger to stdout.
    assert_eq!(parsed["middleware"][0]["output"].as_str(), Some("stdout"));
    // [server:main] (waitress) -> [server]; what has no equivalent is said.
    assert_eq!(
        parsed["server"]["bind"].as_array().unwrap()[0].as_str(),
        Some("127.0.0.1:6543")
    );
    assert_eq!(parsed["server"]["threads"].as_integer(), Some(8));
    assert!(text.contains("NOT NATIVE: url_scheme = https is not translated"));
    assert!(converted
        .stderr
        .contains("[server:main]: url_scheme = https"));
    assert!(converted.stderr.contains("[filter:custom]"));
    assert!(text.contains("# from [filter:translogger] (use = egg:Paste#translogger)"));
    assert!(text.contains("# from [filter:gzip] (use = egg:Paste#gzip)"));

    let original = serve_ini(&dir, "filters.ini", "main");
    let native = serve_converted(&converted);
    let answers = same_answers(
        &original,
        &native,
        &[
            gzip_get("/"),
            get("/"),
            gzip_get("/a/b?c=d"),
            gzip_get("/missing"),
            get("/missing"),
        ],
        &["x-custom", "content-type"],
    );
    assert_eq!(answers[0].header("content-encoding"), Some("gzip"));
    assert_eq!(answers[1].header("content-encoding"), None);
    // global_conf's `here` is written "." and resolved by the gateway against its
    // config file: the filter sees the .ini's folder, as under PasteDeploy.
    let here = dir.file_name().unwrap().to_str().unwrap();
    assert_eq!(
        answers[0].header("x-custom"),
        Some(format!("vanilla-custom; here={here}").as_str())
    );
    original.wait_for_log("\"GET /a/b?c=d HTTP/1.1\" 200");
    native.wait_for_log("\"GET /a/b?c=d HTTP/1.1\" 200");
}

#[test]
fn default_values_and_interpolation_reach_apps_filters_and_static_files() {
    let dir = fixtures();
    let converted = convert(&dir, "defaults.ini", &[]);
    assert_eq!(
        routes(&converted.text),
        ["/static -> static {...}", "/ -> app home_app"],
        "{}",
        converted.text
    );
    let parsed: toml::Value = converted.text.parse().unwrap();
    let files = &parsed["route"][0]["static"];
    assert_eq!(
        files["dir"].as_str(),
        Some("static"),
        "%(static_root)s = %(here)s/static, interpolated, relative to the output"
    );
    assert_eq!(files["cache_control"].as_str(), Some("public, max-age=600"));
    let original = serve_ini(&dir, "defaults.ini", "main");
    let native = serve_converted(&converted);
    let answers = same_answers(
        &original,
        &native,
        &[
            get("/"),
            get("/about?x=1"),
            get("/static/site.css"),
            get("/static/docs/"),
            get("/static/docs").status_only(),
            get("/static/nothing.css").status_only(),
        ],
        &["x-site-name", "cache-control"],
    );
    let home = serde_json::from_slice::<serde_json::Value>(&answers[0].body).unwrap();
    assert_eq!(home["greeting"], "welcome to Example Site");
    assert_eq!(
        home["settings"]["title"], "Example Site",
        "`get title = site_name`"
    );
    assert_eq!(answers[0].header("x-site-name"), Some("Example Site"));
    assert_eq!(answers[2].text(), "body { color: teal; }\n");
    assert_eq!(
        answers[2].header("cache-control"),
        Some("public, max-age=600")
    );
    assert_eq!(answers[4].status, 301);
    assert_eq!(answers[5].status, 404);
}

#[test]
fn config_references_are_followed_and_what_differs_is_said() {
    let dir = fixtures();
    let converted = convert(&dir, "config_ref.ini", &[]);
    // `use = config:` inside a section: the section in this file is loaded, so its
    // [DEFAULT] reaches the other file as PasteDeploy passes it.
    assert!(
        converted.text.contains("paste = \"config_ref.ini#home\""),
        "{}",
        converted.text
    );
    assert!(
        converted
            .text
            .contains("paste = \"shared/common.ini#shared\""),
        "{}",
        converted.text
    );
    // A mount naming the other file directly: loaded alone, its global_conf differs.
    assert!(
        converted.text.contains("from [app:shared] of "),
        "{}",
        converted.text
    );
    assert!(
        converted.stderr.contains("[app:shared]") && converted.stderr.contains("who"),
        "{}",
        converted.stderr
    );
    let original = serve_ini(&dir, "config_ref.ini", "main");
    let native = serve_converted(&converted);
    let answers = same_answers(
        &original,
        &native,
        &[get("/"), get("/shared/x"), get("/sharedx")],
        &["content-type"],
    );
    let home = serde_json::from_slice::<serde_json::Value>(&answers[0].body).unwrap();
    assert_eq!(home["greeting"], "hello from home");
    assert_eq!(home["settings"]["from"], "the shared file");
    let shared = serde_json::from_slice::<serde_json::Value>(&answers[1].body).unwrap();
    assert_eq!(shared["greeting"], "hello from the shared file");
}

#[test]
fn unknown_filters_stay_python_and_htpasswd_basic_auth_goes_native() {
    let dir = fixtures();
    let converted = convert(&dir, "unknown.ini", &[]);
    let parsed: toml::Value = converted.text.parse().unwrap();
    let errors = &parsed["middleware"][0];
    assert_eq!(
        errors["filter_app_factory"].as_str(),
        Some("paste.errordocument:make_errordocument")
    );
    assert_eq!(errors["options"]["404"].as_str(), Some("/oops"));
    assert_eq!(parsed["middleware"][1]["kind"].as_str(), Some("auth"));
    assert_eq!(parsed["middleware"][1]["realm"].as_str(), Some("members"));
    assert!(
        converted.stderr.contains("[filter:errors]"),
        "{}",
        converted.stderr
    );
    // The filter-with of [app:guarded] loads with it.
    assert!(
        converted.stderr.contains("[filter:stamp]"),
        "{}",
        converted.stderr
    );

    let original = serve_ini(&dir, "unknown.ini", "main");
    let native = serve_converted(&converted);
    const ALICE: &str = "Basic YWxpY2U6d29uZGVybGFuZA=="; // alice:wonderland
    const WRONG: &str = "Basic YWxpY2U6bm9wZQ=="; // alice:nope
    let answers = same_answers(
        &original,
        &native,
        &[
            get("/").status_only(),
            get("/").with("Authorization", WRONG).status_only(),
            get("/hello").with("Authorization", ALICE),
            get("/missing").with("Authorization", ALICE),
        ],
        &["x-stamp"],
    );
    assert_eq!(answers[0].status, 401);
    // The same challenge (the native one adds RFC 7617's charset parameter).
    let challenge = |response: &Response| {
        response
            .header("www-authenticate")
            .map(|c| c.split(", charset").next().unwrap().to_owned())
    };
    assert_eq!(
        challenge(&answers[0]),
        Some("Basic realm=\"members\"".into())
    );
    assert_eq!(challenge(&get("/").send(&original)), challenge(&answers[0]));
    let hello = serde_json::from_slice::<serde_json::Value>(&answers[2].body).unwrap();
    assert_eq!(hello["user"], "alice");
    assert_eq!(answers[2].header("x-stamp"), Some("stamped"));
    // errordocument forwarded the 404 to /oops, in both.
    let oops = serde_json::from_slice::<serde_json::Value>(&answers[3].body).unwrap();
    assert_eq!(oops["path_info"], "/oops");
}

#[test]
fn a_composite_it_does_not_know_is_loaded_by_paste_deploy() {
    let dir = fixtures();
    let converted = convert(&dir, "unknown.ini", &["--name", "opaque"]);
    let parsed: toml::Value = converted.text.parse().unwrap();
    let paste = parsed["app"]["paste"].as_str().unwrap();
    assert!(paste.ends_with("unknown.ini#opaque"), "{}", converted.text);
    assert!(converted
        .text
        .contains("# from [composite:opaque] (use = egg:Paste#cascade)"));
    let original = serve_ini(&dir, "unknown.ini", "opaque");
    let native = serve_converted(&converted);
    same_answers(&original, &native, &[get("/"), get("/x?y=z")], &[]);
}

#[test]
fn pastes_proxy_becomes_an_upstream() {
    let dir = fixtures();
    let done = run(&["convert", "proxy.ini"], &dir);
    assert!(done.status.success(), "{done:?}");
    // The generated upstream and proxy route pass `check` like every other output.
    let converted = convert(&dir, "proxy.ini", &[]);
    assert_eq!(converted.text, done.stdout);
    let parsed: toml::Value = done.stdout.parse().unwrap();
    assert_eq!(
        parsed["upstream"]["backend"]["servers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect::<Vec<_>>(),
        ["127.0.0.1:9001"]
    );
    assert_eq!(
        routes(&done.stdout),
        [
            "/api -> proxy backend",
            "/api -> respond {...}",
            "/ -> app home"
        ]
    );
    let api = &parsed["route"][0];
    assert_eq!(api["methods"].as_array().unwrap().len(), 2);
    assert_eq!(
        api["middleware"][0]["request"]["remove"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect::<Vec<_>>(),
        ["cookie", "x-secret"]
    );
    assert!(done
        .stderr
        .contains("[app:backend]: Paste's proxy sent Host"));
}

#[test]
fn what_cannot_be_read_is_refused_with_the_reason() {
    let dir = fixtures();
    let missing = run(&["convert", "nothing-here.ini"], &dir);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        missing.stderr.contains("nothing-here.ini: no such file"),
        "{missing:?}"
    );

    let unknown = run(&["convert", "urlmap.ini#nope"], &dir);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        unknown.stderr.contains("LookupError") && unknown.stderr.contains("'nope'"),
        "{unknown:?}"
    );

    let out = scratch_dir("convert-exists").join("gateway.toml");
    std::fs::write(&out, "# mine\n").unwrap();
    let exists = run(
        &["convert", "urlmap.ini", "-o", out.to_str().unwrap()],
        &dir,
    );
    assert_eq!(exists.status.code(), Some(2));
    assert!(exists.stderr.contains("--force"), "{exists:?}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "# mine\n");
    let forced = run(
        &[
            "convert",
            "urlmap.ini",
            "-o",
            out.to_str().unwrap(),
            "--force",
        ],
        &dir,
    );
    assert!(forced.status.success(), "{forced:?}");

    // FILE.ini#NAME names the app; stdout carries the TOML, paths relative to here.
    let named = run(&["convert", "urlmap.ini#api_app"], &dir);
    assert!(named.status.success(), "{named:?}");
    assert!(
        named.stdout.contains("paste = \"urlmap.ini#api_app\""),
        "{}",
        named.stdout
    );
}

fn example(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config/examples/paste-stack")
        .join(file)
}

#[test]
fn the_paste_stack_examples_converted_toml_is_the_converters_output() {
    let dir = example("");
    let done = run(&["convert", "production.ini"], &dir);
    assert!(done.status.success(), "{done:?}");
    let shipped = std::fs::read_to_string(example("converted.toml")).unwrap();
    assert_eq!(
        done.stdout, shipped,
        "regenerate it: cd config/examples/paste-stack && wsgi-gateway convert production.ini -o converted.toml --force"
    );
    let checked = run(
        &[
            "check",
            &format!("--config={}", example("converted.toml").display()),
        ],
        &dir,
    );
    assert!(checked.status.success(), "{checked:?}");

    let paste = with_venv()
        .arg(&format!("--config={}", example("paste.toml").display()))
        .start();
    let native = with_venv()
        .arg(&format!("--config={}", example("converted.toml").display()))
        .start();
    for gateway in [&paste, &native] {
        let first = gzip_get("/").send(gateway);
        assert_eq!(first.status, 200, "{}", gateway.logs());
        assert_eq!(first.header("content-encoding"), Some("gzip"));
        let cookie = first.header("set-cookie").expect("a session cookie");
        assert!(cookie.starts_with("visits_session="), "{cookie}");
        let cookie = cookie.split(';').next().unwrap().to_owned();
        let second = gateway.request(
            "GET",
            "/",
            &[("Accept-Encoding", "gzip"), ("Cookie", cookie.as_str())],
            b"",
        );
        let page = String::from_utf8(decoded(&second)).unwrap();
        assert!(page.contains("You have been here 2 time(s)."), "{page}");
        gateway.wait_for_log("\"GET / HTTP/1.1\" 200");
    }
}
