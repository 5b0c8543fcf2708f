//! An in-memory configfs with the kernel's rules, for tests and `--sim`.
//!
//! It is not a directory tree that accepts anything: `mkdir` works only
//! where LIO or nvmet define a group (and fills in the attributes and
//! default groups the kernel would), attributes reject what the kernel
//! rejects (a LUN needs an enabled backstore, an ALUA state needs a valid
//! group id and a configured device, a namespace's device cannot change
//! while it is enabled, a port cannot be re-addressed while it serves, hosts
//! cannot be listed while any host is allowed...), `rmdir` of a non-empty
//! group fails with `ENOTEMPTY` and of a linked item with `EBUSY`.
//! Attributes read back in the kernel's formats.

use super::{EntryKind, TargetBackend};
use crate::core::desired::DeviceState;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, ErrorKind};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Entry {
    /// A group; `default` groups come with their parent and cannot go.
    Dir {
        default: bool,
    },
    File(String),
    Link(String),
}

/// The simulated configfs.
#[derive(Debug, Clone)]
pub struct SimBackend {
    entries: BTreeMap<String, Entry>,
    devices: BTreeSet<String>,
    /// Devices that exist but serve no data (error tables).
    unbacked: BTreeSet<String>,
    /// Persistent reservation state per device directory.
    pr: BTreeMap<String, SimPr>,
    /// The addresses this controller has, when a test sets them: a portal
    /// on another address cannot bind, as in the kernel.
    local_addrs: Option<BTreeSet<std::net::IpAddr>>,
    ops: u64,
}

/// One device's SCSI-3 reservation state, as LIO keeps it in memory.
#[derive(Debug, Clone, Default)]
struct SimPr {
    generation: u32,
    aptpl: bool,
    regs: Vec<SimReg>,
    /// Index into `regs` of the holder and the reservation type.
    holder: Option<(usize, u8)>,
    /// Registrations written to `res_aptpl_metadata`, waiting for the
    /// matching ACL mapping (`core_scsi3_check_aptpl_registration`).
    pending: Vec<BTreeMap<String, String>>,
}

/// One registration: the I_T nexus (ACL, ISID, the TPG and LUN it came
/// through) and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SimReg {
    initiator: String,
    isid: String,
    key: u64,
    generation: u32,
    /// The target's IQN and the TPG tag.
    iqn: String,
    tpgt: u16,
    mapped_lun: u32,
    target_lun: u32,
}

fn pr_type_name(t: u8) -> &'static str {
    match t {
        1 => "Write Exclusive Access",
        3 => "Exclusive Access",
        5 => "Write Exclusive Access, Registrants Only",
        6 => "Exclusive Access, Registrants Only",
        7 => "Write Exclusive Access, All Registrants",
        8 => "Exclusive Access, All Registrants",
        _ => "Unknown SPC-3 PR Type",
    }
}

fn err(kind: ErrorKind, msg: impl Into<String>) -> io::Error {
    io::Error::new(kind, msg.into())
}
fn einval(msg: impl Into<String>) -> io::Error {
    err(ErrorKind::InvalidInput, format!("EINVAL: {}", msg.into()))
}

fn parent(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(a, _)| a)
}
fn base(p: &str) -> &str {
    p.rsplit_once('/').map_or(p, |(_, b)| b)
}
fn num_suffix(name: &str, prefix: &str) -> Option<u32> {
    name.strip_prefix(prefix)?.parse().ok()
}

/// What a directory is, by position in the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    CoreRoot,
    LuGps,
    LuGp,
    Hba,
    Device,
    AluaDir,
    TgPtGp,
    IscsiRoot,
    Target,
    Tpg,
    LunDir,
    Lun,
    NpDir,
    AclDir,
    Acl,
    MappedLun,
    Subsystems,
    Subsystem,
    NamespacesDir,
    Namespace,
    AllowedHosts,
    Hosts,
    Ports,
    Port,
    AnaGroups,
    AnaGroup,
    PortSubsystems,
    Other,
}

fn classify(p: &str) -> Class {
    let c: Vec<&str> = p.split('/').collect();
    match c.as_slice() {
        ["target", "core"] => Class::CoreRoot,
        ["target", "core", "alua", "lu_gps"] => Class::LuGps,
        ["target", "core", "alua", "lu_gps", _] => Class::LuGp,
        ["target", "core", "alua", ..] => Class::Other,
        ["target", "core", _] => Class::Hba,
        ["target", "core", _, _] => Class::Device,
        ["target", "core", _, _, "alua"] => Class::AluaDir,
        ["target", "core", _, _, "alua", _] => Class::TgPtGp,
        ["target", "iscsi"] => Class::IscsiRoot,
        ["target", "iscsi", _] => Class::Target,
        ["target", "iscsi", _, _] => Class::Tpg,
        ["target", "iscsi", _, _, "lun"] => Class::LunDir,
        ["target", "iscsi", _, _, "lun", _] => Class::Lun,
        ["target", "iscsi", _, _, "np"] => Class::NpDir,
        ["target", "iscsi", _, _, "acls"] => Class::AclDir,
        ["target", "iscsi", _, _, "acls", _] => Class::Acl,
        ["target", "iscsi", _, _, "acls", _, m] if m.starts_with("lun_") => Class::MappedLun,
        ["nvmet", "subsystems"] => Class::Subsystems,
        ["nvmet", "subsystems", _] => Class::Subsystem,
        ["nvmet", "subsystems", _, "namespaces"] => Class::NamespacesDir,
        ["nvmet", "subsystems", _, "namespaces", _] => Class::Namespace,
        ["nvmet", "subsystems", _, "allowed_hosts"] => Class::AllowedHosts,
        ["nvmet", "hosts"] => Class::Hosts,
        ["nvmet", "ports"] => Class::Ports,
        ["nvmet", "ports", _] => Class::Port,
        ["nvmet", "ports", _, "ana_groups"] => Class::AnaGroups,
        ["nvmet", "ports", _, "ana_groups", _] => Class::AnaGroup,
        ["nvmet", "ports", _, "subsystems"] => Class::PortSubsystems,
        _ => Class::Other,
    }
}

/// LIO's default LU group, which every configured device joins.
const DEFAULT_LU_GP: &str = "target/core/alua/lu_gps/default_lu_gp";
const ZERO_UUID: &str = "00000000-0000-0000-0000-000000000000";

impl Default for SimBackend {
    fn default() -> Self {
        SimBackend::new()
    }
}

impl SimBackend {
    /// A configfs with target_core_mod, iscsi_target_mod, nvmet and
    /// nvmet-tcp loaded, and no block devices.
    pub fn new() -> SimBackend {
        let mut s = SimBackend {
            entries: BTreeMap::new(),
            devices: BTreeSet::new(),
            unbacked: BTreeSet::new(),
            pr: BTreeMap::new(),
            local_addrs: None,
            ops: 0,
        };
        for d in [
            "target",
            "target/core",
            "target/core/alua",
            "target/core/alua/lu_gps",
            DEFAULT_LU_GP,
            "nvmet",
            "nvmet/subsystems",
            "nvmet/ports",
            "nvmet/hosts",
        ] {
            s.entries.insert(d.into(), Entry::Dir { default: true });
        }
        s.add_files(DEFAULT_LU_GP, &[("lu_gp_id", "0"), ("members", "")]);
        // LIO's default when /etc/target exists.
        s.set("target/dbroot", "/etc/target");
        s
    }

