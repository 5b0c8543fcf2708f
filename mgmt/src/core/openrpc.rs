//! The OpenRPC 1.x document of the endpoint, generated from the method
//! catalogue and the typed methods' draft-07 schemas. Every method carries
//! its marks as extensions (`x-duplex-access`, `x-duplex-audience`,
//! `x-duplex-job`). Methods not typed yet get a permissive params list and
//! result schema, and say so with `x-duplex-untyped`.

use super::authz;
use duplex_api::catalogue::{self, Method};
use duplex_api::methods;
use duplex_services::rpc::ErrorCode;
use serde_json::{json, Map, Value};

/// The OpenRPC version the document follows.
pub const OPENRPC_VERSION: &str = "1.3.2";

/// The generated document.
pub fn document() -> Value {
    let mut components = Map::new();
    let list: Vec<Value> = authz::reachable()
        .map(|m| method_object(m, &mut components))
        .collect();
    json!({
        "openrpc": OPENRPC_VERSION,
        "info": {
            "title": "Duplex management API",
            "description": "JSON-RPC 2.0 over HTTPS (POST /) and WebSocket (GET / with Upgrade). \
                Log in with auth.login; send the token as `Authorization: Bearer <token>` \
                (browsers carry it in the HttpOnly session cookie). Methods marked \
                x-duplex-access=write need the admin role.",
            "version": catalogue::VERSION.to_string(),
        },
        "methods": list,
        "components": { "schemas": Value::Object(components) },
    })
}

/// The document as committed in `docs/openrpc.json`: pretty, with a final
/// newline.
pub fn document_text() -> String {
    let mut s = serde_json::to_string_pretty(&document()).unwrap_or_default();
    s.push('\n');
    s
}

fn method_object(m: &Method, components: &mut Map<String, Value>) -> Value {
    let errors: Vec<Value> = m
        .errors
        .iter()
        .filter_map(|k| ErrorCode::ALL.into_iter().find(|c| c.kind() == *k))
        .map(|c| json!({"code": c.code(), "message": c.kind(), "data": {"kind": c.kind()}}))
        .collect();
    let mut obj = json!({
        "name": m.name,
        "summary": m.doc,
        "paramStructure": "by-name",
        "errors": errors,
        "x-duplex-access": m.access.as_str(),
        "x-duplex-audience": m.audience.as_str(),
        "x-duplex-job": m.job,
    });
    match methods::schemas(m.name) {
        Some(s) => {
            let params = serde_json::to_value(&s.params).unwrap_or_default();
            let result = serde_json::to_value(&s.result).unwrap_or_default();
            let params = hoist(m.name, params, components);
            let result = hoist(m.name, result, components);
            obj["params"] = Value::Array(param_descriptors(&params));
            obj["result"] = json!({"name": "result", "schema": result});
        }
        None => {
            // Not typed yet: any params object, any result.
            obj["params"] = json!([]);
            obj["result"] = json!({"name": "result", "schema": {}});
            obj["x-duplex-untyped"] = Value::Bool(true);
        }
    }
    endpoint_shape(m.name, &mut obj);
    obj
}

/// The subscription methods as the endpoint answers them over WebSocket
/// (jsonrpsee's subscriptions), which differ from the router's own: the
/// subscription's id comes back, events arrive as `event.notify`
/// notifications, and `event.unsubscribe` takes that id by position.
fn endpoint_shape(name: &str, obj: &mut Value) {
    let id = json!({"type": ["string", "integer"]});
    match name {
        "event.subscribe" => {
            obj["result"] = json!({
                "name": "subscription",
                "description": "The subscription's id. Each event then arrives as a notification \
                    `event.notify` with params {subscription, result: <event>} (WebSocket only).",
                "schema": id,
            });
            obj["x-duplex-notification"] = json!("event.notify");
        }
        "event.unsubscribe" => {
            obj["paramStructure"] = json!("by-position");
            obj["params"] = json!([{
                "name": "subscription",
                "description": "The id event.subscribe answered.",
                "required": true,
                "schema": id,
            }]);
            obj["result"] = json!({
                "name": "unsubscribed",
                "description": "Whether a subscription was ended.",
                "schema": {"type": "boolean"},
            });
        }
        _ => {}
    }
}

