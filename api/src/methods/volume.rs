//! The `volume` namespace (pool-manager).

use super::Outcome;
use crate::syntax::Size;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `volume.create` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    /// Pool.
    pub pool: String,
    /// Volume name (unique in the cluster).
    pub name: String,
    /// Size with a unit (`"10GiB"`).
    pub size: String,
}

/// `volume.resize` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResizeParams {
    /// Volume.
    pub name: String,
    /// New size with a unit; volumes only grow.
    pub size: String,
}

/// `volume.delete` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NameParams {
    /// Volume.
    pub name: String,
}

/// `volume.snapshot` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotParams {
    /// The volume or snapshot to take it of.
    pub source: String,
    /// The snapshot's name.
    pub name: String,
    /// Read-only (the default).
    #[serde(default = "yes")]
    pub read_only: bool,
}

fn yes() -> bool {
    true
}

/// `volume.clone` params.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CloneParams {
    /// The volume or snapshot to clone.
    pub source: String,
    /// The clone's name.
    pub name: String,
}

/// `volume.list` params.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// One pool only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
}

/// A volume with its identity and devices; `R` is how read-only is known
/// (recorded: `bool`; as LVM shows it in `volume.list`: `Option<bool>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VolumeInfo<R = bool> {
    /// Name.
    pub name: String,
    /// Pool.
    pub pool: String,
    /// Size with a unit.
    #[schemars(with = "String")]
    pub size: Size,
    /// Size in bytes.
    pub size_bytes: u64,
    /// The per-volume device targets export (`/dev/mapper/dxvol-<serial>`).
    pub device: String,
    /// The LV (`/dev/dx-<pool>/<name>`), present where the pool is imported.
    pub lv_device: String,
    /// Read-only (snapshots by default).
    pub read_only: R,
    /// SCSI serial.
    pub serial: String,
    /// NAA WWN.
    pub wwn: String,
    /// NVMe NGUID.
    pub nguid: String,
    /// NVMe UUID.
    pub uuid: String,
    /// The volume it is a snapshot or clone of.
    pub parent: Option<String>,
}

/// What the per-volume devices did after a change, or why they did not.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum DmSync {
    /// Switched.
    Done(DmReport),
    /// Not switched; the reconciler retries.
    Failed {
        /// The error chain.
        dm_error: String,
    },
}

/// Counts of a per-volume device pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DmReport {
    /// Devices created.
    pub created: usize,
    /// Tables swapped (linear ↔ error).
    pub swapped: usize,
    /// Devices resumed.
    pub resumed: usize,
    /// Devices removed.
    pub removed: usize,
    /// Devices to remove that are still open.
    pub still_open: Vec<String>,
    /// Device names taken by devices that are not ours.
    pub conflicts: Vec<String>,
    /// Volumes whose serial cannot name a device.
    pub bad_serial: Vec<String>,
}

/// `volume.create`, `volume.resize`, `volume.snapshot`, `volume.clone`
/// result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VolumeResult {
    /// Changed, or already so.
    pub outcome: Outcome,
    /// The volume.
    pub volume: VolumeInfo,
    /// The per-volume devices, when something changed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dm: Option<DmSync>,
}

/// `volume.delete` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Deleted {
    /// Changed, or there was no such volume.
    pub outcome: Outcome,
    /// The volume.
    pub volume: String,
}

/// A volume in `volume.list`: identity, presence here and children.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListedVolume {
    /// Identity and devices; `read_only` is what LVM shows (null where
    /// the LV is not visible here).
    #[serde(flatten)]
    pub volume: VolumeInfo<Option<bool>>,
    /// Its LV exists.
    pub present: bool,
    /// Its LV is active on this controller.
    pub active_here: bool,
    /// Snapshots and clones taken of it.
    pub children: Vec<String>,
}

/// A node of the snapshot tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TreeNode {
    /// Volume.
    pub name: String,
    /// Snapshots and clones of it.
    pub children: Vec<TreeNode>,
}

/// `volume.list` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ListResult {
    /// The volumes.
    pub volumes: Vec<ListedVolume>,
    /// The snapshot tree from each volume that is no snapshot.
    pub tree: Vec<TreeNode>,
}

method!(Create, "volume.create", CreateParams, VolumeResult);
method!(Resize, "volume.resize", ResizeParams, VolumeResult);
method!(Delete, "volume.delete", NameParams, Deleted);
method!(Snapshot, "volume.snapshot", SnapshotParams, VolumeResult);
method!(CloneVolume, "volume.clone", CloneParams, VolumeResult);
method!(List, "volume.list", ListParams, ListResult);
