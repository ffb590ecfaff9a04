//! The response body handed from a Python thread to hyper.
//!
//! A streamed body goes through a [`stream_channel`]: a queue bounded in bytes, not in
//! chunks, where small writes are appended to one buffer and the connection takes
//! everything ready as one frame. An application yielding 100 000 one-byte chunks thus
//! gives a few frames of [`FRAME_TARGET`] bytes, not 100 000 frames of one byte (six
//! bytes of chunked framing each) or 100 000 compressor flushes.
//!
//! # When a frame leaves
//! The connection takes a frame at once when [`FRAME_TARGET`] bytes are ready or the
//! body has ended. A smaller batch waits while the application keeps producing, and
//! leaves as soon as the producer has been silent for [`LINGER`] (the application is
//! waiting: on a database, a sleep, the next event), and never later than [`MAX_HOLD`]
//! after it was first seen. Only then does the body return `Pending`, which is when
//! hyper flushes the socket and the compression layer its encoder. So chunks yielded a
//! second apart still arrive a second apart, and a producer racing through tiny chunks
//! fills whole frames, however the threads happen to be scheduled.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// A frame leaves at once when this much is ready.
pub const FRAME_TARGET: usize = 16 << 10;
/// A smaller batch leaves once the producer has added nothing for this long.
pub const LINGER: Duration = Duration::from_millis(1);
/// A smaller batch never waits longer than this for more.
pub const MAX_HOLD: Duration = Duration::from_millis(20);

/// Why a response body stopped before its end. hyper closes the connection (HTTP/1) or
/// resets the stream (HTTP/2) so the client never mistakes a cut body for a whole one.
#[derive(Debug, thiserror::Error)]
#[error("response body aborted: {0}")]
pub struct BodyAborted(pub &'static str);

/// A response body: either complete in memory or streamed through a [`stream_channel`].
pub enum WsgiBody {
    /// The whole body (possibly empty), known before the head was sent.
    Full(Option<Bytes>),
    /// Chunks as the application yields them.
    Stream(StreamBody),
}

impl WsgiBody {
    /// An empty body.
    pub fn empty() -> Self {
        WsgiBody::Full(None)
    }
}

/// Why a chunk was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The queue holds its capacity already; wait with [`StreamSender::send`].
    Full,
    /// The connection dropped the body: the client is gone.
    Closed,
}

/// A bounded byte queue for a streamed body: the sender is owned by the producer (a
/// Python thread, or a task reading a file), the body by hyper. `capacity` bytes may
/// wait in it; a chunk is accepted whenever less than that is queued, so one chunk
/// larger than the capacity still gets through.
pub fn stream_channel(capacity: usize) -> (StreamSender, WsgiBody) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        room: Notify::new(),
        capacity,
    });
    (
        StreamSender {
            shared: shared.clone(),
        },
        WsgiBody::Stream(StreamBody {
            shared,
            pacing: Pacing::default(),
            aborting: false,
        }),
    )
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when the body takes a frame (or is dropped): a blocked sender retries.
    room: Notify,
    capacity: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent after every statement: a panic elsewhere cannot leave
        // it half-updated, so a poisoned lock is still good.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct Queue {
    /// Chunks of FRAME_TARGET bytes or more, each kept whole (no copy), in order,
    /// before `open`.
    sealed: VecDeque<Bytes>,
    /// Small chunks, appended one after another.
    open: BytesMut,
    /// Bytes in `sealed` and `open`.
    buffered: usize,
    /// Chunks ever queued: the body sees from it whether the producer is still busy.
    pushes: u64,
    end: End,
    receiver_gone: bool,
    /// The body's waker, while it waits for the producer.
    receiver: Option<Waker>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum End {
    #[default]
    Open,
    /// The producer called [`StreamSender::complete`].
    Complete,
    /// The producer went away without completing.
    Aborted,
}

enum Chunk<'a> {
    Borrowed(&'a [u8]),
    Owned(Bytes),
}

impl Chunk<'_> {
    fn len(&self) -> usize {
        match self {
            Chunk::Borrowed(data) => data.len(),
            Chunk::Owned(data) => data.len(),
        }
    }
}

