//! A desired state of 10,000 volumes, 2,000 hosts and 10,000 exports with
//! the real daemons (router, config-keeper, pool-manager and targets on
//! their simulators, a pair of controllers on loopback): how long
//! `config.get` of the whole state takes (paged), and a full reconcile
//! with nothing to change in pool-manager and in targets.
//!
//! ```text
//! cargo build --release --workspace --bins
//! cargo bench -p duplex-integration-tests --bench large_config
//! ```
//! `DUPLEX_BENCH_VOLUMES` and `DUPLEX_BENCH_HOSTS` change the scale;
//! `DUPLEX_BENCH_N` the samples per figure (default 5).

#![allow(clippy::unwrap_used, clippy::disallowed_methods, missing_docs)]

use duplex_integration_tests::large::{self, Scale};
use serde_json::json;
use std::time::{Duration, Instant};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let s = Scale {
        volumes: env_or("DUPLEX_BENCH_VOLUMES", 10_000),
        hosts: env_or("DUPLEX_BENCH_HOSTS", 2_000),
    };
    let samples = env_or("DUPLEX_BENCH_N", 5).max(1);
    let (a, _b, _procs) = large::storage_pair().await;
    let loaded = large::load(&a, s, 1_000).await;
    let c = large::patient(&a);

    let first = c.call("config.get", json!({"page": true})).await.unwrap();
    let whole = c.config_get_all(None).await.unwrap();
    let bytes = whole["config"].to_string().len();
    let mut pages = 1;
    let mut next = first["next"].as_str().map(str::to_string);
    while let Some(after) = next {
        let p = c
            .call("config.get", json!({"page": true, "after": after}))
            .await
            .unwrap();
        pages += 1;
        next = p["next"].as_str().map(str::to_string);
    }
    let mut get = Vec::new();
    for _ in 0..samples {
        let t = Instant::now();
        let v = c.config_get_all(None).await.unwrap();
        get.push(t.elapsed());
        assert_eq!(
            v["config"]["volume"].as_array().map(Vec::len),
            Some(s.volumes)
        );
    }

    // The daemons reconcile on config.changed by themselves; wait until
    // each finds nothing to do, then time passes that change nothing.
    let t = Instant::now();
    large::converge(&a, "pool.reconcile", Duration::from_secs(1800)).await;
    let pm_settle = t.elapsed();
    let t = Instant::now();
    let r = large::converge(&a, "target.reconcile", Duration::from_secs(1800)).await;
    let tg_settle = t.elapsed();
    let pending = r["pending"].as_array().map_or(0, Vec::len);
    let mut pm = Vec::new();
    let mut tg = Vec::new();
    for _ in 0..samples {
        let t = Instant::now();
        let v = c.call("pool.reconcile", json!({})).await.unwrap();
        pm.push(t.elapsed());
        assert_eq!(large::steps(&v), 0, "pool-manager changed something");
        let t = Instant::now();
        let v = c.call("target.reconcile", json!({})).await.unwrap();
        tg.push(t.elapsed());
        assert_eq!(large::steps(&v), 0, "targets changed something");
    }

    println!(
        "state: {} volumes, {} hosts in {} groups, {} exports; {} bytes of JSON in {pages} pages",
        s.volumes,
        s.hosts,
        s.hosts.div_ceil(large::HOSTS_PER_GROUP),
        s.volumes,
        bytes
    );
    println!(
        "load: {} config.apply calls of 1,000 changes in {}",
        loaded.applies,
        ms(loaded.apply_time)
    );
    println!("| figure | median of {samples} | target |");
    println!("|---|---|---|");
    println!(
        "| config.get, the whole state (paged) | {} | < 1 s |",
        ms(median(get))
    );
    println!(
        "| pool-manager full reconcile, nothing to change | {} | < 5 s |",
        ms(median(pm))
    );
    println!(
        "| targets full reconcile, nothing to change | {} | < 5 s |",
        ms(median(tg))
    );
    println!(
        "first reconcile after the load (from the end of the load until nothing is left): pool-manager {}, then targets {} more; {pending} exports pending",
        ms(pm_settle),
        ms(tg_settle)
    );
}
