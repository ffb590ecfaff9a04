//! Issue 11, items 2, 4 and 5, as their repros: slow request bodies (request buffering,
//! `server.read_timeout` over the whole buffered read, `limits.min_body_rate`), ten
//! HTTP/2 uploads on one connection, and requests that wait for a Python thread
//! (`server.queue_timeout`; `server.timeout` counts the application's run only).
//!
//! Slow clients are real sockets on threads, sending a byte at a time; every one is
//! bounded in bytes and time.

mod common;

use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{eventually, read_response, Gateway, GatewayBuilder, Response, WAIT};

/// A well-formed request on a new connection is still served.
fn still_serves(gateway: &Gateway) {
    let response = gateway.get("/calls");
    assert_eq!(response.status, 200, "{response:?}\n{}", gateway.logs());
}

/// How many requests the contract app has run, this probe included.
fn app_calls(gateway: &Gateway) -> i64 {
    gateway.get_json("/calls")["count"].as_i64().unwrap()
}

/// How a slow upload frames its body.
#[derive(Clone, Copy, Debug)]
enum Framing {
    /// `Content-Length` of this many bytes.
    Length(usize),
    /// `Transfer-Encoding: chunked`, one byte per chunk.
    Chunked,
}

/// A client sending a request body one byte at a time from a thread, until told to
/// stop, the server closes, or [`SLOW_MAX_BYTES`] have gone (bounded in time).
struct SlowUpload {
    stream: TcpStream,
    stop: Arc<AtomicBool>,
    writer: JoinHandle<()>,
}

/// No slow upload sends more than this many paced bytes.
const SLOW_MAX_BYTES: usize = 200;

impl SlowUpload {
    /// POST `target` with `framing`: `burst` bytes at once, then one byte every
    /// `interval`. Returns once the burst and two paced bytes have been sent.
    fn start(
        addr: SocketAddr,
        target: &str,
        framing: Framing,
        burst: usize,
        interval: Duration,
    ) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(WAIT)).unwrap();
        stream.set_write_timeout(Some(WAIT)).unwrap();
        stream.set_nodelay(true).unwrap();
        let framing_header = match framing {
            Framing::Length(length) => format!("Content-Length: {length}"),
            Framing::Chunked => "Transfer-Encoding: chunked".to_owned(),
        };
        let head =
            format!("POST {target} HTTP/1.1\r\nHost: test.local\r\n{framing_header}\r\n\r\n");
        let stop = Arc::new(AtomicBool::new(false));
        let (sent_some, sending) = mpsc::channel();
        let mut out = stream.try_clone().unwrap();
        let stopped = stop.clone();
        let writer = std::thread::spawn(move || {
            let piece = |n: usize| match framing {
                Framing::Length(_) => vec![b'x'; n],
                Framing::Chunked => format!("{n:x}\r\n{}\r\n", "x".repeat(n)).into_bytes(),
            };
            if out.write_all(head.as_bytes()).is_err() {
                return;
            }
            if burst > 0 && out.write_all(&piece(burst)).is_err() {
                return;
            }
            for sent in 0..SLOW_MAX_BYTES {
                if stopped.load(Ordering::Relaxed) || out.write_all(&piece(1)).is_err() {
                    return;
                }
                if sent == 1 {
                    let _ = sent_some.send(());
                }
                // The client's pace: this is the scenario, not a synchronisation.
                std::thread::sleep(interval);
            }
        });
        sending
            .recv_timeout(WAIT)
            .expect("the slow upload started sending");
        Self {
            stream,
            stop,
            writer,
        }
    }

    /// True while the client is still sending its body.
    fn sending(&self) -> bool {
        !self.writer.is_finished()
    }

    /// Wait for the response (while the body keeps trickling), then stop sending.
    fn response(self) -> Option<Response> {
        let response = read_response(&mut BufReader::new(&self.stream), false);
        self.abort();
        response
    }

    /// Stop sending and close the connection.
    fn abort(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.stream.shutdown(Shutdown::Both);
        self.writer.join().unwrap();
    }
}

/// Item 2: request buffering and the bounds on slow bodies.
mod request_buffering {
    use super::*;

