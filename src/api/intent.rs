//! `POST /v1/intent`: what the customer wants and where the conversation goes;
//! `GET /v1/intent/models`: the loaded intent models.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::SharedState;
use super::error::ErrorBody;
use super::json::ApiJson;
pub use crate::core::understand::{Customer, IntentRequest, IntentResponse, Severity};
use crate::error::Error;
use crate::intent::model::{EncoderRef, IntentCalibration};

/// Classify a customer's message and route the conversation.
#[utoipa::path(post, path = "/v1/intent", tag = "intent", request_body = IntentRequest, responses(
    (status = 200, body = IntentResponse),
    (status = 404, body = ErrorBody, description = "unknown model"),
    (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub async fn classify(
    State(s): State<SharedState>,
    ApiJson(req): ApiJson<IntentRequest>,
) -> Result<Json<IntentResponse>, Error> {
    Ok(Json(s.intent_request(req).await?))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntentModelInfo {
    pub name: String,
    /// `DIR@sha` of its directory (`GET /v1/models` lists it with its source and record).
    pub version: String,
    /// `linear` or `mlp`.
    pub head: String,
    pub labels: Vec<String>,
    pub oos_label: Option<String>,
    pub calibration: IntentCalibration,
    pub encoder: EncoderRef,
    /// Encoder layers fine-tuned for this model (0: frozen embeddings).
    pub finetuned_layers: usize,
    pub created_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntentModels {
    pub default_model: String,
    pub models: Vec<IntentModelInfo>,
}

/// The loaded intent models.
#[utoipa::path(get, path = "/v1/intent/models", tag = "intent", responses(
    (status = 200, body = IntentModels), (status = 503, body = ErrorBody)))]
pub async fn models(State(s): State<SharedState>) -> Result<Json<IntentModels>, Error> {
    let models = s.intents.load_full().ok_or(Error::IntentNotReady)?;
    Ok(Json(IntentModels {
        default_model: s.config.intent.default_model.clone(),
        models: models
            .iter()
            .map(|(name, m)| IntentModelInfo {
                name: name.clone(),
                version: m.version().to_string(),
                head: format!("{:?}", m.card.head).to_lowercase(),
                labels: m.card.labels.clone(),
                oos_label: m.card.oos_label.clone(),
                calibration: m.card.calibration.clone(),
                encoder: m.card.encoder.clone(),
                finetuned_layers: m.card.finetune.as_ref().map_or(0, |f| f.layers),
                created_at: m.card.created_at.clone(),
            })
            .collect(),
    }))
}
