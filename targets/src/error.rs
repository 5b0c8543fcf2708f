//! Errors of the targets service. Each names the configfs path or the
//! parameter it is about; `rpc` maps them to JSON-RPC codes in one place.

use std::io;

/// A configfs operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// A filesystem call failed (the kernel refused, or the path is wrong).
    #[error("{op} {path}")]
    Io {
        /// `mkdir`, `rmdir`, `write`, `read`, `symlink`, `unlink`, `list`, `readlink`.
        op: &'static str,
        /// The path, relative to the configfs root.
        path: String,
        /// The error the kernel (or the sim) gave.
        #[source]
        source: io::Error,
    },
    /// The root is not a mounted configfs.
    #[error("{root} is not a mounted configfs ({detail})")]
    NotConfigfs {
        /// The configured root.
        root: String,
        /// What was found instead.
        detail: String,
    },
    /// An attribute held something we cannot parse.
    #[error("{path}: unexpected content {content:?}")]
    Parse {
        /// The attribute.
        path: String,
        /// What it held.
        content: String,
    },
}

/// Saving or loading the flip overrides failed.
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// The state file could not be read or written, or is damaged.
    #[error(transparent)]
    State(#[from] duplex_services::statefile::StateFileError),
}

/// A reconcile that stopped part way.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Reading configfs failed.
    #[error("observing configfs")]
    Observe(#[source] BackendError),
    /// A step failed; the steps before it were applied.
    #[error("step {index} of {total} ({step}) failed")]
    Step {
        /// 0-based index of the failed step.
        index: usize,
        /// How many steps the plan had.
        total: usize,
        /// The step (secrets masked).
        step: String,
        /// Why.
        #[source]
        source: BackendError,
    },
}

/// Reading or clearing persistent reservations failed.
#[derive(Debug, thiserror::Error)]
pub enum ReservationError {
    /// No backstore of that name here.
    #[error("volume {0} has no LIO backstore on this controller")]
    NotFound(String),
    /// configfs or the APTPL directory could not be read or changed.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// Registrations or a holder were still there after the clear.
    #[error("volume {volume}: {registrations} registration(s) and holder {holder:?} left after the clear")]
    Remaining {
        /// The volume.
        volume: String,
        /// Registrations left.
        registrations: usize,
        /// The holder left, if any.
        holder: Option<String>,
    },
}

/// Renders an error with its whole source chain on one line.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
