//! One match pipeline: what `kefu eval faq --report` records for each demo test query (with
//! the demo's out-of-scope examples) is what `/v1/match` answers over HTTP for it: the same
//! decision and the same first entry.

mod common;

use std::collections::HashMap;

use serde_json::{Value, json};

fn demo(file: &str) -> String {
    format!("{}/datasets/demo/{file}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn eval_faq_records_what_v1_match_serves() {
    let model = common::model_dir();
    let tmp = tempfile::tempdir().unwrap();
    let data = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let data_dir = data.path().to_str().unwrap();

    // The service's KB: the demo FAQ and out-of-scope examples, as the evaluator reads them.
    common::run_ok(common::kefu().args([
        "kb",
        "import",
        "--data-dir",
        data_dir,
        &demo("faq.jsonl"),
    ]));
    common::run_ok(common::kefu().args([
        "kb",
        "out-of-scope",
        "--data-dir",
        data_dir,
        &demo("out_of_scope.jsonl"),
    ]));

    let report = tmp.path().join("report");
    common::run_ok(
        common::kefu()
            .args(["eval", "faq", "--json", "--kb", &demo("faq.jsonl")])
            .args(["--queries", &demo("queries.jsonl")])
            .args(["--out-of-scope", &demo("out_of_scope.jsonl")])
            .arg("--report")
            .arg(&report)
            .arg("--model")
            .arg(&model),
    );
    let mut rows = csv::Reader::from_path(report.join("queries.csv")).unwrap();
    let recorded: Vec<HashMap<String, String>> = rows.deserialize().map(Result::unwrap).collect();
    assert_eq!(recorded.len(), 80, "one row per demo test query");

    let s = common::Server::start_in(&model, data, &[("KEFU_KB__LOAD_DEMO", "false")]);
    s.ready().await;
    let c = reqwest::Client::new();
    let mut differ = Vec::new();
    for row in &recorded {
        let v: Value = common::matching(&c, &s, json!({"query": row["query"]})).await;
        let decision = v["decision"].as_str().unwrap();
        let top = v["matches"][0]["faq_id"].as_str().unwrap_or("");
        if decision != row["decision"] || top != row["top1"] {
            differ.push(format!(
                "{:?}: eval {} {:?}, /v1/match {} {:?}",
                row["query"], row["decision"], row["top1"], decision, top
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of 80 differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
    // Not every query is decided alike, or the comparison would prove little.
    let kinds: std::collections::HashSet<&str> =
        recorded.iter().map(|r| r["decision"].as_str()).collect();
    assert!(kinds.len() >= 2, "{kinds:?}");
}
