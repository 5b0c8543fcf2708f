//! The recent-actions log: a ring buffer of every routed message, so one
//! action can be followed through services and controllers.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// One routed message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionRecord {
    /// When the call arrived (ms since the epoch).
    pub time_ms: u64,
    /// The controller whose router recorded it.
    pub controller: String,
    /// The action.
    pub action_id: String,
    /// The method.
    pub method: String,
    /// Who called.
    pub caller: String,
    /// Who answered (a service, `router`, or `peer:B`).
    pub callee: String,
    /// How long it took, in microseconds.
    pub duration_us: u64,
    /// `ok` or the error kind.
    pub result: String,
}

/// A bounded log; the oldest entries fall off.
#[derive(Debug)]
pub struct ActionLog {
    cap: usize,
    entries: VecDeque<ActionRecord>,
}

impl ActionLog {
    /// A log keeping at most `cap` entries.
    pub fn new(cap: usize) -> Self {
        ActionLog {
            cap: cap.max(1),
            entries: VecDeque::new(),
        }
    }

    /// Appends a record.
    pub fn push(&mut self, r: ActionRecord) {
        if self.entries.len() == self.cap {
            self.entries.pop_front();
        }
        self.entries.push_back(r);
    }

    /// The newest `limit` records, optionally of one action, oldest first.
    pub fn query(&self, action_id: Option<&str>, limit: usize) -> Vec<ActionRecord> {
        let mut out: Vec<ActionRecord> = self
            .entries
            .iter()
            .rev()
            .filter(|r| action_id.is_none_or(|a| r.action_id == a))
            .take(limit)
            .cloned()
            .collect();
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(a: &str, m: &str) -> ActionRecord {
        ActionRecord {
            time_ms: 0,
            controller: "A".into(),
            action_id: a.into(),
            method: m.into(),
            caller: "c".into(),
            callee: "s".into(),
            duration_us: 1,
            result: "ok".into(),
        }
    }

    #[test]
    fn ring_drops_oldest_and_filters() {
        let mut l = ActionLog::new(3);
        for (a, m) in [("x", "a.1"), ("y", "a.2"), ("x", "a.3"), ("x", "a.4")] {
            l.push(rec(a, m));
        }
        let all: Vec<String> = l.query(None, 10).into_iter().map(|r| r.method).collect();
        assert_eq!(all, ["a.2", "a.3", "a.4"]);
        let xs: Vec<String> = l
            .query(Some("x"), 10)
            .into_iter()
            .map(|r| r.method)
            .collect();
        assert_eq!(xs, ["a.3", "a.4"]);
        assert_eq!(l.query(None, 1)[0].method, "a.4");
    }
}
