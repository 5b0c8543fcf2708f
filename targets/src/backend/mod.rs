//! The edge to the kernel: the [`TargetBackend`] trait over configfs
//! primitives, the observer that reads our part of the LIO and nvmet trees
//! back into the typed model, and the step applier.
//!
//! Two implementations: [`configfs::ConfigFsBackend`] (real files under a
//! mounted configfs, `/sys/kernel/config` on the appliance) and
//! [`sim::SimBackend`] (an in-memory configfs with the kernel's rules).

pub mod configfs;
pub mod net;
pub mod sim;

use crate::core::desired::{DeviceState, Scope};
use crate::core::model::{
    hex_only, path, Acl, AluaState, AnaState, Backstore, Chap, IscsiTarget, Lun, Namespace, Port,
    Subsystem, TgPtGp, Tpg, Tree, DEFAULT_ANA_GROUP, DEFAULT_LU_GROUP, HBA, LU_GROUP_PREFIX,
};
use crate::core::plan::Step;
use crate::core::pr::{PrAttrs, PR_ATTRS};
use crate::error::{BackendError, ReconcileError};
use serde::Serialize;
use std::collections::BTreeSet;
use std::io;

/// What a directory entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A config group (directory).
    Dir,
    /// An attribute.
    File,
    /// A configfs link.
    Link,
}

/// The configfs primitives, with paths relative to the root. Every method
/// either does what it says or changes nothing and returns the kernel's
/// error; none retries.
pub trait TargetBackend: Send {
    /// Creates a config group; the kernel fills in its attributes and
    /// default groups.
    fn mkdir(&mut self, path: &str) -> io::Result<()>;
    /// Removes an empty config group.
    fn rmdir(&mut self, path: &str) -> io::Result<()>;
    /// Writes an attribute in one `write` call.
    fn write(&mut self, path: &str, value: &str) -> io::Result<()>;
    /// Reads an attribute.
    fn read(&self, path: &str) -> io::Result<String>;
    /// Links `link` to the config item `target`.
    fn symlink(&mut self, link: &str, target: &str) -> io::Result<()>;
    /// Removes a link.
    fn unlink(&mut self, path: &str) -> io::Result<()>;
    /// Lists a directory: names and kinds, sorted by name.
    fn list(&self, path: &str) -> io::Result<Vec<(String, EntryKind)>>;
    /// Where a link points (any form; callers use the last components).
    fn read_link(&self, path: &str) -> io::Result<String>;
    /// True when a block device exists on this controller.
    fn device_present(&self, dev: &str) -> bool;
    /// What a volume's block device is here: missing, present but serving
    /// no data (an `error` table), or serving the volume.
    fn device_state(&self, dev: &str) -> DeviceState {
        if self.device_present(dev) {
            DeviceState::Backed
        } else {
            DeviceState::Missing
        }
    }

    /// Applies steps in order and stops at the first failure. A step whose
    /// path (or link target) is not plain components is refused whatever
    /// validation said upstream: a name must never reach outside its
    /// directory.
    fn apply(&mut self, steps: &[Step]) -> Result<(), ReconcileError> {
        for (index, step) in steps.iter().enumerate() {
            let checked = match step {
                Step::Symlink { link, target } => {
                    check_rel_path(link).and_then(|()| check_rel_path(target))
                }
                other => check_rel_path(other.path()),
            };
            let (op, r) = match (checked, step) {
                (Err(e), _) => ("check", Err(e)),
                (Ok(()), step) => match step {
                    Step::Mkdir { path } => ("mkdir", self.mkdir(path)),
                    Step::Rmdir { path } => ("rmdir", self.rmdir(path)),
                    Step::Write { path, value } => ("write", self.write(path, value)),
                    Step::Symlink { link, target } => ("symlink", self.symlink(link, target)),
                    Step::Unlink { path } => ("unlink", self.unlink(path)),
                },
            };
            if let Err(source) = r {
                return Err(ReconcileError::Step {
                    index,
                    total: steps.len(),
                    step: step.to_string(),
                    source: BackendError::Io {
                        op,
                        path: step.path().to_string(),
                        source,
                    },
                });
            }
        }
        Ok(())
    }
}

/// Refuses a relative configfs path unless every component is a plain
/// name: not empty, not `.` or `..`, no NUL. Names come from the desired
/// state (host NQNs, IQNs, volume names), so this is the last line between
/// a crafted name and a directory outside its parent.
pub fn check_rel_path(path: &str) -> io::Result<()> {
    let bad = path.starts_with('/')
        || path
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == ".." || c.contains('\0'));
    if bad {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refused configfs path {path:?}: every component must be a plain name"),
        ));
    }
    Ok(())
}

