//! The satisfaction survey: when a conversation ends (the customer says goodbye, a flow is
//! done, a person gives it back to the bot, or it went quiet: the customer comes back after
//! `idle_secs`) the reply offers a one-tap 1–5 rating, given
//! back through `POST /v1/feedback` on the reply's `turn_id`, so it lands in the stats.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::flows::Text;

/// `[dialog.survey]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SurveyConfig {
    pub enabled: bool,
    /// The question, by locale.
    pub text: Text,
    /// The question on one channel (`web`, `app`, `wechat`, `sms`), e.g. "reply 1–5" on SMS.
    pub channels: BTreeMap<String, Text>,
    /// A conversation silent this many seconds has ended: when the customer comes back (within
    /// `dialog.session_ttl_secs`), the reply offers the survey it did not get. 0: off.
    pub idle_secs: u64,
}

impl Default for SurveyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            text: Text {
                zh: "本次服务您满意吗？请为我们打 1–5 分（5 分为非常满意）。".into(),
                en: "How did we do? Please rate this conversation from 1 to 5 (5 is best).".into(),
            },
            channels: BTreeMap::from([(
                "sms".into(),
                Text {
                    zh: "请回复数字 1–5 为本次服务评分（5 分为非常满意）。".into(),
                    en: "Reply with a number from 1 to 5 to rate this conversation (5 is best)."
                        .into(),
                },
            )]),
            idle_secs: 600,
        }
    }
}

impl SurveyConfig {
    pub fn validate(&self) -> Result<(), String> {
        for c in self.channels.keys() {
            if !crate::kb::entry::CHANNELS.contains(&c.as_str()) {
                return Err(format!(
                    "dialog.survey.channels: {c:?} is not a channel ({})",
                    crate::kb::entry::CHANNELS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The question for `channel` in `locale`.
    pub fn prompt(&self, channel: Option<&str>, locale: &str) -> String {
        channel
            .and_then(|c| self.channels.get(c))
            .unwrap_or(&self.text)
            .get(locale)
            .to_string()
    }
}

/// What ended the conversation, if the turn ended it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// The customer said goodbye.
    Goodbye,
    /// A business flow finished its job.
    FlowDone,
    /// A person gave the conversation back to the bot.
    Released,
    /// The conversation went quiet for `dialog.survey.idle_secs` and the customer came back.
    Idle,
}

/// The rating the reply asks for.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Survey {
    pub prompt: String,
    /// Ratings run from `min` to `max` (1–5); send one as `rating` to `POST /v1/feedback`
    /// with the reply's `turn_id`.
    pub min: u8,
    pub max: u8,
    pub after: Ending,
}

impl Survey {
    pub fn new(cfg: &SurveyConfig, channel: Option<&str>, locale: &str, after: Ending) -> Self {
        Self {
            prompt: cfg.prompt(channel, locale),
            min: 1,
            max: 5,
            after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prompt_follows_the_channel_and_the_locale() {
        let c = SurveyConfig::default();
        assert!(c.prompt(Some("sms"), "zh").contains("回复"));
        assert!(c.prompt(Some("web"), "en").starts_with("How did we do"));
        assert!(c.prompt(None, "zh").contains("满意"));
        let mut bad = SurveyConfig::default();
        bad.channels.insert("fax".into(), c.text.clone());
        assert!(bad.validate().unwrap_err().contains("fax"));
    }
}
