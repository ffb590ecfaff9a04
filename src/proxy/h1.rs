//! The HTTP/1.1 client for requests without a body (GET, HEAD, most of what a proxy
//! sees): the request head written in one write, the response head parsed with
//! httparse straight from the connection's read buffer, the body framed here.
//!
//! hyper's client sends each request through a channel to a dispatcher and back through
//! a oneshot; for a bodiless request that machinery cost more than the parsing itself
//! (bench/RESULTS.md, "Reverse proxy"). Requests with a body, upgrades and HTTP/2 still
//! go through hyper.
//!
//! It is strict where a lenient client lets a broken upstream desynchronise a pooled
//! connection (RFC 9112 section 6.3): a response with both `Content-Length` and
//! `Transfer-Encoding`, a `Transfer-Encoding` other than `chunked`, differing
//! `Content-Length`s, a malformed chunk, or a head over [`MAX_HEAD`] is refused (502,
//! or the body is cut) and its connection closed. A connection is pooled again only
//! after a response that was framed exactly, over HTTP/1.1, without `Connection:
//! close`, not to a HEAD (a server that wrongly sends a body to a HEAD, and sends it a
//! moment later, would otherwise answer the next request with it).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWriteExt, ReadBuf};

use super::body::{BodyError, Stall};
use super::pool::RawConn;
use super::Server;

/// The largest response head accepted (nginx's `proxy_buffer_size` is 4-8 KiB; hyper's
/// limit is larger). Past it: 502.
pub(crate) const MAX_HEAD: usize = 64 << 10;
/// The most header fields in a response head.
const MAX_FIELDS: usize = 100;
/// The longest chunk-size line, and the most bytes of trailer section.
const MAX_CHUNK_LINE: usize = 4 << 10;
const MAX_TRAILERS: usize = 16 << 10;
/// How much room a read of a response head, and of a body, asks for: a head is
/// small, a body may be large (fewer, larger reads).
const HEAD_READ: usize = 8 << 10;
const BODY_READ: usize = 64 << 10;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ExchangeError {
    /// Writing the request failed: on a pooled connection, the server had closed it.
    #[error("writing the request: {0}")]
    Write(io::Error),
    /// The connection ended (closed or reset) before any response byte.
    #[error("connection closed before the response head{}", .0.as_ref().map(|e| format!(": {e}")).unwrap_or_default())]
    Closed(Option<io::Error>),
    /// The connection ended in the middle of the response head.
    #[error("connection closed in the middle of the response head")]
    Truncated,
    /// The response head is not HTTP/1.1 as RFC 9112 has it.
    #[error("{0}")]
    Malformed(String),
}

impl ExchangeError {
    /// Nothing reached the server (so any method may be sent again).
    pub(crate) fn unsent(&self) -> bool {
        matches!(self, ExchangeError::Write(_))
    }

    /// The server sent nothing back (it may or may not have acted on the request).
    pub(crate) fn before_response(&self) -> bool {
        matches!(self, ExchangeError::Closed(_))
    }

    /// The response itself was wrong (not the connection).
    pub(crate) fn is_malformed(&self) -> bool {
        matches!(self, ExchangeError::Malformed(_))
    }
}

fn malformed(what: impl Into<String>) -> ExchangeError {
    ExchangeError::Malformed(what.into())
}

/// How the response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// This many bytes left.
    Length(u64),
    /// Chunked, at this point of its grammar.
    Chunked(Chunk),
    /// Until the server closes the connection (no length given).
    UntilClose,
    /// Finished.
    Done,
}

/// Where a chunked body is (RFC 9112 section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// Expecting a chunk-size line.
    Size,
    /// In chunk data, this many bytes left.
    Data(u64),
    /// Expecting the CRLF after chunk data.
    DataEnd,
    /// In the trailer section, this many bytes of it read so far.
    Trailers(usize),
}

