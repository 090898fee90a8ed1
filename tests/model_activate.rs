//! `kefu model activate` and the hot swap: the gate refuses a damaged model, one that ranks
//! worse and one an intent model cannot serve with; a tuned model passes and is swapped into a running server while requests keep being
//! answered, and the activation survives a restart.

mod common;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{Server, call, kefu, matching, model_dir};
use reqwest::Method;

fn write_pairs(path: &Path) {
    let mut f = std::fs::File::create(path).unwrap();
    for (a, b, label) in [
        ("怎么申请退款", "我想退货退钱怎么操作", 1),
        ("怎么申请退款", "怎么修改收货地址", 0),
        ("订单什么时候发货", "我买的东西多久能寄出", 1),
        ("订单什么时候发货", "订单可以取消吗", 0),
        ("发票怎么开", "可以开发票吗", 1),
        ("Where is my parcel?", "Track my order", 1),
        ("Where is my parcel?", "Cancel my order", 0),
        ("How do I reset my password?", "I forgot my password", 1),
    ] {
        writeln!(f, "{}", serde_json::json!({"a": a, "b": b, "label": label})).unwrap();
    }
}

/// A real model made by `kefu train embed` (top layer, 2 steps) at learning rate `lr`.
fn tuned(pairs: &Path, out: &Path, lr: &str) {
    common::run_ok(
        kefu()
            .args(["train", "embed", "--pairs"])
            .arg(pairs)
            .arg("--base")
            .arg(model_dir())
            .arg("--out")
            .arg(out)
            .args(["--layers", "1", "--batch-size", "4", "--learning-rate", lr]),
    );
}

fn activate(dir: &Path, server: &Server, extra: &[&str]) -> std::process::Output {
    kefu()
        .args(["model", "activate"])
        .arg(dir)
        .args(["--server", &server.base, "--json"])
        .args(extra)
        .output()
        .unwrap()
}

async fn model_info(c: &reqwest::Client, s: &Server) -> serde_json::Value {
    let (st, v) = call(c, Method::GET, s.url("/v1/model"), None).await;
    assert_eq!(st, 200, "{v}");
    v
}

