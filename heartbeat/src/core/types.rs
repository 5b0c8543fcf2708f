//! Plain types shared by the state machine and the backends.

use serde::{Deserialize, Serialize};

/// The cluster epoch: only grows; compared by counter, then controller id,
/// so two controllers that bump at once never produce equal epochs.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Epoch {
    /// Monotonic counter.
    pub counter: u64,
    /// The controller that made this epoch (`A` or `B`).
    pub controller: String,
}

/// What one interconnect datagram says, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Beat {
    /// Sender's controller id (`A` or `B`), at most 8 bytes.
    pub controller: String,
    /// Random per boot of the sender's heartbeat daemon: a new value resets
    /// the receiver's replay window.
    pub incarnation: u64,
    /// The sender's current epoch.
    pub epoch: Epoch,
    /// Sequence number, strictly increasing within one incarnation.
    pub seq: u64,
    /// The sender's state code (the state machine defines the values).
    pub state: u8,
    /// Shelf disks the sender can read, or [`SHELF_UNCHECKED`].
    pub shelf: u8,
}

/// [`Beat::shelf`] of a controller that does not watch the shelf.
pub const SHELF_UNCHECKED: u8 = u8::MAX;

/// Where a controller stands, as written in its slot and its beats.
///
/// The codes are part of the on-disk format (`docs/heartbeat.md`): never
/// renumber one, only add.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Just started: nothing proven yet, imports nothing of the partner's.
    Booting,
    /// The partner answers on the interconnect.
    Normal,
    /// The interconnect is silent but the partner's slot advances (or is
    /// undecided): configuration locked, no takeover.
    Waiting,
    /// The partner's slot is frozen: fence agents are running.
    Fencing,
    /// Fenced: the new epoch is being written, then the pools taken over.
    TakingOver,
    /// The partner is fenced and this controller owns every pool.
    Survivor,
    /// This controller was fenced (or fenced itself): it serves nothing and
    /// waits for the survivor's acknowledgement.
    Fenced,
}

impl Phase {
    /// Every phase, for tables and round-trip tests.
    pub const ALL: [Phase; 7] = [
        Phase::Booting,
        Phase::Normal,
        Phase::Waiting,
        Phase::Fencing,
        Phase::TakingOver,
        Phase::Survivor,
        Phase::Fenced,
    ];

    /// The code in slots and beats.
    pub fn code(self) -> u8 {
        match self {
            Phase::Booting => 1,
            Phase::Normal => 2,
            Phase::Waiting => 3,
            Phase::Fencing => 4,
            Phase::TakingOver => 5,
            Phase::Survivor => 6,
            Phase::Fenced => 7,
        }
    }

    /// The phase of a code, `None` for an unknown one.
    pub fn from_code(code: u8) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.code() == code)
    }

    /// The lower-case name used in status and events.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Booting => "booting",
            Phase::Normal => "normal",
            Phase::Waiting => "waiting",
            Phase::Fencing => "fencing",
            Phase::TakingOver => "taking_over",
            Phase::Survivor => "survivor",
            Phase::Fenced => "fenced",
        }
    }
}
