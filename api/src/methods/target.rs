//! The `target` namespace (targets: LIO and nvmet).

use super::{NoParams, ServiceInfo};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What targets reports of its own work in `target.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct State {
    /// True once configfs was rebuilt from the desired state after start.
    pub ready: bool,
    /// Reconciles done.
    pub reconciles: u64,
    /// Steps applied in all.
    pub steps_applied: u64,
    /// Drift checks that found and repaired out-of-band changes.
    pub drift_repairs: u64,
    /// Duration of the last reconcile.
    pub last_ms: u64,
    /// Exports not built and why.
    pub pending: Vec<String>,
    /// Foreign objects seen in configfs (not ours, left alone).
    pub foreign: Vec<String>,
    /// The last failure, if the last operation failed.
    pub last_error: Option<String>,
    /// The steps the last reconcile could not apply, each with the steps
    /// it left out; absent when every step applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedStep>,
}

/// A configfs step the kernel refused. The rest of the plan went on
/// without it and without `skipped`, the steps that act on, link to or
/// remove what it left broken; the next reconcile tries them again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FailedStep {
    /// The step (secrets masked).
    pub step: String,
    /// The kernel's answer.
    pub error: String,
    /// The later steps left out because of it.
    pub skipped: Vec<String>,
}

/// targets' part of `target.status`: its state and capabilities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatusReply {
    /// The state.
    #[serde(flatten)]
    pub state: State,
    /// What this build supports (`iscsi`, `nvme_tcp`, `alua`...).
    pub capabilities: Vec<String>,
}

/// `target.status` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatusResult {
    /// The process.
    #[serde(flatten)]
    pub service: ServiceInfo,
    /// targets' part.
    #[serde(flatten)]
    pub status: StatusReply,
}

/// `target.show` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ShowResult {
    /// Our part of configfs as read now (targets' typed tree: backstores,
    /// iSCSI targets, nvmet subsystems and ports).
    pub tree: Value,
    /// Objects in configfs that are not ours.
    pub foreign: Vec<String>,
}

/// `target.access_states` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AccessStatesResult {
    /// Per pool: state, ANA group, volumes.
    pub pools: BTreeMap<String, Value>,
    /// States set by `target.set_access_state` (state, owner, epoch), kept
    /// while the pool's ownership record is the one they were set under.
    pub overrides: BTreeMap<String, Value>,
}

/// `target.set_access_state` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAccessStateParams {
    /// Pool.
    pub pool: String,
    /// `active`, `non_optimized` or `standby` (`transitioning` is the
    /// service's own, while a flip runs).
    #[schemars(extend("enum" = ["active", "non_optimized", "standby", "transitioning"]))]
    pub state: String,
}

/// `target.set_access_state` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SetAccessStateResult {
    /// The flip as targets reports it (pool, state, volumes, ana_group,
    /// steps, observed, persisted, and its timings in `*_ms`).
    #[serde(flatten)]
    pub flip: Map<String, Value>,
    /// Wall time of the whole call, ms.
    pub handler_ms: u64,
}

/// `target.reconcile` params.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileParams {
    /// Plan only; change nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// `target.reconcile` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReconcileResult {
    /// Planned only.
    pub dry_run: bool,
    /// The configfs steps (mkdir, rmdir, write, symlink), in order.
    pub steps: Vec<Value>,
    /// Exports not built and why.
    pub pending: Vec<String>,
    /// Objects in configfs that are not ours.
    pub foreign: Vec<String>,
    /// Wall time, ms.
    pub ms: u64,
    /// Steps the kernel refused (the rest of the plan was applied); absent
    /// when every step applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<FailedStep>,
}

method!(Status, "target.status", NoParams, StatusResult);
method!(Show, "target.show", NoParams, ShowResult);
method!(
    AccessStates,
    "target.access_states",
    NoParams,
    AccessStatesResult
);
method!(
    SetAccessState,
    "target.set_access_state",
    SetAccessStateParams,
    SetAccessStateResult
);
method!(
    Reconcile,
    "target.reconcile",
    ReconcileParams,
    ReconcileResult
);
