//! The partner state machine: what this controller concludes about its
//! partner, and what it must do about it.
//!
//! The driver feeds [`Input`]s with a monotonic time in milliseconds and
//! carries out the [`Effect`]s returned; nothing here does I/O or reads a
//! clock, so every rule is a table test (`tests/machine.rs`). The rules and
//! the reasons for each timing are in `docs/heartbeat.md`.
//!
//! Safety rests on three rules kept here:
//! - no takeover without a fence `Confirmed` by an agent (unless the
//!   administrator set `allow_unconfirmed`, and then only `disk_timeout`
//!   after the partner's slot last changed);
//! - the partner counts as dead only when its slot is frozen on a strict
//!   majority of the configured disks, and a controller that cannot write a
//!   strict majority while the interconnect is silent stops serving;
//! - the new epoch is on a majority of disks before any takeover step.

use crate::core::slot::{Ack, FenceMsg, Slot};
use crate::core::types::{Beat, Epoch, Phase, SHELF_UNCHECKED};
use serde::Serialize;

/// Fixed settings of one controller's machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// This controller's id.
    pub me: String,
    /// The partner's id.
    pub partner: String,
    /// Heartbeat disks configured (majorities are of this number, not of
    /// the disks that happen to answer).
    pub disks: usize,
    /// Interconnect links configured.
    pub links: usize,
    /// Fence agents, in the order they are tried.
    pub agents: Vec<String>,
    /// A silent link is down after this long; all of them: stage 2.
    pub ic_timeout_ms: u64,
    /// How often the own slot is written.
    pub disk_interval_ms: u64,
    /// The partner's slot frozen this long on a majority: fence.
    pub suspect_timeout_ms: u64,
    /// Longer wait used when nothing proves the partner's state: after our
    /// boot before the partner was ever seen alive, and past the partner's
    /// last slot change under `allow_unconfirmed`.
    pub disk_timeout_ms: u64,
    /// Take over on an unconfirmed fence (poison pill and watchdog only).
    pub allow_unconfirmed: bool,
    /// Extra delay before fencing for the controller that loses the
    /// tie-break (fewer pools; on equal counts, the greater id), when the
    /// partner could be deciding at the same time.
    pub tie_break_ms: u64,
    /// Wait before trying every fence agent again after all failed.
    pub fence_retry_ms: u64,
    /// Wait before running a failed takeover again.
    pub takeover_retry_ms: u64,
    /// Every front-end link down this long: move this controller's pools
    /// to the partner (when [`Settings::move_on_frontend_loss`]).
    pub frontend_grace_ms: u64,
    /// Move the pools when the front end is lost.
    pub move_on_frontend_loss: bool,
    /// No shelf disk readable here this long while the partner reads some:
    /// hand this controller's pools to the partner (when
    /// [`Settings::move_on_shelf_loss`]).
    pub shelf_grace_ms: u64,
    /// Hand the pools over when this controller alone loses the shelf.
    pub move_on_shelf_loss: bool,
    /// targets not serving here this long (`target.status` unanswered) while
    /// the partner's is: hand this controller's pools to the partner (when
    /// [`Settings::move_on_targets_loss`]).
    pub targets_grace_ms: u64,
    /// Hand the pools over when this controller's targets stops serving.
    pub move_on_targets_loss: bool,
}

impl Settings {
    /// Defaults of `docs/heartbeat.md` for controller `me` with partner
    /// `partner`, three disks, two links and the given agents.
    pub fn new(me: &str, partner: &str, agents: &[&str]) -> Settings {
        Settings {
            me: me.into(),
            partner: partner.into(),
            disks: 3,
            links: 2,
            agents: agents.iter().map(|a| (*a).to_string()).collect(),
            ic_timeout_ms: 1000,
            disk_interval_ms: 200,
            suspect_timeout_ms: 1500,
            disk_timeout_ms: 10_000,
            allow_unconfirmed: false,
            tie_break_ms: 1000,
            fence_retry_ms: 5000,
            takeover_retry_ms: 5000,
            frontend_grace_ms: 3000,
            move_on_frontend_loss: true,
            shelf_grace_ms: 2000,
            move_on_shelf_loss: true,
            targets_grace_ms: 30_000,
            move_on_targets_loss: true,
        }
    }

    /// A strict majority of the configured disks.
    pub fn majority(&self) -> usize {
        self.disks / 2 + 1
    }
}

/// How a fence agent's attempt ended, as far as the machine cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FenceResult {
    /// The partner provably cannot write to the shelf.
    Confirmed,
    /// Done, but nothing proves it (poison pill).
    Unconfirmed,
    /// The agent could not act.
    Failed,
}

/// What one read of the partner's slot on one disk gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PartnerRead {
    /// A valid slot of the partner.
    Slot(Slot),
    /// The block was never written (a fresh area): readable, and frozen.
    Blank,
    /// The read failed, or the block is torn, foreign or corrupt.
    Error(String),
}

/// Something that happened, fed to [`Machine::step`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// Time passed (the driver ticks every `hb_interval`).
    Tick,
    /// An authenticated beat arrived on link `link`.
    Beat {
        /// The link index.
        link: usize,
        /// Its content.
        beat: Beat,
    },
    /// The write of own slot number `counter` to disk `disk` finished.
    SlotWritten {
        /// Disk index.
        disk: usize,
        /// The counter of the slot written.
        counter: u64,
        /// True when it is on the medium.
        ok: bool,
    },
    /// The partner's slot was read from disk `disk`.
    PartnerSlot {
        /// Disk index.
        disk: usize,
        /// What it held.
        read: PartnerRead,
    },
    /// A fence agent finished.
    FenceDone {
        /// The agent's name.
        agent: String,
        /// Its verdict.
        result: FenceResult,
        /// What it did or why it failed (for the alert).
        detail: String,
    },
    /// The takeover under `epoch` finished.
    TakeoverDone {
        /// The epoch it ran under.
        epoch: Epoch,
    },
    /// The takeover failed as a whole (pools that failed alone are alerts
    /// of the orchestration, not this).
    TakeoverFailed {
        /// Why.
        reason: String,
    },
    /// The administrator holds (`true`) or releases every takeover.
    Maintenance(bool),
    /// Whether any front-end link has carrier (sent on change; never sent
    /// when no front end is configured).
    Frontend {
        /// At least one front-end link is up.
        up: bool,
    },
    /// The move of this controller's pools for a lost front end finished.
    FrontendMoveDone {
        /// The pools are on the partner.
        ok: bool,
        /// Why it did not happen, for the alert.
        reason: String,
    },
    /// Whether targets answers `target.status` here and on the
    /// partner (sent on change of either).
    Targets {
        /// This controller's targets serves.
        here: bool,
        /// The partner's targets serves (`None`: not answered, e.g. the
        /// peer link is down).
        partner: Option<bool>,
    },
    /// How many of the configured shelf disks this controller can read
    /// (sent on change; never sent when the shelf is not watched).
    Shelf {
        /// Disks that answered a read.
        readable: u8,
    },
    /// The cluster epoch recorded in the configuration, so a new epoch is
    /// always above it.
    ConfigEpoch(u64),
    /// Pools owned by each side, for the tie-break.
    Pools {
        /// Owned by this controller.
        mine: usize,
        /// Owned by the partner.
        partner: usize,
    },
}

