//! Metrics on the admin listener (`/metrics`): counted in every worker, summed by the
//! supervisor, kept across worker restarts, and valid for `promtool check metrics`.

mod common;

use std::collections::HashSet;

use common::{eventually, GatewayBuilder};

const ADMIN: &str = "[telemetry]\nadmin_bind = \"127.0.0.1:0\"\n";

/// The sum of every sample of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name
                && labels
                    .iter()
                    .all(|(key, value)| rest.contains(&format!("{key}=\"{value}\""))))
            .then(|| value.parse::<f64>().unwrap())
        })
        .sum()
}

fn scrape(gateway: &common::Gateway) -> String {
    let response = gateway.admin_get("/metrics");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    response.text()
}

#[test]
fn requests_are_counted_across_workers_and_pass_promtool() {
    let gateway = GatewayBuilder::new()
        .arg("--workers=2")
        .config(ADMIN)
        .start();
    // Connections are spread by the kernel: keep asking until both workers answered.
    let mut pids = HashSet::new();
    let mut sent = 0;
    while pids.len() < 2 && sent < 400 {
        let response = gateway.get("/pid");
        assert_eq!(response.status, 200);
        pids.insert(response.json()["pid"].as_i64().unwrap());
        sent += 1;
    }
    assert_eq!(pids.len(), 2, "both workers served: {pids:?}");
    let body = vec![b'x'; 3000];
    for _ in 0..3 {
        let response = gateway.request("POST", "/digest", &[], &body);
        assert_eq!(response.status, 200);
    }
    assert_eq!(gateway.get("/status?code=503").status, 503);
    assert_eq!(gateway.get("/no-such-route").status, 404);

    // A request is recorded once both of its bodies are dropped, which on the Python
    // side can be a moment after the client has read the response.
    let duration = "http_server_request_duration_seconds";
    let total = f64::from(sent + 5);
    let text = eventually("every request counted", || {
        let text = scrape(&gateway);
        (sample(&text, &format!("{duration}_count"), &[]) == total).then_some(text)
    });
    let get_ok = [
        ("http_request_method", "GET"),
        ("http_response_status_code", "200"),
        ("url_scheme", "http"),
        ("network_protocol_version", "1.1"),
    ];
    let sent = f64::from(sent);
    assert_eq!(
        sample(&text, &format!("{duration}_count"), &get_ok),
        sent,
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!("{duration}_bucket"),
            &[get_ok[0], get_ok[1], ("le", "+Inf")]
        ),
        sent
    );
    assert!(sample(&text, &format!("{duration}_sum"), &get_ok) > 0.0);
    let post = [
        ("http_request_method", "POST"),
        ("http_response_status_code", "200"),
    ];
    assert_eq!(sample(&text, &format!("{duration}_count"), &post), 3.0);
    assert_eq!(
        sample(&text, "http_server_request_body_size_bytes_sum", &post),
        9000.0
    );
    // 3000 bytes is in the (1024, 4096] bucket: not under le="1024", all under 4096.
    assert_eq!(
        sample(
            &text,
            "http_server_request_body_size_bytes_bucket",
            &[post[0], ("le", "1024")]
        ),
        0.0
    );
    assert_eq!(
        sample(
            &text,
            "http_server_request_body_size_bytes_bucket",
            &[post[0], ("le", "4096")]
        ),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            "http_server_response_body_size_bytes_sum",
            &[("http_response_status_code", "404")]
        ),
        "no such route: /no-such-route".len() as f64
    );
    assert_eq!(
        sample(
            &text,
            &format!("{duration}_count"),
            &[("http_response_status_code", "503"), ("error_type", "503")]
        ),
        1.0
    );
    assert_eq!(sample(&text, "wsgi_gateway_workers", &[]), 2.0);
    // The default pool is 4 threads per worker.
    assert_eq!(sample(&text, "wsgi_gateway_python_threads", &[]), 8.0);
    assert_eq!(sample(&text, "wsgi_gateway_python_threads_busy", &[]), 0.0);
    assert_eq!(sample(&text, "http_server_active_requests", &[]), 0.0);
    common::promtool_check(&text);
}

#[test]
fn gauges_show_requests_in_flight() {
    let gateway = GatewayBuilder::new()
        .config(&format!("{ADMIN}[server]\nthreads = 1\n"))
        .start();
    let slow: Vec<_> = (0..2)
        .map(|_| gateway.get_in_background("/sleep?s=1.5"))
        .collect();
    // One thread: one request runs, the other waits in the queue (once both have
    // been read and handed to the pool).
    eventually("one request running and one queued", || {
        let text = scrape(&gateway);
        let get = [("http_request_method", "GET")];
        (sample(&text, "http_server_active_requests", &get) == 2.0
            && sample(&text, "wsgi_gateway_python_threads_busy", &[]) == 1.0
            && sample(&text, "wsgi_gateway_python_queue_depth", &[]) == 1.0)
            .then_some(())
    });
    for request in slow {
        assert_eq!(request.join().unwrap().text(), "slept");
    }
    let text = eventually("the requests to finish", || {
        let text = scrape(&gateway);
        (sample(&text, "http_server_active_requests", &[]) == 0.0).then_some(text)
    });
    assert_eq!(sample(&text, "wsgi_gateway_python_threads_busy", &[]), 0.0);
    assert_eq!(sample(&text, "wsgi_gateway_python_queue_depth", &[]), 0.0);
    assert_eq!(
        sample(
            &text,
            "http_server_request_duration_seconds_bucket",
            &[("http_request_method", "GET"), ("le", "1")]
        ),
        0.0,
        "both took over a second"
    );
}

#[test]
fn counts_survive_worker_restarts_which_are_counted_by_reason() {
    let gateway = GatewayBuilder::new()
        .config(&format!("{ADMIN}[server]\nmax_requests = 6\n"))
        .start();
    let pid = gateway.get("/pid").json()["pid"].as_i64().unwrap();
    for _ in 0..4 {
        assert_eq!(gateway.get("/calls").status, 200);
    }
    // SIGKILL: the worker cannot report anything on its way out.
    // SAFETY: kill(2) on a worker pid this test read from the gateway.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    gateway.wait_for_log("worker crashed");
    let text = eventually("the replacement worker", || {
        let text = scrape(&gateway);
        (sample(&text, "wsgi_gateway_workers", &[]) == 1.0
            && sample(
                &text,
                "wsgi_gateway_worker_restarts_total",
                &[("reason", "crash")],
            ) == 1.0)
            .then_some(text)
    });
    let count = "http_server_request_duration_seconds_count";
    assert_eq!(sample(&text, count, &[]), 5.0, "{text}");
    // Six more requests reach max_requests: the worker recycles itself.
    for _ in 0..6 {
        assert_eq!(gateway.get("/calls").status, 200);
    }
    let text = eventually("the recycle to be counted", || {
        let text = scrape(&gateway);
        (sample(
            &text,
            "wsgi_gateway_worker_restarts_total",
            &[("reason", "recycle")],
        ) == 1.0)
            .then_some(text)
    });
    assert_eq!(sample(&text, count, &[]), 11.0, "{text}");

    gateway.signal(libc::SIGHUP);
    gateway.wait_for_log("reload complete");
    let text = scrape(&gateway);
    assert_eq!(
        sample(
            &text,
            "wsgi_gateway_worker_restarts_total",
            &[("reason", "reload")]
        ),
        1.0
    );
    assert_eq!(sample(&text, count, &[]), 11.0, "{text}");
    common::promtool_check(&text);
}
