//! The on-disk heartbeat area: a header block and one slot per controller,
//! each in its own 4 KiB block (`docs/heartbeat.md` has the tables).
//!
//! Every block ends with the SHA-256 of the bytes before it. SHA-256 rather
//! than crc32c because the workspace already carries `sha2` (no new
//! dependency) and hashing 4 KiB every 200 ms costs microseconds; a torn or
//! half-written block fails the check like any other corruption.
//! Integers are little-endian; names are ASCII, NUL-padded.

use crate::core::types::{Epoch, Phase};
use sha2::{Digest as _, Sha256};

/// Size of every block of the area.
pub const BLOCK_SIZE: usize = 4096;
/// Current format version of both block kinds.
pub const FORMAT_VERSION: u16 = 1;
/// Magic of the header block.
pub const AREA_MAGIC: [u8; 8] = *b"DXHBAREA";
/// Magic of a slot block.
pub const SLOT_MAGIC: [u8; 8] = *b"DXHBSLOT";
/// Byte offset of the header block.
pub const HEADER_OFFSET: u64 = 0;
/// Byte offsets of the two slot blocks (block 1 and block 2), in the order
/// of the controllers named in the header.
pub const SLOT_OFFSETS: [u64; 2] = [4096, 8192];
/// Longest controller id a slot holds.
pub const ID_LEN: usize = 16;
/// Longest cluster id the header holds.
pub const CLUSTER_ID_LEN: usize = 32;

const SUM_AT: usize = BLOCK_SIZE - 32;

/// Why a block could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SlotError {
    /// The buffer is not one block.
    #[error("a block is {BLOCK_SIZE} bytes, got {0}")]
    Length(usize),
    /// Every byte is zero: never written (a fresh area or a wiped disk).
    #[error("blank block (never written)")]
    Blank,
    /// The magic is not the expected one: not a heartbeat block.
    #[error("not a heartbeat {kind} block (bad magic)")]
    Magic {
        /// `slot` or `area`.
        kind: &'static str,
    },
    /// Written by a format this build does not know.
    #[error("unsupported format version {0}")]
    Version(u16),
    /// The checksum does not match: a torn write or corruption.
    #[error("checksum mismatch (torn or corrupt block)")]
    Checksum,
    /// A field holds a value the format does not allow.
    #[error("field {field}: {reason}")]
    Field {
        /// The field's name in the format table.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// A fence message: `target` must stop serving; written by the fencer in its
/// own slot before any fence agent runs (the poison pill).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceMsg {
    /// The controller that must stop.
    pub target: String,
    /// The fencer's new epoch, the one it takes over with.
    pub epoch: Epoch,
}

/// "Rejoin acknowledged": the survivor saw `target` come back fenced in
/// incarnation `incarnation` and lets it leave `Fenced` for the fence of
/// `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ack {
    /// The controller acknowledged.
    pub target: String,
    /// Its boot incarnation that came back.
    pub incarnation: u64,
    /// The epoch of the fence message acknowledged.
    pub epoch: Epoch,
}

/// One controller's slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// The writer.
    pub controller: String,
    /// The writer's boot incarnation.
    pub incarnation: u64,
    /// Grows by one at every write of this incarnation; a reader that sees
    /// it change knows the writer is alive.
    pub counter: u64,
    /// The writer's epoch.
    pub epoch: Epoch,
    /// The writer's phase.
    pub state: Phase,
    /// Message box: a fence message for the partner.
    pub fence: Option<FenceMsg>,
    /// Message box: rejoin acknowledged.
    pub ack: Option<Ack>,
}

/// The header block: which cluster the area belongs to and which controller
/// owns which slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AreaHeader {
    /// The cluster's id; a disk of another cluster is refused.
    pub cluster_id: String,
    /// Controllers owning block 1 and block 2.
    pub controllers: [String; 2],
}

const FLAG_FENCE: u8 = 1;
const FLAG_ACK: u8 = 2;

