//! `kefu bench`: speed of matching over HTTP and of embedding in process.

use std::path::PathBuf;

use clap::Subcommand;

use kefu::config::Overrides;
use kefu::embed::{EngineKind, Weights};

use super::CommonFlags;
use super::common::{self, Ctx, Flags};

#[derive(Subcommand)]
pub enum BenchCommand {
    /// `/v1/match` end to end over HTTP: a real server on a KB of --entries entries, latency at
    /// concurrency 1, throughput at higher concurrency, HNSW recall@10 against exact search.
    Match {
        /// KB file (JSONL, CSV or Markdown), e.g. ../shared/datasets/faq/lcqmc_test/kb.jsonl.
        #[arg(long)]
        kb: PathBuf,
        /// Queries file (`{"query", ...}` JSONL) whose questions are posted.
        #[arg(long)]
        queries: PathBuf,
        /// Entries taken from the start of the KB.
        #[arg(long, default_value_t = 10_000)]
        entries: usize,
        /// Requests per concurrency level.
        #[arg(long, default_value_t = 1000)]
        requests: usize,
        /// Concurrency levels, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "1,16")]
        concurrency: Vec<usize>,
        /// Queries for the recall measurement.
        #[arg(long, default_value_t = 500)]
        recall_queries: usize,
        /// Search through HNSW whatever the KB's size (else `index.exact_below` decides).
        #[arg(long)]
        hnsw: bool,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Load on the HTTP API: clients at each concurrency level post short questions to
    /// `/v1/chat` and `/v1/match` for a fixed time; per level throughput, latency, every
    /// status code (only 429 and 503, each with `Retry-After`, may be other than 2xx), the
    /// server's peak memory and whether `/healthz` kept answering. Starts a server on the demo
    /// knowledge base unless --url names one. Fails when the server gave unexpected answers.
    Http {
        /// A running kefu to load (else one is started, with the environment's configuration).
        #[arg(long, env = "KEFU_BENCH_URL")]
        url: Option<String>,
        /// API key, sent as `Authorization: Bearer` (servers with API keys).
        #[arg(long, env = "KEFU_BENCH_KEY", hide_env_values = true)]
        key: Option<String>,
        /// Concurrency levels, comma-separated, run one after the other.
        #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
        concurrency: Vec<usize>,
        /// Seconds each level sends requests.
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        /// Routes loaded, in turn (`/v1/chat`, `/v1/match`, `/v1/embed`, `/v1/embeddings`, and
        /// the channels: `/channels/web/turn`, `/channels/sms`, `/channels/wechat/ACCOUNT`; a
        /// started server gets the account `bench` and an SMS provider stand-in).
        #[arg(long, value_delimiter = ',', default_value = "/v1/chat,/v1/match")]
        routes: Vec<String>,
        /// The WeChat account's token, to sign `/channels/wechat/ACCOUNT` requests (a started
        /// server is given this one).
        #[arg(long, env = "KEFU_BENCH_WECHAT_TOKEN", hide_env_values = true)]
        wechat_token: Option<String>,
        /// `channels.sms.secret`, to sign `/channels/sms` requests (a started server is given
        /// this one).
        #[arg(long, env = "KEFU_BENCH_SMS_SECRET", hide_env_values = true)]
        sms_secret: Option<String>,
        /// Repeat the same questions (answered from the query cache after the first time)
        /// instead of making every text unique.
        #[arg(long)]
        cached: bool,
        /// The process id of the server at --url, for its memory (from /proc).
        #[arg(long)]
        server_pid: Option<u32>,
        /// Data directory of the started server (else a temporary one; a kept one saves the
        /// demo intent models' first training on later runs).
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print one JSON object instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: CommonFlags,
    },
    /// Embedding latency and throughput, in process.
    Embed {
        /// Single-question runs (fixed-shape and batch runs scale from it).
        #[arg(long, default_value_t = 200)]
        iterations: usize,
        /// Inference threads (0: every core).
        #[arg(long)]
        threads: Option<usize>,
        /// Forward pass to measure.
        #[arg(long, value_enum)]
        engine: Option<EngineKind>,
        /// Weight storage for the kefu engine.
        #[arg(long, value_enum)]
        weights: Option<Weights>,
        /// Int8 kernels to force (default: embed.cpu, normally auto).
        #[arg(long, value_enum)]
        cpu: Option<kefu::embed::CpuPath>,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        common: CommonFlags,
    },
}

pub fn run(cmd: BenchCommand, ctx: &Ctx) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Match {
            kb,
            queries,
            entries,
            requests,
            concurrency,
            recall_queries,
            hnsw,
            json,
            common,
        } => {
            let cfg = ctx.config(Flags::common(common))?;
            anyhow::ensure!(
                concurrency.iter().all(|&c| c > 0) && requests > 0 && entries > 0,
                "--entries, --requests and every --concurrency must be at least 1"
            );
            let e = common::embedder(&cfg)?;
            let opts = kefu::bench::matching::MatchBenchOptions {
                kb,
                queries,
                entries,
                requests,
                concurrency,
                model: std::fs::canonicalize(&cfg.model.path)
                    .unwrap_or_else(|_| cfg.model.path.clone()),
                recall_queries,
                force_hnsw: hnsw,
            };
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let r = rt.block_on(kefu::bench::matching::run(&opts, e))?;
            common::print_report(json, &r, |r| {
                println!(
                    "{}: {} entries, {} questions, model {}, {} ({} cores); index built in {:.1} s",
                    r.kb,
                    r.entries,
                    r.texts,
                    r.model,
                    if r.hnsw { "HNSW" } else { "exact search" },
                    r.cores,
                    r.index_build_seconds
                );
                println!(
                    "one new entry through the API was served {:.0} ms after the POST",
                    r.update_visible_ms
                );
                for run in &r.runs {
                    println!(
                        "concurrency {:>3}: {} requests, p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, {:.1} req/s, {} errors",
                        run.concurrency,
                        run.requests,
                        run.p50_ms,
                        run.p90_ms,
                        run.p99_ms,
                        run.throughput_rps,
                        run.errors
                    );
                }
                if let Some(a) = &r.ann {
                    println!(
                        "exact search over {} vectors: p50 {:.0} µs",
                        a.vectors, a.exact_p50_us
                    );
                    for p in &a.ef {
                        println!(
                            "HNSW ef {:>3}: recall@10 {:.4}, p50 {:.0} µs{}",
                            p.ef,
                            p.recall_at_10,
                            p.p50_us,
                            if p.ef == a.configured_ef {
                                "  (configured)"
                            } else {
                                ""
                            }
                        );
                    }
                }
            })
        }
        BenchCommand::Http {
            url,
            key,
            concurrency,
            seconds,
            routes,
            wechat_token,
            sms_secret,
            cached,
            server_pid,
            data_dir,
            json,
            common,
        } => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            // Started before the options are checked by the run: a bad flag fails first.
            let mut opts = kefu::bench::http::HttpBenchOptions::new(url.as_deref().unwrap_or(""));
            opts.key = key;
            opts.levels = concurrency;
            opts.seconds = seconds;
            let channels = routes.iter().any(|r| r.starts_with("/channels/"));
            // A started server gets the channels' settings: known secrets unless given.
            let started = url.is_none();
            opts.wechat_token = wechat_token.or_else(|| started.then(|| "kefubench".into()));
            opts.sms_secret = sms_secret.or_else(|| started.then(|| "kefu-bench-secret".into()));
            opts.routes = routes;
            opts.unique = !cached;
            opts.server_pid = server_pid;
            opts.check()?;
            let tmp;
            let _server = match url {
                Some(_) => None,
                None => {
                    let cfg = ctx.config(Flags::common(common))?;
                    let dir = match data_dir {
                        Some(d) => d,
                        None => {
                            tmp = tempfile::tempdir()?;
                            tmp.path().to_path_buf()
                        }
                    };
                    let model = std::fs::canonicalize(&cfg.model.path)
                        .unwrap_or_else(|_| cfg.model.path.clone());
                    eprintln!("bench: starting kefu serve on {}…", dir.display());
                    let config_file;
                    let mut env = vec![];
                    if channels {
                        let sink = rt.block_on(kefu::bench::server::sink())?;
                        config_file = kefu::bench::server::channels_config(
                            &cfg,
                            opts.wechat_token.as_deref().unwrap_or_default(),
                            opts.sms_secret.as_deref().unwrap_or_default(),
                            &sink,
                        )?;
                        env.push((
                            "KEFU_CONFIG",
                            config_file.path().to_string_lossy().into_owned(),
                        ));
                    }
                    let env: Vec<(&str, &str)> =
                        env.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    let server = kefu::bench::server::ServerProc::start(&dir, &model, &env)?;
                    opts.base = server.base.clone();
                    opts.server_pid = Some(server.pid());
                    rt.block_on(server.ready(std::time::Duration::from_secs(1800)))?;
                    Some(server)
                }
            };
            eprintln!(
                "bench: {} at concurrency {:?}, {} s each…",
                opts.routes.join(" and "),
                opts.levels,
                opts.seconds
            );
            let r = rt.block_on(kefu::bench::http::run(&opts))?;
            common::print_report(json, &r, print_http)?;
            anyhow::ensure!(
                r.problems == 0,
                "the server gave {} unexpected answers (other than 2xx, 429 and 503, or a 429/503 \
                 without Retry-After)",
                r.problems
            );
            Ok(())
        }
        BenchCommand::Embed {
            iterations,
            threads,
            engine,
            weights,
            cpu,
            json,
            common,
        } => {
            let mut cfg = ctx.config(Flags {
                overrides: Overrides {
                    model: common.model,
                    ..Default::default()
                },
                engine,
                weights,
                cpu,
                threads,
            })?;
            // Measure the model, not the embedding cache.
            cfg.embed.cache_size = 0;
            let e = common::embedder(&cfg)?;
            let opts = kefu::bench::BenchOptions {
                iterations: iterations.max(10),
                threads: candle_threads(),
                engine: e.engine().kind.clone(),
                weights: e.engine().weights.clone(),
                kernel: e.engine().kernel.clone(),
            };
            let r = kefu::bench::run(&e, &opts, |stage| eprintln!("bench: {stage}…"))?;
            common::print_report(json, &r, |r| {
                println!(
                    "model {}  engine {}  weights {}  kernel {}  threads {}",
                    r.model,
                    r.engine,
                    r.weights,
                    r.kernel.as_deref().unwrap_or("-"),
                    r.threads
                );
                println!(
                    "single question: p50 {:.2} ms  p95 {:.2} ms  p99 {:.2} ms  (n = {})",
                    r.single.p50_ms, r.single.p95_ms, r.single.p99_ms, r.single.n
                );
                for f in &r.fixed {
                    println!(
                        "fixed {:>2} x {:>2} tokens: {:.2} ms  ({:.1} sentences/s)",
                        f.batch, f.tokens, f.median_ms, f.sentences_per_s
                    );
                }
                println!(
                    "batches of 32 real questions: {:.1} sentences/s",
                    r.batch32_real_sentences_per_s
                );
            })
        }
    }
}

