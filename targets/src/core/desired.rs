//! From the cluster's desired state (the shared model of `duplex-api`, as
//! config-keeper's `config.get` returns it) to the configfs tree this
//! controller must have.
//!
//! Naming, so both controllers build the same identity without talking:
//! - one iSCSI target per host group, `<iqn base>:<cluster>.<group>`, with
//!   TPG tag 1 on the first controller and 2 on the second (distinct SCSI
//!   target port names), LUN numbers from the exports;
//! - one nvmet subsystem per host group, `<nqn base>:<cluster>.<group>`,
//!   NSIDs from the exports, the same serial on both controllers and
//!   disjoint controller id ranges;
//! - one backstore per exported volume, named after it, on the volume's
//!   block device **`/dev/mapper/dxvol-<serial>`** (the per-volume dm device
//!   pool-manager keeps on both controllers), with the volume's hex unit
//!   serial;
//! - one ALUA group per controller (`dx_<id>`, id 16 + index) on every
//!   backstore, implicit ALUA;
//! - one ALUA LU group per **pool** (`dxpool_<pool>`, id 100 and up,
//!   kept as configfs has it) holding the pool's backstores, so one state
//!   write moves this controller's port group on every volume of the pool;
//! - one ANA group per **pool** on this controller's port, so a pool flips
//!   with one write per port (docs/targets.md says why).

use super::model::{
    hex_only, AccessState, Acl, Backstore, Chap, IscsiTarget, Lun, Namespace, Port, Subsystem,
    TgPtGp, Tpg, Tree, ALUA_IMPLICIT, DEFAULT_ANA_GROUP, ISCSI_PORT, LU_GROUP_PREFIX,
    MAX_ANA_GROUP, NVME_PORT,
};
use duplex_api::model::{Config, Export, Host, HostGroup, Protocol, Volume};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// The default IQN base (the naming authority of Duplex targets).
pub const IQN_BASE: &str = "iqn.2026-11.io.duplex";
/// The default NQN base.
pub const NQN_BASE: &str = "nqn.2026-11.io.duplex";
/// First nvmet port id Duplex uses; ids below it are left alone.
pub const PORT_BASE: u16 = 1000;
/// First ALUA group id; controller `i` (0-based, sorted ids) gets 16 + i.
pub const TG_PT_GP_BASE: u16 = 16;
/// First ALUA LU group id Duplex gives a pool (LIO's default group is 0
/// and its automatic ids count up from 1).
pub const LU_GP_BASE: u16 = 100;

/// The ALUA LU group of a pool's backstores on every controller.
pub fn lu_group_name(pool: &str) -> String {
    format!("{LU_GROUP_PREFIX}{pool}")
}

/// What this controller is, for building its tree.
#[derive(Debug, Clone)]
pub struct Local {
    /// This controller's id.
    pub controller: String,
    /// Front-end portal addresses given on the command line (`--portal`):
    /// when set they override the controller's `portals` in the
    /// configuration; when neither names one, the wildcard address is used.
    pub portals: Vec<IpAddr>,
    /// IQN base.
    pub iqn_base: String,
    /// NQN base.
    pub nqn_base: String,
}

impl Local {
    /// A controller with the default names and no portal override.
    pub fn new(controller: &str) -> Local {
        Local {
            controller: controller.into(),
            portals: Vec::new(),
            iqn_base: IQN_BASE.into(),
            nqn_base: NQN_BASE.into(),
        }
    }

    /// This controller's ALUA target port group name on every backstore.
    pub fn alua_group(&self) -> String {
        format!("dx_{}", self.controller.to_ascii_lowercase())
    }

    /// The objects this controller manages (everything else is foreign).
    pub fn scope(&self) -> Scope {
        Scope {
            iqn_prefix: format!("{}:", self.iqn_base),
            nqn_prefix: format!("{}:", self.nqn_base),
            ports: PORT_BASE..PORT_BASE + 1000,
        }
    }
}

/// Which configfs objects are ours to create, change and remove.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// iSCSI targets whose IQN starts with this.
    pub iqn_prefix: String,
    /// nvmet subsystems whose NQN starts with this.
    pub nqn_prefix: String,
    /// nvmet port ids.
    pub ports: std::ops::Range<u16>,
}

