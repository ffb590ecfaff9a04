//! Response compression: gzip, br and zstd, chosen from `Accept-Encoding` with q-values.
//!
//! Unlike a buffered encoder, every body frame is compressed and flushed as it arrives,
//! so a streamed response reaches the client chunk by chunk. Skipped: bodies that are
//! already encoded, ranges, `text/event-stream`, already-compressed media types,
//! `Cache-Control: no-transform`, HEAD/204/304, and bodies known to be under `min_size`.
//! `Vary: Accept-Encoding` is added to every response that could have been compressed.
//!
//! ```
//! use gateway_middleware::compression::{CompressionLayer, Encoding};
//! let layer = CompressionLayer::new()
//!     .encodings(vec![Encoding::Brotli, Encoding::Zstd, Encoding::Gzip])
//!     .min_size(256);
//! # let _ = layer;
//! ```

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::future::{BoxFuture, FutureExt};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body::{Body as _, Frame, SizeHint};
use tower::{Layer, Service};

use crate::Body;

/// A content coding the layer can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `gzip` (flate2).
    Gzip,
    /// `br` (brotli).
    Brotli,
    /// `zstd`.
    Zstd,
}

impl Encoding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }

    /// Parse a config name: `gzip`, `br` (or `brotli`), `zstd`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "gzip" => Some(Encoding::Gzip),
            "br" | "brotli" => Some(Encoding::Brotli),
            "zstd" => Some(Encoding::Zstd),
            _ => None,
        }
    }
}

/// Compression levels per coding.
#[derive(Clone, Copy, Debug)]
pub struct Levels {
    /// gzip 1-9.
    pub gzip: u32,
    /// brotli quality 0-11.
    pub brotli: u32,
    /// zstd 1-22.
    pub zstd: i32,
}

impl Default for Levels {
    fn default() -> Self {
        Self {
            gzip: 6,
            brotli: 4,
            zstd: 3,
        }
    }
}

/// Put in each request's extensions when the client accepts one of the layer's codings:
/// the one the layer would use, and from what size. A layer below that holds encoded
/// variants (the static files layer) may answer with one of them; a response that has
/// `Content-Encoding` passes through this layer unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressionOffer {
    /// The coding negotiated for the request.
    pub encoding: Encoding,
    /// Bodies smaller than this are not compressed.
    pub min_size: u64,
}

/// Compresses responses for clients that accept it.
#[derive(Clone, Debug)]
pub struct CompressionLayer {
    encodings: Vec<Encoding>,
    min_size: u64,
    levels: Levels,
}

impl Default for CompressionLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CompressionLayer {
    /// br, zstd and gzip (preferred in that order at equal q), bodies of 256 bytes or more.
    pub fn new() -> Self {
        Self {
            encodings: vec![Encoding::Brotli, Encoding::Zstd, Encoding::Gzip],
            min_size: 256,
            levels: Levels::default(),
        }
    }

    /// The codings offered, most preferred first.
    pub fn encodings(mut self, encodings: Vec<Encoding>) -> Self {
        self.encodings = encodings;
        self
    }

    /// Bodies known to be smaller are sent as they are.
    pub fn min_size(mut self, min_size: u64) -> Self {
        self.min_size = min_size;
        self
    }

    /// Compression levels.
    pub fn levels(mut self, levels: Levels) -> Self {
        self.levels = levels;
        self
    }
}

impl<S> Layer<S> for CompressionLayer {
    type Service = Compression<S>;

    fn layer(&self, inner: S) -> Compression<S> {
        Compression {
            inner,
            config: self.clone(),
        }
    }
}

/// The service made by [`CompressionLayer`].
#[derive(Clone, Debug)]
pub struct Compression<S> {
    inner: S,
    config: CompressionLayer,
}

