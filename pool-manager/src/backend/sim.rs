//! The simulator: an in-memory shelf of shared disks and the volume groups
//! on them, seen by any number of simulated controllers. It calls the same
//! validators as the service and refuses what LVM refuses (a foreign
//! system_id, a disk already in a VG, a missing LV, a name LVM reserves),
//! so tests on it fail where the real backend would.
//!
//! A shelf lives in memory, or in a file ([`SimShelf::in_file`]) so two
//! daemons (a simulated controller pair on one machine) share it: every
//! operation then reads it under an exclusive `flock(2)` and writes it back.

use super::{BackendError, PoolBackend, PoolSpec};
use crate::core::disk::DiskInfo;
use crate::core::dmvol::{self, DevNum, DmDevice, DmPlan, DmState};
use crate::core::layout::Layout;
use crate::core::names::{self, check_pool_name, check_volume_name};
use crate::core::observed::{ObservedPool, ObservedPv, ObservedThin, ObservedVolume};
use crate::core::thin::{check_volume_size, EXTENT};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Seek, Write};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimDisk {
    info: DiskInfo,
    seen_by: BTreeSet<String>,
    failed: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimLv {
    size: u64,
    origin: Option<String>,
    read_only: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimVg {
    system_id: String,
    layout: Layout,
    disks: Vec<String>,
    spares: Vec<String>,
    thin_size: u64,
    meta_size: u64,
    data_percent: f64,
    meta_percent: f64,
    sync_percent: f64,
    lvs: BTreeMap<String, SimLv>,
}

/// A map with tuple keys as a list of pairs (JSON keys are strings).
mod pairs {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<K: Serialize, V: Serialize, S: Serializer>(
        m: &BTreeMap<K, V>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(m.iter())
    }

    pub fn deserialize<'de, K, V, D>(d: D) -> Result<BTreeMap<K, V>, D::Error>
    where
        K: Deserialize<'de> + Ord,
        V: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Ok(Vec::<(K, V)>::deserialize(d)?.into_iter().collect())
    }
}

/// The shared state of a simulated shelf.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Shelf {
    disks: BTreeMap<String, SimDisk>,
    vgs: BTreeMap<String, SimVg>,
    /// (controller, pool) -> active LVs (the thin pool as `_dxthin`).
    #[serde(with = "pairs")]
    active: BTreeMap<(String, String), BTreeSet<String>>,
    /// Operations to fail once (by name), for rollback tests.
    fail: BTreeSet<String>,
    /// (controller, pool, LV) -> device minor of an active LV.
    #[serde(with = "pairs")]
    lv_minor: BTreeMap<(String, String, String), u32>,
    /// Last device minor handed out.
    last_minor: u32,
    /// controller -> per-volume devices by name.
    dm: BTreeMap<String, BTreeMap<String, SimDm>>,
    /// How long a full report (`observe`) takes, as LVM's do under load.
    report_delay: std::time::Duration,
}

fn insert_disk(sh: &mut Shelf, serial: &str, size: u64, seen_by: &[&str]) {
    let info = DiskInfo::virtio(serial, size);
    sh.disks.insert(
        info.path.clone(),
        SimDisk {
            info,
            seen_by: seen_by.iter().map(|s| s.to_string()).collect(),
            failed: false,
        },
    );
}

/// A simulated per-volume device-mapper device.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimDm {
    uuid: String,
    minor: u32,
    state: DmState,
    open: u32,
    /// Its path to the LV failed (an I/O error), not reinstated since.
    path_failed: bool,
}

/// Major number of every simulated device-mapper device.
const SIM_MAJOR: u32 = 253;

/// A handle on a shared simulated shelf.
#[derive(Debug, Clone, Default)]
pub struct SimShelf {
    mem: Arc<Mutex<Shelf>>,
    /// The file the shelf lives in when processes share it.
    file: Option<Arc<PathBuf>>,
    /// The file's generation this process's copy holds (0: none yet).
    generation: Arc<std::sync::atomic::AtomicU64>,
}

/// The locked shelf; a file-backed one is written back when dropped, if
/// it was changed.
pub struct ShelfGuard<'a> {
    mem: MutexGuard<'a, Shelf>,
    file: Option<nix::fcntl::Flock<std::fs::File>>,
    generation: &'a std::sync::atomic::AtomicU64,
    dirty: bool,
}

impl Deref for ShelfGuard<'_> {
    type Target = Shelf;
    fn deref(&self) -> &Shelf {
        &self.mem
    }
}

