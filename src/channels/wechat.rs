//! WeChat Official Accounts (公众号), to the platform's documented protocol:
//!
//! - `GET /channels/wechat/{account}`: the URL check. `signature` is the SHA-1 (hex) of the
//!   account's `token`, `timestamp` and `nonce`, sorted and joined; kefu echoes `echostr`.
//! - `POST /channels/wechat/{account}`: a message or event as XML, in plain mode or safe mode
//!   (`encrypt_type=aes`: the XML carries `Encrypt`, signed by `msg_signature` = SHA-1 of the
//!   sorted token, timestamp, nonce and `Encrypt`; AES-256-CBC with the 43-character
//!   `EncodingAESKey` (base64 of the key; IV its first 16 bytes), PKCS#7 to 32-byte blocks;
//!   the plaintext is 16 random bytes, the message length as 4 big-endian bytes, the message
//!   and the app id, which must be the account's).
//! - Text, voice (its `Recognition` when the account has recognition on), image, `subscribe`
//!   and menu `CLICK` events. The answer goes back in the webhook's reply (passive reply) when
//!   the turn finishes within `reply_within_ms` (WeChat waits 5 s); otherwise kefu answers
//!   `success` and sends the reply through the customer-service message API
//!   (`/cgi-bin/message/custom/send`) with a cached `access_token` (`/cgi-bin/token`), renewed
//!   before it expires and when WeChat says it is no longer valid.
//! - WeChat retries a message it got no answer to, with the same `MsgId`: a repeat is answered
//!   `success` and not run again.
//!
//! A bad signature is refused (403) before anything is parsed or recorded.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, block_padding::NoPadding};
use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use super::ChannelState;
use super::render::{self, Style};
use crate::core::Kefu;
use crate::core::channels::ChannelMessage;
use crate::dialog::flows::Text;
use crate::dialog::identity::{Identity, IdentityKind};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// `[[channels.wechat]]`: one Official Account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WechatAccount {
    /// The account's name in kefu's URL: `/channels/wechat/{account}` (letters, digits, `-`,
    /// `_`).
    pub account: String,
    /// The Token set in the account's server configuration (服务器配置).
    pub token: String,
    /// AppID and AppSecret (开发者ID): for the access token of the customer-service API.
    pub app_id: String,
    pub app_secret: String,
    /// EncodingAESKey (43 characters): safe mode (安全模式) and compatible mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoding_aes_key: Option<String>,
    /// The WeChat API's base URL.
    #[serde(default = "api_base")]
    pub api_base: String,
    /// A turn that takes longer than this (a flow calling the operator's system) is answered
    /// through the customer-service API instead of the webhook's reply. WeChat waits 5 s.
    #[serde(default = "reply_within_ms")]
    pub reply_within_ms: u64,
    /// Requests whose `timestamp` is further than this from kefu's clock are refused
    /// (replays); 0 turns the check off.
    #[serde(default = "max_clock_skew_secs")]
    pub max_clock_skew_secs: u64,
    /// Sent to a customer who follows the account.
    #[serde(default = "welcome")]
    pub welcome: Text,
    /// Menu `CLICK` keys and the question each stands for (a key without one is sent as it is).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub menu: BTreeMap<String, String>,
}

fn api_base() -> String {
    "https://api.weixin.qq.com".into()
}
fn reply_within_ms() -> u64 {
    4000
}
fn max_clock_skew_secs() -> u64 {
    300
}
fn welcome() -> Text {
    Text {
        zh: "您好，欢迎关注！有什么可以帮您？直接发送您的问题即可。".into(),
        en: "Hello and welcome! What can I help you with? Just send your question.".into(),
    }
}

