//! The store on real SQLite files: idempotency, the digest, history,
//! reopening, the lock, and merging the partner's log.
#![allow(clippy::unwrap_used)] // tests: a failed step should panic with its location

mod common;

use common::*;
use duplex_api::model::Kind;
use duplex_config_keeper::core::state::{Entry, MergeError, Op, Stamp};
use duplex_config_keeper::error::{ApplyError, StoreError};
use duplex_config_keeper::keeper::{Keeper, MERGE_CONFLICT, MERGE_REFUSED};
use duplex_config_keeper::store::{Merged, Store};
use serde_json::json;

#[test]
fn apply_returns_new_version_and_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&dir.path().join("a.db"), "a").unwrap();
    assert_eq!(s.version(), 0);
    let r = apply(&mut s, shared()).unwrap();
    assert!(r.changed);
    assert_eq!((r.version, r.section_version), (1, 1));
    let r = apply(&mut s, section_a()).unwrap();
    assert_eq!((r.version, r.section_version), (2, 2));
    // Same changes again: nothing written, same version.
    let r = apply(&mut s, section_a()).unwrap();
    assert!(!r.changed);
    assert_eq!(r.version, 2);
    // Deleting what is not there is a no-op too.
    let r = apply(&mut s, json!([del("volume", "nothing")])).unwrap();
    assert!(!r.changed);
    // A set-like list in another order is the same object.
    let r = apply(&mut s, json!([group("g1", &["h2", "h1"])])).unwrap();
    assert!(!r.changed);
    assert_eq!(s.history(0, 100).unwrap().len(), 2);
}

#[test]
fn digest_ignores_insertion_order() {
    let dir = tempfile::tempdir().unwrap();
    let a = populated(dir.path(), "a");
    // Same content, built in another order and through intermediate states.
    let mut b = Store::open(&dir.path().join("other.db"), "a").unwrap();
    let mut items: Vec<serde_json::Value> = shared().as_array().unwrap().clone();
    items.extend(section_a().as_array().unwrap().iter().cloned());
    // Hosts and disks first in reverse, then the rest, one change per apply.
    apply(
        &mut b,
        json!([cluster(1), controller("b", 2), controller("a", 1)]),
    )
    .unwrap();
    for d in [4, 3, 2, 1] {
        apply(&mut b, json!([disk(d)])).unwrap();
    }
    apply(
        &mut b,
        json!([host("h2"), host("h1"), group("g1", &["h2"])]),
    )
    .unwrap();
    apply(&mut b, json!([volume("tmp", "nope", 99)])).unwrap_err();
    for item in items.iter().skip(8) {
        apply(&mut b, json!([item])).unwrap();
    }
    apply(&mut b, json!([group("g1", &["h2", "h1"])])).unwrap();
    // A created-then-deleted object leaves no trace in the digest.
    apply(&mut b, json!([group("gone", &[])])).unwrap();
    apply(&mut b, json!([del("host_group", "gone")])).unwrap();
    assert_ne!(a.version(), b.version());
    assert_eq!(a.config(), b.config());
    assert_eq!(a.digest(), b.digest());
    assert_eq!(a.digest().len(), 64);
    // And content differences show.
    apply(&mut b, json!([group("g2", &[])])).unwrap();
    assert_ne!(a.digest(), b.digest());
}

#[test]
fn sizes_are_canonical() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = populated(dir.path(), "a");
    let mut v = volume_obj("v1", "pa", 1);
    v["size"] = json!("10240MiB");
    let r = apply(&mut s, json!([up("volume", v)])).unwrap();
    assert!(!r.changed, "10240MiB is 10GiB");
    let got = s.config().to_json(Some(Kind::Volume));
    assert_eq!(got["volume"][0]["size"], "10GiB");
}

