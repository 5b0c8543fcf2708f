//! Scenarios: boot, act, measure, print figures as JSON.

use crate::checks::Checks;
pub use crate::checks::Outcome;
use crate::lab::{self, Lab, LabError};
use crate::{appliance, demo};
use serde_json::{json, Value};
use std::thread;
use std::time::{Duration, Instant};
use tracing::info;

/// Names of the scenarios `duplex-lab scenario` knows.
pub const NAMES: &[&str] = &["smoke"];

/// The longest pause whose start lies in `[from, to]` seconds of the
/// writer's timeline (the flip), from the verifier's list of longest gaps.
fn pause_in(dev: &Value, from: f64, to: f64) -> Option<f64> {
    dev.get("gaps")?
        .as_array()?
        .iter()
        .filter_map(|g| Some((g.get("at_s")?.as_f64()?, g.get("ms")?.as_f64()?)))
        .filter(|(at, _)| *at >= from && *at <= to)
        .map(|(_, ms)| ms)
        .reduce(f64::max)
}

fn figures(v: &Value, name: &str, window: (f64, f64)) -> Value {
    let dev = v.get("devices").and_then(Value::as_array).and_then(|ds| {
        ds.iter()
            .find(|d| d.get("name").and_then(Value::as_str) == Some(name))
    });
    match dev {
        Some(d) => json!({
            "flip_pause_ms": pause_in(d, window.0, window.1),
            "max_gap_ms": d.get("max_gap_ms"),
            "max_gap_at_s": d.get("max_gap_at_s"),
            "iops": d.get("iops"),
            "writes_acked": d.get("writes_acked"),
            "errors": d.get("write_errors"),
            "verify_ok": d.pointer("/verify/ok"),
            "verified_blocks": d.pointer("/verify/intact"),
            "ok": d.get("ok"),
        }),
        None => Value::Null,
    }
}

/// True when a lab is up in this run folder and every agent answers.
pub fn is_up(lab: &Lab) -> bool {
    lab::status(lab).is_ok_and(|s| s.matches("agent ok").count() == lab::VMS.len())
}

/// Where H's verifier looks for the file that ends its run.
const STOP_FILE: &str = "/run/duplex-lab/verify.stop";