impl WechatAccount {
    pub fn validate(&self) -> Result<(), String> {
        let at = |f: &str, why: &str| format!("channels.wechat {:?}: {f} {why}", self.account);
        if !crate::dialog::session::valid_id(&self.account) {
            return Err(format!(
                "channels.wechat: account {:?} must be 1–64 letters, digits, `-` or `_`",
                self.account
            ));
        }
        // WeChat's own limits: a token of 3–32 letters and digits.
        if !(3..=32).contains(&self.token.len())
            || !self.token.chars().all(|c| c.is_ascii_alphanumeric())
        {
            return Err(at("token", "must be 3–32 letters or digits"));
        }
        if self.app_id.trim().is_empty() || self.app_secret.trim().is_empty() {
            return Err(at("app_id and app_secret", "must be set"));
        }
        if let Some(k) = &self.encoding_aes_key {
            Crypto::new(k, &self.app_id).map_err(|e| at("encoding_aes_key", &e))?;
        }
        if self.reply_within_ms == 0 || self.reply_within_ms > 4800 {
            return Err(at(
                "reply_within_ms",
                "must be 1–4800 (WeChat gives up on a reply after 5 s)",
            ));
        }
        Ok(())
    }
}

/// SHA-1 (hex) of `parts` sorted and joined: WeChat's `signature` and `msg_signature`.
pub fn signature(parts: &[&str]) -> String {
    let mut v = parts.to_vec();
    v.sort_unstable();
    hex::encode(Sha1::digest(v.concat().as_bytes()))
}

/// Whether `given` is the signature of `parts`, compared in constant time.
fn signed(given: &str, parts: &[&str]) -> bool {
    crate::auth::same(given, &signature(parts))
}

/// Safe mode's cipher: AES-256-CBC with the account's EncodingAESKey.
pub struct Crypto {
    key: [u8; 32],
    app_id: String,
}

impl Crypto {
    pub fn new(encoding_aes_key: &str, app_id: &str) -> Result<Self, String> {
        if encoding_aes_key.len() != 43 {
            return Err(format!(
                "must be 43 characters (it has {})",
                encoding_aes_key.chars().count()
            ));
        }
        // WeChat's keys end in a character whose low bits base64 would leave zero: allowed.
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        );
        let bytes = lenient
            .decode(format!("{encoding_aes_key}="))
            .map_err(|e| format!("is not base64 ({e})"))?;
        let key: [u8; 32] = bytes
            .try_into()
            .map_err(|_| "does not decode to 32 bytes".to_string())?;
        Ok(Self {
            key,
            app_id: app_id.to_string(),
        })
    }

    /// The message inside `encrypted` (base64), checked to be for this app id.
    pub fn decrypt(&self, encrypted: &str) -> Result<String, String> {
        let mut buf = base64::engine::general_purpose::STANDARD
            .decode(encrypted.trim())
            .map_err(|e| format!("Encrypt is not base64 ({e})"))?;
        if buf.is_empty() || buf.len() % 16 != 0 {
            return Err("Encrypt is not whole AES blocks".into());
        }
        let plain = Aes256CbcDec::new(&self.key.into(), self.key[..16].into())
            .decrypt_padded_mut::<NoPadding>(&mut buf)
            .map_err(|_| "Encrypt does not decrypt".to_string())?;
        let pad = *plain.last().unwrap_or(&0) as usize;
        if !(1..=32).contains(&pad) || pad > plain.len() {
            return Err("Encrypt does not decrypt (bad padding)".into());
        }
        let plain = &plain[..plain.len() - pad];
        if plain.len() < 20 {
            return Err("Encrypt is too short".into());
        }
        let n = u32::from_be_bytes([plain[16], plain[17], plain[18], plain[19]]) as usize;
        let body = &plain[20..];
        if n > body.len() {
            return Err("Encrypt's length field is past its end".into());
        }
        let (msg, app_id) = body.split_at(n);
        if app_id != self.app_id.as_bytes() {
            return Err(format!(
                "Encrypt is for app id {:?}, not this account's",
                String::from_utf8_lossy(app_id)
            ));
        }
        String::from_utf8(msg.to_vec()).map_err(|_| "the message is not UTF-8".into())
    }

    /// `msg` encrypted (base64) after the 16 bytes `random`.
    pub fn encrypt(&self, msg: &str, random: &[u8; 16]) -> String {
        let mut plain = Vec::with_capacity(msg.len() + 64);
        plain.extend_from_slice(random);
        plain.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        plain.extend_from_slice(msg.as_bytes());
        plain.extend_from_slice(self.app_id.as_bytes());
        let pad = 32 - plain.len() % 32;
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let n = plain.len();
        let out = Aes256CbcEnc::new(&self.key.into(), self.key[..16].into())
            .encrypt_padded_mut::<NoPadding>(&mut plain, n)
            .expect("whole blocks");
        base64::engine::general_purpose::STANDARD.encode(out)
    }
}

