//! Whether this controller still reaches the shelf: one O_DIRECT read of
//! each shelf disk's first block. O_DIRECT so the answer comes from the
//! disk, not from a page cache that would keep answering after the path to
//! the disk is gone. A disk that vanished (no device node), refuses the
//! open or fails the read counts as unreadable.

use super::disk::Aligned;
use crate::backend::{ShelfDisks, BLOCK};
use nix::fcntl::OFlag;
use std::fs::OpenOptions;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::PathBuf;

/// [`ShelfDisks`] on the device paths of the configuration.
#[derive(Debug, Clone)]
pub struct DirectShelf {
    paths: Vec<PathBuf>,
}

impl DirectShelf {
    /// Watches `paths` (stable names such as `/dev/disk/by-id/...`).
    pub fn new(paths: &[PathBuf]) -> Self {
        DirectShelf {
            paths: paths.to_vec(),
        }
    }
}

impl ShelfDisks for DirectShelf {
    fn count(&self) -> usize {
        self.paths.len()
    }

    fn readable(&self, i: usize) -> bool {
        let Some(path) = self.paths.get(i) else {
            return false;
        };
        // Opened per read: a disk that vanished and came back is a new
        // device node, and a descriptor kept open would still point at the
        // old one.
        let Ok(file) = OpenOptions::new()
            .read(true)
            .custom_flags(OFlag::O_DIRECT.bits())
            .open(path)
        else {
            return false;
        };
        let mut buf = Box::new(Aligned([0; BLOCK]));
        loop {
            match file.read_at(&mut buf.0, 0) {
                Ok(n) => return n == BLOCK,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_present_file_reads_and_a_missing_one_does_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let there = dir.path().join("shelf0");
        std::fs::write(&there, vec![7u8; 2 * BLOCK]).expect("write");
        let short = dir.path().join("shelf1");
        std::fs::write(&short, vec![7u8; 512]).expect("write");
        let shelf = DirectShelf::new(&[there, dir.path().join("gone"), short]);
        assert_eq!(shelf.count(), 3);
        assert!(shelf.readable(0));
        assert!(!shelf.readable(1), "no such device");
        assert!(!shelf.readable(2), "less than a block");
        assert!(!shelf.readable(3), "not configured");
    }
}
