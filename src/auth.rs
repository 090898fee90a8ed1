//! Who may call what: API keys with scopes (`[auth]`), checked by every entry point.
//!
//! A key is a random secret (`kefu_` and 43 URL-safe characters) that kefu never stores: the
//! configuration holds its SHA-256 (`kefu auth new-key` prints both, the key once). A
//! presented key is hashed and compared with every configured hash in constant time. Each key
//! has a name (what logs and limits speak of) and scopes:
//!
//! - `chat`: what a public chat front-end may call (a customer's turns and feedback);
//! - `query`: matching, intents, embeddings, recommendations, events;
//! - `agent`: conversations, hand-offs, assist, transcripts, customer profiles;
//! - `admin`: everything (the KB, models, calibration, items, erasure, metrics).
//!
//! With no key configured every caller is anonymous and may call everything: fine on the
//! loopback interface (the default), refused at start on any other unless
//! `auth.allow_anonymous = true`.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::ToSchema;

/// What a key may do. `admin` includes every other scope.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Chat,
    Query,
    Agent,
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 4] = [Scope::Chat, Scope::Query, Scope::Agent, Scope::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Chat => "chat",
            Scope::Query => "query",
            Scope::Agent => "agent",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether two secrets (signatures, tokens) are equal, in time that does not depend on where
/// they differ.
pub fn same(a: &str, b: &str) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl std::str::FromStr for Scope {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Scope::ALL
            .into_iter()
            .find(|x| x.as_str() == s.trim())
            .ok_or_else(|| format!("unknown scope {s:?}: chat, query, agent or admin"))
    }
}

/// `[[auth.keys]]`: one key as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// Who holds the key (logs, limits and errors name it; the key itself never appears).
    pub name: String,
    pub scopes: Vec<Scope>,
    /// `sha256:` and the hex SHA-256 of the key.
    pub hash: String,
}

/// A request rate: `per_second` on average, bursts of up to `burst`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rate {
    pub per_second: u32,
    /// Requests allowed at once after a quiet spell; default: `per_second`.
    #[serde(default)]
    pub burst: Option<u32>,
}

/// `[auth.rate_limits]`: each key's budget on the routes of a scope (none: unlimited).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RateLimits {
    pub chat: Option<Rate>,
    pub query: Option<Rate>,
    pub agent: Option<Rate>,
    pub admin: Option<Rate>,
}

impl RateLimits {
    pub fn of(&self, scope: Scope) -> Option<Rate> {
        match scope {
            Scope::Chat => self.chat,
            Scope::Query => self.query,
            Scope::Agent => self.agent,
            Scope::Admin => self.admin,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub keys: Vec<KeyConfig>,
    /// Serve without keys on a non-loopback address (every caller may do everything).
    pub allow_anonymous: bool,
    /// `/metrics` without a key (for a Prometheus that cannot send one); else `admin`.
    pub open_metrics: bool,
    pub rate_limits: RateLimits,
}

impl AuthConfig {
    /// Checks values that parse but make no sense, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = BTreeSet::new();
        let mut hashes = BTreeSet::new();
        for (i, k) in self.keys.iter().enumerate() {
            let at = format!("auth.keys[{i}]");
            if k.name.trim().is_empty() || k.name.len() > 64 {
                return Err(format!("{at}.name must be 1–64 characters"));
            }
            if !names.insert(k.name.as_str()) {
                return Err(format!("{at}.name {:?} is used by another key", k.name));
            }
            if k.scopes.is_empty() {
                return Err(format!(
                    "{at}.scopes is empty: give at least one of chat, query, agent, admin"
                ));
            }
            let digest = parse_hash(&k.hash).ok_or_else(|| {
                format!(
                    "{at}.hash of key {:?} is not `sha256:` and 64 hex digits (kefu auth new-key \
                     prints it; never put the key itself here)",
                    k.name
                )
            })?;
            if !hashes.insert(digest) {
                return Err(format!(
                    "{at}.hash of key {:?} repeats another key's",
                    k.name
                ));
            }
        }
        for s in Scope::ALL {
            if let Some(r) = self.rate_limits.of(s)
                && (r.per_second == 0 || r.burst == Some(0))
            {
                return Err(format!(
                    "auth.rate_limits.{s}: per_second and burst must be at least 1"
                ));
            }
        }
        Ok(())
    }

    /// Whether callers must present a key.
    pub fn required(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Refuses to serve everyone on a reachable address by accident.
    pub fn check_exposure(&self, host: &str) -> Result<(), String> {
        if self.required() || is_loopback(host) {
            return Ok(());
        }
        if self.allow_anonymous {
            tracing::warn!(
                host,
                "NO API KEYS: anyone who can reach {host} may read conversations, change the \
                 knowledge base and swap models (auth.allow_anonymous = true)"
            );
            return Ok(());
        }
        Err(format!(
            "server.host {host} is reachable from other machines and no API key is configured: \
             add keys under [auth] (kefu auth new-key --name NAME --scopes admin prints one), \
             listen on 127.0.0.1, or set auth.allow_anonymous = true to serve everyone"
        ))
    }
}

/// Whether `host` (as `server.host` gives it) is only reachable from this machine.
pub fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn parse_hash(h: &str) -> Option<[u8; 32]> {
    let hex = h.strip_prefix("sha256:")?;
    let bytes = hex::decode(hex).ok()?;
    bytes.try_into().ok()
}

/// A new random key and its configuration entry.
pub struct NewKey {
    pub key: String,
    pub config: KeyConfig,
}

/// Mints a key: 256 random bits, `kefu_` + URL-safe base64.
pub fn new_key(name: &str, scopes: Vec<Scope>) -> NewKey {
    let bytes: [u8; 32] = rand::random();
    let key = format!(
        "kefu_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let config = KeyConfig {
        name: name.to_string(),
        scopes,
        hash: hash_key(&key),
    };
    NewKey { key, config }
}

/// The configured form of a key: `sha256:<hex>`.
pub fn hash_key(key: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(key.as_bytes())))
}

