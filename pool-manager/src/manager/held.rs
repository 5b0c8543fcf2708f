//! Pools exported here by request (`pool.export` without `to`): the
//! reconciler must not activate them again just because the desired state
//! still names this controller as owner. Kept in a file in the state
//! directory so a restart does not undo an export; `pool.import`,
//! `pool.takeover` and `pool.create` release a pool.

use std::collections::BTreeSet;
use std::path::PathBuf;

/// The set of held pools and where it is saved.
#[derive(Debug, Default)]
pub struct Held {
    path: Option<PathBuf>,
    pools: BTreeSet<String>,
}

impl Held {
    /// Loads the set from `path` (missing or unreadable: empty, with a
    /// warning for the unreadable case).
    pub fn load(path: PathBuf) -> Held {
        let pools = match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice::<BTreeSet<String>>(&b).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "unreadable held-pools file; ignoring it");
                BTreeSet::new()
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeSet::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read the held-pools file");
                BTreeSet::new()
            }
        };
        Held {
            path: Some(path),
            pools,
        }
    }

    /// The held pools.
    pub fn pools(&self) -> &BTreeSet<String> {
        &self.pools
    }

    /// Holds or releases `pool`, saving the set when it changed.
    pub fn set(&mut self, pool: &str, held: bool) -> std::io::Result<()> {
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
    fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let body = serde_json::to_vec(&self.pools).map_err(std::io::Error::other)?;
        duplex_services::durable::write_atomic(path, &body).map_err(std::io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("held.json");
        let mut h = Held::load(path.clone());
        assert!(h.pools().is_empty());
        h.set("p1", true).expect("hold");
        h.set("p2", true).expect("hold");
        h.set("p1", false).expect("release");
        let again = Held::load(path.clone());
        assert_eq!(again.pools().iter().collect::<Vec<_>>(), vec!["p2"]);
        std::fs::write(&path, b"not json").expect("write");
        assert!(Held::load(path).pools().is_empty());
    }
}
