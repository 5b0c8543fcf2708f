//! The scenario framework: a scenario is data (steps: faults, heals, waits,
//! commands, expectations), run in order against a [`Rig`]. The first step
//! that fails ends the run, and every fault applied and not yet healed is
//! then healed, newest first, so a failed scenario leaves the lab usable.
//! The report lists each step with its time; a scenario passes only when
//! every step did.
//!
//! Adding a scenario is a few lines in [`catalog`].

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
            | Self::PowerRestore => None,
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
    let mut applied: Vec<Fault> = Vec::new();
    let mut steps = Vec::new();
    let mut ok = true;
    for s in &sc.steps {
        let at = rig.now() - t0;
        let r = match s {
            Step::Fault(f) => rig.fault(f).inspect(|()| applied.push(f.clone())),
            Step::Heal(f) => {
                let r = rig.fault(f);
                // Whatever the outcome, do not heal it twice.
                applied.retain(|a| a.heal().as_ref() != Some(f));
                r
            }
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
    Report {
        scenario: sc.name.to_string(),
        ok,
        steps,
        cleanup,
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
        }
        .map_err(err)
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
