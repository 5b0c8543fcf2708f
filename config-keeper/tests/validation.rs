//! One test per validation rule: the error names the field and the reason,
//! and nothing is written (version and digest unchanged).
#![allow(clippy::unwrap_used)] // tests: a failed step should panic with its location

mod common;

use common::*;
use duplex_api::change::ViolationClass;
use duplex_config_keeper::error::ApplyError;
use serde_json::{json, Value};

/// Applies `changes` to a populated store of controller a and expects a
/// violation of `class` at `field` whose reason contains `reason`.
fn refused(changes: Value, class: ViolationClass, field: &str, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = populated(dir.path(), "a");
    let (v, d, h) = (s.version(), s.digest(), s.history(0, 1000).unwrap().len());
    match apply(&mut s, changes) {
        Err(ApplyError::Invalid(vi)) => {
            assert_eq!(vi.field, field, "wrong field in {vi}");
            assert_eq!(vi.class, class, "wrong class in {vi}");
            assert!(
                vi.reason.contains(reason),
                "reason {:?} lacks {reason:?}",
                vi.reason
            );
        }
        other => panic!("expected a violation at {field}, got {other:?}"),
    }
    assert_eq!(s.version(), v, "version moved");
    assert_eq!(s.digest(), d, "content changed");
    assert_eq!(s.history(0, 1000).unwrap().len(), h, "history grew");
    // And the same after a reopen: nothing reached the disk.
    let path = s.path().to_path_buf();
    drop(s);
    let s = duplex_config_keeper::store::Store::open(&path, "a").unwrap();
    assert_eq!((s.version(), s.digest()), (v, d));
}

/// [`refused`] for the single change `change`, at `changes[0].object.<field>`.
fn refused_obj(change: Value, class: ViolationClass, field: &str, reason: &str) {
    refused(
        json!([change]),
        class,
        &format!("changes[0].object.{field}"),
        reason,
    );
}

/// The upsert of volume `v<n>` of pool pa (see `volume_obj`) with `field`
/// set to `value`.
fn vol_with(n: u32, field: &str, value: Value) -> Value {
    let mut v = volume_obj(&format!("v{n}"), "pa", n);
    v[field] = value;
    up("volume", v)
}

use ViolationClass::{Conflict, Invalid, NotOwner};

#[test]
fn malformed_name() {
    refused_obj(volume("bad name", "pa", 9), Invalid, "name", "contains ' '");
    refused_obj(group("-g", &[]), Invalid, "name", "start with");
    refused_obj(group(&"g".repeat(64), &[]), Invalid, "name", "longer than");
}

#[test]
fn size_without_unit() {
    refused_obj(vol_with(9, "size", json!("10")), Invalid, "size", "no unit");
    refused_obj(vol_with(9, "size", json!(10)), Invalid, "size", "no unit");
    let furlongs = json!("10 furlongs");
    refused_obj(
        vol_with(9, "size", furlongs),
        Invalid,
        "size",
        "unknown unit",
    );
}

#[test]
fn size_zero() {
    refused_obj(
        vol_with(9, "size", json!("0GiB")),
        Invalid,
        "size",
        "greater than zero",
    );
}

#[test]
fn volume_cannot_shrink_or_change_identity() {
    refused_obj(
        vol_with(1, "size", json!("1GiB")),
        Invalid,
        "size",
        "cannot shrink",
    );
    refused_obj(
        vol_with(1, "serial", json!("ffffffffffffffff")),
        Invalid,
        "serial",
        "cannot change",
    );
}

#[test]
fn volume_identifiers() {
    for (field, value, reason) in [
        ("serial", "not-hex-serial", "hex"),
        ("wwn", "7001405abcdef0123456789abcdef012", "NAA type 6"),
        ("nguid", "00000000000000000000000000000000", "zeros"),
        ("uuid", "xyz", "UUID"),
    ] {
        refused_obj(vol_with(9, field, json!(value)), Invalid, field, reason);
    }
    // Two volumes with one serial collide in the hosts' multipath.
    let serial = volume_obj("v1", "pa", 1)["serial"].clone();
    let reason = "already used by volume \"v1\"";
    refused_obj(vol_with(9, "serial", serial), Conflict, "serial", reason);
}

#[test]
fn unknown_field() {
    refused_obj(
        vol_with(9, "sise", json!("1GiB")),
        Invalid,
        "sise",
        "unknown field",
    );
}

