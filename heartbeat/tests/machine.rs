//! Table tests of the partner state machine with a simulated clock: one
//! machine (controller A unless said) and a scripted partner.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use duplex_heartbeat::core::machine::{
    Effect, FenceResult, Input, Level, Machine, PartnerRead, Settings,
};
use duplex_heartbeat::core::slot::{Ack, FenceMsg, Slot};
use duplex_heartbeat::core::types::{Beat, Epoch, Phase, SHELF_UNCHECKED};
use std::collections::VecDeque;

const STEP: u64 = 100;

fn epoch(n: u64, c: &str) -> Epoch {
    Epoch {
        counter: n,
        controller: c.into(),
    }
}

/// The machine under test and everything around it.
struct World {
    m: Machine,
    partner: String,
    now: u64,
    /// Partner beats arrive on these links.
    links: [bool; 2],
    /// Own slot writes succeed on these disks (false: the write fails).
    writes_ok: [bool; 3],
    /// The partner's slot advances on these disks.
    partner_writing: [bool; 3],
    /// The partner's slot can be read on these disks.
    readable: [bool; 3],
    /// Partner slot content per disk (counter advances when writing).
    pslot: [Slot; 3],
    /// The partner beats.
    beat_incarnation: u64,
    beat_state: Phase,
    /// Shelf disks the partner says it reads.
    beat_shelf: u8,
    seq: u64,
    /// Answers to FencePartner, in order; empty: no answer.
    fence_script: VecDeque<FenceResult>,
    /// Every effect so far, with its time.
    log: Vec<(u64, Effect)>,
}

impl World {
    fn new(partner: &str, s: Settings) -> World {
        let m = Machine::new(s, 0, 1000, epoch(3, partner));
        let pslot = Slot {
            controller: partner.into(),
            incarnation: 2000,
            counter: 500,
            epoch: epoch(3, partner),
            state: Phase::Normal,
            fence: None,
            ack: None,
        };
        World {
            m,
            partner: partner.into(),
            now: 0,
            links: [true, true],
            writes_ok: [true; 3],
            partner_writing: [true; 3],
            readable: [true; 3],
            pslot: [pslot.clone(), pslot.clone(), pslot],
            beat_incarnation: 2000,
            beat_state: Phase::Normal,
            beat_shelf: SHELF_UNCHECKED,
            seq: 0,
            fence_script: VecDeque::new(),
            log: Vec::new(),
        }
    }

    /// Controller A with partner B, defaults, agents ipmi then scsi_pr.
    fn a() -> World {
        World::new("B", Settings::new("A", "B", &["ipmi", "scsi_pr"]))
    }

    fn feed(&mut self, input: Input) {
        let fx = self.m.step(self.now, input);
        self.absorb(fx);
    }

    /// Logs effects; slot writes and fence runs are answered at once.
    fn absorb(&mut self, fx: Vec<Effect>) {
        for e in fx {
            self.replay(e);
        }
    }

    fn replay(&mut self, e: Effect) {
        match &e {
            Effect::WriteSlot(slot) => {
                let counter = slot.counter;
                self.log.push((self.now, e.clone()));
                for disk in 0..3 {
                    let ok = self.writes_ok[disk];
                    let more = self
                        .m
                        .step(self.now, Input::SlotWritten { disk, counter, ok });
                    self.absorb(more);
                }
            }
            Effect::FencePartner { agent, .. } => {
                self.log.push((self.now, e.clone()));
                if let Some(result) = self.fence_script.pop_front() {
                    let more = self.m.step(
                        self.now,
                        Input::FenceDone {
                            agent: agent.clone(),
                            result,
                            detail: "scripted".into(),
                        },
                    );
                    self.absorb(more);
                }
            }
            _ => self.log.push((self.now, e.clone())),
        }
    }

    /// Runs `ms` of simulated time in 100 ms steps.
    fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.now += STEP;
            for link in 0..2 {
                if self.links[link] {
                    self.seq += 1;
                    let beat = Beat {
                        controller: self.partner.clone(),
                        incarnation: self.beat_incarnation,
                        epoch: self.pslot[0].epoch.clone(),
                        seq: self.seq,
                        state: self.beat_state.code(),
                        shelf: self.beat_shelf,
                    };
                    self.feed(Input::Beat { link, beat });
                }
            }
            if self.now % 200 == 0 {
                for disk in 0..3 {
                    if self.partner_writing[disk] {
                        self.pslot[disk].counter += 1;
                    }
                    let read = if self.readable[disk] {
                        PartnerRead::Slot(self.pslot[disk].clone())
                    } else {
                        PartnerRead::Error("EIO".into())
                    };
                    self.feed(Input::PartnerSlot { disk, read });
                }
            }
            self.feed(Input::Tick);
        }
    }

    fn cut_links(&mut self) {
        self.links = [false, false];
    }

    fn freeze_partner(&mut self) {
        self.cut_links();
        self.partner_writing = [false; 3];
    }

    fn count(&self, f: impl Fn(&Effect) -> bool) -> usize {
        self.log.iter().filter(|(_, e)| f(e)).count()
    }

    fn first(&self, f: impl Fn(&Effect) -> bool) -> Option<u64> {
        self.log.iter().find(|(_, e)| f(e)).map(|(t, _)| *t)
    }

    fn takeovers(&self) -> usize {
        self.count(|e| matches!(e, Effect::StartTakeover { .. }))
    }

    fn fences(&self) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|(_, e)| match e {
                Effect::FencePartner { agent, .. } => Some(agent.clone()),
                _ => None,
            })
            .collect()
    }

    /// Tells the machine how many pools each side owns.
    fn pools(&mut self, mine: usize, partner: usize) {
        self.feed(Input::Pools { mine, partner });
    }

    /// An alert of `level` containing `needle` was raised.
    fn alerted(&self, level: Level, needle: &str) -> bool {
        self.alerts(level).iter().any(|a| a.contains(needle))
    }

    fn alerts(&self, level: Level) -> Vec<String> {
        self.log
            .iter()
            .filter_map(|(_, e)| match e {
                Effect::Alert { level: l, message } if *l == level => Some(message.clone()),
                _ => None,
            })
            .collect()
    }

    fn last_slot(&self) -> Slot {
        self.log
            .iter()
            .rev()
            .find_map(|(_, e)| match e {
                Effect::WriteSlot(s) => Some(s.clone()),
                _ => None,
            })
            .expect("a slot was written")
    }

    fn take_over_done(&mut self) {
        let epoch = self.m.epoch().clone();
        self.feed(Input::TakeoverDone { epoch });
    }
}

