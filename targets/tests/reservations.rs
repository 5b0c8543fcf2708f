//! Persistent reservations on the simulator: LIO's `db_root` is set to the
//! directory targets owns before any device exists, saved registrations
//! come back when a backstore is rebuilt (a controller restart), and
//! `target.reservations` / `target.clear_reservations` read and clear the
//! kernel's table.

use duplex_api::model::Config;
use duplex_targets::backend::sim::{SharedSim, SimBackend};
use duplex_targets::backend::TargetBackend;
use duplex_targets::core::desired::Local;
use duplex_targets::error::ReservationError;
use duplex_targets::prstore::PrStore;
use duplex_targets::reconciler::Reconciler;
use serde_json::json;

const IQN_H1: &str = "iqn.1994-05.com.redhat:h1";
const IQN_H2: &str = "iqn.1994-05.com.redhat:h2";
const TGT: &str = "iqn.2026-11.io.duplex:5e1f0c1e.g1";
const SERIAL: &str = "5e1f0c1ed0c14a5b9f3e2d1c0b0a0901";
const DEV1: &str = "/dev/mapper/dxvol-5e1f0c1ed0c14a5b9f3e2d1c0b0a0901";

type R = Result<(), Box<dyn std::error::Error>>;

fn cfg() -> Result<Config, Box<dyn std::error::Error>> {
    let ctl = |id: &str, n: u8| {
        json!({"id": id, "name": format!("controller {id}"), "interconnect": [format!("10.51.0.{n}/24")],
               "management": format!("192.0.2.{n}/24"), "portals": []})
    };
    let v = json!({
        "cluster": {"id": "5e1f0c1e-0000-4000-8000-000000000001", "epoch": 1, "secret_ref": "x"},
        "controller": [ctl("A", 1), ctl("B", 2)],
        "pool": [{"name": "p1", "tier": "regular", "layout": "linear", "home": "A", "owner": "A",
                  "epoch": 1, "disks": []}],
        "volume": [{"name": "v1", "pool": "p1", "size": "1GiB", "serial": SERIAL,
                    "wwn": "6001405e1f0c1ed0c14a5b9f3e2d1c0b", "nguid": "3c8d2f645b0e4a7d9f216d1e0b7a4c11",
                    "uuid": "3c8d2f64-5b0e-4a7d-9f21-6d1e0b7a4c11"}],
        "export": [{"name": "e1", "volume": "v1", "protocol": "iscsi", "lun": 0, "host_group": "g1"}],
        "host": [{"name": "h1", "iqns": [IQN_H1], "nqns": []},
                 {"name": "h2", "iqns": [IQN_H2], "nqns": []}],
        "host_group": [{"name": "g1", "hosts": ["h1", "h2"]}]
    });
    Ok(Config::from_json(&v)?)
}

fn sim() -> SharedSim {
    let mut s = SimBackend::new();
    s.add_device(DEV1);
    SharedSim::new(s)
}

fn controller(sim: &SharedSim, store: &PrStore) -> Result<Reconciler, Box<dyn std::error::Error>> {
    let mut r = Reconciler::new(Box::new(sim.clone()), Local::new("A")).with_pr(store.clone());
    r.set_config(cfg()?);
    let out = r.reconcile(true, false)?;
    assert!(out.pending.is_empty(), "{:?}", out.pending);
    Ok(r)
}

/// A controller on a fresh simulator with its own db_root: the temporary
/// directory (kept while the test runs), the store, the simulator and the
/// reconciler, reconciled once.
#[allow(clippy::type_complexity)] // a test's tuple of what it set up
fn controller_on_a_fresh_sim(
) -> Result<(tempfile::TempDir, PrStore, SharedSim, Reconciler), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = PrStore::new(dir.path().join("lio"));
    let sim = sim();
    let rec = controller(&sim, &store)?;
    Ok((dir, store, sim, rec))
}

