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
}
