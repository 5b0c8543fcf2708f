//! Simulated backends: a shelf of heartbeat disks shared by two controllers
//! (a disk can fail or hang, for everyone or for one controller), a
//! watchdog that records pets and firing, fence agents that confirm, fail
//! or power off a simulated controller, and an interconnect pair with links
//! that can be cut. Used by `--sim` and by the story tests.
//!
//! Like the other simulators of the tree, these refuse what the real thing
//! refuses: unaligned offsets, blocks past the end of the area, writes from
//! a controller that is powered off.

use super::{
    Arrival, BoxFuture, DiskError, FenceAgent, FenceOutcome, HeartbeatDisk, Interconnect,
    LinkCounters, Watchdog, WatchdogError, BLOCK,
};
use crate::core::types::Beat;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Blocks in a simulated heartbeat area (header and two slots, with room).
pub const SIM_BLOCKS: u64 = 16;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test thread must not hide the state from the others.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A shared simulated clock in milliseconds, for sims that need time.
#[derive(Debug, Clone, Default)]
pub struct SimClock(Arc<AtomicU64>);

impl SimClock {
    /// Now, in ms since the simulation started.
    pub fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    /// Moves time forward.
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

/// What is wrong with a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFault {
    /// Every I/O fails with EIO.
    Fail,
    /// Every I/O blocks until the fault is cleared.
    Hang,
}

#[derive(Debug, Default)]
struct ShelfState {
    disks: Vec<HashMap<u64, [u8; BLOCK]>>,
    /// Faults for every controller (`None`) or one (`Some(id)`).
    faults: HashMap<(usize, Option<String>), DiskFault>,
    powered_off: HashSet<String>,
    writes: u64,
}

/// The shelf: `n` heartbeat disks seen by both controllers.
#[derive(Debug, Clone)]
pub struct SimShelf {
    state: Arc<(Mutex<ShelfState>, Condvar)>,
}

impl SimShelf {
    /// A shelf of `n` blank disks.
    pub fn new(n: usize) -> SimShelf {
        let st = ShelfState {
            disks: vec![HashMap::new(); n],
            ..ShelfState::default()
        };
        SimShelf {
            state: Arc::new((Mutex::new(st), Condvar::new())),
        }
    }

    /// Disk `index` as controller `controller` sees it.
    pub fn disk(&self, index: usize, controller: &str) -> SimDisk {
        SimDisk {
            shelf: self.clone(),
            index,
            controller: controller.into(),
            name: format!("hb{index}"),
        }
    }

    /// Sets (or with `None` clears) a fault of disk `index`, for every
    /// controller or only for `controller`.
    pub fn set_fault(&self, index: usize, controller: Option<&str>, fault: Option<DiskFault>) {
        let (m, cv) = &*self.state;
        let mut st = lock(m);
        let key = (index, controller.map(str::to_string));
        match fault {
            Some(f) => st.faults.insert(key, f),
            None => st.faults.remove(&key),
        };
        cv.notify_all();
    }

    /// The fault `controller` meets on disk `index`, if any.
    pub fn fault(&self, index: usize, controller: &str) -> Option<DiskFault> {
        let st = lock(&self.state.0);
        st.faults
            .get(&(index, Some(controller.to_string())))
            .or_else(|| st.faults.get(&(index, None)))
            .copied()
    }

    /// Powers a controller off (its I/O fails from now on) or back on.
    pub fn set_power(&self, controller: &str, on: bool) {
        let mut st = lock(&self.state.0);
        if on {
            st.powered_off.remove(controller);
        } else {
            st.powered_off.insert(controller.to_string());
        }
    }

    /// True unless the controller was powered off.
    pub fn powered(&self, controller: &str) -> bool {
        !lock(&self.state.0).powered_off.contains(controller)
    }

    /// Successful block writes so far, all disks together.
    pub fn writes(&self) -> u64 {
        lock(&self.state.0).writes
    }