#[test]
fn db_root_is_ours_before_the_first_device() -> R {
    let (_dir, store, sim, rec) = controller_on_a_fresh_sim()?;
    assert_eq!(
        sim.with(|s| s.read("target/dbroot"))?.trim(),
        store.root_str()
    );
    assert!(store.root().join("pr").is_dir() && store.root().join("alua").is_dir());
    let r = rec.reservations("A", None)?;
    assert!(r.db_root_ours);
    assert_eq!(r.luns.len(), 1);
    assert!(r.luns[0].registrations.is_empty() && r.luns[0].holder.is_none());

    // Someone else's device first: db_root cannot change, and it says so.
    let other = sim_with_foreign_device()?;
    let mut rec = Reconciler::new(Box::new(other.clone()), Local::new("A")).with_pr(store.clone());
    rec.set_config(cfg()?);
    let out = rec.reconcile(true, false)?;
    assert!(
        out.pending
            .iter()
            .any(|p| p.starts_with("reservations: LIO's db_root is /etc/target")),
        "{:?}",
        out.pending
    );
    assert_eq!(
        other.with(|s| s.read("target/dbroot"))?.trim(),
        "/etc/target"
    );
    assert!(!rec.reservations("A", None)?.db_root_ours);
    Ok(())
}

fn sim_with_foreign_device() -> Result<SharedSim, Box<dyn std::error::Error>> {
    let s = sim();
    s.with(|s| -> std::io::Result<()> {
        s.mkdir("target/core/iblock_0")?;
        s.mkdir("target/core/iblock_0/old")
    })?;
    Ok(s)
}

#[test]
fn reservations_show_registrations_and_the_holder() -> R {
    let (_dir, _store, sim, rec) = controller_on_a_fresh_sim()?;
    sim.with(|s| -> std::io::Result<()> {
        s.pr_register((TGT, 1), (IQN_H1, "0x00023d000001"), 0, 0x1, false)?;
        s.pr_register((TGT, 1), (IQN_H2, "0x00023d000002"), 0, 0xab, false)?;
        s.pr_reserve((TGT, 1), (IQN_H1, "0x00023d000001"), 0, 1)?;
        // The other registrant cannot take it.
        assert!(s
            .pr_reserve((TGT, 1), (IQN_H2, "0x00023d000002"), 0, 1)
            .is_err());
        Ok(())
    })?;
    let r = rec.reservations("A", Some("v1"))?;
    assert_eq!(r.controller, "A");
    let lu = &r.luns[0];
    assert_eq!((lu.volume.as_str(), lu.serial.as_str()), ("v1", SERIAL));
    assert_eq!(lu.generation, Some(2));
    let keys: Vec<(&str, &str)> = lu
        .registrations
        .iter()
        .map(|g| (g.initiator.as_str(), g.key.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            (IQN_H1, "0x0000000000000001"),
            (IQN_H2, "0x00000000000000ab")
        ]
    );
    let h = lu.holder.clone().unwrap_or_default();
    assert_eq!(h.initiator, IQN_H1);
    assert_eq!(h.isid.as_deref(), Some("0x00023d000001"));
    assert_eq!(h.pr_type.as_deref(), Some("Write Exclusive Access"));
    assert_eq!(h.target.as_deref(), Some(TGT));
    assert_eq!(h.tpgt, Some(1));
    assert!(matches!(
        rec.reservations("A", Some("nope")),
        Err(ReservationError::NotFound(_))
    ));
    Ok(())
}

