//! Whole stories: two simulated controllers, each with its own state
//! machine, on one simulated shelf, interconnect and clock. The harness
//! plays the driver's part (beats, per-disk slot I/O through the
//! `HeartbeatDisk` trait, fence agents, a takeover that imports pools) and
//! checks after every step that no pool is active on two powered
//! controllers.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use duplex_heartbeat::backend::sim::{
    interconnect_pair, DiskFault, SimClock, SimDisk, SimFenceAgent, SimFenceMode, SimInterconnect,
    SimLinks, SimShelf, SimWatchdog,
};
use duplex_heartbeat::backend::{FenceAgent, FenceOutcome, HeartbeatDisk, Watchdog};
use duplex_heartbeat::core::machine::{
    Effect, FenceResult, Input, Level, Machine, PartnerRead, Settings,
};
use duplex_heartbeat::core::slot::{AreaHeader, Slot, SlotError};
use duplex_heartbeat::core::types::{Epoch, Phase};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

const STEP: u64 = 100;
const IDS: [&str; 2] = ["A", "B"];

struct Ctl {
    id: String,
    partner: String,
    m: Option<Machine>,
    frozen: bool,
    ic: SimInterconnect,
    disks: Vec<SimDisk>,
    wd: SimWatchdog,
    agents: Vec<SimFenceAgent>,
    imported: BTreeSet<String>,
    seq: u64,
    boots: u64,
    takeovers: usize,
    locked: bool,
    alerts: Vec<(Level, String)>,
    /// Shelf disks this controller reads (the harness's shelf probe).
    shelf_readable: u8,
    /// What the machine was last told about them.
    shelf_sent: Option<u8>,
}

struct Cluster {
    clock: SimClock,
    shelf: SimShelf,
    links: SimLinks,
    ctl: Vec<Ctl>,
    owners: BTreeMap<String, String>,
    epoch: Epoch,
    rt: tokio::runtime::Runtime,
    header: AreaHeader,
}

impl Cluster {
    fn new(agent_mode: SimFenceMode) -> Cluster {
        let clock = SimClock::default();
        let shelf = SimShelf::new(3);
        let header = AreaHeader {
            cluster_id: "story".into(),
            controllers: ["A".into(), "B".into()],
        };
        let block = header.encode().unwrap();
        for d in 0..3 {
            shelf.disk(d, "A").write_block(0, &block).unwrap();
        }
        let (ea, eb, links) = interconnect_pair(2);
        let mut ctl = Vec::new();
        for (i, ic) in [ea, eb].into_iter().enumerate() {
            let id = IDS[i];
            ctl.push(Ctl {
                id: id.into(),
                partner: IDS[1 - i].into(),
                m: None,
                frozen: false,
                ic,
                disks: (0..3).map(|d| shelf.disk(d, id)).collect(),
                wd: SimWatchdog::new(clock.clone(), Duration::from_secs(5)),
                agents: vec![
                    SimFenceAgent::new("ipmi", shelf.clone(), agent_mode),
                    SimFenceAgent::new("scsi_pr", shelf.clone(), agent_mode),
                ],
                imported: BTreeSet::from([format!("pool-{id}")]),
                seq: 0,
                boots: 0,
                takeovers: 0,
                locked: false,
                alerts: Vec::new(),
                shelf_readable: 8,
                shelf_sent: None,
            });
        }
        Cluster {
            clock,
            shelf,
            links,
            ctl,
            owners: BTreeMap::from([("pool-A".into(), "A".into()), ("pool-B".into(), "B".into())]),
            epoch: Epoch {
                counter: 1,
                controller: "A".into(),
            },
            rt: tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap(),
            header,
        }
    }

    fn c(&self, id: &str) -> &Ctl {
        self.ctl.iter().find(|c| c.id == id).unwrap()
    }

    fn c_mut(&mut self, id: &str) -> &mut Ctl {
        self.ctl.iter_mut().find(|c| c.id == id).unwrap()
    }

    fn phase(&self, id: &str) -> Option<Phase> {
        self.c(id).m.as_ref().map(Machine::phase)
    }

    fn boot(&mut self, i: usize) {
        let now = self.clock.now_ms();
        let c = &mut self.ctl[i];
        c.boots += 1;
        let s = Settings::new(&c.id, &c.partner, &["ipmi", "scsi_pr"]);
        let incarnation = 1000 * (i as u64 + 1) + c.boots;
        let mut m = Machine::new(s, now, incarnation, self.epoch.clone());
        let mine = self.owners.values().filter(|o| **o == c.id).count();
        let theirs = self.owners.len() - mine;
        let _ = m.step(
            now,
            Input::Pools {
                mine,
                partner: theirs,
            },
        );
        c.m = Some(m);
        c.shelf_sent = None;
        c.wd = SimWatchdog::new(self.clock.clone(), Duration::from_secs(5));
    }

