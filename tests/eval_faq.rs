//! `kefu eval faq` on the demo KB with the real model: metrics, out-of-scope rows,
//! calibration, the report, and typo robustness.

mod common;

use serde_json::Value;

fn demo(file: &str) -> String {
    format!("{}/datasets/demo/{file}", env!("CARGO_MANIFEST_DIR"))
}

fn eval_faq(args: &[&str]) -> Value {
    let stdout = common::run_ok(
        common::kefu()
            .args(["eval", "faq", "--json", "--kb"])
            .arg(demo("faq.jsonl"))
            .args(args)
            .arg("--model")
            .arg(common::model_dir()),
    );
    serde_json::from_str(stdout.lines().last().expect("a JSON line")).unwrap()
}

#[test]
fn calibrate_report_and_measure_with_out_of_scope_rows() {
    let tmp = tempfile::tempdir().unwrap();
    // An intent file: only the rows labelled `oos` become unanswerable queries.
    let oos = tmp.path().join("intent.jsonl");
    std::fs::write(
        &oos,
        [
            r#"{"text": "what is the capital of australia", "label": "oos"}"#,
            r#"{"text": "how many calories are in a banana", "label": "oos"}"#,
            r#"{"text": "set an alarm for 7 am", "label": "alarm"}"#,
            r#"{"text": "帮我写一首关于秋天的诗", "label": "oos"}"#,
        ]
        .join("\n"),
    )
    .unwrap();
    let cal = tmp.path().join("demo.calibration.json");
    let report = tmp.path().join("report");
    let r = eval_faq(&[
        "--queries",
        &demo("calibration_queries.jsonl"),
        "--oos",
        oos.to_str().unwrap(),
        "--calibrate",
        "--calibration-out",
        cal.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert_eq!(r["n"], 160, "{r}");
    assert_eq!(r["out_of_scope"], 43, "40 in the file + 3 oos rows: {r}");
    for k in [
        "top1",
        "recall_at_5",
        "mrr_at_10",
        "no_answer_precision",
        "no_answer_recall",
        "p50_ms",
    ] {
        assert!(r[k].is_number(), "{k}: {r}");
    }
    assert!(
        r["top1"].as_f64() > r["dense_baseline"]["top1"].as_f64(),
        "{r}"
    );
    assert!(r["recall_at_5"].as_f64() > Some(0.85), "{r}");
    assert_eq!(r["calibration_source"], "calibrated");
    // Calibrated for precision 0.95 on these queries: it holds on them.
    assert!(
        r["decisions"]["answer_precision"].as_f64() >= Some(0.95),
        "{r}"
    );
    assert!(r["calibration_cv"]["decisions"]["answer_rate"].is_number());
    let stored: Value = serde_json::from_slice(&std::fs::read(&cal).unwrap()).unwrap();
    assert_eq!(stored, r["calibration"]);

    for f in [
        "queries.csv",
        "threshold_curve.csv",
        "threshold_curve.svg",
        "summary.json",
    ] {
        assert!(report.join(f).exists(), "{f} missing");
    }
    let rows = std::fs::read_to_string(report.join("queries.csv")).unwrap();
    assert_eq!(rows.lines().count(), 1 + 203, "header + one row per query");
    assert!(rows.lines().next().unwrap().contains("gold_rank"));
    let svg = std::fs::read_to_string(report.join("threshold_curve.svg")).unwrap();
    assert!(svg.contains("answer precision") && svg.contains("answer_threshold"));

    // The stored calibration applies as given.
    let again = eval_faq(&[
        "--queries",
        &demo("queries.jsonl"),
        "--calibration",
        cal.to_str().unwrap(),
    ]);
    assert_eq!(again["calibration_source"], "file");
    assert_eq!(again["calibration"], stored);
}

#[test]
fn typos_keep_most_of_the_clean_top1() {
    let r = eval_faq(&[
        "--queries",
        &demo("queries.jsonl"),
        "--perturb",
        "typo",
        "--seed",
        "7",
    ]);
    let p = &r["perturb"];
    assert_eq!(p["kind"], "typo", "{r}");
    assert!(
        p["changed"].as_u64() > Some(60),
        "most queries perturbed: {r}"
    );
    assert!(p["top1_retention"].as_f64() >= Some(0.9), "{r}");
    assert!(
        r["top1"].as_f64() < p["clean_top1"].as_f64().map(|x| x + 1e-9),
        "{r}"
    );
}

#[test]
fn out_of_scope_examples_gate_answers_and_calibrate_their_margin() {
    let tmp = tempfile::tempdir().unwrap();
    // Examples identical to the first ten queries: none of those may be answered directly.
    let queries: Vec<Value> = std::fs::read_to_string(demo("queries.jsonl"))
        .unwrap()
        .lines()
        .take(10)
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let examples = tmp.path().join("examples.jsonl");
    let lines: Vec<String> = (queries.iter())
        .map(|q| serde_json::json!({"query": q["query"]}).to_string())
        .collect();
    std::fs::write(&examples, lines.join("\n")).unwrap();
    let args = ["--queries", &demo("queries.jsonl"), "--limit", "10"];
    let plain = eval_faq(&args);
    assert!(plain["decisions"]["answered"].as_u64() > Some(0), "{plain}");
    let gated = eval_faq(&[&args[..], &["--out-of-scope", examples.to_str().unwrap()]].concat());
    assert_eq!(gated["decisions"]["answered"], 0, "{gated}");
    // Retrieval is unchanged: examples only gate the decision.
    assert_eq!(gated["top1"], plain["top1"]);

    // Calibration fits the margin among its candidates when there are examples.
    let r = eval_faq(&[
        "--queries",
        &demo("calibration_queries.jsonl"),
        "--out-of-scope",
        &demo("out_of_scope.jsonl"),
        "--calibrate",
        "--fixed-weights",
        "--calibration-out",
        tmp.path().join("c.json").to_str().unwrap(),
    ]);
    let m = r["calibration"]["out_of_scope_margin"].as_f64().unwrap();
    assert!((0.0..=0.12).contains(&m), "{r}");
    assert!(
        r["decisions"]["answer_precision"].as_f64() >= Some(0.95),
        "{r}"
    );
}

#[test]
fn bad_inputs_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let no_oos = tmp.path().join("intent.jsonl");
    std::fs::write(&no_oos, r#"{"text": "hi", "label": "greet"}"#).unwrap();
    let bad_cal = tmp.path().join("cal.json");
    std::fs::write(
        &bad_cal,
        r#"{"lexical_weight": 0.05, "fuzzy_weight": 0.08, "answer_threshold": 0.5, "answer_margin": 0.02, "clarify_threshold": 0.9}"#,
    )
    .unwrap();
    let bad_examples = tmp.path().join("oos-examples.jsonl");
    std::fs::write(&bad_examples, "{\"text\": \"fine\"}\n{\"text\": \"\"}\n").unwrap();
    for (args, needle) in [
        (vec!["--oos", no_oos.to_str().unwrap()], "no rows labelled"),
        (
            vec!["--out-of-scope", bad_examples.to_str().unwrap()],
            "line 2: is empty",
        ),
        (
            vec!["--calibration", bad_cal.to_str().unwrap()],
            "clarify_threshold",
        ),
    ] {
        let out = common::kefu()
            .args(["eval", "faq", "--kb"])
            .arg(demo("faq.jsonl"))
            .args(["--queries", &demo("queries.jsonl")])
            .args(&args)
            .arg("--model")
            .arg(common::model_dir())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{err}");
    }
}

#[test]
fn the_summary_counts_every_query() {
    // queries.jsonl has 80 lines: 65 with gold entries and 15 out of scope.
    let stdout = common::run_ok(
        common::kefu()
            .args(["eval", "faq", "--kb"])
            .arg(demo("faq.jsonl"))
            .arg("--queries")
            .arg(demo("queries.jsonl"))
            .arg("--model")
            .arg(common::model_dir()),
    );
    let first = stdout.lines().next().unwrap_or_default();
    assert!(
        first.contains("× 80 queries (65 answerable, 15 out of scope)"),
        "{stdout}"
    );
}
