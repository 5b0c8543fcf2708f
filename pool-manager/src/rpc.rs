//! JSON-RPC methods of pool-manager (`disk.*`, `pool.*`, `volume.*`),
//! mapped onto [`Manager`]. Params and results are the catalogue's typed
//! structs (`duplex_api::methods`), so a handler answers what its schema
//! says; errors are mapped in `error.rs`.
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
use crate::manager::{Cluster, Manager};
use duplex_api::methods::pool::{self as pm, PoolService};
use duplex_api::methods::{disk, volume as vm};
use duplex_services::ServiceBuilder;
use std::sync::Arc;

/// Registers the typed method `$m` on `$svc`: `|mm, p| body` runs with
/// the manager and the decoded params; the body's error becomes the
/// method's JSON-RPC error.
macro_rules! method {
    ($svc:expr, $m:expr, $t:ty, |$mm:ident, $p:pat_param| $body:expr) => {
        $svc.typed_with::<$t, _, _, _>($m, |$mm, _ctx, $p| async move { Ok($body.await?) })
    };
}

/// Registers every method on `svc`. `service` (name, version, backend...)
/// is merged into `pool.status`, which answers for the pools and the
/// service.
pub fn register<B: PoolBackend, C: Cluster>(
    svc: &mut ServiceBuilder,
    m: &Arc<Manager<B, C>>,
    service: PoolService,
) {
    {
        let m = Arc::clone(m);
        let started = std::time::Instant::now();
        svc.typed::<pm::Status, _, _>(move |_ctx, p| {
            let m = Arc::clone(&m);
            let mut service = service.clone();
            async move {
                let mut v = m.pool_status(p.name.as_deref()).await?;
                service.info.uptime_s = started.elapsed().as_secs();
                v.service = Some(service);
                Ok(v)
            }
        });
    }
    // Routed calls of these may outlive the router's default timeout.
    for long in pm::LONG_METHODS {
        svc.timeout(long, pm::LONG_CALL);
    }
    method!(svc, m, disk::List, |mm, p| mm.disk_list(p.local));
    svc.typed::<pm::Layouts, _, _>(
        move |_ctx, p| async move { Ok(Manager::<B, C>::layouts(p.disks)) },
    );
    method!(svc, m, pm::Create, |mm, p| mm.create_pool(p));
    method!(svc, m, pm::Export, |mm, p| mm
        .export_pool(&p.name, p.to.as_deref()));
    method!(svc, m, pm::Import, |mm, p| mm.import_pool(&p.name));
    method!(svc, m, pm::Takeover, |mm, p| mm
        .takeover_pool(&p.name, p.epoch));
    method!(svc, m, pm::Repair, |mm, p| mm.repair(&p.name));
    method!(svc, m, pm::Delete, |mm, p| mm.delete_pool(&p.name));
    method!(svc, m, pm::Reconcile, |mm, _p| mm.reconcile());
    method!(svc, m, pm::ActiveLocal, |mm, _p| mm.active_local());
    method!(svc, m, vm::Create, |mm, p| mm.create_volume(p));
    method!(svc, m, vm::Resize, |mm, p| mm
        .resize_volume(&p.name, &p.size));
    method!(svc, m, vm::Delete, |mm, p| mm.delete_volume(&p.name));
    method!(svc, m, vm::Snapshot, |mm, p| mm.snapshot(
        &p.source,
        &p.name,
        p.read_only,
        "snapshot"
    ));
    method!(svc, m, vm::CloneVolume, |mm, p| mm
        .snapshot(&p.source, &p.name, false, "clone"));
    method!(svc, m, vm::List, |mm, p| mm.list_volumes(p.pool.as_deref()));
}
