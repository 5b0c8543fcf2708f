//! Replication torture: two keepers peered through two routers on loopback
//! take a stream of changes (10,000 by default, `DUPLEX_TORTURE_CHANGES`)
//! from two writers while keepers and routers are killed with SIGKILL at
//! random moments and restarted. At the end both digests are equal and every
//! acknowledged change is present on both controllers.
//!
//! Writers retry a failed apply until it succeeds: every change is an
//! idempotent upsert or delete, so a retry after a commit whose reply was
//! lost changes nothing, and the expected final state is the in-order
//! application of the stream.

#![allow(clippy::unwrap_used)] // tests: a failed step should panic with its location

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::{converged, pair_with};
use common::*;
use duplex_services::RouterClient;
use serde_json::{json, Value};

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Change `i` of controller `me`, and its effect on the expected state.
fn change(me: &str, i: u64, expected: &mut BTreeMap<String, Vec<String>>) -> Value {
    let k = i % 150;
    if i % 7 == 3 {
        let name = format!("{me}-g{}", (i * 13) % 150);
        expected.remove(&name);
        del("host_group", &name)
    } else {
        let name = format!("{me}-g{k}");
        // The membership cycles with each pass over the 150 names, so an
        // upsert always changes something (unless a delete came between).
        let hosts: Vec<String> = match (i / 150) % 3 {
            0 => vec![],
            1 => vec!["h1".into()],
            _ => vec!["h1".into(), "h2".into()],
        };
        expected.insert(name.clone(), hosts.clone());
        up("host_group", json!({"name": name, "hosts": hosts}))
    }
}

async fn writer(
    me: &'static str,
    client: RouterClient,
    n: u64,
    acked: Arc<AtomicU64>,
) -> BTreeMap<String, Vec<String>> {
    let mut expected = BTreeMap::new();
    for i in 0..n {
        let c = change(me, i, &mut expected);
        let sync = i % 10 == 0;
        let mut tries = 0u32;
        loop {
            match client
                .call(
                    "config.apply",
                    json!({"changes": [c.clone()], "sync": sync, "timeout_ms": 1000}),
                )
                .await
            {
                Ok(_) => break,
                Err(e) => {
                    let e = e.into_rpc();
                    if e.data.as_ref().is_some_and(|d| d["committed"] == true) {
                        break; // committed locally; the partner was away
                    }
                    tries += 1;
                    assert!(tries < 2000, "{me}: change {i} never went through: {e}");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
        acked.fetch_add(1, Ordering::Relaxed);
    }
    expected
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torture_kill9_keepers_and_routers() {
    let total: u64 = std::env::var("DUPLEX_TORTURE_CHANGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let seed: u64 = std::env::var("DUPLEX_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            u64::from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos(),
            ) | 1
        });
    eprintln!("torture: {total} changes, seed {seed} (DUPLEX_TORTURE_SEED to replay)");
    // A short history, so that log pruning runs under the kills too.
    let (mut a, mut b) = pair_with(&["--history-keep", "1000"]).await;
    a.call("config.apply", json!({"changes": shared(), "sync": true}))
        .await
        .unwrap();

    let started = Instant::now();
    let acked = Arc::new(AtomicU64::new(0));
    let wa = tokio::spawn(writer("a", a.client(), total / 2, Arc::clone(&acked)));
    let wb = tokio::spawn(writer(
        "b",
        b.client(),
        total - total / 2,
        Arc::clone(&acked),
    ));
    let done = Arc::new(AtomicBool::new(false));

    // The killer: every 150-600 ms, SIGKILL one of the four processes and
    // restart it 20-300 ms later.
    let d = Arc::clone(&done);
    let killer = tokio::spawn(async move {
        let mut rng = Rng(seed);
        let mut kills = [0u32; 4];
        while !d.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(150 + rng.below(450))).await;
            if d.load(Ordering::Relaxed) {
                break;
            }
            let victim = rng.below(4);
            kills[usize::try_from(victim).unwrap()] += 1;
            match victim {
                0 => a.kill_keeper(),
                1 => b.kill_keeper(),
                2 => a.kill_router(),
                _ => b.kill_router(),
            }
            tokio::time::sleep(Duration::from_millis(20 + rng.below(280))).await;
            match victim {
                0 => a.start_keeper(),
                1 => b.start_keeper(),
                2 => a.start_router(),
                _ => b.start_router(),
            }
        }
        (a, b, kills)
    });

    let ea = wa.await.unwrap();
    let eb = wb.await.unwrap();
    done.store(true, Ordering::Relaxed);
    let (a, b, kills) = killer.await.unwrap();
    let elapsed = started.elapsed();
    eprintln!(
        "torture: {} changes acknowledged in {:.1} s; kills: keeper a {}, keeper b {}, router a {}, router b {}",
        acked.load(Ordering::Relaxed),
        elapsed.as_secs_f64(),
        kills[0],
        kills[1],
        kills[2],
        kills[3]
    );
    a.wait_keeper().await;
    b.wait_keeper().await;
    let digest = converged(&a, &b, Duration::from_secs(60)).await;
    eprintln!("torture: converged, digest {digest}");

    // Every acknowledged change is present, on both controllers.
    for node in [&a, &b] {
        let g = node
            .call("config.get", json!({"kind": "host_group"}))
            .await
            .unwrap();
        let mut got: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for grp in g["config"]["host_group"].as_array().unwrap() {
            let name = grp["name"].as_str().unwrap().to_string();
            if name.starts_with("a-") || name.starts_with("b-") {
                let hosts = grp["hosts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h.as_str().unwrap().to_string())
                    .collect();
                got.insert(name, hosts);
            }
        }
        let mut want = ea.clone();
        want.extend(eb.clone());
        assert_eq!(
            got, want,
            "controller {} lost or invented changes",
            node.node.controller
        );
        let s = node.call("config.status", json!({})).await.unwrap();
        assert_eq!(s["ready"], true);
    }
    assert!(
        kills.iter().sum::<u32>() >= 4,
        "too few kills to mean anything: {kills:?}"
    );
    // Pruning ran (history is short) without losing any position.
    for node in [&a, &b] {
        let h = node
            .call("config.history", json!({"after": 0, "limit": 10000}))
            .await
            .unwrap();
        let s = node.call("config.status", json!({})).await.unwrap();
        let kept = h["entries"].as_array().unwrap().len();
        eprintln!(
            "torture: {} keeps {kept} of {} log rows",
            node.node.controller, s["version"]
        );
        // keep (1,000) + one pruning period (1,024) + unacknowledged rows.
        let version = s["version"].as_u64().unwrap();
        assert!(
            version < 3000 || u64::try_from(kept).unwrap() < 2100,
            "no pruning on {}",
            node.node.controller
        );
    }
}
