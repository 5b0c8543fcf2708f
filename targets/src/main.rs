//! `duplex-targets`: the targets service. Thin: arguments, logging, pick the
//! configfs backend or the simulator, load the target modules, run.

use anyhow::Context;
use clap::Parser;
use duplex_services::exec::Cmd;
use duplex_services::{daemon, ServiceBuilder};
use duplex_targets::backend::configfs::{ConfigFsBackend, DEFAULT_ROOT};
use duplex_targets::backend::net::NetBackend;
use duplex_targets::backend::sim::SimBackend;
use duplex_targets::backend::TargetBackend;
use duplex_targets::core::desired::{Local, DEVICE_PREFIX};
use duplex_targets::overrides::OverrideStore;
use duplex_targets::prstore::{self, PrStore};
use duplex_targets::reconciler::Reconciler;
use duplex_targets::rpc;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Command-line arguments.
#[derive(Parser)]
#[command(version, about = "Duplex targets service")]
struct Args {
    /// Configuration file (default /etc/duplex/duplex.toml or $DUPLEX_CONFIG).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The configfs root.
    #[arg(long, default_value = DEFAULT_ROOT)]
    configfs: PathBuf,
    /// Use the in-memory simulator instead of configfs (every
    /// `/dev/mapper/dxvol-*` device counts as present).
    #[arg(long)]
    sim: bool,
    /// A front-end portal address (iSCSI 3260, NVMe/TCP 4420); repeat for
    /// several. Overrides the controller's `portals` in the configuration;
    /// with neither, the wildcard 0.0.0.0.
    #[arg(long = "portal")]
    portals: Vec<IpAddr>,
    /// Seconds between drift checks of configfs.
    #[arg(long, default_value_t = 30)]
    drift_interval: u64,
    /// LIO's database directory (its `db_root`: persistent reservations
    /// with APTPL, ALUA metadata); default `<state_dir>/lio`.
    #[arg(long)]
    db_root: Option<PathBuf>,
    /// Do not run modprobe for the target modules at start.
    #[arg(long)]
    no_modprobe: bool,
}

/// A simulator where pools' devices exist: `--sim` runs without a kernel.
struct SimAll(SimBackend);

impl TargetBackend for SimAll {
    fn mkdir(&mut self, p: &str) -> std::io::Result<()> {
        self.0.mkdir(p)
    }
    fn rmdir(&mut self, p: &str) -> std::io::Result<()> {
        self.0.rmdir(p)
    }
    fn write(&mut self, p: &str, v: &str) -> std::io::Result<()> {
        if let Some(dev) = v
            .strip_prefix("udev_path=")
            .or(Some(v))
            .filter(|d| d.starts_with(DEVICE_PREFIX))
        {
            self.0.add_device(dev);
        }
        self.0.write(p, v)
    }
    fn read(&self, p: &str) -> std::io::Result<String> {
        self.0.read(p)
    }
    fn symlink(&mut self, l: &str, t: &str) -> std::io::Result<()> {
        self.0.symlink(l, t)
    }
    fn unlink(&mut self, p: &str) -> std::io::Result<()> {
        self.0.unlink(p)
    }
    fn list(&self, p: &str) -> std::io::Result<Vec<(String, duplex_targets::backend::EntryKind)>> {
        self.0.list(p)
    }
    fn read_link(&self, p: &str) -> std::io::Result<String> {
        self.0.read_link(p)
    }
    fn device_present(&self, dev: &str) -> bool {
        dev.starts_with(DEVICE_PREFIX)
    }
}

async fn load_modules() {
    let modprobe = ["/usr/sbin/modprobe", "/sbin/modprobe"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(modprobe) = modprobe else {
        tracing::warn!("modprobe not found; the target modules must be loaded already");
        return;
    };
    let cmd = Cmd::new(modprobe)
        .args([
            "-a",
            "configfs",
            "target_core_mod",
            "target_core_iblock",
            "iscsi_target_mod",
            "nvmet",
            "nvmet-tcp",
        ])
        .timeout(Duration::from_secs(30));
    if let Err(e) = cmd.run().await {
        tracing::warn!(error = %e, "loading the target modules failed");
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let cfg = daemon::init("duplex-targets", args.config.as_deref())
        .context("loading the configuration")?;
    let mut local = Local::new(&cfg.controller_id);
    if !args.portals.is_empty() {
        local.portals.clone_from(&args.portals);
    }
    let backend: Box<dyn TargetBackend> = if args.sim {
        Box::new(SimAll(SimBackend::new()))
    } else {
        if !args.no_modprobe {
            load_modules().await;
        }
        Box::new(ConfigFsBackend::open(&args.configfs).context("opening configfs")?)
    };
    let net = if args.sim {
        NetBackend::sim()
    } else {
        NetBackend::linux().context("floating addresses")?
    };
    let mut rec = Reconciler::new(backend, local);
    if !args.sim {
        // Flip overrides survive a restart (a simulated configfs does not).
        rec = rec.with_store(OverrideStore::new(&cfg.state_dir)).context(
            "loading the flip overrides (remove the file to let states follow ownership)",
        )?;
        let db_root = args
            .db_root
            .clone()
            .unwrap_or_else(|| cfg.state_dir.join(prstore::DIR));
        rec = rec.with_pr(PrStore::new(db_root));
    }
    let shared = rpc::Shared::new(rec, net, &cfg.controller_id);
    let mut svc = ServiceBuilder::new(
        &cfg,
        "targets",
        env!("CARGO_PKG_VERSION"),
        &["target", "host", "net"],
    );
    rpc::register(&mut svc, &shared);
    let svc = svc.start().await.context("starting the service")?;
    tokio::spawn(rpc::drive(
        shared,
        svc.router(),
        Duration::from_secs(args.drift_interval.max(1)),
    ));
    svc.run_until_signal().await?;
    Ok(())
}
