//! The action_id: one id per admin action or failover, carried by every
//! message and every log line that belongs to it.
//!
//! Handlers run inside [`scope`], which makes the id the *current* action:
//! [`current`] returns it, and the router client stamps it on every call made
//! while the handler runs, so nested calls (service A calls service B) carry
//! the same id without passing it by hand.

use std::future::Future;

tokio::task_local! {
    static CURRENT: String;
}

/// A new random action id: 16 lowercase hex digits.
pub fn new_id() -> String {
    let mut bytes = [0u8; 8];
    // getrandom only fails when the OS has no entropy source at all; a
    // time-based id is still unique enough for tracing in that case.
    if getrandom::getrandom(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes = nanos.to_be_bytes()[8..].try_into().unwrap_or_default();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
