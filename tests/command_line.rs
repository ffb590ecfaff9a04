//! The command line a gunicorn user types, and a first run without surprises: every
//! flag maps to a key (and is named as the source of a bad value), hints for gunicorn
//! flags, `check` runs what `serve` runs, `config` shows where each value came from.

mod common;

use common::{scratch_dir, GatewayBuilder};

/// `wsgi-gateway ARGS` run to completion, without the harness's --app and --bind.
fn run(args: &[&str]) -> common::Finished {
    let mut builder = GatewayBuilder::new().no_app_flag().no_bind_flag();
    builder = builder.clear_args();
    for arg in args {
        builder = builder.arg(arg);
    }
    builder.run()
}

#[test]
fn the_app_is_a_positional_argument_and_serve_may_be_left_out() {
    let gateway = GatewayBuilder::new()
        .no_app_flag()
        .arg("contract:application")
        .start();
    assert_eq!(gateway.get("/pid").status, 200);
    // `wsgi-gateway APP FLAGS` is `wsgi-gateway serve APP FLAGS`.
    let short = GatewayBuilder::new()
        .no_app_flag()
        .clear_args()
        .arg("contract:application")
        .arg("--bind=127.0.0.1:0")
        .start();
    assert_eq!(short.get("/pid").status, 200);
}

#[test]
fn every_flag_sets_its_key_and_config_says_so() {
    let dir = scratch_dir("flags");
    let output = run(&[
        "config",
        "--app=contract:application",
        "--bind=127.0.0.1:9001",
        "-w",
        "auto",
        "--threads=3",
        "-t",
        "45",
        "--graceful-timeout=5",
        "--keep-alive=7",
        "--max-requests=100",
        "--max-requests-jitter=10",
        "--backlog=64",
        "--forwarded-allow-ips=10.0.0.0/8,unix",
        "--log-level=debug",
        "--limit-request-line=2048",
        "--limit-request-fields=50",
        "--limit-request-field_size=4096",
        &format!("--pid={}", dir.join("gw.pid").display()),
        &format!("--chdir={}", dir.display()),
        "--pythonpath=/opt/a,/opt/b",
        "--access-logfile=-",
        "--access-logformat=%(h)s %(s)s",
    ]);
    assert!(output.status.success(), "{output:?}");
    let text = &output.stdout;
    for (key, flag) in [
        ("app.wsgi = \"contract:application\"", "--app"),
        ("server.bind = [\"127.0.0.1:9001\"]", "--bind"),
        ("server.threads = 3", "--threads"),
        ("server.timeout = \"45s\"", "--timeout"),
        ("server.graceful_timeout = \"5s\"", "--graceful-timeout"),
        ("server.keepalive_timeout = \"7s\"", "--keep-alive"),
        ("server.max_requests = 100", "--max-requests"),
        ("server.max_requests_jitter = 10", "--max-requests-jitter"),
        ("server.backlog = 64", "--backlog"),
        (
            "server.forwarded_allow_ips = [\"10.0.0.0/8\",\"unix\"]",
            "--forwarded-allow-ips",
        ),
        ("telemetry.log_level = \"debug\"", "--log-level"),
        ("limits.max_request_line = 2048", "--limit-request-line"),
        ("limits.max_header_count = 50", "--limit-request-fields"),
        (
            "limits.max_header_size = 4096",
            "--limit-request-field_size",
        ),
        ("app.python_path[0] = \"/opt/a\"", "--pythonpath"),
        ("app.python_path[1] = \"/opt/b\"", "--pythonpath"),
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} missing from:\n{text}"));
        assert!(
            line.ends_with(&format!("# command-line flag {flag}")),
            "{line}"
        );
    }
    let workers = text
        .lines()
        .find(|l| l.starts_with("server.workers = "))
        .unwrap();
    let count: usize = workers["server.workers = ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(
        count,
        std::thread::available_parallelism().unwrap().get(),
        "-w auto"
    );
    assert!(
        text.contains("middleware[0].kind = \"access_log\""),
        "{text}"
    );
    assert!(
        text.contains("middleware[0].format = \"%(h)s %(s)s\""),
        "{text}"
    );
    assert!(text.contains("middleware[0].output = \"stdout\""), "{text}");
    assert!(text.contains("server.pidfile = "), "{text}");
    assert!(text.contains("app.chdir = "), "{text}");
    assert!(text.contains("server.http2 = true  # defaults"), "{text}");
}

