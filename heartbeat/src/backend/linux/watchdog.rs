//! The Linux watchdog device (`/dev/watchdog`): the controller resets
//! unless it is petted within the timeout.
//!
//! Opening the device arms it. Closing it disarms it only after the magic
//! character `V` was written (and only if the driver was not built with
//! `nowayout`); any other close leaves it counting. So:
//! - [`Watchdog::abandon`] closes **without** `V`: the device fires, which
//!   is the self-fence;
//! - dropping a [`DeviceWatchdog`] also closes without `V` (a daemon that
//!   exits or crashes while it holds membership must be reset too);
//! - only [`DeviceWatchdog::disarm`], on a clean shutdown after the
//!   controller stopped serving, writes `V`.
//!
//! In the lab each controller VM has QEMU's emulated Intel 6300ESB
//! (`-device i6300esb`, driver `i6300esb`). Its timer runs on the VM's
//! virtual clock: **a paused or frozen VM pauses its watchdog too**, and the
//! VM may resume with writes in flight long after the partner's deadline.
//! That is why the watchdog (and the poison pill) never count as a
//! confirmed fence; only the BMC or a reservation preempt do.
//!
//! The timeout is set in whole seconds (the ioctl's unit), rounded down so
//! the device never fires later than asked; the value the driver actually
//! took is read back and is what [`Watchdog::timeout`] reports.

use crate::backend::{Watchdog, WatchdogError};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The default watchdog device.
pub const WATCHDOG_PATH: &str = "/dev/watchdog";

/// The two watchdog ioctls (`linux/watchdog.h`), which no safe crate API
/// covers; the only unsafe code in the heartbeat.
#[allow(unsafe_code)]
mod wdioc {
    use nix::libc::c_int;
    use std::os::fd::{AsRawFd, BorrowedFd};

    nix::ioctl_readwrite!(wdioc_settimeout, b'W', 6, c_int);
    nix::ioctl_read!(wdioc_gettimeout, b'W', 7, c_int);

    /// WDIOC_SETTIMEOUT: returns the timeout the driver actually set.
    pub(super) fn set_timeout(fd: BorrowedFd<'_>, secs: c_int) -> nix::Result<c_int> {
        let mut v = secs;
        // SAFETY: `fd` is open for the whole call (borrowed), and the kernel
        // reads and writes exactly one c_int through the pointer, which
        // points at a live local.
        unsafe { wdioc_settimeout(fd.as_raw_fd(), &mut v) }?;
        Ok(v)
    }

    /// WDIOC_GETTIMEOUT.
    pub(super) fn get_timeout(fd: BorrowedFd<'_>) -> nix::Result<c_int> {
        let mut v: c_int = 0;
        // SAFETY: as above; the kernel writes one c_int into `v`.
        unsafe { wdioc_gettimeout(fd.as_raw_fd(), &mut v) }?;
        Ok(v)
    }
}

/// [`Watchdog`] on a Linux watchdog device.
#[derive(Debug)]
pub struct DeviceWatchdog {
    path: PathBuf,
    /// `None` once abandoned or disarmed.
    file: Option<File>,
    timeout: Duration,
}

fn io(source: std::io::Error) -> WatchdogError {
    WatchdogError::Io { source }
}

impl DeviceWatchdog {
    /// Opens (and so arms) the device and sets its timeout to `timeout`
    /// rounded down to whole seconds (at least 1 s). If the timeout cannot
    /// be set the device is disarmed again before the error returns: the
    /// caller never held it.
    pub fn open(path: &Path, timeout: Duration) -> Result<Self, WatchdogError> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|source| WatchdogError::Open {
                path: path.to_path_buf(),
                source,
            })?;
        let mut wd = DeviceWatchdog {
            path: path.to_path_buf(),
            file: Some(file),
            timeout,
        };
        match wd.configure(timeout) {
            Ok(actual) => {
                wd.timeout = actual;
                tracing::info!(path = %path.display(), ?actual, "watchdog armed");
                Ok(wd)
            }
            Err(e) => {
                if let Err(close) = wd.magic_close() {
                    tracing::error!(path = %path.display(), error = %close, "cannot disarm the watchdog after a failed setup");
                }
                Err(e)
            }
        }
    }

    fn configure(&self, timeout: Duration) -> Result<Duration, WatchdogError> {
        let secs = nix::libc::c_int::try_from(timeout.as_secs()).map_err(|_| {
            io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("watchdog timeout {timeout:?} too long"),
            ))
        })?;
        if secs < 1 {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("watchdog timeout {timeout:?} is under a second"),
            )));
        }
        let fd = self
            .file
            .as_ref()
            .ok_or_else(|| io(std::io::Error::other("watchdog not open")))?
            .as_fd();
        wdioc::set_timeout(fd, secs).map_err(|e| io(e.into()))?;
        let actual = wdioc::get_timeout(fd).map_err(|e| io(e.into()))?;
        let actual = u64::try_from(actual).map_err(|_| {
            io(std::io::Error::other(format!(
                "driver reports timeout {actual}"
            )))
        })?;
        Ok(Duration::from_secs(actual))
    }

    fn magic_close(&mut self) -> Result<(), WatchdogError> {
        if let Some(mut f) = self.file.take() {
            f.write_all(b"V").map_err(io)?;
        }
        Ok(())
    }

    /// Stops the watchdog on a clean shutdown: writes the magic `V` and
    /// closes. Only for a controller that already stopped serving.
    pub fn disarm(mut self) -> Result<(), WatchdogError> {
        self.magic_close()?;
        tracing::info!(path = %self.path.display(), "watchdog disarmed");
        Ok(())
    }
}

