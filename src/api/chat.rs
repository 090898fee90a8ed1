//! `POST /v1/chat` (one customer turn), the sessions (`GET/DELETE /v1/sessions/{id}`,
//! `POST /v1/sessions/{id}/release`, `POST /v1/sessions/{id}/handoff`), agent assist
//! (`POST /v1/assist`) and feedback (`POST/GET /v1/feedback`).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::SharedState;
use super::json::ApiJson;
use crate::analytics::feedback::Feedback;
use crate::dialog::assist::{AssistRequest, AssistResponse};
use crate::dialog::chat::{ChatRequest, ChatResponse};
use crate::dialog::handoff::{self, Cause, HandoffPackage, Reason};
use crate::dialog::session::{Role, Session};
use crate::error::{ApiError, ErrorBody};
use crate::intent::routing::{Priority, Route, Target};

/// One customer turn: the bot's reply and what it did.
#[utoipa::path(post, path = "/v1/chat", tag = "dialog", request_body = ChatRequest, responses(
    (status = 200, body = ChatResponse),
    (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn chat(
    State(s): State<SharedState>,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<Json<ChatResponse>, ApiError> {
    let customer = req.customer.clone();
    if let Some(id) = customer.as_ref().and_then(|c| c.id.as_deref()) {
        super::recommend::checked_customer_id("customer.id", id)?;
    }
    let text = req.text.trim().to_string();
    let r = crate::dialog::chat::turn(&s, req).await?;
    // A known customer's question goes into their profile (with the entry that answered it).
    if let Some(c) = customer
        && let Some(id) = c.id
        && r.action != crate::dialog::chat::Action::WithAgent
    {
        let answered = (r.action == crate::dialog::chat::Action::Answer)
            .then(|| r.matches.first())
            .flatten()
            .map(|m| (m.faq_id.clone(), m.category.clone()));
        let s = s.clone();
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
            super::recommend::record_consult(&s, &id, &text, a).await;
        });
    }
    Ok(Json(r))
}

async fn session_or_404(s: &super::AppState, id: &str) -> Result<Session, ApiError> {
    s.sessions
        .get(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("session {id:?} does not exist (or expired)")))
}

/// A conversation: turns, slots, flow, hand-off.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "dialog", params(("id" = String, Path)),
    responses((status = 200, body = Session), (status = 404, body = ErrorBody)))]
pub async fn get_session(
    State(s): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    Ok(Json(session_or_404(&s, &id).await?))
}

/// Ends a conversation.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "dialog", params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_session(
    State(s): State<SharedState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let _lock = s.session_locks.lock(&id).await;
    if s.sessions.delete(&id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound(format!(
            "session {id:?} does not exist (or expired)"
        )))
    }
}

