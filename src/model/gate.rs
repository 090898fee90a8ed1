//! The gate an encoder passes before it serves (`kefu model activate`), whatever made it — the
//! default model, `kefu train embed` or any Hugging Face directory.
//!
//! Refused outright: a directory whose files do not match its manifest, one that does not load
//! in the serving engine, vectors of the wrong size or not finite, or an intent model in
//! `intent.models` that was trained on another encoder (it could not serve with this one).
//! Then the candidate and the serving model are measured side by side on the same data — the
//! built-in demo KB with its 425 labelled queries, plus `--kb/--queries` and `--pairs` files
//! when given — and every measure may fall by at most `max_drop`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;

use super::registry::ModelRef;
use crate::analytics::metrics::Metrics;
use crate::config::Config;
use crate::embed::Embedder;
use crate::eval::faq::{FaqOptions, Query};

const DEMO_QUERIES: &str = include_str!("../../datasets/demo/queries.jsonl");
const DEMO_CALIBRATION_QUERIES: &str =
    include_str!("../../datasets/demo/calibration_queries.jsonl");

pub struct GateOptions {
    /// A KB file and labelled queries of the team's own (`kefu eval faq` formats).
    pub kb: Option<(PathBuf, PathBuf)>,
    /// A pairs file (`kefu eval pairs` format).
    pub pairs: Option<PathBuf>,
    /// How far (absolute, e.g. 0.01 = one point) any measure may fall below the serving model's.
    pub max_drop: f64,
}

/// One measure on both models.
#[derive(Debug, Serialize)]
pub struct Check {
    pub name: String,
    pub serving: f64,
    pub candidate: f64,
    pub change: f64,
    pub passed: bool,
}

#[derive(Debug, Serialize)]
pub struct GateReport {
    pub candidate: ModelRef,
    pub serving: ModelRef,
    pub max_drop: f64,
    pub checks: Vec<Check>,
    pub passed: bool,
    pub seconds: f64,
}

