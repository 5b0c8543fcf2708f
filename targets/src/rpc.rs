//! The `target.*` methods and the background driver (start-up rebuild,
//! `config.changed`, periodic drift checks). The one place where errors
//! become JSON-RPC codes:
//!
//! | error | code |
//! |---|---|
//! | bad parameter | `invalid_params` (`data.field`) |
//! | unknown pool | `not_found` (`field: pool`) |
//! | active asked where the pool's devices serve no data | `conflict` (`field: pool`) |
//! | desired state not read yet, config-keeper unreachable | `unavailable` |
//! | configfs refused a step or could not be read | `backend_failed` (`data.step`, `data.index`) |

use crate::backend::net::{NetBackend, NetError};
use crate::core::model::AccessState;
use crate::core::net::{floating, plan_net, Floating, NetStep};
use crate::error::{chain, ReconcileError, ReservationError};
use crate::reconciler::{Flip, FlipError, Outcome, Reconciler};
use duplex_api::methods::net::{self as nm, FloatingIp};
use duplex_api::methods::reservations::{
    ClearReservations, ClearReservationsResult, Reservations, ReservationsResult,
};
use duplex_api::methods::target::{
    self as tm, AccessStatesResult, FailedStep, ReconcileResult, SetAccessStateResult, ShowResult,
    StatusReply, StatusResult,
};
use duplex_api::methods::RpcMethod;
use duplex_api::model::{Config, Pool};
use duplex_api::topics;
use duplex_services::daemon::{self, Trigger};
use duplex_services::{ErrorCode, RouterClient, RpcError, ServiceBuilder};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;
use tokio::sync::Mutex;

/// What `target.status` reports besides the basics.
pub use duplex_api::methods::target::State as Status;

/// Floating addresses: the backend, the configuration's list and the
/// states forced by `net.up` / `net.down` (kept while the address's
/// ownership record is the one they were set under).
struct NetState {
    backend: NetBackend,
    me: String,
    floating: Vec<Floating>,
    owners: std::collections::BTreeMap<String, (String, u64)>,
    forced: std::collections::BTreeMap<String, (bool, String, u64)>,
}

/// State shared by the handlers and the driver.
#[derive(Clone)]
pub struct Shared {
    rec: Arc<Mutex<Reconciler>>,
    status: Arc<StdMutex<Status>>,
    net: Arc<Mutex<NetState>>,
    me: Arc<str>,
}

impl Shared {
    /// Wraps a reconciler and the floating-address backend of controller `me`.
    pub fn new(rec: Reconciler, net: NetBackend, me: &str) -> Shared {
        Shared {
            rec: Arc::new(Mutex::new(rec)),
            status: Arc::new(StdMutex::new(Status::default())),
            me: Arc::from(me),
            net: Arc::new(Mutex::new(NetState {
                backend: net,
                me: me.to_string(),
                floating: Vec::new(),
                owners: Default::default(),
                forced: Default::default(),
            })),
        }
    }

    /// Puts exactly the floating addresses this controller should hold on
    /// its interfaces; `cfg` refreshes the list first.
    pub async fn reconcile_net(&self, cfg: Option<&Config>) -> Result<Vec<NetStep>, NetError> {
        let mut n = self.net.lock().await;
        if let Some(cfg) = cfg {
            n.floating = floating(cfg);
            n.owners = cfg
                .floating_ips
                .values()
                .map(|f| (f.name.clone(), (f.owner.clone(), f.epoch)))
                .collect();
            let owners = n.owners.clone();
            n.forced
                .retain(|name, (_, o, e)| owners.get(name) == Some(&(o.clone(), *e)));
        }
        if n.floating.is_empty() {
            return Ok(Vec::new());
        }
        let observed = n.backend.observe().await?;
        let forced = n
            .forced
            .iter()
            .map(|(k, (up, _, _))| (k.clone(), *up))
            .collect();
        let steps = plan_net(&n.floating, &n.me, &forced, &observed);
        for s in &steps {
            n.backend.apply(s).await?;
        }
        Ok(steps)
    }

