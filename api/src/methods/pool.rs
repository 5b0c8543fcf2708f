//! The `pool` namespace (pool-manager).

use super::volume::{DmReport, DmSync};
use super::{NoParams, Outcome, ServiceInfo};
use crate::model::Tier;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// Methods whose calls may run far past the router's default call timeout:
/// a RAID create, or activating and switching hundreds of volumes under
/// emulation. pool-manager registers [`LONG_CALL`] for them with the router,
/// and a caller waits as long, so a slow import is not reported failed
/// while it goes on.
pub const LONG_METHODS: &[&str] = &[
    "pool.create",
    "pool.delete",
    "pool.export",
    "pool.import",
    "pool.takeover",
    "pool.repair",
    "pool.reconcile",
];

/// How long a call of one of [`LONG_METHODS`] may take (the router caps it
/// at its own maximum and answers with a timeout error then).
pub const LONG_CALL: Duration = Duration::from_secs(900);

/// `pool.layouts` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LayoutsParams {
    /// How many disks.
    pub disks: usize,
}

/// One row of `pool.layouts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LayoutRow {
    /// The layout name.
    pub layout: String,
    /// Copies (mirror only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies: Option<u8>,
    /// Whether the layout can be built on this many disks.
    pub possible: bool,
    /// Why not, when it cannot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Usable fraction of the raw capacity of the disks (0..1).
    pub capacity_fraction: f64,
    /// How many disks may fail without losing data (guaranteed, whichever
    /// disks they are).
    pub fault_tolerance: usize,
    /// Disks the layout uses of those given (raid10 uses an even number).
    pub disks_used: usize,
}

/// `pool.layouts` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct LayoutsResult {
    /// How many disks.
    pub disks: usize,
    /// Every layout.
    pub layouts: Vec<LayoutRow>,
}

/// `pool.create` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    /// Pool name.
    pub name: String,
    /// `linear`, `mirror`, `raid5`, `raid6`, `raid10`.
    pub layout: String,
    /// Mirror copies (2 or 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub copies: Option<u8>,
    /// Data disks: stable path, kernel name, serial or WWN.
    pub disks: Vec<String>,
    /// Hot spares, same forms.
    #[serde(default)]
    pub spares: Vec<String>,
    /// Overrides the tier the disks report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<Tier>,
    /// Erase partitions and signatures of the disks first.
    #[serde(default)]
    pub wipe: bool,
}

/// Params naming one pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NameParams {
    /// Pool.
    pub name: String,
}

/// `pool.status` params.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusParams {
    /// One pool only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `pool.export` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// Pool.
    pub name: String,
    /// Hand the system_id to this controller (the partner) afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// `pool.takeover` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TakeoverParams {
    /// Pool.
    pub name: String,
    /// The current cluster epoch (after fencing).
    pub epoch: u64,
}

/// A pool, desired and observed side by side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PoolInfo {
    /// Name.
    pub name: String,
    /// Its LVM volume group (`dx-<name>`).
    pub vg: String,
    /// In the desired state.
    pub recorded: bool,
    /// Home controller (recorded).
    pub home: Option<String>,
    /// Owner (recorded).
    pub owner: Option<String>,
    /// Epoch of the ownership record.
    pub epoch: Option<u64>,
    /// Tier (recorded).
    pub tier: Option<Tier>,
    /// The layout LVM shows, else the recorded one (`{layout, copies}`,
    /// or the recorded name when pool-manager cannot read it).
    pub layout: Option<Value>,
    /// Mirror copies (recorded).
    pub copies: Option<u32>,
    /// LVM system_id of the volume group.
    pub system_id: Option<String>,
    /// A disk here carries it.
    pub visible: bool,
    /// Anything of it is active on this controller.
    pub active_here: bool,
    /// Bytes.
    pub size: Option<u64>,
    /// Unallocated bytes.
    pub free: Option<u64>,
    /// The thin pool (pool-manager's form: size, usage, activity).
    pub thin: Option<Value>,
    /// Usage levels (`ok`, `warning`, `critical`, `full`) of data and
    /// metadata.
    pub usage: Value,
    /// RAID state (`{state, percent?, detail?}`).
    pub raid: Option<Value>,
    /// Physical volumes (path, size, free, spare, missing).
    pub disks: Option<Vec<Value>>,
    /// Logical volumes in it.
    pub volumes: usize,
    /// Health alerts (severity, pool, kind, message).
    pub alerts: Vec<Value>,
}

