//! One canonical request path, so that every decision taken on a path (auth `paths`,
//! static `mount`, header rules, routes) sees exactly the path the application sees.
//!
//! A WSGI application receives `PATH_INFO` percent-decoded. If a native layer matched
//! prefixes on the raw target instead, `GET /%61dmin` would pass an auth layer that
//! protects `/admin` and reach the app as `/admin`. [`CanonicalPathLayer`] therefore
//! rewrites the request target, before any other layer, into the one spelling of the
//! decoded path:
//!
//! - every escape of a byte that may stand in a path as it is (RFC 3986 `pchar`) is
//!   decoded (`%61` -> `a`), every other byte is escaped in upper case (`%c3` -> `%C3`,
//!   a raw `"` -> `%22`), so two targets that decode alike are spelled alike;
//! - empty segments are merged (`//a///b` -> `/a/b`, as nginx's `merge_slashes`);
//! - refused with 400: dot segments (`/./`, `/../`, also encoded as `%2e`), an encoded
//!   slash (`%2F`, unless allowed: then it stays `%2F` in the canonical target and
//!   `PATH_INFO` holds `/`), an encoded NUL, an invalid escape (`%zz`), and overlong
//!   UTF-8 (`%C0%AF`, a disguised `/`).
//!
//! The query string is left as it was, and the target as the client sent it stays in the
//! extensions as [`OriginalTarget`] (the WSGI `RAW_URI` and `REQUEST_URI`).
//!
//! Prefixes are compared with [`path_under`], which also counts a `;` (path parameters,
//! which some upstream servers strip) as a segment boundary, so `/admin;x=1/secret` is
//! under `/admin`.

use std::borrow::Cow;
use std::task::{Context, Poll};

use futures_util::future::{Either, Ready};
use http::uri::{PathAndQuery, Uri};
use http::{Request, Response, StatusCode};
use tower::{Layer, Service};

use crate::{error_response, Body};

/// Why a request path is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// A `.` or `..` segment, written plainly or percent-encoded.
    #[error("dot segment in the path")]
    DotSegment,
    /// `%2F` while encoded slashes are not allowed.
    #[error("encoded slash (%2F) in the path")]
    EncodedSlash,
    /// `%00`.
    #[error("encoded NUL in the path")]
    Nul,
    /// A `%` not followed by two hex digits.
    #[error("invalid percent-escape in the path")]
    BadEscape,
    /// An overlong UTF-8 sequence (a disguised ASCII character such as `/` or `.`).
    #[error("overlong UTF-8 sequence in the path")]
    OverlongUtf8,
}

/// How paths are canonicalized.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PathRules {
    /// Keep `%2F` (as `%2F`) instead of refusing it. The application then sees `/` in
    /// `PATH_INFO` where native layers saw one segment.
    pub allow_encoded_slashes: bool,
}

/// True for bytes that may stand unescaped in a path segment (RFC 3986 `pchar` minus
/// `%`): unreserved, sub-delims, `:` and `@`.
fn is_pchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'*'
                | b'+'
                | b','
                | b';'
                | b'='
                | b':'
                | b'@'
        )
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

/// One byte of a path: decoded, and whether it was written as an escape.
#[derive(Clone, Copy)]
struct PathByte {
    value: u8,
    escaped: bool,
}

fn decode(raw: &[u8]) -> Result<Vec<PathByte>, PathError> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut index = 0;
    while index < raw.len() {
        let byte = raw[index];
        if byte == b'%' {
            let high = raw.get(index + 1).copied().and_then(hex);
            let low = raw.get(index + 2).copied().and_then(hex);
            let (Some(high), Some(low)) = (high, low) else {
                return Err(PathError::BadEscape);
            };
            bytes.push(PathByte {
                value: high << 4 | low,
                escaped: true,
            });
            index += 3;
        } else {
            bytes.push(PathByte {
                value: byte,
                escaped: false,
            });
            index += 1;
        }
    }
    Ok(bytes)
}