    fn io<T>(
        &self,
        d: &SimDisk,
        offset: u64,
        f: impl FnOnce(&mut HashMap<u64, [u8; BLOCK]>) -> T,
    ) -> Result<T, DiskError> {
        let (m, cv) = &*self.state;
        let mut st = lock(m);
        let aligned = offset % 4096 == 0 && offset / 4096 < SIM_BLOCKS;
        if !aligned || d.index >= st.disks.len() {
            return Err(DiskError::Range {
                disk: d.name.clone(),
                offset,
            });
        }
        loop {
            let fault = st
                .faults
                .get(&(d.index, Some(d.controller.clone())))
                .or_else(|| st.faults.get(&(d.index, None)))
                .copied();
            match fault {
                Some(DiskFault::Hang) => {
                    st = cv.wait(st).unwrap_or_else(PoisonError::into_inner);
                }
                Some(DiskFault::Fail) => {
                    return Err(DiskError::Io {
                        disk: d.name.clone(),
                        offset,
                        source: std::io::Error::from_raw_os_error(5),
                    })
                }
                None => break,
            }
        }
        if st.powered_off.contains(&d.controller) {
            return Err(DiskError::Io {
                disk: d.name.clone(),
                offset,
                source: std::io::Error::from_raw_os_error(19),
            });
        }
        let disk = &mut st.disks[d.index];
        Ok(f(disk))
    }
}

/// One heartbeat disk of the shelf, seen from one controller.
#[derive(Debug, Clone)]
pub struct SimDisk {
    shelf: SimShelf,
    index: usize,
    controller: String,
    name: String,
}

impl HeartbeatDisk for SimDisk {
    fn name(&self) -> &str {
        &self.name
    }

    fn write_block(&self, offset: u64, block: &[u8; BLOCK]) -> Result<(), DiskError> {
        let shelf = self.shelf.clone();
        shelf.io(self, offset, |d| {
            d.insert(offset, *block);
        })?;
        lock(&shelf.state.0).writes += 1;
        Ok(())
    }

    fn read_block(&self, offset: u64) -> Result<Box<[u8; BLOCK]>, DiskError> {
        self.shelf.io(self, offset, |d| {
            Box::new(d.get(&offset).copied().unwrap_or([0u8; BLOCK]))
        })
    }
}

#[derive(Debug, Default)]
struct WatchdogState {
    pets: u64,
    last_pet_ms: Option<u64>,
    abandoned: bool,
}

/// A watchdog that records pets against the simulated clock.
#[derive(Debug, Clone)]
pub struct SimWatchdog {
    clock: SimClock,
    timeout: Duration,
    state: Arc<Mutex<WatchdogState>>,
}

impl SimWatchdog {
    /// Armed with `timeout` at the clock's current time.
    pub fn new(clock: SimClock, timeout: Duration) -> SimWatchdog {
        let now = clock.now_ms();
        SimWatchdog {
            clock,
            timeout,
            state: Arc::new(Mutex::new(WatchdogState {
                last_pet_ms: Some(now),
                ..WatchdogState::default()
            })),
        }
    }

    /// Pets so far.
    pub fn pets(&self) -> u64 {
        lock(&self.state).pets
    }

    /// True once the device would have reset the controller: not petted
    /// within its timeout (after `abandon` it never is again).
    pub fn fired(&self) -> bool {
        let st = lock(&self.state);
        let limit = u64::try_from(self.timeout.as_millis()).unwrap_or(u64::MAX);
        st.last_pet_ms
            .is_none_or(|t| self.clock.now_ms().saturating_sub(t) >= limit)
    }

    /// True after `abandon` (self-fence).
    pub fn abandoned(&self) -> bool {
        lock(&self.state).abandoned
    }
}

impl Watchdog for SimWatchdog {
    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn pet(&mut self) -> Result<(), WatchdogError> {
        let mut st = lock(&self.state);
        if st.abandoned {
            return Err(WatchdogError::Io {
                source: std::io::Error::other("abandoned: the watchdog is allowed to fire"),
            });
        }
        st.pets += 1;
        st.last_pet_ms = Some(self.clock.now_ms());
        Ok(())
    }

    fn abandon(&mut self) {
        let mut st = lock(&self.state);
        st.abandoned = true;
    }
}

