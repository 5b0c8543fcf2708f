//! Errors of pool-manager operations and the one place they become JSON-RPC
//! error codes ([`PoolError::to_rpc`]).

use crate::backend::BackendError;
use crate::core::ownership::Refused;
use crate::core::Invalid;
use duplex_services::{ErrorCode, RpcError};
use std::error::Error as _;

/// Why an operation failed. Unless the variant says otherwise, nothing was
/// changed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// Bad input (names the field).
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// A named object does not exist.
    #[error("{what} {name:?} does not exist")]
    NotFound {
        /// Kind of object (`pool`, `volume`, `disk`).
        what: &'static str,
        /// Its name.
        name: String,
        /// The parameter naming it.
        field: String,
    },
    /// The object exists already, is in use, or its state forbids the call.
    #[error("{field}: {reason}")]
    Conflict {
        /// The parameter concerned.
        field: String,
        /// Why.
        reason: String,
    },
    /// The ownership rules refuse (fail closed).
    #[error(transparent)]
    Ownership(#[from] Refused),
    /// The pool belongs to the other controller in the desired state.
    #[error("pool {pool} is owned by controller {owner}")]
    NotOwner {
        /// The pool.
        pool: String,
        /// Its recorded owner.
        owner: String,
    },
    /// The thin pool is too full for new volumes.
    #[error("pool {pool}: thin pool {what} usage is {percent:.1} %, new volumes are refused from 95 % on")]
    PoolFull {
        /// The pool.
        pool: String,
        /// `data` or `metadata`.
        what: &'static str,
        /// The usage.
        percent: f64,
    },
    /// After an export, device-mapper still holds devices of the pool.
    #[error("pool {pool} was deactivated but device-mapper still holds {devices:?}; it is NOT safe to import it elsewhere")]
    DmLeftovers {
        /// The pool.
        pool: String,
        /// The device-mapper names left.
        devices: Vec<String>,
    },
    /// The storage stack failed.
    #[error("{op} failed")]
    Backend {
        /// The operation (`create pool p1`).
        op: String,
        /// The backend error.
        #[source]
        source: BackendError,
    },
    /// config-keeper or the partner refused or could not be reached.
    #[error("{op} failed")]
    Cluster {
        /// The operation (`record volume v1`).
        op: String,
        /// The RPC error.
        #[source]
        source: RpcError,
    },
    /// A step failed and undoing the earlier steps failed too: the state is
    /// between the two and needs an operator (the message says what is left).
    #[error("{op} failed and the rollback failed too; left behind: {left}")]
    RollbackFailed {
        /// The operation.
        op: String,
        /// What is left half done.
        left: String,
        /// The first failure.
        #[source]
        source: Box<PoolError>,
        /// The rollback failure.
        rollback: Box<PoolError>,
    },
}

impl PoolError {
    /// Wraps a backend failure of `op`.
    pub fn backend(op: impl Into<String>) -> impl FnOnce(BackendError) -> PoolError {
        let op = op.into();
        move |source| PoolError::Backend { op, source }
    }

    /// Wraps a cluster (router, config-keeper, partner) failure of `op`.
    pub fn cluster(op: impl Into<String>) -> impl FnOnce(RpcError) -> PoolError {
        let op = op.into();
        move |source| PoolError::Cluster { op, source }
    }

    /// This failure of `op` with a rollback that failed too, leaving `left`.
    /// A failure that already carries a failed rollback keeps its first
    /// rollback error and adds `left` to what it leaves.
    pub fn with_failed_rollback(self, op: &str, left: &str, rollback: PoolError) -> PoolError {
        match self {
            PoolError::RollbackFailed {
                op,
                left: before,
                source,
                rollback,
            } => PoolError::RollbackFailed {
                op,
                left: format!("{before}, {left}"),
                source,
                rollback,
            },
            first => PoolError::RollbackFailed {
                op: op.into(),
                left: left.into(),
                source: Box::new(first),
                rollback: Box::new(rollback),
            },
        }
    }

