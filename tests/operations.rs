//! A scripted day of traffic over HTTP against the real server (demo KB, demo intent models,
//! the example order system), on the service's manual clock: the stats must equal what the
//! script was served, knowledge gaps must cluster by meaning, and hand-offs must keep their
//! SLA clocks.

mod common;

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::{Value, json};

use common::{OrderSystem, Server, call};

struct Day<'a> {
    c: reqwest::Client,
    s: &'a Server,
    /// What the script saw: decision per decided turn, turns by kind, sessions with a
    /// hand-off, feedback given.
    decisions: BTreeMap<String, u64>,
    kinds: BTreeMap<String, u64>,
    sessions: BTreeMap<String, bool>,
    rated_sessions: std::collections::BTreeSet<String>,
    helpful: Vec<bool>,
    ratings: Vec<u64>,
    per_hour: BTreeMap<i64, u64>,
    hour: i64,
}

impl Day<'_> {
    async fn post(&self, path: &str, body: Value) -> Value {
        let (st, v) = call(&self.c, Method::POST, self.s.url(path), Some(body.clone())).await;
        assert!(st == 200 || st == 201, "{path} {body} → {st} {v}");
        v
    }

    async fn get(&self, path: &str) -> Value {
        let (st, v) = call(&self.c, Method::GET, self.s.url(path), None).await;
        assert_eq!(st, 200, "{path} → {v}");
        v
    }

    /// Sets the clock to `hour`:`minute` of the scripted day (2026-12-01, UTC).
    async fn at(&mut self, hour: i64, minute: i64) {
        self.hour = hour;
        let secs = 1_796_083_200 + hour * 3600 + minute * 60;
        self.post("/v1/admin/clock", json!({"set": secs.to_string()}))
            .await;
    }

    async fn chat(&mut self, session: Option<&str>, text: &str, channel: &str) -> Value {
        let mut body = json!({"text": text, "channel": channel});
        if let Some(s) = session {
            body["session_id"] = json!(s);
        }
        let v = self.post("/v1/chat", body).await;
        let action = v["action"].as_str().unwrap().to_string();
        let session = v["session_id"].as_str().unwrap().to_string();
        *self.sessions.entry(session).or_default() |= action == "handoff";
        *self.kinds.entry("chat".into()).or_default() += 1;
        *self.per_hour.entry(self.hour).or_default() += 1;
        if action != "with_agent" {
            *self.decisions.entry(action).or_default() += 1;
        }
        v
    }

    async fn matching(&mut self, q: &str) -> Value {
        let v = self
            .post("/v1/match", json!({"query": q, "channel": "app"}))
            .await;
        *self.kinds.entry("match".into()).or_default() += 1;
        *self.per_hour.entry(self.hour).or_default() += 1;
        *self
            .decisions
            .entry(v["decision"].as_str().unwrap().to_string())
            .or_default() += 1;
        v
    }

    async fn intent(&mut self, text: &str) -> Value {
        let v = self.post("/v1/intent", json!({"text": text})).await;
        *self.kinds.entry("intent".into()).or_default() += 1;
        *self.per_hour.entry(self.hour).or_default() += 1;
        v
    }

    async fn feedback(&mut self, reply: &Value, helpful: bool, rating: u64) {
        self.post(
            "/v1/feedback",
            json!({"turn_id": reply["turn_id"], "helpful": helpful, "rating": rating}),
        )
        .await;
        self.rated_sessions
            .insert(reply["session_id"].as_str().unwrap().to_string());
        self.helpful.push(helpful);
        self.ratings.push(rating);
    }

    /// A question that must end up among the knowledge gaps: answered badly (rated down),
    /// or not answered at all.
    async fn gap(&mut self, text: &str) {
        let v = self.chat(None, text, "web").await;
        if v["action"] == "answer" {
            self.feedback(&v, false, 1).await;
        }
    }
}

