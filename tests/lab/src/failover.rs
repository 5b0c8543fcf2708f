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
use crate::demo::{self, HostFacts};
use crate::lab::{self, Lab, LabError, Power};
use serde_json::{json, Value};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use tracing::info;

/// The scenarios this module runs, in the order `ha` runs them.
pub const NAMES: &[&str] = &["planned", "kill", "freeze", "ic-cut"];

/// Where H's verifier looks for the file that ends its run.
const STOP_FILE: &str = "/run/duplex-lab/verify.stop";

/// The longest a takeover may take to appear in the survivor's timeline
/// (detection, a fence over IPMI and four LVM steps under TCG).
const TAKEOVER_WITHIN: Duration = Duration::from_secs(240);

/// One scenario's result: figures and checks, as JSON.
#[derive(Debug)]
pub struct Outcome {
    /// Figures and checks.
    pub report: Value,
    /// True when every check held.
    pub ok: bool,
}

/// Checks of one scenario.
struct Checks {
    list: Vec<Value>,
    ok: bool,
}

impl Checks {
    fn new() -> Self {
        Self {
            list: Vec::new(),
            ok: true,
        }
    }
    fn check(&mut self, name: &str, pass: bool, detail: impl Into<String>) {
        let detail = detail.into();
        self.ok &= pass;
        info!(
            "check {name}: {} ({detail})",
            if pass { "ok" } else { "FAILED" }
        );
        self.list
            .push(json!({ "check": name, "ok": pass, "detail": detail }));
    }
}

/// Runs `name` on a prepared lab.
pub fn run(lab: &Lab, name: &str) -> Result<Outcome, LabError> {
    let facts = demo::host_facts_for(lab, appliance::NQN)?;
    match name {
        "planned" => planned(lab, &facts),
        "kill" => unplanned(lab, &facts, Fault::Kill),
        "freeze" => unplanned(lab, &facts, Fault::Freeze),
        "ic-cut" => ic_cut(lab, &facts),
        other => Err(LabError::State(format!(
            "unknown failover scenario {other} (known: {})",
            NAMES.join(" ")
        ))),
    }
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
        let v = self
            .handle
            .join()
            .map_err(|_| LabError::State("verify thread panicked".into()))?;
        touched?;
        v
    }
}

/// The longest pause that started in `[from, to]` on the writer's
/// timeline, and the device's figures.
fn device(v: &Value, name: &str, window: (f64, f64)) -> Value {
    let Some(d) = v["devices"]
        .as_array()
        .and_then(|ds| ds.iter().find(|d| d["name"] == name))
    else {
        return Value::Null;
    };
    let pause = d["gaps"].as_array().and_then(|gs| {
        gs.iter()
            .filter_map(|g| Some((g["at_s"].as_f64()?, g["ms"].as_f64()?)))
            .filter(|(at, _)| *at >= window.0 && *at <= window.1)
            .map(|(_, ms)| ms)
            .reduce(f64::max)
    });
    json!({
        "pause_ms": pause,
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

/// Scenario 5: planned failover of the pool to the partner with
/// `cluster.failover`, then `cluster.giveback`, both under verified writes.
fn planned(lab: &Lab, facts: &HostFacts) -> Result<Outcome, LabError> {
    let mut c = Checks::new();
    let (from, _) = owner(lab)?;
    let to = partner_of(&from);
    let n = timeline_len(lab, &from);
    let w = Writer::start(lab, facts)?;
    let at = w.at();
    let r = call(lab, &from, "cluster.failover", &json!({"pool": POOL}));
    let done = w.at();
    thread::sleep(Duration::from_secs(5));
    let v = w.stop(lab)?;
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
    Ok(Outcome {
        report: json!({
            "scenario": "planned",
            "ok": c.ok,
            "failover": {"from": from, "to": to, "seconds": done - at,
                         "steps_ms": steps(&entry), "action_id": entry["action_id"], "host": host},
            "giveback": back,
            "checks": c.list,
        }),
        ok: c.ok,
    })
}

/// How the owner is taken away in [`unplanned`].
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The plug pulled (QEMU killed).
    Kill,
    /// The CPU paused past `suspect_timeout`; the survivor's fence powers
    /// it off through its BMC, so it never runs again in this boot.
    Freeze,
}

/// Scenarios 1 and 2: the owner killed or frozen under verified writes;
/// the partner must detect, fence (IPMI), take over, and the host must see
/// no error. Then the owner is powered on, rejoins, and gets its pool back.
fn unplanned(lab: &Lab, facts: &HostFacts, fault: Fault) -> Result<Outcome, LabError> {
    let mut c = Checks::new();
    let (victim, _) = owner(lab)?;
    let survivor = partner_of(&victim);
    let n = timeline_len(lab, survivor);
    let w = Writer::start(lab, facts)?;
    let fault_at = w.at();
    let t = Instant::now();
    match fault {
        Fault::Kill => lab::power(lab, &victim, Power::Kill)?,
        Fault::Freeze => lab::power(lab, &victim, Power::Freeze)?,
    }
    let entry = wait_entry(lab, survivor, n, TAKEOVER_WITHIN);
    let taken_s = t.elapsed().as_secs_f64();
    let taken_at = w.at();
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
    // Rejoin: the BMC powers the victim on; it reads the fence message,
    // waits for the survivor's acknowledgement, owns nothing.
    let t = Instant::now();
    lab::power(lab, &victim, Power::Start)?;
    let booted_s = t.elapsed().as_secs_f64();
    let normal_s = wait_normal(lab, Duration::from_secs(300))?;
    let back = giveback(lab, facts, &mut c)?;
    let name = match fault {
        Fault::Kill => "kill",
        Fault::Freeze => "freeze",
    };
    Ok(Outcome {
        report: json!({
            "scenario": name,
            "ok": c.ok,
            "victim": victim,
            "survivor": survivor,
            "takeover": {
                "seen_after_s": taken_s,
                "steps_ms": steps(&entry),
                "epoch": entry["epoch"],
                "action_id": entry["action_id"],
                "detection_ms": survivor_status.pointer("/state/last_detection_ms"),
            },
            "host": host,
            "rejoin": {"boot_s": booted_s, "normal_after_s": normal_s},
            "giveback": back,
            "checks": c.list,
        }),
        ok: c.ok,
    })
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
    c.check(
        "no_takeover",
        timeline_len(lab, "A") == n[0] && timeline_len(lab, "B") == n[1],
        format!("timelines before {n:?}"),
    );
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
    for (vm, on) in [("A", true), ("B", true)] {
        c.check(
            &format!("{vm}_powered"),
            lab::is_running(lab, vm)? == on,
            "nobody was fenced",
        );
    }
    let host = host_figures(&mut c, "ic_cut", &v, (0.0, 1e9));
    Ok(Outcome {
        report: json!({
            "scenario": "ic-cut",
            "ok": c.ok,
            "owner": owner_vm,
            "host": host,
            "checks": c.list,
        }),
        ok: c.ok,
    })
}
