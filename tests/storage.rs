//! Storage under pressure, against the real binary: many clients writing at once, and
//! `kill -9` in the middle of a KB import, an index snapshot write and a model training.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Server, call, kefu, model_dir, run_ok};
use reqwest::Method;
use serde_json::{Value, json};

const CLIENTS: usize = 16;
const WRITES: usize = 64;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_all_succeed_and_read_back() {
    let s = Server::start(&model_dir(), &[("KEFU_KB__LOAD_DEMO", "false")]);
    s.ready().await;
    let c = reqwest::Client::new();
    let mut clients = tokio::task::JoinSet::new();
    for k in 0..CLIENTS {
        let (c, base) = (c.clone(), s.base.clone());
        clients.spawn(async move {
            for n in 0..WRITES {
                // Items, FAQs, events (on this client's latest item) and feedback, interleaved.
                let (path, body) = match n % 4 {
                    0 => (
                        "/v1/items",
                        json!({"id": format!("it-{k}-{n}"), "title": format!("压力测试商品 {k}-{n}"),
                               "categories": ["load"]}),
                    ),
                    1 => (
                        "/v1/faqs",
                        json!({"id": format!("load-{k}-{n}"),
                               "question": format!("第 {k} 位客户的第 {n} 个问题"),
                               "answer": format!("答案 {k}-{n}")}),
                    ),
                    2 => (
                        "/v1/events",
                        json!({"events": [{"customer_id": format!("cust-{k}"), "type": "purchase",
                                           "item_id": format!("it-{k}-{}", n - 2)}]}),
                    ),
                    _ => (
                        "/v1/feedback",
                        json!({"turn_id": format!("load-{k}-{n}"), "helpful": n % 8 == 3}),
                    ),
                };
                let (st, v) = call(&c, Method::POST, format!("{base}{path}"), Some(body)).await;
                assert!((200..300).contains(&st), "POST {path} → {st} {v}");
            }
        });
    }
    while let Some(r) = clients.join_next().await {
        r.unwrap();
    }

    // Every acknowledged write is there.
    for k in 0..CLIENTS {
        for n in 0..WRITES {
            let path = match n % 4 {
                0 => format!("/v1/items/it-{k}-{n}"),
                1 => format!("/v1/faqs/load-{k}-{n}"),
                _ => continue,
            };
            let (st, v) = call(&c, Method::GET, s.url(&path), None).await;
            assert_eq!(st, 200, "GET {path} → {v}");
        }
        let (st, p) = call(
            &c,
            Method::GET,
            s.url(&format!("/v1/customers/cust-{k}/profile")),
            None,
        )
        .await;
        assert_eq!(st, 200, "{p}");
        assert_eq!(p["counts"]["purchase"], WRITES / 4, "{p}");
        let (st, f) = call(
            &c,
            Method::GET,
            s.url(&format!("/v1/feedback?session_id=load-{k}&limit=1000")),
            None,
        )
        .await;
        assert_eq!(st, 200, "{f}");
        assert_eq!(f["feedback"].as_array().unwrap().len(), WRITES / 4, "{f}");
    }
}

/// FAQ JSONL with `n` entries whose ids start with `prefix`.
fn faq_lines(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| {
            json!({"id": format!("{prefix}-{i}"), "question": format!("{prefix} 的第 {i} 个问题怎么处理"),
                   "answer": format!("{prefix} 第 {i} 个答案。"), "similar": [format!("{prefix} 问题 {i}")]})
            .to_string()
                + "\n"
        })
        .collect()
}

/// The ids of the KB in `data`, read by `kefu kb export`.
fn kb_ids(data: &Path) -> BTreeSet<String> {
    let out = run_ok(
        kefu()
            .args(["kb", "export", "--data-dir"])
            .arg(data)
            .env("KEFU_KB__LOAD_DEMO", "false"),
    );
    out.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["id"].as_str().unwrap().to_string()
        })
        .collect()
}

fn ids(prefix: &str, n: usize) -> BTreeSet<String> {
    (0..n).map(|i| format!("{prefix}-{i}")).collect()
}

/// After an import of `batch` was killed: the KB is what it was, or that plus the whole batch.
fn assert_old_or_new(data: &Path, before: &mut BTreeSet<String>, batch: &BTreeSet<String>) {
    let now = kb_ids(data);
    let with: BTreeSet<String> = before.union(batch).cloned().collect();
    assert!(
        now == *before || now == with,
        "after kill -9 the KB holds {} entries: neither the old {} nor the new {}",
        now.len(),
        before.len(),
        with.len()
    );
    *before = now;
}