/// The coding to use for `accept` (an `Accept-Encoding` value), honouring q-values,
/// `identity` and `*`; ties go to the server's order.
pub fn negotiate(accept: &str, offered: &[Encoding]) -> Option<Encoding> {
    let mut best: Option<(f32, usize, Encoding)> = None;
    let mut wildcard: Option<f32> = None;
    let mut listed = Vec::new();
    for item in accept.split(',') {
        let mut parts = item.split(';');
        let token = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .or_else(|| p.trim().strip_prefix("Q="))
            })
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        if token == "*" {
            wildcard = Some(q);
            continue;
        }
        listed.push(token.clone());
        if let Some((rank, encoding)) = offered.iter().enumerate().find(|(_, e)| e.token() == token)
        {
            consider(&mut best, q, rank, *encoding);
        }
    }
    if let Some(q) = wildcard {
        for (rank, encoding) in offered.iter().enumerate() {
            if !listed.iter().any(|t| t == encoding.token()) {
                consider(&mut best, q, rank, *encoding);
            }
        }
    }
    best.map(|(_, _, encoding)| encoding)
}

fn consider(best: &mut Option<(f32, usize, Encoding)>, q: f32, rank: usize, encoding: Encoding) {
    if q <= 0.0 {
        return;
    }
    let better = match best {
        None => true,
        Some((best_q, best_rank, _)) => q > *best_q || (q == *best_q && rank < *best_rank),
    };
    if better {
        *best = Some((q, rank, encoding));
    }
}

/// True when the response is of a kind that compression helps.
fn compressible(status: StatusCode, headers: &HeaderMap) -> bool {
    if status == StatusCode::PARTIAL_CONTENT
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || status.is_informational()
        || headers.contains_key(header::CONTENT_ENCODING)
        || headers.contains_key(header::CONTENT_RANGE)
    {
        return false;
    }
    let no_transform = headers.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("no-transform"))
    });
    if no_transform {
        return false;
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    compressible_media_type(content_type)
}

/// False for media types that are compressed already (images but SVG, audio, video,
/// archives, woff fonts, PDF, `application/octet-stream`) or streamed as events; the
/// static files layer uses the same rule for the variants it compresses once.
pub fn compressible_media_type(content_type: &str) -> bool {
    let content_type = content_type.to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let precompressed = (essence.starts_with("image/") && essence != "image/svg+xml")
        || essence.starts_with("video/")
        || essence.starts_with("audio/")
        || matches!(
            essence,
            "text/event-stream"
                | "application/zip"
                | "application/gzip"
                | "application/x-gzip"
                | "application/zstd"
                | "application/x-brotli"
                | "application/pdf"
                | "application/octet-stream"
                | "application/grpc"
                | "font/woff"
                | "font/woff2"
        );
    !precompressed
}

impl<S> Service<Request<Body>> for Compression<S>
where
    S: Service<Request<Body>, Response = Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let chosen = request
            .headers()
            .get(header::ACCEPT_ENCODING)
            .and_then(|v| v.to_str().ok())
            .and_then(|accept| negotiate(accept, &self.config.encodings));
        let head = request.method() == Method::HEAD;
        let min_size = self.config.min_size;
        if let Some(encoding) = chosen {
            request
                .extensions_mut()
                .insert(CompressionOffer { encoding, min_size });
        }
        let levels = self.config.levels;
        self.inner
            .call(request)
            .map(move |result| {
                result.map(|response| {
                    let (mut parts, body) = response.into_parts();
                    if !compressible(parts.status, &parts.headers) {
                        return Response::from_parts(parts, body);
                    }
                    append_vary(&mut parts.headers);
                    let too_small = body.size_hint().exact().is_some_and(|n| n < min_size);
                    let Some(encoding) = chosen.filter(|_| !too_small && !head) else {
                        return Response::from_parts(parts, body);
                    };
                    let headers = &mut parts.headers;
                    headers.remove(header::CONTENT_LENGTH);
                    headers.remove(header::ACCEPT_RANGES);
                    headers.insert(
                        header::CONTENT_ENCODING,
                        HeaderValue::from_static(encoding.token()),
                    );
                    if let Some(etag) = headers.get(header::ETAG) {
                        // A compressed variant is no longer byte-identical to the strong ETag.
                        if !etag.as_bytes().starts_with(b"W/") {
                            let mut weak = b"W/".to_vec();
                            weak.extend_from_slice(etag.as_bytes());
                            if let Ok(weak) = HeaderValue::from_bytes(&weak) {
                                headers.insert(header::ETAG, weak);
                            }
                        }
                    }
                    let size = body.size_hint().exact();
                    let body = CompressedBody {
                        inner: body,
                        encoder: Some(Encoder::new(encoding, levels, size)),
                        trailers: None,
                    };
                    Response::from_parts(parts, Body::new(body))
                })
            })
            .boxed()
    }
}

