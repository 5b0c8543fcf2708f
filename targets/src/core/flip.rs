//! The pool flip as pure planning: the ALUA and ANA state writes that move
//! one pool's volumes to an access state, and nothing else; and the
//! [`Override`] a flip leaves, which the reconciler builds with and
//! `crate::overrides` keeps on disk.
//!
//! A flip is on the takeover and giveback path, so it must not pay for a
//! whole reconcile (building the desired tree checks every export's device,
//! planning compares every object): it starts from the tree configfs has
//! (the reconciler's cache of what it applied last), finds the pool's port
//! groups and ANA group in it, and writes only the state attributes that
//! differ. The pool's backstores share an ALUA LU group, so one write to
//! one member's port group moves that port group on every member (LIO walks
//! the LU group in the kernel): the ALUA part of a flip is one write per
//! phase, whatever the number of volumes. Whatever else the desired state needs is the next reconcile's
//! job; that one builds with the same access state (the override), so it
//! never undoes a flip.

use super::desired::{device_path, lu_group_name};
use super::model::{path, AccessState, Backstore, Tree, DEFAULT_ANA_GROUP};
use super::plan::Step;
use duplex_api::model::{Config, Pool};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// An access state set by `target.set_access_state`, valid while the pool's
/// ownership record is the one it was set under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Override {
    /// The state.
    pub state: AccessState,
    /// The pool's owner when it was set.
    pub owner: String,
    /// The pool's epoch when it was set.
    pub epoch: u64,
}

impl Override {
    /// `state` set under `pool`'s current ownership record.
    pub fn under(pool: &Pool, state: AccessState) -> Override {
        Override {
            state,
            owner: pool.owner.clone(),
            epoch: pool.epoch,
        }
    }

    /// True while `pool`'s ownership record is the one this was set under
    /// (a takeover or giveback records a new owner or epoch, and the new
    /// owner's decision wins).
    pub fn holds(&self, pool: &Pool) -> bool {
        pool.owner == self.owner && pool.epoch == self.epoch
    }
}

/// What identifies a pool's objects in configfs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolMembers {
    /// The pool's volume names (backstore names) and their block devices
    /// (what their namespaces point at).
    pub volumes: BTreeMap<String, String>,
    /// The pool's ALUA LU group.
    pub lu_group: String,
}

impl PoolMembers {
    /// The block devices, for lookups (a flip of a thousand volumes must
    /// not compare every namespace with every volume).
    fn devices(&self) -> BTreeSet<&str> {
        self.volumes.values().map(String::as_str).collect()
    }
}

/// The volumes of `pool` in the configuration.
pub fn members(cfg: &Config, pool: &str) -> PoolMembers {
    PoolMembers {
        volumes: cfg
            .volumes
            .values()
            .filter(|v| v.pool == pool)
            .map(|v| (v.name.clone(), device_path(v)))
            .collect(),
        lu_group: lu_group_name(pool),
    }
}

/// The writes of one flip phase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlipPlan {
    /// The writes, ALUA groups first (sorted by volume), then ANA groups.
    pub steps: Vec<Step>,
    /// The pool's volumes exported here (a backstore with this
    /// controller's ALUA group, or a namespace), whatever their state was.
    pub volumes: usize,
    /// The pool's ANA group(s) on this controller.
    pub ana_groups: Vec<u32>,
}

/// The ANA groups that hold the pool's namespaces and nothing else: a
/// group shared with another pool's namespace (which `build` never makes)
/// is left alone rather than flipping someone else's volumes.
pub fn pool_ana_groups(tree: &Tree, m: &PoolMembers) -> Vec<u32> {
    let devices = m.devices();
    let mut mine: BTreeSet<u32> = BTreeSet::new();
    let mut others: BTreeSet<u32> = BTreeSet::new();
    for ns in tree.subsystems.values().flat_map(|s| s.namespaces.values()) {
        if devices.contains(ns.device.as_str()) {
            mine.insert(ns.ana_group);
        } else {
            others.insert(ns.ana_group);
        }
    }
    mine.into_iter()
        .filter(|g| *g != DEFAULT_ANA_GROUP && !others.contains(g))
        .collect()
}

/// The writes that give the pool's volumes `state` in ALUA group `group`
/// and on every port's ANA group of the pool; `tree` is updated to what
/// configfs holds once they are applied. Attributes that already hold the
/// state are not written.
pub fn flip_steps(tree: &mut Tree, m: &PoolMembers, group: &str, state: AccessState) -> FlipPlan {
    let mut out = FlipPlan {
        ana_groups: pool_ana_groups(tree, m),
        ..FlipPlan::default()
    };
    let alua = state.alua();
    let in_namespace = tree.namespace_devices();
    out.volumes = m
        .volumes
        .iter()
        .filter(|(name, dev)| {
            in_namespace.contains(dev.as_str())
                || tree
                    .backstores
                    .get(*name)
                    .is_some_and(|b| b.groups.contains_key(group))
        })
        .count();
    // One write for the LU group: LIO sets the state on the port group of
    // the same id on every member, which the tree follows.
    let lu = m.lu_group.as_str();
    let in_lu = |b: &Backstore| b.lu_group.as_deref() == Some(lu);
    let lead = tree.backstores.iter().find_map(|(name, b)| {
        let gp = b.groups.get(group)?;
        (in_lu(b) && gp.state != alua).then(|| (name.clone(), gp.id))
    });
    if let Some((name, id)) = lead {
        out.steps.push(Step::Write {
            path: format!("{}/alua_access_state", path::tg_pt_gp(&name, group)),
            value: alua.code().to_string(),
        });
        for b in tree.backstores.values_mut().filter(|b| in_lu(b)) {
            for gp in b.groups.values_mut().filter(|g| g.id == id) {
                gp.state = alua;
            }
        }
    }
    // Volumes outside the LU group (not joined yet): one write each.
    for name in m.volumes.keys() {
        let Some(gp) = tree
            .backstores
            .get_mut(name)
            .filter(|b| b.lu_group.as_deref() != Some(lu))
            .and_then(|b| b.groups.get_mut(group))
        else {
            continue;
        };
        if gp.state != alua {
            gp.state = alua;
            out.steps.push(Step::Write {
                path: format!("{}/alua_access_state", path::tg_pt_gp(name, group)),
                value: alua.code().to_string(),
            });
        }
    }
    let ana = state.ana();
    for (id, port) in &mut tree.ports {
        for g in &out.ana_groups {
            if let Some(s) = port.ana.get_mut(g) {
                if *s != ana {
                    *s = ana;
                    out.steps.push(Step::Write {
                        path: format!("{}/ana_state", path::ana_group(*id, *g)),
                        value: ana.word().to_string(),
                    });
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use duplex_api::model::{Kind, Object};

    fn pool(owner: &str, epoch: u64) -> Pool {
        let body = serde_json::json!({"name": "p1", "tier": "fast", "layout": "linear",
                                      "home": "A", "owner": owner, "epoch": epoch});
        match Object::from_json(Kind::Pool, &body) {
            Ok(Object::Pool(p)) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_override_holds_until_the_ownership_record_changes() {
        let o = Override::under(&pool("A", 3), AccessState::Standby);
        assert_eq!((o.owner.as_str(), o.epoch), ("A", 3));
        assert!(o.holds(&pool("A", 3)));
        assert!(!o.holds(&pool("B", 3)), "new owner");
        assert!(
            !o.holds(&pool("A", 4)),
            "new epoch, same owner (taken back)"
        );
    }
}
