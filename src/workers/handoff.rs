//! How the supervisor hands listening sockets and a control pipe to a worker.
//!
//! The supervisor binds every listener once (so port 0 resolves once and no queued
//! connection is lost when a worker exits) and starts each worker as the same binary
//! with the same arguments, plus these environment variables:
//! - `WSGI_GATEWAY_WORKER`: the worker's slot number;
//! - `WSGI_GATEWAY_LISTEN_FDS`: inherited listener descriptors, `3:tcp,4:unix`;
//! - `WSGI_GATEWAY_CONTROL_FD`: a pipe on which the worker tells the supervisor, one
//!   byte per [`WorkerMessage`], that it serves and, later, that it wants to be replaced;
//! - `WSGI_GATEWAY_METRICS_FD`: the shared memory the worker counts its metrics in.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::server::BoundListener;

const WORKER: &str = "WSGI_GATEWAY_WORKER";
const LISTEN_FDS: &str = "WSGI_GATEWAY_LISTEN_FDS";
const CONTROL_FD: &str = "WSGI_GATEWAY_CONTROL_FD";
const METRICS_FD: &str = "WSGI_GATEWAY_METRICS_FD";

/// What a worker tells its supervisor on the control pipe.
///
/// A recycle is a message, not an exit code: any exit the supervisor did not ask for is a
/// crash, whatever its code (an application may call `os._exit(3)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WorkerMessage {
    /// The application is imported and the worker accepts connections.
    Ready,
    /// `max_requests`, `max_rss` or `timeout` was reached: start a replacement, then
    /// send this worker SIGTERM. It keeps serving until then.
    Recycle,
}

impl WorkerMessage {
    fn byte(self) -> u8 {
        match self {
            WorkerMessage::Ready => b'R',
            WorkerMessage::Recycle => b'Q',
        }
    }

    /// The message a byte read from the pipe stands for.
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            b'R' => Some(WorkerMessage::Ready),
            b'Q' => Some(WorkerMessage::Recycle),
            _ => None,
        }
    }
}

/// What a worker process inherited from its supervisor.
pub struct WorkerHandoff {
    /// The worker's slot.
    pub slot: usize,
    /// Listening sockets, in `server.bind` order.
    pub listeners: Vec<BoundListener>,
    control: Option<std::fs::File>,
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
        let control = std::env::var(CONTROL_FD)
            .ok()
            .and_then(|fd| fd.parse::<RawFd>().ok())
            // SAFETY: as above; the write end of the control pipe is ours.
            .map(|fd| unsafe {
                close_on_exec(fd);
                std::fs::File::from(OwnedFd::from_raw_fd(fd))
            });
        let metrics_fd = std::env::var(METRICS_FD)
            .ok()
            .and_then(|fd| fd.parse::<RawFd>().ok());
        // Children of the worker (subprocesses of the app) must not inherit these.
        // Called at start-up, before any other thread reads the environment.
        for name in [WORKER, LISTEN_FDS, CONTROL_FD, METRICS_FD] {
            std::env::remove_var(name);
        }
        Some(Self {
            slot,
            listeners,
            control,
            metrics_fd,
        })
    }

    /// Tell the supervisor this worker serves.
    pub fn signal_ready(&self) {
        let _ = self.send(WorkerMessage::Ready);
    }

    /// Ask the supervisor for a replacement; it sends SIGTERM once the replacement
    /// serves. False if the supervisor cannot be told (it is gone).
    pub fn request_recycle(&self) -> bool {
        self.send(WorkerMessage::Recycle).is_ok()
    }

    /// One byte: a pipe write that small is atomic and, with nothing else ever
    /// written, never blocks.
    fn send(&self, message: WorkerMessage) -> std::io::Result<()> {
        let control = self
            .control
            .as_ref()
            .ok_or(std::io::ErrorKind::NotConnected)?;
        std::io::Write::write_all(&mut &*control, &[message.byte()])
    }
}

/// The environment that makes a child process a worker.
pub(super) fn worker_env(
    slot: usize,
    listeners: &[BoundListener],
    control_fd: RawFd,
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
        (CONTROL_FD, control_fd.to_string()),
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
