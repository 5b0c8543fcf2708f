//! The running keeper: the store behind a mutex (SQLite work runs on the
//! blocking pool), the replication driver that ships our section to the
//! partner's keeper through the router, and the receiving side.
//!
//! Shipping is push-based and one batch at a time: on every (re)connection
//! the driver says hello, learns how far the partner has merged our log,
//! and resumes right after it ([`Sender`]). The partner acknowledges each
//! batch with the version it has durably merged; `sync=true` applies wait
//! for that acknowledgement.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use duplex_services::{ErrorCode, RouterClient, RpcError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use crate::core::conflicts;
use crate::core::replication::{CatchUp, SendStep, Sender};
use crate::core::state::{Entry, MergeError};
use crate::error::{ApplyError, StoreError};
use crate::password::hash_passwords_in;
use crate::store::{Applied, Merged, Meta, SnapshotItem, Store};
use duplex_api::change::{parse_changes, Violation};
use duplex_api::methods::config::RebuildResult;
use duplex_api::model::Kind;

/// Log rows kept for `config.history` by default (older ones are pruned
/// once the partner has them).
pub const HISTORY_KEEP: u64 = 100_000;

/// Prune every this many versions.
const PRUNE_EVERY: u64 = 1024;

/// Prunes the log when the version crossed a multiple of [`PRUNE_EVERY`].
fn maybe_prune(s: &mut Store, before: u64, keep: u64) {
    if s.version() / PRUNE_EVERY != before / PRUNE_EVERY {
        if let Err(e) = s.prune(keep) {
            warn!(error = %e, "pruning the change log failed");
        }
    }
}

/// Applies taken together into one transaction at most.
pub const GROUP_COMMIT_MAX: usize = 256;

/// One queued `config.apply`.
struct ApplyReq {
    changes: Value,
    meta: Meta,
    reply: oneshot::Sender<Result<Applied, ApplyError>>,
}

/// Entries per `config.repl_push` batch.
pub const BATCH_ENTRIES: u32 = 256;
/// Bytes of entries per batch, below the router's 1 MiB message limit.
pub const BATCH_BYTES: usize = 512 * 1024;
/// Largest single entry we accept in an apply: it must fit in one batch.
pub const MAX_ENTRY_BYTES: usize = BATCH_BYTES;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The keeper shared by the RPC handlers and the replication driver.
pub struct Keeper {
    store: Mutex<Store>,
    me: String,
    partner: Option<String>,
    head_tx: watch::Sender<u64>,
    acked_tx: watch::Sender<u64>,
    ready_tx: watch::Sender<bool>,
    catch_up: Mutex<CatchUp>,
    connected: AtomicBool,
    last_error: Mutex<Option<String>>,
    changed_tx: mpsc::UnboundedSender<Value>,
    apply_tx: mpsc::UnboundedSender<ApplyReq>,
    apply_rx: Mutex<Option<mpsc::UnboundedReceiver<ApplyReq>>>,
    history_keep: std::sync::atomic::AtomicU64,
    audit: crate::audit::AuditState,
    reports: Mutex<MergeReports>,
    /// The reports this process gave on the partner's entries, by seq, so
    /// an entry pushed again gets the same answer.
    merged_reports: Mutex<BTreeMap<u64, Vec<SupersededOp>>>,
}

fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the store half-updated:
    // its memory is replaced only after a commit. Keep serving.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Hello answer from the partner.
#[derive(Debug, Deserialize)]
struct HelloReply {
    /// How much of our log the partner has merged.
    applied: u64,
    /// The head of the partner's own log.
    head: u64,
}

/// Items per snapshot page (a partner rebuilding its database).
pub const SNAPSHOT_PAGE_ITEMS: usize = 500;
/// About this many bytes of JSON per snapshot page, well under the
/// message limit.
pub const SNAPSHOT_PAGE_BYTES: usize = 256 * 1024;
/// The most objects a rebuild takes (the largest configuration the
/// appliance supports is a few tens of thousands).
pub const SNAPSHOT_MAX_ITEMS: usize = 1_000_000;

/// A `config.repl_snapshot` reply.
#[derive(Debug, Deserialize)]
struct SnapshotPage {
    items: Vec<SnapshotItem>,
    more: bool,
    head: u64,
    applied: u64,
}

/// Event-log kind (and alert kind) of a rule the merged state breaks.
pub const MERGE_CONFLICT: &str = "config.merge_conflict";

