//! What every daemon's `main` and background driver repeat, written once:
//! logging plus the configuration file at start, waiting for a stop
//! signal, and the "subscribe, then run a pass on each event or timer
//! tick under an action scope" loop of the reconcilers.

use crate::client::{Event, RouterClient};
use crate::config::ConfigError;
use crate::{action, telemetry, Config};
use std::future::Future;
use std::path::Path;
use std::time::Duration;
use tracing::Instrument;

/// Starts logging as `name` (journald on the appliance, text on a
/// terminal) and loads the configuration (`path`, else `$DUPLEX_CONFIG`,
/// else `/etc/duplex/duplex.toml`).
pub fn init(name: &str, path: Option<&Path>) -> Result<Config, ConfigError> {
    telemetry::init(name);
    Config::load(path)
}

/// Waits for SIGTERM or SIGINT.
pub async fn wait_for_stop() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}

/// Why a driver pass runs.
#[derive(Debug, Clone)]
pub enum Trigger {
    /// An event of one of the subscribed topics.
    Event(Event),
    /// The backstop timer.
    Timer,
}

impl Trigger {
    /// A short label for logs: the topic, or `interval`.
    pub fn label(&self) -> &str {
        match self {
            Trigger::Event(e) => &e.topic,
            Trigger::Timer => "interval",
        }
    }
}

/// Subscribes to `topics` (retrying every second until the router
/// answers), then runs `pass` for every event, under the event's action_id
/// so one admin action is traceable into the pass, and every `every` (if
/// set) under a fresh action_id. Each pass runs in a span named `driver`
/// with `what`, the action_id and the trigger. Never returns.
pub async fn on_events_or_timer<F, Fut>(
    router: RouterClient,
    topics: &[&str],
    every: Option<Duration>,
    what: &'static str,
    mut pass: F,
) where
    F: FnMut(Trigger) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut sub = loop {
        match router.subscribe(topics).await {
            Ok(s) => break s,
            Err(e) => {
                tracing::warn!(error = %e, ?topics, what, "cannot subscribe; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    // Without a backstop the timer is never polled.
    let mut tick = tokio::time::interval(every.unwrap_or(Duration::from_secs(3600)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        let (id, trigger) = tokio::select! {
            ev = sub.next() => (
                ev.action_id.clone().unwrap_or_else(action::new_id),
                Trigger::Event(ev),
            ),
            _ = tick.tick(), if every.is_some() => (action::new_id(), Trigger::Timer),
        };
        let span = tracing::info_span!("driver", what, action_id = %id, trigger = trigger.label());
        action::scope(id, pass(trigger)).instrument(span).await;
    }
}
