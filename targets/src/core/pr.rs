//! SCSI-3 persistent reservations in LIO: where its state lives and how to
//! read it back. Pure.
//!
//! - LIO writes `<db_root>/pr/aptpl_<serial>` on every PERSISTENT RESERVE
//!   OUT (the APTPL state, or a placeholder when APTPL is off) and fails
//!   the command when it cannot. `db_root` is one per kernel and can change
//!   only while no LIO device exists: [`db_root_action`].
//! - After a restart the kernel has nothing: the saved registrations are
//!   written back one per write to the new device's
//!   `pr/res_aptpl_metadata`, before any LUN exports it (LIO refuses
//!   after): [`aptpl_records`], [`insert_aptpl`].
//! - The `pr/` attributes of a device read back into the API's types:
//!   [`parse_lu`].

use crate::core::model::HBA;
use crate::core::plan::Step;
use duplex_api::methods::reservations::{Holder, LuReservations, Registration};
use std::collections::BTreeMap;

/// The subdirectories LIO writes below `db_root`.
pub const DB_SUBDIRS: [&str; 2] = ["pr", "alua"];

/// What to do about LIO's `db_root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbRoot {
    /// It is ours already.
    Keep,
    /// Write ours (no LIO device exists yet).
    Write,
    /// It is someone else's and devices exist: it cannot change until
    /// they are gone (a reboot).
    Blocked {
        /// The kernel's value.
        current: String,
        /// How many LIO devices exist.
        devices: usize,
    },
}

fn norm(p: &str) -> &str {
    let p = p.trim_matches(|c: char| c == '\n' || c == '\0' || c.is_whitespace());
    if p.len() > 1 {
        p.trim_end_matches('/')
    } else {
        p
    }
}

/// Decides about `db_root`: `current` is the kernel's, `wanted` ours,
/// `devices` the number of LIO devices (of any HBA, ours or not).
pub fn db_root_action(current: &str, wanted: &str, devices: usize) -> DbRoot {
    if norm(current) == norm(wanted) {
        DbRoot::Keep
    } else if devices == 0 {
        DbRoot::Write
    } else {
        DbRoot::Blocked {
            current: norm(current).to_string(),
            devices,
        }
    }
}

/// True when two `db_root` values name the same directory string.
pub fn same_db_root(a: &str, b: &str) -> bool {
    norm(a) == norm(b)
}

/// The registrations of an APTPL file (`<db_root>/pr/aptpl_<serial>`), each
/// as the one line `res_aptpl_metadata` takes (`key=value,key=value...`).
/// The file holds blocks of `key=value` lines between `PR_REG_START: n` and
/// `PR_REG_END: n`; LIO writes `No Registrations or Reservations` when
/// APTPL is off. An incomplete block (a torn write) is dropped.
pub fn aptpl_records(file: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<String>> = None;
    for line in file.lines().map(str::trim) {
        if line.starts_with("PR_REG_START:") {
            cur = Some(Vec::new());
        } else if line.starts_with("PR_REG_END:") {
            if let Some(fields) = cur.take() {
                let complete = ["initiator_node=", "target_node=", "sa_res_key="]
                    .iter()
                    .all(|k| fields.iter().any(|f| f.starts_with(k)));
                if complete {
                    out.push(fields.join(","));
                }
            }
        } else if let Some(fields) = cur.as_mut() {
            // The kernel splits the write at commas: a field holding one
            // would be misread, so the record is dropped.
            if line.contains('=') && !line.contains(',') {
                fields.push(line.to_string());
            } else if line.contains(',') {
                cur = None;
            }
        }
    }
    out
}