    /// A copy of the status.
    pub fn status(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    fn update(&self, f: impl FnOnce(&mut Status)) {
        if let Ok(mut s) = self.status.lock() {
            f(&mut s);
        }
    }

    /// Runs `f` on the reconciler on the blocking pool (configfs I/O blocks).
    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Reconciler) -> T + Send + 'static,
    ) -> Result<T, RpcError> {
        let mut guard = Arc::clone(&self.rec).lock_owned().await;
        tokio::task::spawn_blocking(move || f(&mut guard))
            .await
            .map_err(|e| RpcError::internal(format!("reconciler task: {e}")))
    }

    /// Keeps what a reconcile did in the status. True when steps failed
    /// that had not failed the time before: worth an alert (a step that
    /// keeps failing at every drift check is alerted once).
    fn record(&self, r: &Result<Outcome, ReconcileError>) -> bool {
        let mut fresh = false;
        self.update(|s| match r {
            Ok(o) => {
                let left_out: usize = o.failed.iter().map(|f| 1 + f.skipped.len()).sum();
                s.reconciles += 1;
                s.steps_applied += o.steps.len().saturating_sub(left_out) as u64;
                s.last_ms = o.ms;
                s.pending.clone_from(&o.pending);
                if !o.foreign.is_empty() {
                    s.foreign.clone_from(&o.foreign);
                }
                let before: BTreeSet<&str> = s.failed.iter().map(|f| f.step.as_str()).collect();
                fresh = o.failed.iter().any(|f| !before.contains(f.step.as_str()));
                s.last_error = failure_summary(&o.failed);
                s.failed.clone_from(&o.failed);
            }
            Err(e) => s.last_error = Some(chain(e)),
        });
        fresh
    }
}

/// One line for `last_error` when steps failed.
fn failure_summary(failed: &[FailedStep]) -> Option<String> {
    let first = failed.first()?;
    let skipped: usize = failed.iter().map(|f| f.skipped.len()).sum();
    Some(format!(
        "{} configfs step(s) refused, {skipped} left out with them, the rest applied; first: {}: {}",
        failed.len(),
        first.step,
        first.error
    ))
}

fn reconcile_error(e: &ReconcileError) -> RpcError {
    let mut err = RpcError::new(ErrorCode::BackendFailed, chain(e));
    if let ReconcileError::Step { index, step, .. } = e {
        err = err
            .with_data("index", json!(index))
            .with_data("step", json!(step));
    }
    err
}

fn reservation_error(e: ReservationError) -> RpcError {
    match e {
        e @ ReservationError::NotFound(_) => {
            RpcError::new(ErrorCode::NotFound, e.to_string()).with_field("volume")
        }
        e => RpcError::new(ErrorCode::BackendFailed, chain(&e)),
    }
}

fn flip_error(e: FlipError) -> RpcError {
    match e {
        FlipError::UnknownPool(p) => RpcError::new(
            ErrorCode::NotFound,
            format!("pool {p} is not in the configuration"),
        )
        .with_field("pool"),
        FlipError::NoConfig => RpcError::unavailable("the desired state has not been read yet"),
        e @ FlipError::NotServing { .. } => {
            RpcError::new(ErrorCode::Conflict, e.to_string()).with_field("pool")
        }
        FlipError::Apply(e) => reconcile_error(&e),
    }
}

/// Reads the `config` member of a `config.get` reply: the shared model's
/// wire form, read as strictly as config-keeper writes it.
fn read_config(reply: &Value) -> Result<Config, RpcError> {
    Config::from_json(reply.get("config").unwrap_or(&Value::Null))
        .map_err(|e| RpcError::internal(format!("config.get answered an unreadable state: {e}")))
}

/// Reads the desired state from config-keeper.
pub async fn fetch_config(router: &RouterClient) -> Result<Config, RpcError> {
    read_config(&router.config_get_all(None).await?)
}

/// Reads only the pools (their ownership records) from config-keeper.
pub async fn fetch_pools(router: &RouterClient) -> Result<BTreeMap<String, Pool>, RpcError> {
    let v = router.call("config.get", json!({"kind": "pool"})).await?;
    Ok(read_config(&v)?.pools)
}

