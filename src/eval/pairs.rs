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
    pub best_accuracy: f64,
    pub best_threshold: f32,
    pub mean_cosine_positive: f64,
    pub mean_cosine_negative: f64,
    pub seconds: f64,
    /// True when Ctrl-C stopped the run early: the numbers cover the pairs done so far.
    pub interrupted: bool,
}

pub fn read_pairs(
    path: &Path,
    limit: Option<usize>,
) -> anyhow::Result<Vec<(String, String, bool)>> {
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

/// Evaluates `pairs` (from [`read_pairs`], so that bad input fails before the model loads).
pub fn run(
    e: &Embedder,
    path: &Path,
    mut pairs: Vec<(String, String, bool)>,
) -> anyhow::Result<PairsReport> {
    let started = std::time::Instant::now();
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
    let bar = super::texts_bar(texts.len(), "embedding");
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
    let scores: Vec<f32> = pairs
        .iter()
        .map(|(a, b, _)| cosine(&vectors[index[a]], &vectors[index[b]]))
        .collect();
    let labels: Vec<bool> = pairs.iter().map(|p| p.2).collect();
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
    Ok(PairsReport {
        data: path.display().to_string(),
        model: e.version().to_string(),
        n: pairs.len(),
        positives: labels.iter().filter(|&&l| l).count(),
        roc_auc: super::roc_auc(&scores, &labels),
        best_accuracy,
        best_threshold,
        mean_cosine_positive: mean(true),
        mean_cosine_negative: mean(false),
        seconds: started.elapsed().as_secs_f64(),
        interrupted,
    })
}
