//! The admin listener: liveness and readiness, never routed into the application.

mod common;

use std::io::{BufReader, Write};

use common::{read_response, GatewayBuilder};

fn admin_get(gateway: &common::Gateway, path: &str) -> common::Response {
    gateway.admin_get(path)
}

#[test]
fn healthz_and_readyz_on_their_own_port() {
    let gateway = GatewayBuilder::new()
        .arg("--workers=2")
        .config("[telemetry]\nadmin_bind = \"127.0.0.1:0\"\n")
        .start();
    assert_eq!(admin_get(&gateway, "/healthz").status, 200);
    let ready = admin_get(&gateway, "/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    // Not routed into the application, and the application's routes are not here.
    assert_eq!(admin_get(&gateway, "/environ").status, 404);
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
    let addr = gateway.addr;
    let slow = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(common::WAIT)).unwrap();
        stream
            .write_all(b"GET /sleep?s=2 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        read_response(&mut BufReader::new(stream), false).unwrap()
    });
    common::wait_for_app_calls(&gateway, 1);
    gateway.signal(libc::SIGTERM);
    common::eventually("readyz to report draining", || {
        let response = admin_get(&gateway, "/readyz");
        (response.status == 503).then_some(response.text())
    });
    assert_eq!(
        admin_get(&gateway, "/healthz").status,
        200,
        "alive while draining"
    );
    assert_eq!(slow.join().unwrap().text(), "slept");
    assert!(gateway.wait_exit().success());
}
