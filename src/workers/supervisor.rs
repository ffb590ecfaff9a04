//! The supervisor: binds the listeners, runs `server.workers` worker processes of this
//! same binary, and keeps them running. No Python runs here.
//!
//! - A worker that crashes (segfault, `os._exit`, OOM kill) is replaced after a backoff;
//!   too many crashes in a short time stop the gateway with a clear message instead of
//!   spinning. Any exit the supervisor did not ask for is a crash, whatever its code.
//! - SIGHUP: rolling reload. For each worker a new one is started (new code, new
//!   config) and must report ready before the old one is told to drain. If the new one
//!   fails (an import error: its traceback is in the log), the reload stops and the
//!   running workers keep serving.
//! - A worker that asks to be recycled (`max_requests`, `max_rss`, `timeout`: a
//!   [`WorkerMessage::Recycle`] on its control pipe) is replaced the same way, new
//!   before old, so even a single worker leaves no gap. If the replacement fails to
//!   start, the old worker keeps serving and the replacement is tried again after a
//!   backoff.
//! - SIGTERM/SIGINT: `/readyz` turns 503 and the workers serve on for
//!   `server.shutdown_delay` (a second signal cuts it short). Then, once the workers
//!   have accepted what was queued, the listening sockets are shut down, so the kernel
//!   refuses new connections instead of queueing them for no one, and every worker
//!   drains (finishes requests in flight within `server.graceful_timeout`); stragglers
//!   are killed after that, then the supervisor exits 0. The signal is heard at once,
//!   also while a reload waits for a slow import or a crashed worker's backoff runs: a
//!   worker still starting is stopped.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use std::sync::Arc;

use super::admin;
use super::error::WorkersError;
use super::handoff::{worker_env, WorkerMessage};
use super::stop_signals::StopSignals;
use crate::config::LoadedConfig;
use crate::metrics::otlp::PeriodicExport;
use crate::metrics::{MetricsHub, RestartReason};
use crate::server::BoundListener;

/// Crashes within [`CRASH_WINDOW`] that count as a crash loop.
const CRASH_LIMIT: usize = 5;
const CRASH_WINDOW: Duration = Duration::from_secs(30);
/// How long a new worker may take to import the app and report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the workers may take to accept what is queued before the stop refuses
/// new connections (what is still queued then is reset).
const QUEUE_HANDOFF: Duration = Duration::from_secs(1);
/// The longest wait before starting a recycled worker's replacement again.
const RECYCLE_RETRY_MAX: Duration = Duration::from_secs(30);

/// One running worker process.
struct Worker {
    slot: usize,
    /// Reported ready (counted in the health state).
    ready: bool,
    /// Set once the supervisor has told it to stop: its exit is expected.
    stopping: bool,
}

/// A worker that was started and whose readiness is not known yet.
struct Starting {
    pid: u32,
    /// The read end of its control pipe.
    control: pipe::Receiver,
}

/// A worker asked to be replaced; `failed_starts` replacements did not start so far.
struct RecycleRequest {
    pid: u32,
    failed_starts: u32,
}

struct Supervisor {
    listeners: Vec<BoundListener>,
    workers: HashMap<u32, Worker>,
    exits: mpsc::UnboundedSender<(u32, ExitStatus)>,
    exited: mpsc::UnboundedReceiver<(u32, ExitStatus)>,
    recycle_requests: mpsc::UnboundedSender<RecycleRequest>,
    recycle_requested: mpsc::UnboundedReceiver<RecycleRequest>,
    health: Arc<admin::Health>,
    metrics: Arc<std::sync::Mutex<MetricsHub>>,
    crashes: Vec<Instant>,
    graceful_timeout: Duration,
    shutdown_delay: Duration,
    stop: StopSignals,
    /// Set once SIGTERM/SIGINT arrived, wherever the supervisor was waiting (the main
    /// loop, a worker starting, a crash backoff): the main loop stops next.
    stop_requested: bool,
}

