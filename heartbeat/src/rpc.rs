//! `cluster.*` methods: status, maintenance, fence tests, the timeline, and
//! the planned moves (failover, giveback) run as timed router calls under
//! the caller's action_id.

use crate::backend::{FenceAgent, HeartbeatDisk};
use crate::driver::{can_move, init_area, lock, Command, Shared};
use crate::orchestrate::{self, Selection};
use duplex_services::{params, ErrorCode, RpcError, ServiceBuilder};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

/// What the handlers need from a running heartbeat.
pub struct Api {
    /// This controller.
    pub me: String,
    /// The partner.
    pub partner: String,
    /// Heartbeat disk paths, in order.
    pub disks: Vec<String>,
    /// The heartbeat disks themselves (for `cluster.init`).
    pub disk_handles: Vec<Arc<dyn HeartbeatDisk>>,
    /// The fence agents.
    pub agents: Vec<Arc<dyn FenceAgent>>,
    /// Shared with the driver.
    pub shared: Arc<Mutex<Shared>>,
    /// Commands to the driver.
    pub commands: mpsc::UnboundedSender<Command>,
}

/// Capabilities reported by `cluster.status` when heartbeat runs.
pub const CAPABILITIES: &[&str] = &[
    "interconnect_heartbeat",
    "disk_heartbeat",
    "fencing",
    "takeover",
    "failover",
    "giveback",
    "maintenance",
    "fence_test",
    "timeline",
    "init",
];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Maintenance {
    on: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Failover {
    #[serde(default)]
    pool: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Init {
    cluster_id: String,
}

fn not_configured() -> RpcError {
    RpcError::new(
        ErrorCode::Unavailable,
        "heartbeat is not configured on this controller (no [heartbeat] section)",
    )
}

/// Registers every `cluster.*` method; `api` is `None` when heartbeat is
/// not configured (status says so, the rest refuse).
pub fn register(svc: &mut ServiceBuilder, api: Option<Arc<Api>>) {
    let a = api.clone();
    svc.status_method("cluster", move || match &a {
        None => json!({"configured": false, "capabilities": [],
                       "reason": "no [heartbeat] section in the configuration"}),
        Some(api) => {
            let sh = lock(&api.shared);
            json!({
                "configured": true,
                "capabilities": CAPABILITIES,
                "state": sh.status,
                "links": sh.links,
                "write_latency": sh.write_latency,
                "disks": api.disks,
                "fence_agents": api.agents.iter().map(|a| a.name()).collect::<Vec<_>>(),
            })
        }
    });

    let a = api.clone();
    svc.method("cluster.maintenance", move |_ctx, p| {
        let a = a.clone();
        async move {
            let api = a.ok_or_else(not_configured)?;
            let p: Maintenance = params(p)?;
            api.commands
                .send(Command::Maintenance(p.on))
                .map_err(|_| RpcError::internal("the heartbeat driver has stopped"))?;
            Ok(json!({"maintenance": p.on}))
        }
    });

    let a = api.clone();
    svc.method("cluster.fence_test", move |_ctx, p| {
        let a = a.clone();
        async move {
            let api = a.ok_or_else(not_configured)?;
            let _: Empty = params(p)?;
            let mut out = Vec::new();
            for agent in &api.agents {
                let r = agent.test(&api.partner).await;
                out.push(match r {
                    Ok(detail) => json!({"agent": agent.name(), "ok": true, "detail": detail}),
                    Err(e) => json!({"agent": agent.name(), "ok": false, "detail": e}),
                });
            }
            Ok(json!({"target": api.partner, "agents": out}))
        }
    });

    let a = api.clone();
    svc.method("cluster.init", move |_ctx, p| {
        let a = a.clone();
        async move {
            let api = a.ok_or_else(not_configured)?;
            let p: Init = params(p)?;
            let id_ok = !p.cluster_id.is_empty()
                && p.cluster_id.len() <= crate::core::slot::CLUSTER_ID_LEN
                && p.cluster_id.bytes().all(|b| b.is_ascii_graphic());
            if !id_ok {
                return Err(RpcError::invalid_params(
                    "cluster_id",
                    "1-32 printable ASCII characters",
                ));
            }
            let mut out = Vec::new();
            let mut refused = Vec::new();
            for (path, disk) in api.disks.iter().zip(&api.disk_handles) {
                let disk = Arc::clone(disk);
                let (id, me, partner) = (p.cluster_id.clone(), api.me.clone(), api.partner.clone());
                // Blocking device I/O: off the async threads.
                let r = tokio::task::spawn_blocking(move || {
                    init_area(&*disk, &id, [me.as_str(), partner.as_str()])
                })
                .await
                .map_err(|e| RpcError::internal(format!("init task failed: {e}")))?;
                match r {
                    Ok(o) => out.push(json!({"disk": path, "outcome": o})),
                    Err(e) => refused.push(e),
                }
            }
            if !refused.is_empty() {
                return Err(RpcError::new(ErrorCode::Conflict, refused.join("; ")));
            }
            Ok(json!({"cluster_id": p.cluster_id, "disks": out}))
        }
    });

    let a = api.clone();
    svc.method("cluster.timeline", move |_ctx, p| {
        let a = a.clone();
        async move {
            let api = a.ok_or_else(not_configured)?;
            let _: Empty = params(p)?;
            let entries: Vec<Value> = lock(&api.shared).timeline.iter().cloned().collect();
            Ok(json!({"entries": entries}))
        }
    });

    for (method, kind) in [
        ("cluster.failover", "failover"),
        ("cluster.giveback", "giveback"),
    ] {
        // A planned move exports and imports pools (about 20 s for a small
        // pool in the lab): far past the router's default call timeout.
        svc.timeout(method, std::time::Duration::from_secs(900));
        let a = api.clone();
        svc.method(method, move |ctx, p| {
            let a = a.clone();
            async move {
                let api = a.ok_or_else(not_configured)?;
                let which = if kind == "failover" {
                    let p: Failover = params(p)?;
                    p.pool.map_or(Selection::AllOwned, Selection::One)
                } else {
                    let _: Empty = params(p)?;
                    Selection::HomeOf
                };
                can_move(&lock(&api.shared)).map_err(|e| RpcError::new(ErrorCode::Conflict, e))?;
                let out = orchestrate::handover(
                    &ctx.router,
                    kind,
                    &ctx.action_id,
                    &api.me,
                    &api.me,
                    &api.partner,
                    which,
                )
                .await;
                for al in &out.alerts {
                    let _ = ctx.router.publish("alert", json!(al), true).await;
                }
                let entry = out.entry.clone();
                lock(&api.shared).record(out.entry);
                if entry.ok {
                    Ok(json!(entry))
                } else {
                    Err(RpcError::new(
                        ErrorCode::BackendFailed,
                        out.alerts
                            .last()
                            .map(|a| a.message.clone())
                            .unwrap_or_else(|| format!("{kind} failed")),
                    ))
                }
            }
        });
    }
}
