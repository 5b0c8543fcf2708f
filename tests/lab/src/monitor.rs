//! The invariant monitor: while a scenario runs, both controllers report
//! what their kernels serve, five times a second, and the host checks the
//! safety invariants of the design brief (4.1) on those samples.
//!
//! ```text
//! let m = monitor::start(lab, &["A", "B"]);   // readers on run/X.monitor
//! ... faults, heals ...
//! let r = m.stop();                          // MonitorReport
//! r.ok                                       // samples from each, no violation
//! ```
//!
//! **Sampling.** `payload/monitor.sh` runs in each controller (started at
//! boot) and writes one block every 200 ms to a virtio-serial port of its
//! own (`org.duplex.monitor`, socket `run/X.monitor`), not the command
//! agent, which serves one client at a time. The host stamps each block
//! with its own clock when it arrives. A block: the device-mapper devices
//! whose uuid starts with `LVM-` (live unless suspended), every ALUA port
//! group of every LIO backstore (state, whether LUNs are in it, the
//! backstore's LU group `dxpool_<pool>`), the nvmet ANA group states per
//! port, the port-subsystem links and the namespaces (ANA group, enabled,
//! device). Every 10 s the controller's own view is added: `config.get`
//! (cluster epoch, pool owners, volume serials), fetched in the background
//! (a `duplexctl` call costs about a second of the guest's vCPU under TCG).
//!
//! **What is checked**, two controllers X and Y:
//! - `pool_active_on_both` (invariant 1, a pool imported on at most one
//!   controller): an LVM device of the same volume group (dm uuid
//!   `LVM-<vg uuid><lv uuid>`) live on Y at a sample while X's samples just
//!   before and just after (at most 1.5 s apart) both show the group live;
//! - `alua_optimized_on_both` / `ana_optimized_on_both` (invariant 2, a
//!   volume's port group Active/Optimized on at most one controller): the
//!   same backstore (named after its volume) in an Active/Optimized port
//!   group holding LUNs, or the same namespace (subsystem NQN and NSID)
//!   enabled in an optimized ANA group of a port the subsystem is linked
//!   to, bracketed the same way;
//! - `epoch_backwards`: a controller's view of the cluster epoch decreases;
//! - `serving_unowned`: a controller serves (Active/Optimized, optimized) a
//!   pool whose owner is the other controller in its own view, both in the
//!   last view it reported before the sample and in the first one fetched
//!   after it (a view is fetched in the background, so it is attributed to
//!   the interval between its fetch's start and its report).
//!
//! The bracketing makes a violation a proof, not a near coincidence of two
//! samples; the price is that an overlap shorter than a sampling period
//! (200 ms) can be missed. Checking the ordered state-change events (the
//! router's `target.access_state`, pool imports) closes that gap and is
//! not done yet.
//!
//! **Not observed here:** invariant 3 (no acknowledged write lost) is the
//! host writers' read-back ([`crate::writers`]); invariant 4 (an
//! interconnect cut alone never moves a pool) needs the fault's timing and
//! the partner's disk heartbeat, so a scenario asserts it (no owner change,
//! no `pool_active` on the survivor) and the heartbeat slots are not
//! decoded here; invariant 5 (self-fence before the partner's deadline)
//! cannot be sampled from inside a controller that may be frozen, and is
//! seen only indirectly (`serving_unowned` once its view moved on).

use crate::lab::Lab;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Name of the virtio-serial port the samplers write to.
pub const PORT_NAME: &str = "org.duplex.monitor";
/// Two samples further apart than this do not bracket a third.
const MAX_BRACKET_S: f64 = 1.5;
/// A block that arrives this soon after the reader connected was waiting
/// in a blocked write: it is stale.
const STALE_S: f64 = 0.1;
/// How many violations a report lists.
const LISTED: usize = 5;
/// LIO's Active/Optimized `alua_access_state`.
const ALUA_AO: &str = "0";
/// The pool's LU group name prefix (targets' `LU_GROUP_PREFIX`).
const LU_GROUP_PREFIX: &str = "dxpool_";
/// pool-manager's per-volume device, by serial.
const VOLUME_DEV_PREFIX: &str = "/dev/mapper/dxvol-";

