//! `duplexctl audit`: the audit log as a table.

use crate::cluster::utc;
use duplex_api::methods::config::{AuditEntry, AuditResult};
use std::fmt::Write as _;

/// Who made the call: the management user and address, else the caller.
fn who(e: &AuditEntry) -> String {
    match (&e.record.user, &e.record.address) {
        (Some(u), Some(a)) => format!("{u}@{a}"),
        (Some(u), None) => u.clone(),
        _ => e.record.caller.clone(),
    }
}

/// One line per entry, newest first, and what has not reached the partner.
pub fn table(r: &AuditResult) -> String {
    let mut out = String::new();
    if r.entries.is_empty() {
        out.push_str("no audit entries\n");
    } else {
        let w = r
            .entries
            .iter()
            .map(|e| who(e).len())
            .max()
            .unwrap_or(3)
            .max(3);
        let m = r
            .entries
            .iter()
            .map(|e| e.record.method.len())
            .max()
            .unwrap_or(6)
            .max(6);
        let _ = writeln!(
            out,
            "{:<24}  {:<8}  {:<w$}  {:<m$}  {:<16}  ACTION",
            "TIME", "ON", "WHO", "METHOD", "RESULT"
        );
        for e in &r.entries {
            let _ = writeln!(
                out,
                "{:<24}  {:<8}  {:<w$}  {:<m$}  {:<16}  {}",
                utc(e.record.time_ms),
                format!("{}#{}", e.controller, e.seq),
                who(e),
                e.record.method,
                e.record.result,
                e.record.action_id
            );
            if let Some(err) = &e.record.error {
                let _ = writeln!(out, "{:<24}  {err}", "");
            }
        }
    }
    if r.unreplicated > 0 {
        let _ = writeln!(
            out,
            "{} entries of this controller have not reached the partner yet",
            r.unreplicated
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use duplex_api::methods::config::AuditRecord;
    use serde_json::json;

    #[test]
    fn shows_who_what_and_the_error() {
        let e = |seq, user: Option<&str>, result: &str, error: Option<&str>| AuditEntry {
            controller: "A".into(),
            seq,
            record: AuditRecord {
                time_ms: 1_764_000_000_000,
                action_id: format!("act{seq}"),
                method: "pool.create".into(),
                caller: "client(pid=7)".into(),
                user: user.map(str::to_string),
                address: user.map(|_| "192.0.2.7".to_string()),
                params: json!({}),
                result: result.into(),
                error: error.map(str::to_string),
            },
        };
        let t = table(&AuditResult {
            entries: vec![
                e(2, Some("ann"), "conflict", Some("pool p1 exists")),
                e(1, None, "ok", None),
            ],
            unreplicated: 1,
        });
        assert!(t.contains("ann@192.0.2.7"), "{t}");
        assert!(t.contains("client(pid=7)"), "{t}");
        assert!(t.contains("A#2"), "{t}");
        assert!(t.contains("pool p1 exists"), "{t}");
        assert!(t.contains("2025-11-24"), "{t}");
        assert!(t.contains("1 entries of this controller"), "{t}");
    }
}
