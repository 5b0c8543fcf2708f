//! What the backend observed: pools (volume groups `dx-*`), their disks,
//! thin pool and volumes. Backend-neutral, so the reconciler and the health
//! checks are pure functions of it.

use super::health::{self, RaidState};
use super::layout::Layout;
use serde::{Deserialize, Serialize};

/// A physical volume of a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedPv {
    /// Device path as LVM reports it (`[unknown]` when missing).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Free bytes.
    pub free: u64,
    /// LVM marks it missing.
    pub missing: bool,
    /// Tagged as a hot spare (not used by the layout until a rebuild).
    pub spare: bool,
}

/// The thin pool of a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedThin {
    /// Data size in bytes.
    pub size: u64,
    /// Data usage in percent.
    pub data_percent: f64,
    /// Metadata size in bytes.
    pub meta_size: u64,
    /// Metadata usage in percent.
    pub meta_percent: f64,
    /// Active here.
    pub active: bool,
}

/// A thin volume, snapshot or clone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedVolume {
    /// LV name (= volume name).
    pub name: String,
    /// Virtual size in bytes.
    pub size: u64,
    /// Active here (a device exists).
    pub active: bool,
    /// The LV it is a thin snapshot of.
    pub origin: Option<String>,
    /// Read-only.
    pub read_only: bool,
}

/// One pool as LVM shows it on this controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ObservedPool {
    /// Pool name (the VG without `dx-`).
    pub pool: String,
    /// LVM system_id of the VG (empty when none).
    pub system_id: String,
    /// VG size in bytes.
    pub size: u64,
    /// VG free bytes.
    pub free: u64,
    /// Its physical volumes.
    pub pvs: Vec<ObservedPv>,
    /// The thin pool, once created.
    pub thin: Option<ObservedThin>,
    /// The data layout, as read from the thin pool's data LV.
    pub layout: Option<Layout>,
    /// RAID health of the data LV (`lv_health_status`).
    pub raid_health: String,
    /// RAID sync percent of the data LV.
    pub sync_percent: Option<f64>,
    /// Volumes, snapshots and clones.
    pub volumes: Vec<ObservedVolume>,
}

impl ObservedPool {
    /// True when anything of the pool is active here.
    pub fn active(&self) -> bool {
        self.thin.as_ref().is_some_and(|t| t.active) || self.volumes.iter().any(|v| v.active)
    }

    /// The RAID state of the pool.
    pub fn raid_state(&self) -> RaidState {
        let redundant = self.layout.is_some_and(|l| l.fault_tolerance() > 0);
        health::raid_state(
            redundant,
            &self.raid_health,
            self.sync_percent,
            self.pvs.iter().any(|p| p.missing),
        )
    }

    /// Thin data and metadata usage (0 when there is no thin pool).
    pub fn usage(&self) -> (f64, f64) {
        self.thin
            .as_ref()
            .map_or((0.0, 0.0), |t| (t.data_percent, t.meta_percent))
    }

    /// A volume by name.
    pub fn volume(&self, name: &str) -> Option<&ObservedVolume> {
        self.volumes.iter().find(|v| v.name == name)
    }
}
