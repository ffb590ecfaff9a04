//! One representation of a file as a response: preconditions (RFC 9110 §13) and ranges
//! (§14), the same for files held in memory and files streamed from disk.
//!
//! - `If-Match` / `If-Unmodified-Since` that fail: 412.
//! - `If-None-Match` (weak comparison, `*`), else `If-Modified-Since` (second
//!   resolution): 304 with the validators, `Cache-Control` and `Vary` a 200 would carry.
//! - `Range` on GET: one `bytes=` range (`a-b`, `a-`, `-n`) gives 206 with
//!   `Content-Range`; a range that starts past the end (or `-0`, or any range of an empty
//!   file) gives 416 with `Content-Range: bytes */len`. **Single-range policy:** a request
//!   for several ranges gets the whole file with 200, as RFC 9110 §14.2 allows (no
//!   `multipart/byteranges`); so does a malformed `Range` or an `If-Range` that does
//!   not match (strong comparison for ETags, an exact date otherwise).
//! - HEAD gets the headers of the GET (Content-Length included) and no body.

use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::compression::Encoding;
use crate::{error_response, Body};

/// The headers of one representation (a file or one of its encoded variants).
pub(crate) struct Representation<'a> {
    /// Length in bytes.
    pub len: u64,
    /// `len` as a header value, made once.
    pub content_length: &'a HeaderValue,
    /// Strong ETag.
    pub etag: &'a HeaderValue,
    /// HTTP date of the modification time.
    pub last_modified: &'a HeaderValue,
    /// The modification time in seconds, for date comparisons.
    pub modified_secs: u64,
    /// Media type of the file (of the decoded content for encoded variants).
    pub content_type: &'a HeaderValue,
    /// Content coding of these bytes.
    pub encoding: Option<Encoding>,
}

/// What is sent besides the representation's own headers.
pub(crate) struct Extra<'a> {
    /// The layer's `Cache-Control`.
    pub cache_control: Option<&'a HeaderValue>,
    /// Whether the response depends on `Accept-Encoding`.
    pub vary: bool,
}

/// The response to a request's preconditions and range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 304.
    NotModified,
    /// 412.
    PreconditionFailed,
    /// 200 with the whole representation.
    Full,
    /// 206 with bytes `start..end`.
    Partial { start: u64, end: u64 },
    /// 416.
    Unsatisfiable,
}

/// Build the response for `method`/`headers` from `representation`; `body(start, end)`
/// supplies bytes `start..end` (only called for a GET with a non-empty body).
pub(crate) fn respond(
    method: &Method,
    headers: &HeaderMap,
    representation: &Representation<'_>,
    extra: &Extra<'_>,
    body: impl FnOnce(u64, u64) -> Body,
) -> Response<Body> {
    let answer = answer(
        method,
        headers,
        representation.etag,
        representation.modified_secs,
        representation.len,
    );
    let head = *method == Method::HEAD;
    let (status, body) = match answer {
        Answer::PreconditionFailed => return error_response(StatusCode::PRECONDITION_FAILED),
        Answer::Unsatisfiable => {
            let mut response = error_response(StatusCode::RANGE_NOT_SATISFIABLE);
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                header_value(format!("bytes */{}", representation.len)),
            );
            return response;
        }
        Answer::NotModified => (StatusCode::NOT_MODIFIED, Body::empty()),
        Answer::Full if head || representation.len == 0 => (StatusCode::OK, Body::empty()),
        Answer::Full => (StatusCode::OK, body(0, representation.len)),
        Answer::Partial { start, end } => (StatusCode::PARTIAL_CONTENT, body(start, end)),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let out = response.headers_mut();
    out.reserve(10);
    out.insert(header::ETAG, representation.etag.clone());
    out.insert(header::LAST_MODIFIED, representation.last_modified.clone());
    if let Some(cache_control) = extra.cache_control {
        out.insert(header::CACHE_CONTROL, cache_control.clone());
    }
    if extra.vary {
        out.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
    if status == StatusCode::NOT_MODIFIED {
        return response;
    }
    out.insert(header::CONTENT_TYPE, representation.content_type.clone());
    out.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some(encoding) = representation.encoding {
        out.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(encoding.token()),
        );
    }
    match answer {
        Answer::Partial { start, end } => {
            out.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
            out.insert(
                header::CONTENT_RANGE,
                header_value(format!("bytes {start}-{}/{}", end - 1, representation.len)),
            );
        }
        _ => {
            out.insert(
                header::CONTENT_LENGTH,
                representation.content_length.clone(),
            );
        }
    }
    response
}

