//! Volumes: create, resize, delete, snapshot/clone and list.

use super::{random64, Cluster, CreateVolume, Manager, Outcome, Record, Rollback};
use crate::backend::PoolBackend;
use crate::core::dmvol;
use crate::core::health::{usage, Usage};
use crate::core::identity::Identity;
use crate::core::names::{check_pool_name, check_volume_name, device_path, vg_name};
use crate::core::observed::ObservedPool;
use crate::core::thin::{format_size, parse_size};
use crate::core::Invalid;
use crate::error::PoolError;
use duplex_api::methods::volume::DmSync;
use duplex_api::methods::volume::{
    Deleted, ListResult, ListedVolume, TreeNode, VolumeInfo, VolumeResult,
};
use duplex_api::model::{Config, Kind, Object, Volume};
use duplex_api::syntax::Size;
use duplex_api::topics;
use serde_json::json;
use std::collections::BTreeMap;

/// The wire form of `v`, read-only as `read_only` says.
fn volume_info<R>(v: &Volume, read_only: R) -> VolumeInfo<R> {
    VolumeInfo {
        name: v.name.clone(),
        pool: v.pool.clone(),
        size: v.size,
        size_bytes: v.size.bytes(),
        device: dmvol::device_path(&v.serial),
        lv_device: device_path(&v.pool, &v.name),
        read_only,
        serial: v.serial.clone(),
        wwn: v.wwn.clone(),
        nguid: v.nguid.clone(),
        uuid: v.uuid.clone(),
        parent: v.parent_snapshot.clone(),
    }
}

/// A `volume.*` reply for the recorded volume `v`.
fn reply(outcome: Outcome, v: &Volume, dm: Option<DmSync>) -> VolumeResult {
    VolumeResult {
        outcome,
        volume: volume_info(v, v.read_only),
        dm,
    }
}

impl<B: PoolBackend, C: Cluster> Manager<B, C> {
    fn check_room(o: &ObservedPool) -> Result<(), PoolError> {
        let (d, m) = o.usage();
        for (what, p) in [("data", d), ("metadata", m)] {
            if usage(p) == Usage::Full {
                return Err(PoolError::PoolFull {
                    pool: o.pool.clone(),
                    what,
                    percent: p,
                });
            }
        }
        Ok(())
    }

    async fn ready_pool(&self, cfg: &Config, pool: &str) -> Result<ObservedPool, PoolError> {
        self.owned_pool(cfg, pool, "pool")?;
        let o = self
            .observe_pool(pool)
            .await?
            .ok_or_else(|| PoolError::Conflict {
                field: "pool".into(),
                reason: format!("pool {pool} is recorded but no disk here carries it"),
            })?;
        if o.system_id != self.me || o.thin.as_ref().is_none_or(|t| !t.active) {
            return Err(PoolError::Conflict {
                field: "pool".into(),
                reason: format!("pool {pool} is not imported here"),
            });
        }
        Ok(o)
    }

    /// `volume.create`: a thin volume with a new stable identity.
    pub async fn create_volume(&self, req: CreateVolume) -> Result<VolumeResult, PoolError> {
        check_pool_name("pool", &req.pool)?;
        check_volume_name("name", &req.pool, &req.name)?;
        let size = parse_size("size", &req.size)?;
        let (_g, cfg) = self.begin().await?;
        let o = self.ready_pool(&cfg, &req.pool).await?;
        if let Some(v) = cfg.volumes.get(&req.name) {
            if v.pool == req.pool && v.size.bytes() == size && v.parent_snapshot.is_none() {
                // Idempotent (and completes a create interrupted last time).
                self.backend
                    .create_volume(&req.pool, &req.name, size)
                    .await
                    .map_err(PoolError::backend(format!("create volume {}", req.name)))?;
                return Ok(reply(Outcome::Unchanged, v, None));
            }
            return Err(PoolError::Conflict {
                field: "name".into(),
                reason: format!(
                    "volume {} exists already (pool {}, {})",
                    v.name, v.pool, v.size
                ),
            });
        }
        if o.volume(&req.name).is_some() {
            return Err(PoolError::Conflict {
                field: "name".into(),
                reason: format!(
                    "an unrecorded LV {} exists in {}",
                    req.name,
                    vg_name(&req.pool)
                ),
            });
        }
        Self::check_room(&o)?;
        let cap = o.thin.as_ref().map_or(0, |t| t.size);
        if size > cap {
            return Err(Invalid::new(
                "size",
                format!(
                    "{} is larger than the pool's capacity {}",
                    format_size(size),
                    format_size(cap)
                ),
            )
            .into());
        }
        let id = Identity::from_random(&random64());
        let rec = Volume {
            name: req.name.clone(),
            pool: req.pool.clone(),
            size: Size(size),
            thin: true,
            serial: id.serial,
            wwn: id.wwn,
            nguid: id.nguid,
            uuid: id.uuid,
            parent_snapshot: None,
            read_only: false,
        };
        self.create_recorded(
            rec,
            |rec| async move { self.backend.create_volume(&rec.pool, &rec.name, size).await },
            "create volume",
        )
        .await
    }

