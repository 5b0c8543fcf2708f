//! Two keepers peered through two routers on loopback (real processes).

#![allow(clippy::unwrap_used)] // tests: a failed step should panic with its location

mod common;

use std::time::Duration;

use common::cluster::{converged, pair, wait_until};
use common::*;
use duplex_test_kit::next_event;
use serde_json::{json, Value};

fn kind(e: &duplex_services::CallError) -> Option<&'static str> {
    e.kind().map(|k| k.kind())
}

fn rpc_err(e: duplex_services::CallError) -> duplex_services::RpcError {
    e.into_rpc()
}

/// b writes its pool pb and volume w1, acknowledged by a; its section's
/// version after.
async fn b_writes_its_section(b: &common::cluster::Keeper) -> u64 {
    let r = b
        .call(
            "config.apply",
            json!({"changes": [pool("pb", "b", [3, 4]), volume("w1", "pb", 101)], "sync": true}),
        )
        .await
        .unwrap();
    assert_eq!(r["replicated"], true, "{r}");
    r["section_version"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_keepers_replicate_lock_and_catch_up() {
    let (a, mut b) = pair().await;

    // Shared part and a's section, synchronously replicated.
    let r = a
        .call("config.apply", json!({"changes": shared(), "sync": true}))
        .await
        .unwrap();
    assert_eq!(r["replicated"], true, "{r}");
    let r = a
        .call(
            "config.apply",
            json!({"changes": section_a(), "sync": true}),
        )
        .await
        .unwrap();
    assert_eq!(
        (r["version"].as_u64(), r["section_version"].as_u64()),
        (Some(2), Some(2))
    );
    // b writes its own section.
    b_writes_its_section(&b).await;
    let d = converged(&a, &b, Duration::from_secs(10)).await;
    let db = b.call("config.digest", json!({})).await.unwrap();
    assert_eq!(db["digest"], d.as_str());

    // b's replica of a's section is read-only.
    let e = rpc_err(
        b.call("config.apply", json!({"changes": [volume("v9", "pa", 9)]}))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.kind().map(|k| k.kind()), Some("not_owner"));
    assert_eq!(e.field(), Some("changes[0]"));
    // Validation errors name the field over RPC too.
    let mut v = volume_obj("v9", "pa", 9);
    v["size"] = json!("0GiB");
    let e = rpc_err(
        a.call("config.apply", json!({"changes": [up("volume", v)]}))
            .await
            .unwrap_err(),
    );
    assert_eq!(
        (e.kind().map(|k| k.kind()), e.field()),
        (Some("invalid_params"), Some("changes[0].object.size"))
    );
    let e = rpc_err(
        a.call(
            "config.apply",
            json!({"changes": [export_iscsi("e9", "v2", "g1", 0)]}),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(
        (e.kind().map(|k| k.kind()), e.field()),
        (Some("conflict"), Some("changes[0].object.lun"))
    );

    // config.get: everything or one kind, with the version.
    let g = a.call("config.get", json!({"kind": "pool"})).await.unwrap();
    assert_eq!(g["config"]["pool"].as_array().unwrap().len(), 2);
    assert!(g["config"].get("volume").is_none());
    assert_eq!(g["sections"]["a"], 2);
    assert_eq!(g["sections"]["b"], 1);
    let g = a
        .call("config.get", json!({"kind": "volume", "name": "v1"}))
        .await
        .unwrap();
    assert_eq!(
        g["config"]["volume"]["serial"],
        volume_obj("v1", "pa", 1)["serial"]
    );
    let e = a
        .call("config.get", json!({"kind": "volume", "name": "nope"}))
        .await
        .unwrap_err();
    assert_eq!(kind(&e), Some("not_found"));
    let g = b.call("config.get", json!({})).await.unwrap();
    assert_eq!(g["config"]["volume"].as_array().unwrap().len(), 3);

    // Change events carry the version.
    let mut sub = a.client().subscribe(&["config.changed"]).await.unwrap();
    let r = a
        .call("config.apply", json!({"changes": [group("g2", &["h1"])]}))
        .await
        .unwrap();
    let ev = next_event(&mut sub, "config.changed event").await;
    assert_eq!(ev.data["version"], r["version"]);
    assert!(ev.action_id.is_some());

    // History.
    let h = a
        .call("config.history", json!({"after": 0, "limit": 100}))
        .await
        .unwrap();
    assert!(h["entries"].as_array().unwrap().len() >= 4);

    // The lock: apply refused with the reason, reads work; unlock; idempotent.
    let l = b
        .call(
            "config.lock",
            json!({"reason": "partner silent on interconnect"}),
        )
        .await
        .unwrap();
    assert_eq!(l["changed"], true);
    let l = b
        .call("config.lock", json!({"reason": "again"}))
        .await
        .unwrap();
    assert_eq!(l["changed"], false);
    let e = rpc_err(
        b.call("config.apply", json!({"changes": [group("g3", &[])]}))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.kind().map(|k| k.kind()), Some("config_locked"));
    assert!(e.message.contains("partner silent"), "{}", e.message);
    assert!(b.call("config.get", json!({})).await.is_ok());
    let s = b.call("config.status", json!({})).await.unwrap();
    assert_eq!(s["locked"], true);
    // Merging the partner's changes continues while locked.
    a.call(
        "config.apply",
        json!({"changes": [group("g4", &[])], "sync": true}),
    )
    .await
    .unwrap();
    b.call("config.unlock", json!({"reason": "partner back"}))
        .await
        .unwrap();
    b.call("config.apply", json!({"changes": [group("g3", &[])]}))
        .await
        .unwrap();

    // The partner's keeper away: sync=true fails with unavailable (the change
    // is committed locally and says so); plain applies go on.
    b.kill_keeper();
    let e = a
        .call(
            "config.apply",
            json!({"changes": [group("g5", &[])], "sync": true, "timeout_ms": 300}),
        )
        .await
        .unwrap_err();
    assert_eq!(kind(&e), Some("unavailable"));
    let e = rpc_err(e);
    assert_eq!(e.data.as_ref().unwrap()["committed"], true);
    for i in 0..20 {
        a.call(
            "config.apply",
            json!({"changes": [group(&format!("away{i}"), &[])]}),
        )
        .await
        .unwrap();
    }
    // It returns, resumes from its last acknowledged version and catches up
    // before it reports ready.
    b.start_keeper();
    b.wait_keeper().await;
    wait_until("b ready", Duration::from_secs(20), || async {
        b.call("config.status", json!({}))
            .await
            .map(|s| s["ready"] == true)
            .unwrap_or(false)
    })
    .await;
    let s = b.call("config.status", json!({})).await.unwrap();
    let sa = a.call("config.status", json!({})).await.unwrap();
    assert!(
        s["partner_applied"].as_u64() >= sa["section_version"].as_u64().map(|v| v - 1),
        "{s}"
    );
    converged(&a, &b, Duration::from_secs(10)).await;
    // Every entry of a was shipped exactly once per version: b's log holds
    // a's versions 1..=head without gaps (no restart from zero either).
    let hist = b
        .call("config.history", json!({"after": 0, "limit": 10000}))
        .await
        .unwrap();
    let seqs: Vec<u64> = hist["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["origin"] == "a")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    let head = sa["section_version"].as_u64().unwrap();
    assert_eq!(seqs, (1..=head).collect::<Vec<_>>());
    let _: Value = b.call("config.events", json!({})).await.unwrap();
}

/// A keeper that was away reports ready only once it has merged everything
/// the partner had when it came back; events recorded carry the action_id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returning_keeper_is_not_ready_before_catching_up() {
    let (a, mut b) = pair().await;
    a.call("config.apply", json!({"changes": shared(), "sync": true}))
        .await
        .unwrap();
    b.kill_keeper();
    // 400 transactions while b is away.
    for i in 0..400 {
        a.call("config.apply", json!({"changes": [flip("away", 100, i)]}))
            .await
            .unwrap();
    }
    let head = a.call("config.status", json!({})).await.unwrap()["section_version"]
        .as_u64()
        .unwrap();
    b.start_keeper();
    b.wait_keeper().await;
    let mut saw_not_ready = false;
    loop {
        let s = b.call("config.status", json!({})).await.unwrap();
        if s["ready"] == true {
            assert!(
                s["partner_applied"].as_u64().unwrap() >= head,
                "ready before catching up: {s}"
            );
            break;
        }
        saw_not_ready = true;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    eprintln!("observed not-ready before catch-up: {saw_not_ready}");
    converged(&a, &b, Duration::from_secs(10)).await;

    let r = a
        .call(
            "config.record_event",
            json!({"kind": "cluster.takeover_done", "detail": {"pools": ["pb"]}}),
        )
        .await
        .unwrap();
    assert_eq!(r["recorded"], true);
    let ev = a.call("config.events", json!({})).await.unwrap();
    let last = ev["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["kind"], "cluster.takeover_done");
    assert!(last["action_id"].as_str().is_some_and(|s| !s.is_empty()));
    let e = a
        .call("config.record_event", json!({"kind": "bad kind"}))
        .await
        .unwrap_err();
    assert_eq!(kind(&e), Some("invalid_params"));
}

/// Issue 16: a controller whose database is gone (a replaced boot disk)
/// rebuilds its replica and its own section from the partner with one
/// command, then writes its section again. Before, its sender refused to
/// ship (`PartnerAhead`) and restoring the section was an operator's job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_is_rebuilt_from_the_partner() {
    let (a, mut b) = pair().await;
    a.call("config.apply", json!({"changes": shared(), "sync": true}))
        .await
        .unwrap();
    let b_head = b_writes_its_section(&b).await;
    let before = converged(&a, &b, Duration::from_secs(10)).await;

    // b's boot disk is replaced: the database is gone.
    b.kill_keeper();
    for ext in ["", "-wal", "-shm"] {
        let mut p = b.db().into_os_string();
        p.push(ext);
        let _ = std::fs::remove_file(p);
    }
    b.start_keeper();
    b.wait_keeper().await;
    wait_until(
        "b's sender refuses to ship",
        Duration::from_secs(20),
        || async {
            b.call("config.status", json!({}))
                .await
                .map(|s| {
                    s["replication"]["last_error"]
                        .as_str()
                        .is_some_and(|e| e.contains("partner has applied our version"))
                })
                .unwrap_or(false)
        },
    )
    .await;
    let g = b.call("config.get", json!({"kind": "pool"})).await.unwrap();
    assert!(
        !g.to_string().contains("\"pb\""),
        "b's own section is not back by itself: {g}"
    );

    let r = b
        .call("config.rebuild_from_partner", json!({}))
        .await
        .unwrap();
    assert_eq!(r["own_section_version"], b_head, "{r}");
    assert!(r["written"].as_u64().unwrap() > 0, "{r}");
    let after = converged(&a, &b, Duration::from_secs(10)).await;
    assert_eq!(
        after, before,
        "the same state on both, b's section included"
    );

    // b writes its section again, numbered after what a merged.
    let r = b
        .call(
            "config.apply",
            json!({"changes": [volume("w2", "pb", 102)], "sync": true}),
        )
        .await
        .unwrap();
    assert_eq!(r["replicated"], true, "{r}");
    assert_eq!(r["section_version"], b_head + 1, "{r}");
    converged(&a, &b, Duration::from_secs(10)).await;
    let g = a
        .call("config.get", json!({"kind": "volume", "name": "w2"}))
        .await
        .unwrap();
    assert_eq!(g["config"]["volume"]["pool"], "pb");

    // Once rebuilt there is nothing to rebuild: refused, nothing changed.
    let e = b
        .call("config.rebuild_from_partner", json!({}))
        .await
        .unwrap_err();
    assert_eq!(kind(&e), Some("conflict"));
}

/// Issue 16 point 6: two controllers write the same shared object while
/// their link is down. The write with the later stamp wins on both; the
/// other writer's `sync` apply answers `conflict`, naming what it lost,
/// instead of `replicated: true` (before, both answered `replicated: true`
/// and one write was silently lost).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_concurrent_shared_writes_only_the_winner_is_reported_replicated() {
    let (mut a, mut b) = pair().await;
    let r = a
        .call("config.apply", json!({"changes": shared(), "sync": true}))
        .await
        .unwrap();
    assert_eq!(r["replicated"], true, "{r}");
    converged(&a, &b, Duration::from_secs(10)).await;
    let host_c = |secret: &str| {
        up(
            "host",
            json!({"name": "hc", "iqns": ["iqn.2024-01.com.example:hc"],
                   "chap": {"user": "hc", "secret": secret}}),
        )
    };

    // a cannot reach b: a's writes stay in a's log, a's clock runs ahead.
    b.kill_router();
    for n in ["hx1", "hx2", "hx3"] {
        a.call("config.apply", json!({"changes": [host(n)]}))
            .await
            .unwrap();
    }
    a.call(
        "config.apply",
        json!({"changes": [host_c("secret-of-a-0001")]}),
    )
    .await
    .unwrap();
    // Now a's keeper is down and b's router back: b writes the same host,
    // with an older stamp, and waits for a's acknowledgement.
    a.kill_keeper();
    b.start_router();
    b.wait_keeper().await;
    let b_write = b.call(
        "config.apply",
        json!({"changes": [host_c("secret-of-b-0001")], "sync": true, "timeout_ms": 30000}),
    );
    let a_returns = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        a.start_keeper();
    };
    let (res, ()) = tokio::join!(b_write, a_returns);
    let e = rpc_err(res.unwrap_err());
    assert_eq!(e.kind().map(|k| k.kind()), Some("conflict"), "{e:?}");
    let data = e.data.clone().unwrap_or_default();
    assert_eq!(data["committed"], true, "{data}");
    assert_eq!(data["superseded"][0]["kind"], "host", "{data}");
    assert_eq!(data["superseded"][0]["key"], "hc", "{data}");

    // Both hold a's write.
    a.wait_keeper().await;
    converged(&a, &b, Duration::from_secs(20)).await;
    for k in [&a, &b] {
        let h = k
            .call("config.get", json!({"kind": "host", "name": "hc"}))
            .await
            .unwrap();
        let s = h.to_string();
        assert!(s.contains("secret-of-a-0001"), "{s}");
    }
}