    /// Makes a block device exist (a pool imported here).
    pub fn add_device(&mut self, dev: &str) {
        self.devices.insert(dev.to_string());
    }

    /// Makes a device serve no data (pool-manager's `error` table where the
    /// pool is not imported) or serve it again.
    pub fn set_backed(&mut self, dev: &str, backed: bool) {
        if backed {
            self.unbacked.remove(dev);
        } else {
            self.unbacked.insert(dev.to_string());
        }
    }

    /// Makes a block device disappear.
    pub fn remove_device(&mut self, dev: &str) {
        self.devices.remove(dev);
    }

    /// Gives this controller only `addrs`: the first subsystem link of an
    /// nvmet port (which starts its listener) on any other address but the
    /// wildcard then fails to bind with EADDRNOTAVAIL, as in the kernel
    /// (LIO's iSCSI portals bind with IP_FREEBIND and are accepted). Until
    /// this is called every address binds.
    pub fn set_local_addresses(&mut self, addrs: &[std::net::IpAddr]) {
        self.local_addrs = Some(addrs.iter().copied().collect());
    }

    /// Calls that changed or tried to change something (mkdir, rmdir, write,
    /// symlink, unlink).
    pub fn ops(&self) -> u64 {
        self.ops
    }

    /// Every path, for tests that compare whole trees.
    pub fn paths(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    fn children(&self, dir: &str) -> impl Iterator<Item = (&String, &Entry)> {
        let prefix = format!("{dir}/");
        let pl = prefix.len();
        self.entries
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .filter(move |(k, _)| !k[pl..].contains('/'))
    }

    fn file(&self, p: &str) -> Option<&str> {
        match self.entries.get(p) {
            Some(Entry::File(v)) => Some(v),
            _ => None,
        }
    }

    fn set(&mut self, p: &str, v: impl Into<String>) {
        self.entries.insert(p.to_string(), Entry::File(v.into()));
    }

    fn add_dir(&mut self, p: &str, default: bool) {
        self.entries.insert(p.to_string(), Entry::Dir { default });
    }

    fn add_files(&mut self, dir: &str, files: &[(&str, &str)]) {
        for (f, v) in files {
            self.set(&format!("{dir}/{f}"), *v);
        }
    }

    /// Links pointing at `p` or below it.
    fn linked_to(&self, p: &str) -> bool {
        let below = format!("{p}/");
        self.entries
            .values()
            .any(|e| matches!(e, Entry::Link(t) if t == p || t.starts_with(&below)))
    }

    fn dev_enabled(&self, dev: &str) -> bool {
        self.file(&format!("{dev}/enable")) == Some("1")
    }

    fn dev_exported(&self, dev: &str) -> bool {
        self.entries.iter().any(|(k, e)| {
            matches!(e, Entry::Link(t) if t == dev) && classify(parent(k)) == Class::Lun
        })
    }

    /// The backstore a TPG LUN links to.
    fn lun_dev(&self, lun: &str) -> Option<String> {
        self.children(lun).find_map(|(_, e)| match e {
            Entry::Link(t) => Some(t.clone()),
            _ => None,
        })
    }

    fn port_serving(&self, port: &str) -> bool {
        self.children(&format!("{port}/subsystems"))
            .next()
            .is_some()
    }

    /// The LU group a device is in: `None` before it is configured or
    /// after `NULL` was written.
    fn lu_gp_of(&self, dev: &str) -> Option<String> {
        let g = self.file(&format!("{dev}/.lu_gp")).unwrap_or("");
        (self.dev_enabled(dev) && !g.is_empty()).then(|| g.to_string())
    }

    /// Every device of an LU group (but LIO's default one), as `hba/dev`.
    fn lu_gp_members(&self, name: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(k, e)| matches!(e, Entry::File(v) if v == name) && base(k) == ".lu_gp")
            .map(|(k, _)| parent(k).to_string())
            .filter(|dev| classify(dev) == Class::Device && self.dev_enabled(dev))
            .collect()
    }

    /// LIO's LU group rule: a state set on one member's port group is set
    /// on the port group with the same id of every member of the group
    /// (not for the default group, whose members are unrelated).
    fn propagate_lu_group(&mut self, dev: &str, gp_dir: &str, state: u8) {
        let Some(lu) = self.lu_gp_of(dev).filter(|g| g != "default_lu_gp") else {
            return;
        };
        let id = self
            .file(&format!("{gp_dir}/tg_pt_gp_id"))
            .unwrap_or("")
            .to_string();
        let mut writes = Vec::new();
        for member in self.lu_gp_members(&lu) {
            for (gdir, _) in self.children(&format!("{member}/alua")) {
                if self.file(&format!("{gdir}/tg_pt_gp_id")) == Some(id.as_str()) {
                    writes.push(format!("{gdir}/alua_access_state"));
                }
            }
        }
        for w in writes {
            self.set(&w, state.to_string());
        }
    }