    /// The repro: four clients (as many as Python threads) each sending a body
    /// a byte every 0.25 s, with Content-Length and chunked, while a fast client
    /// arrives. The fast client is served while they are still sending, and none of
    /// them has reached the application.
    #[test]
    fn four_slow_uploaders_do_not_starve_a_fast_client() {
        let gateway = GatewayBuilder::new()
            .config("[server]\nthreads = 4\n")
            .start();
        let pace = Duration::from_millis(250);
        let uploads: Vec<SlowUpload> = [
            Framing::Length(100_000),
            Framing::Length(100_000),
            Framing::Chunked,
            Framing::Chunked,
        ]
        .into_iter()
        .map(|framing| SlowUpload::start(gateway.addr, "/digest", framing, 0, pace))
        .collect();

        let fast = gateway.request("POST", "/digest", &[], b"fast client");
        assert_eq!(fast.status, 200, "{fast:?}\n{}", gateway.logs());
        assert_eq!(fast.json()["bytes"], 11);
        // The fast request and this probe are the only ones the app has seen.
        assert_eq!(app_calls(&gateway), 2, "{}", gateway.logs());
        assert!(
            uploads.iter().all(SlowUpload::sending),
            "the slow uploads were still in progress"
        );
        for upload in uploads {
            upload.abort();
        }
        still_serves(&gateway);
    }

    /// `limits.buffer_memory` bounds what bodies read ahead hold in a worker: a slow
    /// upload that finds it used up streams to the application (and meets
    /// `min_body_rate`) instead of adding to it; one that found room stays away from
    /// the application (and meets `server.read_timeout`). Once both are gone their
    /// bytes are given back: the next slow upload is read ahead again.
    #[test]
    fn bodies_read_ahead_share_one_memory_budget() {
        let gateway = GatewayBuilder::new()
            .config(
                "[server]
read_timeout = \"3s\"
threads = 4
                 [limits]
buffer_body = \"64KiB\"
buffer_memory = \"100KiB\"
                 min_body_rate = 1000
min_body_rate_window = \"1s\"
",
            )
            .start();
        let slow = |burst| {
            SlowUpload::start(
                gateway.addr,
                "/digest",
                Framing::Length(60_000),
                burst,
                Duration::from_millis(100),
            )
        };
        // 55 KB held by the first; the second's 55 KB would pass 100 KiB.
        let first = slow(55_000);
        let calls_before = app_calls(&gateway);
        let second = slow(55_000);
        let response = second.response().expect("a response");
        assert_eq!(response.status, 408, "{response:?}\n{}", gateway.logs());
        gateway.wait_for_log("request body too slow (slower than limits.min_body_rate)");
        gateway.wait_for_log("request bodies read ahead hold limits.buffer_memory");
        let response = first.response().expect("a response");
        assert_eq!(response.status, 408, "{response:?}\n{}", gateway.logs());
        gateway.wait_for_log("request body not received within server.read_timeout");
        assert_eq!(
            app_calls(&gateway),
            calls_before + 2,
            "the second upload and this probe reached the app, the first did not\n{}",
            gateway.logs()
        );

        // Both are done: their bytes no longer count, so this one is read ahead.
        let third = slow(55_000);
        let calls_before = app_calls(&gateway);
        assert!(third.sending());
        assert_eq!(
            app_calls(&gateway),
            calls_before + 1,
            "only this probe reached the app while the third upload is read ahead\n{}",
            gateway.logs()
        );
        third.abort();
        still_serves(&gateway);
    }

    /// `server.read_timeout` bounds the whole buffered read, not each wait: a chunked
    /// body that keeps trickling in gets 408 and the application is never called.
    #[test]
    fn a_buffered_body_not_complete_within_read_timeout_gets_408_without_the_app() {
        let gateway = GatewayBuilder::new()
            .config("[server]\nread_timeout = \"1s\"\n")
            .start();
        let calls_before = app_calls(&gateway);
        let upload = SlowUpload::start(
            gateway.addr,
            "/digest",
            Framing::Chunked,
            0,
            Duration::from_millis(100),
        );
        let response = upload.response().expect("a response");
        assert_eq!(response.status, 408, "{response:?}\n{}", gateway.logs());
        assert_eq!(response.header("connection"), Some("close"));
        gateway.wait_for_log("request body not received within server.read_timeout");
        assert_eq!(
            app_calls(&gateway),
            calls_before + 1,
            "only the /calls probe reached the app"
        );
        still_serves(&gateway);
    }