/// What a merge leaves to do: the alerts for rules the merged state
/// breaks (each also in the event log), and the fixes this controller
/// writes under the resolution rule (`core::conflicts`).
#[derive(Debug, Default)]
pub struct AfterMerge {
    /// Alert payloads, `kind` [`MERGE_CONFLICT`].
    pub alerts: Vec<Value>,
    /// Changes for a local `config.apply`, one per resolution this
    /// controller writes.
    pub fixes: Vec<Value>,
}

/// Checks the state a merge of `keys` left: every finding and every
/// initiator-name resolution is logged and alerted; the fixes that fall to
/// this controller are returned to be applied.
fn after_merge(s: &mut Store, keys: &[(Kind, String)]) -> AfterMerge {
    let mut out = AfterMerge::default();
    if keys.is_empty() {
        return out;
    }
    let findings = conflicts::rules_broken(s.state(), keys);
    if findings.is_empty() {
        return out;
    }
    // Only resolutions that involve a merged host: a conflict already
    // reported, and settled or left to an administrator, is not raised
    // again by every later merge.
    let merged_hosts: Vec<&str> = keys
        .iter()
        .filter(|(k, _)| *k == Kind::Host)
        .map(|(_, key)| key.as_str())
        .collect();
    let resolutions: Vec<conflicts::Resolution> = conflicts::initiator_conflicts(s.state())
        .into_iter()
        .filter(|r| {
            merged_hosts.contains(&r.keeps.as_str()) || merged_hosts.contains(&r.loses.as_str())
        })
        .collect();
    let me = s.me().to_string();
    let meta = Meta {
        action_id: None,
        now_ms: now_ms(),
    };
    for f in &findings {
        let settled = resolutions
            .iter()
            .find(|r| f.kind == Kind::Host && (f.key == r.keeps || f.key == r.loses));
        let rule = settled.map(|r| {
            json!({"name": r.name, "keeps": r.keeps, "loses": r.loses, "writer": r.writer,
                   "automatic": r.fixed.is_some()})
        });
        let detail = json!({"object": format!("{}/{}", f.kind, f.key), "field": f.field,
                            "reason": f.reason, "resolution": rule});
        warn!(object = %format!("{}/{}", f.kind, f.key), field = %f.field, reason = %f.reason,
              "the merged configuration breaks a rule");
        if let Err(e) = s.log_event(&meta, MERGE_CONFLICT, &detail) {
            warn!(error = %e, "cannot record the merge conflict");
        }
        let mut alert = detail;
        alert["severity"] = json!("warning");
        alert["kind"] = json!(MERGE_CONFLICT);
        out.alerts.push(alert);
    }
    out.fixes = resolutions
        .iter()
        .filter(|r| r.writer == me)
        .filter_map(conflicts::fix_change)
        .collect();
    out
}

/// Event-log kind (and alert kind) of a partner entry refused at merge.
pub const MERGE_REFUSED: &str = "config.merge_refused";

/// (local version, partner section version, action) of a merged entry.
type MergedNote = (u64, u64, Option<String>);

/// Push answer from the partner.
#[derive(Debug, Deserialize)]
struct PushReply {
    applied: u64,
    /// Per pushed entry it merged, the writes it holds a later stamp for
    /// (absent from a release before the report).
    #[serde(default)]
    superseded: Option<Vec<SupersededOp>>,
}

/// A write of ours the partner holds a later stamp for: a concurrent
/// write on the partner won it (or, for an entry pushed again after a
/// lost reply, a later write replaced it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupersededOp {
    /// Our section version (log entry) that carried the write.
    pub seq: u64,
    /// The object's kind.
    pub kind: Kind,
    /// Its key.
    pub key: String,
}

/// At most this many entries acknowledged by a hello are pushed again for
/// their merge reports (older ones have no waiter left).
const REPORT_REPUSH_MAX: u64 = 256;

/// How many of our entries' merge reports are kept for `sync` waiters
/// (a waiter waits seconds; reports are a few bytes each).
pub const MERGE_REPORTS_KEPT: usize = 8192;

/// What the partner reported about our recent entries: per section
/// version, the writes it superseded (empty: all won).
#[derive(Debug, Default)]
struct MergeReports {
    by_seq: BTreeMap<u64, Vec<SupersededOp>>,
}