fn is_lock(e: &Effect) -> bool {
    matches!(e, Effect::LockConfig { .. })
}

#[test]
fn partner_up_stays_normal_and_pets_the_watchdog() {
    let mut w = World::a();
    w.run(10_000);
    assert_eq!(w.m.phase(), Phase::Normal);
    assert_eq!(w.count(is_lock), 0);
    assert!(w.fences().is_empty());
    assert_eq!(w.takeovers(), 0);
    assert!(w.alerts(Level::Critical).is_empty());
    // Petted on every tick: 100 ticks in 10 s.
    assert_eq!(w.count(|e| *e == Effect::PetWatchdog), 100);
    // Own slot written every disk_interval with a growing counter.
    let counters: Vec<u64> = w
        .log
        .iter()
        .filter_map(|(_, e)| match e {
            Effect::WriteSlot(s) => Some(s.counter),
            _ => None,
        })
        .collect();
    assert!(counters.len() >= 50);
    assert!(counters.windows(2).all(|p| p[1] == p[0] + 1));
    assert_eq!(w.last_slot().state, Phase::Normal);
}

#[test]
fn one_link_down_is_an_alert_and_nothing_else() {
    let mut w = World::a();
    w.run(2000);
    w.links[1] = false;
    w.partner_writing = [true; 3];
    w.run(10_000);
    assert_eq!(w.m.phase(), Phase::Normal);
    let warn = w.alerts(Level::Warning);
    assert_eq!(warn.len(), 1, "{warn:?}");
    assert!(warn[0].contains("link 1"));
    assert_eq!(w.count(is_lock), 0);
    assert!(w.fences().is_empty());
    w.links[1] = true;
    w.run(500);
    assert!(w.alerted(Level::Info, "link 1"));
}

#[test]
fn heartbeat_disks_lost_one_then_a_majority_are_alerts_and_nothing_else() {
    let mut w = World::a();
    w.run(2000);
    assert!(w.alerts(Level::Warning).is_empty());
    // hb0 gone from this controller: own writes and partner reads fail.
    w.writes_ok[0] = false;
    w.readable[0] = false;
    w.run(10_000);
    assert_eq!(w.m.phase(), Phase::Normal);
    let warn = w.alerts(Level::Warning);
    assert_eq!(warn.len(), 1, "{warn:?}");
    assert!(warn[0].contains("heartbeat disk 0 not usable"), "{warn:?}");
    assert!(warn[0].contains("EIO"), "the reason is named: {warn:?}");
    assert!(w.alerts(Level::Critical).is_empty());
    // hb1 too, writes only: a majority lost; still nothing decided on
    // disk while the interconnect answers.
    w.writes_ok[1] = false;
    w.run(10_000);
    assert_eq!(w.m.phase(), Phase::Normal);
    let warn = w.alerts(Level::Warning);
    assert_eq!(warn.len(), 2, "{warn:?}");
    assert!(
        warn[1].contains("disk 1 not usable: own slot writes"),
        "{warn:?}"
    );
    let crit = w.alerts(Level::Critical);
    assert_eq!(crit.len(), 1, "{crit:?}");
    assert!(crit[0].contains("only 1 of 3"), "{crit:?}");
    assert!(w.fences().is_empty());
    assert_eq!(w.takeovers(), 0);
    assert_eq!(w.count(is_lock), 0);
    // Both back: one alert each, and the majority's.
    w.writes_ok = [true; 3];
    w.readable = [true; 3];
    w.run(2000);
    let info = w.alerts(Level::Info);
    for text in [
        "disk 0 usable again",
        "disk 1 usable again",
        "2 of 3 heartbeat disks usable again",
    ] {
        assert!(info.iter().any(|a| a.contains(text)), "{text}: {info:?}");
    }
    assert_eq!(w.alerts(Level::Warning).len(), 2, "no flapping");
}

fn is_fe_move(e: &Effect) -> bool {
    *e == Effect::MoveForFrontend
}

#[test]
fn front_end_lost_moves_the_pools_once_after_the_grace_time() {
    let mut w = World::a();
    w.pools(1, 0);
    w.feed(Input::Frontend { up: true });
    w.run(2000);
    assert!(w.alerts(Level::Warning).is_empty());
    w.feed(Input::Frontend { up: false });
    let down_at = w.now;
    assert!(w.alerted(Level::Warning, "every front-end link down"));
    w.run(2500);
    assert_eq!(w.count(is_fe_move), 0, "within the 3 s grace");
    w.run(1000);
    assert_eq!(w.count(is_fe_move), 1);
    let at = w.first(is_fe_move).unwrap();
    assert!(at - down_at >= 3000, "{}", at - down_at);
    // The move failed (the partner's front end is down too): again later.
    w.feed(Input::FrontendMoveDone {
        ok: false,
        reason: "B's front end is down too".into(),
    });
    assert!(w.alerted(Level::Critical, "B's front end is down too"));
    w.run(4000);
    assert_eq!(w.count(is_fe_move), 1, "not before takeover_retry");
    w.run(1500);
    assert_eq!(w.count(is_fe_move), 2);
    w.feed(Input::FrontendMoveDone {
        ok: true,
        reason: String::new(),
    });
    w.pools(0, 1);
    w.run(20_000);
    assert_eq!(w.count(is_fe_move), 2, "done for this outage");
    // Never a fence, a takeover or a lock: the partner is alive.
    assert!(w.fences().is_empty());
    assert_eq!(w.takeovers(), 0);
    assert_eq!(w.count(is_lock), 0);
    assert_eq!(w.m.phase(), Phase::Normal);
    w.feed(Input::Frontend { up: true });
    assert!(w.alerted(Level::Info, "stay on B until a giveback"));
}

