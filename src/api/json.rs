//! A JSON body extractor whose rejections are kefu's JSON errors.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rej) => Err(rejection(rej)),
        }
    }
}

fn rejection(rej: JsonRejection) -> ApiError {
    let text = rej.body_text();
    match rej {
        JsonRejection::JsonDataError(_) => ApiError::Invalid(text),
        JsonRejection::JsonSyntaxError(_) => ApiError::BadJson(text),
        JsonRejection::MissingJsonContentType(_) => ApiError::UnsupportedMediaType(
            "expected a request with `Content-Type: application/json`".into(),
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(format!(
            "request body is too large: {text} (see limits.max_body_bytes)"
        )),
        _ => ApiError::BadJson(text),
    }
}
