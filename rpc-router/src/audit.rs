//! Which calls the router records for the audit log, and the record it
//! makes (pure). The router never interprets parameters; for the audit it
//! only copies them, with secret-looking members redacted by name
//! ([`duplex_api::redact`]) and large ones cut to a size note.
//!
//! The router is where every administrator's call enters a controller
//! (duplexctl on its socket, the management endpoint on behalf of a
//! logged-in user), so it is the one place that sees them all. It hands
//! the records to config-keeper (`config.audit_append`) from a bounded
//! queue off the call path: a takeover's calls never wait for the audit.
//! Every record taken off the queue is kept in a spool file ([`Spool`],
//! synced) until config-keeper took it, so a router that dies meanwhile
//! sends it again at its next start (config-keeper keeps a record sent
//! twice once).

use duplex_api::catalogue::{self, Access, Audience};
use duplex_api::methods::config::AuditRecord;
use duplex_api::model::Role;
use duplex_services::rpc::{CallUser, RpcError};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Records queued for config-keeper at most; more are counted as dropped
/// (and the count recorded) rather than delaying calls.
pub const QUEUE: usize = 4_096;
/// Records per `config.audit_append`.
pub const BATCH: usize = 32;
/// Records held in the spool at most (while config-keeper does not take
/// them); more are counted as dropped.
pub const SPOOL_MAX: usize = 4_096;
/// Parameters larger than this (as JSON) are recorded as their size only,
/// so a batch stays far below the message limit.
pub const MAX_PARAMS_BYTES: usize = 16 * 1024;
/// How the router's local callers that are not registered services are
/// named: duplexctl, the management endpoint, scripts.
pub const CLIENT_PREFIX: &str = "client(";

/// Is a call of `method` by `caller` (as the router named it) on the
/// local socket an administrator's write to record? Services' own calls
/// (a takeover's steps, reconciles) and the partner's are not: the
/// partner's router recorded its own administrator's call.
pub fn audited(method: &str, caller: &str) -> bool {
    if !caller.starts_with(CLIENT_PREFIX) || method == "config.audit_append" {
        return false;
    }
    match catalogue::lookup(method) {
        Some(m) => {
            m.access == Access::Write
                && m.audience != Audience::Peer
                && !matches!(catalogue::namespace_of(method), "router" | "event")
        }
        // Unknown methods fail at routing; nothing changed.
        None => false,
    }
}

/// The record of a finished call.
pub fn record(
    time_ms: u64,
    action_id: &str,
    method: &str,
    caller: &str,
    user: Option<&CallUser>,
    mut params: Value,
    result: &Result<Value, RpcError>,
) -> AuditRecord {
    // Every secret, whatever the role: every user may read the audit log.
    duplex_api::redact::redact(&mut params, Role::ReadOnly);
    let size = params.to_string().len();
    if size > MAX_PARAMS_BYTES {
        params = json!({ "omitted": format!("{size} bytes of parameters (over the audit's {MAX_PARAMS_BYTES}-byte limit)") });
    }
    let (outcome, error) = match result {
        Ok(_) => ("ok".to_string(), None),
        Err(e) => (
            e.kind()
                .map_or_else(|| e.code.to_string(), |k| k.kind().to_string()),
            Some(e.message.clone()),
        ),
    };
    AuditRecord {
        time_ms,
        action_id: action_id.to_string(),
        method: method.to_string(),
        caller: caller.to_string(),
        user: user.map(|u| u.name.clone()),
        address: user.and_then(|u| u.address.clone()),
        params,
        result: outcome,
        error,
    }
}

/// The records not yet taken by config-keeper, one JSON line each, in the
/// router's state directory (at most [`SPOOL_MAX`]).
pub struct Spool {
    path: PathBuf,
}

