//! The committed OpenAPI document matches what the server serves, and is valid OpenAPI 3.1.

mod common;

use serde_json::Value;

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");

#[test]
fn committed_openapi_is_current() {
    let generated = kefu::api::openapi::document();
    if std::env::var("KEFU_UPDATE_OPENAPI").is_ok() {
        std::fs::write(PATH, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(PATH).unwrap_or_default();
    assert!(
        committed.trim() == generated.trim(),
        "docs/openapi.json is stale: run `cargo run --release -- openapi > docs/openapi.json`"
    );
}

/// The reference validator (openapi-spec-validator, from the test venv) accepts the document:
/// required fields, unique operation ids, resolvable `$ref`s.
#[test]
fn openapi_passes_the_validator() {
    let out = common::run_python(
        "import sys; from openapi_spec_validator import validate; \
         from openapi_spec_validator.readers import read_from_filename; \
         spec, _ = read_from_filename(sys.argv[1]); validate(spec); print('valid')",
        &[PATH],
    );
    assert_eq!(out.trim(), "valid");
}

/// The same rules checked without Python, so a plain `cargo test` catches them too.
#[test]
fn operation_ids_unique_responses_described_refs_resolve() {
    let doc: Value = serde_json::from_str(&kefu::api::openapi::document()).unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap_or_default();
            assert!(!id.is_empty(), "{method} {path} has no operationId");
            assert!(ids.insert(id.to_string()), "operationId {id} repeats");
            for (status, resp) in op["responses"].as_object().unwrap() {
                assert!(
                    resp["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "{method} {path} {status} has no description"
                );
            }
        }
    }
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").expect(&r);
        assert!(
            doc["components"]["schemas"].get(name).is_some(),
            "$ref {r} names no schema"
        );
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("$ref", Value::String(s)) => out.push(s.clone()),
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}
