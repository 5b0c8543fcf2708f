//! Lab tier: `duplex-targets` against real LIO, nvmet, open-iscsi,
//! dm-multipath and NVMe native multipath in the QEMU lab (tests/lab).
//!
//! Skipped unless `DUPLEX_LAB=1`. It uses the lab named by `DUPLEX_LAB_RUN`
//! (brought up with `duplex-lab up` if it is not running) and drives it
//! through the `duplex-lab` binary (`DUPLEX_LAB_BIN`, default
//! `target/debug/duplex-lab`). Do not run `duplex-lab demo` on it: the
//! fixture's configfs setup is what this service replaces.
//!
//! ```text
//! DUPLEX_LAB=1 DUPLEX_LAB_RUN=/tmp/targets-lab [DUPLEX_LAB_BENCH=0] \
//!   cargo test -p duplex-targets --test lab -- --nocapture
//! ```
//!
//! It checks: one dm-multipath map with two path groups and the ALUA states
//! in `sg_rtpg`; one NVMe namespace with two paths and their ANA states; a
//! host outside the group gets in neither over iSCSI nor NVMe; a
//! make-before-break flip of the pool while `duplex-verify` writes, with no
//! host error and a clean verify; then the benchmark (configure N = 1, 100,
//! 1000 exports from nothing; flip N volumes). Figures are printed as JSON
//! and written to `$DUPLEX_LAB_RUN/targets-lab.json`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test harness: a failed step panics

use duplex_services::exec::Cmd;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const CLUSTER: &str = "5e1f0c1e-0000-4000-8000-0000000000aa";
const TGT: &str = "iqn.2026-11.io.duplex:5e1f0c1e.g1";
const SUB: &str = "nqn.2026-11.io.duplex:5e1f0c1e.g1";
const ADDR_A: &str = "10.50.0.11";
const ADDR_B: &str = "10.50.0.12";
/// Mutual CHAP: H's credentials, and the ones the targets answer with.
const CHAP_USER: &str = "h-lab";
const CHAP_SECRET: &str = "lab-secret-h1!";
const CHAP_TARGET_USER: &str = "duplex-lab";
const CHAP_TARGET_SECRET: &str = "lab-secret-tgt";
/// H's second initiator name (another I_T nexus for the reservation test).
const IQN_H2: &str = "iqn.2026-11.lab.duplex:h-second";

/// Names and addresses the NICs by MAC again: the lab's payload step can
/// run before slow virtio-net devices appear (seen under load), leaving the
/// front-end and interconnect down. Idempotent.
const NICS: &str = r#"P=/run/duplex-lab/payload
role=$(sed -n 's/.*duplex_lab\.role=\([A-Za-z]*\).*/\1/p' /proc/cmdline)
changed=0
while read -r mac name addr; do
  dev=""
  for d in /sys/class/net/*; do [ "$(cat "$d/address")" = "$mac" ] && dev=${d##*/}; done
  [ -n "$dev" ] || continue
  if [ "$dev" != "$name" ]; then ip link set dev "$dev" down; ip link set dev "$dev" name "$name"; changed=1; fi
  ip -br addr show dev "$name" | grep -q "${addr%/*}" || { ip addr add "$addr" dev "$name"; changed=1; }
  ip link set dev "$name" up
done < "$P/roles/$role/net"
echo changed=$changed
"#;

struct Lab {
    bin: PathBuf,
    env: Vec<(String, String)>,
}

impl Lab {
    fn new() -> Lab {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        let bin = std::env::var_os("DUPLEX_LAB_BIN")
            .map_or_else(|| root.join("target/debug/duplex-lab"), PathBuf::from);
        let env = [
            "DUPLEX_LAB_RUN",
            "DUPLEX_LAB_IMAGES",
            "DUPLEX_LAB_DIR",
            "DUPLEX_LAB_BIN_DIR",
            "DUPLEX_LAB_CACHE",
            "PATH",
            "HOME",
        ]
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
        .collect();
        Lab {
            bin: std::fs::canonicalize(&bin).unwrap_or(bin),
            env,
        }
    }

    async fn lab(&self, args: &[&str], timeout: u64) -> Result<String, String> {
        self.lab_out(args, timeout).await.map_err(|(e, _)| e)
    }

    /// Runs duplex-lab; on failure the error and the command's stdout.
    async fn lab_out(&self, args: &[&str], timeout: u64) -> Result<String, (String, String)> {
        let mut c = Cmd::new(&self.bin)
            .args(args.iter().copied())
            .timeout(Duration::from_secs(timeout));
        for (k, v) in &self.env {
            c = c.env(k, v);
        }
        match c.run().await {
            Ok(o) => Ok(o.stdout),
            Err(duplex_services::exec::ExecError::Failed {
                stdout,
                stderr,
                status,
                ..
            }) => Err((format!("exit {status}: {stderr}\n{stdout}"), stdout)),
            Err(e) => Err((e.to_string(), String::new())),
        }
    }

    /// Runs a shell script on a VM; Err carries the output on failure.
    async fn sh(&self, vm: &str, script: &str, timeout: u64) -> Result<String, String> {
        let t = timeout.to_string();
        self.lab(
            &["exec", vm, "--timeout", &t, "--", "sh", "-c", script],
            timeout + 30,
        )
        .await
    }

    async fn sh_ok(&self, vm: &str, script: &str, timeout: u64) -> String {
        match self.sh(vm, script, timeout).await {
            Ok(o) => o,
            Err(e) => panic!("{vm}: {script}\n{e}"),
        }
    }

    /// Calls a method with duplexctl on a VM.
    async fn call(&self, vm: &str, method: &str, params: Value) -> Result<Value, String> {
        let p = params.to_string();
        let out = self
            .lab_out(
                &[
                    "exec",
                    vm,
                    "--timeout",
                    "120",
                    "--",
                    "duplexctl",
                    "--json",
                    "--timeout",
                    "110",
                    "call",
                    method,
                    &p,
                ],
                160,
            )
            .await;
        // duplexctl exits non-zero on an RPC error but still prints it.
        let out = match out {
            Ok(o) => o,
            Err((_, stdout)) if stdout.trim_start().starts_with('{') => stdout,
            Err((e, _)) => return Err(e),
        };
        let v: Value =
            serde_json::from_str(out.trim()).map_err(|e| format!("{method}: {e}: {out}"))?;
        match (v.get("result"), v.get("error")) {
            (Some(r), _) => Ok(r.clone()),
            (_, Some(e)) => Err(format!("{method}: {e}")),
            _ => Err(format!("{method}: {v}")),
        }
    }