impl MergeReports {
    fn note(&mut self, seqs: std::ops::RangeInclusive<u64>, lost: &[SupersededOp]) {
        for seq in seqs {
            let mine = lost.iter().filter(|o| o.seq == seq).cloned().collect();
            self.by_seq.insert(seq, mine);
        }
        while self.by_seq.len() > MERGE_REPORTS_KEPT {
            self.by_seq.pop_first();
        }
    }
}

/// What the partner said of one of our entries after merging it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MergeReport {
    /// Every write of it won on the partner.
    Won,
    /// These writes lost to a concurrent write on the partner.
    Superseded(Vec<SupersededOp>),
    /// Acknowledged without a report (the reply was lost and the partner's
    /// hello acknowledged it, or an older partner).
    Unknown,
}

impl Keeper {
    /// Wraps an open store. `partner` is the partner's controller id, if any.
    /// Returns the keeper and the stream of `config.changed` payloads to
    /// publish.
    pub fn new(
        store: Store,
        partner: Option<String>,
    ) -> (Arc<Keeper>, mpsc::UnboundedReceiver<Value>) {
        let me = store.me().to_string();
        let head = store.section_version();
        let acked = store.peer_acked();
        let catch_up = if partner.is_some() {
            CatchUp::new()
        } else {
            CatchUp::standalone()
        };
        let audit_head = store.audit_head(&me).unwrap_or_else(|e| {
            warn!(error = %e, "cannot read the audit head; numbering from the table");
            0
        });
        let (changed_tx, changed_rx) = mpsc::unbounded_channel();
        let (apply_tx, apply_rx) = mpsc::unbounded_channel();
        let k = Keeper {
            store: Mutex::new(store),
            me,
            partner,
            head_tx: watch::channel(head).0,
            acked_tx: watch::channel(acked).0,
            ready_tx: watch::channel(catch_up.ready()).0,
            catch_up: Mutex::new(catch_up),
            connected: AtomicBool::new(false),
            last_error: Mutex::new(None),
            changed_tx,
            apply_tx,
            apply_rx: Mutex::new(Some(apply_rx)),
            history_keep: std::sync::atomic::AtomicU64::new(HISTORY_KEEP),
            audit: crate::audit::AuditState::new(audit_head),
            reports: Mutex::new(MergeReports::default()),
            merged_reports: Mutex::new(BTreeMap::new()),
        };
        (Arc::new(k), changed_rx)
    }

    /// Sets how many log rows `config.history` keeps (at least 1,000).
    pub fn set_history_keep(&self, keep: u64) {
        self.history_keep.store(keep.max(1000), Ordering::Relaxed);
    }

    /// This controller's id.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// The audit log's replication state.
    pub fn audit(&self) -> &crate::audit::AuditState {
        &self.audit
    }

    /// The partner's id.
    pub fn partner(&self) -> Option<&str> {
        self.partner.as_deref()
    }

    /// Runs `f` on the store in the blocking pool (SQLite commits fsync).
    pub async fn with_store<R, F>(self: &Arc<Self>, f: F) -> Result<R, RpcError>
    where
        F: FnOnce(&mut Store) -> R + Send + 'static,
        R: Send + 'static,
    {
        let me = Arc::clone(self);
        tokio::task::spawn_blocking(move || f(&mut guard(&me.store)))
            .await
            .map_err(|e| RpcError::internal(format!("store task failed: {e}")))
    }

