//! SCSI-3 persistent reservations as LIO holds them on one controller:
//! `target.reservations` (read) and `target.clear_reservations` (admin,
//! audited). Kept apart from the rest of the `target` namespace so each can
//! be typed on its own.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `target.reservations` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReservationsParams {
    /// One volume only; every exported LU when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<String>,
}

/// `target.reservations` result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReservationsResult {
    /// The controller whose kernel holds this table (each controller has its own).
    pub controller: String,
    /// LIO's `db_root` as read now (where it keeps APTPL files).
    pub db_root: String,
    /// True when `db_root` is the directory Duplex owns, so PERSISTENT
    /// RESERVE OUT can save its state.
    pub db_root_ours: bool,
    /// One entry per LIO backstore (volume exported over iSCSI here).
    pub luns: Vec<LuReservations>,
}

/// The reservation state of one LU in this controller's kernel.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LuReservations {
    /// The volume (the backstore's name).
    pub volume: String,
    /// The LU's unit serial (names the APTPL file).
    pub serial: String,
    /// `spc3`, `spc2` (a SCSI-2 RESERVE is in force) or `passthrough`.
    pub mode: String,
    /// The PR generation (PRgeneration of READ KEYS), when the kernel shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
    /// Whether the last PERSISTENT RESERVE OUT asked for APTPL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aptpl: Option<bool>,
    /// True when an APTPL file with registrations exists for this LU.
    pub saved: bool,
    /// The registered I_T nexuses and their keys.
    pub registrations: Vec<Registration>,
    /// The reservation holder, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<Holder>,
}

/// One registration: an initiator port (I_T nexus) and its key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Registration {
    /// The fabric (`iSCSI`).
    pub fabric: String,
    /// The initiator name.
    pub initiator: String,
    /// The iSCSI session id part of the initiator port (`0x00023d000001`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isid: Option<String>,
    /// The reservation key, `0x` and 16 hex digits.
    pub key: String,
    /// The PR generation when it registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u32>,
}

/// The holder of a reservation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Holder {
    /// `spc3` (persistent) or `spc2` (RESERVE(6/10)).
    pub kind: String,
    /// The fabric (`iSCSI`).
    pub fabric: String,
    /// The initiator name.
    pub initiator: String,
    /// The iSCSI session id part of the initiator port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isid: Option<String>,
    /// The reservation type as the kernel names it (`Write Exclusive Access`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pr_type: Option<String>,
    /// True for a registration on all target ports (ALL_TG_PT).
    #[serde(default)]
    pub all_target_ports: bool,
    /// The target port it holds through: target name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Its portal group tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpgt: Option<u16>,
    /// Its relative target port id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtpi: Option<u16>,
    /// The LUN it reserved through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lun: Option<u64>,
}

/// `target.clear_reservations` params.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClearReservationsParams {
    /// The volume whose registrations and reservation go.
    pub volume: String,
}

/// `target.clear_reservations` result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClearReservationsResult {
    /// The controller whose table was cleared (the partner's is its own).
    pub controller: String,
    /// The volume.
    pub volume: String,
    /// What was there before.
    pub before: LuReservations,
    /// What is there after (no registrations, no holder).
    pub after: LuReservations,
    /// Host mappings of the LU that were cycled to drop the state.
    pub mappings_cycled: usize,
    /// True when an APTPL file was removed.
    pub file_removed: bool,
    /// True when config-keeper's event log recorded the clear.
    #[serde(default)]
    pub audited: bool,
}

method!(
    Reservations,
    "target.reservations",
    ReservationsParams,
    ReservationsResult
);
method!(
    ClearReservations,
    "target.clear_reservations",
    ClearReservationsParams,
    ClearReservationsResult
);
