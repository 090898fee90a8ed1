//! `kefu bench http`: load on the HTTP API. At each concurrency level, that many clients post
//! short customer questions to the routes (by default `/v1/chat` and `/v1/match`, taken in
//! turn) for a fixed time, each sending its next request when the last one is answered. Per
//! level: throughput, latency percentiles, every status code seen, whether each 429 and 503
//! said when to retry (`Retry-After`), the server's peak memory (from /proc, when its process
//! is known), and whether `/healthz` kept answering (probed every 200 ms on a fresh
//! connection, as an orchestrator does).
//!
//! The channels' routes load the same way: `/channels/web/turn` (the widget's turn, a visitor
//! per conversation), `/channels/sms` (form-encoded and HMAC-signed with `--sms-secret`, a
//! phone number per conversation) and `/channels/wechat/{account}` (plain-mode XML signed with
//! `--wechat-token`, an openid per conversation, a fresh `MsgId` per message). Their latency is
//! the webhook's answer: for WeChat the passive reply itself; for SMS the turn, the reply's
//! hand-over to the provider following in the background.
//!
//! The only answers other than 2xx a loaded kefu may give are 429 (too many requests waiting
//! for the model) and 503 (a request that ran past `server.request_timeout_secs`), and both
//! must carry `Retry-After`: anything else is counted as unexpected.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde::Serialize;

use super::QUESTIONS;

/// What one run does.
#[derive(Debug, Clone)]
pub struct HttpBenchOptions {
    /// The server, e.g. `http://127.0.0.1:8080`.
    pub base: String,
    /// Sent as `Authorization: Bearer …` on every request (servers with API keys).
    pub key: Option<String>,
    /// Concurrency levels, run one after the other.
    pub levels: Vec<usize>,
    /// How long each level sends requests (answers still in flight are waited for).
    pub seconds: f64,
    /// Routes posted to, in turn: `/v1/chat`, `/v1/match`, `/v1/embed`, `/v1/embeddings`.
    pub routes: Vec<String>,
    /// Make every text unique, so that the query cache never answers and every request
    /// runs the model.
    pub unique: bool,
    /// The server's process, for its memory (`/proc/PID/status`).
    pub server_pid: Option<u32>,
    /// The longest a request may take before the client gives up (a transport error).
    pub request_timeout: Duration,
    /// Signs `/channels/wechat/{account}` requests (the account's token).
    pub wechat_token: Option<String>,
    /// Signs `/channels/sms` requests (`channels.sms.secret`, `hmac_sha256`).
    pub sms_secret: Option<String>,
}

impl HttpBenchOptions {
    pub fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            key: None,
            levels: vec![1, 16, 64, 256],
            seconds: 30.0,
            routes: vec!["/v1/chat".into(), "/v1/match".into()],
            unique: true,
            server_pid: None,
            request_timeout: Duration::from_secs(120),
            wechat_token: None,
            sms_secret: None,
        }
    }
}

pub const ROUTES: &[&str] = &[
    "/v1/chat",
    "/v1/match",
    "/v1/embed",
    "/v1/embeddings",
    "/channels/web/turn",
    "/channels/sms",
    "/channels/wechat/{account}",
];

