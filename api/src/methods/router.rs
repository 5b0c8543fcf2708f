//! The `router` namespace (answered by the router itself).

use super::NoParams;
use crate::catalogue::Version;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// `router.register` params: what a service tells its router.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Registration {
    /// Service name, e.g. `pool-manager`.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The namespaces it owns (`pool`, `disk`, ...).
    pub namespaces: Vec<String>,
    /// Every method it answers.
    pub methods: Vec<String>,
    /// Its own socket, where the router sends calls.
    pub socket: PathBuf,
    /// Its process id.
    #[serde(default)]
    pub pid: u32,
    /// The method catalogue version the service was built with; the router
    /// refuses a registration without one or with an incompatible one.
    #[serde(default)]
    pub catalogue: Option<Version>,
    /// Methods that may run longer than the router's default call timeout
    /// (method → milliseconds), e.g. a pool takeover activating hundreds of
    /// volumes. The router caps them at its `max_call_timeout_ms`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timeouts_ms: BTreeMap<String, u64>,
}

/// `router.register` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Registered {
    /// The service registered.
    pub registered: String,
    /// The router's controller.
    pub controller: String,
}

/// The peer link as `router.services` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PeerLink {
    /// The partner controller.
    pub controller: String,
    /// `up` or `down`.
    pub state: String,
    /// The address the outgoing connection uses.
    pub via: Option<String>,
    /// When the link last changed state (ms since the epoch).
    pub since_ms: u64,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
}

/// `router.services` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ServicesResult {
    /// This controller.
    pub controller: String,
    /// Registry entries: the registration, state (`up`/`down`), times.
    pub services: Vec<Value>,
    /// The peer link, when a partner is configured.
    pub peer: Option<PeerLink>,
}

/// `router.actions` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ActionsParams {
    /// Only this action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action_id: Option<String>,
    /// At most this many records, newest last (default 200).
    #[serde(default = "default_actions")]
    pub limit: usize,
}

fn default_actions() -> usize {
    200
}

/// `router.actions` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ActionsResult {
    /// This controller.
    pub controller: String,
    /// Records: caller, callee, method, action_id, duration, result.
    pub actions: Vec<Value>,
}

/// `router.status` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatusResult {
    /// This controller.
    pub controller: String,
    /// The router's version.
    pub version: String,
    /// Seconds since it started.
    pub uptime_s: u64,
    /// Services registered and up.
    pub services_up: usize,
    /// Services registered whose connection is gone.
    pub services_down: usize,
    /// Event subscribers.
    pub subscribers: usize,
    /// Calls routed since start, per method of the catalogue.
    #[serde(default)]
    pub calls: BTreeMap<String, MethodCalls>,
}

/// How often one method was routed, for `router.status` and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MethodCalls {
    /// Calls answered.
    pub calls: u64,
    /// Of those, answered with an error.
    pub errors: u64,
    /// Their total time in the router, µs.
    pub total_us: u64,
}

/// `router.ping` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Pong {
    /// Always true.
    pub pong: bool,
    /// The answering controller.
    pub controller: String,
}

method!(Register, "router.register", Registration, Registered);
method!(Services, "router.services", NoParams, ServicesResult);
method!(Actions, "router.actions", ActionsParams, ActionsResult);
method!(Status, "router.status", NoParams, StatusResult);
method!(Ping, "router.ping", NoParams, Pong);