    /// Queues an apply for the committer and waits for its result.
    pub async fn apply(&self, changes: Value, meta: Meta) -> Result<Applied, ApplyError> {
        let (reply, rx) = oneshot::channel();
        let gone = || {
            ApplyError::Store(crate::error::StoreError::Corrupt {
                what: "committer".into(),
                reason: "the commit task is not running".into(),
            })
        };
        self.apply_tx
            .send(ApplyReq {
                changes,
                meta,
                reply,
            })
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// The committer: takes every queued apply (up to
    /// [`GROUP_COMMIT_MAX`]) and commits them in one transaction, so
    /// concurrent callers share one fsync. Run it once.
    pub async fn run_committer(self: Arc<Self>) {
        let Some(mut rx) = guard(&self.apply_rx).take() else {
            warn!("committer already running");
            return;
        };
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while batch.len() < GROUP_COMMIT_MAX {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let mut replies = Vec::with_capacity(batch.len());
            let mut inputs = Vec::with_capacity(batch.len());
            for r in batch {
                replies.push(r.reply);
                inputs.push((r.changes, r.meta));
            }
            let n = inputs.len();
            let keep = self.history_keep.load(Ordering::Relaxed);
            let results = self
                .with_store(move |s| {
                    let before = s.version();
                    let r = commit_batch(s, inputs);
                    maybe_prune(s, before, keep);
                    r
                })
                .await;
            match results {
                Ok(results) => {
                    for (reply, r) in replies.into_iter().zip(results) {
                        let _ = reply.send(r);
                    }
                }
                Err(e) => {
                    warn!(error = %e, requests = n, "commit task failed");
                    for reply in replies {
                        let _ =
                            reply.send(Err(ApplyError::Store(crate::error::StoreError::Corrupt {
                                what: "commit task".into(),
                                reason: e.to_string(),
                            })));
                    }
                }
            }
        }
    }

    /// Tells the driver and the watchers that we committed local changes.
    pub fn committed_local(&self, version: u64, section_version: u64, action_id: Option<&str>) {
        self.head_tx.send_if_modified(|h| {
            let moved = section_version > *h;
            *h = (*h).max(section_version);
            moved
        });
        let _ = self.changed_tx.send(json!({
            "version": version, "origin": self.me, "section_version": section_version,
            "action_id": action_id,
        }));
    }

    /// Waits until the partner acknowledged our section up to `v`.
    pub async fn wait_acked(&self, v: u64, timeout: Duration) -> bool {
        let mut rx = self.acked_tx.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|a| *a >= v))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// The partner's report on our entry `seq`, once acknowledged.
    pub fn merge_report(&self, seq: u64) -> MergeReport {
        match guard(&self.reports).by_seq.get(&seq) {
            Some(lost) if lost.is_empty() => MergeReport::Won,
            Some(lost) => MergeReport::Superseded(lost.clone()),
            None => MergeReport::Unknown,
        }
    }

    /// True once caught up with the partner's section (or standalone).
    pub fn ready(&self) -> bool {
        guard(&self.catch_up).ready()
    }