#[test]
fn missing_references() {
    refused_obj(
        volume("v9", "nope", 9),
        Invalid,
        "pool",
        "pool \"nope\" does not exist",
    );
    refused_obj(
        export_iscsi("e9", "v2", "nogroup", 5),
        Invalid,
        "host_group",
        "does not exist",
    );
    refused_obj(
        export_iscsi("e9", "nov", "g1", 5),
        Invalid,
        "volume",
        "does not exist",
    );
    refused_obj(
        group("g9", &["h1", "ghost"]),
        Invalid,
        "hosts[1]",
        "\"ghost\" does not exist",
    );
    let mut p = pool("p9", "a", [3, 4]);
    p["object"]["owner"] = json!("c");
    refused_obj(p, Invalid, "owner", "controller \"c\" does not exist");
    let mut p = volume_obj("v9", "pa", 9);
    p["parent_snapshot"] = json!("nosnap");
    refused_obj(
        up("volume", p),
        Invalid,
        "parent_snapshot",
        "does not exist",
    );
}

#[test]
fn reference_checked_in_batch_order() {
    // The second change refers to a pool the batch never creates.
    refused(
        json!([group("g9", &[]), volume("v9", "p9", 9)]),
        Invalid,
        "changes[1].object.pool",
        "does not exist",
    );
}

#[test]
fn delete_of_referenced_object() {
    for (kind, name, class, reason) in [
        ("volume", "v1", Conflict, "still used by export"),
        ("host", "h1", Conflict, "still used by host group \"g1\""),
        ("pool", "pa", Conflict, "still used by volume"),
        ("settings", "settings", Invalid, "cannot be deleted"),
    ] {
        refused(json!([del(kind, name)]), class, "changes[0]", reason);
    }
}

#[test]
fn iqn_syntax() {
    let mut h = host("h9");
    h["object"]["iqns"] = json!(["iqn.2024-13.com.example:h9"]);
    refused(json!([h]), Invalid, "changes[0].object.iqns[0]", "yyyy-mm");
    let mut h = host("h9");
    h["object"]["iqns"] = json!(["iqn.2024-01.com.example:H9"]);
    refused_obj(h, Invalid, "iqns[0]", "lowercase");
    let mut h = host("h9");
    h["object"]["iqns"] = json!(["wwn.2024-01.com.example:h9"]);
    refused_obj(h, Invalid, "iqns[0]", "must start with");
}

#[test]
fn nqn_syntax() {
    let mut h = host("h9");
    h["object"]["nqns"] = json!(["nqn.2024-01.com.example"]);
    refused_obj(h, Invalid, "nqns[0]", "identifier");
    let mut h = host("h9");
    h["object"]["nqns"] = json!(["nqn.2014-08.org.nvmexpress:uuid:1234"]);
    refused(json!([h]), Invalid, "changes[0].object.nqns[0]", "UUID");
}

#[test]
fn initiator_names_unique_across_hosts() {
    let mut h = host("h9");
    h["object"]["iqns"] = json!(["iqn.2024-01.com.example:h1"]);
    refused_obj(h, Conflict, "iqns[0]", "already belongs to host \"h1\"");
    let mut h = host("h9");
    h["object"]["nqns"] = json!(["nqn.2024-01.com.example:h2"]);
    refused_obj(h, Conflict, "nqns[0]", "already belongs to host \"h2\"");
    let mut h = host("h9");
    h["object"]["iqns"] = json!(["iqn.2024-01.com.example:x", "iqn.2024-01.com.example:x"]);
    refused_obj(h, Invalid, "iqns", "listed twice");
}

#[test]
fn host_needs_an_initiator_and_good_chap() {
    refused_obj(
        up("host", json!({"name": "h9"})),
        Invalid,
        "iqns",
        "at least one",
    );
    let mut h = host("h9");
    h["object"]["chap"]["secret"] = json!("short");
    refused_obj(h, Invalid, "chap.secret", "12 to 255");
}

#[test]
fn ip_syntax() {
    for (address, reason) in [
        ("300.1.1.1/24", "not an IP address"),
        ("198.51.100.20/33", "larger than 32"),
        ("198.51.100.20", "address/prefix"),
        ("198.51.100.0/24", "network address"),
        ("198.51.100.255/24", "broadcast"),
    ] {
        refused_obj(fip("f9", address, "a"), Invalid, "address", reason);
    }
    let mut f = fip("f9", "198.51.100.20/24", "a");
    f["object"]["interface"] = json!("eth0/1");
    refused(json!([f]), Invalid, "changes[0].object.interface", "'/'");
}

