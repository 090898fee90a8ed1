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
    // The demo as `kefu serve` loads it into an empty data directory: FAQ entries, the two
    // policy documents (matched as passages) and the out-of-scope examples.
    let s = common::Server::start(&model, &[]);
    s.ready().await;
    let c = reqwest::Client::new();

    let report = tmp.path().join("report");
    common::run_ok(
        common::kefu()
            .args(["eval", "faq", "--json", "--data-dir"])
            .arg(s.data_dir.path())
            .args(["--queries", &demo("queries.jsonl")])
            .arg("--report")
            .arg(&report)
            .arg("--model")
            .arg(&model),
    );
    let mut rows = csv::Reader::from_path(report.join("queries.csv")).unwrap();
    let recorded: Vec<HashMap<String, String>> = rows.deserialize().map(Result::unwrap).collect();
    assert_eq!(recorded.len(), 80, "one row per demo test query");

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
    // Every kind of decision occurs, or the comparison would prove little.
    let kinds: std::collections::HashSet<&str> =
        recorded.iter().map(|r| r["decision"].as_str()).collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
}
