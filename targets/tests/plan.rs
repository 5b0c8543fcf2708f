//! `plan(desired, observed)` for every kind of change, applied on the
//! simulated configfs (which refuses what the kernel refuses), and checked
//! to be idempotent: a second plan after applying is always empty.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use duplex_api::model::Config;
use duplex_targets::backend::sim::SimBackend;
use duplex_targets::backend::{observe, TargetBackend};
use duplex_targets::core::desired::{build, portals, with_pool_state, Desired, Local};
use duplex_targets::core::flip::{flip_steps, members, pool_ana_groups};
use duplex_targets::core::model::{path, AccessState};
use duplex_targets::core::plan::{plan, Step};
use serde_json::{json, Value};
use std::collections::BTreeMap;

const IQN_H1: &str = "iqn.1994-05.com.redhat:h1";
const IQN_H2: &str = "iqn.1994-05.com.redhat:h2";
const NQN_H1: &str = "nqn.2014-08.org.nvmexpress:uuid:11111111-1111-1111-1111-111111111111";
const TGT: &str = "iqn.2026-11.io.duplex:5e1f0c1e.g1";
const SUB: &str = "nqn.2026-11.io.duplex:5e1f0c1e.g1";
/// The per-volume devices of v1 and v2 (by serial) and of a third volume.
const DEV1: &str = "/dev/mapper/dxvol-5e1f0c1ed0c14a5b9f3e2d1c0b0a0901";
const DEV2: &str = "/dev/mapper/dxvol-5e1f0c1ed0c14a5b9f3e2d1c0b0a0902";
const DEV3: &str = "/dev/mapper/dxvol-5e1f0c1ed0c14a5b9f3e2d1c0b0a0903";

/// A controller in full (the model refuses a partial one).
fn ctl(id: &str, portals: &[&str]) -> Value {
    let n = if id == "A" { 1 } else { 2 };
    json!({"id": id, "name": format!("controller {id}"), "interconnect": [format!("10.51.0.{n}/24")],
           "management": format!("192.0.2.{n}/24"), "portals": portals})
}

/// A pool owned by (and at home on) `owner`.
fn pool(name: &str, owner: &str) -> Value {
    json!({"name": name, "tier": "regular", "layout": "linear", "home": owner, "owner": owner,
           "epoch": 1, "disks": []})
}

fn base() -> Value {
    json!({
        "cluster": {"id": "5e1f0c1e-0000-4000-8000-000000000001", "epoch": 1, "secret_ref": "x"},
        "controller": [ctl("A", &[]), ctl("B", &[])],
        "pool": [pool("p1", "A")],
        "volume": [
            {"name": "v1", "pool": "p1", "size": "1GiB", "serial": "5e1f0c1ed0c14a5b9f3e2d1c0b0a0901",
             "wwn": "6001405e1f0c1ed0c14a5b9f3e2d1c0b", "nguid": "3c8d2f645b0e4a7d9f216d1e0b7a4c11",
             "uuid": "3c8d2f64-5b0e-4a7d-9f21-6d1e0b7a4c11"},
            {"name": "v2", "pool": "p1", "size": "1GiB", "serial": "5e1f0c1ed0c14a5b9f3e2d1c0b0a0902",
             "wwn": "6001405e1f0c1ed0c14a5b9f3e2d1c0c", "nguid": "3c8d2f645b0e4a7d9f216d1e0b7a4c12",
             "uuid": "3c8d2f64-5b0e-4a7d-9f21-6d1e0b7a4c12"}
        ],
        "export": [
            {"name": "e1", "volume": "v1", "protocol": "iscsi", "lun": 0, "host_group": "g1"},
            {"name": "e2", "volume": "v2", "protocol": "nvme", "nsid": 1, "host_group": "g1"}
        ],
        "host": [
            {"name": "h1", "iqns": [IQN_H1], "nqns": [NQN_H1]},
            {"name": "h2", "iqns": [IQN_H2], "nqns": []}
        ],
        "host_group": [{"name": "g1", "hosts": ["h1"]}]
    })
}

fn cfg(v: &Value) -> Config {
    Config::from_json(v).unwrap()
}

fn sim() -> SimBackend {
    let mut s = SimBackend::new();
    for d in [DEV1, DEV2, DEV3] {
        s.add_device(d);
    }
    s
}

/// The simulated controller A with the base view already applied: where
/// most tests start before they change something.
fn reconciled() -> SimBackend {
    let mut s = sim();
    reconcile(&mut s, &base(), "A");
    s
}

/// Controller A reconciled to the base view and then to the base view as
/// `edit` changes it: the backend, the changed view and the steps of the
/// second reconcile.
fn reconciled_then(edit: impl FnOnce(&mut Value)) -> (SimBackend, Value, Vec<Step>) {
    let mut s = reconciled();
    let mut v = base();
    edit(&mut v);
    let steps = reconcile(&mut s, &v, "A");
    (s, v, steps)
}

fn desired(sim: &SimBackend, v: &Value, me: &str) -> Desired {
    let local = Local::new(me);
    let observed = observe(sim, &local.scope()).unwrap();
    build(
        &cfg(v),
        &local,
        &|d| sim.device_state(d),
        &BTreeMap::new(),
        &observed.tree,
    )
}

/// Observes, plans, applies, and checks that a second plan is empty.
fn reconcile(sim: &mut SimBackend, v: &Value, me: &str) -> Vec<Step> {
    let d = desired(sim, v, me);
    apply_desired(sim, &d, me)
}

fn apply_desired(sim: &mut SimBackend, d: &Desired, me: &str) -> Vec<Step> {
    let scope = Local::new(me).scope();
    let observed = observe(sim, &scope).unwrap();
    let steps = plan(&d.tree, &observed.tree);
    sim.apply(&steps)
        .unwrap_or_else(|e| panic!("{}", duplex_targets::error::chain(&e)));
    let again = observe(sim, &scope).unwrap();
    let second = plan(&d.tree, &again.tree);
    assert!(second.is_empty(), "not idempotent: {second:#?}");
    steps
}

fn read(sim: &SimBackend, p: &str) -> String {
    sim.read(p).unwrap().trim().to_string()
}

/// A volume's state in A's port group, as configfs reads it.
fn alua(sim: &SimBackend, vol: &str) -> String {
    read(
        sim,
        &format!("{}/alua_access_state", path::tg_pt_gp(vol, "dx_a")),
    )
}

