//! The `disk` namespace (pool-manager).

use crate::model::Tier;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `disk.list` params.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// This controller's discovery only (what the partner asks).
    #[serde(default)]
    pub local: bool,
}

/// One disk as `disk.list` shows it to an administrator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct DiskRow {
    /// Stable path (`/dev/disk/by-id/...`).
    pub path: String,
    /// Kernel name (`sdb`).
    pub kernel_name: String,
    /// World wide name.
    pub wwn: String,
    /// True when the WWN was derived (the disk reports none).
    pub wwn_derived: bool,
    /// Vendor serial number.
    pub serial: String,
    /// Model.
    pub model: String,
    /// Bytes.
    pub size: u64,
    /// Spinning.
    pub rotational: bool,
    /// Transport (`sas`, `nvme`, `virtio`).
    pub transport: String,
    /// Recorded tier, else the one the disk reports.
    pub tier: Tier,
    /// Seen by the partner too.
    pub shared: bool,
    /// The pool it belongs to.
    pub pool: Option<String>,
    /// The LVM volume group on it.
    pub vg: Option<String>,
    /// It may join a pool now.
    pub qualifies: bool,
    /// A wipe would let it join.
    pub wipe_would_qualify: bool,
    /// Why it may not join.
    pub refusal: Option<String>,
}

/// `disk.list` result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ListResult {
    /// This controller.
    pub controller: String,
    /// The administrator's view, or the local discovery.
    #[serde(flatten)]
    pub view: DiskView,
}

/// The two forms of `disk.list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DiskView {
    /// Every disk with its tier and whether it may join a pool.
    Checked {
        /// Whether the partner answered (sharing is unknown otherwise).
        partner_reachable: bool,
        /// The disks.
        disks: Vec<DiskRow>,
    },
    /// `local`: this controller's discovery, in pool-manager's disk form
    /// (holders, partitions, signatures, mountpoints).
    Local {
        /// The disks.
        disks: Vec<Value>,
    },
}

method!(List, "disk.list", ListParams, ListResult);
