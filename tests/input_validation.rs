//! What kefu refuses to store: control and bidirectional-override characters in KB texts,
//! locales it does not serve, identifiers of any length; and what bounds a session's memory.

mod common;

use common::{Server, call, model_dir};
use reqwest::{Client, Method};
use serde_json::{Value, json};

/// Sends `body`; asserts a 422 `invalid_request` whose message names `field`.
async fn refused(c: &Client, s: &Server, method: Method, path: &str, body: Value, field: &str) {
    let (st, v) = call(c, method, s.url(path), Some(body.clone())).await;
    assert_eq!(st, 422, "{path} {body}: {v}");
    assert_eq!(v["error"]["code"], "invalid_request", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains(field), "{field} not named in {msg:?}");
}

fn faq(id: &str) -> Value {
    json!({"id": id, "question": "企鹅玩偶可以刻字吗", "answer": "可以，下单时备注。", "category": "orders", "tags": ["刻字"], "similar": ["能刻名字吗"]})
}

#[tokio::test]
async fn control_and_bidi_override_characters_are_refused_in_kb_texts() {
    let s = Server::start(&model_dir(), &[]);
    let c = Client::new();
    s.ready().await;
    for bad in ["\0", "\u{1b}[31m", "\u{202e}", "\u{2066}", "\u{7f}"] {
        for (field, value) in [
            ("question", json!(format!("能刻字吗{bad}"))),
            ("answer", json!(format!("可以{bad}"))),
            ("similar", json!(["正常的问法", format!("刻{bad}字")])),
            ("category", json!(format!("orders{bad}"))),
            ("tags", json!([format!("刻字{bad}")])),
            ("answers", json!({"sms": format!("可以{bad}")})),
        ] {
            let mut body = faq("ctl-1");
            body[field] = value;
            let named = match field {
                "similar" => "similar[1]",
                "tags" => "tags[0]",
                "answers" => "answers.sms",
                f => f,
            };
            refused(&c, &s, Method::POST, "/v1/faqs", body.clone(), named).await;
            refused(&c, &s, Method::PUT, "/v1/faqs/ctl-1", body, named).await;
        }
        for field in ["title", "content", "source"] {
            let mut doc = json!({"id": "ctl-doc", "title": "说明", "source": "manual.md", "content": "第一段。\n\n第二段。"});
            doc[field] = json!(format!("文字{bad}"));
            refused(&c, &s, Method::POST, "/v1/documents", doc, field).await;
        }
        let body = json!({"examples": ["明天天气怎么样", format!("股票{bad}")]});
        refused(&c, &s, Method::PUT, "/v1/out-of-scope", body, "examples[1]").await;
    }
    // Imports name the line and the field.
    let line = format!(
        "{}\n{}\n",
        faq("imp-1"),
        json!({"id": "imp-2", "question": "坏\u{202e}问题", "answer": "a"})
    );
    let r = c
        .post(s.url("/v1/faqs:import?format=jsonl"))
        .body(line)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    let p = &v["error"]["problems"][0];
    assert_eq!(
        (p["line"].as_u64(), p["field"].as_str()),
        (Some(2), Some("question")),
        "{v}"
    );
    assert!(p["message"].as_str().unwrap().contains("U+202E"), "{v}");

    // Tab and line breaks are fine in answers and documents, not in a question.
    let mut body = faq("ctl-ok");
    body["answer"] = json!("第一步：登录。\n第二步：\t点“退款”。\r\n完成。");
    let (st, v) = call(&c, Method::POST, s.url("/v1/faqs"), Some(body)).await;
    assert_eq!(st, 201, "{v}");
    let doc = json!({"id": "ctl-doc-ok", "title": "说明", "content": "# 标题\n\n第一段。\t缩进\r\n\n第二段。"});
    let (st, v) = call(&c, Method::POST, s.url("/v1/documents"), Some(doc)).await;
    assert!(st == 200 || st == 201, "{v}");
    let mut body = faq("ctl-2");
    body["question"] = json!("两行\n问题");
    refused(&c, &s, Method::POST, "/v1/faqs", body, "question").await;
}