/// An ANA group's state on a port.
fn ana(sim: &SimBackend, port: u16, grp: u32) -> String {
    read(sim, &format!("{}/ana_state", path::ana_group(port, grp)))
}

fn has(sim: &SimBackend, p: &str) -> bool {
    sim.paths().iter().any(|x| x == p)
}

#[test]
fn create_from_nothing_builds_both_protocols() {
    let mut s = sim();
    let steps = reconcile(&mut s, &base(), "A");
    assert!(!steps.is_empty());
    let bs = path::backstore("v1");
    assert_eq!(read(&s, &format!("{bs}/enable")), "1");
    assert_eq!(read(&s, &format!("{bs}/udev_path")), DEV1);
    assert!(read(&s, &format!("{bs}/wwn/vpd_unit_serial"))
        .ends_with("5e1f0c1ed0c14a5b9f3e2d1c0b0a0901"));
    let gp = path::tg_pt_gp("v1", "dx_a");
    assert_eq!(read(&s, &format!("{gp}/tg_pt_gp_id")), "16");
    assert_eq!(read(&s, &format!("{gp}/alua_access_type")), "Implicit");
    assert_eq!(read(&s, &format!("{gp}/alua_access_state")), "0");
    let tpg = path::tpg(TGT, 1);
    assert_eq!(read(&s, &format!("{tpg}/enable")), "1");
    assert_eq!(read(&s, &format!("{tpg}/attrib/generate_node_acls")), "0");
    assert!(has(&s, &path::portal(TGT, 1, "0.0.0.0:3260")));
    assert!(has(&s, &path::lun_link(TGT, 1, 0, "v1")));
    assert!(read(&s, &format!("{}/alua_tg_pt_gp", path::lun(TGT, 1, 0))).contains("dx_a"));
    assert!(has(&s, &path::mapped_lun_link(TGT, 1, IQN_H1, 0)));
    // NVMe: deny by default, the one allowed host, namespace identity.
    let sub = path::subsystem(SUB);
    assert_eq!(read(&s, &format!("{sub}/attr_allow_any_host")), "0");
    assert_eq!(read(&s, &format!("{sub}/attr_cntlid_min")), "1");
    assert_eq!(read(&s, &format!("{sub}/attr_cntlid_max")), "32767");
    assert!(has(&s, &path::allowed_host(SUB, NQN_H1)));
    let ns = path::namespace(SUB, 1);
    assert_eq!(read(&s, &format!("{ns}/enable")), "1");
    assert_eq!(
        read(&s, &format!("{ns}/device_uuid")),
        "3c8d2f64-5b0e-4a7d-9f21-6d1e0b7a4c12"
    );
    assert_eq!(
        read(&s, &format!("{ns}/device_nguid")),
        "3c8d2f64-5b0e-4a7d-9f21-6d1e0b7a4c12"
    );
    assert_eq!(read(&s, &format!("{ns}/ana_grpid")), "2");
    assert!(has(&s, &path::port_subsystem(1000, SUB)));
    assert_eq!(ana(&s, 1000, 2), "optimized");
    assert_eq!(read(&s, "nvmet/ports/1000/addr_trsvcid"), "4420");
}

#[test]
fn identity_is_the_same_on_both_controllers_and_groups_differ() {
    let (mut a, mut b) = (sim(), sim());
    reconcile(&mut a, &base(), "A");
    reconcile(&mut b, &base(), "B");
    let bs = path::backstore("v1");
    let serial = format!("{bs}/wwn/vpd_unit_serial");
    assert_eq!(read(&a, &serial), read(&b, &serial));
    let ns = path::namespace(SUB, 1);
    for f in ["device_uuid", "device_nguid", "device_path"] {
        assert_eq!(
            read(&a, &format!("{ns}/{f}")),
            read(&b, &format!("{ns}/{f}"))
        );
    }
    assert_eq!(
        read(&a, &format!("{}/attr_serial", path::subsystem(SUB))),
        read(&b, &format!("{}/attr_serial", path::subsystem(SUB)))
    );
    // Distinct ALUA groups and TPG tags; A/O on the owner, Standby on the partner.
    assert_eq!(
        read(&a, &format!("{}/tg_pt_gp_id", path::tg_pt_gp("v1", "dx_a"))),
        "16"
    );
    assert_eq!(
        read(&b, &format!("{}/tg_pt_gp_id", path::tg_pt_gp("v1", "dx_b"))),
        "17"
    );
    assert_eq!(
        read(
            &b,
            &format!("{}/alua_access_state", path::tg_pt_gp("v1", "dx_b"))
        ),
        "2"
    );
    assert!(has(&a, &path::tpg(TGT, 1)) && has(&b, &path::tpg(TGT, 2)));
    // Disjoint controller ids; the partner's ANA group is inaccessible.
    assert_eq!(
        read(&b, &format!("{}/attr_cntlid_min", path::subsystem(SUB))),
        "32768"
    );
    assert_eq!(ana(&b, 1001, 2), "inaccessible");
}

#[test]
fn an_ownership_change_is_only_state_writes() {
    let (_, _, steps) = reconciled_then(|v| v["pool"][0]["owner"] = json!("B"));
    assert_eq!(
        steps,
        vec![
            Step::Write {
                path: format!("{}/alua_access_state", path::tg_pt_gp("v1", "dx_a")),
                value: "2".into()
            },
            Step::Write {
                path: format!("{}/ana_state", path::ana_group(1000, 2)),
                value: "inaccessible".into()
            },
        ]
    );
}

#[test]
fn a_pool_flip_writes_its_lu_group_once_and_one_ana_group_and_can_transition() {
    let mut v = base();
    v["export"] = json!([
        {"name": "e1", "volume": "v1", "protocol": "iscsi", "lun": 0, "host_group": "g1"},
        {"name": "e2", "volume": "v2", "protocol": "iscsi", "lun": 1, "host_group": "g1"},
        {"name": "e3", "volume": "v1", "protocol": "nvme", "nsid": 1, "host_group": "g1"},
        {"name": "e4", "volume": "v2", "protocol": "nvme", "nsid": 2, "host_group": "g1"}
    ]);
    let mut s = sim();
    let d = desired(&s, &v, "A");
    apply_desired(&mut s, &d, "A");
    let t = with_pool_state(&d, "p1", AccessState::Transitioning);
    let steps = apply_desired(&mut s, &t, "A");
    // One ALUA write: LIO carries it to every member of the pool's LU group.
    assert_eq!(steps.len(), 2, "{steps:#?}");
    for v in ["v1", "v2"] {
        assert_eq!(alua(&s, v), "15");
    }
    assert_eq!(ana(&s, 1000, 2), "change");
    let sb = with_pool_state(&d, "p1", AccessState::Standby);
    let steps = apply_desired(&mut s, &sb, "A");
    assert_eq!(steps.len(), 2);
    assert_eq!(ana(&s, 1000, 2), "inaccessible");
}

