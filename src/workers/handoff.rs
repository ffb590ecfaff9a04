//! How the supervisor hands listening sockets and a readiness pipe to a worker.
//!
//! The supervisor binds every listener once (so port 0 resolves once and no queued
//! connection is lost when a worker exits) and starts each worker as the same binary
//! with the same arguments, plus these environment variables:
//! - `WSGI_GATEWAY_WORKER`: the worker's slot number;
//! - `WSGI_GATEWAY_LISTEN_FDS`: inherited listener descriptors, `3:tcp,4:unix`;
//! - `WSGI_GATEWAY_READY_FD`: a pipe the worker writes one byte to once it serves;
//! - `WSGI_GATEWAY_METRICS_FD`: the shared memory the worker counts its metrics in.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::server::BoundListener;

const WORKER: &str = "WSGI_GATEWAY_WORKER";
const LISTEN_FDS: &str = "WSGI_GATEWAY_LISTEN_FDS";
const READY_FD: &str = "WSGI_GATEWAY_READY_FD";
const METRICS_FD: &str = "WSGI_GATEWAY_METRICS_FD";

/// Exit code of a worker that stopped to be replaced (max_requests, reload): not a crash.
pub const EXIT_RECYCLE: i32 = 3;

/// What a worker process inherited from its supervisor.
pub struct WorkerHandoff {
    /// The worker's slot.
    pub slot: usize,
    /// Listening sockets, in `server.bind` order.
    pub listeners: Vec<BoundListener>,
    ready: Option<OwnedFd>,
    /// The descriptor of the metrics region, if one was handed over.
    pub metrics_fd: Option<RawFd>,
}

impl WorkerHandoff {
    /// The handoff, if this process was started by a supervisor.
    pub fn from_env() -> Option<Self> {
        let slot = std::env::var(WORKER).ok()?.parse().ok()?;
        let listeners = std::env::var(LISTEN_FDS)
            .ok()?
            .split(',')
            .filter_map(|entry| {
                let (fd, kind) = entry.split_once(':')?;
                let fd = fd.parse::<RawFd>().ok()?;
                close_on_exec(fd);
                // SAFETY: the supervisor passed these descriptors to us for our use.
                Some(unsafe {
                    match kind {
                        "unix" => BoundListener::Unix {
                            listener: std::os::unix::net::UnixListener::from_raw_fd(fd),
                            path: None,
                        },
                        "tls" => BoundListener::Tls(std::net::TcpListener::from_raw_fd(fd)),
                        _ => BoundListener::Tcp(std::net::TcpListener::from_raw_fd(fd)),
                    }
                })
            })
            .collect();
        let ready = std::env::var(READY_FD)
            .ok()
            .and_then(|fd| fd.parse::<RawFd>().ok())
            // SAFETY: as above; the write end of the readiness pipe is ours.
            .map(|fd| unsafe {
                close_on_exec(fd);
                OwnedFd::from_raw_fd(fd)
            });
        let metrics_fd = std::env::var(METRICS_FD)
            .ok()
            .and_then(|fd| fd.parse::<RawFd>().ok());
        // Children of the worker (subprocesses of the app) must not inherit these.
        // Called at start-up, before any other thread reads the environment.
        for name in [WORKER, LISTEN_FDS, READY_FD, METRICS_FD] {
            std::env::remove_var(name);
        }
        Some(Self {
            slot,
            listeners,
            ready,
            metrics_fd,
        })
    }

    /// Tell the supervisor this worker serves.
    pub fn signal_ready(&mut self) {
        if let Some(fd) = self.ready.take() {
            let file = std::fs::File::from(fd);
            let _ = std::io::Write::write_all(&mut &file, b"R");
        }
    }
}

/// The environment that makes a child process a worker.
pub fn worker_env(
    slot: usize,
    listeners: &[BoundListener],
    ready_fd: RawFd,
    metrics_fd: Option<RawFd>,
) -> Vec<(&'static str, String)> {
    let fds = listeners
        .iter()
        .map(|l| format!("{}:{}", l.raw_fd(), l.kind()))
        .collect::<Vec<_>>()
        .join(",");
    let mut env = vec![
        (WORKER, slot.to_string()),
        (LISTEN_FDS, fds),
        (READY_FD, ready_fd.to_string()),
    ];
    if let Some(fd) = metrics_fd {
        env.push((METRICS_FD, fd.to_string()));
    }
    env
}

/// Keep an inherited descriptor from leaking into the application's subprocesses (a
/// child holding a listening socket would keep the port after the worker exits).
fn close_on_exec(fd: RawFd) {
    // SAFETY: fcntl on a descriptor handed to this process.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}
