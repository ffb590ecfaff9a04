//! `[upstream.NAME]`: HTTP services a route can proxy to (`proxy = "NAME"`), with their
//! servers, balancing, health checks, retries and timeouts. Everything is parsed when
//! the file is loaded: a server address, a balancing key or a host policy that does not
//! parse names its key.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use figment::value::magic::RelativePathBuf;
use serde::{Deserialize, Serialize};

use super::units::duration;

/// One `[upstream.NAME]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// The servers: `"host:port"`, `"http://host:port"`, `"https://host:port"` or
    /// `"unix:/path/to.sock"`, or a table `{ address = "...", weight = 3 }`.
    pub servers: Vec<ServerEntry>,
    /// How a server is picked: `"round_robin"` (default, by weight),
    /// `"least_requests"` (fewest requests in flight, by weight) or `"hash"` (the same
    /// key goes to the same server while it is healthy; see `hash_by`).
    pub balance: Balance,
    /// With `balance = "hash"`: `"client_ip"` (default), `"header:NAME"` or
    /// `"cookie:NAME"` (sticky sessions).
    pub hash_by: Option<HashKey>,
    /// Attempts on another server after a failure that is safe to retry: a connect
    /// error (any method), or a connection reset before any response byte (idempotent
    /// methods without a body). Nothing else is retried.
    pub retries: u32,
    /// How long a connection (and its TLS handshake) may take: a server that does not
    /// answer in time counts as a connect error (502 when no other server is left).
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// How long the response head may take once the request is sent (504 after it), and
    /// the longest pause between two pieces of the response body (the response is then
    /// cut). Upgraded connections (WebSocket) have no such limit.
    #[serde(with = "duration")]
    pub read_timeout: Duration,
    /// How long an idle pooled connection is kept.
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// Idle connections kept per server in each worker (0: no keep-alive to upstreams).
    pub max_idle: usize,
    /// Speak HTTP/2 to the servers: prior knowledge (h2c) to `http` servers, ALPN to
    /// `https` ones (HTTP/1.1 when the server does not choose h2). Upgrades (WebSocket)
    /// always go over HTTP/1.1.
    pub http2: bool,
    /// The `Host` sent upstream: `"client"` (default: the client's own), `"upstream"`
    /// (the server's `host:port`) or a fixed value.
    pub host: HostPolicy,
    /// How the client is described to the upstream: `"x-forwarded"` (default:
    /// `X-Forwarded-For`, `-Proto`, `-Host`), `"forwarded"` (RFC 7239) or `"none"`.
    /// Values the client sent in these headers are replaced, never passed on.
    pub forwarded: ForwardedStyle,
    /// A path prefix removed before the request goes upstream (`"/api"`: `/api/users`
    /// becomes `/users`); the removed prefix is sent as `X-Forwarded-Prefix`.
    pub strip_prefix: Option<String>,
    /// Rewrite a `Location` that points at the server's own address (or the fixed
    /// `host`), as nginx's `proxy_redirect default` does: `http://10.0.0.5:9001/users/1`
    /// becomes `/api/users/1` (with `strip_prefix = "/api"`), a path the client can
    /// follow. `false` passes `Location` on unchanged (`proxy_redirect off`).
    pub rewrite_location: bool,
    /// Passive and active health checks.
    pub health: HealthConfig,
    /// TLS to `https` servers.
    pub tls: UpstreamTls,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            servers: Vec::new(),
            balance: Balance::RoundRobin,
            hash_by: None,
            retries: 1,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            max_idle: 64,
            http2: false,
            host: HostPolicy::Client,
            forwarded: ForwardedStyle::XForwarded,
            strip_prefix: None,
            rewrite_location: true,
            health: HealthConfig::default(),
            tls: UpstreamTls::default(),
        }
    }
}

impl UpstreamConfig {
    /// An upstream of one server with every default (`proxy = "http://..."`).
    pub fn inline(server: ServerAddress) -> Self {
        Self {
            servers: vec![ServerEntry::Address(server)],
            ..Self::default()
        }
    }

