//! The committed OpenAPI document matches what the server serves.

#[test]
fn committed_openapi_is_current() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    let generated = kefu::api::openapi::document();
    if std::env::var("KEFU_UPDATE_OPENAPI").is_ok() {
        std::fs::write(path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed.trim() == generated.trim(),
        "docs/openapi.json is stale: run `cargo run --release -- openapi > docs/openapi.json`"
    );
}
