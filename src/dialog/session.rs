//! Sessions: what kefu remembers of one conversation, and where it keeps it. The in-memory
//! store serves one process; the Redis store lets many replicas share conversations (a load
//! balancer in front needs no stickiness). Both expire a session `ttl` after its last turn.

use std::collections::BTreeMap;
use std::future::Future;
use std::num::NonZeroUsize;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::flows::FlowState;
use super::handoff::HandoffPackage;

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session store (redis): {0}")]
    Redis(#[from] redis::RedisError),
    #[error("stored session {id} is unreadable: {message}")]
    Corrupt { id: String, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Bot,
    Agent,
}

/// One message of the conversation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Turn {
    /// `<session id>-<n>`; feedback refers to it.
    pub id: String,
    pub role: Role,
    pub text: String,
    /// Seconds since the Unix epoch.
    pub at: i64,
    /// For bot turns: what the bot did (`answer`, `clarify`, `ask_slot`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// For customer turns: the question as matched, when context rewriting changed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewritten: Option<String>,
    /// For customer turns: the intent understood.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// For bot answers: the knowledge-base entry answered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub faq_id: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CustomerRef {
    pub id: Option<String>,
    pub tier: Option<String>,
}

/// What the conversation is about at the moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Topic {
    pub faq_id: Option<String>,
    pub question: Option<String>,
    pub category: Option<String>,
    pub intent: Option<String>,
}

/// An option offered by a `clarify` reply; the customer may pick it by number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Choice {
    pub faq_id: String,
    pub question: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Session {
    pub id: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub customer: CustomerRef,
    pub channel: Option<String>,
    /// `zh` or `en`: the language of the customer's latest turn, used for prompts.
    pub locale: String,
    pub turns: Vec<Turn>,
    pub topic: Topic,
    /// Values the customer has given (order numbers, phone numbers, …), by slot name, so a
    /// flow never asks twice.
    pub slots: BTreeMap<String, String>,
    /// The business flow in progress.
    pub flow: Option<FlowState>,
    /// Consecutive turns the bot could not answer.
    pub fallbacks: u32,
    /// Options of the last `clarify` reply.
    pub choices: Vec<Choice>,
    /// Handed to a person: the bot only records turns until released.
    pub with_human: bool,
    pub handoff: Option<HandoffPackage>,
    /// Hand-offs so far (ids are `<session id>-h<n>`).
    pub handoffs: u32,
    /// Flows started so far (part of their calls' idempotency keys).
    pub flows_started: u32,
    /// Every category and intent seen, for hand-off tags.
    pub seen: Vec<String>,
    /// The conversation's end was rated already (the survey is offered once).
    #[serde(default)]
    pub surveyed: bool,
    /// A person gave the conversation back: the next reply offers the survey.
    #[serde(default)]
    pub survey_due: bool,
}

impl Session {
    pub fn new(id: String, customer: CustomerRef, channel: Option<String>) -> Self {
        let now = now();
        Self {
            id,
            created_at: now,
            updated_at: now,
            customer,
            channel,
            locale: "zh".into(),
            turns: vec![],
            topic: Topic::default(),
            slots: BTreeMap::new(),
            flow: None,
            fallbacks: 0,
            choices: vec![],
            with_human: false,
            handoff: None,
            handoffs: 0,
            flows_started: 0,
            seen: vec![],
            surveyed: false,
            survey_due: false,
        }
    }

    /// Appends a turn and returns its id, unique for the session's life: one more than the
    /// latest turn's number (the oldest turns are dropped beyond `dialog.max_turns`, so the
    /// count of turns kept is not it).
    pub fn push(&mut self, role: Role, text: &str) -> String {
        let latest = self
            .turns
            .last()
            .map_or(0, |t| turn_number(&t.id).unwrap_or(0));
        let n = latest.max(self.turns.len() as u64) + 1;
        let id = format!("{}-{n}", self.id);
        self.turns.push(Turn {
            id: id.clone(),
            role,
            text: text.to_string(),
            at: now(),
            action: None,
            rewritten: None,
            intent: None,
            faq_id: None,
        });
        self.updated_at = now();
        id
    }

