//! Health: thin pool usage thresholds and RAID state.
//!
//! A full thin pool is an outage (every volume in it stops taking writes),
//! so usage raises alerts at 80 % and 90 % and new volumes are refused from
//! 95 % on.

use serde::Serialize;

/// Usage (percent) from which a warning is raised.
pub const WARN_PERCENT: f64 = 80.0;
/// Usage from which a critical alert is raised.
pub const CRITICAL_PERCENT: f64 = 90.0;
/// Usage from which new volumes, snapshots, clones and grows are refused.
pub const REFUSE_PERCENT: f64 = 95.0;

/// How full something is, in alert terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Usage {
    /// Below 80 %.
    Ok,
    /// 80 % or more.
    Warning,
    /// 90 % or more.
    Critical,
    /// 95 % or more: new volumes are refused.
    Full,
}

/// The usage level of `percent`.
pub fn usage(percent: f64) -> Usage {
    if percent >= REFUSE_PERCENT {
        Usage::Full
    } else if percent >= CRITICAL_PERCENT {
        Usage::Critical
    } else if percent >= WARN_PERCENT {
        Usage::Warning
    } else {
        Usage::Ok
    }
}

/// The state of a pool's redundancy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum RaidState {
    /// No redundancy (linear).
    None,
    /// All copies present and in sync.
    Healthy,
    /// Initial synchronisation or rebuild under way.
    Syncing {
        /// Percent done.
        percent: f64,
    },
    /// A disk is missing or failed: one more failure may lose data.
    Degraded {
        /// What LVM says.
        detail: String,
    },
}

/// Derives the RAID state from what LVM reports for the data LV: its
/// health (`lv_health_status`), sync percent and whether a PV is missing.
pub fn raid_state(
    redundant: bool,
    health: &str,
    sync_percent: Option<f64>,
    missing_pv: bool,
) -> RaidState {
    if !redundant {
        return RaidState::None;
    }
    if missing_pv || matches!(health, "partial" | "refresh needed") {
        let detail = if missing_pv && health.is_empty() {
            "a disk is missing".to_string()
        } else if health.is_empty() {
            "degraded".to_string()
        } else {
            health.to_string()
        };
        return RaidState::Degraded { detail };
    }
    match sync_percent {
        Some(p) if p < 100.0 => RaidState::Syncing { percent: p },
        _ => RaidState::Healthy,
    }
}

/// An alert the health check raises (published on `alert`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// `warning` or `critical`.
    pub severity: &'static str,
    /// The pool.
    pub pool: String,
    /// A stable machine name (`thin_data_usage`, `raid_degraded`...).
    pub kind: &'static str,
    /// One sentence.
    pub message: String,
}

/// Alerts for a pool's thin usage and RAID state.
pub fn alerts(pool: &str, data_percent: f64, meta_percent: f64, raid: &RaidState) -> Vec<Alert> {
    let mut out = Vec::new();
    for (kind, what, p) in [
        ("thin_data_usage", "data", data_percent),
        ("thin_metadata_usage", "metadata", meta_percent),
    ] {
        let (severity, tail) = match usage(p) {
            Usage::Ok => continue,
            Usage::Warning => ("warning", "above 80 %"),
            Usage::Critical => ("critical", "above 90 %"),
            Usage::Full => ("critical", "above 95 %: new volumes are refused"),
        };
        out.push(Alert {
            severity,
            pool: pool.into(),
            kind,
            message: format!("pool {pool}: thin pool {what} usage {p:.1} % is {tail}"),
        });
    }
    if let RaidState::Degraded { detail } = raid {
        out.push(Alert {
            severity: "critical",
            pool: pool.into(),
            kind: "raid_degraded",
            message: format!("pool {pool}: RAID degraded ({detail}); rebuild onto a spare"),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds() {
        assert_eq!(usage(79.9), Usage::Ok);
        assert_eq!(usage(80.0), Usage::Warning);
        assert_eq!(usage(90.0), Usage::Critical);
        assert_eq!(usage(94.99), Usage::Critical);
        assert_eq!(usage(95.0), Usage::Full);
        assert!(alerts("p", 10.0, 10.0, &RaidState::Healthy).is_empty());
        let a = alerts("p", 85.0, 96.0, &RaidState::Healthy);
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].severity, "warning");
        assert!(a[1].message.contains("refused"));
    }

    #[test]
    fn raid_states() {
        assert_eq!(raid_state(false, "", None, false), RaidState::None);
        assert_eq!(raid_state(true, "", Some(100.0), false), RaidState::Healthy);
        assert_eq!(
            raid_state(true, "", Some(42.5), false),
            RaidState::Syncing { percent: 42.5 }
        );
        assert!(matches!(
            raid_state(true, "partial", Some(100.0), false),
            RaidState::Degraded { .. }
        ));
        assert!(matches!(
            raid_state(true, "", Some(100.0), true),
            RaidState::Degraded { .. }
        ));
        assert_eq!(
            alerts("p", 0.0, 0.0, &raid_state(true, "", None, true))[0].kind,
            "raid_degraded"
        );
    }
}
