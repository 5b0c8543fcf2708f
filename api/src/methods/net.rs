//! The `net` namespace (targets: floating addresses).

use super::NoParams;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A floating address as `net.status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FloatingIp {
    /// Name.
    pub name: String,
    /// Address with prefix.
    pub address: String,
    /// Interface.
    pub interface: String,
    /// Owner (recorded).
    pub owner: String,
    /// Up on this controller now.
    pub held_here: bool,
    /// Forced up (true) or down (false) here by `net.up`/`net.down`.
    pub forced: Option<bool>,
}

/// `net.status` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatusResult {
    /// The floating addresses.
    pub floating_ips: Vec<FloatingIp>,
}

/// `net.up` and `net.down` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NameParams {
    /// The floating address.
    pub name: String,
}

/// `net.up` and `net.down` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Changed {
    /// The floating address.
    pub name: String,
    /// Raised (true) or dropped.
    pub up: bool,
    /// The address changes made (targets' form: add, remove, announce).
    pub steps: Vec<Value>,
}

method!(Status, "net.status", NoParams, StatusResult);
method!(Up, "net.up", NameParams, Changed);
method!(Down, "net.down", NameParams, Changed);
