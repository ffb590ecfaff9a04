//! `[server]`: listeners, the process and thread model, timeouts.

use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use serde::{Deserialize, Serialize};

use super::address::{BindAddress, FileMode};
use super::proxies::TrustedProxies;
use super::units::{duration, one_or_many, ByteSize};

/// How the gateway listens and how long it waits.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Addresses to listen on: `"HOST:PORT"` (IPv4, `[IPv6]`, or a name that resolves)
    /// or `"unix:/path/to.sock"`. Port 0 asks the OS for a free port; the chosen address
    /// is logged.
    #[serde(deserialize_with = "one_or_many")]
    pub bind: Vec<BindAddress>,
    /// Permissions of unix socket files, as an octal string (`"660"`: owner and group).
    pub unix_socket_mode: FileMode,
    /// Worker processes, or `"auto"` for one per core. Each has its own interpreter,
    /// Python thread pool and runtime; a supervisor process restarts them.
    #[serde(deserialize_with = "super::units::worker_count")]
    pub workers: usize,
    /// Recycle a worker after this many requests (0: never), as gunicorn's
    /// `max_requests`: a fresh worker is started, and once it serves the old one drains.
    pub max_requests: u64,
    /// Add a random 0..=jitter to `max_requests` per worker, so workers do not all
    /// recycle at once.
    pub max_requests_jitter: u64,
    /// Recycle a worker whose resident memory grows past this (0: never).
    pub max_rss: ByteSize,
    /// A request whose response has not started this long after a Python thread picked
    /// it up gets 504, and its worker is recycled, since a Python thread cannot be
    /// interrupted (gunicorn's `timeout`). Time spent waiting for a thread does not
    /// count (see `queue_timeout`). 0 disables it.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// A request that waits longer than this for a free Python thread gets 503 with
    /// `Retry-After` and never runs; the worker is not recycled. 0 disables it.
    #[serde(with = "duration")]
    pub queue_timeout: Duration,
    /// Python threads per worker: how many requests run application code at once.
    pub threads: usize,
    /// Threads of the async runtime that run I/O and the native layers, per worker.
    /// One is enough for most apps (Python is the bottleneck); raise it when native
    /// layers (compression, TLS, static files) are busy.
    pub io_threads: usize,
    /// Peers whose `Forwarded` / `X-Forwarded-For` / `-Proto` / `-Host` headers are
    /// believed (CIDR blocks or addresses; `"*"` for any; `"unix"` for peers on unix
    /// socket listeners, which are also trusted when loopback is). From others they are
    /// passed through untouched (gunicorn's `forwarded_allow_ips`).
    pub forwarded_allow_ips: TrustedProxies,
    /// Every TCP connection starts with a PROXY protocol header (v1 or v2, as HAProxy
    /// and cloud load balancers send), believed only from `forwarded_allow_ips`.
    pub proxy_protocol: bool,
    /// Pending-connection queue length passed to listen(2) (gunicorn's `backlog`).
    pub backlog: u32,
    /// Serve HTTP/2 over cleartext to clients that start with the HTTP/2 preface.
    pub http2: bool,
    /// On SIGTERM/SIGINT, how long requests in flight may take to finish before exit.
    #[serde(with = "duration")]
    pub graceful_timeout: Duration,
    /// On SIGTERM/SIGINT, keep accepting and serving for this long before draining
    /// (`/readyz` answers 503 meanwhile), so load balancers and Kubernetes endpoints
    /// stop sending new connections first. A second signal drains at once. 0: drain at
    /// once.
    #[serde(with = "duration")]
    pub shutdown_delay: Duration,
    /// How long an idle keep-alive connection is kept open (gunicorn's `keepalive`).
    #[serde(with = "duration")]
    pub keepalive_timeout: Duration,
    /// How long a client may take to send a complete request head once it has started
    /// (slowloris protection); the connection gets a 408 and is closed after it.
    #[serde(with = "duration")]
    pub header_timeout: Duration,
    /// How long `wsgi.input` waits for the next piece of a request body before the read
    /// raises and the response becomes 408; also the bound on reading a whole body up to
    /// `limits.buffer_body` before the application is called (408 without calling it).
    #[serde(with = "duration")]
    pub read_timeout: Duration,
    /// TLS listeners, if any.
    pub tls: Option<TlsConfig>,
    /// A file the supervisor writes its pid to (and removes on exit), as gunicorn's
    /// `--pid`.
    pub pidfile: Option<std::path::PathBuf>,
    /// How long a response may wait for a slow client to accept more bytes before the
    /// connection is dropped and the application's iterable is closed.
    #[serde(with = "duration")]
    pub write_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            bind: vec![BindAddress::Tcp("127.0.0.1:8000".to_owned())],
            unix_socket_mode: FileMode(0o660),
            workers: 1,
            max_requests: 0,
            max_requests_jitter: 0,
            max_rss: ByteSize(0),
            timeout: Duration::from_secs(60),
            queue_timeout: Duration::from_secs(30),
            threads: 4,
            io_threads: 1,
            forwarded_allow_ips: TrustedProxies::parse(&[
                "127.0.0.1".to_owned(),
                "::1".to_owned(),
                "unix".to_owned(),
            ])
            .expect("valid addresses"),
            proxy_protocol: false,
            backlog: 2048,
            http2: true,
            graceful_timeout: Duration::from_secs(30),
            shutdown_delay: Duration::ZERO,
            keepalive_timeout: Duration::from_secs(2),
            header_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            tls: None,
            pidfile: None,
        }
    }
}

/// `[server.tls]`: listeners that speak TLS.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// `"HOST:PORT"` listeners that speak TLS (in addition to `server.bind`).
    #[serde(deserialize_with = "one_or_many")]
    pub bind: Vec<BindAddress>,
    /// PEM certificate chain, leaf first (relative to the config file).
    pub cert: RelativePathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: RelativePathBuf,
    /// PEM CA certificates: when set, clients must present a certificate signed by one
    /// (mutual TLS); its subject reaches the app as `SSL_CLIENT_S_DN`.
    #[serde(default)]
    pub client_ca: Option<RelativePathBuf>,
}
