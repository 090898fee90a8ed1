//! The channels end to end, over real HTTP, against the real model and the demo flows:
//! WeChat (URL check, safe-mode subscribe, a question answered in the passive reply, a flow
//! whose slow call is answered through the customer-service API after the fallback, a repeated
//! `MsgId` ignored, a forged signature refused with nothing recorded), SMS (a two-part reply,
//! STOP and START, a forged signature) and one conversation begun on SMS and continued on
//! WeChat after linking. The WeChat API and the SMS provider are local stand-ins that record
//! what kefu sends them.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::{Query, State};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use kefu::channels::wechat::{Crypto, signature};
use serde_json::{Value, json};

const TOKEN: &str = "kefutoken";
const APP_ID: &str = "wx2c2769f8efd9abc2";
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const SMS_SECRET: &str = "sms-signing-secret";

/// What the stand-ins received.
#[derive(Default)]
struct Received {
    tokens: usize,
    wechat: Vec<Value>,
    sms: Vec<Value>,
}

type Shared = Arc<Mutex<Received>>;

async fn standins() -> (String, Shared) {
    let shared: Shared = Default::default();
    async fn token(State(s): State<Shared>, Query(q): Query<Vec<(String, String)>>) -> Json<Value> {
        let ok = q.iter().any(|(k, v)| k == "appid" && v == APP_ID)
            && q.iter().any(|(k, v)| k == "secret" && v == "app-secret");
        if !ok {
            return Json(json!({"errcode": 40013, "errmsg": "invalid appid"}));
        }
        s.lock().unwrap().tokens += 1;
        Json(json!({"access_token": "TOKEN-1", "expires_in": 7200}))
    }
    async fn custom(
        State(s): State<Shared>,
        Query(q): Query<Vec<(String, String)>>,
        Json(body): Json<Value>,
    ) -> Json<Value> {
        if !q.iter().any(|(k, v)| k == "access_token" && v == "TOKEN-1") {
            return Json(json!({"errcode": 40001, "errmsg": "invalid credential"}));
        }
        s.lock().unwrap().wechat.push(body);
        Json(json!({"errcode": 0, "errmsg": "ok"}))
    }
    async fn sms(State(s): State<Shared>, Json(body): Json<Value>) -> Json<Value> {
        s.lock().unwrap().sms.push(body);
        Json(json!({"status": "queued"}))
    }
    let app = axum::Router::new()
        .route("/cgi-bin/token", get(token))
        .route("/cgi-bin/message/custom/send", post(custom))
        .route("/sms/send", post(sms))
        .with_state(shared.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, shared)
}

fn now() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .to_string()
}

struct Wechat<'a> {
    c: reqwest::Client,
    s: &'a common::Server,
    crypto: Crypto,
    msg_id: u64,
}

