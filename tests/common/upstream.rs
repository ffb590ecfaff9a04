#![allow(unreachable_pub)]
//! A small HTTP/1.1 server the proxy tests own, to play every kind of upstream: it
//! echoes, streams, stalls, resets, answers malformed heads and hop-by-hop fields,
//! and speaks WebSocket after an upgrade. One thread per connection, keep-alive.
//!
//! Paths:
//! - `/echo...` (anything not below): 200, JSON `{server, method, target, headers,
//!   body_len}` (the body read whole).
//! - `/sink`: reads the body without keeping it; 200 JSON `{server, body_len}`.
//! - `/bytes/N`: N bytes of a pattern, `Content-Length` (never held in memory).
//! - `/status/N`: that status, a short body.
//! - `/stall`: reads the request, answers nothing until the connection closes.
//! - `/reset`: reads the request, closes with RST before any byte.
//! - `/malformed`: a response head that is not HTTP.
//! - `/hop`: a response with hop-by-hop fields (and one named in `Connection`).
//! - `/ws`: `101 Switching Protocols`, then echoes WebSocket frames (text/binary,
//!   unmasked back), closing on a close frame.
//! - `/healthz`: 200 while `healthy` is set, else 503.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// What the test can see of and do to a running upstream.
pub struct Upstream {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Requests it has read (heads), all paths.
    pub requests: Arc<AtomicUsize>,
    /// Connections it has accepted.
    pub connections: Arc<AtomicUsize>,
    /// `/healthz` answers 200 while true.
    pub healthy: Arc<AtomicBool>,
    /// When set, every request is served as if it asked for this path (`/reset`).
    pub act_as: Arc<std::sync::Mutex<Option<String>>>,
    stopped: Arc<AtomicBool>,
    /// Connections being served now.
    live: Arc<AtomicUsize>,
    name: String,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl Upstream {
    /// Start `name` on a fresh port of 127.0.0.1.
    pub fn start(name: &str) -> Self {
        Self::start_on(name, "127.0.0.1:0".parse().unwrap())
    }

    /// Start `name` on `addr` (to restart a stopped one on its port).
    pub fn start_on(name: &str, addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).expect("bind the test upstream");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut upstream = Self {
            addr,
            requests: Arc::default(),
            connections: Arc::default(),
            healthy: Arc::new(AtomicBool::new(true)),
            act_as: Arc::default(),
            stopped: Arc::default(),
            live: Arc::default(),
            name: name.to_owned(),
            accept: None,
        };
        let shared = Shared {
            name: name.to_owned(),
            requests: upstream.requests.clone(),
            healthy: upstream.healthy.clone(),
            act_as: upstream.act_as.clone(),
            stopped: upstream.stopped.clone(),
        };
        let connections = upstream.connections.clone();
        let live = upstream.live.clone();
        let stopped = upstream.stopped.clone();
        let accept = std::thread::spawn(move || loop {
            if stopped.load(Ordering::Relaxed) {
                return;
            }
            match listener.accept() {
                Ok((stream, _)) => {
                    connections.fetch_add(1, Ordering::Relaxed);
                    live.fetch_add(1, Ordering::Relaxed);
                    let shared = shared.clone();
                    let live = live.clone();
                    std::thread::spawn(move || {
                        serve(stream, shared);
                        live.fetch_sub(1, Ordering::Relaxed);
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(2));
                }
                Err(_) => return,
            }
        });
        upstream.accept = Some(accept);
        upstream
    }

    /// Serve every request as if it asked for `path` (`/reset`, `/stall`, ...).
    pub fn acting_as(self, path: &str) -> Self {
        *self.act_as.lock().unwrap() = Some(path.to_owned());
        self
    }

    /// `name` again, on the same port.
    pub fn restart(&self) -> Self {
        Self::start_on(&self.name, self.addr)
    }

    /// Stop listening and close every connection (returns once they are closed).
    pub fn stop(&mut self) {
        self.stopped.store(true, Ordering::Relaxed);
        if let Some(accept) = self.accept.take() {
            let _ = accept.join();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.live.load(Ordering::Relaxed) > 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

#[derive(Clone)]
struct Shared {
    name: String,
    requests: Arc<AtomicUsize>,
    healthy: Arc<AtomicBool>,
    act_as: Arc<std::sync::Mutex<Option<String>>>,
    stopped: Arc<AtomicBool>,
}

/// One request head as read.
struct Head {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn serve(stream: TcpStream, shared: Shared) {
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    // Set by `/reset-next`: the next request on this connection is reset unanswered,
    // as when a server closes a kept-alive connection just as a request arrives.
    let mut reset_next = false;
    loop {
        let head = match read_head(&mut reader, &shared.stopped) {
            Some(head) => head,
            None => return,
        };
        shared.requests.fetch_add(1, Ordering::Relaxed);
        if reset_next {
            let socket = socket2::SockRef::from(reader.get_ref());
            let _ = socket.set_linger(Some(Duration::ZERO));
            return;
        }
        reset_next = head.target == "/reset-next";
        let path = match shared.act_as.lock().unwrap().clone() {
            Some(path) if !head.target.starts_with("/healthz") => path,
            _ => head.target.split('?').next().unwrap_or("").to_owned(),
        };
        let keep = match path.as_str() {
            "/stall" => {
                // Never answer; wait for the gateway to give up (or the test to end).
                let mut sink = [0u8; 1024];
                loop {
                    match reader.read(&mut sink) {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(_) if shared.stopped.load(Ordering::Relaxed) => return,
                        Err(_) => {}
                    }
                }
            }
            "/reset" => {
                let socket = socket2::SockRef::from(reader.get_ref());
                let _ = socket.set_linger(Some(Duration::ZERO));
                return;
            }
            "/malformed" => {
                let _ = writer.write_all(b"HTTP/1.1 twohundred OK\r\nthis is not a header\r\n\r\n");
                let _ = writer.shutdown(Shutdown::Both);
                return;
            }
            "/ws" => {
                websocket(&head, &mut reader, &mut writer);
                return;
            }
            // Responses framed in every way RFC 9112 allows, and in ways it does not;
            // the connection stays open unless the framing needs its end.
            "/chunked" => {
                read_body(&head, &mut reader, |_| {});
                writer
                    .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n7\r\n, world\r\n0\r\nX-Checksum: 1\r\n\r\n")
                    .is_ok()
            }
            "/until-close" => {
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil the end");
                return;
            }
            "/early-hints" => writer
                .write_all(b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
                .is_ok(),
            "/http10" => writer
                .write_all(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok")
                .is_ok(),
            "/cl-and-te" => writer
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n0\r\n\r\n")
                .is_ok(),
            "/te-gzip" => writer
                .write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\n\x1f\x8b\r\n0\r\n\r\n")
                .is_ok(),
            "/bad-chunk" => {
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n");
                return;
            }
            "/head-body-later" => {
                // A body to a HEAD, written a moment after the head: a server that does
                // not know HEAD.
                let _ = writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 120\r\n\r\n");
                std::thread::sleep(Duration::from_millis(5));
                let stray = format!("HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n{:30}{:60}", "stray response", "");
                writer.write_all(&stray.as_bytes()[..120]).is_ok()
            }
            _ => respond(&head, &path, &mut reader, &mut writer, &shared),
        };
        if path == "/then-close" {
            // Answered as kept alive, then closed while idle: a server whose keep-alive
            // timeout ran out (gunicorn's is 2 s).
            std::thread::sleep(Duration::from_millis(300));
            return;
        }
        if !keep {
            return;
        }
    }
}

fn read_head(reader: &mut BufReader<TcpStream>, stopped: &AtomicBool) -> Option<Head> {
    let mut lines = Vec::new();
    let mut line = String::new();
    loop {
        match reader.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => {
                if line.ends_with('\n') {
                    let text = line.trim_end().to_owned();
                    line.clear();
                    if text.is_empty() {
                        if lines.is_empty() {
                            continue;
                        }
                        break;
                    }
                    lines.push(text);
                }
            }
            Err(_) if stopped.load(Ordering::Relaxed) => return None,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return None,
        }
    }
    let mut parts = lines[0].splitn(3, ' ');
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let headers = lines[1..]
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(Head {
        method,
        target,
        headers,
    })
}

/// Read a request body (Content-Length or chunked), passing each piece to `each`.
fn read_body(head: &Head, reader: &mut BufReader<TcpStream>, mut each: impl FnMut(&[u8])) {
    let mut read_exact = |reader: &mut BufReader<TcpStream>, mut n: u64| {
        let mut buf = vec![0u8; 65536];
        while n > 0 {
            let want = n.min(buf.len() as u64) as usize;
            match reader.read(&mut buf[..want]) {
                Ok(0) => return,
                Ok(got) => {
                    each(&buf[..got]);
                    n -= got as u64;
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return,
            }
        }
    };
    if head
        .header("transfer-encoding")
        .is_some_and(|te| te.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            while !size.ends_with('\n') {
                match reader.read_line(&mut size) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(_) => {}
                }
            }
            let n =
                u64::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if n == 0 {
                let mut end = String::new();
                while end != "\r\n" {
                    end.clear();
                    if reader.read_line(&mut end).unwrap_or(0) == 0 {
                        return;
                    }
                }
                return;
            }
            read_exact(reader, n);
            let mut crlf = String::new();
            while !crlf.ends_with('\n') {
                if reader.read_line(&mut crlf).unwrap_or(0) == 0 {
                    return;
                }
            }
        }
    } else if let Some(length) = head.header("content-length") {
        read_exact(reader, length.parse().unwrap_or(0));
    }
}

/// Answer one ordinary request; false to close the connection.
fn respond(
    head: &Head,
    path: &str,
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
    shared: &Shared,
) -> bool {
    let mut body_len = 0u64;
    let mut body = Vec::new();
    let keep_body = path != "/sink";
    read_body(head, reader, |piece| {
        body_len += piece.len() as u64;
        if keep_body && body.len() < 1 << 20 {
            body.extend_from_slice(piece);
        }
    });
    let close = head
        .header("connection")
        .is_some_and(|c| c.eq_ignore_ascii_case("close"));
    let write = |writer: &mut TcpStream, status: u16, extra: &str, content: &[u8]| {
        let head = format!(
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{extra}\r\n",
            content.len()
        );
        writer.write_all(head.as_bytes()).is_ok() && writer.write_all(content).is_ok()
    };
    if let Some(n) = path.strip_prefix("/bytes/") {
        let n: u64 = n.parse().unwrap_or(0);
        let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {n}\r\nContent-Type: application/octet-stream\r\n\r\n");
        if writer.write_all(head.as_bytes()).is_err() {
            return false;
        }
        let block: Vec<u8> = (0..65536u32).map(|i| (i % 251) as u8).collect();
        let mut left = n;
        while left > 0 {
            let take = left.min(block.len() as u64) as usize;
            if writer.write_all(&block[..take]).is_err() {
                return false;
            }
            left -= take as u64;
        }
        return !close;
    }
    if let Some(status) = path.strip_prefix("/status/") {
        let status: u16 = status.parse().unwrap_or(500);
        return write(
            writer,
            status,
            "",
            format!("status {status} from {}", shared.name).as_bytes(),
        ) && !close;
    }
    match path {
        "/healthz" => {
            let status = if shared.healthy.load(Ordering::Relaxed) { 200 } else { 503 };
            write(writer, status, "", b"health") && !close
        }
        "/redirect-self" => {
            // A redirect to this server's own address, as an app that builds absolute
            // URLs from Host would send when it is given the server's host:port; and
            // one to another host.
            let own = writer.local_addr().unwrap();
            let extra = format!(
                "Location: http://{own}/landing?from=redirect\r\nContent-Location: http://{own}/x\r\n"
            );
            write(writer, 302, &extra, b"") && !close
        }
        "/redirect-away" => write(
            writer,
            302,
            "Location: http://example.com/landing\r\n",
            b"",
        ) && !close,
        "/hop" => write(
            writer,
            200,
            "Connection: X-Internal\r\nX-Internal: secret\r\nKeep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nX-Kept: yes\r\n",
            b"hop",
        ) && !close,
        _ => {
            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for (name, value) in &head.headers {
                headers
                    .entry(name.to_ascii_lowercase())
                    .or_default()
                    .push(value.clone());
            }
            let json = serde_json::json!({
                "server": shared.name,
                "method": head.method,
                "target": head.target,
                "headers": headers,
                "body_len": body_len,
                "body": String::from_utf8_lossy(&body[..body.len().min(4096)]),
            });
            let content = json.to_string();
            write(writer, 200, "Content-Type: application/json\r\n", content.as_bytes()) && !close
        }
    }
}

/// Accept the upgrade, then echo frames until a close frame or EOF.
fn websocket(head: &Head, reader: &mut BufReader<TcpStream>, writer: &mut TcpStream) {
    let asked = head
        .header("upgrade")
        .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    if !asked {
        let _ = writer.write_all(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 0\r\n\r\n");
        return;
    }
    let key = head.header("sec-websocket-key").unwrap_or("");
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    );
    if writer.write_all(response.as_bytes()).is_err() {
        return;
    }
    reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    while let Some((opcode, payload)) = read_frame(reader) {
        if opcode == 0x8 {
            let _ = writer.write_all(&frame(0x8, &payload));
            return;
        }
        if writer.write_all(&frame(opcode, &payload)).is_err() {
            return;
        }
    }
}

/// A client frame's opcode and unmasked payload.
pub fn read_frame(reader: &mut impl Read) -> Option<(u8, Vec<u8>)> {
    let mut two = [0u8; 2];
    reader.read_exact(&mut two).ok()?;
    let opcode = two[0] & 0x0f;
    let masked = two[1] & 0x80 != 0;
    let mut len = u64::from(two[1] & 0x7f);
    if len == 126 {
        let mut ext = [0u8; 2];
        reader.read_exact(&mut ext).ok()?;
        len = u64::from(u16::from_be_bytes(ext));
    } else if len == 127 {
        let mut ext = [0u8; 8];
        reader.read_exact(&mut ext).ok()?;
        len = u64::from_be_bytes(ext);
    }
    let mut mask = [0u8; 4];
    if masked {
        reader.read_exact(&mut mask).ok()?;
    }
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload).ok()?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Some((opcode, payload))
}

/// A frame (unmasked, as a server sends; `masked` for a client).
pub fn frame_with(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

fn frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_with(opcode, payload, None)
}

/// `Sec-WebSocket-Accept` for `key` (RFC 6455: base64 of SHA-1 of key + GUID).
pub fn accept_key(key: &str) -> String {
    use base64::Engine as _;
    let digest = sha1(format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(digest)
}

/// SHA-1, for the WebSocket handshake only.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut message = data.to_vec();
    let bit_len = (data.len() as u64) * 8;
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bit_len.to_be_bytes());
    for chunk in message.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, word) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let temp = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*word);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = temp;
        }
        h[0] = h[0].wrapping_add(a);
        h[1] = h[1].wrapping_add(b);
        h[2] = h[2].wrapping_add(c);
        h[3] = h[3].wrapping_add(d);
        h[4] = h[4].wrapping_add(e);
    }
    let mut out = [0u8; 20];
    for (i, word) in h.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&word.to_be_bytes());
    }
    out
}

#[test]
fn sha1_matches_the_rfc_6455_example() {
    assert_eq!(
        accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
        "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    );
}
