//! Topology, images, networks and QEMU processes: `up`, `down`, `status`
//! and the "BMC" operations on one VM.

use crate::{agent, cmd, qmp};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// A host command failed.
    #[error(transparent)]
    Cmd(#[from] cmd::CmdError),
    /// A file operation failed.
    #[error("{what}: {path}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// The file.
        path: String,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The state file is unreadable.
    #[error("lab state {0}")]
    State(String),
    /// A VM name that is not part of the topology.
    #[error("unknown VM {0} (use A, B or H)")]
    UnknownVm(String),
    /// A NIC name that is not part of the VM.
    #[error("VM {vm} has no link {link}")]
    UnknownLink {
        /// VM name.
        vm: String,
        /// Link name.
        link: String,
    },
    /// The lab is not running.
    #[error("the lab is not up (run `duplex-lab up`)")]
    NotUp,
    /// A guest did not come up in time.
    #[error("VM {vm} did not answer: {detail}")]
    Boot {
        /// VM name.
        vm: String,
        /// Why.
        detail: String,
    },
    /// QMP failed.
    #[error(transparent)]
    Qmp(#[from] qmp::QmpError),
    /// The guest agent failed.
    #[error("VM {vm}: {source}")]
    Agent {
        /// VM name.
        vm: String,
        /// Underlying error.
        #[source]
        source: agent::AgentError,
    },
    /// Building or locating the images failed.
    #[error("images: {0}")]
    Images(String),
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LabError + 'a {
    move |source| LabError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// A NIC of a VM, attached to a bridge of the lab namespace.
#[derive(Debug, Clone, Copy)]
pub struct Nic {
    /// Name in the guest and QEMU device id (fe0, ic0, ic1).
    pub name: &'static str,
    /// Bridge in the namespace.
    pub bridge: &'static str,
    /// Address with prefix inside the guest.
    pub addr: &'static str,
    /// MAC address (guest names the NIC by it).
    pub mac: &'static str,
}

/// One VM of the topology.
#[derive(Debug, Clone, Copy)]
pub struct VmSpec {
    /// A, B or H.
    pub name: &'static str,
    /// True for controllers: they get the shelf and run Duplex.
    pub controller: bool,
    /// Its NICs.
    pub nics: &'static [Nic],
}

/// The lab topology: two controllers with a front-end and two interconnect
/// links, one host on the front end.
pub const VMS: &[VmSpec] = &[
    VmSpec {
        name: "A",
        controller: true,
        nics: &[
            Nic {
                name: "fe0",
                bridge: "br-fe",
                addr: "10.50.0.11/24",
                mac: "52:54:00:d0:0a:00",
            },
            Nic {
                name: "ic0",
                bridge: "br-ic0",
                addr: "10.51.0.1/24",
                mac: "52:54:00:d0:0a:01",
            },
            Nic {
                name: "ic1",
                bridge: "br-ic1",
                addr: "10.52.0.1/24",
                mac: "52:54:00:d0:0a:02",
            },
            Nic {
                name: "mgmt0",
                bridge: "br-mgmt",
                addr: "10.53.0.1/24",
                mac: "52:54:00:d0:0a:03",
            },
        ],
    },
    VmSpec {
        name: "B",
        controller: true,
        nics: &[
            Nic {
                name: "fe0",
                bridge: "br-fe",
                addr: "10.50.0.12/24",
                mac: "52:54:00:d0:0b:00",
            },
            Nic {
                name: "ic0",
                bridge: "br-ic0",
                addr: "10.51.0.2/24",
                mac: "52:54:00:d0:0b:01",
            },
            Nic {
                name: "ic1",
                bridge: "br-ic1",
                addr: "10.52.0.2/24",
                mac: "52:54:00:d0:0b:02",
            },
            Nic {
                name: "mgmt0",
                bridge: "br-mgmt",
                addr: "10.53.0.2/24",
                mac: "52:54:00:d0:0b:03",
            },
        ],
    },
    VmSpec {
        name: "H",
        controller: false,
        nics: &[Nic {
            name: "fe0",
            bridge: "br-fe",
            addr: "10.50.0.20/24",
            mac: "52:54:00:d0:0c:00",
        }],
    },
];

/// Bridges of the lab namespace.
const BRIDGES: &[&str] = &["br-fe", "br-ic0", "br-ic1", "br-mgmt"];
/// Shelf disks shared by A and B (the heartbeat area lives on them too).
/// Eight, so raid6 (five disks in LVM) and raid10 fit beside other pools
/// and a spare; the files are sparse, so unused disks cost nothing.
pub const SHELF: &[&str] = &[
    "shelf0", "shelf1", "shelf2", "shelf3", "shelf4", "shelf5", "shelf6", "shelf7",
];
/// Small shared disks reserved for the disk heartbeat (DESIGN 4.3), three so
/// a majority survives one lost disk. Their backing files live on a tmpfs
/// of the run folder ([`HB_DIR`]): see the README.
pub const HEARTBEAT_DISKS: &[&str] = &["hb0", "hb1", "hb2"];
/// Size of each heartbeat disk.
const HEARTBEAT_BYTES: u64 = 32 << 20;
/// Folder of the run folder where the lab mounts the heartbeat tmpfs.
pub const HB_DIR: &str = "hb";
/// Size of that tmpfs (three disks and slack for a snapshot's copies).
const HB_TMPFS: &str = "size=256m,mode=0700";
/// Size of each shelf disk (sparse).
const SHELF_BYTES: u64 = 2 << 30;
/// Guest memory in MiB: `DUPLEX_LAB_MEM_MB` for the controllers (768 by
/// default; benchmarks with a thousand exports or volumes need more), 768
/// for the host.
fn memory_mb(controller: bool) -> u32 {
    let default = 768;
    if !controller {
        return default;
    }
    std::env::var("DUPLEX_LAB_MEM_MB")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .filter(|m| (256..=16384).contains(m))
        .unwrap_or(default)
}
/// Address of the lab namespace itself on br-fe (management forwarder).
const FORWARDER_ADDR: &str = "10.50.0.1/24";
/// Interconnect port of the Duplex peer link.
const PEER_PORT: u16 = 7400;

/// Looks a VM up by name (case-insensitive).
pub fn vm_spec(name: &str) -> Result<&'static VmSpec, LabError> {
    VMS.iter()
        .find(|v| v.name.eq_ignore_ascii_case(name))
        .ok_or_else(|| LabError::UnknownVm(name.to_string()))
}

fn addr_only(cidr: &str) -> &str {
    cidr.split('/').next().unwrap_or(cidr)
}

/// Recorded facts about one running VM.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmState {
    /// QEMU's pid.
    pub pid: u32,
    /// The full QEMU command (to start it again after `kill`).
    pub argv: Vec<String>,
}

/// What `up` recorded in the run folder.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct State {
    /// Network namespace of this lab.
    pub ns: String,
    /// Running VMs by name.
    pub vms: BTreeMap<String, VmState>,
    /// Seconds from the first QEMU start until every agent answered.
    pub boot_seconds: Option<f64>,
    /// Image folder used.
    pub images: String,
    /// Pid of the management-port forwarder, if started.
    #[serde(default)]
    pub forwarder: Option<u32>,
    /// Forwards it serves: host loopback port -> guest address.
    #[serde(default)]
    pub forwards: Vec<(u16, String)>,
    /// Pid of tgtd serving the PR-capable disks, if any.
    #[serde(default)]
    pub tgtd: Option<u32>,
    /// Pid of the QMP event recorder, if started.
    #[serde(default)]
    pub recorder: Option<u32>,
    /// Pids of the BMC simulators (ipmi_sim) by controller.
    #[serde(default)]
    pub bmcs: BTreeMap<String, u32>,
}

