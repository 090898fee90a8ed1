//! Closing the loop with the real model: the feedback and annotations a data directory stores
//! join `kefu train intent --with-feedback` (training rows only) and
//! `kefu eval faq --calibrate --with-feedback` (answerable queries of known entries).

mod common;

use std::path::{Path, PathBuf};

use kefu::analytics::feedback::{Feedback, FeedbackStore};
use serde_json::Value;

fn demo(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("datasets/demo")
        .join(file)
}

fn last_json(stdout: &str) -> Value {
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap()
}

/// A customer's correction (`faq_id`) or, with `intent` or `annotation`, a person's label.
fn label(question: &str, faq_id: Option<&str>, intent: Option<&str>, annotation: bool) -> Feedback {
    Feedback {
        id: 0,
        turn_id: "s1-2".into(),
        session_id: "s1".into(),
        helpful: (!annotation).then_some(false),
        rating: None,
        comment: None,
        faq_id: faq_id.map(Into::into),
        question: Some(question.into()),
        answered_faq_id: Some("zh-orders-002".into()),
        created_at: 1_700_000_000,
        intent: intent.map(Into::into),
        should_handoff: None,
        annotator: annotation.then(|| "lin".into()),
        source: annotation.then(|| "annotation".into()),
    }
}

/// A data directory holding `entries` and the feedback `rows`, written as the service stores them.
fn data_dir(dir: &Path, entries: &[kefu::kb::FaqEntry], rows: Vec<Feedback>) {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let store = kefu::kb::KbStore::open(dir).await.unwrap();
            if !entries.is_empty() {
                store.upsert_all(entries).await.unwrap();
            }
            let feedback = FeedbackStore::open(store.pool().clone()).await.unwrap();
            for f in rows {
                feedback.add(f, None).await.unwrap();
            }
        });
}

fn run(cmd: &mut std::process::Command) -> (String, String) {
    let out = cmd.output().expect("running kefu");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    eprintln!("{stderr}"); // shown with --nocapture
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

#[test]
fn train_intent_with_feedback_adds_annotated_questions_to_training_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let train = demo("intents/service/train.jsonl");
    let rows = kefu::intent::read_examples(&train, None).unwrap();
    let (first, refund_row) = (
        &rows[0],
        rows.iter().find(|x| x.label == "refund_request").unwrap(),
    );
    data_dir(
        &dir,
        &[],
        vec![
            label("我想把收货地址改成公司的", None, Some("cancel_order"), true),
            // Annotated again: the newest label counts.
            label(
                "我想把收货地址改成公司的",
                None,
                Some("change_address"),
                true,
            ),
            label("能不能用花呗分期付款", None, Some("installments"), true),
            label(&first.text, None, Some(&first.label), true),
            label(&refund_row.text, None, Some("complaint"), true),
            // A customer's correction names an entry, not an intent.
            label("东西坏了怎么办", Some("zh-orders-001"), None, false),
        ],
    );
    let model = tmp.path().join("service");
    let (stdout, stderr) = run(common::kefu()
        .args([
            "train",
            "intent",
            "--json",
            "--head",
            "linear",
            "--no-refit",
        ])
        .arg("--train")
        .arg(&train)
        .arg("--out")
        .arg(&model)
        .arg("--cache")
        .arg(tmp.path().join("cache"))
        .arg("--encoder")
        .arg(common::model_dir())
        .arg("--with-feedback")
        .arg("--data-dir")
        .arg(&dir));
    let r = last_json(&stdout);
    let card: Value =
        serde_json::from_str(&std::fs::read_to_string(model.join("intent.json")).unwrap()).unwrap();
    let used = &card["training"]["feedback"]["use"];
    // The first training row and the refund row may have gone to dev; either way they are not
    // added, and only the address question is.
    assert_eq!(used["annotated"], 4, "{used}\n{stderr}");
    assert_eq!(used["added"], 1, "{used}");
    assert_eq!(used["unknown_labels"]["installments"], 1, "{used}");
    let not_added = used["duplicates"].as_u64().unwrap()
        + used["in_dev"].as_u64().unwrap()
        + used["conflicts"].as_array().unwrap().len() as u64;
    assert_eq!(not_added, 2, "{used}");
    assert!(
        stderr.contains("4 annotated questions, 1 added to the training rows"),
        "{stderr}"
    );
    assert!(stderr.contains("installments (1)"), "{stderr}");
    // One row more than the file, all of it in training: dev is the file's own split.
    assert_eq!(
        r["train_examples"].as_u64().unwrap() + r["dev_examples"].as_u64().unwrap(),
        rows.len() as u64 + 1,
        "{r}"
    );
    let plain = kefu::intent::train::with_feedback(
        &rows,
        None,
        &[],
        &kefu::intent::train::TrainOptions::default(),
    );
    assert_eq!(r["dev_examples"].as_u64().unwrap(), plain.dev.len() as u64);
    // The model knows the annotated label, and nothing new.
    assert_eq!(card["labels"].as_array().unwrap().len(), 29);
}

#[test]
fn eval_faq_calibrate_with_feedback_adds_labelled_questions_of_known_entries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let kb = kefu::eval::faq::read_kb(&demo("faq.jsonl")).unwrap();
    data_dir(
        &dir,
        &kb,
        vec![
            // A customer's correction and a person's label of entries the KB has.
            label(
                "我买错了东西还没发出去能撤单吗",
                Some("zh-orders-001"),
                None,
                false,
            ),
            label(
                "刚付款就后悔了 订单怎么取消",
                Some("zh-orders-001"),
                None,
                true,
            ),
            // The entry's own question: the KB matches it by itself, no use for thresholds.
            label("下单了想取消怎么弄", Some("zh-orders-001"), None, true),
            // An entry removed since: counted, not fatal.
            label("积分能换现金吗", Some("zh-points-gone"), None, true),
            // An intent alone is no FAQ label.
            label("你好", None, Some("greeting"), true),
        ],
    );
    let limit = 30;
    let queries = demo("calibration_queries.jsonl");
    let answerable = kefu::eval::faq::read_queries(&queries, Some(limit))
        .unwrap()
        .iter()
        .filter(|q| !q.gold.is_empty())
        .count();
    let (stdout, stderr) = run(common::kefu()
        .args(["eval", "faq", "--json", "--calibrate", "--with-feedback"])
        .arg("--data-dir")
        .arg(&dir)
        .arg("--queries")
        .arg(&queries)
        .args(["--limit", &limit.to_string()])
        .arg("--calibration-out")
        .arg(tmp.path().join("cal.json"))
        .arg("--model")
        .arg(common::model_dir()));
    let r = last_json(&stdout);
    assert_eq!(r["n"].as_u64().unwrap(), answerable as u64 + 2, "{r}");
    assert!(
        stderr.contains("4 labelled questions, 2 added as queries"),
        "{stderr}"
    );
    assert!(stderr.contains("1 texts of the KB"), "{stderr}");
    assert!(stderr.contains("zh-points-gone (1)"), "{stderr}");
    assert_eq!(r["calibration_source"], "calibrated", "{r}");
    assert!(tmp.path().join("cal.json").is_file());
}
