//! The audit log's table: administrators' writes as the routers saw them,
//! numbered per controller (`origin`, `seq`), the newest [`AUDIT_KEEP`] of
//! each controller kept. A controller's own entries are appended here; the
//! partner's arrive by `config.repl_audit` and keep their numbers.

use super::{to_i64, to_u64, Store};
use crate::error::{sql, StoreError};
use duplex_api::methods::config::{AuditEntry, AuditRecord};
use rusqlite::{params, OptionalExtension};
use serde_json::json;

/// Entries kept per controller; older ones are deleted as new ones come.
pub const AUDIT_KEEP: u64 = 10_000;

/// How far back (in entries) an appended record is looked for: a router
/// that died after config-keeper stored a batch but before it forgot its
/// spool sends that batch again (at most one batch).
pub const REPLAY_WINDOW: u64 = 256;

/// The meta key of the lowest next sequence number: raised when the
/// partner already holds higher numbers of ours (this database was
/// rebuilt), so no number is given twice.
const FLOOR_KEY: &str = "audit_seq_floor";

impl Store {
    /// The highest sequence number of `origin`'s entries held here (for
    /// this controller: also the floor), 0 when none.
    pub fn audit_head(&self, origin: &str) -> Result<u64, StoreError> {
        let max: Option<i64> = self
            .conn
            .prepare_cached("SELECT max(seq) FROM audit WHERE origin = ?1")
            .map_err(sql("reading the audit head"))?
            .query_row([origin], |r| r.get(0))
            .map_err(sql("reading the audit head"))?;
        let max = to_u64(max.unwrap_or(0), "audit seq")?;
        if origin != self.me {
            return Ok(max);
        }
        Ok(max.max(self.audit_floor()?))
    }

    fn audit_floor(&self) -> Result<u64, StoreError> {
        let v: Option<String> = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")
            .map_err(sql("reading the audit floor"))?
            .query_row([FLOOR_KEY], |r| r.get(0))
            .optional()
            .map_err(sql("reading the audit floor"))?;
        match v {
            None => Ok(0),
            Some(s) => s.parse().map_err(|_| StoreError::Corrupt {
                what: FLOOR_KEY.into(),
                reason: format!("{s:?} is not a number"),
            }),
        }
    }

    /// Numbers continue above `floor` (what the partner holds of ours).
    pub fn audit_raise_floor(&mut self, floor: u64) -> Result<(), StoreError> {
        if floor <= self.audit_head(&self.me.clone())? {
            return Ok(());
        }
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)")
            .map_err(sql("writing the audit floor"))?
            .execute(params![FLOOR_KEY, floor.to_string()])
            .map_err(sql("writing the audit floor"))?;
        Ok(())
    }

    /// Appends this controller's `records` (and, first, a record of
    /// `dropped` ones the router could not queue) in one transaction;
    /// returns the last sequence number.
    pub fn audit_append(
        &mut self,
        records: &[AuditRecord],
        dropped: u64,
        now_ms: u64,
    ) -> Result<u64, StoreError> {
        let me = self.me.clone();
        let mut seq = self.audit_head(&me)?;
        let gap = (dropped > 0).then(|| AuditRecord {
            time_ms: now_ms,
            action_id: "-".into(),
            method: "(dropped)".into(),
            caller: "router".into(),
            user: None,
            address: None,
            params: json!({ "dropped": dropped }),
            result: "dropped".into(),
            error: Some(format!(
                "{dropped} audit records were lost: the router's queue was full while config-keeper did not answer"
            )),
        });
        let tx = self
            .conn
            .transaction()
            .map_err(sql("starting an audit append"))?;
        let replay_from = seq.saturating_sub(REPLAY_WINDOW);
        for r in gap.iter().chain(records) {
            // Sent again after a router restart: held already, kept once.
            if held_recently(&tx, &me, replay_from, r)? {
                continue;
            }
            seq += 1;
            insert(&tx, &me, seq, r)?;
        }
        trim(&tx, &me, seq)?;
        tx.commit().map_err(sql("committing an audit append"))?;
        Ok(seq)
    }

    /// Stores the partner's `entries` (numbered by it; ones held already
    /// are skipped); returns the highest number held of `origin`.
    pub fn audit_merge(&mut self, origin: &str, entries: &[AuditEntry]) -> Result<u64, StoreError> {
        if origin == self.me {
            return Err(StoreError::OwnOrigin {
                origin: origin.into(),
                seq: entries.first().map_or(0, |e| e.seq),
            });
        }
        let tx = self
            .conn
            .transaction()
            .map_err(sql("starting an audit merge"))?;
        let mut top = 0;
        for e in entries {
            insert(&tx, origin, e.seq, &e.record)?;
            top = top.max(e.seq);
        }
        if top > 0 {
            trim(&tx, origin, top)?;
        }
        tx.commit().map_err(sql("committing an audit merge"))?;
        self.audit_head(origin)
    }

    /// `origin`'s entries after `after`, oldest first, at most `limit`.
    pub fn audit_after(
        &self,
        origin: &str,
        after: u64,
        limit: u32,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT origin, seq, record FROM audit WHERE origin = ?1 AND seq > ?2
                 ORDER BY seq LIMIT ?3",
            )
            .map_err(sql("reading the audit log"))?;
        let rows = stmt
            .query_map(params![origin, to_i64(after, "audit seq")?, limit], raw)
            .map_err(sql("reading the audit log"))?;
        rows.map(|r| entry(r.map_err(sql("reading the audit log"))?))
            .collect()
    }

    /// How many of this controller's entries come after `after`.
    pub fn audit_count_after(&self, after: u64) -> Result<u64, StoreError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM audit WHERE origin = ?1 AND seq > ?2")
            .map_err(sql("counting the audit log"))?
            .query_row(params![self.me, to_i64(after, "audit seq")?], |r| r.get(0))
            .map_err(sql("counting the audit log"))?;
        to_u64(n, "audit count")
    }

    /// The newest entries of both controllers (or of `controller`), older
    /// than `before_ms` when given, newest first.
    pub fn audit_list(
        &self,
        limit: u32,
        before_ms: Option<u64>,
        controller: Option<&str>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let before = match before_ms {
            Some(b) => Some(to_i64(b, "time")?),
            None => None,
        };
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT origin, seq, record FROM audit
                 WHERE (?1 IS NULL OR origin = ?1) AND (?2 IS NULL OR time_ms < ?2)
                 ORDER BY time_ms DESC, origin, seq DESC LIMIT ?3",
            )
            .map_err(sql("reading the audit log"))?;
        let rows = stmt
            .query_map(params![controller, before, limit], raw)
            .map_err(sql("reading the audit log"))?;
        rows.map(|r| entry(r.map_err(sql("reading the audit log"))?))
            .collect()
    }
}

