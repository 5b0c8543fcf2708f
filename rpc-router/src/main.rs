//! `duplex-router`: the message bus daemon.

use anyhow::Context;
use clap::Parser;
use duplex_services::{config::Config, systemd, telemetry};

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
    telemetry::init("duplex-router");
    let cfg = Config::load(args.config.as_deref()).context("loading the configuration")?;
    let router = duplex_router::Router::new(cfg);
    router.start().await.context("starting the router")?;
    systemd::ready("routing");
    systemd::spawn_watchdog(|| true);
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    systemd::stopping();
    tracing::info!("router stopping");
    Ok(())
}
