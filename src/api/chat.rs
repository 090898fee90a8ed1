//! `POST /v1/chat` (one customer turn), the sessions (`GET/DELETE /v1/sessions/{id}`,
//! `POST /v1/sessions/{id}/release`, `POST /v1/sessions/{id}/handoff`), agent assist
//! (`POST /v1/assist`) and feedback (`POST/GET /v1/feedback`).

use axum::Extension;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::SharedState;
use super::error::ErrorBody;
use super::json::ApiJson;
use super::reject::{ApiPath, ApiQuery};
use crate::analytics::feedback::Feedback;
use crate::auth::Caller;
pub use crate::core::conversation::{FeedbackRequest, HandoffRequest};
use crate::dialog::assist::{AssistRequest, AssistResponse};
use crate::dialog::chat::{ChatRequest, ChatResponse};
use crate::dialog::handoff::HandoffPackage;
use crate::dialog::session::Session;
use crate::error::Error;

/// One customer turn: the bot's reply and what it did.
#[utoipa::path(post, path = "/v1/chat", tag = "dialog", request_body = ChatRequest, responses(
    (status = 200, body = ChatResponse),
    (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn chat(
    State(s): State<SharedState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<ChatRequest>,
) -> Result<Json<ChatResponse>, Error> {
    if let Some(id) = &req.session_id {
        may_use_session(&caller, id)?;
    }
    let r = s.chat_turn(req).await?;
    Ok(Json(r))
}

/// A `chat` key continues only conversations the server started (and gives feedback only on
/// those): their ids are unguessable, so another customer's conversation is out of reach.
fn may_use_session(caller: &Caller, id: &str) -> Result<(), Error> {
    if caller.may_choose_session() || crate::dialog::session::minted(id) {
        return Ok(());
    }
    Err(Error::Forbidden(format!(
        "the key {:?} may continue only conversations kefu started: leave session_id out to \
         start one and send back the session_id kefu returns (choosing ids needs the `agent` scope)",
        caller.name()
    )))
}

/// A conversation: turns, slots, flow, hand-off.
#[utoipa::path(get, path = "/v1/sessions/{id}", tag = "dialog", params(("id" = String, Path, description = "The session's id")),
    responses((status = 200, body = Session), (status = 404, body = ErrorBody)))]
pub async fn get_session(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, Error> {
    Ok(Json(s.session(&id).await?))
}

/// Ends a conversation.
#[utoipa::path(delete, path = "/v1/sessions/{id}", tag = "dialog", params(("id" = String, Path, description = "The session's id")),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub async fn delete_session(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, Error> {
    s.delete_session(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Gives a conversation a person had back to the bot.
#[utoipa::path(post, path = "/v1/sessions/{id}/release", tag = "dialog", params(("id" = String, Path, description = "The session's id")),
    responses((status = 200, body = Session), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn release(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, Error> {
    Ok(Json(s.release(&id).await?))
}

/// Hands a conversation to a person now (e.g. a supervisor's decision); the package goes to
/// the desk's webhook like any other.
#[utoipa::path(post, path = "/v1/sessions/{id}/handoff", tag = "dialog", params(("id" = String, Path, description = "The session's id")),
    request_body = HandoffRequest,
    responses((status = 200, body = HandoffPackage), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn hand_off(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<HandoffRequest>,
) -> Result<Json<HandoffPackage>, Error> {
    Ok(Json(s.hand_off(&id, req).await?))
}

/// Suggested replies, intent and flow for the customer's latest question.
#[utoipa::path(post, path = "/v1/assist", tag = "dialog", request_body = AssistRequest, responses(
    (status = 200, body = AssistResponse), (status = 404, body = ErrorBody),
    (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn assist(
    State(s): State<SharedState>,
    ApiJson(req): ApiJson<AssistRequest>,
) -> Result<Json<AssistResponse>, Error> {
    Ok(Json(s.assist(req).await?))
}

/// Feedback on a reply, stored for analytics and retraining.
#[utoipa::path(post, path = "/v1/feedback", tag = "dialog", request_body = FeedbackRequest,
    responses((status = 201, body = Feedback), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn feedback(
    State(s): State<SharedState>,
    Extension(caller): Extension<Caller>,
    ApiJson(req): ApiJson<FeedbackRequest>,
) -> Result<(StatusCode, Json<Feedback>), Error> {
    if let Some((session, _)) = req.turn_id.rsplit_once('-') {
        may_use_session(&caller, session)?;
    }
    Ok((StatusCode::CREATED, Json(s.feedback(req).await?)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FeedbackQuery {
    pub session_id: Option<String>,
    /// 1–1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
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
    ApiQuery(q): ApiQuery<FeedbackQuery>,
) -> Result<Json<FeedbackList>, Error> {
    let feedback = s.list_feedback(q.session_id.as_deref(), q.limit).await?;
    Ok(Json(FeedbackList { feedback }))
}
