//! The `event` namespace: publish and subscribe through the router.

use super::NoParams;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `event.subscribe` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SubscribeParams {
    /// Topics or patterns (`pool.*`); at least one.
    pub topics: Vec<String>,
}

/// `event.subscribe` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Subscribed {
    /// The patterns now subscribed.
    pub subscribed: Vec<String>,
}

/// `event.unsubscribe` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Unsubscribed {
    /// Always false.
    pub subscribed: bool,
}

/// `event.publish` params.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PublishParams {
    /// The topic (dotted lowercase words, see [`crate::topics`]).
    pub topic: String,
    /// The payload.
    #[serde(default)]
    pub data: Value,
    /// Forward to the partner's subscribers too.
    #[serde(default)]
    pub partner: bool,
    /// Set by the partner's router when it forwards an event: where it
    /// was published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub controller: Option<String>,
    /// Set by the partner's router: who published it there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// `event.publish` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Published {
    /// Local subscribers it reached.
    pub delivered: usize,
    /// Whether it went to the partner.
    pub partner: bool,
}

method!(Subscribe, "event.subscribe", SubscribeParams, Subscribed);
method!(Unsubscribe, "event.unsubscribe", NoParams, Unsubscribed);
method!(Publish, "event.publish", PublishParams, Published);