    /// Calls pool-manager through the router, as every client does (a
    /// service socket answers only its router); pool-manager registers its
    /// long methods with a 15 min limit, so the router waits as long.
    async fn pm(&self, vm: &str, method: &str, params: Value) -> Value {
        let p = params.to_string();
        let argv = [
            "exec",
            vm,
            "--timeout",
            "960",
            "--",
            "duplexctl",
            "--json",
            "--timeout",
            "900",
            "call",
            method,
            &p,
        ];
        let out = match self.lab_out(&argv, 1000).await {
            Ok(o) => o,
            Err((_, stdout)) if stdout.trim_start().starts_with('{') => stdout,
            Err((e, _)) => panic!("{vm} {method} {params}: {e}"),
        };
        let v: Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{vm} {method}: {e}: {out}"));
        match v.get("result") {
            Some(r) => r.clone(),
            None => panic!("{vm} {method} {params}: {v}"),
        }
    }

    /// What heartbeat does before a pool moves: bump the cluster epoch and
    /// record the new owner (applied on the new owner).
    async fn record_owner(&self, owner: &str, pool: &str) -> u64 {
        let cfg = self.call_ok(owner, "config.get", json!({})).await["config"].clone();
        let mut cluster = cfg["cluster"].clone();
        let epoch = cluster["epoch"].as_u64().unwrap_or(0) + 1;
        cluster["epoch"] = epoch.into();
        let mut p = cfg["pool"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == pool))
            .cloned()
            .unwrap_or_else(|| panic!("pool {pool} not in the configuration"));
        p["owner"] = owner.into();
        p["epoch"] = epoch.into();
        self.call_ok(
            owner,
            "config.apply",
            json!({"changes": [up("cluster", cluster), up("pool", p)], "sync": true}),
        )
        .await;
        epoch
    }

    async fn call_ok(&self, vm: &str, method: &str, params: Value) -> Value {
        self.call(vm, method, params.clone())
            .await
            .unwrap_or_else(|e| panic!("{vm} {method} {params}: {e}"))
    }

    async fn apply(&self, changes: Vec<Value>) {
        // duplexctl takes the params as one argument (128 KiB at most).
        for chunk in changes.chunks(150) {
            self.call_ok(
                "A",
                "config.apply",
                json!({"changes": chunk, "sync": true, "timeout_ms": 20000}),
            )
            .await;
        }
    }
}

async fn wait_for<F, Fut>(what: &str, secs: u64, mut f: F) -> Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<Value>>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn up(kind: &str, o: Value) -> Value {
    json!({"op": "upsert", "kind": kind, "object": o})
}

fn del(kind: &str, name: &str) -> Value {
    json!({"op": "delete", "kind": kind, "name": name})
}

/// A made-up disk record for the benchmark's pool (no VG behind it).
const BENCH_DISK: &str = "5000c500000000be";

/// The unit serial of benchmark volume `i`.
fn bench_serial(i: u32) -> String {
    format!("5e1f0c1e{:024x}", 1000 + i)
}

fn volume(name: &str, pool: &str, n: u32, size: &str) -> Value {
    up(
        "volume",
        json!({"name": name, "pool": pool, "size": size,
               "serial": format!("5e1f0c1e{n:024x}"), "wwn": format!("6001405e1f0c1e{n:018x}"),
               "nguid": format!("3c8d2f64{n:024x}"), "uuid": format!("3c8d2f64-0000-4000-8000-{n:012x}")}),
    )
}

/// The cluster and its controllers (with their front-end portals).
fn cluster_config() -> Vec<Value> {
    vec![
        up(
            "cluster",
            json!({"id": CLUSTER, "epoch": 1, "secret_ref": "/etc/duplex/cluster.key"}),
        ),
        up(
            "controller",
            json!({"id": "A", "name": "controller A", "interconnect": ["10.51.0.1/24", "10.52.0.1/24"], "management": "192.0.2.1/24",
                   "portals": [format!("{ADDR_A}/24")]}),
        ),
        up(
            "controller",
            json!({"id": "B", "name": "controller B", "interconnect": ["10.51.0.2/24", "10.52.0.2/24"], "management": "192.0.2.2/24",
                   "portals": [format!("{ADDR_B}/24")]}),
        ),
    ]
}

/// H with mutual CHAP, its group, the exports of v1 (iSCSI) and v2 (NVMe),
/// a floating IP.
fn export_config(host_iqn: &str, host_nqn: &str) -> Vec<Value> {
    vec![
        up(
            "host",
            json!({"name": "h", "iqns": [host_iqn, IQN_H2], "nqns": [host_nqn],
                   "chap": {"user": CHAP_USER, "secret": CHAP_SECRET,
                            "mutual_user": CHAP_TARGET_USER, "mutual_secret": CHAP_TARGET_SECRET}}),
        ),
        up("host_group", json!({"name": "g1", "hosts": ["h"]})),
        up(
            "export",
            json!({"name": "e1", "volume": "v1", "protocol": "iscsi", "lun": 0, "host_group": "g1"}),
        ),
        up(
            "export",
            json!({"name": "e2", "volume": "v2", "protocol": "nvme", "nsid": 1, "host_group": "g1"}),
        ),
        up(
            "floating_ip",
            json!({"name": "fa", "address": "10.50.0.100/24", "interface": "fe0", "home": "A", "owner": "A", "epoch": 1}),
        ),
    ]
}

/// target.status on `vm` once its last reconcile succeeded with `reconciles > after`.
async fn settled(lab: &Lab, vm: &str, after: u64) -> Value {
    let vm = vm.to_string();
    wait_for(&format!("{vm} targets to reconcile"), 900, || {
        let vm = vm.clone();
        async move {
            let s = lab.call(&vm, "target.status", json!({})).await.ok()?;
            let n = s["reconciles"].as_u64().unwrap_or(0);
            (s["ready"] == json!(true) && n > after && s["last_error"].is_null()).then_some(s)
        }
    })
    .await
}

async fn reconciles(lab: &Lab, vm: &str) -> u64 {
    lab.call(vm, "target.status", json!({}))
        .await
        .map(|s| s["reconciles"].as_u64().unwrap_or(0))
        .unwrap_or(0)
}

