//! `duplex-config-keeper`: the configuration database service.
//!
//! Opens `<state_dir>/config.db`, registers the `config` namespace with the
//! router, replicates this controller's section to the partner's keeper and
//! tells systemd it is ready once it has caught up with the partner's
//! section (or after `--ready-timeout` with the partner away; `config.status`
//! keeps saying `ready: false` until it really has caught up).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use duplex_api::topics;
use duplex_config_keeper::keeper::Keeper;
use duplex_config_keeper::rpc;
use duplex_config_keeper::store::Store;
use duplex_services::{daemon, RouterClient, ServiceBuilder};

/// Command-line arguments.
#[derive(Parser)]
#[command(
    version,
    about = "Duplex config-keeper: desired state, replication, config lock"
)]
struct Args {
    /// Configuration file (default /etc/duplex/duplex.toml or $DUPLEX_CONFIG).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Database file (default <state_dir>/config.db).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Seconds to wait for the catch-up before notifying systemd anyway.
    #[arg(long, default_value_t = 60)]
    ready_timeout: u64,
    /// Change-log rows kept for config.history (older ones acknowledged by
    /// the partner are pruned).
    #[arg(long, default_value_t = duplex_config_keeper::keeper::HISTORY_KEEP)]
    history_keep: u64,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = daemon::init("duplex-config-keeper", args.config.as_deref())
        .context("loading the configuration")?;
    let db = args.db.unwrap_or_else(|| cfg.state_dir.join("config.db"));
    if let Some(dir) = db.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let store = Store::open(&db, &cfg.controller_id).context("opening the config database")?;
    let (keeper, mut changed) = Keeper::new(store, cfg.partner_id().map(str::to_string));
    keeper.set_history_keep(args.history_keep);

    let mut svc = ServiceBuilder::new(
        &cfg,
        "config-keeper",
        env!("CARGO_PKG_VERSION"),
        &["config"],
    );
    rpc::register(&mut svc, &keeper);
    tokio::spawn(std::sync::Arc::clone(&keeper).run_committer());
    let svc = svc.start().await.context("starting the service")?;

    // Change events, published in commit order off the apply path. Under
    // load one event covers several versions (`from_version`..`version`);
    // subscribers read `config.history` after the last version they saw.
    let publisher = svc.router();
    tokio::spawn(async move {
        while let Some(first) = changed.recv().await {
            let from = first["version"].clone();
            let mut data = first;
            let mut n = 1u32;
            while let Ok(next) = changed.try_recv() {
                data = next;
                n += 1;
            }
            if n > 1 {
                data["from_version"] = from;
                data["coalesced"] = n.into();
            }
            if let Err(e) = publisher.publish(topics::CONFIG_CHANGED, data, false).await {
                tracing::debug!(error = %e, "cannot publish config.changed");
            }
        }
    });
    // Replication calls get a short timeout so a dead link is noticed fast.
    let repl = RouterClient::with_timeout(cfg.router_socket(), Duration::from_secs(3));
    tokio::spawn(std::sync::Arc::clone(&keeper).run_audit_sender(repl.clone()));
    tokio::spawn(std::sync::Arc::clone(&keeper).run_sender(repl));

    let k = std::sync::Arc::clone(&keeper);
    let ready_timeout = Duration::from_secs(args.ready_timeout);
    let ready = async move {
        if k.wait_ready(ready_timeout).await {
            "caught up with the partner".to_string()
        } else {
            tracing::warn!("partner unreachable; starting with a possibly stale replica (config.status ready=false)");
            "partner unreachable; replica not caught up".to_string()
        }
    };
    svc.run_until_signal_ready_when(ready).await?;
    Ok(())
}
