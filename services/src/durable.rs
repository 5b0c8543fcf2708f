//! Small state files that must survive a crash whole: written to a temp
//! file beside the target, fsynced, renamed over it, and the directory
//! fsynced, so a reader finds the old content or the new, never a mix.

use std::io::Write;
use std::path::{Path, PathBuf};

/// A step of [`write_atomic`] that failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}", path.display())]
pub struct DurableWriteError {
    /// `mkdir`, `create`, `write`, `fsync` or `rename`.
    pub op: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Replaces `path` with `bytes` atomically and durably.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), DurableWriteError> {
    let fail = |op, p: &Path| {
        let path = p.to_path_buf();
        move |source| DurableWriteError { op, path, source }
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    std::fs::create_dir_all(&dir).map_err(fail("mkdir", &dir))?;
    let name = path
        .file_name()
        .map_or_else(|| "state".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.join(format!(".{name}.tmp"));
    {
        let mut f = std::fs::File::create(&tmp).map_err(fail("create", &tmp))?;
        f.write_all(bytes).map_err(fail("write", &tmp))?;
        f.sync_all().map_err(fail("fsync", &tmp))?;
    }
    std::fs::rename(&tmp, path).map_err(fail("rename", path))?;
    // The rename is durable only once the directory entry is.
    std::fs::File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(fail("fsync", &dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("sub/state.json");
        write_atomic(&p, b"one").expect("first");
        write_atomic(&p, b"two").expect("second");
        assert_eq!(std::fs::read(&p).expect("read"), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
        let e = write_atomic(&dir.path().join("sub/state.json/x"), b"no").err();
        assert!(e.is_some());
    }
}