#[tokio::test(flavor = "current_thread")]
async fn lab_targets() {
    if std::env::var("DUPLEX_LAB").as_deref() != Ok("1") {
        eprintln!("lab test skipped (set DUPLEX_LAB=1 and DUPLEX_LAB_RUN)");
        return;
    }
    let lab = Lab::new();
    let mut figures = serde_json::Map::new();
    if std::env::var("DUPLEX_LAB_BENCH_ONLY").as_deref() == Ok("1") {
        // A lab this test already configured: the benchmark alone.
        let v = bench(&lab).await;
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
        return;
    }
    let status = lab.lab(&["status"], 60).await.unwrap_or_default();
    if status.matches("agent ok").count() < 3 {
        lab.lab(&["up"], 900).await.expect("duplex-lab up");
    }

    for vm in ["A", "B", "H"] {
        let out = lab.sh_ok(vm, NICS, 60).await;
        if out.contains("changed=1") {
            eprintln!("{vm}: NICs named and addressed again (lab payload race)");
        }
    }
    for vm in ["A", "B"] {
        wait_for(
            &format!("{vm}: router, config-keeper and targets"),
            180,
            || async {
                lab.call(vm, "target.status", json!({})).await.ok()?;
                lab.call(vm, "config.status", json!({})).await.ok()
            },
        )
        .await;
    }

    let host_iqn = lab
        .sh_ok(
            "H",
            "sed -n 's/^InitiatorName=//p' /etc/iscsi/initiatorname.iscsi",
            20,
        )
        .await
        .trim()
        .to_string();
    let host_nqn = lab
        .sh_ok("H", "cat /etc/nvme/hostnqn", 20)
        .await
        .trim()
        .to_string();

    // Desired state, applied on A and replicated to B. The pool and its
    // volumes through pool-manager: each volume's device is the per-volume
    // dm device, over the LV on A (the owner), an error table on B.
    let t = Instant::now();
    lab.apply(cluster_config()).await;
    lab.pm(
        "A",
        "pool.create",
        json!({"name": "p1", "layout": "linear", "disks": ["shelf2"]}),
    )
    .await;
    let have = lab
        .call_ok("A", "config.get", json!({"kind": "volume"}))
        .await;
    let mut devices = serde_json::Map::new();
    for v in ["v1", "v2"] {
        let known = have["config"]["volume"]
            .as_array()
            .and_then(|vs| vs.iter().find(|x| x["name"] == v))
            .cloned();
        let serial = match known {
            Some(x) => x["serial"].as_str().unwrap_or_default().to_string(),
            None => {
                let r = lab
                    .pm(
                        "A",
                        "volume.create",
                        json!({"pool": "p1", "name": v, "size": "256MiB"}),
                    )
                    .await;
                r["volume"]["serial"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            }
        };
        devices.insert(v.into(), json!(format!("/dev/mapper/dxvol-{serial}")));
    }
    lab.pm("B", "pool.reconcile", json!({})).await;
    let dev1 = devices["v1"].as_str().unwrap().to_string();
    let tables = format!(
        "dmsetup table {} | cut -d' ' -f3",
        dev1.trim_start_matches("/dev/mapper/")
    );
    assert_eq!(lab.sh_ok("A", &tables, 30).await.trim(), "multipath");
    assert_eq!(lab.sh_ok("B", &tables, 30).await.trim(), "error");
    figures.insert("devices".into(), Value::Object(devices));
    let (ra, rb) = (reconciles(&lab, "A").await, reconciles(&lab, "B").await);
    lab.apply(export_config(&host_iqn, &host_nqn)).await;
    let sa = settled(&lab, "A", ra).await;
    let sb = settled(&lab, "B", rb).await;
    figures.insert("configure_demo_s".into(), json!(t.elapsed().as_secs_f64()));
    assert_eq!(sa["pending"], json!([]), "{sa}");
    assert_eq!(sb["pending"], json!([]), "{sb}");
    lab.sh_ok(
        "A",
        &format!("test -L /sys/kernel/config/target/iscsi/{TGT}/tpgt_1/lun/lun_0/v1"),
        20,
    )
    .await;
    lab.sh_ok(
        "B",
        &format!("test -L /sys/kernel/config/target/iscsi/{TGT}/tpgt_2/lun/lun_0/v1"),
        20,
    )
    .await;

    // ACLs: a host outside the group gets nothing, over either protocol.
    let outsider = lab
        .sh(
            "H",
            &format!(
                "iscsiadm -m iface -I outsider -o new >/dev/null; \
                 iscsiadm -m iface -I outsider -o update -n iface.initiatorname -v iqn.2026-11.lab.duplex:outsider >/dev/null; \
                 iscsiadm -m discovery -t sendtargets -p {ADDR_A}:3260 -I outsider >/dev/null 2>&1; \
                 timeout 30 iscsiadm -m node -T {TGT} -p {ADDR_A}:3260 -I outsider --login; rc=$?; \
                 iscsiadm -m node -T {TGT} -I outsider -o delete >/dev/null 2>&1; iscsiadm -m iface -I outsider -o delete >/dev/null 2>&1; \
                 echo iscsi_login_rc=$rc; \
                 timeout 30 nvme connect --duplicate-connect -t tcp -a {ADDR_A} -s 4420 -n {SUB} --hostnqn=nqn.2014-08.org.nvmexpress:uuid:0badc0de-0000-4000-8000-000000000000 2>&1; \
                 echo nvme_connect_rc=$?"
            ),
            90,
        )
        .await
        .unwrap_or_else(|e| e);
    println!("outsider:\n{outsider}");
    assert!(
        !outsider.contains("iscsi_login_rc=0"),
        "an initiator outside the group logged in: {outsider}"
    );
    assert!(
        !outsider.contains("nvme_connect_rc=0"),
        "a host NQN outside the group connected: {outsider}"
    );
    // iSCSI from H to both controllers with mutual CHAP: one map, two path
    // groups. First a wrong target secret: H must refuse the target.
    let chap = |target_secret: &str| {
        [
            ("authmethod", "CHAP"),
            ("username", CHAP_USER),
            ("password", CHAP_SECRET),
            ("username_in", CHAP_TARGET_USER),
            ("password_in", target_secret),
        ]
        .iter()
        .map(|(k, v)| {
            format!("iscsiadm -m node -T {TGT} -o update -n node.session.auth.{k} -v '{v}'; ")
        })
        .collect::<String>()
    };
    let wrong = lab
        .sh(
            "H",
            &format!(
                "for a in {ADDR_A} {ADDR_B}; do timeout 30 iscsiadm -m discovery -t sendtargets -p $a:3260 >/dev/null; done; \
                 {} timeout 30 iscsiadm -m node -T {TGT} -p {ADDR_A}:3260 --login; echo login_rc=$?",
                chap("not-the-target-secret")
            ),
            90,
        )
        .await
        .unwrap_or_else(|e| e);
    assert!(
        wrong.contains("login_rc=") && !wrong.contains("login_rc=0"),
        "H logged in to a target that answered with the wrong mutual CHAP secret: {wrong}"
    );
    lab.sh_ok(
        "H",
        &format!(
            "{} timeout 60 iscsiadm -m node -T {TGT} --login >/dev/null 2>&1; \
             iscsiadm -m session | grep -c {TGT}",
            chap(CHAP_TARGET_SECRET)
        ),
        120,
    )
    .await;
    figures.insert(
        "mutual_chap".into(),
        json!({"wrong_target_secret": wrong.trim()}),
    );
    let map_check = "one dm-multipath map with two path groups";
    let map = two_path_map(&lab, map_check).await;
    let wwid = map["uuid"]
        .as_str()
        .or(map["name"].as_str())
        .unwrap()
        .to_string();
    let groups: Vec<Value> = map["path_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| json!({"pri": g["pri"], "dm_st": g["dm_st"], "dev": g["paths"][0]["dev"]}))
        .collect();
    figures.insert("iscsi_map".into(), json!({"wwid": wwid, "groups": groups}));
    let rtpg = lab
        .sh_ok(
            "H",
            "for d in $(multipathd show paths raw format '%d'); do echo \"== $d\"; sg_rtpg -d /dev/$d | grep -E 'target port group id|asymmetric access state'; done",
            60,
        )
        .await;
    println!("sg_rtpg:\n{rtpg}");
    assert!(
        rtpg.contains("0x10") && rtpg.contains("0x11"),
        "both port groups seen: {rtpg}"
    );
    assert!(
        rtpg.contains("state : 0x00") && rtpg.contains("state : 0x02"),
        "A/O and Standby: {rtpg}"
    );
    figures.insert("sg_rtpg".into(), json!(rtpg));
    // Each pool's backstores form an ALUA LU group on both controllers.
    for vm in ["A", "B"] {
        let members = lab
            .sh_ok(
                vm,
                "cat /sys/kernel/config/target/core/alua/lu_gps/dxpool_p1/lu_gp_id /sys/kernel/config/target/core/alua/lu_gps/dxpool_p1/members",
                30,
            )
            .await;
        assert!(
            members.contains("iblock_100/v1"),
            "{vm}: p1's LU group holds v1: {members}"
        );
    }

    // NVMe/TCP from H to both: one namespace, two paths.
    let opts = "--keep-alive-tmo=2 --reconnect-delay=1 --ctrl-loss-tmo=-1";
    lab.sh_ok(
        "H",
        &format!("for a in {ADDR_A} {ADDR_B}; do timeout 30 nvme connect -t tcp -a $a -s 4420 -n {SUB} {opts} >/dev/null || true; done"),
        90,
    )
    .await;
    let facts_script = format!(
        "for s in /sys/class/nvme-subsystem/*; do [ \"$(cat $s/subsysnqn)\" = {SUB} ] || continue; \
         for c in $s/nvme*; do b=${{c##*/}}; case \"${{b#nvme}}\" in *n*) echo dev=/dev/$b ;; \
         *) ana=; for p in $c/nvme*c*n*; do [ -f $p/ana_state ] && ana=$(cat $p/ana_state); done; \
            echo path=$b:$(cat $c/state):$(sed 's/.*traddr=\\([^,]*\\).*/\\1/' $c/address):$ana ;; esac; done; done"
    );
    let facts = wait_for("two live NVMe paths", 60, || async {
        let out = lab.sh("H", &facts_script, 30).await.ok()?;
        let live = out
            .lines()
            .filter(|l| l.starts_with("path=") && l.contains(":live:"))
            .count();
        (live == 2 && out.contains("dev=")).then(|| json!(out))
    })
    .await;
    let facts = facts.as_str().unwrap().to_string();
    println!("nvme:\n{facts}");
    assert!(facts.contains(&format!("{ADDR_A}:optimized")), "{facts}");
    assert!(facts.contains(&format!("{ADDR_B}:inaccessible")), "{facts}");
    let nvme_dev = facts
        .lines()
        .find_map(|l| l.strip_prefix("dev="))
        .unwrap()
        .to_string();
    let ana_log = lab
        .sh_ok("H", "for c in $(ls /sys/class/nvme-fabrics/ctl | grep -v ctl); do nvme ana-log /dev/$c -o json | tr -d ' \\n'; echo; done", 60)
        .await;
    figures.insert("nvme".into(), json!({"paths": facts, "ana_log": ana_log}));

    let luns = lab
        .sh_ok(
            "H",
            "iscsiadm -m session -P 3 | grep -c 'Attached scsi disk' || true",
            30,
        )
        .await;
    assert_eq!(
        luns.trim(),
        "2",
        "H sees its one LUN through each of the two sessions"
    );
    figures.insert("acl".into(), json!({"outsider": outsider}));

    // SCSI-3 persistent reservations on the owner's path (A).
    figures.insert("reservations".into(), reservations(&lab, map_check).await);

    // A planned move of the pool A -> B under host I/O: A standby (hosts
    // queue), the new owner recorded, A exports (its devices become error
    // tables), B imports (its devices map the LVs), B active. B cannot be
    // active before that: its devices serve no data (checked first).
    let refused = lab
        .call(
            "B",
            "target.set_access_state",
            json!({"pool": "p1", "state": "active"}),
        )
        .await;
    assert!(
        refused.as_ref().is_err_and(|e| e.contains("conflict")),
        "B must refuse active while the pool is on A: {refused:?}"
    );
    let verify = format!(
        "duplex-verify --seconds 40 --threads 4 --blocks 4096 --device iscsi=/dev/mapper/{wwid} --device nvme={nvme_dev}"
    );
    let io = lab.sh("H", &verify, 170);
    let flip = async {
        tokio::time::sleep(Duration::from_secs(8)).await;
        let t = Instant::now();
        let a = lab
            .call_ok(
                "A",
                "target.set_access_state",
                json!({"pool": "p1", "state": "standby"}),
            )
            .await;
        let t_a = t.elapsed().as_secs_f64();
        let epoch = lab.record_owner("B", "p1").await;
        let t_rec = t.elapsed().as_secs_f64();
        let export = lab
            .pm("A", "pool.export", json!({"name": "p1", "to": "B"}))
            .await;
        let t_exp = t.elapsed().as_secs_f64();
        let import = lab.pm("B", "pool.import", json!({"name": "p1"})).await;
        let t_imp = t.elapsed().as_secs_f64();
        let b = lab
            .call_ok(
                "B",
                "target.set_access_state",
                json!({"pool": "p1", "state": "active"}),
            )
            .await;
        json!({"a_standby": a, "b_active": b, "epoch": epoch,
               "export": export["outcome"], "import_ms": import["duration_ms"],
               "at_s": {"a_standby": t_a, "recorded": t_rec, "exported": t_exp, "imported": t_imp},
               "total_s": t.elapsed().as_secs_f64()})
    };
    let (io, flip) = tokio::join!(io, flip);
    let io = io.unwrap_or_else(|e| panic!("duplex-verify: {e}"));
    let report: Value = serde_json::from_str(io.trim()).unwrap_or_else(|e| panic!("{e}: {io}"));
    println!("flip: {flip}\nverify: {report}");
    assert_eq!(
        report["ok"],
        json!(true),
        "host errors or a failed verify: {report}"
    );
    for d in report["devices"].as_array().unwrap() {
        assert_eq!(d["write_errors"], json!(0), "{d}");
        assert_eq!(d["verify"]["ok"], json!(true), "{d}");
    }
    let after = wait_for("H to see B optimized", 60, || async {
        let out = lab.sh("H", &facts_script, 30).await.ok()?;
        (out.contains(&format!("{ADDR_B}:optimized"))
            && out.contains(&format!("{ADDR_A}:inaccessible")))
        .then(|| json!(out))
    })
    .await;
    let rtpg_after = lab
        .sh_ok("H", "for d in $(multipathd show paths raw format '%d'); do sg_rtpg -d /dev/$d | grep -E 'group id|access state'; done", 60)
        .await;
    figures.insert(
        "pool_move_under_io".into(),
        json!({"flip": flip, "nvme_after": after, "sg_rtpg_after": rtpg_after,
               "devices": report["devices"].as_array().unwrap().iter().map(|d| json!({
                   "name": d["name"], "writes_acked": d["writes_acked"], "write_errors": d["write_errors"],
                   "max_gap_ms": d["max_gap_ms"], "max_gap_at_s": d["max_gap_at_s"], "verify_ok": d["verify"]["ok"]})).collect::<Vec<_>>()}),
    );
    // Floating IP: on A (its owner), then moved to B with a gratuitous ARP.
    lab.sh_ok("A", "ip -br addr show dev fe0 | grep -q 10.50.0.100", 30)
        .await;
    lab.sh_ok("H", "ping -c 1 -W 3 10.50.0.100 >/dev/null", 30)
        .await;
    let mac_b = lab
        .sh_ok("B", "cat /sys/class/net/fe0/address", 20)
        .await
        .trim()
        .to_string();
    let t = Instant::now();
    lab.call_ok("A", "net.down", json!({"name": "fa"})).await;
    lab.call_ok("B", "net.up", json!({"name": "fa"})).await;
    let move_s = t.elapsed().as_secs_f64();
    let neigh = lab.sh_ok("H", "ip neigh show 10.50.0.100", 20).await;
    lab.sh_ok("H", "ping -c 1 -W 3 10.50.0.100 >/dev/null", 30)
        .await;
    println!("floating ip: moved in {move_s:.2} s; H's neighbour entry right after: {neigh}");
    assert!(
        neigh.contains(&mac_b),
        "H learnt B's MAC from the gratuitous ARP: {neigh} (B {mac_b})"
    );
    figures.insert(
        "floating_ip".into(),
        json!({"move_s": move_s, "host_neighbour_after": neigh.trim()}),
    );
    lab.call_ok("B", "net.down", json!({"name": "fa"})).await;
    lab.call_ok("A", "net.up", json!({"name": "fa"})).await;

    figures.insert("refused_object".into(), refused_object(&lab).await);

    // Benchmark on A: configure N exports (iSCSI and NVMe each) from
    // nothing at service start, then flip the pool's N volumes.
    // DUPLEX_LAB_BENCH=0 skips it (about 10 minutes under TCG).
    if std::env::var("DUPLEX_LAB_BENCH").as_deref() != Ok("0") {
        figures.insert("benchmark".into(), bench(&lab).await);
    }

    let out = Value::Object(figures);
    let text = serde_json::to_string_pretty(&out).unwrap();
    println!("{text}");
    if let Ok(run) = std::env::var("DUPLEX_LAB_RUN") {
        let _ = std::fs::write(PathBuf::from(run).join("targets-lab.json"), &text);
    }
}

/// One object the real kernel refuses does not stop the rest of a
/// reconcile: A is given a portal address it does not have (its nvmet
/// port's listener cannot bind it; LIO's iSCSI portal binds with
/// IP_FREEBIND and is made) in the same change that adds a host to the
/// group; the host's ACLs are still made on A, `target.status` names the
/// refused step, and once the address is gone from the configuration A
/// settles with nothing failed.
async fn refused_object(lab: &Lab) -> Value {
    const MISSING: &str = "10.50.0.250";
    const IQN_H3: &str = "iqn.2026-11.lab.duplex:h-third";
    let controller_a = |portals: Vec<String>| {
        up(
            "controller",
            json!({"id": "A", "name": "controller A", "interconnect": ["10.51.0.1/24", "10.52.0.1/24"],
                   "management": "192.0.2.1/24", "portals": portals}),
        )
    };
    let (ra, rb) = (reconciles(lab, "A").await, reconciles(lab, "B").await);
    lab.apply(vec![
        controller_a(vec![format!("{ADDR_A}/24"), format!("{MISSING}/24")]),
        up("host", json!({"name": "h3", "iqns": [IQN_H3], "nqns": []})),
        up("host_group", json!({"name": "g1", "hosts": ["h", "h3"]})),
    ])
    .await;
    let status = wait_for("A to report the refused portal", 300, || async {
        let s = lab.call("A", "target.status", json!({})).await.ok()?;
        let n = s["reconciles"].as_u64().unwrap_or(0);
        let failed = s["failed"].as_array().cloned().unwrap_or_default();
        (n > ra && !failed.is_empty()).then_some(s)
    })
    .await;
    println!("refused object: {status}");
    let failed = status["failed"].as_array().cloned().unwrap_or_default();
    // nvmet-tcp's listener cannot bind the address; LIO's iSCSI portal
    // binds with IP_FREEBIND and is made.
    assert!(
        failed.iter().all(|f| f["step"]
            .as_str()
            .is_some_and(|s| s.starts_with("symlink nvmet/ports/"))
            && f["error"]
                .as_str()
                .is_some_and(|e| e.contains("Cannot assign requested address"))),
        "only the NVMe port on {MISSING} fails: {status}"
    );
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("refused")),
        "{status}"
    );
    lab.sh_ok(
        "A",
        &format!("test -d /sys/kernel/config/target/iscsi/{TGT}/tpgt_1/np/{MISSING}:3260"),
        20,
    )
    .await;
    // The rest of the same plan applied: h3's ACL is there on A.
    lab.sh_ok(
        "A",
        &format!("test -d /sys/kernel/config/target/iscsi/{TGT}/tpgt_1/acls/{IQN_H3}"),
        20,
    )
    .await;
    let sb = settled(lab, "B", rb).await;
    assert!(
        sb["failed"].is_null(),
        "B has the address-less change only: {sb}"
    );
    // Back: the address leaves the configuration, h3 leaves the group.
    let ra = reconciles(lab, "A").await;
    lab.apply(vec![
        controller_a(vec![format!("{ADDR_A}/24")]),
        up("host_group", json!({"name": "g1", "hosts": ["h"]})),
        del("host", "h3"),
    ])
    .await;
    let sa = settled(lab, "A", ra).await;
    assert!(sa["failed"].is_null(), "{sa}");
    lab.sh_ok(
        "A",
        &format!("! test -e /sys/kernel/config/target/iscsi/{TGT}/tpgt_1/np/{MISSING}:3260 && ! test -e /sys/kernel/config/target/iscsi/{TGT}/tpgt_1/acls/{IQN_H3}"),
        20,
    )
    .await;
    json!({"failed": failed})
}

