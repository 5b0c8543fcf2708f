//! Trust boundaries, probed as a hostile local process would (issue 16):
//! raw sockets against the real router and daemons.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use duplex_integration_tests::{next_event, with_alpha};
use duplex_services::rpc::{parse_message, Message, Response};
use duplex_services::ErrorCode;
use duplex_test_kit::{find_in, Node, Proc};
use serde_json::{json, Value};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

/// Sends one line on a fresh connection to `path` and returns the first
/// reply (None if the other side closed without one).
async fn one_call(path: &std::path::Path, msg: &Value) -> Option<Response> {
    let s = UnixStream::connect(path).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut line = serde_json::to_vec(msg).unwrap();
    line.push(b'\n');
    // The other side may close before reading: that is an answer too.
    let _ = w.write_all(&line).await;
    read_reply(&mut r).await
}

async fn read_reply<R: tokio::io::AsyncRead + Unpin>(r: &mut BufReader<R>) -> Option<Response> {
    let mut line = String::new();
    let n = tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line))
        .await
        .expect("a reply or a close in time")
        .unwrap_or(0);
    if n == 0 {
        return None;
    }
    match parse_message(line.trim_end().as_bytes()).expect("a JSON-RPC message") {
        Message::Response(resp) => Some(resp),
        Message::Request(r) => panic!("expected a response, got {r:?}"),
    }
}

fn error_kind(resp: &Option<Response>) -> Option<ErrorCode> {
    resp.as_ref()
        .and_then(|r| r.error.as_ref())
        .and_then(|e| e.kind())
}

/// Probe 1: a local process opens config-keeper's socket and sends
/// `config.repl_push` as if it were the partner (`caller: peer:B/...`).
/// Before: the keeper took it for the partner. After: the socket admits
/// only the router's pid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_socket_answers_only_its_router() {
    let (node, _procs) = alpha_and_keeper().await;
    let forged = json!({
        "jsonrpc": "2.0", "id": 1, "method": "config.repl_push",
        "caller": "peer:B/config-keeper", "action_id": "forged-1",
        "params": {"origin": "b", "entries": []}
    });
    let resp = one_call(&node.socket_dir().join("config-keeper.sock"), &forged).await;
    assert_eq!(
        error_kind(&resp),
        Some(ErrorCode::Unauthorized),
        "a forged partner call got {resp:?}"
    );
    // The same for any method of any service, e.g. the test service's echo.
    let echo = json!({"jsonrpc": "2.0", "id": 2, "method": "alpha.echo", "caller": "peer:B/x"});
    let resp = one_call(&node.socket_dir().join("alpha.sock"), &echo).await;
    assert_eq!(error_kind(&resp), Some(ErrorCode::Unauthorized), "{resp:?}");

    // Through the router the caller is the router's word, not the client's.
    let via = json!({"jsonrpc": "2.0", "id": 3, "method": "alpha.echo", "caller": "peer:B/x"});
    let resp = one_call(&node.router_socket(), &via).await.unwrap();
    let caller = resp.result.unwrap()["caller"].as_str().unwrap().to_string();
    assert!(caller.starts_with("client(pid="), "{caller}");
    let resp = one_call(&node.router_socket(), &forged).await.unwrap();
    assert_eq!(
        resp.error.and_then(|e| e.kind()),
        Some(ErrorCode::Unauthorized)
    );
    node.client()
        .call("config.status", json!({}))
        .await
        .unwrap();
}

/// Probe 2: a plain client registers as `config-keeper`. Before: it took
/// the registration (and targets' `config.get`), and config stayed down
/// after it left. After: refused while the real one is up; a registration
/// must name the registering pid and `socket_dir/<name>.sock`, listened on
/// by that pid.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registration_cannot_be_stolen_or_forged() {
    let (node, _procs) = alpha_and_keeper().await;
    let services = node
        .client()
        .call("router.services", json!({}))
        .await
        .unwrap();
    let real = find_in(&services, "services", "name", "config-keeper").clone();
    let mut reg = json!({
        "name": real["name"], "version": real["version"],
        "namespaces": real["namespaces"], "methods": real["methods"],
        "socket": real["socket"], "catalogue": real["catalogue"],
        "pid": std::process::id(),
    });
    let register =
        |p: &Value| json!({"jsonrpc": "2.0", "id": 1, "method": "router.register", "params": p});

    // Keep the thief's connection open: a registration lives with it.
    let s = UnixStream::connect(node.router_socket()).await.unwrap();
    let (r, mut w) = s.into_split();
    let mut r = BufReader::new(r);
    let mut line = serde_json::to_vec(&register(&reg)).unwrap();
    line.push(b'\n');
    w.write_all(&line).await.unwrap();
    let resp = read_reply(&mut r).await;
    assert_eq!(
        error_kind(&resp),
        Some(ErrorCode::Conflict),
        "stealing config-keeper's registration got {resp:?}"
    );
    // The real keeper still answers, during and after the thief's visit.
    let st = node.client().call("config.status", json!({})).await;
    assert!(st.is_ok(), "{st:?}");
    drop((r, w));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        node.service_state("config-keeper").await.as_deref(),
        Some("up")
    );
    node.client()
        .call("config.status", json!({}))
        .await
        .unwrap();

    // A free name, but someone else's pid: refused.
    as_service(&mut reg, "gamma", &node.socket_dir().join("gamma.sock"));
    reg["pid"] = real["pid"].clone();
    let resp = one_call(&node.router_socket(), &register(&reg)).await;
    assert_eq!(error_kind(&resp), Some(ErrorCode::Unauthorized), "{resp:?}");
    // Our own pid, but a socket outside socket_dir/<name>.sock: refused.
    reg["pid"] = std::process::id().into();
    reg["socket"] = "/tmp/gamma-elsewhere.sock".into();
    let resp = one_call(&node.router_socket(), &register(&reg)).await;
    assert_eq!(
        error_kind(&resp),
        Some(ErrorCode::InvalidParams),
        "{resp:?}"
    );
    // A name held by a live registration stays with it.
    as_service(&mut reg, "alpha", &node.socket_dir().join("alpha.sock"));
    let resp = one_call(&node.router_socket(), &register(&reg)).await;
    assert_eq!(error_kind(&resp), Some(ErrorCode::Conflict), "{resp:?}");
    // The right path, but another process listens there (a link to
    // alpha's socket): refused, the listener must be the registering pid.
    let gamma = node.socket_dir().join("gamma.sock");
    std::os::unix::fs::symlink(node.socket_dir().join("alpha.sock"), &gamma).unwrap();
    as_service(&mut reg, "gamma", &gamma);
    let resp = one_call(&node.router_socket(), &register(&reg)).await;
    assert_eq!(error_kind(&resp), Some(ErrorCode::Unauthorized), "{resp:?}");
    let v = node.client().call("alpha.echo", json!({})).await.unwrap();
    assert_eq!(v["service"], "alpha");
}