/// A pseudo-random delay in `[0, max)` (the tests must not depend on which it is).
fn delay(max: Duration, salt: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64;
    let x = (nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) % 1000;
    max.mul_f64(x as f64 / 1000.0)
}

const BATCH: usize = 20_000;

#[test]
fn kill_9_during_cli_import_leaves_the_old_or_the_new_kb_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let write = |name: &str, n: usize| {
        let p = dir.path().join(format!("{name}.jsonl"));
        std::fs::write(&p, faq_lines(name, n)).unwrap();
        p
    };
    let import = |file: &Path| {
        let mut c = kefu();
        c.args(["kb", "import"])
            .arg(file)
            .arg("--data-dir")
            .arg(&data)
            .env("KEFU_KB__LOAD_DEMO", "false")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    run_ok(&mut import(&write("old", 10)));
    let mut kb = kb_ids(&data);
    assert_eq!(kb, ids("old", 10));
    // How long a whole import takes here, to kill the next ones somewhere inside it.
    let started = Instant::now();
    run_ok(&mut import(&write("b0", BATCH)));
    let whole = started.elapsed();
    kb = kb_ids(&data);
    assert_eq!(kb.len(), 10 + BATCH);
    for round in 1..=4u64 {
        let name = format!("b{round}");
        let file = write(&name, BATCH);
        let mut child = import(&file).spawn().unwrap();
        std::thread::sleep(delay(whole, round));
        let _ = child.kill();
        child.wait().unwrap();
        assert_old_or_new(&data, &mut kb, &ids(&name, BATCH));
    }
}

