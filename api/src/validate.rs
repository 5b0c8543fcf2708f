//! Validation of one change against the state left by the changes before it.
//!
//! Changes of one `config.apply` are checked in order, each against the
//! working state that already holds the earlier ones, so a batch may create a
//! pool and then a volume in it, or delete an export and then its volume.
//! Every error names the field (`changes[i].object.<field>`) and the reason.

use crate::change::Violation;
use crate::model::{
    Cluster, Config, Controller, Disk, Export, FloatingIp, Host, HostGroup, Kind, Layout, Object,
    Pool, Protocol, Settings, User, Volume,
};
use crate::syntax::{
    check_chap_secret, check_chap_user, check_ifname, check_iqn, check_naa_wwn, check_name,
    check_nguid, check_nqn, check_unit_serial, check_uuid, IfAddr,
};

/// Highest LUN LIO accepts.
pub const MAX_LUN: u32 = 16_383;

type V = Result<(), Violation>;

fn field(at: &str, name: &str) -> String {
    format!("{at}.{name}")
}

fn name_ok(at: &str, name: &str, value: &str) -> V {
    check_name(value).map_err(|r| Violation::invalid(field(at, name), r))
}

/// Sorts a set-like list in place and refuses duplicates, so that equal sets
/// store (and digest) identically whatever order the client sent.
fn normalise_set(at: &str, name: &str, list: &mut [String]) -> V {
    list.sort();
    if let Some(w) = list.windows(2).find(|w| w[0] == w[1]) {
        return Err(Violation::invalid(
            field(at, name),
            format!("{:?} is listed twice", w[0]),
        ));
    }
    Ok(())
}

fn controller_exists(cfg: &Config, at: &str, name: &str, id: &str) -> V {
    if cfg.controllers.contains_key(id) {
        Ok(())
    } else {
        Err(Violation::invalid(
            field(at, name),
            format!("controller {id:?} does not exist"),
        ))
    }
}