#[test]
fn history_records_every_transaction_with_its_action() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = populated(dir.path(), "a");
    apply(&mut s, json!([del("export", "e2"), group("g2", &["h1"])])).unwrap();
    let h = s.history(0, 100).unwrap();
    assert_eq!(
        h.iter().map(|r| r.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    let last = &h[2];
    assert_eq!(last.entry.action_id.as_deref(), Some("test-action"));
    assert_eq!(last.entry.origin, "a");
    let ops: Vec<(Kind, &str, bool)> = last
        .entry
        .ops
        .iter()
        .map(|o| (o.kind, o.key.as_str(), o.body.is_some()))
        .collect();
    assert_eq!(
        ops,
        vec![(Kind::Export, "e2", false), (Kind::HostGroup, "g2", true)]
    );
    assert_eq!(s.history(2, 100).unwrap().len(), 1);
}

#[test]
fn reopen_restores_everything_and_checks_owner() {
    let dir = tempfile::tempdir().unwrap();
    let s = populated(dir.path(), "a");
    let (v, sv, d, path) = (
        s.version(),
        s.section_version(),
        s.digest(),
        s.path().to_path_buf(),
    );
    let cfg = s.config().clone();
    drop(s);
    let s = Store::open(&path, "a").unwrap();
    assert_eq!((s.version(), s.section_version(), s.digest()), (v, sv, d));
    assert_eq!(s.config(), &cfg);
    assert_eq!(s.integrity_check().unwrap(), "ok");
    drop(s);
    match Store::open(&path, "b") {
        Err(StoreError::WrongController { found, expected }) => {
            assert_eq!((found.as_str(), expected.as_str()), ("a", "b"))
        }
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("opened a's database as b"),
    }
}

#[test]
fn database_is_wal_with_full_sync_and_numbered_migrations() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let s = populated(dir.path(), "a");
    assert_eq!(
        s.durability().unwrap(),
        ("wal".to_string(), 2),
        "WAL with synchronous=FULL"
    );
    drop(s);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let versions: Vec<u32> = conn
        .prepare("SELECT version FROM schema_migrations ORDER BY version")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, vec![1, 2, 3, 4]);
    let owner: String = conn
        .query_row("SELECT owner FROM pools WHERE name = 'pa'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(owner, "a");
    // synchronous is per connection; the store sets FULL on its own.
    drop(conn);
    // A database from a newer keeper is refused, not silently used.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "INSERT INTO schema_migrations (version, name) VALUES (99, 'future')",
        [],
    )
    .unwrap();
    drop(conn);
    assert!(matches!(
        Store::open(&path, "a"),
        Err(StoreError::SchemaTooNew { found: 99, .. })
    ));
}

#[test]
fn lock_refuses_apply_but_not_reads_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = populated(dir.path(), "a");
    let (held, _) = s
        .lock(
            "partner silent on interconnect, alive on disk",
            "heartbeat",
            &meta(),
        )
        .unwrap();
    assert_eq!(held.action_id.as_deref(), Some("test-action"));
    let v = s.version();
    match apply(&mut s, json!([group("g2", &[])])) {
        Err(ApplyError::Locked { reason, .. }) => assert!(reason.contains("partner silent")),
        other => panic!("expected config_locked, got {other:?}"),
    }
    assert_eq!(s.version(), v);
    // Reads work.
    assert!(s.config().pools.contains_key("pa"));
    assert_eq!(s.digest().len(), 64);
    assert_eq!(s.history(0, 10).unwrap().len(), 2);
    // A second lock keeps the first reason (idempotent).
    let (held, _) = s.lock("again", "client(pid=1)", &meta()).unwrap();
    assert!(held.reason.contains("partner silent"));
    assert_eq!(held.owner, "heartbeat");
    // The lock is durable: a keeper restart must not silently unlock.
    let path = s.path().to_path_buf();
    drop(s);
    let mut s = Store::open(&path, "a").unwrap();
    assert!(s.lock_state().is_some());
    assert!(matches!(
        apply(&mut s, json!([group("g2", &[])])),
        Err(ApplyError::Locked { .. })
    ));
    // Issue 16 point 6: another local client cannot lift heartbeat's lock
    // (before, any caller could); its owner can, and it is kept durably.
    assert!(matches!(
        s.unlock("not mine", "client(pid=9)", false, &meta()),
        Err(StoreError::NotLockOwner(_))
    ));
    assert!(s.lock_state().is_some_and(|l| l.owner == "heartbeat"));
    s.unlock("partner back", "heartbeat", false, &meta())
        .unwrap();
    s.unlock("twice is fine", "client(pid=9)", false, &meta())
        .unwrap();
    let r = apply(&mut s, json!([group("g2", &[])])).unwrap();
    assert_eq!(r.version, v + 1);
    let kinds: Vec<String> = s
        .events(0, 10)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec!["config.locked", "config.unlocked"]);
}

