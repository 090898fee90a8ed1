//! The HTTP API: axum router, one file per resource, OpenAPI document.

pub mod auth;
pub mod calibration;
pub mod chat;
pub mod console;
pub mod documents;
pub mod embed;
pub mod error;
pub mod faqs;
pub mod handoffs;
pub mod identities;
pub mod index;
pub mod intent;
pub mod json;
pub mod match_;
pub mod model;
pub mod models;
pub mod openapi;
pub mod ops;
pub mod out_of_scope;
pub mod recommend;
pub mod stats;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use crate::core::Kefu;
use crate::error::Error;

/// What every handler reaches: the core.
pub type SharedState = Arc<Kefu>;

pub fn router(state: SharedState) -> Router {
    let body_limit = state.config.limits.max_body_bytes;
    let routes = Router::new()
        .route("/v1/embed", post(embed::embed))
        .route("/v1/embeddings", post(embed::openai_embeddings))
        .route("/v1/match", post(match_::run))
        .route("/v1/faqs", get(faqs::list).post(faqs::create))
        .route("/v1/faqs:import", post(faqs::import))
        .route("/v1/faqs:export", get(faqs::export))
        .route(
            "/v1/faqs/{id}",
            get(faqs::get_one).put(faqs::replace).delete(faqs::remove),
        )
        .route(
            "/v1/documents",
            get(documents::list).post(documents::upsert),
        )
        .route(
            "/v1/documents/{id}",
            get(documents::get_one).delete(documents::remove),
        )
        .route("/v1/index", get(index::info))
        .route("/v1/intent", post(intent::classify))
        .route("/v1/intent/models", get(intent::models))
        .route("/v1/chat", post(chat::chat))
        .route(
            "/v1/sessions/{id}",
            get(chat::get_session).delete(chat::delete_session),
        )
        .route("/v1/sessions/{id}/release", post(chat::release))
        .route("/v1/sessions/{id}/handoff", post(chat::hand_off))
        .route("/v1/assist", post(chat::assist))
        .route("/v1/handoffs", get(handoffs::list))
        .route("/v1/handoffs/{id}", get(handoffs::get_one))
        .route("/v1/handoffs/{id}/accept", post(handoffs::accept))
        .route("/v1/handoffs/{id}/resolve", post(handoffs::resolve))
        .route("/v1/conversations", get(stats::conversations))
        .route("/v1/conversations/{id}", get(stats::conversation))
        .route("/v1/annotations", post(stats::annotate))
        .route("/v1/stats", get(stats::stats))
        .route("/v1/alerts", get(stats::alerts))
        .route("/v1/reports/weekly", get(stats::report))
        .route("/v1/alerts:evaluate", post(stats::evaluate_alerts))
        .route("/v1/stats/top-questions", get(stats::top_questions))
        .route("/v1/stats/weak-spots", get(stats::weak_spots))
        .route("/v1/stats/recommendations", get(stats::recommendations))
        .route("/v1/stats/unanswered", get(stats::unanswered))
        .route("/v1/stats/unanswered/{id}/draft", post(stats::draft))
        .route(
            "/v1/admin/clock",
            get(stats::get_clock).post(stats::move_clock),
        )
        .route(
            "/v1/feedback",
            post(chat::feedback).get(chat::list_feedback),
        )
        .route(
            "/v1/items",
            get(recommend::list_items).post(recommend::upsert_item),
        )
        .route("/v1/items:import", post(recommend::import_items))
        .route(
            "/v1/items/{id}",
            get(recommend::get_item).delete(recommend::delete_item),
        )
        .route("/v1/events", post(recommend::post_events))
        .route(
            "/v1/customers/{id}",
            put(recommend::put_customer).delete(recommend::erase_customer),
        )
        .route("/v1/customers/{id}/profile", get(recommend::profile))
        .route(
            "/v1/customers/{id}/identities",
            get(identities::list).post(identities::link),
        )
        .route(
            "/v1/customers/{id}/identities/{kind}/{value}",
            axum::routing::delete(identities::unlink),
        )
        .route("/v1/recommend", post(recommend::recommend))
        .route(
            "/v1/calibration",
            get(calibration::get)
                .put(calibration::put)
                .delete(calibration::delete),
        )
        .route(
            "/v1/out-of-scope",
            get(out_of_scope::get)
                .put(out_of_scope::put)
                .delete(out_of_scope::delete),
        )
        .route("/v1/model", get(model::get))
        .route("/v1/model/reload", post(model::reload))
        .route("/v1/model/activate", post(model::activate))
        .route("/v1/models", get(models::list))
        .route("/v1/models/{kind}/{name}/activate", post(models::activate))
        .route("/v1/models/{kind}/{name}/reload", post(models::reload))
        .route("/v1/models/{kind}/{name}/rollback", post(models::rollback))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::serve))
        .merge(crate::channels::routes(&state))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit));
    // Inside `observe`, so that refusals are counted and timed like any response.
    let console = console::Sessions::new(&state.config.console, &state.config.server.host);
    let guard = Arc::new(auth::Guard::new(&state.config.auth, console));
    let mut routes = layers::catch_panics(routes)
        .layer(middleware::from_fn_with_state(guard.clone(), auth::guard));
    if state.config.console.enabled {
        routes = routes.merge(console::routes(guard));
    }
    let routes = routes.layer(middleware::from_fn_with_state(state.clone(), observe));
    let cors = state.config.server.cors_origins.clone();
    layers::outer(routes.with_state(state), &cors)
}

// Declared here rather than with the others above, to keep edits of this file to the router.
pub mod layers;
pub mod reject;

/// Counts and times every request, bounds its duration, and adds a timing header.
async fn observe(State(state): State<SharedState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let started = Instant::now();
    let limit = state.config.server.request_timeout_secs;
    // A guard: when the client hangs up, this future is dropped here and still counts out.
    let in_flight = InFlight::enter(&state.metrics.requests_in_flight);
    let resp = tokio::time::timeout(Duration::from_secs(limit), next.run(req)).await;
    drop(in_flight);
    let mut resp = match resp {
        Ok(r) => r,
        Err(_) => Error::Timeout(limit).into_response(),
    };
    let took = started.elapsed();
    state
        .metrics
        .request_seconds
        .with_label_values(&[&route])
        .observe(took.as_secs_f64());
    state
        .metrics
        .requests
        .with_label_values(&[route.as_str(), resp.status().as_str()])
        .inc();
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", took.as_secs_f64() * 1000.0)) {
        resp.headers_mut().insert("x-kefu-took-ms", v);
    }
    resp
}

/// One request counted in `kefu_http_requests_in_flight` until dropped.
struct InFlight<'a>(&'a prometheus::IntGauge);

impl<'a> InFlight<'a> {
    fn enter(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}
