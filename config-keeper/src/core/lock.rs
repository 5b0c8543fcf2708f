//! The config lock (design brief 3.3): taken by heartbeat while the partner is
//! unreachable on the interconnect but alive on disk, so the two sides cannot
//! write diverging configuration. While held, `config.apply` is refused with
//! `config_locked` and the reason; reads still work.

use serde::{Deserialize, Serialize};

/// A held lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Why it was taken ("partner unreachable on interconnect, alive on disk").
    pub reason: String,
    /// When, ms since the Unix epoch.
    pub since_ms: u64,
    /// The action that took it.
    pub action_id: Option<String>,
}

/// Result of a lock or unlock request; both are idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LockOutcome {
    /// The state changed; persist it.
    Changed,
    /// Already in the asked state; nothing to write. For a repeated lock the
    /// first reason is kept (it says when the trouble began).
    Unchanged,
}

/// Decides a lock request against the current lock.
pub fn lock(
    current: &Option<Lock>,
    reason: &str,
    now_ms: u64,
    action_id: Option<&str>,
) -> (Option<Lock>, LockOutcome) {
    match current {
        Some(held) => (Some(held.clone()), LockOutcome::Unchanged),
        None => (
            Some(Lock {
                reason: reason.to_string(),
                since_ms: now_ms,
                action_id: action_id.map(str::to_string),
            }),
            LockOutcome::Changed,
        ),
    }
}

/// Decides an unlock request.
pub fn unlock(current: &Option<Lock>) -> (Option<Lock>, LockOutcome) {
    match current {
        Some(_) => (None, LockOutcome::Changed),
        None => (None, LockOutcome::Unchanged),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_idempotent_and_keeps_first_reason() {
        let (l, o) = lock(&None, "partner silent", 5, Some("act-1"));
        assert_eq!(o, LockOutcome::Changed);
        let (l2, o2) = lock(&l, "again", 9, None);
        assert_eq!(o2, LockOutcome::Unchanged);
        assert_eq!(
            l2.as_ref().map(|l| l.reason.as_str()),
            Some("partner silent")
        );
        let (l3, o3) = unlock(&l2);
        assert_eq!((l3, o3), (None, LockOutcome::Changed));
        assert_eq!(unlock(&None), (None, LockOutcome::Unchanged));
    }
}
