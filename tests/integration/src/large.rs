//! A large desired state for the real daemons on their simulated
//! backends: `volumes` thin volumes in one pool, `hosts` hosts in groups of
//! 100, and one export per volume (iSCSI and NVMe/TCP in turn, spread over
//! the groups so that no subsystem passes nvmet's 1,024 namespaces). Used
//! by the paging test and the `large_config` benchmark.

use duplex_test_kit::{Node, Proc};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Hosts per host group.
pub const HOSTS_PER_GROUP: usize = 100;

/// How big a state to make.
#[derive(Debug, Clone, Copy)]
pub struct Scale {
    /// Volumes (each exported once).
    pub volumes: usize,
    /// Hosts.
    pub hosts: usize,
}

/// Controllers A and B on loopback, each with its router, config-keeper,
/// pool-manager and targets on their simulators: (A, B, the processes).
/// Each pool-manager has its own in-memory shelf with the same disks (a
/// shelf shared through a file is rewritten whole at every operation,
/// which would measure the simulator): B sees the disks A uses, and holds
/// no pool of its own.
pub async fn storage_pair() -> (Node, Node, Vec<Proc>) {
    use duplex_test_kit::{free_addr, PeerOpts};
    let (la, lb) = (free_addr(), free_addr());
    let a = crate::node("A", Some(PeerOpts::new("B", la, lb)), "");
    let b = crate::node("B", Some(PeerOpts::new("A", lb, la)), "");
    let mut procs = Vec::new();
    for n in [&a, &b] {
        procs.push(n.start_router().await);
    }
    for n in [&a, &b] {
        procs.push(
            n.start_daemon("duplex-config-keeper", "config-keeper", &[])
                .await,
        );
        procs.push(
            n.start_daemon("duplex-pool-manager", "pool-manager", &["--sim"])
                .await,
        );
        procs.push(
            n.start_daemon("duplex-targets", "targets", &["--sim"])
                .await,
        );
    }
    (a, b, procs)
}

fn identity(i: usize) -> Value {
    let n = i as u64 + 1;
    json!({
        "serial": format!("{n:032x}"),
        "wwn": format!("6001405{n:025x}"),
        "nguid": format!("{:032x}", u128::from(n) | (1u128 << 127)),
        "uuid": format!("00000000-0000-4000-8000-{n:012x}"),
    })
}

/// The changes that make the state (pool `big` must exist), in the order
/// they can be applied: hosts, groups, volumes, exports.
pub fn changes(s: Scale) -> Vec<Value> {
    let groups = s.hosts.div_ceil(HOSTS_PER_GROUP).max(1);
    let mut out = Vec::new();
    for h in 0..s.hosts {
        out.push(json!({"op": "upsert", "kind": "host", "object": {
            "name": format!("h{h}"),
            "iqns": [format!("iqn.2024-01.com.example:h{h}")],
            "nqns": [format!("nqn.2024-01.com.example:h{h}")]}}));
    }
    for g in 0..groups {
        let hosts: Vec<String> = (g * HOSTS_PER_GROUP..((g + 1) * HOSTS_PER_GROUP).min(s.hosts))
            .map(|h| format!("h{h}"))
            .collect();
        out.push(json!({"op": "upsert", "kind": "host_group", "object": {
            "name": format!("g{g}"), "hosts": hosts}}));
    }
    for v in 0..s.volumes {
        let mut o = identity(v);
        o["name"] = json!(format!("v{v}"));
        o["pool"] = json!("big");
        o["size"] = json!("16MiB");
        o["thin"] = json!(true);
        out.push(json!({"op": "upsert", "kind": "volume", "object": o}));
    }
    for v in 0..s.volumes {
        let g = v % groups;
        // Address within the group: the volume's turn among the group's
        // volumes of the same protocol.
        let addr = v / groups / 2;
        let (protocol, slot) = if (v / groups) % 2 == 0 {
            ("iscsi", json!({"lun": addr}))
        } else {
            ("nvme", json!({"nsid": addr + 1}))
        };
        let mut o = json!({"name": format!("e{v}"), "volume": format!("v{v}"),
            "protocol": protocol, "host_group": format!("g{g}")});
        if let (Some(o), Some(slot)) = (o.as_object_mut(), slot.as_object()) {
            o.extend(slot.clone());
        }
        out.push(json!({"op": "upsert", "kind": "export", "object": o}));
    }
    out
}

/// A client of `n`'s router that waits up to 5 minutes for an answer.
pub fn patient(n: &Node) -> duplex_services::client::RouterClient {
    duplex_services::client::RouterClient::with_timeout(n.router_socket(), Duration::from_secs(300))
}

/// Figures of one load.
#[derive(Debug, Clone, Copy)]
pub struct Loaded {
    /// `config.apply` calls made.
    pub applies: usize,
    /// Their total time.
    pub apply_time: Duration,
}

/// Records the cluster and its two controllers, creates pool `big` and
/// applies the state in batches of `batch` changes.
pub async fn load(n: &Node, s: Scale, batch: usize) -> Loaded {
    let c = patient(n);
    let mut seed = vec![json!({"op": "upsert", "kind": "cluster", "object":
        {"id": "0b6c1f0e-2f4a-4c1e-8d7a-5b1e2c3d4e5f", "epoch": 1,
         "secret_ref": "/etc/duplex/cluster.secret"}})];
    for (id, i) in [("A", 1), ("B", 2)] {
        seed.push(json!({"op": "upsert", "kind": "controller", "object": {
            "id": id, "name": format!("controller {id}"),
            "interconnect": [format!("10.51.0.{i}/24")],
            "management": format!("192.0.2.{i}/24"),
            "portals": [format!("198.51.100.{i}/24")]}}));
    }
    c.call("config.apply", json!({"changes": seed, "sync": true}))
        .await
        .expect("the cluster and its controllers");
    let disks = c.call("disk.list", json!({})).await.expect("disk.list");
    let serial = disks["disks"][0]["serial"]
        .as_str()
        .expect("a simulated disk")
        .to_string();
    c.call(
        "pool.create",
        json!({"name": "big", "layout": "linear", "disks": [serial]}),
    )
    .await
    .expect("pool.create");
    let all = changes(s);
    let t = Instant::now();
    let mut applies = 0;
    for chunk in all.chunks(batch) {
        c.call("config.apply", json!({"changes": chunk}))
            .await
            .expect("config.apply");
        applies += 1;
    }
    Loaded {
        applies,
        apply_time: t.elapsed(),
    }
}

/// Calls `method` until it answers with no step to do (the service has
/// caught up with the state), up to `limit`; the last answer.
pub async fn converge(n: &Node, method: &str, limit: Duration) -> Value {
    let c = patient(n);
    let t = Instant::now();
    loop {
        let r = c.call(method, json!({})).await;
        if let Ok(v) = &r {
            if steps(v) == 0 {
                return v.clone();
            }
        }
        assert!(
            t.elapsed() < limit,
            "{method} did not settle within {limit:?}: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The steps a reconcile answer says it ran.
pub fn steps(v: &Value) -> usize {
    v["steps"].as_array().map_or(usize::MAX, Vec::len)
}
