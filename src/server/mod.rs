//! Sockets only: the listeners a worker inherited, accepted connections (TCP, TLS,
//! unix, PROXY protocol), HTTP/1.1 and HTTP/2 through hyper behind a strict framing
//! check, and draining them on stop. What a request goes through once hyper has parsed
//! it is the business of the pipeline module.

mod bind;
mod connection;
mod error;
mod framing;
mod io;
mod linger;
mod proxy_protocol;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use bind::{bind_all, BoundListener};
pub use connection::ConnectionSettings;
pub use error::ServerError;

use crate::types::open_count::{self, OpenCount};
use crate::types::{ConnectionInfo, GatewayService};

/// The listeners of one worker, accepting and serving connections.
pub struct Listeners {
    stop: watch::Sender<bool>,
    accept_loops: Vec<JoinHandle<()>>,
    connections: Arc<OpenCount>,
}

impl Listeners {
    /// Serve `service` on the inherited `listeners` (TLS ones with `tls`).
    pub fn serve(
        listeners: Vec<BoundListener>,
        tls: Option<tokio_rustls::TlsAcceptor>,
        service: GatewayService,
        settings: ConnectionSettings,
    ) -> Result<Self, ServerError> {
        let (stop, stop_rx) = watch::channel(false);
        let connections = Arc::new(OpenCount::default());
        let mut accept_loops = Vec::new();
        for listener in listeners {
            bind::listen(&listener, settings.backlog()).map_err(|source| ServerError::Bind {
                address: listener.describe(),
                source,
            })?;
            let listener =
                into_runtime(listener, tls.as_ref()).map_err(|source| ServerError::Bind {
                    address: "inherited listener".into(),
                    source,
                })?;
            accept_loops.push(tokio::spawn(accept_loop(
                listener,
                service.clone(),
                settings.clone(),
                stop_rx.clone(),
                connections.clone(),
            )));
        }
        Ok(Self {
            stop,
            accept_loops,
            connections,
        })
    }

    /// Stop accepting, then wait up to `graceful_timeout` for open connections to finish
    /// their requests and close.
    pub async fn drain(self, graceful_timeout: Duration) {
        tracing::info!(
            open_connections = self.connections.count(),
            "stopping: no new connections; draining for up to {graceful_timeout:?}"
        );
        let _ = self.stop.send(true);
        // A loop may be accepting a connection right now: count it before waiting for
        // the count to reach zero. What the kernel queued since stays for the next worker.
        for accept_loop in self.accept_loops {
            let _ = accept_loop.await;
        }
        // Upgraded connections (proxied WebSockets) are waited for too: hyper no longer
        // counts them once upgraded.
        let all_closed = async {
            self.connections.all_closed().await;
            if open_count::tunnels().count() > 0 {
                tracing::info!(
                    open_tunnels = open_count::tunnels().count(),
                    "waiting for upgraded connections (WebSockets) to close"
                );
            }
            open_count::tunnels().all_closed().await;
        };
        let drained = tokio::time::timeout(graceful_timeout, all_closed).await;
        match drained {
            Ok(()) => tracing::info!("all connections closed; exiting"),
            Err(_) => tracing::warn!(
                open_connections = self.connections.count(),
                open_tunnels = open_count::tunnels().count(),
                "graceful_timeout reached; closing the remaining connections"
            ),
        }
    }
}

/// A listener on the runtime.
enum Listener {
    Tcp(TcpListener),
    Tls(TcpListener, tokio_rustls::TlsAcceptor),
    Unix(UnixListener),
}

/// Move an inherited socket onto the runtime.
fn into_runtime(
    listener: BoundListener,
    tls: Option<&tokio_rustls::TlsAcceptor>,
) -> std::io::Result<Listener> {
    match listener {
        BoundListener::Tcp(tcp) => {
            tcp.set_nonblocking(true)?;
            Ok(Listener::Tcp(TcpListener::from_std(tcp)?))
        }
        BoundListener::Tls(tcp) => {
            let acceptor = tls.cloned().ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "a TLS listener without [server.tls]",
                )
            })?;
            tcp.set_nonblocking(true)?;
            Ok(Listener::Tls(TcpListener::from_std(tcp)?, acceptor))
        }
        BoundListener::Unix { listener, .. } => {
            listener.set_nonblocking(true)?;
            Ok(Listener::Unix(UnixListener::from_std(listener)?))
        }
    }
}

