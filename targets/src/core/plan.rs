//! `plan(desired, observed)`: the ordered configfs operations that turn the
//! observed tree into the desired one.
//!
//! The kernel accepts only some orders, so the plan has two phases:
//!
//! 1. **Take away**, exposure first: port links, allowed hosts, namespaces,
//!    subsystems, ports, ACL mapped LUNs, ACLs, LUNs, portals, TPGs, targets,
//!    port groups, backstores. Nothing is removed while something still links
//!    to it (configfs refuses `rmdir` of a non-empty group, LIO of a linked
//!    backstore).
//! 2. **Build**, foundations first: nvmet hosts, backstores (enable, serial
//!    before any LUN exports them), port groups (state only once the device
//!    is configured), targets (LUNs, ACLs, then `enable` last so no host sees
//!    a half-built target), subsystems (namespaces enabled once complete),
//!    ports (address before the first subsystem link, which starts the
//!    listener), then unused ANA groups go.
//!
//! Objects whose identity cannot change in place (a backstore's device or
//! serial, a port group's id) are taken away and built again; everything
//! else is one `write`. A plan against an observed tree equal to the desired
//! one is empty: that is what makes a restart or a replay safe.

use super::model::{path, Backstore, IscsiTarget, Namespace, Port, Subsystem, TgPtGp, Tpg, Tree};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// One configfs operation; paths are relative to the configfs root.
#[derive(Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Step {
    /// Create a config group (`mkdir`).
    Mkdir {
        /// The new directory.
        path: String,
    },
    /// Remove an empty config group (`rmdir`).
    Rmdir {
        /// The directory.
        path: String,
    },
    /// Write an attribute.
    Write {
        /// The attribute file.
        path: String,
        /// The value (a newline is not added).
        value: String,
    },
    /// Create a configfs link (`ln -s target link`).
    Symlink {
        /// The new link.
        link: String,
        /// The config item it points to.
        target: String,
    },
    /// Remove a configfs link.
    Unlink {
        /// The link.
        path: String,
    },
}

impl Step {
    fn mkdir(p: String) -> Step {
        Step::Mkdir { path: p }
    }
    fn rmdir(p: String) -> Step {
        Step::Rmdir { path: p }
    }
    fn write(p: String, v: impl Into<String>) -> Step {
        Step::Write {
            path: p,
            value: v.into(),
        }
    }
    fn link(link: String, target: String) -> Step {
        Step::Symlink { link, target }
    }
    fn unlink(p: String) -> Step {
        Step::Unlink { path: p }
    }

    /// True for writes of secrets, which are never shown.
    pub fn is_secret(&self) -> bool {
        matches!(self, Step::Write { path, .. } if path.ends_with("/password") || path.ends_with("/password_mutual"))
    }

    /// The path the step acts on.
    pub fn path(&self) -> &str {
        match self {
            Step::Mkdir { path }
            | Step::Rmdir { path }
            | Step::Write { path, .. }
            | Step::Unlink { path } => path,
            Step::Symlink { link, .. } => link,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Step::Mkdir { path } => write!(f, "mkdir {path}"),
            Step::Rmdir { path } => write!(f, "rmdir {path}"),
            Step::Write { path, .. } if self.is_secret() => write!(f, "write {path} = ***"),
            Step::Write { path, value } => write!(f, "write {path} = {value}"),
            Step::Symlink { link, target } => write!(f, "symlink {link} -> {target}"),
            Step::Unlink { path } => write!(f, "unlink {path}"),
        }
    }
}

impl fmt::Debug for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Serialises a step list for RPC answers with secrets masked.
pub fn masked(steps: &[Step]) -> Vec<String> {
    steps.iter().map(ToString::to_string).collect()
}

/// The configfs object a failed step leaves broken: the group it makes or
/// removes, the link it makes or removes, or the group holding the
/// attribute it writes.
pub fn object_of(step: &Step) -> &str {
    match step {
        Step::Write { path, .. } => path.rsplit_once('/').map_or(path.as_str(), |(dir, _)| dir),
        other => other.path(),
    }
}