    /// Drops the oldest turns beyond `max_turns`, then while the turns take more than
    /// `max_bytes` as JSON, always keeping the last two (the turn just taken and its reply):
    /// a session's memory is bounded whatever the length of its turns.
    pub fn trim(&mut self, max_turns: usize, max_bytes: usize) {
        if self.turns.len() > max_turns {
            self.turns.drain(..self.turns.len() - max_turns);
        }
        let sizes: Vec<usize> = self
            .turns
            .iter()
            .map(|t| serde_json::to_vec(t).map_or(0, |b| b.len()))
            .collect();
        let (mut total, mut drop): (usize, usize) = (sizes.iter().sum(), 0);
        while total > max_bytes && self.turns.len() - drop > 2 {
            total -= sizes[drop];
            drop += 1;
        }
        self.turns.drain(..drop);
    }

    pub fn last_mut(&mut self) -> &mut Turn {
        self.turns.last_mut().expect("a turn was pushed")
    }

    pub fn note(&mut self, what: &str) {
        if !what.is_empty() && !self.seen.iter().any(|s| s == what) {
            self.seen.push(what.to_string());
        }
    }
}

/// The `n` of a turn id `<session id>-<n>`.
pub fn turn_number(turn_id: &str) -> Option<u64> {
    turn_id.rsplit_once('-')?.1.parse().ok()
}

pub fn now() -> i64 {
    crate::clock::now()
}

/// A fresh, unguessable session id (128 random bits, hex).
pub fn new_id() -> String {
    let bits: u128 = rand::random();
    format!("{bits:032x}")
}

/// Whether `id` has the form of an id kefu made (128 random bits in hex): the only kind a
/// `chat`-scoped caller may continue, since holding one is what owning the session means.
pub fn minted(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Session ids kefu made or a caller chose: 1–64 letters, digits, `-` and `_`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where sessions live. Writes replace the whole session and restart its time to live.
pub trait SessionStore: Send + Sync {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Session>, SessionError>>;
    fn put<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), SessionError>>;
    /// Whether there was such a session.
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, SessionError>>;
    /// Deletes every session of a customer (erasure); the ids it deleted.
    fn delete_customer<'a>(
        &'a self,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, SessionError>>;
    /// `memory` or `redis`.
    fn kind(&self) -> &'static str;
}

/// Sessions in this process, the least recently used dropped beyond `max_sessions`.
pub struct MemoryStore {
    ttl: Duration,
    sessions: Mutex<lru::LruCache<String, (Instant, Session)>>,
}

