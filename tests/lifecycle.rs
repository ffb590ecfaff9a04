//! Planned replacements and the stop, seen from a client: a recycled worker is replaced
//! new before old (no gap, even with one worker), an application's exit code is never
//! taken for a recycle, a connection opened during the drain is refused at once (never
//! accepted and then reset), and `server.shutdown_delay` keeps serving after SIGTERM.

mod common;

use std::io::{BufReader, Write};

use common::{eventually, read_response, scratch_dir, GatewayBuilder};

fn pid_of(gateway: &common::Gateway) -> i64 {
    let response = gateway.get("/pid");
    assert_eq!(response.status, 200, "{response:?}\n{}", gateway.logs());
    response.json()["pid"].as_i64().unwrap()
}

/// The index of the first log line that satisfies `matches`.
fn line_index(logs: &str, what: &str, matches: impl Fn(&str) -> bool) -> usize {
    logs.lines()
        .position(matches)
        .unwrap_or_else(|| panic!("no log line {what}:\n{logs}"))
}

#[test]
fn a_recycled_worker_is_replaced_before_it_stops_accepting() {
    let gateway = GatewayBuilder::new()
        .config("[server]\nworkers = 1\nmax_requests = 10\n")
        .start();
    // Requests back to back across the recycle, each on a new connection: every one is
    // answered. Bounded in count; stops a few requests after the new worker answered.
    let mut pids = Vec::new();
    let mut after_change = 0;
    for _ in 0..2000 {
        pids.push(pid_of(&gateway));
        if pids.iter().any(|pid| *pid != pids[0]) {
            after_change += 1;
            if after_change == 5 {
                break;
            }
        }
    }
    let old = pids[0];
    let new = *pids
        .iter()
        .find(|pid| **pid != old)
        .expect("a replacement served");
    let logs = gateway.wait_for_log(&format!(
        "worker exited after draining (exit code 0) pid={old}"
    ));
    let ready = line_index(&logs, "for the replacement ready", |line| {
        line.contains("worker ready") && line.ends_with(&format!("pid={new}"))
    });
    let told_to_stop = line_index(&logs, "for the old worker's SIGTERM", |line| {
        line.contains("SIGTERM received") && line.ends_with(&format!("pid={old}"))
    });
    let exited = line_index(&logs, "for the old worker's exit", |line| {
        line.contains("worker exited after draining (exit code 0)")
            && line.ends_with(&format!("pid={old}"))
    });
    assert!(
        ready < told_to_stop && told_to_stop < exited,
        "the replacement must serve before the old worker stops accepting:\n{logs}"
    );
    assert!(logs.contains("server.max_requests reached"), "{logs}");
    assert!(!logs.contains("worker crashed"), "{logs}");
}

fn reloadable_app(dir: &std::path::Path, body: &str) {
    std::fs::write(
        dir.join("reloadable.py"),
        format!(
            "import os\n\ndef application(environ, start_response):\n    \
             start_response('200 OK', [])\n    return [b'{body} ' + str(os.getpid()).encode()]\n"
        ),
    )
    .unwrap();
}

#[test]
fn a_recycled_worker_whose_replacement_fails_keeps_serving_until_one_starts() {
    let dir = scratch_dir("recycle-retry");
    reloadable_app(&dir, "first");
    let gateway = GatewayBuilder::new()
        .cwd(&dir)
        .app("reloadable")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .config("[server]\nmax_requests = 3\n")
        .start();
    let first = gateway.get("/").text();
    assert!(first.starts_with("first "), "{first}");

    // The code on disk breaks; the next requests reach max_requests.
    std::fs::write(dir.join("reloadable.py"), "this is not python(\n").unwrap();
    for _ in 0..3 {
        assert_eq!(gateway.get("/").text(), first, "the old worker serves");
    }
    gateway.wait_for_log("the replacement of a recycled worker did not start");
    gateway.wait_for_log("SyntaxError");
    for _ in 0..5 {
        assert_eq!(
            gateway.get("/").text(),
            first,
            "the old worker keeps serving"
        );
    }

    // Once the code is fixed, a later attempt succeeds.
    reloadable_app(&dir, "fixed");
    let later = eventually("the recycle to be tried again and succeed", || {
        let text = gateway.get("/").text();
        text.starts_with("fixed ").then_some(text)
    });
    assert_ne!(later, first);
    gateway.wait_for_log("replacement ready; draining the recycled worker");
}