/// Severity of an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Something recovered or progressed.
    Info,
    /// Redundancy lost; nothing to do yet.
    Warning,
    /// Service at stake: a person should look.
    Critical,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Write this slot to every heartbeat disk.
    WriteSlot(Slot),
    /// Lock configuration changes with this reason.
    LockConfig {
        /// Shown to whoever tries to change the configuration.
        reason: String,
    },
    /// Lift the configuration lock.
    UnlockConfig,
    /// Raise an alert.
    Alert {
        /// Severity.
        level: Level,
        /// What happened and why it matters.
        message: String,
    },
    /// Run this fence agent against the partner.
    FencePartner {
        /// Agent name.
        agent: String,
        /// The controller to fence.
        target: String,
    },
    /// The partner is fenced and the epoch on a majority: take its pools.
    StartTakeover {
        /// The new epoch to record with the new owners.
        epoch: Epoch,
    },
    /// Stop serving now: port groups standby, nothing imported, no LVM.
    SelfFence {
        /// Why.
        reason: String,
    },
    /// Every front-end link is down past the grace time: move this
    /// controller's pools to the partner (a planned failover) if the
    /// partner's front end is up.
    MoveForFrontend,
    /// Pet the watchdog.
    PetWatchdog,
    /// Stop petting the watchdog for good so it fires.
    StopWatchdog,
    /// This controller became a member (normal) or runs the cluster alone
    /// (survivor): the fence agents put its own part in place (the PR
    /// agent registers its key). Never asked in any other phase, so a
    /// fenced controller that keeps running never undoes its fence.
    JoinFence,
    /// The phase changed (published as a `cluster.state` event).
    StateChanged {
        /// Before.
        from: Phase,
        /// After.
        to: Phase,
        /// The epoch now.
        epoch: Epoch,
    },
}

/// What is known about the partner through one disk.
#[derive(Debug, Clone, Default)]
struct DiskView {
    last_read_ok: Option<u64>,
    /// (incarnation, counter) last read; `None` for a blank block.
    key: Option<(u64, u64)>,
    /// When `key` last changed (first read counts as a change).
    changed_at: u64,
    slot: Option<Slot>,
    last_error: Option<String>,
}

/// The fence run in progress.
#[derive(Debug, Clone)]
struct FenceRun {
    epoch: Epoch,
    next: usize,
    unconfirmed: bool,
    retry_at: Option<u64>,
    unconfirmed_until: Option<u64>,
}

/// Where the move of the pools for a lost front end stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FrontendMove {
    /// Nothing asked.
    Idle,
    /// Asked; waiting for [`Input::FrontendMoveDone`].
    Running,
    /// Failed; ask again at this time.
    RetryAt(u64),
    /// Done for this outage (the front end must come back first).
    Done,
}

/// The state machine of one controller.
#[derive(Debug, Clone)]
pub struct Machine {
    s: Settings,
    phase: Phase,
    phase_since: u64,
    boot_ms: u64,
    incarnation: u64,
    epoch: Epoch,
    counter: u64,
    last_write_emit: Option<u64>,
    dirty: bool,
    link_last: Vec<Option<u64>>,
    link_up: Vec<bool>,
    partner_incarnation: Option<u64>,
    partner_state: Option<Phase>,
    partner_seen_alive: bool,
    writes: Vec<(Option<u64>, u64)>,
    reads: Vec<DiskView>,
    /// Per heartbeat disk: usable (own slot written and the partner's read
    /// within `suspect_timeout`) at the last evaluation, for the alerts.
    disk_up: Vec<bool>,
    /// A strict majority of the disks was usable at the last evaluation.
    majority_up: bool,
    /// Shelf disks readable here (`None`: not watched, or not reported).
    shelf: Option<u8>,
    /// Since when no shelf disk is readable here.
    shelf_lost_since: Option<u64>,
    /// Shelf disks the partner reads, from its beats.
    partner_shelf: Option<u8>,
    /// targets serves here (`None`: not reported yet).
    targets_up: Option<bool>,
    /// Since when targets has not served here (once it served since start).
    targets_down_since: Option<u64>,
    /// The partner's targets serves, as last asked.
    partner_targets: Option<bool>,
    /// Front-end carrier (`None`: not watched, or not reported yet).
    frontend_up: Option<bool>,
    /// When every front-end link went down.
    frontend_down_since: Option<u64>,
    frontend_move: FrontendMove,
    /// A front-end link had carrier since start: before that a link still
    /// coming up at boot is not a lost front end.
    frontend_seen_up: bool,
    locked: bool,
    maintenance: bool,
    held_alerted: bool,
    pools: (usize, usize),
    fence_out: Option<FenceMsg>,
    ack_out: Option<Ack>,
    fencing: Option<FenceRun>,
    fenced_incarnation: Option<u64>,
    pending_epoch_from: Option<u64>,
    takeover_running: bool,
    takeover_retry_at: Option<u64>,
    abandoned: bool,
    booting_alerted: bool,
    last_detection_ms: Option<u64>,
    /// When the last input was stepped (the stall guard's reference).
    last_step: u64,
    /// Stalls of this machine's own loop seen since boot.
    stalls: u64,
}

