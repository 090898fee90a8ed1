//! The API's error table: each code of the domain error (`crate::error::Error`) and its HTTP
//! status, mapped once. Bodies are `{"error": {"code": "...", "message": "..."}}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::embed::EmbedError;
use crate::error::Error;

/// The HTTP status of each error: the whole table.
pub fn status(e: &Error) -> StatusCode {
    match e {
        Error::BadJson(_) | Error::BadMessage(_) => StatusCode::BAD_REQUEST,
        Error::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Error::Invalid(_)
        | Error::EmptyInput(_)
        | Error::ModelReload(_)
        | Error::GateRefused(_)
        | Error::InvalidImport(_) => StatusCode::UNPROCESSABLE_ENTITY,
        Error::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
        Error::Forbidden(_) => StatusCode::FORBIDDEN,
        Error::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
        Error::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Storage(_) | Error::Flow(_) => StatusCode::INTERNAL_SERVER_ERROR,
        Error::IndexNotReady
        | Error::NotReady
        | Error::IntentNotReady
        | Error::Timeout(_)
        | Error::Sessions(_) => StatusCode::SERVICE_UNAVAILABLE,
        Error::Embed(e) => match e {
            EmbedError::Overloaded(_) => StatusCode::TOO_MANY_REQUESTS,
            EmbedError::Tokenize(_) => StatusCode::UNPROCESSABLE_ENTITY,
            EmbedError::WorkerGone => StatusCode::SERVICE_UNAVAILABLE,
            EmbedError::Load(_) | EmbedError::Inference(_) => StatusCode::FAILED_DEPENDENCY,
        },
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

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let (code, status) = (self.code(), status(&self));
        let retry_after = match &self {
            Self::RateLimited {
                retry_after_secs, ..
            } => *retry_after_secs,
            _ => 1,
        };
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
                .insert("retry-after", axum::http::HeaderValue::from(retry_after));
        }
        resp
    }
}
