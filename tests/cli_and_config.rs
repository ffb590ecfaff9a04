//! The command line and the configuration: precedence, `check`, and errors that name
//! the key and the file and exit non-zero before anything is bound.

mod common;

use common::GatewayBuilder;

fn check(toml: &str) -> common::Finished {
    GatewayBuilder::new().config(toml).run_as_check()
}

#[test]
fn help_documents_every_flag() {
    let output = GatewayBuilder::new()
        .no_app_flag()
        .no_bind_flag()
        .arg("--help")
        .run();
    assert!(output.status.success());
    for flag in ["--config", "--app", "--bind", "--workers", "--threads"] {
        assert!(
            output.stdout.contains(flag),
            "{flag} missing from:\n{}",
            output.stdout
        );
    }
    assert!(output.stdout.contains("GATEWAY_CONFIG"));
}

#[test]
fn version_names_the_gateway_and_the_python_it_runs() {
    // The test virtualenv is made with the Python the binary is built against.
    let python = common::test_venv().join("bin/python");
    let probe = std::process::Command::new(&python)
        .args(["-c", "import platform; print(platform.python_version())"])
        .output()
        .expect("run the test virtualenv's python");
    let python_version = String::from_utf8(probe.stdout).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_wsgi-gateway"))
        .arg("--version")
        .output()
        .expect("run wsgi-gateway --version");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!(
            "wsgi-gateway {} (Python {})",
            env!("CARGO_PKG_VERSION"),
            python_version.trim()
        )
    );
}

#[test]
fn check_accepts_the_shipped_reference_config() {
    let reference = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("config/gateway.toml");
    let output = GatewayBuilder::check_file(&reference);
    assert!(output.status.success(), "{output:?}");
    assert!(output.stdout.contains("configuration OK"), "{output:?}");
}

#[test]
fn unknown_key_names_the_key_and_the_file() {
    let output = check("[server]\nthraeds = 4\n[app]\nwsgi = \"contract:app\"\n");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        output.stderr.contains("server.thraeds"),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("gateway.toml"), "{}", output.stderr);
    assert!(
        output.stderr.contains("threads"),
        "the valid keys are listed: {}",
        output.stderr
    );
}

#[test]
fn wrong_type_names_the_key_and_the_file() {
    let output = check("[server]\nthreads = \"many\"\n[app]\nwsgi = \"contract:app\"\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        output.stderr.contains("server.threads"),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("gateway.toml"), "{}", output.stderr);
}

#[test]
fn invalid_values_name_the_key_and_the_file() {
    for (toml, key) in [
        (
            "[server]\nthreads = 0\n[app]\nwsgi = \"contract:app\"\n",
            "server.threads",
        ),
        (
            "[server]\nbind = \"nowhere\"\n[app]\nwsgi = \"contract:app\"\n",
            "server.bind",
        ),
        (
            "[server]\ngraceful_timeout = \"soon\"\n[app]\nwsgi = \"contract:app\"\n",
            "server.graceful_timeout",
        ),
        (
            "[limits]\nmax_body_size = \"10 parsecs\"\n[app]\nwsgi = \"contract:app\"\n",
            "limits.max_body_size",
        ),
        ("[app]\nwsgi = \"not a module:app\"\n", "app.wsgi"),
        (
            "[app]\nwsgi = \"contract:app\"\nscript_name = \"api/\"\n",
            "app.script_name",
        ),
        (
            "[telemetry]\nlog_format = \"xml\"\n[app]\nwsgi = \"contract:app\"\n",
            "telemetry.log_format",
        ),
    ] {
        let output = check(toml);
        assert_eq!(output.status.code(), Some(2), "{toml}: {output:?}");
        assert!(
            output.stderr.contains(key),
            "{key} not named: {}",
            output.stderr
        );
        assert!(
            output.stderr.contains("gateway.toml"),
            "file not named: {}",
            output.stderr
        );
    }
}

#[test]
fn a_missing_app_is_reported() {
    let output = check("[server]\nthreads = 2\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stderr.contains("app.wsgi"), "{}", output.stderr);
}

#[test]
fn toml_syntax_errors_name_the_file() {
    let output = check("[server\nthreads = 2\n");
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stderr.contains("gateway.toml"), "{}", output.stderr);
}

#[test]
fn a_missing_config_file_is_reported() {
    let output = GatewayBuilder::new()
        .no_bind_flag()
        .arg("--config=/nonexistent/gateway.toml")
        .run();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        output.stderr.contains("/nonexistent/gateway.toml"),
        "{}",
        output.stderr
    );
}

#[test]
fn environment_variables_name_themselves_in_errors() {
    let output = GatewayBuilder::new()
        .env("GATEWAY_SERVER__THREADS", "lots")
        .run();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        output.stderr.contains("server.threads"),
        "{}",
        output.stderr
    );
    assert!(output.stderr.contains("GATEWAY_"), "{}", output.stderr);
    assert!(
        !output.stderr.contains("listening"),
        "nothing may be bound: {}",
        output.stderr
    );
}

#[test]
fn serve_refuses_a_bad_config_before_binding() {
    let output = GatewayBuilder::new()
        .config("[server]\nthreads = 0\n")
        .run();
    assert_eq!(output.status.code(), Some(2));
    assert!(!output.stderr.contains("listening"), "{}", output.stderr);
}

#[test]
fn flags_beat_environment_which_beats_the_file() {
    let file = "[server]\nthreads = 1\n";
    let from_file = GatewayBuilder::new().config(file).start();
    assert_eq!(from_file.get_json("/environ")["wsgi.multithread"], false);
    let from_env = GatewayBuilder::new()
        .config(file)
        .env("GATEWAY_SERVER__THREADS", "3")
        .start();
    assert_eq!(from_env.get_json("/environ")["wsgi.multithread"], true);
    let from_flag = GatewayBuilder::new()
        .config(file)
        .env("GATEWAY_SERVER__THREADS", "3")
        .arg("--threads=1")
        .start();
    assert_eq!(from_flag.get_json("/environ")["wsgi.multithread"], false);
}

#[test]
fn the_config_file_can_name_the_app_and_the_address() {
    let gateway = GatewayBuilder::new()
        .no_app_flag()
        .no_bind_flag()
        .config("[server]\nbind = \"127.0.0.1:0\"\n[app]\nwsgi = \"contract:create_app(greeting='from config')\"\n")
        .start();
    assert_eq!(gateway.get("/").text(), "from config");
}
