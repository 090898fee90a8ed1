//! The one retry policy of kefu's outgoing HTTP calls (business flows, the hand-off webhook):
//! a fixed number of further attempts after failures another attempt may cure, with a delay
//! that doubles from attempt to attempt up to a cap.

use std::future::Future;
use std::time::Duration;

/// How often and how far apart a call is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Further attempts after the first.
    pub retries: u32,
    /// The wait before the first retry; each later retry waits twice the one before...
    pub first_delay: Duration,
    /// ...but the wait doubles at most this many times.
    pub max_doublings: u32,
}

/// What one attempt came to.
#[derive(Debug)]
pub enum Attempt<T, E> {
    /// A reply to keep: no further attempt.
    Done(T),
    /// A failure another attempt may cure (connection error, timeout, 429, 5xx).
    Retry(E),
    /// A failure no attempt cures (e.g. the other side refusing the request): stop here.
    Fail(E),
}

impl Backoff {
    /// The wait before attempt `attempt` (0 is the first, which does not wait).
    pub fn delay(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        self.first_delay * (1u32 << (attempt - 1).min(self.max_doublings))
    }

    /// Runs `attempt` (given the attempt number, from 0) until it is done, fails for good or
    /// the retries are spent. Returns the result with the number of attempts made, or the last
    /// failure.
    pub async fn run<T, E, F, Fut>(&self, mut attempt: F) -> Result<(T, u32), E>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Attempt<T, E>>,
    {
        let mut n = 0;
        loop {
            if n > 0 {
                tokio::time::sleep(self.delay(n)).await;
            }
            match attempt(n).await {
                Attempt::Done(t) => return Ok((t, n + 1)),
                Attempt::Fail(e) => return Err(e),
                Attempt::Retry(e) if n >= self.retries => return Err(e),
                Attempt::Retry(_) => n += 1,
            }
        }
    }
}

/// Whether a reply's status is worth another attempt: 429 (too many requests) and 5xx.
pub fn retryable(status: reqwest::StatusCode) -> bool {
    status == reqwest::StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// Whether a request may be sent again after a failure: idempotent methods (GET, PUT, DELETE)
/// always, others only with an idempotency key, which lets the receiver drop a repeat.
pub fn may_repeat(method: &reqwest::Method, keyed: bool) -> bool {
    keyed || matches!(method.as_str(), "GET" | "PUT" | "DELETE")
}

/// A local HTTP server for the callers' tests: answers `fail` requests with `status`, then 200
/// with `{"ok": true}`, and records the `idempotency-key` header of every request.
#[cfg(test)]
pub(crate) async fn flaky_server(
    fail: usize,
    status: u16,
) -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
) {
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let log = seen.clone();
    let handler = move |headers: HeaderMap| {
        let log = log.clone();
        async move {
            let mut log = log.lock().unwrap();
            log.push(
                headers
                    .get("idempotency-key")
                    .map(|v| v.to_str().unwrap().to_string()),
            );
            if log.len() <= fail {
                (StatusCode::from_u16(status).unwrap(), "{}".to_string())
            } else {
                (StatusCode::OK, r#"{"ok":true}"#.to_string())
            }
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    fn ms(v: &[u64]) -> Vec<Duration> {
        v.iter().map(|&m| Duration::from_millis(m)).collect()
    }

    #[test]
    fn delays_double_up_to_the_cap() {
        let b = Backoff {
            retries: 8,
            first_delay: Duration::from_millis(200),
            max_doublings: 4,
        };
        let got: Vec<Duration> = (0..8).map(|n| b.delay(n)).collect();
        assert_eq!(got, ms(&[0, 200, 400, 800, 1600, 3200, 3200, 3200]));
    }

    fn quick(retries: u32) -> Backoff {
        Backoff {
            retries,
            first_delay: Duration::ZERO,
            max_doublings: 0,
        }
    }

    #[tokio::test]
    async fn retries_curable_failures_until_spent_and_keeps_the_last() {
        let calls = Cell::new(0);
        let r: Result<((), u32), u32> = quick(3)
            .run(|n| {
                calls.set(calls.get() + 1);
                async move { Attempt::Retry(n) }
            })
            .await;
        assert_eq!(r.unwrap_err(), 3, "the fourth attempt's failure");
        assert_eq!(calls.get(), 4, "one attempt and three retries");

        let r: Result<(&str, u32), ()> = quick(3)
            .run(|n| async move {
                if n < 2 {
                    Attempt::Retry(())
                } else {
                    Attempt::Done("ok")
                }
            })
            .await;
        assert_eq!(r.unwrap(), ("ok", 3));
    }

    #[tokio::test]
    async fn a_final_failure_stops_at_once() {
        let calls = Cell::new(0);
        let r: Result<((), u32), &str> = quick(5)
            .run(|_| {
                calls.set(calls.get() + 1);
                async { Attempt::Fail("refused") }
            })
            .await;
        assert_eq!(r.unwrap_err(), "refused");
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn which_failures_and_methods_retry() {
        use reqwest::{Method, StatusCode};
        for s in [429, 500, 502, 503, 599] {
            assert!(retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for s in [200, 400, 401, 404, 409, 422] {
            assert!(!retryable(StatusCode::from_u16(s).unwrap()), "{s}");
        }
        for m in [Method::GET, Method::PUT, Method::DELETE] {
            assert!(may_repeat(&m, false), "{m}");
        }
        for m in [Method::POST, Method::PATCH] {
            assert!(!may_repeat(&m, false), "{m} without a key");
            assert!(may_repeat(&m, true), "{m} with a key");
        }
    }
}
