//! The config lock (design brief 3.3): taken by heartbeat while the partner is
//! unreachable on the interconnect but alive on disk, so the two sides cannot
//! write diverging configuration. While held, `config.apply` is refused with
//! `config_locked` and the reason; reads still work.
//!
//! The lock has an owner, the caller that took it as the router names it
//! (`heartbeat`, `client(pid=N)`): only its owner lifts it, or an
//! administrator with `force` (recorded as such), so no other local client
//! can unlock what heartbeat holds.

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
    /// Who took it, as the router named the caller; empty for a lock saved
    /// by a release before owners (anyone may lift that one).
    #[serde(default)]
    pub owner: String,
}

/// An unlock refused: the caller is not the lock's owner and did not force.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the configuration lock is held by {owner} ({reason}); only its owner, or an administrator with force, may lift it")]
pub struct NotOwner {
    /// The lock's owner.
    pub owner: String,
    /// The lock's reason.
    pub reason: String,
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

/// Decides a lock request by `owner` against the current lock (a held
/// lock keeps its first owner and reason).
pub fn lock(
    current: &Option<Lock>,
    reason: &str,
    owner: &str,
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
                owner: owner.to_string(),
            }),
            LockOutcome::Changed,
        ),
    }
}

/// Decides an unlock request by `caller`: its owner lifts it, anyone with
/// `force`; nobody else.
pub fn unlock(
    current: &Option<Lock>,
    caller: &str,
    force: bool,
) -> Result<(Option<Lock>, LockOutcome), NotOwner> {
    match current {
        None => Ok((None, LockOutcome::Unchanged)),
        Some(l) if force || l.owner.is_empty() || l.owner == caller => {
            Ok((None, LockOutcome::Changed))
        }
        Some(l) => Err(NotOwner {
            owner: l.owner.clone(),
            reason: l.reason.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_idempotent_and_keeps_first_reason_and_owner() {
        let (l, o) = lock(&None, "partner silent", "heartbeat", 5, Some("act-1"));
        assert_eq!(o, LockOutcome::Changed);
        let (l2, o2) = lock(&l, "again", "client(pid=7)", 9, None);
        assert_eq!(o2, LockOutcome::Unchanged);
        let held = l2.clone().unwrap_or_else(|| panic!("held"));
        assert_eq!(
            (held.reason.as_str(), held.owner.as_str()),
            ("partner silent", "heartbeat")
        );
        let (l3, o3) = unlock(&l2, "heartbeat", false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((l3, o3), (None, LockOutcome::Changed));
        assert_eq!(
            unlock(&None, "anyone", false),
            Ok((None, LockOutcome::Unchanged))
        );
    }

    #[test]
    fn only_the_owner_or_force_lifts_the_lock() {
        let (l, _) = lock(&None, "partner silent", "heartbeat", 5, None);
        let e = unlock(&l, "client(pid=9)", false).unwrap_err();
        assert_eq!(e.owner, "heartbeat");
        assert!(e.to_string().contains("force"), "{e}");
        assert_eq!(
            unlock(&l, "client(pid=9)", true),
            Ok((None, LockOutcome::Changed))
        );
        // A lock saved before owners existed: anyone lifts it.
        let legacy = l.map(|x| Lock {
            owner: String::new(),
            ..x
        });
        assert!(unlock(&legacy, "client(pid=9)", false).is_ok());
    }
}