/// A controller's own view of the cluster, from its `config.get`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct View {
    /// The cluster epoch.
    pub epoch: u64,
    /// Pool name to its owner's controller id.
    pub owners: BTreeMap<String, String>,
    /// Volume serial to its pool.
    pub volume_pool: BTreeMap<String, String>,
}

/// One sample of one controller.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Sample {
    /// The controller.
    pub vm: String,
    /// Host clock when the block arrived (Unix seconds).
    pub at: f64,
    /// The sampler's sequence number.
    pub seq: u64,
    /// Volume groups (uuid) with a live LVM device, with one device name.
    pub live_vgs: BTreeMap<String, String>,
    /// Backstores (volume names) in an Active/Optimized port group with
    /// LUNs, with their pool (from the LU group; empty when none).
    pub alua_optimized: BTreeMap<String, String>,
    /// Namespaces (`nqn/nsid`) optimized here, with their volume serial.
    pub ana_optimized: BTreeMap<String, String>,
    /// The view, when this block carried one.
    pub view: Option<View>,
}

/// Parses a controller's `config.get` answer (`duplexctl --json call`).
pub fn parse_view(json: &str) -> Option<View> {
    let v: Value = serde_json::from_str(json).ok()?;
    let cfg = v.pointer("/result/config")?;
    let epoch = cfg.pointer("/cluster/epoch")?.as_u64()?;
    let s = |o: &Value, k: &str| o.get(k).and_then(Value::as_str).map(str::to_string);
    let owners = cfg
        .get("pool")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| Some((s(p, "name")?, s(p, "owner")?)))
                .collect()
        })
        .unwrap_or_default();
    let volume_pool = cfg
        .get("volume")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| Some((s(v, "serial")?, s(v, "pool")?)))
                .collect()
        })
        .unwrap_or_default();
    Some(View {
        epoch,
        owners,
        volume_pool,
    })
}

/// Parses one block of `monitor.sh` (the lines between `S n` and `E`).
pub fn parse_block(vm: &str, at: f64, lines: &[String]) -> Option<Sample> {
    let mut s = Sample {
        vm: vm.to_string(),
        at,
        ..Sample::default()
    };
    let mut ana_state: BTreeMap<(String, String), String> = BTreeMap::new();
    let mut links: BTreeSet<(String, String)> = BTreeSet::new();
    let mut namespaces: Vec<(String, String, String, String)> = Vec::new();
    let mut saw_start = false;
    for line in lines {
        if let Some(json) = line.strip_prefix("cfg ") {
            s.view = parse_view(json);
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            ["S", n] => {
                s.seq = n.parse().ok()?;
                saw_start = true;
            }
            ["dm", uuid, name, suspended] => {
                if let Some(vg) = uuid.strip_prefix("LVM-").and_then(|u| u.get(..32)) {
                    if *suspended == "0" {
                        s.live_vgs
                            .entry(vg.to_string())
                            .or_insert_with(|| (*name).to_string());
                    }
                }
            }
            ["alua", backstore, _group, state, members, lu]
                if *state == ALUA_AO && *members == "1" =>
            {
                let pool = lu.strip_prefix(LU_GROUP_PREFIX).unwrap_or_default();
                s.alua_optimized
                    .insert((*backstore).to_string(), pool.to_string());
            }
            ["ana", port, group, state] => {
                ana_state.insert(((*port).to_string(), (*group).to_string()), (*state).into());
            }
            ["link", port, nqn] => {
                links.insert(((*port).to_string(), (*nqn).to_string()));
            }
            ["ns", nqn, nsid, group, "1", dev] => {
                namespaces.push((
                    (*nqn).to_string(),
                    (*nsid).to_string(),
                    (*group).to_string(),
                    (*dev).to_string(),
                ));
            }
            _ => {}
        }
    }
    if !saw_start {
        return None;
    }
    for (nqn, nsid, group, dev) in namespaces {
        let optimized = links.iter().any(|(port, n)| {
            *n == nqn
                && ana_state
                    .get(&(port.clone(), group.clone()))
                    .is_some_and(|st| st == "optimized")
        });
        if optimized {
            let serial = dev.strip_prefix(VOLUME_DEV_PREFIX).unwrap_or_default();
            s.ana_optimized
                .insert(format!("{nqn}/{nsid}"), serial.to_string());
        }
    }
    Some(s)
}

