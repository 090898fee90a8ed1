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
#[derive(Debug, Serialize, serde::Deserialize)]
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

impl Check {
    /// `name  serving x  candidate y  (±d) ok|FAILED`, as the commands print it.
    pub fn line(&self) -> String {
        format!(
            "{:<22} serving {:.4}  candidate {:.4}  ({:+.4}) {}",
            self.name,
            self.serving,
            self.candidate,
            self.change,
            if self.passed { "ok" } else { "FAILED" }
        )
    }
}

fn check_max_drop(max_drop: f64) -> anyhow::Result<()> {
    anyhow::ensure!(
        (0.0..1.0).contains(&max_drop),
        "max_drop must be in [0, 1), got {max_drop}"
    );
    Ok(())
}

impl GateReport {
    /// The record of activating the candidate this report measured (forced when it failed).
    pub fn activation(&self) -> super::registry::Activation {
        super::registry::Activation {
            model: self.candidate.clone(),
            activated_at: super::registry::now_rfc3339(),
            forced: !self.passed,
            gate: serde_json::to_value(self).unwrap_or_default(),
            previous: Some(self.serving.clone()),
            action: None,
        }
    }

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
    for (name, dir) in &super::registry::intent_dirs(&cfg.server.data_dir, &cfg.intent.models)? {
        let m = crate::intent::IntentModel::load(dir)
            .with_context(|| format!("loading intent model {name} ({})", dir.display()))?;
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

/// How the gate (and `kefu eval compare --kind embedding`) runs `kefu eval faq`: the configured
/// calibration, no calibrating, top-1 and MRR@10 compared (decisions are not gated).
pub fn faq_options(cfg: &Config) -> FaqOptions {
    FaqOptions {
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
    }
}

/// The built-in demo queries (labelled with the demo KB's ids).
pub fn demo_queries() -> anyhow::Result<Vec<Query>> {
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

    let faq_opts = faq_options(cfg);
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

/// A check of `name` on both models (`serving` None: nothing serves yet, so nothing to fall
/// below).
fn checks_of(pairs: &[(&str, f64, Option<f64>)], max_drop: f64) -> Vec<Check> {
    pairs
        .iter()
        .map(|&(name, c, s)| {
            let s = s.unwrap_or(0.0);
            Check {
                name: name.to_string(),
                serving: s,
                candidate: c,
                change: c - s,
                passed: c >= s - max_drop - 1e-9,
            }
        })
        .collect()
}

fn report_of(
    candidate: ModelRef,
    serving: Option<ModelRef>,
    checks: Vec<Check>,
    max_drop: f64,
    started: Instant,
) -> GateReport {
    GateReport {
        candidate,
        serving: serving.unwrap_or(ModelRef {
            path: String::new(),
            version: "none".into(),
        }),
        max_drop,
        passed: checks.iter().all(|c| c.passed),
        checks,
        seconds: started.elapsed().as_secs_f64(),
    }
}

// ---- intent models ----

/// The labelled rows an intent model is gated (and compared) on.
pub struct IntentGolden {
    pub source: String,
    pub rows: Vec<crate::intent::Example>,
}

/// The golden set of intent model `name`: `given`, else `model.gate.intent.NAME`, else the demo
/// model's built-in test set.
pub fn intent_golden(
    cfg: &Config,
    name: &str,
    given: Option<&Path>,
) -> anyhow::Result<IntentGolden> {
    if let Some(p) = given.or(cfg.model.gate.intent.get(name).map(PathBuf::as_path)) {
        return Ok(IntentGolden {
            source: p.display().to_string(),
            rows: crate::intent::read_examples(p, None)?,
        });
    }
    let builtin = match name {
        "service" => crate::intent::demo::SERVICE_TEST,
        "complaint_severity" => crate::intent::demo::SEVERITY_TEST,
        _ => anyhow::bail!(
            "no golden set for intent/{name}: set model.gate.intent.{name} to a labelled JSONL file or pass --golden FILE"
        ),
    };
    Ok(IntentGolden {
        source: format!("built-in datasets/demo/intents/{name}/test.jsonl"),
        rows: crate::intent::parse_examples(builtin),
    })
}

/// Loads intent model `dir` to serve with `encoder`: refused, naming both encoders, when it was
/// trained on another one.
pub fn load_intent(encoder: &Embedder, dir: &Path) -> anyhow::Result<crate::intent::IntentModel> {
    let mut m = crate::intent::IntentModel::load(dir)
        .with_context(|| format!("{} is not an intent model directory", dir.display()))?;
    m.check_encoder(encoder.manifest()).with_context(|| {
        format!(
            "intent model {} cannot serve with the serving encoder {}: train it again with `kefu train intent --encoder DIR`, or activate its encoder first",
            dir.display(),
            encoder.version()
        )
    })?;
    m.attach_encoder(encoder.dir())
        .with_context(|| format!("attaching the fine-tuned layers of {}", dir.display()))?;
    Ok(m)
}

/// `kefu eval intent`'s measures of `m` on the golden set.
pub fn intent_scores(
    encoder: &Embedder,
    m: &crate::intent::IntentModel,
    golden: &IntentGolden,
) -> anyhow::Result<(
    crate::intent::eval::IntentReport,
    crate::intent::eval::Details,
)> {
    let texts: Vec<String> = golden.rows.iter().map(|r| r.text.clone()).collect();
    let gold: Vec<String> = golden.rows.iter().map(|r| r.label.clone()).collect();
    let stop = crate::eval::interrupt_flag();
    let x = m.vectors(encoder, &texts, None, "golden examples", Some(&stop))?;
    let (mut r, d) =
        crate::intent::eval::evaluate(m, &x, &texts, &gold, m.card.calibration.oos_threshold);
    r.data = golden.source.clone();
    r.model = m.version().to_string();
    Ok((r, d))
}

/// The intent gate: accuracy, macro F1 and (when the set has out-of-scope rows) out-of-scope
/// recall of the candidate against the serving model, on the same golden set.
pub fn intent(
    encoder: &Embedder,
    serving: Option<&crate::intent::IntentModel>,
    candidate: &crate::intent::IntentModel,
    golden: &IntentGolden,
    max_drop: f64,
) -> anyhow::Result<GateReport> {
    let started = Instant::now();
    check_max_drop(max_drop)?;
    let (c, _) = intent_scores(encoder, candidate, golden)?;
    let s = serving
        .map(|m| intent_scores(encoder, m, golden).map(|(r, _)| r))
        .transpose()?;
    let mut pairs = vec![
        (
            "intent.accuracy",
            c.accuracy,
            s.as_ref().map(|s| s.accuracy),
        ),
        (
            "intent.macro_f1",
            c.macro_f1,
            s.as_ref().map(|s| s.macro_f1),
        ),
    ];
    if let Some(r) = c.oos_recall {
        pairs.push((
            "intent.oos_recall",
            r,
            s.as_ref().map(|s| s.oos_recall.unwrap_or(0.0)),
        ));
    }
    let of = |m: &crate::intent::IntentModel| {
        m.origin.clone().unwrap_or(ModelRef {
            path: String::new(),
            version: m.version().to_string(),
        })
    };
    Ok(report_of(
        of(candidate),
        serving.map(of),
        checks_of(&pairs, max_drop),
        max_drop,
        started,
    ))
}

// ---- the recommender ----

/// The interactions the recommender is gated (and compared) on: each customer's last one is
/// held out and must be found in the top 10 of what came before.
pub struct RecommendGolden {
    pub source: String,
    pub log: Vec<crate::recommend::data::Interaction>,
}

/// `given`, else `model.gate.recommend`, else the built-in demo shop's interactions.
pub fn recommend_golden(cfg: &Config, given: Option<&Path>) -> anyhow::Result<RecommendGolden> {
    if let Some(p) = given.or(cfg.model.gate.recommend.as_deref()) {
        return Ok(RecommendGolden {
            source: p.display().to_string(),
            log: crate::recommend::data::read_interactions(p)?,
        });
    }
    let name = "built-in datasets/demo/recommend/interactions.csv";
    Ok(RecommendGolden {
        source: name.into(),
        log: crate::recommend::data::parse_interactions(
            crate::recommend::serving::DEMO_INTERACTIONS.as_bytes(),
            Path::new(name),
        )?,
    })
}

/// Top-10 measures of a recommender on a golden set, overall and by how long the customers'
/// histories are.
#[derive(Debug, Clone, Serialize)]
pub struct RecommendScores {
    pub users: usize,
    pub hr_at_10: f64,
    pub ndcg_at_10: f64,
    pub recall_at_10: f64,
    /// `1-2`, `3-5`, `6-10`, `11+` events before the held-out one: customers and NDCG@10.
    pub segments: Vec<(String, usize, f64)>,
}

/// The collaborative model's top 10 for every customer with at least two interactions (the
/// scores `/v1/recommend` blends for known customers, computed by fold-in from the history).
pub fn recommend_scores(
    m: &crate::recommend::model::RecommendModel,
    golden: &RecommendGolden,
) -> RecommendScores {
    use crate::recommend::data::{Histories, Split, split};
    let h = Histories::build(&golden.log, &[]);
    let index: std::collections::HashMap<&str, u32> = m
        .card
        .items
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i as u32))
        .collect();
    let n = m.card.items.len();
    let to_model = |i: u32| index.get(h.items[i as usize].as_str()).copied();
    let (train, test) = split(&h.seqs, Split::Last);
    let mut seqs = Vec::new();
    let mut held = Vec::new();
    let mut lengths = Vec::new();
    for (t, x) in train.iter().zip(&test) {
        if t.is_empty() {
            continue;
        }
        let history: Vec<_> = t
            .iter()
            .filter_map(|&(i, r, ts)| to_model(i).map(|i| (i, r, ts)))
            .collect();
        // An item the model does not know can never be recommended: a miss, not a skip.
        held.push(
            x.iter()
                .map(|&i| to_model(i).unwrap_or(n as u32))
                .collect::<Vec<u32>>(),
        );
        seqs.push(history);
        lengths.push(t.len());
    }
    let rank = |u: usize| {
        let seen: Vec<u32> = seqs[u].iter().map(|e| e.0).collect();
        crate::recommend::metrics::top_k(&m.cf_scores(&seqs[u]), &seen, 10)
    };
    let all = crate::recommend::metrics::evaluate(n + 1, &held, rank);
    let buckets = [
        ("1-2", 1, 2),
        ("3-5", 3, 5),
        ("6-10", 6, 10),
        ("11+", 11, usize::MAX),
    ];
    let segments = buckets
        .iter()
        .filter_map(|&(label, lo, hi)| {
            let users: Vec<usize> = (0..seqs.len())
                .filter(|&u| (lo..=hi).contains(&lengths[u]))
                .collect();
            if users.is_empty() {
                return None;
            }
            let test: Vec<Vec<u32>> = users.iter().map(|&u| held[u].clone()).collect();
            let r = crate::recommend::metrics::evaluate(n + 1, &test, |k| rank(users[k]));
            Some((label.to_string(), r.users, r.ndcg_at_10))
        })
        .collect();
    RecommendScores {
        users: all.users,
        hr_at_10: all.hr_at_10,
        ndcg_at_10: all.ndcg_at_10,
        recall_at_10: all.recall_at_10,
        segments,
    }
}

/// The recommender gate: HR@10 and NDCG@10 of the candidate against the serving model on the
/// same golden set (`serving` None: the service has no collaborative model yet).
pub fn recommend(
    serving: Option<(&crate::recommend::model::RecommendModel, ModelRef)>,
    candidate: (&crate::recommend::model::RecommendModel, ModelRef),
    golden: &RecommendGolden,
    max_drop: f64,
) -> anyhow::Result<GateReport> {
    let started = Instant::now();
    check_max_drop(max_drop)?;
    let c = recommend_scores(candidate.0, golden);
    anyhow::ensure!(
        c.users > 0,
        "{}: no customer has two interactions, so nothing can be held out",
        golden.source
    );
    let s = serving.as_ref().map(|(m, _)| recommend_scores(m, golden));
    let pairs = [
        (
            "recommend.hr_at_10",
            c.hr_at_10,
            s.as_ref().map(|s| s.hr_at_10),
        ),
        (
            "recommend.ndcg_at_10",
            c.ndcg_at_10,
            s.as_ref().map(|s| s.ndcg_at_10),
        ),
    ];
    Ok(report_of(
        candidate.1,
        serving.map(|(_, r)| r),
        checks_of(&pairs, max_drop),
        max_drop,
        started,
    ))
}