/// The serials of the backstores `steps` creates (their `mkdir` and their
/// serial write are both in the plan).
pub fn created_serials(steps: &[Step]) -> Vec<String> {
    let mut made = Vec::new();
    let mut out = Vec::new();
    for s in steps {
        match s {
            Step::Mkdir { path } if is_backstore(path) => made.push(path.clone()),
            Step::Write { path, value } => {
                if let Some(dir) = path.strip_suffix("/wwn/vpd_unit_serial") {
                    if made.iter().any(|m| m == dir) {
                        out.push(value.clone());
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn is_backstore(path: &str) -> bool {
    let c: Vec<&str> = path.split('/').collect();
    matches!(c.as_slice(), ["target", "core", hba, _] if *hba == HBA)
}

/// `steps` with the saved registrations of each new backstore written to
/// its `pr/res_aptpl_metadata` right after its serial: after `enable` and
/// before any LUN (LIO refuses them once the device is exported). The
/// records are matched to a host's registration when its ACL maps the LUN.
pub fn insert_aptpl(steps: Vec<Step>, records: &BTreeMap<String, Vec<String>>) -> Vec<Step> {
    if records.values().all(Vec::is_empty) {
        return steps;
    }
    let mut made: Vec<String> = Vec::new();
    let mut out = Vec::with_capacity(steps.len());
    for s in steps {
        let extra = match &s {
            Step::Mkdir { path } if is_backstore(path) => {
                made.push(path.clone());
                Vec::new()
            }
            Step::Write { path, value } => path
                .strip_suffix("/wwn/vpd_unit_serial")
                .filter(|dir| made.iter().any(|m| m == dir))
                .and_then(|dir| records.get(value).map(|r| (dir.to_string(), r)))
                .map(|(dir, recs)| {
                    recs.iter()
                        .map(|r| Step::Write {
                            path: format!("{dir}/pr/res_aptpl_metadata"),
                            value: r.clone(),
                        })
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        out.push(s);
        out.extend(extra);
    }
    out
}

/// The raw `pr/` attributes of one device, as read.
#[derive(Debug, Clone, Default)]
pub struct PrAttrs {
    /// `res_type`.
    pub res_type: String,
    /// `res_pr_generation`.
    pub generation: String,
    /// `res_aptpl_active`.
    pub aptpl_active: String,
    /// `res_pr_registered_i_pts`.
    pub registered: String,
    /// `res_holder`.
    pub holder: String,
    /// `res_pr_type`.
    pub pr_type: String,
    /// `res_pr_all_tgt_pts`.
    pub all_tgt_pts: String,
    /// `res_pr_holder_tg_port`.
    pub holder_tg_port: String,
}

/// The `pr/` attribute names [`PrAttrs`] holds, in its field order.
pub const PR_ATTRS: [&str; 8] = [
    "res_type",
    "res_pr_generation",
    "res_aptpl_active",
    "res_pr_registered_i_pts",
    "res_holder",
    "res_pr_type",
    "res_pr_all_tgt_pts",
    "res_pr_holder_tg_port",
];

/// Splits LIO's initiator port (`iqn...,i,0x00023d000001`) into the name
/// and the ISID.
fn split_port(s: &str) -> (String, Option<String>) {
    match s.split_once(",i,") {
        Some((name, isid)) => (name.to_string(), Some(isid.to_string())),
        None => (s.to_string(), None),
    }
}

/// One line of `res_pr_registered_i_pts`:
/// `iSCSI Node: <initiator>[,i,0x<isid>] Key: 0x<16 hex> PRgen: 0x<8 hex>`.
pub fn parse_registration(line: &str) -> Option<Registration> {
    let (fabric, rest) = line.split_once(" Node: ")?;
    let (port, rest) = rest.split_once(" Key: ")?;
    let (key, gen) = match rest.split_once(" PRgen: ") {
        Some((k, g)) => (k, parse_hex32(g)),
        None => (rest, None),
    };
    let (initiator, isid) = split_port(port.trim());
    Some(Registration {
        fabric: fabric.trim().to_string(),
        initiator,
        isid,
        key: key.trim().to_lowercase(),
        generation: gen,
    })
}

fn parse_hex32(s: &str) -> Option<u32> {
    let s = s.trim();
    let h = s.strip_prefix("0x").unwrap_or(s);
    u32::from_str_radix(h, 16).ok()
}

/// A number that follows `label` on a line (`... Tag: 1 iSCSI ...`).
fn number_after<T: std::str::FromStr>(line: &str, label: &str) -> Option<T> {
    let rest = line.split_once(label)?.1;
    rest.split_whitespace().next()?.parse().ok()
}

/// Reads one device's `pr/` attributes into the API's form.
pub fn parse_lu(volume: &str, serial: &str, a: &PrAttrs, saved: bool) -> LuReservations {
    let mode = match a.res_type.trim() {
        "SPC_PASSTHROUGH" => "passthrough",
        "SPC2_RESERVATIONS" => "spc2",
        _ => "spc3",
    };
    let aptpl = match a.aptpl_active.trim() {
        s if s.ends_with("Activated") => Some(true),
        s if s.ends_with("Disabled") => Some(false),
        _ => None,
    };
    let registrations = a
        .registered
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "None" && !l.ends_with("Registrations:"))
        .filter_map(parse_registration)
        .collect();
    let holder = parse_holder(a);
    LuReservations {
        volume: volume.to_string(),
        serial: serial.to_string(),
        mode: mode.to_string(),
        generation: parse_hex32(&a.generation),
        aptpl,
        saved,
        registrations,
        holder,
    }
}

fn parse_holder(a: &PrAttrs) -> Option<Holder> {
    let line = a.holder.lines().next().unwrap_or("").trim();
    let (kind, rest) = if let Some(r) = line.strip_prefix("SPC-3 Reservation: ") {
        ("spc3", r)
    } else if let Some(r) = line.strip_prefix("SPC-2 Reservation: ") {
        ("spc2", r)
    } else {
        return None;
    };
    let (fabric, port) = rest.split_once(" Initiator: ")?;
    let (initiator, isid) = split_port(port.trim());
    let mut h = Holder {
        kind: kind.to_string(),
        fabric: fabric.trim().to_string(),
        initiator,
        isid,
        ..Holder::default()
    };
    if kind == "spc3" {
        h.pr_type = a
            .pr_type
            .trim()
            .strip_prefix("SPC-3 Reservation Type: ")
            .map(str::to_string);
        h.all_target_ports = a.all_tgt_pts.contains("All Target Ports");
        for l in a.holder_tg_port.lines() {
            if let Some(t) = l.split_once(" Target Node Endpoint: ") {
                h.target = Some(t.1.trim().to_string());
            }
            if l.contains("Relative Port") {
                // "Identifier" in the kernel now, "Identifer" in old ones.
                h.rtpi = number_after(l, "Tag: ");
                h.tpgt = number_after(l, "Portal Group Tag: ");
                h.lun = number_after(l, "Logical Unit: ");
            }
        }
    }
    Some(h)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As LIO 6.1 writes it for a holder with APTPL (`__core_scsi3_update_aptpl_buf`).
    const FILE: &str = "PR_REG_START: 0\ninitiator_fabric=iSCSI\ninitiator_node=iqn.2026-11.lab:h\n\
initiator_sid=0x00023d000001\nsa_res_key=1\nres_holder=1\nres_type=01\nres_scope=0x00\n\
res_all_tg_pt=0\nmapped_lun=0\ntarget_fabric=iSCSI\ntarget_node=iqn.2026-11.io.duplex:5e1f0c1e.g1\n\
tpgt=1\nport_rtpi=1\ntarget_lun=0\nPR_REG_END: 0\n\
PR_REG_START: 1\ninitiator_fabric=iSCSI\ninitiator_node=iqn.2026-11.lab:h2\nsa_res_key=2\nres_holder=0\n\
res_all_tg_pt=0\nmapped_lun=0\ntarget_fabric=iSCSI\ntarget_node=iqn.2026-11.io.duplex:5e1f0c1e.g1\n\
tpgt=1\nport_rtpi=1\ntarget_lun=0\nPR_REG_END: 1\n";

    #[test]
    fn an_aptpl_file_becomes_one_metadata_write_per_registration() {
        let r = aptpl_records(FILE);
        assert_eq!(r.len(), 2);
        assert!(r[0].starts_with("initiator_fabric=iSCSI,initiator_node=iqn.2026-11.lab:h,"));
        assert!(r[0].contains(",sa_res_key=1,res_holder=1,res_type=01,"));
        assert!(r[1].contains("initiator_node=iqn.2026-11.lab:h2,sa_res_key=2,res_holder=0"));
        assert!(!r[1].contains("PR_REG"));
        assert!(aptpl_records("No Registrations or Reservations\n").is_empty());
        assert!(aptpl_records("").is_empty());
    }

    #[test]
    fn a_torn_aptpl_file_keeps_only_whole_registrations() {
        let torn = &FILE[..FILE.len() - 40];
        assert_eq!(aptpl_records(torn).len(), 1);
        let no_key = FILE.replace("sa_res_key=2\n", "");
        assert_eq!(aptpl_records(&no_key).len(), 1);
    }

    #[test]
    fn db_root_changes_only_while_no_device_exists() {
        assert_eq!(
            db_root_action("/var/lib/duplex/lio\n", "/var/lib/duplex/lio/", 3),
            DbRoot::Keep
        );
        assert_eq!(
            db_root_action("/etc/target\n", "/var/lib/duplex/lio", 0),
            DbRoot::Write
        );
        assert_eq!(
            db_root_action("/etc/target\n", "/var/lib/duplex/lio", 2),
            DbRoot::Blocked {
                current: "/etc/target".into(),
                devices: 2
            }
        );
    }

    fn w(path: &str, value: &str) -> Step {
        Step::Write {
            path: path.into(),
            value: value.into(),
        }
    }

    #[test]
    fn saved_registrations_go_right_after_a_new_backstores_serial() {
        let dir = "target/core/iblock_100/v1";
        let steps = vec![
            Step::Mkdir { path: dir.into() },
            w(&format!("{dir}/control"), "udev_path=/dev/x"),
            w(&format!("{dir}/enable"), "1"),
            w(&format!("{dir}/wwn/vpd_unit_serial"), "ab01"),
            Step::Mkdir {
                path: format!("{dir}/alua/dx_a"),
            },
            Step::Mkdir {
                path: "target/iscsi/iqn.x:t/tpgt_1/lun/lun_0".into(),
            },
        ];
        assert_eq!(created_serials(&steps), vec!["ab01".to_string()]);
        let recs = BTreeMap::from([("ab01".to_string(), aptpl_records(FILE))]);
        let out = insert_aptpl(steps.clone(), &recs);
        assert_eq!(out.len(), steps.len() + 2);
        assert_eq!(out[..4], steps[..4]);
        for s in &out[4..6] {
            assert!(
                matches!(s, Step::Write { path, .. } if path == &format!("{dir}/pr/res_aptpl_metadata"))
            );
        }
        assert_eq!(out[6..], steps[4..]);
        // A serial written on a backstore that exists already (not in this
        // plan) gets nothing: the kernel has its state.
        let later = vec![w(&format!("{dir}/wwn/vpd_unit_serial"), "ab01")];
        assert_eq!(insert_aptpl(later.clone(), &recs), later);
        assert!(created_serials(&later).is_empty());
    }

    #[test]
    fn the_pr_attributes_read_back() {
        let a = PrAttrs {
            res_type: "SPC3_PERSISTENT_RESERVATIONS\n".into(),
            generation: "0x00000003\n".into(),
            aptpl_active: "APTPL Bit Status: Activated\n".into(),
            registered: "SPC-3 PR Registrations:\n\
iSCSI Node: iqn.2026-11.lab:h,i,0x00023d000001 Key: 0x0000000000000001 PRgen: 0x00000000\n\
iSCSI Node: iqn.2026-11.lab:h2,i,0x00023d000002 Key: 0x00000000000000ab PRgen: 0x00000002\n"
                .into(),
            holder: "SPC-3 Reservation: iSCSI Initiator: iqn.2026-11.lab:h,i,0x00023d000001\n".into(),
            pr_type: "SPC-3 Reservation Type: Write Exclusive Access\n".into(),
            all_tgt_pts: "SPC-3 Reservation: Single Target Port registration\n".into(),
            holder_tg_port: "SPC-3 Reservation: iSCSI Target Node Endpoint: iqn.2026-11.io.duplex:c.g1\n\
SPC-3 Reservation: Relative Port Identifier Tag: 1 iSCSI Portal Group Tag: 1 iSCSI Logical Unit: 0\n"
                .into(),
        };
        let lu = parse_lu("v1", "ab01", &a, true);
        assert_eq!(lu.mode, "spc3");
        assert_eq!(lu.generation, Some(3));
        assert_eq!(lu.aptpl, Some(true));
        assert_eq!(lu.registrations.len(), 2);
        assert_eq!(lu.registrations[1].initiator, "iqn.2026-11.lab:h2");
        assert_eq!(lu.registrations[1].isid.as_deref(), Some("0x00023d000002"));
        assert_eq!(lu.registrations[1].key, "0x00000000000000ab");
        assert_eq!(lu.registrations[1].generation, Some(2));
        let h = lu.holder.unwrap_or_default();
        assert_eq!(h.kind, "spc3");
        assert_eq!(h.initiator, "iqn.2026-11.lab:h");
        assert_eq!(h.pr_type.as_deref(), Some("Write Exclusive Access"));
        assert_eq!(h.target.as_deref(), Some("iqn.2026-11.io.duplex:c.g1"));
        assert_eq!((h.rtpi, h.tpgt, h.lun), (Some(1), Some(1), Some(0)));
        assert!(!h.all_target_ports);

        let empty = PrAttrs {
            res_type: "SPC3_PERSISTENT_RESERVATIONS\n".into(),
            generation: "0x00000000\n".into(),
            aptpl_active: "APTPL Bit Status: Disabled\n".into(),
            registered: "SPC-3 PR Registrations:\nNone\n".into(),
            holder: "No SPC-3 Reservation holder\n".into(),
            pr_type: "No SPC-3 Reservation holder\n".into(),
            all_tgt_pts: "No SPC-3 Reservation holder\n".into(),
            holder_tg_port: "No SPC-3 Reservation holder\n".into(),
        };
        let lu = parse_lu("v1", "ab01", &empty, false);
        assert!(lu.registrations.is_empty() && lu.holder.is_none());
        assert_eq!(lu.aptpl, Some(false));
    }
}
