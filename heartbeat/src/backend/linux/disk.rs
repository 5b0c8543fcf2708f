//! A heartbeat disk on a block device (or, in tests, a file), read and
//! written past the page cache.
//!
//! O_DIRECT because the lab showed buffered reads of a shared disk returning
//! stale data while the partner's writes were on the medium; O_DSYNC so a
//! write that returns is on the medium, not in a volatile cache. O_DIRECT
//! needs the buffer, offset and length aligned to the logical block size, so
//! every transfer goes through one page-aligned 4 KiB buffer kept for the
//! life of the disk (no allocation on the heartbeat path).

use crate::backend::{DiskError, HeartbeatDisk, BLOCK};
use nix::fcntl::OFlag;
use nix::sys::mman::{mlockall, MlockAllFlags};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

/// [`BLOCK`] as a byte offset (usize to u64 never truncates on Linux).
const BLOCK_BYTES: u64 = BLOCK as u64;

/// One block in page-aligned memory, as O_DIRECT requires; the alignment
/// comes from the type, so no unsafe allocation is needed.
#[repr(C, align(4096))]
pub(super) struct Aligned(pub(super) [u8; BLOCK]);

/// The open device: replaced as a whole by [`HeartbeatDisk::reopen`].
struct Opened {
    file: File,
    size: u64,
}

/// [`HeartbeatDisk`] on a device opened with O_DIRECT|O_DSYNC.
pub struct DirectDisk {
    name: String,
    path: PathBuf,
    // One thread drives each disk, so the locks are never contended; they
    // only make the device and the shared buffer reachable from `&self`.
    dev: Mutex<Opened>,
    buf: Mutex<Box<Aligned>>,
}

impl std::fmt::Debug for DirectDisk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectDisk")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("size", &self.size())
            .finish_non_exhaustive()
    }
}

impl DirectDisk {
    /// Opens `path` (a block device, or a regular file on a filesystem that
    /// supports O_DIRECT) for heartbeat I/O under the name `name`.
    pub fn open(name: &str, path: &Path) -> Result<Self, DiskError> {
        Ok(DirectDisk {
            name: name.to_string(),
            path: path.to_path_buf(),
            dev: Mutex::new(open_device(name, path)?),
            buf: Mutex::new(Box::new(Aligned([0; BLOCK]))),
        })
    }

    /// The device size in bytes, as seen when it was last opened.
    pub fn size(&self) -> u64 {
        self.dev.lock().unwrap_or_else(PoisonError::into_inner).size
    }

    /// The device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn check(&self, offset: u64, size: u64) -> Result<(), DiskError> {
        let fits = offset
            .checked_add(BLOCK_BYTES)
            .is_some_and(|end| end <= size);
        if offset % BLOCK_BYTES != 0 || !fits {
            return Err(DiskError::Range {
                disk: self.name.clone(),
                offset,
            });
        }
        Ok(())
    }

    fn io_err(&self, offset: u64, source: std::io::Error) -> DiskError {
        DiskError::Io {
            disk: self.name.clone(),
            offset,
            source,
        }
    }
}

