//! The daemons speak the systemd notify protocol: READY once serving (a
//! service: once registered), WATCHDOG pings at half of WATCHDOG_USEC, and
//! STOPPING on SIGTERM. A datagram socket stands in for systemd.

#![allow(clippy::unwrap_used)]

use duplex_integration_tests::{bin, node, Node, Proc};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Collects notify datagrams until `want` has been seen (bounded).
fn wait_for(sock: &UnixDatagram, want: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut buf = [0u8; 4096];
    while !seen.iter().any(|m| m.lines().any(|l| l == want)) {
        assert!(
            Instant::now() < deadline,
            "no {want} from the daemon; got {seen:?}"
        );
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
}

fn notify_socket(node: &Node, name: &str) -> (UnixDatagram, String) {
    let path = node.dir.path().join(name);
    let sock = UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    (sock, path.display().to_string())
}

fn check_lifecycle(mut p: Proc, sock: &UnixDatagram, mut seen: Vec<String>) {
    wait_for(sock, "READY=1", &mut seen);
    // Two pings prove a loop, not a one-off.
    let pings_before = seen.iter().filter(|m| m.contains("WATCHDOG=1")).count();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 4096];
    while seen.iter().filter(|m| m.contains("WATCHDOG=1")).count() < pings_before + 2 {
        assert!(Instant::now() < deadline, "no watchdog pings: {seen:?}");
        if let Ok(n) = sock.recv(&mut buf) {
            seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    }
    p.term();
    wait_for(sock, "STOPPING=1", &mut seen);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn router_and_services_notify_ready_watchdog_and_stopping() {
    let node = node("A", None, "");
    let (rsock, rpath) = notify_socket(&node, "router-notify.sock");
    let env = [
        ("NOTIFY_SOCKET", rpath.as_str()),
        ("WATCHDOG_USEC", "200000"),
    ];
    let router = node.spawn_env("router", bin("duplex-router"), &[], &env);
    let (hsock, hpath) = notify_socket(&node, "hb-notify.sock");
    let henv = [
        ("NOTIFY_SOCKET", hpath.as_str()),
        ("WATCHDOG_USEC", "200000"),
    ];
    let hb = node.spawn_env("heartbeat", bin("duplex-heartbeat"), &[], &henv);
    // The service says READY only once registered, so the router must be up
    // and listing it by then.
    let mut seen = Vec::new();
    wait_for(&hsock, "READY=1", &mut seen);
    assert_eq!(node.service_state("heartbeat").await.as_deref(), Some("up"));
    check_lifecycle(hb, &hsock, seen);
    check_lifecycle(router, &rsock, Vec::new());
}
