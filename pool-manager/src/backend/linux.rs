//! The LVM backend: LVM tools with `--reportformat json`, `lsblk --json`,
//! `/dev/disk/by-id` and sysfs, all through `duplex_services::exec` (absolute
//! paths, cleared environment, argument vectors, timeouts); device-mapper
//! directly through its control device ([`super::dm_ioctl`]).
//!
//! Every LVM command carries `--config` with this controller's system_id
//! (so the result does not depend on the host's lvm.conf) and with the
//! devices file off (the shared disks are not listed in it on a fresh
//! controller). Volume groups are created with `--setautoactivation n`:
//! udev must never activate a pool, pool-manager owns activation.

use super::dm_ioctl::{Control, DmError, Target, UNSYNCED_REMOVE_COOKIE, UNSYNCED_RESUME_COOKIE};
use super::lvm::{self, LSBLK_COLUMNS, LV_FIELDS, PV_FIELDS, SPARE_TAG, VG_FIELDS};
use super::{BackendError, PoolBackend, PoolSpec};
use crate::core::disk::DiskInfo;
use crate::core::dmvol::{self, Create, DmDevice, DmPlan, DmState, Reload};
use crate::core::names::{self, split_dm_name, vg_name, THIN_META_LV, THIN_POOL_LV, VG_PREFIX};
use crate::core::observed::ObservedPool;
use crate::core::thin::EXTENT;
use duplex_services::exec::Cmd;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

/// The LVM multi-call binary.
pub const LVM: &str = "/usr/sbin/lvm";
/// util-linux lsblk.
pub const LSBLK: &str = "/usr/bin/lsblk";
/// util-linux wipefs.
pub const WIPEFS: &str = "/usr/sbin/wipefs";
/// udev's tool.
pub const UDEVADM: &str = "/usr/bin/udevadm";
/// Where device-mapper device nodes live.
const MAPPER_DIR: &str = "/dev/mapper";

/// The udev rules the appliance installs (shipped in `systemd/`) so that
/// udev neither probes Duplex's volume devices nor starts helper processes
/// for pool-manager's unsynchronised device-mapper events. Without them
/// everything works, but each device event costs several processes.
pub const UDEV_RULES: [&str; 2] = ["54-duplex-dm-cookie.rules", "55-duplex-volumes.rules"];
/// Where udev looks for rules.
const UDEV_RULE_DIRS: [&str; 3] = [
    "/etc/udev/rules.d",
    "/run/udev/rules.d",
    "/usr/lib/udev/rules.d",
];

/// Device-mapper operations in flight at once (threads, each doing its
/// share of the devices one after the other). Much of each operation is
/// the kernel waiting for an RCU grace period, which concurrent operations
/// share.
const DM_PARALLEL: usize = 16;

/// Short LVM commands (reports, single LV changes).
const SHORT: Duration = Duration::from_secs(120);
/// Commands touching every LV of a pool (activation of hundreds of volumes
/// under emulation takes minutes).
const LONG: Duration = Duration::from_secs(900);

/// The LVM backend of one controller.
#[derive(Debug, Clone)]
pub struct LinuxBackend {
    me: String,
    config: String,
}

impl LinuxBackend {
    /// A backend stamping `me` as system_id. Fails when a tool is missing,
    /// at start rather than at the first request.
    pub fn new(me: &str) -> Result<LinuxBackend, BackendError> {
        for tool in [LVM, LSBLK, WIPEFS, UDEVADM] {
            if !Path::new(tool).exists() {
                return Err(BackendError::Refused(format!(
                    "{tool} is missing; install lvm2, udev and util-linux"
                )));
            }
        }
        for rule in UDEV_RULES {
            if !UDEV_RULE_DIRS
                .iter()
                .any(|d| Path::new(d).join(rule).exists())
            {
                tracing::warn!(
                    rule,
                    "udev rule not installed: takeovers of large pools will be slow"
                );
            }
        }
        Ok(LinuxBackend {
            me: me.to_string(),
            config: lvm_config(me, None),
        })
    }

    fn lvm(&self, sub: &str) -> Cmd {
        Cmd::new(LVM)
            .arg(sub)
            .arg("--config")
            .arg(&self.config)
            .timeout(SHORT)
    }

    async fn report(
        &self,
        sub: &str,
        fields: &str,
        extra: &[&str],
    ) -> Result<String, BackendError> {
        let out = self
            .lvm(sub)
            .args([
                "--foreign",
                "--reportformat",
                "json",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                fields,
            ])
            .args(extra.iter().copied())
            .run()
            .await?;
        Ok(out.stdout)
    }

    async fn lv_exists(&self, pool: &str, lv: &str) -> Result<Option<u64>, BackendError> {
        let vg = vg_name(pool);
        let out = self.report("lvs", LV_FIELDS, &[&vg]).await?;
        let rows = lvm::parse_lvs(&out)?;
        match rows.iter().find(|r| r.lv_name == lv) {
            Some(r) => Ok(Some(r.lv_size.trim().parse().map_err(|_| {
                lvm::ParseError::Number {
                    what: "lvs",
                    field: "lv_size",
                    value: r.lv_size.clone(),
                }
            })?)),
            None => Ok(None),
        }
    }

