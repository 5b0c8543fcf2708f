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

use duplex_api::change::{Change, Violation};
use duplex_api::model::{Config, Kind, Object};
use duplex_api::validate::{check_delete, check_upsert, normalise};

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
/// (takeover and giveback, design brief 4.5/4.6).
fn is_ownership_change(old: &Object, new: &Object) -> bool {
    match (old, new) {
        (Object::Pool(o), Object::Pool(n)) => {
            n.epoch > o.epoch
                && duplex_api::model::Pool {
                    owner: o.owner.clone(),
                    epoch: o.epoch,
                    ..n.clone()
                } == *o
        }
        (Object::FloatingIp(o), Object::FloatingIp(n)) => {
            n.epoch > o.epoch
                && duplex_api::model::FloatingIp {
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

/// What a local apply writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The writes (empty when every change was a no-op).
    pub ops: Vec<Op>,
    /// The Lamport value of the transaction.
    pub lamport: u64,
}

/// Undo log of in-place edits: the first value each touched key had.
#[derive(Default)]
struct Undo {
    originals: BTreeMap<(Kind, String), Option<Object>>,
}

impl Undo {
    fn remember(&mut self, cfg: &Config, kind: Kind, key: &str) {
        self.originals
            .entry((kind, key.to_string()))
            .or_insert_with(|| cfg.get(kind, key));
    }

    fn rollback(self, cfg: &mut Config) {
        for ((kind, key), old) in self.originals {
            match old {
                Some(o) => cfg.put(o),
                None => {
                    cfg.remove(kind, &key);
                }
            }
        }
    }
}

/// Validates `changes` in order as controller `me` and applies them to
/// `state` in memory (edited in place: configs are large, changes small).
/// On error `state` is exactly as before. On success the caller must
/// persist the returned ops, or reload `state` if it cannot.
pub fn plan_apply(state: &mut State, me: &str, changes: Vec<Change>) -> Result<Plan, Violation> {
    let mut undo = Undo::default();
    match edit(&mut state.config, &mut undo, me, changes) {
        Ok(()) => {}
        Err(v) => {
            undo.rollback(&mut state.config);
            return Err(v);
        }
    }
    let lamport = state.lamport.saturating_add(1);
    let mut ops = Vec::new();
    for ((kind, key), old) in undo.originals {
        let new = state.config.get(kind, &key);
        if new == old {
            // Created and deleted again, or changed and changed back.
            continue;
        }
        let epoch = new.as_ref().or(old.as_ref()).map_or(0, epoch_of);
        let stamp = Stamp {
            epoch,
            lamport,
            origin: me.to_string(),
        };
        state.stamps.insert((kind, key.clone()), stamp.clone());
        ops.push(Op {
            kind,
            body: new.as_ref().map(Object::to_json),
            key,
            stamp,
        });
    }
    if !ops.is_empty() {
        state.lamport = lamport;
    }
    Ok(Plan { ops, lamport })
}

fn edit(
    cfg: &mut Config,
    undo: &mut Undo,
    me: &str,
    changes: Vec<Change>,
) -> Result<(), Violation> {
    for (i, change) in changes.into_iter().enumerate() {
        let at = format!("changes[{i}]");
        match change {
            Change::Upsert(obj) => {
                let obj_at = format!("{at}.object");
                // Stored in canonical order; validated in the client's order
                // so that `disks[1]` in an error is the client's disks[1].
                let mut canonical = obj.clone();
                normalise(&obj_at, &mut canonical)?;
                let kind = obj.kind();
                let old = cfg.get(kind, obj.key());
                if old.as_ref() == Some(&canonical) {
                    continue;
                }
                check_upsert(cfg, &obj_at, &obj)?;
                check_section(cfg, me, &at, old.as_ref(), &canonical)?;
                undo.remember(cfg, kind, obj.key());
                cfg.put(canonical);
            }
            Change::Delete { kind, key } => {
                let Some(old) = cfg.get(kind, &key) else {
                    continue;
                };
                check_delete(cfg, &at, kind, &key)?;
                if let Section::Controller(owner) = section_of(cfg, &old) {
                    if owner != me {
                        return Err(Violation::not_owner(
                            at,
                            format!("{kind} {key:?} is in controller {owner:?}'s section; delete it there"),
                        ));
                    }
                }
                undo.remember(cfg, kind, &key);
                cfg.remove(kind, &key);
            }
        }
    }
    Ok(())
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

/// Largest epoch or Lamport value a merged stamp may carry: 2^53, the
/// largest integer every JSON reader keeps exactly, far above anything a
/// controller reaches (one per transaction or takeover) and far below the
/// SQLite `i64` limit, so a stamp can never saturate the clock.
pub const MAX_STAMP: u64 = 1 << 53;

/// How far past `our clock + the entry's sequence number` a merged Lamport
/// value may be. A controller's clock is at most the number of
/// transactions both controllers committed (each adds one to the highest
/// value seen), and our clock is at least our own count; the slack covers
/// a database restored from an older copy.
pub const LAMPORT_SLACK: u64 = 1 << 20;

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
    /// The entry breaks a rule a local write would also break: a write
    /// outside the origin's section and the shared one, a key that is not
    /// its body's, a stamp not the origin's or out of bounds. Nothing of
    /// the entry is merged.
    #[error("entry {origin}/{seq}: ops[{index}]: {reason}")]
    Refused {
        /// Origin of the entry.
        origin: String,
        /// Its sequence number.
        seq: u64,
        /// Index of the offending op.
        index: usize,
        /// What is wrong.
        reason: String,
    },
    /// A sequence number we merged already came again with other content:
    /// the partner's database was replaced or restored, or someone forged
    /// an entry. Needs an operator; merging either would fork the replica.
    #[error("entry {origin}/{seq} was merged already with other content")]
    SeqReused {
        /// Origin of the entry.
        origin: String,
        /// Its sequence number.
        seq: u64,
    },
}

/// Checks what can be checked of an op without the state: the stamp is
/// the origin's and bounded.
fn check_stamp(state: &State, entry: &Entry, op: &Op) -> Result<(), String> {
    if op.stamp.origin != entry.origin {
        return Err(format!(
            "stamp origin {:?} is not the entry's origin",
            op.stamp.origin
        ));
    }
    if op.stamp.epoch > MAX_STAMP {
        return Err(format!("epoch {} is out of bounds", op.stamp.epoch));
    }
    let lamport_max = state
        .lamport
        .saturating_add(entry.seq)
        .saturating_add(LAMPORT_SLACK)
        .min(MAX_STAMP);
    if op.stamp.lamport > lamport_max {
        return Err(format!(
            "Lamport value {} is out of bounds (at most {lamport_max} here)",
            op.stamp.lamport
        ));
    }
    Ok(())
}

/// Checks a parsed op against the state as merged so far: its key is its
/// body's, its epoch is the stamp's, and it writes only the origin's
/// section, the shared one, or an ownership change under a newer epoch
/// (the same rule as a local apply, with the origin in place of `me`).
fn check_merged(cfg: &Config, entry: &Entry, op: &Op, new: Option<&Object>) -> Result<(), String> {
    let old = cfg.get(op.kind, &op.key);
    match new {
        Some(n) => {
            if n.key() != op.key {
                return Err(format!(
                    "key {:?} is not its body's ({:?})",
                    op.key,
                    n.key()
                ));
            }
            if epoch_of(n) != op.stamp.epoch {
                return Err(format!(
                    "stamp epoch {} is not the object's ({})",
                    op.stamp.epoch,
                    epoch_of(n)
                ));
            }
            match check_section(cfg, &entry.origin, "op", old.as_ref(), n) {
                Ok(()) => Ok(()),
                // The origin's ownership write as it made it: under a
                // newer epoch, same section; the rest of the body is the
                // origin's view, which may differ from our stale edit
                // made while apart (the higher epoch wins).
                Err(_)
                    if old.as_ref().is_some_and(|o| {
                        epoch_of(n) > epoch_of(o) && section_of(cfg, o) == section_of(cfg, n)
                    }) =>
                {
                    Ok(())
                }
                Err(v) => Err(v.reason),
            }
        }
        None => match old.as_ref().map(|o| section_of(cfg, o)) {
            Some(Section::Controller(owner)) if owner != entry.origin => Err(format!(
                "deletes {} {:?} in controller {owner:?}'s section",
                op.kind, op.key
            )),
            _ => Ok(()),
        },
    }
}

/// Merges an entry shipped by the partner into `state` in place: each op
/// wins if its stamp is greater than the stored one. Returns the winning
/// ops (to persist). Checked like a local write as far as the sections,
/// keys and stamps go (the partner's router is authenticated, but a bug or
/// a forged entry must not rewrite our section or break our clock); not
/// re-validated against the model rules, since the replica must equal the
/// partner's section, not re-judge it. On error `state` is unchanged.
pub fn plan_merge(state: &mut State, entry: &Entry) -> Result<Vec<Op>, MergeError> {
    let refused = |index: usize, reason: String| MergeError::Refused {
        origin: entry.origin.clone(),
        seq: entry.seq,
        index,
        reason,
    };
    for (i, op) in entry.ops.iter().enumerate() {
        check_stamp(state, entry, op).map_err(|r| refused(i, r))?;
    }
    let mut undo = Undo::default();
    let mut winners = Vec::new();
    for (i, op) in entry.ops.iter().enumerate() {
        if state
            .stamps
            .get(&(op.kind, op.key.clone()))
            .is_some_and(|s| *s >= op.stamp)
        {
            continue;
        }
        let obj = match &op.body {
            Some(body) => match Object::from_json(op.kind, body) {
                Ok(o) => Some(o),
                Err((path, reason)) => {
                    undo.rollback(&mut state.config);
                    return Err(MergeError::BadBody {
                        origin: entry.origin.clone(),
                        seq: entry.seq,
                        kind: op.kind,
                        key: op.key.clone(),
                        path,
                        reason,
                    });
                }
            },
            None => None,
        };
        // Checked against the state as merged so far: an entry may create a
        // pool and its volumes together.
        if let Err(r) = check_merged(&state.config, entry, op, obj.as_ref()) {
            undo.rollback(&mut state.config);
            return Err(refused(i, r));
        }
        undo.remember(&state.config, op.kind, &op.key);
        match obj {
            Some(o) => state.config.put(o),
            None => {
                state.config.remove(op.kind, &op.key);
            }
        }
        winners.push(op.clone());
    }
    for op in &winners {
        state
            .stamps
            .insert((op.kind, op.key.clone()), op.stamp.clone());
    }
    for op in &entry.ops {
        state.lamport = state.lamport.max(op.stamp.lamport);
    }
    Ok(winners)
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
