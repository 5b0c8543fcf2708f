//! Durability: a child process applies two-object transactions and prints
//! each acknowledged version; the parent kills it with SIGKILL at some
//! moment, reopens the database and checks that every acknowledged change is
//! there and that no transaction is half applied. Repeated on the same file.
#![allow(clippy::unwrap_used)] // tests: a failed step should panic with its location

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::*;
use duplex_config_keeper::store::Store;
use serde_json::json;

const DB_ENV: &str = "DUPLEX_CK_CRASH_DB";

/// The child: runs only when spawned by `kill_9_loses_no_acknowledged_apply`.
#[test]
#[ignore = "child process of kill_9_loses_no_acknowledged_apply"]
fn crash_child() {
    let Ok(path) = std::env::var(DB_ENV) else {
        return;
    };
    let mut s = Store::open(std::path::Path::new(&path), "a").unwrap();
    let start = s.section_version();
    for i in start + 1.. {
        // Each transaction writes a host and a group naming it: after a
        // crash, one without the other is a half-applied transaction.
        let r = apply(
            &mut s,
            json!([
                host(&format!("h{i}")),
                group(&format!("g{i}"), &[&format!("h{i}")])
            ]),
        )
        .unwrap();
        assert_eq!(r.section_version, i);
        println!("ACK {i}");
    }
}

#[test]
#[allow(clippy::disallowed_methods)] // re-executes this test binary; no external tool
fn kill_9_loses_no_acknowledged_apply() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.db");
    let exe = std::env::current_exe().unwrap();
    let mut last_acked = 0u64;
    for (round, kill_after) in [7u64, 23, 1, 40].into_iter().enumerate() {
        let mut child = std::process::Command::new(&exe)
            .args([
                "--ignored",
                "--exact",
                "crash_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DB_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut seen = 0;
        while seen < kill_after {
            let line = lines.next().expect("child ended early").unwrap();
            if let Some(v) = line.strip_prefix("ACK ") {
                last_acked = v.parse().unwrap();
                seen += 1;
            }
        }
        child.kill().unwrap(); // SIGKILL
                               // Acks printed before the kill landed are acknowledged too.
        for line in lines {
            if let Some(v) = line.unwrap().strip_prefix("ACK ") {
                last_acked = v.parse().unwrap();
            }
        }
        child.wait().unwrap();

        let s = Store::open(&path, "a").unwrap();
        assert_eq!(s.integrity_check().unwrap(), "ok", "round {round}");
        assert!(
            s.section_version() >= last_acked,
            "round {round}: lost acknowledged version {last_acked}"
        );
        let cfg = s.config();
        for i in 1..=s.section_version() {
            assert!(
                cfg.hosts.contains_key(&format!("h{i}")),
                "round {round}: h{i} missing"
            );
            assert!(
                cfg.host_groups.contains_key(&format!("g{i}")),
                "round {round}: g{i} missing"
            );
        }
        assert_eq!(
            cfg.hosts.len(),
            cfg.host_groups.len(),
            "round {round}: half-applied transaction"
        );
        assert_eq!(cfg.hosts.len() as u64, s.section_version());
        assert_eq!(s.history(0, 100_000).unwrap().len() as u64, s.version());
    }
    assert!(last_acked >= 71);
}
