//! Ownership moves: export (and giveback), import and takeover.

use super::{Cluster, Manager, Outcome};
use crate::backend::PoolBackend;
use crate::core::names::check_pool_name;
use crate::core::ownership::{check_import, check_takeover, Import, PartnerView};
use crate::core::Invalid;
use crate::error::PoolError;
use duplex_api::change::Change;
use duplex_api::methods::pool::{ExportResult, ImportResult, TakeoverResult, TakeoverTimings};
use duplex_api::model::Object;
use duplex_api::topics;
use serde_json::json;
use std::time::Instant;

impl<B: PoolBackend, C: Cluster> Manager<B, C> {
    /// `pool.export`: deactivates the pool here, then verifies that
    /// device-mapper holds nothing of it. With `to`, hands the system_id to
    /// the partner afterwards (giveback: the desired state must already
    /// name the partner as owner).
    pub async fn export_pool(
        &self,
        name: &str,
        to: Option<&str>,
    ) -> Result<ExportResult, PoolError> {
        check_pool_name("name", name)?;
        let (_g, cfg) = self.begin_urgent().await?;
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
        Ok(ExportResult {
            pool: name.into(),
            outcome: if was_active || handed {
                Outcome::Changed
            } else {
                Outcome::Unchanged
            },
            dm_clean: true,
            handed_to: to.filter(|_| handed).map(str::to_string),
        })
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
    pub async fn import_pool(&self, name: &str) -> Result<ImportResult, PoolError> {
        check_pool_name("name", name)?;
        let (g, cfg) = self.begin_urgent().await?;
        self.owned_pool(&cfg, name, "name")?;
        let o = self.visible_pool(name).await?;
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
            Import::Already => Outcome::Unchanged,
            Import::Activate => Outcome::Changed,
        };
        // Also when already imported: every volume must be up (idempotent).
        self.activate(name).await?;
        // Imported on request: the reconciler may keep it up again.
        self.hold(name, false).await;
        let dm = self.sync_dm(&cfg, None).await?;
        // The pool serves: the report for the reply only reads (as
        // pool.status does), so the next move need not wait for it.
        drop(g);
        let ms = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.cluster
            .publish(
                topics::POOL_IMPORTED,
                json!({"pool": name, "controller": self.me, "duration_ms": ms}),
            )
            .await;
        let v = self.pool_json(&cfg, name, outcome).await?;
        Ok(ImportResult {
            outcome: v.outcome,
            pool: v.pool,
            duration_ms: ms,
            dm,
        })
    }

    /// `pool.takeover`: after fencing, with the current cluster epoch:
    /// record ownership (unless heartbeat did), rewrite the system_id,
    /// activate everything.
    pub async fn takeover_pool(&self, name: &str, epoch: u64) -> Result<TakeoverResult, PoolError> {
        check_pool_name("name", name)?;
        let g = self.lock_urgent().await;
        let t0 = Instant::now();
        let cfg = self.config().await?;
        let desired = Self::desired_pool(&cfg, name, "name")?;
        let cluster_epoch = cfg.cluster.as_ref().map_or(0, |c| c.epoch);
        let system_id = self.visible_system_id(name).await?;
        let plan = check_takeover(desired, &system_id, &self.me, epoch, cluster_epoch)?;
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
                .take_over(name, &system_id)
                .await
                .map_err(PoolError::backend(format!(
                    "take over the system_id of pool {name}"
                )))?;
        }
        let sysid_ms = t_sysid.elapsed().as_millis();
        let t_act = Instant::now();
        self.activate(name).await?;
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
        // The pool serves: what follows (the event, the report for the
        // reply) only reads, as pool.status does, and the takeover of the
        // partner's next pool need not wait for it.
        drop(g);
        let total = u64::try_from(t0.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(pool = name, epoch, from = %system_id, total_ms = total, "took over pool");
        self.cluster
            .publish(
                topics::POOL_TAKEN_OVER,
                json!({"pool": name, "controller": self.me, "from": system_id,
                "epoch": epoch, "duration_ms": total}),
            )
            .await;
        let cfg = self.config().await?;
        let v = self
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
        let ms = |d: u128| u64::try_from(d).unwrap_or(u64::MAX);
        Ok(TakeoverResult {
            outcome: v.outcome,
            pool: v.pool,
            duration_ms: total,
            timings_ms: TakeoverTimings {
                system_id: ms(sysid_ms),
                activate: ms(activate_ms),
                dm_switch: ms(dm_ms),
            },
            dm,
        })
    }
}
