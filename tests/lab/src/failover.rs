//! The heartbeat's failover scenarios (issue 15's fault matrix), run on a
//! lab that `appliance::setup` prepared with the heartbeat on
//! (`DUPLEX_LAB_HEARTBEAT=1`): H writes and verifies on both protocols
//! through multipath while a controller is killed, frozen or cut off, or
//! while the pool moves by plan. Each scenario reports the takeover's
//! timeline (detection, fence, record, import, flip) as the survivor's
//! `cluster.timeline` recorded it, the host's pause per protocol, write
//! errors and the verify result, and brings the lab back to the pool on its
//! home controller (rejoin, then giveback) so the next scenario starts from
//! the same place.

use crate::appliance::{self, call, POOL};
use crate::checks::Checks;
pub use crate::checks::Outcome;
use crate::demo::{self, HostFacts};
use crate::lab::{self, Lab, LabError, Power};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tracing::info;

/// Issue 15's matrix items 5, 1, 2 and 3, in order: what `duplex-lab
/// failover` runs without names. CI runs them on a lab with a PR disk,
/// with `pr-fence` (a kill fenced by scsi_pr) in place of `kill`.
pub const NAMES: &[&str] = &["planned", "kill", "freeze", "ic-cut"];

/// The rest of the matrix, one command away (`duplex-lab failover NAME`):
/// not in CI, to keep its run short.
pub const MORE: &[&str] = &[
    "ic-one",
    "panic",
    "fence-fails",
    "hb-stop",
    "services",
    "hb-disks",
    "fe-cut",
    "power-cut",
    "cycles",
    "scale",
    "shelf-lost",
    "pr-fence",
    "rollback",
    "targets-down",
    "import-fails",
];

/// How long the survivor is kept from the victim's BMC in `fence-fails`
/// and `hb-stop`: more than twice the lab's watchdog timeout (10 s), so a
/// stopped heartbeat's watchdog fires inside it.
const FENCE_BLOCKED: Duration = Duration::from_secs(30);

/// Where H's verifier looks for the file that ends its run.
const STOP_FILE: &str = "/run/duplex-lab/verify.stop";

/// The longest a takeover may take to appear in the survivor's timeline
/// (detection, a fence over IPMI and four LVM steps under TCG).
const TAKEOVER_WITHIN: Duration = Duration::from_secs(240);

/// Runs `name` on a prepared lab.
pub fn run(lab: &Lab, name: &str) -> Result<Outcome, LabError> {
    if !NAMES.contains(&name) && !MORE.contains(&name) {
        return Err(unknown(name));
    }
    // Room for many LUs: `scale` leaves 50 behind.
    let facts = demo::host_facts_within(lab, appliance::NQN, Duration::from_secs(300))?;
    // The invariant monitor samples both controllers for the whole
    // scenario, faults, takeover, rejoin and giveback included: a pool live
    // on both or optimized on both at any sampled instant fails it, however
    // its own checks went.
    let mon = crate::monitor::start(lab, &["A", "B"]);
    let out = scenario(lab, name, &facts);
    let m = mon.stop();
    info!(
        "failover {name}: invariant monitor {} violations, samples {:?}",
        m.violations, m.samples
    );
    out.map(|mut o| {
        o.add_monitor(&m);
        o
    })
}

/// The scenario `name` (one of [`NAMES`] and [`MORE`]).
fn scenario(lab: &Lab, name: &str, facts: &HostFacts) -> Result<Outcome, LabError> {
    match name {
        "planned" => planned(lab, facts),
        "kill" => unplanned(lab, facts, Fault::Kill, Bmc::Up),
        "freeze" => unplanned(lab, facts, Fault::Freeze, Bmc::Up),
        "ic-cut" => ic_cut(lab, facts),
        "ic-one" => ic_one(lab, facts),
        "panic" => unplanned(lab, facts, Fault::Panic, Bmc::Up),
        "fence-fails" => unplanned(lab, facts, Fault::Kill, Bmc::Blocked),
        "hb-stop" => unplanned(lab, facts, Fault::HeartbeatStopped, Bmc::Blocked),
        "pr-fence" => unplanned(lab, facts, Fault::Kill, Bmc::CutPr),
        "rollback" => rollback(lab, facts),
        "import-fails" => import_fails(lab, facts),
        "targets-down" => unplanned(lab, facts, Fault::TargetsDown, Bmc::Up),
        "services" => services(lab, facts),
        "hb-disks" => hb_disks(lab, facts),
        "fe-cut" => fe_cut(lab, facts),
        "power-cut" => power_cut(lab, facts),
        "cycles" => cycles(lab, facts),
        "scale" => scale(lab, facts),
        "shelf-lost" => unplanned(lab, facts, Fault::ShelfLost, Bmc::Up),
        other => Err(unknown(other)),
    }
}

fn unknown(name: &str) -> LabError {
    LabError::State(format!(
        "unknown failover scenario {name} (known: {} {})",
        NAMES.join(" "),
        MORE.join(" ")
    ))
}

