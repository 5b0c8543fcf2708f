//! Typed model of every kind of object in the desired state.
//!
//! These types are the wire form too (`config.get` returns them as they are),
//! so every field is explicit and unknown fields are refused: a typo in a
//! change must fail, not be silently dropped.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::syntax::{IfAddr, Size};

/// The kinds of objects, in the fixed order used by `config.get` and the
/// digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The cluster singleton (id, epoch, secret reference).
    Cluster,
    /// A controller (A or B).
    Controller,
    /// A shared disk.
    Disk,
    /// A pool (LVM volume group) with home and owner.
    Pool,
    /// A volume in a pool.
    Volume,
    /// An export of a volume over iSCSI or NVMe-oF.
    Export,
    /// A host and its initiator names.
    Host,
    /// A group of hosts that exports are made to.
    HostGroup,
    /// A floating IP address.
    FloatingIp,
    /// A management user.
    User,
    /// The settings singleton.
    Settings,
}

impl Kind {
    /// Every kind, in digest order.
    pub const ALL: [Kind; 11] = [
        Kind::Cluster,
        Kind::Controller,
        Kind::Disk,
        Kind::Pool,
        Kind::Volume,
        Kind::Export,
        Kind::Host,
        Kind::HostGroup,
        Kind::FloatingIp,
        Kind::User,
        Kind::Settings,
    ];

    /// The wire name ("host_group").
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Cluster => "cluster",
            Kind::Controller => "controller",
            Kind::Disk => "disk",
            Kind::Pool => "pool",
            Kind::Volume => "volume",
            Kind::Export => "export",
            Kind::Host => "host",
            Kind::HostGroup => "host_group",
            Kind::FloatingIp => "floating_ip",
            Kind::User => "user",
            Kind::Settings => "settings",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The fixed key of a singleton kind.
    pub fn singleton_key(self) -> Option<&'static str> {
        match self {
            Kind::Cluster => Some("cluster"),
            Kind::Settings => Some("settings"),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The cluster singleton.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    /// Cluster identifier (a UUID).
    pub id: String,
    /// The cluster epoch: only grows; bumped by every takeover.
    pub epoch: u64,
    /// Where the shared cluster secret is kept (a path or key name, never
    /// the secret itself).
    pub secret_ref: String,
}

/// A controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Controller {
    /// Controller id as in `duplex.toml` ("a", "b").
    pub id: String,
    /// Display name.
    pub name: String,
    /// Interconnect addresses (ic0, ic1).
    pub interconnect: Vec<IfAddr>,
    /// Management address.
    pub management: IfAddr,
    /// Front-end portal addresses: where this controller's iSCSI (3260)
    /// and NVMe/TCP (4420) targets listen.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub portals: Vec<IfAddr>,
}

/// Storage tier of a disk or pool.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    /// SSD/NVMe.
    Fast,
    /// Spinning disks.
    Regular,
}

/// A shared disk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Disk {
    /// NAA world wide name (the key).
    pub wwn: String,
    /// Vendor serial number.
    pub serial: String,
    /// Capacity.
    pub size: Size,
    /// Tier.
    pub tier: Tier,
    /// Controllers that see the disk (sorted).
    pub seen_by: Vec<String>,
}

/// RAID layout of a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// Concatenation.
    Linear,
    /// Striping.
    Raid0,
    /// Mirroring.
    Raid1,
    /// Single parity.
    Raid5,
    /// Double parity.
    Raid6,
    /// Striped mirrors.
    Raid10,
}

impl Layout {
    /// The fewest disks the layout needs.
    pub fn min_disks(self) -> usize {
        match self {
            Layout::Linear => 1,
            Layout::Raid0 | Layout::Raid1 => 2,
            Layout::Raid5 => 3,
            Layout::Raid6 | Layout::Raid10 => 4,
        }
    }
}