#[test]
fn ip_addresses_do_not_repeat_or_overlap() {
    for (address, reason) in [
        (
            "192.0.2.1/24",
            "already used by controller \"a\" management",
        ),
        ("198.51.100.10/24", "already used by floating IP"),
        ("198.51.0.1/16", "overlaps 198.51.100.10/24"),
        ("10.10.0.9/24", "interconnect"),
    ] {
        refused_obj(fip("f9", address, "a"), Conflict, "address", reason);
    }
    let mut c = controller("b", 2);
    c["object"]["interconnect"] = json!(["192.0.2.77/24"]);
    refused_obj(c, Conflict, "interconnect[0]", "overlaps");
}

#[test]
fn lun_and_nsid_unique_in_group() {
    refused_obj(
        export_iscsi("e9", "v2", "g1", 0),
        Conflict,
        "lun",
        "lun 0 is already used in host group \"g1\"",
    );
    refused_obj(
        export_nvme("e9", "v2", "g1", 1),
        Conflict,
        "nsid",
        "nsid 1 is already used",
    );
    refused_obj(
        export_iscsi("e9", "v1", "g1", 7),
        Conflict,
        "volume",
        "already exported",
    );
    // The same LUN in another group is fine; checked by the positive test.
}

#[test]
fn lun_and_nsid_shape() {
    refused_obj(
        up(
            "export",
            json!({"name": "e9", "volume": "v2", "protocol": "iscsi", "host_group": "g1"}),
        ),
        Invalid,
        "lun",
        "required for iscsi",
    );
    refused_obj(
        up(
            "export",
            json!({"name": "e9", "volume": "v2", "protocol": "nvme", "nsid": 0, "host_group": "g1"}),
        ),
        Invalid,
        "nsid",
        "reserved",
    );
    refused_obj(
        export_iscsi("e9", "v2", "g1", 20000),
        Invalid,
        "lun",
        "0 to 16383",
    );
}

#[test]
fn pools_need_shared_disks_of_their_tier() {
    let mut d = disk(5);
    d["object"]["seen_by"] = json!(["a"]);
    refused(
        json!([d, pool("p9", "a", [5, 3])]),
        Invalid,
        "changes[1].object.disks[0]",
        "not seen by both",
    );
    refused_obj(
        pool("p9", "a", [1, 3]),
        Conflict,
        "disks[0]",
        "already in pool \"pa\"",
    );
    let mut p = pool("p9", "a", [3, 4]);
    p["object"]["layout"] = json!("raid6");
    refused_obj(p, Invalid, "disks", "at least 4 disks");
}

#[test]
fn ownership_change_needs_new_epoch() {
    let mut p = pool("pa", "a", [1, 2]);
    p["object"]["owner"] = json!("b");
    refused_obj(p.clone(), Invalid, "epoch", "new cluster epoch");
    p["object"]["epoch"] = json!(2);
    refused_obj(p, Invalid, "epoch", "greater than the cluster epoch");
    refused_obj(cluster(0), Invalid, "epoch", "only grows");
}

#[test]
fn partner_section_is_read_only() {
    refused(
        json!([pool("pb", "b", [3, 4])]),
        NotOwner,
        "changes[0]",
        "controller \"b\"'s section",
    );
    refused(
        json!([fip("fb", "198.51.100.11/24", "b")]),
        NotOwner,
        "changes[0]",
        "read-only replica",
    );
}

#[test]
fn settings_timings() {
    let mut s = settings();
    s["object"]["hb_interval_ms"] = json!(0);
    refused_obj(s, Invalid, "hb_interval_ms", "greater than zero");
    let mut s = settings();
    s["object"]["disk_timeout_ms"] = json!(10_100);
    refused_obj(s, Invalid, "disk_timeout_ms", "watchdog_timeout_ms");
    let mut s = settings();
    s["object"]["ic_timeout_ms"] = json!(150);
    refused_obj(s, Invalid, "ic_timeout_ms", "three heartbeat intervals");
}

#[test]
fn user_hash_must_be_argon2id() {
    let argon2i = "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";
    for (hash, role, field, reason) in [
        ("plaintext", "admin", "password_hash", "PHC"),
        (argon2i, "admin", "password_hash", "argon2id"),
        (HASH, "root", "role", "unknown variant"),
    ] {
        let user = json!({"name": "op", "password_hash": hash, "role": role});
        refused_obj(up("user", user), Invalid, field, reason);
    }
}

