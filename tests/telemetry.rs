//! Traces and metrics over OTLP to a real receiver (gRPC and HTTP/protobuf, built on the
//! official opentelemetry-proto package): the server span and its attributes, the
//! client's trace continued, the app span, a span made by the Python SDK inside the app
//! parented to the gateway's, requests unaffected with no collector, the flush at
//! shutdown, and the request metrics summed across workers.

mod common;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use common::{eventually, scratch_dir, test_venv, GatewayBuilder};
use serde_json::Value;

const CLIENT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
const CLIENT_SPAN: &str = "b7ad6b7169203331";

/// The receiver process, killed on drop.
struct Receiver {
    child: Child,
    grpc: u16,
    http: u16,
    spans: PathBuf,
    metrics: PathBuf,
}

impl Receiver {
    fn start() -> Self {
        let dir = scratch_dir("otlp");
        let (spans, metrics) = (dir.join("spans.jsonl"), dir.join("metrics.jsonl"));
        let mut child = Command::new(test_venv().join("bin/python"))
            .arg(common::apps_dir().join("otlp_receiver.py"))
            .arg(&spans)
            .arg(&metrics)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = |name: &str| -> u16 {
            line.split_whitespace()
                .find_map(|p| p.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name} in {line:?}"))
                .parse()
                .unwrap()
        };
        Receiver {
            grpc: port("GRPC_PORT"),
            http: port("HTTP_PORT"),
            spans,
            metrics,
            child,
        }
    }

    /// Every metric data point received so far, oldest first.
    fn metric_points(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.metrics)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn spans(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.spans)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Wait until a span named `name` arrives.
    fn span(&self, name: &str) -> Value {
        eventually(&format!("span {name:?}"), || {
            self.spans().into_iter().find(|s| s["name"] == name)
        })
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn traced_gateway(receiver: &Receiver, endpoint: &str, protocol: &str) -> common::Gateway {
    GatewayBuilder::new()
        .app("otel_app")
        .env("VIRTUAL_ENV", test_venv().to_str().unwrap())
        .env(
            "APP_OTLP_HTTP",
            &format!("http://127.0.0.1:{}/v1/traces", receiver.http),
        )
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .config(&format!(
            "[telemetry]\notlp_endpoint = \"{endpoint}\"\notlp_protocol = \"{protocol}\"\n"
        ))
        .start()
}

fn check_trace(receiver: &Receiver, gateway: &common::Gateway) {
    let response = gateway.request(
        "GET",
        "/orders?x=1",
        &[
            (
                "traceparent",
                &format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"),
            ),
            ("User-Agent", "trace-test/1.0"),
        ],
        b"",
    );
    assert_eq!(response.text(), "traced");

    let server = receiver.span("GET");
    assert_eq!(server["service"], "wsgi-gateway");
    assert_eq!(server["kind"], 2, "SPAN_KIND_SERVER");
    assert_eq!(
        server["trace_id"], CLIENT_TRACE,
        "the client's trace is continued"
    );
    assert_eq!(server["parent_span_id"], CLIENT_SPAN);
    let attributes = &server["attributes"];
    assert_eq!(attributes["http.request.method"], "GET");
    assert_eq!(attributes["url.path"], "/orders");
    assert_eq!(attributes["url.scheme"], "http");
    assert_eq!(attributes["http.response.status_code"], 200);
    assert_eq!(attributes["client.address"], "127.0.0.1");
    assert_eq!(attributes["server.address"], "test.local");
    assert_eq!(attributes["user_agent.original"], "trace-test/1.0");
    assert_eq!(attributes["network.protocol.version"], "1.1");

    let segment = receiver.span("python segment");
    assert_eq!(segment["trace_id"], CLIENT_TRACE);
    assert_eq!(segment["parent_span_id"], server["span_id"]);
    assert_eq!(segment["attributes"]["wsgi.layers"], "otel_app");
    let app = receiver.span("WSGI application");
    assert_eq!(app["trace_id"], CLIENT_TRACE);
    assert_eq!(app["parent_span_id"], segment["span_id"]);

    // Made by the OpenTelemetry SDK inside the Python app, from HTTP_TRACEPARENT.
    let python = receiver.span("app work");
    assert_eq!(python["service"], "python-app");
    assert_eq!(python["trace_id"], CLIENT_TRACE);
    assert_eq!(python["parent_span_id"], app["span_id"]);
}

#[test]
fn spans_reach_a_collector_over_grpc() {
    let receiver = Receiver::start();
    let gateway = traced_gateway(
        &receiver,
        &format!("http://127.0.0.1:{}", receiver.grpc),
        "grpc",
    );
    check_trace(&receiver, &gateway);
}

#[test]
fn spans_reach_a_collector_over_http_protobuf() {
    let receiver = Receiver::start();
    // The base URL: the gateway appends /v1/traces.
    let gateway = traced_gateway(
        &receiver,
        &format!("http://127.0.0.1:{}", receiver.http),
        "http/protobuf",
    );
    check_trace(&receiver, &gateway);
}

#[test]
fn requests_succeed_with_the_collector_down() {
    let receiver = Receiver::start();
    // Nothing listens on the endpoint (the receiver's HTTP port is used for the app only).
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gateway = traced_gateway(&receiver, &format!("http://127.0.0.1:{closed}"), "grpc");
    for _ in 0..200 {
        assert_eq!(gateway.get("/").text(), "traced");
    }
}

#[test]
fn spans_are_flushed_at_graceful_shutdown() {
    let receiver = Receiver::start();
    let mut gateway = GatewayBuilder::new()
        .app("otel_app")
        .env("VIRTUAL_ENV", test_venv().to_str().unwrap())
        .env(
            "APP_OTLP_HTTP",
            &format!("http://127.0.0.1:{}/v1/traces", receiver.http),
        )
        // Far beyond the test: only the shutdown flush can deliver the span.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .config(&format!(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{}\"\notlp_protocol = \"grpc\"\n",
            receiver.grpc
        ))
        .start();
    assert_eq!(gateway.get("/").text(), "traced");
    assert!(
        receiver.spans().iter().all(|s| s["name"] != "GET"),
        "exported too early"
    );
    gateway.signal(libc::SIGTERM);
    assert!(gateway.wait_exit().success());
    receiver.span("GET");
}

