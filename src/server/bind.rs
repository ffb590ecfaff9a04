//! Listen addresses and the sockets bound to them.

use std::net::{SocketAddr, ToSocketAddrs};

use socket2::{Domain, Protocol, Socket, Type};

/// One `server.bind` entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BindAddress {
    /// A TCP `host:port`.
    Tcp(String),
}

impl BindAddress {
    /// Check the shape of a bind string without resolving it.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.starts_with("unix:") {
            return Err(format!(
                "{text:?}: unix socket listeners are not supported by this build; use HOST:PORT"
            ));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not HOST:PORT"))?;
        if host.is_empty() {
            return Err(format!(
                "{text:?} has no host; use 0.0.0.0:PORT or [::]:PORT"
            ));
        }
        port.parse::<u16>()
            .map_err(|_| format!("{text:?}: {port:?} is not a port number"))?;
        Ok(BindAddress::Tcp(text.to_owned()))
    }

    /// Bind a listening socket (SO_REUSEADDR, non-blocking, `backlog` pending
    /// connections) for every address the entry resolves to.
    pub fn bind(&self, backlog: u32) -> std::io::Result<Vec<std::net::TcpListener>> {
        let BindAddress::Tcp(text) = self;
        let addresses: Vec<SocketAddr> = text.to_socket_addrs()?.collect();
        let mut listeners = Vec::with_capacity(addresses.len());
        for address in addresses {
            let socket = Socket::new(
                Domain::for_address(address),
                Type::STREAM,
                Some(Protocol::TCP),
            )?;
            socket.set_reuse_address(true)?;
            if address.is_ipv6() {
                socket.set_only_v6(true)?;
            }
            socket.set_nonblocking(true)?;
            socket
                .bind(&address.into())
                .map_err(|e| std::io::Error::new(e.kind(), format!("{address}: {e}")))?;
            socket.listen(backlog.min(i32::MAX as u32) as i32)?;
            listeners.push(socket.into());
        }
        Ok(listeners)
    }
}
