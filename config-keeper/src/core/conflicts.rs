//! After a merge: the rules that two concurrent writes, each valid where
//! it was made, can break between them. A merge is never refused for them
//! (the replica must hold what the partner committed); they are found, an
//! alert names them, and the one such conflict that has a safe automatic
//! answer is settled by a rule both controllers compute the same way.
//!
//! **The rule for an initiator name (IQN or NQN) claimed by two hosts:**
//! the claim in the host whose last write has the smaller stamp (the
//! earlier write in the stamps' total order: epoch, Lamport clock,
//! controller id) keeps the name; every later claim loses it. The
//! controller that made the losing write (the origin of that host's stamp)
//! writes the fix, an ordinary local change removing the name from its
//! host, so exactly one controller writes it and it replicates like any
//! change. A fix that would leave a host with no initiator name at all is
//! not written: the alert asks an administrator to settle it.

use std::collections::BTreeMap;

use duplex_api::model::{Host, Kind, Object};
use duplex_api::validate::{check_delete, check_upsert};

use super::state::{Stamp, State};

/// A rule the merged state breaks around one merged write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Kind of the merged object.
    pub kind: Kind,
    /// Its key.
    pub key: String,
    /// The field the rule names.
    pub field: String,
    /// Why the state breaks the rule.
    pub reason: String,
}

/// Which of two hosts keeps an initiator name, and who removes it from
/// the other.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The IQN or NQN.
    pub name: String,
    /// The host whose claim is older: it keeps the name.
    pub keeps: String,
    /// The host whose claim is newer: it loses the name.
    pub loses: String,
    /// The controller that made the losing write and writes the fix.
    pub writer: String,
    /// The losing host as the fix leaves it; `None` when it would have no
    /// initiator name left (then nobody writes, an administrator decides).
    pub fixed: Option<Host>,
}

/// The rules broken around `keys` (the objects a merge wrote) in `state`
/// after the merge: an object still there is checked as an upsert against
/// the rest of the state, a deleted one for references left to it.
pub fn rules_broken(state: &State, keys: &[(Kind, String)]) -> Vec<Finding> {
    let cfg = &state.config;
    let mut out = Vec::new();
    for (kind, key) in keys {
        let at = format!("{kind}/{key}");
        let r = match cfg.get(*kind, key) {
            Some(obj) => check_upsert(cfg, &at, &obj),
            None => check_delete(cfg, &at, *kind, key),
        };
        if let Err(v) = r {
            out.push(Finding {
                kind: *kind,
                key: key.clone(),
                field: v.field,
                reason: v.reason,
            });
        }
    }
    out
}

/// Every initiator name more than one host claims, settled by the rule of
/// this module. Hosts without a stamp (never written, only in tests) sort
/// first.
pub fn initiator_conflicts(state: &State) -> Vec<Resolution> {
    let mut claims: BTreeMap<&str, Vec<&Host>> = BTreeMap::new();
    for h in state.config.hosts.values() {
        for n in h.iqns.iter().chain(h.nqns.iter()) {
            claims.entry(n.as_str()).or_default().push(h);
        }
    }
    let stamp = |h: &Host| state.stamps.get(&(Kind::Host, h.name.clone())).cloned();
    let mut out = Vec::new();
    for (name, mut hosts) in claims {
        if hosts.len() < 2 {
            continue;
        }
        // Option<Stamp> orders None first; names break a tie of two
        // unstamped hosts.
        hosts.sort_by_key(|h| (stamp(h), h.name.clone()));
        let keeps = hosts[0].name.clone();
        for h in &hosts[1..] {
            let writer = stamp(h).map_or_else(String::new, |s: Stamp| s.origin);
            let mut fixed = (*h).clone();
            fixed.iqns.retain(|n| n != name);
            fixed.nqns.retain(|n| n != name);
            let empty = fixed.iqns.is_empty() && fixed.nqns.is_empty();
            if fixed.iqns.is_empty() {
                // CHAP is for iSCSI; a host without an IQN cannot keep it.
                fixed.chap = None;
            }
            out.push(Resolution {
                name: name.to_string(),
                keeps: keeps.clone(),
                loses: h.name.clone(),
                writer,
                fixed: (!empty).then_some(fixed),
            });
        }
    }
    out
}