impl DerefMut for ShelfGuard<'_> {
    fn deref_mut(&mut self) -> &mut Shelf {
        self.dirty = true;
        &mut self.mem
    }
}

impl Drop for ShelfGuard<'_> {
    fn drop(&mut self) {
        let Some(f) = self.file.as_mut() else {
            return;
        };
        if !self.dirty {
            return;
        }
        use std::sync::atomic::Ordering;
        let generation = self
            .generation
            .load(Ordering::SeqCst)
            .wrapping_add(1)
            .max(1);
        let r = serde_json::to_vec(&*self.mem)
            .map_err(std::io::Error::other)
            .and_then(|text| {
                f.set_len(0)?;
                f.rewind()?;
                f.write_all(format!("{generation}\n").as_bytes())?;
                f.write_all(&text)
            });
        match r {
            Ok(()) => self.generation.store(generation, Ordering::SeqCst),
            Err(e) => {
                // A simulator: the next operation sees the older shelf.
                self.generation.store(0, Ordering::SeqCst);
                tracing::error!(error = %e, "cannot write the simulated shelf back");
            }
        }
    }
}

/// Blank disks of a [`SimShelf::with_shared_disks`] shelf, bytes.
const SHARED_DISK_BYTES: u64 = 2 << 30;

impl SimShelf {
    /// An empty shelf.
    pub fn new() -> SimShelf {
        SimShelf::default()
    }

    /// A shelf with `n` blank 2 GiB disks `shelf0..` seen by A and B.
    pub fn with_shared_disks(n: usize) -> SimShelf {
        let s = SimShelf::new();
        for i in 0..n {
            s.add_disk(&format!("shelf{i}"), SHARED_DISK_BYTES, &["A", "B"]);
        }
        s
    }

    /// The shelf kept in `path`, shared with every process that opens the
    /// same file; a new (empty) file gets `n` blank disks seen by A and B.
    pub fn in_file(path: &Path, n: usize) -> std::io::Result<SimShelf> {
        let s = SimShelf {
            mem: Arc::default(),
            file: Some(Arc::new(path.to_path_buf())),
            generation: Arc::default(),
        };
        let mut g = s.try_lock()?;
        if g.disks.is_empty() && g.vgs.is_empty() {
            for i in 0..n {
                insert_disk(&mut g, &format!("shelf{i}"), SHARED_DISK_BYTES, &["A", "B"]);
            }
        }
        drop(g);
        Ok(s)
    }

