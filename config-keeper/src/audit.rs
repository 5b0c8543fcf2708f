//! The audit log (docs/config-keeper.md, *Audit log*): the router hands
//! this controller's records over with `config.audit_append`; they are
//! numbered and stored (store::audit), then shipped to the partner's
//! keeper with `config.repl_audit`, which keeps their numbers. Either
//! controller answers `config.audit` with both controllers' entries, so
//! the log of a controller that died stays readable on the survivor.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use duplex_api::methods::config::{AuditEntry, AuditRecord};
use duplex_services::client::RouterClient;
use duplex_services::{ErrorCode, RpcError};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use tracing::{debug, info, warn};

use crate::keeper::{now_ms, Keeper};

/// Entries per `config.repl_audit` call (each record's parameters are
/// capped by the router, so a batch stays far below the message limit).
pub const REPL_BATCH: u32 = 200;
/// The most records one `config.audit_append` or entries one
/// `config.repl_audit` may carry.
pub const MAX_PER_CALL: usize = 1_000;
/// The most entries one `config.audit` answers.
pub const MAX_LIST: u32 = 1_000;

/// What the keeper tracks of the audit log between calls.
#[derive(Debug)]
pub struct AuditState {
    head_tx: watch::Sender<u64>,
    /// How far the partner holds our entries; `u64::MAX` while unknown.
    partner_has: AtomicU64,
}

impl AuditState {
    /// State for a store whose own audit head is `head`.
    pub fn new(head: u64) -> Self {
        AuditState {
            head_tx: watch::channel(head).0,
            partner_has: AtomicU64::new(u64::MAX),
        }
    }

    /// How far the partner is known to hold our entries.
    pub fn partner_has(&self) -> Option<u64> {
        match self.partner_has.load(Ordering::Relaxed) {
            u64::MAX => None,
            n => Some(n),
        }
    }
}

/// `config.repl_audit` params: the sender's entries after what the
/// receiver holds (none: only asks how far that is).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplAuditParams {
    /// The sending controller; must be the partner.
    pub origin: String,
    /// Its entries, oldest first.
    #[serde(default)]
    pub entries: Vec<AuditEntry>,
}

/// `config.repl_audit` result.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReplAuditReply {
    /// The highest number of the sender's entries held here.
    pub head: u64,
}

fn store_err(e: crate::error::StoreError) -> RpcError {
    RpcError::internal(e.to_string())
}

/// Numbers and stores the router's records; only the router may call.
pub async fn append(
    k: &Arc<Keeper>,
    caller: Option<&str>,
    records: Vec<AuditRecord>,
    dropped: u64,
) -> Result<u64, RpcError> {
    if caller != Some("router") {
        return Err(RpcError::new(
            ErrorCode::Unauthorized,
            format!("only the router records audit entries, not {caller:?}"),
        )
        .with_field("caller"));
    }
    if records.len() > MAX_PER_CALL {
        return Err(RpcError::invalid_params(
            "records",
            format!("at most {MAX_PER_CALL} per call, got {}", records.len()),
        ));
    }
    let seq = k
        .with_store(move |s| s.audit_append(&records, dropped, now_ms()))
        .await?
        .map_err(store_err)?;
    k.audit().head_tx.send_replace(seq);
    Ok(seq)
}

/// Stores the partner's entries, checked like anything else it sends:
/// the origin is the partner (the channel already proved who sent it),
/// and every entry names it.
pub async fn merge(k: &Arc<Keeper>, p: ReplAuditParams) -> Result<ReplAuditReply, RpcError> {
    if k.partner() != Some(p.origin.as_str()) {
        return Err(RpcError::new(
            ErrorCode::Unauthorized,
            format!(
                "audit entries of {:?} are not the partner's ({:?})",
                p.origin,
                k.partner()
            ),
        )
        .with_field("origin"));
    }
    if p.entries.len() > MAX_PER_CALL {
        return Err(RpcError::invalid_params(
            "entries",
            format!("at most {MAX_PER_CALL} per call, got {}", p.entries.len()),
        ));
    }
    if let Some(e) = p
        .entries
        .iter()
        .find(|e| e.controller != p.origin || e.seq == 0)
    {
        return Err(RpcError::invalid_params(
            "entries",
            format!(
                "entry {}/{} is not a numbered entry of {}",
                e.controller, e.seq, p.origin
            ),
        ));
    }
    let head = k
        .with_store(move |s| s.audit_merge(&p.origin, &p.entries))
        .await?
        .map_err(store_err)?;
    Ok(ReplAuditReply { head })
}

