//! `kefu eval faq`: retrieval quality and decision quality of the matcher on a KB file and
//! labelled queries (the shared `faq` format; an empty `gold` marks a question the KB cannot
//! answer), with the plain dense baseline measured in the same run. Builds its own index with
//! the serving code; optionally calibrates weights and thresholds, re-runs the queries with
//! typos, and writes a report.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::report;
use crate::core::matching::{self, Current, MatchOptions};
use crate::embed::Embedder;
use crate::kb::import::{self, Format};
use crate::matcher::{Calibration, Candidate, Decision, FusionWeights, IndexOptions, KbIndex};

#[derive(Debug, Clone, Deserialize)]
pub struct Query {
    pub query: String,
    #[serde(default)]
    pub gold: Vec<String>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Retrieval {
    pub top1: f64,
    pub recall_at_5: f64,
    pub mrr_at_10: f64,
}

/// How the decisions (answer / clarify / no_answer) came out.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Decisions {
    /// Share of all queries answered directly.
    pub answer_rate: f64,
    /// Of the direct answers, the share that were right (an answerable query, top-1 in gold).
    pub answer_precision: f64,
    pub clarify_rate: f64,
    /// Of the clarifications, the share whose options held a gold entry.
    pub clarify_hit_rate: f64,
    pub no_answer_rate: f64,
    /// Of the no_answer decisions, the share on unanswerable queries (empty gold).
    pub no_answer_precision: f64,
    /// Of the unanswerable queries, the share that got no_answer. Ratios with nothing to
    /// divide by (no answers given, no unanswerable queries) are null in JSON.
    pub no_answer_recall: f64,
    pub answered: usize,
    pub answered_wrong: usize,
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
    /// Queries with an empty gold (should get no_answer).
    pub out_of_scope: usize,
    pub top1: f64,
    pub recall_at_5: f64,
    pub mrr_at_10: f64,
    pub no_answer_precision: f64,
    pub no_answer_recall: f64,
    pub decisions: Decisions,
    /// The same queries with dense cosine alone (no lexical or fuzzy signal).
    pub dense_baseline: Retrieval,
    /// The weights and thresholds these numbers were measured with.
    pub calibration: Calibration,
    /// `config`, `file` or `calibrated` (fitted on these queries by `--calibrate`).
    pub calibration_source: String,
    /// With `--calibrate`: 2-fold cross-validation (calibrated on one half of the queries,
    /// measured on the other), the honest estimate for unseen queries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration_cv: Option<CrossValidated>,
    /// With `--perturb typo`: the metrics above are for the perturbed queries; these are
    /// the clean ones' and the share of clean top-1 kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub perturb: Option<PerturbReport>,
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
pub struct CrossValidated {
    pub retrieval: Retrieval,
    pub decisions: Decisions,
}

#[derive(Debug, Serialize)]
pub struct PerturbReport {
    pub kind: String,
    pub seed: u64,
    pub clean_top1: f64,
    pub clean_recall_at_5: f64,
    pub clean_mrr_at_10: f64,
    /// Perturbed top-1 over clean top-1.
    pub top1_retention: f64,
    /// Queries the perturbation changed.
    pub changed: usize,
}

#[derive(Debug, Serialize)]
pub struct SweepPoint {
    pub lexical: f32,
    pub fuzzy: f32,
    pub answer: f32,
    pub top1: f64,
    pub mrr_at_10: f64,
}

/// Lexical and fuzzy weights tried by `--sweep` and `--calibrate`.
pub const SWEEP: &[f32] = &[0.0, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2];
/// Answer weights tried by `--sweep` and `--calibrate`.
pub const ANSWER_SWEEP: &[f32] = &[0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0];
/// Answer margins tried by `--calibrate`.
const MARGINS: &[f32] = &[0.0, 0.005, 0.01, 0.02, 0.03, 0.04, 0.05];
/// Out-of-scope margins tried by `--calibrate` (with out-of-scope examples), largest first:
/// of margins answering as many queries, the largest is kept.
const OUT_OF_SCOPE_MARGINS: &[f32] = &[
    0.12, 0.1, 0.09, 0.08, 0.07, 0.06, 0.05, 0.04, 0.03, 0.02, 0.01, 0.0,
];
/// Fewest direct answers a calibrated threshold may rest on.
const MIN_ANSWERED: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Perturb {
    /// Dropped, swapped and homophone characters (Chinese); keyboard slips (English).
    Typo,
}

/// What `run` does beyond plain measuring.
pub struct FaqOptions {
    pub calibration: Calibration,
    pub calibration_source: String,
    pub calibrate: bool,
    /// Calibrate thresholds only, keeping the given weights.
    pub fixed_weights: bool,
    /// Precision the calibrated answer threshold must reach.
    pub target_precision: f64,
    pub perturb: Option<Perturb>,
    pub seed: u64,
    pub sweep: bool,
    pub report: Option<PathBuf>,
    pub index: IndexOptions,
    /// Out-of-scope examples indexed with the KB (`/v1/out-of-scope`).
    pub out_of_scope: Vec<String>,
    /// Knowledge documents matched as passages beside the entries (a data directory's).
    pub documents: Vec<crate::kb::Document>,
}

pub fn read_queries(path: &Path, limit: Option<usize>) -> anyhow::Result<Vec<Query>> {
    let rows = super::read_jsonl(path, limit, r#"{"query", "gold": [ids]}"#)?;
    Ok(rows.into_iter().map(|(_, q)| q).collect())
}

/// Rows labelled `oos` of an intent file (`{"text", "label"}`) as unanswerable queries; with
/// `limit`, that many spread evenly over the file.
pub fn read_oos(path: &Path, limit: Option<usize>) -> anyhow::Result<Vec<Query>> {
    #[derive(Deserialize)]
    struct Row {
        text: String,
        label: String,
    }
    let rows: Vec<(usize, Row)> = super::read_jsonl(path, None, r#"{"text", "label"}"#)?;
    let oos: Vec<String> = rows
        .into_iter()
        .filter(|(_, r)| r.label == "oos")
        .map(|(_, r)| r.text)
        .collect();
    anyhow::ensure!(
        !oos.is_empty(),
        "{} has no rows labelled \"oos\"",
        path.display()
    );
    let keep = limit.unwrap_or(oos.len()).min(oos.len()).max(1);
    let step = oos.len() as f64 / keep as f64;
    Ok((0..keep)
        .map(|i| Query {
            query: oos[(i as f64 * step) as usize].clone(),
            gold: vec![],
        })
        .collect())
}

/// What `--with-feedback` did with the labelled questions of a data directory.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FeedbackQueries {
    /// Questions with a right entry (a question labelled more than once counts once, with its
    /// newest entry).
    pub labelled: usize,
    /// Added as answerable queries with that entry as gold.
    pub added: usize,
    /// Already a query with that entry among its gold.
    pub duplicates: usize,
    /// Already a query with other gold: the queries file is kept.
    pub conflicts: usize,
    /// A question or similar question of an entry already (as the draft of a knowledge gap
    /// copies its wordings): the KB matches those by themselves, which says nothing about the
    /// thresholds for new wordings.
    pub kb_texts: usize,
    /// Entries the KB lacks (removed since, or another KB's), with how many questions named each.
    pub unknown_entries: std::collections::BTreeMap<String, usize>,
    /// Disabled entries (a draft not yet answered), never answered, so left out until enabled.
    pub disabled_entries: std::collections::BTreeMap<String, usize>,
}

/// Adds labelled questions (`feedback`, oldest first, each with its right entry as its only
/// gold) to `queries` as answerable queries: the newest entry of each question, when `entries`
/// has it enabled and the question is neither a query already nor a text of the KB. Questions
/// are compared as the encoder sees them (NFKC, whitespace).
pub fn add_feedback(
    queries: &mut Vec<Query>,
    feedback: &[Query],
    entries: &[crate::kb::FaqEntry],
) -> FeedbackQueries {
    use std::collections::HashMap;
    let key = |t: &str| crate::embed::normalize(t);
    let enabled: HashMap<&str, bool> = entries.iter().map(|e| (e.id.as_str(), e.enabled)).collect();
    let mut order: Vec<String> = Vec::new();
    let mut newest: HashMap<String, (&str, &str)> = HashMap::new();
    for q in feedback {
        let (k, Some(id)) = (key(&q.query), q.gold.first().map(|g| g.trim())) else {
            continue;
        };
        if k.is_empty() || id.is_empty() {
            continue;
        }
        if newest.insert(k.clone(), (q.query.trim(), id)).is_none() {
            order.push(k);
        }
    }
    let kb_texts: HashSet<String> = entries
        .iter()
        .flat_map(|e| std::iter::once(&e.question).chain(&e.similar))
        .map(|t| key(t))
        .collect();
    let known: HashMap<String, usize> = queries
        .iter()
        .enumerate()
        .map(|(i, q)| (key(&q.query), i))
        .collect();
    let mut r = FeedbackQueries {
        labelled: order.len(),
        ..Default::default()
    };
    for k in order {
        let (text, id) = newest[&k];
        match enabled.get(id) {
            None => *r.unknown_entries.entry(id.to_string()).or_default() += 1,
            Some(false) => *r.disabled_entries.entry(id.to_string()).or_default() += 1,
            Some(true) => match known.get(&k) {
                Some(&i) if queries[i].gold.iter().any(|g| g == id) => r.duplicates += 1,
                Some(_) => r.conflicts += 1,
                None if kb_texts.contains(&k) => r.kb_texts += 1,
                None => {
                    queries.push(Query {
                        query: text.to_string(),
                        gold: vec![id.to_string()],
                    });
                    r.added += 1;
                }
            },
        }
    }
    r
}

/// A KB file to evaluate on. Public datasets carry stray control characters (bq_dev has
/// backspaces in three questions) that the served KB refuses: evaluation drops them, says how
/// many, and reads the rest like an import.
pub fn read_kb(path: &Path) -> anyhow::Result<Vec<crate::kb::FaqEntry>> {
    let raw =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let text: String = raw
        .chars()
        .filter(|c| crate::text::check::allowed(*c, true))
        .collect();
    let dropped = raw.chars().count() - text.chars().count();
    if dropped > 0 {
        tracing::warn!(
            dropped,
            file = %path.display(),
            "dropped control and bidirectional-override characters the KB would refuse"
        );
    }
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

/// One query's candidates with every signal, and what is right for it.
struct Scored {
    /// Entry index → whether it is gold; empty gold = unanswerable.
    gold: HashSet<usize>,
    answerable: bool,
    /// The query as the pipeline scored it, its signals narrowed to the candidates it admits
    /// (as `/v1/match` would, with the KB file as the store), before fusion: fused again for
    /// every weighting tried.
    served: matching::Scored,
    /// Signals of the uncorrected query (for the plain dense baseline), when corrected.
    raw: Option<Vec<Candidate>>,
}

impl Scored {
    fn ranked(&self, w: FusionWeights, k: usize) -> Vec<Candidate> {
        matching::rank(self.served.signals.clone(), w, k)
    }
}

#[derive(Default)]
struct Acc {
    n: usize,
    top1: usize,
    r5: usize,
    mrr: f64,
}

impl Acc {
    fn add(&mut self, ranked: &[Candidate], gold: &HashSet<usize>) {
        self.n += 1;
        if let Some(r) = ranked.iter().take(10).position(|c| gold.contains(&c.entry)) {
            if r == 0 {
                self.top1 += 1;
            }
            if r < 5 {
                self.r5 += 1;
            }
            self.mrr += 1.0 / (r + 1) as f64;
        }
    }
    fn finish(&self) -> Retrieval {
        let n = self.n.max(1) as f64;
        Retrieval {
            top1: self.top1 as f64 / n,
            recall_at_5: self.r5 as f64 / n,
            mrr_at_10: self.mrr / n,
        }
    }
}

/// Exact cosine alone on the query as typed: no lexical signal, no correction, no calibration.
fn dense_baseline(scored: &[&Scored]) -> Retrieval {
    let w = FusionWeights {
        lexical: 0.0,
        fuzzy: 0.0,
        answer: 0.0,
    };
    let mut acc = Acc::default();
    for s in scored.iter().filter(|s| s.answerable) {
        let signals = s.raw.clone().unwrap_or_else(|| s.served.signals.clone());
        acc.add(&matching::rank(signals, w, 10), &s.gold);
    }
    acc.finish()
}

fn retrieval(scored: &[&Scored], w: FusionWeights) -> Retrieval {
    let mut acc = Acc::default();
    for s in scored.iter().filter(|s| s.answerable) {
        acc.add(&s.ranked(w, 10), &s.gold);
    }
    acc.finish()
}

/// The facts about one query that decisions depend on, under fixed weights.
struct Outcome {
    s1: f32,
    s2: Option<f32>,
    answerable: bool,
    top1_right: bool,
    /// A gold entry among the first three (the options a clarification shows).
    top3_hit: bool,
    /// The first entry's dense cosine minus the nearest out-of-scope example's.
    gap: Option<f32>,
}

fn outcomes(scored: &[&Scored], w: FusionWeights) -> Vec<Outcome> {
    scored
        .iter()
        .map(|s| {
            let r = s.ranked(w, 3);
            Outcome {
                s1: r.first().map_or(0.0, |c| c.score),
                s2: r.get(1).map(|c| c.score),
                answerable: s.answerable,
                top1_right: r.first().is_some_and(|c| s.gold.contains(&c.entry)),
                top3_hit: r.iter().any(|c| s.gold.contains(&c.entry)),
                gap: matching::out_of_scope_gap(&r, s.served.out_of_scope),
            }
        })
        .collect()
}

fn decisions(out: &[Outcome], c: &Calibration) -> Decisions {
    tally(out.iter().map(|o| (o, c)))
}

/// Decisions over outcomes, each under its own calibration.
fn tally<'a>(items: impl Iterator<Item = (&'a Outcome, &'a Calibration)>) -> Decisions {
    let (mut n, mut oos) = (0, 0);
    let (mut ans, mut ans_ok, mut cla, mut cla_ok, mut no, mut no_ok) = (0, 0, 0, 0, 0, 0);
    for (o, c) in items {
        n += 1;
        oos += !o.answerable as usize;
        let scores: Vec<f32> = std::iter::once(o.s1).chain(o.s2).collect();
        match c.decide(&scores, o.gap) {
            Decision::Answer => {
                ans += 1;
                ans_ok += o.top1_right as usize;
            }
            Decision::Clarify => {
                cla += 1;
                cla_ok += o.top3_hit as usize;
            }
            Decision::NoAnswer => {
                no += 1;
                no_ok += !o.answerable as usize;
            }
        }
    }
    // Undefined ratios (nothing to divide by) are NaN, written as JSON null.
    let ratio = |a: usize, b: usize| {
        if b == 0 {
            f64::NAN
        } else {
            a as f64 / b as f64
        }
    };
    Decisions {
        answer_rate: ratio(ans, n),
        answer_precision: ratio(ans_ok, ans),
        clarify_rate: ratio(cla, n),
        clarify_hit_rate: ratio(cla_ok, cla),
        no_answer_rate: ratio(no, n),
        no_answer_precision: ratio(no_ok, no),
        no_answer_recall: ratio(no_ok, oos),
        answered: ans,
        answered_wrong: ans - ans_ok,
    }
}

/// Fits weights (best top-1, then MRR@10) and thresholds on `scored`: the answer threshold and
/// margin answering the most queries with precision ≥ `target`; the clarify threshold separating queries with a gold entry among the options
/// from the rest with the best accuracy.
fn fit(scored: &[&Scored], start: &Calibration, target: f64, fixed_weights: bool) -> Calibration {
    let mut best = (start.weights(), retrieval(scored, start.weights()));
    for w in sweep_weights().filter(|_| !fixed_weights) {
        let r = retrieval(scored, w);
        if (r.top1, r.mrr_at_10) > (best.1.top1, best.1.mrr_at_10) {
            best = (w, r);
        }
    }
    let w = best.0;
    let out = outcomes(scored, w);
    // (answered, margin, out-of-scope margin, threshold)
    let mut choice: Option<(usize, f32, f32, f32)> = None;
    let gates: &[f32] = match out.iter().any(|o| o.gap.is_some()) {
        true => OUT_OF_SCOPE_MARGINS,
        false => &[],
    };
    let tried = (gates.iter().map(|&g| Some(g)))
        .chain(gates.is_empty().then_some(None))
        .flat_map(|g| MARGINS.iter().map(move |&m| (m, g)));
    for (m, g) in tried {
        let mut eligible: Vec<(f32, bool)> = out
            .iter()
            .filter(|o| o.s2.is_none_or(|s2| o.s1 - s2 >= m))
            .filter(|o| g.is_none_or(|g| o.gap.is_none_or(|x| x >= g)))
            .map(|o| (o.s1, o.top1_right))
            .collect();
        eligible.sort_by(|a, b| b.0.total_cmp(&a.0));
        // The lowest threshold whose answered set keeps precision ≥ target, with enough
        // answers behind the estimate.
        let (mut right, mut t, mut answered) = (0usize, None, 0usize);
        for (i, &(s, ok)) in eligible.iter().enumerate() {
            right += ok as usize;
            let n = i + 1;
            let tie_next = eligible.get(i + 1).is_some_and(|x| x.0 == s);
            if !tie_next && n >= MIN_ANSWERED && right as f64 / n as f64 >= target {
                t = Some(s);
                answered = n;
            }
        }
        if let Some(t) = t
            && choice.is_none_or(|c| answered > c.0)
        {
            choice = Some((answered, m, g.unwrap_or(start.out_of_scope_margin), t));
        }
    }
    let (answer_margin, out_of_scope_margin, answer_threshold) = match choice {
        Some((_, m, g, t)) => (m, g, t),
        // Nothing reaches the target: never answer directly.
        None => (start.answer_margin, start.out_of_scope_margin, 1.0),
    };
    let s1: Vec<f32> = out.iter().map(|o| o.s1).collect();
    let hit: Vec<bool> = out.iter().map(|o| o.top3_hit).collect();
    let clarify = if hit.iter().all(|&h| h) || !hit.iter().any(|&h| h) {
        start.clarify_threshold
    } else {
        super::best_threshold(&s1, &hit).0
    };
    Calibration {
        lexical_weight: w.lexical,
        fuzzy_weight: w.fuzzy,
        answer_weight: w.answer,
        answer_threshold,
        answer_margin,
        clarify_threshold: clarify.min(answer_threshold).clamp(0.0, 1.0),
        out_of_scope_margin,
    }
}

/// Every weighting `--sweep` and `--calibrate` try.
fn sweep_weights() -> impl Iterator<Item = FusionWeights> {
    ANSWER_SWEEP.iter().flat_map(|&answer| {
        SWEEP.iter().flat_map(move |&lexical| {
            SWEEP.iter().map(move |&fuzzy| FusionWeights {
                lexical,
                fuzzy,
                answer,
            })
        })
    })
}

/// 2-fold cross-validation: fit on even queries, measure on odd, and back; decisions and
/// retrieval pooled over both held-out halves.
fn cross_validate(
    scored: &[&Scored],
    start: &Calibration,
    target: f64,
    fixed_weights: bool,
) -> CrossValidated {
    let even: Vec<&Scored> = scored.iter().step_by(2).copied().collect();
    let odd: Vec<&Scored> = scored.iter().skip(1).step_by(2).copied().collect();
    let mut acc = Acc::default();
    let halves: Vec<(Vec<Outcome>, Calibration)> = [(&even, &odd), (&odd, &even)]
        .into_iter()
        .map(|(fit_on, test_on)| {
            let c = fit(fit_on, start, target, fixed_weights);
            for s in test_on.iter().filter(|s| s.answerable) {
                acc.add(&s.ranked(c.weights(), 10), &s.gold);
            }
            (outcomes(test_on, c.weights()), c)
        })
        .collect();
    let d = tally(
        halves
            .iter()
            .flat_map(|(out, c)| out.iter().map(move |o| (o, c))),
    );
    CrossValidated {
        retrieval: acc.finish(),
        decisions: d,
    }
}

fn bar(msg: &'static str) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(0).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:40} {pos}/{len} ({per_sec}, eta {eta})",
        )
        .expect("template"),
    );
    b.set_message(msg);
    b
}

