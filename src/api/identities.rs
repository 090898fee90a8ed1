//! One customer across channels: `GET/POST /v1/customers/{id}/identities` and
//! `DELETE /v1/customers/{id}/identities/{kind}/{value}` link a customer's phone number,
//! WeChat openid or unionid, app user id or web visitor id to them, so a conversation begun
//! on one channel continues on another.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;

use super::SharedState;
use super::error::ErrorBody;
use super::json::ApiJson;
use super::reject::ApiPath;
use crate::core::channels::{Identities, Linked};
use crate::dialog::identity::{Identity, IdentityKind};
use crate::error::Error;

/// The identities linked to a customer.
#[utoipa::path(get, path = "/v1/customers/{id}/identities", tag = "channels",
    params(("id" = String, Path, description = "The customer's id")),
    responses((status = 200, body = Identities), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Identities>, Error> {
    Ok(Json(s.identities_of(&id).await?))
}

/// Links a channel identity to a customer. An identity that belonged to another customer
/// moves, and that customer's open conversation with it unless this one has one.
#[utoipa::path(post, path = "/v1/customers/{id}/identities", tag = "channels",
    params(("id" = String, Path, description = "The customer's id")), request_body = Identity,
    responses((status = 201, body = Linked), (status = 422, body = ErrorBody)))]
pub async fn link(
    State(s): State<SharedState>,
    ApiPath(id): ApiPath<String>,
    ApiJson(identity): ApiJson<Identity>,
) -> Result<(StatusCode, Json<Linked>), Error> {
    let identity = Identity::new(identity.kind, &identity.value).map_err(Error::Invalid)?;
    Ok((
        StatusCode::CREATED,
        Json(s.link_identity(&id, identity).await?),
    ))
}

/// Unlinks one identity of a customer.
#[utoipa::path(delete, path = "/v1/customers/{id}/identities/{kind}/{value}", tag = "channels",
    params(("id" = String, Path, description = "The customer's id"),
        ("kind" = IdentityKind, Path, description = "phone, wechat_openid, wechat_unionid, app_user or web_visitor"),
        ("value" = String, Path, description = "The identity's value")),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn unlink(
    State(s): State<SharedState>,
    ApiPath((id, kind, value)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, Error> {
    let kind: IdentityKind = serde_json::from_value(serde_json::Value::String(kind.clone()))
        .map_err(|_| {
            Error::Invalid(format!(
                "{kind:?} is not an identity kind (phone, wechat_openid, wechat_unionid, app_user, web_visitor)"
            ))
        })?;
    let identity = Identity::new(kind, &value).map_err(Error::Invalid)?;
    s.unlink_identity(&id, &identity).await?;
    Ok(StatusCode::NO_CONTENT)
}