/// Ships every entry of `from`'s own section that `to` lacks.
fn ship(from: &Store, to: &mut Store) -> usize {
    let after = to.applied(from.me());
    let entries = from.entries_since(from.me(), after, 10_000).unwrap();
    for e in &entries {
        match to.merge(e).unwrap() {
            Merged::Applied { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    entries.len()
}

/// Store a (populated) and an empty store b in `dir`.
fn a_and_empty_b(dir: &std::path::Path) -> (Store, Store) {
    let a = populated(dir, "a");
    let b = Store::open(&dir.join("b.db"), "b").unwrap();
    (a, b)
}

/// [`a_and_empty_b`] with a's section shipped to b.
fn replicated(dir: &std::path::Path) -> (Store, Store) {
    let (a, mut b) = a_and_empty_b(dir);
    ship(&a, &mut b);
    (a, b)
}

#[test]
fn replicas_converge_and_partner_section_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = a_and_empty_b(dir.path());
    assert_eq!(ship(&a, &mut b), 2);
    assert_eq!(a.digest(), b.digest());
    // b builds its own section on top of the replicated shared part.
    apply(
        &mut b,
        json!([
            pool("pb", "b", [3, 4]),
            volume("w1", "pb", 101),
            fip("fb", "198.51.100.11/24", "b")
        ]),
    )
    .unwrap();
    // b cannot touch a's section.
    let e = apply(&mut b, json!([volume("v9", "pa", 9)])).unwrap_err();
    assert!(
        matches!(e, ApplyError::Invalid(ref v) if v.field == "changes[0]"),
        "{e:?}"
    );
    assert_eq!(ship(&b, &mut a), 1);
    assert_eq!(a.digest(), b.digest());
    // Re-shipping is harmless; a gap is reported, not applied.
    let e1 = b.entries_since("b", 0, 1).unwrap().remove(0);
    assert_eq!(a.merge(&e1).unwrap(), Merged::Duplicate { applied: 1 });
    apply(&mut b, json!([group("g2", &[])])).unwrap();
    apply(&mut b, json!([group("g3", &[])])).unwrap();
    let e3 = b.entries_since("b", 2, 1).unwrap().remove(0);
    assert_eq!(e3.seq, 3);
    assert_eq!(a.merge(&e3).unwrap(), Merged::Gap { applied: 1 });
    assert_eq!(ship(&b, &mut a), 2);
    assert_eq!(a.digest(), b.digest());
    // Our own entries are never accepted from the partner.
    let own = a.entries_since("a", 0, 1).unwrap().remove(0);
    assert!(matches!(b.merge(&own), Ok(Merged::Duplicate { .. })) || b.merge(&own).is_err());
    assert!(matches!(a.merge(&own), Err(StoreError::OwnOrigin { .. })));
    // Replicated state and positions survive a restart of the replica.
    let (d, applied, path) = (a.digest(), a.applied("b"), a.path().to_path_buf());
    drop(a);
    let a = Store::open(&path, "a").unwrap();
    assert_eq!((a.digest(), a.applied("b")), (d, applied));
}

#[test]
fn higher_epoch_wins_after_a_partition() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = replicated(dir.path());
    // Partition. b (survivor) takes a's pool over under epoch 2...
    let mut p = pool("pa", "a", [1, 2]);
    p["object"]["owner"] = json!("b");
    p["object"]["epoch"] = json!(2);
    let mut f = fip("fa", "198.51.100.10/24", "a");
    f["object"]["owner"] = json!("b");
    f["object"]["epoch"] = json!(2);
    apply(&mut b, json!([cluster(2), p, f])).unwrap();
    // ...while a, cut off, still edits its pool under epoch 1 (a later
    // Lamport time than b's write).
    apply(&mut a, json!([group("g7", &[])])).unwrap();
    apply(&mut a, json!([group("g8", &[])])).unwrap();
    let mut stale = pool("pa", "a", [1, 2]);
    stale["object"]["layout"] = json!("raid0");
    apply(&mut a, json!([stale])).unwrap();
    // Heal: both directions, in either order.
    ship(&a, &mut b);
    ship(&b, &mut a);
    assert_eq!(a.digest(), b.digest());
    let pa = &a.config().pools["pa"];
    assert_eq!(
        (pa.owner.as_str(), pa.epoch),
        ("b", 2),
        "the higher epoch wins"
    );
    assert_eq!(a.config().floating_ips["fa"].owner, "b");
    assert_eq!(a.config().cluster.as_ref().unwrap().epoch, 2);
    assert!(
        a.config().host_groups.contains_key("g8"),
        "non-conflicting writes of both survive"
    );
}

#[test]
fn merge_works_while_locked() {
    let dir = tempfile::tempdir().unwrap();
    let (a, mut b) = a_and_empty_b(dir.path());
    b.lock("partner suspected", "heartbeat", &meta()).unwrap();
    assert_eq!(ship(&a, &mut b), 2);
    assert_eq!(a.digest(), b.digest());
}

#[test]
fn clear_passwords_are_hashed_and_reapply_is_a_no_op() {
    use duplex_api::change::parse_changes;
    use duplex_config_keeper::password::{hash_passwords_in, verify_password};
    let dir = tempfile::tempdir().unwrap();
    let mut s = populated(dir.path(), "a");
    let mk = || {
        json!([up(
            "user",
            json!({"name": "ops", "password": "correct horse", "role": "read_only"})
        )])
    };
    let mut changes = mk();
    hash_passwords_in(&mut changes, s.config()).unwrap();
    assert!(
        changes.to_string().find("correct horse").is_none(),
        "clear text must not reach the store"
    );
    let r = s
        .apply(parse_changes("changes", &changes).unwrap(), &meta())
        .unwrap();
    assert!(r.changed);
    let hash = s.config().users["ops"].password_hash.clone();
    assert!(hash.starts_with("$argon2id$"));
    assert!(verify_password("correct horse", &hash));
    assert!(!verify_password("wrong", &hash));
    // Same password again: the stored hash is reused, nothing changes.
    let mut again = mk();
    hash_passwords_in(&mut again, s.config()).unwrap();
    let r = s
        .apply(parse_changes("changes", &again).unwrap(), &meta())
        .unwrap();
    assert!(!r.changed);
    // Too short a password names the field.
    let mut short = json!([up(
        "user",
        json!({"name": "x", "password": "short", "role": "admin"})
    )]);
    let e = hash_passwords_in(&mut short, s.config()).unwrap_err();
    assert_eq!(e.field, "changes[0].object.password");
}

#[test]
fn pruning_keeps_versions_and_unacknowledged_entries() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, mut b) = replicated(dir.path());
    for i in 0..50 {
        apply(&mut a, json!([flip("p", 10, i)])).unwrap();
        apply(&mut b, json!([flip("q", 10, i)])).unwrap();
    }
    // The partner acknowledged a's log up to 30 only.
    a.set_peer_acked(30).unwrap();
    ship(&b, &mut a);
    let (v, sv, pa, d) = (a.version(), a.section_version(), a.applied("b"), a.digest());
    let dropped = a.prune(5).unwrap();
    assert!(dropped > 0);
    // Our unacknowledged entries (31..) are still there for shipping.
    let pending = a.entries_since("a", 30, 1000).unwrap();
    assert_eq!(pending.first().map(|e| e.seq), Some(31));
    assert_eq!(pending.last().map(|e| e.seq), Some(sv));
    // Versions survive pruning and a reopen.
    let path = a.path().to_path_buf();
    drop(a);
    let a = Store::open(&path, "a").unwrap();
    assert_eq!(
        (a.version(), a.section_version(), a.applied("b"), a.digest()),
        (v, sv, pa, d)
    );
    assert!(a.history(0, 1000).unwrap().len() < usize::try_from(v).unwrap());
    // And merging resumes after the pruned rows, not from zero.
    apply(&mut b, json!([group("q-last", &[])])).unwrap();
    let mut a = a;
    assert_eq!(ship(&b, &mut a), 1);
}

