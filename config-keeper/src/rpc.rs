//! JSON-RPC methods of the `config` namespace, mapped onto the keeper.
//!
//! | method | params | result |
//! |---|---|---|
//! | `config.get` | `kind?`, `name?`, `page?`, `after?` | `version`, `sections`, `config` (all kinds, one kind, or one object; one page with `page`), `next` |
//! | `config.apply` | `changes`, `sync?`, `timeout_ms?` | `version`, `section_version`, `changed`, `replicated` |
//! | `config.watch` | | the topic (`config.changed`) and the current version |
//! | `config.history` | `after?`, `limit?` | `entries` (local version, origin, seq, action_id, ops) |
//! | `config.digest` | | `digest`, `version` |
//! | `config.lock` | `reason` | `locked`, `lock`, `changed` |
//! | `config.unlock` | `reason`, `force` | `locked`, `changed`; `unauthorized` (field `force`) unless the caller took the lock or forces |
//! | `config.status` | | versions, lock, replication, readiness |
//! | `config.rebuild_from_partner` | | a lost database rebuilt from the partner (`conflict` unless our own section is empty) |
//! | `config.events` | `after?`, `limit?` | the event log |
//! | `config.record_event` | `kind`, `detail?` | appends to the event log under the caller's action_id |
//! | `config.audit` | `limit?`, `before_ms?`, `controller?` | `entries` (both controllers, newest first), `unreplicated` |
//! | `config.audit_append` | `records`, `dropped` | `seq`; `unauthorized` unless the router calls |
//! | `config.repl_hello`, `config.repl_push`, `config.repl_snapshot`, `config.repl_audit` | | partner keeper only |
//!
//! Error codes (the one place they are assigned, [`apply_error`]):
//!
//! | failure | code | `data` |
//! |---|---|---|
//! | malformed change, bad value, missing reference | `invalid_params` | `field`, `reason` |
//! | duplicate identifier, LUN/NSID, address; delete of a used object | `conflict` | `field`, `reason` |
//! | write to the partner's section | `not_owner` | `field`, `reason` |
//! | config lock held | `config_locked` | `reason`, `since_ms` |
//! | `sync=true` and no acknowledgement in time, or acknowledged without the merge report | `unavailable` | `version`, `section_version`, `committed: true` |
//! | `sync=true` and a concurrent write on the partner won an object | `conflict` | `version`, `section_version`, `committed: true`, `superseded` |
//! | `config.get` of a missing object | `not_found` | `field` |
//! | replication call not from the partner | `unauthorized` | `field` |
//! | SQLite failure | `internal` | |

use duplex_api::topics;
use std::sync::Arc;
use std::time::Duration;

use duplex_services::{params, Ctx, ErrorCode, RpcError, ServiceBuilder};
use serde::Deserialize;
use serde_json::{json, Value};
use tracing::info;

use crate::core::state::Entry;
use crate::error::ApplyError;
use crate::keeper::{now_ms, Keeper, MergeReport};
use crate::store::Meta;
use duplex_api::change::ViolationClass;
use duplex_api::methods::config::{
    self as cm, ApplyParams, ApplyResult, AuditAppendResult, AuditResult, DigestResult,
    EventsResult, GetResult, HistoryResult, LockResult, RecordEventResult, StatusResult,
    UnlockResult, WatchResult,
};
use duplex_api::model::Kind;

/// Default wait for the partner's acknowledgement of a `sync=true` apply.
pub const DEFAULT_SYNC_TIMEOUT_MS: u64 = 5_000;

/// Maps an apply failure to its JSON-RPC error.
pub fn apply_error(e: ApplyError) -> RpcError {
    match e {
        ApplyError::Locked { reason, since_ms } => RpcError::new(
            ErrorCode::ConfigLocked,
            format!("configuration is locked: {reason}"),
        )
        .with_data("reason", Value::String(reason))
        .with_data("since_ms", since_ms.into()),
        ApplyError::Invalid(v) => {
            let code = match v.class {
                ViolationClass::Invalid => ErrorCode::InvalidParams,
                ViolationClass::Conflict => ErrorCode::Conflict,
                ViolationClass::NotOwner => ErrorCode::NotOwner,
            };
            RpcError::new(code, format!("{}: {}", v.field, v.reason))
                .with_field(v.field)
                .with_data("reason", Value::String(v.reason))
        }
        ApplyError::Store(e) => {
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            RpcError::internal(msg)
        }
    }
}

