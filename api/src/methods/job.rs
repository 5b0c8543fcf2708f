//! The `job` namespace (the router): long methods run in the background
//! under an id, with their progress and final result.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `job.start` params: a method of the catalogue marked `job` (and
/// `external`), and its parameters.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StartParams {
    /// The method (`pool.create`, `cluster.failover`...).
    pub method: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Value,
}

/// `job.start` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct Started {
    /// The job's id: `<controller>:<action_id>` (the action the method
    /// runs under, so `duplexctl trace` follows it).
    pub job: String,
}

/// `job.get` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetParams {
    /// The job's id.
    pub job: String,
}

/// `job.wait` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitParams {
    /// The job's id.
    pub job: String,
    /// Answer at the latest after this long, ms (default and at most
    /// 30,000): the job as it is then, running or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
}

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Under way.
    Running,
    /// The method answered with a result.
    Succeeded,
    /// The method answered with an error, or its controller is gone.
    Failed,
}

/// The last event published under the job's action (`pool.progress`,
/// a step's event), as its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Progress {
    /// The event's topic.
    pub topic: String,
    /// Its data.
    pub data: Value,
    /// When it was published, ms since the Unix epoch.
    pub time_ms: u64,
}

/// A job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Job {
    /// Its id.
    pub job: String,
    /// The controller running it.
    pub controller: String,
    /// The method.
    pub method: String,
    /// Who started it, as the router names callers.
    pub caller: String,
    /// Where it is.
    pub state: JobState,
    /// When it started, ms since the Unix epoch.
    pub started_ms: u64,
    /// When it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// Its progress, while there is any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<Progress>,
    /// The method's result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The method's error (the JSON-RPC error object), or why the job's
    /// outcome is unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
}

/// `job.list` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct ListResult {
    /// This controller's recent jobs, newest first.
    pub jobs: Vec<Job>,
}

method!(Start, "job.start", StartParams, Started);
method!(Get, "job.get", GetParams, Job);
method!(Wait, "job.wait", WaitParams, Job);
method!(List, "job.list", super::NoParams, ListResult);