/// A forged or buggy entry from "b" with one op.
fn forged(seq: u64, kind: Kind, key: &str, body: Option<serde_json::Value>, stamp: Stamp) -> Entry {
    Entry {
        origin: "b".into(),
        seq,
        time_ms: 1,
        action_id: None,
        ops: vec![Op {
            kind,
            key: key.into(),
            body,
            stamp,
        }],
    }
}

/// The kinds of the keeper's event log, oldest first.
fn event_kinds(rt: &tokio::runtime::Runtime, k: &std::sync::Arc<Keeper>) -> Vec<String> {
    rt.block_on(k.with_store(|s| s.events(0, 100).unwrap()))
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

/// A runtime for calling the keeper's async methods from a plain test.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn stamp(epoch: u64, lamport: u64, origin: &str) -> Stamp {
    Stamp {
        epoch,
        lamport,
        origin: origin.into(),
    }
}

/// Issue 16 point 6: the partner's push reply says which writes of a
/// merged entry lost to a concurrent local write (a later stamp), so the
/// writer's `sync` apply is not reported safe. Before, the reply was only
/// `applied`, and both concurrent writers answered `replicated: true`.
#[test]
fn a_push_reply_names_the_writes_a_concurrent_write_won() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, _b) = replicated(dir.path());
    let x = "iqn.2024-01.com.example:x";
    apply(
        &mut a,
        json!([up("host", json!({"name": "ha", "iqns": [x]}))]),
    )
    .unwrap();
    let held = a.state().stamps[&(Kind::Host, "ha".to_string())].clone();
    assert!(held.lamport > 1, "{held:?}");
    let (k, _changed) = Keeper::new(a, Some("b".into()));
    let rt = runtime();
    // b wrote ha concurrently, with an older stamp, and hz nobody else wrote.
    let y = "iqn.2024-01.com.example:y";
    let mut older = forged(
        1,
        Kind::Host,
        "ha",
        Some(json!({"name": "ha", "iqns": [y]})),
        stamp(0, 1, "b"),
    );
    older.ops.push(Op {
        kind: Kind::Host,
        key: "hz".into(),
        body: Some(json!({"name": "hz", "iqns": ["iqn.2024-01.com.example:z"]})),
        stamp: stamp(0, 1, "b"),
    });
    let (reply, _) = rt
        .block_on(k.on_push("b".into(), vec![older.clone()]))
        .unwrap();
    assert_eq!(reply["applied"], 1);
    let lost = json!([{"seq": 1, "kind": "host", "key": "ha"}]);
    assert_eq!(reply["superseded"], lost, "{reply}");
    // Pushed again (its reply was lost): the same report.
    let (reply, _) = rt.block_on(k.on_push("b".into(), vec![older])).unwrap();
    assert_eq!(reply["superseded"], lost, "{reply}");
    // A later write of b's wins and is reported clean.
    let later = forged(
        2,
        Kind::Host,
        "ha",
        Some(json!({"name": "ha", "iqns": [y]})),
        stamp(0, held.lamport + 10, "b"),
    );
    let (reply, _) = rt
        .block_on(k.on_push("b".into(), vec![later.clone()]))
        .unwrap();
    assert_eq!(reply["applied"], 2);
    assert_eq!(reply["superseded"], json!([]), "{reply}");
    // A later write here replaces it; pushed again, it still won when it
    // was merged (the report remembered, not recomputed).
    let meta = duplex_config_keeper::store::Meta {
        action_id: None,
        now_ms: 1,
    };
    let z = json!([up("host", json!({"name": "ha", "iqns": [x]}))]);
    rt.spawn(std::sync::Arc::clone(&k).run_committer());
    rt.block_on(k.apply(z, meta)).unwrap();
    let (reply, _) = rt.block_on(k.on_push("b".into(), vec![later])).unwrap();
    assert_eq!(reply["superseded"], json!([]), "{reply}");
}

