//! `kefu eval pairs`: how well the encoder's cosine separates paraphrases from non-paraphrases
//! on labelled question pairs (the shared `pairs` format: `{"a", "b", "label": 0|1}`).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};

use crate::embed::{Embedder, cosine};

#[derive(Deserialize)]
struct Pair {
    a: String,
    b: String,
    label: u8,
}

#[derive(Debug, Serialize)]
pub struct PairsReport {
    pub data: String,
    pub model: String,
    pub n: usize,
    pub positives: usize,
    pub roc_auc: f64,
    /// Spearman's rank correlation of the cosine with the label (C-MTEB's pair metric).
    pub spearman: f64,
    /// Accuracy and F1 (positive class) at `threshold`, chosen on `--dev` or, without it, by
    /// 5-fold cross-validation on this file (each fold classified at the threshold that is best
    /// on the other four).
    pub accuracy: f64,
    pub f1: f64,
    /// The cosine threshold from `--dev` (with cross-validation: the one chosen on the whole file,
    /// for reference).
    pub threshold: f32,
    /// `dev` or `cross_validation`.
    pub threshold_from: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dev: Option<String>,
    /// The best accuracy any threshold reaches on this file, and that threshold (an oracle,
    /// for comparison).
    pub best_accuracy: f64,
    pub best_threshold: f32,
    pub mean_cosine_positive: f64,
    pub mean_cosine_negative: f64,
    pub seconds: f64,
    /// True when Ctrl-C stopped the run early: the numbers cover the pairs done so far.
    pub interrupted: bool,
}

pub type Pairs = Vec<(String, String, bool)>;

pub fn read_pairs(path: &Path, limit: Option<usize>) -> anyhow::Result<Pairs> {
    let mut out = Vec::new();
    for (line, p) in super::read_jsonl::<Pair>(path, limit, r#"a pair {"a", "b", "label"}"#)? {
        if p.label > 1 {
            anyhow::bail!(
                "{}:{line}: label must be 0 or 1, got {}",
                path.display(),
                p.label
            );
        }
        out.push((p.a, p.b, p.label == 1));
    }
    if out.is_empty() {
        anyhow::bail!("{} has no pairs", path.display());
    }
    Ok(out)
}

/// The cosine of every pair (all distinct texts embedded once) and the labels; with Ctrl-C,
/// only the pairs whose texts were embedded. The flag says whether it was interrupted.
pub fn score(
    e: &Embedder,
    mut pairs: Pairs,
    what: &str,
) -> anyhow::Result<(Vec<f32>, Vec<bool>, bool)> {
    let mut texts: Vec<String> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (a, b, _) in &pairs {
        for t in [a, b] {
            if !index.contains_key(t) {
                index.insert(t.clone(), texts.len());
                texts.push(t.clone());
            }
        }
    }
    let stop = super::interrupt_flag();
    let bar = super::texts_bar(texts.len(), format!("embedding {what}"));
    let mut vectors = Vec::with_capacity(texts.len());
    let mut interrupted = false;
    for chunk in texts.chunks(64) {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        vectors.extend(e.embed_blocking(chunk)?.into_iter().map(|x| x.vector));
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    pairs.retain(|(a, b, _)| index[a] < vectors.len() && index[b] < vectors.len());
    if pairs.is_empty() {
        anyhow::bail!("interrupted before any pair was embedded");
    }
    let scores = pairs
        .iter()
        .map(|(a, b, _)| cosine(&vectors[index[a]], &vectors[index[b]]))
        .collect();
    Ok((scores, pairs.iter().map(|p| p.2).collect(), interrupted))
}

/// Accuracy and F1 of the positive class for `predicted` against `labels`.
pub fn accuracy_f1(predicted: &[bool], labels: &[bool]) -> (f64, f64) {
    let (mut tp, mut fp, mut fneg, mut right) = (0usize, 0usize, 0usize, 0usize);
    for (&p, &l) in predicted.iter().zip(labels) {
        right += usize::from(p == l);
        match (p, l) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fneg += 1,
            _ => {}
        }
    }
    let f1 = if tp == 0 {
        0.0
    } else {
        2.0 * tp as f64 / (2 * tp + fp + fneg) as f64
    };
    (right as f64 / predicted.len().max(1) as f64, f1)
}

