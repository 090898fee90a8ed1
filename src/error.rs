//! The domain error: every way an operation of the core can fail, each with a stable code.
//! The entry points show it their own way (`src/api/error.rs` maps each code to an HTTP status
//! once; the command line prints the message).

use crate::embed::EmbedError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadJson(String),
    /// A channel's message that is not the platform's format (XML, form fields).
    #[error("{0}")]
    BadMessage(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    EmptyInput(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{} problem(s) in the import; nothing was imported", .0.len())]
    InvalidImport(Vec<crate::kb::import::Problem>),
    #[error("the knowledge base index is being built; retry shortly")]
    IndexNotReady,
    #[error("knowledge base storage failed: {0}")]
    Storage(String),
    #[error("the embedding model is not loaded yet; retry when /readyz answers 200")]
    NotReady,
    #[error(
        "the intent models are still loading (the demo models train at first start); retry shortly"
    )]
    IntentNotReady,
    #[error("{0}")]
    Flow(String),
    #[error("model reload failed, the previous model keeps serving: {0}")]
    ModelReload(String),
    /// A candidate model measured worse than the serving one: nothing changed.
    #[error("{0}")]
    GateRefused(String),
    #[error("{0}")]
    Sessions(String),
    #[error("the request took longer than {0} s")]
    Timeout(u64),
    #[error(transparent)]
    Embed(#[from] EmbedError),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error(
        "the key {key:?} has used its budget of `{scope}` requests; retry in {retry_after_secs} s"
    )]
    RateLimited {
        key: String,
        scope: &'static str,
        retry_after_secs: u64,
    },
}

impl Error {
    /// A store that failed (the recommendation tables, feedback), in its own words.
    pub fn storage(e: impl std::fmt::Display) -> Self {
        Self::Storage(e.to_string())
    }

    /// The stable machine-readable code, e.g. `empty_input`, `overloaded`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadJson(_) => "bad_json",
            Self::BadMessage(_) => "bad_message",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::Invalid(_) => "invalid_request",
            Self::EmptyInput(_) => "empty_input",
            Self::TooLarge(_) => "payload_too_large",
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Conflict(_) => "conflict",
            Self::ModelReload(_) => "model_reload_failed",
            Self::GateRefused(_) => "gate_refused",
            Self::InvalidImport(_) => "invalid_import",
            Self::IndexNotReady => "index_not_ready",
            Self::Storage(_) => "storage_failed",
            Self::NotReady => "model_not_ready",
            Self::IntentNotReady => "intent_not_ready",
            Self::Timeout(_) => "timeout",
            Self::Flow(_) => "flow_template_failed",
            Self::Sessions(_) => "session_store_unavailable",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::RateLimited { .. } => "rate_limited",
            Self::Embed(e) => match e {
                EmbedError::Overloaded(_) => "overloaded",
                EmbedError::Tokenize(_) => "tokenization_failed",
                EmbedError::WorkerGone => "model_not_ready",
                EmbedError::Load(_) | EmbedError::Inference(_) => "inference_failed",
            },
        }
    }
}

impl From<crate::kb::store::StoreError> for Error {
    fn from(e: crate::kb::store::StoreError) -> Self {
        Self::Storage(e.to_string())
    }
}

impl From<crate::dialog::session::SessionError> for Error {
    fn from(e: crate::dialog::session::SessionError) -> Self {
        Self::Sessions(e.to_string())
    }
}
