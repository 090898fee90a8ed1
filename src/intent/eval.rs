//! `kefu eval intent`: accuracy, in-scope accuracy, macro F1 and out-of-scope precision and
//! recall of a model on a labelled file, and the report (per-intent scores, confusion matrix
//! as CSV and heat map, most confused pairs, misclassified examples).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use super::features::Matrix;
use super::{IntentModel, OOS_LABEL};

#[derive(Debug, Clone, Serialize)]
pub struct IntentReport {
    pub data: String,
    pub model: String,
    pub encoder: String,
    pub head: String,
    pub n: usize,
    /// All rows; out-of-scope is one more class.
    pub accuracy: f64,
    /// Rows whose gold label is an intent (not out of scope).
    pub in_scope_accuracy: f64,
    /// Mean F1 over every label that occurs as gold or prediction (out of scope included).
    pub macro_f1: f64,
    /// Of the rows predicted out of scope, the share that are; null without such predictions.
    pub oos_precision: Option<f64>,
    /// Of the out-of-scope rows, the share predicted so; null when the file has none.
    pub oos_recall: Option<f64>,
    pub in_scope_rows: usize,
    pub oos_rows: usize,
    pub oos_threshold: f32,
    /// Gold labels the model does not know (their rows count as errors).
    pub unknown_labels: Vec<String>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PerIntent {
    pub intent: String,
    pub support: usize,
    pub predicted: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Confused {
    pub gold: String,
    pub predicted: String,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Miss {
    pub text: String,
    pub gold: String,
    pub predicted: String,
    pub confidence: f32,
    pub runner_up: String,
}

/// Everything the report directory shows.
#[derive(Debug, Clone)]
pub struct Details {
    pub per_intent: Vec<PerIntent>,
    pub labels: Vec<String>,
    pub confusion: Vec<Vec<u64>>,
    pub confused: Vec<Confused>,
    pub misses: Vec<Miss>,
}

/// Scores `model` on embedded rows `x` with gold labels `gold` (texts for the report).
pub fn evaluate(
    model: &IntentModel,
    x: &Matrix,
    texts: &[String],
    gold: &[String],
    threshold: f32,
) -> (IntentReport, Details) {
    let started = std::time::Instant::now();
    let oos = model
        .card
        .oos_label
        .clone()
        .unwrap_or_else(|| OOS_LABEL.to_string());
    let known: BTreeSet<&str> = model.card.labels.iter().map(String::as_str).collect();
    let mut predicted = Vec::with_capacity(gold.len());
    let mut misses = Vec::new();
    for i in 0..gold.len() {
        let p = model.decide(&model.weights.logits(x.row(i)), threshold);
        if p.intent != gold[i] {
            misses.push(Miss {
                text: texts[i].clone(),
                gold: gold[i].clone(),
                predicted: p.intent.clone(),
                confidence: p.confidence,
                runner_up: p
                    .ranking
                    .iter()
                    .map(|r| &r.intent)
                    .find(|l| **l != p.intent)
                    .cloned()
                    .unwrap_or_default(),
            });
        }
        predicted.push(p.intent);
    }
    let n = gold.len();
    let correct = |i: &usize| predicted[*i] == gold[*i];
    let in_scope: Vec<usize> = (0..n).filter(|&i| gold[i] != oos).collect();
    let oos_rows = n - in_scope.len();
    let pred_oos = predicted.iter().filter(|p| **p == oos).count();
    let true_oos = (0..n)
        .filter(|&i| gold[i] == oos && predicted[i] == oos)
        .count();
    let mut labels: BTreeSet<String> = model.card.labels.iter().cloned().collect();
    labels.extend(gold.iter().cloned());
    labels.extend(predicted.iter().cloned());
    let labels: Vec<String> = labels.into_iter().collect();
    let pos: BTreeMap<&str, usize> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i))
        .collect();
    let mut confusion = vec![vec![0u64; labels.len()]; labels.len()];
    for (g, p) in gold.iter().zip(&predicted) {
        confusion[pos[g.as_str()]][pos[p.as_str()]] += 1;
    }
    let mut per_intent = Vec::new();
    for (i, l) in labels.iter().enumerate() {
        let support: u64 = confusion[i].iter().sum();
        let pred: u64 = confusion.iter().map(|r| r[i]).sum();
        if support == 0 && pred == 0 {
            continue;
        }
        let tp = confusion[i][i] as f64;
        let precision = if pred > 0 { tp / pred as f64 } else { 0.0 };
        let recall = if support > 0 {
            tp / support as f64
        } else {
            0.0
        };
        let f1 = if precision + recall > 0.0 {
            2.0 * precision * recall / (precision + recall)
        } else {
            0.0
        };
        per_intent.push(PerIntent {
            intent: l.clone(),
            support: support as usize,
            predicted: pred as usize,
            precision,
            recall,
            f1,
        });
    }
    let mut confused = Vec::new();
    for (g, row) in confusion.iter().enumerate() {
        for (p, &count) in row.iter().enumerate() {
            if g != p && count > 0 {
                confused.push(Confused {
                    gold: labels[g].clone(),
                    predicted: labels[p].clone(),
                    count,
                });
            }
        }
    }
    confused.sort_by(|a, b| b.count.cmp(&a.count).then(a.gold.cmp(&b.gold)));
    let unknown_labels: Vec<String> = gold
        .iter()
        .filter(|g| **g != oos && !known.contains(g.as_str()))
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let report = IntentReport {
        data: String::new(),
        model: String::new(),
        encoder: model.card.encoder.version.clone(),
        head: format!("{:?}", model.card.head).to_lowercase(),
        n,
        accuracy: (0..n).filter(correct).count() as f64 / n.max(1) as f64,
        in_scope_accuracy: in_scope.iter().filter(|i| correct(i)).count() as f64
            / in_scope.len().max(1) as f64,
        macro_f1: per_intent.iter().map(|p| p.f1).sum::<f64>() / per_intent.len().max(1) as f64,
        oos_precision: (pred_oos > 0).then(|| true_oos as f64 / pred_oos as f64),
        oos_recall: (oos_rows > 0).then(|| true_oos as f64 / oos_rows as f64),
        in_scope_rows: in_scope.len(),
        oos_rows,
        oos_threshold: threshold,
        unknown_labels,
        seconds: started.elapsed().as_secs_f64(),
    };
    (
        report,
        Details {
            per_intent,
            labels,
            confusion,
            confused,
            misses,
        },
    )
}

/// Writes the report directory: `summary.json`, `per_intent.csv`, `confusion.csv`,
/// `confusion.svg`, `confused_pairs.csv`, `misclassified.csv`.
pub fn write_report(dir: &Path, r: &IntentReport, d: &Details) -> anyhow::Result<()> {
    use crate::eval::report;
    report::create_dir(dir)?;
    report::write_atomic(
        &dir.join("summary.json"),
        (serde_json::to_string_pretty(r)? + "\n").as_bytes(),
    )?;
    report::write_csv(&dir.join("per_intent.csv"), &d.per_intent)?;
    report::write_csv(&dir.join("confused_pairs.csv"), &d.confused)?;
    report::write_csv(&dir.join("misclassified.csv"), &d.misses)?;
    let mut csv = String::from("gold\\predicted");
    for l in &d.labels {
        csv.push(',');
        csv.push_str(&csv_field(l));
    }
    csv.push('\n');
    for (l, row) in d.labels.iter().zip(&d.confusion) {
        csv.push_str(&csv_field(l));
        for c in row {
            csv.push_str(&format!(",{c}"));
        }
        csv.push('\n');
    }
    report::write_atomic(&dir.join("confusion.csv"), csv.as_bytes())?;
    report::heatmap_svg(
        &dir.join("confusion.svg"),
        &format!("{} — confusion (rows: gold)", r.data),
        &d.labels,
        &d.confusion,
    )?;
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
