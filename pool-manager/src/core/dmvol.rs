//! The stable per-volume block device (the standby path).
//!
//! Every volume in the desired state gets, on BOTH controllers, a
//! device-mapper device `dxvol-<serial>` (`/dev/mapper/dxvol-<serial>`, dm
//! UUID `DUPLEX-VOL-<serial>`). Where the pool is owned here and the LV is
//! active, its table maps the LV through a one-path `multipath` target that
//! queues I/O while its path is failed (see [`Table::Multipath`]);
//! everywhere else it is an `error` table of the volume's size. targets builds its backstores on
//! this path, so the partner can present a standby path, and a takeover or
//! a giveback only swaps the table underneath an open device (load,
//! suspend, resume: atomic for the holder).
//!
//! This module is pure: what each device should be ([`wanted`]) and the
//! difference from what the kernel reports ([`plan`]), as batches the
//! backend applies.

use super::names::{pool_of_vg, split_dm_name};
use duplex_api::model::Config;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Name prefix of the per-volume devices.
pub const NAME_PREFIX: &str = "dxvol-";
/// dm UUID prefix of the per-volume devices. Not `LVM-`, so LVM never
/// treats them as its own, and udev's LVM rules skip them.
pub const UUID_PREFIX: &str = "DUPLEX-VOL-";
/// The kernel's sector.
pub const SECTOR: u64 = 512;
/// Longest serial accepted for a device name (dm names are < 128 bytes).
const SERIAL_MAX: usize = 64;

/// The device-mapper name of a volume's device.
pub fn dm_name(serial: &str) -> String {
    format!("{NAME_PREFIX}{serial}")
}

/// The dm UUID of a volume's device.
pub fn dm_uuid(serial: &str) -> String {
    format!("{UUID_PREFIX}{serial}")
}

/// The block device path of a volume on either controller (the contract
/// with targets).
pub fn device_path(serial: &str) -> String {
    format!("/dev/mapper/{}", dm_name(serial))
}

