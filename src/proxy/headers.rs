//! The request and response heads on their way through the proxy: hop-by-hop fields
//! removed both ways (the fixed list and every field `Connection` names, RFC 9110
//! section 7.6.1), the client described to the upstream (`X-Forwarded-*` or
//! `Forwarded`, replacing whatever the client sent), the `Host` policy and the target.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{PathAndQuery, Uri};

use crate::config::{ForwardedStyle, HostPolicy};
use crate::types::ConnectionInfo;

/// Fields that describe one connection, never forwarded (RFC 9110 section 7.6.1, plus
/// `Proxy-Connection` and the proxy credentials of RFC 7235).
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
];

/// Fields by which a client could pose as a proxy, replaced by the gateway's own; and
/// `Expect` (the server answers 100 Continue to the client itself when the body is read).
const DROPPED_FROM_REQUESTS: [HeaderName; 6] = [
    header::EXPECT,
    header::FORWARDED,
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-prefix"),
];

/// True when the `Connection` fields list `token`.
fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .any(|item| item.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The protocol an HTTP/1.1 request asks to switch to (`Upgrade` listed in
/// `Connection`), if any.
pub(crate) fn requested_upgrade(
    version: http::Version,
    headers: &HeaderMap,
) -> Option<HeaderValue> {
    if version != http::Version::HTTP_11 {
        return None;
    }
    let upgrade = headers.get(header::UPGRADE)?;
    connection_has(headers, "upgrade").then(|| upgrade.clone())
}

/// Remove the hop-by-hop fields: those `Connection` names first, then the fixed list.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    // Usually `Connection` names only fields of the fixed list (`keep-alive`,
    // `upgrade`) or the option `close`: then there is nothing more to collect.
    let names_others = headers
        .get_all(header::CONNECTION)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b','))
        .any(|item| {
            let item = item.trim_ascii();
            !item.eq_ignore_ascii_case(b"close")
                && !HOP_BY_HOP
                    .iter()
                    .any(|name| item.eq_ignore_ascii_case(name.as_str().as_bytes()))
        });
    if names_others {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|value| value.as_bytes().split(|&b| b == b','))
            .filter_map(|item| HeaderName::from_bytes(item.trim_ascii()).ok())
            .collect();
        for name in named {
            // A client must not make the proxy drop the fields it adds or needs.
            if name != header::HOST && name != header::CONTENT_LENGTH {
                headers.remove(&name);
            }
        }
    }
    remove_present(headers, &HOP_BY_HOP);
}

/// Remove each of `names` from `headers`. One pass over the (few) fields present
/// first: most heads carry none of them, and that saves a lookup per name.
fn remove_present(headers: &mut HeaderMap, names: &[HeaderName]) {
    if headers.keys().any(|key| names.contains(key)) {
        for name in names {
            headers.remove(name);
        }
    }
}

/// How the request head is rewritten for an upstream.
pub(crate) struct RequestRewrite<'a> {
    pub(crate) host: &'a HostPolicy,
    pub(crate) forwarded: ForwardedStyle,
    /// The canonical prefix to strip, if any.
    pub(crate) strip_prefix: Option<&'a str>,
}