impl MemoryStore {
    pub fn new(ttl: Duration, max_sessions: usize) -> Self {
        let cap = NonZeroUsize::new(max_sessions.max(1)).expect("at least one");
        Self {
            ttl,
            sessions: Mutex::new(lru::LruCache::new(cap)),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, lru::LruCache<String, (Instant, Session)>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl SessionStore for MemoryStore {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Session>, SessionError>> {
        Box::pin(async move {
            let mut map = self.lock();
            match map.get(id) {
                Some((at, _)) if at.elapsed() > self.ttl => {
                    map.pop(id);
                    Ok(None)
                }
                Some((_, s)) => Ok(Some(s.clone())),
                None => Ok(None),
            }
        })
    }

    fn put<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), SessionError>> {
        Box::pin(async move {
            self.lock()
                .put(session.id.clone(), (Instant::now(), session.clone()));
            Ok(())
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, SessionError>> {
        Box::pin(async move {
            Ok(self
                .lock()
                .pop(id)
                .is_some_and(|(at, _)| at.elapsed() <= self.ttl))
        })
    }

    fn delete_customer<'a>(
        &'a self,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, SessionError>> {
        Box::pin(async move {
            let mut map = self.lock();
            let ids: Vec<String> = map
                .iter()
                .filter(|(_, (_, s))| s.customer.id.as_deref() == Some(customer_id))
                .map(|(id, _)| id.clone())
                .collect();
            for id in &ids {
                map.pop(id);
            }
            Ok(ids)
        })
    }

    fn kind(&self) -> &'static str {
        "memory"
    }
}

/// The system's root certificates as PEM (those rustls-native-certs finds; none when it finds
/// none).
fn system_roots_pem() -> Vec<u8> {
    use base64::Engine;
    let found = rustls_native_certs::load_native_certs();
    for e in &found.errors {
        tracing::warn!(error = %e, "reading the system's root certificates");
    }
    let mut pem = Vec::new();
    for cert in found.certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            pem.extend_from_slice(line);
            pem.push(b'\n');
        }
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    pem
}

/// Sessions in Redis as JSON under `<prefix><id>`, expiring with the key's TTL.
pub struct RedisStore {
    ttl: Duration,
    prefix: String,
    conn: redis::aio::ConnectionManager,
}

impl RedisStore {
    /// Connects (and checks the connection) to `url`, e.g. `redis://127.0.0.1:6379/0`, or
    /// over TLS `rediss://…` trusting the system's roots and `ca_pem`'s certificates
    /// (`outgoing.ca_file`).
    pub async fn connect(
        url: &str,
        prefix: &str,
        ttl: Duration,
        ca_pem: Option<&[u8]>,
    ) -> Result<Self, SessionError> {
        let client = match ca_pem {
            Some(pem) if url.starts_with("rediss://") => {
                // The crate trusts the roots it is given instead of the system's: give both.
                let mut roots = system_roots_pem();
                roots.extend_from_slice(pem);
                let certs = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(roots),
                };
                redis::Client::build_with_tls(url, certs)?
            }
            _ => redis::Client::open(url)?,
        };
        let cfg = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(3)))
            .set_response_timeout(Some(Duration::from_secs(3)))
            .set_number_of_retries(2);
        let mut conn = client.get_connection_manager_with_config(cfg).await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(Self {
            ttl,
            prefix: prefix.to_string(),
            conn,
        })
    }

    fn key(&self, id: &str) -> String {
        format!("{}{id}", self.prefix)
    }
}

impl SessionStore for RedisStore {
    fn get<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<Option<Session>, SessionError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let raw: Option<String> = redis::cmd("GET")
                .arg(self.key(id))
                .query_async(&mut conn)
                .await?;
            raw.map(|r| {
                serde_json::from_str(&r).map_err(|e| SessionError::Corrupt {
                    id: id.to_string(),
                    message: e.to_string(),
                })
            })
            .transpose()
        })
    }

    fn put<'a>(&'a self, session: &'a Session) -> BoxFuture<'a, Result<(), SessionError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let body = serde_json::to_string(session).expect("sessions serialise");
            let _: () = redis::cmd("SET")
                .arg(self.key(&session.id))
                .arg(body)
                .arg("PX")
                .arg(self.ttl.as_millis().max(1) as u64)
                .query_async(&mut conn)
                .await?;
            Ok(())
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Result<bool, SessionError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let n: i64 = redis::cmd("DEL")
                .arg(self.key(id))
                .query_async(&mut conn)
                .await?;
            Ok(n > 0)
        })
    }

    fn delete_customer<'a>(
        &'a self,
        customer_id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<String>, SessionError>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let mut cursor: u64 = 0;
            let mut gone = Vec::new();
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{}*", self.prefix))
                    .arg("COUNT")
                    .arg(500)
                    .query_async(&mut conn)
                    .await?;
                for key in keys {
                    let raw: Option<String> =
                        redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
                    let Some(session) = raw.and_then(|r| serde_json::from_str::<Session>(&r).ok())
                    else {
                        continue;
                    };
                    if session.customer.id.as_deref() == Some(customer_id) {
                        let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut conn).await?;
                        gone.push(session.id);
                    }
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
            Ok(gone)
        })
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