/// Reconciles once: reads the desired state, then configfs when `fresh`.
pub async fn reconcile_now(
    shared: &Shared,
    router: &RouterClient,
    fresh: bool,
    dry_run: bool,
) -> Result<Outcome, RpcError> {
    let cfg = fetch_config(router).await?;
    shared
        .reconcile_with(cfg, Some(router), fresh, dry_run)
        .await
}

/// The capabilities `target.status` announces.
const CAPABILITIES: [&str; 7] = [
    "iscsi",
    "nvme_tcp",
    "alua",
    "ana",
    "acl",
    "chap",
    "drift_repair",
];

impl Shared {
    /// Reconciles configfs and the floating addresses to `cfg`; changes of
    /// the floating addresses are published through `router` when given
    /// (tests drive the simulators without one).
    pub async fn reconcile_with(
        &self,
        cfg: Config,
        router: Option<&RouterClient>,
        fresh: bool,
        dry_run: bool,
    ) -> Result<Outcome, RpcError> {
        let net_cfg = cfg.clone();
        let r = self
            .with(move |rec| {
                rec.set_config(cfg);
                rec.reconcile(fresh, dry_run)
            })
            .await?;
        if !dry_run {
            let fresh = self.record(&r);
            if let (true, Ok(o), Some(router)) = (fresh, &r, router) {
                self.alert_failed(router, &o.failed).await;
            }
            match self.reconcile_net(Some(&net_cfg)).await {
                Ok(steps) if !steps.is_empty() => {
                    tracing::info!(steps = ?steps, "floating addresses changed");
                    if let Some(router) = router {
                        let _ = router
                            .publish(topics::NET_CHANGED, json!({"steps": steps}), false)
                            .await;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %chain(&e), "floating addresses");
                    self.update(|s| s.last_error = Some(chain(&e)));
                }
            }
        }
        r.map_err(|e| reconcile_error(&e))
    }

    /// Raises the alert for steps the kernel refused: the objects they
    /// build are missing here until the next reconcile manages them.
    async fn alert_failed(&self, router: &RouterClient, failed: &[FailedStep]) {
        let message = failure_summary(failed).unwrap_or_default();
        tracing::warn!(failed = failed.len(), "{message}");
        let a = json!({"severity": "warning", "kind": "target_apply_failed", "controller": &*self.me,
                       "message": message, "failed": failed});
        if let Err(e) = router.publish(topics::ALERT, a, false).await {
            tracing::warn!(error = %e, "cannot publish the alert");
        }
    }

    /// targets' part of the `target.status` reply.
    pub fn status_reply(&self) -> StatusReply {
        StatusReply {
            state: self.status(),
            capabilities: CAPABILITIES.iter().map(|c| c.to_string()).collect(),
        }
    }

    /// The `target.show` reply: our part of configfs as read now.
    pub async fn show_reply(&self) -> Result<ShowResult, RpcError> {
        let o = self
            .with(|rec| rec.observe())
            .await?
            .map_err(|e| reconcile_error(&e))?;
        Ok(ShowResult {
            tree: json!(o.tree),
            foreign: o.foreign,
        })
    }

    /// The `target.reservations` reply: read from configfs now.
    pub async fn reservations(
        &self,
        volume: Option<String>,
    ) -> Result<ReservationsResult, RpcError> {
        let me = self.me.to_string();
        self.with(move |rec| rec.reservations(&me, volume.as_deref()))
            .await?
            .map_err(reservation_error)
    }

    /// Clears one volume's reservations here (`target.clear_reservations`
    /// without the audit record).
    pub async fn clear_reservations(
        &self,
        volume: String,
    ) -> Result<ClearReservationsResult, RpcError> {
        let me = self.me.to_string();
        self.with(move |rec| rec.clear_reservations(&me, &volume))
            .await?
            .map_err(reservation_error)
    }

    /// The `target.access_states` reply.
    pub async fn access_states_reply(&self) -> Result<AccessStatesResult, RpcError> {
        let (pools, overrides) = self
            .with(|rec| {
                (
                    rec.last().map(|d| d.pools.clone()).unwrap_or_default(),
                    rec.overrides().clone(),
                )
            })
            .await?;
        Ok(AccessStatesResult {
            pools: pools.iter().map(|(k, v)| (k.clone(), json!(v))).collect(),
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect(),
        })
    }

