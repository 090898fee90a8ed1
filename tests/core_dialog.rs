//! Dialogue decisions through the core itself, without a server: the operations `/v1/chat`
//! calls, on the demo KB and the real model.

mod common;

use std::sync::Arc;
use std::time::Instant;

use kefu::config::Config;
use kefu::core::Kefu;
use kefu::dialog::chat::{Action, ChatRequest, ChatResponse};
use kefu::dialog::handoff::Reason;

async fn kefu(data_dir: &std::path::Path) -> Arc<Kefu> {
    let mut cfg = Config::default();
    cfg.model.path = common::model_dir();
    cfg.server.data_dir = data_dir.to_path_buf();
    // Routing and the KB decide here; the intent models have tests of their own.
    cfg.intent.load_demo = false;
    cfg.recommend.load_demo = false;
    let k = Kefu::open(cfg).await.unwrap();
    let mut failed = k.start(common::model_dir());
    let deadline = Instant::now() + common::BACKGROUND_WAIT;
    while k.readiness().status != "ready" {
        if let Ok(e) = failed.try_recv() {
            panic!("the core failed to start: {e:#}");
        }
        assert!(Instant::now() < deadline, "{:?}", k.readiness());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    k
}

async fn say(k: &Arc<Kefu>, session: &str, text: &str) -> ChatResponse {
    k.chat_turn(ChatRequest {
        session_id: Some(session.into()),
        customer: None,
        channel: None,
        text: text.into(),
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_core_answers_clarifies_and_hands_off() {
    let tmp = tempfile::tempdir().unwrap();
    let k = kefu(tmp.path()).await;

    // A question the demo KB answers.
    let r = say(&k, "a", "退款多久能到账").await;
    assert_eq!(r.action, Action::Answer, "{r:?}");
    assert!(r.matches[0].faq_id.starts_with("zh-refunds"), "{r:?}");

    // A follow-up that leans on it is rewritten to stand alone.
    let r = say(&k, "a", "运费谁出").await;
    assert!(r.rewritten_query.is_some(), "{r:?}");

    // An explicit request for a person hands off at once.
    let r = say(&k, "b", "转人工").await;
    assert_eq!(r.action, Action::Handoff, "{r:?}");
    let p = r.handoff.expect("a hand-off package");
    assert_eq!(p.reason, Reason::ExplicitRequest);
    // The bot then only records turns for the person.
    let r = say(&k, "b", "还在吗").await;
    assert_eq!(r.action, Action::WithAgent, "{r:?}");
    let released = k.release("b").await.unwrap();
    assert!(!released.with_human);

    // Nothing to answer with, twice in a row: a person takes over.
    let r = say(&k, "c", "今天天气怎么样，适合去爬山吗").await;
    assert_eq!(r.action, Action::NoAnswer, "{r:?}");
    let r = say(&k, "c", "帮我写一首关于秋天的诗").await;
    assert_eq!(r.action, Action::Handoff, "{r:?}");

    // Bad input is refused by the core, not only by the HTTP layer.
    let e = k
        .chat_turn(ChatRequest {
            session_id: None,
            customer: Some(kefu::core::understand::Customer {
                id: None,
                tier: Some("platinum".into()),
            }),
            channel: None,
            text: "你好".into(),
        })
        .await
        .unwrap_err();
    assert!(e.to_string().contains("platinum"), "{e}");
}