    /// The key that picks a server under `balance = "hash"`.
    pub fn hash_key(&self) -> HashKey {
        self.hash_by.clone().unwrap_or(HashKey::ClientIp)
    }
}

/// One entry of `servers`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ServerEntry {
    /// Just the address (weight 1).
    Address(ServerAddress),
    /// The address and its options.
    Weighted(WeightedServer),
}

impl ServerEntry {
    /// The server's address.
    pub fn address(&self) -> &ServerAddress {
        match self {
            ServerEntry::Address(address) => address,
            ServerEntry::Weighted(server) => &server.address,
        }
    }

    /// The server's weight (1 unless set).
    pub fn weight(&self) -> u32 {
        match self {
            ServerEntry::Address(_) => 1,
            ServerEntry::Weighted(server) => server.weight,
        }
    }
}

/// `{ address = "10.0.0.5:8080", weight = 3 }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WeightedServer {
    /// The address, as in the short form.
    pub address: ServerAddress,
    /// Its share of the requests relative to the others (1..=100; default 1).
    #[serde(default = "one")]
    pub weight: u32,
}

fn one() -> u32 {
    1
}

/// Where a server listens.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ServerAddress {
    /// `host:port` or `http://host:port`: plain HTTP over TCP (the host is resolved when
    /// connecting).
    Http {
        /// Host name or address (`[v6]` in brackets).
        host: String,
        /// Port.
        port: u16,
    },
    /// `https://host:port` (443 when omitted): HTTP over TLS, the host sent as SNI and
    /// verified against the certificate.
    Https {
        /// Host name or address.
        host: String,
        /// Port.
        port: u16,
    },
    /// `unix:/path/to.sock`: plain HTTP over a unix socket.
    Unix(PathBuf),
}

impl ServerAddress {
    /// Parse one server address.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("{text:?} names no socket path"));
            }
            return Ok(ServerAddress::Unix(PathBuf::from(path)));
        }
        let (https, rest) = if let Some(rest) = text.strip_prefix("https://") {
            (true, rest)
        } else if let Some(rest) = text.strip_prefix("http://") {
            (false, rest)
        } else if text.contains("://") {
            return Err(format!(
                "{text:?}: only http://, https:// and unix: servers are supported"
            ));
        } else {
            (false, text)
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') {
            return Err(format!(
                "{text:?}: a server is host:port without a path (use strip_prefix to change paths)"
            ));
        }
        let (host, port) = match super::route::split_port(authority) {
            Some((host, Some(port))) => (host, port),
            Some((host, None)) if https => (host, 443),
            Some((host, None)) if rest != text => (host, 80),
            _ => {
                return Err(format!(
                    "{text:?} is not host:port, http://host:port, https://host[:port] or unix:/path"
                ))
            }
        };
        let valid = !host.is_empty()
            && host.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'[' | b']' | b':')
            });
        if !valid {
            return Err(format!("{text:?}: {host:?} is not a host name or address"));
        }
        let host = host.to_owned();
        Ok(if https {
            ServerAddress::Https { host, port }
        } else {
            ServerAddress::Http { host, port }
        })
    }

    /// `host:port` for TCP servers (what `host = "upstream"` sends), `localhost` for a
    /// unix socket.
    pub fn authority(&self) -> String {
        match self {
            ServerAddress::Http { host, port } | ServerAddress::Https { host, port } => {
                format!("{host}:{port}")
            }
            ServerAddress::Unix(_) => "localhost".to_owned(),
        }
    }
}

impl TryFrom<String> for ServerAddress {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<ServerAddress> for String {
    fn from(address: ServerAddress) -> String {
        address.to_string()
    }
}

impl fmt::Display for ServerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServerAddress::Http { host, port } => write!(f, "{host}:{port}"),
            ServerAddress::Https { host, port } => write!(f, "https://{host}:{port}"),
            ServerAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// `balance`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each server in turn, as often as its weight says (nginx's smooth weighted
    /// round robin).
    #[default]
    RoundRobin,
    /// The server with the fewest requests in flight relative to its weight.
    LeastRequests,
    /// The same key to the same server (rendezvous hashing: when a server leaves, only
    /// its keys move).
    Hash,
}

