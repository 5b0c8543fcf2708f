//! The pure core: schema types, validation, the change language, the digest,
//! sections and stamps, the replication state machines and the config lock.
//!
//! Architecture invariant: nothing here touches the outside world (no I/O,
//! no SQLite, no tokio, no clock). Time and identities are inputs.

pub mod change;
pub mod lock;
pub mod model;
pub mod replication;
pub mod state;
pub mod syntax;
pub mod validate;
