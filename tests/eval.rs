//! `kefu eval pairs` on a small labelled file with the real model.

mod common;

use std::io::Write;

#[test]
fn eval_pairs_prints_json_last_and_separates_paraphrases() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pairs.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for (a, b, label) in [
        ("怎么申请退款", "我想退货退钱怎么操作", 1),
        ("订单什么时候发货", "我买的东西多久能寄出", 1),
        (
            "How do I reset my password?",
            "I forgot my password, what should I do",
            1,
        ),
        ("怎么申请退款", "今天天气怎么样", 0),
        ("How do I reset my password?", "Do you sell gift cards?", 0),
        ("订单什么时候发货", "你们公司在哪个城市", 0),
    ] {
        writeln!(f, "{}", serde_json::json!({"a": a, "b": b, "label": label})).unwrap();
    }
    drop(f);
    let stdout = common::run_ok(
        common::kefu()
            .args(["eval", "pairs", "--json", "--data"])
            .arg(&path)
            .arg("--model")
            .arg(common::model_dir()),
    );
    let last = stdout.lines().last().expect("a JSON line");
    let r: serde_json::Value = serde_json::from_str(last).unwrap();
    assert_eq!(r["n"], 6);
    assert_eq!(r["positives"], 3);
    assert_eq!(r["interrupted"], false);
    assert_eq!(r["roc_auc"].as_f64().unwrap(), 1.0, "{r}");
    assert_eq!(r["best_accuracy"].as_f64().unwrap(), 1.0, "{r}");
    assert!(r["mean_cosine_positive"].as_f64() > r["mean_cosine_negative"].as_f64());
}

#[test]
fn eval_pairs_names_the_bad_line() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("pairs.jsonl");
    std::fs::write(
        &path,
        "{\"a\": \"x\", \"b\": \"y\", \"label\": 1}\n{\"a\": \"x\", \"label\": 1}\n",
    )
    .unwrap();
    let out = common::kefu()
        .args(["eval", "pairs", "--data"])
        .arg(&path)
        .arg("--model")
        .arg(common::model_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pairs.jsonl:2"), "{err}");
}
