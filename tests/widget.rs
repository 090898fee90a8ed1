//! The web chat widget in a real browser: this test serves `examples/widget.html` on another
//! origin (a port of its own), and `tests/console/widget.mjs` opens it, loads `/widget.js` from the
//! running server with a `chat` key, and holds a conversation — a flow, a follow-up answered in
//! context, an option picked by its button, a reload that keeps the conversation, the survey
//! rated with a star, a hand-off — then checks the English page. This test checks the same
//! effects through the API: the rating stored, the hand-off queued, the visitor known as one
//! customer.
//!
//! Needs Debian's `chromium` and `npm ci --prefix tests/console`; `.ci/run` installs both and
//! runs it with `--ignored`.

mod common;

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

fn console_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

fn chromium() -> String {
    std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

// Several threads: the shop's page is served from this process while node runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Debian's chromium and `npm ci --prefix tests/console`; .ci/run installs both \
            and runs it with --ignored"]
async fn the_widget_holds_a_conversation_on_another_origin() {
    assert!(
        std::path::Path::new(&chromium()).exists(),
        "no Chromium at {} (apt-get install chromium, or set CHROMIUM)",
        chromium()
    );
    assert!(
        console_dir().join("node_modules/playwright-core").exists(),
        "playwright-core is not installed: npm ci --prefix tests/console"
    );
    let model = common::model_dir();
    let (admin, chat) = ("kefu_widget_test_admin_key", "kefu_widget_test_chat_key");
    // The shop: its own origin, known before kefu starts (kefu must allow it).
    let shop = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop_url = format!("http://{}", shop.local_addr().unwrap());
    let conf = tempfile::tempdir().unwrap();
    let file = conf.path().join("kefu.toml");
    std::fs::write(
        &file,
        format!(
            "[server]\ncors_origins = [\"{shop_url}\"]\n\n\
             [[auth.keys]]\nname = \"lead\"\nscopes = [\"admin\"]\nhash = \"{}\"\n\n\
             [[auth.keys]]\nname = \"shop-widget\"\nscopes = [\"chat\"]\nhash = \"{}\"\n",
            kefu::auth::hash_key(admin),
            kefu::auth::hash_key(chat),
        ),
    )
    .unwrap();
    let orders = common::OrderSystem::start(&[]);
    let s = common::Server::start(
        &model,
        &[
            ("KEFU_CONFIG", file.to_str().unwrap()),
            ("KEFU_INTENT__LOAD_DEMO", "true"),
            ("KEFU_DIALOG__SERVICES__ORDERS", &orders.base),
        ],
    );
    s.ready().await;
    let page = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/widget.html"),
    )
    .unwrap()
    .replace("http://localhost:8080", &s.base)
    .replace("CHAT_KEY", chat);
    let english = page
        .replace("<html lang=\"zh-CN\">", "<html lang=\"en\">")
        .replace(" data-title=\"示例商城客服\"", "");
    let html = |p: String| move || async move { axum::response::Html(p) };
    let app = axum::Router::new()
        .route("/", axum::routing::get(html(page)))
        .route("/en", axum::routing::get(html(english)))
        .route(
            "/favicon.ico",
            axum::routing::get(|| async { axum::http::StatusCode::NO_CONTENT }),
        );
    tokio::spawn(async move { axum::serve(shop, app).await.unwrap() });
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/console");
    let mut node = Command::new("node");
    node.arg(console_dir().join("widget.mjs"))
        .env("KEFU_SHOP", &shop_url)
        .env("KEFU_SHOTS", &shots)
        .env("CHROMIUM", chromium());
    let out = tokio::task::spawn_blocking(move || node.output().expect("running node"))
        .await
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the browser test failed:\n{printed}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(printed.trim().lines().last().unwrap()).unwrap();
    eprintln!("{report:#}");

    let c = reqwest::Client::new();
    let get = |path: &str| {
        let req = c.get(s.url(path)).bearer_auth(admin);
        async move {
            let r = req.send().await.unwrap();
            let st = r.status().as_u16();
            (st, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // The star landed as the conversation's rating.
    let (st, v) = get("/v1/feedback").await;
    assert_eq!(st, 200, "{v}");
    assert!(
        v["feedback"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["rating"] == 5),
        "{v}"
    );
    // The hand-off is queued for a person.
    let (st, v) = get("/v1/handoffs").await;
    assert_eq!(st, 200, "{v}");
    assert!(!v["handoffs"].as_array().unwrap().is_empty(), "{v}");
    // The widget's key may not do more than chat.
    let r = c
        .get(s.url("/v1/handoffs"))
        .bearer_auth(chat)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // The page's origin may call kefu; another may not.
    let r = c
        .request(reqwest::Method::OPTIONS, s.url("/channels/web/turn"))
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("access-control-allow-origin").is_none());
    // A visitor id that kefu's widget would not make is refused.
    let r = c
        .post(s.url("/channels/web/turn"))
        .bearer_auth(chat)
        .json(&serde_json::json!({"visitor": "../../etc", "text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(report["visitor"].as_str().unwrap().len() == 32, "{report}");
}