/// Overlong forms: C0/C1 leads (two-byte ASCII), E0 80..9F, F0 80..8F.
fn check_overlong(bytes: &[PathByte]) -> Result<(), PathError> {
    for (index, byte) in bytes.iter().enumerate() {
        let next = bytes.get(index + 1).map(|b| b.value);
        let overlong = match byte.value {
            0xC0 | 0xC1 => true,
            0xE0 => next.is_some_and(|n| (0x80..0xA0).contains(&n)),
            0xF0 => next.is_some_and(|n| (0x80..0x90).contains(&n)),
            _ => false,
        };
        if overlong {
            return Err(PathError::OverlongUtf8);
        }
    }
    Ok(())
}

/// Whether `raw` is already canonical, checked without allocating (the common case).
fn is_canonical(raw: &[u8]) -> bool {
    if raw.first() != Some(&b'/') {
        return false;
    }
    let mut previous = b'/';
    let mut segment_start = 0;
    for (index, &byte) in raw.iter().enumerate() {
        if byte == b'/' {
            if previous == b'/' && index > 0 {
                return false;
            }
            if is_dot_segment(&raw[segment_start..index]) {
                return false;
            }
            segment_start = index + 1;
        } else if !is_pchar(byte) {
            return false;
        }
        previous = byte;
    }
    !is_dot_segment(&raw[segment_start..])
}

fn is_dot_segment(segment: &[u8]) -> bool {
    segment == b"." || segment == b".."
}

/// The canonical spelling of a request path (see the module docs), borrowed when the
/// path already is canonical. A path that does not start with `/` (the `*` of
/// `OPTIONS *`) is returned as it is.
pub fn canonicalize(raw: &str, rules: PathRules) -> Result<Cow<'_, str>, PathError> {
    if !raw.starts_with('/') || is_canonical(raw.as_bytes()) {
        return Ok(Cow::Borrowed(raw));
    }
    let bytes = decode(raw.as_bytes())?;
    check_overlong(&bytes)?;
    let mut out = String::with_capacity(raw.len());
    // Segments are split at every slash, encoded or not, for the dot-segment check:
    // with encoded slashes allowed, `%2F..%2F` would still reach the app as `/../`.
    let mut segment: Vec<u8> = Vec::new();
    let finish_segment = |segment: &mut Vec<u8>| -> Result<(), PathError> {
        if is_dot_segment(segment) {
            return Err(PathError::DotSegment);
        }
        segment.clear();
        Ok(())
    };
    for byte in &bytes {
        match (byte.value, byte.escaped) {
            (0, _) if byte.escaped => return Err(PathError::Nul),
            (b'/', false) => {
                finish_segment(&mut segment)?;
                if !out.ends_with('/') {
                    out.push('/');
                }
            }
            (b'/', true) => {
                if !rules.allow_encoded_slashes {
                    return Err(PathError::EncodedSlash);
                }
                finish_segment(&mut segment)?;
                out.push_str("%2F");
            }
            (value, _) => {
                segment.push(value);
                if is_pchar(value) {
                    out.push(value as char);
                } else {
                    push_escaped(&mut out, value);
                }
            }
        }
    }
    finish_segment(&mut segment)?;
    Ok(Cow::Owned(out))
}

fn push_escaped(out: &mut String, byte: u8) {
    const DIGITS: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(DIGITS[usize::from(byte >> 4)] as char);
    out.push(DIGITS[usize::from(byte & 15)] as char);
}

/// The canonical target for an already decoded path (the bytes of a WSGI `PATH_INFO`,
/// for instance): `/` stays a separator, every byte that is not a `pchar` is escaped.
pub fn encode_decoded(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len() + 1);
    if path.first() != Some(&b'/') {
        out.push('/');
    }
    for &byte in path {
        if byte == b'/' || is_pchar(byte) {
            out.push(byte as char);
        } else {
            push_escaped(&mut out, byte);
        }
    }
    out
}

