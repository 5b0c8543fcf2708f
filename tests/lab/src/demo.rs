//! The demo configuration and what the host sees of it.
//!
//! TEMPORARY: the controller side is the configfs fixture
//! `fixture/demo-target.sh`, run in the guests. It is replaced by
//! `duplexctl` calls once the pool-manager and targets services exist.

use crate::lab::{self, Lab, LabError};
use serde::Serialize;
use serde_json::Value;
use std::thread;
use std::time::{Duration, Instant};

/// Where the payload's fixtures are inside a guest.
const FIXTURE: &str = "/run/duplex-lab/payload/fixture";

/// One NVMe path as H sees it.
#[derive(Debug, Clone, Serialize)]
pub struct NvmePath {
    /// Controller device (nvme0).
    pub ctrl: String,
    /// Controller state (live, connecting...).
    pub state: String,
    /// Target address.
    pub addr: String,
    /// ANA state of the path.
    pub ana: String,
}

/// What H sees of the demo volumes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HostFacts {
    /// dm-multipath maps (/dev/mapper/...).
    pub iscsi_devs: Vec<String>,
    /// NVMe multipath namespaces of the demo subsystem (/dev/nvmeXnY).
    pub nvme_devs: Vec<String>,
    /// Paths of the demo subsystem.
    pub nvme_paths: Vec<NvmePath>,
}

/// One dm-multipath path group.
#[derive(Debug, Clone, Serialize)]
pub struct MpathGroup {
    /// Device-mapper state: active, enabled, disabled.
    pub dm_st: String,
    /// Group priority (ALUA: 50 optimized, 1 standby).
    pub pri: i64,
    /// Path devices with the address of the portal they go through.
    pub paths: Vec<String>,
}

/// One dm-multipath map.
#[derive(Debug, Clone, Serialize)]
pub struct MpathMap {
    /// Map name (the WWID).
    pub name: String,
    /// Its path groups.
    pub groups: Vec<MpathGroup>,
}

fn sh(script: &str, args: &[&str]) -> Vec<String> {
    let mut v = vec!["sh".to_string(), format!("{FIXTURE}/{script}")];
    v.extend(args.iter().map(|s| (*s).to_string()));
    v
}

fn run_sh(
    lab: &Lab,
    vm: &str,
    script: &str,
    args: &[&str],
    timeout: Duration,
) -> Result<String, LabError> {
    let argv = sh(script, args);
    let refs: Vec<&str> = argv.iter().map(String::as_str).collect();
    lab::exec_ok(lab, vm, &refs, timeout)
}

/// Reads H's view of the demo volumes.
pub fn host_facts(lab: &Lab) -> Result<HostFacts, LabError> {
    host_facts_for(lab, "nqn.2026-11.io.duplex.lab:vol1")
}

/// Reads H's view: the dm-multipath maps and the NVMe subsystem `nqn`.
pub fn host_facts_for(lab: &Lab, nqn: &str) -> Result<HostFacts, LabError> {
    host_facts_within(lab, nqn, Duration::from_secs(30))
}

/// [`host_facts_for`] with room for many LUs (the script reads sysfs for
/// every path; with 50 LUs under TCG that takes longer than 30 s).
pub fn host_facts_within(lab: &Lab, nqn: &str, within: Duration) -> Result<HostFacts, LabError> {
    let out = run_sh(lab, "H", "host-facts.sh", &[nqn], within)?;
    let mut f = HostFacts::default();
    for line in out.lines() {
        match line.split_once('=') {
            Some(("iscsi_dev", v)) => f.iscsi_devs.push(v.to_string()),
            Some(("nvme_dev", v)) => f.nvme_devs.push(v.to_string()),
            Some(("nvme_path", v)) => {
                let p: Vec<&str> = v.split_whitespace().collect();
                if let [ctrl, state, addr, ana] = p.as_slice() {
                    f.nvme_paths.push(NvmePath {
                        ctrl: (*ctrl).to_string(),
                        state: (*state).to_string(),
                        addr: (*addr).to_string(),
                        ana: (*ana).to_string(),
                    });
                }
            }
            _ => {}
        }
    }
    Ok(f)
}

