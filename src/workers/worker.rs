//! A worker's life: load the application, serve on the listeners the supervisor bound,
//! and on SIGTERM/SIGINT stop accepting, let requests in flight finish within
//! `server.graceful_timeout`, return.
//!
//! A recycle (`max_requests`, `max_rss`, `timeout`) does not stop the worker: it asks the
//! supervisor for a replacement and serves on until the supervisor, once the
//! replacement is ready, sends it SIGTERM. So even a single worker leaves no gap.

use std::sync::Arc;

use super::error::WorkersError;
use super::handoff::WorkerHandoff;
use super::recycle::Recycle;
use super::stop_signals::StopSignals;
use crate::config::LoadedConfig;
use crate::server::{ConnectionSettings, Listeners};
use crate::startup::Prepared;
use crate::{pipeline, wsgi};

/// Serve until a stop signal, then drain. The process then exits 0, also after a recycle.
pub async fn run(
    loaded: LoadedConfig,
    prepared: Prepared,
    mut handoff: WorkerHandoff,
) -> Result<(), WorkersError> {
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
    let recycle = Arc::new(Recycle::new(
        config.server.max_requests,
        config.server.max_requests_jitter,
    ));
    let on_timeout = recycle.clone();
    let timeout = pipeline::AppTimeoutLayer::new(
        config.server.queue_timeout,
        config.server.timeout,
        Arc::new(move |line| on_timeout.trigger(format!("request timed out: {line}"))),
    );
    // Importing the apps may take a while and holds the GIL: keep it off the runtime.
    let (app, prepared) = tokio::task::spawn_blocking(move || {
        (super::apps::load(&prepared, runtime, &timeout), prepared)
    })
    .await
    .expect("application loading panicked");
    let app = app?;
    let Prepared { tls, plan, .. } = prepared;
    recycle.clone().watch_rss(config.server.max_rss.0);
    let on_request = recycle.clone();
    let hooks = pipeline::WorkerHooks {
        on_request: Arc::new(move || on_request.count()),
    };
    let service = pipeline::build(config, &plan.outer, app, hooks);
    let settings = ConnectionSettings::new(config);
    let listeners = std::mem::take(&mut handoff.listeners);
    let server = Listeners::serve(listeners, tls, service, settings)?;

    // Handlers first: the supervisor may send SIGTERM as soon as it reads "ready".
    let mut stop = StopSignals::new()?;
    let pid = std::process::id();
    tracing::info!(slot = handoff.slot, pid, "worker serving");
    handoff.signal_ready();
    let mut replacement_requested = false;
    loop {
        tokio::select! {
            signal = stop.recv() => {
                tracing::info!(pid, "{signal} received");
                break;
            }
            reason = recycle.requested(), if !replacement_requested => {
                replacement_requested = true;
                if handoff.request_recycle() {
                    tracing::info!(
                        pid,
                        requests = recycle.served(),
                        "{reason}: asked the supervisor for a replacement; serving until it is ready"
                    );
                } else {
                    // No supervisor to start one (it died; its SIGTERM is on the way).
                    tracing::warn!(pid, "{reason}: the supervisor cannot be told; draining");
                    break;
                }
            }
        }
    }
    server.drain(config.server.graceful_timeout).await;
    tokio::task::spawn_blocking(wsgi::run_exit_handlers)
        .await
        .expect("atexit handlers panicked");
    Ok(())
}