/// The rest of `path` below `prefix`, if `path` is `prefix` itself or lies below it at a
/// segment boundary: `/`, a `;` starting path parameters, or an allowed encoded slash
/// (`%2F`, which the application sees as `/`). A prefix ending in `/` matches like a
/// directory. Both sides are canonical paths.
pub fn path_under<'a>(path: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = path.strip_prefix(prefix)?;
    let boundary = rest.is_empty()
        || prefix.ends_with('/')
        || rest.starts_with('/')
        || rest.starts_with(';')
        || rest.starts_with("%2F");
    boundary.then_some(rest)
}

/// A configured path prefix in canonical spelling, so that it compares with canonical
/// request paths (`"/caf\u{e9}"` becomes `/caf%C3%A9`; a `%61` in it becomes `a`).
pub fn canonical_prefix(prefix: &str) -> Result<String, PathError> {
    if prefix.contains('%') {
        return canonicalize(prefix, PathRules::default()).map(Cow::into_owned);
    }
    Ok(encode_decoded(prefix.as_bytes()))
}

/// The request target as the client sent it, kept in the request's extensions when
/// [`CanonicalPath`] rewrote it.
#[derive(Clone, Debug)]
pub struct OriginalTarget(pub PathAndQuery);

/// Adds [`CanonicalPath`] to a service.
#[derive(Clone, Copy, Debug, Default)]
pub struct CanonicalPathLayer {
    rules: PathRules,
}

impl CanonicalPathLayer {
    /// Canonicalize paths under `rules`.
    pub fn new(rules: PathRules) -> Self {
        Self { rules }
    }
}

impl<S> Layer<S> for CanonicalPathLayer {
    type Service = CanonicalPath<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CanonicalPath {
            inner,
            rules: self.rules,
        }
    }
}

/// Rewrites each request's path to its canonical spelling, or answers 400.
#[derive(Clone, Debug)]
pub struct CanonicalPath<S> {
    inner: S,
    rules: PathRules,
}

/// Rewrite `request`'s target to the canonical path, keeping the original.
pub fn canonicalize_request<B>(
    request: &mut Request<B>,
    rules: PathRules,
) -> Result<(), PathError> {
    let canonical = match canonicalize(request.uri().path(), rules)? {
        Cow::Borrowed(_) => return Ok(()),
        Cow::Owned(path) => path,
    };
    let original = request.uri().path_and_query().cloned();
    let target = match request.uri().query() {
        Some(query) => format!("{canonical}?{query}"),
        None => canonical,
    };
    let mut parts = request.uri().clone().into_parts();
    // The canonical path holds only pchars, `/` and escapes: it always parses.
    parts.path_and_query = Some(PathAndQuery::try_from(target).map_err(|_| PathError::BadEscape)?);
    *request.uri_mut() = Uri::from_parts(parts).map_err(|_| PathError::BadEscape)?;
    if let Some(original) = original {
        request.extensions_mut().insert(OriginalTarget(original));
    }
    Ok(())
}