#[test]
fn teardown_removes_everything_of_ours_in_an_order_the_kernel_accepts() {
    let (s, _, steps) = reconciled_then(|v| v["export"] = json!([]));
    assert!(
        matches!(steps.first(), Some(Step::Unlink { .. })),
        "exposure goes first: {steps:#?}"
    );
    for p in s.paths() {
        assert!(!p.contains("io.duplex"), "left behind: {p}");
        assert!(!p.starts_with(&path::backstore("v1")), "left behind: {p}");
        assert!(!p.starts_with("nvmet/ports/1000"), "left behind: {p}");
    }
}

#[test]
fn acls_follow_the_host_group_and_nobody_else_gets_in() {
    let mut s = reconciled();
    assert!(
        !has(&s, &path::acl(TGT, 1, IQN_H2)),
        "h2 is not in the group"
    );
    let mut v = base();
    v["host_group"][0]["hosts"] = json!(["h1", "h2"]);
    let steps = reconcile(&mut s, &v, "A");
    assert_eq!(
        steps,
        vec![
            Step::Mkdir {
                path: path::acl(TGT, 1, IQN_H2)
            },
            Step::Mkdir {
                path: path::mapped_lun(TGT, 1, IQN_H2, 0)
            },
            Step::Symlink {
                link: path::mapped_lun_link(TGT, 1, IQN_H2, 0),
                target: path::lun(TGT, 1, 0)
            },
        ]
    );
    v["host_group"][0]["hosts"] = json!(["h2"]);
    let steps = reconcile(&mut s, &v, "A");
    assert!(!has(&s, &path::acl(TGT, 1, IQN_H1)));
    assert!(!has(&s, &path::allowed_host(SUB, NQN_H1)));
    assert!(
        !has(&s, &path::host(NQN_H1)),
        "unused host entries go: {steps:#?}"
    );
}

#[test]
fn a_read_only_volume_is_write_protected_for_every_initiator_over_iscsi() {
    let mut s = sim();
    let mut v = base();
    v["host_group"][0]["hosts"] = json!(["h1", "h2"]);
    v["volume"][0]["read_only"] = json!(true);
    reconcile(&mut s, &v, "A");
    let wp = |s: &SimBackend, iqn: &str, mlun: u32| {
        read(
            s,
            &format!("{}/write_protect", path::mapped_lun(TGT, 1, iqn, mlun)),
        )
    };
    assert_eq!(
        (wp(&s, IQN_H1, 0), wp(&s, IQN_H2, 0)),
        ("1".into(), "1".into())
    );
    // A new LUN number is a new link, protected again after it.
    v["export"][0]["lun"] = json!(4);
    let steps = reconcile(&mut s, &v, "A");
    assert!(steps.contains(&Step::Write {
        path: format!("{}/write_protect", path::mapped_lun(TGT, 1, IQN_H1, 4)),
        value: "1".into()
    }));
    assert_eq!(wp(&s, IQN_H1, 4), "1");
    // Writable again: one write per initiator, nothing rebuilt.
    v["volume"][0]["read_only"] = json!(false);
    let steps = reconcile(&mut s, &v, "A");
    assert_eq!(steps.len(), 2, "{steps:#?}");
    assert_eq!(
        (wp(&s, IQN_H1, 4), wp(&s, IQN_H2, 4)),
        ("0".into(), "0".into())
    );
    // nvmet has no read-only namespace on 6.1: exported, and said so.
    v["volume"][1]["read_only"] = json!(true);
    let d = desired(&s, &v, "A");
    assert!(d.tree.subsystems[SUB].namespaces.contains_key(&1));
    assert!(
        d.pending
            .iter()
            .any(|p| p.contains("e2") && p.contains("read-only")),
        "{:?}",
        d.pending
    );
}

#[test]
fn the_sim_keeps_write_protect_on_the_link_only() {
    let mut s = reconciled();
    let m = path::mapped_lun(TGT, 1, IQN_H1, 0);
    s.unlink(&path::mapped_lun_link(TGT, 1, IQN_H1, 0)).unwrap();
    s.write(&format!("{m}/write_protect"), "1").unwrap();
    assert_eq!(
        read(&s, &format!("{m}/write_protect")),
        "",
        "no entry, no flag"
    );
    assert!(s.write(&format!("{m}/write_protect"), "2").is_err());
    s.symlink(
        &path::mapped_lun_link(TGT, 1, IQN_H1, 0),
        &path::lun(TGT, 1, 0),
    )
    .unwrap();
    assert_eq!(
        read(&s, &format!("{m}/write_protect")),
        "0",
        "lost before the link"
    );
}

/// Steps as they are shown (logs, answers) never carry `secret`.
fn assert_not_shown(steps: &[Step], secret: &str) {
    let shown: Vec<String> = steps.iter().map(ToString::to_string).collect();
    assert!(
        shown.iter().all(|l| !l.contains(secret)),
        "a secret leaks: {shown:?}"
    );
}

#[test]
fn chap_one_way_then_mutual_then_off() {
    let (mut s, mut v, steps) = reconciled_then(|v| {
        v["host"][0]["chap"] = json!({"user": "h1", "secret": "s3cret-s3cret"})
    });
    let acl = path::acl(TGT, 1, IQN_H1);
    assert_eq!(read(&s, &format!("{acl}/auth/userid")), "h1");
    assert_eq!(read(&s, &format!("{acl}/auth/password")), "s3cret-s3cret");
    assert_eq!(
        read(&s, &format!("{}/attrib/authentication", path::tpg(TGT, 1))),
        "1"
    );
    assert_not_shown(&steps, "s3cret");
    v["host"][0]["chap"] = json!({"user": "h1", "secret": "s3cret-s3cret", "mutual_user": "tgt", "mutual_secret": "other-secret"});
    let steps = reconcile(&mut s, &v, "A");
    assert_eq!(steps.len(), 2);
    assert_eq!(read(&s, &format!("{acl}/auth/userid_mutual")), "tgt");
    assert_eq!(
        read(&s, &format!("{acl}/auth/password_mutual")),
        "other-secret"
    );
    assert_not_shown(&steps, "other-secret");
    // A new target secret alone is one write.
    v["host"][0]["chap"]["mutual_secret"] = json!("newer-secret");
    let steps = reconcile(&mut s, &v, "A");
    assert_eq!(
        steps.iter().map(Step::path).collect::<Vec<_>>(),
        vec![format!("{acl}/auth/password_mutual")]
    );
    let steps = reconcile(&mut s, &base(), "A");
    assert_eq!(
        steps.len(),
        5,
        "four credentials cleared and authentication off: {steps:#?}"
    );
    assert_eq!(
        read(&s, &format!("{}/attrib/authentication", path::tpg(TGT, 1))),
        "0"
    );
}

