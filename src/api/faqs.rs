//! `/v1/faqs`: knowledge-base entries. Changes are committed at once and searchable as soon as
//! the background index rebuild has swapped in (about a second for thousands of entries).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::SharedState;
use super::json::ApiJson;
use crate::error::{ApiError, ErrorBody};
use crate::kb::{FaqEntry, StoredEntry};

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    #[serde(default)]
    pub offset: Option<i64>,
    /// At most 1000.
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub category: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FaqList {
    pub total: i64,
    pub offset: i64,
    pub entries: Vec<StoredEntry>,
}

fn invalid(e: &FaqEntry) -> Result<(), ApiError> {
    let errs = e.validate();
    match errs.first() {
        None => Ok(()),
        Some(_) => Err(ApiError::Invalid(
            errs.iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

/// List entries, ordered by id.
#[utoipa::path(get, path = "/v1/faqs", tag = "knowledge base", params(ListParams), responses((status = 200, body = FaqList)))]
pub async fn list(
    State(s): State<SharedState>,
    Query(p): Query<ListParams>,
) -> Result<Json<FaqList>, ApiError> {
    let offset = p.offset.unwrap_or(0).max(0);
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(FaqList {
        total: s.kb.count().await?,
        offset,
        entries: s.kb.list(offset, limit, p.category.as_deref()).await?,
    }))
}

/// Create an entry (409 if the id exists).
#[utoipa::path(post, path = "/v1/faqs", tag = "knowledge base", request_body = FaqEntry, responses(
    (status = 201, body = StoredEntry), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(s): State<SharedState>,
    ApiJson(e): ApiJson<FaqEntry>,
) -> Result<(StatusCode, Json<StoredEntry>), ApiError> {
    invalid(&e)?;
    if s.kb.get(&e.id).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "FAQ {} already exists; PUT /v1/faqs/{} replaces it",
            e.id, e.id
        )));
    }
    s.kb.upsert_all(std::slice::from_ref(&e)).await?;
    s.reindex.notify_one();
    let stored =
        s.kb.get(&e.id)
            .await?
            .ok_or_else(|| ApiError::Storage("entry vanished".into()))?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// One entry.
#[utoipa::path(get, path = "/v1/faqs/{id}", tag = "knowledge base", responses(
    (status = 200, body = StoredEntry), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(s): State<SharedState>,
    Path(id): Path<String>,
) -> Result<Json<StoredEntry>, ApiError> {
    s.kb.get(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no FAQ with id {id}")))
}

/// Create or replace an entry; the body's id must equal the path's.
#[utoipa::path(put, path = "/v1/faqs/{id}", tag = "knowledge base", request_body = FaqEntry, responses(
    (status = 200, body = StoredEntry), (status = 422, body = ErrorBody)))]
pub async fn replace(
    State(s): State<SharedState>,
    Path(id): Path<String>,
    ApiJson(e): ApiJson<FaqEntry>,
) -> Result<Json<StoredEntry>, ApiError> {
    if e.id != id {
        return Err(ApiError::Invalid(format!(
            "id: body has {:?} but the path has {id:?}",
            e.id
        )));
    }
    invalid(&e)?;
    s.kb.upsert_all(std::slice::from_ref(&e)).await?;
    s.reindex.notify_one();
    let stored =
        s.kb.get(&id)
            .await?
            .ok_or_else(|| ApiError::Storage("entry vanished".into()))?;
    Ok(Json(stored))
}

/// Delete an entry; it is never returned by /v1/match again.
#[utoipa::path(delete, path = "/v1/faqs/{id}", tag = "knowledge base", responses(
    (status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(s): State<SharedState>,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !s.kb.delete(&id).await? {
        return Err(ApiError::NotFound(format!("no FAQ with id {id}")));
    }
    // Until the rebuilt index is swapped in, /v1/match filters deleted ids out by revision check.
    s.reindex.notify_one();
    Ok(StatusCode::NO_CONTENT)
}
