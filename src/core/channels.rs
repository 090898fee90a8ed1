//! A customer's turn arriving through a channel (SMS, WeChat, the web widget): who it is (the
//! channel identity resolved to one customer id), which conversation it continues (the
//! customer's open one, whatever channel it began on), the satisfaction survey answered with a
//! bare digit, STOP and START, a phone number confirmed with a code sent to it; then the one
//! chat turn every entry point runs. Linking identities to customers
//! (`POST /v1/customers/{id}/identities`) and sending SMS are here too.

use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use super::Kefu;
use super::conversation::FeedbackRequest;
use crate::core::understand::Customer;
use crate::dialog::chat::{ChatRequest, ChatResponse};
use crate::dialog::identity::{Identity, LinkedIdentity, OpenConversation};
use crate::error::Error;

/// One message from a customer on a channel.
#[derive(Debug, Clone)]
pub struct ChannelMessage {
    /// `sms`, `wechat`, `web` or `app`: picks the answer variant and is recorded.
    pub channel: &'static str,
    pub identity: Identity,
    /// The channel vouches for the identity (an SMS sender's number, a signed WeChat openid).
    pub verified: bool,
    pub text: String,
}

/// What a channel message came to.
#[derive(Debug)]
pub struct ChannelTurn {
    pub customer_id: String,
    /// `zh` or `en`: the language to render the reply's frame in (numbering hints, notices).
    pub locale: &'static str,
    pub outcome: Outcome,
}

#[derive(Debug)]
pub enum Outcome {
    /// The chat turn's reply.
    Reply(Box<ChatResponse>),
    /// A bare 1–5 after a survey: recorded as the rating of the conversation.
    Rated { rating: u8, thanks: String },
    /// A step of confirming a phone number ("绑定手机 …", then the code sent to it).
    Notice(String),
}

/// Identities linked to a customer, as `GET /v1/customers/{id}/identities` returns them.
#[derive(Debug, Serialize, ToSchema)]
pub struct Identities {
    pub customer_id: String,
    pub identities: Vec<LinkedIdentity>,
}

/// What linking an identity did.
#[derive(Debug, Serialize, ToSchema)]
pub struct Linked {
    pub identity: LinkedIdentity,
    /// The customer the identity belonged to before, when another: its open conversation
    /// moved over unless this customer had one.
    pub previous_customer_id: Option<String>,
}

impl Kefu {
    /// One customer message from a channel: resolved to a customer and their open
    /// conversation, then answered by [`Kefu::chat_turn`].
    pub async fn channel_turn(self: &Arc<Self>, m: ChannelMessage) -> Result<ChannelTurn, Error> {
        let customer_id = self
            .identities
            .resolve(&m.identity, m.verified)
            .await
            .map_err(Error::storage)?;
        let open = self
            .identities
            .conversation(&customer_id)
            .await
            .map_err(Error::storage)?;
        // The conversation continues while its session lives (`dialog.session_ttl_secs`).
        // Kept with whether the session speaks English (the thanks for a rating do too).
        let mut live = None;
        if let Some(c) = open
            && let Some(s) = self.sessions.get(&c.session_id).await?
        {
            live = Some((c, s.locale == "en"));
        }
        let text = m.text.trim();
        let locale_of_text = crate::dialog::locale_of(text);
        if m.channel != "sms"
            && let Some(notice) = self.confirm_phone(&m.identity, text).await?
        {
            return Ok(ChannelTurn {
                customer_id,
                locale: locale_of_text.unwrap_or("zh"),
                outcome: Outcome::Notice(notice),
            });
        }
        if let Some((c, en)) = &live
            && let Some(turn_id) = &c.survey_turn_id
            && let Some(rating) = survey_answer(text)
        {
            self.feedback(FeedbackRequest {
                turn_id: turn_id.clone(),
                helpful: None,
                rating: Some(rating),
                comment: None,
                faq_id: None,
            })
            .await?;
            let locale = if *en { "en" } else { "zh" };
            self.identities
                .set_conversation(
                    &customer_id,
                    &OpenConversation {
                        survey_turn_id: None,
                        ..c.clone()
                    },
                )
                .await
                .map_err(Error::storage)?;
            let thanks = if locale == "en" {
                "Thank you for your rating!"
            } else {
                "感谢您的评分！"
            };
            return Ok(ChannelTurn {
                customer_id,
                locale,
                outcome: Outcome::Rated {
                    rating,
                    thanks: thanks.into(),
                },
            });
        }
        let tier = self
            .recommender
            .store
            .customer(&customer_id)
            .await
            .map_err(Error::storage)?
            .and_then(|c| c.tier);
        let req = ChatRequest {
            session_id: live.as_ref().map(|(c, _)| c.session_id.clone()),
            customer: Some(Customer {
                id: Some(customer_id.clone()),
                tier,
            }),
            channel: Some(m.channel.to_string()),
            text: m.text,
        };
        let r = self.chat_turn(req).await?;
        self.identities
            .set_conversation(
                &customer_id,
                &OpenConversation {
                    session_id: r.session_id.clone(),
                    survey_turn_id: r.survey.is_some().then(|| r.turn_id.clone()),
                    channel: Some(m.channel.to_string()),
                },
            )
            .await
            .map_err(Error::storage)?;
        let locale = locale_of_text
            .or_else(|| crate::dialog::locale_of(&r.reply))
            .unwrap_or("zh");
        Ok(ChannelTurn {
            customer_id,
            locale,
            outcome: Outcome::Reply(Box::new(r)),
        })
    }