    fn do_mkdir(&mut self, p: &str) -> io::Result<()> {
        if self.entries.contains_key(p) {
            return Err(err(ErrorKind::AlreadyExists, format!("EEXIST: {p}")));
        }
        let par = parent(p);
        match self.entries.get(par) {
            Some(Entry::Dir { .. }) => {}
            Some(_) => return Err(err(ErrorKind::NotADirectory, format!("ENOTDIR: {par}"))),
            None => return Err(err(ErrorKind::NotFound, format!("ENOENT: {par}"))),
        }
        let name = base(p);
        let not_here = || {
            err(
                ErrorKind::PermissionDenied,
                format!("EPERM: no group can be made at {p}"),
            )
        };
        if par == "target" {
            // A fabric group: LIO loads the fabric module on mkdir.
            if name != "iscsi" {
                return Err(not_here());
            }
            self.add_dir(p, false);
            self.add_dir(&format!("{p}/discovery_auth"), true);
            self.set(
                &format!("{p}/lio_version"),
                "Datera Inc. iSCSI Target v4.1.0",
            );
            return Ok(());
        }
        match classify(par) {
            Class::CoreRoot => {
                let ok = ["iblock_", "fileio_", "pscsi_", "rd_mcp_"]
                    .iter()
                    .any(|pre| num_suffix(name, pre).is_some());
                if !ok {
                    return Err(einval(format!("HBA name {name} is not <plugin>_<number>")));
                }
                self.add_dir(p, false);
            }
            Class::Hba => {
                self.add_dir(p, false);
                for d in ["alua", "wwn", "attrib", "pr", "statistics"] {
                    self.add_dir(&format!("{p}/{d}"), true);
                }
                self.add_files(
                    p,
                    &[
                        ("control", ""),
                        ("udev_path", ""),
                        ("enable", "0"),
                        ("alias", ""),
                        // Read through `lu_gp_of`; `.lu_gp` holds the group.
                        ("alua_lu_gp", ""),
                        (".lu_gp", ""),
                    ],
                );
                self.set(&format!("{p}/wwn/vpd_unit_serial"), "");
                // Rendered from `pr` when read.
                for a in crate::core::pr::PR_ATTRS {
                    self.set(&format!("{p}/pr/{a}"), "");
                }
                self.set(&format!("{p}/pr/res_aptpl_metadata"), "");
                self.add_files(
                    &format!("{p}/attrib"),
                    &[("block_size", "512"), ("emulate_tpu", "0")],
                );
                let dg = format!("{p}/alua/default_tg_pt_gp");
                self.add_dir(&dg, true);
                self.add_files(
                    &dg,
                    &[
                        ("tg_pt_gp_id", "0"),
                        ("alua_access_type", "3"),
                        ("alua_access_state", "0"),
                        ("preferred", "0"),
                    ],
                );
            }
            Class::LuGps => {
                self.add_dir(p, false);
                // A new LU group has no valid id yet: it reads empty.
                self.add_files(p, &[("lu_gp_id", ""), ("members", "")]);
            }
            Class::AluaDir => {
                self.add_dir(p, false);
                // A new group has no valid id yet: it reads empty.
                self.add_files(
                    p,
                    &[
                        ("tg_pt_gp_id", ""),
                        ("alua_access_type", "3"),
                        ("alua_access_state", "0"),
                        ("preferred", "0"),
                        ("members", ""),
                    ],
                );
            }
            Class::IscsiRoot => {
                let ok = name.starts_with("iqn.")
                    || name.starts_with("eui.")
                    || name.starts_with("naa.");
                if !ok || name.len() > 223 {
                    return Err(einval(format!("{name} is not an iSCSI name")));
                }
                self.add_dir(p, false);
            }
            Class::Target => {
                if num_suffix(name, "tpgt_").is_none_or(|t| t == 0 || t > 0xffff) {
                    return Err(einval(format!("{name} is not tpgt_<1..65535>")));
                }
                self.add_dir(p, false);
                for d in ["attrib", "param", "auth", "lun", "np", "acls"] {
                    self.add_dir(&format!("{p}/{d}"), true);
                }
                self.set(&format!("{p}/enable"), "0");
                self.add_files(
                    &format!("{p}/attrib"),
                    &[
                        ("authentication", "1"),
                        ("generate_node_acls", "0"),
                        ("demo_mode_write_protect", "1"),
                        ("cache_dynamic_acls", "0"),
                    ],
                );
            }
            Class::LunDir => {
                if num_suffix(name, "lun_").is_none_or(|n| n > 16383) {
                    return Err(einval(format!("{name} is not lun_<0..16383>")));
                }
                self.add_dir(p, false);
                self.set(&format!("{p}/alua_tg_pt_gp"), "");
            }
            Class::NpDir => {
                let (addr, port) = name
                    .rsplit_once(':')
                    .ok_or_else(|| einval(format!("portal {name} has no port")))?;
                let addr = addr.trim_start_matches('[').trim_end_matches(']');
                // LIO binds its portals with IP_FREEBIND: an address the
                // controller does not have (yet) is accepted, and served
                // once it comes up.
                if addr.parse::<std::net::IpAddr>().is_err() || port.parse::<u16>().is_err() {
                    return Err(einval(format!("portal {name} is not <ip>:<port>")));
                }
                self.add_dir(p, false);
            }
            Class::AclDir => {
                if !(name.starts_with("iqn.")
                    || name.starts_with("eui.")
                    || name.starts_with("naa."))
                {
                    return Err(einval(format!("{name} is not an initiator name")));
                }
                self.add_dir(p, false);
                for d in ["auth", "attrib", "param"] {
                    self.add_dir(&format!("{p}/{d}"), true);
                }
                self.add_files(
                    &format!("{p}/auth"),
                    &[
                        ("userid", ""),
                        ("password", ""),
                        ("userid_mutual", ""),
                        ("password_mutual", ""),
                    ],
                );
            }
            Class::Acl => {
                if num_suffix(name, "lun_").is_none() {
                    return Err(not_here());
                }
                self.add_dir(p, false);
                self.set(&format!("{p}/write_protect"), "0");
            }
            Class::Subsystems => {
                if !name.starts_with("nqn.") || name.len() > 223 {
                    return Err(einval(format!("{name} is not an NQN")));
                }
                self.add_dir(p, false);
                self.add_dir(&format!("{p}/namespaces"), true);
                self.add_dir(&format!("{p}/allowed_hosts"), true);
                self.add_files(
                    p,
                    &[
                        ("attr_allow_any_host", "0"),
                        ("attr_cntlid_min", "1"),
                        ("attr_cntlid_max", "65519"),
                        ("attr_serial", "d2ee0bcd11a2b9c5"),
                        ("attr_model", "Linux"),
                    ],
                );
            }
            Class::NamespacesDir => {
                let nsid: u32 = name.parse().map_err(|_| einval(format!("nsid {name}")))?;
                if nsid == 0 || nsid == u32::MAX {
                    return Err(einval(format!("nsid {nsid} is reserved")));
                }
                self.add_dir(p, false);
                self.add_files(
                    p,
                    &[
                        ("device_path", ""),
                        ("device_uuid", ZERO_UUID),
                        ("device_nguid", ZERO_UUID),
                        ("ana_grpid", "1"),
                        ("enable", "0"),
                    ],
                );
            }
            Class::Hosts => self.add_dir(p, false),
            Class::Ports => {
                name.parse::<u16>()
                    .map_err(|_| einval(format!("port id {name}")))?;
                self.add_dir(p, false);
                for d in ["subsystems", "ana_groups", "referrals"] {
                    self.add_dir(&format!("{p}/{d}"), true);
                }
                self.add_dir(&format!("{p}/ana_groups/1"), true);
                self.set(&format!("{p}/ana_groups/1/ana_state"), "optimized");
                self.add_files(
                    p,
                    &[
                        ("addr_trtype", ""),
                        ("addr_adrfam", ""),
                        ("addr_traddr", ""),
                        ("addr_trsvcid", ""),
                    ],
                );
            }
            Class::AnaGroups => {
                let g: u32 = name
                    .parse()
                    .map_err(|_| einval(format!("ANA group {name}")))?;
                if g <= 1 || g > 128 {
                    return Err(einval(format!("ANA group {g} not in 2..=128")));
                }
                self.add_dir(p, false);
                // nvmet starts every non-default group inaccessible.
                self.set(&format!("{p}/ana_state"), "inaccessible");
            }
            _ => return Err(not_here()),
        }
        Ok(())
    }