impl<S> Service<Request<Body>> for CanonicalPath<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = Either<S::Future, Ready<Result<Response<Body>, S::Error>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        match canonicalize_request(&mut request, self.rules) {
            Ok(()) => Either::Left(self.inner.call(request)),
            Err(error) => {
                tracing::info!(
                    target = %request.uri(),
                    "refused: {error} (400)"
                );
                Either::Right(futures_util::future::ready(Ok(error_response(
                    StatusCode::BAD_REQUEST,
                ))))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(raw: &str) -> Result<String, PathError> {
        canonicalize(raw, PathRules::default()).map(Cow::into_owned)
    }

    #[test]
    fn canonical_paths_are_borrowed() {
        for path in [
            "/",
            "/admin",
            "/a/b/",
            "/a;b=c/d",
            "/~user/x.tar.gz",
            "/a:b@c",
        ] {
            assert!(
                matches!(
                    canonicalize(path, PathRules::default()),
                    Ok(Cow::Borrowed(_))
                ),
                "{path}"
            );
        }
    }

    #[test]
    fn escapes_of_plain_bytes_are_decoded_and_others_upper_cased() {
        assert_eq!(canon("/%61dmin").unwrap(), "/admin");
        assert_eq!(canon("/%41%44MIN").unwrap(), "/ADMIN");
        assert_eq!(canon("/caf%c3%a9").unwrap(), "/caf%C3%A9");
        assert_eq!(canon("/a%20b").unwrap(), "/a%20b");
        assert_eq!(canon("/a\"b").unwrap(), "/a%22b");
        assert_eq!(canon("/100%25").unwrap(), "/100%25");
        assert_eq!(canon("/a%3Bb").unwrap(), "/a;b");
    }

    #[test]
    fn empty_segments_merge() {
        assert_eq!(canon("//admin").unwrap(), "/admin");
        assert_eq!(canon("/a///b//").unwrap(), "/a/b/");
    }

    #[test]
    fn tricks_are_refused() {
        for (path, error) in [
            ("/admin%2Fx", PathError::EncodedSlash),
            ("/admin%2fx", PathError::EncodedSlash),
            ("/a/../admin", PathError::DotSegment),
            ("/a/./admin", PathError::DotSegment),
            ("/a/%2e%2e/admin", PathError::DotSegment),
            ("/a/.%2E/admin", PathError::DotSegment),
            ("/a/..", PathError::DotSegment),
            ("/.", PathError::DotSegment),
            ("/%00", PathError::Nul),
            ("/%zz", PathError::BadEscape),
            ("/%4", PathError::BadEscape),
            ("/%C0%AFadmin", PathError::OverlongUtf8),
            ("/%c0%ae%c0%ae/admin", PathError::OverlongUtf8),
            ("/%E0%80%AF", PathError::OverlongUtf8),
            ("/%F0%80%80%AF", PathError::OverlongUtf8),
        ] {
            assert_eq!(canon(path), Err(error), "{path}");
        }
        // Dots that are not whole segments are names.
        assert_eq!(canon("/a/.well-known/..x").unwrap(), "/a/.well-known/..x");
        assert_eq!(canon("/caf%C3%A9").unwrap(), "/caf%C3%A9");
    }

    #[test]
    fn encoded_slashes_when_allowed() {
        let allow = PathRules {
            allow_encoded_slashes: true,
        };
        assert_eq!(canonicalize("/a%2fb", allow).unwrap(), "/a%2Fb");
        assert_eq!(
            canonicalize("/a%2F..%2Fb", allow),
            Err(PathError::DotSegment)
        );
    }

    #[test]
    fn prefixes_match_at_segment_boundaries() {
        assert_eq!(path_under("/admin", "/admin"), Some(""));
        assert_eq!(path_under("/admin/x", "/admin"), Some("/x"));
        assert_eq!(
            path_under("/admin;jsessionid=1/x", "/admin"),
            Some(";jsessionid=1/x")
        );
        assert_eq!(path_under("/admin%2Fx", "/admin"), Some("%2Fx"));
        assert_eq!(path_under("/adminx", "/admin"), None);
        assert_eq!(path_under("/admin%20x", "/admin"), None);
        assert_eq!(path_under("/static/a", "/static/"), Some("a"));
        assert_eq!(path_under("/x", "/"), Some("x"));
        assert_eq!(canonical_prefix("/caf\u{e9}").unwrap(), "/caf%C3%A9");
        assert_eq!(canonical_prefix("/%61dmin").unwrap(), "/admin");
    }

    #[test]
    fn requests_are_rewritten_and_keep_the_original_target() {
        let mut request = Request::get("/%61dmin//x?q=%2F").body(()).unwrap();
        canonicalize_request(&mut request, PathRules::default()).unwrap();
        assert_eq!(request.uri(), "/admin/x?q=%2F");
        let original = request.extensions().get::<OriginalTarget>().unwrap();
        assert_eq!(original.0.as_str(), "/%61dmin//x?q=%2F");

        let mut absolute = Request::get("http://example.org//a?b").body(()).unwrap();
        canonicalize_request(&mut absolute, PathRules::default()).unwrap();
        assert_eq!(absolute.uri(), "http://example.org/a?b");
    }
}
