//! Understanding a text: intent, out-of-scope, complaint severity and the route, for
//! `/v1/intent` and the chat turn.

use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Kefu;
use crate::embed::{EmbedError, Embedder};
use crate::error::Error;
use crate::intent::routing::{Route, RouteInput};
use crate::intent::{IntentModel, Ranked};
use crate::text::check::schema;

#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    #[schema(schema_with = schema::external_id)]
    pub id: Option<String>,
    /// Membership tier, e.g. `regular`, `silver`, `gold`, `diamond`, `vip`.
    #[schema(schema_with = schema::tier)]
    pub tier: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IntentRequest {
    #[schema(schema_with = schema::input)]
    pub text: String,
    /// Intent model name (default: `intent.default_model`).
    #[serde(default)]
    pub model: Option<String>,
    #[serde(default)]
    pub customer: Option<Customer>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Severity {
    /// `general`, `urgent` or `major` with the demo model.
    pub label: String,
    pub confidence: f32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct IntentResponse {
    pub model: String,
    /// The version of the intent model that answered (`DIR@sha`), one model for the whole
    /// response even while a new version is being swapped in.
    pub model_version: String,
    /// The best intent, or `oos` when out of scope.
    pub intent: String,
    /// Calibrated probability of the best intent.
    pub confidence: f32,
    pub out_of_scope: bool,
    /// The five most likely intents.
    pub ranking: Vec<Ranked>,
    /// Complaint severity, graded for complaint intents when the severity model is loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    /// The customer asked for a person.
    pub human_request: bool,
    pub route: Route,
    /// The encoder that embedded the text.
    pub encoder: String,
    pub took_ms: f64,
}

impl Kefu {
    /// Classification, severity and routing of `text` (checked by the caller) with intent
    /// model `model` (default: `intent.default_model`), for a customer of `tier`.
    pub async fn understand(
        &self,
        text: &str,
        model: Option<&str>,
        tier: Option<&str>,
    ) -> Result<IntentResponse, Error> {
        let started = Instant::now();
        let name = model.map_or_else(|| self.config.intent.default_model.clone(), str::to_string);
        let (embedder, models) = self.encoder_and_intents()?;
        let model = models.get(&name).cloned().ok_or_else(|| {
            Error::NotFound(if models.is_empty() {
                format!("intent model {name:?} is not loaded: no intent models are configured")
            } else {
                format!(
                    "intent model {name:?} is not loaded (loaded: {})",
                    models.keys().cloned().collect::<Vec<_>>().join(", ")
                )
            })
        })?;
        // The encoder's embedding, computed once and only for models that classify it.
        let base = tokio::sync::OnceCell::new();
        let p = model.predict(&vector(&model, &embedder, &base, text).await?);
        let routing = &self.config.routing;
        let severity = match models.get(&routing.severity_model) {
            Some(m) if routing.is_complaint(&p.intent) => {
                let v = vector(m, &embedder, &base, text).await?;
                let best = &m.predict(&v).ranking[0];
                Some(Severity {
                    label: best.intent.clone(),
                    confidence: best.confidence,
                })
            }
            _ => None,
        };
        let route = routing.route(&RouteInput {
            text,
            intent: &p.intent,
            confidence: p.confidence,
            out_of_scope: p.out_of_scope,
            tier,
            severity: severity.as_ref().map(|s| s.label.as_str()),
        });
        Ok(IntentResponse {
            model: name,
            model_version: model.version().to_string(),
            human_request: routing.human_request(text, &p.intent),
            intent: p.intent,
            confidence: p.confidence,
            out_of_scope: p.out_of_scope,
            ranking: p.ranking.into_iter().take(5).collect(),
            severity,
            route,
            encoder: embedder.version().to_string(),
            took_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }
}

/// The vector `model` classifies: the encoder's embedding (kept in `base` for the next model),
/// or for a model with fine-tuned layers its own (computed off the async runtime).
async fn vector(
    model: &Arc<IntentModel>,
    embedder: &Arc<Embedder>,
    base: &tokio::sync::OnceCell<Arc<[f32]>>,
    text: &str,
) -> Result<Arc<[f32]>, Error> {
    if !model.is_tuned() {
        let v = base
            .get_or_try_init(|| async {
                Ok::<_, Error>(embedder.embed(&[text.to_string()]).await?[0].vector.clone())
            })
            .await?;
        return Ok(v.clone());
    }
    let (m, e, t) = (model.clone(), embedder.clone(), text.to_string());
    let v = tokio::task::spawn_blocking(move || m.vectors(&e, &[t], None, "the text", None))
        .await
        .map_err(|e| Error::Embed(EmbedError::Inference(e.to_string())))?
        .map_err(|e| Error::Embed(EmbedError::Inference(format!("{e:#}"))))?;
    Ok(v.data.into())
}
