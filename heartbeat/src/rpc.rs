//! `cluster.*` methods: status, maintenance, fence tests, the timeline, and
//! the planned moves (failover, giveback) run as timed router calls under
//! the caller's action_id.

use crate::backend::{FenceAgent, HeartbeatDisk};
use crate::driver::{can_move, init_area, lock, move_to_partner, Command, InitOutcome, Shared};
use crate::orchestrate::Selection;
use duplex_api::methods::cluster::{
    self as cm, AgentCheck, FenceTestResult, Heartbeat, InitDisk, InitResult, MaintenanceResult,
    MoveResult, StatusResult, TimelineResult,
};
use duplex_api::methods::RpcMethod;
use duplex_services::{ErrorCode, RpcError, ServiceBuilder};
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

fn not_configured() -> RpcError {
    RpcError::new(
        ErrorCode::Unavailable,
        "heartbeat is not configured on this controller (no [heartbeat] section)",
    )
}

/// heartbeat's part of `cluster.status`.
fn heartbeat_status(api: Option<&Api>) -> Heartbeat {
    let Some(api) = api else {
        return Heartbeat {
            configured: false,
            capabilities: Vec::new(),
            reason: Some("no [heartbeat] section in the configuration".into()),
            state: None,
            links: None,
            write_latency: None,
            disks: None,
            fence_agents: None,
            fence_joined: None,
        };
    };
    let sh = lock(&api.shared);
    Heartbeat {
        configured: true,
        capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
        reason: None,
        state: Some(json!(sh.status)),
        links: Some(json!(sh.links)),
        write_latency: Some(json!(sh.write_latency)),
        disks: Some(api.disks.clone()),
        fence_agents: Some(api.agents.iter().map(|a| a.name().to_string()).collect()),
        fence_joined: Some(sh.fence_joined),
    }
}

/// Registers the typed method `M` answered by a configured heartbeat:
/// without `[heartbeat]` it refuses with `unavailable`.
fn configured<M, F, Fut>(svc: &mut ServiceBuilder, api: &Option<Arc<Api>>, f: F)
where
    M: RpcMethod,
    F: Fn(Arc<Api>, duplex_services::Ctx, M::Params) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<M::Result, RpcError>> + Send + 'static,
{
    let a = api.clone();
    let f = Arc::new(f);
    svc.typed::<M, _, _>(move |ctx, p| {
        let (a, f) = (a.clone(), Arc::clone(&f));
        async move { f(a.ok_or_else(not_configured)?, ctx, p).await }
    });
}

/// Registers every `cluster.*` method; `api` is `None` when heartbeat is
/// not configured (status says so, the rest refuse).
pub fn register(svc: &mut ServiceBuilder, api: Option<Arc<Api>>) {
    let a = api.clone();
    svc.status_method::<cm::Status, _>(move |service| StatusResult {
        service,
        heartbeat: heartbeat_status(a.as_deref()),
    });

    configured::<cm::Maintenance, _, _>(svc, &api, |api, _ctx, p| async move {
        api.commands
            .send(Command::Maintenance(p.on))
            .map_err(|_| RpcError::internal("the heartbeat driver has stopped"))?;
        Ok(MaintenanceResult { maintenance: p.on })
    });

    configured::<cm::FenceTest, _, _>(svc, &api, |api, _ctx, _p| async move {
        let mut agents = Vec::new();
        for agent in &api.agents {
            let (ok, detail) = match agent.test(&api.partner).await {
                Ok(d) => (true, d),
                Err(e) => (false, e),
            };
            agents.push(AgentCheck {
                agent: agent.name().to_string(),
                ok,
                detail,
            });
        }
        Ok(FenceTestResult {
            target: api.partner.clone(),
            agents,
        })
    });

    configured::<cm::Init, _, _>(svc, &api, |api, _ctx, p| async move {
        let id_ok = !p.cluster_id.is_empty()
            && p.cluster_id.len() <= crate::core::slot::CLUSTER_ID_LEN
            && p.cluster_id.bytes().all(|b| b.is_ascii_graphic());
        if !id_ok {
            return Err(RpcError::invalid_params(
                "cluster_id",
                "1-32 printable ASCII characters",
            ));
        }
        let mut disks = Vec::new();
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
                Ok(o) => disks.push(InitDisk {
                    disk: path.clone(),
                    outcome: match o {
                        InitOutcome::Created => "created",
                        InitOutcome::Already => "already",
                    }
                    .into(),
                }),
                Err(e) => refused.push(e),
            }
        }
        if !refused.is_empty() {
            return Err(RpcError::new(ErrorCode::Conflict, refused.join("; ")));
        }
        Ok(InitResult {
            cluster_id: p.cluster_id,
            disks,
        })
    });

    configured::<cm::Timeline, _, _>(svc, &api, |api, _ctx, _p| async move {
        let entries: Vec<Value> = lock(&api.shared).timeline.iter().cloned().collect();
        Ok(TimelineResult { entries })
    });

    // A planned move exports and imports pools (about 20 s for a small
    // pool in the lab): far past the router's default call timeout.
    for method in [cm::Failover::NAME, cm::Giveback::NAME] {
        svc.timeout(method, std::time::Duration::from_secs(900));
    }
    configured::<cm::Failover, _, _>(svc, &api, |api, ctx, p| {
        let which = p.pool.map_or(Selection::AllOwned, Selection::One);
        planned_move(api, ctx, "failover", which)
    });
    configured::<cm::Giveback, _, _>(svc, &api, |api, ctx, _p| {
        planned_move(api, ctx, "giveback", Selection::HomeOf)
    });
}

/// Runs a planned move (`kind`: failover or giveback) of `which` pools and
/// answers its timeline entry.
async fn planned_move(
    api: Arc<Api>,
    ctx: duplex_services::Ctx,
    kind: &'static str,
    which: Selection,
) -> Result<MoveResult, RpcError> {
    can_move(&lock(&api.shared)).map_err(|e| RpcError::new(ErrorCode::Conflict, e))?;
    let (entry, failed) = move_to_partner(
        &ctx.router,
        &api.shared,
        &ctx.action_id,
        &api.me,
        &api.partner,
        kind,
        which,
    )
    .await;
    if let Some(reason) = failed {
        return Err(RpcError::new(ErrorCode::BackendFailed, reason));
    }
    match json!(entry) {
        Value::Object(m) => Ok(MoveResult(m)),
        other => Err(RpcError::internal(format!(
            "{kind}: the timeline entry is not an object: {other}"
        ))),
    }
}
