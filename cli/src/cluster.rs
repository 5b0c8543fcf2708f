//! `duplexctl cluster ...`: the heartbeat's `cluster.*` methods with
//! readable output. Formatting is pure (JSON in, text out) so it is tested
//! without a router.

use duplex_api::methods::cluster::Heartbeat;
use serde::Deserialize;
use serde_json::Value;
use std::fmt::Write as _;

/// A time in milliseconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS.mmmZ`.
pub fn utc(ms: u64) -> String {
    let (secs, milli) = (ms / 1000, ms % 1000);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(i64::try_from(days).unwrap_or(i64::MAX));
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{milli:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day)
/// (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).unwrap_or(1);
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).unwrap_or(1);
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("?")
}

/// Milliseconds, or `-` when never seen.
fn age(v: &Value) -> String {
    v.as_u64()
        .map_or_else(|| "-".to_string(), |ms| format!("{ms} ms"))
}

/// `cluster.status` for people: phase, partner, epoch, lock, links, disks,
/// fence agents.
pub fn status(v: &Value) -> String {
    let mut out = String::new();
    // The wire shape is duplex-api's: heartbeat's fields sit beside the
    // service's (flattened), not under a key of their own.
    let hb = match Heartbeat::deserialize(v) {
        Ok(hb) => hb,
        Err(e) => return format!("cluster.status answer not understood: {e}\n"),
    };
    if !hb.configured {
        let _ = writeln!(
            out,
            "heartbeat not configured: {}",
            hb.reason.as_deref().unwrap_or("no reason given")
        );
        return out;
    }
    let st = hb.state.as_ref().unwrap_or(&Value::Null);
    let _ = writeln!(
        out,
        "controller {}  phase {} (for {})",
        s(&st["me"]),
        s(&st["phase"]),
        age(&st["phase_ms"])
    );
    let _ = writeln!(
        out,
        "partner    {}  phase {}",
        s(&st["partner"]),
        st["partner_phase"].as_str().unwrap_or("unknown")
    );
    let _ = writeln!(
        out,
        "epoch      {} (made by {})",
        st["epoch"]["counter"],
        s(&st["epoch"]["controller"])
    );
    let flag = |b: &Value| if b == &Value::Bool(true) { "yes" } else { "no" };
    let _ = writeln!(
        out,
        "config locked {}, maintenance {}, loop stalls {}",
        flag(&st["config_locked"]),
        flag(&st["maintenance"]),
        st["stalls"].as_u64().unwrap_or(0)
    );
    if let Some(d) = st["last_detection_ms"].as_u64() {
        let _ = writeln!(
            out,
            "last detection {d} ms (partner's last sign of life to fence)"
        );
    }
    let _ = writeln!(out, "\ninterconnect links:");
    let _ = writeln!(
        out,
        "  {:<4} {:>10} {:>9} {:>9} {:>6} {:>7} {:>8} {:>9} {:>10} {:>10}",
        "link",
        "last beat",
        "sent",
        "received",
        "lost",
        "forged",
        "replayed",
        "send err",
        "rtt last",
        "rtt avg"
    );
    let empty = Vec::new();
    let links = hb
        .links
        .as_ref()
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let ages = st["link_age_ms"].as_array().unwrap_or(&empty);
    for i in 0..links.len().max(ages.len()) {
        let l = links.get(i).unwrap_or(&Value::Null);
        let n = |k: &str| l[k].as_u64().map_or_else(|| "-".into(), |x| x.to_string());
        // Round trips in µs on the wire, shown in ms with one decimal.
        let ms = |k: &str| {
            l[k].as_u64().map_or_else(
                || "-".into(),
                |us| format!("{}.{} ms", us / 1000, (us % 1000) / 100),
            )
        };
        let _ = writeln!(
            out,
            "  {:<4} {:>10} {:>9} {:>9} {:>6} {:>7} {:>8} {:>9} {:>10} {:>10}",
            i,
            age(ages.get(i).unwrap_or(&Value::Null)),
            n("sent"),
            n("received"),
            n("lost"),
            n("forged"),
            n("replayed"),
            n("send_errors"),
            ms("rtt_last_us"),
            ms("rtt_avg_us")
        );
    }
    let _ = writeln!(out, "\nheartbeat disks:");
    let _ = writeln!(
        out,
        "  {:<36} {:>11} {:>13} {:>11} {:>11}  read error",
        "disk", "own write", "partner slot", "write last", "write p99"
    );
    let disks = hb.disks.as_deref().unwrap_or_default();
    for (i, d) in disks.iter().enumerate() {
        let at = |k: &str| st[k].as_array().and_then(|a| a.get(i)).cloned();
        let lat = hb
            .write_latency
            .as_ref()
            .and_then(Value::as_array)
            .and_then(|a| a.get(i));
        let ms = |k: &str| {
            lat.and_then(|l| l[k].as_u64())
                .map_or_else(|| "-".into(), |x| format!("{x} ms"))
        };
        let _ = writeln!(
            out,
            "  {:<36} {:>11} {:>13} {:>11} {:>11}  {}",
            d,
            age(&at("write_age_ms").unwrap_or(Value::Null)),
            age(&at("partner_slot_age_ms").unwrap_or(Value::Null)),
            ms("last_ms"),
            ms("p99_ms"),
            at("read_errors")
                .and_then(|e| e.as_str().map(str::to_string))
                .unwrap_or_else(|| "-".into())
        );
    }
    let agents = hb.fence_agents.as_deref().unwrap_or_default();
    let joined = match hb.fence_joined {
        Some(true) => ", all set up here",
        Some(false) => ", NOT all set up here (no pool may move here yet)",
        None => "",
    };
    let _ = writeln!(
        out,
        "\nfence agents (in order): {}{joined}",
        if agents.is_empty() {
            "none".to_string()
        } else {
            agents.join(", ")
        }
    );
    out
}