/// How a simulated fence agent behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimFenceMode {
    /// Powers the target off on the shelf and confirms (IPMI-like).
    PowerOff,
    /// Acts but cannot prove it (poison-pill-like).
    Unconfirmed,
    /// Cannot reach anything.
    Fail,
}

/// A fence agent against the simulated shelf.
#[derive(Debug, Clone)]
pub struct SimFenceAgent {
    name: String,
    shelf: SimShelf,
    mode: Arc<Mutex<SimFenceMode>>,
    calls: Arc<Mutex<Vec<String>>>,
}

impl SimFenceAgent {
    /// An agent called `name` acting as `mode`.
    pub fn new(name: &str, shelf: SimShelf, mode: SimFenceMode) -> SimFenceAgent {
        SimFenceAgent {
            name: name.into(),
            shelf,
            mode: Arc::new(Mutex::new(mode)),
            calls: Arc::default(),
        }
    }

    /// Changes its behaviour (shared by clones).
    pub fn set_mode(&self, mode: SimFenceMode) {
        *lock(&self.mode) = mode;
    }

    /// The targets fenced so far, in order.
    pub fn calls(&self) -> Vec<String> {
        lock(&self.calls).clone()
    }
}

impl FenceAgent for SimFenceAgent {
    fn name(&self) -> &str {
        &self.name
    }

    fn fence<'a>(&'a self, target: &'a str) -> BoxFuture<'a, FenceOutcome> {
        let mode = *lock(&self.mode);
        lock(&self.calls).push(target.to_string());
        let out = match mode {
            SimFenceMode::PowerOff => {
                self.shelf.set_power(target, false);
                FenceOutcome::Confirmed {
                    detail: format!("sim power of {target} is off"),
                }
            }
            SimFenceMode::Unconfirmed => FenceOutcome::Unconfirmed {
                detail: "sim: acted, nothing to confirm".into(),
            },
            SimFenceMode::Fail => FenceOutcome::Failed {
                reason: "sim: agent unreachable".into(),
            },
        };
        Box::pin(async move { out })
    }

    fn test<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<String, String>> {
        let mode = *lock(&self.mode);
        let out = match mode {
            SimFenceMode::Fail => Err("sim: agent unreachable".to_string()),
            _ => Ok(format!("sim: could fence {target}")),
        };
        Box::pin(async move { out })
    }

    fn unfence<'a>(&'a self, target: &'a str) -> BoxFuture<'a, Result<String, String>> {
        self.shelf.set_power(target, true);
        let out = Ok(format!("sim power of {target} is on"));
        Box::pin(async move { out })
    }
}

#[derive(Debug, Default)]
struct Wire {
    cut: Vec<bool>,
    /// Arrivals waiting at each end (index 0 and 1).
    queues: [VecDeque<Arrival>; 2],
    counters: [Vec<LinkCounters>; 2],
}

/// The links between the two ends of a simulated interconnect.
#[derive(Debug, Clone)]
pub struct SimLinks {
    wire: Arc<Mutex<Wire>>,
    notify: Arc<[tokio::sync::Notify; 2]>,
}

impl SimLinks {
    /// Cuts (`false`) or restores (`true`) link `link` in both directions.
    pub fn set_link(&self, link: usize, up: bool) {
        if let Some(c) = lock(&self.wire).cut.get_mut(link) {
            *c = !up;
        }
    }

    /// Cuts or restores every link.
    pub fn set_all(&self, up: bool) {
        for c in &mut lock(&self.wire).cut {
            *c = !up;
        }
    }
}

/// One end of the simulated interconnect.
#[derive(Debug, Clone)]
pub struct SimInterconnect {
    links: SimLinks,
    end: usize,
}