/// True when `serial` can name a device (hex digits, not too long).
pub fn serial_ok(serial: &str) -> bool {
    !serial.is_empty()
        && serial.len() <= SERIAL_MAX
        && serial.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A block device number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DevNum {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl fmt::Display for DevNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

/// The table of a per-volume device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "target", rename_all = "snake_case")]
pub enum Table {
    /// The whole LV, mapped one to one (what earlier versions loaded on the
    /// owner; still recognised, and replaced by [`Table::Multipath`]).
    Linear {
        /// The LV's device.
        dev: DevNum,
        /// Length in sectors.
        sectors: u64,
    },
    /// The whole LV as the one path of a `multipath` target (bio mode) with
    /// `queue_if_no_path`: an I/O error from the LV (this controller lost
    /// its path to the shelf) fails the path and queues the I/O instead of
    /// answering it with an error, which nvmet would send to hosts with
    /// Do Not Retry. Hosts then wait for the partner's takeover (or for
    /// pool-manager to reinstate the path, see [`failed_paths`]). A reload
    /// to an `error` table (this controller no longer owns the pool) fails
    /// what is still queued: by then hosts use the partner's path.
    Multipath {
        /// The LV's device.
        dev: DevNum,
        /// Length in sectors.
        sectors: u64,
    },
    /// A thin volume of a thin pool (how LVM maps a thin LV; used to
    /// activate a pool's thin LVs in one batch, see [`thin_activation`]).
    Thin {
        /// The thin pool's `-tpool` device.
        pool: DevNum,
        /// The thin device id in the pool's metadata.
        id: u64,
        /// Length in sectors.
        sectors: u64,
    },
    /// Every I/O fails (the pool is not imported here).
    Error {
        /// Length in sectors (the volume's size, so the standby path
        /// reports the right capacity).
        sectors: u64,
    },
}

impl Table {
    /// Length in sectors.
    pub fn sectors(&self) -> u64 {
        match self {
            Table::Linear { sectors, .. }
            | Table::Multipath { sectors, .. }
            | Table::Thin { sectors, .. }
            | Table::Error { sectors } => *sectors,
        }
    }

    /// The target type and its parameters (the table is one target from
    /// sector 0 over [`Table::sectors`]).
    pub fn target(&self) -> (&'static str, String) {
        match self {
            Table::Linear { dev, .. } => ("linear", format!("{dev} 0")),
            // Features, no hardware handler, one priority group of one
            // path (round-robin, no selector arguments, repeat count 1).
            Table::Multipath { dev, .. } => (
                "multipath",
                format!("{MPATH_FEATURES} 0 1 1 round-robin 0 1 1 {dev} 1"),
            ),
            Table::Thin { pool, id, .. } => ("thin", format!("{pool} {id}")),
            Table::Error { .. } => ("error", String::new()),
        }
    }

    /// The one-line table, as the kernel reports it (`start len type params`).
    pub fn line(&self) -> String {
        let (kind, params) = self.target();
        let sectors = self.sectors();
        if params.is_empty() {
            format!("0 {sectors} {kind}")
        } else {
            format!("0 {sectors} {kind} {params}")
        }
    }

    /// The LV this table maps, when it maps one (linear or multipath).
    pub fn lv(&self) -> Option<DevNum> {
        match self {
            Table::Linear { dev, .. } | Table::Multipath { dev, .. } => Some(*dev),
            Table::Thin { .. } | Table::Error { .. } => None,
        }
    }

    /// True when the table maps an LV (the device holds it open).
    pub fn maps_lv(&self) -> bool {
        self.lv().is_some()
    }
}

/// The multipath features we load: queue I/O while no path is usable, and
/// bio mode (a bio-based device over an LV, as the linear table was).
const MPATH_FEATURES: &str = "3 queue_if_no_path queue_mode bio";

/// Parses the parameters of a `multipath` table as the kernel prints them
/// back (it adds `retain_attached_hw_handler`), when they are ours: the
/// features include `queue_if_no_path` and bio mode, and one group holds
/// one round-robin path. Anything else (queueing turned off by a message,
/// say) is not ours, so the plan reloads it.
fn parse_multipath(params: &[&str]) -> Option<DevNum> {
    let (n, rest) = params.split_first()?;
    let n: usize = n.parse().ok()?;
    let features = rest.get(..n)?;
    let queue = features.contains(&"queue_if_no_path");
    let bio = features.windows(2).any(|w| w == ["queue_mode", "bio"]);
    match rest.get(n..)? {
        ["0", "1", "1", "round-robin", "0", "1", "1", dev, "1"] if queue && bio => {
            parse_devnum(dev)
        }
        _ => None,
    }
}

/// A per-volume device whose path to its LV is failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailedPath {
    /// dm name of the device.
    pub name: String,
    /// The path (the LV's device).
    pub dev: DevNum,
}

/// The failed paths in a `multipath` device's status line (`start len
/// multipath <status>`, as `dmsetup status` prints it): each path appears
/// as `<major:minor> <A|F> <fail count>`.
pub fn failed_paths(status: &str) -> Vec<DevNum> {
    let f: Vec<&str> = status.split_whitespace().collect();
    if f.get(2) != Some(&"multipath") {
        return Vec::new();
    }
    f.windows(2)
        .filter(|w| w[1] == "F")
        .filter_map(|w| parse_devnum(w[0]))
        .collect()
}

/// What a per-volume device must be: its table and whether it is
/// read-only (a read-only snapshot: the LV itself is read-only, and the
/// kernel refuses a writable table over it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmState {
    /// The table.
    pub table: Table,
    /// Loaded read-only.
    pub read_only: bool,
}

/// One device-mapper device as the kernel reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DmDevice {
    /// Name.
    pub name: String,
    /// dm UUID ("" when none).
    pub uuid: String,
    /// Device number.
    pub dev: DevNum,
    /// A live table is loaded.
    pub live: bool,
    /// Suspended (a swap interrupted between suspend and resume).
    pub suspended: bool,
    /// The live table is read-only.
    pub read_only: bool,
    /// Open count.
    pub open: u32,
    /// The live table, line by line (`start len target args`).
    pub table: Vec<String>,
}

