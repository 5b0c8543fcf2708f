//! The SQLite store: the only module that touches the database.
//!
//! Durability: WAL journal with `synchronous=FULL`, so a commit returns only
//! after the WAL is on disk; every apply or merge is one transaction (objects
//! and log row together), so a crash leaves either all of it or none.
//!
//! The in-memory [`State`] mirrors the `objects` table and is replaced only
//! after a commit succeeded, so a failed transaction leaves both untouched.

mod audit;
pub use audit::AUDIT_KEEP;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use serde_json::Value;
use tracing::{debug, info, warn};

use crate::core::lock::{self, Lock, LockOutcome};
use crate::core::replication::{receive, Receive};
use crate::core::state::{self, Entry, Op, Stamp, State};
use crate::error::{sql, ApplyError, StoreError};
use duplex_api::change::Change;
use duplex_api::model::{Config, Kind, Object};

/// Numbered migrations; applied in order, each in its own transaction, and
/// recorded in `schema_migrations`. Never edit a released one: add another.
const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "initial schema",
        r#"
        -- Every object of every kind; body NULL is a tombstone that keeps the
        -- stamp of the delete, so a stale write replayed later loses.
        -- The body is the typed model's JSON (core::model); kinds are
        -- validated in core, so one table keeps migrations and replication
        -- uniform across kinds. The per-kind views below give columns.
        CREATE TABLE objects (
            kind       TEXT    NOT NULL,
            name       TEXT    NOT NULL,
            body       TEXT    CHECK (body IS NULL OR json_valid(body)),
            st_epoch   INTEGER NOT NULL,
            st_lamport INTEGER NOT NULL,
            st_origin  TEXT    NOT NULL,
            gen        INTEGER NOT NULL,
            PRIMARY KEY (kind, name)
        ) WITHOUT ROWID;

        -- The change log: one row per committed transaction, local or merged.
        -- gen is the local version; (origin, seq) the origin's section version.
        CREATE TABLE log (
            gen       INTEGER PRIMARY KEY,
            origin    TEXT    NOT NULL,
            seq       INTEGER NOT NULL,
            time_ms   INTEGER NOT NULL,
            action_id TEXT,
            ops       TEXT    NOT NULL CHECK (json_valid(ops)),
            UNIQUE (origin, seq)
        );

        CREATE TABLE meta (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        ) WITHOUT ROWID;

        -- The event log (not replicated, not in the digest).
        CREATE TABLE events (
            id        INTEGER PRIMARY KEY,
            time_ms   INTEGER NOT NULL,
            action_id TEXT,
            kind      TEXT    NOT NULL,
            detail    TEXT    NOT NULL CHECK (json_valid(detail))
        );
        "#,
    ),
    (
        2,
        "per-kind views",
        r#"
        CREATE VIEW pools AS SELECT name,
            body ->> 'tier' AS tier, body ->> 'layout' AS layout,
            body ->> 'home' AS home, body ->> 'owner' AS owner,
            body ->> 'epoch' AS epoch
          FROM objects WHERE kind = 'pool' AND body IS NOT NULL;
        CREATE VIEW volumes AS SELECT name,
            body ->> 'pool' AS pool, body ->> 'size' AS size, body ->> 'thin' AS thin,
            body ->> 'serial' AS serial, body ->> 'wwn' AS wwn,
            body ->> 'nguid' AS nguid, body ->> 'uuid' AS uuid,
            body ->> 'parent_snapshot' AS parent_snapshot
          FROM objects WHERE kind = 'volume' AND body IS NOT NULL;
        CREATE VIEW exports AS SELECT name,
            body ->> 'volume' AS volume, body ->> 'protocol' AS protocol,
            body ->> 'lun' AS lun, body ->> 'nsid' AS nsid,
            body ->> 'host_group' AS host_group
          FROM objects WHERE kind = 'export' AND body IS NOT NULL;
        CREATE VIEW floating_ips AS SELECT name,
            body ->> 'address' AS address, body ->> 'interface' AS interface,
            body ->> 'home' AS home, body ->> 'owner' AS owner, body ->> 'epoch' AS epoch
          FROM objects WHERE kind = 'floating_ip' AND body IS NOT NULL;
        "#,
    ),
    (
        3,
        "section heads",
        r#"
        -- The last version of each origin and the local version, kept apart
        -- from the log so that pruning old log rows loses neither.
        CREATE TABLE heads (
            origin TEXT PRIMARY KEY,
            seq    INTEGER NOT NULL,
            gen    INTEGER NOT NULL
        ) WITHOUT ROWID;
        INSERT INTO heads (origin, seq, gen)
            SELECT origin, max(seq), max(gen) FROM log GROUP BY origin;
        "#,
    ),
    (
        4,
        "audit log",
        r#"
        -- Administrators' writes as the routers saw them (store::audit):
        -- numbered per controller, replicated to the partner, bounded.
        CREATE TABLE audit (
            origin  TEXT    NOT NULL,
            seq     INTEGER NOT NULL,
            time_ms INTEGER NOT NULL,
            record  TEXT    NOT NULL CHECK (json_valid(record)),
            PRIMARY KEY (origin, seq)
        ) WITHOUT ROWID;
        CREATE INDEX audit_time ON audit (time_ms);
        "#,
    ),
];

