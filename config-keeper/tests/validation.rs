//! One test per validation rule: the error names the field and the reason,
//! and nothing is written (version and digest unchanged).
#![allow(clippy::unwrap_used)] // tests: a failed step should panic with its location

mod common;

use common::*;
use duplex_config_keeper::core::change::ViolationClass;
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

use ViolationClass::{Conflict, Invalid, NotOwner};

#[test]
fn malformed_name() {
    refused(
        json!([volume("bad name", "pa", 9)]),
        Invalid,
        "changes[0].object.name",
        "contains ' '",
    );
    refused(
        json!([group("-g", &[])]),
        Invalid,
        "changes[0].object.name",
        "start with",
    );
    refused(
        json!([group(&"g".repeat(64), &[])]),
        Invalid,
        "changes[0].object.name",
        "longer than",
    );
}

#[test]
fn size_without_unit() {
    let mut v = volume_obj("v9", "pa", 9);
    v["size"] = json!("10");
    refused(
        json!([up("volume", v.clone())]),
        Invalid,
        "changes[0].object.size",
        "no unit",
    );
    v["size"] = json!(10);
    refused(
        json!([up("volume", v.clone())]),
        Invalid,
        "changes[0].object.size",
        "no unit",
    );
    v["size"] = json!("10 furlongs");
    refused(
        json!([up("volume", v)]),
        Invalid,
        "changes[0].object.size",
        "unknown unit",
    );
}

#[test]
fn size_zero() {
    let mut v = volume_obj("v9", "pa", 9);
    v["size"] = json!("0GiB");
    refused(
        json!([up("volume", v)]),
        Invalid,
        "changes[0].object.size",
        "greater than zero",
    );
}

#[test]
fn volume_cannot_shrink_or_change_identity() {
    let mut v = volume_obj("v1", "pa", 1);
    v["size"] = json!("1GiB");
    refused(
        json!([up("volume", v)]),
        Invalid,
        "changes[0].object.size",
        "cannot shrink",
    );
    let mut v = volume_obj("v1", "pa", 1);
    v["serial"] = json!("ffffffffffffffff");
    refused(
        json!([up("volume", v)]),
        Invalid,
        "changes[0].object.serial",
        "cannot change",
    );
}

#[test]
fn volume_identifiers() {
    let mut v = volume_obj("v9", "pa", 9);
    v["serial"] = json!("not-hex-serial");
    refused(
        json!([up("volume", v)]),
        Invalid,
        "changes[0].object.serial",
        "hex",
    );
    let mut v = volume_obj("v9", "pa", 9);
    v["wwn"] = json!("7001405abcdef0123456789abcdef012");
    refused(
        json!([up("volume", v)]),
        Invalid,
        "changes[0].object.wwn",
        "NAA type 6",
    );
    let mut v = volume_obj("v9", "pa", 9);
    v["nguid"] = json!("00000000000000000000000000000000");
    refused(
        json!([up("volume", v)]),
        Invalid,
        "changes[0].object.nguid",
        "zeros",
    );
    let mut v = volume_obj("v9", "pa", 9);
    v["uuid"] = json!("xyz");
    refused(
        json!([up("volume", v)]),
        Invalid,
        "changes[0].object.uuid",
        "UUID",
    );
    // Two volumes with one serial collide in the hosts' multipath.
    let mut v = volume_obj("v9", "pa", 9);
    v["serial"] = volume_obj("v1", "pa", 1)["serial"].clone();
    refused(
        json!([up("volume", v)]),
        Conflict,
        "changes[0].object.serial",
        "already used by volume \"v1\"",
    );
}

#[test]
fn unknown_field() {
    let mut v = volume_obj("v9", "pa", 9);
    v["sise"] = json!("1GiB");
    refused(
        json!([up("volume", v)]),
        Invalid,
        "changes[0].object.sise",
        "unknown field",
    );
}