/// Issue 16 point 1: merged entries are checked like local writes. Each of
/// these was merged before (the i64::MAX Lamport value then broke every
/// later apply on "a").
#[test]
fn merged_entries_are_checked_like_local_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, _b) = replicated(dir.path());
    let (digest, version) = (a.digest(), a.version());
    let vol = volume_obj("v9", "pa", 9);
    let h = host("h7")["object"].clone();
    let forgeries = [
        // b writing into a's section (a volume of a's pool pa).
        (
            "write to a's section",
            Kind::Volume,
            "v9",
            Some(vol),
            stamp(0, 50, "b"),
        ),
        // b deleting a's pool.
        (
            "delete in a's section",
            Kind::Pool,
            "pa",
            None,
            stamp(1, 50, "b"),
        ),
        // A key that is not its body's.
        (
            "key differs from body",
            Kind::Host,
            "h8",
            Some(h.clone()),
            stamp(0, 50, "b"),
        ),
        // A stamp that is not the origin's, or out of bounds.
        (
            "stamp origin",
            Kind::Host,
            "h7",
            Some(h.clone()),
            stamp(0, 50, "a"),
        ),
        (
            "lamport i64::MAX",
            Kind::Host,
            "h7",
            Some(h.clone()),
            stamp(0, i64::MAX as u64, "b"),
        ),
        (
            "epoch",
            Kind::Host,
            "h7",
            Some(h.clone()),
            stamp(u64::MAX, 50, "b"),
        ),
    ];
    for (what, kind, key, body, st) in forgeries {
        match a.merge(&forged(1, kind, key, body, st)) {
            Err(StoreError::Merge(MergeError::Refused { .. })) => {}
            other => panic!("{what}: {other:?}"),
        }
    }
    assert_eq!(
        (a.digest(), a.version(), a.applied("b")),
        (digest, version, 0)
    );
    // A good entry still merges, and a later local apply still works.
    let good = forged(1, Kind::Host, "h7", Some(h), stamp(0, 50, "b"));
    assert!(matches!(a.merge(&good).unwrap(), Merged::Applied { .. }));
    apply(&mut a, json!([group("g7", &["h7"])])).unwrap();
    // The same number again is a harmless duplicate; with other content it
    // is refused.
    assert!(matches!(a.merge(&good).unwrap(), Merged::Duplicate { .. }));
    let other = forged(
        1,
        Kind::Host,
        "h6",
        Some(host("h6")["object"].clone()),
        stamp(0, 51, "b"),
    );
    assert!(
        matches!(
            a.merge(&other),
            Err(StoreError::Merge(MergeError::SeqReused { seq: 1, .. }))
        ),
        "reused sequence number"
    );
    assert!(!a.config().hosts.contains_key("h6"));
}

