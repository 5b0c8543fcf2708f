//! Typed model of the parts of the LIO and nvmet configfs trees that Duplex
//! manages. The same types describe the desired tree (built from the
//! configuration) and the observed one (read back from configfs), so the
//! planner only ever compares two values of one type.

use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The LIO HBA directory that holds every Duplex backstore. LIO names HBAs
/// `<plugin>_<number>`; a number of our own keeps foreign backstores
/// (targetcli's `iblock_0`) out of our way.
pub const HBA: &str = "iblock_100";
/// The TCP port of iSCSI portals.
pub const ISCSI_PORT: u16 = 3260;
/// The TCP port (`trsvcid`) of NVMe/TCP ports.
pub const NVME_PORT: u16 = 4420;
/// nvmet's default ANA group: always present on every port, never ours.
pub const DEFAULT_ANA_GROUP: u32 = 1;
/// nvmet's largest ANA group id (`NVMET_MAX_ANAGRPS`).
pub const MAX_ANA_GROUP: u32 = 128;
/// ALUA access type "implicit" (the target alone changes states).
pub const ALUA_IMPLICIT: u8 = 1;
/// The name prefix of Duplex's ALUA LU groups (`target/core/alua/lu_gps`):
/// one per pool, so one state write moves every volume of the pool.
pub const LU_GROUP_PREFIX: &str = "dxpool_";
/// LIO's LU group that every configured device joins first.
pub const DEFAULT_LU_GROUP: &str = "default_lu_gp";

/// Both configfs trees as far as Duplex manages them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tree {
    /// True when our HBA directory exists.
    pub hba: bool,
    /// True when the iSCSI fabric group `target/iscsi` exists (LIO makes it
    /// on `mkdir`, loading iscsi_target_mod).
    pub iscsi_fabric: bool,
    /// Our ALUA LU groups ([`LU_GROUP_PREFIX`]) by name, with their
    /// `lu_gp_id` (0 while unset).
    pub lu_groups: BTreeMap<String, u16>,
    /// iblock backstores in [`HBA`], by name (the volume name).
    pub backstores: BTreeMap<String, Backstore>,
    /// iSCSI targets by IQN.
    pub iscsi: BTreeMap<String, IscsiTarget>,
    /// nvmet subsystems by NQN.
    pub subsystems: BTreeMap<String, Subsystem>,
    /// nvmet ports by id.
    pub ports: BTreeMap<u16, Port>,
    /// nvmet host entries (`nvmet/hosts/<nqn>`).
    pub hosts: BTreeSet<String>,
}

impl Tree {
    /// Every block device an NVMe namespace exports, for lookups (a flip
    /// of a thousand volumes must not scan every namespace per volume).
    pub fn namespace_devices(&self) -> BTreeSet<&str> {
        self.subsystems
            .values()
            .flat_map(|s| s.namespaces.values())
            .map(|ns| ns.device.as_str())
            .collect()
    }
}

/// An iblock backstore (`target/core/<HBA>/<name>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Backstore {
    /// The block device (`udev_path`).
    pub dev: String,
    /// `wwn/vpd_unit_serial`; LIO derives the NAA LU WWN from it too.
    pub serial: String,
    /// `enable`: the device is configured (opened).
    pub enabled: bool,
    /// ALUA target port groups (`alua/<name>`), without `default_tg_pt_gp`.
    pub groups: BTreeMap<String, TgPtGp>,
    /// `alua_lu_gp`: the LU group the device belongs to; `None` for LIO's
    /// default group (or none, before the device is configured). A state
    /// written to one member's port group moves the port group with the
    /// same id on every member.
    pub lu_group: Option<String>,
}

/// An ALUA target port group of one backstore.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TgPtGp {
    /// `tg_pt_gp_id`.
    pub id: u16,
    /// `alua_access_type` (1 = implicit).
    pub access_type: u8,
    /// `alua_access_state`.
    pub state: AluaState,
}