#[test]
fn missing_references() {
    refused(
        json!([volume("v9", "nope", 9)]),
        Invalid,
        "changes[0].object.pool",
        "pool \"nope\" does not exist",
    );
    refused(
        json!([export_iscsi("e9", "v2", "nogroup", 5)]),
        Invalid,
        "changes[0].object.host_group",
        "does not exist",
    );
    refused(
        json!([export_iscsi("e9", "nov", "g1", 5)]),
        Invalid,
        "changes[0].object.volume",
        "does not exist",
    );
    refused(
        json!([group("g9", &["h1", "ghost"])]),
        Invalid,
        "changes[0].object.hosts[0]",
        "\"ghost\" does not exist",
    );
    let mut p = pool("p9", "a", [3, 4]);
    p["object"]["owner"] = json!("c");
    refused(
        json!([p]),
        Invalid,
        "changes[0].object.owner",
        "controller \"c\" does not exist",
    );
    let mut p = volume_obj("v9", "pa", 9);
    p["parent_snapshot"] = json!("nosnap");
    refused(
        json!([up("volume", p)]),
        Invalid,
        "changes[0].object.parent_snapshot",
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
    refused(
        json!([del("volume", "v1")]),
        Conflict,
        "changes[0]",
        "still used by export",
    );
    refused(
        json!([del("host", "h1")]),
        Conflict,
        "changes[0]",
        "still used by host group \"g1\"",
    );
    refused(
        json!([del("pool", "pa")]),
        Conflict,
        "changes[0]",
        "still used by volume",
    );
    refused(
        json!([del("settings", "settings")]),
        Invalid,
        "changes[0]",
        "cannot be deleted",
    );
}

#[test]
fn iqn_syntax() {
    let mut h = host("h9");
    h["object"]["iqns"] = json!(["iqn.2024-13.com.example:h9"]);
    refused(json!([h]), Invalid, "changes[0].object.iqns[0]", "yyyy-mm");
    let mut h = host("h9");
    h["object"]["iqns"] = json!(["iqn.2024-01.com.example:H9"]);
    refused(
        json!([h]),
        Invalid,
        "changes[0].object.iqns[0]",
        "lowercase",
    );
    let mut h = host("h9");
    h["object"]["iqns"] = json!(["wwn.2024-01.com.example:h9"]);
    refused(
        json!([h]),
        Invalid,
        "changes[0].object.iqns[0]",
        "must start with",
    );
}

#[test]
fn nqn_syntax() {
    let mut h = host("h9");
    h["object"]["nqns"] = json!(["nqn.2024-01.com.example"]);
    refused(
        json!([h]),
        Invalid,
        "changes[0].object.nqns[0]",
        "identifier",
    );
    let mut h = host("h9");
    h["object"]["nqns"] = json!(["nqn.2014-08.org.nvmexpress:uuid:1234"]);
    refused(json!([h]), Invalid, "changes[0].object.nqns[0]", "UUID");
}

#[test]
fn initiator_names_unique_across_hosts() {
    let mut h = host("h9");
    h["object"]["iqns"] = json!(["iqn.2024-01.com.example:h1"]);
    refused(
        json!([h]),
        Conflict,
        "changes[0].object.iqns[0]",
        "already belongs to host \"h1\"",
    );
    let mut h = host("h9");
    h["object"]["nqns"] = json!(["nqn.2024-01.com.example:h2"]);
    refused(
        json!([h]),
        Conflict,
        "changes[0].object.nqns[0]",
        "already belongs to host \"h2\"",
    );
    let mut h = host("h9");
    h["object"]["iqns"] = json!(["iqn.2024-01.com.example:x", "iqn.2024-01.com.example:x"]);
    refused(
        json!([h]),
        Invalid,
        "changes[0].object.iqns",
        "listed twice",
    );
}

#[test]
fn host_needs_an_initiator_and_good_chap() {
    refused(
        json!([up("host", json!({"name": "h9"}))]),
        Invalid,
        "changes[0].object.iqns",
        "at least one",
    );
    let mut h = host("h9");
    h["object"]["chap"]["secret"] = json!("short");
    refused(
        json!([h]),
        Invalid,
        "changes[0].object.chap.secret",
        "12 to 255",
    );
}

#[test]
fn ip_syntax() {
    refused(
        json!([fip("f9", "300.1.1.1/24", "a")]),
        Invalid,
        "changes[0].object.address",
        "not an IP address",
    );
    refused(
        json!([fip("f9", "198.51.100.20/33", "a")]),
        Invalid,
        "changes[0].object.address",
        "larger than 32",
    );
    refused(
        json!([fip("f9", "198.51.100.20", "a")]),
        Invalid,
        "changes[0].object.address",
        "address/prefix",
    );
    refused(
        json!([fip("f9", "198.51.100.0/24", "a")]),
        Invalid,
        "changes[0].object.address",
        "network address",
    );
    refused(
        json!([fip("f9", "198.51.100.255/24", "a")]),
        Invalid,
        "changes[0].object.address",
        "broadcast",
    );
    let mut f = fip("f9", "198.51.100.20/24", "a");
    f["object"]["interface"] = json!("eth0/1");
    refused(json!([f]), Invalid, "changes[0].object.interface", "'/'");
}

#[test]
fn ip_addresses_do_not_repeat_or_overlap() {
    refused(
        json!([fip("f9", "192.0.2.1/24", "a")]),
        Conflict,
        "changes[0].object.address",
        "already used by controller \"a\" management",
    );
    refused(
        json!([fip("f9", "198.51.100.10/24", "a")]),
        Conflict,
        "changes[0].object.address",
        "already used by floating IP",
    );
    refused(
        json!([fip("f9", "198.51.0.1/16", "a")]),
        Conflict,
        "changes[0].object.address",
        "overlaps 198.51.100.10/24",
    );
    refused(
        json!([fip("f9", "10.10.0.9/24", "a")]),
        Conflict,
        "changes[0].object.address",
        "interconnect",
    );
    let mut c = controller("b", 2);
    c["object"]["interconnect"] = json!(["192.0.2.77/24"]);
    refused(
        json!([c]),
        Conflict,
        "changes[0].object.interconnect[0]",
        "overlaps",
    );
}

#[test]
fn lun_and_nsid_unique_in_group() {
    refused(
        json!([export_iscsi("e9", "v2", "g1", 0)]),
        Conflict,
        "changes[0].object.lun",
        "lun 0 is already used in host group \"g1\"",
    );
    refused(
        json!([export_nvme("e9", "v2", "g1", 1)]),
        Conflict,
        "changes[0].object.nsid",
        "nsid 1 is already used",
    );
    refused(
        json!([export_iscsi("e9", "v1", "g1", 7)]),
        Conflict,
        "changes[0].object.volume",
        "already exported",
    );
    // The same LUN in another group is fine; checked by the positive test.
}

#[test]
fn lun_and_nsid_shape() {
    refused(
        json!([up(
            "export",
            json!({"name": "e9", "volume": "v2", "protocol": "iscsi", "host_group": "g1"})
        )]),
        Invalid,
        "changes[0].object.lun",
        "required for iscsi",
    );
    refused(
        json!([up(
            "export",
            json!({"name": "e9", "volume": "v2", "protocol": "nvme", "nsid": 0, "host_group": "g1"})
        )]),
        Invalid,
        "changes[0].object.nsid",
        "reserved",
    );
    refused(
        json!([export_iscsi("e9", "v2", "g1", 20000)]),
        Invalid,
        "changes[0].object.lun",
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
        "changes[1].object.disks[1]",
        "not seen by both",
    );
    refused(
        json!([pool("p9", "a", [1, 3])]),
        Conflict,
        "changes[0].object.disks[0]",
        "already in pool \"pa\"",
    );
    let mut p = pool("p9", "a", [3, 4]);
    p["object"]["layout"] = json!("raid6");
    refused(
        json!([p]),
        Invalid,
        "changes[0].object.disks",
        "at least 4 disks",
    );
}

#[test]
fn ownership_change_needs_new_epoch() {
    let mut p = pool("pa", "a", [1, 2]);
    p["object"]["owner"] = json!("b");
    refused(
        json!([p.clone()]),
        Invalid,
        "changes[0].object.epoch",
        "new cluster epoch",
    );
    p["object"]["epoch"] = json!(2);
    refused(
        json!([p]),
        Invalid,
        "changes[0].object.epoch",
        "greater than the cluster epoch",
    );
    refused(
        json!([cluster(0)]),
        Invalid,
        "changes[0].object.epoch",
        "only grows",
    );
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
    refused(
        json!([s]),
        Invalid,
        "changes[0].object.hb_interval_ms",
        "greater than zero",
    );
    let mut s = settings();
    s["object"]["disk_timeout_ms"] = json!(10_100);
    refused(
        json!([s]),
        Invalid,
        "changes[0].object.disk_timeout_ms",
        "watchdog_timeout_ms",
    );
    let mut s = settings();
    s["object"]["ic_timeout_ms"] = json!(150);
    refused(
        json!([s]),
        Invalid,
        "changes[0].object.ic_timeout_ms",
        "three heartbeat intervals",
    );
}

#[test]
fn user_hash_must_be_argon2id() {
    refused(
        json!([up(
            "user",
            json!({"name": "op", "password_hash": "plaintext", "role": "admin"})
        )]),
        Invalid,
        "changes[0].object.password_hash",
        "PHC",
    );
    refused(
        json!([up(
            "user",
            json!({"name": "op", "password_hash": "$argon2i$v=19$m=16,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG", "role": "admin"})
        )]),
        Invalid,
        "changes[0].object.password_hash",
        "argon2id",
    );
    refused(
        json!([up(
            "user",
            json!({"name": "op", "password_hash": HASH, "role": "root"})
        )]),
        Invalid,
        "changes[0].object.role",
        "unknown variant",
    );
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
