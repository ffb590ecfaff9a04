//! `[[route]]`: which requests go where. Routes are tried in order; the first whose
//! conditions (host, path prefix, methods) all hold takes the request to its action.
//! A request no route takes goes to the default `[app]`, or gets 404 without one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::middleware::{MiddlewareConfig, StaticConfig};
use super::units::OneOrMany;
use super::upstream::ProxyTarget;

/// One `[[route]]`: conditions, exactly one action, and middleware of its own.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// Hosts this route answers: `"admin.example.com"`, `"*.example.com"` (any
    /// subdomain), optionally with `:port`; a string or a list. Unset: any host.
    pub host: Option<HostPatterns>,
    /// Path prefix, matched at a segment boundary on the decoded, normalized path:
    /// `"/tools"` takes `/tools` and `/tools/x`, not `/toolsX`. Unset: any path.
    pub path: Option<String>,
    /// Methods this route answers (`GET` also takes `HEAD`). Unset: any method.
    pub methods: Option<Vec<String>>,
    /// Action: the named WSGI app (`[apps.NAME]`, or `"default"` for `[app]`), mounted at
    /// `path` (`SCRIPT_NAME`).
    pub app: Option<String>,
    /// Action: send the request to an upstream, `[upstream.NAME]` by name or one server
    /// inline (`"http://127.0.0.1:9001"`, `"https://api.example.com"`,
    /// `"unix:/run/api.sock"`).
    pub proxy: Option<ProxyTarget>,
    /// Action: files from a folder (a path, or a table with the static layer's options),
    /// mounted at `path`; a miss is 404.
    #[serde(rename = "static")]
    pub static_files: Option<StaticAction>,
    /// Action: a redirect (a target, or a table with `to`, `status`, `keep_path`).
    pub redirect: Option<RedirectAction>,
    /// Action: a fixed response (`status`, `body`, `headers`).
    pub respond: Option<RespondAction>,
    /// `[[route.middleware]]`: layers around this route's action only, outermost first,
    /// of the same kinds as `[[middleware]]`.
    pub middleware: Vec<MiddlewareConfig>,
}

impl RouteConfig {
    /// The names of the actions this route sets (exactly one is valid).
    pub fn actions(&self) -> Vec<&'static str> {
        let mut actions = Vec::new();
        if self.app.is_some() {
            actions.push("app");
        }
        if self.proxy.is_some() {
            actions.push("proxy");
        }
        if self.static_files.is_some() {
            actions.push("static");
        }
        if self.redirect.is_some() {
            actions.push("redirect");
        }
        if self.respond.is_some() {
            actions.push("respond");
        }
        actions
    }

    /// True when the route takes every request (no condition at all).
    pub fn is_catch_all(&self) -> bool {
        self.host.is_none()
            && self.path.as_deref().is_none_or(|p| p == "/")
            && self.methods.is_none()
    }
}

/// `host = "..."` or `host = ["...", "..."]`, each parsed when the file is loaded.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "OneOrMany", into = "Vec<String>")]
pub struct HostPatterns(pub Vec<HostPattern>);

impl TryFrom<OneOrMany> for HostPatterns {
    type Error = String;

    fn try_from(hosts: OneOrMany) -> Result<Self, String> {
        hosts
            .into_vec()
            .iter()
            .map(|text| HostPattern::parse(text))
            .collect::<Result<_, _>>()
            .map(HostPatterns)
    }
}

impl From<HostPatterns> for Vec<String> {
    fn from(hosts: HostPatterns) -> Vec<String> {
        hosts.0.iter().map(ToString::to_string).collect()
    }
}

/// One host condition: an exact name or `*.` and a suffix, with an optional port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPattern {
    /// Lower-case name, without the `*.` of a wildcard.
    pub name: String,
    /// `*.example.com`: any name that ends in `.example.com`.
    pub wildcard: bool,
    /// Only requests that name this port in their Host.
    pub port: Option<u16>,
}