/// Waits for the running reload to end; returns `GET /v1/model`.
async fn reload_done(c: &reqwest::Client, s: &Server) -> serde_json::Value {
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let v = model_info(c, s).await;
        if v["reload"]["state"] != "running" {
            return v;
        }
        assert!(Instant::now() < deadline, "reload never ended");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gate_refuses_bad_models_and_a_good_one_is_swapped_in_live() {
    let tmp = tempfile::tempdir().unwrap();
    let pairs = tmp.path().join("pairs.jsonl");
    write_pairs(&pairs);
    let (good, wrecked) = (tmp.path().join("good"), tmp.path().join("wrecked"));
    tuned(&pairs, &good, "1e-5");
    // A learning rate a thousand times too high: the top layer is ruined.
    tuned(&pairs, &wrecked, "0.5");

    let s = Server::start(&model_dir(), &[]);
    s.ready().await;
    let c = reqwest::Client::new();
    let q = serde_json::json!({"query": "我想退款怎么操作"});
    let before = matching(&c, &s, q.clone()).await;
    let base_version = before["model"].as_str().unwrap().to_string();
    let info = model_info(&c, &s).await;
    assert_eq!(info["model"]["version"], base_version.as_str());
    assert!(info["activation"].is_null(), "{info}");
    assert_eq!(info["reload"]["state"], "idle");
    let active_file = s.data_dir.path().join("models/active.json");

    // Damaged files: refused before anything is measured.
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "manifest.json",
        "model.safetensors",
    ] {
        std::fs::copy(good.join(f), broken.join(f)).unwrap();
    }
    let w = std::fs::OpenOptions::new()
        .write(true)
        .open(broken.join("model.safetensors"))
        .unwrap();
    w.set_len(w.metadata().unwrap().len() / 2).unwrap();
    let o = activate(&broken, &s, &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("does not match its manifest"), "{err}");
    assert!(!active_file.exists());

    // Worse ranking on the demo FAQ: refused, the report names the measure, nothing changes.
    let o = activate(&wrecked, &s, &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("was refused") && err.contains("demo_faq.top1"),
        "{err}"
    );
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(report["passed"], false, "{report}");
    assert_eq!(report["activated"], false);

    // The same gate through the API (the console's Models page): refused, the report and the
    // reason in the reload status, nothing recorded, the old model still serving.
    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/model/activate"),
        Some(serde_json::json!({"path": wrecked})),
    )
    .await;
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["state"], "running", "{v}");
    let info = reload_done(&c, &s).await;
    let r = &info["reload"];
    assert_eq!(r["state"], "failed", "{info}");
    let why = r["error"].as_str().unwrap();
    assert!(
        why.contains("refused by the gate") && why.contains("demo_faq.top1"),
        "{why}"
    );
    assert_eq!(r["gate"]["passed"], false, "{info}");
    assert_eq!(r["candidate"], wrecked.display().to_string(), "{info}");
    assert_eq!(info["model"]["version"], base_version.as_str());
    assert!(!active_file.exists());
    for (body, want) in [
        (serde_json::json!({"path": tmp.path().join("nowhere")}), 422),
        (serde_json::json!({"path": wrecked, "max_drop": 1.5}), 422),
        (serde_json::json!({"dir": wrecked}), 422),
    ] {
        let (st, v) = call(&c, Method::POST, s.url("/v1/model/activate"), Some(body)).await;
        assert_eq!(st, want, "{v}");
    }
    let top1 = &report["checks"][0];
    assert_eq!(top1["name"], "demo_faq.top1");
    assert!(
        top1["candidate"].as_f64().unwrap() < top1["serving"].as_f64().unwrap() - 0.05,
        "{report}"
    );
    assert!(!active_file.exists());
    assert_eq!(
        model_info(&c, &s).await["model"]["version"],
        base_version.as_str()
    );

    // An intent model in intent.models trained on the serving encoder could not serve with the
    // candidate: refused even with --force, naming it.
    let intent = tmp.path().join("intent-service");
    common::run_ok(
        kefu()
            .args(["train", "intent", "--head", "linear", "--train"])
            .arg(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("datasets/demo/intents/service/train.jsonl"),
            )
            .arg("--out")
            .arg(&intent)
            .arg("--encoder")
            .arg(model_dir()),
    );
    let o = kefu()
        .env("KEFU_INTENT__MODELS__SERVICE", &intent)
        .args(["model", "activate"])
        .arg(&good)
        .args(["--server", &s.base, "--force"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("intent model service") && err.contains("train it again"),
        "{err}"
    );
    assert!(!active_file.exists());

    // A good model passes and is swapped in while requests keep coming: none fails.
    let stop = Arc::new(AtomicBool::new(false));
    let (answered, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (c, url, stop) = (c.clone(), s.url("/v1/match"), stop.clone());
        let (answered, failed) = (answered.clone(), failed.clone());
        tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            let mut first_failure = None;
            while !stop.load(Ordering::SeqCst) {
                let (st, v) = call(
                    &c,
                    Method::POST,
                    url.clone(),
                    Some(serde_json::json!({"query": "发票怎么开"})),
                )
                .await;
                if st == 200 && v["matches"][0]["faq_id"].is_string() {
                    answered.fetch_add(1, Ordering::SeqCst);
                    seen.insert(v["model"].as_str().unwrap().to_string());
                } else {
                    failed.fetch_add(1, Ordering::SeqCst);
                    first_failure.get_or_insert((st, v));
                }
            }
            (seen, first_failure)
        })
    };
    let o = activate(&good, &s, &["--max-drop", "0.05"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let report: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["activated"], true);
    let good_version = report["candidate"]["version"].as_str().unwrap().to_string();
    assert_ne!(good_version, base_version);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::SeqCst);
    let (seen, first_failure) = load.await.unwrap();
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during the swap, the first: {first_failure:?}"
    );
    assert!(answered.load(Ordering::SeqCst) > 0);
    assert!(seen.contains(&good_version), "{seen:?}");

    let info = model_info(&c, &s).await;
    assert_eq!(info["model"]["version"], good_version.as_str(), "{info}");
    assert_eq!(
        info["activation"]["model"]["version"],
        good_version.as_str()
    );
    assert_eq!(
        info["activation"]["previous"]["version"],
        base_version.as_str()
    );
    assert_eq!(info["reload"]["state"], "succeeded", "{info}");
    assert!(info["reload"]["result"]["index_texts"].as_u64().unwrap() > 100);
    let after = matching(&c, &s, q.clone()).await;
    assert_eq!(after["model"], good_version.as_str());
    assert_eq!(
        after["matches"][0]["faq_id"],
        before["matches"][0]["faq_id"]
    );
    let (_, idx) = call(&c, Method::GET, s.url("/v1/index"), None).await;
    assert_eq!(idx["model"], good_version.as_str(), "{idx}");

    // Nothing new to load: the reload says so and changes nothing.
    let (st, v) = call(&c, Method::POST, s.url("/v1/model/reload"), None).await;
    assert_eq!(st, 202, "{v}");
    let info = reload_done(&c, &s).await;
    assert_eq!(info["reload"]["result"]["changed"], false, "{info}");

    // A record pointing at a damaged directory (written behind the gate's back): the reload
    // fails naming it, and the model that served goes on serving.
    let record = std::fs::read_to_string(&active_file).unwrap();
    let mut bad: serde_json::Value = serde_json::from_str(&record).unwrap();
    bad["model"]["path"] = broken.display().to_string().into();
    std::fs::write(&active_file, bad.to_string()).unwrap();
    let (st, _) = call(&c, Method::POST, s.url("/v1/model/reload"), None).await;
    assert_eq!(st, 202);
    let info = reload_done(&c, &s).await;
    assert_eq!(info["reload"]["state"], "failed", "{info}");
    let why = info["reload"]["error"].as_str().unwrap();
    assert!(
        why.contains("broken") && why.contains("previous model keeps serving"),
        "{why}"
    );
    assert_eq!(info["model"]["version"], good_version.as_str());
    assert_eq!(
        matching(&c, &s, q.clone()).await["model"],
        good_version.as_str()
    );

    // Without a record, model.path serves again.
    std::fs::remove_file(&active_file).unwrap();
    let (st, _) = call(&c, Method::POST, s.url("/v1/model/reload"), None).await;
    assert_eq!(st, 202);
    let info = reload_done(&c, &s).await;
    assert_eq!(info["reload"]["state"], "succeeded", "{info}");
    assert_eq!(info["model"]["version"], base_version.as_str());
    assert!(info["activation"].is_null(), "{info}");
    std::fs::write(&active_file, record).unwrap();

    // A restart on the same data directory serves the activated model, whatever --model says.
    let data_dir = s.data_dir.clone();
    drop(s);
    let s = Server::start_in(&model_dir(), data_dir, &[]);
    s.ready().await;
    let v = matching(&c, &s, q).await;
    assert_eq!(v["model"], good_version.as_str());
    let o = kefu()
        .args(["model", "active", "--data-dir"])
        .arg(s.data_dir.path())
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stdout).contains(&good_version));
    // So do the offline commands without --encoder.
    let out = common::run_ok(
        kefu()
            .env("KEFU_SERVER__DATA_DIR", s.data_dir.path())
            .args(["eval", "pairs", "--json", "--data"])
            .arg(&pairs),
    );
    let r: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(r["model"], good_version.as_str(), "{r}");
}
