//! The wire JSON of targets' read replies (`target.status`, `target.show`,
//! `target.access_states`, `net.status`), pinned by golden files under
//! `tests/golden/`: the simulated configfs and interfaces are driven from a
//! fixture in `config.get`'s wire form (`golden/config.json`), and every
//! reply is compared with the file captured before a change. A difference
//! is a change of the wire: make it on purpose, list it in CHANGELOG.md and
//! capture again with `DUPLEX_BLESS_GOLDEN=1 cargo test -p duplex-targets
//! --test golden`.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use duplex_api::model::Config;
use duplex_targets::backend::net::NetBackend;
use duplex_targets::backend::sim::SimBackend;
use duplex_targets::core::desired::Local;
use duplex_targets::core::model::AccessState;
use duplex_targets::reconciler::Reconciler;
use duplex_targets::rpc::Shared;
use serde_json::Value;
use std::path::PathBuf;

/// The devices of v1 and v2 (pool p1, imported here), of v3 (pool p2,
/// imported on B: an `error` table here); v4's device is missing.
const BACKED: [&str; 2] = [
    "/dev/mapper/dxvol-5e1f0c1ed0c14a5b9f3e2d1c0b0a0901",
    "/dev/mapper/dxvol-5e1f0c1ed0c14a5b9f3e2d1c0b0a0902",
];
const UNBACKED: &str = "/dev/mapper/dxvol-5e1f0c1ed0c14a5b9f3e2d1c0b0a0903";

/// The secrets in the fixture, which no reply may carry.
const SECRETS: [&str; 2] = ["golden-s3cret-1", "golden-s3cret-2"];

fn golden(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name)
}

fn fixture() -> Value {
    serde_json::from_str(&std::fs::read_to_string(golden("config.json")).unwrap()).unwrap()
}

/// A reply as the JSON it is on the wire.
fn json<T: serde::Serialize>(reply: T) -> Value {
    serde_json::to_value(reply).unwrap()
}

fn parse(v: &Value) -> Config {
    Config::from_json(v).unwrap()
}

/// Compares `got` with the golden file `name` (or writes it when blessing).
fn check(name: &str, got: &Value) {
    let file = golden(name);
    let text = serde_json::to_string_pretty(got).unwrap() + "\n";
    if std::env::var_os("DUPLEX_BLESS_GOLDEN").is_some() {
        std::fs::write(&file, text).unwrap();
        return;
    }
    let want: Value = serde_json::from_str(
        &std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e} (capture it first)", file.display())),
    )
    .unwrap();
    assert!(
        *got == want,
        "{name} changed on the wire:\n--- golden\n{}\n--- now\n{text}",
        serde_json::to_string_pretty(&want).unwrap()
    );
}

/// Controller A after a start-up reconcile and a flip of p1 to
/// non-optimized (so the overrides are not empty).
async fn controller_a() -> Shared {
    let mut sim = SimBackend::new();
    for d in BACKED {
        sim.add_device(d);
    }
    sim.add_device(UNBACKED);
    sim.set_backed(UNBACKED, false);
    let shared = Shared::new(
        Reconciler::new(Box::new(sim), Local::new("A")),
        NetBackend::sim(),
        "A",
    );
    shared
        .reconcile_with(parse(&fixture()), None, true, false)
        .await
        .unwrap();
    shared
        .flip("p1".into(), AccessState::NonOptimized)
        .await
        .unwrap();
    shared
}

#[tokio::test]
async fn read_replies_match_the_golden_files() {
    let a = controller_a().await;
    let mut status = json(a.status_reply());
    // Wall time: the one field that differs from run to run.
    assert!(status["last_ms"].is_u64(), "{status}");
    status["last_ms"] = Value::from(0);
    let replies = [
        ("target.status.json", status),
        ("target.show.json", json(a.show_reply().await.unwrap())),
        (
            "target.access_states.json",
            json(a.access_states_reply().await.unwrap()),
        ),
        ("net.status.json", json(a.net_status_reply().await)),
    ];
    for (name, got) in &replies {
        let text = got.to_string();
        for s in SECRETS {
            assert!(!text.contains(s), "{name} shows a CHAP secret: {text}");
        }
        check(name, got);
    }
}

#[test]
fn the_fixture_is_config_gets_wire_form() {
    // What config-keeper would answer for this state, to the byte order of
    // nothing: the same JSON value.
    let v = fixture();
    assert_eq!(parse(&v).to_json(None), v);
}