impl DmDevice {
    /// Length of the live table in sectors.
    pub fn sectors(&self) -> u64 {
        self.table
            .iter()
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum()
    }

    /// The target type of the live table's first line (`linear`, `thin`,
    /// `thin-pool`...).
    pub fn target_type(&self) -> Option<&str> {
        self.table.first()?.split_whitespace().nth(2)
    }

    /// The live table as a per-volume [`Table`], when it is one we load.
    pub fn parsed_table(&self) -> Option<Table> {
        let [line] = self.table.as_slice() else {
            return None;
        };
        let f: Vec<&str> = line.split_whitespace().collect();
        let sectors = f.get(1)?.parse().ok()?;
        match f.as_slice() {
            ["0", _, "error"] => Some(Table::Error { sectors }),
            ["0", _, "linear", dev, "0"] => Some(Table::Linear {
                dev: parse_devnum(dev)?,
                sectors,
            }),
            ["0", _, "multipath", params @ ..] => Some(Table::Multipath {
                dev: parse_multipath(params)?,
                sectors,
            }),
            _ => None,
        }
    }

    /// Its state, when the table is one we load.
    pub fn state(&self) -> Option<DmState> {
        Some(DmState {
            table: self.parsed_table()?,
            read_only: self.read_only,
        })
    }
}

fn parse_devnum(s: &str) -> Option<DevNum> {
    let (a, b) = s.split_once(':')?;
    Some(DevNum {
        major: a.parse().ok()?,
        minor: b.parse().ok()?,
    })
}

/// An active LV device of a pool, from the device-mapper view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveLv {
    /// Its device number.
    pub dev: DevNum,
    /// Its size in sectors.
    pub sectors: u64,
    /// Its table is read-only.
    pub read_only: bool,
}

/// The LVs of our pools that are live here (not suspended), by (pool, LV),
/// read from the device-mapper view (LVM names its devices
/// `<vg>-<lv>` with `-` doubled and gives them an `LVM-` UUID).
pub fn active_lvs(devices: &[DmDevice]) -> BTreeMap<(String, String), ActiveLv> {
    devices
        .iter()
        .filter(|d| d.uuid.starts_with("LVM-") && d.live && !d.suspended)
        .filter_map(|d| {
            let (vg, lv) = split_dm_name(&d.name)?;
            let pool = pool_of_vg(&vg)?.to_string();
            Some((
                (pool, lv),
                ActiveLv {
                    dev: d.dev,
                    sectors: d.sectors(),
                    read_only: d.read_only,
                },
            ))
        })
        .collect()
}

/// A device that must exist, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Wanted {
    /// The volume.
    pub volume: String,
    /// Its pool.
    pub pool: String,
    /// dm name.
    pub name: String,
    /// dm UUID.
    pub uuid: String,
    /// Table and mode.
    pub state: DmState,
}

/// What every volume's device must be on controller `me`: multipath over
/// the LV where the pool is recorded as ours and its LV is active here
/// (`lvs`), an error table of the recorded size elsewhere. `read_only`
/// names the volumes that are read-only (snapshots). Volumes whose serial
/// cannot name a device are returned in the second list.
pub fn wanted(
    desired: &Config,
    me: &str,
    lvs: &BTreeMap<(String, String), ActiveLv>,
    read_only: &BTreeSet<String>,
) -> (Vec<Wanted>, Vec<String>) {
    let mut out = Vec::new();
    let mut bad = Vec::new();
    for v in desired.volumes.values() {
        if !serial_ok(&v.serial) {
            bad.push(v.name.clone());
            continue;
        }
        let ours = desired.pools.get(&v.pool).is_some_and(|p| p.owner == me);
        let lv = lvs.get(&(v.pool.clone(), v.name.clone())).filter(|_| ours);
        let ro = read_only.contains(&v.name) || lv.is_some_and(|l| l.read_only);
        let table = match lv {
            Some(l) => Table::Multipath {
                dev: l.dev,
                sectors: l.sectors,
            },
            None => Table::Error {
                sectors: v.size.bytes().div_ceil(SECTOR),
            },
        };
        out.push(Wanted {
            volume: v.name.clone(),
            pool: v.pool.clone(),
            name: dm_name(&v.serial),
            uuid: dm_uuid(&v.serial),
            state: DmState {
                table,
                read_only: ro,
            },
        });
    }
    (out, bad)
}