/// The held state lock (see [`Lab::lock_state`]).
#[derive(Debug)]
pub struct StateLock(PathBuf);

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

/// Where the lab keeps its files.
#[derive(Debug, Clone)]
pub struct Lab {
    /// tests/lab in the source tree.
    pub lab_dir: PathBuf,
    /// Per-run files: overlays, sockets, logs, state.
    pub run_dir: PathBuf,
    /// Folder with the Duplex binaries to install.
    pub bin_dir: PathBuf,
    /// The repository root.
    pub repo: PathBuf,
}

impl Lab {
    /// Resolves the folders from the environment and the build location.
    pub fn from_env() -> Self {
        let lab_dir = std::env::var_os("DUPLEX_LAB_DIR")
            .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
        let run_dir =
            std::env::var_os("DUPLEX_LAB_RUN").map_or_else(|| lab_dir.join("run"), PathBuf::from);
        let repo = lab_dir
            .parent()
            .and_then(Path::parent)
            .map_or_else(|| lab_dir.clone(), Path::to_path_buf);
        // Default: the folder this binary was built into, where cargo also
        // put the Duplex daemons of the same profile.
        let bin_dir = std::env::var_os("DUPLEX_LAB_BIN_DIR").map_or_else(
            || {
                std::env::current_exe()
                    .ok()
                    .and_then(|p| p.parent().map(Path::to_path_buf))
                    .unwrap_or_else(|| repo.join("target/debug"))
            },
            PathBuf::from,
        );
        Self {
            lab_dir,
            run_dir,
            bin_dir,
            repo,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.run_dir.join(name)
    }

    /// The QMP socket of a VM.
    pub fn qmp_sock(&self, vm: &str) -> PathBuf {
        self.path(&format!("{vm}.qmp"))
    }
    /// The agent socket of a VM.
    pub fn agent_sock(&self, vm: &str) -> PathBuf {
        self.path(&format!("{vm}.agent"))
    }
    /// The invariant monitor's socket of a controller (its samples).
    pub fn monitor_sock(&self, vm: &str) -> PathBuf {
        self.path(&format!("{vm}.monitor"))
    }
    /// The serial console socket of a VM.
    pub fn console_sock(&self, vm: &str) -> PathBuf {
        self.path(&format!("{vm}.console"))
    }
    /// The second QMP socket of a VM, held by the event recorder (a QMP
    /// socket serves one client at a time).
    pub fn qmp_events_sock(&self, vm: &str) -> PathBuf {
        self.path(&format!("{vm}.qmp-events"))
    }
    /// The recorded QMP events of a VM (JSON lines, see [`crate::events`]).
    pub fn events_file(&self, vm: &str) -> PathBuf {
        self.path(&format!("{vm}.events.jsonl"))
    }
    /// The backing file of a shared disk (shelfN in the run folder, hbN on
    /// its tmpfs).
    pub fn disk_image(&self, disk: &str) -> PathBuf {
        if HEARTBEAT_DISKS.contains(&disk) {
            self.run_dir.join(HB_DIR).join(format!("{disk}.img"))
        } else {
            self.path(&format!("{disk}.img"))
        }
    }
    /// A file of the run folder.
    pub fn run_file(&self, name: &str) -> PathBuf {
        self.path(name)
    }
    /// The serial console log of a VM.
    pub fn console_log(&self, vm: &str) -> PathBuf {
        self.path(&format!("{vm}.console.log"))
    }

    /// Namespace name, unique per run folder so two clones do not collide.
    pub fn ns_name(&self) -> String {
        let h = crate::verify::checksum(self.run_dir.as_os_str().as_encoded_bytes());
        format!("dlab-{:08x}", h & 0xffff_ffff)
    }

    /// Reads the recorded state; `None` when nothing is recorded.
    pub fn load(&self) -> Result<Option<State>, LabError> {
        let p = self.path("state.json");
        match fs::read(&p) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| LabError::State(format!("{}: {e}", p.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &p)(e)),
        }
    }

    /// Records the state (written aside and renamed: a BMC's chassis
    /// control may read it at any time).
    pub fn save(&self, st: &State) -> Result<(), LabError> {
        let p = self.path("state.json");
        let tmp = self.path(&format!("state.json.{}", std::process::id()));
        let b = serde_json::to_vec_pretty(st).map_err(|e| LabError::State(e.to_string()))?;
        fs::write(&tmp, b).map_err(io_err("write", &tmp))?;
        fs::rename(&tmp, &p).map_err(io_err("rename", &p))
    }

    /// Serializes read-modify-write of the state file between processes
    /// (the BMCs' chassis control runs beside the caller); released when
    /// dropped. A lock older than a minute is a dead holder's and is taken.
    pub fn lock_state(&self) -> Result<StateLock, LabError> {
        let p = self.path("state.lock");
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            match fs::OpenOptions::new().write(true).create_new(true).open(&p) {
                Ok(_) => return Ok(StateLock(p)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let stale = fs::metadata(&p)
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age > Duration::from_secs(60));
                    if stale {
                        let _ = fs::remove_file(&p);
                        continue;
                    }
                    if Instant::now() >= deadline {
                        return Err(LabError::State(format!("{} held for 90 s", p.display())));
                    }
                    thread::sleep(Duration::from_millis(50));
                }
                Err(e) => return Err(io_err("create", &p)(e)),
            }
        }
    }

    /// The recorded state, or `NotUp`.
    pub fn state(&self) -> Result<State, LabError> {
        self.load()?.ok_or(LabError::NotUp)
    }
}

fn ip(args: &[&str]) -> Result<cmd::Output, LabError> {
    let mut v = vec!["ip"];
    v.extend_from_slice(args);
    Ok(cmd::run(&cmd::argv(&v), Duration::from_secs(20))?)
}

/// Finds or builds the images; returns their folder.
pub fn ensure_images(lab: &Lab) -> Result<PathBuf, LabError> {
    if let Some(d) = std::env::var_os("DUPLEX_LAB_IMAGES") {
        return Ok(PathBuf::from(d));
    }
    let script = lab.lab_dir.join("images.sh");
    info!("building or reusing images with {}", script.display());
    let o = cmd::run(&[script.display().to_string()], Duration::from_secs(1800))?;
    let dir = o
        .stdout
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    if dir.is_empty() {
        return Err(LabError::Images(format!(
            "images.sh printed no folder: {}",
            o.stderr
        )));
    }
    Ok(PathBuf::from(dir))
}

/// True when `pid` is alive and is a QEMU process (guards against reuse).
pub fn pid_is_qemu(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("qemu-system"))
        .unwrap_or(false)
}

fn kill_pid(pid: u32, signal: &str) {
    if pid_is_qemu(pid) {
        let argv = cmd::argv(&["kill", signal, &pid.to_string()]);
        if let Err(e) = cmd::run_any(&argv, Duration::from_secs(5)) {
            warn!("kill {signal} {pid}: {e}");
        }
    }
}

fn pid_is_forwarder(pid: u32) -> bool {
    fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let c = String::from_utf8_lossy(&c);
            c.contains("duplex-lab") && c.contains("forward")
        })
        .unwrap_or(false)
}