/// Gives a conversation a person had back to the bot.
#[utoipa::path(post, path = "/v1/sessions/{id}/release", tag = "dialog", params(("id" = String, Path)),
    responses((status = 200, body = Session), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn release(
    State(s): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<Session>, ApiError> {
    let _lock = s.session_locks.lock(&id).await;
    let mut session = session_or_404(&s, &id).await?;
    if !session.with_human {
        return Err(ApiError::Conflict(format!(
            "session {id:?} is with the bot already"
        )));
    }
    session.with_human = false;
    session.fallbacks = 0;
    session.flow = None;
    session.updated_at = crate::dialog::session::now();
    s.sessions.put(&session).await?;
    Ok(Json(session))
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HandoffRequest {
    /// Why, in words (shown to the agent).
    #[serde(default)]
    pub detail: Option<String>,
    /// `agent` (default), `vip_agent` or `complaints`.
    #[serde(default)]
    pub target: Option<Target>,
    #[serde(default)]
    pub priority: Option<Priority>,
}

/// Hands a conversation to a person now (e.g. a supervisor's decision); the package goes to
/// the desk's webhook like any other.
#[utoipa::path(post, path = "/v1/sessions/{id}/handoff", tag = "dialog", params(("id" = String, Path)),
    request_body = HandoffRequest,
    responses((status = 200, body = HandoffPackage), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn hand_off(
    State(s): State<SharedState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<HandoffRequest>,
) -> Result<Json<HandoffPackage>, ApiError> {
    let _lock = s.session_locks.lock(&id).await;
    let mut session = session_or_404(&s, &id).await?;
    if session.with_human {
        return Err(ApiError::Conflict(format!(
            "session {id:?} is with a person already"
        )));
    }
    let target = req.target.unwrap_or(Target::Agent);
    if target == Target::Bot {
        return Err(ApiError::Invalid("target must be a person, not bot".into()));
    }
    let detail = req.detail.unwrap_or_else(|| "handed off by the API".into());
    let intent = session.topic.intent.clone();
    let vip = s.config.routing.is_vip(session.customer.tier.as_deref());
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
    s.sessions.put(&session).await?;
    crate::dialog::chat::send_handoff(&s, p.clone());
    Ok(Json(p))
}

/// Suggested replies, intent and flow for the customer's latest question.
#[utoipa::path(post, path = "/v1/assist", tag = "dialog", request_body = AssistRequest, responses(
    (status = 200, body = AssistResponse), (status = 404, body = ErrorBody),
    (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn assist(
    State(s): State<SharedState>,
    ApiJson(req): ApiJson<AssistRequest>,
) -> Result<Json<AssistResponse>, ApiError> {
    Ok(Json(crate::dialog::assist::assist(&s, req).await?))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackRequest {
    /// The `turn_id` of a `/v1/chat` reply.
    pub turn_id: String,
    #[serde(default)]
    pub helpful: Option<bool>,
    /// 1–5.
    #[serde(default)]
    pub rating: Option<u8>,
    #[serde(default)]
    pub comment: Option<String>,
    /// The entry that should have answered.
    #[serde(default)]
    pub faq_id: Option<String>,
}

/// Feedback on a reply, stored for analytics and retraining.
#[utoipa::path(post, path = "/v1/feedback", tag = "dialog", request_body = FeedbackRequest,
    responses((status = 201, body = Feedback), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn feedback(
    State(s): State<SharedState>,
    ApiJson(req): ApiJson<FeedbackRequest>,
) -> Result<(StatusCode, Json<Feedback>), ApiError> {
    let Some((session_id, n)) = req.turn_id.rsplit_once('-') else {
        return Err(ApiError::Invalid(format!(
            "turn_id {:?} is not a turn id (<session id>-<n>)",
            req.turn_id
        )));
    };
    if !crate::dialog::session::valid_id(session_id) || n.parse::<u32>().is_err() {
        return Err(ApiError::Invalid(format!(
            "turn_id {:?} is not a turn id (<session id>-<n>)",
            req.turn_id
        )));
    }
    if req.helpful.is_none() && req.rating.is_none() {
        return Err(ApiError::Invalid("give helpful or rating".into()));
    }
    if let Some(r) = req.rating
        && !(1..=5).contains(&r)
    {
        return Err(ApiError::Invalid(format!(
            "rating must be between 1 and 5, got {r}"
        )));
    }
    if let Some(c) = &req.comment
        && c.chars().count() > s.config.limits.max_input_chars
    {
        return Err(ApiError::TooLarge(format!(
            "comment is longer than {} characters",
            s.config.limits.max_input_chars
        )));
    }
    if let Some(f) = &req.faq_id
        && s.kb.get(f).await?.is_none()
    {
        return Err(ApiError::NotFound(format!(
            "faq_id {f:?} is not in the knowledge base"
        )));
    }
    // While the session lives, the turn must exist; its question and answer are kept with the
    // feedback.
    let (mut question, mut answered) = (None, None);
    if let Some(session) = s.sessions.get(session_id).await? {
        let i = session
            .turns
            .iter()
            .position(|t| t.id == req.turn_id && t.role == Role::Bot)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
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
    let stored = s
        .feedback
        .add(Feedback {
            id: 0,
            turn_id: req.turn_id.clone(),
            session_id: session_id.to_string(),
            helpful: req.helpful,
            rating: req.rating,
            comment: req.comment,
            faq_id: req.faq_id,
            question,
            answered_faq_id: answered,
            created_at: crate::dialog::session::now(),
        })
        .await
        .map_err(|e| ApiError::Storage(e.to_string()))?;
    Ok((StatusCode::CREATED, Json(stored)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct FeedbackQuery {
    pub session_id: Option<String>,
    /// 1–1000, default 100.
    pub limit: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FeedbackList {
    pub feedback: Vec<Feedback>,
}

/// Stored feedback, newest first.
#[utoipa::path(get, path = "/v1/feedback", tag = "dialog", params(FeedbackQuery),
    responses((status = 200, body = FeedbackList), (status = 422, body = ErrorBody)))]
pub async fn list_feedback(
    State(s): State<SharedState>,
    Query(q): Query<FeedbackQuery>,
) -> Result<Json<FeedbackList>, ApiError> {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::Invalid(format!(
            "limit must be between 1 and 1000, got {limit}"
        )));
    }
    let feedback = s
        .feedback
        .list(q.session_id.as_deref(), limit)
        .await
        .map_err(|e| ApiError::Storage(e.to_string()))?;
    Ok(Json(FeedbackList { feedback }))
}
