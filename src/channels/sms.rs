//! SMS through a provider: `POST /channels/sms` takes the provider's inbound webhook in either
//! shape providers use — form fields `From`, `To`, `Body` (Twilio and its imitators) or JSON
//! `{"from", "to", "text"}` — checks the provider's signature, and sends the reply through the
//! provider's send API, a templated request like a flow's call (`[channels.sms.send]`: its
//! templates see `to`, `from`, `text`, `part` and `parts`), retried on failures another attempt
//! may cure.
//!
//! A reply longer than one message is cut into numbered parts (`(1/2) …`): 160 characters per
//! message in the GSM 7-bit alphabet, 70 otherwise (any Chinese), counting the number. STOP
//! (and `退订`, `TD`, `UNSUBSCRIBE`, …) stops every message to the number until START (`订阅`).
//! The sender's number is the customer's identity (`phone`): their conversation continues
//! wherever they are known by it.

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

use super::render::{self, Style};
use crate::core::Kefu;
use crate::core::channels::ChannelMessage;
use crate::dialog::flows::Call;
use crate::dialog::identity::{Identity, IdentityKind};
use crate::error::Error;

/// How the provider signs its webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signature {
    /// Hex HMAC-SHA256 of the raw body with `secret`, in the header `signature_header`.
    HmacSha256,
    /// Twilio's `X-Twilio-Signature`: base64 HMAC-SHA1, keyed by the auth token (`secret`), of
    /// `public_url` followed by every form field's name and value, sorted by name.
    Twilio,
    /// Unsigned: anyone who can reach the URL can write as any number. Only behind a gateway
    /// that checks the provider.
    None,
}

/// `[channels.sms]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SmsConfig {
    pub enabled: bool,
    pub signature: Signature,
    /// The signing secret (Twilio: the auth token).
    pub secret: String,
    /// The header carrying `hmac_sha256` signatures.
    pub signature_header: String,
    /// The webhook's URL as the provider calls it (for `twilio`, which signs it).
    pub public_url: Option<String>,
    /// The number (or sender id) replies come from: `from` in the send templates.
    pub from: String,
    /// The provider's send request, sent once per part.
    pub send: Option<Call>,
    /// A reply is cut into at most this many messages; the last says it was cut.
    pub max_parts: usize,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            signature: Signature::HmacSha256,
            secret: String::new(),
            signature_header: "x-signature".into(),
            public_url: None,
            from: String::new(),
            send: None,
            max_parts: 5,
        }
    }
}

impl SmsConfig {
    pub fn validate(&self, outgoing: &crate::outgoing::OutgoingConfig) -> Result<(), String> {
        if !self.enabled {
            return Ok(());
        }
        let Some(send) = &self.send else {
            return Err(
                "channels.sms.send must say how replies are sent (url, method, body) when \
                 channels.sms.enabled"
                    .into(),
            );
        };
        crate::dialog::flows::check_call("channels.sms.send", send)?;
        if !send.url.contains("{{") {
            outgoing.check_url("channels.sms.send.url", &send.url)?;
        }
        match self.signature {
            Signature::None => {}
            _ if self.secret.is_empty() => {
                return Err(
                    "channels.sms.secret must be set to check the provider's signature \
                     (or set channels.sms.signature = \"none\")"
                        .into(),
                );
            }
            Signature::Twilio if self.public_url.is_none() => {
                return Err(
                    "channels.sms.public_url must be the webhook's URL as the provider calls \
                     it (Twilio signs it)"
                        .into(),
                );
            }
            _ => {}
        }
        if self.max_parts == 0 {
            return Err("channels.sms.max_parts must be at least 1".into());
        }
        Ok(())
    }
}

/// The JSON shape of an inbound message.
#[derive(Debug, Deserialize)]
struct JsonInbound {
    from: String,
    #[serde(default)]
    to: Option<String>,
    #[serde(default, alias = "body", alias = "content")]
    text: Option<String>,
}

/// What `POST /channels/sms` answers the provider.
#[derive(Debug, Serialize)]
pub struct Accepted {
    /// The message was taken (a reply is on its way, or STOP/START was recorded).
    pub accepted: bool,
    /// Messages the reply was cut into (0 when nothing is sent).
    pub parts: usize,
    /// `answered`, `opted_out`, `opted_in`, `stopped` (a message from a stopped number: not
    /// answered), `empty`.
    pub outcome: &'static str,
}

/// `POST /channels/sms`.
pub async fn inbound(State(kefu): State<Arc<Kefu>>, headers: HeaderMap, body: Bytes) -> Response {
    match handle(&kefu, &headers, &body).await {
        Ok(a) => Json(a).into_response(),
        Err(e) => {
            if matches!(e, Error::Forbidden(_)) {
                super::count(&kefu, "sms", "refused");
            }
            e.into_response()
        }
    }
}