/// Send a request without a body (`method`, `target`, `headers`) on `conn`, then
/// read the response head. The response's body reads from the connection; the
/// connection goes back to `server`'s pool when the body has ended cleanly.
pub(crate) async fn exchange(
    mut conn: Box<RawConn>,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
    server: &Arc<Server>,
    read_timeout: Duration,
) -> Result<http::Response<ResponseBody>, ExchangeError> {
    let head_request = method == Method::HEAD;
    write_head(&mut conn, method, target, headers).await?;
    conn.buf.clear();
    loop {
        let read = read_some(&mut conn).await;
        match read {
            Ok(0) if conn.buf.is_empty() => return Err(ExchangeError::Closed(None)),
            Ok(0) => return Err(ExchangeError::Truncated),
            Ok(_) => {}
            Err(error) if conn.buf.is_empty() => return Err(ExchangeError::Closed(Some(error))),
            Err(_) => return Err(ExchangeError::Truncated),
        }
        while let Some(parsed) = parse_head(&mut conn.buf)? {
            // 1xx (but 101, never asked for here) are interim: the final one follows.
            if parsed.status.is_informational() {
                if parsed.status == StatusCode::SWITCHING_PROTOCOLS {
                    return Err(malformed("101 to a request that asked for no upgrade"));
                }
                continue;
            }
            let framing = framing(parsed.status, &parsed.headers, head_request)?;
            let reusable = parsed.version == Version::HTTP_11
                && !closes(&parsed.headers)
                && !head_request
                && framing != Framing::UntilClose;
            let mut response = http::Response::new(ResponseBody {
                conn: Some(conn),
                framing,
                reusable,
                server: server.clone(),
                stall: Stall::new(read_timeout),
                guard: None,
            });
            *response.status_mut() = parsed.status;
            *response.headers_mut() = parsed.headers;
            let body = response.body_mut();
            if body.framing == Framing::Done {
                body.finish();
            }
            return Ok(response);
        }
        if conn.buf.len() > MAX_HEAD {
            return Err(malformed(format!(
                "response head over {} KiB",
                MAX_HEAD >> 10
            )));
        }
    }
}

/// The request head, in one write.
async fn write_head(
    conn: &mut RawConn,
    method: &Method,
    target: &str,
    headers: &HeaderMap,
) -> Result<(), ExchangeError> {
    let out = &mut conn.out;
    out.clear();
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    // A method that usually has a body says it has none (RFC 9112 section 6.3).
    if matches!(*method, Method::POST | Method::PUT | Method::PATCH)
        && !headers.contains_key(header::CONTENT_LENGTH)
    {
        out.extend_from_slice(b"content-length: 0\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let RawConn { stream, out, .. } = conn;
    stream.write_all(out).await.map_err(ExchangeError::Write)
}

/// Read more into the connection's buffer: the byte count (0 at end of stream).
async fn read_some(conn: &mut RawConn) -> io::Result<usize> {
    std::future::poll_fn(|cx| poll_read_some(conn, HEAD_READ, cx)).await
}

/// Read into the connection's buffer, with room for about `room` bytes.
fn poll_read_some(
    conn: &mut RawConn,
    room: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let buf = &mut conn.buf;
    if buf.capacity() - buf.len() < room / 2 {
        buf.reserve(room);
    }
    let spare = buf.spare_capacity_mut();
    let mut read = ReadBuf::uninit(spare);
    ready!(Pin::new(&mut conn.stream).poll_read(cx, &mut read))?;
    let n = read.filled().len();
    // SAFETY: `poll_read` initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Poll::Ready(Ok(n))
}

/// A parsed response head.
struct ParsedHead {
    status: StatusCode,
    version: Version,
    headers: HeaderMap,
}

/// Take one complete response head off the front of `buf`, if there is one.
fn parse_head(buf: &mut BytesMut) -> Result<Option<ParsedHead>, ExchangeError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut response = httparse::Response::new(&mut slots);
    let length = match response.parse(buf) {
        Ok(httparse::Status::Complete(length)) if length > MAX_HEAD => {
            return Err(malformed(format!(
                "response head over {} KiB",
                MAX_HEAD >> 10
            )))
        }
        Ok(httparse::Status::Complete(length)) => length,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(error) => return Err(malformed(error.to_string())),
    };
    let status = response
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| malformed("invalid status code"))?;
    let version = match response.version {
        Some(1) => Version::HTTP_11,
        _ => Version::HTTP_10,
    };
    // Where each name and value is within the head, so the values can share its bytes.
    let base = buf.as_ptr() as usize;
    let mut spans = [(0u32, 0u32, 0u32, 0u32); MAX_FIELDS];
    let count = response.headers.len();
    for (span, field) in spans.iter_mut().zip(response.headers.iter()) {
        let name = field.name.as_ptr() as usize - base;
        let value = field.value.as_ptr() as usize - base;
        *span = (
            name as u32,
            (name + field.name.len()) as u32,
            value as u32,
            (value + field.value.len()) as u32,
        );
    }
    let head = buf.split_to(length).freeze();
    let mut headers = HeaderMap::with_capacity(count);
    for &(name_start, name_end, start, end) in &spans[..count] {
        let name = HeaderName::from_bytes(&head[name_start as usize..name_end as usize])
            .map_err(|_| malformed("invalid header name"))?;
        let value = HeaderValue::from_maybe_shared(head.slice(start as usize..end as usize))
            .map_err(|_| malformed("invalid header value"))?;
        headers.append(name, value);
    }
    Ok(Some(ParsedHead {
        status,
        version,
        headers,
    }))
}