/// Encodes and scores every query; stops early (returning what it has) on Ctrl-C.
fn score_all(
    e: &Embedder,
    index: &KbIndex,
    documents: &[crate::kb::Document],
    queries: &[Query],
    texts: &[String],
    times: &mut Vec<f64>,
) -> anyhow::Result<(Vec<Scored>, bool)> {
    let stop = super::interrupt_flag();
    let current = &Current::of_index(index, documents);
    let no_filters = MatchOptions::default().filters;
    let today = crate::kb::entry::today();
    let ids: std::collections::HashMap<&str, usize> = index
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.id.as_str(), i))
        .collect();
    let b = bar("matching queries");
    b.set_length(queries.len() as u64);
    let mut out = Vec::with_capacity(queries.len());
    for (q, text) in queries.iter().zip(texts) {
        if stop.load(Ordering::SeqCst) {
            b.finish_and_clear();
            return Ok((out, true));
        }
        let t = Instant::now();
        let corrected = matching::prepare(index, text);
        let used = corrected.clone().unwrap_or_else(|| text.clone());
        let v = e.embed_blocking(std::slice::from_ref(&used))?;
        let mut scored = matching::score(index, &used, &v[0].vector, corrected);
        scored.signals = matching::admit(index, scored.signals, current, no_filters, &today);
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        // The plain dense baseline sees the query as typed.
        let raw = match &scored.corrected {
            Some(_) => {
                let v = e.embed_blocking(std::slice::from_ref(text))?;
                let raw = matching::score(index, text, &v[0].vector, None);
                Some(matching::admit(
                    index,
                    raw.signals,
                    current,
                    no_filters,
                    &today,
                ))
            }
            None => None,
        };
        out.push(Scored {
            gold: q
                .gold
                .iter()
                .filter_map(|g| ids.get(g.as_str()).copied())
                .collect(),
            answerable: !q.gold.is_empty(),
            served: scored,
            raw,
        });
        b.inc(1);
    }
    b.finish_and_clear();
    Ok((out, false))
}