/// The pool's owner and home in the desired state, asked of whichever
/// controller answers.
pub fn owner(lab: &Lab) -> Result<(String, String), LabError> {
    let mut last = None;
    for vm in ["A", "B"] {
        match call(lab, vm, "config.get", &json!({})) {
            Ok(v) => {
                let pool = v["config"]["pool"]
                    .as_array()
                    .and_then(|a| a.iter().find(|p| p["name"] == POOL).cloned())
                    .ok_or_else(|| LabError::State(format!("pool {POOL} is not configured")))?;
                let s = |k: &str| pool[k].as_str().unwrap_or_default().to_string();
                return Ok((s("owner"), s("home")));
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(LabError::NotUp))
}

fn partner_of(vm: &str) -> &'static str {
    if vm == "A" {
        "B"
    } else {
        "A"
    }
}

/// Verified writes on H's two devices until [`Writer::stop`].
struct Writer {
    started: Instant,
    handle: JoinHandle<Result<Value, LabError>>,
}

impl Writer {
    fn start(lab: &Lab, facts: &HostFacts) -> Result<Self, LabError> {
        // A stop file left by an earlier run would end this one at once.
        lab::exec_ok(lab, "H", &["rm", "-f", STOP_FILE], Duration::from_secs(30))?;
        let (vlab, vfacts) = (lab.clone(), facts.clone());
        let started = Instant::now();
        let handle =
            thread::spawn(move || demo::verify_until(&vlab, &vfacts, 900, Some(STOP_FILE)));
        // Let the writers get going before the fault.
        thread::sleep(Duration::from_secs(6));
        Ok(Self { started, handle })
    }

    /// Seconds since the writer was asked to start.
    fn at(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    fn stop(self, lab: &Lab) -> Result<Value, LabError> {
        let touched = lab::exec_ok(lab, "H", &["touch", STOP_FILE], Duration::from_secs(30));
        // Writers whose I/O is queued with no path never see the stop file;
        // the verify thread would then poll until its own limit (the whole
        // run plus three minutes), which made a failed cycle look like a
        // hung scenario. Fail the scenario instead and leave the thread.
        let asked = Instant::now();
        while !self.handle.is_finished() {
            if asked.elapsed() > WRITERS_STOP_WITHIN {
                return Err(LabError::State(format!(
                    "H's writers did not stop within {WRITERS_STOP_WITHIN:?} of the stop file: \
                     their I/O is stuck (queued with no usable path?); see `multipath -ll` on H"
                )));
            }
            thread::sleep(Duration::from_millis(500));
        }
        let v = self
            .handle
            .join()
            .map_err(|_| LabError::State("verify thread panicked".into()))?;
        touched?;
        v
    }
}

/// How long H's writers may take to stop once asked: a write outstanding
/// through a takeover ends within the takeover's own bound.
const WRITERS_STOP_WITHIN: Duration = Duration::from_secs(180);

/// A gap between acknowledged writes this long counts as part of an
/// outage (the writers' normal gaps under TCG are well under 0.5 s).
const LONG_GAP_MS: f64 = 1000.0;

/// The host's pause in `[from, to]` on the writer's timeline (from the
/// start of the first long gap to the end of the last), and the device's
/// figures.
fn device(v: &Value, name: &str, window: (f64, f64)) -> Value {
    let Some(d) = v["devices"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["name"] == name))
    else {
        return Value::Null;
    };
    // The host's pause spans every long gap in the window: a write or two
    // can complete in the middle of a takeover (NVMe requeues on a path
    // reset), and the longest gap alone would hide the outage around them.
    let long: Vec<(f64, f64)> = d["gaps"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|g| Some((g["at_s"].as_f64()?, g["ms"].as_f64()?)))
        .filter(|(at, ms)| *at >= window.0 && *at <= window.1 && *ms >= LONG_GAP_MS)
        .collect();
    let pause = long
        .iter()
        .map(|(at, _)| *at)
        .reduce(f64::min)
        .zip(
            long.iter()
                .map(|(at, ms)| at + ms / 1000.0)
                .reduce(f64::max),
        )
        .map(|(start, end)| ((end - start) * 1000.0).round())
        .or_else(|| {
            d["gaps"].as_array().and_then(|gs| {
                gs.iter()
                    .filter_map(|g| Some((g["at_s"].as_f64()?, g["ms"].as_f64()?)))
                    .filter(|(at, _)| *at >= window.0 && *at <= window.1)
                    .map(|(_, ms)| ms)
                    .reduce(f64::max)
            })
        });
    json!({
        "pause_ms": pause,
        "window_s": [window.0, window.1],
        "gaps": d["gaps"],
        "max_gap_ms": d["max_gap_ms"],
        "writes_acked": d["writes_acked"],
        "errors": d["write_errors"],
        "verify_ok": d.pointer("/verify/ok"),
        "ok": d["ok"],
    })
}

/// Adds the per-protocol checks and returns the figures.
fn host_figures(c: &mut Checks, what: &str, v: &Value, window: (f64, f64)) -> Value {
    let mut out = json!({});
    for proto in ["iscsi", "nvme"] {
        let f = device(v, proto, window);
        c.check(
            &format!("{what}_{proto}_no_errors_and_verified"),
            f["ok"] == json!(true),
            f.to_string(),
        );
        out[proto] = f;
    }
    out
}

/// Number of entries in `vm`'s timeline (0 when it does not answer).
fn timeline_len(lab: &Lab, vm: &str) -> usize {
    call(lab, vm, "cluster.timeline", &json!({}))
        .ok()
        .and_then(|t| t["entries"].as_array().map(Vec::len))
        .unwrap_or(0)
}

/// Waits for entry number `n` (0-based) of `vm`'s timeline.
fn wait_entry(lab: &Lab, vm: &str, n: usize, within: Duration) -> Result<Value, LabError> {
    let t = Instant::now();
    loop {
        if let Ok(tl) = call(lab, vm, "cluster.timeline", &json!({})) {
            if let Some(e) = tl["entries"].as_array().and_then(|a| a.get(n)) {
                return Ok(e.clone());
            }
        }
        if t.elapsed() > within {
            return Err(LabError::State(format!(
                "{vm}: no timeline entry {n} after {within:?}"
            )));
        }
        thread::sleep(Duration::from_millis(500));
    }
}

/// Checks that neither timeline grew since it held `n` entries.
fn no_takeover(lab: &Lab, c: &mut Checks, n: [usize; 2]) {
    c.check(
        "no_takeover",
        timeline_len(lab, "A") == n[0] && timeline_len(lab, "B") == n[1],
        format!("timelines before {n:?}"),
    );
}

/// Checks that both controllers still have power.
fn nobody_fenced(lab: &Lab, c: &mut Checks) -> Result<(), LabError> {
    for vm in ["A", "B"] {
        c.check(
            &format!("{vm}_powered"),
            lab::is_running(lab, vm)?,
            "nobody was fenced",
        );
    }
    Ok(())
}

/// Milliseconds of each step of a timeline entry, summed by name.
fn steps(entry: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for s in entry["steps"].as_array().into_iter().flatten() {
        let (Some(name), Some(ms)) = (s["name"].as_str(), s["ms"].as_u64()) else {
            continue;
        };
        let prev = out.get(name).and_then(Value::as_u64).unwrap_or(0);
        out.insert(name.to_string(), json!(prev + ms));
    }
    Value::Object(out)
}

/// Waits until both controllers' heartbeats say `normal` (the fenced one
/// rejoined and was acknowledged).
fn wait_normal(lab: &Lab, within: Duration) -> Result<f64, LabError> {
    let t = Instant::now();
    loop {
        let a = appliance::phase(lab, "A");
        let b = appliance::phase(lab, "B");
        if a.as_deref() == Some("normal") && b.as_deref() == Some("normal") {
            return Ok(t.elapsed().as_secs_f64());
        }
        if t.elapsed() > within {
            return Err(LabError::State(format!(
                "heartbeats not both normal after {within:?}: A {a:?}, B {b:?}"
            )));
        }
        thread::sleep(Duration::from_secs(1));
    }
}

/// Gives the pool back to its home under verified writes, through the
/// product's `cluster.giveback` on the current owner. Returns the figures.
fn giveback(lab: &Lab, facts: &HostFacts, c: &mut Checks) -> Result<Value, LabError> {
    let (owner, home) = owner(lab)?;
    if owner == home {
        return Ok(json!({"skipped": "the pool is home"}));
    }
    let n = timeline_len(lab, &owner);
    let w = Writer::start(lab, facts)?;
    let at = w.at();
    let r = call(lab, &owner, "cluster.giveback", &json!({}));
    let done = w.at();
    thread::sleep(Duration::from_secs(5));
    let v = w.stop(lab)?;
    let r = r?;
    let entry = wait_entry(lab, &owner, n, Duration::from_secs(30))?;
    c.check(
        "giveback_ok",
        entry["ok"] == json!(true),
        format!("{r} {}", entry["steps"]),
    );
    let (after, _) = self::owner(lab)?;
    c.check(
        "pool_home_after_giveback",
        after == home,
        format!("owner {after}, home {home}"),
    );
    let host = host_figures(c, "giveback", &v, (at - 1.0, done + 2.0));
    Ok(json!({"from": owner, "to": home, "seconds": done - at,
              "steps_ms": steps(&entry), "action_id": entry["action_id"], "host": host}))
}

/// What [`failover_under_writes`] saw: `cluster.failover`'s answer, when
/// it was asked and answered (the writer's clock), and the writer's result.
type UnderWrites = (Result<Value, LabError>, f64, f64, Result<Value, LabError>);

/// `cluster.failover` of the pool on `from` while H writes and verifies,
/// the writes kept going 5 s past the answer.
fn failover_under_writes(
    lab: &Lab,
    facts: &HostFacts,
    from: &str,
) -> Result<UnderWrites, LabError> {
    let w = Writer::start(lab, facts)?;
    let at = w.at();
    let r = call(lab, from, "cluster.failover", &json!({"pool": POOL}));
    let done = w.at();
    thread::sleep(Duration::from_secs(5));
    Ok((r, at, done, w.stop(lab)))
}

/// Scenario 5: planned failover of the pool to the partner with
/// `cluster.failover`, then `cluster.giveback`, both under verified writes.
fn planned(lab: &Lab, facts: &HostFacts) -> Result<Outcome, LabError> {
    let mut c = Checks::new();
    let (from, _) = owner(lab)?;
    let to = partner_of(&from);
    let n = timeline_len(lab, &from);
    let (r, at, done, v) = failover_under_writes(lab, facts, &from)?;
    let v = v?;
    r?;
    let entry = wait_entry(lab, &from, n, Duration::from_secs(30))?;
    c.check(
        "failover_ok",
        entry["ok"] == json!(true),
        entry["steps"].to_string(),
    );
    let (after, _) = owner(lab)?;
    c.check(
        "pool_moved",
        after == to,
        format!("owner {after}, expected {to}"),
    );
    let host = host_figures(&mut c, "failover", &v, (at - 1.0, done + 2.0));
    let back = giveback(lab, facts, &mut c)?;
    Ok(c.outcome(
        "planned",
        json!({
            "failover": {"from": from, "to": to, "seconds": done - at,
                         "steps_ms": steps(&entry), "timeline": entry["steps"], "action_id": entry["action_id"], "host": host},
            "giveback": back,
        }),
    ))
}

/// The handover's rollback: an administrator has locked the partner's
/// configuration (`config.lock`), so a planned failover stops at the
/// record, after the owner went standby. The owner must be recorded again
/// (under a newer epoch, on its own keeper since the partner refuses) and
/// set active again: hosts pause for the attempt, see no error, and the
/// pool stays where it was. Then the lock is lifted and the partner must
/// agree on the owner.
fn rollback(lab: &Lab, facts: &HostFacts) -> Result<Outcome, LabError> {
    let mut c = Checks::new();
    let (from, _) = owner(lab)?;
    let to = partner_of(&from);
    let reason = "lab: rollback scenario";
    call(lab, to, "config.lock", &json!({"reason": reason}))?;
    let n = timeline_len(lab, &from);
    let (r, at, done, v) = failover_under_writes(lab, facts, &from)?;
    // Another duplexctl process than the one that locked: only its owner
    // or force lifts a lock.
    let unlocked = call(
        lab,
        to,
        "config.unlock",
        &json!({"reason": reason, "force": true}),
    );
    let v = v?;
    unlocked?;
    c.check(
        "failover_refused",
        r.as_ref()
            .err()
            .is_some_and(|e| e.to_string().contains("lock")),
        format!("{r:?}"),
    );
    let entry = wait_entry(lab, &from, n, Duration::from_secs(30))?;
    let step_ok = |name: &str| step_ok(&entry, name);
    c.check(
        "rolled_back",
        entry["ok"] == json!(false)
            && step_ok("standby")
            && step_ok("rollback: record")
            && step_ok("rollback: active")
            && !step_ok("pool.export"),
        entry["steps"].to_string(),
    );
    // Both keepers end with the owner recorded again (the partner takes
    // it by replication once unlocked, or while locked: replication is
    // not a local change).
    let agreed = (0..30).find_map(|_| {
        let owners: Vec<String> = ["A", "B"]
            .iter()
            .map(|vm| {
                call(lab, vm, "config.get", &json!({}))
                    .ok()
                    .and_then(|v| {
                        v["config"]["pool"]
                            .as_array()?
                            .iter()
                            .find(|p| p["name"] == POOL)?["owner"]
                            .as_str()
                            .map(str::to_string)
                    })
                    .unwrap_or_default()
            })
            .collect();
        if owners.iter().all(|o| *o == from) {
            Some(owners)
        } else {
            thread::sleep(Duration::from_secs(1));
            None
        }
    });
    c.check(
        "owner_unchanged_on_both",
        agreed.is_some(),
        format!("owners {agreed:?}, expected {from}"),
    );
    let states = appliance::states(lab);
    c.check(
        "owner_active_again",
        access_state(lab, &from) == Some("active".into())
            && access_state(lab, to) == Some("standby".into()),
        states.clone(),
    );
    let host = host_figures(&mut c, "rollback", &v, (at - 1.0, done + 2.0));
    Ok(c.outcome(
        "rollback",
        json!({
            "failover": {"from": from, "to": to, "seconds": done - at,
                         "error": r.err().map(|e| e.to_string()),
                         "steps_ms": steps(&entry), "timeline": entry["steps"],
                         "action_id": entry["action_id"], "host": host},
        }),
    ))
}

/// A planned failover whose import fails on the partner after the export:
/// the partner no longer sees the pool's disk (the PR disk deleted from
/// its kernel, or `shelf0` unplugged). The pool, imported nowhere, must
/// come back: recorded for the owner again, the partner's hand-back
/// refused (it sees no such pool), the owner takes it by epoch and serves
/// it again. Hosts pause, see no error; then the disk comes back.
fn import_fails(lab: &Lab, facts: &HostFacts) -> Result<Outcome, LabError> {
    let mut c = Checks::new();
    let (from, _) = owner(lab)?;
    let to = partner_of(&from);
    let pr = crate::prdisk::count() > 0;
    if pr {
        lab::exec_ok(
            lab,
            to,
            &[
                "sh",
                "/run/duplex-lab/payload/scsi.sh",
                "delete",
                &crate::prdisk::by_id(0),
            ],
            Duration::from_secs(60),
        )?;
    } else {
        crate::fault::pull(lab, to, "shelf0", crate::fault::DiskFault::Vanish)?;
    }
    let n = timeline_len(lab, &from);
    let (r, at, done, v) = failover_under_writes(lab, facts, &from)?;
    let healed = if pr {
        lab::exec_ok(
            lab,
            to,
            &["sh", "/run/duplex-lab/payload/scsi.sh", "rescan"],
            Duration::from_secs(60),
        )
        .map(|_| ())
    } else {
        crate::fault::push(lab, to, "shelf0")
    };
    let v = v?;
    healed?;
    c.check("failover_refused", r.is_err(), format!("{r:?}"));
    let entry = wait_entry(lab, &from, n, Duration::from_secs(30))?;
    let step_ok = |name: &str| step_ok(&entry, name);
    c.check(
        "handed_back",
        entry["ok"] == json!(false)
            && step_ok("pool.export")
            && step_ok("rollback: record")
            && step_ok("rollback: pool.takeover")
            && step_ok("rollback: active"),
        entry["steps"].to_string(),
    );
    let (owner_now, _) = owner(lab)?;
    c.check(
        "owner_unchanged",
        owner_now == from,
        format!("owner {owner_now}, expected {from}"),
    );
    c.check(
        "owner_active_again",
        access_state(lab, &from) == Some("active".into())
            && access_state(lab, to) == Some("standby".into()),
        appliance::states(lab),
    );
    let host = host_figures(&mut c, "import_fails", &v, (at - 1.0, done + 2.0));
    Ok(c.outcome(
        "import-fails",
        json!({
            "failover": {"from": from, "to": to, "seconds": done - at,
                         "error": r.err().map(|e| e.to_string()),
                         "steps_ms": steps(&entry), "timeline": entry["steps"],
                         "action_id": entry["action_id"], "host": host},
        }),
    ))
}

/// The timeline entry has a step `name` that succeeded.
fn step_ok(entry: &Value, name: &str) -> bool {
    entry["steps"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|s| s["name"] == name && s["ok"] == json!(true))
}

/// The demo pool's access state on `vm` (`target.access_states`).
fn access_state(lab: &Lab, vm: &str) -> Option<String> {
    call(lab, vm, "target.access_states", &Value::Null)
        .ok()?
        .pointer(&format!("/pools/{POOL}/state"))?
        .as_str()
        .map(str::to_string)
}

/// How the owner is taken away in [`unplanned`].
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The plug pulled (QEMU killed).
    Kill,
    /// The CPU paused past `suspect_timeout`; the survivor's fence powers
    /// it off through its BMC, so it never runs again in this boot.
    Freeze,
    /// The kernel panics (sysrq `c`, `kernel.panic=0`): the emulated
    /// hardware keeps running, the heartbeat stops with the kernel.
    Panic,
    /// The heartbeat daemon stopped (`SIGSTOP`): the rest of the
    /// controller runs and serves, nothing pets the watchdog.
    HeartbeatStopped,
    /// Every shelf disk fails I/O on the owner only (its path to the shelf
    /// lost); the partner still reads them. The owner stops itself and the
    /// partner fences it and takes over.
    ShelfLost,
    /// The owner's targets daemon crash-loops (the kernel still serves
    /// what it built): past `targets_grace` the owner stops itself and the
    /// partner fences it and takes over.
    TargetsDown,
}