/// The keeper answers a refused entry with `conflict` (flagged for an
/// alert) and records it in the event log.
#[test]
fn a_refused_entry_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (a, _b) = replicated(dir.path());
    let (k, _changed) = Keeper::new(a, Some("b".into()));
    let rt = runtime();
    let bad = forged(
        1,
        Kind::Volume,
        "v9",
        Some(volume_obj("v9", "pa", 9)),
        stamp(0, 50, "b"),
    );
    let e = rt.block_on(k.on_push("b".into(), vec![bad])).unwrap_err();
    assert_eq!(
        e.kind(),
        Some(duplex_services::ErrorCode::Conflict),
        "{e:?}"
    );
    assert!(
        e.data.as_ref().and_then(|d| d.get("alert")).is_some(),
        "{e:?}"
    );
    let kinds = event_kinds(&rt, &k);
    assert!(kinds.iter().any(|k| k == MERGE_REFUSED), "{kinds:?}");
}

/// Issue 16 point 7: the database holds CHAP secrets; it is 0600 whatever
/// the umask (it was 0644 under the usual 022), and an existing file is
/// made private again.
#[test]
fn the_database_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let mut s = Store::open(&path, "a").unwrap();
    apply(&mut s, shared()).unwrap();
    assert_eq!(mode(&path), 0o600);
    let wal = dir.path().join("a.db-wal");
    if wal.exists() {
        assert_eq!(mode(&wal), 0o600);
    }
    drop(s);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _s = Store::open(&path, "a").unwrap();
    assert_eq!(mode(&path), 0o600);
}