/// Writes an object (or its tombstone) with its stamp and version.
const PUT_OBJECT: &str =
    "INSERT INTO objects (kind, name, body, st_epoch, st_lamport, st_origin, gen)
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
     ON CONFLICT (kind, name) DO UPDATE SET body = excluded.body,
       st_epoch = excluded.st_epoch, st_lamport = excluded.st_lamport,
       st_origin = excluded.st_origin, gen = excluded.gen";

/// Moves an origin's section head.
const PUT_HEAD: &str = "INSERT INTO heads (origin, seq, gen) VALUES (?1, ?2, ?3)
     ON CONFLICT (origin) DO UPDATE SET seq = excluded.seq, gen = excluded.gen";

/// Identity of the caller of a write, for the log.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    /// The action the write belongs to.
    pub action_id: Option<String>,
    /// Now, ms since the Unix epoch (an input, so tests choose it).
    pub now_ms: u64,
}

/// Result of a local apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// Local version after the apply.
    pub version: u64,
    /// Our section's version after the apply (what the partner acks).
    pub section_version: u64,
    /// False when every change was a no-op (nothing written, no new version).
    pub changed: bool,
}

/// Result of merging a shipped entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Merged {
    /// Merged; acknowledge `applied`.
    Applied {
        /// The origin's version now merged.
        applied: u64,
        /// Our local version after it.
        version: u64,
    },
    /// Already had it; acknowledge `applied`.
    Duplicate {
        /// What we have.
        applied: u64,
    },
    /// An earlier entry is missing; ask for a re-ship after `applied`.
    Gap {
        /// What we have.
        applied: u64,
    },
}

/// A row of `config.history`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryRow {
    /// Local version.
    pub version: u64,
    /// The entry.
    #[serde(flatten)]
    pub entry: Entry,
}

/// A row of the event log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EventRow {
    /// Row id (increasing).
    pub id: i64,
    /// When, ms since the Unix epoch.
    pub time_ms: u64,
    /// The action.
    pub action_id: Option<String>,
    /// Event kind ("config.locked").
    pub kind: String,
    /// Details.
    pub detail: Value,
}

/// One object, or the tombstone of a deleted one, with its stamp: what a
/// partner rebuilding its database receives (`config.repl_snapshot`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SnapshotItem {
    /// Kind of the object.
    pub kind: Kind,
    /// Its key.
    pub key: String,
    /// Its body; `None` for a tombstone.
    pub body: Option<Value>,
    /// The stamp of its last write.
    pub stamp: Stamp,
}

/// The open database and its in-memory mirror.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    me: String,
    state: State,
    version: u64,
    seqs: BTreeMap<String, u64>,
    lock: Option<Lock>,
    peer_acked: u64,
}

fn to_i64(v: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt {
        what: what.to_string(),
        reason: format!("{v} does not fit in an SQLite integer"),
    })
}

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt {
        what: what.to_string(),
        reason: format!("negative value {v}"),
    })
}

/// Creates the database file 0600 (or makes an existing one 0600) before
/// SQLite opens it, whatever the umask: it holds CHAP secrets and password
/// hashes. SQLite gives its -wal and -shm files the database file's mode.
fn make_private(path: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let err = |source| StoreError::Private {
        path: path.to_path_buf(),
        source,
    };
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    for ext in ["-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(ext);
        match std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(e)),
        }
    }
    Ok(())
}

