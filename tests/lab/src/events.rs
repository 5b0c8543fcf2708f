//! The QMP event recorder: one detached `duplex-lab record-events` process
//! per lab holds each VM's second QMP socket and appends the events that
//! scenarios assert (`WATCHDOG`, `RESET`, `SHUTDOWN`, `STOP`, `RESUME` and
//! a few more) to `run/<VM>.events.jsonl`, stamped with the host's clock.
//! A VM whose QEMU exits (killed, powered off) shows as a `QMP_CLOSED`
//! record of the lab's own, and `QMP_OPEN` when its new QEMU answers.

use crate::lab::{Lab, LabError};
use crate::qmp::Qmp;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// QEMU events worth keeping (the rest, like RTC_CHANGE, is noise here).
pub const RECORDED: &[&str] = &[
    "WATCHDOG",
    "RESET",
    "SHUTDOWN",
    "POWERDOWN",
    "STOP",
    "RESUME",
    "GUEST_PANICKED",
    "DEVICE_DELETED",
    "BLOCK_IO_ERROR",
];

/// One recorded event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Host clock, seconds since the Unix epoch.
    pub host_ts: f64,
    /// QEMU's event name, or `QMP_OPEN` / `QMP_CLOSED` from the recorder.
    pub event: String,
    /// QEMU's event data (`{"action": "reset"}` for WATCHDOG...).
    #[serde(default)]
    pub data: Value,
    /// QEMU's own timestamp, when the event came from QEMU.
    #[serde(default)]
    pub qemu_ts: Option<f64>,
}

/// The host clock in seconds since the Unix epoch.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Turns one QMP message into a record, if it is an event we keep.
pub fn parse(msg: &Value, host_ts: f64) -> Option<Event> {
    let name = msg.get("event")?.as_str()?;
    if !RECORDED.contains(&name) {
        return None;
    }
    let qemu_ts = msg.get("timestamp").and_then(|t| {
        let s = t.get("seconds")?.as_f64()?;
        let us = t.get("microseconds")?.as_f64()?;
        Some(s + us / 1e6)
    });
    Some(Event {
        host_ts,
        event: name.to_string(),
        data: msg.get("data").cloned().unwrap_or(Value::Null),
        qemu_ts,
    })
}

