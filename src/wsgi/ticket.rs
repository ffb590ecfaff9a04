//! A request's place on its way to a Python thread, shared by the connection side (which
//! reads the body, queues the job and may give up on it) and the pool (which starts it).
//!
//! ```text
//! Reading ──▶ Queued ──▶ Started
//!    │           │
//!    └───────────┴──▶ Abandoned   (client gone, or no thread within queue_timeout)
//! ```
//!
//! A job whose ticket is abandoned is dropped by the pool unstarted: once its client has
//! gone or has been answered, a request never runs application code.

use std::sync::Arc;

use tokio::sync::watch;

/// Where a request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// The body is being read (request buffering); not queued yet.
    Reading,
    /// Waiting for a free Python thread.
    Queued,
    /// A Python thread runs it.
    Started,
    /// It will never run.
    Abandoned,
}

/// Shared by every clone; see the module documentation. The pipeline puts one in the
/// request's extensions; [`super::WsgiService`] carries it into the job.
#[derive(Clone, Debug)]
pub struct JobTicket {
    phase: Arc<watch::Sender<Phase>>,
}

impl Default for JobTicket {
    fn default() -> Self {
        Self::new()
    }
}

impl JobTicket {
    /// A ticket for a request whose body is being read.
    pub fn new() -> Self {
        Self {
            phase: Arc::new(watch::Sender::new(Phase::Reading)),
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Move to `to` if the phase is one of `from`; returns the phase before.
    fn transition(&self, from: &[Phase], to: Phase) -> Phase {
        let mut before = to;
        self.phase.send_if_modified(|phase| {
            before = *phase;
            let moves = from.contains(phase);
            if moves {
                *phase = to;
            }
            moves
        });
        before
    }

    /// The job has been handed to the pool.
    pub fn queued(&self) {
        self.transition(&[Phase::Reading], Phase::Queued);
    }

    /// Called by the pool thread that picked the job: true if it may run, false if it
    /// was abandoned and must be dropped.
    pub fn start(&self) -> bool {
        self.transition(&[Phase::Queued], Phase::Started) == Phase::Queued
    }

    /// Give up on the request unless it has started; returns the phase before (the
    /// request will never run unless that is [`Phase::Started`]).
    pub fn abandon(&self) -> Phase {
        self.transition(&[Phase::Reading, Phase::Queued], Phase::Abandoned)
    }

    /// Wait until the phase satisfies `done`, and return it.
    async fn reached(&self, done: impl FnMut(&Phase) -> bool) -> Phase {
        let mut phases = self.phase.subscribe();
        // The sender lives in `self`: the wait cannot fail.
        let phase = phases.wait_for(done).await.map(|phase| *phase);
        phase.unwrap_or(Phase::Abandoned)
    }

    /// Wait until the body has been read and the job queued (or given up on).
    pub async fn left_reading(&self) -> Phase {
        self.reached(|phase| *phase != Phase::Reading).await
    }

    /// Wait until a Python thread has started the job (or it has been given up on).
    pub async fn left_queue(&self) -> Phase {
        self.reached(|phase| matches!(phase, Phase::Started | Phase::Abandoned))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_abandoned_job_never_starts() {
        let ticket = JobTicket::new();
        ticket.queued();
        assert_eq!(ticket.abandon(), Phase::Queued);
        assert!(!ticket.start());
        assert_eq!(ticket.phase(), Phase::Abandoned);
    }

    #[test]
    fn a_started_job_cannot_be_abandoned() {
        let ticket = JobTicket::new();
        ticket.queued();
        assert!(ticket.start());
        assert_eq!(ticket.abandon(), Phase::Started);
        assert_eq!(ticket.phase(), Phase::Started);
    }

    #[test]
    fn a_job_abandoned_while_its_body_is_read_is_never_queued() {
        let ticket = JobTicket::new();
        assert_eq!(ticket.abandon(), Phase::Reading);
        ticket.queued();
        assert!(!ticket.start());
    }

    #[tokio::test]
    async fn waiters_see_every_step() {
        let ticket = JobTicket::new();
        let waiter = ticket.clone();
        let started = tokio::spawn(async move {
            let queued = waiter.left_reading().await;
            (queued, waiter.left_queue().await)
        });
        ticket.queued();
        assert!(ticket.start());
        let (left_reading, left_queue) = started.await.unwrap();
        assert_ne!(left_reading, Phase::Reading);
        assert_eq!(left_queue, Phase::Started);
    }
}