/// A router with the test service `alpha` and a real config-keeper: the
/// node, and the processes (killed when dropped, the keeper first).
async fn alpha_and_keeper() -> (Node, [Proc; 3]) {
    let (node, router, alpha) = with_alpha("").await;
    let keeper = node
        .start_daemon("duplex-config-keeper", "config-keeper", &[])
        .await;
    (node, [keeper, alpha, router])
}

/// Points the registration `reg` at the service `name` (its namespace and
/// one `<name>.echo` method) listening on `socket`.
fn as_service(reg: &mut Value, name: &str, socket: &std::path::Path) {
    reg["name"] = name.into();
    reg["namespaces"] = json!([name]);
    reg["methods"] = json!([format!("{name}.echo")]);
    reg["socket"] = socket.display().to_string().into();
}

/// Probe 7: anyone local could publish any topic with any `source`. Now
/// only a registered service publishes, under its own namespaces (or
/// `alert`), and the router names the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_belong_to_their_service_and_the_router_names_the_source() {
    let (node, _router, _alpha) = with_alpha("").await;
    let c = node.client();
    let mut sub = c.subscribe(&["alpha.*", "config.*"]).await.unwrap();
    // A plain client: refused whatever it claims.
    let e = c
        .call(
            "event.publish",
            json!({"topic": "alpha.forged", "source": "config-keeper", "controller": "B"}),
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorCode::Unauthorized), "{e}");
    // A service, outside its namespace: refused.
    let e = c
        .call("alpha.publish", json!({"topic": "config.changed"}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorCode::Unauthorized), "{e}");
    // In its namespace, and alert: delivered, with the router's source.
    c.call("alpha.publish", json!({"topic": "alpha.fine"}))
        .await
        .unwrap();
    let ev = next_event(&mut sub, "the published event").await;
    assert_eq!(ev.topic, "alpha.fine");
    assert_eq!(ev.source.as_deref(), Some("alpha"));
    assert_eq!(ev.controller.as_deref(), Some("A"));
    c.call("alpha.publish", json!({"topic": "alert"}))
        .await
        .unwrap();
}

/// Probe 3: an oversize reply used to be dropped by the router's reader,
/// and the caller waited its whole timeout; a request just under the
/// limit grew past the service's limit with what the router adds, and hung
/// too. Both now end at once: a result or `too_large`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_reply_fails_the_call_at_once() {
    let (node, _router, _alpha) =
        with_alpha("max_message_bytes = 65536\ncall_timeout_ms = 8000").await;
    let c = node.client();
    let t = std::time::Instant::now();
    let e = c
        .call("alpha.big", json!({"bytes": 200_000}))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), Some(ErrorCode::TooLarge), "{e}");
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    // A reply just under the router's limit passes: the service's replies
    // leave room for the router's members.
    let v = c.call("alpha.big", json!({"bytes": 60_000})).await.unwrap();
    assert_eq!(v["pad"].as_str().unwrap().len(), 60_000);

    // A request just under the limit, as a raw client sends it.
    for pad in [65_536 - 120, 65_536 - 60] {
        let req = json!({"jsonrpc": "2.0", "id": 5, "method": "alpha.sleep",
                         "params": {"ms": 1, "pad": "p".repeat(pad - 80)}});
        let mut frame = serde_json::to_vec(&req).unwrap();
        assert!(frame.len() <= 65_536, "{}", frame.len());
        frame.push(b'\n');
        let s = UnixStream::connect(node.router_socket()).await.unwrap();
        let (r, mut w) = s.into_split();
        let mut r = BufReader::new(r);
        let t = std::time::Instant::now();
        w.write_all(&frame).await.unwrap();
        let resp = read_reply(&mut r).await.unwrap();
        assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
        assert!(resp.error.is_none(), "{resp:?}");
        // Over the limit: too_large with the request's id, at once.
        let req = json!({"jsonrpc": "2.0", "id": 6, "method": "alpha.echo",
                         "params": {"pad": "p".repeat(70_000)}});
        let mut frame = serde_json::to_vec(&req).unwrap();
        frame.push(b'\n');
        w.write_all(&frame).await.unwrap();
        let resp = read_reply(&mut r).await.unwrap();
        assert_eq!(resp.id, Some(duplex_services::rpc::Id::Num(6)));
        assert_eq!(resp.error.and_then(|e| e.kind()), Some(ErrorCode::TooLarge));
    }
}
