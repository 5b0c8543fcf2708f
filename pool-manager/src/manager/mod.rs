//! Carries out pool-manager's operations: validation (core), the desired
//! state (config-keeper, through [`Cluster`]), then the backend, with a
//! rollback when a later step fails. One operation at a time: LVM commands
//! on one volume group conflict anyway, and the desired state is read,
//! checked and written as one step.
//!
//! Order of effects, and why:
//! - create pool / volume / snapshot / clone: record first, then build; a
//!   crash in between leaves a record the reconciler completes (plain
//!   volumes) or reports (pools, snapshots), never an unrecorded device with
//!   an identity nobody knows.
//! - delete volume: remove the record first (config-keeper refuses while a
//!   snapshot or export still refers to it), then the LV.
//! - takeover: record the owner (if heartbeat has not), rewrite the
//!   system_id, activate.

pub mod cluster;
pub mod held;
mod moves;
mod pools;
mod reconcile;
mod urgent;
mod volumes;

use crate::backend::PoolBackend;
use crate::core::disk::{DiskInfo, PartnerDisks};
use crate::core::dmvol;
use crate::core::observed::ObservedPool;
use crate::error::PoolError;
pub use cluster::{Cluster, FakeCluster, RouterCluster};
use duplex_api::change::Change;
use duplex_api::methods::volume::{DmReport, DmSync};
use duplex_api::model::{Config, Kind, Object, Pool};
use duplex_api::topics;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tokio::sync::Mutex;

/// `pool.create` parameters.
pub use duplex_api::methods::pool::CreateParams as CreatePool;
/// `volume.create` parameters.
pub use duplex_api::methods::volume::CreateParams as CreateVolume;
/// Outcome of an idempotent operation.
pub use duplex_api::methods::Outcome;

#[derive(Default)]
struct Memory {
    /// The drifts of the last pass.
    drifts: BTreeSet<String>,
    /// The drifts published and still seen.
    announced: BTreeSet<String>,
    alerts: BTreeSet<String>,
    progress: BTreeMap<String, i64>,
    /// Per-volume devices of ours whose path was failed at every check
    /// since the instant recorded, and whether that was alerted.
    failing: BTreeMap<String, (std::time::Instant, bool)>,
}

/// A write to the desired state, named for its error.
struct Record {
    changes: Vec<Change>,
    op: String,
}

impl Record {
    fn new(op: impl Into<String>, changes: Vec<Change>) -> Self {
        Record {
            changes,
            op: op.into(),
        }
    }

    fn upsert(op: impl Into<String>, object: Object) -> Self {
        Record::new(op, vec![Change::Upsert(object)])
    }

    fn delete(op: impl Into<String>, kind: Kind, key: &str) -> Self {
        Record::new(
            op,
            vec![Change::Delete {
                kind,
                key: key.into(),
            }],
        )
    }
}

/// Takes a [`Record`] back when the work after it fails.
struct Rollback {
    record: Record,
    /// What a failed rollback leaves behind, for the operator.
    left: String,
}

impl Rollback {
    fn new(record: Record, left: impl Into<String>) -> Self {
        Rollback {
            record,
            left: left.into(),
        }
    }
}

/// The pool-manager of one controller.
pub struct Manager<B, C> {
    backend: B,
    cluster: C,
    me: String,
    partner: Option<String>,
    op: Mutex<()>,
    /// Operations on a takeover's path waiting for `op`.
    urgent: urgent::Urgent,
    memory: Mutex<Memory>,
    held: Mutex<held::Held>,
}

fn random64() -> [u8; 64] {
    let mut b = [0u8; 64];
    if getrandom::getrandom(&mut b).is_err() {
        // No OS randomness is a broken system; fall back to time and pid so
        // identities stay unique rather than failing the call.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, x) in b.iter_mut().enumerate() {
            let shift = u32::try_from((i % 16) * 8).unwrap_or(0);
            *x = u8::try_from((t >> shift) & 0xff).unwrap_or(0)
                ^ u8::try_from(i).unwrap_or(0)
                ^ u8::try_from(std::process::id() & 0xff).unwrap_or(0);
        }
    }
    b
}

impl<B: PoolBackend, C: Cluster> Manager<B, C> {
    /// A manager for controller `me` with partner `partner`.
    pub fn new(backend: B, cluster: C, me: &str, partner: Option<&str>) -> Self {
        Manager {
            backend,
            cluster,
            me: me.to_string(),
            partner: partner.map(str::to_string),
            op: Mutex::new(()),
            urgent: urgent::Urgent::default(),
            memory: Mutex::new(Memory::default()),
            held: Mutex::new(held::Held::default()),
        }
    }