/// The upstream request's head: headers with hop-by-hop and forwarding fields replaced,
/// and the target (origin form). `upgrade` is kept as `Upgrade` + `Connection: upgrade`.
pub(crate) fn upstream_head(
    rewrite: &RequestRewrite<'_>,
    uri: &Uri,
    headers: &mut HeaderMap,
    info: Option<&ConnectionInfo>,
    upgrade: Option<HeaderValue>,
    server_authority: &str,
) -> PathAndQuery {
    // The client's host: Host, or :authority for HTTP/2.
    let client_host = headers.get(header::HOST).cloned().or_else(|| {
        uri.authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    });
    remove_hop_by_hop(headers);
    remove_present(headers, &DROPPED_FROM_REQUESTS);
    if let Some(upgrade) = upgrade {
        headers.insert(header::UPGRADE, upgrade);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // The server's own `host:port`; none while the server is not chosen yet (then
    // the proxy sets it per server), never an empty Host.
    let server_host = || {
        (!server_authority.is_empty())
            .then(|| HeaderValue::from_str(server_authority).ok())
            .flatten()
    };
    let host = match rewrite.host {
        HostPolicy::Client => client_host.clone().or_else(server_host),
        HostPolicy::Upstream => server_host(),
        HostPolicy::Fixed(value) => Some(value.clone()),
    };
    if let Some(host) = host {
        headers.insert(header::HOST, host);
    }
    let (path, stripped) = target_path(uri.path(), rewrite.strip_prefix);
    if let Some(info) = info {
        describe_client(rewrite.forwarded, headers, info, client_host.as_ref());
    }
    if let Some(prefix) = stripped {
        if rewrite.forwarded != ForwardedStyle::None {
            if let Ok(value) = HeaderValue::from_str(prefix) {
                headers.insert(HeaderName::from_static("x-forwarded-prefix"), value);
            }
        }
    }
    if stripped.is_none() {
        // The target as routed, shared rather than copied.
        if let Some(target) = uri.path_and_query() {
            return target.clone();
        }
    }
    let target = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.into_owned(),
    };
    PathAndQuery::try_from(target).unwrap_or_else(|_| PathAndQuery::from_static("/"))
}

/// A `Content-Length` sent as a list of one repeated value (`5, 5`) or in several
/// fields becomes one value, as RFC 9110 section 8.6 asks of a recipient that passes it
/// on (differing values never get here: the response was refused).
pub(crate) fn single_content_length(headers: &mut HeaderMap) {
    let mut values = headers.get_all(header::CONTENT_LENGTH).iter();
    let Some(first) = values.next() else {
        return;
    };
    if values.next().is_none() && !first.as_bytes().contains(&b',') {
        return;
    }
    let length = first
        .to_str()
        .ok()
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(length) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
}

/// nginx's `proxy_redirect default`: a `Location` that names one of `own` (the
/// server's address, or the fixed `Host` sent to it) as its authority becomes a path on
/// the gateway, `prefix` (the stripped one) put back: `http://10.0.0.5:9001/users/1?a`
/// becomes `/api/users/1?a`. The client could not reach the server's own address; a
/// `Location` naming any other host, or a relative one, is left alone.
pub(crate) fn rewrite_location(headers: &mut HeaderMap, own: &[&str], prefix: Option<&str>) {
    let Some(location) = headers.get(header::LOCATION) else {
        return;
    };
    let Ok(location) = location.to_str() else {
        return;
    };
    let Some(path) = path_on_own_authority(location, own) else {
        return;
    };
    let prefix = prefix.map_or("", |p| p.trim_end_matches('/'));
    if prefix.is_empty() && names_another_host(path) {
        // `http://server//evil.example/x` names the server; `//evil.example/x` alone
        // would name another host (browsers also read `/\` so, and drop tabs and line
        // breaks first). Left as it is.
        return;
    }
    let path = match path.chars().next() {
        Some('/') => path.to_owned(),
        _ => format!("/{path}"),
    };
    if let Ok(value) = HeaderValue::from_str(&format!("{prefix}{path}")) {
        headers.insert(header::LOCATION, value);
    }
}

/// A reference a browser would resolve to another host: `//host`, `/\\host`, with tabs
/// and line breaks ignored.
fn names_another_host(reference: &str) -> bool {
    let mut start = reference
        .bytes()
        .filter(|b| !matches!(b, b'\t' | b'\r' | b'\n'))
        .take(2);
    matches!(
        (start.next(), start.next()),
        (Some(b'/' | b'\\'), Some(b'/' | b'\\'))
    )
}

