//! The real backend: configfs files under a root that must be a mounted
//! configfs (`/sys/kernel/config` on the appliance). A plain directory is
//! refused at start-up: it would accept any `mkdir` and prove nothing.

use super::{EntryKind, TargetBackend};
use crate::core::desired::DeviceState;
use crate::error::BackendError;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
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

    /// [`ConfigFsBackend::p`] for a change: the path must be plain
    /// components (see [`super::check_rel_path`]).
    fn checked(&self, rel: &str) -> io::Result<PathBuf> {
        super::check_rel_path(rel)?;
        Ok(self.p(rel))
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
        fs::create_dir(self.checked(path)?)
    }

    fn rmdir(&mut self, path: &str) -> io::Result<()> {
        fs::remove_dir(self.checked(path)?)
    }

    fn write(&mut self, path: &str, value: &str) -> io::Result<()> {
        // configfs wants the whole value in one write.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .open(self.checked(path)?)?;
        f.write_all(&wire_bytes(path, value))
    }

    fn read(&self, path: &str) -> io::Result<String> {
        let bytes = fs::read(self.p(path))?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    fn symlink(&mut self, link: &str, target: &str) -> io::Result<()> {
        std::os::unix::fs::symlink(self.checked(target)?, self.checked(link)?)
    }

    fn unlink(&mut self, path: &str) -> io::Result<()> {
        fs::remove_file(self.checked(path)?)
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

    fn device_state(&self, dev: &str) -> DeviceState {
        let Ok(md) = fs::metadata(dev) else {
            return DeviceState::Missing;
        };
        if !md.file_type().is_block_device() {
            return DeviceState::Missing;
        }
        let (major, minor) = dev_numbers(md.rdev());
        let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
        // Only device-mapper devices can be error tables; a dm device
        // serves data when it maps onto another device (pool-manager's
        // `linear` over the LV), and an `error` table has no such slave.
        // (/dev/mapper holds only dm devices: one stat less per volume on
        // the flip path.)
        if !dev.starts_with("/dev/mapper/") && !sys.join("dm").exists() {
            return DeviceState::Backed;
        }
        let has_slave = fs::read_dir(sys.join("slaves")).is_ok_and(|mut d| d.next().is_some());
        if has_slave {
            DeviceState::Backed
        } else {
            DeviceState::Unbacked
        }
    }
}

/// The bytes written for `value`: with a newline as `echo` sends it (the
/// number, word and path parsers of LIO and nvmet strip it), except for
/// the iSCSI CHAP credentials under `auth/`, which LIO stores verbatim:
/// a newline there becomes part of the user name or secret and no
/// initiator can log in (seen in the lab: "CHAP_N values do not match").
pub fn wire_bytes(path: &str, value: &str) -> Vec<u8> {
    let mut buf = value.as_bytes().to_vec();
    if !path.contains("/auth/") {
        buf.push(b'\n');
    }
    buf
}

/// Major and minor of a Linux `dev_t` (glibc's `gnu_dev_major/minor`).
pub fn dev_numbers(rdev: u64) -> (u64, u64) {
    let major = ((rdev >> 8) & 0xfff) | ((rdev >> 32) & !0xfff);
    let minor = (rdev & 0xff) | ((rdev >> 12) & !0xff);
    (major, minor)
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
        for (path, fstype) in [
            ("/sys/kernel/config", "configfs"),
            ("/sys/kernel/config/nvmet", "configfs"),
            ("/tmp/x", "tmpfs"),
            ("/home", "ext4"),
        ] {
            assert_eq!(
                mount_fstype(INFO, Path::new(path)).as_deref(),
                Some(fstype),
                "{path}"
            );
        }
    }

    #[test]
    fn chap_credentials_are_written_without_a_newline() {
        let acl = "target/iscsi/iqn.x:t/tpgt_1/acls/iqn.y:h";
        for f in ["userid", "password", "userid_mutual", "password_mutual"] {
            assert_eq!(wire_bytes(&format!("{acl}/auth/{f}"), "h-lab"), b"h-lab");
        }
        assert_eq!(
            wire_bytes("target/core/iblock_100/v1/alua/dx_a/alua_access_state", "2"),
            b"2\n"
        );
    }

    #[test]
    fn device_numbers_split_like_glibc() {
        // makedev(253, 7) and makedev(259, 70000).
        assert_eq!(dev_numbers((253 << 8) | 7), (253, 7));
        let big = ((70000u64 & 0xff) | ((259u64 & 0xfff) << 8)) | ((70000u64 & !0xff) << 12);
        assert_eq!(dev_numbers(big), (259, 70000));
    }

    #[test]
    fn a_plain_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = ConfigFsBackend::open(dir.path()).unwrap_err();
        assert!(matches!(e, BackendError::NotConfigfs { .. }), "{e}");
    }
}
