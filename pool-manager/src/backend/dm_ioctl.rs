//! Device-mapper's control device (`/dev/mapper/control`), for the table
//! swaps of the per-volume devices: one ioctl per load, suspend and
//! resume, in this process.
//!
//! Why not `dmsetup`: it loads one table per process, and a takeover swaps
//! one table per volume. Under emulation a process costs 40-60 ms, most of
//! a 500-volume takeover (pool-manager/BENCHMARKS.md). The ioctl ABI is
//! the kernel's stable `linux/dm-ioctl.h` (version 4); only the three
//! commands below are used, by name, on devices that already exist.
//!
//! Encoding is plain byte layout, tested without a kernel; the one
//! `unsafe` block is the `ioctl(2)` call on a buffer we own.

use std::fs::File;
use std::os::fd::AsRawFd;

/// The control device.
pub const CONTROL: &str = "/dev/mapper/control";

/// Size of `struct dm_ioctl`.
const HEADER: usize = 312;
/// Size of `struct dm_target_spec`.
const SPEC: usize = 40;
/// Room for a device name, its NUL included (`DM_NAME_LEN`).
const NAME_LEN: usize = 128;
/// Interface version we speak: 4.0.0 (the kernel accepts any older minor).
const VERSION: [u32; 3] = [4, 0, 0];
/// Byte offset of the name in `struct dm_ioctl`.
const NAME_AT: usize = 48;
/// Longest target type name (`DM_MAX_TYPE_NAME`), NUL included.
const TYPE_LEN: usize = 16;

/// `DM_READONLY_FLAG`: the table is loaded read-only.
const READONLY: u32 = 1;
/// `DM_SUSPEND_FLAG`: suspend (without it, `DM_DEV_SUSPEND` resumes).
const SUSPEND: u32 = 1 << 1;

/// The udev cookie of a resume, as libdm sends it with `DM_DISABLE_UDEV`
/// set: no semaphore, only the flags primary source, no dm rules, no
/// subsystem rules. The shipped rule `54-duplex-dm-cookie.rules`
/// recognises exactly this value, so udev treats these events as it
/// treats `dmsetup`'s.
pub const UNSYNCED_RESUME_COOKIE: u32 = 0x43 << 16;

/// The ioctl commands used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    /// `DM_DEV_SUSPEND`: suspend, or resume (swapping in a loaded table).
    DevSuspend = 6,
    /// `DM_TABLE_LOAD`: load the inactive table.
    TableLoad = 9,
}

impl Command {
    /// `_IOWR(0xfd, nr, struct dm_ioctl)`.
    fn request(self) -> libc::Ioctl {
        const READ_WRITE: libc::Ioctl = 3;
        const DM_TYPE: libc::Ioctl = 0xfd;
        const SIZE: libc::Ioctl = 312;
        (READ_WRITE << 30) | (SIZE << 16) | (DM_TYPE << 8) | self as libc::Ioctl
    }

    /// For messages.
    fn name(self) -> &'static str {
        match self {
            Command::DevSuspend => "DM_DEV_SUSPEND",
            Command::TableLoad => "DM_TABLE_LOAD",
        }
    }
}

/// Why a device-mapper call failed.
#[derive(Debug, thiserror::Error)]
pub enum DmError {
    /// `/dev/mapper/control` could not be opened.
    #[error("cannot open {CONTROL}")]
    Open(#[source] std::io::Error),
    /// A name the kernel would not take (too long, or a NUL inside).
    #[error("device name {0:?} is not valid for device-mapper")]
    BadName(String),
    /// A target line the kernel would not take.
    #[error("table for {device} is not valid: {reason}")]
    BadTable {
        /// The device.
        device: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The kernel refused.
    #[error("{command} on {device} failed")]
    Ioctl {
        /// The ioctl.
        command: &'static str,
        /// The device.
        device: String,
        /// The errno.
        #[source]
        source: std::io::Error,
    },
}

/// One target line of a table: `start sectors kind params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// First sector.
    pub start: u64,
    /// Length in sectors.
    pub sectors: u64,
    /// Target type (`linear`, `error`, `thin`...).
    pub kind: &'static str,
    /// The target's parameters.
    pub params: String,
}

/// The open control device.
#[derive(Debug)]
pub struct Control {
    file: File,
}

impl Control {
    /// Opens `/dev/mapper/control` (read-write, as libdm does).
    pub fn open() -> Result<Control, DmError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(CONTROL)
            .map_err(DmError::Open)?;
        Ok(Control { file })
    }