    /// Runs `ms` of simulated time, checking the invariant at every step.
    fn run(&mut self, ms: u64) {
        let end = self.clock.now_ms() + ms;
        while self.clock.now_ms() < end {
            self.clock.advance(STEP);
            for i in 0..2 {
                self.step_controller(i);
            }
            self.check_invariant();
        }
    }

    fn step_controller(&mut self, i: usize) {
        let now = self.clock.now_ms();
        let id = self.ctl[i].id.clone();
        if !self.shelf.powered(&id) {
            // Power off: everything in memory is gone, pools inactive.
            let c = &mut self.ctl[i];
            c.m = None;
            c.imported.clear();
            return;
        }
        if self.ctl[i].frozen {
            // A paused controller keeps its state and its active pools.
            return;
        }
        if self.ctl[i].m.is_none() {
            self.boot(i);
        }
        let mut inputs: VecDeque<Input> = VecDeque::new();
        for a in self.ctl[i].ic.drain() {
            inputs.push_back(Input::Beat {
                link: a.link,
                beat: a.beat,
            });
        }
        if now % 200 == 0 {
            let partner = self.ctl[i].partner.clone();
            let off = self.header.slot_offset(&partner).unwrap();
            for (disk, d) in self.ctl[i].disks.iter().enumerate() {
                if self.shelf.fault(disk, &id) == Some(DiskFault::Hang) {
                    continue; // its thread is stuck; nothing comes back
                }
                let read = match d.read_block(off) {
                    Ok(b) => match Slot::decode(&b[..]) {
                        Ok(s) => PartnerRead::Slot(s),
                        Err(SlotError::Blank) => PartnerRead::Blank,
                        Err(e) => PartnerRead::Error(e.to_string()),
                    },
                    Err(e) => PartnerRead::Error(e.to_string()),
                };
                inputs.push_back(Input::PartnerSlot { disk, read });
            }
        }
        let readable = self.ctl[i].shelf_readable;
        if self.ctl[i].shelf_sent.replace(readable) != Some(readable) {
            inputs.push_back(Input::Shelf { readable });
        }
        inputs.push_back(Input::Tick);
        while let Some(input) = inputs.pop_front() {
            let fx = {
                let Some(m) = self.ctl[i].m.as_mut() else {
                    return;
                };
                m.step(now, input)
            };
            for e in fx {
                self.effect(i, e, &mut inputs);
            }
        }
        let c = &mut self.ctl[i];
        if let Some(m) = &c.m {
            c.seq += 1;
            let beat = m.beat(c.seq);
            c.ic.send_now(&beat);
        }
        if c.wd.fired() {
            // Reset by the watchdog: a reboot next step.
            c.m = None;
            c.imported.clear();
        }
    }

    fn effect(&mut self, i: usize, e: Effect, inputs: &mut VecDeque<Input>) {
        let id = self.ctl[i].id.clone();
        match e {
            Effect::WriteSlot(slot) => {
                let off = self.header.slot_offset(&id).unwrap();
                let block = slot.encode().unwrap();
                for (disk, d) in self.ctl[i].disks.iter().enumerate() {
                    if self.shelf.fault(disk, &id) == Some(DiskFault::Hang) {
                        continue;
                    }
                    let ok = d.write_block(off, &block).is_ok();
                    inputs.push_back(Input::SlotWritten {
                        disk,
                        counter: slot.counter,
                        ok,
                    });
                }
            }
            Effect::FencePartner { agent, target } => {
                let a = self.ctl[i]
                    .agents
                    .iter()
                    .find(|a| a.name() == agent)
                    .unwrap()
                    .clone();
                let (result, detail) = match self.rt.block_on(a.fence(&target)) {
                    FenceOutcome::Confirmed { detail } => (FenceResult::Confirmed, detail),
                    FenceOutcome::Unconfirmed { detail } => (FenceResult::Unconfirmed, detail),
                    FenceOutcome::Failed { reason } => (FenceResult::Failed, reason),
                };
                inputs.push_back(Input::FenceDone {
                    agent,
                    result,
                    detail,
                });
            }
            Effect::StartTakeover { epoch } => {
                assert!(epoch > self.epoch, "takeover under a stale epoch");
                self.epoch = epoch.clone();
                let partner = self.ctl[i].partner.clone();
                let theirs: Vec<String> = self
                    .owners
                    .iter()
                    .filter(|(_, o)| **o == partner)
                    .map(|(p, _)| p.clone())
                    .collect();
                for p in theirs {
                    self.owners.insert(p.clone(), id.clone());
                    self.ctl[i].imported.insert(p);
                }
                self.ctl[i].takeovers += 1;
                inputs.push_back(Input::TakeoverDone { epoch });
            }
            Effect::MoveForFrontend => {
                // A planned move: both run, so the pools simply change hands.
                let partner = self.ctl[i].partner.clone();
                let j = self.ctl.iter().position(|c| c.id == partner).unwrap();
                let mine: Vec<String> = self
                    .owners
                    .iter()
                    .filter(|(_, o)| **o == id)
                    .map(|(p, _)| p.clone())
                    .collect();
                for p in mine {
                    self.owners.insert(p.clone(), partner.clone());
                    self.ctl[i].imported.remove(&p);
                    self.ctl[j].imported.insert(p);
                }
                inputs.push_back(Input::FrontendMoveDone {
                    ok: true,
                    reason: String::new(),
                });
            }
            Effect::SelfFence { .. } => self.ctl[i].imported.clear(),
            Effect::PetWatchdog => {
                let _ = self.ctl[i].wd.pet();
            }
            Effect::StopWatchdog => self.ctl[i].wd.abandon(),
            Effect::LockConfig { .. } => self.ctl[i].locked = true,
            Effect::UnlockConfig => self.ctl[i].locked = false,
            Effect::Alert { level, message } => self.ctl[i].alerts.push((level, message)),
            Effect::StateChanged { .. } => {}
            // The sim agents have nothing of their own to register.
            Effect::JoinFence => {}
        }
    }

