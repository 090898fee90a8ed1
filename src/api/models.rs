//! `/v1/models`: every model that serves (the encoder, each intent model, the recommender),
//! and per slot `KIND/NAME` its activation through the gate, its reload from the data
//! directory's record and its rollback. The encoder's activation and rollback run in the
//! background like `POST /v1/model/reload` (202, followed with `GET /v1/model`); the others
//! finish within the request (200).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::SharedState;
use super::error::ErrorBody;
use super::json::ApiJson;
use super::reject::ApiPath;
pub use crate::core::models::{LifecycleResult, ModelsOverview, ServingModel};
use crate::core::reload::ActivateRequest;
use crate::error::Error;
use crate::model::registry::{Kind, Slot};

fn slot(kind: &str, name: &str) -> Result<Slot, Error> {
    let kind: Kind = kind.parse().map_err(Error::NotFound)?;
    Slot::of(kind, Some(name)).map_err(Error::NotFound)
}

/// Every model that serves now: version, directory, where it came from (`activated`,
/// `configured`, `demo`, `event log`), its activation record and what its card says.
#[utoipa::path(get, path = "/v1/models", tag = "ops", responses(
    (status = 200, body = ModelsOverview), (status = 503, body = ErrorBody)))]
pub async fn list(State(s): State<SharedState>) -> Result<Json<ModelsOverview>, Error> {
    Ok(Json(s.models_overview()?))
}

/// Activate a model directory on the server in slot `{kind}/{name}` (`intent/service`,
/// `recommend/default`, `embedding/default`) through its kind's gate: on the slot's golden set
/// (`model.gate`, or `golden`), every measure may fall at most `max_drop` below the serving
/// version's. A refusal (`gate_refused`) names the measure and changes nothing; an intent model
/// trained on another encoder is refused even with `force`. Intent models and the recommender
/// are swapped in before the answer (200); the encoder in the background (202, as
/// `POST /v1/model/activate`).
#[utoipa::path(post, path = "/v1/models/{kind}/{name}/activate", tag = "ops",
    params(("kind" = String, Path, description = "embedding, intent or recommend"),
           ("name" = String, Path, description = "the intent model's name; default for the others")),
    request_body = ActivateRequest, responses(
    (status = 200, body = LifecycleResult, description = "Activated and serving"),
    (status = 202, body = crate::core::ReloadStatus, description = "The encoder: gated and swapped in the background"),
    (status = 404, body = ErrorBody, description = "No such kind or name"),
    (status = 409, body = ErrorBody, description = "The encoder changed during the activation, or an encoder reload runs"),
    (status = 422, body = ErrorBody, description = "Refused by the gate, not a model of this kind, trained on another encoder, or bad max_drop"),
    (status = 503, body = ErrorBody)))]
pub async fn activate(
    State(s): State<SharedState>,
    ApiPath((kind, name)): ApiPath<(String, String)>,
    ApiJson(req): ApiJson<ActivateRequest>,
) -> Result<Response, Error> {
    let slot = slot(&kind, &name)?;
    if slot.kind == Kind::Embedding {
        let st = crate::core::reload::start_activation(&s, req)?;
        return Ok((StatusCode::ACCEPTED, Json(st)).into_response());
    }
    Ok(Json(s.activate_model(&slot, req).await?).into_response())
}

/// Put back the version that served before the slot's last activation (recorded as a
/// rollback: a second one goes forward again). 404 when nothing was activated.
#[utoipa::path(post, path = "/v1/models/{kind}/{name}/rollback", tag = "ops",
    params(("kind" = String, Path), ("name" = String, Path)), responses(
    (status = 200, body = LifecycleResult),
    (status = 202, body = crate::core::ReloadStatus, description = "The encoder: swapped back in the background"),
    (status = 404, body = ErrorBody, description = "Nothing to roll back"),
    (status = 422, body = ErrorBody, description = "The previous version no longer loads"),
    (status = 503, body = ErrorBody)))]
pub async fn rollback(
    State(s): State<SharedState>,
    ApiPath((kind, name)): ApiPath<(String, String)>,
) -> Result<Response, Error> {
    let slot = slot(&kind, &name)?;
    if slot.kind == Kind::Embedding {
        let st = crate::core::reload::start_rollback(&s)?;
        return Ok((StatusCode::ACCEPTED, Json(st)).into_response());
    }
    Ok(Json(s.rollback_model(&slot).await?).into_response())
}

/// Swap in what the data directory records for the slot (after `kefu model activate
/// KIND/NAME DIR` or `kefu model rollback` on the same data directory), else its configured
/// model. `action` is `unchanged` when that already serves.
#[utoipa::path(post, path = "/v1/models/{kind}/{name}/reload", tag = "ops",
    params(("kind" = String, Path), ("name" = String, Path)), responses(
    (status = 200, body = LifecycleResult),
    (status = 202, body = crate::core::ReloadStatus, description = "The encoder: reloaded in the background"),
    (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
    (status = 503, body = ErrorBody)))]
pub async fn reload(
    State(s): State<SharedState>,
    ApiPath((kind, name)): ApiPath<(String, String)>,
) -> Result<Response, Error> {
    let slot = slot(&kind, &name)?;
    if slot.kind == Kind::Embedding {
        let st = crate::core::reload::start_reload(&s)?;
        return Ok((StatusCode::ACCEPTED, Json(st)).into_response());
    }
    Ok(Json(s.reload_slot(&slot).await?).into_response())
}
