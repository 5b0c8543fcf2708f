//! The demo through the appliance's own services: pool-manager makes a
//! pool and two volumes on A, config-keeper holds the hosts and exports,
//! targets builds LIO and nvmet on both controllers from that desired
//! state, and H attaches over iSCSI and NVMe/TCP with the shipped host
//! settings. A planned move hands the pool from A to B the way heartbeat
//! does after a fence: standby, export, new epoch, takeover.

use crate::demo::{host_facts_for, HostFacts};
use crate::lab::{self, Lab, LabError};
use serde_json::{json, Value};
use std::thread;
use std::time::{Duration, Instant};

/// The demo pool.
pub const POOL: &str = "demo";
/// The demo host group: names the iSCSI target and NVMe subsystem.
pub const GROUP: &str = "demo";
/// Cluster id of the demo (its first 8 hex digits name the targets).
const CLUSTER: &str = "d0d0cafe-0000-4000-8000-000000000001";
/// The iSCSI target of the demo group.
pub const IQN: &str = "iqn.2026-11.io.duplex:d0d0cafe.demo";
/// The NVMe subsystem of the demo group.
pub const NQN: &str = "nqn.2026-11.io.duplex:d0d0cafe.demo";
/// Front-end addresses of the controllers.
pub const PORTALS: [(&str, &str); 2] = [("A", "10.50.0.11"), ("B", "10.50.0.12")];
/// Where the payload's fixtures are inside a guest.
const FIXTURE: &str = "/run/duplex-lab/payload/fixture";

/// Calls `method` on controller `vm` with duplexctl; the result, or the
/// error object as text.
pub fn call(lab: &Lab, vm: &str, method: &str, params: &Value) -> Result<Value, LabError> {
    let p = params.to_string();
    // Through the router: pool-manager declares long limits for its slow
    // methods (takeover, create), and duplexctl waits longer than any.
    let argv = crate::cmd::argv(&["duplexctl", "--json", "call", method, &p]);
    let r = lab::exec(lab, vm, &argv, Duration::from_secs(960))?;
    let v: Value = serde_json::from_str(&r.stdout).map_err(|e| {
        LabError::State(format!(
            "{vm} {method}: unreadable answer ({e}): {} {}",
            r.stdout, r.stderr
        ))
    })?;
    match (v.get("result"), v.get("error")) {
        (Some(res), None) => Ok(res.clone()),
        (_, Some(err)) => Err(LabError::State(format!("{vm} {method} {params}: {err}"))),
        _ => Err(LabError::State(format!("{vm} {method}: no result: {v}"))),
    }
}

/// `config.apply` of `changes` on `vm`, replicated before it answers.
pub fn apply(lab: &Lab, vm: &str, changes: Vec<Value>) -> Result<Value, LabError> {
    call(
        lab,
        vm,
        "config.apply",
        &json!({"changes": changes, "sync": true}),
    )
}

/// An upsert change of `object` of `kind`.
pub fn up(kind: &str, object: Value) -> Value {
    json!({"op": "upsert", "kind": kind, "object": object})
}

