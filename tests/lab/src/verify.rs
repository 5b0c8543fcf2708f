//! The on-disk block format of `duplex-verify`: sequence-numbered,
//! self-checking 4 KiB blocks. Pure functions, unit-tested.

/// Size of one verified block (and of each O_DIRECT write).
pub const BLOCK: usize = 4096;
/// Marks a block written by duplex-verify.
pub const MAGIC: &[u8; 8] = b"DPLXVRF1";
const SUM_AT: usize = BLOCK - 8;

/// Why a block read back does not hold what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BlockError {
    /// The buffer is not one block long.
    #[error("buffer is {0} bytes, not one block")]
    Size(usize),
    /// Not written by duplex-verify (or overwritten).
    #[error("bad magic")]
    Magic,
    /// The checksum does not match: torn or corrupted block.
    #[error("bad checksum")]
    Checksum,
    /// A valid block of another LBA: misdirected write or read.
    #[error("block for lba {found} found at lba {expected}")]
    Lba {
        /// The LBA that was read.
        expected: u64,
        /// The LBA written in the block.
        found: u64,
    },
    /// A valid block from another run.
    #[error("block from run {found:x}, expected run {expected:x}")]
    Run {
        /// This run's id.
        expected: u64,
        /// The run id in the block.
        found: u64,
    },
}

/// FNV-1a, 64 bit: enough to catch torn and stale blocks.
pub fn checksum(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn put(buf: &mut [u8], at: usize, v: u64) {
    if let Some(s) = buf.get_mut(at..at + 8) {
        s.copy_from_slice(&v.to_le_bytes());
    }
}

fn get(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    if let Some(s) = buf.get(at..at + 8) {
        b.copy_from_slice(s);
    }
    u64::from_le_bytes(b)
}

/// Fills `buf` (one block) with the block for (`run`, `lba`, `seq`).
pub fn encode(buf: &mut [u8], run: u64, lba: u64, seq: u64) -> Result<(), BlockError> {
    if buf.len() != BLOCK {
        return Err(BlockError::Size(buf.len()));
    }
    buf.get_mut(..8)
        .ok_or(BlockError::Size(0))?
        .copy_from_slice(MAGIC);
    put(buf, 8, seq);
    put(buf, 16, lba);
    put(buf, 24, run);
    // Payload varies with every write so a stale block cannot pass.
    let mut x = seq ^ lba.rotate_left(32) ^ run ^ 0x9e37_79b9_7f4a_7c15;
    let mut at = 32;
    while at < SUM_AT {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        put(buf, at, x);
        at += 8;
    }
    let sum = checksum(buf.get(..SUM_AT).unwrap_or_default());
    put(buf, SUM_AT, sum);
    Ok(())
}

/// Checks a block read from `lba` and returns its sequence number.
pub fn decode(buf: &[u8], run: u64, lba: u64) -> Result<u64, BlockError> {
    if buf.len() != BLOCK {
        return Err(BlockError::Size(buf.len()));
    }
    if buf.get(..8) != Some(MAGIC.as_slice()) {
        return Err(BlockError::Magic);
    }
    if checksum(buf.get(..SUM_AT).unwrap_or_default()) != get(buf, SUM_AT) {
        return Err(BlockError::Checksum);
    }
    let found = get(buf, 16);
    if found != lba {
        return Err(BlockError::Lba {
            expected: lba,
            found,
        });
    }
    let r = get(buf, 24);
    if r != run {
        return Err(BlockError::Run {
            expected: run,
            found: r,
        });
    }
    Ok(get(buf, 8))
}

/// The longest gap between consecutive completion times (nanoseconds, any
/// order) and the time it started; `None` with fewer than two completions.
pub fn longest_gap(times: &mut [u64]) -> Option<(u64, u64)> {
    times.sort_unstable();
    times
        .windows(2)
        .filter_map(|w| match w {
            [a, b] => Some((b - a, *a)),
            _ => None,
        })
        .max_by_key(|(gap, _)| *gap)
}

/// The `n` longest gaps between consecutive completion times (nanoseconds),
/// longest first, as (gap, start).
pub fn longest_gaps(times: &mut [u64], n: usize) -> Vec<(u64, u64)> {
    times.sort_unstable();
    let mut gaps: Vec<(u64, u64)> = times
        .windows(2)
        .filter_map(|w| match w {
            [a, b] => Some((b - a, *a)),
            _ => None,
        })
        .collect();
    gaps.sort_unstable_by_key(|g| std::cmp::Reverse(g.0));
    gaps.truncate(n);
    gaps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let mut b = vec![0u8; BLOCK];
        encode(&mut b, 7, 42, 1000).unwrap();
        assert_eq!(decode(&b, 7, 42), Ok(1000));
    }

    #[test]
    fn detects_corruption_and_misplacement() {
        let mut b = vec![0u8; BLOCK];
        encode(&mut b, 7, 42, 1000).unwrap();
        assert_eq!(
            decode(&b, 7, 43),
            Err(BlockError::Lba {
                expected: 43,
                found: 42
            })
        );
        assert!(matches!(decode(&b, 8, 42), Err(BlockError::Run { .. })));
        b[100] ^= 1;
        assert_eq!(decode(&b, 7, 42), Err(BlockError::Checksum));
        assert_eq!(decode(&vec![0u8; BLOCK], 7, 42), Err(BlockError::Magic));
        assert_eq!(decode(&b[..10], 7, 42), Err(BlockError::Size(10)));
    }

    #[test]
    fn gap() {
        let mut t = vec![30, 10, 0, 100, 110];
        assert_eq!(longest_gap(&mut t), Some((70, 30)));
        assert_eq!(longest_gap(&mut [5]), None);
        let mut t = vec![30, 10, 0, 100, 110];
        assert_eq!(longest_gaps(&mut t, 2), vec![(70, 30), (20, 10)]);
    }
}