/// Bind the listeners, start the workers, and supervise them until SIGTERM/SIGINT.
pub async fn supervise(loaded: LoadedConfig) -> Result<(), WorkersError> {
    let config = &loaded.config;
    let listeners = crate::server::bind_all(&config.server)
        .map_err(|(address, source)| WorkersError::Bind { address, source })?;
    let health = admin::Health::new(config.server.workers);
    let metrics = Arc::new(std::sync::Mutex::new(MetricsHub::new()));
    let metrics_export = PeriodicExport::start(&config.telemetry, metrics.clone());
    if let Some(address) = &config.telemetry.admin_bind {
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .map_err(|source| WorkersError::Bind {
                address: address.clone(),
                source,
            })?;
        if let Ok(local) = listener.local_addr() {
            tracing::info!("admin endpoints (/healthz, /readyz, /metrics) on http://{local}");
        }
        admin::spawn(listener, health.clone(), metrics.clone());
    }
    let (exits, exited) = mpsc::unbounded_channel();
    let (recycle_requests, recycle_requested) = mpsc::unbounded_channel();
    let mut supervisor = Supervisor {
        listeners,
        workers: HashMap::new(),
        exits,
        exited,
        recycle_requests,
        recycle_requested,
        health,
        metrics,
        crashes: Vec::new(),
        graceful_timeout: config.server.graceful_timeout,
        shutdown_delay: config.server.shutdown_delay,
        stop: StopSignals::new()?,
        stop_requested: false,
    };
    let mut hangup = signal(SignalKind::hangup()).map_err(WorkersError::Signals)?;

    for slot in 0..config.server.workers {
        let starting = supervisor.spawn(slot)?;
        if !supervisor.wait_ready(starting).await {
            supervisor.stop_all().await;
            if supervisor.stop_requested {
                return Ok(());
            }
            return Err(WorkersError::StartupFailed { slot });
        }
    }
    for listener in &supervisor.listeners {
        tracing::info!(
            workers = config.server.workers,
            threads = config.server.threads,
            "listening on {}",
            listener.describe()
        );
    }

    if let Err(error) = supervisor.run_until_stop(&mut hangup).await {
        supervisor.stop_all().await;
        return Err(error);
    }
    supervisor.linger().await;
    supervisor.stop_all().await;
    for listener in &supervisor.listeners {
        if let Some(path) = listener.created_file() {
            let _ = std::fs::remove_file(path);
        }
    }
    // The last export carries the final counts of the workers that just drained.
    if let Some(export) = metrics_export {
        export.finish().await;
    }
    tracing::info!("all workers stopped; exiting");
    Ok(())
}

impl Supervisor {
    /// Keep the workers running until a stop signal: replace crashed ones, reload them
    /// on SIGHUP, replace those that ask to be recycled. Fails on a crash loop.
    async fn run_until_stop(
        &mut self,
        hangup: &mut tokio::signal::unix::Signal,
    ) -> Result<(), WorkersError> {
        while !self.stop_requested {
            tokio::select! {
                signal = self.stop.recv() => self.stop_heard(signal),
                _ = hangup.recv() => {
                    tracing::info!("SIGHUP received: rolling reload of the workers");
                    self.reload().await;
                }
                Some((pid, status)) = self.exited.recv() => self.on_exit(pid, status).await?,
                Some(request) = self.recycle_requested.recv() => self.recycle(request).await,
            }
        }
        Ok(())
    }

    /// A stop signal arrived: readiness turns 503 now, the drain starts after
    /// `server.shutdown_delay`.
    fn stop_heard(&mut self, signal: &'static str) {
        self.stop_requested = true;
        self.health.draining();
        if self.shutdown_delay.is_zero() {
            tracing::info!("{signal} received: draining the workers");
        } else {
            tracing::info!(
                "{signal} received: serving on for server.shutdown_delay ({:?}), then \
                 draining the workers; a second SIGTERM or SIGINT drains at once",
                self.shutdown_delay
            );
        }
    }

