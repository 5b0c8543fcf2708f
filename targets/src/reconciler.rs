//! The driver between the pure core and a backend: observe, build, plan,
//! apply; the pool flip; drift detection. Synchronous: the service runs it
//! on the blocking pool, one operation at a time.

use crate::backend::{lio_devices, observe, read_db_root, read_pr, Observed, TargetBackend};
use crate::core::desired::{build, Desired, DeviceState, Local};
use crate::core::flip::{self, Override};
use crate::core::model::path;
use crate::core::model::{AccessState, Tree};
use crate::core::plan::{blocked_by, object_of, plan, Step};
use crate::core::pr::{
    created_serials, db_root_action, insert_aptpl, parse_lu, same_db_root, DbRoot,
};
use crate::error::{chain, BackendError, PersistError, ReconcileError, ReservationError};
use crate::overrides::OverrideStore;
use crate::prstore::PrStore;
use duplex_api::methods::reservations::{
    ClearReservationsResult, LuReservations, ReservationsResult,
};
use duplex_api::methods::target::FailedStep;
use duplex_api::model::{Config, Pool};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// What one reconcile did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// The plan, secrets masked: applied but for `failed` and the steps
    /// they left out (planned only, for a dry run).
    pub steps: Vec<String>,
    /// Exports not built yet and why.
    pub pending: Vec<String>,
    /// Objects in configfs that are not ours.
    pub foreign: Vec<String>,
    /// True when configfs was read and differed from what was applied
    /// last (changed out of band); a new desired state alone is not drift.
    pub drift: bool,
    /// Steps the kernel refused, each with the steps it left out; the
    /// rest of the plan was applied.
    pub failed: Vec<FailedStep>,
    /// Wall time in milliseconds.
    pub ms: u64,
}

/// What a pool flip did.
#[derive(Debug, Clone, Serialize)]
pub struct Flip {
    /// The pool.
    pub pool: String,
    /// The new state.
    pub state: AccessState,
    /// Volumes whose ALUA state was written.
    pub volumes: usize,
    /// The pool's ANA group on this controller, if it has NVMe exports.
    pub ana_group: Option<u32>,
    /// Attribute writes while transitioning plus writes to the final state.
    pub steps: usize,
    /// True when configfs had to be read first (nothing applied yet).
    pub observed: bool,
    /// Milliseconds before the first write (ownership record, members,
    /// reading configfs when needed).
    pub prepare_ms: u64,
    /// Milliseconds of the Transitioning / change writes.
    pub transition_ms: u64,
    /// Milliseconds to save the override (temp file, fsync, rename), in
    /// parallel with the final writes.
    pub persist_ms: u64,
    /// False when the override could not be saved (it holds until a restart).
    pub persisted: bool,
    /// Milliseconds of the final-state writes (and of the save, which runs
    /// beside them).
    pub final_ms: u64,
    /// Wall time in milliseconds.
    pub ms: u64,
}