    /// Waits until caught up, at most `timeout`.
    pub async fn wait_ready(&self, timeout: Duration) -> bool {
        let mut rx = self.ready_tx.subscribe();
        tokio::time::timeout(timeout, rx.wait_for(|r| *r))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    fn note_applied(&self, applied: u64) {
        if guard(&self.catch_up).on_applied(applied) {
            info!(applied, "caught up with the partner's section");
            self.ready_tx.send_replace(true);
        }
    }

    fn note_partner_head(&self, head: u64, applied: u64) {
        if guard(&self.catch_up).on_partner_head(head, applied) {
            info!(head, "caught up with the partner's section");
            self.ready_tx.send_replace(true);
        }
    }

    /// Replication status for `config.status`.
    pub fn replication_status(&self) -> Value {
        let c = *guard(&self.catch_up);
        json!({
            "partner": self.partner,
            "connected": self.connected.load(Ordering::Relaxed),
            "acked": *self.acked_tx.borrow(),
            "head": *self.head_tx.borrow(),
            "caught_up": c.ready(),
            "catch_up_target": c.target(),
            "last_error": guard(&self.last_error).clone(),
        })
    }

    fn check_partner(&self, origin: &str) -> Result<(), RpcError> {
        if self.partner.as_deref() == Some(origin) && origin != self.me {
            Ok(())
        } else {
            Err(RpcError::new(
                duplex_services::ErrorCode::Unauthorized,
                format!("{origin:?} is not this controller's partner"),
            )
            .with_field("origin"))
        }
    }

    /// `config.repl_hello` from the partner's driver: tells it how much of
    /// its log we merged, and learns its head (our catch-up target).
    pub async fn on_hello(self: &Arc<Self>, origin: String, head: u64) -> Result<Value, RpcError> {
        self.check_partner(&origin)?;
        let o = origin.clone();
        let (applied, own_head) = self
            .with_store(move |s| (s.applied(&o), s.section_version()))
            .await?;
        self.note_partner_head(head, applied);
        debug!(partner = %origin, applied, head, "hello from partner");
        Ok(json!({"applied": applied, "head": own_head}))
    }

    /// `config.repl_push`: merges shipped entries in order. Returns how far
    /// the partner's log is merged (less than the last entry on a gap).
    pub async fn on_push(
        self: &Arc<Self>,
        origin: String,
        entries: Vec<Entry>,
    ) -> Result<(Value, AfterMerge), RpcError> {
        self.check_partner(&origin)?;
        if let Some(bad) = entries.iter().position(|e| e.origin != origin) {
            return Err(RpcError::invalid_params(
                format!("entries[{bad}].origin"),
                "differs from origin",
            ));
        }
        let keep = self.history_keep.load(Ordering::Relaxed);
        let (applied, versions, after, superseded) = self
            .with_store(
                move |s| -> Result<(u64, Vec<MergedNote>, AfterMerge, Vec<EntryReport>), RpcError> {
                    let mut versions = Vec::new();
                    let before = s.version();
                    let results = match s.merge_many(&entries) {
                        Ok(r) => r,
                        Err(StoreError::Merge(
                            err @ (MergeError::Refused { .. } | MergeError::SeqReused { .. }),
                        )) => {
                            // Kept in the event log too: the alert is for now,
                            // the log for whoever looks later.
                            warn!(error = %err, "refused the partner's entry");
                            let meta = Meta {
                                action_id: None,
                                now_ms: now_ms(),
                            };
                            let detail = json!({"origin": origin, "reason": err.to_string()});
                            if let Err(e) = s.log_event(&meta, MERGE_REFUSED, &detail) {
                                warn!(error = %e, "cannot record the refused entry");
                            }
                            return Err(RpcError::new(
                                ErrorCode::Conflict,
                                format!("refused the entry: {err}"),
                            )
                            .with_data("alert", MERGE_REFUSED.into()));
                        }
                        Err(err) => {
                            warn!(error = %err, "cannot merge the partner's entries");
                            return Err(RpcError::internal(format!("merging entries: {err}")));
                        }
                    };
                    let fresh: Vec<bool> = results
                        .iter()
                        .map(|r| matches!(r, Merged::Applied { .. }))
                        .collect();
                    let mut keys = Vec::new();
                    for (e, r) in entries.iter().zip(results) {
                        if let Merged::Applied { applied, version } = r {
                            versions.push((version, applied, e.action_id.clone()));
                            keys.extend(e.ops.iter().map(|o| (o.kind, o.key.clone())));
                        }
                    }
                    maybe_prune(s, before, keep);
                    let after = after_merge(s, &keys);
                    let superseded = superseded_in(s, &entries, &fresh);
                    Ok((s.applied(&origin), versions, after, superseded))
                },
            )
            .await??;
        for (version, section_version, action_id) in versions {
            let _ = self.changed_tx.send(json!({
                "version": version, "origin": self.partner, "section_version": section_version,
                "action_id": action_id,
            }));
        }
        self.note_applied(applied);
        // Only entries up to `applied` were merged (a gap stops the rest).
        // A fresh merge's report is exact and remembered; an entry merged
        // before (pushed again after a lost reply) gets the report of its
        // merge if this process made it, else the conservative one.
        let mut out: Vec<SupersededOp> = Vec::new();
        {
            let mut memory = guard(&self.merged_reports);
            for r in superseded.into_iter().filter(|r| r.seq <= applied) {
                let lost = if r.fresh {
                    memory.insert(r.seq, r.lost.clone());
                    r.lost
                } else {
                    memory.get(&r.seq).cloned().unwrap_or(r.lost)
                };
                out.extend(lost);
            }
            while memory.len() > MERGE_REPORTS_KEPT {
                memory.pop_first();
            }
        }
        Ok((json!({"applied": applied, "superseded": out}), after))
    }

    /// `config.repl_snapshot` from the partner rebuilding its database:
    /// one page of our whole state, our section's head and how much of the
    /// partner's own (lost) log we have merged.
    pub async fn on_snapshot(
        self: &Arc<Self>,
        origin: String,
        after: Option<(Kind, String)>,
        limit: usize,
    ) -> Result<Value, RpcError> {
        self.check_partner(&origin)?;
        self.with_store(move |s| {
            let limit = limit.clamp(1, SNAPSHOT_PAGE_ITEMS);
            let (items, more) = s.snapshot_page(after.as_ref(), limit, SNAPSHOT_PAGE_BYTES);
            json!({"items": items, "more": more, "head": s.section_version(),
                   "applied": s.applied(&origin)})
        })
        .await
    }

    /// `config.rebuild_from_partner`: this controller's database was lost
    /// (a replaced boot disk); reads the partner's whole state through the
    /// peer link, page by page, and installs it in one transaction. Our own
    /// section resumes where the partner's replica of it ends. Refused
    /// unless our own section is empty here.
    pub async fn rebuild_from_partner(
        self: &Arc<Self>,
        client: &RouterClient,
        action_id: Option<String>,
    ) -> Result<RebuildResult, RpcError> {
        let Some(partner) = self.partner.clone() else {
            return Err(RpcError::unavailable("no partner is configured"));
        };
        let own = self.with_store(|s| s.section_version()).await?;
        if own != 0 {
            return Err(RpcError::new(
                ErrorCode::Conflict,
                format!("this controller's own section is at version {own}: its database was not lost, there is nothing to rebuild"),
            ));
        }
        let mut items: Vec<SnapshotItem> = Vec::new();
        let mut after: Option<(Kind, String)> = None;
        // The first page's heads: everything the partner had merged then is
        // in the pages read after it; later writes merge again harmlessly.
        let mut heads: Option<(u64, u64)> = None;
        let mut pages = 0u32;
        loop {
            let reply = client
                .call_on(
                    &partner,
                    "config.repl_snapshot",
                    json!({"origin": self.me, "after": after, "limit": SNAPSHOT_PAGE_ITEMS}),
                )
                .await
                .map_err(|e| e.into_rpc())?;
            let page: SnapshotPage = serde_json::from_value(reply)
                .map_err(|e| RpcError::internal(format!("bad snapshot page: {e}")))?;
            pages = pages.saturating_add(1);
            heads.get_or_insert((page.head, page.applied));
            let more = page.more && !page.items.is_empty();
            if let Some(last) = page.items.last() {
                after = Some((last.kind, last.key.clone()));
            }
            items.extend(page.items);
            if items.len() > SNAPSHOT_MAX_ITEMS {
                return Err(RpcError::internal(format!(
                    "the partner's state has more than {SNAPSHOT_MAX_ITEMS} objects; nothing was written"
                )));
            }
            if !more {
                break;
            }
        }
        let (partner_head, own_seq) = heads.unwrap_or((0, 0));
        let meta = Meta {
            action_id,
            now_ms: now_ms(),
        };
        let received = items.len();
        let p = partner.clone();
        let (written, version) = self
            .with_store(move |s| {
                s.rebuild_from(&items, &p, own_seq, partner_head, &meta)
                    .map(|w| (w, s.version()))
            })
            .await?
            .map_err(|e| match e {
                StoreError::RebuildRefused(r) => RpcError::new(ErrorCode::Conflict, r),
                e => RpcError::internal(format!("rebuilding: {e}")),
            })?;
        warn!(partner = %partner, received, written, own_seq, partner_head, "configuration rebuilt from the partner");
        // The driver resumes our section at own_seq, the watchers reload.
        self.committed_local(version, own_seq, None);
        self.note_applied(partner_head);
        Ok(RebuildResult {
            partner,
            pages,
            items: received as u64,
            written: written as u64,
            own_section_version: own_seq,
            partner_section_version: partner_head,
            version,
        })
    }

    fn set_error(&self, e: Option<String>) {
        *guard(&self.last_error) = e;
    }

    /// The replication driver: ships our section to the partner forever.
    pub async fn run_sender(self: Arc<Self>, client: RouterClient) {
        let Some(partner) = self.partner.clone() else {
            return;
        };
        let (head, acked) = match self
            .with_store(|s| (s.section_version(), s.peer_acked()))
            .await
        {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "replication driver cannot start");
                return;
            }
        };
        let mut sender = Sender::new(head, acked, u64::from(BATCH_ENTRIES));
        let mut head_rx = self.head_tx.subscribe();
        let mut backoff = Duration::from_millis(50);
        let mut last_persist = Instant::now();
        loop {
            match self.connect(&client, &partner, &mut sender).await {
                Ok(steps) => {
                    backoff = Duration::from_millis(50);
                    self.connected.store(true, Ordering::Relaxed);
                    self.set_error(None);
                    info!(partner = %partner, acked = sender.acked(), head = sender.head(), "replication link up");
                    let r = self
                        .drive(
                            &client,
                            &partner,
                            &mut sender,
                            &mut head_rx,
                            steps,
                            &mut last_persist,
                        )
                        .await;
                    self.connected.store(false, Ordering::Relaxed);
                    sender.on_disconnected();
                    if let Err(e) = r {
                        warn!(partner = %partner, error = %e, "replication link down");
                        self.set_error(Some(e.to_string()));
                    }
                }
                Err(e) => {
                    debug!(partner = %partner, error = %e, "partner keeper not reachable");
                    self.set_error(Some(e.to_string()));
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(500));
        }
    }

