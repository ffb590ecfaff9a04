//! Worker processes under the supervisor: several workers, crash and respawn, rolling
//! reload on SIGHUP (also when the new code fails), max_requests recycling, crash loops.

mod common;

use std::collections::HashSet;

use common::{eventually, scratch_dir, GatewayBuilder};

fn pid_of(gateway: &common::Gateway) -> Option<i64> {
    let response = gateway.get("/pid");
    (response.status == 200).then(|| response.json()["pid"].as_i64().unwrap())
}

#[test]
fn several_workers_serve_and_say_so() {
    let gateway = GatewayBuilder::new().arg("--workers=2").start();
    assert_eq!(gateway.get_json("/environ")["wsgi.multiprocess"], true);
    let mut pids = HashSet::new();
    // Connections are spread by the kernel; 200 tries see both workers.
    for _ in 0..200 {
        pids.extend(pid_of(&gateway));
        if pids.len() == 2 {
            break;
        }
    }
    assert_eq!(pids.len(), 2, "{pids:?}");
    assert!(
        !pids.contains(&(gateway.pid() as i64)),
        "the supervisor runs no Python"
    );
}

#[test]
fn a_crashed_worker_is_replaced() {
    let gateway = GatewayBuilder::new().app("contract:crash_app").start();
    let before = pid_of(&gateway).unwrap();
    let crashed = gateway.raw(b"GET /crash HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(crashed.is_empty(), "the worker died mid-request");
    let after = eventually("a replacement worker", || {
        pid_of(&gateway).filter(|pid| *pid != before)
    });
    assert_ne!(before, after);
    gateway.wait_for_log("worker crashed (exit code 1); restarting it");
}

fn reloadable_app(dir: &std::path::Path, version: &str) {
    std::fs::write(
        dir.join("reloadable.py"),
        format!(
            "import os\n\ndef application(environ, start_response):\n    \
             start_response('200 OK', [])\n    return [b'{version} ' + str(os.getpid()).encode()]\n"
        ),
    )
    .unwrap();
}

#[test]
fn sighup_reloads_new_code_and_a_broken_reload_keeps_serving() {
    let dir = scratch_dir("reload");
    reloadable_app(&dir, "v1");
    let gateway = GatewayBuilder::new()
        .cwd(&dir)
        .app("reloadable")
        .arg("--workers=2")
        .start();
    assert!(gateway.get("/").text().starts_with("v1 "));

    reloadable_app(&dir, "v2");
    gateway.signal(libc::SIGHUP);
    gateway.wait_for_log("reload complete");
    // An old worker may accept one more connection until it has seen its SIGTERM: wait
    // until both are gone before expecting only the new code.
    eventually("both old workers to exit", || {
        (gateway
            .logs()
            .matches("worker exited after draining")
            .count()
            >= 2)
            .then_some(())
    });
    for _ in 0..20 {
        assert!(
            gateway.get("/").text().starts_with("v2 "),
            "every worker runs the new code"
        );
    }

    std::fs::write(dir.join("reloadable.py"), "this is not python(\n").unwrap();
    gateway.signal(libc::SIGHUP);
    gateway.wait_for_log("reload failed");
    gateway.wait_for_log("SyntaxError");
    for _ in 0..20 {
        let response = gateway.get("/");
        assert_eq!(response.status, 200);
        assert!(
            response.text().starts_with("v2 "),
            "the old workers keep serving"
        );
    }
}

#[test]
fn max_requests_recycles_the_worker() {
    let gateway = GatewayBuilder::new()
        .config("[server]\nmax_requests = 5\nmax_requests_jitter = 2\n")
        .start();
    let first = pid_of(&gateway).unwrap();
    let later = eventually("a recycled worker", || {
        pid_of(&gateway).filter(|pid| *pid != first)
    });
    assert_ne!(first, later);
    gateway.wait_for_log("server.max_requests reached");
    gateway.wait_for_log("replacement ready; draining the recycled worker");
}

#[test]
fn a_crash_loop_stops_the_gateway_with_a_clear_message() {
    let mut gateway = GatewayBuilder::new().app("crashy").start();
    let status = gateway.wait_exit();
    assert!(!status.success());
    let logs = gateway.logs();
    assert!(logs.contains("worker crashed (exit code 7)"), "{logs}");
    assert!(
        logs.contains("stopping instead of restarting them in a loop"),
        "{logs}"
    );
}

#[test]
fn a_request_past_the_timeout_gets_504_and_its_worker_is_replaced() {
    let gateway = GatewayBuilder::new()
        .config("[server]\ntimeout = \"1s\"\nthreads = 2\n")
        .start();
    let before = pid_of(&gateway).unwrap();
    let response = gateway.get("/sleep?s=5");
    assert_eq!(response.status, 504);
    gateway.wait_for_log("no response after server.timeout");
    gateway.wait_for_log("GET /sleep?s=5");
    let after = eventually("a replacement worker", || {
        pid_of(&gateway).filter(|pid| *pid != before)
    });
    assert_ne!(before, after);
    gateway.wait_for_log("replacement ready; draining the recycled worker");
}

#[test]
fn a_worker_over_max_rss_is_recycled() {
    let gateway = GatewayBuilder::new()
        .config("[server]\nmax_rss = \"1MiB\"\n")
        .start();
    gateway.wait_for_log("server.max_rss exceeded");
    gateway.wait_for_log("replacement ready; draining the recycled worker");
}

#[test]
fn workers_exit_when_the_supervisor_is_killed() {
    let mut gateway = GatewayBuilder::new().arg("--workers=2").start();
    // Which worker accepts a connection is the kernel's choice: ask until both have
    // answered, within the usual bound.
    let mut workers = HashSet::new();
    let deadline = std::time::Instant::now() + common::WAIT;
    while workers.len() < 2 && std::time::Instant::now() < deadline {
        workers.extend(pid_of(&gateway));
    }
    assert_eq!(workers.len(), 2);
    gateway.signal(libc::SIGKILL);
    gateway.wait_exit();
    for pid in workers {
        eventually("the orphaned worker to exit", || {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|stat| !stat.contains(") Z "))
                .unwrap_or(false);
            (!alive).then_some(())
        });
    }
}

