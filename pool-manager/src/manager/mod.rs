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

use crate::backend::{PoolBackend, PoolSpec};
use crate::core::disk::{qualify, DiskInfo, PartnerDisks, Refusal};
use crate::core::dmvol;
use crate::core::health::{self, usage, Usage};
use crate::core::identity::Identity;
use crate::core::layout::Layout;
use crate::core::names::{check_pool_name, check_volume_name, device_path, vg_name};
use crate::core::observed::ObservedPool;
use crate::core::ownership::{check_import, check_takeover, Import, PartnerView};
use crate::core::reconcile::{plan, Drift, Step};
use crate::core::thin::{format_size, metadata_size, parse_size, EXTENT};
use crate::core::Invalid;
use crate::error::PoolError;
pub use cluster::{Cluster, FakeCluster, RouterCluster};
use duplex_api::change::Change;
use duplex_api::model::{Config, Disk, Object, Pool, Tier, Volume};
use duplex_api::syntax::Size;
use duplex_api::topics;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use tokio::sync::Mutex;

/// `pool.create` parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreatePool {
    /// Pool name.
    pub name: String,
    /// `linear`, `mirror`, `raid5`, `raid6`, `raid10`.
    pub layout: String,
    /// Mirror copies (2 or 3).
    #[serde(default)]
    pub copies: Option<u8>,
    /// Data disks: stable path, kernel name, serial or WWN.
    pub disks: Vec<String>,
    /// Hot spares, same forms.
    #[serde(default)]
    pub spares: Vec<String>,
    /// Overrides the tier the disks report.
    #[serde(default)]
    pub tier: Option<Tier>,
    /// Erase partitions and signatures of the disks first.
    #[serde(default)]
    pub wipe: bool,
}

/// `volume.create` parameters.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVolume {
    /// Pool.
    pub pool: String,
    /// Volume name (unique in the cluster).
    pub name: String,
    /// Size with a unit (`"10GiB"`).
    pub size: String,
}

/// Outcome of an idempotent operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Something was changed.
    Changed,
    /// It was already so; nothing changed.
    Unchanged,
}

#[derive(Default)]
struct Memory {
    drifts: BTreeSet<String>,
    alerts: BTreeSet<String>,
    progress: BTreeMap<String, i64>,
}

/// The pool-manager of one controller.
pub struct Manager<B, C> {
    backend: B,
    cluster: C,
    me: String,
    partner: Option<String>,
    op: Mutex<()>,
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

fn find_disk<'a>(disks: &'a [DiskInfo], r: &str) -> Option<&'a DiskInfo> {
    let r = r.trim();
    disks.iter().find(|d| {
        d.path == r
            || d.wwn == r
            || d.serial == r
            || d.kernel_name == r
            || format!("/dev/{}", d.kernel_name) == r
    })
}