/// `hash_by`: what a request is hashed on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum HashKey {
    /// The client's address (as the proxy trust chain resolved it).
    ClientIp,
    /// A request header's value (requests without it go round robin).
    Header(http::HeaderName),
    /// A cookie's value (requests without it go round robin).
    Cookie(String),
}

impl TryFrom<String> for HashKey {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        if text == "client_ip" {
            return Ok(HashKey::ClientIp);
        }
        if let Some(name) = text.strip_prefix("header:") {
            return http::HeaderName::try_from(name.trim())
                .map(HashKey::Header)
                .map_err(|_| format!("{name:?} is not a header name"));
        }
        if let Some(name) = text.strip_prefix("cookie:") {
            let name = name.trim();
            if name.is_empty() || name.contains([';', '=', ' ']) {
                return Err(format!("{name:?} is not a cookie name"));
            }
            return Ok(HashKey::Cookie(name.to_owned()));
        }
        Err(format!(
            "{text:?}: expected \"client_ip\", \"header:NAME\" or \"cookie:NAME\""
        ))
    }
}

impl From<HashKey> for String {
    fn from(key: HashKey) -> String {
        match key {
            HashKey::ClientIp => "client_ip".to_owned(),
            HashKey::Header(name) => format!("header:{name}"),
            HashKey::Cookie(name) => format!("cookie:{name}"),
        }
    }
}

/// `host`: the `Host` header the upstream sees.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(try_from = "String", into = "String")]
pub enum HostPolicy {
    /// The client's `Host` (nginx: `proxy_set_header Host $host`).
    #[default]
    Client,
    /// The server's own `host:port` (nginx's default, `$proxy_host`).
    Upstream,
    /// This value.
    Fixed(http::HeaderValue),
}

impl TryFrom<String> for HostPolicy {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match text.as_str() {
            "client" => Ok(HostPolicy::Client),
            "upstream" => Ok(HostPolicy::Upstream),
            fixed => {
                let valid = !fixed.is_empty()
                    && fixed.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                    });
                if !valid {
                    return Err(format!(
                        "{fixed:?}: expected \"client\", \"upstream\" or a host[:port]"
                    ));
                }
                http::HeaderValue::from_str(fixed)
                    .map(HostPolicy::Fixed)
                    .map_err(|_| format!("{fixed:?} is not a header value"))
            }
        }
    }
}

impl From<HostPolicy> for String {
    fn from(policy: HostPolicy) -> String {
        match policy {
            HostPolicy::Client => "client".to_owned(),
            HostPolicy::Upstream => "upstream".to_owned(),
            HostPolicy::Fixed(value) => String::from_utf8_lossy(value.as_bytes()).into_owned(),
        }
    }
}

/// `forwarded`: how the client is described to the upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum ForwardedStyle {
    /// `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`.
    #[default]
    #[serde(rename = "x-forwarded")]
    XForwarded,
    /// `Forwarded: for=...;proto=...;host=...` (RFC 7239).
    #[serde(rename = "forwarded")]
    Forwarded,
    /// Neither (the client's own values are still removed).
    #[serde(rename = "none")]
    None,
}

/// `[upstream.NAME.health]`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HealthConfig {
    /// Passive: this many consecutive failures (connect error or timeout, reset, no
    /// response head in time, malformed response, or a 5xx status) eject a server for
    /// `cooldown`. 0 disables passive checks. A lone server is never ejected passively.
    pub max_fails: u32,
    /// How long an ejected server gets no requests; then it is tried again (one more
    /// failure ejects it again).
    #[serde(with = "duration")]
    pub cooldown: Duration,
    /// Active: when set, each worker requests this path (`GET`, with the upstream's
    /// `Host` policy) on every server every `interval`; a 2xx or 3xx is a pass.
    pub path: Option<String>,
    /// Time between two active checks of a server.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// How long an active check may take.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Consecutive failed checks that take a server out.
    pub unhealthy_threshold: u32,
    /// Consecutive passed checks that bring it back.
    pub healthy_threshold: u32,
}