    /// Loads `targets` as the device's inactive table (`dmsetup load`).
    pub fn load(&self, name: &str, targets: &[Target], read_only: bool) -> Result<(), DmError> {
        let flags = if read_only { READONLY } else { 0 };
        let mut buf = encode(name, flags, 0, targets)?;
        self.call(Command::TableLoad, name, &mut buf)
    }

    /// Suspends the device, letting I/O in flight complete first
    /// (`dmsetup suspend`).
    pub fn suspend(&self, name: &str) -> Result<(), DmError> {
        let mut buf = encode(name, SUSPEND, 0, &[])?;
        self.call(Command::DevSuspend, name, &mut buf)
    }

    /// Resumes the device, swapping in its inactive table if one is loaded
    /// (`dmsetup resume`); `cookie` goes to udev with the change event.
    pub fn resume(&self, name: &str, cookie: u32) -> Result<(), DmError> {
        let mut buf = encode(name, 0, cookie, &[])?;
        self.call(Command::DevSuspend, name, &mut buf)
    }

    fn call(&self, command: Command, device: &str, buf: &mut [u8]) -> Result<(), DmError> {
        ioctl(&self.file, command.request(), buf).map_err(|source| DmError::Ioctl {
            command: command.name(),
            device: device.to_string(),
            source,
        })
    }
}

