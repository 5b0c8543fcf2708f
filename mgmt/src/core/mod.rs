//! The endpoint's decisions, without I/O, clocks or randomness: callers
//! pass the time (ms since the Unix epoch) and fresh tokens in.
//!
//! - [`authz`]: who may call what, from the catalogue's marks (one place).
//! - [`session`]: session tokens and their expiry.
//! - [`backoff`]: failed logins slow down per (user, address).
//! - [`openrpc`]: the OpenRPC document generated from the catalogue.
//! - [`metrics`]: the services' answers in the Prometheus text format.
//! - [`fuzz`]: the property the endpoint's fuzz target checks.

pub mod authz;
pub mod backoff;
pub mod fuzz;
pub mod metrics;
pub mod openrpc;
pub mod session;
