//! `kefu eval recommend`: the hold-out protocol over a full ranking of every item. Each
//! method's settings — recency-weighted EASE, implicit ALS, item co-occurrence and
//! time-decayed popularity — are chosen on a validation split carved from the training part
//! the same way as the test split; each is then refitted on the whole training part and scored
//! on the test part once, beside plain popularity. The headline metrics are those of EASE or
//! ALS, whichever did better on validation.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use rayon::prelude::*;
use serde::Serialize;

use super::als::{self, Als, AlsParams};
use super::cooc::{self, Cooc, CoocParams, PopularityParams, decayed_popularity, latest_ts};
use super::data::{Event, Histories, History, Split, split};
use super::ease::{self, Ease, EaseParams};
use super::metrics::{TopK, evaluate, top_k};

/// Settings chosen on validation.
#[derive(Debug, Clone, Serialize)]
pub struct Chosen<P = EaseParams> {
    /// `recency_ease`, `als`, `cooccurrence`, `decayed_popularity` or `popularity`.
    pub method: &'static str,
    pub params: P,
    /// NDCG@10 on the validation split with these parameters.
    pub validation_ndcg_at_10: f64,
    /// Settings tried.
    pub tried: usize,
}

impl<P: Serialize> Chosen<P> {
    /// The same choice with its parameters as JSON (to list different methods together).
    pub fn to_json(&self) -> Chosen<serde_json::Value> {
        Chosen {
            method: self.method,
            params: params_json(&self.params),
            validation_ndcg_at_10: self.validation_ndcg_at_10,
            tried: self.tried,
        }
    }
}

/// Settings as JSON, f32 values written as short as they print (0.02, not 0.0199999…).
pub fn params_json<P: Serialize>(p: &P) -> serde_json::Value {
    serde_json::to_string(p)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or_default()
}

