//! `POST /v1/embed` and the OpenAI-compatible `POST /v1/embeddings`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::SharedState;
use super::json::ApiJson;
use crate::config::LimitsConfig;
use crate::error::{ApiError, ErrorBody};

/// One text or a list of texts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Inputs {
    One(String),
    Many(Vec<String>),
}

impl Inputs {
    fn into_vec(self) -> Vec<String> {
        match self {
            Inputs::One(s) => vec![s],
            Inputs::Many(v) => v,
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbedRequest {
    /// Texts to embed (at most `limits.max_inputs`, each at most `limits.max_input_chars`).
    pub inputs: Inputs,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EmbedResponse {
    /// Version of the model that produced the vectors (`name@sha256-prefix`).
    pub model: String,
    pub dimension: usize,
    /// One L2-normalised vector per input, in input order.
    pub embeddings: Vec<Vec<f32>>,
    pub usage: Usage,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Usage {
    /// Tokens the model read, special tokens included.
    pub tokens: usize,
}

/// Checks the texts against the limits before any work is done.
fn validate(texts: &[String], limits: &LimitsConfig, field: &str) -> Result<(), ApiError> {
    if texts.is_empty() {
        return Err(ApiError::EmptyInput(format!(
            "{field} is empty: give at least one text"
        )));
    }
    if texts.len() > limits.max_inputs {
        return Err(ApiError::TooLarge(format!(
            "{field} has {} texts; at most {} are allowed (limits.max_inputs)",
            texts.len(),
            limits.max_inputs
        )));
    }
    for (i, t) in texts.iter().enumerate() {
        if t.trim().is_empty() {
            return Err(ApiError::EmptyInput(format!("{field}[{i}] is empty")));
        }
        let chars = t.chars().count();
        if chars > limits.max_input_chars {
            return Err(ApiError::TooLarge(format!(
                "{field}[{i}] has {chars} characters; at most {} are allowed (limits.max_input_chars)",
                limits.max_input_chars
            )));
        }
    }
    Ok(())
}

/// Embed texts with the serving model.
#[utoipa::path(post, path = "/v1/embed", tag = "embeddings", request_body = EmbedRequest, responses(
    (status = 200, body = EmbedResponse),
    (status = 400, body = ErrorBody, description = "Malformed JSON"),
    (status = 413, body = ErrorBody, description = "Too many or too long inputs, or body too large"),
    (status = 422, body = ErrorBody, description = "Empty input or wrong field types"),
    (status = 429, body = ErrorBody, description = "Inference queue full"),
    (status = 503, body = ErrorBody, description = "Model not loaded yet"),
))]
pub async fn embed(
    State(state): State<SharedState>,
    ApiJson(req): ApiJson<EmbedRequest>,
) -> Result<Json<EmbedResponse>, ApiError> {
    let texts = req.inputs.into_vec();
    validate(&texts, &state.config.limits, "inputs")?;
    let embedder = state.embedder()?;
    let out = embedder.embed(&texts).await?;
    Ok(Json(EmbedResponse {
        model: embedder.version().to_string(),
        dimension: embedder.dim(),
        usage: Usage {
            tokens: out.iter().map(|e| e.tokens).sum(),
        },
        embeddings: out.into_iter().map(|e| e.vector.to_vec()).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct OpenAiRequest {
    /// A text or a list of texts.
    pub input: Inputs,
    /// Accepted for compatibility; the serving model answers whatever is named.
    #[serde(default)]
    pub model: Option<String>,
    /// Only `float` is supported.
    #[serde(default)]
    pub encoding_format: Option<String>,
    /// Accepted for compatibility; must equal the model's dimension when given.
    #[serde(default)]
    pub dimensions: Option<usize>,
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiEmbedding {
    pub object: &'static str,
    pub index: usize,
    pub embedding: Vec<f32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiResponse {
    pub object: &'static str,
    pub data: Vec<OpenAiEmbedding>,
    /// The serving model's name.
    pub model: String,
    pub usage: OpenAiUsage,
}

/// OpenAI-compatible embeddings.
#[utoipa::path(post, path = "/v1/embeddings", tag = "embeddings", request_body = OpenAiRequest, responses(
    (status = 200, body = OpenAiResponse),
    (status = 400, body = ErrorBody, description = "Malformed JSON"),
    (status = 413, body = ErrorBody, description = "Too many or too long inputs, or body too large"),
    (status = 422, body = ErrorBody, description = "Empty input, wrong field types or unsupported options"),
    (status = 429, body = ErrorBody, description = "Inference queue full"),
    (status = 503, body = ErrorBody, description = "Model not loaded yet"),
))]
pub async fn openai_embeddings(
    State(state): State<SharedState>,
    ApiJson(req): ApiJson<OpenAiRequest>,
) -> Result<Json<OpenAiResponse>, ApiError> {
    if let Some(f) = req.encoding_format.as_deref()
        && f != "float"
    {
        return Err(ApiError::Invalid(format!(
            "encoding_format {f:?} is not supported; use \"float\""
        )));
    }
    let texts = req.input.into_vec();
    validate(&texts, &state.config.limits, "input")?;
    let embedder = state.embedder()?;
    if let Some(d) = req.dimensions
        && d != embedder.dim()
    {
        return Err(ApiError::Invalid(format!(
            "dimensions {d} is not available; the model gives {}",
            embedder.dim()
        )));
    }
    let out = embedder.embed(&texts).await?;
    let tokens = out.iter().map(|e| e.tokens).sum();
    Ok(Json(OpenAiResponse {
        object: "list",
        data: out
            .into_iter()
            .enumerate()
            .map(|(index, e)| OpenAiEmbedding {
                object: "embedding",
                index,
                embedding: e.vector.to_vec(),
            })
            .collect(),
        model: embedder.manifest().name.clone(),
        usage: OpenAiUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}
