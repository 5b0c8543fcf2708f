//! Effects at the edges: every touch of the outside world is a trait with a
//! Linux implementation and a simulated one.
//!
//! Blocking traits (`HeartbeatDisk`, `Watchdog`) are driven from dedicated
//! threads, one per disk, so a hung disk stalls only its own thread. The
//! others return boxed futures so they can be held as trait objects.

pub mod sim;

use crate::core::types::Beat;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

pub mod linux;

/// Size of one heartbeat block: one slot per block, so the two controllers
/// never write the same block.
pub const BLOCK: usize = 4096;

/// A boxed future, so async trait methods stay object-safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Errors of a heartbeat disk.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// The device could not be opened.
    #[error("{disk}: cannot open {path}")]
    Open {
        /// The disk's name.
        disk: String,
        /// The device path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A read or write failed (or was short).
    #[error("{disk}: I/O at offset {offset} failed")]
    Io {
        /// The disk's name.
        disk: String,
        /// Byte offset of the block.
        offset: u64,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The offset is not 4 KiB aligned or lies past the end of the device.
    #[error("{disk}: offset {offset} is not a block of the device")]
    Range {
        /// The disk's name.
        disk: String,
        /// The refused offset.
        offset: u64,
    },
}

/// One heartbeat disk, read and written in 4 KiB blocks past the page cache.
pub trait HeartbeatDisk: Send + Sync {
    /// A short name for logs and status (`hb0`).
    fn name(&self) -> &str;
    /// Ensures `block` is on the medium at `offset` when it returns `Ok`
    /// (O_DIRECT|O_DSYNC on Linux).
    fn write_block(&self, offset: u64, block: &[u8; BLOCK]) -> Result<(), DiskError>;
    /// Reads the block at `offset` from the medium itself, never a cache.
    fn read_block(&self, offset: u64) -> Result<Box<[u8; BLOCK]>, DiskError>;
    /// Opens the disk's path again after I/O errors (the disk was pulled
    /// and pushed back, or replaced). A disk that cannot go away keeps the
    /// default, which does nothing.
    fn reopen(&self) -> Result<(), DiskError> {
        Ok(())
    }
}

/// Errors of the watchdog device.
#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    /// The device could not be opened (absent, or already open elsewhere).
    #[error("cannot open the watchdog {path}")]
    Open {
        /// The device path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Setting the timeout or petting failed.
    #[error("watchdog I/O failed")]
    Io {
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// The watchdog: resets this controller unless petted within `timeout`.
pub trait Watchdog: Send {
    /// The timeout armed on the device.
    fn timeout(&self) -> Duration;
    /// Pets it: the next reset is `timeout` from now.
    fn pet(&mut self) -> Result<(), WatchdogError>;
    /// Stops petting for good without disarming (no magic close), so the
    /// device fires. Used by self-fence.
    fn abandon(&mut self);
}

/// What a fence attempt established.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FenceOutcome {
    /// The partner is proven unable to write to the shared disks (BMC says
    /// off, or the reservation preempt succeeded).
    Confirmed {
        /// What proved it, for the timeline.
        detail: String,
    },
    /// Done, but nothing proves the partner stopped (poison pill).
    Unconfirmed {
        /// What was done.
        detail: String,
    },
    /// The agent could not act; the reason goes into the alert.
    Failed {
        /// Why.
        reason: String,
    },
}

/// A way to stop the partner from writing to the shelf.
pub trait FenceAgent: Send + Sync {
    /// The agent's name (`ipmi`, `scsi_pr`, `poison_pill`).
    fn name(&self) -> &str;
    /// Fences controller `target`; idempotent (fencing a fenced controller
    /// confirms again).
    fn fence<'a>(&'a self, target: &'a str) -> BoxFuture<'a, FenceOutcome>;
    /// Checks the agent could act (reachability, credentials) without
    /// fencing; `Ok` carries what was checked.
    fn test<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<String, String>>;
    /// Lifts the fence after the partner rejoined (power on, re-register).
    fn unfence<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<String, String>>;
    /// Puts this controller's own part of the fence in place once it is a
    /// member (the PR agent registers its key); `Ok` says what was done.
    /// Agents with nothing of their own to set up keep this default.
    fn join(&self) -> BoxFuture<'_, Result<String, String>> {
        Box::pin(async { Ok("nothing to set up".to_string()) })
    }
}

/// A verified beat and where it arrived.
#[derive(Debug, Clone)]
pub struct Arrival {
    /// Link index (0 = ic0, 1 = ic1).
    pub link: usize,
    /// The authenticated content.
    pub beat: Beat,
    /// Monotonic arrival time.
    pub at: Instant,
}

/// Per-link datagram counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LinkCounters {
    /// Datagrams sent.
    pub sent: u64,
    /// Sends that failed.
    pub send_errors: u64,
    /// Authenticated beats accepted.
    pub received: u64,
    /// Dropped: bad HMAC.
    pub forged: u64,
    /// Dropped: sequence not newer than one already seen.
    pub replayed: u64,
    /// Dropped: not a heartbeat datagram at all.
    pub malformed: u64,
    /// Beats that never arrived: gaps in the partner's sequence on this
    /// link (a gap longer than an outage's worth is an outage, already
    /// alerted as the link going down, and not counted).
    pub lost: u64,
    /// The last round trip measured on this link, in µs (the partner
    /// echoes our beats; `None` until one came back).
    pub rtt_last_us: Option<u64>,
    /// Running average of the round trips (weight 1/8), in µs.
    pub rtt_avg_us: Option<u64>,
}

/// The interconnect heartbeat transport over every link.
pub trait Interconnect: Send + Sync {
    /// Sends `beat` on every link; one result per link, a failed link is
    /// reported, never fatal.
    fn send<'a>(&'a self, beat: &'a Beat) -> BoxFuture<'a, Vec<Result<(), String>>>;
    /// Waits for the next verified beat from the partner; forged, replayed
    /// and malformed datagrams are dropped and counted.
    fn recv(&self) -> BoxFuture<'_, Arrival>;
    /// Counters per link.
    fn counters(&self) -> Vec<LinkCounters>;
}

/// The shelf's disks as this controller sees them.
pub trait ShelfDisks: Send + Sync {
    /// How many disks are watched.
    fn count(&self) -> usize;
    /// Reads the first block of disk `i` past every cache: true when the
    /// disk answered. May block for as long as the device does; the driver
    /// keeps at most one read per disk in flight.
    fn readable(&self, i: usize) -> bool;
}

/// The front-end links hosts reach this controller on.
pub trait FrontendLinks: Send + Sync {
    /// True when at least one of them has carrier; an error when none can
    /// be read at all (the driver then reports nothing).
    fn any_up(&self) -> Result<bool, String>;
}
