//! `/metrics`: the services' answers turned into the Prometheus (OpenMetrics)
//! text format, built afresh at each scrape from what the router, the
//! heartbeat, config-keeper, pool-manager and the jobs table say now. No
//! state of its own: a scrape of a controller whose heartbeat is down
//! simply lacks those series and says so in `duplex_source_up`.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::atomic::AtomicU64;

/// The answers one scrape reads (`None`: that call failed).
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `cluster.status`.
    pub cluster: Option<Value>,
    /// `cluster.timeline`.
    pub timeline: Option<Value>,
    /// `router.status`.
    pub router: Option<Value>,
    /// `config.status`.
    pub config: Option<Value>,
    /// `pool.status`.
    pub pools: Option<Value>,
    /// `job.list`.
    pub jobs: Option<Value>,
}

/// The methods a scrape calls, in the order of [`Sources`]' fields.
pub const SOURCES: [&str; 6] = [
    "cluster.status",
    "cluster.timeline",
    "router.status",
    "config.status",
    "pool.status",
    "job.list",
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Source {
    source: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Link {
    link: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Disk {
    disk: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabel {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Pool {
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Move {
    kind: String,
    ok: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Step {
    kind: String,
    step: String,
    pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobStateLabel {
    state: String,
}

/// A gauge family registered under `name`.
fn family<L>(r: &mut Registry, name: &str, help: &str) -> Family<L, Gauge>
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    let f = Family::<L, Gauge>::default();
    r.register(name, help, f.clone());
    f
}

/// One gauge family per `(name, help)`, all with label set `L`.
fn families<L, const N: usize>(r: &mut Registry, spec: [(&str, &str); N]) -> [Family<L, Gauge>; N]
where
    L: Clone + std::hash::Hash + Eq + EncodeLabelSet + std::fmt::Debug + Send + Sync + 'static,
{
    spec.map(|(name, help)| family(r, name, help))
}

/// A plain gauge registered under `name`.
fn gauge(r: &mut Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    r.register(name, help, g.clone());
    g
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_u64().map(|u| i64::try_from(u).unwrap_or(i64::MAX)))
}

/// The text exposition of everything `s` holds.
pub fn render(s: &Sources) -> Result<String, std::fmt::Error> {
    let mut r = Registry::with_prefix("duplex");
    let up: Family<Source, Gauge> = family(
        &mut r,
        "source_up",
        "1 when the method answered this scrape, 0 when it failed",
    );
    let answers = [
        &s.cluster,
        &s.timeline,
        &s.router,
        &s.config,
        &s.pools,
        &s.jobs,
    ];
    for (name, v) in SOURCES.iter().zip(answers) {
        up.get_or_create(&Source {
            source: (*name).to_string(),
        })
        .set(i64::from(v.is_some()));
    }
    if let Some(c) = &s.cluster {
        heartbeat(&mut r, c);
    }
    if let Some(t) = &s.timeline {
        timeline(&mut r, t);
    }
    if let Some(v) = &s.router {
        let [calls, errors, micros] = families::<MethodLabel, 3>(
            &mut r,
            [
                ("router_calls", "Calls routed since the router started"),
                ("router_call_errors", "Of those, answered with an error"),
                (
                    "router_call_micros",
                    "Their total time in the router, microseconds",
                ),
            ],
        );
        for (m, c) in v["calls"].as_object().into_iter().flatten() {
            let l = MethodLabel { method: m.clone() };
            calls.get_or_create(&l).set(int(&c["calls"]).unwrap_or(0));
            errors.get_or_create(&l).set(int(&c["errors"]).unwrap_or(0));
            micros
                .get_or_create(&l)
                .set(int(&c["total_us"]).unwrap_or(0));
        }
    }
    if let Some(v) = &s.config {
        let version = gauge(&mut r, "config_version", "config-keeper's database version");
        version.set(int(&v["version"]).unwrap_or(0));
        let locked = gauge(
            &mut r,
            "config_locked",
            "1 while the configuration is locked",
        );
        locked.set(i64::from(v["locked"] == Value::Bool(true)));
        // What this controller committed that the partner has not acknowledged.
        if let (Some(head), Some(acked)) =
            (int(&v["section_version"]), int(&v["replication"]["acked"]))
        {
            let lag = gauge(
                &mut r,
                "config_replication_lag_entries",
                "Entries of this controller's section the partner has not acknowledged",
            );
            lag.set((head - acked).max(0));
        }
    }
    if let Some(v) = &s.pools {
        pools(&mut r, v);
    }
    if let Some(v) = &s.jobs {
        let jobs: Family<JobStateLabel, Gauge> = family(
            &mut r,
            "jobs",
            "Jobs this controller's router keeps, by state",
        );
        for state in ["running", "succeeded", "failed"] {
            let n = v["jobs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|j| j["state"] == state)
                .count();
            jobs.get_or_create(&JobStateLabel {
                state: state.into(),
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
    let mut out = String::new();
    encode(&mut out, &r)?;
    Ok(out)
}

fn heartbeat(r: &mut Registry, c: &Value) {
    let st = &c["state"];
    if st.is_null() {
        return;
    }
    if let Some(e) = int(&st["epoch"]["counter"]) {
        gauge(r, "cluster_epoch", "The cluster epoch's counter").set(e);
    }
    if let Some(d) = int(&st["last_detection_ms"]) {
        gauge(
            r,
            "cluster_last_detection_ms",
            "The last detection: the partner's last sign of life to the start of the fence",
        )
        .set(d);
    }
    let link_age: Family<Link, Gauge> = family(
        r,
        "link_last_beat_age_ms",
        "Since the partner's last beat on each interconnect link, ms",
    );
    for (i, a) in st["link_age_ms"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        if let Some(a) = int(a) {
            link_age
                .get_or_create(&Link {
                    link: i.to_string(),
                })
                .set(a);
        }
    }
    let [rtt, lost, bad] = families::<Link, 3>(
        r,
        [
            (
                "link_rtt_avg_us",
                "Round trip on each interconnect link (running average), microseconds",
            ),
            (
                "link_beats_lost",
                "Beats the partner sent that did not arrive",
            ),
            (
                "link_beats_refused",
                "Forged or replayed datagrams dropped on each link",
            ),
        ],
    );
    for (i, l) in c["links"].as_array().into_iter().flatten().enumerate() {
        let k = Link {
            link: i.to_string(),
        };
        if let Some(v) = int(&l["rtt_avg_us"]) {
            rtt.get_or_create(&k).set(v);
        }
        lost.get_or_create(&k).set(int(&l["lost"]).unwrap_or(0));
        bad.get_or_create(&k)
            .set(int(&l["forged"]).unwrap_or(0) + int(&l["replayed"]).unwrap_or(0));
    }
    let [write_age, partner_age, p99] = families::<Disk, 3>(
        r,
        [
            (
                "hb_disk_write_age_ms",
                "Since this controller last wrote its slot on each heartbeat disk, ms",
            ),
            (
                "hb_disk_partner_slot_age_ms",
                "Since the partner's slot last changed on each heartbeat disk, ms",
            ),
            (
                "hb_disk_write_p99_ms",
                "Slot write latency p99 on each heartbeat disk, ms",
            ),
        ],
    );
    let at = |k: &str, i: usize| st[k].as_array().and_then(|a| a.get(i)).and_then(int);
    for (i, d) in c["disks"].as_array().into_iter().flatten().enumerate() {
        let k = Disk {
            disk: d.as_str().unwrap_or("?").to_string(),
        };
        if let Some(v) = at("write_age_ms", i) {
            write_age.get_or_create(&k).set(v);
        }
        if let Some(v) = at("partner_slot_age_ms", i) {
            partner_age.get_or_create(&k).set(v);
        }
        if let Some(v) = c["write_latency"]
            .as_array()
            .and_then(|a| a.get(i))
            .and_then(|l| int(&l["p99_ms"]))
        {
            p99.get_or_create(&k).set(v);
        }
    }
}

/// Moves kept in the timeline, and each step of the newest of each kind
/// (the ALUA/ANA flips are its `active` and `standby` steps).
fn timeline(r: &mut Registry, t: &Value) {
    let moves: Family<Move, Gauge> = family(
        r,
        "moves_recorded",
        "Takeovers, failovers and givebacks in the heartbeat's timeline, by outcome",
    );
    let steps: Family<Step, Gauge> = family(
        r,
        "last_move_step_ms",
        "Each step of the newest move of each kind, ms",
    );
    let entries: Vec<&Value> = t["entries"].as_array().into_iter().flatten().collect();
    for e in &entries {
        moves
            .get_or_create(&Move {
                kind: e["kind"].as_str().unwrap_or("?").to_string(),
                ok: (e["ok"] == Value::Bool(true)).to_string(),
            })
            .inc();
    }
    let mut seen = std::collections::BTreeSet::new();
    // Newest first: the timeline keeps them oldest first.
    for e in entries.iter().rev() {
        let kind = e["kind"].as_str().unwrap_or("?").to_string();
        if !seen.insert(kind.clone()) {
            continue;
        }
        for s in e["steps"].as_array().into_iter().flatten() {
            steps
                .get_or_create(&Step {
                    kind: kind.clone(),
                    step: s["name"].as_str().unwrap_or("?").to_string(),
                    pool: s["pool"].as_str().unwrap_or("").to_string(),
                })
                .set(int(&s["ms"]).unwrap_or(0));
        }
    }
}

fn pools(r: &mut Registry, v: &Value) {
    let [size, free, active] = families::<Pool, 3>(
        r,
        [
            ("pool_size_bytes", "Each pool's size, bytes"),
            ("pool_free_bytes", "Each pool's unallocated space, bytes"),
            (
                "pool_active_here",
                "1 where the pool is active on this controller",
            ),
        ],
    );
    let data = Family::<Pool, Gauge<f64, AtomicU64>>::default();
    r.register(
        "pool_thin_data_percent",
        "Each pool's thin pool data usage, percent",
        data.clone(),
    );
    let meta = Family::<Pool, Gauge<f64, AtomicU64>>::default();
    r.register(
        "pool_thin_metadata_percent",
        "Each pool's thin pool metadata usage, percent",
        meta.clone(),
    );
    for p in v["pools"].as_array().into_iter().flatten() {
        let k = Pool {
            pool: p["name"].as_str().unwrap_or("?").to_string(),
        };
        if let Some(x) = int(&p["size"]) {
            size.get_or_create(&k).set(x);
        }
        if let Some(x) = int(&p["free"]) {
            free.get_or_create(&k).set(x);
        }
        active
            .get_or_create(&k)
            .set(i64::from(p["active_here"] == Value::Bool(true)));
        if let Some(x) = p["thin"]["data_percent"].as_f64() {
            data.get_or_create(&k).set(x);
        }
        if let Some(x) = p["thin"]["metadata_percent"].as_f64() {
            meta.get_or_create(&k).set(x);
        }
    }
}

/// SHA-256 of a token, as kept.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.trim().as_bytes()).into()
}

/// Whether `presented` is the metrics token whose hash is `expected`
/// (compared in constant time).
pub fn token_matches(presented: &str, expected: &[u8; 32]) -> bool {
    let got = token_hash(presented);
    got.iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_become_series_and_a_failed_source_says_so() {
        let s = Sources {
            cluster: Some(json!({
                "configured": true,
                "state": {"epoch": {"counter": 7, "controller": "B"}, "last_detection_ms": 2500,
                          "link_age_ms": [40, 90], "write_age_ms": [120], "partner_slot_age_ms": [300]},
                "links": [{"rtt_avg_us": 900, "lost": 2, "forged": 1, "replayed": 0},
                          {"rtt_avg_us": 1100, "lost": 0, "forged": 0, "replayed": 3}],
                "disks": ["/dev/disk/by-id/hb0"],
                "write_latency": [{"last_ms": 4, "p99_ms": 9}]
            })),
            timeline: Some(json!({"entries": [
                {"kind": "takeover", "ok": true, "steps": [{"name": "fence", "ms": 1300}]},
                {"kind": "takeover", "ok": true, "steps": [{"name": "fence", "ms": 1100},
                    {"name": "active", "pool": "demo", "ms": 3000}]}
            ]})),
            router: Some(
                json!({"calls": {"pool.status": {"calls": 5, "errors": 1, "total_us": 900}}}),
            ),
            config: Some(json!({"version": 12, "section_version": 9, "locked": false,
                                 "replication": {"acked": 7}})),
            pools: Some(json!({"pools": [{"name": "demo", "size": 1000, "free": 400,
                                          "active_here": true, "thin": {"data_percent": 12.5}}]})),
            jobs: None,
        };
        let t = render(&s).unwrap();
        for line in [
            "duplex_source_up{source=\"job.list\"} 0",
            "duplex_source_up{source=\"cluster.status\"} 1",
            "duplex_cluster_epoch 7",
            "duplex_cluster_last_detection_ms 2500",
            "duplex_link_last_beat_age_ms{link=\"1\"} 90",
            "duplex_link_rtt_avg_us{link=\"0\"} 900",
            "duplex_link_beats_refused{link=\"1\"} 3",
            "duplex_hb_disk_write_p99_ms{disk=\"/dev/disk/by-id/hb0\"} 9",
            "duplex_hb_disk_partner_slot_age_ms{disk=\"/dev/disk/by-id/hb0\"} 300",
            "duplex_moves_recorded{kind=\"takeover\",ok=\"true\"} 2",
            "duplex_last_move_step_ms{kind=\"takeover\",step=\"fence\",pool=\"\"} 1100",
            "duplex_last_move_step_ms{kind=\"takeover\",step=\"active\",pool=\"demo\"} 3000",
            "duplex_router_call_errors{method=\"pool.status\"} 1",
            "duplex_config_replication_lag_entries 2",
            "duplex_pool_free_bytes{pool=\"demo\"} 400",
            "duplex_pool_thin_data_percent{pool=\"demo\"} 12.5",
        ] {
            assert!(t.lines().any(|l| l == line), "missing {line:?} in\n{t}");
        }
        assert!(!t.contains("duplex_jobs{"), "{t}");
        assert!(t.ends_with("# EOF\n"), "{t}");
    }

    #[test]
    fn the_token_is_compared_by_its_hash() {
        let h = token_hash("s3cret-token\n");
        assert!(token_matches("s3cret-token", &h));
        assert!(!token_matches("s3cret-tokeN", &h));
        assert!(!token_matches("", &h));
    }
}