#[test]
fn lun_and_nsid_renumbering() {
    let mut s = reconciled();
    let mut v = base();
    v["export"][0]["lun"] = json!(5);
    v["export"][1]["nsid"] = json!(7);
    reconcile(&mut s, &v, "A");
    assert!(!has(&s, &path::lun(TGT, 1, 0)));
    assert!(has(&s, &path::lun_link(TGT, 1, 5, "v1")));
    assert!(has(&s, &path::mapped_lun_link(TGT, 1, IQN_H1, 5)));
    assert!(!has(&s, &path::mapped_lun(TGT, 1, IQN_H1, 0)));
    assert!(!has(&s, &path::namespace(SUB, 1)));
    assert_eq!(
        read(&s, &format!("{}/enable", path::namespace(SUB, 7))),
        "1"
    );
}

#[test]
fn a_missing_device_waits_and_is_built_when_it_appears() {
    let mut s = SimBackend::new();
    let d = desired(&s, &base(), "A");
    assert!(d.tree.backstores.is_empty() && d.tree.subsystems.is_empty());
    assert_eq!(d.pending.len(), 2, "{:?}", d.pending);
    apply_desired(&mut s, &d, "A");
    s.add_device(DEV1);
    s.add_device(DEV2);
    reconcile(&mut s, &base(), "A");
    assert!(has(&s, &path::lun_link(TGT, 1, 0, "v1")));
}

#[test]
fn drift_is_repaired_and_foreign_objects_are_left_alone() {
    let mut s = reconciled();
    // Someone ran targetcli: a foreign backstore and target, and damage.
    s.add_device("/dev/sdz");
    s.mkdir("target/core/iblock_0").unwrap();
    s.mkdir("target/core/iblock_0/other").unwrap();
    s.mkdir("target/iscsi/iqn.2003-01.org.linux-iscsi.x:sn.1")
        .unwrap();
    s.unlink(&path::mapped_lun_link(TGT, 1, IQN_H1, 0)).unwrap();
    s.rmdir(&path::mapped_lun(TGT, 1, IQN_H1, 0)).unwrap();
    s.write(
        &format!("{}/alua_access_state", path::tg_pt_gp("v1", "dx_a")),
        "2",
    )
    .unwrap();
    s.unlink(&path::port_subsystem(1000, SUB)).unwrap();
    s.write(&format!("{}/ana_grpid", path::namespace(SUB, 1)), "9")
        .unwrap();
    let observed = observe(&s, &Local::new("A").scope()).unwrap();
    assert_eq!(observed.foreign.len(), 2, "{:?}", observed.foreign);
    let steps = reconcile(&mut s, &base(), "A");
    // ANA group 9 is what the namespace has now: the stable choice keeps it.
    assert!(steps.len() >= 5, "{steps:#?}");
    assert!(has(&s, &path::mapped_lun_link(TGT, 1, IQN_H1, 0)));
    assert!(has(&s, &path::port_subsystem(1000, SUB)));
    assert!(has(&s, "target/core/iblock_0/other"));
    assert!(has(&s, "target/iscsi/iqn.2003-01.org.linux-iscsi.x:sn.1"));
}

#[test]
fn portal_change_readdresses_ports_and_portals() {
    let mut s = reconciled();
    let mut local = Local::new("A");
    local.portals = vec!["10.50.0.11".parse().unwrap()];
    let observed = observe(&s, &local.scope()).unwrap();
    let d = build(
        &cfg(&base()),
        &local,
        &|x| s.device_state(x),
        &BTreeMap::new(),
        &observed.tree,
    );
    let steps = plan(&d.tree, &observed.tree);
    s.apply(&steps).unwrap();
    assert!(has(&s, &path::portal(TGT, 1, "10.50.0.11:3260")));
    assert!(!has(&s, &path::portal(TGT, 1, "0.0.0.0:3260")));
    assert_eq!(read(&s, "nvmet/ports/1000/addr_traddr"), "10.50.0.11");
    assert!(has(&s, &path::port_subsystem(1000, SUB)));
}

#[test]
fn a_backstore_on_the_wrong_device_is_rebuilt_with_its_luns() {
    let mut s = reconciled();
    // Out of band: the backstore is replaced by one on another device.
    let acl_link = path::mapped_lun_link(TGT, 1, IQN_H1, 0);
    s.unlink(&acl_link).unwrap();
    s.rmdir(&path::mapped_lun(TGT, 1, IQN_H1, 0)).unwrap();
    s.unlink(&path::lun_link(TGT, 1, 0, "v1")).unwrap();
    s.rmdir(&path::lun(TGT, 1, 0)).unwrap();
    s.rmdir(&path::tg_pt_gp("v1", "dx_a")).unwrap();
    s.rmdir(&path::backstore("v1")).unwrap();
    let bs = path::backstore("v1");
    s.mkdir(&bs).unwrap();
    s.write(&format!("{bs}/control"), &format!("udev_path={DEV3}"))
        .unwrap();
    s.write(&format!("{bs}/udev_path"), DEV3).unwrap();
    s.write(&format!("{bs}/enable"), "1").unwrap();
    s.mkdir(&path::lun(TGT, 1, 0)).unwrap();
    s.symlink(&path::lun_link(TGT, 1, 0, "v1"), &bs).unwrap();
    reconcile(&mut s, &base(), "A");
    assert_eq!(read(&s, &format!("{bs}/udev_path")), DEV1);
    assert!(has(&s, &acl_link));
}

