//! `duplexctl disk|pool|volume|host|host-group|export|ip`: the everyday
//! administration commands. Each one is a call of the catalogue (the
//! services' methods, or `config.get`/`config.apply` for the objects only
//! config-keeper holds) and a table of its answer; `--json` prints the
//! answer itself.

use clap::{Args, Subcommand};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// `duplexctl disk ...`.
#[derive(Subcommand)]
pub enum DiskCmd {
    /// Every shared disk with its tier and whether it may join a pool.
    List {
        /// This controller's own discovery instead (holders, signatures).
        #[arg(long)]
        local: bool,
    },
}

/// `duplexctl pool ...`.
#[derive(Subcommand)]
pub enum PoolCmd {
    /// The pools with their owner, state here, size and free space.
    List,
    /// What each layout gives with N disks: `duplexctl pool layouts --disks 4`.
    Layouts {
        /// How many disks.
        #[arg(long)]
        disks: usize,
    },
    /// Create a pool: `duplexctl pool create p1 --layout raid1 --disk WWN --disk WWN`.
    Create {
        /// Pool name.
        name: String,
        /// Layout (`duplexctl pool layouts` lists them).
        #[arg(long)]
        layout: String,
        /// A disk (WWN or path); repeat for each.
        #[arg(long = "disk", required = true)]
        disks: Vec<String>,
        /// Copies, for layouts that take a count.
        #[arg(long)]
        copies: Option<u8>,
        /// A hot spare; repeat for each.
        #[arg(long = "spare")]
        spares: Vec<String>,
        /// fast | regular (default: the disks').
        #[arg(long)]
        tier: Option<String>,
        /// Wipe old signatures on the disks first.
        #[arg(long)]
        wipe: bool,
    },
    /// Delete an empty pool: `duplexctl pool delete p1`.
    Delete {
        /// Pool name.
        name: String,
    },
}

/// `duplexctl volume ...`.
#[derive(Subcommand)]
pub enum VolumeCmd {
    /// The volumes with their size, identity and state here.
    List {
        /// One pool only.
        #[arg(long)]
        pool: Option<String>,
    },
    /// The snapshot and clone tree.
    Tree {
        /// One pool only.
        #[arg(long)]
        pool: Option<String>,
    },
    /// Create a volume: `duplexctl volume create v1 --pool p1 --size 10GiB`.
    Create {
        /// Volume name.
        name: String,
        /// Pool.
        #[arg(long)]
        pool: String,
        /// Size with a unit (`10GiB`).
        #[arg(long)]
        size: String,
    },
    /// Grow a volume: `duplexctl volume resize v1 --size 20GiB`.
    Resize {
        /// Volume name.
        name: String,
        /// New size with a unit.
        #[arg(long)]
        size: String,
    },
    /// Delete a volume: `duplexctl volume delete v1`.
    Delete {
        /// Volume name.
        name: String,
    },
    /// Snapshot a volume: `duplexctl volume snapshot v1 v1-monday`.
    Snapshot {
        /// The volume or snapshot.
        source: String,
        /// The snapshot's name.
        name: String,
        /// Writable instead of read-only.
        #[arg(long)]
        writable: bool,
    },
    /// Clone a volume or snapshot: `duplexctl volume clone v1-monday v2`.
    Clone {
        /// The volume or snapshot.
        source: String,
        /// The clone's name.
        name: String,
    },
}

/// `duplexctl job ...`.
#[derive(Subcommand)]
pub enum JobCmd {
    /// This controller's recent jobs.
    List,
    /// One job (a partner's through the peer link).
    Get {
        /// The job's id (`A:1f3c...`).
        job: String,
    },
    /// One job once it ends (or after 30 s, as it is then).
    Wait {
        /// The job's id.
        job: String,
    },
}

/// `list`, `show NAME`, `delete NAME` and kind-specific `add`.
#[derive(Subcommand)]
pub enum ObjectCmd<A: Args> {
    /// Every one, as a table.
    List,
    /// One, in full (JSON).
    Show {
        /// Its name.
        name: String,
    },
    /// Add one, or replace the one of that name.
    Add(A),
    /// Delete one: `... delete NAME`.
    Delete {
        /// Its name.
        name: String,
    },
}

