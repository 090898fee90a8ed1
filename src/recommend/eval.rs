//! `kefu eval recommend`: the hold-out protocol over a full ranking of every item. The
//! recommender's hyper-parameters are chosen on a validation split carved from the training
//! part the same way as the test split, then it is refitted on the whole training part and
//! scored on the test part once, beside the popularity baseline.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::Serialize;

use super::data::{Event, Histories, History, Split, split};
use super::ease::{self, Ease, EaseParams};
use super::metrics::{TopK, evaluate, top_k};

#[derive(Debug, Clone, Serialize)]
pub struct Chosen {
    pub params: EaseParams,
    /// NDCG@10 on the validation split with these parameters.
    pub validation_ndcg_at_10: f64,
    /// Settings tried.
    pub tried: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct RecommendReport {
    pub data: String,
    pub split: Split,
    pub users: usize,
    pub items: usize,
    pub interactions: usize,
    pub method: &'static str,
    pub chosen: Chosen,
    pub hr_at_10: f64,
    pub ndcg_at_10: f64,
    pub ndcg_at_10_se: f64,
    pub recall_at_10: f64,
    pub coverage_at_10: f64,
    pub popularity: TopK,
    /// Seconds to fit the final model on the training part.
    pub train_seconds: f64,
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

fn score_ease(e: &Ease, train: &[History], test: &[Vec<u32>], p: &EaseParams) -> TopK {
    evaluate(e.n_items, test, |u| {
        top_k(&e.scores(&train[u], p.tau, p.floor), &seen(&train[u]), 10)
    })
}

fn score_popularity(n: usize, train: &[History], test: &[Vec<u32>]) -> TopK {
    let pop = popularity(n, train);
    evaluate(n, test, |u| top_k(&pop, &seen(&train[u]), 10))
}

/// Chooses λ, τ and the floor on `train` (its own hold-out of the same kind).
pub fn choose(
    n_items: usize,
    train: &[History],
    how: Split,
    progress: &indicatif::ProgressBar,
) -> Option<Chosen> {
    let stop = crate::eval::interrupt_flag();
    let (fit_part, val) = split(train, how);
    let mut best: Option<Chosen> = None;
    let mut tried = 0;
    progress.set_length((ease::LAMBDAS.len() * ease::TAUS.len() * ease::FLOORS.len()) as u64);
    for &lambda in ease::LAMBDAS {
        let e = Ease::fit(n_items, &fit_part, lambda);
        for &tau in ease::TAUS {
            for &floor in ease::FLOORS {
                if stop.load(Ordering::SeqCst) {
                    return best;
                }
                let params = EaseParams { lambda, tau, floor };
                let m = score_ease(&e, &fit_part, &val, &params);
                tried += 1;
                progress.inc(1);
                if best
                    .as_ref()
                    .is_none_or(|b| m.ndcg_at_10 > b.validation_ndcg_at_10)
                {
                    best = Some(Chosen {
                        params,
                        validation_ndcg_at_10: m.ndcg_at_10,
                        tried,
                    });
                }
            }
        }
    }
    best.map(|b| Chosen { tried, ..b })
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
    let bar = crate::eval::texts_bar(0, "choosing λ, τ, floor on validation");
    let bar = bar.with_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} settings (eta {eta})")
            .expect("template"),
    );
    let chosen = choose(n, &train, how, &bar);
    bar.finish_and_clear();
    let interrupted = crate::eval::interrupt_flag().load(Ordering::SeqCst);
    let chosen =
        chosen.ok_or_else(|| anyhow::anyhow!("interrupted before any setting was tried"))?;
    let t = Instant::now();
    let e = Ease::fit(n, &train, chosen.params.lambda);
    let train_seconds = t.elapsed().as_secs_f64();
    let p = chosen.params;
    let tops: Vec<Vec<u32>> = (0..train.len())
        .map(|u| top_k(&e.scores(&train[u], p.tau, p.floor), &seen(&train[u]), 10))
        .collect();
    let m = evaluate(n, &test, |u| tops[u].clone());
    let report = RecommendReport {
        data: data.display().to_string(),
        split: how,
        users: h.users.len(),
        items: n,
        interactions,
        method: "recency_ease",
        chosen,
        hr_at_10: m.hr_at_10,
        ndcg_at_10: m.ndcg_at_10,
        ndcg_at_10_se: m.ndcg_at_10_se,
        recall_at_10: m.recall_at_10,
        coverage_at_10: m.coverage_at_10,
        popularity: score_popularity(n, &train, &test),
        train_seconds,
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
