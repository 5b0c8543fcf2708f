//! A BMC per controller, reachable over IPMI-over-LAN on the lab's
//! management network (br-mgmt, 10.53.0.0/24): one `ipmi_sim` (Debian
//! `openipmi`) per controller runs inside the lab namespace on the BMC's
//! address. Its chassis commands call `duplex-lab bmc-control VM ...`, which
//! acts on the VM's QEMU process: power off kills it (and answers only once
//! it has exited), power on starts it again, reset resets it, status tells
//! whether the process is alive.
//!
//! Credentials are made per run (user `fence`, a random password); the
//! controllers get their partner's as `/etc/duplex/partner-bmc.toml`.
//! Cipher suite 3 (RAKP-HMAC-SHA1, HMAC-SHA1-96, AES-CBC-128) is pinned:
//! ipmi_sim 2.0.33 has no SHA-256 suites (17 is refused), and it accepts
//! suite 0 with any password, as many real BMCs do, so clients must never
//! ask for 0.

use crate::cmd;
use crate::lab::{self, Lab, LabError, VMS};
use serde::{Deserialize, Serialize};
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};
use tracing::warn;

/// The cipher suite every lab client uses.
pub const CIPHER_SUITE: u8 = 3;
/// The IPMI user the controllers fence with.
pub const USER: &str = "fence";
/// The management network's bridge in the lab namespace.
pub const BRIDGE: &str = "br-mgmt";

/// The BMC address of a controller (on br-mgmt, served in the namespace).
pub fn address(vm: &str) -> &'static str {
    if vm.eq_ignore_ascii_case("B") {
        "10.53.0.12"
    } else {
        "10.53.0.11"
    }
}

/// Folder of a controller's BMC files in the run folder.
pub fn dir(lab: &Lab, vm: &str) -> PathBuf {
    lab.run_dir.join(format!("bmc-{vm}"))
}

/// How to reach one BMC: the keys of `/etc/duplex/partner-bmc.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    /// IPv4 address of the BMC.
    pub address: String,
    /// IPMI user name.
    pub user: String,
    /// Its password (secret: never logged).
    pub password: String,
    /// The RMCP+ cipher suite to ask for.
    pub cipher_suite: u8,
}

impl Access {
    /// The TOML document a controller gets for its partner's BMC.
    pub fn to_toml(&self) -> String {
        format!(
            "address = \"{}\"\nuser = \"{}\"\npassword = \"{}\"\ncipher_suite = {}\n",
            self.address, self.user, self.password, self.cipher_suite
        )
    }
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LabError + 'a {
    move |source| LabError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

fn write_mode(path: &Path, text: &str, mode: u32) -> Result<(), LabError> {
    fs::write(path, text).map_err(io_err("write", path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(io_err("chmod", path))
}

/// The BMC's access as recorded for this run.
pub fn access(lab: &Lab, vm: &str) -> Result<Access, LabError> {
    let p = dir(lab, vm).join("password");
    let password = fs::read_to_string(&p)
        .map_err(io_err("read", &p))?
        .trim()
        .to_string();
    Ok(Access {
        address: address(vm).to_string(),
        user: USER.to_string(),
        password,
        cipher_suite: CIPHER_SUITE,
    })
}

/// `lan.conf` of one simulated BMC. Only MD5 for IPMI 1.5 logins and an
/// admin user; the chassis control program is `control`.
pub fn lan_conf(vm: &str, password: &str, control: &Path) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# ipmi_sim configuration of controller {vm}'s BMC (made by duplex-lab up)"
    );
    let _ = writeln!(s, "name \"duplex-lab-bmc-{vm}\"");
    let _ = writeln!(s, "set_working_mc 0x20");
    let _ = writeln!(s, "  startlan 1");
    let _ = writeln!(s, "    addr {} 623", address(vm));
    let _ = writeln!(s, "    priv_limit admin");
    for level in ["callback", "user", "operator", "admin"] {
        let _ = writeln!(s, "    allowed_auths_{level} md5");
    }
    let guid = if vm.eq_ignore_ascii_case("B") {
        "d0b0000000000000000000000000000b"
    } else {
        "d0a0000000000000000000000000000a"
    };
    let _ = writeln!(s, "    guid {guid}");
    let _ = writeln!(s, "  endlan");
    let _ = writeln!(s, "  chassis_control \"{} {vm}\"", control.display());
    let _ = writeln!(s, "  user 2 true \"{USER}\" \"{password}\" admin 4 md5");
    s
}

/// The `.emu` command file: one BMC at 0x20 with the chassis device.
pub const EMU: &str = "# The BMC of a lab controller: one management controller at 0x20.\n\
mc_setbmc 0x20\n\
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02\n\
mc_enable 0x20\n";

fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Writes every controller's BMC files (configuration, command file, the
/// chassis control wrapper, the password) with fresh credentials.
pub fn prepare(lab: &Lab) -> Result<(), LabError> {
    let exe = std::env::current_exe()
        .map_err(io_err("locate duplex-lab", Path::new("/proc/self/exe")))?;
    for v in VMS.iter().filter(|v| v.controller) {
        let d = dir(lab, v.name);
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(d.join("state")).map_err(io_err("mkdir", &d))?;
        fs::set_permissions(&d, fs::Permissions::from_mode(0o700)).map_err(io_err("chmod", &d))?;
        // 16 characters: IPMI 2.0 passwords hold at most 20.
        let password = lab::random_hex(8)?;
        write_mode(&d.join("password"), &password, 0o600)?;
        let control = d.join("chassis-control");
        // ipmi_sim runs the program through a shell with its own
        // arguments appended; the wrapper pins the run folder.
        let script = format!(
            "#!/bin/sh\n# ipmi_sim's chassis control for controller {vm}: <vm> get|set|check ...\n\
             DUPLEX_LAB_RUN={run} DUPLEX_LAB_DIR={dir} exec {exe} bmc-control \"$@\"\n",
            vm = v.name,
            run = sh_quote(&lab.run_dir.display().to_string()),
            dir = sh_quote(&lab.lab_dir.display().to_string()),
            exe = sh_quote(&exe.display().to_string()),
        );
        write_mode(&control, &script, 0o700)?;
        write_mode(
            &d.join("lan.conf"),
            &lan_conf(v.name, &password, &control),
            0o600,
        )?;
        write_mode(&d.join("bmc.emu"), EMU, 0o600)?;
    }
    Ok(())
}

/// True when `pid` is an ipmi_sim (guards against pid reuse).
pub fn pid_is_bmc(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("ipmi_sim"))
        .unwrap_or(false)
}