#[test]
fn front_end_lost_moves_nothing_under_maintenance_or_without_pools() {
    let mut w = World::a();
    w.pools(1, 0);
    w.feed(Input::Frontend { up: false });
    w.run(10_000);
    assert_eq!(w.count(is_fe_move), 0, "never up since start (booting)");
    assert!(w.alerted(Level::Warning, "no front-end link up since start"));
    w.pools(0, 0);
    w.feed(Input::Frontend { up: true });
    w.feed(Input::Frontend { up: false });
    w.run(10_000);
    assert_eq!(w.count(is_fe_move), 0, "no pools of its own");
    w.feed(Input::Maintenance(true));
    w.pools(2, 0);
    w.run(10_000);
    assert_eq!(w.count(is_fe_move), 0, "maintenance holds it");
    w.feed(Input::Maintenance(false));
    w.run(200);
    assert_eq!(w.count(is_fe_move), 1);
    // A front end that comes back while the move runs does not start
    // another one when it drops again.
    w.feed(Input::Frontend { up: true });
    w.feed(Input::Frontend { up: false });
    w.run(10_000);
    assert_eq!(w.count(is_fe_move), 1);
    let mut off = World::new("B", {
        let mut s = Settings::new("A", "B", &["ipmi"]);
        s.move_on_frontend_loss = false;
        s
    });
    off.feed(Input::Pools {
        mine: 1,
        partner: 0,
    });
    off.feed(Input::Frontend { up: true });
    off.feed(Input::Frontend { up: false });
    off.run(10_000);
    assert_eq!(off.count(is_fe_move), 0, "the policy is off");
    assert_eq!(
        off.alerts(Level::Warning).len(),
        1,
        "the alert still says it"
    );
}

#[test]
fn both_links_down_with_slot_advancing_waits_locked_then_unlocks() {
    let mut w = World::a();
    w.run(2000);
    w.cut_links();
    w.run(60_000);
    assert_eq!(w.m.phase(), Phase::Waiting);
    assert!(w.m.config_locked());
    assert_eq!(w.count(is_lock), 1);
    assert!(w.fences().is_empty(), "never fence a partner that writes");
    assert_eq!(w.takeovers(), 0);
    assert!(w.alerted(Level::Critical, "silent"));
    // The link returns: unlock, normal.
    w.links = [true, true];
    w.run(300);
    assert_eq!(w.m.phase(), Phase::Normal);
    assert!(!w.m.config_locked());
    assert_eq!(w.count(|e| *e == Effect::UnlockConfig), 1);
}

#[test]
fn slot_advancing_on_a_minority_only_is_not_dead_and_not_alive() {
    // Frozen on one disk, unreadable on another: neither majority, so wait.
    let mut w = World::a();
    w.run(2000);
    w.cut_links();
    w.partner_writing = [false, true, true];
    w.readable = [true, false, true];
    w.run(30_000);
    assert_eq!(w.m.phase(), Phase::Waiting);
    assert!(w.fences().is_empty());
}

#[test]
fn frozen_on_a_majority_past_suspect_timeout_fences_then_takes_over_once() {
    let mut w = World::a();
    w.fence_script.push_back(FenceResult::Confirmed);
    w.run(2000);
    let fault = w.now;
    w.freeze_partner();
    w.run(5000);
    let fence_at = w
        .first(|e| matches!(e, Effect::FencePartner { .. }))
        .expect("fenced");
    // Detection: from the last beat to the fence start. A wins the
    // tie-break (equal pools, smaller id), so no extra delay.
    let detection = fence_at - fault;
    assert!(
        (1500..=1800).contains(&detection),
        "detection took {detection} ms"
    );
    assert_eq!(w.fences(), vec!["ipmi"]);
    assert_eq!(w.takeovers(), 1);
    let reported = w.m.status(w.now).last_detection_ms.unwrap();
    assert!((1500..=1800).contains(&reported), "{reported}");
    // The new epoch went to the disks (with the poison pill) before the
    // takeover started.
    let take_at = w
        .first(|e| matches!(e, Effect::StartTakeover { .. }))
        .unwrap();
    let new = epoch(4, "A");
    assert!(w.log.iter().any(|(t, e)| *t <= take_at
        && matches!(e, Effect::WriteSlot(s) if s.epoch == new && s.state == Phase::TakingOver)));
    let pill = w
        .log
        .iter()
        .find_map(|(t, e)| match e {
            Effect::WriteSlot(s) if s.fence.is_some() => Some((*t, s.fence.clone())),
            _ => None,
        })
        .unwrap();
    assert!(pill.0 <= fence_at);
    assert_eq!(
        pill.1,
        Some(FenceMsg {
            target: "B".into(),
            epoch: new.clone()
        })
    );
    assert!(matches!(
        w.log.iter().find(|(_, e)| matches!(e, Effect::StartTakeover { .. })),
        Some((_, Effect::StartTakeover { epoch })) if *epoch == new
    ));
    assert_eq!(w.m.phase(), Phase::TakingOver);
    // Joined once as a member; not again while fencing and taking over.
    assert_eq!(w.count(|e| *e == Effect::JoinFence), 1);
    w.take_over_done();
    assert_eq!(w.m.phase(), Phase::Survivor);
    assert!(!w.m.config_locked());
    // The survivor puts its own part of the fence in place again.
    assert_eq!(w.count(|e| *e == Effect::JoinFence), 2);
    w.run(30_000);
    assert_eq!(w.takeovers(), 1, "exactly once");
    assert_eq!(w.m.phase(), Phase::Survivor);
}