fn append_vary(headers: &mut HeaderMap) {
    let already = headers.get_all(header::VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding") || t.trim() == "*")
        })
    });
    if !already {
        headers.append(header::VARY, HeaderValue::from_static("accept-encoding"));
    }
}

/// A streaming encoder writing into a buffer that is drained after each frame.
enum Encoder {
    Gzip(GzipStream),
    Brotli(Box<brotli::CompressorWriter<Vec<u8>>>),
    Zstd(zstd::stream::write::Encoder<'static, Vec<u8>>),
}

impl Encoder {
    fn new(encoding: Encoding, levels: Levels, size: Option<u64>) -> Self {
        match encoding {
            Encoding::Gzip => Encoder::Gzip(GzipStream::new(levels.gzip.clamp(1, 9), size)),
            Encoding::Brotli => Encoder::Brotli(Box::new(brotli::CompressorWriter::new(
                Vec::new(),
                16 << 10,
                levels.brotli.min(11),
                22,
            ))),
            Encoding::Zstd => Encoder::Zstd(
                zstd::stream::write::Encoder::new(Vec::new(), levels.zstd)
                    .expect("zstd level in range"),
            ),
        }
    }

    /// Compress `data` and flush, returning the bytes ready to send.
    fn push(&mut self, data: &[u8]) -> std::io::Result<Bytes> {
        let buffer = match self {
            Encoder::Gzip(e) => return e.push(data).map(Bytes::from),
            Encoder::Brotli(e) => {
                e.write_all(data)?;
                e.flush()?;
                e.get_mut()
            }
            Encoder::Zstd(e) => {
                e.write_all(data)?;
                e.flush()?;
                e.get_mut()
            }
        };
        Ok(Bytes::from(std::mem::take(buffer)))
    }

