//! The API's error table: every error the HTTP layer can return, its code and its status, mapped
//! once. Bodies are `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::embed::EmbedError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadJson(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    EmptyInput(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{} problem(s) in the import; nothing was imported", .0.len())]
    InvalidImport(Vec<crate::kb::import::Problem>),
    #[error("the knowledge base index is being built; retry shortly")]
    IndexNotReady,
    #[error("knowledge base storage failed: {0}")]
    Storage(String),
    #[error("the embedding model is not loaded yet; retry when /readyz answers 200")]
    NotReady,
    #[error(
        "the intent models are still loading (the demo models train at first start); retry shortly"
    )]
    IntentNotReady,
    #[error("{0}")]
    Flow(String),
    #[error("model reload failed, the previous model keeps serving: {0}")]
    ModelReload(String),
    #[error("{0}")]
    Sessions(String),
    #[error("the request took longer than {0} s")]
    Timeout(u64),
    #[error(transparent)]
    Embed(#[from] EmbedError),
}

impl ApiError {
    /// The code and status of each error: the whole table.
    pub fn code_and_status(&self) -> (&'static str, StatusCode) {
        match self {
            Self::BadJson(_) => ("bad_json", StatusCode::BAD_REQUEST),
            Self::UnsupportedMediaType(_) => {
                ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE)
            }
            Self::Invalid(_) => ("invalid_request", StatusCode::UNPROCESSABLE_ENTITY),
            Self::EmptyInput(_) => ("empty_input", StatusCode::UNPROCESSABLE_ENTITY),
            Self::TooLarge(_) => ("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE),
            Self::NotFound(_) => ("not_found", StatusCode::NOT_FOUND),
            Self::MethodNotAllowed(_) => ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED),
            Self::Conflict(_) => ("conflict", StatusCode::CONFLICT),
            Self::ModelReload(_) => ("model_reload_failed", StatusCode::UNPROCESSABLE_ENTITY),
            Self::InvalidImport(_) => ("invalid_import", StatusCode::UNPROCESSABLE_ENTITY),
            Self::IndexNotReady => ("index_not_ready", StatusCode::SERVICE_UNAVAILABLE),
            Self::Storage(_) => ("storage_failed", StatusCode::INTERNAL_SERVER_ERROR),
            Self::NotReady => ("model_not_ready", StatusCode::SERVICE_UNAVAILABLE),
            Self::IntentNotReady => ("intent_not_ready", StatusCode::SERVICE_UNAVAILABLE),
            Self::Timeout(_) => ("timeout", StatusCode::SERVICE_UNAVAILABLE),
            Self::Flow(_) => ("flow_template_failed", StatusCode::INTERNAL_SERVER_ERROR),
            Self::Sessions(_) => ("session_store_unavailable", StatusCode::SERVICE_UNAVAILABLE),
            Self::Embed(e) => match e {
                EmbedError::Overloaded(_) => ("overloaded", StatusCode::TOO_MANY_REQUESTS),
                EmbedError::Tokenize(_) => {
                    ("tokenization_failed", StatusCode::UNPROCESSABLE_ENTITY)
                }
                EmbedError::WorkerGone => ("model_not_ready", StatusCode::SERVICE_UNAVAILABLE),
                EmbedError::Load(_) | EmbedError::Inference(_) => {
                    ("inference_failed", StatusCode::FAILED_DEPENDENCY)
                }
            },
        }
    }
}

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `empty_input`, `overloaded`.
    pub code: String,
    /// What is wrong, for a person.
    pub message: String,
    /// For imports: every problem, with its line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problems: Option<Vec<crate::kb::import::Problem>>,
}

impl From<crate::kb::store::StoreError> for ApiError {
    fn from(e: crate::kb::store::StoreError) -> Self {
        Self::Storage(e.to_string())
    }
}

impl From<crate::dialog::session::SessionError> for ApiError {
    fn from(e: crate::dialog::session::SessionError) -> Self {
        Self::Sessions(e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, status) = self.code_and_status();
        let problems = match &self {
            Self::InvalidImport(p) => Some(p.clone()),
            _ => None,
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.into(),
                message: self.to_string(),
                problems,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if status == StatusCode::TOO_MANY_REQUESTS || status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        }
        resp
    }
}