impl Default for HealthConfig {
    fn default() -> Self {
        Self {
            max_fails: 3,
            cooldown: Duration::from_secs(10),
            path: None,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            unhealthy_threshold: 2,
            healthy_threshold: 2,
        }
    }
}

/// `[upstream.NAME.tls]`: how `https` servers are verified, and who we are to them.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamTls {
    /// PEM CA certificates to verify the servers against, instead of the system's
    /// roots (relative to the config file).
    pub ca: Option<RelativePathBuf>,
    /// PEM client certificate chain, for servers that ask for one (with `key`).
    pub cert: Option<RelativePathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<RelativePathBuf>,
    /// The name sent as SNI and verified in the certificate, when it is not the
    /// server's host (for servers listed by IP address).
    pub server_name: Option<String>,
}

/// `route.proxy`: an upstream by name, or one server inline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ProxyTarget {
    /// `proxy = "api"`: `[upstream.api]`.
    Named(String),
    /// `proxy = "http://127.0.0.1:9001"`: one server with every default.
    Inline(ServerAddress),
}

impl ProxyTarget {
    /// The name its upstream is known by in logs and metrics (the URL for an inline one).
    pub fn name(&self) -> String {
        match self {
            ProxyTarget::Named(name) => name.clone(),
            ProxyTarget::Inline(address) => address.to_string(),
        }
    }
}

impl TryFrom<String> for ProxyTarget {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        if text.contains("://") || text.starts_with("unix:") {
            return ServerAddress::parse(&text).map(ProxyTarget::Inline);
        }
        if text.is_empty()
            || !text
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        {
            return Err(format!(
                "{text:?}: expected an [upstream.NAME] name or a URL such as \"http://127.0.0.1:9001\""
            ));
        }
        Ok(ProxyTarget::Named(text))
    }
}

impl From<ProxyTarget> for String {
    fn from(target: ProxyTarget) -> String {
        match target {
            ProxyTarget::Named(name) => name,
            ProxyTarget::Inline(address) => match address {
                ServerAddress::Http { .. } => format!("http://{address}"),
                other => other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        assert_eq!(
            ServerAddress::parse("127.0.0.1:9001").unwrap(),
            ServerAddress::Http {
                host: "127.0.0.1".into(),
                port: 9001
            }
        );
        assert_eq!(
            ServerAddress::parse("https://api.example.com").unwrap(),
            ServerAddress::Https {
                host: "api.example.com".into(),
                port: 443
            }
        );
        assert_eq!(
            ServerAddress::parse("http://[::1]:8080/")
                .unwrap()
                .to_string(),
            "[::1]:8080"
        );
        assert_eq!(
            ServerAddress::parse("unix:/run/api.sock").unwrap(),
            ServerAddress::Unix("/run/api.sock".into())
        );
        for bad in [
            "api",
            "ftp://x:1",
            "http://x:1/path",
            "unix:",
            "x:port",
            ":80",
        ] {
            assert!(ServerAddress::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn proxy_targets_and_policies() {
        assert_eq!(
            ProxyTarget::try_from("api".to_owned()).unwrap(),
            ProxyTarget::Named("api".into())
        );
        let inline = ProxyTarget::try_from("http://127.0.0.1:9001".to_owned()).unwrap();
        assert_eq!(String::from(inline), "http://127.0.0.1:9001");
        assert!(ProxyTarget::try_from("a b".to_owned()).is_err());
        assert_eq!(
            HashKey::try_from("cookie:sid".to_owned()).unwrap(),
            HashKey::Cookie("sid".into())
        );
        assert!(HashKey::try_from("ip".to_owned()).is_err());
        assert_eq!(
            HostPolicy::try_from("upstream".to_owned()).unwrap(),
            HostPolicy::Upstream
        );
        assert!(HostPolicy::try_from("a b".to_owned()).is_err());
    }
}
