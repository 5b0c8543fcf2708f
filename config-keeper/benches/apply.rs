//! `cargo bench -p duplex-config-keeper --bench apply`: apply latency (p50,
//! p99) for a local commit and for a replicated (partner-acknowledged)
//! commit on loopback, and sustained changes per second, all end to end
//! through the router with real processes and real fsyncs. Also the store
//! alone (no RPC) for reference.
//!
//! `DUPLEX_BENCH_N` sets the samples per latency figure (default 2000).

#![allow(clippy::unwrap_used)] // a benchmark: a failed step should panic
#![allow(missing_docs)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{converged, pair, Keeper};
use common::*;
use duplex_config_keeper::store::Store;
use duplex_services::RouterClient;
use serde_json::json;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let n = sorted.len();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((n as f64 * p).ceil() as usize).clamp(1, n) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn report(name: &str, mut samples: Vec<Duration>) {
    samples.sort();
    println!(
        "{name:<44} n={:<6} p50={:>7.3} ms  p99={:>7.3} ms  max={:>7.3} ms",
        samples.len(),
        pct(&samples, 0.50),
        pct(&samples, 0.99),
        pct(&samples, 1.0)
    );
}

/// Change `i` of a stream over 500 groups (see `flip`).
fn grp(prefix: &str, i: u64) -> serde_json::Value {
    flip(prefix, 500, i)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this
    // binary without it, and must not spend a minute benchmarking.
    if !std::env::args().any(|a| a == "--bench") {
        println!("apply benchmark: run with `cargo bench -p duplex-config-keeper --bench apply`");
        return;
    }
    let n: u64 = std::env::var("DUPLEX_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);

    // The store alone: validation + one SQLite transaction with fsync.
    {
        let dir = tempfile::tempdir_in(std::env::temp_dir()).unwrap();
        let mut s = Store::open(&dir.path().join("bench.db"), "a").unwrap();
        apply(&mut s, shared()).unwrap();
        let mut lat = Vec::new();
        for i in 0..n {
            let t = Instant::now();
            let r = apply(&mut s, json!([grp("s", i)])).unwrap();
            lat.push(t.elapsed());
            assert!(r.changed);
        }
        report("store.apply (no RPC), 1 change", lat);
    }

    let (a, b) = pair().await;
    a.call("config.apply", json!({"changes": shared(), "sync": true}))
        .await
        .unwrap();
    let ca = a.client();
    let lat = latencies(&ca, n, "l", false).await;
    report("config.apply local commit, 1 change", lat);
    let lat = latencies(&ca, n, "r", true).await;
    report("config.apply sync=true (partner acked), 1 change", lat);

    // Sustained: 8 concurrent writers on a, one change per apply, for 5 s;
    // then the time until b has merged all of it.
    let rate = sustained(&a, "w", false).await;
    println!("sustained, 8 writers, 1 change/apply:        {rate} (local commit)");
    let t1 = Instant::now();
    converged(&a, &b, Duration::from_secs(120)).await;
    println!(
        "  partner fully caught up {:.2} s after the last apply",
        t1.elapsed().as_secs_f64()
    );

    // Sustained replicated: 8 writers with sync=true.
    let rate = sustained(&a, "y", true).await;
    println!("sustained, 8 writers, 1 change/apply, sync:  {rate} (partner acked)");
    let d = converged(&a, &b, Duration::from_secs(60)).await;
    println!("digests equal: {d}");
}

/// The latencies of `n` applies of stream `prefix` through `c`, one at a
/// time; each must change something (and, with `sync`, be replicated).
async fn latencies(c: &RouterClient, n: u64, prefix: &str, sync: bool) -> Vec<Duration> {
    let mut lat = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let r = c
            .call(
                "config.apply",
                json!({"changes": [grp(prefix, i)], "sync": sync}),
            )
            .await
            .unwrap();
        lat.push(t.elapsed());
        assert_eq!(r[if sync { "replicated" } else { "changed" }], true);
    }
    lat
}

/// 8 concurrent writers on `a` (streams `<prefix><writer>-`, with `sync`),
/// one change per apply, for 5 s: how many changes and how fast.
async fn sustained(a: &Keeper, prefix: &str, sync: bool) -> String {
    let count = Arc::new(AtomicU64::new(0));
    let stop = Instant::now() + Duration::from_secs(5);
    let mut tasks = Vec::new();
    for w in 0..8u64 {
        let c = a.client();
        let count = Arc::clone(&count);
        let prefix = format!("{prefix}{w}-");
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while Instant::now() < stop {
                c.call(
                    "config.apply",
                    json!({"changes": [grp(&prefix, i)], "sync": sync}),
                )
                .await
                .unwrap();
                count.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    let t0 = Instant::now();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = t0.elapsed().as_secs_f64();
    let total = count.load(Ordering::Relaxed);
    #[allow(clippy::cast_precision_loss)]
    let rate = total as f64 / secs;
    format!("{total} changes in {secs:.1} s = {rate:.0} changes/s")
}
