//! The supervisor: binds the listeners, runs `server.workers` worker processes of this
//! same binary, and keeps them running. No Python runs here.
//!
//! - A worker that crashes (segfault, `os._exit`, OOM kill) is replaced after a backoff;
//!   too many crashes in a short time stop the gateway with a clear message instead of
//!   spinning.
//! - SIGHUP: rolling reload. For each worker a new one is started (new code, new
//!   config) and must report ready before the old one is told to drain. If the new one
//!   fails (an import error: its traceback is in the log), the reload stops and the
//!   running workers keep serving.
//! - SIGTERM/SIGINT: every worker drains (finishes requests in flight within
//!   `server.graceful_timeout`); stragglers are killed after that, then the supervisor
//!   exits 0. The signal is heard at once, also while a reload waits for a slow import
//!   or a crashed worker's backoff runs: a worker still starting is stopped.
//! - A worker that exits with [`EXIT_RECYCLE`] (max_requests) is replaced at once.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use std::sync::Arc;

use super::admin;
use super::error::WorkersError;
use super::handoff::{worker_env, EXIT_RECYCLE};
use crate::config::LoadedConfig;
use crate::metrics::otlp::PeriodicExport;
use crate::metrics::{MetricsHub, RestartReason};
use crate::server::BoundListener;

/// Crashes within [`CRASH_WINDOW`] that count as a crash loop.
const CRASH_LIMIT: usize = 5;
const CRASH_WINDOW: Duration = Duration::from_secs(30);
/// How long a new worker may take to import the app and report ready.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

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
    ready: OwnedFd,
}

struct Supervisor {
    listeners: Vec<BoundListener>,
    workers: HashMap<u32, Worker>,
    exits: mpsc::UnboundedSender<(u32, ExitStatus)>,
    exited: mpsc::UnboundedReceiver<(u32, ExitStatus)>,
    health: Arc<admin::Health>,
    metrics: Arc<std::sync::Mutex<MetricsHub>>,
    crashes: Vec<Instant>,
    graceful_timeout: Duration,
    stop: StopSignals,
    /// Set when SIGTERM/SIGINT arrived while the supervisor was waiting on something
    /// else (a worker starting, a crash backoff): the main loop stops next.
    stop_requested: bool,
}

/// SIGTERM and SIGINT, heard wherever the supervisor waits: a stop must not wait for a
/// slow reload or a crash backoff to finish.
struct StopSignals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> Result<Self, WorkersError> {
        Ok(Self {
            terminate: signal(SignalKind::terminate()).map_err(WorkersError::Signals)?,
            interrupt: signal(SignalKind::interrupt()).map_err(WorkersError::Signals)?,
        })
    }

    /// The next stop signal's name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
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
    let mut supervisor = Supervisor {
        listeners,
        workers: HashMap::new(),
        exits,
        exited,
        health,
        metrics,
        crashes: Vec::new(),
        graceful_timeout: config.server.graceful_timeout,
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

    while !supervisor.stop_requested {
        tokio::select! {
            signal = supervisor.stop.recv() => {
                tracing::info!("{signal} received: draining the workers");
                break;
            }
            _ = hangup.recv() => {
                tracing::info!("SIGHUP received: rolling reload of the workers");
                supervisor.reload().await;
            }
            Some((pid, status)) = supervisor.exited.recv() => {
                if let Err(error) = supervisor.on_exit(pid, status).await {
                    supervisor.stop_all().await;
                    return Err(error);
                }
            }
        }
    }
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
    /// Start a worker for `slot`: this binary, same arguments, plus the handoff.
    fn spawn(&mut self, slot: usize) -> Result<Starting, WorkersError> {
        let (read_end, write_end) = pipe().map_err(WorkersError::Spawn)?;
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
        Ok(Starting {
            pid,
            ready: read_end,
        })
    }

    /// Wait until the worker reports ready; false if it exits or times out first.
    async fn wait_ready(&mut self, starting: Starting) -> bool {
        let fd = starting.ready;
        let read = tokio::task::spawn_blocking(move || {
            let mut byte = [0u8; 1];
            let file = std::fs::File::from(fd);
            std::io::Read::read(&mut &file, &mut byte).unwrap_or(0) == 1
        });
        let outcome = tokio::select! {
            outcome = tokio::time::timeout(READY_TIMEOUT, read) => outcome,
            signal = self.stop.recv() => {
                tracing::info!(
                    pid = starting.pid,
                    "{signal} received while a worker was starting: stopping it and draining the others"
                );
                self.stop_requested = true;
                if let Some(worker) = self.workers.get_mut(&starting.pid) {
                    worker.stopping = true;
                }
                // Not serving yet: nothing to drain.
                send_signal(starting.pid, libc::SIGTERM);
                return false;
            }
        };
        if let Ok(Ok(true)) = outcome {
            tracing::info!(pid = starting.pid, "worker ready");
            if let Some(worker) = self.workers.get_mut(&starting.pid) {
                worker.ready = true;
                self.health.worker_ready();
            }
            return true;
        }
        if let Some(worker) = self.workers.get_mut(&starting.pid) {
            worker.stopping = true;
        }
        if outcome.is_err() {
            // Hung while starting: it will not come up.
            send_signal(starting.pid, libc::SIGKILL);
        }
        // Otherwise the pipe closed: the worker is exiting on its own, logging why.
        false
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
            if let Some(worker) = self.workers.get_mut(&old_pid) {
                worker.stopping = true;
                if std::mem::take(&mut worker.ready) {
                    self.health.worker_gone();
                }
                send_signal(old_pid, libc::SIGTERM);
                self.hub().worker_restarted(RestartReason::Reload);
            }
        }
        tracing::info!("reload complete");
    }

    /// A worker exited: replace it unless it was told to stop.
    async fn on_exit(&mut self, pid: u32, status: ExitStatus) -> Result<(), WorkersError> {
        self.hub().worker_exited(pid);
        let Some(worker) = self.workers.remove(&pid) else {
            return Ok(());
        };
        if worker.ready {
            self.health.worker_gone();
        }
        if worker.stopping {
            tracing::info!(pid, "worker exited after draining");
            return Ok(());
        }
        let recycled = status.code() == Some(EXIT_RECYCLE);
        self.hub().worker_restarted(if recycled {
            RestartReason::Recycle
        } else {
            RestartReason::Crash
        });
        if recycled {
            tracing::info!(
                pid,
                slot = worker.slot,
                "worker recycled; starting its replacement"
            );
        } else {
            let how = match (status.code(), status.signal()) {
                (Some(code), _) => format!("exit code {code}"),
                (None, Some(signal)) => format!("signal {signal}"),
                _ => "unknown status".to_owned(),
            };
            tracing::error!(
                pid,
                slot = worker.slot,
                "worker crashed ({how}); restarting it"
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
                    tracing::info!("{signal} received: draining the workers");
                    self.stop_requested = true;
                    return Ok(());
                }
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

    /// SIGTERM every worker, wait for them within the graceful timeout, then kill.
    async fn stop_all(&mut self) {
        self.health.draining();
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
