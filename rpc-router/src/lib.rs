//! `duplex-router`: the message bus of one controller.
//!
//! Architecture invariant: the router never interprets a service's
//! parameters or results; it routes by namespace, stamps the action_id and
//! the caller, and records each message in the recent-actions log.
//!
//! - [`registry`]: who owns which namespace, up or down (pure).
//! - [`actions`]: the recent-actions ring buffer (pure).
//! - [`topics`]: event topic patterns (pure).
//! - [`peer`]: the authenticated link to the partner's router.
//! - [`router`]: the dispatcher that ties them to sockets.
//!
//! Addressing the partner: a request with `"controller": "<partner id>"` is
//! forwarded over the peer link and answered by the partner's router exactly
//! as a local call there; the action_id crosses the link unchanged.

pub mod actions;
pub mod peer;
pub mod registry;
pub mod router;
pub mod topics;

pub use router::Router;
