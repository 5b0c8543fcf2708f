//! The scenario framework: a scenario is data (steps: faults, heals, waits,
//! commands, expectations), run in order against a [`Rig`]. The first step
//! that fails ends the run, and every fault applied and not yet healed is
//! then healed, newest first, so a failed scenario leaves the lab usable.
//! The report lists each step with its time; a scenario passes only when
//! every step did.
//!
//! Adding a scenario is a few lines in [`catalog`].
//!
//! Beside the steps, a scenario gets:
//! - **the appliance demo** with [`Step::Setup`]: pool `demo` on A, `vol0`
//!   over iSCSI and `vol1` over NVMe/TCP, H attached through both
//!   controllers (`appliance::setup`; the scenario runner sets it up once
//!   and restores a snapshot of it, so the step is quick);
//! - **host writers** with [`Step::WritersStart`] and
//!   [`Step::WritersStop`]: `duplex-verify` on H on both protocols
//!   ([`crate::writers`]); the stop reads everything back and the report
//!   carries, per protocol, the longest pause, the longest pause in the
//!   fault window (from the first fault to the last heal), write errors
//!   and the verify result. A stop that finds an error or a bad block
//!   fails the step; writers still running when a scenario fails are
//!   stopped after the heals;
//! - **the invariant monitor** ([`crate::monitor`]) on both controllers for
//!   the whole scenario, whenever the rig has one: a violation fails the
//!   scenario whatever its steps showed.
//!
//! Another module's scenarios (the failover matrix) are `Scenario` values
//! run with [`run`] on a [`LabRig`]; they use the same steps.

use crate::monitor::MonitorReport;
use crate::writers::WriterFigures;
use serde::Serialize;
use std::fmt::Write as _;
use std::time::Duration;

