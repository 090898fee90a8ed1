//! One request cannot hold the model: a query behind a huge `/v1/embed` is answered while the
//! huge one is still being encoded, and the work of a request that timed out or whose client
//! hung up stops (the real server, the real model, real HTTP and a real TCP disconnect).

mod common;

use std::time::{Duration, Instant};

use common::{BACKGROUND_WAIT, Server};
use reqwest::Client;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// The request: 200 texts of 3,000 characters (within the default limits), each cut
/// to the model's 512 tokens. `tag` keeps the texts of different requests apart.
fn huge_inputs(tag: &str) -> Vec<String> {
    (0..200)
        .map(|i| {
            let line = format!("第{i}段（{tag}）：我上周买的洗衣机送到以后发现外壳有划痕，联系客服说可以换货，但是快递一直没有上门取件。");
            line.chars().cycle().take(3000).collect()
        })
        .collect()
}

/// A counter or gauge from `/metrics` (0 when it has no line yet).
async fn metric(c: &Client, s: &Server, name: &str) -> f64 {
    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// Waits until `name` reaches at least `want`.
async fn wait_for(c: &Client, s: &Server, name: &str, want: f64, what: &str) -> f64 {
    let deadline = Instant::now() + BACKGROUND_WAIT;
    loop {
        let v = metric(c, s, name).await;
        if v >= want {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: {name} stayed at {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn post(c: &Client, s: &Server, path: &str, body: Value) -> reqwest::Response {
    c.post(s.url(path)).json(&body).send().await.unwrap()
}

/// After `seqs` sequences were encoded and the abandoned request was dropped, the model
/// encodes exactly one more sequence for one more one-text request: nothing of the abandoned
/// one runs on.
async fn only_new_work_runs(c: &Client, s: &Server, seqs: f64) {
    let r = post(
        c,
        s,
        "/v1/embed",
        json!({"inputs": ["放弃的请求之后的新问题"]}),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(metric(c, s, "kefu_embed_sequences_total").await, seqs + 1.0);
}

#[tokio::test]
async fn a_query_behind_a_huge_embed_is_answered_first() {
    // Rounds of 2,048 tokens (four long texts): the huge request needs fifty of them.
    let s = Server::start(
        &common::model_dir(),
        &[
            ("KEFU_SERVER__REQUEST_TIMEOUT_SECS", "600"),
            ("KEFU_EMBED__MAX_BATCH_TOKENS", "2048"),
        ],
    );
    s.ready().await;
    let c = Client::new();
    let before = metric(&c, &s, "kefu_embed_sequences_total").await;
    let big = {
        let (c, url) = (c.clone(), s.url("/v1/embed"));
        tokio::spawn(async move {
            c.post(url)
                .json(&json!({ "inputs": huge_inputs("big") }))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    // The huge request is in the model before the query is sent.
    wait_for(
        &c,
        &s,
        "kefu_embed_sequences_total",
        before + 1.0,
        "the huge request never reached the model",
    )
    .await;
    assert!(!big.is_finished());
    let m = common::matching(
        &c,
        &s,
        json!({"query": "公平调度测试：大件家具送货上门以后可以帮忙安装吗"}),
    )
    .await;
    let encoded = metric(&c, &s, "kefu_embed_sequences_total").await - before;
    assert!(m["decision"].is_string(), "{m}");
    assert!(
        !big.is_finished() && encoded < 201.0,
        "the query was answered only after the huge request ({encoded} sequences encoded)"
    );
    // The client of the huge request gives up: its work stops too.
    big.abort();
    wait_for(
        &c,
        &s,
        "kefu_embed_cancelled_total",
        1.0,
        "the abandoned huge request was never dropped",
    )
    .await;
}

#[tokio::test]
async fn a_timed_out_request_stops_using_the_model() {
    // Small rounds (four texts), so that the request is in the model well before it times out.
    let s = Server::start(
        &common::model_dir(),
        &[
            ("KEFU_SERVER__REQUEST_TIMEOUT_SECS", "5"),
            ("KEFU_EMBED__MAX_BATCH_TOKENS", "2048"),
            ("KEFU_KB__LOAD_DEMO", "false"),
        ],
    );
    s.ready().await;
    let c = Client::new();
    let before = metric(&c, &s, "kefu_embed_sequences_total").await;
    let req = {
        let (c, url) = (c.clone(), s.url("/v1/embed"));
        tokio::spawn(async move {
            c.post(url)
                .json(&json!({ "inputs": huge_inputs("timeout") }))
                .send()
                .await
                .unwrap()
        })
    };
    wait_for(
        &c,
        &s,
        "kefu_embed_sequences_total",
        before + 1.0,
        "the request never reached the model",
    )
    .await;
    let r = req.await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "timeout", "{body}");
    wait_for(
        &c,
        &s,
        "kefu_embed_cancelled_total",
        1.0,
        "the timed-out request was never dropped",
    )
    .await;
    let seqs = metric(&c, &s, "kefu_embed_sequences_total").await;
    assert!(seqs - before < 200.0, "all of it was encoded: {seqs}");
    assert_eq!(
        metric(&c, &s, "kefu_embed_cancelled_sequences_total").await,
        200.0 - (seqs - before)
    );
    only_new_work_runs(&c, &s, seqs).await;
}

#[tokio::test]
async fn a_request_whose_client_hangs_up_stops_using_the_model() {
    let s = Server::start(
        &common::model_dir(),
        &[
            ("KEFU_SERVER__REQUEST_TIMEOUT_SECS", "600"),
            ("KEFU_EMBED__MAX_BATCH_TOKENS", "2048"),
            ("KEFU_KB__LOAD_DEMO", "false"),
        ],
    );
    s.ready().await;
    let c = Client::new();
    let before = metric(&c, &s, "kefu_embed_sequences_total").await;
    let body = serde_json::to_vec(&json!({ "inputs": huge_inputs("hang-up") })).unwrap();
    let addr = s.base.strip_prefix("http://").unwrap();
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /v1/embed HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body).await.unwrap();
    wait_for(
        &c,
        &s,
        "kefu_embed_sequences_total",
        before + 1.0,
        "the request never reached the model",
    )
    .await;
    drop(conn);
    wait_for(
        &c,
        &s,
        "kefu_embed_cancelled_total",
        1.0,
        "the request of the client that hung up was never dropped",
    )
    .await;
    // It is no longer counted in flight either (only this /metrics request is).
    assert_eq!(metric(&c, &s, "kefu_http_requests_in_flight").await, 1.0);
    let seqs = metric(&c, &s, "kefu_embed_sequences_total").await;
    assert!(seqs - before < 200.0, "all of it was encoded: {seqs}");
    only_new_work_runs(&c, &s, seqs).await;
}