/// The benchmark rounds: `DUPLEX_LAB_BENCH_SIZES` (default `1,100,1000`).
async fn bench(lab: &Lab) -> Value {
    let sizes = std::env::var("DUPLEX_LAB_BENCH_SIZES").unwrap_or_else(|_| "1,100,1000".into());
    let mut out = Vec::new();
    for n in sizes
        .split(',')
        .filter_map(|s| s.trim().parse::<u32>().ok())
    {
        out.push(bench_round(lab, n).await);
    }
    json!(out)
}

/// N per-volume dm devices (`/dev/mapper/dxvol-<serial>`, created without
/// udev, which takes minutes for 1000 under TCG), N volumes exported over
/// iSCSI and NVMe; time to build them at service start and to flip them.
async fn bench_round(lab: &Lab, n: u32) -> Value {
    // The per-volume devices pool-manager would make, made here directly:
    // `linear` over one small `zero` device (so they serve data, as an
    // imported pool's do), linked from /dev/mapper to devtmpfs's node (no
    // udev, no node from dmsetup then). pool-manager is stopped on both controllers for
    // the round: it would turn volumes without an LV into error tables.
    let names: Vec<String> = (0..n)
        .map(|i| format!("dxvol-{}", bench_serial(i)))
        .collect();
    lab.sh_ok("A", "systemctl stop duplex-pool-manager", 60)
        .await;
    lab.sh_ok("B", "systemctl stop duplex-pool-manager", 60)
        .await;
    let table: Vec<String> = names
        .iter()
        .map(|name| format!("{name},,,,0 2048 linear BASE 0"))
        .collect();
    let made = lab
        .sh_ok(
            "A",
            &format!(
                // udev would probe each device for minutes under TCG: its
                // queue is held until the round's teardown.
                "udevadm control --stop-exec-queue; \
                 dmsetup ls | awk '/^dxvol-5e1f0c1e/{{print $1}}' | xargs -r dmsetup --noudevsync remove; \
                 dmsetup info dxbench-base >/dev/null 2>&1 || dmsetup --noudevsync --noudevrules create dxbench-base --table '0 2048 zero'; \
                 base=$(dmsetup info -c --noheadings -o major,minor --separator : dxbench-base); \
                 dmsetup --noudevsync --noudevrules create --concise \"$(echo '{}' | sed \"s/BASE/$base/g\")\"; \
                 dmsetup ls | while read -r name dev; do case $name in dxvol-5e1f0c1e*) m=${{dev#*:}}; m=${{m%)}}; \
                 ln -sf /dev/dm-$m /dev/mapper/$name ;; esac; done; \
                 ls /dev/mapper | grep -c '^dxvol-5e1f0c1e'",
                table.join(";"),
            ),
            600,
        )
        .await;
    assert_eq!(made.trim(), n.to_string(), "bench devices in /dev/mapper");
    let mut changes = vec![
        up(
            "disk",
            json!({"wwn": BENCH_DISK, "serial": "bench", "size": "2GiB", "tier": "fast", "seen_by": ["A", "B"]}),
        ),
        up(
            "pool",
            json!({"name": "bench", "tier": "fast", "layout": "linear", "home": "A", "owner": "A", "epoch": 1, "disks": [BENCH_DISK]}),
        ),
        up("host_group", json!({"name": "gb", "hosts": []})),
    ];
    for i in 0..n {
        changes.push(volume(&format!("b{i}"), "bench", 1000 + i, "1MiB"));
    }
    for i in 0..n {
        changes.push(up("export", json!({"name": format!("bi{i}"), "volume": format!("b{i}"), "protocol": "iscsi", "lun": i, "host_group": "gb"})));
        changes.push(up("export", json!({"name": format!("bn{i}"), "volume": format!("b{i}"), "protocol": "nvme", "nsid": i + 1, "host_group": "gb"})));
    }
    // From nothing: the service is stopped while the state is written, so
    // its start-up rebuild builds all N at once.
    lab.sh_ok("A", "systemctl stop duplex-targets", 60).await;
    lab.apply(changes).await;
    let t = Instant::now();
    lab.sh_ok("A", "systemctl start duplex-targets", 120).await;
    let s = settled(lab, "A", 0).await;
    let wall = t.elapsed().as_secs_f64();
    let flip_standby = lab
        .call_ok(
            "A",
            "target.set_access_state",
            json!({"pool": "bench", "state": "standby"}),
        )
        .await;
    // The flip writes one member of the pool's LU group: the kernel must
    // have moved every volume.
    let states = "cat /sys/kernel/config/target/core/iblock_100/b*/alua/dx_a/alua_access_state | sort | uniq -c";
    let standby_states = lab.sh_ok("A", states, 120).await;
    assert_eq!(
        standby_states.split_whitespace().collect::<Vec<_>>(),
        [n.to_string(), "2".into()],
        "after the standby flip"
    );
    let flip_active = lab
        .call_ok(
            "A",
            "target.set_access_state",
            json!({"pool": "bench", "state": "active"}),
        )
        .await;
    let active_states = lab.sh_ok("A", states, 120).await;
    assert_eq!(
        active_states.split_whitespace().collect::<Vec<_>>(),
        [n.to_string(), "0".into()],
        "after the active flip"
    );
    // Teardown: exports, then volumes, then the pool.
    let r = reconciles(lab, "A").await;
    let mut gone: Vec<Value> = (0..n)
        .flat_map(|i| {
            [
                del("export", &format!("bi{i}")),
                del("export", &format!("bn{i}")),
            ]
        })
        .collect();
    gone.extend((0..n).map(|i| del("volume", &format!("b{i}"))));
    gone.push(del("pool", "bench"));
    gone.push(del("host_group", "gb"));
    gone.push(del("disk", BENCH_DISK));
    let t = Instant::now();
    lab.apply(gone).await;
    let _ = settled(lab, "A", r).await;
    let teardown_s = t.elapsed().as_secs_f64();
    lab.sh_ok(
        "A",
        "dmsetup ls | awk '/^dxvol-5e1f0c1e/{print $1}' | xargs -r dmsetup --noudevsync --noudevrules remove; \
         rm -f /dev/mapper/dxvol-5e1f0c1e*; \
         dmsetup --noudevsync --noudevrules remove dxbench-base; udevadm control --start-exec-queue; \
         systemctl start duplex-pool-manager",
        600,
    )
    .await;
    lab.sh_ok("B", "systemctl start duplex-pool-manager", 60)
        .await;
    let v = json!({
        "n": n,
        "configure_ms": s["last_ms"],
        "configure_steps": s["steps_applied"],
        "service_start_to_ready_s": wall,
        "flip_to_standby_ms": flip_standby["ms"],
        "flip_to_active_ms": flip_active["ms"],
        "flip_steps": flip_standby["steps"],
        "flip_to_standby": flip_standby,
        "flip_to_active": flip_active,
        "teardown_wall_s": teardown_s,
    });
    println!("bench {v}");
    v
}