    /// After a stop signal, keep serving for `server.shutdown_delay` while load
    /// balancers stop sending. Workers that exit meanwhile are not replaced; the delay
    /// ends early on a second signal or when no worker is left.
    async fn linger(&mut self) {
        if self.shutdown_delay.is_zero() {
            return;
        }
        let deadline = tokio::time::Instant::now() + self.shutdown_delay;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::info!("server.shutdown_delay over: draining the workers");
                    return;
                }
                signal = self.stop.recv() => {
                    tracing::info!("{signal} received again: draining the workers now");
                    return;
                }
                Some((pid, status)) = self.exited.recv() => {
                    if self.remove_exited(pid, status).is_some_and(|w| !w.stopping) {
                        tracing::warn!(
                            pid,
                            "worker exited ({}) during server.shutdown_delay; not replaced",
                            describe(status)
                        );
                    }
                    if self.workers.is_empty() {
                        tracing::info!("no worker left: draining now");
                        return;
                    }
                }
                Some(request) = self.recycle_requested.recv() => {
                    tracing::debug!(pid = request.pid, "not recycled: the gateway is stopping");
                }
            }
        }
    }

    /// Start a worker for `slot`: this binary, same arguments, plus the handoff.
    fn spawn(&mut self, slot: usize) -> Result<Starting, WorkersError> {
        let (read_end, write_end) = pipe().map_err(WorkersError::Spawn)?;
        let control = pipe::Receiver::from_owned_fd(read_end).map_err(WorkersError::Spawn)?;
        let region = match self.hub().new_region() {
            Ok(region) => Some(region),
            Err(error) => {
                tracing::warn!("{error}; the new worker's metrics are not reported");
                None
            }
        };
        let metrics_fd = region.as_ref().and_then(crate::metrics::Region::fd);
        // This binary again with the same arguments, or the same Python entry point
        // when the gateway runs inside Python (pip install): see `launch`.
        let mut command = super::launch::worker_command();
        let write_fd = write_end.as_raw_fd();
        for (key, value) in worker_env(slot, &self.listeners, write_fd, metrics_fd) {
            command.env(key, value);
        }
        let inherited: Vec<RawFd> = self
            .listeners
            .iter()
            .map(BoundListener::raw_fd)
            .chain([write_fd])
            .chain(metrics_fd)
            .collect();
        let supervisor = std::process::id() as libc::pid_t;
        // SAFETY: between fork and exec only async-signal-safe calls are made (fcntl,
        // prctl, getppid).
        unsafe {
            command.pre_exec(move || {
                for fd in &inherited {
                    if libc::fcntl(*fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                // If the supervisor dies (even by SIGKILL), the worker drains and exits
                // instead of serving on without it. The supervisor forks from its main
                // thread, which lives as long as it does.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != supervisor {
                    return Err(std::io::Error::other("the supervisor exited during spawn"));
                }
                Ok(())
            });
        }
        let mut child = tokio::process::Command::from(command)
            .kill_on_drop(false)
            .spawn()
            .map_err(WorkersError::Spawn)?;
        drop(write_end);
        let pid = child.id().unwrap_or(0);
        if let Some(region) = region {
            self.hub().worker_started(pid, region);
        }
        let exits = self.exits.clone();
        tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                let _ = exits.send((pid, status));
            }
        });
        self.workers.insert(
            pid,
            Worker {
                slot,
                ready: false,
                stopping: false,
            },
        );
        tracing::info!(slot, pid, "worker started");
        Ok(Starting { pid, control })
    }

    /// Wait until the worker reports ready; false if it exits or times out first. A
    /// ready worker's control pipe is then watched for a recycle request.
    async fn wait_ready(&mut self, starting: Starting) -> bool {
        let Starting { pid, control } = starting;
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(READY_TIMEOUT, read_until_ready(control)) => outcome,
            signal = self.stop.recv() => {
                tracing::info!(pid, "{signal} received while a worker was starting: stopping it");
                self.stop_heard(signal);
                if let Some(worker) = self.workers.get_mut(&pid) {
                    worker.stopping = true;
                }
                // Not serving yet: nothing to drain.
                send_signal(pid, libc::SIGTERM);
                return false;
            }
        };
        if let Ok(Some(control)) = outcome {
            tracing::info!(pid, "worker ready");
            if let Some(worker) = self.workers.get_mut(&pid) {
                worker.ready = true;
                self.health.worker_ready();
            }
            self.watch_control(pid, control);
            return true;
        }
        if let Some(worker) = self.workers.get_mut(&pid) {
            worker.stopping = true;
        }
        if outcome.is_err() {
            // Hung while starting: it will not come up.
            send_signal(pid, libc::SIGKILL);
        }
        // Otherwise the pipe closed: the worker is exiting on its own, logging why.
        false
    }

    /// Forward the recycle request of a ready worker to the main loop.
    fn watch_control(&self, pid: u32, mut control: pipe::Receiver) {
        let requests = self.recycle_requests.clone();
        tokio::spawn(async move {
            while let Some(message) = next_message(&mut control).await {
                if message == WorkerMessage::Recycle {
                    let request = RecycleRequest {
                        pid,
                        failed_starts: 0,
                    };
                    if requests.send(request).is_err() {
                        return;
                    }
                }
            }
        });
    }

    /// Replace a worker that asked to be recycled, new before old: start the
    /// replacement, wait for it to serve, then tell the old one to drain. If the
    /// replacement does not start, the old worker keeps serving and the request comes
    /// back after a backoff.
    async fn recycle(&mut self, request: RecycleRequest) {
        let RecycleRequest { pid, failed_starts } = request;
        // Gone meanwhile (crashed, or replaced by a reload): nothing to do.
        let Some(slot) = self
            .workers
            .get(&pid)
            .filter(|worker| !worker.stopping)
            .map(|worker| worker.slot)
        else {
            return;
        };
        tracing::info!(
            pid,
            slot,
            "worker asked to be recycled; starting its replacement"
        );
        let started = match self.spawn(slot) {
            Ok(starting) => self.wait_ready(starting).await,
            Err(error) => {
                tracing::error!("{error}");
                false
            }
        };
        if started {
            tracing::info!(pid, slot, "replacement ready; draining the recycled worker");
            self.retire(pid, RestartReason::Recycle);
            return;
        }
        if self.stop_requested {
            return;
        }
        let failed_starts = failed_starts + 1;
        let backoff = Duration::from_secs(1 << (failed_starts - 1).min(5)).min(RECYCLE_RETRY_MAX);
        tracing::error!(
            pid,
            slot,
            "the replacement of a recycled worker did not start (its error is in the log); \
             the worker keeps serving; trying again in {backoff:?}"
        );
        let requests = self.recycle_requests.clone();
        tokio::spawn(async move {
            tokio::time::sleep(backoff).await;
            let _ = requests.send(RecycleRequest { pid, failed_starts });
        });
    }

    /// Tell a worker whose replacement serves to drain, and count the restart.
    fn retire(&mut self, pid: u32, reason: RestartReason) {
        let Some(worker) = self.workers.get_mut(&pid) else {
            return;
        };
        worker.stopping = true;
        if std::mem::take(&mut worker.ready) {
            self.health.worker_gone();
        }
        send_signal(pid, libc::SIGTERM);
        self.hub().worker_restarted(reason);
    }

    /// Replace every worker, one at a time, new before old.
    async fn reload(&mut self) {
        let old: Vec<(u32, usize)> = self
            .workers
            .iter()
            .filter(|(_, w)| !w.stopping)
            .map(|(pid, w)| (*pid, w.slot))
            .collect();
        for (old_pid, slot) in old {
            let starting = match self.spawn(slot) {
                Ok(starting) => starting,
                Err(error) => {
                    tracing::error!("reload stopped: {error}");
                    return;
                }
            };
            if !self.wait_ready(starting).await {
                if self.stop_requested {
                    tracing::info!("reload abandoned for the stop");
                    return;
                }
                tracing::error!(
                    "reload failed: the new worker did not start (its error is in the log); \
                     the running workers keep serving"
                );
                return;
            }
            self.retire(old_pid, RestartReason::Reload);
        }
        tracing::info!("reload complete");
    }

    /// Forget a worker that exited; `None` if it was not ours.
    fn remove_exited(&mut self, pid: u32, status: ExitStatus) -> Option<Worker> {
        self.hub().worker_exited(pid);
        let worker = self.workers.remove(&pid)?;
        if worker.ready {
            self.health.worker_gone();
        }
        if worker.stopping {
            tracing::info!(pid, "worker exited after draining ({})", describe(status));
        }
        Some(worker)
    }

    /// A worker exited: replace it unless it was told to stop.
    async fn on_exit(&mut self, pid: u32, status: ExitStatus) -> Result<(), WorkersError> {
        let Some(worker) = self.remove_exited(pid, status) else {
            return Ok(());
        };
        if worker.stopping {
            return Ok(());
        }
        // Whatever its exit code: a worker that wants to be replaced says so on its
        // control pipe and is stopped by the supervisor, so an app's `os._exit(3)` is
        // never taken for a recycle.
        self.hub().worker_restarted(RestartReason::Crash);
        tracing::error!(
            pid,
            slot = worker.slot,
            "worker crashed ({}); restarting it",
            describe(status)
        );
        let now = Instant::now();
        self.crashes
            .retain(|t| now.duration_since(*t) < CRASH_WINDOW);
        self.crashes.push(now);
        if self.crashes.len() >= CRASH_LIMIT {
            return Err(WorkersError::CrashLoop {
                crashes: self.crashes.len(),
                window: CRASH_WINDOW,
            });
        }
        let backoff =
            Duration::from_millis(100 << (self.crashes.len() - 1)).min(Duration::from_secs(5));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            signal = self.stop.recv() => {
                self.stop_heard(signal);
                return Ok(());
            }
        }
        let starting = self.spawn(worker.slot)?;
        if !self.wait_ready(starting).await && !self.stop_requested {
            tracing::error!(slot = worker.slot, "the replacement worker did not start");
            self.crashes.push(Instant::now());
        }
        Ok(())
    }

    fn hub(&self) -> std::sync::MutexGuard<'_, MetricsHub> {
        self.metrics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Refuse new connections, SIGTERM every worker, wait for them within the graceful
    /// timeout, then kill.
    async fn stop_all(&mut self) {
        self.health.draining();
        // Every connection is either taken by a worker or refused at once, never queued
        // for no one and reset when the last descriptor closes: the workers, still
        // accepting, empty the queues first (bounded), then the sockets refuse.
        let deadline = Instant::now() + QUEUE_HANDOFF;
        while self
            .listeners
            .iter()
            .any(BoundListener::has_queued_connections)
            && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for listener in &mut self.listeners {
            if let Err(error) = listener.refuse_new_connections() {
                tracing::warn!("cannot shut {} down: {error}", listener.describe());
            }
        }
        for (pid, worker) in self.workers.iter_mut() {
            // One already stopping (draining, or exiting after a failed start) is not
            // signalled again: a worker that failed to start has no handler yet, and
            // SIGTERM would kill it before it logs why.
            if !worker.stopping {
                worker.stopping = true;
                send_signal(*pid, libc::SIGTERM);
            }
        }
        let deadline = tokio::time::Instant::now() + self.graceful_timeout + Duration::from_secs(5);
        while !self.workers.is_empty() {
            match tokio::time::timeout_at(deadline, self.exited.recv()).await {
                Ok(Some((pid, _))) => {
                    self.workers.remove(&pid);
                    self.hub().worker_exited(pid);
                }
                Ok(None) => break,
                Err(_) => {
                    for pid in self.workers.keys() {
                        tracing::warn!(pid, "worker did not stop in time; killing it");
                        send_signal(*pid, libc::SIGKILL);
                    }
                    break;
                }
            }
        }
    }
}

/// `exit code 3` or `signal 9`, for the log.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => "unknown status".to_owned(),
    }
}

/// Read the control pipe until the worker reports ready; `None` if it closes first.
async fn read_until_ready(mut control: pipe::Receiver) -> Option<pipe::Receiver> {
    loop {
        if next_message(&mut control).await? == WorkerMessage::Ready {
            return Some(control);
        }
    }
}

/// The next message on a control pipe; `None` once the worker has closed it.
async fn next_message(control: &mut pipe::Receiver) -> Option<WorkerMessage> {
    loop {
        if let Some(message) = WorkerMessage::from_byte(control.read_u8().await.ok()?) {
            return Some(message);
        }
    }
}

fn send_signal(pid: u32, signal: i32) {
    if pid != 0 {
        // SAFETY: kill(2) on a child of ours.
        unsafe { libc::kill(pid as i32, signal) };
    }
}

/// A pipe whose ends are closed on exec unless cleared for a child.
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 fills two descriptors we then own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and ours.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