    fn check_invariant(&self) {
        for pool in self.owners.keys() {
            let active: Vec<&str> = self
                .ctl
                .iter()
                .filter(|c| self.shelf.powered(&c.id) && c.imported.contains(pool))
                .map(|c| c.id.as_str())
                .collect();
            assert!(
                active.len() <= 1,
                "{pool} active on {active:?} at {} ms",
                self.clock.now_ms()
            );
        }
    }

    fn takeovers(&self) -> usize {
        self.ctl.iter().map(|c| c.takeovers).sum()
    }

    fn imported(&self, id: &str) -> Vec<String> {
        self.c(id).imported.iter().cloned().collect()
    }
}

fn both_pools() -> Vec<String> {
    vec!["pool-A".to_string(), "pool-B".to_string()]
}

#[test]
fn healthy_pair_stays_normal() {
    let mut c = Cluster::new(SimFenceMode::PowerOff);
    c.run(20_000);
    assert_eq!(c.phase("A"), Some(Phase::Normal));
    assert_eq!(c.phase("B"), Some(Phase::Normal));
    assert_eq!(c.takeovers(), 0);
    assert!(c.c("A").wd.pets() > 150);
    assert!(!c.c("A").wd.fired() && !c.c("B").wd.fired());
}

#[test]
fn kill_a_then_b_fences_and_takes_over_exactly_once() {
    let mut c = Cluster::new(SimFenceMode::PowerOff);
    c.run(5000);
    c.shelf.set_power("A", false);
    c.run(10_000);
    assert_eq!(c.phase("B"), Some(Phase::Survivor));
    assert_eq!(c.imported("B"), both_pools());
    assert_eq!(c.c("B").takeovers, 1);
    assert_eq!(c.c("B").agents[0].calls(), vec!["A"]);
    assert!(!c.c("B").locked);
    c.run(30_000);
    assert_eq!(c.takeovers(), 1, "exactly once");
}

#[test]
fn freeze_a_then_b_fences_before_importing() {
    let mut c = Cluster::new(SimFenceMode::PowerOff);
    c.run(5000);
    c.c_mut("A").frozen = true;
    c.run(10_000);
    // The fence powered the frozen A off; only then did B import.
    assert!(!c.shelf.powered("A"));
    assert_eq!(c.phase("B"), Some(Phase::Survivor));
    assert_eq!(c.imported("B"), both_pools());
    // Thawing a powered-off controller does nothing; it is off.
    c.c_mut("A").frozen = false;
    c.run(5000);
    assert_eq!(c.phase("A"), None);
    assert_eq!(c.takeovers(), 1);
}

