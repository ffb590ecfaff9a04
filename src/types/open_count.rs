//! A count of things still open (connections, upgraded tunnels) that a draining worker
//! waits to reach zero.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use tokio::sync::Notify;

/// How many things are open; each is counted by an [`OpenGuard`] until it is dropped.
#[derive(Default)]
pub struct OpenCount {
    open: AtomicUsize,
    closed: Notify,
}

/// Counts one open thing until dropped.
#[must_use = "counted as open only while the guard lives"]
pub struct OpenGuard(Arc<OpenCount>);

impl OpenCount {
    /// Count one more open thing until the returned guard is dropped.
    pub fn hold(self: &Arc<Self>) -> OpenGuard {
        self.open.fetch_add(1, Ordering::SeqCst);
        OpenGuard(self.clone())
    }

    /// How many are open.
    pub fn count(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }

    /// Wait until none is open.
    pub async fn all_closed(&self) {
        loop {
            let notified = self.closed.notified();
            if self.count() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        if self.0.open.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.closed.notify_waiters();
        }
    }
}

/// Upgraded connections (a WebSocket proxied to an upstream) open in this process.
/// hyper hands an upgraded connection over and forgets it, so the server's connection
/// count no longer sees it; the proxy holds a guard for each one, and a draining
/// worker waits for them as for its connections (within `server.graceful_timeout`), as
/// an nginx worker that is shutting down keeps serving its WebSockets until they close.
pub fn tunnels() -> &'static Arc<OpenCount> {
    static TUNNELS: LazyLock<Arc<OpenCount>> = LazyLock::new(Arc::default);
    &TUNNELS
}
