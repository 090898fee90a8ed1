//! The web console at `/ui`: a page for the people who run support, served from assets built
//! into the binary (`console/`), calling the same `/v1` API as every other client.
//!
//! People log in with an `admin` or `agent` key (`POST /ui/login`); the key is checked once and
//! never kept in the browser. The console session lives in this process: a random id in an
//! `HttpOnly`, `SameSite=Strict` cookie, and a second random token that the page must send back
//! in `x-csrf-token` on every request that changes something, which a page of another site can
//! neither read nor guess. [`Guard`](super::auth::Guard) accepts the cookie where it would
//! accept a key, with the scopes of the key that logged in.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

use super::auth::Guard;
use super::json::ApiJson;
use crate::auth::{Caller, Scope};
use crate::config::ConsoleConfig;
use crate::error::Error;

/// The cookie that names a console session.
pub const COOKIE: &str = "kefu_console";
/// The header that carries the session's CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Most console sessions held at once; the oldest go first beyond it.
const MAX_SESSIONS: usize = 10_000;

struct Session {
    caller: Caller,
    csrf: String,
    expires: Instant,
}

/// The console sessions of this process.
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
    ttl: Duration,
    secure: bool,
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Why a console cookie was not accepted.
pub enum Refused {
    /// No such session, or it expired: log in again.
    Expired,
    /// A changing request without the session's CSRF token.
    Csrf,
}

impl Sessions {
    pub fn new(cfg: &ConsoleConfig, host: &str) -> Self {
        let loopback = crate::auth::is_loopback(host);
        Self {
            by_id: Mutex::new(HashMap::new()),
            ttl: Duration::from_secs(cfg.session_ttl_mins * 60),
            secure: cfg.secure_cookie.unwrap_or(!loopback),
        }
    }

    /// A new session for `caller`: its id and CSRF token.
    fn open(&self, caller: Caller) -> (String, String) {
        let (id, csrf) = (random_token(), random_token());
        let now = Instant::now();
        let mut m = self.by_id.lock().expect("console sessions lock");
        m.retain(|_, s| s.expires > now);
        if m.len() >= MAX_SESSIONS
            && let Some(oldest) = m
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            m.remove(&oldest);
        }
        m.insert(
            id.clone(),
            Session {
                caller,
                csrf: csrf.clone(),
                expires: now + self.ttl,
            },
        );
        (id, csrf)
    }

    fn close(&self, id: &str) {
        self.by_id.lock().expect("console sessions lock").remove(id);
    }

    /// The caller and CSRF token of session `id`, if it is live.
    fn find(&self, id: &str) -> Option<(Caller, String)> {
        let m = self.by_id.lock().expect("console sessions lock");
        m.get(id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| (s.caller.clone(), s.csrf.clone()))
    }

    /// The caller of a request that presents a console cookie and no key; `None` when it
    /// presents no cookie. A request that changes something must carry the CSRF token.
    pub fn caller(&self, method: &Method, headers: &HeaderMap) -> Option<Result<Caller, Refused>> {
        let id = cookie(headers)?;
        let Some((caller, csrf)) = self.find(id) else {
            return Some(Err(Refused::Expired));
        };
        let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
        if !safe {
            let sent = headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
            if !sent.is_some_and(|t| crate::auth::same(t, &csrf)) {
                return Some(Err(Refused::Csrf));
            }
        }
        Some(Ok(caller))
    }

    fn set_cookie(&self, id: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
        ))
        .expect("cookie is ASCII")
    }
}

/// The console session id a request's `Cookie` header names.
fn cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

/// The routes of `/ui`, outside the key check (they do their own).
pub fn routes<S: Clone + Send + Sync + 'static>(guard: Arc<Guard>) -> Router<S> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| asset(Path("index.html".into()))))
        .route("/ui/{file}", get(asset))
        .route("/ui/vendor/{file}", get(vendor))
        .route("/ui/login", post(login))
        .route("/ui/logout", post(logout))
        .route("/ui/session", get(session))
        .with_state(guard)
}

/// `POST /ui/login`: an `admin` or `agent` key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    #[serde(default)]
    key: String,
}

/// Who is logged in, and the token changing requests must send in `x-csrf-token`.
#[derive(Debug, Serialize)]
struct Who {
    name: String,
    scopes: Vec<Scope>,
    csrf: String,
    /// No keys are configured: everyone may do everything.
    anonymous: bool,
    /// The service's time (milliseconds since the Unix epoch), which windows and SLA clocks
    /// are counted in.
    now_ms: i64,
}

fn who(caller: &Caller, csrf: String) -> Who {
    let (name, scopes, anonymous) = match caller {
        Caller::Anonymous => ("anonymous".to_string(), vec![Scope::Admin], true),
        Caller::Key { name, scopes } => (name.clone(), scopes.clone(), false),
    };
    Who {
        name,
        scopes,
        csrf,
        anonymous,
        now_ms: crate::clock::now_ms(),
    }
}