/// A device to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Create {
    /// dm name.
    pub name: String,
    /// dm UUID.
    pub uuid: String,
    /// Table and mode.
    pub state: DmState,
}

/// A device whose table is swapped: load, suspend, resume.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reload {
    /// dm name.
    pub name: String,
    /// The new table and mode.
    pub state: DmState,
}

/// The difference between the wanted and the observed devices, in
/// batches: the backend creates, then swaps (every load, then every
/// suspend, then every resume), then resumes devices left suspended, then
/// removes. Empty when converged.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DmPlan {
    /// Devices to create.
    pub create: Vec<Create>,
    /// Tables to swap.
    pub reload: Vec<Reload>,
    /// Devices left suspended by an interrupted swap, table already right.
    pub resume: Vec<String>,
    /// Devices of volumes no longer in the desired state. One mapping an
    /// LV is first swapped to an error table (in `reload`), so the LV is
    /// released even if a holder keeps the device open.
    pub remove: Vec<String>,
    /// Names taken by a device that is not ours (another dm UUID): left
    /// alone and reported.
    pub conflicts: Vec<String>,
}

impl DmPlan {
    /// True when nothing is to be done.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty()
            && self.reload.is_empty()
            && self.resume.is_empty()
            && self.remove.is_empty()
    }

    /// Number of devices touched.
    pub fn len(&self) -> usize {
        self.create.len() + self.reload.len() + self.resume.len() + self.remove.len()
    }
}

/// Plans the changes that make the per-volume devices match `wanted`.
/// Only devices with our UUID prefix are ever changed or removed.
pub fn plan(wanted: &[Wanted], observed: &[DmDevice]) -> DmPlan {
    let mut p = DmPlan::default();
    let by_name: BTreeMap<&str, &DmDevice> =
        observed.iter().map(|d| (d.name.as_str(), d)).collect();
    let wanted_names: BTreeSet<&str> = wanted.iter().map(|w| w.name.as_str()).collect();
    for w in wanted {
        match by_name.get(w.name.as_str()) {
            None => p.create.push(Create {
                name: w.name.clone(),
                uuid: w.uuid.clone(),
                state: w.state,
            }),
            Some(d) if d.uuid != w.uuid => p.conflicts.push(w.name.clone()),
            Some(d) => {
                if !d.live || d.state() != Some(w.state) {
                    p.reload.push(Reload {
                        name: w.name.clone(),
                        state: w.state,
                    });
                } else if d.suspended {
                    p.resume.push(w.name.clone());
                }
            }
        }
    }
    for d in observed
        .iter()
        .filter(|d| d.uuid.starts_with(UUID_PREFIX) && !wanted_names.contains(d.name.as_str()))
    {
        if d.parsed_table().is_none_or(|t| t.maps_lv()) {
            p.reload.push(Reload {
                name: d.name.clone(),
                state: DmState {
                    table: Table::Error {
                        sectors: d.sectors().max(1),
                    },
                    read_only: d.read_only,
                },
            });
        }
        p.remove.push(d.name.clone());
    }
    p
}

/// A thin LV of a pool as LVM's metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinLv {
    /// LV name.
    pub name: String,
    /// LVM's LV UUID (with or without its dashes).
    pub lv_uuid: String,
    /// Thin device id in the pool.
    pub thin_id: u64,
    /// Size in bytes.
    pub size: u64,
    /// Read-only permission.
    pub read_only: bool,
}

