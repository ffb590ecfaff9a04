//! A strict HTTP/1 framing check that runs in front of hyper's parser.
//!
//! hyper (through httparse) is lenient where request smuggling lives: it accepts a bare
//! LF as a line ending, and when a request carries both `Content-Length` and
//! `Transfer-Encoding` it silently drops the former. A front proxy that reads the same
//! bytes differently can then hide a second request inside the first one's body.
//!
//! [`FramingCheck`] follows the byte stream of one connection (heads and bodies, so it
//! knows where each head starts) and, on a violation, overwrites the offending byte with
//! NUL and reports its position. The transport then withholds everything after it and
//! ends the head with a CRLF CRLF of its own, so httparse parses the head, fails on the
//! NUL, and hyper answers `400 Bad Request` (after any earlier pipelined responses) and
//! closes the connection: the request never reaches the application. It refuses:
//! - a line in a request head that ends in LF without CR;
//! - `Content-Length` together with `Transfer-Encoding`;
//! - any `Transfer-Encoding` other than a single `chunked`;
//! - several `Content-Length` fields that disagree.
//!
//! Bodies are skipped in bulk; only heads and chunk-size lines are looked at byte by byte.

/// The HTTP/2 connection preface; a connection that starts with it is not inspected.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Header lines longer than this are not kept for inspection (hyper limits them).
const MAX_KEPT_LINE: usize = 16 << 10;

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

/// What one head declared about its body.
#[derive(Debug, Default)]
struct HeadFacts {
    lines: usize,
    content_length: Option<Result<u64, ()>>,
    transfer_encoding: Option<String>,
}

/// Per-connection framing state; feed it every byte read, in order.
#[derive(Debug)]
pub struct FramingCheck {
    phase: Phase,
    line: Vec<u8>,
    line_overflow: bool,
    head: HeadFacts,
}

impl Default for FramingCheck {
    fn default() -> Self {
        Self {
            phase: Phase::Preface { seen: 0 },
            line: Vec::with_capacity(128),
            line_overflow: false,
            head: HeadFacts::default(),
        }
    }
}