fn volume_json(v: &Volume) -> Value {
    json!({
        "name": v.name, "pool": v.pool, "size": v.size, "size_bytes": v.size.bytes(),
        "device": dmvol::device_path(&v.serial),
        "lv_device": device_path(&v.pool, &v.name),
        "read_only": v.read_only,
        "serial": v.serial, "wwn": v.wwn, "nguid": v.nguid, "uuid": v.uuid,
        "parent": v.parent_snapshot,
    })
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
    /// desired state `cfg`: linear over the active LVs of pools recorded
    /// for us, error tables elsewhere, none for volumes no longer recorded.
    /// `release` names a pool whose devices must become error tables
    /// whatever LVM shows (an export: the linear devices hold the LVs open,
    /// so they are swapped before the deactivation). Returns what changed.
    async fn sync_dm(&self, cfg: &Config, release: Option<&str>) -> Result<Value, PoolError> {
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
            let linear = wanted.iter().filter(|w| w.state.table.is_linear()).count();
            tracing::info!(
                create = plan.create.len(),
                swap = plan.reload.len(),
                resume = plan.resume.len(),
                remove = plan.remove.len(),
                linear,
                "per-volume devices"
            );
            left = self
                .backend
                .dm_apply(&plan)
                .await
                .map_err(PoolError::backend("switch the per-volume devices"))?;
        }
        Ok(json!({
            "created": plan.create.len(), "swapped": plan.reload.len(),
            "resumed": plan.resume.len(),
            "removed": plan.remove.len().saturating_sub(left.len()),
            "still_open": left, "conflicts": plan.conflicts, "bad_serial": bad,
        }))
    }

    /// [`Self::sync_dm`] after an operation that already succeeded: a
    /// failure is logged and reported in the result (`dm_error`), the
    /// reconciler retries.
    async fn sync_dm_after(&self, what: &str) -> Value {
        let r = match self.config().await {
            Ok(cfg) => self.sync_dm(&cfg, None).await,
            Err(e) => Err(e),
        };
        match r {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e.chain(), "per-volume devices after {what}; the reconciler retries");
                json!({"dm_error": e.chain()})
            }
        }
    }

    /// `disk.list`: with `local`, this controller's discovery only (what the
    /// partner asks); otherwise every disk with its tier and whether it may
    /// join a pool, and why not.
    pub async fn disk_list(&self, local: bool) -> Result<Value, PoolError> {
        let disks = self
            .backend
            .discover()
            .await
            .map_err(PoolError::backend("discover disks"))?;
        if local {
            return Ok(json!({ "controller": self.me, "disks": disks }));
        }
        let cfg = self.config().await?;
        let partner = self.partner_disks().await;
        let pview = match (&partner, &self.partner) {
            (Ok(d), Some(p)) => PartnerDisks::Seen(p, d),
            (Err(Some(p)), _) => PartnerDisks::Unreachable(p),
            _ => PartnerDisks::None,
        };
        let rows: Vec<Value> = disks
            .iter()
            .map(|d| {
                let in_pool = cfg
                    .pools
                    .values()
                    .find(|p| p.disks.contains(&d.wwn))
                    .map(|p| p.name.as_str());
                let q = qualify(d, pview, in_pool, false);
                let shared = matches!(pview, PartnerDisks::Seen(_, theirs) if theirs.iter().any(|t| t.wwn == d.wwn));
                json!({
                    "path": d.path, "kernel_name": d.kernel_name, "wwn": d.wwn,
                    "wwn_derived": d.wwn_derived, "serial": d.serial, "model": d.model,
                    "size": d.size, "rotational": d.rotational, "transport": d.transport,
                    "tier": cfg.disks.get(&d.wwn).map_or(d.tier(), |r| r.tier),
                    "shared": shared, "pool": in_pool, "vg": d.vg,
                    "qualifies": q.is_ok(),
                    "wipe_would_qualify": q.as_ref().err().is_some_and(Refusal::wipeable),
                    "refusal": q.as_ref().err().map(|r| r.explain(&d.path)),
                })
            })
            .collect();
        Ok(json!({"controller": self.me, "partner_reachable": partner.is_ok(), "disks": rows}))
    }

    /// `pool.layouts`: every layout for `disks` disks.
    pub fn layouts(disks: usize) -> Value {
        let rows: Vec<_> = Layout::all().iter().map(|l| l.info(disks)).collect();
        json!({"disks": disks, "layouts": rows})
    }

    /// `pool.create`.
    pub async fn create_pool(&self, req: CreatePool) -> Result<Value, PoolError> {
        check_pool_name("name", &req.name)?;
        let layout = Layout::parse(&req.layout, req.copies)?;
        layout.check_disks("disks", req.disks.len())?;
        let mut seen = BTreeSet::new();
        for (i, d) in req.disks.iter().chain(req.spares.iter()).enumerate() {
            if !seen.insert(d.trim()) {
                let field = if i < req.disks.len() {
                    format!("disks[{i}]")
                } else {
                    format!("spares[{}]", i - req.disks.len())
                };
                return Err(Invalid::new(field, format!("{d} is listed twice")).into());
            }
        }
        let _g = self.op.lock().await;
        let cfg = self.config().await?;
        let observed = self.observe_pool(&req.name).await?;
        if let Some(p) = cfg.pools.get(&req.name) {
            // Idempotent: the same pool, ours, already built.
            let same = p.owner == self.me
                && p.layout == layout.to_config()
                && p.copies.unwrap_or(2) == layout.config_copies().unwrap_or(2)
                && observed
                    .as_ref()
                    .is_some_and(|o| o.thin.is_some() && o.system_id == self.me);
            if same {
                return self.pool_json(&cfg, &req.name, Outcome::Unchanged).await;
            }
            if p.owner != self.me || observed.as_ref().is_some_and(|o| o.thin.is_some()) {
                return Err(PoolError::Conflict {
                    field: "name".into(),
                    reason: format!("pool {} exists already", req.name),
                });
            }
            // Recorded but not built (a crash or failure last time): build.
        } else if observed.is_some() {
            return Err(PoolError::Conflict {
                field: "name".into(),
                reason: format!(
                    "volume group {} exists already on the disks",
                    vg_name(&req.name)
                ),
            });
        }
        let local = self
            .backend
            .discover()
            .await
            .map_err(PoolError::backend("discover disks"))?;
        let partner = self.partner_disks().await;
        let pview = match (&partner, &self.partner) {
            (Ok(d), Some(p)) => PartnerDisks::Seen(p, d),
            (Err(Some(p)), _) => PartnerDisks::Unreachable(p),
            _ => PartnerDisks::None,
        };
        let mut chosen: Vec<(&DiskInfo, bool)> = Vec::new();
        for (i, r) in req
            .disks
            .iter()
            .map(|r| (r, false))
            .chain(req.spares.iter().map(|r| (r, true)))
            .enumerate()
        {
            let (r, spare) = r;
            let field = if spare {
                format!("spares[{}]", i - req.disks.len())
            } else {
                format!("disks[{i}]")
            };
            let d = find_disk(&local, r).ok_or_else(|| {
                Invalid::new(&field, format!("controller {} sees no disk {r:?}", self.me))
            })?;
            let in_pool = cfg
                .pools
                .values()
                .find(|p| p.disks.contains(&d.wwn) && p.name != req.name)
                .map(|p| p.name.as_str());
            // A recorded-but-unbuilt pool of the same name may already have
            // stamped its own disks; those are ours to reuse.
            let own_vg = d.vg.as_deref() == Some(vg_name(&req.name).as_str());
            let mut check = d.clone();
            if own_vg {
                check.vg = None;
                check.signature = None;
            }
            if let Err(refusal) = qualify(&check, pview, in_pool, req.wipe) {
                let msg = refusal.explain(&d.path);
                return Err(match refusal {
                    Refusal::InPool { .. }
                    | Refusal::InVolumeGroup { .. }
                    | Refusal::Mounted { .. }
                    | Refusal::Held { .. } => PoolError::Conflict { field, reason: msg },
                    _ => Invalid::new(field, msg).into(),
                });
            }
            chosen.push((d, spare));
        }
        let tiers: BTreeSet<Tier> = chosen.iter().map(|(d, _)| d.tier()).collect();
        let tier =
            match (req.tier, tiers.len()) {
                (Some(t), _) => t,
                (None, 1) => tiers.into_iter().next().unwrap_or(Tier::Regular),
                _ => return Err(Invalid::new(
                    "disks",
                    "the disks mix fast and regular tiers; pick one tier or pass tier to override",
                )
                .into()),
            };
        let data: Vec<&DiskInfo> = chosen.iter().filter(|(_, s)| !s).map(|(d, _)| *d).collect();
        let smallest = data.iter().map(|d| d.size).min().unwrap_or(0);
        let raw =
            smallest.saturating_mul(u64::try_from(layout.disks_used(data.len())).unwrap_or(0));
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let usable = (raw as f64 * layout.capacity_fraction(data.len())) as u64;
        let meta = metadata_size(usable);
        if usable < meta.saturating_mul(4).max(64 * EXTENT) {
            return Err(Invalid::new("disks", "the disks are too small for a pool").into());
        }
        let cluster_epoch = cfg.cluster.as_ref().map_or(0, |c| c.epoch);
        let mut seen_by = vec![self.me.clone()];
        if let Some(p) = &self.partner {
            seen_by.push(p.clone());
        }
        let mut changes = Vec::new();
        for (d, _) in &chosen {
            let rec = Disk {
                wwn: d.wwn.clone(),
                serial: d.serial.clone(),
                size: Size(d.size),
                tier: if req.tier.is_some() { tier } else { d.tier() },
                seen_by: seen_by.clone(),
            };
            if cfg.disks.get(&d.wwn) != Some(&rec) {
                changes.push(Change::Upsert(Object::Disk(rec)));
            }
        }
        let rec = Pool {
            name: req.name.clone(),
            tier,
            layout: layout.to_config(),
            home: self.me.clone(),
            owner: self.me.clone(),
            epoch: cluster_epoch,
            disks: chosen.iter().map(|(d, _)| d.wwn.clone()).collect(),
            copies: layout.config_copies(),
        };
        let was_recorded = cfg.pools.contains_key(&req.name);
        changes.push(Change::Upsert(Object::Pool(rec)));
        self.cluster
            .apply(changes)
            .await
            .map_err(PoolError::cluster(format!("record pool {}", req.name)))?;
        let spec = PoolSpec {
            pool: req.name.clone(),
            layout,
            disks: data.iter().map(|d| d.path.clone()).collect(),
            spares: chosen
                .iter()
                .filter(|(_, s)| *s)
                .map(|(d, _)| d.path.clone())
                .collect(),
            wipe: req.wipe,
            meta_size: meta,
        };
        tracing::info!(pool = %req.name, layout = %layout.describe(), disks = spec.disks.len(), "creating pool");
        if let Err(e) = self.backend.create_pool(&spec).await {
            let first = PoolError::Backend {
                op: format!("create pool {}", req.name),
                source: e,
            };
            return Err(self.rollback_pool(&req.name, was_recorded, first).await);
        }
        // A pool created again under an old name starts out not held.
        self.hold(&req.name, false).await;
        self.cluster
            .publish(
                topics::POOL_CREATED,
                json!({"pool": req.name, "layout": layout, "controller": self.me}),
            )
            .await;
        let cfg = self.config().await?;
        self.pool_json(&cfg, &req.name, Outcome::Changed).await
    }

    async fn rollback_pool(&self, pool: &str, was_recorded: bool, first: PoolError) -> PoolError {
        let mut left = Vec::new();
        let mut rb: Option<PoolError> = None;
        if let Err(e) = self.backend.remove_pool(pool).await {
            left.push(format!("volume group {}", vg_name(pool)));
            rb = Some(PoolError::Backend {
                op: format!("remove the half-built pool {pool}"),
                source: e,
            });
        }
        if !was_recorded {
            let del = Change::Delete {
                kind: duplex_api::model::Kind::Pool,
                key: pool.into(),
            };
            if let Err(e) = self.cluster.apply(vec![del]).await {
                left.push(format!("the record of pool {pool}"));
                rb.get_or_insert(PoolError::Cluster {
                    op: format!("delete the record of pool {pool}"),
                    source: e,
                });
            }
        }
        match rb {
            None => first,
            Some(rollback) => {
                tracing::error!(pool, left = ?left, "rollback failed");
                PoolError::RollbackFailed {
                    op: format!("create pool {pool}"),
                    left: left.join(", "),
                    source: Box::new(first),
                    rollback: Box::new(rollback),
                }
            }
        }
    }

    async fn pool_json(
        &self,
        cfg: &Config,
        name: &str,
        outcome: Outcome,
    ) -> Result<Value, PoolError> {
        let observed = self.observe_pool(name).await?;
        Ok(json!({"outcome": outcome, "pool": self.pool_status_one(cfg, name, observed.as_ref())}))
    }

    fn pool_status_one(&self, cfg: &Config, name: &str, o: Option<&ObservedPool>) -> Value {
        let d = cfg.pools.get(name);
        let (data_pct, meta_pct) = o.map_or((0.0, 0.0), ObservedPool::usage);
        let raid = o.map(ObservedPool::raid_state);
        let alerts = match (&raid, o) {
            (Some(r), Some(_)) => health::alerts(name, data_pct, meta_pct, r),
            _ => vec![],
        };
        json!({
            "name": name,
            "vg": vg_name(name),
            "recorded": d.is_some(),
            "home": d.map(|p| p.home.clone()),
            "owner": d.map(|p| p.owner.clone()),
            "epoch": d.map(|p| p.epoch),
            "tier": d.map(|p| p.tier),
            "layout": o.and_then(|o| o.layout).map(|l| json!(l)).or_else(|| {
                d.map(|p| {
                    let copies = p.copies.and_then(|c| u8::try_from(c).ok());
                    Layout::from_config(p.layout, copies).map_or_else(|_| json!(p.layout), |l| json!(l))
                })
            }),
            "copies": d.and_then(|p| p.copies),
            "system_id": o.map(|o| o.system_id.clone()),
            "visible": o.is_some(),
            "active_here": o.is_some_and(ObservedPool::active),
            "size": o.map(|o| o.size),
            "free": o.map(|o| o.free),
            "thin": o.and_then(|o| o.thin.clone()),
            "usage": {"data": usage(data_pct), "metadata": usage(meta_pct)},
            "raid": raid,
            "disks": o.map(|o| o.pvs.clone()),
            "volumes": o.map_or(0, |o| o.volumes.len()),
            "alerts": alerts,
        })
    }

    /// `pool.status`: one pool or all, desired and observed side by side,
    /// with usage levels, RAID state and sync/rebuild progress.
    pub async fn pool_status(&self, name: Option<&str>) -> Result<Value, PoolError> {
        let cfg = self.config().await?;
        let observed = self.observe().await?;
        let mut names: BTreeSet<String> = cfg.pools.keys().cloned().collect();
        names.extend(observed.iter().map(|o| o.pool.clone()));
        if let Some(n) = name {
            if !names.contains(n) {
                return Err(PoolError::NotFound {
                    what: "pool",
                    name: n.into(),
                    field: "name".into(),
                });
            }
            names = [n.to_string()].into();
        }
        let pools: Vec<Value> = names
            .iter()
            .map(|n| self.pool_status_one(&cfg, n, observed.iter().find(|o| &o.pool == n)))
            .collect();
        Ok(json!({"controller": self.me, "pools": pools}))
    }

    /// `pool.active_local`: pools with anything active here.
    pub async fn active_local(&self) -> Result<Value, PoolError> {
        let pools = self
            .backend
            .active_pools()
            .await
            .map_err(PoolError::backend("list active pools"))?;
        Ok(json!({"controller": self.me, "pools": pools}))
    }

    /// `pool.export`: deactivates the pool here, then verifies that
    /// device-mapper holds nothing of it. With `to`, hands the system_id to
    /// the partner afterwards (giveback: the desired state must already
    /// name the partner as owner).
    pub async fn export_pool(&self, name: &str, to: Option<&str>) -> Result<Value, PoolError> {
        check_pool_name("name", name)?;
        let _g = self.op.lock().await;
        let cfg = self.config().await?;
        let desired = Self::desired_pool(&cfg, name, "name")?;
        if let Some(t) = to {
            if Some(t) != self.partner.as_deref() {
                return Err(
                    Invalid::new("to", format!("{t:?} is not the partner controller")).into(),
                );
            }
            if desired.owner != t {
                return Err(PoolError::Conflict {
                    field: "to".into(),
                    reason: format!(
                        "the desired state records {} as owner of {name}; record {t} (with a new epoch) first",
                        desired.owner
                    ),
                });
            }
        }
        let o = self
            .observe_pool(name)
            .await?
            .ok_or_else(|| PoolError::NotFound {
                what: "pool",
                name: name.into(),
                field: "name".into(),
            })?;
        let was_active = o.active();
        // Error tables first: the linear devices hold the LVs open, and a
        // host must see I/O errors on this path, never stale data.
        self.sync_dm(&cfg, Some(name)).await?;
        if o.system_id == self.me {
            self.backend
                .deactivate_pool(name)
                .await
                .map_err(PoolError::backend(format!("deactivate pool {name}")))?;
        }
        let left = self
            .backend
            .dm_leftovers(name)
            .await
            .map_err(PoolError::backend(format!(
                "verify pool {name} is gone from device-mapper"
            )))?;
        if !left.is_empty() {
            tracing::error!(pool = name, devices = ?left, "EXPORT INCOMPLETE: device-mapper still holds the pool");
            self.cluster
                .publish(topics::ALERT, json!({"severity": "critical", "pool": name, "kind": "export_incomplete",
                    "message": format!("pool {name} still has device-mapper devices after export: {left:?}")}))
                .await;
            return Err(PoolError::DmLeftovers {
                pool: name.into(),
                devices: left,
            });
        }
        let mut handed = false;
        if let Some(t) = to {
            if o.system_id == self.me {
                self.backend
                    .hand_over(name, t)
                    .await
                    .map_err(PoolError::backend(format!("hand pool {name} to {t}")))?;
                handed = true;
            }
        }
        // Exported without a new owner: stays down until pool.import.
        self.hold(name, to.is_none()).await;
        self.cluster
            .publish(
                topics::POOL_EXPORTED,
                json!({"pool": name, "controller": self.me, "to": to}),
            )
            .await;
        Ok(
            json!({"pool": name, "outcome": if was_active || handed { Outcome::Changed } else { Outcome::Unchanged },
                  "dm_clean": true, "handed_to": to.filter(|_| handed)}),
        )
    }

    async fn partner_view(&self, pool: &str) -> PartnerView {
        let Some(p) = &self.partner else {
            return PartnerView::Alone;
        };
        match self.cluster.partner_active(p).await {
            Ok(list) if list.iter().any(|x| x == pool) => PartnerView::Active,
            Ok(_) => PartnerView::Inactive,
            Err(e) => {
                tracing::warn!(partner = %p, error = %e, "cannot ask the partner what it has active");
                PartnerView::Unreachable
            }
        }
    }

    /// `pool.import`: activates a pool carrying our system_id, never one the
    /// partner reports active.
    pub async fn import_pool(&self, name: &str) -> Result<Value, PoolError> {
        check_pool_name("name", name)?;
        let _g = self.op.lock().await;
        let cfg = self.config().await?;
        self.owned_pool(&cfg, name, "name")?;
        let o = self
            .observe_pool(name)
            .await?
            .ok_or_else(|| PoolError::NotFound {
                what: "pool",
                name: format!("{name} (no disk here carries {})", vg_name(name)),
                field: "name".into(),
            })?;
        let view = self.partner_view(name).await;
        let t0 = Instant::now();
        let outcome = match check_import(
            name,
            &o.system_id,
            o.active(),
            &self.me,
            self.partner.as_deref(),
            view,
        )? {
            Import::Already => {
                // Still make sure every volume is up (idempotent).
                self.backend
                    .activate_pool(name)
                    .await
                    .map_err(PoolError::backend(format!("activate pool {name}")))?;
                Outcome::Unchanged
            }
            Import::Activate => {
                self.backend
                    .activate_pool(name)
                    .await
                    .map_err(PoolError::backend(format!("activate pool {name}")))?;
                Outcome::Changed
            }
        };
        // Imported on request: the reconciler may keep it up again.
        self.hold(name, false).await;
        let dm = self.sync_dm(&cfg, None).await?;
        let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.cluster
            .publish(
                topics::POOL_IMPORTED,
                json!({"pool": name, "controller": self.me, "duration_ms": ms}),
            )
            .await;
        let mut v = self.pool_json(&cfg, name, outcome).await?;
        v["duration_ms"] = ms.into();
        v["dm"] = dm;
        Ok(v)
    }

    /// `pool.takeover`: after fencing, with the current cluster epoch:
    /// record ownership (unless heartbeat did), rewrite the system_id,
    /// activate everything.
    pub async fn takeover_pool(&self, name: &str, epoch: u64) -> Result<Value, PoolError> {
        check_pool_name("name", name)?;
        let _g = self.op.lock().await;
        let t0 = Instant::now();
        let cfg = self.config().await?;
        let desired = Self::desired_pool(&cfg, name, "name")?;
        let cluster_epoch = cfg.cluster.as_ref().map_or(0, |c| c.epoch);
        let o = self
            .observe_pool(name)
            .await?
            .ok_or_else(|| PoolError::NotFound {
                what: "pool",
                name: format!("{name} (no disk here carries {})", vg_name(name)),
                field: "name".into(),
            })?;
        let plan = check_takeover(desired, &o.system_id, &self.me, epoch, cluster_epoch)?;
        self.hold(name, false).await;
        if plan.record {
            let mut rec = desired.clone();
            rec.owner = self.me.clone();
            rec.epoch = epoch;
            self.cluster
                .apply(vec![Change::Upsert(Object::Pool(rec))])
                .await
                .map_err(PoolError::cluster(format!(
                    "record {} as owner of {name}",
                    self.me
                )))?;
        }
        let t_sysid = Instant::now();
        if plan.rewrite_system_id {
            self.backend
                .take_over(name, &o.system_id)
                .await
                .map_err(PoolError::backend(format!(
                    "take over the system_id of pool {name}"
                )))?;
        }
        let sysid_ms = t_sysid.elapsed().as_millis();
        let t_act = Instant::now();
        self.backend
            .activate_pool(name)
            .await
            .map_err(PoolError::backend(format!("activate pool {name}")))?;
        let activate_ms = t_act.elapsed().as_millis();
        // The desired state now names us (recorded above or by heartbeat).
        let t_dm = Instant::now();
        let mut now = cfg.clone();
        if let Some(p) = now.pools.get_mut(name) {
            p.owner = self.me.clone();
            p.epoch = epoch;
        }
        let dm = self.sync_dm(&now, None).await?;
        let dm_ms = t_dm.elapsed().as_millis();
        let total = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(pool = name, epoch, from = %o.system_id, total_ms = total, "took over pool");
        self.cluster
            .publish(
                topics::POOL_TAKEN_OVER,
                json!({"pool": name, "controller": self.me, "from": o.system_id,
                "epoch": epoch, "duration_ms": total}),
            )
            .await;
        let cfg = self.config().await?;
        let mut v = self
            .pool_json(
                &cfg,
                name,
                if plan.record || plan.rewrite_system_id {
                    Outcome::Changed
                } else {
                    Outcome::Unchanged
                },
            )
            .await?;
        v["duration_ms"] = total.into();
        v["timings_ms"] = json!({"system_id": u64::try_from(sysid_ms).unwrap_or(u64::MAX),
            "activate": u64::try_from(activate_ms).unwrap_or(u64::MAX),
            "dm_switch": u64::try_from(dm_ms).unwrap_or(u64::MAX)});
        v["dm"] = dm;
        Ok(v)
    }

    fn check_room(o: &ObservedPool) -> Result<(), PoolError> {
        let (d, m) = o.usage();
        for (what, p) in [("data", d), ("metadata", m)] {
            if usage(p) == Usage::Full {
                return Err(PoolError::PoolFull {
                    pool: o.pool.clone(),
                    what,
                    percent: p,
                });
            }
        }
        Ok(())
    }

    async fn ready_pool(&self, cfg: &Config, pool: &str) -> Result<ObservedPool, PoolError> {
        self.owned_pool(cfg, pool, "pool")?;
        let o = self
            .observe_pool(pool)
            .await?
            .ok_or_else(|| PoolError::Conflict {
                field: "pool".into(),
                reason: format!("pool {pool} is recorded but no disk here carries it"),
            })?;
        if o.system_id != self.me || o.thin.as_ref().is_none_or(|t| !t.active) {
            return Err(PoolError::Conflict {
                field: "pool".into(),
                reason: format!("pool {pool} is not imported here"),
            });
        }
        Ok(o)
    }

    /// `volume.create`: a thin volume with a new stable identity.
    pub async fn create_volume(&self, req: CreateVolume) -> Result<Value, PoolError> {
        check_pool_name("pool", &req.pool)?;
        check_volume_name("name", &req.pool, &req.name)?;
        let size = parse_size("size", &req.size)?;
        let _g = self.op.lock().await;
        let cfg = self.config().await?;
        let o = self.ready_pool(&cfg, &req.pool).await?;
        if let Some(v) = cfg.volumes.get(&req.name) {
            if v.pool == req.pool && v.size.bytes() == size && v.parent_snapshot.is_none() {
                // Idempotent (and completes a create interrupted last time).
                self.backend
                    .create_volume(&req.pool, &req.name, size)
                    .await
                    .map_err(PoolError::backend(format!("create volume {}", req.name)))?;
                return Ok(json!({"outcome": Outcome::Unchanged, "volume": volume_json(v)}));
            }
            return Err(PoolError::Conflict {
                field: "name".into(),
                reason: format!(
                    "volume {} exists already (pool {}, {})",
                    v.name, v.pool, v.size
                ),
            });
        }
        if o.volume(&req.name).is_some() {
            return Err(PoolError::Conflict {
                field: "name".into(),
                reason: format!(
                    "an unrecorded LV {} exists in {}",
                    req.name,
                    vg_name(&req.pool)
                ),
            });
        }
        Self::check_room(&o)?;
        let cap = o.thin.as_ref().map_or(0, |t| t.size);
        if size > cap {
            return Err(Invalid::new(
                "size",
                format!(
                    "{} is larger than the pool's capacity {}",
                    format_size(size),
                    format_size(cap)
                ),
            )
            .into());
        }
        let id = Identity::from_random(&random64());
        let rec = Volume {
            name: req.name.clone(),
            pool: req.pool.clone(),
            size: Size(size),
            thin: true,
            serial: id.serial,
            wwn: id.wwn,
            nguid: id.nguid,
            uuid: id.uuid,
            parent_snapshot: None,
            read_only: false,
        };
        self.record_then(
            rec,
            |rec| async move { self.backend.create_volume(&rec.pool, &rec.name, size).await },
            "create volume",
        )
        .await
    }

    /// Records `rec`, runs `build`, and deletes the record again if the
    /// build fails.
    async fn record_then<F, Fut>(
        &self,
        rec: Volume,
        build: F,
        what: &str,
    ) -> Result<Value, PoolError>
    where
        F: FnOnce(Volume) -> Fut,
        Fut: std::future::Future<Output = Result<(), crate::backend::BackendError>>,
    {
        let name = rec.name.clone();
        self.cluster
            .apply(vec![Change::Upsert(Object::Volume(rec.clone()))])
            .await
            .map_err(PoolError::cluster(format!("record volume {name}")))?;
        if let Err(e) = build(rec.clone()).await {
            let first = PoolError::Backend {
                op: format!("{what} {name}"),
                source: e,
            };
            let del = Change::Delete {
                kind: duplex_api::model::Kind::Volume,
                key: name.clone(),
            };
            if let Err(e2) = self.cluster.apply(vec![del]).await {
                return Err(PoolError::RollbackFailed {
                    op: format!("{what} {name}"),
                    left: format!("the record of volume {name} (the reconciler reports it)"),
                    source: Box::new(first),
                    rollback: Box::new(PoolError::Cluster {
                        op: format!("delete the record of volume {name}"),
                        source: e2,
                    }),
                });
            }
            return Err(first);
        }
        let dm = self.sync_dm_after(what).await;
        self.cluster
            .publish(
                topics::VOLUME_CREATED,
                json!({"volume": name, "pool": rec.pool, "parent": rec.parent_snapshot}),
            )
            .await;
        Ok(json!({"outcome": Outcome::Changed, "volume": volume_json(&rec), "dm": dm}))
    }

    fn desired_volume<'a>(
        cfg: &'a Config,
        name: &str,
        field: &str,
    ) -> Result<&'a Volume, PoolError> {
        cfg.volumes.get(name).ok_or_else(|| PoolError::NotFound {
            what: "volume",
            name: name.into(),
            field: field.into(),
        })
    }

    /// `volume.resize`: grow only.
    pub async fn resize_volume(&self, name: &str, size: &str) -> Result<Value, PoolError> {
        check_name_field("name", name)?;
        let size = parse_size("size", size)?;
        let _g = self.op.lock().await;
        let cfg = self.config().await?;
        let v = Self::desired_volume(&cfg, name, "name")?.clone();
        let o = self.ready_pool(&cfg, &v.pool).await?;
        let now = v.size.bytes();
        if size < now {
            return Err(Invalid::new(
                "size",
                format!(
                    "volumes only grow: {name} is {}, {} is smaller",
                    v.size,
                    format_size(size)
                ),
            )
            .into());
        }
        if size == now {
            self.backend
                .resize_volume(&v.pool, name, size)
                .await
                .map_err(PoolError::backend(format!("resize volume {name}")))?;
            return Ok(json!({"outcome": Outcome::Unchanged, "volume": volume_json(&v)}));
        }
        Self::check_room(&o)?;
        let mut rec = v.clone();
        rec.size = Size(size);
        // Recorded first: if LVM then fails, the reconciler grows it later
        // (volumes never shrink, so there is no rollback to record).
        self.cluster
            .apply(vec![Change::Upsert(Object::Volume(rec.clone()))])
            .await
            .map_err(PoolError::cluster(format!("record the new size of {name}")))?;
        self.backend
            .resize_volume(&v.pool, name, size)
            .await
            .map_err(PoolError::backend(format!(
                "grow volume {name} (recorded; the reconciler retries)"
            )))?;
        let dm = self.sync_dm_after("grow").await;
        self.cluster
            .publish(
                topics::VOLUME_RESIZED,
                json!({"volume": name, "size": rec.size}),
            )
            .await;
        Ok(json!({"outcome": Outcome::Changed, "volume": volume_json(&rec), "dm": dm}))
    }

    /// `volume.delete`.
    pub async fn delete_volume(&self, name: &str) -> Result<Value, PoolError> {
        check_name_field("name", name)?;
        let _g = self.op.lock().await;
        let cfg = self.config().await?;
        let Some(v) = cfg.volumes.get(name).cloned() else {
            return Ok(json!({"outcome": Outcome::Unchanged, "volume": name}));
        };
        self.ready_pool(&cfg, &v.pool).await?;
        let del = Change::Delete {
            kind: duplex_api::model::Kind::Volume,
            key: name.into(),
        };
        self.cluster
            .apply(vec![del])
            .await
            .map_err(PoolError::cluster(format!(
                "delete the record of volume {name}"
            )))?;
        // The device goes first: a linear one holds the LV open. It is
        // swapped to an error table, then removed (if a holder keeps it
        // open, the reconciler removes it later).
        let mut after = cfg.clone();
        after.volumes.remove(name);
        let deleted = match self.sync_dm(&after, None).await {
            Ok(_) => self
                .backend
                .delete_volume(&v.pool, name)
                .await
                .map_err(|e| PoolError::Backend {
                    op: format!("delete volume {name}"),
                    source: e,
                }),
            Err(e) => Err(e),
        };
        if let Err(first) = deleted {
            if let Err(e2) = self
                .cluster
                .apply(vec![Change::Upsert(Object::Volume(v.clone()))])
                .await
            {
                return Err(PoolError::RollbackFailed {
                    op: format!("delete volume {name}"),
                    left: format!("LV {}/{name} without a record", vg_name(&v.pool)),
                    source: Box::new(first),
                    rollback: Box::new(PoolError::Cluster {
                        op: format!("restore the record of volume {name}"),
                        source: e2,
                    }),
                });
            }
            return Err(first);
        }
        self.cluster
            .publish(
                topics::VOLUME_DELETED,
                json!({"volume": name, "pool": v.pool}),
            )
            .await;
        Ok(json!({"outcome": Outcome::Changed, "volume": name}))
    }

    /// `volume.snapshot` (read-only unless `read_only: false`) and
    /// `volume.clone` (a writable snapshot): a thin snapshot of `source`
    /// with its own identity, recorded with `parent_snapshot = source`.
    pub async fn snapshot(
        &self,
        source: &str,
        name: &str,
        read_only: bool,
        verb: &str,
    ) -> Result<Value, PoolError> {
        check_name_field("source", source)?;
        let _g = self.op.lock().await;
        let cfg = self.config().await?;
        let src = Self::desired_volume(&cfg, source, "source")?.clone();
        check_volume_name("name", &src.pool, name)?;
        let o = self.ready_pool(&cfg, &src.pool).await?;
        if let Some(v) = cfg.volumes.get(name) {
            if v.parent_snapshot.as_deref() == Some(source) && o.volume(name).is_some() {
                return Ok(json!({"outcome": Outcome::Unchanged, "volume": volume_json(v)}));
            }
            return Err(PoolError::Conflict {
                field: "name".into(),
                reason: format!("volume {name} exists already"),
            });
        }
        if o.volume(source).is_none() {
            return Err(PoolError::Conflict {
                field: "source".into(),
                reason: format!("volume {source} is recorded but missing in LVM"),
            });
        }
        Self::check_room(&o)?;
        let id = Identity::from_random(&random64());
        let rec = Volume {
            name: name.into(),
            pool: src.pool.clone(),
            size: src.size,
            thin: true,
            serial: id.serial,
            wwn: id.wwn,
            nguid: id.nguid,
            uuid: id.uuid,
            parent_snapshot: Some(source.into()),
            read_only,
        };
        let source = source.to_string();
        self.record_then(
            rec,
            |rec| async move {
                self.backend
                    .snapshot(&rec.pool, &source, &rec.name, read_only)
                    .await
            },
            verb,
        )
        .await
    }

    /// `volume.list`: volumes with identity, state and the snapshot tree.
    pub async fn list_volumes(&self, pool: Option<&str>) -> Result<Value, PoolError> {
        let cfg = self.config().await?;
        let observed = self.observe().await?;
        let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for v in cfg.volumes.values() {
            if let Some(p) = &v.parent_snapshot {
                children.entry(p.clone()).or_default().push(v.name.clone());
            }
        }
        let vols: Vec<Value> = cfg
            .volumes
            .values()
            .filter(|v| pool.is_none_or(|p| v.pool == p))
            .map(|v| {
                let ov = observed
                    .iter()
                    .find(|o| o.pool == v.pool)
                    .and_then(|o| o.volume(&v.name));
                let mut j = volume_json(v);
                j["present"] = ov.is_some().into();
                j["active_here"] = ov.is_some_and(|x| x.active).into();
                j["read_only"] = ov.map(|x| x.read_only).into();
                j["children"] = json!(children.get(&v.name).cloned().unwrap_or_default());
                j
            })
            .collect();
        fn tree(name: &str, children: &BTreeMap<String, Vec<String>>, depth: usize) -> Value {
            let kids: Vec<Value> = if depth > 64 {
                vec![]
            } else {
                children
                    .get(name)
                    .map(|k| k.iter().map(|c| tree(c, children, depth + 1)).collect())
                    .unwrap_or_default()
            };
            json!({"name": name, "children": kids})
        }
        let roots: Vec<Value> = cfg
            .volumes
            .values()
            .filter(|v| v.parent_snapshot.is_none() && pool.is_none_or(|p| v.pool == p))
            .map(|v| tree(&v.name, &children, 0))
            .collect();
        Ok(json!({"volumes": vols, "tree": roots}))
    }

    /// One reconciliation pass: plan against the desired state, apply the
    /// safe steps, publish new drift and health alerts, rebuild degraded
    /// RAID onto spares. Returns the plan and what happened.
    pub async fn reconcile(&self) -> Result<Value, PoolError> {
        let _g = self.op.lock().await;
        let cfg = self.config().await?;
        let observed = self.observe().await?;
        let held = self.held.lock().await.pools().clone();
        let steps = plan(&cfg, &observed, &self.me, &held);
        let mut results = Vec::new();
        let mut drifts = BTreeSet::new();
        for s in &steps {
            let r = match s {
                Step::ActivatePool { pool } => self.backend.activate_pool(pool).await,
                Step::CreateVolume { pool, volume, size } => {
                    self.backend.create_volume(pool, volume, *size).await
                }
                Step::GrowVolume { pool, volume, size } => {
                    self.backend.resize_volume(pool, volume, *size).await
                }
                Step::ActivateVolume { pool, volume } => {
                    self.backend.activate_volume(pool, volume).await
                }
                Step::Drift(d) => {
                    drifts.insert(serde_json::to_string(d).unwrap_or_default());
                    Ok(())
                }
            };
            if let Err(e) = &r {
                tracing::warn!(step = ?s, error = %e, "reconcile step failed");
            }
            results.push(json!({"step": s, "ok": r.is_ok(), "error": r.err().map(|e| PoolError::Backend{op: "reconcile".into(), source: e}.chain())}));
        }
        // The per-volume devices, on both controllers, after LVM.
        let dm = match self.sync_dm(&cfg, None).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(error = %e.chain(), "per-volume devices not reconciled");
                json!({"dm_error": e.chain()})
            }
        };
        let mut mem = self.memory.lock().await;
        for d in steps.iter().filter_map(|s| match s {
            Step::Drift(d) => Some(d),
            _ => None,
        }) {
            let key = serde_json::to_string(d).unwrap_or_default();
            if !mem.drifts.contains(&key) {
                let severity = if matches!(d, Drift::ActiveButNotOwner { .. }) {
                    "critical"
                } else {
                    "warning"
                };
                tracing::warn!(drift = %key, "drift");
                self.cluster
                    .publish(
                        "pool.drift",
                        json!({"severity": severity, "drift": d, "controller": self.me}),
                    )
                    .await;
            }
        }
        mem.drifts = drifts;
        // Health of the pools active here.
        let mut alerts = BTreeSet::new();
        let mut repairs = Vec::new();
        for o in observed
            .iter()
            .filter(|o| o.system_id == self.me && o.active())
        {
            let (d, m) = o.usage();
            let raid = o.raid_state();
            for a in health::alerts(&o.pool, d, m, &raid) {
                let key = format!("{}/{}/{}", a.pool, a.kind, a.severity);
                if !mem.alerts.contains(&key) {
                    tracing::warn!(pool = %a.pool, kind = a.kind, "{}", a.message);
                    self.cluster.publish(topics::ALERT, json!(a)).await;
                }
                alerts.insert(key);
            }
            if let health::RaidState::Syncing { percent } = raid {
                #[allow(clippy::cast_possible_truncation)]
                let step = (percent / 5.0).floor() as i64;
                if mem.progress.get(&o.pool) != Some(&step) {
                    mem.progress.insert(o.pool.clone(), step);
                    self.cluster
                        .publish(
                            topics::POOL_PROGRESS,
                            json!({"pool": o.pool, "operation": "raid_sync", "percent": percent}),
                        )
                        .await;
                }
            } else if mem.progress.remove(&o.pool).is_some() {
                self.cluster.publish(topics::POOL_PROGRESS, json!({"pool": o.pool, "operation": "raid_sync", "percent": 100.0, "done": true})).await;
            }
            if matches!(raid, health::RaidState::Degraded { .. })
                && o.pvs.iter().any(|p| p.spare && !p.missing)
            {
                tracing::warn!(pool = %o.pool, "rebuilding degraded RAID onto a spare");
                self.cluster
                    .publish(
                        topics::POOL_REBUILD,
                        json!({"pool": o.pool, "state": "started"}),
                    )
                    .await;
                let r = self.backend.repair(&o.pool).await;
                let ok = r.is_ok();
                if let Err(e) = &r {
                    tracing::error!(pool = %o.pool, error = %e, "rebuild failed");
                }
                self.cluster
                    .publish(
                        topics::POOL_REBUILD,
                        json!({"pool": o.pool, "state": if ok {"running"} else {"failed"}}),
                    )
                    .await;
                repairs.push(json!({"pool": o.pool, "ok": ok}));
            }
        }
        mem.alerts = alerts;
        Ok(json!({"steps": results, "repairs": repairs, "dm": dm}))
    }

    /// `pool.delete`: removes an empty pool (its volumes deleted first) from
    /// the desired state and from the disks, which are left blank.
    pub async fn delete_pool(&self, name: &str) -> Result<Value, PoolError> {
        check_pool_name("name", name)?;
        let _g = self.op.lock().await;
        let cfg = self.config().await?;
        let Some(rec) = cfg.pools.get(name).cloned() else {
            return Ok(json!({"outcome": Outcome::Unchanged, "pool": name}));
        };
        self.owned_pool(&cfg, name, "name")?;
        if let Some(v) = cfg.volumes.values().find(|v| v.pool == name) {
            return Err(PoolError::Conflict {
                field: "name".into(),
                reason: format!(
                    "pool {name} still has volume {}; delete its volumes first",
                    v.name
                ),
            });
        }
        if let Some(o) = self.observe_pool(name).await? {
            if let Some(v) = o.volumes.first() {
                return Err(PoolError::Conflict {
                    field: "name".into(),
                    reason: format!("pool {name} still holds the unrecorded LV {}", v.name),
                });
            }
        }
        let del = Change::Delete {
            kind: duplex_api::model::Kind::Pool,
            key: name.into(),
        };
        self.cluster
            .apply(vec![del])
            .await
            .map_err(PoolError::cluster(format!(
                "delete the record of pool {name}"
            )))?;
        if let Err(e) = self.backend.remove_pool(name).await {
            let first = PoolError::Backend {
                op: format!("remove pool {name}"),
                source: e,
            };
            if let Err(e2) = self
                .cluster
                .apply(vec![Change::Upsert(Object::Pool(rec))])
                .await
            {
                return Err(PoolError::RollbackFailed {
                    op: format!("delete pool {name}"),
                    left: format!("volume group {} without a record", vg_name(name)),
                    source: Box::new(first),
                    rollback: Box::new(PoolError::Cluster {
                        op: format!("restore the record of pool {name}"),
                        source: e2,
                    }),
                });
            }
            return Err(first);
        }
        self.cluster
            .publish(
                topics::POOL_DELETED,
                json!({"pool": name, "controller": self.me}),
            )
            .await;
        Ok(json!({"outcome": Outcome::Changed, "pool": name}))
    }

    /// `pool.repair`: rebuild a degraded pool onto its spares now.
    pub async fn repair(&self, name: &str) -> Result<Value, PoolError> {
        check_pool_name("name", name)?;
        let _g = self.op.lock().await;
        let cfg = self.config().await?;
        self.owned_pool(&cfg, name, "name")?;
        self.backend
            .repair(name)
            .await
            .map_err(PoolError::backend(format!("repair pool {name}")))?;
        self.cluster
            .publish(
                topics::POOL_REBUILD,
                json!({"pool": name, "state": "running"}),
            )
            .await;
        let cfg = self.config().await?;
        self.pool_json(&cfg, name, Outcome::Changed).await
    }
}

fn check_name_field(field: &str, name: &str) -> Result<(), PoolError> {
    duplex_api::syntax::check_name(name).map_err(|r| Invalid::new(field, r).into())
}
