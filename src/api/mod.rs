//! The HTTP API: axum router, one file per resource, OpenAPI document.

pub mod calibration;
pub mod chat;
pub mod documents;
pub mod embed;
pub mod faqs;
pub mod index;
pub mod intent;
pub mod json;
pub mod match_;
pub mod model;
pub mod openapi;
pub mod ops;
pub mod out_of_scope;
pub mod recommend;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};

use crate::analytics::metrics::Metrics;
use crate::config::Config;
use crate::embed::Embedder;
use crate::error::ApiError;
use crate::kb::KbStore;
use crate::matcher::{Calibration, KbIndex};

/// What every handler can reach.
pub struct AppState {
    pub config: Config,
    pub metrics: Arc<Metrics>,
    /// The serving model; empty until it has loaded. Swapped atomically, so a request keeps
    /// the model it started with.
    pub embedder: ArcSwapOption<Embedder>,
    /// The knowledge base on disk.
    pub kb: KbStore,
    /// The searchable index of the KB, rebuilt in the background after every change and
    /// swapped in whole; empty until the first build.
    pub index: ArcSwapOption<KbIndex>,
    /// Wakes the index builder.
    pub reindex: tokio::sync::Notify,
    /// Weights and thresholds for `/v1/match`; `true` when stored with the KB (else config).
    pub calibration: ArcSwap<(bool, Calibration)>,
    /// The intent models by name; empty until loaded (after the encoder).
    pub intents: ArcSwapOption<IntentModels>,
    /// Conversations (`/v1/chat`), in memory or in Redis.
    pub sessions: Arc<dyn crate::dialog::session::SessionStore>,
    pub session_locks: crate::dialog::session::SessionLocks,
    /// The business flows, checked at start.
    pub flows: Arc<crate::dialog::flows::Flows>,
    /// For flow calls and hand-off webhooks.
    pub http: reqwest::Client,
    pub feedback: crate::analytics::feedback::FeedbackStore,
    /// Catalogue, events, profiles and the recommendation models.
    pub recommender: Arc<crate::recommend::serving::Recommender>,
    /// Held while the index or the encoder is being swapped, so that the index builder never
    /// stores an index of a model that is being replaced.
    pub swap_lock: std::sync::Mutex<()>,
    /// The last model reload (`POST /v1/model/reload`, `GET /v1/model`).
    pub reload: std::sync::Mutex<crate::serve::ReloadStatus>,
}

pub type IntentModels = std::collections::BTreeMap<String, Arc<crate::intent::IntentModel>>;

impl AppState {
    pub fn new(
        config: Config,
        metrics: Arc<Metrics>,
        kb: KbStore,
        stored: Option<Calibration>,
        sessions: Arc<dyn crate::dialog::session::SessionStore>,
        feedback: crate::analytics::feedback::FeedbackStore,
        recommender: Arc<crate::recommend::serving::Recommender>,
    ) -> Self {
        let calibration = match stored {
            Some(c) => (true, c),
            None => (false, config.matching.calibration()),
        };
        Self {
            calibration: ArcSwap::from_pointee(calibration),
            metrics,
            embedder: ArcSwapOption::empty(),
            kb,
            index: ArcSwapOption::empty(),
            reindex: tokio::sync::Notify::new(),
            intents: ArcSwapOption::empty(),
            sessions,
            session_locks: Default::default(),
            flows: crate::dialog::chat::compile_flows(&config.dialog),
            http: reqwest::Client::new(),
            feedback,
            recommender,
            swap_lock: std::sync::Mutex::new(()),
            reload: std::sync::Mutex::new(crate::serve::ReloadStatus {
                state: "idle",
                ..Default::default()
            }),
            config,
        }
    }

    pub fn embedder(&self) -> Result<Arc<Embedder>, ApiError> {
        self.embedder.load_full().ok_or(ApiError::NotReady)
    }

    /// The encoder and the KB index made with it. A model swap stores both under `swap_lock`;
    /// a request that reads them in the middle of one waits for the lock and reads again.
    pub fn encoder_and_index(&self) -> Result<(Arc<Embedder>, Arc<KbIndex>), ApiError> {
        self.with_encoder(
            || self.index.load_full(),
            |e, index| index.model_version == e.version(),
            || ApiError::IndexNotReady,
        )
    }

    /// The encoder and the intent models trained on it (read as in
    /// [`Self::encoder_and_index`]).
    pub fn encoder_and_intents(&self) -> Result<(Arc<Embedder>, Arc<IntentModels>), ApiError> {
        self.with_encoder(
            || self.intents.load_full(),
            |e, models| {
                models
                    .values()
                    .all(|m| m.check_encoder(e.manifest()).is_ok())
            },
            || ApiError::IntentNotReady,
        )
    }

    /// The encoder with a part made for it (`fits`): read once, and once more after any
    /// model swap in progress has ended; `not_ready` when the part is missing or still does
    /// not fit.
    fn with_encoder<T>(
        &self,
        part: impl Fn() -> Option<Arc<T>>,
        fits: impl Fn(&Embedder, &T) -> bool,
        not_ready: fn() -> ApiError,
    ) -> Result<(Arc<Embedder>, Arc<T>), ApiError> {
        let read = || -> Result<(Arc<Embedder>, Arc<T>), ApiError> {
            Ok((self.embedder()?, part().ok_or_else(not_ready)?))
        };
        let (e, p) = read()?;
        if fits(&e, &p) {
            return Ok((e, p));
        }
        drop(self.swap_lock.lock().expect("swap lock"));
        let (e, p) = read()?;
        if fits(&e, &p) {
            Ok((e, p))
        } else {
            Err(not_ready())
        }
    }

    pub fn set_embedder(&self, e: Embedder) {
        self.embedder.store(Some(Arc::new(e)));
        self.metrics.model_ready.set(1);
    }
}

pub type SharedState = Arc<AppState>;

/// `text` without surrounding whitespace; 422 when nothing is left, 413 beyond
/// `limits.max_input_chars`. `field` names it in the message.
pub fn checked_text<'a>(
    field: &str,
    text: &'a str,
    limits: &crate::config::LimitsConfig,
) -> Result<&'a str, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ApiError::EmptyInput(format!("{field} is empty")));
    }
    let chars = text.chars().count();
    if chars > limits.max_input_chars {
        return Err(ApiError::TooLarge(format!(
            "{field} has {chars} characters; at most {} are allowed (limits.max_input_chars)",
            limits.max_input_chars
        )));
    }
    Ok(text)
}

/// 422 unless `channel` is absent or one of the answer channels (web, app, wechat, sms).
pub fn checked_channel(channel: Option<&str>) -> Result<(), ApiError> {
    match channel {
        Some(c) if !crate::kb::entry::CHANNELS.contains(&c) => Err(ApiError::Invalid(format!(
            "channel {c:?} is unknown (one of {})",
            crate::kb::entry::CHANNELS.join(", ")
        ))),
        _ => Ok(()),
    }
}

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
        .route("/v1/customers/{id}", put(recommend::put_customer))
        .route("/v1/customers/{id}/profile", get(recommend::profile))
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
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .route("/openapi.json", get(openapi::serve))
        .fallback(ops::not_found)
        .method_not_allowed_fallback(ops::method_not_allowed)
        .layer(DefaultBodyLimit::max(body_limit));
    let routes =
        layers::catch_panics(routes).layer(middleware::from_fn_with_state(state.clone(), observe));
    layers::outer(routes.with_state(state))
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
    let mut resp = match tokio::time::timeout(Duration::from_secs(limit), next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError::Timeout(limit).into_response(),
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
