//! The real server over real HTTP: both embedding routes, every error status, overload,
//! readiness, metrics and graceful shutdown.

mod common;

use std::time::Duration;

use common::Server;
use reqwest::Client;
use serde_json::{Value, json};

async fn post(client: &Client, url: &str, body: Value) -> (u16, Value) {
    let r = client.post(url).json(&body).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["error"]["code"], want_code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

#[tokio::test]
async fn embedding_routes_and_errors() {
    let model = common::model_dir();
    let s = Server::start(
        &model,
        &[
            ("KEFU_LIMITS__MAX_INPUTS", "4"),
            ("KEFU_LIMITS__MAX_INPUT_CHARS", "50"),
            ("KEFU_LIMITS__MAX_BODY_BYTES", "4096"),
        ],
    );
    s.ready().await;
    let c = Client::new();

    // /v1/embed
    let (st, body) = post(
        &c,
        &s.url("/v1/embed"),
        json!({"inputs": ["怎么申请退款", "我想退货退钱怎么操作"]}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert!(
        body["model"]
            .as_str()
            .unwrap()
            .starts_with("multilingual-e5-small@")
    );
    assert_eq!(body["dimension"], 384);
    let e = body["embeddings"].as_array().unwrap();
    assert_eq!(e.len(), 2);
    let v = |i: usize| -> Vec<f32> {
        e[i].as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect()
    };
    assert_eq!(v(0).len(), 384);
    let cos: f32 = v(0).iter().zip(v(1)).map(|(a, b)| a * b).sum();
    assert!((cos - 0.926).abs() < 0.01, "cosine {cos}");
    assert!(body["usage"]["tokens"].as_u64().unwrap() > 4);
    // A single string is accepted too.
    let (st, body) = post(
        &c,
        &s.url("/v1/embed"),
        json!({"inputs": "订单什么时候发货"}),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(body["embeddings"].as_array().unwrap().len(), 1);

    // OpenAI-compatible /v1/embeddings
    let (st, body) = post(
        &c,
        &s.url("/v1/embeddings"),
        json!({"input": ["How do I reset my password?", "I forgot my password, what should I do"], "model": "text-embedding-3-small"}),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "multilingual-e5-small");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["object"], "embedding");
    let a: Vec<f64> = data[0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let b: Vec<f64> = data[1]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(a.len(), 384);
    let cos: f64 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
    assert!((cos - 0.917).abs() < 0.01, "cosine {cos}");
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        body["usage"]["prompt_tokens"],
        body["usage"]["total_tokens"]
    );
    let (st, body) = post(&c, &s.url("/v1/embeddings"), json!({"input": "你好"})).await;
    assert_eq!(st, 200, "{body}");

    // Malformed JSON: 400
    let r = c
        .post(s.url("/v1/embed"))
        .header("content-type", "application/json")
        .body("{\"inputs\": [\"a\",")
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    assert_error(st, &r.json().await.unwrap(), 400, "bad_json");
    // Not JSON at all: 415
    let r = c
        .post(s.url("/v1/embed"))
        .body("inputs=a")
        .send()
        .await
        .unwrap();
    let st = r.status().as_u16();
    assert_error(st, &r.json().await.unwrap(), 415, "unsupported_media_type");
    // Wrong types and unknown fields: 422
    let (st, body) = post(&c, &s.url("/v1/embed"), json!({"inputs": 5})).await;
    assert_error(st, &body, 422, "invalid_request");
    let (st, body) = post(&c, &s.url("/v1/embed"), json!({"texts": ["a"]})).await;
    assert_error(st, &body, 422, "invalid_request");
    // Empty: 422
    let (st, body) = post(&c, &s.url("/v1/embed"), json!({"inputs": []})).await;
    assert_error(st, &body, 422, "empty_input");
    let (st, body) = post(
        &c,
        &s.url("/v1/embeddings"),
        json!({"input": ["ok", "   "]}),
    )
    .await;
    assert_error(st, &body, 422, "empty_input");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("input[1]"),
        "{body}"
    );
    // Too many inputs, too long an input, too big a body: 413
    let (st, body) = post(
        &c,
        &s.url("/v1/embed"),
        json!({"inputs": ["a", "b", "c", "d", "e"]}),
    )
    .await;
    assert_error(st, &body, 413, "payload_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_inputs"),
        "{body}"
    );
    let (st, body) = post(
        &c,
        &s.url("/v1/embed"),
        json!({"inputs": ["长".repeat(51)]}),
    )
    .await;
    assert_error(st, &body, 413, "payload_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_input_chars"),
        "{body}"
    );
    let (st, body) = post(
        &c,
        &s.url("/v1/embed"),
        json!({"inputs": ["x".repeat(5000)]}),
    )
    .await;
    assert_error(st, &body, 413, "payload_too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("limits.max_body_bytes"),
        "{body}"
    );
    // Unsupported options: 422
    let (st, body) = post(
        &c,
        &s.url("/v1/embeddings"),
        json!({"input": "a", "encoding_format": "int8"}),
    )
    .await;
    assert_error(st, &body, 422, "invalid_request");
    let (st, body) = post(
        &c,
        &s.url("/v1/embeddings"),
        json!({"input": "a", "dimensions": 1024}),
    )
    .await;
    assert_error(st, &body, 422, "invalid_request");
    // Unknown route and wrong method
    let r = c.get(s.url("/v1/nothing")).send().await.unwrap();
    let st = r.status().as_u16();
    assert_error(st, &r.json().await.unwrap(), 404, "not_found");
    let r = c.get(s.url("/v1/embed")).send().await.unwrap();
    let st = r.status().as_u16();
    assert_error(st, &r.json().await.unwrap(), 405, "method_not_allowed");

    // Operations
    let r = c.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ready");
    for part in ["model", "index", "intents"] {
        assert_eq!(body["components"][part], "ready", "{body}");
    }
    // A customer tier the routing policy does not know is refused, not treated as standard.
    let (st, body) = post(
        &c,
        &s.url("/v1/intent"),
        json!({"text": "你好", "customer": {"tier": "platinum"}}),
    )
    .await;
    assert_error(st, &body, 422, "invalid_request");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("platinum") && msg.contains("routing.tiers"),
        "{msg}"
    );
    let metrics = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for name in [
        "kefu_http_request_duration_seconds_bucket",
        "kefu_embed_queue_duration_seconds_bucket",
        "kefu_embed_tokenization_duration_seconds_bucket",
        "kefu_embed_inference_duration_seconds_bucket",
        "kefu_embed_batch_size_bucket",
        "kefu_embed_cache_hits_total",
        "kefu_model_ready 1",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}");
    }
    assert!(
        metrics.contains("route=\"/v1/embed\""),
        "requests are labelled by route"
    );
    let doc: Value = c
        .get(s.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["paths"]["/v1/embeddings"]["post"].is_object());
}

