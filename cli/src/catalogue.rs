//! `duplexctl methods`, `describe` and the parameter check of `call`, all
//! from the method catalogue and the typed methods' schemas compiled in.

use duplex_api::catalogue::{self, Method};
use duplex_api::methods;
use jsonschema::error::ValidationErrorKind;
use serde_json::{json, Value};

/// A parameter the schema refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ParamError {
    /// The parameter (`changes[0].op`), or `params` for the whole.
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

/// `/changes/0/op` as `changes[0].op`.
fn dotted(pointer: &str, extra: Option<&str>) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').filter(|s| !s.is_empty()).chain(extra) {
        if seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(seg);
        }
    }
    if out.is_empty() {
        "params".into()
    } else {
        out
    }
}

/// Checks `params` of `method` against its schema. Methods that are not
/// catalogued or not typed yet are not checked (the service still is).
pub fn check_params(method: &str, params: &Value) -> Result<(), ParamError> {
    let Some(s) = methods::schemas(method) else {
        return Ok(());
    };
    let schema = serde_json::to_value(&s.params).map_err(|e| ParamError {
        field: "params".into(),
        reason: format!("schema unavailable: {e}"),
    })?;
    let validator = jsonschema::validator_for(&schema).map_err(|e| ParamError {
        field: "params".into(),
        reason: format!("schema unusable: {e}"),
    })?;
    // No params means an empty object to a typed method.
    let empty = json!({});
    let params = if params.is_null() { &empty } else { params };
    let Some(e) = validator.iter_errors(params).next() else {
        return Ok(());
    };
    let path = e.instance_path().as_str().to_string();
    let (field, reason) = match e.kind() {
        ValidationErrorKind::Required { property } => {
            (dotted(&path, property.as_str()), "is required".to_string())
        }
        ValidationErrorKind::AdditionalProperties { unexpected } => (
            dotted(&path, unexpected.first().map(String::as_str)),
            "is not a parameter of this method".to_string(),
        ),
        _ => (dotted(&path, None), e.to_string()),
    };
    Err(ParamError { field, reason })
}

/// The methods of `ns` (all when `None`); an unknown namespace is an error
/// naming the known ones.
pub fn list(ns: Option<&str>) -> Result<Vec<&'static Method>, String> {
    match ns {
        None => Ok(catalogue::METHODS.iter().collect()),
        Some(ns) if catalogue::NAMESPACES.contains(&ns) => {
            Ok(catalogue::in_namespace(ns).collect())
        }
        Some(ns) => Err(format!(
            "no namespace {ns:?}; namespaces: {}",
            catalogue::NAMESPACES.join(", ")
        )),
    }
}

/// The methods as a table.
pub fn table(ms: &[&Method]) -> String {
    let mut out = format!(
        "{:<26} {:<6} {:<9} {:<4} DOC\n",
        "METHOD", "ACCESS", "AUDIENCE", "JOB"
    );
    for m in ms {
        out.push_str(&format!(
            "{:<26} {:<6} {:<9} {:<4} {}\n",
            m.name,
            m.access.as_str(),
            m.audience.as_str(),
            if m.job { "yes" } else { "" },
            m.doc
        ));
    }
    out
}

/// One method for `--json`: the marks and the schemas.
pub fn describe_json(m: &Method) -> Value {
    let s = methods::schemas(m.name);
    json!({
        "name": m.name,
        "doc": m.doc,
        "access": m.access.as_str(),
        "audience": m.audience.as_str(),
        "job": m.job,
        "errors": m.errors,
        "params": s.as_ref().and_then(|s| serde_json::to_value(&s.params).ok()),
        "result": s.as_ref().and_then(|s| serde_json::to_value(&s.result).ok()),
    })
}

fn type_of(schema: &Value) -> String {
    if let Some(t) = schema.get("type") {
        return match t {
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("|"),
            other => other.as_str().unwrap_or("?").to_string(),
        };
    }
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    if schema.get("oneOf").is_some() || schema.get("anyOf").is_some() {
        return "one of several".into();
    }
    "any".into()
}

fn fields(schema: &Value, out: &mut String) {
    let required: Vec<&str> = schema["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match schema["properties"].as_object() {
        Some(props) if !props.is_empty() => {
            for (name, p) in props {
                out.push_str(&format!(
                    "  {:<16} {:<14} {:<9} {}\n",
                    name,
                    type_of(p),
                    if required.contains(&name.as_str()) {
                        "required"
                    } else {
                        "optional"
                    },
                    p["description"].as_str().unwrap_or("")
                ));
            }
        }
        _ => out.push_str("  (none)\n"),
    }
}

/// One method for people: marks, parameters, result fields, errors.
pub fn describe(m: &Method) -> String {
    let mut out = format!(
        "{}\n  {}\n\naccess {}, audience {}{}\n",
        m.name,
        m.doc,
        m.access.as_str(),
        m.audience.as_str(),
        if m.job { ", runs as a job" } else { "" }
    );
    match methods::schemas(m.name) {
        Some(s) => {
            let p = serde_json::to_value(&s.params).unwrap_or_default();
            let r = serde_json::to_value(&s.result).unwrap_or_default();
            out.push_str("\nparams:\n");
            fields(&p, &mut out);
            out.push_str("\nresult:\n");
            fields(&r, &mut out);
        }
        None => out.push_str("\nparams and result: not typed yet (any JSON object)\n"),
    }
    if !m.errors.is_empty() {
        out.push_str(&format!("\nerrors: {}\n", m.errors.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_bad_field() {
        let e = check_params("config.apply", &json!({"sync": true})).unwrap_err();
        assert_eq!(e.field, "changes");
        let e = check_params("config.apply", &json!({"changes": [], "snyc": true})).unwrap_err();
        assert_eq!(e.field, "snyc");
        let e = check_params("config.lock", &json!({"reason": 5})).unwrap_err();
        assert_eq!(e.field, "reason");
        let e = check_params("auth.login", &json!([1])).unwrap_err();
        assert_eq!(e.field, "params");
    }

    #[test]
    fn good_params_and_untyped_methods_pass() {
        assert_eq!(
            check_params("config.apply", &json!({"changes": []})),
            Ok(())
        );
        assert_eq!(check_params("config.status", &Value::Null), Ok(()));
        assert_eq!(check_params("config.status", &json!({})), Ok(()));
        assert_eq!(check_params("alpha.echo", &json!({"k": 1})), Ok(()));
    }

    #[test]
    fn paths_read_like_fields() {
        assert_eq!(dotted("/changes/0/op", None), "changes[0].op");
        assert_eq!(dotted("", Some("x")), "x");
        assert_eq!(dotted("", None), "params");
    }

    #[test]
    fn lists_by_namespace_and_describes() {
        let ms = list(Some("config")).unwrap();
        assert!(ms.iter().all(|m| m.name.starts_with("config.")));
        assert!(list(Some("nope")).unwrap_err().contains("config"));
        let t = table(&ms);
        assert!(t.contains("config.apply") && t.contains("write"));
        let d = describe(catalogue::lookup("config.apply").unwrap());
        assert!(d.contains("changes") && d.contains("required"), "{d}");
        let d = describe(catalogue::lookup("pool.create").unwrap());
        assert!(d.contains("runs as a job"), "{d}");
    }
}
