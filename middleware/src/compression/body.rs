//! The compressed body: one streaming encoder fed with the inner body's frames.
//!
//! Output is flushed only when the inner body has nothing ready (it returned
//! `Pending`) or ends: what arrives in quick succession is compressed as one stream,
//! however small the frames are, and what the app yields before it waits still reaches
//! the client at once. A flush costs a few bytes (gzip's empty stored block, brotli's
//! and zstd's block ends), so the output stays within the body plus a small constant.

use std::io::Write;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Frame, SizeHint};

use super::{Encoding, Levels};
use crate::Body;

/// Compressed output is handed on once this much is ready, even while the inner body
/// keeps producing.
const OUTPUT_CHUNK: usize = 32 << 10;

/// The body of a compressed response.
pub(super) struct CompressedBody {
    inner: Body,
    /// `None` once the stream is finished.
    encoder: Option<Encoder>,
    /// Input was compressed since the last flush.
    unflushed: bool,
    trailers: Option<HeaderMap>,
}

impl CompressedBody {
    /// Compress `inner` with `encoding`; `size` is the uncompressed size when known.
    pub(super) fn new(inner: Body, encoding: Encoding, levels: Levels, size: Option<u64>) -> Self {
        Self {
            inner,
            encoder: Some(Encoder::new(encoding, levels, size)),
            unflushed: false,
            trailers: None,
        }
    }
}

fn io_error(error: std::io::Error) -> axum_core::Error {
    axum_core::Error::new(error)
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
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => {
                    // The inner body has to wait: send what is compressed so far (not
                    // a gzip header alone, before any input).
                    if !std::mem::take(&mut this.unflushed) {
                        return Poll::Pending;
                    }
                    encoder.flush().map_err(io_error)?;
                    return Poll::Ready(Some(Ok(Frame::data(encoder.take_output()))));
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        encoder.write(&data).map_err(io_error)?;
                        this.unflushed |= !data.is_empty();
                        if this.inner.is_end_stream() {
                            let encoder = this.encoder.take().expect("encoder present");
                            let out = encoder.finish().map_err(io_error)?;
                            return Poll::Ready(Some(Ok(Frame::data(out))));
                        }
                        if encoder.output_len() >= OUTPUT_CHUNK {
                            return Poll::Ready(Some(Ok(Frame::data(encoder.take_output()))));
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            this.trailers = Some(trailers);
                        }
                    }
                },
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Some(Err(error))),
                Poll::Ready(None) => {
                    let encoder = this.encoder.take().expect("encoder present");
                    let out = encoder.finish().map_err(io_error)?;
                    return Poll::Ready(Some(Ok(Frame::data(out))));
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

/// A streaming encoder writing into a buffer that is drained as output is handed on.
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

    /// Compress `data`; output appears when the encoder decides (or at a flush).
    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.write(data),
            Encoder::Brotli(e) => e.write_all(data),
            Encoder::Zstd(e) => e.write_all(data),
        }
    }

    /// Make everything written so far decodable by the client.
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Encoder::Gzip(e) => e.flush(),
            Encoder::Brotli(e) => e.flush(),
            Encoder::Zstd(e) => e.flush(),
        }
    }

    fn output(&mut self) -> &mut Vec<u8> {
        match self {
            Encoder::Gzip(e) => &mut e.out,
            Encoder::Brotli(e) => e.get_mut(),
            Encoder::Zstd(e) => e.get_mut(),
        }
    }

    /// Bytes of output ready.
    fn output_len(&mut self) -> usize {
        self.output().len()
    }

    /// The output ready so far.
    fn take_output(&mut self) -> Bytes {
        Bytes::from(std::mem::take(self.output()))
    }

    /// End the stream: the rest of the output.
    fn finish(self) -> std::io::Result<Bytes> {
        let rest = match self {
            Encoder::Gzip(e) => e.finish()?,
            Encoder::Brotli(e) => e.into_inner(),
            Encoder::Zstd(e) => e.finish()?,
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

    fn write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.crc.update(data);
        self.run(data, flate2::FlushCompress::None)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.run(&[], flate2::FlushCompress::Sync)
    }

    fn finish(mut self) -> std::io::Result<Vec<u8>> {
        self.run(&[], flate2::FlushCompress::Finish)?;
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
                stream.write(text.as_bytes()).unwrap();
                stream.flush().unwrap();
                stream.write(text.as_bytes()).unwrap();
                let out = stream.finish().unwrap();
                let mut decoded = String::new();
                flate2::read::GzDecoder::new(&out[..])
                    .read_to_string(&mut decoded)
                    .unwrap();
                assert_eq!(decoded, text.repeat(2));
            }
        }
        assert!(DEFLATE_POOL.with(|pool| !pool.borrow().is_empty()));
    }

    /// A body that yields its frames one by one, `Pending` between the groups.
    struct Scripted {
        steps: std::collections::VecDeque<Option<Bytes>>,
    }

    impl http_body::Body for Scripted {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
            match self.steps.pop_front() {
                None => Poll::Ready(None),
                Some(Some(data)) => Poll::Ready(Some(Ok(Frame::data(data)))),
                Some(None) => {
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            }
        }
    }

    fn decode(encoding: Encoding, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        match encoding {
            Encoding::Gzip => {
                flate2::read::GzDecoder::new(data)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Brotli => {
                brotli::Decompressor::new(data, 4096)
                    .read_to_end(&mut out)
                    .unwrap();
            }
            Encoding::Zstd => out = zstd::decode_all(data).unwrap(),
        }
        out
    }

    /// One-byte frames that arrive together are compressed as one stream: the output
    /// stays within the body plus a small constant, even for bytes that do not compress.
    #[tokio::test]
    async fn frames_ready_together_are_flushed_once() {
        use http_body_util::BodyExt;
        let noise: Vec<u8> = (0..20_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for encoding in [Encoding::Gzip, Encoding::Brotli, Encoding::Zstd] {
            // Four pauses: the app "waits" four times.
            let mut steps: std::collections::VecDeque<Option<Bytes>> = noise
                .iter()
                .map(|&b| Some(Bytes::copy_from_slice(&[b])))
                .collect();
            for at in [1, 5_000, 10_000, 15_000] {
                steps.insert(at, None);
            }
            let inner = Body::new(Scripted { steps });
            let body = CompressedBody::new(inner, encoding, Levels::default(), None);
            let collected = Body::new(body).collect().await.unwrap().to_bytes();
            assert!(
                collected.len() < noise.len() + 256,
                "{encoding:?}: {} bytes for {}",
                collected.len(),
                noise.len()
            );
            assert_eq!(decode(encoding, &collected), noise, "{encoding:?}");
        }
    }
}