/// What follows the authority of an absolute `http`/`https` URL whose authority is one
/// of `own` (compared without case and without the scheme's default port).
fn path_on_own_authority<'a>(location: &'a str, own: &[&str]) -> Option<&'a str> {
    let scheme_end = location.find("://")?;
    let default_port = match location[..scheme_end].to_ascii_lowercase().as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => return None,
    };
    let rest = &location[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = without_port(&rest[..authority_end], default_port);
    own.iter()
        .any(|name| without_port(name, default_port).eq_ignore_ascii_case(authority))
        .then_some(&rest[authority_end..])
}

/// `authority` without a trailing `port` (`:80`), compared without case.
fn without_port<'s>(authority: &'s str, port: &str) -> &'s str {
    match authority.len().checked_sub(port.len()) {
        Some(cut)
            if authority.is_char_boundary(cut) && authority[cut..].eq_ignore_ascii_case(port) =>
        {
            &authority[..cut]
        }
        _ => authority,
    }
}

/// The path sent upstream and the prefix stripped from it, if any.
fn target_path<'a>(
    path: &'a str,
    strip_prefix: Option<&'a str>,
) -> (std::borrow::Cow<'a, str>, Option<&'a str>) {
    let Some(prefix) = strip_prefix else {
        return (path.into(), None);
    };
    match gateway_middleware::request_path::path_under(path, prefix) {
        Some(rest) if rest.starts_with('/') => (rest.into(), Some(prefix)),
        Some(rest) => (format!("/{rest}").into(), Some(prefix)),
        None => (path.into(), None),
    }
}

/// `ip` as a header value. The last one made is kept per thread: requests come in runs
/// from one client (its keep-alive connection) or one load balancer, and formatting an
/// address costs more than the rest of the field.
fn address_value(ip: IpAddr) -> Option<HeaderValue> {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(IpAddr, HeaderValue)>> =
            const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((cached, value)) = last.as_ref() {
            if *cached == ip {
                return Some(value.clone());
            }
        }
        let value = HeaderValue::from_str(&ip.to_string()).ok()?;
        *last = Some((ip, value.clone()));
        Some(value)
    })
}

