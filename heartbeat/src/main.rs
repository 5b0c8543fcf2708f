//! `duplex-heartbeat`: the heartbeat service.
//!
//! Status: this daemon registers with the router and answers `cluster.status`;
//! its real work arrives with its own issue. It fakes nothing: the status
//! says which capabilities exist (none yet).

use anyhow::Context;
use clap::Parser;
use duplex_services::{telemetry, Config, ServiceBuilder};

/// Command-line arguments.
#[derive(Parser)]
#[command(version, about = "Duplex heartbeat service")]
struct Args {
    /// Configuration file (default /etc/duplex/duplex.toml or $DUPLEX_CONFIG).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    telemetry::init("duplex-heartbeat");
    let cfg = Config::load(args.config.as_deref()).context("loading the configuration")?;
    let mut svc = ServiceBuilder::new(&cfg, "heartbeat", env!("CARGO_PKG_VERSION"), &["cluster"]);
    svc.status_method("cluster", || serde_json::json!({"capabilities": []}));
    let svc = svc.start().await.context("starting the service")?;
    svc.run_until_signal().await?;
    Ok(())
}