#[test]
fn batch_is_all_or_nothing() {
    // The first change is valid; the third is not; none may be written.
    refused(
        json!([
            group("g9", &["h1"]),
            volume("v9", "pa", 9),
            volume("v10", "pa", 9)
        ]),
        Conflict,
        "changes[2].object.serial",
        "already used by volume \"v9\"",
    );
}

#[test]
fn cluster_rules() {
    let mut c = cluster(1);
    c["object"]["id"] = json!("not-a-uuid");
    refused(json!([c]), Invalid, "changes[0].object.id", "UUID");
    let mut c = cluster(1);
    c["object"]["id"] = json!("6f0c8a9e-1b2c-4d3e-8f40-123456789abc");
    refused(json!([c]), Invalid, "changes[0].object.id", "cannot change");
    let mut c = cluster(1);
    c["object"]["secret_ref"] = json!(" ");
    refused(json!([c]), Invalid, "changes[0].object.secret_ref", "empty");
    // The cluster epoch cannot fall below what ownership records carry.
    let mut p = pool("pa", "a", [1, 2]);
    p["object"]["owner"] = json!("b");
    p["object"]["epoch"] = json!(2);
    refused(
        json!([cluster(2), p, cluster(1)]),
        Invalid,
        "changes[2].object.epoch",
        "only grows",
    );
}

#[test]
fn controller_rules() {
    refused_obj(controller("c", 3), Invalid, "id", "exactly two controllers");
    let mut c = controller("a", 1);
    c["object"]["name"] = json!("");
    refused(json!([c]), Invalid, "changes[0].object.name", "empty");
    let mut c = controller("a", 1);
    c["object"]["interconnect"] = json!([]);
    refused_obj(c, Invalid, "interconnect", "one or two");
    let mut c = controller("a", 1);
    c["object"]["interconnect"] = json!(["10.10.0.1/24", "10.10.0.1/24"]);
    refused_obj(c, Invalid, "interconnect", "listed twice");
    let mut c = controller("a", 1);
    c["object"]["management"] = json!("192.0.2.2/24");
    refused_obj(
        c,
        Conflict,
        "management",
        "already used by controller \"b\"",
    );
    refused(
        json!([del("controller", "b")]),
        Conflict,
        "changes[0]",
        "still used by disk",
    );
}

#[test]
fn disk_rules() {
    let mut d = disk(9);
    d["object"]["wwn"] = json!("5000C50000000009");
    refused_obj(d, Invalid, "wwn", "lowercase hex");
    let mut d = disk(9);
    d["object"]["serial"] = json!("");
    refused(json!([d]), Invalid, "changes[0].object.serial", "1 to 64");
    let mut d = disk(9);
    d["object"]["serial"] = json!("SER1");
    refused_obj(d, Conflict, "serial", "already disk");
    let mut d = disk(9);
    d["object"]["size"] = json!("0B");
    refused_obj(d, Invalid, "size", "greater than zero");
    let mut d = disk(9);
    d["object"]["seen_by"] = json!(["a", "z"]);
    refused_obj(d, Invalid, "seen_by[1]", "controller \"z\" does not exist");
    // A disk in a pool stays shared and keeps its tier.
    let mut d = disk(1);
    d["object"]["seen_by"] = json!(["a"]);
    refused_obj(d, Invalid, "seen_by", "seen by every controller");
    let mut d = disk(1);
    d["object"]["tier"] = json!("regular");
    refused_obj(d, Invalid, "tier", "another tier");
    refused(
        json!([del("disk", &disk_wwn(1))]),
        Conflict,
        "changes[0]",
        "still used by pool",
    );
}

#[test]
fn pool_rules() {
    let mut p = pool("pa", "a", [1, 2]);
    p["object"]["tier"] = json!("regular");
    refused_obj(p, Invalid, "tier", "cannot change");
    refused_obj(
        pool("p9", "a", [9, 3]),
        Invalid,
        "disks[0]",
        "does not exist",
    );
    let mut d3 = disk(3);
    d3["object"]["tier"] = json!("regular");
    let mut d4 = disk(4);
    d4["object"]["tier"] = json!("regular");
    refused(
        json!([d3, pool("p9", "a", [3, 4])]),
        Invalid,
        "changes[1].object.disks[0]",
        "is tier Regular",
    );
    let mut p = pool("p9", "a", [3, 4]);
    p["object"]["home"] = json!("z");
    refused_obj(p, Invalid, "home", "does not exist");
    let _ = d4;
}

