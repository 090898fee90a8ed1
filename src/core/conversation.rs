//! Conversation operations: a chat turn, the sessions (read, end, release, hand off), agent
//! assist and feedback on replies.

use std::sync::Arc;

use serde::Deserialize;
use utoipa::ToSchema;

use super::Kefu;
use crate::analytics::feedback::Feedback;
use crate::dialog::assist::{AssistRequest, AssistResponse};
use crate::dialog::chat::{Action, ChatRequest, ChatResponse};
use crate::dialog::handoff::{self, Cause, HandoffPackage, Reason};
use crate::dialog::session::{Role, Session};
use crate::error::Error;
use crate::intent::routing::{Priority, Route, Target};

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffRequest {
    /// Why, in words (shown to the agent); at most `limits.max_input_chars` characters.
    #[serde(default)]
    #[schema(schema_with = crate::text::check::schema::input)]
    pub detail: Option<String>,
    /// `agent` (default), `vip_agent` or `complaints`.
    #[serde(default)]
    pub target: Option<Target>,
    #[serde(default)]
    pub priority: Option<Priority>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The `turn_id` of a `/v1/chat` reply.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}-[0-9]+$")]
    pub turn_id: String,
    #[serde(default)]
    pub helpful: Option<bool>,
    /// 1–5.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 5)]
    pub rating: Option<u8>,
    /// At most `limits.max_input_chars` characters (8192 by default).
    #[serde(default)]
    #[schema(max_length = 8192)]
    pub comment: Option<String>,
    /// The entry that should have answered.
    #[serde(default)]
    #[schema(schema_with = crate::text::check::schema::kb_id)]
    pub faq_id: Option<String>,
}

impl Kefu {
    /// One customer turn ([`crate::dialog::chat::turn`]); a known customer's question goes
    /// into their profile, with the entry that answered it.
    pub async fn chat_turn(self: &Arc<Self>, req: ChatRequest) -> Result<ChatResponse, Error> {
        let customer = req.customer.clone();
        if let Some(id) = customer.as_ref().and_then(|c| c.id.as_deref()) {
            super::checked_customer_id("customer.id", id)?;
        }
        let text = req.text.trim().to_string();
        let channel = req.channel.clone();
        let r = crate::dialog::chat::turn(self, req).await?;
        self.record_chat(&text, channel.as_deref(), customer.as_ref(), &r);
        // A known customer's question goes into their profile (with the entry that answered it).
        if let Some(c) = customer
            && let Some(id) = c.id
            && r.action != Action::WithAgent
        {
            let answered = (r.action == Action::Answer)
                .then(|| r.matches.first())
                .flatten()
                .map(|m| (m.faq_id.clone(), m.category.clone()));
            let s = self.clone();
            tokio::spawn(async move {
                if c.tier.is_some() {
                    let attrs = crate::recommend::store::Customer {
                        tier: c.tier,
                        locale: None,
                    };
                    if let Err(e) = s
                        .recommender
                        .store
                        .upsert_customers(&[(id.clone(), attrs)])
                        .await
                    {
                        tracing::warn!(
                            customer_id = id,
                            "recording the customer's tier failed: {e}"
                        );
                    }
                }
                let a = answered.as_ref().map(|(f, c)| (f.as_str(), c.as_deref()));
                s.record_consult(&id, &text, a).await;
            });
        }
        Ok(r)
    }

    /// A live session; 404 when it does not exist or expired.
    pub async fn session(&self, id: &str) -> Result<Session, Error> {
        self.sessions.get(id).await?.ok_or_else(|| no_session(id))
    }

    /// Ends a conversation; 404 when there was none.
    pub async fn delete_session(&self, id: &str) -> Result<(), Error> {
        let _lock = self.session_locks.lock(id).await;
        if self.sessions.delete(id).await? {
            Ok(())
        } else {
            Err(no_session(id))
        }
    }

    /// Gives a conversation a person had back to the bot; 409 when the bot has it.
    pub async fn release(&self, id: &str) -> Result<Session, Error> {
        let _lock = self.session_locks.lock(id).await;
        let mut session = self.session(id).await?;
        if !session.with_human {
            return Err(Error::Conflict(format!(
                "session {id:?} is with the bot already"
            )));
        }
        session.with_human = false;
        session.survey_due = true;
        session.fallbacks = 0;
        session.flow = None;
        session.updated_at = crate::dialog::session::now();
        self.sessions.put(&session).await?;
        Ok(session)
    }