    /// Activates the thin pool with LVM (its sub-LVs, the metadata check),
    /// then every thin LV not active yet, built as LVM builds them
    /// ([`dmvol::thin_activation`]) and created in this process
    /// ([`create_devices`]). Returns how many were created.
    async fn activate_thin_batch(&self, pool: &str) -> Result<usize, BackendError> {
        let vg = vg_name(pool);
        let t = std::time::Instant::now();
        self.lvm("lvchange")
            .args(["--activate", "y", "--ignoreactivationskip"])
            .arg(format!("{vg}/{THIN_POOL_LV}"))
            .timeout(LONG)
            .run()
            .await?;
        let pool_ms = t.elapsed().as_millis();
        let out = self.report("lvs", lvm::THIN_FIELDS, &[&vg]).await?;
        let (vg_uuid, lvs) = lvm::parse_thin_lvs(&out, THIN_POOL_LV)?;
        let vg_uuid =
            vg_uuid.ok_or_else(|| BackendError::Refused(format!("no LV of {vg} in the report")))?;
        if lvs.is_empty() {
            return Ok(0);
        }
        let report_ms = t.elapsed().as_millis();
        let devs = self.dm_devices().await?;
        let observe_ms = t.elapsed().as_millis();
        // With thin LVs active LVM stacks the pool as `-tpool` under a
        // read-only wrapper; a pool activated alone may carry the
        // thin-pool table under its own name.
        let tpool_name = names::tpool_dm_name(&vg, THIN_POOL_LV);
        let pool_name = names::dm_name(&vg, THIN_POOL_LV);
        let is_pool_target = |d: &DmDevice| d.target_type() == Some("thin-pool");
        let tpool = devs
            .iter()
            .filter(|d| d.live && !d.suspended)
            .find(|d| d.name == tpool_name || (d.name == pool_name && is_pool_target(d)))
            .filter(|d| is_pool_target(d))
            .map(|d| d.dev)
            .ok_or_else(|| BackendError::Refused(format!("{tpool_name} is not active")))?;
        let creates = dmvol::thin_activation(&vg, &vg_uuid, tpool, &lvs, &devs);
        // Several at once: the kernel waits for an RCU grace period in
        // every thin device's constructor, and concurrent constructors
        // share their waits (measured in the lab: 24 ms per device one at
        // a time, mostly idle).
        let batch = creates.clone();
        dm_blocking(LONG, move || create_devices(&batch)).await?;
        // Where the time goes, cumulative from the start (benchmarks read it).
        tracing::info!(
            pool,
            thin_lvs = creates.len(),
            pool_ms,
            report_ms,
            observe_ms,
            create_ms = t.elapsed().as_millis(),
            "thin LVs created"
        );
        if !creates.is_empty() {
            // The /dev/<vg>/<lv> links udev would have made, in one
            // command, in the background: nothing in Duplex needs them
            // (the per-volume devices map LVs by device number, and
            // create_devices made the /dev/mapper nodes), so the activation
            // does not wait for them, and a failure is only logged. LVM's
            // VG lock orders it with later LVM commands. The LVs are named:
            // given the whole VG, vgmknodes also processes the thin pool,
            // fails on it and exits 5 (seen in the lab).
            let lvs = creates
                .iter()
                .filter_map(|c| split_dm_name(&c.name))
                .map(|(v, lv)| format!("{v}/{lv}"));
            let links = self.lvm("vgmknodes").args(lvs).timeout(LONG);
            let pool = pool.to_string();
            let task = async move {
                if let Err(e) = links.run().await {
                    tracing::warn!(pool, error = %e, "vgmknodes failed; /dev/{vg}/<lv> links may be missing");
                }
            };
            // In the caller's span, so the log keeps its action_id.
            tokio::spawn(tracing::Instrument::instrument(
                task,
                tracing::Span::current(),
            ));
        }
        Ok(creates.len())
    }
}

/// Every device-mapper device's name.
fn dm_names() -> Result<Vec<String>, BackendError> {
    Ok(Control::open()?.list()?)
}

/// Runs device-mapper work on a blocking thread, in the caller's span (so
/// its log lines keep the action_id), under `limit`. A timed-out call is
/// reported; its thread cannot be stopped (neither could a process blocked
/// in the kernel: a suspend waits for I/O in flight).
async fn dm_blocking<T: Send + 'static>(
    limit: Duration,
    f: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    let span = tracing::Span::current();
    let task = tokio::task::spawn_blocking(move || span.in_scope(f));
    // The timeout, then the task, then the work itself.
    tokio::time::timeout(limit, task)
        .await
        .map_err(|_| BackendError::DmTimeout(limit))??
}

