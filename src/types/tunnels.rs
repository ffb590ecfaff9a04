//! Upgraded connections (a WebSocket proxied to an upstream) still open in this
//! process. hyper hands an upgraded connection over and forgets it, so the server's
//! connection count no longer sees it; the proxy holds a [`TunnelGuard`] for each one,
//! and a draining worker waits for them as it waits for its connections (within
//! `server.graceful_timeout`), as an nginx worker that is shutting down keeps serving
//! its WebSockets until they close.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;

static OPEN: AtomicUsize = AtomicUsize::new(0);
static CLOSED: Notify = Notify::const_new();

/// Counts one open tunnel until dropped.
#[must_use = "the tunnel counts as open only while the guard lives"]
pub struct TunnelGuard(());

/// Count a tunnel as open until the returned guard is dropped.
pub fn open() -> TunnelGuard {
    OPEN.fetch_add(1, Ordering::SeqCst);
    TunnelGuard(())
}

impl Drop for TunnelGuard {
    fn drop(&mut self) {
        if OPEN.fetch_sub(1, Ordering::SeqCst) == 1 {
            CLOSED.notify_waiters();
        }
    }
}

/// How many tunnels are open.
pub fn count() -> usize {
    OPEN.load(Ordering::SeqCst)
}

/// Wait until no tunnel is open.
pub async fn all_closed() {
    loop {
        let notified = CLOSED.notified();
        if count() == 0 {
            return;
        }
        notified.await;
    }
}
