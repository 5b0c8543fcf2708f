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
pub const NAMES: &[&str] = &["planned", "kill", "freeze", "ic-cut", "ic-one"];

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
        "ic-one" => ic_one(lab, &facts),
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
                         "steps_ms": steps(&entry), "timeline": entry["steps"], "action_id": entry["action_id"], "host": host},
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
                "timeline": entry["steps"],
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
    c.check(
        "no_takeover",
        timeline_len(lab, "A") == n[0] && timeline_len(lab, "B") == n[1],
        format!("timelines before {n:?}"),
    );
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
    Ok(Outcome {
        report: json!({
            "scenario": "ic-one",
            "ok": c.ok,
            "owner": owner_vm,
            "host": host,
            "checks": c.list,
        }),
        ok: c.ok,
    })
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
    if report["scenario"] == "ic-cut" || report["scenario"] == "ic-one" {
        out.push_str(&format!("  host: {}\n", host(&report["host"])));
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
