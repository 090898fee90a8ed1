//! `POST /v1/embed` and the OpenAI-compatible `POST /v1/embeddings`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::SharedState;
use super::error::ErrorBody;
use super::json::ApiJson;
use crate::config::LimitsConfig;
use crate::embed::Embedder;
use crate::error::Error;

/// One text or a list of texts.
#[derive(Debug, ToSchema)]
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

// By hand rather than `untagged`: serde's message for a mismatch names the Rust enum.
impl<'de> Deserialize<'de> for Inputs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match OpenAiInput::deserialize(d)? {
            OpenAiInput::Text(s) => Ok(Self::One(s)),
            OpenAiInput::Texts(v) => Ok(Self::Many(v)),
            OpenAiInput::Tokens(_) | OpenAiInput::TokenLists(_) => Err(serde::de::Error::custom(
                "must be a text or a list of texts (token ids are accepted by /v1/embeddings)",
            )),
        }
    }
}

/// What OpenAI's `input` takes: a text, a list of texts, a list of token ids, or a list of
/// token-id lists. Token ids are the serving model's (see `GET /v1/model`), decoded to text.
#[derive(Debug, ToSchema)]
#[serde(untagged)]
pub enum OpenAiInput {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

const INPUT_FORMS: &str =
    "must be a text, a list of texts, a list of token ids or a list of token-id lists";

impl<'de> Deserialize<'de> for OpenAiInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        use serde_json::Value;
        let token = |v: &Value, at: &str| -> Result<u32, D::Error> {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    D::Error::custom(format!(
                        "{at} is {v}; a token id is a whole number from 0 ({INPUT_FORMS})"
                    ))
                })
        };
        let items = match Value::deserialize(d)? {
            Value::String(s) => return Ok(Self::Text(s)),
            Value::Array(items) => items,
            other => {
                return Err(D::Error::custom(format!(
                    "{INPUT_FORMS}, not {}",
                    json_kind(&other)
                )));
            }
        };
        match items.first() {
            None => Ok(Self::Texts(Vec::new())),
            Some(Value::String(_)) => items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s),
                    other => Err(D::Error::custom(format!(
                        "[{i}] is {}; a list of texts holds only strings",
                        json_kind(&other)
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Self::Texts),
            Some(Value::Number(_)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| token(v, &format!("[{i}]")))
                .collect::<Result<_, _>>()
                .map(Self::Tokens),
            Some(Value::Array(_)) => items
                .iter()
                .enumerate()
                .map(|(i, list)| match list {
                    Value::Array(ids) => ids
                        .iter()
                        .enumerate()
                        .map(|(j, v)| token(v, &format!("[{i}][{j}]")))
                        .collect::<Result<Vec<_>, _>>(),
                    other => Err(D::Error::custom(format!(
                        "[{i}] is {}; a list of token-id lists holds only lists",
                        json_kind(other)
                    ))),
                })
                .collect::<Result<_, _>>()
                .map(Self::TokenLists),
            Some(other) => Err(D::Error::custom(format!(
                "[0] is {}; {INPUT_FORMS}",
                json_kind(other)
            ))),
        }
    }
}