    /// A body over `limits.buffer_body` streams to the application, which must not be
    /// held by a client slower than `limits.min_body_rate`: its read raises and the
    /// client gets 408 (not an application error), long before `server.read_timeout`.
    #[test]
    fn a_streamed_body_slower_than_min_body_rate_gets_408() {
        let gateway = GatewayBuilder::new()
            .config(
                "[limits]\nbuffer_body = \"1KiB\"\nmin_body_rate = 1000\n\
                 min_body_rate_window = \"1s\"\n",
            )
            .start();
        let upload = SlowUpload::start(
            gateway.addr,
            "/digest",
            Framing::Length(100_000),
            4096,
            Duration::from_millis(100),
        );
        let response = upload.response().expect("a response");
        assert_eq!(response.status, 408, "{response:?}\n{}", gateway.logs());
        let logs = gateway.wait_for_log("request body too slow (slower than limits.min_body_rate)");
        assert!(
            !logs.contains("application error") && !logs.contains("Traceback"),
            "{logs}"
        );
        still_serves(&gateway);
    }

    /// The same for a chunked body that outgrows `limits.buffer_body`: what was read
    /// ahead reaches the application first, then the rest streams under the rate.
    #[test]
    fn a_chunked_body_over_buffer_body_streams_under_min_body_rate() {
        let gateway = GatewayBuilder::new()
            .config(
                "[limits]\nbuffer_body = \"1KiB\"\nmin_body_rate = 1000\n\
                 min_body_rate_window = \"1s\"\n",
            )
            .start();
        let upload = SlowUpload::start(
            gateway.addr,
            "/digest",
            Framing::Chunked,
            4096,
            Duration::from_millis(100),
        );
        let response = upload.response().expect("a response");
        assert_eq!(response.status, 408, "{response:?}\n{}", gateway.logs());
        gateway.wait_for_log("request body too slow (slower than limits.min_body_rate)");
        still_serves(&gateway);

        // A fast chunked body over the limit arrives whole.
        let mut stream = gateway.connect();
        let body = vec![b'y'; 5000];
        let mut raw = b"POST /digest HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        for piece in body.chunks(700) {
            raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            raw.extend_from_slice(piece);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"0\r\n\r\n");
        stream.write_all(&raw).unwrap();
        let response = read_response(&mut BufReader::new(stream), false).unwrap();
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.json()["bytes"], 5000);
    }
}

/// Item 4: ten concurrent 300 KB POSTs on one HTTP/2 connection to an app that reads
/// `wsgi.input` with four Python threads.
mod http2_flow_control {
    use super::*;

    use bytes::Bytes;

    const STREAMS: usize = 10;
    const ADMIN: &str = "[telemetry]\nadmin_bind = \"127.0.0.1:0\"\n";
    const BODY: usize = 300_000;

