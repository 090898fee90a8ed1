//! A customer's turn arriving through a channel (SMS, WeChat, the web widget): who it is (the
//! channel identity resolved to one customer id), which conversation it continues (the
//! customer's open one, whatever channel it began on), the satisfaction survey answered with a
//! bare digit, STOP and START; then the one chat turn every entry point runs. Linking
//! identities to customers (`POST /v1/customers/{id}/identities`) is here too.

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
        let mut live = None;
        if let Some(c) = open
            && self.sessions.get(&c.session_id).await?.is_some()
        {
            live = Some(c);
        }
        let text = m.text.trim();
        let locale_of_text = crate::dialog::locale_of(text);
        if let Some(c) = &live
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
            let locale = match self.sessions.get(&c.session_id).await? {
                Some(s) if s.locale == "en" => "en",
                _ => "zh",
            };
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
            session_id: live.as_ref().map(|c| c.session_id.clone()),
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
        let (identity, previous_customer_id) = self
            .identities
            .link(customer_id, &identity, true)
            .await
            .map_err(Error::storage)?;
        tracing::info!(
            customer_id,
            identity = Identity::new(identity.kind, &identity.value)
                .map(|i| i.masked())
                .unwrap_or_default(),
            "linked an identity"
        );
        Ok(Linked {
            identity,
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
    fn survey_answers_are_one_digit() {
        assert_eq!(super::survey_answer("5"), Some(5));
        assert_eq!(super::survey_answer("３"), Some(3));
        assert_eq!(super::survey_answer("6"), None);
        assert_eq!(super::survey_answer("12"), None);
        assert_eq!(super::survey_answer("好"), None);
    }
}
