//! The API's gate: which scope each route needs ([`ACCESS`], the one table), the key check
//! (`Authorization: Bearer`, as OpenAI's clients send it, or `x-api-key`), and each key's
//! request budget per scope (429 with `Retry-After`).

use std::num::NonZeroU32;
use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::auth::{AuthConfig, Caller, Denied, Keys, Scope};
use crate::error::Error;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone (probes, the API document).
    Open,
    /// A key with this scope (or `admin`).
    Scope(Scope),
    /// `/metrics`: `admin`, or anyone with `auth.open_metrics`.
    Metrics,
}

use Access::{Open, Scope as S};
use Scope::{Admin, Agent, Chat, Query};

/// Every route's access, by method and path. A route missing here needs `admin`.
pub const ACCESS: &[(&str, &str, Access)] = &[
    ("post", "/v1/chat", S(Chat)),
    ("post", "/v1/feedback", S(Chat)),
    ("post", "/v1/embed", S(Query)),
    ("post", "/v1/embeddings", S(Query)),
    ("post", "/v1/match", S(Query)),
    ("post", "/v1/intent", S(Query)),
    ("get", "/v1/intent/models", S(Query)),
    ("post", "/v1/recommend", S(Query)),
    ("post", "/v1/events", S(Query)),
    ("put", "/v1/customers/{id}", S(Query)),
    ("get", "/v1/items", S(Query)),
    ("get", "/v1/items/{id}", S(Query)),
    ("get", "/v1/sessions/{id}", S(Agent)),
    ("delete", "/v1/sessions/{id}", S(Agent)),
    ("post", "/v1/sessions/{id}/release", S(Agent)),
    ("post", "/v1/sessions/{id}/handoff", S(Agent)),
    ("post", "/v1/assist", S(Agent)),
    ("get", "/v1/feedback", S(Agent)),
    ("get", "/v1/customers/{id}/profile", S(Agent)),
    ("get", "/v1/handoffs", S(Agent)),
    ("get", "/v1/handoffs/{id}", S(Agent)),
    ("post", "/v1/handoffs/{id}/accept", S(Agent)),
    ("post", "/v1/handoffs/{id}/resolve", S(Agent)),
    ("get", "/v1/conversations", S(Agent)),
    ("get", "/v1/conversations/{id}", S(Agent)),
    ("post", "/v1/annotations", S(Agent)),
    ("get", "/v1/stats", S(Admin)),
    ("get", "/v1/alerts", S(Admin)),
    ("get", "/v1/reports/weekly", S(Admin)),
    ("post", "/v1/alerts:evaluate", S(Admin)),
    ("get", "/v1/stats/top-questions", S(Admin)),
    ("get", "/v1/stats/weak-spots", S(Admin)),
    ("get", "/v1/stats/recommendations", S(Admin)),
    ("get", "/v1/stats/unanswered", S(Admin)),
    ("post", "/v1/stats/unanswered/{id}/draft", S(Admin)),
    ("get", "/v1/admin/clock", S(Admin)),
    ("post", "/v1/admin/clock", S(Admin)),
    ("get", "/v1/faqs", S(Admin)),
    ("post", "/v1/faqs", S(Admin)),
    ("get", "/v1/faqs/{id}", S(Admin)),
    ("put", "/v1/faqs/{id}", S(Admin)),
    ("delete", "/v1/faqs/{id}", S(Admin)),
    ("post", "/v1/faqs:import", S(Admin)),
    ("get", "/v1/faqs:export", S(Admin)),
    ("get", "/v1/documents", S(Admin)),
    ("post", "/v1/documents", S(Admin)),
    ("get", "/v1/documents/{id}", S(Admin)),
    ("delete", "/v1/documents/{id}", S(Admin)),
    ("get", "/v1/index", S(Admin)),
    ("get", "/v1/calibration", S(Admin)),
    ("put", "/v1/calibration", S(Admin)),
    ("delete", "/v1/calibration", S(Admin)),
    ("get", "/v1/out-of-scope", S(Admin)),
    ("put", "/v1/out-of-scope", S(Admin)),
    ("delete", "/v1/out-of-scope", S(Admin)),
    ("post", "/v1/items", S(Admin)),
    ("delete", "/v1/items/{id}", S(Admin)),
    ("post", "/v1/items:import", S(Admin)),
    ("delete", "/v1/customers/{id}", S(Admin)),
    ("get", "/v1/model", S(Admin)),
    ("post", "/v1/model/reload", S(Admin)),
    ("post", "/v1/model/activate", S(Admin)),
    ("get", "/v1/models", S(Admin)),
    ("post", "/v1/models/{kind}/{name}/activate", S(Admin)),
    ("post", "/v1/models/{kind}/{name}/reload", S(Admin)),
    ("post", "/v1/models/{kind}/{name}/rollback", S(Admin)),
    ("get", "/v1/customers/{id}/identities", S(Agent)),
    ("post", "/v1/customers/{id}/identities", S(Agent)),
    (
        "delete",
        "/v1/customers/{id}/identities/{kind}/{value}",
        S(Admin),
    ),
    // The channels check their platform's signature instead of a key; the widget's turn
    // needs a `chat` key like `/v1/chat`.
    ("get", "/channels/wechat/{account}", Open),
    ("post", "/channels/wechat/{account}", Open),
    ("post", "/channels/sms", Open),
    ("post", "/channels/web/turn", S(Chat)),
    // The app's back end names its user: a server-side key, never a customer's.
    ("post", "/channels/app/turn", S(Query)),
    ("get", "/widget.js", Open),
    ("get", "/healthz", Open),
    ("get", "/readyz", Open),
    ("get", "/openapi.json", Open),
    ("get", "/metrics", Access::Metrics),
];

