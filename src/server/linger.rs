//! Lingering close, as nginx does it: when a response goes out before the request body
//! has been read (a 413 for an upload over `limits.max_body_size`, a 401, an upstream
//! that answers before the upload ends), the connection is closed while the client is
//! still sending. Closing a socket with unread data makes the kernel answer with a
//! reset, and most clients (curl, browsers) then report the failed upload, not the
//! response they were sent.
//!
//! So when a request body is dropped unread, or a request head is refused (400, 414,
//! 431), the connection keeps a duplicate of its socket ([`SocketKeeper::keep`]); when
//! the connection ends, that duplicate is shut for writing (the client sees the end of
//! the response) and read and discarded until the client stops sending: at most
//! [`LINGERING_TIMEOUT`] between two reads and [`LINGERING_TIME`] in all (nginx's
//! defaults). The connection counts as open meanwhile, so a draining worker waits for
//! it (up to `server.graceful_timeout`).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd, RawFd};
use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// The longest pause between two reads of a lingering connection.
const LINGERING_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection lingers in all.
const LINGERING_TIME: Duration = Duration::from_secs(30);

/// The socket of one connection, as far as lingering close needs it.
#[derive(Debug, Default)]
pub(super) struct SocketKeeper {
    state: Mutex<SocketState>,
}

#[derive(Debug, Default)]
enum SocketState {
    /// The connection has no socket to keep (not set yet, or not a socket).
    #[default]
    Unknown,
    /// The connection's socket, open while the connection lives.
    Open(RawFd),
    /// A duplicate kept for lingering close.
    Duplicated(OwnedFd),
    /// The connection has ended: its descriptor may already belong to another socket.
    Closed,
}

impl SocketKeeper {
    /// The connection's socket (called when the connection starts).
    pub(super) fn set(&self, fd: RawFd) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*state, SocketState::Unknown) {
            *state = SocketState::Open(fd);
        }
    }

    /// A request body was dropped unread: keep a duplicate of the socket (once).
    pub(super) fn keep(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let SocketState::Open(fd) = *state {
            // SAFETY: `Open` holds the descriptor of the connection's socket until the
            // connection ends, which marks it `Closed` under this lock before the
            // socket is closed: here it is still open.
            let socket = unsafe { BorrowedFd::borrow_raw(fd) };
            match socket.try_clone_to_owned() {
                Ok(duplicate) => *state = SocketState::Duplicated(duplicate),
                Err(error) => {
                    tracing::debug!("cannot keep the socket for a lingering close: {error}")
                }
            }
        }
    }

    /// The connection ends: the kept duplicate, if any. Must run before the connection's
    /// socket is closed.
    pub(super) fn close(&self) -> Option<OwnedFd> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *state, SocketState::Closed) {
            SocketState::Duplicated(duplicate) => Some(duplicate),
            _ => None,
        }
    }
}

/// Shut `socket` for writing, then read and discard what the client still sends; the
/// socket closes when the client stops or the time is up.
pub(super) async fn linger(socket: OwnedFd) {
    if let Err(error) = drain(socket).await {
        tracing::debug!("lingering close ended: {error}");
    }
}

async fn drain(socket: OwnedFd) -> io::Result<()> {
    let socket = socket2::Socket::from(socket);
    // The response has been written: the client may read it to its end.
    let _ = socket.shutdown(std::net::Shutdown::Write);
    socket.set_nonblocking(true)?;
    if socket.domain()? == socket2::Domain::UNIX {
        let stream = std::os::unix::net::UnixStream::from(OwnedFd::from(socket));
        discard(tokio::net::UnixStream::from_std(stream)?).await
    } else {
        let stream = std::net::TcpStream::from(socket);
        discard(tokio::net::TcpStream::from_std(stream)?).await
    }
}

/// Read and throw away until the end of stream, an error, or the time limits.
async fn discard(mut stream: impl AsyncRead + Unpin) -> io::Result<()> {
    let give_up = Instant::now() + LINGERING_TIME;
    let mut sink = vec![0u8; 16 << 10];
    loop {
        let wait = (Instant::now() + LINGERING_TIMEOUT).min(give_up);
        match tokio::time::timeout_at(wait, stream.read(&mut sink)).await {
            Ok(Ok(0)) | Err(_) => return Ok(()),
            Ok(Ok(_)) => {}
            Ok(Err(error)) => return Err(error),
        }
    }
}
