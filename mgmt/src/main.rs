//! `duplex-mgmt`: the management endpoint daemon.

use anyhow::Context;
use clap::Parser;
use duplex_mgmt::endpoint::{self, Endpoint, Settings};
use duplex_mgmt::tls;
use duplex_services::{daemon, systemd, RouterClient};
use std::net::SocketAddr;
use std::time::Duration;

/// Command-line arguments.
#[derive(Parser)]
#[command(
    version,
    about = "Duplex management endpoint: HTTPS and WebSocket JSON-RPC with login and roles"
)]
struct Args {
    /// Configuration file (default /etc/duplex/duplex.toml or $DUPLEX_CONFIG).
    #[arg(long)]
    config: Option<std::path::PathBuf>,
    /// Print the OpenRPC document and exit (regenerates docs/openrpc.json).
    #[arg(long)]
    openrpc: bool,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.openrpc {
        print!("{}", duplex_mgmt::core::openrpc::document_text());
        return Ok(());
    }
    let cfg =
        daemon::init("duplex-mgmt", args.config.as_deref()).context("loading the configuration")?;
    let m = &cfg.mgmt;
    let dir = cfg.mgmt_state_dir();
    let mut names = vec![
        "localhost".to_string(),
        format!("controller-{}", cfg.controller_id),
    ];
    names.extend(m.listen.iter().map(ToString::to_string));
    if tls::ensure_certificate(&dir, names).context("making the certificate")? {
        tracing::info!(dir = %dir.display(), "made a self-signed certificate");
    }
    let tls_cfg =
        std::sync::Arc::new(tls::Reloading::new(&dir).context("loading the certificate")?);
    let token = duplex_mgmt::metrics::ensure_token(&dir).context("making the metrics token")?;
    tracing::info!(token = %duplex_mgmt::metrics::token_path(&dir).display(), "GET /metrics with this token as a Bearer");
    // A scrape answers within seconds or without the slow source.
    let scrape = std::sync::Arc::new(duplex_mgmt::metrics::Scrape {
        router: RouterClient::with_timeout(cfg.router_socket(), Duration::from_secs(5)),
        token,
    });
    let router = RouterClient::with_timeout(cfg.router_socket(), Duration::from_secs(960));
    let settings = Settings {
        session_ttl: Duration::from_secs(m.session_ttl_s),
        allowed_origins: m.allowed_origins.clone(),
        // validate() refused zeroes; 1 is the floor either way.
        calls_per_s: std::num::NonZeroU32::new(m.calls_per_s).unwrap_or(std::num::NonZeroU32::MIN),
        calls_burst: std::num::NonZeroU32::new(m.calls_burst).unwrap_or(std::num::NonZeroU32::MIN),
    };
    let (stop, handle) = jsonrpsee::server::stop_channel();
    let ep = Endpoint::new(router.clone(), settings);
    tokio::spawn(endpoint::revoke_on_user_changes(router, ep.sessions()));
    let methods: jsonrpsee::Methods = endpoint::module(ep)
        .context("building the RPC module")?
        .into();
    for ip in &m.listen {
        let addr = SocketAddr::new(*ip, m.port);
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening on {addr}"))?;
        tracing::info!(%addr, "listening");
        tokio::spawn(endpoint::serve(
            listener,
            tls_cfg.clone(),
            methods.clone(),
            endpoint::Http {
                allowed_origins: m.allowed_origins.clone(),
                metrics: Some(std::sync::Arc::clone(&scrape)),
                ui_dir: Some(m.ui_dir.clone()),
            },
            stop.clone(),
        ));
    }
    systemd::ready("serving");
    systemd::spawn_watchdog(|| true);
    daemon::wait_for_stop().await?;
    systemd::stopping();
    let _ = handle.stop();
    tracing::info!("management endpoint stopping");
    Ok(())
}
