//! The outside world pool-manager reaches through the router: the desired
//! state in config-keeper, the partner's pool-manager, and events. Behind a
//! trait so the manager can be tested with [`FakeCluster`].

use crate::core::disk::DiskInfo;
use duplex_api::change::{parse_changes, Change, ViolationClass};
use duplex_api::model::Config;
use duplex_api::validate;
use duplex_services::{ErrorCode, RouterClient, RpcError};
use serde_json::{json, Value};
use std::future::Future;
use std::sync::{Arc, Mutex};

/// The router side of pool-manager.
pub trait Cluster: Send + Sync + 'static {
    /// The whole desired state (`config.get`).
    fn config(&self) -> impl Future<Output = Result<Config, RpcError>> + Send;
    /// Applies changes (`config.apply`), all or nothing.
    fn apply(&self, changes: Vec<Change>) -> impl Future<Output = Result<(), RpcError>> + Send;
    /// The partner's own disk discovery (`disk.list {local: true}` there).
    fn partner_disks(
        &self,
        partner: &str,
    ) -> impl Future<Output = Result<Vec<DiskInfo>, RpcError>> + Send;
    /// Pools with anything active on the partner (`pool.active_local` there).
    fn partner_active(
        &self,
        partner: &str,
    ) -> impl Future<Output = Result<Vec<String>, RpcError>> + Send;
    /// Publishes an event locally and to the partner.
    fn publish(&self, topic: &str, data: Value) -> impl Future<Output = ()> + Send;
}

/// [`Cluster`] over the router.
#[derive(Clone)]
pub struct RouterCluster {
    router: RouterClient,
}

impl RouterCluster {
    /// Over `router`.
    pub fn new(router: RouterClient) -> Self {
        RouterCluster { router }
    }
}

impl Cluster for RouterCluster {
    async fn config(&self) -> Result<Config, RpcError> {
        let v = self.router.config_get_all(None).await?;
        Config::from_json(v.get("config").unwrap_or(&Value::Null)).map_err(|e| {
            RpcError::new(
                ErrorCode::Internal,
                format!("config.get answered an unreadable state: {e}"),
            )
        })
    }

    async fn apply(&self, changes: Vec<Change>) -> Result<(), RpcError> {
        let changes: Vec<Value> = changes.iter().map(Change::to_json).collect();
        // sync=false: a takeover records while the partner is fenced, and
        // replication ships the change when the partner is back.
        self.router
            .call("config.apply", json!({"changes": changes, "sync": false}))
            .await?;
        Ok(())
    }

    async fn partner_disks(&self, partner: &str) -> Result<Vec<DiskInfo>, RpcError> {
        let v = self
            .router
            .call_on(partner, "disk.list", json!({"local": true}))
            .await?;
        serde_json::from_value(v.get("disks").cloned().unwrap_or(Value::Null)).map_err(|e| {
            RpcError::new(
                ErrorCode::Internal,
                format!("partner's disk.list is unreadable: {e}"),
            )
        })
    }

    async fn partner_active(&self, partner: &str) -> Result<Vec<String>, RpcError> {
        let v = self
            .router
            .call_on(partner, "pool.active_local", json!({}))
            .await?;
        serde_json::from_value(v.get("pools").cloned().unwrap_or(Value::Null)).map_err(|e| {
            RpcError::new(
                ErrorCode::Internal,
                format!("partner's pool.active_local is unreadable: {e}"),
            )
        })
    }

    async fn publish(&self, topic: &str, data: Value) {
        if let Err(e) = self.router.publish(topic, data, true).await {
            tracing::warn!(topic, error = %e, "cannot publish event");
        }
    }
}

/// An in-memory [`Cluster`] for tests and `--sim` demos: config-keeper's own
/// validation on an in-memory state, a partner given as a closure-free
/// snapshot, and a log of published events.
#[derive(Clone, Default)]
pub struct FakeCluster {
    inner: Arc<Mutex<FakeInner>>,
}

#[derive(Default)]
struct FakeInner {
    config: Config,
    partner_disks: Option<Vec<DiskInfo>>,
    partner_active: Option<Vec<String>>,
    events: Vec<(String, Value)>,
    fail_applies: usize,
}