#[test]
fn no_takeover_until_the_new_epoch_is_on_a_majority() {
    let mut s = Settings::new("A", "B", &["ipmi"]);
    s.disks = 3;
    let mut w = World::new("B", s);
    w.run(2000);
    w.freeze_partner();
    // Fence by hand so the slot writes can be held back.
    w.run(1700);
    assert_eq!(w.m.phase(), Phase::Fencing);
    let fx = w.m.step(
        w.now,
        Input::FenceDone {
            agent: "ipmi".into(),
            result: FenceResult::Confirmed,
            detail: "power off".into(),
        },
    );
    assert_eq!(w.m.phase(), Phase::TakingOver);
    let slot = fx
        .iter()
        .find_map(|e| match e {
            Effect::WriteSlot(s) => Some(s.clone()),
            _ => None,
        })
        .expect("epoch written at once");
    assert_eq!(slot.epoch, epoch(4, "A"));
    assert!(!fx.iter().any(|e| matches!(e, Effect::StartTakeover { .. })));
    let w1 = w.m.step(
        w.now,
        Input::SlotWritten {
            disk: 0,
            counter: slot.counter,
            ok: true,
        },
    );
    assert!(!w1.iter().any(|e| matches!(e, Effect::StartTakeover { .. })));
    let w2 = w.m.step(
        w.now,
        Input::SlotWritten {
            disk: 1,
            counter: slot.counter,
            ok: false,
        },
    );
    assert!(!w2.iter().any(|e| matches!(e, Effect::StartTakeover { .. })));
    let w3 = w.m.step(
        w.now,
        Input::SlotWritten {
            disk: 2,
            counter: slot.counter,
            ok: true,
        },
    );
    assert!(w3.iter().any(|e| *e
        == Effect::StartTakeover {
            epoch: epoch(4, "A")
        }));
}

/// Both links cut, the partner's slot says `Waiting` for a while (it lost
/// the interconnect too and could be deciding), then it freezes there.
fn lose_partner_while_both_wait(w: &mut World) -> u64 {
    w.cut_links();
    w.run(1000);
    for slot in &mut w.pslot {
        slot.state = Phase::Waiting;
    }
    w.run(1000);
    let fault = w.now;
    w.partner_writing = [false; 3];
    fault
}

/// Controller `me` (partner `partner`, owning `pools` against the
/// partner's) loses the partner after `lose`; returns the time from the
/// partner's last slot change to the fence.
fn detection(me: &str, partner: &str, pools: (usize, usize), lose: fn(&mut World) -> u64) -> u64 {
    let mut w = World::new(partner, Settings::new(me, partner, &["ipmi"]));
    w.fence_script.push_back(FenceResult::Confirmed);
    w.pools(pools.0, pools.1);
    w.run(2000);
    let fault = lose(&mut w);
    w.run(5000);
    let t = w
        .first(|e| matches!(e, Effect::FencePartner { .. }))
        .expect("fenced");
    assert_eq!(w.takeovers(), 1, "{me}");
    t - fault
}

fn freeze_now(w: &mut World) -> u64 {
    w.freeze_partner();
    w.now
}

#[test]
fn the_tie_break_loser_waits_longer_when_both_could_decide() {
    // B (greater id, equal pools) and A with fewer pools delay by
    // tie_break_ms; the winner does not.
    for (me, partner, pools, range) in [
        ("B", "A", (0, 0), 2500..=2800),
        ("A", "B", (1, 3), 2500..=2800),
        ("A", "B", (0, 0), 1500..=1800),
    ] {
        let d = detection(me, partner, pools, lose_partner_while_both_wait);
        assert!(range.contains(&d), "{me} {pools:?}: {d}");
    }
}

#[test]
fn the_tie_break_loser_does_not_wait_for_a_partner_that_died_in_normal() {
    // The partner's slot froze while it still heard us (a kill, a panic):
    // it was not deciding anything, so even the loser fences at
    // suspect_timeout. Detection stays within 2 s on the confirmed path.
    for (me, partner, pools) in [("B", "A", (1, 1)), ("A", "B", (0, 2))] {
        let d = detection(me, partner, pools, freeze_now);
        assert!((1500..=1800).contains(&d), "{me}: {d}");
    }
}

#[test]
fn a_failed_agent_is_followed_by_the_next_one() {
    let mut w = World::a();
    w.fence_script.push_back(FenceResult::Failed);
    w.fence_script.push_back(FenceResult::Confirmed);
    w.run(2000);
    w.freeze_partner();
    w.run(5000);
    assert_eq!(w.fences(), vec!["ipmi", "scsi_pr"]);
    assert!(w.alerted(Level::Warning, "ipmi failed"));
    assert_eq!(w.takeovers(), 1);
}

#[test]
fn unconfirmed_is_not_enough_by_default() {
    let mut w = World::a();
    w.fence_script.push_back(FenceResult::Unconfirmed);
    w.fence_script.push_back(FenceResult::Unconfirmed);
    w.run(2000);
    w.freeze_partner();
    w.run(60_000);
    assert_eq!(w.takeovers(), 0);
    assert_eq!(w.m.phase(), Phase::Fencing);
}

