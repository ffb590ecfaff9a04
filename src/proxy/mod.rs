//! The reverse proxy: `[upstream.NAME]` servers behind `proxy = "NAME"` routes.
//!
//! # Layout
//! - [`prepare`] checks an upstream's configuration and reads its TLS files (at start-up,
//!   in `check` too); [`UpstreamPlan::start`] gives a worker its [`Proxy`] service and
//!   spawns the upstream's background task (active health checks, idle pool reaping).
//! - `forward`: one request: pick a server, send, retry only where it is safe, map
//!   failures to 502/504, hand upgrades over; a client span per attempt.
//! - `balance`: round robin, least requests, hash. `health`: passive and active.
//! - `pool`: connections per server (pingora's pool keyed by peer); `connect`: TCP,
//!   unix, TLS (`tls`).
//! - `h1`: the HTTP/1.1 client for requests without a body; hyper's client takes
//!   requests with a body, upgrades and HTTP/2.
//! - `headers`: hop-by-hop removal, forwarding headers, Host, strip_prefix.
//! - `body`: the response body streamed back, its connection pooled at its end.
//!
//! A request meets the phases pingora names: upstream selection, connection (pooled or
//! new), request head and body, response head (within `read_timeout`), response body.
//! Only a failure before the request could have had an effect is retried: a connect
//! error, a pooled connection the server closed before taking the request (retried on
//! a fresh connection to the same server, any method), or a reset before any response
//! byte on an idempotent request without a body.

mod balance;
mod body;
mod connect;
mod forward;
mod h1;
mod headers;
mod health;
mod pool;
mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::body::Body;
use http::{Request, StatusCode};
use tokio::runtime::Handle;

pub use forward::Proxy;

use crate::config::{ServerAddress, UpstreamConfig};
use crate::metrics::UpstreamMeter;
use balance::{Balancer, Candidate};
use health::Health;
use pool::Pool;

/// Why an upstream cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A TLS file or setting is unusable.
    #[error("{0}")]
    Tls(String),
    /// `strip_prefix` is not a usable path.
    #[error("strip_prefix: {0}")]
    StripPrefix(String),
}

/// An upstream checked and ready for workers to start.
#[derive(Clone)]
pub struct UpstreamPlan {
    name: String,
    config: UpstreamConfig,
    tls: Option<tls::TlsClient>,
    strip_prefix: Option<String>,
}

/// Check `config` (the upstream `name`) and read its TLS files.
pub fn prepare(name: &str, config: &UpstreamConfig) -> Result<UpstreamPlan, ProxyError> {
    let https = config
        .servers
        .iter()
        .any(|server| matches!(server.address(), ServerAddress::Https { .. }));
    let tls = if https {
        Some(tls::client(&config.tls, config.http2)?)
    } else {
        None
    };
    let strip_prefix = match &config.strip_prefix {
        Some(prefix) => Some(
            gateway_middleware::request_path::canonical_prefix(prefix)
                .map_err(|e| ProxyError::StripPrefix(format!("{prefix:?}: {e}")))?,
        ),
        None => None,
    };
    Ok(UpstreamPlan {
        name: name.to_owned(),
        config: config.clone(),
        tls,
        strip_prefix,
    })
}

impl UpstreamPlan {
    /// The upstream's name (the URL of an inline one).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// This worker's proxy to the upstream: its pools, and its background task on
    /// `runtime` (active checks when `health.path` is set; idle connections closed).
    pub fn start(&self, runtime: &Handle) -> Proxy {
        let config = &self.config;
        let name: Arc<str> = Arc::from(self.name.as_str());
        let servers: Vec<Arc<Server>> = config
            .servers
            .iter()
            .map(|entry| {
                let address = entry.address().clone();
                let label = address.to_string();
                let resolved = match &address {
                    ServerAddress::Http { host, port } | ServerAddress::Https { host, port } => {
                        host.trim_matches(['[', ']'])
                            .parse()
                            .ok()
                            .map(|ip| SocketAddr::new(ip, *port))
                    }
                    ServerAddress::Unix(_) => None,
                };
                let meter = crate::metrics::upstream_meter(&self.name, &label);
                if let Some(meter) = &meter {
                    meter.set_healthy(true);
                }
                Arc::new(Server {
                    upstream: name.clone(),
                    authority: address.authority(),
                    label,
                    address,
                    resolved,
                    weight: entry.weight(),
                    pool: Pool::new(config.max_idle, config.idle_timeout),
                    health: Health::default(),
                    in_flight: AtomicUsize::new(0),
                    meter,
                })
            })
            .collect();
        let weights: Vec<u32> = servers.iter().map(|s| s.weight).collect();
        let upstream = Arc::new(Upstream {
            name,
            balancer: Balancer::new(config.balance, config.hash_key(), &weights),
            ejectable: servers.len() > 1,
            servers,
            config: config.clone(),
            tls: self.tls.clone(),
            strip_prefix: self.strip_prefix.clone(),
        });
        runtime.spawn(background(Arc::downgrade(&upstream)));
        Proxy::new(upstream)
    }
}

