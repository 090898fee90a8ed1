//! Every error is `{"error": {"code", "message"}}` in words a front-end developer reads: bad
//! URLs, query strings, encodings and sizes included; preflights answer 204; every response
//! carries a request id.

mod common;

use common::Server;
use reqwest::{Client, Method};
use serde_json::Value;

/// Sends a request; asserts a JSON error with `status` and `code` whose message is free of
/// Rust, and returns the message.
async fn json_error(req: reqwest::RequestBuilder, status: u16, code: &str) -> String {
    let r = req.send().await.unwrap();
    let st = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    assert_eq!(st, status, "{text}");
    assert!(ct.starts_with("application/json"), "{ct}: {text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"]["code"], code, "{v}");
    let msg = v["error"]["message"].as_str().unwrap().to_string();
    assert!(!msg.is_empty());
    for rust in [
        "enum",
        "usize",
        "u32",
        "i64",
        "struct ",
        "Failed to",
        "untagged",
        "`String`",
    ] {
        assert!(!msg.contains(rust), "{rust:?} in {msg}");
    }
    msg
}

#[tokio::test]
async fn errors_are_json_in_plain_words() {
    let s = Server::start(
        &common::model_dir(),
        &[("KEFU_LIMITS__MAX_BODY_BYTES", "4096")],
    );
    let c = Client::new();

    // A path segment that is not UTF-8 once percent-decoded.
    let msg = json_error(c.get(s.url("/v1/faqs/%FF")), 400, "bad_request").await;
    assert!(msg.contains("UTF-8"), "{msg}");
    json_error(c.delete(s.url("/v1/documents/%FF")), 400, "bad_request").await;
    // chat.rs's routes still use axum's extractors: the layer makes their answer JSON too.
    json_error(c.get(s.url("/v1/sessions/%FF")), 400, "bad_request").await;

    // Query strings that do not parse.
    let msg = json_error(c.get(s.url("/v1/faqs?limit=1e20")), 422, "invalid_request").await;
    assert_eq!(msg, "query parameter limit: expected a whole number");
    let msg = json_error(
        c.get(s.url("/v1/faqs:export?format=bogus")),
        422,
        "invalid_request",
    )
    .await;
    assert!(msg.contains("format") && msg.contains("jsonl"), "{msg}");
    json_error(c.get(s.url("/v1/items?limit=many")), 422, "invalid_request").await;

    // Bodies: too large for an import, not UTF-8 (a GBK file) for an import and for JSON.
    let big = "q,a\n".repeat(2000);
    let msg = json_error(
        c.post(s.url("/v1/faqs:import?format=csv")).body(big),
        413,
        "payload_too_large",
    )
    .await;
    assert!(msg.contains("limits.max_body_bytes"), "{msg}");
    let (gbk, _, _) = encoding_rs::GBK.encode("id,question,answer\nx-1,怎么退款,联系客服\n");
    let msg = json_error(
        c.post(s.url("/v1/faqs:import"))
            .header("content-type", "text/csv")
            .body(gbk.into_owned()),
        400,
        "bad_request",
    )
    .await;
    assert!(msg.contains("UTF-8") && msg.contains("GBK"), "{msg}");
    let (gbk, _, _) = encoding_rs::GBK.encode(r#"{"query": "怎么退款"}"#);
    let msg = json_error(
        c.post(s.url("/v1/match"))
            .header("content-type", "application/json")
            .body(gbk.into_owned()),
        400,
        "bad_json",
    )
    .await;
    assert!(msg.contains("UTF-8"), "{msg}");
    // JSON of the wrong shape: the field, and JSON words for what it takes.
    let msg = json_error(
        c.post(s.url("/v1/match"))
            .json(&serde_json::json!({"query": "退款", "top_k": "3"})),
        422,
        "invalid_request",
    )
    .await;
    assert_eq!(
        msg,
        "top_k: expected a whole number ≥ 0, got the string \"3\""
    );

    // A long URL: JSON 414 up to hyper's own limit (64 KiB), past which hyper answers 414
    // before any layer of kefu's runs.
    let long = "x".repeat(20_000);
    let msg = json_error(
        c.get(s.url(&format!("/v1/faqs?category={long}"))),
        414,
        "uri_too_long",
    )
    .await;
    assert!(msg.contains("POST body"), "{msg}");
    // (Past the HTTP client's limit too: sent by hand.)
    let head = raw_get(&s, &format!("/v1/faqs?category={}", "x".repeat(100_000))).await;
    assert!(head.starts_with("HTTP/1.1 414"), "{head}");

    // Unknown routes and methods stay JSON.
    json_error(c.get(s.url("/v1/nope")), 404, "not_found").await;
    json_error(c.patch(s.url("/v1/faqs")), 405, "method_not_allowed").await;

    // A preflight: 204 listing the route's methods.
    let r = c
        .request(Method::OPTIONS, s.url("/v1/faqs"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let allow = r.headers()["allow"].to_str().unwrap();
    assert!(
        allow.contains("GET") && allow.contains("POST") && allow.contains("OPTIONS"),
        "{allow}"
    );
    assert!(r.headers().get("x-request-id").is_some());

    // Request ids: the client's is kept, else one is made; both come back.
    let r = c
        .get(s.url("/healthz"))
        .header("x-request-id", "front-end-42")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "front-end-42");
    let r = c.get(s.url("/v1/nope")).send().await.unwrap();
    assert!(!r.headers()["x-request-id"].is_empty());
}

/// A GET written on the socket; the response's head.
async fn raw_get(s: &Server, target: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = s.base.trim_start_matches("http://");
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    sock.write_all(
        format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = Vec::new();
    sock.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    text.split("\r\n\r\n")
        .next()
        .unwrap_or_default()
        .to_string()
}
