//! duplex-config-keeper: the SQLite desired state of both controllers, its
//! validated transactions, replication to the partner and the config lock.
//!
//! Code map: [`core`] is pure (model, validation, replication state
//! machines); [`store`] is the only module that talks to SQLite; `rpc` maps
//! JSON-RPC methods onto the two; [`error`] holds the error enums.

pub mod core;
pub mod error;
pub mod keeper;
pub mod password;
pub mod rpc;
pub mod store;