#[test]
fn a_frozen_controller_that_is_not_fenced_is_never_taken_over() {
    // Agents cannot act: A stays frozen with its pool active; B must wait.
    let mut c = Cluster::new(SimFenceMode::Fail);
    c.run(5000);
    c.c_mut("A").frozen = true;
    c.run(60_000);
    assert_eq!(c.takeovers(), 0);
    assert_eq!(c.phase("B"), Some(Phase::Fencing));
    assert!(c.c("B").locked);
    assert!(c
        .c("B")
        .alerts
        .iter()
        .any(|(l, m)| *l == Level::Critical && m.contains("every fence agent failed")));
    // A thaws: it reads B's poison pill and stops serving.
    c.c_mut("A").frozen = false;
    c.run(2000);
    assert_eq!(c.phase("A"), Some(Phase::Fenced));
    assert!(c.imported("A").is_empty());
    assert_eq!(c.takeovers(), 0, "still no confirmed fence");
}

#[test]
fn cut_interconnect_with_both_alive_nobody_takes_over_both_lock() {
    let mut c = Cluster::new(SimFenceMode::PowerOff);
    c.run(5000);
    c.links.set_all(false);
    c.run(30_000);
    for id in IDS {
        assert_eq!(c.phase(id), Some(Phase::Waiting), "{id}");
        assert!(c.c(id).locked, "{id} locked");
        assert_eq!(c.imported(id), vec![format!("pool-{id}")]);
    }
    assert_eq!(c.takeovers(), 0);
    assert!(c.c("B").agents.iter().all(|a| a.calls().is_empty()));
    c.links.set_all(true);
    c.run(2000);
    for id in IDS {
        assert_eq!(c.phase(id), Some(Phase::Normal), "{id}");
        assert!(!c.c(id).locked, "{id} unlocked");
    }
}

#[test]
fn one_link_cut_is_an_alert_only() {
    let mut c = Cluster::new(SimFenceMode::PowerOff);
    c.run(3000);
    c.links.set_link(1, false);
    c.run(10_000);
    for id in IDS {
        assert_eq!(c.phase(id), Some(Phase::Normal));
        assert!(c
            .c(id)
            .alerts
            .iter()
            .any(|(l, m)| *l == Level::Warning && m.contains("link 1")));
        assert!(!c.c(id).locked);
    }
    assert_eq!(c.takeovers(), 0);
}

#[test]
fn a_returns_and_rejoins_through_the_ack() {
    let mut c = Cluster::new(SimFenceMode::PowerOff);
    c.run(5000);
    c.shelf.set_power("A", false);
    c.run(10_000);
    assert_eq!(c.phase("B"), Some(Phase::Survivor));
    // A's power comes back (an operator, or unfence).
    let ipmi = c.c("B").agents[0].clone();
    c.rt.block_on(ipmi.unfence("A")).unwrap();
    c.run(300);
    assert_eq!(c.phase("A"), Some(Phase::Fenced), "boots fenced");
    assert!(c.imported("A").is_empty());
    c.run(3000);
    assert_eq!(c.phase("A"), Some(Phase::Normal));
    assert_eq!(c.phase("B"), Some(Phase::Normal));
    assert!(c.imported("A").is_empty(), "owns nothing until giveback");
    assert_eq!(c.imported("B"), both_pools());
    assert_eq!(c.takeovers(), 1);
    // The messages are gone from B's slot.
    let off = c.header.slot_offset("B").unwrap();
    let b = Slot::decode(&c.shelf.disk(0, "A").read_block(off).unwrap()[..]).unwrap();
    assert_eq!((b.fence, b.ack), (None, None));
    assert_eq!(
        b.epoch,
        Epoch {
            counter: 2,
            controller: "B".into()
        }
    );
    // And later silences are handled normally again.
    c.run(10_000);
    assert_eq!(c.takeovers(), 1);
}

#[test]
fn both_boot_together_with_the_interconnect_down_nobody_fences() {
    let mut c = Cluster::new(SimFenceMode::PowerOff);
    c.links.set_all(false);
    c.run(30_000);
    for id in IDS {
        assert_eq!(c.phase(id), Some(Phase::Waiting), "{id}");
        assert!(c.c(id).agents.iter().all(|a| a.calls().is_empty()));
    }
    c.links.set_all(true);
    c.run(2000);
    assert_eq!(c.phase("A"), Some(Phase::Normal));
    assert_eq!(c.takeovers(), 0);
}

#[test]
fn a_boots_alone_and_takes_over_only_after_disk_timeout_and_a_fence() {
    let mut c = Cluster::new(SimFenceMode::PowerOff);
    c.shelf.set_power("B", false);
    c.run(8000);
    assert_eq!(c.takeovers(), 0, "B may still be booting");
    assert_eq!(c.phase("A"), Some(Phase::Waiting));
    c.run(6000);
    assert_eq!(c.c("A").takeovers, 1);
    assert_eq!(c.imported("A"), both_pools());
}