    async fn connect(
        self: &Arc<Self>,
        client: &RouterClient,
        partner: &str,
        sender: &mut Sender,
    ) -> Result<VecDeque<SendStep>, RpcError> {
        let p = partner.to_string();
        let (head, applied) = self
            .with_store(move |s| (s.section_version(), s.applied(&p)))
            .await?;
        sender.on_commit(head);
        let reply = client
            .call_on(
                partner,
                "config.repl_hello",
                json!({"origin": self.me, "head": head, "applied": applied}),
            )
            .await
            .map_err(|e| e.into_rpc())?;
        let reply: HelloReply = serde_json::from_value(reply)
            .map_err(|e| RpcError::internal(format!("bad hello reply: {e}")))?;
        self.note_partner_head(reply.head, applied);
        // Entries may have been merged while the hello was in flight; their
        // own note came before the target was known, so look again.
        let p = partner.to_string();
        let now = self.with_store(move |s| s.applied(&p)).await?;
        self.note_applied(now);
        let before = sender.acked();
        let steps = sender.on_connected(reply.applied).map_err(|e| {
            warn!(error = %e, "refusing to replicate");
            RpcError::new(duplex_services::ErrorCode::Conflict, e.to_string())
        })?;
        // Entries the partner merged while their push's reply was lost (a
        // call that timed out, a link that dropped): push the recent ones
        // again, so a sync waiter gets their merge report before the
        // acknowledgement wakes it. Best effort: without it the waiter
        // answers that the outcome is unknown.
        if reply.applied > before {
            let from = (before + 1).max(reply.applied.saturating_sub(REPORT_REPUSH_MAX - 1));
            if let Err(e) = self.ship(client, partner, from, reply.applied).await {
                debug!(error = %e, from, to = reply.applied, "no merge report for entries acknowledged by hello");
            }
        }
        Ok(steps.into())
    }

