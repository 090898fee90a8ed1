//! `/v1/documents`: knowledge documents (Markdown or plain text), split into passages that
//! `/v1/match` returns as `kind: "passage"`. Changes are searchable once the background index
//! rebuild has swapped in.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::SharedState;
use super::error::ErrorBody;
use super::json::ApiJson;
use super::reject::ApiPath;
use crate::error::Error;
use crate::kb::{Document, Passage};

/// A document without its content, with how many passages it made.
#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentSummary {
    pub id: String,
    pub title: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub passages: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentList {
    pub documents: Vec<DocumentSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DocumentDetail {
    #[serde(flatten)]
    pub document: Document,
    pub passages: Vec<Passage>,
}

fn summary(d: &Document) -> DocumentSummary {
    DocumentSummary {
        id: d.id.clone(),
        title: d.title.clone(),
        source: d.source.clone(),
        passages: d.passages().len(),
    }
}

/// Add or replace a document (201 when new, 200 when replaced); it is split into passages and
/// indexed in the background.
#[utoipa::path(post, path = "/v1/documents", tag = "knowledge base", request_body = Document,
    responses((status = 201, body = DocumentSummary), (status = 200, body = DocumentSummary),
        (status = 422, body = ErrorBody)))]
pub async fn upsert(
    State(s): State<SharedState>,
    ApiJson(d): ApiJson<Document>,
) -> Result<(StatusCode, Json<DocumentSummary>), Error> {
    let errs = d.validate();
    if !errs.is_empty() {
        return Err(Error::Invalid(
            errs.iter()
                .map(|f| format!("{}: {}", f.field, f.message))
                .collect::<Vec<_>>()
                .join("; "),
        ));
    }
    let created = s.kb.upsert_documents(std::slice::from_ref(&d)).await?;
    s.reindex.notify_one();
    let status = if created[0] {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(summary(&d))))
}

/// Every document, ordered by id.
#[utoipa::path(get, path = "/v1/documents", tag = "knowledge base", responses(
    (status = 200, body = DocumentList)))]
pub async fn list(State(s): State<SharedState>) -> Result<Json<DocumentList>, Error> {
    Ok(Json(DocumentList {
        documents: s.kb.documents().await?.iter().map(summary).collect(),
    }))
}

/// One document with its passages.
#[utoipa::path(get, path = "/v1/documents/{id}", tag = "knowledge base", params(("id" = String, Path, description = "The document's id")), responses(
    (status = 200, body = DocumentDetail), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<DocumentDetail>, Error> {
    let d =
        s.kb.document(&id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no document with id {id}")))?;
    Ok(Json(DocumentDetail {
        passages: d.passages(),
        document: d,
    }))
}

/// Delete a document and its passages.
#[utoipa::path(delete, path = "/v1/documents/{id}", tag = "knowledge base", params(("id" = String, Path, description = "The document's id")), responses(
    (status = 204), (status = 404, body = ErrorBody)))]
pub async fn remove(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, Error> {
    if !s.kb.delete_document(&id).await? {
        return Err(Error::NotFound(format!("no document with id {id}")));
    }
    s.reindex.notify_one();
    Ok(StatusCode::NO_CONTENT)
}
