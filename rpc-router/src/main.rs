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
    /// Write a new cluster secret (32 random bytes, hex, mode 0600) to this
    /// file and exit; copy it to the partner's `peer.secret_file` to pair.
    #[arg(long, value_name = "PATH")]
    new_secret: Option<std::path::PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(path) = args.new_secret {
        duplex_router::peer_tls::write_new_secret(&path)
            .with_context(|| format!("writing a new cluster secret to {}", path.display()))?;
        println!("{}: a new cluster secret", path.display());
        return Ok(());
    }
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