    #[allow(clippy::too_many_arguments)]
    async fn drive(
        self: &Arc<Self>,
        client: &RouterClient,
        partner: &str,
        sender: &mut Sender,
        head_rx: &mut watch::Receiver<u64>,
        mut steps: VecDeque<SendStep>,
        last_persist: &mut Instant,
    ) -> Result<(), RpcError> {
        loop {
            while let Some(step) = steps.pop_front() {
                match step {
                    SendStep::Acked(v) => {
                        self.acked_tx.send_replace(v);
                        // The partner's hello is the truth; persisting our note
                        // is only for status after a restart, so rate-limit the
                        // extra fsync.
                        if last_persist.elapsed() > Duration::from_millis(500) {
                            *last_persist = Instant::now();
                            self.with_store(move |s| s.set_peer_acked(v))
                                .await?
                                .map_err(|e| RpcError::internal(format!("persisting ack: {e}")))?;
                        }
                    }
                    SendStep::Ship { from, to } => {
                        let acked = self.ship(client, partner, from, to).await?;
                        let more = if acked < to {
                            sender.on_gap(acked)
                        } else {
                            sender.on_ack(acked)
                        };
                        steps.extend(more);
                    }
                }
            }
            // Idle: wait for a local commit.
            tokio::select! {
                r = head_rx.changed() => {
                    if r.is_err() {
                        return Ok(());
                    }
                    let h = *head_rx.borrow_and_update();
                    steps.extend(sender.on_commit(h));
                }
                () = tokio::time::sleep(Duration::from_secs(1)) => {
                    let h = *head_rx.borrow();
                    steps.extend(sender.on_commit(h));
                    if steps.is_empty() {
                        let acked = sender.acked();
                        self.with_store(move |s| s.set_peer_acked(acked)).await?.map_err(|e| {
                            RpcError::internal(format!("persisting ack: {e}"))
                        })?;
                    }
                }
            }
        }
    }