/// Why a flip was refused.
#[derive(Debug, thiserror::Error)]
pub enum FlipError {
    /// No such pool in the configuration.
    #[error("pool {0} is not in the configuration")]
    UnknownPool(String),
    /// The configuration was never read.
    #[error("the desired state has not been read yet")]
    NoConfig,
    /// The pool cannot be active here: its devices serve no data (the
    /// pool is imported elsewhere; pool-manager's `error` tables).
    #[error("pool {pool} is not imported here: {device} serves no data")]
    NotServing {
        /// The pool.
        pool: String,
        /// The first device found unbacked.
        device: String,
    },
    /// Applying failed.
    #[error(transparent)]
    Apply(#[from] ReconcileError),
}

/// The reconciler's state.
pub struct Reconciler {
    backend: Box<dyn TargetBackend>,
    local: Local,
    config: Option<Config>,
    overrides: BTreeMap<String, Override>,
    /// Where the overrides are kept across restarts (none in tests and `--sim`).
    store: Option<OverrideStore>,
    /// Our part of configfs as the last successful apply left it; `None`
    /// when unknown (start-up, after a failure): then configfs is read.
    cache: Option<Tree>,
    last: Option<Desired>,
    /// LIO's database directory (none in tests and `--sim` unless given).
    pr: Option<PrStore>,
    /// True once LIO's `db_root` is known to be ours.
    db_root_ok: bool,
    /// Why `db_root` is not ours, while it is not.
    db_root_note: Option<String>,
}

fn ms_since(t: Instant) -> u64 {
    u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Reconciler {
    /// A reconciler for this controller over `backend`.
    pub fn new(backend: Box<dyn TargetBackend>, local: Local) -> Reconciler {
        Reconciler {
            backend,
            local,
            config: None,
            overrides: BTreeMap::new(),
            store: None,
            cache: None,
            last: None,
            pr: None,
            db_root_ok: false,
            db_root_note: None,
        }
    }

    /// Gives LIO `store` as its `db_root` (set before the first device
    /// exists) and reloads the reservations saved there into every
    /// backstore this reconciler creates.
    pub fn with_pr(mut self, store: PrStore) -> Reconciler {
        self.pr = Some(store);
        self
    }

    /// Makes LIO's `db_root` ours if it is not: it can change only while no
    /// LIO device exists, so this runs before the first backstore is made.
    /// When someone else's devices (or ours from an older run) hold it, the
    /// reason is kept for `pending` and the check runs again next time.
    fn ensure_db_root(&mut self) {
        let Some(store) = self.pr.clone() else {
            return;
        };
        if self.db_root_ok {
            return;
        }
        // Never fatal: without it reservations fail, but the exports
        // (and everything else) must still come up.
        let note = match self.set_db_root(&store) {
            Ok(None) => {
                self.db_root_ok = true;
                self.db_root_note = None;
                return;
            }
            Ok(Some(note)) => note,
            Err(e) => format!("reservations: LIO's db_root: {}", chain(&e)),
        };
        if self.db_root_note.as_ref() != Some(&note) {
            tracing::warn!("{note}");
        }
        self.db_root_note = Some(note);
    }

    /// Sets `db_root` to `store`; `Some(reason)` when it cannot be now.
    fn set_db_root(&mut self, store: &PrStore) -> Result<Option<String>, BackendError> {
        store.ensure()?;
        let b = self.backend.as_mut();
        let Some(current) = read_db_root(b)? else {
            return Ok(Some(
                "reservations: target_core_mod is not loaded (no target/dbroot)".into(),
            ));
        };
        let wanted = store.root_str();
        let devices = lio_devices(b)?;
        match db_root_action(&current, &wanted, devices) {
            DbRoot::Keep => Ok(None),
            DbRoot::Write => {
                b.write("target/dbroot", &wanted)
                    .map_err(|source| BackendError::Io {
                        op: "write",
                        path: "target/dbroot".into(),
                        source,
                    })?;
                tracing::info!(db_root = %wanted, "LIO db_root set");
                Ok(None)
            }
            DbRoot::Blocked { current, devices } => Ok(Some(format!(
                "reservations: LIO's db_root is {current}, not {wanted}, and {devices} LIO device(s) exist, so it cannot change until they are gone (restart the controller); PERSISTENT RESERVE OUT fails unless {current}/pr exists"
            ))),
        }
    }

    /// The saved registrations of each backstore `steps` creates, written
    /// back before its LUNs.
    fn with_saved_reservations(&self, steps: Vec<Step>) -> Vec<Step> {
        let Some(store) = self.pr.as_ref().filter(|_| self.db_root_ok) else {
            return steps;
        };
        let mut records = BTreeMap::new();
        for serial in created_serials(&steps) {
            match store.records(&serial) {
                Ok(r) if !r.is_empty() => {
                    tracing::info!(serial = %serial, registrations = r.len(), "reloading saved persistent reservations");
                    records.insert(serial, r);
                }
                Ok(_) => {}
                // The LU comes up without them rather than not at all.
                Err(e) => {
                    tracing::warn!(serial = %serial, error = %chain(&e), "saved persistent reservations unreadable")
                }
            }
        }
        insert_aptpl(steps, &records)
    }

    /// Each LU's reservations in this controller's kernel (`volume` picks one).
    pub fn reservations(
        &self,
        controller: &str,
        volume: Option<&str>,
    ) -> Result<ReservationsResult, ReservationError> {
        let b = self.backend.as_ref();
        let o = observe(b, &self.local.scope())?;
        if let Some(v) = volume {
            if !o.tree.backstores.contains_key(v) {
                return Err(ReservationError::NotFound(v.to_string()));
            }
        }
        let mut luns = Vec::new();
        for (name, bs) in &o.tree.backstores {
            if volume.is_some_and(|v| v != name) || !bs.enabled {
                continue;
            }
            luns.push(self.lu_reservations(name, &bs.serial)?);
        }
        let db_root = read_db_root(b)?.unwrap_or_default();
        let db_root_ours = self
            .pr
            .as_ref()
            .is_some_and(|s| same_db_root(&db_root, &s.root_str()));
        Ok(ReservationsResult {
            controller: controller.to_string(),
            db_root,
            db_root_ours,
            luns,
        })
    }

    fn lu_reservations(&self, name: &str, serial: &str) -> Result<LuReservations, BackendError> {
        let attrs = read_pr(self.backend.as_ref(), name)?;
        let saved = match &self.pr {
            Some(s) => !s.records(serial)?.is_empty(),
            None => false,
        };
        Ok(parse_lu(name, serial, &attrs, saved))
    }

    /// Drops every registration and the reservation of `volume` in this
    /// controller's kernel, and its saved APTPL state. LIO has no attribute
    /// for it; it frees an initiator's registrations on an LU when the
    /// initiator's mapping of that LU goes, so each host mapping of the LU
    /// is unlinked and linked again (hosts see a REPORTED LUNS DATA HAS
    /// CHANGED unit attention, and commands in that instant fail and are
    /// retried). The saved file goes first, so a crash in between never
    /// brings the registrations back.
    pub fn clear_reservations(
        &mut self,
        controller: &str,
        volume: &str,
    ) -> Result<ClearReservationsResult, ReservationError> {
        let o = observe(self.backend.as_ref(), &self.local.scope())?;
        let bs = o
            .tree
            .backstores
            .get(volume)
            .filter(|b| b.enabled)
            .ok_or_else(|| ReservationError::NotFound(volume.to_string()))?;
        let serial = bs.serial.clone();
        let before = self.lu_reservations(volume, &serial)?;
        let file_removed = match &self.pr {
            Some(s) => s.remove(&serial)?,
            None => false,
        };
        let mut steps = Vec::new();
        for (iqn, t) in &o.tree.iscsi {
            for (tag, tpg) in &t.tpgs {
                for (init, acl) in &tpg.acls {
                    for (mlun, tlun) in &acl.luns {
                        let ours = tpg.luns.get(tlun).is_some_and(|l| l.backstore == volume);
                        if !ours {
                            continue;
                        }
                        let link = path::mapped_lun_link(iqn, *tag, init, *mlun);
                        steps.push(Step::Unlink { path: link.clone() });
                        steps.push(Step::Symlink {
                            link,
                            target: path::lun(iqn, *tag, *tlun),
                        });
                        if acl.write_protected.contains(mlun) {
                            steps.push(Step::Write {
                                path: format!(
                                    "{}/write_protect",
                                    path::mapped_lun(iqn, *tag, init, *mlun)
                                ),
                                value: "1".into(),
                            });
                        }
                    }
                }
            }
        }
        let mappings_cycled = steps
            .iter()
            .filter(|s| matches!(s, Step::Unlink { .. }))
            .count();
        if let Err(e) = self.backend.apply(&steps) {
            // The tree may be half cycled: the next reconcile reads it.
            self.cache = None;
            return Err(match e {
                ReconcileError::Step { source, .. } => ReservationError::Backend(source),
                other => ReservationError::Backend(BackendError::Parse {
                    path: path::backstore(volume),
                    content: chain(&other),
                }),
            });
        }
        let after = self.lu_reservations(volume, &serial)?;
        if !after.registrations.is_empty() || after.holder.is_some() {
            return Err(ReservationError::Remaining {
                volume: volume.to_string(),
                registrations: after.registrations.len(),
                holder: after.holder.map(|h| h.initiator),
            });
        }
        Ok(ClearReservationsResult {
            controller: controller.to_string(),
            volume: volume.to_string(),
            before,
            after,
            mappings_cycled,
            file_removed,
            audited: false,
        })
    }

    /// Keeps the overrides in `store`, starting from the ones saved there
    /// (they are checked against the ownership records by the first
    /// [`Reconciler::set_config`]). A file that cannot be read is an error:
    /// guessing an empty set would undo a flip an operator asked for.
    pub fn with_store(mut self, store: OverrideStore) -> Result<Reconciler, PersistError> {
        let o = store.load()?;
        if !o.is_empty() {
            tracing::info!(overrides = ?o, file = %store.path().display(), "flip overrides loaded");
        }
        self.overrides = o;
        self.store = Some(store);
        Ok(self)
    }

    /// Saves the overrides; a failure is logged (the kernel state is set
    /// already; only a restart would lose it) and returned as false.
    fn persist(&self) -> bool {
        let Some(store) = &self.store else {
            return true;
        };
        match store.save(&self.overrides) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(error = %chain(&e), "flip overrides not saved");
                false
            }
        }
    }