    /// The `net.status` reply.
    pub async fn net_status_reply(&self) -> nm::StatusResult {
        let n = self.net.lock().await;
        let held = n.backend.observe().await.unwrap_or_default();
        let floating_ips = n
            .floating
            .iter()
            .map(|f| FloatingIp {
                name: f.name.clone(),
                address: format!("{}/{}", f.addr.address, f.addr.prefix),
                interface: f.addr.interface.clone(),
                owner: f.owner.clone(),
                held_here: held.contains(&f.addr),
                forced: n.forced.get(&f.name).map(|(up, _, _)| *up),
            })
            .collect();
        nm::StatusResult { floating_ips }
    }

    /// Flips `pool` to `state` with the ownership records known now; the
    /// reply of `target.set_access_state` without its `handler_ms`.
    pub async fn flip(&self, pool: String, state: AccessState) -> Result<Flip, RpcError> {
        self.with(move |rec| rec.set_access_state(&pool, state))
            .await?
            .map_err(flip_error)
    }
}

/// Registers the typed method `M` with the shared state.
fn typed<M, F, Fut>(svc: &mut ServiceBuilder, shared: &Shared, f: F)
where
    M: RpcMethod,
    F: Fn(Shared, duplex_services::Ctx, M::Params) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<M::Result, RpcError>> + Send + 'static,
{
    let sh = shared.clone();
    svc.typed::<M, _, _>(move |ctx, p| f(sh.clone(), ctx, p));
}

/// Declares the methods.
pub fn register(svc: &mut ServiceBuilder, shared: &Shared) {
    let sh = shared.clone();
    svc.status_method::<tm::Status, _>(move |service| StatusResult {
        service,
        status: sh.status_reply(),
    });

    typed::<tm::Reconcile, _, _>(svc, shared, |sh, ctx, p| async move {
        let out = reconcile_now(&sh, &ctx.router, true, p.dry_run).await?;
        tracing::info!(
            steps = out.steps.len(),
            ms = out.ms,
            dry_run = p.dry_run,
            "reconciled"
        );
        Ok(ReconcileResult {
            dry_run: p.dry_run,
            steps: out.steps.iter().map(|s| json!(s)).collect(),
            pending: out.pending,
            foreign: out.foreign,
            ms: out.ms,
            failed: out.failed,
        })
    });
    typed::<tm::Show, _, _>(
        svc,
        shared,
        |sh, _ctx, _p| async move { sh.show_reply().await },
    );
    typed::<tm::AccessStates, _, _>(svc, shared, |sh, _ctx, _p| async move {
        sh.access_states_reply().await
    });
    typed::<Reservations, _, _>(svc, shared, |sh, _ctx, p| async move {
        sh.reservations(p.volume).await
    });
    typed::<ClearReservations, _, _>(svc, shared, |sh, ctx, p| async move {
        let mut r = sh.clear_reservations(p.volume).await?;
        tracing::warn!(volume = %r.volume, registrations = r.before.registrations.len(),
            holder = ?r.before.holder.as_ref().map(|h| &h.initiator), mappings = r.mappings_cycled,
            file_removed = r.file_removed, "persistent reservations cleared");
        // The audit record: who cleared what, under the caller's action_id.
        let detail = json!({"controller": r.controller, "volume": r.volume, "caller": ctx.caller,
            "before": r.before, "mappings_cycled": r.mappings_cycled, "file_removed": r.file_removed});
        match ctx
            .call(
                "config.record_event",
                json!({"kind": "target.clear_reservations", "detail": detail}),
            )
            .await
        {
            Ok(_) => r.audited = true,
            Err(e) => {
                tracing::warn!(error = %e, "the clear of persistent reservations was not recorded in the event log")
            }
        }
        Ok(r)
    });
    typed::<nm::Up, _, _>(svc, shared, |sh, ctx, p| net_force(sh, ctx, p.name, true));
    typed::<nm::Down, _, _>(svc, shared, |sh, ctx, p| net_force(sh, ctx, p.name, false));
    typed::<nm::Status, _, _>(svc, shared, |sh, _ctx, _p| async move {
        Ok(sh.net_status_reply().await)
    });
    typed::<tm::SetAccessState, _, _>(svc, shared, |sh, ctx, p| async move {
        let state: AccessState = serde_json::from_value(Value::String(p.state))
            .map_err(|e| RpcError::invalid_params("state", e.to_string()))?;
        if state == AccessState::Transitioning {
            return Err(RpcError::invalid_params(
                "state",
                "transitioning is set by the service itself while a flip runs",
            ));
        }
        let t = std::time::Instant::now();
        // The latest ownership records, so the override is tied to them.
        match fetch_pools(&ctx.router).await {
            Ok(pools) => sh.with(move |rec| rec.set_pools(pools)).await?,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the pools' ownership records; using the last known")
            }
        }
        let pool = p.pool.clone();
        let f = sh.flip(p.pool, state).await?;
        let handler_ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(pool = %pool, state = ?f.state, volumes = f.volumes, writes = f.steps, ms = f.ms, handler_ms, "access state set");
        let flip = match json!(f) {
            Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        let r = SetAccessStateResult { flip, handler_ms };
        if let Err(e) = ctx
            .router
            .publish(topics::TARGET_ACCESS_STATE, json!(r), true)
            .await
        {
            tracing::warn!(error = %e, "cannot publish target.access_state");
        }
        Ok(r)
    });
}

