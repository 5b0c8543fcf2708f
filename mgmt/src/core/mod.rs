//! The endpoint's decisions, without I/O, clocks or randomness: callers
//! pass the time (ms since the Unix epoch) and fresh tokens in.
//!
//! - [`authz`]: who may call what, from the catalogue's marks (one place).
//! - [`session`]: session tokens and their expiry.
//! - [`backoff`]: failed logins slow down per (user, address).
//! - [`openrpc`]: the OpenRPC document generated from the catalogue.
//! - [`metrics`]: the services' answers in the Prometheus text format.

pub mod authz;
pub mod backoff;
pub mod metrics;
pub mod openrpc;
pub mod session;
