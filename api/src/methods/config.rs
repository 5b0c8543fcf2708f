//! The `config` namespace (config-keeper): params and results.

pub use super::NoParams;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// `config.get` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetParams {
    /// One kind only (`pool`, `volume`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// With `kind`: one object by key (name, id or WWN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Answer one page (about half the router's message limit) with
    /// `next` when more follow, so a state of any size can be read;
    /// [`get_all`] reads every page.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub page: bool,
    /// With `page`: continue after this cursor (the `next` of the page
    /// before).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// `config.get` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct GetResult {
    /// The database version.
    pub version: u64,
    /// Section versions: this controller's own, and the partner's as
    /// applied here.
    pub sections: BTreeMap<String, u64>,
    /// The desired state (all kinds, one kind, or `{kind: object}`), in the
    /// wire form of [`crate::model::Config`]; with `page`, the page's
    /// objects only.
    pub config: Value,
    /// With `page`: the cursor of the next page (absent on the last one).
    /// A page whose `version` differs from the first page's belongs to
    /// another state: read again from the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// How many times [`get_all`] starts again when the state changes while
/// it reads the pages.
pub const GET_ALL_TRIES: u32 = 8;

/// Why [`get_all`] has no state.
#[derive(Debug, thiserror::Error)]
pub enum GetAllError<E> {
    /// A `config.get` call failed.
    #[error("{0}")]
    Call(E),
    /// The state changed during every one of [`GET_ALL_TRIES`] reads.
    #[error("the configuration changed while it was read, {0} times in a row")]
    Unsettled(u32),
    /// A page did not have the shape of a `config.get` result.
    #[error("config.get answered an unreadable page: {0}")]
    Unreadable(String),
}

/// Reads the whole desired state (or one `kind`) page by page with
/// `call` (which sends `config.get` with the params it is given), and
/// answers it as one unpaged `config.get` would, whatever its size. Pages
/// of one read all carry the same version; when the version moves, the
/// read starts again.
pub async fn get_all<E, F, Fut>(
    kind: Option<&str>,
    mut call: F,
) -> Result<GetResult, GetAllError<E>>
where
    F: FnMut(Value) -> Fut,
    Fut: std::future::Future<Output = Result<Value, E>>,
{
    let read = |v: Value| {
        serde_json::from_value::<GetResult>(v).map_err(|e| GetAllError::Unreadable(e.to_string()))
    };
    for _ in 0..GET_ALL_TRIES {
        let params = |after: Option<String>| {
            serde_json::to_value(GetParams {
                kind: kind.map(str::to_string),
                name: None,
                page: true,
                after,
            })
            .unwrap_or_default()
        };
        let mut whole = read(call(params(None)).await.map_err(GetAllError::Call)?)?;
        let mut next = whole.next.take();
        let mut settled = true;
        while let Some(after) = next {
            let page = read(call(params(Some(after))).await.map_err(GetAllError::Call)?)?;
            if page.version != whole.version {
                settled = false;
                break;
            }
            next = page.next;
            let (Value::Object(into), Value::Object(from)) = (&mut whole.config, page.config)
            else {
                return Err(GetAllError::Unreadable(
                    "config is not an object of kinds".into(),
                ));
            };
            for (kind, v) in from {
                match (into.get_mut(&kind), v) {
                    (Some(Value::Array(a)), Value::Array(b)) => a.extend(b),
                    (_, Value::Null) => {}
                    (_, v) => {
                        into.insert(kind, v);
                    }
                }
            }
        }
        if settled {
            return Ok(whole);
        }
    }
    Err(GetAllError::Unsettled(GET_ALL_TRIES))
}

/// `config.apply` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ApplyParams {
    /// The ordered changes (see [`crate::change`]).
    pub changes: Value,
    /// Wait for the partner's acknowledgement.
    #[serde(default)]
    pub sync: bool,
    /// How long `sync` waits, ms (default 5000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// `config.apply` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ApplyResult {
    /// The database version after the commit.
    pub version: u64,
    /// This controller's section version after the commit.
    pub section_version: u64,
    /// Whether anything changed (an identical apply changes nothing).
    pub changed: bool,
    /// Whether the partner acknowledged it (`sync` only).
    pub replicated: bool,
}