/// Stops one simulator.
pub fn stop(pid: u32) {
    if pid_is_bmc(pid) {
        let argv = cmd::argv(&["kill", "-KILL", &pid.to_string()]);
        if let Err(e) = cmd::run_any(&argv, Duration::from_secs(5)) {
            warn!("kill ipmi_sim {pid}: {e}");
        }
    }
}

/// Starts one `ipmi_sim` per controller inside the namespace; returns
/// their pids by controller. Each answers a local `chassis power status`
/// before this returns.
pub fn start_all(lab: &Lab, ns: &str) -> Result<Vec<(String, u32)>, LabError> {
    let mut pids = Vec::new();
    for v in VMS.iter().filter(|v| v.controller) {
        let d = dir(lab, v.name);
        let logp = d.join("ipmi_sim.log");
        let log = fs::File::create(&logp).map_err(io_err("create", &logp))?;
        let log2 = log.try_clone().map_err(io_err("dup", &logp))?;
        let argv = vec![
            "ip".to_string(),
            "netns".into(),
            "exec".into(),
            ns.to_string(),
            "ipmi_sim".into(),
            "-n".into(),
            "-p".into(),
            "-c".into(),
            d.join("lan.conf").display().to_string(),
            "-f".into(),
            d.join("bmc.emu").display().to_string(),
            "-s".into(),
            d.join("state").display().to_string(),
        ];
        let mut c = cmd::command(&argv)?;
        c.stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log2);
        let child = c.spawn().map_err(|source| cmd::CmdError::Spawn {
            program: "ipmi_sim".into(),
            source,
        })?;
        // `ip netns exec` execs ipmi_sim: the child's pid is the simulator's.
        pids.push((v.name.to_string(), child.id()));
    }
    for v in VMS.iter().filter(|v| v.controller) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match ipmitool(lab, ns, v.name, &["chassis", "power", "status"]) {
                Ok(_) => break,
                Err(e) if Instant::now() >= deadline => {
                    return Err(LabError::State(format!(
                        "BMC of {} does not answer: {e}",
                        v.name
                    )))
                }
                Err(_) => thread::sleep(Duration::from_millis(300)),
            }
        }
    }
    Ok(pids)
}