#[test]
fn an_exit_code_from_the_application_is_a_crash_never_a_recycle() {
    let mut gateway = GatewayBuilder::new().app("contract:crash_app").start();
    // os._exit(3) from the app, again and again: each is a crash (backoff, counted), so
    // the fifth within the window stops the gateway instead of replacing workers forever.
    for _ in 0..5 {
        let answer = gateway.raw(b"GET /crash?code=3 HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(answer.is_empty(), "the worker died mid-request");
    }
    let status = gateway.wait_exit();
    assert!(!status.success(), "{status:?}");
    let logs = gateway.logs();
    assert!(logs.contains("worker crashed (exit code 3)"), "{logs}");
    assert!(
        logs.contains("stopping instead of restarting them in a loop"),
        "{logs}"
    );
    assert!(!logs.contains("recycle"), "{logs}");
}

#[test]
fn a_connection_opened_during_the_drain_is_refused_at_once_never_reset() {
    let mut gateway = GatewayBuilder::new().start();
    let slow = gateway.get_in_background("/sleep?s=3");
    common::wait_for_app_calls(&gateway, 1);
    gateway.signal(libc::SIGTERM);
    gateway.wait_for_log("stopping: no new connections");
    // The long response is still in flight: nobody will accept this connection.
    match std::net::TcpStream::connect(gateway.addr) {
        Err(error) => assert_eq!(
            error.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{error}"
        ),
        Ok(mut stream) => {
            // Accepted after all: then it must be answered, and told the server closes.
            stream.set_read_timeout(Some(common::WAIT)).unwrap();
            stream
                .write_all(b"GET /status?code=200 HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let response = read_response(&mut BufReader::new(stream), false)
                .expect("an accepted connection is answered, not reset");
            assert_eq!(response.status, 200);
            assert_eq!(response.header("connection"), Some("close"));
        }
    }
    let slow = slow.join().unwrap();
    assert_eq!(slow.text(), "slept", "the request in flight finished");
    let status = gateway.wait_exit();
    assert!(status.success(), "{status:?}\n{}", gateway.logs());
}

#[test]
fn connections_queued_when_sigterm_arrives_are_served() {
    let mut gateway = GatewayBuilder::new().start();
    // Requests sent, SIGTERM at once: some connections are still in the kernel's queue,
    // not yet accepted by the worker, when the stop begins.
    let mut streams: Vec<_> = (0..20)
        .map(|_| {
            let mut stream = gateway.connect();
            stream
                .write_all(b"GET /status?code=200 HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            stream
        })
        .collect();
    gateway.signal(libc::SIGTERM);
    for stream in streams.drain(..) {
        let response = read_response(&mut BufReader::new(stream), false)
            .expect("a queued connection is answered, not reset");
        assert_eq!(response.status, 200);
    }
    let status = gateway.wait_exit();
    assert!(status.success(), "{status:?}\n{}", gateway.logs());
}

#[test]
fn on_a_unix_socket_too_the_drain_finishes_in_flight_requests_and_refuses_new_ones() {
    let socket = scratch_dir("unix-drain").join("gateway.sock");
    let mut gateway = GatewayBuilder::new()
        .arg(&format!("--bind=unix:{}", socket.display()))
        .start();
    gateway.wait_for_log(&format!("listening on unix:{}", socket.display()));
    let in_flight = {
        let socket = socket.clone();
        std::thread::spawn(move || {
            let mut stream = std::os::unix::net::UnixStream::connect(socket).unwrap();
            stream.set_read_timeout(Some(common::WAIT)).unwrap();
            stream
                .write_all(b"GET /sleep?s=2 HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            read_response(&mut BufReader::new(stream), false)
        })
    };
    common::wait_for_app_calls(&gateway, 1);
    gateway.signal(libc::SIGTERM);
    gateway.wait_for_log("stopping: no new connections");
    match std::os::unix::net::UnixStream::connect(&socket) {
        Err(error) => assert!(
            matches!(
                error.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ),
            "{error}"
        ),
        Ok(mut stream) => {
            stream.set_read_timeout(Some(common::WAIT)).unwrap();
            stream
                .write_all(b"GET /status?code=200 HTTP/1.1\r\nHost: x\r\n\r\n")
                .unwrap();
            let response = read_response(&mut BufReader::new(stream), false)
                .expect("an accepted connection is answered, not reset");
            assert_eq!(response.header("connection"), Some("close"));
        }
    }
    let response = in_flight
        .join()
        .unwrap()
        .expect("the request in flight is answered");
    assert_eq!(response.text(), "slept");
    let status = gateway.wait_exit();
    assert!(status.success(), "{status:?}\n{}", gateway.logs());
}

#[test]
fn shutdown_delay_keeps_serving_new_connections_after_sigterm() {
    // Far longer than any wait of the test: the second signal must cut it short.
    let mut gateway = GatewayBuilder::new()
        .config(
            "[server]\nshutdown_delay = \"600s\"\n\
             [telemetry]\nadmin_bind = \"127.0.0.1:0\"\n",
        )
        .start();
    eventually("the gateway to be ready", || {
        (gateway.admin_get("/readyz").status == 200).then_some(())
    });
    gateway.signal(libc::SIGTERM);
    gateway.wait_for_log("serving on for server.shutdown_delay");
    assert_eq!(
        gateway.admin_get("/readyz").status,
        503,
        "load balancers are told to stop sending"
    );
    // New connections are still accepted and served as usual, keep-alive included.
    for _ in 0..5 {
        assert_eq!(gateway.get("/status?code=200").status, 200);
    }
    let mut stream = gateway.connect();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    for _ in 0..2 {
        stream
            .write_all(b"GET /status?code=200 HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let response = read_response(&mut reader, false).expect("a response");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("connection"), None, "not draining yet");
    }
    assert!(!gateway.logs().contains("stopping: no new connections"));

    gateway.signal(libc::SIGTERM);
    let status = gateway.wait_exit();
    assert!(status.success(), "{status:?}\n{}", gateway.logs());
    gateway.wait_for_log("SIGTERM received again: draining the workers now");
}

#[test]
fn shutdown_delay_ends_by_itself_then_the_workers_drain() {
    let mut gateway = GatewayBuilder::new()
        .config("[server]\nshutdown_delay = \"1s\"\n")
        .start();
    gateway.signal(libc::SIGTERM);
    let status = gateway.wait_exit();
    assert!(status.success(), "{status:?}\n{}", gateway.logs());
    let logs = gateway.logs();
    let over = line_index(&logs, "for the end of the delay", |line| {
        line.contains("server.shutdown_delay over")
    });
    let drain = line_index(&logs, "for the drain", |line| {
        line.contains("stopping: no new connections")
    });
    assert!(over < drain, "{logs}");
}

#[test]
fn a_client_connecting_while_the_app_imports_is_refused_at_once_not_reset() {
    let dir = common::scratch_dir("slow-import");
    // An import that takes a while, then fails.
    std::fs::write(
        dir.join("slowbroken.py"),
        "import time\ntime.sleep(2)\nraise RuntimeError('this app does not load')\n",
    )
    .unwrap();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let builder = common::GatewayBuilder::new()
        .cwd(&dir)
        .app("slowbroken")
        .no_bind_flag()
        .arg(&format!("--bind=127.0.0.1:{port}"));
    let run = std::thread::spawn(move || builder.run());
    // While the worker imports, every attempt is refused on the spot: the socket is
    // bound (the port is ours) but does not listen until an app is loaded.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    let mut attempts = 0;
    while std::time::Instant::now() < deadline {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Err(error) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused),
            Ok(_) => panic!("a connection was accepted into a queue no worker serves yet"),
        }
        attempts += 1;
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(attempts > 10);
    let output = run.join().unwrap();
    assert!(!output.status.success(), "{output:?}");
    assert!(
        output.stderr.contains("this app does not load"),
        "{}",
        output.stderr
    );
}