/// A message or event as WeChat posts it (the fields kefu reads).
#[derive(Debug, Default, Deserialize)]
pub struct Incoming {
    #[serde(rename = "ToUserName", default)]
    pub to_user: String,
    #[serde(rename = "FromUserName", default)]
    pub from_user: String,
    #[serde(rename = "CreateTime", default)]
    pub create_time: String,
    #[serde(rename = "MsgType", default)]
    pub msg_type: String,
    #[serde(rename = "Content")]
    pub content: Option<String>,
    #[serde(rename = "MsgId")]
    pub msg_id: Option<String>,
    #[serde(rename = "Recognition")]
    pub recognition: Option<String>,
    #[serde(rename = "Event")]
    pub event: Option<String>,
    #[serde(rename = "EventKey")]
    pub event_key: Option<String>,
    #[serde(rename = "Encrypt")]
    pub encrypt: Option<String>,
}

fn parse(xml: &str) -> Result<Incoming, String> {
    quick_xml::de::from_str(xml).map_err(|e| format!("the body is not WeChat's message XML: {e}"))
}

/// A text reply as WeChat wants it (passive reply).
fn text_reply(to: &str, from: &str, content: &str) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content>{}</Content></xml>",
        cdata(to),
        cdata(from),
        crate::clock::now(),
        cdata(content)
    )
}

fn cdata(s: &str) -> String {
    format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>"))
}

#[derive(Debug, Deserialize)]
pub struct UrlQuery {
    #[serde(default)]
    signature: String,
    #[serde(default)]
    timestamp: String,
    #[serde(default)]
    nonce: String,
    #[serde(default)]
    echostr: Option<String>,
    #[serde(default)]
    encrypt_type: Option<String>,
    #[serde(default)]
    msg_signature: Option<String>,
}

/// Recent message ids (WeChat's retries) and each account's access token.
pub struct WechatState {
    seen: Mutex<lru::LruCache<String, Instant>>,
    tokens: tokio::sync::Mutex<HashMap<String, (String, Instant)>>,
    crypto: HashMap<String, Arc<Crypto>>,
}

/// How long a message id is remembered: WeChat retries three times within about 15 s.
const SEEN_FOR: Duration = Duration::from_secs(120);