/// `duplexctl host add h1 --iqn iqn.1994-05.com.example:h1 --nqn nqn...`.
#[derive(Args)]
pub struct HostAdd {
    /// Host name.
    pub name: String,
    /// An iSCSI initiator name; repeat for each.
    #[arg(long = "iqn")]
    pub iqns: Vec<String>,
    /// An NVMe host NQN; repeat for each.
    #[arg(long = "nqn")]
    pub nqns: Vec<String>,
}

/// `duplexctl host-group add g1 --host h1 --host h2`.
#[derive(Args)]
pub struct GroupAdd {
    /// Group name.
    pub name: String,
    /// A member host; repeat for each.
    #[arg(long = "host")]
    pub hosts: Vec<String>,
}

/// `duplexctl export add e1 --volume v1 --group g1 --protocol iscsi --lun 0`.
#[derive(Args)]
pub struct ExportAdd {
    /// Export name.
    pub name: String,
    /// The volume.
    #[arg(long)]
    pub volume: String,
    /// The host group it is shown to.
    #[arg(long)]
    pub group: String,
    /// iscsi | nvme.
    #[arg(long, value_parser = ["iscsi", "nvme"])]
    pub protocol: String,
    /// The LUN (iSCSI).
    #[arg(long)]
    pub lun: Option<u32>,
    /// The namespace id (NVMe).
    #[arg(long)]
    pub nsid: Option<u32>,
}

/// `duplexctl ip add fe0 --address 192.0.2.10/24 --interface eth1 --home A`.
#[derive(Args)]
pub struct IpAdd {
    /// Name.
    pub name: String,
    /// Address and prefix.
    #[arg(long)]
    pub address: String,
    /// Front-end interface.
    #[arg(long)]
    pub interface: String,
    /// Home controller (it starts there).
    #[arg(long)]
    pub home: String,
}

/// `echo 'pass phrase' | duplexctl user add ann --role admin`: the password
/// is read from standard input (one line), never from the command line,
/// where `ps` and shell history would keep it.
#[derive(Args)]
pub struct UserAdd {
    /// Login name.
    pub name: String,
    /// admin | read_only.
    #[arg(long, value_parser = ["admin", "read_only"])]
    pub role: String,
}

