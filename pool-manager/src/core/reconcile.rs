//! The reconciler: a pure `plan(desired, observed) -> Vec<Step>`.
//!
//! It only makes changes that cannot lose data and cannot create a second
//! owner: it activates pools that carry our system_id and that the desired
//! state gives us, creates plain volumes recorded but missing (a crash
//! between recording and creating), grows volumes and activates inactive
//! ones. Everything else (a pool we should own but cannot, a volume or pool
//! nobody asked for, a missing snapshot, a pool active here that the desired
//! state gives the partner) is reported as drift and left alone. Running the
//! plan twice is safe: the second plan is empty of actions.

use super::observed::ObservedPool;
use duplex_api::model::Config;
use serde::Serialize;
use std::collections::BTreeSet;

/// One step of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// Activate the pool's thin pool and volumes (our system_id).
    ActivatePool {
        /// The pool.
        pool: String,
    },
    /// Create a plain thin volume recorded in the desired state.
    CreateVolume {
        /// The pool.
        pool: String,
        /// The volume.
        volume: String,
        /// Size in bytes.
        size: u64,
    },
    /// Grow a volume to its recorded size.
    GrowVolume {
        /// The pool.
        pool: String,
        /// The volume.
        volume: String,
        /// Size in bytes.
        size: u64,
    },
    /// Activate one inactive volume of an active pool.
    ActivateVolume {
        /// The pool.
        pool: String,
        /// The volume.
        volume: String,
    },
    /// A difference the reconciler reports but does not repair.
    Drift(Drift),
}

/// A difference between the desired state and LVM left to the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "drift", rename_all = "snake_case")]
pub enum Drift {
    /// The desired state gives us a pool no disk here carries.
    PoolMissing {
        /// The pool.
        pool: String,
    },
    /// The desired state gives us a pool whose system_id is not ours (a
    /// takeover is needed; never done implicitly).
    NotOurSystemId {
        /// The pool.
        pool: String,
        /// The system_id found.
        system_id: String,
    },
    /// A pool is active here although the desired state gives it to
    /// another controller: a safety problem, reported as critical.
    ActiveButNotOwner {
        /// The pool.
        pool: String,
        /// The recorded owner.
        owner: String,
    },
    /// A `dx-` volume group the desired state does not know.
    UnknownPool {
        /// The pool.
        pool: String,
    },
    /// A volume in LVM that the desired state does not know.
    UnknownVolume {
        /// The pool.
        pool: String,
        /// The volume.
        volume: String,
    },
    /// A recorded snapshot or clone is missing; it cannot be recreated
    /// (its data is a point in time that is gone).
    SnapshotMissing {
        /// The pool.
        pool: String,
        /// The volume.
        volume: String,
    },
    /// A volume is larger in LVM than recorded (volumes never shrink).
    VolumeLarger {
        /// The pool.
        pool: String,
        /// The volume.
        volume: String,
        /// Recorded size.
        desired: u64,
        /// Size in LVM.
        actual: u64,
    },
}

impl Step {
    /// True for steps that change something.
    pub fn is_action(&self) -> bool {
        !matches!(self, Step::Drift(_))
    }
}