impl WechatState {
    pub fn new(accounts: &[WechatAccount]) -> Self {
        let crypto = accounts
            .iter()
            .filter_map(|a| {
                let k = a.encoding_aes_key.as_deref()?;
                Some((a.account.clone(), Arc::new(Crypto::new(k, &a.app_id).ok()?)))
            })
            .collect();
        Self {
            seen: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(100_000).expect("non-zero"),
            )),
            tokens: Default::default(),
            crypto,
        }
    }

    /// Whether `key` was seen within [`SEEN_FOR`]; records it.
    fn repeat(&self, key: String) -> bool {
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let was = seen.get(&key).is_some_and(|t| now - *t < SEEN_FOR);
        if !was {
            seen.put(key, now);
        }
        was
    }

    /// The account's access token: cached until 5 minutes before it expires.
    async fn access_token(
        &self,
        kefu: &Kefu,
        a: &WechatAccount,
        renew: bool,
    ) -> Result<String, String> {
        let mut tokens = self.tokens.lock().await;
        if !renew
            && let Some((t, until)) = tokens.get(&a.account)
            && Instant::now() < *until
        {
            return Ok(t.clone());
        }
        #[derive(Deserialize)]
        struct Token {
            access_token: Option<String>,
            expires_in: Option<u64>,
            errcode: Option<i64>,
            errmsg: Option<String>,
        }
        let url = format!("{}/cgi-bin/token", a.api_base.trim_end_matches('/'));
        let query = serde_urlencoded::to_string([
            ("grant_type", "client_credential"),
            ("appid", a.app_id.as_str()),
            ("secret", a.app_secret.as_str()),
        ])
        .map_err(|e| e.to_string())?;
        let resp = kefu
            .http
            .client
            .get(format!("{url}?{query}"))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| format!("GET {url}: {}", crate::outgoing::chain(&e)))?;
        let t: Token = resp
            .json()
            .await
            .map_err(|e| format!("GET {url}: the reply is not JSON ({e})"))?;
        let Some(token) = t.access_token else {
            return Err(format!(
                "GET {url}: errcode {} {}",
                t.errcode.unwrap_or(-1),
                t.errmsg.unwrap_or_default()
            ));
        };
        let life = t.expires_in.unwrap_or(7200).saturating_sub(300).max(60);
        tokens.insert(
            a.account.clone(),
            (token.clone(), Instant::now() + Duration::from_secs(life)),
        );
        Ok(token)
    }

    /// Sends `text` to `openid` through the customer-service message API; renews the token
    /// once when WeChat says it is invalid or expired.
    async fn send(
        &self,
        kefu: &Kefu,
        a: &WechatAccount,
        openid: &str,
        text: &str,
    ) -> Result<(), String> {
        let url = format!(
            "{}/cgi-bin/message/custom/send",
            a.api_base.trim_end_matches('/')
        );
        let body = serde_json::json!({
            "touser": openid, "msgtype": "text", "text": {"content": text}
        });
        for renew in [false, true] {
            let token = self.access_token(kefu, a, renew).await?;
            let r: serde_json::Value = kefu
                .http
                .client
                .post(format!(
                    "{url}?{}",
                    serde_urlencoded::to_string([("access_token", token.as_str())])
                        .map_err(|e| e.to_string())?
                ))
                .json(&body)
                .timeout(Duration::from_secs(5))
                .send()
                .await
                .map_err(|e| format!("POST {url}: {}", crate::outgoing::chain(&e)))?
                .json()
                .await
                .map_err(|e| format!("POST {url}: the reply is not JSON ({e})"))?;
            match r["errcode"].as_i64().unwrap_or(0) {
                0 => return Ok(()),
                // invalid credential, invalid token, token expired
                40001 | 40014 | 42001 if !renew => continue,
                code => {
                    return Err(format!(
                        "POST {url}: errcode {code} {}",
                        r["errmsg"].as_str().unwrap_or_default()
                    ));
                }
            }
        }
        Err(format!("POST {url}: the renewed token was refused too"))
    }
}

fn account<'a>(kefu: &'a Kefu, name: &str) -> Option<&'a WechatAccount> {
    kefu.config
        .channels
        .wechat
        .iter()
        .find(|a| a.account == name)
}

fn refuse(status: StatusCode, why: String) -> Response {
    use crate::error::Error;
    match status {
        StatusCode::FORBIDDEN => Error::Forbidden(why),
        StatusCode::NOT_FOUND => Error::NotFound(why),
        _ => Error::BadMessage(why),
    }
    .into_response()
}

/// The timestamp check: within `max_clock_skew_secs` of kefu's clock.
fn fresh(a: &WechatAccount, timestamp: &str) -> bool {
    if a.max_clock_skew_secs == 0 {
        return true;
    }
    let Ok(t) = timestamp.parse::<i64>() else {
        return false;
    };
    // The system's clock, not kefu's movable one: WeChat signs with real time.
    (crate::clock::system_now() - t).unsigned_abs() <= a.max_clock_skew_secs
}