/// Runs `ipmitool -I lanplus` against `vm`'s BMC from the lab namespace
/// (the password from a file, never on the command line); returns stdout.
pub fn ipmitool(lab: &Lab, ns: &str, vm: &str, args: &[&str]) -> Result<String, LabError> {
    let pass = dir(lab, vm).join("password");
    let suite = CIPHER_SUITE.to_string();
    let pass_s = pass.display().to_string();
    let mut v = vec![
        "ip",
        "netns",
        "exec",
        ns,
        "ipmitool",
        "-I",
        "lanplus",
        "-H",
        address(vm),
        "-U",
        USER,
        "-f",
        &pass_s,
        "-C",
        &suite,
        "-L",
        "ADMINISTRATOR",
        "-N",
        "5",
        "-R",
        "2",
    ];
    v.extend_from_slice(args);
    let o = cmd::run(&cmd::argv(&v), Duration::from_secs(60))?;
    Ok(o.stdout)
}

/// A chassis operation asked of a BMC through `duplex-lab bmc VM OP`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `chassis power off`.
    Off,
    /// `chassis power on`.
    On,
    /// `chassis power reset`.
    Reset,
    /// `chassis power status`.
    Status,
}

impl std::str::FromStr for Op {
    type Err = LabError;
    fn from_str(s: &str) -> Result<Self, LabError> {
        match s {
            "off" => Ok(Self::Off),
            "on" => Ok(Self::On),
            "reset" => Ok(Self::Reset),
            "status" => Ok(Self::Status),
            other => Err(LabError::State(format!(
                "BMC operation must be off, on, reset or status, not {other}"
            ))),
        }
    }
}

/// Runs a chassis command on `vm`'s BMC over IPMI-over-LAN; returns
/// ipmitool's answer.
pub fn chassis(lab: &Lab, vm: &str, op: Op) -> Result<String, LabError> {
    let v = lab::vm_spec(vm)?;
    if !v.controller {
        return Err(LabError::State(format!("{} has no BMC", v.name)));
    }
    let st = lab.state()?;
    let word = match op {
        Op::Off => "off",
        Op::On => "on",
        Op::Reset => "reset",
        Op::Status => "status",
    };
    ipmitool(lab, &st.ns, v.name, &["chassis", "power", word])
}

/// Runs `ipmitool -I lanplus ... chassis power OP` on `target`'s partner
/// with the credentials of the partner's `/etc/duplex/partner-bmc.toml`,
/// as a controller fencing its partner does; returns ipmitool's output.
pub fn from_partner(lab: &Lab, target: &str, op: &str) -> Result<String, LabError> {
    let t = lab::vm_spec(target)?;
    let partner = VMS
        .iter()
        .find(|v| v.controller && v.name != t.name)
        .ok_or_else(|| LabError::State("no partner controller".into()))?;
    let doc = lab::exec_ok(
        lab,
        partner.name,
        &["cat", "/etc/duplex/partner-bmc.toml"],
        Duration::from_secs(30),
    )?;
    let key = |k: &str| -> Result<String, LabError> {
        doc.lines()
            .find_map(|l| {
                let (name, v) = l.split_once('=')?;
                (name.trim() == k).then(|| v.trim().trim_matches('"').to_string())
            })
            .ok_or_else(|| {
                LabError::State(format!("partner-bmc.toml on {} has no {k}", partner.name))
            })
    };
    let (addr, user, pass, suite) = (
        key("address")?,
        key("user")?,
        key("password")?,
        key("cipher_suite")?,
    );
    let argv = cmd::argv(&[
        "ipmitool", "-I", "lanplus", "-H", &addr, "-U", &user, "-P", &pass, "-C", &suite, "-N",
        "10", "-R", "2", "chassis", "power", op,
    ]);
    // The error names the command without its arguments: they hold the
    // password.
    let r = lab::exec(lab, partner.name, &argv, Duration::from_secs(120))?;
    if r.code == Some(0) {
        Ok(r.stdout)
    } else {
        Err(LabError::State(format!(
            "ipmitool chassis power {op} on {} exited {:?}: {}",
            partner.name,
            r.code,
            r.stderr.trim()
        )))
    }
}

/// What `bmc-control` prints and exits with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlReply {
    /// Lines for ipmi_sim (`power:1`) or an error text.
    pub out: String,
    /// Exit code (0 on success).
    pub code: i32,
}