pub fn run(
    e: &Embedder,
    kb_path: &Path,
    queries_path: &Path,
    entries: Vec<crate::kb::FaqEntry>,
    queries: Vec<Query>,
    opts: &FaqOptions,
) -> anyhow::Result<FaqReport> {
    let started = Instant::now();
    let b = bar("indexing KB questions");
    let index = KbIndex::build(
        entries,
        &opts.documents,
        &opts.out_of_scope,
        e,
        None,
        &opts.index,
        |done, total| {
            b.set_length(total as u64);
            b.set_position(done as u64);
        },
    )?;
    b.finish_and_clear();
    let index_seconds = started.elapsed().as_secs_f64();

    let clean: Vec<String> = queries.iter().map(|q| q.query.clone()).collect();
    let asked: Vec<String> = match opts.perturb {
        Some(Perturb::Typo) => clean
            .iter()
            .enumerate()
            .map(|(i, q)| crate::text::typo::perturb(q, opts.seed.wrapping_add(i as u64)))
            .collect(),
        None => clean.clone(),
    };
    let mut times = Vec::new();
    let (scored, mut interrupted) =
        score_all(e, &index, &opts.documents, &queries, &asked, &mut times)?;
    let all: Vec<&Scored> = scored.iter().collect();

    let (calibration, calibration_source, calibration_cv) = if opts.calibrate && !interrupted {
        eprintln!(
            "calibrating weights and thresholds on {} queries",
            all.len()
        );
        let c = fit(
            &all,
            &opts.calibration,
            opts.target_precision,
            opts.fixed_weights,
        );
        let cv = cross_validate(
            &all,
            &opts.calibration,
            opts.target_precision,
            opts.fixed_weights,
        );
        (c, "calibrated".to_string(), Some(cv))
    } else {
        (opts.calibration, opts.calibration_source.clone(), None)
    };
    let w = calibration.weights();
    let r = retrieval(&all, w);
    let dense = dense_baseline(&all);
    let out = outcomes(&all, w);
    let d = decisions(&out, &calibration);

    let perturb = match opts.perturb {
        Some(kind) if !interrupted => {
            let (clean_scored, stopped) = score_all(
                e,
                &index,
                &opts.documents,
                &queries,
                &clean,
                &mut Vec::new(),
            )?;
            interrupted |= stopped;
            let cr = retrieval(&clean_scored.iter().collect::<Vec<_>>(), w);
            Some(PerturbReport {
                kind: format!("{kind:?}").to_lowercase(),
                seed: opts.seed,
                clean_top1: cr.top1,
                clean_recall_at_5: cr.recall_at_5,
                clean_mrr_at_10: cr.mrr_at_10,
                top1_retention: if cr.top1 > 0.0 { r.top1 / cr.top1 } else { 0.0 },
                changed: clean.iter().zip(&asked).filter(|(a, b)| a != b).count(),
            })
        }
        _ => None,
    };

    let mut sweep = Vec::new();
    for w in sweep_weights().filter(|_| opts.sweep) {
        let p = retrieval(&all, w);
        eprintln!(
            "sweep lexical {:.2} fuzzy {:.2} answer {:.1}: top1 {:.4} MRR@10 {:.4}",
            w.lexical, w.fuzzy, w.answer, p.top1, p.mrr_at_10
        );
        sweep.push(SweepPoint {
            lexical: w.lexical,
            fuzzy: w.fuzzy,
            answer: w.answer,
            top1: p.top1,
            mrr_at_10: p.mrr_at_10,
        });
    }
    times.sort_by(|a, b| a.total_cmp(b));
    let n = scored.iter().filter(|s| s.answerable).count();
    let rep = FaqReport {
        kb: kb_path.display().to_string(),
        queries: queries_path.display().to_string(),
        model: e.version().to_string(),
        entries: index.entries.len(),
        texts: index.texts.len(),
        n,
        out_of_scope: scored.len() - n,
        top1: r.top1,
        recall_at_5: r.recall_at_5,
        mrr_at_10: r.mrr_at_10,
        no_answer_precision: d.no_answer_precision,
        no_answer_recall: d.no_answer_recall,
        decisions: d,
        dense_baseline: dense,
        calibration,
        calibration_source,
        calibration_cv,
        perturb,
        p50_ms: super::percentile(&times, 0.5),
        p99_ms: super::percentile(&times, 0.99),
        index_seconds,
        interrupted,
        sweep,
    };
    if let Some(dir) = &opts.report {
        write_report(
            dir,
            &rep,
            &index,
            &opts.documents,
            &queries,
            &asked,
            &all,
            &out,
        )?;
    }
    Ok(rep)
}