/// A fault the rig can inject; most have an inverse ([`Fault::heal`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Fault {
    /// The partner fences `vm` through `vm`'s BMC (ipmitool on the partner).
    BmcOff(&'static str),
    /// `vm`'s BMC powers it on again (the inverse of `BmcOff`).
    BmcOn(&'static str),
    /// A shared disk vanishes from one controller.
    DiskVanish(&'static str, &'static str),
    /// A shared disk fails every I/O on one controller.
    DiskFail(&'static str, &'static str),
    /// A pulled disk comes back.
    DiskPush(&'static str, &'static str),
    /// A systemd unit's processes are stopped (SIGSTOP).
    Hang(&'static str, &'static str),
    /// A hung unit resumes (SIGCONT).
    Resume(&'static str, &'static str),
    /// The kernel panics with kernel.panic=0; the hardware runs on.
    Panic(&'static str),
    /// A VM's QEMU is started again (after a panic: a BMC reset instead).
    BmcReset(&'static str),
    /// Both controllers lose power at once.
    PowerCut,
    /// Both controllers are started again.
    PowerRestore,
    /// A planned move of the demo pool from one controller to the other
    /// (`appliance::handover`); not a failure, it has no inverse.
    Handover(&'static str, &'static str),
}

impl Fault {
    /// The step that undoes this fault, if any.
    pub fn heal(&self) -> Option<Fault> {
        match self {
            Self::BmcOff(vm) => Some(Self::BmcOn(vm)),
            Self::DiskVanish(vm, d) | Self::DiskFail(vm, d) => Some(Self::DiskPush(vm, d)),
            Self::Hang(vm, s) => Some(Self::Resume(vm, s)),
            Self::Panic(vm) => Some(Self::BmcReset(vm)),
            Self::PowerCut => Some(Self::PowerRestore),
            Self::BmcOn(_)
            | Self::DiskPush(..)
            | Self::Resume(..)
            | Self::BmcReset(_)
            | Self::PowerRestore
            | Self::Handover(..) => None,
        }
    }
}

/// Something the scenario expects to hold, checked within a deadline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Expect {
    /// The VM's QEMU process is alive (`true`) or gone (`false`).
    Powered(&'static str, bool),
    /// The VM's agent answers.
    Answers(&'static str),
    /// QMP recorded this event for the VM since the scenario started.
    Event(&'static str, &'static str),
    /// The controller sees (or no longer sees) a shared disk by serial.
    SeesDisk(&'static str, &'static str, bool),
    /// An O_DIRECT read of a shared disk on the controller succeeds (or
    /// fails).
    Reads(&'static str, &'static str, bool),
}

/// One step of a scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Step {
    /// Inject a fault.
    Fault(Fault),
    /// Undo an earlier fault.
    Heal(Fault),
    /// Let time pass.
    Wait(Duration),
    /// Run a command in a VM; it must exit 0.
    Run(&'static str, &'static [&'static str]),
    /// Wait (up to the duration) until the expectation holds.
    Expect(Expect, Duration),
    /// Make sure the appliance demo is set up (pool, volumes, exports, H
    /// attached over both protocols).
    Setup,
    /// Start verified writes from H on both protocols.
    WritersStart,
    /// Stop them, read everything back, report the figures; fails on a
    /// write error or a bad block.
    WritersStop,
}

/// Host writers a rig started ([`crate::writers::Writers`] on the lab).
pub trait Writing {
    /// Stops them and returns the figures; `window` is the fault window on
    /// the host clock.
    fn stop(self: Box<Self>, window: Option<(f64, f64)>) -> Result<WriterFigures, String>;
}

/// An invariant monitor a rig started ([`crate::monitor::Monitor`]).
pub trait Monitoring {
    /// Stops it and checks what it sampled.
    fn stop(self: Box<Self>) -> MonitorReport;
}

impl Writing for crate::writers::Writers {
    fn stop(self: Box<Self>, window: Option<(f64, f64)>) -> Result<WriterFigures, String> {
        crate::writers::Writers::stop(*self, window).map_err(|e| e.to_string())
    }
}

impl Monitoring for crate::monitor::Monitor {
    fn stop(self: Box<Self>) -> MonitorReport {
        crate::monitor::Monitor::stop(*self)
    }
}

/// A named list of steps.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// Its name on the command line.
    pub name: &'static str,
    /// One line on what it shows.
    pub about: &'static str,
    /// The steps, run in order.
    pub steps: Vec<Step>,
}

/// What a scenario acts on: the lab, or a fake in unit tests.
pub trait Rig {
    /// Injects or undoes a fault.
    fn fault(&self, f: &Fault) -> Result<(), String>;
    /// Runs a command in a VM; Err with its output when it fails.
    fn run(&self, vm: &str, argv: &[&str]) -> Result<(), String>;
    /// Checks an expectation once: Ok(true) when it holds now. `since` is
    /// the scenario's start on the host clock (Unix seconds).
    fn check(&self, e: &Expect, since: f64) -> Result<bool, String>;
    /// The host clock, Unix seconds.
    fn now(&self) -> f64;
    /// Sleeps (a fake rig advances its clock instead).
    fn sleep(&self, d: Duration);
    /// Makes sure the appliance demo is set up.
    fn setup(&self) -> Result<(), String> {
        Err("this rig cannot set the appliance up".into())
    }
    /// Starts host writers on both protocols.
    fn start_writers(&self) -> Result<Box<dyn Writing>, String> {
        Err("this rig has no host writers".into())
    }
    /// Starts the invariant monitor, if the rig has one.
    fn start_monitor(&self) -> Option<Box<dyn Monitoring>> {
        None
    }
}

/// One step's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// The step, as text.
    pub step: String,
    /// Whether it succeeded.
    pub ok: bool,
    /// Start, seconds after the scenario started.
    pub at_s: f64,
    /// How long it took.
    pub took_s: f64,
    /// An error or what an expectation saw.
    pub detail: String,
}

/// A scenario's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The scenario.
    pub scenario: String,
    /// True when every step succeeded.
    pub ok: bool,
    /// The steps that ran, in order.
    pub steps: Vec<StepReport>,
    /// Heals run after a failed step, newest fault first.
    pub cleanup: Vec<StepReport>,
    /// When the first fault was injected, seconds after the start.
    pub fault_at_s: Option<f64>,
    /// The host writers' figures, when the scenario had writers.
    pub writers: Option<WriterFigures>,
    /// What the invariant monitor saw, when the rig has one.
    pub monitor: Option<MonitorReport>,
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

fn describe(s: &Step) -> String {
    match s {
        Step::Fault(f) => format!("fault {f:?}"),
        Step::Heal(f) => format!("heal {f:?}"),
        Step::Wait(d) => format!("wait {:.1} s", d.as_secs_f64()),
        Step::Run(vm, argv) => format!("run {vm}: {}", argv.join(" ")),
        Step::Expect(e, d) => format!("expect {e:?} within {:.0} s", d.as_secs_f64()),
        Step::Setup => "setup (appliance demo)".into(),
        Step::WritersStart => "writers start (iscsi + nvme)".into(),
        Step::WritersStop => "writers stop and verify".into(),
    }
}

fn stop_writers(
    w: Box<dyn Writing>,
    window: Option<(f64, f64)>,
    out: &mut Option<WriterFigures>,
) -> Result<(), String> {
    let f = w.stop(window)?;
    let ok = f.ok();
    let summary: Vec<String> = f
        .protocols
        .iter()
        .map(|p| {
            format!(
                "{}: {} errors, verify {}",
                p.protocol,
                p.write_errors,
                if p.verify_ok { "ok" } else { "FAILED" }
            )
        })
        .collect();
    *out = Some(f);
    if ok {
        Ok(())
    } else {
        Err(format!("writers: {}", summary.join("; ")))
    }
}

fn expect(rig: &dyn Rig, e: &Expect, within: Duration, since: f64) -> Result<(), String> {
    let deadline = rig.now() + within.as_secs_f64();
    loop {
        match rig.check(e, since) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            // An unreachable guest is "not yet" until the deadline.
            Err(err) if rig.now() >= deadline => return Err(err),
            Err(_) => {}
        }
        if rig.now() >= deadline {
            return Err("did not hold in time".into());
        }
        rig.sleep(Duration::from_millis(500));
    }
}

/// Runs a scenario: steps in order until one fails, then the heals of the
/// faults still in place.
pub fn run(rig: &dyn Rig, sc: &Scenario) -> Report {
    let t0 = rig.now();
    let monitor = rig.start_monitor();
    let mut applied: Vec<Fault> = Vec::new();
    let mut steps = Vec::new();
    let mut ok = true;
    let mut writers: Option<Box<dyn Writing>> = None;
    let mut figures: Option<WriterFigures> = None;
    // The fault window on the host clock: the first fault, the last heal.
    let mut first_fault: Option<f64> = None;
    let mut last_heal: Option<f64> = None;
    let window = |first: Option<f64>, last: Option<f64>, now: f64| {
        first.map(|f| (f, last.filter(|l| *l >= f).unwrap_or(now)))
    };
    for s in &sc.steps {
        let at = rig.now() - t0;
        let r = match s {
            Step::Fault(f) => {
                first_fault.get_or_insert(t0 + at);
                rig.fault(f).inspect(|()| applied.push(f.clone()))
            }
            Step::Heal(f) => {
                let r = rig.fault(f);
                last_heal = Some(rig.now());
                // Whatever the outcome, do not heal it twice.
                applied.retain(|a| a.heal().as_ref() != Some(f));
                r
            }
            Step::Setup => rig.setup(),
            Step::WritersStart => {
                if writers.is_some() {
                    Err("writers already running".into())
                } else {
                    rig.start_writers().map(|w| writers = Some(w))
                }
            }
            Step::WritersStop => match writers.take() {
                Some(w) => stop_writers(w, window(first_fault, last_heal, rig.now()), &mut figures),
                None => Err("no writers running".into()),
            },
            Step::Wait(d) => {
                rig.sleep(*d);
                Ok(())
            }
            Step::Run(vm, argv) => rig.run(vm, argv),
            Step::Expect(e, d) => expect(rig, e, *d, t0),
        };
        let took = rig.now() - t0 - at;
        steps.push(StepReport {
            step: describe(s),
            ok: r.is_ok(),
            at_s: round3(at),
            took_s: round3(took),
            detail: r.err().unwrap_or_default(),
        });
        if steps.last().is_some_and(|r| !r.ok) {
            ok = false;
            break;
        }
    }
    let mut cleanup = Vec::new();
    if !ok {
        for f in applied.iter().rev() {
            let Some(h) = f.heal() else { continue };
            let at = rig.now() - t0;
            let r = rig.fault(&h);
            cleanup.push(StepReport {
                step: format!("heal {h:?}"),
                ok: r.is_ok(),
                at_s: round3(at),
                took_s: round3(rig.now() - t0 - at),
                detail: r.err().unwrap_or_default(),
            });
        }
    }
    if let Some(w) = writers.take() {
        let at = rig.now() - t0;
        let r = stop_writers(w, window(first_fault, last_heal, rig.now()), &mut figures);
        ok = false;
        cleanup.push(StepReport {
            step: describe(&Step::WritersStop),
            ok: r.is_ok(),
            at_s: round3(at),
            took_s: round3(rig.now() - t0 - at),
            detail: r.err().unwrap_or_default(),
        });
    }
    let monitor = monitor.map(|m| m.stop());
    if monitor.as_ref().is_some_and(|m| !m.ok) {
        ok = false;
    }
    Report {
        scenario: sc.name.to_string(),
        ok,
        steps,
        cleanup,
        fault_at_s: first_fault.map(|f| round3(f - t0)),
        writers: figures,
        monitor,
    }
}

/// The human table of a report.
pub fn table(r: &Report) -> String {
    let mut s = format!(
        "scenario {}: {}\n",
        r.scenario,
        if r.ok { "ok" } else { "FAILED" }
    );
    let _ = writeln!(s, "{:>8} {:>7}  {:<4} step", "at_s", "took_s", "ok");
    for st in r.steps.iter().chain(&r.cleanup) {
        let _ = writeln!(
            s,
            "{:>8.2} {:>7.2}  {:<4} {}{}",
            st.at_s,
            st.took_s,
            if st.ok { "ok" } else { "FAIL" },
            st.step,
            if st.detail.is_empty() {
                String::new()
            } else {
                format!(" ({})", st.detail)
            }
        );
    }
    if let Some(at) = r.fault_at_s {
        let _ = writeln!(s, "  first fault at {at:.2} s");
    }
    if let Some(w) = &r.writers {
        let _ = writeln!(
            s,
            "  {:<6} {:>12} {:>14} {:>8} {:>8} {:>7}",
            "host", "max_pause_ms", "fault_pause_ms", "acked", "errors", "verify"
        );
        for p in &w.protocols {
            let _ = writeln!(
                s,
                "  {:<6} {:>12.0} {:>14} {:>8} {:>8} {:>7}",
                p.protocol,
                p.max_pause_ms,
                p.fault_pause_ms
                    .map_or_else(|| "-".to_string(), |v| format!("{v:.0}")),
                p.writes_acked,
                p.write_errors,
                if p.verify_ok { "ok" } else { "FAILED" }
            );
        }
    }
    if let Some(m) = &r.monitor {
        let samples: Vec<String> = m
            .samples
            .iter()
            .map(|(vm, n)| format!("{vm} {n}"))
            .collect();
        let _ = writeln!(
            s,
            "  monitor: {} violations; samples {}{}",
            m.violations,
            samples.join(", "),
            if m.ok { "" } else { " (FAILED)" }
        );
        for v in &m.first {
            let _ = writeln!(s, "    {:.3} {} {}", v.at, v.kind, v.detail);
        }
    }
    s
}

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Names of the framework's scenarios (besides `smoke`, which boots its
/// own lab and keeps its own runner).
pub fn catalog() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "bmc-fence",
            about: "B fences A through A's BMC (ipmitool -I lanplus), A powers on again",
            steps: vec![
                Step::Expect(Expect::Answers("A"), SECS(420)),
                Step::Fault(Fault::BmcOff("A")),
                Step::Expect(Expect::Powered("A", false), SECS(1)),
                Step::Expect(Expect::Event("A", "QMP_CLOSED"), SECS(5)),
                Step::Heal(Fault::BmcOn("A")),
                Step::Expect(Expect::Answers("A"), SECS(420)),
            ],
        },
        Scenario {
            name: "watchdog-panic",
            about: "A pets its watchdog, its kernel panics, the watchdog resets it",
            steps: vec![
                Step::Expect(Expect::Answers("A"), SECS(420)),
                Step::Run(
                    "A",
                    &[
                        "systemd-run",
                        "--unit=lab-watchdog-petter",
                        "sh",
                        "-c",
                        "wdctl -s 10 /dev/watchdog >/dev/null; exec 3>/dev/watchdog; \
                         while :; do printf x >&3; sleep 2; done",
                    ],
                ),
                Step::Wait(SECS(15)),
                Step::Fault(Fault::Panic("A")),
                Step::Expect(Expect::Event("A", "WATCHDOG"), SECS(60)),
                Step::Expect(Expect::Event("A", "RESET"), SECS(10)),
                Step::Expect(Expect::Answers("A"), SECS(420)),
            ],
        },
        Scenario {
            name: "disk-vanish",
            about: "shelf7 vanishes from A only and comes back",
            steps: vec![
                Step::Expect(Expect::Answers("A"), SECS(420)),
                Step::Fault(Fault::DiskVanish("A", "shelf7")),
                Step::Expect(Expect::SeesDisk("A", "shelf7", false), SECS(60)),
                Step::Expect(Expect::SeesDisk("B", "shelf7", true), SECS(5)),
                Step::Heal(Fault::DiskPush("A", "shelf7")),
                Step::Expect(Expect::SeesDisk("A", "shelf7", true), SECS(60)),
            ],
        },
        Scenario {
            name: "hb-disk-fail",
            about: "hb1 fails I/O on A only, then heals",
            steps: vec![
                Step::Expect(Expect::Answers("A"), SECS(420)),
                Step::Fault(Fault::DiskFail("A", "hb1")),
                Step::Expect(Expect::Reads("A", "hb1", false), SECS(10)),
                Step::Expect(Expect::Reads("B", "hb1", true), SECS(10)),
                Step::Heal(Fault::DiskPush("A", "hb1")),
                Step::Expect(Expect::Reads("A", "hb1", true), SECS(10)),
            ],
        },
        Scenario {
            name: "handover",
            about: "planned move of the demo pool A -> B under verified writes on both protocols",
            steps: vec![
                Step::Setup,
                Step::WritersStart,
                Step::Wait(SECS(6)),
                Step::Fault(Fault::Handover("A", "B")),
                Step::Wait(SECS(5)),
                Step::WritersStop,
            ],
        },
        Scenario {
            name: "power-cut",
            about: "both controllers lose power at once and boot again",
            steps: vec![
                Step::Fault(Fault::PowerCut),
                Step::Expect(Expect::Powered("A", false), SECS(1)),
                Step::Expect(Expect::Powered("B", false), SECS(1)),
                Step::Heal(Fault::PowerRestore),
                Step::Expect(Expect::Answers("A"), SECS(420)),
                Step::Expect(Expect::Answers("B"), SECS(420)),
            ],
        },
    ]
}