    /// The message with its causes (`a: b: c`), for the RPC reply and logs.
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut cur: Option<&dyn std::error::Error> = self.source();
        while let Some(e) = cur {
            let m = e.to_string();
            if !s.contains(&m) {
                s.push_str(": ");
                s.push_str(&m);
            }
            cur = e.source();
        }
        if let PoolError::RollbackFailed { rollback, .. } = self {
            s.push_str("; rollback: ");
            s.push_str(&rollback.chain());
        }
        s
    }

    /// The JSON-RPC error (the one mapping of this service's errors to codes).
    pub fn to_rpc(&self) -> RpcError {
        let msg = self.chain();
        match self {
            PoolError::Invalid(i) => RpcError::invalid_params(&i.field, &i.reason),
            PoolError::NotFound { field, .. } => {
                RpcError::new(ErrorCode::NotFound, msg).with_field(field.clone())
            }
            PoolError::Conflict { field, .. } => {
                RpcError::new(ErrorCode::Conflict, msg).with_field(field.clone())
            }
            PoolError::Ownership(r) => {
                let code = match r {
                    Refused::OwnedByPartner { .. } | Refused::RecordedElsewhere { .. } => {
                        ErrorCode::NotOwner
                    }
                    Refused::StaleEpoch { .. } => ErrorCode::InvalidParams,
                    Refused::Foreign { .. } | Refused::ActiveOnPartner { .. } => {
                        ErrorCode::Conflict
                    }
                };
                let e = RpcError::new(code, msg)
                    .with_data("refused", serde_json::to_value(r).unwrap_or_default());
                if matches!(r, Refused::StaleEpoch { .. }) {
                    e.with_field("epoch")
                } else {
                    e.with_field("name")
                }
            }
            PoolError::NotOwner { owner, .. } => RpcError::new(ErrorCode::NotOwner, msg)
                .with_field("name")
                .with_data("owner", owner.clone().into()),
            PoolError::PoolFull { .. } => {
                RpcError::new(ErrorCode::Conflict, msg).with_field("pool")
            }
            PoolError::DmLeftovers { devices, .. } => RpcError::new(ErrorCode::BackendFailed, msg)
                .with_data("devices", serde_json::json!(devices)),
            PoolError::Backend { source, .. } => {
                let e = RpcError::new(ErrorCode::BackendFailed, msg);
                match source {
                    BackendError::Invalid(i) => RpcError::invalid_params(&i.field, &i.reason),
                    _ => e,
                }
            }
            PoolError::Cluster { source, .. } => {
                // Keep the callee's kind and field (config-keeper's
                // validation names the field), with our context in front.
                let mut e = source.clone();
                e.message = msg;
                e
            }
            PoolError::RollbackFailed { .. } => RpcError::new(ErrorCode::BackendFailed, msg)
                .with_data("rollback_failed", true.into()),
        }
    }
}

impl From<PoolError> for RpcError {
    fn from(e: PoolError) -> Self {
        e.to_rpc()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_fields() {
        let e = PoolError::from(Invalid::new("size", "needs a unit"));
        let r = e.to_rpc();
        assert_eq!(r.kind(), Some(ErrorCode::InvalidParams));
        assert_eq!(r.field(), Some("size"));
        let e = PoolError::from(Refused::OwnedByPartner {
            pool: "p".into(),
            owner: "B".into(),
        });
        assert_eq!(e.to_rpc().kind(), Some(ErrorCode::NotOwner));
        let e = PoolError::RollbackFailed {
            op: "create pool p".into(),
            left: "volume group dx-p".into(),
            source: Box::new(PoolError::Conflict {
                field: "x".into(),
                reason: "first".into(),
            }),
            rollback: Box::new(PoolError::Conflict {
                field: "y".into(),
                reason: "second".into(),
            }),
        };
        let m = e.to_rpc().message;
        assert!(
            m.contains("first") && m.contains("second") && m.contains("dx-p"),
            "{m}"
        );
    }

    #[test]
    fn a_second_failed_rollback_adds_to_what_is_left() {
        let conflict = |reason: &str| PoolError::Conflict {
            field: "x".into(),
            reason: reason.into(),
        };
        let e = conflict("first").with_failed_rollback(
            "create pool p",
            "volume group dx-p",
            conflict("second"),
        );
        let e = e.with_failed_rollback("create pool p", "the record of pool p", conflict("third"));
        let PoolError::RollbackFailed {
            op,
            left,
            source,
            rollback,
        } = &e
        else {
            panic!("{e:?}");
        };
        assert_eq!(op, "create pool p");
        assert_eq!(left, "volume group dx-p, the record of pool p");
        assert!(source.to_string().contains("first"), "{source}");
        assert!(rollback.to_string().contains("second"), "{rollback}");
    }
}