/// `net.up` (`up`) and `net.down`: forces the floating address `name` here
/// while its ownership record stays the same.
async fn net_force(
    sh: Shared,
    ctx: duplex_services::Ctx,
    name: String,
    up: bool,
) -> Result<nm::Changed, RpcError> {
    let cfg = fetch_config(&ctx.router).await?;
    let Some(f) = cfg.floating_ips.get(&name) else {
        return Err(RpcError::new(
            ErrorCode::NotFound,
            format!("floating IP {name} is not in the configuration"),
        )
        .with_field("name"));
    };
    let record = (up, f.owner.clone(), f.epoch);
    sh.net.lock().await.forced.insert(name.clone(), record);
    // The refresh keeps the forced state: its ownership record is current.
    let steps = sh
        .reconcile_net(Some(&cfg))
        .await
        .map_err(|e| RpcError::new(ErrorCode::BackendFailed, chain(&e)))?;
    let r = nm::Changed {
        name,
        up,
        steps: steps.iter().map(|s| json!(s)).collect(),
    };
    let _ = ctx
        .router
        .publish(topics::NET_CHANGED, json!(r), true)
        .await;
    Ok(r)
}

/// Events after which the desired tree may differ: a new desired state, or
/// pool-manager having swapped per-volume devices (an import makes a pool's
/// devices serve data, so it may turn active now rather than at the next
/// drift check).
const TRIGGERS: [&str; 6] = [
    topics::CONFIG_CHANGED,
    topics::POOL_IMPORTED,
    topics::POOL_TAKEN_OVER,
    topics::POOL_EXPORTED,
    topics::VOLUME_CREATED,
    topics::VOLUME_RESIZED,
];

/// How long start-up keeps trying refused steps at the retry pace.
const STARTUP_RETRY: Duration = Duration::from_secs(30);