/// `config.watch` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WatchResult {
    /// The topic to subscribe to.
    pub topic: String,
    /// The current version.
    pub version: u64,
    /// How to follow changes.
    pub hint: String,
}

/// Paging of `config.history` and `config.events`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PageParams {
    /// Entries after this version (history) or id (events).
    #[serde(default)]
    pub after: u64,
    /// At most this many (capped at 10,000).
    #[serde(default = "default_limit")]
    pub limit: u32,
}

fn default_limit() -> u32 {
    100
}

/// `config.history` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct HistoryResult {
    /// Committed transactions (local version, origin, seq, action_id, ops).
    pub entries: Vec<Value>,
}

/// `config.events` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct EventsResult {
    /// Event log rows.
    pub events: Vec<Value>,
}

/// `config.digest` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct DigestResult {
    /// SHA-256 of the canonical desired state.
    pub digest: String,
    /// The database version it covers.
    pub version: u64,
}

/// `config.lock` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockParams {
    /// Why (shown with every refused change).
    pub reason: String,
}

/// `config.unlock` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UnlockParams {
    /// Why (recorded in the event log).
    pub reason: String,
    /// Lift a lock another caller took (heartbeat's, for one): an
    /// administrator's decision, recorded as forced. Without it only the
    /// lock's owner lifts it.
    #[serde(default)]
    pub force: bool,
}

/// `config.lock` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LockResult {
    /// Always true.
    pub locked: bool,
    /// The lock held now (reason, since, action_id).
    pub lock: Value,
    /// Whether this call took it (false: it was held already).
    pub changed: bool,
}

/// `config.unlock` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct UnlockResult {
    /// Always false.
    pub locked: bool,
    /// Whether this call lifted it.
    pub changed: bool,
}

/// `config.record_event` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordEventParams {
    /// A dotted name such as `cluster.takeover_done`.
    pub kind: String,
    /// Free-form detail.
    #[serde(default)]
    pub detail: Value,
}

/// `config.record_event` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RecordEventResult {
    /// Always true.
    pub recorded: bool,
}

/// `config.status` result: versions, lock, replication and readiness.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct StatusResult {
    /// This controller.
    pub controller: String,
    /// The database file.
    pub database: String,
    /// The database version.
    pub version: u64,
    /// This controller's section version.
    pub section_version: u64,
    /// The partner's section version applied here.
    pub partner_applied: Option<u64>,
    /// Whether configuration is locked.
    pub locked: bool,
    /// The lock, when held.
    pub lock: Value,
    /// Digest of the desired state.
    pub digest: String,
    /// Caught up with the partner's section.
    pub ready: bool,
    /// Replication state per direction.
    pub replication: Value,
}

/// `config.rebuild_from_partner` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct RebuildResult {
    /// The partner the state came from.
    pub partner: String,
    /// Snapshot pages read.
    pub pages: u32,
    /// Objects and tombstones received.
    pub items: u64,
    /// Those written here (newer than what this controller had).
    pub written: u64,
    /// Where this controller's own section resumes (what the partner had
    /// merged of its lost log).
    pub own_section_version: u64,
    /// How far the partner's section now counts as merged.
    pub partner_section_version: u64,
    /// The database version after the rebuild.
    pub version: u64,
}

/// One administrator's write as the router saw it, before config-keeper
/// numbers it: who, from where, what (secrets redacted) and how it ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditRecord {
    /// When the call ended, ms since the Unix epoch.
    pub time_ms: u64,
    /// The call's action.
    pub action_id: String,
    /// The method called.
    pub method: String,
    /// Who sent it, as the router names callers (`client(pid=...)` for
    /// duplexctl on the controller, `duplex-mgmt` for the endpoint).
    pub caller: String,
    /// The management user, for calls through the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The user's network address, for calls through the endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The parameters, secrets redacted.
    #[serde(default)]
    pub params: Value,
    /// `ok`, or the error's kind.
    pub result: String,
    /// The error's message, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An audit record as stored: numbered per controller that recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditEntry {
    /// The controller whose router saw the call.
    pub controller: String,
    /// Its sequence number on that controller (from 1, no gaps).
    pub seq: u64,
    /// The record.
    #[serde(flatten)]
    pub record: AuditRecord,
}

