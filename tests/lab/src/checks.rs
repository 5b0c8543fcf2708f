//! A scenario's checks and its outcome, shared by the smoke scenario
//! ([`crate::scenario`]) and the failover scenarios ([`crate::failover`]):
//! every check is logged as it is made and lands in the report, and the
//! invariant monitor's verdict is one more check.

use crate::monitor::MonitorReport;
use serde_json::{json, Value};
use tracing::info;

/// One scenario's result: figures and checks, as JSON.
#[derive(Debug)]
pub struct Outcome {
    /// Figures and checks (printed as JSON).
    pub report: Value,
    /// True when every check held.
    pub ok: bool,
}

/// The name of the check the invariant monitor's verdict becomes.
pub const MONITOR_CHECK: &str = "invariant_monitor_no_violation";

impl Outcome {
    /// Adds what the invariant monitor saw while the scenario ran: the
    /// report under `monitor` and its verdict as one more check.
    pub fn add_monitor(&mut self, m: &MonitorReport) {
        let check = monitor_check(m);
        self.ok &= m.ok;
        if let Some(list) = self.report["checks"].as_array_mut() {
            list.push(check);
        } else {
            self.report["checks"] = json!([check]);
        }
        self.report["monitor"] = json!(m);
        self.report["ok"] = json!(self.ok);
    }
}

/// The monitor's verdict as a check (logged).
fn monitor_check(m: &MonitorReport) -> Value {
    let detail = format!(
        "{} violations, samples {:?}, first {:?}",
        m.violations, m.samples, m.first
    );
    log_check(MONITOR_CHECK, m.ok, &detail);
    json!({ "check": MONITOR_CHECK, "ok": m.ok, "detail": detail })
}

fn log_check(name: &str, pass: bool, detail: &str) {
    info!(
        "check {name}: {} ({detail})",
        if pass { "ok" } else { "FAILED" }
    );
}

/// The checks of one scenario.
#[derive(Debug)]
pub struct Checks {
    /// Each check as `{check, ok, detail}`.
    pub list: Vec<Value>,
    /// True while every check held.
    pub ok: bool,
}

impl Default for Checks {
    fn default() -> Self {
        Self::new()
    }
}

impl Checks {
    /// No checks yet.
    pub fn new() -> Self {
        Self {
            list: Vec::new(),
            ok: true,
        }
    }

    /// Records one check.
    pub fn check(&mut self, name: &str, pass: bool, detail: impl Into<String>) {
        let detail = detail.into();
        self.ok &= pass;
        log_check(name, pass, &detail);
        self.list
            .push(json!({ "check": name, "ok": pass, "detail": detail }));
    }

    /// Records the invariant monitor's verdict as a check.
    pub fn monitor(&mut self, m: &MonitorReport) {
        self.ok &= m.ok;
        self.list.push(monitor_check(m));
    }

    /// The scenario's outcome: `fields` with its name, the verdict and the
    /// checks added.
    pub fn outcome(self, scenario: &str, mut fields: Value) -> Outcome {
        fields["scenario"] = json!(scenario);
        fields["ok"] = json!(self.ok);
        fields["checks"] = json!(self.list);
        Outcome {
            report: fields,
            ok: self.ok,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(violations: usize) -> MonitorReport {
        MonitorReport {
            violations,
            ok: violations == 0,
            ..MonitorReport::default()
        }
    }

    #[test]
    fn a_monitor_violation_fails_an_outcome_whose_checks_passed() {
        let mut c = Checks::new();
        c.check("owner_moved", true, "B");
        let mut o = c.outcome("kill", json!({"victim": "A"}));
        assert!(o.ok);
        o.add_monitor(&report(2));
        assert!(!o.ok);
        assert_eq!(o.report["ok"], json!(false));
        assert_eq!(o.report["monitor"]["violations"], json!(2));
        let names: Vec<&str> = o.report["checks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["check"].as_str())
            .collect();
        assert_eq!(names, ["owner_moved", MONITOR_CHECK]);
        assert_eq!(o.report["victim"], json!("A"));
    }

    #[test]
    fn a_clean_monitor_keeps_the_verdict() {
        let mut c = Checks::new();
        c.monitor(&report(0));
        c.check("failed_one", false, "x");
        let mut o = c.outcome("planned", json!({}));
        assert!(!o.ok);
        o.add_monitor(&report(0));
        assert!(!o.ok, "a clean monitor never turns a failure into a pass");
        assert_eq!(o.report["checks"].as_array().map(Vec::len), Some(3));
    }
}