#[test]
fn the_application_subprocesses_inherit_no_gateway_descriptors() {
    let gateway = GatewayBuilder::new()
        .config("[telemetry]\nadmin_bind = \"127.0.0.1:0\"\n")
        .start();
    let listing = gateway.get("/child-fds").text();
    assert!(listing.contains("pipe:"), "the listing itself: {listing}");
    // Neither the listening socket, the readiness pipe's peer, nor the metrics memory.
    assert!(!listing.contains("socket:"), "{listing}");
    assert!(!listing.contains("memfd:"), "{listing}");
}

#[test]
fn a_crashed_worker_is_replaced_after_the_binary_was_upgraded_in_place() {
    let dir = scratch_dir("upgrade");
    let binary = dir.join("wsgi-gateway");
    std::fs::copy(env!("CARGO_BIN_EXE_wsgi-gateway"), &binary).unwrap();
    let gateway = GatewayBuilder::new().binary(&binary).start();
    let before = pid_of(&gateway).unwrap();
    // A package upgrade replaces the file: the running binary's is gone.
    std::fs::remove_file(&binary).unwrap();
    std::fs::write(&binary, b"#!/bin/sh\nexit 1\n").unwrap();
    // SAFETY: kill(2) on a worker pid this test read from the gateway.
    unsafe { libc::kill(before as i32, libc::SIGKILL) };
    gateway.wait_for_log("worker crashed");
    let after = eventually("a replacement worker", || {
        pid_of(&gateway).filter(|pid| *pid != before)
    });
    assert_ne!(before, after);
    // It runs the supervisor's own binary, under the name it was started with.
    let cmdline = std::fs::read(format!("/proc/{after}/cmdline")).unwrap();
    assert!(cmdline.starts_with(binary.as_os_str().as_encoded_bytes()));
}

#[test]
fn sigterm_during_a_slow_reload_stops_the_gateway_at_once() {
    let dir = scratch_dir("slow-reload");
    reloadable_app(&dir, "v1");
    let mut gateway = GatewayBuilder::new().cwd(&dir).app("reloadable").start();
    assert!(gateway.get("/").text().starts_with("v1 "));
    // The new code takes far longer to import than the test waits for anything.
    std::fs::write(
        dir.join("reloadable.py"),
        "import time\ntime.sleep(60)\n\ndef application(environ, start_response):\n    \
         start_response('200 OK', [])\n    return [b'v2']\n",
    )
    .unwrap();
    gateway.signal(libc::SIGHUP);
    gateway.wait_for_log("SIGHUP received");
    // Still served by the old worker while the new one imports.
    assert!(gateway.get("/").text().starts_with("v1 "));
    gateway.signal(libc::SIGTERM);
    let status = gateway.wait_exit();
    assert!(status.success(), "{status:?}\n{}", gateway.logs());
    let logs = gateway.logs();
    assert!(
        logs.contains("SIGTERM received while a worker was starting"),
        "{logs}"
    );
    assert!(!logs.contains("reload complete"), "{logs}");
}