/// ALUA primary target port asymmetric access states (SPC-4 6.37), with the
/// numbers LIO's `alua_access_state` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AluaState {
    /// Active/Optimized (0).
    ActiveOptimized,
    /// Active/Non-optimized (1).
    ActiveNonOptimized,
    /// Standby (2).
    Standby,
    /// Unavailable (3).
    Unavailable,
    /// Offline (14).
    Offline,
    /// Transitioning (15).
    Transitioning,
}

impl AluaState {
    /// The number written to `alua_access_state`.
    pub fn code(self) -> u8 {
        match self {
            AluaState::ActiveOptimized => 0,
            AluaState::ActiveNonOptimized => 1,
            AluaState::Standby => 2,
            AluaState::Unavailable => 3,
            AluaState::Offline => 14,
            AluaState::Transitioning => 15,
        }
    }

    /// The state for a number read from `alua_access_state`.
    pub fn from_code(code: u8) -> Option<AluaState> {
        [
            AluaState::ActiveOptimized,
            AluaState::ActiveNonOptimized,
            AluaState::Standby,
            AluaState::Unavailable,
            AluaState::Offline,
            AluaState::Transitioning,
        ]
        .into_iter()
        .find(|s| s.code() == code)
    }
}

/// An iSCSI target (`target/iscsi/<iqn>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct IscsiTarget {
    /// Target portal groups by tag.
    pub tpgs: BTreeMap<u16, Tpg>,
}

/// An iSCSI target portal group (`tpgt_<tag>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Tpg {
    /// `enable`.
    pub enabled: bool,
    /// `attrib/authentication`: CHAP required.
    pub authentication: bool,
    /// `attrib/generate_node_acls`: any initiator may log in (never ours).
    pub generate_node_acls: bool,
    /// Network portals (`np/<addr>:<port>`).
    pub portals: BTreeSet<String>,
    /// LUNs by number.
    pub luns: BTreeMap<u32, Lun>,
    /// Node ACLs by initiator IQN.
    pub acls: BTreeMap<String, Acl>,
}

/// A TPG LUN: a link to a backstore and its ALUA group membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Lun {
    /// The backstore name (in [`HBA`]).
    pub backstore: String,
    /// `alua_tg_pt_gp`: the group name.
    pub group: String,
}

/// A node ACL: one initiator, the LUNs it sees and its CHAP credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Acl {
    /// Mapped LUN number -> TPG LUN number.
    pub luns: BTreeMap<u32, u32>,
    /// CHAP credentials (`auth/`); `None` leaves them empty.
    pub chap: Option<Chap>,
    /// Mapped LUNs the initiator may only read (`lun_<n>/write_protect`,
    /// for read-only volumes). Left out of the JSON when empty, as it was
    /// before the field existed.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub write_protected: BTreeSet<u32>,
}

/// CHAP credentials of one initiator; mutual when the target's are set.
#[derive(Clone, Default, PartialEq, Eq, Serialize)]
pub struct Chap {
    /// `auth/userid`: the initiator's user name.
    pub user: String,
    /// `auth/password`: the initiator's secret.
    #[serde(skip_serializing)]
    pub secret: String,
    /// `auth/userid_mutual`: the target's user name (mutual CHAP).
    pub mutual_user: String,
    /// `auth/password_mutual`: the target's secret (mutual CHAP).
    #[serde(skip_serializing)]
    pub mutual_secret: String,
}

impl fmt::Debug for Chap {
    // Secrets stay out of logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chap")
            .field("user", &self.user)
            .field("mutual_user", &self.mutual_user)
            .finish_non_exhaustive()
    }
}

/// An nvmet subsystem (`nvmet/subsystems/<nqn>`). Equality leaves out
/// `serial` (see the field).
#[derive(Debug, Clone, Default, Eq, Serialize)]
pub struct Subsystem {
    /// `attr_allow_any_host` (never ours: deny by default).
    pub allow_any_host: bool,
    /// `attr_cntlid_min`.
    pub cntlid_min: u16,
    /// `attr_cntlid_max`.
    pub cntlid_max: u16,
    /// `attr_serial`, written at creation only (the kernel freezes it once
    /// a host has seen it), so it is not compared.
    pub serial: String,
    /// Namespaces by NSID.
    pub namespaces: BTreeMap<u32, Namespace>,
    /// `allowed_hosts` links (host NQNs).
    pub hosts: BTreeSet<String>,
}

