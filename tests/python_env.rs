//! The embedded interpreter: the Python the binary was built against, the virtualenv
//! the config names, sys.path, import errors, and real frameworks from PyPI.

mod common;

use common::{test_venv, GatewayBuilder};

/// `sys.base_prefix` of the Python the tests (and the build) use.
fn build_python_prefix() -> String {
    let python = std::env::var("PYO3_PYTHON").unwrap_or_else(|_| "python3".into());
    let output = std::process::Command::new(python)
        .args(["-c", "import sys; print(sys.base_prefix)"])
        .output()
        .unwrap();
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[test]
fn runs_in_the_configured_virtualenv_with_the_linked_libpython() {
    let venv = test_venv();
    let gateway = GatewayBuilder::new()
        .config(&format!("[app]\nvirtualenv = \"{}\"\n", venv.display()))
        .env_remove_ld_library_path()
        .start();
    let info = gateway.get_json("/pyinfo");
    let venv = std::fs::canonicalize(&venv).unwrap();
    assert_eq!(
        std::fs::canonicalize(info["prefix"].as_str().unwrap()).unwrap(),
        venv
    );
    assert_eq!(info["base_prefix"], build_python_prefix().as_str());
    assert!(info["path"].as_array().unwrap().iter().any(|p| p
        .as_str()
        .unwrap()
        .contains("site-packages")
        && p.as_str().unwrap().starts_with(venv.to_str().unwrap())));
    // The libpython mapped into the process is the one under the base prefix.
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", gateway.pid())).unwrap();
    let libpython: Vec<&str> = maps
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .filter(|p| p.contains("libpython3"))
        .collect();
    assert!(!libpython.is_empty(), "no libpython mapped");
    assert!(
        libpython
            .iter()
            .all(|p| p.starts_with(&build_python_prefix())),
        "{libpython:?} is not under {}",
        build_python_prefix()
    );
}

#[test]
fn virtual_env_variable_is_honoured() {
    let venv = test_venv();
    let gateway = GatewayBuilder::new()
        .app("flask_app:app")
        .env("VIRTUAL_ENV", venv.to_str().unwrap())
        .start();
    assert_eq!(gateway.get("/").text(), "hello from flask");
}

#[test]
fn a_virtualenv_of_another_python_is_refused_clearly() {
    let dir = common::scratch_dir("venv312");
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::write(dir.join("pyvenv.cfg"), "home = /usr/bin\nversion = 3.2.1\n").unwrap();
    let output = GatewayBuilder::new()
        .config(&format!("[app]\nvirtualenv = \"{}\"\n", dir.display()))
        .run();
    assert!(!output.status.success());
    assert!(
        output.stderr.contains("made with Python 3.2.1"),
        "{}",
        output.stderr
    );
    assert!(!output.stderr.contains("listening"));
}

#[test]
fn an_import_error_prints_the_traceback_and_exits_non_zero() {
    let output = GatewayBuilder::new().app("broken_import").run();
    assert!(!output.status.success());
    assert!(
        output.stderr.contains("Traceback (most recent call last)"),
        "{}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .contains("ModuleNotFoundError: No module named 'this_module_does_not_exist'"),
        "{}",
        output.stderr
    );
    assert!(!output.stderr.contains("listening"));

    let output = GatewayBuilder::new().app("no_such_module:app").run();
    assert!(!output.status.success());
    assert!(
        output.stderr.contains("No module named 'no_such_module'"),
        "{}",
        output.stderr
    );

    let output = GatewayBuilder::new()
        .app("contract:no_such_attribute")
        .run();
    assert!(!output.status.success());
    assert!(
        output.stderr.contains("no_such_attribute"),
        "{}",
        output.stderr
    );

    let output = GatewayBuilder::new().app("not_callable").run();
    assert!(!output.status.success());
    assert!(
        output.stderr.contains("is a dict, not a callable"),
        "{}",
        output.stderr
    );
}

#[test]
fn without_a_config_file_the_current_directory_is_on_sys_path() {
    let dir = common::scratch_dir("cwd-app");
    std::fs::write(
        dir.join("here_app.py"),
        "def application(environ, start_response):\n    start_response('200 OK', [])\n    return [b'from the cwd']\n",
    )
    .unwrap();
    let gateway = GatewayBuilder::new().cwd(&dir).app("here_app").start();
    assert_eq!(gateway.get("/").text(), "from the cwd");
}

#[test]
fn python_path_entries_are_relative_to_the_config_file() {
    let dir = common::scratch_dir("pypath");
    std::fs::create_dir_all(dir.join("src/pkg")).unwrap();
    std::fs::write(dir.join("src/pkg/__init__.py"), "").unwrap();
    std::fs::write(
        dir.join("src/pkg/web.py"),
        "def app(environ, start_response):\n    start_response('200 OK', [])\n    return [b'from src']\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("gateway.toml"),
        "[app]\nwsgi = \"pkg.web:app\"\npython_path = [\"src\"]\n",
    )
    .unwrap();
    let gateway = GatewayBuilder::new()
        .no_app_flag()
        .arg(&format!("--config={}", dir.join("gateway.toml").display()))
        .start();
    assert_eq!(gateway.get("/").text(), "from src");
}

#[test]
fn serves_a_flask_application() {
    let venv = test_venv();
    let gateway = GatewayBuilder::new()
        .app("flask_app:app")
        .config(&format!("[app]\nvirtualenv = \"{}\"\n", venv.display()))
        .start();
    assert_eq!(gateway.get("/").text(), "hello from flask");

    let response = gateway.request(
        "POST",
        "/json",
        &[("Content-Type", "application/json")],
        br#"{"a": [1, 2, 3]}"#,
    );
    assert_eq!(response.json()["received"]["a"][2], 3);
    assert_eq!(response.json()["remote"], "127.0.0.1");

    let boundary = "XyZ";
    let payload = vec![b'z'; 200_000];
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nhi\r\n\
         --{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"z.bin\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&payload);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let response = gateway.request("POST", "/upload", &[("Content-Type", &content_type)], &body);
    assert_eq!(response.json()["size"], 200_000);
    assert_eq!(response.json()["name"], "z.bin");
    assert_eq!(response.json()["field"], "hi");

    assert_eq!(gateway.get("/stream").text(), "part 0\npart 1\npart 2\n");
    let response = gateway.get("/cookie");
    assert!(response
        .header("set-cookie")
        .unwrap()
        .starts_with("visit=yes"));
    let response = gateway.request("GET", "/cookie", &[("Cookie", "visit=yes")], b"");
    assert_eq!(response.json()["seen"], "yes");
    assert_eq!(gateway.get("/missing").status, 404);
}

#[test]
fn serves_a_django_application() {
    let venv = test_venv();
    let gateway = GatewayBuilder::new()
        .app("django_site")
        .config(&format!(
            "[app]\nvirtualenv = \"{}\"\nscript_name = \"/site\"\n",
            venv.display()
        ))
        .start();
    let meta = gateway.get_json("/site/meta/?a=1&b=two");
    assert_eq!(meta["path"], "/site/meta/");
    assert_eq!(meta["query"]["b"], "two");
    assert_eq!(meta["remote"], "127.0.0.1");
    assert_eq!(meta["host"], "test.local");
    assert_eq!(meta["scheme"], "http");
    let response = gateway.request(
        "POST",
        "/site/form/",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"name=caf%C3%A9&n=2",
    );
    assert_eq!(response.json()["fields"]["name"], "caf\u{e9}");
    assert_eq!(gateway.get("/site/text/").text(), "hello from django");
    // CommonMiddleware redirects to the slash-terminated URL, under the mount prefix.
    let response = gateway.get("/site/text");
    assert_eq!(response.status, 301);
    assert_eq!(response.header("location"), Some("/site/text/"));
    assert_eq!(gateway.get("/site/nowhere/").status, 404);
}