/// Every device-mapper device: one listing, then one status per device (a
/// device removed in between is simply gone).
fn observe_dm() -> Result<Vec<DmDevice>, BackendError> {
    let dm = Control::open()?;
    let mut out = Vec::new();
    for name in dm.list()? {
        if let Some(d) = dm.status(&name)? {
            out.push(d);
        }
    }
    Ok(out)
}

/// The per-volume devices with a failed path: one listing, then one
/// status per `dxvol-` device whose status is multipath's.
fn failed_paths() -> Result<Vec<dmvol::FailedPath>, BackendError> {
    let dm = Control::open()?;
    let mut out = Vec::new();
    for name in dm.list()? {
        if !name.starts_with(dmvol::NAME_PREFIX) {
            continue;
        }
        let Some(d) = dm.target_status(&name)? else {
            continue;
        };
        for line in &d.table {
            out.extend(
                dmvol::failed_paths(line)
                    .into_iter()
                    .map(|dev| dmvol::FailedPath {
                        name: name.clone(),
                        dev,
                    }),
            );
        }
    }
    Ok(out)
}

/// Reinstates each path; a device gone or reloaded since (`ENXIO`, or
/// `EINVAL` for a path no longer in its table) is skipped.
fn reinstate(paths: &[dmvol::FailedPath]) -> Result<(), BackendError> {
    let dm = Control::open()?;
    for p in paths {
        match dm.message(&p.name, &format!("reinstate_path {}", p.dev)) {
            Ok(()) => {}
            Err(e) if matches!(e.errno(), Some(libc::ENXIO | libc::EINVAL)) => {
                tracing::debug!(device = %p.name, error = %e, "path not reinstated: the device changed");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Creates devices with their tables, [`DM_PARALLEL`] at a time: create,
/// load, resume (with the cookie udev's shipped rule expects), then the
/// `/dev/mapper` node, as libdm does without udev. A device whose table
/// the kernel refuses is removed again, so a failure leaves nothing
/// half-made. The first error is returned, after every device was tried.
fn create_devices(creates: &[Create]) -> Result<(), BackendError> {
    let dm = Control::open()?;
    let done = par_map(creates, |c| -> Result<(), BackendError> {
        let (major, minor) = dm.create(&c.name, &c.uuid)?;
        let table =
            load(&dm, &c.name, &c.state).and_then(|()| dm.resume(&c.name, UNSYNCED_RESUME_COOKIE));
        if let Err(e) = table {
            // New and never opened: nothing can hold it.
            let undo = dm.remove(&c.name, UNSYNCED_REMOVE_COOKIE);
            return Err(match undo {
                Ok(()) => e.into(),
                Err(u) => BackendError::Refused(format!(
                    "{}: {e}; and removing the half-made device failed: {u}",
                    c.name
                )),
            });
        }
        make_node(&c.name, major, minor)
    });
    done.into_iter().find_map(Result::err).map_or(Ok(()), Err)
}

/// Loads `state` as the inactive table of `name`: one target over the
/// whole device.
fn load(dm: &Control, name: &str, state: &DmState) -> Result<(), DmError> {
    let (kind, params) = state.table.target();
    let target = Target {
        start: 0,
        sectors: state.table.sectors(),
        kind,
        params,
    };
    dm.load(name, &[target], state.read_only)
}

/// Removes devices and their `/dev/mapper` nodes, [`DM_PARALLEL`] at a
/// time. A device that is already gone counts as removed; one still open
/// (or refused otherwise) is left, logged and returned.
fn remove_devices(names: &[String]) -> Result<Vec<String>, BackendError> {
    let dm = Control::open()?;
    let done = par_map(names, |n| dm.remove(n, UNSYNCED_REMOVE_COOKIE));
    let mut left = Vec::new();
    for (name, r) in names.iter().zip(done) {
        match r {
            Ok(()) => remove_node(name)?,
            Err(e) if e.errno() == Some(libc::ENXIO) => remove_node(name)?,
            Err(e) => {
                tracing::warn!(device = %name, error = %e, "device not removed (still open?); left to the next reconcile");
                left.push(name.clone());
            }
        }
    }
    Ok(left)
}

/// Makes `/dev/mapper/<name>` the block node of (major, minor), replacing
/// a stale node of that name; a node made meanwhile by someone else (LVM's
/// `vgmknodes`) is accepted when it is the right one.
fn make_node(name: &str, major: u32, minor: u32) -> Result<(), BackendError> {
    let path = Path::new(MAPPER_DIR).join(name);
    let io = |source: std::io::Error| BackendError::Io {
        path: path.display().to_string(),
        source,
    };
    let rdev = libc::makedev(major, minor);
    let right = |m: &std::fs::Metadata| m.file_type().is_block_device() && m.rdev() == rdev;
    match std::fs::symlink_metadata(&path) {
        Ok(m) if right(&m) => return Ok(()),
        Ok(_) => remove_node(name)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    use nix::sys::stat::{mknod, Mode, SFlag};
    match mknod(&path, SFlag::S_IFBLK, Mode::S_IRUSR | Mode::S_IWUSR, rdev) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EEXIST) => match std::fs::symlink_metadata(&path) {
            Ok(m) if right(&m) => Ok(()),
            Ok(_) => Err(io(std::io::Error::from_raw_os_error(libc::EEXIST))),
            Err(e) => Err(io(e)),
        },
        Err(e) => Err(io(std::io::Error::from(e))),
    }
}

/// After LVs of `vg` were deactivated: removes the `/dev/mapper` nodes of
/// its LVs whose device is gone, and `/dev/<vg>` links to nothing. LVM
/// leaves those nodes, because it relies on udev to remove nodes and udev
/// never made the ones [`create_devices`] made; a stale node would name
/// whatever device later gets its number. Failures are logged: the
/// deactivation itself succeeded.
fn prune_nodes(vg: &str) {
    let pruned = (|| -> Result<usize, BackendError> {
        let live: std::collections::BTreeSet<String> = dm_names()?.into_iter().collect();
        let rd = std::fs::read_dir(MAPPER_DIR).map_err(|source| BackendError::Io {
            path: MAPPER_DIR.into(),
            source,
        })?;
        let mut n = 0;
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let ours = split_dm_name(&name).is_some_and(|(v, _)| v == vg);
            // Only nodes (as create_devices makes them); a udev symlink
            // is udev's to remove.
            let node = e.file_type().is_ok_and(|t| t.is_block_device());
            if ours && node && !live.contains(&name) {
                remove_node(&name)?;
                n += 1;
            }
        }
        // The /dev/<vg>/<lv> links of LVs deactivated outside LVM (see
        // deactivate_pool) now point nowhere; the directory goes once
        // empty, as LVM would remove it.
        let dir = Path::new("/dev").join(vg);
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                let link = e.file_type().is_ok_and(|t| t.is_symlink());
                if link && !e.path().exists() {
                    std::fs::remove_file(e.path()).map_err(|source| BackendError::Io {
                        path: e.path().display().to_string(),
                        source,
                    })?;
                    n += 1;
                }
            }
            // Fails harmlessly while links remain.
            let _ = std::fs::remove_dir(&dir);
        }
        Ok(n)
    })();
    match pruned {
        Ok(0) => {}
        Ok(n) => tracing::debug!(vg, nodes = n, "stale /dev/mapper nodes removed"),
        Err(e) => tracing::warn!(vg, error = %e, "stale /dev/mapper nodes not removed"),
    }
}