/// The dm UUID LVM gives an LV's top-level device: `LVM-` followed by the
/// VG and LV UUIDs without their dashes.
pub fn lvm_dm_uuid(vg_uuid: &str, lv_uuid: &str) -> String {
    format!(
        "LVM-{}{}",
        vg_uuid.replace('-', ""),
        lv_uuid.replace('-', "")
    )
}

/// The devices that activate every thin LV of `vg` not active yet, exactly
/// as LVM would (its name, its UUID, a `thin` table over the pool's
/// `-tpool` device `tpool`, read-only when the LV is), so that creating
/// them in one batch replaces LVM's per-LV activation (measured at about
/// 0.6 s per LV under emulation, in LVM itself, not in udev). LVM finds
/// these devices by UUID afterwards and treats them as its own
/// (`lvs` shows them active, `vgchange -an` removes them).
pub fn thin_activation(
    vg: &str,
    vg_uuid: &str,
    tpool: DevNum,
    lvs: &[ThinLv],
    observed: &[DmDevice],
) -> Vec<Create> {
    let present: BTreeSet<&str> = observed.iter().map(|d| d.uuid.as_str()).collect();
    let names: BTreeSet<&str> = observed.iter().map(|d| d.name.as_str()).collect();
    lvs.iter()
        .filter_map(|l| {
            let uuid = lvm_dm_uuid(vg_uuid, &l.lv_uuid);
            let name = super::names::dm_name(vg, &l.name);
            // Active already, or a stray device holds the name: LVM's own
            // activation (the fallback) sorts that out or says why.
            if present.contains(uuid.as_str()) || names.contains(name.as_str()) {
                return None;
            }
            Some(Create {
                name,
                uuid,
                state: DmState {
                    table: Table::Thin {
                        pool: tpool,
                        id: l.thin_id,
                        sectors: l.size.div_ceil(SECTOR),
                    },
                    read_only: l.read_only,
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use duplex_api::model::{Pool, Volume};
    use duplex_api::syntax::Size;

    const S1: &str = "0123456789abcdef0123456789abcdef";
    const S2: &str = "fedcba9876543210fedcba9876543210";

    fn cfg(owner: &str) -> Config {
        let mut c = Config::default();
        // Built from JSON so fields added to the model later default.
        let pool: Pool = serde_json::from_value(serde_json::json!({
            "name": "p", "tier": "regular", "layout": "linear", "home": "A",
            "owner": owner, "epoch": 1}))
        .unwrap();
        c.pools.insert("p".into(), pool);
        for (n, s, parent) in [("v1", S1, None), ("s1", S2, Some("v1"))] {
            let v: Volume = serde_json::from_value(serde_json::json!({
                "name": n, "pool": "p", "size": "64MiB", "thin": true, "serial": s,
                "wwn": "", "nguid": "", "uuid": "", "parent_snapshot": parent}))
            .unwrap();
            assert_eq!(v.size, Size(64 << 20));
            c.volumes.insert(n.into(), v);
        }
        c
    }

    fn lv(minor: u32) -> ActiveLv {
        ActiveLv {
            dev: DevNum { major: 253, minor },
            sectors: 131_072,
            read_only: false,
        }
    }

    /// A multipath table over 253:`minor` as the kernel prints it back.
    fn mp(minor: u32) -> String {
        format!(
            "0 131072 multipath 4 queue_if_no_path retain_attached_hw_handler \
             queue_mode bio 0 1 1 round-robin 0 1 1 253:{minor} 1"
        )
    }

    fn dev(name: &str, uuid: &str, line: &str, ro: bool) -> DmDevice {
        DmDevice {
            name: name.into(),
            uuid: uuid.into(),
            dev: DevNum {
                major: 253,
                minor: 50,
            },
            live: true,
            suspended: false,
            read_only: ro,
            open: 1,
            table: vec![line.into()],
        }
    }

    #[test]
    fn names_and_lines() {
        assert_eq!(dm_name(S1), format!("dxvol-{S1}"));
        assert_eq!(device_path(S1), format!("/dev/mapper/dxvol-{S1}"));
        assert_eq!(dm_uuid(S1), format!("DUPLEX-VOL-{S1}"));
        assert!(serial_ok(S1));
        assert!(!serial_ok("not-hex"));
        assert!(!serial_ok(""));
        assert!(!serial_ok(&"a".repeat(65)));
        let t = Table::Linear {
            dev: DevNum {
                major: 253,
                minor: 7,
            },
            sectors: 2048,
        };
        assert_eq!(t.line(), "0 2048 linear 253:7 0");
        let t = Table::Multipath {
            dev: DevNum {
                major: 253,
                minor: 7,
            },
            sectors: 2048,
        };
        assert_eq!(
            t.line(),
            "0 2048 multipath 3 queue_if_no_path queue_mode bio 0 1 1 round-robin 0 1 1 253:7 1"
        );
        assert_eq!(Table::Error { sectors: 8 }.line(), "0 8 error");
    }

    #[test]
    fn owner_gets_a_queueing_path_partner_gets_error() {
        let lvs: BTreeMap<_, _> = [(("p".to_string(), "v1".to_string()), lv(7))].into();
        let ro: BTreeSet<String> = ["s1".to_string()].into();
        let (w, bad) = wanted(&cfg("A"), "A", &lvs, &ro);
        assert!(bad.is_empty());
        let v1 = w.iter().find(|x| x.volume == "v1").unwrap();
        assert_eq!(
            v1.state.table,
            Table::Multipath {
                dev: lv(7).dev,
                sectors: 131_072
            }
        );
        assert!(!v1.state.read_only);
        // The snapshot's LV is not active: an error table of its size, read-only.
        let s1 = w.iter().find(|x| x.volume == "s1").unwrap();
        assert_eq!(
            s1.state,
            DmState {
                table: Table::Error { sectors: 131_072 },
                read_only: true
            }
        );
        // The partner (or an LV active where the record says another owner:
        // fail closed) gets error tables.
        let (w, _) = wanted(&cfg("A"), "B", &lvs, &BTreeSet::new());
        assert!(w.iter().all(|x| !x.state.table.maps_lv()));
    }

    #[test]
    fn plan_creates_swaps_resumes_removes_and_converges() {
        let lvs: BTreeMap<_, _> = [
            (("p".to_string(), "v1".to_string()), lv(7)),
            (("p".to_string(), "s1".to_string()), lv(8)),
        ]
        .into();
        let (w, _) = wanted(&cfg("A"), "A", &lvs, &BTreeSet::new());
        // Nothing there: two creates.
        let p = plan(&w, &[]);
        assert_eq!(p.create.len(), 2);
        assert!(p.reload.is_empty() && p.remove.is_empty());
        // v1 has an error table (the partner's view before a takeover), s1
        // is right but suspended, an old device of a deleted volume is
        // linear, and a foreign device took a name.
        let mut s1 = dev(&dm_name(S2), &dm_uuid(S2), &mp(8), false);
        s1.suspended = true;
        let obs = vec![
            dev(&dm_name(S1), &dm_uuid(S1), "0 131072 error", false),
            s1,
            dev("dxvol-00", "DUPLEX-VOL-00", "0 2048 linear 253:9 0", false),
            dev("dxvol-11", "DUPLEX-VOL-11", "0 2048 error", false),
            dev("dx--p-v1", "LVM-xyz", "0 131072 thin 253:3 1", false),
        ];
        let p = plan(&w, &obs);
        assert!(p.create.is_empty());
        assert_eq!(
            p.reload,
            vec![
                Reload {
                    name: dm_name(S1),
                    state: w[1].state
                },
                Reload {
                    name: "dxvol-00".into(),
                    state: DmState {
                        table: Table::Error { sectors: 2048 },
                        read_only: false
                    }
                },
            ]
        );
        assert_eq!(p.resume, vec![dm_name(S2)]);
        assert_eq!(
            p.remove,
            vec!["dxvol-00".to_string(), "dxvol-11".to_string()]
        );
        // Converged: empty.
        let done = vec![
            dev(&dm_name(S1), &dm_uuid(S1), &mp(7), false),
            dev(&dm_name(S2), &dm_uuid(S2), &mp(8), false),
        ];
        assert!(plan(&w, &done).is_empty());
        // Linear tables from an earlier version are swapped for queueing
        // ones, live.
        let old = vec![
            dev(&dm_name(S1), &dm_uuid(S1), "0 131072 linear 253:7 0", false),
            dev(&dm_name(S2), &dm_uuid(S2), &mp(8), false),
        ];
        let p = plan(&w, &old);
        assert_eq!(p.reload.len(), 1);
        assert_eq!(p.reload[0].name, dm_name(S1));
        assert!(matches!(p.reload[0].state.table, Table::Multipath { .. }));
        // A name held by a device that is not ours: reported, not touched.
        let foreign = vec![dev(&dm_name(S1), "mpath-1", "0 8 error", false)];
        let p = plan(&w, &foreign);
        assert_eq!(p.conflicts, vec![dm_name(S1)]);
        assert!(p.reload.is_empty() && p.remove.is_empty());
        // A read-only mismatch and a missing live table are swaps too.
        let mut nolive = dev(&dm_name(S2), &dm_uuid(S2), &mp(8), false);
        nolive.live = false;
        nolive.table.clear();
        let obs = vec![dev(&dm_name(S1), &dm_uuid(S1), &mp(7), true), nolive];
        assert_eq!(plan(&w, &obs).reload.len(), 2);
    }

    #[test]
    fn grows_follow_the_lv_and_the_record() {
        let mut big = lv(7);
        big.sectors = 262_144;
        let lvs: BTreeMap<_, _> = [(("p".to_string(), "v1".to_string()), big)].into();
        let (w, _) = wanted(&cfg("A"), "A", &lvs, &BTreeSet::new());
        let obs = vec![dev(
            &dm_name(S1),
            &dm_uuid(S1),
            "0 131072 linear 253:7 0",
            false,
        )];
        let p = plan(&w, &obs);
        assert!(p
            .reload
            .iter()
            .any(|r| r.name == dm_name(S1) && r.state.table.sectors() == 262_144));
    }

    #[test]
    fn reads_tables_as_the_kernel_prints_them() {
        // Table lines as DM_TABLE_STATUS gives them (and `dmsetup table`
        // prints them): a target without parameters keeps its space.
        let thin = dev(
            "dx--p-v1",
            "LVM-jVU2xO4IdTcDNaQ6qddFInG20crEen73x3URQoqLTNRNqp5k6p4axgolVt1Ih3LB",
            "0 131072 thin 253:3 1",
            false,
        );
        let lin = dev(&dm_name(S1), &dm_uuid(S1), "0 131072 linear 253:4 0", true);
        let err = dev(&dm_name(S2), &dm_uuid(S2), "0 8 error ", false);
        assert_eq!(
            lin.parsed_table(),
            Some(Table::Linear {
                dev: DevNum {
                    major: 253,
                    minor: 4
                },
                sectors: 131_072
            })
        );
        assert_eq!(err.parsed_table(), Some(Table::Error { sectors: 8 }));
        let queue = dev(&dm_name(S1), &dm_uuid(S1), &mp(4), false);
        assert_eq!(
            queue.parsed_table(),
            Some(Table::Multipath {
                dev: DevNum {
                    major: 253,
                    minor: 4
                },
                sectors: 131_072
            })
        );
        // Multipath tables that are not ours: queueing turned off, two
        // paths, no bio mode. The plan reloads them.
        for line in [
            "0 8 multipath 3 retain_attached_hw_handler queue_mode bio 0 1 1 round-robin 0 1 1 253:4 1",
            "0 8 multipath 4 queue_if_no_path retain_attached_hw_handler queue_mode bio 0 1 1 round-robin 0 2 1 253:4 1 253:5 1",
            "0 8 multipath 2 queue_if_no_path retain_attached_hw_handler 0 1 1 round-robin 0 1 1 253:4 1",
            "0 8 multipath 9 queue_if_no_path",
        ] {
            assert_eq!(dev("x", "", line, false).parsed_table(), None, "{line}");
        }
        assert_eq!(thin.parsed_table(), None, "not a table we load");
        assert_eq!(thin.target_type(), Some("thin"));
        assert_eq!(err.target_type(), Some("error"));
        let mut striped = dev("striped", "", "0 8 linear 8:0 0", false);
        striped.table.push("8 8 linear 8:16 0".into());
        assert_eq!(striped.sectors(), 16);
        assert_eq!(striped.parsed_table(), None);
        let mut empty = dev("empty", "", "", false);
        empty.live = false;
        empty.table.clear();
        assert_eq!(empty.target_type(), None);
        let lvs = active_lvs(&[thin, lin, err, striped, empty]);
        assert_eq!(lvs.len(), 1);
        assert_eq!(lvs[&("p".to_string(), "v1".to_string())].sectors, 131_072);
    }

    #[test]
    fn finds_failed_paths_in_a_status_line() {
        // `dmsetup status` of a one-path device: queueing (2 features
        // status words), path active, then failed once.
        let ok = "0 131072 multipath 2 0 0 0 1 1 A 0 1 0 253:4 A 0 ";
        let failed = "0 131072 multipath 2 1 0 0 1 1 E 0 1 0 253:4 F 1 ";
        assert!(failed_paths(ok).is_empty());
        assert_eq!(
            failed_paths(failed),
            vec![DevNum {
                major: 253,
                minor: 4
            }]
        );
        assert!(failed_paths("0 8 error ").is_empty());
        assert!(failed_paths("").is_empty());
    }

    #[test]
    fn thin_activation_mirrors_lvm() {
        let tpool = DevNum {
            major: 253,
            minor: 2,
        };
        let lvs = vec![
            ThinLv {
                name: "v-1".into(),
                lv_uuid: "x3URQo-qLTN-RNqp-5k6p-4axg-olVt-1Ih3LB".into(),
                thin_id: 1,
                size: 16 << 20,
                read_only: false,
            },
            ThinLv {
                name: "s1".into(),
                lv_uuid: "z2YQcN-ALR7-v740-vfhZ-3XMh-7A14-iNWoVt".into(),
                thin_id: 10,
                size: 16 << 20,
                read_only: true,
            },
        ];
        let vg_uuid = "jVU2xO-4IdT-cDNa-Q6qd-dFIn-G20c-rEen73";
        // s1 is active already (found by its UUID).
        let obs = vec![dev(
            "dx--p-s1",
            "LVM-jVU2xO4IdTcDNaQ6qddFInG20crEen73z2YQcNALR7v740vfhZ3XMh7A14iNWoVt",
            "0 32768 thin 253:2 10",
            true,
        )];
        let c = thin_activation("dx-p", vg_uuid, tpool, &lvs, &obs);
        assert_eq!(
            c,
            vec![Create {
                name: "dx--p-v--1".into(),
                uuid: "LVM-jVU2xO4IdTcDNaQ6qddFInG20crEen73x3URQoqLTNRNqp5k6p4axgolVt1Ih3LB".into(),
                state: DmState {
                    table: Table::Thin {
                        pool: tpool,
                        id: 1,
                        sectors: 32_768
                    },
                    read_only: false
                }
            }]
        );
        assert_eq!(c[0].state.table.line(), "0 32768 thin 253:2 1");
        assert!(thin_activation("dx-p", vg_uuid, tpool, &lvs[1..], &obs).is_empty());
    }
}