/// `GET /channels/wechat/{account}`: WeChat's check of the server URL.
pub async fn verify_url(
    State(kefu): State<Arc<Kefu>>,
    Path(name): Path<String>,
    Query(q): Query<UrlQuery>,
) -> Response {
    let Some(a) = account(&kefu, &name) else {
        return refuse(StatusCode::NOT_FOUND, no_account(&name));
    };
    if !signed(&q.signature, &[&a.token, &q.timestamp, &q.nonce]) {
        super::count(&kefu, "wechat", "refused");
        return refuse(
            StatusCode::FORBIDDEN,
            "signature does not match the account's token".into(),
        );
    }
    let Some(echo) = q.echostr else {
        return refuse(StatusCode::BAD_REQUEST, "echostr is missing".into());
    };
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], echo).into_response()
}

fn no_account(name: &str) -> String {
    format!("no WeChat account {name:?} is configured ([[channels.wechat]])")
}

/// `POST /channels/wechat/{account}`: a message or an event.
pub async fn message(
    State(kefu): State<Arc<Kefu>>,
    Extension(ch): Extension<Arc<ChannelState>>,
    Path(name): Path<String>,
    Query(q): Query<UrlQuery>,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let Some(a) = account(&kefu, &name).cloned() else {
        return refuse(StatusCode::NOT_FOUND, no_account(&name));
    };
    if !signed(&q.signature, &[&a.token, &q.timestamp, &q.nonce]) {
        super::count(&kefu, "wechat", "refused");
        tracing::warn!(account = name, "WeChat message refused: bad signature");
        return refuse(
            StatusCode::FORBIDDEN,
            "signature does not match the account's token".into(),
        );
    }
    if !fresh(&a, &q.timestamp) {
        super::count(&kefu, "wechat", "refused");
        return refuse(
            StatusCode::FORBIDDEN,
            format!(
                "timestamp {:?} is more than {} s from now (channels.wechat.max_clock_skew_secs)",
                q.timestamp, a.max_clock_skew_secs
            ),
        );
    }
    let Ok(xml) = std::str::from_utf8(&body) else {
        return refuse(StatusCode::BAD_REQUEST, "the body is not UTF-8".into());
    };
    let outer = match parse(xml) {
        Ok(m) => m,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
    };
    let safe = q.encrypt_type.as_deref() == Some("aes");
    let crypto = ch.wechat.crypto.get(&a.account).cloned();
    let msg = if safe {
        let Some(crypto) = &crypto else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "encrypt_type=aes but the account has no encoding_aes_key".into(),
            );
        };
        let (Some(enc), Some(sig)) = (&outer.encrypt, &q.msg_signature) else {
            return refuse(
                StatusCode::BAD_REQUEST,
                "a safe-mode message needs Encrypt and msg_signature".into(),
            );
        };
        if !signed(sig, &[&a.token, &q.timestamp, &q.nonce, enc]) {
            super::count(&kefu, "wechat", "refused");
            return refuse(
                StatusCode::FORBIDDEN,
                "msg_signature does not match the message".into(),
            );
        }
        let inner = match crypto.decrypt(enc) {
            Ok(x) => x,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
        };
        match parse(&inner) {
            Ok(m) => m,
            Err(e) => return refuse(StatusCode::BAD_REQUEST, e),
        }
    } else {
        outer
    };
    if msg.from_user.is_empty() || msg.msg_type.is_empty() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the message has no FromUserName or MsgType".into(),
        );
    }
    let key = match &msg.msg_id {
        Some(id) => format!("{}/{id}", a.account),
        None => format!("{}/{}/{}", a.account, msg.from_user, msg.create_time),
    };
    if ch.wechat.repeat(key) {
        super::count(&kefu, "wechat", "duplicate");
        return success();
    }
    let identity = match Identity::new(IdentityKind::WechatOpenid, &msg.from_user) {
        Ok(i) => i,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, format!("FromUserName: {e}")),
    };
    let reply = |text: &str| {
        let xml = text_reply(&msg.from_user, &msg.to_user, text);
        passive(&kefu, &a, crypto.as_deref(), safe, &q.nonce, xml, started)
    };
    let text = match (msg.msg_type.as_str(), msg.event.as_deref()) {
        ("text", _) => msg.content.clone().unwrap_or_default(),
        ("voice", _) => match msg.recognition.as_deref().map(str::trim) {
            Some(r) if !r.is_empty() => r.to_string(),
            _ => {
                super::count(&kefu, "wechat", "unsupported");
                return reply(
                    "抱歉，暂时听不了语音消息，请用文字描述您的问题。\nSorry, I cannot listen to voice messages yet; please type your question.",
                );
            }
        },
        ("image", _) => {
            super::count(&kefu, "wechat", "unsupported");
            return reply(
                "抱歉，暂时看不了图片，请用文字描述您的问题（如订单号）。\nSorry, I cannot read pictures yet; please type your question (an order number, say).",
            );
        }
        ("event", Some(e)) if e.eq_ignore_ascii_case("subscribe") => {
            super::count(&kefu, "wechat", "subscribed");
            if let Err(e) = kefu.identities.resolve(&identity, true).await {
                tracing::warn!("recording a WeChat follower failed: {e}");
            }
            return reply(&format!("{}\n{}", a.welcome.zh, a.welcome.en));
        }
        ("event", Some(e)) if e.eq_ignore_ascii_case("CLICK") => {
            let k = msg.event_key.clone().unwrap_or_default();
            a.menu.get(&k).cloned().unwrap_or(k)
        }
        _ => {
            super::count(&kefu, "wechat", "ignored");
            return success();
        }
    };
    if text.trim().is_empty() {
        return success();
    }
    let m = ChannelMessage {
        channel: "wechat",
        identity,
        verified: true,
        text,
    };
    let k = kefu.clone();
    let mut turn = tokio::spawn(async move { k.channel_turn(m).await });
    let wait = Duration::from_millis(a.reply_within_ms).saturating_sub(started.elapsed());
    match tokio::time::timeout(wait, &mut turn).await {
        Ok(done) => match done {
            Ok(Ok(t)) => {
                super::count(&kefu, "wechat", "answered");
                reply(&render::turn(&t, Style::Wechat))
            }
            Ok(Err(e)) => {
                super::count(&kefu, "wechat", "failed");
                tracing::warn!(account = a.account, "a WeChat turn failed: {e}");
                reply(busy())
            }
            Err(e) => {
                super::count(&kefu, "wechat", "failed");
                tracing::error!(account = a.account, "a WeChat turn panicked: {e}");
                reply(busy())
            }
        },
        Err(_) => {
            // Too slow for the passive reply: `success` now, the answer through the API.
            let openid = msg.from_user.clone();
            let state = ch.clone();
            let kefu2 = kefu.clone();
            kefu.tasks.spawn(async move {
                let text = match turn.await {
                    Ok(Ok(t)) => render::turn(&t, Style::Wechat),
                    Ok(Err(e)) => {
                        tracing::warn!(account = a.account, "a WeChat turn failed: {e}");
                        busy().to_string()
                    }
                    Err(e) => {
                        tracing::error!(account = a.account, "a WeChat turn panicked: {e}");
                        busy().to_string()
                    }
                };
                match state.wechat.send(&kefu2, &a, &openid, &text).await {
                    Ok(()) => {
                        super::count(&kefu2, "wechat", "pushed");
                        kefu2
                            .metrics
                            .channel_reply_seconds
                            .with_label_values(&["wechat", "pushed"])
                            .observe(started.elapsed().as_secs_f64());
                    }
                    Err(e) => {
                        super::count(&kefu2, "wechat", "push_failed");
                        tracing::warn!(
                            account = a.account,
                            "sending a WeChat reply through the customer-service API failed: {e}"
                        );
                    }
                }
            });
            success()
        }
    }
}

