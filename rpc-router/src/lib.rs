//! `duplex-router`: the message bus of one controller.
//!
//! Architecture invariant: the router never interprets a service's
//! parameters or results; it routes by namespace, stamps the action_id and
//! the caller, and records each message in the recent-actions log (and an
//! administrator's writes, parameters redacted, in the audit log).
//!
//! - [`registry`]: who owns which namespace, up or down (pure).
//! - [`actions`]: the recent-actions ring buffer (pure).
//! - [`topics`]: event topic patterns (pure).
//! - [`audit`]: which calls are administrators' writes, and their audit
//!   record (pure); the router queues them for config-keeper.
//! - [`jobs`]: the jobs table (pure): `job.start` runs a long method in
//!   the background, `job.get`, `job.wait`, `job.list` follow it.
//! - [`peer`]: the authenticated link to the partner's router.
//! - [`peer_tls`]: the mutual TLS under it, keys derived from the cluster secret.
//! - [`router`]: the dispatcher that ties them to sockets.
//!
//! Addressing the partner: a request with `"controller": "<partner id>"` is
//! forwarded over the peer link and answered by the partner's router exactly
//! as a local call there; the action_id crosses the link unchanged.

pub mod actions;
pub mod audit;
pub mod jobs;
pub mod peer;
pub mod peer_tls;
pub mod registry;
pub mod router;
pub mod topics;

pub use router::Router;
