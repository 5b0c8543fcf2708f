//! Fault primitives beyond power and links: shared disks that vanish or
//! fail, hung daemons, a hung kernel, a power cut of both controllers.
//!
//! Disks, two kinds (`disk pull A shelf0 --kind vanish|fail`):
//! - `vanish`: the controller's virtio-blk device is unplugged (QMP
//!   `device_del`, the guest sees a hot-unplug and the block device goes
//!   away); `push` plugs a new one on the same drive (`device_add`).
//! - `fail`: the device stays, but the drive under it is swapped for a
//!   `blkdebug` node over `null-co` that fails every read and write with
//!   EIO (QMP `blockdev-add` + `blockdev-reopen` of the disk's raw node);
//!   `push` swaps the real file back. Flushes still succeed.
//!
//! Both act on one controller only: the other keeps its own device and
//! drive on the same backing file.

use crate::lab::{self, Lab, LabError, HEARTBEAT_DISKS, SHELF};
use crate::qmp;
use serde_json::{json, Value};
use std::thread;
use std::time::{Duration, Instant};
use tracing::info;

/// The QMP node name of a shared disk's raw format node.
pub fn format_node(disk: &str) -> String {
    format!("n-{disk}")
}
/// The QMP node name of a shared disk's file node.
pub fn file_node(disk: &str) -> String {
    format!("f-{disk}")
}
/// The qdev id of a shared disk's virtio-blk device.
pub fn device_id(disk: &str) -> String {
    format!("dev-{disk}")
}
fn fail_node(disk: &str) -> String {
    format!("x-{disk}")
}

/// How a pulled disk fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFault {
    /// The device disappears from the controller (hot-unplug).
    Vanish,
    /// The device stays; every read and write fails with EIO.
    Fail,
}

impl std::str::FromStr for DiskFault {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, LabError> {
        match s {
            "vanish" => Ok(Self::Vanish),
            "fail" => Ok(Self::Fail),
            other => Err(LabError::State(format!(
                "disk fault kind must be vanish or fail, not {other}"
            ))),
        }
    }
}

fn shared_disk(disk: &str) -> Result<&'static str, LabError> {
    SHELF
        .iter()
        .chain(HEARTBEAT_DISKS)
        .find(|d| **d == disk)
        .copied()
        .ok_or_else(|| LabError::State(format!("no shared disk {disk} (shelfN or hbN)")))
}

fn controller(vm: &str) -> Result<&'static str, LabError> {
    let v = lab::vm_spec(vm)?;
    if v.controller {
        Ok(v.name)
    } else {
        Err(LabError::State(format!("{} has no shared disks", v.name)))
    }
}