    /// Ships entries `from..=to` in batches; returns what the partner has
    /// merged after the last batch.
    async fn ship(
        self: &Arc<Self>,
        client: &RouterClient,
        partner: &str,
        from: u64,
        to: u64,
    ) -> Result<u64, RpcError> {
        let mut next = from;
        let mut applied = from.saturating_sub(1);
        while next <= to {
            let limit = u32::try_from(to - next + 1)
                .unwrap_or(BATCH_ENTRIES)
                .min(BATCH_ENTRIES);
            let after = next - 1;
            let entries = self
                .with_store(move |s| {
                    let me = s.me().to_string();
                    s.entries_since(&me, after, limit)
                })
                .await?
                .map_err(|e| RpcError::internal(format!("reading log: {e}")))?;
            if entries.is_empty() {
                break;
            }
            if entries.first().map(|e| e.seq) != Some(next) {
                // Only entries the partner acknowledged are pruned, so this
                // means its database went back in time (restored or
                // replaced): it needs a full copy, not a log replay.
                return Err(RpcError::new(
                    duplex_services::ErrorCode::Conflict,
                    format!("the partner needs entry {next}, which was pruned from our log"),
                ));
            }
            let mut batch = Vec::new();
            let mut bytes = 0usize;
            for e in entries {
                let v = serde_json::to_value(&e).map_err(|e| RpcError::internal(e.to_string()))?;
                let n = v.to_string().len();
                if !batch.is_empty() && bytes + n > BATCH_BYTES {
                    break;
                }
                bytes += n;
                batch.push(v);
            }
            let last = next + u64::try_from(batch.len()).unwrap_or(0) - 1;
            let action_id = batch
                .first()
                .and_then(|e| e.get("action_id"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let call = client.call_on(
                partner,
                "config.repl_push",
                json!({"origin": self.me, "entries": batch}),
            );
            let reply = match action_id {
                // The partner's merge runs under the action that made the
                // change, so one admin action can be traced across both.
                Some(a) => duplex_services::action::scope(a, call).await,
                None => call.await,
            }
            .map_err(|e| e.into_rpc())?;
            let reply: PushReply = serde_json::from_value(reply)
                .map_err(|e| RpcError::internal(format!("bad push reply: {e}")))?;
            // Recorded before the acknowledgement wakes any sync waiter.
            if let Some(lost) = &reply.superseded {
                guard(&self.reports).note(next..=reply.applied.min(last), lost);
            }
            applied = reply.applied;
            if applied < last {
                return Ok(applied);
            }
            next = last + 1;
        }
        Ok(applied)
    }
}

/// The writes of `entries` the store holds a later stamp for. Right after
/// a fresh merge these are exactly the ones a concurrent write of ours
/// won; for an entry merged before (pushed again after a lost reply), a
/// later write may also count: reported the same, erring on the side of
/// "not known to have won".
fn superseded_in(s: &Store, entries: &[Entry], fresh: &[bool]) -> Vec<EntryReport> {
    let stamps = &s.state().stamps;
    let mut out = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        let lost = e
            .ops
            .iter()
            .filter(|op| {
                stamps
                    .get(&(op.kind, op.key.clone()))
                    .is_some_and(|held| *held > op.stamp)
            })
            .map(|op| SupersededOp {
                seq: e.seq,
                kind: op.kind,
                key: op.key.clone(),
            })
            .collect();
        out.push(EntryReport {
            seq: e.seq,
            fresh: fresh.get(i).copied().unwrap_or(false),
            lost,
        });
    }
    out
}

/// One pushed entry's merge report, as computed in the store.
struct EntryReport {
    seq: u64,
    /// Merged by this push (not a duplicate).
    fresh: bool,
    lost: Vec<SupersededOp>,
}

/// Prepares (password hashing, size check, parsing) and group-commits a
/// batch of applies; one result per request, in order.
fn commit_batch(s: &mut Store, inputs: Vec<(Value, Meta)>) -> Vec<Result<Applied, ApplyError>> {
    let mut prepared: Vec<Option<ApplyError>> = Vec::with_capacity(inputs.len());
    let mut good = Vec::new();
    for (mut changes, meta) in inputs {
        let parsed = hash_passwords_in(&mut changes, s.config()).and_then(|()| {
            let size = changes.to_string().len();
            if size > MAX_ENTRY_BYTES {
                return Err(Violation::invalid(
                    "changes",
                    format!("{size} bytes in one apply; split it (at most {MAX_ENTRY_BYTES})"),
                ));
            }
            parse_changes("changes", &changes)
        });
        match parsed {
            Ok(c) => {
                good.push((c, meta));
                prepared.push(None);
            }
            Err(v) => prepared.push(Some(v.into())),
        }
    }
    let mut applied = s.apply_many(good).into_iter();
    prepared
        .into_iter()
        .map(|p| match p {
            Some(e) => Err(e),
            None => applied.next().unwrap_or_else(|| {
                Err(ApplyError::Store(crate::error::StoreError::Corrupt {
                    what: "apply".into(),
                    reason: "missing result".into(),
                }))
            }),
        })
        .collect()
}
