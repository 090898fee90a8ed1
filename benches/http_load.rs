//! Load generator for the HTTP API: `concurrency` clients post short questions to a running
//! kefu for `seconds`, then latency percentiles and throughput are printed as JSON.
//!
//!     cargo run --release -- serve &
//!     KEFU_BENCH_URL=http://127.0.0.1:8080 cargo bench --bench http_load
//!
//! Knobs: KEFU_BENCH_CONCURRENCY (8), KEFU_BENCH_SECONDS (10), KEFU_BENCH_ROUTE (/v1/embed,
//! /v1/embeddings or /v1/match),
//! KEFU_BENCH_UNIQUE=1 makes every text unique so the query cache never answers.

use std::time::{Duration, Instant};

use kefu::bench::QUESTIONS;

fn env<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let Ok(base) = std::env::var("KEFU_BENCH_URL") else {
        eprintln!(
            "http_load: set KEFU_BENCH_URL to a running kefu (e.g. http://127.0.0.1:8080); nothing measured"
        );
        return;
    };
    let concurrency: usize = env("KEFU_BENCH_CONCURRENCY", 8);
    let seconds: u64 = env("KEFU_BENCH_SECONDS", 10);
    let route: String = env("KEFU_BENCH_ROUTE", "/v1/embed".to_string());
    let unique: bool = env("KEFU_BENCH_UNIQUE", 0u8) == 1;
    let url = format!("{base}{route}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for worker in 0..concurrency {
        let (client, url, route) = (client.clone(), url.clone(), route.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0usize;
            let mut i = worker;
            while Instant::now() < deadline {
                let q = QUESTIONS[i % QUESTIONS.len()];
                let text = if unique {
                    format!("{q} #{worker}-{i}")
                } else {
                    q.to_string()
                };
                let body = if route.ends_with("/embeddings") {
                    serde_json::json!({ "input": text })
                } else if route.ends_with("/match") {
                    serde_json::json!({ "query": text })
                } else {
                    serde_json::json!({ "inputs": [text] })
                };
                let started = Instant::now();
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(started.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => errors += 1,
                }
                i += concurrency;
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.unwrap();
        all.extend(l);
        errors += e;
    }
    all.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| {
        all.get(((all.len().max(1) - 1) as f64 * q) as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    println!(
        "{}",
        serde_json::json!({
            "route": route, "concurrency": concurrency, "seconds": seconds, "unique_texts": unique,
            "requests": all.len(), "errors": errors,
            "requests_per_s": all.len() as f64 / seconds as f64,
            "p50_ms": p(0.5), "p95_ms": p(0.95), "p99_ms": p(0.99),
        })
    );
}