/// Removes `/dev/mapper/<name>` if it is there.
fn remove_node(name: &str) -> Result<(), BackendError> {
    let path = Path::new(MAPPER_DIR).join(name);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BackendError::Io {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Swaps tables: every inactive table first, then every suspend, then
/// every resume, so the time with I/O held is short. Suspend flushes: I/O
/// in flight to an LV completes there before the table changes. Whatever
/// was suspended is resumed even when a later step fails, so a failure
/// never leaves a volume's I/O frozen; the first error is returned.
fn swap_tables(reload: &[Reload], resume: &[String]) -> Result<(), BackendError> {
    let dm = Control::open()?;
    let loaded = par_map(reload, |r| load(&dm, &r.name, &r.state));
    // Nothing is suspended yet: a failed load changes nothing live.
    if let Some(e) = loaded.into_iter().find_map(Result::err) {
        return Err(e.into());
    }
    let mut first_error = None;
    let mut to_resume = Vec::with_capacity(reload.len() + resume.len());
    for (r, done) in reload.iter().zip(par_map(reload, |r| dm.suspend(&r.name))) {
        match done {
            Ok(()) => to_resume.push(r.name.clone()),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    to_resume.extend(resume.iter().cloned());
    for (name, done) in to_resume.iter().zip(par_map(&to_resume, |n| {
        dm.resume(n, UNSYNCED_RESUME_COOKIE)
    })) {
        if let Err(e) = done {
            tracing::error!(device = %name, error = %e, "resume failed; the device stays suspended until the next reconcile");
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// `f` over every item from up to [`DM_PARALLEL`] threads, results in
/// the items' order. A panicking `f` panics the caller.
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let per = items.len().div_ceil(DM_PARALLEL).max(1);
    std::thread::scope(|s| {
        let workers: Vec<_> = items
            .chunks(per)
            .map(|chunk| s.spawn(|| chunk.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    })
}

/// The `--config` string: our system_id, no devices file, Duplex's own
/// volume devices outside LVM's device scan ([`lvm_global_filter`]);
/// `extra_foreign` accepts one other system_id for a takeover.
pub fn lvm_config(me: &str, extra_foreign: Option<&str>) -> String {
    let mut s = format!(
        "global/system_id_source=\"lvmlocal\" local/system_id=\"{me}\" devices/use_devicesfile=0 {}",
        lvm_global_filter()
    );
    if let Some(f) = extra_foreign.filter(|f| !f.is_empty()) {
        s.push_str(&format!(" local/extra_system_ids=[\"{f}\"]"));
    }
    s
}

/// LVM's device filter for pool-manager's commands: reject the per-volume
/// devices (`/dev/mapper/dxvol-*`), the LVs of Duplex pools
/// (`/dev/mapper/dx--*`) and their `/dev/dx-<pool>/` links. They hold the
/// hosts' data, never one of our PVs: a host's own LVM signature inside a
/// volume (or twice, in a volume and its snapshot) must not show up in
/// pool-manager's view. And every LVM command examines every device it
/// scans: measured in the lab with 503 volumes, the partner's error
/// devices alone made one `vgs` take over a minute. A device is rejected
/// when one of its names matches and none is accepted, so `/dev/dm-N`
/// does not let it back in.
pub fn lvm_global_filter() -> String {
    let lv_prefix = VG_PREFIX.replace('-', "--");
    format!(
        "devices/global_filter=[\"r|^/dev/mapper/{}|\",\"r|^/dev/mapper/{lv_prefix}|\",\"r|^/dev/{VG_PREFIX}|\"]",
        dmvol::NAME_PREFIX
    )
}

/// Maps kernel names to the preferred stable path under `/dev/disk/by-id`.
fn by_id_map() -> Result<BTreeMap<String, String>, BackendError> {
    let dir = "/dev/disk/by-id";
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(source) => {
            return Err(BackendError::Io {
                path: dir.into(),
                source,
            })
        }
    };
    let rank = |n: &str| -> usize {
        [
            "wwn-", "nvme-eui", "nvme-", "scsi-3", "scsi-", "virtio-", "ata-",
        ]
        .iter()
        .position(|p| n.starts_with(p))
        .unwrap_or(99)
    };
    let mut best: BTreeMap<String, (usize, String)> = BTreeMap::new();
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        if name.contains("-part") {
            continue;
        }
        let Ok(target) = std::fs::read_link(e.path()) else {
            continue;
        };
        let Some(kernel) = target.file_name().map(|k| k.to_string_lossy().to_string()) else {
            continue;
        };
        let r = rank(&name);
        let path = format!("{dir}/{name}");
        match best.get(&kernel) {
            Some((br, _)) if *br <= r => {}
            _ => {
                best.insert(kernel, (r, path));
            }
        }
    }
    Ok(best.into_iter().map(|(k, (_, p))| (k, p)).collect())
}

impl PoolBackend for LinuxBackend {
    async fn discover(&self) -> Result<Vec<DiskInfo>, BackendError> {
        let by_id = by_id_map()?;
        let pvs = lvm::parse_pvs(&self.report("pvs", PV_FIELDS, &[]).await?)?;
        let pv_vgs: BTreeMap<String, String> =
            pvs.into_iter().map(|p| (p.pv_name, p.vg_name)).collect();
        let out = Cmd::new(LSBLK)
            .args(["--json", "--bytes", "-o", LSBLK_COLUMNS])
            .timeout(SHORT)
            .run()
            .await?;
        let mut disks = lvm::parse_lsblk(&out.stdout, &by_id, &pv_vgs)?;
        for d in disks
            .iter_mut()
            .filter(|d| d.mountpoints.is_empty() && d.holders.is_empty())
        {
            // Probe the disk itself: lsblk's FSTYPE is udev's cached view.
            // If the probe fails, lsblk's answer stands (a stale signature
            // refuses the disk, which is the safe side).
            let dev = format!("/dev/{}", d.kernel_name);
            match Cmd::new(WIPEFS)
                .args(["--no-act", "--json", &dev])
                .timeout(SHORT)
                .run()
                .await
            {
                Ok(o) => match lvm::parse_wipefs(&o.stdout) {
                    Ok(sig) => d.signature = sig,
                    Err(e) => {
                        tracing::warn!(disk = %d.path, error = %e, "wipefs output unreadable")
                    }
                },
                Err(e) => tracing::warn!(disk = %d.path, error = %e, "wipefs probe failed"),
            }
        }
        Ok(disks)
    }

    async fn system_id(&self, pool: &str) -> Result<Option<String>, BackendError> {
        // Every VG, not `vgs <vg>`: a VG no disk here carries is an answer
        // (None), not a failed command.
        let vgs = lvm::parse_vgs(
            &self
                .report("vgs", "vg_name,vg_systemid,vg_size,vg_free", &[])
                .await?,
        )?;
        let vg = vg_name(pool);
        Ok(vgs
            .into_iter()
            .find(|v| v.vg_name == vg)
            .map(|v| v.vg_systemid))
    }

    async fn observe(&self) -> Result<Vec<ObservedPool>, BackendError> {
        let vgs = lvm::parse_vgs(&self.report("vgs", VG_FIELDS, &[]).await?)?;
        if !vgs.iter().any(|v| names::pool_of_vg(&v.vg_name).is_some()) {
            return Ok(Vec::new());
        }
        let pvs = lvm::parse_pvs(&self.report("pvs", PV_FIELDS, &[]).await?)?;
        let lvs = lvm::parse_lvs(&self.report("lvs", LV_FIELDS, &["-a"]).await?)?;
        Ok(lvm::observe(&vgs, &pvs, &lvs)?)
    }

    async fn create_pool(&self, spec: &PoolSpec) -> Result<(), BackendError> {
        let vg = vg_name(&spec.pool);
        let existing = self.observe().await?;
        let have = existing.iter().find(|p| p.pool == spec.pool);
        if let Some(p) = have {
            if p.system_id != self.me {
                return Err(BackendError::Refused(format!(
                    "volume group {vg} exists with system_id {:?}",
                    p.system_id
                )));
            }
        }
        let all: Vec<&String> = spec.disks.iter().chain(spec.spares.iter()).collect();
        if have.is_none() {
            if spec.wipe {
                for d in &all {
                    Cmd::new(WIPEFS)
                        .args(["--all", "--force"])
                        .arg(d.as_str())
                        .timeout(SHORT)
                        .run()
                        .await?;
                }
            }
            // 16 MiB metadata areas: LVM rewrites the whole VG metadata on
            // every change and keeps it in a ring buffer; the default 1 MiB
            // overflows with a few thousand volumes and snapshots.
            self.lvm("pvcreate")
                .args(["-y", "--force", "--metadatasize", "16m"])
                .args(all.iter().map(|d| d.as_str()))
                .run()
                .await?;
            self.lvm("vgcreate")
                .args(["-y", "--setautoactivation", "n", "--physicalextentsize"])
                .arg(format!("{}b", EXTENT))
                .arg(&vg)
                .args(all.iter().map(|d| d.as_str()))
                .run()
                .await?;
            if !spec.spares.is_empty() {
                self.lvm("pvchange")
                    .args(["--addtag", SPARE_TAG])
                    .args(spec.spares.iter().map(String::as_str))
                    .run()
                    .await?;
            }
        }
        let have_thin = have.is_some_and(|p| p.thin.is_some());
        if !have_thin {
            let lvs = lvm::parse_lvs(&self.report("lvs", LV_FIELDS, &["-a", &vg]).await?)?;
            let exists = |n: &str| lvs.iter().any(|l| l.lv_name == n);
            if !exists(THIN_META_LV) {
                self.lvm("lvcreate")
                    .arg("-y")
                    .args(spec.layout.meta_lv_args())
                    .arg("--size")
                    .arg(format!("{}b", spec.meta_size))
                    .args(["--name", THIN_META_LV, &vg])
                    .args(spec.disks.iter().map(String::as_str))
                    .run()
                    .await?;
            }
            if !exists(THIN_POOL_LV) {
                self.lvm("lvcreate")
                    .arg("-y")
                    .args(spec.layout.data_lv_args(spec.disks.len()))
                    .args(["--extents", "100%PVS", "--name", THIN_POOL_LV, &vg])
                    .args(spec.disks.iter().map(String::as_str))
                    .timeout(LONG)
                    .run()
                    .await?;
            }
            // No pool metadata spare: the metadata LV is mirrored as far as
            // the layout tolerates failures, and the spares are for RAID.
            self.lvm("lvconvert")
                .args(["-y", "--type", "thin-pool", "--poolmetadata"])
                .arg(format!("{vg}/{THIN_META_LV}"))
                .args(["--poolmetadataspare", "n", "--chunksize", "64k"])
                .arg(format!("{vg}/{THIN_POOL_LV}"))
                .timeout(LONG)
                .run()
                .await?;
        }
        self.activate_pool(&spec.pool).await
    }

    async fn remove_pool(&self, pool: &str) -> Result<(), BackendError> {
        let vg = vg_name(pool);
        let existing = self.observe().await?;
        let Some(p) = existing.iter().find(|p| p.pool == pool) else {
            return Ok(());
        };
        if p.system_id != self.me {
            return Err(BackendError::Refused(format!(
                "volume group {vg} has system_id {:?}, not ours",
                p.system_id
            )));
        }
        self.lvm("vgchange")
            .args(["-an", &vg])
            .timeout(LONG)
            .run()
            .await?;
        prune_nodes(&vg);
        self.lvm("vgremove")
            .args(["-y", "--force", &vg])
            .timeout(LONG)
            .run()
            .await?;
        let paths: Vec<&str> = p
            .pvs
            .iter()
            .filter(|x| !x.missing)
            .map(|x| x.path.as_str())
            .collect();
        if !paths.is_empty() {
            self.lvm("pvremove")
                .args(["-y", "--force"])
                .args(paths)
                .run()
                .await?;
        }
        Ok(())
    }

    async fn activate_pool(&self, pool: &str) -> Result<(), BackendError> {
        match self.activate_thin_batch(pool).await {
            Ok(n) => {
                tracing::info!(pool, thin_lvs = n, "pool activated (thin LVs in one batch)");
                Ok(())
            }
            Err(e) => {
                // LVM's own activation is the reference; the batch is only
                // faster. Whatever it left, vgchange completes.
                tracing::warn!(pool, error = %e, "batched activation failed; activating with vgchange");
                self.lvm("vgchange")
                    .args(["--activate", "y", "--ignoreactivationskip"])
                    .arg(vg_name(pool))
                    .timeout(LONG)
                    .run()
                    .await?;
                Ok(())
            }
        }
    }

    async fn deactivate_pool(&self, pool: &str) -> Result<(), BackendError> {
        let vg = vg_name(pool);
        // The thin LVs first, in this process and several at once: LVM
        // deactivates one LV after the other (about 0.1 s each under
        // emulation), and each thin device's destructor waits for an RCU
        // grace period, which concurrent removals share. LVM then finds
        // them inactive; whatever is left (an LV still open, the pool and
        // its sub-LVs) is LVM's, which fails as it always did on a busy LV.
        let t = std::time::Instant::now();
        // First let udev catch up with the events of these devices (an
        // export right after an activation finds hundreds queued): an event
        // udev reaches after its device is gone cannot be matched to a
        // Duplex device by the shipped rules and costs dm's rules helper
        // processes, which LVM's own deactivation then waits behind.
        if let Err(e) = Cmd::new(UDEVADM)
            .args(["settle", "--timeout=120"])
            .timeout(SHORT)
            .run()
            .await
        {
            tracing::warn!(pool, error = %e, "udev did not settle; deactivating anyway");
        }
        let settle_ms = t.elapsed().as_millis();
        let thin: Vec<String> = self
            .dm_devices()
            .await?
            .into_iter()
            .filter(|d| {
                d.uuid.starts_with("LVM-")
                    && split_dm_name(&d.name).is_some_and(|(v, _)| v == vg)
                    && d.table.len() == 1
                    && d.target_type() == Some("thin")
            })
            .map(|d| d.name)
            .collect();
        let count = thin.len();
        let left = dm_blocking(LONG, move || remove_devices(&thin)).await?;
        let thin_ms = t.elapsed().as_millis();
        self.lvm("vgchange")
            .args(["--activate", "n"])
            .arg(&vg)
            .timeout(LONG)
            .run()
            .await?;
        prune_nodes(&vg);
        // Where the time goes (benchmarks read it).
        tracing::info!(
            pool,
            thin_lvs = count,
            left = left.len(),
            settle_ms,
            thin_ms,
            total_ms = t.elapsed().as_millis(),
            "pool deactivated"
        );
        Ok(())
    }

    async fn dm_leftovers(&self, pool: &str) -> Result<Vec<String>, BackendError> {
        let vg = vg_name(pool);
        Ok(dm_names()?
            .into_iter()
            .filter(|n| split_dm_name(n).is_some_and(|(v, _)| v == vg))
            .collect())
    }

    async fn active_pools(&self) -> Result<Vec<String>, BackendError> {
        let mut out: Vec<String> = dm_names()?
            .iter()
            .filter_map(|n| split_dm_name(n))
            .filter_map(|(vg, _)| names::pool_of_vg(&vg).map(str::to_string))
            .collect();
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn take_over(&self, pool: &str, from: &str) -> Result<(), BackendError> {
        Cmd::new(LVM)
            .arg("vgchange")
            .arg("--config")
            .arg(lvm_config(&self.me, Some(from)))
            .args(["-y", "--systemid", &self.me])
            .arg(vg_name(pool))
            .timeout(SHORT)
            .run()
            .await?;
        Ok(())
    }

    async fn hand_over(&self, pool: &str, to: &str) -> Result<(), BackendError> {
        self.lvm("vgchange")
            .args(["-y", "--systemid", to])
            .arg(vg_name(pool))
            .run()
            .await?;
        Ok(())
    }

    async fn create_volume(&self, pool: &str, name: &str, size: u64) -> Result<(), BackendError> {
        let vg = vg_name(pool);
        if self.lv_exists(pool, name).await?.is_none() {
            self.lvm("lvcreate")
                .args(["-y", "--thin"])
                .arg(format!("{vg}/{THIN_POOL_LV}"))
                .arg("--virtualsize")
                .arg(format!("{size}b"))
                .args(["--name", name])
                .run()
                .await?;
        }
        self.activate_volume(pool, name).await
    }

    async fn resize_volume(&self, pool: &str, name: &str, size: u64) -> Result<(), BackendError> {
        let Some(now) = self.lv_exists(pool, name).await? else {
            return Err(BackendError::Refused(format!(
                "volume {pool}/{name} does not exist"
            )));
        };
        if now < size {
            self.lvm("lvextend")
                .args(["-y", "--size"])
                .arg(format!("{size}b"))
                .arg(format!("{}/{name}", vg_name(pool)))
                .run()
                .await?;
        }
        Ok(())
    }

    async fn delete_volume(&self, pool: &str, name: &str) -> Result<(), BackendError> {
        if self.lv_exists(pool, name).await?.is_some() {
            self.lvm("lvremove")
                .args(["-y"])
                .arg(format!("{}/{name}", vg_name(pool)))
                .run()
                .await?;
            prune_nodes(&vg_name(pool));
        }
        Ok(())
    }

    async fn snapshot(
        &self,
        pool: &str,
        origin: &str,
        name: &str,
        read_only: bool,
    ) -> Result<(), BackendError> {
        let vg = vg_name(pool);
        if self.lv_exists(pool, name).await?.is_none() {
            let mut c = self.lvm("lvcreate").args([
                "-y",
                "--snapshot",
                "--setactivationskip",
                "n",
                "--name",
                name,
            ]);
            if read_only {
                c = c.args(["--permission", "r"]);
            }
            c.arg(format!("{vg}/{origin}")).run().await?;
        }
        self.activate_volume(pool, name).await
    }

    async fn activate_volume(&self, pool: &str, name: &str) -> Result<(), BackendError> {
        self.lvm("lvchange")
            .args(["--activate", "y", "--ignoreactivationskip"])
            .arg(format!("{}/{name}", vg_name(pool)))
            .run()
            .await?;
        Ok(())
    }

    async fn repair(&self, pool: &str) -> Result<(), BackendError> {
        let vg = vg_name(pool);
        let observed = self.observe().await?;
        let Some(p) = observed.into_iter().find(|p| p.pool == pool) else {
            return Err(BackendError::Refused(format!("pool {pool} not found")));
        };
        let spares: Vec<String> = p
            .pvs
            .iter()
            .filter(|x| x.spare && !x.missing)
            .map(|x| x.path.clone())
            .collect();
        for sub in [
            format!("{THIN_POOL_LV}_tdata"),
            format!("{THIN_POOL_LV}_tmeta"),
        ] {
            self.lvm("lvconvert")
                .args(["-y", "--repair"])
                .arg(format!("{vg}/{sub}"))
                .args(spares.iter().map(String::as_str))
                .timeout(LONG)
                .run()
                .await?;
        }
        self.lvm("vgreduce")
            .args(["--removemissing", &vg])
            .run()
            .await?;
        // A spare that received images is a data disk now.
        let pvs = lvm::parse_pvs(&self.report("pvs", PV_FIELDS, &[]).await?)?;
        for pv in pvs.iter().filter(|x| {
            x.vg_name == vg
                && x.pv_tags.split(',').any(|t| t == SPARE_TAG)
                && x.pv_free != x.pv_size
        }) {
            self.lvm("pvchange")
                .args(["--deltag", SPARE_TAG, &pv.pv_name])
                .run()
                .await?;
        }
        Ok(())
    }

    async fn dm_devices(&self) -> Result<Vec<DmDevice>, BackendError> {
        dm_blocking(SHORT, observe_dm).await
    }

    async fn dm_apply(&self, plan: &DmPlan) -> Result<Vec<String>, BackendError> {
        let plan = plan.clone();
        dm_blocking(LONG, move || {
            create_devices(&plan.create)?;
            // Swaps and resumes: every load, then every suspend, then every
            // resume.
            if !plan.reload.is_empty() || !plan.resume.is_empty() {
                swap_tables(&plan.reload, &plan.resume)?;
            }
            remove_devices(&plan.remove)
        })
        .await
    }

    async fn dm_failed_paths(&self) -> Result<Vec<dmvol::FailedPath>, BackendError> {
        dm_blocking(SHORT, failed_paths).await
    }

    async fn dm_reinstate(&self, paths: &[dmvol::FailedPath]) -> Result<(), BackendError> {
        let paths = paths.to_vec();
        dm_blocking(SHORT, move || reinstate(&paths)).await
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn par_map_keeps_order_and_covers_every_item() {
        let items: Vec<u32> = (0..103).collect();
        let out = super::par_map(&items, |i| i * 2);
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert!(super::par_map(&[] as &[u32], |i| *i).is_empty());
        assert_eq!(super::par_map(&[7u32], |i| *i), vec![7]);
    }

    use super::*;

    /// The rules the backend names are the ones shipped, and they match the
    /// devices by the prefixes the code gives them.
    #[test]
    fn shipped_udev_rules_match_our_devices() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../systemd");
        let uuid = format!("{}*", dmvol::UUID_PREFIX);
        // Every VG of ours starts with VG_PREFIX, whose '-' LVM doubles in
        // device-mapper names.
        let thin = format!("{}*", names::VG_PREFIX.replace('-', "--"));
        assert_eq!(names::dm_name("dx-p", "v"), "dx--p-v");
        for rule in UDEV_RULES {
            let text = std::fs::read_to_string(dir.join(rule)).expect("shipped rule");
            assert!(
                text.contains(&format!("ATTR{{dm/uuid}}==\"{uuid}\"")),
                "{rule}"
            );
            assert!(
                text.contains(&format!("ATTR{{dm/name}}==\"{thin}\"")),
                "{rule}"
            );
        }
    }

    #[test]
    fn config_string() {
        assert_eq!(
            lvm_config("A", None),
            "global/system_id_source=\"lvmlocal\" local/system_id=\"A\" devices/use_devicesfile=0 \
             devices/global_filter=[\"r|^/dev/mapper/dxvol-|\",\"r|^/dev/mapper/dx--|\",\"r|^/dev/dx-|\"]"
        );
        assert!(lvm_config("B", Some("A")).ends_with("local/extra_system_ids=[\"A\"]"));
    }
}
