//! Background work against the real server: a long index rebuild never holds back other KB
//! changes, a stale snapshot serves at once, and shutdown keeps to its grace period.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, call, kefu, matching_until, model_dir, run_ok};
use reqwest::Method;
use serde_json::{Value, json};

async fn index_info(c: &reqwest::Client, s: &Server) -> Value {
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let (st, v) = call(c, Method::GET, s.url("/v1/index"), None).await;
        if st == 200 {
            return v;
        }
        assert!(Instant::now() < deadline, "no index: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for a log line containing `needle`.
fn wait_log(s: &Server, needle: &str) -> String {
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let line = s
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("no log line with {needle:?}"));
        if line.contains(needle) {
            return line;
        }
    }
}

fn examples(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("和本店无关的第 {i} 个问题：明天的天气怎么样"))
        .collect()
}

#[tokio::test]
async fn out_of_scope_examples_are_capped_and_never_hold_back_other_changes() {
    const MAX: usize = 20_000;
    let s = Server::start(
        &model_dir(),
        &[("KEFU_KB__MAX_OUT_OF_SCOPE", &MAX.to_string())],
    );
    s.ready().await;
    let c = reqwest::Client::new();
    let (_, before) = call(&c, Method::GET, s.url("/v1/out-of-scope"), None).await;

    // One example too many: 413 naming the setting, nothing stored.
    let (st, v) = call(
        &c,
        Method::PUT,
        s.url("/v1/out-of-scope"),
        Some(json!({"examples": examples(MAX + 1)})),
    )
    .await;
    assert_eq!(st, 413, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("kb.max_out_of_scope") && msg.contains("20000"),
        "{msg}"
    );
    let (_, after) = call(&c, Method::GET, s.url("/v1/out-of-scope"), None).await;
    assert_eq!(before, after);

    // As many as allowed: accepted, and embedded in the background for a long while. A new
    // FAQ meanwhile is matchable long before they are all in.
    let (st, v) = call(
        &c,
        Method::PUT,
        s.url("/v1/out-of-scope"),
        Some(json!({"examples": examples(MAX)})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/faqs"),
        Some(json!({"id": "late-1", "question": "企鹅玩偶可以刻字吗", "answer": "可以，下单时备注。"})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    matching_until(
        &c,
        &s,
        json!({"query": "企鹅玩偶可以刻字吗", "top_k": 3}),
        |v| v["matches"][0]["faq_id"] == "late-1",
    )
    .await;
    let info = index_info(&c, &s).await;
    assert!(
        info["out_of_scope"].as_u64().unwrap() < MAX as u64 && info["pending"].as_u64() > Some(0),
        "the FAQ waited for every example to be embedded: {info}"
    );

    // The cap is checked at start, naming the key.
    let out = kefu()
        .arg("config")
        .env("KEFU_KB__MAX_OUT_OF_SCOPE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kb.max_out_of_scope"), "{err}");
}

/// Waits until `dir` holds a snapshot and no snapshot write is under way.
async fn until_snapshot(dir: &std::path::Path) {
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let writing = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with(".index-"));
        if dir.join("index/meta.json").exists() && !writing {
            return;
        }
        assert!(Instant::now() < deadline, "no snapshot written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits for `child` to exit, up to `limit`; its status and how long it took.
fn exit_within(
    child: &mut std::process::Child,
    limit: Duration,
) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return (st, started.elapsed());
        }
        assert!(
            started.elapsed() < limit,
            "still running {limit:?} after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn faq_lines(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({"id": format!("{prefix}-{i}"), "question": format!("{prefix} 类第 {i} 号商品怎么保养"),
                   "answer": format!("{prefix} 第 {i} 号：用软布擦拭。")})
            .to_string()
                + "\n"
        })
        .collect()
}

