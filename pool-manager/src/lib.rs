//! duplex-pool-manager: disks, pools (LVM volume groups owned through the
//! LVM `system_id`), RAID layouts, thin volumes, snapshots, clones,
//! import, export and takeover. design brief 3 and 4.5; docs/pool-manager.md.
//!
//! Code map: [`core`] is pure (validation, layouts, ownership rules, the
//! reconciler's `plan`, health thresholds); [`backend`] holds the
//! `PoolBackend` trait with the LVM implementation and the simulator;
//! [`manager`] carries out the operations (desired state first, then the
//! backend, rollback on failure); [`rpc`] maps JSON-RPC methods onto it;
//! [`error`] is the error enum and the one place RPC codes are assigned.

pub mod backend;
pub mod core;
pub mod error;
pub mod manager;
pub mod rpc;
