//! Pools: disks, layouts, creation, status, deletion and repair.

use super::{Cluster, CreatePool, Manager, Outcome, Record, Rollback};
use crate::backend::{PoolBackend, PoolSpec};
use crate::core::disk::{qualify, DiskInfo, PartnerDisks, Refusal};
use crate::core::health::{self, usage};
use crate::core::layout::Layout;
use crate::core::names::{check_pool_name, vg_name};
use crate::core::observed::ObservedPool;
use crate::core::thin::{metadata_size, EXTENT};
use crate::core::Invalid;
use crate::error::PoolError;
use duplex_api::change::Change;
use duplex_api::methods::disk::{DiskRow, DiskView, ListResult};
use duplex_api::methods::pool::{
    ActiveLocalResult, Deleted, LayoutsResult, PoolInfo, PoolResult, StatusResult,
};
use duplex_api::model::{Config, Disk, Kind, Object, Pool, Tier};
use duplex_api::syntax::Size;
use duplex_api::topics;
use serde_json::json;
use std::collections::BTreeSet;

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

impl<B: PoolBackend, C: Cluster> Manager<B, C> {
    /// `disk.list`: with `local`, this controller's discovery only (what the
    /// partner asks); otherwise every disk with its tier and whether it may
    /// join a pool, and why not.
    pub async fn disk_list(&self, local: bool) -> Result<ListResult, PoolError> {
        let disks = self
            .backend
            .discover()
            .await
            .map_err(PoolError::backend("discover disks"))?;
        if local {
            return Ok(ListResult {
                controller: self.me.clone(),
                view: DiskView::Local {
                    disks: disks.iter().map(|d| json!(d)).collect(),
                },
            });
        }
        let cfg = self.config().await?;
        let partner = self.partner_disks().await;
        let pview = self.partner_view_of(&partner);
        let rows: Vec<DiskRow> = disks
            .iter()
            .map(|d| {
                let in_pool = cfg
                    .pools
                    .values()
                    .find(|p| p.disks.contains(&d.wwn))
                    .map(|p| p.name.as_str());
                let q = qualify(d, pview, in_pool, false);
                let shared = matches!(pview, PartnerDisks::Seen(_, theirs) if theirs.iter().any(|t| t.wwn == d.wwn));
                DiskRow {
                    path: d.path.clone(),
                    kernel_name: d.kernel_name.clone(),
                    wwn: d.wwn.clone(),
                    wwn_derived: d.wwn_derived,
                    serial: d.serial.clone(),
                    model: d.model.clone(),
                    size: d.size,
                    rotational: d.rotational,
                    transport: d.transport.clone(),
                    tier: cfg.disks.get(&d.wwn).map_or(d.tier(), |r| r.tier),
                    shared,
                    pool: in_pool.map(str::to_string),
                    vg: d.vg.clone(),
                    qualifies: q.is_ok(),
                    wipe_would_qualify: q.as_ref().err().is_some_and(Refusal::wipeable),
                    refusal: q.as_ref().err().map(|r| r.explain(&d.path)),
                }
            })
            .collect();
        Ok(ListResult {
            controller: self.me.clone(),
            view: DiskView::Checked {
                partner_reachable: partner.is_ok(),
                disks: rows,
            },
        })
    }

    /// `pool.layouts`: every layout for `disks` disks.
    pub fn layouts(disks: usize) -> LayoutsResult {
        LayoutsResult {
            disks,
            layouts: Layout::all().iter().map(|l| l.info(disks)).collect(),
        }
    }

    /// How an existing pool differs from a create request for its name
    /// (disks and spares, which the record keeps together, and the tier
    /// when the request names one), or None when it is the same pool.
    async fn differs_from(
        &self,
        p: &duplex_api::model::Pool,
        req: &CreatePool,
    ) -> Result<Option<String>, PoolError> {
        let local = self
            .backend
            .discover()
            .await
            .map_err(PoolError::backend("discover disks"))?;
        let mut wanted = BTreeSet::new();
        for r in req.disks.iter().chain(req.spares.iter()) {
            match find_disk(&local, r) {
                Some(d) => wanted.insert(d.wwn.clone()),
                None => return Ok(Some(format!("other disks (no disk {r:?} here)"))),
            };
        }
        let recorded: BTreeSet<String> = p.disks.iter().cloned().collect();
        if wanted != recorded {
            return Ok(Some(format!("other disks ({})", p.disks.join(", "))));
        }
        if let Some(t) = req.tier {
            if t != p.tier {
                return Ok(Some(format!("tier {:?}", p.tier)));
            }
        }
        Ok(None)
    }

