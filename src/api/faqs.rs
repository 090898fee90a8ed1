//! `/v1/faqs`: knowledge-base entries. Changes are committed at once and searchable as soon as
//! the background index rebuild has swapped in (about a second for thousands of entries).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::SharedState;
use super::error::ErrorBody;
use super::json::ApiJson;
use super::reject::{ApiPath, ApiQuery, ApiText};
use crate::error::Error;
use crate::kb::import::{self, Format};
use crate::kb::store::ImportSummary;
use crate::kb::{FaqEntry, StoredEntry};

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    #[serde(default)]
    pub offset: Option<i64>,
    /// At most 1000.
    #[serde(default)]
    pub limit: Option<i64>,
    #[serde(default)]
    pub category: Option<String>,
    /// Only entries with this text in their id, questions or answers.
    #[serde(default)]
    pub q: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FaqList {
    /// Entries that pass the filters, in all.
    pub total: i64,
    pub offset: i64,
    pub entries: Vec<StoredEntry>,
}

fn invalid(e: &FaqEntry) -> Result<(), Error> {
    let errs = e.validate();
    match errs.first() {
        None => Ok(()),
        Some(_) => Err(Error::Invalid(
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
    ApiQuery(p): ApiQuery<ListParams>,
) -> Result<Json<FaqList>, Error> {
    let offset = p.offset.unwrap_or(0).max(0);
    let limit = p.limit.unwrap_or(100).clamp(1, 1000);
    let (entries, total) =
        s.kb.list(offset, limit, p.category.as_deref(), p.q.as_deref())
            .await?;
    Ok(Json(FaqList {
        total,
        offset,
        entries,
    }))
}

/// Create an entry (409 if the id exists).
#[utoipa::path(post, path = "/v1/faqs", tag = "knowledge base", request_body = FaqEntry, responses(
    (status = 201, body = StoredEntry), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create(
    State(s): State<SharedState>,
    ApiJson(e): ApiJson<FaqEntry>,
) -> Result<(StatusCode, Json<StoredEntry>), Error> {
    invalid(&e)?;
    if s.kb.get(&e.id).await?.is_some() {
        return Err(Error::Conflict(format!(
            "FAQ {} already exists; PUT /v1/faqs/{} replaces it",
            e.id, e.id
        )));
    }
    s.kb.upsert_all(std::slice::from_ref(&e)).await?;
    s.reindex.notify_one();
    let stored =
        s.kb.get(&e.id)
            .await?
            .ok_or_else(|| Error::Storage("entry vanished".into()))?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// One entry.
#[utoipa::path(get, path = "/v1/faqs/{id}", tag = "knowledge base", params(("id" = String, Path, description = "The entry's id")), responses(
    (status = 200, body = StoredEntry), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<StoredEntry>, Error> {
    s.kb.get(&id)
        .await?
        .map(Json)
        .ok_or_else(|| Error::NotFound(format!("no FAQ with id {id}")))
}

/// Replace an existing entry (create one with `POST /v1/faqs`); the body's `id` may be left
/// out, and must equal the path's when given. 404 for an unknown id.
#[utoipa::path(put, path = "/v1/faqs/{id}", tag = "knowledge base", params(("id" = String, Path, description = "The entry's id")), request_body = FaqEntry, responses(
    (status = 200, body = StoredEntry), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn replace(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(mut body): ApiJson<serde_json::Value>,
) -> Result<Json<StoredEntry>, Error> {
    let Some(fields) = body.as_object_mut() else {
        return Err(Error::Invalid(
            "the body must be a JSON object (an FAQ entry)".into(),
        ));
    };
    match fields.get("id") {
        None => {
            fields.insert("id".into(), id.clone().into());
        }
        Some(v) if v.as_str() == Some(id.as_str()) => {}
        Some(v) => {
            return Err(Error::Invalid(format!(
                "id: body has {v} but the path has {id:?}"
            )));
        }
    }
    let e: FaqEntry = serde_json::from_value(body)
        .map_err(|e| Error::Invalid(super::reject::humanize(&e.to_string())))?;
    invalid(&e)?;
    if s.kb.get(&id).await?.is_none() {
        return Err(Error::NotFound(format!(
            "no FAQ with id {id}; create it with POST /v1/faqs"
        )));
    }
    s.kb.upsert_all(std::slice::from_ref(&e)).await?;
    s.reindex.notify_one();
    let stored =
        s.kb.get(&id)
            .await?
            .ok_or_else(|| Error::Storage("entry vanished".into()))?;
    Ok(Json(stored))
}

/// Delete an entry; it is never returned by /v1/match again.
#[utoipa::path(delete, path = "/v1/faqs/{id}", tag = "knowledge base", params(("id" = String, Path, description = "The entry's id")), responses(
    (status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, Error> {
    if !s.kb.delete(&id).await? {
        return Err(Error::NotFound(format!("no FAQ with id {id}")));
    }
    // Until the rebuilt index is swapped in, /v1/match filters deleted ids out by revision check.
    s.reindex.notify_one();
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatParam {
    /// `jsonl`, `csv` or `md`; for imports, the Content-Type decides when absent
    /// (`application/x-ndjson`/`application/jsonl`, `text/csv`, `text/markdown`).
    #[serde(default)]
    pub format: Option<Format>,
}

/// Import entries (JSONL, CSV or Markdown body): all validated first, every problem reported
/// with its line (422 `invalid_import`), then written in one transaction — all or nothing.
#[utoipa::path(post, path = "/v1/faqs:import", tag = "knowledge base", params(FormatParam),
    request_body(description = "JSONL, CSV or Markdown (the Content-Type or `format` says which)",
        content((String = "application/x-ndjson"), (String = "text/csv"), (String = "text/markdown"))),
    responses((status = 200, body = ImportSummary), (status = 422, body = ErrorBody)))]
pub async fn import(
    State(s): State<SharedState>,
    ApiQuery(p): ApiQuery<FormatParam>,
    headers: HeaderMap,
    ApiText(body): ApiText,
) -> Result<Json<ImportSummary>, Error> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let format = match p.format {
        Some(f) => f,
        None if ct.starts_with("text/csv") => Format::Csv,
        None if ct.starts_with("text/markdown") => Format::Md,
        None if ct.contains("ndjson")
            || ct.contains("jsonl")
            || ct.starts_with("application/json") =>
        {
            Format::Jsonl
        }
        None => {
            return Err(Error::UnsupportedMediaType(format!(
                "cannot tell the format from Content-Type {ct:?}: use ?format=jsonl|csv|md"
            )));
        }
    };
    let entries = import::parse(format, &body, "api").map_err(Error::InvalidImport)?;
    let summary = s.kb.upsert_all(&entries).await?;
    s.reindex.notify_one();
    Ok(Json(summary))
}

/// Every entry, in a format the import reads (default JSONL).
#[utoipa::path(get, path = "/v1/faqs:export", tag = "knowledge base", params(FormatParam),
    responses((status = 200, body = String, description = "JSONL, CSV or Markdown")))]
pub async fn export(
    State(s): State<SharedState>,
    ApiQuery(p): ApiQuery<FormatParam>,
) -> Result<impl IntoResponse, Error> {
    let format = p.format.unwrap_or(Format::Jsonl);
    let entries: Vec<FaqEntry> = s.kb.all().await?.into_iter().map(|e| e.entry).collect();
    let ct = match format {
        Format::Jsonl => "application/x-ndjson; charset=utf-8",
        Format::Csv => "text/csv; charset=utf-8",
        Format::Md => "text/markdown; charset=utf-8",
    };
    Ok((
        [(header::CONTENT_TYPE, ct)],
        import::write(format, &entries),
    ))
}
