//! The driver on real threads and tokio time, with simulated backends: two
//! controllers beat, write and read their slots; when A dies B fences it.
//! No router runs here, so the takeover's calls fail and B stays in
//! `taking_over` (the orchestration itself is tested against a fake router).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a panic is the failure report

use duplex_heartbeat::backend::sim::{
    interconnect_pair, SimClock, SimFenceAgent, SimFenceMode, SimShelf, SimWatchdog,
};
use duplex_heartbeat::backend::{FenceAgent, HeartbeatDisk, Watchdog};
use duplex_heartbeat::core::machine::Settings;
use duplex_heartbeat::core::types::Phase;
use duplex_heartbeat::driver::{init_area, lock, Backends, Driver, Shared, Timing};
use duplex_services::RouterClient;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn phase(s: &Arc<Mutex<Shared>>) -> Option<Phase> {
    lock(s).status.as_ref().map(|st| st.phase)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_drivers_detect_a_dead_partner_and_fence_it() {
    let shelf = SimShelf::new(3);
    for i in 0..3 {
        init_area(&shelf.disk(i, "A"), "t", ["A", "B"]).unwrap();
    }
    let (ea, eb, _links) = interconnect_pair(2);
    let dir = tempfile::tempdir().unwrap();
    let router = RouterClient::new(dir.path().join("no-router.sock"));
    let mut handles = Vec::new();
    let mut shared = Vec::new();
    let mut agents = Vec::new();
    for (id, partner, ic) in [("A", "B", ea), ("B", "A", eb)] {
        let agent = SimFenceAgent::new("ipmi", shelf.clone(), SimFenceMode::PowerOff);
        agents.push(agent.clone());
        let disks: Vec<Arc<dyn HeartbeatDisk>> = (0..3)
            .map(|i| Arc::new(shelf.disk(i, id)) as Arc<dyn HeartbeatDisk>)
            .collect();
        let sh = Arc::new(Mutex::new(Shared::default()));
        shared.push(Arc::clone(&sh));
        let (_tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let driver = Driver {
            settings: Settings::new(id, partner, &["ipmi"]),
            timing: Timing {
                hb_interval: Duration::from_millis(100),
                disk_interval: Duration::from_millis(200),
            },
            backends: Backends {
                disks,
                watchdog: Some(Box::new(SimWatchdog::new(
                    SimClock::default(),
                    Duration::from_secs(5),
                )) as Box<dyn Watchdog>),
                agents: vec![Arc::new(agent) as Arc<dyn FenceAgent>],
                interconnect: Arc::new(ic),
                frontend: None,
                shelf: None,
            },
            router: router.clone(),
            shared: sh,
            commands: rx,
            auto_failback: false,
        };
        handles.push(tokio::spawn(async move {
            let _keep = _tx;
            driver.run().await;
        }));
    }
    // Both read a majority and hear each other.
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if phase(&shared[0]) == Some(Phase::Normal) && phase(&shared[1]) == Some(Phase::Normal) {
            ok = true;
            break;
        }
    }
    assert!(
        ok,
        "both normal: {:?} {:?}",
        phase(&shared[0]),
        phase(&shared[1])
    );
    let st = lock(&shared[1]).status.clone().unwrap();
    assert!(st.link_age_ms.iter().all(|a| a.unwrap() < 500), "{st:?}");
    assert!(st.write_age_ms.iter().all(|a| a.unwrap() < 1000), "{st:?}");
    let lat = lock(&shared[1]).write_latency.clone();
    assert_eq!(lat.len(), 3);
    assert!(
        lat.iter().all(|l| l.samples > 0 && l.p99_ms < 100),
        "{lat:?}"
    );

    // A dies: its driver stops and its power goes.
    handles[0].abort();
    shelf.set_power("A", false);
    let mut fenced = false;
    for _ in 0..80 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if agents[1].calls() == vec!["A"] {
            fenced = true;
            break;
        }
    }
    assert!(fenced, "B fenced A; B is {:?}", phase(&shared[1]));
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The epoch is on the disks; with no router the takeover cannot record.
    assert_eq!(phase(&shared[1]), Some(Phase::TakingOver));
    assert!(agents[0].calls().is_empty(), "A never fenced B");
    handles[1].abort();
}