/// A pool: home is where it lives normally, owner where it is imported now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pool {
    /// Name (the key).
    pub name: String,
    /// Tier.
    pub tier: Tier,
    /// RAID layout.
    pub layout: Layout,
    /// Home controller.
    pub home: String,
    /// Current owner.
    pub owner: String,
    /// Cluster epoch under which `owner` was recorded.
    pub epoch: u64,
    /// Member disks by WWN (sorted).
    #[serde(default)]
    pub disks: Vec<String>,
    /// Mirror copies (raid1 only: 2 or 3; absent means 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies: Option<u32>,
}

/// A volume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Volume {
    /// Name (the key, unique in the cluster).
    pub name: String,
    /// Pool it lives in.
    pub pool: String,
    /// Size.
    pub size: Size,
    /// Thin provisioned.
    #[serde(default)]
    pub thin: bool,
    /// SCSI unit serial (hex).
    pub serial: String,
    /// SCSI logical unit WWN (NAA, hex).
    pub wwn: String,
    /// NVMe namespace NGUID (32 hex digits).
    pub nguid: String,
    /// NVMe namespace UUID.
    pub uuid: String,
    /// The snapshot this volume was cloned from, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_snapshot: Option<String>,
    /// Read-only (snapshots are by default): targets export it write
    /// protected.
    #[serde(default, skip_serializing_if = "is_false")]
    pub read_only: bool,
}

/// Serde helper: omit `false` so objects written before the field existed
/// keep their canonical form (and the digest).
fn is_false(b: &bool) -> bool {
    !*b
}

/// Transport protocol of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// iSCSI through LIO; addressed by LUN.
    Iscsi,
    /// NVMe-oF/TCP through nvmet; addressed by NSID.
    Nvme,
}

/// An export of a volume to a host group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Export {
    /// Name (the key).
    pub name: String,
    /// Exported volume.
    pub volume: String,
    /// Protocol.
    pub protocol: Protocol,
    /// LUN (iSCSI only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lun: Option<u32>,
    /// Namespace id (NVMe only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nsid: Option<u32>,
    /// Host group the volume is shown to.
    pub host_group: String,
}

/// CHAP credentials of a host.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chap {
    /// CHAP user name.
    pub user: String,
    /// CHAP secret. Stored because LIO needs it in clear; the management
    /// endpoint's roles decide who may read it.
    pub secret: String,
    /// Mutual CHAP: the user name the target answers with (with
    /// `mutual_secret`, or neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_user: Option<String>,
    /// Mutual CHAP: the target's secret; must differ from `secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_secret: Option<String>,
}

/// A host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Host {
    /// Name (the key).
    pub name: String,
    /// iSCSI initiator names (sorted).
    #[serde(default)]
    pub iqns: Vec<String>,
    /// NVMe host NQNs (sorted).
    #[serde(default)]
    pub nqns: Vec<String>,
    /// CHAP credentials for iSCSI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap: Option<Chap>,
}

/// A host group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostGroup {
    /// Name (the key).
    pub name: String,
    /// Member hosts (sorted).
    #[serde(default)]
    pub hosts: Vec<String>,
}

/// A floating IP address that moves with its owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FloatingIp {
    /// Name (the key).
    pub name: String,
    /// Address and prefix.
    pub address: IfAddr,
    /// Front-end interface.
    pub interface: String,
    /// Home controller.
    pub home: String,
    /// Current owner.
    pub owner: String,
    /// Cluster epoch under which `owner` was recorded.
    #[serde(default)]
    pub epoch: u64,
}

/// Role of a management user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything.
    Admin,
    /// Reads only.
    ReadOnly,
}

/// A management user.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// Login name (the key).
    pub name: String,
    /// Argon2id hash in PHC string form.
    pub password_hash: String,
    /// Role.
    pub role: Role,
}

