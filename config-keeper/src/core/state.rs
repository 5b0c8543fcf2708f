//! The replicated state: objects with their stamps, sections, planning of a
//! local apply, merging of the partner's log entries, and the digest.
//!
//! Convergence argument: every write (local or shipped) carries a stamp
//! `(epoch, lamport, origin)`; a write replaces the stored one only when its
//! stamp is greater (deletes leave a tombstone holding the stamp). Merging is
//! then commutative and idempotent, so two keepers that have seen the same
//! set of writes hold the same content whatever the order. Putting the epoch
//! first is what makes "the higher epoch wins for ownership records" hold
//! after a partition.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::change::{Change, Violation};
use super::model::{Config, Kind, Object};
use super::validate::{check_delete, check_upsert, normalise};

/// Orders concurrent writes to one object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Stamp {
    /// Ownership epoch carried by the object (0 for objects without one).
    pub epoch: u64,
    /// Lamport clock of the writing transaction.
    pub lamport: u64,
    /// Controller that wrote it (breaks ties; never equal for two writers).
    pub origin: String,
}

/// One write in a log entry: the object's new body, or `None` for a delete.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Kind of the object.
    pub kind: Kind,
    /// Its key.
    pub key: String,
    /// The new body, `None` when deleted.
    pub body: Option<serde_json::Value>,
    /// Stamp of the write.
    pub stamp: Stamp,
}

/// One committed transaction of one controller, as shipped to the partner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Controller whose section version this is.
    pub origin: String,
    /// Version in the origin's sequence (1, 2, ...; no gaps).
    pub seq: u64,
    /// Commit time on the origin, ms since the Unix epoch.
    pub time_ms: u64,
    /// The action that made the change.
    pub action_id: Option<String>,
    /// The writes, at most one per object.
    pub ops: Vec<Op>,
}

/// Which controller is authoritative for an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section {
    /// Cluster-wide objects (cluster, controllers, disks, hosts, host
    /// groups, users, settings): writable on either controller; the config
    /// lock keeps the two from writing them while apart.
    Shared,
    /// Objects of one controller: the pools homed on it, their volumes and
    /// exports, its floating IPs.
    Controller(String),
}

/// Section of an object, given the state that resolves its references.
pub fn section_of(cfg: &Config, obj: &Object) -> Section {
    let pool_home = |pool: &str| {
        cfg.pools
            .get(pool)
            .map_or(Section::Shared, |p| Section::Controller(p.home.clone()))
    };
    match obj {
        Object::Pool(p) => Section::Controller(p.home.clone()),
        Object::Volume(v) => pool_home(&v.pool),
        Object::Export(e) => cfg
            .volumes
            .get(&e.volume)
            .map_or(Section::Shared, |v| pool_home(&v.pool)),
        Object::FloatingIp(f) => Section::Controller(f.home.clone()),
        Object::Cluster(_)
        | Object::Controller(_)
        | Object::Disk(_)
        | Object::Host(_)
        | Object::HostGroup(_)
        | Object::User(_)
        | Object::Settings(_) => Section::Shared,
    }
}

/// Ownership epoch an object carries (the first part of its stamp).
pub fn epoch_of(obj: &Object) -> u64 {
    match obj {
        Object::Cluster(c) => c.epoch,
        Object::Pool(p) => p.epoch,
        Object::FloatingIp(f) => f.epoch,
        _ => 0,
    }
}

/// True when `new` differs from `old` only in who owns it, under a newer
/// epoch: the one write a controller may make in the partner's section
/// (takeover and giveback, DESIGN.md 4.5/4.6).
fn is_ownership_change(old: &Object, new: &Object) -> bool {
    match (old, new) {
        (Object::Pool(o), Object::Pool(n)) => {
            n.epoch > o.epoch
                && crate::core::model::Pool {
                    owner: o.owner.clone(),
                    epoch: o.epoch,
                    ..n.clone()
                } == *o
        }
        (Object::FloatingIp(o), Object::FloatingIp(n)) => {
            n.epoch > o.epoch
                && crate::core::model::FloatingIp {
                    owner: o.owner.clone(),
                    epoch: o.epoch,
                    ..n.clone()
                } == *o
        }
        _ => false,
    }
}

/// The objects with their stamps (tombstones included) and the Lamport clock.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct State {
    /// The live objects.
    pub config: Config,
    /// Stamp of the last write to every key ever written.
    pub stamps: BTreeMap<(Kind, String), Stamp>,
    /// Highest Lamport value seen.
    pub lamport: u64,
}

/// What a local apply will write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The state after the apply.
    pub config: Config,
    /// The writes (empty when every change was a no-op).
    pub ops: Vec<Op>,
    /// The Lamport value of the transaction.
    pub lamport: u64,
}