    /// Records the new volume `rec`, runs `build` (operation `what`), and
    /// deletes the record again if the build fails.
    async fn create_recorded<F, Fut>(
        &self,
        rec: Volume,
        build: F,
        what: &str,
    ) -> Result<VolumeResult, PoolError>
    where
        F: FnOnce(Volume) -> Fut,
        Fut: std::future::Future<Output = Result<(), crate::backend::BackendError>>,
    {
        let name = rec.name.clone();
        let op = format!("{what} {name}");
        self.record_then(
            &op,
            Record::upsert(format!("record volume {name}"), Object::Volume(rec.clone())),
            || async { build(rec.clone()).await.map_err(PoolError::backend(&op)) },
            Some(Rollback::new(
                Record::delete(
                    format!("delete the record of volume {name}"),
                    Kind::Volume,
                    &name,
                ),
                format!("the record of volume {name} (the reconciler reports it)"),
            )),
        )
        .await?;
        let dm = self.sync_dm_after(what).await;
        self.cluster
            .publish(
                topics::VOLUME_CREATED,
                json!({"volume": name, "pool": rec.pool, "parent": rec.parent_snapshot}),
            )
            .await;
        Ok(reply(Outcome::Changed, &rec, Some(dm)))
    }

    fn desired_volume<'a>(
        cfg: &'a Config,
        name: &str,
        field: &str,
    ) -> Result<&'a Volume, PoolError> {
        cfg.volumes.get(name).ok_or_else(|| PoolError::NotFound {
            what: "volume",
            name: name.into(),
            field: field.into(),
        })
    }

    /// `volume.resize`: grow only.
    pub async fn resize_volume(&self, name: &str, size: &str) -> Result<VolumeResult, PoolError> {
        check_name_field("name", name)?;
        let size = parse_size("size", size)?;
        let (_g, cfg) = self.begin().await?;
        let v = Self::desired_volume(&cfg, name, "name")?.clone();
        let o = self.ready_pool(&cfg, &v.pool).await?;
        let now = v.size.bytes();
        if size < now {
            return Err(Invalid::new(
                "size",
                format!(
                    "volumes only grow: {name} is {}, {} is smaller",
                    v.size,
                    format_size(size)
                ),
            )
            .into());
        }
        if size == now {
            self.backend
                .resize_volume(&v.pool, name, size)
                .await
                .map_err(PoolError::backend(format!("resize volume {name}")))?;
            return Ok(reply(Outcome::Unchanged, &v, None));
        }
        Self::check_room(&o)?;
        let mut rec = v.clone();
        rec.size = Size(size);
        // Recorded first: if LVM then fails, the reconciler grows it later
        // (volumes never shrink, so there is no rollback to record).
        let op = format!("grow volume {name} (recorded; the reconciler retries)");
        self.record_then(
            &op,
            Record::upsert(
                format!("record the new size of {name}"),
                Object::Volume(rec.clone()),
            ),
            || async {
                self.backend
                    .resize_volume(&v.pool, name, size)
                    .await
                    .map_err(PoolError::backend(&op))
            },
            None,
        )
        .await?;
        let dm = self.sync_dm_after("grow").await;
        self.cluster
            .publish(
                topics::VOLUME_RESIZED,
                json!({"volume": name, "size": rec.size}),
            )
            .await;
        Ok(reply(Outcome::Changed, &rec, Some(dm)))
    }

    /// `volume.delete`.
    pub async fn delete_volume(&self, name: &str) -> Result<Deleted, PoolError> {
        check_name_field("name", name)?;
        let (_g, cfg) = self.begin().await?;
        let Some(v) = cfg.volumes.get(name).cloned() else {
            return Ok(Deleted {
                outcome: Outcome::Unchanged,
                volume: name.into(),
            });
        };
        self.ready_pool(&cfg, &v.pool).await?;
        let mut after = cfg.clone();
        after.volumes.remove(name);
        let op = format!("delete volume {name}");
        let left = format!("LV {}/{name} without a record", vg_name(&v.pool));
        let event = json!({"volume": name, "pool": v.pool});
        self.delete_recorded(
            Object::Volume(v.clone()),
            // The device goes first: a linear one holds the LV open. It is
            // swapped to an error table, then removed (if a holder keeps it
            // open, the reconciler removes it later).
            || async {
                self.sync_dm(&after, None).await?;
                self.backend
                    .delete_volume(&v.pool, name)
                    .await
                    .map_err(PoolError::backend(&op))
            },
            left,
            topics::VOLUME_DELETED,
            event,
        )
        .await?;
        Ok(Deleted {
            outcome: Outcome::Changed,
            volume: name.into(),
        })
    }

    /// `volume.snapshot` (read-only unless `read_only: false`) and
    /// `volume.clone` (a writable snapshot): a thin snapshot of `source`
    /// with its own identity, recorded with `parent_snapshot = source`.
    pub async fn snapshot(
        &self,
        source: &str,
        name: &str,
        read_only: bool,
        verb: &str,
    ) -> Result<VolumeResult, PoolError> {
        check_name_field("source", source)?;
        let (_g, cfg) = self.begin().await?;
        let src = Self::desired_volume(&cfg, source, "source")?.clone();
        check_volume_name("name", &src.pool, name)?;
        let o = self.ready_pool(&cfg, &src.pool).await?;
        if let Some(v) = cfg.volumes.get(name) {
            if v.parent_snapshot.as_deref() == Some(source) && o.volume(name).is_some() {
                return Ok(reply(Outcome::Unchanged, v, None));
            }
            return Err(PoolError::Conflict {
                field: "name".into(),
                reason: format!("volume {name} exists already"),
            });
        }
        if o.volume(source).is_none() {
            return Err(PoolError::Conflict {
                field: "source".into(),
                reason: format!("volume {source} is recorded but missing in LVM"),
            });
        }
        Self::check_room(&o)?;
        let id = Identity::from_random(&random64());
        let rec = Volume {
            name: name.into(),
            pool: src.pool.clone(),
            size: src.size,
            thin: true,
            serial: id.serial,
            wwn: id.wwn,
            nguid: id.nguid,
            uuid: id.uuid,
            parent_snapshot: Some(source.into()),
            read_only,
        };
        let source = source.to_string();
        self.create_recorded(
            rec,
            |rec| async move {
                self.backend
                    .snapshot(&rec.pool, &source, &rec.name, read_only)
                    .await
            },
            verb,
        )
        .await
    }

    /// `volume.list`: volumes with identity, state and the snapshot tree.
    pub async fn list_volumes(&self, pool: Option<&str>) -> Result<ListResult, PoolError> {
        let cfg = self.config().await?;
        let observed = self.observe().await?;
        let mut children: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for v in cfg.volumes.values() {
            if let Some(p) = &v.parent_snapshot {
                children.entry(p.clone()).or_default().push(v.name.clone());
            }
        }
        let vols: Vec<ListedVolume> = cfg
            .volumes
            .values()
            .filter(|v| pool.is_none_or(|p| v.pool == p))
            .map(|v| {
                let ov = observed
                    .iter()
                    .find(|o| o.pool == v.pool)
                    .and_then(|o| o.volume(&v.name));
                ListedVolume {
                    volume: volume_info(v, ov.map(|x| x.read_only)),
                    present: ov.is_some(),
                    active_here: ov.is_some_and(|x| x.active),
                    children: children.get(&v.name).cloned().unwrap_or_default(),
                }
            })
            .collect();
        fn tree(name: &str, children: &BTreeMap<String, Vec<String>>, depth: usize) -> TreeNode {
            let kids: Vec<TreeNode> = if depth > 64 {
                vec![]
            } else {
                children
                    .get(name)
                    .map(|k| k.iter().map(|c| tree(c, children, depth + 1)).collect())
                    .unwrap_or_default()
            };
            TreeNode {
                name: name.to_string(),
                children: kids,
            }
        }
        let roots: Vec<TreeNode> = cfg
            .volumes
            .values()
            .filter(|v| v.parent_snapshot.is_none() && pool.is_none_or(|p| v.pool == p))
            .map(|v| tree(&v.name, &children, 0))
            .collect();
        Ok(ListResult {
            volumes: vols,
            tree: roots,
        })
    }
}

fn check_name_field(field: &str, name: &str) -> Result<(), PoolError> {
    duplex_api::syntax::check_name(name).map_err(|r| Invalid::new(field, r).into())
}