/// `X-Forwarded-For/-Proto/-Host` or `Forwarded`, from what the trust chain resolved.
fn describe_client(
    style: ForwardedStyle,
    headers: &mut HeaderMap,
    info: &ConnectionInfo,
    host: Option<&HeaderValue>,
) {
    let client = info.peer.map(|peer| peer.ip());
    match style {
        ForwardedStyle::None => {}
        ForwardedStyle::XForwarded => {
            if let Some(value) = client.and_then(address_value) {
                headers.insert(HeaderName::from_static("x-forwarded-for"), value);
            }
            headers.insert(
                HeaderName::from_static("x-forwarded-proto"),
                HeaderValue::from_static(info.scheme),
            );
            if let Some(host) = host {
                headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
            }
        }
        ForwardedStyle::Forwarded => {
            let mut value = String::with_capacity(64);
            if let Some(ip) = client {
                match ip {
                    IpAddr::V4(v4) => value.push_str(&format!("for={v4}")),
                    IpAddr::V6(v6) => value.push_str(&format!("for=\"[{v6}]\"")),
                }
                value.push(';');
            }
            value.push_str("proto=");
            value.push_str(info.scheme);
            if let Some(host) = host.and_then(|h| h.to_str().ok()) {
                value.push_str(&format!(";host=\"{host}\""));
            }
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(header::FORWARDED, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn address_values_follow_the_address_not_the_cache() {
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        for ip in [v4, v4, v6, v4, v6, v6] {
            assert_eq!(address_value(ip).unwrap(), ip.to_string().as_str());
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn a_repeated_content_length_becomes_one() {
        let mut listed = headers(&[("content-length", "5, 5")]);
        single_content_length(&mut listed);
        assert_eq!(
            listed.get_all("content-length").iter().collect::<Vec<_>>(),
            ["5"]
        );
        let mut fields = headers(&[("content-length", "7"), ("content-length", "7")]);
        single_content_length(&mut fields);
        assert_eq!(
            fields.get_all("content-length").iter().collect::<Vec<_>>(),
            ["7"]
        );
    }

    #[test]
    fn a_location_on_the_servers_own_address_becomes_a_path_here() {
        let rewritten = |location: &str, prefix: Option<&str>| {
            let mut map = headers(&[("location", location)]);
            rewrite_location(&mut map, &["10.0.0.5:9001", "api.internal"], prefix);
            map[header::LOCATION].to_str().unwrap().to_owned()
        };
        assert_eq!(
            rewritten("http://10.0.0.5:9001/users/1?a=b", Some("/api")),
            "/api/users/1?a=b"
        );
        assert_eq!(rewritten("http://10.0.0.5:9001", Some("/api/")), "/api/");
        assert_eq!(rewritten("HTTP://10.0.0.5:9001?x#top", None), "/?x#top");
        assert_eq!(rewritten("https://API.internal:443/a#f", None), "/a#f");
        assert_eq!(rewritten("http://api.internal:80/", Some("/api")), "/api/");
        // A path that a browser reads as another host is not cut loose from the
        // server's address; under a prefix it stays a path here.
        for kept in [
            "http://10.0.0.5:9001//evil.example/x",
            "http://10.0.0.5:9001/\\evil.example/x",
            "http://10.0.0.5:9001/\t/evil.example/x",
        ] {
            assert_eq!(rewritten(kept, None), kept);
        }
        assert_eq!(
            rewritten("http://10.0.0.5:9001//evil.example/x", Some("/api")),
            "/api//evil.example/x"
        );
        // Other hosts, other ports, relative references and other schemes stay.
        for kept in [
            "http://10.0.0.5:9002/users",
            "https://example.com/10.0.0.5:9001/",
            "/users/1",
            "users/1",
            "ftp://10.0.0.5:9001/x",
            "http://api.internal.evil/x",
        ] {
            assert_eq!(rewritten(kept, Some("/api")), kept);
        }
    }

    #[test]
    fn connection_named_fields_go_too() {
        let mut map = headers(&[
            ("connection", "keep-alive, X-Secret"),
            ("connection", "x-other"),
            ("x-secret", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("x-kept", "3"),
        ]);
        remove_hop_by_hop(&mut map);
        let names: Vec<_> = map.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, vec!["x-kept"]);
    }

    #[test]
    fn upstream_head_replaces_forwarding_and_strips_the_prefix() {
        let mut map = headers(&[
            ("host", "shop.example"),
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("connection", "upgrade"),
            ("upgrade", "websocket"),
        ]);
        let info = ConnectionInfo {
            peer: Some("203.0.113.9:5000".parse().unwrap()),
            local: None,
            scheme: "https",
        };
        let rewrite = RequestRewrite {
            host: &HostPolicy::Client,
            forwarded: ForwardedStyle::XForwarded,
            strip_prefix: Some("/api"),
        };
        let uri: Uri = "/api/users?x=1".parse().unwrap();
        let target = upstream_head(&rewrite, &uri, &mut map, Some(&info), None, "10.0.0.1:80");
        assert_eq!(target.as_str(), "/users?x=1");
        assert_eq!(map["x-forwarded-for"], "203.0.113.9");
        assert_eq!(map["x-forwarded-proto"], "https");
        assert_eq!(map["x-forwarded-host"], "shop.example");
        assert_eq!(map["x-forwarded-prefix"], "/api");
        assert_eq!(map["host"], "shop.example");
        assert!(map.get("forwarded").is_none());
        assert!(map.get("upgrade").is_none(), "not an upgrade: dropped");
        let (path, _) = target_path("/api", Some("/api"));
        assert_eq!(path, "/");
        let (path, stripped) = target_path("/apis", Some("/api"));
        assert_eq!((path.as_ref(), stripped), ("/apis", None));
    }
}