type Raw = (String, i64, String);

fn raw(r: &rusqlite::Row<'_>) -> rusqlite::Result<Raw> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
}

fn entry((origin, seq, record): Raw) -> Result<AuditEntry, StoreError> {
    let record = serde_json::from_str(&record).map_err(|e| StoreError::Corrupt {
        what: format!("audit entry {origin}/{seq}"),
        reason: e.to_string(),
    })?;
    Ok(AuditEntry {
        controller: origin,
        seq: to_u64(seq, "audit seq")?,
        record,
    })
}

fn insert(
    tx: &rusqlite::Transaction<'_>,
    origin: &str,
    seq: u64,
    r: &AuditRecord,
) -> Result<(), StoreError> {
    let body = serde_json::to_string(r).map_err(|e| StoreError::Corrupt {
        what: "audit record".into(),
        reason: e.to_string(),
    })?;
    tx.prepare_cached(
        "INSERT OR IGNORE INTO audit (origin, seq, time_ms, record) VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(sql("writing the audit log"))?
    .execute(params![
        origin,
        to_i64(seq, "audit seq")?,
        to_i64(r.time_ms, "time")?,
        body
    ])
    .map_err(sql("writing the audit log"))?;
    Ok(())
}

/// Whether `origin` holds `r` among its entries numbered above `from`.
fn held_recently(
    tx: &rusqlite::Transaction<'_>,
    origin: &str,
    from: u64,
    r: &AuditRecord,
) -> Result<bool, StoreError> {
    let mut st = tx
        .prepare_cached("SELECT record FROM audit WHERE origin = ?1 AND seq > ?2 AND time_ms = ?3")
        .map_err(sql("reading the audit log"))?;
    let rows = st
        .query_map(
            params![
                origin,
                to_i64(from, "audit seq")?,
                to_i64(r.time_ms, "time")?
            ],
            |row| row.get::<_, String>(0),
        )
        .map_err(sql("reading the audit log"))?;
    for body in rows {
        let body = body.map_err(sql("reading the audit log"))?;
        if serde_json::from_str::<AuditRecord>(&body).is_ok_and(|held| held == *r) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Keeps `origin`'s newest [`AUDIT_KEEP`] numbers up to `head`.
fn trim(tx: &rusqlite::Transaction<'_>, origin: &str, head: u64) -> Result<(), StoreError> {
    let Some(below) = head.checked_sub(AUDIT_KEEP) else {
        return Ok(());
    };
    tx.prepare_cached("DELETE FROM audit WHERE origin = ?1 AND seq <= ?2")
        .map_err(sql("trimming the audit log"))?
        .execute(params![origin, to_i64(below, "audit seq")?])
        .map_err(sql("trimming the audit log"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(me: &str) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(&dir.path().join("c.db"), me).unwrap();
        (dir, s)
    }

    fn rec(t: u64, method: &str) -> AuditRecord {
        AuditRecord {
            time_ms: t,
            action_id: format!("a{t}"),
            method: method.into(),
            caller: "client(pid=1)".into(),
            user: Some("ann".into()),
            address: Some("192.0.2.7".into()),
            params: json!({"name": "p1"}),
            result: "ok".into(),
            error: None,
        }
    }

    #[test]
    fn appends_number_from_one_and_merges_keep_the_partners_numbers() {
        let (_d, mut a) = store("A");
        assert_eq!(a.audit_head("A").unwrap(), 0);
        let seq = a
            .audit_append(&[rec(10, "pool.create"), rec(20, "volume.create")], 0, 30)
            .unwrap();
        assert_eq!(seq, 2);
        let mine = a.audit_after("A", 0, 100).unwrap();
        assert_eq!(mine.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(mine[1].record, rec(20, "volume.create"));

        let (_d2, mut b) = store("B");
        assert_eq!(b.audit_merge("A", &mine).unwrap(), 2);
        // A repeated push (a reply lost on the way) changes nothing.
        assert_eq!(b.audit_merge("A", &mine).unwrap(), 2);
        b.audit_append(&[rec(15, "host.create")], 0, 15).unwrap();
        let all = b.audit_list(10, None, None).unwrap();
        let order: Vec<(&str, u64)> = all.iter().map(|e| (e.controller.as_str(), e.seq)).collect();
        assert_eq!(order, [("A", 2), ("B", 1), ("A", 1)], "newest first");
        let older = b.audit_list(10, Some(15), None).unwrap();
        assert_eq!(older.len(), 1);
        assert_eq!(b.audit_list(10, None, Some("B")).unwrap().len(), 1);
        // Its own entries never arrive as the partner's.
        assert!(matches!(
            b.audit_merge("B", &mine),
            Err(StoreError::OwnOrigin { .. })
        ));
    }

    #[test]
    fn a_batch_sent_again_after_a_router_restart_is_kept_once() {
        let (_d, mut a) = store("A");
        let batch = [rec(10, "pool.create"), rec(20, "volume.create")];
        assert_eq!(a.audit_append(&batch, 0, 30).unwrap(), 2);
        // The router died before it forgot its spool: the same batch, and
        // one record more.
        let again = [
            rec(10, "pool.create"),
            rec(20, "volume.create"),
            rec(40, "host.create"),
        ];
        assert_eq!(a.audit_append(&again, 0, 50).unwrap(), 3);
        let mine = a.audit_after("A", 0, 100).unwrap();
        assert_eq!(mine.len(), 3);
        assert_eq!(mine[2].record, rec(40, "host.create"));
        // The same method at the same time but another call is another entry.
        let mut other = rec(40, "host.create");
        other.action_id = "b40".into();
        assert_eq!(a.audit_append(&[other], 0, 60).unwrap(), 4);
    }

    #[test]
    fn a_dropped_count_is_an_entry_of_its_own_and_the_floor_prevents_reuse() {
        let (_d, mut a) = store("A");
        a.audit_append(&[rec(10, "pool.create")], 3, 9).unwrap();
        let e = a.audit_after("A", 0, 10).unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].record.method, "(dropped)");
        assert_eq!(e[0].record.params["dropped"], 3);
        assert_eq!(a.audit_count_after(1).unwrap(), 1);
        // A rebuilt database learns the partner holds 40 of its numbers.
        a.audit_raise_floor(40).unwrap();
        assert_eq!(a.audit_append(&[rec(11, "x.y")], 0, 11).unwrap(), 41);
        a.audit_raise_floor(5).unwrap();
        assert_eq!(a.audit_head("A").unwrap(), 41, "a floor never lowers");
    }

    #[test]
    fn keeps_the_newest_entries_per_controller() {
        let (_d, mut a) = store("A");
        for round in 0..(AUDIT_KEEP / 500 + 2) {
            // Distinct calls (the same record twice is kept once).
            let batch: Vec<AuditRecord> = (0..500)
                .map(|i| rec(round * 1000 + i, "volume.create"))
                .collect();
            a.audit_append(&batch, 0, 1).unwrap();
        }
        let head = a.audit_head("A").unwrap();
        assert_eq!(head, (AUDIT_KEEP / 500 + 2) * 500);
        let kept = a.audit_after("A", 0, u32::MAX).unwrap();
        assert_eq!(kept.len() as u64, AUDIT_KEEP);
        assert_eq!(kept[0].seq, head - AUDIT_KEEP + 1);
    }
}