    /// Links `identity` to `customer_id` (an operator's or the app's word, so verified).
    pub async fn link_identity(
        &self,
        customer_id: &str,
        identity: Identity,
    ) -> Result<Linked, Error> {
        super::checked_customer_id("id", customer_id)?;
        let (linked, previous_customer_id) = self
            .identities
            .link(customer_id, &identity, true)
            .await
            .map_err(Error::storage)?;
        tracing::info!(
            customer_id,
            identity = identity.masked(),
            "linked an identity"
        );
        Ok(Linked {
            identity: linked,
            previous_customer_id,
        })
    }

    /// Every identity of a customer (404 when none).
    pub async fn identities_of(&self, customer_id: &str) -> Result<Identities, Error> {
        super::checked_customer_id("id", customer_id)?;
        let identities = self
            .identities
            .of_customer(customer_id)
            .await
            .map_err(Error::storage)?;
        if identities.is_empty() {
            return Err(Error::NotFound(format!(
                "customer {customer_id:?} has no linked identities"
            )));
        }
        Ok(Identities {
            customer_id: customer_id.to_string(),
            identities,
        })
    }

    /// Removes one identity of a customer (404 when it is not theirs).
    pub async fn unlink_identity(
        &self,
        customer_id: &str,
        identity: &Identity,
    ) -> Result<(), Error> {
        super::checked_customer_id("id", customer_id)?;
        if self
            .identities
            .unlink(customer_id, identity)
            .await
            .map_err(Error::storage)?
        {
            Ok(())
        } else {
            Err(Error::NotFound(format!(
                "customer {customer_id:?} has no identity {}",
                identity.masked()
            )))
        }
    }

    /// STOP (`true`) or START (`false`) from an identity: nothing is sent to it while stopped.
    pub async fn set_opted_out(&self, identity: &Identity, opted_out: bool) -> Result<(), Error> {
        self.identities
            .resolve(identity, true)
            .await
            .map_err(Error::storage)?;
        self.identities
            .set_opted_out(identity, opted_out)
            .await
            .map_err(Error::storage)?;
        tracing::info!(identity = identity.masked(), opted_out, "opt-out changed");
        Ok(())
    }

    /// Whether an identity sent STOP (and not START since).
    pub async fn opted_out(&self, identity: &Identity) -> Result<bool, Error> {
        Ok(self
            .identities
            .get(identity)
            .await
            .map_err(Error::storage)?
            .is_some_and(|l| l.opted_out))
    }
}

/// How long a code sent to a phone is good for, the least time between two codes, and the
/// wrong codes allowed.
const CODE_SECS: i64 = 600;
const RESEND_SECS: i64 = 60;
const CODE_ATTEMPTS: i64 = 5;