#[tokio::test]
async fn kill_9_during_http_import_leaves_the_old_or_the_new_kb_whole() {
    let env = [
        ("KEFU_KB__LOAD_DEMO", "false"),
        ("KEFU_LIMITS__MAX_BODY_BYTES", "100000000"),
        ("KEFU_SERVER__REQUEST_TIMEOUT_SECS", "600"),
        ("KEFU_INDEX__SNAPSHOT", "false"),
    ];
    let data = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let c = reqwest::Client::new();
    let import = |s: &Server, body: String| {
        c.post(s.url("/v1/faqs:import"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
    };
    let s = Server::start_in(&model_dir(), data.clone(), &env);
    let started = Instant::now();
    let r = import(&s, faq_lines("b0", BATCH)).await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let whole = started.elapsed();
    drop(s);
    let mut kb = kb_ids(data.path());
    assert_eq!(kb, ids("b0", BATCH));
    for round in 1..=3u64 {
        let name = format!("b{round}");
        let mut s = Server::start_in(&model_dir(), data.clone(), &env);
        let request = tokio::spawn(import(&s, faq_lines(&name, BATCH)));
        tokio::time::sleep(delay(whole, round)).await;
        let _ = s.child.kill();
        s.child.wait().unwrap();
        let _ = request.await;
        drop(s);
        assert_old_or_new(data.path(), &mut kb, &ids(&name, BATCH));
    }
}

/// Entries of `dir` whose names start with `prefix` (lock files aside).
fn named(dir: &Path, prefix: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return vec![];
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(prefix) && !n.ends_with(".lock"))
        .collect()
}

/// Waits until no entry of `dir` starts with `prefix`.
fn until_none(dir: &Path, prefix: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let left = named(dir, prefix);
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left in {}: {left:?}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

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

/// Starts a server on `data`, waits until it is ready and its index snapshot is on disk
/// without any write under way.
async fn serve_until_snapshot(data: &std::sync::Arc<tempfile::TempDir>) -> Server {
    let s = Server::start_in(&model_dir(), data.clone(), &[]);
    s.ready().await;
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    while !data.path().join("index/meta.json").exists() {
        assert!(Instant::now() < deadline, "no snapshot written");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_none(data.path(), ".index-");
    s
}

#[tokio::test]
async fn a_snapshot_write_cut_short_is_recovered_and_its_leftovers_removed() {
    let data = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let c = reqwest::Client::new();
    let s = serve_until_snapshot(&data).await;
    let texts = index_info(&c, &s).await["texts"].as_u64().unwrap();
    drop(s);

    // What an older kefu left when killed between its two renames: no index/, the previous
    // snapshot moved aside, the new one complete beside it, and an unfinished write's files.
    let d = data.path();
    std::fs::rename(d.join("index"), d.join(".index-old-4242")).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let copy = d.join(".index-Ab12Cd");
    std::fs::create_dir(&copy).unwrap();
    for f in std::fs::read_dir(d.join(".index-old-4242")).unwrap() {
        let f = f.unwrap();
        std::fs::copy(f.path(), copy.join(f.file_name())).unwrap();
    }
    std::fs::create_dir(d.join(".index-unfinished")).unwrap();
    std::fs::write(d.join(".index-unfinished/vectors.f32"), vec![0u8; 4 << 20]).unwrap();

    let s = Server::start_in(&model_dir(), data.clone(), &[]);
    s.ready().await;
    let info = index_info(&c, &s).await;
    assert_eq!(info["texts"].as_u64(), Some(texts), "{info}");
    assert_eq!(
        info["embedded"], 0,
        "served from a recovered snapshot, not rebuilt: {info}"
    );
    assert!(d.join("index/meta.json").exists());
    until_none(d, ".index-");

    // A real kill -9 while a snapshot is being written: poll for the write's temporary
    // directory and kill the server the moment it appears.
    let entries = info["entries"].as_u64().unwrap();
    let mut s = s;
    let (mut added, mut caught) = (0, false);
    for n in 0..20 {
        let (st, v) = call(
            &c,
            Method::POST,
            s.url("/v1/faqs"),
            Some(json!({"id": format!("kill-{n}"), "question": format!("第 {n} 次写快照时断电怎么办"),
                        "answer": "重启即可。"})),
        )
        .await;
        assert_eq!(st, 201, "{v}");
        added += 1;
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline && named(d, ".index-").is_empty() {
            std::thread::sleep(Duration::from_micros(200));
        }
        if !named(d, ".index-").is_empty() {
            let _ = s.child.kill();
            s.child.wait().unwrap();
            caught = true;
            break;
        }
    }
    assert!(caught, "never saw a snapshot being written");
    drop(s);
    let s = Server::start_in(&model_dir(), data.clone(), &[]);
    s.ready().await;
    let info = index_info(&c, &s).await;
    assert_eq!(info["entries"].as_u64(), Some(entries + added), "{info}");
    assert!(
        info["embedded"].as_u64().unwrap() <= 4,
        "the snapshot on disk was used (only the last entry's texts embedded): {info}"
    );
    until_none(d, ".index-");
}

/// Whether `dir` holds a complete intent model: its card parses and its weights file is a
/// complete safetensors file.
fn complete_intent_model(dir: &Path) -> bool {
    let Ok(card) = std::fs::read(dir.join("intent.json")) else {
        return false;
    };
    if serde_json::from_slice::<Value>(&card).is_err() {
        return false;
    }
    let Ok(w) = std::fs::read(dir.join("model.safetensors")) else {
        return false;
    };
    if w.len() < 8 {
        return false;
    }
    let n = u64::from_le_bytes(w[..8].try_into().unwrap()) as usize;
    let Some(header) = w.get(8..8 + n) else {
        return false;
    };
    let Ok(header) = serde_json::from_slice::<Value>(header) else {
        return false;
    };
    let end = header
        .as_object()
        .unwrap()
        .values()
        .filter_map(|t| t["data_offsets"][1].as_u64())
        .max()
        .unwrap_or(0) as usize;
    w.len() == 8 + n + end
}

#[test]
fn kill_9_during_training_leaves_no_half_written_model() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("models/severity");
    let parent = out.parent().unwrap().to_path_buf();
    let train = || {
        let mut c = kefu();
        c.args(["train", "intent", "--train"])
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/datasets/demo/intents/complaint_severity/train.jsonl"
            ))
            .arg("--out")
            .arg(&out)
            .arg("--cache")
            .arg(dir.path().join("cache"))
            .arg("--encoder")
            .arg(model_dir())
            .args(["--epochs", "5", "--head", "linear"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    // Killed before anything was written: nothing at --out.
    let mut child = train().spawn().unwrap();
    while named(&parent, ".kefu-intent-").is_empty() {
        if let Some(st) = child.try_wait().unwrap() {
            panic!("training ended ({st}) before writing its model");
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    let _ = child.kill();
    child.wait().unwrap();
    assert!(
        !out.exists() || complete_intent_model(&out),
        "a half-written model at --out"
    );
    run_ok(&mut train());
    assert!(complete_intent_model(&out));
    assert!(
        named(&parent, ".kefu-intent-").is_empty(),
        "a finished training leaves no temporary directories (nor those of the one killed)"
    );
    // Killed while writing over a previous model: the previous one or the new one, whole.
    for _ in 0..3 {
        let mut child = train().spawn().unwrap();
        while named(&parent, ".kefu-intent-").is_empty() && child.try_wait().unwrap().is_none() {
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = child.kill();
        child.wait().unwrap();
        assert!(
            complete_intent_model(&out),
            "after kill -9 --out must hold a complete model"
        );
    }
}
