//! Opening a connection to one server: TCP (no Nagle), a unix socket, or TLS over TCP,
//! all within `connect_timeout`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::tls::TlsClient;
use crate::config::ServerAddress;

/// A connected transport.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// True when TLS negotiated `h2` with ALPN.
    pub(crate) fn negotiated_h2(&self) -> bool {
        match self {
            Stream::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(b"h2"),
            _ => false,
        }
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// Name resolution, refusal, unreachable.
    #[error("connect: {0}")]
    Io(#[from] io::Error),
    /// No connection within `connect_timeout`.
    #[error("connect timed out")]
    Timeout,
    /// The TLS handshake failed (certificate, protocol).
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    /// The HTTP/2 handshake failed.
    #[error("HTTP handshake: {0}")]
    Handshake(hyper::Error),
}

/// Connect to `address` (TLS with `tls` for `https`); `http1_only` offers only
/// `http/1.1` in ALPN.
pub(crate) async fn connect(
    address: &ServerAddress,
    resolved: Option<SocketAddr>,
    tls: Option<&TlsClient>,
    timeout: Duration,
    http1_only: bool,
) -> Result<Stream, ConnectError> {
    let connecting = async {
        match address {
            ServerAddress::Unix(path) => Ok(Stream::Unix(UnixStream::connect(path).await?)),
            ServerAddress::Http { host, port } => {
                Ok(Stream::Tcp(tcp(host, *port, resolved).await?))
            }
            ServerAddress::Https { host, port } => {
                let tcp = tcp(host, *port, resolved).await?;
                let Some(tls) = tls else {
                    return Err(ConnectError::Tls(io::Error::other("no TLS configuration")));
                };
                let name = tls.server_name.as_deref().unwrap_or(host);
                let name = ServerName::try_from(name.trim_matches(['[', ']']).to_owned())
                    .map_err(|e| ConnectError::Tls(io::Error::other(e)))?;
                let config = if http1_only {
                    tls.http1.clone()
                } else {
                    tls.default.clone()
                };
                let stream = TlsConnector::from(config)
                    .connect(name, tcp)
                    .await
                    .map_err(ConnectError::Tls)?;
                Ok(Stream::Tls(Box::new(stream)))
            }
        }
    };
    tokio::time::timeout(timeout, connecting)
        .await
        .map_err(|_| ConnectError::Timeout)?
}

async fn tcp(host: &str, port: u16, resolved: Option<SocketAddr>) -> io::Result<TcpStream> {
    let stream = match resolved {
        Some(address) => TcpStream::connect(address).await?,
        None => TcpStream::connect((host.trim_matches(['[', ']']), port)).await?,
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}
