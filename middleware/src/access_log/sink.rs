//! Where access log lines go: a writer thread fed by a bounded channel, so a slow
//! disk or a full pipe never stalls a request. Lines that find the channel full are
//! dropped and counted.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Sender, TrySendError};

/// Lines buffered between requests and the writer thread.
const CAPACITY: usize = 16_384;

/// The destination of the access log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// A file, appended to.
    File(PathBuf),
}

impl Output {
    /// `"stdout"`, `"stderr"` or a file path.
    pub fn parse(text: &str) -> Self {
        match text {
            "stdout" | "-" => Output::Stdout,
            "stderr" => Output::Stderr,
            path => Output::File(PathBuf::from(path)),
        }
    }
}

/// The sending side of the log writer.
#[derive(Clone, Debug)]
pub struct LogSink {
    lines: Sender<String>,
    dropped: Arc<AtomicU64>,
}

impl LogSink {
    /// Open `output` and start its writer thread.
    pub fn start(output: &Output) -> std::io::Result<Self> {
        let writer: Box<dyn Write + Send> = match output {
            Output::Stdout => Box::new(std::io::stdout()),
            Output::Stderr => Box::new(std::io::stderr()),
            Output::File(path) => {
                Box::new(OpenOptions::new().create(true).append(true).open(path)?)
            }
        };
        let (lines, queue) = crossbeam_channel::bounded::<String>(CAPACITY);
        std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut writer = BufWriter::with_capacity(64 << 10, writer);
                while let Ok(line) = queue.recv() {
                    let _ = writer.write_all(line.as_bytes());
                    // Drain what is queued, then flush once.
                    while let Ok(line) = queue.try_recv() {
                        let _ = writer.write_all(line.as_bytes());
                    }
                    let _ = writer.flush();
                }
            })?;
        Ok(Self {
            lines,
            dropped: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Queue one line (with its newline). Never blocks.
    pub fn send(&self, line: String) {
        if let Err(TrySendError::Full(_)) = self.lines.try_send(line) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(dropped, "access log writer is behind; lines dropped");
            }
        }
    }
}