/// Issue 16 point 1: one IQN added to two hosts at once on "a" and "b"
/// (each write valid where it was made) merges, is alerted and recorded,
/// and the controller that made the later write is the one that removes
/// its claim. Before, the merge was silent and both hosts kept the name.
#[test]
fn a_merge_that_breaks_a_rule_is_alerted_and_settled_by_the_later_writer() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, _b) = replicated(dir.path());
    let (x, z) = ("iqn.2024-01.com.example:x", "iqn.2024-01.com.example:z");
    apply(
        &mut a,
        json!([up("host", json!({"name": "ha", "iqns": [x, z]}))]),
    )
    .unwrap();
    let (k, _changed) = Keeper::new(a, Some("b".into()));
    let rt = runtime();
    // b's claim of x is older (Lamport 1): a's later claim loses, a fixes.
    let hb = json!({"name": "hb", "iqns": [x]});
    let older = forged(1, Kind::Host, "hb", Some(hb), stamp(0, 1, "b"));
    let (reply, after) = rt.block_on(k.on_push("b".into(), vec![older])).unwrap();
    assert_eq!(reply["applied"], 1);
    assert_eq!(after.alerts.len(), 1, "{after:?}");
    let alert = &after.alerts[0];
    assert_eq!(alert["kind"], MERGE_CONFLICT);
    assert_eq!(alert["resolution"]["keeps"], "hb", "{alert}");
    assert_eq!(alert["resolution"]["loses"], "ha", "{alert}");
    assert_eq!(alert["resolution"]["writer"], "a", "{alert}");
    assert_eq!(after.fixes.len(), 1, "{after:?}");
    assert_eq!(after.fixes[0]["object"]["name"], "ha");
    assert_eq!(after.fixes[0]["object"]["iqns"], json!([z]));
    // b's claim of z is newer than a's: b loses it, and b writes the fix.
    let hc = json!({"name": "hc", "iqns": [z]});
    let newer = forged(2, Kind::Host, "hc", Some(hc), stamp(0, 9, "b"));
    let (_, after) = rt.block_on(k.on_push("b".into(), vec![newer])).unwrap();
    assert_eq!(after.alerts.len(), 1, "{after:?}");
    assert_eq!(after.alerts[0]["resolution"]["writer"], "b");
    assert_eq!(
        after.alerts[0]["resolution"]["automatic"], false,
        "hc has no other name"
    );
    assert!(after.fixes.is_empty(), "not a's to write: {after:?}");
    let kinds = event_kinds(&rt, &k);
    assert_eq!(
        kinds.iter().filter(|k| *k == MERGE_CONFLICT).count(),
        2,
        "{kinds:?}"
    );
}
