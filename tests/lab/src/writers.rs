//! Host writers: `duplex-verify` on H, writing and checking both demo
//! devices at once (the iSCSI dm-multipath map and the NVMe multipath
//! namespace), in the background while a scenario injects its faults.
//!
//! ```text
//! let facts = demo::host_facts_for(lab, appliance::NQN)?;   // after appliance::setup
//! let w = writers::start(lab, &facts, 900)?;                  // returns once writing
//! let fault_at = events::now();  ... fault ... heal ...  let healed_at = events::now();
//! let figs = w.stop(Some((fault_at, healed_at)))?;           // stop, read back, figures
//! figs.ok()                                                   // no error, every block verified
//! ```
//!
//! The verifier runs as a transient unit on H (`duplex-lab-writers`), not
//! as a command held open on the agent, which serves one client at a
//! time: a scenario keeps using H while the writes go on. `stop` touches
//! the stop file, waits for the unit to end (the read-back included) and
//! reads its JSON. One set of writers at a time per lab.

use crate::demo::HostFacts;
use crate::lab::{self, Lab, LabError};
use serde::{Deserialize, Serialize};
use std::time::{Duration, Instant};

/// The transient unit running the verifier on H.
const UNIT: &str = "duplex-lab-writers";
/// The file whose existence ends the writes.
const STOP_FILE: &str = "/run/duplex-lab/writers.stop";
/// Where the unit writes its JSON report.
const OUT: &str = "/run/duplex-lab/writers.json";

/// One of the verifier's longest pauses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gap {
    /// Start of the pause, seconds on the writer's timeline.
    pub at_s: f64,
    /// Its length.
    pub ms: f64,
}

/// The read-back of one device.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VerifyResult {
    /// Blocks read back.
    pub checked: u64,
    /// Blocks holding their last acknowledged write.
    pub intact: u64,
    /// Blocks that do not.
    pub bad: u64,
    /// Blocks that could not be read.
    pub read_errors: u64,
    /// The first bad block, described.
    pub first_bad: Option<String>,
    /// Every acknowledged write is there.
    pub ok: bool,
}

/// `duplex-verify`'s report of one device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceResult {
    /// `iscsi` or `nvme`.
    pub name: String,
    /// The device path on H.
    pub device: String,
    /// Writes acknowledged.
    pub writes_acked: u64,
    /// Writes that failed.
    pub write_errors: u64,
    /// Writes per second.
    pub iops: f64,
    /// The longest pause between completions.
    pub max_gap_ms: f64,
    /// When it started (writer's timeline).
    pub max_gap_at_s: f64,
    /// The first failed write, described.
    pub first_error: Option<String>,
    /// The longest pauses, longest first.
    #[serde(default)]
    pub gaps: Vec<Gap>,
    /// The read-back.
    pub verify: VerifyResult,
    /// No error and verified.
    pub ok: bool,
}

/// `duplex-verify`'s JSON report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReport {
    /// How long it was asked to write at most.
    pub seconds: f64,
    /// When it saw the stop file, seconds after its writes started.
    #[serde(default)]
    pub stop_seen_at_s: Option<f64>,
    /// Writer threads per device.
    pub threads_per_device: u64,
    /// Writers that never returned from a write.
    pub stuck_writers: u64,
    /// Per device.
    pub devices: Vec<DeviceResult>,
    /// Everything held.
    pub ok: bool,
}

/// What a scenario reports for one protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProtocolFigures {
    /// `iscsi` or `nvme`.
    pub protocol: String,
    /// The longest host-visible pause of the whole run.
    pub max_pause_ms: f64,
    /// When it started, host clock (Unix seconds).
    pub max_pause_at: f64,
    /// The longest pause that started in the fault window (from a second
    /// before the first fault to two seconds after the last heal), if any
    /// of the verifier's longest pauses lies there.
    pub fault_pause_ms: Option<f64>,
    /// Writes acknowledged.
    pub writes_acked: u64,
    /// Writes that failed.
    pub write_errors: u64,
    /// Every acknowledged write read back intact.
    pub verify_ok: bool,
    /// Blocks verified intact.
    pub verified_blocks: u64,
    /// No error and verified.
    pub ok: bool,
}

/// The figures of one run of the writers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WriterFigures {
    /// Host clock when the writes started (Unix seconds).
    pub started_at: f64,
    /// The most it was asked to write.
    pub seconds: f64,
    /// Writers stuck in a write at the end.
    pub stuck_writers: u64,
    /// Per protocol.
    pub protocols: Vec<ProtocolFigures>,
}

