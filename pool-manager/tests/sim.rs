//! The manager on the simulated shelf with a fake config-keeper that runs
//! config-keeper's own validation: every bad input from the issue, the
//! ownership rules, snapshots and clones, rollback, health and the
//! reconciler.

#![allow(clippy::unwrap_used)] // test helpers: a panic is the failure report

use duplex_pool_manager::backend::sim::{SimBackend, SimShelf};
use duplex_pool_manager::backend::PoolBackend;
use duplex_pool_manager::manager::{CreatePool, CreateVolume, FakeCluster, Manager};
use duplex_services::{ErrorCode, RpcError};
use duplex_test_kit::find_in;
use serde_json::{json, Value};
use std::time::Duration;

type M = Manager<SimBackend, FakeCluster>;

/// A reply as the JSON it is on the wire.
trait J {
    fn j(self) -> Value;
}

impl<T: serde::Serialize> J for T {
    fn j(self) -> Value {
        serde_json::to_value(self).unwrap()
    }
}

struct Rig {
    shelf: SimShelf,
    cluster: FakeCluster,
    a: M,
    b: M,
}

async fn rig(disks: usize) -> Rig {
    let shelf = SimShelf::with_shared_disks(disks);
    let cluster = FakeCluster::new(&["A", "B"], 1);
    let theirs = shelf.backend("B").discover().await.unwrap();
    cluster.set_partner(Some(theirs), Some(vec![]));
    let a = Manager::new(shelf.backend("A"), cluster.clone(), "A", Some("B"));
    let b = Manager::new(shelf.backend("B"), cluster.clone(), "B", Some("A"));
    Rig {
        shelf,
        cluster,
        a,
        b,
    }
}

impl Rig {
    /// A rig of `disks` disks where A has built the pool `req`.
    async fn built(disks: usize, req: CreatePool) -> Rig {
        let rig = rig(disks).await;
        rig.a.create_pool(req).await.unwrap();
        rig
    }

    /// A rig with pool `p` (linear on shelf0) built by A.
    async fn with_pool(disks: usize) -> Rig {
        Rig::built(disks, pool("p", "linear", &["shelf0"])).await
    }

    /// [`Rig::with_pool`] with the volume `v1` (1GiB) in it.
    async fn with_volume(disks: usize) -> Rig {
        let rig = Rig::with_pool(disks).await;
        rig.a.create_volume(vol("p", "v1", "1GiB")).await.unwrap();
        rig
    }

    /// Heartbeat's part of a giveback: a new epoch, and `owner` recorded as
    /// the owner of `pool` with it.
    async fn record_owner(&self, pool: &str, owner: &str) {
        use duplex_api::change::Change;
        use duplex_api::model::Object;
        use duplex_pool_manager::manager::Cluster;
        let epoch = self.cluster.bump_epoch();
        let mut rec = self.cluster.snapshot().pools[pool].clone();
        rec.owner = owner.into();
        rec.epoch = epoch;
        self.cluster
            .apply(vec![Change::Upsert(Object::Pool(rec))])
            .await
            .unwrap();
    }

    /// The payloads of the events published on `topic`, oldest first.
    fn events(&self, topic: &str) -> Vec<Value> {
        self.cluster
            .events()
            .into_iter()
            .filter(|(t, _)| t == topic)
            .map(|(_, d)| d)
            .collect()
    }
}

fn pool(name: &str, layout: &str, disks: &[&str]) -> CreatePool {
    CreatePool {
        name: name.into(),
        layout: layout.into(),
        copies: None,
        disks: disks.iter().map(|s| s.to_string()).collect(),
        spares: vec![],
        tier: None,
        wipe: false,
    }
}

fn vol(pool: &str, name: &str, size: &str) -> CreateVolume {
    CreateVolume {
        pool: pool.into(),
        name: name.into(),
        size: size.into(),
    }
}

fn rpc<T>(r: Result<T, duplex_pool_manager::error::PoolError>) -> RpcError {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_rpc(),
    }
}

/// The state before a call that must be refused.
struct Before<'a> {
    rig: &'a Rig,
    state: (duplex_api::model::Config, Value),
}