fn open_device(name: &str, path: &Path) -> Result<Opened, DiskError> {
    let open_err = |source| DiskError::Open {
        disk: name.to_string(),
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags((OFlag::O_DIRECT | OFlag::O_DSYNC).bits())
        .open(path)
        .map_err(open_err)?;
    // A block device's metadata says length 0; seeking to the end gives
    // its real size for devices and files alike.
    let size = file.seek(SeekFrom::End(0)).map_err(open_err)?;
    Ok(Opened { file, size })
}

/// Retries a transfer interrupted by a signal; anything but the whole block
/// is an error (a short transfer to a heartbeat slot is never acceptable).
fn whole_block(mut op: impl FnMut() -> std::io::Result<usize>, what: &str) -> std::io::Result<()> {
    loop {
        match op() {
            Ok(n) if n == BLOCK => return Ok(()),
            Ok(n) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("short {what}: {n} of {BLOCK} bytes"),
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

impl HeartbeatDisk for DirectDisk {
    fn name(&self) -> &str {
        &self.name
    }

    fn write_block(&self, offset: u64, block: &[u8; BLOCK]) -> Result<(), DiskError> {
        let dev = self.dev.lock().unwrap_or_else(PoisonError::into_inner);
        self.check(offset, dev.size)?;
        let mut buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        buf.0.copy_from_slice(block);
        whole_block(|| dev.file.write_at(&buf.0, offset), "write")
            .map_err(|e| self.io_err(offset, e))
    }

    fn read_block(&self, offset: u64) -> Result<Box<[u8; BLOCK]>, DiskError> {
        let dev = self.dev.lock().unwrap_or_else(PoisonError::into_inner);
        self.check(offset, dev.size)?;
        let mut buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        whole_block(|| dev.file.read_at(&mut buf.0, offset), "read")
            .map_err(|e| self.io_err(offset, e))?;
        Ok(Box::new(buf.0))
    }

    fn reopen(&self) -> Result<(), DiskError> {
        // The path (a by-id link) names the disk now in that bay: a disk
        // pulled and pushed back, or replaced, is another device node.
        let fresh = open_device(&self.name, &self.path)?;
        *self.dev.lock().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }
}

/// Locking the process's memory failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot lock the heartbeat's memory (mlockall)")]
pub struct MemoryLockError(#[source] pub std::io::Error);

/// Locks every current and future page of the process in RAM, so a page
/// swapped out under memory pressure never stalls a heartbeat write past
/// the partner's timeout. Needs CAP_IPC_LOCK (or a large enough
/// `RLIMIT_MEMLOCK`; the unit sets `LimitMEMLOCK=infinity`).
pub fn lock_memory() -> Result<(), MemoryLockError> {
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE)
        .map_err(|errno| MemoryLockError(std::io::Error::from(errno)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    // The temp dir is on this host's ext4, which honours O_DIRECT; no
    // buffered fallback is used, so these tests exercise the real flags.
    fn image(blocks: u64) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hb0.img");
        File::create(&path)
            .unwrap()
            .set_len(blocks * BLOCK_BYTES)
            .unwrap();
        (dir, path)
    }

    fn pattern(seed: u8) -> [u8; BLOCK] {
        let mut b = [0u8; BLOCK];
        for (i, x) in b.iter_mut().enumerate() {
            *x = seed.wrapping_add(u8::try_from(i % 251).unwrap());
        }
        b
    }

    #[test]
    fn opens_with_o_direct_and_o_dsync() {
        let (_d, path) = image(4);
        let disk = DirectDisk::open("hb0", &path).unwrap();
        assert_eq!(disk.size(), 4 * BLOCK_BYTES);
        let fdinfo = std::fs::read_to_string(format!(
            "/proc/self/fdinfo/{}",
            disk.dev.lock().unwrap().file.as_raw_fd()
        ))
        .unwrap();
        let flags = fdinfo
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|f| i32::from_str_radix(f.trim(), 8).unwrap())
            .unwrap();
        assert_ne!(flags & OFlag::O_DIRECT.bits(), 0, "{fdinfo}");
        assert_ne!(flags & OFlag::O_DSYNC.bits(), 0, "{fdinfo}");
    }

    #[test]
    fn one_handle_reads_what_the_other_wrote() {
        let (_d, path) = image(4);
        // Two controllers, each with its own handle on the shared disk.
        let a = DirectDisk::open("hb0", &path).unwrap();
        let b = DirectDisk::open("hb0", &path).unwrap();
        a.write_block(0, &pattern(1)).unwrap();
        b.write_block(BLOCK_BYTES, &pattern(2)).unwrap();
        assert_eq!(*b.read_block(0).unwrap(), pattern(1));
        assert_eq!(*a.read_block(BLOCK_BYTES).unwrap(), pattern(2));
        a.write_block(0, &pattern(3)).unwrap();
        assert_eq!(*b.read_block(0).unwrap(), pattern(3));
        // The last block of the device is usable.
        a.write_block(3 * BLOCK_BYTES, &pattern(4)).unwrap();
        assert_eq!(*b.read_block(3 * BLOCK_BYTES).unwrap(), pattern(4));
        // And the bytes really are in the file at those offsets.
        let raw = std::fs::read(&path).unwrap();
        assert_eq!(raw[BLOCK..2 * BLOCK], pattern(2));
    }

    #[test]
    fn refuses_offsets_outside_the_device_or_unaligned() {
        let (_d, path) = image(2);
        let disk = DirectDisk::open("hb0", &path).unwrap();
        for offset in [2 * BLOCK_BYTES, 512, BLOCK_BYTES + 1, u64::MAX - 4095] {
            assert!(
                matches!(disk.read_block(offset), Err(DiskError::Range { offset: o, .. }) if o == offset)
            );
            assert!(matches!(
                disk.write_block(offset, &pattern(0)),
                Err(DiskError::Range { .. })
            ));
        }
    }

    #[test]
    fn a_short_read_is_an_error() {
        let (_d, path) = image(2);
        let disk = DirectDisk::open("hb0", &path).unwrap();
        // The device shrinks under us: the second block now reads 0 bytes.
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(BLOCK_BYTES)
            .unwrap();
        let e = disk.read_block(BLOCK_BYTES).unwrap_err();
        let DiskError::Io { offset, source, .. } = e else {
            panic!("{e}")
        };
        assert_eq!(offset, BLOCK_BYTES);
        assert!(source.to_string().contains("short read"), "{source}");
    }

    #[test]
    fn reopen_reaches_the_disk_now_at_the_path() {
        let (d, path) = image(2);
        let disk = DirectDisk::open("hb0", &path).unwrap();
        disk.write_block(0, &pattern(1)).unwrap();
        // The disk is pulled and another is pushed in its bay.
        std::fs::remove_file(&path).unwrap();
        let e = DirectDisk::open("hb0", &d.path().join("absent"));
        assert!(e.is_err());
        assert!(disk.reopen().is_err(), "nothing at the path yet");
        let (_d3, fresh) = image(3);
        std::fs::rename(&fresh, &path).unwrap();
        // The old handle still reaches the pulled disk's data...
        assert_eq!(*disk.read_block(0).unwrap(), pattern(1));
        disk.reopen().unwrap();
        // ...the reopened one the new disk, with its own size.
        assert_eq!(*disk.read_block(0).unwrap(), [0u8; BLOCK]);
        assert_eq!(disk.size(), 3 * BLOCK_BYTES);
        disk.write_block(2 * BLOCK_BYTES, &pattern(2)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap()[2 * BLOCK..], pattern(2));
    }

    #[test]
    fn a_missing_device_names_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let e = DirectDisk::open("hb2", &dir.path().join("absent")).unwrap_err();
        assert!(matches!(e, DiskError::Open { ref disk, .. } if disk == "hb2"));
    }

    fn locked_kib() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmLck:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn locks_memory() {
        // Root here (CAP_IPC_LOCK); undone at once so the other tests in this
        // process are not affected.
        let r = lock_memory();
        let locked = locked_kib();
        nix::sys::mman::munlockall().unwrap();
        r.unwrap();
        assert!(locked > 0);
        assert_eq!(locked_kib(), 0);
    }
}
