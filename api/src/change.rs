//! The change language of `config.apply`: an ordered list of upserts and
//! deletes, applied all or nothing.
//!
//! Wire form:
//! ```json
//! [{"op": "upsert", "kind": "volume", "object": {"name": "v1", ...}},
//!  {"op": "delete", "kind": "export", "name": "e1"}]
//! ```

use serde_json::Value;

use crate::model::{Kind, Object};

/// One change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create the object or replace it whole (idempotent: replacing an
    /// object by an equal one changes nothing and bumps no version).
    Upsert(Object),
    /// Delete the object (idempotent: deleting a missing object is a no-op).
    Delete {
        /// Kind of the object.
        kind: Kind,
        /// Its key (name, id or WWN).
        key: String,
    },
}

impl Change {
    /// Kind of the object the change touches.
    pub fn kind(&self) -> Kind {
        match self {
            Change::Upsert(o) => o.kind(),
            Change::Delete { kind, .. } => *kind,
        }
    }

    /// Key of the object the change touches.
    pub fn key(&self) -> &str {
        match self {
            Change::Upsert(o) => o.key(),
            Change::Delete { key, .. } => key,
        }
    }

    /// The wire form.
    pub fn to_json(&self) -> Value {
        match self {
            Change::Upsert(o) => serde_json::json!({
                "op": "upsert", "kind": o.kind().as_str(), "object": o.to_json()
            }),
            Change::Delete { kind, key } => serde_json::json!({
                "op": "delete", "kind": kind.as_str(), "name": key
            }),
        }
    }
}

/// Why a change was refused. `field` is a path into the request
/// (`changes[2].object.size`), `reason` says what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct Violation {
    /// What kind of refusal (maps to the RPC error code).
    pub class: ViolationClass,
    /// Path of the offending field.
    pub field: String,
    /// Why it is refused.
    pub reason: String,
}

/// Class of a violation; decides the RPC error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationClass {
    /// Malformed or out of range value, missing reference (`invalid_params`).
    Invalid,
    /// Clashes with another object: duplicate identifier, LUN, address
    /// (`conflict`).
    Conflict,
    /// The object belongs to the partner's section (`not_owner`).
    NotOwner,
}

impl Violation {
    /// An invalid value.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Violation {
            class: ViolationClass::Invalid,
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A clash with another object.
    pub fn conflict(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Violation {
            class: ViolationClass::Conflict,
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A write to the partner's section.
    pub fn not_owner(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Violation {
            class: ViolationClass::NotOwner,
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// Parses the `changes` array of `config.apply`. `base` is the path of the
/// array in the request ("changes").
pub fn parse_changes(base: &str, v: &Value) -> Result<Vec<Change>, Violation> {
    let Some(items) = v.as_array() else {
        return Err(Violation::invalid(base, "must be an array of changes"));
    };
    if items.is_empty() {
        return Err(Violation::invalid(base, "must contain at least one change"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_change(&format!("{base}[{i}]"), item))
        .collect()
}

fn parse_change(at: &str, v: &Value) -> Result<Change, Violation> {
    let Some(map) = v.as_object() else {
        return Err(Violation::invalid(at, "must be an object"));
    };
    let op = map.get("op").and_then(Value::as_str).ok_or_else(|| {
        Violation::invalid(format!("{at}.op"), "missing; use \"upsert\" or \"delete\"")
    })?;
    let kind_s = map
        .get("kind")
        .and_then(Value::as_str)
        .ok_or_else(|| Violation::invalid(format!("{at}.kind"), "missing"))?;
    let kind = Kind::parse(kind_s).ok_or_else(|| {
        let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
        Violation::invalid(
            format!("{at}.kind"),
            format!("unknown kind {kind_s:?}; one of {}", all.join(", ")),
        )
    })?;
    let allowed: &[&str] = match op {
        "upsert" => &["op", "kind", "object"],
        "delete" => &["op", "kind", "name"],
        other => {
            return Err(Violation::invalid(
                format!("{at}.op"),
                format!("unknown op {other:?}; use \"upsert\" or \"delete\""),
            ))
        }
    };
    if let Some(extra) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(Violation::invalid(
            format!("{at}.{extra}"),
            format!("unknown field for op {op:?}"),
        ));
    }
    if op == "upsert" {
        let body = map
            .get("object")
            .ok_or_else(|| Violation::invalid(format!("{at}.object"), "missing"))?;
        let obj = Object::from_json(kind, body).map_err(|(path, reason)| {
            let field = if path.is_empty() {
                format!("{at}.object")
            } else {
                format!("{at}.object.{path}")
            };
            Violation::invalid(field, reason)
        })?;
        Ok(Change::Upsert(obj))
    } else {
        let key = match (
            map.get("name").and_then(Value::as_str),
            kind.singleton_key(),
        ) {
            (Some(k), _) => k.to_string(),
            (None, Some(k)) => k.to_string(),
            (None, None) => return Err(Violation::invalid(format!("{at}.name"), "missing")),
        };
        Ok(Change::Delete { kind, key })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn field_paths_in_parse_errors() {
        let e = parse_changes(
            "changes",
            &json!([{"op": "upsert", "kind": "host_group", "object": {"name": "g", "hosts": []}},
                    {"op": "upsert", "kind": "volume", "object": {"name": "v", "pool": "p", "size": "10",
                      "serial": "0123456789abcdef", "wwn": "x", "nguid": "x", "uuid": "x"}}]),
        )
        .unwrap_err();
        assert_eq!(e.field, "changes[1].object.size");
        assert!(e.reason.contains("no unit"), "{e}");

        let e =
            parse_changes("changes", &json!([{"op": "frobnicate", "kind": "volume"}])).unwrap_err();
        assert_eq!(e.field, "changes[0].op");
        let e = parse_changes(
            "changes",
            &json!([{"op": "delete", "kind": "volumes", "name": "x"}]),
        )
        .unwrap_err();
        assert_eq!(e.field, "changes[0].kind");
        let e = parse_changes("changes", &json!([{"op": "delete", "kind": "volume"}])).unwrap_err();
        assert_eq!(e.field, "changes[0].name");
        let e = parse_changes(
            "changes",
            &json!([{"op": "delete", "kind": "volume", "name": "v", "x": 1}]),
        )
        .unwrap_err();
        assert_eq!(e.field, "changes[0].x");
        let e = parse_changes("changes", &json!([])).unwrap_err();
        assert_eq!(e.field, "changes");
        let e = parse_changes(
            "changes",
            &json!([{"op": "upsert", "kind": "host_group", "object": {"name": "g", "hots": []}}]),
        )
        .unwrap_err();
        assert_eq!(e.field, "changes[0].object.hots");
    }

    #[test]
    fn round_trip() {
        let v = json!([{"op": "upsert", "kind": "host_group", "object": {"name": "g", "hosts": ["h"]}},
                       {"op": "delete", "kind": "volume", "name": "v"}]);
        let c = parse_changes("changes", &v).unwrap();
        let back: Vec<Value> = c.iter().map(Change::to_json).collect();
        assert_eq!(Value::Array(back), v);
    }
}