/// Which events count as critical for fencing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FencingPolicy {
    /// Loss of both interconnect links.
    pub interconnect_loss: bool,
    /// Loss of our own disk heartbeat writes.
    pub disk_heartbeat_loss: bool,
    /// Loss of the shelf.
    pub shelf_loss: bool,
    /// A service that stops answering its watchdog.
    pub service_hang: bool,
}

impl Default for FencingPolicy {
    fn default() -> Self {
        FencingPolicy {
            interconnect_loss: false,
            disk_heartbeat_loss: true,
            shelf_loss: true,
            service_hang: true,
        }
    }
}

/// The settings singleton (timings in milliseconds; design brief 4.2-4.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Interconnect heartbeat interval.
    pub hb_interval_ms: u64,
    /// Interconnect silence before the partner is suspected.
    pub ic_timeout_ms: u64,
    /// Disk heartbeat write interval.
    pub disk_interval_ms: u64,
    /// Frozen disk counter before the partner is declared dead.
    pub disk_timeout_ms: u64,
    /// Watchdog timeout of each controller.
    pub watchdog_timeout_ms: u64,
    /// Fencing policy.
    pub fencing: FencingPolicy,
    /// Give pools back automatically when the partner returns.
    pub auto_failback: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            hb_interval_ms: 100,
            ic_timeout_ms: 1000,
            disk_interval_ms: 200,
            disk_timeout_ms: 15_000,
            watchdog_timeout_ms: 10_000,
            fencing: FencingPolicy::default(),
            auto_failback: false,
        }
    }
}

/// One object of any kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    /// The cluster singleton.
    Cluster(Cluster),
    /// A controller.
    Controller(Controller),
    /// A disk.
    Disk(Disk),
    /// A pool.
    Pool(Pool),
    /// A volume.
    Volume(Volume),
    /// An export.
    Export(Export),
    /// A host.
    Host(Host),
    /// A host group.
    HostGroup(HostGroup),
    /// A floating IP.
    FloatingIp(FloatingIp),
    /// A user.
    User(User),
    /// The settings singleton.
    Settings(Settings),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::Cluster(_) => Kind::Cluster,
            Object::Controller(_) => Kind::Controller,
            Object::Disk(_) => Kind::Disk,
            Object::Pool(_) => Kind::Pool,
            Object::Volume(_) => Kind::Volume,
            Object::Export(_) => Kind::Export,
            Object::Host(_) => Kind::Host,
            Object::HostGroup(_) => Kind::HostGroup,
            Object::FloatingIp(_) => Kind::FloatingIp,
            Object::User(_) => Kind::User,
            Object::Settings(_) => Kind::Settings,
        }
    }

    /// The object's key within its kind.
    pub fn key(&self) -> &str {
        match self {
            Object::Cluster(_) => "cluster",
            Object::Settings(_) => "settings",
            Object::Controller(c) => &c.id,
            Object::Disk(d) => &d.wwn,
            Object::Pool(p) => &p.name,
            Object::Volume(v) => &v.name,
            Object::Export(e) => &e.name,
            Object::Host(h) => &h.name,
            Object::HostGroup(g) => &g.name,
            Object::FloatingIp(f) => &f.name,
            Object::User(u) => &u.name,
        }
    }

    /// The object as JSON (its body, without the kind).
    pub fn to_json(&self) -> serde_json::Value {
        let r = match self {
            Object::Cluster(x) => serde_json::to_value(x),
            Object::Controller(x) => serde_json::to_value(x),
            Object::Disk(x) => serde_json::to_value(x),
            Object::Pool(x) => serde_json::to_value(x),
            Object::Volume(x) => serde_json::to_value(x),
            Object::Export(x) => serde_json::to_value(x),
            Object::Host(x) => serde_json::to_value(x),
            Object::HostGroup(x) => serde_json::to_value(x),
            Object::FloatingIp(x) => serde_json::to_value(x),
            Object::User(x) => serde_json::to_value(x),
            Object::Settings(x) => serde_json::to_value(x),
        };
        // Serialising these plain structs cannot fail (no maps with
        // non-string keys, no failing Serialize impls).
        r.unwrap_or(serde_json::Value::Null)
    }

    /// Parses the body of an object of `kind`. The error carries the path of
    /// the offending field inside the body ("size", "chap.secret").
    pub fn from_json(kind: Kind, body: &serde_json::Value) -> Result<Object, (String, String)> {
        fn de<T: serde::de::DeserializeOwned>(
            v: &serde_json::Value,
        ) -> Result<T, (String, String)> {
            serde_path_to_error::deserialize(v).map_err(|e| {
                let path = e.path().to_string();
                let path = if path == "." { String::new() } else { path };
                (path, e.into_inner().to_string())
            })
        }
        Ok(match kind {
            Kind::Cluster => Object::Cluster(de(body)?),
            Kind::Controller => Object::Controller(de(body)?),
            Kind::Disk => Object::Disk(de(body)?),
            Kind::Pool => Object::Pool(de(body)?),
            Kind::Volume => Object::Volume(de(body)?),
            Kind::Export => Object::Export(de(body)?),
            Kind::Host => Object::Host(de(body)?),
            Kind::HostGroup => Object::HostGroup(de(body)?),
            Kind::FloatingIp => Object::FloatingIp(de(body)?),
            Kind::User => Object::User(de(body)?),
            Kind::Settings => Object::Settings(de(body)?),
        })
    }
}

