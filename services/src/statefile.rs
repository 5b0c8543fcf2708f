//! Small versioned, checksummed state files (a service's local memory
//! across restarts: targets' flip overrides, pool-manager's held pools).
//!
//! Layout: one header line, then the JSON body exactly as written:
//!
//! ```text
//! duplex-state 1 <kind> <format version> <sha256 of the body, hex>
//! {"...": ...}
//! ```
//!
//! The checksum covers the body's bytes, so a torn or edited file is
//! detected; the replace is [`write_atomic`](crate::durable::write_atomic),
//! so a crash leaves the old file or the new. A damaged, foreign or newer
//! file is an error, never silently empty: what a service forgets here
//! (an override, a held pool) it would undo after a restart.

use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// The first word of every state file.
const MAGIC: &str = "duplex-state";
/// The envelope's own layout version.
const ENVELOPE: u32 = 1;

/// Why a state file could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    /// Reading the file failed (other than its absence).
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is torn, edited, or not a state file.
    #[error("{} is damaged: {reason}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The file holds another kind of state.
    #[error("{} holds {found}, expected {expected}", path.display())]
    WrongKind {
        /// The file.
        path: PathBuf,
        /// The kind this reader wants.
        expected: String,
        /// The kind in the file.
        found: String,
    },
    /// The file was written by a newer format than this release reads.
    #[error("{} has format version {found}; this release reads up to {supported}", path.display())]
    TooNew {
        /// The file.
        path: PathBuf,
        /// The version in the file.
        found: u32,
        /// The newest this reader knows.
        supported: u32,
    },
    /// The value could not be encoded.
    #[error("cannot encode {}", path.display())]
    Encode {
        /// The file.
        path: PathBuf,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// The durable replace failed.
    #[error(transparent)]
    Write(#[from] crate::durable::DurableWriteError),
}

/// One state file: where it is, what kind of state it holds and the
/// format version this release writes.
#[derive(Debug, Clone)]
pub struct StateFile {
    path: PathBuf,
    kind: &'static str,
    version: u32,
}

impl StateFile {
    /// The state file at `path` holding `kind` (one word, e.g.
    /// `targets-overrides`) in format `version`.
    pub fn new(path: impl Into<PathBuf>, kind: &'static str, version: u32) -> StateFile {
        StateFile {
            path: path.into(),
            kind,
            version,
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved value with the format version it was written in, or
    /// `None` when the file does not exist.
    pub fn load<T: DeserializeOwned>(&self) -> Result<Option<(u32, T)>, StateFileError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateFileError::Read {
                    path: self.path.clone(),
                    source,
                })
            }
        };
        let damaged = |reason: &str| StateFileError::Damaged {
            path: self.path.clone(),
            reason: reason.into(),
        };
        let nl = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| damaged("no header line"))?;
        let (header, body) = (&bytes[..nl], &bytes[nl + 1..]);
        let header = std::str::from_utf8(header).map_err(|_| damaged("header is not text"))?;
        let words: Vec<&str> = header.split(' ').collect();
        let [magic, envelope, kind, version, sum] = words.as_slice() else {
            return Err(damaged("header does not have five fields"));
        };
        if *magic != MAGIC || envelope.parse::<u32>().ok() != Some(ENVELOPE) {
            return Err(damaged("not a Duplex state file"));
        }
        if *kind != self.kind {
            return Err(StateFileError::WrongKind {
                path: self.path.clone(),
                expected: self.kind.into(),
                found: (*kind).into(),
            });
        }
        let version: u32 = version.parse().map_err(|_| damaged("bad format version"))?;
        if version > self.version {
            return Err(StateFileError::TooNew {
                path: self.path.clone(),
                found: version,
                supported: self.version,
            });
        }
        if *sum != hex_sha256(body) {
            return Err(damaged("checksum mismatch (torn or edited)"));
        }
        let value = serde_json::from_slice(body)
            .map_err(|e| damaged(&format!("body does not decode: {e}")))?;
        Ok(Some((version, value)))
    }

    /// Replaces the file with `value`, atomically and durably.
    pub fn save<T: Serialize>(&self, value: &T) -> Result<(), StateFileError> {
        let body = serde_json::to_vec_pretty(value).map_err(|source| StateFileError::Encode {
            path: self.path.clone(),
            source,
        })?;
        let mut out = format!(
            "{MAGIC} {ENVELOPE} {} {} {}\n",
            self.kind,
            self.version,
            hex_sha256(&body)
        )
        .into_bytes();
        out.extend_from_slice(&body);
        crate::durable::write_atomic(&self.path, &out)?;
        Ok(())
    }
}

fn hex_sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn round_trips_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let f = StateFile::new(dir.path().join("held.state"), "held-pools", 2);
        assert!(f.load::<BTreeSet<String>>().expect("load").is_none());
        f.save(&set(&["p1", "p2"])).expect("save");
        let (v, got) = f.load::<BTreeSet<String>>().expect("load").expect("some");
        assert_eq!((v, got), (2, set(&["p1", "p2"])));
    }

    #[test]
    fn damaged_foreign_and_newer_files_are_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("s");
        let f = StateFile::new(&p, "held-pools", 1);
        f.save(&set(&["p1"])).expect("save");
        let good = std::fs::read(&p).expect("read");

        // One changed byte in the body.
        let mut torn = good.clone();
        let last = torn.len() - 3;
        torn[last] ^= 0x01;
        std::fs::write(&p, &torn).expect("write");
        let e = f.load::<BTreeSet<String>>().unwrap_err();
        assert!(matches!(e, StateFileError::Damaged { .. }), "{e}");

        // A truncated file, an empty file, plain JSON from an older release.
        for bytes in [&good[..good.len() / 2], b"", b"[\"p1\"]"] {
            std::fs::write(&p, bytes).expect("write");
            assert!(f.load::<BTreeSet<String>>().is_err());
        }

        std::fs::write(&p, &good).expect("write");
        let other = StateFile::new(&p, "targets-overrides", 1);
        let e = other.load::<BTreeSet<String>>().unwrap_err();
        assert!(matches!(e, StateFileError::WrongKind { .. }), "{e}");

        let newer = StateFile::new(&p, "held-pools", 3);
        newer.save(&set(&["p1"])).expect("save");
        let e = f.load::<BTreeSet<String>>().unwrap_err();
        assert!(matches!(e, StateFileError::TooNew { found: 3, .. }), "{e}");
    }
}
