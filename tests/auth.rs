//! API keys against the real server: keys minted by `kefu auth new-key`, configured by hash;
//! 401 without a key, 403 naming the missing scope, each scope's routes, `chat` keys kept to
//! their own conversations, per-key budgets (429 with Retry-After), CORS for configured
//! origins only, and the refusal to serve everyone on a reachable address.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::{Server, kefu, model_dir};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

/// `kefu auth new-key`: the key (stdout) and the TOML it prints (stderr).
fn mint(name: &str, scopes: &str) -> (String, String) {
    let out = kefu()
        .args(["auth", "new-key", "--name", name, "--scopes", scopes])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let toml = String::from_utf8(out.stderr).unwrap();
    let hash = toml
        .lines()
        .find_map(|l| l.strip_prefix("hash = "))
        .expect("a hash line")
        .trim_matches('"')
        .to_string();
    assert!(key.starts_with("kefu_"), "{key}");
    assert!(
        !toml.contains(&key),
        "the config lines must not hold the key"
    );
    (key, hash)
}

struct Keys {
    chat: String,
    agent: String,
    admin: String,
}

fn keyed_server() -> (Server, Keys) {
    let (chat, chat_h) = mint("widget", "chat");
    let (agent, agent_h) = mint("desk", "agent,query");
    let (admin, admin_h) = mint("ops", "admin");
    let keys = format!(
        r#"[{{name="widget",scopes=["chat"],hash="{chat_h}"}},{{name="desk",scopes=["agent","query"],hash="{agent_h}"}},{{name="ops",scopes=["admin"],hash="{admin_h}"}}]"#
    );
    let s = Server::start(
        &model_dir(),
        &[
            ("KEFU_AUTH__KEYS", keys.as_str()),
            ("KEFU_AUTH__RATE_LIMITS__AGENT", "{per_second=1,burst=3}"),
            (
                "KEFU_SERVER__CORS_ORIGINS",
                r#"["https://shop.example.com"]"#,
            ),
        ],
    );
    (s, Keys { chat, agent, admin })
}