/// "绑定手机 138…", "link my phone +1 415…": the number a customer says is theirs.
fn phone_claim(text: &str) -> Option<String> {
    static RE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"(?i)^\s*(?:绑定|验证|关联)手机号?(?:码)?\s*[:：]?\s*(\+?[\d\s\-()]{5,24})\s*$|^\s*(?:link|verify)\s+(?:my\s+)?phone(?:\s+number)?\s*[:：]?\s*(\+?[\d\s\-()]{5,24})\s*$",
        )
        .expect("valid pattern")
    });
    let c = RE.captures(text)?;
    let raw = c.get(1).or_else(|| c.get(2))?.as_str();
    crate::dialog::identity::phone(raw)
}

fn code_hash(code: &str, id: &Identity) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(
        format!("{}:{}:{code}", id.kind.as_str(), id.value).as_bytes(),
    ))
}

impl Kefu {
    /// A phone number confirmed in a conversation: "绑定手机 NUMBER" sends a 6-digit code to
    /// the number by SMS; the code given back within 10 minutes links the channel identity
    /// to the customer the number belongs to (their open conversation continues here). `None`
    /// when `text` is neither.
    async fn confirm_phone(
        self: &Arc<Self>,
        id: &Identity,
        text: &str,
    ) -> Result<Option<String>, Error> {
        let en = crate::dialog::locale_of(text) == Some("en");
        let say = |zh: String, e: String| Some(if en { e } else { zh });
        if let Some(phone) = phone_claim(text) {
            let phone_id = Identity::new(crate::dialog::identity::IdentityKind::Phone, &phone)
                .map_err(Error::Invalid)?;
            let masked = phone_id.masked();
            let masked = masked.trim_start_matches("phone:");
            if !self.config.channels.sms.enabled {
                return Ok(say(
                    "抱歉，暂时无法发送短信验证码，无法在这里绑定手机号。".into(),
                    "Sorry, we cannot send text messages, so a phone number cannot be linked here."
                        .into(),
                ));
            }
            if self.opted_out(&phone_id).await? {
                return Ok(say(
                    format!("{masked} 已退订短信，无法接收验证码。"),
                    format!("{masked} has unsubscribed from text messages and cannot get a code."),
                ));
            }
            if let Some(p) = self
                .identities
                .pending_code(id)
                .await
                .map_err(Error::storage)?
                && crate::clock::now() - p.sent_at < RESEND_SECS
            {
                return Ok(say(
                    "验证码刚刚已发送，请稍等一分钟再重新获取。".into(),
                    "A code was just sent; please wait a minute before asking for another.".into(),
                ));
            }
            let code = format!("{:06}", rand::random::<u32>() % 1_000_000);
            self.identities
                .set_code(id, &phone, &code_hash(&code, id))
                .await
                .map_err(Error::storage)?;
            let sms = if en {
                format!("Your verification code is {code}. It is valid for 10 minutes.")
            } else {
                format!("您的验证码是 {code}，10 分钟内有效。")
            };
            self.send_sms(&phone_id, sms, None);
            tracing::info!(
                identity = id.masked(),
                phone = phone_id.masked(),
                "sent a phone code"
            );
            return Ok(say(
                format!("验证码已发送到 {masked}，请直接回复 6 位验证码完成绑定。"),
                format!("A code is on its way to {masked}; reply with the 6 digits to link it."),
            ));
        }
        let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        if digits.len() != 6 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Ok(None);
        }
        let Some(p) = self
            .identities
            .pending_code(id)
            .await
            .map_err(Error::storage)?
        else {
            return Ok(None);
        };
        if crate::clock::now() - p.sent_at > CODE_SECS || p.attempts >= CODE_ATTEMPTS {
            self.identities
                .clear_code(id)
                .await
                .map_err(Error::storage)?;
            return Ok(say(
                "验证码已失效，请重新发送「绑定手机 手机号」获取新的验证码。".into(),
                "That code has expired; send \"link phone NUMBER\" for a new one.".into(),
            ));
        }
        use subtle::ConstantTimeEq;
        let want = code_hash(&digits, id);
        if !bool::from(want.as_bytes().ct_eq(p.code_hash.as_bytes())) {
            self.identities
                .code_failed(id)
                .await
                .map_err(Error::storage)?;
            return Ok(say(
                "验证码不对，请核对短信后再回复。".into(),
                "That code is not right; please check the text message and try again.".into(),
            ));
        }
        self.identities
            .clear_code(id)
            .await
            .map_err(Error::storage)?;
        let phone_id = Identity::new(crate::dialog::identity::IdentityKind::Phone, &p.phone)
            .map_err(Error::Invalid)?;
        let owner = self
            .identities
            .resolve(&phone_id, true)
            .await
            .map_err(Error::storage)?;
        self.identities
            .link(&owner, id, true)
            .await
            .map_err(Error::storage)?;
        tracing::info!(
            identity = id.masked(),
            phone = phone_id.masked(),
            "linked by a confirmed phone"
        );
        Ok(say(
            "手机号已验证并绑定：您在短信和这里的咨询会接着进行。".into(),
            "Your phone number is confirmed and linked: your text-message conversation continues here."
                .into(),
        ))
    }

    /// Sends `text` to a phone through the SMS provider (`[channels.sms.send]`), cut into
    /// numbered parts, in the background and in order; how many parts (0 when SMS is off or
    /// the number sent STOP). `started`: when the message being answered arrived (for
    /// `kefu_channel_reply_duration_seconds`).
    pub fn send_sms(
        self: &Arc<Self>,
        to: &Identity,
        text: String,
        started: Option<std::time::Instant>,
    ) -> usize {
        let cfg = &self.config.channels.sms;
        if !cfg.enabled || cfg.send.is_none() {
            return 0;
        }
        let parts = crate::text::sms::split(&text, cfg.max_parts);
        let n = parts.len();
        let kefu = self.clone();
        let to = to.clone();
        self.tasks.spawn(async move {
            let cfg = &kefu.config.channels.sms;
            let Some(call) = &cfg.send else { return };
            let key = crate::dialog::session::new_id();
            for (i, part) in parts.iter().enumerate() {
                let ctx = serde_json::json!({
                    "to": to.value, "from": cfg.from, "text": part, "part": i + 1, "parts": n,
                    "services": kefu.config.dialog.services,
                });
                let sent = kefu
                    .flows
                    .send(&kefu.http, call, &ctx, &format!("{key}-{}", i + 1))
                    .await;
                let failed = |why: String| {
                    kefu.metrics
                        .channel_messages
                        .with_label_values(&["sms", "send_failed"])
                        .inc();
                    tracing::warn!(to = to.masked(), "sending an SMS failed: {why}");
                };
                match sent {
                    Ok((status, _)) if status < 400 => {}
                    Ok((status, body)) => {
                        return failed(format!("the provider answered {status} {body}"));
                    }
                    Err(e) => return failed(e),
                }
            }
            if let Some(t) = started {
                kefu.metrics
                    .channel_reply_seconds
                    .with_label_values(&["sms", "pushed"])
                    .observe(t.elapsed().as_secs_f64());
            }
        });
        n
    }
}