/// A snapshot for `cluster.status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    /// This controller.
    pub me: String,
    /// The partner.
    pub partner: String,
    /// Current phase.
    pub phase: Phase,
    /// Milliseconds in it.
    pub phase_ms: u64,
    /// Current epoch.
    pub epoch: Epoch,
    /// Per link: milliseconds since the last beat (`None`: never).
    pub link_age_ms: Vec<Option<u64>>,
    /// Per disk: milliseconds since the own slot was last written.
    pub write_age_ms: Vec<Option<u64>>,
    /// Per disk: milliseconds since the partner's slot last changed.
    pub partner_slot_age_ms: Vec<Option<u64>>,
    /// Per disk: the last read error, if the last read failed.
    pub read_errors: Vec<Option<String>>,
    /// The partner's last known phase.
    pub partner_phase: Option<Phase>,
    /// Configuration locked by heartbeat.
    pub config_locked: bool,
    /// Takeovers held by the administrator.
    pub maintenance: bool,
    /// The fence agents, in order.
    pub fence_agents: Vec<String>,
    /// A fence message this controller wrote for the partner.
    pub fence_sent: Option<Epoch>,
    /// Of the last fence started: milliseconds from the partner's last
    /// sign of life (beat or slot change) to the fence start.
    pub last_detection_ms: Option<u64>,
    /// Stalls of this controller's own heartbeat loop since it started
    /// (see [`Machine::step`]).
    pub stalls: u64,
    /// Any front-end link up (`None`: no front end watched).
    pub frontend_up: Option<bool>,
    /// Shelf disks readable here (`None`: the shelf is not watched).
    pub shelf_readable: Option<u8>,
    /// Shelf disks the partner reads, from its beats (`None`: unknown or
    /// not watched there).
    pub partner_shelf_readable: Option<u8>,
    /// targets answers here (`None`: not asked yet).
    pub targets_serving: Option<bool>,
    /// The partner's targets answers (`None`: unknown).
    pub partner_targets_serving: Option<bool>,
}

fn since(now: u64, t: u64) -> u64 {
    now.saturating_sub(t)
}

