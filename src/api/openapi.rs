//! The OpenAPI document, generated from the handlers' annotations (utoipa). A copy is committed
//! as `docs/openapi.json`; a test keeps it current.

use axum::Json;
use axum::http::StatusCode;
use utoipa::OpenApi;
use utoipa::openapi::content::ContentBuilder;
use utoipa::openapi::response::ResponseBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{Ref, RefOr, Schema};

use super::error::{ErrorBody, ErrorDetail};
use super::{
    calibration, chat, documents, embed, faqs, handoffs, identities, index, intent, match_, model,
    models, ops, out_of_scope, recommend, stats,
};

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
        out_of_scope::get,
        out_of_scope::put,
        out_of_scope::delete,
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
        recommend::list_items,
        recommend::get_item,
        recommend::upsert_item,
        recommend::delete_item,
        recommend::import_items,
        recommend::post_events,
        recommend::put_customer,
        recommend::erase_customer,
        recommend::profile,
        identities::list,
        identities::link,
        identities::unlink,
        crate::channels::web::turn,
        crate::channels::web::app_turn,
        recommend::recommend,
        model::get,
        model::reload,
        model::activate,
        models::list,
        models::activate,
        models::reload,
        models::rollback,
        handoffs::list,
        handoffs::get_one,
        handoffs::accept,
        handoffs::resolve,
        stats::stats,
        stats::alerts,
        stats::report,
        stats::evaluate_alerts,
        stats::top_questions,
        stats::weak_spots,
        stats::recommendations,
        stats::unanswered,
        stats::draft,
        stats::conversations,
        stats::conversation,
        stats::annotate,
        stats::get_clock,
        stats::move_clock,
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
        embed::OpenAiInput,
        embed::OpenAiVector,
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
        crate::kb::import::Format,
        calibration::ActiveCalibration,
        out_of_scope::OutOfScope,
        crate::matcher::Calibration,
        crate::matcher::Decision,
        crate::dialog::identity::Identity,
        crate::dialog::identity::IdentityKind,
        crate::dialog::identity::LinkedIdentity,
        crate::core::channels::Identities,
        crate::core::channels::Linked,
        crate::channels::web::WebTurnRequest,
        crate::channels::web::WebTurnResponse,
        crate::channels::web::AppTurnRequest,
        crate::matcher::BuildStats,
        ops::Health,
        handoffs::TicketList,
        handoffs::TicketAction,
        crate::analytics::sla::Ticket,
        crate::analytics::sla::State,
        crate::analytics::sla::Attainment,
        stats::Stats,
        stats::AlertList,
        crate::analytics::alerts::Alert,
        crate::analytics::alerts::AlertState,
        crate::analytics::alerts::RuleKind,
        stats::Window,
        stats::Unanswered,
        stats::GapCluster,
        stats::Nearest,
        stats::Conversations,
        crate::analytics::turns::SessionSummary,
        stats::Conversation,
        stats::AnnotationRequest,
        stats::ClockRequest,
        stats::ClockState,
        crate::analytics::stats::Bucket,
        crate::analytics::stats::Numbers,
        crate::analytics::stats::Point,
        crate::analytics::stats::Latency,
        crate::analytics::stats::Satisfaction,
        crate::analytics::stats::TopQuestions,
        crate::analytics::stats::Counted,
        crate::analytics::stats::WeakSpots,
        crate::analytics::stats::Spot,
        crate::analytics::stats::Gap,
        crate::analytics::conversion::RecommendationStats,
        crate::analytics::conversion::Funnel,
        crate::analytics::conversion::Lift,
        crate::recommend::serving::Arm,
        crate::analytics::turns::TurnRecord,
        crate::analytics::turns::Kind,
        ops::Readiness,
        model::ModelInfo,
        crate::model::registry::ModelRef,
        crate::model::registry::Activation,
        crate::model::registry::Kind,
        models::ModelsOverview,
        models::ServingModel,
        models::LifecycleResult,
        crate::core::ReloadStatus,
        crate::core::reload::ActivateRequest,
        crate::core::ModelReload,
        crate::dialog::chat::ChatRequest,
        crate::dialog::chat::ChatResponse,
        crate::dialog::chat::Action,
        crate::dialog::chat::IntentView,
        crate::dialog::chat::FlowView,
        crate::dialog::survey::Survey,
        crate::dialog::survey::Ending,
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
        recommend::ItemList,
        recommend::EventBatch,
        recommend::EventsAccepted,
        crate::recommend::store::Item,
        crate::recommend::store::StoredItem,
        crate::recommend::store::ItemSummary,
        crate::recommend::store::ItemFormat,
        crate::recommend::store::Customer,
        crate::recommend::store::EventType,
        crate::recommend::serving::EventIn,
        crate::recommend::serving::RecommendRequest,
        crate::recommend::serving::RecommendResponse,
        crate::recommend::serving::Recommended,
        crate::recommend::serving::Signals,
        crate::recommend::serving::Strategy,
        crate::recommend::serving::Source,
        crate::recommend::serving::ModelInfo,
        crate::recommend::serving::Profile,
        crate::recommend::serving::Interest,
        crate::recommend::serving::Purchase,
        crate::recommend::serving::Consultation,
        crate::core::privacy::Erased,
        crate::auth::Scope,
        ErrorBody,
        ErrorDetail
    ))
)]
pub struct ApiDoc;

