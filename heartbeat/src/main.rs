//! `duplex-heartbeat`: the heartbeat service.
//!
//! Without a `[heartbeat]` section it registers and answers `cluster.status`
//! saying it is not configured. With one, it runs the driver on the Linux
//! backends, or on simulated ones with `--sim`.

use anyhow::Context;
use clap::Parser;
use duplex_heartbeat::driver::{Driver, Shared};
use duplex_heartbeat::rpc::{self, Api};
use duplex_heartbeat::setup;
use duplex_services::{daemon, ServiceBuilder};
use std::sync::{Arc, Mutex};

/// Command-line arguments.
#[derive(Parser)]
#[command(version, about = "Duplex heartbeat service")]
struct Args {
    /// Configuration file (default /etc/duplex/duplex.toml or $DUPLEX_CONFIG).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Use simulated disks, watchdog, fence agents and interconnect.
    #[arg(long)]
    sim: bool,
}

// Two workers: the beat loop, the slot threads' inputs and systemd's
// watchdog pings must not wait behind a long RPC handler or a blocking
// file write on one thread.
#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = daemon::init("duplex-heartbeat", args.config.as_deref())
        .context("loading the configuration")?;
    let mut svc = ServiceBuilder::new(&cfg, "heartbeat", env!("CARGO_PKG_VERSION"), &["cluster"]);
    let Some(hb) = cfg.heartbeat.clone() else {
        rpc::register(&mut svc, None);
        let svc = svc.start().await.context("starting the service")?;
        svc.run_until_signal().await?;
        return Ok(());
    };
    let (settings, timing) = setup::settings(&cfg, &hb)?;
    let backends = if args.sim {
        setup::sim_backends(&settings, &hb)?
    } else {
        setup::linux_backends(&cfg, &hb).await?
    };
    if hb.auto_failback {
        tracing::warn!(
            "heartbeat.auto_failback is not acted on yet: give back with cluster.giveback"
        );
    }
    let shared = Arc::new(Mutex::new(Shared::with_timeline_file(
        cfg.state_dir.join("heartbeat-timeline.json"),
    )));
    let (cmd_tx, cmd_rx) = tokio::sync::mpsc::unbounded_channel();
    let api = Api {
        me: settings.me.clone(),
        partner: settings.partner.clone(),
        disks: hb.disks.iter().map(|d| d.display().to_string()).collect(),
        disk_handles: backends.disks.clone(),
        agents: backends.agents.clone(),
        shared: Arc::clone(&shared),
        commands: cmd_tx,
    };
    rpc::register(&mut svc, Some(Arc::new(api)));
    let svc = svc.start().await.context("starting the service")?;
    let driver = Driver {
        settings,
        timing,
        backends,
        router: svc.router(),
        shared,
        commands: cmd_rx,
        auto_failback: hb.auto_failback,
    };
    tokio::spawn(driver.run());
    svc.run_until_signal().await?;
    Ok(())
}
