//! A strict HTTP/1 framing check that runs in front of hyper's parser.
//!
//! hyper (through httparse) is lenient where request smuggling lives: it accepts a bare
//! LF as a line ending, and when a request carries both `Content-Length` and
//! `Transfer-Encoding` it silently drops the former. A front proxy that reads the same
//! bytes differently can then hide a second request inside the first one's body.
//!
//! [`FramingCheck`] follows the byte stream of one connection (heads, bodies, chunk-size
//! lines and trailers, so it knows where each head starts) and, on a violation,
//! overwrites the offending byte with NUL and reports its position and the
//! [`Violation`]. The transport then withholds everything after it and ends the stream
//! with a CRLF CRLF of its own. In a head, httparse fails on the NUL and hyper answers
//! `400 Bad Request` (after any earlier pipelined responses) and closes the connection:
//! the request never reaches the application. In a chunked body, hyper's chunk decoder
//! fails on the NUL when the application reads that far: `wsgi.input` raises and the
//! response becomes 400 (see `wsgi::input`).
//!
//! It refuses, in a request head:
//! - a line that ends in LF without CR;
//! - `Content-Length` together with `Transfer-Encoding`; any `Transfer-Encoding` other
//!   than a single `chunked`; several `Content-Length` fields that disagree;
//! - a second `Host`, an invalid `Host` value, and an HTTP/1.1 request without `Host`
//!   (RFC 9112 section 3.2);
//! - a repeated singleton field such as `Content-Type` or `Authorization`;
//! - asterisk form (`*`) with any method but OPTIONS, authority form (`host:port`) with
//!   any method but CONNECT, and CONNECT with any other form;
//! - unless [`FramingRules::permit_unconventional_methods`], a method with a lowercase
//!   letter or `#`, or shorter than 3 or longer than 20 characters (gunicorn's rule);
//!
//! and in a chunked body (RFC 9112 section 7.1): a chunk-size line that is not hex digits
//! plus well-formed extensions (BWS is allowed only before `;`), a bare CR or LF in it,
//! chunk data not followed by CRLF, a malformed trailer line, and a trailer field that
//! must not be a trailer (RFC 9110 section 6.5.1).
//!
//! Bodies are skipped in bulk; only heads, chunk-size lines and trailers are looked at
//! byte by byte.

use crate::types::http_syntax as syntax;

/// The HTTP/2 connection preface; a connection that starts with it is not inspected.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// The start of a line longer than this is kept for inspection, and its last
/// [`KEPT_TAIL`] bytes; hyper's own limits refuse such lines anyway.
const MAX_KEPT_LINE: usize = 16 << 10;
/// Enough of a line's end for its CR and a request line's ` HTTP/1.1`.
const KEPT_TAIL: usize = 16;

/// Settings of the check that come from the configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct FramingRules {
    /// Accept any RFC 9110 token as a method (`limits.permit_unconventional_methods`).
    pub permit_unconventional_methods: bool,
}

/// Why a request was refused; logged, never sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum Violation {
    /// A line of a head or trailer section ended in LF without CR.
    #[error("a line ends in LF without CR")]
    BareLf,
    /// `Content-Length` and `Transfer-Encoding` in one request.
    #[error("Content-Length together with Transfer-Encoding")]
    LengthAndTransferEncoding,
    /// A transfer coding other than a single `chunked`.
    #[error("a Transfer-Encoding other than a single chunked")]
    TransferCoding,
    /// `Content-Length` fields that disagree or are not a number.
    #[error("an invalid or conflicting Content-Length")]
    ContentLength,
    /// A framing field longer than the check keeps.
    #[error("a Content-Length or Transfer-Encoding line too long to inspect")]
    FramingFieldTooLong,
    /// A method refused by gunicorn's rule.
    #[error("an unconventional method (see limits.permit_unconventional_methods)")]
    Method,
    /// A request-target form the method does not allow.
    #[error("a request-target form the method does not allow")]
    TargetForm,
    /// An HTTP/1.1 request without `Host`.
    #[error("an HTTP/1.1 request without Host")]
    MissingHost,
    /// More than one `Host` field.
    #[error("more than one Host field")]
    RepeatedHost,
    /// A `Host` value that is not `host[:port]`.
    #[error("an invalid Host value")]
    InvalidHost,
    /// A field that may appear once appeared again.
    #[error("a repeated singleton field (such as Content-Type or Authorization)")]
    RepeatedSingleton,
    /// A chunk-size line outside RFC 9112's grammar.
    #[error("a malformed chunk-size line")]
    ChunkSize,
    /// Chunk data not followed by CRLF.
    #[error("chunk data not followed by CRLF")]
    ChunkEnd,
    /// A trailer line that is not a field line.
    #[error("a malformed trailer field")]
    TrailerLine,
    /// A field that must not be sent as a trailer.
    #[error("a field that is not allowed in trailers")]
    ForbiddenTrailer,
}

