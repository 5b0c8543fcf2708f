//! The driver: feeds the state machine from the backends and carries out
//! its effects.
//!
//! - one thread per heartbeat disk writes the newest own slot and reads the
//!   partner's every `disk_interval` (a hung disk stalls only its thread);
//! - a task receives beats, and a tick every `hb_interval` sends ours;
//! - a thread owns the watchdog (petting is a blocking device write);
//! - fence agents and the takeover run as tasks and report back as inputs;
//! - the configuration lock follows the machine's wish through one task, so
//!   lock and unlock calls can never overtake each other.

use crate::backend::{FenceAgent, FenceOutcome, HeartbeatDisk, Interconnect, LinkCounters};
use crate::backend::{FrontendLinks, ShelfDisks, Watchdog, BLOCK};
use crate::core::latency;
use crate::core::machine::{Effect, FenceResult, Input, Level, Machine, PartnerRead, Settings};
use crate::core::slot::{AreaHeader, Slot, SlotError, HEADER_OFFSET, SLOT_OFFSETS};
use crate::core::types::{Epoch, Phase};
use crate::orchestrate::{self, Entry, Selection, Step};
use duplex_api::topics;
use duplex_services::{action, durable, RouterClient};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{mpsc as std_mpsc, Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::Instrument;

/// Takeovers and moves kept in `cluster.timeline`.
pub const TIMELINE_LEN: usize = 50;

/// The effects at the edges, already constructed (Linux or sim).
pub struct Backends {
    /// Heartbeat disks, in configuration order.
    pub disks: Vec<Arc<dyn HeartbeatDisk>>,
    /// The watchdog, if one is configured.
    pub watchdog: Option<Box<dyn Watchdog>>,
    /// Fence agents in the order tried.
    pub agents: Vec<Arc<dyn FenceAgent>>,
    /// The interconnect transport.
    pub interconnect: Arc<dyn Interconnect>,
    /// The front-end links, when they are watched.
    pub frontend: Option<Arc<dyn FrontendLinks>>,
    /// The shelf's disks, when they are watched.
    pub shelf: Option<Arc<dyn ShelfDisks>>,
}

/// Timings the machine does not hold.
#[derive(Debug, Clone)]
pub struct Timing {
    /// Beat interval.
    pub hb_interval: Duration,
    /// Slot write and read interval.
    pub disk_interval: Duration,
}

/// What the driver shares with the RPC handlers.
#[derive(Default)]
pub struct Shared {
    /// The machine's last snapshot.
    pub status: Option<crate::core::machine::Status>,
    /// Per-link counters.
    pub links: Vec<LinkCounters>,
    /// The last takeovers and moves, newest last (JSON, so entries of an
    /// older build loaded from the file stay readable).
    pub timeline: VecDeque<Value>,
    /// Where the timeline is kept across restarts.
    pub timeline_file: Option<PathBuf>,
    /// The fence step that confirmed, for the next takeover's timeline.
    pub last_fence: Option<Step>,
    /// Own slot write latency per disk.
    pub write_latency: Vec<latency::Summary>,
    /// Bumped by each fence join, so an older retry loop stops.
    pub join_generation: u64,
    /// True once every fence agent has set up its part (the SCSI-3 PR key
    /// registered) since this controller last became a member; until then
    /// it must not be given pools, which it could not write.
    pub fence_joined: bool,
}

impl Shared {
    /// Adds an entry and writes the file (best effort: a full disk must not
    /// stop a takeover).
    pub fn record(&mut self, e: Entry) {
        self.timeline.push_back(json!(e));
        while self.timeline.len() > TIMELINE_LEN {
            self.timeline.pop_front();
        }
        if let Some(path) = &self.timeline_file {
            let entries: Vec<&Value> = self.timeline.iter().collect();
            match serde_json::to_vec_pretty(&entries) {
                Ok(bytes) => {
                    if let Err(e) = durable::write_atomic(path, &bytes) {
                        tracing::warn!(error = %e, "cannot save the timeline");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot encode the timeline"),
            }
        }
    }

    /// State kept in `path`: the timeline of earlier runs, if the file
    /// exists and parses (a damaged file is set aside by the next write,
    /// never a reason not to start).
    pub fn with_timeline_file(path: PathBuf) -> Shared {
        let earlier: Vec<Value> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let skip = earlier.len().saturating_sub(TIMELINE_LEN);
        Shared {
            timeline: earlier.into_iter().skip(skip).collect(),
            timeline_file: Some(path),
            ..Shared::default()
        }
    }
}

/// Locks `m`, ignoring poisoning (a panicked handler must not stop the
/// heartbeat).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Commands from the RPC handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Hold or release takeovers.
    Maintenance(bool),
}

/// A random per-start incarnation, without a new dependency: the standard
/// library's hasher keys are random per process.
pub fn incarnation() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

enum WdMsg {
    Pet,
    Abandon,
}

fn spawn_watchdog(mut wd: Box<dyn Watchdog>) -> std_mpsc::Sender<WdMsg> {
    let (tx, rx) = std_mpsc::channel();
    std::thread::spawn(move || {
        while let Ok(msg) = rx.recv() {
            match msg {
                WdMsg::Pet => {
                    if let Err(e) = wd.pet() {
                        tracing::error!(error = %e, "watchdog pet failed");
                    }
                }
                WdMsg::Abandon => {
                    wd.abandon();
                    tracing::error!("watchdog abandoned: it will reset this controller");
                    return;
                }
            }
        }
    });
    tx
}

/// One disk's thread and what it reports to.
struct DiskWorker {
    index: usize,
    disk: Arc<dyn HeartbeatDisk>,
    me: String,
    partner: String,
    interval: Duration,
    out: mpsc::UnboundedSender<Input>,
    latency: mpsc::UnboundedSender<(usize, u64)>,
}

/// Starts one disk's thread: it finds the area, then writes the newest slot
/// it was given and reads the partner's slot every interval.
fn spawn_disk(w: DiskWorker, slots: std_mpsc::Receiver<Slot>) {
    let DiskWorker {
        index,
        disk,
        me,
        partner,
        interval,
        out,
        latency,
    } = w;
    std::thread::spawn(move || {
        let mut offsets: Option<(u64, u64)> = None;
        let mut last_read = Instant::now()
            .checked_sub(interval)
            .unwrap_or_else(Instant::now);
        let mut last_reopen: Option<Instant> = None;
        let mut area_err = String::new();
        loop {
            let mut newest = match slots.recv_timeout(interval) {
                Ok(s) => Some(s),
                Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            };
            while let Ok(s) = slots.try_recv() {
                newest = Some(s);
            }
            if offsets.is_none() {
                match find_area(&*disk, &me, &partner) {
                    Ok(o) => offsets = Some(o),
                    Err(e) => {
                        area_err = e;
                        // The device may be gone for good (pulled, then
                        // pushed back as a new node): open the path again.
                        reopen(&*disk, &mut offsets, &mut last_reopen);
                    }
                }
            }
            if let Some(slot) = newest {
                // Never write to a disk whose area is not ours.
                let ok = match (offsets, slot.encode()) {
                    (Some((mine, _)), Ok(block)) => {
                        let t = Instant::now();
                        let ok = disk.write_block(mine, &block).is_ok();
                        if !ok {
                            reopen(&*disk, &mut offsets, &mut last_reopen);
                        }
                        let ms = u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX);
                        let _ = latency.send((index, ms));
                        ok
                    }
                    _ => false,
                };
                let sent = out.send(Input::SlotWritten {
                    disk: index,
                    counter: slot.counter,
                    ok,
                });
                if sent.is_err() {
                    return;
                }
            }
            if last_read.elapsed() >= interval {
                last_read = Instant::now();
                let read = match offsets {
                    None => PartnerRead::Error(format!("{}: {area_err}", disk.name())),
                    Some((_, theirs)) => match disk.read_block(theirs) {
                        Ok(b) => match Slot::decode(&b[..]) {
                            Ok(s) => PartnerRead::Slot(s),
                            Err(SlotError::Blank) => PartnerRead::Blank,
                            Err(e) => PartnerRead::Error(format!("{}: {e}", disk.name())),
                        },
                        Err(e) => {
                            reopen(&*disk, &mut offsets, &mut last_reopen);
                            PartnerRead::Error(e.to_string())
                        }
                    },
                };
                if out.send(Input::PartnerSlot { disk: index, read }).is_err() {
                    return;
                }
            }
        }
    });
}

/// After an I/O error, opens the disk's path again (at most once a second):
/// a heartbeat disk pulled and pushed back, or replaced, is a new device
/// node. Its area is found again before anything is written to it.
fn reopen(disk: &dyn HeartbeatDisk, offsets: &mut Option<(u64, u64)>, last: &mut Option<Instant>) {
    if last.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
        return;
    }
    *last = Some(Instant::now());
    *offsets = None;
    if let Err(e) = disk.reopen() {
        tracing::debug!(disk = disk.name(), error = %e, "heartbeat disk reopen failed");
    }
}