/// Waits until `f` gives `Some`, polling every half second.
fn wait<T>(what: &str, within: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T, LabError> {
    let t = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if t.elapsed() > within {
            return Err(LabError::State(format!("timed out waiting for {what}")));
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// The services of both controllers are registered and up.
fn wait_services(lab: &Lab) -> Result<(), LabError> {
    for vm in ["A", "B"] {
        wait(
            &format!("{vm}: config-keeper, pool-manager and targets up"),
            Duration::from_secs(240),
            || {
                let v = call(lab, vm, "router.services", &Value::Null).ok()?;
                let up = |name: &str| {
                    v["services"]
                        .as_array()
                        .is_some_and(|a| a.iter().any(|s| s["name"] == name && s["state"] == "up"))
                };
                (up("config-keeper") && up("pool-manager") && up("targets")).then_some(())
            },
        )?;
    }
    Ok(())
}

/// Makes the heartbeat area on the three heartbeat disks (`cluster.init`
/// on A; the disks are shared) and waits until both controllers see each
/// other (`normal`). Idempotent: a second init finds the same area.
pub fn init_heartbeat(lab: &Lab) -> Result<(), LabError> {
    // The heartbeat area takes at most 32 characters of cluster id.
    call(
        lab,
        "A",
        "cluster.init",
        &json!({"cluster_id": "d0d0cafe-lab"}),
    )?;
    for vm in ["A", "B"] {
        wait(
            &format!("{vm}: heartbeat normal"),
            Duration::from_secs(120),
            || {
                let s = call(lab, vm, "cluster.status", &Value::Null).ok()?;
                (s.pointer("/state/phase") == Some(&json!("normal"))).then_some(())
            },
        )?;
    }
    Ok(())
}

/// The phase heartbeat reports on `vm` (`None`: no answer).
pub fn phase(lab: &Lab, vm: &str) -> Option<String> {
    let s = call(lab, vm, "cluster.status", &Value::Null).ok()?;
    s.pointer("/state/phase")?.as_str().map(str::to_string)
}

/// The controllers, the cluster and the host, in the shared section.
fn seed(lab: &Lab, host_iqn: &str, host_nqn: &str) -> Result<(), LabError> {
    let mut changes = vec![up(
        "cluster",
        json!({"id": CLUSTER, "epoch": 1, "secret_ref": "/etc/duplex/cluster.secret"}),
    )];
    for (i, (id, portal)) in PORTALS.iter().enumerate() {
        let n = i + 1;
        changes.push(up(
            "controller",
            json!({"id": id, "name": format!("controller {id}"),
                   "interconnect": [format!("10.51.0.{n}/24"), format!("10.52.0.{n}/24")],
                   "management": format!("192.0.2.{n}/24"),
                   "portals": [format!("{portal}/24")]}),
        ));
    }
    changes.push(up(
        "host",
        json!({"name": "h", "iqns": [host_iqn], "nqns": [host_nqn]}),
    ));
    changes.push(up("host_group", json!({"name": GROUP, "hosts": ["h"]})));
    apply(lab, "A", changes)?;
    Ok(())
}

/// The demo pool's disk: the first PR disk when the lab has them (so a
/// fault scenario's data is behind the reservations scsi_pr fences with),
/// else `shelf0`.
pub fn pool_disk() -> String {
    if crate::prdisk::count() > 0 {
        crate::prdisk::name(0)
    } else {
        "shelf0".to_string()
    }
}

/// Creates the pool and volumes on A (idempotent: a second run finds them).
fn storage(lab: &Lab) -> Result<(), LabError> {
    let cfg = call(lab, "A", "config.get", &json!({}))?;
    let has = |kind: &str, name: &str| {
        cfg["config"][kind]
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o["name"] == name))
    };
    if !has("pool", POOL) {
        call(
            lab,
            "A",
            "pool.create",
            &json!({"name": POOL, "layout": "linear", "disks": [pool_disk()], "wipe": true}),
        )?;
    }
    for v in ["vol0", "vol1"] {
        if !has("volume", v) {
            call(
                lab,
                "A",
                "volume.create",
                &json!({"pool": POOL, "name": v, "size": "512MiB"}),
            )?;
        }
    }
    apply(
        lab,
        "A",
        vec![
            up(
                "export",
                json!({"name": "vol0-iscsi", "volume": "vol0", "protocol": "iscsi", "lun": 0, "host_group": GROUP}),
            ),
            up(
                "export",
                json!({"name": "vol1-nvme", "volume": "vol1", "protocol": "nvme", "nsid": 1, "host_group": GROUP}),
            ),
        ],
    )?;
    Ok(())
}

/// Waits until targets on `vm` has built everything (nothing pending).
pub fn wait_targets(lab: &Lab, vm: &str) -> Result<Value, LabError> {
    wait(
        &format!("{vm}: targets built with nothing pending"),
        Duration::from_secs(300),
        || {
            let s = call(lab, vm, "target.status", &Value::Null).ok()?;
            let pending = s["pending"].as_array().map_or(0, Vec::len);
            (s["ready"] == json!(true) && pending == 0 && s["last_error"].is_null()).then_some(s)
        },
    )
}

/// Pool, volumes and exports through the services, then H attached to both
/// controllers. Returns what H sees.
pub fn setup(lab: &Lab) -> Result<HostFacts, LabError> {
    wait_services(lab)?;
    if lab::heartbeat_enabled() {
        init_heartbeat(lab)?;
    }
    let host_iqn = lab::exec_ok(
        lab,
        "H",
        &[
            "sed",
            "-n",
            "s/^InitiatorName=//p",
            "/etc/iscsi/initiatorname.iscsi",
        ],
        Duration::from_secs(20),
    )?;
    let host_nqn = lab::exec_ok(
        lab,
        "H",
        &["cat", "/etc/nvme/hostnqn"],
        Duration::from_secs(20),
    )?;
    seed(lab, host_iqn.trim(), host_nqn.trim())?;
    storage(lab)?;
    for vm in ["A", "B"] {
        wait_targets(lab, vm)?;
    }
    let portals: Vec<&str> = PORTALS.iter().map(|(_, a)| *a).collect();
    let mut argv = vec![
        "sh".to_string(),
        format!("{FIXTURE}/host-attach.sh"),
        IQN.into(),
        NQN.into(),
    ];
    argv.extend(portals.iter().map(|s| (*s).to_string()));
    let r = lab::exec(lab, "H", &argv, Duration::from_secs(300))?;
    print!("{}{}", r.stdout, r.stderr);
    if r.code != Some(0) {
        return Err(LabError::State(format!("H could not attach: {}", r.stderr)));
    }
    host_facts_for(lab, NQN)
}

/// A planned move (giveback) of the pool from `from` to `to`, in the order
/// that keeps host I/O error free and never leaves the pool importable on
/// both: `from` standby (hosts queue), the new owner recorded under a new
/// cluster epoch (targets on `to` stay standby while its devices are the
/// `error` table), export on `from` handing the system_id to `to`, import
/// on `to` (activation, devices swapped to linear), `to` optimized.
/// Returns the seconds each step ended at.
pub fn handover(lab: &Lab, from: &str, to: &str) -> Result<Vec<(String, f64)>, LabError> {
    let t = Instant::now();
    let mut steps = Vec::new();
    let mut mark = |s: &str| steps.push((s.to_string(), t.elapsed().as_secs_f64()));
    call(
        lab,
        from,
        "target.set_access_state",
        &json!({"pool": POOL, "state": "standby"}),
    )?;
    mark("standby");
    let cfg = call(lab, to, "config.get", &json!({}))?["config"].clone();
    let epoch = cfg["cluster"]["epoch"].as_u64().unwrap_or(0) + 1;
    let mut cluster = cfg["cluster"].clone();
    cluster["epoch"] = json!(epoch);
    let mut pool = cfg["pool"]
        .as_array()
        .and_then(|a| a.iter().find(|p| p["name"] == POOL).cloned())
        .ok_or_else(|| LabError::State(format!("pool {POOL} is not in the desired state")))?;
    pool["owner"] = json!(to);
    pool["epoch"] = json!(epoch);
    match apply(lab, to, vec![up("cluster", cluster), up("pool", pool)]) {
        Ok(_) => {}
        // Committed on `to`, the partner's acknowledgement late (a loaded
        // machine): the record stands; wait until `from` has it, since
        // its export checks the new owner.
        Err(LabError::State(e)) if e.contains("\"committed\":true") => {
            wait(
                &format!("{from} to see {to} as the owner of {POOL}"),
                Duration::from_secs(120),
                || {
                    let c = call(lab, from, "config.get", &json!({})).ok()?;
                    let owner = c["config"]["pool"]
                        .as_array()?
                        .iter()
                        .find(|p| p["name"] == POOL)?["owner"]
                        .clone();
                    (owner == json!(to)).then_some(())
                },
            )?;
        }
        Err(e) => return Err(e),
    }
    mark("record");
    call(lab, from, "pool.export", &json!({"name": POOL, "to": to}))?;
    mark("export");
    call(lab, to, "pool.import", &json!({"name": POOL}))?;
    mark("import");
    call(
        lab,
        to,
        "target.set_access_state",
        &json!({"pool": POOL, "state": "active"}),
    )?;
    mark("active");
    Ok(steps)
}

/// Text for humans: H's multipath and NVMe view, the pool's access states.
pub fn report(lab: &Lab) -> String {
    let mut s = crate::demo::host_report(lab);
    s.push_str("--- access states (target.access_states)\n");
    s.push_str(&states(lab));
    s
}

/// Access states of the demo pool on both controllers.
pub fn states(lab: &Lab) -> String {
    PORTALS
        .iter()
        .map(
            |(vm, _)| match call(lab, vm, "target.access_states", &Value::Null) {
                Ok(v) => format!("{vm}: {}\n", v),
                Err(e) => format!("{vm}: {e}\n"),
            },
        )
        .collect()
}
