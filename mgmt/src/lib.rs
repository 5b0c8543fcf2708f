//! duplex-mgmt: the management endpoint. HTTPS and WebSocket JSON-RPC 2.0
//! (jsonrpsee behind hyper and tokio-rustls) on the controller's
//! management address, with login, sessions and the two roles; it reaches
//! the services through the router like any other client.
//!
//! - [`core`]: the decisions (roles, sessions, login back-off, redaction,
//!   the OpenRPC document), pure and unit-tested.
//! - [`tls`]: the certificate, made at first start.
//! - [`endpoint`]: the RPC module, the HTTP layer (cookies, Origin), the
//!   listener.
//! - [`users`]: password checks against config-keeper's users.
//! - [`metrics`]: `/metrics`, the scrape token and one scrape's calls.
//! - [`ui`]: the web UI's static files.

pub mod core;
pub mod endpoint;
pub mod metrics;
pub mod tls;
pub mod ui;
pub mod users;
