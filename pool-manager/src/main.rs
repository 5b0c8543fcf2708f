//! `duplex-pool-manager`: pools, volumes, import/export/takeover on the
//! shared disks (design brief 3, 4.5). Thin: arguments, tracing, pick the LVM
//! or the simulated backend, register the methods, run the reconciler loop.

use anyhow::Context;
use clap::Parser;
use duplex_api::methods::pool::PoolService;
use duplex_api::methods::ServiceInfo;
use duplex_api::topics;
use duplex_pool_manager::backend::linux::LinuxBackend;
use duplex_pool_manager::backend::sim::SimShelf;
use duplex_pool_manager::backend::PoolBackend;
use duplex_pool_manager::manager::{Manager, RouterCluster};
use duplex_pool_manager::rpc;
use duplex_services::{daemon, Config, ServiceBuilder};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// Command-line arguments.
#[derive(Parser)]
#[command(version, about = "Duplex pool-manager service")]
struct Args {
    /// Configuration file (default /etc/duplex/duplex.toml or $DUPLEX_CONFIG).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Use the in-memory simulator instead of LVM (demos, tests).
    #[arg(long)]
    sim: bool,
    /// With `--sim`: keep the simulated shelf in this file, shared with the
    /// partner's simulated pool-manager (a controller pair on one machine).
    #[arg(long, requires = "sim")]
    sim_shelf: Option<std::path::PathBuf>,
    /// Seconds between backstop reconciliation passes; `config.changed`
    /// events trigger one at once (0: events and `pool.reconcile` only).
    #[arg(long, default_value_t = 30)]
    reconcile_interval: u64,
    /// Milliseconds between checks for failed paths of the per-volume
    /// devices (an I/O error from an LV), which are then reinstated so the
    /// I/O they hold queued resumes (0: never).
    #[arg(long, default_value_t = 2000)]
    path_check_ms: u64,
    /// Seconds a device's path must stay failed (its LV fails every I/O)
    /// before a critical alert says hosts' I/O to it waits.
    #[arg(long, default_value_t = 30)]
    path_alert_s: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = daemon::init("duplex-pool-manager", args.config.as_deref())
        .context("loading the configuration")?;
    if args.sim {
        let shelf = match &args.sim_shelf {
            Some(path) => SimShelf::in_file(path, 6)
                .with_context(|| format!("opening the simulated shelf {}", path.display()))?,
            None => SimShelf::with_shared_disks(6),
        };
        run(shelf.backend(&cfg.controller_id), &cfg, &args).await
    } else {
        let b = LinuxBackend::new(&cfg.controller_id).context("checking the LVM tools")?;
        run(b, &cfg, &args).await
    }
}

async fn run<B: PoolBackend>(backend: B, cfg: &Config, args: &Args) -> anyhow::Result<()> {
    let mut svc = ServiceBuilder::new(
        cfg,
        "pool-manager",
        env!("CARGO_PKG_VERSION"),
        &["pool", "disk", "volume"],
    );
    let router = duplex_services::RouterClient::new(cfg.router_socket());
    let partner = cfg.partner_id().map(str::to_string);
    let m = Arc::new(
        Manager::new(
            backend,
            RouterCluster::new(router),
            &cfg.controller_id,
            partner.as_deref(),
        )
        .with_held_file(cfg.state_dir.join("pool-manager-held.state"))
        .context("loading the held pools")?,
    );
    // pool.status answers for the service too (the runtime's generic
    // status method would shadow the pools).
    let service = PoolService {
        info: ServiceInfo {
            service: "pool-manager".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            controller: cfg.controller_id.clone(),
            pid: std::process::id(),
            uptime_s: 0,
        },
        backend: if args.sim { "sim" } else { "lvm" }.into(),
    };
    rpc::register(&mut svc, &m, service);
    let svc = svc.start().await.context("starting the service")?;
    {
        let m = Arc::clone(&m);
        let router = duplex_services::RouterClient::new(cfg.router_socket());
        let every =
            (args.reconcile_interval > 0).then(|| Duration::from_secs(args.reconcile_interval));
        if args.path_check_ms > 0 {
            tokio::spawn(path_loop(
                Arc::clone(&m),
                Duration::from_millis(args.path_check_ms),
                Duration::from_secs(args.path_alert_s),
            ));
        }
        tokio::spawn(reconcile_loop(m, router, every));
    }
    svc.run_until_signal().await?;
    Ok(())
}

/// Reinstates failed paths of the per-volume devices every `every`.
async fn path_loop<B: PoolBackend, C: duplex_pool_manager::manager::Cluster>(
    m: Arc<Manager<B, C>>,
    every: Duration,
    alert_after: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let id = duplex_services::action::new_id();
        let span = tracing::info_span!("driver", what = "paths", action_id = %id);
        let pass = async {
            if let Err(e) = m.reinstate_paths(alert_after).await {
                tracing::warn!(error = %e.chain(), "checking the per-volume devices' paths failed");
            }
        };
        duplex_services::action::scope(id, pass)
            .instrument(span)
            .await;
    }
}

/// Reconciles on every `config.changed` event, under the event's
/// action_id (so a volume created on the partner gets its standby device
/// here in the same traceable action), and every `every` as a backstop
/// (events published while the router was away are not replayed; RAID
/// health is not a config change).
async fn reconcile_loop<B: PoolBackend, C: duplex_pool_manager::manager::Cluster>(
    m: Arc<Manager<B, C>>,
    router: duplex_services::RouterClient,
    every: Option<Duration>,
) {
    daemon::on_events_or_timer(
        router,
        &[topics::CONFIG_CHANGED],
        every,
        "reconcile",
        |_| {
            let m = Arc::clone(&m);
            async move {
                if let Err(e) = m.reconcile_in_background().await {
                    tracing::warn!(error = %e.chain(), "reconcile pass failed");
                }
            }
        },
    )
    .await;
}