    fn do_rmdir(&mut self, p: &str) -> io::Result<()> {
        match self.entries.get(p) {
            Some(Entry::Dir { default: false }) => {}
            Some(Entry::Dir { default: true }) => {
                return Err(err(
                    ErrorKind::PermissionDenied,
                    format!("EPERM: {p} is a default group"),
                ))
            }
            Some(_) => return Err(err(ErrorKind::NotADirectory, format!("ENOTDIR: {p}"))),
            None => return Err(err(ErrorKind::NotFound, format!("ENOENT: {p}"))),
        }
        let below = format!("{p}/");
        let busy_child = self
            .entries
            .range(below.clone()..)
            .take_while(|(k, _)| k.starts_with(&below))
            .any(|(_, e)| match e {
                Entry::Link(_) => true,
                // Only groups the user made count; default groups go along.
                Entry::Dir { default } => !default,
                Entry::File(_) => false,
            });
        if busy_child {
            return Err(err(ErrorKind::DirectoryNotEmpty, format!("ENOTEMPTY: {p}")));
        }
        if self.linked_to(p) {
            return Err(err(
                ErrorKind::ResourceBusy,
                format!("EBUSY: {p} is the target of a link"),
            ));
        }
        if classify(p) == Class::Device {
            self.pr.remove(p);
        }
        if classify(p) == Class::LuGp {
            // LIO moves the group's members back to its default group.
            for dev in self.lu_gp_members(base(p)) {
                self.set(&format!("{dev}/.lu_gp"), "default_lu_gp");
            }
        }
        let doomed: Vec<String> = self
            .entries
            .range(below.clone()..)
            .take_while(|(k, _)| k.starts_with(&below))
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.entries.remove(&k);
        }
        self.entries.remove(p);
        Ok(())
    }

    fn do_write(&mut self, p: &str, value: &str) -> io::Result<()> {
        let v = value.trim_end_matches('\n');
        match self.entries.get(p) {
            Some(Entry::File(_)) => {}
            Some(Entry::Dir { .. }) => {
                return Err(err(ErrorKind::IsADirectory, format!("EISDIR: {p}")))
            }
            Some(Entry::Link(_)) => return Err(einval(format!("{p} is a link"))),
            None => return Err(err(ErrorKind::NotFound, format!("ENOENT: {p}"))),
        }
        let dir = parent(p).to_string();
        let attr = base(p);
        let bit = |v: &str| -> io::Result<&'static str> {
            match v {
                "0" => Ok("0"),
                "1" => Ok("1"),
                _ => Err(einval(format!("{p}: {v} is not 0 or 1"))),
            }
        };
        match (classify(&dir), attr) {
            (Class::Other, "dbroot") if dir == "target" => {
                if self.lio_device_count() > 0 {
                    return Err(einval("db_root: cannot be changed because it's in use"));
                }
                if !v.starts_with('/') {
                    return Err(einval(format!("db_root: cannot open: {v}")));
                }
                self.set(p, v);
            }
            (Class::Other, "res_aptpl_metadata") if base(&dir) == "pr" => {
                let dev = parent(&dir).to_string();
                if classify(&dev) != Class::Device {
                    return Err(einval(format!("{p}: not a device")));
                }
                if self.dev_exported(&dev) {
                    return Err(einval(
                        "Unable to process APTPL metadata while active fabric exports exist",
                    ));
                }
                let fields: BTreeMap<String, String> = v
                    .split([',', '\n'])
                    .filter_map(|f| f.split_once('='))
                    .map(|(k, x)| (k.to_string(), x.to_string()))
                    .collect();
                let key = fields
                    .get("sa_res_key")
                    .and_then(|k| k.parse::<u64>().ok())
                    .unwrap_or(0);
                let holder = fields.get("res_holder").map(String::as_str) == Some("1");
                let rtype = fields
                    .get("res_type")
                    .and_then(|t| t.parse::<u8>().ok())
                    .unwrap_or(0);
                if !fields.contains_key("initiator_node")
                    || !fields.contains_key("target_node")
                    || key == 0
                    || (holder && rtype == 0)
                {
                    return Err(einval("Illegal parameters for APTPL registration"));
                }
                self.pr.entry(dev).or_default().pending.push(fields);
            }
            (Class::Device, "control") => {
                if self.dev_enabled(&dir) {
                    return Err(err(
                        ErrorKind::AlreadyExists,
                        "EEXIST: udev_path= while the device is configured",
                    ));
                }
                let path = v
                    .strip_prefix("udev_path=")
                    .ok_or_else(|| einval(format!("control: {v}")))?;
                self.set(&format!("{dir}/.ibd_udev_path"), path);
            }
            (Class::Device, "udev_path") => self.set(p, v),
            (Class::Device, "enable") => {
                if v != "1" {
                    return Err(einval("a device can only be enabled"));
                }
                if self.dev_enabled(&dir) {
                    return Err(err(ErrorKind::AlreadyExists, "EEXIST: already enabled"));
                }
                let dev = self
                    .file(&format!("{dir}/.ibd_udev_path"))
                    .unwrap_or("")
                    .to_string();
                if dev.is_empty() {
                    return Err(einval("enable before udev_path= was given"));
                }
                if !self.devices.contains(&dev) {
                    return Err(err(
                        ErrorKind::NotFound,
                        format!("ENOENT: block device {dev}"),
                    ));
                }
                self.set(p, "1");
                // Configuring a device makes its LU group member, in
                // LIO's default group.
                self.set(&format!("{dir}/.lu_gp"), "default_lu_gp");
            }
            (Class::Device, "alua_lu_gp") => {
                // Before `enable` LIO has no member to move and ignores it.
                if !self.dev_enabled(&dir) {
                    return Ok(());
                }
                if v == "NULL" {
                    self.set(&format!("{dir}/.lu_gp"), "");
                    return Ok(());
                }
                let gp = format!("target/core/alua/lu_gps/{v}");
                if self
                    .file(&format!("{gp}/lu_gp_id"))
                    .unwrap_or("")
                    .is_empty()
                {
                    return Err(err(
                        ErrorKind::NotFound,
                        format!("ENODEV: no LU group {v} with a valid id"),
                    ));
                }
                self.set(&format!("{dir}/.lu_gp"), v);
            }
            (Class::LuGp, "lu_gp_id") => {
                if !self.file(p).unwrap_or("").is_empty() {
                    return Err(einval("the LU group already has a valid id"));
                }
                let id: u16 = v.parse().map_err(|_| einval(format!("lu_gp_id {v}")))?;
                let used: BTreeSet<String> = self
                    .children("target/core/alua/lu_gps")
                    .filter(|(k, _)| *k != &dir)
                    .filter_map(|(k, _)| self.file(&format!("{k}/lu_gp_id")).map(str::to_string))
                    .collect();
                // 0 asks LIO for the next free id.
                let id = if id == 0 {
                    (1..=u16::MAX)
                        .find(|i| !used.contains(&i.to_string()))
                        .ok_or_else(|| einval("no LU group id left"))?
                } else {
                    id
                };
                if used.contains(&id.to_string()) {
                    return Err(einval(format!("lu_gp_id {id} is used by another group")));
                }
                self.set(p, id.to_string());
            }
            (Class::Other, "vpd_unit_serial") if classify(parent(&dir)) == Class::Device => {
                let dev = parent(&dir).to_string();
                if self.dev_exported(&dev) {
                    return Err(einval("VPD unit serial while LUN exports exist"));
                }
                if v.len() > 254 {
                    return Err(einval("serial too long"));
                }
                self.set(p, v);
            }
            (Class::TgPtGp, "tg_pt_gp_id") => {
                if !self.file(p).unwrap_or("").is_empty() {
                    return Err(einval("the group already has a valid id"));
                }
                let id: u16 = v.parse().map_err(|_| einval(format!("tg_pt_gp_id {v}")))?;
                let alua = parent(&dir).to_string();
                let clash = self
                    .children(&alua)
                    .any(|(k, _)| k != &dir && self.file(&format!("{k}/tg_pt_gp_id")) == Some(v));
                if clash {
                    return Err(einval(format!("tg_pt_gp_id {id} is used by another group")));
                }
                self.set(p, id.to_string());
            }
            (Class::TgPtGp, "alua_access_type") => {
                let t: u8 = v
                    .parse()
                    .map_err(|_| einval(format!("alua_access_type {v}")))?;
                if t > 3 {
                    return Err(einval(format!("alua_access_type {t}")));
                }
                self.set(p, t.to_string());
            }
            (Class::TgPtGp, "alua_access_state") => {
                if self
                    .file(&format!("{dir}/tg_pt_gp_id"))
                    .unwrap_or("")
                    .is_empty()
                {
                    return Err(einval("implicit ALUA on a group without a valid id"));
                }
                let dev = parent(parent(&dir)).to_string();
                if !self.dev_enabled(&dev) {
                    return Err(err(
                        ErrorKind::NotFound,
                        "ENODEV: alua_access_state while the device is not configured",
                    ));
                }
                let t: u8 = self
                    .file(&format!("{dir}/alua_access_type"))
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0);
                if t & 1 == 0 {
                    return Err(einval(
                        "implicit transition while implicit ALUA is disabled",
                    ));
                }
                let s: u8 = v
                    .parse()
                    .map_err(|_| einval(format!("alua_access_state {v}")))?;
                if crate::core::model::AluaState::from_code(s).is_none() {
                    return Err(einval(format!("alua_access_state {s}")));
                }
                self.set(p, s.to_string());
                self.propagate_lu_group(&dev, &dir, s);
            }
            (Class::TgPtGp, "preferred") => {
                self.set(p, bit(v)?);
            }
            (Class::Lun, "alua_tg_pt_gp") => {
                let dev = self.lun_dev(&dir).ok_or_else(|| {
                    err(
                        ErrorKind::NotFound,
                        "ENODEV: the LUN is not linked to a device",
                    )
                })?;
                let gp = format!("{dev}/alua/{v}");
                if !matches!(self.entries.get(&gp), Some(Entry::Dir { .. })) {
                    return Err(einval(format!("no ALUA group {v} on {dev}")));
                }
                self.set(p, v);
            }
            (Class::Tpg, "enable") => self.set(p, bit(v)?),
            (
                Class::Other,
                "authentication"
                | "generate_node_acls"
                | "demo_mode_write_protect"
                | "cache_dynamic_acls",
            ) if classify(parent(&dir)) == Class::Tpg => {
                self.set(p, bit(v)?);
            }
            (Class::Other, "userid" | "password" | "userid_mutual" | "password_mutual")
                if classify(parent(&dir)) == Class::Acl =>
            {
                if v.len() > 255 {
                    return Err(einval("CHAP credential too long"));
                }
                self.set(p, v);
            }
            (Class::Subsystem, "attr_allow_any_host") => {
                let b = bit(v)?;
                if b == "1"
                    && self
                        .children(&format!("{dir}/allowed_hosts"))
                        .next()
                        .is_some()
                {
                    return Err(einval("allow_any_host while explicit hosts are set"));
                }
                self.set(p, b);
            }
            (Class::Subsystem, "attr_cntlid_min" | "attr_cntlid_max") => {
                // The kernel checks the pair: 1 <= min <= max <= 0xffef.
                let n: u16 = v.parse().map_err(|_| einval(format!("cntlid {v}")))?;
                let held = |attr: &str, default: u16| -> u16 {
                    self.file(&format!("{dir}/{attr}"))
                        .and_then(|x| x.parse().ok())
                        .unwrap_or(default)
                };
                if attr == "attr_cntlid_min" {
                    let max = held("attr_cntlid_max", 0xffef);
                    if n == 0 || n > max {
                        return Err(einval(format!("cntlid_min {n} with max {max}")));
                    }
                } else {
                    let min = held("attr_cntlid_min", 1);
                    if n == 0 || n < min || n > 0xffef {
                        return Err(einval(format!("cntlid_max {n} with min {min}")));
                    }
                }
                self.set(p, n.to_string());
            }
            (Class::Subsystem, "attr_serial") => {
                if v.is_empty() || v.len() > 20 {
                    return Err(einval("serial must be 1..20 characters"));
                }
                self.set(p, v);
            }
            (Class::Namespace, "device_path" | "device_uuid" | "device_nguid") => {
                if self.file(&format!("{dir}/enable")) == Some("1") {
                    return Err(err(
                        ErrorKind::ResourceBusy,
                        format!("EBUSY: {attr} while the namespace is enabled"),
                    ));
                }
                let stored = match attr {
                    "device_path" => v.to_string(),
                    "device_uuid" => {
                        let ok = v.len() == 36 && crate::core::model::hex_only(v).len() == 32;
                        if !ok {
                            return Err(einval(format!("uuid {v}")));
                        }
                        v.to_ascii_lowercase()
                    }
                    _ => {
                        let hex = crate::core::model::hex_only(v);
                        let clean: String = v.chars().filter(|c| *c != '-' && *c != ':').collect();
                        if hex.len() != 32 || clean.len() != 32 {
                            return Err(einval(format!("nguid {v}")));
                        }
                        format!(
                            "{}-{}-{}-{}-{}",
                            &hex[0..8],
                            &hex[8..12],
                            &hex[12..16],
                            &hex[16..20],
                            &hex[20..32]
                        )
                    }
                };
                self.set(p, stored);
            }
            (Class::Namespace, "ana_grpid") => {
                let g: u32 = v.parse().map_err(|_| einval(format!("ana_grpid {v}")))?;
                if g == 0 || g > 128 {
                    return Err(einval(format!("ana_grpid {g}")));
                }
                self.set(p, g.to_string());
            }
            (Class::Namespace, "enable") => {
                let b = bit(v)?;
                if b == "1" {
                    let dev = self
                        .file(&format!("{dir}/device_path"))
                        .unwrap_or("")
                        .to_string();
                    if !self.devices.contains(&dev) {
                        return Err(err(
                            ErrorKind::NotFound,
                            format!("ENOENT: block device {dev:?}"),
                        ));
                    }
                }
                self.set(p, b);
            }
            (Class::Port, "addr_trtype" | "addr_adrfam" | "addr_traddr" | "addr_trsvcid") => {
                if self.port_serving(&dir) {
                    return Err(err(
                        ErrorKind::PermissionDenied,
                        format!("EACCES: {attr} while the port is enabled"),
                    ));
                }
                let ok = match attr {
                    "addr_trtype" => ["tcp", "rdma", "fc", "loop"].contains(&v),
                    "addr_adrfam" => ["ipv4", "ipv6", "ib", "fc"].contains(&v),
                    _ => !v.is_empty(),
                };
                if !ok {
                    return Err(einval(format!("{attr} {v}")));
                }
                self.set(p, v);
            }
            (Class::MappedLun, "write_protect") => {
                let b = bit(v)?;
                // The kernel keeps the flag on the link's entry: without
                // the link the write is accepted and lost.
                if self.has_link(&dir) {
                    self.set(p, b);
                }
            }
            (Class::AnaGroup, "ana_state") => {
                if crate::core::model::AnaState::parse(v).is_none() {
                    return Err(einval(format!("ana_state {v}")));
                }
                self.set(p, v);
            }
            _ => self.set(p, v),
        }
        Ok(())
    }

    fn do_symlink(&mut self, link: &str, target: &str) -> io::Result<()> {
        if self.entries.contains_key(link) {
            return Err(err(ErrorKind::AlreadyExists, format!("EEXIST: {link}")));
        }
        let dir = parent(link).to_string();
        if !matches!(self.entries.get(&dir), Some(Entry::Dir { .. })) {
            return Err(err(ErrorKind::NotFound, format!("ENOENT: {dir}")));
        }
        if !matches!(self.entries.get(target), Some(Entry::Dir { .. })) {
            return Err(err(
                ErrorKind::NotFound,
                format!("ENOENT: link target {target}"),
            ));
        }
        let has_link = self.has_link(&dir);
        match classify(&dir) {
            Class::Lun => {
                if classify(target) != Class::Device {
                    return Err(einval(format!("{target} is not a backstore")));
                }
                if has_link {
                    return Err(err(
                        ErrorKind::AlreadyExists,
                        "EEXIST: port symlink already exists",
                    ));
                }
                if !self.dev_enabled(target) {
                    return Err(err(
                        ErrorKind::NotFound,
                        "ENODEV: se_device not configured yet, cannot port link",
                    ));
                }
            }
            Class::MappedLun => {
                let tpg = parent(parent(parent(&dir)));
                if classify(target) != Class::Lun || parent(parent(target)) != tpg {
                    return Err(einval(format!("{target} is not a LUN of the same TPG")));
                }
                if has_link {
                    return Err(err(
                        ErrorKind::AlreadyExists,
                        "EEXIST: mapped LUN already linked",
                    ));
                }
                if self.lun_dev(target).is_none() {
                    return Err(einval("the TPG LUN has no device"));
                }
            }
            Class::AllowedHosts => {
                if parent(target) != "nvmet/hosts" {
                    return Err(einval(format!("{target} is not an nvmet host")));
                }
                let sub = parent(&dir);
                if self.file(&format!("{sub}/attr_allow_any_host")) == Some("1") {
                    return Err(einval("can't add hosts when allow_any_host is set"));
                }
            }
            Class::PortSubsystems => {
                if parent(target) != "nvmet/subsystems" {
                    return Err(einval(format!("{target} is not a subsystem")));
                }
                let port = parent(&dir);
                if self
                    .file(&format!("{port}/addr_trtype"))
                    .unwrap_or("")
                    .is_empty()
                    || self
                        .file(&format!("{port}/addr_traddr"))
                        .unwrap_or("")
                        .is_empty()
                {
                    return Err(einval("port has no transport address"));
                }
                // The first link starts the listener, which binds.
                let first = !self
                    .children(&dir)
                    .any(|(_, e)| matches!(e, Entry::Link(_)));
                let addr = self.file(&format!("{port}/addr_traddr")).unwrap_or("");
                let ip = addr.parse::<std::net::IpAddr>().ok();
                let local = self.local_addrs.as_ref();
                if first
                    && ip.is_some_and(|ip| {
                        !ip.is_unspecified() && local.is_some_and(|l| !l.contains(&ip))
                    })
                {
                    return Err(err(
                        ErrorKind::AddrNotAvailable,
                        format!("EADDRNOTAVAIL: cannot bind nvmet port {port} on {addr}: address not on this controller"),
                    ));
                }
            }
            _ => {
                return Err(err(
                    ErrorKind::PermissionDenied,
                    format!("EPERM: no links in {dir}"),
                ))
            }
        }
        self.entries
            .insert(link.to_string(), Entry::Link(target.to_string()));
        if classify(&dir) == Class::MappedLun {
            // A new entry starts writable (prod_mode_write_protect is 0).
            self.set(&format!("{dir}/write_protect"), "0");
            self.attach_aptpl(&dir, target);
        }
        Ok(())
    }

    /// True when the directory holds a link (a LUN's device, a mapped
    /// LUN's TPG LUN).
    fn has_link(&self, dir: &str) -> bool {
        self.children(dir).any(|(_, e)| matches!(e, Entry::Link(_)))
    }
}