/// `operationId` of every operation, by method and path. utoipa names operations after their
/// handler functions, which repeat across files (`get`, `list`, `remove`…); clients generated
/// from the document need ids that are unique and say what the call does.
const OPERATION_IDS: &[(&str, &str, &str)] = &[
    ("post", "/v1/embed", "embed"),
    ("post", "/v1/embeddings", "create_embeddings"),
    ("post", "/v1/match", "match"),
    ("get", "/v1/faqs", "list_faqs"),
    ("post", "/v1/faqs", "create_faq"),
    ("get", "/v1/faqs/{id}", "get_faq"),
    ("put", "/v1/faqs/{id}", "replace_faq"),
    ("delete", "/v1/faqs/{id}", "delete_faq"),
    ("post", "/v1/faqs:import", "import_faqs"),
    ("get", "/v1/faqs:export", "export_faqs"),
    ("get", "/v1/documents", "list_documents"),
    ("post", "/v1/documents", "upsert_document"),
    ("get", "/v1/documents/{id}", "get_document"),
    ("delete", "/v1/documents/{id}", "delete_document"),
    ("get", "/v1/index", "get_index"),
    ("get", "/v1/calibration", "get_calibration"),
    ("put", "/v1/calibration", "put_calibration"),
    ("delete", "/v1/calibration", "delete_calibration"),
    ("get", "/v1/out-of-scope", "get_out_of_scope"),
    ("put", "/v1/out-of-scope", "put_out_of_scope"),
    ("delete", "/v1/out-of-scope", "delete_out_of_scope"),
    ("post", "/v1/intent", "classify_intent"),
    ("get", "/v1/intent/models", "list_intent_models"),
    ("post", "/v1/chat", "chat"),
    ("get", "/v1/sessions/{id}", "get_session"),
    ("delete", "/v1/sessions/{id}", "delete_session"),
    ("post", "/v1/sessions/{id}/release", "release_session"),
    ("post", "/v1/sessions/{id}/handoff", "hand_off_session"),
    ("post", "/v1/assist", "assist"),
    ("post", "/v1/feedback", "create_feedback"),
    ("get", "/v1/feedback", "list_feedback"),
    ("get", "/v1/items", "list_items"),
    ("post", "/v1/items", "upsert_item"),
    ("get", "/v1/items/{id}", "get_item"),
    ("delete", "/v1/items/{id}", "delete_item"),
    ("post", "/v1/items:import", "import_items"),
    ("post", "/v1/events", "post_events"),
    ("put", "/v1/customers/{id}", "put_customer"),
    ("delete", "/v1/customers/{id}", "erase_customer"),
    ("get", "/v1/customers/{id}/profile", "get_customer_profile"),
    (
        "get",
        "/v1/customers/{id}/identities",
        "list_customer_identities",
    ),
    (
        "post",
        "/v1/customers/{id}/identities",
        "link_customer_identity",
    ),
    (
        "delete",
        "/v1/customers/{id}/identities/{kind}/{value}",
        "unlink_customer_identity",
    ),
    ("post", "/channels/web/turn", "widget_turn"),
    ("post", "/channels/app/turn", "app_turn"),
    ("post", "/v1/recommend", "recommend"),
    ("get", "/v1/model", "get_model"),
    ("post", "/v1/model/activate", "activate_model"),
    ("post", "/v1/model/reload", "reload_model"),
    ("get", "/v1/models", "list_models"),
    ("post", "/v1/models/{kind}/{name}/activate", "activate_slot"),
    ("post", "/v1/models/{kind}/{name}/reload", "reload_slot"),
    ("post", "/v1/models/{kind}/{name}/rollback", "rollback_slot"),
    ("get", "/v1/handoffs", "list_handoffs"),
    ("get", "/v1/handoffs/{id}", "get_handoff"),
    ("post", "/v1/handoffs/{id}/accept", "accept_handoff"),
    ("post", "/v1/handoffs/{id}/resolve", "resolve_handoff"),
    ("get", "/v1/conversations", "list_conversations"),
    ("get", "/v1/conversations/{id}", "get_conversation"),
    ("post", "/v1/annotations", "annotate_turn"),
    ("get", "/v1/stats", "get_stats"),
    ("get", "/v1/stats/top-questions", "get_top_questions"),
    ("get", "/v1/stats/weak-spots", "get_weak_spots"),
    (
        "get",
        "/v1/stats/recommendations",
        "get_recommendation_stats",
    ),
    ("get", "/v1/stats/unanswered", "get_knowledge_gaps"),
    (
        "post",
        "/v1/stats/unanswered/{id}/draft",
        "draft_from_knowledge_gap",
    ),
    ("get", "/v1/alerts", "list_alerts"),
    ("post", "/v1/alerts:evaluate", "evaluate_alerts"),
    ("get", "/v1/reports/weekly", "get_report"),
    ("get", "/v1/admin/clock", "get_clock"),
    ("post", "/v1/admin/clock", "move_clock"),
    ("get", "/healthz", "healthz"),
    ("get", "/readyz", "readyz"),
    ("get", "/metrics", "metrics"),
];