impl Scope {
    /// True for an iSCSI target of ours.
    pub fn owns_iqn(&self, iqn: &str) -> bool {
        iqn.starts_with(&self.iqn_prefix)
    }
    /// True for an nvmet subsystem of ours.
    pub fn owns_nqn(&self, nqn: &str) -> bool {
        nqn.starts_with(&self.nqn_prefix)
    }
    /// True for an nvmet port of ours.
    pub fn owns_port(&self, id: u16) -> bool {
        self.ports.contains(&id)
    }
}

/// Per-pool facts of a built tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolView {
    /// The access state through this controller.
    pub state: AccessState,
    /// Its ANA group on this controller (when it has NVMe exports).
    pub ana_group: Option<u32>,
    /// Backstores (volumes) of the pool in the tree.
    pub volumes: Vec<String>,
}

/// The tree to build and what could not be built yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Desired {
    /// The tree.
    pub tree: Tree,
    /// Pools by name.
    pub pools: BTreeMap<String, PoolView>,
    /// This controller's ALUA group name.
    pub group: String,
    /// Exports left out, with the reason (device missing, name clash...).
    pub pending: Vec<String>,
}

/// The device-mapper name prefix of the per-volume devices.
pub const DEVICE_PREFIX: &str = "/dev/mapper/dxvol-";

/// The block device of a volume: the per-volume device-mapper device
/// pool-manager keeps on **both** controllers (`linear` over the LV where
/// the pool is imported, `error` on the partner, swapped at takeover), named
/// after the volume's unit serial so it never changes with the pool's owner.
pub fn device_path(v: &Volume) -> String {
    format!("{DEVICE_PREFIX}{}", v.serial)
}

