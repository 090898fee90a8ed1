//! `POST /v1/match`: the customer's question against the knowledge base.

use axum::Json;
use axum::extract::State;

use super::SharedState;
use super::error::ErrorBody;
use super::json::ApiJson;
pub use crate::core::matching::{
    Filters, Match, MatchRequest, MatchResponse, PassageSource, Signals,
};
use crate::error::Error;

/// Match a question against the knowledge base.
#[utoipa::path(post, path = "/v1/match", tag = "matching", request_body = MatchRequest, responses(
    (status = 200, body = MatchResponse),
    (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn run(
    State(s): State<SharedState>,
    ApiJson(req): ApiJson<MatchRequest>,
) -> Result<Json<MatchResponse>, Error> {
    Ok(Json(s.match_request(req).await?))
}