impl Fault {
    fn name(self, bmc: Bmc) -> &'static str {
        match (self, bmc) {
            (Fault::Kill, Bmc::Up) => "kill",
            (Fault::Kill, Bmc::Blocked) => "fence-fails",
            (Fault::Kill, Bmc::CutPr) => "pr-fence",
            (Fault::Freeze, _) => "freeze",
            (Fault::Panic, _) => "panic",
            (Fault::HeartbeatStopped, _) => "hb-stop",
            (Fault::ShelfLost, _) => "shelf-lost",
            (Fault::TargetsDown, _) => "targets-down",
        }
    }
}

/// The survivor's way to the victim's BMC in [`unplanned`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bmc {
    /// Reachable: the ipmi agent fences.
    Up,
    /// Cut for [`FENCE_BLOCKED`]: every fence agent fails, so no takeover
    /// until it is back (a lab without PR disks: scsi_pr would fence).
    Blocked,
    /// Cut until the takeover: ipmi fails and scsi_pr, the next agent,
    /// fences on the PR disk the demo pool lives on.
    CutPr,
}

/// Scenarios 1, 2, 11, 12, 13, 15 and `pr-fence`: the owner killed,
/// frozen, panicked, its heartbeat stopped or its shelf lost under
/// verified writes; the partner must detect, fence (IPMI), take over, and
/// the host must see no error. With [`Bmc::Blocked`], the survivor's
/// management link (its only way to the victim's BMC) is down for
/// [`FENCE_BLOCKED`] first: every fence agent fails, so there must be no
/// takeover and an alert, and the takeover follows once the BMC answers
/// again. With [`Bmc::CutPr`] it is down until the takeover, which
/// scsi_pr must have fenced. Then the owner is powered on, rejoins, and
/// gets its pool back.
fn unplanned(lab: &Lab, facts: &HostFacts, fault: Fault, bmc: Bmc) -> Result<Outcome, LabError> {
    unplanned_then(lab, facts, fault, bmc, &|_, _| Ok(Value::Null))
}

/// A check run on the survivor's side right after a takeover, before the
/// victim rejoins; its figures go in the report as `after_takeover`.
type AfterTakeover<'a> = &'a dyn Fn(&Lab, &mut Checks) -> Result<Value, LabError>;