/// How often `/healthz` is probed, and how long a probe may take before it counts as failed.
pub const HEALTH_INTERVAL: Duration = Duration::from_millis(200);
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Serialize)]
pub struct Latencies {
    /// Answers with a 2xx status; the percentiles and throughput are of these.
    pub ok: usize,
    pub throughput_rps: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteRun {
    pub route: String,
    pub requests: usize,
    #[serde(flatten)]
    pub latency: Latencies,
}

#[derive(Debug, Clone, Serialize)]
pub struct Health {
    pub probes: usize,
    /// Probes that got no 200 within [`HEALTH_TIMEOUT`].
    pub failures: usize,
    pub max_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LevelRun {
    pub concurrency: usize,
    /// From the first request to the last answer.
    pub seconds: f64,
    /// Requests sent (answered or not).
    pub requests: usize,
    #[serde(flatten)]
    pub latency: Latencies,
    /// Every status seen and how often; `transport_error` for no answer (connection failed,
    /// client timeout).
    pub statuses: BTreeMap<String, usize>,
    /// Answers other than 2xx, 429 and 503, and transport errors.
    pub unexpected: usize,
    /// 429 and 503 answers without `Retry-After`.
    pub missing_retry_after: usize,
    pub by_route: Vec<RouteRun>,
    /// The most resident memory sampled during the level (every 200 ms), in MiB.
    pub server_rss_mib: Option<f64>,
    pub health: Health,
}

#[derive(Debug, Clone, Serialize)]
pub struct HttpBench {
    pub base: String,
    /// The serving model (`/readyz`).
    pub model: Option<String>,
    /// Cores of the machine the bench ran on.
    pub cores: usize,
    pub seconds_per_level: f64,
    pub routes: Vec<String>,
    pub unique_texts: bool,
    pub levels: Vec<LevelRun>,
    /// The server process's peak resident memory over its life (VmHWM), in MiB.
    pub server_peak_rss_mib: Option<f64>,
    /// Unexpected answers and 429/503 without `Retry-After`, over all levels: 0 when the
    /// server behaved.
    pub problems: usize,
}

/// One answer (or its absence) as a client saw it.
struct Outcome {
    route: usize,
    /// `None`: no answer.
    status: Option<StatusCode>,
    retry_after: bool,
    ms: f64,
}

impl HttpBenchOptions {
    /// Refuses options that cannot run, naming the flag.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            !self.levels.is_empty() && self.levels.iter().all(|&c| c > 0),
            "every --concurrency level must be at least 1"
        );
        anyhow::ensure!(self.seconds > 0.0, "--seconds must be above 0");
        anyhow::ensure!(!self.routes.is_empty(), "--routes names no route");
        for r in &self.routes {
            let wechat = r
                .strip_prefix("/channels/wechat/")
                .is_some_and(|a| !a.is_empty() && !a.contains('/'));
            anyhow::ensure!(
                ROUTES.contains(&r.as_str()) && !r.contains('{') || wechat,
                "{r} cannot be loaded; the bench knows {}",
                ROUTES.join(", ")
            );
            anyhow::ensure!(
                !wechat || self.wechat_token.is_some(),
                "{r} needs --wechat-token (the account's token) to sign its requests"
            );
            anyhow::ensure!(
                r != "/channels/sms" || self.sms_secret.is_some(),
                "/channels/sms needs --sms-secret (channels.sms.secret) to sign its requests"
            );
        }
        Ok(())
    }
}

/// Runs every level against `opts.base` (which must be ready).
pub async fn run(opts: &HttpBenchOptions) -> anyhow::Result<HttpBench> {
    opts.check()?;
    let client = reqwest::Client::builder()
        .timeout(opts.request_timeout)
        .build()?;
    let model = match client.get(format!("{}/readyz", opts.base)).send().await {
        Ok(r) => r
            .json::<serde_json::Value>()
            .await
            .ok()
            .and_then(|v| v["model"].as_str().map(str::to_string)),
        Err(e) => anyhow::bail!("{} does not answer: {e}", opts.base),
    };
    // Warm-up: first requests page weights in and open sessions; not counted.
    for (i, q) in QUESTIONS.iter().take(8).enumerate() {
        let route = &opts.routes[i % opts.routes.len()];
        let _ = send(&client, opts, route, q, &format!("kefu-bench-warmup-{i}")).await;
    }
    let mut levels = Vec::new();
    for &c in &opts.levels {
        levels.push(level(&client, opts, c).await);
    }
    let problems = levels
        .iter()
        .map(|l| l.unexpected + l.missing_retry_after)
        .sum();
    Ok(HttpBench {
        base: opts.base.clone(),
        model,
        cores: num_cpus::get(),
        seconds_per_level: opts.seconds,
        routes: opts.routes.clone(),
        unique_texts: opts.unique,
        levels,
        server_peak_rss_mib: opts.server_pid.and_then(|p| proc_status_mib(p, "VmHWM")),
        problems,
    })
}