// Field offsets of a slot block.
const S_VERSION: usize = 8;
const S_STATE: usize = 10;
const S_FLAGS: usize = 11;
const S_CONTROLLER: usize = 16;
const S_INCARNATION: usize = 32;
const S_COUNTER: usize = 40;
const S_EPOCH: usize = 48;
const S_FENCE_TARGET: usize = 72;
const S_FENCE_EPOCH: usize = 88;
const S_ACK_TARGET: usize = 112;
const S_ACK_INCARNATION: usize = 128;
const S_ACK_EPOCH: usize = 136;
const S_END: usize = 160;

// Field offsets of the header block.
const H_VERSION: usize = 8;
const H_CLUSTER: usize = 16;
const H_CONTROLLERS: [usize; 2] = [48, 64];
const H_END: usize = 80;

type Block = [u8; BLOCK_SIZE];

fn put_u64(b: &mut Block, at: usize, v: u64) {
    b[at..at + 8].copy_from_slice(&v.to_le_bytes());
}

fn get_u64(b: &Block, at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn get_u16(b: &Block, at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn put_name(
    b: &mut Block,
    at: usize,
    len: usize,
    field: &'static str,
    s: &str,
) -> Result<(), SlotError> {
    if s.len() > len || !s.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(SlotError::Field {
            field,
            reason: format!("{s:?} must be at most {len} printable ASCII bytes"),
        });
    }
    b[at..at + s.len()].copy_from_slice(s.as_bytes());
    Ok(())
}

fn get_name(b: &Block, at: usize, len: usize, field: &'static str) -> Result<String, SlotError> {
    let raw = &b[at..at + len];
    let end = raw.iter().position(|&c| c == 0).unwrap_or(len);
    let (name, pad) = raw.split_at(end);
    if !name.iter().all(u8::is_ascii_graphic) || pad.iter().any(|&c| c != 0) {
        return Err(SlotError::Field {
            field,
            reason: "not NUL-padded printable ASCII".into(),
        });
    }
    Ok(name.iter().map(|&c| char::from(c)).collect())
}

fn put_epoch(b: &mut Block, at: usize, field: &'static str, e: &Epoch) -> Result<(), SlotError> {
    put_u64(b, at, e.counter);
    put_name(b, at + 8, ID_LEN, field, &e.controller)
}

fn get_epoch(b: &Block, at: usize, field: &'static str) -> Result<Epoch, SlotError> {
    Ok(Epoch {
        counter: get_u64(b, at),
        controller: get_name(b, at + 8, ID_LEN, field)?,
    })
}

fn seal(b: &mut Block) {
    let sum = Sha256::digest(&b[..SUM_AT]);
    b[SUM_AT..].copy_from_slice(&sum);
}

/// Common checks of both block kinds, in the order that gives the clearest
/// error: length, blank, magic, checksum, version.
fn open<'a>(bytes: &'a [u8], magic: &[u8; 8], kind: &'static str) -> Result<&'a Block, SlotError> {
    let b: &Block = bytes
        .try_into()
        .map_err(|_| SlotError::Length(bytes.len()))?;
    if b.iter().all(|&c| c == 0) {
        return Err(SlotError::Blank);
    }
    if &b[..8] != magic {
        return Err(SlotError::Magic { kind });
    }
    if Sha256::digest(&b[..SUM_AT]).as_slice() != &b[SUM_AT..] {
        return Err(SlotError::Checksum);
    }
    let version = get_u16(b, S_VERSION);
    if version != FORMAT_VERSION {
        return Err(SlotError::Version(version));
    }
    Ok(b)
}

fn reserved_zero(b: &Block, ranges: &[(usize, usize)]) -> Result<(), SlotError> {
    for &(from, to) in ranges {
        if b[from..to].iter().any(|&c| c != 0) {
            return Err(SlotError::Field {
                field: "reserved",
                reason: format!("bytes {from}..{to} must be zero in version {FORMAT_VERSION}"),
            });
        }
    }
    Ok(())
}

impl Slot {
    /// The block for this slot, checksum included.
    pub fn encode(&self) -> Result<Box<Block>, SlotError> {
        let mut b: Box<Block> = Box::new([0u8; BLOCK_SIZE]);
        b[..8].copy_from_slice(&SLOT_MAGIC);
        b[S_VERSION..S_VERSION + 2].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        b[S_STATE] = self.state.code();
        let mut flags = 0;
        if self.fence.is_some() {
            flags |= FLAG_FENCE;
        }
        if self.ack.is_some() {
            flags |= FLAG_ACK;
        }
        b[S_FLAGS] = flags;
        put_name(&mut b, S_CONTROLLER, ID_LEN, "controller", &self.controller)?;
        put_u64(&mut b, S_INCARNATION, self.incarnation);
        put_u64(&mut b, S_COUNTER, self.counter);
        put_epoch(&mut b, S_EPOCH, "epoch.controller", &self.epoch)?;
        if let Some(f) = &self.fence {
            put_name(&mut b, S_FENCE_TARGET, ID_LEN, "fence.target", &f.target)?;
            put_epoch(&mut b, S_FENCE_EPOCH, "fence.epoch.controller", &f.epoch)?;
        }
        if let Some(a) = &self.ack {
            put_name(&mut b, S_ACK_TARGET, ID_LEN, "ack.target", &a.target)?;
            put_u64(&mut b, S_ACK_INCARNATION, a.incarnation);
            put_epoch(&mut b, S_ACK_EPOCH, "ack.epoch.controller", &a.epoch)?;
        }
        seal(&mut b);
        Ok(b)
    }

    /// Parses a slot block; any damage is a typed error, never a panic.
    pub fn decode(bytes: &[u8]) -> Result<Slot, SlotError> {
        let b = open(bytes, &SLOT_MAGIC, "slot")?;
        let state = Phase::from_code(b[S_STATE]).ok_or_else(|| SlotError::Field {
            field: "state",
            reason: format!("unknown state code {}", b[S_STATE]),
        })?;
        let flags = b[S_FLAGS];
        if flags & !(FLAG_FENCE | FLAG_ACK) != 0 {
            return Err(SlotError::Field {
                field: "flags",
                reason: format!("unknown flags {flags:#04x}"),
            });
        }
        let mut reserved = vec![(12, S_CONTROLLER), (S_END, SUM_AT)];
        let fence = if flags & FLAG_FENCE != 0 {
            Some(FenceMsg {
                target: get_name(b, S_FENCE_TARGET, ID_LEN, "fence.target")?,
                epoch: get_epoch(b, S_FENCE_EPOCH, "fence.epoch.controller")?,
            })
        } else {
            reserved.push((S_FENCE_TARGET, S_ACK_TARGET));
            None
        };
        let ack = if flags & FLAG_ACK != 0 {
            Some(Ack {
                target: get_name(b, S_ACK_TARGET, ID_LEN, "ack.target")?,
                incarnation: get_u64(b, S_ACK_INCARNATION),
                epoch: get_epoch(b, S_ACK_EPOCH, "ack.epoch.controller")?,
            })
        } else {
            reserved.push((S_ACK_TARGET, S_END));
            None
        };
        reserved_zero(b, &reserved)?;
        let controller = get_name(b, S_CONTROLLER, ID_LEN, "controller")?;
        if controller.is_empty() {
            return Err(SlotError::Field {
                field: "controller",
                reason: "empty".into(),
            });
        }
        Ok(Slot {
            controller,
            incarnation: get_u64(b, S_INCARNATION),
            counter: get_u64(b, S_COUNTER),
            epoch: get_epoch(b, S_EPOCH, "epoch.controller")?,
            state,
            fence,
            ack,
        })
    }
}

impl AreaHeader {
    /// The header block, checksum included.
    pub fn encode(&self) -> Result<Box<Block>, SlotError> {
        if self.cluster_id.is_empty()
            || self.controllers.iter().any(String::is_empty)
            || self.controllers[0] == self.controllers[1]
        {
            return Err(SlotError::Field {
                field: "header",
                reason: "cluster id and two distinct controller ids are required".into(),
            });
        }
        let mut b: Box<Block> = Box::new([0u8; BLOCK_SIZE]);
        b[..8].copy_from_slice(&AREA_MAGIC);
        b[H_VERSION..H_VERSION + 2].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
        put_name(
            &mut b,
            H_CLUSTER,
            CLUSTER_ID_LEN,
            "cluster_id",
            &self.cluster_id,
        )?;
        for (at, id) in H_CONTROLLERS.iter().zip(&self.controllers) {
            put_name(&mut b, *at, ID_LEN, "controllers", id)?;
        }
        seal(&mut b);
        Ok(b)
    }

    /// Parses a header block.
    pub fn decode(bytes: &[u8]) -> Result<AreaHeader, SlotError> {
        let b = open(bytes, &AREA_MAGIC, "area")?;
        reserved_zero(b, &[(10, H_CLUSTER), (H_END, SUM_AT)])?;
        let cluster_id = get_name(b, H_CLUSTER, CLUSTER_ID_LEN, "cluster_id")?;
        let controllers = [
            get_name(b, H_CONTROLLERS[0], ID_LEN, "controllers")?,
            get_name(b, H_CONTROLLERS[1], ID_LEN, "controllers")?,
        ];
        if cluster_id.is_empty()
            || controllers.iter().any(String::is_empty)
            || controllers[0] == controllers[1]
        {
            return Err(SlotError::Field {
                field: "header",
                reason: "cluster id and two distinct controller ids are required".into(),
            });
        }
        Ok(AreaHeader {
            cluster_id,
            controllers,
        })
    }

    /// Byte offset of `controller`'s slot, `None` if the area is not ours.
    pub fn slot_offset(&self, controller: &str) -> Option<u64> {
        self.controllers
            .iter()
            .position(|c| c == controller)
            .map(|i| SLOT_OFFSETS[i])
    }
}

/// Checks the property the fuzz target asserts: decoding arbitrary bytes
/// never panics, and whatever decodes encodes back to the same block.
pub fn check_decode_property(data: &[u8]) {
    if let Ok(slot) = Slot::decode(data) {
        let again = slot.encode().map(|b| b.to_vec());
        assert_eq!(again.as_deref(), Ok(data), "slot round trip");
    }
    if let Ok(h) = AreaHeader::decode(data) {
        let again = h.encode().map(|b| b.to_vec());
        assert_eq!(again.as_deref(), Ok(data), "header round trip");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(n: u64, c: &str) -> Epoch {
        Epoch {
            counter: n,
            controller: c.into(),
        }
    }

    fn full() -> Slot {
        Slot {
            controller: "B".into(),
            incarnation: 0xdead_beef_0102_0304,
            counter: 77,
            epoch: epoch(5, "B"),
            state: Phase::Survivor,
            fence: Some(FenceMsg {
                target: "A".into(),
                epoch: epoch(5, "B"),
            }),
            ack: Some(Ack {
                target: "A".into(),
                incarnation: 9,
                epoch: epoch(5, "B"),
            }),
        }
    }

    #[test]
    fn block_size_matches_the_backend() {
        assert_eq!(BLOCK_SIZE, crate::backend::BLOCK);
    }

    #[test]
    fn slot_round_trips_with_and_without_messages() {
        let s = full();
        let b = s.encode().unwrap();
        assert_eq!(Slot::decode(&b[..]).unwrap(), s);
        for phase in Phase::ALL {
            let s = Slot {
                fence: None,
                ack: None,
                state: phase,
                ..full()
            };
            let b = s.encode().unwrap();
            assert_eq!(Slot::decode(&b[..]).unwrap(), s);
            check_decode_property(&b[..]);
        }
    }

    #[test]
    fn layout_is_the_documented_one() {
        let b = full().encode().unwrap();
        assert_eq!(&b[0..8], b"DXHBSLOT");
        assert_eq!(&b[8..10], &[1, 0]);
        assert_eq!(b[10], 6);
        assert_eq!(b[11], 3);
        assert_eq!(b[16], b'B');
        assert_eq!(&b[40..48], &77u64.to_le_bytes());
        assert_eq!(&b[48..56], &5u64.to_le_bytes());
        assert_eq!(b[72], b'A');
        assert_eq!(&b[128..136], &9u64.to_le_bytes());
    }

    #[test]
    fn damage_is_a_typed_error() {
        assert_eq!(Slot::decode(&[0u8; BLOCK_SIZE]), Err(SlotError::Blank));
        assert_eq!(Slot::decode(&[0u8; 12]), Err(SlotError::Length(12)));
        let good = full().encode().unwrap();

        // A torn write: the first sector new, the rest from an older write.
        let mut torn = good.clone();
        let older = Slot {
            counter: 76,
            ..full()
        }
        .encode()
        .unwrap();
        torn[512..].copy_from_slice(&older[512..]);
        assert_eq!(Slot::decode(&torn[..]), Err(SlotError::Checksum));

        let mut flipped = good.clone();
        flipped[2000] ^= 1;
        assert_eq!(Slot::decode(&flipped[..]), Err(SlotError::Checksum));

        let mut magic = good.clone();
        magic[0] = b'X';
        assert_eq!(
            Slot::decode(&magic[..]),
            Err(SlotError::Magic { kind: "slot" })
        );
        // A header is not a slot.
        let h = AreaHeader {
            cluster_id: "c1".into(),
            controllers: ["A".into(), "B".into()],
        }
        .encode()
        .unwrap();
        assert_eq!(Slot::decode(&h[..]), Err(SlotError::Magic { kind: "slot" }));
    }

    fn resealed(mut b: Box<Block>, f: impl FnOnce(&mut Block)) -> Box<Block> {
        f(&mut b);
        seal(&mut b);
        b
    }

    #[test]
    fn sealed_but_invalid_fields_are_refused() {
        let good = full().encode().unwrap();
        let v2 = resealed(good.clone(), |b| b[8] = 2);
        assert_eq!(Slot::decode(&v2[..]), Err(SlotError::Version(2)));
        let state = resealed(good.clone(), |b| b[10] = 99);
        assert!(matches!(
            Slot::decode(&state[..]),
            Err(SlotError::Field { field: "state", .. })
        ));
        let flags = resealed(good.clone(), |b| b[11] = 0x80);
        assert!(matches!(
            Slot::decode(&flags[..]),
            Err(SlotError::Field { field: "flags", .. })
        ));
        let junk = resealed(good.clone(), |b| b[3000] = 1);
        assert!(matches!(
            Slot::decode(&junk[..]),
            Err(SlotError::Field {
                field: "reserved",
                ..
            })
        ));
        let name = resealed(good.clone(), |b| b[17] = 0xff);
        assert!(matches!(
            Slot::decode(&name[..]),
            Err(SlotError::Field {
                field: "controller",
                ..
            })
        ));
        // A fence flag cleared but its bytes left behind would hide a message.
        let hidden = resealed(good, |b| b[11] = FLAG_ACK);
        assert!(matches!(
            Slot::decode(&hidden[..]),
            Err(SlotError::Field {
                field: "reserved",
                ..
            })
        ));
    }

    #[test]
    fn encode_refuses_long_or_odd_names() {
        let s = Slot {
            controller: "x".repeat(17),
            ..full()
        };
        assert!(matches!(
            s.encode(),
            Err(SlotError::Field {
                field: "controller",
                ..
            })
        ));
        let s = Slot {
            controller: "a b".into(),
            ..full()
        };
        assert!(s.encode().is_err());
    }

    #[test]
    fn header_round_trips_and_maps_slots() {
        let h = AreaHeader {
            cluster_id: "duplex-0001".into(),
            controllers: ["A".into(), "B".into()],
        };
        let b = h.encode().unwrap();
        assert_eq!(AreaHeader::decode(&b[..]).unwrap(), h);
        assert_eq!(h.slot_offset("A"), Some(4096));
        assert_eq!(h.slot_offset("B"), Some(8192));
        assert_eq!(h.slot_offset("C"), None);
        assert_eq!(AreaHeader::decode(&[0u8; 4096]), Err(SlotError::Blank));
        let same = AreaHeader {
            cluster_id: "c".into(),
            controllers: ["A".into(), "A".into()],
        };
        assert!(same.encode().is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic stand-in for the fuzzer in the plain suite:
        // blocks of pseudo-random bytes, and valid blocks with one byte set
        // to every value.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..200 {
            let mut b = [0u8; BLOCK_SIZE];
            for c in b.iter_mut() {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *c = x.to_le_bytes()[0];
            }
            check_decode_property(&b);
            b[..8].copy_from_slice(&SLOT_MAGIC);
            check_decode_property(&b);
        }
        let good = full().encode().unwrap();
        for at in [0, 8, 10, 11, 16, 72, 159, 4064, 4095] {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut b = good.clone();
                b[at] = v;
                check_decode_property(&b[..]);
                let sealed = resealed(b, |_| {});
                check_decode_property(&sealed[..]);
            }
        }
    }
}