/// One lock per live session, so that two requests for the same conversation in this process
/// take turns instead of overwriting each other's changes.
#[derive(Default)]
pub struct SessionLocks {
    locks: Mutex<std::collections::HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
}

impl SessionLocks {
    pub async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut locks = self.locks.lock().unwrap_or_else(|p| p.into_inner());
            if locks.len() > 1024 {
                locks.retain(|_, w| w.strong_count() > 0);
            }
            match locks.get(id).and_then(Weak::upgrade) {
                Some(m) => m,
                None => {
                    let m = Arc::new(tokio::sync::Mutex::new(()));
                    locks.insert(id.to_string(), Arc::downgrade(&m));
                    m
                }
            }
        };
        m.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(id: &str) -> Session {
        Session::new(id.into(), CustomerRef::default(), None)
    }

    #[tokio::test]
    async fn memory_store_expires_and_bounds() {
        let store = MemoryStore::new(Duration::from_millis(50), 2);
        store.put(&session("a")).await.unwrap();
        assert!(store.get("a").await.unwrap().is_some());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(store.get("a").await.unwrap().is_none(), "expired");

        let store = MemoryStore::new(Duration::from_secs(60), 2);
        for id in ["a", "b", "c"] {
            store.put(&session(id)).await.unwrap();
        }
        assert!(
            store.get("a").await.unwrap().is_none(),
            "least recent dropped"
        );
        assert!(store.get("c").await.unwrap().is_some());
        assert!(store.delete("c").await.unwrap());
        assert!(!store.delete("c").await.unwrap());
    }

    #[test]
    fn turn_ids_are_never_reused_after_old_turns_are_dropped() {
        let mut s = session("s1");
        let mut ids = std::collections::BTreeSet::new();
        for i in 0..20 {
            assert!(ids.insert(s.push(Role::Customer, &format!("q{i}"))));
            assert!(ids.insert(s.push(Role::Bot, "a")));
            // As a chat turn keeps at most `dialog.max_turns` (here 3).
            let n = s.turns.len();
            s.turns.drain(..n.saturating_sub(3));
        }
        assert_eq!(s.turns.last().unwrap().id, "s1-40");
        assert_eq!(turn_number("s1-40"), Some(40));
        assert_eq!(turn_number("nonsense"), None);
    }

    #[test]
    fn trim_bounds_turns_and_bytes_keeping_the_last_exchange() {
        let mut s = session("t");
        for i in 0..10 {
            s.push(Role::Customer, &format!("q{i}"));
            s.push(Role::Bot, &format!("a{i}"));
        }
        s.trim(6, 1 << 20);
        assert_eq!(s.turns.len(), 6);
        assert_eq!(s.turns[0].text, "q7");

        let long = "退".repeat(8000);
        s.push(Role::Customer, &long);
        s.push(Role::Bot, "a");
        s.trim(100, 4096);
        let texts: Vec<&str> = s.turns.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(texts, [long.as_str(), "a"], "the latest exchange stays");
        s.push(Role::Customer, "short");
        s.push(Role::Bot, "reply");
        s.trim(100, 4096);
        let bytes: usize = s
            .turns
            .iter()
            .map(|t| serde_json::to_vec(t).unwrap().len())
            .sum();
        assert!(bytes <= 4096, "{bytes}");
        assert_eq!(s.turns.last().unwrap().text, "reply");
    }

    #[test]
    fn ids() {
        let id = new_id();
        assert_eq!(id.len(), 32);
        assert!(valid_id(&id));
        assert_ne!(id, new_id());
        assert!(!valid_id(""));
        assert!(!valid_id("a b"));
        assert!(!valid_id(&"x".repeat(65)));
    }
}
