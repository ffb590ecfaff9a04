//! The body of a file too large for the cache: read in large chunks, from the page
//! cache on the I/O thread when the bytes are there, from the blocking pool when they
//! are not.
//!
//! Why not `sendfile(2)`: hyper owns the connection (HTTP/1 framing, HTTP/2, TLS), and
//! a body can only hand it bytes, so the page cache is copied once into a buffer. What
//! is left to win is the number of copies and round trips per byte:
//! - chunks are 256 KiB, read straight into the buffer that becomes the frame (one copy,
//!   no zeroing, see [`read_at`]), aligned to the chunk size after the first one;
//! - a warm file (the common case for static assets) is read with `preadv2(RWF_NOWAIT)`
//!   on the I/O thread, as nginx reads in its event loop: no thread hand-off per chunk,
//!   and every buffer is allocated and freed on the same thread (buffers made on the
//!   blocking pool's threads and freed on the I/O thread spread over malloc arenas and
//!   grew the worker's RSS run after run);
//! - a cold one goes to the blocking pool, one chunk ahead of the socket, so the disk
//!   and the socket work at once.
//!
//! Memory per response is at most two chunks plus what hyper holds, whatever the file size.

use std::fs::File;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use tokio::task::JoinHandle;

use super::resolve::{read_at, read_cached_at, CachedRead};

/// Bytes read per `pread(2)`.
pub(crate) const CHUNK: u64 = 256 * 1024;

/// Bytes `start..end` of an open file, streamed.
pub(crate) struct FileBody {
    file: Arc<File>,
    /// The next byte to hand to hyper.
    delivered: u64,
    end: u64,
    /// A read on the blocking pool, of the bytes from `delivered` on.
    reading: Option<JoinHandle<io::Result<Bytes>>>,
    /// False once the file system refused `RWF_NOWAIT`: every read goes to the pool.
    inline: bool,
}

impl FileBody {
    /// Stream bytes `start..end` of `file`.
    pub(crate) fn new(file: File, start: u64, end: u64) -> Self {
        Self {
            file: Arc::new(file),
            delivered: start,
            end,
            reading: None,
            inline: true,
        }
    }

    /// How many bytes to read at `offset`: up to the next multiple of [`CHUNK`], so
    /// every read after the first is aligned.
    fn chunk_at(&self, offset: u64) -> usize {
        (CHUNK - offset % CHUNK).min(self.end - offset) as usize
    }

    /// Read the bytes from `delivered` on, on the blocking pool.
    fn read_on_pool(&mut self) {
        let offset = self.delivered;
        let len = self.chunk_at(offset);
        let file = self.file.clone();
        self.reading = Some(tokio::task::spawn_blocking(move || {
            read_at(&file, offset, len)
        }));
    }

    /// Hand `read` to hyper as the next frame.
    fn deliver(
        &mut self,
        read: io::Result<Bytes>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum_core::Error>>> {
        let chunk = match read {
            Ok(chunk) if !chunk.is_empty() => chunk,
            Ok(_) => {
                // The file shrank under us: end the body short, hyper drops the
                // connection rather than send a wrong length.
                tracing::warn!("static: file shorter than when it was opened");
                return Poll::Ready(Some(Err(axum_core::Error::new(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file truncated while being sent",
                )))));
            }
            Err(error) => {
                tracing::warn!("static: read failed: {error}");
                return Poll::Ready(Some(Err(axum_core::Error::new(error))));
            }
        };
        self.delivered += chunk.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
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
        loop {
            if let Some(reading) = this.reading.as_mut() {
                let result = std::task::ready!(Pin::new(reading).poll(cx));
                this.reading = None;
                let read = result.unwrap_or_else(|join| Err(io::Error::other(join)));
                let frame = this.deliver(read);
                // The file is cold: read the next chunk from the disk while hyper writes
                // this one.
                if this.delivered < this.end && matches!(frame, Poll::Ready(Some(Ok(_)))) {
                    this.read_on_pool();
                }
                return frame;
            }
            if this.delivered >= this.end {
                return Poll::Ready(None);
            }
            if this.inline {
                match read_cached_at(&this.file, this.delivered, this.chunk_at(this.delivered)) {
                    Ok(CachedRead::Read(chunk)) => return this.deliver(Ok(chunk)),
                    Ok(CachedRead::WouldBlock) => {}
                    Ok(CachedRead::Unsupported) => this.inline = false,
                    Err(error) => return this.deliver(Err(error)),
                }
            }
            this.read_on_pool();
        }
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
    async fn a_file_out_of_the_page_cache_streams_from_the_blocking_pool() {
        use std::os::unix::io::AsRawFd;
        let path = std::env::temp_dir().join(format!("static-cold-{}", std::process::id()));
        let content: Vec<u8> = (0..(3 * CHUNK + 5)).map(|n| (n % 253) as u8).collect();
        std::fs::write(&path, &content).unwrap();
        let file = File::open(&path).unwrap();
        file.sync_all().unwrap();
        // SAFETY: a valid descriptor; advice only.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        let mut body = FileBody::new(file, 0, content.len() as u64);
        let mut joined = Vec::new();
        while let Some(frame) = body.frame().await {
            joined.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        assert!(joined == content, "the whole file, in order");
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
