//! Takeover and planned moves as router calls, every step timed, under the
//! caller's action_id (the router client stamps the current one).
//!
//! Takeover (DESIGN 4.5): record the new owners under the new epoch in
//! config-keeper (without waiting for the fenced partner: `sync=false`),
//! `pool.takeover` for each of the partner's pools (one failing does not
//! stop the others; it raises an alert), port groups active, then the
//! `cluster.takeover_done` event.
//!
//! Planned move (failover and giveback; the order of `docs` ARCHITECTURE
//! "planned move"): old owner standby, new owner recorded under a new
//! epoch, `pool.export {to}` on the old owner, `pool.import` on the new
//! one, active there.

use crate::backend::BoxFuture;
use crate::core::types::Epoch;
use duplex_api::methods::pool;
use duplex_services::RouterClient;
use futures_util::future::join_all;
use serde::Serialize;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How much longer than the router's limit a long call waits: the router's
/// own timeout error should be what ends it.
const LONG_CALL_MARGIN: Duration = Duration::from_secs(5);

/// A way to call methods through the router (a trait so the plans can be
/// tested against a recording fake).
pub trait Calls: Send + Sync {
    /// Calls `method` on `controller` (`None`: this one).
    fn call<'a>(
        &'a self,
        controller: Option<&'a str>,
        method: &'a str,
        params: Value,
    ) -> BoxFuture<'a, Result<Value, String>>;
}

impl Calls for RouterClient {
    fn call<'a>(
        &'a self,
        controller: Option<&'a str>,
        method: &'a str,
        params: Value,
    ) -> BoxFuture<'a, Result<Value, String>> {
        // An import or takeover of a large pool on a loaded controller
        // outlasts the client's default timeout: wait as long as the router
        // lets pool-manager take, or a move still under way is reported
        // failed (and its next steps skipped).
        Box::pin(async move {
            let r = if pool::LONG_METHODS.contains(&method) {
                let within = pool::LONG_CALL + LONG_CALL_MARGIN;
                self.call_at_within(controller, method, params, within)
                    .await
            } else {
                self.call_at(controller, method, params).await
            };
            r.map_err(|e| e.to_string())
        })
    }
}

/// One timed step.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    /// What it did (`fence`, `record`, `pool.takeover`, `active`...).
    pub name: String,
    /// The pool it concerned, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// How long it took.
    pub ms: u64,
    /// True when it succeeded.
    pub ok: bool,
    /// The error, or what proved it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// One takeover, failover or giveback, for `cluster.timeline`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    /// `takeover`, `failover` or `giveback`.
    pub kind: String,
    /// The action it ran under.
    pub action_id: String,
    /// Wall-clock start (milliseconds since the Unix epoch), for people.
    pub started_unix_ms: u64,
    /// The cluster epoch recorded.
    pub epoch: u64,
    /// From which controller to which.
    pub from: String,
    /// To which controller.
    pub to: String,
    /// The pools moved (or attempted).
    pub pools: Vec<String>,
    /// Every step in order.
    pub steps: Vec<Step>,
    /// True when every step succeeded.
    pub ok: bool,
}

/// Alerts raised by an orchestration, for the driver to publish.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Alert {
    /// `warning` or `critical`.
    pub severity: String,
    /// Machine-readable kind.
    pub kind: String,
    /// The pool concerned.
    pub pool: Option<String>,
    /// For people.
    pub message: String,
}

/// The outcome of an orchestration.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// For the timeline.
    pub entry: Entry,
    /// To publish.
    pub alerts: Vec<Alert>,
}

struct Recorder {
    steps: Vec<Step>,
    alerts: Vec<Alert>,
}

impl Recorder {
    async fn step<'a>(
        &mut self,
        name: &str,
        pool: Option<&str>,
        fut: BoxFuture<'a, Result<Value, String>>,
    ) -> Result<Value, String> {
        let t = Instant::now();
        let r = fut.await;
        let ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
        tracing::info!(step = name, pool, ms, ok = r.is_ok(), "orchestration step");
        self.steps.push(Step {
            name: name.into(),
            pool: pool.map(str::to_string),
            ms,
            ok: r.is_ok(),
            detail: r.as_ref().err().cloned().unwrap_or_default(),
        });
        r
    }

    /// The step `name` about `pool`; when it fails, also the critical
    /// alert `kind` saying "pool P `what`: error". True when it succeeded.
    async fn step_or_alert<'a>(
        &mut self,
        name: &str,
        pool: &str,
        fut: BoxFuture<'a, Result<Value, String>>,
        (kind, what): (&str, &str),
    ) -> bool {
        match self.step(name, Some(pool), fut).await {
            Ok(_) => true,
            Err(e) => {
                let message = format!("pool {pool} {what}: {e}");
                self.alerts.push(Alert::critical(kind, Some(pool), message));
                false
            }
        }
    }

    /// The `config.get` step on controller `at` (this one when `None`),
    /// parsed into the cluster object, its epoch and the pools.
    async fn read_config(
        &mut self,
        calls: &dyn Calls,
        at: Option<&str>,
    ) -> Result<(Value, u64, Vec<Value>), String> {
        // Every page (a state of thousands of volumes passes one message).
        let all = Box::pin(async move {
            duplex_api::methods::config::get_all(None, |p| calls.call(at, "config.get", p))
                .await
                .map(|r| serde_json::to_value(r).unwrap_or_default())
                .map_err(|e| e.to_string())
        });
        let v = self.step("config.get", None, all).await?;
        read_config(&v)
    }
}

