//! A desired state larger than one message (1 MiB): config.get pages it,
//! and config-keeper, pool-manager and targets (on their simulators) each
//! read it whole and reconcile it, then find nothing to change.

#![allow(clippy::unwrap_used, clippy::disallowed_methods)] // test helpers

use duplex_integration_tests::large::{self, Scale};
use serde_json::json;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_past_the_message_limit_is_paged_and_reconciled_whole() {
    let (n, _b, _daemons) = large::storage_pair().await;
    let s = Scale {
        volumes: 4_000,
        hosts: 400,
    };
    let t = std::time::Instant::now();
    let loaded = large::load(&n, s, 500).await;
    eprintln!("loaded in {:?} ({} applies)", t.elapsed(), loaded.applies);
    let c = large::patient(&n);

    // Unpaged, the whole state is refused at once, not after a timeout.
    let t = std::time::Instant::now();
    let Err(e) = c.call("config.get", json!({})).await else {
        panic!("the whole state fits one message: make the test's state larger");
    };
    assert!(t.elapsed() < Duration::from_secs(10), "{e}");
    assert_eq!(
        e.kind(),
        Some(duplex_services::rpc::ErrorCode::TooLarge),
        "{e}"
    );

    // Paged: every object once, in several pages.
    let first = c.call("config.get", json!({"page": true})).await.unwrap();
    assert!(first["next"].is_string(), "more than one page");
    let t = std::time::Instant::now();
    let all = c.config_get_all(None).await.unwrap();
    eprintln!("config.get whole: {:?}", t.elapsed());
    assert!(all.get("next").is_none());
    let cfg = &all["config"];
    assert_eq!(cfg["volume"].as_array().unwrap().len(), s.volumes);
    assert_eq!(cfg["export"].as_array().unwrap().len(), s.volumes);
    assert_eq!(cfg["host"].as_array().unwrap().len(), s.hosts);
    assert_eq!(cfg["pool"][0]["name"], "big");
    let vols = c.config_get_all(Some("volume")).await.unwrap();
    assert_eq!(vols["config"], json!({"volume": cfg["volume"]}));

    // Each reconciler read it whole and settles with nothing to do.
    let t = std::time::Instant::now();
    large::converge(&n, "pool.reconcile", Duration::from_secs(600)).await;
    eprintln!("pool-manager settled: {:?}", t.elapsed());
    let t = std::time::Instant::now();
    let r = large::converge(&n, "target.reconcile", Duration::from_secs(600)).await;
    eprintln!("targets settled: {:?}", t.elapsed());
    assert_eq!(r["pending"], json!([]), "every export built: {r}");
}
