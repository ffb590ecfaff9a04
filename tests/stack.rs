//! The assembled request stack, in process: built from a configuration by the same
//! `pipeline::build` the workers use, ending in a `service_fn` instead of Python, and
//! driven with `oneshot` (no socket, no process). It proves the ordering rule: the first
//! `[[middleware]]` entry is the outermost layer, the canonical path comes before every
//! configured layer (but access logs written first, see tests/path_rules.rs), limits
//! and the app timeout come after them (the workers put the app timeout around each
//! service that runs Python; here, around the `service_fn`).

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tower::{service_fn, Layer, ServiceExt};
use wsgi_gateway::config::{self, CliOverrides, LoadedConfig};
use wsgi_gateway::pipeline::{self, WorkerHooks};
use wsgi_gateway::types::{ConnectionInfo, GatewayService};
use wsgi_gateway::wsgi::ticket::JobTicket;

/// Write `toml` (plus an application, which is never imported here) and load it.
fn load(name: &str, toml: &str) -> LoadedConfig {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("stack-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("gateway.toml");
    std::fs::write(&file, format!("[app]\nwsgi = \"unused:app\"\n{toml}")).unwrap();
    config::load(Some(&file), &CliOverrides::default()).expect("valid configuration")
}

/// What the worker would be told.
#[derive(Default)]
struct Told {
    requests: AtomicUsize,
    timeouts: Mutex<Vec<String>>,
}

/// The stack for `toml` around an app that echoes what it saw (path, the `x-order`
/// request header) in response headers, or sleeps for `/slow`.
fn stack(name: &str, toml: &str) -> (GatewayService, Arc<Told>) {
    let loaded = load(name, toml);
    let plan = pipeline::plan(&loaded.config.middleware, &loaded.base_dir()).expect("layers build");
    let app = service_fn(|request: Request<Body>| async move {
        if request.uri().path() == "/slow" {
            // As the WSGI service does: queued, then picked by a Python thread, which
            // is when server.timeout starts counting.
            let ticket = request
                .extensions()
                .get::<JobTicket>()
                .expect("a job ticket");
            ticket.queued();
            assert!(ticket.start());
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
        let order: Vec<String> = request
            .headers()
            .get_all("x-order")
            .iter()
            .map(|v| v.to_str().unwrap().to_owned())
            .collect();
        let response = Response::builder()
            .header("x-app-path", request.uri().path())
            .header("x-app-saw", order.join(","))
            .body(Body::from("app"))
            .unwrap();
        Ok::<_, Infallible>(response)
    });
    let told = Arc::new(Told::default());
    let (on_request, on_timeout) = (told.clone(), told.clone());
    let app = pipeline::AppTimeoutLayer::new(
        loaded.config.server.queue_timeout,
        loaded.config.server.timeout,
        Arc::new(move |line| on_timeout.timeouts.lock().unwrap().push(line)),
    )
    .layer(app);
    let hooks = WorkerHooks {
        on_request: Arc::new(move || {
            on_request.requests.fetch_add(1, Ordering::SeqCst);
        }),
    };
    (
        pipeline::build(&loaded.config, &plan.outer, app, hooks),
        told,
    )
}

fn request(target: &str) -> Request<Body> {
    let mut request = Request::get(target).body(Body::empty()).unwrap();
    request.extensions_mut().insert(ConnectionInfo {
        peer: Some("127.0.0.1:50000".parse().unwrap()),
        local: Some("127.0.0.1:8000".parse().unwrap()),
        scheme: "http",
    });
    request
}

fn values(response: &Response<Body>, name: &str) -> Vec<String> {
    response
        .headers()
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

const TWO_HEADER_LAYERS: &str = r#"
[[middleware]]
kind = "headers"
request.append = { x-order = "first" }
response.append = { x-order = "first" }
[[middleware]]
kind = "headers"
request.append = { x-order = "second" }
response.append = { x-order = "second" }
"#;

#[tokio::test]
async fn the_first_entry_is_the_outermost_layer() {
    let (service, told) = stack("order", TWO_HEADER_LAYERS);
    let response = service.oneshot(request("/x")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // A request meets the first entry first ...
    assert_eq!(values(&response, "x-app-saw"), ["first,second"]);
    // ... and a response leaves through it last.
    assert_eq!(values(&response, "x-order"), ["second", "first"]);
    assert_eq!(told.requests.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn every_configured_layer_sees_the_canonical_path() {
    let (service, _) = stack("canonical", TWO_HEADER_LAYERS);
    let response = service
        .clone()
        .oneshot(request("//%61dmin/x"))
        .await
        .unwrap();
    assert_eq!(values(&response, "x-app-path"), ["/admin/x"]);
    // Refused before any configured layer: no layer's response header on it.
    let refused = service.oneshot(request("/a/../admin")).await.unwrap();
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    assert!(values(&refused, "x-order").is_empty());
}

#[tokio::test]
async fn limits_and_the_app_timeout_sit_below_the_configured_layers() {
    let (service, told) = stack(
        "limits",
        &format!(
            "[server]\ntimeout = \"50ms\"\n[limits]\nmax_request_line = 64\n{TWO_HEADER_LAYERS}"
        ),
    );
    // The configured layers see (and would log) what the limits refuse.
    let long = format!("/{}", "a".repeat(80));
    let refused = service.clone().oneshot(request(&long)).await.unwrap();
    assert_eq!(refused.status(), StatusCode::URI_TOO_LONG);
    assert_eq!(values(&refused, "x-order"), ["second", "first"]);
    // The timeout answers 504 through the configured layers and tells the worker.
    let slow = service.oneshot(request("/slow")).await.unwrap();
    assert_eq!(slow.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(values(&slow, "x-order"), ["second", "first"]);
    let body = slow.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"504 Gateway Timeout\n");
    assert_eq!(*told.timeouts.lock().unwrap(), ["GET /slow"]);
    assert_eq!(told.requests.load(Ordering::SeqCst), 2);
}