    /// `pool.create`.
    pub async fn create_pool(&self, req: CreatePool) -> Result<PoolResult, PoolError> {
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
        let (_g, cfg) = self.begin().await?;
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
                // "Unchanged" only for the same request: other disks,
                // spares or tier under an existing name is a conflict, not
                // a quiet success the caller would take for its pool.
                if let Some(reason) = self.differs_from(p, &req).await? {
                    return Err(PoolError::Conflict {
                        field: "name".into(),
                        reason: format!("pool {} exists already with {reason}", req.name),
                    });
                }
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
        let pview = self.partner_view_of(&partner);
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
        let name = &req.name;
        let op = format!("create pool {name}");
        // A record from an earlier attempt stays: the reconciler reports it.
        let rollback = (!was_recorded).then(|| {
            Rollback::new(
                Record::delete(
                    format!("delete the record of pool {name}"),
                    Kind::Pool,
                    name,
                ),
                format!("the record of pool {name}"),
            )
        });
        self.record_then(
            &op,
            Record::new(format!("record pool {name}"), changes),
            || self.build_pool(&op, &spec),
            rollback,
        )
        .await?;
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

    /// Builds the pool of `spec`; if that fails, removes what was built.
    async fn build_pool(&self, op: &str, spec: &PoolSpec) -> Result<(), PoolError> {
        let pool = &spec.pool;
        tracing::info!(pool = %pool, layout = %spec.layout.describe(), disks = spec.disks.len(), "creating pool");
        let Err(e) = self.backend.create_pool(spec).await else {
            return Ok(());
        };
        let first = PoolError::Backend {
            op: op.into(),
            source: e,
        };
        match self.backend.remove_pool(pool).await {
            Ok(()) => Err(first),
            Err(source) => Err(first.with_failed_rollback(
                op,
                &format!("volume group {}", vg_name(pool)),
                PoolError::Backend {
                    op: format!("remove the half-built pool {pool}"),
                    source,
                },
            )),
        }
    }

    pub(super) async fn pool_json(
        &self,
        cfg: &Config,
        name: &str,
        outcome: Outcome,
    ) -> Result<PoolResult, PoolError> {
        let observed = self.observe_pool(name).await?;
        Ok(PoolResult {
            outcome,
            pool: self.pool_status_one(cfg, name, observed.as_ref()),
        })
    }

    fn pool_status_one(&self, cfg: &Config, name: &str, o: Option<&ObservedPool>) -> PoolInfo {
        let d = cfg.pools.get(name);
        let (data_pct, meta_pct) = o.map_or((0.0, 0.0), ObservedPool::usage);
        let raid = o.map(ObservedPool::raid_state);
        let alerts = match (&raid, o) {
            (Some(r), Some(_)) => health::alerts(name, data_pct, meta_pct, r),
            _ => vec![],
        };
        PoolInfo {
            name: name.to_string(),
            vg: vg_name(name),
            recorded: d.is_some(),
            home: d.map(|p| p.home.clone()),
            owner: d.map(|p| p.owner.clone()),
            epoch: d.map(|p| p.epoch),
            tier: d.map(|p| p.tier),
            layout: o.and_then(|o| o.layout).map(|l| json!(l)).or_else(|| {
                d.map(|p| {
                    let copies = p.copies.and_then(|c| u8::try_from(c).ok());
                    Layout::from_config(p.layout, copies)
                        .map_or_else(|_| json!(p.layout), |l| json!(l))
                })
            }),
            copies: d.and_then(|p| p.copies),
            system_id: o.map(|o| o.system_id.clone()),
            visible: o.is_some(),
            active_here: o.is_some_and(ObservedPool::active),
            size: o.map(|o| o.size),
            free: o.map(|o| o.free),
            // Absent thin pool is null, as before.
            thin: o.and_then(|o| o.thin.as_ref()).map(|t| json!(t)),
            usage: json!({"data": usage(data_pct), "metadata": usage(meta_pct)}),
            raid: raid.map(|r| json!(r)),
            disks: o.map(|o| o.pvs.iter().map(|p| json!(p)).collect()),
            volumes: o.map_or(0, |o| o.volumes.len()),
            alerts: alerts.iter().map(|a| json!(a)).collect(),
        }
    }

    /// `pool.status`: one pool or all, desired and observed side by side,
    /// with usage levels, RAID state and sync/rebuild progress.
    pub async fn pool_status(&self, name: Option<&str>) -> Result<StatusResult, PoolError> {
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
        let pools = names
            .iter()
            .map(|n| self.pool_status_one(&cfg, n, observed.iter().find(|o| &o.pool == n)))
            .collect();
        Ok(StatusResult {
            controller: self.me.clone(),
            pools,
            service: None,
        })
    }

    /// `pool.active_local`: pools with anything active here.
    pub async fn active_local(&self) -> Result<ActiveLocalResult, PoolError> {
        let pools = self
            .backend
            .active_pools()
            .await
            .map_err(PoolError::backend("list active pools"))?;
        Ok(ActiveLocalResult {
            controller: self.me.clone(),
            pools,
        })
    }

    /// `pool.delete`: removes an empty pool (its volumes deleted first) from
    /// the desired state and from the disks, which are left blank.
    pub async fn delete_pool(&self, name: &str) -> Result<Deleted, PoolError> {
        check_pool_name("name", name)?;
        let (_g, cfg) = self.begin().await?;
        let Some(rec) = cfg.pools.get(name).cloned() else {
            return Ok(Deleted {
                outcome: Outcome::Unchanged,
                pool: name.into(),
            });
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
        self.delete_recorded(
            Object::Pool(rec),
            || async {
                self.backend
                    .remove_pool(name)
                    .await
                    .map_err(PoolError::backend(format!("remove pool {name}")))
            },
            format!("volume group {} without a record", vg_name(name)),
            topics::POOL_DELETED,
            json!({"pool": name, "controller": self.me}),
        )
        .await?;
        Ok(Deleted {
            outcome: Outcome::Changed,
            pool: name.into(),
        })
    }

    /// `pool.repair`: rebuild a degraded pool onto its spares now.
    pub async fn repair(&self, name: &str) -> Result<PoolResult, PoolError> {
        check_pool_name("name", name)?;
        let (_g, cfg) = self.begin().await?;
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
