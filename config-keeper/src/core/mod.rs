//! The pure core: the digest, sections and stamps, the replication state
//! machines and the config lock. The schema types, validation and the
//! change language live in `duplex-api`.
//!
//! Architecture invariant: nothing here touches the outside world (no I/O,
//! no SQLite, no tokio, no clock). Time and identities are inputs.

pub mod conflicts;
pub mod lock;
pub mod replication;
pub mod state;