/// Two connected ends with `n` links, and the handle that cuts them.
pub fn interconnect_pair(n: usize) -> (SimInterconnect, SimInterconnect, SimLinks) {
    let links = SimLinks {
        wire: Arc::new(Mutex::new(Wire {
            cut: vec![false; n],
            queues: [VecDeque::new(), VecDeque::new()],
            counters: [
                vec![LinkCounters::default(); n],
                vec![LinkCounters::default(); n],
            ],
        })),
        notify: Arc::new([tokio::sync::Notify::new(), tokio::sync::Notify::new()]),
    };
    (
        SimInterconnect {
            links: links.clone(),
            end: 0,
        },
        SimInterconnect {
            links: links.clone(),
            end: 1,
        },
        links,
    )
}

impl SimInterconnect {
    /// Sends synchronously; one result per link.
    pub fn send_now(&self, beat: &Beat) -> Vec<Result<(), String>> {
        let mut w = lock(&self.links.wire);
        let other = 1 - self.end;
        let mut out = Vec::new();
        for link in 0..w.cut.len() {
            if w.cut[link] {
                w.counters[self.end][link].send_errors += 1;
                out.push(Err(format!("sim link {link} cut")));
                continue;
            }
            w.counters[self.end][link].sent += 1;
            w.counters[other][link].received += 1;
            w.queues[other].push_back(Arrival {
                link,
                beat: beat.clone(),
                at: Instant::now(),
            });
            out.push(Ok(()));
        }
        drop(w);
        self.links.notify[other].notify_one();
        out
    }

    /// Takes every beat that arrived at this end, without waiting.
    pub fn drain(&self) -> Vec<Arrival> {
        lock(&self.links.wire).queues[self.end].drain(..).collect()
    }
}

impl Interconnect for SimInterconnect {
    fn send<'a>(&'a self, beat: &'a Beat) -> BoxFuture<'a, Vec<Result<(), String>>> {
        let out = self.send_now(beat);
        Box::pin(async move { out })
    }

    fn recv(&self) -> BoxFuture<'_, Arrival> {
        Box::pin(async move {
            loop {
                let next = lock(&self.links.wire).queues[self.end].pop_front();
                if let Some(a) = next {
                    return a;
                }
                self.links.notify[self.end].notified().await;
            }
        })
    }

    fn counters(&self) -> Vec<LinkCounters> {
        lock(&self.links.wire).counters[self.end].clone()
    }
}

/// Front-end links whose state a test sets.
#[derive(Debug, Clone)]
pub struct SimFrontend(Arc<std::sync::atomic::AtomicBool>);

impl SimFrontend {
    /// Links that start up.
    pub fn new() -> Self {
        SimFrontend(Arc::new(std::sync::atomic::AtomicBool::new(true)))
    }

    /// Sets every link up or down.
    pub fn set(&self, up: bool) {
        self.0.store(up, Ordering::SeqCst);
    }
}

impl Default for SimFrontend {
    fn default() -> Self {
        Self::new()
    }
}

impl super::FrontendLinks for SimFrontend {
    fn any_up(&self) -> Result<bool, String> {
        Ok(self.0.load(Ordering::SeqCst))
    }
}

/// Shelf disks whose readable count a test sets.
#[derive(Debug, Clone)]
pub struct SimShelfDisks {
    count: usize,
    readable: Arc<std::sync::atomic::AtomicUsize>,
}

impl SimShelfDisks {
    /// `count` disks, all readable.
    pub fn new(count: usize) -> Self {
        SimShelfDisks {
            count,
            readable: Arc::new(std::sync::atomic::AtomicUsize::new(count)),
        }
    }

    /// Makes the first `n` disks readable and the rest not.
    pub fn set_readable(&self, n: usize) {
        self.readable.store(n, Ordering::SeqCst);
    }
}

impl super::ShelfDisks for SimShelfDisks {
    fn count(&self) -> usize {
        self.count
    }