impl TargetBackend for SimBackend {
    fn mkdir(&mut self, path: &str) -> io::Result<()> {
        self.ops += 1;
        self.do_mkdir(path)
    }

    fn rmdir(&mut self, path: &str) -> io::Result<()> {
        self.ops += 1;
        self.do_rmdir(path)
    }

    fn write(&mut self, path: &str, value: &str) -> io::Result<()> {
        self.ops += 1;
        self.do_write(path, value)
    }

    fn read(&self, path: &str) -> io::Result<String> {
        let dir = parent(path);
        match self.entries.get(path) {
            Some(Entry::File(_)) if base(dir) == "pr" && classify(parent(dir)) == Class::Device => {
                Ok(self.render_pr(parent(dir), base(path)))
            }
            Some(Entry::File(v)) => {
                if base(path) == "control" {
                    return Ok(String::new());
                }
                if classify(dir) == Class::MappedLun
                    && base(path) == "write_protect"
                    && !self.has_link(dir)
                {
                    // No entry without the link: the kernel shows nothing.
                    return Ok(String::new());
                }
                if base(path) == "alua_access_type" {
                    let word = match v.as_str() {
                        "1" => "Implicit",
                        "2" => "Explicit",
                        "3" => "Implicit and Explicit",
                        _ => "None",
                    };
                    return Ok(format!("{word}\n"));
                }
                if classify(dir) == Class::Device && base(path) == "alua_lu_gp" {
                    let Some(g) = self.lu_gp_of(dir) else {
                        return Ok(String::new());
                    };
                    let id = self
                        .file(&format!("target/core/alua/lu_gps/{g}/lu_gp_id"))
                        .unwrap_or("");
                    return Ok(format!("LU Group Alias: {g}\nLU Group ID: {id}\n"));
                }
                if classify(dir) == Class::LuGp && base(path) == "members" {
                    let mut out = String::new();
                    for dev in self.lu_gp_members(base(dir)) {
                        let c: Vec<&str> = dev.split('/').collect();
                        if let [.., hba, name] = c.as_slice() {
                            out.push_str(&format!("{hba}/{name}\n"));
                        }
                    }
                    return Ok(out);
                }
                if base(path) == "vpd_unit_serial" {
                    return Ok(format!("T10 VPD Unit Serial Number: {v}\n"));
                }
                if classify(dir) == Class::Lun && base(path) == "alua_tg_pt_gp" {
                    if v.is_empty() && self.lun_dev(dir).is_none() {
                        return Ok(String::new());
                    }
                    let name = if v.is_empty() { "default_tg_pt_gp" } else { v };
                    let id = self
                        .lun_dev(dir)
                        .and_then(|d| {
                            self.file(&format!("{d}/alua/{name}/tg_pt_gp_id"))
                                .map(str::to_string)
                        })
                        .unwrap_or_default();
                    return Ok(format!("TG Port Alias: {name}\nTG Port Group ID: {id}\n"));
                }
                Ok(format!("{v}\n"))
            }
            Some(Entry::Dir { .. }) => Err(err(ErrorKind::IsADirectory, format!("EISDIR: {path}"))),
            Some(Entry::Link(_)) => Err(einval(format!("{path} is a link"))),
            None => Err(err(ErrorKind::NotFound, format!("ENOENT: {path}"))),
        }
    }

