//! One lifecycle for every model: an intent model and the recommender are activated through
//! their gates into a running service under load (`/v1/intent`, `/v1/chat`, `/v1/recommend`)
//! with no failed request and every response from exactly one version; worse candidates are
//! refused naming the measure; rollback restores the previous version; a restart comes back on
//! the active versions; `kefu model list` and `kefu eval compare` report them.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Server, call, kefu, model_dir, run_ok};
use reqwest::Method;

fn repo(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(p)
}

/// Two intent models of the demo's service intents trained on different data: all of the
/// training file, and every tenth line of it.
fn intent_models(tmp: &Path) -> (PathBuf, PathBuf) {
    let train = repo("datasets/demo/intents/service/train.jsonl");
    let few = tmp.join("few.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&train)
        .unwrap()
        .lines()
        .step_by(10)
        .map(str::to_string)
        .collect();
    std::fs::write(&few, lines.join("\n") + "\n").unwrap();
    let (full, small) = (tmp.join("intent-full"), tmp.join("intent-few"));
    for (data, out) in [(&train, &full), (&few, &small)] {
        run_ok(
            kefu()
                .args(["train", "intent", "--head", "linear", "--train"])
                .arg(data)
                .arg("--out")
                .arg(out)
                .arg("--encoder")
                .arg(model_dir())
                .arg("--data-dir")
                .arg(tmp),
        );
    }
    (full, small)
}

/// Two recommenders of the demo shop: all interactions, and every seventh.
fn recommenders(tmp: &Path) -> (PathBuf, PathBuf) {
    let all = repo("datasets/demo/recommend/interactions.csv");
    let some = tmp.join("some.csv");
    let text = std::fs::read_to_string(&all).unwrap();
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i == 0 || i % 7 == 0)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&some, kept.join("\n") + "\n").unwrap();
    let (full, small) = (tmp.join("rec-full"), tmp.join("rec-some"));
    for (data, out) in [(&all, &full), (&some, &small)] {
        run_ok(
            kefu()
                .args(["train", "recommend", "--interactions"])
                .arg(data)
                .arg("--items")
                .arg(repo("datasets/demo/recommend/items.jsonl"))
                .arg("--out")
                .arg(out),
        );
    }
    (full, small)
}

fn version_of(dir: &Path, slot: &serde_json::Value) -> String {
    let v = slot["version"].as_str().unwrap().to_string();
    assert!(
        v.starts_with(dir.file_name().unwrap().to_str().unwrap()),
        "{v} is not {}",
        dir.display()
    );
    v
}

async fn models(c: &reqwest::Client, s: &Server) -> serde_json::Value {
    let (st, v) = call(c, Method::GET, s.url("/v1/models"), None).await;
    assert_eq!(st, 200, "{v}");
    v
}

fn slot<'a>(models: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    models["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["slot"] == name)
        .unwrap_or_else(|| panic!("{name} is not in {models}"))
}

/// What the load saw: versions per route, and the first failure.
#[derive(Default, Debug)]
struct Seen {
    intent: BTreeSet<String>,
    chat: BTreeSet<String>,
    recommend: BTreeSet<String>,
    answered: usize,
    failures: Vec<String>,
}

