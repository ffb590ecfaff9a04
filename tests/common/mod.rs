//! Test harness: the real `wsgi-gateway` binary on port 0, spoken to over TCP.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// How long any single wait in a test may take before it fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// The folder holding the Python fixture applications.
pub fn apps_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/apps")
}

/// The test virtualenv made by tests/run.sh (Flask, Django, Beaker, Paste ...).
pub fn test_venv() -> PathBuf {
    let venv = std::env::var_os("GATEWAY_TEST_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/.venv"));
    assert!(
        venv.join("pyvenv.cfg").is_file(),
        "the test virtualenv {} is missing: run tests/run.sh, which creates it",
        venv.display()
    );
    venv
}

/// A fresh scratch folder for one test.
pub fn scratch_dir(name: &str) -> PathBuf {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// How to start a gateway.
pub struct GatewayBuilder {
    args: Vec<String>,
    envs: Vec<(String, String)>,
    config: Option<String>,
    cwd: PathBuf,
    bind: bool,
    remove_ld_path: bool,
    binary: Option<PathBuf>,
}

impl Default for GatewayBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayBuilder {
    /// `serve` in tests/apps with the contract app, on 127.0.0.1:0.
    pub fn new() -> Self {
        Self {
            args: vec!["serve".into()],
            envs: vec![("RUST_LOG".into(), "info".into())],
            config: None,
            cwd: apps_dir(),
            bind: true,
            remove_ld_path: false,
            binary: None,
        }
        .app("contract:application")
    }

    /// Set app.wsgi with --app.
    pub fn app(mut self, spec: &str) -> Self {
        self.args.retain(|a| !a.starts_with("--app="));
        self.args.push(format!("--app={spec}"));
        self
    }

    /// Drop the --app flag (the config names the app).
    pub fn no_app_flag(mut self) -> Self {
        self.args.retain(|a| !a.starts_with("--app="));
        self
    }

    /// Do not pass --bind (the config names the address).
    pub fn no_bind_flag(mut self) -> Self {
        self.bind = false;
        self
    }

    /// Add a command-line argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Drop every argument given so far (`serve` and `--app` included).
    pub fn clear_args(mut self) -> Self {
        self.args.clear();
        self
    }

    /// Set an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.envs.push((key.into(), value.into()));
        self
    }

    /// Start without LD_LIBRARY_PATH, to prove the binary finds its libpython alone.
    pub fn env_remove_ld_library_path(mut self) -> Self {
        self.remove_ld_path = true;
        self
    }

    /// Write `toml` to a file and pass it with --config.
    pub fn config(mut self, toml: &str) -> Self {
        self.config = Some(toml.into());
        self
    }

    /// Run in `dir` instead of tests/apps.
    pub fn cwd(mut self, dir: &Path) -> Self {
        self.cwd = dir.to_path_buf();
        self
    }

    /// Run this copy of the binary instead of cargo's.
    pub fn binary(mut self, path: &Path) -> Self {
        self.binary = Some(path.to_path_buf());
        self
    }

    fn command(&self) -> Command {
        let mut command = Command::new(
            self.binary
                .as_deref()
                .unwrap_or(Path::new(env!("CARGO_BIN_EXE_wsgi-gateway"))),
        );
        command.args(&self.args);
        if self.bind && self.args.first().is_some_and(|a| a == "serve") {
            command.arg("--bind=127.0.0.1:0");
        }
        if let Some(toml) = &self.config {
            let dir = scratch_dir("config");
            let file = dir.join("gateway.toml");
            std::fs::write(&file, toml).unwrap();
            command.arg(format!("--config={}", file.display()));
        }
        command
            .current_dir(&self.cwd)
            .env_remove("VIRTUAL_ENV")
            .env_remove("GATEWAY_CONFIG")
            .envs(self.envs.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null());
        if self.remove_ld_path {
            command
                .env_remove("LD_LIBRARY_PATH")
                .env_remove("PYTHONHOME");
        }
        command
    }

    /// `wsgi-gateway check` with this builder's config file.
    pub fn run_as_check(mut self) -> Finished {
        self.args = vec!["check".into()];
        self.run()
    }

    /// `wsgi-gateway check --config FILE`.
    pub fn check_file(file: &Path) -> Finished {
        let mut builder = Self::new();
        builder.args = vec!["check".into(), format!("--config={}", file.display())];
        builder.run()
    }

    /// Run to completion (for commands that should exit), with a bound on time.
    pub fn run(self) -> Finished {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsgi-gateway");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(_status) = child.try_wait().unwrap() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("wsgi-gateway did not exit within {WAIT:?}");
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

    /// Start serving and wait until the gateway logs its address.
    pub fn start(self) -> Gateway {
        let mut child = self
            .command()
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn wsgi-gateway");
        let logs = Arc::new(Mutex::new(String::new()));
        let (addr_tx, addr_rx) = mpsc::channel();
        for stream in [
            Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
            Box::new(child.stdout.take().unwrap()),
        ] {
            let logs = logs.clone();
            let addr_tx = addr_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Some(at) = line.find("listening on http://") {
                        let rest = &line[at + "listening on http://".len()..];
                        // Text lines end the address with a space, JSON lines with a quote.
                        let addr = rest
                            .split(|c: char| c.is_whitespace() || c == '"')
                            .next()
                            .unwrap_or("");
                        if let Ok(addr) = addr.parse::<SocketAddr>() {
                            let _ = addr_tx.send(addr);
                        }
                    }
                    let mut logs = logs.lock().unwrap();
                    logs.push_str(&line);
                    logs.push('\n');
                }
            });
        }
        drop(addr_tx);
        match addr_rx.recv_timeout(WAIT) {
            Ok(addr) => Gateway { child, addr, logs },
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!("gateway did not start; its log:\n{}", logs.lock().unwrap());
            }
        }
    }
}