    fn symlink(&mut self, link: &str, target: &str) -> io::Result<()> {
        self.ops += 1;
        self.do_symlink(link, target)
    }

    fn unlink(&mut self, path: &str) -> io::Result<()> {
        self.ops += 1;
        match self.entries.get(path).cloned() {
            Some(Entry::Link(t)) => {
                self.entries.remove(path);
                if classify(parent(path)) == Class::MappedLun {
                    self.free_acl_regs(parent(path), &t);
                }
                Ok(())
            }
            Some(_) => Err(err(
                ErrorKind::PermissionDenied,
                format!("EPERM: {path} is not a link"),
            )),
            None => Err(err(ErrorKind::NotFound, format!("ENOENT: {path}"))),
        }
    }

    fn list(&self, path: &str) -> io::Result<Vec<(String, EntryKind)>> {
        if !matches!(self.entries.get(path), Some(Entry::Dir { .. })) {
            return Err(err(ErrorKind::NotFound, format!("ENOENT: {path}")));
        }
        Ok(self
            .children(path)
            .filter(|(k, _)| !base(k).starts_with('.'))
            .map(|(k, e)| {
                let kind = match e {
                    Entry::Dir { .. } => EntryKind::Dir,
                    Entry::File(_) => EntryKind::File,
                    Entry::Link(_) => EntryKind::Link,
                };
                (base(k).to_string(), kind)
            })
            .collect())
    }