impl Queue {
    /// Queue `chunk`; returns the body's waker if it should be woken: a new batch
    /// begins (so it can start timing it) or a whole frame is ready.
    fn push(&mut self, chunk: Chunk<'_>) -> Option<Waker> {
        let before = self.buffered;
        let len = chunk.len();
        if len >= FRAME_TARGET {
            if !self.open.is_empty() {
                self.sealed.push_back(self.open.split().freeze());
            }
            self.sealed.push_back(match chunk {
                Chunk::Borrowed(data) => Bytes::copy_from_slice(data),
                Chunk::Owned(data) => data,
            });
        } else {
            match chunk {
                Chunk::Borrowed(data) => self.open.extend_from_slice(data),
                Chunk::Owned(data) => self.open.extend_from_slice(&data),
            }
        }
        self.buffered += len;
        self.pushes += 1;
        let wake = before == 0 || (before < FRAME_TARGET && self.buffered >= FRAME_TARGET);
        if wake {
            self.receiver.take()
        } else {
            None
        }
    }

    /// Everything ready, as one frame (a large chunk leaves on its own).
    fn take(&mut self) -> Bytes {
        let frame = match self.sealed.pop_front() {
            Some(chunk) => chunk,
            None => self.open.split().freeze(),
        };
        self.buffered -= frame.len();
        frame
    }

    fn end(&mut self, end: End) -> Option<Waker> {
        if self.end == End::Open {
            self.end = end;
        }
        self.receiver.take()
    }
}

/// The sending end of a streamed body. Dropping it without [`StreamSender::complete`]
/// aborts the body, so the client sees the response was cut.
pub struct StreamSender {
    shared: Arc<Shared>,
}

impl StreamSender {
    fn offer<'a>(&self, chunk: Chunk<'a>) -> Result<(), (SendError, Chunk<'a>)> {
        let mut queue = self.shared.lock();
        if queue.receiver_gone {
            return Err((SendError::Closed, chunk));
        }
        if queue.buffered >= self.shared.capacity {
            return Err((SendError::Full, chunk));
        }
        let waker = queue.push(chunk);
        drop(queue);
        if let Some(waker) = waker {
            waker.wake();
        }
        Ok(())
    }

    /// Queue a copy of `data` if there is room; never blocks.
    pub fn try_send(&self, data: &[u8]) -> Result<(), SendError> {
        self.offer(Chunk::Borrowed(data))
            .map_err(|(error, _)| error)
    }

    /// Queue `data`, waiting for room.
    pub async fn send(&self, data: Bytes) -> Result<(), SendError> {
        let mut chunk = Chunk::Owned(data);
        loop {
            let room = self.shared.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.offer(chunk) {
                Ok(()) => return Ok(()),
                Err((SendError::Closed, _)) => return Err(SendError::Closed),
                Err((SendError::Full, back)) => chunk = back,
            }
            room.await;
        }
    }

    /// Mark the body as complete: the client gets its proper end.
    pub fn complete(self) {
        let waker = self.shared.lock().end(End::Complete);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

impl Drop for StreamSender {
    fn drop(&mut self) {
        // After complete() this changes nothing.
        let waker = self.shared.lock().end(End::Aborted);
        if let Some(waker) = waker {
            waker.wake();
        }
    }
}

/// The receiving end of a streamed body, polled by hyper.
pub struct StreamBody {
    shared: Arc<Shared>,
    /// When the small batch queued now may leave.
    pacing: Pacing,
    /// The producer stopped without completing; the error is reported on the next poll,
    /// after hyper has had a chance to flush what it already holds.
    aborting: bool,
}

/// Times the batches smaller than a frame.
#[derive(Default)]
struct Pacing {
    /// The batch being held back while the producer keeps adding to it.
    batch: Option<Batch>,
    /// The batch timer, kept from one batch to the next.
    timer: Option<Pin<Box<Sleep>>>,
}

impl Pacing {
    /// Whether the small batch queued now may leave (see [`Batch::ready`]); starts
    /// timing it if it is new.
    fn ready(&mut self, cx: &mut Context<'_>, pushes: u64) -> bool {
        let batch = match &mut self.batch {
            Some(batch) => batch,
            None => {
                let now = Instant::now();
                match &mut self.timer {
                    Some(timer) => timer.as_mut().reset(now + LINGER),
                    None => self.timer = Some(Box::pin(tokio::time::sleep_until(now + LINGER))),
                }
                self.batch.insert(Batch { since: now, pushes })
            }
        };
        let timer = self.timer.as_mut().expect("set with the batch").as_mut();
        batch.ready(timer, cx, pushes)
    }

    /// The batch has left.
    fn done(&mut self) {
        self.batch = None;
    }
}

/// A batch smaller than a frame, waiting for the producer to pause.
struct Batch {
    /// When the body first saw it.
    since: Instant,
    /// The producer's push count when the timer was last set.
    pushes: u64,
}

impl Batch {
    /// True once the batch may leave: the producer added nothing during the last
    /// LINGER, or the batch is MAX_HOLD old. Otherwise `timer` is armed on `cx`.
    fn ready(&mut self, mut timer: Pin<&mut Sleep>, cx: &mut Context<'_>, pushes: u64) -> bool {
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let now = Instant::now();
            let deadline = self.since + MAX_HOLD;
            if pushes == self.pushes || now >= deadline {
                return true;
            }
            // Still producing: give it a little longer.
            self.pushes = pushes;
            timer.as_mut().reset((now + LINGER).min(deadline));
        }
    }
}