#[tokio::test]
async fn a_stale_snapshot_serves_at_once_while_the_rest_is_embedded() {
    let data = Arc::new(tempfile::tempdir().unwrap());
    let c = reqwest::Client::new();
    let mut s = Server::start_in(&model_dir(), data.clone(), &[]);
    s.ready().await;
    until_snapshot(data.path()).await;
    let served = index_info(&c, &s).await["entries"].as_u64().unwrap();
    s.signal("TERM");
    exit_within(&mut s.child, Duration::from_secs(60));
    drop(s);

    // While the server is down the KB grows; the snapshot no longer covers it.
    const NEW: u64 = 1000;
    let file = data.path().join("more.jsonl");
    std::fs::write(&file, faq_lines("more", NEW as usize)).unwrap();
    run_ok(
        kefu()
            .args(["kb", "import"])
            .arg(&file)
            .arg("--data-dir")
            .arg(data.path()),
    );

    let s = Server::start_in(&model_dir(), data.clone(), &[]);
    let first = index_info(&c, &s).await;
    assert_eq!(first["entries"].as_u64(), Some(served), "{first}");
    assert!(first["pending"].as_u64() >= Some(2 * NEW), "{first}");
    assert_eq!(first["embedded"], 0, "{first}");
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let info = index_info(&c, &s).await;
        if info["entries"].as_u64() == Some(served + NEW) {
            assert_eq!(info["pending"], 0, "{info}");
            break;
        }
        assert!(Instant::now() < deadline, "never complete: {info}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn shutdown_keeps_to_its_grace_during_an_index_build_and_recommender_training() {
    let env = [
        ("KEFU_SERVER__SHUTDOWN_GRACE_SECS", "2"),
        ("KEFU_RECOMMEND__LOAD_DEMO", "true"),
    ];
    let mut s = Server::start(&model_dir(), &env);
    let c = reqwest::Client::new();
    const N: usize = 1500;
    let r = c
        .post(s.url("/v1/faqs:import"))
        .header("content-type", "application/x-ndjson")
        .body(faq_lines("bulk", N))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    // The build of the imported entries is under way (the recommender loads and trains beside it).
    wait_log(&s, "embedding the KB for its index");
    s.signal("TERM");
    let (status, took) = exit_within(&mut s.child, Duration::from_secs(20));
    assert!(status.success(), "{status}");
    eprintln!("exited {took:?} after SIGTERM (grace 2 s)");
    let data = s.data_dir.clone();
    drop(s);

    // Nothing was left half-done: the KB, the demo shop and a working index after a restart.
    let s = Server::start_in(&model_dir(), data, &env[1..]);
    s.ready().await;
    let (st, v) = call(&c, Method::GET, s.url("/v1/faqs?limit=1"), None).await;
    assert_eq!(st, 200);
    let total = v["total"].as_u64().unwrap();
    assert!(total >= N as u64, "{v}");
    let (st, v) = call(
        &c,
        Method::GET,
        s.url(&format!("/v1/faqs/bulk-{}", N - 1)),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let (st, p) = call(&c, Method::GET, s.url("/v1/customers/c0002/profile"), None).await;
        if st == 200 && p["counts"]["purchase"].as_u64() > Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo shop never loaded: {st} {p}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    common::matching(&c, &s, json!({"query": "bulk 类第 7 号商品怎么保养"})).await;
}

#[test]
fn a_stopped_build_keeps_its_vectors_and_the_covered_part_indexes_without_embedding() {
    use kefu::matcher::{Build, KbIndex, covered};
    let e = kefu::embed::Embedder::load(
        &model_dir(),
        &kefu::config::EmbedConfig::default(),
        Arc::new(kefu::analytics::metrics::Metrics::new()),
    )
    .unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/demo/faq.jsonl");
    let kb: Vec<_> = kefu::eval::faq::read_kb(std::path::Path::new(path))
        .unwrap()
        .into_iter()
        .take(30)
        .collect();
    let oos = examples(100);
    let opts = Default::default();
    // Asked to stop at every chance: one batch is embedded, then it stops with it.
    let stopped =
        KbIndex::build_until(kb.clone(), &[], &oos, &e, None, &opts, |_, _| {}, &|| true).unwrap();
    let Build::Stopped(prior) = stopped else {
        panic!("did not stop");
    };
    assert_eq!(prior.texts.len(), 64);
    let all: usize = kb.iter().map(|x| 2 + x.similar.len()).sum::<usize>() + oos.len();
    // What those vectors cover is indexed at once, the rest counted as pending.
    let (entries, docs, examples, pending) = covered(&kb, &[], &oos, &prior, 0);
    assert_eq!(pending, all - 64);
    assert!(entries.len() < kb.len() && examples.len() < oos.len());
    let quick =
        KbIndex::build(entries, &docs, &examples, &e, Some(prior), &opts, |_, _| {}).unwrap();
    assert_eq!(quick.stats.embedded, 0, "{:?}", quick.stats);
    // A small change is taken in whole: the budget covers it.
    let (entries, _, _, pending) = covered(&kb, &[], &[], &quick.prior(), all);
    assert_eq!((entries.len(), pending), (kb.len(), 0));
}
