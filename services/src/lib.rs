//! The runtime every Duplex daemon shares.
//!
//! Architecture invariant: this crate knows nothing about pools, targets or
//! heartbeats; it moves JSON-RPC messages, carries the action_id, and wraps
//! the process-level effects (sockets, systemd, logging, external commands).
//!
//! - [`rpc`]: wire types and the application error table.
//! - [`frame`]: newline framing with a size limit.
//! - [`conn`] and [`server`]: the calling and answering sides of a connection.
//! - [`client`]: the router client (call, notify, publish, subscribe).
//! - [`service`]: the service runtime (register, dispatch, re-register).
//! - [`action`]: the action_id context.
//! - [`daemon`]: what every `main` repeats, and the event-or-timer driver loop.
//! - [`statefile`]: versioned, checksummed state files.
//! - [`config`], [`telemetry`], [`systemd`], [`exec`].

pub mod action;
pub mod client;
pub mod config;
pub mod conn;
pub mod daemon;
pub mod durable;
pub mod exec;
pub mod frame;
pub mod rpc;
pub mod server;
pub mod service;
pub mod statefile;
pub mod systemd;
pub mod telemetry;

pub use client::{CallError, Event, RouterClient};
pub use config::Config;
pub use rpc::{ErrorCode, RpcError};
pub use service::{params, Ctx, ServiceBuilder};