fn header_value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("digits, spaces and punctuation")
}

/// Evaluate preconditions, then the range, in the order of RFC 9110 §13.2.2.
pub(crate) fn answer(
    method: &Method,
    headers: &HeaderMap,
    etag: &HeaderValue,
    modified_secs: u64,
    len: u64,
) -> Answer {
    if let Some(if_match) = headers.get(header::IF_MATCH) {
        if !any_etag(if_match, |tag| strong_eq(tag, etag.as_bytes())) {
            return Answer::PreconditionFailed;
        }
    } else if let Some(since) = date(headers.get(header::IF_UNMODIFIED_SINCE)) {
        if modified_secs > since {
            return Answer::PreconditionFailed;
        }
    }
    if let Some(if_none_match) = headers.get(header::IF_NONE_MATCH) {
        if any_etag(if_none_match, |tag| weak_eq(tag, etag.as_bytes())) {
            return Answer::NotModified;
        }
    } else if let Some(since) = date(headers.get(header::IF_MODIFIED_SINCE)) {
        if modified_secs <= since {
            return Answer::NotModified;
        }
    }
    if *method != Method::GET {
        return Answer::Full;
    }
    let Some(range) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Answer::Full;
    };
    if let Some(if_range) = headers.get(header::IF_RANGE) {
        let bytes = if_range.as_bytes();
        let current = if bytes.starts_with(b"\"") || bytes.starts_with(b"W/") {
            strong_eq(bytes, etag.as_bytes())
        } else {
            date(Some(if_range)) == Some(modified_secs)
        };
        if !current {
            return Answer::Full;
        }
    }
    parse_range(range, len)
}

/// One `bytes=` range of a representation of `len` bytes (see the module docs).
pub(crate) fn parse_range(value: &str, len: u64) -> Answer {
    let Some((unit, specs)) = value.split_once('=') else {
        return Answer::Full;
    };
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Answer::Full;
    }
    let mut specs = specs.split(',').map(str::trim).filter(|s| !s.is_empty());
    let (Some(spec), None) = (specs.next(), specs.next()) else {
        return Answer::Full;
    };
    let Some((first, last)) = spec.split_once('-') else {
        return Answer::Full;
    };
    let number = |text: &str| -> Option<u64> {
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
            .then(|| text.parse().ok())
            .flatten()
    };
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        // `-n`: the last n bytes.
        return match number(last) {
            None => Answer::Full,
            Some(0) => Answer::Unsatisfiable,
            Some(_) if len == 0 => Answer::Unsatisfiable,
            Some(suffix) => Answer::Partial {
                start: len - suffix.min(len),
                end: len,
            },
        };
    }
    // `a-` or `a-b`.
    let Some(start) = number(first) else {
        return Answer::Full;
    };
    let end = if last.is_empty() {
        len
    } else {
        match number(last) {
            Some(last) if last >= start => last.saturating_add(1).min(len),
            _ => return Answer::Full,
        }
    };
    if start >= len {
        return Answer::Unsatisfiable;
    }
    Answer::Partial { start, end }
}

