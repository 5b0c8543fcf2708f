//! Lab tier: the fault-injection rig itself (BMCs over IPMI-over-LAN, the
//! watchdog, shared disks pulled from one controller). Needs a running lab
//! (`duplex-lab up` with the same `DUPLEX_LAB_RUN`), so every test is
//! `#[ignore]`: a run without a lab lists them as ignored, the lab tier runs
//! them with `--include-ignored --test-threads=1`.
//!
//! ```text
//! DUPLEX_LAB_RUN=/tmp/my-lab cargo test -p duplex-lab --test rig -- --include-ignored --test-threads=1
//! ```
//! Each test leaves A running with its agent answering.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report

use duplex_lab::fault::{self, DiskFault};
use duplex_lab::lab::{self, Lab};
use duplex_lab::{events, monitor};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests share one lab: one at a time even without --test-threads=1.
static LAB: Mutex<()> = Mutex::new(());

fn exec(lab: &Lab, vm: &str, argv: &[&str], timeout_s: u64) -> (i32, String, String) {
    let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
    let r = lab::exec(lab, vm, &argv, Duration::from_secs(timeout_s)).expect("agent");
    (r.code.unwrap_or(-1), r.stdout, r.stderr)
}

fn toml_value<'a>(doc: &'a str, key: &str) -> &'a str {
    doc.lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().trim_matches('"'))
        })
        .unwrap_or_else(|| panic!("no {key} in partner-bmc.toml"))
}

/// `ipmitool -I lanplus` run on `from` against its partner's BMC with the
/// credentials the payload gave it.
fn ipmi_from(lab: &Lab, from: &str, args: &[&str]) -> (i32, String, String) {
    let (code, doc, err) = exec(lab, from, &["cat", "/etc/duplex/partner-bmc.toml"], 30);
    assert_eq!(code, 0, "{from} has no partner-bmc.toml: {err}");
    let mut argv = vec![
        "ipmitool",
        "-I",
        "lanplus",
        "-H",
        toml_value(&doc, "address"),
        "-U",
        toml_value(&doc, "user"),
        "-P",
        toml_value(&doc, "password"),
        "-C",
        toml_value(&doc, "cipher_suite"),
        "-N",
        "10",
        "-R",
        "2",
    ];
    argv.extend_from_slice(args);
    exec(lab, from, &argv, 120)
}

fn wait_agent(lab: &Lab, vm: &str) {
    lab::wait_agents(lab, &[vm], Duration::from_secs(420)).expect("agent back");
}

/// Both controllers answer (an earlier test or fault may have restarted
/// either).
fn ready(lab: &Lab) {
    lab::wait_agents(lab, &["A", "B"], Duration::from_secs(420)).expect("A and B answer");
}

#[test]
#[ignore = "needs a running lab (duplex-lab up)"]
fn ipmi_power_off_from_b_turns_a_off_and_power_on_brings_it_back() {
    let _g = LAB.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::from_env();
    ready(&lab);
    // The partner's BMC file is a secret.
    let (_, mode, _) = exec(
        &lab,
        "B",
        &["stat", "-c", "%a", "/etc/duplex/partner-bmc.toml"],
        30,
    );
    assert_eq!(mode.trim(), "600");
    let (code, out, err) = ipmi_from(&lab, "B", &["chassis", "power", "status"]);
    assert_eq!(code, 0, "status: {out} {err}");
    assert!(out.contains("is on"), "{out}");

    let (code, out, err) = ipmi_from(&lab, "B", &["chassis", "power", "off"]);
    assert_eq!(code, 0, "power off: {out} {err}");
    // The BMC answers only once QEMU has exited.
    assert!(
        !lab::is_running(&lab, "A").unwrap(),
        "A still runs after power off"
    );
    let (code, out, _) = ipmi_from(&lab, "B", &["chassis", "power", "status"]);
    assert_eq!(code, 0);
    assert!(out.contains("is off"), "{out}");

    let (code, out, err) = ipmi_from(&lab, "B", &["chassis", "power", "on"]);
    assert_eq!(code, 0, "power on: {out} {err}");
    assert!(
        lab::is_running(&lab, "A").unwrap(),
        "A not started by power on"
    );
    let (_, out, _) = ipmi_from(&lab, "B", &["chassis", "power", "status"]);
    assert!(out.contains("is on"), "{out}");
    let t = Instant::now();
    wait_agent(&lab, "A");
    let (code, _, _) = exec(&lab, "A", &["true"], 30);
    assert_eq!(code, 0);
    eprintln!(
        "A answered {:.0} s after power on",
        t.elapsed().as_secs_f64()
    );
}