/// One admin command, whatever its noun.
pub enum Admin<'a> {
    /// `disk ...`.
    Disk(&'a DiskCmd),
    /// `pool ...`.
    Pool(&'a PoolCmd),
    /// `volume ...`.
    Volume(&'a VolumeCmd),
    /// `host ...`.
    Host(&'a ObjectCmd<HostAdd>),
    /// `host-group ...`.
    Group(&'a ObjectCmd<GroupAdd>),
    /// `export ...`.
    Export(&'a ObjectCmd<ExportAdd>),
    /// `ip ...`.
    Ip(&'a ObjectCmd<IpAdd>),
    /// `user ...`.
    User(&'a ObjectCmd<UserAdd>),
    /// `job ...`.
    Job(&'a JobCmd),
}

fn upsert(kind: &str, object: Value) -> Value {
    json!({"changes": [{"op": "upsert", "kind": kind, "object": object}]})
}

fn object_call<A: Args>(
    kind: &str,
    op: &ObjectCmd<A>,
    add: impl Fn(&A) -> Value,
) -> (&'static str, Value) {
    match op {
        ObjectCmd::List => ("config.get", json!({"kind": kind})),
        ObjectCmd::Show { name } => ("config.get", json!({"kind": kind, "name": name})),
        ObjectCmd::Add(a) => ("config.apply", upsert(kind, add(a))),
        ObjectCmd::Delete { name } => (
            "config.apply",
            json!({"changes": [{"op": "delete", "kind": kind, "name": name}]}),
        ),
    }
}

impl Admin<'_> {
    /// The method to call and its parameters.
    pub fn call(&self) -> (&'static str, Value) {
        match self {
            Admin::Disk(DiskCmd::List { local }) => ("disk.list", json!({"local": local})),
            Admin::Pool(op) => match op {
                PoolCmd::List => ("pool.status", json!({})),
                PoolCmd::Layouts { disks } => ("pool.layouts", json!({"disks": disks})),
                PoolCmd::Create {
                    name,
                    layout,
                    disks,
                    copies,
                    spares,
                    tier,
                    wipe,
                } => {
                    let mut p = json!({"name": name, "layout": layout, "disks": disks,
                                       "spares": spares, "wipe": wipe});
                    if let Some(c) = copies {
                        p["copies"] = json!(c);
                    }
                    if let Some(t) = tier {
                        p["tier"] = json!(t);
                    }
                    ("pool.create", p)
                }
                PoolCmd::Delete { name } => ("pool.delete", json!({"name": name})),
            },
            Admin::Volume(op) => match op {
                VolumeCmd::List { pool } | VolumeCmd::Tree { pool } => (
                    "volume.list",
                    pool.as_ref()
                        .map_or_else(|| json!({}), |p| json!({"pool": p})),
                ),
                VolumeCmd::Create { name, pool, size } => (
                    "volume.create",
                    json!({"name": name, "pool": pool, "size": size}),
                ),
                VolumeCmd::Resize { name, size } => {
                    ("volume.resize", json!({"name": name, "size": size}))
                }
                VolumeCmd::Delete { name } => ("volume.delete", json!({"name": name})),
                VolumeCmd::Snapshot {
                    source,
                    name,
                    writable,
                } => (
                    "volume.snapshot",
                    json!({"source": source, "name": name, "read_only": !writable}),
                ),
                VolumeCmd::Clone { source, name } => {
                    ("volume.clone", json!({"source": source, "name": name}))
                }
            },
            Admin::Host(op) => object_call(
                "host",
                op,
                |a| json!({"name": a.name, "iqns": a.iqns, "nqns": a.nqns}),
            ),
            Admin::Group(op) => object_call(
                "host_group",
                op,
                |a| json!({"name": a.name, "hosts": a.hosts}),
            ),
            Admin::Export(op) => object_call("export", op, |a| {
                let mut o = json!({"name": a.name, "volume": a.volume,
                                   "protocol": a.protocol, "host_group": a.group});
                if let Some(l) = a.lun {
                    o["lun"] = json!(l);
                }
                if let Some(n) = a.nsid {
                    o["nsid"] = json!(n);
                }
                o
            }),
            // A new address starts on its home controller; heartbeat moves
            // the owner (and its epoch) at a takeover.
            Admin::Ip(op) => object_call("floating_ip", op, |a| {
                json!({"name": a.name, "address": a.address, "interface": a.interface,
                       "home": a.home, "owner": a.home})
            }),
            Admin::Job(op) => match op {
                JobCmd::List => ("job.list", json!({})),
                JobCmd::Get { job } => ("job.get", json!({"job": job})),
                JobCmd::Wait { job } => ("job.wait", json!({"job": job})),
            },
            // config-keeper hashes the clear `password` (set by the caller
            // from standard input) before anything stores or logs it.
            Admin::User(op) => object_call("user", op, |a| json!({"name": a.name, "role": a.role})),
        }
    }

    /// Whether the call needs a password read from standard input.
    pub fn wants_password(&self) -> bool {
        matches!(self, Admin::User(ObjectCmd::Add(_)))
    }

    /// The answer for a person.
    pub fn render(&self, v: &Value) -> String {
        match self {
            Admin::Disk(_) => disks(v),
            Admin::Pool(PoolCmd::List) => pools(v),
            Admin::Pool(PoolCmd::Layouts { .. }) => layouts(v),
            Admin::Volume(VolumeCmd::List { .. }) => volumes(v),
            Admin::Volume(VolumeCmd::Tree { .. }) => tree(v),
            Admin::Pool(_) | Admin::Volume(_) => outcome(v),
            Admin::Host(op) => objects(op, v, "host", &["NAME", "IQNS", "NQNS", "CHAP"], |o| {
                vec![
                    s(&o["name"]),
                    list(&o["iqns"]),
                    list(&o["nqns"]),
                    yes_no(&Value::Bool(o["chap"].is_object())),
                ]
            }),
            Admin::Group(op) => objects(op, v, "host_group", &["NAME", "HOSTS"], |o| {
                vec![s(&o["name"]), list(&o["hosts"])]
            }),
            Admin::Export(op) => objects(
                op,
                v,
                "export",
                &["NAME", "VOLUME", "PROTOCOL", "LUN/NSID", "HOST GROUP"],
                |o| {
                    let id = o.get("lun").or_else(|| o.get("nsid")).map_or("-".into(), s);
                    vec![
                        s(&o["name"]),
                        s(&o["volume"]),
                        s(&o["protocol"]),
                        id,
                        s(&o["host_group"]),
                    ]
                },
            ),
            Admin::Job(JobCmd::List) => jobs(v),
            Admin::Job(_) => job(v),
            Admin::User(op) => objects(op, v, "user", &["NAME", "ROLE"], |o| {
                vec![s(&o["name"]), s(&o["role"])]
            }),
            Admin::Ip(op) => objects(
                op,
                v,
                "floating_ip",
                &["NAME", "ADDRESS", "INTERFACE", "HOME", "OWNER"],
                |o| {
                    vec![
                        s(&o["name"]),
                        s(&o["address"]),
                        s(&o["interface"]),
                        s(&o["home"]),
                        s(&o["owner"]),
                    ]
                },
            ),
        }
    }
}

/// A JSON value as a cell: strings bare, null as `-`.
fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(x) => x.clone(),
        other => other.to_string(),
    }
}

/// A JSON array as a comma-separated cell.
fn list(v: &Value) -> String {
    let items: Vec<String> = v.as_array().into_iter().flatten().map(s).collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

/// Bytes in binary units, one decimal.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = n as f64;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < UNITS.len() {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

fn size(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".into(), bytes)
}

/// `yes` for JSON true, else `no`.
fn yes_no(v: &Value) -> String {
    if v == &Value::Bool(true) { "yes" } else { "no" }.into()
}

/// One table row per element of the array `v[key]`.
fn rows(v: &Value, key: &str, row: impl Fn(&Value) -> Vec<String>) -> Vec<Vec<String>> {
    v[key].as_array().into_iter().flatten().map(row).collect()
}

/// Columns padded to their widest cell; the last one is not padded.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(c.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<&str> = cells.collect();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                out.push_str(c);
            } else {
                let _ = write!(out, "{c:<width$}  ", width = w[i]);
            }
        }
        out.push('\n');
    };
    line(&mut out, &mut headers.iter().copied());
    for r in rows {
        line(&mut out, &mut r.iter().map(String::as_str));
    }
    out
}

fn disks(v: &Value) -> String {
    let rows = rows(v, "disks", |d| {
        let usable = if d["qualifies"] == json!(true) {
            "yes".to_string()
        } else {
            format!("no: {}", s(&d["refusal"]))
        };
        vec![
            s(&d["path"]),
            s(&d["wwn"]),
            size(&d["size"]),
            s(&d["tier"]),
            yes_no(&d["shared"]),
            s(&d["pool"]),
            usable,
        ]
    });
    let mut out = table(
        &["PATH", "WWN", "SIZE", "TIER", "SHARED", "POOL", "USABLE"],
        &rows,
    );
    if v["partner_reachable"] == json!(false) {
        out.push_str("the partner did not answer: whether a disk is shared is unknown\n");
    }
    out
}

fn pools(v: &Value) -> String {
    let rows = rows(v, "pools", |p| {
        vec![
            s(&p["name"]),
            s(&p["owner"]),
            s(&p["home"]),
            yes_no(&p["active_here"]),
            size(&p["size"]),
            size(&p["free"]),
            s(&p["volumes"]),
            p["alerts"].as_array().map_or(0, Vec::len).to_string(),
        ]
    });
    table(
        &[
            "NAME",
            "OWNER",
            "HOME",
            "ACTIVE HERE",
            "SIZE",
            "FREE",
            "VOLUMES",
            "ALERTS",
        ],
        &rows,
    )
}

fn layouts(v: &Value) -> String {
    let rows = rows(v, "layouts", |l| {
        let possible = if l["possible"] == json!(true) {
            "yes".to_string()
        } else {
            format!("no: {}", s(&l["reason"]))
        };
        vec![
            s(&l["layout"]),
            s(&l["copies"]),
            l["capacity_fraction"]
                .as_f64()
                .map_or("-".into(), |f| format!("{:.0} %", f * 100.0)),
            s(&l["fault_tolerance"]),
            s(&l["disks_used"]),
            possible,
        ]
    });
    table(
        &[
            "LAYOUT",
            "COPIES",
            "CAPACITY",
            "DISKS THAT MAY FAIL",
            "DISKS USED",
            "POSSIBLE",
        ],
        &rows,
    )
}

fn volumes(v: &Value) -> String {
    let rows = rows(v, "volumes", |x| {
        vec![
            s(&x["name"]),
            s(&x["pool"]),
            s(&x["size"]),
            match x["read_only"].as_bool() {
                Some(true) => "ro",
                Some(false) => "rw",
                None => "-",
            }
            .into(),
            yes_no(&x["active_here"]),
            s(&x["wwn"]),
            s(&x["parent"]),
        ]
    });
    table(
        &[
            "NAME",
            "POOL",
            "SIZE",
            "MODE",
            "ACTIVE HERE",
            "WWN",
            "PARENT",
        ],
        &rows,
    )
}

fn tree(v: &Value) -> String {
    fn node(out: &mut String, n: &Value, depth: usize) {
        let _ = writeln!(out, "{}{}", "  ".repeat(depth), s(&n["name"]));
        for c in n["children"].as_array().into_iter().flatten() {
            node(out, c, depth + 1);
        }
    }
    let mut out = String::new();
    for n in v["tree"].as_array().into_iter().flatten() {
        node(&mut out, n, 0);
    }
    if out.is_empty() {
        out.push_str("no volumes\n");
    }
    out
}

fn time(v: &Value) -> String {
    v.as_u64().map_or_else(|| "-".into(), crate::cluster::utc)
}

fn jobs(v: &Value) -> String {
    let rows = rows(v, "jobs", |j| {
        vec![
            s(&j["job"]),
            s(&j["method"]),
            s(&j["state"]),
            time(&j["started_ms"]),
            time(&j["ended_ms"]),
            s(&j["caller"]),
        ]
    });
    table(&["JOB", "METHOD", "STATE", "STARTED", "ENDED", "BY"], &rows)
}

fn job(j: &Value) -> String {
    let mut out = format!(
        "job {}: {} on {}, {}\nstarted {}",
        s(&j["job"]),
        s(&j["method"]),
        s(&j["controller"]),
        s(&j["state"]),
        time(&j["started_ms"])
    );
    if !j["ended_ms"].is_null() {
        let _ = write!(out, ", ended {}", time(&j["ended_ms"]));
    }
    out.push('\n');
    if !j["progress"].is_null() {
        let _ = writeln!(
            out,
            "progress: {} {}",
            s(&j["progress"]["topic"]),
            j["progress"]["data"]
        );
    }
    if let Some(e) = j["error"]["message"].as_str() {
        let _ = writeln!(out, "error: {e}");
    }
    if !j["result"].is_null() {
        let _ = writeln!(
            out,
            "result: {}",
            serde_json::to_string_pretty(&j["result"]).unwrap_or_default()
        );
    }
    out
}

/// A change's answer: what changed, or that nothing had to.
fn outcome(v: &Value) -> String {
    let what = v["pool"]["name"]
        .as_str()
        .or_else(|| v["pool"].as_str())
        .or_else(|| v["volume"]["name"].as_str())
        .or_else(|| v["volume"].as_str())
        .unwrap_or("?");
    match v["outcome"].as_str() {
        Some("unchanged") => format!("{what}: already so, nothing changed\n"),
        Some(o) => format!("{what}: {o}\n"),
        None => format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()),
    }
}

/// Objects of `kind` from `config.get` as a table, one in full, or what
/// an apply did.
fn objects<A: Args>(
    op: &ObjectCmd<A>,
    v: &Value,
    kind: &str,
    headers: &[&str],
    row: impl Fn(&Value) -> Vec<String>,
) -> String {
    match op {
        ObjectCmd::List => {
            let rows: Vec<Vec<String>> = v["config"][kind]
                .as_array()
                .into_iter()
                .flatten()
                .map(&row)
                .collect();
            table(headers, &rows)
        }
        ObjectCmd::Show { .. } => {
            format!(
                "{}\n",
                serde_json::to_string_pretty(&v["config"][kind]).unwrap_or_default()
            )
        }
        ObjectCmd::Add(_) | ObjectCmd::Delete { .. } => {
            if v["changed"] == json!(true) {
                format!("done (configuration version {})\n", s(&v["version"]))
            } else {
                "already so, nothing changed\n".into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_columns_and_sizes_read_well() {
        let t = table(
            &["NAME", "SIZE"],
            &[
                vec!["v1".into(), "1".into()],
                vec!["long-name".into(), "2".into()],
            ],
        );
        assert_eq!(t, "NAME       SIZE\nv1         1\nlong-name  2\n");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(10 * 1024 * 1024 * 1024), "10.0 GiB");
        assert_eq!(bytes(1536), "1.5 KiB");
    }

    #[test]
    fn commands_become_catalogue_calls_that_pass_its_schemas() {
        let create = PoolCmd::Create {
            name: "p1".into(),
            layout: "raid1".into(),
            disks: vec!["w1".into(), "w2".into()],
            copies: None,
            spares: vec![],
            tier: None,
            wipe: false,
        };
        let export = ObjectCmd::Add(ExportAdd {
            name: "e1".into(),
            volume: "v1".into(),
            group: "g1".into(),
            protocol: "iscsi".into(),
            lun: Some(0),
            nsid: None,
        });
        let snap = VolumeCmd::Snapshot {
            source: "v1".into(),
            name: "s1".into(),
            writable: false,
        };
        let tree = VolumeCmd::Tree { pool: None };
        let cmds = [
            Admin::Pool(&create),
            Admin::Volume(&snap),
            Admin::Volume(&tree),
            Admin::Export(&export),
        ];
        for c in &cmds {
            let (method, params) = c.call();
            crate::catalogue::check_params(method, &params)
                .unwrap_or_else(|e| panic!("{method} {params}: {e}"));
        }
        let (m, p) = Admin::Export(&export).call();
        assert_eq!(m, "config.apply");
        assert_eq!(p["changes"][0]["object"]["host_group"], "g1");
        assert_eq!(p["changes"][0]["object"]["lun"], 0);
        assert!(p["changes"][0]["object"].get("nsid").is_none());
        let (_, p) = Admin::Volume(&snap).call();
        assert_eq!(p["read_only"], true);
    }

    #[test]
    fn answers_render_as_tables_and_trees() {
        let v = json!({"volumes": [{"name": "v1", "pool": "p1", "size": "10GiB", "read_only": false,
                        "active_here": true, "wwn": "naa.6001", "parent": null}],
                       "tree": [{"name": "v1", "children": [{"name": "s1", "children": []}]}]});
        let list = VolumeCmd::List { pool: None };
        let t = Admin::Volume(&list).render(&v);
        assert!(t.contains("v1    p1    10GiB"), "{t}");
        let tr = VolumeCmd::Tree { pool: None };
        assert_eq!(Admin::Volume(&tr).render(&v), "v1\n  s1\n");
        let hosts: ObjectCmd<HostAdd> = ObjectCmd::List;
        let v =
            json!({"config": {"host": [{"name": "h1", "iqns": ["iqn.a", "iqn.b"], "nqns": []}]}});
        let t = Admin::Host(&hosts).render(&v);
        assert!(t.contains("h1    iqn.a,iqn.b  -     no"), "{t}");
        let del = PoolCmd::Delete { name: "p1".into() };
        let t = Admin::Pool(&del).render(&json!({"outcome": "unchanged", "pool": "p1"}));
        assert_eq!(t, "p1: already so, nothing changed\n");
    }
}