#[test]
fn every_agent_failing_never_takes_over_and_keeps_trying() {
    let mut w = World::a();
    for _ in 0..100 {
        w.fence_script.push_back(FenceResult::Failed);
    }
    w.run(2000);
    w.freeze_partner();
    w.run(60_000);
    assert_eq!(w.takeovers(), 0);
    assert_eq!(w.m.phase(), Phase::Fencing);
    assert!(w.m.config_locked());
    let crit = w.alerts(Level::Critical);
    assert!(crit.iter().any(|a| a.contains("every fence agent failed")));
    // Retried every fence_retry_ms (5 s): about 11 rounds of two agents.
    let n = w.fences().len();
    assert!((20..=24).contains(&n), "{n} attempts");
    // The order is kept in every round.
    assert!(w.fences().chunks(2).all(|c| c[0] == "ipmi"));
}

#[test]
fn allow_unconfirmed_waits_disk_timeout_past_the_last_slot_change() {
    let mut s = Settings::new("A", "B", &["poison_pill"]);
    s.allow_unconfirmed = true;
    let mut w = World::new("B", s);
    w.fence_script.push_back(FenceResult::Unconfirmed);
    w.run(2000);
    let fault = w.now;
    w.freeze_partner();
    w.run(20_000);
    assert_eq!(w.takeovers(), 1);
    let t = w
        .first(|e| matches!(e, Effect::StartTakeover { .. }))
        .unwrap();
    assert!(t - fault >= 10_000, "took over after {} ms", t - fault);
    assert!(t - fault <= 10_600, "took over after {} ms", t - fault);
}

#[test]
fn maintenance_holds_the_takeover() {
    let mut w = World::a();
    w.fence_script.push_back(FenceResult::Confirmed);
    w.feed(Input::Maintenance(true));
    w.run(2000);
    w.freeze_partner();
    w.run(20_000);
    assert!(w.fences().is_empty());
    assert_eq!(w.takeovers(), 0);
    assert!(w.alerted(Level::Critical, "maintenance"));
    w.feed(Input::Maintenance(false));
    w.run(500);
    assert_eq!(w.takeovers(), 1);
}

#[test]
fn a_failed_takeover_runs_again() {
    let mut w = World::a();
    w.fence_script.push_back(FenceResult::Confirmed);
    w.run(2000);
    w.freeze_partner();
    w.run(3000);
    assert_eq!(w.takeovers(), 1);
    w.feed(Input::TakeoverFailed {
        reason: "config.apply timed out".into(),
    });
    w.run(4000);
    assert_eq!(w.takeovers(), 1);
    w.run(1500);
    assert_eq!(w.takeovers(), 2);
    w.take_over_done();
    assert_eq!(w.m.phase(), Phase::Survivor);
}

#[test]
fn a_fence_message_for_me_self_fences_at_once() {
    let mut w = World::a();
    w.run(2000);
    w.pslot[1].fence = Some(FenceMsg {
        target: "A".into(),
        epoch: epoch(4, "B"),
    });
    w.run(400);
    assert_eq!(w.m.phase(), Phase::Fenced);
    assert_eq!(w.count(|e| matches!(e, Effect::SelfFence { .. })), 1);
    assert_eq!(w.count(|e| *e == Effect::StopWatchdog), 1);
    let stop = w.first(|e| *e == Effect::StopWatchdog).unwrap();
    assert!(!w
        .log
        .iter()
        .any(|(t, e)| *t > stop && *e == Effect::PetWatchdog));
    assert_eq!(w.last_slot().state, Phase::Fenced);
    // A message for someone else is not for us.
    let mut w = World::a();
    w.pslot[1].fence = Some(FenceMsg {
        target: "C".into(),
        epoch: epoch(4, "B"),
    });
    w.run(2000);
    assert_eq!(w.m.phase(), Phase::Normal);
}

#[test]
fn own_writes_failing_with_the_interconnect_down_self_fence() {
    let mut w = World::a();
    w.run(2000);
    w.cut_links();
    w.writes_ok = [true, false, false];
    w.run(3000);
    assert_eq!(w.m.phase(), Phase::Fenced);
    let sf = w
        .first(|e| matches!(e, Effect::SelfFence { .. }))
        .expect("self-fenced");
    // Within suspect_timeout of the last good majority write.
    assert!(sf - 2000 <= 1600, "{}", sf - 2000);
    assert!(w.fences().is_empty());
    assert_eq!(w.takeovers(), 0);
}

#[test]
fn own_writes_failing_with_the_interconnect_up_is_not_a_self_fence() {
    let mut w = World::a();
    w.run(2000);
    w.writes_ok = [false, false, false];
    w.run(5000);
    assert_eq!(w.m.phase(), Phase::Normal);
    assert_eq!(w.count(|e| matches!(e, Effect::SelfFence { .. })), 0);
}

#[test]
fn booting_alone_waits_disk_timeout_before_fencing() {
    let mut w = World::a();
    w.fence_script.push_back(FenceResult::Confirmed);
    w.cut_links();
    w.partner_writing = [false; 3];
    w.run(9_500);
    assert!(w.fences().is_empty(), "partner may still be booting");
    assert_eq!(w.m.phase(), Phase::Waiting);
    assert!(w.m.config_locked());
    w.run(3000);
    assert_eq!(w.fences(), vec!["ipmi"]);
    assert_eq!(w.takeovers(), 1);
}

