//! Event topic names: every topic a service publishes or subscribes to is
//! one of these constants, so a typo is a compile error, not a silent
//! subscription to nothing.

/// config-keeper committed a change (local or merged from the partner).
pub const CONFIG_CHANGED: &str = "config.changed";
/// A pool was created.
pub const POOL_CREATED: &str = "pool.created";
/// A pool was deleted.
pub const POOL_DELETED: &str = "pool.deleted";
/// A pool was imported here.
pub const POOL_IMPORTED: &str = "pool.imported";
/// A pool was taken over here under a new epoch.
pub const POOL_TAKEN_OVER: &str = "pool.taken_over";
/// A pool was exported from here.
pub const POOL_EXPORTED: &str = "pool.exported";
/// Progress of a long pool operation (RAID sync).
pub const POOL_PROGRESS: &str = "pool.progress";
/// A RAID rebuild started or runs.
pub const POOL_REBUILD: &str = "pool.rebuild";
/// A volume was created.
pub const VOLUME_CREATED: &str = "volume.created";
/// A volume was resized.
pub const VOLUME_RESIZED: &str = "volume.resized";
/// A volume was deleted.
pub const VOLUME_DELETED: &str = "volume.deleted";
/// A pool's port groups changed access state here.
pub const TARGET_ACCESS_STATE: &str = "target.access_state";
/// targets applied a reconcile plan.
pub const TARGET_RECONCILED: &str = "target.reconciled";
/// configfs differed from what targets had applied.
pub const TARGET_DRIFT: &str = "target.drift";
/// Floating addresses changed here.
pub const NET_CHANGED: &str = "net.changed";
/// The heartbeat's view of the partner changed.
pub const CLUSTER_STATE: &str = "cluster.state";
/// A takeover finished (with its timeline).
pub const CLUSTER_TAKEOVER_DONE: &str = "cluster.takeover_done";
/// A giveback finished (with its timeline).
pub const CLUSTER_GIVEBACK_DONE: &str = "cluster.giveback_done";
/// pool-manager's reconciler found the storage differing from the desired
/// state (never repaired: an administrator decides).
pub const POOL_DRIFT: &str = "pool.drift";
/// A job started or ended (the router's).
pub const JOB_CHANGED: &str = "job.changed";
/// Something an administrator must see.
pub const ALERT: &str = "alert";

/// Every topic, for validation and documentation.
pub const ALL: &[&str] = &[
    CONFIG_CHANGED,
    POOL_CREATED,
    POOL_DELETED,
    POOL_IMPORTED,
    POOL_TAKEN_OVER,
    POOL_EXPORTED,
    POOL_PROGRESS,
    POOL_REBUILD,
    POOL_DRIFT,
    VOLUME_CREATED,
    VOLUME_RESIZED,
    VOLUME_DELETED,
    TARGET_ACCESS_STATE,
    TARGET_RECONCILED,
    TARGET_DRIFT,
    NET_CHANGED,
    JOB_CHANGED,
    CLUSTER_STATE,
    CLUSTER_TAKEOVER_DONE,
    CLUSTER_GIVEBACK_DONE,
    ALERT,
];