impl FakeCluster {
    /// A fake with a desired state holding `controllers` and the cluster
    /// singleton at `epoch`.
    pub fn new(controllers: &[&str], epoch: u64) -> FakeCluster {
        let f = FakeCluster::default();
        let mut changes = vec![json!({"op": "upsert", "kind": "cluster", "object":
            {"id": "5e0c5b4e-8a39-4b5e-9a0c-3f1f6c1d2e3f", "epoch": epoch, "secret_ref": "/etc/duplex/cluster.secret"}})];
        for (i, c) in controllers.iter().enumerate() {
            changes.push(json!({"op": "upsert", "kind": "controller", "object": {
                "id": c, "name": format!("controller {c}"),
                "interconnect": [format!("10.51.0.{}/24", i + 1)],
                "management": format!("192.0.2.{}/24", i + 10)}}));
        }
        let parsed = parse_changes("changes", &Value::Array(changes)).unwrap_or_default();
        if let Err(e) = f.apply_now(parsed) {
            tracing::error!(error = %e, "fake cluster seed refused");
        }
        f
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn apply_now(&self, changes: Vec<Change>) -> Result<(), RpcError> {
        let mut g = self.lock();
        if g.fail_applies > 0 {
            g.fail_applies -= 1;
            return Err(RpcError::unavailable(
                "config-keeper is unreachable (simulated)",
            ));
        }
        let mut work = g.config.clone();
        for (i, c) in changes.into_iter().enumerate() {
            let at = format!("changes[{i}]");
            let r = match c {
                Change::Upsert(mut o) => validate::normalise(&at, &mut o)
                    .and_then(|()| validate::check_upsert(&work, &at, &o))
                    .map(|()| work.put(o)),
                Change::Delete { kind, key } => {
                    validate::check_delete(&work, &at, kind, &key).map(|()| {
                        work.remove(kind, &key);
                    })
                }
            };
            r.map_err(|v| {
                let code = match v.class {
                    ViolationClass::Invalid => ErrorCode::InvalidParams,
                    ViolationClass::Conflict => ErrorCode::Conflict,
                    _ => ErrorCode::NotOwner,
                };
                RpcError::new(code, format!("{}: {}", v.field, v.reason)).with_field(v.field)
            })?;
        }
        g.config = work;
        Ok(())
    }

    /// Sets what the partner reports (`None`: unreachable).
    pub fn set_partner(&self, disks: Option<Vec<DiskInfo>>, active: Option<Vec<String>>) {
        let mut g = self.lock();
        g.partner_disks = disks;
        g.partner_active = active;
    }

    /// Makes the next `n` applies fail as if config-keeper were down.
    pub fn fail_applies(&self, n: usize) {
        self.lock().fail_applies = n;
    }

    /// Bumps the cluster epoch (what heartbeat does after fencing).
    pub fn bump_epoch(&self) -> u64 {
        let mut g = self.lock();
        match g.config.cluster.as_mut() {
            Some(c) => {
                c.epoch += 1;
                c.epoch
            }
            None => 0,
        }
    }

    /// A copy of the desired state.
    pub fn snapshot(&self) -> Config {
        self.lock().config.clone()
    }

    /// Events published so far.
    pub fn events(&self) -> Vec<(String, Value)> {
        self.lock().events.clone()
    }
}

impl Cluster for FakeCluster {
    async fn config(&self) -> Result<Config, RpcError> {
        Ok(self.snapshot())
    }

    async fn apply(&self, changes: Vec<Change>) -> Result<(), RpcError> {
        self.apply_now(changes)
    }

    async fn partner_disks(&self, partner: &str) -> Result<Vec<DiskInfo>, RpcError> {
        self.lock()
            .partner_disks
            .clone()
            .ok_or_else(|| RpcError::unavailable(format!("controller {partner} is unreachable")))
    }

    async fn partner_active(&self, partner: &str) -> Result<Vec<String>, RpcError> {
        self.lock()
            .partner_active
            .clone()
            .ok_or_else(|| RpcError::unavailable(format!("controller {partner} is unreachable")))
    }

    async fn publish(&self, topic: &str, data: Value) {
        self.lock().events.push((topic.to_string(), data));
    }
}
