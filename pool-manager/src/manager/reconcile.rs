//! The reconciliation pass.

use super::{Cluster, Manager};
use crate::backend::PoolBackend;
use crate::core::health;
use crate::core::observed::ObservedPool;
use crate::core::reconcile::{plan, Drift, Step};
use crate::error::PoolError;
use duplex_api::methods::pool::{ReconcileResult, RepairStarted, StepResult};
use duplex_api::methods::volume::DmSync;
use duplex_api::model::Config;
use duplex_api::topics;
use serde_json::json;
use std::collections::BTreeSet;

impl<B: PoolBackend, C: Cluster> Manager<B, C> {
    /// One reconciliation pass: plan against the desired state, apply the
    /// safe steps, publish new drift and health alerts, rebuild degraded
    /// RAID onto spares. Returns the plan and what happened.
    pub async fn reconcile(&self) -> Result<ReconcileResult, PoolError> {
        let (g, cfg, observed) = self.read_for_reconcile().await?;
        self.reconcile_with(g, &cfg, observed).await
    }

    /// A pass's read phase: the lock, the desired state, LVM's view.
    async fn read_for_reconcile(
        &self,
    ) -> Result<(tokio::sync::MutexGuard<'_, ()>, Config, Vec<ObservedPool>), PoolError> {
        let (g, cfg) = self.begin().await?;
        let observed = self.observe().await?;
        Ok((g, cfg, observed))
    }

    /// The reconciler's own pass (after an event, or on its timer): as
    /// [`Self::reconcile`], but while it only reads (the desired state,
    /// LVM's reports) it gives way to a takeover, import or export that
    /// waits for the operation lock, and starts again once that is done.
    /// A takeover records the new owner first, so its own `config.changed`
    /// started a pass just before it, and under emulation the LVM reports
    /// of that pass held the lock for six seconds of the hosts' pause.
    pub async fn reconcile_in_background(&self) -> Result<ReconcileResult, PoolError> {
        loop {
            // Dropping the read kills its LVM command (read-only: safe).
            let read = tokio::select! {
                biased;
                () = self.urgent.pending() => None,
                r = self.read_for_reconcile() => Some(r?),
            };
            match read {
                Some((g, cfg, observed)) => return self.reconcile_with(g, &cfg, observed).await,
                None => {
                    tracing::info!(
                        "reconcile gives way to a takeover, import or export; again after it"
                    );
                    // The lock is fair: this waits until that operation is done.
                    drop(self.op.lock().await);
                }
            }
        }
    }

    async fn reconcile_with(
        &self,
        _g: tokio::sync::MutexGuard<'_, ()>,
        cfg: &Config,
        observed: Vec<ObservedPool>,
    ) -> Result<ReconcileResult, PoolError> {
        let held = self.held.lock().await.pools().clone();
        let steps = plan(cfg, &observed, &self.me, &held);
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
            results.push(StepResult {
                step: json!(s),
                ok: r.is_ok(),
                error: r.err().map(|e| {
                    PoolError::Backend {
                        op: "reconcile".into(),
                        source: e,
                    }
                    .chain()
                }),
            });
        }
        // The per-volume devices, on both controllers, after LVM.
        let dm = match self.sync_dm(cfg, None).await {
            Ok(v) => DmSync::Done(v),
            Err(e) => {
                tracing::warn!(error = %e.chain(), "per-volume devices not reconciled");
                DmSync::Failed {
                    dm_error: e.chain(),
                }
            }
        };
        let mut mem = self.memory.lock().await;
        for d in steps.iter().filter_map(|s| match s {
            Step::Drift(d) => Some(d),
            _ => None,
        }) {
            let key = serde_json::to_string(d).unwrap_or_default();
            // A planned move records the new owner before the old one
            // exports: for that moment the pool is active here and
            // recorded for the partner. Only a pass that sees it again is
            // a drift worth a critical alert.
            let not_owner = matches!(d, Drift::ActiveButNotOwner { .. });
            let confirmed = !not_owner || mem.drifts.contains(&key);
            if confirmed && !mem.announced.contains(&key) {
                let severity = if not_owner { "critical" } else { "warning" };
                tracing::warn!(drift = %key, "drift");
                self.cluster
                    .publish(
                        topics::POOL_DRIFT,
                        json!({"severity": severity, "drift": d, "controller": self.me}),
                    )
                    .await;
                mem.announced.insert(key);
            }
        }
        mem.announced.retain(|k| drifts.contains(k));
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
                repairs.push(RepairStarted {
                    pool: o.pool.clone(),
                    ok,
                });
            }
        }
        mem.alerts = alerts;
        Ok(ReconcileResult {
            steps: results,
            repairs,
            dm,
        })
    }
}
