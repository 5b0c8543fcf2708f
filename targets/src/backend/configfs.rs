//! The real backend: configfs files under a root that must be a mounted
//! configfs (`/sys/kernel/config` on the appliance). A plain directory is
//! refused at start-up: it would accept any `mkdir` and prove nothing.

use super::{EntryKind, TargetBackend};
use crate::error::BackendError;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Where configfs lives on the appliance.
pub const DEFAULT_ROOT: &str = "/sys/kernel/config";

/// configfs under `root`.
#[derive(Debug, Clone)]
pub struct ConfigFsBackend {
    root: PathBuf,
}

impl ConfigFsBackend {
    /// Opens configfs at `root`, checking in `/proc/self/mountinfo` that it
    /// is a configfs mount.
    pub fn open(root: &Path) -> Result<ConfigFsBackend, BackendError> {
        let canon = fs::canonicalize(root).map_err(|source| BackendError::Io {
            op: "canonicalize",
            path: root.display().to_string(),
            source,
        })?;
        let info =
            fs::read_to_string("/proc/self/mountinfo").map_err(|source| BackendError::Io {
                op: "read",
                path: "/proc/self/mountinfo".into(),
                source,
            })?;
        match mount_fstype(&info, &canon) {
            Some(t) if t == "configfs" => Ok(ConfigFsBackend { root: canon }),
            Some(t) => Err(BackendError::NotConfigfs {
                root: canon.display().to_string(),
                detail: format!("it is on a {t} mount"),
            }),
            None => Err(BackendError::NotConfigfs {
                root: canon.display().to_string(),
                detail: "no mount found".into(),
            }),
        }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// The filesystem type of the mount that holds `path` (the longest mount
/// point that is a prefix of it).
pub fn mount_fstype(mountinfo: &str, path: &Path) -> Option<String> {
    let mut best: Option<(usize, String)> = None;
    for line in mountinfo.lines() {
        // id parent major:minor root mountpoint options... - fstype source super
        let mut halves = line.splitn(2, " - ");
        let left: Vec<&str> = halves.next()?.split(' ').collect();
        let fstype = halves
            .next()
            .and_then(|r| r.split(' ').next())
            .unwrap_or("");
        let Some(mp) = left.get(4) else { continue };
        let mp = mp.replace("\\040", " ");
        let mpp = Path::new(&mp);
        if path.starts_with(mpp) {
            let len = mpp.as_os_str().len();
            if best.as_ref().is_none_or(|(l, _)| len >= *l) {
                best = Some((len, fstype.to_string()));
            }
        }
    }
    best.map(|(_, t)| t)
}

impl TargetBackend for ConfigFsBackend {
    fn mkdir(&mut self, path: &str) -> io::Result<()> {
        fs::create_dir(self.p(path))
    }

    fn rmdir(&mut self, path: &str) -> io::Result<()> {
        fs::remove_dir(self.p(path))
    }

    fn write(&mut self, path: &str, value: &str) -> io::Result<()> {
        // configfs wants the whole value in one write; a newline as echo
        // sends it is what every LIO and nvmet parser expects.
        let mut f = fs::OpenOptions::new().write(true).open(self.p(path))?;
        let mut buf = value.as_bytes().to_vec();
        buf.push(b'\n');
        f.write_all(&buf)
    }

    fn read(&self, path: &str) -> io::Result<String> {
        let bytes = fs::read(self.p(path))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn symlink(&mut self, link: &str, target: &str) -> io::Result<()> {
        std::os::unix::fs::symlink(self.p(target), self.p(link))
    }

    fn unlink(&mut self, path: &str) -> io::Result<()> {
        fs::remove_file(self.p(path))
    }

    fn list(&self, path: &str) -> io::Result<Vec<(String, EntryKind)>> {
        let mut out = Vec::new();
        for e in fs::read_dir(self.p(path))? {
            let e = e?;
            let t = e.file_type()?;
            let kind = if t.is_symlink() {
                EntryKind::Link
            } else if t.is_dir() {
                EntryKind::Dir
            } else {
                EntryKind::File
            };
            out.push((e.file_name().to_string_lossy().into_owned(), kind));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    fn read_link(&self, path: &str) -> io::Result<String> {
        Ok(fs::read_link(self.p(path))?.to_string_lossy().into_owned())
    }

    fn device_present(&self, dev: &str) -> bool {
        Path::new(dev).exists()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INFO: &str = "22 1 0:21 / /sys rw,nosuid - sysfs sysfs rw\n\
        35 22 0:30 / /sys/kernel/config rw,nosuid - configfs configfs rw\n\
        1 0 8:1 / / rw - ext4 /dev/sda1 rw\n\
        40 1 0:40 / /tmp rw - tmpfs tmpfs rw\n";

    #[test]
    fn finds_the_mount_of_a_path() {
        assert_eq!(
            mount_fstype(INFO, Path::new("/sys/kernel/config")).as_deref(),
            Some("configfs")
        );
        assert_eq!(
            mount_fstype(INFO, Path::new("/sys/kernel/config/nvmet")).as_deref(),
            Some("configfs")
        );
        assert_eq!(
            mount_fstype(INFO, Path::new("/tmp/x")).as_deref(),
            Some("tmpfs")
        );
        assert_eq!(
            mount_fstype(INFO, Path::new("/home")).as_deref(),
            Some("ext4")
        );
    }

    #[test]
    fn a_plain_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = ConfigFsBackend::open(dir.path()).unwrap_err();
        assert!(matches!(e, BackendError::NotConfigfs { .. }), "{e}");
    }
}