/// `pool.create` and `pool.repair` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PoolResult {
    /// Changed, or already so.
    pub outcome: Outcome,
    /// The pool.
    pub pool: PoolInfo,
}

/// `pool.import` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ImportResult {
    /// Changed, or already imported.
    pub outcome: Outcome,
    /// The pool.
    pub pool: PoolInfo,
    /// Wall time of the import.
    pub duration_ms: u64,
    /// The per-volume devices switched to the LVs.
    pub dm: DmReport,
}

/// Where a takeover's time went, ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TakeoverTimings {
    /// Rewriting the system_id.
    pub system_id: u64,
    /// Activating the volumes.
    pub activate: u64,
    /// Switching the per-volume devices.
    pub dm_switch: u64,
}

/// `pool.takeover` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TakeoverResult {
    /// Changed, or ours already.
    pub outcome: Outcome,
    /// The pool.
    pub pool: PoolInfo,
    /// Wall time of the takeover.
    pub duration_ms: u64,
    /// Its steps.
    pub timings_ms: TakeoverTimings,
    /// The per-volume devices switched to the LVs.
    pub dm: DmReport,
}

/// `pool.export` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ExportResult {
    /// Pool.
    pub pool: String,
    /// Changed, or already exported.
    pub outcome: Outcome,
    /// Device-mapper holds nothing of it (always true: otherwise an error).
    pub dm_clean: bool,
    /// The controller the system_id was handed to.
    pub handed_to: Option<String>,
}

/// `pool.delete` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Deleted {
    /// Changed, or there was no such pool.
    pub outcome: Outcome,
    /// Pool.
    pub pool: String,
}

/// The service part of `pool.status` (the runtime's generic status
/// method would shadow the pools).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PoolService {
    /// The process.
    #[serde(flatten)]
    pub info: ServiceInfo,
    /// `lvm` or `sim`.
    pub backend: String,
}

/// `pool.status` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusResult {
    /// This controller.
    pub controller: String,
    /// The pools.
    pub pools: Vec<PoolInfo>,
    /// The service (over RPC; absent when the manager is asked directly).
    #[serde(flatten, default, skip_serializing_if = "Option::is_none")]
    pub service: Option<PoolService>,
}

/// `pool.active_local` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ActiveLocalResult {
    /// This controller.
    pub controller: String,
    /// Pools with anything active here.
    pub pools: Vec<String>,
}

/// One step of a reconcile pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepResult {
    /// The step (pool-manager's plan form: `{activate_pool: ...}`).
    pub step: Value,
    /// It succeeded.
    pub ok: bool,
    /// Why not.
    pub error: Option<String>,
}

/// A rebuild started by a reconcile pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RepairStarted {
    /// Pool.
    pub pool: String,
    /// It started.
    pub ok: bool,
}

/// `pool.reconcile` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ReconcileResult {
    /// The steps run.
    pub steps: Vec<StepResult>,
    /// Rebuilds started onto spares.
    pub repairs: Vec<RepairStarted>,
    /// The per-volume devices.
    pub dm: DmSync,
}

method!(Layouts, "pool.layouts", LayoutsParams, LayoutsResult);
method!(Create, "pool.create", CreateParams, PoolResult);
method!(Delete, "pool.delete", NameParams, Deleted);
method!(Export, "pool.export", ExportParams, ExportResult);
method!(Import, "pool.import", NameParams, ImportResult);
method!(Takeover, "pool.takeover", TakeoverParams, TakeoverResult);
method!(Status, "pool.status", StatusParams, StatusResult);
method!(Repair, "pool.repair", NameParams, PoolResult);
method!(Reconcile, "pool.reconcile", NoParams, ReconcileResult);
method!(
    ActiveLocal,
    "pool.active_local",
    NoParams,
    ActiveLocalResult
);
