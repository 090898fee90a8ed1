//! Conversations: sessions, context rewriting, business flows, hand-off and agent assist.
//! `chat::turn` runs one customer turn; the parts it uses are plain functions over plain data.

pub mod assist;
pub mod chat;
pub mod context;
pub mod flows;
pub mod handoff;
pub mod identity;
pub mod retry;
pub mod session;
pub mod survey;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use self::flows::{Flow, Text};
use self::handoff::HandoffConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In this process (one replica).
    Memory,
    /// In Redis (`dialog.redis_url`), shared by every replica.
    Redis,
}

/// `[dialog]` in kefu.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DialogConfig {
    /// Where sessions live: `memory` or `redis`.
    pub store: StoreKind,
    pub redis_url: String,
    /// Prefix of the Redis keys.
    pub redis_prefix: String,
    /// A session expires this long after its last turn.
    pub session_ttl_secs: u64,
    /// The memory store keeps at most this many sessions (the least recently used go first).
    pub max_sessions: usize,
    /// A session keeps its last this many turns.
    pub max_turns: usize,
    /// ... and drops its oldest turns while they take more than this many bytes (as JSON;
    /// the latest exchange is always kept), so long turns cannot grow a session unbounded.
    pub max_session_bytes: usize,
    /// Rewrite a turn that leans on earlier ones before matching it.
    pub rewrite: bool,
    /// Add the demo shop's flows (datasets/demo/flows.toml) for names `flows` does not declare.
    pub demo_flows: bool,
    /// Business flows (see datasets/demo/flows.toml for the format).
    pub flows: Vec<Flow>,
    /// Base URLs of the operator's systems, for flow templates (`{{ services.orders }}`).
    pub services: BTreeMap<String, String>,
    pub handoff: HandoffConfig,
    pub replies: Replies,
    /// The satisfaction survey offered when a conversation ends.
    pub survey: survey::SurveyConfig,
}

impl Default for DialogConfig {
    fn default() -> Self {
        Self {
            store: StoreKind::Memory,
            redis_url: "redis://127.0.0.1:6379".into(),
            redis_prefix: "kefu:session:".into(),
            session_ttl_secs: 1800,
            max_sessions: 100_000,
            max_turns: 100,
            max_session_bytes: 64 * 1024,
            rewrite: true,
            demo_flows: true,
            flows: vec![],
            services: BTreeMap::from([("orders".into(), "http://127.0.0.1:8090".into())]),
            handoff: HandoffConfig::default(),
            replies: Replies::default(),
            survey: survey::SurveyConfig::default(),
        }
    }
}

impl DialogConfig {
    /// The flows in effect: the declared ones, then the demo flows they do not replace.
    pub fn effective_flows(&self) -> Vec<Flow> {
        let mut out = self.flows.clone();
        if self.demo_flows {
            for f in flows::demo_flows() {
                if !out.iter().any(|x| x.name == f.name) {
                    out.push(f);
                }
            }
        }
        out
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.session_ttl_secs == 0 || self.max_sessions == 0 || self.max_turns < 2 {
            return Err("dialog.session_ttl_secs and dialog.max_sessions must be at least 1, dialog.max_turns at least 2".into());
        }
        if self.max_session_bytes < 1024 {
            return Err("dialog.max_session_bytes must be at least 1024".into());
        }
        // rediss:// is Redis over TLS (trusting the system's roots and outgoing.ca_file).
        const SCHEMES: &[&str] = &["redis://", "rediss://", "redis+unix://", "unix://"];
        if self.store == StoreKind::Redis && !SCHEMES.iter().any(|s| self.redis_url.starts_with(s))
        {
            return Err(format!(
                "dialog.redis_url {:?} is not a redis:// or rediss:// URL",
                self.redis_url
            ));
        }
        if let Some(u) = &self.handoff.webhook_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            return Err(format!(
                "dialog.handoff.webhook_url {u:?} is not an http(s) URL"
            ));
        }
        if let Some(secret) = &self.handoff.webhook_secret
            && secret.len() < handoff::MIN_SECRET_BYTES
        {
            return Err(format!(
                "dialog.handoff.webhook_secret must be at least {} bytes (it has {})",
                handoff::MIN_SECRET_BYTES,
                secret.len()
            ));
        }
        if self.handoff.after_no_answers == 0 || self.handoff.webhook_timeout_ms == 0 {
            return Err(
                "dialog.handoff.after_no_answers and webhook_timeout_ms must be at least 1".into(),
            );
        }
        self.survey.validate()?;
        flows::Flows::compile(self.effective_flows())?;
        Ok(())
    }
}