/// Our part of configfs as read back, and what else is there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Observed {
    /// The objects Duplex manages.
    pub tree: Tree,
    /// Paths of objects that are not ours (left alone, reported).
    pub foreign: Vec<String>,
}

fn io_err<'a>(op: &'static str, path: &'a str) -> impl FnOnce(io::Error) -> BackendError + 'a {
    move |source| BackendError::Io {
        op,
        path: path.to_string(),
        source,
    }
}

fn read_attr(b: &dyn TargetBackend, path: &str) -> Result<String, BackendError> {
    b.read(path)
        .map(|s| s.trim_end_matches(['\n', '\0']).trim().to_string())
        .map_err(io_err("read", path))
}

fn parse_num<T: std::str::FromStr>(path: &str, s: &str) -> Result<T, BackendError> {
    s.trim().parse().map_err(|_| BackendError::Parse {
        path: path.to_string(),
        content: s.to_string(),
    })
}

/// `alua_access_type` reads as words ("Implicit and Explicit"); 1 is
/// implicit, 2 explicit, 3 both.
fn parse_access_type(path: &str, s: &str) -> Result<u8, BackendError> {
    match s {
        "None" => Ok(0),
        "Implicit" => Ok(1),
        "Explicit" => Ok(2),
        "Implicit and Explicit" => Ok(3),
        other => parse_num(path, other),
    }
}

/// Lists a directory, or nothing when it does not exist (module not loaded).
fn list_opt(b: &dyn TargetBackend, path: &str) -> Result<Vec<(String, EntryKind)>, BackendError> {
    match b.list(path) {
        Ok(v) => Ok(v),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(BackendError::Io {
            op: "list",
            path: path.to_string(),
            source: e,
        }),
    }
}

fn dirs(v: Vec<(String, EntryKind)>) -> impl Iterator<Item = String> {
    v.into_iter()
        .filter(|(_, k)| *k == EntryKind::Dir)
        .map(|(n, _)| n)
}

fn links(v: Vec<(String, EntryKind)>) -> impl Iterator<Item = String> {
    v.into_iter()
        .filter(|(_, k)| *k == EntryKind::Link)
        .map(|(n, _)| n)
}

fn last_components(target: &str, n: usize) -> Vec<&str> {
    let parts: Vec<&str> = target.trim_end_matches('/').split('/').collect();
    parts[parts.len().saturating_sub(n)..].to_vec()
}

/// Reads our part of configfs into the model.
pub fn observe(b: &dyn TargetBackend, scope: &Scope) -> Result<Observed, BackendError> {
    let mut o = Observed::default();
    observe_lio(b, scope, &mut o)?;
    observe_nvmet(b, scope, &mut o)?;
    Ok(o)
}

