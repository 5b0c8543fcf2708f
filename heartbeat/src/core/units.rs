//! The duplex services' systemd units as heartbeat reports them: each
//! unit's state and restart count, and the alerts a failed unit or a
//! restart loop raises (pure; the states come from systemd through the
//! `Units` backend).
//!
//! These are information and early warnings, not health: a takeover is
//! decided on serving paths (targets answering, front-end links), because
//! a unit can be active while its daemon hangs, and systemd restarts a
//! crashed one within a second.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// The units heartbeat watches (its own included: a restart of heartbeat
/// shows in the partner's view through the interconnect, and here once it
/// runs again).
pub const WATCHED: &[&str] = &[
    "duplex-router.service",
    "duplex-config-keeper.service",
    "duplex-pool-manager.service",
    "duplex-targets.service",
    "duplex-heartbeat.service",
    "duplex-mgmt.service",
];

/// Restarts within [`LOOP_WINDOW_MS`] that make a restart loop.
pub const LOOP_RESTARTS: u32 = 3;
/// The window of [`LOOP_RESTARTS`], ms.
pub const LOOP_WINDOW_MS: u64 = 120_000;

/// One unit as systemd reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnitState {
    /// The unit's name.
    pub name: String,
    /// `ActiveState`: active, reloading, inactive, failed, activating,
    /// deactivating; `not-found` when systemd has no such unit loaded.
    pub active: String,
    /// `SubState`: running, exited, dead, auto-restart...
    pub sub: String,
    /// `NRestarts`: automatic restarts since the unit was last started
    /// by hand.
    pub restarts: u32,
}

/// What a watched unit did that deserves an alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitAlert {
    /// The unit entered `failed` (systemd gave up restarting it).
    Failed {
        /// The unit.
        unit: String,
    },
    /// The unit restarted this many times within [`LOOP_WINDOW_MS`].
    RestartLoop {
        /// The unit.
        unit: String,
        /// Restarts in the window.
        restarts: u32,
    },
    /// A unit that had failed or looped runs again.
    Recovered {
        /// The unit.
        unit: String,
    },
}

impl UnitAlert {
    /// The alert's text.
    pub fn message(&self) -> String {
        match self {
            UnitAlert::Failed { unit } => {
                format!("{unit} failed: systemd stopped restarting it")
            }
            UnitAlert::RestartLoop { unit, restarts } => format!(
                "{unit} restarted {restarts} times in {} s: it may be crash-looping",
                LOOP_WINDOW_MS / 1000
            ),
            UnitAlert::Recovered { unit } => format!("{unit} runs again"),
        }
    }

    /// True for the alerts that are critical (the unit does not run).
    pub fn critical(&self) -> bool {
        matches!(self, UnitAlert::Failed { .. })
    }
}

#[derive(Debug, Default)]
struct Seen {
    restarts: u32,
    /// (time, restart count) samples within the window.
    history: VecDeque<(u64, u32)>,
    failed: bool,
    looping: bool,
}

/// Follows the units from sample to sample.
#[derive(Debug, Default)]
pub struct UnitWatch {
    seen: BTreeMap<String, Seen>,
}

impl UnitWatch {
    /// Takes a sample at `now_ms` (a monotonic clock); the alerts it
    /// raises, each once per episode.
    pub fn observe(&mut self, now_ms: u64, states: &[UnitState]) -> Vec<UnitAlert> {
        let mut out = Vec::new();
        for u in states {
            let s = self.seen.entry(u.name.clone()).or_default();
            // A count that went down: the unit was restarted by hand (or
            // systemd reloaded), so the window starts again.
            if u.restarts < s.restarts {
                s.history.clear();
            }
            s.restarts = u.restarts;
            s.history.push_back((now_ms, u.restarts));
            while s
                .history
                .front()
                .is_some_and(|(t, _)| now_ms.saturating_sub(*t) > LOOP_WINDOW_MS)
            {
                s.history.pop_front();
            }
            let first = s.history.front().map_or(u.restarts, |(_, n)| *n);
            let in_window = u.restarts.saturating_sub(first);
            let failed = u.active == "failed";
            if failed && !s.failed {
                out.push(UnitAlert::Failed {
                    unit: u.name.clone(),
                });
            }
            let looping = in_window >= LOOP_RESTARTS;
            if looping && !s.looping && !failed {
                out.push(UnitAlert::RestartLoop {
                    unit: u.name.clone(),
                    restarts: in_window,
                });
            }
            let running = u.active == "active" && !looping;
            if running && (s.failed || s.looping) {
                out.push(UnitAlert::Recovered {
                    unit: u.name.clone(),
                });
            }
            s.failed = failed;
            s.looping = looping;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(active: &str, restarts: u32) -> Vec<UnitState> {
        vec![UnitState {
            name: "duplex-targets.service".into(),
            active: active.into(),
            sub: String::new(),
            restarts,
        }]
    }

    #[test]
    fn one_restart_is_quiet_a_loop_and_a_failure_alert_once_and_recovery_is_said() {
        let mut w = UnitWatch::default();
        assert!(w.observe(0, &u("active", 0)).is_empty());
        // systemd restarted it once: nothing to say.
        assert!(w.observe(5_000, &u("active", 1)).is_empty());
        // Two more within the window: a loop, said once.
        assert!(w.observe(10_000, &u("activating", 2)).is_empty());
        let a = w.observe(15_000, &u("activating", 3));
        assert_eq!(
            a,
            vec![UnitAlert::RestartLoop {
                unit: "duplex-targets.service".into(),
                restarts: 3
            }]
        );
        assert!(w.observe(20_000, &u("activating", 3)).is_empty());
        // systemd gives up: failed, critical, once.
        let a = w.observe(25_000, &u("failed", 3));
        assert!(a.len() == 1 && a[0].critical(), "{a:?}");
        assert!(w.observe(30_000, &u("failed", 3)).is_empty());
        // The admin starts it by hand (the count starts again): recovered.
        let a = w.observe(35_000, &u("active", 0));
        assert_eq!(
            a,
            vec![UnitAlert::Recovered {
                unit: "duplex-targets.service".into()
            }]
        );
        assert!(w.observe(40_000, &u("active", 0)).is_empty());
        // Restarts spread wider than the window are no loop.
        let mut w = UnitWatch::default();
        for (i, t) in [0u64, 100_000, 200_000, 300_000].iter().enumerate() {
            let n = u32::try_from(i).unwrap();
            assert!(w.observe(*t, &u("active", n)).is_empty(), "at {t}");
        }
    }
}