/// The generated document made valid OpenAPI 3.1: unique operation ids (from
/// [`OPERATION_IDS`], else method and path), a description on every response (required by
/// the spec; utoipa leaves it out when an annotation gives none), and who may call each
/// operation (from [`super::auth::ACCESS`]: its security requirement, the scope in its
/// description, and the 401/403/429 answers of a guarded operation).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_string();
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "api_key",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An API key from [auth] (kefu auth new-key), as `Authorization: Bearer \
                     <key>` or `x-api-key: <key>`. Needed only when keys are configured.",
                ))
                .build(),
        ),
    );
    for (path, item) in doc.paths.paths.iter_mut() {
        let ops = [
            ("get", &mut item.get),
            ("put", &mut item.put),
            ("post", &mut item.post),
            ("delete", &mut item.delete),
            ("patch", &mut item.patch),
            ("head", &mut item.head),
            ("options", &mut item.options),
        ];
        for (method, op) in ops {
            let Some(op) = op else { continue };
            op.operation_id = Some(operation_id(method, path));
            guard(op, super::auth::access(method, path));
            document_input_errors(op);
            for (status, resp) in op.responses.responses.iter_mut() {
                if let RefOr::T(r) = resp
                    && r.description.is_empty()
                {
                    r.description = status_description(status);
                }
            }
        }
    }
    if let Some(c) = doc.components.as_mut() {
        open_flattened(&mut c.schemas);
    }
    doc
}

/// Documents who may call `op`.
fn guard(op: &mut utoipa::openapi::path::Operation, access: super::auth::Access) {
    use super::auth::Access;
    let scope = match access {
        Access::Open => {
            op.security = Some(vec![SecurityRequirement::default()]);
            return;
        }
        Access::Metrics => "admin (or none with auth.open_metrics)".to_string(),
        Access::Scope(s) => format!("`{s}`"),
    };
    op.security = Some(vec![SecurityRequirement::new::<_, _, &str>("api_key", [])]);
    let note = format!("Scope: {scope}.");
    op.description = Some(match op.description.take() {
        Some(d) if !d.is_empty() => format!("{d}\n\n{note}"),
        _ => note,
    });
    for (status, what) in [
        ("401", "No API key, or one that matches no configured key"),
        ("403", "The key lacks the scope this operation needs"),
        (
            "429",
            "The key has spent its request budget for this scope (see Retry-After)",
        ),
    ] {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(what)
                        .content(
                            "application/json",
                            ContentBuilder::new()
                                .schema(Some(RefOr::Ref(Ref::from_schema_name("ErrorBody"))))
                                .build(),
                        )
                        .build(),
                )
            });
    }
}