/// The framework on the real lab.
pub struct LabRig<'a>(pub &'a crate::lab::Lab);

/// The longest a scenario's writers write (they stop at `WritersStop`).
const WRITE_SECONDS_MAX: u32 = 1800;

/// H's demo devices on both protocols, or why there are none.
fn host_devices(lab: &crate::lab::Lab) -> Result<crate::demo::HostFacts, String> {
    let f = crate::demo::host_facts_for(lab, crate::appliance::NQN).map_err(err)?;
    if f.iscsi_devs.len() == 1 && f.nvme_devs.len() == 1 {
        Ok(f)
    } else {
        Err(format!(
            "H does not see one iSCSI and one NVMe demo device (no Step::Setup?): {f:?}"
        ))
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Rig for LabRig<'_> {
    fn fault(&self, f: &Fault) -> Result<(), String> {
        use crate::fault::{self as fl, DiskFault};
        use crate::lab::{self, Power};
        let lab = self.0;
        match f {
            Fault::BmcOff(vm) => crate::bmc::from_partner(lab, vm, "off").map(drop),
            Fault::BmcOn(vm) => crate::bmc::from_partner(lab, vm, "on").map(drop),
            Fault::BmcReset(vm) => crate::bmc::from_partner(lab, vm, "reset").map(drop),
            Fault::DiskVanish(vm, d) => fl::pull(lab, vm, d, DiskFault::Vanish),
            Fault::DiskFail(vm, d) => fl::pull(lab, vm, d, DiskFault::Fail),
            Fault::DiskPush(vm, d) => fl::push(lab, vm, d),
            Fault::Hang(vm, s) => fl::hang(lab, vm, s),
            Fault::Resume(vm, s) => fl::resume(lab, vm, s),
            Fault::Panic(vm) => fl::panic(lab, vm).map(drop),
            Fault::PowerCut => fl::power_cut(lab),
            Fault::PowerRestore => lab::power(lab, "A", Power::PowerOn)
                .and_then(|()| lab::power(lab, "B", Power::PowerOn)),
            Fault::Handover(from, to) => crate::appliance::handover(lab, from, to).map(drop),
        }
        .map_err(err)
    }

    fn setup(&self) -> Result<(), String> {
        if host_devices(self.0).is_ok() {
            return Ok(());
        }
        crate::appliance::setup(self.0).map(drop).map_err(err)
    }

    fn start_writers(&self) -> Result<Box<dyn Writing>, String> {
        let facts = host_devices(self.0)?;
        crate::writers::start(self.0, &facts, WRITE_SECONDS_MAX)
            .map(|w| Box::new(w) as Box<dyn Writing>)
            .map_err(err)
    }

    fn start_monitor(&self) -> Option<Box<dyn Monitoring>> {
        Some(Box::new(crate::monitor::start(self.0, &["A", "B"])))
    }

    fn run(&self, vm: &str, argv: &[&str]) -> Result<(), String> {
        crate::lab::exec_ok(self.0, vm, argv, Duration::from_secs(120))
            .map(drop)
            .map_err(err)
    }

    fn check(&self, e: &Expect, since: f64) -> Result<bool, String> {
        let lab = self.0;
        let short = Duration::from_secs(10);
        match e {
            Expect::Powered(vm, on) => crate::lab::is_running(lab, vm)
                .map(|r| r == *on)
                .map_err(err),
            Expect::Answers(vm) => crate::lab::exec(lab, vm, &["true".to_string()], short)
                .map(|r| r.code == Some(0))
                .map_err(err),
            Expect::Event(vm, name) => crate::events::read(lab, vm)
                .map(|evs| {
                    evs.iter()
                        .any(|ev| ev.event == *name && ev.host_ts >= since)
                })
                .map_err(err),
            Expect::SeesDisk(vm, disk, present) => {
                let argv = crate::cmd::argv(&["ls", "/dev/disk/by-id/"]);
                let out = crate::lab::exec(lab, vm, &argv, short).map_err(err)?;
                let seen = out
                    .stdout
                    .split_whitespace()
                    .any(|l| l == format!("virtio-{disk}"));
                Ok(seen == *present)
            }
            Expect::Reads(vm, disk, works) => {
                let dev = format!("if=/dev/disk/by-id/virtio-{disk}");
                let argv = crate::cmd::argv(&[
                    "dd",
                    &dev,
                    "of=/dev/null",
                    "bs=4096",
                    "count=1",
                    "iflag=direct",
                ]);
                let r = crate::lab::exec(lab, vm, &argv, short).map_err(err)?;
                Ok((r.code == Some(0)) == *works)
            }
        }
    }

    fn now(&self) -> f64 {
        crate::events::now()
    }

    fn sleep(&self, d: Duration) {
        std::thread::sleep(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// A fake lab: records what happened, fails where told, its clock
    /// advances only by sleeps.
    #[derive(Default)]
    struct Fake {
        log: RefCell<Vec<String>>,
        clock: RefCell<f64>,
        fail_fault: Option<Fault>,
        /// Expectations that never hold.
        never: Vec<Expect>,
        /// The monitor reports a violation.
        violation: bool,
        /// Write errors the writers report.
        write_errors: u64,
    }

    impl Rig for Fake {
        fn fault(&self, f: &Fault) -> Result<(), String> {
            self.log.borrow_mut().push(format!("{f:?}"));
            if self.fail_fault.as_ref() == Some(f) {
                Err("injected".into())
            } else {
                Ok(())
            }
        }
        fn run(&self, vm: &str, argv: &[&str]) -> Result<(), String> {
            self.log
                .borrow_mut()
                .push(format!("run {vm} {}", argv.join(" ")));
            Ok(())
        }
        fn check(&self, e: &Expect, _since: f64) -> Result<bool, String> {
            self.log.borrow_mut().push(format!("check {e:?}"));
            Ok(!self.never.contains(e))
        }
        fn now(&self) -> f64 {
            *self.clock.borrow()
        }
        fn sleep(&self, d: Duration) {
            *self.clock.borrow_mut() += d.as_secs_f64();
        }
        fn setup(&self) -> Result<(), String> {
            self.log.borrow_mut().push("setup".into());
            Ok(())
        }
        fn start_writers(&self) -> Result<Box<dyn Writing>, String> {
            self.log.borrow_mut().push("writers start".into());
            Ok(Box::new(FakeWriters {
                errors: self.write_errors,
            }))
        }
        fn start_monitor(&self) -> Option<Box<dyn Monitoring>> {
            Some(Box::new(FakeMonitor(self.violation)))
        }
    }

    struct FakeWriters {
        errors: u64,
    }

    impl Writing for FakeWriters {
        fn stop(self: Box<Self>, window: Option<(f64, f64)>) -> Result<WriterFigures, String> {
            let p = |name: &str| crate::writers::ProtocolFigures {
                protocol: name.into(),
                max_pause_ms: 100.0,
                max_pause_at: 0.0,
                fault_pause_ms: window.map(|(a, b)| (b - a) * 1000.0),
                writes_acked: 10,
                write_errors: self.errors,
                verify_ok: true,
                verified_blocks: 10,
                ok: self.errors == 0,
            };
            Ok(WriterFigures {
                started_at: 0.0,
                seconds: 1.0,
                stuck_writers: 0,
                protocols: vec![p("iscsi"), p("nvme")],
            })
        }
    }

    struct FakeMonitor(bool);

    impl Monitoring for FakeMonitor {
        fn stop(self: Box<Self>) -> MonitorReport {
            let v = crate::monitor::Violation {
                at: 1.0,
                kind: "pool_active_on_both".into(),
                detail: "vg x on A and B".into(),
            };
            MonitorReport {
                samples: [("A".to_string(), 5), ("B".to_string(), 5)].into(),
                views: Default::default(),
                violations: usize::from(self.0),
                by_kind: Default::default(),
                first: if self.0 { vec![v] } else { vec![] },
                ok: !self.0,
            }
        }
    }

    fn sc(steps: Vec<Step>) -> Scenario {
        Scenario {
            name: "t",
            about: "test",
            steps,
        }
    }

    #[test]
    fn steps_run_in_order_and_a_clean_run_passes_without_cleanup() {
        let f = Fake::default();
        let r = run(
            &f,
            &sc(vec![
                Step::Fault(Fault::Hang("A", "x")),
                Step::Wait(SECS(3)),
                Step::Expect(Expect::Answers("B"), SECS(5)),
                Step::Heal(Fault::Resume("A", "x")),
            ]),
        );
        assert!(r.ok);
        assert!(r.cleanup.is_empty());
        assert_eq!(
            *f.log.borrow(),
            [
                "Hang(\"A\", \"x\")",
                "check Answers(\"B\")",
                "Resume(\"A\", \"x\")"
            ]
        );
        assert_eq!(r.steps.len(), 4);
        assert_eq!(r.steps[2].at_s, 3.0);
    }

    #[test]
    fn an_unmet_expectation_fails_the_scenario_and_stops_it() {
        let f = Fake {
            never: vec![Expect::Powered("A", false)],
            ..Fake::default()
        };
        let r = run(
            &f,
            &sc(vec![
                Step::Expect(Expect::Powered("A", false), SECS(2)),
                Step::Fault(Fault::PowerCut),
            ]),
        );
        assert!(!r.ok);
        assert_eq!(r.steps.len(), 1);
        assert!(!f.log.borrow().iter().any(|l| l == "PowerCut"));
        // It kept checking until its deadline.
        assert!(f.now() >= 2.0);
    }

    #[test]
    fn faults_still_in_place_are_healed_newest_first_after_a_failure() {
        let f = Fake {
            fail_fault: Some(Fault::Panic("B")),
            ..Fake::default()
        };
        let r = run(
            &f,
            &sc(vec![
                Step::Fault(Fault::DiskVanish("A", "shelf1")),
                Step::Fault(Fault::Hang("A", "svc")),
                Step::Heal(Fault::Resume("A", "svc")),
                Step::Fault(Fault::BmcOff("A")),
                Step::Fault(Fault::Panic("B")),
                Step::Fault(Fault::PowerCut),
            ]),
        );
        assert!(!r.ok);
        assert_eq!(r.steps.len(), 5);
        let heals: Vec<&str> = r.cleanup.iter().map(|s| s.step.as_str()).collect();
        // The hang was healed by its step; the failed panic never applied.
        assert_eq!(
            heals,
            ["heal BmcOn(\"A\")", "heal DiskPush(\"A\", \"shelf1\")"]
        );
        assert!(table(&r).contains("FAIL"));
    }

    #[test]
    fn a_monitor_violation_fails_a_scenario_whose_steps_passed() {
        let f = Fake {
            violation: true,
            ..Fake::default()
        };
        let r = run(&f, &sc(vec![Step::Wait(SECS(1))]));
        assert!(r.steps.iter().all(|s| s.ok));
        assert!(!r.ok);
        assert_eq!(r.monitor.as_ref().map(|m| m.violations), Some(1));
        assert!(table(&r).contains("pool_active_on_both"));
        let clean = run(&Fake::default(), &sc(vec![Step::Wait(SECS(1))]));
        assert!(clean.ok);
    }

    #[test]
    fn writers_report_the_fault_window_and_fail_on_errors() {
        let steps = vec![
            Step::Setup,
            Step::WritersStart,
            Step::Wait(SECS(2)),
            Step::Fault(Fault::Hang("A", "x")),
            Step::Wait(SECS(3)),
            Step::Heal(Fault::Resume("A", "x")),
            Step::Wait(SECS(1)),
            Step::WritersStop,
        ];
        let f = Fake::default();
        let r = run(&f, &sc(steps.clone()));
        assert!(r.ok, "{}", table(&r));
        assert_eq!(r.fault_at_s, Some(2.0));
        let w = r.writers.as_ref().unwrap();
        // The window runs from the hang to the resume: 3 s.
        assert_eq!(w.protocols[0].fault_pause_ms, Some(3000.0));
        assert!(table(&r).contains("fault_pause_ms"));
        assert_eq!(f.log.borrow()[..2], ["setup", "writers start"]);
        let bad = Fake {
            write_errors: 3,
            ..Fake::default()
        };
        let r = run(&bad, &sc(steps));
        assert!(!r.ok);
        assert!(r.steps.last().unwrap().detail.contains("3 errors"));
    }

    #[test]
    fn writers_still_running_after_a_failure_are_stopped_after_the_heals() {
        let f = Fake {
            fail_fault: Some(Fault::Panic("A")),
            ..Fake::default()
        };
        let r = run(
            &f,
            &sc(vec![
                Step::WritersStart,
                Step::Fault(Fault::Hang("A", "x")),
                Step::Fault(Fault::Panic("A")),
                Step::WritersStop,
            ]),
        );
        assert!(!r.ok);
        let cleanup: Vec<&str> = r.cleanup.iter().map(|s| s.step.as_str()).collect();
        assert_eq!(
            cleanup,
            ["heal Resume(\"A\", \"x\")", "writers stop and verify"]
        );
        assert!(r.writers.is_some());
        // Stopping writers nobody started is a failed step.
        let r = run(&Fake::default(), &sc(vec![Step::WritersStop]));
        assert!(!r.ok);
    }

    #[test]
    fn every_catalog_fault_has_its_heal_in_the_scenario() {
        for s in catalog() {
            let faults: Vec<&Fault> = s
                .steps
                .iter()
                .filter_map(|st| match st {
                    Step::Fault(f) => Some(f),
                    _ => None,
                })
                .collect();
            for f in faults {
                let Some(h) = f.heal() else { continue };
                // A panic is healed by the watchdog, not by a step.
                if matches!(f, Fault::Panic(_)) {
                    continue;
                }
                assert!(
                    s.steps.contains(&Step::Heal(h.clone())),
                    "{}: {f:?} is never healed",
                    s.name
                );
            }
        }
    }
}
