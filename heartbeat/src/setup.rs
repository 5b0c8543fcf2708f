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
    /// A Linux backend could not be opened or configured.
    #[error("{0}")]
    Linux(String),
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
        frontend_grace_ms: hb.frontend_grace_ms,
        move_on_frontend_loss: hb.move_on_frontend_loss,
        shelf_grace_ms: hb.shelf_grace_ms,
        move_on_shelf_loss: hb.move_on_shelf_loss,
        targets_grace_ms: hb.targets_grace_ms,
        move_on_targets_loss: hb.move_on_targets_loss,
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
        frontend: (!hb.frontend.is_empty()).then(|| {
            Arc::new(crate::backend::sim::SimFrontend::new())
                as Arc<dyn crate::backend::FrontendLinks>
        }),
        shelf: (!hb.shelf.is_empty()).then(|| {
            Arc::new(crate::backend::sim::SimShelfDisks::new(hb.shelf.len()))
                as Arc<dyn crate::backend::ShelfDisks>
        }),
    })
}

/// The Linux backends: each `hb.disks` path as an O_DIRECT|O_DSYNC
/// heartbeat disk, the `hb.watchdog` device armed with
/// `hb.watchdog_timeout_ms`, the `hb.fence` agents in order, and the UDP
/// interconnect on `hb.links` keyed from the cluster secret. Memory is
/// locked first, so no page fault stalls a beat.
pub async fn linux_backends(cfg: &Config, hb: &HeartbeatSettings) -> Result<Backends, SetupError> {
    use crate::backend::linux::{
        disk::{lock_memory, DirectDisk},
        interconnect::{LinkAddrs, UdpInterconnect},
        ipmi::{BmcCredentials, IpmiAgent},
        watchdog::DeviceWatchdog,
    };
    let partner = cfg.partner_id().ok_or(SetupError::NoPartner)?;
    if let Err(e) = lock_memory() {
        // Not fatal: the beat still runs, with a risk the status shows.
        tracing::warn!(error = %e, "cannot lock the heartbeat's memory");
    }
    let mut disks: Vec<Arc<dyn HeartbeatDisk>> = Vec::new();
    for (i, path) in hb.disks.iter().enumerate() {
        let d = DirectDisk::open(&format!("hb{i}"), path)
            .map_err(|e| SetupError::Linux(format!("heartbeat disk {}: {e}", path.display())))?;
        disks.push(Arc::new(d));
    }
    let mut agents: Vec<Arc<dyn FenceAgent>> = Vec::new();
    for name in &hb.fence {
        match name.as_str() {
            "ipmi" => {
                let file = hb.bmc_file.as_deref().ok_or_else(|| {
                    SetupError::Linux("the ipmi agent needs heartbeat.bmc_file".into())
                })?;
                let creds = BmcCredentials::load(file).map_err(|e| {
                    SetupError::Linux(format!("BMC credentials {}: {e}", file.display()))
                })?;
                agents.push(Arc::new(IpmiAgent::new(partner, creds)));
            }
            "scsi_pr" => {
                // Validation already refused scsi_pr without pr_disks.
                agents.push(Arc::new(crate::backend::linux::scsi_pr::PrFence::new(
                    &cfg.controller_id,
                    partner,
                    hb.pr_disks.clone(),
                    disks.clone(),
                )));
            }
            other => {
                return Err(SetupError::Linux(format!(
                    "unknown fence agent {other} (known: ipmi, scsi_pr)"
                )))
            }
        }
    }
    let secret = cfg
        .peer
        .as_ref()
        .ok_or(SetupError::NoPartner)?
        .load_secret()
        .map_err(|e| SetupError::Linux(format!("cluster secret: {e}")))?;
    let links: Vec<LinkAddrs> = hb
        .links
        .iter()
        .map(|l| LinkAddrs {
            local: l.local,
            peer: l.peer,
        })
        .collect();
    let interconnect = UdpInterconnect::bind(&cfg.controller_id, &secret, &links)
        .await
        .map_err(|e| SetupError::Linux(format!("interconnect: {e}")))?;
    // Armed last: a start that fails after opening the device would close it
    // without the magic character and reset the controller for a typo.
    let watchdog = match &hb.watchdog {
        Some(path) => Some(Box::new(
            DeviceWatchdog::open(path, Duration::from_millis(hb.watchdog_timeout_ms))
                .map_err(|e| SetupError::Linux(format!("watchdog {}: {e}", path.display())))?,
        ) as Box<dyn crate::backend::Watchdog>),
        None => None,
    };
    let frontend = (!hb.frontend.is_empty()).then(|| {
        Arc::new(crate::backend::linux::frontend::SysfsCarrier::new(
            &hb.frontend,
        )) as Arc<dyn crate::backend::FrontendLinks>
    });
    let shelf = (!hb.shelf.is_empty()).then(|| {
        Arc::new(crate::backend::linux::shelf::DirectShelf::new(&hb.shelf))
            as Arc<dyn crate::backend::ShelfDisks>
    });
    Ok(Backends {
        disks,
        watchdog,
        agents,
        interconnect: Arc::new(interconnect),
        frontend,
        shelf,
    })
}