async fn send(
    c: &Client,
    method: Method,
    url: String,
    key: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut r = c.request(method, url);
    if let Some(k) = key {
        r = r.bearer_auth(k);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    let (st, h) = (resp.status(), resp.headers().clone());
    (st, h, resp.json().await.unwrap_or(Value::Null))
}

/// A chat turn, waiting (on 503) for the index.
async fn chat(c: &Client, s: &Server, key: &str, body: Value) -> (StatusCode, Value) {
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    loop {
        let (st, _, v) = send(
            c,
            Method::POST,
            s.url("/v1/chat"),
            Some(key),
            Some(body.clone()),
        )
        .await;
        if st != StatusCode::SERVICE_UNAVAILABLE || Instant::now() > deadline {
            return (st, v);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn keys_scopes_budgets_and_cors() {
    let (s, k) = keyed_server();
    let c = Client::new();

    // Probes and the document stay open.
    for p in ["/healthz", "/openapi.json"] {
        let (st, _, _) = send(&c, Method::GET, s.url(p), None, None).await;
        assert_eq!(st, StatusCode::OK, "{p}");
    }
    let (st, _, _) = send(&c, Method::GET, s.url("/readyz"), None, None).await;
    assert_ne!(st, StatusCode::UNAUTHORIZED);

    // No key, a wrong key: 401 with a challenge; a key without the scope: 403 naming it.
    let (st, h, v) = send(&c, Method::GET, s.url("/v1/faqs"), None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    assert_eq!(v["error"]["code"], "unauthorized");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("admin"),
        "{v}"
    );
    assert!(h.get("www-authenticate").is_some());
    let (st, _, v) = send(&c, Method::GET, s.url("/v1/faqs"), Some("kefu_wrong"), None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED, "{v}");
    let (st, _, v) = send(&c, Method::GET, s.url("/v1/faqs"), Some(&k.chat), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert_eq!(v["error"]["code"], "forbidden");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("widget") && msg.contains("admin"), "{msg}");
    assert!(!msg.contains(&k.chat), "an error must not echo the key");
    let (st, _, v) = send(&c, Method::GET, s.url("/v1/faqs"), Some(&k.admin), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, _, _) = send(&c, Method::GET, s.url("/metrics"), None, None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _, _) = send(&c, Method::GET, s.url("/metrics"), Some(&k.admin), None).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _, _) = send(
        &c,
        Method::POST,
        s.url("/v1/model/reload"),
        Some(&k.agent),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN);

    // A chat key starts a conversation (the server mints its id) and continues it; it may not
    // name another id nor read transcripts.
    let (st, v) = chat(&c, &s, &k.chat, json!({"text": "退货运费谁出"})).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let sid = v["session_id"].as_str().unwrap().to_string();
    assert!(
        sid.len() == 32 && sid.bytes().all(|b| b.is_ascii_hexdigit()),
        "{sid}"
    );
    let turn = v["turn_id"].as_str().unwrap().to_string();
    let (st, v) = chat(
        &c,
        &s,
        &k.chat,
        json!({"session_id": sid, "text": "多久到账"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let (st, v) = chat(
        &c,
        &s,
        &k.chat,
        json!({"session_id": "demo-1", "text": "你好"}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("session_id"),
        "{v}"
    );
    let (st, _, v) = send(
        &c,
        Method::POST,
        s.url("/v1/feedback"),
        Some(&k.chat),
        Some(json!({"turn_id": turn, "helpful": true})),
    )
    .await;
    assert!(
        st == StatusCode::CREATED || st == StatusCode::NOT_FOUND,
        "{st} {v}"
    );
    let (st, _, v) = send(
        &c,
        Method::POST,
        s.url("/v1/feedback"),
        Some(&k.chat),
        Some(json!({"turn_id": "demo-1-2", "helpful": true})),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{v}");
    let session = s.url(&format!("/v1/sessions/{sid}"));
    let (st, _, _) = send(&c, Method::GET, session.clone(), Some(&k.chat), None).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let (st, _, v) = send(&c, Method::GET, session.clone(), Some(&k.agent), None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["turns"].as_array().unwrap().len(), 4, "{v}");
    // Agents may choose ids.
    let (st, v) = chat(
        &c,
        &s,
        &k.agent,
        json!({"session_id": "desk-1", "text": "你好"}),
    )
    .await;
    assert_eq!(st, StatusCode::FORBIDDEN, "agent without chat scope: {v}");
    let (st, v) = chat(
        &c,
        &s,
        &k.admin,
        json!({"session_id": "desk-1", "text": "你好"}),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");

    // The OpenAI clients' header works on /v1/embeddings, and so does x-api-key.
    let (st, _, v) = send(
        &c,
        Method::POST,
        s.url("/v1/embeddings"),
        Some(&k.agent),
        Some(json!({"input": "hello", "model": "kefu"})),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let r = c
        .post(s.url("/v1/match"))
        .header("x-api-key", &k.agent)
        .json(&json!({"query": "退货运费"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // The agent scope's budget: 3 at once, then 429 with Retry-After; other keys unaffected.
    let mut limited = None;
    for _ in 0..6 {
        let (st, h, v) = send(&c, Method::GET, s.url("/v1/feedback"), Some(&k.agent), None).await;
        if st == StatusCode::TOO_MANY_REQUESTS {
            limited = Some((h, v));
            break;
        }
        assert_eq!(st, StatusCode::OK, "{v}");
    }
    let (h, v) = limited.expect("the agent budget never ran out");
    assert_eq!(v["error"]["code"], "rate_limited", "{v}");
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1, "{retry}");
    let (st, _, _) = send(&c, Method::GET, s.url("/v1/feedback"), Some(&k.admin), None).await;
    assert_eq!(st, StatusCode::OK, "another key has its own budget");

    // CORS: the configured origin gets its preflight answered; another origin does not.
    let pre = |origin: &str| {
        c.request(Method::OPTIONS, s.url("/v1/chat"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let r = pre("https://shop.example.com").await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    let r = pre("https://evil.example.net").await.unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());

    // The model commands reach a keyed server's admin routes with --key (or KEFU_API_KEY):
    // without one they are turned away; with the admin key the route answers (here: nothing was
    // activated, so there is nothing to roll back).
    let rollback = |key: Option<&str>| {
        let mut cmd = common::kefu();
        cmd.args(["model", "rollback", "intent/service", "--server", &s.base])
            .env_remove("KEFU_API_KEY");
        if let Some(k) = key {
            cmd.args(["--key", k]);
        }
        let o = cmd.output().unwrap();
        assert!(!o.status.success());
        String::from_utf8_lossy(&o.stderr).into_owned()
    };
    let err = rollback(None);
    assert!(err.contains("401"), "{err}");
    let err = rollback(Some(&k.admin));
    assert!(
        err.contains("404") && err.contains("no activation to roll back"),
        "{err}"
    );
}

#[test]
fn a_reachable_address_needs_keys_or_an_explicit_choice() {
    let dir = tempfile::tempdir().unwrap();
    let out = kefu()
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--model"])
        .arg(model_dir())
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0.0.0.0")
            && err.contains("auth.allow_anonymous")
            && err.contains("kefu auth new-key"),
        "{err}"
    );

    // Said explicitly, it serves — and says so loudly first.
    let mut child = kefu()
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--model"])
        .arg(model_dir())
        .arg("--data-dir")
        .arg(dir.path())
        .env("KEFU_AUTH__ALLOW_ANONYMOUS", "true")
        .env("KEFU_INTENT__LOAD_DEMO", "false")
        .env("KEFU_RECOMMEND__LOAD_DEMO", "false")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut warned = false;
    let mut listening = false;
    for l in lines.map_while(Result::ok) {
        warned |= l.contains("NO API KEYS");
        if l.contains("listening on") {
            listening = true;
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(listening, "it did not start");
    assert!(
        warned,
        "no loud warning about anonymous access before listening"
    );
}

#[test]
fn keys_that_cannot_work_stop_startup() {
    let dir = tempfile::tempdir().unwrap();
    let out = kefu()
        .args(["serve", "--port", "0", "--model"])
        .arg(model_dir())
        .arg("--data-dir")
        .arg(dir.path())
        .env(
            "KEFU_AUTH__KEYS",
            r#"[{name="ops",scopes=["admin"],hash="kefu_the_key_itself"}]"#,
        )
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("auth.keys[0].hash"), "{err}");

    let out = kefu()
        .args(["auth", "new-key", "--name", "x", "--scopes", "root"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown scope"));
}
