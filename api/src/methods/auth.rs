//! The `auth` and `rpc` namespaces (the management endpoint): params and
//! results.

use super::config::NoParams;
use crate::model::Role;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `auth.login` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginParams {
    /// The user name.
    pub user: String,
    /// The password (never logged).
    pub password: String,
}

/// `auth.login` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LoginResult {
    /// The session token: send it as `Authorization: Bearer <token>`
    /// (browsers get it as an HttpOnly cookie as well).
    pub token: String,
    /// The user logged in.
    pub user: String,
    /// The user's role.
    pub role: Role,
    /// When the session ends, ms since the Unix epoch.
    pub expires_ms: u64,
}

/// `auth.logout` result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct LogoutResult {
    /// Whether a session was ended.
    pub logged_out: bool,
}

/// `auth.whoami` result: the caller's session.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
pub struct WhoamiResult {
    /// The user logged in.
    pub user: String,
    /// The user's role.
    pub role: Role,
    /// When the session ends, ms since the Unix epoch.
    pub expires_ms: u64,
}

/// `rpc.discover` result: an OpenRPC 1.x document.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(transparent)]
pub struct DiscoverResult(
    /// The document (a JSON object).
    pub serde_json::Map<String, Value>,
);

method!(Login, "auth.login", LoginParams, LoginResult);
method!(Logout, "auth.logout", NoParams, LogoutResult);
method!(Whoami, "auth.whoami", NoParams, WhoamiResult);
method!(Discover, "rpc.discover", NoParams, DiscoverResult);
