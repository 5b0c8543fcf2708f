//! The pure core of pool-manager: every decision, no effects.
//!
//! Architecture invariant: nothing here touches the outside world (no I/O,
//! no tokio, no clock, no randomness). The backends (real and sim) and the
//! service call these functions, so the simulator refuses exactly what the
//! real service refuses.

pub mod disk;
pub mod dmvol;
pub mod health;
pub mod identity;
pub mod layout;
pub mod names;
pub mod observed;
pub mod ownership;
pub mod reconcile;
pub mod thin;

/// A refused input: which field, and why. Nothing has been changed when one
/// of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Invalid {
    /// The parameter path (`volumes[2].size`, `disks[0]`).
    pub field: String,
    /// Why it is refused.
    pub reason: String,
}

impl Invalid {
    /// An [`Invalid`] for `field`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
