//! Load generator for the HTTP API against a running kefu, as a cargo bench: the load of
//! `kefu bench http` (src/bench/http.rs) at one concurrency level on one route, printed as JSON.
//! `kefu bench http` runs several levels and routes and can start the server itself.
//!
//!     cargo run --release -- serve &
//!     KEFU_BENCH_URL=http://127.0.0.1:8080 cargo bench --bench http_load
//!
//! Knobs: KEFU_BENCH_CONCURRENCY (8), KEFU_BENCH_SECONDS (10), KEFU_BENCH_ROUTE (/v1/embed,
//! /v1/embeddings, /v1/match or /v1/chat), KEFU_BENCH_UNIQUE=1 makes every text unique so the
//! query cache never answers, KEFU_BENCH_KEY is sent as `Authorization: Bearer`.

use kefu::bench::http::{HttpBenchOptions, run};

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
    let mut opts = HttpBenchOptions::new(&base);
    opts.levels = vec![env("KEFU_BENCH_CONCURRENCY", 8)];
    opts.seconds = env("KEFU_BENCH_SECONDS", 10.0);
    opts.routes = vec![env("KEFU_BENCH_ROUTE", "/v1/embed".to_string())];
    opts.unique = env("KEFU_BENCH_UNIQUE", 0u8) == 1;
    opts.key = std::env::var("KEFU_BENCH_KEY").ok();
    match run(&opts).await {
        Ok(r) => println!("{}", serde_json::to_string(&r).expect("JSON")),
        Err(e) => {
            eprintln!("http_load: {e:#}");
            std::process::exit(1);
        }
    }
}
