//! Operational endpoints: liveness, readiness, metrics, and the JSON 404/405.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::SharedState;
use crate::error::ApiError;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    /// `ready` or `loading`.
    pub status: &'static str,
    /// The serving model's version, once loaded.
    pub model: Option<String>,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// 200 once the embedding model is loaded, 503 before.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, body = Readiness),
    (status = 503, body = Readiness, description = "The model is still loading")
))]
pub async fn readyz(State(state): State<SharedState>) -> impl IntoResponse {
    match state.embedder.load_full() {
        Some(e) => (
            StatusCode::OK,
            Json(Readiness {
                status: "ready",
                model: Some(e.version().into()),
            }),
        ),
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                status: "loading",
                model: None,
            }),
        ),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn metrics(State(state): State<SharedState>) -> impl IntoResponse {
    if let Some(e) = state.embedder.load_full() {
        state.metrics.queue_depth.set(e.queue_len() as i64);
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

pub async fn not_found(uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {}", uri.path()))
}

pub async fn method_not_allowed(uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} does not accept this method", uri.path()))
}
