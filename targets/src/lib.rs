//! `duplex-targets`: LIO iSCSI and nvmet through configfs, ALUA target port
//! groups and ANA groups, host ACLs and CHAP.
//!
//! - [`core`]: pure model of the configfs trees, the desired tree built from
//!   the configuration, and `plan(desired, observed)`.
//! - [`backend`]: the `TargetBackend` trait, the configfs implementation and
//!   the simulator, and the observer.
//! - [`reconciler`]: the driver that observes, plans, applies and flips.
//! - [`rpc`]: the `target.*` methods.
//! - [`overrides`]: the flip overrides kept on disk across restarts.
//! - [`prstore`]: LIO's `db_root`, where it saves persistent reservations.
//! - [`error`]: error types.
//!
//! Architecture invariant: only `backend` touches the kernel; only `rpc`
//! and `main` know about the router.

pub mod backend;
pub mod core;
pub mod error;
pub mod overrides;
pub mod prstore;
pub mod reconciler;
pub mod rpc;
