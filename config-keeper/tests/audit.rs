//! The audit log through the real routers and keepers: administrators'
//! writes recorded where they entered, replicated to the partner, secrets
//! redacted, held while config-keeper is down.

#![allow(clippy::unwrap_used)] // tests: a failed step should panic with its location

mod common;

use std::time::Duration;

use common::cluster::{pair, wait_until};
use common::*;
use duplex_api::model::Role;
use duplex_services::rpc::{CallUser, Id, Request};
use serde_json::{json, Value};

fn kind(e: &duplex_services::CallError) -> Option<&'static str> {
    e.kind().map(|k| k.kind())
}

/// Entries of `of` that `k` holds (all of them when `of` is None).
async fn audit(k: &common::cluster::Keeper, of: Option<&str>) -> Vec<Value> {
    let p = match of {
        Some(c) => json!({"controller": c}),
        None => json!({}),
    };
    match k.call("config.audit", p).await {
        Ok(v) => v["entries"].as_array().cloned().unwrap_or_default(),
        Err(_) => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_writes_are_recorded_and_reach_the_partner() {
    let (a, b) = pair().await;
    a.call("config.apply", json!({"changes": shared(), "sync": true}))
        .await
        .unwrap();
    // A write made for a management user, with a secret in it.
    let mut req = Request::call(
        Id::Num(0),
        "config.apply",
        json!({"changes": [{"op": "upsert", "kind": "user",
            "object": {"name": "bob", "password": "hunter2"}}]}),
    );
    req.user = Some(CallUser {
        name: "ann".into(),
        role: Role::Admin,
        address: Some("192.0.2.7".into()),
    });
    let resp = a.client().send_request(req).await.unwrap();
    let refused = resp.error.clone();
    // Reads are not recorded.
    a.call("config.get", json!({})).await.unwrap();
    a.call("config.status", json!({})).await.unwrap();

    wait_until(
        "b holds a's two entries",
        Duration::from_secs(15),
        || async { audit(&b, Some("a")).await.len() == 2 },
    )
    .await;
    let e = audit(&b, None).await;
    assert_eq!(e.len(), 2, "{e:?}");
    let (last, first) = (&e[0], &e[1]);
    assert_eq!(
        (&first["controller"], &first["seq"]),
        (&json!("a"), &json!(1))
    );
    assert_eq!(first["method"], "config.apply");
    assert_eq!(first["result"], "ok");
    assert!(
        first["caller"].as_str().unwrap().starts_with("client("),
        "{first}"
    );
    assert_eq!(last["seq"], 2);
    assert_eq!(last["user"], "ann");
    assert_eq!(last["address"], "192.0.2.7");
    assert_eq!(
        last["params"]["changes"][0]["object"]["password"],
        "(redacted)"
    );
    assert_eq!(last["params"]["changes"][0]["object"]["name"], "bob");
    match refused {
        Some(err) => {
            assert_ne!(last["result"], "ok");
            assert_eq!(last["error"], json!(err.message));
        }
        None => assert_eq!(last["result"], "ok"),
    }
    wait_until(
        "a counts nothing unreplicated",
        Duration::from_secs(15),
        || async {
            a.call("config.audit", json!({}))
                .await
                .is_ok_and(|v| v["unreplicated"] == 0)
        },
    )
    .await;

    // Only the router appends and only the partner's keeper replicates.
    let e = a
        .call("config.audit_append", json!({"records": []}))
        .await
        .unwrap_err();
    assert_eq!(kind(&e), Some("unauthorized"));
    let e = a
        .call("config.repl_audit", json!({"origin": "b", "entries": []}))
        .await
        .unwrap_err();
    assert_eq!(kind(&e), Some("unauthorized"));
    let e = a
        .call("config.audit", json!({"limit": 0}))
        .await
        .unwrap_err();
    assert_eq!(kind(&e), Some("invalid_params"));
    // None of those refused calls is a write the audit keeps.
    assert_eq!(audit(&a, Some("a")).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_wait_in_the_router_while_the_keeper_is_down() {
    let (mut a, b) = pair().await;
    a.kill_keeper();
    // The write fails (nobody serves `config`), and is recorded so.
    let e = a
        .call("config.lock", json!({"reason": "while down"}))
        .await
        .unwrap_err();
    assert!(kind(&e).is_some(), "{e}");
    a.start_keeper();
    a.wait_keeper().await;
    wait_until(
        "the held record reached a's keeper",
        Duration::from_secs(15),
        || async {
            audit(&a, Some("a"))
                .await
                .iter()
                .any(|e| e["method"] == "config.lock" && e["result"] != "ok")
        },
    )
    .await;
    wait_until("and b's", Duration::from_secs(15), || async {
        audit(&b, Some("a"))
            .await
            .iter()
            .any(|e| e["method"] == "config.lock")
    })
    .await;
}
