//! Priority for the operations on a takeover's path: while one waits for
//! the operation lock, a background reconcile that is only reading gives
//! the lock up (see `Manager::reconcile_in_background`).

use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Notify;

/// How many urgent operations wait, and a wake-up for readers that give way.
#[derive(Default)]
pub(super) struct Urgent {
    waiting: AtomicUsize,
    notify: Notify,
}

/// One urgent operation waiting; dropped once it holds the lock (or gave up).
pub(super) struct Waiting<'a>(&'a Urgent);

impl Urgent {
    /// Marks an urgent operation as waiting until the guard is dropped.
    pub(super) fn enter(&self) -> Waiting<'_> {
        self.waiting.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
        Waiting(self)
    }

    /// Resolves once an urgent operation waits (at once if one does).
    pub(super) async fn pending(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the check, so an `enter` in between wakes it.
            notified.as_mut().enable();
            if self.waiting.load(Ordering::SeqCst) > 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn pending_resolves_when_an_urgent_operation_waits_and_not_before() {
        let u = Urgent::default();
        let quiet = tokio::time::timeout(Duration::from_millis(50), u.pending()).await;
        assert!(quiet.is_err(), "nothing waits: pending must not resolve");
        let (r, ()) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(5), u.pending()),
            async {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let w = u.enter();
                tokio::time::sleep(Duration::from_millis(20)).await;
                drop(w);
            }
        );
        assert!(r.is_ok(), "an urgent operation waited: pending resolves");
        let w = u.enter();
        let now = tokio::time::timeout(Duration::from_millis(50), u.pending()).await;
        assert!(now.is_ok(), "one already waits: at once");
        drop(w);
        let after = tokio::time::timeout(Duration::from_millis(50), u.pending()).await;
        assert!(after.is_err(), "its guard dropped: quiet again");
    }
}
