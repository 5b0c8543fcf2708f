//! Lab tier: pool-manager on real LVM in the QEMU guests, with the shelf
//! disks shared by controllers A and B. Skipped unless `DUPLEX_LAB=1` and a
//! lab is up (`tests/lab/run.sh up`, or `duplex-lab up` with your own
//! `DUPLEX_LAB_RUN`). `DUPLEX_LAB_BENCH=1` adds the takeover benchmark
//! (1, 100, 500 volumes), printed as JSON; `DUPLEX_LAB_NO_RAID=1` skips the
//! RAID scenario (which pulls a disk out for good).
//!
//! ```text
//! DUPLEX_LAB=1 DUPLEX_LAB_RUN=/tmp/pool-lab cargo test -p duplex-pool-manager --test lab -- --nocapture
//! ```
//!
//! Uses shelf0 for the ownership, standby-device and snapshot pool;
//! shelf1-5 for raid5, raid10 and raid6 pools (created, checked, deleted);
//! then shelf1+shelf2 with shelf3 as spare for the mirror rebuild, which
//! pulls shelf2 out of both controllers (QMP `drive_del`): the lab must be
//! brought up again (or restored) after.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report

use duplex_lab::agent;
use duplex_lab::lab::Lab;
use duplex_lab::qmp::Qmp;
use duplex_test_kit::find_in;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn enabled() -> bool {
    std::env::var("DUPLEX_LAB").is_ok_and(|v| v == "1")
}

struct G {
    lab: Lab,
}

impl G {
    fn sh(&self, vm: &str, script: &str) -> (i32, String, String) {
        self.exec(vm, &["sh", "-c", script], 900)
    }

    fn exec(&self, vm: &str, argv: &[&str], timeout_s: u64) -> (i32, String, String) {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let r = agent::exec(
            &self.lab.agent_sock(vm),
            &argv,
            Duration::from_secs(timeout_s),
        )
        .expect("agent");
        (r.code.unwrap_or(-1), r.stdout, r.stderr)
    }

    /// Calls a method through the controller's router; Ok(result) or
    /// Err(error object).
    fn call(&self, vm: &str, method: &str, params: Value) -> Result<Value, Value> {
        let p = params.to_string();
        // Through the router, as every client: the service socket answers
        // only the router. pool-manager registers its long methods (create,
        // takeover, ...) with a 15 min limit, so the router waits as long.
        let argv = vec![
            "duplexctl",
            "--json",
            "--timeout",
            "900",
            "call",
            method,
            &p,
        ];
        let (_, out, err) = self.exec(vm, &argv, 960);
        let v: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{vm} {method}: not JSON ({e}): {out} {err}"));
        match v.get("error") {
            Some(e) => Err(e.clone()),
            None => Ok(v["result"].clone()),
        }
    }

    fn ok(&self, vm: &str, method: &str, params: Value) -> Value {
        self.call(vm, method, params.clone())
            .unwrap_or_else(|e| panic!("{vm} {method} {params}: {e}"))
    }

    fn err(&self, vm: &str, method: &str, params: Value) -> Value {
        match self.call(vm, method, params.clone()) {
            Ok(v) => panic!("{vm} {method} {params} should fail: {v}"),
            Err(e) => e,
        }
    }

    fn hmp(&self, vm: &str, cmd: &str) -> Value {
        let mut q = Qmp::connect(&self.lab.qmp_sock(vm), Duration::from_secs(10)).expect("qmp");
        q.execute("human-monitor-command", Some(json!({"command-line": cmd})))
            .expect("hmp")
    }

    /// pool-manager's own LVM settings (system_id, device filter), so the
    /// test's LVM commands see what the service sees.
    /// `vm` cannot bring `pool` up: `pool.import` is refused (not the
    /// owner), and so is LVM's own `vgchange -ay` (its error contains
    /// `lvm_says`); nothing of the pool is active there.
    fn cannot_activate(&self, vm: &str, pool: &str, lvm_says: &str) {
        let e = self.err(vm, "pool.import", json!({"name": pool}));
        assert_eq!(e["data"]["kind"], "not_owner", "{e}");
        let (rc, _, err) = self.lvm(vm, &["vgchange", "-ay", &format!("dx-{pool}")]);
        assert_ne!(rc, 0);
        assert!(err.contains(lvm_says), "{err}");
        assert_eq!(self.active_lvs(vm, pool), 0);
    }

