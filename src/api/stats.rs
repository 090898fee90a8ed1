//! What happened: `GET /v1/stats` (numbers in total and over time), `/v1/stats/top-questions`,
//! `/v1/stats/weak-spots`, `/v1/stats/unanswered` (knowledge gaps) and
//! `POST /v1/stats/unanswered/{id}/draft`; a conversation's recorded turns
//! (`GET /v1/conversations/{id}`); the service's clock (`GET/POST /v1/admin/clock`).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::SharedState;
use super::error::ErrorBody;
use super::json::ApiJson;
use super::reject::{ApiPath, ApiQuery};
use crate::analytics::stats::{TopQuestions, WeakSpots};
use crate::analytics::turns::TurnRecord;
pub use crate::core::alerts::AlertQuery;
pub use crate::core::analytics::{
    AnnotationRequest, ClockRequest, ClockState, ConversationsQuery, GapCluster, Nearest, Stats,
    StatsQuery, Unanswered, Window,
};
pub use crate::core::report::ReportQuery;
use crate::error::Error;
use crate::kb::StoredEntry;

/// Volume, answer / clarify / no-answer / hand-off rates, containment, flow success, p50/p95
/// latency, satisfaction and feedback collection, in total and per bucket; SLA attainment of
/// the window's hand-offs.
#[utoipa::path(get, path = "/v1/stats", tag = "analytics", params(StatsQuery), responses(
    (status = 200, body = Stats), (status = 422, body = ErrorBody)))]
pub async fn stats(
    State(s): State<SharedState>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<Stats>, Error> {
    Ok(Json(s.stats(&q).await?))
}

/// The most asked questions, the entries answered most, hot intents and categories.
#[utoipa::path(get, path = "/v1/stats/top-questions", tag = "analytics", params(StatsQuery), responses(
    (status = 200, body = TopQuestions), (status = 422, body = ErrorBody)))]
pub async fn top_questions(
    State(s): State<SharedState>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<TopQuestions>, Error> {
    Ok(Json(s.top_questions(&q).await?))
}

/// Entries and categories with the worst feedback or the most re-asks.
#[utoipa::path(get, path = "/v1/stats/weak-spots", tag = "analytics", params(StatsQuery), responses(
    (status = 200, body = WeakSpots), (status = 422, body = ErrorBody)))]
