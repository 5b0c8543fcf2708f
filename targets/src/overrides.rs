//! Flip overrides on disk, so a restarted service keeps the access states
//! `target.set_access_state` set (a make-before-break giveback must not be
//! undone by a restart between its two calls).
//!
//! One small state file in the service's state directory
//! (`duplex_services::statefile`: versioned, checksummed, replaced
//! atomically), so a crash leaves either the old or the new set, and a
//! damaged file is an error, never an empty set. Stale entries (the
//! pool's ownership record changed) are dropped by the reconciler, which
//! then writes the file again.

use crate::core::flip::Override;
use crate::error::PersistError;
use duplex_services::statefile::StateFile;
use std::collections::BTreeMap;
use std::path::Path;

/// The file name in the state directory.
pub const FILE: &str = "targets-overrides.state";
/// The state kind written in the file's header.
const KIND: &str = "targets-overrides";
/// The format version written in the file.
const VERSION: u32 = 1;

/// Where the overrides are kept.
#[derive(Debug, Clone)]
pub struct OverrideStore {
    file: StateFile,
}

impl OverrideStore {
    /// The store in `state_dir` (created on the first save if missing).
    pub fn new(state_dir: &Path) -> OverrideStore {
        OverrideStore {
            file: StateFile::new(state_dir.join(FILE), KIND, VERSION),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The overrides saved last; none when the file does not exist. A
    /// damaged or newer file is an error.
    pub fn load(&self) -> Result<BTreeMap<String, Override>, PersistError> {
        Ok(self.file.load()?.map(|(_, o)| o).unwrap_or_default())
    }

    /// Replaces the saved overrides with `overrides`, atomically.
    pub fn save(&self, overrides: &BTreeMap<String, Override>) -> Result<(), PersistError> {
        Ok(self.file.save(overrides)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::AccessState;
    use std::fs;

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
    fn a_damaged_file_is_an_error_not_a_guess() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = OverrideStore::new(dir.path());
        let mut m = BTreeMap::new();
        m.insert("p1".to_string(), ov(AccessState::Standby, "A", 3));
        store.save(&m)?;
        let mut bytes = fs::read(store.path())?;
        bytes.truncate(bytes.len() - 4);
        fs::write(store.path(), &bytes)?;
        assert!(matches!(store.load(), Err(PersistError::State(_))));
        Ok(())
    }
}
