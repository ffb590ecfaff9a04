//! Traces over OTLP to a real receiver (gRPC and HTTP/protobuf, built on the official
//! opentelemetry-proto package): the server span and its attributes, the client's trace
//! continued, the app span, a span made by the Python SDK inside the app parented to the
//! gateway's, requests unaffected with no collector, and the flush at shutdown.

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
}

impl Receiver {
    fn start() -> Self {
        let spans = scratch_dir("otlp").join("spans.jsonl");
        let mut child = Command::new(test_venv().join("bin/python"))
            .arg(common::apps_dir().join("otlp_receiver.py"))
            .arg(&spans)
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
            child,
        }
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

    let app = receiver.span("WSGI application");
    assert_eq!(app["trace_id"], CLIENT_TRACE);
    assert_eq!(app["parent_span_id"], server["span_id"]);

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
    let gateway = traced_gateway(
        &receiver,
        &format!("http://127.0.0.1:{}/v1/traces", receiver.http),
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
