//! Sizes: volume sizes with units, rounding to the LVM extent, and the thin
//! pool's metadata size.

use super::Invalid;
use duplex_api::syntax::Size;

/// The LVM physical extent size used for every pool (the LVM default).
pub const EXTENT: u64 = 4 << 20;
/// The thin pool chunk size: LVM's default for pools below 1 TiB.
pub const CHUNK: u64 = 64 << 10;
/// Smallest thin metadata LV we make.
pub const META_MIN: u64 = 16 << 20;
/// Largest thin metadata LV LVM supports (15.81 GiB; we stop at 15 GiB).
pub const META_MAX: u64 = 15 << 30;
/// Largest volume we accept (LVM's limit for thin volumes is 8 EiB).
pub const VOLUME_MAX: u64 = 1 << 60;

/// Parses a size with a unit (`"10GiB"`, `"512MiB"`); bare numbers are
/// refused, as everywhere in Duplex.
pub fn parse_size(field: &str, s: &str) -> Result<u64, Invalid> {
    let size: Size = s.parse().map_err(|r: String| Invalid::new(field, r))?;
    check_volume_size(field, size.bytes())
}

/// Checks a volume size in bytes and rounds it up to the extent: LVM would
/// round it anyway, and the recorded size must be the real one.
pub fn check_volume_size(field: &str, bytes: u64) -> Result<u64, Invalid> {
    if bytes == 0 {
        return Err(Invalid::new(field, "must be greater than zero"));
    }
    if bytes > VOLUME_MAX {
        return Err(Invalid::new(field, "larger than 1 EiB"));
    }
    Ok(round_up(bytes, EXTENT))
}

/// Rounds `v` up to a multiple of `to`.
pub fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to).saturating_mul(to)
}

/// Metadata size for a thin pool of `data` bytes: twice LVM's estimate of
/// 64 bytes per chunk (snapshots and clones make the mapping trees larger
/// than one entry per chunk), at least 16 MiB, at most 15 GiB, in extents.
pub fn metadata_size(data: u64) -> u64 {
    let chunks = data / CHUNK;
    let est = chunks.saturating_mul(128);
    round_up(est.clamp(META_MIN, META_MAX), EXTENT)
}

/// Formats bytes the way config-keeper stores sizes (`10GiB`).
pub fn format_size(bytes: u64) -> String {
    Size(bytes).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_need_units_and_round_to_extents() {
        assert_eq!(parse_size("size", "1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("size", "1MiB"), Ok(4 << 20));
        assert_eq!(parse_size("size", "10G"), Ok(10 << 30));
        let e = parse_size("size", "1024").unwrap_err();
        assert_eq!(e.field, "size");
        assert!(e.reason.contains("unit"), "{}", e.reason);
        assert!(parse_size("size", "0GiB").is_err());
        assert!(parse_size("size", "1XB").is_err());
        assert!(parse_size("size", "-1GiB").is_err());
        assert!(parse_size("size", "99999999999TiB").is_err());
        assert_eq!(format_size(1 << 30), "1GiB");
    }

    #[test]
    fn metadata_is_bounded() {
        assert_eq!(metadata_size(1 << 30), META_MIN);
        // 1 TiB: 16 Mi chunks * 128 B = 2 GiB.
        assert_eq!(metadata_size(1 << 40), 2 << 30);
        assert_eq!(metadata_size(1 << 50), META_MAX);
        assert_eq!(metadata_size(100 << 30) % EXTENT, 0);
    }
}
