//! The real router and services as processes: routing, action_id
//! propagation, restarts, crashes, events, the peer link and bad input.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use duplex_integration_tests::{
    alpha_beta, free_addr, next_event, node, wait_until, with_alpha, Node, PeerOpts, TestService,
};
use duplex_services::rpc::{parse_message, Message, Request, Response};
use duplex_services::ErrorCode;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

const SECRET: &str = "integration-test-cluster-secret";

/// Reads one JSON-RPC response line from a raw stream (bounded wait).
async fn read_response<R: tokio::io::AsyncRead + Unpin>(r: &mut BufReader<R>) -> Response {
    let mut line = String::new();
    tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
        .await
        .expect("a reply in time")
        .expect("read");
    match parse_message(line.trim_end().as_bytes()).expect("a JSON-RPC message") {
        Message::Response(resp) => resp,
        Message::Request(r) => panic!("expected a response, got {r:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_namespace_and_real_daemons_register() {
    let (node, _router, _alpha, _beta) = alpha_beta().await;
    // The host has no LVM or configfs: the storage daemons run on their
    // simulators here (the lab runs the real backends).
    let _hb = node
        .start_daemon("duplex-heartbeat", "heartbeat", &[])
        .await;
    let _pm = node
        .start_daemon("duplex-pool-manager", "pool-manager", &["--sim"])
        .await;
    let _tg = node
        .start_daemon("duplex-targets", "targets", &["--sim"])
        .await;
    let _ck = node
        .start_daemon("duplex-config-keeper", "config-keeper", &[])
        .await;
    let c = node.client();

    let a = c.call("alpha.echo", json!({"x": 1})).await.unwrap();
    assert_eq!(a["service"], "alpha");
    assert_eq!(a["params"], json!({"x": 1}));
    let b = c.call("beta.echo", json!([2])).await.unwrap();
    assert_eq!(b["service"], "beta");
    // Each real daemon answers its namespace's status through the router.
    let s = c.call("cluster.status", json!({})).await.unwrap();
    assert_eq!(s["service"], "heartbeat");
    assert_eq!(s["controller"], "A");
    for method in ["pool.status", "target.status", "config.status"] {
        let s = c.call(method, json!({})).await.unwrap();
        assert!(s.is_object(), "{method}: {s}");
    }

    // duplexctl cluster: status reads an unconfigured heartbeat plainly;
    // a method it cannot serve is the service's error (exit 1), not "router
    // unreachable" (exit 2).
    let (code, out, err) = node.duplexctl(&["cluster", "status"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.starts_with("heartbeat not configured: "), "{out}");
    let (code, out, err) = node.duplexctl(&["cluster", "timeline"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("not configured"), "{err}");

    let (code, out, _) = node.duplexctl(&["services"]);
    assert_eq!(code, 0);
    for name in [
        "alpha",
        "beta",
        "heartbeat",
        "pool-manager",
        "targets",
        "config-keeper",
    ] {
        assert!(
            out.lines()
                .any(|l| l.starts_with(name) && l.contains(" up ")),
            "{name} not up in:\n{out}"
        );
    }
    // duplexctl events prints what is published.
    let events = node.spawn_env(
        "events",
        duplex_integration_tests::bin("duplexctl"),
        &["--json", "events", "alpha.*", "--count", "1"],
        &[],
    );
    let mut published = false;
    for _ in 0..100 {
        c.call(
            "alpha.publish",
            json!({"topic": "alpha.shown", "data": {"z": 1}}),
        )
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        if events.log_text().contains("alpha.shown") {
            published = true;
            break;
        }
    }
    assert!(
        published,
        "duplexctl events printed nothing: {}",
        events.log_text()
    );
    let line = events
        .log_text()
        .lines()
        .find(|l| l.contains("alpha.shown"))
        .unwrap()
        .to_string();
    let ev: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(ev["data"]["z"], 1);

    let (code, out, _) = node.duplexctl(&["--json", "call", "alpha.echo", "{\"k\":\"v\"}"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["result"]["params"]["k"], "v");
    assert!(v["action_id"].as_str().is_some_and(|a| !a.is_empty()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_calls_carry_one_action_id_through_logs_and_trace() {
    let (node, _router, alpha, beta) = alpha_beta().await;

    // The router assigns an id when the caller gives none...
    let mut req = Request::call(
        duplex_services::rpc::Id::Num(0),
        "alpha.call",
        json!({"method": "beta.echo", "params": {"n": 1}}),
    );
    let resp = node.client().send_request(req.clone()).await.unwrap();
    let assigned = resp
        .action_id
        .clone()
        .expect("router assigned an action id");
    let v = resp.into_result().unwrap();
    assert_eq!(v["action_id"], assigned.as_str());
    assert_eq!(v["inner"]["action_id"], assigned.as_str());
    assert_eq!(v["inner"]["caller"], "alpha");

    // ...and keeps the one the caller gives.
    req.action_id = Some("nested-trace-1".into());
    let v = node
        .client()
        .send_request(req)
        .await
        .unwrap()
        .into_result()
        .unwrap();
    assert_eq!(v["inner"]["action_id"], "nested-trace-1");

    for p in [&alpha, &beta] {
        let log = p.log_text();
        assert!(
            log.lines().any(|l| l.contains("action_id=nested-trace-1")),
            "{} log lacks the action id:\n{log}",
            p.name
        );
    }
    let (code, out, err) = node.duplexctl(&["--json", "trace", "nested-trace-1"]);
    assert_eq!(code, 0, "{err}");
    let t: Value = serde_json::from_str(&out).unwrap();
    let hops: Vec<(String, String, String)> = t["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["caller"].as_str().unwrap().to_string(),
                r["callee"].as_str().unwrap().to_string(),
                r["method"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(hops.len(), 2, "{hops:?}");
    assert!(hops
        .iter()
        .any(|(_, callee, m)| callee == "alpha" && m == "alpha.call"));
    assert!(hops
        .iter()
        .any(|(caller, callee, m)| caller == "alpha" && callee == "beta" && m == "beta.echo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_register_again_after_a_router_restart() {
    let (node, mut router, _alpha) = with_alpha("").await;
    let _hb = node
        .start_daemon("duplex-heartbeat", "heartbeat", &[])
        .await;
    router.kill9();
    assert!(node.client().call("router.ping", json!({})).await.is_err());
    let _router = node.start_router().await;
    node.wait_service_state("alpha", "up").await;
    node.wait_service_state("heartbeat", "up").await;
    let v = node.client().call("alpha.echo", json!({})).await.unwrap();
    assert_eq!(v["service"], "alpha");
    node.client()
        .call("cluster.status", json!({}))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_service_is_unavailable_until_it_registers_again() {
    let node = node("A", None, "");
    let _router = node.start_router().await;
    let mut beta = node.start_test_service("beta", "beta").await;
    let c = node.client();
    c.call("beta.echo", json!({})).await.unwrap();

    // A call in flight when the service dies fails with unavailable.
    let inflight = {
        let c = c.clone();
        tokio::spawn(async move { c.call("beta.sleep", json!({"ms": 5000})).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    beta.kill9();
    let e = inflight.await.unwrap().unwrap_err();
    assert_eq!(e.kind(), Some(ErrorCode::Unavailable), "{e}");

    node.wait_service_state("beta", "down").await;
    let e = c.call("beta.echo", json!({})).await.unwrap_err();
    assert_eq!(e.kind(), Some(ErrorCode::Unavailable), "{e}");
    assert!(e.to_string().contains("beta"), "{e}");

    let _beta = node.start_test_service("beta", "beta").await;
    let v = c.call("beta.echo", json!({})).await.unwrap();
    assert_eq!(v["service"], "beta");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_with_its_own_timeout_outlives_the_default() {
    let (node, _router, _alpha) = with_alpha("call_timeout_ms = 400").await;
    let c = node.client();
    let e = c
        .call("alpha.sleep", json!({"ms": 1500}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorCode::Unavailable), "{e}");
    assert!(e.to_string().contains("did not answer"), "{e}");
    let v = c.call("alpha.long", json!({"ms": 1500})).await.unwrap();
    assert_eq!(v["slept_ms"], 1500);
    let (code, out, _) = node.duplexctl(&["--json", "services"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("\"alpha.long\": 10000"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_subscribers_and_a_slow_one_is_dropped() {
    let (node, router, _alpha) = with_alpha("event_queue = 16").await;
    let c = node.client();
    let mut sub = c.subscribe(&["alpha.*"]).await.unwrap();
    let mut other = c.subscribe(&["beta.thing"]).await.unwrap();

    let r = c
        .call(
            "alpha.publish",
            json!({"topic": "alpha.created", "data": {"n": 1}}),
        )
        .await
        .unwrap();
    let ev = next_event(&mut sub, "event").await;
    assert_eq!(ev.topic, "alpha.created");
    assert_eq!(ev.data, json!({"n": 1}));
    assert_eq!(ev.action_id.as_deref(), r["action_id"].as_str());
    assert_eq!(ev.controller.as_deref(), Some("A"));
    assert!(other
        .next_timeout(Duration::from_millis(200))
        .await
        .is_none());

    // A subscriber that never reads: its socket and queues fill, the router
    // drops it and keeps serving everyone else.
    // (Only services publish, under their own namespaces: beta floods.)
    let _beta = node.start_test_service("beta", "beta").await;
    let mut stuck = UnixStream::connect(node.router_socket()).await.unwrap();
    stuck
        .write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"event.subscribe\",\"params\":{\"topics\":[\"beta.*\"]}}\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let payload = "x".repeat(2000);
    let mut dropped = false;
    for i in 0..3000 {
        c.call(
            "beta.publish",
            json!({"topic": "beta.tick", "data": {"i": i, "pad": payload}}),
        )
        .await
        .unwrap();
        if i % 100 == 99
            && router
                .log_text()
                .contains("dropping a slow event subscriber")
        {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the stuck subscriber was never dropped");
    // Everyone else is still served.
    c.call("alpha.publish", json!({"topic": "alpha.after"}))
        .await
        .unwrap();
    let ev = next_event(&mut sub, "event after flood").await;
    assert_eq!(ev.topic, "alpha.after");
    drop(stuck);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_errors_and_the_router_keeps_serving() {
    let node = node(
        "A",
        None,
        "max_message_bytes = 4096\nmax_inflight_per_connection = 8",
    );
    let _router = node.start_router().await;
    let _alpha = node.start_test_service("alpha", "alpha").await;
    let s = UnixStream::connect(node.router_socket()).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);

    let cases: Vec<(Vec<u8>, ErrorCode, Option<&str>)> = vec![
        (b"{this is not json\n".to_vec(), ErrorCode::ParseError, None),
        (
            format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"alpha.echo\",\"params\":{{\"p\":\"{}\"}}}}\n", "z".repeat(5000)).into_bytes(),
            ErrorCode::TooLarge,
            None,
        ),
        (b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":42}\n".to_vec(), ErrorCode::InvalidRequest, Some("method")),
        (b"{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"alpha.echo\",\"params\":7}\n".to_vec(), ErrorCode::InvalidRequest, Some("params")),
        (b"[1,2,3]\n".to_vec(), ErrorCode::InvalidRequest, None),
        (b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"nosuch.thing\"}\n".to_vec(), ErrorCode::MethodNotFound, Some("method")),
        (b"{\"jsonrpc\":\"2.0\",\"id\":5,\"method\":\"event.subscribe\",\"params\":{\"topics\":\"x\"}}\n".to_vec(), ErrorCode::InvalidParams, Some("topics")),
        (b"{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"alpha.sleep\",\"params\":{\"ms\":\"soon\"}}\n".to_vec(), ErrorCode::InvalidParams, Some("ms")),
    ];
    for (frame, kind, field) in cases {
        w.write_all(&frame).await.unwrap();
        let resp = read_response(&mut r).await;
        let err = resp
            .error
            .clone()
            .unwrap_or_else(|| panic!("no error for {}", String::from_utf8_lossy(&frame)));
        assert_eq!(err.kind(), Some(kind), "{err:?}");
        if let Some(f) = field {
            assert_eq!(err.field(), Some(f), "{err:?}");
        }
        if kind == ErrorCode::MethodNotFound {
            assert!(err.message.contains("'nosuch'"), "{}", err.message);
        }
    }
    // The same connection still works.
    w.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"alpha.echo\",\"params\":{}}\n")
        .await
        .unwrap();
    let ok = read_response(&mut r).await;
    assert!(ok.error.is_none(), "{ok:?}");

    // One client floods with slow requests: the excess is refused with
    // unavailable, and another client is served meanwhile.
    let flood = UnixStream::connect(node.router_socket()).await.unwrap();
    let (fr, mut fw) = flood.into_split();
    let mut fr = BufReader::new(fr);
    let mut burst = Vec::new();
    for i in 0..200 {
        burst.extend_from_slice(
            format!("{{\"jsonrpc\":\"2.0\",\"id\":{i},\"method\":\"alpha.sleep\",\"params\":{{\"ms\":300}}}}\n").as_bytes(),
        );
    }
    fw.write_all(&burst).await.unwrap();
    let v = node
        .client()
        .call("alpha.echo", json!({"during": "flood"}))
        .await
        .unwrap();
    assert_eq!(v["params"]["during"], "flood");
    let mut refused = 0;
    let mut served = 0;
    for _ in 0..200 {
        let resp = read_response(&mut fr).await;
        match resp.error.as_ref().and_then(|e| e.kind()) {
            Some(ErrorCode::Unavailable) => refused += 1,
            None => served += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        refused > 0 && served >= 8,
        "refused {refused}, served {served}"
    );
    node.client().call("router.ping", json!({})).await.unwrap();
}

fn peered_pair(secret_b: &str) -> (Node, Node) {
    let (a_listen, b_listen, dead) = (free_addr(), free_addr(), free_addr());
    let a = node(
        "A",
        Some(PeerOpts {
            partner: "B".into(),
            listen: vec![a_listen],
            // The first address is dead: the link must fall through to the second.
            addresses: vec![dead, b_listen],
            secret: SECRET.into(),
        }),
        "",
    );
    let b = node(
        "B",
        Some(PeerOpts {
            partner: "A".into(),
            listen: vec![b_listen],
            addresses: vec![a_listen],
            secret: secret_b.into(),
        }),
        "",
    );
    (a, b)
}

/// The address `node` listens on for its partner.
fn listen_addr(node: &Node) -> String {
    let text = std::fs::read_to_string(&node.config).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("listen"))
        .unwrap()
        .to_string();
    line.split('"').nth(1).unwrap().to_string()
}

async fn peer_state(node: &Node) -> String {
    let v = node
        .client()
        .call("router.services", json!({}))
        .await
        .unwrap();
    v["peer"]["state"].as_str().unwrap_or("?").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peered_routers_reach_the_partners_services() {
    let (a, b) = peered_pair(SECRET);
    let _ra = a.start_router().await;
    let _rb = b.start_router().await;
    let _alpha_a = a.start_test_service("alpha", "alpha").await;
    let _gamma_b = b.start_test_service("gamma", "gamma").await;
    wait_until("peer link up on A", Duration::from_secs(15), || async {
        peer_state(&a).await == "up"
    })
    .await;
    wait_until("peer link up on B", Duration::from_secs(15), || async {
        peer_state(&b).await == "up"
    })
    .await;

    // A call from A to B's service; the action id crosses the link.
    let mut req = Request::call(
        duplex_services::rpc::Id::Num(0),
        "gamma.echo",
        json!({"hello": "B"}),
    );
    req.controller = Some("B".into());
    req.action_id = Some("cross-link-1".into());
    let resp = a.client().send_request(req).await.unwrap();
    assert_eq!(resp.action_id.as_deref(), Some("cross-link-1"));
    let v = resp.into_result().unwrap();
    assert_eq!(v["service"], "gamma");
    assert_eq!(v["action_id"], "cross-link-1");
    assert!(v["caller"].as_str().unwrap().starts_with("peer:A/"), "{v}");

    // A nested call: alpha on A calls gamma on B.
    let v = a
        .client()
        .call(
            "alpha.call",
            json!({"method": "gamma.echo", "controller": "B"}),
        )
        .await
        .unwrap();
    assert_eq!(v["inner"]["service"], "gamma");
    assert_eq!(v["inner"]["action_id"], v["action_id"]);
    let (code, out, _) = a.duplexctl(&["--json", "trace", v["action_id"].as_str().unwrap()]);
    assert_eq!(code, 0);
    let t: Value = serde_json::from_str(&out).unwrap();
    let controllers: Vec<&str> = t["actions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["controller"].as_str())
        .collect();
    assert!(
        controllers.contains(&"A") && controllers.contains(&"B"),
        "{t}"
    );

    // duplexctl can address the partner, and events can cross.
    let (code, out, _) = a.duplexctl(&["--controller", "B", "services"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("controller B") && out.contains("gamma"),
        "{out}"
    );
    let mut sub_b = b.client().subscribe(&["alpha.*"]).await.unwrap();
    a.client()
        .call(
            "alpha.publish",
            json!({"topic": "alpha.crossed", "partner": true}),
        )
        .await
        .unwrap();
    let ev = next_event(&mut sub_b, "event crossed the link").await;
    assert_eq!(ev.topic, "alpha.crossed");
    assert_eq!(ev.controller.as_deref(), Some("A"));

    // An unknown controller is refused by name.
    let e = a
        .client()
        .call_on("C", "gamma.echo", json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorCode::InvalidParams));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_without_the_secret_can_call_nothing() {
    let (a, b) = peered_pair("a-different-secret-of-enough-length");
    let _ra = a.start_router().await;
    let rb = b.start_router().await;
    let _gamma_b = b.start_test_service("gamma", "gamma").await;
    wait_until("B refused A's dial", Duration::from_secs(15), || async {
        rb.log_text().contains("refused a peer connection")
    })
    .await;
    assert_eq!(peer_state(&a).await, "down");
    let e = a
        .client()
        .call_on("B", "gamma.echo", json!({}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorCode::Unavailable), "{e}");

    // A raw client that skips TLS is cut off at once, answered at most by
    // a TLS alert record: never served, never shown a JSON-RPC frame.
    let b_listen = listen_addr(&b);
    let mut s = tokio::net::TcpStream::connect(&b_listen).await.unwrap();
    s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"gamma.echo\",\"params\":{}}\n")
        .await
        .unwrap();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut got),
    )
    .await
    .expect("the connection must be closed");
    assert!(got.is_empty() || got[0] == 0x15, "not a TLS alert: {got:?}");
    assert!(
        !String::from_utf8_lossy(&got).contains("jsonrpc"),
        "{got:?}"
    );
}

/// Fifty connections that never speak: all but the two handshake slots of
/// their source address are closed at once, the journal gets one line,
/// and the partner's link comes up anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_peer_connections_is_capped_and_logged_once() {
    let (a, b) = peered_pair(SECRET);
    let rb = b.start_router().await;
    let b_listen = listen_addr(&b);
    let mut flood = Vec::new();
    for _ in 0..50 {
        flood.push(tokio::net::TcpStream::connect(&b_listen).await.unwrap());
    }
    let (mut closed, mut open) = (0, 0);
    for s in &mut flood {
        let mut buf = [0u8; 1];
        match tokio::time::timeout(
            Duration::from_millis(500),
            tokio::io::AsyncReadExt::read(s, &mut buf),
        )
        .await
        {
            Ok(Ok(0) | Err(_)) => closed += 1,
            Ok(Ok(_)) => panic!("the listener spoke first to a silent client"),
            Err(_) => open += 1,
        }
    }
    assert_eq!(
        (open, closed),
        (2, 48),
        "held handshakes and closed connections"
    );
    let lines = |text: &str| text.matches("refused a peer connection").count();
    assert_eq!(
        lines(&rb.log_text()),
        1,
        "one warning for the flood:\n{}",
        rb.log_text()
    );
    // The real partner gets in once the held handshakes time out.
    let _ra = a.start_router().await;
    wait_until("peer link up on A", Duration::from_secs(20), || async {
        peer_state(&a).await == "up"
    })
    .await;
    drop(flood);
    assert!(lines(&rb.log_text()) <= 2, "{}", rb.log_text());
}