/// Puts set-like fields in canonical order; refuses duplicates.
pub fn normalise(at: &str, obj: &mut Object) -> V {
    match obj {
        Object::Disk(d) => normalise_set(at, "seen_by", &mut d.seen_by),
        Object::Pool(p) => normalise_set(at, "disks", &mut p.disks),
        Object::Host(h) => {
            normalise_set(at, "iqns", &mut h.iqns)?;
            normalise_set(at, "nqns", &mut h.nqns)
        }
        Object::HostGroup(g) => normalise_set(at, "hosts", &mut g.hosts),
        Object::Controller(c) => {
            for (name, list) in [
                ("interconnect", &mut c.interconnect),
                ("portals", &mut c.portals),
            ] {
                list.sort();
                if let Some(w) = list.windows(2).find(|w| w[0] == w[1]) {
                    return Err(Violation::invalid(
                        field(at, name),
                        format!("{} is listed twice", w[0]),
                    ));
                }
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Checks an upsert of `obj` (already normalised) against `cfg`, the working
/// state before it. `at` is the path of the object in the request.
pub fn check_upsert(cfg: &Config, at: &str, obj: &Object) -> V {
    match obj {
        Object::Cluster(x) => check_cluster(cfg, at, x),
        Object::Controller(x) => check_controller(cfg, at, x),
        Object::Disk(x) => check_disk(cfg, at, x),
        Object::Pool(x) => check_pool(cfg, at, x),
        Object::Volume(x) => check_volume(cfg, at, x),
        Object::Export(x) => check_export(cfg, at, x),
        Object::Host(x) => check_host(cfg, at, x),
        Object::HostGroup(x) => check_host_group(cfg, at, x),
        Object::FloatingIp(x) => check_floating_ip(cfg, at, x),
        Object::User(x) => check_user(at, x),
        Object::Settings(x) => check_settings(at, x),
    }
}

fn check_cluster(cfg: &Config, at: &str, c: &Cluster) -> V {
    check_uuid(&c.id).map_err(|r| Violation::invalid(field(at, "id"), r))?;
    if c.secret_ref.trim().is_empty() {
        return Err(Violation::invalid(
            field(at, "secret_ref"),
            "must not be empty",
        ));
    }
    if let Some(old) = &cfg.cluster {
        if old.id != c.id {
            return Err(Violation::invalid(
                field(at, "id"),
                format!("the cluster id is {:?} and cannot change", old.id),
            ));
        }
        if c.epoch < old.epoch {
            return Err(Violation::invalid(
                field(at, "epoch"),
                format!(
                    "the cluster epoch only grows (now {}, got {})",
                    old.epoch, c.epoch
                ),
            ));
        }
    }
    let max_owned = cfg
        .pools
        .values()
        .map(|p| p.epoch)
        .chain(cfg.floating_ips.values().map(|f| f.epoch))
        .max()
        .unwrap_or(0);
    if c.epoch < max_owned {
        return Err(Violation::invalid(
            field(at, "epoch"),
            format!("ownership records already carry epoch {max_owned}"),
        ));
    }
    Ok(())
}

/// Where an address is used, for the overlap checks.
struct AddrUse {
    what: String,
    addr: IfAddr,
    interconnect: bool,
}

/// Every address in use, except those of the object being replaced.
fn addresses(cfg: &Config, skip: (Kind, &str)) -> Vec<AddrUse> {
    let mut out = Vec::new();
    for c in cfg.controllers.values() {
        if skip == (Kind::Controller, c.id.as_str()) {
            continue;
        }
        out.push(AddrUse {
            what: format!("controller {:?} management", c.id),
            addr: c.management,
            interconnect: false,
        });
        for a in &c.interconnect {
            out.push(AddrUse {
                what: format!("controller {:?} interconnect", c.id),
                addr: *a,
                interconnect: true,
            });
        }
        for a in &c.portals {
            out.push(AddrUse {
                what: format!("controller {:?} portal", c.id),
                addr: *a,
                interconnect: false,
            });
        }
    }
    for f in cfg.floating_ips.values() {
        if skip == (Kind::FloatingIp, f.name.as_str()) {
            continue;
        }
        out.push(AddrUse {
            what: format!("floating IP {:?}", f.name),
            addr: f.address,
            interconnect: false,
        });
    }
    out
}

/// Checks one address: usable, not used twice, and its subnet does not
/// overlap another subnet unless both are the same front-end subnet (the
/// interconnect never shares a subnet with anything else).
fn check_address(others: &[AddrUse], at: &str, name: &str, a: IfAddr, interconnect: bool) -> V {
    a.check_host()
        .map_err(|r| Violation::invalid(field(at, name), r))?;
    for o in others {
        if o.addr.addr == a.addr {
            return Err(Violation::conflict(
                field(at, name),
                format!("{} is already used by {}", a.addr, o.what),
            ));
        }
        if !o.addr.overlaps(a) {
            continue;
        }
        let same_frontend = !interconnect && !o.interconnect && o.addr.same_subnet(a);
        let same_ic = interconnect && o.interconnect && o.addr.same_subnet(a);
        if !(same_frontend || same_ic) {
            return Err(Violation::conflict(
                field(at, name),
                format!("{a} overlaps {} ({})", o.addr, o.what),
            ));
        }
    }
    Ok(())
}

fn check_controller(cfg: &Config, at: &str, c: &Controller) -> V {
    name_ok(at, "id", &c.id)?;
    if c.name.trim().is_empty() {
        return Err(Violation::invalid(field(at, "name"), "must not be empty"));
    }
    if !cfg.controllers.contains_key(&c.id) && cfg.controllers.len() >= 2 {
        return Err(Violation::invalid(
            field(at, "id"),
            "a cluster has exactly two controllers; both are defined",
        ));
    }
    if c.interconnect.is_empty() || c.interconnect.len() > 2 {
        return Err(Violation::invalid(
            field(at, "interconnect"),
            "must list one or two interconnect addresses (ic0, ic1)",
        ));
    }
    let mut others = addresses(cfg, (Kind::Controller, &c.id));
    check_address(&others, at, "management", c.management, false)?;
    others.push(AddrUse {
        what: format!("controller {:?} management", c.id),
        addr: c.management,
        interconnect: false,
    });
    for (i, a) in c.interconnect.iter().enumerate() {
        check_address(&others, at, &format!("interconnect[{i}]"), *a, true)?;
        others.push(AddrUse {
            what: format!("controller {:?} interconnect", c.id),
            addr: *a,
            interconnect: true,
        });
    }
    if c.portals.len() > 8 {
        return Err(Violation::invalid(
            field(at, "portals"),
            "at most 8 portal addresses per controller",
        ));
    }
    for (i, a) in c.portals.iter().enumerate() {
        check_address(&others, at, &format!("portals[{i}]"), *a, false)?;
        others.push(AddrUse {
            what: format!("controller {:?} portal", c.id),
            addr: *a,
            interconnect: false,
        });
    }
    Ok(())
}

fn check_disk(cfg: &Config, at: &str, d: &Disk) -> V {
    check_naa_wwn(&d.wwn).map_err(|r| Violation::invalid(field(at, "wwn"), r))?;
    if d.serial.trim().is_empty() || d.serial.len() > 64 {
        return Err(Violation::invalid(
            field(at, "serial"),
            "must be 1 to 64 characters",
        ));
    }
    if d.size.bytes() == 0 {
        return Err(Violation::invalid(
            field(at, "size"),
            "must be greater than zero",
        ));
    }
    for (i, c) in d.seen_by.iter().enumerate() {
        controller_exists(cfg, at, &format!("seen_by[{i}]"), c)?;
    }
    if let Some(other) = cfg
        .disks
        .values()
        .find(|o| o.serial == d.serial && o.wwn != d.wwn)
    {
        return Err(Violation::conflict(
            field(at, "serial"),
            format!("serial {:?} is already disk {}", d.serial, other.wwn),
        ));
    }
    // A disk in a pool must stay visible to both controllers and keep its tier.
    if let Some(p) = cfg.pools.values().find(|p| p.disks.contains(&d.wwn)) {
        let all: Vec<&String> = cfg.controllers.keys().collect();
        if all.iter().any(|c| !d.seen_by.contains(c)) {
            return Err(Violation::invalid(
                field(at, "seen_by"),
                format!(
                    "the disk is in pool {:?} and must be seen by every controller",
                    p.name
                ),
            ));
        }
        if p.tier != d.tier {
            return Err(Violation::invalid(
                field(at, "tier"),
                format!("the disk is in pool {:?} of another tier", p.name),
            ));
        }
    }
    Ok(())
}

fn check_pool(cfg: &Config, at: &str, p: &Pool) -> V {
    name_ok(at, "name", &p.name)?;
    let old = cfg.pools.get(&p.name);
    check_ownership(
        cfg,
        at,
        (&p.home, &p.owner, p.epoch),
        old.map(|o| (&*o.owner, o.epoch)),
    )?;
    if let Some(old) = old {
        if p.tier != old.tier {
            return Err(Violation::invalid(
                field(at, "tier"),
                "the tier of a pool cannot change",
            ));
        }
    }
    if let Some(copies) = p.copies {
        if p.layout != Layout::Raid1 {
            return Err(Violation::invalid(
                field(at, "copies"),
                format!(
                    "only a raid1 (mirror) pool has copies; this one is {:?}",
                    p.layout
                ),
            ));
        }
        if !(2..=3).contains(&copies) {
            return Err(Violation::invalid(
                field(at, "copies"),
                format!("a mirror has 2 or 3 copies, not {copies}"),
            ));
        }
        if p.disks.len() < copies as usize {
            return Err(Violation::invalid(
                field(at, "disks"),
                format!("{copies} copies need at least {copies} disks"),
            ));
        }
    }
    if p.disks.len() < p.layout.min_disks() {
        return Err(Violation::invalid(
            field(at, "disks"),
            format!(
                "layout {:?} needs at least {} disks",
                p.layout,
                p.layout.min_disks()
            ),
        ));
    }
    for (i, wwn) in p.disks.iter().enumerate() {
        let f = field(at, &format!("disks[{i}]"));
        let Some(d) = cfg.disks.get(wwn) else {
            return Err(Violation::invalid(
                f,
                format!("disk {wwn:?} does not exist"),
            ));
        };
        if cfg.controllers.keys().any(|c| !d.seen_by.contains(c)) || d.seen_by.len() < 2 {
            return Err(Violation::invalid(
                f,
                format!("disk {wwn} is not seen by both controllers; pools need shared disks"),
            ));
        }
        if d.tier != p.tier {
            return Err(Violation::invalid(
                f,
                format!("disk {wwn} is tier {:?}, the pool is {:?}", d.tier, p.tier),
            ));
        }
        if let Some(other) = cfg
            .pools
            .values()
            .find(|o| o.name != p.name && o.disks.contains(wwn))
        {
            return Err(Violation::conflict(
                f,
                format!("disk {wwn} is already in pool {:?}", other.name),
            ));
        }
    }
    Ok(())
}

fn check_epoch(cfg: &Config, at: &str, epoch: u64) -> V {
    let cluster_epoch = cfg.cluster.as_ref().map_or(0, |c| c.epoch);
    if epoch > cluster_epoch {
        return Err(Violation::invalid(
            field(at, "epoch"),
            format!("greater than the cluster epoch {cluster_epoch}; bump the cluster epoch first"),
        ));
    }
    Ok(())
}

/// The rules of an owned object (a pool, a floating IP): `(home, owner,
/// epoch)` name controllers that exist, and against the `old` `(owner,
/// epoch)` the epoch never shrinks and an ownership change carries a new
/// one, so a stale controller's write cannot move ownership back.
fn check_ownership(
    cfg: &Config,
    at: &str,
    (home, owner, epoch): (&str, &str, u64),
    old: Option<(&str, u64)>,
) -> V {
    controller_exists(cfg, at, "home", home)?;
    controller_exists(cfg, at, "owner", owner)?;
    check_epoch(cfg, at, epoch)?;
    let Some((old_owner, old_epoch)) = old else {
        return Ok(());
    };
    if epoch < old_epoch {
        return Err(Violation::invalid(
            field(at, "epoch"),
            format!("ownership epochs only grow (now {old_epoch}, got {epoch})"),
        ));
    }
    if owner != old_owner && epoch <= old_epoch {
        return Err(Violation::invalid(
            field(at, "epoch"),
            format!(
                "an ownership change must carry a new cluster epoch (greater than {old_epoch})"
            ),
        ));
    }
    Ok(())
}

fn check_volume(cfg: &Config, at: &str, v: &Volume) -> V {
    name_ok(at, "name", &v.name)?;
    if !cfg.pools.contains_key(&v.pool) {
        return Err(Violation::invalid(
            field(at, "pool"),
            format!("pool {:?} does not exist", v.pool),
        ));
    }
    if v.size.bytes() == 0 {
        return Err(Violation::invalid(
            field(at, "size"),
            "must be greater than zero",
        ));
    }
    if v.size.bytes() % 512 != 0 {
        return Err(Violation::invalid(
            field(at, "size"),
            "must be a multiple of 512 bytes",
        ));
    }
    check_unit_serial(&v.serial).map_err(|r| Violation::invalid(field(at, "serial"), r))?;
    check_naa_wwn(&v.wwn).map_err(|r| Violation::invalid(field(at, "wwn"), r))?;
    check_nguid(&v.nguid).map_err(|r| Violation::invalid(field(at, "nguid"), r))?;
    check_uuid(&v.uuid).map_err(|r| Violation::invalid(field(at, "uuid"), r))?;
    if let Some(old) = cfg.volumes.get(&v.name) {
        // Hosts' multipath keys on these; changing them on a live volume
        // would make it a different device behind the host's back.
        for (name, a, b) in [
            ("pool", &old.pool, &v.pool),
            ("serial", &old.serial, &v.serial),
            ("wwn", &old.wwn, &v.wwn),
            ("nguid", &old.nguid, &v.nguid),
            ("uuid", &old.uuid, &v.uuid),
        ] {
            if a != b {
                return Err(Violation::invalid(
                    field(at, name),
                    format!("cannot change ({a:?}) on an existing volume"),
                ));
            }
        }
        if v.size < old.size {
            return Err(Violation::invalid(
                field(at, "size"),
                format!("cannot shrink from {} to {}", old.size, v.size),
            ));
        }
    }
    for o in cfg.volumes.values().filter(|o| o.name != v.name) {
        for (name, a, b) in [
            ("serial", &o.serial, &v.serial),
            ("wwn", &o.wwn, &v.wwn),
            ("nguid", &o.nguid, &v.nguid),
            ("uuid", &o.uuid, &v.uuid),
        ] {
            if a == b {
                return Err(Violation::conflict(
                    field(at, name),
                    format!("{b} is already used by volume {:?}", o.name),
                ));
            }
        }
    }
    if let Some(parent) = &v.parent_snapshot {
        match cfg.volumes.get(parent) {
            None => {
                return Err(Violation::invalid(
                    field(at, "parent_snapshot"),
                    format!("volume {parent:?} does not exist"),
                ))
            }
            Some(p) if p.pool != v.pool => {
                return Err(Violation::invalid(
                    field(at, "parent_snapshot"),
                    format!("{parent:?} is in pool {:?}, not {:?}", p.pool, v.pool),
                ))
            }
            Some(_) if parent == &v.name => {
                return Err(Violation::invalid(
                    field(at, "parent_snapshot"),
                    "a volume cannot be its own parent",
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn check_export(cfg: &Config, at: &str, e: &Export) -> V {
    name_ok(at, "name", &e.name)?;
    if !cfg.volumes.contains_key(&e.volume) {
        return Err(Violation::invalid(
            field(at, "volume"),
            format!("volume {:?} does not exist", e.volume),
        ));
    }
    if !cfg.host_groups.contains_key(&e.host_group) {
        return Err(Violation::invalid(
            field(at, "host_group"),
            format!("host group {:?} does not exist", e.host_group),
        ));
    }
    let (addr_field, addr) = match (e.protocol, e.lun, e.nsid) {
        (Protocol::Iscsi, Some(lun), None) => {
            if lun > MAX_LUN {
                return Err(Violation::invalid(
                    field(at, "lun"),
                    format!("must be 0 to {MAX_LUN}"),
                ));
            }
            ("lun", lun)
        }
        (Protocol::Nvme, None, Some(nsid)) => {
            if nsid == 0 || nsid == u32::MAX {
                return Err(Violation::invalid(
                    field(at, "nsid"),
                    "must be 1 to 4294967294 (0 and 0xffffffff are reserved)",
                ));
            }
            ("nsid", nsid)
        }
        (Protocol::Iscsi, None, _) => {
            return Err(Violation::invalid(field(at, "lun"), "required for iscsi"))
        }
        (Protocol::Iscsi, Some(_), Some(_)) => {
            return Err(Violation::invalid(
                field(at, "nsid"),
                "only for nvme exports",
            ))
        }
        (Protocol::Nvme, _, None) => {
            return Err(Violation::invalid(field(at, "nsid"), "required for nvme"))
        }
        (Protocol::Nvme, Some(_), Some(_)) => {
            return Err(Violation::invalid(
                field(at, "lun"),
                "only for iscsi exports",
            ))
        }
    };
    for o in cfg
        .exports
        .values()
        .filter(|o| o.name != e.name && o.host_group == e.host_group && o.protocol == e.protocol)
    {
        let other = o.lun.or(o.nsid);
        if other == Some(addr) {
            return Err(Violation::conflict(
                field(at, addr_field),
                format!(
                    "{addr_field} {addr} is already used in host group {:?} by export {:?}",
                    e.host_group, o.name
                ),
            ));
        }
        if o.volume == e.volume {
            return Err(Violation::conflict(
                field(at, "volume"),
                format!(
                    "volume {:?} is already exported to host group {:?} by export {:?}",
                    e.volume, e.host_group, o.name
                ),
            ));
        }
    }
    Ok(())
}

fn check_host(cfg: &Config, at: &str, h: &Host) -> V {
    name_ok(at, "name", &h.name)?;
    if h.iqns.is_empty() && h.nqns.is_empty() {
        return Err(Violation::invalid(
            field(at, "iqns"),
            "a host needs at least one IQN or NQN",
        ));
    }
    for (i, iqn) in h.iqns.iter().enumerate() {
        check_iqn(iqn).map_err(|r| Violation::invalid(field(at, &format!("iqns[{i}]")), r))?;
        if let Some(o) = cfg
            .hosts
            .values()
            .find(|o| o.name != h.name && o.iqns.contains(iqn))
        {
            return Err(Violation::conflict(
                field(at, &format!("iqns[{i}]")),
                format!("{iqn} already belongs to host {:?}", o.name),
            ));
        }
    }
    for (i, nqn) in h.nqns.iter().enumerate() {
        check_nqn(nqn).map_err(|r| Violation::invalid(field(at, &format!("nqns[{i}]")), r))?;
        if let Some(o) = cfg
            .hosts
            .values()
            .find(|o| o.name != h.name && o.nqns.contains(nqn))
        {
            return Err(Violation::conflict(
                field(at, &format!("nqns[{i}]")),
                format!("{nqn} already belongs to host {:?}", o.name),
            ));
        }
    }
    if let Some(chap) = &h.chap {
        if h.iqns.is_empty() {
            return Err(Violation::invalid(
                field(at, "chap"),
                "CHAP is for iSCSI; the host has no IQN",
            ));
        }
        check_chap_user(&chap.user).map_err(|r| Violation::invalid(field(at, "chap.user"), r))?;
        check_chap_secret(&chap.secret)
            .map_err(|r| Violation::invalid(field(at, "chap.secret"), r))?;
        match (&chap.mutual_user, &chap.mutual_secret) {
            (None, None) => {}
            (Some(_), None) => {
                return Err(Violation::invalid(
                    field(at, "chap.mutual_secret"),
                    "mutual CHAP needs both mutual_user and mutual_secret",
                ))
            }
            (None, Some(_)) => {
                return Err(Violation::invalid(
                    field(at, "chap.mutual_user"),
                    "mutual CHAP needs both mutual_user and mutual_secret",
                ))
            }
            (Some(user), Some(secret)) => {
                check_chap_user(user)
                    .map_err(|r| Violation::invalid(field(at, "chap.mutual_user"), r))?;
                check_chap_secret(secret)
                    .map_err(|r| Violation::invalid(field(at, "chap.mutual_secret"), r))?;
                // The target would answer with the initiator's own secret,
                // which lets anyone who captured one side impersonate the
                // other (RFC 3720 8.2.1).
                if *secret == chap.secret {
                    return Err(Violation::invalid(
                        field(at, "chap.mutual_secret"),
                        "must differ from the initiator's secret",
                    ));
                }
            }
        }
    }
    Ok(())
}

fn check_host_group(cfg: &Config, at: &str, g: &HostGroup) -> V {
    name_ok(at, "name", &g.name)?;
    for (i, h) in g.hosts.iter().enumerate() {
        if !cfg.hosts.contains_key(h) {
            return Err(Violation::invalid(
                field(at, &format!("hosts[{i}]")),
                format!("host {h:?} does not exist"),
            ));
        }
    }
    Ok(())
}

fn check_floating_ip(cfg: &Config, at: &str, f: &FloatingIp) -> V {
    name_ok(at, "name", &f.name)?;
    check_ifname(&f.interface).map_err(|r| Violation::invalid(field(at, "interface"), r))?;
    let old = cfg.floating_ips.get(&f.name);
    check_ownership(
        cfg,
        at,
        (&f.home, &f.owner, f.epoch),
        old.map(|o| (&*o.owner, o.epoch)),
    )?;
    let others = addresses(cfg, (Kind::FloatingIp, &f.name));
    check_address(&others, at, "address", f.address, false)
}

fn check_user(at: &str, u: &User) -> V {
    name_ok(at, "name", &u.name)?;
    let hash = password_hash::PasswordHash::new(&u.password_hash).map_err(|e| {
        Violation::invalid(
            field(at, "password_hash"),
            format!("not a PHC hash string: {e}"),
        )
    })?;
    if hash.algorithm.as_str() != "argon2id" {
        return Err(Violation::invalid(
            field(at, "password_hash"),
            format!("must be an argon2id hash, not {}", hash.algorithm),
        ));
    }
    Ok(())
}

fn check_settings(at: &str, s: &Settings) -> V {
    for (name, v) in [
        ("hb_interval_ms", s.hb_interval_ms),
        ("ic_timeout_ms", s.ic_timeout_ms),
        ("disk_interval_ms", s.disk_interval_ms),
        ("disk_timeout_ms", s.disk_timeout_ms),
        ("watchdog_timeout_ms", s.watchdog_timeout_ms),
    ] {
        if v == 0 {
            return Err(Violation::invalid(
                field(at, name),
                "must be greater than zero",
            ));
        }
    }
    if s.ic_timeout_ms < s.hb_interval_ms.saturating_mul(3) {
        return Err(Violation::invalid(
            field(at, "ic_timeout_ms"),
            "must be at least three heartbeat intervals, or one lost datagram suspects the partner",
        ));
    }
    // design brief 4.3: the partner's watchdog must have reset it before we
    // declare it dead, with a margin of a few disk heartbeat intervals.
    let needed = s
        .watchdog_timeout_ms
        .saturating_add(s.disk_interval_ms.saturating_mul(3));
    if s.disk_timeout_ms <= needed {
        return Err(Violation::invalid(
            field(at, "disk_timeout_ms"),
            format!("must exceed watchdog_timeout_ms + 3 disk intervals ({needed} ms)"),
        ));
    }
    Ok(())
}

/// Checks that deleting `kind`/`key` leaves no dangling reference.
pub fn check_delete(cfg: &Config, at: &str, kind: Kind, key: &str) -> V {
    if matches!(kind, Kind::Cluster | Kind::Settings) {
        return Err(Violation::invalid(
            at.to_string(),
            format!("the {kind} singleton cannot be deleted"),
        ));
    }
    match referrer(cfg, kind, key) {
        None => Ok(()),
        Some(what) => Err(Violation::conflict(
            at.to_string(),
            format!("{kind} {key:?} is still used by {what}; delete or change that first"),
        )),
    }
}

/// The first object that refers to `kind`/`key`, named as a refused
/// delete names it; the order is the order of the checks.
fn referrer(cfg: &Config, kind: Kind, key: &str) -> Option<String> {
    let named = |what: &str, name: &str| format!("{what} {name:?}");
    let owned_here = |home: &str, owner: &str| home == key || owner == key;
    match kind {
        Kind::Controller => cfg
            .disks
            .values()
            .find(|d| d.seen_by.iter().any(|c| c == key))
            .map(|d| format!("disk {}", d.wwn))
            .or_else(|| {
                let p = cfg.pools.values().find(|p| owned_here(&p.home, &p.owner));
                p.map(|p| named("pool", &p.name))
            })
            .or_else(|| {
                let f = cfg
                    .floating_ips
                    .values()
                    .find(|f| owned_here(&f.home, &f.owner));
                f.map(|f| named("floating IP", &f.name))
            }),
        Kind::Disk => cfg
            .pools
            .values()
            .find(|p| p.disks.iter().any(|d| d == key))
            .map(|p| named("pool", &p.name)),
        Kind::Pool => cfg
            .volumes
            .values()
            .find(|v| v.pool == key)
            .map(|v| named("volume", &v.name)),
        Kind::Volume => cfg
            .exports
            .values()
            .find(|e| e.volume == key)
            .map(|e| named("export", &e.name))
            .or_else(|| {
                let v = cfg
                    .volumes
                    .values()
                    .find(|v| v.parent_snapshot.as_deref() == Some(key));
                v.map(|v| format!("volume {:?} (its parent snapshot)", v.name))
            }),
        Kind::Host => cfg
            .host_groups
            .values()
            .find(|g| g.hosts.iter().any(|h| h == key))
            .map(|g| named("host group", &g.name)),
        Kind::HostGroup => cfg
            .exports
            .values()
            .find(|e| e.host_group == key)
            .map(|e| named("export", &e.name)),
        Kind::Cluster | Kind::Settings | Kind::Export | Kind::FloatingIp | Kind::User => None,
    }
}