/// A response that flattens a request type (`StoredEntry` = `FaqEntry` + timestamps) is
/// `allOf: [$ref FaqEntry, {timestamps}]`; the request type's `additionalProperties: false`
/// (from `deny_unknown_fields`) would then refuse the timestamps. In such an `allOf` the `$ref`
/// becomes an inline copy without it; requests keep refusing unknown fields.
fn open_flattened(schemas: &mut std::collections::BTreeMap<String, RefOr<Schema>>) {
    let closed: std::collections::BTreeMap<String, Schema> = schemas
        .iter()
        .filter_map(|(name, s)| match s {
            RefOr::T(Schema::Object(o)) if o.additional_properties.is_some() => {
                let mut open = o.clone();
                open.additional_properties = None;
                Some((format!("#/components/schemas/{name}"), Schema::Object(open)))
            }
            _ => None,
        })
        .collect();
    for schema in schemas.values_mut() {
        let RefOr::T(Schema::AllOf(all)) = schema else {
            continue;
        };
        for item in &mut all.items {
            if let RefOr::Ref(r) = item
                && let Some(open) = closed.get(&r.ref_location)
            {
                *item = RefOr::T(open.clone());
            }
        }
    }
}

/// The errors of reading a request, which every operation taking a body or parameters may
/// answer, documented where its annotation leaves them out: 400 (malformed JSON or URL), 413,
/// 415 (not JSON) and 422 (well-formed but invalid).
fn document_input_errors(op: &mut utoipa::openapi::path::Operation) {
    let mut statuses = Vec::new();
    if op.request_body.is_some() {
        statuses.extend(["400", "413", "415", "422"]);
    }
    if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
        statuses.extend(["400", "422"]);
    }
    for status in statuses {
        op.responses
            .responses
            .entry(status.to_string())
            .or_insert_with(|| {
                utoipa::openapi::ResponseBuilder::new()
                    .description(status_description(status))
                    .content(
                        "application/json",
                        utoipa::openapi::ContentBuilder::new()
                            .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                            .build(),
                    )
                    .build()
                    .into()
            });
    }
}

fn operation_id(method: &str, path: &str) -> String {
    match OPERATION_IDS
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
    {
        Some((_, _, id)) => id.to_string(),
        // A route added without an entry still gets a unique id, e.g. `get_v1_things_id`.
        None => std::iter::once(method)
            .chain(path.split(|c: char| !c.is_ascii_alphanumeric()))
            .filter(|w| !w.is_empty())
            .collect::<Vec<_>>()
            .join("_"),
    }
}

/// The status's reason phrase (`404` → `Not Found`), for a response documented without words.
fn status_description(status: &str) -> String {
    status
        .parse::<u16>()
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Response")
        .to_string()
}

/// The document as pretty JSON, version pinned to the crate's.
pub fn document() -> String {
    openapi().to_pretty_json().expect("OpenAPI serialises")
}

pub async fn serve() -> Json<serde_json::Value> {
    Json(serde_json::from_str(&document()).expect("valid JSON"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operation_ids_are_listed_and_unique() {
        let doc = openapi();
        let mut seen = std::collections::BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("get", &item.get),
                ("put", &item.put),
                ("post", &item.post),
                ("delete", &item.delete),
            ] {
                let Some(op) = op else { continue };
                let id = op.operation_id.clone().unwrap();
                assert!(
                    OPERATION_IDS.iter().any(|e| e.0 == method && e.1 == path),
                    "{method} {path} has no entry in OPERATION_IDS"
                );
                assert!(seen.insert(id.clone()), "operationId {id} repeats");
            }
        }
        assert_eq!(
            seen.len(),
            OPERATION_IDS.len(),
            "OPERATION_IDS names a route no more documented"
        );
    }

    #[test]
    fn fallback_ids_and_descriptions() {
        assert_eq!(operation_id("get", "/v1/things/{id}"), "get_v1_things_id");
        assert_eq!(status_description("422"), "Unprocessable Entity");
        assert_eq!(status_description("default"), "Response");
    }
}