/// One violation found in the samples.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Violation {
    /// Host clock (Unix seconds) of the sample that shows it.
    pub at: f64,
    /// Which check.
    pub kind: String,
    /// The controller, pool, volume or namespace concerned.
    pub detail: String,
}

/// What the monitor saw during a scenario.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MonitorReport {
    /// Samples per controller.
    pub samples: BTreeMap<String, usize>,
    /// Views (config.get) per controller.
    pub views: BTreeMap<String, usize>,
    /// Violations found (sample instants that prove one).
    pub violations: usize,
    /// Per check.
    pub by_kind: BTreeMap<String, usize>,
    /// The first few, in time order.
    pub first: Vec<Violation>,
    /// Every controller was sampled and nothing was violated.
    pub ok: bool,
}

/// What a check compares between controllers: described keys of a sample.
type KeysOf = fn(&Sample) -> Vec<String>;

/// `Some(key description)` for each key live in `y` and in both of `x`'s
/// samples around it.
fn bracketed<'a>(
    xs: &'a [&'a Sample],
    y: &Sample,
    keys: impl Fn(&Sample) -> Vec<String>,
) -> Vec<String> {
    let before = xs.iter().rev().find(|x| x.at <= y.at);
    let after = xs.iter().find(|x| x.at >= y.at);
    let (Some(b), Some(a)) = (before, after) else {
        return Vec::new();
    };
    if a.at - b.at > MAX_BRACKET_S {
        return Vec::new();
    }
    let (kb, ka) = (keys(b), keys(a));
    keys(y)
        .into_iter()
        .filter(|k| kb.contains(k) && ka.contains(k))
        .collect()
}

/// The views of one controller, in time order.
fn views_of<'a>(samples: &[&'a Sample]) -> Vec<(f64, &'a View)> {
    samples
        .iter()
        .filter_map(|s| s.view.as_ref().map(|v| (s.at, v)))
        .collect()
}

/// The pools `s` serves, resolving namespaces through `view`.
fn served_pools(s: &Sample, view: &View) -> BTreeSet<String> {
    let mut pools: BTreeSet<String> = s
        .alua_optimized
        .values()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect();
    for serial in s.ana_optimized.values() {
        if let Some(p) = view.volume_pool.get(serial) {
            pools.insert(p.clone());
        }
    }
    pools
}

