//! Intent models with the real encoder: `kefu train intent` and `kefu eval intent` on the demo
//! data, the model directory, the encoder check, and `/v1/intent` with routing over HTTP.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

fn demo(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("datasets/demo/intents")
        .join(file)
}

fn last_json(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap()
}

/// `kefu train intent` on the demo service data into `out` (linear head: quick).
fn train(out: &Path, cache: &Path) -> Value {
    last_json(&common::run_ok(
        common::kefu()
            .args(["train", "intent", "--json", "--head", "linear", "--train"])
            .arg(demo("service/train.jsonl"))
            .arg("--out")
            .arg(out)
            .arg("--cache")
            .arg(cache)
            .arg("--encoder")
            .arg(common::model_dir()),
    ))
}

#[test]
fn train_then_evaluate_with_a_report() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("models/service");
    let cache = tmp.path().join("cache");
    let r = train(&model, &cache);
    assert_eq!(r["labels"], 29, "{r}");
    assert_eq!(r["head"], "linear", "{r}");
    assert!(r["dev_accuracy"]["linear"].as_f64().unwrap() > 0.8, "{r}");
    assert!(r["temperature"].as_f64().unwrap() > 0.0, "{r}");
    // The directory: weights, labels, calibration, encoder, training config and metrics.
    let card: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("intent.json")).unwrap()).unwrap();
    let manifest: Value = serde_json::from_str(
        &std::fs::read_to_string(common::model_dir().join("manifest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        card["encoder"]["sha256"],
        manifest["files"]["model.safetensors"]
    );
    assert_eq!(card["encoder"]["version"], manifest["version"]);
    assert_eq!(card["labels"].as_array().unwrap().len(), 29);
    assert_eq!(card["oos_label"], "oos");
    assert!(card["training"]["train_sha256"].as_str().unwrap().len() == 64);
    assert_eq!(card["training"]["options"]["head"], "linear");
    assert!(card["metrics"]["dev_in_scope_accuracy"].as_f64().is_some());
    assert!(model.join("model.safetensors").exists());
    assert!(
        std::fs::read_dir(&cache).unwrap().count() >= 2,
        "train and dev embeddings are cached"
    );

    let report = tmp.path().join("report");
    let out = common::kefu()
        .args(["eval", "intent", "--json", "--model"])
        .arg(&model)
        .arg("--test")
        .arg(demo("service/test.jsonl"))
        .arg("--report")
        .arg(&report)
        .arg("--cache")
        .arg(&cache)
        .arg("--encoder")
        .arg(common::model_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let e = last_json(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(e["n"], 278, "{e}");
    assert_eq!(e["oos_rows"], 26, "{e}");
    for k in [
        "accuracy",
        "in_scope_accuracy",
        "macro_f1",
        "oos_precision",
        "oos_recall",
    ] {
        let v = e[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {e}"));
        assert!((0.0..=1.0).contains(&v), "{k}: {e}");
    }
    assert!(e["accuracy"].as_f64().unwrap() > 0.8, "{e}");
    assert!(e["oos_recall"].as_f64().unwrap() > 0.5, "{e}");
    let per_intent = std::fs::read_to_string(report.join("per_intent.csv")).unwrap();
    assert!(per_intent.starts_with("intent,support,predicted,precision,recall,f1"));
    assert_eq!(per_intent.lines().count(), 1 + 29, "{per_intent}");
    let confusion = std::fs::read_to_string(report.join("confusion.csv")).unwrap();
    assert_eq!(confusion.lines().count(), 1 + 29);
    let svg = std::fs::read_to_string(report.join("confusion.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("order_status"));
    let misses = std::fs::read_to_string(report.join("misclassified.csv")).unwrap();
    assert!(misses.starts_with("text,gold,predicted,confidence,runner_up"));
    assert!(report.join("confused_pairs.csv").exists());
    assert!(report.join("summary.json").exists());

    // A threshold of 1 makes everything out of scope.
    let all_oos = last_json(&common::run_ok(
        common::kefu()
            .args(["eval", "intent", "--json", "--threshold", "1", "--model"])
            .arg(&model)
            .arg("--test")
            .arg(demo("service/test.jsonl"))
            .arg("--cache")
            .arg(&cache)
            .arg("--encoder")
            .arg(common::model_dir()),
    ));
    assert_eq!(all_oos["oos_recall"], 1.0);
    assert_eq!(all_oos["in_scope_accuracy"], 0.0);

    // A model of another encoder is refused, by eval and by the server.
    let card_path = model.join("intent.json");
    let mut card = card;
    card["encoder"]["sha256"] = json!("0".repeat(64));
    card["encoder"]["version"] = json!("other-encoder@000000000000");
    std::fs::write(&card_path, card.to_string()).unwrap();
    let out = common::kefu()
        .args(["eval", "intent", "--model"])
        .arg(&model)
        .arg("--test")
        .arg(demo("service/test.jsonl"))
        .arg("--encoder")
        .arg(common::model_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("other-encoder@000000000000") && err.contains("kefu train intent"),
        "{err}"
    );
    let mut server = common::kefu();
    let out = server
        .args(["serve", "--port", "0", "--model"])
        .arg(common::model_dir())
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env("KEFU_KB__LOAD_DEMO", "false")
        .env("KEFU_INTENT__LOAD_DEMO", "false")
        .env("KEFU_INTENT__MODELS__SERVICE", &model)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("intent model service") && err.contains("other-encoder@000000000000"),
        "{err}"
    );
}

#[test]
fn bad_training_data_is_reported_by_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"text\": \"hi\", \"label\": \"greeting\"}\n{\"text\": \" \", \"label\": \"greeting\"}\n",
    )
    .unwrap();
    let run = |file: &Path| {
        common::kefu()
            .args(["train", "intent", "--train"])
            .arg(file)
            .arg("--out")
            .arg(tmp.path().join("m"))
            .arg("--encoder")
            .arg(common::model_dir())
            .output()
            .unwrap()
    };
    let out = run(&bad);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.jsonl:2: text is empty"), "{err}");
    std::fs::write(
        &bad,
        "{\"text\": \"hi\", \"label\": \"greeting\"}\n{\"text\": 3}\n",
    )
    .unwrap();
    let err = String::from_utf8_lossy(&run(&bad).stderr).into_owned();
    assert!(err.contains("bad.jsonl:2"), "{err}");
    std::fs::write(
        &bad,
        "{\"text\": \"hi\", \"label\": \"greeting\"}\n{\"text\": \"hello\", \"label\": \"greeting\"}\n",
    )
    .unwrap();
    let err = String::from_utf8_lossy(&run(&bad).stderr).into_owned();
    assert!(err.contains("at least two labels"), "{err}");
    assert!(!tmp.path().join("m").exists(), "nothing written on failure");
}

async fn intent(c: &reqwest::Client, s: &common::Server, body: Value) -> (u16, Value) {
    common::call(c, Method::POST, s.url("/v1/intent"), Some(body)).await
}

#[tokio::test]
async fn intent_api_classifies_and_routes_with_the_demo_models() {
    let s = common::Server::start(
        &common::model_dir(),
        &[
            ("KEFU_INTENT__LOAD_DEMO", "true"),
            ("KEFU_KB__LOAD_DEMO", "false"),
        ],
    );
    s.ready().await;
    let c = reqwest::Client::new();
    // The demo models train at first start: 503 until then.
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let (st, v) = intent(&c, &s, json!({"text": "你好"})).await;
        if st == 200 {
            break;
        }
        assert_eq!(st, 503, "{v}");
        assert_eq!(v["error"]["code"], "intent_not_ready", "{v}");
        assert!(
            Instant::now() < deadline,
            "the demo intent models never loaded"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    let (st, v) = intent(
        &c,
        &s,
        json!({"text": "我的订单到哪了？订单号2024051812345"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["intent"], "order_status", "{v}");
    assert_eq!(v["model"], "service");
    assert_eq!(v["out_of_scope"], false);
    assert_eq!(v["ranking"].as_array().unwrap().len(), 5);
    assert_eq!(v["ranking"][0]["intent"], "order_status");
    assert_eq!(v["route"]["target"], "bot", "{v}");
    assert!(
        v["encoder"]
            .as_str()
            .unwrap()
            .starts_with("multilingual-e5-small@")
    );

    // An explicit request for a person: an agent, a VIP agent for VIP tiers.
    let (_, v) = intent(&c, &s, json!({"text": "别绕了，我要转人工"})).await;
    assert_eq!(v["human_request"], true, "{v}");
    assert_eq!(v["route"]["target"], "agent", "{v}");
    let (_, v) = intent(
        &c,
        &s,
        json!({"text": "I want a human agent", "customer": {"id": "c1", "tier": "diamond"}}),
    )
    .await;
    assert_eq!(v["route"]["target"], "vip_agent", "{v}");
    assert_eq!(v["route"]["rule"], "vip_asks_for_person", "{v}");

    // A complaint is graded by the severity model and goes to the complaints team.
    let (_, v) = intent(
        &c,
        &s,
        json!({"text": "你们的充电器插上就冒烟起火了，孩子的手被烫伤了，我要投诉！"}),
    )
    .await;
    assert_eq!(v["intent"], "complaint", "{v}");
    assert!(v["severity"]["label"].is_string(), "{v}");
    assert_eq!(v["route"]["target"], "complaints", "{v}");
    assert!(v["route"]["sla_minutes"].as_u64().is_some(), "{v}");

    // Nonsense is out of scope; a VIP asking it reaches a VIP agent.
    let (_, v) = intent(&c, &s, json!({"text": "明天上海会下雨吗"})).await;
    assert_eq!(v["out_of_scope"], true, "{v}");
    assert_eq!(v["intent"], "oos", "{v}");
    assert_eq!(v["route"]["target"], "bot", "{v}");
    let (_, v) = intent(
        &c,
        &s,
        json!({"text": "明天上海会下雨吗", "customer": {"tier": "gold"}}),
    )
    .await;
    assert_eq!(v["route"]["target"], "vip_agent", "{v}");

    // The severity model by name.
    let (st, v) = intent(
        &c,
        &s,
        json!({"text": "有人盗用我的账号乱下单，钱都被扣了", "model": "complaint_severity"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(["general", "urgent", "major"].contains(&v["ranking"][0]["intent"].as_str().unwrap()));

    let (st, v) = common::call(&c, Method::GET, s.url("/v1/intent/models"), None).await;
    assert_eq!(st, 200);
    let names: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["complaint_severity", "service"], "{v}");
    assert_eq!(v["default_model"], "service");

    // Bad input.
    let (st, v) = intent(&c, &s, json!({"text": "hi", "model": "nope"})).await;
    assert_eq!(st, 404, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("loaded: complaint_severity, service"),
        "{v}"
    );
    let (st, v) = intent(&c, &s, json!({"text": "   "})).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (422, Some("empty_input"))
    );
    let (st, _) = intent(&c, &s, json!({"text": "x".repeat(9000)})).await;
    assert_eq!(st, 413);
    let (st, v) = intent(&c, &s, json!({"txt": "hi"})).await;
    assert!(st == 400 || st == 422, "{st} {v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("txt"),
        "{v}"
    );
    let r = c
        .post(s.url("/v1/intent"))
        .header("content-type", "application/json")
        .body("{\"text\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // A restart loads the saved demo models instead of training again.
    let data = s.data_dir.clone();
    drop(s);
    let s = common::Server::start_in(
        &common::model_dir(),
        data,
        &[
            ("KEFU_INTENT__LOAD_DEMO", "true"),
            ("KEFU_KB__LOAD_DEMO", "false"),
        ],
    );
    s.ready().await;
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let (st, v) = intent(&c, &s, json!({"text": "谢谢你"})).await;
        if st == 200 {
            assert_eq!(v["intent"], "thanks", "{v}");
            break;
        }
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut trained_again = false;
    while let Ok(line) = s.log.try_recv() {
        trained_again |= line.contains("training the demo intent model");
    }
    assert!(!trained_again, "the saved demo models are reused");
}

#[tokio::test]
async fn fine_tuned_layers_train_resume_evaluate_and_serve() {
    use std::io::{BufRead, BufReader};
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("tuned");
    let train_cmd = |resume: bool| {
        let mut c = common::kefu();
        c.args([
            "train",
            "intent",
            "--head",
            "linear",
            "--finetune-layers",
            "1",
        ])
        .args(["--finetune-epochs", "3", "--train"])
        .arg(demo("service/train.jsonl"))
        .arg("--out")
        .arg(&model)
        .arg("--encoder")
        .arg(common::model_dir())
        .env("KEFU_LOG", "info");
        if resume {
            c.arg("--resume");
        }
        c
    };
    // Ctrl-C after the first epoch: the checkpoint stays, the model is not written.
    let mut child = train_cmd(false)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut log = String::new();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        log.push_str(&line);
        log.push('\n');
        if line.contains("fine-tuning epoch 1:") {
            let ok = std::process::Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status()
                .unwrap();
            assert!(ok.success());
        }
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "{log}");
    assert!(log.contains("--resume"), "{log}");
    let checkpoint = tmp.path().join("tuned.checkpoint");
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(checkpoint.join("state.json")).unwrap())
            .unwrap();
    assert!(state["epochs_done"].as_u64().unwrap() >= 1, "{state}");
    assert!(!model.exists());

    // Resuming finishes the run, writes the model and removes the checkpoint.
    let out = train_cmd(true).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("resuming from"), "{err}");
    assert!(!checkpoint.exists());
    let card: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("intent.json")).unwrap()).unwrap();
    assert_eq!(card["finetune"]["layers"], 1, "{card}");
    assert_eq!(card["finetune"]["encoder_layers"], 12, "{card}");
    // Training lowers the loss: the last epoch's is below the first's.
    let first: f64 = log
        .lines()
        .find_map(|l| l.split("fine-tuning epoch 1: loss ").nth(1))
        .expect("epoch 1 logged")
        .trim()
        .parse()
        .unwrap();
    let last = card["training"]["finetune"]["final_loss"].as_f64().unwrap();
    assert!(last < first, "loss {first} → {last}");

    // Evaluation and serving compute vectors through the tuned layer.
    let e = last_json(&common::run_ok(
        common::kefu()
            .args(["eval", "intent", "--json", "--model"])
            .arg(&model)
            .arg("--test")
            .arg(demo("service/test.jsonl"))
            .arg("--encoder")
            .arg(common::model_dir()),
    ));
    assert!(e["accuracy"].as_f64().unwrap() > 0.8, "{e}");
    let s = common::Server::start(
        &common::model_dir(),
        &[
            ("KEFU_KB__LOAD_DEMO", "false"),
            ("KEFU_INTENT__MODELS__SERVICE", model.to_str().unwrap()),
        ],
    );
    s.ready().await;
    let c = reqwest::Client::new();
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    let v = loop {
        let (st, v) = intent(&c, &s, json!({"text": "我想申请退货，衣服尺码不合适"})).await;
        if st == 200 {
            break v;
        }
        assert!(Instant::now() < deadline, "{v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(v["intent"], "return_request", "{v}");
}

/// Waits until `/v1/intent` answers with the demo models; returns whether the log said they
/// were trained and whether it said they came from the cache.
async fn demo_models_loaded(s: &common::Server) -> (bool, bool) {
    let c = reqwest::Client::new();
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let (st, v) = intent(&c, s, json!({"text": "谢谢你"})).await;
        if st == 200 {
            assert_eq!(v["intent"], "thanks", "{v}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the demo intent models never loaded"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let (mut trained, mut cached) = (false, false);
    while let Ok(line) = s.log.try_recv() {
        trained |= line.contains("training the demo intent model");
        cached |= line.contains("taken from the cache");
    }
    (trained, cached)
}

#[tokio::test]
async fn a_new_data_directory_takes_the_demo_models_from_the_shared_cache() {
    let cache = tempfile::tempdir().unwrap();
    let cache_env = cache.path().to_str().unwrap().to_string();
    let env = |cache_demo: &'static str| {
        vec![
            ("KEFU_INTENT__LOAD_DEMO", "true"),
            ("KEFU_INTENT__CACHE_DEMO", cache_demo),
            ("KEFU_KB__LOAD_DEMO", "false"),
            ("KEFU_RECOMMEND__LOAD_DEMO", "false"),
        ]
    };
    // An empty cache: the first data directory trains, and fills the cache.
    let mut first = env("true");
    first.push(("XDG_CACHE_HOME", cache_env.as_str()));
    let s = common::Server::start(&common::model_dir(), &first);
    s.ready().await;
    assert_eq!(demo_models_loaded(&s).await, (true, false));
    drop(s);
    let cached: Vec<_> = walk(cache.path());
    assert!(
        cached
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "safetensors")),
        "nothing cached: {cached:?}"
    );
    // A second, empty data directory: taken from the cache, not trained.
    let s = common::Server::start(&common::model_dir(), &first);
    s.ready().await;
    assert_eq!(demo_models_loaded(&s).await, (false, true));
    drop(s);
    // With the cache off, a new data directory trains again.
    let mut off = env("false");
    off.push(("XDG_CACHE_HOME", cache_env.as_str()));
    let s = common::Server::start(&common::model_dir(), &off);
    s.ready().await;
    assert_eq!(demo_models_loaded(&s).await, (true, false));
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
