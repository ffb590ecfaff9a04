//! Planned replacements, seen from a client: a recycled worker is replaced new before
//! old (no gap, even with one worker), and an application's exit code is never taken
//! for a recycle.

mod common;

use common::{eventually, scratch_dir, GatewayBuilder};

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