/// One method's settings, validation score and test metrics.
#[derive(Debug, Clone, Serialize)]
pub struct MethodReport {
    pub name: &'static str,
    /// The settings chosen on validation (null for popularity, which has none).
    pub params: serde_json::Value,
    pub validation_ndcg_at_10: f64,
    /// Settings tried on validation.
    pub tried: usize,
    pub test: TopK,
    /// Seconds to fit it on the training part.
    pub train_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecommendReport {
    pub data: String,
    pub split: Split,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    /// The collaborative method with the better validation NDCG@10 (`recency_ease` or `als`);
    /// the metrics below are its test metrics.
    pub method: &'static str,
    pub chosen: Chosen<serde_json::Value>,
    pub hr_at_10: f64,
    pub ndcg_at_10: f64,
    pub ndcg_at_10_se: f64,
    pub recall_at_10: f64,
    pub coverage_at_10: f64,
    pub popularity: TopK,
    /// Seconds to fit the chosen method on the training part.
    pub train_seconds: f64,
    /// Every method evaluated, in the order popularity, decayed_popularity, cooccurrence,
    /// als, recency_ease (those reached before an interrupt).
    pub methods: Vec<MethodReport>,
    pub interrupted: bool,
    pub seconds: f64,
}

/// Items by how many training histories hold them (ties by index).
pub fn popularity(n_items: usize, train: &[History]) -> Vec<f32> {
    let mut counts = vec![0f32; n_items];
    for h in train {
        for &(i, _, _) in h {
            counts[i as usize] += 1.0;
        }
    }
    counts
}

fn seen(h: &[Event]) -> Vec<u32> {
    h.iter().map(|&(i, _, _)| i).collect()
}

/// Every customer's top 10 (empty for those without held-out items), in parallel.
fn rank_all(
    train: &[History],
    test: &[Vec<u32>],
    score: impl Fn(&[Event]) -> Vec<f32> + Sync,
) -> Vec<Vec<u32>> {
    (0..train.len())
        .into_par_iter()
        .map(|u| {
            if test[u].is_empty() {
                vec![]
            } else {
                top_k(&score(&train[u]), &seen(&train[u]), 10)
            }
        })
        .collect()
}

fn metrics(
    n_items: usize,
    train: &[History],
    test: &[Vec<u32>],
    score: impl Fn(&[Event]) -> Vec<f32> + Sync,
) -> TopK {
    let tops = rank_all(train, test, score);
    evaluate(n_items, test, |u| tops[u].clone())
}

/// Keeps the better of `best` and a new setting's validation NDCG (the first on ties).
fn keep_best<P>(
    best: &mut Option<Chosen<P>>,
    method: &'static str,
    params: P,
    ndcg: f64,
    tried: usize,
) {
    if best.as_ref().is_none_or(|b| ndcg > b.validation_ndcg_at_10) {
        *best = Some(Chosen {
            method,
            params,
            validation_ndcg_at_10: ndcg,
            tried,
        });
    }
}

/// Settings [`choose`] tries.
pub fn ease_settings() -> usize {
    ease::LAMBDAS.len() * ease::TAUS.len() * ease::FLOORS.len()
}

/// Settings all the `choose*` functions together try.
pub fn all_settings() -> usize {
    ease_settings()
        + als::GRID.len()
        + cooc::TAUS.len() * cooc::FLOORS.len()
        + cooc::HALF_LIVES_DAYS.len()
}

/// Chooses EASE's λ, τ and the floor on `train` (its own hold-out of the same kind). Each of
/// these functions advances `progress` by one per setting and stops at an interrupt, returning
/// the best so far (None if nothing was tried).
pub fn choose(
    n_items: usize,
    train: &[History],
    how: Split,
    progress: &indicatif::ProgressBar,
) -> Option<Chosen> {
    let stop = crate::eval::interrupt_flag();
    let (fit_part, val) = split(train, how);
    let mut best = None;
    let mut tried = 0;
    for &lambda in ease::LAMBDAS {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let e = Ease::fit(n_items, &fit_part, lambda);
        for &tau in ease::TAUS {
            for &floor in ease::FLOORS {
                if stop.load(Ordering::SeqCst) {
                    return best.map(|b| Chosen { tried, ..b });
                }
                let params = EaseParams { lambda, tau, floor };
                let m = metrics(n_items, &fit_part, &val, |h| e.scores(h, tau, floor));
                tried += 1;
                progress.inc(1);
                keep_best(&mut best, "recency_ease", params, m.ndcg_at_10, tried);
            }
        }
    }
    best.map(|b| Chosen { tried, ..b })
}

/// Chooses among [`als::GRID`] (seed [`als::SEED`]).
pub fn choose_als(
    n_items: usize,
    train: &[History],
    how: Split,
    progress: &indicatif::ProgressBar,
) -> Option<Chosen<AlsParams>> {
    let stop = crate::eval::interrupt_flag();
    let (fit_part, val) = split(train, how);
    let mut best = None;
    let mut tried = 0;
    for &params in als::GRID {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let a = Als::fit(n_items, &fit_part, params, als::SEED);
        let m = metrics(n_items, &fit_part, &val, |h| a.scores(h));
        tried += 1;
        progress.inc(1);
        keep_best(&mut best, "als", params, m.ndcg_at_10, tried);
    }
    best.map(|b| Chosen { tried, ..b })
}

/// Chooses co-occurrence's τ and floor.
pub fn choose_cooc(
    n_items: usize,
    train: &[History],
    how: Split,
    progress: &indicatif::ProgressBar,
) -> Option<Chosen<CoocParams>> {
    let stop = crate::eval::interrupt_flag();
    if stop.load(Ordering::SeqCst) {
        return None;
    }
    let (fit_part, val) = split(train, how);
    let c = Cooc::fit(n_items, &fit_part);
    let mut best = None;
    let mut tried = 0;
    for &tau in cooc::TAUS {
        for &floor in cooc::FLOORS {
            if stop.load(Ordering::SeqCst) {
                return best.map(|b| Chosen { tried, ..b });
            }
            let m = metrics(n_items, &fit_part, &val, |h| c.scores(h, tau, floor));
            tried += 1;
            progress.inc(1);
            keep_best(
                &mut best,
                "cooccurrence",
                CoocParams { tau, floor },
                m.ndcg_at_10,
                tried,
            );
        }
    }
    best.map(|b| Chosen { tried, ..b })
}

/// Chooses the decayed popularity's half-life, `now` being the latest event of the part fitted.
pub fn choose_decayed(
    n_items: usize,
    train: &[History],
    how: Split,
    progress: &indicatif::ProgressBar,
) -> Option<Chosen<PopularityParams>> {
    let stop = crate::eval::interrupt_flag();
    let (fit_part, val) = split(train, how);
    let now = latest_ts(&fit_part);
    let mut best = None;
    let mut tried = 0;
    for &half_life_days in cooc::HALF_LIVES_DAYS {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let pop = decayed_popularity(n_items, &fit_part, now, half_life_days * 86_400.0);
        let m = metrics(n_items, &fit_part, &val, |_| pop.clone());
        tried += 1;
        progress.inc(1);
        keep_best(
            &mut best,
            "decayed_popularity",
            PopularityParams { half_life_days },
            m.ndcg_at_10,
            tried,
        );
    }
    best.map(|b| Chosen { tried, ..b })
}

/// A progress bar over `len` settings (stderr).
fn settings_bar(len: usize, msg: &'static str) -> indicatif::ProgressBar {
    crate::eval::texts_bar(len, msg).with_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} settings (eta {eta})")
            .expect("template"),
    )
}

