//! `kefu bench match`: `/v1/match` end to end. A KB of N entries is written to a temporary
//! data directory, a real `kefu serve` is started on it (query cache off, so every request
//! encodes), and distinct real questions are posted at concurrency 1 and higher; then the
//! index snapshot the server saved is loaded to measure HNSW recall@10 against exact search
//! and the search time of each.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use super::server::ServerProc;
use crate::embed::Embedder;
use crate::index::dense::DenseIndex;
use crate::index::snapshot;

pub struct MatchBenchOptions {
    pub kb: PathBuf,
    pub queries: PathBuf,
    /// Entries taken from the start of the KB file.
    pub entries: usize,
    /// Requests per concurrency level.
    pub requests: usize,
    pub concurrency: Vec<usize>,
    pub model: PathBuf,
    /// Queries used for the recall measurement.
    pub recall_queries: usize,
    /// Make the server search through HNSW whatever the KB's size (`index.exact_below`).
    pub force_hnsw: bool,
}

#[derive(Debug, Serialize)]
pub struct LoadRun {
    pub concurrency: usize,
    pub requests: usize,
    pub errors: usize,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub mean_ms: f64,
    pub throughput_rps: f64,
}

#[derive(Debug, Serialize)]
pub struct EfPoint {
    pub ef: usize,
    pub recall_at_10: f64,
    pub p50_us: f64,
}

#[derive(Debug, Serialize)]
pub struct AnnReport {
    /// Question vectors searched: the graph's live rows (answers and examples left out).
    pub vectors: usize,
    /// Exact search over every vector, per query.
    pub exact_p50_us: f64,
    /// Recall@10 against exact search and search time at several `ef`.
    pub ef: Vec<EfPoint>,
    /// The configured `index.hnsw_ef_search`.
    pub configured_ef: usize,
}

#[derive(Debug, Serialize)]
pub struct MatchBench {
    pub kb: String,
    pub entries: usize,
    pub texts: usize,
    pub model: String,
    pub hnsw: bool,
    pub index_build_seconds: f64,
    /// From `POST /v1/faqs` of one new entry to the rebuilt index serving it.
    pub update_visible_ms: f64,
    pub cores: usize,
    pub runs: Vec<LoadRun>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ann: Option<AnnReport>,
}

fn start_server(data_dir: &Path, model: &Path, force_hnsw: bool) -> anyhow::Result<ServerProc> {
    let mut env = vec![
        ("KEFU_EMBED__CACHE_SIZE", "0"),
        ("KEFU_KB__LOAD_DEMO", "false"),
    ];
    if force_hnsw {
        env.push(("KEFU_INDEX__EXACT_BELOW", "1"));
    }
    ServerProc::start(data_dir, model, &env)
}

async fn load(
    client: &reqwest::Client,
    url: &str,
    questions: &[String],
    concurrency: usize,
    requests: usize,
) -> LoadRun {
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let (client, url) = (client.clone(), url.to_string());
        let mine: Vec<String> = (w..requests)
            .step_by(concurrency)
            .map(|i| questions[i % questions.len()].clone())
            .collect();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(mine.len());
            let mut errors = 0;
            for q in mine {
                let t = Instant::now();
                let body = serde_json::json!({"query": q, "top_k": 5});
                match client.post(&url).json(&body).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        let (l, e) = t.await.expect("load task");
        lat.extend(l);
        errors += e;
    }
    let wall = started.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    LoadRun {
        concurrency,
        requests: lat.len(),
        errors,
        p50_ms: crate::eval::percentile(&lat, 0.5),
        p90_ms: crate::eval::percentile(&lat, 0.9),
        p99_ms: crate::eval::percentile(&lat, 0.99),
        mean_ms: lat.iter().sum::<f64>() / lat.len().max(1) as f64,
        throughput_rps: lat.len() as f64 / wall,
    }
}

