//! A worker's life: load the application, serve on the listeners the supervisor bound,
//! and on SIGTERM/SIGINT (or a recycle: `max_requests`, `max_rss`, `timeout`) stop
//! accepting, let requests in flight finish within `server.graceful_timeout`, return.

use std::sync::Arc;

use super::error::WorkersError;
use super::handoff::WorkerHandoff;
use super::recycle::Recycle;
use crate::config::LoadedConfig;
use crate::server::{ConnectionSettings, Listeners};
use crate::startup::Prepared;
use crate::{pipeline, wsgi};

/// How a worker's serving ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A stop signal: the process should exit 0.
    Signal,
    /// The worker asked to be replaced (`max_requests`, `max_rss`, `timeout`).
    Recycle,
}

/// Serve until a stop signal or a recycle, then drain.
pub async fn run(
    loaded: LoadedConfig,
    prepared: Prepared,
    mut handoff: WorkerHandoff,
) -> Result<Stopped, WorkersError> {
    let config = &loaded.config;
    if let Some(fd) = handoff.metrics_fd.take() {
        // SAFETY: the supervisor handed this memfd to this process alone.
        match unsafe { crate::metrics::Region::inherited(fd) } {
            Ok(region) => crate::metrics::install(region),
            Err(error) => tracing::warn!("{error}; this worker's metrics are not reported"),
        }
    }
    tracing::info!("pipeline: {}", pipeline::describe(config));
    let runtime = tokio::runtime::Handle::current();
    // Importing the apps may take a while and holds the GIL: keep it off the runtime.
    let (app, prepared) =
        tokio::task::spawn_blocking(move || (super::apps::load(&prepared, runtime), prepared))
            .await
            .expect("application loading panicked");
    let app = app?;
    let Prepared { tls, plan, .. } = prepared;
    let recycle = Arc::new(Recycle::new(
        config.server.max_requests,
        config.server.max_requests_jitter,
    ));
    recycle.clone().watch_rss(config.server.max_rss.0);
    let (on_request, on_timeout) = (recycle.clone(), recycle.clone());
    let hooks = pipeline::WorkerHooks {
        on_request: Arc::new(move || on_request.count()),
        on_timeout: Arc::new(move |line| on_timeout.trigger(format!("request timed out: {line}"))),
    };
    let service = pipeline::build(config, &plan.outer, app, hooks);
    let settings = ConnectionSettings::new(config);
    let listeners = std::mem::take(&mut handoff.listeners);
    let server = Listeners::serve(listeners, tls, service, settings)?;

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
    server.drain(config.server.graceful_timeout).await;
    tokio::task::spawn_blocking(wsgi::run_exit_handlers)
        .await
        .expect("atexit handlers panicked");
    Ok(stopped)
}

/// Wait for SIGTERM or SIGINT.
async fn wait_for_stop_signal() -> Result<(), WorkersError> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).map_err(WorkersError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(WorkersError::Signals)?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received"),
        _ = interrupt.recv() => tracing::info!("SIGINT received"),
    }
    Ok(())
}
