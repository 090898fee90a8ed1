//! The OpenAPI document, generated from the handlers' annotations (utoipa). A copy is committed
//! as `docs/openapi.json`; a test keeps it current.

use axum::Json;
use utoipa::OpenApi;

use super::{calibration, chat, documents, embed, faqs, index, intent, match_, ops};
use crate::error::{ErrorBody, ErrorDetail};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "kefu",
        description = "Semantic search and intent service for customer support"
    ),
    paths(
        embed::embed,
        embed::openai_embeddings,
        match_::run,
        faqs::list,
        faqs::create,
        faqs::get_one,
        faqs::replace,
        faqs::remove,
        faqs::import,
        faqs::export,
        documents::upsert,
        documents::list,
        documents::get_one,
        documents::remove,
        index::info,
        calibration::get,
        calibration::put,
        calibration::delete,
        intent::classify,
        intent::models,
        chat::chat,
        chat::get_session,
        chat::delete_session,
        chat::release,
        chat::hand_off,
        chat::assist,
        chat::feedback,
        chat::list_feedback,
        ops::healthz,
        ops::readyz,
        ops::metrics
    ),
    components(schemas(
        embed::Inputs,
        embed::EmbedRequest,
        embed::EmbedResponse,
        embed::Usage,
        embed::OpenAiRequest,
        embed::OpenAiResponse,
        embed::OpenAiEmbedding,
        match_::MatchRequest,
        intent::IntentRequest,
        intent::IntentResponse,
        intent::Customer,
        intent::Severity,
        intent::IntentModels,
        intent::IntentModelInfo,
        crate::intent::Ranked,
        crate::intent::model::EncoderRef,
        crate::intent::model::IntentCalibration,
        crate::intent::routing::Route,
        crate::intent::routing::Target,
        crate::intent::routing::Priority,
        match_::MatchResponse,
        match_::Match,
        match_::Filters,
        match_::Signals,
        match_::PassageSource,
        faqs::FaqList,
        crate::kb::store::ImportSummary,
        crate::kb::import::Problem,
        crate::kb::FaqEntry,
        crate::kb::StoredEntry,
        embed::OpenAiUsage,
        index::IndexInfo,
        documents::DocumentSummary,
        documents::DocumentList,
        documents::DocumentDetail,
        crate::kb::Document,
        crate::kb::Passage,
        crate::kb::document::DocFormat,
        calibration::ActiveCalibration,
        crate::matcher::Calibration,
        crate::matcher::Decision,
        crate::matcher::BuildStats,
        ops::Health,
        ops::Readiness,
        crate::dialog::chat::ChatRequest,
        crate::dialog::chat::ChatResponse,
        crate::dialog::chat::Action,
        crate::dialog::chat::IntentView,
        crate::dialog::chat::FlowView,
        crate::dialog::session::Session,
        crate::dialog::session::Turn,
        crate::dialog::session::Role,
        crate::dialog::session::CustomerRef,
        crate::dialog::session::Topic,
        crate::dialog::session::Choice,
        crate::dialog::flows::FlowState,
        crate::dialog::handoff::HandoffPackage,
        crate::dialog::handoff::Reason,
        crate::dialog::handoff::TranscriptLine,
        crate::dialog::assist::AssistRequest,
        crate::dialog::assist::AssistResponse,
        crate::dialog::assist::Line,
        crate::dialog::assist::Suggestion,
        crate::dialog::assist::FlowSuggestion,
        chat::HandoffRequest,
        chat::FeedbackRequest,
        chat::FeedbackList,
        crate::analytics::feedback::Feedback,
        ErrorBody,
        ErrorDetail
    ))
)]
pub struct ApiDoc;

/// The document as pretty JSON, version pinned to the crate's.
pub fn document() -> String {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    doc.to_pretty_json().expect("OpenAPI serialises")
}

pub async fn serve() -> Json<serde_json::Value> {
    Json(serde_json::from_str(&document()).expect("valid JSON"))
}