    /// Replaces the desired state; overrides of pools whose ownership
    /// record changed are dropped (the new owner's decision wins).
    pub fn set_config(&mut self, cfg: Config) {
        let before = self.overrides.len();
        self.overrides
            .retain(|pool, o| cfg.pools.get(pool).is_some_and(|p| o.holds(p)));
        if self.overrides.len() != before {
            self.persist();
        }
        self.config = Some(cfg);
    }

    /// Replaces the pools' ownership records only (a flip reads just those:
    /// the whole configuration of a thousand volumes costs more to fetch
    /// and parse than the flip itself); stale overrides are dropped as in
    /// [`Reconciler::set_config`].
    pub fn set_pools(&mut self, pools: BTreeMap<String, Pool>) {
        if let Some(mut cfg) = self.config.take() {
            cfg.pools = pools;
            self.set_config(cfg);
        }
    }

    /// True once a desired state was set.
    pub fn has_config(&self) -> bool {
        self.config.is_some()
    }

    /// The last desired state built.
    pub fn last(&self) -> Option<&Desired> {
        self.last.as_ref()
    }

    /// Current overrides.
    pub fn overrides(&self) -> &BTreeMap<String, Override> {
        &self.overrides
    }

    /// Reads our part of configfs.
    pub fn observe(&self) -> Result<Observed, ReconcileError> {
        observe(self.backend.as_ref(), &self.local.scope()).map_err(ReconcileError::Observe)
    }