impl FramingCheck {
    /// Inspect newly read bytes. On a violation, returns the offset of the offending
    /// byte, which has been overwritten with NUL; nothing after it should reach hyper.
    pub fn inspect(&mut self, bytes: &mut [u8]) -> Option<usize> {
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
                    self.keep(&H2_PREFACE[..seen]);
                }
                Phase::Head | Phase::ChunkSize | Phase::Trailers => {
                    let Some(found) = memchr::memchr(b'\n', &bytes[at..]) else {
                        self.keep(&bytes[at..]);
                        return None;
                    };
                    let end = at + found;
                    let violation = if self.line.is_empty() && !self.line_overflow {
                        // The whole line is in this buffer: look at it in place.
                        self.end_of_line(&bytes[at..end], false)
                    } else {
                        self.keep(&bytes[at..end]);
                        let line = std::mem::take(&mut self.line);
                        let overflow = std::mem::take(&mut self.line_overflow);
                        let violation = self.end_of_line(&line, overflow);
                        self.line = line;
                        self.line.clear();
                        violation
                    };
                    if violation {
                        bytes[end] = 0;
                        self.phase = Phase::Off;
                        return Some(end);
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
                        // hyper will refuse this body; stop following the stream.
                        self.phase = Phase::Off;
                        return None;
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

    /// Keep part of a line that continues in a later read.
    fn keep(&mut self, part: &[u8]) {
        let room = MAX_KEPT_LINE.saturating_sub(self.line.len());
        self.line.extend_from_slice(&part[..part.len().min(room)]);
        if part.len() > room {
            self.line_overflow = true;
        }
    }

    /// A line of a line-oriented phase has ended (its LF excluded); true on a violation.
    fn end_of_line(&mut self, line: &[u8], overflow: bool) -> bool {
        let (line, crlf) = match line.strip_suffix(b"\r") {
            Some(line) => (line, true),
            None => (line, false),
        };
        match self.phase {
            Phase::Head => !crlf || self.head_line(line, overflow),
            Phase::ChunkSize => {
                self.chunk_size_line(line);
                false
            }
            Phase::Trailers => {
                if crlf && line.is_empty() {
                    self.phase = Phase::Head;
                }
                !crlf
            }
            _ => false,
        }
    }

    /// One complete line of a head (without its CRLF); true on a violation.
    fn head_line(&mut self, line: &[u8], overflow: bool) -> bool {
        if line.is_empty() {
            if self.head.lines == 0 {
                // Empty lines before a request line are allowed (RFC 9112 section 2.2).
                return false;
            }
            let head = std::mem::take(&mut self.head);
            return self.end_of_head(head);
        }
        self.head.lines += 1;
        if self.head.lines == 1 || overflow {
            return false;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return false; // hyper refuses it
        };
        let name = &line[..colon];
        let value = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
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
            let value = String::from_utf8_lossy(value).to_ascii_lowercase();
            let joined = match self.head.transfer_encoding.take() {
                Some(previous) => format!("{previous},{value}"),
                None => value,
            };
            self.head.transfer_encoding = Some(joined);
        }
        false
    }

    /// Decide the body framing of a finished head; true on a violation.
    fn end_of_head(&mut self, head: HeadFacts) -> bool {
        match (head.content_length, head.transfer_encoding) {
            (Some(_), Some(_)) => true,
            (None, Some(te)) => {
                if te.trim() != "chunked" {
                    return true;
                }
                self.phase = Phase::ChunkSize;
                false
            }
            (Some(Err(())), None) => true,
            (Some(Ok(0)), None) | (None, None) => {
                self.phase = Phase::Head;
                false
            }
            (Some(Ok(n)), None) => {
                self.phase = Phase::Fixed { remaining: n };
                false
            }
        }
    }

    /// True while part of a request head has arrived but not all of it.
    pub fn head_in_progress(&self) -> bool {
        matches!(self.phase, Phase::Head) && (self.head.lines > 0 || !self.line.is_empty())
    }

    fn chunk_size_line(&mut self, line: &[u8]) {
        let digits = line.split(|&b| b == b';').next().unwrap_or_default();
        let digits = trim(digits);
        let size = std::str::from_utf8(digits)
            .ok()
            .filter(|d| !d.is_empty())
            .and_then(|d| u64::from_str_radix(d, 16).ok());
        self.phase = match size {
            Some(0) => Phase::Trailers,
            Some(n) => Phase::ChunkData {
                remaining: n,
                crlf: 2,
            },
            None => Phase::Off,
        };
    }
}

fn trim(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::FramingCheck;

    /// Feed `input` in pieces of `step` bytes; return the offset of the poisoned byte.
    fn poisoned_at(input: &[u8], step: usize) -> Option<usize> {
        let mut check = FramingCheck::default();
        let mut data = input.to_vec();
        let mut offset = 0;
        for piece in data.chunks_mut(step) {
            let len = piece.len();
            if let Some(at) = check.inspect(piece) {
                assert_eq!(piece[at], 0);
                return Some(offset + at);
            }
            offset += len;
        }
        None
    }

    fn all_steps(input: &[u8]) -> Option<usize> {
        let first = poisoned_at(input, input.len());
        for step in 1..input.len() {
            assert_eq!(poisoned_at(input, step), first, "step {step}");
        }
        first
    }

    #[test]
    fn accepts_well_formed_pipelines() {
        let input = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n\
            POST /x HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel\nl\
            POST /y HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\na\nb\r\n0\r\nX-T: 1\r\n\r\n\
            GET /z HTTP/1.1\r\n\r\n";
        assert_eq!(all_steps(input), None);
    }

    #[test]
    fn refuses_bare_lf_in_a_head() {
        let input = b"GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n";
        assert_eq!(all_steps(input), Some(23));
    }

    #[test]
    fn refuses_bare_lf_in_a_later_head_only() {
        let input = b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\na\nbGET / HTTP/1.1\n\r\n";
        assert_eq!(all_steps(input), Some(55));
    }

    #[test]
    fn refuses_content_length_with_chunked() {
        let input =
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert!(all_steps(input).is_some());
    }

    #[test]
    fn refuses_other_transfer_codings() {
        for te in ["gzip, chunked", "chunked, chunked", "xchunked", "identity"] {
            let input = format!("POST / HTTP/1.1\r\nTransfer-Encoding: {te}\r\n\r\n0\r\n\r\n");
            assert!(all_steps(input.as_bytes()).is_some(), "{te}");
        }
    }

    #[test]
    fn refuses_conflicting_content_lengths() {
        let input = b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd";
        assert!(all_steps(input).is_some());
        let same = b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd";
        assert_eq!(all_steps(same), None);
    }

    #[test]
    fn leaves_http2_alone() {
        let mut input = super::H2_PREFACE.to_vec();
        input.extend_from_slice(b"\x00\x00\n\x04 anything\n goes");
        assert_eq!(all_steps(&input), None);
    }
}
