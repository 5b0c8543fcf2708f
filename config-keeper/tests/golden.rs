//! The wire JSON of every `config.*` reply an administrator or a service
//! sees (the replication methods are the keepers' own protocol), pinned by
//! golden files under `tests/golden/`: two real keepers behind their
//! routers run one scenario, and each reply is compared with the file
//! captured before a change. A difference is a change of the wire: make it
//! on purpose, list it in CHANGELOG.md and capture again with
//! `DUPLEX_BLESS_GOLDEN=1 cargo test -p duplex-config-keeper --test golden`.
//!
//! Wall-clock times, action ids and the temporary database path differ
//! from run to run: they are replaced by placeholders before comparing.
#![allow(clippy::unwrap_used)] // tests: a failed step should panic with its location

mod common;

use common::cluster::{converged, pair, wait_until};
use common::*;
use duplex_test_kit::golden;
use serde_json::{json, Value};
use std::time::Duration;

/// Where the golden files of this crate are.
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

/// Replaces what differs from run to run: times (`*_ms`, `since`, `at`),
/// action ids, the database path, the test process's pid in a lock's
/// owner.
fn scrub(v: &mut Value) {
    match v {
        Value::Array(a) => a.iter_mut().for_each(scrub),
        Value::Object(o) => {
            for (k, x) in o.iter_mut() {
                let timed = k.ends_with("_ms") || k == "since" || k == "at" || k == "ts";
                if timed && x.is_number() {
                    *x = Value::from(0);
                } else if k == "action_id" && x.is_string() {
                    *x = Value::from("<action_id>");
                } else if k == "database" && x.is_string() {
                    *x = Value::from("<database>");
                } else if k == "owner" && x.as_str().is_some_and(|o| o.starts_with("client(pid=")) {
                    *x = Value::from("client(pid=<pid>)");
                } else {
                    scrub(x);
                }
            }
        }
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_match_the_golden_files() {
    let (a, b) = pair().await;
    let calls: Vec<(&str, &str, Value)> = vec![
        (
            "config.apply.shared",
            "config.apply",
            json!({"changes": shared(), "sync": true}),
        ),
        (
            "config.apply.section",
            "config.apply",
            json!({"changes": section_a(), "sync": true}),
        ),
        (
            "config.apply.again",
            "config.apply",
            json!({"changes": section_a()}),
        ),
        ("config.get", "config.get", json!({})),
        ("config.get.kind", "config.get", json!({"kind": "volume"})),
        (
            "config.get.one",
            "config.get",
            json!({"kind": "pool", "name": "pa"}),
        ),
        ("config.watch", "config.watch", json!({})),
        ("config.history", "config.history", json!({"limit": 5})),
        ("config.digest", "config.digest", json!({})),
        (
            "config.record_event",
            "config.record_event",
            json!({"kind": "cluster.takeover_done", "detail": {"pool": "pa"}}),
        ),
        ("config.events", "config.events", json!({})),
        ("config.lock", "config.lock", json!({"reason": "upgrade"})),
        (
            "config.lock.again",
            "config.lock",
            json!({"reason": "upgrade"}),
        ),
        ("config.status.locked", "config.status", json!({})),
        ("config.unlock", "config.unlock", json!({"reason": "done"})),
        (
            "config.unlock.again",
            "config.unlock",
            json!({"reason": "done"}),
        ),
    ];
    let mut diffs = Vec::new();
    for (label, method, params) in calls {
        let mut got = a
            .call(method, params)
            .await
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        scrub(&mut got);
        diffs.extend(golden::check(GOLDEN, label, &got));
    }
    converged(&a, &b, Duration::from_secs(10)).await;
    // An idle direction connects on its own schedule; the partner's view
    // of its catch-up depends on when it connected, so only a's status is
    // pinned.
    wait_until("replication connected", Duration::from_secs(10), || async {
        let s = a.call("config.status", json!({})).await.unwrap();
        s["replication"]["connected"] == true
    })
    .await;
    let mut got = a.call("config.status", json!({})).await.unwrap();
    scrub(&mut got);
    diffs.extend(golden::check(GOLDEN, "config.status", &got));
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}