/// Sends one request of `route` with question `q`, in conversation `session`.
async fn send(
    client: &reqwest::Client,
    opts: &HttpBenchOptions,
    route: &str,
    q: &str,
    session: &str,
) -> reqwest::Result<reqwest::Response> {
    let url = format!("{}{route}", opts.base);
    if route == "/channels/sms" {
        return channel_sms(client, opts, &url, q, session).await;
    }
    if route.starts_with("/channels/wechat/") {
        return channel_wechat(client, opts, &url, q, session).await;
    }
    let body = match route {
        "/v1/chat" => serde_json::json!({"session_id": session, "text": q}),
        "/v1/match" => serde_json::json!({"query": q, "top_k": 5}),
        "/v1/embeddings" => serde_json::json!({"input": q}),
        "/channels/web/turn" => serde_json::json!({"visitor": digest_hex(session), "text": q}),
        _ => serde_json::json!({"inputs": [q]}),
    };
    let mut req = client.post(url).json(&body);
    if let Some(k) = &opts.key {
        req = req.bearer_auth(k);
    }
    req.send().await
}

/// 32 hex digits standing for `s` (a widget's visitor id).
fn digest_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(&sha2::Sha256::digest(s.as_bytes())[..16])
}

/// An SMS from a phone number standing for the conversation, signed as the provider would.
async fn channel_sms(
    client: &reqwest::Client,
    opts: &HttpBenchOptions,
    url: &str,
    q: &str,
    session: &str,
) -> reqwest::Result<reqwest::Response> {
    let digits: String = digest_hex(session)
        .bytes()
        .map(|b| char::from(b'0' + b % 10))
        .take(9)
        .collect();
    let from = format!("+1555{digits}");
    let body =
        serde_urlencoded::to_string([("From", from.as_str()), ("To", "+10000"), ("Body", q)])
            .unwrap_or_default();
    let sig = crate::channels::sms::hmac_signature(
        opts.sms_secret.as_deref().unwrap_or_default(),
        body.as_bytes(),
    );
    client
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-signature", sig)
        .body(body)
        .send()
        .await
}

/// A WeChat text message from an openid standing for the conversation, signed with the
/// account's token (plain mode).
async fn channel_wechat(
    client: &reqwest::Client,
    opts: &HttpBenchOptions,
    url: &str,
    q: &str,
    session: &str,
) -> reqwest::Result<reqwest::Response> {
    static MSG_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let id = MSG_ID.fetch_add(1, Ordering::Relaxed);
    let ts = crate::clock::system_now().to_string();
    let nonce = format!("{id}");
    let token = opts.wechat_token.as_deref().unwrap_or("");
    let sig = crate::channels::wechat::signature(&[token, &ts, &nonce]);
    let xml = format!(
        "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{}]]></FromUserName><CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[{}]]></Content><MsgId>{id}</MsgId></xml>",
        session,
        q.replace("]]>", "")
    );
    client
        .post(format!(
            "{url}?signature={sig}&timestamp={ts}&nonce={nonce}"
        ))
        .header("content-type", "text/xml")
        .body(xml)
        .send()
        .await
}

