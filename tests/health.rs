//! The admin listener: liveness and readiness, never routed into the application.

mod common;

use common::GatewayBuilder;

#[test]
fn healthz_and_readyz_on_their_own_port() {
    let gateway = GatewayBuilder::new()
        .arg("--workers=2")
        .config("[telemetry]\nadmin_bind = \"127.0.0.1:0\"\n")
        .start();
    assert_eq!(gateway.admin_get("/healthz").status, 200);
    let ready = gateway.admin_get("/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    // Not routed into the application, and the application's routes are not here.
    assert_eq!(gateway.admin_get("/environ").status, 404);
    assert_eq!(
        gateway.get("/healthz").status,
        404,
        "the app does not answer /healthz"
    );
}

#[test]
fn readyz_fails_while_draining() {
    let mut gateway = GatewayBuilder::new()
        .config("[telemetry]\nadmin_bind = \"127.0.0.1:0\"\n")
        .start();
    let slow = gateway.get_in_background("/sleep?s=2");
    common::wait_for_app_calls(&gateway, 1);
    gateway.signal(libc::SIGTERM);
    common::eventually("readyz to report draining", || {
        let response = gateway.admin_get("/readyz");
        (response.status == 503).then_some(response.text())
    });
    assert_eq!(
        gateway.admin_get("/healthz").status,
        200,
        "alive while draining"
    );
    assert_eq!(slow.join().unwrap().text(), "slept");
    assert!(gateway.wait_exit().success());
}