#[tokio::test]
async fn locales_are_the_ones_kefu_serves_and_identifiers_are_capped() {
    let s = Server::start(&model_dir(), &[]);
    let c = Client::new();
    s.ready().await;
    for bad in ["fr", "zh_CN", "english", "", "zh-CN-x"] {
        let mut body = faq("loc-1");
        body["locale"] = json!(bad);
        refused(&c, &s, Method::POST, "/v1/faqs", body, "locale").await;
        let doc = json!({"id": "loc-doc", "title": "t", "content": "c", "locale": bad});
        refused(&c, &s, Method::POST, "/v1/documents", doc, "locale").await;
        let q = json!({"query": "退款多久到账", "filters": {"locale": bad}});
        refused(&c, &s, Method::POST, "/v1/match", q, "filters.locale").await;
        let r = json!({"customer_id": "c1", "locale": bad});
        refused(&c, &s, Method::POST, "/v1/recommend", r, "locale").await;
        let cu = json!({"locale": bad});
        refused(&c, &s, Method::PUT, "/v1/customers/c1", cu, "locale").await;
    }
    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/faqs"),
        Some({
            let mut b = faq("loc-ok");
            b["locale"] = json!("zh-CN");
            b
        }),
    )
    .await;
    assert_eq!(st, 201, "{v}");

    // A 10 KB tier or customer id is refused wherever it comes in.
    let huge = "g".repeat(10_000);
    refused(
        &c,
        &s,
        Method::PUT,
        "/v1/customers/c1",
        json!({"tier": huge}),
        "tier",
    )
    .await;
    let turn = json!({"text": "你好", "customer": {"tier": huge}});
    refused(&c, &s, Method::POST, "/v1/chat", turn, "customer.tier").await;
    let turn = json!({"text": "你好", "customer": {"id": huge}});
    refused(&c, &s, Method::POST, "/v1/chat", turn, "customer.id").await;
    let turn = json!({"text": "你好", "customer": {"id": huge}});
    refused(&c, &s, Method::POST, "/v1/intent", turn, "customer.id").await;
    // A known tier in another case is stored as the policy spells it.
    let (st, v) = call(
        &c,
        Method::PUT,
        s.url("/v1/customers/c1"),
        Some(json!({"tier": "GOLD"})),
    )
    .await;
    assert_eq!((st, &v["tier"]), (200, &json!("gold")), "{v}");

    // A hand-off's reason is bounded like any text.
    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/chat"),
        Some(json!({"session_id": "cap-1", "text": "你好"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let long = "理".repeat(9000);
    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/sessions/cap-1/handoff"),
        Some(json!({"detail": long})),
    )
    .await;
    assert_eq!(st, 413, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("detail"),
        "{v}"
    );
}

#[tokio::test]
async fn a_sessions_memory_is_bounded_in_bytes() {
    let budget = 8192;
    let s = Server::start(
        &model_dir(),
        &[("KEFU_DIALOG__MAX_SESSION_BYTES", &budget.to_string())],
    );
    let c = Client::new();
    s.ready().await;
    for i in 0..6 {
        let text = format!("第{i}个问题：{}", "退款".repeat(500));
        let (st, v) = call(
            &c,
            Method::POST,
            s.url("/v1/chat"),
            Some(json!({"session_id": "long-1", "text": text})),
        )
        .await;
        assert_eq!(st, 200, "{v}");
    }
    let (st, v) = call(&c, Method::GET, s.url("/v1/sessions/long-1"), None).await;
    assert_eq!(st, 200, "{v}");
    let turns = v["turns"].as_array().unwrap();
    let bytes: usize = turns.iter().map(|t| t.to_string().len()).sum();
    assert!(bytes <= budget, "{} turns take {bytes} bytes", turns.len());
    let last_question = turns
        .iter()
        .rev()
        .find(|t| t["role"] == "customer")
        .expect("the latest question is kept");
    assert!(
        last_question["text"]
            .as_str()
            .unwrap()
            .starts_with("第5个问题"),
        "{v}"
    );
    assert!(turns.len() < 12, "the oldest turns were dropped");

    // The budget is checked like every setting.
    let out = common::kefu()
        .arg("config")
        .env("KEFU_DIALOG__MAX_SESSION_BYTES", "10")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("dialog.max_session_bytes"),
        "{err}"
    );
}
