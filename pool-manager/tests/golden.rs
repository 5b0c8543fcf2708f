//! The wire JSON of every pool-manager reply, pinned by golden files under
//! `tests/golden/`: two managers on the simulated shelf with the fake
//! config-keeper run one scenario (disks, layouts, a mirrored pool with a
//! spare, volumes, snapshot and clone, reconcile, repair, export and
//! import, a giveback, a takeover, deletes), and each reply is compared
//! with the file captured before a change. A difference is a change of
//! the wire: make it on purpose, list it in CHANGELOG.md and capture again
//! with `DUPLEX_BLESS_GOLDEN=1 cargo test -p duplex-pool-manager --test
//! golden`.
//!
//! Volume identities are random and durations are wall time: they are
//! replaced by placeholders (`<v1.serial>`) and zeros before comparing.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use duplex_api::change::Change;
use duplex_api::model::Object;
use duplex_pool_manager::backend::sim::{SimBackend, SimShelf};
use duplex_pool_manager::backend::PoolBackend;
use duplex_pool_manager::manager::{Cluster, CreatePool, CreateVolume, FakeCluster, Manager};
use duplex_test_kit::golden;
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

type M = Manager<SimBackend, FakeCluster>;

/// Where the golden files of this crate are.
const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");

/// Records replies under their labels, with the identities seen so far.
struct Recorder {
    cluster: FakeCluster,
    ids: BTreeMap<String, String>,
    replies: Vec<(String, Value)>,
}

impl Recorder {
    fn learn_ids(&mut self) {
        for v in self.cluster.snapshot().volumes.values() {
            for (what, id) in [
                ("serial", &v.serial),
                ("wwn", &v.wwn),
                ("nguid", &v.nguid),
                ("uuid", &v.uuid),
            ] {
                self.ids
                    .insert(id.to_string(), format!("<{}.{what}>", v.name));
            }
        }
    }

    /// Records the reply of one call as `label`.
    fn keep<T: Serialize>(&mut self, label: &str, r: Result<T, impl std::fmt::Display>) {
        let r = r.unwrap_or_else(|e| panic!("{label}: {e}"));
        self.learn_ids();
        let mut v = serde_json::to_value(r).unwrap();
        self.scrub(&mut v);
        self.replies.push((label.to_string(), v));
    }