/// Predictions by 5-fold cross-validation: pair i is in fold i mod 5 and is classified at the
/// threshold best on the other folds.
pub fn cross_validated(scores: &[f32], labels: &[bool]) -> Vec<bool> {
    const FOLDS: usize = 5;
    let mut out = vec![false; scores.len()];
    for f in 0..FOLDS {
        let (s, l): (Vec<f32>, Vec<bool>) = (0..scores.len())
            .filter(|i| i % FOLDS != f)
            .map(|i| (scores[i], labels[i]))
            .unzip();
        if s.is_empty() {
            continue;
        }
        let (t, _) = super::best_threshold(&s, &l);
        for i in (f..scores.len()).step_by(FOLDS) {
            out[i] = scores[i] >= t;
        }
    }
    out
}

/// Evaluates `pairs` (from [`read_pairs`], so that bad input fails before the model loads);
/// the threshold comes from `dev` when given.
pub fn run(
    e: &Embedder,
    path: &Path,
    pairs: Pairs,
    dev: Option<(&Path, Pairs)>,
) -> anyhow::Result<PairsReport> {
    let started = std::time::Instant::now();
    let (scores, labels, mut interrupted) = score(e, pairs, "pairs")?;
    let mean = |want: bool| {
        let v: Vec<f64> = scores
            .iter()
            .zip(&labels)
            .filter(|(_, l)| **l == want)
            .map(|(s, _)| *s as f64)
            .collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let (best_threshold, best_accuracy) = super::best_threshold(&scores, &labels);
    let (threshold, predicted, dev_path) = match dev {
        Some((p, dev_pairs)) => {
            let (ds, dl, i) = score(e, dev_pairs, "dev pairs")?;
            interrupted |= i;
            let (t, _) = super::best_threshold(&ds, &dl);
            (
                t,
                scores.iter().map(|&s| s >= t).collect::<Vec<_>>(),
                Some(p.display().to_string()),
            )
        }
        None => (best_threshold, cross_validated(&scores, &labels), None),
    };
    let (accuracy, f1) = accuracy_f1(&predicted, &labels);
    Ok(PairsReport {
        data: path.display().to_string(),
        model: e.version().to_string(),
        n: scores.len(),
        positives: labels.iter().filter(|&&l| l).count(),
        roc_auc: super::roc_auc(&scores, &labels),
        spearman: super::spearman(&scores, &labels),
        accuracy,
        f1,
        threshold,
        threshold_from: if dev_path.is_some() {
            "dev"
        } else {
            "cross_validation"
        },
        dev: dev_path,
        best_accuracy,
        best_threshold,
        mean_cosine_positive: mean(true),
        mean_cosine_negative: mean(false),
        seconds: started.elapsed().as_secs_f64(),
        interrupted,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_and_f1_on_known_predictions() {
        let (acc, f1) = accuracy_f1(&[true, true, false, false], &[true, false, true, false]);
        assert_eq!(acc, 0.5);
        // tp 1, fp 1, fn 1 → 2 / 4.
        assert_eq!(f1, 0.5);
        assert_eq!(accuracy_f1(&[false, false], &[true, false]), (0.5, 0.0));
    }

    #[test]
    fn cross_validation_classifies_separable_scores_perfectly() {
        // Negatives score 0–19, positives 120–149: any fold's threshold falls in the gap.
        let labels: Vec<bool> = (0..50).map(|i| i >= 20).collect();
        let scores: Vec<f32> = (0..50)
            .map(|i| i as f32 + if i >= 20 { 100.0 } else { 0.0 })
            .collect();
        let p = cross_validated(&scores, &labels);
        assert_eq!(accuracy_f1(&p, &labels), (1.0, 1.0));
        // Flipped labels: the best threshold cannot help the held-out fold.
        let flipped: Vec<bool> = labels.iter().map(|l| !l).collect();
        let (acc, _) = accuracy_f1(&cross_validated(&scores, &flipped), &flipped);
        assert!(acc <= 0.6, "{acc}");
    }

    #[test]
    fn spearman_of_a_perfect_and_a_reversed_ranking() {
        let scores = [0.1f32, 0.2, 0.8, 0.9];
        let labels = [false, false, true, true];
        assert!((crate::eval::spearman(&scores, &labels) - 0.8944).abs() < 1e-3);
        let rev = [true, true, false, false];
        assert!((crate::eval::spearman(&scores, &rev) + 0.8944).abs() < 1e-3);
        assert_eq!(crate::eval::roc_auc(&scores, &labels), 1.0);
    }
}