fn observe_lio(b: &dyn TargetBackend, scope: &Scope, o: &mut Observed) -> Result<(), BackendError> {
    for hba in dirs(list_opt(b, "target/core")?) {
        if hba == HBA {
            o.tree.hba = true;
            continue;
        }
        if hba == "alua" {
            observe_lu_groups(b, o)?;
            continue;
        }
        for dev in dirs(list_opt(b, &format!("target/core/{hba}"))?) {
            o.foreign.push(format!("target/core/{hba}/{dev}"));
        }
    }
    if o.tree.hba {
        let hdir = format!("target/core/{HBA}");
        for name in dirs(list_opt(b, &hdir)?) {
            let dir = format!("{hdir}/{name}");
            let dev = read_attr(b, &format!("{dir}/udev_path"))?;
            let enabled = read_attr(b, &format!("{dir}/enable"))? == "1";
            let sp = format!("{dir}/wwn/vpd_unit_serial");
            let raw = read_attr(b, &sp)?;
            let serial = raw
                .split_once(':')
                .map_or(raw.as_str(), |(_, s)| s)
                .trim()
                .to_string();
            let lp = format!("{dir}/alua_lu_gp");
            let lu_group = parse_lu_group(&read_attr(b, &lp)?);
            let mut bs = Backstore {
                dev,
                serial,
                enabled,
                lu_group,
                ..Backstore::default()
            };
            for gp in dirs(list_opt(b, &format!("{dir}/alua"))?) {
                if gp == "default_tg_pt_gp" {
                    continue;
                }
                let gdir = format!("{dir}/alua/{gp}");
                let idp = format!("{gdir}/tg_pt_gp_id");
                let id_s = read_attr(b, &idp)?;
                // An unset id reads empty: such a group is half built.
                let id = if id_s.is_empty() {
                    0
                } else {
                    parse_num(&idp, &id_s)?
                };
                let tp = format!("{gdir}/alua_access_type");
                let access_type = parse_access_type(&tp, &read_attr(b, &tp)?)?;
                let st = format!("{gdir}/alua_access_state");
                let code: u8 = parse_num(&st, &read_attr(b, &st)?)?;
                let state = AluaState::from_code(code).ok_or_else(|| BackendError::Parse {
                    path: st.clone(),
                    content: code.to_string(),
                })?;
                bs.groups.insert(
                    gp,
                    TgPtGp {
                        id,
                        access_type,
                        state,
                    },
                );
            }
            o.tree.backstores.insert(name, bs);
        }
    }
    let fabric = list_opt(b, "target")?;
    o.tree.iscsi_fabric = fabric
        .iter()
        .any(|(n, k)| n == "iscsi" && *k == EntryKind::Dir);
    for iqn in dirs(list_opt(b, "target/iscsi")?) {
        if iqn == "discovery_auth" {
            continue;
        }
        if !scope.owns_iqn(&iqn) {
            o.foreign.push(format!("target/iscsi/{iqn}"));
            continue;
        }
        let tdir = format!("target/iscsi/{iqn}");
        let mut t = IscsiTarget::default();
        for tpgd in dirs(list_opt(b, &tdir)?) {
            let Some(tag) = tpgd
                .strip_prefix("tpgt_")
                .and_then(|s| s.parse::<u16>().ok())
            else {
                continue;
            };
            t.tpgs
                .insert(tag, observe_tpg(b, &format!("{tdir}/{tpgd}"))?);
        }
        o.tree.iscsi.insert(iqn, t);
    }
    Ok(())
}

/// Our ALUA LU groups, with their ids; anyone else's is foreign.
fn observe_lu_groups(b: &dyn TargetBackend, o: &mut Observed) -> Result<(), BackendError> {
    for name in dirs(list_opt(b, "target/core/alua/lu_gps")?) {
        if name == DEFAULT_LU_GROUP {
            continue;
        }
        let dir = path::lu_group(&name);
        if !name.starts_with(LU_GROUP_PREFIX) {
            o.foreign.push(dir);
            continue;
        }
        let idp = format!("{dir}/lu_gp_id");
        let id_s = read_attr(b, &idp)?;
        // An unset id reads empty: the group is half built.
        let id = if id_s.is_empty() {
            0
        } else {
            parse_num(&idp, &id_s)?
        };
        o.tree.lu_groups.insert(name, id);
    }
    Ok(())
}

/// A device's `alua_lu_gp` ("LU Group Alias: <name>\nLU Group ID: <id>"):
/// the group's name, `None` for LIO's default group or no group.
pub fn parse_lu_group(s: &str) -> Option<String> {
    s.lines()
        .find_map(|line| line.strip_prefix("LU Group Alias:"))
        .map(str::trim)
        .filter(|n| !n.is_empty() && *n != DEFAULT_LU_GROUP)
        .map(str::to_string)
}