async fn accept_loop(
    listener: Listener,
    service: GatewayService,
    settings: ConnectionSettings,
    mut stop: watch::Receiver<bool>,
    connections: Arc<OpenCount>,
) {
    let local = match &listener {
        Listener::Tcp(tcp) | Listener::Tls(tcp, _) => tcp.local_addr().ok(),
        Listener::Unix(_) => None,
    };
    loop {
        let info = ConnectionInfo {
            peer: None,
            local,
            scheme: "http",
        };
        let accepted = tokio::select! {
            biased;
            _ = stop.changed() => return,
            accepted = accept(&listener, info) => accepted,
        };
        let (stream, info) = match accepted {
            Ok(accepted) => accepted,
            // The supervisor shut the listening socket down (the gateway is stopping:
            // see `BoundListener::refuse_new_connections`); there is nothing left to take.
            Err(error) if error.raw_os_error() == Some(libc::EINVAL) => {
                tracing::debug!("the listening socket was shut down; no more connections");
                return;
            }
            Err(error) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let open = connections.hold();
        let (service, settings, stop) = (service.clone(), settings.clone(), stop.clone());
        tokio::spawn(async move {
            let Some((stream, info)) = settings.proxy_header(stream, info).await else {
                return;
            };
            let lingering = match stream {
                Accepted::Tcp(stream) => {
                    connection::serve(stream, info, None, service, settings, stop).await
                }
                Accepted::Unix(stream) => {
                    connection::serve(stream, info, None, service, settings, stop).await
                }
                Accepted::Tls(stream, acceptor) => {
                    // The handshake runs here, not in the accept loop, and is bounded
                    // like a request head.
                    let handshake =
                        tokio::time::timeout(settings.header_timeout(), acceptor.accept(stream))
                            .await;
                    match handshake {
                        Ok(Ok(stream)) => {
                            let session = tls::session(&stream);
                            let info = ConnectionInfo {
                                scheme: "https",
                                ..info
                            };
                            connection::serve(stream, info, Some(session), service, settings, stop)
                                .await
                        }
                        Ok(Err(error)) => {
                            tracing::debug!(peer = ?info.peer, "TLS handshake failed: {error}");
                            None
                        }
                        Err(_) => {
                            tracing::debug!(peer = ?info.peer, "TLS handshake timed out");
                            None
                        }
                    }
                }
            };
            // Still counted as open: a draining worker waits for it (up to
            // server.graceful_timeout), so a client still uploading gets its answer.
            if let Some(socket) = lingering {
                linger::linger(socket).await;
            }
            drop(open);
        });
    }
}

/// An accepted connection.
pub(crate) enum Accepted {
    Tcp(tokio::net::TcpStream),
    Tls(tokio::net::TcpStream, tokio_rustls::TlsAcceptor),
    Unix(tokio::net::UnixStream),
}

async fn accept(
    listener: &Listener,
    mut info: ConnectionInfo,
) -> std::io::Result<(Accepted, ConnectionInfo)> {
    match listener {
        Listener::Tcp(tcp) => {
            let (stream, peer) = tcp.accept().await?;
            let _ = stream.set_nodelay(true);
            info.peer = Some(peer);
            Ok((Accepted::Tcp(stream), info))
        }
        Listener::Tls(tcp, acceptor) => {
            let (stream, peer) = tcp.accept().await?;
            let _ = stream.set_nodelay(true);
            info.peer = Some(peer);
            Ok((Accepted::Tls(stream, acceptor.clone()), info))
        }
        Listener::Unix(unix) => {
            let (stream, _) = unix.accept().await?;
            Ok((Accepted::Unix(stream), info))
        }
    }
}