/// Why a state in JSON form could not be read ([`Config::from_json`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {reason}")]
pub struct ReadError {
    /// Where: the kind, the index in its list and the field
    /// ("volume[3].size"); empty for the whole value.
    pub at: String,
    /// What is wrong there.
    pub reason: String,
}

/// The whole desired state: one sorted map per kind, so iteration order (and
/// therefore the digest) never depends on insertion order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    /// The cluster singleton, once set.
    pub cluster: Option<Cluster>,
    /// Controllers by id.
    pub controllers: BTreeMap<String, Controller>,
    /// Disks by WWN.
    pub disks: BTreeMap<String, Disk>,
    /// Pools by name.
    pub pools: BTreeMap<String, Pool>,
    /// Volumes by name.
    pub volumes: BTreeMap<String, Volume>,
    /// Exports by name.
    pub exports: BTreeMap<String, Export>,
    /// Hosts by name.
    pub hosts: BTreeMap<String, Host>,
    /// Host groups by name.
    pub host_groups: BTreeMap<String, HostGroup>,
    /// Floating IPs by name.
    pub floating_ips: BTreeMap<String, FloatingIp>,
    /// Users by name.
    pub users: BTreeMap<String, User>,
    /// The settings singleton, once set.
    pub settings: Option<Settings>,
}