/// Runs `choose` behind a progress bar.
fn choosing<P>(
    len: usize,
    msg: &'static str,
    choose: impl FnOnce(&indicatif::ProgressBar) -> Option<Chosen<P>>,
) -> Option<Chosen<P>> {
    let bar = settings_bar(len, msg);
    let c = choose(&bar);
    bar.finish_and_clear();
    c
}

/// A method fitted on the training part, its test top 10s and report.
struct Fitted {
    report: MethodReport,
    tops: Vec<Vec<u32>>,
}

fn fitted<P: Serialize>(
    n_items: usize,
    chosen: &Chosen<P>,
    test: &[Vec<u32>],
    train_seconds: f64,
    tops: Vec<Vec<u32>>,
) -> Fitted {
    Fitted {
        report: MethodReport {
            name: chosen.method,
            params: params_json(&chosen.params),
            validation_ndcg_at_10: chosen.validation_ndcg_at_10,
            tried: chosen.tried,
            test: evaluate(n_items, test, |u| tops[u].clone()),
            train_seconds,
        },
        tops,
    }
}

pub fn run(
    data: &Path,
    h: &Histories,
    how: Split,
    interactions: usize,
    report_dir: Option<&Path>,
) -> anyhow::Result<RecommendReport> {
    let started = Instant::now();
    let n = h.items.len();
    let (train, test) = split(&h.seqs, how);
    let ease_chosen = choosing(
        ease_settings(),
        "recency EASE: choosing λ, τ, floor on validation",
        |bar| choose(n, &train, how, bar),
    )
    .ok_or_else(|| anyhow::anyhow!("interrupted before any setting was tried"))?;
    let als_chosen = choosing(als::GRID.len(), "ALS: choosing on validation", |bar| {
        choose_als(n, &train, how, bar)
    });
    let cooc_chosen = choosing(
        cooc::TAUS.len() * cooc::FLOORS.len(),
        "co-occurrence: choosing τ, floor on validation",
        |bar| choose_cooc(n, &train, how, bar),
    );
    let decayed_chosen = choosing(
        cooc::HALF_LIVES_DAYS.len(),
        "decayed popularity: choosing the half-life on validation",
        |bar| choose_decayed(n, &train, how, bar),
    );
    let interrupted = crate::eval::interrupt_flag().load(Ordering::SeqCst);

    // Popularity has no settings; its validation score is for comparison.
    let t = Instant::now();
    let pop = popularity(n, &train);
    let pop_seconds = t.elapsed().as_secs_f64();
    let (fit_part, val) = split(&train, how);
    let pop_val = popularity(n, &fit_part);
    let pop_chosen = Chosen {
        method: "popularity",
        params: serde_json::Value::Null,
        validation_ndcg_at_10: metrics(n, &fit_part, &val, |_| pop_val.clone()).ndcg_at_10,
        tried: 1,
    };
    let mut methods = vec![fitted(
        n,
        &pop_chosen,
        &test,
        pop_seconds,
        rank_all(&train, &test, |_| pop.clone()),
    )];
    if let Some(c) = &decayed_chosen {
        let t = Instant::now();
        let now = latest_ts(&train);
        let p = decayed_popularity(n, &train, now, c.params.half_life_days * 86_400.0);
        let secs = t.elapsed().as_secs_f64();
        methods.push(fitted(
            n,
            c,
            &test,
            secs,
            rank_all(&train, &test, |_| p.clone()),
        ));
    }
    if let Some(c) = &cooc_chosen {
        let t = Instant::now();
        let m = Cooc::fit(n, &train);
        let secs = t.elapsed().as_secs_f64();
        let p = c.params;
        let tops = rank_all(&train, &test, |h| m.scores(h, p.tau, p.floor));
        methods.push(fitted(n, c, &test, secs, tops));
    }
    if let Some(c) = &als_chosen {
        let t = Instant::now();
        let m = Als::fit(n, &train, c.params, als::SEED);
        let secs = t.elapsed().as_secs_f64();
        methods.push(fitted(
            n,
            c,
            &test,
            secs,
            rank_all(&train, &test, |h| m.scores(h)),
        ));
    }
    {
        let t = Instant::now();
        let e = Ease::fit(n, &train, ease_chosen.params.lambda);
        let secs = t.elapsed().as_secs_f64();
        let p = ease_chosen.params;
        let tops = rank_all(&train, &test, |h| e.scores(h, p.tau, p.floor));
        methods.push(fitted(n, &ease_chosen, &test, secs, tops));
    }
    let chosen = match &als_chosen {
        Some(a) if a.validation_ndcg_at_10 > ease_chosen.validation_ndcg_at_10 => a.to_json(),
        _ => ease_chosen.to_json(),
    };
    let mut tops = vec![];
    let mut best = None;
    let methods: Vec<MethodReport> = methods
        .into_iter()
        .map(|f| {
            if f.report.name == chosen.method {
                tops = f.tops;
                best = Some(f.report.clone());
            }
            f.report
        })
        .collect();
    let best = best.expect("the chosen method was fitted");
    let m = &best.test;
    let report = RecommendReport {
        data: data.display().to_string(),
        split: how,
        users: h.users.len(),
        items: n,
        interactions,
        method: chosen.method,
        hr_at_10: m.hr_at_10,
        ndcg_at_10: m.ndcg_at_10,
        ndcg_at_10_se: m.ndcg_at_10_se,
        recall_at_10: m.recall_at_10,
        coverage_at_10: m.coverage_at_10,
        popularity: methods[0].test.clone(),
        train_seconds: best.train_seconds,
        chosen,
        methods,
        interrupted,
        seconds: started.elapsed().as_secs_f64(),
    };
    if let Some(dir) = report_dir {
        write_report(dir, &report, h, &test, &tops)?;
    }
    Ok(report)
}