#[test]
fn volume_size_and_snapshot_rules() {
    refused_obj(
        vol_with(9, "size", json!("1000B")),
        Invalid,
        "size",
        "multiple of 512",
    );
    let mut v = volume_obj("v9", "pa", 9);
    v["parent_snapshot"] = json!("v9");
    refused(
        json!([volume("v9", "pa", 9), up("volume", v)]),
        Invalid,
        "changes[1].object.parent_snapshot",
        "its own parent",
    );
    // A parent in another pool (b's pool replicated here is enough).
    let dir = tempfile::tempdir().unwrap();
    let mut s = populated(dir.path(), "a");
    let mut p = pool("pz", "a", [3, 4]);
    p["object"]["layout"] = json!("raid1");
    apply(&mut s, json!([p, volume("z1", "pz", 50)])).unwrap();
    let mut v = volume_obj("v9", "pa", 9);
    v["parent_snapshot"] = json!("z1");
    let e = apply(&mut s, json!([up("volume", v)])).unwrap_err();
    assert!(
        matches!(e, ApplyError::Invalid(ref x) if x.field == "changes[0].object.parent_snapshot" && x.reason.contains("is in pool")),
        "{e:?}"
    );
    refused(
        json!([del("volume", "v2"), volume_snap_child()]),
        Invalid,
        "changes[1].object.parent_snapshot",
        "does not exist",
    );
}

fn volume_snap_child() -> Value {
    let mut v = volume_obj("c1", "pa", 77);
    v["parent_snapshot"] = json!("v2");
    up("volume", v)
}

#[test]
fn export_protocol_field_mixups() {
    refused_obj(
        up(
            "export",
            json!({"name": "e9", "volume": "v2", "protocol": "iscsi", "lun": 3, "nsid": 3, "host_group": "g1"}),
        ),
        Invalid,
        "nsid",
        "only for nvme",
    );
    refused_obj(
        up(
            "export",
            json!({"name": "e9", "volume": "v2", "protocol": "nvme", "lun": 3, "nsid": 3, "host_group": "g1"}),
        ),
        Invalid,
        "lun",
        "only for iscsi",
    );
    refused_obj(
        up(
            "export",
            json!({"name": "e9", "volume": "v2", "protocol": "nvme", "host_group": "g1"}),
        ),
        Invalid,
        "nsid",
        "required for nvme",
    );
    refused_obj(
        up(
            "export",
            json!({"name": "e9", "volume": "v2", "protocol": "fc", "lun": 1, "host_group": "g1"}),
        ),
        Invalid,
        "protocol",
        "unknown variant",
    );
    refused(
        json!([del("host_group", "g1")]),
        Conflict,
        "changes[0]",
        "still used by export",
    );
}

#[test]
fn chap_needs_iscsi() {
    let mut h = host("h9");
    h["object"]["iqns"] = json!([]);
    refused(json!([h]), Invalid, "changes[0].object.chap", "no IQN");
    let mut h = host("h9");
    h["object"]["chap"]["user"] = json!("");
    refused_obj(h, Invalid, "chap.user", "1 to 255");
}

#[test]
fn floating_ip_ownership_and_interface() {
    let mut f = fip("fa", "198.51.100.10/24", "a");
    f["object"]["owner"] = json!("b");
    refused_obj(f, Invalid, "epoch", "new cluster epoch");
    let mut f = fip("f9", "198.51.100.20/24", "a");
    f["object"]["interface"] = json!("averyveryverylongname");
    refused_obj(f, Invalid, "interface", "1 to 15");
    let mut f = fip("f9", "198.51.100.20/24", "a");
    f["object"]["epoch"] = json!(5);
    refused_obj(f, Invalid, "epoch", "greater than the cluster epoch");
}

