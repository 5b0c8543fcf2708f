//! Device-mapper's control device (`/dev/mapper/control`): every
//! device-mapper operation pool-manager does itself (observing devices,
//! creating the per-volume and thin-LV devices, swapping and removing
//! them) is one ioctl here, in this process.
//!
//! Why not `dmsetup`: it is one process per call, and a takeover touches
//! one device per volume, twice observed and once created or swapped.
//! Under emulation a process costs 40-60 ms, most of a 500-volume takeover
//! (pool-manager/BENCHMARKS.md). The ioctl ABI is the kernel's stable
//! `linux/dm-ioctl.h` (version 4); only the commands of [`Command`] are
//! used.
//!
//! Encoding and decoding are plain byte layout, tested without a kernel;
//! the one `unsafe` block is the `ioctl(2)` call on a buffer we own.

use crate::core::dmvol::{DevNum, DmDevice};
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
/// Room for a dm UUID, its NUL included (`DM_UUID_LEN`).
const UUID_LEN: usize = 129;
/// Interface version we speak: 4.0.0 (the kernel accepts any older minor).
const VERSION: [u32; 3] = [4, 0, 0];
/// Byte offset of the name in `struct dm_ioctl`.
const NAME_AT: usize = 48;
/// Byte offset of the UUID in `struct dm_ioctl`.
const UUID_AT: usize = NAME_AT + NAME_LEN;
/// Longest target type name (`DM_MAX_TYPE_NAME`), NUL included.
const TYPE_LEN: usize = 16;
/// Byte offset of the name in `struct dm_name_list` (after `dev`, `next`).
const LIST_NAME_AT: usize = 12;
/// Largest reply buffer asked for (a listing of tens of thousands of
/// devices); a reply that does not fit is an error, not a loop.
const MAX_REPLY: usize = 16 << 20;

/// `DM_READONLY_FLAG`: the table is loaded read-only (in and out).
const READONLY: u32 = 1;
/// `DM_SUSPEND_FLAG`: suspend (without it, `DM_DEV_SUSPEND` resumes);
/// out: the device is suspended.
const SUSPEND: u32 = 1 << 1;
/// `DM_STATUS_TABLE_FLAG`: `DM_TABLE_STATUS` returns the table, not the
/// targets' status.
const STATUS_TABLE: u32 = 1 << 4;
/// `DM_ACTIVE_PRESENT_FLAG`: the device has a live table.
const ACTIVE_PRESENT: u32 = 1 << 5;
/// `DM_BUFFER_FULL_FLAG`: the reply did not fit.
const BUFFER_FULL: u32 = 1 << 8;

/// The udev cookie of a resume, as libdm sends it with `DM_DISABLE_UDEV`
/// set: no semaphore, only the flags primary source, no dm rules, no
/// subsystem rules. The shipped rule `54-duplex-dm-cookie.rules`
/// recognises exactly this value, so udev treats these events as it
/// treats `dmsetup`'s.
pub const UNSYNCED_RESUME_COOKIE: u32 = 0x43 << 16;
/// The udev cookie of a removal, as libdm sends it with `DM_DISABLE_UDEV`
/// (no dm rules, no subsystem rules); also matched by the shipped rule.
pub const UNSYNCED_REMOVE_COOKIE: u32 = 0x03 << 16;