impl Machine {
    /// A machine that booted at `now` as incarnation `incarnation` with the
    /// last epoch it knows.
    pub fn new(s: Settings, now: u64, incarnation: u64, epoch: Epoch) -> Machine {
        let disks = s.disks;
        let links = s.links;
        Machine {
            s,
            phase: Phase::Booting,
            phase_since: now,
            boot_ms: now,
            incarnation,
            epoch,
            counter: 0,
            last_write_emit: None,
            dirty: true,
            link_last: vec![None; links],
            link_up: vec![false; links],
            partner_incarnation: None,
            partner_state: None,
            partner_seen_alive: false,
            writes: vec![(None, 0); disks],
            reads: vec![DiskView::default(); disks],
            disk_up: vec![true; disks],
            majority_up: true,
            shelf: None,
            shelf_lost_since: None,
            partner_shelf: None,
            targets_up: None,
            targets_down_since: None,
            partner_targets: None,
            frontend_up: None,
            frontend_down_since: None,
            frontend_move: FrontendMove::Idle,
            frontend_seen_up: false,
            locked: false,
            maintenance: false,
            held_alerted: false,
            pools: (0, 0),
            fence_out: None,
            ack_out: None,
            fencing: None,
            fenced_incarnation: None,
            pending_epoch_from: None,
            takeover_running: false,
            takeover_retry_at: None,
            abandoned: false,
            booting_alerted: false,
            last_detection_ms: None,
            last_step: now,
            stalls: 0,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The current epoch.
    pub fn epoch(&self) -> &Epoch {
        &self.epoch
    }

    /// This boot's incarnation.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// The settings.
    pub fn settings(&self) -> &Settings {
        &self.s
    }

    /// True while configuration is locked by heartbeat.
    pub fn config_locked(&self) -> bool {
        self.locked
    }

    /// A beat with this controller's current content and sequence `seq`.
    pub fn beat(&self, seq: u64) -> Beat {
        Beat {
            controller: self.s.me.clone(),
            incarnation: self.incarnation,
            epoch: self.epoch.clone(),
            seq,
            state: self.phase.code(),
            shelf: self.shelf.unwrap_or(SHELF_UNCHECKED),
        }
    }

    /// A snapshot for status.
    pub fn status(&self, now: u64) -> Status {
        Status {
            me: self.s.me.clone(),
            partner: self.s.partner.clone(),
            phase: self.phase,
            phase_ms: since(now, self.phase_since),
            epoch: self.epoch.clone(),
            link_age_ms: self
                .link_last
                .iter()
                .map(|t| t.map(|t| since(now, t)))
                .collect(),
            write_age_ms: self
                .writes
                .iter()
                .map(|(t, _)| t.map(|t| since(now, t)))
                .collect(),
            partner_slot_age_ms: self
                .reads
                .iter()
                .map(|d| d.last_read_ok.map(|_| since(now, d.changed_at)))
                .collect(),
            read_errors: self.reads.iter().map(|d| d.last_error.clone()).collect(),
            partner_phase: self.partner_state,
            config_locked: self.locked,
            maintenance: self.maintenance,
            fence_agents: self.s.agents.clone(),
            fence_sent: self.fence_out.as_ref().map(|f| f.epoch.clone()),
            last_detection_ms: self.last_detection_ms,
            stalls: self.stalls,
            frontend_up: self.frontend_up,
            shelf_readable: self.shelf,
            partner_shelf_readable: self.partner_shelf,
            targets_serving: self.targets_up,
            partner_targets_serving: self.partner_targets,
        }
    }

    /// Feeds one input at monotonic time `now` (ms); returns what to do.
    ///
    /// The driver steps at least every beat interval. A longer gap means
    /// this controller's own loop (or its whole VM) did not run: what was
    /// not seen meanwhile is not news about the partner or the disks, and
    /// the inputs queued during the stall arrive one by one after it. So the
    /// gap is taken out of every "last seen" time first; without that, the
    /// first queued slot write processed after a 3 s stall found the links
    /// and the other disks 3 s old and self-fenced a healthy controller.
    pub fn step(&mut self, now: u64, input: Input) -> Vec<Effect> {
        let mut fx = Vec::new();
        let gap = since(now, self.last_step);
        self.last_step = self.last_step.max(now);
        if gap > self.stall_ms() {
            self.forget_stall(gap);
            alert(
                &mut fx,
                Level::Warning,
                format!("heartbeat loop stalled {gap} ms: timeouts resume from now"),
            );
        }
        let tick = input == Input::Tick;
        match input {
            Input::Tick => {}
            Input::Beat { link, beat } => self.on_beat(now, link, beat),
            Input::SlotWritten { disk, counter, ok } => {
                if let Some(w) = self.writes.get_mut(disk) {
                    if ok && counter >= w.1 {
                        *w = (Some(now), counter);
                    }
                }
            }
            Input::PartnerSlot { disk, read } => self.on_partner_slot(now, disk, read),
            Input::FenceDone {
                agent,
                result,
                detail,
            } => self.on_fence_done(now, &agent, result, &detail, &mut fx),
            Input::TakeoverDone { epoch } => {
                if self.phase == Phase::TakingOver && epoch == self.epoch {
                    self.takeover_running = false;
                    self.set_lock(false, "", &mut fx);
                    alert(
                        &mut fx,
                        Level::Info,
                        format!(
                            "takeover of {}'s pools done under epoch {}",
                            self.s.partner, epoch.counter
                        ),
                    );
                    self.enter(now, Phase::Survivor, &mut fx);
                }
            }
            Input::TakeoverFailed { reason } => {
                if self.phase == Phase::TakingOver && self.takeover_running {
                    self.takeover_running = false;
                    self.takeover_retry_at = Some(now + self.s.takeover_retry_ms);
                    alert(
                        &mut fx,
                        Level::Critical,
                        format!(
                            "takeover failed ({reason}); running it again in {} ms",
                            self.s.takeover_retry_ms
                        ),
                    );
                }
            }
            Input::Maintenance(on) => {
                if self.maintenance != on {
                    self.maintenance = on;
                    self.held_alerted = false;
                    let what = if on { "held" } else { "allowed again" };
                    alert(
                        &mut fx,
                        Level::Info,
                        format!("maintenance: takeovers {what}"),
                    );
                }
            }
            Input::Pools { mine, partner } => self.pools = (mine, partner),
            Input::Frontend { up } => self.on_frontend(now, up, &mut fx),
            Input::Shelf { readable } => self.on_shelf(now, readable, &mut fx),
            Input::Targets { here, partner } => self.on_targets(now, here, partner, &mut fx),
            Input::FrontendMoveDone { ok, reason } => {
                if self.frontend_move == FrontendMove::Running {
                    if ok {
                        self.frontend_move = FrontendMove::Done;
                        alert(
                            &mut fx,
                            Level::Info,
                            format!(
                                "front end lost: this controller's pools now run on {}",
                                self.s.partner
                            ),
                        );
                    } else {
                        let retry = self.s.takeover_retry_ms;
                        self.frontend_move = FrontendMove::RetryAt(now + retry);
                        alert(
                            &mut fx,
                            Level::Critical,
                            format!(
                                "front end lost but the pools did not move to {}: {reason}; trying again in {retry} ms",
                                self.s.partner
                            ),
                        );
                    }
                }
            }
            Input::ConfigEpoch(counter) => {
                if counter > self.epoch.counter && self.adopts_epochs() {
                    self.epoch.counter = counter;
                }
            }
        }
        self.evaluate(now, &mut fx);
        self.housekeeping(now, tick, &mut fx);
        fx
    }

    /// A gap between two steps longer than this is a stall of our own
    /// loop: half the interconnect timeout, several beat intervals.
    fn stall_ms(&self) -> u64 {
        self.s.ic_timeout_ms / 2
    }

    /// Moves every "last seen" time `gap` later, as if the stall had not
    /// happened: absence during it proves nothing. Timers of our own
    /// actions (fence retries, takeover retries) are left as they are.
    fn forget_stall(&mut self, gap: u64) {
        self.stalls += 1;
        self.boot_ms += gap;
        for t in self.link_last.iter_mut().flatten() {
            *t += gap;
        }
        for (t, _) in &mut self.writes {
            if let Some(t) = t {
                *t += gap;
            }
        }
        for d in &mut self.reads {
            if let Some(t) = &mut d.last_read_ok {
                *t += gap;
            }
            d.changed_at += gap;
        }
    }

    /// The epoch is cluster-wide: follow the partner's while not in the
    /// middle of making a new one (fencing, taking over) or owning it.
    fn adopts_epochs(&self) -> bool {
        matches!(
            self.phase,
            Phase::Booting | Phase::Normal | Phase::Waiting | Phase::Fenced
        )
    }

    fn on_beat(&mut self, now: u64, link: usize, beat: Beat) {
        if beat.controller != self.s.partner {
            return;
        }
        if let Some(t) = self.link_last.get_mut(link) {
            *t = Some(now);
        }
        self.mark_alive(now);
        self.partner_incarnation = Some(beat.incarnation);
        self.partner_state = Phase::from_code(beat.state);
        self.partner_shelf = (beat.shelf != SHELF_UNCHECKED).then_some(beat.shelf);
        if beat.epoch > self.epoch && self.adopts_epochs() {
            self.epoch = beat.epoch;
        }
    }

    fn on_partner_slot(&mut self, now: u64, disk: usize, read: PartnerRead) {
        let partner = self.s.partner.clone();
        let ic_up = self.ic_up(now);
        let Some(d) = self.reads.get_mut(disk) else {
            return;
        };
        let (key, slot) = match read {
            PartnerRead::Slot(slot) if slot.controller == partner => {
                (Some((slot.incarnation, slot.counter)), Some(slot))
            }
            PartnerRead::Slot(slot) => {
                d.last_error = Some(format!(
                    "slot holds controller {:?}, expected {partner:?}",
                    slot.controller
                ));
                return;
            }
            PartnerRead::Blank => (None, None),
            PartnerRead::Error(e) => {
                d.last_error = Some(e);
                return;
            }
        };
        let first = d.last_read_ok.is_none();
        d.last_read_ok = Some(now);
        d.last_error = None;
        let changed = first || d.key != key;
        if changed {
            d.key = key;
            d.changed_at = now;
        }
        let slot_for_state = slot.clone();
        d.slot = slot;
        if changed && !first {
            self.mark_alive(now);
        }
        let slot = slot_for_state;
        if let Some(slot) = &slot {
            if slot.epoch > self.epoch && self.adopts_epochs() {
                self.epoch = slot.epoch.clone();
            }
            // While beats arrive they are the fresher word on the partner.
            if self.partner_incarnation.is_none() || !ic_up {
                self.partner_incarnation = Some(slot.incarnation);
                self.partner_state = Some(slot.state);
            }
        }
    }

    /// The partner showed life. The first time, every disk's frozen clock
    /// starts now: before this the partner may have been booting, and its
    /// other disks are read in the same round.
    fn mark_alive(&mut self, now: u64) {
        if !self.partner_seen_alive {
            self.partner_seen_alive = true;
            for d in &mut self.reads {
                d.changed_at = d.changed_at.max(now);
            }
        }
    }

    fn on_fence_done(
        &mut self,
        now: u64,
        agent: &str,
        result: FenceResult,
        detail: &str,
        fx: &mut Vec<Effect>,
    ) {
        if self.phase != Phase::Fencing {
            return;
        }
        let Some(run) = self.fencing.as_mut() else {
            return;
        };
        // Only the answer of the agent we are waiting for counts.
        let current = run.next.checked_sub(1).and_then(|i| self.s.agents.get(i));
        if current.map(String::as_str) != Some(agent) || run.retry_at.is_some() {
            return;
        }
        match result {
            FenceResult::Confirmed => {
                let epoch = run.epoch.clone();
                alert(
                    fx,
                    Level::Info,
                    format!("{} fenced by {agent}: {detail}", self.s.partner),
                );
                self.begin_takeover(now, epoch, fx);
            }
            FenceResult::Unconfirmed | FenceResult::Failed => {
                if result == FenceResult::Unconfirmed {
                    run.unconfirmed = true;
                } else {
                    fx.push(Effect::Alert {
                        level: Level::Warning,
                        message: format!("fence agent {agent} failed: {detail}"),
                    });
                }
                self.next_agent(now, fx);
            }
        }
    }

    /// Runs the next agent, or decides what to do when none is left.
    fn next_agent(&mut self, now: u64, fx: &mut Vec<Effect>) {
        let frozen = self.frozen_since(now);
        let Some(run) = self.fencing.as_mut() else {
            return;
        };
        if let Some(agent) = self.s.agents.get(run.next) {
            run.next += 1;
            fx.push(Effect::FencePartner {
                agent: agent.clone(),
                target: self.s.partner.clone(),
            });
            return;
        }
        if self.s.allow_unconfirmed {
            // The poison pill is always written: under this policy it is
            // enough once the partner's watchdog must have fired.
            let last_change = frozen.unwrap_or(now);
            let until = last_change + self.s.disk_timeout_ms;
            run.unconfirmed_until = Some(until);
            fx.push(Effect::Alert {
                level: Level::Warning,
                message: format!(
                    "no fence agent confirmed; allow_unconfirmed: taking over {} ms after {}'s last slot change",
                    self.s.disk_timeout_ms, self.s.partner
                ),
            });
        } else {
            run.retry_at = Some(now + self.s.fence_retry_ms);
            fx.push(Effect::Alert {
                level: Level::Critical,
                message: format!(
                    "every fence agent failed on {}: no takeover without a confirmed fence (hosts' I/O stays queued); trying again in {} ms",
                    self.s.partner, self.s.fence_retry_ms
                ),
            });
        }
    }

    fn begin_takeover(&mut self, now: u64, epoch: Epoch, fx: &mut Vec<Effect>) {
        self.fencing = None;
        // The partner is fenced: the partition is over, and the takeover
        // must record the new owners without waiting for it.
        self.set_lock(false, "", fx);
        self.epoch = epoch;
        // The next slot written carries the new epoch; takeover starts once
        // a majority has it.
        self.pending_epoch_from = Some(self.counter + 1);
        self.enter(now, Phase::TakingOver, fx);
    }

    fn ic_up(&self, now: u64) -> bool {
        self.link_last
            .iter()
            .any(|t| t.is_some_and(|t| since(now, t) < self.s.ic_timeout_ms))
    }

    /// Own slot written on a strict majority within `suspect_timeout`
    /// (counting from boot before the first write).
    fn writes_fresh(&self, now: u64) -> bool {
        let fresh = self
            .writes
            .iter()
            .filter(|(t, _)| since(now, t.unwrap_or(self.boot_ms)) < self.s.suspect_timeout_ms)
            .count();
        fresh >= self.s.majority()
    }

    fn fresh_reads(&self, now: u64) -> impl Iterator<Item = &DiskView> {
        let window = self.s.suspect_timeout_ms;
        self.reads
            .iter()
            .filter(move |d| d.last_read_ok.is_some_and(|t| since(now, t) < window))
    }

    /// The time since which the partner's slot has not changed on a strict
    /// majority of the configured disks (`None`: no majority readable).
    fn frozen_since(&self, now: u64) -> Option<u64> {
        let mut changed: Vec<u64> = self.fresh_reads(now).map(|d| d.changed_at).collect();
        changed.sort_unstable();
        changed.get(self.s.majority() - 1).copied()
    }

    /// The partner says `Fenced` in its slot on a strict majority.
    fn partner_reports_fenced(&self, now: u64) -> bool {
        self.fresh_reads(now)
            .filter(|d| d.slot.as_ref().is_some_and(|s| s.state == Phase::Fenced))
            .count()
            >= self.s.majority()
    }

    /// A fence message for us on any disk, not acknowledged for this boot.
    fn fence_for_me(&self) -> Option<FenceMsg> {
        self.reads.iter().find_map(|d| {
            let slot = d.slot.as_ref()?;
            let f = slot.fence.as_ref().filter(|f| f.target == self.s.me)?;
            let acked = slot.ack.as_ref().is_some_and(|a| {
                a.target == self.s.me && a.incarnation == self.incarnation && a.epoch == f.epoch
            });
            (!acked).then(|| f.clone())
        })
    }

    fn loses_tie_break(&self) -> bool {
        let (mine, theirs) = self.pools;
        mine < theirs || (mine == theirs && self.s.me > self.s.partner)
    }

    /// Whether the partner could be deciding to fence us at this moment,
    /// the only case the tie-break's delay is for: it was never seen alive
    /// since our boot (it may be booting too), or its frozen slot says it
    /// was not in `Normal` (it had lost the interconnect too, or was
    /// fencing, or booting). A slot that froze in `Normal` stopped while
    /// the partner still heard us: it had not started counting our silence,
    /// and if it is alive at all, its next look at the disks finds our slot
    /// advancing (or, its own writes stuck, it fences itself first). The
    /// delay would only lengthen every plain controller loss.
    fn partner_may_decide(&self, now: u64) -> bool {
        !self.partner_seen_alive
            || self
                .fresh_reads(now)
                .any(|d| d.slot.as_ref().is_none_or(|s| s.state != Phase::Normal))
    }

    fn enter(&mut self, now: u64, to: Phase, fx: &mut Vec<Effect>) {
        if self.phase == to {
            return;
        }
        fx.push(Effect::StateChanged {
            from: self.phase,
            to,
            epoch: self.epoch.clone(),
        });
        self.phase = to;
        self.phase_since = now;
        self.held_alerted = false;
        self.dirty = true;
        if matches!(to, Phase::Normal | Phase::Survivor) {
            fx.push(Effect::JoinFence);
        }
    }

    fn set_lock(&mut self, on: bool, reason: &str, fx: &mut Vec<Effect>) {
        if self.locked == on {
            return;
        }
        self.locked = on;
        fx.push(if on {
            Effect::LockConfig {
                reason: reason.into(),
            }
        } else {
            Effect::UnlockConfig
        });
    }

    fn self_fence(&mut self, now: u64, reason: String, fx: &mut Vec<Effect>) {
        self.fencing = None;
        self.pending_epoch_from = None;
        self.takeover_running = false;
        fx.push(Effect::SelfFence {
            reason: reason.clone(),
        });
        if !self.abandoned {
            self.abandoned = true;
            fx.push(Effect::StopWatchdog);
        }
        alert(fx, Level::Critical, format!("self-fence: {reason}"));
        self.enter(now, Phase::Fenced, fx);
    }

    fn evaluate(&mut self, now: u64, fx: &mut Vec<Effect>) {
        self.link_edges(now, fx);
        self.disk_edges(now, fx);
        self.frontend_check(now, fx);
        let ic_up = self.ic_up(now);

        if self.phase != Phase::Fenced {
            if let Some(f) = self.fence_for_me() {
                let reason = format!(
                    "{} wrote a fence message for {} (epoch {})",
                    f.epoch.controller, self.s.me, f.epoch.counter
                );
                if self.phase == Phase::Booting {
                    // After a boot nothing is served yet, but after a
                    // restart of this daemon alone the pools may still be:
                    // stop serving them, without resetting (no reboot loop).
                    alert(fx, Level::Critical, format!("{reason}: staying fenced"));
                    fx.push(Effect::SelfFence {
                        reason: format!("{reason} (found at start)"),
                    });
                    self.enter(now, Phase::Fenced, fx);
                } else {
                    self.self_fence(now, reason, fx);
                }
                return;
            }
        }
        let serving = !matches!(self.phase, Phase::Booting | Phase::Fenced);
        if serving && !ic_up && !self.writes_fresh(now) {
            let reason = format!(
                "own slot not written on {} of {} heartbeat disks while the interconnect is silent",
                self.s.majority(),
                self.s.disks
            );
            self.self_fence(now, reason, fx);
            return;
        }

        if let Some(reason) = self
            .shelf_lost_alone(now, ic_up)
            .or_else(|| self.targets_lost_alone(now, ic_up))
        {
            if !self.held_by_maintenance(fx, || format!("{reason}; held by maintenance")) {
                self.self_fence(now, reason, fx);
                return;
            }
        }

        match self.phase {
            Phase::Booting => self.eval_booting(now, ic_up, fx),
            Phase::Normal => {
                if ic_up {
                    self.partner_stopped_serving(now, fx);
                } else {
                    alert(
                        fx,
                        Level::Critical,
                        format!(
                            "interconnect to {} silent on every link: checking its disk slot",
                            self.s.partner
                        ),
                    );
                    self.enter_waiting(now, fx);
                    self.eval_waiting(now, fx);
                }
            }
            Phase::Waiting => {
                if ic_up {
                    alert(
                        fx,
                        Level::Info,
                        format!("interconnect to {} back", self.s.partner),
                    );
                    self.set_lock(false, "", fx);
                    self.enter(now, Phase::Normal, fx);
                } else {
                    self.eval_waiting(now, fx);
                }
            }
            Phase::Fencing => self.eval_fencing(now, fx),
            Phase::TakingOver => self.eval_taking_over(now, fx),
            Phase::Survivor => self.eval_survivor(now, fx),
            Phase::Fenced => self.eval_fenced(now, ic_up, fx),
        }
    }

    fn link_edges(&mut self, now: u64, fx: &mut Vec<Effect>) {
        for i in 0..self.link_up.len() {
            let up = self
                .link_last
                .get(i)
                .copied()
                .flatten()
                .is_some_and(|t| since(now, t) < self.s.ic_timeout_ms);
            if up != self.link_up[i] {
                self.link_up[i] = up;
                let (level, what) = if up {
                    (Level::Info, "up")
                } else {
                    (Level::Warning, "down")
                };
                alert(
                    fx,
                    level,
                    format!("interconnect link {i} to {} {what}", self.s.partner),
                );
            }
        }
    }

    /// Alerts when a heartbeat disk stops being usable or comes back, and
    /// when fewer than a strict majority are usable: with the interconnect
    /// up nothing is decided on disk, but an administrator must know before
    /// the interconnect fails that membership could then not be proven.
    fn disk_edges(&mut self, now: u64, fx: &mut Vec<Effect>) {
        let window = self.s.suspect_timeout_ms;
        for i in 0..self.disk_up.len() {
            let wrote = self
                .writes
                .get(i)
                .is_some_and(|(t, _)| since(now, t.unwrap_or(self.boot_ms)) < window);
            let view = self.reads.get(i);
            let read =
                view.is_some_and(|d| since(now, d.last_read_ok.unwrap_or(self.boot_ms)) < window);
            let up = wrote && read;
            if up == self.disk_up[i] {
                continue;
            }
            self.disk_up[i] = up;
            if up {
                alert(fx, Level::Info, format!("heartbeat disk {i} usable again"));
            } else {
                let why = match (wrote, view.and_then(|d| d.last_error.clone())) {
                    (_, Some(e)) => format!("reading {}'s slot fails: {e}", self.s.partner),
                    (false, None) => "own slot writes fail or hang".to_string(),
                    (true, None) => format!("no read of {}'s slot", self.s.partner),
                };
                alert(
                    fx,
                    Level::Warning,
                    format!("heartbeat disk {i} not usable: {why}"),
                );
            }
        }
        let usable = self.disk_up.iter().filter(|u| **u).count();
        let majority = usable >= self.s.majority();
        if majority != self.majority_up {
            self.majority_up = majority;
            if majority {
                alert(
                    fx,
                    Level::Info,
                    format!("{usable} of {} heartbeat disks usable again", self.s.disks),
                );
            } else {
                alert(
                    fx,
                    Level::Critical,
                    format!(
                        "only {usable} of {} heartbeat disks usable: if the interconnect failed now, no takeover could be proven",
                        self.s.disks
                    ),
                );
            }
        }
    }

    fn on_shelf(&mut self, now: u64, readable: u8, fx: &mut Vec<Effect>) {
        let was = self.shelf.replace(readable);
        match (was.unwrap_or(SHELF_UNCHECKED), readable) {
            (w, 0) if w != 0 => {
                self.shelf_lost_since = Some(now);
                alert(
                    fx,
                    Level::Critical,
                    "no shelf disk readable from this controller".to_string(),
                );
            }
            (0, n) if n > 0 => {
                self.shelf_lost_since = None;
                alert(fx, Level::Info, format!("shelf readable again ({n} disks)"));
            }
            _ => {}
        }
    }

    fn on_targets(&mut self, now: u64, here: bool, partner: Option<bool>, fx: &mut Vec<Effect>) {
        self.partner_targets = partner;
        let was = self.targets_up.replace(here);
        match (was, here) {
            // Not serving since start is a daemon still starting: only a
            // targets that served and stopped counts.
            (Some(true), false) => {
                self.targets_down_since = Some(now);
                alert(
                    fx,
                    Level::Critical,
                    "targets on this controller stopped serving (target.status unanswered): its port groups cannot change".to_string(),
                );
            }
            (Some(false), true) => {
                self.targets_down_since = None;
                alert(fx, Level::Info, "targets serving again".to_string());
            }
            _ => {}
        }
    }

    /// This controller's targets has not served for `targets_grace` (a
    /// crash loop, a hang) while the partner's does: its port groups can
    /// no longer follow a move, so it stops and the partner, which serves,
    /// fences it and takes its pools. Only in `normal`, with beats and the
    /// partner's answer current: never when both are down (the kernel
    /// still serves what was built, and a stop would end that too).
    fn targets_lost_alone(&self, now: u64, ic_up: bool) -> Option<String> {
        let since_ms = since(now, self.targets_down_since?);
        (self.s.move_on_targets_loss
            && ic_up
            && self.phase == Phase::Normal
            && self.pools.0 > 0
            && self.partner_targets == Some(true)
            && since_ms >= self.s.targets_grace_ms)
            .then(|| {
                format!(
                    "targets not serving here for {since_ms} ms while {}'s serves: \
                     stopping here so that {} fences this controller and takes its pools",
                    self.s.partner, self.s.partner
                )
            })
    }

    /// This controller alone lost the shelf for `shelf_grace`: it can serve
    /// none of its pools, and the partner, which still reads the shelf,
    /// can. Judged only while beats arrive, so the partner's count is
    /// current; never when both lost it (a shelf outage moves nothing).
    fn shelf_lost_alone(&self, now: u64, ic_up: bool) -> Option<String> {
        let since_ms = since(now, self.shelf_lost_since?);
        let partner = self.partner_shelf.filter(|n| *n > 0)?;
        (self.s.move_on_shelf_loss
            && ic_up
            && self.phase == Phase::Normal
            && self.pools.0 > 0
            && since_ms >= self.s.shelf_grace_ms)
            .then(|| {
                format!(
                    "no shelf disk readable for {since_ms} ms while {} reads {partner}: \
                     stopping here so that {} fences this controller and takes its pools",
                    self.s.partner, self.s.partner
                )
            })
    }

    /// True under maintenance, which holds every move: the first time in a
    /// phase, a critical alert says what it held.
    fn held_by_maintenance(&mut self, fx: &mut Vec<Effect>, what: impl FnOnce() -> String) -> bool {
        if !self.maintenance {
            return false;
        }
        if !self.held_alerted {
            self.held_alerted = true;
            alert(fx, Level::Critical, what());
        }
        true
    }

    /// In `Normal`, the partner says over the interconnect that it fenced
    /// itself (it stopped serving: lost the shelf, or read a fence message)
    /// while it still owns pools: nobody serves them. Fence it (confirmed,
    /// as always) and take them.
    fn partner_stopped_serving(&mut self, now: u64, fx: &mut Vec<Effect>) {
        if self.partner_state != Some(Phase::Fenced) || self.pools.1 == 0 {
            return;
        }
        let partner = self.s.partner.clone();
        if self.held_by_maintenance(fx, || {
            format!("{partner} fenced itself but maintenance holds takeovers")
        }) {
            return;
        }
        let why = format!(
            "{} fenced itself and serves nothing: fencing it to take its pools",
            self.s.partner
        );
        self.start_fence(now, why, fx);
    }

    fn on_frontend(&mut self, now: u64, up: bool, fx: &mut Vec<Effect>) {
        let was = self.frontend_up.replace(up);
        if was == Some(up) {
            return;
        }
        if !up && !self.frontend_seen_up {
            alert(
                fx,
                Level::Warning,
                "no front-end link up since start: pools move for a lost front end only once one was up".to_string(),
            );
            return;
        }
        if up {
            self.frontend_seen_up = true;
            self.frontend_down_since = None;
            if was.is_some() {
                let text = if self.frontend_move == FrontendMove::Done {
                    format!(
                        "front-end links up again; the moved pools stay on {} until a giveback (duplexctl cluster giveback on {})",
                        self.s.partner, self.s.partner
                    )
                } else {
                    "front-end links up again".to_string()
                };
                alert(fx, Level::Info, text);
            }
            if self.frontend_move != FrontendMove::Running {
                self.frontend_move = FrontendMove::Idle;
            }
        } else {
            self.frontend_down_since = Some(now);
            alert(
                fx,
                Level::Warning,
                format!(
                    "every front-end link down: hosts cannot reach this controller's paths (only {}'s)",
                    self.s.partner
                ),
            );
        }
    }

    /// Asks for the move of this controller's pools once the front end has
    /// been down for the grace time, only in `normal` (the partner runs and
    /// answers, so a planned move is possible) and never under maintenance.
    fn frontend_check(&mut self, now: u64, fx: &mut Vec<Effect>) {
        let Some(down_since) = self.frontend_down_since else {
            return;
        };
        let due = match self.frontend_move {
            FrontendMove::Idle => true,
            FrontendMove::RetryAt(t) => now >= t,
            FrontendMove::Running | FrontendMove::Done => false,
        };
        if !due
            || !self.s.move_on_frontend_loss
            || self.phase != Phase::Normal
            || self.maintenance
            || self.pools.0 == 0
            || since(now, down_since) < self.s.frontend_grace_ms
        {
            return;
        }
        self.frontend_move = FrontendMove::Running;
        alert(
            fx,
            Level::Critical,
            format!(
                "every front-end link down for {} ms: moving this controller's pools to {}",
                since(now, down_since),
                self.s.partner
            ),
        );
        fx.push(Effect::MoveForFrontend);
    }

    fn enter_waiting(&mut self, now: u64, fx: &mut Vec<Effect>) {
        let reason = format!(
            "heartbeat: interconnect to {} silent; configuration locked until it returns",
            self.s.partner
        );
        self.set_lock(true, &reason, fx);
        self.enter(now, Phase::Waiting, fx);
    }

    fn eval_booting(&mut self, now: u64, ic_up: bool, fx: &mut Vec<Effect>) {
        let read = self
            .reads
            .iter()
            .filter(|d| d.last_read_ok.is_some())
            .count();
        if read < self.s.majority() {
            if !self.booting_alerted && since(now, self.boot_ms) >= self.s.disk_timeout_ms {
                self.booting_alerted = true;
                alert(
                    fx,
                    Level::Critical,
                    format!(
                        "cannot read the partner's slot on {} of {} heartbeat disks: staying out of service",
                        self.s.majority(),
                        self.s.disks
                    ),
                );
            }
            return;
        }
        if ic_up {
            self.enter(now, Phase::Normal, fx);
        } else {
            self.enter_waiting(now, fx);
            self.eval_waiting(now, fx);
        }
    }

    fn eval_waiting(&mut self, now: u64, fx: &mut Vec<Effect>) {
        let Some(frozen_since) = self.frozen_since(now) else {
            return;
        };
        // Until the partner has been seen alive since our boot it may be
        // booting too: give it disk_timeout to start writing.
        let mut threshold = if self.partner_seen_alive {
            self.s.suspect_timeout_ms
        } else {
            self.s.disk_timeout_ms.max(self.s.suspect_timeout_ms)
        };
        if self.loses_tie_break() && self.partner_may_decide(now) {
            threshold += self.s.tie_break_ms;
        }
        let dead = since(now, frozen_since) >= threshold;
        if !dead && !self.partner_reports_fenced(now) {
            return;
        }
        let partner = self.s.partner.clone();
        if self.held_by_maintenance(fx, || {
            format!("{partner} looks dead on disk but maintenance holds takeovers")
        }) {
            return;
        }
        let why = format!(
            "{} silent on the interconnect and its slot frozen on a majority of heartbeat disks: fencing it",
            self.s.partner
        );
        self.start_fence(now, why, fx);
    }

    fn start_fence(&mut self, now: u64, why: String, fx: &mut Vec<Effect>) {
        let last_beat = self.link_last.iter().flatten().max().copied();
        let last_change = self.reads.iter().filter(|d| d.last_read_ok.is_some());
        let last_sign = last_change.map(|d| d.changed_at).chain(last_beat).max();
        self.last_detection_ms = last_sign.map(|t| since(now, t));
        let epoch = Epoch {
            counter: self.epoch.counter + 1,
            controller: self.s.me.clone(),
        };
        self.fence_out = Some(FenceMsg {
            target: self.s.partner.clone(),
            epoch: epoch.clone(),
        });
        self.fenced_incarnation = self.partner_incarnation;
        self.fencing = Some(FenceRun {
            epoch,
            next: 0,
            unconfirmed: false,
            retry_at: None,
            unconfirmed_until: None,
        });
        alert(fx, Level::Critical, why);
        self.enter(now, Phase::Fencing, fx);
        self.next_agent(now, fx);
    }

    fn eval_fencing(&mut self, now: u64, fx: &mut Vec<Effect>) {
        let frozen = self.frozen_since(now);
        let disk_timeout = self.s.disk_timeout_ms;
        let Some(run) = self.fencing.as_mut() else {
            return;
        };
        if run.retry_at.is_some_and(|t| now >= t) {
            run.retry_at = None;
            run.next = 0;
            self.next_agent(now, fx);
            return;
        }
        let Some(until) = run.unconfirmed_until else {
            return;
        };
        match frozen {
            // Still frozen on a majority, disk_timeout past its last change.
            Some(t) if since(now, t) >= disk_timeout && now >= until => {
                let epoch = run.epoch.clone();
                alert(
                    fx,
                    Level::Warning,
                    format!(
                        "taking over {} on an unconfirmed fence (allow_unconfirmed)",
                        self.s.partner
                    ),
                );
                self.begin_takeover(now, epoch, fx);
            }
            // It moved again: the wait starts over from that change.
            Some(t) => run.unconfirmed_until = Some(t + disk_timeout),
            None => {}
        }
    }

    fn eval_taking_over(&mut self, now: u64, fx: &mut Vec<Effect>) {
        if let Some(from) = self.pending_epoch_from {
            let written = self
                .writes
                .iter()
                .filter(|(t, c)| t.is_some() && *c >= from)
                .count();
            if written >= self.s.majority() {
                self.pending_epoch_from = None;
                self.takeover_running = true;
                fx.push(Effect::StartTakeover {
                    epoch: self.epoch.clone(),
                });
            }
            return;
        }
        if !self.takeover_running && self.takeover_retry_at.is_some_and(|t| now >= t) {
            self.takeover_retry_at = None;
            self.takeover_running = true;
            fx.push(Effect::StartTakeover {
                epoch: self.epoch.clone(),
            });
        }
    }

    fn eval_survivor(&mut self, now: u64, fx: &mut Vec<Effect>) {
        let Some(fence) = self.fence_out.clone() else {
            return;
        };
        let Some(inc) = self.partner_incarnation else {
            return;
        };
        let back = self.ic_up(now) && Some(inc) != self.fenced_incarnation;
        match (&self.ack_out, self.partner_state) {
            (None, Some(Phase::Fenced)) if back => {
                self.ack_out = Some(Ack {
                    target: self.s.partner.clone(),
                    incarnation: inc,
                    epoch: fence.epoch,
                });
                self.dirty = true;
                alert(
                    fx,
                    Level::Info,
                    format!(
                        "{} came back fenced: rejoin acknowledged (giveback when it is ready)",
                        self.s.partner
                    ),
                );
            }
            (Some(a), Some(state))
                if back
                    && a.incarnation == inc
                    && !matches!(state, Phase::Fenced | Phase::Booting) =>
            {
                // It saw the ack and left Fenced: the messages are done.
                self.ack_out = None;
                self.fence_out = None;
                self.fenced_incarnation = None;
                self.enter(now, Phase::Normal, fx);
            }
            _ => {}
        }
    }

    fn eval_fenced(&mut self, now: u64, ic_up: bool, fx: &mut Vec<Effect>) {
        if self.abandoned {
            // Fenced in this boot: only a reboot (the watchdog) gets out.
            return;
        }
        let read = self.fresh_reads(now).count();
        if read < self.s.majority() || self.fence_for_me().is_some() {
            return;
        }
        alert(
            fx,
            Level::Info,
            format!(
                "{} acknowledged the rejoin: back in the cluster, owning nothing until giveback",
                self.s.partner
            ),
        );
        if ic_up {
            self.set_lock(false, "", fx);
            self.enter(now, Phase::Normal, fx);
        } else {
            self.enter_waiting(now, fx);
        }
    }

    /// Slot writes and the watchdog, after the decisions.
    fn housekeeping(&mut self, now: u64, tick: bool, fx: &mut Vec<Effect>) {
        let due = self
            .last_write_emit
            .is_none_or(|t| since(now, t) >= self.s.disk_interval_ms);
        if due || self.dirty {
            self.dirty = false;
            self.last_write_emit = Some(now);
            self.counter += 1;
            fx.push(Effect::WriteSlot(self.own_slot()));
        }
        if !tick {
            return;
        }
        let proves = self.ic_up(now) || (self.writes_fresh(now) && self.fence_for_me().is_none());
        if !self.abandoned && (proves || matches!(self.phase, Phase::Booting | Phase::Fenced)) {
            // Booting and boot-fenced controllers serve nothing: letting the
            // watchdog reset them would only loop reboots.
            fx.push(Effect::PetWatchdog);
        }
    }

    /// The slot this controller writes now.
    pub fn own_slot(&self) -> Slot {
        Slot {
            controller: self.s.me.clone(),
            incarnation: self.incarnation,
            counter: self.counter,
            epoch: self.epoch.clone(),
            state: self.phase,
            fence: self.fence_out.clone(),
            ack: self.ack_out.clone(),
        }
    }
}

fn alert(fx: &mut Vec<Effect>, level: Level, message: String) {
    fx.push(Effect::Alert { level, message });
}
