//! The router's outer layers: a request id on every request and response, a trace span that
//! carries it (so every log line of a request names it), panics answered as JSON 500s, and
//! JSON for every error that axum itself answers in plain text. Preflight `OPTIONS` gets 204.

use std::any::Any;

use axum::Router;
use axum::extract::Request;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use super::reject::{Rejection, humanize};
use crate::error::Error;

/// Longest path and query answered; longer ones get a JSON 414. Below hyper's own limit
/// (64 KiB, answered by hyper with an empty 414 before any layer runs).
pub const MAX_URI_BYTES: usize = 8 * 1024;

/// Plain-text error bodies longer than this are not read back into the JSON message.
const MAX_TEXT_ERROR_BYTES: usize = 16 * 1024;

/// Panics in handlers (and the layers inside) become 500s instead of dropped connections.
/// Inside `observe`, so that they are counted; the request id is added by [`outer`].
pub fn catch_panics<S>(router: Router<S>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.layer(CatchPanicLayer::custom(panic_response))
}

/// Request id (kept when the client sends `x-request-id`, else a UUID; echoed in the
/// response), the per-request trace span, and the JSON error net, around the whole `app`:
/// as its fallback service, so that they see its responses complete (axum adds `Allow` to a
/// 405 only on the way out of the router).
pub fn outer(app: Router, cors_origins: &[String]) -> Router {
    let router = Router::new()
        .fallback_service(app)
        .layer(middleware::from_fn(json_errors))
        .layer(PropagateRequestIdLayer::x_request_id())
        // Failures are not logged per response: 503s while loading are expected, panics log
        // themselves (inside this span).
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_span)
                .on_failure(()),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid));
    match cors(cors_origins) {
        Some(c) => router.layer(c),
        None => router,
    }
}

/// Browser pages of the configured origins may call the API (`server.cors_origins`); none
/// by default. Outermost, so that a preflight is answered before any key is asked for.
fn cors(origins: &[String]) -> Option<tower_http::cors::CorsLayer> {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("x-api-key"),
                header::HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                header::HeaderName::from_static("x-request-id"),
                header::RETRY_AFTER,
                header::HeaderName::from_static("x-kefu-took-ms"),
            ])
            .max_age(std::time::Duration::from_secs(3600)),
    )
}

fn request_span(req: &Request) -> tracing::Span {
    tracing::info_span!(
        "request",
        id = request_id(req).unwrap_or_default(),
        method = %req.method(),
        path = req.uri().path(),
    )
}

fn request_id(req: &Request) -> Option<&str> {
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
}

/// Marks the response to a panic, for [`json_errors`] to add the request id.
#[derive(Clone, Copy)]
struct Panicked;

fn panic_response(err: Box<dyn Any + Send + 'static>) -> Response {
    let what = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = what, "the handler panicked; answered 500");
    let mut resp = internal_error(None);
    resp.extensions_mut().insert(Panicked);
    resp
}

