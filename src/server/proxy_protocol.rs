//! The PROXY protocol (v1 text and v2 binary) in front of HTTP or TLS, as sent by
//! HAProxy and cloud load balancers: the real client address arrives before the first
//! byte of the connection's own protocol.
//!
//! With `server.proxy_protocol = true`, every TCP connection must start with a PROXY
//! header, which is believed only from peers in `server.forwarded_allow_ips`; anything
//! else closes the connection. The header is read exactly (peeked, then consumed), so
//! no byte of the request behind it is lost.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";
const V1_MAX: usize = 107;

/// Why a connection's PROXY header was refused.
#[derive(Debug, thiserror::Error)]
pub(super) enum ProxyHeaderError {
    /// The connection ended or failed first.
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes are not a PROXY header.
    #[error("invalid PROXY header: {0}")]
    Invalid(&'static str),
}

/// Read the PROXY header; returns the client address it names (None for `UNKNOWN`
/// or a v2 `LOCAL` command, which mean "use the connection's own peer").
pub(super) async fn read_header(
    stream: &mut TcpStream,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut peeked = [0u8; 232];
    loop {
        let n = stream.peek(&mut peeked).await?;
        if n == 0 {
            return Err(ProxyHeaderError::Invalid("connection closed"));
        }
        match parse(&peeked[..n])? {
            Some((length, address)) => {
                let mut consumed = vec![0u8; length];
                stream.read_exact(&mut consumed).await?;
                return Ok(address);
            }
            None if n == peeked.len() => return Err(ProxyHeaderError::Invalid("header too long")),
            // Not all of it has arrived: wait for more.
            None => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
        }
    }
}

/// Parse a header at the start of `bytes`: its length and the client it names, or
/// None if more bytes are needed.
pub(super) fn parse(bytes: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, ProxyHeaderError> {
    if bytes.len() >= V2_SIGNATURE.len() && bytes.starts_with(V2_SIGNATURE) {
        return parse_v2(bytes);
    }
    if V2_SIGNATURE.starts_with(&bytes[..bytes.len().min(V2_SIGNATURE.len())]) && bytes.len() < 12 {
        return Ok(None);
    }
    if !b"PROXY ".starts_with(&bytes[..bytes.len().min(6)]) {
        return Err(ProxyHeaderError::Invalid("no PROXY signature"));
    }
    let Some(end) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return if bytes.len() >= V1_MAX {
            Err(ProxyHeaderError::Invalid("v1 line too long"))
        } else {
            Ok(None)
        };
    };
    let line =
        std::str::from_utf8(&bytes[..end]).map_err(|_| ProxyHeaderError::Invalid("v1 not text"))?;
    let parts: Vec<&str> = line.split(' ').collect();
    let address = match parts.as_slice() {
        ["PROXY", "UNKNOWN", ..] => None,
        ["PROXY", family @ ("TCP4" | "TCP6"), source, _destination, source_port, _destination_port] =>
        {
            let ip: IpAddr = source
                .parse()
                .map_err(|_| ProxyHeaderError::Invalid("v1 source address"))?;
            if (*family == "TCP4") != ip.is_ipv4() {
                return Err(ProxyHeaderError::Invalid("v1 address family"));
            }
            let port: u16 = source_port
                .parse()
                .map_err(|_| ProxyHeaderError::Invalid("v1 source port"))?;
            Some(SocketAddr::new(ip, port))
        }
        _ => return Err(ProxyHeaderError::Invalid("v1 fields")),
    };
    Ok(Some((end + 2, address)))
}

fn parse_v2(bytes: &[u8]) -> Result<Option<(usize, Option<SocketAddr>)>, ProxyHeaderError> {
    if bytes.len() < 16 {
        return Ok(None);
    }
    let version_command = bytes[12];
    if version_command >> 4 != 2 {
        return Err(ProxyHeaderError::Invalid("v2 version"));
    }
    let length = 16 + u16::from_be_bytes([bytes[14], bytes[15]]) as usize;
    if bytes.len() < length {
        return Ok(None);
    }
    let body = &bytes[16..length];
    let address = match (version_command & 0x0f, bytes[13]) {
        // LOCAL: health checks from the proxy itself.
        (0x0, _) => None,
        (0x1, 0x11) if body.len() >= 12 => {
            let ip = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
            Some(SocketAddr::new(
                IpAddr::V4(ip),
                u16::from_be_bytes([body[8], body[9]]),
            ))
        }
        (0x1, 0x21) if body.len() >= 36 => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(&body[..16]);
            Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(octets)),
                u16::from_be_bytes([body[32], body[33]]),
            ))
        }
        (0x1, _) => None,
        _ => return Err(ProxyHeaderError::Invalid("v2 command")),
    };
    Ok(Some((length, address)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2() {
        let v1 = b"PROXY TCP4 203.0.113.9 10.0.0.1 5555 80\r\nGET / HTTP/1.1\r\n";
        let (length, address) = parse(v1).unwrap().unwrap();
        assert_eq!(&v1[length..length + 3], b"GET");
        assert_eq!(address.unwrap().to_string(), "203.0.113.9:5555");
        assert!(parse(b"PROXY TCP4 203.0.113.9 10.0").unwrap().is_none());
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").unwrap(), Some((15, None)));
        assert!(parse(b"GET / HTTP/1.1\r\n").is_err());
        assert!(parse(b"PROXY TCP4 ::1 ::1 1 2\r\n").is_err());

        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[
            0x21, 0x11, 0, 12, 198, 51, 100, 7, 10, 0, 0, 1, 0x1f, 0x90, 0, 80,
        ]);
        v2.extend_from_slice(b"GET");
        let (length, address) = parse(&v2).unwrap().unwrap();
        assert_eq!(length, 28);
        assert_eq!(address.unwrap().to_string(), "198.51.100.7:8080");
        assert!(parse(&v2[..20]).unwrap().is_none());
    }
}