/// `smoke`: boot, the demo volumes through the appliance's services, the
/// expected host view, a planned handover of the pool A -> B (standby,
/// export, epoch, takeover, active) under verified writes. With
/// `DUPLEX_LAB_DEMO=fixture`, the raw configfs fixture and a
/// make-before-break flip instead. A lab that is up already (its agents
/// answer) is used as it is, without a boot of its own (the lab tier boots
/// once for every tier). The caller tears the lab down.
pub fn smoke(lab: &Lab) -> Result<Outcome, LabError> {
    let fixture = std::env::var("DUPLEX_LAB_DEMO").as_deref() == Ok("fixture");
    let mut c = Checks::new();
    let boot = if is_up(lab) {
        info!("using the lab that is up");
        lab.state()?.boot_seconds
    } else {
        lab::up(lab)?.boot_seconds
    };
    info!("lab up in {boot:?} s");
    let t = Instant::now();
    let facts = if fixture {
        demo::setup(lab)?
    } else {
        appliance::setup(lab)?
    };
    let report_text = |lab: &Lab| {
        if fixture {
            demo::report(lab)
        } else {
            appliance::report(lab)
        }
    };
    let setup_s = t.elapsed().as_secs_f64();
    let maps = demo::mpath_maps(lab)?;
    let groups = maps.first().map_or(0, |m| m.groups.len());
    let paths: usize = maps
        .first()
        .map_or(0, |m| m.groups.iter().map(|g| g.paths.len()).sum());
    c.check(
        "iscsi_one_multipath_device_two_groups",
        maps.len() == 1 && facts.iscsi_devs.len() == 1 && groups == 2 && paths == 2,
        format!("{} maps, {groups} path groups, {paths} paths", maps.len()),
    );
    let live = facts
        .nvme_paths
        .iter()
        .filter(|p| p.state == "live")
        .count();
    c.check(
        "nvme_one_namespace_two_paths",
        facts.nvme_devs.len() == 1 && live == 2,
        format!("{} namespaces, {live} live paths", facts.nvme_devs.len()),
    );
    let opt_on = |f: &demo::HostFacts, addr: &str| {
        f.nvme_paths
            .iter()
            .any(|p| p.addr == addr && p.ana == "optimized")
    };
    c.check(
        "nvme_optimized_on_A_before",
        opt_on(&facts, "10.50.0.11") && !opt_on(&facts, "10.50.0.12"),
        format!("{:?}", facts.nvme_paths),
    );
    if !c.ok {
        print!("{}", report_text(lab));
        return Ok(Outcome {
            report: json!({ "scenario": "smoke", "ok": false, "boot_seconds": boot, "checks": c.list }),
            ok: false,
        });
    }

    // Verified writes on both devices; the flip happens in the middle. The
    // fixture's flip is quick (16 s of writes); a handover ends the writes
    // through the stop file 5 s after it is done (at most 10 minutes).
    let seconds = if fixture { 16 } else { 600 };
    // The invariant monitor watches both controllers through the flip.
    let mon = (!fixture).then(|| crate::monitor::start(lab, &["A", "B"]));
    let flip_after = Duration::from_secs(6);
    let vlab = lab.clone();
    let vfacts = facts.clone();
    let t_io = Instant::now();
    let stop = (!fixture).then_some(STOP_FILE);
    let writer = thread::spawn(move || demo::verify_until(&vlab, &vfacts, seconds, stop));
    thread::sleep(flip_after);
    let flip_at = t_io.elapsed().as_secs_f64();
    let mut steps = Vec::new();
    let flip = if fixture {
        demo::flip(lab, "A", "B")
    } else {
        appliance::handover(lab, "A", "B").map(|s| {
            steps = s;
            let done = steps.last().map_or(0.0, |(_, at)| *at);
            (done, done)
        })
    };
    if !fixture {
        thread::sleep(Duration::from_secs(5));
        // Ends the writes even when the handover failed.
        let _ = lab::exec_ok(lab, "H", &["touch", STOP_FILE], Duration::from_secs(30));
    }
    let v = writer
        .join()
        .map_err(|_| LabError::State("verify thread panicked".into()))??;
    let monitor = mon.map(crate::monitor::Monitor::stop);
    if let Some(m) = &monitor {
        c.monitor(m);
    }
    let (b_active_s, flip_s) = flip?;
    let after = if fixture {
        demo::host_facts(lab)?
    } else {
        demo::host_facts_for(lab, appliance::NQN)?
    };
    c.check(
        "nvme_optimized_on_B_after",
        opt_on(&after, "10.50.0.12") && !opt_on(&after, "10.50.0.11"),
        format!("{:?}", after.nvme_paths),
    );
    let maps_after = demo::mpath_maps(lab)?;
    let active_pri = maps_after
        .first()
        .and_then(|m| m.groups.iter().find(|g| g.dm_st == "active"))
        .map_or(-1, |g| g.pri);
    c.check(
        "iscsi_active_group_optimized_after",
        active_pri == 50,
        format!("active group priority {active_pri}"),
    );
    // The writer starts a little after the request (agent, exec), so the
    // flip lies at or slightly before `flip_at` on its timeline: look from
    // one second before until two seconds after the flip finished.
    let window = (flip_at - 1.0, flip_at + flip_s + 2.0);
    let iscsi = figures(&v, "iscsi", window);
    let nvme = figures(&v, "nvme", window);
    for (name, f) in [("iscsi", &iscsi), ("nvme", &nvme)] {
        c.check(
            &format!("{name}_no_errors_and_verified"),
            f.get("ok").and_then(Value::as_bool) == Some(true),
            f.to_string(),
        );
    }
    print!("{}", report_text(lab));
    let build = std::env::var("DUPLEX_LAB_BUILD_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok());
    let images = std::env::var("DUPLEX_LAB_IMAGES_SECONDS")
        .ok()
        .and_then(|s| s.parse::<f64>().ok());
    let report = json!({
        "scenario": "smoke",
        "ok": c.ok,
        "build_seconds": build,
        "images_seconds": images,
        "boot_seconds": boot,
        "demo_setup_seconds": (setup_s * 10.0).round() / 10.0,
        "flip": {
            "kind": if fixture {
                "planned make-before-break A -> B (ALUA + ANA), configfs fixture"
            } else {
                "planned handover of the pool A -> B: standby, record owner (new epoch), export to B, import, active"
            },
            "at_s": (flip_at * 1000.0).round() / 1000.0,
            "b_optimized_after_s": (b_active_s * 1000.0).round() / 1000.0,
            "done_after_s": (flip_s * 1000.0).round() / 1000.0,
            "steps_s": steps.iter().map(|(s, at)| json!({"step": s, "at_s": (at * 1000.0).round() / 1000.0})).collect::<Vec<_>>(),
        },
        "write_seconds": seconds,
        "monitor": monitor,
        "iscsi": iscsi,
        "nvme": nvme,
        "checks": c.list,
    });
    Ok(Outcome { report, ok: c.ok })
}
