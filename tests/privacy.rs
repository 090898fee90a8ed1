//! Customer data against the real server: personal numbers never reach the log, analytics
//! keep them masked, transcripts too when configured, old data is purged by
//! `privacy.retention_days`, and `DELETE /v1/customers/{id}` erases a customer everywhere.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{Server, call, model_dir};
use reqwest::{Client, Method};
use serde_json::{Value, json};

const PHONE: &str = "13812345678";
const ID_CARD: &str = "11010519491231002X";

/// A chat turn, waiting (on 503) for the index.
async fn chat(c: &Client, s: &Server, body: Value) -> Value {
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let (st, v) = call(c, Method::POST, s.url("/v1/chat"), Some(body.clone())).await;
        if st == 200 {
            return v;
        }
        assert_eq!(st, 503, "{v}");
        assert!(Instant::now() < deadline, "never ready: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Every log line the server has written so far (after a moment for the last ones).
fn drain(s: &Server) -> Vec<String> {
    std::thread::sleep(Duration::from_millis(500));
    s.log.try_iter().collect()
}

#[tokio::test]
async fn masked_in_logs_and_analytics_then_erased_everywhere() {
    let s = Server::start(&model_dir(), &[("KEFU_LOG", "debug")]);
    let c = Client::new();
    let text = format!("我的手机{PHONE}，身份证{ID_CARD}，退货运费谁出");
    let v = chat(
        &c,
        &s,
        json!({"text": text, "customer": {"id": PHONE, "tier": "gold"}}),
    )
    .await;
    let sid = v["session_id"].as_str().unwrap().to_string();
    let turn = v["turn_id"].as_str().unwrap().to_string();
    // The agent sees what the customer said (privacy.mask_transcripts is off by default).
    let (st, session) = call(&c, Method::GET, s.url(&format!("/v1/sessions/{sid}")), None).await;
    assert_eq!(st, 200);
    assert!(session.to_string().contains(PHONE), "{session}");

    let (st, fb) = call(
        &c,
        Method::POST,
        s.url("/v1/feedback"),
        Some(json!({"turn_id": turn, "helpful": false, "comment": format!("call me on {PHONE} or mail li.lei@example.com")})),
    )
    .await;
    assert_eq!(st, 201, "{fb}");
    // Analytics keep it masked: the comment and the question stored with the feedback.
    let stored = fb.to_string();
    assert!(
        !stored.contains(PHONE) && !stored.contains(ID_CARD),
        "{stored}"
    );
    assert!(
        stored.contains("138****5678") && stored.contains("l***@example.com"),
        "{stored}"
    );

    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/events"),
        Some(json!({"events": [
            {"customer_id": PHONE, "type": "consult", "text": format!("发票寄到 {PHONE}")},
            {"customer_id": PHONE, "type": "consult", "text": "发票怎么开"},
        ]})),
    )
    .await;
    assert!(st == 200 || st == 202, "{v}");
    let (st, _) = call(
        &c,
        Method::PUT,
        s.url(&format!("/v1/customers/{PHONE}")),
        Some(json!({"tier": "gold", "locale": "zh"})),
    )
    .await;
    assert_eq!(st, 200);
    let (st, profile) = call(
        &c,
        Method::GET,
        s.url(&format!("/v1/customers/{PHONE}/profile")),
        None,
    )
    .await;
    assert_eq!(st, 200, "{profile}");
    assert!(
        !profile["recent_consultations"].to_string().contains(PHONE),
        "{profile}"
    );

    // Erasure: everything, and it says what.
    let (st, erased) = call(
        &c,
        Method::DELETE,
        s.url(&format!("/v1/customers/{PHONE}")),
        None,
    )
    .await;
    assert_eq!(st, 200, "{erased}");
    assert!(erased["events"].as_u64().unwrap() >= 2, "{erased}");
    assert_eq!(erased["profile"], true, "{erased}");
    assert_eq!(erased["feedback"], 1, "{erased}");
    assert_eq!(erased["sessions"], json!([sid]), "{erased}");
    let (st, _) = call(
        &c,
        Method::GET,
        s.url(&format!("/v1/customers/{PHONE}/profile")),
        None,
    )
    .await;
    assert_eq!(st, 404, "the profile survived erasure");
    let (st, _) = call(&c, Method::GET, s.url(&format!("/v1/sessions/{sid}")), None).await;
    assert_eq!(st, 404, "the conversation survived erasure");
    let (st, left) = call(
        &c,
        Method::GET,
        s.url(&format!("/v1/feedback?session_id={sid}")),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(left["feedback"].as_array().map(Vec::len), Some(0), "{left}");
    let (st, again) = call(
        &c,
        Method::DELETE,
        s.url(&format!("/v1/customers/{PHONE}")),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(again["events"], 0, "{again}");
    assert_eq!(again["sessions"], json!([]), "{again}");

    // The log: the erasure is recorded (masked), the numbers never appear.
    let log = drain(&s);
    assert!(
        log.iter()
            .any(|l| l.contains("erased") && l.contains("138****5678")),
        "no masked audit line for the erasure"
    );
    for l in &log {
        assert!(!l.contains(PHONE), "phone number in the log: {l}");
        assert!(!l.contains(ID_CARD), "ID-card number in the log: {l}");
    }
}

#[tokio::test]
async fn retention_purges_old_data_and_transcripts_can_be_masked() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let c = Client::new();
    let old = chrono_days_ago(10);
    {
        let s = Server::start_in(&model_dir(), dir.clone(), &[]);
        let (st, v) = call(
            &c,
            Method::POST,
            s.url("/v1/events"),
            Some(json!({"events": [
                {"customer_id": "c-old", "type": "consult", "text": "去年的问题", "ts": old},
                {"customer_id": "c-old", "type": "consult", "text": "今天的问题"},
            ]})),
        )
        .await;
        assert!(st == 200 || st == 202, "{v}");
        let (_, p) = call(&c, Method::GET, s.url("/v1/customers/c-old/profile"), None).await;
        assert_eq!(p["counts"]["consult"], 2, "{p}");
    }
    let s = Server::start_in(
        &model_dir(),
        dir.clone(),
        &[
            ("KEFU_PRIVACY__RETENTION_DAYS", "1"),
            ("KEFU_PRIVACY__MASK_TRANSCRIPTS", "true"),
        ],
    );
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let (_, p) = call(&c, Method::GET, s.url("/v1/customers/c-old/profile"), None).await;
        if p["counts"]["consult"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "old events never purged: {p}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let v = chat(&c, &s, json!({"text": format!("电话 {PHONE} 运费谁出")})).await;
    let sid = v["session_id"].as_str().unwrap();
    let (_, session) = call(&c, Method::GET, s.url(&format!("/v1/sessions/{sid}")), None).await;
    let turns = session["turns"].to_string();
    assert!(!turns.contains(PHONE), "{turns}");
    assert!(turns.contains("138****5678"), "{turns}");
}

/// Unix seconds `days` ago.
fn chrono_days_ago(days: i64) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    now - days * 86_400
}
