//! `/v1/model`: which encoder serves, what was activated in the data directory, and the hot
//! swap (`POST /v1/model/reload`) that `kefu model activate --server URL` triggers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use utoipa::ToSchema;

use super::SharedState;
use super::error::ErrorBody;
use super::json::ApiJson;
use crate::core::ReloadStatus;
pub use crate::core::reload::ActivateRequest;
use crate::error::Error;
use crate::model::registry::{Activation, ModelRef};

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelInfo {
    /// The serving encoder.
    pub model: ModelRef,
    pub dim: usize,
    /// `mean` or `cls`.
    pub pooling: String,
    /// Prefix put before every input (e.g. `query: `).
    pub prefix: String,
    pub max_tokens: usize,
    /// The data directory's activation record (`kefu model activate`); absent when model.path
    /// serves.
    pub activation: Option<Activation>,
    /// The last reload since start.
    pub reload: ReloadStatus,
    /// server.data_dir, where `kefu model activate` records the model to serve.
    pub data_dir: String,
}

/// The serving encoder, the activation record and the last reload.
#[utoipa::path(get, path = "/v1/model", tag = "ops", responses(
    (status = 200, body = ModelInfo), (status = 503, body = ErrorBody)))]
pub async fn get(State(s): State<SharedState>) -> Result<Json<ModelInfo>, Error> {
    let e = s.embedder()?;
    let activation = crate::model::registry::active(&s.config.server.data_dir)
        .map_err(|e| Error::Storage(format!("{e:#}")))?;
    let m = e.manifest();
    Ok(Json(ModelInfo {
        model: crate::model::registry::model_ref(&e),
        dim: e.dim(),
        pooling: format!("{:?}", m.pooling).to_lowercase(),
        prefix: m.prefix.clone(),
        max_tokens: m.max_tokens,
        activation,
        reload: s.reload.lock().expect("reload status lock").clone(),
        data_dir: s.config.server.data_dir.display().to_string(),
    }))
}

/// Swap in the model activated in the data directory (`kefu model activate`; model.path when
/// none is) without dropping a request. Answers 202 at once; the old model serves until the
/// new one has its KB index, intent models and catalogue embeddings, then all switch together.
/// Follow it with `GET /v1/model` (`reload.state`: `running`, `succeeded` or `failed` with the
/// reason; a failure leaves the old model serving).
#[utoipa::path(post, path = "/v1/model/reload", tag = "ops", responses(
    (status = 202, body = ReloadStatus),
    (status = 409, body = ErrorBody, description = "A reload is already running"),
    (status = 503, body = ErrorBody, description = "No model has loaded yet")))]
pub async fn reload(
    State(s): State<SharedState>,
) -> Result<(StatusCode, Json<ReloadStatus>), Error> {
    Ok((
        StatusCode::ACCEPTED,
        Json(crate::core::reload::start_reload(&s)?),
    ))
}

/// Activate a model directory on the server through the same gate as `kefu model activate`
/// (the built-in demo FAQ checks; refused when a measure falls more than `max_drop` below the
/// serving model's, unless `force`), record it in the data directory, and swap it in without
/// dropping a request. Answers 202 at once; `GET /v1/model` follows it (`reload.state`, the
/// gate's report in `reload.gate`, the refusal or failure in `reload.error`; a failure
/// leaves the old model serving and its activation record in place).
#[utoipa::path(post, path = "/v1/model/activate", tag = "ops", request_body = ActivateRequest, responses(
    (status = 202, body = ReloadStatus),
    (status = 409, body = ErrorBody, description = "A reload or activation is already running"),
    (status = 422, body = ErrorBody, description = "No such directory, or max_drop out of range"),
    (status = 503, body = ErrorBody, description = "No model has loaded yet")))]
pub async fn activate(
    State(s): State<SharedState>,
    ApiJson(r): ApiJson<ActivateRequest>,
) -> Result<(StatusCode, Json<ReloadStatus>), Error> {
    Ok((
        StatusCode::ACCEPTED,
        Json(crate::core::reload::start_activation(&s, r)?),
    ))
}
