//! Proxy trust: `Forwarded` and `X-Forwarded-*` from trusted peers only.
//!
//! A request from an address in `server.forwarded_allow_ips` may say who the client
//! is (`Forwarded: for=` or `X-Forwarded-For`), which scheme it used (`proto=` or
//! `X-Forwarded-Proto`) and which host it asked for (`host=` or `X-Forwarded-Host`).
//! The client is found by walking the list from the right past addresses that are
//! themselves trusted (nginx's `real_ip_recursive`). From any other peer these headers
//! are passed to the application untouched and never trusted.

use std::net::{IpAddr, SocketAddr};

use http::{header, HeaderMap, HeaderName, HeaderValue};

use crate::config::TrustedProxies;
use crate::types::ConnectionInfo;

/// Apply the forwarding headers of a trusted peer to the request's [`ConnectionInfo`]
/// (set by the server for every request) and its `Host`.
pub(super) fn apply_to_request<B>(proxies: &TrustedProxies, request: &mut http::Request<B>) {
    if proxies.is_empty() || !carries_forwarding(request.headers()) {
        return;
    }
    let Some(mut info) = request.extensions().get::<ConnectionInfo>().copied() else {
        return;
    };
    apply(proxies, &mut info, request.headers_mut());
    request.extensions_mut().insert(info);
}

/// The fields a proxy uses to describe the client's request.
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether the request carries any field [`apply`] reads: most requests carry none, and
/// then there is nothing to look up, parse or store again.
fn carries_forwarding(headers: &HeaderMap) -> bool {
    headers.contains_key(header::FORWARDED)
        || headers.contains_key(&X_FORWARDED_FOR)
        || headers.contains_key(&X_FORWARDED_PROTO)
        || headers.contains_key(&X_FORWARDED_HOST)
}

/// If the peer is trusted, apply its forwarding headers to `info` and the `Host`
/// header. Untrusted peers change nothing. When the proxy names the scheme or host the
/// client used, the client's request arrived at the proxy, not at this socket:
/// `info.local` becomes unknown, so `SERVER_PORT` is the forwarded host's port or the
/// scheme's default (as waitress does), not the port the proxy connected to.
pub(super) fn apply(proxies: &TrustedProxies, info: &mut ConnectionInfo, headers: &mut HeaderMap) {
    let trusted = match info.peer {
        Some(peer) => proxies.trusts(peer.ip()),
        // A unix-socket peer: trusted when the list says "unix", or (as it always was)
        // when it trusts loopback.
        None => proxies.trusts_unix() || proxies.trusts(IpAddr::from([127, 0, 0, 1])),
    };
    if !trusted {
        return;
    }
    let facts = forwarded(headers).unwrap_or_else(|| x_forwarded(headers));
    if facts.proto.is_some() || facts.host.is_some() {
        info.local = None;
    }
    if let Some(client) = client(proxies, &facts.chain) {
        info.peer = Some(client);
    }
    match facts
        .proto
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("https") => info.scheme = "https",
        Some("http") => info.scheme = "http",
        _ => {}
    }
    if let Some(host) = facts.host.and_then(|h| HeaderValue::try_from(h).ok()) {
        headers.insert(header::HOST, host);
    }
}

/// The rightmost address of the chain that is not a trusted proxy.
fn client(proxies: &TrustedProxies, chain: &[String]) -> Option<SocketAddr> {
    let parsed: Vec<SocketAddr> = chain.iter().filter_map(|entry| parse_node(entry)).collect();
    parsed
        .iter()
        .rev()
        .find(|addr| !proxies.trusts(addr.ip()))
        .or_else(|| parsed.first())
        .copied()
}

/// What the forwarding headers claim.
#[derive(Default)]
struct Facts {
    chain: Vec<String>,
    proto: Option<String>,
    host: Option<String>,
}

/// RFC 7239 `Forwarded`, if present.
fn forwarded(headers: &HeaderMap) -> Option<Facts> {
    let values: Vec<&str> = headers
        .get_all(header::FORWARDED)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return None;
    }
    let mut facts = Facts::default();
    for element in values.iter().flat_map(|v| v.split(',')) {
        for pair in element.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"').to_owned();
            match key.trim().to_ascii_lowercase().as_str() {
                "for" => facts.chain.push(value),
                // The last element is the one our trusted proxy added.
                "proto" => facts.proto = Some(value),
                "host" => facts.host = Some(value),
                _ => {}
            }
        }
    }
    Some(facts)
}

/// `X-Forwarded-For`, `-Proto` and `-Host`.
fn x_forwarded(headers: &HeaderMap) -> Facts {
    let last = |name: &HeaderName| -> Option<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .rfind(|v| !v.is_empty())
            .map(str::to_owned)
    };
    Facts {
        chain: headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect(),
        proto: last(&X_FORWARDED_PROTO),
        host: last(&X_FORWARDED_HOST),
    }
}

/// `192.0.2.1`, `192.0.2.1:4711`, `[2001:db8::1]:4711` or `2001:db8::1`; port 0 if absent.
fn parse_node(text: &str) -> Option<SocketAddr> {
    let text = text.trim();
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn info(peer: &str) -> ConnectionInfo {
        ConnectionInfo {
            peer: Some(peer.parse().unwrap()),
            local: Some("127.0.0.1:8000".parse().unwrap()),
            scheme: "http",
        }
    }

    #[test]
    fn trusted_peers_set_client_scheme_and_host() {
        let proxies = trusted(&["127.0.0.1", "10.0.0.0/8"]);
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", "198.51.100.7, 10.1.2.3".parse().unwrap());
        headers.insert("x-forwarded-proto", "https".parse().unwrap());
        headers.insert("x-forwarded-host", "shop.example".parse().unwrap());
        let mut info = info("127.0.0.1:5000");
        apply(&proxies, &mut info, &mut headers);
        assert_eq!(info.peer.unwrap().ip().to_string(), "198.51.100.7");
        assert_eq!(info.scheme, "https");
        assert_eq!(headers["host"], "shop.example");
        assert_eq!(
            info.local, None,
            "the client reached the proxy, not this socket"
        );
    }

    #[test]
    fn forwarded_header_wins_and_untrusted_peers_change_nothing() {
        let proxies = trusted(&["127.0.0.0/8"]);
        let mut headers = HeaderMap::new();
        headers.insert(
            "forwarded",
            "for=\"[2001:db8::17]:4711\";proto=https;host=a.example"
                .parse()
                .unwrap(),
        );
        headers.insert("x-forwarded-for", "203.0.113.1".parse().unwrap());
        let mut trusted_info = info("127.0.0.2:1");
        apply(&proxies, &mut trusted_info, &mut headers.clone());
        assert_eq!(
            trusted_info.peer.unwrap().to_string(),
            "[2001:db8::17]:4711"
        );
        let mut untrusted = info("192.0.2.9:1");
        apply(&proxies, &mut untrusted, &mut headers);
        assert_eq!(untrusted.peer.unwrap().to_string(), "192.0.2.9:1");
        assert_eq!(untrusted.scheme, "http");
        assert!(untrusted.local.is_some());
        assert!(headers.get("host").is_none());
    }
}