/// The name part of a target built for a host group: lowercase, `_` as `-`
/// (IQNs allow only lowercase letters, digits, `.`, `-` and `:`).
pub fn group_tag(group: &str) -> String {
    group
        .chars()
        .map(|c| match c {
            '_' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn cluster_tag(cfg: &Config) -> String {
    match &cfg.cluster {
        Some(c) => {
            let hex = hex_only(&c.id);
            if hex.is_empty() {
                "local".into()
            } else {
                hex.chars().take(8).collect()
            }
        }
        None => "local".into(),
    }
}

/// The IQN of a host group's target.
pub fn target_iqn(local: &Local, cfg: &Config, group: &str) -> String {
    format!(
        "{}:{}.{}",
        local.iqn_base,
        cluster_tag(cfg),
        group_tag(group)
    )
}

/// The NQN of a host group's subsystem.
pub fn subsystem_nqn(local: &Local, cfg: &Config, group: &str) -> String {
    format!(
        "{}:{}.{}",
        local.nqn_base,
        cluster_tag(cfg),
        group_tag(group)
    )
}

/// 16 hex digits from the NQN (FNV-1a), the same on both controllers.
fn subsystem_serial(nqn: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in nqn.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The iSCSI portal name of an address (`a.b.c.d:3260`, `[v6]:3260`).
pub fn portal_name(ip: &IpAddr) -> String {
    match ip {
        IpAddr::V4(a) => format!("{a}:{ISCSI_PORT}"),
        IpAddr::V6(a) => format!("[{a}]:{ISCSI_PORT}"),
    }
}

/// The addresses this controller's targets listen on: the `--portal`
/// override, else its `portals` in the configuration, else the wildcard.
pub fn portals(cfg: &Config, local: &Local) -> Vec<IpAddr> {
    if !local.portals.is_empty() {
        return local.portals.clone();
    }
    let mut ok: Vec<IpAddr> = Vec::new();
    let mine = cfg.controllers.get(&local.controller);
    for p in mine.iter().flat_map(|c| c.portals.iter()) {
        if !ok.contains(&p.addr) {
            ok.push(p.addr);
        }
    }
    if ok.is_empty() {
        ok.push(IpAddr::from([0, 0, 0, 0]));
    }
    ok
}

/// A volume's block device on this controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceState {
    /// No such device: its exports wait (pending).
    Missing,
    /// The device exists but serves no data: pool-manager's `error` table
    /// where the pool is not imported. Exported (the standby path), never
    /// active.
    Unbacked,
    /// The device serves the volume's data (the pool is imported here).
    Backed,
}

/// Builds this controller's tree. `device` tells what a block device
/// exists here (the pool is imported); `overrides` are access states set by
/// `target.set_access_state` that still apply; `observed` keeps ANA group
/// numbers and LU group ids stable across reconciles.
pub fn build(
    cfg: &Config,
    local: &Local,
    device: &dyn Fn(&str) -> DeviceState,
    overrides: &BTreeMap<String, AccessState>,
    observed: &Tree,
) -> Desired {
    let mut out = Desired::default();
    // Sorted: the configuration keys controllers by id.
    let ids: Vec<&str> = cfg.controllers.keys().map(String::as_str).collect();
    let Some(index) = ids.iter().position(|c| *c == local.controller) else {
        if !cfg.exports.is_empty() {
            out.pending.push(format!(
                "controller {} is not in the configuration: nothing is exported here",
                local.controller
            ));
        }
        return out;
    };
    let index16 = u16::try_from(index).unwrap_or(u16::MAX);
    let portal_addrs = portals(cfg, local);
    let group = local.alua_group();
    out.group.clone_from(&group);
    let gp_id = TG_PT_GP_BASE.saturating_add(index16);
    let tpg_tag = index16.saturating_add(1);
    // Disjoint controller id ranges (hosts reject a second path otherwise).
    let (cntlid_min, cntlid_max) = if index == 0 {
        (1, 0x7fff)
    } else {
        (0x8000, 0xffef)
    };

    let groups = &cfg.host_groups;

    for p in cfg.pools.values() {
        let state = overrides
            .get(&p.name)
            .copied()
            .unwrap_or(if p.owner == local.controller {
                AccessState::Active
            } else {
                AccessState::Standby
            });
        out.pools.insert(
            p.name.clone(),
            PoolView {
                state,
                ana_group: None,
                volumes: Vec::new(),
            },
        );
    }

    // Exports that can be built: known volume, pool, group, device present.
    let mut usable: Vec<(&Export, &Volume)> = Vec::new();
    let mut tags: BTreeMap<String, &str> = BTreeMap::new();
    let mut unbacked: BTreeSet<&str> = BTreeSet::new();
    // In name order: the configuration keys exports by name.
    for e in cfg.exports.values() {
        let Some(v) = cfg.volumes.get(&e.volume) else {
            out.pending
                .push(format!("export {}: volume {} unknown", e.name, e.volume));
            continue;
        };
        if !out.pools.contains_key(&v.pool) {
            out.pending
                .push(format!("export {}: pool {} unknown", e.name, v.pool));
            continue;
        }
        if !groups.contains_key(&e.host_group) {
            out.pending.push(format!(
                "export {}: host group {} unknown",
                e.name, e.host_group
            ));
            continue;
        }
        let tag = group_tag(&e.host_group);
        match tags.get(&tag) {
            Some(other) if *other != e.host_group => {
                out.pending.push(format!(
                    "export {}: host groups {} and {} give the same target name",
                    e.name, other, e.host_group
                ));
                continue;
            }
            _ => {
                tags.insert(tag, &e.host_group);
            }
        }
        let dev = device_path(v);
        match device(&dev) {
            DeviceState::Missing => {
                out.pending
                    .push(format!("export {}: waiting for {dev}", e.name));
                continue;
            }
            DeviceState::Unbacked => {
                unbacked.insert(v.pool.as_str());
            }
            DeviceState::Backed => {}
        }
        usable.push((e, v));
    }
    // A path that cannot serve the data is never presented as active:
    // where the pool is not imported (its devices are error tables) it
    // stays standby whatever ownership or an override says, until the
    // import swaps the tables.
    for pool in &unbacked {
        if let Some(p) = out.pools.get_mut(*pool) {
            if matches!(p.state, AccessState::Active | AccessState::NonOptimized) {
                p.state = AccessState::Standby;
                out.pending.push(format!(
                    "pool {pool}: standby here until its volumes' devices serve data (pool imported here)"
                ));
            }
        }
    }

    // ANA groups per pool with NVMe exports: keep the numbers configfs has.
    let nvme_pools: BTreeSet<&str> = usable
        .iter()
        .filter(|(e, _)| e.protocol == Protocol::Nvme)
        .map(|(_, v)| v.pool.as_str())
        .collect();
    let mut ana: BTreeMap<&str, u32> = BTreeMap::new();
    let mut taken: BTreeSet<u32> = BTreeSet::new();
    for (e, v) in &usable {
        if e.protocol != Protocol::Nvme || ana.contains_key(v.pool.as_str()) {
            continue;
        }
        let nqn = subsystem_nqn(local, cfg, &e.host_group);
        let seen = e.nsid.and_then(|nsid| {
            observed
                .subsystems
                .get(&nqn)
                .and_then(|s| s.namespaces.get(&nsid))
                .map(|n| n.ana_group)
        });
        if let Some(g) = seen {
            if g > DEFAULT_ANA_GROUP && g <= MAX_ANA_GROUP && taken.insert(g) {
                ana.insert(v.pool.as_str(), g);
            }
        }
    }
    let mut next = DEFAULT_ANA_GROUP + 1;
    for pool in &nvme_pools {
        if ana.contains_key(pool) {
            continue;
        }
        while taken.contains(&next) {
            next += 1;
        }
        if next > MAX_ANA_GROUP {
            out.pending.push(format!(
                "pool {pool}: no ANA group left (nvmet has {MAX_ANA_GROUP}); its NVMe exports wait"
            ));
            continue;
        }
        taken.insert(next);
        ana.insert(pool, next);
    }
    for (pool, g) in &ana {
        if let Some(p) = out.pools.get_mut(*pool) {
            p.ana_group = Some(*g);
        }
    }

    let tree = &mut out.tree;
    for (e, v) in &usable {
        let state = out
            .pools
            .get(&v.pool)
            .map_or(AccessState::Standby, |p| p.state);
        let members: Vec<&Host> = groups
            .get(&e.host_group)
            .map(|g: &HostGroup| g.hosts.iter().filter_map(|h| cfg.hosts.get(h)).collect())
            .unwrap_or_default();
        match e.protocol {
            Protocol::Iscsi => {
                let Some(lun) = e.lun else {
                    out.pending
                        .push(format!("export {}: iSCSI without a LUN", e.name));
                    continue;
                };
                let bs = tree
                    .backstores
                    .entry(v.name.clone())
                    .or_insert_with(|| Backstore {
                        dev: device_path(v),
                        serial: v.serial.clone(),
                        enabled: true,
                        groups: BTreeMap::new(),
                        lu_group: Some(lu_group_name(&v.pool)),
                    });
                bs.groups.insert(
                    group.clone(),
                    TgPtGp {
                        id: gp_id,
                        access_type: ALUA_IMPLICIT,
                        state: state.alua(),
                    },
                );
                if let Some(p) = out.pools.get_mut(&v.pool) {
                    if !p.volumes.contains(&v.name) {
                        p.volumes.push(v.name.clone());
                    }
                }
                let iqn = target_iqn(local, cfg, &e.host_group);
                let tpg = tree
                    .iscsi
                    .entry(iqn)
                    .or_insert_with(IscsiTarget::default)
                    .tpgs
                    .entry(tpg_tag)
                    .or_insert_with(|| Tpg {
                        enabled: true,
                        portals: portal_addrs.iter().map(portal_name).collect(),
                        ..Tpg::default()
                    });
                tpg.luns.insert(
                    lun,
                    Lun {
                        backstore: v.name.clone(),
                        group: group.clone(),
                    },
                );
                for h in &members {
                    let chap = h.chap.as_ref().map(|c| Chap {
                        user: c.user.clone(),
                        secret: c.secret.clone(),
                        mutual_user: c.mutual_user.clone().unwrap_or_default(),
                        mutual_secret: c.mutual_secret.clone().unwrap_or_default(),
                    });
                    // CHAP is enforced per target: once any member has it.
                    tpg.authentication |= chap.is_some();
                    for iqn in &h.iqns {
                        let acl = tpg.acls.entry(iqn.clone()).or_insert_with(|| Acl {
                            chap: chap.clone(),
                            ..Acl::default()
                        });
                        acl.luns.insert(lun, lun);
                        // LIO's cheap read-only: per mapped LUN.
                        if v.read_only {
                            acl.write_protected.insert(lun);
                        }
                    }
                }
            }
            Protocol::Nvme => {
                let Some(nsid) = e.nsid else {
                    out.pending
                        .push(format!("export {}: NVMe without an NSID", e.name));
                    continue;
                };
                let Some(grp) = ana.get(v.pool.as_str()).copied() else {
                    continue;
                };
                let nqn = subsystem_nqn(local, cfg, &e.host_group);
                let sub = tree
                    .subsystems
                    .entry(nqn.clone())
                    .or_insert_with(|| Subsystem {
                        allow_any_host: false,
                        cntlid_min,
                        cntlid_max,
                        serial: subsystem_serial(&nqn),
                        ..Subsystem::default()
                    });
                sub.namespaces.insert(
                    nsid,
                    Namespace {
                        device: device_path(v),
                        uuid: v.uuid.to_ascii_lowercase(),
                        nguid: hex_only(&v.nguid),
                        ana_group: grp,
                        enabled: true,
                    },
                );
                if v.read_only {
                    out.pending.push(format!(
                        "export {}: volume {} is read-only but nvmet (Linux 6.1) has no read-only namespace; only the device's own read-only flag protects it",
                        e.name, v.name
                    ));
                }
                for h in &members {
                    for n in &h.nqns {
                        sub.hosts.insert(n.clone());
                        tree.hosts.insert(n.clone());
                    }
                }
                if let Some(p) = out.pools.get_mut(&v.pool) {
                    if !p.volumes.contains(&v.name) {
                        p.volumes.push(v.name.clone());
                    }
                }
            }
        }
    }
    tree.hba = !tree.backstores.is_empty();
    tree.iscsi_fabric = !tree.iscsi.is_empty();
    tree.lu_groups = lu_group_ids(tree, observed);

    if !tree.subsystems.is_empty() {
        let ana_states: BTreeMap<u32, _> = ana
            .iter()
            .map(|(pool, g)| {
                let s = out
                    .pools
                    .get(*pool)
                    .map_or(AccessState::Standby, |p| p.state);
                (*g, s.ana())
            })
            .collect();
        let subs: BTreeSet<String> = tree.subsystems.keys().cloned().collect();
        for (k, ip) in portal_addrs.iter().enumerate() {
            let k16 = u16::try_from(k).unwrap_or(u16::MAX / 4);
            let id = PORT_BASE
                .saturating_add(k16.saturating_mul(2))
                .saturating_add(index16);
            tree.ports.insert(
                id,
                Port {
                    trtype: "tcp".into(),
                    adrfam: if ip.is_ipv4() { "ipv4" } else { "ipv6" }.into(),
                    traddr: ip.to_string(),
                    trsvcid: NVME_PORT.to_string(),
                    ana: ana_states.clone(),
                    subsystems: subs.clone(),
                },
            );
        }
    }
    out
}

/// The LU groups the tree's backstores name, with ids: the id configfs
/// already has for that name (an id cannot change in place), else the
/// lowest free one from [`LU_GP_BASE`].
fn lu_group_ids(tree: &Tree, observed: &Tree) -> BTreeMap<String, u16> {
    let wanted: BTreeSet<&str> = tree
        .backstores
        .values()
        .filter_map(|b| b.lu_group.as_deref())
        .collect();
    let mut out = BTreeMap::new();
    let mut taken: BTreeSet<u16> = BTreeSet::new();
    for name in &wanted {
        if let Some(id) = observed.lu_groups.get(*name).copied() {
            if id != 0 && taken.insert(id) {
                out.insert((*name).to_string(), id);
            }
        }
    }
    // Ids of our groups that go away are free only once they are gone;
    // avoiding them keeps the plan free of an rmdir/mkdir ordering.
    taken.extend(observed.lu_groups.values().copied());
    let mut next = LU_GP_BASE;
    for name in wanted {
        if out.contains_key(name) {
            continue;
        }
        while taken.contains(&next) && next < u16::MAX {
            next += 1;
        }
        taken.insert(next);
        out.insert(name.to_string(), next);
    }
    out
}

/// The state flip of one pool applied to an already-built desired state:
/// every backstore of the pool gets `state` in this controller's ALUA group
/// and the pool's ANA group gets it on every port.
pub fn with_pool_state(d: &Desired, pool: &str, state: AccessState) -> Desired {
    let mut out = d.clone();
    let Some(view) = out.pools.get_mut(pool) else {
        return out;
    };
    view.state = state;
    let view = view.clone();
    for v in &view.volumes {
        if let Some(gp) = out
            .tree
            .backstores
            .get_mut(v)
            .and_then(|b| b.groups.get_mut(&out.group))
        {
            gp.state = state.alua();
        }
    }
    if let Some(g) = view.ana_group {
        for port in out.tree.ports.values_mut() {
            if let Some(s) = port.ana.get_mut(&g) {
                *s = state.ana();
            }
        }
    }
    out
}