fn observe_tpg(b: &dyn TargetBackend, dir: &str) -> Result<Tpg, BackendError> {
    let mut tpg = Tpg {
        enabled: read_attr(b, &format!("{dir}/enable"))? == "1",
        authentication: read_attr(b, &format!("{dir}/attrib/authentication"))? == "1",
        generate_node_acls: read_attr(b, &format!("{dir}/attrib/generate_node_acls"))? == "1",
        ..Tpg::default()
    };
    tpg.portals = dirs(list_opt(b, &format!("{dir}/np"))?).collect();
    for l in dirs(list_opt(b, &format!("{dir}/lun"))?) {
        let Some(n) = l.strip_prefix("lun_").and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let ldir = format!("{dir}/lun/{l}");
        let mut backstore = String::new();
        if let Some(link) = links(list_opt(b, &ldir)?).next() {
            let lp = format!("{ldir}/{link}");
            let target = b.read_link(&lp).map_err(io_err("readlink", &lp))?;
            let parts = last_components(&target, 2);
            // A LUN on someone else's HBA reads as a name we never use.
            backstore = match parts.as_slice() {
                [hba, name] if *hba == HBA => (*name).to_string(),
                _ => target.clone(),
            };
        }
        let gp = read_attr(b, &format!("{ldir}/alua_tg_pt_gp"))?;
        let group = gp
            .lines()
            .find_map(|line| line.strip_prefix("TG Port Alias:"))
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        tpg.luns.insert(n, Lun { backstore, group });
    }
    for init in dirs(list_opt(b, &format!("{dir}/acls"))?) {
        let adir = format!("{dir}/acls/{init}");
        let user = read_attr(b, &format!("{adir}/auth/userid"))?;
        let secret = read_attr(b, &format!("{adir}/auth/password"))?;
        let mutual_user = read_attr(b, &format!("{adir}/auth/userid_mutual"))?;
        let mutual_secret = read_attr(b, &format!("{adir}/auth/password_mutual"))?;
        let chap = Chap {
            user,
            secret,
            mutual_user,
            mutual_secret,
        };
        let mut acl = Acl {
            chap: (chap != Chap::default()).then_some(chap),
            ..Acl::default()
        };
        for m in dirs(list_opt(b, &adir)?) {
            let Some(mlun) = m.strip_prefix("lun_").and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let mdir = format!("{adir}/{m}");
            if let Some(link) = links(list_opt(b, &mdir)?).next() {
                let lp = format!("{mdir}/{link}");
                let target = b.read_link(&lp).map_err(io_err("readlink", &lp))?;
                let last = last_components(&target, 1).first().copied().unwrap_or("");
                if let Some(tlun) = last.strip_prefix("lun_").and_then(|s| s.parse().ok()) {
                    acl.luns.insert(mlun, tlun);
                    if read_attr(b, &format!("{mdir}/write_protect"))? == "1" {
                        acl.write_protected.insert(mlun);
                    }
                }
            } else {
                // A mapped LUN without its link: mark it so it is rebuilt.
                acl.luns.insert(mlun, u32::MAX);
            }
        }
        tpg.acls.insert(init, acl);
    }
    Ok(tpg)
}

fn observe_nvmet(
    b: &dyn TargetBackend,
    scope: &Scope,
    o: &mut Observed,
) -> Result<(), BackendError> {
    let mut foreign_hosts: BTreeSet<String> = BTreeSet::new();
    for nqn in dirs(list_opt(b, "nvmet/subsystems")?) {
        let sdir = format!("nvmet/subsystems/{nqn}");
        if !scope.owns_nqn(&nqn) {
            foreign_hosts.extend(links(list_opt(b, &format!("{sdir}/allowed_hosts"))?));
            o.foreign.push(sdir);
            continue;
        }
        let p = |a: &str| format!("{sdir}/{a}");
        let mut s = Subsystem {
            allow_any_host: read_attr(b, &p("attr_allow_any_host"))? == "1",
            cntlid_min: parse_num(&p("attr_cntlid_min"), &read_attr(b, &p("attr_cntlid_min"))?)?,
            cntlid_max: parse_num(&p("attr_cntlid_max"), &read_attr(b, &p("attr_cntlid_max"))?)?,
            serial: String::new(),
            ..Subsystem::default()
        };
        s.hosts = links(list_opt(b, &p("allowed_hosts"))?).collect();
        for n in dirs(list_opt(b, &p("namespaces"))?) {
            let Ok(nsid) = n.parse::<u32>() else { continue };
            let nd = format!("{sdir}/namespaces/{n}");
            let q = |a: &str| format!("{nd}/{a}");
            let ns = Namespace {
                device: read_attr(b, &q("device_path"))?,
                uuid: read_attr(b, &q("device_uuid"))?.to_ascii_lowercase(),
                nguid: hex_only(&read_attr(b, &q("device_nguid"))?),
                ana_group: parse_num(&q("ana_grpid"), &read_attr(b, &q("ana_grpid"))?)?,
                enabled: read_attr(b, &q("enable"))? == "1",
            };
            s.namespaces.insert(nsid, ns);
        }
        o.tree.subsystems.insert(nqn, s);
    }
    for h in dirs(list_opt(b, "nvmet/hosts")?) {
        if !foreign_hosts.contains(&h) {
            o.tree.hosts.insert(h);
        }
    }
    for id in dirs(list_opt(b, "nvmet/ports")?) {
        let Ok(pid) = id.parse::<u16>() else { continue };
        let pdir = format!("nvmet/ports/{id}");
        if !scope.owns_port(pid) {
            o.foreign.push(pdir);
            continue;
        }
        let p = |a: &str| format!("{pdir}/{a}");
        let mut port = Port {
            trtype: read_attr(b, &p("addr_trtype"))?,
            adrfam: read_attr(b, &p("addr_adrfam"))?,
            traddr: read_attr(b, &p("addr_traddr"))?,
            trsvcid: read_attr(b, &p("addr_trsvcid"))?,
            ..Port::default()
        };
        for g in dirs(list_opt(b, &p("ana_groups"))?) {
            let Ok(grp) = g.parse::<u32>() else { continue };
            if grp == DEFAULT_ANA_GROUP {
                continue;
            }
            let sp = format!("{pdir}/ana_groups/{g}/ana_state");
            let word = read_attr(b, &sp)?;
            let st = AnaState::parse(&word).ok_or_else(|| BackendError::Parse {
                path: sp.clone(),
                content: word.clone(),
            })?;
            port.ana.insert(grp, st);
        }
        port.subsystems = links(list_opt(b, &p("subsystems"))?).collect();
        o.tree.ports.insert(pid, port);
    }
    Ok(())
}

