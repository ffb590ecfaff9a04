//! The Python thread pool.
//!
//! Each pool thread attaches to the interpreter once for its whole life and detaches
//! only while it waits for the next request, so a request costs one GIL hand-over and
//! no thread-state creation. Requests arrive through one MPMC channel; the response
//! goes back through a oneshot (the head) and a bounded channel (a streamed body).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use pyo3::prelude::*;
use tokio::runtime::Handle;
use tokio::sync::oneshot;

use super::environ::{EnvironBuilder, RequestHead};
use super::input::InputSource;
use super::response::WsgiResponse;
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
}

/// Everything a pool thread needs to serve a request; shared by all pool threads.
pub struct AppContext {
    /// The WSGI callable (the innermost application, or the outermost Python layer).
    pub app: Py<PyAny>,
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
}

/// Live counters of the pool.
#[derive(Debug, Default)]
pub struct PoolStats {
    /// Threads running application code now.
    pub busy: AtomicUsize,
}

/// A running pool of Python threads.
pub struct PythonPool {
    jobs: Sender<Job>,
    stats: Arc<PoolStats>,
}

impl PythonPool {
    /// Start `threads` pool threads serving `context`.
    pub fn start(threads: usize, context: Arc<AppContext>) -> std::io::Result<Self> {
        let (jobs, queue) = crossbeam_channel::unbounded::<Job>();
        let stats = Arc::new(PoolStats::default());
        for index in 0..threads {
            let queue = queue.clone();
            let context = context.clone();
            let stats = stats.clone();
            std::thread::Builder::new()
                .name(format!("python-{index}"))
                .spawn(move || serve_forever(&queue, &context, &stats))?;
        }
        Ok(Self { jobs, stats })
    }

    /// Queue a request; fails only when the pool has stopped.
    pub fn submit(&self, job: Job) -> Result<(), WsgiError> {
        self.jobs.send(job).map_err(|_| WsgiError::PoolClosed)
    }

    /// Requests waiting for a free Python thread.
    pub fn queued(&self) -> usize {
        self.jobs.len()
    }

    /// Threads running application code now.
    pub fn busy(&self) -> usize {
        self.stats.busy.load(Ordering::Relaxed)
    }
}

fn serve_forever(queue: &Receiver<Job>, context: &AppContext, stats: &PoolStats) {
    Python::attach(|py| loop {
        let Ok(job) = py.detach(|| queue.recv()) else {
            return;
        };
        stats.busy.fetch_add(1, Ordering::Relaxed);
        let served = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            call::run(py, context, job);
        }));
        stats.busy.fetch_sub(1, Ordering::Relaxed);
        if served.is_err() {
            // The reply channel was dropped with the job: the client gets a 500.
            tracing::error!("a Python thread panicked while serving a request; it keeps serving");
        }
    });
}