    /// The LVM command `args[0]` with the rest of `args`, run on `vm` with
    /// `vm`'s LVM configuration.
    fn lvm(&self, vm: &str, args: &[&str]) -> (i32, String, String) {
        let config = G::lvm_config(vm);
        let mut argv = vec!["lvm"];
        if let Some((cmd, rest)) = args.split_first() {
            argv.extend([*cmd, "--config", config.as_str()]);
            argv.extend(rest);
        }
        self.exec(vm, &argv, 120)
    }

    fn lvm_config(me: &str) -> String {
        duplex_pool_manager::backend::linux::lvm_config(me, None)
    }

    fn epoch(&self) -> u64 {
        self.ok("A", "config.get", json!({}))["config"]["cluster"]["epoch"]
            .as_u64()
            .unwrap_or(0)
    }

    /// What heartbeat does after fencing: bump the cluster epoch and record
    /// the new owner.
    fn fence_and_record(&self, survivor: &str, pool: &str) -> u64 {
        let cfg = self.ok(survivor, "config.get", json!({}))["config"].clone();
        let mut cluster = cfg["cluster"].clone();
        let epoch = cluster["epoch"].as_u64().unwrap() + 1;
        cluster["epoch"] = epoch.into();
        let mut p = find_in(&cfg, "pool", "name", pool).clone();
        p["owner"] = survivor.into();
        p["epoch"] = epoch.into();
        self.ok(
            survivor,
            "config.apply",
            json!({"changes": [
                {"op": "upsert", "kind": "cluster", "object": cluster},
                {"op": "upsert", "kind": "pool", "object": p}]}),
        );
        epoch
    }

    /// `/dev/mapper` entries of the pool's LVs that are not the node of
    /// the live device of that name (stale, or made with the wrong number),
    /// and `/dev/<vg>` links to nothing.
    fn bad_mapper_nodes(&self, vm: &str, pool: &str) -> Vec<String> {
        let (rc, out, err) = self.sh(
            vm,
            &format!(
                "for n in /dev/mapper/dx--{pool}-*; do [ -e \"$n\" ] || [ -L \"$n\" ] || continue; \
                 b=${{n##*/}}; want=$(dmsetup info -c --noheadings -o major,minor --separator : \"$b\" 2>/dev/null); \
                 got=$(stat -L -c '%Hr:%Lr' \"$n\" 2>/dev/null); [ -n \"$want\" ] && [ \"$want\" = \"$got\" ] || echo \"$b $got $want\"; done; \
                 for l in /dev/dx-{pool}/*; do [ -L \"$l\" ] && [ ! -e \"$l\" ] && echo \"dangling $l\"; done; true"
            ),
        );
        assert_eq!(rc, 0, "{err}");
        out.lines().map(str::to_string).collect()
    }

    fn active_lvs(&self, vm: &str, pool: &str) -> usize {
        let (_, out, _) = self.sh(
            vm,
            &format!("for d in /sys/block/dm-*/dm/name; do cat $d; done 2>/dev/null | grep -c '^dx--{pool}-[^_]' || true"),
        );
        out.trim().parse().unwrap_or(0)
    }
}

fn seed(g: &G) {
    let cfg = g.ok("A", "config.get", json!({}))["config"].clone();
    let mut changes = vec![];
    if cfg["cluster"].is_null() {
        changes.push(json!({"op": "upsert", "kind": "cluster", "object":
            {"id": "0b6c1f0e-2f4a-4c1e-8d7a-5b1e2c3d4e5f", "epoch": 1, "secret_ref": "/etc/duplex/cluster.secret"}}));
    }
    for (id, n) in [("A", 1), ("B", 2)] {
        changes.push(json!({"op": "upsert", "kind": "controller", "object": {
            "id": id, "name": format!("controller {id}"),
            "interconnect": [format!("10.51.0.{n}/24"), format!("10.52.0.{n}/24")],
            "management": format!("10.50.0.{}/24", 10 + n)}}));
    }
    g.ok(
        "A",
        "config.apply",
        json!({"changes": changes, "sync": true}),
    );
}

