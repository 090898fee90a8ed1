//! Conversations over HTTP against the real server, the demo KB, the demo intent models and
//! the example order system (a real local HTTP server, also the agent desk's webhook).

mod common;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use common::OrderSystem;

async fn chat(c: &reqwest::Client, s: &common::Server, body: Value) -> Value {
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let (st, v) = common::call(c, Method::POST, s.url("/v1/chat"), Some(body.clone())).await;
        if st == 200 {
            return v;
        }
        // The index builds and the demo intent models train at first start.
        assert_eq!(st, 503, "{body} → {v}");
        assert!(Instant::now() < deadline, "chat never became ready: {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn say(c: &reqwest::Client, s: &common::Server, session: &str, text: &str) -> Value {
    chat(c, s, json!({"session_id": session, "text": text})).await
}

#[tokio::test]
async fn scripted_conversations_with_context_flows_and_handoff() {
    let model = common::model_dir();
    let orders = OrderSystem::start(&["--fail-handoffs", "1"]);
    let desk = format!("{}/desk/handoffs", orders.base);
    let s = common::Server::start(
        &model,
        &[
            ("KEFU_INTENT__LOAD_DEMO", "true"),
            ("KEFU_DIALOG__SERVICES__ORDERS", &orders.base),
            ("KEFU_DIALOG__HANDOFF__WEBHOOK_URL", &desk),
        ],
    );
    s.ready().await;
    let c = reqwest::Client::new();

    // A follow-up that only makes sense with its context, inside an interrupted flow.
    let v = say(&c, &s, "ctx", "我想退货").await;
    assert_eq!(v["action"], "ask_slot", "{v}");
    assert_eq!(v["flow"]["name"], "refund", "{v}");
    let v = say(&c, &s, "ctx", "运费谁出").await;
    assert_eq!(v["action"], "answer", "{v}");
    assert!(
        v["rewritten_query"].as_str().unwrap().contains("退货"),
        "{v}"
    );
    assert_eq!(v["matches"][0]["faq_id"], "zh-returns-004", "{v}");
    let answer_turn = v["turn_id"].as_str().unwrap().to_string();

    // Order status: asks for the number, refuses a wrong one, calls the order system.
    let v = say(&c, &s, "status", "我的订单到哪了").await;
    assert_eq!(v["action"], "ask_slot", "{v}");
    assert_eq!(v["flow"]["awaiting"], "order_id");
    let v = say(&c, &s, "status", "订单号是12345").await;
    assert_eq!(v["action"], "ask_slot", "{v}");
    assert!(v["reply"].as_str().unwrap().contains("格式不对"), "{v}");
    let v = say(&c, &s, "status", "KF2026112001").await;
    assert_eq!(v["action"], "flow_result", "{v}");
    assert_eq!(v["flow"]["status"], "done");
    let reply = v["reply"].as_str().unwrap();
    assert!(
        reply.contains("已发货") && reply.contains("SF1234567890"),
        "{reply}"
    );

    // A refund reuses the order number given two turns earlier.
    let v = say(&c, &s, "refund", "帮我查一下订单 KF2026112002 的物流").await;
    assert_eq!(v["action"], "flow_result", "{v}");
    assert!(v["reply"].as_str().unwrap().contains("已签收"), "{v}");
    let v = say(&c, &s, "refund", "谢谢").await;
    assert_eq!(v["action"], "answer", "{v}");
    let v = say(&c, &s, "refund", "我要退款").await;
    assert_eq!(v["action"], "ask_slot", "{v}");
    assert_eq!(v["flow"]["slots"]["order_id"], "KF2026112002", "{v}");
    assert_eq!(v["flow"]["awaiting"], "reason", "{v}");
    let v = say(&c, &s, "refund", "东西坏了，质量问题").await;
    assert_eq!(v["action"], "confirm", "{v}");
    assert!(v["reply"].as_str().unwrap().contains("质量问题"), "{v}");
    let v = say(&c, &s, "refund", "是的").await;
    assert_eq!(v["action"], "flow_result", "{v}");
    assert!(v["reply"].as_str().unwrap().contains("RF0001"), "{v}");
    let (_, refunds) =
        common::call(&c, Method::GET, format!("{}/refunds", orders.base), None).await;
    assert_eq!(refunds["refunds"][0]["order_id"], "KF2026112002");
    assert_eq!(refunds["refunds"][0]["reason"], "quality");

    // Leaving a flow.
    let v = say(&c, &s, "cancel", "我想修改收货地址").await;
    assert_eq!(v["flow"]["name"], "change_address", "{v}");
    let v = say(&c, &s, "cancel", "算了").await;
    assert_eq!(v["action"], "flow_result", "{v}");
    assert_eq!(v["flow"]["status"], "cancelled");
    let (_, sess) = common::call(&c, Method::GET, s.url("/v1/sessions/cancel"), None).await;
    assert!(sess["flow"].is_null(), "{sess}");

    // 转人工: a hand-off package with the transcript and tags, delivered once to the desk
    // (which refuses the first attempt).
    let v = chat(
        &c,
        &s,
        json!({"session_id": "human", "customer": {"id": "c-42", "tier": "gold"}, "channel": "app",
               "text": "我的订单 KF2026112003 三天了还没发货"}),
    )
    .await;
    assert_ne!(v["action"], "handoff", "{v}");
    let v = say(&c, &s, "human", "转人工").await;
    assert_eq!(v["action"], "handoff", "{v}");
    assert!(v["rewritten_query"].is_null(), "{v}");
    let p = &v["handoff"];
    assert_eq!(p["reason"], "explicit_request");
    assert_eq!(p["route"]["target"], "vip_agent", "{p}");
    assert_eq!(p["customer"]["id"], "c-42");
    assert_eq!(p["slots"]["order_id"], "KF2026112003", "{p}");
    let t = p["transcript"].as_array().unwrap();
    assert_eq!(t.len(), 3, "{p}");
    assert_eq!(t[0]["role"], "customer");
    assert_eq!(t[1]["role"], "bot");
    assert_eq!(t[2]["text"], "转人工");
    let tags: Vec<&str> = p["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(
        tags.contains(&"explicit_request") && tags.contains(&"vip"),
        "{tags:?}"
    );
    let id = p["id"].as_str().unwrap().to_string();
    let v = say(&c, &s, "human", "在吗").await;
    assert_eq!(v["action"], "with_agent", "{v}");
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    let delivered = loop {
        let (_, d) = common::call(&c, Method::GET, desk.clone(), None).await;
        let got: Vec<Value> = d["handoffs"].as_array().unwrap().clone();
        if !got.is_empty() || Instant::now() > deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["idempotency_key"], id.as_str());
    assert_eq!(
        delivered[0]["body"]["transcript"].as_array().unwrap().len(),
        3
    );
    let (st, _) = common::call(&c, Method::POST, s.url("/v1/sessions/human/release"), None).await;
    assert_eq!(st, 200);
    let (st, _) = common::call(&c, Method::POST, s.url("/v1/sessions/human/release"), None).await;
    assert_eq!(st, 409, "released twice");
    let v = say(&c, &s, "human", "退货运费谁承担").await;
    assert_eq!(v["action"], "answer", "back with the bot: {v}");

    // The routing policy: an urgent complaint goes to the complaints team at once.
    let v = say(
        &c,
        &s,
        "complaint",
        "充电器冒烟了，孩子的手被烫伤了，我要投诉",
    )
    .await;
    assert_eq!(v["action"], "handoff", "{v}");
    assert_eq!(v["handoff"]["reason"], "routing");
    assert_eq!(v["handoff"]["route"]["target"], "complaints", "{v}");
    assert_eq!(v["handoff"]["severity"], "urgent", "{v}");

    // The API hands a conversation over, once.
    let (st, p) = common::call(
        &c,
        Method::POST,
        s.url("/v1/sessions/ctx/handoff"),
        Some(json!({"detail": "supervisor takes over", "priority": "high"})),
    )
    .await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["reason"], "api");
    assert_eq!(p["route"]["target"], "agent");
    assert_eq!(p["transcript"].as_array().unwrap().len(), 4, "{p}");
    let (st, _) = common::call(
        &c,
        Method::POST,
        s.url("/v1/sessions/ctx/handoff"),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 409);
    let (st, _) = common::call(
        &c,
        Method::POST,
        s.url("/v1/sessions/nope/handoff"),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 404);

    // Two turns the bot cannot answer hand the customer on.
    let v = say(&c, &s, "lost", "qwxz plokm zzvb").await;
    assert_eq!(v["action"], "no_answer", "{v}");
    let v = say(&c, &s, "lost", "vbnm trew qqqq").await;
    assert_eq!(v["action"], "handoff", "{v}");
    assert_eq!(v["handoff"]["reason"], "no_answer");
    assert_eq!(v["handoff"]["transcript"].as_array().unwrap().len(), 3);

    // Agent assist, from a session and from a transcript.
    let (st, a) = common::call(
        &c,
        Method::POST,
        s.url("/v1/assist"),
        Some(json!({"session_id": "ctx"})),
    )
    .await;
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["suggestions"][0]["faq_id"], "zh-returns-004", "{a}");
    let (st, a) = common::call(
        &c,
        Method::POST,
        s.url("/v1/assist"),
        Some(json!({"transcript": [{"role": "customer", "text": "订单 KF2026112001 我不想要了，要退款"}]})),
    )
    .await;
    assert_eq!(st, 200, "{a}");
    assert_eq!(a["flow"]["name"], "refund", "{a}");
    assert_eq!(a["flow"]["known"]["order_id"], "KF2026112001", "{a}");
    let (st, _) = common::call(&c, Method::POST, s.url("/v1/assist"), Some(json!({}))).await;
    assert_eq!(st, 422);
    let (st, _) = common::call(
        &c,
        Method::POST,
        s.url("/v1/assist"),
        Some(json!({"session_id": "nope"})),
    )
    .await;
    assert_eq!(st, 404);

    // Feedback is stored with the question and the entry answered.
    let (st, f) = common::call(
        &c,
        Method::POST,
        s.url("/v1/feedback"),
        Some(json!({"turn_id": answer_turn, "helpful": true, "rating": 5, "comment": "清楚"})),
    )
    .await;
    assert_eq!(st, 201, "{f}");
    let (_, list) = common::call(&c, Method::GET, s.url("/v1/feedback?session_id=ctx"), None).await;
    let stored = &list["feedback"][0];
    assert_eq!(stored["turn_id"], answer_turn.as_str());
    assert_eq!(stored["answered_faq_id"], "zh-returns-004");
    assert!(
        stored["question"].as_str().unwrap().contains("运费"),
        "{stored}"
    );
    for (body, want) in [
        (json!({"turn_id": "ctx-99", "helpful": true}), 404),
        (json!({"turn_id": "nonsense", "helpful": true}), 422),
        (json!({"turn_id": answer_turn, "rating": 9}), 422),
        (json!({"turn_id": answer_turn}), 422),
        (
            json!({"turn_id": answer_turn, "helpful": false, "faq_id": "no-such"}),
            404,
        ),
    ] {
        let (st, v) =
            common::call(&c, Method::POST, s.url("/v1/feedback"), Some(body.clone())).await;
        assert_eq!(st, want, "{body} → {v}");
    }

    // Sessions: read, end, gone.
    let (st, sess) = common::call(&c, Method::GET, s.url("/v1/sessions/status"), None).await;
    assert_eq!(st, 200);
    assert_eq!(sess["turns"].as_array().unwrap().len(), 6);
    assert_eq!(sess["slots"]["order_id"], "KF2026112001");
    let (st, _) = common::call(&c, Method::DELETE, s.url("/v1/sessions/status"), None).await;
    assert_eq!(st, 204);
    let (st, _) = common::call(&c, Method::GET, s.url("/v1/sessions/status"), None).await;
    assert_eq!(st, 404);

    // Bad requests.
    for (body, want) in [
        (json!({"text": "   "}), 422),
        (json!({"text": "你好", "session_id": "has space"}), 422),
        (json!({"text": "你好", "channel": "fax"}), 422),
        (json!({"text": "你好", "extra": 1}), 422),
        (json!({"text": "好".repeat(9000)}), 413),
    ] {
        let (st, v) = common::call(&c, Method::POST, s.url("/v1/chat"), Some(body.clone())).await;
        assert_eq!(st, want, "{v}");
    }

    // A flow whose call fails (the order system is gone) hands the customer on, with the slots.
    drop(orders);
    let v = say(&c, &s, "down", "查一下订单 KF2026112001 到哪了").await;
    assert_eq!(v["action"], "handoff", "{v}");
    assert_eq!(v["handoff"]["reason"], "flow_failed");
    assert_eq!(v["handoff"]["slots"]["order_id"], "KF2026112001");
}