impl Wechat<'_> {
    fn text_xml(&mut self, openid: &str, text: &str) -> (String, u64) {
        self.msg_id += 1;
        let xml = format!(
            "<xml><ToUserName><![CDATA[gh_shop]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{text}]]></Content><MsgId>{}</MsgId></xml>",
            now(),
            self.msg_id
        );
        (xml, self.msg_id)
    }

    /// Posts `xml` in plain mode, signed with `token`; the status and body.
    async fn post_plain(&self, xml: &str, token: &str) -> (u16, String) {
        let (ts, nonce) = (now(), "n0nce1".to_string());
        let sig = signature(&[token, &ts, &nonce]);
        let r = self
            .c
            .post(self.s.url(&format!(
                "/channels/wechat/shop?signature={sig}&timestamp={ts}&nonce={nonce}&openid=x"
            )))
            .header("content-type", "text/xml")
            .body(xml.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    /// Posts `xml` in safe mode; the status and the decrypted reply (or the raw body).
    async fn post_safe(&self, xml: &str) -> (u16, String) {
        let (ts, nonce) = (now(), "n0nce2".to_string());
        let enc = self.crypto.encrypt(xml, b"0123456789abcdef");
        let sig = signature(&[TOKEN, &ts, &nonce]);
        let msg_sig = signature(&[TOKEN, &ts, &nonce, &enc]);
        let body = format!(
            "<xml><ToUserName><![CDATA[gh_shop]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"
        );
        let r = self
            .c
            .post(self.s.url(&format!(
                "/channels/wechat/shop?signature={sig}&timestamp={ts}&nonce={nonce}&openid=x&encrypt_type=aes&msg_signature={msg_sig}"
            )))
            .body(body)
            .send()
            .await
            .unwrap();
        let st = r.status().as_u16();
        let text = r.text().await.unwrap();
        if st != 200 || text == "success" {
            return (st, text);
        }
        let enc = between(&text, "<Encrypt><![CDATA[", "]]></Encrypt>");
        let ts = between(&text, "<TimeStamp>", "</TimeStamp>");
        let ts = ts.trim_start_matches("<![CDATA[").trim_end_matches("]]>");
        let sig = between(&text, "<MsgSignature><![CDATA[", "]]></MsgSignature>");
        assert_eq!(
            sig,
            signature(&[TOKEN, ts, &nonce, &enc]),
            "the encrypted reply is signed"
        );
        (st, self.crypto.decrypt(&enc).unwrap())
    }
}

fn between(s: &str, a: &str, b: &str) -> String {
    let i = s.find(a).unwrap_or_else(|| panic!("no {a} in {s}")) + a.len();
    let j = s[i..].find(b).unwrap_or_else(|| panic!("no {b} in {s}")) + i;
    s[i..j].to_string()
}

fn content(xml: &str) -> String {
    between(xml, "<Content><![CDATA[", "]]></Content>")
}

/// A counter of `/metrics`, summed over the lines that contain every one of `labels`.
async fn metric(c: &reqwest::Client, s: &common::Server, name: &str, labels: &[&str]) -> f64 {
    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn sms(
    c: &reqwest::Client,
    s: &common::Server,
    from: &str,
    text: &str,
    secret: &str,
) -> (u16, Value) {
    let body =
        serde_urlencoded::to_string([("From", from), ("To", "+10000"), ("Body", text)]).unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let r = c
        .post(s.url("/channels/sms"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-signature", sig)
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Waits until `got` holds at least `n` entries; returns them.
async fn wait_for(shared: &Shared, which: fn(&Received) -> &Vec<Value>, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = which(&shared.lock().unwrap()).clone();
        if v.len() >= n {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "expected {n} messages, got {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn wechat_sms_and_one_conversation_across_channels() {
    let model = common::model_dir();
    let (standin, got) = standins().await;
    // The order system answers after 2 s: past the WeChat account's 800 ms passive window.
    let orders = common::OrderSystem::start(&["--delay-ms", "2000"]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("kefu.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[[channels.wechat]]
account = "shop"
token = "{TOKEN}"
app_id = "{APP_ID}"
app_secret = "app-secret"
encoding_aes_key = "{AES_KEY}"
api_base = "{standin}"
reply_within_ms = 800

[channels.sms]
enabled = true
secret = "{SMS_SECRET}"
from = "+10000"

[channels.sms.send]
method = "POST"
url = "{standin}/sms/send"
body = {{ to = "{{{{ to }}}}", text = "{{{{ text }}}}", part = "{{{{ part }}}}/{{{{ parts }}}}" }}
"#
        ),
    )
    .unwrap();
    let s = common::Server::start(
        &model,
        &[
            ("KEFU_CONFIG", config.to_str().unwrap()),
            ("KEFU_INTENT__LOAD_DEMO", "true"),
            ("KEFU_DIALOG__SERVICES__ORDERS", &orders.base),
        ],
    );
    s.ready().await;
    let c = reqwest::Client::new();
    let mut wx = Wechat {
        c: c.clone(),
        s: &s,
        crypto: Crypto::new(AES_KEY, APP_ID).unwrap(),
        msg_id: 6_054_768_590_064_713_000,
    };

    // The URL check echoes echostr when signed with the token, and refuses otherwise.
    let ts = now();
    let sig = signature(&[TOKEN, &ts, "abc"]);
    let r = c
        .get(s.url(&format!(
            "/channels/wechat/shop?signature={sig}&timestamp={ts}&nonce=abc&echostr=hello123"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "hello123");
    let r = c
        .get(s.url(&format!(
            "/channels/wechat/shop?signature={sig}&timestamp={ts}&nonce=abd&echostr=hello123"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .get(s.url("/channels/wechat/other?signature=x&timestamp=1&nonce=1&echostr=1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Safe mode: a follower is welcomed, in an encrypted and signed reply.
    let subscribe = format!(
        "<xml><ToUserName><![CDATA[gh_shop]]></ToUserName><FromUserName><![CDATA[o-follower]]></FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe]]></Event></xml>",
        now()
    );
    let (st, xml) = wx.post_safe(&subscribe).await;
    assert_eq!(st, 200, "{xml}");
    assert!(content(&xml).contains("欢迎关注"), "{xml}");
    assert!(xml.contains("<ToUserName><![CDATA[o-follower]]>"), "{xml}");

    // A question answered in the passive reply (safe mode), then the same MsgId again.
    let (q, _) = wx.text_xml("o-follower", "退款多久能到账");
    let (st, xml) = wx.post_safe(&q).await;
    assert_eq!(st, 200, "{xml}");
    let answer = content(&xml);
    assert!(answer.contains("工作日"), "{answer}");
    let turns = metric(&c, &s, "kefu_chat_turns_total", &[]).await;
    let (st, body) = wx.post_safe(&q).await;
    assert_eq!(
        (st, body.as_str()),
        (200, "success"),
        "a retry is not run again"
    );
    assert_eq!(metric(&c, &s, "kefu_chat_turns_total", &[]).await, turns);
    assert_eq!(
        metric(
            &c,
            &s,
            "kefu_channel_messages_total",
            &["wechat", "duplicate"]
        )
        .await,
        1.0
    );

    // A forged signature (another token) is refused and nothing is recorded.
    let (forged, _) = wx.text_xml("o-forger", "我要投诉");
    let (st, body) = wx.post_plain(&forged, "not-the-token").await;
    assert_eq!(st, 403, "{body}");
    assert_eq!(metric(&c, &s, "kefu_chat_turns_total", &[]).await, turns);
    // A malformed body is a 400 that names the problem.
    let (st, body) = wx.post_plain("<xml><Content>unclosed", TOKEN).await;
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("XML"), "{body}");

    // Plain mode: a flow asks for the order number in the passive reply; the order system is
    // slower than the passive window, so kefu answers `success` and the result arrives
    // through the customer-service API.
    let (q, _) = wx.text_xml("o-plain", "我的订单到哪了");
    let (st, xml) = wx.post_plain(&q, TOKEN).await;
    assert_eq!(st, 200, "{xml}");
    assert!(content(&xml).contains("订单号"), "{xml}");
    let (q, _) = wx.text_xml("o-plain", "KF2026112001");
    let started = Instant::now();
    let (st, body) = wx.post_plain(&q, TOKEN).await;
    assert_eq!((st, body.as_str()), (200, "success"));
    assert!(
        started.elapsed() < Duration::from_millis(1900),
        "answered before the call returned"
    );
    let sent = wait_for(&got, |r| &r.wechat, 1).await;
    assert_eq!(sent[0]["touser"], "o-plain");
    assert_eq!(sent[0]["msgtype"], "text");
    let pushed = sent[0]["text"]["content"].as_str().unwrap();
    assert!(pushed.contains("SF1234567890"), "{pushed}");
    assert_eq!(got.lock().unwrap().tokens, 1, "one access token");

    // SMS: a long answer comes in two numbered parts of at most 70 characters.
    let (st, v) = sms(
        &c,
        &s,
        "+86 138 0013 8000",
        "各等级会员有什么权益",
        SMS_SECRET,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["outcome"], "answered", "{v}");
    let parts = v["parts"].as_u64().unwrap() as usize;
    assert!(parts >= 2, "{v} {:?}", got.lock().unwrap().sms);
    let msgs = wait_for(&got, |r| &r.sms, parts).await;
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m["to"], "+8613800138000");
        let t = m["text"].as_str().unwrap();
        assert!(t.encode_utf16().count() <= 70, "{t}");
        assert!(t.starts_with(&format!("({}/{parts}) ", i + 1)), "{t}");
        assert_eq!(m["part"], format!("{}/{parts}", i + 1));
    }
    // A forged SMS is refused.
    let (st, _) = sms(&c, &s, "+8613800138000", "我要投诉", "wrong").await;
    assert_eq!(st, 403);
    // STOP: one confirmation, then nothing is sent until START.
    let before = got.lock().unwrap().sms.len();
    let (_, v) = sms(&c, &s, "+8613800138000", "退订", SMS_SECRET).await;
    assert_eq!(v["outcome"], "opted_out", "{v}");
    wait_for(&got, |r| &r.sms, before + 1).await;
    let (_, v) = sms(&c, &s, "+8613800138000", "运费谁出", SMS_SECRET).await;
    assert_eq!(v["outcome"], "stopped", "{v}");
    let (_, v) = sms(&c, &s, "+8613800138000", "START", SMS_SECRET).await;
    assert_eq!(v["outcome"], "opted_in", "{v}");
    wait_for(&got, |r| &r.sms, before + 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        got.lock().unwrap().sms.len(),
        before + 2,
        "nothing sent while stopped"
    );

    // One conversation across channels: a refund begun on SMS, the customer's phone and
    // WeChat linked to their account, the order number given on WeChat continues the flow.
    let (_, v) = sms(&c, &s, "13900139000", "我想退货", SMS_SECRET).await;
    assert_eq!(v["outcome"], "answered", "{v}");
    let msgs = wait_for(&got, |r| &r.sms, before + 3).await;
    let asked = msgs.last().unwrap()["text"].as_str().unwrap();
    assert!(asked.contains("订单号"), "{asked}");
    let (st, v) = common::call(
        &c,
        reqwest::Method::POST,
        s.url("/v1/customers/u-1001/identities"),
        Some(json!({"kind": "phone", "value": "139-0013-9000"})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["identity"]["value"], "13900139000");
    assert!(
        v["previous_customer_id"]
            .as_str()
            .unwrap()
            .starts_with("c_"),
        "{v}"
    );
    let (st, v) = common::call(
        &c,
        reqwest::Method::POST,
        s.url("/v1/customers/u-1001/identities"),
        Some(json!({"kind": "wechat_openid", "value": "o-linked"})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let (q, _) = wx.text_xml("o-linked", "KF2026112002");
    let (st, xml) = wx.post_plain(&q, TOKEN).await;
    assert_eq!(st, 200, "{xml}");
    let reply = content(&xml);
    assert!(
        reply.contains("退款原因"),
        "the refund flow continued: {reply}"
    );
    let (st, v) = common::call(
        &c,
        reqwest::Method::GET,
        s.url("/v1/customers/u-1001/identities"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["identities"].as_array().unwrap().len(), 2, "{v}");
    let (st, v) = common::call(
        &c,
        reqwest::Method::POST,
        s.url("/v1/customers/u-1001/identities"),
        Some(json!({"kind": "phone", "value": "12ab"})),
    )
    .await;
    assert_eq!(st, 422, "{v}");

    // A phone number confirmed in the conversation: a refund begun by SMS from the number,
    // then on WeChat "绑定手机 NUMBER" sends a code to it; a wrong code is refused, the right
    // one links the WeChat user to the number's customer and the refund continues there.
    let n = got.lock().unwrap().sms.len();
    let (_, v) = sms(&c, &s, "13700137000", "我想退货", SMS_SECRET).await;
    assert_eq!(v["outcome"], "answered", "{v}");
    let n = wait_for(&got, |r| &r.sms, n + 1).await.len();
    let (q, _) = wx.text_xml("o-verify", "绑定手机 137 0013 7000");
    let (_, xml) = wx.post_plain(&q, TOKEN).await;
    assert!(content(&xml).contains("验证码已发送到 137"), "{xml}");
    assert!(
        !content(&xml).contains("13700137000"),
        "the number is masked: {xml}"
    );
    let msgs = wait_for(&got, |r| &r.sms, n + 1).await;
    let sent = msgs.last().unwrap();
    assert_eq!(sent["to"], "13700137000");
    assert!(sent["text"].as_str().unwrap().contains("验证码"), "{sent}");
    let code: String = sent["text"]
        .as_str()
        .unwrap()
        .chars()
        .filter(char::is_ascii_digit)
        .take(6)
        .collect();
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let (q, _) = wx.text_xml("o-verify", wrong);
    let (_, xml) = wx.post_plain(&q, TOKEN).await;
    assert!(content(&xml).contains("验证码不对"), "{xml}");
    let (q, _) = wx.text_xml("o-verify", &code);
    let (_, xml) = wx.post_plain(&q, TOKEN).await;
    assert!(content(&xml).contains("已验证并绑定"), "{xml}");
    let (q, _) = wx.text_xml("o-verify", "KF2026112003");
    let (_, xml) = wx.post_plain(&q, TOKEN).await;
    assert!(
        content(&xml).contains("退款原因"),
        "the refund begun by SMS continued: {xml}"
    );

    // The app's back end: its signed-in user linked to the same customer continues there.
    let (st, v) = common::call(
        &c,
        reqwest::Method::POST,
        s.url("/v1/customers/u-1001/identities"),
        Some(json!({"kind": "app_user", "value": "app-1001"})),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = common::call(
        &c,
        reqwest::Method::POST,
        s.url("/channels/app/turn"),
        Some(json!({"user": "app-1001", "text": "1"})),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["turn"]["flow"]["name"], "refund", "{v}");
    assert_eq!(
        v["turn"]["action"], "confirm",
        "the reason given in the app: {v}"
    );

    // Erasure removes the identities with everything else.
    let (st, v) = common::call(
        &c,
        reqwest::Method::DELETE,
        s.url("/v1/customers/u-1001"),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["identities"].as_u64().unwrap() >= 3, "{v}");
    let (st, _) = common::call(
        &c,
        reqwest::Method::GET,
        s.url("/v1/customers/u-1001/identities"),
        None,
    )
    .await;
    assert_eq!(st, 404);

    // Each channel's reply time is measured.
    for (ch, delivery) in [
        ("wechat", "passive"),
        ("wechat", "pushed"),
        ("sms", "pushed"),
    ] {
        let n = metric(
            &c,
            &s,
            "kefu_channel_reply_duration_seconds_count",
            &[
                &format!("channel=\"{ch}\""),
                &format!("delivery=\"{delivery}\""),
            ],
        )
        .await;
        assert!(n >= 1.0, "{ch}/{delivery} not measured");
    }
    // Phone numbers never reach the log in full.
    let log: Vec<String> = s.log.try_iter().collect();
    assert!(
        !log.iter()
            .any(|l| l.contains("13900139000") || l.contains("8613800138000")),
        "a phone number in the log"
    );
}

#[tokio::test]
async fn channel_settings_are_checked_at_start() {
    let dir = tempfile::tempdir().unwrap();
    for (toml, says) in [
        (
            "[[channels.wechat]]\naccount = \"a\"\ntoken = \"tok\"\napp_id = \"wx1\"\napp_secret = \"s\"\nencoding_aes_key = \"short\"\n",
            "encoding_aes_key must be 43 characters",
        ),
        (
            "[channels.sms]\nenabled = true\nsecret = \"x\"\n",
            "channels.sms.send",
        ),
        (
            "[channels.sms]\nenabled = true\n[channels.sms.send]\nurl = \"http://127.0.0.1:9/send\"\nmethod = \"POST\"\n",
            "channels.sms.secret",
        ),
    ] {
        let config = dir.path().join("kefu.toml");
        std::fs::write(&config, toml).unwrap();
        let out = common::kefu()
            .args(["config", "--config"])
            .arg(&config)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{toml} was accepted");
        assert!(err.contains(says), "{toml}: {err}");
    }
}