impl PartialEq for Subsystem {
    // The serial is written at creation and never read back, so a tree
    // read from configfs equals the one that was applied.
    fn eq(&self, o: &Subsystem) -> bool {
        self.allow_any_host == o.allow_any_host
            && self.cntlid_min == o.cntlid_min
            && self.cntlid_max == o.cntlid_max
            && self.namespaces == o.namespaces
            && self.hosts == o.hosts
    }
}

/// An nvmet namespace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Namespace {
    /// `device_path`.
    pub device: String,
    /// `device_uuid`, lowercase with dashes.
    pub uuid: String,
    /// `device_nguid`, 32 lowercase hex digits (the kernel shows dashes).
    pub nguid: String,
    /// `ana_grpid`.
    pub ana_group: u32,
    /// `enable`.
    pub enabled: bool,
}

/// An nvmet port (`nvmet/ports/<id>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Port {
    /// `addr_trtype` (`tcp`).
    pub trtype: String,
    /// `addr_adrfam` (`ipv4`/`ipv6`).
    pub adrfam: String,
    /// `addr_traddr`.
    pub traddr: String,
    /// `addr_trsvcid`.
    pub trsvcid: String,
    /// `ana_groups/<id>/ana_state`, without the default group 1.
    pub ana: BTreeMap<u32, AnaState>,
    /// Linked subsystems (`subsystems/<nqn>`).
    pub subsystems: BTreeSet<String>,
}

impl Port {
    /// True when the address fields equal `other`'s.
    pub fn same_address(&self, other: &Port) -> bool {
        self.trtype == other.trtype
            && self.adrfam == other.adrfam
            && self.traddr == other.traddr
            && self.trsvcid == other.trsvcid
    }
}

/// NVMe ANA states as nvmet's `ana_state` spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AnaState {
    /// `optimized`.
    Optimized,
    /// `non-optimized`.
    NonOptimized,
    /// `inaccessible`.
    Inaccessible,
    /// `persistent-loss`.
    PersistentLoss,
    /// `change` (transitioning).
    Change,
}

impl AnaState {
    /// The word written to `ana_state`.
    pub fn word(self) -> &'static str {
        match self {
            AnaState::Optimized => "optimized",
            AnaState::NonOptimized => "non-optimized",
            AnaState::Inaccessible => "inaccessible",
            AnaState::PersistentLoss => "persistent-loss",
            AnaState::Change => "change",
        }
    }

    /// Parses a word read from `ana_state`.
    pub fn parse(s: &str) -> Option<AnaState> {
        [
            AnaState::Optimized,
            AnaState::NonOptimized,
            AnaState::Inaccessible,
            AnaState::PersistentLoss,
            AnaState::Change,
        ]
        .into_iter()
        .find(|a| a.word() == s)
    }
}

/// The access state of a pool's volumes through this controller, as
/// `target.set_access_state` takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessState {
    /// The owner: ALUA Active/Optimized, ANA optimized.
    Active,
    /// A path that can serve I/O but not best: Active/Non-optimized, non-optimized.
    NonOptimized,
    /// The partner: ALUA Standby, ANA inaccessible.
    Standby,
    /// A change in progress: ALUA Transitioning, ANA change.
    Transitioning,
}

impl AccessState {
    /// The ALUA state for this access state.
    pub fn alua(self) -> AluaState {
        match self {
            AccessState::Active => AluaState::ActiveOptimized,
            AccessState::NonOptimized => AluaState::ActiveNonOptimized,
            AccessState::Standby => AluaState::Standby,
            AccessState::Transitioning => AluaState::Transitioning,
        }
    }

