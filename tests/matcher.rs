//! The matcher on the demo knowledge base with the real model.

mod common;

use std::sync::Arc;

use kefu::analytics::metrics::Metrics;
use kefu::config::EmbedConfig;
use kefu::embed::Embedder;
use kefu::matcher::{Candidate, FusionWeights, KbIndex};

fn demo_index() -> (Embedder, KbIndex) {
    let e = Embedder::load(
        &common::model_dir(),
        &EmbedConfig::default(),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/demo/faq.jsonl");
    let kb = kefu::eval::faq::read_kb(std::path::Path::new(path)).unwrap();
    let idx = KbIndex::build(kb, &[], &[], &e, None, &Default::default(), |_, _| {}).unwrap();
    (e, idx)
}

fn top1(e: &Embedder, idx: &KbIndex, q: &str, w: FusionWeights) -> (String, Candidate) {
    let v = e.embed_blocking(&[q.to_string()]).unwrap();
    let c = idx.search(&v[0].vector, q, 5, w);
    assert!(
        c.windows(2).all(|p| p[0].score >= p[1].score),
        "sorted by score"
    );
    (idx.entries[c[0].entry].id.clone(), c[0].clone())
}

#[test]
fn demo_questions_paraphrases_and_typos_find_their_entry() {
    let (e, idx) = demo_index();
    assert_eq!(idx.entries.len(), 166);
    let w = FusionWeights::default();
    // A stored similar question matches its own entry with cosine ~1.
    let (id, c) = top1(&e, &idx, "不想要了咋取消订单", w);
    assert_eq!(id, "zh-orders-001");
    assert!(c.dense > 0.99 && c.lexical > 0.5 && c.fuzzy > 0.5, "{c:?}");
    for (q, want) in [
        ("亲，我昨天下的单还没发，能帮我取消吗", "zh-orders-001"),
        ("How do I reset my password?", "en-account-001"),
        // typo: 退宽 for 退款
        ("退宽多久能到账", "zh-refunds-001"),
    ] {
        assert_eq!(top1(&e, &idx, q, w).0, want, "{q}");
    }
}

#[test]
fn eval_faq_reports_json_with_the_dense_baseline() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/datasets/demo");
    let stdout = common::run_ok(
        common::kefu()
            .args(["eval", "faq", "--json", "--kb"])
            .arg(format!("{dir}/faq.jsonl"))
            .arg("--queries")
            .arg(format!("{dir}/queries.jsonl"))
            .arg("--model")
            .arg(common::model_dir()),
    );
    let r: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(r["n"], 65);
    assert_eq!(r["out_of_scope"], 15);
    for k in ["top1", "recall_at_5", "mrr_at_10", "p50_ms"] {
        assert!(r[k].as_f64().is_some(), "{k} in {r}");
    }
    let top1 = r["top1"].as_f64().unwrap();
    assert!(
        top1 > 0.6 && top1 <= r["recall_at_5"].as_f64().unwrap(),
        "{r}"
    );
    assert!(r["dense_baseline"]["top1"].as_f64().is_some(), "{r}");
}

#[test]
fn cli_match_prints_a_table_from_the_demo_kb() {
    let tmp = tempfile::tempdir().unwrap();
    // An empty KB, as a first `kefu serve` leaves it: matched against the demo, as served.
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(kefu::kb::KbStore::open(tmp.path()))
        .unwrap();
    let stdout = common::run_ok(
        common::kefu()
            .args(["match", "退宽多久能到账", "--top-k", "3", "--data-dir"])
            .arg(tmp.path())
            .arg("--model")
            .arg(common::model_dir()),
    );
    let rows: Vec<&str> = stdout.lines().collect();
    // A homophone slip of the input method (宽 for 款) is corrected from the KB's vocabulary,
    // then matched and answered.
    assert_eq!(
        rows.len(),
        7,
        "correction + decision + nearest out-of-scope example + header + 3 rows:\n{stdout}"
    );
    assert_eq!(rows[0], "corrected: 退款多久能到账", "{stdout}");
    assert_eq!(rows[1], "decision: answer", "{stdout}");
    // The demo KB's out-of-scope examples come with it.
    assert!(
        rows[2].starts_with("nearest out-of-scope example: cosine 0."),
        "{stdout}"
    );
    assert!(rows[4].contains("zh-refunds-001"), "{stdout}");
}

#[test]
fn cli_adds_documents_whose_passages_match() {
    let tmp = tempfile::tempdir().unwrap();
    let doc = tmp.path().join("kettle manual.md");
    std::fs::write(
        &doc,
        "# 电热水壶说明书\n\n## 除垢\n\n水壶内壁出现白色水垢时，加入半壶水和两勺柠檬酸，煮沸后静置半小时再冲洗干净。\n",
    )
    .unwrap();
    let data = tmp.path().join("data");
    let out = common::kefu()
        .args(["kb", "add-document", "--category", "manuals", "--data-dir"])
        .arg(&data)
        .arg(&doc)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("added document kettle-manual (1 passages)"),
        "{err}"
    );
    // An empty file is refused, naming the field, and nothing is added.
    let empty = tmp.path().join("empty.txt");
    std::fs::write(&empty, "  \n").unwrap();
    let out = common::kefu()
        .args(["kb", "add-document", "--data-dir"])
        .arg(&data)
        .arg(&empty)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("content"));

    let stdout = common::run_ok(
        common::kefu()
            .args(["match", "水壶有水垢怎么清理", "--top-k", "30", "--data-dir"])
            .arg(&data)
            .arg("--model")
            .arg(common::model_dir()),
    );
    assert!(stdout.contains("kettle-manual#1"), "{stdout}");
}