    /// Hands a conversation to a person now; the package goes to the desk's webhook like any
    /// other. 409 when a person has it already.
    pub async fn hand_off(&self, id: &str, req: HandoffRequest) -> Result<HandoffPackage, Error> {
        let _lock = self.session_locks.lock(id).await;
        let mut session = self.session(id).await?;
        if session.with_human {
            return Err(Error::Conflict(format!(
                "session {id:?} is with a person already"
            )));
        }
        let target = req.target.unwrap_or(Target::Agent);
        if target == Target::Bot {
            return Err(Error::Invalid("target must be a person, not bot".into()));
        }
        let detail = match &req.detail {
            Some(d) => super::checked_text("detail", d, &self.config.limits)?.to_string(),
            None => "handed off by the API".into(),
        };
        let intent = session.topic.intent.clone();
        let vip = self.config.routing.is_vip(session.customer.tier.as_deref());
        let p = handoff::hand_off(
            &mut session,
            Cause {
                reason: Reason::Api,
                detail: detail.clone(),
                route: Route {
                    target,
                    priority: req.priority.unwrap_or(Priority::Normal),
                    reason: detail,
                    sla_minutes: None,
                    rule: "api".into(),
                },
                intent: intent.as_deref(),
                severity: None,
                vip,
            },
        );
        self.sessions.put(&session).await?;
        crate::dialog::chat::send_handoff(self, p.clone()).await;
        Ok(p)
    }

    /// Suggested replies, intent and flow for the customer's latest question.
    pub async fn assist(&self, req: AssistRequest) -> Result<AssistResponse, Error> {
        crate::dialog::assist::assist(self, req).await
    }

    /// Stores feedback on a reply (with the question and the entry that answered it, while the
    /// session lives).
    pub async fn feedback(&self, req: FeedbackRequest) -> Result<Feedback, Error> {
        let Some((session_id, n)) = req.turn_id.rsplit_once('-') else {
            return Err(Error::Invalid(format!(
                "turn_id {:?} is not a turn id (<session id>-<n>)",
                req.turn_id
            )));
        };
        if !crate::dialog::session::valid_id(session_id) || n.parse::<u32>().is_err() {
            return Err(Error::Invalid(format!(
                "turn_id {:?} is not a turn id (<session id>-<n>)",
                req.turn_id
            )));
        }
        if req.helpful.is_none() && req.rating.is_none() {
            return Err(Error::Invalid("give helpful or rating".into()));
        }
        if let Some(r) = req.rating
            && !(1..=5).contains(&r)
        {
            return Err(Error::Invalid(format!(
                "rating must be between 1 and 5, got {r}"
            )));
        }
        if let Some(c) = &req.comment
            && c.chars().count() > self.config.limits.max_input_chars
        {
            return Err(Error::TooLarge(format!(
                "comment is longer than {} characters",
                self.config.limits.max_input_chars
            )));
        }
        if let Some(f) = &req.faq_id
            && self.kb.get(f).await?.is_none()
        {
            return Err(Error::NotFound(format!(
                "faq_id {f:?} is not in the knowledge base"
            )));
        }
        // While the session lives, the turn must exist; its question and answer are kept with the
        // feedback.
        let (mut question, mut answered, mut customer) = (None, None, None);
        if let Some(session) = self.sessions.get(session_id).await? {
            customer = session.customer.id.clone();
            let i = session
                .turns
                .iter()
                .position(|t| t.id == req.turn_id && t.role == Role::Bot)
                .ok_or_else(|| {
                    Error::NotFound(format!(
                        "turn {:?} is not a reply of session {session_id:?}",
                        req.turn_id
                    ))
                })?;
            answered = session.turns[i].faq_id.clone();
            question = session.turns[..i]
                .iter()
                .rev()
                .find(|t| t.role == Role::Customer)
                .map(|t| t.rewritten.clone().unwrap_or_else(|| t.text.clone()));
        }
        // Feedback is analysed: what the customer wrote is kept masked.
        let masked = |t: String| crate::privacy::mask(&t).into_owned();
        let stored = self
            .feedback
            .add(
                Feedback {
                    id: 0,
                    turn_id: req.turn_id.clone(),
                    session_id: session_id.to_string(),
                    helpful: req.helpful,
                    rating: req.rating,
                    comment: req.comment.map(masked),
                    faq_id: req.faq_id,
                    question: question.map(masked),
                    answered_faq_id: answered,
                    created_at: crate::dialog::session::now(),
                    intent: None,
                    should_handoff: None,
                    annotator: None,
                    source: None,
                },
                customer.as_deref(),
            )
            .await
            .map_err(Error::storage)?;
        Ok(stored)
    }

    /// Stored feedback, newest first: `limit` 1–1000 (default 100).
    pub async fn list_feedback(
        &self,
        session_id: Option<&str>,
        limit: Option<i64>,
    ) -> Result<Vec<Feedback>, Error> {
        let limit = super::checked_limit(limit, 100)?;
        self.feedback
            .list(session_id, limit)
            .await
            .map_err(Error::storage)
    }
}

fn no_session(id: &str) -> Error {
    Error::NotFound(format!("session {id:?} does not exist (or expired)"))
}
