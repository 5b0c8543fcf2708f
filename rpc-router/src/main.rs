//! `duplex-router`: the message bus daemon.

use anyhow::Context;
use clap::Parser;
use duplex_services::{daemon, systemd};

/// Command-line arguments.
#[derive(Parser)]
#[command(
    version,
    about = "Duplex message bus: routes JSON-RPC between services and controllers"
)]
struct Args {
    /// Configuration file (default /etc/duplex/duplex.toml or $DUPLEX_CONFIG).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = daemon::init("duplex-router", args.config.as_deref())
        .context("loading the configuration")?;
    let router = duplex_router::Router::new(cfg);
    router.start().await.context("starting the router")?;
    systemd::ready("routing");
    systemd::spawn_watchdog(|| true);
    daemon::wait_for_stop().await?;
    systemd::stopping();
    tracing::info!("router stopping");
    Ok(())
}
