//! duplex-config-keeper: the SQLite desired state of both controllers, its
//! validated transactions, replication to the partner and the config lock.
//!
//! Code map: [`core`] is pure (model, validation, replication state
//! machines); [`store`] is the only module that talks to SQLite; [`keeper`]
//! runs the store on the blocking pool, group-commits applies and drives
//! replication; [`rpc`] maps the `config.*` methods onto it and assigns the
//! error codes; [`error`] holds the error enums; [`password`] hashes user
//! passwords; [`audit`] keeps and replicates the audit log. See
//! docs/config-keeper.md.

pub mod audit;
pub mod core;
pub mod error;
pub mod keeper;
pub mod password;
pub mod rpc;
pub mod store;
