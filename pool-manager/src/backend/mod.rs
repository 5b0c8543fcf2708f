//! The edge between pool-manager and the storage stack: the [`PoolBackend`]
//! trait, its LVM implementation ([`linux`]) and the simulator ([`sim`]).
//!
//! Every method states what holds after it returns and is safe to call
//! again: calling it twice is the same as calling it once.

pub mod dm_ioctl;
pub mod linux;
pub mod lvm;
pub mod sim;

use crate::core::disk::DiskInfo;
use crate::core::dmvol::{DmDevice, DmPlan, FailedPath};
use crate::core::layout::Layout;
use crate::core::observed::ObservedPool;
use crate::core::Invalid;
use duplex_services::exec::ExecError;
use std::future::Future;

/// Why a backend call failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// An external tool failed (command, status and output inside).
    #[error("external command failed")]
    Exec(#[from] ExecError),
    /// A tool printed something we could not understand.
    #[error("unexpected tool output")]
    Parse(#[from] lvm::ParseError),
    /// A device-mapper ioctl failed.
    #[error("device-mapper call failed")]
    Dm(#[from] dm_ioctl::DmError),
    /// A task running device-mapper work panicked or was cancelled.
    #[error("device-mapper task failed")]
    Task(#[from] tokio::task::JoinError),
    /// A device-mapper batch did not finish in time (the kernel may still
    /// be working on it: a suspend waits for I/O in flight).
    #[error("device-mapper batch did not finish in {0:?}")]
    DmTimeout(std::time::Duration),
    /// Reading sysfs or `/dev` failed.
    #[error("cannot read {path}")]
    Io {
        /// What was read.
        path: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The request was refused by the same validators the service uses.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// The storage stack refused (what LVM would refuse: a foreign VG, a
    /// missing LV...).
    #[error("{0}")]
    Refused(String),
}

/// What `create_pool` builds.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolSpec {
    /// Pool name.
    pub pool: String,
    /// Data layout.
    pub layout: Layout,
    /// Disks carrying the data (stable paths).
    pub disks: Vec<String>,
    /// Hot spares (stable paths), in the VG but unused until a rebuild.
    pub spares: Vec<String>,
    /// Erase signatures and partitions first.
    pub wipe: bool,
    /// Thin metadata size in bytes.
    pub meta_size: u64,
}

/// What a backend operation returns: a future of its result that may move
/// between threads.
pub trait Reply<T>: Future<Output = Result<T, BackendError>> + Send {}

impl<T, F: Future<Output = Result<T, BackendError>> + Send> Reply<T> for F {}

/// The storage stack below pool-manager.
pub trait PoolBackend: Send + Sync + 'static {
    /// Lists this controller's disks with their identity and use.
    fn discover(&self) -> impl Reply<Vec<DiskInfo>>;

    /// Lists every pool (`dx-` VG) this controller sees, foreign ones too.
    fn observe(&self) -> impl Reply<Vec<ObservedPool>>;

    /// The system_id of one pool's VG as seen here (`""` when it has none),
    /// or `None` when no disk here carries it: what a takeover must know
    /// before it rewrites the system_id, for one LVM report instead of the
    /// three of [`PoolBackend::observe`] (a takeover's hosts wait on it).
    fn system_id(&self, pool: &str) -> impl Reply<Option<String>>;

    /// Ensures the pool exists with our system_id, its thin pool built on
    /// `spec.disks` with `spec.layout`, and is active here.
    fn create_pool(&self, spec: &PoolSpec) -> impl Reply<()>;

    /// Ensures the pool no longer exists and its disks carry no LVM label
    /// (the rollback of a failed create; only for pools without volumes).
    fn remove_pool(&self, pool: &str) -> impl Reply<()>;

    /// Ensures the thin pool and every volume of a pool carrying our
    /// system_id are active here. LVM itself refuses a foreign system_id.
    fn activate_pool(&self, pool: &str) -> impl Reply<()>;

    /// Ensures nothing of the pool is active here.
    fn deactivate_pool(&self, pool: &str) -> impl Reply<()>;

    /// Device-mapper devices of the pool still present here (after an
    /// export this must be empty).
    fn dm_leftovers(&self, pool: &str) -> impl Reply<Vec<String>>;

    /// Pools with anything active here, read from device-mapper (cheap; the
    /// partner asks this before an import).
    fn active_pools(&self) -> impl Reply<Vec<String>>;

    /// Ensures the pool's system_id is ours, whatever it was (`from` is the
    /// id found, accepted as foreign for this one command).
    fn take_over(&self, pool: &str, from: &str) -> impl Reply<()>;

    /// Ensures the pool's system_id is `to` (a giveback after the export:
    /// the pool is inactive here and `to` is recorded as its owner).
    fn hand_over(&self, pool: &str, to: &str) -> impl Reply<()>;

    /// Ensures a thin volume `name` of `size` bytes exists and is active.
    fn create_volume(&self, pool: &str, name: &str, size: u64) -> impl Reply<()>;

    /// Ensures the volume is at least `size` bytes.
    fn resize_volume(&self, pool: &str, name: &str, size: u64) -> impl Reply<()>;

    /// Ensures the volume does not exist.
    fn delete_volume(&self, pool: &str, name: &str) -> impl Reply<()>;

    /// Ensures `name` exists as a thin snapshot of `origin` (read-only or
    /// writable: a clone is a writable snapshot) and is active.
    fn snapshot(&self, pool: &str, origin: &str, name: &str, read_only: bool) -> impl Reply<()>;

    /// Ensures one volume is active.
    fn activate_volume(&self, pool: &str, name: &str) -> impl Reply<()>;

    /// Rebuilds the failed images of a degraded pool onto its spares and
    /// drops the missing disks from the VG.
    fn repair(&self, pool: &str) -> impl Reply<()>;

    /// Every device-mapper device here, with its live table (LVM's and
    /// the per-volume `dxvol-` devices alike).
    fn dm_devices(&self) -> impl Reply<Vec<DmDevice>>;

    /// Applies a per-volume device plan: creates, table swaps (every load,
    /// then every suspend, then every resume), resumes, then removals.
    /// Returns the devices that could not be removed because they are still
    /// open (a holder such as targets has not let go yet; the next
    /// reconcile retries); any other failure is an error.
    fn dm_apply(&self, plan: &DmPlan) -> impl Reply<Vec<String>>;

    /// The per-volume devices whose path to their LV is failed (an I/O
    /// error failed it; their queueing table holds the I/O back).
    fn dm_failed_paths(&self) -> impl Reply<Vec<FailedPath>>;

    /// Reinstates failed paths (`reinstate_path`), which resubmits the
    /// I/O they hold; a device gone since is skipped.
    fn dm_reinstate(&self, paths: &[FailedPath]) -> impl Reply<()>;
}
