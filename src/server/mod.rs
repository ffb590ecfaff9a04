//! Listening, accepting and draining.
//!
//! [`run`] is a worker's life: load the application, serve on the listeners the
//! supervisor bound ([`bind_all`]), and on SIGTERM/SIGINT (or a recycle) stop
//! accepting, let requests in flight finish within `server.graceful_timeout`, return.

mod bind;
mod connection;
mod error;
mod forwarded;
mod framing;
mod http1_syntax;
mod io;
mod limits;
mod proxy_protocol;
mod recycle;
pub mod tls;
mod tracing_span;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Notify};

pub use bind::{bind_all, BindAddress, BoundListener};
pub use connection::ConnectionSettings;
pub use error::ServerError;
pub use forwarded::TrustedProxies;
pub use gateway_middleware::ConnectionInfo;
pub use limits::{RequestLimits, RequestLimitsLayer};
pub use recycle::Recycle;

use crate::config::LoadedConfig;
use crate::pipeline;
use crate::wsgi::{
    self, environ::EnvironSettings, interpreter::PythonSetup, AppSettings, AppSource, PasteSpec,
};

/// How a served process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A stop signal: the process should exit 0.
    Signal,
    /// `server.max_requests` was reached: the supervisor should start a replacement.
    Recycle,
}

/// Serve the configured application on the listeners the supervisor handed over until
/// a stop signal or a recycle (max_requests, max_rss, timeout), then drain.
pub async fn run(
    loaded: LoadedConfig,
    mut handoff: crate::workers::WorkerHandoff,
) -> Result<Stopped, ServerError> {
    let config = &loaded.config;
    if let Some(fd) = handoff.metrics_fd.take() {
        // SAFETY: the supervisor handed this memfd to this process alone.
        match unsafe { crate::metrics::Region::inherited(fd) } {
            Ok(region) => crate::metrics::install(region),
            Err(error) => tracing::warn!("{error}; this worker's metrics are not reported"),
        }
    }
    let app_settings = app_settings(&loaded)?;
    let plan = pipeline::plan(config, &loaded.base_dir())?;
    tracing::info!("pipeline: {}", pipeline::describe(config));
    let runtime = tokio::runtime::Handle::current();
    let stages = plan.python.clone();
    // Importing the app may take a while and holds the GIL: keep it off the runtime.
    let app = tokio::task::spawn_blocking(move || wsgi::load(&app_settings, &stages, runtime))
        .await
        .expect("application loading panicked")?;
    let recycle = Arc::new(Recycle::new(
        config.server.max_requests,
        config.server.max_requests_jitter,
    ));
    recycle.clone().watch_rss(config.server.max_rss.0);
    let on_timeout = recycle.clone();
    let app = app.with_timeout(
        config.server.timeout,
        Arc::new(move |line| on_timeout.trigger(format!("request timed out: {line}"))),
    );
    let service = pipeline::build(config, &plan.outer, app);

    let tls = match &config.server.tls {
        Some(tls) => Some(tls::acceptor(tls, config.server.http2)?),
        None => None,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let connections = Arc::new(ConnectionCount::default());
    let settings = ConnectionSettings::new(config, recycle.clone());
    let mut accept_loops = Vec::new();
    for listener in std::mem::take(&mut handoff.listeners) {
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

    tracing::info!(
        slot = handoff.slot,
        pid = std::process::id(),
        "worker serving"
    );
    handoff.signal_ready();
    let stopped = tokio::select! {
        result = wait_for_stop_signal() => {
            result?;
            Stopped::Signal
        }
        reason = recycle.requested() => {
            tracing::info!(requests = recycle.served(), "{reason}: draining this worker for a fresh one");
            Stopped::Recycle
        }
    };
    tracing::info!(
        open_connections = connections.open(),
        "stopping: no new connections; draining for up to {:?}",
        config.server.graceful_timeout
    );
    let _ = stop_tx.send(true);
    // A loop may be accepting a connection right now: count it before waiting for the
    // count to reach zero. What the kernel queued since stays for the next worker.
    for accept_loop in accept_loops {
        let _ = accept_loop.await;
    }
    let drained =
        tokio::time::timeout(config.server.graceful_timeout, connections.all_closed()).await;
    match drained {
        Ok(()) => tracing::info!("all connections closed; exiting"),
        Err(_) => tracing::warn!(
            open_connections = connections.open(),
            "graceful_timeout reached; closing the remaining connections"
        ),
    }
    tokio::task::spawn_blocking(wsgi::run_exit_handlers)
        .await
        .expect("atexit handlers panicked");
    Ok(stopped)
}

fn app_settings(loaded: &LoadedConfig) -> Result<AppSettings, ServerError> {
    let config = &loaded.config;
    let python_path = if config.app.python_path.is_empty() {
        vec![std::env::current_dir().unwrap_or_default()]
    } else {
        config
            .app
            .python_path
            .iter()
            .map(|p| p.relative())
            .collect()
    };
    let virtualenv = config
        .app
        .virtualenv
        .as_ref()
        .map(|v| v.relative())
        .or_else(|| std::env::var_os("VIRTUAL_ENV").map(Into::into));
    let source = match (&config.app.wsgi, &config.app.paste) {
        (None, Some(paste)) => {
            let paste = PasteSpec::parse(&paste.relative()).map_err(|traceback| {
                crate::wsgi::WsgiError::AppImport {
                    spec: "app.paste".into(),
                    traceback,
                }
            })?;
            AppSource::Paste(paste)
        }
        // Validation guarantees one of the two.
        (wsgi, _) => AppSource::Wsgi(wsgi.clone().unwrap_or_default()),
    };
    Ok(AppSettings {
        source,
        python: PythonSetup {
            virtualenv,
            python_path,
        },
        environ: EnvironSettings {
            script_name: config.app.script_name.clone(),
            multithread: config.server.threads > 1,
            multiprocess: config.server.workers > 1,
        },
        threads: config.server.threads,
        write_timeout: config.server.write_timeout,
        read_timeout: config.server.read_timeout,
        max_body_size: config.limits.max_body_size.0,
    })
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
    service: pipeline::GatewayService,
    settings: ConnectionSettings,
    mut stop: watch::Receiver<bool>,
    connections: Arc<ConnectionCount>,
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
            Err(error) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!("accept failed: {error}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let open = connections.opened();
        let (service, settings, stop) = (service.clone(), settings.clone(), stop.clone());
        tokio::spawn(async move {
            let Some((stream, info)) = settings.proxy_header(stream, info).await else {
                return;
            };
            match stream {
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
                            tracing::debug!(peer = ?info.peer, "TLS handshake failed: {error}")
                        }
                        Err(_) => tracing::debug!(peer = ?info.peer, "TLS handshake timed out"),
                    }
                }
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

/// Counts open connections so shutdown can wait for them.
#[derive(Default)]
struct ConnectionCount {
    open: AtomicUsize,
    closed: Notify,
}

impl ConnectionCount {
    fn opened(self: &Arc<Self>) -> ConnectionGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        ConnectionGuard(self.clone())
    }

    fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    async fn all_closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.open() == 0 {
                return;
            }
            notified.await;
        }
    }
}

struct ConnectionGuard(Arc<ConnectionCount>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

/// Wait for SIGTERM or SIGINT.
async fn wait_for_stop_signal() -> Result<(), ServerError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).map_err(ServerError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(ServerError::Signals)?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