impl Alert {
    /// A critical alert of `kind`, about `pool` if one.
    fn critical(kind: impl Into<String>, pool: Option<&str>, message: String) -> Alert {
        Alert {
            severity: "critical".into(),
            kind: kind.into(),
            pool: pool.map(str::to_string),
            message,
        }
    }
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default()
}

/// The desired configuration's cluster object, epoch and pools.
fn read_config(v: &Value) -> Result<(Value, u64, Vec<Value>), String> {
    let cfg = v
        .get("config")
        .ok_or("config.get answered without config")?;
    let cluster = cfg.get("cluster").cloned().unwrap_or(Value::Null);
    let epoch = cluster.get("epoch").and_then(Value::as_u64).unwrap_or(0);
    let pools = cfg
        .get("pool")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok((cluster, epoch, pools))
}

fn upsert(kind: &str, object: Value) -> Value {
    json!({"op": "upsert", "kind": kind, "object": object})
}

fn name_of(pool: &Value) -> String {
    pool.get("name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// How long a handover's synchronous record waits for the partner's
/// acknowledgement. Hosts' I/O is queued (port groups standby) meanwhile,
/// so a longer wait costs pause, not errors; a rollback after a slow
/// acknowledgement under load (5 s, config-keeper's default, was seen to
/// time out in the TCG lab) costs a second pause and a failed operation.
pub const HANDOVER_SYNC_TIMEOUT_MS: u64 = 15_000;

/// Records `pools` as owned by `to` under an epoch above both `at_least`
/// and the recorded one, as the step `step`; returns the epoch recorded.
#[allow(clippy::too_many_arguments)]
async fn record(
    calls: &dyn Calls,
    rec: &mut Recorder,
    step: &str,
    at: Option<&str>,
    to: &str,
    pools: &[Value],
    at_least: u64,
    sync: bool,
) -> Result<u64, String> {
    let (mut cluster, current, _) = rec.read_config(calls, at).await?;
    let epoch = at_least.max(current + 1);
    let mut changes = Vec::new();
    if cluster.is_object() {
        cluster["epoch"] = json!(epoch);
        changes.push(upsert("cluster", cluster));
    }
    for p in pools {
        let mut p = p.clone();
        p["owner"] = json!(to);
        p["epoch"] = json!(epoch);
        changes.push(upsert("pool", p));
    }
    let mut params = json!({"changes": changes, "sync": sync});
    if sync {
        params["timeout_ms"] = json!(HANDOVER_SYNC_TIMEOUT_MS);
    }
    rec.step(step, None, calls.call(at, "config.apply", params))
        .await?;
    Ok(epoch)
}

/// `pool.takeover` of `name` under `epoch`, then its port groups active:
/// its steps and alerts, and whether the import succeeded.
async fn take_one(calls: &dyn Calls, name: &str, epoch: u64) -> (Recorder, bool) {
    let mut rec = Recorder {
        steps: Vec::new(),
        alerts: Vec::new(),
    };
    let imported = rec
        .step_or_alert(
            "pool.takeover",
            name,
            calls.call(None, "pool.takeover", json!({"name": name, "epoch": epoch})),
            ("takeover_pool_failed", "could not be taken over"),
        )
        .await;
    if !imported {
        return (rec, false);
    }
    rec.step_or_alert(
        "active",
        name,
        calls.call(
            None,
            "target.set_access_state",
            json!({"pool": name, "state": "active"}),
        ),
        (
            "takeover_active_failed",
            "imported but its ports are not active",
        ),
    )
    .await;
    (rec, true)
}

/// Takes over every pool `partner` owns, under `epoch`, on this controller
/// `me`. `before` are the steps already done (detection, fence), for the
/// timeline.
pub async fn takeover(
    calls: &dyn Calls,
    action_id: &str,
    me: &str,
    partner: &str,
    epoch: &Epoch,
    before: Vec<Step>,
) -> Outcome {
    let started = unix_ms();
    let mut rec = Recorder {
        steps: before,
        alerts: Vec::new(),
    };
    let mut names = Vec::new();
    let mut recorded = epoch.counter;
    let ok = async {
        let (_, _, pools) = rec.read_config(calls, None).await?;
        // The partner's pools, and ours recorded under this epoch or later:
        // a run again after a lost reply to the record must still import
        // them (pool.takeover is idempotent).
        let theirs: Vec<Value> = pools
            .into_iter()
            .filter(|p| {
                let owner = p.get("owner").and_then(Value::as_str);
                let at = p.get("epoch").and_then(Value::as_u64).unwrap_or(0);
                owner == Some(partner) || (owner == Some(me) && at >= epoch.counter)
            })
            .collect();
        names = theirs.iter().map(name_of).collect();
        // The partner is fenced: do not wait for its acknowledgement.
        recorded = record(
            calls,
            &mut rec,
            "record",
            None,
            me,
            &theirs,
            epoch.counter,
            false,
        )
        .await?;
        // Each pool on its own: its port groups go active as soon as it
        // is imported, while pool-manager imports the next one (it takes
        // them one at a time, and lets the next one in before it builds
        // its reply's report).
        let per_pool = names
            .iter()
            .map(|name| take_one(calls, name, recorded))
            .collect::<Vec<_>>();
        let mut all = true;
        let mut taken = Vec::new();
        for (name, (one, imported)) in names.iter().zip(join_all(per_pool).await) {
            // Every step of it succeeded when it raised no alert.
            all &= one.alerts.is_empty();
            rec.steps.extend(one.steps);
            rec.alerts.extend(one.alerts);
            if imported {
                taken.push(name.clone());
            }
        }
        let done = json!({"controller": me, "from": partner, "epoch": recorded,
                          "pools": taken, "action_id": action_id});
        rec.step(
            "takeover_done",
            None,
            calls.call(
                None,
                "event.publish",
                json!({"topic": "cluster.takeover_done", "data": done, "partner": false}),
            ),
        )
        .await?;
        Ok::<bool, String>(all)
    }
    .await;
    let ok = match ok {
        Ok(all) => all,
        Err(e) => {
            rec.alerts.push(Alert::critical(
                "takeover_failed",
                None,
                format!("takeover of {partner}'s pools failed: {e}"),
            ));
            false
        }
    };
    Outcome {
        entry: Entry {
            kind: "takeover".into(),
            action_id: action_id.into(),
            started_unix_ms: started,
            epoch: recorded,
            from: partner.into(),
            to: me.into(),
            pools: names,
            steps: rec.steps,
            ok,
        },
        alerts: rec.alerts,
    }
}

/// Which pools a planned move concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// One named pool (must be owned by the source).
    One(String),
    /// Every pool the source owns.
    AllOwned,
    /// Every pool the source owns whose home is the destination (giveback).
    HomeOf,
}

/// Moves pools from `from` to `to` while both run (failover, giveback).
/// `me` is this controller; calls to the other one go over the peer link.
pub async fn handover(
    calls: &dyn Calls,
    kind: &str,
    action_id: &str,
    me: &str,
    from: &str,
    to: &str,
    which: Selection,
) -> Outcome {
    let started = unix_ms();
    let at = |c: &str| if c == me { None } else { Some(c.to_string()) };
    let (at_from, at_to) = (at(from), at(to));
    let mut rec = Recorder {
        steps: Vec::new(),
        alerts: Vec::new(),
    };
    let mut names = Vec::new();
    let mut recorded = 0;
    // How far it got, for the rollback: the pools set standby (or tried),
    // the pools as recorded before, whether the record was tried and
    // whether an export was.
    let mut standby: Vec<String> = Vec::new();
    let mut before: Vec<Value> = Vec::new();
    let mut record_tried = false;
    let mut export_tried = false;
    // The pool exported from `from` whose import on `to` failed (it is
    // imported nowhere), and the pools imported on `to`.
    let mut half: Option<String> = None;
    let mut imported: Vec<String> = Vec::new();
    let r = async {
        let (_, _, pools) = rec.read_config(calls, None).await?;
        let owned = |p: &Value| p.get("owner").and_then(Value::as_str) == Some(from);
        let chosen: Vec<Value> = match &which {
            Selection::One(n) => {
                let p = pools
                    .iter()
                    .find(|p| name_of(p) == *n)
                    .ok_or_else(|| format!("pool {n} is not in the desired state"))?;
                if !owned(p) {
                    return Err(format!("pool {n} is not owned by {from}"));
                }
                vec![p.clone()]
            }
            Selection::AllOwned => pools.into_iter().filter(|p| owned(p)).collect(),
            Selection::HomeOf => pools
                .into_iter()
                .filter(|p| owned(p) && p.get("home").and_then(Value::as_str) == Some(to))
                .collect(),
        };
        names = chosen.iter().map(name_of).collect();
        before.clone_from(&chosen);
        if names.is_empty() {
            return Ok(());
        }
        // The destination must have caught up the configuration first
        // (a controller back from a fence resyncs before anything else).
        let st = rec
            .step(
                "destination ready",
                None,
                calls.call(at_to.as_deref(), "config.status", json!({})),
            )
            .await?;
        if st.get("ready").and_then(Value::as_bool) != Some(true) {
            return Err(format!(
                "{to}'s configuration has not caught up yet (config.status ready=false)"
            ));
        }
        // And it must be able to write the pools' disks: its fence agents
        // set up (its SCSI-3 PR key registered). Seen in a pr-fence cycle:
        // a controller back from a fence whose key was not registered got
        // its pool back, failed every host write, and the hosts hung.
        let cs = rec
            .step(
                "destination fence",
                None,
                calls.call(at_to.as_deref(), "cluster.status", json!({})),
            )
            .await?;
        if cs.get("fence_joined").and_then(Value::as_bool) == Some(false) {
            return Err(format!(
                "{to}'s fence agents are not all set up (its SCSI-3 PR key is not registered), so it could not write the pools; see its alerts"
            ));
        }
        for n in &names {
            standby.push(n.clone());
            rec.step(
                "standby",
                Some(n),
                calls.call(
                    at_from.as_deref(),
                    "target.set_access_state",
                    json!({"pool": n, "state": "standby"}),
                ),
            )
            .await?;
        }
        // Recorded on the destination (the partner replicates it).
        record_tried = true;
        recorded = record(
            calls,
            &mut rec,
            "record",
            at_to.as_deref(),
            to,
            &chosen,
            0,
            true,
        )
        .await?;
        for n in &names {
            export_tried = true;
            rec.step(
                "pool.export",
                Some(n),
                calls.call(
                    at_from.as_deref(),
                    "pool.export",
                    json!({"name": n, "to": to}),
                ),
            )
            .await?;
            half = Some(n.clone());
            rec.step(
                "pool.import",
                Some(n),
                calls.call(at_to.as_deref(), "pool.import", json!({"name": n})),
            )
            .await?;
            half = None;
            imported.push(n.clone());
            rec.step(
                "active",
                Some(n),
                calls.call(
                    at_to.as_deref(),
                    "target.set_access_state",
                    json!({"pool": n, "state": "active"}),
                ),
            )
            .await?;
        }
        Ok(())
    }
    .await;
    // Stopped before any export: every pool is still imported on `from`
    // only, and the pools set standby there would leave hosts with no
    // active path. Put them back: ownership recorded for `from` again
    // (under a newer epoch, in case the record was committed), then
    // `from` active. Stopped at an import on `to` after its export: that
    // pool is imported nowhere, so it is handed back first (below). Past
    // any other failure after an export the pool may be half moved: the
    // alert asks for a person (or the next giveback).
    let mut restored = None;
    let rollback = r.is_err() && !standby.is_empty() && (!export_tried || half.is_some());
    if rollback {
        let back_names: Vec<String> = standby
            .iter()
            .filter(|n| !imported.contains(n))
            .cloned()
            .collect();
        let back = before
            .iter()
            .filter(|p| back_names.contains(&name_of(p)))
            .cloned()
            .collect::<Vec<_>>();
        let mut ok = true;
        // Whether the half-moved pool is imported on `from` again.
        let mut came_back = half.is_none();
        let mut epoch = None;
        if record_tried {
            // Where the failed record went first; `from`'s keeper if that
            // one does not answer. A pool to take back waits for `from`'s
            // keeper to have the record (sync): its import or takeover
            // there checks it.
            for at in [at_to.as_deref(), at_from.as_deref()] {
                if let Ok(e) = record(
                    calls,
                    &mut rec,
                    "rollback: record",
                    at,
                    from,
                    &back,
                    recorded + 1,
                    half.is_some() && at != at_from.as_deref(),
                )
                .await
                {
                    epoch = Some(e);
                    break;
                }
            }
            ok &= epoch.is_some();
        }
        // The half-moved pool comes back to `from` once recorded so: `to`
        // hands it back (its export checks the record and leaves nothing
        // of it active there), or `to` cannot see it at all, so nothing of
        // it can be active there and `from` takes it by epoch, as after a
        // fence.
        if let (Some(n), Some(epoch)) = (&half, epoch) {
            let back_from_to = rec
                .step(
                    "rollback: export",
                    Some(n),
                    calls.call(
                        at_to.as_deref(),
                        "pool.export",
                        json!({"name": n, "to": from}),
                    ),
                )
                .await;
            let how = match back_from_to {
                Ok(_) => Some(("pool.import", json!({"name": n}))),
                Err(e) if e.starts_with("not_found") => {
                    Some(("pool.takeover", json!({"name": n, "epoch": epoch})))
                }
                Err(_) => None,
            };
            if let Some((method, params)) = how {
                came_back = rec
                    .step(
                        &format!("rollback: {method}"),
                        Some(n),
                        calls.call(at_from.as_deref(), method, params),
                    )
                    .await
                    .is_ok();
            }
            ok &= came_back;
        }
        // The pools `from` still holds go active whatever the record did:
        // hosts must not be left without an active path; the half-moved
        // one only once it is back.
        for n in &back_names {
            if half.as_ref() == Some(n) && !came_back {
                ok = false;
                continue;
            }
            ok &= rec
                .step(
                    "rollback: active",
                    Some(n),
                    calls.call(
                        at_from.as_deref(),
                        "target.set_access_state",
                        json!({"pool": n, "state": "active"}),
                    ),
                )
                .await
                .is_ok();
        }
        restored = Some(ok);
    }
    let mut alerts = rec.alerts;
    if let Err(e) = &r {
        let back = match restored {
            Some(true) => format!("; {from} serves the pools again"),
            Some(false) => format!("; putting them back on {from} failed too (see the steps)"),
            None => String::new(),
        };
        alerts.push(Alert::critical(
            format!("{kind}_failed"),
            None,
            format!("{kind} from {from} to {to} stopped: {e}{back}"),
        ));
    }
    Outcome {
        entry: Entry {
            kind: kind.into(),
            action_id: action_id.into(),
            started_unix_ms: started,
            epoch: recorded,
            from: from.into(),
            to: to.into(),
            pools: names,
            steps: rec.steps,
            ok: r.is_ok(),
        },
        alerts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Answers like the services would and records every call.
    struct Fake {
        calls: Mutex<Vec<(Option<String>, String, Value)>>,
        fail: Vec<(String, String)>,
        /// Fixed answers by method, instead of the defaults.
        answers: Vec<(String, Value)>,
        /// `(method, pool)` whose answer waits until `(method, pool)` has
        /// been answered.
        gate: Option<((String, String), (String, String))>,
        opened: tokio::sync::Notify,
        /// `(method, pool)` that fail the first time only.
        once: Mutex<Vec<(String, String)>>,
        /// `(controller, method, pool)` that fail with the given message.
        at_fail: Vec<(Option<String>, String, String, String)>,
    }

    impl Fake {
        fn new(fail: &[(&str, &str)]) -> Fake {
            Fake {
                calls: Mutex::new(Vec::new()),
                fail: fail
                    .iter()
                    .map(|(m, p)| ((*m).to_string(), (*p).to_string()))
                    .collect(),
                answers: Vec::new(),
                gate: None,
                opened: tokio::sync::Notify::new(),
                once: Mutex::new(Vec::new()),
                at_fail: Vec::new(),
            }
        }
        /// Fails every call of `method` about `pool` made at `controller`
        /// (`None`: this one) with `message`.
        fn failing_at(mut self, at: Option<&str>, method: &str, pool: &str, message: &str) -> Fake {
            self.at_fail.push((
                at.map(str::to_string),
                method.into(),
                pool.into(),
                message.into(),
            ));
            self
        }
        /// Fails the first call of `method` about `pool` only.
        fn failing_once(self, method: &str, pool: &str) -> Fake {
            self.once
                .lock()
                .unwrap()
                .push((method.to_string(), pool.to_string()));
            self
        }
        /// Answers `method` with `v` (the call is still logged).
        fn answering(mut self, method: &str, v: Value) -> Fake {
            self.answers.push((method.into(), v));
            self
        }
        /// Holds the answer to `waits` until `opener` has been answered.
        fn gated(mut self, waits: (&str, &str), opener: (&str, &str)) -> Fake {
            let own = |(m, p): (&str, &str)| (m.to_string(), p.to_string());
            self.gate = Some((own(waits), own(opener)));
            self
        }
        fn log(&self) -> Vec<(Option<String>, String, Value)> {
            self.calls.lock().unwrap().clone()
        }
        fn methods(&self) -> Vec<String> {
            self.log()
                .into_iter()
                .map(|(at, m, p)| {
                    let pool = p
                        .get("name")
                        .or_else(|| p.get("pool"))
                        .and_then(Value::as_str)
                        .map(|s| format!(" {s}"))
                        .unwrap_or_default();
                    format!(
                        "{}{m}{pool}",
                        at.map(|a| format!("{a}:")).unwrap_or_default()
                    )
                })
                .collect()
        }
    }

    impl Calls for Fake {
        fn call<'a>(
            &'a self,
            controller: Option<&'a str>,
            method: &'a str,
            params: Value,
        ) -> BoxFuture<'a, Result<Value, String>> {
            self.calls.lock().unwrap().push((
                controller.map(str::to_string),
                method.to_string(),
                params.clone(),
            ));
            let pool = params
                .get("name")
                .or_else(|| params.get("pool"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let once = {
                let mut o = self.once.lock().unwrap();
                let hit = o.iter().position(|(m, p)| m == method && *p == pool);
                hit.map(|i| o.remove(i)).is_some()
            };
            let failed = once || self.fail.iter().any(|(m, p)| m == method && *p == pool);
            let at_failed = self
                .at_fail
                .iter()
                .find(|(c, m, p, _)| c.as_deref() == controller && m == method && *p == pool)
                .map(|f| f.3.clone());
            let answer = self.answers.iter().find(|(m, _)| m == method);
            let here = (method.to_string(), pool.clone());
            let waits = self.gate.as_ref().is_some_and(|(w, _)| *w == here);
            let opens = self.gate.as_ref().is_some_and(|(_, o)| *o == here);
            let out = if let Some(msg) = at_failed {
                Err(msg)
            } else if failed {
                Err(format!("{method} {pool}: injected failure"))
            } else if let Some((_, v)) = answer {
                Ok(v.clone())
            } else if method == "config.status" {
                Ok(json!({"ready": true}))
            } else if method == "config.get" {
                Ok(json!({"version": 1, "sections": {}, "config": {
                "cluster": {"id": "c1", "epoch": 7},
                "pool": [
                    {"name": "p1", "home": "A", "owner": "A", "epoch": 7},
                    {"name": "p2", "home": "A", "owner": "A", "epoch": 7},
                    {"name": "p3", "home": "B", "owner": "B", "epoch": 7},
                ]}}))
            } else {
                Ok(json!({}))
            };
            Box::pin(async move {
                if waits {
                    self.opened.notified().await;
                }
                if opens {
                    self.opened.notify_one();
                }
                out
            })
        }
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
    }

    fn e(n: u64) -> Epoch {
        Epoch {
            counter: n,
            controller: "B".into(),
        }
    }

    #[test]
    fn takeover_records_then_takes_each_pool_then_activates() {
        let f = Fake::new(&[]);
        let out = rt().block_on(takeover(&f, "act1", "B", "A", &e(8), Vec::new()));
        assert!(out.entry.ok, "{:?}", out.entry);
        assert_eq!(
            f.methods(),
            vec![
                "config.get",
                "config.get",
                "config.apply",
                "pool.takeover p1",
                "target.set_access_state p1",
                "pool.takeover p2",
                "target.set_access_state p2",
                "event.publish",
            ]
        );
        // The recorded epoch is above the one in config-keeper.
        assert_eq!(out.entry.epoch, 8);
        let log = f.log();
        let apply = &log[2].2;
        assert_eq!(
            apply["sync"],
            json!(false),
            "never wait for the fenced partner"
        );
        assert!(apply.get("timeout_ms").is_none());
        assert_eq!(apply["changes"][1]["object"]["owner"], json!("B"));
        assert_eq!(apply["changes"][0]["object"]["epoch"], json!(8));
        assert_eq!(log[3].2["epoch"], json!(8));
        assert_eq!(out.entry.pools, vec!["p1", "p2"]);
        assert!(out.alerts.is_empty());
    }

    #[test]
    fn a_pool_goes_active_without_waiting_for_the_next_pools_import() {
        // p2's import finishes only once p1's port groups are active: a
        // takeover that imported every pool before the first flip would
        // never get there.
        let f = Fake::new(&[]).gated(("pool.takeover", "p2"), ("target.set_access_state", "p1"));
        let timed_rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let out = timed_rt
            .block_on(async {
                tokio::time::timeout(
                    Duration::from_secs(10),
                    takeover(&f, "act1", "B", "A", &e(8), Vec::new()),
                )
                .await
            })
            .unwrap_or_else(|_| panic!("p1's flip waited for p2's import"));
        assert!(out.entry.ok, "{:?}", out.entry);
        let steps: Vec<String> = out
            .entry
            .steps
            .iter()
            .map(|s| format!("{} {}", s.name, s.pool.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(
            steps[3..],
            [
                "pool.takeover p1",
                "active p1",
                "pool.takeover p2",
                "active p2",
                "takeover_done "
            ],
            "the timeline groups each pool's steps"
        );
    }

    #[test]
    fn running_it_again_after_the_record_still_takes_the_pools() {
        // p1 and p2 recorded as B's under epoch 8 by an earlier run whose
        // reply was lost; p3 is B's own from before.
        let f = Fake::new(&[]).answering(
            "config.get",
            json!({"version": 1, "sections": {}, "config": {"cluster": {"epoch": 8}, "pool": [
                {"name": "p1", "home": "A", "owner": "B", "epoch": 8},
                {"name": "p2", "home": "A", "owner": "B", "epoch": 8},
                {"name": "p3", "home": "B", "owner": "B", "epoch": 5}]}}),
        );
        let out = rt().block_on(takeover(&f, "act1", "B", "A", &e(8), Vec::new()));
        assert!(out.entry.ok);
        assert_eq!(out.entry.pools, vec!["p1", "p2"]);
        assert_eq!(out.entry.epoch, 9);
    }

    #[test]
    fn one_failing_pool_does_not_stop_the_others() {
        let f = Fake::new(&[("pool.takeover", "p1")]);
        let out = rt().block_on(takeover(&f, "act1", "B", "A", &e(9), Vec::new()));
        assert!(!out.entry.ok);
        assert_eq!(out.entry.epoch, 9);
        let m = f.methods();
        assert!(m.contains(&"pool.takeover p2".to_string()));
        assert!(m.contains(&"target.set_access_state p2".to_string()));
        assert!(!m.contains(&"target.set_access_state p1".to_string()));
        assert_eq!(out.alerts.len(), 1);
        assert_eq!(out.alerts[0].pool.as_deref(), Some("p1"));
        assert!(m.last().unwrap().starts_with("event.publish"));
    }

    #[test]
    fn a_failed_record_stops_before_any_import() {
        let f = Fake::new(&[("config.apply", "")]);
        let out = rt().block_on(takeover(&f, "act1", "B", "A", &e(9), Vec::new()));
        assert!(!out.entry.ok);
        assert!(!f.methods().iter().any(|m| m.starts_with("pool.")));
        assert_eq!(out.alerts[0].kind, "takeover_failed");
    }

    /// A giveback of p1 from B to A, up to A's import.
    const GIVEBACK_P1_TO_IMPORT: [&str; 8] = [
        "config.get",
        "A:config.status",
        "A:cluster.status",
        "target.set_access_state p1",
        "A:config.get",
        "A:config.apply",
        "pool.export p1",
        "A:pool.import p1",
    ];

    /// B owns p1 (home A) and gives it back; A's import fails.
    fn giveback_of_p1(f: &Fake) -> Outcome {
        rt().block_on(handover(
            f,
            "giveback",
            "act3",
            "B",
            "B",
            "A",
            Selection::HomeOf,
        ))
    }

    fn owned_by_b() -> Value {
        on_b(&["p1", "p3"])
    }

    /// The giveback of p1 from B to A with A's `(method, message)` calls
    /// about p1 failing: the fake and the outcome.
    fn giveback_of_p1_failing_on_a(fails: &[(&str, &str)]) -> (Fake, Outcome) {
        let f = fails.iter().fold(
            Fake::new(&[]).answering("config.get", owned_by_b()),
            |f, (method, message)| f.failing_at(Some("A"), method, "p1", message),
        );
        let out = giveback_of_p1(&f);
        (f, out)
    }

    #[test]
    fn an_import_failing_after_the_export_hands_the_pool_back() {
        let (f, out) =
            giveback_of_p1_failing_on_a(&[("pool.import", "backend_failed: lvm said no")]);
        assert!(!out.entry.ok);
        // Recorded for B again, then A hands it back and B imports it and
        // serves it.
        let rest = [
            "A:config.get",
            "A:config.apply",
            "A:pool.export p1",
            "pool.import p1",
            "target.set_access_state p1",
        ];
        assert_eq!(
            f.methods(),
            [&GIVEBACK_P1_TO_IMPORT[..], &rest[..]].concat()
        );
        let log = f.log();
        assert_eq!(log[9].2["changes"][1]["object"]["owner"], json!("B"));
        assert_eq!(log[9].2["sync"], json!(true), "B's keeper must have it");
        assert_eq!(log[9].2["timeout_ms"], json!(HANDOVER_SYNC_TIMEOUT_MS));
        assert_eq!(log[10].2["to"], json!("B"));
        assert!(
            out.alerts[0].message.contains("B serves the pools again"),
            "{:?}",
            out.alerts
        );
    }

    #[test]
    fn a_partner_that_cannot_see_the_pool_lets_it_be_taken_back_by_epoch() {
        let (f, out) = giveback_of_p1_failing_on_a(&[
            ("pool.import", "not_found: no disk here carries dx-p1"),
            ("pool.export", "not_found: pool \"p1\" does not exist"),
        ]);
        let m = f.methods();
        assert_eq!(
            &m[10..],
            [
                "A:pool.export p1",
                "pool.takeover p1",
                "target.set_access_state p1"
            ]
        );
        // Taken under the epoch of the record that gave it back to B.
        assert_eq!(f.log()[11].2["epoch"], json!(10));
        assert!(out.alerts[0].message.contains("B serves the pools again"));
    }

    #[test]
    fn a_pool_the_partner_neither_imports_nor_hands_back_stays_for_a_person() {
        let (f, out) = giveback_of_p1_failing_on_a(&[
            ("pool.import", "backend_failed: lvm said no"),
            ("pool.export", "backend_failed: still in use"),
        ]);
        let m = f.methods();
        assert_eq!(m.last().map(String::as_str), Some("A:pool.export p1"));
        assert!(!m
            .iter()
            .any(|x| x == "pool.import p1" || x == "pool.takeover p1"));
        // Never active on B without the pool: hosts keep queueing.
        assert_eq!(
            m.iter()
                .filter(|x| *x == "target.set_access_state p1")
                .count(),
            1
        );
        assert!(out.alerts[0]
            .message
            .contains("putting them back on B failed too"));
    }

    #[test]
    fn giveback_moves_home_pools_in_the_planned_order() {
        // B owns everything; p1 and p2 are A's by home.
        let f = Fake::new(&[]).answering(
            "config.get",
            json!({"version": 1, "sections": {}, "config": {"cluster": {"epoch": 8}, "pool": [
                {"name": "p1", "home": "A", "owner": "B"},
                {"name": "p3", "home": "B", "owner": "B"}]}}),
        );
        let out = rt().block_on(handover(
            &f,
            "giveback",
            "act2",
            "B",
            "B",
            "A",
            Selection::HomeOf,
        ));
        assert!(out.entry.ok, "{:?}", out.entry);
        assert_eq!(out.entry.pools, vec!["p1"]);
        assert_eq!(
            f.methods(),
            [
                &GIVEBACK_P1_TO_IMPORT[..],
                &["A:target.set_access_state p1"][..]
            ]
            .concat()
        );
        assert_eq!(out.entry.epoch, 9);
        let steps: Vec<&str> = out.entry.steps.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(
            steps,
            vec![
                "config.get",
                "destination ready",
                "destination fence",
                "standby",
                "config.get",
                "record",
                "pool.export",
                "pool.import",
                "active"
            ]
        );
    }

    /// A giveback B -> A of p1 and p2 (A's by home, B owns them).
    fn giveback_of_two(f: &Fake) -> Outcome {
        rt().block_on(handover(
            f,
            "giveback",
            "act5",
            "B",
            "B",
            "A",
            Selection::HomeOf,
        ))
    }

    /// The calls of a giveback of p1 and p2 up to both standbys.
    const TO_STANDBY: [&str; 5] = [
        "config.get",
        "A:config.status",
        "A:cluster.status",
        "target.set_access_state p1",
        "target.set_access_state p2",
    ];

    fn two_on_b() -> Value {
        on_b(&["p1", "p2"])
    }

    /// The pools `names`, all owned by B; `p3` is B's by home, the others
    /// A's.
    fn on_b(names: &[&str]) -> Value {
        let pools: Vec<Value> = names
            .iter()
            .map(|n| json!({"name": n, "home": if *n == "p3" { "B" } else { "A" }, "owner": "B"}))
            .collect();
        json!({"version": 1, "sections": {}, "config": {"cluster": {"epoch": 8}, "pool": pools}})
    }

    #[test]
    fn a_record_that_fails_after_standby_puts_the_pools_back() {
        // The record on A is not acknowledged in time (the lab saw it under
        // load): both pools are still imported on B only, and standby
        // there. B must serve them again, recorded as B's.
        let f = Fake::new(&[])
            .answering("config.get", two_on_b())
            .failing_once("config.apply", "");
        let out = giveback_of_two(&f);
        assert!(!out.entry.ok);
        let then = [
            "A:config.get",
            "A:config.apply",
            "A:config.get",
            "A:config.apply",
            "target.set_access_state p1",
            "target.set_access_state p2",
        ];
        assert_eq!(f.methods(), [&TO_STANDBY[..], &then[..]].concat());
        let log = f.log();
        // The rollback records B as the owner, not synchronously.
        let apply = &log[8].2;
        assert_eq!(apply["sync"], false);
        let owners: Vec<&Value> = apply["changes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["kind"] == "pool")
            .map(|c| &c["object"]["owner"])
            .collect();
        assert_eq!(owners, vec!["B", "B"], "{apply}");
        for i in [9, 10] {
            assert_eq!(log[i].2["state"], "active");
        }
        let steps: Vec<&str> = out.entry.steps.iter().map(|s| s.name.as_str()).collect();
        assert!(steps.contains(&"rollback: record"), "{steps:?}");
        assert!(out.alerts[0].message.contains("B serves the pools again"));
        assert!(!f.methods().iter().any(|m| m.contains("pool.")));
    }

    #[test]
    fn a_failed_standby_puts_back_only_what_it_touched() {
        let f = Fake::new(&[("target.set_access_state", "p2")]).answering("config.get", two_on_b());
        let out = giveback_of_two(&f);
        assert!(!out.entry.ok);
        // p2's standby failed (perhaps half done): both go active again; no
        // record was tried, so none is made.
        let then = ["target.set_access_state p1", "target.set_access_state p2"];
        assert_eq!(f.methods(), [&TO_STANDBY[..], &then[..]].concat());
        // p2 cannot go active either (injected every time): said so.
        assert!(out.alerts.last().unwrap().message.contains("failed too"));
    }

    #[test]
    fn past_an_export_the_pool_comes_back_only_if_it_can_be_imported() {
        // p1's import fails on both controllers: after A hands it back, B
        // cannot import it either, so it is left for a person (never set
        // active without the pool); p2, never exported, is active on B
        // again.
        let f = Fake::new(&[("pool.import", "p1")]).answering("config.get", two_on_b());
        let out = giveback_of_two(&f);
        assert!(!out.entry.ok);
        let steps: Vec<(&str, bool)> = out
            .entry
            .steps
            .iter()
            .filter(|s| s.name.starts_with("rollback"))
            .map(|s| (s.name.as_str(), s.ok))
            .collect();
        assert_eq!(
            steps,
            vec![
                ("rollback: record", true),
                ("rollback: export", true),
                ("rollback: pool.import", false),
                ("rollback: active", true),
            ]
        );
        let m = f.methods();
        assert_eq!(
            m.last().map(String::as_str),
            Some("target.set_access_state p2")
        );
        assert!(out.alerts[0].message.contains("failed too"));
    }

    /// A planned failover of everything A owns to B.
    fn failover_all_a_to_b(f: &Fake) -> Outcome {
        rt().block_on(handover(
            f,
            "failover",
            "act4",
            "A",
            "A",
            "B",
            Selection::AllOwned,
        ))
    }

    #[test]
    fn no_move_to_a_controller_whose_configuration_lags() {
        let f = Fake::new(&[]).answering("config.status", json!({"ready": false}));
        let out = failover_all_a_to_b(&f);
        assert!(!out.entry.ok);
        assert_eq!(f.methods(), vec!["config.get", "B:config.status"]);
        assert!(out.alerts[0].message.contains("not caught up"));
    }

    #[test]
    fn no_move_to_a_controller_whose_pr_key_is_not_registered() {
        let f = Fake::new(&[]).answering("cluster.status", json!({"fence_joined": false}));
        let out = failover_all_a_to_b(&f);
        assert!(!out.entry.ok);
        assert_eq!(
            f.methods(),
            vec!["config.get", "B:config.status", "B:cluster.status"],
            "nothing set standby, nothing recorded"
        );
        assert!(out.alerts[0].message.contains("PR key is not registered"));
    }

    #[test]
    fn failover_of_a_pool_not_owned_is_refused_before_any_step() {
        let f = Fake::new(&[]);
        let out = rt().block_on(handover(
            &f,
            "failover",
            "act3",
            "A",
            "A",
            "B",
            Selection::One("p3".into()),
        ));
        assert!(!out.entry.ok);
        assert_eq!(f.methods(), vec!["config.get"]);
        assert!(out.alerts[0].message.contains("not owned by A"));
    }
}