/// Sends `/v1/intent`, `/v1/chat` and `/v1/recommend` in turn until `stop`.
fn load(c: &reqwest::Client, s: &Server, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Seen> {
    let (c, base) = (c.clone(), s.base.clone());
    tokio::spawn(async move {
        let mut seen = Seen::default();
        let mut turn = 0;
        while !stop.load(Ordering::SeqCst) {
            turn += 1;
            let (route, body) = match turn % 3 {
                0 => (
                    "/v1/intent",
                    serde_json::json!({"text": "我的退款什么时候到账"}),
                ),
                1 => (
                    "/v1/chat",
                    serde_json::json!({"session_id": format!("load-{turn}"), "text": "我要退货"}),
                ),
                _ => ("/v1/recommend", serde_json::json!({"customer_id": "c0002"})),
            };
            let (st, v) = call(&c, Method::POST, format!("{base}{route}"), Some(body)).await;
            let version = match route {
                "/v1/intent" => v["model_version"].as_str(),
                "/v1/chat" => v["intent"]["model_version"].as_str(),
                _ => v["model"]["version"].as_str(),
            };
            match (st, version) {
                (200, Some(ver)) => {
                    seen.answered += 1;
                    let set = match route {
                        "/v1/intent" => &mut seen.intent,
                        "/v1/chat" => &mut seen.chat,
                        _ => &mut seen.recommend,
                    };
                    set.insert(ver.to_string());
                }
                _ => seen.failures.push(format!("{route} {st}: {v}")),
            }
        }
        seen
    })
}

fn cli_activate(slot: &str, dir: &Path, server: &Server, extra: &[&str]) -> std::process::Output {
    kefu()
        .args(["model", "activate", slot])
        .arg(dir)
        .args(["--server", &server.base, "--json"])
        .args(extra)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn intent_models_and_the_recommender_are_gated_swapped_rolled_back_and_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let (intent_full, intent_few) = intent_models(tmp.path());
    let (rec_full, rec_some) = recommenders(tmp.path());

    // The service starts on the weaker models, as configured.
    let env = [
        ("KEFU_INTENT__MODELS__SERVICE", intent_few.to_str().unwrap()),
        ("KEFU_RECOMMEND__MODEL", rec_some.to_str().unwrap()),
        ("KEFU_RECOMMEND__LOAD_DEMO", "true"),
    ];
    let s = Server::start(&model_dir(), &env);
    s.ready().await;
    let c = reqwest::Client::new();
    // The demo shop's catalogue loads after the encoder: wait for recommendations.
    let deadline = std::time::Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let (st, v) = call(
            &c,
            Method::POST,
            s.url("/v1/recommend"),
            Some(serde_json::json!({"customer_id": "c0002"})),
        )
        .await;
        if st == 200 && v["items"].as_array().is_some_and(|i| !i.is_empty()) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{st} {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let m = models(&c, &s).await;
    let few_version = version_of(&intent_few, slot(&m, "intent/service"));
    assert_eq!(slot(&m, "intent/service")["source"], "configured", "{m}");
    let some_version = version_of(&rec_some, slot(&m, "recommend/default"));
    assert_eq!(slot(&m, "recommend/default")["source"], "configured");
    assert_eq!(slot(&m, "embedding/default")["kind"], "embedding");

    // Better models are activated through their gates while requests keep coming.
    let stop = Arc::new(AtomicBool::new(false));
    let running = load(&c, &s, stop.clone());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = cli_activate("intent/service", &intent_full, &s, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(r["action"], "activated", "{r}");
    assert_eq!(r["gate"]["passed"], true, "{r}");
    let full_version = version_of(&intent_full, &r["model"]);
    assert_eq!(r["previous"]["version"], few_version.as_str());
    let names: Vec<&str> = r["gate"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"intent.accuracy") && names.contains(&"intent.macro_f1"));
    let o = cli_activate("recommend", &rec_full, &s, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().last().unwrap()).unwrap();
    let rec_full_version = version_of(&rec_full, &r["model"]);
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = running.await.unwrap();
    assert!(
        seen.failures.is_empty(),
        "failed during the swaps: {:?}",
        seen.failures
    );
    assert!(seen.answered > 20, "{seen:?}");
    let intents: BTreeSet<String> = [few_version.clone(), full_version.clone()].into();
    let recs: BTreeSet<String> = [some_version.clone(), rec_full_version.clone()].into();
    assert!(
        seen.intent.is_subset(&intents) && seen.chat.is_subset(&intents),
        "{seen:?}"
    );
    assert!(seen.recommend.is_subset(&recs), "{seen:?}");
    assert!(
        seen.intent.contains(&full_version) && seen.chat.contains(&full_version),
        "{seen:?}"
    );
    assert!(seen.recommend.contains(&rec_full_version), "{seen:?}");

    let m = models(&c, &s).await;
    assert_eq!(slot(&m, "intent/service")["version"], full_version.as_str());
    assert_eq!(slot(&m, "intent/service")["source"], "activated");
    assert_eq!(
        slot(&m, "recommend/default")["version"],
        rec_full_version.as_str()
    );

    // Worse candidates are refused naming the measure, through the CLI and the API alike.
    let o = cli_activate("intent/service", &intent_few, &s, &[]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("was refused by the gate") && err.contains("intent.accuracy"),
        "{err}"
    );
    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/models/recommend/default/activate"),
        Some(serde_json::json!({"path": rec_some})),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"]["code"], "gate_refused");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("recommend.ndcg_at_10"),
        "{v}"
    );
    // An intent model trained on another encoder cannot serve with this one, even forced.
    let alien = tmp.path().join("intent-alien");
    std::fs::create_dir(&alien).unwrap();
    std::fs::copy(
        intent_full.join("model.safetensors"),
        alien.join("model.safetensors"),
    )
    .unwrap();
    let mut card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(intent_full.join("intent.json")).unwrap())
            .unwrap();
    card["encoder"]["sha256"] = "0".repeat(64).into();
    card["encoder"]["version"] = "another-encoder@000000000000".into();
    std::fs::write(alien.join("intent.json"), card.to_string()).unwrap();
    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/models/intent/service/activate"),
        Some(serde_json::json!({"path": alien, "force": true})),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another-encoder"),
        "{v}"
    );
    for (path, body, want) in [
        (
            "/v1/models/rerank/default/activate",
            serde_json::json!({"path": alien}),
            404,
        ),
        (
            "/v1/models/intent/service/activate",
            serde_json::json!({"path": "/nowhere"}),
            422,
        ),
        (
            "/v1/models/recommend/other/activate",
            serde_json::json!({"path": rec_full}),
            404,
        ),
        (
            "/v1/models/intent/service/activate",
            serde_json::json!({"path": intent_few, "max_drop": 2}),
            422,
        ),
    ] {
        let (st, v) = call(&c, Method::POST, s.url(path), Some(body)).await;
        assert_eq!(st, want, "{path}: {v}");
    }
    let m = models(&c, &s).await;
    assert_eq!(
        slot(&m, "intent/service")["version"],
        full_version.as_str(),
        "{m}"
    );
    assert_eq!(
        slot(&m, "recommend/default")["version"],
        rec_full_version.as_str()
    );

    // Forced: serves, and the record says so.
    let o = cli_activate("intent/service", &intent_few, &s, &["--force"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m = models(&c, &s).await;
    assert_eq!(slot(&m, "intent/service")["version"], few_version.as_str());
    assert_eq!(
        slot(&m, "intent/service")["activation"]["forced"],
        true,
        "{m}"
    );

    // Rollback restores the previous version; rolling back again goes forward.
    let o = kefu()
        .args([
            "model",
            "rollback",
            "intent/service",
            "--server",
            &s.base,
            "--json",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/intent"),
        Some(serde_json::json!({"text": "我的退款什么时候到账"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["model_version"], full_version.as_str(), "{v}");
    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/models/recommend/default/rollback"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["action"], "rolled_back");
    assert_eq!(v["model"]["version"], some_version.as_str());
    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/models/recommend/default/rollback"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["model"]["version"], rec_full_version.as_str());
    let m = models(&c, &s).await;
    let rec = slot(&m, "recommend/default");
    assert_eq!(rec["version"], rec_full_version.as_str());
    assert_eq!(rec["activation"]["action"], "rollback", "{m}");
    assert!(rec["history"].as_u64().unwrap() >= 3, "{m}");

    // `kefu model list` finds the directories and says which serve.
    let out = run_ok(
        kefu()
            .args(["model", "list", "--json", "--root"])
            .arg(tmp.path())
            .arg("--data-dir")
            .arg(s.data_dir.path()),
    );
    let listed: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let find = |dir: &Path| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["path"] == dir.canonicalize().unwrap().display().to_string())
            .unwrap_or_else(|| panic!("{} not listed: {listed}", dir.display()))
            .clone()
    };
    assert_eq!(
        find(&intent_full)["serving"][0],
        "intent/service (activated)",
        "{listed}"
    );
    assert_eq!(find(&intent_few)["serving"].as_array().unwrap().len(), 0);
    assert_eq!(find(&rec_full)["kind"], "recommend");
    assert!(
        find(&intent_full)["details"]["metrics"].is_object(),
        "{listed}"
    );

    // A restart comes back on the active versions, not the configured ones.
    let data_dir = s.data_dir.clone();
    drop(s);
    let s = Server::start_in(&model_dir(), data_dir, &env);
    s.ready().await;
    let m = models(&c, &s).await;
    assert_eq!(
        slot(&m, "intent/service")["version"],
        full_version.as_str(),
        "{m}"
    );
    assert_eq!(
        slot(&m, "recommend/default")["version"],
        rec_full_version.as_str()
    );
    let (_, v) = call(
        &c,
        Method::POST,
        s.url("/v1/intent"),
        Some(serde_json::json!({"text": "我的退款什么时候到账"})),
    )
    .await;
    assert_eq!(v["model_version"], full_version.as_str(), "{v}");

    // Without --server the same gate runs here against what the data directory serves, and
    // records only; the service swaps in what is recorded on POST …/reload.
    let o = kefu()
        .args(["model", "activate", "intent/service"])
        .arg(&intent_few)
        .arg("--data-dir")
        .arg(s.data_dir.path())
        .env("KEFU_MODEL__PATH", model_dir())
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("was refused") && err.contains("intent.accuracy"),
        "{err}"
    );
    run_ok(
        kefu()
            .args(["model", "rollback", "intent/service", "--data-dir"])
            .arg(s.data_dir.path()),
    );
    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/models/intent/service/reload"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["action"], "reloaded", "{v}");
    assert_eq!(v["model"]["version"], few_version.as_str(), "{v}");
    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/models/intent/service/reload"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["action"], "unchanged", "{v}");

    // The report a promotion is reviewed with.
    let report = tmp.path().join("compare");
    let out = run_ok(
        kefu()
            .args([
                "eval", "compare", "--kind", "intent", "--name", "service", "--json",
            ])
            .arg(&intent_few)
            .arg(&intent_full)
            .arg("--out")
            .arg(&report)
            .arg("--encoder")
            .arg(model_dir()),
    );
    let cmp: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let acc = &cmp["measures"][0];
    assert_eq!(acc["name"], "accuracy");
    assert!(
        acc["b"].as_f64().unwrap() > acc["a"].as_f64().unwrap() + 0.05,
        "{cmp}"
    );
    assert!(cmp["classes"].as_array().unwrap().len() >= 20, "{cmp}");
    let html = std::fs::read_to_string(report.join("compare.html")).unwrap();
    assert!(html.contains("<svg") && html.contains("F1 per intent"));
    let md = std::fs::read_to_string(report.join("compare.md")).unwrap();
    assert!(
        md.contains("| accuracy |") && md.contains(&full_version),
        "{md}"
    );
}