/// What the bot says in its own words (not from the KB or a flow).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Replies {
    pub greeting: Text,
    pub thanks: Text,
    pub goodbye: Text,
    /// Before the options of a `clarify` reply.
    pub clarify: Text,
    pub no_answer: Text,
    pub handoff: Text,
    /// While a person has the conversation.
    pub with_agent: Text,
    /// When the customer leaves a flow.
    pub cancelled: Text,
}

fn text(zh: &str, en: &str) -> Text {
    Text {
        zh: zh.into(),
        en: en.into(),
    }
}

impl Default for Replies {
    fn default() -> Self {
        Self {
            greeting: text(
                "您好，我是智能客服，请问有什么可以帮您？",
                "Hello! How can I help you today?",
            ),
            thanks: text(
                "不客气，还有其他问题随时问我。",
                "You're welcome! Anything else I can help with?",
            ),
            goodbye: text(
                "感谢您的咨询，祝您生活愉快，再见！",
                "Thanks for contacting us. Goodbye!",
            ),
            clarify: text(
                "您想问的是哪一个？回复序号即可：",
                "Which of these do you mean? Reply with its number:",
            ),
            no_answer: text(
                "抱歉，这个问题我还不太明白。可以换个说法再问一次吗？也可以回复「转人工」。",
                "Sorry, I did not get that. Could you say it another way? You can also ask for a human agent.",
            ),
            handoff: text(
                "正在为您转接人工客服，请稍候，客服会尽快回复您。",
                "I am passing you to a human agent; they will reply shortly.",
            ),
            with_agent: text(
                "人工客服正在处理您的问题，请稍候。",
                "A human agent is handling your conversation; please wait for their reply.",
            ),
            cancelled: text(
                "好的，已取消。还有什么可以帮您？",
                "OK, cancelled. Anything else I can help with?",
            ),
        }
    }
}

/// `zh` for text with Chinese characters, `en` for text with an English word; `None` when it
/// tells neither (an order number, a phone number), so the conversation keeps its language.
pub fn locale_of(text: &str) -> Option<&'static str> {
    if text.chars().any(crate::text::is_cjk) {
        return Some("zh");
    }
    text.split(|c: char| !c.is_alphanumeric())
        .any(|w| {
            w.len() >= 2
                && w.chars().all(|c| c.is_ascii_alphabetic())
                && !(w.len() <= 3 && w.chars().all(|c| c.is_ascii_uppercase()))
        })
        .then_some("en")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_urls_with_and_without_tls_are_taken() {
        let cfg = |url: &str| DialogConfig {
            store: StoreKind::Redis,
            redis_url: url.into(),
            ..DialogConfig::default()
        };
        for ok in ["redis://127.0.0.1:6379/0", "rediss://cache.internal:6380"] {
            assert_eq!(cfg(ok).validate(), Ok(()), "{ok}");
        }
        for bad in ["redisx://h:1", "http://h:6379", "127.0.0.1:6379"] {
            let e = cfg(bad).validate().unwrap_err();
            assert!(e.starts_with("dialog.redis_url"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_short_webhook_secret_is_refused() {
        let mut cfg = DialogConfig::default();
        cfg.handoff.webhook_secret = Some("short".into());
        let e = cfg.validate().unwrap_err();
        assert!(e.starts_with("dialog.handoff.webhook_secret"), "{e}");
        cfg.handoff.webhook_secret = Some("0123456789abcdef".into());
        assert_eq!(cfg.validate(), Ok(()));
    }
}