/// Plans the changes that make LVM match the desired state on controller
/// `me`. `observed` lists every `dx-` volume group this controller sees,
/// foreign ones included; `held` names the pools exported here by request,
/// which stay inactive until an explicit import.
pub fn plan(
    desired: &Config,
    observed: &[ObservedPool],
    me: &str,
    held: &BTreeSet<String>,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for p in desired.pools.values() {
        let obs = observed.iter().find(|o| o.pool == p.name);
        if held.contains(&p.name) {
            continue;
        }
        if p.owner != me {
            if let Some(o) = obs.filter(|o| o.active()) {
                steps.push(Step::Drift(Drift::ActiveButNotOwner {
                    pool: o.pool.clone(),
                    owner: p.owner.clone(),
                }));
            }
            continue;
        }
        let Some(o) = obs else {
            steps.push(Step::Drift(Drift::PoolMissing {
                pool: p.name.clone(),
            }));
            continue;
        };
        if o.system_id != me {
            steps.push(Step::Drift(Drift::NotOurSystemId {
                pool: p.name.clone(),
                system_id: o.system_id.clone(),
            }));
            continue;
        }
        let pool_active = o.thin.as_ref().is_some_and(|t| t.active);
        // One activation of the whole pool, also when only volumes are
        // inactive: it activates every thin LV in one batch, where one
        // step per volume costs an LVM command each.
        let recorded_inactive = desired
            .volumes
            .values()
            .any(|v| v.pool == p.name && o.volume(&v.name).is_some_and(|ov| !ov.active));
        if !pool_active || recorded_inactive {
            steps.push(Step::ActivatePool {
                pool: p.name.clone(),
            });
        }
        for v in desired.volumes.values().filter(|v| v.pool == p.name) {
            let size = v.size.bytes();
            match o.volume(&v.name) {
                None if v.parent_snapshot.is_some() => {
                    steps.push(Step::Drift(Drift::SnapshotMissing {
                        pool: p.name.clone(),
                        volume: v.name.clone(),
                    }))
                }
                None => steps.push(Step::CreateVolume {
                    pool: p.name.clone(),
                    volume: v.name.clone(),
                    size,
                }),
                Some(ov) => {
                    if ov.size < size {
                        steps.push(Step::GrowVolume {
                            pool: p.name.clone(),
                            volume: v.name.clone(),
                            size,
                        });
                    } else if ov.size > size {
                        steps.push(Step::Drift(Drift::VolumeLarger {
                            pool: p.name.clone(),
                            volume: v.name.clone(),
                            desired: size,
                            actual: ov.size,
                        }));
                    }
                    // Inactive volumes: the pool activation above.
                }
            }
        }
        for ov in &o.volumes {
            if desired
                .volumes
                .get(&ov.name)
                .is_none_or(|v| v.pool != p.name)
            {
                steps.push(Step::Drift(Drift::UnknownVolume {
                    pool: p.name.clone(),
                    volume: ov.name.clone(),
                }));
            }
        }
    }
    for o in observed {
        if !desired.pools.contains_key(&o.pool) {
            steps.push(Step::Drift(Drift::UnknownPool {
                pool: o.pool.clone(),
            }));
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::observed::{ObservedThin, ObservedVolume};
    use duplex_api::model::{Layout, Pool, Tier, Volume};
    use duplex_api::syntax::Size;

    fn desired() -> Config {
        let mut c = Config::default();
        c.pools.insert(
            "p".into(),
            Pool {
                name: "p".into(),
                tier: Tier::Regular,
                layout: Layout::Linear,
                home: "A".into(),
                owner: "A".into(),
                epoch: 1,
                disks: vec![],
                copies: None,
            },
        );
        for (n, parent) in [("v1", None), ("s1", Some("v1"))] {
            c.volumes.insert(
                n.into(),
                Volume {
                    name: n.into(),
                    pool: "p".into(),
                    size: Size(GIB),
                    thin: true,
                    serial: String::new(),
                    wwn: String::new(),
                    nguid: String::new(),
                    uuid: String::new(),
                    parent_snapshot: parent.map(str::to_string),
                    read_only: false,
                },
            );
        }
        c
    }

    const GIB: u64 = 1 << 30;

    fn vol(name: &str, size: u64, active: bool) -> ObservedVolume {
        ObservedVolume {
            name: name.into(),
            size,
            active,
            origin: None,
            read_only: false,
        }
    }

    /// Pool `p` as LVM shows it: `sysid`'s, thin pool `active` or not, with
    /// the volumes `(name, size, active)`.
    fn observed(sysid: &str, active: bool, vols: &[(&str, u64, bool)]) -> ObservedPool {
        ObservedPool {
            pool: "p".into(),
            system_id: sysid.into(),
            size: 8 << 30,
            free: 0,
            pvs: vec![],
            thin: Some(ObservedThin {
                size: 7 << 30,
                data_percent: 1.0,
                meta_percent: 1.0,
                meta_size: 16 << 20,
                active,
            }),
            layout: None,
            raid_health: String::new(),
            sync_percent: None,
            volumes: vols.iter().map(|&(n, size, a)| vol(n, size, a)).collect(),
        }
    }

    /// The plan of controller `me` for [`desired`] and the one pool `o`,
    /// nothing held.
    fn plan_one(o: ObservedPool, me: &str) -> Vec<Step> {
        plan(&desired(), &[o], me, &BTreeSet::new())
    }

    #[test]
    fn converged_state_plans_nothing() {
        let o = observed("A", true, &[("v1", GIB, true), ("s1", GIB, true)]);
        assert_eq!(plan_one(o, "A"), vec![]);
    }

    #[test]
    fn a_pool_exported_by_request_stays_inactive() {
        let o = observed("A", false, &[("v1", GIB, false)]);
        let held = BTreeSet::from(["p".to_string()]);
        assert_eq!(
            plan(&desired(), std::slice::from_ref(&o), "A", &held),
            vec![]
        );
        // Released (an import), the same state is activated again.
        let steps = plan_one(o, "A");
        assert_eq!(
            steps.first(),
            Some(&Step::ActivatePool { pool: "p".into() })
        );
    }

    #[test]
    fn activates_creates_grows_and_reports() {
        let o = observed("A", false, &[("v1", GIB / 2, false), ("x", 1 << 20, false)]);
        let steps = plan_one(o, "A");
        assert_eq!(
            steps,
            vec![
                Step::ActivatePool { pool: "p".into() },
                Step::Drift(Drift::SnapshotMissing {
                    pool: "p".into(),
                    volume: "s1".into()
                }),
                Step::GrowVolume {
                    pool: "p".into(),
                    volume: "v1".into(),
                    size: GIB
                },
                Step::Drift(Drift::UnknownVolume {
                    pool: "p".into(),
                    volume: "x".into()
                }),
            ]
        );
        let o = observed("A", true, &[("s1", GIB, false)]);
        let steps = plan_one(o, "A");
        assert!(steps.contains(&Step::CreateVolume {
            pool: "p".into(),
            volume: "v1".into(),
            size: GIB
        }));
        // An inactive volume of an active pool: one pool activation (a
        // batch), not one step per volume.
        assert_eq!(
            steps
                .iter()
                .filter(|s| **s == Step::ActivatePool { pool: "p".into() })
                .count(),
            1
        );
        assert!(!steps
            .iter()
            .any(|s| matches!(s, Step::ActivateVolume { .. })));
    }

    #[test]
    fn never_touches_what_is_not_ours() {
        // Partner's system_id on a pool recorded for us: drift only.
        let not_ours = Drift::NotOurSystemId {
            pool: "p".into(),
            system_id: "B".into(),
        };
        let steps = plan_one(observed("B", false, &[]), "A");
        assert_eq!(steps, vec![Step::Drift(not_ours)]);
        // Recorded for A, active on B: B reports it, does nothing else.
        let not_owner = Drift::ActiveButNotOwner {
            pool: "p".into(),
            owner: "A".into(),
        };
        let steps = plan_one(observed("B", true, &[]), "B");
        assert_eq!(steps, vec![Step::Drift(not_owner)]);
        assert!(plan_one(observed("B", false, &[]), "B").is_empty());
        // Missing pool and unknown pool.
        let mut other = observed("A", true, &[]);
        other.pool = "q".into();
        let steps = plan_one(other, "A");
        assert_eq!(
            steps,
            vec![
                Step::Drift(Drift::PoolMissing { pool: "p".into() }),
                Step::Drift(Drift::UnknownPool { pool: "q".into() })
            ]
        );
        assert!(steps.iter().all(|s| !s.is_action()));
    }
}