/// The access of `method path` (`path` as routed, e.g. `/v1/faqs/{id}`).
pub fn access(method: &str, path: &str) -> Access {
    let method = if method.eq_ignore_ascii_case("head") {
        "get"
    } else {
        method
    };
    ACCESS
        .iter()
        .find(|(m, p, _)| m.eq_ignore_ascii_case(method) && *p == path)
        .map_or(S(Admin), |e| e.2)
}

/// The keys and each key's budgets, built once from `[auth]`.
pub struct Guard {
    keys: Keys,
    console: super::console::Sessions,
    open_metrics: bool,
    limiters: Vec<(Scope, DefaultKeyedRateLimiter<String>)>,
}

impl Guard {
    pub fn new(cfg: &AuthConfig, console: super::console::Sessions) -> Self {
        let limiters = Scope::ALL
            .into_iter()
            .filter_map(|s| {
                let r = cfg.rate_limits.of(s)?;
                let per_second = NonZeroU32::new(r.per_second)?;
                let burst = r.burst.and_then(NonZeroU32::new).unwrap_or(per_second);
                let quota = Quota::per_second(per_second).allow_burst(burst);
                Some((s, RateLimiter::keyed(quota)))
            })
            .collect();
        Self {
            keys: Keys::new(cfg),
            console,
            open_metrics: cfg.open_metrics,
            limiters,
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// The web console's logins.
    pub fn console(&self) -> &super::console::Sessions {
        &self.console
    }

    /// The scope `method path` needs; `None`: open.
    fn scope(&self, method: &Method, path: &str) -> Option<Scope> {
        match access(method.as_str(), path) {
            Open => None,
            Access::Metrics if self.open_metrics => None,
            Access::Metrics => Some(Admin),
            S(s) => Some(s),
        }
    }

    /// Spends one request of `caller`'s budget for `scope`; the wait when it is spent.
    fn spend(&self, caller: &Caller, scope: Scope) -> Result<(), std::time::Duration> {
        let Caller::Key { name, .. } = caller else {
            return Ok(());
        };
        let Some((_, limiter)) = self.limiters.iter().find(|(s, _)| *s == scope) else {
            return Ok(());
        };
        limiter
            .check_key(name)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The key a request presents: `Authorization: Bearer <key>`, else `x-api-key: <key>`.
fn presented(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.to_str().ok()?.trim();
        let (scheme, key) = v.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| key.trim())
            .filter(|k| !k.is_empty());
    }
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// The middleware: lets open routes through, checks the key and its budget on the others,
/// and hands the handler the [`Caller`].
pub async fn guard(State(g): State<Arc<Guard>>, mut req: Request, next: Next) -> Response {
    let Some(path) = req.extensions().get::<MatchedPath>().map(|p| p.as_str()) else {
        // Unknown routes: the router's 404.
        return next.run(req).await;
    };
    let Some(scope) = g.scope(req.method(), path) else {
        req.extensions_mut().insert(Caller::Anonymous);
        return next.run(req).await;
    };
    let key = presented(req.headers());
    // A console login stands for the key that logged in (only when no key is presented).
    let console = key
        .is_none()
        .then(|| g.console.caller(req.method(), req.headers()))
        .flatten();
    let caller = match console {
        Some(Ok(c)) if c.has(scope) => c,
        Some(Ok(c)) => {
            return denied(Denied::Forbidden {
                name: c.name().to_string(),
                scope,
            });
        }
        Some(Err(super::console::Refused::Csrf)) => return super::console::csrf_refused(),
        Some(Err(super::console::Refused::Expired)) | None => match g.keys.check(key, scope) {
            Ok(c) => c,
            Err(d) => return denied(d),
        },
    };
    if let Err(wait) = g.spend(&caller, scope) {
        return Error::RateLimited {
            key: caller.name().to_string(),
            scope: scope.as_str(),
            retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
        .into_response();
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

pub(super) fn denied(d: Denied) -> Response {
    match d {
        Denied::Forbidden { .. } => Error::Forbidden(d.to_string()).into_response(),
        _ => {
            let mut resp = Error::Unauthorized(d.to_string()).into_response();
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"kefu\""),
            );
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_operation_has_its_access_and_no_entry_is_stale() {
        let doc = super::super::openapi::openapi();
        let mut documented = std::collections::BTreeSet::new();
        for (path, item) in &doc.paths.paths {
            for (method, op) in [
                ("get", &item.get),
                ("put", &item.put),
                ("post", &item.post),
                ("delete", &item.delete),
            ] {
                if op.is_some() {
                    assert!(
                        ACCESS.iter().any(|e| e.0 == method && e.1 == path),
                        "{method} {path} has no entry in ACCESS (it would need admin)"
                    );
                    documented.insert((method, path.as_str()));
                }
            }
        }
        // The platforms' webhooks (WeChat's XML, SMS providers' forms) and the widget's script
        // speak the platforms' formats, not the API's: docs/CHANNELS.md describes them.
        let platform = |p: &str| {
            p.starts_with("/channels/wechat/") || p == "/channels/sms" || p == "/widget.js"
        };
        for (m, p, _) in ACCESS {
            assert!(
                documented.contains(&(*m, *p)) || *p == "/openapi.json" || platform(p),
                "ACCESS names {m} {p}, which is not a documented route"
            );
        }
    }

    #[test]
    fn routes_default_to_admin_and_head_is_get() {
        assert_eq!(access("GET", "/v1/unlisted"), S(Admin));
        assert_eq!(access("HEAD", "/healthz"), Open);
        assert_eq!(access("post", "/v1/chat"), S(Chat));
    }

    #[test]
    fn keys_are_read_from_bearer_or_x_api_key() {
        let mut h = HeaderMap::new();
        assert_eq!(presented(&h), None);
        h.insert("x-api-key", "k1".parse().unwrap());
        assert_eq!(presented(&h), Some("k1"));
        h.insert(header::AUTHORIZATION, "Bearer  k2 ".parse().unwrap());
        assert_eq!(presented(&h), Some("k2"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert_eq!(presented(&h), None);
    }

    #[test]
    fn budgets_are_per_key_and_scope() {
        let cfg = AuthConfig {
            rate_limits: crate::auth::RateLimits {
                chat: Some(crate::auth::Rate {
                    per_second: 1,
                    burst: Some(2),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let console = super::super::console::Sessions::new(&Default::default(), "127.0.0.1");
        let g = Guard::new(&cfg, console);
        let a = Caller::Key {
            name: "a".into(),
            scopes: vec![Chat],
        };
        let b = Caller::Key {
            name: "b".into(),
            scopes: vec![Chat],
        };
        assert!(g.spend(&a, Chat).is_ok());
        assert!(g.spend(&a, Chat).is_ok());
        let wait = g.spend(&a, Chat).unwrap_err();
        assert!(wait.as_secs_f64() <= 1.0, "{wait:?}");
        // Another key, and another scope of the same key, have their own budgets.
        assert!(g.spend(&b, Chat).is_ok());
        assert!(g.spend(&a, Query).is_ok());
        assert!(g.spend(&Caller::Anonymous, Chat).is_ok());
    }
}