#[tokio::test]
async fn turn_ids_stay_unique_once_old_turns_are_dropped() {
    let model = common::model_dir();
    let s = common::Server::start(&model, &[("KEFU_DIALOG__MAX_TURNS", "3")]);
    s.ready().await;
    let c = reqwest::Client::new();
    let questions = [
        "退货运费谁承担",
        "怎么开发票",
        "会员积分怎么兑换",
        "多久发货",
        "可以改地址吗",
    ];
    let mut ids = Vec::new();
    for q in questions {
        let v = say(&c, &s, "long", q).await;
        ids.push(v["turn_id"].as_str().unwrap().to_string());
    }
    let unique: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{ids:?}");
    assert_eq!(ids.last().unwrap(), "long-10", "{ids:?}");
    let (_, sess) = common::call(&c, Method::GET, s.url("/v1/sessions/long"), None).await;
    assert_eq!(sess["turns"].as_array().unwrap().len(), 3, "{sess}");
    // Feedback on the latest reply is stored against its own question.
    let (st, f) = common::call(
        &c,
        Method::POST,
        s.url("/v1/feedback"),
        Some(json!({"turn_id": ids.last().unwrap(), "helpful": true})),
    )
    .await;
    assert_eq!(st, 201, "{f}");
    assert!(f["question"].as_str().unwrap_or("").contains("地址"), "{f}");
    // A reply that was dropped is no longer there to be confused with a later one.
    let (st, f) = common::call(
        &c,
        Method::POST,
        s.url("/v1/feedback"),
        Some(json!({"turn_id": ids[1], "helpful": false})),
    )
    .await;
    assert_eq!(st, 404, "{f}");
}