#[derive(Serialize)]
struct QueryRow<'a> {
    query: &'a str,
    asked: &'a str,
    /// The asked text after spelling correction (empty: unchanged).
    corrected: &'a str,
    gold: String,
    decision: &'static str,
    top1: String,
    top1_question: String,
    score: f32,
    dense: f32,
    lexical: f32,
    fuzzy: f32,
    /// Cosine between the query and the first entry's answer.
    answer: f32,
    second_score: Option<f32>,
    /// Cosine to the nearest out-of-scope example (empty: no examples).
    out_of_scope: Option<f32>,
    /// 1-based rank of the first gold entry in the top 10 (empty: not found or no gold).
    gold_rank: Option<usize>,
    correct: bool,
}

#[derive(Serialize)]
struct CurveRow {
    threshold: f64,
    answer_rate: f64,
    answer_precision: f64,
    no_answer_recall: f64,
    in_scope_answered: f64,
}

#[allow(clippy::too_many_arguments)]
fn write_report(
    dir: &Path,
    rep: &FaqReport,
    index: &KbIndex,
    documents: &[crate::kb::Document],
    queries: &[Query],
    asked: &[String],
    scored: &[&Scored],
    out: &[Outcome],
) -> anyhow::Result<()> {
    report::create_dir(dir)?;
    let cal = &rep.calibration;
    let w = cal.weights();
    let current = Current::of_index(index, documents);
    let mut rows = Vec::new();
    for ((q, a), s) in queries.iter().zip(asked).zip(scored) {
        let r = s.ranked(w, 10);
        let first = r.first();
        // What `/v1/match` would answer: the pipeline's own decision and first match.
        let served = matching::respond(
            index,
            s.served.clone(),
            &current,
            cal,
            &MatchOptions::default(),
        );
        let top = served.matches.first();
        rows.push(QueryRow {
            query: &q.query,
            asked: a,
            corrected: s.served.corrected.as_deref().unwrap_or(""),
            gold: q.gold.join("|"),
            decision: served.decision.as_str(),
            top1: top.map_or(String::new(), |m| m.faq_id.clone()),
            top1_question: top.map_or(String::new(), |m| m.question.clone()),
            score: first.map_or(0.0, |c| c.score),
            dense: first.map_or(0.0, |c| c.dense),
            lexical: first.map_or(0.0, |c| c.lexical),
            fuzzy: first.map_or(0.0, |c| c.fuzzy),
            answer: first.map_or(0.0, |c| c.answer),
            second_score: r.get(1).map(|c| c.score),
            out_of_scope: s.served.out_of_scope,
            gold_rank: r
                .iter()
                .position(|c| s.gold.contains(&c.entry))
                .map(|p| p + 1),
            correct: first.is_some_and(|c| s.gold.contains(&c.entry)),
        });
    }
    report::write_csv(&dir.join("queries.csv"), &rows)?;

    // The answer threshold swept over the observed range, margin and clarify fixed.
    let lo = out.iter().map(|o| o.s1).fold(1.0f32, f32::min).max(0.5) as f64;
    let mut curve = Vec::new();
    let steps = 200;
    for i in 0..=steps {
        let t = lo + (1.0 - lo) * i as f64 / steps as f64;
        let c = Calibration {
            answer_threshold: t as f32,
            clarify_threshold: cal.clarify_threshold.min(t as f32),
            ..*cal
        };
        let d = decisions(out, &c);
        let in_scope = out.iter().filter(|o| o.answerable).count().max(1) as f64;
        curve.push(CurveRow {
            threshold: t,
            answer_rate: d.answer_rate,
            answer_precision: d.answer_precision,
            no_answer_recall: d.no_answer_recall,
            in_scope_answered: (d.answered - d.answered_wrong) as f64 / in_scope,
        });
    }
    report::write_csv(&dir.join("threshold_curve.csv"), &curve)?;
    let series = |name: &str, f: fn(&CurveRow) -> f64| report::Series {
        name: name.to_string(),
        points: curve.iter().map(|r| (r.threshold, f(r))).collect(),
    };
    let mut lines = vec![
        series("answer precision", |r| r.answer_precision),
        series("answer rate (all queries)", |r| r.answer_rate),
        series("answerable queries answered right", |r| r.in_scope_answered),
    ];
    if rep.out_of_scope > 0 {
        lines.push(series("no_answer recall (out of scope)", |r| {
            r.no_answer_recall
        }));
    }
    let label = format!("answer_threshold {:.3}", cal.answer_threshold);
    report::line_plot_svg(
        &dir.join("threshold_curve.svg"),
        &format!("kefu eval faq: {}", rep.kb),
        "answer threshold (fused similarity)",
        "share",
        &lines,
        (lo, 1.0),
        (0.0, 1.0),
        Some((cal.answer_threshold as f64, &label)),
    )?;
    report::write_atomic(&dir.join("summary.json"), &serde_json::to_vec_pretty(rep)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str, gold: &[&str]) -> Query {
        Query {
            query: text.into(),
            gold: gold.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn entry(id: &str, enabled: bool) -> crate::kb::FaqEntry {
        crate::kb::FaqEntry {
            id: id.into(),
            question: format!("question of {id}"),
            similar: vec![],
            answer: "answer".into(),
            answers: Default::default(),
            category: None,
            tags: vec![],
            locale: None,
            enabled,
            valid_from: None,
            valid_to: None,
        }
    }

    #[test]
    fn labelled_questions_become_answerable_queries_of_known_entries() {
        let entries = [
            entry("return", true),
            entry("ship", true),
            entry("draft-7", false),
        ];
        let mut queries = vec![q("怎么退货", &["return"]), q("in stock?", &[])];
        let feedback = [
            q("where is my parcel", &["return"]),
            q("where is  my parcel", &["ship"]), // labelled again: the newest entry wins
            q("怎么退货", &["return"]),          // a query already, same gold
            q("in stock?", &["ship"]),           // a query already, other gold: file kept
            q("can i pay later", &["gone"]),
            q("pay in instalments", &["gone"]),
            q("gift wrapping", &["draft-7"]),
            q("return label", &["return"]),
            q("question  of ship", &["return"]), // a KB text
        ];
        let r = add_feedback(&mut queries, &feedback, &entries);
        assert_eq!(
            queries[2..]
                .iter()
                .map(|x| (x.query.as_str(), x.gold.clone()))
                .collect::<Vec<_>>(),
            vec![
                ("where is  my parcel", vec!["ship".to_string()]),
                ("return label", vec!["return".to_string()]),
            ]
        );
        assert_eq!(
            (r.labelled, r.added, r.duplicates, r.conflicts, r.kb_texts),
            (8, 2, 1, 1, 1)
        );
        assert_eq!(
            r.unknown_entries,
            std::collections::BTreeMap::from([("gone".to_string(), 2)])
        );
        assert_eq!(
            r.disabled_entries,
            std::collections::BTreeMap::from([("draft-7".to_string(), 1)])
        );
    }
}