#[test]
fn booting_alone_on_blank_disks_fences_only_after_disk_timeout() {
    let mut w = World::a();
    w.cut_links();
    w.partner_writing = [false; 3];
    w.readable = [false; 3];
    w.run(3000);
    // No majority read at all: stay booting, do nothing.
    assert_eq!(w.m.phase(), Phase::Booting);
    for disk in 0..3 {
        w.feed(Input::PartnerSlot {
            disk,
            read: PartnerRead::Blank,
        });
    }
    assert_eq!(w.m.phase(), Phase::Waiting);
}

#[test]
fn both_booting_together_never_fence() {
    // The partner starts writing 3 s after us, interconnect still down.
    let mut w = World::a();
    w.cut_links();
    w.partner_writing = [false; 3];
    w.run(3000);
    w.partner_writing = [true; 3];
    w.run(30_000);
    assert!(
        w.fences().is_empty(),
        "{:?}",
        w.log
            .iter()
            .filter(|(_, e)| !matches!(e, Effect::WriteSlot(_) | Effect::PetWatchdog))
            .collect::<Vec<_>>()
    );
    assert_eq!(w.m.phase(), Phase::Waiting);
    w.links = [true, true];
    w.run(500);
    assert_eq!(w.m.phase(), Phase::Normal);
}

#[test]
fn booting_with_interconnect_goes_normal_after_reading_the_disks() {
    let mut w = World::a();
    w.readable = [false; 3];
    w.run(1000);
    assert_eq!(w.m.phase(), Phase::Booting, "disks not read yet");
    w.readable = [true; 3];
    w.run(400);
    assert_eq!(w.m.phase(), Phase::Normal);
}

#[test]
fn a_partner_reporting_fenced_is_fenced_without_waiting() {
    let mut w = World::a();
    w.fence_script.push_back(FenceResult::Confirmed);
    w.run(2000);
    w.cut_links();
    for s in w.pslot.iter_mut() {
        s.state = Phase::Fenced;
    }
    w.run(1500);
    assert_eq!(w.fences(), vec!["ipmi"]);
}

#[test]
fn rejoin_is_acknowledged_by_the_survivor_then_cleared() {
    let mut w = World::a();
    w.fence_script.push_back(FenceResult::Confirmed);
    w.run(2000);
    w.freeze_partner();
    w.run(3000);
    w.take_over_done();
    assert_eq!(w.m.phase(), Phase::Survivor);
    w.run(5000);
    // Partner reboots (new incarnation) and comes back fenced.
    w.beat_incarnation = 2001;
    w.beat_state = Phase::Fenced;
    w.links = [true, true];
    w.run(500);
    let slot = w.last_slot();
    assert_eq!(
        slot.ack,
        Some(Ack {
            target: "B".into(),
            incarnation: 2001,
            epoch: epoch(4, "A")
        })
    );
    assert!(slot.fence.is_some(), "fence kept until the ack is seen");
    assert_eq!(w.m.phase(), Phase::Survivor);
    // It saw the ack and left Fenced.
    w.beat_state = Phase::Normal;
    w.run(300);
    assert_eq!(w.m.phase(), Phase::Normal);
    let slot = w.last_slot();
    assert_eq!(slot.fence, None);
    assert_eq!(slot.ack, None);
    assert_eq!(w.takeovers(), 1);
}

#[test]
fn the_old_incarnation_is_not_acknowledged() {
    // A frozen partner that thaws (same incarnation) must not be let back.
    let mut w = World::a();
    w.fence_script.push_back(FenceResult::Confirmed);
    w.run(2000);
    w.freeze_partner();
    w.run(3000);
    w.take_over_done();
    w.beat_state = Phase::Fenced;
    w.links = [true, true];
    w.run(2000);
    assert_eq!(w.last_slot().ack, None);
    assert_eq!(w.m.phase(), Phase::Survivor);
}

#[test]
fn a_fenced_controller_boots_fenced_and_waits_for_the_ack() {
    // B boots; A's slot holds a fence message for B.
    let mut w = World::new("A", Settings::new("B", "A", &["ipmi"]));
    for s in w.pslot.iter_mut() {
        s.state = Phase::Survivor;
        s.epoch = epoch(4, "A");
        s.fence = Some(FenceMsg {
            target: "B".into(),
            epoch: epoch(4, "A"),
        });
    }
    w.beat_state = Phase::Survivor;
    w.run(3000);
    assert_eq!(w.m.phase(), Phase::Fenced);
    assert_eq!(w.last_slot().state, Phase::Fenced);
    // Booting fenced stops serving whatever a restart of the daemon alone
    // left served (standby), once, and keeps petting the watchdog (no
    // reboot loop).
    assert_eq!(w.count(|e| matches!(e, Effect::SelfFence { .. })), 1);
    assert_eq!(w.count(|e| *e == Effect::StopWatchdog), 0);
    assert_eq!(w.m.epoch(), &epoch(4, "A"));
    // An ack for another incarnation does not count.
    for s in w.pslot.iter_mut() {
        s.ack = Some(Ack {
            target: "B".into(),
            incarnation: 999,
            epoch: epoch(4, "A"),
        });
    }
    w.run(1000);
    assert_eq!(w.m.phase(), Phase::Fenced);
    // A fenced controller never registers its PR key again on its own.
    assert_eq!(w.count(|e| *e == Effect::JoinFence), 0);
    let inc = w.m.incarnation();
    for s in w.pslot.iter_mut() {
        s.ack = Some(Ack {
            target: "B".into(),
            incarnation: inc,
            epoch: epoch(4, "A"),
        });
    }
    w.run(1000);
    assert_eq!(w.m.phase(), Phase::Normal);
    // Acknowledged: a member again, it registers.
    assert_eq!(w.count(|e| *e == Effect::JoinFence), 1);
    assert_eq!(w.takeovers(), 0);
    assert!(w.fences().is_empty());
}

