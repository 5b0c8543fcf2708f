//! The `cluster` namespace (heartbeat).

use super::{NoParams, ServiceInfo};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// heartbeat's part of `cluster.status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Heartbeat {
    /// Whether `[heartbeat]` is configured here.
    pub configured: bool,
    /// What it does (`disk_heartbeat`, `fencing`, `takeover`...).
    pub capabilities: Vec<String>,
    /// Why not configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The partner state machine's view (heartbeat's form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<Value>,
    /// Interconnect links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub links: Option<Value>,
    /// Heartbeat disk write latencies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub write_latency: Option<Value>,
    /// Heartbeat disk paths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disks: Option<Vec<String>>,
    /// Fence agent names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence_agents: Option<Vec<String>>,
    /// Every fence agent has set up its part here (the SCSI-3 PR key
    /// registered) since this controller last became a member. A handover
    /// never gives pools to a controller that says false: it could not
    /// write them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence_joined: Option<bool>,
}

/// `cluster.status` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StatusResult {
    /// The process.
    #[serde(flatten)]
    pub service: ServiceInfo,
    /// heartbeat's part.
    #[serde(flatten)]
    pub heartbeat: Heartbeat,
}

/// `cluster.init` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InitParams {
    /// Cluster id written in the header (1-32 printable ASCII characters).
    pub cluster_id: String,
}

/// One disk of `cluster.init`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InitDisk {
    /// Path.
    pub disk: String,
    /// `created`, or `already` (the same area was there).
    pub outcome: String,
}

/// `cluster.init` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InitResult {
    /// The cluster id.
    pub cluster_id: String,
    /// Each heartbeat disk.
    pub disks: Vec<InitDisk>,
}

/// `cluster.failover` params.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailoverParams {
    /// One pool; all owned here when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

/// `cluster.maintenance` params and result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceParams {
    /// Hold (true) or release every automatic takeover.
    pub on: bool,
}

/// `cluster.maintenance` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MaintenanceResult {
    /// The mode now.
    pub maintenance: bool,
}

/// One fence agent's check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AgentCheck {
    /// Agent name.
    pub agent: String,
    /// It could fence.
    pub ok: bool,
    /// What it said.
    pub detail: String,
}

/// `cluster.fence_test` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FenceTestResult {
    /// The controller the agents would fence.
    pub target: String,
    /// Each agent.
    pub agents: Vec<AgentCheck>,
}

/// `cluster.timeline` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TimelineResult {
    /// Takeovers and givebacks, oldest first, each step with its duration
    /// (heartbeat's timeline entry form).
    pub entries: Vec<Value>,
}

/// `cluster.failover` and `cluster.giveback` result: the move's timeline
/// entry (kind, pools, ok, steps with durations; heartbeat's form).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct MoveResult(pub serde_json::Map<String, Value>);

method!(Status, "cluster.status", NoParams, StatusResult);
method!(Init, "cluster.init", InitParams, InitResult);
method!(Failover, "cluster.failover", FailoverParams, MoveResult);
method!(Giveback, "cluster.giveback", NoParams, MoveResult);
method!(
    Maintenance,
    "cluster.maintenance",
    MaintenanceParams,
    MaintenanceResult
);
method!(FenceTest, "cluster.fence_test", NoParams, FenceTestResult);
method!(Timeline, "cluster.timeline", NoParams, TimelineResult);
