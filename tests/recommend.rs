//! Catalogue, events, profiles and recommendations over HTTP against the real server, the real
//! model and the demo shop (items, customers, purchases, consultations).

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

fn demo_path(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("datasets/demo/recommend")
        .join(name)
}

/// Items the demo customer bought, and the demo's inactive items.
fn demo_facts(customer: &str) -> (HashSet<String>, HashSet<String>) {
    let bought = std::fs::read_to_string(demo_path("interactions.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0] == customer).then(|| f[1].to_string())
        })
        .collect();
    let inactive = std::fs::read_to_string(demo_path("items.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["active"] == json!(false))
        .map(|v| v["id"].as_str().unwrap().to_string())
        .collect();
    (bought, inactive)
}

async fn recommend(c: &reqwest::Client, s: &common::Server, body: Value) -> Value {
    let (st, v) = common::call(c, Method::POST, s.url("/v1/recommend"), Some(body.clone())).await;
    assert_eq!(st, 200, "{body} → {v}");
    v
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["item_id"].as_str().unwrap().to_string())
        .collect()
}

/// Waits for a condition on a GET, e.g. a background write becoming visible.
async fn poll(
    c: &reqwest::Client,
    url: String,
    what: &str,
    ok: impl Fn(u16, &Value) -> bool,
) -> Value {
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let (st, v) = common::call(c, Method::GET, url.clone(), None).await;
        if ok(st, &v) {
            return v;
        }
        assert!(Instant::now() < deadline, "{what} never happened: {st} {v}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test]
async fn catalogue_events_profiles_and_recommendations() {
    let model = common::model_dir();
    let s = common::Server::start(&model, &[("KEFU_RECOMMEND__LOAD_DEMO", "true")]);
    s.ready().await;
    let c = reqwest::Client::new();

    // The demo shop loads, is embedded, and a model is trained on its purchases.
    poll(
        &c,
        s.url("/v1/items?limit=1"),
        "the demo catalogue",
        |st, v| st == 200 && v["total"] == json!(299) && v["items"][0]["embedded"] == json!(true),
    )
    .await;
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    let first = loop {
        let v = recommend(&c, &s, json!({"customer_id": "c0092", "k": 10})).await;
        if v["model"].is_object() {
            break v;
        }
        assert!(Instant::now() < deadline, "no model was trained: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };

    // A regular: ten items, none bought before, none inactive, each with a reason.
    let (bought, inactive) = demo_facts("c0092");
    assert_eq!(first["strategy"], "personal", "{first}");
    assert_eq!(first["known"], true);
    let got = ids(&first);
    assert_eq!(got.len(), 10, "{first}");
    for (i, id) in got.iter().enumerate() {
        assert!(!bought.contains(id), "{id} was bought already: {first}");
        assert!(!inactive.contains(id), "{id} is inactive: {first}");
        assert!(!first["items"][i]["reason"].as_str().unwrap().is_empty());
    }
    assert!(
        first["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["source"] == "collaborative"),
        "the collaborative model leads for a customer with a long history: {first}"
    );
    let scores: Vec<f64> = first["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["score"].as_f64().unwrap())
        .collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    let with_bought = recommend(
        &c,
        &s,
        json!({"customer_id": "c0092", "k": 50, "include_purchased": true}),
    )
    .await;
    assert!(
        ids(&with_bought).iter().any(|i| bought.contains(i)),
        "include_purchased lets bought items back in"
    );

    // Their profile.
    let (st, p) = common::call(&c, Method::GET, s.url("/v1/customers/c0092/profile"), None).await;
    assert_eq!(st, 200, "{p}");
    assert_eq!(p["counts"]["purchase"], json!(77), "{p}");
    assert!(p["tier"].is_string(), "{p}");
    assert!(!p["interests"].as_array().unwrap().is_empty(), "{p}");
    assert_eq!(p["interests"][0]["weight"], json!(1.0));
    assert_eq!(p["recent_purchases"].as_array().unwrap().len(), 10);
    assert!(p["last_seen"].as_i64() >= p["first_seen"].as_i64());
    let (st, _) = common::call(&c, Method::GET, s.url("/v1/customers/nobody/profile"), None).await;
    assert_eq!(st, 404);

    // An unknown customer: cold start from the context, not an error.
    let cold = recommend(
        &c,
        &s,
        json!({"customer_id": "new-1", "context": "保温杯能装开水吗", "k": 5}),
    )
    .await;
    assert_eq!(cold["strategy"], "cold_start");
    assert_eq!(cold["known"], false);
    let top = &cold["items"][0];
    assert!(
        top["title"].as_str().unwrap().contains("杯"),
        "the context leads: {cold}"
    );
    assert_eq!(top["source"], "context");
    assert!(top["reason"].as_str().unwrap().contains("保温杯"), "{cold}");
    let cold_en = recommend(
        &c,
        &s,
        json!({"context": "a phone case for my phone", "k": 3}),
    )
    .await;
    assert_eq!(cold_en["locale"], "en");
    assert!(
        cold_en["items"][0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("Related to"),
        "{cold_en}"
    );

    // Event validation: the whole batch is refused, naming each problem; nothing is stored.
    let (st, v) = common::call(
        &c,
        Method::POST,
        s.url("/v1/events"),
        Some(json!({"events": [
            {"customer_id": "bad-1", "type": "like", "item_id": "p0003"},
            {"customer_id": "bad-1", "type": "purchase", "item_id": "p0003", "ts": "last tuesday"},
            {"customer_id": "bad-1", "type": "purchase", "item_id": "nope"},
            {"customer_id": "bad-1", "type": "rating", "item_id": "p0003", "value": 7},
            {"customer_id": "bad-1", "type": "view", "item_id": "p0003"}
        ]})),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    for part in [
        "events[0].type",
        "events[1].ts",
        "events[2].item_id",
        "events[3].value",
    ] {
        assert!(msg.contains(part), "{part} in {msg}");
    }
    assert!(!msg.contains("events[4]"), "{msg}");
    let (st, _) = common::call(&c, Method::GET, s.url("/v1/customers/bad-1/profile"), None).await;
    assert_eq!(st, 404, "a refused batch stores nothing");
    let (st, v) = common::call(
        &c,
        Method::POST,
        s.url("/v1/events"),
        Some(json!({"events": []})),
    )
    .await;
    assert_eq!(st, 422, "{v}");

    // Fold-in: a new customer buys a phone; the next recommendations change at once.
    let before = ids(&recommend(&c, &s, json!({"customer_id": "fold-1", "k": 10})).await);
    let (st, v) = common::call(
        &c,
        Method::POST,
        s.url("/v1/events"),
        Some(json!({"events": [
            {"customer_id": "fold-1", "type": "view", "item_id": "p0005", "ts": "2026-11-01T10:00:00+08:00"},
            {"customer_id": "fold-1", "type": "purchase", "item_id": "p0005", "ts": 1793500000}
        ]})),
    )
    .await;
    assert_eq!((st, &v["accepted"]), (200, &json!(2)), "{v}");
    let after = recommend(&c, &s, json!({"customer_id": "fold-1", "k": 10})).await;
    assert_eq!(after["strategy"], "few_events", "{after}");
    assert!(
        !ids(&after).contains(&"p0005".to_string()),
        "bought: {after}"
    );
    assert_ne!(before, ids(&after));
    let co = after["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["source"] == "cooccurrence")
        .unwrap_or_else(|| panic!("co-occurrence with the phone: {after}"));
    assert!(
        co["reason"].as_str().unwrap().contains("好物Pro智能手机"),
        "{co}"
    );
    let p = poll(
        &c,
        s.url("/v1/customers/fold-1/profile"),
        "fold-1's profile",
        |st, _| st == 200,
    )
    .await;
    assert_eq!(p["counts"], json!({"purchase": 1, "view": 1}), "{p}");
    assert_eq!(p["recent_purchases"][0]["item_id"], "p0005");
    assert!(
        p["interests"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["name"] == "phones"),
        "{p}"
    );

    // Exclusions: explicit, category, dismissed.
    let shown = ids(&after);
    let excluded = recommend(
        &c,
        &s,
        json!({"customer_id": "fold-1", "k": 10, "exclude": [shown[0]]}),
    )
    .await;
    assert!(!ids(&excluded).contains(&shown[0]));
    let (st, _) = common::call(
        &c,
        Method::POST,
        s.url("/v1/events"),
        Some(
            json!({"events": [{"customer_id": "fold-1", "type": "dismiss", "item_id": shown[1]}]}),
        ),
    )
    .await;
    assert_eq!(st, 200);
    let dismissed = recommend(&c, &s, json!({"customer_id": "fold-1", "k": 10})).await;
    assert!(
        !ids(&dismissed).contains(&shown[1]),
        "dismissed: {dismissed}"
    );
    let cases = recommend(
        &c,
        &s,
        json!({"customer_id": "fold-1", "k": 5, "category": "phone-cases", "explain": true}),
    )
    .await;
    for i in cases["items"].as_array().unwrap() {
        assert!(
            i["categories"]
                .as_array()
                .unwrap()
                .contains(&json!("phone-cases")),
            "{i}"
        );
        assert!(i["signals"]["cooccurrence"].is_number(), "{i}");
    }

    // A new item is recommended by its content before any customer touched it.
    let item = json!({"id": "n-thermos", "title": "儿童卡通保温杯 400ml", "title_en": "Kids' cartoon thermos 400 ml",
        "description": "带吸管，防漏，适合上学携带。", "categories": ["drinkware", "kids"], "price": 59.0});
    let (st, v) = common::call(&c, Method::POST, s.url("/v1/items"), Some(item.clone())).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["embedded"], true);
    let (st, _) = common::call(&c, Method::POST, s.url("/v1/items"), Some(item)).await;
    assert_eq!(st, 200, "a second POST replaces");
    let kid = recommend(&c, &s, json!({"context": "孩子上学用的保温杯有吗", "k": 3})).await;
    assert!(ids(&kid).contains(&"n-thermos".to_string()), "{kid}");
    // Made inactive, it is never recommended.
    let (st, _) = common::call(
        &c,
        Method::POST,
        s.url("/v1/items"),
        Some(json!({"id": "n-thermos", "title": "儿童卡通保温杯 400ml", "categories": ["drinkware"], "active": false})),
    )
    .await;
    assert_eq!(st, 200);
    let kid = recommend(
        &c,
        &s,
        json!({"context": "孩子上学用的保温杯有吗", "k": 20}),
    )
    .await;
    assert!(!ids(&kid).contains(&"n-thermos".to_string()), "{kid}");

    // Catalogue API errors.
    let (st, v) = common::call(
        &c,
        Method::POST,
        s.url("/v1/items"),
        Some(json!({"id": "x y", "title": "", "price": -3})),
    )
    .await;
    assert_eq!(st, 422);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("id:") && msg.contains("title:") && msg.contains("price:"),
        "{msg}"
    );
    let (st, _) = common::call(&c, Method::GET, s.url("/v1/items/nope"), None).await;
    assert_eq!(st, 404);
    let (st, _) = common::call(&c, Method::DELETE, s.url("/v1/items/n-thermos"), None).await;
    assert_eq!(st, 204);
    let (st, _) = common::call(&c, Method::DELETE, s.url("/v1/items/n-thermos"), None).await;
    assert_eq!(st, 404);
    let (st, v) = common::call(
        &c,
        Method::POST,
        s.url("/v1/recommend"),
        Some(json!({"customer_id": "c0092", "k": 0})),
    )
    .await;
    assert_eq!(st, 422, "{v}");

    // Bulk import: all problems with their lines, nothing written; then a valid file.
    let bad =
        "id,title,categories,price\nq1,雨伞,umbrellas,39\nq2,,umbrellas,39\nq3,雨衣,rain,abc\n";
    let r = c
        .post(s.url("/v1/items:import"))
        .header("content-type", "text/csv")
        .body(bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    let lines: Vec<i64> = v["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["line"].as_i64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4], "{v}");
    let (_, v) = common::call(&c, Method::GET, s.url("/v1/items/q1"), None).await;
    assert_eq!(v["error"]["code"], "not_found", "all or nothing");
    let r = c
        .post(s.url("/v1/items:import"))
        .header("content-type", "text/csv")
        .body(bad.replace("q2,,", "q2,折叠伞,").replace("abc", "49"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v, json!({"created": 3, "updated": 0}));

    // Questions asked through /v1/match and /v1/chat go into the profile (the first waits for
    // the KB index, which builds beside the recommender at start).
    common::matching(
        &c,
        &s,
        json!({"query": "怎么申请退款", "customer_id": "asker-1"}),
    )
    .await;
    let p = poll(
        &c,
        s.url("/v1/customers/asker-1/profile"),
        "the consult event from /v1/match",
        |st, _| st == 200,
    )
    .await;
    assert_eq!(p["counts"]["consult"], 1, "{p}");
    assert_eq!(p["recent_consultations"][0]["text"], "怎么申请退款");
    assert!(!p["topics"].as_array().unwrap().is_empty(), "{p}");
    let (st, v) = common::call(
        &c,
        Method::POST,
        s.url("/v1/chat"),
        Some(json!({"customer": {"id": "asker-1", "tier": "vip"}, "text": "保温杯可以装热水吗"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let p = poll(
        &c,
        s.url("/v1/customers/asker-1/profile"),
        "the consult event from /v1/chat",
        |_, v| v["counts"]["consult"] == 2,
    )
    .await;
    assert_eq!(p["tier"], "vip", "{p}");
    let asked = recommend(&c, &s, json!({"customer_id": "asker-1", "k": 5})).await;
    assert_eq!(asked["strategy"], "cold_start");
    assert!(
        asked["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["source"] == "consultations"
                && i["reason"].as_str().unwrap().contains("您咨询过")),
        "{asked}"
    );
    let (st, _) = common::call(
        &c,
        Method::POST,
        s.url("/v1/match"),
        Some(json!({"query": "退款", "customer_id": "not an id"})),
    )
    .await;
    assert_eq!(st, 422);
}

#[test]
fn a_trained_model_serves_and_a_broken_one_stops_startup() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("rec");
    common::run_ok(
        common::kefu()
            .args(["train", "recommend", "--interactions"])
            .arg(demo_path("interactions.csv"))
            .arg("--items")
            .arg(demo_path("items.jsonl"))
            .arg("--out")
            .arg(&out),
    );
    let card: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("recommend.json")).unwrap())
            .unwrap();
    assert_eq!(card["items"].as_array().unwrap().len(), 299);

    // Served as configured: its popularity ranks the items it knows.
    let s = common::Server::start(
        &common::model_dir(),
        &[("KEFU_RECOMMEND__MODEL", out.to_str().unwrap())],
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        s.ready().await;
        let c = reqwest::Client::new();
        for id in ["p0003", "p0219", "p0225"] {
            let (st, v) = common::call(
                &c,
                Method::POST,
                s.url("/v1/items"),
                Some(json!({"id": id, "title": format!("item {id}")})),
            )
            .await;
            assert_eq!(st, 201, "{v}");
        }
        let v = recommend(&c, &s, json!({"k": 3})).await;
        assert_eq!(
            v["model"]["source"],
            json!(out.display().to_string()),
            "{v}"
        );
        assert_eq!(ids(&v).len(), 3);
        assert_eq!(v["items"][0]["source"], "popularity", "{v}");
    });
    drop(s);

    std::fs::write(out.join("model.safetensors"), b"not weights").unwrap();
    let o = common::kefu()
        .args(["serve", "--port", "0", "--data-dir"])
        .arg(dir.path())
        .env("KEFU_RECOMMEND__MODEL", &out)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("recommend.model"), "{err}");
}