/// Waits for H's dm-multipath map of v1 with two path groups of one path.
async fn two_path_map(lab: &Lab, what: &str) -> Value {
    wait_for(what, 90, || async {
        let out = lab.sh("H", "multipathd show maps json", 30).await.ok()?;
        let v: Value = serde_json::from_str(&out).ok()?;
        v["maps"]
            .as_array()?
            .iter()
            .find(|m| {
                m["path_groups"].as_array().is_some_and(|g| {
                    g.len() == 2
                        && g.iter()
                            .all(|g| g["paths"].as_array().is_some_and(|p| p.len() == 1))
                })
            })
            .cloned()
    })
    .await
}

/// H's SCSI disk of v1 through A's portal for the iSCSI interface `iface`.
const SD_OF: &str = r#"for s in /sys/class/iscsi_session/session*; do
  [ "$(cat $s/targetname)" = "$TGT" ] && [ "$(cat $s/ifacename)" = "$IFACE" ] || continue
  sid=${s##*session}
  [ "$(cat /sys/class/iscsi_connection/connection$sid:0/persistent_address)" = "$ADDR" ] || continue
  for d in $s/device/target*/*/block/*; do [ -e "$d" ] && echo /dev/${d##*/}; done
done"#;

/// Registers, reserves and checks reservations through A's path with
/// sg_persist on H; a second I_T nexus is refused; the registration
/// survives a restart of targets on A; `target.reservations` shows it and
/// `target.clear_reservations` removes it.
async fn reservations(lab: &Lab, map_check: &str) -> Value {
    let sd_of = |iface: &str| format!("TGT={TGT} IFACE={iface} ADDR={ADDR_A}; {SD_OF}");
    let sd = wait_for("H's disk through A", 60, || async {
        let out = lab.sh("H", &sd_of("default"), 20).await.ok()?;
        out.lines().next().map(|l| json!(l.trim()))
    })
    .await;
    let sd = sd.as_str().unwrap().to_string();
    let r = lab.call_ok("A", "target.reservations", json!({})).await;
    assert_eq!(r["db_root_ours"], json!(true), "{r}");
    // The measured failure: REGISTER answered NOT READY / LOGICAL UNIT
    // COMMUNICATION FAILURE while LIO could not write <db_root>/pr.
    let register = lab
        .sh_ok(
            "H",
            &format!(
                "sg_persist --out --register --param-sark=0x1 --param-aptpl {sd} && \
                 sg_persist --out --reserve --param-rk=0x1 --prout-type=1 {sd} && \
                 sg_persist --in --read-keys {sd} && sg_persist --in --read-reservation {sd}"
            ),
            60,
        )
        .await;
    println!("sg_persist through A ({sd}):\n{register}");
    assert!(register.contains("0x1"), "{register}");
    assert!(
        register.to_lowercase().contains("write exclusive"),
        "{register}"
    );

    // A second initiator of H: registered, but not the holder of a Write
    // Exclusive reservation, so its write is refused.
    let login2 = format!(
        "iscsiadm -m iface -I pr2 -o new >/dev/null; \
         iscsiadm -m iface -I pr2 -o update -n iface.initiatorname -v {IQN_H2} >/dev/null; \
         timeout 30 iscsiadm -m discovery -t sendtargets -p {ADDR_A}:3260 -I pr2 >/dev/null; \
         for kv in authmethod=CHAP username={CHAP_USER} password='{CHAP_SECRET}' username_in={CHAP_TARGET_USER} password_in='{CHAP_TARGET_SECRET}'; do \
           iscsiadm -m node -T {TGT} -p {ADDR_A}:3260 -I pr2 -o update -n node.session.auth.${{kv%%=*}} -v \"${{kv#*=}}\"; done; \
         timeout 60 iscsiadm -m node -T {TGT} -p {ADDR_A}:3260 -I pr2 --login >/dev/null"
    );
    lab.sh_ok("H", &login2, 120).await;
    let sd2 = wait_for("H's second disk through A", 60, || async {
        let out = lab.sh("H", &sd_of("pr2"), 20).await.ok()?;
        out.lines().next().map(|l| json!(l.trim()))
    })
    .await;
    let sd2 = sd2.as_str().unwrap().to_string();
    let conflict = lab
        .sh(
            "H",
            &format!(
                "sg_persist --out --register --param-sark=0x2 --param-aptpl {sd2} >/dev/null && \
                 sg_raw -s 512 -i /dev/zero {sd2} 2a 00 00 00 00 00 00 00 01 00 2>&1; \
                 sg_persist --in --read-keys {sd2}"
            ),
            60,
        )
        .await
        .unwrap_or_else(|e| e);
    println!("second nexus:\n{conflict}");
    assert!(
        conflict.to_lowercase().contains("reservation conflict"),
        "a write by a non-holder under Write Exclusive: {conflict}"
    );
    assert!(conflict.contains("0x2"), "{conflict}");

    // targets restarts on A: the kernel keeps the table, and the APTPL
    // file is where LIO wrote it.
    let before = reconciles(lab, "A").await;
    lab.sh_ok("A", "systemctl restart duplex-targets", 120)
        .await;
    let _ = before;
    settled(lab, "A", 0).await;
    let keys = lab
        .sh_ok("H", &format!("sg_persist --in --read-keys {sd}"), 30)
        .await;
    assert!(keys.contains("0x1") && keys.contains("0x2"), "{keys}");
    let r = lab
        .call_ok("A", "target.reservations", json!({"volume": "v1"}))
        .await;
    println!("target.reservations: {r}");
    let lu = &r["luns"][0];
    assert_eq!(lu["saved"], json!(true), "{r}");
    assert_eq!(lu["aptpl"], json!(true), "{r}");
    let regs = lu["registrations"].as_array().unwrap();
    assert!(regs.iter().any(|g| g["key"] == "0x0000000000000001"), "{r}");
    assert!(
        regs.iter()
            .any(|g| g["key"] == "0x0000000000000002" && g["initiator"] == IQN_H2),
        "{r}"
    );
    assert!(
        lu["holder"]["pr_type"]
            .as_str()
            .is_some_and(|t| t.starts_with("Write Exclusive")),
        "{r}"
    );
    let saved = lab
        .sh_ok(
            "A",
            &format!(
                "cat /var/lib/duplex/lio/pr/aptpl_{}",
                lu["serial"].as_str().unwrap()
            ),
            20,
        )
        .await;
    assert!(
        saved.contains("PR_REG_START") && saved.contains("res_holder=1"),
        "{saved}"
    );

    // What a controller restart does to LIO, without the reboot: targets
    // stopped, v1's backstore, LUN and mappings gone from configfs (the
    // kernel's table with them), targets started. It rebuilds them and
    // writes the saved registrations back before the LUN.
    let serial = lu["serial"].as_str().unwrap().to_string();
    let teardown = format!(
        "systemctl stop duplex-targets; T=/sys/kernel/config/target; I=$T/iscsi/{TGT}/tpgt_1; \
         for m in $I/acls/*/lun_0; do for l in $m/*; do [ -L $l ] && rm $l; done; rmdir $m; done; \
         for l in $I/lun/lun_0/*; do [ -L $l ] && rm $l; done; rmdir $I/lun/lun_0; \
         for g in $T/core/iblock_100/v1/alua/dx_*; do rmdir $g; done; rmdir $T/core/iblock_100/v1; \
         ls $T/core/iblock_100; grep -c PR_REG_START /var/lib/duplex/lio/pr/aptpl_{serial}; \
         systemctl start duplex-targets"
    );
    let torn = lab.sh_ok("A", &teardown, 120).await;
    println!("LIO torn down on A:\n{torn}");
    settled(lab, "A", 0).await;
    let reloaded = wait_for("v1's reservations reloaded on A", 120, || async {
        let r = lab
            .call("A", "target.reservations", json!({"volume": "v1"}))
            .await
            .ok()?;
        (r["luns"][0]["registrations"].as_array()?.len() == 2).then_some(r)
    })
    .await;
    println!("target.reservations after LIO was rebuilt: {reloaded}");
    let lu = &reloaded["luns"][0];
    assert!(
        lu["holder"]["pr_type"]
            .as_str()
            .is_some_and(|t| t.starts_with("Write Exclusive")),
        "{reloaded}"
    );
    assert_eq!(
        lu["holder"]["initiator"],
        json!(regs[0]["initiator"]),
        "{reloaded}"
    );
    let keys = wait_for("H to read the keys again through A", 60, || async {
        let out = lab
            .sh(
                "H",
                &format!("sg_persist --in --read-keys {sd}; sg_persist --in --read-keys {sd}"),
                30,
            )
            .await
            .ok()?;
        (out.contains("0x1") && out.contains("0x2")).then(|| json!(out))
    })
    .await;
    let refused = lab
        .sh(
            "H",
            &format!("sg_raw -s 512 -i /dev/zero {sd2} 2a 00 00 00 00 00 00 00 01 00 2>&1; sg_raw -s 512 -i /dev/zero {sd2} 2a 00 00 00 00 00 00 00 01 00 2>&1"),
            60,
        )
        .await
        .unwrap_or_else(|e| e);
    assert!(
        refused.to_lowercase().contains("reservation conflict"),
        "the reloaded reservation is enforced: {refused}"
    );

    // The admin clear, audited; then nothing is left and writes go through.
    let c = lab
        .call_ok("A", "target.clear_reservations", json!({"volume": "v1"}))
        .await;
    println!("target.clear_reservations: {c}");
    assert_eq!(c["after"]["registrations"], json!([]), "{c}");
    assert!(c["after"].get("holder").is_none_or(Value::is_null), "{c}");
    assert_eq!(c["file_removed"], json!(true), "{c}");
    assert_eq!(c["audited"], json!(true), "{c}");
    let after = lab
        .sh(
            "H",
            &format!(
                "sleep 2; sg_persist --in --read-keys {sd}; sg_persist --in --read-keys {sd}; \
                 sg_raw -s 512 -i /dev/zero {sd2} 2a 00 00 00 00 00 00 00 01 00 2>&1"
            ),
            60,
        )
        .await
        .unwrap_or_else(|e| e);
    println!("after the clear:\n{after}");
    assert!(
        !after.contains("0x1\n") && !after.to_lowercase().contains("reservation conflict"),
        "{after}"
    );
    let events = lab
        .call_ok("A", "config.events", json!({"limit": 10000}))
        .await;
    assert!(
        events.to_string().contains("target.clear_reservations"),
        "{events}"
    );
    lab.sh_ok(
        "H",
        &format!(
            "iscsiadm -m node -T {TGT} -I pr2 --logout >/dev/null 2>&1; \
             iscsiadm -m node -T {TGT} -I pr2 -o delete >/dev/null 2>&1; \
             iscsiadm -m iface -I pr2 -o delete >/dev/null 2>&1; true"
        ),
        60,
    )
    .await;
    two_path_map(lab, map_check).await;
    json!({"sg_persist": register, "second_nexus": conflict, "after_restart": r,
           "lio_rebuilt": {"teardown": torn, "reservations": reloaded, "keys": keys, "second_nexus_write": refused},
           "clear": c, "after_clear": after})
}