/// One upstream in one worker.
pub(crate) struct Upstream {
    name: Arc<str>,
    servers: Vec<Arc<Server>>,
    balancer: Balancer,
    /// More than one server: passive checks may eject one (a lone server never is).
    ejectable: bool,
    config: UpstreamConfig,
    tls: Option<tls::TlsClient>,
    strip_prefix: Option<String>,
}

/// One server of an upstream, in one worker.
pub(crate) struct Server {
    /// The upstream's name, for logs.
    upstream: Arc<str>,
    /// The address as configured (`127.0.0.1:9001`, `https://...`, `unix:/...`).
    label: String,
    address: ServerAddress,
    /// `host:port` (what `host = "upstream"` sends).
    authority: String,
    /// The socket address when the host is an IP literal (no resolver round trip).
    resolved: Option<SocketAddr>,
    weight: u32,
    pool: Pool,
    health: Health,
    in_flight: AtomicUsize,
    meter: Option<UpstreamMeter>,
}

impl Candidate for Arc<Server> {
    fn weight(&self) -> u32 {
        self.weight
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn available(&self, now: u64) -> bool {
        self.health.available(now)
    }
}

/// How often idle pooled connections are looked at. One the server closed meanwhile
/// is closed here within this, instead of sitting in CLOSE_WAIT (holding a descriptor)
/// until the next checkout finds it; nginx sees such a close at once.
const REAP_EVERY: Duration = Duration::from_secs(1);

/// The upstream's background task: reap idle connections every [`REAP_EVERY`], run
/// active checks every `health.interval`; ends when the worker drops the upstream.
async fn background(upstream: Weak<Upstream>) {
    let check_every = match upstream.upgrade() {
        Some(upstream) => {
            let health = &upstream.config.health;
            health.path.as_ref().map(|_| health.interval)
        }
        None => return,
    };
    let tick = check_every.map_or(REAP_EVERY, |every| every.min(REAP_EVERY));
    let mut streaks: Vec<health::Streak> = Vec::new();
    let mut ticks = tokio::time::interval(tick);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut next_check = tokio::time::Instant::now();
    loop {
        let now = ticks.tick().await;
        let Some(upstream) = upstream.upgrade() else {
            return;
        };
        for server in &upstream.servers {
            server.pool.reap();
        }
        let Some(every) = check_every else {
            continue;
        };
        if now < next_check {
            continue;
        }
        next_check = now + every;
        if streaks.is_empty() {
            streaks = upstream
                .servers
                .iter()
                .map(|_| health::Streak::new())
                .collect();
        }
        let results = futures_util::future::join_all(
            upstream
                .servers
                .iter()
                .map(|server| forward::health_check(&upstream, server)),
        )
        .await;
        let health = &upstream.config.health;
        for ((server, streak), (passed, detail)) in
            upstream.servers.iter().zip(&mut streaks).zip(results)
        {
            let flip = streak.record(
                passed,
                server.health.is_down(),
                health.healthy_threshold,
                health.unhealthy_threshold,
            );
            match flip {
                Some(true) => {
                    tracing::warn!(
                        upstream = %upstream.name,
                        server = %server.label,
                        "active health check failed {} times ({detail}): server taken out",
                        health.unhealthy_threshold
                    );
                    server.health.set_down(true);
                }
                Some(false) => {
                    tracing::info!(
                        upstream = %upstream.name,
                        server = %server.label,
                        "active health check passed {} times: server back",
                        health.healthy_threshold
                    );
                    server.health.set_down(false);
                }
                None => {}
            }
            if let Some(meter) = &server.meter {
                meter.set_healthy(server.health.available(health::now_ms()));
            }
        }
    }
}

/// 502 for the client; the reason is in the log.
fn bad_gateway() -> http::Response<Body> {
    crate::types::error_response(StatusCode::BAD_GATEWAY)
}

/// Methods whose repetition has no further effect (RFC 9110 section 9.2.2).
fn is_idempotent(request: &Request<Body>) -> bool {
    use http::Method;
    matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}