/// Checks the invariants on the samples of `vms` (see the module doc).
pub fn analyze(vms: &[&str], samples: &[Sample]) -> MonitorReport {
    let mut sorted: Vec<&Sample> = samples.iter().collect();
    sorted.sort_by(|a, b| a.at.total_cmp(&b.at));
    let of = |vm: &str| -> Vec<&Sample> { sorted.iter().copied().filter(|s| s.vm == vm).collect() };
    let mut found: Vec<Violation> = Vec::new();
    let mut r = MonitorReport::default();
    for vm in vms {
        let mine = of(vm);
        r.samples.insert((*vm).to_string(), mine.len());
        let views = views_of(&mine);
        r.views.insert((*vm).to_string(), views.len());
        for w in views.windows(2) {
            if let [(_, a), (at, b)] = w {
                if b.epoch < a.epoch {
                    found.push(Violation {
                        at: *at,
                        kind: "epoch_backwards".into(),
                        detail: format!("{vm}: epoch {} after {}", b.epoch, a.epoch),
                    });
                }
            }
        }
        for s in &mine {
            // The last view reported before the sample, and the first one
            // whose fetch started after it: the one after the first report.
            let before = views.iter().rev().find(|(at, _)| *at <= s.at);
            let after = views.iter().filter(|(at, _)| *at >= s.at).nth(1);
            let (Some((_, vb)), Some((_, va))) = (before, after) else {
                continue;
            };
            for pool in served_pools(s, vb).union(&served_pools(s, va)) {
                let other = |v: &View| v.owners.get(pool).is_some_and(|o| o != vm);
                if other(vb) && other(va) {
                    found.push(Violation {
                        at: s.at,
                        kind: "serving_unowned".into(),
                        detail: format!(
                            "{vm} serves pool {pool} owned by {}",
                            va.owners.get(pool).map_or("?", String::as_str)
                        ),
                    });
                }
            }
        }
    }
    for x in vms {
        for y in vms {
            if x == y {
                continue;
            }
            let xs = of(x);
            for s in of(y) {
                let checks: [(&str, KeysOf); 3] = [
                    ("pool_active_on_both", |s| {
                        s.live_vgs
                            .iter()
                            .map(|(vg, name)| format!("vg {vg} ({name})"))
                            .collect()
                    }),
                    ("alua_optimized_on_both", |s| {
                        s.alua_optimized
                            .iter()
                            .map(|(b, p)| format!("volume {b} (pool {p})"))
                            .collect()
                    }),
                    ("ana_optimized_on_both", |s| {
                        s.ana_optimized
                            .keys()
                            .map(|k| format!("namespace {k}"))
                            .collect()
                    }),
                ];
                for (kind, keys) in checks {
                    for k in bracketed(&xs, s, keys) {
                        found.push(Violation {
                            at: s.at,
                            kind: kind.into(),
                            detail: format!("{k} on {x} and {y}"),
                        });
                    }
                }
            }
        }
    }
    found.sort_by(|a, b| a.at.total_cmp(&b.at));
    for v in &found {
        *r.by_kind.entry(v.kind.clone()).or_default() += 1;
    }
    r.violations = found.len();
    r.first = found.into_iter().take(LISTED).collect();
    r.ok = r.violations == 0 && r.samples.values().all(|n| *n > 0);
    r
}

/// The monitor running: one reader thread per controller.
#[derive(Debug)]
pub struct Monitor {
    vms: Vec<String>,
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<Vec<Sample>>>,
}

/// Starts reading the samplers of `vms` (reconnecting after a restart or a
/// restore of a VM).
pub fn start(lab: &Lab, vms: &[&str]) -> Monitor {
    let stop = Arc::new(AtomicBool::new(false));
    let readers = vms
        .iter()
        .map(|vm| {
            let sock = lab.monitor_sock(vm);
            let vm = (*vm).to_string();
            let stop = stop.clone();
            thread::spawn(move || read_samples(&sock, &vm, &stop))
        })
        .collect();
    Monitor {
        vms: vms.iter().map(|v| (*v).to_string()).collect(),
        stop,
        readers,
    }
}

impl Monitor {
    /// Stops the readers and checks the samples.
    pub fn stop(self) -> MonitorReport {
        self.stop.store(true, Ordering::Relaxed);
        let mut samples = Vec::new();
        for h in self.readers {
            if let Ok(s) = h.join() {
                samples.extend(s);
            }
        }
        let vms: Vec<&str> = self.vms.iter().map(String::as_str).collect();
        analyze(&vms, &samples)
    }
}

/// Feeds bytes into `pending`; returns each complete block (`S` .. `E`).
fn take_blocks(pending: &mut Vec<u8>, block: &mut Vec<String>) -> Vec<Vec<String>> {
    let mut done = Vec::new();
    while let Some(i) = pending.iter().position(|b| *b == b'\n') {
        let raw: Vec<u8> = pending.drain(..=i).collect();
        let line = String::from_utf8_lossy(&raw).trim_end().to_string();
        if line == "E" {
            done.push(std::mem::take(block));
        } else {
            if line.starts_with("S ") {
                block.clear();
            }
            block.push(line);
        }
    }
    done
}

