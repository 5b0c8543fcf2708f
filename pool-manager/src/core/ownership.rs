//! Ownership rules: when this controller may import a pool, and what a
//! takeover must check. All fail closed: when in doubt, refuse.
//!
//! The LVM system_id of a pool's volume group is the controller id of its
//! owner. A controller only activates volume groups carrying its own id; a
//! takeover (after the partner is fenced, with the current cluster epoch)
//! rewrites the id.

use duplex_api::model::Pool;
use serde::Serialize;

/// What the partner says about a pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartnerView {
    /// No partner is configured.
    Alone,
    /// The partner could not be asked.
    Unreachable,
    /// The partner has something of the pool active.
    Active,
    /// The partner has nothing of the pool active.
    Inactive,
}

/// Why an import or takeover is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refused {
    /// The volume group carries the partner's system_id.
    #[error("pool {pool} belongs to controller {owner} (LVM system_id); only pool.takeover with the current epoch, after fencing, may move it")]
    OwnedByPartner {
        /// The pool.
        pool: String,
        /// The system_id found.
        owner: String,
    },
    /// The volume group has no or an unknown system_id.
    #[error(
        "pool {pool} has system_id {system_id:?}, which is neither controller's; refusing to guess"
    )]
    Foreign {
        /// The pool.
        pool: String,
        /// The system_id found.
        system_id: String,
    },
    /// The partner has the pool active.
    #[error("pool {pool} is active on controller {partner}; export it there first or fence it and take over")]
    ActiveOnPartner {
        /// The pool.
        pool: String,
        /// The partner.
        partner: String,
    },
    /// The epoch is not the current cluster epoch.
    #[error("epoch {given} is not the current cluster epoch {current}")]
    StaleEpoch {
        /// Epoch passed.
        given: u64,
        /// Cluster epoch.
        current: u64,
    },
    /// The desired state records another owner under this epoch or later.
    #[error("pool {pool} is recorded for controller {owner} under epoch {epoch}")]
    RecordedElsewhere {
        /// The pool.
        pool: String,
        /// The recorded owner.
        owner: String,
        /// The recorded epoch.
        epoch: u64,
    },
}

/// What an import must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Import {
    /// Already active here: nothing to do.
    Already,
    /// Activate.
    Activate,
}

/// Decides `pool.import`: only a pool carrying our system_id, and never one
/// the partner reports active. An unreachable partner does not block an
/// import of our own pool: the partner cannot activate it without a
/// takeover, which rewrites the system_id first.
pub fn check_import(
    pool: &str,
    system_id: &str,
    active_here: bool,
    me: &str,
    partner_id: Option<&str>,
    partner: PartnerView,
) -> Result<Import, Refused> {
    if system_id != me {
        return Err(if Some(system_id) == partner_id {
            Refused::OwnedByPartner {
                pool: pool.into(),
                owner: system_id.into(),
            }
        } else {
            Refused::Foreign {
                pool: pool.into(),
                system_id: system_id.into(),
            }
        });
    }
    if partner == PartnerView::Active {
        return Err(Refused::ActiveOnPartner {
            pool: pool.into(),
            partner: partner_id.unwrap_or("?").into(),
        });
    }
    Ok(if active_here {
        Import::Already
    } else {
        Import::Activate
    })
}

/// What a takeover must do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Takeover {
    /// Record `owner = me, epoch` in the desired state first.
    pub record: bool,
    /// Rewrite the system_id (false when it is ours already: a repeated
    /// takeover is idempotent).
    pub rewrite_system_id: bool,
}

/// Decides `pool.takeover(epoch)`. The epoch must be the current cluster
/// epoch (heartbeat bumps it after fencing the partner); the desired state
/// either records us as owner already or is recorded by the takeover
/// itself, but never over another owner recorded under the same or a later
/// epoch. The partner's view is deliberately not consulted: it is fenced.
pub fn check_takeover(
    desired: &Pool,
    system_id: &str,
    me: &str,
    epoch: u64,
    cluster_epoch: u64,
) -> Result<Takeover, Refused> {
    if epoch != cluster_epoch {
        return Err(Refused::StaleEpoch {
            given: epoch,
            current: cluster_epoch,
        });
    }
    let record = if desired.owner == me {
        desired.epoch < epoch
    } else if desired.epoch < epoch {
        true
    } else {
        return Err(Refused::RecordedElsewhere {
            pool: desired.name.clone(),
            owner: desired.owner.clone(),
            epoch: desired.epoch,
        });
    };
    Ok(Takeover {
        record,
        rewrite_system_id: system_id != me,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use duplex_api::model::{Layout, Tier};

    fn pool(owner: &str, epoch: u64) -> Pool {
        Pool {
            name: "p".into(),
            tier: Tier::Regular,
            layout: Layout::Linear,
            home: "A".into(),
            owner: owner.into(),
            epoch,
            disks: vec![],
            copies: None,
        }
    }

    #[test]
    fn import_only_our_own_pools() {
        use PartnerView::*;
        assert_eq!(
            check_import("p", "A", false, "A", Some("B"), Inactive),
            Ok(Import::Activate)
        );
        assert_eq!(
            check_import("p", "A", true, "A", Some("B"), Unreachable),
            Ok(Import::Already)
        );
        assert!(matches!(
            check_import("p", "B", false, "A", Some("B"), Inactive),
            Err(Refused::OwnedByPartner { .. })
        ));
        assert!(matches!(
            check_import("p", "", false, "A", Some("B"), Alone),
            Err(Refused::Foreign { .. })
        ));
        assert!(matches!(
            check_import("p", "A", false, "A", Some("B"), Active),
            Err(Refused::ActiveOnPartner { .. })
        ));
    }

    #[test]
    fn takeover_needs_the_current_epoch() {
        // Heartbeat recorded B as owner under epoch 5: B takes over.
        assert_eq!(
            check_takeover(&pool("B", 5), "A", "B", 5, 5),
            Ok(Takeover {
                record: false,
                rewrite_system_id: true
            })
        );
        // Not yet recorded: the takeover records it.
        assert_eq!(
            check_takeover(&pool("A", 3), "A", "B", 5, 5),
            Ok(Takeover {
                record: true,
                rewrite_system_id: true
            })
        );
        // Repeated: nothing to do.
        assert_eq!(
            check_takeover(&pool("B", 5), "B", "B", 5, 5),
            Ok(Takeover {
                record: false,
                rewrite_system_id: false
            })
        );
        assert!(matches!(
            check_takeover(&pool("A", 3), "A", "B", 4, 5),
            Err(Refused::StaleEpoch { .. })
        ));
        assert!(matches!(
            check_takeover(&pool("A", 3), "A", "B", 6, 5),
            Err(Refused::StaleEpoch { .. })
        ));
        // A recorded itself under this epoch (it won the race): refuse.
        assert!(matches!(
            check_takeover(&pool("A", 5), "A", "B", 5, 5),
            Err(Refused::RecordedElsewhere { .. })
        ));
    }
}