#[test]
#[ignore = "needs a running lab (duplex-lab up)"]
fn an_unpetted_watchdog_resets_a() {
    let _g = LAB.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::from_env();
    ready(&lab);
    let (code, _, err) = exec(&lab, "A", &["test", "-c", "/dev/watchdog"], 30);
    assert_eq!(code, 0, "no /dev/watchdog on A: {err}");
    // 10 s instead of the driver's 30; wdctl closes with the magic 'V'.
    let (code, out, err) = exec(&lab, "A", &["wdctl", "-s", "10", "/dev/watchdog"], 30);
    assert_eq!(code, 0, "wdctl: {out} {err}");
    let since = events::now();
    // Open, one ping, close without 'V': the timer keeps running.
    let _ = exec(&lab, "A", &["sh", "-c", "printf x > /dev/watchdog"], 30);
    let wd = events::wait_for(&lab, "A", "WATCHDOG", since, Duration::from_secs(120))
        .unwrap()
        .expect("no WATCHDOG event from A within 120 s");
    assert_eq!(wd.data["action"], "reset", "{wd:?}");
    let fired = wd.host_ts - since;
    assert!(fired >= 5.0, "fired after {fired:.1} s, before its timeout");
    let reset = events::wait_for(&lab, "A", "RESET", wd.host_ts, Duration::from_secs(30))
        .unwrap()
        .expect("no RESET after the WATCHDOG event");
    eprintln!(
        "watchdog fired {fired:.1} s after the close, reset {:.2} s later",
        reset.host_ts - wd.host_ts
    );
    wait_agent(&lab, "A");
}

/// Serials of the virtio disks a controller sees.
fn serials(lab: &Lab, vm: &str) -> Vec<String> {
    let (code, out, err) = exec(
        lab,
        vm,
        // sysfs serials have no newline of their own.
        &[
            "sh",
            "-c",
            "for f in /sys/block/vd*/serial; do cat \"$f\"; echo; done",
        ],
        30,
    );
    assert_eq!(code, 0, "{err}");
    out.split_whitespace().map(str::to_string).collect()
}

fn wait_serial(lab: &Lab, vm: &str, disk: &str, present: bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if serials(lab, vm).iter().any(|s| s == disk) == present {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Pushes a pulled disk back when the test ends, passed or failed, so a
/// failure does not leave the lab broken for the next test.
struct PushBack<'a>(&'a Lab, &'static str, &'static str);

impl Drop for PushBack<'_> {
    fn drop(&mut self) {
        if let Err(e) = fault::push(self.0, self.1, self.2) {
            eprintln!("push {} {} back: {e}", self.1, self.2);
        }
    }
}

fn direct_read(lab: &Lab, vm: &str, disk: &str) -> i32 {
    let dev = format!("if=/dev/disk/by-id/virtio-{disk}");
    exec(
        lab,
        vm,
        &[
            "dd",
            &dev,
            "of=/dev/null",
            "bs=4096",
            "count=1",
            "iflag=direct",
        ],
        60,
    )
    .0
}