    fn read_link(&self, path: &str) -> io::Result<String> {
        match self.entries.get(path) {
            // The kernel answers with a relative path; callers use the tail.
            Some(Entry::Link(t)) => Ok(format!("../../../../../{t}")),
            _ => Err(einval(format!("{path} is not a link"))),
        }
    }

    fn device_present(&self, dev: &str) -> bool {
        self.devices.contains(dev)
    }

    fn device_state(&self, dev: &str) -> DeviceState {
        match (self.devices.contains(dev), self.unbacked.contains(dev)) {
            (false, _) => DeviceState::Missing,
            (true, true) => DeviceState::Unbacked,
            (true, false) => DeviceState::Backed,
        }
    }
}

/// Persistent reservations: what hosts do through their sessions, and
/// what LIO does with the state.
impl SimBackend {
    fn lio_device_count(&self) -> usize {
        self.entries
            .iter()
            .filter(|(k, e)| {
                matches!(e, Entry::Dir { default: false })
                    && classify(k) == Class::Device
                    && !k.starts_with("target/core/alua/")
            })
            .count()
    }

    /// `(iqn, tag, initiator, mapped LUN)` of a mapped LUN directory.
    fn mapped_parts(dir: &str) -> Option<(String, u16, String, u32)> {
        let c: Vec<&str> = dir.split('/').collect();
        match c.as_slice() {
            ["target", "iscsi", iqn, tpg, "acls", init, m] => Some((
                (*iqn).to_string(),
                num_suffix(tpg, "tpgt_").and_then(|t| u16::try_from(t).ok())?,
                (*init).to_string(),
                num_suffix(m, "lun_")?,
            )),
            _ => None,
        }
    }

    /// A mapped LUN was linked to TPG LUN `lun`: saved registrations of
    /// that initiator through that port and LUN come back.
    fn attach_aptpl(&mut self, mdir: &str, lun: &str) {
        let Some((iqn, tag, init, mlun)) = Self::mapped_parts(mdir) else {
            return;
        };
        let Some(dev) = self.lun_dev(lun) else { return };
        let tlun = num_suffix(base(lun), "lun_").unwrap_or(0);
        let Some(pr) = self.pr.get_mut(&dev) else {
            return;
        };
        let mut keep = Vec::new();
        for f in std::mem::take(&mut pr.pending) {
            let get = |k: &str| f.get(k).map(String::as_str).unwrap_or("");
            let matches = get("initiator_node") == init
                && get("target_node") == iqn
                && get("tpgt").parse::<u16>().ok() == Some(tag)
                && get("mapped_lun").parse::<u32>().unwrap_or(0) == mlun
                && get("target_lun").parse::<u32>().unwrap_or(0) == tlun;
            if !matches {
                keep.push(f);
                continue;
            }
            pr.regs.push(SimReg {
                initiator: init.clone(),
                isid: get("initiator_sid").to_string(),
                key: get("sa_res_key").parse().unwrap_or(0),
                generation: pr.generation,
                iqn: iqn.clone(),
                tpgt: tag,
                mapped_lun: mlun,
                target_lun: tlun,
            });
            pr.aptpl = true;
            if get("res_holder") == "1" {
                let t = get("res_type").parse().unwrap_or(0);
                pr.holder = Some((pr.regs.len() - 1, t));
            }
        }
        pr.pending = keep;
    }

    /// A mapped LUN's link went: LIO frees the initiator's registrations
    /// on the device and its reservation (`core_scsi3_free_pr_reg_from_nacl`).
    fn free_acl_regs(&mut self, mdir: &str, lun: &str) {
        let Some((iqn, tag, init, _)) = Self::mapped_parts(mdir) else {
            return;
        };
        let Some(dev) = self.lun_dev(lun) else { return };
        let Some(pr) = self.pr.get_mut(&dev) else {
            return;
        };
        let gone = |r: &SimReg| r.initiator == init && r.iqn == iqn && r.tpgt == tag;
        if let Some((i, _)) = pr.holder {
            if pr.regs.get(i).is_some_and(gone) {
                pr.holder = None;
            }
        }
        let held = pr
            .holder
            .and_then(|(i, t)| pr.regs.get(i).cloned().map(|r| (r, t)));
        pr.regs.retain(|r| !gone(r));
        pr.holder = held.and_then(|(r, t)| pr.regs.iter().position(|x| *x == r).map(|i| (i, t)));
    }

    /// The backstore directory an initiator reaches through its mapped LUN.
    fn nexus_dev(&self, iqn: &str, tag: u16, init: &str, mlun: u32) -> io::Result<(String, u32)> {
        let mdir = format!("target/iscsi/{iqn}/tpgt_{tag}/acls/{init}/lun_{mlun}");
        let lun = self
            .children(&mdir)
            .find_map(|(_, e)| match e {
                Entry::Link(t) => Some(t.clone()),
                _ => None,
            })
            .ok_or_else(|| err(ErrorKind::NotFound, format!("{init} has no LUN {mlun}")))?;
        let dev = self
            .lun_dev(&lun)
            .ok_or_else(|| err(ErrorKind::NotFound, "LUN without a device"))?;
        Ok((dev, num_suffix(base(&lun), "lun_").unwrap_or(0)))
    }

    /// A host's PERSISTENT RESERVE OUT REGISTER through `iqn`/`tag` as
    /// `init` (session `isid`) on its mapped LUN `mlun`.
    pub fn pr_register(
        &mut self,
        (iqn, tag): (&str, u16),
        (init, isid): (&str, &str),
        mlun: u32,
        key: u64,
        aptpl: bool,
    ) -> io::Result<()> {
        let (dev, tlun) = self.nexus_dev(iqn, tag, init, mlun)?;
        let pr = self.pr.entry(dev).or_default();
        pr.regs
            .retain(|r| !(r.initiator == init && r.isid == isid && r.iqn == iqn && r.tpgt == tag));
        pr.regs.push(SimReg {
            initiator: init.to_string(),
            isid: isid.to_string(),
            key,
            generation: pr.generation,
            iqn: iqn.to_string(),
            tpgt: tag,
            mapped_lun: mlun,
            target_lun: tlun,
        });
        pr.generation += 1;
        pr.aptpl = aptpl;
        Ok(())
    }