    fn readable(&self, i: usize) -> bool {
        i < self.readable.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disks_store_blocks_and_refuse_bad_offsets() {
        let shelf = SimShelf::new(3);
        let a = shelf.disk(0, "A");
        let b = shelf.disk(0, "B");
        let blk = [7u8; BLOCK];
        a.write_block(4096, &blk).unwrap();
        assert_eq!(*b.read_block(4096).unwrap(), blk);
        assert_eq!(*b.read_block(8192).unwrap(), [0u8; BLOCK]);
        assert!(matches!(
            a.write_block(100, &blk),
            Err(DiskError::Range { .. })
        ));
        assert!(matches!(
            a.read_block(SIM_BLOCKS * 4096),
            Err(DiskError::Range { .. })
        ));
    }

    #[test]
    fn faults_apply_to_everyone_or_one_controller() {
        let shelf = SimShelf::new(2);
        shelf.set_fault(1, Some("A"), Some(DiskFault::Fail));
        assert!(shelf.disk(1, "A").read_block(0).is_err());
        assert!(shelf.disk(1, "B").read_block(0).is_ok());
        shelf.set_fault(1, None, Some(DiskFault::Fail));
        assert!(shelf.disk(1, "B").read_block(0).is_err());
        shelf.set_fault(1, None, None);
        shelf.set_fault(1, Some("A"), None);
        assert!(shelf.disk(1, "A").read_block(0).is_ok());
    }

    #[test]
    fn a_hung_disk_blocks_only_its_caller_until_cleared() {
        let shelf = SimShelf::new(2);
        shelf.set_fault(0, None, Some(DiskFault::Hang));
        let d0 = shelf.disk(0, "A");
        let t = std::thread::spawn(move || d0.write_block(0, &[1u8; BLOCK]));
        // The other disk still answers.
        shelf.disk(1, "A").write_block(0, &[2u8; BLOCK]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        assert!(!t.is_finished());
        shelf.set_fault(0, None, None);
        t.join().unwrap().unwrap();
    }

    #[test]
    fn powered_off_controllers_cannot_write() {
        let shelf = SimShelf::new(1);
        let agent = SimFenceAgent::new("ipmi", shelf.clone(), SimFenceMode::PowerOff);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let out = rt.block_on(agent.fence("A"));
        assert!(matches!(out, FenceOutcome::Confirmed { .. }));
        assert!(shelf.disk(0, "A").write_block(0, &[1u8; BLOCK]).is_err());
        assert!(shelf.disk(0, "B").write_block(0, &[1u8; BLOCK]).is_ok());
        rt.block_on(agent.unfence("A")).unwrap();
        assert!(shelf.disk(0, "A").write_block(0, &[1u8; BLOCK]).is_ok());
        assert_eq!(agent.calls(), vec!["A"]);
    }

    #[test]
    fn watchdog_fires_when_abandoned_or_late() {
        let clock = SimClock::default();
        let mut w = SimWatchdog::new(clock.clone(), Duration::from_secs(5));
        clock.advance(4000);
        w.pet().unwrap();
        clock.advance(4000);
        assert!(!w.fired());
        clock.advance(1000);
        assert!(w.fired());
        w.pet().unwrap();
        assert!(!w.fired());
        w.abandon();
        assert!(w.pet().is_err());
        clock.advance(5000);
        assert!(w.fired() && w.abandoned());
        assert_eq!(w.pets(), 2);
    }

    #[test]
    fn links_carry_beats_until_cut() {
        let (a, b, links) = interconnect_pair(2);
        let beat = Beat {
            controller: "A".into(),
            incarnation: 1,
            epoch: crate::core::types::Epoch {
                counter: 0,
                controller: "A".into(),
            },
            seq: 1,
            state: 2,
            shelf: 8,
        };
        assert_eq!(a.send_now(&beat), vec![Ok(()), Ok(())]);
        let got: Vec<usize> = b.drain().iter().map(|x| x.link).collect();
        assert_eq!(got, vec![0, 1]);
        links.set_link(0, false);
        let r = a.send_now(&beat);
        assert!(r[0].is_err() && r[1].is_ok());
        assert_eq!(b.drain().len(), 1);
        assert!(a.drain().is_empty());
        assert_eq!(a.counters()[0].send_errors, 1);
        assert_eq!(b.counters()[1].received, 2);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let arrived = rt.block_on(async {
            let recv = b.recv();
            a.send_now(&beat);
            recv.await
        });
        assert_eq!(arrived.link, 1);
    }
}
