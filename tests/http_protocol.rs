//! HTTP/1.1 keep-alive and pipelining, HTTP/1.0, HTTP/2 with prior knowledge,
//! timeouts, and graceful stop.

mod common;

use std::io::{BufReader, Read, Write};
use std::time::Duration;

use common::{read_response, read_to_close, GatewayBuilder};

#[test]
fn keep_alive_serves_several_requests_on_one_connection() {
    let gateway = GatewayBuilder::new().start();
    let stream = gateway.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut ports = Vec::new();
    for _ in 0..3 {
        writer
            .write_all(b"GET /environ HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let response = read_response(&mut reader, false).unwrap();
        assert_eq!(response.status, 200);
        ports.push(response.json()["REMOTE_PORT"].clone());
    }
    assert!(
        ports.windows(2).all(|w| w[0] == w[1]),
        "one connection: {ports:?}"
    );
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let gateway = GatewayBuilder::new().start();
    let mut stream = gateway.connect();
    stream
        .write_all(
            b"GET /status?code=201 HTTP/1.1\r\nHost: x\r\n\r\n\
              POST /input?mode=read HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody\
              GET /status?code=202 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
    let mut reader = BufReader::new(stream);
    assert_eq!(read_response(&mut reader, false).unwrap().status, 201);
    let second = read_response(&mut reader, false).unwrap();
    assert_eq!(second.json()["parts"][0], "body");
    assert_eq!(read_response(&mut reader, false).unwrap().status, 202);
    assert!(
        read_response(&mut reader, false).is_none(),
        "closed after Connection: close"
    );
}

#[test]
fn http_1_0_is_served_and_closed() {
    let gateway = GatewayBuilder::new().start();
    let raw = gateway.raw(b"GET /stream-free HTTP/1.0\r\n\r\n");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.0 404"), "{text}");
    // A streamed response to HTTP/1.0 is delimited by closing the connection.
    let raw = gateway.raw(b"GET /tracked?id=h10&n=3&size=2 HTTP/1.0\r\n\r\n");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert!(text.ends_with("xxxxxx"), "{text}");
    assert!(
        !text.to_ascii_lowercase().contains("transfer-encoding"),
        "{text}"
    );
}

#[test]
fn http_1_0_keep_alive_is_honoured() {
    let gateway = GatewayBuilder::new().start();
    let stream = gateway.connect();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    for _ in 0..2 {
        writer
            .write_all(b"GET /status?code=200 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap();
        let response = read_response(&mut reader, false).unwrap();
        assert_eq!(response.status, 200);
    }
}

type H2Sender = hyper::client::conn::http2::SendRequest<http_body_util::Full<bytes::Bytes>>;

/// An HTTP/2 (prior knowledge) client connection; the task drives it until it closes.
async fn h2_connect(addr: std::net::SocketAddr) -> (H2Sender, tokio::task::JoinHandle<()>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    let connection = tokio::spawn(async move {
        let _ = connection.await;
    });
    (sender, connection)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_with_prior_knowledge_multiplexes_requests() {
    use http_body_util::BodyExt;
    let gateway = GatewayBuilder::new().start();
    let (sender, _connection) = h2_connect(gateway.addr).await;
    let mut requests = Vec::new();
    for i in 0..4 {
        let mut sender = sender.clone();
        requests.push(tokio::spawn(async move {
            let request = http::Request::builder()
                .uri(format!("http://h2.test/barrier?id=h2&n=4&i={i}"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            let response = sender.send_request(request).await.unwrap();
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.unwrap().to_bytes()
        }));
    }
    // The barrier passes only if the four streams run at the same time.
    for request in requests {
        request.await.unwrap();
    }
    let mut sender = sender.clone();
    let request = http::Request::builder()
        .method("POST")
        .uri("http://h2.test/environ?x=1")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(b"abc")))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let env: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(env["SERVER_PROTOCOL"], "HTTP/2");
    assert_eq!(env["HTTP_HOST"], "h2.test");
    assert_eq!(env["SERVER_NAME"], "h2.test");
    assert_eq!(env["QUERY_STRING"], "x=1");
    assert_eq!(env["CONTENT_LENGTH"], "3");
}

/// SIGTERM with an HTTP/2 connection open: GOAWAY, so the client opens no new stream on
/// it, while the stream in flight still gets its whole response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_drain_sends_goaway_and_finishes_streams_in_flight() {
    http2_drain(StreamStarts::BeforeSigterm).await;
}

/// The same when the drain begins before the connection's first request: its protocol
/// is not known yet, and it must still get GOAWAY once it shows itself HTTP/2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_drain_of_a_connection_that_had_not_sent_a_request_yet() {
    http2_drain(StreamStarts::AfterSigterm).await;
}

#[derive(PartialEq)]
enum StreamStarts {
    BeforeSigterm,
    AfterSigterm,
}

async fn http2_drain(starts: StreamStarts) {
    use http_body_util::BodyExt;
    let mut gateway = GatewayBuilder::new().start();
    let (sender, connection) = h2_connect(gateway.addr).await;
    let get = |target: &str| {
        http::Request::builder()
            .uri(format!("http://h2.test{target}"))
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap()
    };
    let mut slow_sender = sender.clone();
    let slow_request = get("/sleep?s=1.5");
    let start_slow = move || {
        tokio::spawn(async move {
            let response = slow_sender.send_request(slow_request).await.unwrap();
            assert_eq!(response.status(), 200);
            response.into_body().collect().await.unwrap().to_bytes()
        })
    };
    let slow = if starts == StreamStarts::BeforeSigterm {
        let slow = start_slow();
        common::wait_for_app_calls(&gateway, 1);
        gateway.signal(libc::SIGTERM);
        gateway.wait_for_log("stopping: no new connections");
        slow
    } else {
        gateway.signal(libc::SIGTERM);
        gateway.wait_for_log("stopping: no new connections");
        start_slow()
    };
    // Once GOAWAY has arrived, the connection takes no new stream.
    let mut refused = false;
    for _ in 0..40 {
        let mut sender = sender.clone();
        match sender.send_request(get("/environ")).await {
            Err(_) => {
                refused = true;
                break;
            }
            Ok(response) => assert_eq!(response.status(), 200, "served before GOAWAY"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    assert!(
        refused,
        "no GOAWAY: the draining server kept taking new streams"
    );
    assert_eq!(&slow.await.unwrap()[..], b"slept");
    // The server closes the connection once its last stream is done.
    let closed = tokio::time::timeout(common::WAIT, connection).await;
    assert!(closed.is_ok(), "the connection stayed open after the drain");
    assert!(gateway.wait_exit().success());
}

#[test]
fn idle_keep_alive_connections_are_closed_after_the_timeout() {
    let gateway = GatewayBuilder::new()
        .config("[server]\nkeepalive_timeout = \"1s\"\n")
        .start();
    let mut stream = gateway.connect();
    stream
        .write_all(b"GET /status?code=200 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // The server answers, then closes the idle connection by itself.
    let rest = read_to_close(&mut stream);
    let text = String::from_utf8_lossy(&rest);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
}

#[test]
fn a_slow_request_head_is_cut_off() {
    let gateway = GatewayBuilder::new()
        .config("[server]\nheader_timeout = \"1s\"\nkeepalive_timeout = \"5s\"\n")
        .start();
    let mut stream = gateway.connect();
    stream
        .write_all(b"GET /status?code=200 HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    // Trickle a header byte now and then, never finishing the head (bounded: 40 x 100ms).
    for _ in 0..40 {
        std::thread::sleep(Duration::from_millis(100));
        if stream.write_all(b"X").is_err() {
            break;
        }
    }
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = [0u8; 64];
    let read = stream.read(&mut buf);
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the connection must be closed, got {read:?}"
    );
    gateway.wait_for_log("request head not received within server.header_timeout");
    assert_eq!(gateway.get("/status?code=200").status, 200);
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits_zero() {
    let marker = common::scratch_dir("atexit").join("ran");
    let mut gateway = GatewayBuilder::new()
        .env("GATEWAY_TEST_ATEXIT_FILE", marker.to_str().unwrap())
        .start();
    let addr = gateway.addr;
    let slow = gateway.get_in_background("/sleep?s=1.5");
    // An idle keep-alive connection must not hold the drain up.
    let mut idle = gateway.connect();
    idle.write_all(b"GET /status?code=200 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 16];
    idle.read_exact(&mut first).unwrap();
    common::wait_for_app_calls(&gateway, 2);
    gateway.signal(libc::SIGTERM);
    let response = slow.join().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.text(), "slept");
    let status = gateway.wait_exit();
    assert!(status.success(), "{status:?}\n{}", gateway.logs());
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "no longer accepting"
    );
    let logs = gateway.logs();
    assert!(logs.contains("SIGTERM received"), "{logs}");
    // The application's atexit handlers ran, as in a Python process that exits.
    assert_eq!(std::fs::read_to_string(&marker).unwrap(), "atexit ran");
}

#[test]
fn graceful_timeout_bounds_the_drain() {
    let mut gateway = GatewayBuilder::new()
        .config("[server]\ngraceful_timeout = \"1s\"\n")
        .start();
    let addr = gateway.addr;
    let _stuck = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(common::WAIT)).unwrap();
        let _ = stream.write_all(b"GET /sleep?s=15 HTTP/1.1\r\nHost: x\r\n\r\n");
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    });
    common::wait_for_app_calls(&gateway, 1);
    gateway.signal(libc::SIGINT);
    let status = gateway.wait_exit();
    assert!(status.success(), "{status:?}");
    assert!(
        gateway.logs().contains("graceful_timeout reached"),
        "{}",
        gateway.logs()
    );
}