/// Moves a root schema's `definitions` into the document's components
/// (renaming on a clash with a different schema of the same name) and
/// points its `$ref`s there; drops the root-only members.
fn hoist(method: &str, mut schema: Value, components: &mut Map<String, Value>) -> Value {
    let mut renames: Vec<(String, String)> = Vec::new();
    if let Some(Value::Object(defs)) = schema.as_object_mut().and_then(|o| o.remove("definitions"))
    {
        for (name, def) in defs {
            let mut target = name.clone();
            if components.get(&target).is_some_and(|d| *d != def) {
                target = format!("{}_{name}", method.replace('.', "_"));
            }
            components.insert(target.clone(), def);
            renames.push((name, target));
        }
    }
    if let Some(o) = schema.as_object_mut() {
        o.remove("$schema");
        o.remove("title");
    }
    rewrite_refs(&mut schema, &renames);
    for (_, target) in &renames {
        if let Some(mut def) = components.remove(target) {
            rewrite_refs(&mut def, &renames);
            components.insert(target.clone(), def);
        }
    }
    schema
}

fn rewrite_refs(v: &mut Value, renames: &[(String, String)]) {
    match v {
        Value::Object(map) => {
            if let Some(Value::String(r)) = map.get_mut("$ref") {
                if let Some(name) = r.strip_prefix("#/definitions/") {
                    let target = renames
                        .iter()
                        .find(|(from, _)| from == name)
                        .map_or(name, |(_, to)| to.as_str());
                    *r = format!("#/components/schemas/{target}");
                }
            }
            map.values_mut().for_each(|x| rewrite_refs(x, renames));
        }
        Value::Array(items) => items.iter_mut().for_each(|x| rewrite_refs(x, renames)),
        _ => {}
    }
}

/// One OpenRPC content descriptor per property of an object schema.
fn param_descriptors(params: &Value) -> Vec<Value> {
    let required: Vec<&str> = params["required"]
        .as_array()
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let Some(props) = params["properties"].as_object() else {
        return Vec::new();
    };
    props
        .iter()
        .map(|(name, schema)| {
            let mut d = json!({
                "name": name,
                "required": required.contains(&name.as_str()),
                "schema": schema,
            });
            if let Some(desc) = schema.get("description") {
                d["description"] = desc.clone();
            }
            d
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use duplex_api::catalogue::Audience;
    use duplex_test_kit::find_in;

    #[test]
    fn every_external_method_and_nothing_else_is_described_with_its_marks() {
        let doc = document();
        let names: Vec<&str> = doc["methods"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["name"].as_str().unwrap())
            .collect();
        for m in catalogue::METHODS {
            assert_eq!(
                names.contains(&m.name),
                m.audience == Audience::External,
                "{}",
                m.name
            );
        }
        let apply = find_in(&doc, "methods", "name", "config.apply");
        assert_eq!(apply["x-duplex-access"], "write");
        assert_eq!(apply["x-duplex-audience"], "external");
        let changes = find_in(apply, "params", "name", "changes");
        assert_eq!(changes["required"], true);
        assert!(apply["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["code"] == -32004 && e["message"] == "config_locked"));
    }

    #[test]
    fn every_ref_points_at_a_component() {
        let text = document_text();
        let doc: Value = serde_json::from_str(&text).unwrap();
        let comps = doc["components"]["schemas"].as_object().unwrap();
        for (i, _) in text.match_indices("\"$ref\": \"") {
            let rest = &text[i + 9..];
            let r = &rest[..rest.find('"').unwrap()];
            let name = r
                .strip_prefix("#/components/schemas/")
                .unwrap_or_else(|| panic!("{r} is not a component ref"));
            assert!(comps.contains_key(name), "{r} dangles");
        }
    }
}
