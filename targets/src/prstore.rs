//! The directory Duplex gives LIO as its `db_root`: LIO writes the APTPL
//! state of each LU to `pr/aptpl_<serial>` there (and ALUA metadata to
//! `alua/`), and targets reads those files back when it rebuilds a
//! backstore after a restart. One directory per controller for now (LIO
//! has one `db_root` per kernel); see docs/targets.md for what it does not
//! carry.

use crate::core::pr::{aptpl_records, DB_SUBDIRS};
use crate::error::BackendError;
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// The directory name under the service's state directory.
pub const DIR: &str = "lio";

/// LIO's database directory, owned by targets.
#[derive(Debug, Clone)]
pub struct PrStore {
    root: PathBuf,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> BackendError + 'a {
    move |source| BackendError::Io {
        op,
        path: path.display().to_string(),
        source,
    }
}

impl PrStore {
    /// The store at `root` (created by [`PrStore::ensure`]).
    pub fn new(root: impl Into<PathBuf>) -> PrStore {
        PrStore { root: root.into() }
    }

    /// The root, as written to `target/dbroot`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The root as a string for configfs.
    pub fn root_str(&self) -> String {
        self.root.display().to_string()
    }

    /// Creates the root with `pr/` and `alua/` (0700: the files name the
    /// hosts and their keys). Existing directories are kept.
    pub fn ensure(&self) -> Result<(), BackendError> {
        for sub in std::iter::once(None).chain(DB_SUBDIRS.iter().map(Some)) {
            let p = match sub {
                Some(s) => self.root.join(s),
                None => self.root.clone(),
            };
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&p)
                .map_err(io_err("mkdir", &p))?;
        }
        Ok(())
    }

    fn file(&self, serial: &str) -> PathBuf {
        self.root.join("pr").join(format!("aptpl_{serial}"))
    }

    /// The saved registrations of the LU with `serial`, one
    /// `res_aptpl_metadata` line each; none when there is no file.
    pub fn records(&self, serial: &str) -> Result<Vec<String>, BackendError> {
        let p = self.file(serial);
        match fs::read(&p) {
            Ok(b) => Ok(aptpl_records(&String::from_utf8_lossy(&b))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_err("read", &p)(e)),
        }
    }

    /// Removes the LU's APTPL file; true when there was one.
    pub fn remove(&self, serial: &str) -> Result<bool, BackendError> {
        let p = self.file(serial);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", &p)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_store_makes_its_directories_and_reads_lios_files(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let s = PrStore::new(dir.path().join("lio"));
        s.ensure()?;
        s.ensure()?;
        assert!(s.root().join("pr").is_dir() && s.root().join("alua").is_dir());
        let mode = fs::metadata(s.root())?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(s.records("ab01")?.is_empty());
        fs::write(
            s.root().join("pr/aptpl_ab01"),
            "PR_REG_START: 0\ninitiator_node=iqn.x:h\nsa_res_key=5\ntarget_node=iqn.x:t\ntpgt=1\nPR_REG_END: 0\n",
        )?;
        assert_eq!(
            s.records("ab01")?,
            vec!["initiator_node=iqn.x:h,sa_res_key=5,target_node=iqn.x:t,tpgt=1".to_string()]
        );
        assert!(s.remove("ab01")?);
        assert!(!s.remove("ab01")?);
        Ok(())
    }
}