impl Store {
    /// Opens (creating if needed) the database at `path` as controller `me`:
    /// sets WAL and `synchronous=FULL`, runs pending migrations and loads the
    /// state.
    pub fn open(path: &Path, me: &str) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        make_private(path)?;
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_err)?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(open_err)?;
        if !mode.eq_ignore_ascii_case("wal") {
            warn!(path = %path.display(), mode, "journal_mode WAL refused");
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_err)?;
        migrate(&mut conn)?;

        let found: Option<String> = conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'controller_id'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(sql("reading controller_id"))?;
        match found {
            Some(f) if f != me => {
                return Err(StoreError::WrongController {
                    found: f,
                    expected: me.to_string(),
                })
            }
            Some(_) => {}
            None => {
                conn.execute(
                    "INSERT INTO meta (key, value) VALUES ('controller_id', ?1)",
                    [me],
                )
                .map_err(sql("writing controller_id"))?;
            }
        }
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
            me: me.to_string(),
            state: State::default(),
            version: 0,
            seqs: BTreeMap::new(),
            lock: None,
            peer_acked: 0,
        };
        store.load()?;
        info!(
            path = %path.display(), controller = me, version = store.version,
            section_version = store.section_version(), locked = store.lock.is_some(),
            "config database open"
        );
        Ok(store)
    }

    fn load(&mut self) -> Result<(), StoreError> {
        let mut state = State::default();
        let mut stmt = self
            .conn
            .prepare("SELECT kind, name, body, st_epoch, st_lamport, st_origin FROM objects")
            .map_err(sql("loading objects"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, String>(5)?,
                ))
            })
            .map_err(sql("loading objects"))?;
        for row in rows {
            let (kind_s, name, body, epoch, lamport, origin) =
                row.map_err(sql("loading objects"))?;
            let what = format!("object {kind_s}/{name}");
            let kind = Kind::parse(&kind_s).ok_or_else(|| StoreError::Corrupt {
                what: what.clone(),
                reason: "unknown kind".into(),
            })?;
            if let Some(body) = body {
                let v: Value = serde_json::from_str(&body).map_err(|e| StoreError::Corrupt {
                    what: what.clone(),
                    reason: e.to_string(),
                })?;
                let obj = Object::from_json(kind, &v).map_err(|(p, r)| StoreError::Corrupt {
                    what: what.clone(),
                    reason: format!("{p}: {r}"),
                })?;
                state.config.put(obj);
            }
            let stamp = Stamp {
                epoch: to_u64(epoch, &what)?,
                lamport: to_u64(lamport, &what)?,
                origin,
            };
            state.lamport = state.lamport.max(stamp.lamport);
            state.stamps.insert((kind, name), stamp);
        }
        drop(stmt);
        self.state = state;

        let version: Option<i64> = self
            .conn
            .query_row("SELECT max(gen) FROM heads", [], |r| r.get(0))
            .map_err(sql("reading version"))?;
        self.version = to_u64(version.unwrap_or(0), "heads.gen")?;
        let mut stmt = self
            .conn
            .prepare("SELECT origin, seq FROM heads")
            .map_err(sql("reading section versions"))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .map_err(sql("reading section versions"))?;
        let mut seqs = BTreeMap::new();
        for row in rows {
            let (origin, seq) = row.map_err(sql("reading section versions"))?;
            seqs.insert(origin, to_u64(seq, "log.seq")?);
        }
        drop(stmt);
        self.seqs = seqs;

        self.lock = match self.meta_get("lock")? {
            Some(s) => Some(serde_json::from_str(&s).map_err(|e| StoreError::Corrupt {
                what: "meta lock".into(),
                reason: e.to_string(),
            })?),
            None => None,
        };
        self.peer_acked = match self.meta_get("peer_acked")? {
            Some(s) => s.parse().map_err(|_| StoreError::Corrupt {
                what: "meta peer_acked".into(),
                reason: format!("{s:?} is not a number"),
            })?,
            None => 0,
        };
        Ok(())
    }

    fn meta_get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(sql("reading meta"))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// This controller's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The current state.
    pub fn config(&self) -> &Config {
        &self.state.config
    }

    /// The current state with its stamps.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Local version: bumps with every committed transaction, local or merged.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Our section's version (the head of the log we ship).
    pub fn section_version(&self) -> u64 {
        self.seqs.get(&self.me).copied().unwrap_or(0)
    }

    /// How much of `origin`'s log we have merged (or written, for us).
    pub fn applied(&self, origin: &str) -> u64 {
        self.seqs.get(origin).copied().unwrap_or(0)
    }

    /// The lock, if held.
    pub fn lock_state(&self) -> Option<&Lock> {
        self.lock.as_ref()
    }

    /// Last version of our section the partner acknowledged (as persisted).
    pub fn peer_acked(&self) -> u64 {
        self.peer_acked
    }

    /// Digest of the content.
    pub fn digest(&self) -> String {
        state::digest(&self.state.config)
    }

    /// Validates and commits `changes` atomically. Refused while locked.
    pub fn apply(&mut self, changes: Vec<Change>, meta: &Meta) -> Result<Applied, ApplyError> {
        self.apply_many(vec![(changes, meta.clone())])
            .pop()
            .unwrap_or_else(|| {
                Err(ApplyError::Store(StoreError::Corrupt {
                    what: "apply".into(),
                    reason: "no result".into(),
                }))
            })
    }

    /// Group commit: validates each request against the state left by the
    /// ones before it and commits all that passed in one SQLite transaction
    /// (one fsync), each still its own version and log entry. A request that
    /// fails validation gets its own error and does not affect the others.
    /// If the commit fails, every request that passed gets the store error
    /// and the in-memory state is reloaded from the database.
    pub fn apply_many(
        &mut self,
        reqs: Vec<(Vec<Change>, Meta)>,
    ) -> Vec<Result<Applied, ApplyError>> {
        let mut results: Vec<Result<Applied, ApplyError>> = Vec::with_capacity(reqs.len());
        let mut entries: Vec<(u64, Entry)> = Vec::new();
        for (changes, meta) in reqs {
            if let Some(l) = &self.lock {
                results.push(Err(ApplyError::Locked {
                    reason: l.reason.clone(),
                    since_ms: l.since_ms,
                }));
                continue;
            }
            let plan = match state::plan_apply(&mut self.state, &self.me, changes) {
                Ok(p) => p,
                Err(v) => {
                    results.push(Err(v.into()));
                    continue;
                }
            };
            if plan.ops.is_empty() {
                results.push(Ok(Applied {
                    version: self.version,
                    section_version: self.section_version(),
                    changed: false,
                }));
                continue;
            }
            let entry = Entry {
                origin: self.me.clone(),
                seq: self.section_version() + 1,
                time_ms: meta.now_ms,
                action_id: meta.action_id.clone(),
                ops: plan.ops,
            };
            self.version += 1;
            self.seqs.insert(self.me.clone(), entry.seq);
            results.push(Ok(Applied {
                version: self.version,
                section_version: entry.seq,
                changed: true,
            }));
            entries.push((self.version, entry));
        }
        if entries.is_empty() {
            return results;
        }
        let items: Vec<(u64, &Entry, &[Op])> = entries
            .iter()
            .map(|(v, e)| (*v, e, e.ops.as_slice()))
            .collect();
        if let Err(e) = self.write_entries(&items) {
            warn!(error = %e, "commit failed; reloading state from the database");
            let msg = e.to_string();
            self.reload_after_failure();
            return results
                .into_iter()
                .map(|r| match r {
                    Ok(a) if a.changed => Err(ApplyError::Store(StoreError::Corrupt {
                        what: "commit".into(),
                        reason: msg.clone(),
                    })),
                    other => other,
                })
                .collect();
        }
        debug!(version = self.version, entries = entries.len(), "applied");
        results
    }

    fn reload_after_failure(&mut self) {
        if let Err(e) = self.load() {
            // Memory may now be ahead of the disk; refuse to go on silently.
            tracing::error!(error = %e, "cannot reload state after a failed commit");
        }
    }

    /// One transaction: for each item the winning ops into `objects` and the
    /// entry into `log`.
    fn write_entries(&mut self, items: &[(u64, &Entry, &[Op])]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("beginning transaction"))?;
        {
            let mut put = tx
                .prepare_cached(PUT_OBJECT)
                .map_err(sql("preparing object write"))?;
            let mut log = tx
                .prepare_cached(
                    "INSERT INTO log (gen, origin, seq, time_ms, action_id, ops) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(sql("preparing log write"))?;
            let mut head = tx
                .prepare_cached(PUT_HEAD)
                .map_err(sql("preparing head write"))?;
            for (version, entry, winners) in items {
                let gen = to_i64(*version, "version")?;
                for op in *winners {
                    let body = op.body.as_ref().map(Value::to_string);
                    put.execute(params![
                        op.kind.as_str(),
                        op.key,
                        body,
                        to_i64(op.stamp.epoch, "epoch")?,
                        to_i64(op.stamp.lamport, "lamport")?,
                        op.stamp.origin,
                        gen
                    ])
                    .map_err(sql("writing object"))?;
                }
                let ops_json =
                    serde_json::to_string(&entry.ops).map_err(|e| StoreError::Corrupt {
                        what: "entry ops".into(),
                        reason: e.to_string(),
                    })?;
                log.execute(params![
                    gen,
                    entry.origin,
                    to_i64(entry.seq, "seq")?,
                    to_i64(entry.time_ms, "time")?,
                    entry.action_id,
                    ops_json
                ])
                .map_err(sql("writing log"))?;
                head.execute(params![entry.origin, to_i64(entry.seq, "seq")?, gen])
                    .map_err(sql("writing head"))?;
            }
        }
        tx.commit().map_err(sql("committing"))
    }

    /// Merges an entry shipped by the partner (in order; see
    /// [`receive`]). Works while locked: the lock stops new local writes,
    /// not catching up.
    pub fn merge(&mut self, entry: &Entry) -> Result<Merged, StoreError> {
        let mut r = self.merge_many(std::slice::from_ref(entry))?;
        r.pop().ok_or_else(|| StoreError::Corrupt {
            what: "merge".into(),
            reason: "no result".into(),
        })
    }

    /// Merges shipped entries in order, all in one transaction. Stops at the
    /// first gap (reported as the last result).
    pub fn merge_many(&mut self, entries: &[Entry]) -> Result<Vec<Merged>, StoreError> {
        let mut results = Vec::with_capacity(entries.len());
        let mut winners: Vec<(u64, &Entry, Vec<Op>)> = Vec::new();
        for entry in entries {
            if entry.origin == self.me {
                self.reload_if(!winners.is_empty());
                return Err(StoreError::OwnOrigin {
                    origin: entry.origin.clone(),
                    seq: entry.seq,
                });
            }
            let applied = self.applied(&entry.origin);
            match receive(applied, entry.seq) {
                Receive::Duplicate { applied } => {
                    // A re-ship is byte for byte what we merged; other
                    // content under a merged number is refused (the log
                    // row may be pruned: then it cannot be compared).
                    let stored = entry
                        .seq
                        .checked_sub(1)
                        .map(|after| self.entries_since(&entry.origin, after, 1))
                        .transpose()
                        .inspect_err(|_| self.reload_if(!winners.is_empty()))?;
                    if let Some(old) = stored.as_ref().and_then(|v| v.first()) {
                        if old.seq == entry.seq && old != entry {
                            self.reload_if(!winners.is_empty());
                            return Err(StoreError::Merge(state::MergeError::SeqReused {
                                origin: entry.origin.clone(),
                                seq: entry.seq,
                            }));
                        }
                    }
                    results.push(Merged::Duplicate { applied });
                    continue;
                }
                Receive::Gap { applied } => {
                    results.push(Merged::Gap { applied });
                    break;
                }
                Receive::Apply => {}
            }
            let merge = match state::plan_merge(&mut self.state, entry) {
                Ok(m) => m,
                Err(e) => {
                    self.reload_if(!winners.is_empty());
                    return Err(e.into());
                }
            };
            self.version += 1;
            self.seqs.insert(entry.origin.clone(), entry.seq);
            results.push(Merged::Applied {
                applied: entry.seq,
                version: self.version,
            });
            winners.push((self.version, entry, merge));
        }
        if winners.is_empty() {
            return Ok(results);
        }
        let items: Vec<(u64, &Entry, &[Op])> = winners
            .iter()
            .map(|(v, e, w)| (*v, *e, w.as_slice()))
            .collect();
        if let Err(e) = self.write_entries(&items) {
            self.reload_after_failure();
            return Err(e);
        }
        Ok(results)
    }

    fn reload_if(&mut self, cond: bool) {
        if cond {
            self.reload_after_failure();
        }
    }

    /// Entries of `origin` after `after`, in order, at most `limit`.
    pub fn entries_since(
        &self,
        origin: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT gen, origin, seq, time_ms, action_id, ops FROM log
                 WHERE origin = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .map_err(sql("reading log"))?;
        let rows = stmt
            .query_map(
                params![origin, to_i64(after, "seq")?, limit],
                row_to_history,
            )
            .map_err(sql("reading log"))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(parse_history(row.map_err(sql("reading log"))?)?.entry);
        }
        Ok(out)
    }

    /// Local history after version `after`, oldest first, at most `limit`.
    pub fn history(&self, after: u64, limit: u32) -> Result<Vec<HistoryRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT gen, origin, seq, time_ms, action_id, ops FROM log
                 WHERE gen > ?1 ORDER BY gen LIMIT ?2",
            )
            .map_err(sql("reading history"))?;
        let rows = stmt
            .query_map(params![to_i64(after, "version")?, limit], row_to_history)
            .map_err(sql("reading history"))?;
        let mut out = Vec::new();
        for row in rows {
            out.push(parse_history(row.map_err(sql("reading history"))?)?);
        }
        Ok(out)
    }

    /// Takes the config lock (idempotent: a held lock keeps its first reason).
    pub fn lock(
        &mut self,
        reason: &str,
        owner: &str,
        meta: &Meta,
    ) -> Result<(Lock, LockOutcome), StoreError> {
        let (next, outcome) = lock::lock(
            &self.lock,
            reason,
            owner,
            meta.now_ms,
            meta.action_id.as_deref(),
        );
        let held = next.clone().ok_or_else(|| StoreError::Corrupt {
            what: "lock".into(),
            reason: "lock decision returned no lock".into(),
        })?;
        if outcome == LockOutcome::Changed {
            let json = serde_json::to_string(&held).map_err(|e| StoreError::Corrupt {
                what: "lock".into(),
                reason: e.to_string(),
            })?;
            let detail = serde_json::json!({ "reason": reason, "owner": owner });
            let tx = self.conn.transaction().map_err(sql("beginning lock"))?;
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('lock', ?1)",
                [json],
            )
            .map_err(sql("writing lock"))?;
            insert_event(&tx, meta, "config.locked", &detail)?;
            tx.commit().map_err(sql("committing lock"))?;
            self.lock = next;
            info!(reason, owner, "config locked");
        }
        Ok((held, outcome))
    }

    /// Releases the config lock (idempotent) for `caller`, its owner, or
    /// anyone with `force` (the event log says who and that it was forced).
    pub fn unlock(
        &mut self,
        reason: &str,
        caller: &str,
        force: bool,
        meta: &Meta,
    ) -> Result<LockOutcome, StoreError> {
        let owner = self.lock.as_ref().map(|l| l.owner.clone());
        let (_, outcome) = lock::unlock(&self.lock, caller, force)?;
        if outcome == LockOutcome::Changed {
            let forced = force && owner.as_deref() != Some(caller);
            let detail = serde_json::json!({ "reason": reason, "by": caller, "owner": owner, "forced": forced });
            let tx = self.conn.transaction().map_err(sql("beginning unlock"))?;
            tx.execute("DELETE FROM meta WHERE key = 'lock'", [])
                .map_err(sql("deleting lock"))?;
            insert_event(&tx, meta, "config.unlocked", &detail)?;
            tx.commit().map_err(sql("committing unlock"))?;
            self.lock = None;
            if forced {
                tracing::warn!(reason, by = caller, owner = ?owner, "config lock lifted by force");
            } else {
                info!(reason, "config unlocked");
            }
        }
        Ok(outcome)
    }

    /// Persists the partner's acknowledgement of our section (monotonic).
    pub fn set_peer_acked(&mut self, v: u64) -> Result<(), StoreError> {
        if v <= self.peer_acked && v != 0 {
            return Ok(());
        }
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES ('peer_acked', ?1)")
            .map_err(sql("preparing peer_acked"))?
            .execute([v.to_string()])
            .map_err(sql("writing peer_acked"))?;
        self.peer_acked = v;
        Ok(())
    }

    /// One page of the whole state for a partner that rebuilds from it:
    /// every key after `after` in key order (objects and tombstones, with
    /// their stamps), at most `limit` items and about `max_bytes` of JSON
    /// (at least one item). The flag says whether more follow.
    pub fn snapshot_page(
        &self,
        after: Option<&(Kind, String)>,
        limit: usize,
        max_bytes: usize,
    ) -> (Vec<SnapshotItem>, bool) {
        use std::ops::Bound::{Excluded, Unbounded};
        let mut iter = match after {
            Some(k) => self.state.stamps.range((Excluded(k.clone()), Unbounded)),
            None => self.state.stamps.range::<(Kind, String), _>(..),
        };
        let (mut items, mut bytes) = (Vec::new(), 0usize);
        for ((kind, key), stamp) in iter.by_ref() {
            let item = SnapshotItem {
                kind: *kind,
                key: key.clone(),
                body: self.state.config.get(*kind, key).map(|o| o.to_json()),
                stamp: stamp.clone(),
            };
            bytes = bytes.saturating_add(serde_json::to_string(&item).map_or(0, |t| t.len()));
            items.push(item);
            if items.len() >= limit.max(1) || bytes >= max_bytes {
                break;
            }
        }
        let more = iter.next().is_some();
        (items, more)
    }

    /// Rebuilds this controller's database from the partner's state after
    /// it was lost (a replaced boot disk): only while our own section is
    /// empty here (`RebuildRefused` otherwise). Every item wins where its
    /// stamp is greater than ours (a merge: what came from the partner's
    /// log meanwhile stays), our section resumes at `own_seq` (what the
    /// partner has merged of our old log, so our next entry follows it)
    /// and the partner's at `partner_seq`. One transaction; the event log
    /// records it. Returns how many objects were written.
    pub fn rebuild_from(
        &mut self,
        items: &[SnapshotItem],
        partner: &str,
        own_seq: u64,
        partner_seq: u64,
        meta: &Meta,
    ) -> Result<usize, StoreError> {
        if self.section_version() != 0 {
            return Err(StoreError::RebuildRefused(format!(
                "this controller's own section is at version {}: its database is not empty",
                self.section_version()
            )));
        }
        // Every body is read back before anything is written.
        for it in items {
            if let Some(b) = &it.body {
                let what = format!("snapshot object {}/{}", it.kind, it.key);
                let obj = Object::from_json(it.kind, b).map_err(|(p, r)| StoreError::Corrupt {
                    what: what.clone(),
                    reason: format!("{p}: {r}"),
                })?;
                if obj.key() != it.key {
                    return Err(StoreError::Corrupt {
                        what,
                        reason: format!("its body's key is {:?}", obj.key()),
                    });
                }
            }
        }
        let winners: Vec<&SnapshotItem> = items
            .iter()
            .filter(|it| {
                self.state
                    .stamps
                    .get(&(it.kind, it.key.clone()))
                    .is_none_or(|mine| *mine < it.stamp)
            })
            .collect();
        let gen = to_i64(self.version.saturating_add(1), "version")?;
        let partner_seq = partner_seq.max(self.applied(partner));
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql("beginning rebuild"))?;
        {
            let mut put = tx
                .prepare_cached(PUT_OBJECT)
                .map_err(sql("preparing object write"))?;
            for it in &winners {
                put.execute(params![
                    it.kind.as_str(),
                    it.key,
                    it.body.as_ref().map(Value::to_string),
                    to_i64(it.stamp.epoch, "epoch")?,
                    to_i64(it.stamp.lamport, "lamport")?,
                    it.stamp.origin,
                    gen
                ])
                .map_err(sql("writing object"))?;
            }
            let mut head = tx
                .prepare_cached(PUT_HEAD)
                .map_err(sql("preparing head write"))?;
            head.execute(params![self.me, to_i64(own_seq, "seq")?, gen])
                .map_err(sql("writing head"))?;
            head.execute(params![partner, to_i64(partner_seq, "seq")?, gen])
                .map_err(sql("writing head"))?;
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('peer_acked', ?1)",
                [own_seq.to_string()],
            )
            .map_err(sql("writing peer_acked"))?;
            let detail = serde_json::json!({"partner": partner, "objects": winners.len(),
                "own_section_version": own_seq, "partner_section_version": partner_seq});
            insert_event(&tx, meta, "config.rebuilt", &detail)?;
        }
        tx.commit().map_err(sql("committing rebuild"))?;
        let written = winners.len();
        self.load()?;
        info!(
            partner,
            objects = written,
            own_section_version = own_seq,
            partner_section_version = partner_seq,
            "config database rebuilt from the partner"
        );
        Ok(written)
    }

    /// Appends to the event log.
    pub fn log_event(&mut self, meta: &Meta, kind: &str, detail: &Value) -> Result<(), StoreError> {
        insert_event(&self.conn, meta, kind, detail)
    }

    /// Event log rows after `after`, oldest first.
    pub fn events(&self, after: i64, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, time_ms, action_id, kind, detail FROM events WHERE id > ?1 ORDER BY id LIMIT ?2",
            )
            .map_err(sql("reading events"))?;
        let rows = stmt
            .query_map(params![after, limit], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .map_err(sql("reading events"))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, t, action_id, kind, detail) = row.map_err(sql("reading events"))?;
            out.push(EventRow {
                id,
                time_ms: to_u64(t, "events.time_ms")?,
                action_id,
                kind,
                detail: serde_json::from_str(&detail).unwrap_or(Value::String(detail)),
            });
        }
        Ok(out)
    }

    /// Drops log rows more than `keep` versions old, except our own entries
    /// the partner has not acknowledged yet (it may still need them). The
    /// heads table keeps every section version, so nothing but history is
    /// lost. Returns the number of rows dropped.
    pub fn prune(&mut self, keep: u64) -> Result<usize, StoreError> {
        let Some(below) = self.version.checked_sub(keep) else {
            return Ok(0);
        };
        let n = self
            .conn
            .prepare_cached("DELETE FROM log WHERE gen <= ?1 AND (origin <> ?2 OR seq <= ?3)")
            .map_err(sql("preparing prune"))?
            .execute(params![
                to_i64(below, "version")?,
                self.me,
                to_i64(self.peer_acked, "peer_acked")?
            ])
            .map_err(sql("pruning log"))?;
        if n > 0 {
            info!(rows = n, below, "pruned the change log");
        }
        Ok(n)
    }

    /// The durability settings in force on our connection:
    /// (`journal_mode`, `synchronous`), expected ("wal", 2 = FULL).
    pub fn durability(&self) -> Result<(String, i64), StoreError> {
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(sql("reading journal_mode"))?;
        let sync: i64 = self
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(sql("reading synchronous"))?;
        Ok((mode, sync))
    }

    /// Runs SQLite's integrity check (for tests and `config.status`).
    pub fn integrity_check(&self) -> Result<String, StoreError> {
        self.conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .map_err(sql("checking integrity"))
    }
}