/// `{"error": {"code": "internal", "message", "request_id"}}`: the panic's text stays in the
/// log, the client gets the id to quote.
fn internal_error(request_id: Option<&str>) -> Response {
    let body = serde_json::json!({"error": {
        "code": "internal",
        "message": match request_id {
            Some(id) => format!("the server failed on this request; it is logged under request id {id}"),
            None => "the server failed on this request; it is logged".to_string(),
        },
        "request_id": request_id,
    }});
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

/// URLs too long → JSON 414; preflight `OPTIONS` on a route → 204 with `Allow`; a panic's 500
/// gets the request id; any other error answered in plain text (axum's own rejections, e.g.
/// from a handler's extractor) becomes the JSON error with the same status. Every 429 and 503
/// says when to try again.
async fn json_errors(req: Request, next: Next) -> Response {
    let mut resp = to_json(req, next).await;
    retry_after(&mut resp);
    resp
}

/// `Retry-After` (seconds) on every 429 and 503, whatever answered it (`/readyz` while
/// loading, a timeout, a full queue); one the answer set itself is kept.
fn retry_after(resp: &mut Response) {
    let s = resp.status();
    if (s == StatusCode::TOO_MANY_REQUESTS || s == StatusCode::SERVICE_UNAVAILABLE)
        && !resp.headers().contains_key(header::RETRY_AFTER)
    {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
}

async fn to_json(req: Request, next: Next) -> Response {
    let id = request_id(&req).map(str::to_string);
    let uri_len = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if uri_len > MAX_URI_BYTES {
        return Rejection {
            status: StatusCode::URI_TOO_LONG,
            code: "uri_too_long",
            message: format!(
                "the URL is {uri_len} bytes long; at most {MAX_URI_BYTES} are accepted (send \
                 long input in a POST body)"
            ),
        }
        .into_response();
    }
    let preflight = req.method() == Method::OPTIONS;
    let resp = next.run(req).await;
    if resp.extensions().get::<Panicked>().is_some() {
        return internal_error(id.as_deref());
    }
    if preflight && resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        return preflight_response(&resp);
    }
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if !resp.status().is_client_error() && !resp.status().is_server_error() || is_json {
        return resp;
    }
    let status = resp.status();
    let retry = resp.headers().get(header::RETRY_AFTER).cloned();
    let text = axum::body::to_bytes(resp.into_body(), MAX_TEXT_ERROR_BYTES)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut json = plain_to_json(status, &text);
    if let Some(v) = retry {
        json.headers_mut().insert(header::RETRY_AFTER, v);
    }
    json
}

/// 204 with the route's methods (axum lists them in the 405's `Allow`), plus OPTIONS itself.
/// No CORS headers: cross-origin browsers are not allowed in (see the README).
fn preflight_response(not_allowed: &Response) -> Response {
    let allow = not_allowed
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .filter(|a| !a.is_empty())
        .map(|a| format!("{a},OPTIONS"))
        .unwrap_or_else(|| "OPTIONS".into());
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Ok(v) = HeaderValue::from_str(&allow) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

fn plain_to_json(status: StatusCode, text: &str) -> Response {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        return Error::TooLarge(
            "the request body is larger than the server accepts (limits.max_body_bytes)".into(),
        )
        .into_response();
    }
    let reason = status.canonical_reason().unwrap_or("error");
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::INTERNAL_SERVER_ERROR => "internal",
        _ if status.is_server_error() => "server_error",
        _ => "bad_request",
    };
    let text = text.trim();
    let message = if text.is_empty() {
        reason.to_lowercase()
    } else {
        humanize(text)
    };
    Rejection {
        status,
        code,
        message,
    }
    .into_response()
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use axum::routing::get;

    use super::*;

    /// The tests that serve `outer` take turns: the log test's request span must not be
    /// registered by another test's server, on another thread, while it sets its subscriber.
    static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    /// Log output captured for the test's thread.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    async fn boom() -> &'static str {
        panic!("boom in a handler")
    }

    async fn quiet() -> &'static str {
        tracing::info!("inside the handler");
        "ok"
    }

    // The current-thread runtime keeps the server's task on this thread, under the
    // subscriber set here.
    #[tokio::test]
    async fn panic_is_a_json_500_with_the_request_id_and_logs_carry_it() {
        let _one_at_a_time = SERIAL.lock().await;
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        // Spans and events first seen by another test, with no subscriber, are cached as
        // uninteresting: ask again now that this thread has one.
        tracing::callsite::rebuild_interest_cache();

        let app = outer(
            catch_panics(
                Router::new()
                    .route("/boom", get(boom))
                    .route("/ok", get(quiet)),
            ),
            &[],
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let c = reqwest::Client::new();

        let r = c
            .get(format!("{base}/boom"))
            .header("x-request-id", "req-abc-123")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 500);
        assert_eq!(r.headers()["x-request-id"], "req-abc-123");
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "internal", "{v}");
        assert_eq!(v["error"]["request_id"], "req-abc-123", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("req-abc-123")
        );
        assert!(!v.to_string().contains("boom in a handler"), "{v}");

        // Without one, the generated id is in the header and the body alike.
        let r = c.get(format!("{base}/boom")).send().await.unwrap();
        let header = r.headers()["x-request-id"].to_str().unwrap().to_string();
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["request_id"], header.as_str());
        assert_eq!(header.len(), 36, "a UUID: {header}");

        // The server survived, and answers with an id.
        let r = c
            .get(format!("{base}/ok"))
            .header("x-request-id", "req-ok-456")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-request-id"], "req-ok-456");

        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        let line = |needle: &str| {
            logs.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no log line with {needle:?} in:\n{logs}"))
                .to_string()
        };
        assert!(
            line("the handler panicked").contains("req-abc-123"),
            "{logs}"
        );
        assert!(line("boom in a handler").contains("req-abc-123"));
        assert!(line("inside the handler").contains("req-ok-456"), "{logs}");
    }

    #[tokio::test]
    async fn every_429_and_503_says_when_to_retry() {
        let _one_at_a_time = SERIAL.lock().await;
        let app = outer(
            catch_panics(
                Router::new()
                    .route(
                        "/unavailable",
                        get(|| async { (StatusCode::SERVICE_UNAVAILABLE, "loading") }),
                    )
                    .route(
                        "/json-unavailable",
                        get(|| async {
                            (
                                StatusCode::SERVICE_UNAVAILABLE,
                                axum::Json(serde_json::json!({"status": "loading"})),
                            )
                        }),
                    )
                    .route(
                        "/limited",
                        get(|| async {
                            (
                                StatusCode::TOO_MANY_REQUESTS,
                                [(header::RETRY_AFTER, "7")],
                                "slow down",
                            )
                        }),
                    )
                    .route("/ok", get(quiet)),
            ),
            &[],
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let c = reqwest::Client::new();
        for (path, status, retry) in [
            ("/unavailable", 503, Some("1")),
            ("/json-unavailable", 503, Some("1")),
            ("/limited", 429, Some("7")),
            ("/ok", 200, None),
        ] {
            let r = c.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(r.status(), status, "{path}");
            assert_eq!(
                r.headers()
                    .get("retry-after")
                    .map(|v| v.to_str().unwrap().to_string())
                    .as_deref(),
                retry,
                "{path}"
            );
        }
    }

    #[tokio::test]
    async fn preflight_long_urls_and_plain_text_errors() {
        let _one_at_a_time = SERIAL.lock().await;
        let app = outer(
            catch_panics(Router::new().route("/ok", get(quiet).post(quiet)).route(
                "/text-error",
                get(|| async { (StatusCode::BAD_REQUEST, "Invalid URL: something") }),
            )),
            &[],
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let c = reqwest::Client::new();

        let r = c
            .request(Method::OPTIONS, format!("{base}/ok"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204);
        let allow = r.headers()["allow"].to_str().unwrap().to_string();
        for m in ["GET", "POST", "OPTIONS"] {
            assert!(allow.contains(m), "{allow}");
        }

        let r = c
            .get(format!("{base}/ok?q={}", "x".repeat(MAX_URI_BYTES)))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 414);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "uri_too_long", "{v}");

        let r = c.get(format!("{base}/text-error")).send().await.unwrap();
        assert_eq!(r.status(), 400);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"]["code"], "bad_request", "{v}");
        assert_eq!(v["error"]["message"], "something", "{v}");
    }
}