fn busy() -> &'static str {
    "抱歉，系统繁忙，请稍后再试。\nSorry, something went wrong on our side; please try again shortly."
}

/// WeChat's "received, nothing to reply".
fn success() -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "success",
    )
        .into_response()
}

/// The passive reply: `xml` as it is, or encrypted in safe mode.
fn passive(
    kefu: &Kefu,
    a: &WechatAccount,
    crypto: Option<&Crypto>,
    safe: bool,
    nonce: &str,
    xml: String,
    started: Instant,
) -> Response {
    let body = match (safe, crypto) {
        (true, Some(c)) => {
            let random: [u8; 16] = rand::random();
            let enc = c.encrypt(&xml, &random);
            let ts = crate::clock::now().to_string();
            let sig = signature(&[&a.token, &ts, nonce, &enc]);
            format!(
                "<xml><Encrypt>{}</Encrypt><MsgSignature>{}</MsgSignature><TimeStamp>{ts}</TimeStamp><Nonce>{}</Nonce></xml>",
                cdata(&enc),
                cdata(&sig),
                cdata(nonce)
            )
        }
        _ => xml,
    };
    kefu.metrics
        .channel_reply_seconds
        .with_label_values(&["wechat", "passive"])
        .observe(started.elapsed().as_secs_f64());
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The examples of WeChat's message encryption guide (消息加解密说明) and its sample code.
    const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

    #[test]
    fn encrypts_as_the_documented_example() {
        let c = Crypto::new(KEY, "wxb11529c136998cb6").unwrap();
        let enc = c.encrypt("我是中文abcd123", b"aaaabbbbccccdddd");
        assert_eq!(
            enc,
            "jn1L23DB+6ELqJ+6bruv21Y6MD7KeIfP82D6gU39rmkgczbWwt5+3bnyg5K55bgVtVzd832WzZGMhkP72vVOfg=="
        );
        assert_eq!(c.decrypt(&enc).unwrap(), "我是中文abcd123");
    }

    #[test]
    fn decrypts_and_checks_the_documented_message() {
        let enc = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";
        assert_eq!(
            signature(&["spamtest", "1409735669", "1320562132", enc]),
            "5d197aaffba7e9b25a30732f161a50dee96bd5fa"
        );
        let c = Crypto::new(KEY, "wx2c2769f8efd9abc2").unwrap();
        let xml = c.decrypt(enc).unwrap();
        let m = parse(&xml).unwrap();
        assert_eq!(m.msg_type, "text");
        assert!(!m.from_user.is_empty());
        // Another account's app id is refused.
        let other = Crypto::new(KEY, "wx0000000000000000").unwrap();
        assert!(other.decrypt(enc).unwrap_err().contains("app id"));
        // A flipped byte does not decrypt to a message.
        let mut bad = base64::engine::general_purpose::STANDARD
            .decode(enc)
            .unwrap();
        bad[40] ^= 1;
        let bad = base64::engine::general_purpose::STANDARD.encode(bad);
        assert!(c.decrypt(&bad).is_err());
    }

    #[test]
    fn url_signature_is_sha1_of_the_sorted_parts() {
        // sha1("1409304348" + "pamtest" + "xxxxxx"), the parts sorted.
        let s = signature(&["pamtest", "1409304348", "xxxxxx"]);
        assert_eq!(s, hex::encode(Sha1::digest(b"1409304348pamtestxxxxxx")));
        assert!(signed(&s, &["xxxxxx", "pamtest", "1409304348"]));
        assert!(!signed(&s, &["pamtest", "1409304349", "xxxxxx"]));
    }

    #[test]
    fn keys_are_checked() {
        assert!(Crypto::new("short", "wx").is_err());
        assert!(Crypto::new(&"!".repeat(43), "wx").is_err());
    }

    #[test]
    fn cdata_survives_its_terminator() {
        let xml = text_reply("a", "b", "x]]>y");
        let m = parse(&xml).unwrap();
        assert_eq!(m.content.as_deref(), Some("x]]>y"));
    }
}