fn store_error(e: crate::error::StoreError) -> RpcError {
    apply_error(ApplyError::Store(e))
}

#[derive(Deserialize)]
struct HelloParams {
    origin: String,
    head: u64,
}

#[derive(Deserialize)]
struct SnapshotParams {
    origin: String,
    #[serde(default)]
    after: Option<(Kind, String)>,
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct PushParams {
    origin: String,
    entries: Vec<Entry>,
}

/// `config.apply`: validate and commit; with `sync`, wait for the partner.
pub async fn apply(k: &Arc<Keeper>, ctx: &Ctx, p: ApplyParams) -> Result<ApplyResult, RpcError> {
    let meta = Meta {
        action_id: Some(ctx.action_id.clone()),
        now_ms: now_ms(),
    };
    let applied = k.apply(p.changes, meta).await.map_err(apply_error)?;
    if applied.changed {
        k.committed_local(
            applied.version,
            applied.section_version,
            Some(&ctx.action_id),
        );
        info!(
            version = applied.version,
            section_version = applied.section_version,
            "config applied"
        );
    }
    let mut replicated = false;
    if p.sync {
        if k.partner().is_none() {
            return Err(
                RpcError::unavailable("sync=true but no partner is configured")
                    .with_data("version", applied.version.into())
                    .with_data("committed", true.into()),
            );
        }
        let timeout = Duration::from_millis(p.timeout_ms.unwrap_or(DEFAULT_SYNC_TIMEOUT_MS));
        if !k.wait_acked(applied.section_version, timeout).await {
            return Err(RpcError::unavailable(format!(
                "committed locally as version {} but the partner did not acknowledge it within {} ms",
                applied.version,
                timeout.as_millis()
            ))
            .with_data("version", applied.version.into())
            .with_data("section_version", applied.section_version.into())
            .with_data("committed", true.into()));
        }
        // Acknowledged is not yet safe: a concurrent write on the partner
        // with a later stamp wins there, and on both sides once merged.
        // An apply that changed nothing wrote no entry of its own.
        if applied.changed {
            match k.merge_report(applied.section_version) {
                MergeReport::Won => {}
                MergeReport::Superseded(lost) => {
                    let what: Vec<String> = lost
                        .iter()
                        .map(|o| format!("{} {:?}", o.kind, o.key))
                        .collect();
                    return Err(RpcError::new(
                        ErrorCode::Conflict,
                        format!(
                            "committed locally as version {} and merged by the partner, but a concurrent write on the partner won {} (the later stamp wins on both controllers); the rest of this apply stands",
                            applied.version,
                            what.join(", ")
                        ),
                    )
                    .with_data("version", applied.version.into())
                    .with_data("section_version", applied.section_version.into())
                    .with_data("committed", true.into())
                    .with_data("superseded", serde_json::to_value(&lost).unwrap_or_default()));
                }
                MergeReport::Unknown => {
                    return Err(RpcError::unavailable(format!(
                        "committed locally as version {} and acknowledged by the partner, but its merge report was lost with the link: whether a concurrent write superseded it is unknown (read it back with config.get)",
                        applied.version
                    ))
                    .with_data("version", applied.version.into())
                    .with_data("section_version", applied.section_version.into())
                    .with_data("committed", true.into()));
                }
            }
        }
        replicated = true;
    }
    Ok(ApplyResult {
        version: applied.version,
        section_version: applied.section_version,
        changed: applied.changed,
        replicated,
    })
}

/// Reads a `config.get` page cursor (`kind/key`, as `next` gave it).
fn parse_cursor(c: &str, only: Option<Kind>) -> Result<(Kind, String), RpcError> {
    let bad = |why: &str| RpcError::invalid_params("after", format!("{c:?}: {why}"));
    let (kind, key) = c
        .split_once('/')
        .ok_or_else(|| bad("not a cursor (kind/key)"))?;
    let kind = Kind::parse(kind).ok_or_else(|| bad("names no kind"))?;
    if only.is_some_and(|o| o != kind) {
        return Err(bad("belongs to another kind"));
    }
    Ok((kind, key.to_string()))
}

/// Registers every `config.*` method on `svc`.
pub fn register(svc: &mut ServiceBuilder, k: &Arc<Keeper>) {
    // A page's objects take at most half a reply: the envelope, and the
    // peer link or the management endpoint wrapping it, fit in the rest.
    let page_budget = svc.max_reply_bytes() / 2;
    svc.typed_with::<cm::Get, _, _, _>(k, move |k, _ctx, p| async move {
        let kind =
            match p.kind.as_deref() {
                None => None,
                Some(s) => Some(Kind::parse(s).ok_or_else(|| {
                    RpcError::invalid_params("kind", format!("unknown kind {s:?}"))
                })?),
            };
        let partner = k.partner().map(str::to_string);
        let name = p.name;
        if name.is_some() && kind.is_none() {
            return Err(RpcError::invalid_params("name", "needs kind"));
        }
        if name.is_some() && p.page {
            return Err(RpcError::invalid_params(
                "page",
                "one object is never paged",
            ));
        }
        let after = match (&p.after, p.page) {
            (None, _) => None,
            (Some(_), false) => return Err(RpcError::invalid_params("after", "needs page")),
            (Some(c), true) => Some(parse_cursor(c, kind)?),
        };
        k.with_store(move |s| {
            let mut sections = std::collections::BTreeMap::new();
            sections.insert(s.me().to_string(), s.section_version());
            if let Some(p) = partner {
                let applied = s.applied(&p);
                sections.insert(p, applied);
            }
            let mut next = None;
            let config = match (kind, &name) {
                (Some(kind), Some(name)) => match s.config().get(kind, name) {
                    Some(o) => json!({ kind.as_str(): o.to_json() }),
                    None => {
                        return Err(RpcError::new(
                            ErrorCode::NotFound,
                            format!("{kind} {name:?} does not exist"),
                        )
                        .with_field("name"))
                    }
                },
                _ if p.page => {
                    let after = after.as_ref().map(|(k, key)| (*k, key.as_str()));
                    let (v, n) = s.config().to_json_page(kind, after, page_budget);
                    next = n;
                    v
                }
                _ => s.config().to_json(kind),
            };
            Ok(GetResult {
                version: s.version(),
                sections,
                config,
                next,
            })
        })
        .await?
    });

    svc.typed_with::<cm::Apply, _, _, _>(k, |k, ctx, p| async move { apply(&k, &ctx, p).await });

    svc.typed_with::<cm::Watch, _, _, _>(k, |k, _ctx, _p| async move {
        let v = k.with_store(|s| s.version()).await?;
        Ok(WatchResult {
            topic: topics::CONFIG_CHANGED.into(),
            version: v,
            hint: "subscribe to the topic; read config.history after your last version".into(),
        })
    });

    svc.typed_with::<cm::History, _, _, _>(k, |k, _ctx, p| async move {
        let rows = k
            .with_store(move |s| s.history(p.after, p.limit.min(10_000)))
            .await?
            .map_err(store_error)?;
        let mut entries: Vec<Value> = rows.iter().map(to_value).collect::<Result<_, _>>()?;
        entries.iter_mut().for_each(redact_secrets);
        Ok(HistoryResult { entries })
    });

    svc.typed_with::<cm::Digest, _, _, _>(k, |k, _ctx, _p| async move {
        k.with_store(|s| DigestResult {
            digest: s.digest(),
            version: s.version(),
        })
        .await
    });

    svc.typed_with::<cm::Lock, _, _, _>(k, |k, ctx, p| async move {
        if p.reason.trim().is_empty() {
            return Err(RpcError::invalid_params("reason", "must not be empty"));
        }
        let meta = Meta {
            action_id: Some(ctx.action_id.clone()),
            now_ms: now_ms(),
        };
        let owner = ctx.caller.clone().unwrap_or_else(|| "unknown".into());
        let (lock, outcome) = k
            .with_store(move |s| s.lock(&p.reason, &owner, &meta))
            .await?
            .map_err(store_error)?;
        Ok(LockResult {
            locked: true,
            lock: to_value(&lock)?,
            changed: outcome == crate::core::lock::LockOutcome::Changed,
        })
    });

    svc.typed_with::<cm::Unlock, _, _, _>(k, |k, ctx, p| async move {
        let meta = Meta {
            action_id: Some(ctx.action_id.clone()),
            now_ms: now_ms(),
        };
        let caller = ctx.caller.clone().unwrap_or_else(|| "unknown".into());
        let outcome = k
            .with_store(move |s| s.unlock(&p.reason, &caller, p.force, &meta))
            .await?
            .map_err(|e| match e {
                crate::error::StoreError::NotLockOwner(n) => {
                    RpcError::new(ErrorCode::Unauthorized, n.to_string())
                        .with_field("force")
                        .with_data("owner", Value::String(n.owner))
                }
                e => store_error(e),
            })?;
        Ok(UnlockResult {
            locked: false,
            changed: outcome == crate::core::lock::LockOutcome::Changed,
        })
    });

    svc.typed_with::<cm::Status, _, _, _>(k, |k, _ctx, _p| async move {
        let partner = k.partner().map(str::to_string);
        let ready = k.ready();
        let replication = k.replication_status();
        k.with_store(move |s| {
            Ok(StatusResult {
                controller: s.me().to_string(),
                database: s.path().display().to_string(),
                version: s.version(),
                section_version: s.section_version(),
                partner_applied: partner.as_deref().map(|p| s.applied(p)),
                locked: s.lock_state().is_some(),
                lock: to_value(&s.lock_state())?,
                digest: s.digest(),
                ready,
                replication,
            })
        })
        .await?
    });

    svc.typed_with::<cm::Events, _, _, _>(k, |k, _ctx, p| async move {
        let after = i64::try_from(p.after).unwrap_or(i64::MAX);
        let rows = k
            .with_store(move |s| s.events(after, p.limit.min(10_000)))
            .await?
            .map_err(store_error)?;
        Ok(EventsResult {
            events: rows.iter().map(to_value).collect::<Result<_, _>>()?,
        })
    });

    svc.typed_with::<cm::RecordEvent, _, _, _>(k, |k, ctx, p| async move {
        if duplex_api::syntax::check_name(&p.kind).is_err() {
            return Err(RpcError::invalid_params(
                "kind",
                "must be a dotted name such as cluster.takeover_done",
            ));
        }
        let meta = Meta {
            action_id: Some(ctx.action_id.clone()),
            now_ms: now_ms(),
        };
        k.with_store(move |s| s.log_event(&meta, &p.kind, &p.detail))
            .await?
            .map_err(store_error)?;
        Ok(RecordEventResult { recorded: true })
    });

    svc.typed_with::<cm::Audit, _, _, _>(k, |k, _ctx, p| async move {
        let (entries, unreplicated) =
            crate::audit::list(&k, p.limit, p.before_ms, p.controller).await?;
        Ok(AuditResult {
            entries,
            unreplicated,
        })
    });

    svc.typed_with::<cm::AuditAppend, _, _, _>(k, |k, ctx, p| async move {
        let seq = crate::audit::append(&k, ctx.caller.as_deref(), p.records, p.dropped).await?;
        Ok(AuditAppendResult { seq })
    });

    repl_method(
        svc,
        k,
        "config.repl_audit",
        |k, _ctx, p: crate::audit::ReplAuditParams| async move {
            to_value(&crate::audit::merge(&k, p).await?)
        },
    );

    svc.typed_with::<cm::RebuildFromPartner, _, _, _>(k, |k, ctx, _p| async move {
        k.rebuild_from_partner(&ctx.router, Some(ctx.action_id.clone()))
            .await
    });

    repl_method(
        svc,
        k,
        "config.repl_snapshot",
        |k, _ctx, p: SnapshotParams| async move {
            k.on_snapshot(
                p.origin,
                p.after,
                p.limit.unwrap_or(crate::keeper::SNAPSHOT_PAGE_ITEMS),
            )
            .await
        },
    );

    repl_method(
        svc,
        k,
        "config.repl_hello",
        |k, _ctx, p: HelloParams| async move { k.on_hello(p.origin, p.head).await },
    );

    repl_method(
        svc,
        k,
        "config.repl_push",
        |k, ctx, p: PushParams| async move {
            let origin = p.origin.clone();
            let r = k.on_push(p.origin, p.entries).await;
            let (reply, after) = match r {
                Ok(x) => x,
                Err(e) => {
                    let alert = e.data.as_ref().and_then(|d| d.get("alert")).cloned();
                    if let Some(kind) = alert {
                        let data = json!({"severity": "critical", "kind": kind, "origin": origin, "reason": e.message});
                        if let Err(pe) = ctx.router.publish(topics::ALERT, data, false).await {
                            tracing::warn!(error = %pe, "cannot publish the alert");
                        }
                    }
                    return Err(e);
                }
            };
            for mut a in after.alerts {
                a["origin"] = json!(origin);
                if let Err(pe) = ctx.router.publish(topics::ALERT, a, false).await {
                    tracing::warn!(error = %pe, "cannot publish the alert");
                }
            }
            if !after.fixes.is_empty() {
                // Not in the partner's call: the fix is a local change of
                // its own, replicated back like any other.
                let (k, ctx) = (Arc::clone(&k), ctx.clone());
                tokio::spawn(async move {
                    let p = ApplyParams {
                        changes: Value::Array(after.fixes),
                        sync: false,
                        timeout_ms: None,
                    };
                    match apply(&k, &ctx, p).await {
                        Ok(r) => tracing::warn!(version = r.version, "merge conflict settled: a later claim of an initiator name removed (core::conflicts)"),
                        Err(e) => tracing::warn!(error = %e, "the merge conflict fix was refused; an administrator must settle it"),
                    }
                });
            }
            Ok(reply)
        },
    );
}

/// Registers a replication method (untyped: the keepers' own wire): only
/// the partner's keeper may call it, and its params decode as `P` before
/// `f` runs with the keeper.
fn repl_method<P, F, Fut>(svc: &mut ServiceBuilder, k: &Arc<Keeper>, name: &str, f: F)
where
    P: serde::de::DeserializeOwned + Send + 'static,
    F: Fn(Arc<Keeper>, Ctx, P) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Value, RpcError>> + Send + 'static,
{
    let k = Arc::clone(k);
    let f = Arc::new(f);
    svc.method(name, move |ctx, p| {
        let (k, f) = (Arc::clone(&k), Arc::clone(&f));
        async move {
            from_partner(&ctx)?;
            let p: P = params(p)?;
            f(k, ctx, p).await
        }
    });
}

/// Members whose values `config.history` never shows: CHAP secrets and
/// password hashes. History is an audit view; the reconcilers that need a
/// secret read it with `config.get`.
const SECRET_MEMBERS: [&str; 3] = ["secret", "mutual_secret", "password_hash"];

/// Replaces every secret member's value, at any depth, by `"(redacted)"`.
pub fn redact_secrets(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if SECRET_MEMBERS.contains(&k.as_str()) && !x.is_null() {
                    *x = Value::String("(redacted)".into());
                } else {
                    redact_secrets(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(redact_secrets),
        _ => {}
    }
}

/// Encodes a stored row or record for a typed result.
fn to_value<T: serde::Serialize>(v: &T) -> Result<Value, RpcError> {
    serde_json::to_value(v).map_err(|e| RpcError::internal(format!("cannot encode: {e}")))
}

/// Replication methods are for the partner's keeper only: the router marks
/// calls that came over the authenticated peer link with `peer:`.
fn from_partner(ctx: &Ctx) -> Result<(), RpcError> {
    match ctx.from_peer() {
        true => Ok(()),
        false => Err(RpcError::new(
            ErrorCode::Unauthorized,
            format!(
                "replication methods are for the partner's keeper, not {:?}",
                ctx.caller
            ),
        )
        .with_field("caller")),
    }
}

#[cfg(test)]
mod tests {
    use super::redact_secrets;
    use serde_json::json;

    /// Issue 16 point 7: `config.history` returned CHAP secrets verbatim.
    #[test]
    fn history_entries_hide_secrets() {
        let mut e = json!({"ops": [{"kind": "host", "key": "h1", "body": {"name": "h1",
            "chap": {"user": "h1", "secret": "0123456789abcdef", "mutual_user": "t",
                     "mutual_secret": "fedcba9876543210"}}},
            {"kind": "user", "key": "u", "body": {"name": "u", "password_hash": "$argon2id$x"}},
            {"kind": "host", "key": "h2", "body": null}]});
        redact_secrets(&mut e);
        let text = e.to_string();
        for s in ["0123456789abcdef", "fedcba9876543210", "argon2id"] {
            assert!(!text.contains(s), "{text}");
        }
        assert_eq!(e["ops"][0]["body"]["chap"]["user"], "h1");
        assert_eq!(e["ops"][0]["body"]["chap"]["secret"], "(redacted)");
    }
}