/// Who is calling: a configured key, or anyone (no keys configured).
#[derive(Debug, Clone, PartialEq)]
pub enum Caller {
    Anonymous,
    Key { name: String, scopes: Vec<Scope> },
}

impl Caller {
    /// Whether the caller may use routes of `scope` (`admin` may use all).
    pub fn has(&self, scope: Scope) -> bool {
        match self {
            Caller::Anonymous => true,
            Caller::Key { scopes, .. } => scopes.contains(&Scope::Admin) || scopes.contains(&scope),
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Caller::Anonymous => "anonymous",
            Caller::Key { name, .. } => name,
        }
    }

    /// Whether the caller may name a session itself (continue or read any conversation).
    /// A `chat` key may only continue sessions the server started: their ids are 128
    /// random bits, unguessable, so holding one is what owning the session means.
    pub fn may_choose_session(&self) -> bool {
        self.has(Scope::Agent)
    }
}

/// Why a presented key was not accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Denied {
    #[error(
        "this endpoint needs an API key with the `{0}` scope: send it as `Authorization: Bearer <key>`"
    )]
    Missing(Scope),
    #[error("the API key is not valid (it matches no configured key)")]
    Unknown,
    #[error("the key {name:?} lacks the `{scope}` scope this endpoint needs")]
    Forbidden { name: String, scope: Scope },
}

/// The configured keys, ready to check presented ones.
pub struct Keys {
    keys: Vec<(KeyConfig, [u8; 32])>,
}

impl Keys {
    /// Keys from a validated configuration.
    pub fn new(cfg: &AuthConfig) -> Self {
        let keys = cfg
            .keys
            .iter()
            .filter_map(|k| parse_hash(&k.hash).map(|h| (k.clone(), h)))
            .collect();
        Self { keys }
    }