/// The data a report page embeds.
fn report_data(page: &str) -> Value {
    let start = page
        .find(r#"<script type="application/json" id="report-data">"#)
        .expect("the report embeds its data");
    let rest = &page[start..];
    let json = &rest[rest.find('>').unwrap() + 1..rest.find("</script>").unwrap()];
    serde_json::from_str(&json.replace("<\\/", "</")).unwrap()
}

fn close(a: &Value, b: f64) -> bool {
    a.as_f64().is_some_and(|x| (x - b).abs() < 1e-9)
}

#[tokio::test]
async fn a_scripted_day_gives_exact_stats_clusters_and_sla_breaches() {
    let model = common::model_dir();
    let orders = OrderSystem::start(&[]);
    let s = Server::start(
        &model,
        &[
            ("KEFU_INTENT__LOAD_DEMO", "true"),
            ("KEFU_DIALOG__SERVICES__ORDERS", &orders.base),
            ("KEFU_SERVER__MANUAL_CLOCK", "true"),
        ],
    );
    s.ready().await;
    let mut d = Day {
        c: reqwest::Client::new(),
        s: &s,
        decisions: BTreeMap::new(),
        kinds: BTreeMap::new(),
        sessions: BTreeMap::new(),
        rated_sessions: Default::default(),
        helpful: vec![],
        ratings: vec![],
        per_hour: BTreeMap::new(),
        hour: 0,
    };

    // 09:00 — answered questions, rated.
    d.at(9, 0).await;
    let v = d.chat(None, "怎么开发票", "web").await;
    assert_eq!(v["action"], "answer", "{v}");
    d.feedback(&v, true, 5).await;
    let v = d.chat(None, "退款多久能到账", "wechat").await;
    assert_eq!(v["action"], "answer", "{v}");
    d.feedback(&v, true, 4).await;
    d.matching("怎么修改收货地址").await;
    d.matching("How do I reset my password?").await;
    d.intent("我要退货").await;

    // 10:00 — a flow that finishes, and a person asked for and picked up in time.
    d.at(10, 0).await;
    let v = d.chat(Some("ops-flow"), "我的订单到哪了", "app").await;
    assert_eq!(v["action"], "ask_slot", "{v}");
    let v = d.chat(Some("ops-flow"), "KF2026112001", "app").await;
    assert_eq!(v["flow"]["status"], "done", "{v}");
    // The flow did its job: the reply asks for a rating, and the rating counts.
    assert_eq!(v["survey"]["after"], "flow_done", "{v}");
    assert_eq!(v["survey"]["max"], 5, "{v}");
    d.feedback(&v, true, 4).await;
    let v = d.chat(Some("ops-person"), "转人工", "web").await;
    assert_eq!(v["action"], "handoff", "{v}");
    let picked = v["handoff"]["id"].as_str().unwrap().to_string();
    // Picked up at once (the clock runs on from 10:00 in real time).
    let t = d
        .post(
            &format!("/v1/handoffs/{picked}/accept"),
            json!({"agent": "li"}),
        )
        .await;
    assert_eq!(t["state"], "accepted", "{t}");
    assert_eq!(t["pickup_breached"], false, "{t}");
    let (st, again) = call(
        &d.c,
        Method::POST,
        s.url(&format!("/v1/handoffs/{picked}/accept")),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, 409, "{again}");
    let t = d
        .post(
            &format!("/v1/handoffs/{picked}/resolve"),
            json!({"resolution": "解释了退款规则"}),
        )
        .await;
    assert_eq!(t["state"], "resolved", "{t}");
    // Resolving gives the conversation back to the bot.
    let v = d.chat(Some("ops-person"), "好的谢谢", "web").await;
    assert_ne!(v["action"], "with_agent", "{v}");
    assert_eq!(v["survey"]["after"], "released", "{v}");
    d.feedback(&v, false, 2).await;

    // 11:00 — a complaint nobody picks up.
    d.at(11, 0).await;
    let v = d
        .chat(None, "我要投诉，快递员把我的东西摔坏了，态度还很差", "web")
        .await;
    assert_eq!(v["action"], "handoff", "{v}");
    assert_eq!(v["handoff"]["route"]["target"], "complaints", "{v}");
    let complaint = v["handoff"]["id"].as_str().unwrap().to_string();

    // 14:00 — questions the KB cannot answer: two new questions, several wordings each.
    d.at(14, 0).await;
    for q in [
        "可以用数字人民币付款吗",
        "你们支持数字人民币支付吗",
        "数字人民币能用来付钱吗",
        "支持用数字人民币买东西吗",
    ] {
        d.gap(q).await;
    }
    for q in [
        "Do you ship to Antarctica?",
        "Can you deliver to Antarctica?",
        "Is shipping to Antarctica possible?",
    ] {
        d.gap(q).await;
    }

    // The day is over.
    d.at(23, 59).await;
    let stats = d
        .get("/v1/stats?from=2026-12-01&to=2026-12-02&bucket=hour")
        .await;
    let t = &stats["totals"];
    let volume: u64 = d.kinds.values().sum();
    assert_eq!(t["volume"], volume, "{stats}");
    for (k, n) in &d.kinds {
        assert_eq!(t["by_kind"][k], *n, "{k}: {stats}");
    }
    let decided: u64 = d.decisions.values().sum();
    assert_eq!(t["decided"], decided, "{t}");
    let rate = |names: &[&str]| {
        names
            .iter()
            .map(|n| d.decisions.get(*n).copied().unwrap_or(0))
            .sum::<u64>() as f64
            / decided as f64
    };
    assert!(
        close(&t["answer_rate"], rate(&["answer"])),
        "{t} {:?}",
        d.decisions
    );
    assert!(close(&t["clarify_rate"], rate(&["clarify"])), "{t}");
    assert!(close(&t["no_answer_rate"], rate(&["no_answer"])), "{t}");
    assert!(close(&t["handoff_rate"], rate(&["handoff"])), "{t}");
    assert!(
        close(
            &t["flow_rate"],
            rate(&["ask_slot", "confirm", "flow_result"])
        ),
        "{t}"
    );
    let conversations = d.sessions.len() as f64;
    assert_eq!(t["conversations"], d.sessions.len(), "{t}");
    let contained = d.sessions.values().filter(|h| !**h).count() as f64;
    assert!(close(&t["containment"], contained / conversations), "{t}");
    assert_eq!(t["flows_finished"], 1, "{t}");
    assert!(close(&t["flow_success_rate"], 1.0), "{t}");
    let fb = &t["satisfaction"];
    assert_eq!(fb["feedback"], d.helpful.len(), "{t}");
    let helpful = d.helpful.iter().filter(|h| **h).count() as f64;
    assert!(
        close(&fb["helpful_share"], helpful / d.helpful.len() as f64),
        "{t}"
    );
    let mean = d.ratings.iter().sum::<u64>() as f64 / d.ratings.len() as f64;
    assert!(close(&fb["mean_rating"], mean), "{t}");
    let csat = d.ratings.iter().filter(|r| **r >= 4).count() as f64 / d.ratings.len() as f64;
    assert!(close(&fb["csat"], csat), "{t}");
    assert!(
        close(
            &t["feedback_collection_rate"],
            d.rated_sessions.len() as f64 / conversations
        ),
        "{t}"
    );
    let (p50, p95) = (
        t["latency"]["p50_ms"].as_f64().unwrap(),
        t["latency"]["p95_ms"].as_f64().unwrap(),
    );
    assert!(p50 > 0.0 && p50 <= p95, "{t}");
    // Hour by hour.
    let series = stats["series"].as_array().unwrap();
    assert_eq!(series.len(), 24);
    for (h, point) in series.iter().enumerate() {
        let want = d.per_hour.get(&(h as i64)).copied().unwrap_or(0);
        assert_eq!(point["volume"], want, "hour {h}: {point}");
    }
    // A channel alone.
    let app = d
        .get("/v1/stats?from=2026-12-01&to=2026-12-02&channel=app")
        .await;
    assert_eq!(app["totals"]["volume"], 4, "{app}");

    // SLAs: the complaint left waiting is breached; the hand-off picked up at once is not.
    let sla = &stats["sla"];
    assert_eq!(sla["handoffs"], 2, "{sla}");
    assert_eq!(sla["complaints"], 1, "{sla}");
    assert_eq!(sla["breached"], 1, "{sla}");
    assert!(close(&sla["pickup_attainment"], 0.5), "{sla}");
    let breached = d.get("/v1/handoffs?breached=true").await;
    let ids: Vec<&str> = breached["handoffs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [complaint.as_str()], "{breached}");
    let waiting = d.get("/v1/handoffs?state=waiting").await;
    assert_eq!(waiting["handoffs"][0]["pickup_breached"], true, "{waiting}");
    assert!(waiting["handoffs"][0]["due_in_ms"].as_i64().unwrap() < 0);
    let (st, _) = call(&d.c, Method::GET, s.url("/v1/handoffs/nope-h1"), None).await;
    assert_eq!(st, 404);

    // The default rules see the breach: one alert, about the complaint.
    let fired = d.post("/v1/alerts:evaluate", json!(null)).await;
    let sla_alerts: Vec<&Value> = fired["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["rule"] == "sla-breach")
        .collect();
    assert_eq!(sla_alerts.len(), 1, "{fired}");
    assert_eq!(sla_alerts[0]["key"], complaint.as_str(), "{fired}");
    assert_eq!(sla_alerts[0]["state"], "firing", "{fired}");

    // Knowledge gaps: the wordings of each new question together, apart from the other.
    let gaps = d
        .get("/v1/stats/unanswered?from=2026-12-01&to=2026-12-02")
        .await;
    let clusters = gaps["clusters"].as_array().unwrap();
    let of = |needle: &str| {
        clusters
            .iter()
            .find(|c| {
                c["examples"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|e| e.as_str().unwrap().contains(needle))
            })
            .unwrap_or_else(|| panic!("no cluster with {needle}: {gaps}"))
    };
    let (rmb, ice) = (of("数字人民币"), of("Antarctica"));
    assert_ne!(rmb["id"], ice["id"], "{gaps}");
    assert_eq!(rmb["count"], 4, "{gaps}");
    assert_eq!(ice["count"], 3, "{gaps}");
    assert!(rmb["nearest"]["faq_id"].is_string(), "{gaps}");

    // One call makes a cluster a draft entry: disabled, so it answers nothing yet.
    let id = rmb["id"].as_str().unwrap();
    let e = d
        .post(
            &format!("/v1/stats/unanswered/{id}/draft?from=2026-12-01&to=2026-12-02"),
            json!(null),
        )
        .await;
    assert_eq!(e["id"], format!("draft-{id}"), "{e}");
    assert_eq!(e["enabled"], false, "{e}");
    assert_eq!(e["similar"].as_array().unwrap().len(), 3, "{e}");
    let (st, _) = call(
        &d.c,
        Method::POST,
        s.url(&format!(
            "/v1/stats/unanswered/{id}/draft?from=2026-12-01&to=2026-12-02"
        )),
        None,
    )
    .await;
    assert_eq!(st, 409);

    // Top questions and weak spots read the same records.
    let top = d
        .get("/v1/stats/top-questions?from=2026-12-01&to=2026-12-02&limit=50")
        .await;
    assert_eq!(top["turns"], decided, "{top}");
    let weak = d
        .get("/v1/stats/weak-spots?from=2026-12-01&to=2026-12-02&min_count=1")
        .await;
    assert!(weak["entries"].is_array(), "{weak}");

    // A conversation's recorded turns, masked.
    let conv = d.get("/v1/conversations/ops-flow").await;
    assert_eq!(conv["turns"].as_array().unwrap().len(), 2, "{conv}");
    assert_eq!(conv["turns"][1]["flow_status"], "done", "{conv}");

    // The report's numbers are the API's: in the page and in the data it embeds, from the
    // API and from the command line.
    let (st, page) = {
        let r =
            d.c.get(s.url("/v1/reports/weekly?from=2026-12-01&to=2026-12-02&lang=en"))
                .send()
                .await
                .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    };
    assert_eq!(st, 200, "{page}");
    let data = report_data(&page);
    assert_eq!(data["stats"]["totals"], stats["totals"]);
    assert_eq!(data["stats"]["sla"], stats["sla"]);
    assert!(
        page.contains(&format!(
            r#"<tr data-metric="volume"><td>Volume</td><td class="n">{volume}</td>"#
        )),
        "{page}"
    );
    assert!(page.contains("<svg"), "charts are drawn");
    assert!(page.contains("Antarctica"), "the gaps are listed");
    let out = s.data_dir.path().join("report.html");
    common::run_ok(
        common::kefu()
            .args([
                "report",
                "--from",
                "2026-12-01",
                "--to",
                "2026-12-02",
                "--lang",
                "zh",
            ])
            .arg("--out")
            .arg(&out)
            .arg("--data-dir")
            .arg(s.data_dir.path())
            .env("KEFU_MODEL__PATH", &model),
    );
    let cli = std::fs::read_to_string(&out).unwrap();
    assert!(cli.contains("客服运营报告"));
    let cli = report_data(&cli);
    assert_eq!(cli["stats"]["totals"], stats["totals"]);
    assert_eq!(
        cli["unanswered"]["clusters"].as_array().unwrap().len(),
        clusters.len()
    );
    // `kefu kb suggest` prints the same clusters.
    let printed = common::run_ok(
        common::kefu()
            .args([
                "kb",
                "suggest",
                "--json",
                "--from",
                "2026-12-01",
                "--to",
                "2026-12-02",
            ])
            .arg("--data-dir")
            .arg(s.data_dir.path())
            .env("KEFU_MODEL__PATH", &model),
    );
    let printed: Value = serde_json::from_str(&printed).unwrap();
    let ids = |v: &Value| -> Vec<String> {
        v["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(&printed), ids(&gaps));

    // An annotation labels a turn for retraining; it is listed with the feedback and leaves
    // satisfaction alone.
    let turns = d.get("/v1/conversations/ops-person").await;
    let first = turns["turns"][0]["turn_id"].as_str().unwrap().to_string();
    let a = d
        .post(
            "/v1/annotations",
            json!({"turn_id": first, "faq_id": "zh-refunds-001", "should_handoff": false, "annotator": "li"}),
        )
        .await;
    assert_eq!(a["source"], "annotation", "{a}");
    assert_eq!(a["question"], "转人工", "{a}");
    let listed = d.get("/v1/feedback?session_id=ops-person").await;
    assert!(
        listed["feedback"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["source"] == "annotation" && f["faq_id"] == "zh-refunds-001"),
        "{listed}"
    );
    let after = d
        .get("/v1/stats?from=2026-12-01&to=2026-12-02&bucket=hour")
        .await;
    assert_eq!(
        after["totals"]["satisfaction"],
        stats["totals"]["satisfaction"]
    );
    for (body, want) in [
        (json!({"turn_id": first}), 422),
        (
            json!({"turn_id": "nope-1", "faq_id": "zh-refunds-001"}),
            404,
        ),
        (json!({"turn_id": first, "faq_id": "no-such-entry"}), 404),
        (json!({"turn_id": first, "intent": "no_such_intent"}), 422),
    ] {
        let (st, v) = call(
            &d.c,
            Method::POST,
            s.url("/v1/annotations"),
            Some(body.clone()),
        )
        .await;
        assert_eq!(st, want, "{body} → {v}");
    }

    // Bad windows are refused.
    for q in [
        "from=2026-12-02&to=2026-12-01",
        "from=yesterday",
        "bucket=week",
        "from=2000-01-01&to=2026-01-01&bucket=minute",
    ] {
        let (st, v) = call(&d.c, Method::GET, s.url(&format!("/v1/stats?{q}")), None).await;
        assert!(st == 422 || st == 400, "{q} → {st} {v}");
    }
}

#[tokio::test]
async fn the_clock_moves_only_when_configured() {
    let model = common::model_dir();
    let s = Server::start(&model, &[]);
    let c = reqwest::Client::new();
    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/admin/clock"),
        Some(json!({"advance_secs": 60})),
    )
    .await;
    assert_eq!(st, 409, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("manual_clock")
    );
    let out = common::kefu()
        .args(["serve", "--host", "0.0.0.0", "--port", "0"])
        .env("KEFU_SERVER__MANUAL_CLOCK", "true")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("server.manual_clock"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scripted stream of turns on the manual clock: the answer-rate rule fires, stays firing
/// without a second message inside the cool-down, resolves, fires again silently inside the
/// cool-down, and is sent again once the cool-down has passed.
#[tokio::test]
async fn alerts_fire_resolve_and_are_sent_once_per_cooldown() {
    let model = common::model_dir();
    let desk = OrderSystem::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kefu.toml");
    std::fs::write(
        &config,
        r#"
[alerts]
cooldown_secs = 600
[[alerts.rules]]
name = "answer-rate"
kind = "answer_rate"
threshold = 0.5
window_minutes = 10
min_turns = 4
[[alerts.rules]]
name = "queue"
kind = "handoff_queue"
threshold = 0
"#,
    )
    .unwrap();
    let webhook = format!("{}/desk/handoffs", desk.base);
    let s = Server::start(
        &model,
        &[
            ("KEFU_CONFIG", config.to_str().unwrap()),
            ("KEFU_SERVER__MANUAL_CLOCK", "true"),
            ("KEFU_ALERTS__WEBHOOK_URL", &webhook),
        ],
    );
    let c = reqwest::Client::new();
    let at = |minute: i64| {
        let c = c.clone();
        let url = s.url("/v1/admin/clock");
        async move {
            let secs = 1_796_115_600 + minute * 60; // 2026-12-01T09:00Z
            let (st, v) = call(
                &c,
                Method::POST,
                url,
                Some(json!({"set": secs.to_string()})),
            )
            .await;
            assert_eq!(st, 200, "{v}");
        }
    };
    let unanswerable = |n: usize| {
        let c = c.clone();
        let s = &s;
        async move {
            let texts = [
                "今天天气怎么样",
                "给我讲个笑话",
                "What is the capital of France?",
                "帮我写一首诗",
            ];
            for t in texts.iter().take(n) {
                let v = common::matching(&c, s, json!({"query": t})).await;
                assert_eq!(v["decision"], "no_answer", "{t}: {v}");
            }
        }
    };
    let evaluate = || {
        let c = c.clone();
        let url = s.url("/v1/alerts:evaluate");
        async move {
            let (st, v) = call(&c, Method::POST, url, None).await;
            assert_eq!(st, 200, "{v}");
            v["alerts"].as_array().unwrap().clone()
        }
    };
    let sent = || {
        let c = c.clone();
        let url = format!("{}/desk/handoffs", desk.base);
        async move {
            // Delivery runs in the background: wait for it to settle.
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            let (_, v) = call(&c, Method::GET, url, None).await;
            v["handoffs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| {
                    let a = &h["body"]["alert"];
                    format!(
                        "{} {}",
                        a["rule"].as_str().unwrap(),
                        a["state"].as_str().unwrap()
                    )
                })
                .collect::<Vec<_>>()
        }
    };

    at(0).await;
    unanswerable(4).await;
    let changed = evaluate().await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["rule"], "answer-rate");
    assert_eq!(changed[0]["value"], 0.0);
    assert_eq!(sent().await, ["answer-rate firing"]);

    // Still firing five minutes later: nothing new, nothing sent.
    at(5).await;
    assert!(evaluate().await.is_empty());
    assert_eq!(sent().await, ["answer-rate firing"]);

    // The window empties: resolved (and said so).
    at(20).await;
    let changed = evaluate().await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["state"], "resolved");
    assert_eq!(sent().await, ["answer-rate firing", "answer-rate resolved"]);

    // Fires again a minute later: a new alert, but inside the cool-down, so not sent.
    at(21).await;
    unanswerable(4).await;
    let changed = evaluate().await;
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0]["state"], "firing");
    assert_eq!(sent().await.len(), 2);

    // Past the cool-down and still firing: sent once more.
    at(29).await;
    unanswerable(4).await;
    at(31).await;
    assert!(evaluate().await.is_empty());
    assert_eq!(
        sent().await,
        [
            "answer-rate firing",
            "answer-rate resolved",
            "answer-rate firing"
        ]
    );
    let (_, listed) = call(&c, Method::GET, s.url("/v1/alerts?state=firing"), None).await;
    assert_eq!(listed["alerts"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["alerts"][0]["notifications"], 1, "{listed}");
    let (_, all) = call(&c, Method::GET, s.url("/v1/alerts"), None).await;
    assert_eq!(all["alerts"].as_array().unwrap().len(), 2, "{all}");
    let (st, _) = call(&c, Method::GET, s.url("/v1/alerts?state=sideways"), None).await;
    assert_eq!(st, 422);
}

/// Scripted recommendations and purchases: each purchase or click of a shown item within the
/// conversion window counts once, for the strategy, source, channel and arm that showed it;
/// the experiment's arms are stable by customer.
#[tokio::test]
async fn recommendations_convert_and_the_control_measures_the_lift() {
    let model = common::model_dir();
    let s = Server::start(
        &model,
        &[
            ("KEFU_RECOMMEND__LOAD_DEMO", "true"),
            ("KEFU_SERVER__MANUAL_CLOCK", "true"),
            ("KEFU_RECOMMEND__EXPERIMENT__CONTROL_SHARE", "0.5"),
            ("KEFU_RECOMMEND__CONVERSION_WINDOW_SECS", "86400"),
        ],
    );
    s.ready().await;
    let c = reqwest::Client::new();
    let set = |secs: i64| {
        let (c, url) = (c.clone(), s.url("/v1/admin/clock"));
        async move {
            let (st, v) = call(
                &c,
                Method::POST,
                url,
                Some(json!({"set": secs.to_string()})),
            )
            .await;
            assert_eq!(st, 200, "{v}");
        }
    };
    let ten = 1_796_119_200; // 2026-12-01T10:00Z
    set(ten).await;
    let mut shown: Vec<(String, String, Vec<String>)> = Vec::new();
    for i in 1..=12 {
        let customer = format!("exp-{i}");
        let channel = if i % 3 == 0 { "app" } else { "web" };
        let (st, v) = call(
            &c,
            Method::POST,
            s.url("/v1/recommend"),
            Some(json!({"customer_id": customer, "k": 3, "channel": channel})),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        let arm = v["arm"]
            .as_str()
            .expect("an arm while the experiment runs")
            .to_string();
        let items: Vec<String> = v["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|it| it["item_id"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(items.len(), 3, "{v}");
        shown.push((customer, arm, items));
    }
    // The arm is the customer's, every time.
    let (_, again) = call(
        &c,
        Method::POST,
        s.url("/v1/recommend"),
        Some(json!({"customer_id": "exp-1", "k": 3, "channel": "web"})),
    )
    .await;
    assert_eq!(again["arm"], shown[0].1.as_str());
    let arms: std::collections::BTreeSet<&str> = shown.iter().map(|x| x.1.as_str()).collect();
    assert_eq!(
        arms.len(),
        2,
        "twelve customers fall on both sides: {shown:?}"
    );

    // Two days later, the events arrive (their own times).
    set(ten + 2 * 86_400).await;
    let mut events = vec![];
    let mut want: BTreeMap<&str, (u64, u64, u64)> = BTreeMap::new(); // arm → (impressions, clicked, purchased)
    for (i, (customer, arm, items)) in shown.iter().enumerate() {
        let e = want.entry(arm.as_str()).or_default();
        e.0 += 3;
        match i {
            // Bought the first item an hour later: a conversion.
            0..=5 => {
                events.push(json!({"customer_id": customer, "type": "purchase", "item_id": items[0], "ts": ten + 3600}));
                e.2 += 1;
            }
            // Clicked the second.
            6 => {
                events.push(json!({"customer_id": customer, "type": "click", "item_id": items[1], "ts": ten + 60}));
                e.1 += 1;
            }
            // Bought it, but after the window.
            7 => events.push(json!({"customer_id": customer, "type": "purchase", "item_id": items[0], "ts": ten + 86_400 + 60})),
            _ => {}
        }
    }
    // exp-1's second request is one more treatment or control impression set.
    want.get_mut(shown[0].1.as_str()).unwrap().0 += 3;
    let (st, v) = call(
        &c,
        Method::POST,
        s.url("/v1/events"),
        Some(json!({"events": events})),
    )
    .await;
    assert_eq!(st, 200, "{v}");

    let (st, r) = call(
        &c,
        Method::GET,
        s.url("/v1/stats/recommendations?from=2026-12-01&to=2026-12-02"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["total"]["impressions"], 39, "{r}");
    assert_eq!(r["total"]["purchased"], 6, "{r}");
    assert_eq!(r["total"]["clicked"], 1, "{r}");
    assert_eq!(r["customers"], 12, "{r}");
    let x = &r["experiment"];
    for arm in ["treatment", "control"] {
        let (n, clicked, bought) = want.get(arm).copied().unwrap_or_default();
        assert_eq!(x[arm]["impressions"], n, "{arm}: {r}");
        assert_eq!(x[arm]["clicked"], clicked, "{arm}: {r}");
        assert_eq!(x[arm]["purchased"], bought, "{arm}: {r}");
    }
    let rate = |arm: &str| {
        let (n, _, b) = want[arm];
        b as f64 / n as f64
    };
    assert!(
        close(&x["difference"], rate("treatment") - rate("control")),
        "{r}"
    );
    let by_channel: u64 = r["by_channel"]
        .as_object()
        .unwrap()
        .values()
        .map(|f| f["impressions"].as_u64().unwrap())
        .sum();
    assert_eq!(by_channel, 39);
    assert_eq!(r["by_channel"]["app"]["impressions"], 12, "{r}");

    // Erasing a customer erases what was shown to them.
    let (st, erased) = call(&c, Method::DELETE, s.url("/v1/customers/exp-1"), None).await;
    assert_eq!(st, 200, "{erased}");
    assert_eq!(erased["turns"], 6, "{erased}");
    let (_, r) = call(
        &c,
        Method::GET,
        s.url("/v1/stats/recommendations?from=2026-12-01&to=2026-12-02"),
        None,
    )
    .await;
    assert_eq!(r["total"]["impressions"], 33, "{r}");
    assert_eq!(r["customers"], 11, "{r}");
}

/// A conversation that went quiet has ended: when the customer comes back after
/// `dialog.survey.idle_secs`, the reply offers the rating it did not get, once.
#[tokio::test]
async fn a_conversation_gone_quiet_is_rated_when_the_customer_comes_back() {
    let model = common::model_dir();
    let s = Server::start(&model, &[("KEFU_SERVER__MANUAL_CLOCK", "true")]);
    s.ready().await;
    let c = reqwest::Client::new();
    let turn = |text: &'static str| {
        let (c, url) = (c.clone(), s.url("/v1/chat"));
        async move {
            let (st, v) = call(
                &c,
                Method::POST,
                url,
                Some(json!({"session_id": "quiet-1", "text": text})),
            )
            .await;
            assert_eq!(st, 200, "{v}");
            v
        }
    };
    let advance = |secs: u64| {
        let (c, url) = (c.clone(), s.url("/v1/admin/clock"));
        async move {
            let (st, v) = call(&c, Method::POST, url, Some(json!({"advance_secs": secs}))).await;
            assert_eq!(st, 200, "{v}");
        }
    };
    let v = turn("怎么开发票").await;
    assert_eq!(v["action"], "answer", "{v}");
    assert!(v["survey"].is_null(), "{v}");
    // A pause shorter than idle_secs (600 by default) does not end the conversation.
    advance(300).await;
    let v = turn("退款多久能到账").await;
    assert!(v["survey"].is_null(), "{v}");
    advance(601).await;
    let v = turn("运费谁出").await;
    assert_eq!(v["survey"]["after"], "idle", "{v}");
    assert_eq!(v["survey"]["max"], 5, "{v}");
    // Offered once.
    advance(700).await;
    let v = turn("怎么开发票").await;
    assert!(v["survey"].is_null(), "{v}");
}
