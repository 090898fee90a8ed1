//! `/v1/out-of-scope`: questions the KB must not answer. `/v1/match` answers a query directly
//! only when it is `out_of_scope_margin` closer to its best entry than to the nearest example;
//! changes apply once the background index rebuild has swapped in.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::SharedState;
use super::error::ErrorBody;
use super::json::ApiJson;
use crate::error::Error;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OutOfScope {
    /// Example questions (trimmed; duplicates kept once), e.g. "what's the weather tomorrow".
    #[schema(schema_with = crate::text::check::schema::examples)]
    pub examples: Vec<String>,
}

/// The out-of-scope examples stored with the KB.
#[utoipa::path(get, path = "/v1/out-of-scope", tag = "matching", responses(
    (status = 200, body = OutOfScope)))]
pub async fn get(State(s): State<SharedState>) -> Result<Json<OutOfScope>, Error> {
    Ok(Json(OutOfScope {
        examples: s.kb.out_of_scope().await?,
    }))
}

/// Replace the out-of-scope examples. Every example is checked first (422 naming each bad
/// `examples[i]`, 413 beyond `kb.max_out_of_scope` examples; nothing stored); they are
/// embedded in the background index rebuild, which applies other KB changes meanwhile.
#[utoipa::path(put, path = "/v1/out-of-scope", tag = "matching", request_body = OutOfScope,
    responses((status = 200, body = OutOfScope), (status = 413, body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn put(
    State(s): State<SharedState>,
    ApiJson(body): ApiJson<OutOfScope>,
) -> Result<Json<OutOfScope>, Error> {
    let max = s.config.kb.max_out_of_scope;
    if body.examples.len() > max {
        return Err(Error::TooLarge(crate::kb::out_of_scope::too_many(
            body.examples.len(),
            max,
        )));
    }
    let examples = crate::kb::out_of_scope::check(body.examples, max).map_err(|ps| {
        Error::Invalid(
            ps.iter()
                .map(|p| match p.line {
                    0 => p.message.clone(),
                    i => format!("examples[{}]: {}", i - 1, p.message),
                })
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    s.kb.set_out_of_scope(&examples).await?;
    s.reindex.notify_one();
    Ok(Json(OutOfScope { examples }))
}

/// Remove every out-of-scope example.
#[utoipa::path(delete, path = "/v1/out-of-scope", tag = "matching", responses((status = 204)))]
pub async fn delete(State(s): State<SharedState>) -> Result<StatusCode, Error> {
    s.kb.set_out_of_scope(&[]).await?;
    s.reindex.notify_one();
    Ok(StatusCode::NO_CONTENT)
}