fn read_samples(sock: &PathBuf, vm: &str, stop: &AtomicBool) -> Vec<Sample> {
    let mut out = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = UnixStream::connect(sock) else {
            thread::sleep(Duration::from_millis(200));
            continue;
        };
        let connected = crate::events::now();
        if s.set_read_timeout(Some(Duration::from_millis(300)))
            .is_err()
        {
            continue;
        }
        let mut pending = Vec::new();
        let mut block = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while !stop.load(Ordering::Relaxed) {
            match s.read(&mut buf) {
                // The QEMU went away (killed, restored): connect again.
                Ok(0) => break,
                Ok(n) => {
                    pending.extend_from_slice(buf.get(..n).unwrap_or_default());
                    for b in take_blocks(&mut pending, &mut block) {
                        let at = crate::events::now();
                        if at - connected < STALE_S {
                            continue;
                        }
                        if let Some(smp) = parse_block(vm, at, &b) {
                            out.push(smp);
                        }
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        if !stop.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(200));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const VG: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(|l| l.trim().to_string()).collect()
    }

    fn block(vm: &str, at: f64, text: &str) -> Sample {
        parse_block(vm, at, &lines(text)).unwrap()
    }

    fn active(vm: &str, at: f64) -> Sample {
        block(
            vm,
            at,
            &format!(
                "S 1
                 dm LVM-{VG}BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB dx_demo-vol0 0
                 alua vol0 dx_{} 0 1 dxpool_demo
                 ana 1000 2 optimized
                 link 1000 nqn.x
                 ns nqn.x 1 2 1 /dev/mapper/dxvol-00ff",
                vm.to_lowercase()
            ),
        )
    }

    fn standby(vm: &str, at: f64) -> Sample {
        block(
            vm,
            at,
            &format!(
                "S 1
                 alua vol0 dx_{} 2 1 dxpool_demo
                 ana 1001 2 inaccessible
                 link 1001 nqn.x
                 ns nqn.x 1 2 1 /dev/mapper/dxvol-00ff",
                vm.to_lowercase()
            ),
        )
    }

    fn with_view(mut s: Sample, epoch: u64, owner: &str) -> Sample {
        s.view = Some(View {
            epoch,
            owners: [("demo".to_string(), owner.to_string())].into(),
            volume_pool: [("00ff".to_string(), "demo".to_string())].into(),
        });
        s
    }

    #[test]
    fn parses_a_block_of_the_sampler() {
        let s = active("A", 10.0);
        assert_eq!(s.live_vgs.get(VG).map(String::as_str), Some("dx_demo-vol0"));
        assert_eq!(
            s.alua_optimized.get("vol0").map(String::as_str),
            Some("demo")
        );
        assert_eq!(
            s.ana_optimized.get("nqn.x/1").map(String::as_str),
            Some("00ff")
        );
        let s = block(
            "B",
            1.0,
            "S 7
             dm LVM-short x 0
             dm LVM-{VG}CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC-tpool x-tpool 1
             alua vol0 dx_b 0 0 dxpool_demo
             ana 1001 2 optimized
             ns nqn.x 1 2 1 /dev/mapper/dxvol-00ff",
        );
        assert_eq!(s.seq, 7);
        // A suspended device, a group without LUNs, a namespace whose
        // subsystem is on no port of the optimized group: nothing served.
        assert!(s.live_vgs.is_empty() && s.alua_optimized.is_empty() && s.ana_optimized.is_empty());
        assert!(parse_block("A", 1.0, &lines("dm x y 0")).is_none());
    }

    #[test]
    fn parses_a_view() {
        let j = r#"{"result":{"config":{"cluster":{"epoch":3},"pool":[{"name":"demo","owner":"B"}],
                   "volume":[{"name":"vol0","pool":"demo","serial":"00ff"}]},"digest":"x"}}"#;
        let v = parse_view(j).unwrap();
        assert_eq!(v.epoch, 3);
        assert_eq!(v.owners["demo"], "B");
        assert_eq!(v.volume_pool["00ff"], "demo");
        assert!(parse_view(r#"{"error":{"code":1}}"#).is_none());
    }

    #[test]
    fn a_clean_handover_has_no_violation() {
        let mut s = Vec::new();
        // A serves until 5 s, B from 5.5 s; views say the owner moved at 5.2.
        for i in 0..20 {
            let t = f64::from(i) * 0.5;
            let (a, b) = if t < 5.0 {
                (active("A", t), standby("B", t + 0.1))
            } else if t < 5.5 {
                (standby("A", t), standby("B", t + 0.1))
            } else {
                (standby("A", t), active("B", t + 0.1))
            };
            let owner = if t < 5.2 { "A" } else { "B" };
            s.push(with_view(a, 1 + u64::from(t >= 5.2), owner));
            s.push(with_view(b, 1 + u64::from(t >= 5.2), owner));
        }
        let r = analyze(&["A", "B"], &s);
        assert_eq!(r.violations, 0, "{:?}", r.first);
        assert!(r.ok);
        assert_eq!(r.samples["A"], 20);
    }

    #[test]
    fn both_active_is_a_violation_of_invariants_1_and_2() {
        let s: Vec<Sample> = (0..6)
            .flat_map(|i| {
                let t = f64::from(i) * 0.2;
                [active("A", t), active("B", t + 0.05)]
            })
            .collect();
        let r = analyze(&["A", "B"], &s);
        assert!(!r.ok);
        for k in [
            "pool_active_on_both",
            "alua_optimized_on_both",
            "ana_optimized_on_both",
        ] {
            assert!(
                r.by_kind.get(k).is_some_and(|n| *n > 0),
                "{k}: {:?}",
                r.by_kind
            );
        }
        assert_eq!(r.first.len(), LISTED);
        assert!(r.first.windows(2).all(|w| w[0].at <= w[1].at));
    }

    #[test]
    fn samples_far_apart_prove_nothing() {
        // B active once between two A samples 3 s apart: no bracket.
        let s = vec![active("A", 0.0), active("B", 1.0), active("A", 3.0)];
        assert_eq!(analyze(&["A", "B"], &s).violations, 0);
    }

    #[test]
    fn an_epoch_going_back_and_serving_an_unowned_pool_are_violations() {
        let s = vec![
            with_view(standby("A", 0.0), 5, "B"),
            with_view(active("A", 1.0), 4, "B"),
            with_view(standby("A", 2.0), 4, "B"),
            with_view(standby("A", 3.0), 4, "B"),
        ];
        let r = analyze(&["A"], &s);
        assert_eq!(r.by_kind.get("epoch_backwards"), Some(&1));
        assert_eq!(r.by_kind.get("serving_unowned"), Some(&1));
        // A view fetched before the owner changed does not count.
        let s = vec![
            with_view(standby("A", 0.0), 1, "B"),
            with_view(active("A", 1.0), 1, "B"),
            with_view(active("A", 2.0), 2, "A"),
            with_view(active("A", 3.0), 2, "A"),
        ];
        assert_eq!(analyze(&["A"], &s).violations, 0);
    }

    #[test]
    fn a_controller_without_samples_fails_the_report() {
        let r = analyze(&["A", "B"], &[standby("A", 0.0)]);
        assert_eq!(r.violations, 0);
        assert!(!r.ok);
    }

    #[test]
    fn blocks_are_cut_at_their_end_line() {
        let mut pending = b"junk\nS 1\ndm a b 0\nE\nS 2\nal".to_vec();
        let mut block = Vec::new();
        let got = take_blocks(&mut pending, &mut block);
        assert_eq!(got, vec![vec!["S 1".to_string(), "dm a b 0".to_string()]]);
        assert_eq!(pending, b"al");
        pending.extend_from_slice(b"ua x\nE\n");
        let got = take_blocks(&mut pending, &mut block);
        assert_eq!(got, vec![vec!["S 2".to_string(), "alua x".to_string()]]);
    }
}