async fn handle(kefu: &Arc<Kefu>, headers: &HeaderMap, body: &[u8]) -> Result<Accepted, Error> {
    let started = Instant::now();
    let cfg = &kefu.config.channels.sms;
    if !cfg.enabled {
        return Err(Error::NotFound(
            "the SMS channel is off (channels.sms.enabled)".into(),
        ));
    }
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let form = ctype.starts_with("application/x-www-form-urlencoded");
    if !form && !ctype.starts_with("application/json") {
        return Err(Error::UnsupportedMediaType(format!(
            "an SMS webhook is form-encoded (From, To, Body) or JSON (from, to, text), not {ctype:?}"
        )));
    }
    let fields: Vec<(String, String)> = if form {
        serde_urlencoded::from_bytes(body)
            .map_err(|e| Error::BadMessage(format!("the form does not parse: {e}")))?
    } else {
        vec![]
    };
    verify(cfg, headers, body, &fields)?;
    let (from, text) = if form {
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        (
            get("From").ok_or_else(|| Error::BadMessage("the form has no From".into()))?,
            get("Body").unwrap_or_default(),
        )
    } else {
        let j: JsonInbound = serde_json::from_slice(body).map_err(|e| {
            Error::BadMessage(format!("the JSON is not an SMS (from, to, text): {e}"))
        })?;
        let _ = j.to;
        (j.from, j.text.unwrap_or_default())
    };
    let identity = Identity::new(IdentityKind::Phone, &from)
        .map_err(|e| Error::BadMessage(format!("From: {e}")))?;
    let word = text.trim().to_uppercase();
    if STOP.contains(&word.as_str()) {
        let was = kefu.opted_out(&identity).await?;
        kefu.set_opted_out(&identity, true).await?;
        super::count(kefu, "sms", "opted_out");
        // One confirmation, as carriers require; none for a repeated STOP.
        let parts = if was {
            0
        } else {
            kefu.send_sms(&identity, confirmation(true, &word).into(), Some(started))
        };
        return Ok(Accepted {
            accepted: true,
            parts,
            outcome: "opted_out",
        });
    }
    if START.contains(&word.as_str()) {
        kefu.set_opted_out(&identity, false).await?;
        super::count(kefu, "sms", "opted_in");
        let parts = kefu.send_sms(&identity, confirmation(false, &word).into(), Some(started));
        return Ok(Accepted {
            accepted: true,
            parts,
            outcome: "opted_in",
        });
    }
    if kefu.opted_out(&identity).await? {
        super::count(kefu, "sms", "stopped");
        return Ok(Accepted {
            accepted: true,
            parts: 0,
            outcome: "stopped",
        });
    }
    if text.trim().is_empty() {
        return Ok(Accepted {
            accepted: true,
            parts: 0,
            outcome: "empty",
        });
    }
    let t = kefu
        .channel_turn(ChannelMessage {
            channel: "sms",
            identity: identity.clone(),
            verified: true,
            text,
        })
        .await?;
    super::count(kefu, "sms", "answered");
    let parts = kefu.send_sms(&identity, render::turn(&t, Style::Sms), Some(started));
    Ok(Accepted {
        accepted: true,
        parts,
        outcome: "answered",
    })
}

const STOP: &[&str] = &[
    "STOP",
    "STOPALL",
    "UNSUBSCRIBE",
    "CANCEL",
    "END",
    "QUIT",
    "退订",
    "TD",
    "T",
    "取消订阅",
];
const START: &[&str] = &["START", "UNSTOP", "SUBSCRIBE", "订阅"];
/// The confirmations, in the language of the word the customer sent; each fits one message.
fn confirmation(stop: bool, word: &str) -> &'static str {
    let zh = !word.is_ascii() || word == "TD" || word == "T";
    match (stop, zh) {
        (true, true) => "您已退订，不会再收到本号码的消息。回复「订阅」可恢复。",
        (true, false) => {
            "You are unsubscribed and will get no more messages. Reply START to resubscribe."
        }
        (false, true) => "您已恢复订阅，请直接发送您的问题。",
        (false, false) => "You are subscribed again; send us your question.",
    }
}

/// The provider's signature, checked before anything is read.
fn verify(
    cfg: &SmsConfig,
    headers: &HeaderMap,
    body: &[u8],
    fields: &[(String, String)],
) -> Result<(), Error> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .unwrap_or_default()
            .to_string()
    };
    let (given, want) = match cfg.signature {
        Signature::None => return Ok(()),
        Signature::HmacSha256 => {
            let given = header(&cfg.signature_header);
            let given = given.strip_prefix("sha256=").unwrap_or(&given).to_string();
            (
                given.to_ascii_lowercase(),
                hmac_signature(&cfg.secret, body),
            )
        }
        Signature::Twilio => (
            header("x-twilio-signature"),
            twilio_signature(
                &cfg.secret,
                cfg.public_url.as_deref().unwrap_or_default(),
                fields,
            ),
        ),
    };
    if given.is_empty() {
        return Err(Error::Forbidden(
            "the message is not signed (channels.sms.signature)".into(),
        ));
    }
    if crate::auth::same(&given, &want) {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "the signature does not match the message".into(),
        ))
    }
}

/// The `hmac_sha256` signature of `body`: hex HMAC-SHA256 keyed with `secret`.
pub fn hmac_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Twilio's request signature: base64 HMAC-SHA1 of the URL and the sorted form fields.
pub fn twilio_signature(token: &str, url: &str, fields: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = fields.iter().collect();
    sorted.sort();
    let mut data = url.to_string();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(token.as_bytes()).expect("any key length");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_fit_one_message() {
        for stop in [true, false] {
            for word in ["STOP", "退订", "START", "订阅"] {
                assert_eq!(
                    crate::text::sms::split(confirmation(stop, word), 5).len(),
                    1,
                    "{word}"
                );
            }
        }
    }

    #[test]
    fn twilio_signature_is_the_documented_one() {
        // Twilio's documentation example of request validation.
        let fields = [
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675310"),
            ("Digits", "1234"),
            ("From", "+14158675310"),
            ("To", "+18005551212"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        assert_eq!(
            twilio_signature(
                "12345",
                "https://mycompany.com/myapp.php?foo=1&bar=2",
                &fields
            ),
            "GvWf1cFY/Q7PnoempGyD5oXAezc="
        );
    }
}