fn device_present(lab: &Lab, vm: &str, disk: &str) -> Result<bool, LabError> {
    let r = qmp::one(
        &lab.qmp_sock(vm),
        "qom-list",
        Some(json!({ "path": format!("/machine/peripheral/{}", device_id(disk)) })),
    );
    match r {
        Ok(_) => Ok(true),
        Err(qmp::QmpError::Command { .. }) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Named block nodes of a VM with their `file` child, by node name.
fn nodes(lab: &Lab, vm: &str) -> Result<Vec<Value>, LabError> {
    let v = qmp::one(
        &lab.qmp_sock(vm),
        "query-named-block-nodes",
        Some(json!({ "flat": true })),
    )?;
    Ok(v.as_array().cloned().unwrap_or_default())
}

fn node_exists(nodes: &[Value], name: &str) -> bool {
    nodes
        .iter()
        .any(|n| n.get("node-name").and_then(Value::as_str) == Some(name))
}

/// The raw node's options for `blockdev-reopen` with `file` as its child
/// (every option not given would fall back to its default).
fn raw_reopen(disk: &str, file: &str) -> Value {
    json!({ "options": [{
        "driver": "raw",
        "node-name": format_node(disk),
        "file": file,
        "cache": { "direct": true, "no-flush": false },
    }]})
}

/// The failing drive: blkdebug over a null device of the same size,
/// every read and write answered with EIO.
fn fail_node_args(disk: &str, size: u64) -> Value {
    let rule = |event: &str, iotype: &str| json!({ "event": event, "iotype": iotype, "errno": 5 });
    json!({
        "driver": "blkdebug",
        "node-name": fail_node(disk),
        "image": { "driver": "null-co", "node-name": format!("z-{disk}"), "size": size },
        "inject-error": [
            rule("read_aio", "read"),
            rule("write_aio", "write"),
            rule("write_aio", "write-zeroes"),
            rule("write_aio", "discard"),
        ],
    })
}

/// The disk's file node as the lab's -drive makes it (shared, no locking,
/// no host cache).
fn file_node_args(lab: &Lab, disk: &str) -> Value {
    json!({
        "driver": "file",
        "node-name": file_node(disk),
        "filename": lab.disk_image(disk).display().to_string(),
        "locking": "off",
        "aio": "threads",
        "cache": { "direct": true, "no-flush": false },
    })
}

fn disk_size(lab: &Lab, disk: &str) -> Result<u64, LabError> {
    let p = lab.disk_image(disk);
    std::fs::metadata(&p)
        .map(|m| m.len())
        .map_err(|source| LabError::Io {
            what: "stat",
            path: p.display().to_string(),
            source,
        })
}

/// Pulls a shared disk out of one controller (see the module doc).
pub fn pull(lab: &Lab, vm: &str, disk: &str, kind: DiskFault) -> Result<(), LabError> {
    let vm = controller(vm)?;
    let disk = shared_disk(disk)?;
    let q = lab.qmp_sock(vm);
    match kind {
        DiskFault::Vanish => {
            if !device_present(lab, vm, disk)? {
                return Ok(());
            }
            qmp::one(&q, "device_del", Some(json!({ "id": device_id(disk) })))?;
            // The guest acknowledges the ACPI unplug; only then is it gone.
            let deadline = Instant::now() + Duration::from_secs(60);
            while device_present(lab, vm, disk)? {
                if Instant::now() >= deadline {
                    return Err(LabError::State(format!(
                        "{vm} did not release {disk} within 60 s"
                    )));
                }
                thread::sleep(Duration::from_millis(100));
            }
        }
        DiskFault::Fail => {
            let ns = nodes(lab, vm)?;
            if !node_exists(&ns, &fail_node(disk)) {
                let size = disk_size(lab, disk)?;
                qmp::one(&q, "blockdev-add", Some(fail_node_args(disk, size)))?;
            }
            qmp::one(
                &q,
                "blockdev-reopen",
                Some(raw_reopen(disk, &fail_node(disk))),
            )?;
        }
    }
    info!("{vm}: {disk} pulled ({kind:?})");
    Ok(())
}

/// Puts a pulled disk back, whichever way it was pulled.
pub fn push(lab: &Lab, vm: &str, disk: &str) -> Result<(), LabError> {
    let vm = controller(vm)?;
    let disk = shared_disk(disk)?;
    let q = lab.qmp_sock(vm);
    let ns = nodes(lab, vm)?;
    if node_exists(&ns, &fail_node(disk)) {
        // The file node made by -drive went away with its last parent.
        if !node_exists(&ns, &file_node(disk)) {
            qmp::one(&q, "blockdev-add", Some(file_node_args(lab, disk)))?;
        }
        qmp::one(
            &q,
            "blockdev-reopen",
            Some(raw_reopen(disk, &file_node(disk))),
        )?;
        qmp::one(
            &q,
            "blockdev-del",
            Some(json!({ "node-name": fail_node(disk) })),
        )?;
    }
    if !device_present(lab, vm, disk)? {
        // Unplugging a -drive device may delete its drive too: add the
        // same nodes again when they are gone.
        let ns = nodes(lab, vm)?;
        if !node_exists(&ns, &format_node(disk)) {
            let file = if node_exists(&ns, &file_node(disk)) {
                Value::String(file_node(disk))
            } else {
                file_node_args(lab, disk)
            };
            qmp::one(
                &q,
                "blockdev-add",
                Some(json!({
                    "driver": "raw",
                    "node-name": format_node(disk),
                    "cache": { "direct": true, "no-flush": false },
                    "file": file,
                })),
            )?;
        }
        qmp::one(
            &q,
            "device_add",
            Some(json!({
                "driver": "virtio-blk-pci",
                "id": device_id(disk),
                "drive": format_node(disk),
                "share-rw": true,
                "serial": disk,
                "werror": "report",
                "rerror": "report",
            })),
        )?;
    }
    info!("{vm}: {disk} pushed back");
    Ok(())
}

fn unit(service: &str) -> String {
    if service.contains('.') {
        service.to_string()
    } else {
        format!("{service}.service")
    }
}

/// Stops (`SIGSTOP`) every process of a systemd unit in a VM: a hung
/// daemon whose sockets stay open.
pub fn hang(lab: &Lab, vm: &str, service: &str) -> Result<(), LabError> {
    signal_unit(lab, vm, service, "SIGSTOP")
}

/// Makes `vm`'s targets daemon crash-loop until the next boot: its binary
/// is hidden behind `/bin/false` (a bind mount, gone at reboot) and the
/// running daemon killed, so every restart systemd makes exits at once.
pub fn crash_loop_targets(lab: &Lab, vm: &str) -> Result<(), LabError> {
    lab::exec_ok(
        lab,
        vm,
        &["mount", "--bind", "/bin/false", "/usr/bin/duplex-targets"],
        Duration::from_secs(30),
    )?;
    signal_unit(lab, vm, "duplex-targets", "SIGKILL")
}

/// Resumes (`SIGCONT`) a unit stopped by [`hang`].
pub fn resume(lab: &Lab, vm: &str, service: &str) -> Result<(), LabError> {
    signal_unit(lab, vm, service, "SIGCONT")
}

fn signal_unit(lab: &Lab, vm: &str, service: &str, sig: &str) -> Result<(), LabError> {
    let u = unit(service);
    let signal = format!("--signal={sig}");
    lab::exec_ok(
        lab,
        vm,
        &["systemctl", "kill", &signal, &u],
        Duration::from_secs(30),
    )?;
    Ok(())
}

/// Panics `vm`'s kernel with `kernel.panic=0`, so it stays down with its
/// emulated hardware running: an armed watchdog then fires. Returns the
/// host time of the trigger.
pub fn panic(lab: &Lab, vm: &str) -> Result<f64, LabError> {
    let v = lab::vm_spec(vm)?;
    // The lab boots guests with panic=-1 (reboot at once): override it.
    lab::exec_ok(
        lab,
        v.name,
        &["sysctl", "-w", "kernel.panic=0", "kernel.sysrq=1"],
        Duration::from_secs(30),
    )?;
    let at = crate::events::now();
    // The agent dies with the kernel: no answer is the expected outcome.
    let trigger = crate::cmd::argv(&["sh", "/run/duplex-lab/payload/sysrq.sh", "c"]);
    match lab::exec(lab, v.name, &trigger, Duration::from_secs(3)) {
        Ok(r) if r.code == Some(0) || r.code.is_none() => {}
        Ok(r) => {
            return Err(LabError::Boot {
                vm: v.name.to_string(),
                detail: format!("sysrq trigger exited {:?}: {}", r.code, r.stderr),
            })
        }
        Err(_) => {}
    }
    Ok(at)
}

/// Kills both controllers' QEMUs at the same moment (a power cut of the
/// enclosure); returns once both processes are gone.
pub fn power_cut(lab: &Lab) -> Result<(), LabError> {
    let handles: Vec<_> = lab::VMS
        .iter()
        .filter(|v| v.controller)
        .map(|v| {
            let lab = lab.clone();
            let name = v.name;
            thread::spawn(move || lab::power(&lab, name, lab::Power::Kill))
        })
        .collect();
    for h in handles {
        h.join()
            .map_err(|_| LabError::State("power-cut thread panicked".into()))??;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_kinds() {
        assert_eq!(device_id("shelf0"), "dev-shelf0");
        assert_eq!(format_node("hb1"), "n-hb1");
        assert!(shared_disk("hb2").is_ok());
        assert!(shared_disk("shelf7").is_ok());
        assert!(shared_disk("root").is_err());
        assert!(controller("H").is_err());
        assert_eq!("fail".parse::<DiskFault>().ok(), Some(DiskFault::Fail));
        assert!("melt".parse::<DiskFault>().is_err());
        assert_eq!(unit("duplex-router"), "duplex-router.service");
        assert_eq!(unit("multipathd.socket"), "multipathd.socket");
    }

    #[test]
    fn the_failing_drive_fails_reads_and_writes_only() {
        let a = fail_node_args("hb0", 1 << 20);
        assert_eq!(a["image"]["size"], 1 << 20);
        let types: Vec<&str> = a["inject-error"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["iotype"].as_str().unwrap())
            .collect();
        assert_eq!(types, ["read", "write", "write-zeroes", "discard"]);
        let r = raw_reopen("hb0", "x-hb0");
        assert_eq!(r["options"][0]["node-name"], "n-hb0");
        assert_eq!(r["options"][0]["file"], "x-hb0");
    }
}