    /// The sum of the admin listener's samples of metric `name` whose labels start with
    /// `labels`.
    fn gauge(gateway: &Gateway, name: &str, labels: &str) -> f64 {
        gateway
            .admin_get("/metrics")
            .text()
            .lines()
            .filter_map(|line| line.strip_prefix(name))
            .filter_map(|rest| rest.strip_prefix(labels))
            .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    fn posts_in_flight(gateway: &Gateway) -> f64 {
        gauge(
            gateway,
            "http_server_active_requests",
            "{http_request_method=\"POST\"",
        )
    }

    /// Open four streams (headers only), as many as Python threads, and wait until the
    /// gateway has them; then six more whose whole bodies are sent at once, so that
    /// these, which wait for a thread, are the first to claim the connection window;
    /// and only then the first four's bodies. Meanwhile a request on another
    /// connection must be served, and every upload must arrive whole.
    async fn ten_uploads_on_one_connection(gateway: &Gateway, first_run_in_python: bool) {
        let tcp = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
        let (client, connection) = h2::client::handshake(tcp).await.expect("h2 handshake");
        let driver = tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut client = client.ready().await.unwrap();
        let body = |index: usize| Bytes::from(vec![b'a' + index as u8; BODY]);
        let mut streams = Vec::new();
        for index in 0..STREAMS {
            if index == 4 {
                eventually("four uploads in flight", || {
                    (posts_in_flight(gateway) == 4.0).then_some(())
                });
                if first_run_in_python {
                    eventually("four uploads in Python", || {
                        (gauge(gateway, "wsgi_gateway_python_threads_busy", "") == 4.0)
                            .then_some(())
                    });
                }
            }
            let request = http::Request::post(format!("http://{}/digest", gateway.addr))
                .header("content-length", BODY.to_string())
                .body(())
                .unwrap();
            let (response, mut send) = client.send_request(request, false).unwrap();
            if index >= 4 {
                send.send_data(body(index), true).unwrap();
            }
            streams.push((index, response, send));
            client = client.ready().await.unwrap();
        }
        // With request buffering, those six may be answered already.
        eventually("ten uploads received", || {
            let answered = gauge(
                gateway,
                "http_server_request_duration_seconds_count",
                "{http_request_method=\"POST\"",
            );
            (posts_in_flight(gateway) + answered == STREAMS as f64).then_some(())
        });
        for (index, _, send) in &mut streams[..4] {
            send.send_data(body(*index), true).unwrap();
        }
        let pending = streams;

        let other = gateway.get_in_background("/calls");
        let mut answers = Vec::new();
        for (index, response, _send) in pending {
            let response = tokio::time::timeout(WAIT, response)
                .await
                .unwrap_or_else(|_| panic!("stream {index} stalled:\n{}", gateway.logs()))
                .expect("a response");
            assert_eq!(response.status(), 200, "stream {index}");
            let mut body = response.into_body();
            let mut text = Vec::new();
            while let Some(chunk) = tokio::time::timeout(WAIT, body.data()).await.unwrap() {
                let chunk = chunk.unwrap();
                let _ = body.flow_control().release_capacity(chunk.len());
                text.extend_from_slice(&chunk);
            }
            let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
            answers.push((index, json["bytes"].as_u64().unwrap()));
        }
        assert!(
            answers.iter().all(|(_, bytes)| *bytes == BODY as u64),
            "{answers:?}"
        );
        let other = tokio::task::spawn_blocking(move || other.join().unwrap())
            .await
            .unwrap();
        assert_eq!(other.status, 200, "the other connection was served");
        driver.abort();
        still_serves(gateway);
    }

    /// With request buffering (the default), every body is read as it arrives.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ten_uploads_do_not_stall_with_request_buffering() {
        let gateway = GatewayBuilder::new()
            .config(&format!("[server]\nthreads = 4\n{ADMIN}"))
            .start();
        ten_uploads_on_one_connection(&gateway, false).await;
    }

    /// Without it, every body streams to its application; the connection window is
    /// large enough that queued streams never take what running streams need.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn ten_streamed_uploads_do_not_stall_without_request_buffering() {
        let gateway = GatewayBuilder::new()
            .config(&format!(
                "[server]\nthreads = 4\n[limits]\nbuffer_body = 0\n{ADMIN}"
            ))
            .start();
        ten_uploads_on_one_connection(&gateway, true).await;
    }
}

/// Item 5: waiting for a Python thread is bounded by `server.queue_timeout`; only the
/// application's run counts against `server.timeout`; a request whose client has gone
/// or that has been answered never runs.
mod queue_timeout {
    use super::*;

