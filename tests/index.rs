//! The KB index behind `/v1/match`: HNSW with tombstones and incremental inserts, snapshots
//! reloaded at start, and snapshots of another model version rebuilt rather than used.

mod common;

use std::time::{Duration, Instant};

use common::Server;
use reqwest::Client;
use serde_json::{Value, json};

/// The demo KB has ~800 questions: below this they would be searched exactly.
const FORCE_HNSW: (&str, &str) = ("KEFU_INDEX__EXACT_BELOW", "100");

async fn get(c: &Client, url: String) -> (u16, Value) {
    let r = c.get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Waits for `/v1/index` to satisfy `ok`, returning it.
async fn index_where(c: &Client, s: &Server, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let (st, v) = get(c, s.url("/v1/index")).await;
        if st == 200 && ok(&v) {
            return v;
        }
        assert!(st == 200 || st == 503, "{st} {v}");
        assert!(Instant::now() < deadline, "index never got there: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn top_ids(c: &Client, s: &Server, q: &str) -> Vec<String> {
    let r = c
        .post(s.url("/v1/match"))
        .json(&json!({"query": q, "top_k": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["faq_id"].as_str().unwrap().to_string())
        .collect()
}

/// Texts in the saved snapshot, once one exists.
fn snapshot_texts(s: &Server) -> Option<usize> {
    let meta = std::fs::read(s.data_dir.path().join("index/meta.json")).ok()?;
    let v: Value = serde_json::from_slice(&meta).ok()?;
    Some(v["texts"].as_array()?.len())
}

async fn wait_snapshot(s: &Server, texts: usize) {
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    while snapshot_texts(s) != Some(texts) {
        assert!(Instant::now() < deadline, "snapshot never saved");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn stop(s: Server) {
    s.signal("TERM");
    let mut s = s;
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    while s.child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "server did not stop");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const QUERIES: &[&str] = &[
    "退款申请提交了，大概几天钱能回到卡上",
    "快递已经在路上了，我突然不想要了怎么办",
    "How long does a refund take to reach my card?",
    "积分可以抵扣多少钱",
];

#[tokio::test]
async fn hnsw_updates_snapshot_reload_and_model_mismatch_rebuild() {
    let model = common::model_dir();
    let c = Client::new();
    let s = Server::start(&model, &[FORCE_HNSW]);
    s.ready().await;
    let first = index_where(&c, &s, |v| v["texts"].as_u64() > Some(0)).await;
    let texts = first["texts"].as_u64().unwrap() as usize;
    // The demo KB's questions, its entries' answers and its out-of-scope examples are embedded
    // (and snapshotted) together.
    let vectors = texts
        + first["entries"].as_u64().unwrap() as usize
        + first["out_of_scope"].as_u64().unwrap() as usize;
    assert!(vectors > texts, "{first}");
    assert_eq!(first["hnsw"], true, "{first}");
    assert_eq!(first["embedded"].as_u64(), Some(vectors as u64), "{first}");
    let mut before = Vec::new();
    for q in QUERIES {
        before.push(top_ids(&c, &s, q).await);
    }

    // A new entry goes into the live graph: only its own questions and answer are embedded.
    let entry = json!({"id": "zh-custom-hnsw", "question": "企鹅玩偶能刻字吗",
        "similar": ["毛绒企鹅可以定制名字吗"], "answer": "可以，下单时备注刻字内容。"});
    let r = c.post(s.url("/v1/faqs")).json(&entry).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let after_add = index_where(&c, &s, |v| v["texts"].as_u64() == Some(texts as u64 + 2)).await;
    assert_eq!(after_add["embedded"], 3, "{after_add}");
    assert_eq!(after_add["hnsw"], true);
    assert_eq!(after_add["graph_rows"].as_u64(), Some(texts as u64 + 2));
    assert_eq!(
        top_ids(&c, &s, "企鹅娃娃可以刻名字吗").await[0],
        "zh-custom-hnsw"
    );

    // Deleting it leaves a tombstone in the graph; the entry is never returned.
    let r = c
        .delete(s.url("/v1/faqs/zh-custom-hnsw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let after_del = index_where(&c, &s, |v| v["texts"].as_u64() == Some(texts as u64)).await;
    assert_eq!(after_del["embedded"], 0, "{after_del}");
    assert_eq!(after_del["graph_rows"].as_u64(), Some(texts as u64 + 2));
    assert!(
        !top_ids(&c, &s, "企鹅娃娃可以刻名字吗")
            .await
            .contains(&"zh-custom-hnsw".to_string())
    );
    wait_snapshot(&s, vectors).await;
    let data_dir = s.data_dir.clone();
    stop(s).await;

    // Restart on the same data: the snapshot is used, nothing is embedded again, same answers.
    let s = Server::start_in(&model, data_dir.clone(), &[FORCE_HNSW]);
    s.ready().await;
    let reloaded = index_where(&c, &s, |v| v["texts"].as_u64() > Some(0)).await;
    assert_eq!(reloaded["embedded"], 0, "{reloaded}");
    assert_eq!(reloaded["reused"].as_u64(), Some(vectors as u64));
    assert_eq!(reloaded["hnsw"], true);
    for (q, want) in QUERIES.iter().zip(&before) {
        assert_eq!(&top_ids(&c, &s, q).await, want, "{q}");
    }
    stop(s).await;

    // A snapshot from another model version is never used, even with its vectors corrupted.
    let meta_path = data_dir.path().join("index/meta.json");
    let mut meta: Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    meta["model_version"] = json!("some-other-model@0000");
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap()).unwrap();
    let vec_path = data_dir.path().join("index/vectors.f32");
    let len = std::fs::metadata(&vec_path).unwrap().len() as usize;
    std::fs::write(&vec_path, vec![0u8; len]).unwrap();
    let s = Server::start_in(&model, data_dir, &[FORCE_HNSW]);
    s.ready().await;
    let rebuilt = index_where(&c, &s, |v| v["texts"].as_u64() > Some(0)).await;
    assert_eq!(
        rebuilt["embedded"].as_u64(),
        Some(vectors as u64),
        "{rebuilt}"
    );
    assert_eq!(rebuilt["reused"], 0);
    for (q, want) in QUERIES.iter().zip(&before) {
        assert_eq!(&top_ids(&c, &s, q).await, want, "{q}");
    }
    // And the snapshot on disk is the serving model's again.
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let meta: Value = serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
        if meta["model_version"] == rebuilt["model"] {
            break;
        }
        assert!(Instant::now() < deadline, "snapshot not rewritten");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn cli_match_starts_from_the_servers_snapshot() {
    let model = common::model_dir();
    let c = Client::new();
    let s = Server::start(&model, &[]);
    s.ready().await;
    let first = index_where(&c, &s, |v| v["texts"].as_u64() > Some(0)).await;
    let vectors: u64 = ["texts", "entries", "out_of_scope"]
        .iter()
        .map(|k| first[k].as_u64().unwrap())
        .sum();
    wait_snapshot(&s, vectors as usize).await;
    let data = s.data_dir.clone();
    stop(s).await;

    // Every vector comes from the snapshot: nothing of the KB is embedded again.
    let out = common::kefu()
        .args(["match", "退宽多久能到账", "--top-k", "3", "--data-dir"])
        .arg(data.path())
        .arg("--model")
        .arg(&model)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "KB index built: {vectors} vectors reused from the snapshot, 0 embedded"
        )),
        "{err}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("decision: answer"), "{stdout}");
    assert!(stdout.contains("zh-refunds-001"), "{stdout}");
}
