//! Knowledge documents, the KB's calibration, validity dates and clarification over real HTTP
//! with the demo knowledge base.

mod common;

use common::{Server, call, matching, matching_until};
use reqwest::{Client, Method};
use serde_json::{Value, json};

fn ids(v: &Value) -> Vec<String> {
    v["matches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["faq_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn documents_calibration_validity_and_clarify() {
    let s = Server::start(&common::model_dir(), &[]);
    s.ready().await;
    let c = Client::new();

    // The demo's two policy documents were loaded with the demo KB.
    let (st, v) = call(&c, Method::GET, s.url("/v1/documents"), None).await;
    assert_eq!(st, 200);
    assert_eq!(v["documents"].as_array().unwrap().len(), 2, "{v}");

    // A new document: split into passages under their headings, matched as `passage`.
    let doc = json!({
        "id": "manual-kettle", "title": "电热水壶说明书", "source": "kettle-manual.md",
        "format": "markdown", "locale": "zh-CN", "category": "manuals",
        "content": "# 使用\n\n首次使用前请加满水煮沸两次并倒掉，以去除异味。\n\n# 除垢\n\n水壶内壁出现白色水垢时，加入半壶水和两勺柠檬酸，煮沸后静置半小时再冲洗干净。\n"
    });
    let (st, v) = call(&c, Method::POST, s.url("/v1/documents"), Some(doc.clone())).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["passages"], 2);
    let (st, v) = call(&c, Method::POST, s.url("/v1/documents"), Some(doc)).await;
    assert_eq!(st, 200, "replacing: {v}");
    let (st, v) = call(&c, Method::GET, s.url("/v1/documents/manual-kettle"), None).await;
    assert_eq!(st, 200);
    assert_eq!(v["passages"][1]["heading"], "除垢", "{v}");
    assert_eq!(v["passages"][1]["id"], "manual-kettle#2");
    let q = json!({"query": "水壶里有白色水垢怎么清除", "top_k": 3});
    let v = matching_until(&c, &s, q.clone(), |v| {
        ids(v).contains(&"manual-kettle#2".to_string())
    })
    .await;
    let m = &v["matches"][0];
    assert_eq!(m["faq_id"], "manual-kettle#2", "{v}");
    assert_eq!(m["kind"], "passage");
    assert_eq!(m["source"]["document_id"], "manual-kettle");
    assert_eq!(m["source"]["source"], "kettle-manual.md");
    assert_eq!(m["source"]["heading"], "除垢");
    assert!(m["answer"].as_str().unwrap().contains("柠檬酸"));
    // Filters apply to passages by their document's category.
    let v = matching(
        &c,
        &s,
        json!({"query": "水壶里有白色水垢怎么清除", "filters": {"category": "refunds"}}),
    )
    .await;
    assert!(
        v["matches"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["kind"] == "faq"),
        "{v}"
    );

    // Invalid and unknown documents.
    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/documents"),
        Some(json!({"id": "bad id", "title": "", "content": "x"})),
    )
    .await;
    assert_eq!(st, 422);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("id:") && msg.contains("title:"), "{msg}");
    let (st, _) = call(&c, Method::GET, s.url("/v1/documents/nope"), None).await;
    assert_eq!(st, 404);
    let (st, _) = call(&c, Method::DELETE, s.url("/v1/documents/nope"), None).await;
    assert_eq!(st, 404);

    // Deleted: its passages are never returned again.
    let (st, _) = call(
        &c,
        Method::DELETE,
        s.url("/v1/documents/manual-kettle"),
        None,
    )
    .await;
    assert_eq!(st, 204);
    let v = matching(
        &c,
        &s,
        json!({"query": "水壶里有白色水垢怎么清除", "top_k": 20}),
    )
    .await;
    assert!(
        ids(&v).iter().all(|id| !id.starts_with("manual-kettle")),
        "{v}"
    );

    // An ambiguous question gets options, at most three.
    let v = matching(&c, &s, json!({"query": "发票"})).await;
    assert_eq!(v["decision"], "clarify", "{v}");
    let n = v["matches"].as_array().unwrap().len();
    assert!((2..=3).contains(&n), "{v}");

    // An input-method slip is corrected from the KB's vocabulary, and the response says so.
    let v = matching(&c, &s, json!({"query": "退宽多久能到账"})).await;
    assert_eq!(v["corrected_query"], "退款多久能到账", "{v}");
    assert_eq!(v["matches"][0]["faq_id"], "zh-refunds-001");
    let v = matching(&c, &s, json!({"query": "退款多久能到账"})).await;
    assert!(v.get("corrected_query").is_none(), "{v}");

    // Calibration: the config's until one is stored with the KB.
    let (st, v) = call(&c, Method::GET, s.url("/v1/calibration"), None).await;
    assert_eq!(st, 200);
    assert_eq!(v["source"], "config", "{v}");
    let clear = json!({"query": "退款多久能到账"});
    assert_eq!(matching(&c, &s, clear.clone()).await["decision"], "answer");
    // What GET returns goes back through PUT as it is (its `source` included).
    let mut strict = v.clone();
    strict["answer_threshold"] = json!(1.0);
    strict["clarify_threshold"] = json!(1.0);
    let (st, v) = call(
        &c,
        Method::PUT,
        s.url("/v1/calibration"),
        Some(strict.clone()),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["source"], "kb");
    assert_eq!(
        matching(&c, &s, clear.clone()).await["decision"],
        "no_answer"
    );
    let mut bad = strict.clone();
    bad["clarify_threshold"] = json!(1.5);
    let (st, v) = call(&c, Method::PUT, s.url("/v1/calibration"), Some(bad)).await;
    assert_eq!(st, 422);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("clarify_threshold")
    );
    // It is stored with the KB: a restart keeps it.
    let dir = s.data_dir.clone();
    drop(s);
    let s = Server::start_in(&common::model_dir(), dir, &[]);
    s.ready().await;
    let (_, v) = call(&c, Method::GET, s.url("/v1/calibration"), None).await;
    assert_eq!(v["source"], "kb", "{v}");
    assert_eq!(v["answer_threshold"], 1.0);
    let (st, _) = call(&c, Method::DELETE, s.url("/v1/calibration"), None).await;
    assert_eq!(st, 204);
    assert_eq!(matching(&c, &s, clear.clone()).await["decision"], "answer");

    // An entry past its validity dates is not returned.
    let mut e: Value = call(&c, Method::GET, s.url("/v1/faqs/zh-refunds-001"), None)
        .await
        .1;
    for k in ["created_at", "updated_at"] {
        e.as_object_mut().unwrap().remove(k);
    }
    e["valid_to"] = json!("2020-12-31");
    // PUT replaces an entry that exists; the body's id may be left out.
    e.as_object_mut().unwrap().remove("id");
    let (st, v) = call(
        &c,
        Method::PUT,
        s.url("/v1/faqs/zh-refunds-001"),
        Some(e.clone()),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["id"], "zh-refunds-001", "{v}");
    // An unknown id is not created by PUT (POST /v1/faqs creates).
    let (st, v) = call(&c, Method::PUT, s.url("/v1/faqs/zh-nothing-999"), Some(e)).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    let (st, _) = call(&c, Method::GET, s.url("/v1/faqs/zh-nothing-999"), None).await;
    assert_eq!(st, 404, "nothing was created");
    let v = matching(&c, &s, json!({"query": "退款多久能到账", "top_k": 20})).await;
    assert!(!ids(&v).contains(&"zh-refunds-001".to_string()), "{v}");
}