impl StreamBody {
    fn poll_stream(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, BodyAborted>>> {
        let mut queue = self.shared.lock();
        if queue.buffered > 0 {
            let ready = queue.end != End::Open
                || queue.buffered >= FRAME_TARGET
                || self.pacing.ready(cx, queue.pushes);
            if !ready {
                queue.receiver = Some(cx.waker().clone());
                return Poll::Pending;
            }
            let frame = queue.take();
            drop(queue);
            self.pacing.done();
            self.shared.room.notify_one();
            return Poll::Ready(Some(Ok(frame)));
        }
        match queue.end {
            End::Complete => Poll::Ready(None),
            End::Aborted if self.aborting => Poll::Ready(Some(Err(BodyAborted(
                "the application's response ended early",
            )))),
            End::Aborted => {
                // hyper flushes its buffer when a body is pending: let the client
                // receive every byte that was produced before the connection is cut.
                self.aborting = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            End::Open => {
                queue.receiver = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for StreamBody {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.receiver_gone = true;
        queue.sealed.clear();
        queue.open = BytesMut::new();
        queue.buffered = 0;
        drop(queue);
        // A sender blocked on a full queue learns that the client is gone.
        self.shared.room.notify_one();
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
            WsgiBody::Stream(stream) => stream
                .poll_stream(cx)
                .map(|frame| frame.map(|frame| frame.map(Frame::data))),
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
    let (sender, body) = stream_channel(4 * CHUNK as usize);
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
            let send = tokio::time::timeout(write_timeout, sender.send(buf.freeze()));
            if !matches!(send.await, Ok(Ok(()))) {
                return;
            }
        }
        sender.complete();
    });
    body
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn frames_of(body: &mut WsgiBody) -> Vec<Bytes> {
        let mut frames = Vec::new();
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        while let Poll::Ready(Some(frame)) = Pin::new(&mut *body).poll_frame(&mut cx) {
            frames.push(frame.unwrap().into_data().unwrap());
        }
        frames
    }

    #[tokio::test]
    async fn small_chunks_queued_together_leave_as_one_frame() {
        let (sender, mut body) = stream_channel(1 << 20);
        for byte in 0..100u8 {
            sender.try_send(&[byte]).unwrap();
        }
        // Nothing leaves while the batch is small and the producer may add to it.
        assert!(frames_of(&mut body).is_empty());
        sender.complete();
        let frames = frames_of(&mut body);
        assert_eq!(frames, vec![Bytes::from((0..100u8).collect::<Vec<_>>())]);
    }

    #[tokio::test]
    async fn a_full_frame_leaves_at_once_and_large_chunks_stay_whole() {
        let (sender, mut body) = stream_channel(1 << 20);
        sender.try_send(&[1; FRAME_TARGET - 1]).unwrap();
        sender.try_send(&[2; 10]).unwrap();
        let large = vec![3; 3 * FRAME_TARGET];
        sender.try_send(&large).unwrap();
        let frames = frames_of(&mut body);
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].len(), FRAME_TARGET + 9);
        assert_eq!(frames[1], large);
    }

    #[tokio::test]
    async fn a_small_batch_leaves_once_the_producer_pauses() {
        let (sender, body) = stream_channel(1 << 20);
        sender.try_send(b"first").unwrap();
        let mut body = std::pin::pin!(body);
        // The producer adds nothing more: the batch leaves after LINGER.
        let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(frame, "first");
        sender.try_send(b"second").unwrap();
        drop(sender);
        let frame = body.frame().await.unwrap().unwrap().into_data().unwrap();
        assert_eq!(frame, "second");
        assert!(
            body.frame().await.unwrap().is_err(),
            "no complete(): aborted"
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_until_the_body_takes_a_frame() {
        let (sender, mut body) = stream_channel(FRAME_TARGET);
        sender.try_send(&[0; FRAME_TARGET]).unwrap();
        assert_eq!(sender.try_send(b"x"), Err(SendError::Full));
        assert_eq!(frames_of(&mut body).len(), 1);
        sender.try_send(b"x").unwrap();
        drop(body);
        assert_eq!(sender.try_send(b"y"), Err(SendError::Closed));
        assert_eq!(
            sender.send(Bytes::from_static(b"z")).await,
            Err(SendError::Closed)
        );
    }
}