/// The response says the connection closes after it.
fn closes(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("close"))
}

/// Refuse a response whose framing a lenient reader and a strict one could read
/// differently (for responses read by hyper's client).
pub(crate) fn check_framing(
    status: StatusCode,
    headers: &HeaderMap,
    head_request: bool,
) -> Result<(), ExchangeError> {
    framing(status, headers, head_request).map(|_| ())
}

/// How the body of a response is delimited (RFC 9112 section 6.3), refusing what a
/// lenient reader and a strict one could read differently.
fn framing(
    status: StatusCode,
    headers: &HeaderMap,
    head_request: bool,
) -> Result<Framing, ExchangeError> {
    let status = status.as_u16();
    let no_body = head_request || status == 204 || status == 304;
    let encodings = headers.get_all(header::TRANSFER_ENCODING);
    let lengths = headers.get_all(header::CONTENT_LENGTH);
    if let Some(first) = encodings.iter().next() {
        if lengths.iter().next().is_some() {
            return Err(malformed("both Content-Length and Transfer-Encoding"));
        }
        let chunked_only = encodings.iter().nth(1).is_none()
            && first
                .to_str()
                .is_ok_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        if !chunked_only {
            return Err(malformed(format!(
                "unsupported Transfer-Encoding {:?}",
                encodings
                    .iter()
                    .map(|v| String::from_utf8_lossy(v.as_bytes()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        return Ok(if no_body {
            Framing::Done
        } else {
            Framing::Chunked(Chunk::Size)
        });
    }
    let mut length: Option<u64> = None;
    for value in lengths {
        for item in value.as_bytes().split(|&b| b == b',') {
            let item = std::str::from_utf8(item)
                .unwrap_or("")
                .trim_matches([' ', '\t']);
            let parsed = (!item.is_empty() && item.bytes().all(|b| b.is_ascii_digit()))
                .then(|| item.parse::<u64>().ok())
                .flatten()
                .ok_or_else(|| malformed(format!("invalid Content-Length {item:?}")))?;
            if length.is_some_and(|known| known != parsed) {
                return Err(malformed("differing Content-Length values"));
            }
            length = Some(parsed);
        }
    }
    Ok(match length {
        _ if no_body => Framing::Done,
        Some(0) => Framing::Done,
        Some(length) => Framing::Length(length),
        None => Framing::UntilClose,
    })
}

/// The body of a response read by [`exchange`]: bytes are read from the connection
/// only when the client is ready for them (backpressure), cut when the upstream pauses
/// past `read_timeout`, and the connection is pooled once the body has ended cleanly.
pub(crate) struct ResponseBody {
    conn: Option<Box<RawConn>>,
    framing: Framing,
    /// The connection may be pooled when the body ends.
    reusable: bool,
    server: Arc<Server>,
    stall: Stall,
    /// Held until the body is done: the in-flight count and the attempt's span.
    guard: Option<Box<dyn Send + Sync>>,
}

impl ResponseBody {
    /// Hold `guard` until the body is done.
    pub(crate) fn hold(&mut self, guard: Box<dyn Send + Sync>) {
        self.guard = Some(guard);
    }

    /// The body has ended cleanly: pool the connection if it may be.
    fn finish(&mut self) {
        self.framing = Framing::Done;
        if let Some(conn) = self.conn.take() {
            if self.reusable && conn.buf.is_empty() {
                self.server.pool.checkin(conn);
            }
        }
        self.guard = None;
    }

    fn fail(&mut self, what: String) -> BodyError {
        self.conn = None;
        self.framing = Framing::Done;
        let error = BodyError::Framing {
            server: self.server.label.clone(),
            what,
        };
        tracing::warn!(upstream = %self.server.upstream, "{error}");
        error
    }

    /// The next data from the buffer, or what to do.
    fn next(&mut self) -> Step {
        let Some(conn) = self.conn.as_mut() else {
            return Step::End;
        };
        let buf = &mut conn.buf;
        match self.framing {
            Framing::Done => Step::End,
            Framing::Length(left) => {
                if buf.is_empty() {
                    return Step::Read;
                }
                let take = left.min(buf.len() as u64);
                let data = buf.split_to(take as usize).freeze();
                self.framing = match left - take {
                    0 => Framing::Done,
                    left => Framing::Length(left),
                };
                if self.framing == Framing::Done && !buf.is_empty() {
                    // More than the length said: the connection is out of step.
                    self.reusable = false;
                }
                Step::Data(data)
            }
            Framing::UntilClose => {
                if buf.is_empty() {
                    return Step::Read;
                }
                Step::Data(buf.split().freeze())
            }
            Framing::Chunked(chunk) => match chunk {
                Chunk::Size => {
                    let Some(end) = memchr::memchr(b'\n', buf) else {
                        if buf.len() > MAX_CHUNK_LINE {
                            return Step::Fail("chunk-size line too long".into());
                        }
                        return Step::Read;
                    };
                    if end > MAX_CHUNK_LINE {
                        return Step::Fail("chunk-size line too long".into());
                    }
                    match chunk_size(&buf[..end]) {
                        Ok(size) => {
                            buf.advance(end + 1);
                            self.framing = Framing::Chunked(match size {
                                0 => Chunk::Trailers(0),
                                size => Chunk::Data(size),
                            });
                            Step::Again
                        }
                        Err(what) => Step::Fail(what),
                    }
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Step::Read;
                    }
                    let take = left.min(buf.len() as u64);
                    let data = buf.split_to(take as usize).freeze();
                    self.framing = Framing::Chunked(match left - take {
                        0 => Chunk::DataEnd,
                        left => Chunk::Data(left),
                    });
                    Step::Data(data)
                }
                Chunk::DataEnd => {
                    if buf.len() < 2 {
                        return Step::Read;
                    }
                    if &buf[..2] != b"\r\n" {
                        return Step::Fail("chunk data not followed by CRLF".into());
                    }
                    buf.advance(2);
                    self.framing = Framing::Chunked(Chunk::Size);
                    Step::Again
                }
                Chunk::Trailers(seen) => {
                    // Trailer fields are read past, not passed on (a proxy may drop
                    // them, RFC 9110 section 6.5.1).
                    let Some(end) = memchr::memchr(b'\n', buf) else {
                        if seen + buf.len() > MAX_TRAILERS {
                            return Step::Fail("trailer section too long".into());
                        }
                        return Step::Read;
                    };
                    if seen + end + 1 > MAX_TRAILERS {
                        return Step::Fail("trailer section too long".into());
                    }
                    let line = &buf[..end];
                    if !line.ends_with(b"\r") {
                        return Step::Fail("a trailer line ends in LF without CR".into());
                    }
                    let empty = line.len() == 1;
                    buf.advance(end + 1);
                    if empty {
                        self.framing = Framing::Done;
                        if !buf.is_empty() {
                            self.reusable = false;
                        }
                        return Step::End;
                    }
                    self.framing = Framing::Chunked(Chunk::Trailers(seen + end + 1));
                    Step::Again
                }
            },
        }
    }
}

/// What [`ResponseBody::next`] found.
enum Step {
    Data(Bytes),
    Read,
    Again,
    End,
    Fail(String),
}

/// A chunk-size line without its LF: RFC 9112's grammar (the same check as for
/// request bodies), then CR.
fn chunk_size(line: &[u8]) -> Result<u64, String> {
    let Some(line) = line.strip_suffix(b"\r") else {
        return Err("a chunk-size line ends in LF without CR".into());
    };
    crate::types::http_syntax::chunk_size(line).ok_or_else(|| "invalid chunk size".into())
}

impl http_body::Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        loop {
            match this.next() {
                Step::Data(data) => {
                    this.stall.progress();
                    if this.framing == Framing::Done {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Step::Again => continue,
                Step::End => {
                    this.finish();
                    return Poll::Ready(None);
                }
                Step::Fail(what) => return Poll::Ready(Some(Err(this.fail(what)))),
                Step::Read => {}
            }
            let room = match this.framing {
                Framing::Length(left) => (left.min(BODY_READ as u64) as usize).max(HEAD_READ),
                _ => BODY_READ,
            };
            let conn = this.conn.as_mut().expect("Read only with a connection");
            match poll_read_some(conn, room, cx) {
                Poll::Ready(Ok(0)) => {
                    if this.framing == Framing::UntilClose {
                        this.conn = None;
                        this.framing = Framing::Done;
                        this.guard = None;
                        return Poll::Ready(None);
                    }
                    let error = this.fail("connection closed before the end of the body".into());
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Ready(Ok(_)) => this.stall.progress(),
                Poll::Ready(Err(error)) => {
                    let error = this.fail(format!("reading the body: {error}"));
                    return Poll::Ready(Some(Err(error)));
                }
                Poll::Pending => {
                    if this.stall.poll_expired(cx) {
                        this.conn = None;
                        this.framing = Framing::Done;
                        let error = BodyError::Stalled {
                            server: this.server.label.clone(),
                            timeout: this.stall.timeout(),
                        };
                        tracing::warn!(upstream = %this.server.upstream, "{error}: response cut");
                        return Poll::Ready(Some(Err(error)));
                    }
                    return Poll::Pending;
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.framing == Framing::Done
    }

    fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(left) => SizeHint::with_exact(left),
            Framing::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(text: &str) -> Result<Option<ParsedHead>, ExchangeError> {
        parse_head(&mut BytesMut::from(text))
    }

    fn framing_of(text: &str) -> Result<Framing, ExchangeError> {
        let parsed = head(text).unwrap().unwrap();
        framing(parsed.status, &parsed.headers, false)
    }

    #[test]
    fn framing_follows_rfc_9112_and_refuses_ambiguity() {
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n").unwrap(),
            Framing::Length(5)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n").unwrap(),
            Framing::Length(5)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n").unwrap(),
            Framing::Chunked(Chunk::Size)
        );
        assert_eq!(
            framing_of("HTTP/1.1 200 OK\r\n\r\n").unwrap(),
            Framing::UntilClose
        );
        assert_eq!(
            framing_of("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n").unwrap(),
            Framing::Done
        );
        for refused in [
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\n",
            "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        ] {
            assert!(framing_of(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn heads_are_parsed_whole_or_not_at_all() {
        assert!(head("HTTP/1.1 200 OK\r\nContent-Le").unwrap().is_none());
        assert!(head("HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n").is_err());
        assert!(head("HTTP/2.0 200 OK\r\n\r\n").is_err());
        let parsed = head("HTTP/1.0 404 Nope\r\nX-A: 1\r\nx-a: 2\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(parsed.status, StatusCode::NOT_FOUND);
        assert_eq!(parsed.version, Version::HTTP_10);
        assert_eq!(parsed.headers.get_all("x-a").iter().count(), 2);
    }

    #[test]
    fn a_head_over_the_limit_is_refused_however_it_arrives() {
        let filler = format!("X-Filler: {}\r\n", "a".repeat(1000));
        let whole = format!("HTTP/1.1 200 OK\r\n{}\r\n", filler.repeat(70));
        assert!(whole.len() > MAX_HEAD);
        assert!(head(&whole).is_err(), "a complete head over the limit");
        let under = format!("HTTP/1.1 200 OK\r\n{}\r\n", filler.repeat(60));
        assert!(head(&under).unwrap().is_some());
    }

    #[test]
    fn chunk_size_lines_are_strict() {
        assert_eq!(chunk_size(b"1a\r"), Ok(26));
        assert_eq!(chunk_size(b"0;name=value\r"), Ok(0));
        assert_eq!(chunk_size(b"5 ;ext\r"), Ok(5));
        assert_eq!(chunk_size(b"5; a = \"x;y\"\r"), Ok(5));
        for bad in [
            &b"1a"[..],
            b"\r",
            b"g\r",
            b"5 x\r",
            b"5\r\r",
            b"11111111111111111\r",
        ] {
            assert!(
                chunk_size(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