/// [`unplanned`] with `after` run right after the takeover.
fn unplanned_then(
    lab: &Lab,
    facts: &HostFacts,
    fault: Fault,
    bmc: Bmc,
    after_takeover: AfterTakeover,
) -> Result<Outcome, LabError> {
    let pr = crate::prdisk::count() > 0;
    match bmc {
        Bmc::Blocked if pr => {
            return Err(LabError::State(format!(
                "{} needs a lab without PR disks: scsi_pr would fence",
                fault.name(bmc)
            )))
        }
        // The pool would stay readable on its PR disk: nothing is lost.
        _ if pr && matches!(fault, Fault::ShelfLost) => {
            return Err(LabError::State(
                "shelf-lost needs a lab without PR disks (it pulls the virtio shelf)".into(),
            ))
        }
        Bmc::CutPr if !pr => {
            return Err(LabError::State(
                "pr-fence needs PR disks (DUPLEX_LAB_PR_DISKS=1 at boot)".into(),
            ))
        }
        _ => {}
    }
    let mut c = Checks::new();
    let (victim, _) = owner(lab)?;
    let survivor = partner_of(&victim);
    let n = timeline_len(lab, survivor);
    let since = guest_time(lab, survivor)?;
    let w = Writer::start(lab, facts)?;
    if bmc != Bmc::Up {
        lab::link(lab, survivor, "mgmt0", false)?;
    }
    let fault_at = w.at();
    let fault_host = crate::events::now();
    let t = Instant::now();
    match fault {
        Fault::Kill => lab::power(lab, &victim, Power::Kill)?,
        Fault::Freeze => lab::power(lab, &victim, Power::Freeze)?,
        Fault::Panic => {
            crate::fault::panic(lab, &victim)?;
        }
        Fault::HeartbeatStopped => crate::fault::hang(lab, &victim, "duplex-heartbeat")?,
        Fault::TargetsDown => crate::fault::crash_loop_targets(lab, &victim)?,
        Fault::ShelfLost => {
            // Fail, not vanish: all at once, as a cut cable does (a vanish
            // waits for the guest to acknowledge each unplug). The fence
            // powers the victim off; it boots again with every disk.
            for disk in lab::SHELF {
                crate::fault::pull(lab, &victim, disk, crate::fault::DiskFault::Fail)?;
            }
        }
    }
    let mut blocked = Value::Null;
    if bmc == Bmc::Blocked {
        let mut phases = Vec::new();
        while t.elapsed() < FENCE_BLOCKED {
            phases.push(json!({"t_s": t.elapsed().as_secs_f64(),
                               survivor: appliance::phase(lab, survivor)}));
            thread::sleep(Duration::from_secs(3));
        }
        let failed = journal_count(lab, survivor, &since, "every fence agent failed")?;
        let taken = timeline_len(lab, survivor) != n;
        let (owner_now, _) = owner(lab)?;
        c.check(
            "no_takeover_without_a_fence",
            !taken && owner_now == victim,
            format!("timeline grew: {taken}; owner {owner_now}"),
        );
        c.check(
            "every_agent_failed_alert",
            failed > 0,
            format!("'every fence agent failed' alerts on {survivor}: {failed}"),
        );
        let wd = if matches!(fault, Fault::HeartbeatStopped) {
            // Nothing pets the watchdog: it must have reset the victim.
            let ev = crate::events::wait_for(
                lab,
                &victim,
                "WATCHDOG",
                fault_host,
                Duration::from_secs(1),
            )?;
            c.check("victim_watchdog_fired", ev.is_some(), format!("{ev:?}"));
            ev.map(|e| e.host_ts - fault_host)
        } else {
            None
        };
        lab::link(lab, survivor, "mgmt0", true)?;
        blocked = json!({"seconds": FENCE_BLOCKED.as_secs(), "phases": phases,
                         "agent_failed_alerts": failed, "watchdog_after_s": wd});
    }
    let entry = wait_entry(lab, survivor, n, TAKEOVER_WITHIN);
    let taken_s = t.elapsed().as_secs_f64();
    let taken_at = w.at();
    let mut pr_fence = Value::Null;
    if bmc == Bmc::CutPr {
        lab::link(lab, survivor, "mgmt0", true)?;
        pr_fence = pr_after_takeover(lab, survivor, entry.as_ref().ok(), &mut c)?;
    }
    // Writes go on through the survivor for a while before the verify.
    thread::sleep(Duration::from_secs(8));
    let v = w.stop(lab)?;
    let entry = entry?;
    c.check(
        "takeover_ok",
        entry["ok"] == json!(true) && entry["kind"] == "takeover",
        entry["steps"].to_string(),
    );
    let powered = lab::is_running(lab, &victim)?;
    c.check(
        "victim_powered_off_by_fence",
        !powered,
        format!("{victim} running: {powered}"),
    );
    let (after, _) = owner(lab)?;
    c.check(
        "survivor_owns_pool",
        after == survivor,
        format!("owner {after}"),
    );
    let host = host_figures(&mut c, "takeover", &v, (fault_at - 1.0, taken_at + 2.0));
    let survivor_status = call(lab, survivor, "cluster.status", &Value::Null)?;
    // What an administrator sees: the same takeover through duplexctl.
    let cli = lab::exec_ok(
        lab,
        survivor,
        &["duplexctl", "cluster", "timeline"],
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| e.to_string());
    let action = entry["action_id"].as_str().unwrap_or("?");
    c.check(
        "duplexctl_cluster_timeline_shows_it",
        cli.contains(&format!("takeover {victim} -> {survivor}")) && cli.contains(action),
        cli.clone(),
    );
    let after_takeover = after_takeover(lab, &mut c)?;
    let (rejoin, back) = rejoin_and_giveback(lab, facts, &victim, &mut c)?;
    if bmc == Bmc::CutPr {
        // The victim registered again once it was a member, or the
        // giveback's import could not have written under the survivor's
        // reservation.
        let (keys, holder) = pr_state(lab, &victim)?;
        c.check(
            "pr_both_keys_after_rejoin",
            keys.len() == 2 && holder.is_some(),
            format!("keys {keys:?}, reservation {holder:?}"),
        );
        pr_fence["after_giveback"] = json!({"keys": keys, "holder": holder});
    }
    Ok(c.outcome(
        fault.name(bmc),
        json!({
            "after_takeover": after_takeover,
            "victim": victim,
            "survivor": survivor,
            "fence_blocked": blocked,
            "pr_fence": pr_fence,
            "takeover": {
                "seen_after_s": taken_s,
                "steps_ms": steps(&entry),
                "timeline": entry["steps"],
                "epoch": entry["epoch"],
                "action_id": entry["action_id"],
                "detection_ms": survivor_status.pointer("/state/last_detection_ms"),
            },
            "host": host,
            "rejoin": rejoin,
            "giveback": back,
        }),
    ))
}

/// The keys registered on the first PR disk and the reservation holder's
/// key, as `vm` reads them with the stock sg_persist.
fn pr_state(lab: &Lab, vm: &str) -> Result<(Vec<String>, Option<String>), LabError> {
    let disk = crate::prdisk::by_id(0);
    let read = |what: &str| {
        lab::exec_ok(
            lab,
            vm,
            &["sg_persist", "--no-inquiry", "--in", what, &disk],
            Duration::from_secs(30),
        )
    };
    let keys = read("--read-keys")?
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("0x"))
        .map(str::to_string)
        .collect();
    let res = read("--read-reservation")?;
    let holder = res
        .lines()
        .find_map(|l| l.trim().strip_prefix("Key="))
        .map(str::to_string);
    Ok((keys, holder))
}

/// `pr-fence` right after the takeover: the survivor's timeline names the
/// scsi_pr fence, and the PR disk holds the survivor's key alone, with
/// its reservation.
fn pr_after_takeover(
    lab: &Lab,
    survivor: &str,
    entry: Option<&Value>,
    c: &mut Checks,
) -> Result<Value, LabError> {
    let fence = entry
        .and_then(|e| e["steps"].as_array())
        .and_then(|s| {
            s.iter()
                .find(|s| s["name"].as_str().is_some_and(|n| n.starts_with("fence")))
        })
        .cloned()
        .unwrap_or(Value::Null);
    c.check(
        "fenced_by_scsi_pr",
        fence["name"] == "fence (scsi_pr)" && fence["ok"] == json!(true),
        fence.to_string(),
    );
    let (keys, holder) = pr_state(lab, survivor)?;
    c.check(
        "pr_only_the_survivors_key",
        keys.len() == 1 && holder.as_ref() == keys.first(),
        format!("keys {keys:?}, reservation {holder:?}"),
    );
    Ok(json!({"fence_step": fence, "keys": keys, "holder": holder}))
}

/// Rejoin: the BMC powers the fenced `victim` on; it reads the fence
/// message, waits for the survivor's acknowledgement, owns nothing; then
/// its pool goes back home. Returns the rejoin and giveback figures.
fn rejoin_and_giveback(
    lab: &Lab,
    facts: &HostFacts,
    victim: &str,
    c: &mut Checks,
) -> Result<(Value, Value), LabError> {
    let t = Instant::now();
    lab::power(lab, victim, Power::Start)?;
    let booted_s = t.elapsed().as_secs_f64();
    let normal_s = wait_normal(lab, Duration::from_secs(300))?;
    let back = giveback(lab, facts, c)?;
    Ok((
        json!({"boot_s": booted_s, "normal_after_s": normal_s}),
        back,
    ))
}

/// Scenario 3: both interconnect links of the owner cut under writes. The
/// partner's slot keeps advancing, so nobody fences: both wait with the
/// configuration locked, hosts keep writing; the links return and both go
/// back to `normal` with the pool where it was.
fn ic_cut(lab: &Lab, facts: &HostFacts) -> Result<Outcome, LabError> {
    let mut c = Checks::new();
    let (owner_vm, _) = owner(lab)?;
    let n = [timeline_len(lab, "A"), timeline_len(lab, "B")];
    let w = Writer::start(lab, facts)?;
    for nic in ["ic0", "ic1"] {
        lab::link(lab, &owner_vm, nic, false)?;
    }
    // Long past suspect_timeout and ic_timeout: a wrong decision would show.
    let t = Instant::now();
    let mut phases = Vec::new();
    let mut locked = false;
    while t.elapsed() < Duration::from_secs(20) {
        let pa = appliance::phase(lab, "A");
        let pb = appliance::phase(lab, "B");
        phases.push(json!({"t_s": t.elapsed().as_secs_f64(), "A": pa, "B": pb}));
        let is_locked = |vm: &str| {
            call(lab, vm, "config.status", &json!({})).is_ok_and(|s| s["locked"] == json!(true))
        };
        locked |= is_locked("A") && is_locked("B");
        thread::sleep(Duration::from_secs(2));
    }
    let waiting = phases
        .iter()
        .any(|p| p["A"] == "waiting" && p["B"] == "waiting");
    for nic in ["ic0", "ic1"] {
        lab::link(lab, &owner_vm, nic, true)?;
    }
    let normal_s = wait_normal(lab, Duration::from_secs(60));
    thread::sleep(Duration::from_secs(3));
    let v = w.stop(lab)?;
    c.check("both_waiting_while_cut", waiting, json!(phases).to_string());
    c.check(
        "config_locked_while_cut",
        locked,
        "config.status locked on both at one sample",
    );
    no_takeover(lab, &mut c, n);
    c.check(
        "normal_after_links_return",
        normal_s.is_ok(),
        format!("{normal_s:?}"),
    );
    let (after, _) = owner(lab)?;
    c.check(
        "pool_stayed",
        after == owner_vm,
        format!("owner {after}, was {owner_vm}"),
    );
    nobody_fenced(lab, &mut c)?;
    let host = host_figures(&mut c, "ic_cut", &v, (0.0, 1e9));
    Ok(c.outcome(
        "ic-cut",
        json!({
            "owner": owner_vm,
            "host": host,
        }),
    ))
}

/// `vm`'s clock in seconds since the epoch (for `journalctl --since @T`).
fn guest_time(lab: &Lab, vm: &str) -> Result<String, LabError> {
    let out = lab::exec_ok(lab, vm, &["date", "+%s"], Duration::from_secs(30))?;
    Ok(out.trim().to_string())
}