/// A violation and where it was found in the bytes just inspected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Refused {
    /// Offset of the poisoned byte in the slice given to [`FramingCheck::inspect`].
    pub at: usize,
    /// What was wrong.
    pub violation: Violation,
}

/// What the check is reading now.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    /// The first bytes of the connection: HTTP/1 head or HTTP/2 preface.
    Preface { seen: usize },
    /// A request head.
    Head,
    /// `remaining` bytes of a Content-Length body.
    Fixed { remaining: u64 },
    /// A chunk-size line.
    ChunkSize,
    /// Chunk data, then its CRLF (`crlf` bytes of it still to come).
    ChunkData { remaining: u64, crlf: u8 },
    /// Trailer fields after the last chunk.
    Trailers,
    /// Not inspecting any more (HTTP/2, or hyper will refuse the stream anyway).
    Off,
}

/// What one head declared so far.
#[derive(Debug, Default)]
struct HeadFacts {
    lines: usize,
    /// The request line says HTTP/1.1 (which requires Host).
    http11: bool,
    hosts: usize,
    /// Bit `i` is set once singleton field `i` has been seen.
    singletons: u32,
    content_length: Option<Result<u64, ()>>,
    transfer_encoding: Option<String>,
}

/// A line that did not fit in one read: its start, and its end when it overflowed.
#[derive(Debug, Default)]
struct PartialLine {
    start: Vec<u8>,
    /// The last [`KEPT_TAIL`] bytes after `start` filled up.
    tail: Vec<u8>,
    overflow: bool,
}

impl PartialLine {
    fn is_empty(&self) -> bool {
        self.start.is_empty() && !self.overflow
    }

    /// Keep part of a line that continues in a later read.
    fn keep(&mut self, part: &[u8]) {
        let room = MAX_KEPT_LINE.saturating_sub(self.start.len());
        let (kept, rest) = part.split_at(part.len().min(room));
        self.start.extend_from_slice(kept);
        if !rest.is_empty() {
            self.overflow = true;
            self.tail
                .extend_from_slice(&rest[rest.len().saturating_sub(KEPT_TAIL)..]);
            let excess = self.tail.len().saturating_sub(KEPT_TAIL);
            self.tail.drain(..excess);
        }
    }

    fn clear(&mut self) {
        self.start.clear();
        self.tail.clear();
        self.overflow = false;
    }
}

/// One line as the check sees it, without its line ending.
#[derive(Debug, Clone, Copy)]
struct Line<'a> {
    /// The line, or its first [`MAX_KEPT_LINE`] bytes if it was longer.
    start: &'a [u8],
    /// For a longer line, its last bytes (without the CR).
    tail: Option<&'a [u8]>,
    /// It ended in CRLF.
    crlf: bool,
}

impl<'a> Line<'a> {
    /// `bytes` is a line up to (not including) its LF.
    fn whole(bytes: &'a [u8]) -> Self {
        match bytes.strip_suffix(b"\r") {
            Some(start) => Line {
                start,
                tail: None,
                crlf: true,
            },
            None => Line {
                start: bytes,
                tail: None,
                crlf: false,
            },
        }
    }