#[test]
fn aptpl_registrations_survive_a_controller_restart_and_a_clear_removes_them() -> R {
    let (_dir, store, first, _rec) = controller_on_a_fresh_sim()?;
    let file = first.with(|s| -> std::io::Result<String> {
        s.pr_register((TGT, 1), (IQN_H1, "0x00023d000001"), 0, 0x1, true)?;
        s.pr_reserve((TGT, 1), (IQN_H1, "0x00023d000001"), 0, 1)?;
        Ok(s.aptpl_file("v1"))
    })?;
    // What LIO wrote to db_root on the PERSISTENT RESERVE OUT.
    std::fs::write(store.root().join(format!("pr/aptpl_{SERIAL}")), file)?;

    // The controller restarts: configfs is empty, the file is there.
    let second = sim();
    let mut rec = controller(&second, &store)?;
    let r = rec.reservations("A", Some("v1"))?;
    let lu = &r.luns[0];
    assert!(lu.saved);
    assert_eq!(lu.registrations.len(), 1, "{lu:?}");
    assert_eq!(lu.registrations[0].initiator, IQN_H1);
    assert_eq!(lu.registrations[0].key, "0x0000000000000001");
    assert_eq!(
        lu.holder.as_ref().map(|h| h.initiator.as_str()),
        Some(IQN_H1)
    );
    // A reconcile with nothing to do keeps them (no rebuild).
    assert!(rec.reconcile(true, false)?.steps.is_empty());
    assert_eq!(rec.reservations("A", None)?.luns[0].registrations.len(), 1);

    // The admin clear: the kernel's table and the saved file.
    second.with(|s| s.pr_register((TGT, 1), (IQN_H2, "0x00023d000002"), 0, 0x2, false))?;
    let c = rec.clear_reservations("A", "v1")?;
    assert_eq!(c.before.registrations.len(), 2);
    assert!(c.before.holder.is_some());
    assert!(c.after.registrations.is_empty() && c.after.holder.is_none());
    assert_eq!(c.mappings_cycled, 2);
    assert!(c.file_removed);
    assert!(!store.root().join(format!("pr/aptpl_{SERIAL}")).exists());
    // The hosts' mappings are back, and nothing is left to repair.
    assert!(rec.reconcile(true, false)?.steps.is_empty());
    assert!(matches!(
        rec.clear_reservations("A", "nope"),
        Err(ReservationError::NotFound(_))
    ));
    Ok(())
}

#[test]
fn saved_registrations_are_refused_once_a_lun_exports_the_device() -> R {
    // The simulator keeps LIO's rule the reload depends on.
    let (_dir, _store, sim, _rec) = controller_on_a_fresh_sim()?;
    let e = sim.with(|s| {
        s.write(
            "target/core/iblock_100/v1/pr/res_aptpl_metadata",
            &format!("initiator_node={IQN_H1},sa_res_key=1,target_node={TGT},tpgt=1"),
        )
    });
    assert!(e.is_err());
    Ok(())
}

#[test]
fn a_saved_registration_the_kernel_refuses_does_not_stop_the_lu() -> R {
    let dir = tempfile::tempdir()?;
    let store = PrStore::new(dir.path().join("lio"));
    store.ensure()?;
    // Complete in form, refused by LIO (a key of 0), then a good one.
    let bad = format!(
        "PR_REG_START: 0\ninitiator_node={IQN_H2}\nsa_res_key=0\nmapped_lun=0\ntarget_node={TGT}\ntpgt=1\ntarget_lun=0\nPR_REG_END: 0\n\
         PR_REG_START: 1\ninitiator_node={IQN_H1}\nsa_res_key=7\nmapped_lun=0\ntarget_node={TGT}\ntpgt=1\ntarget_lun=0\nPR_REG_END: 1\n"
    );
    std::fs::write(store.root().join(format!("pr/aptpl_{SERIAL}")), bad)?;
    let sim = sim();
    let rec = controller(&sim, &store)?;
    let r = rec.reservations("A", None)?;
    let keys: Vec<&str> = r.luns[0]
        .registrations
        .iter()
        .map(|g| g.key.as_str())
        .collect();
    assert_eq!(keys, ["0x0000000000000007"]);
    assert!(sim
        .with(|s| s.read(&format!("target/iscsi/{TGT}/tpgt_1/enable")))?
        .starts_with('1'));
    Ok(())
}
