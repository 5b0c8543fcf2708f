//! The driver between the pure core and a backend: observe, build, plan,
//! apply; the pool flip; drift detection. Synchronous: the service runs it
//! on the blocking pool, one operation at a time.

use crate::backend::{observe, Observed, TargetBackend};
use crate::core::desired::{build, with_pool_state, Desired, DesiredConfig, Local};
use crate::core::model::{AccessState, Tree};
use crate::core::plan::{plan, Step};
use crate::error::ReconcileError;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Instant;

/// An access state set by `target.set_access_state`, valid while the pool's
/// ownership record is the one it was set under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Override {
    /// The state.
    pub state: AccessState,
    /// The pool's owner when it was set.
    pub owner: String,
    /// The pool's epoch when it was set.
    pub epoch: u64,
}

/// What one reconcile did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcome {
    /// The steps applied (or planned, for a dry run), secrets masked.
    pub steps: Vec<String>,
    /// Exports not built yet and why.
    pub pending: Vec<String>,
    /// Objects in configfs that are not ours.
    pub foreign: Vec<String>,
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
    /// Steps while transitioning plus steps to the final state.
    pub steps: usize,
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
    /// Applying failed.
    #[error(transparent)]
    Apply(#[from] ReconcileError),
}

/// The reconciler's state.
pub struct Reconciler {
    backend: Box<dyn TargetBackend>,
    local: Local,
    config: Option<DesiredConfig>,
    overrides: BTreeMap<String, Override>,
    /// Our part of configfs as the last successful apply left it; `None`
    /// when unknown (start-up, after a failure): then configfs is read.
    cache: Option<Tree>,
    last: Option<Desired>,
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
            cache: None,
            last: None,
        }
    }

    /// Replaces the desired state; overrides of pools whose ownership
    /// record changed are dropped (the new owner's decision wins).
    pub fn set_config(&mut self, cfg: DesiredConfig) {
        self.overrides.retain(|pool, o| {
            cfg.pools
                .iter()
                .any(|p| &p.name == pool && p.owner == o.owner && p.epoch == o.epoch)
        });
        self.config = Some(cfg);
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
            &|d| b.device_present(d),
            &overrides,
            observed,
        )
    }

    fn apply(&mut self, steps: &[Step], result: &Tree) -> Result<(), ReconcileError> {
        match self.backend.apply(steps) {
            Ok(()) => {
                self.cache = Some(result.clone());
                Ok(())
            }
            Err(e) => {
                self.cache = None;
                Err(e)
            }
        }
    }

    /// Brings configfs to the desired state. `fresh` reads configfs first
    /// (start-up, drift checks); otherwise the last applied state is
    /// trusted. With `dry_run` nothing is changed.
    pub fn reconcile(&mut self, fresh: bool, dry_run: bool) -> Result<Outcome, ReconcileError> {
        let t = Instant::now();
        let (observed, foreign) = match (&self.cache, fresh || dry_run) {
            (Some(c), false) => (c.clone(), Vec::new()),
            _ => {
                let o = self.observe()?;
                (o.tree, o.foreign)
            }
        };
        let d = self.desired(&observed);
        let steps = plan(&d.tree, &observed);
        if !dry_run {
            self.apply(&steps, &d.tree)?;
        }
        let out = Outcome {
            steps: crate::core::plan::masked(&steps),
            pending: d.pending.clone(),
            foreign,
            ms: ms_since(t),
        };
        if !dry_run {
            self.last = Some(d);
        }
        Ok(out)
    }

    /// Sets every volume of `pool` to `state` through this controller:
    /// first Transitioning (ALUA) / change (ANA), then whatever else the
    /// desired state needs, then the final state.
    pub fn set_access_state(&mut self, pool: &str, state: AccessState) -> Result<Flip, FlipError> {
        let t = Instant::now();
        let cfg = self.config.as_ref().ok_or(FlipError::NoConfig)?;
        let p = cfg
            .pools
            .iter()
            .find(|p| p.name == pool)
            .ok_or_else(|| FlipError::UnknownPool(pool.to_string()))?;
        let ov = Override {
            state,
            owner: p.owner.clone(),
            epoch: p.epoch,
        };
        let observed = match &self.cache {
            Some(c) => c.clone(),
            None => self.observe()?.tree,
        };
        let base = self.desired(&observed);
        let view = base.pools.get(pool).cloned();
        let mid = with_pool_state(&base, pool, AccessState::Transitioning);
        let first = plan(&mid.tree, &observed);
        self.apply(&first, &mid.tree)?;
        self.overrides.insert(pool.to_string(), ov);
        let fin = with_pool_state(&mid, pool, state);
        let second = plan(&fin.tree, &mid.tree);
        self.apply(&second, &fin.tree)?;
        self.last = Some(fin);
        Ok(Flip {
            pool: pool.to_string(),
            state,
            volumes: view.as_ref().map_or(0, |v| v.volumes.len()),
            ana_group: view.and_then(|v| v.ana_group),
            steps: first.len() + second.len(),
            ms: ms_since(t),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sim::SimBackend;
    use serde_json::json;

    fn cfg() -> DesiredConfig {
        serde_json::from_value(json!({
            "controller": [{"id": "A"}, {"id": "B"}],
            "pool": [{"name": "p1", "owner": "A", "epoch": 3}],
            "volume": [{"name": "v1", "pool": "p1", "serial": "ab01", "nguid": "3c8d2f645b0e4a7d9f216d1e0b7a4c11",
                        "uuid": "3c8d2f64-5b0e-4a7d-9f21-6d1e0b7a4c11"}],
            "export": [{"name": "e1", "volume": "v1", "protocol": "iscsi", "lun": 0, "host_group": "g"},
                       {"name": "e2", "volume": "v1", "protocol": "nvme", "nsid": 1, "host_group": "g"}],
            "host_group": [{"name": "g", "hosts": []}]
        }))
        .unwrap_or_default()
    }

    fn rec() -> Reconciler {
        let mut sim = SimBackend::new();
        sim.add_device("/dev/dx-p1/v1");
        let mut r = Reconciler::new(Box::new(sim), Local::new("A"));
        r.set_config(cfg());
        r
    }

    #[test]
    fn start_up_builds_then_nothing_to_do() {
        let mut r = rec();
        let first = r.reconcile(true, false).unwrap_or_default();
        assert!(!first.steps.is_empty());
        let again = r.reconcile(true, false).unwrap_or_default();
        assert!(again.steps.is_empty(), "{:?}", again.steps);
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
        c.pools[0].owner = "B".into();
        c.pools[0].epoch = 4;
        r.set_config(c);
        assert!(r.overrides().is_empty());
        assert!(matches!(
            r.set_access_state("nope", AccessState::Active),
            Err(FlipError::UnknownPool(_))
        ));
    }
}