/// Starts the management-port forwarder (see [`crate::forward`]) as a
/// detached process; `down` kills it by pid.
fn start_forwarder(lab: &Lab, st: &mut State) -> Result<(), LabError> {
    let spec = std::env::var("DUPLEX_LAB_MGMT")
        .unwrap_or_else(|_| crate::forward::DEFAULT_SPEC.to_string());
    let mut forwards = Vec::new();
    for f in crate::forward::parse_spec(&spec) {
        let v = vm_spec(&f.vm)?;
        // The management network, where duplex-mgmt listens.
        if let Some(n) = v.nics.iter().find(|n| n.name == "mgmt0") {
            forwards.push((
                f.host_port,
                format!("{}:{}", addr_only(n.addr), f.guest_port),
            ));
        }
    }
    if forwards.is_empty() {
        return Ok(());
    }
    let exe = std::env::current_exe()
        .map_err(io_err("locate duplex-lab", Path::new("/proc/self/exe")))?;
    let mut argv = vec![
        exe.display().to_string(),
        "forward".into(),
        "--ns".into(),
        st.ns.clone(),
    ];
    for (port, target) in &forwards {
        argv.push(format!("{port}={target}"));
    }
    let logp = lab.path("forward.log");
    let log = fs::File::create(&logp).map_err(io_err("create", &logp))?;
    let log2 = log.try_clone().map_err(io_err("dup", &logp))?;
    let mut c = cmd::command(&argv)?;
    c.stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log2);
    let mut child = c.spawn().map_err(|source| cmd::CmdError::Spawn {
        program: "duplex-lab forward".into(),
        source,
    })?;
    // It exits at once when it could bind none of the ports.
    thread::sleep(Duration::from_millis(500));
    if let Ok(Some(status)) = child.try_wait() {
        warn!(
            "management forwarder exited ({status}); see {}",
            logp.display()
        );
        return Ok(());
    }
    st.forwarder = Some(child.id());
    st.forwards = forwards;
    Ok(())
}

