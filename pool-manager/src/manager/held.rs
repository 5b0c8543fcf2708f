//! Pools exported here by request (`pool.export` without `to`): the
//! reconciler must not activate them again just because the desired state
//! still names this controller as owner. Kept in a file in the state
//! directory so a restart does not undo an export; `pool.import`,
//! `pool.takeover` and `pool.create` release a pool.

use duplex_services::statefile::{StateFile, StateFileError};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// The state kind written in the file's header.
const KIND: &str = "pool-manager-held";
/// The format version written in the file.
const VERSION: u32 = 1;

/// The set of held pools and where it is saved.
#[derive(Debug, Default)]
pub struct Held {
    file: Option<StateFile>,
    pools: BTreeSet<String>,
}

impl Held {
    /// Loads the set from `path` (missing: empty). A damaged file is an
    /// error: an empty set would let the reconciler activate a pool an
    /// administrator exported.
    pub fn load(path: PathBuf) -> Result<Held, StateFileError> {
        let file = StateFile::new(path, KIND, VERSION);
        let pools = file.load()?.map(|(_, p)| p).unwrap_or_default();
        Ok(Held {
            file: Some(file),
            pools,
        })
    }

    /// The held pools.
    pub fn pools(&self) -> &BTreeSet<String> {
        &self.pools
    }

    /// Holds or releases `pool`, saving the set when it changed.
    pub fn set(&mut self, pool: &str, held: bool) -> Result<(), StateFileError> {
        let changed = if held {
            self.pools.insert(pool.to_string())
        } else {
            self.pools.remove(pool)
        };
        if changed {
            self.save()?;
        }
        Ok(())
    }

    /// A crash leaves the old set or the new (atomic replace).
    fn save(&self) -> Result<(), StateFileError> {
        match &self.file {
            Some(f) => f.save(&self.pools),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("held.state");
        let mut h = Held::load(path.clone()).expect("load");
        assert!(h.pools().is_empty());
        h.set("p1", true).expect("hold");
        h.set("p2", true).expect("hold");
        h.set("p1", false).expect("release");
        let again = Held::load(path.clone()).expect("reload");
        assert_eq!(again.pools().iter().collect::<Vec<_>>(), vec!["p2"]);
        // Damaged: an error, never an empty set.
        std::fs::write(&path, b"not json").expect("write");
        assert!(Held::load(path).is_err());
    }
}