/// The ioctl commands used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// `DM_LIST_DEVICES`: every device's name.
    ListDevices = 2,
    /// `DM_DEV_CREATE`: a new device, without a table.
    DevCreate = 3,
    /// `DM_DEV_REMOVE`: remove a device that nothing holds open.
    DevRemove = 4,
    /// `DM_DEV_SUSPEND`: suspend, or resume (swapping in a loaded table).
    DevSuspend = 6,
    /// `DM_TABLE_LOAD`: load the inactive table.
    TableLoad = 9,
    /// `DM_TABLE_STATUS`: a device's state and live table.
    TableStatus = 12,
    /// `DM_TARGET_MSG`: a message to a target (`dmsetup message`).
    TargetMsg = 14,
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
            Command::ListDevices => "DM_LIST_DEVICES",
            Command::DevCreate => "DM_DEV_CREATE",
            Command::DevRemove => "DM_DEV_REMOVE",
            Command::DevSuspend => "DM_DEV_SUSPEND",
            Command::TableLoad => "DM_TABLE_LOAD",
            Command::TableStatus => "DM_TABLE_STATUS",
            Command::TargetMsg => "DM_TARGET_MSG",
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
    /// A dm UUID the kernel would not take.
    #[error("dm UUID {0:?} is not valid for device-mapper")]
    BadUuid(String),
    /// A target line the kernel would not take.
    #[error("table for {device} is not valid: {reason}")]
    BadTable {
        /// The device.
        device: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// A target message the kernel would not take.
    #[error("message to {device} is not valid: empty, over 4 KiB or with a NUL")]
    BadMessage {
        /// The device.
        device: String,
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
    /// A reply that does not hold together (never seen from a kernel).
    #[error("{command}: malformed reply: {reason}")]
    Reply {
        /// The ioctl.
        command: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
}

impl DmError {
    /// The kernel's errno, when the kernel refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            DmError::Ioctl { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
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

    /// Every device's name (`dmsetup ls`).
    pub fn list(&self) -> Result<Vec<String>, DmError> {
        let buf = self.query(Command::ListDevices, None, 0, 64 << 10)?;
        decode_list(&buf)
    }

    /// A device's state and live table (`dmsetup info` and `dmsetup
    /// table`, the table as the text `dmsetup table` prints); `None` when
    /// no device has that name (it may have gone since a listing).
    pub fn status(&self, name: &str) -> Result<Option<DmDevice>, DmError> {
        match self.query(Command::TableStatus, Some(name), STATUS_TABLE, 4 << 10) {
            Ok(buf) => decode_status(&buf).map(Some),
            Err(e) if e.errno() == Some(libc::ENXIO) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A device's state and its targets' status lines (`dmsetup status`,
    /// in [`DmDevice::table`]); `None` when no device has that name.
    pub fn target_status(&self, name: &str) -> Result<Option<DmDevice>, DmError> {
        match self.query(Command::TableStatus, Some(name), 0, 4 << 10) {
            Ok(buf) => decode_status(&buf).map(Some),
            Err(e) if e.errno() == Some(libc::ENXIO) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Sends `message` to the target at sector 0 (`dmsetup message NAME 0
    /// MESSAGE`).
    pub fn message(&self, name: &str, message: &str) -> Result<(), DmError> {
        let mut buf = encode_message(name, message)?;
        self.call(Command::TargetMsg, name, &mut buf)
    }

    /// Creates a device without a table; returns its (major, minor).
    pub fn create(&self, name: &str, uuid: &str) -> Result<(u32, u32), DmError> {
        let mut buf = encode(name, uuid, 0, 0, &[])?;
        self.call(Command::DevCreate, name, &mut buf)?;
        Ok(decode_dev(read_u64(&buf, 40)))
    }

    /// Removes a device (`dmsetup remove`); fails with `EBUSY` while it is
    /// open, `ENXIO` when there is none.
    pub fn remove(&self, name: &str, cookie: u32) -> Result<(), DmError> {
        let mut buf = encode(name, "", 0, cookie, &[])?;
        self.call(Command::DevRemove, name, &mut buf)
    }

    /// Loads `targets` as the device's inactive table (`dmsetup load`).
    pub fn load(&self, name: &str, targets: &[Target], read_only: bool) -> Result<(), DmError> {
        let flags = if read_only { READONLY } else { 0 };
        let mut buf = encode(name, "", flags, 0, targets)?;
        self.call(Command::TableLoad, name, &mut buf)
    }

    /// Suspends the device, letting I/O in flight complete first
    /// (`dmsetup suspend`).
    pub fn suspend(&self, name: &str) -> Result<(), DmError> {
        let mut buf = encode(name, "", SUSPEND, 0, &[])?;
        self.call(Command::DevSuspend, name, &mut buf)
    }

    /// Resumes the device, swapping in its inactive table if one is loaded
    /// (`dmsetup resume`); `cookie` goes to udev with the change event.
    pub fn resume(&self, name: &str, cookie: u32) -> Result<(), DmError> {
        let mut buf = encode(name, "", 0, cookie, &[])?;
        self.call(Command::DevSuspend, name, &mut buf)
    }

    /// A command whose reply carries data: retried with a larger buffer
    /// while the kernel says the reply did not fit.
    fn query(
        &self,
        command: Command,
        name: Option<&str>,
        flags: u32,
        mut room: usize,
    ) -> Result<Vec<u8>, DmError> {
        loop {
            let mut buf = header(name, "", flags, 0, room)?;
            self.call(command, name.unwrap_or("(all)"), &mut buf)?;
            if read_u32(&buf, 28) & BUFFER_FULL == 0 {
                return Ok(buf);
            }
            room *= 4;
            if HEADER + room > MAX_REPLY {
                return Err(DmError::Reply {
                    command: command.name(),
                    reason: "reply larger than 16 MiB",
                });
            }
        }
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
/// header field after the version, set by [`header`] to the buffer's
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

/// `struct dm_ioctl` followed by `room` zero bytes for the data: the name
/// (`None` for commands on no device), the UUID, flags and the event
/// number or udev cookie.
fn header(
    name: Option<&str>,
    uuid: &str,
    flags: u32,
    event_nr: u32,
    room: usize,
) -> Result<Vec<u8>, DmError> {
    if let Some(name) = name {
        if name.is_empty() || name.len() >= NAME_LEN || name.contains('\0') || name.contains('/') {
            return Err(DmError::BadName(name.to_string()));
        }
    }
    if uuid.len() >= UUID_LEN || uuid.contains('\0') {
        return Err(DmError::BadUuid(uuid.to_string()));
    }
    let mut buf = vec![0u8; HEADER + room];
    let data_size = u32::try_from(buf.len()).map_err(|_| DmError::Reply {
        command: "encode",
        reason: "buffer over 4 GiB",
    })?;
    for (i, v) in VERSION.iter().enumerate() {
        put_u32(&mut buf, i * 4, *v);
    }
    put_u32(&mut buf, 12, data_size);
    // data_start: the data follows the header.
    put_u32(&mut buf, 16, 312);
    put_u32(&mut buf, 28, flags);
    put_u32(&mut buf, 32, event_nr);
    if let Some(name) = name {
        buf[NAME_AT..NAME_AT + name.len()].copy_from_slice(name.as_bytes());
    }
    buf[UUID_AT..UUID_AT + uuid.len()].copy_from_slice(uuid.as_bytes());
    Ok(buf)
}

/// Builds the ioctl buffer for a command on one device: the header, then
/// for a table load one `struct dm_target_spec` per target, each followed
/// by its NUL-terminated parameters padded to 8 bytes.
fn encode(
    name: &str,
    uuid: &str,
    flags: u32,
    event_nr: u32,
    targets: &[Target],
) -> Result<Vec<u8>, DmError> {
    let mut buf = header(Some(name), uuid, flags, event_nr, 0)?;
    let bad = |reason| DmError::BadTable {
        device: name.to_string(),
        reason,
    };
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
    put_u32(&mut buf, 12, data_size);
    put_u32(&mut buf, 20, count);
    Ok(buf)
}

/// Builds the buffer of a target message: the header, then `struct
/// dm_target_msg` (the sector, then the NUL-terminated text), padded to 8.
fn encode_message(name: &str, message: &str) -> Result<Vec<u8>, DmError> {
    if message.is_empty() || message.contains('\0') || message.len() > 4096 {
        return Err(DmError::BadMessage {
            device: name.to_string(),
        });
    }
    let mut buf = header(Some(name), "", 0, 0, 0)?;
    let at = buf.len();
    buf.resize((at + 8 + message.len() + 1).next_multiple_of(8), 0);
    put_u64(&mut buf, at, 0);
    buf[at + 8..at + 8 + message.len()].copy_from_slice(message.as_bytes());
    let size = u32::try_from(buf.len()).map_err(|_| DmError::Reply {
        command: "encode",
        reason: "buffer over 4 GiB",
    })?;
    put_u32(&mut buf, 12, size);
    Ok(buf)
}

/// The data of a reply: from `data_start` to `data_size`.
fn reply_data<'a>(buf: &'a [u8], command: &'static str) -> Result<&'a [u8], DmError> {
    let start = read_u32(buf, 16) as usize;
    let end = read_u32(buf, 12) as usize;
    buf.get(start..end).ok_or(DmError::Reply {
        command,
        reason: "data outside the buffer",
    })
}

/// Decodes `DM_LIST_DEVICES`: `struct dm_name_list` records (device
/// number, offset of the next record from this one, NUL-terminated name);
/// a first record with device number 0 means no device.
fn decode_list(buf: &[u8]) -> Result<Vec<String>, DmError> {
    const CMD: &str = "DM_LIST_DEVICES";
    let data = reply_data(buf, CMD)?;
    let bad = |reason| DmError::Reply {
        command: CMD,
        reason,
    };
    let mut out = Vec::new();
    if data.len() < LIST_NAME_AT || read_u64(data, 0) == 0 {
        return Ok(out);
    }
    let mut at = 0usize;
    loop {
        let rec = data.get(at..).ok_or(bad("record outside the data"))?;
        if rec.len() < LIST_NAME_AT {
            return Err(bad("short record"));
        }
        let next = read_u32(rec, 8) as usize;
        out.push(cstr(&rec[LIST_NAME_AT..]).ok_or(bad("name without NUL"))?);
        if next == 0 {
            return Ok(out);
        }
        at += next;
    }
}

/// Decodes `DM_TABLE_STATUS` with the table flag: the header's state, then
/// `target_count` specs, each followed by its parameters; a spec's `next`
/// counts from the first spec.
fn decode_status(buf: &[u8]) -> Result<DmDevice, DmError> {
    const CMD: &str = "DM_TABLE_STATUS";
    let bad = |reason| DmError::Reply {
        command: CMD,
        reason,
    };
    let data = reply_data(buf, CMD)?;
    let flags = read_u32(buf, 28);
    let (major, minor) = decode_dev(read_u64(buf, 40));
    let mut table = Vec::new();
    let mut at = 0usize;
    for _ in 0..read_u32(buf, 20) {
        let spec = data.get(at..).ok_or(bad("spec outside the data"))?;
        if spec.len() < SPEC {
            return Err(bad("short spec"));
        }
        let kind = cstr(&spec[24..SPEC]).ok_or(bad("target type without NUL"))?;
        let params = cstr(&spec[SPEC..]).ok_or(bad("parameters without NUL"))?;
        table.push(format!(
            "{} {} {kind} {params}",
            read_u64(spec, 0),
            read_u64(spec, 8)
        ));
        at = read_u32(spec, 20) as usize;
    }
    Ok(DmDevice {
        name: cstr(&buf[NAME_AT..UUID_AT]).ok_or(bad("name without NUL"))?,
        uuid: cstr(&buf[UUID_AT..UUID_AT + UUID_LEN]).ok_or(bad("uuid without NUL"))?,
        dev: DevNum { major, minor },
        live: flags & ACTIVE_PRESENT != 0,
        suspended: flags & SUSPEND != 0,
        read_only: flags & READONLY != 0,
        // The kernel's open count is never negative.
        open: u32::try_from(i32::from_ne_bytes(read_u32(buf, 24).to_ne_bytes())).unwrap_or(0),
        table,
    })
}

/// The kernel's `huge_encode_dev`: minor's low byte, 12 bits of major,
/// then the rest of the minor.
fn decode_dev(d: u64) -> (u32, u32) {
    let major = ((d >> 8) & 0xfff) as u32;
    let minor = (d & 0xff) as u32 | ((d >> 12) & 0xf_ff00) as u32;
    (major, minor)
}

/// The NUL-terminated string at the start of `b` (lossy UTF-8: dm names
/// are bytes).
fn cstr(b: &[u8]) -> Option<String> {
    let end = b.iter().position(|c| *c == 0)?;
    Some(String::from_utf8_lossy(&b[..end]).into_owned())
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

fn read_u64(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_ne_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_numbers_match_the_kernel_header() {
        // DM_DEV_SUSPEND and DM_TABLE_LOAD as the x86-64 and arm64
        // headers define them.
        assert_eq!(Command::DevSuspend.request(), 0xc138_fd06);
        assert_eq!(Command::TableLoad.request(), 0xc138_fd09);
    }

    #[test]
    fn header_layout() {
        let buf = encode("dxvol-abc", "", SUSPEND, UNSYNCED_RESUME_COOKIE, &[]).expect("encode");
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
        let buf = encode("dxvol-abc", "", READONLY, 0, &targets).expect("encode");
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
    fn request_numbers_of_the_queries() {
        assert_eq!(Command::ListDevices.request(), 0xc138_fd02);
        assert_eq!(Command::DevCreate.request(), 0xc138_fd03);
        assert_eq!(Command::DevRemove.request(), 0xc138_fd04);
        assert_eq!(Command::TableStatus.request(), 0xc138_fd0c);
    }

    #[test]
    fn message_layout() {
        let b = encode_message("dxvol-ab", "reinstate_path 253:4").unwrap();
        assert_eq!(b.len() % 8, 0);
        assert_eq!(read_u32(&b, 12) as usize, b.len());
        assert_eq!(read_u32(&b, 16), 312, "data follows the header");
        assert_eq!(read_u64(&b, 312), 0, "sector");
        assert_eq!(cstr(&b[320..]).as_deref(), Some("reinstate_path 253:4"));
        assert_eq!(Command::TargetMsg.request(), 0xc138_fd0e);
        assert!(encode_message("dxvol-ab", "").is_err());
        assert!(encode_message("dxvol-ab", "a\0b").is_err());
    }

    #[test]
    fn create_carries_name_and_uuid() {
        let buf = encode("dx--p-v1", "LVM-abc", 0, 0, &[]).expect("encode");
        assert_eq!(&buf[NAME_AT..NAME_AT + 9], b"dx--p-v1\0");
        assert_eq!(&buf[UUID_AT..UUID_AT + 8], b"LVM-abc\0");
        let long = "u".repeat(UUID_LEN);
        assert!(matches!(
            encode("d", &long, 0, 0, &[]),
            Err(DmError::BadUuid(_))
        ));
    }

    /// `huge_encode_dev` of (major, minor), as the kernel computes it.
    fn kernel_dev(major: u32, minor: u32) -> u64 {
        let (major, minor) = (u64::from(major), u64::from(minor));
        (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
    }

    /// A reply as the kernel leaves it: the request header with
    /// `data_size` set to what it used.
    fn reply(flags: u32, count: u32, dev: u64, name: &str, uuid: &str, data: &[u8]) -> Vec<u8> {
        let mut buf = header(Some(name), uuid, flags, 0, 4096).expect("header");
        put_u32(
            &mut buf,
            12,
            u32::try_from(HEADER + data.len()).expect("size"),
        );
        put_u32(&mut buf, 20, count);
        put_u64(&mut buf, 40, dev);
        buf[HEADER..HEADER + data.len()].copy_from_slice(data);
        buf
    }

    #[test]
    fn decodes_a_table_status_reply() {
        // Two targets; `next` counts from the first spec, parameters
        // padded to 8 bytes.
        let mut data = vec![0u8; 48 + 56];
        put_u64(&mut data, 0, 0);
        put_u64(&mut data, 8, 8);
        put_u32(&mut data, 20, 48);
        data[24..30].copy_from_slice(b"linear");
        data[40..47].copy_from_slice(b"8:0 200");
        put_u64(&mut data, 48, 8);
        put_u64(&mut data, 56, 16);
        data[48 + 24..48 + 29].copy_from_slice(b"error");
        let flags = ACTIVE_PRESENT | SUSPEND | READONLY;
        let mut buf = reply(
            flags,
            2,
            kernel_dev(253, 300),
            "dxvol-ab",
            "DUPLEX-VOL-ab",
            &data,
        );
        put_u32(&mut buf, 24, 3);
        let st = decode_status(&buf).expect("decode");
        assert_eq!(
            (st.name.as_str(), st.uuid.as_str()),
            ("dxvol-ab", "DUPLEX-VOL-ab")
        );
        assert_eq!(
            st.dev,
            DevNum {
                major: 253,
                minor: 300
            }
        );
        assert!(st.live && st.suspended && st.read_only);
        assert_eq!(st.open, 3);
        assert_eq!(st.table, ["0 8 linear 8:0 200", "8 16 error "]);
        // No live table: no targets, not live.
        let st = decode_status(&reply(0, 0, kernel_dev(253, 1), "e", "", &[])).expect("decode");
        assert!(!st.live && st.table.is_empty());
        // A spec pointing past the data is an error, not a panic.
        let mut short = reply(ACTIVE_PRESENT, 2, 0, "x", "", &data[..48]);
        put_u32(&mut short, 12, u32::try_from(HEADER + 48).expect("size"));
        assert!(matches!(decode_status(&short), Err(DmError::Reply { .. })));
    }

    #[test]
    fn decodes_a_device_list() {
        // Records: dev, next (from this record), name, then (newer
        // kernels) event_nr and flags, all 8-byte aligned.
        let mut data = vec![0u8; 32 + 24];
        put_u64(&mut data, 0, kernel_dev(253, 0));
        put_u32(&mut data, 8, 32);
        data[12..21].copy_from_slice(b"dx--p-v1\0");
        put_u64(&mut data, 32, kernel_dev(253, 1));
        data[44..50].copy_from_slice(b"dxvol\0");
        let buf = reply(0, 0, 0, "x", "", &data);
        assert_eq!(decode_list(&buf).expect("decode"), ["dx--p-v1", "dxvol"]);
        // No device: one record with device number 0.
        let empty = reply(0, 0, 0, "x", "", &[0u8; 16]);
        assert!(decode_list(&empty).expect("decode").is_empty());
        // A name running off the data.
        let mut bad = data.clone();
        bad[44..56].copy_from_slice(b"xxxxxxxxxxxx");
        assert!(decode_list(&reply(0, 0, 0, "x", "", &bad)).is_err());
    }

    #[test]
    fn device_numbers_round_trip() {
        for (major, minor) in [(253, 0), (253, 255), (253, 256), (8, 1_048_575), (4095, 77)] {
            assert_eq!(decode_dev(kernel_dev(major, minor)), (major, minor));
        }
    }

    #[test]
    fn refuses_what_the_kernel_would() {
        let long = "x".repeat(NAME_LEN);
        assert!(matches!(
            encode(&long, "", 0, 0, &[]),
            Err(DmError::BadName(_))
        ));
        assert!(matches!(
            encode("", "", 0, 0, &[]),
            Err(DmError::BadName(_))
        ));
        assert!(matches!(
            encode("a/b", "", 0, 0, &[]),
            Err(DmError::BadName(_))
        ));
        let t = Target {
            start: 0,
            sectors: 1,
            kind: "a-very-long-target-name",
            params: String::new(),
        };
        assert!(matches!(
            encode("d", "", 0, 0, &[t]),
            Err(DmError::BadTable { .. })
        ));
    }

    #[test]
    fn ioctl_refuses_a_buffer_that_lies_about_its_size() {
        let Ok(file) = File::open("/dev/null") else {
            return;
        };
        let mut buf = encode("d", "", 0, 0, &[]).expect("encode");
        buf.truncate(HEADER - 1);
        assert!(ioctl(&file, Command::TableLoad.request(), &mut buf).is_err());
        let mut buf = encode("d", "", 0, 0, &[]).expect("encode");
        buf.push(0);
        let err = ioctl(&file, Command::TableLoad.request(), &mut buf).expect_err("size");
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    }
}