#[test]
fn a_losing_the_shelf_with_the_interconnect_down_self_fences_and_b_takes_over() {
    let mut c = Cluster::new(SimFenceMode::PowerOff);
    c.run(5000);
    for d in 0..3 {
        c.shelf.set_fault(d, Some("A"), Some(DiskFault::Fail));
    }
    c.run(5000);
    // The interconnect proves A is a member: nothing happens.
    assert_eq!(c.phase("A"), Some(Phase::Normal));
    assert_eq!(c.takeovers(), 0);
    c.links.set_all(false);
    c.run(10_000);
    // B won the race here (A's slot was long frozen): A is off.
    assert_eq!(c.c("B").takeovers, 1);
    assert_eq!(c.imported("B"), both_pools());
    assert!(!c.shelf.powered("A"));
}

#[test]
fn a_losing_its_path_to_the_shelf_alone_hands_its_pool_to_b_through_a_fence() {
    // The pool disks go, the heartbeat disks and the interconnect stay
    // (matrix item 15): A stops itself, B fences it and takes its pool.
    let mut c = Cluster::new(SimFenceMode::PowerOff);
    c.run(5000);
    c.c_mut("A").shelf_readable = 0;
    c.run(1500);
    assert_eq!(c.phase("A"), Some(Phase::Normal), "inside shelf_grace");
    assert_eq!(c.imported("A"), vec!["pool-A".to_string()]);
    c.run(2000);
    assert!(!c.shelf.powered("A"), "B fenced A");
    assert_eq!(c.c("B").agents[0].calls(), vec!["A"]);
    assert_eq!(c.phase("B"), Some(Phase::Survivor));
    assert_eq!(c.imported("B"), both_pools());
    assert_eq!(c.takeovers(), 1);
    // A comes back with its path repaired and rejoins through the ack.
    c.c_mut("A").shelf_readable = 8;
    let ipmi = c.c("B").agents[0].clone();
    c.rt.block_on(ipmi.unfence("A")).unwrap();
    c.run(3300);
    assert_eq!(c.phase("A"), Some(Phase::Normal));
    assert!(c.imported("A").is_empty(), "owns nothing until giveback");
    c.run(10_000);
    assert_eq!(c.takeovers(), 1);
}

#[test]
fn the_shelf_lost_on_both_controllers_moves_nothing() {
    let mut c = Cluster::new(SimFenceMode::PowerOff);
    c.run(5000);
    c.c_mut("A").shelf_readable = 0;
    c.c_mut("B").shelf_readable = 0;
    c.run(20_000);
    assert_eq!(c.takeovers(), 0);
    assert_eq!(c.phase("A"), Some(Phase::Normal));
    assert_eq!(c.phase("B"), Some(Phase::Normal));
    assert!(c
        .c("A")
        .alerts
        .iter()
        .any(|(l, m)| *l == Level::Critical && m.contains("no shelf disk readable")));
}

#[test]
fn a_that_cannot_write_a_majority_while_silent_stops_serving_by_itself() {
    // No agent can act, so only A's own rule protects the pools.
    let mut c = Cluster::new(SimFenceMode::Fail);
    c.run(5000);
    c.shelf.set_fault(0, Some("A"), Some(DiskFault::Fail));
    c.shelf.set_fault(2, Some("A"), Some(DiskFault::Hang));
    c.links.set_all(false);
    c.run(3000);
    assert_eq!(c.phase("A"), Some(Phase::Fenced));
    assert!(c.imported("A").is_empty());
    assert!(c.c("A").wd.abandoned());
    assert!(c
        .c("A")
        .alerts
        .iter()
        .any(|(_, m)| m.contains("self-fence")));
    // Its watchdog resets it; it boots, reads B's poison pill on the one
    // disk it still reaches, and stays out of service.
    c.run(10_000);
    assert!(c.c("A").boots >= 2);
    assert_eq!(c.phase("A"), Some(Phase::Fenced));
    assert!(c.imported("A").is_empty());
    assert_eq!(c.takeovers(), 0);
    c.shelf.set_fault(2, Some("A"), None);
}

#[test]
fn a_hung_disk_does_not_stop_the_others() {
    let mut c = Cluster::new(SimFenceMode::PowerOff);
    c.shelf.set_fault(1, None, Some(DiskFault::Hang));
    c.run(5000);
    c.links.set_all(false);
    c.run(20_000);
    // Two disks of three are a majority: both prove membership and wait.
    for id in IDS {
        assert_eq!(c.phase(id), Some(Phase::Waiting), "{id}");
    }
    assert_eq!(c.takeovers(), 0);
    c.shelf.set_fault(1, None, None);
}
