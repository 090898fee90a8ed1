//! `GET /v1/index`: what the serving KB index holds and how it was built.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::SharedState;
use super::error::ErrorBody;
use crate::error::Error;
use crate::matcher::BuildStats;

#[derive(Debug, Serialize, ToSchema)]
pub struct IndexInfo {
    /// Model version whose vectors the index holds.
    pub model: String,
    #[serde(flatten)]
    pub stats: BuildStats,
}

/// The serving index: entries, questions, vectors embedded vs reused, HNSW or exact.
#[utoipa::path(get, path = "/v1/index", tag = "knowledge base", responses(
    (status = 200, body = IndexInfo), (status = 503, body = ErrorBody)))]
pub async fn info(State(s): State<SharedState>) -> Result<Json<IndexInfo>, Error> {
    let index = s.index.load_full().ok_or(Error::IndexNotReady)?;
    Ok(Json(IndexInfo {
        model: index.model_version.clone(),
        stats: index.stats.clone(),
    }))
}