/// One timeline entry: its header and every step with its duration.
fn entry(out: &mut String, e: &Value) {
    let pools: Vec<&str> = e["pools"]
        .as_array()
        .map(|a| a.iter().map(s).collect())
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{} {} {} -> {} pools [{}] epoch {} action {} {}",
        e["started_unix_ms"]
            .as_u64()
            .map_or_else(|| "?".into(), utc),
        s(&e["kind"]),
        s(&e["from"]),
        s(&e["to"]),
        pools.join(", "),
        e["epoch"],
        s(&e["action_id"]),
        if e["ok"] == Value::Bool(true) {
            "ok"
        } else {
            "FAILED"
        }
    );
    let mut total = 0u64;
    for st in e["steps"].as_array().into_iter().flatten() {
        let ms = st["ms"].as_u64().unwrap_or(0);
        total = total.saturating_add(ms);
        let name = match st["pool"].as_str() {
            Some(p) => format!("{} {p}", s(&st["name"])),
            None => s(&st["name"]).to_string(),
        };
        let verdict = if st["ok"] == Value::Bool(true) {
            ""
        } else {
            "  FAILED"
        };
        let detail = st["detail"]
            .as_str()
            .map(|d| format!("  ({d})"))
            .unwrap_or_default();
        let _ = writeln!(out, "    {name:<26} {ms:>8} ms{verdict}{detail}");
    }
    let _ = writeln!(out, "    {:<26} {total:>8} ms", "total");
}