/// `service_name`: `telemetry.service_name`, if set (else the default name is expected).
fn check_metrics(endpoint: &str, protocol: &str, service_name: Option<&str>) {
    let receiver = Receiver::start();
    let endpoint = endpoint
        .replace("GRPC", &receiver.grpc.to_string())
        .replace("HTTP", &receiver.http.to_string());
    let mut gateway = GatewayBuilder::new()
        .arg("--workers=2")
        .config(&format!(
            "[telemetry]\notlp_endpoint = \"{endpoint}\"\notlp_protocol = \"{protocol}\"\n\
             metrics_interval = \"200ms\"\n{}",
            service_name.map_or(String::new(), |name| format!("service_name = \"{name}\"\n"))
        ))
        .start();
    for _ in 0..5 {
        assert_eq!(gateway.get("/pid").status, 200);
    }
    assert_eq!(gateway.get("/no-such-route").status, 404);
    let is_get_ok = |point: &Value| {
        point["name"] == "http.server.request.duration"
            && point["attributes"]["http.response.status_code"] == 200
    };
    // Wait for an export that holds every request: the five 200s and the 404 (its
    // meter may be recorded a moment after the others).
    let has_404 = |points: &[serde_json::Value]| {
        points.iter().any(|p| {
            p["name"] == "http.server.response.body.size"
                && p["attributes"]["http.response.status_code"] == 404
        })
    };
    let duration = eventually("the five requests and the 404 in an export", || {
        let points = receiver.metric_points();
        if !has_404(&points) {
            return None;
        }
        points
            .into_iter()
            .rev()
            .find(|p| is_get_ok(p) && p["count"] == 5)
    });
    assert_eq!(duration["service"], service_name.unwrap_or("wsgi-gateway"));
    assert_eq!(duration["unit"], "s");
    assert_eq!(duration["kind"], "histogram");
    assert_eq!(duration["temporality"], 2, "cumulative");
    let attributes = &duration["attributes"];
    assert_eq!(attributes["http.request.method"], "GET");
    assert_eq!(attributes["url.scheme"], "http");
    assert_eq!(attributes["network.protocol.version"], "1.1");
    assert_eq!(duration["bounds"][0], 0.005);
    let buckets: u64 = duration["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap())
        .sum();
    assert_eq!(buckets, 5);
    assert!(duration["start"].as_u64().unwrap() < duration["time"].as_u64().unwrap());

    let points = receiver.metric_points();
    let latest = |name: &str| {
        points
            .iter()
            .rev()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {points:?}"))
            .clone()
    };
    assert_eq!(latest("wsgi_gateway.workers")["value"], 2);
    let restarts = latest("wsgi_gateway.worker.restarts");
    assert_eq!(restarts["monotonic"], true);
    assert!(points
        .iter()
        .any(|p| p["name"] == "http.server.response.body.size"
            && p["attributes"]["http.response.status_code"] == 404));

    // The last export, at shutdown, still carries every request.
    gateway.signal(libc::SIGTERM);
    assert!(gateway.wait_exit().success());
    let last = receiver
        .metric_points()
        .into_iter()
        .rev()
        .find(|p| is_get_ok(p))
        .unwrap();
    assert_eq!(last["count"], 5);
}

#[test]
fn metrics_reach_a_collector_over_grpc() {
    check_metrics("http://127.0.0.1:GRPC", "grpc", None);
}

#[test]
fn metrics_reach_a_collector_over_http_protobuf() {
    check_metrics("http://127.0.0.1:HTTP", "http/protobuf", Some("shop"));
}

/// Python middleware, a native layer between them, and the app: one span per Python
/// segment and one for the app call, nested as the request meets them.
#[test]
fn each_python_segment_and_the_app_call_have_a_span() {
    let receiver = Receiver::start();
    let config = format!(
        r#"
[app]
wsgi = "trail:trail_app"

[telemetry]
otlp_endpoint = "http://127.0.0.1:{}"
otlp_protocol = "grpc"

[[middleware]]
kind = "python"
factory = "trail:make_trail"
options = {{ name = "outer" }}

[[middleware]]
kind = "headers"
response.set = {{ "X-Native" = "yes" }}

[[middleware]]
kind = "python"
factory = "trail:make_trail"
options = {{ name = "inner-1" }}

[[middleware]]
kind = "python"
factory = "trail:make_trail"
options = {{ name = "inner-2" }}
"#,
        receiver.grpc
    );
    let gateway = GatewayBuilder::new()
        .no_app_flag()
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .config(&config)
        .start();
    let response = gateway.get("/");
    assert_eq!(response.status, 200);
    assert!(
        response.text().contains("trail=outer,inner-1,inner-2"),
        "{}",
        response.text()
    );

    let server = receiver.span("GET");
    let app = receiver.span("WSGI application");
    let spans = receiver.spans();
    let segments: Vec<&Value> = spans
        .iter()
        .filter(|s| s["name"] == "python segment")
        .collect();
    assert_eq!(segments.len(), 2, "{spans:#?}");
    let outer = segments
        .iter()
        .find(|s| s["parent_span_id"] == server["span_id"])
        .expect("the outer segment is a child of the server span");
    assert_eq!(outer["attributes"]["wsgi.layers"], "trail:make_trail");
    let inner = segments
        .iter()
        .find(|s| s["parent_span_id"] == outer["span_id"])
        .expect("the inner segment is a child of the outer one");
    assert_eq!(
        inner["attributes"]["wsgi.layers"],
        "trail:make_trail -> trail:make_trail -> trail:trail_app"
    );
    assert_eq!(app["parent_span_id"], inner["span_id"]);
    assert_eq!(app["attributes"]["wsgi.layers"], "trail:trail_app");
    for span in [outer, inner, &&app] {
        assert_eq!(span["trace_id"], server["trace_id"]);
    }
}

/// JSON log lines made during a traced request, and the access log, name its trace.
#[test]
fn json_logs_and_the_access_log_carry_trace_ids() {
    let receiver = Receiver::start();
    let gateway = GatewayBuilder::new()
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .config(&format!(
            r#"
[telemetry]
log_format = "json"
otlp_endpoint = "http://127.0.0.1:{}"

[[middleware]]
kind = "access_log"
format = "json"
"#,
            receiver.grpc
        ))
        .start();
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let response = gateway.request("GET", "/raise", &[("traceparent", &traceparent)], b"");
    assert_eq!(response.status, 500);
    // The access log and the other logs have writers of their own: the two lines may
    // come out in either order.
    gateway.wait_for_log("\"status\":500");
    let logs = gateway.wait_for_log("Traceback");
    let lines: Vec<Value> = logs
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    let traceback = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("Traceback"))
        })
        .unwrap_or_else(|| panic!("no traceback line in {logs}"));
    assert_eq!(traceback["level"], "ERROR");
    assert_eq!(traceback["trace_id"], CLIENT_TRACE, "{traceback}");
    assert_eq!(traceback["span_id"].as_str().unwrap().len(), 16);
    let access = lines
        .iter()
        .find(|l| l["status"] == 500)
        .unwrap_or_else(|| panic!("no access log line in {logs}"));
    assert_eq!(access["trace_id"], CLIENT_TRACE);
    let server = receiver.span("GET");
    assert_eq!(access["span_id"], server["span_id"], "the server span's id");
    // Lines outside a request carry no ids.
    let startup = lines
        .iter()
        .find(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("worker serving"))
        })
        .unwrap_or_else(|| panic!("no start-up line in {logs}"));
    assert!(startup.get("trace_id").is_none(), "{startup}");
}

/// `OTEL_TRACES_SAMPLER` reaches the SDK: with `always_off` no span is exported, while
/// the same collector receives the metrics (so the export path itself works).
#[test]
fn the_trace_sampler_comes_from_the_environment() {
    let receiver = Receiver::start();
    let mut gateway = GatewayBuilder::new()
        .env("OTEL_TRACES_SAMPLER", "always_off")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .config(&format!(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:{}\"\nmetrics_interval = \"200ms\"\n",
            receiver.grpc
        ))
        .start();
    assert_eq!(gateway.get("/pid").status, 200);
    eventually("the request in the exported metrics", || {
        receiver
            .metric_points()
            .into_iter()
            .find(|p| p["name"] == "http.server.request.duration" && p["count"] == 1)
    });
    // SIGTERM flushes whatever spans there are.
    gateway.signal(libc::SIGTERM);
    assert!(gateway.wait_exit().success());
    assert!(receiver.spans().is_empty(), "{:?}", receiver.spans());
}