/// How many of `vm`'s heartbeat log lines since `since` (guest seconds)
/// contain `needle` (the service logs every alert it raises). Bounded by
/// time: the agent returns a capped amount of output, and the whole
/// journal of a long run is more.
fn journal_count(lab: &Lab, vm: &str, since: &str, needle: &str) -> Result<usize, LabError> {
    let since = format!("@{since}");
    let out = lab::exec_ok(
        lab,
        vm,
        &[
            "journalctl",
            "-u",
            "duplex-heartbeat.service",
            "-o",
            "short-precise",
            "--no-pager",
            "--since",
            &since,
        ],
        Duration::from_secs(60),
    )?;
    Ok(out.lines().filter(|l| l.contains(needle)).count())
}

/// Scenario 4: one interconnect link of the owner cut under writes. The
/// other link still carries the beats: an alert on both controllers and
/// nothing else (no waiting, no lock, no takeover); the alert clears when
/// the link returns.
fn ic_one(lab: &Lab, facts: &HostFacts) -> Result<Outcome, LabError> {
    let mut c = Checks::new();
    let (owner_vm, _) = owner(lab)?;
    let n = [timeline_len(lab, "A"), timeline_len(lab, "B")];
    let since = [guest_time(lab, "A")?, guest_time(lab, "B")?];
    let down = |i: usize, vm: &str| {
        journal_count(
            lab,
            vm,
            &since[i],
            &format!("interconnect link 0 to {} down", partner_of(vm)),
        )
    };
    let w = Writer::start(lab, facts)?;
    lab::link(lab, &owner_vm, "ic0", false)?;
    let t = Instant::now();
    let mut phases = Vec::new();
    let mut locked = false;
    // At least three samples however slow the calls are under TCG.
    while t.elapsed() < Duration::from_secs(15) || phases.len() < 3 {
        let pa = appliance::phase(lab, "A");
        let pb = appliance::phase(lab, "B");
        phases.push(json!({"t_s": t.elapsed().as_secs_f64(), "A": pa, "B": pb}));
        for vm in ["A", "B"] {
            locked |= call(lab, vm, "config.status", &json!({}))
                .is_ok_and(|s| s["locked"] == json!(true));
        }
        thread::sleep(Duration::from_secs(2));
    }
    let alerts = [down(0, "A")?, down(1, "B")?];
    lab::link(lab, &owner_vm, "ic0", true)?;
    thread::sleep(Duration::from_secs(5));
    let ages: Vec<Value> = ["A", "B"]
        .iter()
        .map(|vm| {
            call(lab, vm, "cluster.status", &Value::Null)
                .ok()
                .and_then(|s| s.pointer("/state/link_age_ms").cloned())
                .unwrap_or(Value::Null)
        })
        .collect();
    let v = w.stop(lab)?;
    let normal = phases
        .iter()
        .all(|p| p["A"] == "normal" && p["B"] == "normal");
    c.check("both_normal_while_cut", normal, json!(phases).to_string());
    c.check(
        "link_down_alert_on_both",
        alerts[0] > 0 && alerts[1] > 0,
        format!("'link 0 down' alerts during the cut (A, B): {alerts:?}"),
    );
    c.check("config_not_locked", !locked, "config.status never locked");
    no_takeover(lab, &mut c, n);
    let fresh = ages.iter().all(|a| {
        a.as_array().is_some_and(|l| {
            !l.is_empty() && l.iter().all(|x| x.as_u64().is_some_and(|ms| ms < 2000))
        })
    });
    c.check(
        "both_links_up_after_return",
        fresh,
        format!("link ages {}", json!(ages)),
    );
    let host = host_figures(&mut c, "ic_one", &v, (0.0, 1e9));
    Ok(c.outcome(
        "ic-one",
        json!({
            "owner": owner_vm,
            "host": host,
        }),
    ))
}

/// The owner's daemons `services` kills one at a time; the heartbeat comes
/// last, on its own terms (its silence may cost the controller).
const DAEMONS: &[&str] = &[
    "duplex-router",
    "duplex-config-keeper",
    "duplex-pool-manager",
    "duplex-targets",
];

/// systemd's restart count of `unit` on `vm`.
fn restarts(lab: &Lab, vm: &str, unit: &str) -> Result<u64, LabError> {
    let out = lab::exec_ok(
        lab,
        vm,
        &["systemctl", "show", "-p", "NRestarts", "--value", unit],
        Duration::from_secs(30),
    )?;
    out.trim()
        .parse()
        .map_err(|_| LabError::State(format!("{vm}: NRestarts of {unit}: {out:?}")))
}

/// Kills `unit` on `vm` with SIGKILL and waits until systemd restarted it
/// and it is active again (a `Type=notify` unit is active once it said
/// READY). Returns the seconds that took, or `None` after `within`.
fn kill_unit(lab: &Lab, vm: &str, unit: &str, within: Duration) -> Result<Option<f64>, LabError> {
    let before = restarts(lab, vm, unit)?;
    let t = Instant::now();
    lab::exec_ok(
        lab,
        vm,
        &["systemctl", "kill", "--signal=SIGKILL", unit],
        Duration::from_secs(30),
    )?;
    while t.elapsed() < within {
        let active = lab::exec(
            lab,
            vm,
            &crate::cmd::argv(&["systemctl", "is-active", "--quiet", unit]),
            Duration::from_secs(30),
        )
        .is_ok_and(|r| r.code == Some(0));
        if active && restarts(lab, vm, unit)? > before {
            return Ok(Some(t.elapsed().as_secs_f64()));
        }
        thread::sleep(Duration::from_millis(500));
    }
    Ok(None)
}

/// Scenario 7: each daemon of the owner killed (SIGKILL) under verified
/// writes. systemd restarts it; no takeover, both controllers stay in
/// `normal`, the host sees no error. Then the heartbeat daemon itself:
/// either it is back before the partner decides (no takeover), or the
/// partner takes over only after a confirmed fence, and the owner rejoins.
fn services(lab: &Lab, facts: &HostFacts) -> Result<Outcome, LabError> {
    let mut c = Checks::new();
    let (owner_vm, _) = owner(lab)?;
    let partner = partner_of(&owner_vm);
    let n = [timeline_len(lab, "A"), timeline_len(lab, "B")];
    let w = Writer::start(lab, facts)?;
    let mut daemons = Vec::new();
    for d in DAEMONS {
        let unit = format!("{d}.service");
        let back = kill_unit(lab, &owner_vm, &unit, Duration::from_secs(90))?;
        c.check(
            &format!("{d}_restarted"),
            back.is_some(),
            format!("active again after {back:?} s"),
        );
        let normal = wait_normal(lab, Duration::from_secs(60));
        c.check(
            &format!("{d}_both_normal_after"),
            normal.is_ok(),
            format!("{normal:?}"),
        );
        daemons.push(json!({"daemon": d, "back_after_s": back}));
        // The host keeps writing through the restarted controller.
        thread::sleep(Duration::from_secs(5));
    }
    no_takeover(lab, &mut c, n);
    let (after, _) = owner(lab)?;
    c.check(
        "pool_stayed",
        after == owner_vm,
        format!("owner {after}, was {owner_vm}"),
    );
    let hb_at = w.at();
    let back = kill_unit(
        lab,
        &owner_vm,
        "duplex-heartbeat.service",
        Duration::from_secs(90),
    )
    .unwrap_or(None);
    // Long enough for the partner to decide either way.
    thread::sleep(Duration::from_secs(15));
    let took = timeline_len(lab, partner) > n[if partner == "A" { 0 } else { 1 }];
    let mut heartbeat = json!({"back_after_s": back, "partner_took_over": took});
    if took {
        let entry = wait_entry(
            lab,
            partner,
            n[if partner == "A" { 0 } else { 1 }],
            TAKEOVER_WITHIN,
        )?;
        let fenced = entry["steps"].as_array().into_iter().flatten().any(|s| {
            s["name"].as_str().is_some_and(|n| n.starts_with("fence")) && s["ok"] == json!(true)
        });
        c.check(
            "heartbeat_takeover_only_after_a_confirmed_fence",
            fenced && entry["ok"] == json!(true),
            entry["steps"].to_string(),
        );
        heartbeat["timeline"] = entry["steps"].clone();
    } else {
        c.check(
            "heartbeat_restarted",
            back.is_some(),
            format!("active again after {back:?} s"),
        );
        let normal = wait_normal(lab, Duration::from_secs(60));
        c.check(
            "heartbeat_both_normal_after",
            normal.is_ok(),
            format!("{normal:?}"),
        );
    }
    thread::sleep(Duration::from_secs(5));
    let done = w.at();
    let v = w.stop(lab)?;
    let host = host_figures(&mut c, "services", &v, (0.0, 1e9));
    let hb_host = host_figures(&mut c, "heartbeat_kill", &v, (hb_at - 1.0, done));
    heartbeat["host"] = hb_host;
    if took && !lab::is_running(lab, &owner_vm)? {
        let (rejoin, back) = rejoin_and_giveback(lab, facts, &owner_vm, &mut c)?;
        heartbeat["rejoin"] = rejoin;
        heartbeat["giveback"] = back;
    }
    Ok(c.outcome(
        "services",
        json!({
            "owner": owner_vm,
            "daemons": daemons,
            "heartbeat": heartbeat,
            "host": host,
        }),
    ))
}