/// Deletes what earlier runs left: volumes (children first), benchmark LVs,
/// pools. Best effort: a pool in a state the service refuses to delete is
/// reported and left.
fn cleanup(g: &G) {
    let cfg = g.ok("A", "config.get", json!({}))["config"].clone();
    let vols = cfg["volume"].as_array().cloned().unwrap_or_default();
    let depth = |name: &str| -> usize {
        let mut d = 0;
        let mut cur = name.to_string();
        while let Some(p) = vols
            .iter()
            .find(|v| v["name"] == cur.as_str())
            .and_then(|v| v["parent_snapshot"].as_str())
        {
            d += 1;
            cur = p.to_string();
            if d > 64 {
                break;
            }
        }
        d
    };
    for p in cfg["pool"].as_array().cloned().unwrap_or_default() {
        let name = p["name"].as_str().unwrap().to_string();
        let mut owner = p["owner"].as_str().unwrap().to_string();
        let home = p["home"].as_str().unwrap().to_string();
        // Volumes are in the home controller's section of the desired
        // state: give the pool back before deleting anything.
        if owner != home {
            g.fence_and_record(&home, &name);
            if let Err(e) = g.call(&owner, "pool.export", json!({"name": name, "to": home})) {
                eprintln!("cleanup: give back {name}: {e}");
            }
            if let Err(e) = g.call(&home, "pool.import", json!({"name": name})) {
                eprintln!("cleanup: import {name} at home: {e}");
            }
            owner = home;
        }
        let mut mine: Vec<&Value> = vols.iter().filter(|v| v["pool"] == name.as_str()).collect();
        mine.sort_by_key(|v| std::cmp::Reverse(depth(v["name"].as_str().unwrap())));
        for v in mine {
            if let Err(e) = g.call(&owner, "volume.delete", json!({"name": v["name"]})) {
                eprintln!("cleanup: volume {}: {e}", v["name"]);
            }
        }
        g.exec(
            &owner,
            &[
                "lvm",
                "lvremove",
                "--config",
                &G::lvm_config(&owner),
                "-y",
                "-S",
                "lv_name=~^bench",
                &format!("dx-{name}"),
            ],
            600,
        );
        if let Err(e) = g.call(&owner, "pool.delete", json!({"name": name})) {
            eprintln!("cleanup: pool {name}: {e}");
        }
    }
}