pub async fn run(opts: &MatchBenchOptions, embedder: Embedder) -> anyhow::Result<MatchBench> {
    let mut entries = crate::eval::faq::read_kb(&opts.kb)?;
    entries.truncate(opts.entries);
    let questions: Vec<String> = crate::eval::faq::read_queries(&opts.queries, None)?
        .into_iter()
        .map(|q| q.query)
        .collect();
    anyhow::ensure!(
        !questions.is_empty(),
        "no queries in {}",
        opts.queries.display()
    );
    let tmp = tempfile::tempdir()?;
    let store = crate::kb::KbStore::open(tmp.path()).await?;
    store.upsert_all(&entries).await?;
    drop(store);

    eprintln!(
        "bench: starting kefu serve and indexing {} entries…",
        entries.len()
    );
    let server = start_server(tmp.path(), &opts.model, opts.force_hnsw)?;
    let client = reqwest::Client::new();
    let started = Instant::now();
    let info: serde_json::Value = loop {
        if let Ok(r) = client.get(format!("{}/v1/index", server.base)).send().await
            && r.status().is_success()
        {
            let v: serde_json::Value = r.json().await?;
            if v["entries"].as_u64() == Some(entries.len() as u64) {
                break v;
            }
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "the index was not built within an hour"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let url = format!("{}/v1/match", server.base);
    // Warm-up, then each concurrency level on questions the others do not use.
    load(&client, &url, &questions[..questions.len().min(20)], 1, 20).await;
    let mut runs = Vec::new();
    let mut offset = 20;
    for &c in &opts.concurrency {
        let qs: Vec<String> = questions
            .iter()
            .cycle()
            .skip(offset)
            .take(opts.requests)
            .cloned()
            .collect();
        offset += opts.requests;
        eprintln!("bench: {} requests at concurrency {c}…", opts.requests);
        runs.push(load(&client, &url, &qs, c, opts.requests).await);
    }
    // One change through the API: how long until the rebuilt index serves it.
    let t = Instant::now();
    let entry = serde_json::json!({"id": "kefu-bench-update", "question": "这是基准测试新增的问题吗",
        "similar": ["基准测试新增条目"], "answer": "是的。"});
    let r = client
        .post(format!("{}/v1/faqs", server.base))
        .json(&entry)
        .send()
        .await?;
    anyhow::ensure!(
        r.status().is_success(),
        "adding an entry failed: {}",
        r.status()
    );
    let update_visible_ms = loop {
        let v: serde_json::Value = client
            .get(format!("{}/v1/index", server.base))
            .send()
            .await?
            .json()
            .await?;
        if v["entries"].as_u64() == Some(entries.len() as u64 + 1) {
            break t.elapsed().as_secs_f64() * 1000.0;
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(600),
            "the update never showed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Let the snapshot of the build be written, then stop the server.
    let snap = snapshot::dir(tmp.path());
    let model = info["model"].as_str().unwrap_or_default().to_string();
    let deadline = Instant::now() + Duration::from_secs(120);
    let snapshot_texts = |p: &Path| -> Option<usize> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
        Some(v["texts"].as_array()?.len())
    };
    // The snapshot holds every question, every answer and the out-of-scope examples: the
    // generation after the update has the new entry's two questions and its answer more.
    let count = |k: &str| info[k].as_u64().unwrap_or(0) as usize;
    let want = count("texts") + count("entries") + count("out_of_scope") + 3;
    while snapshot_texts(&snap.join("meta.json")) != Some(want) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    drop(server);

    let ann = if info["hnsw"] == true {
        eprintln!("bench: HNSW recall against exact search…");
        Some(tokio::task::block_in_place(|| {
            ann_report(&snap, &model, &embedder, &questions, opts.recall_queries)
        })?)
    } else {
        None
    };
    Ok(MatchBench {
        kb: opts.kb.display().to_string(),
        entries: entries.len(),
        texts: info["texts"].as_u64().unwrap_or(0) as usize,
        model,
        hnsw: info["hnsw"] == true,
        index_build_seconds: info["seconds"].as_f64().unwrap_or(0.0),
        update_visible_ms,
        cores: num_cpus::get(),
        runs,
        ann,
    })
}

fn ann_report(
    snap: &Path,
    model: &str,
    embedder: &Embedder,
    questions: &[String],
    n: usize,
) -> anyhow::Result<AnnReport> {
    let prior = snapshot::load(snap, model)
        .map_err(|e| anyhow::anyhow!("loading the server's index snapshot: {e:?}"))?;
    let graph = prior.graph.context("the snapshot has no HNSW graph")?;
    // Graph rows and snapshot texts can differ in order: compare by text. The graph holds the
    // questions; the snapshot also answers and out-of-scope examples, which exact search
    // must leave out too.
    let rows: Vec<String> = (0..graph.len() as u32)
        .map(|r| graph.row_text(r).unwrap_or_default())
        .collect();
    let in_graph: std::collections::HashSet<&str> = rows.iter().map(String::as_str).collect();
    let mut exact = DenseIndex::new(prior.dim);
    let mut exact_texts = Vec::new();
    for (t, v) in prior
        .texts
        .iter()
        .zip(prior.vectors.chunks_exact(prior.dim))
    {
        if in_graph.contains(t.as_str()) {
            exact.push(v);
            exact_texts.push(t.as_str());
        }
    }
    let texts: std::collections::HashSet<&str> = exact_texts.iter().copied().collect();
    let qs: Vec<String> = questions.iter().take(n).cloned().collect();
    let mut vecs = Vec::new();
    for chunk in qs.chunks(32) {
        vecs.extend(
            embedder
                .embed_blocking(chunk)?
                .into_iter()
                .map(|e| e.vector),
        );
    }
    let mut exact_times = Vec::new();
    let mut truth = Vec::new();
    for v in &vecs {
        let t = Instant::now();
        let mut top = exact.top(v, 10);
        exact_times.push(t.elapsed().as_secs_f64() * 1e6);
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        truth.push(
            top.iter()
                .map(|(i, _)| exact_texts[*i as usize].to_string())
                .collect::<std::collections::HashSet<_>>(),
        );
    }
    exact_times.sort_by(|a, b| a.total_cmp(b));
    let live: Vec<bool> = rows.iter().map(|t| texts.contains(t.as_str())).collect();
    let alive = |r: u32| live[r as usize];
    let mut points = Vec::new();
    for ef in [16, 32, 64, 128, 256] {
        let (mut hit, mut total, mut times) = (0usize, 0usize, Vec::new());
        for (v, want) in vecs.iter().zip(&truth) {
            let t = Instant::now();
            let got = graph.search_ef(v, 10, ef, &alive);
            times.push(t.elapsed().as_secs_f64() * 1e6);
            let got: std::collections::HashSet<&String> =
                got.iter().map(|(r, _)| &rows[*r as usize]).collect();
            hit += want.iter().filter(|t| got.contains(t)).count();
            total += want.len();
        }
        times.sort_by(|a, b| a.total_cmp(b));
        points.push(EfPoint {
            ef,
            recall_at_10: hit as f64 / total.max(1) as f64,
            p50_us: crate::eval::percentile(&times, 0.5),
        });
    }
    Ok(AnnReport {
        vectors: exact_texts.len(),
        exact_p50_us: crate::eval::percentile(&exact_times, 0.5),
        ef: points,
        configured_ef: graph.params().ef_search,
    })
}