async fn login(State(g): State<Arc<Guard>>, ApiJson(l): ApiJson<Login>) -> Response {
    let key = Some(l.key.trim()).filter(|k| !k.is_empty());
    // `agent` is the least a console user needs; `admin` includes it.
    let caller = match g.keys().check(key, Scope::Agent) {
        Ok(c) => c,
        Err(d) => return super::auth::denied(d),
    };
    tracing::info!(key = caller.name(), "console login");
    let (id, csrf) = g.console().open(caller.clone());
    let mut resp = Json(who(&caller, csrf)).into_response();
    let max_age = g.console().ttl.as_secs();
    resp.headers_mut()
        .insert(header::SET_COOKIE, g.console().set_cookie(&id, max_age));
    no_store(resp)
}

async fn logout(State(g): State<Arc<Guard>>, headers: HeaderMap) -> Response {
    match g.console().caller(&Method::POST, &headers) {
        Some(Ok(_)) => {
            if let Some(id) = cookie(&headers) {
                g.console().close(id);
            }
        }
        Some(Err(Refused::Csrf)) => return csrf_refused(),
        Some(Err(Refused::Expired)) | None => {}
    }
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut()
        .insert(header::SET_COOKIE, g.console().set_cookie("", 0));
    resp
}

async fn session(State(g): State<Arc<Guard>>, headers: HeaderMap) -> Response {
    let id = cookie(&headers).unwrap_or_default();
    match g.console().find(id) {
        Some((caller, csrf)) => no_store(Json(who(&caller, csrf)).into_response()),
        None => Error::Unauthorized("not logged in to the console (or the login expired)".into())
            .into_response(),
    }
}

pub fn csrf_refused() -> Response {
    Error::Forbidden(format!(
        "a console request that changes something must send the session's `{CSRF_HEADER}` \
         (GET /ui/session gives it)"
    ))
    .into_response()
}

fn no_store(mut r: Response) -> Response {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The console's files, built in.
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_bytes!("../../console/index.html"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../console/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_bytes!("../../console/app.css"),
    ),
];

/// Third-party files vendored from npm (see `console/vendor/README.md`).
const VENDOR: &[(&str, &str, &[u8])] = &[(
    "echarts.min.js",
    "text/javascript; charset=utf-8",
    include_bytes!("../../console/vendor/echarts.common.min.js"),
)];

fn serve(
    files: &'static [(&'static str, &'static str, &'static [u8])],
    name: &str,
    cache: &'static str,
) -> Response {
    let Some((_, mime, body)) = files.iter().find(|(n, _, _)| *n == name) else {
        return Error::NotFound(format!("the console has no file {name:?}")).into_response();
    };
    let mut r = (*body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(mime));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; \
             frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    r
}

async fn asset(Path(file): Path<String>) -> Response {
    serve(ASSETS, &file, "no-cache")
}

async fn vendor(Path(file): Path<String>) -> Response {
    serve(VENDOR, &file, "public, max-age=86400")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sessions() -> Sessions {
        Sessions::new(&ConsoleConfig::default(), "127.0.0.1")
    }

    fn with_cookie(id: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            format!("other=1; {COOKIE}={id}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn a_session_reads_freely_and_changes_only_with_its_csrf_token() {
        let s = sessions();
        let caller = Caller::Key {
            name: "ops".into(),
            scopes: vec![Scope::Agent],
        };
        let (id, csrf) = s.open(caller.clone());
        let mut h = with_cookie(&id);
        assert!(matches!(s.caller(&Method::GET, &h), Some(Ok(c)) if c == caller));
        assert!(matches!(
            s.caller(&Method::POST, &h),
            Some(Err(Refused::Csrf))
        ));
        h.insert(CSRF_HEADER, "forged".parse().unwrap());
        assert!(matches!(
            s.caller(&Method::PUT, &h),
            Some(Err(Refused::Csrf))
        ));
        h.insert(CSRF_HEADER, csrf.parse().unwrap());
        assert!(matches!(s.caller(&Method::DELETE, &h), Some(Ok(_))));
        // No cookie: not a console request. An unknown or closed session: expired.
        assert!(s.caller(&Method::GET, &HeaderMap::new()).is_none());
        assert!(matches!(
            s.caller(&Method::GET, &with_cookie("nope")),
            Some(Err(Refused::Expired))
        ));
        s.close(&id);
        assert!(matches!(
            s.caller(&Method::GET, &h),
            Some(Err(Refused::Expired))
        ));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_off_loopback() {
        let local = sessions().set_cookie("abc", 60);
        let local = local.to_str().unwrap();
        assert!(local.contains("HttpOnly") && local.contains("SameSite=Strict"));
        assert!(!local.contains("Secure"));
        let public = Sessions::new(&ConsoleConfig::default(), "0.0.0.0").set_cookie("abc", 60);
        assert!(public.to_str().unwrap().ends_with("; Secure"));
    }

    #[test]
    fn every_asset_is_served_with_its_type() {
        for (name, mime, _) in ASSETS {
            let r = serve(ASSETS, name, "no-cache");
            assert_eq!(r.status(), StatusCode::OK, "{name}");
            assert_eq!(r.headers()[header::CONTENT_TYPE], *mime);
        }
        assert_eq!(
            serve(ASSETS, "../Cargo.toml", "no-cache").status(),
            StatusCode::NOT_FOUND
        );
    }
}