fn print_http(r: &kefu::bench::http::HttpBench) {
    println!(
        "{}  model {}  {} cores  {} for {} s per level{}",
        r.base,
        r.model.as_deref().unwrap_or("?"),
        r.cores,
        r.routes.join(" + "),
        r.seconds_per_level,
        if r.unique_texts {
            ", every text unique"
        } else {
            ", repeated texts"
        }
    );
    println!(
        "{:>5} {:>8} {:>8} {:>9} {:>9} {:>9}  {:<26} {:>8} {:>16}",
        "conc",
        "requests",
        "ok/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "statuses",
        "RSS MiB",
        "healthz fail/max"
    );
    for l in &r.levels {
        let statuses: Vec<String> = l.statuses.iter().map(|(s, n)| format!("{s}:{n}")).collect();
        println!(
            "{:>5} {:>8} {:>8.1} {:>9.1} {:>9.1} {:>9.1}  {:<26} {:>8} {:>9}/{:.0} ms",
            l.concurrency,
            l.requests,
            l.latency.throughput_rps,
            l.latency.p50_ms,
            l.latency.p95_ms,
            l.latency.p99_ms,
            statuses.join(" "),
            l.server_rss_mib.map_or("-".into(), |m| format!("{m:.0}")),
            l.health.failures,
            l.health.max_ms
        );
        for route in &l.by_route {
            println!(
                "      {:<14} {:>6} requests, {:.1} ok/s, p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
                route.route,
                route.requests,
                route.latency.throughput_rps,
                route.latency.p50_ms,
                route.latency.p95_ms,
                route.latency.p99_ms
            );
        }
    }
    if let Some(m) = r.server_peak_rss_mib {
        println!("server peak RSS (VmHWM): {m:.0} MiB");
    }
    println!(
        "unexpected answers or 429/503 without Retry-After: {}",
        r.problems
    );
}

/// The threads the forward pass uses (what `--threads` or embed.threads set, else every core).
fn candle_threads() -> usize {
    std::env::var("CANDLE_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(num_cpus::get)
}
