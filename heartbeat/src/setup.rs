//! From configuration to a running driver: settings, and the backends for
//! `--sim` or Linux.

use crate::backend::sim::{
    interconnect_pair, SimClock, SimFenceAgent, SimFenceMode, SimShelf, SimWatchdog,
};
use crate::backend::{FenceAgent, HeartbeatDisk};
use crate::core::machine::Settings;
use crate::driver::{init_area, Backends, Timing};
use duplex_services::config::HeartbeatSettings;
use duplex_services::Config;
use std::sync::Arc;
use std::time::Duration;

/// Why the heartbeat cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `[heartbeat]` needs `[peer]` for the partner's id.
    #[error("[heartbeat] needs [peer] with the partner's controller_id")]
    NoPartner,
    /// The Linux backends are not part of this build yet.
    #[error(
        "[heartbeat] is configured but this build has no Linux heartbeat backends yet \
         (missing: backend::linux O_DIRECT heartbeat disks, /dev/watchdog, the ipmi and \
         scsi_pr fence agents, the UDP+HMAC interconnect); run with --sim, or remove [heartbeat]"
    )]
    NoLinuxBackends,
    /// A simulated disk could not be prepared.
    #[error("simulated heartbeat disk: {0}")]
    Sim(String),
}

/// The machine's settings and the driver's intervals from the file.
pub fn settings(cfg: &Config, hb: &HeartbeatSettings) -> Result<(Settings, Timing), SetupError> {
    let partner = cfg.partner_id().ok_or(SetupError::NoPartner)?;
    let s = Settings {
        me: cfg.controller_id.clone(),
        partner: partner.to_string(),
        disks: hb.disks.len(),
        links: hb.links.len(),
        agents: hb.fence.clone(),
        ic_timeout_ms: hb.ic_timeout_ms,
        disk_interval_ms: hb.disk_interval_ms,
        suspect_timeout_ms: hb.suspect_timeout_ms,
        disk_timeout_ms: hb.disk_timeout_ms,
        allow_unconfirmed: hb.allow_unconfirmed,
        tie_break_ms: hb.tie_break_ms,
        fence_retry_ms: hb.fence_retry_ms,
        takeover_retry_ms: hb.fence_retry_ms,
    };
    let t = Timing {
        hb_interval: Duration::from_millis(hb.hb_interval_ms),
        disk_interval: Duration::from_millis(hb.disk_interval_ms),
    };
    Ok((s, t))
}

/// Simulated backends for `--sim`: an in-memory shelf with a fresh area,
/// a watchdog if one is configured, agents that confirm, and an
/// interconnect whose other end nobody holds (a lone controller).
pub fn sim_backends(s: &Settings, hb: &HeartbeatSettings) -> Result<Backends, SetupError> {
    let shelf = SimShelf::new(hb.disks.len());
    let mut disks: Vec<Arc<dyn HeartbeatDisk>> = Vec::new();
    for i in 0..hb.disks.len() {
        let d = shelf.disk(i, &s.me);
        init_area(&d, "sim", [s.me.as_str(), s.partner.as_str()]).map_err(SetupError::Sim)?;
        disks.push(Arc::new(d));
    }
    let agents: Vec<Arc<dyn FenceAgent>> = hb
        .fence
        .iter()
        .map(|name| {
            Arc::new(SimFenceAgent::new(
                name,
                shelf.clone(),
                SimFenceMode::PowerOff,
            )) as Arc<dyn FenceAgent>
        })
        .collect();
    let (mine, _theirs, _links) = interconnect_pair(hb.links.len());
    let watchdog = hb.watchdog.as_ref().map(|_| {
        Box::new(SimWatchdog::new(
            SimClock::default(),
            Duration::from_secs(5),
        )) as Box<dyn crate::backend::Watchdog>
    });
    Ok(Backends {
        disks,
        watchdog,
        agents,
        interconnect: Arc::new(mine),
    })
}

/// The Linux backends.
///
/// CONSTRUCTION POINT for `backend::linux` (written on another branch):
/// open each `hb.disks` path as an O_DIRECT|O_DSYNC `HeartbeatDisk`, the
/// `hb.watchdog` device, the `hb.fence` agents in order (ipmi reads
/// `hb.bmc_file`; scsi_pr the pools' disks), and the UDP interconnect on
/// `hb.links` keyed from the cluster secret (`cfg.peer.load_secret()`).
/// Until then a configured heartbeat without `--sim` refuses to start.
pub fn linux_backends(_cfg: &Config, _hb: &HeartbeatSettings) -> Result<Backends, SetupError> {
    Err(SetupError::NoLinuxBackends)
}
