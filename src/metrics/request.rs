//! The worker side: this process's region and the meter each request carries.

use std::pin::Pin;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use super::layout::{self, Finished, SeriesKey, WorkerMetrics};
use super::region::Region;

static REGION: OnceLock<Region> = OnceLock::new();

/// Use `region` (the one the supervisor handed over) for this process's metrics.
/// Call before the first request; a later call is ignored.
pub fn install(region: Region) {
    let _ = REGION.set(region);
}

/// This process's metrics (a private region if none was installed).
pub fn worker() -> &'static WorkerMetrics {
    REGION
        .get_or_init(|| Region::private().expect("an anonymous mapping for metrics"))
        .metrics()
}

/// Measures one request from the service call until both its request body and its
/// response body are done with; records it when the last handle is dropped.
#[derive(Clone)]
pub struct RequestMeter(Arc<Meter>);

struct Meter {
    started: Instant,
    method: u8,
    scheme: u8,
    version: u8,
    status: AtomicU16,
    request_bytes: AtomicU64,
    response_bytes: AtomicU64,
}

impl RequestMeter {
    /// A request arrived: it counts as active from now.
    pub fn start(method: &http::Method, scheme: &str, version: http::Version) -> Self {
        let method = layout::method_index(method);
        let scheme = layout::scheme_index(scheme);
        worker().request_started(method, scheme);
        Self(Arc::new(Meter {
            started: Instant::now(),
            method,
            scheme,
            version: layout::version_index(version),
            status: AtomicU16::new(0),
            request_bytes: AtomicU64::new(0),
            response_bytes: AtomicU64::new(0),
        }))
    }

    /// The response head went out with `status`.
    pub fn responded(&self, status: http::StatusCode) {
        self.0.status.store(status.as_u16(), Ordering::Relaxed);
    }

    /// `bytes` more of the response body went to the connection.
    pub fn sent(&self, bytes: usize) {
        self.0
            .response_bytes
            .fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        let finished = Finished {
            key: SeriesKey::new(
                self.method,
                self.scheme,
                self.version,
                *self.status.get_mut(),
            ),
            duration: self.started.elapsed(),
            request_bytes: *self.request_bytes.get_mut(),
            response_bytes: *self.response_bytes.get_mut(),
        };
        worker().request_finished(self.method, self.scheme, &finished);
    }
}

/// A request body whose data bytes are counted into the request's meter.
pub struct MeteredRequestBody<B> {
    inner: B,
    meter: RequestMeter,
}

impl<B> MeteredRequestBody<B> {
    /// Count `inner`'s bytes as the body of the request `meter` measures.
    pub fn new(inner: B, meter: RequestMeter) -> Self {
        Self { inner, meter }
    }
}

impl<B> Body for MeteredRequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                this.meter
                    .0
                    .request_bytes
                    .fetch_add(data.len() as u64, Ordering::Relaxed);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
