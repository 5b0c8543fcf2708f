//! Flip overrides on disk, so a restarted service keeps the access states
//! `target.set_access_state` set (a make-before-break giveback must not be
//! undone by a restart between its two calls).
//!
//! One small JSON file in the service's state directory, replaced
//! atomically: written to a temporary file in the same directory, fsynced,
//! renamed over the old one, and the directory fsynced, so a crash leaves
//! either the old or the new set, never a torn file. Stale entries (the
//! pool's ownership record changed) are dropped by the reconciler, which
//! then writes the file again.

use crate::error::PersistError;
use crate::reconciler::Override;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// The file name in the state directory.
pub const FILE: &str = "targets-overrides.json";
/// The format version written in the file.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    overrides: BTreeMap<String, Override>,
}

/// Where the overrides are kept.
#[derive(Debug, Clone)]
pub struct OverrideStore {
    path: PathBuf,
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> PersistError + 'a {
    move |source| PersistError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

impl OverrideStore {
    /// The store in `state_dir` (created on the first save if missing).
    pub fn new(state_dir: &Path) -> OverrideStore {
        OverrideStore {
            path: state_dir.join(FILE),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The overrides saved last; none when the file does not exist.
    pub fn load(&self) -> Result<BTreeMap<String, Override>, PersistError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
            Err(e) => return Err(io("read", &self.path)(e)),
        };
        let d: OnDisk = serde_json::from_slice(&bytes).map_err(|source| PersistError::Parse {
            path: self.path.display().to_string(),
            source,
        })?;
        if d.version != VERSION {
            return Err(PersistError::Version {
                path: self.path.display().to_string(),
                version: d.version,
            });
        }
        Ok(d.overrides)
    }

    /// Replaces the saved overrides with `overrides`, atomically.
    pub fn save(&self, overrides: &BTreeMap<String, Override>) -> Result<(), PersistError> {
        let body = serde_json::to_vec_pretty(&OnDisk {
            version: VERSION,
            overrides: overrides.clone(),
        })
        .map_err(|source| PersistError::Parse {
            path: self.path.display().to_string(),
            source,
        })?;
        duplex_services::durable::write_atomic(&self.path, &body).map_err(|e| PersistError::Io {
            op: e.op,
            path: e.path.display().to_string(),
            source: e.source,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::AccessState;

    fn ov(state: AccessState, owner: &str, epoch: u64) -> Override {
        Override {
            state,
            owner: owner.into(),
            epoch,
        }
    }

    #[test]
    fn saves_loads_and_replaces() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = OverrideStore::new(&dir.path().join("state"));
        assert!(store.load()?.is_empty(), "no file: no overrides");
        let mut m = BTreeMap::new();
        m.insert("p1".to_string(), ov(AccessState::Standby, "A", 3));
        m.insert("p2".to_string(), ov(AccessState::NonOptimized, "B", 7));
        store.save(&m)?;
        assert_eq!(store.load()?, m);
        m.remove("p2");
        store.save(&m)?;
        assert_eq!(store.load()?, m);
        // Nothing but the file is left behind in the directory.
        let names: Vec<String> = fs::read_dir(dir.path().join("state"))?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        assert_eq!(names, vec![FILE.to_string()]);
        Ok(())
    }

    #[test]
    fn a_damaged_or_newer_file_is_an_error_not_a_guess() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = OverrideStore::new(dir.path());
        fs::write(store.path(), b"{\"version\": 1, \"overrides\": {\"p1\": ")?;
        assert!(matches!(store.load(), Err(PersistError::Parse { .. })));
        fs::write(store.path(), b"{\"version\": 9, \"overrides\": {}}")?;
        assert!(matches!(
            store.load(),
            Err(PersistError::Version { version: 9, .. })
        ));
        Ok(())
    }
}
