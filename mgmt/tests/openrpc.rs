//! The committed OpenRPC document (`docs/openrpc.json`) matches what the
//! code generates, and is a well-formed OpenRPC 1.x document.

use duplex_mgmt::core::openrpc;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::PathBuf;

const REGENERATE: &str =
    "regenerate it with: cargo run -q -p duplex-mgmt -- --openrpc > docs/openrpc.json";

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openrpc.json")
}

#[test]
fn committed_document_matches_the_code() {
    let committed = std::fs::read_to_string(committed_path())
        .unwrap_or_else(|e| panic!("docs/openrpc.json is missing ({e}); {REGENERATE}"));
    let generated = openrpc::document_text();
    if committed != generated {
        let first = committed
            .lines()
            .zip(generated.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || "at the end".to_string(),
                |n| format!("at line {}", n + 1),
            );
        panic!("docs/openrpc.json differs from the catalogue and schemas ({first}); {REGENERATE}");
    }
}

fn only_known_keys(what: &str, obj: &Value, known: &[&str]) {
    let map = obj
        .as_object()
        .unwrap_or_else(|| panic!("{what}: not an object"));
    for k in map.keys() {
        assert!(
            known.contains(&k.as_str()) || k.starts_with("x-"),
            "{what}: {k} is not an OpenRPC member (extensions start with x-)"
        );
    }
}

fn content_descriptor(what: &str, d: &Value) {
    only_known_keys(
        what,
        d,
        &[
            "name",
            "summary",
            "description",
            "required",
            "schema",
            "deprecated",
        ],
    );
    assert!(
        d["name"].as_str().is_some_and(|n| !n.is_empty()),
        "{what}: name"
    );
    assert!(d.get("schema").is_some(), "{what}: schema");
    assert!(
        jsonschema::meta::is_valid(&d["schema"]),
        "{what}: the schema is not a valid JSON Schema"
    );
    if let Some(r) = d.get("required") {
        assert!(r.is_boolean(), "{what}: required");
    }
}

/// The structure OpenRPC 1.3 requires of a document, method, content
/// descriptor and error, checked member by member.
#[test]
fn document_has_the_openrpc_structure() {
    let doc = openrpc::document();
    only_known_keys(
        "document",
        &doc,
        &[
            "openrpc",
            "info",
            "servers",
            "methods",
            "components",
            "externalDocs",
        ],
    );
    let v = doc["openrpc"].as_str().expect("openrpc");
    assert!(v.starts_with("1."), "OpenRPC 1.x, got {v}");
    only_known_keys(
        "info",
        &doc["info"],
        &[
            "title",
            "description",
            "termsOfService",
            "version",
            "contact",
            "license",
        ],
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut names = BTreeSet::new();
    for m in doc["methods"].as_array().expect("methods") {
        let name = m["name"].as_str().expect("method name");
        assert!(names.insert(name), "{name} twice");
        only_known_keys(
            name,
            m,
            &[
                "name",
                "summary",
                "description",
                "tags",
                "paramStructure",
                "params",
                "result",
                "errors",
                "links",
                "examples",
                "deprecated",
                "servers",
                "externalDocs",
            ],
        );
        assert!(
            ["by-name", "by-position", "either"].contains(&m["paramStructure"].as_str().unwrap()),
            "{name}: paramStructure"
        );
        for p in m["params"].as_array().expect("params") {
            content_descriptor(name, p);
        }
        content_descriptor(name, &m["result"]);
        for e in m["errors"].as_array().expect("errors") {
            only_known_keys(name, e, &["code", "message", "data"]);
            assert!(
                e["code"].is_i64() && e["message"].is_string(),
                "{name}: error"
            );
        }
        for mark in ["x-duplex-access", "x-duplex-audience", "x-duplex-job"] {
            assert!(m.get(mark).is_some(), "{name}: {mark}");
        }
    }
    for (k, s) in doc["components"]["schemas"]
        .as_object()
        .expect("components")
    {
        assert!(jsonschema::meta::is_valid(s), "components.schemas.{k}");
    }
}

/// With `OPENRPC_META_SCHEMA` naming a copy of the OpenRPC meta-schema
/// (github.com/open-rpc/meta-schema, `schema.json`, with its `openrpc`
/// enum filled in), the document is validated against it as well. The
/// copy is not committed: the project carries no third-party text.
#[test]
fn document_validates_against_the_meta_schema_when_given() {
    let Some(path) = std::env::var_os("OPENRPC_META_SCHEMA") else {
        eprintln!("OPENRPC_META_SCHEMA not set: structural checks only");
        return;
    };
    let meta: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let validator = jsonschema::validator_for(&meta).expect("meta-schema compiles");
    let doc = openrpc::document();
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .take(10)
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    // And the check bites: a member OpenRPC lacks is refused.
    let mut bad = doc;
    bad["methods"][0]["bogus"] = Value::Bool(true);
    assert!(
        !validator.is_valid(&bad),
        "the meta-schema accepted a bogus member"
    );
}

#[test]
#[should_panic(expected = "is not an OpenRPC member")]
fn the_structural_check_refuses_unknown_members() {
    let mut doc = openrpc::document();
    doc["methods"][0]["bogus"] = Value::Bool(true);
    only_known_keys("method", &doc["methods"][0], &["name", "params", "result"]);
}