impl Watchdog for DeviceWatchdog {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn pet(&mut self) -> Result<(), WatchdogError> {
        let f = self.file.as_mut().ok_or_else(|| {
            io(std::io::Error::other(
                "watchdog abandoned: it is no longer petted",
            ))
        })?;
        // Any write but 'V' is a keepalive.
        f.write_all(b"\0").map_err(io)
    }

    fn abandon(&mut self) {
        // Closed without 'V': the device keeps counting and resets us.
        if self.file.take().is_some() {
            tracing::warn!(path = %self.path.display(), timeout = ?self.timeout, "watchdog abandoned: this controller resets when it expires");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The byte protocol on a plain file (no watchdog device on this host,
    /// and arming the host's own would reset the build machine).
    fn on_file(path: &Path) -> DeviceWatchdog {
        DeviceWatchdog {
            path: path.to_path_buf(),
            file: Some(File::create(path).unwrap()),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn pets_without_the_magic_character_and_only_disarm_writes_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("wd");
        let mut wd = on_file(&p);
        wd.pet().unwrap();
        wd.pet().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"\0\0");
        wd.disarm().unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"\0\0V");
    }

    #[test]
    fn abandon_and_drop_close_without_the_magic_character() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("wd");
        let mut wd = on_file(&p);
        wd.pet().unwrap();
        wd.abandon();
        assert!(wd.pet().is_err(), "an abandoned watchdog is not petted");
        drop(wd);
        assert_eq!(std::fs::read(&p).unwrap(), b"\0");

        let p = dir.path().join("wd2");
        let mut wd = on_file(&p);
        wd.pet().unwrap();
        drop(wd);
        assert_eq!(std::fs::read(&p).unwrap(), b"\0");
    }

    #[test]
    fn a_device_that_refuses_the_timeout_is_disarmed_and_reported() {
        // A regular file answers the ioctl with ENOTTY, as a non-watchdog
        // device would: the error is returned and 'V' written on the way out.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("not-a-watchdog");
        std::fs::write(&p, b"").unwrap();
        let e = DeviceWatchdog::open(&p, Duration::from_secs(10)).unwrap_err();
        let WatchdogError::Io { source } = e else {
            panic!("{e}")
        };
        assert_eq!(source.raw_os_error(), Some(nix::libc::ENOTTY));
        assert_eq!(std::fs::read(&p).unwrap(), b"V");
    }

    #[test]
    fn ioctl_numbers_match_linux_watchdog_h() {
        // _IOWR('W', 6, int) and _IOR('W', 7, int) as the kernel header has them.
        let int = std::mem::size_of::<nix::libc::c_int>();
        assert_eq!(nix::request_code_readwrite!(b'W', 6, int), 0xC004_5706);
        assert_eq!(nix::request_code_read!(b'W', 7, int), 0x8004_5707);
    }

    #[test]
    fn refuses_sub_second_timeouts_and_missing_devices() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("wd");
        std::fs::write(&p, b"").unwrap();
        let e = DeviceWatchdog::open(&p, Duration::from_millis(900)).unwrap_err();
        let WatchdogError::Io { source } = e else {
            panic!("{e}")
        };
        assert_eq!(source.kind(), std::io::ErrorKind::InvalidInput);
        assert_eq!(std::fs::read(&p).unwrap(), b"V");
        let e =
            DeviceWatchdog::open(&dir.path().join("absent"), Duration::from_secs(5)).unwrap_err();
        assert!(matches!(e, WatchdogError::Open { .. }));
    }
}