pub async fn weak_spots(
    State(s): State<SharedState>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<WeakSpots>, Error> {
    Ok(Json(s.weak_spots(&q).await?))
}

/// Knowledge gaps: unanswered, abandoned and badly rated questions clustered by meaning,
/// each with its count, representative, wordings and the nearest existing entry.
#[utoipa::path(get, path = "/v1/stats/unanswered", tag = "analytics", params(StatsQuery), responses(
    (status = 200, body = Unanswered), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn unanswered(
    State(s): State<SharedState>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<Unanswered>, Error> {
    Ok(Json(s.unanswered(&q).await?))
}

/// Turns a knowledge gap (as listed for the same query) into a disabled draft entry
/// `draft-<id>` for an editor to answer and enable.
#[utoipa::path(post, path = "/v1/stats/unanswered/{id}/draft", tag = "analytics",
    params(("id" = String, Path, description = "The cluster's id"), StatsQuery), responses(
    (status = 201, body = StoredEntry), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn draft(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<(StatusCode, Json<StoredEntry>), Error> {
    Ok((StatusCode::CREATED, Json(s.draft_from_gap(&id, &q).await?)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Conversations {
    pub conversations: Vec<crate::analytics::turns::SessionSummary>,
}

/// Recorded conversations, newest first, searchable by what the customer wrote (masked).
#[utoipa::path(get, path = "/v1/conversations", tag = "analytics", params(ConversationsQuery),
    responses((status = 200, body = Conversations), (status = 422, body = ErrorBody)))]
pub async fn conversations(
    State(s): State<SharedState>,
    ApiQuery(q): ApiQuery<ConversationsQuery>,
) -> Result<Json<Conversations>, Error> {
    Ok(Json(Conversations {
        conversations: s.conversations(&q).await?,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Conversation {
    pub session_id: String,
    /// Each recorded turn (masked text) with what kefu decided.
    pub turns: Vec<TurnRecord>,
}

/// A conversation's recorded turns, kept after the session itself has expired.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "analytics",
    params(("id" = String, Path, description = "The session's id")), responses(
    (status = 200, body = Conversation), (status = 404, body = ErrorBody)))]
pub async fn conversation(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Conversation>, Error> {
    let turns = s.conversation_turns(&id).await?;
    if turns.is_empty() {
        return Err(Error::NotFound(format!(
            "no recorded turns of session {id:?}"
        )));
    }
    Ok(Json(Conversation {
        session_id: id,
        turns,
    }))
}

/// The service's clock.
#[utoipa::path(get, path = "/v1/admin/clock", tag = "ops", responses((status = 200, body = ClockState)))]
pub async fn get_clock(State(s): State<SharedState>) -> Json<ClockState> {
    Json(s.clock())
}

/// Moves the service's clock (only with `server.manual_clock`, for scripted traffic).
#[utoipa::path(post, path = "/v1/admin/clock", tag = "ops", request_body = ClockRequest, responses(
    (status = 200, body = ClockState), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn move_clock(
    State(s): State<SharedState>,
    ApiJson(r): ApiJson<ClockRequest>,
) -> Result<Json<ClockState>, Error> {
    Ok(Json(s.move_clock(&r)?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<crate::analytics::alerts::Alert>,
}

/// Alerts, newest first: firing and resolved.
#[utoipa::path(get, path = "/v1/alerts", tag = "analytics", params(AlertQuery), responses(
    (status = 200, body = AlertList), (status = 422, body = ErrorBody)))]
pub async fn alerts(
    State(s): State<SharedState>,
    ApiQuery(q): ApiQuery<AlertQuery>,
) -> Result<Json<AlertList>, Error> {
    Ok(Json(AlertList {
        alerts: s.list_alerts(&q).await?,
    }))
}

/// Evaluates the alert rules now (they are also evaluated every `alerts.interval_secs`);
/// returns the alerts that fired or resolved.
#[utoipa::path(post, path = "/v1/alerts:evaluate", tag = "analytics", responses(
    (status = 200, body = AlertList)))]
pub async fn evaluate_alerts(State(s): State<SharedState>) -> Result<Json<AlertList>, Error> {
    Ok(Json(AlertList {
        alerts: s.evaluate_alerts().await?,
    }))
}

/// The operations report of a window (default: the last 7 days) as one self-contained HTML
/// page (`kefu report` writes the same); its data is embedded as JSON
/// (`<script id="report-data">`).
#[utoipa::path(get, path = "/v1/reports/weekly", tag = "analytics", params(ReportQuery), responses(
    (status = 200, content_type = "text/html", body = String), (status = 422, body = ErrorBody)))]
pub async fn report(
    State(s): State<SharedState>,
    ApiQuery(q): ApiQuery<ReportQuery>,
) -> Result<axum::response::Html<String>, Error> {
    let r = s.report(&q).await?;
    Ok(axum::response::Html(crate::analytics::report::html(&r)))
}

/// Did recommendations convert: impressions, click-through and conversion (a click or purchase
/// of a shown item by the same customer within `recommend.conversion_window_secs`) by
/// strategy, source and channel; with `recommend.experiment`, the treatment against the
/// popularity control with the lift and its 95% interval.
#[utoipa::path(get, path = "/v1/stats/recommendations", tag = "analytics", params(StatsQuery), responses(
    (status = 200, body = crate::analytics::conversion::RecommendationStats), (status = 422, body = ErrorBody)))]
pub async fn recommendations(
    State(s): State<SharedState>,
    ApiQuery(q): ApiQuery<StatsQuery>,
) -> Result<Json<crate::analytics::conversion::RecommendationStats>, Error> {
    Ok(Json(s.recommendation_stats(&q).await?))
}

/// Labels a recorded turn: the entry or intent that was right, or that a person should have
/// taken over. Stored as labelled feedback (`source: annotation`, listed by `GET
/// /v1/feedback`) for retraining; not counted in satisfaction.
#[utoipa::path(post, path = "/v1/annotations", tag = "analytics", request_body = AnnotationRequest, responses(
    (status = 201, body = crate::analytics::feedback::Feedback), (status = 404, body = ErrorBody),
    (status = 422, body = ErrorBody)))]
pub async fn annotate(
    State(s): State<SharedState>,
    ApiJson(req): ApiJson<AnnotationRequest>,
) -> Result<(StatusCode, Json<crate::analytics::feedback::Feedback>), Error> {
    Ok((StatusCode::CREATED, Json(s.annotate(req).await?)))
}
