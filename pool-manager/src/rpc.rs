//! JSON-RPC methods of pool-manager (`disk.*`, `pool.*`, `volume.*`),
//! mapped onto [`Manager`]. Parameters are decoded with
//! `duplex_services::params` (errors name the field); errors are mapped in
//! `error.rs`.
//!
//! | method | params | result |
//! |---|---|---|
//! | `disk.list` | `local?` | disks with tier, `shared`, `qualifies`, `refusal` |
//! | `pool.layouts` | `disks` | per layout: `capacity_fraction`, `fault_tolerance`, `possible` |
//! | `pool.create` | `name`, `layout`, `copies?`, `disks`, `spares?`, `tier?`, `wipe?` | the pool |
//! | `pool.export` | `name`, `to?` | `dm_clean` |
//! | `pool.import` | `name` | the pool, `duration_ms` |
//! | `pool.takeover` | `name`, `epoch` | the pool, `duration_ms`, `timings_ms` |
//! | `pool.status` | `name?` | pools: desired and observed, usage, RAID, progress, alerts |
//! | `pool.repair` | `name` | the pool |
//! | `pool.delete` | `name` | `outcome` (the pool must have no volumes) |
//! | `pool.reconcile` | | the steps run |
//! | `pool.active_local` | | pools with anything active here (asked by the partner) |
//! | `volume.create` | `pool`, `name`, `size` | the volume with its identity and device |
//! | `volume.resize` | `name`, `size` | the volume |
//! | `volume.delete` | `name` | `outcome` |
//! | `volume.snapshot` | `source`, `name`, `read_only?` (true) | the snapshot |
//! | `volume.clone` | `source`, `name` | the clone (a writable snapshot) |
//! | `volume.list` | `pool?` | volumes and the snapshot tree |

use crate::backend::PoolBackend;
use crate::manager::{Cluster, CreatePool, CreateVolume, Manager};
use duplex_services::{params, ServiceBuilder};
use serde::Deserialize;
use std::sync::Arc;

/// The call timeout pool-manager asks the router for on long methods.
const LONG_CALL: std::time::Duration = std::time::Duration::from_secs(900);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskList {
    #[serde(default)]
    local: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Layouts {
    disks: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Name {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OptName {
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Export {
    name: String,
    #[serde(default)]
    to: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Takeover {
    name: String,
    epoch: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resize {
    name: String,
    size: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Snapshot {
    source: String,
    name: String,
    #[serde(default = "yes")]
    read_only: bool,
}

fn yes() -> bool {
    true
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Clone_ {
    source: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct List {
    #[serde(default)]
    pool: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

macro_rules! method {
    ($svc:expr, $m:expr, $name:literal, |$mm:ident, $p:ident : $t:ty| $body:expr) => {{
        let m = Arc::clone($m);
        $svc.method($name, move |_ctx, raw| {
            let $mm = Arc::clone(&m);
            async move {
                let $p: $t = params(raw)?;
                Ok($body.await?)
            }
        });
    }};
}

/// Registers every method on `svc`. `service` is merged into `pool.status`
/// (name, version, backend...), which answers for the pools and the service.
pub fn register<B: PoolBackend, C: Cluster>(
    svc: &mut ServiceBuilder,
    m: &Arc<Manager<B, C>>,
    service: serde_json::Value,
) {
    {
        let m = Arc::clone(m);
        let started = std::time::Instant::now();
        svc.method("pool.status", move |_ctx, raw| {
            let m = Arc::clone(&m);
            let service = service.clone();
            async move {
                let p: OptName = params(raw)?;
                let mut v = m.pool_status(p.name.as_deref()).await?;
                if let (Some(o), serde_json::Value::Object(extra)) = (v.as_object_mut(), service) {
                    o.extend(extra);
                    o.insert("uptime_s".into(), started.elapsed().as_secs().into());
                }
                Ok(v)
            }
        });
    }
    // Routed calls of these may outlive the router's default timeout: a
    // RAID create, or activating and switching hundreds of volumes under
    // emulation. The router caps the limit at its own maximum.
    for long in [
        "pool.create",
        "pool.delete",
        "pool.export",
        "pool.import",
        "pool.takeover",
        "pool.repair",
        "pool.reconcile",
    ] {
        svc.timeout(long, LONG_CALL);
    }
    method!(svc, m, "disk.list", |mm, p: DiskList| mm.disk_list(p.local));
    {
        svc.method("pool.layouts", move |_ctx, raw| async move {
            let p: Layouts = params(raw)?;
            Ok(Manager::<B, C>::layouts(p.disks))
        });
    }
    method!(svc, m, "pool.create", |mm, p: CreatePool| mm.create_pool(p));
    method!(svc, m, "pool.export", |mm, p: Export| mm
        .export_pool(&p.name, p.to.as_deref()));
    method!(svc, m, "pool.import", |mm, p: Name| mm.import_pool(&p.name));
    method!(svc, m, "pool.takeover", |mm, p: Takeover| mm
        .takeover_pool(&p.name, p.epoch));
    method!(svc, m, "pool.status", |mm, p: OptName| mm
        .pool_status(p.name.as_deref()));
    method!(svc, m, "pool.repair", |mm, p: Name| mm.repair(&p.name));
    method!(svc, m, "pool.delete", |mm, p: Name| mm.delete_pool(&p.name));
    method!(svc, m, "pool.reconcile", |mm, _p: Empty| mm.reconcile());
    method!(svc, m, "pool.active_local", |mm, _p: Empty| mm
        .active_local());
    method!(svc, m, "volume.create", |mm, p: CreateVolume| mm
        .create_volume(p));
    method!(svc, m, "volume.resize", |mm, p: Resize| mm
        .resize_volume(&p.name, &p.size));
    method!(svc, m, "volume.delete", |mm, p: Name| mm
        .delete_volume(&p.name));
    method!(svc, m, "volume.snapshot", |mm, p: Snapshot| mm.snapshot(
        &p.source,
        &p.name,
        p.read_only,
        "snapshot"
    ));
    method!(svc, m, "volume.clone", |mm, p: Clone_| mm
        .snapshot(&p.source, &p.name, false, "clone"));
    method!(svc, m, "volume.list", |mm, p: List| mm
        .list_volumes(p.pool.as_deref()));
}
