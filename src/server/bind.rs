//! Listen addresses and the sockets bound to them.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::BindAddress;

/// A bound, listening socket, before it is handed to the runtime.
#[derive(Debug)]
pub enum BoundListener {
    /// TCP.
    Tcp(std::net::TcpListener),
    /// TCP that speaks TLS (`server.tls.bind`).
    Tls(std::net::TcpListener),
    /// A unix socket; `path` is set in the process that created the file, which
    /// removes it when it exits.
    Unix {
        /// The socket.
        listener: std::os::unix::net::UnixListener,
        /// The socket file.
        path: Option<PathBuf>,
    },
}

impl BoundListener {
    /// The descriptor, to hand to a worker.
    pub fn raw_fd(&self) -> RawFd {
        match self {
            BoundListener::Tcp(listener) | BoundListener::Tls(listener) => listener.as_raw_fd(),
            BoundListener::Unix { listener, .. } => listener.as_raw_fd(),
        }
    }

    /// True while connections wait in this socket's accept queue (in any process).
    pub fn has_queued_connections(&self) -> bool {
        let mut poll = libc::pollfd {
            fd: self.raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one valid pollfd, without waiting.
        let ready = unsafe { libc::poll(&mut poll, 1, 0) };
        ready > 0 && poll.revents & libc::POLLIN != 0
    }

    /// Make new connections fail at once, for every process that holds this socket
    /// (closing one descriptor would not: the workers share it). Call it while the
    /// workers still accept, once [`Self::has_queued_connections`] is false.
    ///
    /// - TCP: `shutdown(SHUT_RD)` on the listening socket: it stops listening, so a
    ///   connect gets ECONNREFUSED and `accept` in the workers fails with EINVAL. What
    ///   is still queued is reset, hence the empty queue first: then only a connection
    ///   that arrived in the instant between the check and this call is lost.
    /// - Unix: the socket file is removed (a connect gets ENOENT) and the queue stays
    ///   for the workers. Not `shutdown`: a shut-down unix listener stays readable
    ///   while `accept` says EAGAIN, and tokio's accept would spin on it.
    pub fn refuse_new_connections(&mut self) -> std::io::Result<()> {
        match self {
            BoundListener::Tcp(listener) | BoundListener::Tls(listener) => {
                // SAFETY: shutdown(2) on a descriptor this value owns.
                if unsafe { libc::shutdown(listener.as_raw_fd(), libc::SHUT_RD) } == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            }
            BoundListener::Unix { path, .. } => match path.take() {
                Some(file) => std::fs::remove_file(file),
                None => Ok(()),
            },
        }
    }

    /// `"tcp"` or `"unix"`, for the handoff.
    pub fn kind(&self) -> &'static str {
        match self {
            BoundListener::Tcp(_) => "tcp",
            BoundListener::Tls(_) => "tls",
            BoundListener::Unix { .. } => "unix",
        }
    }

    /// The socket file this process created, to remove when it exits.
    pub fn created_file(&self) -> Option<&Path> {
        match self {
            BoundListener::Unix {
                path: Some(path), ..
            } => Some(path),
            _ => None,
        }
    }

    /// `http://127.0.0.1:8000` or `unix:/run/app.sock`, for the log.
    pub fn describe(&self) -> String {
        match self {
            BoundListener::Tcp(listener) => listener
                .local_addr()
                .map(|a| format!("http://{a}"))
                .unwrap_or_else(|_| "tcp".into()),
            BoundListener::Tls(listener) => listener
                .local_addr()
                .map(|a| format!("https://{a}"))
                .unwrap_or_else(|_| "tls".into()),
            BoundListener::Unix { listener, path } => {
                let from_socket = listener
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_pathname().map(Path::to_path_buf));
                format!(
                    "unix:{}",
                    path.clone().or(from_socket).unwrap_or_default().display()
                )
            }
        }
    }
}

/// Bind sockets for one address: one per address a TCP name resolves to, or the unix
/// socket (a stale socket file is replaced; the file gets `unix_mode`). They do not
/// listen yet: a worker starts listening once its application is loaded ([`listen`]),
/// so a client that connects while the app imports is refused at once instead of
/// waiting in a queue that an import error would reset.
pub(super) fn bind(address: &BindAddress, unix_mode: u32) -> std::io::Result<Vec<BoundListener>> {
    match address {
        BindAddress::Tcp(text) => {
            let addresses: Vec<SocketAddr> = text.to_socket_addrs()?.collect();
            let mut listeners = Vec::with_capacity(addresses.len());
            for address in addresses {
                let socket = Socket::new(
                    Domain::for_address(address),
                    Type::STREAM,
                    Some(Protocol::TCP),
                )?;
                socket.set_reuse_address(true)?;
                if address.is_ipv6() {
                    socket.set_only_v6(true)?;
                }
                socket
                    .bind(&address.into())
                    .map_err(|e| std::io::Error::new(e.kind(), format!("{address}: {e}")))?;
                listeners.push(BoundListener::Tcp(socket.into()));
            }
            Ok(listeners)
        }
        BindAddress::Unix(path) => {
            if let Ok(metadata) = std::fs::symlink_metadata(path) {
                if metadata.file_type().is_socket() {
                    std::fs::remove_file(path)?;
                } else {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        format!("{} exists and is not a socket", path.display()),
                    ));
                }
            }
            let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
            socket.bind(&SockAddr::unix(path)?)?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(unix_mode))?;
            Ok(vec![BoundListener::Unix {
                listener: socket.into(),
                path: Some(path.clone()),
            }])
        }
    }
}

/// Start listening on an inherited socket with room for `backlog` pending connections
/// (again, harmlessly, when another worker already did).
pub(super) fn listen(listener: &BoundListener, backlog: u32) -> std::io::Result<()> {
    let backlog = backlog.min(i32::MAX as u32) as i32;
    // SAFETY: listen(2) on a socket descriptor this process holds open.
    if unsafe { libc::listen(listener.raw_fd(), backlog) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Bind every listener the configuration names (the supervisor does, once):
/// `server.bind`, then `server.tls.bind`. On failure, the address that failed and why.
pub fn bind_all(
    server: &crate::config::ServerConfig,
) -> Result<Vec<BoundListener>, (String, std::io::Error)> {
    let mode = server.unix_socket_mode.0;
    let plain = server.bind.iter().map(|a| (a, false));
    let tls = server
        .tls
        .iter()
        .flat_map(|t| t.bind.iter())
        .map(|a| (a, true));
    let mut listeners = Vec::new();
    for (address, is_tls) in plain.chain(tls) {
        let fail = |error: std::io::Error| (address.to_string(), error);
        for listener in bind(address, mode).map_err(fail)? {
            listeners.push(match listener {
                BoundListener::Tcp(tcp) if is_tls => BoundListener::Tls(tcp),
                other => other,
            });
        }
    }
    Ok(listeners)
}