fn date(value: Option<&HeaderValue>) -> Option<u64> {
    let time = httpdate::parse_http_date(value?.to_str().ok()?).ok()?;
    time.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// Strong comparison (RFC 9110 §8.8.3.2): neither weak, same opaque tag.
fn strong_eq(tag: &[u8], ours: &[u8]) -> bool {
    !tag.starts_with(b"W/") && tag == ours
}

/// Weak comparison: the opaque tags are equal, `W/` or not.
fn weak_eq(tag: &[u8], ours: &[u8]) -> bool {
    let bare = |t: &[u8]| -> Vec<u8> { t.strip_prefix(b"W/").unwrap_or(t).to_vec() };
    bare(tag) == bare(ours)
}

/// Whether `*` or any entity tag of a list (commas inside quotes are part of a tag)
/// passes `matches`.
fn any_etag(value: &HeaderValue, mut matches: impl FnMut(&[u8]) -> bool) -> bool {
    let bytes = value.as_bytes();
    if bytes.trim_ascii() == b"*" {
        return true;
    }
    let mut start = 0;
    let mut quoted = false;
    // A comma after the end closes the last tag.
    for at in 0..=bytes.len() {
        match bytes.get(at).copied().unwrap_or(b',') {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                let tag = bytes[start..at].trim_ascii();
                if !tag.is_empty() && matches(tag) {
                    return true;
                }
                start = at + 1;
            }
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        headers
    }

    const TAG: &str = "\"a-1\"";
    const MODIFIED: u64 = 1_700_000_000;

    fn answer_to(pairs: &[(&str, &str)]) -> Answer {
        answer(
            &Method::GET,
            &get(pairs),
            &HeaderValue::from_static(TAG),
            MODIFIED,
            100,
        )
    }

    fn http_date(secs: u64) -> String {
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
    }

    #[test]
    fn ranges_single_suffix_open_and_unsatisfiable() {
        assert_eq!(
            parse_range("bytes=0-9", 100),
            Answer::Partial { start: 0, end: 10 }
        );
        assert_eq!(
            parse_range("bytes=90-", 100),
            Answer::Partial {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            parse_range("bytes=90-500", 100),
            Answer::Partial {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            parse_range("bytes=-10", 100),
            Answer::Partial {
                start: 90,
                end: 100
            }
        );
        assert_eq!(
            parse_range("bytes=-500", 100),
            Answer::Partial { start: 0, end: 100 }
        );
        assert_eq!(
            parse_range("Bytes = 5-5", 100),
            Answer::Partial { start: 5, end: 6 }
        );
        assert_eq!(parse_range("bytes=100-", 100), Answer::Unsatisfiable);
        assert_eq!(parse_range("bytes=-0", 100), Answer::Unsatisfiable);
        assert_eq!(parse_range("bytes=0-", 0), Answer::Unsatisfiable);
        assert_eq!(parse_range("bytes=-5", 0), Answer::Unsatisfiable);
        // Ignored: several ranges, bad syntax, other units.
        for ignored in [
            "bytes=0-1,5-6",
            "bytes=5-1",
            "bytes=a-b",
            "bytes=-",
            "bytes=1",
            "items=0-1",
            "bytes=+1-2",
            "0-1",
        ] {
            assert_eq!(parse_range(ignored, 100), Answer::Full, "{ignored}");
        }
    }

    #[test]
    fn preconditions_in_rfc_order() {
        assert_eq!(answer_to(&[("if-none-match", TAG)]), Answer::NotModified);
        assert_eq!(
            answer_to(&[("if-none-match", "W/\"a-1\"")]),
            Answer::NotModified
        );
        assert_eq!(
            answer_to(&[("if-none-match", "\"x\", \"a-1\"")]),
            Answer::NotModified
        );
        assert_eq!(answer_to(&[("if-none-match", "*")]), Answer::NotModified);
        assert_eq!(answer_to(&[("if-none-match", "\"x,a-1\"")]), Answer::Full);
        let same = http_date(MODIFIED);
        let before = http_date(MODIFIED - 1);
        assert_eq!(
            answer_to(&[("if-modified-since", &same)]),
            Answer::NotModified
        );
        assert_eq!(answer_to(&[("if-modified-since", &before)]), Answer::Full);
        // If-None-Match wins over If-Modified-Since.
        assert_eq!(
            answer_to(&[("if-none-match", "\"x\""), ("if-modified-since", &same)]),
            Answer::Full
        );
        assert_eq!(
            answer_to(&[("if-match", "\"x\"")]),
            Answer::PreconditionFailed
        );
        assert_eq!(
            answer_to(&[("if-match", "W/\"a-1\"")]),
            Answer::PreconditionFailed
        );
        assert_eq!(answer_to(&[("if-match", TAG)]), Answer::Full);
        assert_eq!(
            answer_to(&[("if-unmodified-since", &before)]),
            Answer::PreconditionFailed
        );
        assert_eq!(answer_to(&[("if-modified-since", "garbage")]), Answer::Full);
    }

    #[test]
    fn if_range_gates_the_range() {
        let range = ("range", "bytes=0-0");
        let partial = Answer::Partial { start: 0, end: 1 };
        assert_eq!(answer_to(&[range, ("if-range", TAG)]), partial);
        assert_eq!(answer_to(&[range, ("if-range", "W/\"a-1\"")]), Answer::Full);
        assert_eq!(answer_to(&[range, ("if-range", "\"old\"")]), Answer::Full);
        assert_eq!(
            answer_to(&[range, ("if-range", &http_date(MODIFIED))]),
            partial
        );
        assert_eq!(
            answer_to(&[range, ("if-range", &http_date(MODIFIED - 5))]),
            Answer::Full
        );
        let head = answer(
            &Method::HEAD,
            &get(&[range]),
            &HeaderValue::from_static(TAG),
            MODIFIED,
            100,
        );
        assert_eq!(head, Answer::Full, "HEAD ignores Range");
    }
}