#[test]
fn the_new_epoch_is_above_the_recorded_one() {
    let mut w = World::a();
    w.fence_script.push_back(FenceResult::Confirmed);
    w.feed(Input::ConfigEpoch(41));
    w.run(2000);
    w.freeze_partner();
    w.run(3000);
    assert!(w.log.iter().any(|(_, e)| *e
        == Effect::StartTakeover {
            epoch: epoch(42, "A")
        }));
}

#[test]
fn status_reports_links_disks_and_lock() {
    let mut w = World::a();
    w.run(2000);
    w.links[0] = false;
    w.run(1500);
    let st = w.m.status(w.now);
    assert_eq!(st.phase, Phase::Normal);
    assert!(st.link_age_ms[0].unwrap() >= 1500);
    assert!(st.link_age_ms[1].unwrap() < 200);
    assert_eq!(st.write_age_ms.len(), 3);
    assert!(st.partner_slot_age_ms.iter().all(|a| a.unwrap() < 400));
    assert_eq!(st.fence_agents, vec!["ipmi", "scsi_pr"]);
    assert!(!st.config_locked);
}

/// A 3 s stall of the machine's own loop, then the inputs queued during it
/// in the worst order: one disk's write first, then reads, then beats.
fn stall_then_drain(w: &mut World) {
    w.now += 3000;
    let counter = w.last_slot().counter;
    w.feed(Input::SlotWritten {
        disk: 0,
        counter,
        ok: true,
    });
    for disk in 0..3 {
        let read = PartnerRead::Slot(w.pslot[disk].clone());
        w.feed(Input::PartnerSlot { disk, read });
    }
}

#[test]
fn a_stall_of_our_own_loop_is_not_evidence() {
    let mut w = World::a();
    w.run(2000);
    stall_then_drain(&mut w);
    w.run(3000);
    assert_eq!(w.m.phase(), Phase::Normal);
    assert_eq!(w.count(|e| matches!(e, Effect::SelfFence { .. })), 0);
    assert!(w.fences().is_empty());
    assert!(w.count(is_lock) == 0, "no lock for a stall");
    assert_eq!(w.m.status(w.now).stalls, 1);
    assert!(w.alerted(Level::Warning, "stalled 3"));
}

#[test]
fn after_a_stall_a_dead_partner_is_still_fenced_and_own_failure_still_self_fences() {
    let mut w = World::a();
    w.run(2000);
    stall_then_drain(&mut w);
    w.freeze_partner();
    w.fence_script.push_back(FenceResult::Confirmed);
    w.run(5000);
    assert_eq!(w.fences().len(), 1, "the partner died after the stall");

    let mut w = World::a();
    w.run(2000);
    stall_then_drain(&mut w);
    w.cut_links();
    w.writes_ok = [true, false, false];
    w.run(3000);
    assert_eq!(w.m.phase(), Phase::Fenced);
}

/// A with one pool, B without, both reading all 8 shelf disks.
fn shelf_world() -> World {
    let mut w = World::a();
    w.fence_script.push_back(FenceResult::Confirmed);
    w.pools(1, 0);
    w.beat_shelf = 8;
    w.feed(Input::Shelf { readable: 8 });
    w.run(2000);
    w
}

#[test]
fn losing_the_shelf_alone_stops_this_controller_after_the_grace() {
    let mut w = shelf_world();
    let lost = w.now;
    w.feed(Input::Shelf { readable: 0 });
    assert!(w.alerted(Level::Critical, "no shelf disk readable"));
    w.run(1500);
    assert_eq!(w.m.phase(), Phase::Normal, "still inside shelf_grace");
    w.run(1000);
    assert_eq!(w.m.phase(), Phase::Fenced);
    let at = w
        .first(|e| matches!(e, Effect::SelfFence { .. }))
        .expect("self-fence");
    assert!((2000..=2200).contains(&(at - lost)), "{}", at - lost);
    assert!(w.log.iter().any(|(_, e)| *e == Effect::StopWatchdog));
    // Its beats say so: that is what the partner acts on.
    assert_eq!(w.m.beat(1).state, Phase::Fenced.code());
    assert_eq!(w.m.beat(1).shelf, 0);
    // A controller that stopped never fences the partner.
    assert!(w.fences().is_empty());
}

#[test]
fn a_shelf_that_comes_back_inside_the_grace_changes_nothing() {
    let mut w = shelf_world();
    w.feed(Input::Shelf { readable: 0 });
    w.run(1000);
    w.feed(Input::Shelf { readable: 8 });
    w.run(5000);
    assert_eq!(w.m.phase(), Phase::Normal);
    assert_eq!(w.count(|e| matches!(e, Effect::SelfFence { .. })), 0);
    assert!(w.alerted(Level::Info, "shelf readable again"));
}

#[test]
fn the_shelf_lost_on_both_or_unknown_on_the_partner_moves_nothing() {
    // Both lost it: an outage of the shelf, which no move cures.
    let mut w = shelf_world();
    w.beat_shelf = 0;
    w.feed(Input::Shelf { readable: 0 });
    w.run(10_000);
    assert_eq!(w.m.phase(), Phase::Normal);
    // The partner does not watch its shelf: nothing proves it reads it.
    let mut w = shelf_world();
    w.beat_shelf = SHELF_UNCHECKED;
    w.feed(Input::Shelf { readable: 0 });
    w.run(10_000);
    assert_eq!(w.m.phase(), Phase::Normal);
    // Nothing owned here: nothing to hand over.
    let mut w = shelf_world();
    w.pools(0, 1);
    w.feed(Input::Shelf { readable: 0 });
    w.run(10_000);
    assert_eq!(w.m.phase(), Phase::Normal);
    // Turned off by policy.
    let mut s = Settings::new("A", "B", &["ipmi"]);
    s.move_on_shelf_loss = false;
    let mut w = World::new("B", s);
    w.pools(1, 0);
    w.beat_shelf = 8;
    w.run(2000);
    w.feed(Input::Shelf { readable: 0 });
    w.run(10_000);
    assert_eq!(w.m.phase(), Phase::Normal);
    assert_eq!(w.count(|e| matches!(e, Effect::SelfFence { .. })), 0);
}

