//! The response body handed from a Python thread to hyper.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::sync::mpsc;

/// Why a response body stopped before its end. hyper closes the connection (HTTP/1) or
/// resets the stream (HTTP/2) so the client never mistakes a cut body for a whole one.
#[derive(Debug, thiserror::Error)]
#[error("response body aborted: {0}")]
pub struct BodyAborted(pub &'static str);

/// A response body: either complete in memory or streamed through a bounded channel.
pub enum WsgiBody {
    /// The whole body (possibly empty), known before the head was sent.
    Full(Option<Bytes>),
    /// Chunks as the application yields them.
    Stream(StreamBody),
}

/// The receiving end of a streamed body.
pub struct StreamBody {
    chunks: mpsc::Receiver<Bytes>,
    completed: Arc<AtomicBool>,
    /// The producer stopped without completing; the error is reported on the next poll,
    /// after hyper has had a chance to flush what it already holds.
    aborting: bool,
}

/// The sending end of a streamed body, owned by the Python thread.
pub struct StreamSender {
    /// Where chunks go; bounded, so a slow client slows the producer.
    pub chunks: mpsc::Sender<Bytes>,
    completed: Arc<AtomicBool>,
}

impl StreamSender {
    /// Mark the body as complete. A stream whose senders are dropped without this is
    /// reported to hyper as aborted.
    pub fn complete(self) {
        self.completed.store(true, Ordering::Release);
    }
}

/// A bounded channel for a streamed body.
pub fn stream_channel(capacity: usize) -> (StreamSender, WsgiBody) {
    let (tx, rx) = mpsc::channel(capacity);
    let completed = Arc::new(AtomicBool::new(false));
    (
        StreamSender {
            chunks: tx,
            completed: completed.clone(),
        },
        WsgiBody::Stream(StreamBody {
            chunks: rx,
            completed,
            aborting: false,
        }),
    )
}

impl WsgiBody {
    /// An empty body.
    pub fn empty() -> Self {
        WsgiBody::Full(None)
    }
}

impl Body for WsgiBody {
    type Data = Bytes;
    type Error = BodyAborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        match self.get_mut() {
            WsgiBody::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            WsgiBody::Stream(stream) => match stream.chunks.poll_recv(cx) {
                Poll::Ready(Some(chunk)) => Poll::Ready(Some(Ok(Frame::data(chunk)))),
                Poll::Ready(None) if stream.completed.load(Ordering::Acquire) => Poll::Ready(None),
                Poll::Ready(None) if stream.aborting => Poll::Ready(Some(Err(BodyAborted(
                    "the application's response ended early",
                )))),
                Poll::Ready(None) => {
                    // hyper flushes its buffer when a body is pending: let the client
                    // receive every byte that was produced before the connection is cut.
                    stream.aborting = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, WsgiBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            WsgiBody::Full(data) => {
                SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64))
            }
            WsgiBody::Stream(_) => SizeHint::default(),
        }
    }
}

/// Stream `len` bytes of `file` from `offset` on the runtime, off the Python threads.
/// The body is aborted if the file turns out shorter than `len` or the client stops
/// reading for longer than `write_timeout`.
pub fn file_body(
    runtime: &tokio::runtime::Handle,
    file: std::fs::File,
    offset: u64,
    len: u64,
    write_timeout: std::time::Duration,
) -> WsgiBody {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    const CHUNK: u64 = 256 << 10;
    let (sender, body) = stream_channel(4);
    runtime.spawn(async move {
        let mut file = tokio::fs::File::from_std(file);
        if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
            return;
        }
        let mut remaining = len;
        while remaining > 0 {
            let mut buf = bytes::BytesMut::with_capacity(remaining.min(CHUNK) as usize);
            let read = (&mut file)
                .take(remaining.min(CHUNK))
                .read_buf(&mut buf)
                .await;
            match read {
                Ok(0) | Err(_) => return,
                Ok(n) => remaining -= n as u64,
            }
            let send = tokio::time::timeout(write_timeout, sender.chunks.send(buf.freeze()));
            if !matches!(send.await, Ok(Ok(()))) {
                return;
            }
        }
        sender.complete();
    });
    body
}