    /// Keeps the pools exported here by request in `path` (the state
    /// directory), so a restart does not activate them again. A damaged
    /// file is an error.
    pub fn with_held_file(
        mut self,
        path: std::path::PathBuf,
    ) -> Result<Self, duplex_services::statefile::StateFileError> {
        self.held = Mutex::new(held::Held::load(path)?);
        Ok(self)
    }

    /// Holds (exported by request) or releases a pool; a failed save is
    /// logged: the in-memory set still holds for this process.
    async fn hold(&self, pool: &str, held: bool) {
        if let Err(e) = self.held.lock().await.set(pool, held) {
            tracing::error!(pool, error = %e, "cannot save the held-pools file");
        }
    }

    /// This controller's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    async fn config(&self) -> Result<Config, PoolError> {
        self.cluster
            .config()
            .await
            .map_err(PoolError::cluster("read the desired state"))
    }

    /// Starts an operation: takes the one-at-a-time lock, then reads the
    /// desired state under it.
    async fn begin(&self) -> Result<(tokio::sync::MutexGuard<'_, ()>, Config), PoolError> {
        let g = self.op.lock().await;
        Ok((g, self.config().await?))
    }

    /// [`Self::begin`] for an operation on a takeover's path (takeover,
    /// import, export): a background reconcile that is still reading gives
    /// the lock up to it.
    async fn begin_urgent(&self) -> Result<(tokio::sync::MutexGuard<'_, ()>, Config), PoolError> {
        let g = self.lock_urgent().await;
        Ok((g, self.config().await?))
    }

    /// The operation lock, taken with priority over a background reconcile.
    async fn lock_urgent(&self) -> tokio::sync::MutexGuard<'_, ()> {
        let _waiting = self.urgent.enter();
        self.op.lock().await
    }

    async fn observe(&self) -> Result<Vec<ObservedPool>, PoolError> {
        self.backend
            .observe()
            .await
            .map_err(PoolError::backend("read LVM state"))
    }

    async fn observe_pool(&self, pool: &str) -> Result<Option<ObservedPool>, PoolError> {
        Ok(self.observe().await?.into_iter().find(|p| p.pool == pool))
    }

    fn desired_pool<'a>(cfg: &'a Config, name: &str, field: &str) -> Result<&'a Pool, PoolError> {
        cfg.pools.get(name).ok_or_else(|| PoolError::NotFound {
            what: "pool",
            name: name.into(),
            field: field.into(),
        })
    }

    fn owned_pool<'a>(
        &self,
        cfg: &'a Config,
        name: &str,
        field: &str,
    ) -> Result<&'a Pool, PoolError> {
        let p = Self::desired_pool(cfg, name, field)?;
        if p.owner != self.me {
            return Err(PoolError::NotOwner {
                pool: name.into(),
                owner: p.owner.clone(),
            });
        }
        Ok(p)
    }

    /// Records `record` in the desired state, then runs `work` (operation
    /// `op`); if the work fails, applies `rollback` (when there is one) so
    /// the record does not outlive it. A work that undoes its own effects
    /// reports a failed undo as [`PoolError::RollbackFailed`]; a failed
    /// `rollback` is added to it.
    async fn record_then<T, F, Fut>(
        &self,
        op: &str,
        record: Record,
        work: F,
        rollback: Option<Rollback>,
    ) -> Result<T, PoolError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, PoolError>>,
    {
        self.cluster
            .apply(record.changes)
            .await
            .map_err(PoolError::cluster(record.op))?;
        let first = match work().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let Some(rb) = rollback else {
            return Err(first);
        };
        let first = match self.cluster.apply(rb.record.changes).await {
            Ok(()) => first,
            Err(source) => first.with_failed_rollback(
                op,
                &rb.left,
                PoolError::Cluster {
                    op: rb.record.op,
                    source,
                },
            ),
        };
        if let PoolError::RollbackFailed { left, .. } = &first {
            tracing::error!(op, left = %left, "rollback failed");
        }
        Err(first)
    }

    /// What the partner's disk list (from [`Self::partner_disks`]) says.
    fn partner_view_of<'a>(
        &'a self,
        partner: &'a Result<Vec<DiskInfo>, Option<String>>,
    ) -> PartnerDisks<'a> {
        match (partner, &self.partner) {
            (Ok(d), Some(p)) => PartnerDisks::Seen(p, d),
            (Err(Some(p)), _) => PartnerDisks::Unreachable(p),
            _ => PartnerDisks::None,
        }
    }

    /// The pool `name` as LVM shows it here; not found when no disk here
    /// carries it.
    /// The system_id of a pool some disk here carries (one LVM report).
    async fn visible_system_id(&self, name: &str) -> Result<String, PoolError> {
        self.backend
            .system_id(name)
            .await
            .map_err(PoolError::backend("read LVM state"))?
            .ok_or_else(|| Self::not_visible(name))
    }

    fn not_visible(name: &str) -> PoolError {
        PoolError::NotFound {
            what: "pool",
            name: format!(
                "{name} (no disk here carries {})",
                crate::core::names::vg_name(name)
            ),
            field: "name".into(),
        }
    }

    async fn visible_pool(&self, name: &str) -> Result<ObservedPool, PoolError> {
        self.observe_pool(name)
            .await?
            .ok_or_else(|| Self::not_visible(name))
    }

    /// Deletes the record of `object`, runs `work`, and restores the record
    /// if the work fails (a failed restore leaves `left`); then publishes
    /// `event` on `topic`. Returns the key of the object.
    async fn delete_recorded<F, Fut>(
        &self,
        object: Object,
        work: F,
        left: String,
        topic: &str,
        event: Value,
    ) -> Result<String, PoolError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<(), PoolError>>,
    {
        let kind = object.kind();
        let what = kind.as_str();
        let name = object.key().to_string();
        self.record_then(
            &format!("delete {what} {name}"),
            Record::delete(format!("delete the record of {what} {name}"), kind, &name),
            work,
            Some(Rollback::new(
                Record::upsert(format!("restore the record of {what} {name}"), object),
                left,
            )),
        )
        .await?;
        self.cluster.publish(topic, event).await;
        Ok(name)
    }

    /// Activates every volume of pool `name` here.
    async fn activate(&self, name: &str) -> Result<(), PoolError> {
        self.backend
            .activate_pool(name)
            .await
            .map_err(PoolError::backend(format!("activate pool {name}")))
    }

    async fn partner_disks(&self) -> Result<Vec<DiskInfo>, Option<String>> {
        let Some(p) = &self.partner else {
            return Err(None);
        };
        self.cluster.partner_disks(p).await.map_err(|e| {
            tracing::warn!(partner = %p, error = %e, "partner disk list unavailable");
            Some(p.clone())
        })
    }

    /// Brings the per-volume devices (`dxvol-<serial>`) in line with the
    /// desired state `cfg`: multipath over the active LVs of pools recorded
    /// for us, error tables elsewhere, none for volumes no longer recorded.
    /// `release` names a pool whose devices must become error tables
    /// whatever LVM shows (an export: those devices hold the LVs open,
    /// so they are swapped before the deactivation). Returns what changed.
    async fn sync_dm(&self, cfg: &Config, release: Option<&str>) -> Result<DmReport, PoolError> {
        let devs = self
            .backend
            .dm_devices()
            .await
            .map_err(PoolError::backend("read device-mapper"))?;
        let mut lvs = dmvol::active_lvs(&devs);
        if let Some(p) = release {
            lvs.retain(|(pool, _), _| pool != p);
        }
        let ro: BTreeSet<String> = cfg
            .volumes
            .values()
            .filter(|v| v.read_only)
            .map(|v| v.name.clone())
            .collect();
        let (wanted, bad) = dmvol::wanted(cfg, &self.me, &lvs, &ro);
        if !bad.is_empty() {
            tracing::warn!(volumes = ?bad, "serial cannot name a device; no dxvol device");
        }
        let plan = dmvol::plan(&wanted, &devs);
        if !plan.conflicts.is_empty() {
            tracing::error!(devices = ?plan.conflicts, "device names taken by devices that are not ours");
        }
        let mut left = Vec::new();
        if !plan.is_empty() {
            let mapped = wanted.iter().filter(|w| w.state.table.maps_lv()).count();
            tracing::info!(
                create = plan.create.len(),
                swap = plan.reload.len(),
                resume = plan.resume.len(),
                remove = plan.remove.len(),
                mapped,
                "per-volume devices"
            );
            left = self
                .backend
                .dm_apply(&plan)
                .await
                .map_err(PoolError::backend("switch the per-volume devices"))?;
        }
        Ok(DmReport {
            created: plan.create.len(),
            swapped: plan.reload.len(),
            resumed: plan.resume.len(),
            removed: plan.remove.len().saturating_sub(left.len()),
            still_open: left,
            conflicts: plan.conflicts,
            bad_serial: bad,
        })
    }

    /// Reinstates the failed paths of the per-volume devices of pools
    /// recorded as ours: an I/O error from the LV failed the path and its
    /// table holds the I/O queued; a path whose LV works again takes it.
    /// Paths of pools not ours stay failed (the next reconcile swaps those
    /// devices to error tables). A device whose path is found failed at
    /// every check for `alert_after` raises a critical alert (hosts wait
    /// on it: the LV itself fails, not only the path). Skips the pass
    /// while a takeover, import or export holds the operation lock.
    /// Returns the devices reinstated.
    pub async fn reinstate_paths(&self, alert_after: Duration) -> Result<Vec<String>, PoolError> {
        let failed = self
            .backend
            .dm_failed_paths()
            .await
            .map_err(PoolError::backend("read the per-volume devices' paths"))?;
        if failed.is_empty() {
            self.forget_failing(&BTreeSet::new()).await;
            return Ok(Vec::new());
        }
        let Ok(_g) = self.op.try_lock() else {
            return Ok(Vec::new());
        };
        let cfg = self.config().await?;
        let ours: BTreeMap<String, (&str, &str)> = cfg
            .volumes
            .values()
            .filter(|v| cfg.pools.get(&v.pool).is_some_and(|p| p.owner == self.me))
            .map(|v| {
                (
                    dmvol::dm_name(&v.serial),
                    (v.pool.as_str(), v.name.as_str()),
                )
            })
            .collect();
        let (mine, others): (Vec<_>, Vec<_>) =
            failed.into_iter().partition(|f| ours.contains_key(&f.name));
        if !others.is_empty() {
            tracing::debug!(
                devices = others.len(),
                "failed paths of pools not ours stay failed"
            );
        }
        let names: BTreeSet<String> = mine.iter().map(|f| f.name.clone()).collect();
        self.forget_failing(&names).await;
        if mine.is_empty() {
            return Ok(Vec::new());
        }
        self.backend
            .dm_reinstate(&mine)
            .await
            .map_err(PoolError::backend(
                "reinstate the per-volume devices' paths",
            ))?;
        tracing::warn!(devices = ?names, "an I/O error had failed these devices' paths to their LVs; reinstated, their queued I/O resubmitted");
        let now = std::time::Instant::now();
        let mut alerts = Vec::new();
        {
            let mut mem = self.memory.lock().await;
            for n in &names {
                let (since, alerted) = mem.failing.entry(n.clone()).or_insert((now, false));
                if !*alerted && now.duration_since(*since) >= alert_after {
                    *alerted = true;
                    if let Some((pool, volume)) = ours.get(n) {
                        alerts.push(json!({"severity": "critical", "pool": pool, "volume": volume,
                            "kind": "volume_io_failing", "controller": self.me,
                            "message": format!("volume {volume}: its LV has failed I/O for {} s; hosts' I/O to it waits (queued, not failed)", now.duration_since(*since).as_secs())}));
                    }
                }
            }
        }
        for a in alerts {
            tracing::error!(alert = %a, "volume I/O failing");
            self.cluster.publish(topics::ALERT, a).await;
        }
        Ok(names.into_iter().collect())
    }

    /// Forgets the failing devices not in `still`.
    async fn forget_failing(&self, still: &BTreeSet<String>) {
        let mut mem = self.memory.lock().await;
        mem.failing.retain(|n, _| still.contains(n));
    }

    /// [`Self::sync_dm`] after an operation that already succeeded: a
    /// failure is logged and reported in the result (`dm_error`), the
    /// reconciler retries.
    async fn sync_dm_after(&self, what: &str) -> DmSync {
        let r = match self.config().await {
            Ok(cfg) => self.sync_dm(&cfg, None).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(v) => DmSync::Done(v),
            Err(e) => {
                tracing::warn!(error = %e.chain(), "per-volume devices after {what}; the reconciler retries");
                DmSync::Failed {
                    dm_error: e.chain(),
                }
            }
        }
    }
}