/// `config.audit` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditParams {
    /// At most this many entries (default 100, at most 1,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    /// Only entries older than this, ms since the Unix epoch (paging
    /// backwards: the oldest `time_ms` of the previous page).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_ms: Option<u64>,
    /// Only the calls one controller saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
}

/// `config.audit` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditResult {
    /// Newest first, both controllers' entries merged by time.
    pub entries: Vec<AuditEntry>,
    /// Entries this controller has not yet passed to the partner.
    pub unreplicated: u64,
}

/// `config.audit_append` params (the router only).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditAppendParams {
    /// Records in the order the calls ended.
    pub records: Vec<AuditRecord>,
    /// Records the router had to drop since its last append (its queue
    /// was full): recorded as an entry of their own, so a gap is visible.
    #[serde(default)]
    pub dropped: u64,
}

/// `config.audit_append` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct AuditAppendResult {
    /// The sequence number of the last entry written.
    pub seq: u64,
}

method!(Get, "config.get", GetParams, GetResult);
method!(Apply, "config.apply", ApplyParams, ApplyResult);
method!(Watch, "config.watch", NoParams, WatchResult);
method!(History, "config.history", PageParams, HistoryResult);
method!(Digest, "config.digest", NoParams, DigestResult);
method!(Lock, "config.lock", LockParams, LockResult);
method!(Unlock, "config.unlock", UnlockParams, UnlockResult);
method!(Status, "config.status", NoParams, StatusResult);
method!(
    RebuildFromPartner,
    "config.rebuild_from_partner",
    NoParams,
    RebuildResult
);
method!(Events, "config.events", PageParams, EventsResult);
method!(Audit, "config.audit", AuditParams, AuditResult);
method!(
    AuditAppend,
    "config.audit_append",
    AuditAppendParams,
    AuditAppendResult
);
method!(
    RecordEvent,
    "config.record_event",
    RecordEventParams,
    RecordEventResult
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cell::Cell;

    /// Runs a future whose every await is ready at once.
    fn ready<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match f.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("a fake call was not ready"),
        }
    }

    /// Pages of one volume each; the version moves once, on the second
    /// page of the first read.
    fn pages(
        calls: &Cell<u32>,
    ) -> impl FnMut(Value) -> std::future::Ready<Result<Value, String>> + '_ {
        move |p: Value| {
            calls.set(calls.get() + 1);
            let n = calls.get();
            let version = if n >= 2 { 2 } else { 1 };
            let (vol, next) = match p["after"].as_str() {
                None => ("a", Some("volume/a")),
                Some("volume/a") => ("b", Some("volume/b")),
                Some(_) => ("c", None),
            };
            assert_eq!(p["page"], json!(true));
            std::future::ready(Ok(json!({"version": version, "sections": {},
                "config": {"cluster": null, "volume": [{"name": vol}]}, "next": next})))
        }
    }

    #[test]
    fn get_all_joins_the_pages_of_one_version_and_starts_again_when_it_moves() {
        let calls = Cell::new(0);
        let r = ready(get_all(None, pages(&calls))).unwrap();
        // Read 1: page a (v1), page b (v2: moved) -> again: a, b, c (v2).
        assert_eq!(calls.get(), 5);
        assert_eq!(r.version, 2);
        assert_eq!(r.next, None);
        assert_eq!(
            r.config["volume"],
            json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])
        );
        assert_eq!(r.config["cluster"], Value::Null);
        // A failing call is the caller's error.
        let e = ready(get_all(Some("volume"), |_p| {
            std::future::ready(Err::<Value, _>("down".to_string()))
        }))
        .unwrap_err();
        assert!(matches!(e, GetAllError::Call(ref m) if m == "down"), "{e}");
    }
}
