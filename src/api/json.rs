//! A JSON body extractor whose rejections are kefu's JSON errors, worded for people.

use axum::body::Bytes;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use super::reject::{body_rejection, humanize, not_utf8, without_prefix};
use crate::error::Error;

pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Error;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !json_content_type(&req) {
            return Err(Error::UnsupportedMediaType(
                "expected a request with `Content-Type: application/json`".into(),
            ));
        }
        // Read first, so that a body in another encoding (GBK) is named as such rather than
        // as a JSON syntax error somewhere inside a string.
        let bytes = Bytes::from_request(req, state).await.map_err(|rej| {
            let r = body_rejection(rej);
            match r.code {
                "payload_too_large" => Error::TooLarge(r.message),
                _ => Error::BadJson(r.message),
            }
        })?;
        if let Err(e) = std::str::from_utf8(&bytes) {
            return Err(Error::BadJson(not_utf8(e)));
        }
        match axum::Json::<T>::from_bytes(&bytes) {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(rej) => Err(rejection(rej)),
        }
    }
}

/// `application/json` or `application/…+json`, parameters (charset) aside, as axum's `Json`.
fn json_content_type(req: &Request) -> bool {
    let Some(ct) = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn rejection(rej: JsonRejection) -> Error {
    match rej {
        JsonRejection::JsonDataError(_) => Error::Invalid(humanize(&rej.body_text())),
        // Syntax errors keep serde_json's line and column: they locate the typo.
        _ => Error::BadJson(format!(
            "the body is not valid JSON: {}",
            without_prefix(&rej.body_text())
        )),
    }
}
