//! `/v1/match` and `/v1/faqs` against the real server with the demo knowledge base.

mod common;

use std::time::{Duration, Instant};

use common::{Server, call, matching};
use reqwest::Client;
use serde_json::{Value, json};

fn top(v: &Value) -> &str {
    v["matches"][0]["faq_id"].as_str().unwrap_or("")
}

#[tokio::test]
async fn demo_kb_decisions_crud_and_filters() {
    let s = Server::start(&common::model_dir(), &[]);
    s.ready().await;
    let c = Client::new();

    let v = matching(&c, &s, json!({"query": "退款多久能到账", "explain": true})).await;
    assert_eq!(v["decision"], "answer", "{v}");
    assert_eq!(top(&v), "zh-refunds-001");
    assert!(
        v["matches"][0]["signals"]["dense"].as_f64().unwrap() > 0.9,
        "{v}"
    );
    // The score is the weighted mean of the signals, the answer's cosine included.
    let m = kefu::matcher::Calibration::default();
    let sig = |k: &str| v["matches"][0]["signals"][k].as_f64().unwrap();
    assert!(sig("answer") > 0.5 && sig("answer") < sig("dense"), "{v}");
    let (wl, wf, wa) = (
        m.lexical_weight as f64,
        m.fuzzy_weight as f64,
        m.answer_weight as f64,
    );
    let fused = (sig("dense") + wl * sig("lexical") + wf * sig("fuzzy") + wa * sig("answer"))
        / (1.0 + wl + wf + wa);
    let score = v["matches"][0]["score"].as_f64().unwrap();
    assert!(
        (score - fused.min(1.0)).abs() < 1e-4,
        "{score} vs {fused}: {v}"
    );
    assert!(
        v["matches"][0]["answer"]
            .as_str()
            .unwrap()
            .contains("工作日")
    );
    let v = matching(&c, &s, json!({"query": "今天天气怎么样"})).await;
    assert_eq!(v["decision"], "no_answer", "{v}");
    let v = matching(
        &c,
        &s,
        json!({"query": "退款多久能到账", "filters": {"category": "shipping"}}),
    )
    .await;
    assert!(
        v["matches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["category"] == "shipping"),
        "{v}"
    );

    // Create: searchable without a restart.
    let entry = json!({"id": "zh-custom-001", "question": "企鹅玩偶可以免费刻字吗",
        "similar": ["毛绒企鹅能不能定制名字"], "answer": "可以，下单时备注要刻的字。", "category": "orders"});
    let (st, body) = call(
        &c,
        reqwest::Method::POST,
        s.url("/v1/faqs"),
        Some(entry.clone()),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = call(
        &c,
        reqwest::Method::POST,
        s.url("/v1/faqs"),
        Some(entry.clone()),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (409, Some("conflict"))
    );
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let v = matching(&c, &s, json!({"query": "企鹅玩偶能刻字吗"})).await;
        if top(&v) == "zh-custom-001" {
            break;
        }
        assert!(Instant::now() < deadline, "new entry never matched: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (st, body) = call(
        &c,
        reqwest::Method::GET,
        s.url("/v1/faqs/zh-custom-001"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(body["question"], "企鹅玩偶可以免费刻字吗");

    // Invalid entries name the field; mismatched ids are refused.
    let (st, body) = call(
        &c,
        reqwest::Method::POST,
        s.url("/v1/faqs"),
        Some(json!({"id": "x-1", "question": " ", "answer": "a"})),
    )
    .await;
    assert_eq!(st, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("question"),
        "{body}"
    );
    let (st, _) = call(
        &c,
        reqwest::Method::PUT,
        s.url("/v1/faqs/other-id"),
        Some(entry.clone()),
    )
    .await;
    assert_eq!(st, 422);

    // Delete: never returned again, at once.
    let (st, _) = call(
        &c,
        reqwest::Method::DELETE,
        s.url("/v1/faqs/zh-custom-001"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let v = matching(&c, &s, json!({"query": "企鹅玩偶能刻字吗", "top_k": 20})).await;
    assert!(
        v["matches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["faq_id"] != "zh-custom-001"),
        "{v}"
    );
    let (st, body) = call(
        &c,
        reqwest::Method::GET,
        s.url("/v1/faqs/zh-custom-001"),
        None,
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (st, _) = call(
        &c,
        reqwest::Method::DELETE,
        s.url("/v1/faqs/zh-custom-001"),
        None,
    )
    .await;
    assert_eq!(st, 404);

    // Listing and bad requests.
    let (st, body) = call(
        &c,
        reqwest::Method::GET,
        s.url("/v1/faqs?limit=5&category=refunds"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    // The total counts the entries that pass the filters (the demo KB's refunds), not the page.
    assert_eq!(body["total"], 17);
    assert_eq!(body["entries"].as_array().unwrap().len(), 5);
    assert!(
        body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["category"] == "refunds"),
        "{body}"
    );
    let (st, body) = call(
        &c,
        reqwest::Method::POST,
        s.url("/v1/match"),
        Some(json!({"query": "  "})),
    )
    .await;
    assert_eq!(
        (st, body["error"]["code"].as_str()),
        (422, Some("empty_input"))
    );
    let (st, _) = call(
        &c,
        reqwest::Method::POST,
        s.url("/v1/match"),
        Some(json!({"query": "a", "top_k": 0})),
    )
    .await;
    assert_eq!(st, 422);
}

#[tokio::test]
async fn import_is_all_or_nothing_and_export_reads_back() {
    let s = Server::start(&common::model_dir(), &[("KEFU_KB__LOAD_DEMO", "false")]);
    s.ready().await;
    let c = Client::new();
    let good = "{\"id\": \"a-1\", \"question\": \"怎么开发票\", \"answer\": \"在订单页申请。\"}\n{\"id\": \"a-2\", \"question\": \"Where is my parcel?\", \"answer\": \"See tracking.\"}\n";
    let r = c
        .post(s.url("/v1/faqs:import"))
        .header("content-type", "application/x-ndjson")
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let summary: Value = r.json().await.unwrap();
    assert_eq!(
        (summary["created"].as_u64(), summary["updated"].as_u64()),
        (Some(2), Some(0))
    );

    let bad =
        "id,question,answer\nb-1,好问题,好答案\nb-2,,没有问题\na-1,改了,也不行\na-1,重复,重复\n";
    let r = c
        .post(s.url("/v1/faqs:import?format=csv"))
        .body(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_import");
    let lines: Vec<u64> = body["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 5], "{body}");

    let r = c
        .get(s.url("/v1/faqs:export?format=csv"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = r.text().await.unwrap();
    assert!(csv.starts_with("id,question,similar,answer"), "{csv}");
    assert_eq!(
        csv.lines().count(),
        3,
        "header + the two entries; the failed import wrote nothing:\n{csv}"
    );
    assert!(csv.contains("怎么开发票") && !csv.contains("好问题"));

    let r = c
        .post(s.url("/v1/faqs:import"))
        .header("content-type", "image/png")
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415);
}

#[tokio::test]
async fn out_of_scope_examples_stop_direct_answers() {
    let s = Server::start(&common::model_dir(), &[]);
    s.ready().await;
    let c = Client::new();
    let q = json!({"query": "退款多久能到账", "explain": true});

    // The demo KB comes with the demo shop's examples.
    let (st, body) = call(&c, reqwest::Method::GET, s.url("/v1/out-of-scope"), None).await;
    assert_eq!(st, 200);
    let demo = body["examples"].as_array().unwrap().clone();
    assert_eq!(demo.len(), kefu::kb::demo::out_of_scope().len());
    let v = matching(&c, &s, q.clone()).await;
    assert_eq!(v["decision"], "answer", "{v}");
    let nearest = v["out_of_scope_similarity"].as_f64().unwrap();
    assert!(nearest < 0.95, "{v}");

    // An example identical to the question: no direct answer, the options stay.
    let mut examples = demo.clone();
    examples.push(json!("退款多久能到账"));
    let (st, body) = call(
        &c,
        reqwest::Method::PUT,
        s.url("/v1/out-of-scope"),
        Some(json!({ "examples": examples })),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let v = common::matching_until(&c, &s, q.clone(), |v| v["decision"] != "answer").await;
    assert_eq!(v["decision"], "clarify", "{v}");
    assert_eq!(top(&v), "zh-refunds-001");
    assert!(v["out_of_scope_similarity"].as_f64().unwrap() > 0.99, "{v}");

    // Bad examples: 422 naming each, nothing stored.
    let (st, body) = call(
        &c,
        reqwest::Method::PUT,
        s.url("/v1/out-of-scope"),
        Some(json!({"examples": ["fine", " ", "x".repeat(2000)]})),
    )
    .await;
    assert_eq!(st, 422, "{body}");
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("examples[1]") && msg.contains("examples[2]"),
        "{msg}"
    );
    let (_, body) = call(&c, reqwest::Method::GET, s.url("/v1/out-of-scope"), None).await;
    assert_eq!(body["examples"].as_array().unwrap().len(), demo.len() + 1);

    // Removed: answered again, and nothing to compare with.
    let (st, _) = call(&c, reqwest::Method::DELETE, s.url("/v1/out-of-scope"), None).await;
    assert_eq!(st, 204);
    let v = common::matching_until(&c, &s, q, |v| v["decision"] == "answer").await;
    assert!(v.get("out_of_scope_similarity").is_none(), "{v}");
    let (_, body) = call(&c, reqwest::Method::GET, s.url("/v1/out-of-scope"), None).await;
    assert_eq!(body["examples"], json!([]));
}