impl<'a> Before<'a> {
    async fn take(rig: &'a Rig) -> Before<'a> {
        Before {
            rig,
            state: state(rig).await,
        }
    }

    /// Asserts an error of `kind` naming `field`, and that nothing changed.
    async fn refused<T>(
        &self,
        r: Result<T, duplex_pool_manager::error::PoolError>,
        kind: ErrorCode,
        field: &str,
    ) {
        let e = rpc(r);
        assert_eq!(e.kind(), Some(kind), "{e}");
        assert_eq!(e.field(), Some(field), "{e}");
        assert_eq!(state(self.rig).await, self.state, "state changed after {e}");
    }
}

async fn state(rig: &Rig) -> (duplex_api::model::Config, Value) {
    let obs = rig.shelf.backend("A").observe().await.unwrap();
    (rig.cluster.snapshot(), serde_json::to_value(obs).unwrap())
}

#[tokio::test]
async fn bad_pool_input_is_refused_and_changes_nothing() {
    let rig = rig(6).await;
    rig.shelf.add_disk("lonely", 2 << 30, &["A"]);
    rig.shelf.set_signature("shelf5", "ext4");
    let before = Before::take(&rig).await;
    use ErrorCode::*;
    let cases: Vec<(CreatePool, ErrorCode, &str)> = vec![
        (
            pool("bad name", "linear", &["shelf0"]),
            InvalidParams,
            "name",
        ),
        (pool("-p", "linear", &["shelf0"]), InvalidParams, "name"),
        (pool("p", "raid7", &["shelf0"]), InvalidParams, "layout"),
        (
            pool("p", "raid5", &["shelf0", "shelf1"]),
            InvalidParams,
            "disks",
        ),
        (
            pool("p", "raid6", &["shelf0", "shelf1", "shelf2", "shelf3"]),
            InvalidParams,
            "disks",
        ),
        (pool("p", "linear", &[]), InvalidParams, "disks"),
        (
            pool("p", "linear", &["shelf0", "shelf0"]),
            InvalidParams,
            "disks[1]",
        ),
        (pool("p", "linear", &["nosuch"]), InvalidParams, "disks[0]"),
        // Only this controller sees it: not shared.
        (
            pool("p", "linear", &["shelf0", "lonely"]),
            InvalidParams,
            "disks[1]",
        ),
        // A signature without wipe.
        (pool("p", "linear", &["shelf5"]), InvalidParams, "disks[0]"),
    ];
    for (req, kind, field) in cases {
        before
            .refused(rig.a.create_pool(req).await, kind, field)
            .await;
    }
    let mut m = pool("p", "mirror", &["shelf0", "shelf1"]);
    m.copies = Some(4);
    before
        .refused(rig.a.create_pool(m).await, InvalidParams, "copies")
        .await;
    // The explanation says why.
    let e = rpc(rig.a.create_pool(pool("p", "linear", &["lonely"])).await);
    assert!(
        e.message.contains("not seen by controller B"),
        "{}",
        e.message
    );
    let e = rpc(rig.a.create_pool(pool("p", "linear", &["shelf5"])).await);
    assert!(e.message.contains("wipe"), "{}", e.message);
    // With wipe it works.
    let mut w = pool("p", "linear", &["shelf5"]);
    w.wipe = true;
    rig.a.create_pool(w).await.unwrap();
}

#[tokio::test]
async fn partner_unreachable_means_not_provably_shared() {
    let rig = rig(3).await;
    rig.cluster.set_partner(None, None);
    let before = Before::take(&rig).await;
    let e = rpc(rig.a.create_pool(pool("p", "linear", &["shelf0"])).await);
    assert_eq!(e.kind(), Some(ErrorCode::InvalidParams));
    assert!(
        e.message.contains("cannot be proven shared"),
        "{}",
        e.message
    );
    assert_eq!(state(&rig).await, before.state);
    let list = rig.a.disk_list(false).await.unwrap().j();
    assert_eq!(list["partner_reachable"], false);
    assert_eq!(list["disks"][0]["qualifies"], false);
}

#[tokio::test]
async fn disk_in_use_is_a_conflict() {
    let rig = Rig::built(4, pool("p1", "mirror", &["shelf0", "shelf1"])).await;
    let before = Before::take(&rig).await;
    before
        .refused(
            rig.a
                .create_pool(pool("p2", "linear", &["shelf2", "shelf1"]))
                .await,
            ErrorCode::Conflict,
            "disks[1]",
        )
        .await;
    let list = rig.a.disk_list(false).await.unwrap().j();
    let d0 = &list["disks"][0];
    assert_eq!(d0["pool"], "p1");
    assert_eq!(d0["qualifies"], false);
    assert_eq!(list["disks"][3]["qualifies"], true);
    assert_eq!(list["disks"][3]["shared"], true);
}

#[tokio::test]
async fn create_is_recorded_and_idempotent() {
    let rig = rig(4).await;
    let raid5 = || pool("p", "raid5", &["shelf0", "shelf1", "shelf2"]);
    let r = rig.a.create_pool(raid5()).await.unwrap().j();
    assert_eq!(r["outcome"], "changed");
    assert_eq!(r["pool"]["system_id"], "A");
    assert_eq!(r["pool"]["active_here"], true);
    let cfg = rig.cluster.snapshot();
    let p = &cfg.pools["p"];
    assert_eq!((p.home.as_str(), p.owner.as_str(), p.epoch), ("A", "A", 1));
    assert_eq!(p.disks.len(), 3);
    assert_eq!(cfg.disks.len(), 3);
    let r = rig.a.create_pool(raid5()).await.unwrap().j();
    assert_eq!(r["outcome"], "unchanged");
    let e = rpc(rig.a.create_pool(pool("p", "linear", &["shelf3"])).await);
    assert_eq!(e.kind(), Some(ErrorCode::Conflict));
    // Issue 16 point 7: the same name and layout with other disks, a
    // spare more, or another tier was answered "unchanged".
    let e = rpc(rig
        .a
        .create_pool(pool("p", "raid5", &["shelf0", "shelf1", "shelf3"]))
        .await);
    assert_eq!(e.kind(), Some(ErrorCode::Conflict), "{e:?}");
    let mut with_spare = pool("p", "raid5", &["shelf0", "shelf1", "shelf2"]);
    with_spare.spares = vec!["shelf3".into()];
    let e = rpc(rig.a.create_pool(with_spare).await);
    assert_eq!(e.kind(), Some(ErrorCode::Conflict), "{e:?}");
    assert!(rig
        .cluster
        .events()
        .iter()
        .any(|(t, _)| t == "pool.created"));
}

#[tokio::test]
async fn failed_create_rolls_back() {
    let rig = rig(3).await;
    let before = Before::take(&rig).await;
    rig.shelf.fail_next("create_pool");
    let e = rpc(rig.a.create_pool(pool("p", "linear", &["shelf0"])).await);
    assert_eq!(e.kind(), Some(ErrorCode::BackendFailed));
    let after = state(&rig).await;
    assert!(after.0.pools.is_empty());
    assert_eq!(after.1, before.state.1);
    // Backend fails, then the rollback's config write fails too.
    rig.shelf.fail_next("create_pool");
    rig.shelf.fail_next("remove_pool");
    let e = rpc(rig.a.create_pool(pool("p", "linear", &["shelf0"])).await);
    assert_eq!(e.data.as_ref().unwrap()["rollback_failed"], true, "{e}");
    assert!(e.message.contains("rollback"), "{}", e.message);
}

#[tokio::test]
async fn bad_volume_input_is_refused_and_changes_nothing() {
    let rig = Rig::with_volume(3).await;
    let before = Before::take(&rig).await;
    use ErrorCode::*;
    let cases = [
        (vol("p", "v 2", "1GiB"), InvalidParams, "name"),
        (vol("p", "snapshot2", "1GiB"), InvalidParams, "name"),
        (vol("p", "v2", "1024"), InvalidParams, "size"),
        (vol("p", "v2", "0GiB"), InvalidParams, "size"),
        (vol("p", "v2", "1XiB"), InvalidParams, "size"),
        (vol("p", "v2", "10TiB"), InvalidParams, "size"),
        (vol("nosuch", "v2", "1GiB"), NotFound, "pool"),
        (vol("p", "v1", "2GiB"), Conflict, "name"),
    ];
    for (req, kind, field) in cases {
        before
            .refused(rig.a.create_volume(req).await, kind, field)
            .await;
    }
    before
        .refused(
            rig.a.resize_volume("v1", "512MiB").await,
            InvalidParams,
            "size",
        )
        .await;
    before
        .refused(rig.a.resize_volume("nope", "2GiB").await, NotFound, "name")
        .await;
    // Idempotent create.
    let r = rig
        .a
        .create_volume(vol("p", "v1", "1GiB"))
        .await
        .unwrap()
        .j();
    assert_eq!(r["outcome"], "unchanged");
    // B does not own the pool.
    before
        .refused(
            rig.b.create_volume(vol("p", "v9", "1GiB")).await,
            NotOwner,
            "name",
        )
        .await;
}

#[tokio::test]
async fn volumes_snapshots_clones_and_the_tree() {
    let rig = Rig::built(3, pool("p", "mirror", &["shelf0", "shelf1"])).await;
    let v = rig
        .a
        .create_volume(vol("p", "v1", "1GiB"))
        .await
        .unwrap()
        .j();
    assert_eq!(v["volume"]["lv_device"], "/dev/dx-p/v1");
    let serial = v["volume"]["serial"].as_str().unwrap();
    assert_eq!(v["volume"]["device"], format!("/dev/mapper/dxvol-{serial}"));
    let s = rig
        .a
        .snapshot("v1", "v1-snap", true, "snapshot")
        .await
        .unwrap()
        .j();
    let c = rig
        .a
        .snapshot("v1-snap", "v1-clone", false, "clone")
        .await
        .unwrap()
        .j();
    for x in [&v, &s, &c] {
        assert_eq!(x["outcome"], "changed");
    }
    // Every volume has its own identity.
    let serials: std::collections::BTreeSet<_> = [&v, &s, &c]
        .iter()
        .map(|x| x["volume"]["serial"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(serials.len(), 3);
    let again = rig
        .a
        .snapshot("v1", "v1-snap", true, "snapshot")
        .await
        .unwrap()
        .j();
    assert_eq!(again["outcome"], "unchanged");
    let list = rig.a.list_volumes(Some("p")).await.unwrap().j();
    assert_eq!(
        list["tree"],
        json!([{"name": "v1", "children": [{"name": "v1-snap", "children": [{"name": "v1-clone", "children": []}]}]}])
    );
    let snap = find_in(&list, "volumes", "name", "v1-snap");
    assert_eq!(snap["read_only"], true);
    // Grow.
    let r = rig.a.resize_volume("v1", "2GiB").await.unwrap().j();
    assert_eq!(r["volume"]["size"], "2GiB");
    // A volume with snapshots cannot be deleted (config-keeper refuses).
    let before = Before::take(&rig).await;
    let e = rpc(rig.a.delete_volume("v1").await);
    assert_eq!(e.kind(), Some(ErrorCode::Conflict), "{e}");
    assert_eq!(state(&rig).await, before.state);
    rig.a.delete_volume("v1-clone").await.unwrap();
    rig.a.delete_volume("v1-snap").await.unwrap();
    rig.a.delete_volume("v1").await.unwrap();
    let r = rig.a.delete_volume("v1").await.unwrap().j();
    assert_eq!(r["outcome"], "unchanged");
    assert!(rig.cluster.snapshot().volumes.is_empty());
}

#[tokio::test]
async fn failed_volume_create_and_delete_roll_back() {
    let rig = Rig::with_pool(2).await;
    rig.shelf.fail_next("create_volume");
    assert_eq!(
        rpc(rig.a.create_volume(vol("p", "v1", "1GiB")).await).kind(),
        Some(ErrorCode::BackendFailed)
    );
    assert!(rig.cluster.snapshot().volumes.is_empty());
    rig.a.create_volume(vol("p", "v1", "1GiB")).await.unwrap();
    let id = rig.cluster.snapshot().volumes["v1"].clone();
    rig.shelf.fail_next("delete_volume");
    assert!(rig.a.delete_volume("v1").await.is_err());
    // The record is back with the same identity.
    assert_eq!(rig.cluster.snapshot().volumes["v1"], id);
}

#[tokio::test]
async fn ownership_fails_closed() {
    let rig = Rig::with_volume(3).await;
    // B cannot import A's pool.
    let e = rpc(rig.b.import_pool("p").await);
    assert_eq!(e.kind(), Some(ErrorCode::NotOwner), "{e}");
    assert!(!rig.shelf.is_active("B", "p"));
    // B's takeover with a stale or future epoch is refused.
    for epoch in [0, 2] {
        let e = rpc(rig.b.takeover_pool("p", epoch).await);
        assert_eq!(e.kind(), Some(ErrorCode::InvalidParams), "{e}");
        assert_eq!(e.field(), Some("epoch"));
    }
    assert!(!rig.shelf.is_active("B", "p"));
    // Heartbeat fences A and bumps the epoch: B takes over.
    let epoch = rig.cluster.bump_epoch();
    let r = rig.b.takeover_pool("p", epoch).await.unwrap().j();
    assert_eq!(r["pool"]["system_id"], "B");
    assert_eq!(r["pool"]["active_here"], true);
    assert_eq!(r["pool"]["owner"], "B");
    assert!(rig.shelf.is_active("B", "p"));
    let again = rig.b.takeover_pool("p", epoch).await.unwrap().j();
    assert_eq!(again["outcome"], "unchanged");
    // A can no longer activate it: recorded for B, system_id B.
    let e = rpc(rig.a.import_pool("p").await);
    assert_eq!(e.kind(), Some(ErrorCode::NotOwner));
    let e = rig.shelf.backend("A").activate_pool("p").await.unwrap_err();
    assert!(e.to_string().contains("Cannot access VG"), "{e}");
    // A pool that looks active on the partner is never imported.
    rig.cluster
        .set_partner(Some(vec![]), Some(vec!["p".into()]));
    rig.b.export_pool("p", None).await.unwrap();
    let e = rpc(rig.b.import_pool("p").await);
    assert_eq!(e.kind(), Some(ErrorCode::Conflict), "{e}");
    assert!(
        e.message.contains("active on controller A"),
        "{}",
        e.message
    );
    // Partner unreachable: our own pool imports.
    rig.cluster.set_partner(None, None);
    let r = rig.b.import_pool("p").await.unwrap().j();
    assert_eq!(r["outcome"], "changed");
}

#[tokio::test]
async fn export_verifies_device_mapper_and_giveback_hands_over() {
    let rig = Rig::with_volume(2).await;
    let r = rig.a.export_pool("p", None).await.unwrap().j();
    assert_eq!(r["dm_clean"], true);
    assert!(!rig.shelf.is_active("A", "p"));
    let r = rig.a.export_pool("p", None).await.unwrap().j();
    assert_eq!(r["outcome"], "unchanged");
    // Exported by request, the pool stays down although the desired state
    // names A as owner: the reconciler does not undo an export.
    rig.a.reconcile().await.unwrap();
    assert!(!rig.shelf.is_active("A", "p"));
    // Handing to B needs B recorded as owner first.
    let e = rpc(rig.a.export_pool("p", Some("B")).await);
    assert_eq!(e.kind(), Some(ErrorCode::Conflict));
    assert_eq!(e.field(), Some("to"));
    rig.a.import_pool("p").await.unwrap();
    assert!(rig.shelf.is_active("A", "p"));
    // Released by the import: a reboot's inactive pool comes back.
    rig.shelf.reboot("A");
    rig.a.reconcile().await.unwrap();
    assert!(rig.shelf.is_active("A", "p"));
    rig.record_owner("p", "B").await;
    rig.a.export_pool("p", Some("B")).await.unwrap();
    let r = rig.b.import_pool("p").await.unwrap().j();
    assert_eq!(r["pool"]["system_id"], "B");
    assert_eq!(r["pool"]["active_here"], true);
}

#[tokio::test]
async fn full_pools_refuse_new_volumes_and_alert() {
    let rig = Rig::with_volume(2).await;
    rig.shelf.set_usage("p", 85.0, 10.0);
    rig.a.reconcile().await.unwrap();
    rig.a.create_volume(vol("p", "v2", "1GiB")).await.unwrap();
    rig.shelf.set_usage("p", 96.0, 10.0);
    let before = Before::take(&rig).await;
    before
        .refused(
            rig.a.create_volume(vol("p", "v3", "1GiB")).await,
            ErrorCode::Conflict,
            "pool",
        )
        .await;
    before
        .refused(
            rig.a.snapshot("v1", "s1", true, "snapshot").await,
            ErrorCode::Conflict,
            "pool",
        )
        .await;
    rig.a.reconcile().await.unwrap();
    let alerts: Vec<Value> = rig.events("alert");
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts[0]["severity"], "warning");
    assert_eq!(alerts[1]["severity"], "critical");
    // The same state does not alert again.
    rig.a.reconcile().await.unwrap();
    assert_eq!(
        rig.cluster
            .events()
            .iter()
            .filter(|(t, _)| t == "alert")
            .count(),
        2
    );
    let st = rig.a.pool_status(Some("p")).await.unwrap().j();
    assert_eq!(st["pools"][0]["usage"]["data"], "full");
}

#[tokio::test]
async fn degraded_raid_rebuilds_onto_a_spare_with_progress() {
    let rig = rig(3).await;
    let mut req = pool("p", "mirror", &["shelf0", "shelf1"]);
    req.spares = vec!["shelf2".into()];
    rig.a.create_pool(req).await.unwrap();
    rig.a.create_volume(vol("p", "v1", "1GiB")).await.unwrap();
    rig.shelf.fail_disk("shelf1");
    let st = rig.a.pool_status(Some("p")).await.unwrap().j();
    assert_eq!(st["pools"][0]["raid"]["state"], "degraded");
    let r = rig.a.reconcile().await.unwrap().j();
    assert_eq!(r["repairs"][0]["ok"], true, "{r}");
    let ev = rig.cluster.events();
    assert!(ev
        .iter()
        .any(|(t, d)| t == "alert" && d["kind"] == "raid_degraded"));
    assert!(ev
        .iter()
        .any(|(t, d)| t == "pool.rebuild" && d["state"] == "running"));
    // Rebuild progress shows in the status and as events.
    rig.shelf.set_sync("p", 40.0);
    rig.a.reconcile().await.unwrap();
    let st = rig.a.pool_status(Some("p")).await.unwrap().j();
    assert_eq!(
        st["pools"][0]["raid"],
        json!({"state": "syncing", "percent": 40.0})
    );
    rig.shelf.set_sync("p", 100.0);
    rig.a.reconcile().await.unwrap();
    let progress: Vec<Value> = rig.events("pool.progress");
    assert!(progress.iter().any(|p| p["percent"] == 40.0));
    assert!(progress.iter().any(|p| p["done"] == true));
    let st = rig.a.pool_status(Some("p")).await.unwrap().j();
    assert_eq!(st["pools"][0]["raid"]["state"], "healthy");
}

#[tokio::test]
async fn reconciler_repairs_what_is_safe_and_reports_drift() {
    let rig = Rig::with_volume(2).await;
    rig.a.snapshot("v1", "s1", true, "snapshot").await.unwrap();
    let be = rig.shelf.backend("A");
    // Behind the service's back: a reboot, then s1's LV is gone and an
    // unknown LV appears.
    rig.shelf.reboot("A");
    be.activate_pool("p").await.unwrap();
    be.delete_volume("p", "s1").await.unwrap();
    be.create_volume("p", "stray", 4 << 20).await.unwrap();
    be.deactivate_pool("p").await.unwrap();
    let r = rig.a.reconcile().await.unwrap().j();
    assert!(
        r["steps"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["ok"] == true),
        "{r}"
    );
    assert!(rig.shelf.is_active("A", "p"));
    let drift: Vec<Value> = rig
        .cluster
        .events()
        .into_iter()
        .filter(|(t, _)| t == "pool.drift")
        .map(|(_, d)| d["drift"]["drift"].clone())
        .collect();
    assert_eq!(drift, [json!("snapshot_missing"), json!("unknown_volume")]);
    // Restart-safe: a second pass changes nothing and repeats no event.
    let n = rig.cluster.events().len();
    let r = rig.a.reconcile().await.unwrap().j();
    assert!(r["steps"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["step"]["step"] == "drift"));
    assert_eq!(rig.cluster.events().len(), n);
    // B sees the pool, not recorded for it: nothing happens there.
    let r = rig.b.reconcile().await.unwrap().j();
    assert!(r["steps"].as_array().unwrap().is_empty(), "{r}");
}

#[tokio::test]
async fn layouts_table() {
    let v = M::layouts(4).j();
    let rows = v["layouts"].as_array().unwrap();
    let raid5 = rows.iter().find(|r| r["layout"] == "raid5").unwrap();
    assert_eq!(raid5["capacity_fraction"], 0.75);
    assert_eq!(raid5["fault_tolerance"], 1);
    let raid6 = rows.iter().find(|r| r["layout"] == "raid6").unwrap();
    assert_eq!(raid6["possible"], false);
}

#[tokio::test]
async fn delete_pool_needs_it_empty() {
    let rig = Rig::with_volume(2).await;
    let before = Before::take(&rig).await;
    before
        .refused(rig.a.delete_pool("p").await, ErrorCode::Conflict, "name")
        .await;
    before
        .refused(rig.b.delete_pool("p").await, ErrorCode::NotOwner, "name")
        .await;
    rig.a.delete_volume("v1").await.unwrap();
    let r = rig.a.delete_pool("p").await.unwrap().j();
    assert_eq!(r["outcome"], "changed");
    assert!(rig.cluster.snapshot().pools.is_empty());
    assert!(rig.shelf.backend("A").observe().await.unwrap().is_empty());
    // The disk is free again.
    rig.a
        .create_pool(pool("q", "linear", &["shelf0"]))
        .await
        .unwrap();
    let r = rig.a.delete_pool("nosuch").await.unwrap().j();
    assert_eq!(r["outcome"], "unchanged");
}

#[tokio::test]
async fn per_volume_devices_follow_ownership_on_both_controllers() {
    use duplex_pool_manager::core::dmvol::Table;
    let rig = Rig::with_pool(2).await;
    let v = rig
        .a
        .create_volume(vol("p", "v1", "64MiB"))
        .await
        .unwrap()
        .j();
    let serial = v["volume"]["serial"].as_str().unwrap().to_string();
    let snap = rig
        .a
        .snapshot("v1", "s1", true, "snapshot")
        .await
        .unwrap()
        .j();
    let sserial = snap["volume"]["serial"].as_str().unwrap().to_string();
    // A (owner): a queueing path over the LV; the read-only snapshot
    // read-only.
    let a = rig.shelf.dm_table("A", &serial).unwrap();
    assert!(
        matches!(
            a.table,
            Table::Multipath {
                sectors: 131_072,
                ..
            }
        ),
        "{a:?}"
    );
    let s = rig.shelf.dm_table("A", &sserial).unwrap();
    assert!(s.read_only && s.table.maps_lv(), "{s:?}");
    // B (partner): nothing until its reconciler runs, then error tables of
    // the volume's size; running it again changes nothing.
    assert!(rig.shelf.dm_table("B", &serial).is_none());
    let r = rig.b.reconcile().await.unwrap().j();
    assert_eq!(r["dm"]["created"], 2, "{r}");
    assert_eq!(
        rig.shelf.dm_table("B", &serial).unwrap().table,
        Table::Error { sectors: 131_072 }
    );
    let r = rig.b.reconcile().await.unwrap().j();
    assert_eq!(r["dm"]["created"], 0, "{r}");
    assert_eq!(r["dm"]["swapped"], 0, "{r}");
    // targets holds both paths open from here on.
    for c in ["A", "B"] {
        rig.shelf.hold_dm(c, &serial, true);
    }
    // A grows the volume: A's table follows the LV, B's error
    // table follows the record.
    rig.a.resize_volume("v1", "128MiB").await.unwrap();
    assert_eq!(
        rig.shelf.dm_table("A", &serial).unwrap().table.sectors(),
        262_144
    );
    rig.b.reconcile().await.unwrap();
    assert_eq!(
        rig.shelf.dm_table("B", &serial).unwrap().table,
        Table::Error { sectors: 262_144 }
    );
    // Failover: A exports (its devices swap to error before the LVs are
    // deactivated, or the simulator refuses as the kernel would), B takes
    // over and its devices map the LVs, still open.
    let epoch = rig.cluster.bump_epoch();
    let r = rig.a.export_pool("p", None).await.unwrap().j();
    assert_eq!(r["dm_clean"], true, "{r}");
    assert!(!rig.shelf.dm_table("A", &serial).unwrap().table.maps_lv());
    let t = rig.b.takeover_pool("p", epoch).await.unwrap().j();
    assert_eq!(t["dm"]["swapped"], 2, "{t}");
    assert!(t["timings_ms"]["dm_switch"].is_u64(), "{t}");
    assert!(matches!(
        rig.shelf.dm_table("B", &serial).unwrap().table,
        Table::Multipath {
            sectors: 262_144,
            ..
        }
    ));
    // An I/O error fails B's path to the LV: B, the owner, reinstates it
    // (its queued I/O resumes). A's error table has no path to fail.
    let long = Duration::from_secs(3600);
    assert!(rig.b.reinstate_paths(long).await.unwrap().is_empty());
    assert!(rig.shelf.fail_path("B", &serial));
    assert!(!rig.shelf.fail_path("A", &serial));
    assert_eq!(
        rig.b.reinstate_paths(long).await.unwrap(),
        vec![format!("dxvol-{serial}")]
    );
    assert!(!rig.shelf.path_failed("B", &serial));
    let failing = || {
        rig.cluster
            .events()
            .iter()
            .filter(|(t, e)| t == "alert" && e["kind"] == "volume_io_failing")
            .count()
    };
    assert_eq!(failing(), 0);
    // Failed at consecutive checks past the alert threshold: hosts wait on
    // a failing LV, and a critical alert says so, once.
    for _ in 0..2 {
        assert!(rig.shelf.fail_path("B", &serial));
        rig.b.reinstate_paths(Duration::ZERO).await.unwrap();
    }
    assert_eq!(failing(), 1);
    // B cannot deactivate the pool underneath a device that maps its LV.
    let e = rig
        .shelf
        .backend("B")
        .deactivate_pool("p")
        .await
        .unwrap_err();
    assert!(e.to_string().contains("in use"), "{e}");
    // Giveback to A (A home): B swaps to error and hands over, A imports.
    rig.record_owner("p", "A").await;
    rig.b.export_pool("p", Some("A")).await.unwrap();
    assert!(!rig.shelf.dm_table("B", &serial).unwrap().table.maps_lv());
    rig.a.import_pool("p").await.unwrap();
    assert!(rig.shelf.dm_table("A", &serial).unwrap().table.maps_lv());
    // Delete: the snapshot first, then the volume while A's device is
    // still held open: its LV is released (error table), the device stays
    // until the holder lets go, then the reconciler removes it.
    rig.a.delete_volume("s1").await.unwrap();
    assert!(rig.shelf.dm_table("A", &sserial).is_none());
    rig.a.delete_volume("v1").await.unwrap();
    assert_eq!(
        rig.shelf.dm_table("A", &serial).unwrap().table,
        Table::Error { sectors: 262_144 }
    );
    rig.shelf.hold_dm("A", &serial, false);
    rig.a.reconcile().await.unwrap();
    assert!(rig.shelf.dm_table("A", &serial).is_none());
    // On the partner, the reconciler removes devices of volumes no longer
    // recorded once they are closed.
    rig.b.reconcile().await.unwrap();
    assert!(rig.shelf.dm_table("B", &sserial).is_none());
    assert!(rig.shelf.dm_table("B", &serial).is_some());
    rig.shelf.hold_dm("B", &serial, false);
    rig.b.reconcile().await.unwrap();
    assert!(rig.shelf.dm_table("B", &serial).is_none());
}

#[tokio::test]
async fn copies_and_read_only_are_recorded() {
    let rig = rig(4).await;
    let mut p = pool("m", "mirror", &["shelf0", "shelf1", "shelf2"]);
    p.copies = Some(3);
    rig.a.create_pool(p.clone()).await.unwrap();
    assert_eq!(rig.cluster.snapshot().pools["m"].copies, Some(3));
    // The same create again is unchanged; another copy count is not.
    assert_eq!(
        rig.a.create_pool(p.clone()).await.unwrap().j()["outcome"],
        "unchanged"
    );
    p.copies = Some(2);
    let e = rpc(rig.a.create_pool(p).await);
    assert_eq!(e.kind(), Some(ErrorCode::Conflict), "{e}");
    rig.a
        .create_pool(pool("l", "linear", &["shelf3"]))
        .await
        .unwrap();
    assert_eq!(rig.cluster.snapshot().pools["l"].copies, None);
    rig.a.create_volume(vol("m", "v", "64MiB")).await.unwrap();
    rig.a.snapshot("v", "ro", true, "snapshot").await.unwrap();
    rig.a.snapshot("v", "rw", false, "snapshot").await.unwrap();
    rig.a.snapshot("ro", "cl", false, "clone").await.unwrap();
    let c = rig.cluster.snapshot();
    assert!(!c.volumes["v"].read_only);
    assert!(c.volumes["ro"].read_only);
    assert!(!c.volumes["rw"].read_only);
    assert!(!c.volumes["cl"].read_only);
}

/// A takeover right after heartbeat recorded the new owner, while the
/// reconcile that record's `config.changed` started is still reading
/// (slow reports, as LVM's on a loaded controller), with the reconcile
/// `background` (the reconciler's own) or not (`pool.reconcile`).
/// Returns the reconcile's result.
async fn reconcile_beside_a_takeover(background: bool) -> Value {
    let rig = Rig::with_volume(2).await;
    rig.record_owner("p", "B").await;
    let epoch = rig.cluster.snapshot().pools["p"].epoch;
    rig.shelf
        .set_report_delay(std::time::Duration::from_secs(1));
    let (rec, took) = tokio::join!(
        async {
            if background {
                rig.b.reconcile_in_background().await
            } else {
                rig.b.reconcile().await
            }
        },
        async {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            rig.b.takeover_pool("p", epoch).await
        }
    );
    took.unwrap();
    assert!(rig.shelf.is_active("B", "p"));
    rec.unwrap().j()
}

#[tokio::test]
async fn a_background_reconcile_gives_way_to_a_takeover_and_runs_after_it() {
    // pool.reconcile holds the lock through its reports: it read the pool
    // before the takeover (recorded for B, system_id still A).
    let asked = reconcile_beside_a_takeover(false).await;
    assert!(
        asked.to_string().contains("not_our_system_id"),
        "control: {asked}"
    );
    // The reconciler's own pass gives the lock up while it reads, and its
    // pass runs after the takeover: it sees B's pool, nothing to report.
    let own = reconcile_beside_a_takeover(true).await;
    assert!(!own.to_string().contains("not_our_system_id"), "{own}");
}

#[tokio::test]
async fn active_here_but_recorded_for_the_partner_is_critical_only_when_it_stays() {
    let rig = Rig::with_pool(2).await;
    let drift = |rig: &Rig| -> Vec<Value> {
        rig.cluster
            .events()
            .into_iter()
            .filter(|(t, _)| t == "pool.drift")
            .map(|(_, d)| d)
            .collect()
    };
    // A planned move records B as the owner before A exports: a pass in
    // that moment reports nothing.
    rig.record_owner("p", "B").await;
    rig.a.reconcile().await.unwrap();
    assert!(drift(&rig).is_empty(), "{:?}", drift(&rig));
    // The next pass still sees it: a critical drift, reported once.
    rig.a.reconcile().await.unwrap();
    rig.a.reconcile().await.unwrap();
    let d = drift(&rig);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0]["severity"], "critical", "{d:?}");
    assert_eq!(d[0]["drift"]["drift"], "active_but_not_owner", "{d:?}");
    // Never repaired behind the administrator's back.
    assert!(rig.shelf.is_active("A", "p"));
}
