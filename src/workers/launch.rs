//! How a worker process is started: the way this process was started.
//!
//! - The cargo-built binary re-executes itself: `/proc/self/exe`, the same `argv[0]`
//!   and arguments. `/proc/self/exe` is the running file even if it was replaced or
//!   removed since (an upgrade in place), so a worker always matches its supervisor.
//! - Installed with pip, the gateway runs inside a Python process (the `wsgi-gateway`
//!   console script or `python -m wsgi_gateway`), where `/proc/self/exe` is the python
//!   binary and `argv` is Python's. The Python entry point then names the command that
//!   starts the gateway again, the virtualenv's `python -m wsgi_gateway`, and the
//!   gateway's own arguments ([`start_workers_with`]); a worker runs that command.
//!   That command imports the package installed in the virtualenv *now*, which a
//!   `pip install -U` may have replaced since the supervisor started: the supervisor
//!   tells the worker its version, and a worker of another version refuses to start
//!   ([`check_supervisor_version`]), so a reload keeps the running workers instead of
//!   mixing versions. Restart the gateway after an upgrade.

use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::OnceLock;

/// The supervisor's version, given to the workers it starts through Python.
const SUPERVISOR_VERSION: &str = "WSGI_GATEWAY_SUPERVISOR_VERSION";

/// The gateway as a Python process re-runs itself; unset in the cargo-built binary.
static PYTHON_ENTRY: OnceLock<PythonEntry> = OnceLock::new();

/// The command that starts the gateway in Python, and the gateway's arguments.
struct PythonEntry {
    command: Vec<OsString>,
    args: Vec<OsString>,
}

/// Start workers as `command` (program first, e.g. `[python, "-m", "wsgi_gateway"]`)
/// followed by the gateway's arguments `args` (e.g. `["serve", "--config", "x.toml"]`).
///
/// Called once, by the Python extension module before it runs the gateway; a second
/// call, or an empty `command`, is ignored.
pub fn start_workers_with(command: Vec<OsString>, args: Vec<OsString>) {
    if !command.is_empty() {
        let _ = PYTHON_ENTRY.set(PythonEntry { command, args });
    }
}

/// The command that starts one more worker (the supervisor adds the handoff).
pub(super) fn worker_command() -> Command {
    match PYTHON_ENTRY.get() {
        Some(entry) => {
            let mut command = Command::new(&entry.command[0]);
            command
                .args(&entry.command[1..])
                .args(&entry.args)
                .env(SUPERVISOR_VERSION, env!("CARGO_PKG_VERSION"));
            command
        }
        None => {
            let mut command = Command::new("/proc/self/exe");
            if let Some(arg0) = std::env::args_os().next() {
                command.arg0(arg0);
            }
            command.args(std::env::args_os().skip(1));
            command
        }
    }
}

/// In a worker started through Python: fail if the supervisor is another version of the
/// gateway (the package was upgraded under it). Reads and removes the variable; call it
/// at start-up, before other threads read the environment.
pub fn check_supervisor_version() -> Result<(), String> {
    let Some(supervisor) = std::env::var_os(SUPERVISOR_VERSION) else {
        return Ok(());
    };
    std::env::remove_var(SUPERVISOR_VERSION);
    let ours = env!("CARGO_PKG_VERSION");
    if supervisor == ours {
        return Ok(());
    }
    Err(format!(
        "this worker is wsgi-gateway {ours} but its supervisor is {}: the package was \
         upgraded under a running gateway; restart the gateway to run {ours}",
        supervisor.to_string_lossy()
    ))
}