    /// Locks the shelf (and its file, reading what other processes wrote).
    fn try_lock(&self) -> std::io::Result<ShelfGuard<'_>> {
        // A panic while holding the lock poisons it; the data is still the
        // simulator's best knowledge, so keep going.
        let mut mem = self
            .mem
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(path) = self.file.as_deref() else {
            return Ok(self.guard(mem, None));
        };
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        let f = nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| std::io::Error::from(e))?;
        // The file starts with its generation: when it is the one this
        // process read or wrote last, its copy is current and the (large)
        // rest need not be parsed again.
        let mut r = std::io::BufReader::new(&*f);
        let mut first = String::new();
        std::io::BufRead::read_line(&mut r, &mut first)?;
        let head = first.trim_end();
        let generation = if !head.is_empty() && head.bytes().all(|b| b.is_ascii_digit()) {
            let g = head.parse::<u64>().unwrap_or(0);
            first.clear();
            g
        } else {
            0 // a file without one: read it whole
        };
        use std::sync::atomic::Ordering;
        if generation == 0 || generation != self.generation.load(Ordering::SeqCst) {
            let mut body = first;
            r.read_to_string(&mut body)?;
            if !body.trim().is_empty() {
                *mem = serde_json::from_str(&body).map_err(std::io::Error::other)?;
            }
        }
        self.generation.store(generation, Ordering::SeqCst);
        Ok(self.guard(mem, Some(f)))
    }

    fn guard<'a>(
        &'a self,
        mem: MutexGuard<'a, Shelf>,
        file: Option<nix::fcntl::Flock<std::fs::File>>,
    ) -> ShelfGuard<'a> {
        ShelfGuard {
            mem,
            file,
            generation: &self.generation,
            dirty: false,
        }
    }

    fn lock(&self) -> ShelfGuard<'_> {
        match self.try_lock() {
            Ok(g) => g,
            Err(e) => {
                // Only a file-backed shelf fails here; go on with what this
                // process saw last rather than stop the simulated daemon.
                tracing::error!(error = %e, "cannot read the simulated shelf's file");
                self.guard(
                    self.mem
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner),
                    None,
                )
            }
        }
    }

    /// Adds a disk seen by `seen_by`.
    pub fn add_disk(&self, serial: &str, size: u64, seen_by: &[&str]) {
        insert_disk(&mut self.lock(), serial, size, seen_by);
    }

    /// Puts a signature on a disk (as if it held a filesystem).
    pub fn set_signature(&self, serial: &str, sig: &str) {
        if let Some(d) = self
            .lock()
            .disks
            .values_mut()
            .find(|d| d.info.serial == serial)
        {
            d.info.signature = Some(sig.into());
        }
    }

    /// Pulls a disk out (it fails for both controllers).
    pub fn fail_disk(&self, serial: &str) {
        if let Some(d) = self
            .lock()
            .disks
            .values_mut()
            .find(|d| d.info.serial == serial)
        {
            d.failed = true;
        }
    }

    /// Sets the thin pool usage of a pool.
    pub fn set_usage(&self, pool: &str, data: f64, meta: f64) {
        if let Some(vg) = self.lock().vgs.get_mut(pool) {
            vg.data_percent = data;
            vg.meta_percent = meta;
        }
    }

    /// Sets the RAID sync progress of a pool.
    pub fn set_sync(&self, pool: &str, percent: f64) {
        if let Some(vg) = self.lock().vgs.get_mut(pool) {
            vg.sync_percent = percent;
        }
    }

    /// Makes every full report (`observe`) take `d`, as LVM's reports do
    /// on a loaded controller.
    pub fn set_report_delay(&self, d: std::time::Duration) {
        self.lock().report_delay = d;
    }

    /// Makes the next call of `op` (a backend method name) fail once.
    pub fn fail_next(&self, op: &str) {
        self.lock().fail.insert(op.into());
    }

    /// Whether `controller` has anything of `pool` active.
    pub fn is_active(&self, controller: &str, pool: &str) -> bool {
        self.lock()
            .active
            .get(&(controller.to_string(), pool.to_string()))
            .is_some_and(|s| !s.is_empty())
    }

    /// The simulated backend of controller `me` on this shelf.
    pub fn backend(&self, me: &str) -> SimBackend {
        SimBackend {
            me: me.into(),
            shelf: self.clone(),
        }
    }
}

/// One controller's view of a [`SimShelf`].
#[derive(Debug, Clone)]
pub struct SimBackend {
    me: String,
    shelf: SimShelf,
}

fn refused(s: impl Into<String>) -> BackendError {
    BackendError::Refused(s.into())
}

impl SimBackend {
    /// Locks the shelf for operation `op`, failing it if a test asked for
    /// that (`SimShelf::fail_next`).
    fn begin(&self, op: &str) -> Result<ShelfGuard<'_>, BackendError> {
        let mut sh = self.shelf.lock();
        if sh.fail.remove(op) {
            return Err(refused(format!("simulated failure of {op}")));
        }
        Ok(sh)
    }

    /// The VG of `pool`, refusing a foreign one as LVM does.
    fn own_vg<'a>(&self, sh: &'a mut Shelf, pool: &str) -> Result<&'a mut SimVg, BackendError> {
        let vg = sh.vgs.get_mut(pool).ok_or_else(|| {
            refused(format!(
                "Volume group \"{}\" not found",
                names::vg_name(pool)
            ))
        })?;
        if vg.system_id != self.me {
            return Err(refused(format!(
                "Cannot access VG {} with system ID {} with local system ID {}.",
                names::vg_name(pool),
                vg.system_id,
                self.me
            )));
        }
        Ok(vg)
    }

    fn activate(&self, sh: &mut Shelf, pool: &str, lv: &str) {
        let key = (self.me.clone(), pool.to_string(), lv.to_string());
        if !sh.lv_minor.contains_key(&key) {
            sh.last_minor += 1;
            let m = sh.last_minor;
            sh.lv_minor.insert(key, m);
        }
        sh.active
            .entry((self.me.clone(), pool.to_string()))
            .or_default()
            .insert(lv.to_string());
    }
}

