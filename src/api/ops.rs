//! Operational endpoints: liveness, readiness, metrics, and the JSON 404/405.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, Uri, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::ToSchema;

use super::SharedState;
use crate::error::Error;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
}

pub use crate::core::Readiness;

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// 200 once every component the configuration serves is up (the encoder, the KB index made
/// with it, the intent models), 503 before; the body names each component's state.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, body = Readiness, description = "Every component is ready"),
    (status = 503, body = Readiness, description = "A component is still loading")
))]
pub async fn readyz(State(state): State<SharedState>) -> impl IntoResponse {
    let r = state.readiness();
    let status = if r.status == "ready" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(r))
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

pub async fn not_found(uri: Uri) -> Error {
    Error::NotFound(format!("no route for {}", uri.path()))
}

pub async fn method_not_allowed(uri: Uri) -> Error {
    Error::MethodNotAllowed(format!("{} does not accept this method", uri.path()))
}