/// A command that ran to completion.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// A running gateway, killed when dropped.
pub struct Gateway {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    logs: Arc<Mutex<String>>,
}

impl Gateway {
    /// Everything the gateway has logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// Wait until the log contains `needle`; panics with the log after [`WAIT`].
    pub fn wait_for_log(&self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let logs = self.logs();
            if logs.contains(needle) {
                return logs;
            }
            assert!(
                Instant::now() < deadline,
                "log never contained {needle:?}:\n{logs}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Send a signal to the gateway.
    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }

    /// Wait for the process to exit (bounded by [`WAIT`]).
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not exit:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A new connection with read/write timeouts.
    pub fn connect(&self) -> TcpStream {
        let stream = TcpStream::connect(self.addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        stream
    }

    /// One request on its own connection (`Connection: close`).
    pub fn request(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Response {
        let mut stream = self.connect();
        let mut head =
            format!("{method} {target} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body).unwrap();
        let mut reader = BufReader::new(stream);
        read_response(&mut reader, method == "HEAD").expect("a complete response")
    }

    /// `GET target` on its own connection from another thread: for a request that
    /// blocks (a slow one in flight, a barrier) while the test goes on.
    pub fn get_in_background(&self, target: &str) -> std::thread::JoinHandle<Response> {
        let addr = self.addr;
        let head =
            format!("GET {target} HTTP/1.1\r\nHost: test.local\r\nConnection: close\r\n\r\n");
        std::thread::spawn(move || {
            let mut stream = TcpStream::connect(addr).expect("connect");
            stream.set_read_timeout(Some(WAIT)).unwrap();
            stream.write_all(head.as_bytes()).unwrap();
            read_response(&mut BufReader::new(stream), false).expect("a complete response")
        })
    }

    /// The admin listener's address, from its start-up log line.
    pub fn admin_addr(&self) -> SocketAddr {
        const LINE: &str = "admin endpoints (/healthz, /readyz, /metrics) on http://";
        let logs = self.wait_for_log(LINE);
        let at = logs.find(LINE).unwrap() + LINE.len();
        logs[at..]
            .split(|c: char| c.is_whitespace() || c == '"')
            .next()
            .unwrap()
            .parse()
            .expect("an admin address")
    }

    /// `GET path` on the admin listener.
    pub fn admin_get(&self, path: &str) -> Response {
        let mut stream = TcpStream::connect(self.admin_addr()).expect("connect to admin");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
        read_response(&mut BufReader::new(stream), false).expect("a complete admin response")
    }

    /// `GET target`.
    pub fn get(&self, target: &str) -> Response {
        self.request("GET", target, &[], b"")
    }

    /// `GET target` and parse the JSON body.
    pub fn get_json(&self, target: &str) -> serde_json::Value {
        let response = self.get(target);
        assert_eq!(
            response.status,
            200,
            "GET {target}: {response:?}\n{}",
            self.logs()
        );
        response.json()
    }

    /// Send raw bytes on a new connection and read until the server closes it.
    pub fn raw(&self, bytes: &[u8]) -> Vec<u8> {
        let mut stream = self.connect();
        stream.write_all(bytes).unwrap();
        read_to_close(&mut stream)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            // The gateway's own account of a failed test, for CI logs.
            eprintln!(
                "--- gateway log ---\n{}--- end of gateway log ---",
                self.logs()
            );
        }
    }
}

/// Read until EOF or a reset (bounded by the socket's read timeout).
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 65536];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return out,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return out,
            Err(e) => panic!("read failed after {} bytes: {e}", out.len()),
        }
    }
}