fn insert_event(
    conn: &Connection,
    meta: &Meta,
    kind: &str,
    detail: &Value,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO events (time_ms, action_id, kind, detail) VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(sql("preparing event"))?
    .execute(params![
        to_i64(meta.now_ms, "time")?,
        meta.action_id,
        kind,
        detail.to_string()
    ])
    .map_err(sql("writing event"))?;
    Ok(())
}

type RawHistory = (i64, String, i64, i64, Option<String>, String);

fn row_to_history(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawHistory> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn parse_history(raw: RawHistory) -> Result<HistoryRow, StoreError> {
    let (gen, origin, seq, time_ms, action_id, ops) = raw;
    let what = format!("log entry {gen}");
    let ops: Vec<Op> = serde_json::from_str(&ops).map_err(|e| StoreError::Corrupt {
        what: what.clone(),
        reason: e.to_string(),
    })?;
    Ok(HistoryRow {
        version: to_u64(gen, &what)?,
        entry: Entry {
            origin,
            seq: to_u64(seq, &what)?,
            time_ms: to_u64(time_ms, &what)?,
            action_id,
            ops,
        },
    })
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version    INTEGER PRIMARY KEY,
            name       TEXT NOT NULL,
            applied_at TEXT NOT NULL DEFAULT (datetime('now'))
         )",
    )
    .map_err(sql("creating schema_migrations"))?;
    let current: u32 = conn
        .query_row(
            "SELECT coalesce(max(version), 0) FROM schema_migrations",
            [],
            |r| r.get(0),
        )
        .map_err(sql("reading schema version"))?;
    let known = MIGRATIONS.last().map_or(0, |m| m.0);
    if current > known {
        return Err(StoreError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for &(version, name, sql_text) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let err = |source| StoreError::Migration {
            version,
            name,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        tx.execute_batch(sql_text).map_err(err)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES (?1, ?2)",
            params![version, name],
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        info!(version, name, "schema migration applied");
    }
    Ok(())
}
