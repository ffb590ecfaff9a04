//! The Python thread pool.
//!
//! Each pool thread attaches to the interpreter once for its whole life and detaches
//! only while it waits for the next request, so a request costs one GIL hand-over and
//! no thread-state creation. Requests arrive through one MPMC channel; the response
//! goes back through a oneshot (the head) and a bounded channel (a streamed body).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use pyo3::prelude::*;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::body_rate::MinBodyRate;
use super::environ::{EnvironBuilder, RequestHead};
use super::input::InputSource;
use super::response::WsgiResponse;
use super::ticket::JobTicket;
use super::{call, WsgiError};

/// One request for the application.
pub struct Job {
    /// Method, target, headers and connection facts.
    pub head: RequestHead,
    /// The request body.
    pub input: InputSource,
    /// Where the response head goes.
    pub reply: oneshot::Sender<WsgiResponse>,
    /// The request's span, when traces are exported: the application's span is its
    /// child, and its context reaches the app as `HTTP_TRACEPARENT`.
    pub span: Option<tracing::Span>,
    /// Shared with the connection side: a job abandoned while queued is dropped
    /// unstarted.
    pub ticket: JobTicket,
}

/// Everything a pool thread needs to serve a request; shared by all pool threads.
pub struct AppContext {
    /// The WSGI callable (the innermost application, or the outermost Python layer).
    pub app: Py<PyAny>,
    /// The layers of the outermost Python segment (its span's `wsgi.layers`).
    pub first_segment: String,
    /// The environ template.
    pub environ: EnvironBuilder,
    /// The runtime the connection tasks run on.
    pub runtime: Handle,
    /// How long a streamed chunk may wait for a slow client.
    pub write_timeout: Duration,
    /// How long `wsgi.input` waits for more request body.
    pub read_timeout: Duration,
    /// Largest request body the application may read.
    pub max_body_size: u64,
    /// How fast a streamed request body must arrive.
    pub min_body_rate: MinBodyRate,
}

/// A running pool of Python threads.
///
/// Its busy threads and queue depth are kept in this process's metrics
/// ([`crate::metrics::worker`]), where `/metrics` and the OTLP export read them.
pub struct PythonPool {
    jobs: Sender<Job>,
}

impl PythonPool {
    /// Start `threads` pool threads serving `context`.
    pub fn start(threads: usize, context: Arc<AppContext>) -> std::io::Result<Self> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        for index in 0..threads {
            let queue = queue.clone();
            let context = context.clone();
            std::thread::Builder::new()
                .name(format!("python-{index}"))
                .spawn(move || serve_forever(&queue, &context))?;
            crate::metrics::worker()
                .python_threads
                .fetch_add(1, Ordering::Relaxed);
        }
        Ok(Self { jobs })
    }

    /// Queue a request; fails only when the pool has stopped.
    pub fn submit(&self, job: Job) -> Result<(), WsgiError> {
        let queued = &crate::metrics::worker().python_queued;
        queued.fetch_add(1, Ordering::Relaxed);
        self.jobs.send(job).map_err(|_| {
            queued.fetch_sub(1, Ordering::Relaxed);
            WsgiError::PoolClosed
        })
    }
}

fn serve_forever(queue: &Receiver<Job>, context: &AppContext) {
    let metrics = crate::metrics::worker();
    Python::attach(|py| loop {
        let Ok(job) = py.detach(|| queue.recv()) else {
            return;
        };
        metrics.python_queued.fetch_sub(1, Ordering::Relaxed);
        if !job.ticket.start() {
            // Its client has gone or has been answered: it must not run.
            tracing::debug!("dropped a request abandoned while it waited for a Python thread");
            continue;
        }
        metrics.python_busy.fetch_add(1, Ordering::Relaxed);
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            call::run(py, context, job);
        }));
        metrics.python_busy.fetch_sub(1, Ordering::Relaxed);
        if served.is_err() {
            // The reply channel was dropped with the job: the client gets a 500.
            tracing::error!("a Python thread panicked while serving a request; it keeps serving");
        }
    });
}
