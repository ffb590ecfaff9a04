//! The body of a file too large for the cache: read from disk in large `pread(2)`
//! chunks on the blocking pool, one chunk ahead of the socket.
//!
//! Why not `sendfile(2)`: hyper owns the connection (HTTP/1 framing, HTTP/2, TLS), and
//! a body can only hand it bytes, so the page cache is copied once into a buffer. What
//! is left to win is the number of copies and round trips per byte: chunks are 256 KiB
//! (so a 20 MB file costs 80 blocking-pool round trips, not the 320 of 64 KiB reads),
//! read straight into the buffer that becomes the frame (one copy, no zeroing, see
//! [`read_at`]), aligned to the chunk size after the first one, and the next chunk is
//! read while hyper writes the current one. Memory per response is at most two chunks
//! plus what hyper holds, whatever the file size. The blocking pool rather than a
//! dedicated reader thread: it is already there, grows with the number of concurrent
//! reads, and a round trip per 256 KiB is noise next to the copy.

use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::task::JoinHandle;

use super::resolve::read_at;

/// Bytes read per `pread(2)`.
pub(crate) const CHUNK: u64 = 256 * 1024;

/// Bytes `start..end` of an open file, streamed.
pub(crate) struct FileBody {
    file: Arc<File>,
    /// The next byte to ask the blocking pool for.
    requested: u64,
    /// The next byte to hand to hyper.
    delivered: u64,
    end: u64,
    reading: Option<JoinHandle<io::Result<Bytes>>>,
}

impl FileBody {
    /// Stream bytes `start..end` of `file`.
    pub(crate) fn new(file: File, start: u64, end: u64) -> Self {
        Self {
            file: Arc::new(file),
            requested: start,
            delivered: start,
            end,
            reading: None,
        }
    }

    /// Start reading the next chunk: up to the next multiple of [`CHUNK`], so every
    /// read after the first is aligned.
    fn read_next(&mut self) {
        let offset = self.requested;
        let len = (CHUNK - offset % CHUNK).min(self.end - offset);
        self.requested += len;
        let file = self.file.clone();
        self.reading = Some(tokio::task::spawn_blocking(move || {
            read_at(&file, offset, len as usize)
        }));
    }
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = axum_core::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum_core::Error>>> {
        let this = self.get_mut();
        if this.reading.is_none() {
            if this.requested >= this.end {
                return Poll::Ready(None);
            }
            this.read_next();
        }
        let reading = this.reading.as_mut().expect("a read in flight");
        let result = std::task::ready!(Pin::new(reading).poll(cx));
        this.reading = None;
        let chunk = match result {
            Ok(Ok(chunk)) if !chunk.is_empty() => chunk,
            Ok(Ok(_)) => {
                // The file shrank under us: end the body short, hyper drops the
                // connection rather than send a wrong length.
                tracing::warn!("static: file shorter than when it was opened");
                return Poll::Ready(Some(Err(axum_core::Error::new(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file truncated while being sent",
                )))));
            }
            Ok(Err(error)) => {
                tracing::warn!("static: read failed: {error}");
                return Poll::Ready(Some(Err(axum_core::Error::new(error))));
            }
            Err(join) => return Poll::Ready(Some(Err(axum_core::Error::new(join)))),
        };
        this.delivered += chunk.len() as u64;
        // One read is in flight at a time; after a short one (the file shrank) the
        // next starts where it stopped, and finds the end.
        this.requested = this.delivered;
        if this.requested < this.end {
            this.read_next();
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.delivered >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end - self.delivered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn streams_a_range_in_aligned_chunks() {
        let path = std::env::temp_dir().join(format!("static-body-{}", std::process::id()));
        let content: Vec<u8> = (0..(3 * CHUNK + 123)).map(|n| (n % 251) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let start = 1000;
        let end = content.len() as u64 - 7;
        let mut body = FileBody::new(File::open(&path).unwrap(), start, end);
        assert_eq!(http_body::Body::size_hint(&body).exact(), Some(end - start));
        let mut chunks = Vec::new();
        while let Some(frame) = body.frame().await {
            chunks.push(frame.unwrap().into_data().unwrap());
        }
        assert_eq!(
            chunks[0].len() as u64,
            CHUNK - start,
            "first read ends aligned"
        );
        assert!(chunks[1..chunks.len() - 1]
            .iter()
            .all(|c| c.len() as u64 == CHUNK));
        let joined: Vec<u8> = chunks.concat();
        assert_eq!(joined, content[start as usize..end as usize]);
        assert!(http_body::Body::is_end_stream(&body));
        std::fs::remove_file(path).unwrap();
    }

    #[tokio::test]
    async fn a_file_that_shrank_ends_in_an_error() {
        let path = std::env::temp_dir().join(format!("static-shrunk-{}", std::process::id()));
        std::fs::write(&path, vec![1u8; 1000]).unwrap();
        let file = File::open(&path).unwrap();
        std::fs::write(&path, vec![1u8; 10]).unwrap();
        let mut body = FileBody::new(file, 0, 1000);
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(first.into_data().unwrap().len(), 10);
        assert!(body.frame().await.unwrap().is_err());
        std::fs::remove_file(path).unwrap();
    }
}