    /// The ids `/effect` recorded in `log`, in order.
    fn effects(log: &Path) -> Vec<String> {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Requests waiting for a Python thread, from the admin listener's `/metrics`.
    fn queue_depth(gateway: &Gateway) -> f64 {
        let metrics = gateway.admin_get("/metrics").text();
        metrics
            .lines()
            .find_map(|line| line.strip_prefix("wsgi_gateway_python_queue_depth "))
            .and_then(|value| value.trim().parse().ok())
            .expect("the queue depth gauge")
    }

    /// Returns once every Python thread has finished what it was doing: `threads`
    /// requests that can only complete together, on different threads. The pool takes
    /// jobs in order, so every job queued before these has been taken (and run, or
    /// dropped) by then.
    fn drain_the_pool(gateway: &Gateway, threads: usize, id: &str) {
        let barrier: Vec<_> = (0..threads)
            .map(|_| gateway.get_in_background(&format!("/barrier?n={threads}&id={id}")))
            .collect();
        for request in barrier {
            assert_eq!(request.join().unwrap().status, 200);
        }
    }

    /// The repro: `timeout = "2s"`, eight concurrent 1.5 s requests on four
    /// threads. The second four wait 1.5 s for a thread and run 1.5 s: all eight get
    /// 200, each ran once, and the worker is not recycled for the queue time.
    #[test]
    fn queue_time_does_not_count_against_the_timeout() {
        let dir = common::scratch_dir("queue-time");
        let log = dir.join("effects");
        let gateway = GatewayBuilder::new()
            .config("[server]\ntimeout = \"2s\"\nthreads = 4\n")
            .start();
        let pid = gateway.get_json("/pid")["pid"].as_u64().unwrap();
        let requests: Vec<_> = (0..8)
            .map(|n| {
                gateway.get_in_background(&format!("/effect?id=r{n}&s=1.5&log={}", log.display()))
            })
            .collect();
        let statuses: Vec<u16> = requests
            .into_iter()
            .map(|request| request.join().unwrap().status)
            .collect();
        assert_eq!(statuses, [200; 8], "{}", gateway.logs());
        let mut ran = effects(&log);
        ran.sort();
        assert_eq!(ran, (0..8).map(|n| format!("r{n}")).collect::<Vec<_>>());
        assert_eq!(gateway.get_json("/pid")["pid"].as_u64().unwrap(), pid);
        let logs = gateway.logs();
        assert!(
            !logs.contains("no response after server.timeout") && !logs.contains("worker recycled"),
            "{logs}"
        );
    }

    /// With every thread busy, requests that wait past `queue_timeout` get 503 with
    /// `Retry-After`, and never run once threads free up; the worker is not recycled.
    #[test]
    fn a_request_that_waited_past_queue_timeout_gets_503_and_never_runs() {
        let dir = common::scratch_dir("queue-timeout");
        let (log, flag) = (dir.join("effects"), dir.join("release"));
        let gateway = GatewayBuilder::new()
            .config("[server]\nthreads = 4\nqueue_timeout = \"1s\"\n")
            .start();
        let pid = gateway.get_json("/pid")["pid"].as_u64().unwrap();
        let busy: Vec<_> = (0..4)
            .map(|n| {
                gateway.get_in_background(&format!(
                    "/effect?id=busy{n}&log={}&until={}",
                    log.display(),
                    flag.display()
                ))
            })
            .collect();
        eventually("four requests running", || {
            (effects(&log).len() == 4).then_some(())
        });
        let queued: Vec<_> = (0..2)
            .map(|n| {
                gateway.get_in_background(&format!("/effect?id=queued{n}&log={}", log.display()))
            })
            .collect();
        for request in queued {
            let response = request.join().unwrap();
            assert_eq!(response.status, 503, "{response:?}");
            assert_eq!(response.header("retry-after"), Some("1"));
        }
        gateway.wait_for_log("no Python thread free within server.queue_timeout");
        std::fs::write(&flag, b"go").unwrap();
        for request in busy {
            assert_eq!(request.join().unwrap().status, 200);
        }
        drain_the_pool(&gateway, 4, "after-503");
        let ran = effects(&log);
        assert!(
            ran.iter().all(|id| id.starts_with("busy")),
            "requests answered 503 ran anyway: {ran:?}"
        );
        assert_eq!(gateway.get_json("/pid")["pid"].as_u64().unwrap(), pid);
        assert!(!gateway.logs().contains("worker recycled"));
    }

    /// A client that goes away while its request waits for a thread: the request is
    /// dropped from the queue, unstarted.
    #[test]
    fn a_request_whose_client_has_gone_never_runs() {
        let dir = common::scratch_dir("client-gone");
        let (log, flag) = (dir.join("effects"), dir.join("release"));
        let gateway = GatewayBuilder::new()
            .config("[server]\nthreads = 4\n[telemetry]\nadmin_bind = \"127.0.0.1:0\"\n")
            .env("RUST_LOG", "info,wsgi_gateway::wsgi=debug")
            .start();
        let busy: Vec<_> = (0..4)
            .map(|n| {
                gateway.get_in_background(&format!(
                    "/effect?id=busy{n}&log={}&until={}",
                    log.display(),
                    flag.display()
                ))
            })
            .collect();
        eventually("four requests running", || {
            (effects(&log).len() == 4).then_some(())
        });
        let mut gone = gateway.connect();
        gone.write_all(
            format!(
                "GET /effect?id=gone&log={} HTTP/1.1\r\nHost: x\r\n\r\n",
                log.display()
            )
            .as_bytes(),
        )
        .unwrap();
        eventually("the request queued", || {
            (queue_depth(&gateway) == 1.0).then_some(())
        });
        gone.shutdown(Shutdown::Both).unwrap();
        drop(gone);
        gateway.wait_for_log("the client went away before a Python thread was free");
        std::fs::write(&flag, b"go").unwrap();
        for request in busy {
            assert_eq!(request.join().unwrap().status, 200);
        }
        drain_the_pool(&gateway, 4, "after-gone");
        let ran = effects(&log);
        assert!(!ran.contains(&"gone".to_owned()), "{ran:?}");
    }
}