    /// Who presents `key` (or nothing), for a route of `scope`.
    pub fn check(&self, key: Option<&str>, scope: Scope) -> Result<Caller, Denied> {
        if self.keys.is_empty() {
            return Ok(Caller::Anonymous);
        }
        let key = key.ok_or(Denied::Missing(scope))?;
        let digest: [u8; 32] = Sha256::digest(key.as_bytes()).into();
        // Every hash is compared, match or not: the time taken says nothing about which.
        let mut found = None;
        for (k, h) in &self.keys {
            if bool::from(h.ct_eq(&digest)) {
                found = Some(k);
            }
        }
        let k = found.ok_or(Denied::Unknown)?;
        let caller = Caller::Key {
            name: k.name.clone(),
            scopes: k.scopes.clone(),
        };
        if caller.has(scope) {
            Ok(caller)
        } else {
            Err(Denied::Forbidden {
                name: k.name.clone(),
                scope,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(keys: &[(&str, Vec<Scope>, &str)]) -> AuthConfig {
        AuthConfig {
            keys: keys
                .iter()
                .map(|(n, s, k)| KeyConfig {
                    name: n.to_string(),
                    scopes: s.clone(),
                    hash: hash_key(k),
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn keys_are_checked_by_hash_and_scope() {
        let c = cfg(&[
            ("widget", vec![Scope::Chat], "kefu_w"),
            ("ops", vec![Scope::Admin], "kefu_o"),
        ]);
        c.validate().unwrap();
        let keys = Keys::new(&c);
        assert_eq!(
            keys.check(None, Scope::Chat),
            Err(Denied::Missing(Scope::Chat))
        );
        assert_eq!(keys.check(Some("nope"), Scope::Chat), Err(Denied::Unknown));
        assert_eq!(
            keys.check(Some("kefu_w"), Scope::Chat).unwrap().name(),
            "widget"
        );
        assert_eq!(
            keys.check(Some("kefu_w"), Scope::Admin),
            Err(Denied::Forbidden {
                name: "widget".into(),
                scope: Scope::Admin
            })
        );
        // admin includes every scope.
        for s in Scope::ALL {
            assert!(keys.check(Some("kefu_o"), s).is_ok());
        }
    }

    #[test]
    fn no_keys_means_anonymous_and_only_on_loopback() {
        let c = AuthConfig::default();
        assert_eq!(
            Keys::new(&c).check(None, Scope::Admin),
            Ok(Caller::Anonymous)
        );
        assert!(c.check_exposure("127.0.0.1").is_ok());
        assert!(c.check_exposure("::1").is_ok());
        assert!(c.check_exposure("localhost").is_ok());
        let e = c.check_exposure("0.0.0.0").unwrap_err();
        assert!(e.contains("auth.allow_anonymous"), "{e}");
        let open = AuthConfig {
            allow_anonymous: true,
            ..Default::default()
        };
        assert!(open.check_exposure("0.0.0.0").is_ok());
        let keyed = cfg(&[("ops", vec![Scope::Admin], "k")]);
        assert!(keyed.check_exposure("0.0.0.0").is_ok());
    }

    #[test]
    fn new_keys_are_random_and_verify() {
        let a = new_key("a", vec![Scope::Query]);
        let b = new_key("b", vec![Scope::Query]);
        assert_ne!(a.key, b.key);
        assert!(
            a.key.starts_with("kefu_") && a.key.len() == 5 + 43,
            "{}",
            a.key
        );
        assert_eq!(a.config.hash, hash_key(&a.key));
        let c = AuthConfig {
            keys: vec![a.config.clone()],
            ..Default::default()
        };
        c.validate().unwrap();
        assert!(Keys::new(&c).check(Some(&a.key), Scope::Query).is_ok());
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = cfg(&[("a", vec![Scope::Chat], "x"), ("a", vec![Scope::Chat], "y")]);
        assert!(c.validate().unwrap_err().contains("auth.keys[1].name"));
        c.keys[1].name = "b".into();
        c.keys[1].hash = "kefu_plaintext".into();
        assert!(c.validate().unwrap_err().contains("auth.keys[1].hash"));
        c.keys[1].hash = hash_key("y");
        c.keys[1].scopes.clear();
        assert!(c.validate().unwrap_err().contains("auth.keys[1].scopes"));
        c.keys[1].scopes = vec![Scope::Chat];
        c.rate_limits.chat = Some(Rate {
            per_second: 0,
            burst: None,
        });
        assert!(c.validate().unwrap_err().contains("auth.rate_limits.chat"));
        assert!("root".parse::<Scope>().is_err());
        assert_eq!(" agent".parse::<Scope>(), Ok(Scope::Agent));
    }

    #[test]
    fn only_agents_choose_sessions() {
        let chat = Caller::Key {
            name: "w".into(),
            scopes: vec![Scope::Chat, Scope::Query],
        };
        assert!(!chat.may_choose_session());
        assert!(Caller::Anonymous.may_choose_session());
        let admin = Caller::Key {
            name: "o".into(),
            scopes: vec![Scope::Admin],
        };
        assert!(admin.may_choose_session());
    }
}