/// Stops every recorded VM and deletes the namespace; never fails on a
/// half-built lab, reports what it could not clean.
pub fn down(lab: &Lab) -> Result<(), LabError> {
    let st = lab.load().unwrap_or_default().unwrap_or_default();
    if let Some(pid) = st.forwarder {
        if pid_is_forwarder(pid) {
            let argv = cmd::argv(&["kill", "-KILL", &pid.to_string()]);
            if let Err(e) = cmd::run_any(&argv, Duration::from_secs(5)) {
                warn!("kill forwarder {pid}: {e}");
            }
        }
    }
    for (name, vm) in &st.vms {
        if pid_is_qemu(vm.pid) {
            // A clean quit first (closes files), then force.
            let _ = qmp::one(&lab.qmp_sock(name), "quit", None);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while st.vms.values().any(|v| pid_is_qemu(v.pid)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    for vm in st.vms.values() {
        kill_pid(vm.pid, "-KILL");
    }
    // Pid files of a failed start that never reached the state file.
    for v in VMS {
        if let Ok(s) = fs::read_to_string(lab.path(&format!("{}.pid", v.name))) {
            if let Ok(pid) = s.trim().parse::<u32>() {
                kill_pid(pid, "-KILL");
            }
        }
    }
    if let Some(pid) = st.recorder {
        crate::events::stop_recorder(pid);
    }
    for pid in st.bmcs.values() {
        crate::bmc::stop(*pid);
    }
    if let Some(pid) = st.tgtd {
        crate::prdisk::stop(pid);
    }
    if let Some(pid) = fs::read_to_string(lab.path("tgtd.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
    {
        crate::prdisk::stop(pid);
    }
    let ns = if st.ns.is_empty() {
        lab.ns_name()
    } else {
        st.ns.clone()
    };
    let list = ip(&["netns", "list"])?;
    if list
        .stdout
        .lines()
        .any(|l| l.split_whitespace().next() == Some(ns.as_str()))
    {
        ip(&["netns", "del", &ns])?;
    }
    // Big per-run files go; logs stay for post-mortems.
    if let Ok(rd) = fs::read_dir(&lab.run_dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            // Logs and scenario reports stay; the state file, disks, pid
            // files and sockets go.
            let keep = n.ends_with(".log") || (n.ends_with(".json") && n != "state.json");
            let socket = n.ends_with(".qmp") || n.ends_with(".agent") || n.ends_with(".console");
            if (!keep && e.path().is_file()) || socket {
                let _ = fs::remove_file(e.path());
            }
        }
    }
    let _ = fs::remove_dir_all(lab.path("payload"));
    for v in VMS.iter().filter(|v| v.controller) {
        let _ = fs::remove_dir_all(crate::bmc::dir(lab, v.name));
    }
    umount_hb_tmpfs(lab);
    // Snapshots belong to this run (its payload, its namespace).
    if let Ok(rd) = fs::read_dir(&lab.run_dir) {
        for e in rd.flatten() {
            if e.file_name().to_string_lossy().starts_with("snap-") {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
    Ok(())
}

fn hb_mounted(dir: &Path) -> bool {
    let want = dir.display().to_string();
    fs::read_to_string("/proc/mounts")
        .map(|m| {
            m.lines()
                .any(|l| l.split_whitespace().nth(1) == Some(&want))
        })
        .unwrap_or(false)
}

/// Mounts the tmpfs that holds the heartbeat disks' backing files: the
/// host's other I/O (builds, the shelf files) must not stall the heartbeat's
/// synchronous writes, and this kernel's tmpfs takes O_DIRECT, so the disks
/// keep the shelf's flags.
fn mount_hb_tmpfs(lab: &Lab) -> Result<(), LabError> {
    let dir = lab.path(HB_DIR);
    fs::create_dir_all(&dir).map_err(io_err("mkdir", &dir))?;
    if !hb_mounted(&dir) {
        cmd::run(
            &cmd::argv(&[
                "mount",
                "-t",
                "tmpfs",
                "-o",
                HB_TMPFS,
                "duplex-lab-hb",
                &dir.display().to_string(),
            ]),
            Duration::from_secs(20),
        )?;
    }
    Ok(())
}

fn umount_hb_tmpfs(lab: &Lab) {
    let dir = lab.path(HB_DIR);
    if hb_mounted(&dir) {
        let argv = cmd::argv(&["umount", &dir.display().to_string()]);
        if let Err(e) = cmd::run(&argv, Duration::from_secs(20)) {
            warn!("umount {}: {e}", dir.display());
        }
    }
    let _ = fs::remove_dir(&dir);
}

fn setup_net(ns: &str) -> Result<(), LabError> {
    ip(&["netns", "add", ns])?;
    ip(&["-n", ns, "link", "set", "lo", "up"])?;
    for br in BRIDGES {
        ip(&[
            "-n",
            ns,
            "link",
            "add",
            br,
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        ip(&["-n", ns, "link", "set", br, "up"])?;
    }
    // The namespace's own address on the front end: only the management
    // forwarder's connector uses it to reach the controllers.
    ip(&["-n", ns, "addr", "add", FORWARDER_ADDR, "dev", "br-fe"])?;
    // The BMCs' addresses on the management network (their simulators run
    // in the namespace itself).
    for v in VMS.iter().filter(|v| v.controller) {
        let addr = format!("{}/24", crate::bmc::address(v.name));
        ip(&["-n", ns, "addr", "add", &addr, "dev", "br-mgmt"])?;
    }
    for v in VMS {
        for n in v.nics {
            let tap = format!("t{}-{}", v.name, n.name);
            ip(&["-n", ns, "tuntap", "add", "dev", &tap, "mode", "tap"])?;
            ip(&["-n", ns, "link", "set", &tap, "master", n.bridge])?;
            ip(&["-n", ns, "link", "set", &tap, "up"])?;
        }
    }
    Ok(())
}

fn copy_dir(src: &Path, dst: &Path) -> Result<(), LabError> {
    fs::create_dir_all(dst).map_err(io_err("mkdir", dst))?;
    let Ok(rd) = fs::read_dir(src) else {
        return Ok(());
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_file() {
            let to = dst.join(e.file_name());
            fs::copy(&p, &to).map_err(io_err("copy", &p))?;
        }
    }
    Ok(())
}

/// `bytes` random bytes from the kernel, as hex.
pub fn random_hex(bytes: usize) -> Result<String, LabError> {
    let p = Path::new("/dev/urandom");
    let mut buf = vec![0u8; bytes];
    let mut f = fs::File::open(p).map_err(io_err("open", p))?;
    std::io::Read::read_exact(&mut f, &mut buf).map_err(io_err("read", p))?;
    Ok(buf.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// The Duplex configuration of one controller.
pub fn duplex_toml(me: &VmSpec, peer: &VmSpec) -> String {
    let ic = |v: &VmSpec| -> Vec<String> {
        v.nics
            .iter()
            .filter(|n| n.name.starts_with("ic"))
            .map(|n| format!("\"{}:{PEER_PORT}\"", addr_only(n.addr)))
            .collect()
    };
    // The management endpoint on the management network (mgmt0), where
    // the lab's forwarder reaches it from this machine's loopback.
    let mgmt = me
        .nics
        .iter()
        .find(|n| n.name == "mgmt0")
        .map_or(String::new(), |n| {
            format!(
                "\n[mgmt]\nlisten = [\"{}\"]\nport = 443\n",
                addr_only(n.addr)
            )
        });
    format!(
        "controller_id = \"{}\"\nsocket_dir = \"/run/duplex\"\nstate_dir = \"/var/lib/duplex\"\n\n\
         [peer]\ncontroller_id = \"{}\"\nlisten = [{}]\naddresses = [{}]\n\
         secret_file = \"/etc/duplex/cluster.secret\"\n{mgmt}",
        me.name,
        peer.name,
        ic(me).join(", "),
        ic(peer).join(", ")
    )
}

/// Port of the heartbeat's network links on the interconnect.
const HEARTBEAT_PORT: u16 = 7790;

/// The `[heartbeat]` section of a controller's duplex.toml, for the
/// heartbeat service (appended only with `DUPLEX_LAB_HEARTBEAT=1` until the
/// configuration parser knows the section).
pub fn heartbeat_toml(me: &VmSpec, peer: &VmSpec) -> String {
    heartbeat_toml_with(me, peer, crate::prdisk::count())
}

/// [`heartbeat_toml`] for a lab with `pr_disks` PR disks.
fn heartbeat_toml_with(me: &VmSpec, peer: &VmSpec, pr_disks: usize) -> String {
    let ic = |v: &VmSpec, nic: &str| {
        v.nics
            .iter()
            .find(|n| n.name == nic)
            .map_or("", |n| addr_only(n.addr))
            .to_string()
    };
    let by_id = |d: &&str| format!("\"/dev/disk/by-id/virtio-{d}\"");
    let disks: Vec<String> = HEARTBEAT_DISKS.iter().map(by_id).collect();
    let mut shelf: Vec<String> = SHELF.iter().map(by_id).collect();
    // With PR disks the demo pool lives on them: they are fenced by
    // scsi_pr (after ipmi) and watched with the rest of the shelf.
    let pr: Vec<String> = (0..pr_disks)
        .map(|i| format!("\"{}\"", crate::prdisk::by_id(i)))
        .collect();
    shelf.extend(pr.iter().cloned());
    let fence = if pr.is_empty() {
        "fence = [\"ipmi\"]\n".to_string()
    } else {
        format!(
            "fence = [\"ipmi\", \"scsi_pr\"]\npr_disks = [{}]\n",
            pr.join(", ")
        )
    };
    let links: Vec<String> = ["ic0", "ic1"]
        .iter()
        .map(|nic| {
            format!(
                "{{ local = \"{}:{HEARTBEAT_PORT}\", peer = \"{}:{HEARTBEAT_PORT}\" }}",
                ic(me, nic),
                ic(peer, nic)
            )
        })
        .collect();
    let t = HbTimings::from_env();
    format!(
        "[heartbeat]\ndisks = [{}]\nlinks = [{}]\nwatchdog = \"/dev/watchdog\"\n\
         {fence}bmc_file = \"/etc/duplex/partner-bmc.toml\"\n\
         frontend = [\"fe0\"]\nshelf = [{}]\n\
         hb_interval_ms = {}\nic_timeout_ms = {}\ndisk_interval_ms = {}\n\
         suspect_timeout_ms = {}\ndisk_timeout_ms = {}\nwatchdog_timeout_ms = {}\n",
        disks.join(", "),
        links.join(", "),
        shelf.join(", "),
        t.hb_interval,
        t.ic_timeout,
        t.disk_interval,
        t.suspect_timeout,
        t.disk_timeout,
        t.watchdog_timeout,
    )
}

/// The heartbeat's timings in the lab, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HbTimings {
    /// Interval between interconnect beats.
    pub hb_interval: u64,
    /// A link is down after this long without a beat.
    pub ic_timeout: u64,
    /// Interval between slot writes and reads.
    pub disk_interval: u64,
    /// A partner slot frozen this long on a majority is dead.
    pub suspect_timeout: u64,
    /// The unconfirmed wait (and the first wait after boot).
    pub disk_timeout: u64,
    /// The watchdog's timeout.
    pub watchdog_timeout: u64,
}

impl HbTimings {
    /// The product's defaults: for a quiet machine (`DUPLEX_LAB_HB=defaults`).
    pub const DEFAULTS: Self = Self {
        hb_interval: 100,
        ic_timeout: 1000,
        disk_interval: 200,
        suspect_timeout: 1500,
        disk_timeout: 10_000,
        watchdog_timeout: 5000,
    };
    /// The lab's default: TCG guests on a shared two-core host stall for
    /// a second now and then (a build beside the lab), and a stall longer
    /// than `suspect_timeout` would fence a live controller. Twice the
    /// product's detection window, same shape.
    pub const TCG: Self = Self {
        hb_interval: 200,
        ic_timeout: 2000,
        disk_interval: 300,
        suspect_timeout: 2500,
        disk_timeout: 15_000,
        watchdog_timeout: 10_000,
    };

    /// `DUPLEX_LAB_HB=defaults` picks [`Self::DEFAULTS`], anything else
    /// [`Self::TCG`].
    pub fn from_env() -> Self {
        match std::env::var("DUPLEX_LAB_HB").as_deref() {
            Ok("defaults") => Self::DEFAULTS,
            _ => Self::TCG,
        }
    }
}

/// True when `DUPLEX_LAB_HEARTBEAT=1` asks for the `[heartbeat]` section.
pub fn heartbeat_enabled() -> bool {
    std::env::var("DUPLEX_LAB_HEARTBEAT").is_ok_and(|v| v == "1")
}

/// Is this a binary to ship into the guests?
fn shipped(name: &str) -> bool {
    (name.starts_with("duplex-") || name == "duplexctl")
        && name != "duplex-lab"
        && !name.contains('.')
}

/// Builds the payload disk: binaries, units, per-role config, fixtures.
fn build_payload(lab: &Lab) -> Result<PathBuf, LabError> {
    let dir = lab.path("payload");
    let _ = fs::remove_dir_all(&dir);
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).map_err(io_err("mkdir", &bin))?;
    let rd = fs::read_dir(&lab.bin_dir).map_err(io_err("read binaries", &lab.bin_dir))?;
    let mut shipped_names = Vec::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let p = e.path();
        if !p.is_file() || !shipped(&name) {
            continue;
        }
        let to = bin.join(&name);
        // Debug info is most of a debug binary; the guests do not need it.
        let strip = cmd::argv(&[
            "strip",
            "--strip-debug",
            "-o",
            &to.display().to_string(),
            &p.display().to_string(),
        ]);
        if cmd::run(&strip, Duration::from_secs(60)).is_err() {
            fs::copy(&p, &to).map_err(io_err("copy", &p))?;
        }
        shipped_names.push(name);
    }
    if !shipped_names.iter().any(|n| n == "duplex-lab-agent") {
        return Err(LabError::Images(format!(
            "no duplex-lab-agent in {} (build the workspace binaries first)",
            lab.bin_dir.display()
        )));
    }
    info!("payload binaries: {}", shipped_names.join(" "));
    copy_dir(&lab.repo.join("systemd"), &dir.join("systemd"))?;
    copy_dir(&lab.repo.join("host-config"), &dir.join("host-config"))?;
    copy_dir(&lab.lab_dir.join("fixture"), &dir.join("fixture"))?;
    // The web UI, when built (scripts/ui-tests.sh builds it): duplex-mgmt
    // serves it from /usr/share/duplex/ui in the controllers.
    let ui = lab.repo.join("ui").join("dist");
    if ui.join("index.html").is_file() {
        copy_dir(&ui, &dir.join("ui"))?;
    }
    for script in ["install.sh", "sysrq.sh", "monitor.sh", "scsi.sh"] {
        let from = lab.lab_dir.join("payload").join(script);
        fs::copy(&from, dir.join(script)).map_err(io_err("copy", &from))?;
    }
    let secret = dir.join("cluster.secret");
    fs::write(&secret, random_hex(32)?).map_err(io_err("write", &secret))?;
    fs::set_permissions(&secret, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .map_err(io_err("chmod", &secret))?;
    for v in VMS {
        let rdir = dir.join("roles").join(v.name);
        fs::create_dir_all(&rdir).map_err(io_err("mkdir", &rdir))?;
        let mut net = String::new();
        for n in v.nics {
            let _ = writeln!(net, "{} {} {}", n.mac, n.name, n.addr);
        }
        fs::write(rdir.join("net"), net).map_err(io_err("write", &rdir))?;
        if v.controller {
            let peer = VMS
                .iter()
                .find(|p| p.controller && p.name != v.name)
                .ok_or_else(|| LabError::State("topology has one controller".into()))?;
            let mut toml = duplex_toml(v, peer);
            if heartbeat_enabled() {
                toml.push('\n');
                toml.push_str(&heartbeat_toml(v, peer));
            }
            fs::write(rdir.join("duplex.toml"), toml).map_err(io_err("write", &rdir))?;
            // The partner's BMC, to fence it (a secret: install.sh makes
            // it 0600 in the guest).
            let bmc = crate::bmc::access(lab, peer.name)?;
            let p = rdir.join("partner-bmc.toml");
            fs::write(&p, bmc.to_toml()).map_err(io_err("write", &p))?;
            // mkfs -d keeps the mode: only root reads it in the guest too.
            fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .map_err(io_err("chmod", &p))?;
        }
    }
    let img = lab.path("payload.img");
    let du = cmd::run(
        &cmd::argv(&["du", "-sm", &dir.display().to_string()]),
        Duration::from_secs(30),
    )?;
    let mb: u64 = du
        .stdout
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let size = format!("{}M", mb + mb / 4 + 32);
    cmd::run(
        &cmd::argv(&[
            "mkfs.ext4",
            "-q",
            "-F",
            "-L",
            "payload",
            "-d",
            &dir.display().to_string(),
            &img.display().to_string(),
            &size,
        ]),
        Duration::from_secs(120),
    )?;
    Ok(img)
}

fn qemu_argv(lab: &Lab, images: &Path, v: &VmSpec, ns: &str, pr_disks: usize) -> Vec<String> {
    let p = |n: &str| lab.path(n).display().to_string();
    let mut a: Vec<String> = cmd::argv(&["ip", "netns", "exec", ns, "qemu-system-x86_64"]);
    let mut push = |parts: &[&str]| a.extend(parts.iter().map(|s| (*s).to_string()));
    let name = v.name;
    push(&["-name", &format!("duplex-lab-{name}")]);
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-vga",
        "none",
    ]);
    // TCG: KVM does not work here; tb-size keeps RSS near 530 MiB (LAB.md).
    push(&[
        "-accel",
        "tcg,tb-size=256",
        "-cpu",
        "max",
        "-smp",
        "1",
        "-m",
        &memory_mb(v.controller).to_string(),
    ]);
    push(&["-kernel", &images.join("vmlinuz").display().to_string()]);
    push(&["-initrd", &images.join("initrd.img").display().to_string()]);
    push(&[
        "-append",
        &format!(
            "console=ttyS0,115200 panic=-1 net.ifnames=0 mitigations=off quiet duplex_lab.role={name}"
        ),
    ]);
    push(&[
        "-drive",
        &format!(
            "file={},if=none,id=root,format=qcow2,cache=unsafe",
            p(&format!("{name}.qcow2"))
        ),
    ]);
    push(&["-device", "virtio-blk-pci,drive=root,serial=root"]);
    push(&[
        "-drive",
        &format!(
            "file={},if=none,id=payload,format=raw,readonly=on",
            p("payload.img")
        ),
    ]);
    push(&["-device", "virtio-blk-pci,drive=payload,serial=payload"]);
    if v.controller {
        for s in SHELF.iter().chain(HEARTBEAT_DISKS) {
            // One raw file opened by both controllers: no locking, no host
            // cache, so O_DIRECT on one is seen by the other (LAB.md). The
            // named nodes and the device id are for `disk pull|push`; the
            // drive id stays the disk's name (tests use `drive_del NAME`).
            push(&[
                "-drive",
                &format!(
                    "file={},if=none,id={s},format=raw,node-name={},file.node-name={},\
                     file.locking=off,cache=none,aio=threads,werror=report,rerror=report",
                    lab.disk_image(s).display(),
                    crate::fault::format_node(s),
                    crate::fault::file_node(s),
                ),
            ]);
            push(&[
                "-device",
                &format!(
                    "virtio-blk-pci,id={},drive={s},share-rw=on,serial={s}",
                    crate::fault::device_id(s)
                ),
            ]);
        }
        // The board's watchdog (/dev/watchdog): it resets the VM when it
        // expires. Paused with the vCPU by `freeze` (README).
        push(&["-device", "i6300esb,id=wdt", "-action", "watchdog=reset"]);
    }
    if v.controller {
        let pr = crate::prdisk::qemu_args(name, pr_disks);
        let refs: Vec<&str> = pr.iter().map(String::as_str).collect();
        push(&refs);
    }
    for n in v.nics {
        push(&[
            "-netdev",
            &format!(
                "tap,id=n-{},ifname=t{}-{},script=no,downscript=no",
                n.name, name, n.name
            ),
        ]);
        push(&[
            "-device",
            &format!(
                "virtio-net-pci,id={},netdev=n-{},mac={}",
                n.name, n.name, n.mac
            ),
        ]);
    }
    push(&[
        "-chardev",
        &format!(
            "socket,id=qmp,path={},server=on,wait=off",
            p(&format!("{name}.qmp"))
        ),
    ]);
    push(&["-mon", "chardev=qmp,mode=control"]);
    // A second monitor for the event recorder, so it never holds the one
    // the commands use.
    push(&[
        "-chardev",
        &format!(
            "socket,id=qmpev,path={},server=on,wait=off",
            p(&format!("{name}.qmp-events"))
        ),
    ]);
    push(&["-mon", "chardev=qmpev,mode=control"]);
    push(&[
        "-chardev",
        &format!(
            "socket,id=con,path={},server=on,wait=off,logfile={},logappend=on",
            p(&format!("{name}.console")),
            p(&format!("{name}.console.log"))
        ),
    ]);
    push(&["-serial", "chardev:con"]);
    push(&["-device", "virtio-serial-pci,id=vser"]);
    push(&[
        "-chardev",
        &format!(
            "socket,id=agent,path={},server=on,wait=off",
            p(&format!("{name}.agent"))
        ),
    ]);
    push(&[
        "-device",
        &format!(
            "virtserialport,bus=vser.0,chardev=agent,name={}",
            agent::PORT_NAME
        ),
    ]);
    if v.controller {
        // The invariant monitor's own channel (src/monitor.rs).
        push(&[
            "-chardev",
            &format!(
                "socket,id=monitor,path={},server=on,wait=off",
                p(&format!("{name}.monitor"))
            ),
        ]);
        push(&[
            "-device",
            &format!(
                "virtserialport,bus=vser.0,chardev=monitor,name={}",
                crate::monitor::PORT_NAME
            ),
        ]);
    }
    push(&["-pidfile", &p(&format!("{name}.pid")), "-daemonize"]);
    a
}

/// Starts one VM's QEMU (daemonized) and returns its pid.
pub fn start_vm(lab: &Lab, name: &str, argv: &[String]) -> Result<u32, LabError> {
    let pidfile = lab.path(&format!("{name}.pid"));
    let _ = fs::remove_file(&pidfile);
    cmd::run(argv, Duration::from_secs(60))?;
    let s = fs::read_to_string(&pidfile).map_err(io_err("read pid file", &pidfile))?;
    s.trim()
        .parse()
        .map_err(|_| LabError::State(format!("bad pid file {}", pidfile.display())))
}

/// Waits for the agents of `names` in parallel; returns the slowest time.
pub fn wait_agents(lab: &Lab, names: &[&str], within: Duration) -> Result<f64, LabError> {
    let t0 = Instant::now();
    let handles: Vec<_> = names
        .iter()
        .map(|n| {
            let sock = lab.agent_sock(n);
            let n = (*n).to_string();
            thread::spawn(move || (n, agent::wait_ready(&sock, within)))
        })
        .collect();
    for h in handles {
        let (n, r) = h
            .join()
            .map_err(|_| LabError::State("agent wait thread panicked".into()))?;
        r.map_err(|e| LabError::Boot {
            vm: n.clone(),
            detail: e.to_string(),
        })?;
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// Boots the whole lab. On failure everything started is torn down.
pub fn up(lab: &Lab) -> Result<State, LabError> {
    // A stale lab from an earlier run is cleaned, never reused.
    down(lab)?;
    let images = ensure_images(lab)?;
    fs::create_dir_all(&lab.run_dir).map_err(io_err("mkdir", &lab.run_dir))?;
    let r = up_inner(lab, &images);
    if r.is_err() {
        for v in VMS {
            let log = lab.console_log(v.name);
            if let Ok(s) = fs::read_to_string(&log) {
                let tail: Vec<&str> = s.lines().rev().take(15).collect();
                warn!(
                    "console of {} (last lines):\n{}",
                    v.name,
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
            }
        }
        if let Err(e) = down(lab) {
            warn!("teardown after failed up: {e}");
        }
    }
    r
}

fn up_inner(lab: &Lab, images: &Path) -> Result<State, LabError> {
    let ns = lab.ns_name();
    let mut st = State {
        ns: ns.clone(),
        images: images.display().to_string(),
        ..State::default()
    };
    lab.save(&st)?;
    for v in VMS {
        let _ = fs::remove_file(lab.console_log(v.name));
    }
    mount_hb_tmpfs(lab)?;
    let disks = SHELF
        .iter()
        .map(|s| (*s, SHELF_BYTES))
        .chain(HEARTBEAT_DISKS.iter().map(|s| (*s, HEARTBEAT_BYTES)));
    for (s, size) in disks {
        let p = lab.disk_image(s);
        let f = fs::File::create(&p).map_err(io_err("create", &p))?;
        f.set_len(size).map_err(io_err("size", &p))?;
    }
    crate::bmc::prepare(lab)?;
    build_payload(lab)?;
    let base = images.join("base.img");
    for v in VMS {
        let ov = lab.path(&format!("{}.qcow2", v.name));
        cmd::run(
            &cmd::argv(&[
                "qemu-img",
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                &base.display().to_string(),
                &ov.display().to_string(),
            ]),
            Duration::from_secs(30),
        )?;
    }
    setup_net(&ns)?;
    let pr_disks = crate::prdisk::count();
    if pr_disks > 0 {
        st.tgtd = Some(crate::prdisk::start(&lab.run_dir, &ns, pr_disks)?);
        lab.save(&st)?;
    }
    for (vm, pid) in crate::bmc::start_all(lab, &ns)? {
        st.bmcs.insert(vm, pid);
    }
    lab.save(&st)?;
    let names: Vec<&str> = VMS.iter().map(|v| v.name).collect();
    st.recorder = Some(crate::events::start_recorder(lab, &names)?);
    lab.save(&st)?;
    let t0 = Instant::now();
    for v in VMS {
        let argv = qemu_argv(lab, images, v, &ns, pr_disks);
        let pid = start_vm(lab, v.name, &argv)?;
        st.vms.insert(v.name.to_string(), VmState { pid, argv });
        lab.save(&st)?;
    }
    wait_agents(lab, &names, Duration::from_secs(480))?;
    for v in VMS {
        // udev may rename a NIC after the boot-time pass named it.
        let out = exec_ok(
            lab,
            v.name,
            &["sh", "/run/duplex-lab/payload/install.sh", "nics"],
            Duration::from_secs(60),
        )?;
        if out.contains("changed=1") {
            warn!("{}: NICs named or addressed again after boot", v.name);
        }
    }
    st.boot_seconds = Some((t0.elapsed().as_secs_f64() * 10.0).round() / 10.0);
    if let Err(e) = start_forwarder(lab, &mut st) {
        // A convenience for browsers, not a reason to fail the lab.
        warn!("management port forwarder: {e}");
    }
    lab.save(&st)?;
    Ok(st)
}

/// Runs a command in a VM through its agent.
pub fn exec(
    lab: &Lab,
    vm: &str,
    argv: &[String],
    timeout: Duration,
) -> Result<agent::Response, LabError> {
    let v = vm_spec(vm)?;
    agent::exec(&lab.agent_sock(v.name), argv, timeout).map_err(|source| LabError::Agent {
        vm: v.name.to_string(),
        source,
    })
}

/// Runs a command in a VM and requires exit status 0; returns stdout.
pub fn exec_ok(lab: &Lab, vm: &str, argv: &[&str], timeout: Duration) -> Result<String, LabError> {
    let argv = cmd::argv(argv);
    let r = exec(lab, vm, &argv, timeout)?;
    if r.code == Some(0) {
        Ok(r.stdout)
    } else {
        Err(LabError::Boot {
            vm: vm.to_string(),
            detail: format!(
                "{argv:?} exited {:?}{}: {}{}",
                r.code,
                if r.timed_out { " (timed out)" } else { "" },
                r.stdout,
                r.stderr
            ),
        })
    }
}

/// One line per VM: process, QMP run state, agent.
pub fn status(lab: &Lab) -> Result<String, LabError> {
    let st = lab.state()?;
    let mut out = format!(
        "namespace {}  boot {:?} s  images {}\n",
        st.ns, st.boot_seconds, st.images
    );
    let fw_alive = st.forwarder.is_some_and(pid_is_forwarder);
    for (port, target) in &st.forwards {
        let _ = writeln!(
            out,
            "management: 127.0.0.1:{port} -> {target}{}",
            if fw_alive {
                ""
            } else {
                " (forwarder not running)"
            }
        );
    }
    for (name, vm) in &st.vms {
        let alive = pid_is_qemu(vm.pid);
        let run = if alive {
            qmp::one(&lab.qmp_sock(name), "query-status", None)
                .map(|v| {
                    v.get("status")
                        .and_then(|s| s.as_str())
                        .unwrap_or("?")
                        .to_string()
                })
                .unwrap_or_else(|e| format!("qmp error: {e}"))
        } else {
            "-".into()
        };
        let agent = if alive && run == "running" {
            match agent::exec(
                &lab.agent_sock(name),
                &["true".to_string()],
                Duration::from_secs(3),
            ) {
                Ok(_) => "agent ok",
                Err(_) => "agent silent",
            }
        } else {
            "agent -"
        };
        let _ = writeln!(
            out,
            "{name}: pid {} {}  {run}  {agent}",
            vm.pid,
            if alive { "alive" } else { "dead" }
        );
    }
    Ok(out)
}

/// BMC operations on one VM.
#[derive(Debug, Clone, Copy)]
pub enum Power {
    /// Pull the plug: SIGKILL the QEMU process.
    Kill,
    /// Pause the vCPU (the guest hangs, its disks and NICs stay).
    Freeze,
    /// Resume after `Freeze`.
    Thaw,
    /// Hardware reset (the guest reboots, its overlay is kept).
    Reset,
    /// Start a killed VM again from its overlay; returns once its agent
    /// answers.
    Start,
    /// Start a killed VM again and return at once (a BMC's power on).
    PowerOn,
    /// ACPI power button (a soft shutdown request to the guest).
    AcpiOff,
}

/// Applies a BMC operation to `vm`.
pub fn power(lab: &Lab, vm: &str, op: Power) -> Result<(), LabError> {
    let v = vm_spec(vm)?;
    let st = lab.state()?;
    let rec = st.vms.get(v.name).cloned().ok_or(LabError::NotUp)?;
    let q = lab.qmp_sock(v.name);
    match op {
        Power::Kill => {
            kill_pid(rec.pid, "-KILL");
            // Return only once it is gone, so `start` right after works.
            let deadline = Instant::now() + Duration::from_secs(10);
            while pid_is_qemu(rec.pid) && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(50));
            }
        }
        Power::Freeze => {
            qmp::one(&q, "stop", None)?;
        }
        Power::Thaw => {
            qmp::one(&q, "cont", None)?;
        }
        Power::Reset => {
            qmp::one(&q, "system_reset", None)?;
        }
        Power::AcpiOff => {
            qmp::one(&q, "system_powerdown", None)?;
        }
        Power::Start | Power::PowerOn => {
            // A BMC (another process) may start the other controller at
            // the same moment: read, start and record under the lock.
            let lock = lab.lock_state()?;
            let mut st = lab.state()?;
            let rec = st.vms.get(v.name).cloned().ok_or(LabError::NotUp)?;
            if pid_is_qemu(rec.pid) {
                return Ok(());
            }
            let pid = start_vm(lab, v.name, &rec.argv)?;
            st.vms.insert(
                v.name.to_string(),
                VmState {
                    pid,
                    argv: rec.argv,
                },
            );
            lab.save(&st)?;
            drop(lock);
            if matches!(op, Power::Start) {
                // Back only when its agent answers (it reinstalls the payload).
                wait_agents(lab, &[v.name], Duration::from_secs(300))?;
            }
        }
    }
    Ok(())
}

/// True when `vm`'s QEMU process is alive (its power is on, even frozen).
pub fn is_running(lab: &Lab, vm: &str) -> Result<bool, LabError> {
    let v = vm_spec(vm)?;
    let st = lab.state()?;
    Ok(st.vms.get(v.name).is_some_and(|r| pid_is_qemu(r.pid)))
}

/// Sets a NIC's link state (`ic0`, `ic1`, `fe0`) as a cable pull would.
pub fn link(lab: &Lab, vm: &str, nic: &str, up: bool) -> Result<(), LabError> {
    let v = vm_spec(vm)?;
    if !v.nics.iter().any(|n| n.name == nic) {
        return Err(LabError::UnknownLink {
            vm: v.name.into(),
            link: nic.into(),
        });
    }
    qmp::one(
        &lab.qmp_sock(v.name),
        "set_link",
        Some(json!({ "name": nic, "up": up })),
    )?;
    Ok(())
}

fn snap_dir(lab: &Lab, name: &str) -> Result<PathBuf, LabError> {
    // The name becomes part of a QEMU `exec:` URI: keep it to a safe alphabet.
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(LabError::State(format!("bad snapshot name {name:?}")));
    }
    Ok(lab.path(&format!("snap-{name}")))
}

/// Deletes snapshot `name` (its memory images are the size of the guests'
/// RAM: a run that made its own frees the disk).
pub fn drop_snapshot(lab: &Lab, name: &str) -> Result<(), LabError> {
    let dir = snap_dir(lab, name)?;
    match fs::remove_dir_all(&dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("remove", &dir)(e)),
    }
}

/// Files that make up the lab's disk state (overlays, shelf, heartbeat
/// disks), relative to the run folder.
fn disk_files() -> Vec<String> {
    VMS.iter()
        .map(|v| format!("{}.qcow2", v.name))
        .chain(SHELF.iter().map(|s| format!("{s}.img")))
        .chain(HEARTBEAT_DISKS.iter().map(|s| format!("{HB_DIR}/{s}.img")))
        .chain((0..8).map(|i| format!("pr{i}.img")))
        .collect()
}

fn copy_sparse(from: &Path, to: &Path) -> Result<(), LabError> {
    cmd::run(
        &cmd::argv(&[
            "cp",
            "--sparse=always",
            &from.display().to_string(),
            &to.display().to_string(),
        ]),
        Duration::from_secs(600),
    )?;
    Ok(())
}

fn wait_migration(lab: &Lab, vm: &str, within: Duration) -> Result<(), LabError> {
    let deadline = Instant::now() + within;
    loop {
        let v = qmp::one(&lab.qmp_sock(vm), "query-migrate", None)?;
        match v.get("status").and_then(|s| s.as_str()) {
            Some("completed") => return Ok(()),
            Some("failed") | Some("cancelled") => {
                return Err(LabError::State(format!("migration of {vm} failed: {v}")))
            }
            _ if Instant::now() >= deadline => {
                return Err(LabError::State(format!(
                    "migration of {vm} did not finish in {within:?}"
                )))
            }
            _ => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// Saves the whole lab (every VM's memory and device state, the overlays
/// and the shelf) under `name`; the VMs are paused meanwhile and resumed.
pub fn snapshot(lab: &Lab, name: &str) -> Result<f64, LabError> {
    let t0 = Instant::now();
    let st = lab.state()?;
    let dir = snap_dir(lab, name)?;
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(io_err("mkdir", &dir))?;
    // Pause everything first so the shared shelf is consistent across VMs.
    for vm in st.vms.keys() {
        qmp::one(&lab.qmp_sock(vm), "stop", None)?;
    }
    let r = (|| {
        for vm in st.vms.keys() {
            let uri = format!("exec:cat > {}", dir.join(format!("{vm}.state")).display());
            qmp::one(&lab.qmp_sock(vm), "migrate", Some(json!({ "uri": uri })))?;
        }
        for vm in st.vms.keys() {
            wait_migration(lab, vm, Duration::from_secs(180))?;
        }
        for f in disk_files() {
            if lab.path(&f).is_file() {
                let to = dir.join(&f);
                if let Some(parent) = to.parent() {
                    fs::create_dir_all(parent).map_err(io_err("mkdir", parent))?;
                }
                copy_sparse(&lab.path(&f), &to)?;
            }
        }
        Ok::<(), LabError>(())
    })();
    // Resume whatever happened, then report.
    for vm in st.vms.keys() {
        if let Err(e) = qmp::one(&lab.qmp_sock(vm), "cont", None) {
            warn!("resume {vm}: {e}");
        }
    }
    r?;
    Ok(t0.elapsed().as_secs_f64())
}

/// Brings the whole lab back to snapshot `name`: new QEMUs load the saved
/// state, the disks are copied back, guest clocks are set to now.
pub fn restore(lab: &Lab, name: &str) -> Result<f64, LabError> {
    let t0 = Instant::now();
    let lock = lab.lock_state()?;
    let mut st = lab.state()?;
    let dir = snap_dir(lab, name)?;
    if !dir.join("A.state").is_file() {
        return Err(LabError::State(format!("no snapshot {name}")));
    }
    for vm in st.vms.values() {
        kill_pid(vm.pid, "-KILL");
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while st.vms.values().any(|v| pid_is_qemu(v.pid)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(100));
    }
    for f in disk_files() {
        if dir.join(&f).is_file() {
            copy_sparse(&dir.join(&f), &lab.path(&f))?;
        }
    }
    if st.tgtd.is_some() {
        let n = (0..8)
            .take_while(|i| lab.path(&format!("pr{i}.img")).is_file())
            .count();
        crate::prdisk::clear_registrations(&lab.run_dir, &st.ns, n)?;
    }
    let names: Vec<String> = st.vms.keys().cloned().collect();
    for vm in &names {
        let Some(rec) = st.vms.get(vm).cloned() else {
            continue;
        };
        let mut argv = rec.argv.clone();
        argv.push("-incoming".into());
        argv.push(format!(
            "exec:cat {}",
            dir.join(format!("{vm}.state")).display()
        ));
        let pid = start_vm(lab, vm, &argv)?;
        st.vms.insert(
            vm.clone(),
            VmState {
                pid,
                argv: rec.argv,
            },
        );
    }
    lab.save(&st)?;
    drop(lock);
    for vm in &names {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let s = qmp::one(&lab.qmp_sock(vm), "query-status", None)?;
            let status = s
                .get("status")
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_string();
            if status == "paused" || status == "running" || status == "postmigrate" {
                break;
            }
            if Instant::now() >= deadline {
                return Err(LabError::State(format!(
                    "{vm} did not load its snapshot ({status})"
                )));
            }
            thread::sleep(Duration::from_millis(200));
        }
    }
    for vm in &names {
        qmp::one(&lab.qmp_sock(vm), "cont", None)?;
    }
    // The guests' clocks stopped at the snapshot: set them to now.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    for vm in &names {
        let at = format!("@{now}");
        if let Err(e) = exec_ok(lab, vm, &["date", "-u", "-s", &at], Duration::from_secs(30)) {
            warn!("set clock of {vm}: {e}");
        }
    }
    Ok(t0.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_config_names_both_interconnect_links() {
        let a = vm_spec("A").unwrap();
        let b = vm_spec("b").unwrap();
        let t = duplex_toml(a, b);
        assert!(t.contains("controller_id = \"A\""));
        assert!(t.contains("[peer]\ncontroller_id = \"B\""));
        assert!(t.contains("listen = [\"10.51.0.1:7400\", \"10.52.0.1:7400\"]"));
        assert!(t.contains("addresses = [\"10.51.0.2:7400\", \"10.52.0.2:7400\"]"));
        assert!(t.contains("secret_file = \"/etc/duplex/cluster.secret\""));
    }

    #[test]
    fn heartbeat_section_names_three_disks_both_links_and_the_fence() {
        let a = vm_spec("A").unwrap();
        let b = vm_spec("B").unwrap();
        assert_eq!(
            heartbeat_toml(a, b),
            "[heartbeat]\n\
             disks = [\"/dev/disk/by-id/virtio-hb0\", \"/dev/disk/by-id/virtio-hb1\", \"/dev/disk/by-id/virtio-hb2\"]\n\
             links = [{ local = \"10.51.0.1:7790\", peer = \"10.51.0.2:7790\" }, { local = \"10.52.0.1:7790\", peer = \"10.52.0.2:7790\" }]\n\
             watchdog = \"/dev/watchdog\"\n\
             fence = [\"ipmi\"]\n\
             bmc_file = \"/etc/duplex/partner-bmc.toml\"\n\
             frontend = [\"fe0\"]\n\
             shelf = [\"/dev/disk/by-id/virtio-shelf0\", \"/dev/disk/by-id/virtio-shelf1\", \"/dev/disk/by-id/virtio-shelf2\", \"/dev/disk/by-id/virtio-shelf3\", \"/dev/disk/by-id/virtio-shelf4\", \"/dev/disk/by-id/virtio-shelf5\", \"/dev/disk/by-id/virtio-shelf6\", \"/dev/disk/by-id/virtio-shelf7\"]\n\
             hb_interval_ms = 200\n\
             ic_timeout_ms = 2000\n\
             disk_interval_ms = 300\n\
             suspect_timeout_ms = 2500\n\
             disk_timeout_ms = 15000\n\
             watchdog_timeout_ms = 10000\n"
        );
        // Off by default: the configuration parser denies unknown sections.
        assert!(!duplex_toml(a, b).contains("[heartbeat]"));
        // With a PR disk: fenced by scsi_pr after ipmi, and watched.
        let pr = heartbeat_toml_with(a, b, 1);
        let disk = "\"/dev/disk/by-id/scsi-SDUPLEXLB_PRSHELF0_prshelf0\"";
        assert!(pr.contains(&format!(
            "fence = [\"ipmi\", \"scsi_pr\"]\npr_disks = [{disk}]\nbmc_file"
        )));
        assert!(pr.contains(&format!("virtio-shelf7\", {disk}]\n")), "{pr}");
    }

    #[test]
    fn controllers_have_a_management_nic_and_the_host_none() {
        let mgmt = |v: &str| {
            vm_spec(v)
                .unwrap()
                .nics
                .iter()
                .find(|n| n.name == "mgmt0")
                .map(|n| n.addr)
        };
        assert_eq!(mgmt("A"), Some("10.53.0.1/24"));
        assert_eq!(mgmt("B"), Some("10.53.0.2/24"));
        assert_eq!(mgmt("H"), None);
        assert!(disk_files().contains(&"hb/hb2.img".to_string()));
    }

    #[test]
    fn ships_duplex_binaries_only() {
        assert!(shipped("duplex-router"));
        assert!(shipped("duplexctl"));
        assert!(shipped("duplex-lab-agent"));
        assert!(!shipped("duplex-lab"));
        assert!(!shipped("duplex-router.d"));
        assert!(!shipped("libduplex_lab.rlib"));
        assert!(vm_spec("X").is_err());
    }
}