/// True when `p` is `obj` or lies under it.
fn within(p: &str, obj: &str) -> bool {
    p.strip_prefix(obj)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// The index in `broken` of the first object `step` depends on: it acts
/// inside it, links to it, or (an `rmdir`) removes a group that still holds
/// it. Such a step would fail too, or half-build an object, so a reconcile
/// leaves it out and goes on with the rest of the plan.
pub fn blocked_by(step: &Step, broken: &[&str]) -> Option<usize> {
    broken.iter().position(|b| {
        within(step.path(), b)
            || matches!(step, Step::Symlink { target, .. } if within(target, b))
            || matches!(step, Step::Rmdir { path } if within(b, path))
    })
}

/// The ordered steps that turn `observed` into `desired`. Both trees must
/// hold only objects Duplex manages (see `Scope`).
pub fn plan(desired: &Tree, observed: &Tree) -> Vec<Step> {
    let mut p = Planner {
        steps: Vec::new(),
        cur: observed.clone(),
    };
    p.take_away(desired);
    p.build(desired);
    p.steps
}

struct Planner {
    steps: Vec<Step>,
    /// The observed tree as it will be after the steps so far.
    cur: Tree,
}

impl Planner {
    fn push(&mut self, s: Step) {
        self.steps.push(s);
    }

    // ---------------------------------------------------------------- phase 1

    fn take_away(&mut self, want: &Tree) {
        // Backstores that must be rebuilt: LUNs on them go first.
        let rebuild_bs: BTreeSet<String> = self
            .cur
            .backstores
            .iter()
            .filter(|(name, bs)| match want.backstores.get(*name) {
                None => true,
                Some(w) => w.dev != bs.dev || w.serial != bs.serial || !bs.enabled,
            })
            .map(|(n, _)| n.clone())
            .collect();
        // Namespaces whose identity fields change need disabling, which is
        // a change of their subsystem, not a removal.
        self.take_away_nvmet(want);
        self.take_away_iscsi(want, &rebuild_bs);
        self.take_away_backstores(want, &rebuild_bs);
        self.take_away_lu_groups(want);
    }

    /// LU groups no longer wanted, or with another id (set once): LIO
    /// moves their members back to its default group.
    fn take_away_lu_groups(&mut self, want: &Tree) {
        for (name, id) in self.cur.lu_groups.clone() {
            if want.lu_groups.get(&name) == Some(&id) {
                continue;
            }
            self.push(Step::rmdir(path::lu_group(&name)));
            self.cur.lu_groups.remove(&name);
            for b in self.cur.backstores.values_mut() {
                if b.lu_group.as_deref() == Some(name.as_str()) {
                    b.lu_group = None;
                }
            }
        }
    }

    fn take_away_nvmet(&mut self, want: &Tree) {
        // Port links first: they are what hosts see.
        let ports: Vec<u16> = self.cur.ports.keys().copied().collect();
        for id in &ports {
            let Some(port) = self.cur.ports.get(id).cloned() else {
                continue;
            };
            let wport = want.ports.get(id);
            let readdress = wport.is_some_and(|w| !w.same_address(&port));
            for nqn in &port.subsystems {
                let keep = !readdress
                    && wport.is_some_and(|w| w.subsystems.contains(nqn))
                    && want.subsystems.contains_key(nqn);
                if !keep {
                    self.push(Step::unlink(path::port_subsystem(*id, nqn)));
                    if let Some(p) = self.cur.ports.get_mut(id) {
                        p.subsystems.remove(nqn);
                    }
                }
            }
            if wport.is_none() {
                for grp in port.ana.keys() {
                    self.push(Step::rmdir(path::ana_group(*id, *grp)));
                }
                self.push(Step::rmdir(path::port(*id)));
                self.cur.ports.remove(id);
            }
        }
        // Subsystems: allowed hosts, namespaces, then the subsystem.
        let subs: Vec<String> = self.cur.subsystems.keys().cloned().collect();
        for nqn in &subs {
            let Some(sub) = self.cur.subsystems.get(nqn).cloned() else {
                continue;
            };
            let wsub = want.subsystems.get(nqn);
            for host in &sub.hosts {
                if !wsub.is_some_and(|w| w.hosts.contains(host)) {
                    self.push(Step::unlink(path::allowed_host(nqn, host)));
                    if let Some(s) = self.cur.subsystems.get_mut(nqn) {
                        s.hosts.remove(host);
                    }
                }
            }
            for (nsid, ns) in &sub.namespaces {
                let wns = wsub.and_then(|w| w.namespaces.get(nsid));
                let identity_changes = wns.is_some_and(|w| {
                    w.device != ns.device || w.uuid != ns.uuid || w.nguid != ns.nguid
                });
                if ns.enabled && (wns.is_none() || identity_changes) {
                    self.push(Step::write(
                        format!("{}/enable", path::namespace(nqn, *nsid)),
                        "0",
                    ));
                    if let Some(n) = self
                        .cur
                        .subsystems
                        .get_mut(nqn)
                        .and_then(|s| s.namespaces.get_mut(nsid))
                    {
                        n.enabled = false;
                    }
                }
                if wns.is_none() {
                    self.push(Step::rmdir(path::namespace(nqn, *nsid)));
                    if let Some(s) = self.cur.subsystems.get_mut(nqn) {
                        s.namespaces.remove(nsid);
                    }
                }
            }
            if wsub.is_none() {
                self.push(Step::rmdir(path::subsystem(nqn)));
                self.cur.subsystems.remove(nqn);
            }
        }
        // Host entries nobody links to any more.
        let linked: BTreeSet<&String> = self
            .cur
            .subsystems
            .values()
            .flat_map(|s| s.hosts.iter())
            .collect();
        let gone: Vec<String> = self
            .cur
            .hosts
            .iter()
            .filter(|h| !want.hosts.contains(*h) && !linked.contains(h))
            .cloned()
            .collect();
        for h in gone {
            self.push(Step::rmdir(path::host(&h)));
            self.cur.hosts.remove(&h);
        }
    }

    fn take_away_iscsi(&mut self, want: &Tree, rebuild_bs: &BTreeSet<String>) {
        let iqns: Vec<String> = self.cur.iscsi.keys().cloned().collect();
        for iqn in &iqns {
            let Some(target) = self.cur.iscsi.get(iqn).cloned() else {
                continue;
            };
            let wtarget = want.iscsi.get(iqn);
            for (tag, tpg) in &target.tpgs {
                let wtpg = wtarget.and_then(|t| t.tpgs.get(tag));
                match wtpg {
                    None => {
                        self.remove_tpg(iqn, *tag, tpg);
                        if let Some(t) = self.cur.iscsi.get_mut(iqn) {
                            t.tpgs.remove(tag);
                        }
                    }
                    Some(w) => self.trim_tpg(iqn, *tag, w, rebuild_bs),
                }
            }
            if wtarget.is_none() {
                self.push(Step::rmdir(path::target(iqn)));
                self.cur.iscsi.remove(iqn);
            }
        }
    }

    /// Tears a whole TPG down: disable, mapped LUNs, ACLs, LUNs, portals.
    fn remove_tpg(&mut self, iqn: &str, tag: u16, tpg: &Tpg) {
        if tpg.enabled {
            self.push(Step::write(format!("{}/enable", path::tpg(iqn, tag)), "0"));
        }
        for (init, acl) in &tpg.acls {
            for mlun in acl.luns.keys() {
                self.push(Step::unlink(path::mapped_lun_link(iqn, tag, init, *mlun)));
                self.push(Step::rmdir(path::mapped_lun(iqn, tag, init, *mlun)));
            }
            self.push(Step::rmdir(path::acl(iqn, tag, init)));
        }
        for (n, lun) in &tpg.luns {
            self.push(Step::unlink(path::lun_link(iqn, tag, *n, &lun.backstore)));
            self.push(Step::rmdir(path::lun(iqn, tag, *n)));
        }
        for portal in &tpg.portals {
            self.push(Step::rmdir(path::portal(iqn, tag, portal)));
        }
        self.push(Step::rmdir(path::tpg(iqn, tag)));
    }

    /// Removes what a kept TPG has but should not.
    fn trim_tpg(&mut self, iqn: &str, tag: u16, want: &Tpg, rebuild_bs: &BTreeSet<String>) {
        let Some(tpg) = self
            .cur
            .iscsi
            .get(iqn)
            .and_then(|t| t.tpgs.get(&tag))
            .cloned()
        else {
            return;
        };
        // LUNs to take away: gone, on another backstore, or on one rebuilt.
        let gone_luns: BTreeSet<u32> = tpg
            .luns
            .iter()
            .filter(|(n, lun)| match want.luns.get(*n) {
                None => true,
                Some(w) => w.backstore != lun.backstore || rebuild_bs.contains(&lun.backstore),
            })
            .map(|(n, _)| *n)
            .collect();
        let mut next = tpg.clone();
        for (init, acl) in &tpg.acls {
            let wacl = want.acls.get(init);
            for (mlun, tlun) in &acl.luns {
                let keep = wacl.is_some_and(|w| w.luns.get(mlun) == Some(tlun))
                    && !gone_luns.contains(tlun);
                if !keep {
                    self.push(Step::unlink(path::mapped_lun_link(iqn, tag, init, *mlun)));
                    self.push(Step::rmdir(path::mapped_lun(iqn, tag, init, *mlun)));
                    if let Some(a) = next.acls.get_mut(init) {
                        a.luns.remove(mlun);
                        a.write_protected.remove(mlun);
                    }
                }
            }
            if wacl.is_none() {
                self.push(Step::rmdir(path::acl(iqn, tag, init)));
                next.acls.remove(init);
            }
        }
        for n in &gone_luns {
            if let Some(lun) = tpg.luns.get(n) {
                self.push(Step::unlink(path::lun_link(iqn, tag, *n, &lun.backstore)));
                self.push(Step::rmdir(path::lun(iqn, tag, *n)));
                next.luns.remove(n);
            }
        }
        for portal in &tpg.portals {
            if !want.portals.contains(portal) {
                self.push(Step::rmdir(path::portal(iqn, tag, portal)));
                next.portals.remove(portal);
            }
        }
        if let Some(t) = self.cur.iscsi.get_mut(iqn) {
            t.tpgs.insert(tag, next);
        }
    }

    fn take_away_backstores(&mut self, want: &Tree, rebuild_bs: &BTreeSet<String>) {
        let names: Vec<String> = self.cur.backstores.keys().cloned().collect();
        for name in &names {
            let Some(bs) = self.cur.backstores.get(name).cloned() else {
                continue;
            };
            let rebuild = rebuild_bs.contains(name);
            let wbs = want.backstores.get(name);
            for (gname, gp) in &bs.groups {
                // A group id cannot change once set: rebuild the group.
                let keep = !rebuild
                    && wbs
                        .and_then(|w| w.groups.get(gname))
                        .is_some_and(|w| w.id == gp.id);
                if !keep {
                    self.push(Step::rmdir(path::tg_pt_gp(name, gname)));
                    if let Some(b) = self.cur.backstores.get_mut(name) {
                        b.groups.remove(gname);
                    }
                    // LIO moves the group's LUNs to default_tg_pt_gp.
                    self.move_luns_to_default(name, gname);
                }
            }
            if rebuild {
                self.push(Step::rmdir(path::backstore(name)));
                self.cur.backstores.remove(name);
            }
        }
    }

    fn move_luns_to_default(&mut self, bs: &str, group: &str) {
        for t in self.cur.iscsi.values_mut() {
            for tpg in t.tpgs.values_mut() {
                for lun in tpg.luns.values_mut() {
                    if lun.backstore == bs && lun.group == group {
                        lun.group = "default_tg_pt_gp".into();
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------- phase 2

    fn build(&mut self, want: &Tree) {
        for h in &want.hosts {
            if !self.cur.hosts.contains(h) {
                self.push(Step::mkdir(path::host(h)));
            }
        }
        if !want.backstores.is_empty() && !self.cur.hba {
            self.push(Step::mkdir(path::hba()));
        }
        // LU groups before the backstores join them.
        for (name, id) in &want.lu_groups {
            if !self.cur.lu_groups.contains_key(name) {
                self.push(Step::mkdir(path::lu_group(name)));
                self.push(Step::write(
                    format!("{}/lu_gp_id", path::lu_group(name)),
                    id.to_string(),
                ));
            }
        }
        for (name, bs) in &want.backstores {
            let have = self.cur.backstores.get(name).cloned();
            self.build_backstore(name, bs, have.as_ref());
        }
        if !want.iscsi.is_empty() && !self.cur.iscsi_fabric {
            self.push(Step::mkdir(path::iscsi_fabric()));
        }
        for (iqn, t) in &want.iscsi {
            let have = self.cur.iscsi.get(iqn).cloned();
            self.build_target(iqn, t, have.as_ref());
        }
        for (nqn, s) in &want.subsystems {
            let have = self.cur.subsystems.get(nqn).cloned();
            self.build_subsystem(nqn, s, have.as_ref());
        }
        for (id, port) in &want.ports {
            let have = self.cur.ports.get(id).cloned();
            self.build_port(*id, port, have.as_ref());
        }
        // ANA groups no namespace uses any more, once namespaces moved.
        for (id, port) in &self.cur.ports.clone() {
            if let Some(w) = want.ports.get(id) {
                for grp in port.ana.keys() {
                    if !w.ana.contains_key(grp) {
                        self.push(Step::rmdir(path::ana_group(*id, *grp)));
                    }
                }
            }
        }
    }

    fn build_backstore(&mut self, name: &str, want: &Backstore, have: Option<&Backstore>) {
        let dir = path::backstore(name);
        if have.is_none() {
            self.push(Step::mkdir(dir.clone()));
            self.push(Step::write(
                format!("{dir}/control"),
                format!("udev_path={}", want.dev),
            ));
            // The informational copy that observation reads back.
            self.push(Step::write(format!("{dir}/udev_path"), want.dev.clone()));
            self.push(Step::write(format!("{dir}/enable"), "1"));
            // Before any LUN exports it: LIO refuses the serial after.
            self.push(Step::write(
                format!("{dir}/wwn/vpd_unit_serial"),
                want.serial.clone(),
            ));
        }
        for (gname, gp) in &want.groups {
            let gdir = path::tg_pt_gp(name, gname);
            match have.and_then(|h| h.groups.get(gname)) {
                None => {
                    self.push(Step::mkdir(gdir.clone()));
                    self.push(Step::write(
                        format!("{gdir}/tg_pt_gp_id"),
                        gp.id.to_string(),
                    ));
                    self.push(Step::write(
                        format!("{gdir}/alua_access_type"),
                        gp.access_type.to_string(),
                    ));
                    self.push(Step::write(
                        format!("{gdir}/alua_access_state"),
                        gp.state.code().to_string(),
                    ));
                    self.follow_lu_group(name, gp);
                }
                Some(h) => {
                    if h.access_type != gp.access_type {
                        self.push(Step::write(
                            format!("{gdir}/alua_access_type"),
                            gp.access_type.to_string(),
                        ));
                    }
                    // A member whose state an earlier write of this plan
                    // already moved (`follow_lu_group`) is not written.
                    let now = self
                        .cur
                        .backstores
                        .get(name)
                        .and_then(|b| b.groups.get(gname))
                        .map_or(h.state, |g| g.state);
                    if now != gp.state || h.access_type != gp.access_type {
                        self.push(Step::write(
                            format!("{gdir}/alua_access_state"),
                            gp.state.code().to_string(),
                        ));
                        self.follow_lu_group(name, gp);
                    }
                }
            }
        }
        // After `enable` (LIO ignores the write before) and after the port
        // groups, so joining never changes a state.
        let have_lu = have.and_then(|h| h.lu_group.as_deref());
        if want.lu_group.as_deref() != have_lu {
            self.push(Step::write(
                format!("{dir}/alua_lu_gp"),
                want.lu_group.clone().unwrap_or_else(|| "NULL".into()),
            ));
        }
    }

    /// What LIO does after a state write on `bs`'s port group: when `bs`
    /// is in an LU group, the port group with the same id on every member
    /// takes the state too.
    fn follow_lu_group(&mut self, bs: &str, gp: &TgPtGp) {
        let Some(lu) = self.cur.backstores.get(bs).and_then(|b| b.lu_group.clone()) else {
            return;
        };
        for b in self.cur.backstores.values_mut() {
            if b.lu_group.as_deref() == Some(lu.as_str()) {
                for g in b.groups.values_mut().filter(|g| g.id == gp.id) {
                    g.state = gp.state;
                }
            }
        }
    }

    fn build_target(&mut self, iqn: &str, want: &IscsiTarget, have: Option<&IscsiTarget>) {
        if have.is_none() {
            self.push(Step::mkdir(path::target(iqn)));
        }
        for (tag, tpg) in &want.tpgs {
            let htpg = have.and_then(|h| h.tpgs.get(tag)).cloned();
            self.build_tpg(iqn, *tag, tpg, htpg.as_ref());
        }
    }

    fn build_tpg(&mut self, iqn: &str, tag: u16, want: &Tpg, have: Option<&Tpg>) {
        let dir = path::tpg(iqn, tag);
        // A new TPG comes with LIO's defaults: CHAP enforced, no demo mode.
        let empty = Tpg {
            authentication: true,
            ..Tpg::default()
        };
        if have.is_none() {
            self.push(Step::mkdir(dir.clone()));
        }
        let h = have.unwrap_or(&empty);
        if h.generate_node_acls != want.generate_node_acls {
            self.push(Step::write(
                format!("{dir}/attrib/generate_node_acls"),
                bit(want.generate_node_acls),
            ));
        }
        if h.authentication != want.authentication {
            self.push(Step::write(
                format!("{dir}/attrib/authentication"),
                bit(want.authentication),
            ));
        }
        for portal in &want.portals {
            if !h.portals.contains(portal) {
                self.push(Step::mkdir(path::portal(iqn, tag, portal)));
            }
        }
        for (n, lun) in &want.luns {
            match h.luns.get(n) {
                None => {
                    self.push(Step::mkdir(path::lun(iqn, tag, *n)));
                    self.push(Step::link(
                        path::lun_link(iqn, tag, *n, &lun.backstore),
                        path::backstore(&lun.backstore),
                    ));
                    self.push(Step::write(
                        format!("{}/alua_tg_pt_gp", path::lun(iqn, tag, *n)),
                        lun.group.clone(),
                    ));
                }
                Some(hl) if hl.group != lun.group => {
                    self.push(Step::write(
                        format!("{}/alua_tg_pt_gp", path::lun(iqn, tag, *n)),
                        lun.group.clone(),
                    ));
                }
                Some(_) => {}
            }
        }
        for (init, acl) in &want.acls {
            let hacl = h.acls.get(init);
            let adir = path::acl(iqn, tag, init);
            if hacl.is_none() {
                self.push(Step::mkdir(adir.clone()));
            }
            let hchap = hacl.and_then(|a| a.chap.clone()).unwrap_or_default();
            let wchap = acl.chap.clone().unwrap_or_default();
            for (file, w, h) in [
                ("userid", &wchap.user, &hchap.user),
                ("password", &wchap.secret, &hchap.secret),
                ("userid_mutual", &wchap.mutual_user, &hchap.mutual_user),
                (
                    "password_mutual",
                    &wchap.mutual_secret,
                    &hchap.mutual_secret,
                ),
            ] {
                if w != h {
                    self.push(Step::write(format!("{adir}/auth/{file}"), w.clone()));
                }
            }
            for (mlun, tlun) in &acl.luns {
                let linked = hacl.and_then(|a| a.luns.get(mlun)) == Some(tlun);
                if !linked {
                    self.push(Step::mkdir(path::mapped_lun(iqn, tag, init, *mlun)));
                    self.push(Step::link(
                        path::mapped_lun_link(iqn, tag, init, *mlun),
                        path::lun(iqn, tag, *tlun),
                    ));
                }
                // After the link: the kernel keeps the flag on the link's
                // entry (a write before it is lost), and a new link starts
                // writable (the TPG's prod_mode_write_protect is 0).
                let have = linked && hacl.is_some_and(|a| a.write_protected.contains(mlun));
                let want = acl.write_protected.contains(mlun);
                if have != want {
                    self.push(Step::write(
                        format!("{}/write_protect", path::mapped_lun(iqn, tag, init, *mlun)),
                        bit(want),
                    ));
                }
            }
        }
        if h.enabled != want.enabled {
            self.push(Step::write(format!("{dir}/enable"), bit(want.enabled)));
        }
    }

    fn build_subsystem(&mut self, nqn: &str, want: &Subsystem, have: Option<&Subsystem>) {
        let dir = path::subsystem(nqn);
        // mkdir gives the kernel's defaults: no host allowed, ids 1..0xffef.
        let fresh = Subsystem {
            allow_any_host: false,
            cntlid_min: 1,
            cntlid_max: 0xffef,
            ..Subsystem::default()
        };
        if have.is_none() {
            self.push(Step::mkdir(dir.clone()));
            if !want.serial.is_empty() {
                self.push(Step::write(
                    format!("{dir}/attr_serial"),
                    want.serial.clone(),
                ));
            }
        }
        let h = have.unwrap_or(&fresh);
        if h.allow_any_host != want.allow_any_host {
            self.push(Step::write(
                format!("{dir}/attr_allow_any_host"),
                bit(want.allow_any_host),
            ));
        }
        // The kernel keeps min <= max at every write: raise max before min.
        let min_step = (h.cntlid_min != want.cntlid_min).then(|| {
            Step::write(
                format!("{dir}/attr_cntlid_min"),
                want.cntlid_min.to_string(),
            )
        });
        let max_step = (h.cntlid_max != want.cntlid_max).then(|| {
            Step::write(
                format!("{dir}/attr_cntlid_max"),
                want.cntlid_max.to_string(),
            )
        });
        if want.cntlid_min > h.cntlid_max {
            self.steps.extend(max_step);
            self.steps.extend(min_step);
        } else {
            self.steps.extend(min_step);
            self.steps.extend(max_step);
        }
        for (nsid, ns) in &want.namespaces {
            self.build_namespace(nqn, *nsid, ns, h.namespaces.get(nsid));
        }
        for host in &want.hosts {
            if !h.hosts.contains(host) {
                self.push(Step::link(path::allowed_host(nqn, host), path::host(host)));
            }
        }
    }

    fn build_namespace(
        &mut self,
        nqn: &str,
        nsid: u32,
        want: &Namespace,
        have: Option<&Namespace>,
    ) {
        let dir = path::namespace(nqn, nsid);
        let empty = Namespace::default();
        if have.is_none() {
            self.push(Step::mkdir(dir.clone()));
        }
        let h = have.unwrap_or(&empty);
        if h.device != want.device {
            self.push(Step::write(
                format!("{dir}/device_path"),
                want.device.clone(),
            ));
        }
        if h.uuid != want.uuid {
            self.push(Step::write(format!("{dir}/device_uuid"), want.uuid.clone()));
        }
        if h.nguid != want.nguid {
            self.push(Step::write(
                format!("{dir}/device_nguid"),
                want.nguid.clone(),
            ));
        }
        // nvmet lets ana_grpid change while the namespace is enabled.
        if h.ana_group != want.ana_group {
            self.push(Step::write(
                format!("{dir}/ana_grpid"),
                want.ana_group.to_string(),
            ));
        }
        if h.enabled != want.enabled {
            self.push(Step::write(format!("{dir}/enable"), bit(want.enabled)));
        }
    }

    fn build_port(&mut self, id: u16, want: &Port, have: Option<&Port>) {
        let dir = path::port(id);
        let empty = Port::default();
        if have.is_none() {
            self.push(Step::mkdir(dir.clone()));
        }
        let h = have.unwrap_or(&empty);
        for (file, w, hv) in [
            ("addr_trtype", &want.trtype, &h.trtype),
            ("addr_adrfam", &want.adrfam, &h.adrfam),
            ("addr_traddr", &want.traddr, &h.traddr),
            ("addr_trsvcid", &want.trsvcid, &h.trsvcid),
        ] {
            if w != hv {
                self.push(Step::write(format!("{dir}/{file}"), w.clone()));
            }
        }
        let hana: BTreeMap<u32, _> = h.ana.clone();
        for (grp, state) in &want.ana {
            match hana.get(grp) {
                None => {
                    self.push(Step::mkdir(path::ana_group(id, *grp)));
                    self.push(Step::write(
                        format!("{}/ana_state", path::ana_group(id, *grp)),
                        state.word(),
                    ));
                }
                Some(s) if s != state => {
                    self.push(Step::write(
                        format!("{}/ana_state", path::ana_group(id, *grp)),
                        state.word(),
                    ));
                }
                Some(_) => {}
            }
        }
        for nqn in &want.subsystems {
            if !h.subsystems.contains(nqn) {
                self.push(Step::link(
                    path::port_subsystem(id, nqn),
                    path::subsystem(nqn),
                ));
            }
        }
    }
}

fn bit(b: bool) -> &'static str {
    if b {
        "1"
    } else {
        "0"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TPG: &str = "target/iscsi/iqn.2026-11.io.duplex:x.g1/tpgt_1";
    const BS: &str = "target/core/iblock_0/v1";

    #[test]
    fn a_failed_write_breaks_the_group_that_holds_it() {
        let s = Step::write(format!("{BS}/udev_path"), "/dev/x");
        assert_eq!(object_of(&s), BS);
        assert_eq!(
            object_of(&Step::mkdir(format!("{TPG}/np/a:3260"))),
            format!("{TPG}/np/a:3260")
        );
    }

    #[test]
    fn steps_inside_linking_to_or_removing_a_broken_object_are_blocked() {
        let np = format!("{TPG}/np/10.0.0.9:3260");
        let broken = [BS, np.as_str()];
        // Inside the backstore, and a LUN linking to it.
        assert_eq!(
            blocked_by(&Step::write(format!("{BS}/enable"), "1"), &broken),
            Some(0)
        );
        let lun = Step::link(format!("{TPG}/lun/lun_0/x"), BS.to_string());
        assert_eq!(blocked_by(&lun, &broken), Some(0));
        // The TPG that holds the failed portal cannot be removed.
        assert_eq!(blocked_by(&Step::rmdir(TPG.to_string()), &broken), Some(1));
        // Everything else goes on: the TPG's other parts, its enable, a
        // name that only starts like the backstore's.
        assert_eq!(
            blocked_by(&Step::mkdir(format!("{TPG}/acls/iqn.h")), &broken),
            None
        );
        assert_eq!(
            blocked_by(&Step::write(format!("{TPG}/enable"), "1"), &broken),
            None
        );
        assert_eq!(blocked_by(&Step::mkdir(format!("{BS}2")), &broken), None);
    }
}
