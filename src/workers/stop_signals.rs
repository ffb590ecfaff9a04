//! SIGTERM and SIGINT, registered once for a process's life: the supervisor and each
//! worker wait on them wherever they wait, so a stop is heard at once.

use tokio::signal::unix::{signal, Signal, SignalKind};

use super::error::WorkersError;

/// The stop signals of this process.
pub(super) struct StopSignals {
    terminate: Signal,
    interrupt: Signal,
}

impl StopSignals {
    /// Install the handlers (before the process reports ready, so that a signal that
    /// comes just after is not the default, fatal one).
    pub(super) fn new() -> Result<Self, WorkersError> {
        Ok(Self {
            terminate: signal(SignalKind::terminate()).map_err(WorkersError::Signals)?,
            interrupt: signal(SignalKind::interrupt()).map_err(WorkersError::Signals)?,
        })
    }

    /// The next stop signal's name.
    pub(super) async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}