impl GateReport {
    /// The failed checks, as one line.
    pub fn failures(&self) -> String {
        self.checks
            .iter()
            .filter(|c| !c.passed)
            .map(|c| {
                format!(
                    "{} {:.4} against the serving model's {:.4} (allowed drop {})",
                    c.name, c.candidate, c.serving, self.max_drop
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Loads `dir` as the server would, after checking every file against the manifest.
pub fn load_checked(cfg: &Config, dir: &Path) -> anyhow::Result<Embedder> {
    let m = super::load_manifest(dir, false)
        .with_context(|| format!("{} is not a model directory", dir.display()))?;
    m.verify(dir)
        .with_context(|| format!("{} does not match its manifest", dir.display()))?;
    let e = Embedder::load(dir, &cfg.embed, Arc::new(Metrics::new()))
        .with_context(|| format!("loading {}", dir.display()))?;
    // Vectors of the announced size, finite and unit length.
    let probe: Vec<String> = ["怎么申请退款", "How do I get a refund?", "今天天气怎么样"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for (t, v) in probe.iter().zip(e.embed_blocking(&probe)?) {
        let norm = v.vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        anyhow::ensure!(
            v.vector.len() == m.dimension && v.vector.iter().all(|x| x.is_finite()),
            "{}: the vector of {t:?} has {} values (the manifest says {}) or values that are not finite",
            dir.display(),
            v.vector.len(),
            m.dimension
        );
        anyhow::ensure!(
            (norm - 1.0).abs() < 1e-3,
            "{}: the vector of {t:?} has length {norm}, not 1",
            dir.display()
        );
    }
    Ok(e)
}

/// Refuses when an intent model of `intent.models` cannot serve with `candidate`.
pub fn check_intent_models(cfg: &Config, candidate: &Embedder) -> anyhow::Result<()> {
    for (name, dir) in &cfg.intent.models {
        let m = crate::intent::IntentModel::load(dir)
            .with_context(|| format!("loading intent model {name} (intent.models.{name})"))?;
        m.check_encoder(candidate.manifest()).with_context(|| {
            format!(
                "intent model {name} ({}) cannot serve with {}: train it again with `kefu train intent --encoder DIR` first",
                dir.display(),
                candidate.version()
            )
        })?;
    }
    Ok(())
}

fn demo_queries() -> anyhow::Result<Vec<Query>> {
    DEMO_QUERIES
        .lines()
        .chain(DEMO_CALIBRATION_QUERIES.lines())
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).context("built-in demo queries"))
        .collect()
}

/// Measures `candidate` against the serving model (`serving_dir`).
pub fn run(
    cfg: &Config,
    serving_dir: &Path,
    candidate_dir: &Path,
    opts: &GateOptions,
) -> anyhow::Result<GateReport> {
    let started = Instant::now();
    anyhow::ensure!(
        opts.max_drop >= 0.0 && opts.max_drop < 1.0,
        "--max-drop must be in [0, 1)"
    );
    // Input files first, so that a typo fails before any model loads.
    let own = match &opts.kb {
        Some((kb, q)) => Some((
            kb.clone(),
            q.clone(),
            crate::eval::faq::read_kb(kb)?,
            crate::eval::faq::read_queries(q, None)?,
        )),
        None => None,
    };
    let pairs = match &opts.pairs {
        Some(p) => Some((p.clone(), crate::eval::pairs::read_pairs(p, None)?)),
        None => None,
    };
    let candidate = load_checked(cfg, candidate_dir)?;
    check_intent_models(cfg, &candidate)?;
    let serving = Embedder::load(serving_dir, &cfg.embed, Arc::new(Metrics::new()))
        .with_context(|| format!("loading the serving model {}", serving_dir.display()))?;

    let faq_opts = FaqOptions {
        documents: Vec::new(),
        calibration: cfg.matching.calibration(),
        calibration_source: "config".into(),
        calibrate: false,
        fixed_weights: false,
        target_precision: 0.95,
        perturb: None,
        seed: 42,
        sweep: false,
        report: None,
        index: cfg.index.options(),
        // Top-1 and MRR@10 compare the models; decisions are not gated.
        out_of_scope: Vec::new(),
    };
    let mut checks = Vec::new();
    let mut check = |name: String, s: f64, c: f64| {
        checks.push(Check {
            passed: c >= s - opts.max_drop - 1e-9,
            change: c - s,
            name,
            serving: s,
            candidate: c,
        })
    };
    let faq = |name: &str, kb: &Path, q: &Path, entries: &[_], queries: &[Query]| {
        let mut r = Vec::new();
        for e in [&serving, &candidate] {
            eprintln!("gate: {name} with {}", e.version());
            let rep =
                crate::eval::faq::run(e, kb, q, entries.to_vec(), queries.to_vec(), &faq_opts)?;
            anyhow::ensure!(!rep.interrupted, "interrupted; nothing was activated");
            r.push(rep);
        }
        anyhow::Ok((r[0].top1, r[1].top1, r[0].mrr_at_10, r[1].mrr_at_10))
    };
    let demo = crate::kb::demo::entries();
    let (s1, c1, sm, cm) = faq(
        "demo FAQ",
        Path::new("built-in demo KB"),
        Path::new("built-in demo queries"),
        &demo,
        &demo_queries()?,
    )?;
    check("demo_faq.top1".into(), s1, c1);
    check("demo_faq.mrr_at_10".into(), sm, cm);
    if let Some((kb, q, entries, queries)) = &own {
        let (s1, c1, sm, cm) = faq("your FAQ", kb, q, entries, queries)?;
        check("faq.top1".into(), s1, c1);
        check("faq.mrr_at_10".into(), sm, cm);
    }
    if let Some((p, data)) = &pairs {
        let mut auc = Vec::new();
        for e in [&serving, &candidate] {
            eprintln!("gate: pairs with {}", e.version());
            let r = crate::eval::pairs::run(e, p, data.clone(), None)?;
            anyhow::ensure!(!r.interrupted, "interrupted; nothing was activated");
            auc.push(r.roc_auc);
        }
        check("pairs.roc_auc".into(), auc[0], auc[1]);
    }
    let passed = checks.iter().all(|c| c.passed);
    Ok(GateReport {
        candidate: super::registry::model_ref(&candidate),
        serving: super::registry::model_ref(&serving),
        max_drop: opts.max_drop,
        checks,
        passed,
        seconds: started.elapsed().as_secs_f64(),
    })
}