#[test]
fn partner_section_delete_is_refused() {
    // b's pool, replicated into a's store by merging b's log.
    let dir = tempfile::tempdir().unwrap();
    let mut a = populated(dir.path(), "a");
    let mut b = duplex_config_keeper::store::Store::open(&dir.path().join("b.db"), "b").unwrap();
    for e in a.entries_since("a", 0, 100).unwrap() {
        b.merge(&e).unwrap();
    }
    apply(&mut b, json!([pool("pb", "b", [3, 4])])).unwrap();
    for e in b.entries_since("b", 0, 100).unwrap() {
        a.merge(&e).unwrap();
    }
    let v = a.version();
    let e = apply(&mut a, json!([del("pool", "pb")])).unwrap_err();
    assert!(
        matches!(e, ApplyError::Invalid(ref x) if x.class == NotOwner && x.field == "changes[0]"),
        "{e:?}"
    );
    assert_eq!(a.version(), v);
    // Taking b's pool over needs only owner and a newer epoch.
    let mut p = pool("pb", "b", [3, 4]);
    p["object"]["owner"] = json!("a");
    p["object"]["epoch"] = json!(2);
    apply(&mut a, json!([cluster(2), p.clone()])).unwrap();
    // Anything else in b's pool record is still b's to change.
    p["object"]["layout"] = json!("raid0");
    p["object"]["epoch"] = json!(3);
    let e = apply(&mut a, json!([cluster(3), p])).unwrap_err();
    assert!(
        matches!(e, ApplyError::Invalid(ref x) if x.class == NotOwner),
        "{e:?}"
    );
}

/// Applies `changes` to a populated store of controller a and expects
/// success.
fn accepted(changes: Value) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = populated(dir.path(), "a");
    let v = s.version();
    apply(&mut s, changes).unwrap();
    assert!(s.version() > v, "nothing written");
}

#[test]
fn mutual_chap_needs_both_halves_and_its_own_secret() {
    let mut h = host("h9");
    h["object"]["chap"]["mutual_user"] = json!("target-a");
    refused_obj(h.clone(), Invalid, "chap.mutual_secret", "both");
    let secret = h["object"]["chap"]["secret"].clone();
    h["object"]["chap"]["mutual_secret"] = secret;
    refused_obj(h.clone(), Invalid, "chap.mutual_secret", "differ");
    h["object"]["chap"]["mutual_secret"] = json!("short");
    refused_obj(h.clone(), Invalid, "chap.mutual_secret", "12 to 255");
    let mut only_secret = host("h9");
    only_secret["object"]["chap"]["mutual_secret"] = json!("another-secret-123");
    refused_obj(only_secret, Invalid, "chap.mutual_user", "both");
    h["object"]["chap"]["mutual_secret"] = json!("another-secret-123");
    accepted(json!([h]));
}

#[test]
fn portals_are_checked_like_other_addresses() {
    let mut c = controller("b", 2);
    c["object"]["portals"] = json!(["10.10.0.7/24"]);
    refused_obj(c.clone(), Conflict, "portals[0]", "overlaps");
    c["object"]["portals"] = json!(["198.51.100.10/24"]);
    refused_obj(
        c.clone(),
        Conflict,
        "portals[0]",
        "already used by floating IP",
    );
    c["object"]["portals"] = json!(["198.51.100.12/24", "198.51.100.12/24"]);
    refused_obj(c.clone(), Invalid, "portals", "twice");
    c["object"]["portals"] = json!(["198.51.100.12/24"]);
    let mut a = controller("a", 1);
    a["object"]["portals"] = json!(["198.51.100.12/24"]);
    refused(
        json!([c.clone(), a]),
        Conflict,
        "changes[1].object.portals[0]",
        "controller \"b\" portal",
    );
    accepted(json!([c]));
}

#[test]
fn mirror_copies() {
    let mut p = pool("p9", "a", [3, 4]);
    p["object"]["copies"] = json!(4);
    refused_obj(p.clone(), Invalid, "copies", "2 or 3");
    p["object"]["copies"] = json!(3);
    refused_obj(p.clone(), Invalid, "disks", "at least 3");
    p["object"]["layout"] = json!("linear");
    refused_obj(p.clone(), Invalid, "copies", "only a raid1");
    p["object"]["layout"] = json!("raid1");
    p["object"]["copies"] = json!(2);
    accepted(json!([p]));
}

#[test]
fn read_only_volume_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = populated(dir.path(), "a");
    let mut v = volume_obj("ro1", "pa", 77);
    v["read_only"] = json!(true);
    apply(&mut s, json!([up("volume", v)])).unwrap();
    assert!(s.config().volumes["ro1"].read_only);
    // Objects without the field keep their canonical form (no
    // "read_only": false is written), so digests of old data do not move.
    let plain = serde_json::to_value(&s.config().volumes["v1"]).unwrap();
    assert!(plain.get("read_only").is_none(), "{plain}");
}