/// Scenario 8: heartbeat disks lost on the owner under verified writes.
/// hb0 vanishes (hot-unplug): an alert, nothing else. hb1 starts failing
/// I/O as well: a majority lost, a critical alert, and still nothing
/// decided while the interconnect answers (no lock, no fence, no
/// takeover). Both come back: the heartbeat reopens them (hb0 is a new
/// device node) and says so.
fn hb_disks(lab: &Lab, facts: &HostFacts) -> Result<Outcome, LabError> {
    use crate::fault::{self, DiskFault};
    let mut c = Checks::new();
    let (owner_vm, _) = owner(lab)?;
    let n = [timeline_len(lab, "A"), timeline_len(lab, "B")];
    let since = guest_time(lab, &owner_vm)?;
    let count = |needle: &str| journal_count(lab, &owner_vm, &since, needle);
    let w = Writer::start(lab, facts)?;
    let mut phases = Vec::new();
    let mut locked = false;
    let watch = |phases: &mut Vec<Value>, locked: &mut bool, secs: u64| {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(secs) {
            phases.push(json!({"A": appliance::phase(lab, "A"), "B": appliance::phase(lab, "B")}));
            for vm in ["A", "B"] {
                *locked |= call(lab, vm, "config.status", &json!({}))
                    .is_ok_and(|s| s["locked"] == json!(true));
            }
            thread::sleep(Duration::from_secs(2));
        }
    };
    fault::pull(lab, &owner_vm, "hb0", DiskFault::Vanish)?;
    watch(&mut phases, &mut locked, 12);
    let one = count("heartbeat disk 0 not usable")?;
    c.check(
        "hb0_lost_alert",
        one > 0,
        format!("'heartbeat disk 0 not usable' on {owner_vm}: {one}"),
    );
    fault::pull(lab, &owner_vm, "hb1", DiskFault::Fail)?;
    watch(&mut phases, &mut locked, 12);
    let majority = count("heartbeat disks usable: if the interconnect failed")?;
    c.check(
        "majority_lost_alert",
        majority > 0,
        format!("critical 'only 1 of 3' alerts on {owner_vm}: {majority}"),
    );
    fault::push(lab, &owner_vm, "hb1")?;
    fault::push(lab, &owner_vm, "hb0")?;
    watch(&mut phases, &mut locked, 12);
    let again = [
        count("heartbeat disk 0 usable again")?,
        count("heartbeat disk 1 usable again")?,
    ];
    c.check(
        "both_disks_usable_again",
        again.iter().all(|n| *n > 0),
        format!("'usable again' alerts for hb0, hb1: {again:?}"),
    );
    let v = w.stop(lab)?;
    let normal = phases
        .iter()
        .all(|p| p["A"] == "normal" && p["B"] == "normal");
    c.check("both_normal_throughout", normal, json!(phases).to_string());
    c.check("config_not_locked", !locked, "config.status never locked");
    no_takeover(lab, &mut c, n);
    let state = call(lab, &owner_vm, "cluster.status", &Value::Null)
        .ok()
        .and_then(|s| s.get("state").cloned())
        .unwrap_or(Value::Null);
    let disks = json!({"write_age_ms": state["write_age_ms"], "read_errors": state["read_errors"]});
    // hb0 came back as a new device node: its slot is written again only
    // if the heartbeat reopened it.
    let fresh = state["write_age_ms"]
        .as_array()
        .is_some_and(|a| a.len() == 3 && a.iter().all(|x| x.as_u64().is_some_and(|ms| ms < 3000)));
    c.check(
        "every_disk_written_again",
        fresh,
        format!("{owner_vm}: {disks}"),
    );
    let host = host_figures(&mut c, "hb_disks", &v, (0.0, 1e9));
    Ok(c.outcome(
        "hb-disks",
        json!({
            "owner": owner_vm,
            "alerts": {"hb0_lost": one, "majority_lost": majority, "usable_again": again},
            "disks_after": disks,
            "host": host,
        }),
    ))
}

/// Scenario 9: the owner's front-end link cut under verified writes. Its
/// heartbeat sees every front-end link down and, after
/// `frontend_grace`, moves the pool to the partner (a planned failover in
/// the owner's timeline, nobody fenced): the host gets its data back
/// through the partner alone. The link returns, the pool stays until the
/// giveback, which follows under writes.
fn fe_cut(lab: &Lab, facts: &HostFacts) -> Result<Outcome, LabError> {
    let mut c = Checks::new();
    let (owner_vm, _) = owner(lab)?;
    let partner = partner_of(&owner_vm);
    let n = timeline_len(lab, &owner_vm);
    let since = guest_time(lab, &owner_vm)?;
    let w = Writer::start(lab, facts)?;
    let cut_at = w.at();
    lab::link(lab, &owner_vm, "fe0", false)?;
    let entry = wait_entry(lab, &owner_vm, n, TAKEOVER_WITHIN);
    let moved_at = w.at();
    // The host writes through the partner for a while, then the link
    // comes back under writes.
    thread::sleep(Duration::from_secs(8));
    lab::link(lab, &owner_vm, "fe0", true)?;
    thread::sleep(Duration::from_secs(5));
    let v = w.stop(lab)?;
    let entry = entry?;
    c.check(
        "pools_moved_by_failover",
        entry["ok"] == json!(true) && entry["kind"] == "failover",
        entry["steps"].to_string(),
    );
    let (after, _) = owner(lab)?;
    c.check(
        "partner_owns_pool",
        after == partner,
        format!("owner {after}"),
    );
    let alerts = journal_count(lab, &owner_vm, &since, "every front-end link down")?;
    c.check(
        "front_end_alert",
        alerts > 0,
        format!("'every front-end link down' alerts on {owner_vm}: {alerts}"),
    );
    nobody_fenced(lab, &mut c)?;
    let normal = wait_normal(lab, Duration::from_secs(60));
    c.check("both_normal", normal.is_ok(), format!("{normal:?}"));
    let host = host_figures(&mut c, "fe_cut", &v, (cut_at - 1.0, moved_at + 2.0));
    let back = giveback(lab, facts, &mut c)?;
    Ok(c.outcome(
        "fe-cut",
        json!({
            "owner": owner_vm,
            "failover": {"from": owner_vm, "to": partner, "seconds": moved_at - cut_at,
                         "steps_ms": steps(&entry), "timeline": entry["steps"],
                         "action_id": entry["action_id"], "host": host},
            "giveback": back,
        }),
    ))
}

/// A stream of acknowledged configuration writes: one new host per
/// `config.apply` with `sync: true`, alternating between the controllers,
/// until stopped. Each name is kept once its apply answered.
struct ConfigWriter {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<String>>>,
    failed: Arc<AtomicU64>,
}