#[test]
fn maintenance_holds_the_shelf_move_with_an_alert() {
    let mut w = shelf_world();
    w.feed(Input::Maintenance(true));
    w.feed(Input::Shelf { readable: 0 });
    w.run(10_000);
    assert_eq!(w.m.phase(), Phase::Normal);
    assert!(w.alerted(Level::Critical, "held by maintenance"));
}

#[test]
fn a_partner_that_fenced_itself_while_owning_pools_is_fenced_and_its_pools_taken() {
    let mut w = World::a();
    w.fence_script.push_back(FenceResult::Confirmed);
    w.pools(0, 1);
    w.run(2000);
    // The partner stops serving (it lost the shelf) and says so in its
    // beats; the interconnect stays up and its slot keeps advancing.
    w.beat_state = Phase::Fenced;
    w.run(300);
    assert_eq!(w.fences(), vec!["ipmi"], "fenced, confirmed as always");
    assert_eq!(w.takeovers(), 1);
    assert!(w.alerted(Level::Critical, "fenced itself"));
    assert_eq!(w.m.phase(), Phase::TakingOver);
}

#[test]
fn a_fenced_partner_that_owns_nothing_or_maintenance_is_left_alone() {
    let mut w = World::a();
    w.pools(1, 0);
    w.run(2000);
    w.beat_state = Phase::Fenced;
    w.run(5000);
    assert!(w.fences().is_empty());
    assert_eq!(w.m.phase(), Phase::Normal);

    let mut w = World::a();
    w.pools(0, 1);
    w.feed(Input::Maintenance(true));
    w.run(2000);
    w.beat_state = Phase::Fenced;
    w.run(5000);
    assert!(w.fences().is_empty());
    assert!(w.alerted(Level::Critical, "maintenance holds"));
}

/// A with one pool, B without, targets answering on both.
fn targets_world() -> World {
    let mut w = World::a();
    w.pools(1, 0);
    w.feed(Input::Targets {
        here: true,
        partner: Some(true),
    });
    w.run(2000);
    w
}

fn self_fences(w: &World) -> usize {
    w.count(|e| matches!(e, Effect::SelfFence { .. }))
}

#[test]
fn targets_down_here_alone_stops_this_controller_after_the_grace() {
    let mut w = targets_world();
    let lost = w.now;
    w.feed(Input::Targets {
        here: false,
        partner: Some(true),
    });
    assert!(w.alerted(
        Level::Critical,
        "targets on this controller stopped serving"
    ));
    // A restart of the daemon (a few seconds) moves nothing.
    w.run(20_000);
    w.feed(Input::Targets {
        here: true,
        partner: Some(true),
    });
    w.run(20_000);
    assert_eq!(self_fences(&w), 0);
    assert!(w.alerted(Level::Info, "targets serving again"));
    // Down past the grace: stop, so the partner fences and takes over.
    let lost2 = w.now;
    w.feed(Input::Targets {
        here: false,
        partner: Some(true),
    });
    w.run(31_000);
    assert_eq!(w.m.phase(), Phase::Fenced);
    let at = w
        .log
        .iter()
        .find(|(t, e)| *t >= lost2 && matches!(e, Effect::SelfFence { .. }))
        .map(|(t, _)| *t)
        .expect("self-fence");
    assert!((30_000..=30_200).contains(&(at - lost2)), "{}", at - lost2);
    assert!(lost < lost2);
    let st = w.m.status(w.now);
    assert_eq!(
        (st.targets_serving, st.partner_targets_serving),
        (Some(false), Some(true))
    );
    assert!(w.alerted(Level::Critical, "targets not serving here"));
}

#[test]
fn targets_down_moves_nothing_when_the_partner_does_not_serve_or_owns_all() {
    // Both down (a bad release on both): the kernels still serve what
    // was built; a stop here would end that too.
    let mut w = targets_world();
    w.feed(Input::Targets {
        here: false,
        partner: Some(false),
    });
    w.run(60_000);
    // The partner unknown (peer link down) is no better.
    w.feed(Input::Targets {
        here: false,
        partner: None,
    });
    w.run(60_000);
    assert_eq!(self_fences(&w), 0);
    assert_eq!(w.m.phase(), Phase::Normal);
    // Owning nothing, there is nothing to hand over.
    let mut w = targets_world();
    w.pools(0, 1);
    w.run(11_000);
    w.feed(Input::Targets {
        here: false,
        partner: Some(true),
    });
    w.run(60_000);
    assert_eq!(self_fences(&w), 0);
    // Never served since start (still starting): not a loss.
    let mut w = World::a();
    w.pools(1, 0);
    w.feed(Input::Targets {
        here: false,
        partner: Some(true),
    });
    w.run(60_000);
    assert_eq!(self_fences(&w), 0);
    // Turned off by policy.
    let mut s = Settings::new("A", "B", &["ipmi"]);
    s.move_on_targets_loss = false;
    let mut w = World::new("B", s);
    w.pools(1, 0);
    w.feed(Input::Targets {
        here: true,
        partner: Some(true),
    });
    w.run(2000);
    w.feed(Input::Targets {
        here: false,
        partner: Some(true),
    });
    w.run(60_000);
    assert_eq!(self_fences(&w), 0);
}