/// ipmi_sim's chassis control: `VM get PARM...`, `VM set PARM VAL...`,
/// `VM check`. Acts on the VM's QEMU process; logs to the BMC folder.
pub fn control(lab: &Lab, args: &[String]) -> ControlReply {
    let fail = |out: String| ControlReply { out, code: 1 };
    let Some((vm, rest)) = args.split_first() else {
        return fail("no VM given".into());
    };
    let Some((op, parms)) = rest.split_first() else {
        return fail("no operation given".into());
    };
    log_control(lab, vm, &format!("{op} {}", parms.join(" ")));
    let r = match op.as_str() {
        "get" => control_get(lab, vm, parms),
        "set" => control_set(lab, vm, parms),
        // Liveness checks of a started VM are not used by this setup.
        "check" => Err("check is not supported".to_string()),
        other => Err(format!("unknown operation {other}")),
    };
    match r {
        Ok(out) => ControlReply { out, code: 0 },
        Err(e) => {
            log_control(lab, vm, &format!("error: {e}"));
            fail(e)
        }
    }
}

fn log_control(lab: &Lab, vm: &str, line: &str) {
    use std::io::Write as _;
    let p = dir(lab, vm).join("control.log");
    if let Ok(mut f) = fs::OpenOptions::new().create(true).append(true).open(p) {
        let _ = writeln!(f, "{:.3} {line}", crate::events::now());
    }
}

fn control_get(lab: &Lab, vm: &str, parms: &[String]) -> Result<String, String> {
    let mut out = String::new();
    for p in parms {
        match p.as_str() {
            "power" => {
                let on = lab::is_running(lab, vm).map_err(|e| e.to_string())?;
                let _ = writeln!(out, "power:{}", u8::from(on));
            }
            "boot" => {
                let _ = writeln!(out, "boot:default");
            }
            other => return Err(format!("invalid parameter {other}")),
        }
    }
    Ok(out)
}

fn control_set(lab: &Lab, vm: &str, parms: &[String]) -> Result<String, String> {
    let mut it = parms.iter();
    while let Some(p) = it.next() {
        let Some(val) = it.next() else {
            return Err(format!("no value for {p}"));
        };
        match (p.as_str(), val.as_str()) {
            ("power", "0") => {
                lab::power(lab, vm, lab::Power::Kill).map_err(|e| e.to_string())?;
                if lab::is_running(lab, vm).map_err(|e| e.to_string())? {
                    return Err(format!("{vm} is still running"));
                }
            }
            ("power", "1") => {
                lab::power(lab, vm, lab::Power::PowerOn).map_err(|e| e.to_string())?;
            }
            ("reset", "1") => {
                lab::power(lab, vm, lab::Power::Reset).map_err(|e| e.to_string())?;
            }
            ("shutdown", "1") => {
                lab::power(lab, vm, lab::Power::AcpiOff).map_err(|e| e.to_string())?;
            }
            // A pulse of 0, boot devices and the identify light change
            // nothing on a VM.
            ("reset" | "shutdown", "0") | ("boot" | "identify", _) => {}
            _ => return Err(format!("invalid setting {p} {val}")),
        }
    }
    Ok(String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_conf_pins_md5_the_address_and_the_control_program() {
        let c = lan_conf(
            "B",
            "0123456789abcdef",
            Path::new("/run/x/bmc-B/chassis-control"),
        );
        assert!(c.contains("    addr 10.53.0.12 623\n"));
        assert!(c.contains("allowed_auths_admin md5\n"));
        assert!(!c.contains("none"));
        assert!(c.contains("chassis_control \"/run/x/bmc-B/chassis-control B\""));
        assert!(c.contains("user 2 true \"fence\" \"0123456789abcdef\" admin 4 md5"));
    }

    #[test]
    fn partner_file_has_the_four_keys() {
        let a = Access {
            address: "10.53.0.11".into(),
            user: "fence".into(),
            password: "pw".into(),
            cipher_suite: 3,
        };
        assert_eq!(
            a.to_toml(),
            "address = \"10.53.0.11\"\nuser = \"fence\"\npassword = \"pw\"\ncipher_suite = 3\n"
        );
    }

    #[test]
    fn control_rejects_bad_requests_without_touching_a_vm() {
        let lab = Lab::from_env();
        let no_vm = control(&lab, &[]);
        assert_eq!(no_vm.code, 1);
        let bad = control(&lab, &["A".to_string(), "frob".to_string()]);
        assert_eq!(bad.code, 1);
        assert!(bad.out.contains("unknown operation"));
        let no_val = control(
            &lab,
            &["A".to_string(), "set".to_string(), "power".to_string()],
        );
        assert_eq!(no_val.code, 1);
        assert!("sideways".parse::<Op>().is_err());
        assert_eq!("off".parse::<Op>().ok(), Some(Op::Off));
        assert_eq!(address("a"), "10.53.0.11");
        assert_eq!(address("B"), "10.53.0.12");
    }
}