impl WriterFigures {
    /// No write error, nothing stuck, every protocol verified.
    pub fn ok(&self) -> bool {
        self.stuck_writers == 0 && !self.protocols.is_empty() && self.protocols.iter().all(|p| p.ok)
    }
}

/// Turns the verifier's report into per-protocol figures; `window` is the
/// fault window in host time, `started_at` the host time of the writer's 0.
pub fn figures(r: &VerifyReport, started_at: f64, window: Option<(f64, f64)>) -> WriterFigures {
    let protocols = r
        .devices
        .iter()
        .map(|d| {
            let fault_pause_ms = window.and_then(|(from, to)| {
                // The placement of the writer's timeline is good to a
                // fraction of a second: one second of slack before, two
                // after.
                let (from, to) = (from - started_at - 1.0, to - started_at + 2.0);
                d.gaps
                    .iter()
                    .filter(|g| g.at_s >= from && g.at_s <= to)
                    .map(|g| g.ms)
                    .reduce(f64::max)
            });
            ProtocolFigures {
                protocol: d.name.clone(),
                max_pause_ms: d.max_gap_ms,
                max_pause_at: round3(started_at + d.max_gap_at_s),
                fault_pause_ms,
                writes_acked: d.writes_acked,
                write_errors: d.write_errors,
                verify_ok: d.verify.ok,
                verified_blocks: d.verify.intact,
                ok: d.ok,
            }
        })
        .collect();
    WriterFigures {
        started_at: round3(started_at),
        seconds: r.seconds,
        stuck_writers: r.stuck_writers,
        protocols,
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Writers running on H.
#[derive(Debug)]
pub struct Writers {
    lab: Lab,
    started_at: f64,
    max_seconds: u32,
}

/// The verifier's command line for the demo devices.
pub fn argv(facts: &HostFacts, max_seconds: u32) -> Vec<String> {
    let mut a: Vec<String> = [
        "systemd-run",
        "--quiet",
        "--collect",
        &format!("--unit={UNIT}"),
        "-p",
        &format!("StandardOutput=truncate:{OUT}"),
        "/usr/local/bin/duplex-verify",
        "--seconds",
        &max_seconds.to_string(),
        "--threads",
        "4",
        "--blocks",
        "4096",
        "--stop-file",
        STOP_FILE,
    ]
    .iter()
    .map(|s| (*s).to_string())
    .collect();
    for d in &facts.iscsi_devs {
        a.push("--device".into());
        a.push(format!("iscsi={d}"));
    }
    for d in &facts.nvme_devs {
        a.push("--device".into());
        a.push(format!("nvme={d}"));
    }
    a
}

/// Starts verified writes on every device in `facts` (both protocols),
/// for at most `max_seconds`; returns once the verifier runs.
pub fn start(lab: &Lab, facts: &HostFacts, max_seconds: u32) -> Result<Writers, LabError> {
    if facts.iscsi_devs.is_empty() || facts.nvme_devs.is_empty() {
        return Err(LabError::State(format!(
            "writers need an iSCSI and an NVMe device on H (set the demo up first): {facts:?}"
        )));
    }
    let short = Duration::from_secs(30);
    // A unit left by an earlier run (its scenario failed) would block ours.
    let _ = lab::exec(
        lab,
        "H",
        &crate::cmd::argv(&["systemctl", "stop", UNIT]),
        short,
    );
    let _ = lab::exec(
        lab,
        "H",
        &crate::cmd::argv(&["rm", "-f", STOP_FILE, OUT]),
        short,
    );
    let started_at = crate::events::now();
    let r = lab::exec(lab, "H", &argv(facts, max_seconds), Duration::from_secs(60))?;
    if r.code != Some(0) {
        return Err(LabError::State(format!(
            "systemd-run duplex-verify: {} {}",
            r.stdout, r.stderr
        )));
    }
    Ok(Writers {
        lab: lab.clone(),
        started_at,
        max_seconds,
    })
}

impl Writers {
    /// Host time the writes were asked for (they start a little later).
    pub fn started_at(&self) -> f64 {
        self.started_at
    }

    /// Ends the writes, waits for the read-back and returns the figures;
    /// `window` (host time) marks the fault for `fault_pause_ms`.
    pub fn stop(self, window: Option<(f64, f64)>) -> Result<WriterFigures, LabError> {
        let lab = &self.lab;
        let short = Duration::from_secs(30);
        let stop_at = crate::events::now();
        lab::exec_ok(lab, "H", &["touch", STOP_FILE], short)?;
        let t = Instant::now();
        // The read-back of 2 x 4096 blocks takes seconds; a writer stuck
        // in a write is given up by the verifier itself (stall_seconds).
        let limit = Duration::from_secs(u64::from(self.max_seconds).min(60) + 180);
        loop {
            let r = lab::exec(
                lab,
                "H",
                &crate::cmd::argv(&["systemctl", "is-active", "--quiet", UNIT]),
                short,
            )?;
            // Non-zero once the unit is gone (collected) or failed.
            if r.code != Some(0) {
                break;
            }
            if t.elapsed() > limit {
                // Writers stuck in I/O that never returns (no path left):
                // leave H without the unit for the next scenario.
                let _ = lab::exec(
                    lab,
                    "H",
                    &crate::cmd::argv(&["systemctl", "kill", "--signal=SIGKILL", UNIT]),
                    short,
                );
                return Err(LabError::State(format!(
                    "{UNIT} still running after {limit:?} (host I/O stuck?)"
                )));
            }
            std::thread::sleep(Duration::from_secs(1));
        }
        let out = lab::exec_ok(lab, "H", &["cat", OUT], short)?;
        let r: VerifyReport = serde_json::from_str(&out)
            .map_err(|e| LabError::State(format!("duplex-verify output ({e}): {out}")))?;
        // The verifier's 0 lies seconds after the host's mark on a loaded
        // machine (unit start, opening the devices): place it from the
        // stop, which both clocks saw (the verifier polls every 20 ms).
        let started_at = r.stop_seen_at_s.map_or(self.started_at, |s| stop_at - s);
        Ok(figures(&r, started_at, window))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REPORT: &str = r#"{"seconds":30.5,"threads_per_device":4,"stuck_writers":0,"ok":true,
      "devices":[
       {"name":"iscsi","device":"/dev/mapper/3600","writes_acked":900,"write_errors":0,"iops":30.0,
        "max_gap_ms":21000.0,"max_gap_at_s":10.0,"first_error":null,
        "gaps":[{"at_s":10.0,"ms":21000.0},{"at_s":2.0,"ms":300.0}],
        "verify":{"checked":4096,"intact":900,"bad":0,"read_errors":0,"first_bad":null,"ok":true},"ok":true},
       {"name":"nvme","device":"/dev/nvme0n1","writes_acked":800,"write_errors":2,"iops":25.0,
        "max_gap_ms":400.0,"max_gap_at_s":1.0,"first_error":"EIO",
        "gaps":[{"at_s":1.0,"ms":400.0},{"at_s":11.0,"ms":250.0}],
        "verify":{"checked":4096,"intact":800,"bad":0,"read_errors":0,"first_bad":null,"ok":true},"ok":false}]}"#;

    #[test]
    fn figures_per_protocol_with_the_pause_of_the_fault_window() {
        let r: VerifyReport = serde_json::from_str(REPORT).unwrap();
        // Writes started at host 1000; the fault from 1009.5 to 1012.
        let f = figures(&r, 1000.0, Some((1009.5, 1012.0)));
        assert!(!f.ok(), "nvme had write errors");
        let i = &f.protocols[0];
        assert_eq!(i.protocol, "iscsi");
        assert_eq!(i.fault_pause_ms, Some(21000.0));
        assert_eq!(i.max_pause_at, 1010.0);
        assert!(i.ok && i.verify_ok);
        let n = &f.protocols[1];
        // Its longest pause (at 1 s) lies outside the window; 250 ms inside.
        assert_eq!(n.fault_pause_ms, Some(250.0));
        assert_eq!(n.write_errors, 2);
        assert!(!n.ok);
        let none = figures(&r, 1000.0, None);
        assert!(none.protocols.iter().all(|p| p.fault_pause_ms.is_none()));
    }

    #[test]
    fn no_devices_is_not_ok() {
        let f = WriterFigures {
            started_at: 0.0,
            seconds: 1.0,
            stuck_writers: 0,
            protocols: vec![],
        };
        assert!(!f.ok());
    }

    #[test]
    fn the_command_names_both_devices_and_the_stop_file() {
        let facts = HostFacts {
            iscsi_devs: vec!["/dev/mapper/x".into()],
            nvme_devs: vec!["/dev/nvme0n1".into()],
            nvme_paths: vec![],
        };
        let a = argv(&facts, 60).join(" ");
        assert!(a.contains("--device iscsi=/dev/mapper/x --device nvme=/dev/nvme0n1"));
        assert!(a.contains(&format!("--stop-file {STOP_FILE}")));
        assert!(a.starts_with("systemd-run"));
    }
}