/// The offsets of our slot and the partner's in the disk's area, or why
/// there are none.
fn find_area(disk: &dyn HeartbeatDisk, me: &str, partner: &str) -> Result<(u64, u64), String> {
    let block = disk
        .read_block(HEADER_OFFSET)
        .map_err(|e| format!("area header unreadable: {e}"))?;
    let h = AreaHeader::decode(&block[..])
        .map_err(|e| format!("no heartbeat area for {me} and {partner} (cluster.init): {e}"))?;
    match (h.slot_offset(me), h.slot_offset(partner)) {
        (Some(mine), Some(theirs)) => Ok((mine, theirs)),
        _ => Err(format!("the heartbeat area is not for {me} and {partner}")),
    }
}

/// What `init_area` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum InitOutcome {
    /// The header was written on a blank disk.
    Created,
    /// The same area was already there (nothing written).
    Already,
}

/// Makes the heartbeat area on `disk` (`cluster.init`): refused unless the
/// first three blocks are blank, or already hold this very area.
pub fn init_area(
    disk: &dyn HeartbeatDisk,
    cluster_id: &str,
    controllers: [&str; 2],
) -> Result<InitOutcome, String> {
    let mut ids = [controllers[0].to_string(), controllers[1].to_string()];
    ids.sort();
    let want = AreaHeader {
        cluster_id: cluster_id.into(),
        controllers: ids,
    };
    let name = disk.name().to_string();
    let first = disk
        .read_block(HEADER_OFFSET)
        .map_err(|e| format!("{name}: {e}"))?;
    match AreaHeader::decode(&first[..]) {
        Ok(h) if h == want => return Ok(InitOutcome::Already),
        Ok(h) => {
            return Err(format!(
                "{name} holds the heartbeat area of cluster {:?} ({} and {}): refused",
                h.cluster_id, h.controllers[0], h.controllers[1]
            ))
        }
        Err(_) => {}
    }
    for (i, offset) in [HEADER_OFFSET, SLOT_OFFSETS[0], SLOT_OFFSETS[1]]
        .into_iter()
        .enumerate()
    {
        let b = disk
            .read_block(offset)
            .map_err(|e| format!("{name}: {e}"))?;
        if b.iter().any(|&x| x != 0) {
            return Err(format!(
                "{name} is in use (block {i} is neither blank nor a heartbeat area): refused"
            ));
        }
    }
    let b = want.encode().map_err(|e| e.to_string())?;
    let b: &[u8; BLOCK] = &b;
    disk.write_block(HEADER_OFFSET, b)
        .map_err(|e| format!("{name}: {e}"))?;
    Ok(InitOutcome::Created)
}