/// The number of LIO devices under every HBA (ours and anyone else's):
/// LIO refuses a new `db_root` while any exists.
pub fn lio_devices(b: &dyn TargetBackend) -> Result<usize, BackendError> {
    let mut n = 0;
    for hba in dirs(list_opt(b, "target/core")?) {
        if hba == "alua" {
            continue;
        }
        n += dirs(list_opt(b, &format!("target/core/{hba}"))?).count();
    }
    Ok(n)
}

/// LIO's `db_root`; `None` when target_core_mod is not loaded.
pub fn read_db_root(b: &dyn TargetBackend) -> Result<Option<String>, BackendError> {
    match b.read("target/dbroot") {
        Ok(s) => Ok(Some(s.trim_end_matches(['\n', '\0']).trim().to_string())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("read", "target/dbroot")(e)),
    }
}

/// The `pr/` attributes of our backstore `name`.
pub fn read_pr(b: &dyn TargetBackend, name: &str) -> Result<PrAttrs, BackendError> {
    let dir = format!("{}/pr", path::backstore(name));
    let mut v: Vec<String> = Vec::with_capacity(PR_ATTRS.len());
    for a in PR_ATTRS {
        let p = format!("{dir}/{a}");
        v.push(b.read(&p).map_err(io_err("read", &p))?);
    }
    let mut it = v.into_iter();
    let mut next = || it.next().unwrap_or_default();
    Ok(PrAttrs {
        res_type: next(),
        generation: next(),
        aptpl_active: next(),
        registered: next(),
        holder: next(),
        pr_type: next(),
        all_tgt_pts: next(),
        holder_tg_port: next(),
    })
}

#[cfg(test)]
mod tests {
    use super::parse_lu_group;
    use super::sim::SimBackend;
    use super::{check_rel_path, TargetBackend};
    use crate::core::plan::Step;

    /// Issue 16 point 4: a host NQN `...:h1/../../subsystems/evil` was
    /// planned as `mkdir nvmet/hosts/...:h1/../../subsystems/evil`; the
    /// backend now refuses any step whose path leaves plain components.
    #[test]
    fn a_step_with_dot_dot_or_empty_components_is_refused() {
        for bad in [
            "nvmet/hosts/nqn.2024-01.com.example:h1/../../subsystems/evil",
            "nvmet/hosts/./x",
            "nvmet//hosts",
            "/nvmet/hosts",
            "nvmet/hosts/..",
        ] {
            assert!(check_rel_path(bad).is_err(), "{bad}");
        }
        assert!(check_rel_path("nvmet/hosts/nqn.2024-01.com.example:h1").is_ok());
        let mut b = SimBackend::new();
        let steps = vec![Step::Mkdir {
            path: "nvmet/hosts/nqn.2024-01.com.example:h1/../../subsystems/evil".into(),
        }];
        let e = b.apply(&steps).unwrap_err();
        assert!(
            e.to_string().contains("mkdir") || format!("{e:?}").contains("refused"),
            "{e:?}"
        );
        assert!(b.list("nvmet/subsystems").unwrap_or_default().is_empty());
        let link = vec![Step::Symlink {
            link: "nvmet/ports/1/subsystems/x".into(),
            target: "nvmet/subsystems/../../etc".into(),
        }];
        assert!(b.apply(&link).is_err());
    }

    #[test]
    fn lu_group_membership_reads_as_lio_prints_it() {
        // As a 6.1 kernel prints it, and before `enable` (empty).
        assert_eq!(
            parse_lu_group("LU Group Alias: dxpool_p1\nLU Group ID: 100\n"),
            Some("dxpool_p1".to_string())
        );
        assert_eq!(
            parse_lu_group("LU Group Alias: default_lu_gp\nLU Group ID: 0\n"),
            None
        );
        assert_eq!(parse_lu_group(""), None);
    }
}