impl ConfigWriter {
    /// Starts writing hosts `<prefix>-1`, `<prefix>-2`, ...
    fn start(lab: &Lab, prefix: &str) -> ConfigWriter {
        let w = ConfigWriter {
            stop: Arc::new(AtomicBool::new(false)),
            acked: Arc::new(Mutex::new(Vec::new())),
            failed: Arc::new(AtomicU64::new(0)),
        };
        let (stop, acked, failed) = (
            Arc::clone(&w.stop),
            Arc::clone(&w.acked),
            Arc::clone(&w.failed),
        );
        let (lab, prefix) = (lab.clone(), prefix.to_string());
        // Detached: a call in flight when the power goes fails on its own,
        // and nothing is acknowledged after that.
        thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                i += 1;
                let vm = if i % 2 == 1 { "A" } else { "B" };
                let name = format!("{prefix}-{i}");
                let host = appliance::up(
                    "host",
                    json!({"name": name, "iqns": [format!("iqn.2026-12.io.duplex:{name}")]}),
                );
                match appliance::apply(&lab, vm, vec![host]) {
                    Ok(_) => lock(&acked).push(name),
                    Err(_) => {
                        failed.fetch_add(1, Ordering::SeqCst);
                        thread::sleep(Duration::from_millis(200));
                    }
                }
            }
        });
        w
    }

    /// Names acknowledged so far.
    fn acked(&self) -> Vec<String> {
        lock(&self.acked).clone()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Scenario 10: both controllers lose power at once under verified
/// writes and a stream of acknowledged configuration writes, and both come
/// back (each BMC powers its controller on). They must find each other,
/// the owner must serve its pool again with nobody fenced and no takeover,
/// the host's queued writes must complete and verify, and every
/// acknowledged `config.apply` must be on both controllers with equal
/// digests. `DUPLEX_LAB_POWER_CUTS` (default 1) cuts that many times in a
/// row. Killing QEMU keeps every write it already gave the host's page
/// cache, so this shows no missing flush (see `docs/config-keeper.md`).
fn power_cut(lab: &Lab, facts: &HostFacts) -> Result<Outcome, LabError> {
    let count: usize = std::env::var("DUPLEX_LAB_POWER_CUTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1);
    let mut c = Checks::new();
    let mut runs = Vec::new();
    for run in 1..=count {
        let label = if count == 1 {
            String::new()
        } else {
            format!("_{run}")
        };
        let r = power_cut_once(lab, facts, &mut c, run, &label)?;
        info!("power cut {run}/{count}: {r}");
        runs.push(r);
    }
    let report = if count == 1 {
        runs.pop().unwrap_or_default()
    } else {
        json!({"runs": runs})
    };
    Ok(c.outcome("power-cut", report))
}

/// One power cut of both controllers, its checks under `label`.
fn power_cut_once(
    lab: &Lab,
    facts: &HostFacts,
    c: &mut Checks,
    run: usize,
    label: &str,
) -> Result<Value, LabError> {
    let (owner_vm, _) = owner(lab)?;
    let w = Writer::start(lab, facts)?;
    let cw = ConfigWriter::start(lab, &format!("pc{run}"));
    // The cut lands with configuration writes going on, not before them.
    let t = Instant::now();
    while cw.acked().len() < 2 && t.elapsed() < Duration::from_secs(120) {
        thread::sleep(Duration::from_millis(200));
    }
    let cut_at = w.at();
    crate::fault::power_cut(lab)?;
    cw.stop.store(true, Ordering::SeqCst);
    let acked_at_cut = cw.acked().len();
    // The power stays off for a moment, as it would.
    thread::sleep(Duration::from_secs(5));
    let t = Instant::now();
    let starts: Vec<_> = ["A", "B"]
        .into_iter()
        .map(|vm| {
            let lab = lab.clone();
            thread::spawn(move || lab::power(&lab, vm, Power::Start))
        })
        .collect();
    for s in starts {
        s.join()
            .map_err(|_| LabError::State("power on thread panicked".into()))??;
    }
    let booted_s = t.elapsed().as_secs_f64();
    let normal = wait_normal(lab, Duration::from_secs(300));
    c.check(
        &format!("both_normal_after_power_returns{label}"),
        normal.is_ok(),
        format!("{normal:?}"),
    );
    let serving = appliance::wait_targets(lab, &owner_vm);
    c.check(
        &format!("owner_serves_again{label}"),
        serving.is_ok(),
        format!("{:?}", serving.as_ref().err()),
    );
    let serving_s = t.elapsed().as_secs_f64();
    // Writes resume through the owner for a while before the verify.
    thread::sleep(Duration::from_secs(15));
    let back_at = w.at();
    let v = w.stop(lab)?;
    let (after, _) = owner(lab)?;
    c.check(
        &format!("pool_stayed{label}"),
        after == owner_vm,
        format!("owner {after}, was {owner_vm}"),
    );
    nobody_fenced(lab, c)?;
    let config = config_after_cut(lab, c, label, &cw.acked(), cw.failed.load(Ordering::SeqCst));
    let host = host_figures(c, "power_cut", &v, (cut_at - 1.0, back_at));
    Ok(json!({
        "run": run,
        "owner": owner_vm,
        "power_on": {"booted_s": booted_s, "normal_after_s": normal.ok(),
                     "serving_after_s": serving_s},
        "config": json!({"acked_at_cut": acked_at_cut, "detail": config}),
        "host": host,
    }))
}

/// Every acknowledged configuration write is on both controllers, and both
/// hold the same state (equal digests, once replication settled).
fn config_after_cut(
    lab: &Lab,
    c: &mut Checks,
    label: &str,
    acked: &[String],
    failed: u64,
) -> Value {
    let mut missing = Vec::new();
    for vm in ["A", "B"] {
        match call(lab, vm, "config.get", &json!({"kind": "host"})) {
            Ok(v) => {
                let have: std::collections::BTreeSet<&str> = v["config"]["host"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|h| h["name"].as_str())
                    .collect();
                for n in acked {
                    if !have.contains(n.as_str()) {
                        missing.push(format!("{vm}:{n}"));
                    }
                }
            }
            Err(e) => missing.push(format!("{vm}: {e}")),
        }
    }
    c.check(
        &format!("acked_config_writes_kept{label}"),
        missing.is_empty(),
        format!("{} acknowledged; missing {missing:?}", acked.len()),
    );
    // Replication may still be shipping the last entries: wait a little.
    let t = Instant::now();
    let digests = loop {
        let d: Vec<Option<String>> = ["A", "B"]
            .iter()
            .map(|vm| {
                call(lab, vm, "config.digest", &json!({}))
                    .ok()
                    .and_then(|v| v["digest"].as_str().map(str::to_string))
            })
            .collect();
        if (d[0].is_some() && d[0] == d[1]) || t.elapsed() > Duration::from_secs(60) {
            break d;
        }
        thread::sleep(Duration::from_secs(2));
    };
    c.check(
        &format!("config_digests_match{label}"),
        digests[0].is_some() && digests[0] == digests[1],
        format!("{digests:?}"),
    );
    json!({"acked": acked.len(), "failed_calls": failed, "missing": missing,
           "digests_match": digests[0].is_some() && digests[0] == digests[1]})
}

/// Scenario 6: `DUPLEX_LAB_CYCLES` (default 20) cycles of `kill` (takeover,
/// rejoin, giveback) in a row, each with its checks; the report keeps each
/// cycle's figures and the spread.
fn cycles(lab: &Lab, facts: &HostFacts) -> Result<Outcome, LabError> {
    let count: usize = std::env::var("DUPLEX_LAB_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    // On a lab with PR disks, every cycle is a `pr-fence`: the PR key
    // preempted, registered again at rejoin, the giveback under the
    // survivor's reservation, again and again.
    let bmc = if crate::prdisk::count() > 0 {
        Bmc::CutPr
    } else {
        Bmc::Up
    };
    let mut c = Checks::new();
    let mut runs = Vec::new();
    for i in 1..=count {
        // A cycle that errs or fails leaves the lab in an unknown state:
        // stop there, and report the cycles so far with the failure.
        let o = match unplanned(lab, facts, Fault::Kill, bmc) {
            Ok(o) => o,
            Err(e) => {
                c.check(&format!("cycle_{i}"), false, e.to_string());
                let run = json!({"cycle": i, "ok": false, "error": e.to_string()});
                info!("cycle {i}/{count}: {run}");
                runs.push(run);
                break;
            }
        };
        let r = &o.report;
        let total: u64 = r["takeover"]["timeline"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["ms"].as_u64())
            .sum();
        let failed: Vec<Value> = r["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| c["ok"] != json!(true))
            .map(|c| c["check"].clone())
            .collect();
        c.check(
            &format!("cycle_{i}"),
            o.ok,
            format!("failed: {}", json!(failed)),
        );
        let pause = |p: &str| r["host"][p]["pause_ms"].clone();
        let run = json!({"cycle": i, "ok": o.ok, "victim": r["victim"],
                         "takeover_ms": total, "pause_ms": {"iscsi": pause("iscsi"), "nvme": pause("nvme")},
                         "giveback_s": r["giveback"]["seconds"], "failed": failed});
        info!("cycle {i}/{count}: {run}");
        runs.push(run);
        if !o.ok {
            break;
        }
    }
    let spread = |f: &dyn Fn(&Value) -> Option<f64>| {
        let mut v: Vec<f64> = runs.iter().filter_map(f).collect();
        v.sort_by(f64::total_cmp);
        json!({"min": v.first(), "median": v.get(v.len() / 2), "max": v.last()})
    };
    let spread = json!({
        "takeover_ms": spread(&|r| r["takeover_ms"].as_f64()),
        "iscsi_pause_ms": spread(&|r| r["pause_ms"]["iscsi"].as_f64()),
        "nvme_pause_ms": spread(&|r| r["pause_ms"]["nvme"].as_f64()),
    });
    Ok(c.outcome(
        "cycles",
        json!({
            "cycles": runs,
            "spread": spread,
        }),
    ))
}

/// Volumes `scale` adds to the demo's two (issue 15: 50 volumes over both
/// protocols; TrueNAS's own HA suite scales to 51 subsystems and 70
/// namespaces).
const SCALE_EXTRA: usize = 48;

/// Reads one 4 KiB block of every device H sees (every LU, both
/// protocols) with O_DIRECT; the failures, by device.
fn read_every_lu(lab: &Lab, devs: &[String]) -> Vec<String> {
    devs.iter()
        .filter_map(|d| {
            let arg = format!("if={d}");
            let r = lab::exec_ok(
                lab,
                "H",
                &[
                    "dd",
                    &arg,
                    "of=/dev/null",
                    "bs=4096",
                    "count=1",
                    "iflag=direct",
                ],
                Duration::from_secs(60),
            );
            r.err().map(|e| format!("{d}: {e}"))
        })
        .collect()
}

/// Scenario 14: the owner killed with 50 volumes exported (half over
/// iSCSI, half over NVMe/TCP). Before: H sees every LU through both
/// controllers. The takeover must bring all of them back: right after it,
/// H reads a block of every LU through the survivor. The demo volumes are
/// written and verified throughout, as in `kill`. The extra volumes stay
/// (run it last, or on a fresh lab).
fn scale(lab: &Lab, facts: &HostFacts) -> Result<Outcome, LabError> {
    // The writers stay on the demo's two volumes (512 MiB; the namespace
    // with nsid 1), also when an earlier run left the 48 others.
    let mut facts = facts.clone();
    facts.iscsi_devs.retain(|d| {
        lab::exec_ok(
            lab,
            "H",
            &["blockdev", "--getsize64", d],
            Duration::from_secs(30),
        )
        .is_ok_and(|s| s.trim() == "536870912")
    });
    facts.nvme_devs.retain(|d| d.ends_with("n1"));
    let facts = &facts;
    let (owner_vm, _) = owner(lab)?;
    let t = Instant::now();
    let cfg = call(lab, &owner_vm, "config.get", &json!({}))?;
    let has = |name: &str| {
        cfg["config"]["volume"]
            .as_array()
            .is_some_and(|a| a.iter().any(|o| o["name"] == name))
    };
    let mut exports = Vec::new();
    for i in 0..SCALE_EXTRA {
        let name = format!("s{i:02}");
        if !has(&name) {
            call(
                lab,
                &owner_vm,
                "volume.create",
                &json!({"pool": POOL, "name": name, "size": "64MiB"}),
            )?;
        }
        // LUN 0 and namespace 1 are the demo's.
        let object = if i % 2 == 0 {
            json!({"name": format!("{name}-iscsi"), "volume": name, "protocol": "iscsi",
                   "lun": i / 2 + 1, "host_group": appliance::GROUP})
        } else {
            json!({"name": format!("{name}-nvme"), "volume": name, "protocol": "nvme",
                   "nsid": i / 2 + 2, "host_group": appliance::GROUP})
        };
        exports.push(appliance::up("export", object));
    }
    appliance::apply(lab, &owner_vm, exports)?;
    for vm in ["A", "B"] {
        appliance::wait_targets(lab, vm)?;
    }
    let configured_s = t.elapsed().as_secs_f64();
    // H finds the new LUNs and namespaces.
    lab::exec_ok(
        lab,
        "H",
        &["iscsiadm", "-m", "session", "--rescan"],
        Duration::from_secs(120),
    )?;
    for p in &facts.nvme_paths {
        let ctrl = format!("/dev/{}", p.ctrl);
        lab::exec_ok(
            lab,
            "H",
            &["nvme", "ns-rescan", &ctrl],
            Duration::from_secs(60),
        )?;
    }
    let want = 2 + SCALE_EXTRA;
    let seen = Instant::now();
    let all = loop {
        let f = demo::host_facts_within(lab, appliance::NQN, Duration::from_secs(300))?;
        let n = f.iscsi_devs.len() + f.nvme_devs.len();
        if n >= want {
            break f;
        }
        if seen.elapsed() > Duration::from_secs(300) {
            return Err(LabError::State(format!(
                "H sees {n} of {want} LUs after 300 s"
            )));
        }
        thread::sleep(Duration::from_secs(3));
    };
    let devs: Vec<String> = all
        .iscsi_devs
        .iter()
        .chain(&all.nvme_devs)
        .cloned()
        .collect();
    let before = read_every_lu(lab, &devs);
    if !before.is_empty() {
        return Err(LabError::State(format!(
            "LUs unreadable before the fault: {before:?}"
        )));
    }
    let visible_s = t.elapsed().as_secs_f64();
    let check = |lab: &Lab, c: &mut Checks| -> Result<Value, LabError> {
        let t = Instant::now();
        let failed = read_every_lu(lab, &devs);
        c.check(
            "every_lu_reads_through_the_survivor",
            failed.is_empty(),
            format!("{} LUs, failed: {failed:?}", devs.len()),
        );
        Ok(json!({"lus": devs.len(), "failed": failed, "read_all_s": t.elapsed().as_secs_f64()}))
    };
    let mut o = unplanned_then(lab, facts, Fault::Kill, Bmc::Up, &check)?;
    o.report["scenario"] = json!("scale");
    o.report["scale"] = json!({"volumes": want, "configured_s": configured_s,
                               "host_sees_all_s": visible_s});
    Ok(o)
}

/// A few lines a person reads: the verdict, the takeover's timeline step by
/// step, the host's pause and errors per protocol, rejoin and giveback.
pub fn summary(report: &Value) -> String {
    let mut out = String::new();
    let verdict = if report["ok"] == json!(true) {
        "PASS"
    } else {
        "FAIL"
    };
    let name = report["scenario"].as_str().unwrap_or("?");
    out.push_str(&format!("failover {name}: {verdict}\n"));
    if let Some(e) = report["error"].as_str() {
        out.push_str(&format!("  could not run: {e}\n"));
    }
    let host = |h: &Value| {
        ["iscsi", "nvme"]
            .iter()
            .map(|p| {
                let f = &h[*p];
                format!(
                    "{p} pause {:.1} s, {} errors, verify {}",
                    f["pause_ms"].as_f64().unwrap_or(0.0) / 1000.0,
                    f["errors"],
                    if f["verify_ok"] == json!(true) {
                        "ok"
                    } else {
                        "FAILED"
                    }
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    };
    let timeline = |out: &mut String, steps: &Value| {
        let mut total = 0;
        for s in steps.as_array().into_iter().flatten() {
            let ms = s["ms"].as_u64().unwrap_or(0);
            total += ms;
            let what = match s["pool"].as_str() {
                Some(p) => format!("{} {p}", s["name"].as_str().unwrap_or("?")),
                None => s["name"].as_str().unwrap_or("?").to_string(),
            };
            let ok = if s["ok"] == json!(true) {
                ""
            } else {
                "  FAILED"
            };
            out.push_str(&format!("    {what:<24} {ms:>7} ms{ok}\n"));
        }
        out.push_str(&format!("    {:<24} {total:>7} ms\n", "total"));
    };
    if let Some(t) = report.get("takeover") {
        out.push_str(&format!(
            "  {} lost under host writes; {} took over (action {}, epoch {})\n",
            report["victim"].as_str().unwrap_or("?"),
            report["survivor"].as_str().unwrap_or("?"),
            t["action_id"].as_str().unwrap_or("?"),
            t["epoch"]
        ));
        timeline(&mut out, &t["timeline"]);
        out.push_str(&format!("  host: {}\n", host(&report["host"])));
        let r = &report["rejoin"];
        out.push_str(&format!(
            "  rejoin: powered on in {:.0} s, both normal {:.0} s later\n",
            r["boot_s"].as_f64().unwrap_or(0.0),
            r["normal_after_s"].as_f64().unwrap_or(0.0)
        ));
    }
    if let Some(f) = report.get("failover") {
        out.push_str(&format!(
            "  planned failover {} -> {} in {:.1} s (action {})\n",
            f["from"].as_str().unwrap_or("?"),
            f["to"].as_str().unwrap_or("?"),
            f["seconds"].as_f64().unwrap_or(0.0),
            f["action_id"].as_str().unwrap_or("?")
        ));
        timeline(&mut out, &f["timeline"]);
        out.push_str(&format!("  host: {}\n", host(&f["host"])));
    }
    if let Some(g) = report.get("giveback").filter(|g| g.get("from").is_some()) {
        out.push_str(&format!(
            "  giveback {} -> {} in {:.1} s; host: {}\n",
            g["from"].as_str().unwrap_or("?"),
            g["to"].as_str().unwrap_or("?"),
            g["seconds"].as_f64().unwrap_or(0.0),
            host(&g["host"])
        ));
    }
    if let Some(p) = report.get("pr_fence").filter(|p| !p.is_null()) {
        out.push_str(&format!(
            "  PR disk after the takeover: keys {}, reservation {}; after the giveback: keys {}\n",
            p["keys"], p["holder"], p["after_giveback"]["keys"]
        ));
    }
    if let Some(b) = report.get("fence_blocked").filter(|b| !b.is_null()) {
        out.push_str(&format!(
            "  the survivor cut from the BMC for {} s first: {} 'every fence agent failed' alerts{}\n",
            b["seconds"],
            b["agent_failed_alerts"],
            match b["watchdog_after_s"].as_f64() {
                Some(s) => format!(", the victim's watchdog fired {s:.1} s after the fault"),
                None => String::new(),
            }
        ));
    }
    for d in report["daemons"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {} killed: active again after {} s\n",
            d["daemon"].as_str().unwrap_or("?"),
            d["back_after_s"]
                .as_f64()
                .map_or("(never)".to_string(), |s| format!("{s:.1}"))
        ));
    }
    if let Some(h) = report.get("heartbeat") {
        out.push_str(&format!(
            "  duplex-heartbeat killed: back after {} s, partner took over: {}\n",
            h["back_after_s"]
                .as_f64()
                .map_or("(never)".to_string(), |s| format!("{s:.1}")),
            h["partner_took_over"]
        ));
        if h.get("timeline").is_some() {
            timeline(&mut out, &h["timeline"]);
        }
        out.push_str(&format!("  host around it: {}\n", host(&h["host"])));
    }
    if let Some(p) = report.get("power_on") {
        out.push_str(&format!(
            "  power back: both booted in {:.0} s, both normal {:.0} s later, the owner serving at {:.0} s\n",
            p["booted_s"].as_f64().unwrap_or(0.0),
            p["normal_after_s"].as_f64().unwrap_or(0.0),
            p["serving_after_s"].as_f64().unwrap_or(0.0)
        ));
    }
    for r in report["cycles"].as_array().into_iter().flatten() {
        if let Some(e) = r["error"].as_str() {
            out.push_str(&format!("  cycle {:>2}: FAIL {e}\n", r["cycle"]));
            continue;
        }
        out.push_str(&format!(
            "  cycle {:>2}: {} takeover {} ms, pause iscsi {} ms / nvme {} ms, giveback {:.1} s\n",
            r["cycle"],
            if r["ok"] == json!(true) {
                "ok  "
            } else {
                "FAIL"
            },
            r["takeover_ms"],
            r["pause_ms"]["iscsi"],
            r["pause_ms"]["nvme"],
            r["giveback_s"].as_f64().unwrap_or(0.0)
        ));
    }
    if let Some(sp) = report.get("spread") {
        out.push_str(&format!("  spread (min/median/max): {sp}\n"));
    }
    if ["ic-cut", "ic-one", "services", "hb-disks", "power-cut"]
        .iter()
        .any(|n| report["scenario"] == *n)
    {
        out.push_str(&format!("  host: {}\n", host(&report["host"])));
    }
    if let Some(m) = report.get("monitor") {
        out.push_str(&format!(
            "  invariant monitor: {} violations ({} samples of A, {} of B)\n",
            m["violations"], m["samples"]["A"], m["samples"]["B"]
        ));
    }
    for c in report["checks"].as_array().into_iter().flatten() {
        if c["ok"] != json!(true) {
            out.push_str(&format!(
                "  check {} FAILED: {}\n",
                c["check"].as_str().unwrap_or("?"),
                c["detail"].as_str().unwrap_or("")
            ));
        }
    }
    out
}
