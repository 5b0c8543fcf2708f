//! Shared fixtures: a complete, valid configuration for controller "a".
#![allow(clippy::unwrap_used)] // tests: a failed step should panic with its location
#![allow(dead_code)] // each test file uses a different part of the fixtures

use duplex_api::change::parse_changes;
use duplex_config_keeper::error::ApplyError;
use duplex_config_keeper::store::{Applied, Meta, Store};
use serde_json::{json, Value};

/// A syntactically valid Argon2id PHC string (validation only parses it).
pub const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

pub fn meta() -> Meta {
    Meta {
        action_id: Some("test-action".into()),
        now_ms: 1_700_000_000_000,
    }
}

pub fn apply(store: &mut Store, changes: Value) -> Result<Applied, ApplyError> {
    let parsed = parse_changes("changes", &changes).map_err(ApplyError::Invalid)?;
    store.apply(parsed, &meta())
}

pub fn up(kind: &str, object: Value) -> Value {
    json!({"op": "upsert", "kind": kind, "object": object})
}

pub fn del(kind: &str, name: &str) -> Value {
    json!({"op": "delete", "kind": kind, "name": name})
}

pub fn cluster(epoch: u64) -> Value {
    up(
        "cluster",
        json!({"id": "5f0c8a9e-1b2c-4d3e-8f40-123456789abc", "epoch": epoch, "secret_ref": "/etc/duplex/cluster.key"}),
    )
}

pub fn controller(id: &str, n: u8) -> Value {
    up(
        "controller",
        json!({"id": id, "name": format!("controller {id}"),
               "interconnect": [format!("10.10.0.{n}/24"), format!("10.11.0.{n}/24")],
               "management": format!("192.0.2.{n}/24")}),
    )
}

pub fn disk(n: u8) -> Value {
    up(
        "disk",
        json!({"wwn": format!("5000c5000000{n:04x}"), "serial": format!("SER{n}"), "size": "4TiB",
               "tier": "fast", "seen_by": ["b", "a"]}),
    )
}

pub fn disk_wwn(n: u8) -> String {
    format!("5000c5000000{n:04x}")
}

pub fn pool(name: &str, home: &str, disks: [u8; 2]) -> Value {
    up(
        "pool",
        json!({"name": name, "tier": "fast", "layout": "raid1", "home": home, "owner": home, "epoch": 1,
               "disks": [disk_wwn(disks[0]), disk_wwn(disks[1])]}),
    )
}

pub fn volume_obj(name: &str, pool: &str, n: u32) -> Value {
    json!({"name": name, "pool": pool, "size": "10GiB", "thin": true,
           "serial": format!("{n:032x}"), "wwn": format!("6001405{n:025x}"),
           "nguid": format!("{:032x}", u128::from(n) + (1u128 << 100)),
           "uuid": format!("00000000-0000-4000-8000-{n:012x}")})
}

pub fn volume(name: &str, pool: &str, n: u32) -> Value {
    up("volume", volume_obj(name, pool, n))
}

pub fn host(name: &str) -> Value {
    up(
        "host",
        json!({"name": name, "iqns": [format!("iqn.2024-01.com.example:{name}")],
               "nqns": [format!("nqn.2024-01.com.example:{name}")],
               "chap": {"user": name, "secret": "0123456789abcdef"}}),
    )
}

pub fn group(name: &str, hosts: &[&str]) -> Value {
    up("host_group", json!({"name": name, "hosts": hosts}))
}

pub fn export_iscsi(name: &str, vol: &str, group: &str, lun: u32) -> Value {
    up(
        "export",
        json!({"name": name, "volume": vol, "protocol": "iscsi", "lun": lun, "host_group": group}),
    )
}

pub fn export_nvme(name: &str, vol: &str, group: &str, nsid: u32) -> Value {
    up(
        "export",
        json!({"name": name, "volume": vol, "protocol": "nvme", "nsid": nsid, "host_group": group}),
    )
}

pub fn fip(name: &str, addr: &str, home: &str) -> Value {
    up(
        "floating_ip",
        json!({"name": name, "address": addr, "interface": "eth0", "home": home, "owner": home, "epoch": 1}),
    )
}

pub fn settings() -> Value {
    up(
        "settings",
        json!({"hb_interval_ms": 100, "ic_timeout_ms": 1000, "disk_interval_ms": 200,
               "disk_timeout_ms": 15000, "watchdog_timeout_ms": 10000,
               "fencing": {"interconnect_loss": false, "disk_heartbeat_loss": true, "shelf_loss": true, "service_hang": true},
               "auto_failback": false}),
    )
}

/// Change `i` of a stream over the `n` groups `<prefix>0`..: each change
/// flips one group's membership, so every apply is a real change.
pub fn flip(prefix: &str, n: u64, i: u64) -> Value {
    group(
        &format!("{prefix}{}", i % n),
        if (i / n) % 2 == 0 { &["h1"] } else { &[] },
    )
}

/// The shared part every controller sees (cluster, controllers, disks, hosts).
pub fn shared() -> Value {
    json!([
        cluster(1),
        controller("a", 1),
        controller("b", 2),
        disk(1),
        disk(2),
        disk(3),
        disk(4),
        host("h1"),
        host("h2"),
        group("g1", &["h1", "h2"]),
        up(
            "user",
            json!({"name": "admin", "password_hash": HASH, "role": "admin"})
        ),
        settings(),
    ])
}

/// Controller a's section on top of `shared()`.
pub fn section_a() -> Value {
    json!([
        pool("pa", "a", [1, 2]),
        volume("v1", "pa", 1),
        volume("v2", "pa", 2),
        export_iscsi("e1", "v1", "g1", 0),
        export_nvme("e2", "v1", "g1", 1),
        fip("fa", "198.51.100.10/24", "a"),
    ])
}

/// A store for controller `me` in `dir` holding `shared()` (and, for "a",
/// `section_a()`).
pub fn populated(dir: &std::path::Path, me: &str) -> Store {
    let mut s = Store::open(&dir.join(format!("{me}.db")), me).expect("open");
    apply(&mut s, shared()).expect("shared");
    if me == "a" {
        apply(&mut s, section_a()).expect("section a");
    }
    s
}

pub mod cluster;
