//! `kefu eval faq`: retrieval quality of the matcher on a KB file and labelled queries (the
//! shared `faq` format), with the plain dense baseline measured in the same run.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::embed::Embedder;
use crate::kb::import::{self, Format};
use crate::matcher::{FusionWeights, KbIndex};

#[derive(Deserialize)]
pub struct Query {
    pub query: String,
    #[serde(default)]
    pub gold: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Retrieval {
    pub top1: f64,
    pub recall_at_5: f64,
    pub mrr_at_10: f64,
}

#[derive(Debug, Serialize)]
pub struct FaqReport {
    pub kb: String,
    pub queries: String,
    pub model: String,
    pub entries: usize,
    pub texts: usize,
    /// Queries with at least one gold entry (the retrieval metrics cover these).
    pub n: usize,
    pub out_of_scope: usize,
    pub top1: f64,
    pub recall_at_5: f64,
    pub mrr_at_10: f64,
    /// The same queries with dense cosine alone (no lexical or fuzzy signal).
    pub dense_baseline: Retrieval,
    pub weights: FusionWeights,
    /// Per query: encode + search, milliseconds.
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub index_seconds: f64,
    pub interrupted: bool,
    /// With `--sweep`: top-1 and MRR@10 for every pair of weights tried.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<SweepPoint>,
}

#[derive(Debug, Serialize)]
pub struct SweepPoint {
    pub lexical: f32,
    pub fuzzy: f32,
    pub top1: f64,
    pub mrr_at_10: f64,
}

/// Weights tried by `--sweep`.
pub const SWEEP: &[f32] = &[0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2];

pub fn read_queries(path: &Path, limit: Option<usize>) -> anyhow::Result<Vec<Query>> {
    let rows = super::read_jsonl(path, limit, r#"{"query", "gold": [ids]}"#)?;
    Ok(rows.into_iter().map(|(_, q)| q).collect())
}

pub fn read_kb(path: &Path) -> anyhow::Result<Vec<crate::kb::FaqEntry>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let fmt = Format::from_path(path).unwrap_or(Format::Jsonl);
    import::parse(fmt, &text, "kb").map_err(|problems| {
        let shown: Vec<String> = problems
            .iter()
            .take(20)
            .map(|p| format!("{}:{p}", path.display()))
            .collect();
        anyhow::anyhow!(
            "{} problem(s) in the KB:\n{}",
            problems.len(),
            shown.join("\n")
        )
    })
}

#[derive(Default)]
struct Acc {
    top1: usize,
    r5: usize,
    mrr: f64,
}

impl Acc {
    fn add(&mut self, ranked: &[String], gold: &HashSet<&str>) {
        if let Some(r) = ranked
            .iter()
            .take(10)
            .position(|id| gold.contains(id.as_str()))
        {
            if r == 0 {
                self.top1 += 1;
            }
            if r < 5 {
                self.r5 += 1;
            }
            self.mrr += 1.0 / (r + 1) as f64;
        }
    }
    fn finish(&self, n: usize) -> Retrieval {
        let n = n.max(1) as f64;
        Retrieval {
            top1: self.top1 as f64 / n,
            recall_at_5: self.r5 as f64 / n,
            mrr_at_10: self.mrr / n,
        }
    }
}

pub fn run(
    e: &Embedder,
    kb_path: &Path,
    queries_path: &Path,
    entries: Vec<crate::kb::FaqEntry>,
    queries: Vec<Query>,
    weights: FusionWeights,
    sweep: bool,
) -> anyhow::Result<FaqReport> {
    let stop = super::interrupt_flag();
    let started = Instant::now();
    let bar = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:40} {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("template"),
    );
    bar.set_message("indexing KB questions");
    let index = KbIndex::build(entries, e, None, &Default::default(), |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    let index_seconds = started.elapsed().as_secs_f64();
    bar.set_message("matching queries");
    bar.set_length(queries.len() as u64);
    bar.set_position(0);
    let (mut fused, mut dense) = (Acc::default(), Acc::default());
    let (mut n, mut oos) = (0, 0);
    let mut times = Vec::new();
    let mut interrupted = false;
    let mut kept: Vec<(Vec<f32>, &Query)> = Vec::new();
    let dense_only = FusionWeights {
        lexical: 0.0,
        fuzzy: 0.0,
    };
    for q in &queries {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let t = Instant::now();
        let v = e.embed_blocking(std::slice::from_ref(&q.query))?;
        let ranked = index.search(&v[0].vector, &q.query, 10, weights);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        bar.inc(1);
        if q.gold.is_empty() {
            oos += 1;
            continue;
        }
        n += 1;
        let gold: HashSet<&str> = q.gold.iter().map(String::as_str).collect();
        let ids = |c: &[crate::matcher::Candidate]| -> Vec<String> {
            c.iter()
                .map(|c| index.entries[c.entry].id.clone())
                .collect()
        };
        fused.add(&ids(&ranked), &gold);
        if sweep {
            kept.push((v[0].vector.to_vec(), q));
        }
        dense.add(
            &ids(&index.search(&v[0].vector, &q.query, 10, dense_only)),
            &gold,
        );
    }
    bar.finish_and_clear();
    let mut points = Vec::new();
    for &l in SWEEP.iter().filter(|_| sweep) {
        for &fz in SWEEP {
            let w = FusionWeights {
                lexical: l,
                fuzzy: fz,
            };
            let mut acc = Acc::default();
            for (v, q) in &kept {
                let gold: HashSet<&str> = q.gold.iter().map(String::as_str).collect();
                let ranked: Vec<String> = index
                    .search(v, &q.query, 10, w)
                    .iter()
                    .map(|c| index.entries[c.entry].id.clone())
                    .collect();
                acc.add(&ranked, &gold);
            }
            let r = acc.finish(kept.len());
            eprintln!(
                "sweep lexical {l:.2} fuzzy {fz:.2}: top1 {:.4} MRR@10 {:.4}",
                r.top1, r.mrr_at_10
            );
            points.push(SweepPoint {
                lexical: l,
                fuzzy: fz,
                top1: r.top1,
                mrr_at_10: r.mrr_at_10,
            });
        }
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| {
        times
            .get(((times.len().max(1) - 1) as f64 * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    let f = fused.finish(n);
    Ok(FaqReport {
        kb: kb_path.display().to_string(),
        queries: queries_path.display().to_string(),
        model: e.version().to_string(),
        entries: index.entries.len(),
        texts: index.texts.len(),
        n,
        out_of_scope: oos,
        top1: f.top1,
        recall_at_5: f.recall_at_5,
        mrr_at_10: f.mrr_at_10,
        dense_baseline: dense.finish(n),
        weights,
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        index_seconds,
        interrupted,
        sweep: points,
    })
}