impl HostPattern {
    /// Parse `"example.com"`, `"*.example.com"`, `"example.com:8080"`, `"[::1]:8080"`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let lower = text.trim().to_ascii_lowercase();
        let (host, port) =
            split_port(&lower).ok_or_else(|| format!("{text:?}: the port is not a number"))?;
        let (wildcard, name) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        let valid = !name.is_empty()
            && name.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'[' | b']' | b':')
            });
        if !valid {
            return Err(format!(
                "{text:?} is not a host name (\"example.com\", \"*.example.com\", optionally with \":PORT\")"
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            wildcard,
            port,
        })
    }

    /// True when `host` (lower case, no port) and `port` (from the Host header, if it
    /// named one) satisfy this pattern.
    pub fn matches(&self, host: &str, port: Option<u16>) -> bool {
        if self.port.is_some() && self.port != port {
            return false;
        }
        if self.wildcard {
            host.len() > self.name.len()
                && host.ends_with(self.name.as_str())
                && host.as_bytes()[host.len() - self.name.len() - 1] == b'.'
        } else {
            host == self.name
        }
    }
}

/// `host[:port]` (with `[v6]:port`) into the host and the port, if any; None when the
/// port is not a number.
pub fn split_port(host: &str) -> Option<(&str, Option<u16>)> {
    let port_start = if host.starts_with('[') {
        host.find(']')
            .map(|end| end + 1)
            .filter(|&i| i < host.len())
    } else {
        host.rfind(':')
    };
    match port_start {
        Some(colon) if host.as_bytes()[colon] == b':' => {
            let port = host[colon + 1..].parse().ok()?;
            Some((&host[..colon], Some(port)))
        }
        _ => Some((host, None)),
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.wildcard {
            f.write_str("*.")?;
        }
        f.write_str(&self.name)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// `static = "dir"` or `static = { dir = "...", cache_control = "..." }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StaticAction {
    /// Just the folder.
    Dir(PathBuf),
    /// The static layer's options (`mount` is the route's `path`; `fallthrough` does not
    /// apply: a miss is 404).
    Options(StaticConfig),
}

/// `redirect = "/new"` or `redirect = { to = "/new", status = 308, keep_path = false }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RedirectAction {
    /// Just the target: 301, the rest of the path and the query kept.
    To(String),
    /// The target and how.
    Options(RedirectOptions),
}

/// How a redirect is made.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectOptions {
    /// Where to: a path (`/new`) or a URL (`https://example.com/new`).
    pub to: String,
    /// 301, 302, 303, 307 or 308 (default 301).
    #[serde(default = "moved_permanently")]
    pub status: u16,
    /// Append the part of the path below the route's `path` (`/old/a` -> `/new/a`).
    #[serde(default = "yes")]
    pub keep_path: bool,
    /// Append the query string.
    #[serde(default = "yes")]
    pub keep_query: bool,
}

impl RedirectAction {
    /// The options, with defaults for the short form.
    pub fn options(&self) -> RedirectOptions {
        match self {
            RedirectAction::To(to) => RedirectOptions {
                to: to.clone(),
                status: moved_permanently(),
                keep_path: true,
                keep_query: true,
            },
            RedirectAction::Options(options) => options.clone(),
        }
    }
}

fn moved_permanently() -> u16 {
    301
}

fn yes() -> bool {
    true
}

/// `respond = { status = 503, body = "down for maintenance", headers = { ... } }`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RespondAction {
    /// The status (default 200).
    #[serde(default = "ok")]
    pub status: u16,
    /// The body (default empty).
    #[serde(default)]
    pub body: String,
    /// Response headers (`Content-Type` defaults to `text/plain; charset=utf-8`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

fn ok() -> u16 {
    200
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        let exact = HostPattern::parse("Admin.Example.com").unwrap();
        assert!(exact.matches("admin.example.com", None));
        assert!(exact.matches("admin.example.com", Some(8080)));
        assert!(!exact.matches("x.admin.example.com", None));
        let wildcard = HostPattern::parse("*.example.com").unwrap();
        assert!(wildcard.matches("a.example.com", None));
        assert!(wildcard.matches("a.b.example.com", None));
        assert!(!wildcard.matches("example.com", None));
        assert!(!wildcard.matches("badexample.com", None));
        let port = HostPattern::parse("example.com:8080").unwrap();
        assert!(port.matches("example.com", Some(8080)));
        assert!(!port.matches("example.com", None));
        assert!(!port.matches("example.com", Some(80)));
        assert!(HostPattern::parse("exa mple.com").is_err());
        assert!(HostPattern::parse("example.com:http").is_err());
        assert_eq!(split_port("[::1]:8080"), Some(("[::1]", Some(8080))));
        assert_eq!(split_port("[::1]"), Some(("[::1]", None)));
    }
}