    /// A host's PERSISTENT RESERVE OUT RESERVE of type `pr_type` by a
    /// registered I_T nexus; a conflicting holder refuses it.
    pub fn pr_reserve(
        &mut self,
        (iqn, tag): (&str, u16),
        (init, isid): (&str, &str),
        mlun: u32,
        pr_type: u8,
    ) -> io::Result<()> {
        let (dev, _) = self.nexus_dev(iqn, tag, init, mlun)?;
        let pr = self.pr.entry(dev).or_default();
        let i = pr
            .regs
            .iter()
            .position(|r| r.initiator == init && r.isid == isid && r.iqn == iqn && r.tpgt == tag)
            .ok_or_else(|| {
                err(
                    ErrorKind::PermissionDenied,
                    "RESERVATION CONFLICT: not registered",
                )
            })?;
        if pr.holder.is_some_and(|(h, _)| h != i) {
            return Err(err(ErrorKind::PermissionDenied, "RESERVATION CONFLICT"));
        }
        pr.holder = Some((i, pr_type));
        Ok(())
    }

    /// The APTPL file LIO would have written for backstore `name` (what
    /// `<db_root>/pr/aptpl_<serial>` holds), as `__core_scsi3_update_aptpl_buf` lays it out.
    pub fn aptpl_file(&self, name: &str) -> String {
        let dev = crate::core::model::path::backstore(name);
        let Some(pr) = self.pr.get(&dev).filter(|p| p.aptpl && !p.regs.is_empty()) else {
            return "No Registrations or Reservations\n".into();
        };
        let mut out = String::new();
        for (i, r) in pr.regs.iter().enumerate() {
            out.push_str(&format!(
                "PR_REG_START: {i}\ninitiator_fabric=iSCSI\ninitiator_node={}\n",
                r.initiator
            ));
            if !r.isid.is_empty() {
                out.push_str(&format!("initiator_sid={}\n", r.isid));
            }
            out.push_str(&format!("sa_res_key={}\n", r.key));
            match pr.holder {
                Some((h, t)) if h == i => {
                    out.push_str(&format!("res_holder=1\nres_type={t:02x}\nres_scope=0x00\n"));
                }
                _ => out.push_str("res_holder=0\n"),
            }
            out.push_str(&format!(
                "res_all_tg_pt=0\nmapped_lun={}\ntarget_fabric=iSCSI\ntarget_node={}\ntpgt={}\nport_rtpi=1\ntarget_lun={}\nPR_REG_END: {i}\n",
                r.mapped_lun, r.iqn, r.tpgt, r.target_lun
            ));
        }
        out
    }

    /// A `pr/` attribute in the kernel's format.
    fn render_pr(&self, dev: &str, attr: &str) -> String {
        let empty = SimPr::default();
        let pr = self.pr.get(dev).unwrap_or(&empty);
        let holder = pr.holder.and_then(|(i, t)| pr.regs.get(i).map(|r| (r, t)));
        let port = |r: &SimReg| {
            if r.isid.is_empty() {
                r.initiator.clone()
            } else {
                format!("{},i,{}", r.initiator, r.isid)
            }
        };
        const NONE: &str = "No SPC-3 Reservation holder\n";
        match attr {
            "res_type" => "SPC3_PERSISTENT_RESERVATIONS\n".into(),
            "res_pr_generation" => format!("0x{:08x}\n", pr.generation),
            "res_aptpl_active" => format!(
                "APTPL Bit Status: {}\n",
                if pr.aptpl { "Activated" } else { "Disabled" }
            ),
            "res_pr_registered_i_pts" => {
                let mut s = String::from("SPC-3 PR Registrations:\n");
                for r in &pr.regs {
                    s.push_str(&format!(
                        "iSCSI Node: {} Key: 0x{:016x} PRgen: 0x{:08x}\n",
                        port(r),
                        r.key,
                        r.generation
                    ));
                }
                if pr.regs.is_empty() {
                    s.push_str("None\n");
                }
                s
            }
            "res_holder" => holder.map_or_else(
                || NONE.into(),
                |(r, _)| format!("SPC-3 Reservation: iSCSI Initiator: {}\n", port(r)),
            ),
            "res_pr_type" => holder.map_or_else(
                || NONE.into(),
                |(_, t)| format!("SPC-3 Reservation Type: {}\n", pr_type_name(t)),
            ),
            "res_pr_all_tgt_pts" => holder.map_or_else(
                || NONE.into(),
                |_| "SPC-3 Reservation: Single Target Port registration\n".into(),
            ),
            "res_pr_holder_tg_port" => holder.map_or_else(
                || NONE.into(),
                |(r, _)| {
                    format!(
                        "SPC-3 Reservation: iSCSI Target Node Endpoint: {}\nSPC-3 Reservation: Relative Port Identifier Tag: 1 iSCSI Portal Group Tag: {} iSCSI Logical Unit: {}\n",
                        r.iqn, r.tpgt, r.target_lun
                    )
                },
            ),
            "res_aptpl_metadata" => "Ready to process PR APTPL metadata..\n".into(),
            _ => String::new(),
        }
    }
}

/// A simulator shared between a reconciler and a test that plays the
/// hosts (PERSISTENT RESERVE OUT through their sessions).
#[derive(Debug, Clone, Default)]
pub struct SharedSim(pub std::sync::Arc<std::sync::Mutex<SimBackend>>);

impl SharedSim {
    /// Wraps `sim`.
    pub fn new(sim: SimBackend) -> SharedSim {
        SharedSim(std::sync::Arc::new(std::sync::Mutex::new(sim)))
    }

    /// Runs `f` on the simulator.
    pub fn with<T>(&self, f: impl FnOnce(&mut SimBackend) -> T) -> T {
        let mut g = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut g)
    }
}

impl TargetBackend for SharedSim {
    fn mkdir(&mut self, path: &str) -> io::Result<()> {
        self.with(|s| s.mkdir(path))
    }
    fn rmdir(&mut self, path: &str) -> io::Result<()> {
        self.with(|s| s.rmdir(path))
    }
    fn write(&mut self, path: &str, value: &str) -> io::Result<()> {
        self.with(|s| s.write(path, value))
    }
    fn read(&self, path: &str) -> io::Result<String> {
        self.with(|s| s.read(path))
    }
    fn symlink(&mut self, link: &str, target: &str) -> io::Result<()> {
        self.with(|s| s.symlink(link, target))
    }
    fn unlink(&mut self, path: &str) -> io::Result<()> {
        self.with(|s| s.unlink(path))
    }
    fn list(&self, path: &str) -> io::Result<Vec<(String, EntryKind)>> {
        self.with(|s| s.list(path))
    }
    fn read_link(&self, path: &str) -> io::Result<String> {
        self.with(|s| s.read_link(path))
    }
    fn device_present(&self, dev: &str) -> bool {
        self.with(|s| s.device_present(dev))
    }
    fn device_state(&self, dev: &str) -> DeviceState {
        self.with(|s| s.device_state(dev))
    }
}