    fn kept(partial: &'a PartialLine) -> Self {
        if !partial.overflow {
            return Self::whole(&partial.start);
        }
        let (tail, crlf) = match partial.tail.strip_suffix(b"\r") {
            Some(tail) => (tail, true),
            None => (&partial.tail[..], false),
        };
        Line {
            start: &partial.start,
            tail: Some(tail),
            crlf,
        }
    }

    fn truncated(&self) -> bool {
        self.tail.is_some()
    }
}

/// Per-connection framing state; feed it every byte read, in order.
#[derive(Debug)]
pub(super) struct FramingCheck {
    rules: FramingRules,
    phase: Phase,
    line: PartialLine,
    head: HeadFacts,
}

impl Default for FramingCheck {
    fn default() -> Self {
        Self::new(FramingRules::default())
    }
}

impl FramingCheck {
    /// A check for a new connection.
    pub(super) fn new(rules: FramingRules) -> Self {
        Self {
            rules,
            phase: Phase::Preface { seen: 0 },
            line: PartialLine {
                start: Vec::with_capacity(128),
                ..PartialLine::default()
            },
            head: HeadFacts::default(),
        }
    }

    /// Inspect newly read bytes. On a violation, the offending byte has been overwritten
    /// with NUL; nothing after it should reach hyper.
    pub(super) fn inspect(&mut self, bytes: &mut [u8]) -> Option<Refused> {
        let mut at = 0;
        while at < bytes.len() {
            match self.phase.clone() {
                Phase::Off => return None,
                Phase::Preface { seen } => {
                    let want = &H2_PREFACE[seen..];
                    let take = want.len().min(bytes.len() - at);
                    if bytes[at..at + take] == want[..take] {
                        at += take;
                        self.phase = if seen + take == H2_PREFACE.len() {
                            Phase::Off
                        } else {
                            Phase::Preface { seen: seen + take }
                        };
                        continue;
                    }
                    // Not HTTP/2: what matched so far starts the first line of a head.
                    if seen > "PRI * HTTP/2.0".len() {
                        // "PRI * HTTP/2.0" is no HTTP/1 request line: hyper refuses it.
                        self.phase = Phase::Off;
                        return None;
                    }
                    self.phase = Phase::Head;
                    self.line.keep(&H2_PREFACE[..seen]);
                }
                Phase::Head | Phase::ChunkSize | Phase::Trailers => {
                    let Some(found) = memchr::memchr(b'\n', &bytes[at..]) else {
                        self.line.keep(&bytes[at..]);
                        return None;
                    };
                    let end = at + found;
                    let checked = if self.line.is_empty() {
                        // The whole line is in this buffer: look at it in place.
                        self.end_of_line(Line::whole(&bytes[at..end]))
                    } else {
                        self.line.keep(&bytes[at..end]);
                        let partial = std::mem::take(&mut self.line);
                        let checked = self.end_of_line(Line::kept(&partial));
                        self.line = partial;
                        self.line.clear();
                        checked
                    };
                    if let Err(violation) = checked {
                        return Some(self.refuse(bytes, end, violation));
                    }
                    at = end + 1;
                }
                Phase::Fixed { remaining } => {
                    let take = remaining.min((bytes.len() - at) as u64);
                    at += take as usize;
                    let remaining = remaining - take;
                    self.phase = if remaining == 0 {
                        Phase::Head
                    } else {
                        Phase::Fixed { remaining }
                    };
                }
                Phase::ChunkData { remaining, crlf } => {
                    if remaining > 0 {
                        let take = remaining.min((bytes.len() - at) as u64);
                        at += take as usize;
                        self.phase = Phase::ChunkData {
                            remaining: remaining - take,
                            crlf,
                        };
                        continue;
                    }
                    let expected = if crlf == 2 { b'\r' } else { b'\n' };
                    if bytes[at] != expected {
                        return Some(self.refuse(bytes, at, Violation::ChunkEnd));
                    }
                    at += 1;
                    self.phase = if crlf == 1 {
                        Phase::ChunkSize
                    } else {
                        Phase::ChunkData {
                            remaining: 0,
                            crlf: 1,
                        }
                    };
                }
            }
        }
        None
    }