/// Parses `multipathd show maps json`.
pub fn parse_maps(json: &str) -> Result<Vec<MpathMap>, serde_json::Error> {
    let v: Value = serde_json::from_str(json)?;
    let s = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let maps = v
        .get("maps")
        .and_then(Value::as_array)
        .map(|maps| {
            maps.iter()
                .map(|m| MpathMap {
                    name: s(m, "name"),
                    groups: m
                        .get("path_groups")
                        .and_then(Value::as_array)
                        .map(|gs| {
                            gs.iter()
                                .map(|g| MpathGroup {
                                    dm_st: s(g, "dm_st"),
                                    pri: g.get("pri").and_then(Value::as_i64).unwrap_or(-1),
                                    paths: g
                                        .get("paths")
                                        .and_then(Value::as_array)
                                        .map(|ps| {
                                            ps.iter()
                                                .map(|p| {
                                                    format!("{} {}", s(p, "dev"), s(p, "chk_st"))
                                                })
                                                .collect()
                                        })
                                        .unwrap_or_default(),
                                })
                                .collect()
                        })
                        .unwrap_or_default(),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(maps)
}

/// H's dm-multipath maps.
pub fn mpath_maps(lab: &Lab) -> Result<Vec<MpathMap>, LabError> {
    let out = lab::exec_ok(
        lab,
        "H",
        &["multipathd", "show", "maps", "json"],
        Duration::from_secs(30),
    )?;
    parse_maps(&out).map_err(|e| LabError::State(format!("multipathd json: {e}")))
}

/// Runs the fixture on both controllers (in parallel), then logs H in.
pub fn setup(lab: &Lab) -> Result<HostFacts, LabError> {
    let hs: Vec<_> = ["A", "B"]
        .iter()
        .map(|vm| {
            let lab = lab.clone();
            thread::spawn(move || {
                run_sh(
                    &lab,
                    vm,
                    "demo-target.sh",
                    &["setup"],
                    Duration::from_secs(60),
                )
            })
        })
        .collect();
    for h in hs {
        let out = h
            .join()
            .map_err(|_| LabError::State("fixture thread panicked".into()))??;
        print!("{out}");
    }
    let out = run_sh(
        lab,
        "H",
        "host-attach.sh",
        &[
            "iqn.2026-11.io.duplex.lab:vol0",
            "nqn.2026-11.io.duplex.lab:vol1",
            "10.50.0.11",
            "10.50.0.12",
        ],
        Duration::from_secs(240),
    )?;
    print!("{out}");
    host_facts(lab)
}

/// A planned, make-before-break move of both volumes from `from` to `to`:
/// `to` becomes Active/Optimized first, then `from` goes Standby. Returns
/// how long each step took.
pub fn flip(lab: &Lab, from: &str, to: &str) -> Result<(f64, f64), LabError> {
    let t = Instant::now();
    run_sh(
        lab,
        to,
        "demo-target.sh",
        &["state", "active"],
        Duration::from_secs(30),
    )?;
    let first = t.elapsed().as_secs_f64();
    run_sh(
        lab,
        from,
        "demo-target.sh",
        &["state", "standby"],
        Duration::from_secs(30),
    )?;
    Ok((first, t.elapsed().as_secs_f64()))
}

/// Port-group states on both controllers, one line each protocol.
pub fn states(lab: &Lab) -> String {
    ["A", "B"]
        .iter()
        .map(|vm| {
            run_sh(
                lab,
                vm,
                "demo-target.sh",
                &["show"],
                Duration::from_secs(20),
            )
            .unwrap_or_else(|e| format!("{vm}: {e}\n"))
        })
        .collect()
}

/// Runs `duplex-verify` on H against the demo devices and returns its JSON.
pub fn verify(lab: &Lab, facts: &HostFacts, seconds: u32) -> Result<Value, LabError> {
    verify_until(lab, facts, seconds, None)
}

/// Like [`verify`], ending early once `stop_file` exists on H.
pub fn verify_until(
    lab: &Lab,
    facts: &HostFacts,
    seconds: u32,
    stop_file: Option<&str>,
) -> Result<Value, LabError> {
    let mut argv = vec![
        "/usr/local/bin/duplex-verify".to_string(),
        "--seconds".into(),
        seconds.to_string(),
        "--threads".into(),
        "4".into(),
        "--blocks".into(),
        "4096".into(),
    ];
    if let Some(f) = stop_file {
        argv.push("--stop-file".into());
        argv.push(f.into());
    }
    for d in &facts.iscsi_devs {
        argv.push("--device".into());
        argv.push(format!("iscsi={d}"));
    }
    for d in &facts.nvme_devs {
        argv.push("--device".into());
        argv.push(format!("nvme={d}"));
    }
    if stop_file.is_some() {
        return verify_detached(lab, argv, seconds);
    }
    let r = lab::exec(
        lab,
        "H",
        &argv,
        Duration::from_secs(u64::from(seconds) + 120),
    )?;
    serde_json::from_str(&r.stdout).map_err(|e| {
        LabError::State(format!(
            "duplex-verify output ({e}): {} {}",
            r.stdout, r.stderr
        ))
    })
}

/// Runs the verifier as a transient unit on H and polls for its end: the
/// agent's serial channel takes one client at a time, so a command held
/// open for the whole run would keep the caller from touching the stop
/// file.
fn verify_detached(lab: &Lab, argv: Vec<String>, seconds: u32) -> Result<Value, LabError> {
    const OUT: &str = "/run/duplex-lab/verify.json";
    let unit = format!("duplex-verify-{}", std::process::id());
    let mut run = vec![
        "systemd-run".to_string(),
        "--quiet".into(),
        "--collect".into(),
        format!("--unit={unit}"),
        "-p".into(),
        format!("StandardOutput=truncate:{OUT}"),
    ];
    run.extend(argv);
    let r = lab::exec(lab, "H", &run, Duration::from_secs(60))?;
    if r.code != Some(0) {
        return Err(LabError::State(format!(
            "systemd-run duplex-verify: {} {}",
            r.stdout, r.stderr
        )));
    }
    let t = std::time::Instant::now();
    let limit = Duration::from_secs(u64::from(seconds) + 180);
    loop {
        std::thread::sleep(Duration::from_secs(2));
        // `is-active` exits non-zero once the unit is gone (collected).
        let r = lab::exec(
            lab,
            "H",
            &crate::cmd::argv(&["systemctl", "is-active", "--quiet", &unit]),
            Duration::from_secs(30),
        )?;
        if r.code != Some(0) {
            break;
        }
        if t.elapsed() > limit {
            return Err(LabError::State(format!(
                "{unit} still running after {limit:?}"
            )));
        }
    }
    let out = lab::exec_ok(lab, "H", &["cat", OUT], Duration::from_secs(30))?;
    serde_json::from_str(&out)
        .map_err(|e| LabError::State(format!("duplex-verify output ({e}): {out}")))
}

/// Text for humans: multipath, NVMe subsystems, port-group states.
pub fn report(lab: &Lab) -> String {
    let mut s = host_report(lab);
    s.push_str("--- port group states (ALUA tg_pt_gp / nvmet ANA group)\n");
    s.push_str(&states(lab));
    s
}

/// H's multipath and NVMe subsystem view, for humans.
pub fn host_report(lab: &Lab) -> String {
    let mut s = String::new();
    for (title, argv) in [
        ("multipath -ll", vec!["multipath", "-ll"]),
        ("nvme list-subsys", vec!["nvme", "list-subsys"]),
    ] {
        s.push_str(&format!("--- H: {title}\n"));
        match lab::exec(lab, "H", &crate::cmd::argv(&argv), Duration::from_secs(30)) {
            Ok(r) => {
                s.push_str(&r.stdout);
                s.push_str(&r.stderr);
            }
            Err(e) => s.push_str(&format!("{e}\n")),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_multipathd_maps() {
        let j = r#"{"major_version":0,"minor_version":1,"maps":[{"name":"36001405d0c1e4a5b9f3e2d1c0b0a0901",
          "path_groups":[{"selector":"service-time 0","pri":50,"dm_st":"active","group":1,
          "paths":[{"dev":"sda","dm_st":"active","chk_st":"ready"}]},
          {"selector":"service-time 0","pri":1,"dm_st":"enabled","group":2,
          "paths":[{"dev":"sdb","dm_st":"active","chk_st":"ghost"}]}]}]}"#;
        let m = parse_maps(j).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].groups.len(), 2);
        assert_eq!(m[0].groups[0].pri, 50);
        assert_eq!(m[0].groups[1].paths, vec!["sdb ghost".to_string()]);
        assert!(parse_maps(r#"{"maps":[]}"#).unwrap().is_empty());
    }
}