/// A parsed HTTP/1 response.
#[derive(Debug, Clone)]
pub struct Response {
    pub version: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// True if the body was delimited by Content-Length or chunked framing and arrived
    /// whole; false if the connection ended first.
    pub complete: bool,
}

impl Response {
    /// The first value of a header, case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

/// Read one response. Returns None if the connection closed before a status line.
pub fn read_response<R: BufRead>(reader: &mut R, head_request: bool) -> Option<Response> {
    let mut line = String::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        // Skip interim 1xx responses' blank lines handled below.
        if !line.trim().is_empty() {
            break;
        }
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let version = parts.next()?.to_owned();
    let status: u16 = parts.next()?.parse().ok()?;
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            break;
        }
        let (name, value) = header.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut response = Response {
        version,
        status,
        headers,
        body: Vec::new(),
        complete: true,
    };
    if (100..200).contains(&status) {
        return read_response(reader, head_request).map(|mut final_response| {
            final_response
                .headers
                .push(("x-test-saw-interim".into(), status.to_string()));
            final_response
        });
    }
    if head_request || status == 204 || status == 304 {
        return Some(response);
    }
    let chunked = response
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"));
    if chunked {
        loop {
            let mut size_line = String::new();
            if reader.read_line(&mut size_line).unwrap_or(0) == 0 {
                response.complete = false;
                return Some(response);
            }
            let size =
                usize::from_str_radix(size_line.trim().split(';').next().unwrap(), 16).ok()?;
            if size == 0 {
                let mut trailer = String::new();
                loop {
                    trailer.clear();
                    if reader.read_line(&mut trailer).unwrap_or(0) == 0 || trailer.trim().is_empty()
                    {
                        break;
                    }
                }
                return Some(response);
            }
            let mut chunk = vec![0u8; size + 2];
            if reader.read_exact(&mut chunk).is_err() {
                response.complete = false;
                return Some(response);
            }
            response.body.extend_from_slice(&chunk[..size]);
        }
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().ok()?;
        let mut body = vec![0u8; length];
        let mut read = 0;
        while read < length {
            match reader.read(&mut body[read..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
        body.truncate(read);
        response.complete = read == length;
        response.body = body;
    } else {
        let _ = reader.read_to_end(&mut response.body);
    }
    Some(response)
}

/// Wait until the contract app has been called `others` times besides these polls of
/// its `/calls` route (each poll is a call too).
pub fn wait_for_app_calls(gateway: &Gateway, others: i64) {
    let mut polls = 0;
    eventually(&format!("{others} requests to reach the app"), || {
        polls += 1;
        let count = gateway.get_json("/calls")["count"].as_i64().unwrap();
        (count - polls >= others).then_some(())
    });
}

/// Poll `check` until it returns Some, for at most [`WAIT`].
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Assert that `text` is valid Prometheus exposition, as `promtool check metrics` reads
/// it (Debian package prometheus; tests/run.sh installs it).
pub fn promtool_check(text: &str) {
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; tests/run.sh installs it)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics failed:\n{}{}\n--- input ---\n{text}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
