//! Hand-off to a person: the package the agent's desk needs (why, where to, who, what was
//! said, a short summary, what the bot already collected), and its delivery to the desk's
//! webhook with retries and an idempotency key.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::retry::{self, Attempt, Backoff};
use super::session::{CustomerRef, Role, Session};
use crate::intent::routing::Route;

/// Why the conversation went to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// The customer asked for a person.
    ExplicitRequest,
    /// The routing policy sends it to a person (VIP, complaint, …).
    Routing,
    /// The bot could not answer several turns in a row.
    NoAnswer,
    /// A business flow's call to the operator's system failed.
    FlowFailed,
    /// The caller asked for it (`POST /v1/sessions/{id}/handoff`).
    Api,
}

impl Reason {
    /// As in JSON (`explicit_request`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ExplicitRequest => "explicit_request",
            Self::Routing => "routing",
            Self::NoAnswer => "no_answer",
            Self::FlowFailed => "flow_failed",
            Self::Api => "api",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TranscriptLine {
    pub role: Role,
    pub text: String,
    pub at: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct HandoffPackage {
    /// `<session id>-h<n>`; also the webhook's idempotency key.
    pub id: String,
    pub session_id: String,
    pub reason: Reason,
    /// In words, e.g. the routing rule's reason or the failed call.
    pub detail: String,
    pub route: Route,
    pub intent: Option<String>,
    pub severity: Option<String>,
    /// Intents, categories and flows of the conversation, the reason, `vip`, the severity.
    pub tags: Vec<String>,
    pub customer: CustomerRef,
    pub channel: Option<String>,
    pub locale: String,
    pub transcript: Vec<TranscriptLine>,
    /// The customer's most telling sentences, in order.
    pub summary: String,
    /// Everything the customer gave (order number, phone, …).
    pub slots: BTreeMap<String, String>,
    pub created_at: i64,
}

/// What the caller knows about the turn that caused the hand-off.
pub struct Cause<'a> {
    pub reason: Reason,
    pub detail: String,
    pub route: Route,
    pub intent: Option<&'a str>,
    pub severity: Option<&'a str>,
    pub vip: bool,
}

/// Builds the package and marks the session as with a person.
pub fn hand_off(session: &mut Session, cause: Cause) -> HandoffPackage {
    session.handoffs += 1;
    let mut tags: Vec<String> = session.seen.clone();
    tags.push(cause.reason.as_str().to_string());
    if let Some(i) = cause.intent
        && !tags.iter().any(|t| t == i)
    {
        tags.push(i.to_string());
    }
    if cause.vip {
        tags.push("vip".into());
    }
    if let Some(s) = cause.severity {
        tags.push(format!("severity:{s}"));
    }
    let mut slots = session.slots.clone();
    if let Some(f) = &session.flow {
        slots.extend(f.slots.clone());
        tags.push(format!("flow:{}", f.name));
    }
    let package = HandoffPackage {
        id: format!("{}-h{}", session.id, session.handoffs),
        session_id: session.id.clone(),
        reason: cause.reason,
        detail: cause.detail,
        route: cause.route,
        intent: cause.intent.map(str::to_string),
        severity: cause.severity.map(str::to_string),
        tags,
        customer: session.customer.clone(),
        channel: session.channel.clone(),
        locale: session.locale.clone(),
        transcript: session
            .turns
            .iter()
            .map(|t| TranscriptLine {
                role: t.role,
                text: t.text.clone(),
                at: t.at,
            })
            .collect(),
        summary: summary(session, 3),
        slots,
        created_at: super::session::now(),
    };
    session.with_human = true;
    session.flow = None;
    session.handoff = Some(package.clone());
    package
}

/// An extractive summary: the customer's `n` most central turns (those sharing the most
/// words with the rest of what they said), in the order they were said.
pub fn summary(session: &Session, n: usize) -> String {
    let said: Vec<&str> = session
        .turns
        .iter()
        .filter(|t| t.role == Role::Customer)
        .map(|t| t.text.as_str())
        .collect();
    let tokens: Vec<Vec<String>> = said.iter().map(|t| crate::text::tokens(t)).collect();
    let mut df: HashMap<&str, usize> = HashMap::new();
    for ts in &tokens {
        let mut seen: Vec<&str> = ts.iter().map(String::as_str).collect();
        seen.sort_unstable();
        seen.dedup();
        for t in seen {
            *df.entry(t).or_default() += 1;
        }
    }
    let mut scored: Vec<(usize, f32)> = tokens
        .iter()
        .enumerate()
        .map(|(i, ts)| {
            // Words repeated across turns carry the topic; a turn's own words show its content.
            let shared: f32 = ts.iter().map(|t| df[t.as_str()] as f32).sum();
            (
                i,
                (shared + ts.len() as f32) / (ts.len() as f32 + 2.0).sqrt(),
            )
        })
        .filter(|(i, _)| !tokens[*i].is_empty())
        .collect();
    scored.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut keep: Vec<usize> = scored.into_iter().take(n).map(|(i, _)| i).collect();
    keep.sort_unstable();
    keep.iter()
        .map(|&i| said[i].trim())
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Where and how hand-offs are posted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HandoffConfig {
    /// The agent desk's webhook (POST, JSON package); none: returned to the caller only.
    pub webhook_url: Option<String>,
    /// Extra headers, e.g. `authorization`.
    pub webhook_headers: BTreeMap<String, String>,
    /// Signs every delivery: `X-Kefu-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
    /// "<t>.<body>">` with this secret (docs/WEBHOOKS.md); none: unsigned.
    pub webhook_secret: Option<String>,
    /// Further attempts after a failure (connection error, timeout, 429, 5xx).
    pub webhook_retries: u32,
    pub webhook_timeout_ms: u64,
    /// Consecutive turns without an answer before a person takes over.
    pub after_no_answers: u32,
}

impl Default for HandoffConfig {
    fn default() -> Self {
        Self {
            webhook_url: None,
            webhook_headers: BTreeMap::new(),
            webhook_secret: None,
            webhook_retries: 3,
            webhook_timeout_ms: 3000,
            after_no_answers: 2,
        }
    }
}

/// The header that carries a delivery's signature.
pub const SIGNATURE_HEADER: &str = "x-kefu-signature";

/// The shortest webhook secret taken: a short one is guessed.
pub const MIN_SECRET_BYTES: usize = 16;

/// The signature of a delivery made at `timestamp` (Unix seconds) with body `body`:
/// `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the secret>`. The
/// timestamp inside what is signed lets the desk refuse an old delivery played again.
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    use hmac::Mac;
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Posts the package to the webhook, retrying with back-off; the package id is the
/// `Idempotency-Key`, so the desk can drop a retry it already took. With a secret every
/// attempt is signed afresh (a retry carries its own timestamp). A redirect is a refusal (not
/// followed). Returns how many attempts it took, or the last error.
pub async fn deliver(
    http: &crate::outgoing::Outgoing,
    cfg: &HandoffConfig,
    package: &HandoffPackage,
) -> Result<u32, String> {
    post_webhook(http, cfg, &package.id, package).await
}

/// Posts `value` as JSON to `cfg.webhook_url` as [`deliver`] does (signed, retried, `key` as
/// the idempotency key): also how alerts are sent.
pub async fn post_webhook<T: Serialize>(
    http: &crate::outgoing::Outgoing,
    cfg: &HandoffConfig,
    key: &str,
    value: &T,
) -> Result<u32, String> {
    let Some(url) = &cfg.webhook_url else {
        return Ok(0);
    };
    // Serialised once: what is signed is exactly what is sent.
    let body = serde_json::to_vec(value).map_err(|e| e.to_string())?;
    let body = &body;
    let attempt = |_: u32| async move {
        let mut req = http
            .client
            .post(url)
            .timeout(Duration::from_millis(cfg.webhook_timeout_ms))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("idempotency-key", key);
        for (k, v) in &cfg.webhook_headers {
            req = req.header(k, v);
        }
        if let Some(secret) = &cfg.webhook_secret {
            req = req.header(
                SIGNATURE_HEADER,
                signature(secret, super::session::now(), body),
            );
        }
        match req.body(body.clone()).send().await {
            Ok(r) if r.status().is_success() => Attempt::Done(()),
            Ok(r) if r.status().is_redirection() => Attempt::Fail(format!(
                "the webhook {}",
                crate::outgoing::redirect_refusal(&r).unwrap_or_default()
            )),
            Ok(r) if retry::retryable(r.status()) => {
                Attempt::Retry(format!("the webhook answered {}", r.status()))
            }
            Ok(r) => Attempt::Fail(format!("the webhook refused the package: {}", r.status())),
            Err(e) if e.is_timeout() => Attempt::Retry(format!(
                "posting to the webhook timed out after {} ms",
                cfg.webhook_timeout_ms
            )),
            Err(e) => Attempt::Retry(format!(
                "posting to the webhook failed: {}",
                crate::outgoing::chain(&e)
            )),
        }
    };
    backoff(cfg).run(attempt).await.map(|((), n)| n)
}

/// The webhook's retry policy: every failure but a refusal is retried (the package id is
/// the idempotency key), `webhook_retries` times.
fn backoff(cfg: &HandoffConfig) -> Backoff {
    Backoff {
        retries: cfg.webhook_retries,
        first_delay: Duration::from_millis(250),
        max_doublings: 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intent::routing::{Priority, Target};

    #[tokio::test]
    async fn delivery_retries_failures_but_not_refusals() {
        let package = |id: &str| {
            let mut s = Session::new("s1".into(), CustomerRef::default(), None);
            s.push(Role::Customer, "转人工");
            let cause = Cause {
                reason: Reason::ExplicitRequest,
                detail: "asked".into(),
                route: route(),
                intent: None,
                severity: None,
                vip: false,
            };
            HandoffPackage {
                id: id.into(),
                ..hand_off(&mut s, cause)
            }
        };
        let cfg = |url: &str| HandoffConfig {
            webhook_url: Some(url.to_string()),
            webhook_retries: 2,
            ..HandoffConfig::default()
        };
        let c = crate::outgoing::Outgoing::new(&Default::default()).unwrap();

        let (url, seen) = crate::dialog::retry::flaky_server(1, 502).await;
        assert_eq!(deliver(&c, &cfg(&url), &package("s1-h1")).await, Ok(2));
        assert_eq!(*seen.lock().unwrap(), vec![Some("s1-h1".to_string()); 2]);

        let (url, seen) = crate::dialog::retry::flaky_server(9, 503).await;
        let started = std::time::Instant::now();
        let e = deliver(&c, &cfg(&url), &package("s1-h2"))
            .await
            .unwrap_err();
        assert!(e.contains("503"), "{e}");
        assert_eq!(seen.lock().unwrap().len(), 3, "one attempt, two retries");
        assert!(
            started.elapsed() >= Duration::from_millis(750),
            "250 + 500 ms"
        );

        let (url, seen) = crate::dialog::retry::flaky_server(9, 400).await;
        let e = deliver(&c, &cfg(&url), &package("s1-h3"))
            .await
            .unwrap_err();
        assert!(e.contains("refused"), "{e}");
        assert_eq!(seen.lock().unwrap().len(), 1);

        let waits: Vec<u64> = (0..8)
            .map(|n| backoff(&cfg(&url)).delay(n).as_millis() as u64)
            .collect();
        assert_eq!(waits, [0, 250, 500, 1000, 2000, 4000, 8000, 8000]);
    }

    #[test]
    fn signature_of_a_fixed_vector() {
        // The same as Python's
        // hmac.new(b"whsec_0123456789abcdef", b'1700000000.{"id":"s1-h1"}', hashlib.sha256).
        assert_eq!(
            signature(
                "whsec_0123456789abcdef",
                1_700_000_000,
                br#"{"id":"s1-h1"}"#
            ),
            "t=1700000000,v1=0d46c3ca0edef2bc3e248e660ecc768c4feed79f083086333fa28c399f8ff44d"
        );
    }

    /// Each request's signature header and body.
    type Deliveries = std::sync::Arc<std::sync::Mutex<Vec<(Option<String>, Vec<u8>)>>>;

    /// A webhook that answers `statuses` in turn (then 200) and records each request's
    /// signature header and body.
    async fn recording_desk(statuses: Vec<(u16, Option<&'static str>)>) -> (String, Deliveries) {
        use axum::http::{HeaderMap, StatusCode, header};
        let seen = Deliveries::default();
        let log = seen.clone();
        let handler = move |headers: HeaderMap, body: axum::body::Bytes| {
            let log = log.clone();
            let statuses = statuses.clone();
            async move {
                let mut log = log.lock().unwrap();
                let sig = headers
                    .get(SIGNATURE_HEADER)
                    .map(|v| v.to_str().unwrap().to_string());
                log.push((sig, body.to_vec()));
                let (status, location) =
                    statuses.get(log.len() - 1).copied().unwrap_or((200, None));
                let mut h = HeaderMap::new();
                if let Some(l) = location {
                    h.insert(header::LOCATION, l.parse().unwrap());
                }
                (StatusCode::from_u16(status).unwrap(), h, "{}")
            }
        };
        let app = axum::Router::new().fallback(handler);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/desk", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (url, seen)
    }

    fn package() -> HandoffPackage {
        let mut s = Session::new("s1".into(), CustomerRef::default(), None);
        s.push(Role::Customer, "转人工");
        hand_off(
            &mut s,
            Cause {
                reason: Reason::ExplicitRequest,
                detail: "asked".into(),
                route: route(),
                intent: None,
                severity: None,
                vip: false,
            },
        )
    }

    #[tokio::test]
    async fn every_attempt_is_signed_and_redirects_are_refused() {
        let http = crate::outgoing::Outgoing::new(&Default::default()).unwrap();
        let secret = "a-secret-of-the-desk-only";
        let (url, seen) = recording_desk(vec![(503, None)]).await;
        let cfg = HandoffConfig {
            webhook_url: Some(url),
            webhook_secret: Some(secret.into()),
            ..HandoffConfig::default()
        };
        let p = package();
        assert_eq!(deliver(&http, &cfg, &p).await, Ok(2));
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 2);
        for (sig, body) in &seen {
            let sig = sig.as_deref().expect("signed");
            let t: i64 = sig
                .strip_prefix("t=")
                .and_then(|r| r.split(',').next())
                .unwrap()
                .parse()
                .unwrap();
            assert!((super::super::session::now() - t).abs() < 60, "{sig}");
            assert_eq!(sig, signature(secret, t, body), "verifies");
            let got: HandoffPackage = serde_json::from_slice(body).unwrap();
            assert_eq!(got, p);
        }

        // Without a secret: no signature header.
        let (url, seen) = recording_desk(vec![]).await;
        let unsigned = HandoffConfig {
            webhook_url: Some(url),
            ..HandoffConfig::default()
        };
        assert_eq!(deliver(&http, &unsigned, &p).await, Ok(1));
        assert_eq!(seen.lock().unwrap()[0].0, None);

        // A redirect is not followed, and not retried.
        let (url, seen) = recording_desk(vec![(302, Some("http://127.0.0.1:1/elsewhere"))]).await;
        let cfg = HandoffConfig {
            webhook_url: Some(url),
            ..cfg
        };
        let e = deliver(&http, &cfg, &p).await.unwrap_err();
        assert!(
            e.contains("redirect") && e.contains("302") && e.contains("127.0.0.1:1/elsewhere"),
            "{e}"
        );
        assert_eq!(seen.lock().unwrap().len(), 1);
    }

    fn route() -> Route {
        Route {
            target: Target::Agent,
            priority: Priority::Normal,
            reason: "asked".into(),
            sla_minutes: None,
            rule: "human_request".into(),
        }
    }

    #[test]
    fn package_carries_transcript_tags_slots_and_marks_the_session() {
        let mut s = Session::new(
            "s1".into(),
            CustomerRef {
                id: Some("c9".into()),
                tier: Some("gold".into()),
            },
            Some("app".into()),
        );
        s.push(Role::Customer, "我的订单 KF2026112001 一直没到");
        s.push(Role::Bot, "订单已发货");
        s.push(Role::Customer, "快递一直没到，订单到底到哪了");
        s.push(Role::Customer, "转人工");
        s.note("order_status");
        s.slots.insert("order_id".into(), "KF2026112001".into());
        let p = hand_off(
            &mut s,
            Cause {
                reason: Reason::ExplicitRequest,
                detail: "asked".into(),
                route: route(),
                intent: Some("transfer_to_human"),
                severity: None,
                vip: true,
            },
        );
        assert_eq!(p.id, "s1-h1");
        assert_eq!(p.transcript.len(), 4);
        assert_eq!(p.transcript[1].role, Role::Bot);
        assert_eq!(
            p.tags,
            [
                "order_status",
                "explicit_request",
                "transfer_to_human",
                "vip"
            ]
        );
        assert_eq!(p.slots["order_id"], "KF2026112001");
        assert!(p.summary.contains("订单到底到哪了"), "{}", p.summary);
        assert!(s.with_human);
        assert_eq!(s.handoff.as_ref().unwrap().id, "s1-h1");
    }
}