    /// The ANA state for this access state.
    pub fn ana(self) -> AnaState {
        match self {
            AccessState::Active => AnaState::Optimized,
            AccessState::NonOptimized => AnaState::NonOptimized,
            AccessState::Standby => AnaState::Inaccessible,
            AccessState::Transitioning => AnaState::Change,
        }
    }
}

/// Configfs paths, relative to the configfs root, of every object kind.
pub mod path {
    use super::HBA;

    /// `target/core/<HBA>`.
    pub fn hba() -> String {
        format!("target/core/{HBA}")
    }
    /// A backstore directory.
    pub fn backstore(name: &str) -> String {
        format!("target/core/{HBA}/{name}")
    }
    /// An ALUA LU group.
    pub fn lu_group(name: &str) -> String {
        format!("target/core/alua/lu_gps/{name}")
    }
    /// A backstore's ALUA group.
    pub fn tg_pt_gp(bs: &str, gp: &str) -> String {
        format!("target/core/{HBA}/{bs}/alua/{gp}")
    }
    /// The iSCSI fabric group.
    pub fn iscsi_fabric() -> String {
        "target/iscsi".into()
    }
    /// An iSCSI target.
    pub fn target(iqn: &str) -> String {
        format!("target/iscsi/{iqn}")
    }
    /// A TPG.
    pub fn tpg(iqn: &str, tag: u16) -> String {
        format!("target/iscsi/{iqn}/tpgt_{tag}")
    }
    /// A TPG LUN.
    pub fn lun(iqn: &str, tag: u16, lun: u32) -> String {
        format!("{}/lun/lun_{lun}", tpg(iqn, tag))
    }
    /// The link inside a TPG LUN (named after the backstore, like targetcli).
    pub fn lun_link(iqn: &str, tag: u16, lun: u32, bs: &str) -> String {
        format!("{}/{bs}", self::lun(iqn, tag, lun))
    }
    /// A network portal.
    pub fn portal(iqn: &str, tag: u16, portal: &str) -> String {
        format!("{}/np/{portal}", tpg(iqn, tag))
    }
    /// A node ACL.
    pub fn acl(iqn: &str, tag: u16, initiator: &str) -> String {
        format!("{}/acls/{initiator}", tpg(iqn, tag))
    }
    /// A mapped LUN of a node ACL.
    pub fn mapped_lun(iqn: &str, tag: u16, initiator: &str, mlun: u32) -> String {
        format!("{}/lun_{mlun}", acl(iqn, tag, initiator))
    }
    /// The link inside a mapped LUN.
    pub fn mapped_lun_link(iqn: &str, tag: u16, initiator: &str, mlun: u32) -> String {
        format!("{}/lun", mapped_lun(iqn, tag, initiator, mlun))
    }
    /// An nvmet subsystem.
    pub fn subsystem(nqn: &str) -> String {
        format!("nvmet/subsystems/{nqn}")
    }
    /// An nvmet namespace.
    pub fn namespace(nqn: &str, nsid: u32) -> String {
        format!("nvmet/subsystems/{nqn}/namespaces/{nsid}")
    }
    /// An allowed-host link of a subsystem.
    pub fn allowed_host(nqn: &str, host: &str) -> String {
        format!("nvmet/subsystems/{nqn}/allowed_hosts/{host}")
    }
    /// An nvmet host entry.
    pub fn host(host: &str) -> String {
        format!("nvmet/hosts/{host}")
    }
    /// An nvmet port.
    pub fn port(id: u16) -> String {
        format!("nvmet/ports/{id}")
    }
    /// An ANA group of a port.
    pub fn ana_group(id: u16, grp: u32) -> String {
        format!("nvmet/ports/{id}/ana_groups/{grp}")
    }
    /// A subsystem link of a port.
    pub fn port_subsystem(id: u16, nqn: &str) -> String {
        format!("nvmet/ports/{id}/subsystems/{nqn}")
    }
}

/// Normalises an NGUID or UUID as nvmet shows it: lowercase hex digits only.
pub fn hex_only(s: &str) -> String {
    s.chars()
        .filter(char::is_ascii_hexdigit)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}