#[test]
fn gunicorn_flags_without_an_equivalent_get_a_hint() {
    for (flag, hint) in [
        ("-k", "Python threads (--threads)"),
        ("--worker-class=gevent", "Python threads (--threads)"),
        ("--daemon", "systemd"),
        ("--check-config", "wsgi-gateway check"),
        ("--statsd-host=localhost:8125", "/metrics"),
    ] {
        let output = run(&["contract:application", flag, "x"]);
        assert_eq!(output.status.code(), Some(2), "{flag}: {output:?}");
        assert!(
            output.stderr.contains("coming from gunicorn?"),
            "{flag}: {}",
            output.stderr
        );
        assert!(output.stderr.contains(hint), "{flag}: {}", output.stderr);
    }
}

#[test]
fn a_bad_value_names_the_flag_or_the_variable_not_the_source_code() {
    let output = run(&["check", "--app=contract:application", "--bind=nowhere"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(output.stderr.contains("server.bind"), "{}", output.stderr);
    assert!(
        output.stderr.contains("command-line flag --bind"),
        "{}",
        output.stderr
    );
    assert!(!output.stderr.contains("src/"), "{}", output.stderr);

    let output = GatewayBuilder::new()
        .no_app_flag()
        .no_bind_flag()
        .clear_args()
        .env("GATEWAY_SERVER__THREADS", "many")
        .arg("check")
        .arg("--app=contract:application")
        .run();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        output
            .stderr
            .contains("environment variable GATEWAY_SERVER__THREADS"),
        "{}",
        output.stderr
    );
    assert!(!output.stderr.contains("src/"), "{}", output.stderr);
}

#[test]
fn a_variable_with_one_underscore_is_warned_about() {
    let output = GatewayBuilder::new()
        .no_app_flag()
        .no_bind_flag()
        .clear_args()
        .env("GATEWAY_SERVER_THREADS", "8")
        .arg("check")
        .arg("--app=contract:application")
        .run();
    assert!(output.status.success(), "{output:?}");
    assert!(
        output
            .stderr
            .contains("GATEWAY_SERVER_THREADS sets no configuration key")
            && output.stderr.contains("GATEWAY_SERVER__THREADS"),
        "{}",
        output.stderr
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let output = GatewayBuilder::new()
        .config("[server]\nthreads = 0\nio_threads = 0\n[telemetry]\nlog_level = \"verbose\"\n[app]\nwsgi = \"contract:application\"\n")
        .run_as_check();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    for key in ["server.threads", "server.io_threads", "telemetry.log_level"] {
        assert!(output.stderr.contains(key), "{key}: {}", output.stderr);
    }
    assert!(
        output.stderr.contains("\"verbose\" names no level"),
        "{}",
        output.stderr
    );
}

#[test]
fn check_imports_the_app_and_its_middleware() {
    let missing = run(&["check", "--app=no_such_module:app"]);
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    assert!(
        missing.stderr.contains("ModuleNotFoundError"),
        "{}",
        missing.stderr
    );
    let broken = run(&["check", "--app=broken_import:application"]);
    assert_eq!(broken.status.code(), Some(2), "{broken:?}");
    assert!(broken.stderr.contains("Traceback"), "{}", broken.stderr);
    let filter = GatewayBuilder::new()
        .config("[app]\nwsgi = \"contract:application\"\n[[middleware]]\nkind = \"python\"\nfactory = \"trail:no_such_factory\"\n")
        .run_as_check();
    assert_eq!(filter.status.code(), Some(2), "{filter:?}");
    assert!(
        filter.stderr.contains("no_such_factory"),
        "{}",
        filter.stderr
    );
    let log_folder = GatewayBuilder::new()
        .config("[app]\nwsgi = \"contract:application\"\n[[middleware]]\nkind = \"access_log\"\noutput = \"/nonexistent/folder/access.log\"\n")
        .run_as_check();
    assert_eq!(log_folder.status.code(), Some(2), "{log_folder:?}");
    assert!(
        log_folder.stderr.contains("middleware[0]"),
        "{}",
        log_folder.stderr
    );
    let ok = run(&["check", "--app=contract:application"]);
    assert!(ok.status.success(), "{ok:?}");
    assert!(ok.stdout.contains("configuration OK"), "{}", ok.stdout);
}

#[test]
fn a_bearer_token_with_a_space_is_refused() {
    let dir = scratch_dir("tokens");
    std::fs::write(dir.join("tokens"), "# ops tokens\nbob:tok-1\nalice TOKEN\n").unwrap();
    let output = GatewayBuilder::new()
        .config(&format!(
            "[app]\nwsgi = \"contract:application\"\n[[middleware]]\nkind = \"auth\"\nscheme = \"bearer\"\ntokens_file = \"{}\"\n",
            dir.join("tokens").display()
        ))
        .run_as_check();
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(output.stderr.contains("line 3"), "{}", output.stderr);
    assert!(output.stderr.contains("name:token"), "{}", output.stderr);
}

#[test]
fn chdir_env_and_pid_reach_the_process() {
    let dir = scratch_dir("chdir");
    std::fs::write(dir.join("data.txt"), "relative data").unwrap();
    let pidfile = dir.join("gateway.pid");
    let mut gateway = GatewayBuilder::new()
        .arg(&format!("--chdir={}", dir.display()))
        .arg(&format!("--pythonpath={}", common::apps_dir().display()))
        .arg("--env=GW_FLAG_VAR=from-the-flag")
        .arg(&format!("--pid={}", pidfile.display()))
        .start();
    let process = gateway.get_json("/process?var=GW_FLAG_VAR&file=data.txt");
    assert_eq!(
        process["cwd"],
        dir.canonicalize().unwrap().display().to_string()
    );
    assert_eq!(process["var"], "from-the-flag");
    assert_eq!(process["file"], "relative data");
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(pid, gateway.pid());
    gateway.signal(libc::SIGTERM);
    assert!(gateway.wait_exit().success());
    assert!(!pidfile.exists(), "the pid file is removed on exit");
}

#[test]
fn with_json_logs_print_and_logging_output_are_json_lines() {
    let gateway = GatewayBuilder::new()
        .env("GATEWAY_TELEMETRY__LOG_FORMAT", "json")
        .start();
    assert_eq!(gateway.get("/print").status, 200);
    let logs = common::eventually("the app's output in the log", || {
        let logs = gateway.logs();
        (logs.contains("printed by the app") && logs.contains("logged by the app")).then_some(logs)
    });
    for line in logs.lines().filter(|l| l.contains("by the app")) {
        let record: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
        assert!(
            record["message"].as_str().unwrap().contains("by the app"),
            "{line}"
        );
        assert!(
            record["target"] == "python.stdout" || record["target"] == "python.stderr",
            "{line}"
        );
    }
}

#[test]
fn reload_serves_an_edit_and_keeps_the_old_code_when_the_edit_is_broken() {
    let dir = scratch_dir("dev-reload");
    let write = |body: &str| {
        std::fs::write(
            dir.join("devapp.py"),
            format!(
                "def application(environ, start_response):\n    \
                 start_response('200 OK', [])\n    return [b'{body}']\n"
            ),
        )
        .unwrap();
    };
    write("first version");
    let gateway = GatewayBuilder::new()
        .cwd(&dir)
        .app("devapp")
        .arg("--reload")
        .start();
    gateway.wait_for_log("--reload: watching");
    assert_eq!(gateway.get("/").text(), "first version");
    write("second version, longer");
    common::eventually("the edit served", || {
        (gateway.get("/").text() == "second version, longer").then_some(())
    });
    std::fs::write(dir.join("devapp.py"), "def application(:\n").unwrap();
    gateway.wait_for_log("reload failed");
    gateway.wait_for_log("SyntaxError");
    for _ in 0..5 {
        assert_eq!(gateway.get("/").text(), "second version, longer");
    }
}
