//! The admin listener: health and metrics endpoints on a port of their own, never routed into the
//! application. Served by the supervisor, which outlives every worker.
//!
//! - `GET /healthz`: 200 while the supervisor runs (liveness).
//! - `GET /readyz`: 200 while at least one worker has imported the application and
//!   serves; 503 while starting, while no worker is up, and while draining (readiness).
//! - `GET /metrics`: every worker's metrics, summed, in the Prometheus text format.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::metrics::{prometheus, MetricsHub};

/// What the health endpoints report.
#[derive(Debug, Default)]
pub struct Health {
    /// Workers that reported ready and have not exited.
    ready_workers: AtomicUsize,
    /// Workers the configuration asks for.
    wanted: AtomicUsize,
    /// Set on SIGTERM/SIGINT.
    draining: AtomicBool,
}

impl Health {
    /// Health of a supervisor that will run `wanted` workers.
    pub fn new(wanted: usize) -> Arc<Self> {
        let health = Self::default();
        health.wanted.store(wanted, Ordering::Relaxed);
        Arc::new(health)
    }

    /// A worker reported ready.
    pub fn worker_ready(&self) {
        self.ready_workers.fetch_add(1, Ordering::Relaxed);
    }

    /// A worker that had been ready stopped serving.
    pub fn worker_gone(&self) {
        let _ = self
            .ready_workers
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// The gateway is shutting down.
    pub fn draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    fn ready(&self) -> Result<(), String> {
        if self.draining.load(Ordering::Relaxed) {
            return Err("draining".into());
        }
        let ready = self.ready_workers.load(Ordering::Relaxed);
        let wanted = self.wanted.load(Ordering::Relaxed);
        if ready == 0 {
            return Err(format!("0 of {wanted} workers ready"));
        }
        Ok(())
    }
}

/// The shared state of the admin routes.
#[derive(Clone)]
struct AdminState {
    health: Arc<Health>,
    metrics: Arc<Mutex<MetricsHub>>,
}

/// The admin routes.
fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    let snapshot = state
        .metrics
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .snapshot();
    (
        [(header::CONTENT_TYPE, prometheus::CONTENT_TYPE)],
        prometheus::render(&snapshot),
    )
}

async fn readyz(State(state): State<AdminState>) -> (StatusCode, String) {
    match state.health.ready() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

/// Serve the admin routes on `listener` until the process exits.
pub fn spawn(
    listener: tokio::net::TcpListener,
    health: Arc<Health>,
    metrics: Arc<Mutex<MetricsHub>>,
) {
    let state = AdminState { health, metrics };
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, router(state)).await {
            tracing::error!("admin listener failed: {error}");
        }
    });
}
