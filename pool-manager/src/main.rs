//! `duplex-pool-manager`: the pool-manager service.
//!
//! Status: this daemon registers with the router and answers `pool.status`;
//! its real work arrives with its own issue. It fakes nothing: the status
//! says which capabilities exist (none yet).

use anyhow::Context;
use clap::Parser;
use duplex_services::{telemetry, Config, ServiceBuilder};

/// Command-line arguments.
#[derive(Parser)]
#[command(version, about = "Duplex pool-manager service")]
struct Args {
    /// Configuration file (default /etc/duplex/duplex.toml or $DUPLEX_CONFIG).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init("duplex-pool-manager");
    let cfg = Config::load(args.config.as_deref()).context("loading the configuration")?;
    let mut svc = ServiceBuilder::new(
        &cfg,
        "pool-manager",
        env!("CARGO_PKG_VERSION"),
        &["pool", "disk", "volume"],
    );
    svc.status_method("pool", || serde_json::json!({"capabilities": []}));
    let svc = svc.start().await.context("starting the service")?;
    svc.run_until_signal().await?;
    Ok(())
}