/// The per-kind access of [`Config`], generated from one table of the
/// kinds kept in maps (variant, map field, key field) so that a new kind
/// is added in one place; the two singletons are spelled out.
macro_rules! config_access {
    ($(($kind:ident, $map:ident, $key:ident)),* $(,)?) => {
        impl Config {
            /// Looks an object up.
            pub fn get(&self, kind: Kind, key: &str) -> Option<Object> {
                match kind {
                    Kind::Cluster => self
                        .cluster
                        .clone()
                        .filter(|_| key == "cluster")
                        .map(Object::Cluster),
                    Kind::Settings => self
                        .settings
                        .clone()
                        .filter(|_| key == "settings")
                        .map(Object::Settings),
                    $(Kind::$kind => self.$map.get(key).cloned().map(Object::$kind),)*
                }
            }

            /// True when the object exists.
            pub fn contains(&self, kind: Kind, key: &str) -> bool {
                match kind {
                    Kind::Cluster => self.cluster.is_some() && key == "cluster",
                    Kind::Settings => self.settings.is_some() && key == "settings",
                    $(Kind::$kind => self.$map.contains_key(key),)*
                }
            }

            /// Inserts or replaces an object.
            pub fn put(&mut self, obj: Object) {
                match obj {
                    Object::Cluster(x) => self.cluster = Some(x),
                    Object::Settings(x) => self.settings = Some(x),
                    $(Object::$kind(x) => {
                        self.$map.insert(x.$key.clone(), x);
                    })*
                }
            }

            /// Removes an object; returns whether it existed.
            pub fn remove(&mut self, kind: Kind, key: &str) -> bool {
                match kind {
                    Kind::Cluster => key == "cluster" && self.cluster.take().is_some(),
                    Kind::Settings => key == "settings" && self.settings.take().is_some(),
                    $(Kind::$kind => self.$map.remove(key).is_some(),)*
                }
            }

            /// Every object of one kind, sorted by key.
            pub fn objects(&self, kind: Kind) -> Vec<Object> {
                match kind {
                    Kind::Cluster => self.cluster.iter().cloned().map(Object::Cluster).collect(),
                    Kind::Settings => self.settings.iter().cloned().map(Object::Settings).collect(),
                    $(Kind::$kind => self.$map.values().cloned().map(Object::$kind).collect(),)*
                }
            }
        }
    };
}

config_access!(
    (Controller, controllers, id),
    (Disk, disks, wwn),
    (Pool, pools, name),
    (Volume, volumes, name),
    (Export, exports, name),
    (Host, hosts, name),
    (HostGroup, host_groups, name),
    (FloatingIp, floating_ips, name),
    (User, users, name),
);

impl Config {
    /// Reads the state back from its JSON form ([`Config::to_json`], the
    /// `config` member of a `config.get` reply; one kind, or one object,
    /// as `config.get` with `kind` and `name` answers). As strict as the
    /// model: a member that names no kind, or an object that does not
    /// parse, is an error.
    pub fn from_json(v: &serde_json::Value) -> Result<Config, ReadError> {
        let serde_json::Value::Object(m) = v else {
            return Err(ReadError {
                at: String::new(),
                reason: "expected an object of kinds".into(),
            });
        };
        let mut cfg = Config::default();
        for (name, body) in m {
            let kind = Kind::parse(name).ok_or_else(|| ReadError {
                at: name.clone(),
                reason: "not a kind of object".into(),
            })?;
            let items: Vec<(String, &serde_json::Value)> = match body {
                serde_json::Value::Null => Vec::new(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .enumerate()
                    .map(|(i, o)| (format!("{kind}[{i}]"), o))
                    .collect(),
                o => vec![(kind.to_string(), o)],
            };
            for (at, body) in items {
                let obj = Object::from_json(kind, body).map_err(|(path, reason)| ReadError {
                    at: if path.is_empty() {
                        at
                    } else {
                        format!("{at}.{path}")
                    },
                    reason,
                })?;
                cfg.put(obj);
            }
        }
        Ok(cfg)
    }

    /// One page of [`Config::to_json`]: every selected kind present (an
    /// empty array, or a null singleton), then the objects in kind order
    /// ([`Kind::ALL`]) and key order after `after` (a cursor `kind/key`),
    /// until their JSON would pass `budget` bytes (at least one object per
    /// page). The cursor of the page's last object when more follow.
    pub fn to_json_page(
        &self,
        only: Option<Kind>,
        after: Option<(Kind, &str)>,
        budget: usize,
    ) -> (serde_json::Value, Option<String>) {
        let kinds: Vec<Kind> = Kind::ALL
            .into_iter()
            .filter(|k| only.is_none_or(|o| o == *k))
            .collect();
        let mut m = serde_json::Map::new();
        for kind in &kinds {
            let empty = if kind.singleton_key().is_some() {
                serde_json::Value::Null
            } else {
                serde_json::Value::Array(Vec::new())
            };
            m.insert(kind.as_str().to_string(), empty);
        }
        let start = after.map_or(0, |(k, _)| {
            kinds.iter().position(|x| *x == k).unwrap_or(kinds.len())
        });
        let (mut used, mut last): (usize, Option<(Kind, String)>) = (0, None);
        for (i, kind) in kinds.iter().enumerate().skip(start) {
            for obj in self.objects(*kind) {
                if let Some((k, key)) = after {
                    if i == start && k == *kind && obj.key() <= key {
                        continue;
                    }
                }
                let v = obj.to_json();
                let size = serde_json::to_string(&v).map_or(0, |t| t.len());
                if last.is_some() && used.saturating_add(size) > budget {
                    let next = last.map(|(k, key)| format!("{k}/{key}"));
                    return (serde_json::Value::Object(m), next);
                }
                used = used.saturating_add(size);
                last = Some((*kind, obj.key().to_string()));
                match m.get_mut(kind.as_str()) {
                    Some(serde_json::Value::Array(a)) => a.push(v),
                    Some(slot) => *slot = v,
                    None => {}
                }
            }
        }
        (serde_json::Value::Object(m), None)
    }

    /// The state as JSON: `{ "cluster": {...}, "volume": [...], ... }`, or
    /// only one kind.
    pub fn to_json(&self, only: Option<Kind>) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for kind in Kind::ALL {
            if only.is_some_and(|k| k != kind) {
                continue;
            }
            let objs: Vec<serde_json::Value> =
                self.objects(kind).iter().map(Object::to_json).collect();
            let v = if kind.singleton_key().is_some() {
                objs.into_iter().next().unwrap_or(serde_json::Value::Null)
            } else {
                serde_json::Value::Array(objs)
            };
            m.insert(kind.as_str().to_string(), v);
        }
        serde_json::Value::Object(m)
    }
}