async fn level(client: &reqwest::Client, opts: &HttpBenchOptions, concurrency: usize) -> LevelRun {
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(opts.seconds);
    let done = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch(opts.base.clone(), opts.server_pid, done.clone()));
    let mut tasks = Vec::with_capacity(concurrency);
    for w in 0..concurrency {
        let (client, opts) = (client.clone(), opts.clone());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            let mut i = 0usize;
            while Instant::now() < deadline {
                let r = (w + i) % opts.routes.len();
                let q = QUESTIONS[(w * 7 + i) % QUESTIONS.len()];
                let text = if opts.unique {
                    format!("{q} #{concurrency}-{w}-{i}")
                } else {
                    q.to_string()
                };
                // A conversation of a few turns, then a new customer.
                let session = format!("kefu-bench-{concurrency}-{w}-{}", i / 5);
                let t = Instant::now();
                let (status, retry_after) =
                    match send(&client, &opts, &opts.routes[r], &text, &session).await {
                        Ok(resp) => {
                            let status = resp.status();
                            let retry_after = resp
                                .headers()
                                .get("retry-after")
                                .is_some_and(|v| v.to_str().is_ok_and(|s| !s.trim().is_empty()));
                            // The answer counts once its whole body is read.
                            match resp.bytes().await {
                                Ok(_) => (Some(status), retry_after),
                                Err(_) => (None, false),
                            }
                        }
                        Err(_) => (None, false),
                    };
                out.push(Outcome {
                    route: r,
                    status,
                    retry_after,
                    ms: t.elapsed().as_secs_f64() * 1000.0,
                });
                i += 1;
            }
            out
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.extend(t.await.expect("load task"));
    }
    let seconds = started.elapsed().as_secs_f64();
    done.store(true, Ordering::SeqCst);
    let (health, rss) = watcher.await.expect("health watcher");
    summarize(concurrency, seconds, &opts.routes, &outcomes, health, rss)
}

fn summarize(
    concurrency: usize,
    seconds: f64,
    routes: &[String],
    outcomes: &[Outcome],
    health: Health,
    server_rss_mib: Option<f64>,
) -> LevelRun {
    let mut statuses = BTreeMap::new();
    let (mut unexpected, mut missing_retry_after) = (0, 0);
    for o in outcomes {
        let key = o
            .status
            .map_or("transport_error".to_string(), |s| s.as_u16().to_string());
        *statuses.entry(key).or_insert(0) += 1;
        match o.status {
            Some(s) if s.is_success() => {}
            Some(StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE) => {
                if !o.retry_after {
                    missing_retry_after += 1;
                }
            }
            _ => unexpected += 1,
        }
    }
    let by_route = routes
        .iter()
        .enumerate()
        .map(|(r, route)| {
            let mine: Vec<&Outcome> = outcomes.iter().filter(|o| o.route == r).collect();
            RouteRun {
                route: route.clone(),
                requests: mine.len(),
                latency: latencies(mine.into_iter(), seconds),
            }
        })
        .collect();
    LevelRun {
        concurrency,
        seconds,
        requests: outcomes.len(),
        latency: latencies(outcomes.iter(), seconds),
        statuses,
        unexpected,
        missing_retry_after,
        by_route,
        server_rss_mib,
        health,
    }
}

fn latencies<'a>(outcomes: impl Iterator<Item = &'a Outcome>, seconds: f64) -> Latencies {
    let mut ms: Vec<f64> = outcomes
        .filter(|o| o.status.is_some_and(|s| s.is_success()))
        .map(|o| o.ms)
        .collect();
    ms.sort_by(f64::total_cmp);
    let p = |q| crate::eval::percentile(&ms, q);
    Latencies {
        ok: ms.len(),
        throughput_rps: ms.len() as f64 / seconds.max(f64::MIN_POSITIVE),
        p50_ms: p(0.5),
        p95_ms: p(0.95),
        p99_ms: p(0.99),
        max_ms: ms.last().copied().unwrap_or(0.0),
    }
}

/// Until `done`: probes `/healthz` every [`HEALTH_INTERVAL`] on a fresh connection and samples
/// the server's resident memory.
async fn watch(base: String, pid: Option<u32>, done: Arc<AtomicBool>) -> (Health, Option<f64>) {
    let client = reqwest::Client::builder()
        .timeout(HEALTH_TIMEOUT)
        .pool_max_idle_per_host(0)
        .build()
        .expect("HTTP client");
    let url = format!("{base}/healthz");
    let mut health = Health {
        probes: 0,
        failures: 0,
        max_ms: 0.0,
    };
    let mut rss: Option<f64> = None;
    let mut tick = tokio::time::interval(HEALTH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !done.load(Ordering::SeqCst) {
        tick.tick().await;
        if let Some(now) = pid.and_then(|p| proc_status_mib(p, "VmRSS")) {
            rss = Some(rss.map_or(now, |r: f64| r.max(now)));
        }
        let t = Instant::now();
        let ok = match client.get(&url).send().await {
            Ok(r) => r.status() == StatusCode::OK && r.bytes().await.is_ok(),
            Err(_) => false,
        };
        let ms = t.elapsed().as_secs_f64() * 1000.0;
        health.probes += 1;
        health.max_ms = health.max_ms.max(ms);
        if !ok {
            health.failures += 1;
        }
    }
    (health, rss)
}

/// A memory figure of `/proc/PID/status` (`VmRSS`, `VmHWM`), in MiB.
pub fn proc_status_mib(pid: u32, field: &str) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status_kib(&text, field).map(|kib| kib as f64 / 1024.0)
}

