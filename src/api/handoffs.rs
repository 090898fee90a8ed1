//! Hand-offs as work for people: `GET /v1/handoffs` (with their SLA clocks),
//! `GET /v1/handoffs/{id}`, `POST /v1/handoffs/{id}/accept` and `/resolve`.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa::ToSchema;

use super::SharedState;
use super::error::ErrorBody;
use super::json::ApiJson;
use super::reject::{ApiPath, ApiQuery};
use crate::analytics::sla::Ticket;
pub use crate::core::analytics::{HandoffQuery, TicketAction};
use crate::error::Error;

#[derive(Debug, Serialize, ToSchema)]
pub struct TicketList {
    pub handoffs: Vec<Ticket>,
}

/// Hand-offs, newest first, by state and breach.
#[utoipa::path(get, path = "/v1/handoffs", tag = "dialog", params(HandoffQuery), responses(
    (status = 200, body = TicketList), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(s): State<SharedState>,
    ApiQuery(q): ApiQuery<HandoffQuery>,
) -> Result<Json<TicketList>, Error> {
    Ok(Json(TicketList {
        handoffs: s.handoffs(&q).await?,
    }))
}

/// One hand-off with its SLA clocks.
#[utoipa::path(get, path = "/v1/handoffs/{id}", tag = "dialog",
    params(("id" = String, Path, description = "The hand-off package's id")), responses(
    (status = 200, body = Ticket), (status = 404, body = ErrorBody)))]
pub async fn get_one(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Ticket>, Error> {
    Ok(Json(s.handoff(&id).await?))
}

/// An agent picks the hand-off up (stops the pick-up clock).
#[utoipa::path(post, path = "/v1/handoffs/{id}/accept", tag = "dialog",
    params(("id" = String, Path, description = "The hand-off package's id")), request_body = TicketAction,
    responses((status = 200, body = Ticket), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn accept(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(a): ApiJson<TicketAction>,
) -> Result<Json<Ticket>, Error> {
    Ok(Json(s.accept_handoff(&id, &a).await?))
}

/// The hand-off is resolved (stops the resolution clock); the conversation goes back to the
/// bot unless `release` is false.
#[utoipa::path(post, path = "/v1/handoffs/{id}/resolve", tag = "dialog",
    params(("id" = String, Path, description = "The hand-off package's id")), request_body = TicketAction,
    responses((status = 200, body = Ticket), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn resolve(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(a): ApiJson<TicketAction>,
) -> Result<Json<Ticket>, Error> {
    Ok(Json(s.resolve_handoff(&id, &a).await?))
}