/// What `Debug` shows instead of a secret: logs and panic messages must
/// never carry one.
const REDACTED: &str = "(redacted)";

impl std::fmt::Debug for Chap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chap")
            .field("user", &self.user)
            .field("secret", &REDACTED)
            .field("mutual_user", &self.mutual_user)
            .field(
                "mutual_secret",
                &self.mutual_secret.as_ref().map(|_| REDACTED),
            )
            .finish()
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("name", &self.name)
            .field("password_hash", &REDACTED)
            .field("role", &self.role)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Config {
        let mut c = Config::default();
        for (kind, body) in [
            (
                Kind::Cluster,
                json!({"id": "5e1f0c1e-0000-4000-8000-000000000001", "epoch": 2, "secret_ref": "k"}),
            ),
            (
                Kind::Controller,
                json!({"id": "A", "name": "a", "interconnect": ["10.51.0.1/24"],
                       "management": "192.0.2.1/24", "portals": ["10.50.0.11/24"]}),
            ),
            (
                Kind::Volume,
                json!({"name": "v1", "pool": "p1", "size": "1GiB", "serial": "ab01", "wwn": "6001405ab01",
                       "nguid": "3c8d2f645b0e4a7d9f216d1e0b7a4c11",
                       "uuid": "3c8d2f64-5b0e-4a7d-9f21-6d1e0b7a4c11", "read_only": true}),
            ),
            (Kind::HostGroup, json!({"name": "g1", "hosts": ["h1"]})),
            (
                Kind::Settings,
                serde_json::to_value(Settings::default()).unwrap_or_default(),
            ),
        ] {
            match Object::from_json(kind, &body) {
                Ok(o) => c.put(o),
                Err(e) => panic!("{kind}: {e:?}"),
            }
        }
        c
    }

    #[test]
    fn from_json_reads_back_what_to_json_writes() {
        let c = sample();
        assert_eq!(Config::from_json(&c.to_json(None)), Ok(c.clone()));
        // One kind, and one object as `config.get {kind, name}` answers.
        let only = Config::from_json(&c.to_json(Some(Kind::Volume)));
        assert_eq!(only.map(|o| o.volumes), Ok(c.volumes.clone()));
        let one = json!({"volume": c.volumes["v1"].clone()});
        let one = Config::from_json(&one);
        assert_eq!(one.map(|o| o.volumes), Ok(c.volumes));
    }

    #[test]
    fn from_json_is_as_strict_as_the_model() {
        let mut v = sample().to_json(None);
        v["volume"][0]["colour"] = json!("red");
        let e = Config::from_json(&v);
        assert!(
            matches!(&e, Err(ReadError { at, .. }) if at == "volume[0].colour"),
            "{e:?}"
        );
        let mut v = sample().to_json(None);
        v["volume"][0]["size"] = json!("lots");
        let e = Config::from_json(&v);
        assert!(
            matches!(&e, Err(ReadError { at, .. }) if at == "volume[0].size"),
            "{e:?}"
        );
        let e = Config::from_json(&json!({"volumes": []}));
        assert!(
            matches!(&e, Err(ReadError { at, .. }) if at == "volumes"),
            "{e:?}"
        );
        assert!(Config::from_json(&serde_json::Value::Null).is_err());
    }

    /// Issue 16 point 7: no `Debug` shows a secret.
    #[test]
    fn debug_hides_secrets() {
        let c = Chap {
            user: "u1".into(),
            secret: "0123456789abcdef".into(),
            mutual_user: Some("t1".into()),
            mutual_secret: Some("fedcba9876543210".into()),
        };
        let u = User {
            name: "admin".into(),
            password_hash: "$argon2id$v=19$secret".into(),
            role: Role::Admin,
        };
        let text = format!("{c:?} {u:?}");
        for s in ["0123456789abcdef", "fedcba9876543210", "argon2id"] {
            assert!(!text.contains(s), "{text}");
        }
        assert!(text.contains("u1") && text.contains("admin"), "{text}");
    }

    #[test]
    fn pages_walk_every_object_once_and_join_to_the_whole_state() {
        let mut cfg = Config::default();
        for i in 0..40 {
            let v = json!({"name": format!("v{i:02}"), "pool": "p", "size": "1G",
                "serial": "0123456789abcdef", "wwn": "w", "nguid": "n", "uuid": "u"});
            cfg.put(Object::from_json(Kind::Volume, &v).unwrap());
            let h = json!({"name": format!("h{i:02}"), "iqns": []});
            cfg.put(Object::from_json(Kind::Host, &h).unwrap());
        }
        for only in [None, Some(Kind::Volume), Some(Kind::Pool)] {
            let mut joined: Option<serde_json::Value> = None;
            let mut after: Option<String> = None;
            let mut pages = 0;
            loop {
                let cursor = after.as_deref().map(|c| {
                    let (k, key) = c.split_once('/').unwrap();
                    (Kind::parse(k).unwrap(), key)
                });
                let (page, next) = cfg.to_json_page(only, cursor, 1000);
                pages += 1;
                match &mut joined {
                    None => joined = Some(page),
                    Some(j) => {
                        for (k, v) in page.as_object().unwrap() {
                            match (j.get_mut(k).unwrap(), v) {
                                (serde_json::Value::Array(a), serde_json::Value::Array(b)) => {
                                    a.extend(b.iter().cloned())
                                }
                                (_, serde_json::Value::Null) => {}
                                (slot, v) => *slot = v.clone(),
                            }
                        }
                    }
                }
                match next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            assert_eq!(joined.unwrap(), cfg.to_json(only), "{only:?}");
            // 80 objects of about 130 bytes in pages of 1000 bytes.
            if only.is_none() {
                assert!(pages > 5, "{pages} pages");
            }
        }
        // One object larger than the budget still makes a page.
        let (page, next) = cfg.to_json_page(Some(Kind::Volume), None, 1);
        assert_eq!(page["volume"].as_array().map(Vec::len), Some(1));
        assert_eq!(next.as_deref(), Some("volume/v00"));
    }
}