fn append(path: &Path, ev: &Event) {
    let Ok(line) = serde_json::to_string(ev) else {
        return;
    };
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

fn lab_record(name: &str) -> Event {
    Event {
        host_ts: now(),
        event: name.to_string(),
        data: Value::Null,
        qemu_ts: None,
    }
}

/// Records one VM's events forever: connects, reads, reconnects when QEMU
/// goes away (a killed or restarted VM).
fn record_vm(lab: &Lab, vm: &str) {
    let sock = lab.qmp_events_sock(vm);
    let out = lab.events_file(vm);
    loop {
        // The long read timeout only bounds a silent VM's idle wait; a
        // timeout just means "read again".
        match Qmp::connect(&sock, Duration::from_secs(5)) {
            Ok(mut q) => {
                append(&out, &lab_record("QMP_OPEN"));
                loop {
                    match q.next_message() {
                        Ok(Some(msg)) => {
                            if let Some(ev) = parse(&msg, now()) {
                                append(&out, &ev);
                            }
                        }
                        Ok(None) => {}
                        Err(_) => break,
                    }
                }
                append(&out, &lab_record("QMP_CLOSED"));
            }
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// The recorder's main loop (`duplex-lab record-events`): a thread per VM;
/// never returns (`down` kills it).
pub fn run_recorder(lab: &Lab, vms: &[String]) {
    let handles: Vec<_> = vms
        .iter()
        .map(|vm| {
            let lab = lab.clone();
            let vm = vm.clone();
            thread::spawn(move || record_vm(&lab, &vm))
        })
        .collect();
    for h in handles {
        let _ = h.join();
    }
}

/// True when `pid` is this lab's recorder (guards against pid reuse).
fn pid_is_recorder(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("record-events"))
        .unwrap_or(false)
}

/// Starts the recorder as a detached process; returns its pid.
pub fn start_recorder(lab: &Lab, vms: &[&str]) -> Result<u32, LabError> {
    let exe = std::env::current_exe().map_err(|source| LabError::Io {
        what: "locate duplex-lab",
        path: "/proc/self/exe".into(),
        source,
    })?;
    let mut argv = vec![exe.display().to_string(), "record-events".to_string()];
    argv.extend(vms.iter().map(|v| (*v).to_string()));
    let logp = lab.run_file("events.log");
    let log = fs::File::create(&logp).map_err(|source| LabError::Io {
        what: "create",
        path: logp.display().to_string(),
        source,
    })?;
    let log2 = log.try_clone().map_err(|source| LabError::Io {
        what: "dup",
        path: logp.display().to_string(),
        source,
    })?;
    let mut c = crate::cmd::command(&argv)?;
    c.env("DUPLEX_LAB_RUN", &lab.run_dir)
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    let child = c.spawn().map_err(|source| crate::cmd::CmdError::Spawn {
        program: "duplex-lab record-events".into(),
        source,
    })?;
    Ok(child.id())
}

/// Kills the recorder.
pub fn stop_recorder(pid: u32) {
    if pid_is_recorder(pid) {
        let argv = crate::cmd::argv(&["kill", "-KILL", &pid.to_string()]);
        let _ = crate::cmd::run_any(&argv, Duration::from_secs(5));
    }
}

/// Reads a VM's recorded events (empty when none were recorded); lines
/// that do not parse are skipped.
pub fn read(lab: &Lab, vm: &str) -> Result<Vec<Event>, LabError> {
    let v = crate::lab::vm_spec(vm)?;
    let p = lab.events_file(v.name);
    match fs::read_to_string(&p) {
        Ok(s) => Ok(s
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(source) => Err(LabError::Io {
            what: "read",
            path: p.display().to_string(),
            source,
        }),
    }
}

/// Waits until `vm` has recorded `event` at or after `since` (host clock);
/// returns it, or `None` when `within` passed.
pub fn wait_for(
    lab: &Lab,
    vm: &str,
    event: &str,
    since: f64,
    within: Duration,
) -> Result<Option<Event>, LabError> {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(ev) = read(lab, vm)?
            .into_iter()
            .find(|e| e.event == event && e.host_ts >= since)
        {
            return Ok(Some(ev));
        }
        if std::time::Instant::now() >= deadline {
            return Ok(None);
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// One line per event for `duplex-lab events VM`.
pub fn format(events: &[Event]) -> String {
    events
        .iter()
        .map(|e| {
            let data = if e.data.is_null() {
                String::new()
            } else {
                format!(" {}", e.data)
            };
            format!("{:.3} {}{data}\n", e.host_ts, e.event)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_watchdog_and_reset_with_their_data_and_drops_noise() {
        let wd = json!({"event": "WATCHDOG", "data": {"action": "reset"},
            "timestamp": {"seconds": 100, "microseconds": 500_000}});
        let ev = parse(&wd, 7.0).unwrap();
        assert_eq!(ev.event, "WATCHDOG");
        assert_eq!(ev.data["action"], "reset");
        assert_eq!(ev.qemu_ts, Some(100.5));
        assert_eq!(ev.host_ts, 7.0);
        assert!(parse(&json!({"event": "RTC_CHANGE", "data": {}}), 1.0).is_none());
        assert!(parse(&json!({"return": {}}), 1.0).is_none());
        let line = serde_json::to_string(&ev).unwrap();
        let back: Event = serde_json::from_str(&line).unwrap();
        assert_eq!(back, ev);
        assert_eq!(format(&[back]), "7.000 WATCHDOG {\"action\":\"reset\"}\n");
    }
}