#[test]
#[ignore = "needs a running lab (duplex-lab up)"]
fn a_pulled_shelf_disk_vanishes_from_a_only_and_comes_back() {
    let _g = LAB.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::from_env();
    ready(&lab);
    assert!(serials(&lab, "A").contains(&"shelf7".to_string()));
    let _heal = PushBack(&lab, "A", "shelf7");
    fault::pull(&lab, "A", "shelf7", DiskFault::Vanish).unwrap();
    assert!(wait_serial(&lab, "A", "shelf7", false), "shelf7 still on A");
    assert!(
        serials(&lab, "B").contains(&"shelf7".to_string()),
        "B lost shelf7"
    );
    fault::push(&lab, "A", "shelf7").unwrap();
    assert!(
        wait_serial(&lab, "A", "shelf7", true),
        "shelf7 not back on A"
    );
}

#[test]
#[ignore = "needs a running lab (duplex-lab up)"]
fn a_failed_heartbeat_disk_fails_io_on_a_only_and_heals() {
    let _g = LAB.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::from_env();
    ready(&lab);
    for d in ["hb0", "hb1", "hb2"] {
        assert_eq!(direct_read(&lab, "A", d), 0, "{d} unreadable on A");
    }
    let _heal = PushBack(&lab, "A", "hb1");
    fault::pull(&lab, "A", "hb1", DiskFault::Fail).unwrap();
    assert_ne!(direct_read(&lab, "A", "hb1"), 0, "hb1 still reads on A");
    assert!(
        serials(&lab, "A").contains(&"hb1".to_string()),
        "the device must stay"
    );
    assert_eq!(direct_read(&lab, "B", "hb1"), 0, "B's hb1 failed too");
    fault::push(&lab, "A", "hb1").unwrap();
    assert_eq!(direct_read(&lab, "A", "hb1"), 0, "hb1 not healed on A");
}

/// Removes the scratch device-mapper device on both controllers.
struct RemoveScratch<'a>(&'a Lab);

const SCRATCH: &str = "lab_scratch-thin0";

impl Drop for RemoveScratch<'_> {
    fn drop(&mut self) {
        for vm in ["A", "B"] {
            let _ = exec(self.0, vm, &["dmsetup", "remove", "--retry", SCRATCH], 30);
        }
    }
}

/// A device of a scratch volume group made live by hand: on A only, then
/// on both controllers, which the monitor must report (invariant 1). The
/// device is a `zero` table with an LVM-style dm uuid, so no LVM metadata
/// on the shelf is touched: what the monitor checks is the kernel's view.
#[test]
#[ignore = "needs a running lab (duplex-lab up)"]
fn the_monitor_reports_a_volume_group_live_on_both_controllers() {
    let _g = LAB.lock().unwrap_or_else(|p| p.into_inner());
    let lab = Lab::from_env();
    ready(&lab);
    let _clean = RemoveScratch(&lab);
    let uuid = format!("LVM-{}{}", "5c".repeat(16), "7e".repeat(16));
    let create = [
        "dmsetup",
        "create",
        SCRATCH,
        "--uuid",
        uuid.as_str(),
        "--table",
        "0 2048 zero",
    ];
    let m = monitor::start(&lab, &["A", "B"]);
    let (code, _, err) = exec(&lab, "A", &create, 30);
    assert_eq!(code, 0, "dmsetup on A: {err}");
    std::thread::sleep(Duration::from_secs(4));
    let r = m.stop();
    assert_eq!(r.violations, 0, "live on A only: {:?}", r.first);
    assert!(
        r.samples.values().all(|n| *n >= 5),
        "too few samples: {:?}",
        r.samples
    );

    let m = monitor::start(&lab, &["A", "B"]);
    std::thread::sleep(Duration::from_secs(1));
    let (code, _, err) = exec(&lab, "B", &create, 30);
    assert_eq!(code, 0, "dmsetup on B: {err}");
    std::thread::sleep(Duration::from_secs(4));
    let r = m.stop();
    assert!(!r.ok);
    assert!(
        r.by_kind.get("pool_active_on_both").is_some_and(|n| *n > 0),
        "{r:?}"
    );
    assert!(
        r.first.iter().any(|v| v.detail.contains(SCRATCH)),
        "{:?}",
        r.first
    );
}
