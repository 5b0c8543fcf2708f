//! Names of pools and volumes and how they map onto LVM and device-mapper.
//!
//! Convention shared with the targets service: a volume's block device is
//! `/dev/dx-<pool>/<volume>` (volume group `dx-<pool>`, logical volume
//! `<volume>`). The thin pool is the LV [`THIN_POOL_LV`], whose leading
//! underscore no volume name can have, so the two never collide.

use super::Invalid;
use duplex_api::syntax::check_name;

/// Prefix of every volume group this service manages.
pub const VG_PREFIX: &str = "dx-";
/// Name of the thin-pool LV in every pool (volume names start with a letter
/// or digit, so this cannot be a volume's name).
pub const THIN_POOL_LV: &str = "_dxthin";
/// Name of the thin-pool metadata LV before it is joined to the thin pool.
pub const THIN_META_LV: &str = "_dxmeta";

/// LVM refuses LV names starting with these.
const RESERVED_PREFIXES: [&str; 2] = ["snapshot", "pvmove"];
/// LVM refuses LV names containing these (its internal sub-LV suffixes).
const RESERVED_PARTS: [&str; 16] = [
    "_cdata", "_cmeta", "_corig", "_cpool", "_cvol", "_iorig", "_mimage", "_mlog", "_pmspare",
    "_rimage", "_rmeta", "_tdata", "_tmeta", "_vdata", "_vorigin", "_wcorig",
];
/// Device-mapper names are at most 127 bytes; the longest suffix LVM adds to
/// a pool's sub-LVs (`-_dxthin_tdata_rimage_63`) is kept free.
const DM_NAME_MAX: usize = 127;
const POOL_SUFFIX_ROOM: usize = 26;

/// The volume group of a pool.
pub fn vg_name(pool: &str) -> String {
    format!("{VG_PREFIX}{pool}")
}

/// The pool of a volume group, when it is one of ours.
pub fn pool_of_vg(vg: &str) -> Option<&str> {
    vg.strip_prefix(VG_PREFIX).filter(|p| !p.is_empty())
}

/// The block device of a volume (the contract with the targets service).
pub fn device_path(pool: &str, volume: &str) -> String {
    format!("/dev/{}/{volume}", vg_name(pool))
}

/// Device-mapper escaping: LVM doubles every '-' in VG and LV names and
/// joins them with a single '-'.
pub fn dm_name(vg: &str, lv: &str) -> String {
    format!("{}-{}", vg.replace('-', "--"), lv.replace('-', "--"))
}

/// The device-mapper name of a thin pool's `-tpool` layer (the device
/// thin volumes map onto): LVM escapes the VG and LV names but appends
/// the layer suffix with a single '-'.
pub fn tpool_dm_name(vg: &str, pool_lv: &str) -> String {
    format!("{}-tpool", dm_name(vg, pool_lv))
}

/// Splits a device-mapper name into (VG, LV); `None` when it is not an LVM
/// name (no single '-' separator).
pub fn split_dm_name(name: &str) -> Option<(String, String)> {
    let b = name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' {
            if b.get(i + 1) == Some(&b'-') {
                i += 2;
                continue;
            }
            let vg = name[..i].replace("--", "-");
            let lv = name[i + 1..].replace("--", "-");
            return Some((vg, lv));
        }
        i += 1;
    }
    None
}

/// Checks a pool name (`field` names it in the error).
pub fn check_pool_name(field: &str, pool: &str) -> Result<(), Invalid> {
    check_name(pool).map_err(|r| Invalid::new(field, r))?;
    let escaped = vg_name(pool).replace('-', "--");
    if escaped.len() + POOL_SUFFIX_ROOM > DM_NAME_MAX {
        return Err(Invalid::new(
            field,
            format!("{pool:?} is too long for device-mapper names (LVM doubles each '-')"),
        ));
    }
    Ok(())
}

/// Checks a volume (or snapshot, or clone) name within `pool`.
pub fn check_volume_name(field: &str, pool: &str, volume: &str) -> Result<(), Invalid> {
    check_name(volume).map_err(|r| Invalid::new(field, r))?;
    if let Some(p) = RESERVED_PREFIXES.iter().find(|p| volume.starts_with(*p)) {
        return Err(Invalid::new(
            field,
            format!("{volume:?}: names starting with {p:?} are reserved by LVM"),
        ));
    }
    if let Some(p) = RESERVED_PARTS.iter().find(|p| volume.contains(*p)) {
        return Err(Invalid::new(
            field,
            format!("{volume:?}: names containing {p:?} are reserved by LVM"),
        ));
    }
    if dm_name(&vg_name(pool), volume).len() > DM_NAME_MAX {
        return Err(Invalid::new(
            field,
            format!("{volume:?} is too long for a device-mapper name in pool {pool:?}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dm_names_round_trip() {
        assert_eq!(dm_name("dx-p-1", "v-a"), "dx--p--1-v--a");
        assert_eq!(
            split_dm_name("dx--p--1-v--a"),
            Some(("dx-p-1".into(), "v-a".into()))
        );
        assert_eq!(
            split_dm_name("dx--p1-_dxthin_tdata"),
            Some(("dx-p1".into(), "_dxthin_tdata".into()))
        );
        // A VG named dx-p1-x must not be mistaken for pool p1.
        let (vg, _) = split_dm_name("dx--p1--x-v").unwrap();
        assert_eq!(pool_of_vg(&vg), Some("p1-x"));
        assert_eq!(split_dm_name("nolvm"), None);
        // As seen in the lab: dx--tst-_dxthin-tpool.
        assert_eq!(
            tpool_dm_name("dx-tst", THIN_POOL_LV),
            "dx--tst-_dxthin-tpool"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(check_pool_name("name", "tier1").is_ok());
        assert_eq!(check_pool_name("name", "").unwrap_err().field, "name");
        assert!(check_pool_name("name", "bad/name").is_err());
        assert!(check_pool_name("name", "-x").is_err());
        assert!(check_pool_name("name", &"a".repeat(60)).is_ok());
        assert!(check_pool_name("name", &format!("a{}b", "-".repeat(50))).is_err());
        assert!(check_volume_name("name", "p", "vol_1.a-b").is_ok());
        assert!(check_volume_name("name", "p", "snapshot1").is_err());
        assert!(check_volume_name("name", "p", "a_tmeta").is_err());
        assert!(check_volume_name("name", "p", "_dxthin").is_err());
        assert!(check_volume_name("name", "p", "a b").is_err());
        assert_eq!(device_path("p", "v"), "/dev/dx-p/v");
    }
}
