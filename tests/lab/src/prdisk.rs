//! Optional SCSI-3 persistent-reservation capable shelf disks
//! (`DUPLEX_LAB_PR_DISKS=N`): virtio-blk has no reservations and QEMU's
//! emulated scsi-hd rejects them, so these disks are LUNs of a userspace
//! iSCSI target (Debian `tgt`) running inside the lab namespace, attached
//! to both controllers through QEMU's own iSCSI client as `scsi-block`
//! (LAB.md: register, reserve and PREEMPT work; PREEMPT AND ABORT does not).

use crate::cmd;
use crate::lab::LabError;
use std::fs;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

/// The lab's tgt target holding the PR disks.
pub const IQN: &str = "iqn.2026-11.lab.duplex:prshelf";
/// Where the controllers reach tgtd (the namespace's br-fe address).
pub const PORTAL: &str = "10.50.0.1";
/// Size of each PR disk (sparse): a shelf disk's, so the demo pool fits.
const BYTES: u64 = 2 << 30;

/// The pool-manager name (its SCSI serial) of PR disk `i`.
pub fn name(i: usize) -> String {
    format!("prshelf{i}")
}

/// The stable path of PR disk `i` in the controllers (udev's name from the
/// vendor, product and serial tgt reports).
pub fn by_id(i: usize) -> String {
    format!("/dev/disk/by-id/scsi-SDUPLEXLB_PRSHELF{i}_prshelf{i}")
}

/// How many PR disks the environment asks for (0 to 8).
pub fn count() -> usize {
    std::env::var("DUPLEX_LAB_PR_DISKS")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(0)
        .min(8)
}

/// tgtd's management channel number, per namespace so labs do not collide
/// (its socket lives in the shared /var/run/tgtd).
pub fn control_port(ns: &str) -> String {
    let h = crate::verify::checksum(ns.as_bytes());
    (1000 + h % 8000).to_string()
}

fn tgtadm_argv(ns: &str, args: &[&str]) -> Vec<String> {
    let port = control_port(ns);
    let mut v = vec![
        "ip", "netns", "exec", ns, "tgtadm", "-C", &port, "--lld", "iscsi",
    ];
    v.extend_from_slice(args);
    cmd::argv(&v)
}

fn tgtadm(ns: &str, args: &[&str]) -> Result<cmd::Output, LabError> {
    Ok(cmd::run(&tgtadm_argv(ns, args), Duration::from_secs(20))?)
}

/// Starts tgtd in the namespace with `n` LUNs backed by files in `run`;
/// returns its pid.
pub fn start(run: &Path, ns: &str, n: usize) -> Result<u32, LabError> {
    let pidfile = run.join("tgtd.pid");
    let _ = fs::remove_file(&pidfile);
    let port = control_port(ns);
    let pf = pidfile.display().to_string();
    cmd::run(
        &cmd::argv(&["ip", "netns", "exec", ns, "tgtd", "-C", &port, "-p", &pf]),
        Duration::from_secs(20),
    )?;
    let deadline = Instant::now() + Duration::from_secs(15);
    let pid = loop {
        if let Some(pid) = fs::read_to_string(&pidfile)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
        {
            if tgtadm(ns, &["--op", "show", "--mode", "target"]).is_ok() {
                break pid;
            }
        }
        if Instant::now() >= deadline {
            return Err(LabError::State("tgtd did not come up".into()));
        }
        thread::sleep(Duration::from_millis(200));
    };
    tgtadm(
        ns,
        &["--op", "new", "--mode", "target", "--tid", "1", "-T", IQN],
    )?;
    for i in 0..n {
        let img = run.join(format!("pr{i}.img"));
        let f = fs::File::create(&img).map_err(|source| LabError::Io {
            what: "create",
            path: img.display().to_string(),
            source,
        })?;
        f.set_len(BYTES).map_err(|source| LabError::Io {
            what: "size",
            path: img.display().to_string(),
            source,
        })?;
        add_lun(run, ns, i)?;
    }
    tgtadm(
        ns,
        &[
            "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
        ],
    )?;
    Ok(pid)
}

/// Adds LUN `i + 1` over `run/pr<i>.img` with its identity.
fn add_lun(run: &Path, ns: &str, i: usize) -> Result<(), LabError> {
    let img = run.join(format!("pr{i}.img"));
    {
        let lun = (i + 1).to_string();
        let b = img.display().to_string();
        tgtadm(
            ns,
            &[
                "--op",
                "new",
                "--mode",
                "logicalunit",
                "--tid",
                "1",
                "--lun",
                &lun,
                "-b",
                &b,
            ],
        )?;
        let params = format!(
            "scsi_sn={},vendor_id=DUPLEXLB,product_id=PRSHELF{i}",
            name(i)
        );
        tgtadm(
            ns,
            &[
                "--op",
                "update",
                "--mode",
                "logicalunit",
                "--tid",
                "1",
                "--lun",
                &lun,
                "--params",
                &params,
            ],
        )?;
    }
    Ok(())
}

/// Drops every registration and reservation of the `n` PR disks: tgtd
/// keeps them in memory per logical unit, outside any snapshot, so a
/// restore deletes each LUN and adds it again over the same file (the
/// controllers' QEMUs are gone by then; their sessions may take a moment
/// to close, hence the retries).
pub fn clear_registrations(run: &Path, ns: &str, n: usize) -> Result<(), LabError> {
    for i in 0..n {
        let lun = (i + 1).to_string();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = cmd::run_any(
                &tgtadm_argv(
                    ns,
                    &[
                        "--op",
                        "delete",
                        "--mode",
                        "logicalunit",
                        "--tid",
                        "1",
                        "--lun",
                        &lun,
                    ],
                ),
                Duration::from_secs(20),
            )?;
            if r.success() {
                break;
            }
            if Instant::now() >= deadline {
                return Err(LabError::State(format!(
                    "tgtd kept LUN {lun}: {}",
                    r.stderr.trim()
                )));
            }
            thread::sleep(Duration::from_millis(500));
        }
        add_lun(run, ns, i)?;
    }
    Ok(())
}

/// QEMU arguments attaching the PR disks to controller `vm`, each with its
/// own initiator name so the two controllers are distinct I_T nexuses.
pub fn qemu_args(vm: &str, n: usize) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    let mut a = vec![
        "-iscsi".to_string(),
        format!(
            "initiator-name=iqn.2026-11.lab.duplex:ctrl-{}",
            vm.to_ascii_lowercase()
        ),
        "-device".to_string(),
        "virtio-scsi-pci,id=prscsi".to_string(),
    ];
    for i in 0..n {
        a.push("-drive".into());
        a.push(format!(
            "file=iscsi://{PORTAL}/{IQN}/{},if=none,id=pr{i},format=raw,cache=none",
            i + 1
        ));
        a.push("-device".into());
        a.push(format!("scsi-block,drive=pr{i},bus=prscsi.0"));
    }
    a
}

/// True when `pid` is a tgtd (guards against pid reuse).
pub fn pid_is_tgtd(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("tgtd"))
        .unwrap_or(false)
}

/// Kills tgtd (SIGKILL: it ignores SIGTERM while targets exist).
pub fn stop(pid: u32) {
    if pid_is_tgtd(pid) {
        let _ = cmd::run_any(
            &cmd::argv(&["kill", "-KILL", &pid.to_string()]),
            Duration::from_secs(5),
        );
    }
}