    /// Poison `bytes[at]` and stop inspecting.
    fn refuse(&mut self, bytes: &mut [u8], at: usize, violation: Violation) -> Refused {
        bytes[at] = 0;
        self.phase = Phase::Off;
        Refused { at, violation }
    }

    /// A line of a line-oriented phase has ended.
    fn end_of_line(&mut self, line: Line<'_>) -> Result<(), Violation> {
        match self.phase {
            Phase::Head if !line.crlf => Err(Violation::BareLf),
            Phase::Head => self.head_line(line),
            Phase::ChunkSize => {
                let size = line
                    .crlf
                    .then_some(line)
                    .filter(|line| !line.truncated())
                    .and_then(|line| syntax::chunk_size(line.start))
                    .ok_or(Violation::ChunkSize)?;
                self.phase = match size {
                    0 => Phase::Trailers,
                    n => Phase::ChunkData {
                        remaining: n,
                        crlf: 2,
                    },
                };
                Ok(())
            }
            Phase::Trailers if !line.crlf => Err(Violation::BareLf),
            Phase::Trailers if line.start.is_empty() => {
                self.phase = Phase::Head;
                Ok(())
            }
            Phase::Trailers => {
                let name = syntax::field_line_name(line.start).ok_or(Violation::TrailerLine)?;
                if syntax::is_forbidden_trailer(name) {
                    return Err(Violation::ForbiddenTrailer);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// One line of a head (without its CRLF).
    fn head_line(&mut self, line: Line<'_>) -> Result<(), Violation> {
        if line.start.is_empty() && !line.truncated() {
            if self.head.lines == 0 {
                // Empty lines before a request line are allowed (RFC 9112 section 2.2).
                return Ok(());
            }
            let head = std::mem::take(&mut self.head);
            return self.end_of_head(head);
        }
        self.head.lines += 1;
        if self.head.lines == 1 {
            return self.request_line(line);
        }
        let Some(colon) = line.start.iter().position(|&b| b == b':') else {
            return Ok(()); // hyper refuses it
        };
        let name = &line.start[..colon];
        let value = syntax::trim_ows(&line.start[colon + 1..]);
        if name.eq_ignore_ascii_case(b"host") {
            self.head.hosts += 1;
            if self.head.hosts > 1 {
                return Err(Violation::RepeatedHost);
            }
            // A longer Host is refused by the header size limit (431).
            if !line.truncated() && !syntax::is_valid_host(value) {
                return Err(Violation::InvalidHost);
            }
        } else if let Some(index) = syntax::singleton_index(name) {
            let bit = 1 << index;
            if self.head.singletons & bit != 0 {
                return Err(Violation::RepeatedSingleton);
            }
            self.head.singletons |= bit;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if line.truncated() {
                return Err(Violation::FramingFieldTooLong);
            }
            let parsed = std::str::from_utf8(value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(());
            self.head.content_length = match (self.head.content_length, parsed) {
                (None, parsed) => Some(parsed),
                (Some(Ok(a)), Ok(b)) if a == b => Some(Ok(a)),
                _ => Some(Err(())),
            };
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if line.truncated() {
                return Err(Violation::FramingFieldTooLong);
            }
            let value = String::from_utf8_lossy(value).to_ascii_lowercase();
            let joined = match self.head.transfer_encoding.take() {
                Some(previous) => format!("{previous},{value}"),
                None => value,
            };
            self.head.transfer_encoding = Some(joined);
        }
        Ok(())
    }

    /// The request line: its method, target form and version.
    fn request_line(&mut self, line: Line<'_>) -> Result<(), Violation> {
        let (method, form, version) = match line.tail {
            None => match syntax::request_line(line.start) {
                Some(parts) => (
                    parts.method,
                    Some(syntax::target_form(parts.target)),
                    parts.version,
                ),
                None => return Ok(()), // hyper refuses it
            },
            // Too long to keep whole (hyper answers 414 or 431): the method is at the
            // start and the version at the end; a target this long is no `*` or
            // `host:port`.
            Some(tail) => {
                let method = line.start.split(|&b| b == b' ').next().unwrap_or_default();
                let version = tail.rsplit(|&b| b == b' ').next().unwrap_or_default();
                (method, None, version)
            }
        };
        self.head.http11 = version == b"HTTP/1.1";
        if !self.rules.permit_unconventional_methods && !syntax::is_conventional_method(method) {
            return Err(Violation::Method);
        }
        if form.is_some_and(|form| !syntax::method_allows_form(method, form)) {
            return Err(Violation::TargetForm);
        }
        Ok(())
    }

    /// Decide the body framing of a finished head.
    fn end_of_head(&mut self, head: HeadFacts) -> Result<(), Violation> {
        if head.http11 && head.hosts == 0 {
            return Err(Violation::MissingHost);
        }
        match (head.content_length, head.transfer_encoding) {
            (Some(_), Some(_)) => Err(Violation::LengthAndTransferEncoding),
            (None, Some(te)) => {
                if te.trim() != "chunked" {
                    return Err(Violation::TransferCoding);
                }
                self.phase = Phase::ChunkSize;
                Ok(())
            }
            (Some(Err(())), None) => Err(Violation::ContentLength),
            (Some(Ok(0)), None) | (None, None) => {
                self.phase = Phase::Head;
                Ok(())
            }
            (Some(Ok(n)), None) => {
                self.phase = Phase::Fixed { remaining: n };
                Ok(())
            }
        }
    }

    /// True while part of a request head has arrived but not all of it.
    pub(super) fn head_in_progress(&self) -> bool {
        matches!(self.phase, Phase::Head) && (self.head.lines > 0 || !self.line.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::{FramingCheck, FramingRules, Violation};

    /// Feed `input` in pieces of `step` bytes; return where it was poisoned and why.
    fn refused_at(input: &[u8], step: usize, rules: FramingRules) -> Option<(usize, Violation)> {
        let mut check = FramingCheck::new(rules);
        let mut data = input.to_vec();
        let mut offset = 0;
        for piece in data.chunks_mut(step) {
            let len = piece.len();
            if let Some(refused) = check.inspect(piece) {
                assert_eq!(piece[refused.at], 0);
                return Some((offset + refused.at, refused.violation));
            }
            offset += len;
        }
        None
    }

    /// The same verdict whatever the read sizes.
    fn check_with(input: &[u8], rules: FramingRules) -> Option<(usize, Violation)> {
        let first = refused_at(input, input.len(), rules);
        for step in 1..input.len() {
            assert_eq!(refused_at(input, step, rules), first, "step {step}");
        }
        first
    }

    fn all_steps(input: &[u8]) -> Option<(usize, Violation)> {
        check_with(input, FramingRules::default())
    }

    fn violation(input: &[u8]) -> Option<Violation> {
        all_steps(input).map(|(_, violation)| violation)
    }

    fn chunked(body: &str) -> Vec<u8> {
        format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
            .into_bytes()
    }

    #[test]
    fn accepts_well_formed_pipelines() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhel\nl\
            POST /y HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\na\nb\r\n0\r\nX-T: 1\r\n\r\n\
            GET /z HTTP/1.0\r\n\r\n\
            OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n\
            CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\
            GET http://a/b HTTP/1.1\r\nHost: a\r\n\r\n";
        assert_eq!(all_steps(input), None);
    }

    #[test]
    fn refuses_bare_lf_in_a_head() {
        let input = b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n";
        assert_eq!(all_steps(input), Some((23, Violation::BareLf)));
    }

    #[test]
    fn refuses_bare_lf_in_a_later_head_only() {
        let input =
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\na\nbGET / HTTP/1.1\n\r\n";
        assert_eq!(all_steps(input), Some((64, Violation::BareLf)));
    }

    #[test]
    fn refuses_content_length_with_chunked() {
        let input = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(violation(input), Some(Violation::LengthAndTransferEncoding));
    }

    #[test]
    fn refuses_other_transfer_codings() {
        for te in ["gzip, chunked", "chunked, chunked", "xchunked", "identity"] {
            let input =
                format!("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n");
            assert_eq!(
                violation(input.as_bytes()),
                Some(Violation::TransferCoding),
                "{te}"
            );
        }
    }

    #[test]
    fn refuses_conflicting_content_lengths() {
        let input =
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd";
        assert_eq!(violation(input), Some(Violation::ContentLength));
        let same =
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd";
        assert_eq!(all_steps(same), None);
    }

    #[test]
    fn host_is_required_once_in_http11_and_must_be_valid() {
        assert_eq!(
            violation(b"GET / HTTP/1.1\r\nX: y\r\n\r\n"),
            Some(Violation::MissingHost)
        );
        assert_eq!(
            violation(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            Some(Violation::RepeatedHost)
        );
        assert_eq!(
            violation(b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n"),
            Some(Violation::RepeatedHost)
        );
        assert_eq!(
            violation(b"GET / HTTP/1.1\r\nHost: a/b@c\r\n\r\n"),
            Some(Violation::InvalidHost)
        );
        assert_eq!(all_steps(b"GET / HTTP/1.0\r\n\r\n"), None);
        assert_eq!(all_steps(b"GET / HTTP/1.1\r\nHost:\r\n\r\n"), None);
        assert_eq!(
            all_steps(b"GET / HTTP/1.1\r\nHost: [::1]:80 \r\n\r\n"),
            None
        );
    }

    #[test]
    fn refuses_repeated_singletons() {
        for name in ["Content-Type", "Authorization", "user-agent"] {
            let input = format!("POST / HTTP/1.1\r\nHost: a\r\n{name}: x\r\n{name}: x\r\n\r\n");
            assert_eq!(
                violation(input.as_bytes()),
                Some(Violation::RepeatedSingleton),
                "{name}"
            );
        }
        let lists = b"GET / HTTP/1.1\r\nHost: a\r\nAccept: a\r\nAccept: b\r\nCookie: a=1\r\nCookie: b=2\r\n\r\n";
        assert_eq!(all_steps(lists), None);
    }

    #[test]
    fn target_forms_must_match_their_method() {
        for line in [
            "GET *",
            "PRI *",
            "GET a:80",
            "POST example.com:443",
            "CONNECT /x",
        ] {
            let input = format!("{line} HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(
                violation(input.as_bytes()),
                Some(Violation::TargetForm),
                "{line}"
            );
        }
    }

    #[test]
    fn unconventional_methods_are_refused_unless_permitted() {
        for method in ["get", "-bl", "GE", "M#X", "ABCDEFGHIJKLMNOPQRSTU"] {
            let input = format!("{method} / HTTP/1.1\r\nHost: a\r\n\r\n");
            assert_eq!(
                violation(input.as_bytes()),
                Some(Violation::Method),
                "{method}"
            );
            let permitted = FramingRules {
                permit_unconventional_methods: true,
            };
            assert_eq!(check_with(input.as_bytes(), permitted), None, "{method}");
        }
    }

    #[test]
    fn refuses_malformed_chunk_size_lines() {
        for line in [
            "6_0", "-5", "+5", "", ";foo=bar", "0 ", "5 ", " 5", "5\r;x", "5;x\r\r", "5;",
        ] {
            let input = chunked(&format!("{line}\r\nhello\r\n0\r\n\r\n"));
            assert_eq!(violation(&input), Some(Violation::ChunkSize), "{line:?}");
        }
        // A bare LF ends a chunk-size line too early.
        assert_eq!(
            violation(&chunked("5;ext\nhello\r\n0\r\n\r\n")),
            Some(Violation::ChunkSize)
        );
    }

    #[test]
    fn accepts_chunk_sizes_the_grammar_allows() {
        for line in [
            "5;ext=val",
            "5 ;ext",
            "5\t;ext",
            "5; ext = \"a;b\"",
            "0005",
            "5;a;b=c",
        ] {
            let input = chunked(&format!("{line}\r\nhello\r\n0\r\n\r\n"));
            assert_eq!(all_steps(&input), None, "{line:?}");
        }
        assert_eq!(all_steps(&chunked("A\r\n0123456789\r\n0\r\n\r\n")), None);
    }

    #[test]
    fn refuses_chunk_data_without_crlf() {
        let input = chunked("5\r\nhelloXX0\r\n\r\n");
        let (at, violation) = all_steps(&input).unwrap();
        assert_eq!(violation, Violation::ChunkEnd);
        assert_eq!(input[at], b'X');
        assert_eq!(
            all_steps(&chunked("5\r\nhello\rX0\r\n\r\n")).map(|r| r.1),
            Some(Violation::ChunkEnd)
        );
    }

    #[test]
    fn trailers_are_checked() {
        for field in [
            "Content-Length: 5",
            "transfer-encoding: chunked",
            "Host: b",
            "TE: trailers",
            "Trailer: X",
            "Content-Type: a/b",
            "Content-Encoding: gzip",
            "Authorization: x",
        ] {
            let input = chunked(&format!("0\r\n{field}\r\n\r\n"));
            assert_eq!(
                violation(&input),
                Some(Violation::ForbiddenTrailer),
                "{field}"
            );
        }
        assert_eq!(
            violation(&chunked("0\r\nX-T : 1\r\n\r\n")),
            Some(Violation::TrailerLine)
        );
        assert_eq!(
            violation(&chunked("0\r\nX-T: 1\nGET / HTTP/1.1\r\n\r\n")),
            Some(Violation::BareLf)
        );
        assert_eq!(
            all_steps(&chunked("0\r\nX-Checksum: abc\r\nServer-Timing: a\r\n\r\n")),
            None
        );
    }

    #[test]
    fn a_header_line_longer_than_what_is_kept_still_ends_in_crlf() {
        // Split across reads, a line over MAX_KEPT_LINE must keep its CR (a 431 follows
        // from the header size limit, not a 400 from this check).
        let long = "b".repeat(super::MAX_KEPT_LINE + 100);
        let input = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {long}\r\n\r\n");
        for step in [1000, 4096, 8192, super::MAX_KEPT_LINE] {
            assert_eq!(
                refused_at(input.as_bytes(), step, FramingRules::default()),
                None,
                "step {step}"
            );
        }
        let bare = format!("GET / HTTP/1.1\r\nHost: a\r\nX-Big: {long}\n\r\n");
        assert_eq!(
            refused_at(bare.as_bytes(), 4096, FramingRules::default()).map(|r| r.1),
            Some(Violation::BareLf)
        );
        // A long request line keeps its version: HTTP/1.1 still needs Host.
        let target = format!("/{}", "t".repeat(super::MAX_KEPT_LINE));
        let no_host = format!("GET {target} HTTP/1.1\r\n\r\n");
        assert_eq!(
            refused_at(no_host.as_bytes(), 4096, FramingRules::default()).map(|r| r.1),
            Some(Violation::MissingHost)
        );
        let old = format!("GET {target} HTTP/1.0\r\n\r\n");
        assert_eq!(
            refused_at(old.as_bytes(), 4096, FramingRules::default()),
            None
        );
    }

    #[test]
    fn leaves_http2_alone() {
        let mut input = super::H2_PREFACE.to_vec();
        input.extend_from_slice(b"\x00\x00\n\x04 anything\n goes");
        assert_eq!(all_steps(&input), None);
    }
}