    fn scrub(&self, v: &mut Value) {
        match v {
            Value::String(s) => {
                for (id, name) in &self.ids {
                    if s.contains(id.as_str()) {
                        *s = s.replace(id.as_str(), name);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| self.scrub(x)),
            Value::Object(o) => {
                for (k, x) in o.iter_mut() {
                    if k == "duration_ms" || k == "uptime_s" {
                        *x = Value::from(0);
                    } else if k == "timings_ms" {
                        if let Value::Object(t) = x {
                            t.values_mut().for_each(|t| *t = Value::from(0));
                        }
                    } else {
                        self.scrub(x);
                    }
                }
            }
            _ => {}
        }
    }
}

fn pool(disks: &[&str], spares: &[&str]) -> CreatePool {
    CreatePool {
        name: "p".into(),
        layout: "mirror".into(),
        copies: None,
        disks: disks.iter().map(|s| s.to_string()).collect(),
        spares: spares.iter().map(|s| s.to_string()).collect(),
        tier: None,
        wipe: false,
    }
}

fn vol(name: &str, size: &str) -> CreateVolume {
    CreateVolume {
        pool: "p".into(),
        name: name.into(),
        size: size.into(),
    }
}

/// Heartbeat's part of a move: a new epoch with `owner` recorded for `p`.
async fn record_owner(cluster: &FakeCluster, owner: &str) -> u64 {
    let epoch = cluster.bump_epoch();
    let mut rec = cluster.snapshot().pools["p"].clone();
    rec.owner = owner.into();
    rec.epoch = epoch;
    cluster
        .apply(vec![Change::Upsert(Object::Pool(rec))])
        .await
        .unwrap();
    epoch
}

async fn scenario() -> Vec<(String, Value)> {
    let shelf = SimShelf::with_shared_disks(3);
    let cluster = FakeCluster::new(&["A", "B"], 1);
    let theirs = shelf.backend("B").discover().await.unwrap();
    cluster.set_partner(Some(theirs), Some(vec![]));
    let a: M = Manager::new(shelf.backend("A"), cluster.clone(), "A", Some("B"));
    let b: M = Manager::new(shelf.backend("B"), cluster.clone(), "B", Some("A"));
    let mut r = Recorder {
        cluster: cluster.clone(),
        ids: BTreeMap::new(),
        replies: Vec::new(),
    };
    r.keep("disk.list.local", a.disk_list(true).await);
    r.keep("disk.list", a.disk_list(false).await);
    r.keep("pool.layouts", Ok::<_, String>(M::layouts(3)));
    let req = pool(&["shelf0", "shelf1"], &["shelf2"]);
    r.keep("pool.create", a.create_pool(req.clone()).await);
    r.keep("pool.create.again", a.create_pool(req).await);
    r.keep("volume.create", a.create_volume(vol("v1", "1GiB")).await);
    r.keep(
        "volume.create.again",
        a.create_volume(vol("v1", "1GiB")).await,
    );
    r.keep("volume.resize", a.resize_volume("v1", "2GiB").await);
    r.keep("volume.resize.again", a.resize_volume("v1", "2GiB").await);
    r.keep(
        "volume.snapshot",
        a.snapshot("v1", "v1-snap", true, "snapshot").await,
    );
    r.keep(
        "volume.clone",
        a.snapshot("v1-snap", "v1-clone", false, "clone").await,
    );
    r.keep("volume.list", a.list_volumes(None).await);
    r.keep("volume.list.pool", a.list_volumes(Some("p")).await);
    r.keep("pool.status", a.pool_status(None).await);
    r.keep("pool.active_local", a.active_local().await);
    shelf.set_usage("p", 85.0, 10.0);
    r.keep("pool.reconcile", a.reconcile().await);
    r.keep("volume.delete", a.delete_volume("v1-clone").await);
    r.keep("volume.delete.again", a.delete_volume("v1-clone").await);
    r.keep("pool.export", a.export_pool("p", None).await);
    r.keep("pool.export.again", a.export_pool("p", None).await);
    r.keep("pool.import", a.import_pool("p").await);
    record_owner(&cluster, "B").await;
    r.keep("pool.export.to", a.export_pool("p", Some("B")).await);
    r.keep("pool.import.partner", b.import_pool("p").await);
    r.keep("pool.status.partner", b.pool_status(Some("p")).await);
    let epoch = record_owner(&cluster, "A").await;
    cluster.set_partner(None, None);
    r.keep("pool.takeover", a.takeover_pool("p", epoch).await);
    shelf.fail_disk("shelf1");
    r.keep("pool.status.degraded", a.pool_status(Some("p")).await);
    r.keep("pool.reconcile.degraded", a.reconcile().await);
    r.keep("pool.repair", a.repair("p").await);
    r.keep("volume.delete.snapshot", a.delete_volume("v1-snap").await);
    r.keep("volume.delete.last", a.delete_volume("v1").await);
    r.keep("pool.delete", a.delete_pool("p").await);
    r.keep("pool.delete.again", a.delete_pool("p").await);
    r.replies
}

#[tokio::test]
async fn replies_match_the_golden_files() {
    let replies = scenario().await;
    let diffs: Vec<String> = replies
        .iter()
        .filter_map(|(name, got)| golden::check(GOLDEN, name, got))
        .collect();
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[tokio::test]
async fn the_scrubbed_replies_are_the_same_on_every_run() {
    // The placeholders stand for every random or timed value: two runs
    // must agree, or the golden comparison would be flaky.
    assert_eq!(scenario().await, scenario().await);
}
