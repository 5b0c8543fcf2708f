//! The action_id: one id per admin action or failover, carried by every
//! message and every log line that belongs to it.
//!
//! Handlers run inside [`scope`], which makes the id the *current* action:
//! [`current`] returns it, and the router client stamps it on every call made
//! while the handler runs, so nested calls (service A calls service B) carry
//! the same id without passing it by hand.

use std::future::Future;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

tokio::task_local! {
    static CURRENT: String;
}

/// A new action id: 16 lowercase hex digits, a random per-process prefix
/// and a counter. Unique across processes and restarts for tracing purposes,
/// and cheap: the router makes one for every call that arrives without one.
pub fn new_id() -> String {
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut b = [0u8; 4];
        // Without OS randomness, fall back to time and pid: still distinct
        // between processes, which is all a trace needs.
        if getrandom::getrandom(&mut b).is_err() {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or_default();
            return nanos ^ std::process::id().rotate_left(16);
        }
        u32::from_be_bytes(b)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:08x}{n:08x}")
}

/// The action id of the task currently running, if it runs inside [`scope`].
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

/// Runs `fut` with `action_id` as the current action.
pub async fn scope<F: Future>(action_id: String, fut: F) -> F::Output {
    CURRENT.scope(action_id, fut).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn scope_sets_and_nested_tasks_can_inherit_explicitly() {
        assert_eq!(current(), None);
        let id = new_id();
        assert_eq!(id.len(), 16);
        assert!(crate::rpc::valid_action_id(&id));
        let seen = scope(id.clone(), async { current() }).await;
        assert_eq!(seen, Some(id));
        assert_ne!(new_id(), new_id());
    }
}