#[tokio::test]
async fn cache_hits_are_counted() {
    // No demo KB: its index build would embed (and count misses) meanwhile.
    let s = Server::start(&common::model_dir(), &[("KEFU_KB__LOAD_DEMO", "false")]);
    s.ready().await;
    let c = Client::new();
    for text in ["怎么申请退款", "  怎么申请退款", "怎么申请退款"] {
        let (st, _) = post(&c, &s.url("/v1/embed"), json!({"inputs": [text]})).await;
        assert_eq!(st, 200);
    }
    let metrics = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("kefu_embed_cache_hits_total 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("kefu_embed_cache_misses_total 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn flood_beyond_the_queue_gets_429() {
    let s = Server::start(
        &common::model_dir(),
        &[
            ("KEFU_EMBED__MAX_QUEUE", "1"),
            ("KEFU_EMBED__MAX_BATCH_SIZE", "1"),
            ("KEFU_EMBED__CACHE_SIZE", "0"),
        ],
    );
    s.ready().await;
    let c = Client::new();
    let mut tasks = Vec::new();
    for i in 0..24 {
        let c = c.clone();
        let url = s.url("/v1/embed");
        tasks.push(tokio::spawn(async move {
            let inputs: Vec<String> = (0..8)
                .map(|j| {
                    format!("请求 {i} 第 {j} 个问题：我的订单为什么还没有发货，已经等了很多天了")
                })
                .collect();
            post(&c, &url, json!({ "inputs": inputs })).await
        }));
    }
    let mut ok = 0;
    let mut overloaded = 0;
    for t in tasks {
        let (st, body) = t.await.unwrap();
        match st {
            200 => ok += 1,
            429 => {
                assert_error(st, &body, 429, "overloaded");
                overloaded += 1;
            }
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert!(ok >= 1, "some requests are served");
    assert!(
        overloaded >= 1,
        "a flood beyond the queue is refused with 429 (ok {ok})"
    );
}

/// A model directory whose weights file is a FIFO: loading blocks on it, so the server stays
/// in the "loading" state for as long as the test likes.
#[tokio::test]
async fn not_ready_until_the_model_is_loaded() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("slow-model");
    std::fs::create_dir(&dir).unwrap();
    let model = common::model_dir();
    for f in ["config.json", "tokenizer.json"] {
        std::fs::copy(model.join(f), dir.join(f)).unwrap();
    }
    let st = std::process::Command::new("mkfifo")
        .arg(dir.join("model.safetensors"))
        .status()
        .unwrap();
    assert!(st.success());
    let s = Server::start(&dir, &[]);
    let c = Client::new();
    let r = c.get(s.url("/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "loading");
    assert_eq!(body["components"]["model"], "loading", "{body}");
    let r = c.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status(), 200, "alive while loading");
    let (st, body) = post(&c, &s.url("/v1/embed"), json!({"inputs": ["你好"]})).await;
    assert_error(st, &body, 503, "model_not_ready");
    let (st, body) = post(&c, &s.url("/v1/embeddings"), json!({"input": "你好"})).await;
    assert_error(st, &body, 503, "model_not_ready");
}

#[tokio::test]
async fn sigterm_finishes_in_flight_requests() {
    let s = Server::start(&common::model_dir(), &[("KEFU_EMBED__MAX_BATCH_SIZE", "1")]);
    s.ready().await;
    let c = Client::new();
    let url = s.url("/v1/embed");
    let inputs: Vec<String> = (0..128)
        .map(|i| format!("第 {i} 个问题：退货以后运费谁来承担，多久能退回到原来的支付账户"))
        .collect();
    let req = tokio::spawn(async move { post(&c, &url, json!({ "inputs": inputs })).await });
    // Signal only once the server counts the request in flight (besides the /metrics call
    // that reads the gauge).
    let probe = Client::new();
    let deadline = std::time::Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let m = probe.get(s.url("/metrics")).send().await.unwrap();
        let text = m.text().await.unwrap();
        let in_flight = text
            .lines()
            .find_map(|l| l.strip_prefix("kefu_http_requests_in_flight "))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or(0);
        if in_flight >= 2 {
            break;
        }
        assert!(
            !req.is_finished(),
            "the request ended before it was seen in flight"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "never saw the request in flight"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.signal("TERM");
    let (st, body) = req.await.unwrap();
    assert_eq!(st, 200, "the in-flight request completes: {body}");
    assert_eq!(body["embeddings"].as_array().unwrap().len(), 128);
    let mut s = s;
    let status = tokio::task::spawn_blocking(move || s.child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "exits cleanly after SIGTERM: {status}");
}

#[tokio::test]
async fn broken_model_stops_startup_with_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("broken");
    std::fs::create_dir(&dir).unwrap();
    let model = common::model_dir();
    for f in ["config.json", "tokenizer.json", "manifest.json"] {
        std::fs::copy(model.join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("model.safetensors"), b"not really weights").unwrap();
    let out = common::kefu()
        .args(["serve", "--port", "0", "--model"])
        .arg(&dir)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("model.safetensors") && stderr.contains("damaged"),
        "{stderr}"
    );
}