/// Everything the driver needs to run.
pub struct Driver {
    /// The machine's settings.
    pub settings: Settings,
    /// Intervals.
    pub timing: Timing,
    /// The backends.
    pub backends: Backends,
    /// The router.
    pub router: RouterClient,
    /// Shared with RPC.
    pub shared: Arc<Mutex<Shared>>,
    /// Commands from RPC.
    pub commands: mpsc::UnboundedReceiver<Command>,
    /// Give the partner's pools back once it rejoined and caught up.
    pub auto_failback: bool,
}

fn ms_since(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

impl Driver {
    /// Runs until the process ends.
    pub async fn run(self) {
        let Driver {
            settings,
            timing,
            backends,
            router,
            shared,
            mut commands,
            auto_failback,
        } = self;
        let start = Instant::now();
        let me = settings.me.clone();
        let partner = settings.partner.clone();
        let epoch = initial_epoch(&router, &me).await;
        let inc = incarnation();
        tracing::info!(%me, %partner, incarnation = inc, epoch = epoch.counter, "heartbeat starting");
        let mut m = Machine::new(settings, ms_since(start), inc, epoch);

        let (in_tx, mut in_rx) = mpsc::unbounded_channel::<Input>();
        let (lat_tx, mut lat_rx) = mpsc::unbounded_channel::<(usize, u64)>();
        // Warn well before slow writes could make our slot look frozen.
        let lat_limit = m.settings().suspect_timeout_ms / 2;
        let mut windows = vec![latency::Window::default(); backends.disks.len()];
        let mut disk_tx = Vec::new();
        for (i, d) in backends.disks.iter().enumerate() {
            let (tx, rx) = std_mpsc::channel();
            disk_tx.push(tx);
            let worker = DiskWorker {
                index: i,
                disk: Arc::clone(d),
                me: me.clone(),
                partner: partner.clone(),
                interval: timing.disk_interval,
                out: in_tx.clone(),
                latency: lat_tx.clone(),
            };
            spawn_disk(worker, rx);
        }
        let wd = backends.watchdog.map(spawn_watchdog);
        let ic = Arc::clone(&backends.interconnect);
        {
            let tx = in_tx.clone();
            let ic = Arc::clone(&ic);
            tokio::spawn(async move {
                loop {
                    let a = ic.recv().await;
                    if tx
                        .send(Input::Beat {
                            link: a.link,
                            beat: a.beat,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
        let (lock_tx, lock_rx) = watch::channel::<Option<String>>(None);
        tokio::spawn(config_lock_task(router.clone(), lock_rx));
        tokio::spawn(pool_count_task(
            router.clone(),
            me.clone(),
            partner.clone(),
            in_tx.clone(),
        ));

        tokio::spawn(loss_task(
            Arc::clone(&ic),
            router.clone(),
            partner.clone(),
            m.settings().ic_timeout_ms.saturating_mul(1000) / 2,
        ));
        if let Some(fe) = backends.frontend.clone() {
            tokio::spawn(frontend_task(fe, in_tx.clone()));
        }
        if let Some(shelf) = backends.shelf.clone() {
            tokio::spawn(shelf_task(shelf, in_tx.clone()));
        }
        tokio::spawn(targets_task(router.clone(), partner.clone(), in_tx.clone()));

        let agents = backends.agents;
        let mut tick = tokio::time::interval(timing.hb_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut seq: u64 = 0;
        loop {
            // Biased, inputs first: after a stall the beats and slot
            // results queued meanwhile are news the tick must not overtake.
            let input = tokio::select! {
                biased;
                Some(i) = in_rx.recv() => i,
                Some(c) = commands.recv() => match c {
                    Command::Maintenance(on) => Input::Maintenance(on),
                },
                Some((disk, ms)) = lat_rx.recv() => {
                    if let Some(w) = windows.get_mut(disk) {
                        match w.add(ms, lat_limit) {
                            Some(latency::Edge::Raised(p99)) => alert(&router, Level::Warning, format!(
                                "heartbeat disk {disk}: slot write p99 {p99} ms is above {lat_limit} ms (half of suspect_timeout)")),
                            Some(latency::Edge::Cleared(p99)) => alert(&router, Level::Info, format!(
                                "heartbeat disk {disk}: slot write p99 back to {p99} ms")),
                            None => {}
                        }
                    }
                    lock(&shared).write_latency = windows.iter().map(latency::Window::summary).collect();
                    continue;
                }
                _ = tick.tick() => {
                    seq += 1;
                    let beat = m.beat(seq);
                    let ic = Arc::clone(&ic);
                    tokio::spawn(async move { let _ = ic.send(&beat).await; });
                    Input::Tick
                }
            };
            let fx = m.step(ms_since(start), input);
            for e in fx {
                match e {
                    Effect::WriteSlot(slot) => {
                        for tx in &disk_tx {
                            let _ = tx.send(slot.clone());
                        }
                    }
                    Effect::LockConfig { reason } => {
                        let _ = lock_tx.send(Some(reason));
                    }
                    Effect::UnlockConfig => {
                        let _ = lock_tx.send(None);
                    }
                    Effect::Alert { level, message } => alert(&router, level, message),
                    Effect::FencePartner { agent, target } => {
                        run_fence(&agents, agent, target, &in_tx, &shared);
                    }
                    Effect::StartTakeover { epoch } => {
                        run_takeover(&router, &me, &partner, epoch, &in_tx, &shared);
                    }
                    Effect::SelfFence { reason } => self_fence(&router, &me, reason),
                    Effect::JoinFence => {
                        let retry = Duration::from_millis(m.settings().fence_retry_ms);
                        run_join_fence(&agents, &router, &shared, retry);
                    }
                    Effect::MoveForFrontend => {
                        run_frontend_move(&router, &me, &partner, &in_tx, &shared);
                    }
                    Effect::PetWatchdog => {
                        if let Some(w) = &wd {
                            let _ = w.send(WdMsg::Pet);
                        }
                    }
                    Effect::StopWatchdog => {
                        if let Some(w) = &wd {
                            let _ = w.send(WdMsg::Abandon);
                        }
                    }
                    Effect::StateChanged { from, to, epoch } => {
                        if auto_failback && from == Phase::Survivor && to == Phase::Normal {
                            run_auto_failback(&router, &me, &partner, &shared);
                        }
                        tracing::warn!(
                            from = from.name(),
                            to = to.name(),
                            epoch = epoch.counter,
                            "heartbeat state"
                        );
                        publish(
                            &router,
                            topics::CLUSTER_STATE,
                            json!({"controller": me, "from": from, "to": to, "epoch": epoch}),
                        );
                    }
                }
            }
            let mut sh = lock(&shared);
            sh.status = Some(m.status(ms_since(start)));
            sh.links = ic.counters();
        }
    }
}

async fn initial_epoch(router: &RouterClient, me: &str) -> Epoch {
    let got = tokio::time::timeout(
        Duration::from_secs(2),
        router.call("config.get", json!({"kind": "cluster"})),
    )
    .await;
    let counter = match got {
        Ok(Ok(v)) => v
            .pointer("/config/cluster/epoch")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        _ => 0,
    };
    Epoch {
        counter,
        controller: me.to_string(),
    }
}

fn publish(router: &RouterClient, topic: &'static str, data: Value) {
    let r = router.clone();
    tokio::spawn(async move {
        if let Err(e) = r.publish(topic, data, true).await {
            tracing::debug!(error = %e, topic, "publish failed");
        }
    });
}

fn alert(router: &RouterClient, level: Level, message: String) {
    let severity = match level {
        Level::Info => {
            tracing::info!(alert = "heartbeat", "{message}");
            "info"
        }
        Level::Warning => {
            tracing::warn!(alert = "heartbeat", "{message}");
            "warning"
        }
        Level::Critical => {
            tracing::error!(alert = "heartbeat", "{message}");
            "critical"
        }
    };
    publish(
        router,
        topics::ALERT,
        json!({"severity": severity, "kind": "heartbeat", "message": message}),
    );
}

fn run_fence(
    agents: &[Arc<dyn FenceAgent>],
    agent: String,
    target: String,
    tx: &mpsc::UnboundedSender<Input>,
    shared: &Arc<Mutex<Shared>>,
) {
    let found = agents.iter().find(|a| a.name() == agent).cloned();
    let tx = tx.clone();
    let shared = Arc::clone(shared);
    tokio::spawn(async move {
        let t = Instant::now();
        let (result, detail) = match found {
            None => (FenceResult::Failed, format!("no fence agent named {agent}")),
            Some(a) => match a.fence(&target).await {
                FenceOutcome::Confirmed { detail } => (FenceResult::Confirmed, detail),
                FenceOutcome::Unconfirmed { detail } => (FenceResult::Unconfirmed, detail),
                FenceOutcome::Failed { reason } => (FenceResult::Failed, reason),
            },
        };
        if result == FenceResult::Confirmed {
            lock(&shared).last_fence = Some(Step {
                name: format!("fence ({agent})"),
                pool: None,
                ms: u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX),
                ok: true,
                detail: detail.clone(),
            });
        }
        let _ = tx.send(Input::FenceDone {
            agent,
            result,
            detail,
        });
    });
}

/// Runs each agent's `join` (the PR key registration) until all succeeded,
/// every `retry`, while this controller stays a member (normal or
/// survivor) and no newer join started. A failure is a warning: the agent
/// would not confirm a fence until it is fixed.
fn run_join_fence(
    agents: &[Arc<dyn FenceAgent>],
    router: &RouterClient,
    shared: &Arc<Mutex<Shared>>,
    retry: Duration,
) {
    let generation = {
        let mut sh = lock(shared);
        sh.join_generation += 1;
        sh.fence_joined = false;
        sh.join_generation
    };
    let mut todo: Vec<Arc<dyn FenceAgent>> = agents.to_vec();
    let (router, shared) = (router.clone(), Arc::clone(shared));
    tokio::spawn(async move {
        let mut warned = false;
        loop {
            let mut left = Vec::new();
            for a in todo {
                match a.join().await {
                    Ok(detail) => tracing::info!(agent = a.name(), %detail, "fence agent joined"),
                    Err(why) => {
                        if !warned {
                            alert(
                                &router,
                                Level::Warning,
                                format!("fence agent {} cannot set up its part: {why}", a.name()),
                            );
                        }
                        left.push(a);
                    }
                }
            }
            if left.is_empty() {
                {
                    let mut sh = lock(&shared);
                    if sh.join_generation == generation {
                        sh.fence_joined = true;
                    }
                }
                if warned {
                    alert(&router, Level::Info, "every fence agent is set up".into());
                }
                return;
            }
            warned = true;
            todo = left;
            tokio::time::sleep(retry).await;
            let sh = lock(&shared);
            let member = sh
                .status
                .as_ref()
                .is_some_and(|s| matches!(s.phase, Phase::Normal | Phase::Survivor));
            if !member || sh.join_generation != generation {
                return;
            }
        }
    });
}

fn run_takeover(
    router: &RouterClient,
    me: &str,
    partner: &str,
    epoch: Epoch,
    tx: &mpsc::UnboundedSender<Input>,
    shared: &Arc<Mutex<Shared>>,
) {
    let (router, me, partner) = (router.clone(), me.to_string(), partner.to_string());
    let (tx, shared) = (tx.clone(), Arc::clone(shared));
    let id = action::new_id();
    let span = tracing::info_span!("takeover", action_id = %id, epoch = epoch.counter);
    let scope_id = id.clone();
    let fut = async move {
        let (fence, detection) = {
            let mut sh = lock(&shared);
            let detection = sh.status.as_ref().and_then(|s| s.last_detection_ms);
            (sh.last_fence.take(), detection)
        };
        // Detection comes first in the timeline: from the partner's last
        // sign of life to the fence start.
        let fence: Vec<Step> = detection
            .map(|ms| Step {
                name: "detection".into(),
                pool: None,
                ms,
                ok: true,
                detail: String::new(),
            })
            .into_iter()
            .chain(fence)
            .collect();
        let out = orchestrate::takeover(&router, &id, &me, &partner, &epoch, fence).await;
        for a in &out.alerts {
            publish(&router, topics::ALERT, json!(a));
        }
        // Recorded means the new owners are in config-keeper: pools that
        // failed are alerts, and running it again is for an operator.
        let recorded = out.entry.steps.iter().any(|s| s.name == "record" && s.ok);
        let input = if recorded {
            Input::TakeoverDone { epoch }
        } else {
            Input::TakeoverFailed {
                reason: out
                    .alerts
                    .last()
                    .map(|a| a.message.clone())
                    .unwrap_or_else(|| "takeover failed".into()),
            }
        };
        lock(&shared).record(out.entry);
        let _ = tx.send(input);
    };
    tokio::spawn(action::scope(scope_id, fut.instrument(span)));
}

/// The window over which beat loss per link is judged.
const LOSS_WINDOW: Duration = Duration::from_secs(10);

/// Raises an alert when a link loses beats or its round trip reaches
/// `rtt_limit_us` (before either could make the link look down), and
/// clears it when that is gone.
async fn loss_task(
    ic: Arc<dyn Interconnect>,
    router: RouterClient,
    partner: String,
    rtt_limit_us: u64,
) {
    let mut windows: Vec<latency::Loss> = Vec::new();
    let mut trips: Vec<latency::RoundTrip> = Vec::new();
    loop {
        tokio::time::sleep(LOSS_WINDOW).await;
        let counters = ic.counters();
        windows.resize(counters.len(), latency::Loss::default());
        trips.resize(counters.len(), latency::RoundTrip::default());
        for (i, (c, t)) in counters.iter().zip(trips.iter_mut()).enumerate() {
            match t.check(c.rtt_avg_us, rtt_limit_us) {
                Some(latency::Edge::Raised(us)) => alert(
                    &router,
                    Level::Warning,
                    format!(
                        "interconnect link {i} to {partner}: round trip {} ms on average (warning at {} ms)",
                        us / 1000,
                        rtt_limit_us / 1000
                    ),
                ),
                Some(latency::Edge::Cleared(us)) => alert(
                    &router,
                    Level::Info,
                    format!(
                        "interconnect link {i} to {partner}: round trip back to {} ms",
                        us / 1000
                    ),
                ),
                None => {}
            }
        }
        for (i, (c, w)) in counters.iter().zip(windows.iter_mut()).enumerate() {
            match w.window(c.received, c.lost) {
                Some(latency::Edge::Raised(pct)) => alert(
                    &router,
                    Level::Warning,
                    format!(
                        "interconnect link {i} to {partner}: {pct}% of beats lost in the last {} s",
                        LOSS_WINDOW.as_secs()
                    ),
                ),
                Some(latency::Edge::Cleared(pct)) => alert(
                    &router,
                    Level::Info,
                    format!("interconnect link {i} to {partner}: beat loss back to {pct}%"),
                ),
                None => {}
            }
        }
    }
}

/// How often the front-end carrier is read.
const FRONTEND_POLL: Duration = Duration::from_millis(500);

/// Reports the front end's state to the machine: once at start, then on
/// every change. A read that fails reports nothing (the machine keeps the
/// last state).
async fn frontend_task(fe: Arc<dyn FrontendLinks>, tx: mpsc::UnboundedSender<Input>) {
    let mut last = None;
    loop {
        let fe2 = Arc::clone(&fe);
        // sysfs reads are quick, but blocking: off the async threads.
        let now = tokio::task::spawn_blocking(move || fe2.any_up()).await;
        match now {
            Ok(Ok(up)) if last != Some(up) => {
                last = Some(up);
                if tx.send(Input::Frontend { up }).is_err() {
                    return;
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "front-end state unreadable"),
            _ => {}
        }
        tokio::time::sleep(FRONTEND_POLL).await;
    }
}

/// How often targets' health is asked, here and on the partner.
const TARGETS_POLL: Duration = Duration::from_secs(2);
/// The longest a `target.status` may take before it counts as unanswered.
const TARGETS_STATUS_WITHIN: Duration = Duration::from_secs(5);

/// Asks `target.status` here and on the partner every [`TARGETS_POLL`]
/// and reports changes: health is an answer through the router (a
/// crash-looping or hung daemon gives none), not a live process. A daemon
/// still rebuilding configfs after a restart answers (not ready yet): the
/// kernel serves meanwhile, so that counts as serving.
async fn targets_task(router: RouterClient, partner: String, tx: mpsc::UnboundedSender<Input>) {
    let mut last = None;
    loop {
        let here = matches!(
            tokio::time::timeout(
                TARGETS_STATUS_WITHIN,
                router.call("target.status", json!({})),
            )
            .await,
            Ok(Ok(_))
        );
        let there = tokio::time::timeout(
            TARGETS_STATUS_WITHIN,
            router.call_on(&partner, "target.status", json!({})),
        )
        .await;
        // No answer from the partner (peer link down) is unknown, not
        // "not serving".
        let partner = match there {
            Ok(Ok(_)) => Some(true),
            // The partner's router answered that targets did not.
            Ok(Err(duplex_services::CallError::Rpc(_))) => Some(false),
            _ => None,
        };
        if last != Some((here, partner)) {
            last = Some((here, partner));
            if tx.send(Input::Targets { here, partner }).is_err() {
                return;
            }
        }
        tokio::time::sleep(TARGETS_POLL).await;
    }
}

/// How often the shelf's disks are read.
const SHELF_POLL: Duration = Duration::from_millis(500);
/// A shelf read that has not answered by then counts as unreadable.
const SHELF_READ_TIMEOUT: Duration = Duration::from_secs(1);

/// Reports how many shelf disks answer a read: once at start, then on every
/// change. Each round reads every disk at once, each on a blocking thread;
/// a read still hanging from an earlier round counts as unreadable and is
/// not doubled, so a dead path holds one thread, never more.
async fn shelf_task(shelf: Arc<dyn ShelfDisks>, tx: mpsc::UnboundedSender<Input>) {
    let n = shelf.count();
    let busy: Vec<Arc<std::sync::atomic::AtomicBool>> = (0..n)
        .map(|_| Arc::new(std::sync::atomic::AtomicBool::new(false)))
        .collect();
    let mut last = None;
    loop {
        let deadline = tokio::time::Instant::now() + SHELF_READ_TIMEOUT;
        let mut reads = Vec::with_capacity(n);
        for (i, flag) in busy.iter().enumerate() {
            if flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
                continue;
            }
            let (shelf, flag) = (Arc::clone(&shelf), Arc::clone(flag));
            reads.push(tokio::task::spawn_blocking(move || {
                let ok = shelf.readable(i);
                flag.store(false, std::sync::atomic::Ordering::SeqCst);
                ok
            }));
        }
        let mut readable: u8 = 0;
        for read in reads {
            if let Ok(Ok(true)) = tokio::time::timeout_at(deadline, read).await {
                readable = readable.saturating_add(1);
            }
        }
        if last != Some(readable) {
            last = Some(readable);
            tracing::info!(readable, of = n, "shelf disks readable");
            if tx.send(Input::Shelf { readable }).is_err() {
                return;
            }
        }
        tokio::time::sleep(SHELF_POLL).await;
    }
}

/// Moves this controller's pools to the partner because every front-end
/// link is down, under a new action_id, if the partner says its own front
/// end is up (moving pools to a controller hosts cannot reach either would
/// only add a pause). The outcome goes back to the machine.
fn run_frontend_move(
    router: &RouterClient,
    me: &str,
    partner: &str,
    tx: &mpsc::UnboundedSender<Input>,
    shared: &Arc<Mutex<Shared>>,
) {
    let (router, me, partner) = (router.clone(), me.to_string(), partner.to_string());
    let (tx, shared) = (tx.clone(), Arc::clone(shared));
    let id = action::new_id();
    let span = tracing::info_span!("failover", action_id = %id, reason = "frontend");
    let scope_id = id.clone();
    let fut = async move {
        let st = router
            .call_at(Some(&partner), "cluster.status", json!({}))
            .await;
        let partner_fe = st
            .as_ref()
            .ok()
            .and_then(|v| v.pointer("/state/frontend_up"))
            .and_then(Value::as_bool);
        let done = |ok: bool, reason: String| {
            let _ = tx.send(Input::FrontendMoveDone { ok, reason });
        };
        if partner_fe != Some(true) {
            let why = match st {
                Err(e) => format!("{partner} did not answer cluster.status: {e}"),
                Ok(_) if partner_fe == Some(false) => {
                    format!("{partner}'s front end is down too")
                }
                Ok(_) => format!("{partner} does not report its front end"),
            };
            return done(false, why);
        }
        if let Err(e) = can_move(&lock(&shared)) {
            return done(false, e);
        }
        let (_, failed) = move_to_partner(
            &router,
            &shared,
            &id,
            &me,
            &partner,
            "failover",
            Selection::AllOwned,
        )
        .await;
        done(failed.is_none(), failed.unwrap_or_default());
    };
    tokio::spawn(action::scope(scope_id, fut.instrument(span)));
}

/// A planned move of `which` of this controller's pools to the partner
/// (`kind`: failover or giveback) under `id`: its alerts published, its
/// entry in the timeline. Returns the entry, and why it failed if it did.
pub async fn move_to_partner(
    router: &RouterClient,
    shared: &Arc<Mutex<Shared>>,
    id: &str,
    me: &str,
    partner: &str,
    kind: &str,
    which: Selection,
) -> (Entry, Option<String>) {
    let out = orchestrate::handover(router, kind, id, me, me, partner, which).await;
    for a in &out.alerts {
        publish(router, topics::ALERT, json!(a));
    }
    let failed = (!out.entry.ok).then(|| {
        out.alerts
            .last()
            .map(|a| a.message.clone())
            .unwrap_or_else(|| format!("{kind} failed"))
    });
    lock(shared).record(out.entry.clone());
    (out.entry, failed)
}

/// Gives the partner its home pools back once its configuration caught up
/// and its fence agents are set up (polled for up to ten minutes), under
/// one new action_id.
fn run_auto_failback(router: &RouterClient, me: &str, partner: &str, shared: &Arc<Mutex<Shared>>) {
    let (router, me, partner) = (router.clone(), me.to_string(), partner.to_string());
    let shared = Arc::clone(shared);
    let id = action::new_id();
    let span = tracing::info_span!("giveback", action_id = %id);
    let scope_id = id.clone();
    let fut = async move {
        for _ in 0..600 {
            let st = router
                .call_at(Some(&partner), "config.status", json!({}))
                .await;
            let mut ready = st
                .ok()
                .and_then(|v| v.get("ready").and_then(Value::as_bool))
                == Some(true);
            if ready {
                // Its PR key registered too, or the handover would refuse.
                let cs = router
                    .call_at(Some(&partner), "cluster.status", json!({}))
                    .await;
                ready = cs
                    .ok()
                    .and_then(|v| v.get("fence_joined").and_then(Value::as_bool))
                    != Some(false);
            }
            if ready && can_move(&lock(&shared)).is_ok() {
                move_to_partner(
                    &router,
                    &shared,
                    &id,
                    &me,
                    &partner,
                    "giveback",
                    Selection::HomeOf,
                )
                .await;
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        alert(
            &router,
            Level::Warning,
            format!(
                "auto_failback: {partner} did not become ready in 10 minutes; use cluster.giveback"
            ),
        );
    };
    tokio::spawn(action::scope(scope_id, fut.instrument(span)));
}

/// Stops serving: every port group of the pools this controller owns to
/// standby. Only target calls, never LVM (which can block on the shelf).
fn self_fence(router: &RouterClient, me: &str, reason: String) {
    let router = router.clone();
    let me = me.to_string();
    tokio::spawn(async move {
        tracing::error!(%reason, "self-fence");
        let pools = tokio::time::timeout(
            Duration::from_secs(2),
            router.call("config.get", json!({"kind": "pool"})),
        )
        .await;
        let names: Vec<String> = match pools {
            Ok(Ok(v)) => v
                .pointer("/config/pool")
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .filter(|p| p.get("owner").and_then(Value::as_str) == Some(me.as_str()))
                        .filter_map(|p| p.get("name").and_then(Value::as_str).map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        for p in names {
            let r = tokio::time::timeout(
                Duration::from_secs(2),
                router.call(
                    "target.set_access_state",
                    json!({"pool": p, "state": "standby"}),
                ),
            )
            .await;
            if !matches!(r, Ok(Ok(_))) {
                tracing::error!(pool = %p, "self-fence: could not set standby");
            }
        }
    });
}

async fn config_lock_task(router: RouterClient, mut want: watch::Receiver<Option<String>>) {
    let mut held: Option<String> = None;
    let mut failures = 0u32;
    loop {
        let target = want.borrow_and_update().clone();
        if target != held {
            let r = match &target {
                Some(reason) => router.call("config.lock", json!({"reason": reason})).await,
                None => {
                    router
                        .call(
                            "config.unlock",
                            json!({"reason": "heartbeat: partner reachable again"}),
                        )
                        .await
                }
            };
            match r {
                Ok(_) => {
                    held = target;
                    failures = 0;
                }
                Err(e) => {
                    // Warn once per wish; config-keeper may be restarting.
                    if failures == 0 {
                        tracing::warn!(error = %e, "config lock call failed; retrying every second");
                    }
                    failures += 1;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        if want.changed().await.is_err() {
            return;
        }
    }
}

/// Feeds the pool counts (tie-break) and the recorded epoch every 10 s.
async fn pool_count_task(
    router: RouterClient,
    me: String,
    partner: String,
    tx: mpsc::UnboundedSender<Input>,
) {
    loop {
        // Two small reads (the cluster object, the pools) rather than the
        // whole state, which may be thousands of volumes.
        if let Ok(v) = router.call("config.get", json!({"kind": "cluster"})).await {
            if let Some(e) = v.pointer("/config/cluster/epoch").and_then(Value::as_u64) {
                if tx.send(Input::ConfigEpoch(e)).is_err() {
                    return;
                }
            }
        }
        if let Ok(v) = router.config_get_all(Some("pool")).await {
            if let Some(pools) = v.pointer("/config/pool").and_then(Value::as_array) {
                let count = |who: &str| {
                    pools
                        .iter()
                        .filter(|p| p.get("owner").and_then(Value::as_str) == Some(who))
                        .count()
                };
                let input = Input::Pools {
                    mine: count(&me),
                    partner: count(&partner),
                };
                if tx.send(input).is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// True when planned moves may run: both controllers up and in touch.
pub fn can_move(shared: &Shared) -> Result<(), String> {
    match shared.status.as_ref().map(|s| s.phase) {
        Some(Phase::Normal) => Ok(()),
        Some(p) => Err(format!(
            "heartbeat is {}: planned moves need both controllers in touch (normal)",
            p.name()
        )),
        None => Err("heartbeat is starting".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::sim::SimShelf;

    #[test]
    fn init_makes_the_area_once_and_refuses_disks_in_use() {
        let shelf = SimShelf::new(2);
        let d0 = shelf.disk(0, "A");
        assert_eq!(init_area(&d0, "c1", ["B", "A"]), Ok(InitOutcome::Created));
        assert_eq!(init_area(&d0, "c1", ["A", "B"]), Ok(InitOutcome::Already));
        let h = AreaHeader::decode(&d0.read_block(0).unwrap()[..]).unwrap();
        assert_eq!(h.controllers, ["A".to_string(), "B".to_string()]);
        let err = init_area(&d0, "c2", ["A", "B"]).unwrap_err();
        assert!(err.contains("cluster \"c1\""), "{err}");
        // Something else on the disk: refused, and left alone.
        let d1 = shelf.disk(1, "A");
        d1.write_block(8192, &[9u8; BLOCK]).unwrap();
        let err = init_area(&d1, "c1", ["A", "B"]).unwrap_err();
        assert!(err.contains("in use"), "{err}");
        assert_eq!(*d1.read_block(0).unwrap(), [0u8; BLOCK]);
    }

    fn entry(n: u64) -> Entry {
        Entry {
            kind: "takeover".into(),
            action_id: format!("{n:016x}"),
            started_unix_ms: n,
            epoch: n,
            from: "A".into(),
            to: "B".into(),
            pools: vec!["p1".into()],
            steps: Vec::new(),
            ok: true,
        }
    }

    #[test]
    fn the_timeline_survives_a_restart_and_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hb").join("timeline.json");
        let mut sh = Shared::with_timeline_file(path.clone());
        assert!(sh.timeline.is_empty());
        for n in 0..3 {
            sh.record(entry(n));
        }
        let mut again = Shared::with_timeline_file(path.clone());
        assert_eq!(again.timeline.len(), 3);
        assert_eq!(again.timeline[2]["epoch"], json!(2));
        for n in 3..(TIMELINE_LEN as u64 + 10) {
            again.record(entry(n));
        }
        let last = Shared::with_timeline_file(path.clone());
        assert_eq!(last.timeline.len(), TIMELINE_LEN);
        assert_eq!(
            last.timeline.back().unwrap()["epoch"],
            json!(TIMELINE_LEN as u64 + 9)
        );
        // A damaged file is not a reason to stop.
        std::fs::write(&path, b"{not json").unwrap();
        assert!(Shared::with_timeline_file(path).timeline.is_empty());
    }
}
