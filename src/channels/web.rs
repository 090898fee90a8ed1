//! The web chat widget: `GET /widget.js` serves it (embedded in the binary; no Node at run
//! time) and its turns go to `POST /channels/web/turn` with a `chat`-scoped key, from the
//! origins `server.cors_origins` allows. A page adds one line:
//!
//! ```html
//! <script src="https://kefu.example.com/widget.js" data-key="CHAT_KEY" async></script>
//! ```
//!
//! The widget keeps a random visitor id in the browser's `localStorage`: it is the customer's
//! identity (`web_visitor`), so a reload continues the conversation, and an app that knows who
//! the visitor is can link it to the customer (`POST /v1/customers/{id}/identities`).
//!
//! The operator's own app talks to `POST /channels/app/turn` from its back end, with a `query`
//! key (never shipped to customers): it names its signed-in user (`app_user`), whose open
//! conversation continues there whatever channel it began on.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::json::ApiJson;
use crate::core::Kefu;
use crate::core::channels::{ChannelMessage, Outcome};
use crate::dialog::chat::ChatResponse;
use crate::dialog::identity::{Identity, IdentityKind};
use crate::error::Error;

/// `[channels.web]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Serve `/widget.js` and take its turns.
    pub enabled: bool,
}

impl Default for WebConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

const WIDGET: &str = include_str!("widget.js");

/// `GET /widget.js`.
pub async fn script(State(kefu): State<Arc<Kefu>>) -> Response {
    if !kefu.config.channels.web.enabled {
        return Error::NotFound("the web widget is off (channels.web.enabled)".into())
            .into_response();
    }
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        WIDGET,
    )
        .into_response()
}

/// A widget turn.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebTurnRequest {
    /// The visitor id the widget keeps in the browser: 32 lowercase hex digits.
    #[schema(pattern = "^[0-9a-f]{32}$")]
    pub visitor: String,
    #[schema(schema_with = crate::text::check::schema::input)]
    pub text: String,
}

/// The widget's reply.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebTurnResponse {
    /// What to show.
    pub reply: String,
    /// The chat turn (options, flow, hand-off, survey); none when the message was a rating
    /// or a step of confirming a phone number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub turn: Option<ChatResponse>,
    /// The rating the message gave (a bare 1–5 after the survey).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rated: Option<u8>,
}

/// One visitor message from the web widget.
#[utoipa::path(post, path = "/channels/web/turn", tag = "channels", request_body = WebTurnRequest,
    responses((status = 200, body = WebTurnResponse), (status = 404, body = crate::api::error::ErrorBody),
        (status = 422, body = crate::api::error::ErrorBody), (status = 503, body = crate::api::error::ErrorBody)))]
pub async fn turn(
    State(kefu): State<Arc<Kefu>>,
    ApiJson(req): ApiJson<WebTurnRequest>,
) -> Result<Json<WebTurnResponse>, Error> {
    let started = Instant::now();
    if !kefu.config.channels.web.enabled {
        return Err(Error::NotFound(
            "the web widget is off (channels.web.enabled)".into(),
        ));
    }
    if !crate::dialog::session::minted(&req.visitor) {
        return Err(Error::Invalid(
            "visitor must be 32 lowercase hex digits (the widget makes one)".into(),
        ));
    }
    let identity = Identity::new(IdentityKind::WebVisitor, &req.visitor).map_err(Error::Invalid)?;
    let t = kefu
        .channel_turn(ChannelMessage {
            channel: "web",
            identity,
            verified: false,
            text: req.text,
        })
        .await?;
    super::count(&kefu, "web", "answered");
    kefu.metrics
        .channel_reply_seconds
        .with_label_values(&["web", "passive"])
        .observe(started.elapsed().as_secs_f64());
    Ok(Json(respond(t.outcome)))
}

/// A turn from the operator's app, for its signed-in user.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AppTurnRequest {
    /// The app's user id (an `app_user` identity): 1–128 characters, no spaces or control
    /// characters.
    #[schema(min_length = 1, max_length = 128)]
    pub user: String,
    #[schema(schema_with = crate::text::check::schema::input)]
    pub text: String,
}

/// One message of the app's signed-in user; called by the app's back end with a `query` key.
#[utoipa::path(post, path = "/channels/app/turn", tag = "channels", request_body = AppTurnRequest,
    responses((status = 200, body = WebTurnResponse), (status = 422, body = crate::api::error::ErrorBody),
        (status = 503, body = crate::api::error::ErrorBody)))]
pub async fn app_turn(
    State(kefu): State<Arc<Kefu>>,
    ApiJson(req): ApiJson<AppTurnRequest>,
) -> Result<Json<WebTurnResponse>, Error> {
    let started = Instant::now();
    let identity = Identity::new(IdentityKind::AppUser, &req.user).map_err(Error::Invalid)?;
    let t = kefu
        .channel_turn(ChannelMessage {
            channel: "app",
            identity,
            verified: true,
            text: req.text,
        })
        .await?;
    super::count(&kefu, "app", "answered");
    kefu.metrics
        .channel_reply_seconds
        .with_label_values(&["app", "passive"])
        .observe(started.elapsed().as_secs_f64());
    Ok(Json(respond(t.outcome)))
}

fn respond(outcome: Outcome) -> WebTurnResponse {
    match outcome {
        Outcome::Reply(r) => WebTurnResponse {
            reply: r.reply.clone(),
            turn: Some(*r),
            rated: None,
        },
        Outcome::Rated { rating, thanks } => WebTurnResponse {
            reply: thanks,
            turn: None,
            rated: Some(rating),
        },
        Outcome::Notice(text) => WebTurnResponse {
            reply: text,
            turn: None,
            rated: None,
        },
    }
}