/// The one system call. The kernel copies `data_size` bytes (the first
/// header field after the version, set by [`encode`] to the buffer's
/// length) in and at most as many back.
#[allow(unsafe_code)]
fn ioctl(file: &File, request: libc::Ioctl, buf: &mut [u8]) -> std::io::Result<()> {
    if buf.len() < HEADER || read_u32(buf, 12) as usize != buf.len() {
        return Err(std::io::Error::from(std::io::ErrorKind::InvalidInput));
    }
    // SAFETY: `buf` is a live, exclusively borrowed buffer of exactly the
    // `data_size` bytes its header declares (checked above), so the kernel
    // reads and writes only inside it; `file` keeps the descriptor open for
    // the duration of the call.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), request, buf.as_mut_ptr()) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Builds the ioctl buffer: `struct dm_ioctl`, then for a table load one
/// `struct dm_target_spec` per target, each followed by its NUL-terminated
/// parameters padded to 8 bytes.
fn encode(name: &str, flags: u32, event_nr: u32, targets: &[Target]) -> Result<Vec<u8>, DmError> {
    if name.is_empty() || name.len() >= NAME_LEN || name.contains('\0') || name.contains('/') {
        return Err(DmError::BadName(name.to_string()));
    }
    let bad = |reason| DmError::BadTable {
        device: name.to_string(),
        reason,
    };
    let mut buf = vec![0u8; HEADER];
    for t in targets {
        if t.kind.is_empty() || t.kind.len() >= TYPE_LEN || t.kind.contains('\0') {
            return Err(bad("target type"));
        }
        if t.params.contains('\0') {
            return Err(bad("NUL in the parameters"));
        }
        let at = buf.len();
        let size = (SPEC + t.params.len() + 1).next_multiple_of(8);
        buf.resize(at + size, 0);
        put_u64(&mut buf, at, t.start);
        put_u64(&mut buf, at + 8, t.sectors);
        // `next`: from this spec to the next one.
        put_u32(
            &mut buf,
            at + 20,
            u32::try_from(size).map_err(|_| bad("too long"))?,
        );
        buf[at + 24..at + 24 + t.kind.len()].copy_from_slice(t.kind.as_bytes());
        buf[at + SPEC..at + SPEC + t.params.len()].copy_from_slice(t.params.as_bytes());
    }
    let data_size = u32::try_from(buf.len()).map_err(|_| bad("too long"))?;
    let count = u32::try_from(targets.len()).map_err(|_| bad("too many targets"))?;
    for (i, v) in VERSION.iter().enumerate() {
        put_u32(&mut buf, i * 4, *v);
    }
    put_u32(&mut buf, 12, data_size);
    // data_start: the targets follow the header.
    put_u32(&mut buf, 16, 312);
    put_u32(&mut buf, 20, count);
    put_u32(&mut buf, 28, flags);
    put_u32(&mut buf, 32, event_nr);
    buf[NAME_AT..NAME_AT + name.len()].copy_from_slice(name.as_bytes());
    Ok(buf)
}

fn put_u32(buf: &mut [u8], at: usize, v: u32) {
    buf[at..at + 4].copy_from_slice(&v.to_ne_bytes());
}

fn put_u64(buf: &mut [u8], at: usize, v: u64) {
    buf[at..at + 8].copy_from_slice(&v.to_ne_bytes());
}

fn read_u32(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_ne_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_u64(buf: &[u8], at: usize) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&buf[at..at + 8]);
        u64::from_ne_bytes(b)
    }

    #[test]
    fn request_numbers_match_the_kernel_header() {
        // DM_DEV_SUSPEND and DM_TABLE_LOAD as the x86-64 and arm64
        // headers define them.
        assert_eq!(Command::DevSuspend.request(), 0xc138_fd06);
        assert_eq!(Command::TableLoad.request(), 0xc138_fd09);
    }

    #[test]
    fn header_layout() {
        let buf = encode("dxvol-abc", SUSPEND, UNSYNCED_RESUME_COOKIE, &[]).expect("encode");
        assert_eq!(buf.len(), HEADER);
        assert_eq!(
            (read_u32(&buf, 0), read_u32(&buf, 4), read_u32(&buf, 8)),
            (4, 0, 0)
        );
        assert_eq!(read_u32(&buf, 12), 312, "data_size");
        assert_eq!(read_u32(&buf, 16), 312, "data_start");
        assert_eq!(read_u32(&buf, 20), 0, "target_count");
        assert_eq!(read_u32(&buf, 28), SUSPEND);
        assert_eq!(
            read_u32(&buf, 32),
            4_390_912,
            "the cookie the udev rule matches"
        );
        assert_eq!(&buf[48..57], b"dxvol-abc");
        assert!(
            buf[57..HEADER].iter().all(|b| *b == 0),
            "name NUL-terminated, uuid empty"
        );
    }

    #[test]
    fn table_layout() {
        let targets = [
            Target {
                start: 0,
                sectors: 2048,
                kind: "linear",
                params: "253:4 0".into(),
            },
            Target {
                start: 2048,
                sectors: 8,
                kind: "error",
                params: String::new(),
            },
        ];
        let buf = encode("dxvol-abc", READONLY, 0, &targets).expect("encode");
        // 40 + "253:4 0\0" (8) = 48; 40 + "\0" padded = 48.
        assert_eq!(buf.len(), HEADER + 48 + 48);
        assert_eq!(read_u32(&buf, 12) as usize, buf.len());
        assert_eq!(read_u32(&buf, 20), 2);
        assert_eq!(read_u32(&buf, 28), READONLY);
        let first = HEADER;
        assert_eq!(read_u64(&buf, first), 0);
        assert_eq!(read_u64(&buf, first + 8), 2048);
        assert_eq!(read_u32(&buf, first + 20), 48, "next");
        assert_eq!(&buf[first + 24..first + 31], b"linear\0");
        assert_eq!(&buf[first + 40..first + 48], b"253:4 0\0");
        let second = first + 48;
        assert_eq!(read_u64(&buf, second), 2048);
        assert_eq!(&buf[second + 24..second + 30], b"error\0");
        assert_eq!(buf[second + 40], 0);
    }

    #[test]
    fn refuses_what_the_kernel_would() {
        let long = "x".repeat(NAME_LEN);
        assert!(matches!(encode(&long, 0, 0, &[]), Err(DmError::BadName(_))));
        assert!(matches!(encode("", 0, 0, &[]), Err(DmError::BadName(_))));
        assert!(matches!(encode("a/b", 0, 0, &[]), Err(DmError::BadName(_))));
        let t = Target {
            start: 0,
            sectors: 1,
            kind: "a-very-long-target-name",
            params: String::new(),
        };
        assert!(matches!(
            encode("d", 0, 0, &[t]),
            Err(DmError::BadTable { .. })
        ));
    }

    #[test]
    fn ioctl_refuses_a_buffer_that_lies_about_its_size() {
        let Ok(file) = File::open("/dev/null") else {
            return;
        };
        let mut buf = encode("d", 0, 0, &[]).expect("encode");
        buf.truncate(HEADER - 1);
        assert!(ioctl(&file, Command::TableLoad.request(), &mut buf).is_err());
        let mut buf = encode("d", 0, 0, &[]).expect("encode");
        buf.push(0);
        let err = ioctl(&file, Command::TableLoad.request(), &mut buf).expect_err("size");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