#[test]
fn the_sim_refuses_what_the_kernel_refuses() {
    let mut s = sim();
    let bs = path::backstore("v1");
    assert!(
        s.mkdir("target/core/blah").is_err(),
        "HBA names are <plugin>_<n>"
    );
    assert!(s.mkdir("target/iscsi/x").is_err(), "no fabric yet");
    assert!(s.mkdir("target/fc").is_err(), "no such fabric here");
    s.mkdir("target/iscsi").unwrap();
    assert!(s.mkdir("target/iscsi/not-an-iqn").is_err());
    s.mkdir(&path::hba()).unwrap();
    s.mkdir(&bs).unwrap();
    s.mkdir(&path::target(TGT)).unwrap();
    s.mkdir(&path::tpg(TGT, 1)).unwrap();
    s.mkdir(&path::lun(TGT, 1, 0)).unwrap();
    let e = s
        .symlink(&path::lun_link(TGT, 1, 0, "v1"), &bs)
        .unwrap_err();
    assert!(
        e.to_string().contains("ENODEV"),
        "a LUN needs an enabled backstore: {e}"
    );
    assert!(
        s.write(&format!("{bs}/enable"), "1").is_err(),
        "no device given yet"
    );
    s.write(&format!("{bs}/control"), &format!("udev_path={DEV1}"))
        .unwrap();
    s.write(&format!("{bs}/enable"), "1").unwrap();
    s.mkdir(&format!("{bs}/alua/g")).unwrap();
    assert!(
        s.write(&format!("{bs}/alua/g/alua_access_state"), "0")
            .is_err(),
        "no valid id yet"
    );
    s.symlink(&path::lun_link(TGT, 1, 0, "v1"), &bs).unwrap();
    assert!(
        s.write(&format!("{bs}/wwn/vpd_unit_serial"), "abc")
            .is_err(),
        "serial while exported"
    );
    let e = s.rmdir(&path::tpg(TGT, 1)).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::DirectoryNotEmpty);
    let e = s.rmdir(&bs).unwrap_err();
    assert_eq!(
        e.kind(),
        std::io::ErrorKind::DirectoryNotEmpty,
        "it has a port group"
    );
    s.rmdir(&format!("{bs}/alua/g")).unwrap();
    let e = s.rmdir(&bs).unwrap_err();
    assert_eq!(
        e.kind(),
        std::io::ErrorKind::ResourceBusy,
        "a LUN links to it"
    );
    assert!(
        s.rmdir(&format!("{bs}/alua")).is_err(),
        "default groups stay"
    );
    // nvmet
    let sub = path::subsystem(SUB);
    s.mkdir(&sub).unwrap();
    s.mkdir(&path::host(NQN_H1)).unwrap();
    s.write(&format!("{sub}/attr_allow_any_host"), "1").unwrap();
    assert!(s
        .symlink(&path::allowed_host(SUB, NQN_H1), &path::host(NQN_H1))
        .is_err());
    s.write(&format!("{sub}/attr_allow_any_host"), "0").unwrap();
    s.symlink(&path::allowed_host(SUB, NQN_H1), &path::host(NQN_H1))
        .unwrap();
    assert!(s.write(&format!("{sub}/attr_allow_any_host"), "1").is_err());
    let ns = path::namespace(SUB, 1);
    s.mkdir(&ns).unwrap();
    assert!(s.write(&format!("{ns}/enable"), "1").is_err(), "no device");
    s.write(&format!("{ns}/device_path"), DEV2).unwrap();
    s.write(&format!("{ns}/enable"), "1").unwrap();
    assert!(
        s.write(&format!("{ns}/device_path"), DEV1).is_err(),
        "EBUSY while enabled"
    );
    s.write(&format!("{ns}/ana_grpid"), "3").unwrap();
    assert!(s.write(&format!("{sub}/attr_cntlid_min"), "65535").is_err());
    assert!(s.mkdir(&path::ana_group(1, 2)).is_err(), "no port 1");
    s.mkdir(&path::port(1)).unwrap();
    assert!(
        s.mkdir(&path::ana_group(1, 1)).is_err(),
        "group 1 always exists"
    );
    assert!(s.mkdir(&path::ana_group(1, 129)).is_err());
    assert!(
        s.symlink(&path::port_subsystem(1, SUB), &sub).is_err(),
        "port without an address"
    );
    for (f, v) in [
        ("addr_trtype", "tcp"),
        ("addr_adrfam", "ipv4"),
        ("addr_traddr", "10.0.0.1"),
        ("addr_trsvcid", "4420"),
    ] {
        s.write(&format!("nvmet/ports/1/{f}"), v).unwrap();
    }
    s.symlink(&path::port_subsystem(1, SUB), &sub).unwrap();
    assert!(
        s.write("nvmet/ports/1/addr_traddr", "10.0.0.2").is_err(),
        "EACCES while serving"
    );
    assert!(s.rmdir(&sub).is_err(), "linked from a port");
}

#[test]
fn a_namespace_identity_change_disables_writes_and_enables() {
    let (_, _, steps) =
        reconciled_then(|v| v["volume"][1]["uuid"] = json!("3c8d2f64-5b0e-4a7d-9f21-6d1e0b7a4c99"));
    let ns = path::namespace(SUB, 1);
    assert_eq!(
        steps,
        vec![
            Step::Write {
                path: format!("{ns}/enable"),
                value: "0".into()
            },
            Step::Write {
                path: format!("{ns}/device_uuid"),
                value: "3c8d2f64-5b0e-4a7d-9f21-6d1e0b7a4c99".into()
            },
            Step::Write {
                path: format!("{ns}/enable"),
                value: "1".into()
            },
        ]
    );
}

#[test]
fn ana_groups_are_per_pool_and_stable() {
    let mut v = base();
    v["pool"] = json!([pool("p1", "A"), pool("p0", "B")]);
    v["volume"][0]["pool"] = json!("p0");
    v["export"][0] =
        json!({"name": "e1", "volume": "v1", "protocol": "nvme", "nsid": 2, "host_group": "g1"});
    let mut s = sim();
    s.add_device(DEV1);
    let d = desired(&s, &v, "A");
    assert_eq!(d.pools["p0"].ana_group, Some(2));
    assert_eq!(d.pools["p1"].ana_group, Some(3));
    apply_desired(&mut s, &d, "A");
    assert_eq!(ana(&s, 1000, 2), "inaccessible");
    assert_eq!(ana(&s, 1000, 3), "optimized");
    // A new pool sorting first does not renumber the others.
    v["pool"].as_array_mut().unwrap().push(pool("a0", "A"));
    v["volume"].as_array_mut().unwrap().push(json!({"name": "v3", "pool": "a0", "size": "1GiB", "serial": "aa", "wwn": "", "nguid": "3c8d2f645b0e4a7d9f216d1e0b7a4c33", "uuid": "3c8d2f64-5b0e-4a7d-9f21-6d1e0b7a4c33"}));
    v["export"].as_array_mut().unwrap().push(
        json!({"name": "e3", "volume": "v3", "protocol": "nvme", "nsid": 3, "host_group": "g1"}),
    );
    s.add_device("/dev/mapper/dxvol-aa");
    let d = desired(&s, &v, "A");
    assert_eq!(
        (
            d.pools["p0"].ana_group,
            d.pools["p1"].ana_group,
            d.pools["a0"].ana_group
        ),
        (Some(2), Some(3), Some(4))
    );
}

