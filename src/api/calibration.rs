//! `/v1/calibration`: the fusion weights and decision thresholds `/v1/match` uses. A
//! calibration stored with the KB (from `kefu eval faq --calibrate`) overrides `[matching]`.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::SharedState;
use super::error::ErrorBody;
use super::json::ApiJson;
use crate::error::Error;
use crate::matcher::Calibration;

#[derive(Debug, Serialize, ToSchema)]
pub struct ActiveCalibration {
    /// `kb` (stored with the knowledge base) or `config` (`[matching]`).
    pub source: &'static str,
    #[serde(flatten)]
    pub calibration: Calibration,
}

fn active(s: &SharedState) -> ActiveCalibration {
    let c = s.calibration.load();
    ActiveCalibration {
        source: if c.0 { "kb" } else { "config" },
        calibration: c.1,
    }
}

/// The calibration in use.
#[utoipa::path(get, path = "/v1/calibration", tag = "matching", responses(
    (status = 200, body = ActiveCalibration)))]
pub async fn get(State(s): State<SharedState>) -> Json<ActiveCalibration> {
    Json(active(&s))
}

/// Store a calibration with the KB (the `calibration` object `kefu eval faq --calibrate`
/// writes, or what `GET /v1/calibration` returned: its `source` is ignored) and use it from
/// the next request on.
#[utoipa::path(put, path = "/v1/calibration", tag = "matching", request_body = Calibration,
    responses((status = 200, body = ActiveCalibration), (status = 422, body = ErrorBody)))]
pub async fn put(
    State(s): State<SharedState>,
    ApiJson(mut body): ApiJson<serde_json::Value>,
) -> Result<Json<ActiveCalibration>, Error> {
    // What GET returns can be PUT back: `source` says where a calibration came from, and a
    // stored one comes from the KB whatever it said.
    if let Some(fields) = body.as_object_mut() {
        fields.remove("source");
    }
    let c: Calibration = serde_json::from_value(body)
        .map_err(|e| Error::Invalid(super::reject::humanize(&e.to_string())))?;
    c.validate().map_err(Error::Invalid)?;
    s.kb.set_calibration(Some(&c)).await?;
    s.calibration.store(std::sync::Arc::new((true, c)));
    Ok(Json(active(&s)))
}

/// Remove the KB's calibration: `[matching]` from the config applies again.
#[utoipa::path(delete, path = "/v1/calibration", tag = "matching", responses(
    (status = 204)))]
pub async fn delete(State(s): State<SharedState>) -> Result<StatusCode, Error> {
    s.kb.set_calibration(None).await?;
    s.calibration.store(std::sync::Arc::new((
        false,
        s.config.matching.calibration(),
    )));
    Ok(StatusCode::NO_CONTENT)
}