#[tokio::test]
async fn sessions_expire() {
    let model = common::model_dir();
    let s = common::Server::start(&model, &[("KEFU_DIALOG__SESSION_TTL_SECS", "1")]);
    s.ready().await;
    let c = reqwest::Client::new();
    let v = chat(&c, &s, json!({"text": "退货运费谁承担"})).await;
    let id = v["session_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 32, "a fresh id: {v}");
    let (st, _) = common::call(&c, Method::GET, s.url(&format!("/v1/sessions/{id}")), None).await;
    assert_eq!(st, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (st, _) = common::call(&c, Method::GET, s.url(&format!("/v1/sessions/{id}")), None).await;
    assert_eq!(st, 404, "expired");
    let v = say(&c, &s, &id, "运费谁出").await;
    assert!(v["rewritten_query"].is_null(), "no context left: {v}");
}

#[tokio::test]
#[ignore = "needs Redis: set KEFU_TEST_REDIS_URL (e.g. redis://127.0.0.1:6379) and run with --ignored"]
async fn a_session_survives_on_redis_across_two_servers() {
    let url = std::env::var("KEFU_TEST_REDIS_URL").expect(
        "KEFU_TEST_REDIS_URL must name a Redis for this test (e.g. redis://127.0.0.1:6379)",
    );
    let model = common::model_dir();
    let prefix = format!("kefu-test:{}:", std::process::id());
    let env = [
        ("KEFU_DIALOG__STORE", "redis"),
        ("KEFU_DIALOG__REDIS_URL", url.as_str()),
        ("KEFU_DIALOG__REDIS_PREFIX", prefix.as_str()),
    ];
    let c = reqwest::Client::new();
    let id = {
        let a = common::Server::start(&model, &env);
        a.ready().await;
        let v = chat(
            &c,
            &a,
            json!({"text": "退货运费谁承担", "customer": {"id": "c-7"}}),
        )
        .await;
        assert_eq!(v["action"], "answer", "{v}");
        v["session_id"].as_str().unwrap().to_string()
    };
    // Another process (and data directory) picks the conversation up.
    let mut env2 = env.to_vec();
    env2.push(("KEFU_DIALOG__SESSION_TTL_SECS", "2"));
    let b = common::Server::start(&model, &env2);
    b.ready().await;
    let (st, sess) =
        common::call(&c, Method::GET, b.url(&format!("/v1/sessions/{id}")), None).await;
    assert_eq!(st, 200, "{sess}");
    assert_eq!(sess["customer"]["id"], "c-7");
    assert_eq!(sess["turns"].as_array().unwrap().len(), 2);
    let v = say(&c, &b, &id, "那要多久到账").await;
    assert_eq!(v["session_id"], id.as_str());
    let (_, sess) = common::call(&c, Method::GET, b.url(&format!("/v1/sessions/{id}")), None).await;
    assert_eq!(sess["turns"].as_array().unwrap().len(), 4);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let (st, _) = common::call(&c, Method::GET, b.url(&format!("/v1/sessions/{id}")), None).await;
    assert_eq!(st, 404, "expired in Redis");
}

#[test]
fn bad_dialog_config_stops_startup() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("kefu.toml");
    std::fs::write(
        &cfg,
        r#"
[[dialog.flows]]
name = "broken"
intents = ["order_status"]
reply = { zh = "好", en = "ok" }
call = { url = "http://127.0.0.1:1/x" }
slots = [{ name = "order_id", kind = "pattern", pattern = "KF(", prompt = { zh = "?", en = "?" } }]
"#,
    )
    .unwrap();
    let out = common::kefu()
        .args(["serve", "--port", "0", "--config"])
        .arg(&cfg)
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("dialog flow \"broken\"") && err.contains("pattern is invalid"),
        "{err}"
    );

    let out = common::kefu()
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .env("KEFU_DIALOG__STORE", "redis")
        .env("KEFU_DIALOG__REDIS_URL", "redis://127.0.0.1:1")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("dialog.redis_url"), "{err}");
}