/// The base configuration with pool p1 holding 1000 volumes, each exported
/// over iSCSI and NVMe to g1, and a simulator with their devices.
fn thousand_volumes() -> (Value, SimBackend) {
    let mut v = base();
    let mut vols = Vec::new();
    let mut exps = Vec::new();
    let mut s = SimBackend::new();
    for i in 0..1000u32 {
        vols.push(json!({"name": format!("v{i}"), "pool": "p1", "size": "1GiB", "serial": format!("{i:032x}"), "wwn": "",
            "nguid": format!("{:032x}", i + 1), "uuid": format!("00000000-0000-4000-8000-{:012x}", i + 1)}));
        exps.push(json!({"name": format!("i{i}"), "volume": format!("v{i}"), "protocol": "iscsi", "lun": i, "host_group": "g1"}));
        exps.push(json!({"name": format!("n{i}"), "volume": format!("v{i}"), "protocol": "nvme", "nsid": i + 1, "host_group": "g1"}));
        s.add_device(&format!("/dev/mapper/dxvol-{i:032x}"));
    }
    v["volume"] = json!(vols);
    v["export"] = json!(exps);
    (v, s)
}

#[test]
fn a_thousand_volume_reconcile_flip_is_one_alua_write_plus_one_per_port() {
    let (v, mut s) = thousand_volumes();
    let local = Local::new("A");
    let d = build(
        &cfg(&v),
        &local,
        &|x| s.device_state(x),
        &BTreeMap::new(),
        &Default::default(),
    );
    let steps = plan(&d.tree, &Default::default());
    s.apply(&steps).unwrap();
    let flip = with_pool_state(&d, "p1", AccessState::Standby);
    let steps = plan(&flip.tree, &d.tree);
    assert_eq!(steps.len(), 2, "{:#?}", &steps[..steps.len().min(4)]);
    // And configfs then holds the flipped state on every volume.
    s.apply(&steps).unwrap();
    let after = observe(&s, &local.scope()).unwrap();
    assert!(plan(&flip.tree, &after.tree).is_empty());
}