fn parse_status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::Router;
    use axum::http::HeaderMap;
    use axum::routing::{get, post};
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn memory_from_proc_status() {
        let status = "Name:\tkefu\nVmHWM:\t  524288 kB\nVmRSS:\t  262144 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(524288));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(262144));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        let me = proc_status_mib(std::process::id(), "VmRSS").unwrap();
        assert!(me > 0.0);
    }

    /// A stand-in server: `/v1/match` wants the bench's key; `/v1/chat` answers every third
    /// request 503 without `Retry-After`, every third 429 with it, the rest 200.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn statuses_retry_after_and_the_key_are_accounted() {
        let n = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route(
                "/v1/match",
                post(|h: HeaderMap| async move {
                    match h.get("authorization").and_then(|v| v.to_str().ok()) {
                        Some("Bearer sekret") => StatusCode::OK,
                        _ => StatusCode::UNAUTHORIZED,
                    }
                }),
            )
            .route(
                "/v1/chat",
                post(move || {
                    let i = n.fetch_add(1, Ordering::SeqCst);
                    async move {
                        match i % 3 {
                            0 => (StatusCode::SERVICE_UNAVAILABLE, HeaderMap::new()),
                            1 => {
                                let mut h = HeaderMap::new();
                                h.insert("retry-after", "1".parse().unwrap());
                                (StatusCode::TOO_MANY_REQUESTS, h)
                            }
                            _ => (StatusCode::OK, HeaderMap::new()),
                        }
                    }
                }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(|| async { axum::Json(serde_json::json!({"model": "m@1"})) }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

        let mut opts = HttpBenchOptions::new(&base);
        opts.levels = vec![1, 4];
        opts.seconds = 0.5;
        opts.key = Some("sekret".into());
        opts.server_pid = Some(std::process::id());
        let r = run(&opts).await.unwrap();
        assert_eq!(r.model.as_deref(), Some("m@1"));
        assert_eq!(r.levels.len(), 2);
        for l in &r.levels {
            let count = |s: &str| l.statuses.get(s).copied().unwrap_or(0);
            assert_eq!(l.requests, l.statuses.values().sum::<usize>());
            assert_eq!(count("401"), 0, "the key was sent: {:?}", l.statuses);
            assert!(count("200") > 0 && count("503") > 0 && count("429") > 0);
            assert_eq!(l.missing_retry_after, count("503"));
            assert_eq!(l.unexpected, 0);
            assert_eq!(l.latency.ok, count("200"));
            assert_eq!(l.by_route.len(), 2);
            assert_eq!(
                l.by_route.iter().map(|r| r.requests).sum::<usize>(),
                l.requests
            );
            assert!(l.health.probes >= 1 && l.health.failures == 0);
            assert!(l.server_rss_mib.is_some_and(|m| m > 0.0));
        }
        assert!(r.server_peak_rss_mib.is_some_and(|m| m > 0.0));
        assert_eq!(
            r.problems,
            r.levels
                .iter()
                .map(|l| l.missing_retry_after)
                .sum::<usize>()
        );

        // Without the key, /v1/match's 401s are unexpected.
        opts.key = None;
        opts.levels = vec![2];
        let r = run(&opts).await.unwrap();
        let l = &r.levels[0];
        assert_eq!(l.unexpected, l.statuses["401"]);
        assert!(l.unexpected > 0);
    }
}