/// The change that applies `r` (an upsert of the losing host), for the
/// controller that writes it.
pub fn fix_change(r: &Resolution) -> Option<serde_json::Value> {
    let h = r.fixed.as_ref()?;
    Some(serde_json::json!({
        "op": "upsert",
        "kind": "host",
        "object": Object::Host(h.clone()).to_json(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::state::{plan_apply, plan_merge, Entry};
    use duplex_api::change::{parse_changes, Change};
    use serde_json::json;

    fn change(v: serde_json::Value) -> Change {
        let mut c = parse_changes("changes", &json!([v])).unwrap_or_else(|e| panic!("{e:?}"));
        c.pop().unwrap_or_else(|| panic!("one change"))
    }

    fn host(name: &str, iqns: &[&str], nqns: &[&str]) -> Change {
        change(
            json!({"op": "upsert", "kind": "host", "object": {"name": name, "iqns": iqns, "nqns": nqns}}),
        )
    }

    /// The keys of the objects an entry wrote.
    type Keys = Vec<(Kind, String)>;

    /// A's and B's states after each wrote one host, concurrently, from
    /// the same base, and merged the other's entry; with the keys each
    /// merged.
    fn concurrent(a: Change, b: Change) -> (State, State, Keys, Keys) {
        let (mut sa, mut sb) = (State::default(), State::default());
        let pa = plan_apply(&mut sa, "A", vec![a]).unwrap_or_else(|e| panic!("{e:?}"));
        let pb = plan_apply(&mut sb, "B", vec![b]).unwrap_or_else(|e| panic!("{e:?}"));
        let entry = |origin: &str, ops: Vec<crate::core::state::Op>| Entry {
            origin: origin.into(),
            seq: 1,
            time_ms: 0,
            action_id: None,
            ops,
        };
        let keys = |ops: &[crate::core::state::Op]| -> Keys {
            ops.iter().map(|o| (o.kind, o.key.clone())).collect()
        };
        let (ka, kb) = (keys(&pb.ops), keys(&pa.ops));
        plan_merge(&mut sa, &entry("B", pb.ops)).unwrap_or_else(|e| panic!("{e:?}"));
        plan_merge(&mut sb, &entry("A", pa.ops)).unwrap_or_else(|e| panic!("{e:?}"));
        (sa, sb, ka, kb)
    }

    #[test]
    fn one_iqn_added_to_two_hosts_at_once_is_found_and_settled_the_same_way_on_both() {
        let x = "iqn.2026-01.com.example:x";
        let (sa, sb, ka, kb) = concurrent(
            host("h1", &[x], &[]),
            host("h2", &[x, "iqn.2026-01.com.example:y"], &[]),
        );
        assert_eq!(sa.config, sb.config, "the merge converged");
        // Each side finds the rule broken around what it merged.
        let fa = rules_broken(&sa, &ka);
        let fb = rules_broken(&sb, &kb);
        assert_eq!(fa.len(), 1, "{fa:?}");
        assert!(
            fa[0].reason.contains("already belongs to host \"h1\""),
            "{fa:?}"
        );
        assert_eq!(fb.len(), 1, "{fb:?}");
        // The same resolution on both: equal Lamport values (1), so the
        // controller id decides: A's write is the older, B's loses.
        let ra = initiator_conflicts(&sa);
        assert_eq!(ra, initiator_conflicts(&sb));
        assert_eq!(ra.len(), 1);
        let r = &ra[0];
        assert_eq!(
            (r.keeps.as_str(), r.loses.as_str(), r.writer.as_str()),
            ("h1", "h2", "B")
        );
        let fixed = r.fixed.as_ref().unwrap_or_else(|| panic!("h2 keeps y"));
        assert_eq!(fixed.iqns, vec!["iqn.2026-01.com.example:y".to_string()]);
        // B writes the fix as a local change; it is valid there, and the
        // state it leaves has no conflict.
        let mut sb = sb;
        let fix = fix_change(r).unwrap_or_else(|| panic!("a fix"));
        plan_apply(&mut sb, "B", vec![change(fix)]).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(initiator_conflicts(&sb).is_empty());
        assert!(rules_broken(&sb, &[(Kind::Host, "h2".into())]).is_empty());
    }

    #[test]
    fn a_fix_that_would_leave_a_host_nameless_is_not_written() {
        let n = "nqn.2014-08.org.nvmexpress:uuid:11111111-2222-4333-8444-555555555555";
        let (sa, _, _, _) = concurrent(host("h1", &[], &[n]), host("h2", &[], &[n]));
        let r = initiator_conflicts(&sa);
        assert_eq!(r.len(), 1);
        assert!(r[0].fixed.is_none() && fix_change(&r[0]).is_none(), "{r:?}");
    }

    #[test]
    fn a_delete_merged_under_a_new_reference_is_found() {
        // B deletes host h while A puts it in a group, concurrently.
        let mut base = State::default();
        plan_apply(
            &mut base,
            "A",
            vec![host("h", &["iqn.2026-01.com.example:h"], &[])],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let (mut sa, mut sb) = (base.clone(), base);
        let group = change(
            json!({"op": "upsert", "kind": "host_group", "object": {"name": "g", "hosts": ["h"]}}),
        );
        let pa = plan_apply(&mut sa, "A", vec![group]).unwrap_or_else(|e| panic!("{e:?}"));
        let del = change(json!({"op": "delete", "kind": "host", "name": "h"}));
        let pb = plan_apply(&mut sb, "B", vec![del]).unwrap_or_else(|e| panic!("{e:?}"));
        let entry = Entry {
            origin: "B".into(),
            seq: 1,
            time_ms: 0,
            action_id: None,
            ops: pb.ops,
        };
        plan_merge(&mut sa, &entry).unwrap_or_else(|e| panic!("{e:?}"));
        let f = rules_broken(&sa, &[(Kind::Host, "h".into())]);
        assert_eq!(f.len(), 1, "{f:?}");
        assert!(f[0].reason.contains("host group"), "{f:?}");
        // Nothing else is reported for the group A wrote.
        let _ = pa;
        assert!(initiator_conflicts(&sa).is_empty());
    }

    #[test]
    fn a_valid_state_has_no_findings_for_any_of_its_objects() {
        let mut s = State::default();
        plan_apply(
            &mut s,
            "A",
            vec![
                host("h1", &["iqn.2026-01.com.example:a"], &[]),
                host("h2", &["iqn.2026-01.com.example:b"], &[]),
                change(json!({"op": "upsert", "kind": "host_group", "object": {"name": "g", "hosts": ["h1", "h2"]}})),
            ],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let keys: Vec<(Kind, String)> = s.stamps.keys().cloned().collect();
        assert_eq!(keys.len(), 3);
        assert!(rules_broken(&s, &keys).is_empty());
        assert!(initiator_conflicts(&s).is_empty());
    }
}