/// Validates `changes` in order against `state` as controller `me` and
/// returns what to write. Nothing is written on error: the caller only
/// persists a returned plan.
pub fn plan_apply(state: &State, me: &str, changes: Vec<Change>) -> Result<Plan, Violation> {
    let mut cfg = state.config.clone();
    let mut touched: Vec<(Kind, String)> = Vec::new();
    for (i, change) in changes.into_iter().enumerate() {
        let at = format!("changes[{i}]");
        match change {
            Change::Upsert(mut obj) => {
                let obj_at = format!("{at}.object");
                normalise(&obj_at, &mut obj)?;
                let kind = obj.kind();
                let old = cfg.get(kind, obj.key());
                if old.as_ref() == Some(&obj) {
                    continue;
                }
                check_section(&cfg, me, &at, old.as_ref(), &obj)?;
                check_upsert(&cfg, &obj_at, &obj)?;
                touched.push((kind, obj.key().to_string()));
                cfg.put(obj);
            }
            Change::Delete { kind, key } => {
                let Some(old) = cfg.get(kind, &key) else {
                    continue;
                };
                check_delete(&cfg, &at, kind, &key)?;
                if let Section::Controller(owner) = section_of(&cfg, &old) {
                    if owner != me {
                        return Err(Violation::not_owner(
                            at,
                            format!("{kind} {key:?} is in controller {owner:?}'s section; delete it there"),
                        ));
                    }
                }
                touched.push((kind, key.clone()));
                cfg.remove(kind, &key);
            }
        }
    }
    touched.sort();
    touched.dedup();
    let lamport = state.lamport.saturating_add(1);
    let mut ops = Vec::new();
    for (kind, key) in touched {
        let new = cfg.get(kind, &key);
        let old = state.config.get(kind, &key);
        if new == old {
            // Created and deleted again, or changed and changed back.
            continue;
        }
        let epoch = new.as_ref().or(old.as_ref()).map_or(0, epoch_of);
        ops.push(Op {
            kind,
            body: new.as_ref().map(Object::to_json),
            key,
            stamp: Stamp {
                epoch,
                lamport,
                origin: me.to_string(),
            },
        });
    }
    Ok(Plan {
        config: cfg,
        ops,
        lamport,
    })
}

fn check_section(
    cfg: &Config,
    me: &str,
    at: &str,
    old: Option<&Object>,
    new: &Object,
) -> Result<(), Violation> {
    let new_section = section_of(cfg, new);
    let old_section = old.map(|o| section_of(cfg, o));
    for s in [Some(new_section), old_section].into_iter().flatten() {
        let Section::Controller(owner) = s else {
            continue;
        };
        if owner == me {
            continue;
        }
        if let Some(o) = old {
            if is_ownership_change(o, new) {
                continue;
            }
        }
        return Err(Violation::not_owner(
            at.to_string(),
            format!(
                "{} {:?} is in controller {owner:?}'s section, which is a read-only replica here; \
                 only an ownership change under a newer epoch may be made from this controller",
                new.kind(),
                new.key()
            ),
        ));
    }
    Ok(())
}

/// Error merging a shipped entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    /// An op's body does not parse as its kind (a bug or a newer schema on
    /// the partner).
    #[error("entry {origin}/{seq}: {kind} {key:?}: body does not parse at {path:?}: {reason}")]
    BadBody {
        /// Origin of the entry.
        origin: String,
        /// Its sequence number.
        seq: u64,
        /// Kind of the op.
        kind: Kind,
        /// Key of the op.
        key: String,
        /// Path inside the body.
        path: String,
        /// Parser message.
        reason: String,
    },
}

/// What merging a shipped entry changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merge {
    /// The state after the merge.
    pub config: Config,
    /// The ops that won (the others were older than what we hold).
    pub winners: Vec<Op>,
    /// The Lamport clock after the merge.
    pub lamport: u64,
}

/// Merges an entry shipped by the partner: each op wins if its stamp is
/// greater than the stored one. Not validated again: the replica must equal
/// the partner's section, not re-judge it.
pub fn plan_merge(state: &State, entry: &Entry) -> Result<Merge, MergeError> {
    let mut cfg = state.config.clone();
    let mut lamport = state.lamport;
    let mut winners = Vec::new();
    for op in &entry.ops {
        lamport = lamport.max(op.stamp.lamport);
        let k = (op.kind, op.key.clone());
        if state.stamps.get(&k).is_some_and(|s| *s >= op.stamp) {
            continue;
        }
        match &op.body {
            Some(body) => {
                let obj = Object::from_json(op.kind, body).map_err(|(path, reason)| {
                    MergeError::BadBody {
                        origin: entry.origin.clone(),
                        seq: entry.seq,
                        kind: op.kind,
                        key: op.key.clone(),
                        path,
                        reason,
                    }
                })?;
                cfg.put(obj);
            }
            None => {
                cfg.remove(op.kind, &op.key);
            }
        }
        winners.push(op.clone());
    }
    Ok(Merge {
        config: cfg,
        winners,
        lamport,
    })
}

impl State {
    /// Records ops as written (after the store committed them).
    pub fn commit(&mut self, config: Config, ops: &[Op], lamport: u64) {
        self.config = config;
        for op in ops {
            self.stamps
                .insert((op.kind, op.key.clone()), op.stamp.clone());
        }
        self.lamport = self.lamport.max(lamport);
    }
}

/// SHA-256 over the live content in canonical order (kinds in fixed order,
/// keys sorted, set-like lists sorted, fields in declaration order). Stamps,
/// versions and history are left out: equal content gives equal digests
/// whatever the insertion order or the path it took.
pub fn digest(cfg: &Config) -> String {
    let mut h = Sha256::new();
    for kind in Kind::ALL {
        for obj in cfg.objects(kind) {
            h.update(kind.as_str().as_bytes());
            h.update([0]);
            h.update(obj.key().as_bytes());
            h.update([0]);
            // serde_json::to_string of a Value sorts keys (BTreeMap-backed
            // map) unless `preserve_order` is on; our Values come from
            // structs, so both orders are deterministic for equal content.
            h.update(obj.to_json().to_string().as_bytes());
            h.update(b"\n");
        }
    }
    let out = h.finalize();
    out.iter().map(|b| format!("{b:02x}")).collect()
}
