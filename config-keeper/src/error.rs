//! Error types of the keeper. JSON-RPC codes are assigned in exactly one
//! place, `rpc::to_rpc_error`.

use std::path::PathBuf;

use crate::core::state::MergeError;
use duplex_api::change::Violation;

/// Failure of the SQLite store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database file could not be opened or configured.
    #[error("cannot open config database {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database file could not be created or made private (0600).
    #[error("cannot make config database {path} private")]
    Private {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A schema migration failed (the transaction rolled back).
    #[error("schema migration {version} ({name}) failed")]
    Migration {
        /// Migration number.
        version: u32,
        /// Migration name.
        name: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer keeper.
    #[error("database schema version {found} is newer than this keeper knows ({known})")]
    SchemaTooNew {
        /// Highest migration in the file.
        found: u32,
        /// Highest migration we know.
        known: u32,
    },
    /// The file belongs to the other controller (a copied database would
    /// make us authoritative for the wrong section).
    #[error("database belongs to controller {found:?}, this is controller {expected:?}")]
    WrongController {
        /// Id in the file.
        found: String,
        /// Our id.
        expected: String,
    },
    /// A statement failed.
    #[error("sqlite failed while {context}")]
    Sqlite {
        /// What we were doing.
        context: &'static str,
        /// SQLite's error.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored row does not parse.
    #[error("stored {what} is corrupt: {reason}")]
    Corrupt {
        /// Which row.
        what: String,
        /// Why.
        reason: String,
    },
    /// An entry shipped by the partner cannot be merged.
    #[error("cannot merge the partner's entry")]
    Merge(#[from] MergeError),
    /// A rebuild from the partner on a database that is not empty.
    #[error("rebuild from the partner refused: {0}")]
    RebuildRefused(String),
    /// An unlock by someone who is not the lock's owner, without force.
    #[error(transparent)]
    NotLockOwner(#[from] crate::core::lock::NotOwner),
    /// The partner shipped an entry of our own section.
    #[error("entry {seq} claims origin {origin:?}, which is this controller")]
    OwnOrigin {
        /// The origin in the entry.
        origin: String,
        /// Its sequence number.
        seq: u64,
    },
}

/// Helper to wrap rusqlite errors with what we were doing.
pub(crate) fn sql(context: &'static str) -> impl FnOnce(rusqlite::Error) -> StoreError {
    move |source| StoreError::Sqlite { context, source }
}

/// Why `config.apply` refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The config lock is held.
    #[error("configuration is locked: {reason}")]
    Locked {
        /// The lock's reason.
        reason: String,
        /// Since when, ms since the Unix epoch.
        since_ms: u64,
    },
    /// A change failed validation; nothing was written.
    #[error("invalid change")]
    Invalid(#[from] Violation),
    /// The store failed; nothing was written (the transaction rolled back).
    #[error("store failed")]
    Store(#[from] StoreError),
}