    fn desired(&self, observed: &Tree) -> Desired {
        let cfg = self.config.clone().unwrap_or_default();
        let overrides: BTreeMap<String, AccessState> = self
            .overrides
            .iter()
            .map(|(k, o)| (k.clone(), o.state))
            .collect();
        let b = self.backend.as_ref();
        build(
            &cfg,
            &self.local,
            &|d| b.device_state(d),
            &overrides,
            observed,
        )
    }

    /// Applies `steps` one at a time. A step the kernel refuses does not
    /// stop the rest of the plan: it is reported with the later steps that
    /// act on, link to or remove what it left broken, which are left out
    /// (they would fail too, or half-build an object); one bad object must
    /// not keep every other export down. A saved registration the kernel
    /// refuses (`res_aptpl_metadata`: a damaged file) is only logged: the
    /// LU comes up without it rather than not at all.
    fn apply_steps(&mut self, steps: &[Step]) -> Vec<FailedStep> {
        let mut failed: Vec<FailedStep> = Vec::new();
        let mut broken: Vec<&str> = Vec::new();
        for s in steps {
            if let Some(i) = blocked_by(s, &broken) {
                if let Some(f) = failed.get_mut(i) {
                    f.skipped.push(s.to_string());
                }
                continue;
            }
            let Err(e) = self.backend.apply(std::slice::from_ref(s)) else {
                continue;
            };
            let error = match &e {
                ReconcileError::Step { source, .. } => chain(source),
                other => chain(other),
            };
            if matches!(s, Step::Write { path, .. } if path.ends_with("/pr/res_aptpl_metadata")) {
                tracing::warn!(error = %error, "a saved persistent reservation was refused; the LU comes up without it");
                continue;
            }
            tracing::warn!(step = %s, error = %error, "configfs step refused; the rest of the plan goes on");
            broken.push(object_of(s));
            failed.push(FailedStep {
                step: s.to_string(),
                error,
                skipped: Vec::new(),
            });
        }
        failed
    }

    /// Applies `steps`; the cache holds `result` only when every step
    /// applied, otherwise configfs is read again next time.
    fn apply(&mut self, steps: &[Step], result: &Tree) -> Vec<FailedStep> {
        let failed = self.apply_steps(steps);
        self.cache = failed.is_empty().then(|| result.clone());
        failed
    }

    /// Brings configfs to the desired state. `fresh` reads configfs first
    /// (start-up, drift checks); otherwise the last applied state is
    /// trusted. With `dry_run` nothing is changed.
    pub fn reconcile(&mut self, fresh: bool, dry_run: bool) -> Result<Outcome, ReconcileError> {
        let t = Instant::now();
        let (observed, foreign, drift) = match (&self.cache, fresh || dry_run) {
            (Some(c), false) => (c.clone(), Vec::new(), false),
            (cache, _) => {
                let o = self.observe()?;
                let drift = cache.as_ref().is_some_and(|c| *c != o.tree);
                (o.tree, o.foreign, drift)
            }
        };
        if !dry_run {
            self.ensure_db_root();
        }
        let d = self.desired(&observed);
        let steps = self.with_saved_reservations(plan(&d.tree, &observed));
        let failed = if dry_run {
            Vec::new()
        } else {
            self.apply(&steps, &d.tree)
        };
        let mut pending = d.pending.clone();
        pending.extend(self.db_root_note.clone());
        let out = Outcome {
            steps: crate::core::plan::masked(&steps),
            pending,
            foreign,
            drift,
            failed,
            ms: ms_since(t),
        };
        if !dry_run {
            self.last = Some(d);
        }
        Ok(out)
    }

