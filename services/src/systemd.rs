//! `sd_notify`: READY, STOPPING, STATUS and the watchdog ping loop.
//! Every call is a no-op when the process was not started by systemd.

use std::time::Duration;

/// Tells systemd the service is ready (after it registered with the router).
pub fn ready(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

/// Tells systemd the service is stopping.
pub fn stopping() {
    notify(&[sd_notify::NotifyState::Stopping]);
}

/// Sets the free-form status line shown by `systemctl status`.
pub fn status(status: &str) {
    notify(&[sd_notify::NotifyState::Status(status)]);
}

fn notify(state: &[sd_notify::NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

/// The watchdog interval systemd asked for, if any. As in libsystemd's
/// `sd_watchdog_enabled`: `WATCHDOG_USEC` enables it, and a `WATCHDOG_PID`
/// naming another process disables it.
pub fn watchdog_interval() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok()? != std::process::id() {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Pings the systemd watchdog at half its interval while `alive()` says the
/// service is healthy; a hung event loop stops the pings and systemd restarts
/// the service. Returns `None` when no watchdog is configured.
pub fn spawn_watchdog<F>(alive: F) -> Option<tokio::task::JoinHandle<()>>
where
    F: Fn() -> bool + Send + 'static,
{
    let interval = watchdog_interval()? / 2;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        loop {
            tick.tick().await;
            if alive() {
                notify(&[sd_notify::NotifyState::Watchdog]);
            }
        }
    }))
}