impl Spool {
    /// The spool in `state_dir`.
    pub fn new(state_dir: &Path) -> Spool {
        Spool {
            path: state_dir.join("router-audit.spool"),
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the previous run left (at most [`SPOOL_MAX`]; damaged lines,
    /// such as one cut by a crash, are skipped).
    pub fn load(&self) -> Vec<AuditRecord> {
        let Ok(text) = std::fs::read_to_string(&self.path) else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .take(SPOOL_MAX)
            .collect()
    }

    fn lines(records: &[AuditRecord]) -> std::io::Result<String> {
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(r).map_err(std::io::Error::other)?);
            text.push('\n');
        }
        Ok(text)
    }

    /// Adds `records` to the spool, on disk when it returns.
    pub fn append(&self, records: &[AuditRecord]) -> std::io::Result<()> {
        let text = Self::lines(records)?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        f.write_all(text.as_bytes())?;
        f.sync_data()
    }

    /// Keeps only `records` (the ones config-keeper did not take yet):
    /// written beside and renamed over, so a crash leaves the old spool or
    /// the new one; none at all when `records` is empty.
    pub fn replace(&self, records: &[AuditRecord]) -> std::io::Result<()> {
        if records.is_empty() {
            return match std::fs::remove_file(&self.path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            };
        }
        let tmp = self.path.with_extension("spool.tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(Self::lines(records)?.as_bytes())?;
        f.sync_data()?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use duplex_services::rpc::ErrorCode;

    #[test]
    fn only_administrators_writes_are_audited() {
        assert!(audited("pool.create", "client(pid=42)"));
        assert!(audited("config.apply", "client(pid=42)"));
        assert!(audited("cluster.failover", "client(pid=42)"));
        // Reads, services' calls, peer and router methods are not.
        assert!(!audited("pool.list", "client(pid=42)"));
        assert!(!audited("config.apply", "duplex-heartbeat"));
        assert!(!audited("config.repl_push", "client(pid=42)"));
        assert!(!audited("router.register", "client(pid=42)"));
        assert!(!audited("config.audit_append", "client(pid=42)"));
        assert!(!audited("pool.frobnicate", "client(pid=42)"));
    }

    #[test]
    fn records_redact_secrets_cut_large_params_and_keep_the_error() {
        let user = CallUser {
            name: "ann".into(),
            role: Role::Admin,
            address: Some("192.0.2.7".into()),
        };
        let params = json!({"changes": [{"op": "upsert", "kind": "user",
            "object": {"name": "bob", "password": "hunter2"}}]});
        let err: Result<Value, RpcError> = Err(RpcError::new(
            ErrorCode::ConfigLocked,
            "configuration is locked: x",
        ));
        let r = record(
            5,
            "a1",
            "config.apply",
            "client(pid=1)",
            Some(&user),
            params,
            &err,
        );
        assert_eq!(r.params["changes"][0]["object"]["password"], "(redacted)");
        assert_eq!(r.params["changes"][0]["object"]["name"], "bob");
        assert_eq!(r.user.as_deref(), Some("ann"));
        assert_eq!(r.address.as_deref(), Some("192.0.2.7"));
        assert_eq!(r.result, "config_locked");
        assert_eq!(r.error.as_deref(), Some("configuration is locked: x"));
        let big = json!({"blob": "x".repeat(MAX_PARAMS_BYTES)});
        let r = record(
            5,
            "a2",
            "config.apply",
            "client(pid=1)",
            None,
            big,
            &Ok(json!({})),
        );
        assert!(r.params["omitted"]
            .as_str()
            .unwrap()
            .contains("bytes of parameters"));
        assert_eq!(r.result, "ok");
        assert_eq!(r.error, None);
    }

    #[test]
    fn the_spool_keeps_a_batch_across_a_restart_and_skips_a_torn_line() {
        let d = tempfile::tempdir().unwrap();
        let sp = Spool::new(d.path());
        assert!(sp.load().is_empty());
        let r = |t: u64| {
            record(
                t,
                "a1",
                "pool.create",
                "client(pid=1)",
                None,
                json!({"name": "p"}),
                &Ok(json!({})),
            )
        };
        sp.append(&[r(1), r(2)]).unwrap();
        sp.append(&[r(3)]).unwrap();
        // A crash cut the last line short.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(sp.path())
            .unwrap();
        f.write_all(b"{\"time_ms\": 4, \"act").unwrap();
        let again = Spool::new(d.path()).load();
        assert_eq!(
            again.iter().map(|r| r.time_ms).collect::<Vec<_>>(),
            [1, 2, 3]
        );
        sp.replace(&[]).unwrap();
        assert!(sp.load().is_empty());
        sp.replace(&[]).unwrap();
    }

    #[test]
    fn the_spool_keeps_what_config_keeper_did_not_take() {
        let d = tempfile::tempdir().unwrap();
        let spool = Spool::new(d.path());
        let rec = |id: &str| {
            record(
                1,
                id,
                "pool.create",
                "client(pid=1)",
                None,
                json!({}),
                &Ok(json!({})),
            )
        };
        spool.append(&[rec("a"), rec("b"), rec("c")]).unwrap();
        spool.replace(&spool.load()[2..]).unwrap();
        spool.append(&[rec("d")]).unwrap();
        let ids: Vec<String> = spool.load().into_iter().map(|r| r.action_id).collect();
        assert_eq!(ids, ["c", "d"]);
    }
}