#[derive(Serialize)]
struct CustomerRow<'a> {
    user_id: &'a str,
    held_out: String,
    top_10: String,
    hits: usize,
}

/// `summary.json` (the report) and `per_customer.csv` (held-out items, the top 10, hits).
fn write_report(
    dir: &Path,
    r: &RecommendReport,
    h: &Histories,
    test: &[Vec<u32>],
    tops: &[Vec<u32>],
) -> anyhow::Result<()> {
    use crate::eval::report;
    report::create_dir(dir)?;
    report::write_atomic(
        &dir.join("summary.json"),
        serde_json::to_string_pretty(r)?.as_bytes(),
    )?;
    let ids = |v: &[u32]| {
        v.iter()
            .map(|&i| h.items[i as usize].as_str())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let rows: Vec<CustomerRow> = test
        .iter()
        .enumerate()
        .filter(|(_, t)| !t.is_empty())
        .map(|(u, t)| CustomerRow {
            user_id: &h.users[u],
            held_out: ids(t),
            top_10: ids(&tops[u]),
            hits: tops[u].iter().filter(|i| t.contains(i)).count(),
        })
        .collect();
    report::write_csv(&dir.join("per_customer.csv"), &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recommend::data::{Histories, Interaction};

    fn log(rows: &[(&str, &str, i64)]) -> Vec<Interaction> {
        rows.iter()
            .enumerate()
            .map(|(n, &(u, i, ts))| Interaction {
                user: u.into(),
                item: i.into(),
                rating: 1.0,
                ts,
                line: n + 2,
            })
            .collect()
    }

    #[test]
    fn popularity_baseline_on_a_hand_made_log() {
        // Held out (last): u1 → d, u2 → a, u3 → c. Training popularity: a 2, b 2, c 1, d 0.
        let h = Histories::build(
            &log(&[
                ("u1", "a", 1),
                ("u1", "b", 2),
                ("u1", "d", 3),
                ("u2", "b", 1),
                ("u2", "c", 2),
                ("u2", "a", 3),
                ("u3", "a", 1),
                ("u3", "c", 2),
            ]),
            &[],
        );
        let (train, test) = split(&h.seqs, Split::Last);
        let pop = popularity(h.items.len(), &train);
        // Rankings without each one's training items: u1 → [c, d], u2 → [a, d], u3 → [b, c, d].
        let m = evaluate(h.items.len(), &test, |u| top_k(&pop, &seen(&train[u]), 10));
        assert_eq!(m.users, 3);
        assert_eq!(m.hr_at_10, 1.0, "{m:?}");
        // d at rank 2 for u1, a at rank 1 for u2, c at rank 2 for u3.
        let want = (1.0 / 3f64.log2() + 1.0 + 1.0 / 3f64.log2()) / 3.0;
        assert!((m.ndcg_at_10 - want).abs() < 1e-12, "{m:?}");
        assert_eq!(top_k(&pop, &seen(&train[2]), 10).len(), 3);
        assert_eq!(m.coverage_at_10, 1.0);
    }
}