/// A JSON value's kind as a person names it.
fn json_kind(v: &serde_json::Value) -> String {
    use serde_json::Value;
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
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
fn validate(texts: &[String], limits: &LimitsConfig, field: &str) -> Result<(), Error> {
    if texts.is_empty() {
        return Err(Error::EmptyInput(format!(
            "{field} is empty: give at least one text"
        )));
    }
    if texts.len() > limits.max_inputs {
        return Err(Error::TooLarge(format!(
            "{field} has {} texts; at most {} are allowed (limits.max_inputs)",
            texts.len(),
            limits.max_inputs
        )));
    }
    for (i, t) in texts.iter().enumerate() {
        if t.trim().is_empty() {
            return Err(Error::EmptyInput(format!("{field}[{i}] is empty")));
        }
        let chars = t.chars().count();
        if chars > limits.max_input_chars {
            return Err(Error::TooLarge(format!(
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
) -> Result<Json<EmbedResponse>, Error> {
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
    /// A text, a list of texts, a list of token ids or a list of token-id lists (ids of the
    /// serving model's tokenizer, decoded to text).
    pub input: OpenAiInput,
    /// Accepted for compatibility; the serving model answers whatever is named.
    #[serde(default)]
    pub model: Option<String>,
    /// `float` (default) or `base64`: the vector's little-endian f32 bytes, base64-encoded
    /// (what OpenAI's SDKs ask for by default).
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
    pub embedding: OpenAiVector,
}

/// A list of floats, or (with `encoding_format: "base64"`) their little-endian f32 bytes in
/// base64.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum OpenAiVector {
    Float(Vec<f32>),
    Base64(String),
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
    (status = 422, body = ErrorBody, description = "Empty input, wrong field types, token ids outside the vocabulary or unsupported options"),
    (status = 429, body = ErrorBody, description = "Inference queue full"),
    (status = 503, body = ErrorBody, description = "Model not loaded yet"),
))]
pub async fn openai_embeddings(
    State(state): State<SharedState>,
    ApiJson(req): ApiJson<OpenAiRequest>,
) -> Result<Json<OpenAiResponse>, Error> {
    let base64 = match req.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(f) => {
            return Err(Error::Invalid(format!(
                "encoding_format {f:?} is not supported; use \"float\" or \"base64\""
            )));
        }
    };
    let embedder = state.embedder()?;
    let texts = match req.input {
        OpenAiInput::Text(s) => vec![s],
        OpenAiInput::Texts(v) => v,
        OpenAiInput::Tokens(ids) => vec![decode(&embedder, &ids, "input")?],
        // Decoding is cheap next to embedding; `validate` counts the texts after it.
        OpenAiInput::TokenLists(lists) => lists
            .iter()
            .enumerate()
            .map(|(i, ids)| decode(&embedder, ids, &format!("input[{i}]")))
            .collect::<Result<_, _>>()?,
    };
    validate(&texts, &state.config.limits, "input")?;
    if let Some(d) = req.dimensions
        && d != embedder.dim()
    {
        return Err(Error::Invalid(format!(
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
                embedding: if base64 {
                    OpenAiVector::Base64(base64_f32(&e.vector))
                } else {
                    OpenAiVector::Float(e.vector.to_vec())
                },
            })
            .collect(),
        model: embedder.manifest().name.clone(),
        usage: OpenAiUsage {
            prompt_tokens: tokens,
            total_tokens: tokens,
        },
    }))
}

/// Token ids of the serving model's tokenizer back to the text they spell (special tokens
/// dropped); 422 naming `field` for an id outside the vocabulary or ids that spell nothing.
fn decode(embedder: &Embedder, ids: &[u32], field: &str) -> Result<String, Error> {
    if ids.is_empty() {
        return Err(Error::EmptyInput(format!("{field} has no token ids")));
    }
    let vocab = embedder.vocab_size();
    if let Some((j, id)) = ids
        .iter()
        .enumerate()
        .find(|(_, id)| **id as usize >= vocab)
    {
        return Err(Error::Invalid(format!(
            "{field}[{j}] is token id {id}, outside the model's vocabulary (0 to {})",
            vocab - 1
        )));
    }
    let text = embedder.decode(ids).map_err(Error::Embed)?;
    if text.trim().is_empty() {
        return Err(Error::EmptyInput(format!(
            "{field}'s token ids decode to no text (only special tokens?)"
        )));
    }
    Ok(text)
}

/// The vector's little-endian f32 bytes in standard base64, as OpenAI sends them.
fn base64_f32(v: &[f32]) -> String {
    use base64::Engine;
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(v: serde_json::Value) -> Result<OpenAiInput, String> {
        serde_json::from_value(v).map_err(|e| e.to_string())
    }

    #[test]
    fn openai_input_forms() {
        use serde_json::json;
        assert!(matches!(input(json!("a")), Ok(OpenAiInput::Text(_))));
        assert!(matches!(input(json!(["a", "b"])), Ok(OpenAiInput::Texts(v)) if v.len() == 2));
        assert!(matches!(input(json!([1, 2, 3])), Ok(OpenAiInput::Tokens(v)) if v == [1, 2, 3]));
        assert!(matches!(
            input(json!([[1, 2], [3]])),
            Ok(OpenAiInput::TokenLists(v)) if v == [vec![1, 2], vec![3]]
        ));
        for (bad, says) in [
            (json!(5), "not the number 5"),
            (json!({"a": 1}), "not an object"),
            (json!(["a", 1]), "[1] is the number 1"),
            (json!([1, -2]), "[1] is -2"),
            (json!([1, 1.5]), "[1] is 1.5"),
            (json!([[1], [2, "x"]]), "[1][1] is \"x\""),
            (json!([[1], 2]), "[1] is the number 2"),
            (json!([true]), "[0] is true"),
        ] {
            let msg = input(bad.clone()).unwrap_err();
            assert!(msg.contains(says), "{bad}: {msg}");
            assert!(
                !msg.contains("enum") && !msg.contains("usize") && !msg.contains("u32"),
                "{msg}"
            );
        }
        let e: Result<Inputs, _> = serde_json::from_value(json!([1, 2]));
        assert!(
            e.unwrap_err()
                .to_string()
                .contains("must be a text or a list of texts")
        );
    }

    #[test]
    fn base64_is_little_endian_f32() {
        assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
    }
}