impl SimBackend {
    /// The per-volume devices here whose table holds an LV of
    /// `pool` (`lv`: one LV, or any) open, as the kernel reports a holder.
    fn holders(sh: &Shelf, me: &str, pool: &str, lv: Option<&str>) -> Vec<String> {
        let held: BTreeSet<u32> = sh
            .lv_minor
            .iter()
            .filter(|((c, p, l), _)| c == me && p == pool && lv.is_none_or(|x| x == l))
            .map(|(_, m)| *m)
            .collect();
        sh.dm
            .get(me)
            .map(|devs| {
                devs.iter()
                    .filter(|(_, d)| {
                        d.state
                            .table
                            .lv()
                            .is_some_and(|dev| dev.major == SIM_MAJOR && held.contains(&dev.minor))
                    })
                    .map(|(n, _)| n.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn forget_lvs(sh: &mut Shelf, me: &str, pool: &str, lv: Option<&str>) {
        sh.lv_minor
            .retain(|(c, p, l), _| !(c == me && p == pool && lv.is_none_or(|x| x == l)));
    }

    /// The kernel's checks on a table: a target over an LV needs an
    /// existing device, and a writable table over a read-only LV is refused.
    fn check_table(sh: &Shelf, me: &str, name: &str, st: &DmState) -> Result<(), BackendError> {
        if let Some(dev) = st.table.lv() {
            let lv = sh
                .lv_minor
                .iter()
                .find(|((c, _, _), m)| c == me && dev.major == SIM_MAJOR && **m == dev.minor)
                .map(|((_, p, l), _)| (p.clone(), l.clone()));
            let Some((pool, lv)) = lv else {
                return Err(refused(format!("{name}: device {dev} not found")));
            };
            let ro = sh
                .vgs
                .get(&pool)
                .and_then(|vg| vg.lvs.get(&lv))
                .is_some_and(|l| l.read_only);
            if ro && !st.read_only {
                return Err(refused(format!(
                    "{name}: device {dev} is read-only (Permission denied)"
                )));
            }
        }
        Ok(())
    }
}

impl SimShelf {
    /// The table of a per-volume device on `controller`, by serial.
    pub fn dm_table(&self, controller: &str, serial: &str) -> Option<DmState> {
        self.lock()
            .dm
            .get(controller)
            .and_then(|d| d.get(&dmvol::dm_name(serial)))
            .map(|d| d.state)
    }

    /// An I/O error on the path of a volume's device on `controller` (the
    /// controller lost the shelf for a moment): true when the device maps
    /// an LV, whose path is then failed until reinstated or reloaded.
    pub fn fail_path(&self, controller: &str, serial: &str) -> bool {
        let mut sh = self.lock();
        let Some(d) = sh
            .dm
            .get_mut(controller)
            .and_then(|d| d.get_mut(&dmvol::dm_name(serial)))
        else {
            return false;
        };
        d.path_failed = d.state.table.maps_lv();
        d.path_failed
    }

    /// True when the device of volume `serial` on `controller` has a
    /// failed path.
    pub fn path_failed(&self, controller: &str, serial: &str) -> bool {
        self.lock()
            .dm
            .get(controller)
            .and_then(|d| d.get(&dmvol::dm_name(serial)))
            .is_some_and(|d| d.path_failed)
    }

    /// A reboot of `controller`: device-mapper forgets everything (the
    /// per-volume devices and every active LV).
    pub fn reboot(&self, controller: &str) {
        let mut sh = self.lock();
        sh.dm.remove(controller);
        sh.active.retain(|(c, _), _| c != controller);
        sh.lv_minor.retain(|(c, _, _), _| c != controller);
    }

    /// Opens (`true`) or closes a per-volume device on `controller`, as
    /// targets' backstore does.
    pub fn hold_dm(&self, controller: &str, serial: &str, open: bool) {
        if let Some(d) = self
            .lock()
            .dm
            .get_mut(controller)
            .and_then(|d| d.get_mut(&dmvol::dm_name(serial)))
        {
            if open {
                d.open += 1;
            } else {
                d.open = d.open.saturating_sub(1);
            }
        }
    }
}

impl PoolBackend for SimBackend {
    async fn discover(&self) -> Result<Vec<DiskInfo>, BackendError> {
        let sh = self.shelf.lock();
        let mut out = Vec::new();
        for d in sh
            .disks
            .values()
            .filter(|d| d.seen_by.contains(&self.me) && !d.failed)
        {
            let mut info = d.info.clone();
            if let Some((pool, _)) = sh
                .vgs
                .iter()
                .find(|(_, vg)| vg.disks.contains(&info.path) || vg.spares.contains(&info.path))
            {
                info.vg = Some(names::vg_name(pool));
                info.signature = Some("LVM2_member".into());
            }
            out.push(info);
        }
        Ok(out)
    }

    async fn system_id(&self, pool: &str) -> Result<Option<String>, BackendError> {
        Ok(self
            .observe()
            .await?
            .into_iter()
            .find(|p| p.pool == pool)
            .map(|p| p.system_id))
    }

    async fn observe(&self) -> Result<Vec<ObservedPool>, BackendError> {
        let delay = self.shelf.lock().report_delay;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let sh = self.shelf.lock();
        let mut out = Vec::new();
        for (pool, vg) in &sh.vgs {
            let visible = vg.disks.iter().chain(vg.spares.iter()).any(|p| {
                sh.disks
                    .get(p)
                    .is_some_and(|d| d.seen_by.contains(&self.me))
            });
            if !visible {
                continue;
            }
            let active = sh
                .active
                .get(&(self.me.clone(), pool.clone()))
                .cloned()
                .unwrap_or_default();
            let mut pvs = Vec::new();
            for (p, spare) in vg
                .disks
                .iter()
                .map(|p| (p, false))
                .chain(vg.spares.iter().map(|p| (p, true)))
            {
                let d = sh.disks.get(p);
                let failed = d.is_none_or(|d| d.failed);
                pvs.push(ObservedPv {
                    path: if failed {
                        "[unknown]".into()
                    } else {
                        p.clone()
                    },
                    size: d.map_or(0, |d| d.info.size),
                    free: if spare {
                        d.map_or(0, |d| d.info.size)
                    } else {
                        0
                    },
                    missing: failed,
                    spare,
                });
            }
            let size: u64 = pvs.iter().map(|p| p.size).sum();
            let free: u64 = pvs.iter().map(|p| p.free).sum();
            out.push(ObservedPool {
                pool: pool.clone(),
                system_id: vg.system_id.clone(),
                size,
                free,
                thin: Some(ObservedThin {
                    size: vg.thin_size,
                    data_percent: vg.data_percent,
                    meta_size: vg.meta_size,
                    meta_percent: vg.meta_percent,
                    active: active.contains(names::THIN_POOL_LV),
                }),
                layout: Some(vg.layout),
                raid_health: if pvs.iter().any(|p| p.missing && !p.spare) {
                    "partial".into()
                } else {
                    String::new()
                },
                sync_percent: (vg.layout.fault_tolerance() > 0).then_some(vg.sync_percent),
                pvs,
                volumes: vg
                    .lvs
                    .iter()
                    .map(|(n, lv)| ObservedVolume {
                        name: n.clone(),
                        size: lv.size,
                        active: active.contains(n),
                        origin: lv.origin.clone(),
                        read_only: lv.read_only,
                    })
                    .collect(),
            });
        }
        Ok(out)
    }

    async fn create_pool(&self, spec: &PoolSpec) -> Result<(), BackendError> {
        check_pool_name("name", &spec.pool)?;
        spec.layout.check_disks("disks", spec.disks.len())?;
        let mut sh = self.begin("create_pool")?;
        if let Some(vg) = sh.vgs.get(&spec.pool) {
            if vg.system_id != self.me {
                return Err(refused(format!(
                    "volume group {} exists with system_id {:?}",
                    names::vg_name(&spec.pool),
                    vg.system_id
                )));
            }
            self.activate(&mut sh, &spec.pool, names::THIN_POOL_LV);
            return Ok(());
        }
        let mut raw = Vec::new();
        for p in spec.disks.iter().chain(spec.spares.iter()) {
            let d = sh
                .disks
                .get(p)
                .filter(|d| d.seen_by.contains(&self.me) && !d.failed)
                .ok_or_else(|| refused(format!("Cannot use {p}: device not found")))?;
            if d.info.signature.is_some() && !spec.wipe {
                return Err(refused(format!("Cannot use {p}: device has a signature")));
            }
            if sh
                .vgs
                .values()
                .any(|vg| vg.disks.contains(p) || vg.spares.contains(p))
            {
                return Err(refused(format!(
                    "Physical volume '{p}' is already in a volume group"
                )));
            }
            if spec.disks.contains(p) {
                raw.push(d.info.size);
            }
        }
        let smallest = raw.iter().copied().min().unwrap_or(0);
        let n = spec.layout.disks_used(spec.disks.len());
        let usable = (smallest / EXTENT * EXTENT) as f64
            * n as f64
            * spec.layout.capacity_fraction(spec.disks.len());
        let meta = spec.meta_size * (spec.layout.fault_tolerance() as u64 + 1);
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let thin_size = (usable as u64).saturating_sub(meta) / EXTENT * EXTENT;
        for p in spec.disks.iter().chain(spec.spares.iter()) {
            if let Some(d) = sh.disks.get_mut(p) {
                d.info.signature = None;
                d.info.partitions.clear();
            }
        }
        sh.vgs.insert(
            spec.pool.clone(),
            SimVg {
                system_id: self.me.clone(),
                layout: spec.layout,
                disks: spec.disks.clone(),
                spares: spec.spares.clone(),
                thin_size,
                meta_size: spec.meta_size,
                data_percent: 0.0,
                meta_percent: 1.0,
                sync_percent: 100.0,
                lvs: BTreeMap::new(),
            },
        );
        self.activate(&mut sh, &spec.pool, names::THIN_POOL_LV);
        Ok(())
    }

    async fn remove_pool(&self, pool: &str) -> Result<(), BackendError> {
        let mut sh = self.begin("remove_pool")?;
        if !sh.vgs.contains_key(pool) {
            return Ok(());
        }
        self.own_vg(&mut sh, pool)?;
        sh.vgs.remove(pool);
        sh.active.remove(&(self.me.clone(), pool.to_string()));
        Self::forget_lvs(&mut sh, &self.me, pool, None);
        Ok(())
    }

    async fn activate_pool(&self, pool: &str) -> Result<(), BackendError> {
        let mut sh = self.begin("activate_pool")?;
        let lvs: Vec<String> = self.own_vg(&mut sh, pool)?.lvs.keys().cloned().collect();
        self.activate(&mut sh, pool, names::THIN_POOL_LV);
        for lv in lvs {
            self.activate(&mut sh, pool, &lv);
        }
        Ok(())
    }

    async fn deactivate_pool(&self, pool: &str) -> Result<(), BackendError> {
        let mut sh = self.begin("deactivate_pool")?;
        let held = Self::holders(&sh, &self.me, pool, None);
        if !held.is_empty() {
            return Err(refused(format!(
                "Logical volumes of {} in use by {held:?}",
                names::vg_name(pool)
            )));
        }
        sh.active.remove(&(self.me.clone(), pool.to_string()));
        Self::forget_lvs(&mut sh, &self.me, pool, None);
        Ok(())
    }

    async fn dm_leftovers(&self, pool: &str) -> Result<Vec<String>, BackendError> {
        let sh = self.begin("dm_leftovers")?;
        let vg = names::vg_name(pool);
        Ok(sh
            .active
            .get(&(self.me.clone(), pool.to_string()))
            .map(|s| s.iter().map(|lv| names::dm_name(&vg, lv)).collect())
            .unwrap_or_default())
    }

    async fn active_pools(&self) -> Result<Vec<String>, BackendError> {
        let sh = self.shelf.lock();
        Ok(sh
            .active
            .iter()
            .filter(|((c, _), s)| *c == self.me && !s.is_empty())
            .map(|((_, p), _)| p.clone())
            .collect())
    }

    async fn take_over(&self, pool: &str, from: &str) -> Result<(), BackendError> {
        let mut sh = self.begin("take_over")?;
        let me = self.me.clone();
        let vg = sh.vgs.get_mut(pool).ok_or_else(|| {
            refused(format!(
                "Volume group \"{}\" not found",
                names::vg_name(pool)
            ))
        })?;
        if vg.system_id != me && vg.system_id != from {
            return Err(refused(format!(
                "Cannot access VG {} with system ID {}",
                names::vg_name(pool),
                vg.system_id
            )));
        }
        vg.system_id = me;
        Ok(())
    }

    async fn hand_over(&self, pool: &str, to: &str) -> Result<(), BackendError> {
        let mut sh = self.begin("hand_over")?;
        if sh
            .active
            .get(&(self.me.clone(), pool.to_string()))
            .is_some_and(|s| !s.is_empty())
        {
            return Err(refused(format!("pool {pool} is still active here")));
        }
        self.own_vg(&mut sh, pool)?.system_id = to.to_string();
        Ok(())
    }

    async fn create_volume(&self, pool: &str, name: &str, size: u64) -> Result<(), BackendError> {
        check_volume_name("name", pool, name)?;
        check_volume_size("size", size)?;
        let mut sh = self.begin("create_volume")?;
        let vg = self.own_vg(&mut sh, pool)?;
        match vg.lvs.get(name) {
            Some(lv) if lv.origin.is_some() || lv.size != size => {
                return Err(refused(format!(
                    "Logical Volume \"{name}\" already exists in volume group"
                )))
            }
            Some(_) => {}
            None => {
                vg.lvs.insert(
                    name.into(),
                    SimLv {
                        size,
                        origin: None,
                        read_only: false,
                    },
                );
            }
        }
        self.activate(&mut sh, pool, name);
        Ok(())
    }

    async fn resize_volume(&self, pool: &str, name: &str, size: u64) -> Result<(), BackendError> {
        let mut sh = self.begin("resize_volume")?;
        let vg = self.own_vg(&mut sh, pool)?;
        let lv = vg
            .lvs
            .get_mut(name)
            .ok_or_else(|| refused(format!("volume {pool}/{name} does not exist")))?;
        lv.size = lv.size.max(size);
        Ok(())
    }

    async fn delete_volume(&self, pool: &str, name: &str) -> Result<(), BackendError> {
        let mut sh = self.begin("delete_volume")?;
        let held = Self::holders(&sh, &self.me, pool, Some(name));
        if !held.is_empty() {
            return Err(refused(format!(
                "Logical volume {}/{name} in use by {held:?}",
                names::vg_name(pool)
            )));
        }
        Self::forget_lvs(&mut sh, &self.me, pool, Some(name));
        let vg = self.own_vg(&mut sh, pool)?;
        vg.lvs.remove(name);
        if let Some(a) = sh.active.get_mut(&(self.me.clone(), pool.to_string())) {
            a.remove(name);
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
        check_volume_name("name", pool, name)?;
        let mut sh = self.begin("snapshot")?;
        let vg = self.own_vg(&mut sh, pool)?;
        let size = vg
            .lvs
            .get(origin)
            .map(|o| o.size)
            .ok_or_else(|| refused(format!("Failed to find logical volume \"{origin}\"")))?;
        if !vg.lvs.contains_key(name) {
            vg.lvs.insert(
                name.into(),
                SimLv {
                    size,
                    origin: Some(origin.into()),
                    read_only,
                },
            );
        }
        self.activate(&mut sh, pool, name);
        Ok(())
    }

    async fn activate_volume(&self, pool: &str, name: &str) -> Result<(), BackendError> {
        let mut sh = self.begin("activate_volume")?;
        let vg = self.own_vg(&mut sh, pool)?;
        if !vg.lvs.contains_key(name) {
            return Err(refused(format!("Failed to find logical volume \"{name}\"")));
        }
        self.activate(&mut sh, pool, name);
        Ok(())
    }

    async fn repair(&self, pool: &str) -> Result<(), BackendError> {
        let mut sh = self.begin("repair")?;
        let failed: BTreeSet<String> = sh
            .disks
            .iter()
            .filter(|(_, d)| d.failed)
            .map(|(p, _)| p.clone())
            .collect();
        let vg = self.own_vg(&mut sh, pool)?;
        let broken: Vec<String> = vg
            .disks
            .iter()
            .filter(|p| failed.contains(*p))
            .cloned()
            .collect();
        if broken.len() > vg.layout.fault_tolerance() {
            return Err(refused("too many failed disks for the layout; data lost"));
        }
        for b in broken {
            let Some(spare) = vg.spares.iter().position(|s| !failed.contains(s)) else {
                return Err(refused(
                    "Insufficient free space: no spare disk to rebuild onto",
                ));
            };
            let s = vg.spares.remove(spare);
            vg.disks.retain(|d| *d != b);
            vg.disks.push(s);
            vg.sync_percent = 0.0;
        }
        Ok(())
    }

    async fn dm_devices(&self) -> Result<Vec<DmDevice>, BackendError> {
        let sh = self.shelf.lock();
        let mut out = Vec::new();
        for ((c, pool, lv), minor) in &sh.lv_minor {
            if *c != self.me {
                continue;
            }
            let vg = sh.vgs.get(pool);
            let l = vg.and_then(|vg| vg.lvs.get(lv));
            let sectors =
                l.map_or_else(|| vg.map_or(0, |v| v.thin_size), |l| l.size) / dmvol::SECTOR;
            out.push(DmDevice {
                name: names::dm_name(&names::vg_name(pool), lv),
                uuid: format!("LVM-sim{pool}{lv}"),
                dev: DevNum {
                    major: SIM_MAJOR,
                    minor: *minor,
                },
                live: true,
                suspended: false,
                read_only: l.is_some_and(|l| l.read_only),
                open: 0,
                table: vec![format!("0 {sectors} thin {SIM_MAJOR}:0 {minor}")],
            });
        }
        for (name, d) in sh.dm.get(&self.me).into_iter().flatten() {
            out.push(DmDevice {
                name: name.clone(),
                uuid: d.uuid.clone(),
                dev: DevNum {
                    major: SIM_MAJOR,
                    minor: d.minor,
                },
                live: true,
                suspended: false,
                read_only: d.state.read_only,
                open: d.open,
                table: vec![d.state.table.line()],
            });
        }
        Ok(out)
    }

    async fn dm_apply(&self, plan: &DmPlan) -> Result<Vec<String>, BackendError> {
        let mut sh = self.begin("dm_apply")?;
        for c in &plan.create {
            if sh.dm.get(&self.me).is_some_and(|d| d.contains_key(&c.name)) {
                return Err(refused(format!(
                    "device-mapper: create ioctl on {} failed: Device or resource busy",
                    c.name
                )));
            }
            Self::check_table(&sh, &self.me, &c.name, &c.state)?;
            sh.last_minor += 1;
            let minor = sh.last_minor;
            sh.dm.entry(self.me.clone()).or_default().insert(
                c.name.clone(),
                SimDm {
                    uuid: c.uuid.clone(),
                    minor,
                    state: c.state,
                    open: 0,
                    path_failed: false,
                },
            );
        }
        for r in &plan.reload {
            Self::check_table(&sh, &self.me, &r.name, &r.state)?;
            let d = sh
                .dm
                .get_mut(&self.me)
                .and_then(|d| d.get_mut(&r.name))
                .ok_or_else(|| refused(format!("Device {} not found", r.name)))?;
            d.state = r.state;
            // A new table has new paths.
            d.path_failed = false;
        }
        let mut left = Vec::new();
        let devs = sh.dm.entry(self.me.clone()).or_default();
        for n in &plan.remove {
            match devs.get(n) {
                Some(d) if d.open > 0 => left.push(n.clone()),
                _ => {
                    devs.remove(n);
                }
            }
        }
        Ok(left)
    }

    async fn dm_failed_paths(&self) -> Result<Vec<dmvol::FailedPath>, BackendError> {
        let sh = self.shelf.lock();
        Ok(sh
            .dm
            .get(&self.me)
            .into_iter()
            .flatten()
            .filter(|(_, d)| d.path_failed)
            .filter_map(|(n, d)| {
                Some(dmvol::FailedPath {
                    name: n.clone(),
                    dev: d.state.table.lv()?,
                })
            })
            .collect())
    }

    async fn dm_reinstate(&self, paths: &[dmvol::FailedPath]) -> Result<(), BackendError> {
        let mut sh = self.begin("dm_reinstate")?;
        let devs = sh.dm.entry(self.me.clone()).or_default();
        for p in paths {
            if let Some(d) = devs.get_mut(&p.name) {
                if d.state.table.lv() == Some(p.dev) {
                    d.path_failed = false;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test: a panic is the failure report
    use super::*;

    #[tokio::test]
    async fn a_shelf_in_a_file_is_one_shelf_for_every_process() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shelf.json");
        // Two handles stand for the two controllers' daemons.
        let a = SimShelf::in_file(&path, 3).unwrap();
        let b = SimShelf::in_file(&path, 3).unwrap();
        let disk = DiskInfo::virtio("shelf0", 0).path;
        let spec = PoolSpec {
            pool: "p1".into(),
            layout: Layout::Linear,
            disks: vec![disk],
            spares: vec![],
            wipe: false,
            meta_size: 64 << 20,
        };
        a.backend("A").create_pool(&spec).await.unwrap();
        let seen = b.backend("B").observe().await.unwrap();
        let p = seen.iter().find(|p| p.pool == "p1").unwrap();
        assert_eq!(p.system_id, "A");
        // The second open found the disks and added none.
        assert_eq!(b.backend("B").discover().await.unwrap().len(), 3);
        // B cannot use A's pool, as LVM refuses a foreign system_id.
        assert!(b.backend("B").remove_pool("p1").await.is_err());
        // A later process (a restart) opens the same shelf.
        let again = SimShelf::in_file(&path, 3).unwrap();
        assert!(again.is_active("A", "p1"));
    }
}
