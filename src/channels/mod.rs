//! Where customers are: one thin adapter per channel. Each verifies what arrives (the
//! platform's signature), parses it, runs the core's channel turn
//! ([`crate::core::Kefu::channel_turn`]: the customer's identity, their open conversation, the
//! one chat turn) and renders the reply in the channel's own form: numbered text on SMS, menu
//! links on WeChat, buttons in the web widget.
//!
//! - `GET/POST /channels/wechat/{account}`: WeChat Official Accounts ([`wechat`]).
//! - `POST /channels/sms`: an SMS provider's inbound webhook ([`sms`]).
//! - `GET /widget.js` and `POST /channels/web/turn`: the web chat widget ([`web`]).
//! - `POST /channels/app/turn`: the operator's app, from its back end ([`web`]).

pub mod render;
pub mod sms;
pub mod web;
pub mod wechat;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

use crate::core::Kefu;

/// `[channels]` in kefu.toml.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChannelsConfig {
    /// `[[channels.wechat]]`: one table per Official Account.
    pub wechat: Vec<wechat::WechatAccount>,
    /// `[channels.sms]`.
    pub sms: sms::SmsConfig,
    /// `[channels.web]`: the chat widget.
    pub web: web::WebConfig,
}

impl ChannelsConfig {
    /// Checks every channel's settings, naming the key at fault.
    pub fn validate(&self, outgoing: &crate::outgoing::OutgoingConfig) -> Result<(), String> {
        let mut names = std::collections::BTreeSet::new();
        for a in &self.wechat {
            a.validate()?;
            if !names.insert(&a.account) {
                return Err(format!(
                    "channels.wechat: account {:?} is declared twice",
                    a.account
                ));
            }
            outgoing.check_url("channels.wechat.api_base", &a.api_base)?;
        }
        self.sms.validate(outgoing)?;
        Ok(())
    }
}

/// What the adapters keep between requests: WeChat's access tokens and recent message ids.
pub struct ChannelState {
    pub wechat: wechat::WechatState,
}

/// The channels' routes. They are open to the key check: each verifies its platform's
/// signature instead (the widget's turn needs a `chat` key like `/v1/chat`).
pub fn routes(kefu: &Arc<Kefu>) -> Router<Arc<Kefu>> {
    let state = Arc::new(ChannelState {
        wechat: wechat::WechatState::new(&kefu.config.channels.wechat),
    });
    Router::new()
        .route(
            "/channels/wechat/{account}",
            get(wechat::verify_url).post(wechat::message),
        )
        .route("/channels/sms", post(sms::inbound))
        .route("/channels/web/turn", post(web::turn))
        .route("/channels/app/turn", post(web::app_turn))
        .route("/widget.js", get(web::script))
        .layer(axum::Extension(state))
}

/// Counts a channel message's outcome.
pub(crate) fn count(kefu: &Kefu, channel: &str, outcome: &str) {
    kefu.metrics
        .channel_messages
        .with_label_values(&[channel, outcome])
        .inc();
}