    /// Sets every volume of `pool` to `state` through this controller:
    /// first Transitioning (ALUA) / change (ANA) on all of them, then the
    /// final state. Only the state attributes are written, from the cache
    /// of what was applied last (configfs is read only when that is
    /// unknown); anything else the desired state needs is left to the next
    /// reconcile, which builds with this state and so keeps it.
    pub fn set_access_state(&mut self, pool: &str, state: AccessState) -> Result<Flip, FlipError> {
        let t = Instant::now();
        let cfg = self.config.as_ref().ok_or(FlipError::NoConfig)?;
        let p = cfg
            .pools
            .get(pool)
            .ok_or_else(|| FlipError::UnknownPool(pool.to_string()))?;
        let ov = Override::under(p, state);
        let members = flip::members(cfg, pool);
        let group = self.local.alua_group();
        let (mut tree, observed) = match self.cache.take() {
            Some(c) => (c, false),
            None => (self.observe()?.tree, true),
        };
        if matches!(state, AccessState::Active | AccessState::NonOptimized) {
            // Never an active path that cannot serve: check only the
            // devices of volumes exported here.
            let in_namespace = tree.namespace_devices();
            let exported = |name: &str, dev: &str| {
                tree.backstores.contains_key(name) || in_namespace.contains(dev)
            };
            // The LU group's other members (a backstore whose volume left
            // the configuration) move with the write too.
            let in_lu = tree
                .backstores
                .values()
                .filter(|b| b.lu_group.as_deref() == Some(members.lu_group.as_str()))
                .map(|b| b.dev.as_str());
            let mut devices: Vec<&str> = members
                .volumes
                .iter()
                .filter(|(name, dev)| exported(name, dev))
                .map(|(_, dev)| dev.as_str())
                .chain(in_lu)
                .collect();
            devices.sort_unstable();
            devices.dedup();
            let bad = devices
                .into_iter()
                .find(|dev| self.backend.device_state(dev) != DeviceState::Backed);
            if let Some(dev) = bad {
                let device = dev.to_string();
                self.cache = Some(tree);
                return Err(FlipError::NotServing {
                    pool: pool.to_string(),
                    device,
                });
            }
        }
        let prepare_ms = ms_since(t);
        let t1 = Instant::now();
        // Already there (a takeover's reconcile made the new owner's paths
        // active before heartbeat asks): no Transitioning phase, which
        // would only stall the hosts' I/O on a path that serves.
        let already = flip::flip_steps(&mut tree.clone(), &members, &group, state)
            .steps
            .is_empty();
        let mid = if already {
            flip::FlipPlan::default()
        } else {
            flip::flip_steps(&mut tree, &members, &group, AccessState::Transitioning)
        };
        // On failure the cache stays unknown: the next reconcile reads configfs.
        self.backend.apply(&mid.steps)?;
        let transition_ms = ms_since(t1);
        let changed = self.overrides.get(pool) != Some(&ov);
        self.overrides.insert(pool.to_string(), ov);
        // The override is saved while the final state is written (the
        // fsync waits on the disk, the writes on configfs), and the reply
        // waits for both: a caller that got no reply must ask again, and
        // after a crash the restarted service either finishes the flip
        // (saved) or follows ownership (not saved).
        let to_save = self
            .store
            .clone()
            .filter(|_| changed)
            .map(|store| (store, self.overrides.clone()));
        let t2 = Instant::now();
        let (fin, applied, persisted, persist_ms) = std::thread::scope(|sc| {
            let saver = to_save.map(|(store, overrides)| {
                sc.spawn(move || {
                    let t = Instant::now();
                    let r = store.save(&overrides);
                    (r, ms_since(t))
                })
            });
            let fin = flip::flip_steps(&mut tree, &members, &group, state);
            let applied = self.backend.apply(&fin.steps);
            let (persisted, persist_ms) = match saver.map(|h| h.join()) {
                None => (true, 0),
                Some(Ok((Ok(()), ms))) => (true, ms),
                Some(Ok((Err(e), ms))) => {
                    tracing::warn!(error = %chain(&e), "flip overrides not saved");
                    (false, ms)
                }
                Some(Err(_)) => {
                    tracing::warn!("flip overrides not saved: the saving thread panicked");
                    (false, 0)
                }
            };
            (fin, applied, persisted, persist_ms)
        });
        applied?;
        let final_ms = ms_since(t2);
        self.cache = Some(tree);
        // `last` answers target.access_states: its pool view is all that
        // needs the new state (its tree is never planned against).
        if let Some(v) = self.last.as_mut().and_then(|l| l.pools.get_mut(pool)) {
            v.state = state;
        }
        Ok(Flip {
            pool: pool.to_string(),
            state,
            volumes: fin.volumes,
            ana_group: fin.ana_groups.first().copied(),
            steps: mid.steps.len() + fin.steps.len(),
            observed,
            prepare_ms,
            transition_ms,
            persist_ms,
            persisted,
            final_ms,
            ms: ms_since(t),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sim::SimBackend;
    use serde_json::json;

    fn cfg() -> Config {
        let v = json!({
            "controller": [
                {"id": "A", "name": "a", "interconnect": ["10.51.0.1/24"], "management": "192.0.2.1/24"},
                {"id": "B", "name": "b", "interconnect": ["10.51.0.2/24"], "management": "192.0.2.2/24"}
            ],
            "pool": [{"name": "p1", "tier": "fast", "layout": "linear", "home": "A", "owner": "A", "epoch": 3}],
            "volume": [{"name": "v1", "pool": "p1", "size": "1GiB", "serial": "ab01", "wwn": "6001405ab01",
                        "nguid": "3c8d2f645b0e4a7d9f216d1e0b7a4c11",
                        "uuid": "3c8d2f64-5b0e-4a7d-9f21-6d1e0b7a4c11"}],
            "export": [{"name": "e1", "volume": "v1", "protocol": "iscsi", "lun": 0, "host_group": "g"},
                       {"name": "e2", "volume": "v1", "protocol": "nvme", "nsid": 1, "host_group": "g"}],
            "host_group": [{"name": "g", "hosts": []}]
        });
        Config::from_json(&v).unwrap_or_else(|e| panic!("{e}"))
    }

    /// The one pool of [`cfg`], to change its ownership record.
    fn p1(c: &mut Config) -> &mut Pool {
        c.pools.get_mut("p1").unwrap_or_else(|| panic!("no p1"))
    }

    fn sim() -> SimBackend {
        let mut sim = SimBackend::new();
        sim.add_device("/dev/mapper/dxvol-ab01");
        sim
    }

    fn rec() -> Reconciler {
        let mut r = Reconciler::new(Box::new(sim()), Local::new("A"));
        r.set_config(cfg());
        r
    }

    #[test]
    fn an_object_the_kernel_refuses_leaves_the_rest_of_the_plan_going(
    ) -> Result<(), Box<dyn std::error::Error>> {
        use crate::backend::sim::SharedSim;
        let good: std::net::IpAddr = "10.50.0.1".parse()?;
        let bad: std::net::IpAddr = "10.50.0.250".parse()?;
        let mut s = sim();
        s.set_local_addresses(&[good]);
        let shared = SharedSim::new(s);
        let mut local = Local::new("A");
        // The address A lacks comes first: its NVMe port cannot listen.
        local.portals = vec![bad, good];
        let mut r = Reconciler::new(Box::new(shared.clone()), local);
        r.set_config(cfg());
        let o = r.reconcile(true, false)?;
        assert_eq!(o.failed.len(), 1, "{:?}", o.failed);
        assert!(
            o.failed[0].error.contains("EADDRNOTAVAIL"),
            "{:?}",
            o.failed
        );
        assert!(o.failed[0].step.starts_with("symlink nvmet/ports/"));
        // The rest was built: both iSCSI portals (LIO binds them with
        // IP_FREEBIND), the enabled TPG and its LUN, the other NVMe port
        // with the subsystem linked.
        let paths = shared.with(|s| s.paths());
        let has = |end: &str| paths.iter().any(|p| p.ends_with(end));
        assert!(
            has("/np/10.50.0.1:3260") && has("/np/10.50.0.250:3260") && has("/lun/lun_0"),
            "{paths:?}"
        );
        let enabled = paths
            .iter()
            .filter(|p| p.starts_with("target/iscsi/") && p.ends_with("/tpgt_1/enable"))
            .all(|p| shared.with(|s| s.read(p)).is_ok_and(|v| v.trim() == "1"));
        assert!(enabled);
        let links = paths
            .iter()
            .filter(|p| p.starts_with("nvmet/ports/") && p.contains("/subsystems/"))
            .count();
        assert_eq!(links, 1, "{paths:?}");

        // Nothing trusts the cache: the next reconcile reads configfs and
        // tries the refused step again, and only it.
        let o = r.reconcile(false, false)?;
        assert_eq!(o.failed.len(), 1);
        assert_eq!(o.steps.len(), 1, "{:?}", o.steps);
        // Once the address exists here, it applies and nothing is left.
        shared.with(|s| s.set_local_addresses(&[good, bad]));
        let o = r.reconcile(false, false)?;
        assert!(o.failed.is_empty() && o.steps.len() == 1, "{o:?}");
        assert!(r.reconcile(false, false)?.steps.is_empty());
        Ok(())
    }

    #[test]
    fn overrides_survive_a_restart_until_the_ownership_record_changes(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = OverrideStore::new(dir.path());
        let mut r = Reconciler::new(Box::new(sim()), Local::new("A")).with_store(store.clone())?;
        r.set_config(cfg());
        r.reconcile(true, false)?;
        let f = r.set_access_state("p1", AccessState::Standby)?;
        assert!(f.persisted);
        assert_eq!(store.load()?.len(), 1);

        // A restart (after a reboot: configfs empty), same state dir.
        let mut again =
            Reconciler::new(Box::new(sim()), Local::new("A")).with_store(store.clone())?;
        assert_eq!(
            again.overrides().get("p1").map(|o| o.state),
            Some(AccessState::Standby)
        );
        again.set_config(cfg());
        assert_eq!(again.overrides().len(), 1, "same owner and epoch: kept");
        again.reconcile(true, false)?;
        let pools = again.last().map(|d| d.pools.clone()).unwrap_or_default();
        assert_eq!(pools.get("p1").map(|p| p.state), Some(AccessState::Standby));

        // Giveback recorded: new owner and epoch; the override goes, on disk too.
        let mut c = cfg();
        p1(&mut c).owner = "B".into();
        p1(&mut c).epoch = 4;
        again.set_config(c);
        assert!(again.overrides().is_empty());
        assert!(store.load()?.is_empty());
        let third = Reconciler::new(Box::new(sim()), Local::new("A")).with_store(store)?;
        assert!(third.overrides().is_empty());
        Ok(())
    }

    #[test]
    fn a_flip_to_the_state_a_pool_already_has_writes_nothing(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let mut r = rec();
        r.reconcile(true, false)?;
        // The owner's paths are active after the reconcile: heartbeat's
        // flip after a takeover finds them so, and must not stall the
        // hosts with a Transitioning phase.
        let f = r.set_access_state("p1", AccessState::Active)?;
        assert_eq!((f.steps, f.state), (0, AccessState::Active), "{f:?}");
        // A real change goes through Transitioning: two writes per
        // protocol (ALUA once for the LU group, ANA once per port).
        let f = r.set_access_state("p1", AccessState::Standby)?;
        assert!(f.steps >= 4, "{f:?}");
        assert_eq!(r.set_access_state("p1", AccessState::Standby)?.steps, 0);
        let pools = r.last().map(|d| d.pools.clone()).unwrap_or_default();
        assert_eq!(pools.get("p1").map(|p| p.state), Some(AccessState::Standby));
        Ok(())
    }

    #[test]
    fn no_active_flip_where_the_devices_serve_no_data() -> Result<(), Box<dyn std::error::Error>> {
        let mut s = sim();
        s.set_backed("/dev/mapper/dxvol-ab01", false);
        let mut r = Reconciler::new(Box::new(s), Local::new("A"));
        r.set_config(cfg());
        let o = r.reconcile(true, false)?;
        assert!(
            o.pending.iter().any(|p| p.contains("standby here")),
            "{o:?}"
        );
        assert!(matches!(
            r.set_access_state("p1", AccessState::Active),
            Err(FlipError::NotServing { .. })
        ));
        assert!(r.overrides().is_empty(), "a refused flip records nothing");
        // Standby is always possible, and nothing is left to do after.
        r.set_access_state("p1", AccessState::Standby)?;
        assert!(r.reconcile(true, false)?.steps.is_empty());
        Ok(())
    }

    #[test]
    fn no_active_flip_while_a_stale_lu_group_member_serves_no_data(
    ) -> Result<(), Box<dyn std::error::Error>> {
        // v2 is still in configfs (and in p1's LU group, which one write
        // moves as a whole) but left the configuration; its device is an
        // error table.
        let mut s = sim();
        s.add_device("/dev/mapper/dxvol-ab02");
        s.set_backed("/dev/mapper/dxvol-ab02", false);
        let mut with_v2 = cfg();
        let mut v2 = with_v2.volumes["v1"].clone();
        v2.name = "v2".into();
        v2.serial = "ab02".into();
        with_v2.volumes.insert(v2.name.clone(), v2);
        let mut e3 = with_v2.exports["e1"].clone();
        e3.name = "e3".into();
        e3.volume = "v2".into();
        e3.lun = Some(1);
        with_v2.exports.insert(e3.name.clone(), e3);
        let mut r = Reconciler::new(Box::new(s), Local::new("A"));
        r.set_config(with_v2);
        r.reconcile(true, false)?;
        r.set_config(cfg());
        assert!(matches!(
            r.set_access_state("p1", AccessState::Active),
            Err(FlipError::NotServing { device, .. }) if device.ends_with("ab02")
        ));
        Ok(())
    }

    #[test]
    fn a_flip_whose_override_cannot_be_saved_still_flips_and_says_so(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let state = dir.path().join("state");
        let mut r = Reconciler::new(Box::new(sim()), Local::new("A"))
            .with_store(OverrideStore::new(&state))?;
        // The state dir becomes a file: nothing can be saved under it.
        std::fs::write(&state, "")?;
        r.set_config(cfg());
        r.reconcile(true, false)?;
        let f = r.set_access_state("p1", AccessState::Standby)?;
        assert!(!f.persisted && f.steps == 4, "{f:?}");
        assert_eq!(
            r.overrides().get("p1").map(|o| o.state),
            Some(AccessState::Standby)
        );
        Ok(())
    }

    #[test]
    fn an_unreadable_override_file_is_refused_not_guessed_empty(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = OverrideStore::new(dir.path());
        std::fs::write(store.path(), "not json")?;
        let r = Reconciler::new(Box::new(sim()), Local::new("A")).with_store(store.clone());
        assert!(matches!(r, Err(PersistError::State(_))));
        // Once the operator removes it, states follow ownership and the
        // next flip writes a good file again.
        std::fs::remove_file(store.path())?;
        let mut r = Reconciler::new(Box::new(sim()), Local::new("A")).with_store(store.clone())?;
        assert!(r.overrides().is_empty());
        r.set_config(cfg());
        r.reconcile(true, false)?;
        r.set_access_state("p1", AccessState::NonOptimized)?;
        assert_eq!(
            store.load()?.get("p1").map(|o| o.state),
            Some(AccessState::NonOptimized)
        );
        Ok(())
    }

    #[test]
    fn start_up_builds_then_nothing_to_do() {
        let mut r = rec();
        let first = r.reconcile(true, false).unwrap_or_default();
        assert!(!first.steps.is_empty());
        assert!(!first.drift, "nothing applied before: nothing drifted");
        let again = r.reconcile(true, false).unwrap_or_default();
        assert!(again.steps.is_empty(), "{:?}", again.steps);
        assert!(!again.drift, "configfs reads back as applied");
    }

    #[test]
    fn a_new_desired_state_is_not_drift_an_out_of_band_change_is() {
        let mut r = rec();
        assert!(r.reconcile(true, false).is_ok());
        let mut c = cfg();
        p1(&mut c).owner = "B".into();
        r.set_config(c);
        let o = r.reconcile(true, false).unwrap_or_default();
        assert!(!o.steps.is_empty() && !o.drift, "{o:?}");
        // Someone flips a port group by hand.
        let gp = crate::core::model::path::tg_pt_gp("v1", "dx_a");
        assert!(r
            .backend
            .write(&format!("{gp}/alua_access_state"), "0")
            .is_ok());
        let o = r.reconcile(true, false).unwrap_or_default();
        assert!(o.drift && o.steps.len() == 1, "{o:?}");
    }

    #[test]
    fn a_flip_sticks_until_the_ownership_record_changes() {
        let mut r = rec();
        assert!(r.reconcile(true, false).is_ok());
        let f = r.set_access_state("p1", AccessState::Standby);
        assert!(
            matches!(&f, Ok(f) if f.volumes == 1 && f.ana_group == Some(2) && f.steps == 4),
            "{f:?}"
        );
        assert!(
            r.reconcile(true, false).is_ok_and(|o| o.steps.is_empty()),
            "the override holds"
        );
        let mut c = cfg();
        p1(&mut c).owner = "B".into();
        p1(&mut c).epoch = 4;
        r.set_config(c);
        assert!(r.overrides().is_empty());
        assert!(matches!(
            r.set_access_state("nope", AccessState::Active),
            Err(FlipError::UnknownPool(_))
        ));
    }
}