/// A bare rating: one digit 1–5 (full-width too), nothing else.
fn survey_answer(text: &str) -> Option<u8> {
    let mut chars = text.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    let d = match c {
        '1'..='5' => c as u32 - '0' as u32,
        '１'..='５' => c as u32 - '０' as u32,
        _ => return None,
    };
    Some(d as u8)
}

#[cfg(test)]
mod tests {
    #[test]
    fn phone_claims_are_recognised() {
        assert_eq!(
            super::phone_claim("绑定手机 139 0013 9000").as_deref(),
            Some("13900139000")
        );
        assert_eq!(
            super::phone_claim("验证手机号：+86 13900139000").as_deref(),
            Some("+8613900139000")
        );
        assert_eq!(
            super::phone_claim("link my phone +1 (415) 555-0100").as_deref(),
            Some("+14155550100")
        );
        assert_eq!(
            super::phone_claim("我的手机号是 13900139000，帮我改地址"),
            None
        );
        assert_eq!(super::phone_claim("绑定手机"), None);
    }

    #[test]
    fn survey_answers_are_one_digit() {
        assert_eq!(super::survey_answer("5"), Some(5));
        assert_eq!(super::survey_answer("３"), Some(3));
        assert_eq!(super::survey_answer("6"), None);
        assert_eq!(super::survey_answer("12"), None);
        assert_eq!(super::survey_answer("好"), None);
    }
}