    /// Compress the last `data` and end the stream.
    fn finish(self, data: &[u8]) -> std::io::Result<Bytes> {
        let rest = match self {
            Encoder::Gzip(e) => e.finish(data)?,
            Encoder::Brotli(mut e) => {
                e.write_all(data)?;
                e.into_inner()
            }
            Encoder::Zstd(mut e) => {
                e.write_all(data)?;
                e.finish()?
            }
        };
        Ok(Bytes::from(rest))
    }
}

thread_local! {
    /// Deflate states kept for reuse: building one zeroes a few hundred KiB, which
    /// costs more than compressing a typical page.
    static DEFLATE_POOL: std::cell::RefCell<Vec<(u32, u8, flate2::Compress)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// gzip (RFC 1952) around a pooled raw deflate stream, with a window no larger than
/// the body when its size is known.
struct GzipStream {
    compress: Option<flate2::Compress>,
    level: u32,
    window_bits: u8,
    crc: flate2::Crc,
    out: Vec<u8>,
}

const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

impl GzipStream {
    fn new(level: u32, size: Option<u64>) -> Self {
        let window_bits = match size {
            Some(n) => (64 - (n.max(256) + 262).leading_zeros()).clamp(9, 15) as u8,
            None => 15,
        };
        let pooled = DEFLATE_POOL.with(|pool| {
            let mut pool = pool.borrow_mut();
            let at = pool
                .iter()
                .position(|(l, w, _)| *l == level && *w == window_bits)?;
            Some(pool.swap_remove(at).2)
        });
        let compress = pooled.unwrap_or_else(|| {
            flate2::Compress::new_with_window_bits(
                flate2::Compression::new(level),
                false,
                window_bits,
            )
        });
        Self {
            compress: Some(compress),
            level,
            window_bits,
            crc: flate2::Crc::new(),
            out: GZIP_HEADER.to_vec(),
        }
    }

    fn run(&mut self, data: &[u8], flush: flate2::FlushCompress) -> std::io::Result<()> {
        let compress = self.compress.as_mut().expect("stream open");
        let start = compress.total_in();
        loop {
            let consumed = (compress.total_in() - start) as usize;
            self.out.reserve((data.len() - consumed) / 2 + 1024);
            let status = compress
                .compress_vec(&data[consumed..], &mut self.out, flush)
                .map_err(std::io::Error::other)?;
            let consumed = (compress.total_in() - start) as usize;
            let done = match flush {
                flate2::FlushCompress::Finish => status == flate2::Status::StreamEnd,
                _ => consumed == data.len() && self.out.len() < self.out.capacity(),
            };
            if done {
                return Ok(());
            }
        }
    }

    fn push(&mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        self.crc.update(data);
        self.run(data, flate2::FlushCompress::Sync)?;
        Ok(std::mem::take(&mut self.out))
    }

    fn finish(mut self, data: &[u8]) -> std::io::Result<Vec<u8>> {
        self.crc.update(data);
        self.run(data, flate2::FlushCompress::Finish)?;
        let mut out = std::mem::take(&mut self.out);
        out.extend_from_slice(&self.crc.sum().to_le_bytes());
        out.extend_from_slice(&self.crc.amount().to_le_bytes());
        Ok(out)
    }
}

impl Drop for GzipStream {
    fn drop(&mut self) {
        if let Some(mut compress) = self.compress.take() {
            compress.reset();
            let entry = (self.level, self.window_bits, compress);
            DEFLATE_POOL.with(|pool| {
                let mut pool = pool.borrow_mut();
                if pool.len() < 16 {
                    pool.push(entry);
                }
            });
        }
    }
}

/// The compressed body.
struct CompressedBody {
    inner: Body,
    encoder: Option<Encoder>,
    trailers: Option<HeaderMap>,
}

impl http_body::Body for CompressedBody {
    type Data = Bytes;
    type Error = axum_core::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum_core::Error>>> {
        let this = self.get_mut();
        loop {
            let Some(encoder) = this.encoder.as_mut() else {
                return Poll::Ready(this.trailers.take().map(|t| Ok(Frame::trailers(t))));
            };
            match futures_util::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        let out = if this.inner.is_end_stream() {
                            // The last frame: finish instead of flushing, then finishing.
                            let encoder = this.encoder.take().expect("encoder present");
                            encoder.finish(&data).map_err(axum_core::Error::new)?
                        } else {
                            encoder.push(&data).map_err(axum_core::Error::new)?
                        };
                        if !out.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            this.trailers = Some(trailers);
                        }
                    }
                },
                Some(Err(error)) => return Poll::Ready(Some(Err(error))),
                None => {
                    let encoder = this.encoder.take().expect("encoder present");
                    let tail = encoder.finish(&[]).map_err(axum_core::Error::new)?;
                    return Poll::Ready(Some(Ok(Frame::data(tail))));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.encoder.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn gzip_stream_round_trips_and_reuses_its_state() {
        let text = "streamed text, ".repeat(500);
        for size in [Some(text.len() as u64 * 2), None] {
            for _ in 0..3 {
                let mut stream = GzipStream::new(6, size);
                let mut out = stream.push(text.as_bytes()).unwrap();
                out.extend(stream.finish(text.as_bytes()).unwrap());
                let mut decoded = String::new();
                flate2::read::GzDecoder::new(&out[..])
                    .read_to_string(&mut decoded)
                    .unwrap();
                assert_eq!(decoded, text.repeat(2));
            }
        }
        assert!(DEFLATE_POOL.with(|pool| !pool.borrow().is_empty()));
    }

    #[test]
    fn negotiates_with_q_values() {
        let all = [Encoding::Brotli, Encoding::Zstd, Encoding::Gzip];
        assert_eq!(negotiate("gzip", &all), Some(Encoding::Gzip));
        assert_eq!(negotiate("gzip, br", &all), Some(Encoding::Brotli));
        assert_eq!(
            negotiate("gzip;q=1.0, br;q=0.5", &all),
            Some(Encoding::Gzip)
        );
        assert_eq!(negotiate("br;q=0, gzip;q=0.1", &all), Some(Encoding::Gzip));
        assert_eq!(negotiate("identity", &all), None);
        assert_eq!(negotiate("*", &all), Some(Encoding::Brotli));
        assert_eq!(negotiate("*;q=0.5, br;q=0", &all), Some(Encoding::Zstd));
        assert_eq!(negotiate("deflate", &all), None);
        assert_eq!(negotiate("gzip", &[Encoding::Zstd]), None);
    }
}