fn ownership_and_snapshots(g: &G, pool: &str) -> Value {
    let disks = g.ok("A", "disk.list", json!({}));
    let s0 = find_in(&disks, "disks", "serial", "shelf0").clone();
    assert_eq!(s0["shared"], true, "{s0}");
    assert_eq!(s0["qualifies"], true, "{s0}");
    let root = find_in(&disks, "disks", "serial", "root").clone();
    assert_eq!(root["qualifies"], false);
    // Bad input on the real backend: refused, nothing made.
    let bad = [
        (
            json!({"layout": "raid5", "disks": ["shelf0"]}),
            "field",
            "disks",
        ),
        (
            json!({"layout": "linear", "disks": ["root"], "wipe": true}),
            "kind",
            "conflict",
        ),
    ];
    for (mut params, key, want) in bad {
        params["name"] = json!(pool);
        let e = g.err("A", "pool.create", params);
        assert_eq!(e["data"][key], want, "{e}");
    }
    // A creates the pool, and again: unchanged.
    let create = json!({"name": pool, "layout": "linear", "disks": ["shelf0"]});
    let p = g.ok("A", "pool.create", create.clone());
    assert_eq!(p["pool"]["system_id"], "A", "{p}");
    let again = g.ok("A", "pool.create", create);
    assert_eq!(again["outcome"], "unchanged");
    let v = g.ok(
        "A",
        "volume.create",
        json!({"pool": pool, "name": format!("{pool}-v1"), "size": "64MiB"}),
    );
    // The volume's device is the per-volume dm device (the standby path),
    // present on both controllers: a queueing multipath table over the LV
    // on A, the owner; an error table of the volume's size on B once B
    // reconciled.
    let serial = v["volume"]["serial"].as_str().unwrap().to_string();
    let dev = v["volume"]["device"].as_str().unwrap().to_string();
    assert_eq!(dev, format!("/dev/mapper/dxvol-{serial}"));
    assert_eq!(
        v["volume"]["lv_device"],
        format!("/dev/dx-{pool}/{pool}-v1")
    );
    let dm_table = |vm: &str| -> String {
        let (rc, out, err) = g.exec(vm, &["dmsetup", "table", &format!("dxvol-{serial}")], 60);
        assert_eq!(rc, 0, "{vm}: {err}");
        out.trim().to_string()
    };
    let lv_dev = |vm: &str| -> String {
        let (_, out, _) = g.sh(
            vm,
            &format!(
                "dmsetup info -c --noheadings -o major,minor --separator : dx--{pool}-{pool}--v1"
            ),
        );
        out.trim().to_string()
    };
    assert_eq!(dm_table("A"), queueing(&lv_dev("A")));
    let (_, uuid, _) = g.exec(
        "A",
        &[
            "dmsetup",
            "info",
            "-c",
            "--noheadings",
            "-o",
            "uuid",
            &format!("dxvol-{serial}"),
        ],
        60,
    );
    assert_eq!(uuid.trim(), format!("DUPLEX-VOL-{serial}"));
    // B's reconciler runs on the config.changed event of the create; an
    // explicit pass makes the check independent of the event's timing.
    let r = g.ok("B", "pool.reconcile", json!({}));
    assert!(r["dm"]["dm_error"].is_null(), "{r}");
    assert_eq!(dm_table("B"), "0 131072 error");
    let (rc, _, _) = g.sh(
        "B",
        &format!("test -b {dev} && dd if={dev} of=/dev/null iflag=direct bs=4096 count=1"),
    );
    assert_ne!(rc, 0, "B's standby device must fail I/O before a takeover");
    let e = g.err(
        "A",
        "volume.create",
        json!({"pool": pool, "name": "x", "size": "64"}),
    );
    assert_eq!(e["data"]["field"], "size");
    let e = g.err(
        "A",
        "volume.create",
        json!({"pool": pool, "name": "x", "size": "100GiB"}),
    );
    assert_eq!(e["data"]["field"], "size");
    // Data written on A, before the snapshot.
    let (rc, _, err) = g.sh("A", &format!(
        "printf 'duplex-lab-before-snapshot' | dd of={dev} oflag=direct,sync bs=512 conv=sync count=1 2>&1"));
    assert_eq!(rc, 0, "{err}");
    g.ok(
        "A",
        "volume.snapshot",
        json!({"source": format!("{pool}-v1"), "name": format!("{pool}-s1")}),
    );
    g.ok(
        "A",
        "volume.clone",
        json!({"source": format!("{pool}-s1"), "name": format!("{pool}-c1")}),
    );
    let (rc, _, _) = g.sh("A", &format!(
        "printf 'duplex-lab-after-snapshot!' | dd of={dev} oflag=direct,sync bs=512 conv=sync count=1 2>&1"));
    assert_eq!(rc, 0);
    let read = |vm: &str, name: &str| -> String {
        let (_, out, _) = g.sh(
            vm,
            &format!(
                "udevadm settle; dd if=/dev/dx-{pool}/{name} iflag=direct bs=512 count=1 2>/dev/null | tr -d '\\0'"
            ),
        );
        out
    };
    assert_eq!(
        read("A", &format!("{pool}-s1")),
        "duplex-lab-before-snapshot"
    );
    assert_eq!(
        read("A", &format!("{pool}-c1")),
        "duplex-lab-before-snapshot"
    );
    assert_eq!(
        read("A", &format!("{pool}-v1")),
        "duplex-lab-after-snapshot!"
    );
    // The read-only snapshot refuses writes; the clone takes them.
    let (rc, _, _) = g.sh(
        "A",
        &format!("echo x | dd of=/dev/dx-{pool}/{pool}-s1 oflag=direct 2>/dev/null"),
    );
    assert_ne!(rc, 0, "a read-only snapshot took a write");
    let (rc, _, _) = g.sh("A", &format!(
        "printf 'clone-write' | dd of=/dev/dx-{pool}/{pool}-c1 oflag=direct,sync bs=512 conv=sync count=1 2>&1"));
    assert_eq!(rc, 0);
    let list = g.ok("A", "volume.list", json!({"pool": pool}));
    assert_eq!(
        list["tree"],
        json!([{"name": format!("{pool}-v1"), "children": [{"name": format!("{pool}-s1"),
            "children": [{"name": format!("{pool}-c1"), "children": []}]}]}]),
        "{list}"
    );
    // B cannot import A's pool: refused by the service and by LVM itself.
    g.cannot_activate("B", pool, "Cannot access VG");
    // A stale epoch is refused.
    let e = g.err(
        "B",
        "pool.takeover",
        json!({"name": pool, "epoch": g.epoch() - 1}),
    );
    assert_eq!(e["data"]["field"], "epoch", "{e}");
    // Fencing (simulated: heartbeat records B, A goes down), then takeover.
    let epoch = g.fence_and_record("B", pool);
    let ex = g.ok("A", "pool.export", json!({"name": pool}));
    assert_eq!(ex["dm_clean"], true);
    assert_eq!(g.active_lvs("A", pool), 0);
    assert_eq!(dm_table("A"), "0 131072 error");
    let t = g.ok("B", "pool.takeover", json!({"name": pool, "epoch": epoch}));
    assert_eq!(t["pool"]["system_id"], "B", "{t}");
    assert_eq!(g.active_lvs("B", pool), 3);
    // pool-manager made the nodes of the LVs it activated.
    assert_eq!(g.bad_mapper_nodes("B", pool), Vec::<String>::new());
    // B's per-volume device now maps B's LV, and reads through it return
    // what A wrote through its own.
    assert_eq!(dm_table("B"), queueing(&lv_dev("B")));
    // A failed path (what an I/O error from the LV does) is reinstated by
    // B's pool-manager within its check interval (2 s).
    let name = format!("dxvol-{serial}");
    let lv_b = lv_dev("B");
    let (rc, _, err) = g.exec(
        "B",
        &["dmsetup", "message", &name, "0", "fail_path", &lv_b],
        30,
    );
    assert_eq!(rc, 0, "{err}");
    let status = |vm: &str| g.exec(vm, &["dmsetup", "status", &name], 30).1;
    assert!(
        status("B").contains(&format!("{lv_b} F ")),
        "{}",
        status("B")
    );
    let t0 = Instant::now();
    while !status("B").contains(&format!("{lv_b} A ")) {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "path not reinstated: {}",
            status("B")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let (_, got, _) = g.sh(
        "B",
        &format!("dd if={dev} iflag=direct bs=512 count=1 2>/dev/null | tr -d '\\0'"),
    );
    assert_eq!(got, "duplex-lab-after-snapshot!");
    assert_eq!(
        read("B", &format!("{pool}-v1")),
        "duplex-lab-after-snapshot!"
    );
    assert_eq!(read("B", &format!("{pool}-c1")), "clone-write");
    // A can no longer activate it.
    g.cannot_activate("A", pool, "with system ID B");
    json!({"takeover_ms": t["duration_ms"], "timings_ms": t["timings_ms"]})
}

/// raid5 (3 disks), raid10 (4) and raid6 (5) built through `pool.create`
/// on shelf1-5, checked in LVM (segment type, images) and in
/// `pool.status`/`pool.layouts`, then deleted. Initial resync is not
/// awaited. Runs before the mirror scenario, which pulls shelf2 out.
fn raid_layouts(g: &G, tag: u64) -> Value {
    let mut out = vec![];
    for (layout, n, tolerance) in [("raid5", 3usize, 1u64), ("raid10", 4, 1), ("raid6", 5, 2)] {
        let pool = format!("{layout}x{tag}");
        let disks: Vec<String> = (1..=n).map(|i| format!("shelf{i}")).collect();
        let t0 = Instant::now();
        let p = g.ok(
            "A",
            "pool.create",
            json!({"name": pool, "layout": layout, "disks": disks}),
        );
        let create_s = t0.elapsed().as_secs();
        assert_eq!(p["pool"]["layout"]["layout"], layout, "{p}");
        assert_eq!(p["pool"]["system_id"], "A", "{p}");
        assert_eq!(p["pool"]["disks"].as_array().map(Vec::len), Some(n), "{p}");
        let (rc, lvs, err) = g.lvm(
            "A",
            &[
                "lvs",
                "--reportformat",
                "json",
                "-a",
                "-o",
                "lv_name,segtype,stripes,data_stripes",
                &format!("dx-{pool}"),
            ],
        );
        assert_eq!(rc, 0, "{err}");
        let lvs: Value = serde_json::from_str(&lvs).unwrap();
        let tdata = lvs["report"][0]["lv"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["lv_name"] == "[_dxthin_tdata]")
            .unwrap_or_else(|| panic!("no thin data LV: {lvs}"))
            .clone();
        assert_eq!(
            tdata["segtype"].as_str().map(|s| s.starts_with(layout)),
            Some(true),
            "{tdata}"
        );
        assert_eq!(tdata["stripes"], n.to_string(), "{tdata}");
        let st = g.ok("A", "pool.status", json!({"name": pool}));
        let sp = &st["pools"][0];
        assert_eq!(sp["layout"]["layout"], layout, "{st}");
        assert!(
            ["syncing", "healthy"].contains(&sp["raid"]["state"].as_str().unwrap_or("")),
            "{st}"
        );
        let lay = g.ok("A", "pool.layouts", json!({"disks": n}));
        let row = find_in(&lay, "layouts", "layout", layout).clone();
        assert_eq!(row["possible"], true, "{row}");
        assert_eq!(row["fault_tolerance"], tolerance, "{row}");
        g.ok("A", "pool.delete", json!({"name": pool}));
        let (_, vgs, _) = g.lvm("A", &["vgs", "--noheadings", "-o", "vg_name"]);
        assert!(!vgs.contains(&format!("dx-{pool}")), "{vgs}");
        out.push(json!({"layout": layout, "disks": n, "segtype": tdata["segtype"],
            "stripes": tdata["stripes"], "data_stripes": tdata["data_stripes"], "create_s": create_s}));
    }
    json!(out)
}

fn raid_rebuild(g: &G, pool: &str) -> Value {
    let p = g.ok(
        "A",
        "pool.create",
        json!({"name": pool, "layout": "mirror",
        "disks": ["shelf1", "shelf2"], "spares": ["shelf3"]}),
    );
    assert_eq!(p["pool"]["layout"]["layout"], "mirror", "{p}");
    let v = g.ok(
        "A",
        "volume.create",
        json!({"pool": pool, "name": format!("{pool}-v"), "size": "256MiB"}),
    );
    let dev = v["volume"]["device"].as_str().unwrap().to_string();
    let (rc, _, err) = g.sh("A", &format!("dd if=/dev/urandom of=/tmp/pattern bs=1M count=8 2>/dev/null && dd if=/tmp/pattern of={dev} oflag=direct bs=1M 2>&1 && md5sum < /tmp/pattern"));
    assert_eq!(rc, 0, "{err}");
    let t0 = Instant::now();
    let mut syncs = vec![];
    loop {
        let st = g.ok("A", "pool.status", json!({"name": pool}));
        let raid = st["pools"][0]["raid"].clone();
        syncs.push(raid.clone());
        if raid["state"] == "healthy" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(900),
            "initial sync too slow: {raid}"
        );
        std::thread::sleep(Duration::from_secs(5));
    }
    let initial_sync_s = t0.elapsed().as_secs();
    // Pull shelf2 out of both controllers.
    for vm in ["A", "B"] {
        g.hmp(vm, "drive_del shelf2");
    }
    // I/O hits the dead leg so the kernel marks it failed.
    let (rc, _, err) = g.sh("A", &format!("dd if={dev} of=/dev/null iflag=direct bs=1M count=8 2>&1; dd if=/tmp/pattern of={dev} oflag=direct bs=1M 2>&1"));
    assert_eq!(rc, 0, "writes must go on with one disk gone: {err}");
    let t1 = Instant::now();
    let mut seen_degraded = false;
    let mut seen_rebuild = false;
    loop {
        let r = g.ok("A", "pool.reconcile", json!({}));
        seen_rebuild |= r["repairs"].as_array().is_some_and(|x| !x.is_empty());
        let st = g.ok("A", "pool.status", json!({"name": pool}));
        let raid = st["pools"][0]["raid"].clone();
        seen_degraded |= raid["state"] == "degraded";
        // The daemon's own reconcile loop may rebuild before ours does: the
        // rebuild is done when the pool is healthy, the missing disk is
        // gone and the spare carries data.
        let pvs = st["pools"][0]["disks"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let rebuilt = pvs
            .iter()
            .all(|p| p["missing"] == false && p["spare"] == false);
        if (seen_rebuild || rebuilt) && raid["state"] == "healthy" {
            break;
        }
        assert!(t1.elapsed() < Duration::from_secs(900), "no rebuild: {st}");
        std::thread::sleep(Duration::from_secs(5));
    }
    let (_, sum, _) = g.sh(
        "A",
        &format!("dd if={dev} iflag=direct bs=1M count=8 2>/dev/null | md5sum"),
    );
    let (_, want, _) = g.sh("A", "md5sum < /tmp/pattern");
    assert_eq!(sum, want, "data changed across the rebuild");
    json!({"initial_sync_s": initial_sync_s, "rebuild_s": t1.elapsed().as_secs(),
           "seen_degraded": seen_degraded})
}

/// Records `bench<from..=to>` (16 MiB thin volumes) in the desired state,
/// in one `config.apply` on the pool's home controller A, with made-up but
/// valid identities unique to this run.
fn record_bench(g: &G, pool: &str, from: usize, to: usize, tag: u64) {
    let changes: Vec<Value> = (from..=to)
        .map(|i| {
            let n = (tag << 20) + i as u64;
            json!({"op": "upsert", "kind": "volume", "object": {
                "name": format!("bench{i}"), "pool": pool, "size": "16MiB", "thin": true,
                "serial": format!("{n:032x}"), "wwn": format!("6001405{n:025x}"),
                "nguid": format!("{:032x}", u128::from(n) | (1u128 << 127)),
                "uuid": format!("{:08x}-0000-4000-8000-{:012x}", tag, i)}})
        })
        .collect();
    for chunk in changes.chunks(100) {
        // Under load the partner may acknowledge after config-keeper's
        // wait: committed locally is enough, replication catches up.
        if let Err(e) = g.call("A", "config.apply", json!({"changes": chunk, "sync": true})) {
            assert_eq!(e["data"]["committed"], true, "{e}");
        }
    }
}

/// Removes the benchmark volumes: records (one batch), their devices (a
/// reconcile on both controllers), then the LVs (one lvremove).
fn drop_bench(g: &G, pool: &str, owner: &str) {
    let cfg = g.ok("A", "config.get", json!({}))["config"].clone();
    let dels: Vec<Value> = cfg["volume"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|v| v["pool"] == pool && v["name"].as_str().is_some_and(|n| n.starts_with("bench")))
        .map(|v| json!({"op": "delete", "kind": "volume", "name": v["name"]}))
        .collect();
    for chunk in dels.chunks(100) {
        // As in record_bench: committed locally is enough under load.
        if let Err(e) = g.call("A", "config.apply", json!({"changes": chunk, "sync": true})) {
            assert_eq!(e["data"]["committed"], true, "{e}");
        }
    }
    for vm in ["A", "B"] {
        g.ok(vm, "pool.reconcile", json!({}));
    }
    g.exec(
        owner,
        &[
            "lvm",
            "lvremove",
            "--config",
            &G::lvm_config(owner),
            "-y",
            "-S",
            "lv_name=~^bench",
            &format!("dx-{pool}"),
        ],
        900,
    );
}

/// A per-volume device's table on its owner, as the kernel prints it: the
/// LV `lv` (major:minor) as the one path of a queueing multipath target.
fn queueing(lv: &str) -> String {
    format!(
        "0 131072 multipath 4 queue_if_no_path retain_attached_hw_handler \
         queue_mode bio 0 1 1 round-robin 0 1 1 {lv} 1"
    )
}

/// How many per-volume devices on `vm` map an LV.
fn dxvol_mapped(g: &G, vm: &str) -> usize {
    let (_, out, _) = g.sh(
        vm,
        "dmsetup table | grep -c '^dxvol-[0-9a-f]*: 0 [0-9]* multipath' || true",
    );
    out.trim().parse().unwrap_or(0)
}

fn bench(g: &G, pool: &str, tag: u64) -> Value {
    // The pool is on B after the ownership test; it moves back and forth.
    let mut owner = "B";
    let mut have = 0;
    let mut rows = vec![];
    let sizes: Vec<usize> = std::env::var("DUPLEX_LAB_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 100, 500]);
    for n in sizes {
        // Benchmark volumes are made directly with LVM, inactive, and
        // recorded in one batch: the benchmark measures the takeover.
        if have < n {
            let script = format!(
                "C='{}'; for i in $(seq {} {}); do lvm lvcreate --config \"$C\" -q -y -an -kn --thin dx-{pool}/_dxthin -V 16m -n bench$i >/dev/null || exit 1; done",
                G::lvm_config(owner), have + 1, n
            );
            let (rc, _, err) = g.sh(owner, &script);
            assert_eq!(rc, 0, "{err}");
            record_bench(g, pool, have + 1, n, tag);
            have = n;
        }
        let to = if owner == "A" { "B" } else { "A" };
        // The partner has its standby devices before the failure.
        g.ok(to, "pool.reconcile", json!({}));
        let epoch = g.fence_and_record(to, pool);
        let t0 = Instant::now();
        g.ok(owner, "pool.export", json!({"name": pool}));
        let export_ms = t0.elapsed().as_millis();
        // LVM leaves the nodes pool-manager made; the export prunes them.
        assert_eq!(g.bad_mapper_nodes(owner, pool), Vec::<String>::new());
        let t0 = Instant::now();
        let t = g.ok(to, "pool.takeover", json!({"name": pool, "epoch": epoch}));
        let wall = t0.elapsed().as_millis();
        // udev's share, which the takeover does not wait for: how long its
        // queue takes to drain after the reply.
        let (_, settle, _) = g.sh(
            to,
            "a=$(date +%s%N); udevadm settle -t 600; b=$(date +%s%N); echo $(( (b - a) / 1000000 ))",
        );
        let udev_settle_ms: u64 = settle.trim().parse().unwrap_or(u64::MAX);
        // The activation's steps, from pool-manager's log.
        let (_, steps, _) = g.sh(
            to,
            "journalctl -u duplex-pool-manager -o json --no-pager 'MESSAGE=thin LVs created' | tail -1",
        );
        let steps: Value = serde_json::from_str(steps.trim()).unwrap_or(Value::Null);
        let steps: serde_json::Map<String, Value> = steps
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| k.ends_with("_MS") || k.as_str() == "THIN_LVS")
            .map(|(k, v)| (k.to_lowercase(), v.clone()))
            .collect();
        let active = g.active_lvs(to, pool);
        assert!(active >= n, "{active} of {n} active");
        let mapped = dxvol_mapped(g, to);
        assert!(
            mapped >= n,
            "{mapped} of {n} per-volume devices map their LV on {to}"
        );
        rows.push(json!({"volumes": active, "takeover_ms": t["duration_ms"],
            "timings_ms": t["timings_ms"], "dm": t["dm"], "wall_ms": wall, "export_ms": export_ms,
            "udev_settle_after_ms": udev_settle_ms, "activate_steps": steps}));
        eprintln!("bench: {}", rows.last().unwrap());
        owner = to;
    }
    drop_bench(g, pool, owner);
    json!(rows)
}

#[test]
fn lab_pool_manager() {
    if !enabled() {
        eprintln!("lab tier skipped (set DUPLEX_LAB=1 with a lab up)");
        return;
    }
    let g = G {
        lab: Lab::from_env(),
    };
    seed(&g);
    cleanup(&g);
    let tag = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        % 100_000;
    let own = format!("lo{tag}");
    let mut out = json!({});
    out["ownership"] = ownership_and_snapshots(&g, &own);
    if std::env::var("DUPLEX_LAB_BENCH").is_ok_and(|v| v == "1") {
        out["takeover_benchmark"] = bench(&g, &own, tag);
    }
    // The RAID scenario pulls shelf2 out for good: DUPLEX_LAB_NO_RAID=1
    // lets the other scenarios run again on the same lab.
    if !std::env::var("DUPLEX_LAB_NO_RAID").is_ok_and(|v| v == "1") {
        out["raid_layouts"] = raid_layouts(&g, tag);
        out["raid"] = raid_rebuild(&g, &format!("lr{tag}"));
    }
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