/// The background driver: rebuild at start (configfs is volatile), follow
/// `config.changed` and pool-manager's device events, and check for drift
/// every `drift_every`.
pub async fn drive(shared: Shared, router: RouterClient, drift_every: Duration) {
    // Start-up: read configfs, build everything the desired state wants.
    // Steps the kernel refuses at start-up are tried again for a while at
    // the retry pace (an address not up yet refuses its portal), then at
    // each drift check.
    let mut delay = Duration::from_millis(200);
    let started = std::time::Instant::now();
    let mut announced = false;
    loop {
        match reconcile_now(&shared, &router, true, false).await {
            Ok(o) => {
                if !announced {
                    announced = true;
                    tracing::info!(
                        steps = o.steps.len(),
                        ms = o.ms,
                        pending = o.pending.len(),
                        failed = o.failed.len(),
                        "configfs rebuilt from the desired state"
                    );
                    shared.update(|s| s.ready = true);
                    let _ = router
                        .publish(
                            topics::TARGET_RECONCILED,
                            json!({"steps": o.steps.len(), "ms": o.ms, "boot": true}),
                            false,
                        )
                        .await;
                }
                if o.failed.is_empty() || started.elapsed() >= STARTUP_RETRY {
                    break;
                }
                tracing::warn!(
                    failed = o.failed.len(),
                    "configfs steps refused at start-up; trying them again"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "start-up reconcile failed; retrying");
                shared.update(|s| s.last_error = Some(e.to_string()));
            }
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
    let r = router.clone();
    daemon::on_events_or_timer(
        router,
        &TRIGGERS,
        Some(drift_every),
        "targets",
        move |trigger| {
            let (shared, router) = (shared.clone(), r.clone());
            async move {
                let Trigger::Event(ev) = trigger else {
                    return check_drift(&shared, &router).await;
                };
                match reconcile_now(&shared, &router, false, false).await {
                    Ok(o) if !o.steps.is_empty() => {
                        tracing::info!(steps = o.steps.len(), ms = o.ms, "configuration applied");
                        let _ = router
                            .publish(
                                topics::TARGET_RECONCILED,
                                json!({"steps": o.steps.len(), "ms": o.ms}),
                                false,
                            )
                            .await;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, topic = %ev.topic, "reconcile after an event failed")
                    }
                }
            }
        },
    )
    .await;
}

/// Reads configfs; if it differs from what we applied, repairs it and
/// reports what was found.
async fn check_drift(shared: &Shared, router: &RouterClient) {
    let r = reconcile_now(shared, router, true, false).await;
    match r {
        Ok(o) if o.drift => {
            tracing::warn!(
                steps = o.steps.len(),
                "out-of-band configfs changes repaired"
            );
            shared.update(|s| s.drift_repairs += 1);
            let detail = json!({"repaired": o.steps, "foreign": o.foreign});
            let _ = router
                .publish(topics::TARGET_DRIFT, detail.clone(), false)
                .await;
            let _ = router
                .call(
                    "config.record_event",
                    json!({"kind": "target.drift", "detail": detail}),
                )
                .await;
        }
        Ok(o) if !o.steps.is_empty() => {
            // A desired state newer than the last config.changed handled.
            tracing::info!(
                steps = o.steps.len(),
                "configuration applied by the drift check"
            );
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "drift check failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sim::SimBackend;
    use crate::core::desired::Local;

    fn failing(steps: &[&str]) -> Result<Outcome, ReconcileError> {
        Ok(Outcome {
            steps: steps.iter().map(|s| s.to_string()).collect(),
            failed: steps
                .iter()
                .map(|s| FailedStep {
                    step: s.to_string(),
                    error: "EADDRNOTAVAIL".into(),
                    skipped: Vec::new(),
                })
                .collect(),
            ..Outcome::default()
        })
    }

    #[test]
    fn a_refused_step_is_alerted_once_while_it_keeps_failing() {
        let sh = Shared::new(
            Reconciler::new(Box::new(SimBackend::new()), Local::new("A")),
            NetBackend::sim(),
            "A",
        );
        assert!(sh.record(&failing(&["mkdir a"])), "new: alert");
        assert!(
            !sh.record(&failing(&["mkdir a"])),
            "the same again: no alert"
        );
        let s = sh.status();
        assert_eq!(s.failed.len(), 1);
        assert!(s.last_error.is_some_and(|e| e.contains("mkdir a")));
        assert_eq!(
            s.steps_applied, 0,
            "a refused step is not counted as applied"
        );
        assert!(
            sh.record(&failing(&["mkdir a", "mkdir b"])),
            "another one: alert"
        );
        assert!(!sh.record(&failing(&[])), "all applied: nothing to alert");
        let s = sh.status();
        assert!(s.failed.is_empty() && s.last_error.is_none());
        assert!(
            sh.record(&failing(&["mkdir a"])),
            "failing again after a success: alert"
        );
    }
}