#[test]
fn portals_come_from_the_configuration_and_the_flag_overrides_them() {
    let mut v = base();
    v["controller"] = json!([
        ctl("A", &["10.50.0.11/24", "fd00:50::11/64"]),
        ctl("B", &["10.50.0.12/24"])
    ]);
    let mut s = sim();
    reconcile(&mut s, &v, "A");
    assert!(has(&s, &path::portal(TGT, 1, "10.50.0.11:3260")));
    assert!(has(&s, &path::portal(TGT, 1, "[fd00:50::11]:3260")));
    assert!(!has(&s, &path::portal(TGT, 1, "0.0.0.0:3260")));
    // Port ids: 1000 + 2k + controller index, one per address.
    assert_eq!(read(&s, "nvmet/ports/1000/addr_traddr"), "10.50.0.11");
    assert_eq!(read(&s, "nvmet/ports/1002/addr_traddr"), "fd00:50::11");
    assert_eq!(read(&s, "nvmet/ports/1002/addr_adrfam"), "ipv6");
    let mut b = sim();
    reconcile(&mut b, &v, "B");
    assert!(has(&b, &path::portal(TGT, 2, "10.50.0.12:3260")));
    assert_eq!(read(&b, "nvmet/ports/1001/addr_traddr"), "10.50.0.12");

    // The address moves: the port is re-addressed, the portal replaced.
    v["controller"][0]["portals"] = json!(["10.50.0.21/24"]);
    reconcile(&mut s, &v, "A");
    assert!(has(&s, &path::portal(TGT, 1, "10.50.0.21:3260")));
    assert!(!has(&s, &path::portal(TGT, 1, "10.50.0.11:3260")));
    assert!(!has(&s, "nvmet/ports/1002"));
    assert_eq!(read(&s, "nvmet/ports/1000/addr_traddr"), "10.50.0.21");
    assert!(has(&s, &path::port_subsystem(1000, SUB)));

    // --portal wins over the configuration; no portal anywhere: wildcard.
    let mut local = Local::new("A");
    local.portals = vec!["192.0.2.7".parse().unwrap()];
    assert_eq!(
        portals(&cfg(&v), &local),
        vec!["192.0.2.7".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        portals(&cfg(&base()), &Local::new("A")),
        vec!["0.0.0.0".parse::<std::net::IpAddr>().unwrap()]
    );
    // An entry that is not an address is not a configuration targets
    // builds from at all: the shared model refuses it where config-keeper
    // would (it never stores one).
    v["controller"][0]["portals"] = json!(["10.50.0.21/24", "fe0"]);
    let e = Config::from_json(&v).unwrap_err();
    assert!(e.at.starts_with("controller[0].portals"), "{e}");
}

/// The base configuration with v2 in a second pool p2 (both owned by A)
/// and these exports.
fn two_pools(exports: Value) -> Value {
    let mut v = base();
    v["pool"] = json!([pool("p1", "A"), pool("p2", "A")]);
    v["volume"][1]["pool"] = json!("p2");
    v["export"] = exports;
    v
}

/// The flip path: state writes computed from the applied tree only.
fn flip_on(
    s: &mut SimBackend,
    tree: &mut duplex_targets::core::Tree,
    v: &Value,
    pool: &str,
    state: AccessState,
) -> usize {
    let m = members(&cfg(v), pool);
    let f = flip_steps(tree, &m, "dx_a", state);
    s.apply(&f.steps).unwrap();
    // The tree the flip keeps is what configfs now holds.
    let again = observe(s, &Local::new("A").scope()).unwrap();
    assert!(
        same(&again.tree, tree),
        "configfs differs from the tree the flip keeps"
    );
    f.steps.len()
}

/// The two-pool view with `exports`, applied on controller A with both
/// pools' devices present: the view, the backend and what was applied.
fn two_pools_applied(exports: Value) -> (Value, SimBackend, Desired) {
    let v = two_pools(exports);
    let mut s = SimBackend::new();
    s.add_device(DEV1);
    s.add_device(DEV2);
    let d = desired(&s, &v, "A");
    apply_desired(&mut s, &d, "A");
    (v, s, d)
}

/// Equal but for the subsystem serial, which configfs is not read for.
fn same(a: &duplex_targets::core::Tree, b: &duplex_targets::core::Tree) -> bool {
    let strip = |t: &duplex_targets::core::Tree| {
        let mut t = t.clone();
        for s in t.subsystems.values_mut() {
            s.serial.clear();
        }
        t
    };
    strip(a) == strip(b)
}

#[test]
fn the_flip_writes_only_state_attributes_and_a_reconcile_keeps_it() {
    let (v, mut s, d) = two_pools_applied(json!([
        {"name": "e1", "volume": "v1", "protocol": "iscsi", "lun": 0, "host_group": "g1"},
        {"name": "e2", "volume": "v2", "protocol": "iscsi", "lun": 1, "host_group": "g1"},
        {"name": "e3", "volume": "v1", "protocol": "nvme", "nsid": 1, "host_group": "g1"},
        {"name": "e4", "volume": "v2", "protocol": "nvme", "nsid": 2, "host_group": "g1"}
    ]));
    let mut tree = d.tree.clone();
    let m = members(&cfg(&v), "p1");
    assert_eq!(pool_ana_groups(&tree, &m), vec![2]);

    assert_eq!(
        flip_on(&mut s, &mut tree, &v, "p1", AccessState::Transitioning),
        2
    );
    assert_eq!(alua(&s, "v1"), "15");
    assert_eq!(ana(&s, 1000, 2), "change");
    assert_eq!(
        flip_on(&mut s, &mut tree, &v, "p1", AccessState::Standby),
        2
    );
    assert_eq!(alua(&s, "v1"), "2");
    // The other pool is untouched, and a flip to the state held writes nothing.
    assert_eq!(alua(&s, "v2"), "0");
    assert_eq!(ana(&s, 1000, 3), "optimized");
    assert_eq!(
        flip_on(&mut s, &mut tree, &v, "p1", AccessState::Standby),
        0
    );

    // A reconcile with the override in force has nothing to undo.
    let local = Local::new("A");
    let observed = observe(&s, &local.scope()).unwrap();
    let with_override = build(
        &cfg(&v),
        &local,
        &|x| s.device_state(x),
        &BTreeMap::from([("p1".to_string(), AccessState::Standby)]),
        &observed.tree,
    );
    assert!(plan(&with_override.tree, &observed.tree).is_empty());
    // Without it, ownership decides again: back to active.
    let owned = desired(&s, &v, "A");
    assert_eq!(plan(&owned.tree, &observed.tree).len(), 2);
}

#[test]
fn the_flip_leaves_an_ana_group_shared_with_another_pool_alone() {
    let (v, _, d) = two_pools_applied(json!([
        {"name": "e3", "volume": "v1", "protocol": "nvme", "nsid": 1, "host_group": "g1"},
        {"name": "e4", "volume": "v2", "protocol": "nvme", "nsid": 2, "host_group": "g1"}
    ]));
    // Someone moved p2's namespace into p1's group by hand.
    let mut tree = d.tree.clone();
    if let Some(ns) = tree
        .subsystems
        .get_mut(SUB)
        .and_then(|x| x.namespaces.get_mut(&2))
    {
        ns.ana_group = 2;
    }
    let m = members(&cfg(&v), "p1");
    assert!(pool_ana_groups(&tree, &m).is_empty());
    let f = flip_steps(&mut tree, &m, "dx_a", AccessState::Standby);
    assert!(f.steps.is_empty(), "{:?}", f.steps);
    assert_eq!(f.volumes, 1, "v1 is exported here (NVMe only)");
}

#[test]
fn a_thousand_volume_flip_is_one_alua_write_plus_one_per_port() {
    let (mut v, mut s) = thousand_volumes();
    v["controller"] = json!([ctl("A", &["10.50.0.11/24", "10.60.0.11/24"]), ctl("B", &[])]);
    let d = desired(&s, &v, "A");
    s.apply(&plan(&d.tree, &Default::default())).unwrap();
    let mut tree = d.tree.clone();
    let m = members(&cfg(&v), "p1");
    let mid = flip_steps(&mut tree, &m, "dx_a", AccessState::Transitioning);
    let fin = flip_steps(&mut tree, &m, "dx_a", AccessState::Standby);
    assert_eq!(
        (mid.steps.len(), fin.steps.len(), fin.volumes),
        (3, 3, 1000)
    );
    s.apply(&mid.steps).unwrap();
    s.apply(&fin.steps).unwrap();
    assert!(same(
        &observe(&s, &Local::new("A").scope()).unwrap().tree,
        &tree
    ));
}

#[test]
fn a_pool_is_active_only_where_its_devices_serve_data() {
    // The owner's devices are still error tables (import not done yet).
    let mut s = sim();
    s.set_backed(DEV1, false);
    let d = desired(&s, &base(), "A");
    assert!(
        d.pending
            .iter()
            .any(|p| p.contains("pool p1: standby here")),
        "{:?}",
        d.pending
    );
    apply_desired(&mut s, &d, "A");
    let gp = format!("{}/alua_access_state", path::tg_pt_gp("v1", "dx_a"));
    let ana = format!("{}/ana_state", path::ana_group(1000, 2));
    assert_eq!(read(&s, &gp), "2", "exported, but standby");
    assert_eq!(read(&s, &ana), "inaccessible");
    // The import swaps the table: the next reconcile makes it active.
    s.set_backed(DEV1, true);
    let steps = reconcile(&mut s, &base(), "A");
    assert_eq!(steps.len(), 2, "{steps:#?}");
    assert_eq!(read(&s, &gp), "0");
    assert_eq!(read(&s, &ana), "optimized");
    // The partner keeps its standby path on its own error tables.
    let mut b = sim();
    b.set_backed(DEV1, false);
    b.set_backed(DEV2, false);
    let d = desired(&b, &base(), "B");
    assert!(
        d.pending.is_empty(),
        "standby is what B wants: {:?}",
        d.pending
    );
    apply_desired(&mut b, &d, "B");
    assert!(has(&b, &path::lun_link(TGT, 2, 0, "v1")));
}

#[test]
fn each_pool_has_an_lu_group_of_its_backstores_which_goes_with_it() {
    let v = two_pools(json!([
        {"name": "e1", "volume": "v1", "protocol": "iscsi", "lun": 0, "host_group": "g1"},
        {"name": "e2", "volume": "v2", "protocol": "iscsi", "lun": 1, "host_group": "g1"}
    ]));
    let mut s = sim();
    reconcile(&mut s, &v, "A");
    let lu1 = path::lu_group("dxpool_p1");
    let lu2 = path::lu_group("dxpool_p2");
    assert_eq!(read(&s, &format!("{lu1}/lu_gp_id")), "100");
    assert_eq!(read(&s, &format!("{lu2}/lu_gp_id")), "101");
    assert_eq!(
        read(&s, &format!("{}/alua_lu_gp", path::backstore("v2"))),
        "LU Group Alias: dxpool_p2\nLU Group ID: 101"
    );
    assert_eq!(read(&s, &format!("{lu1}/members")), "iblock_100/v1");
    // A flip of p1 leaves p2 alone although both use port group dx_a.
    let mut o = v.clone();
    o["pool"][0]["owner"] = json!("B");
    assert_eq!(reconcile(&mut s, &o, "A").len(), 1);
    let state = |s: &SimBackend, vol: &str| {
        read(
            s,
            &format!("{}/alua_access_state", path::tg_pt_gp(vol, "dx_a")),
        )
    };
    assert_eq!((state(&s, "v1"), state(&s, "v2")), ("2".into(), "0".into()));
    // p2's exports go: so does its LU group; p1's keeps its id.
    let mut w = v.clone();
    w["export"] = json!([v["export"][0].clone()]);
    let steps = reconcile(&mut s, &w, "A");
    assert!(
        steps.contains(&Step::Rmdir { path: lu2.clone() }),
        "{steps:#?}"
    );
    assert!(!has(&s, &lu2));
    assert_eq!(read(&s, &format!("{lu1}/lu_gp_id")), "100");
    w["export"] = json!([]);
    reconcile(&mut s, &w, "A");
    assert!(s.paths().iter().all(|p| !p.contains("dxpool_")));
}

#[test]
fn lu_group_drift_is_repaired_and_a_straggler_is_flipped_on_its_own() {
    let mut v = base();
    v["export"] = json!([
        {"name": "e1", "volume": "v1", "protocol": "iscsi", "lun": 0, "host_group": "g1"},
        {"name": "e2", "volume": "v2", "protocol": "iscsi", "lun": 1, "host_group": "g1"}
    ]);
    let mut s = sim();
    reconcile(&mut s, &v, "A");
    // Someone took v2 out of the pool's LU group.
    s.write(&format!("{}/alua_lu_gp", path::backstore("v2")), "NULL")
        .unwrap();
    let mut tree = observe(&s, &Local::new("A").scope()).unwrap().tree;
    assert_eq!(tree.backstores["v2"].lu_group, None);
    // The flip still reaches it, with a write of its own.
    assert_eq!(
        flip_on(&mut s, &mut tree, &v, "p1", AccessState::Standby),
        2
    );
    // A reconcile puts it back (one write), and then one write flips both.
    let mut o = v.clone();
    o["pool"][0]["owner"] = json!("B");
    let steps = reconcile(&mut s, &o, "A");
    assert_eq!(
        steps,
        vec![Step::Write {
            path: format!("{}/alua_lu_gp", path::backstore("v2")),
            value: "dxpool_p1".into()
        }]
    );
    let steps = reconcile(&mut s, &v, "A");
    assert_eq!(steps.len(), 1, "{steps:#?}");
    // An LU group made again by hand (rmdir sends members to LIO's
    // default group) with another id: the id is kept, the members rejoin.
    let lu = path::lu_group("dxpool_p1");
    s.rmdir(&lu).unwrap();
    assert_eq!(
        read(&s, &format!("{}/alua_lu_gp", path::backstore("v1"))),
        "LU Group Alias: default_lu_gp\nLU Group ID: 0"
    );
    s.mkdir(&lu).unwrap();
    s.write(&format!("{lu}/lu_gp_id"), "7").unwrap();
    let steps = reconcile(&mut s, &v, "A");
    assert_eq!(steps.len(), 2, "two joins: {steps:#?}");
    assert_eq!(read(&s, &format!("{lu}/lu_gp_id")), "7");
    // Half built (no id, which cannot be given any more): made again.
    s.rmdir(&lu).unwrap();
    s.mkdir(&lu).unwrap();
    let steps = reconcile(&mut s, &v, "A");
    assert_eq!(steps.len(), 5, "rmdir, mkdir, id, two joins: {steps:#?}");
    assert_eq!(read(&s, &format!("{lu}/lu_gp_id")), "100");
}

#[test]
fn the_sim_keeps_lios_lu_group_rules() {
    let mut s = sim();
    let bs = path::backstore("v1");
    let lu = path::lu_group("dxpool_p1");
    s.mkdir(&path::hba()).unwrap();
    s.mkdir(&bs).unwrap();
    s.mkdir(&lu).unwrap();
    // Not usable until it has an id; an id is set once and is unique.
    s.write(&format!("{bs}/control"), &format!("udev_path={DEV1}"))
        .unwrap();
    s.write(&format!("{bs}/enable"), "1").unwrap();
    assert!(s.write(&format!("{bs}/alua_lu_gp"), "dxpool_p1").is_err());
    s.write(&format!("{lu}/lu_gp_id"), "100").unwrap();
    assert!(s.write(&format!("{lu}/lu_gp_id"), "101").is_err());
    s.mkdir(&path::lu_group("dxpool_p2")).unwrap();
    assert!(s
        .write(&format!("{}/lu_gp_id", path::lu_group("dxpool_p2")), "100")
        .is_err());
    assert!(s.write(&format!("{bs}/alua_lu_gp"), "nosuch").is_err());
    s.write(&format!("{bs}/alua_lu_gp"), "dxpool_p1").unwrap();
    assert!(read(&s, &format!("{bs}/alua_lu_gp")).contains("dxpool_p1"));
    // Before `enable` a device has no member: the write is ignored.
    let bs2 = path::backstore("v2");
    s.mkdir(&bs2).unwrap();
    s.write(&format!("{bs2}/alua_lu_gp"), "dxpool_p1").unwrap();
    assert_eq!(read(&s, &format!("{bs2}/alua_lu_gp")), "");
    // The default group cannot go; ours can, and its members go back.
    assert!(s.rmdir(&path::lu_group("default_lu_gp")).is_err());
    s.rmdir(&lu).unwrap();
    assert!(read(&s, &format!("{bs}/alua_lu_gp")).contains("default_lu_gp"));
}