/// `cluster.timeline` for people, oldest first.
pub fn timeline(v: &Value) -> String {
    let mut out = String::new();
    let entries = v["entries"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if entries.is_empty() {
        out.push_str("no takeover, failover or giveback recorded\n");
    }
    for e in entries {
        entry(&mut out, e);
    }
    out
}

/// `cluster.failover` / `cluster.giveback` result: the entry if it has one.
pub fn moved(v: &Value) -> String {
    if v.get("steps").is_some() {
        let mut out = String::new();
        entry(&mut out, v);
        return out;
    }
    format!("{v}\n")
}

/// `cluster.fence_test` for people.
pub fn fence_test(v: &Value) -> String {
    let mut out = format!("fence agents against {}:\n", s(&v["target"]));
    for a in v["agents"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {:<8} {}  {}",
            s(&a["agent"]),
            if a["ok"] == Value::Bool(true) {
                "ok    "
            } else {
                "FAILED"
            },
            s(&a["detail"])
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use duplex_api::methods::cluster::StatusResult;
    use duplex_api::methods::ServiceInfo;
    use serde_json::json;

    #[test]
    fn utc_formats_known_instants() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000Z");
        assert_eq!(utc(951_782_400_123), "2000-02-29 00:00:00.123Z");
        assert_eq!(utc(1_796_513_982_226), "2026-12-05 23:39:42.226Z");
    }

    #[test]
    fn a_takeover_lists_every_step_and_the_total() {
        let v = json!({"entries": [{
        "kind": "takeover", "action_id": "1a80994c00000000", "started_unix_ms": 1_796_513_981_181u64,
        "epoch": 4, "from": "A", "to": "B", "pools": ["demo"], "ok": true,
        "steps": [
            {"name": "detection", "ms": 3524, "ok": true},
            {"name": "fence (ipmi)", "ms": 866, "ok": true, "detail": "BMC 10.53.0.11: chassis power is off"},
            {"name": "pool.takeover", "pool": "demo", "ms": 18495, "ok": true},
            {"name": "active", "pool": "demo", "ms": 3873, "ok": false, "detail": "timed out"}
        ]}]});
        let t = timeline(&v);
        assert!(t.starts_with("2026-12-05 23:39:41.181Z takeover A -> B pools [demo] epoch 4 action 1a80994c00000000 ok\n"), "{t}");
        assert!(
            t.contains("    detection                      3524 ms\n"),
            "{t}"
        );
        assert!(
            t.contains(
                "fence (ipmi)                    866 ms  (BMC 10.53.0.11: chassis power is off)"
            ),
            "{t}"
        );
        assert!(
            t.contains("    pool.takeover demo            18495 ms\n"),
            "{t}"
        );
        assert!(
            t.contains("active demo                    3873 ms  FAILED  (timed out)"),
            "{t}"
        );
        assert!(
            t.contains("    total                         26758 ms\n"),
            "{t}"
        );
        assert_eq!(
            timeline(&json!({"entries": []})),
            "no takeover, failover or giveback recorded\n"
        );
    }

    /// `cluster.status` as heartbeat answers it: the typed result, serialized.
    fn wire(heartbeat: Heartbeat) -> Value {
        serde_json::to_value(StatusResult {
            service: ServiceInfo {
                service: "heartbeat".into(),
                version: "0.1.0".into(),
                controller: "B".into(),
                pid: 357,
                uptime_s: 60,
            },
            heartbeat,
        })
        .unwrap_or_default()
    }

    #[test]
    fn status_shows_phases_links_disks_and_agents() {
        let v = wire(Heartbeat {
            configured: true,
            capabilities: vec!["fencing".into()],
            reason: None,
            state: Some(
                json!({"me": "B", "partner": "A", "phase": "survivor", "phase_ms": 1200,
                      "partner_phase": null, "epoch": {"counter": 4, "controller": "B"},
                      "config_locked": false, "maintenance": true, "stalls": 2,
                      "link_age_ms": [150, null], "write_age_ms": [100, 90],
                      "partner_slot_age_ms": [9000, 9100], "read_errors": [null, "EIO"],
                      "last_detection_ms": 3524}),
            ),
            links: Some(
                json!([{"sent": 10, "received": 9, "lost": 2, "forged": 0, "replayed": 1, "malformed": 0, "send_errors": 0,
                    "rtt_last_us": 1250, "rtt_avg_us": 980}]),
            ),
            write_latency: Some(json!([{"last_ms": 3, "p99_ms": 12, "samples": 50}])),
            disks: Some(vec!["/dev/hb0".into(), "/dev/hb1".into()]),
            fence_agents: Some(vec!["ipmi".into(), "scsi_pr".into()]),
            fence_joined: Some(true),
        });
        let t = status(&v);
        assert!(
            t.contains("controller B  phase survivor (for 1200 ms)"),
            "{t}"
        );
        assert!(t.contains("partner    A  phase unknown"), "{t}");
        assert!(t.contains("epoch      4 (made by B)"), "{t}");
        assert!(
            t.contains("config locked no, maintenance yes, loop stalls 2"),
            "{t}"
        );
        assert!(t.contains("last detection 3524 ms"), "{t}");
        assert!(
            t.contains(
                "  0        150 ms        10         9      2       0        1         0     1.2 ms     0.9 ms"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "  1             -         -         -      -       -        -         -          -          -"
            ),
            "{t}"
        );
        assert!(t.contains("/dev/hb1"), "{t}");
        assert!(t.contains("EIO"), "{t}");
        assert!(t.contains("fence agents (in order): ipmi, scsi_pr"), "{t}");
        let off = status(&wire(Heartbeat {
            configured: false,
            capabilities: Vec::new(),
            reason: Some("no [heartbeat] section".into()),
            state: None,
            links: None,
            write_latency: None,
            disks: None,
            fence_agents: None,
            fence_joined: None,
        }));
        assert_eq!(off, "heartbeat not configured: no [heartbeat] section\n");
        assert!(
            status(&json!({"heartbeat": {"configured": true}}))
                .starts_with("cluster.status answer not understood"),
            "a shape that is not the API's is said, not shown as 'not configured'"
        );
    }

    #[test]
    fn fence_test_names_each_agent() {
        let t = fence_test(&json!({"target": "A", "agents": [
            {"agent": "ipmi", "ok": true, "detail": "chassis power is on"},
            {"agent": "scsi_pr", "ok": false, "detail": "no disks"}]}));
        assert_eq!(
            t,
            "fence agents against A:\n  ipmi     ok      chassis power is on\n  scsi_pr  FAILED  no disks\n"
        );
    }
}