/// `config.audit`: newest first, both controllers.
pub async fn list(
    k: &Arc<Keeper>,
    limit: Option<u32>,
    before_ms: Option<u64>,
    controller: Option<String>,
) -> Result<(Vec<AuditEntry>, u64), RpcError> {
    let limit = limit.unwrap_or(100);
    if limit == 0 || limit > MAX_LIST {
        return Err(RpcError::invalid_params(
            "limit",
            format!("must be 1 to {MAX_LIST}"),
        ));
    }
    let partner_has = k.audit().partner_has().unwrap_or(0);
    let has_partner = k.partner().is_some();
    k.with_store(move |s| -> Result<_, crate::error::StoreError> {
        let entries = s.audit_list(limit, before_ms, controller.as_deref())?;
        let unreplicated = if has_partner {
            s.audit_count_after(partner_has)?
        } else {
            0
        };
        Ok((entries, unreplicated))
    })
    .await?
    .map_err(store_err)
}

impl Keeper {
    /// Ships this controller's audit entries to the partner's keeper as
    /// they come (and every few seconds), from where the partner says it
    /// stands. Never returns.
    pub async fn run_audit_sender(self: Arc<Self>, client: RouterClient) {
        let Some(partner) = self.partner().map(str::to_string) else {
            return;
        };
        let mut head_rx = self.audit().head_tx.subscribe();
        let mut failing = false;
        loop {
            match self.ship_audit(&client, &partner).await {
                Ok(()) => {
                    if failing {
                        info!(partner = %partner, "audit entries reach the partner again");
                    }
                    failing = false;
                    tokio::select! {
                        _ = head_rx.changed() => {}
                        () = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
                Err(e) => {
                    self.audit().partner_has.store(u64::MAX, Ordering::Relaxed);
                    if !failing {
                        debug!(partner = %partner, error = %e, "cannot ship audit entries; retrying");
                    }
                    failing = true;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn ship_audit(
        self: &Arc<Self>,
        client: &RouterClient,
        partner: &str,
    ) -> Result<(), RpcError> {
        let me = self.me().to_string();
        let mut theirs = match self.audit().partner_has() {
            Some(n) => n,
            None => {
                let h = self.repl_audit(client, partner, Vec::new()).await?;
                // A rebuilt database must not give numbers the partner
                // already holds.
                let mine = self
                    .with_store(move |s| -> Result<u64, crate::error::StoreError> {
                        s.audit_raise_floor(h)?;
                        s.audit_head(s.me())
                    })
                    .await?
                    .map_err(store_err)?;
                if h > 0 && mine == h {
                    debug!(
                        head = h,
                        "audit numbering continues after the partner's copy"
                    );
                }
                self.audit().partner_has.store(h, Ordering::Relaxed);
                h
            }
        };
        loop {
            let (m, after) = (me.clone(), theirs);
            let batch = self
                .with_store(move |s| s.audit_after(&m, after, REPL_BATCH))
                .await?
                .map_err(store_err)?;
            let Some(last) = batch.last().map(|e| e.seq) else {
                return Ok(());
            };
            let h = self.repl_audit(client, partner, batch).await?;
            if h < last {
                warn!(
                    sent = last,
                    held = h,
                    "the partner did not keep the audit entries sent"
                );
                return Err(RpcError::internal("audit entries not kept by the partner"));
            }
            theirs = h;
            self.audit().partner_has.store(h, Ordering::Relaxed);
        }
    }

    async fn repl_audit(
        &self,
        client: &RouterClient,
        partner: &str,
        entries: Vec<AuditEntry>,
    ) -> Result<u64, RpcError> {
        let p = ReplAuditParams {
            origin: self.me().to_string(),
            entries,
        };
        let v = client
            .call_on(partner, "config.repl_audit", json!(p))
            .await
            .map_err(|e| e.into_rpc())?;
        let r: ReplAuditReply = serde_json::from_value(v)
            .map_err(|e| RpcError::internal(format!("bad repl_audit reply: {e}")))?;
        Ok(r.head)
    }
}
