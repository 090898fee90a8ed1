//! Training an intent model: standardised frozen embeddings, a linear (multinomial
//! logistic regression) and an MLP head trained with AdamW and chosen by dev accuracy,
//! temperature scaling fitted on dev, and an out-of-scope threshold chosen on dev.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::Serialize;

use super::features::Matrix;
use super::head::train_head;
use super::model::{
    EncoderRef, FORMAT, Head, IntentCalibration, IntentModel, Layer, ModelCard, Weights,
};
use super::{Example, OOS_LABEL};

/// The fewest optimiser steps of a training run (see `train_head`).
pub const MIN_STEPS: usize = 2000;

/// What `kefu train intent` can change.
#[derive(Debug, Clone, Serialize)]
pub struct TrainOptions {
    /// The head to train; `None` trains both and keeps the one with the better dev accuracy.
    pub head: Option<Head>,
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Hidden units of the MLP head.
    pub hidden: usize,
    /// Dropout on the MLP's hidden layer while training.
    pub dropout: f32,
    pub seed: u64,
    /// Share of each label held out as dev set when no dev file is given.
    pub dev_fraction: f64,
    /// Label of out-of-scope examples.
    pub oos_label: String,
    /// Without out-of-scope dev examples: the share of in-scope dev rows the threshold may
    /// reject (0 disables the threshold).
    pub oos_reject_rate: f64,
    /// With out-of-scope dev examples: the in-scope dev accuracy the threshold may cost.
    pub oos_max_in_scope_drop: f64,
    /// After choosing head, epochs, temperature and threshold on dev, train the head again on
    /// training and dev rows together (keeping temperature and threshold).
    pub refit: bool,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            head: None,
            epochs: 40,
            batch_size: 64,
            learning_rate: 2e-3,
            weight_decay: 0.3,
            hidden: 512,
            dropout: 0.2,
            seed: 42,
            dev_fraction: 0.1,
            oos_label: OOS_LABEL.to_string(),
            oos_reject_rate: 0.01,
            oos_max_in_scope_drop: 0.01,
            refit: true,
        }
    }
}

/// Dev metrics of a training run (also stored in the model card).
#[derive(Debug, Clone, Serialize)]
pub struct FitReport {
    pub train_examples: usize,
    pub dev_examples: usize,
    pub labels: usize,
    /// Dev accuracy (argmax, all dev rows of known labels) of each head tried, at its best epoch.
    pub dev_accuracy: BTreeMap<String, f64>,
    pub best_epoch: BTreeMap<String, usize>,
    pub head: Head,
    pub temperature: f32,
    pub dev_nll_before: f64,
    pub dev_nll_after: f64,
    pub oos_threshold: f32,
    /// Dev in-scope accuracy and out-of-scope recall with the threshold applied.
    pub dev_in_scope_accuracy: f64,
    pub dev_oos_recall: Option<f64>,
    pub seconds: f64,
}

/// Splits `examples` into train and a stratified dev share (at least one of each label with
/// two or more examples), seeded.
pub fn stratified_split(
    examples: &[Example],
    fraction: f64,
    seed: u64,
) -> (Vec<Example>, Vec<Example>) {
    let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, e) in examples.iter().enumerate() {
        by_label.entry(&e.label).or_default().push(i);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut dev_idx = BTreeSet::new();
    for idx in by_label.values_mut() {
        if idx.len() < 2 {
            continue;
        }
        idx.shuffle(&mut rng);
        let k = ((idx.len() as f64 * fraction).round() as usize).clamp(1, idx.len() - 1);
        dev_idx.extend(idx.iter().take(k).copied());
    }
    let mut train = Vec::new();
    let mut dev = Vec::new();
    for (i, e) in examples.iter().enumerate() {
        if dev_idx.contains(&i) {
            dev.push(e.clone());
        } else {
            train.push(e.clone());
        }
    }
    (train, dev)
}

/// What `kefu train intent --with-feedback` did with the annotated questions (recorded in the
/// model card's `training.feedback`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FeedbackUse {
    /// Annotated questions with an intent (a question annotated more than once counts once,
    /// with its newest label).
    pub annotated: usize,
    /// Added to the training rows.
    pub added: usize,
    /// Already a training row with the same label.
    pub duplicates: usize,
    /// The question is a dev row: left out, so that dev only measures questions not trained on.
    pub in_dev: usize,
    /// Training rows the annotation labels otherwise: the file's label is kept.
    pub conflicts: Vec<LabelConflict>,
    /// Labels the training data lacks, with how many annotations gave each: left out, because a
    /// new intent belongs in the training file with enough examples of its own.
    pub unknown_labels: BTreeMap<String, usize>,
}

/// An annotated question that the training file labels otherwise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabelConflict {
    pub text: String,
    pub file_label: String,
    pub annotated_label: String,
}

/// Training and dev rows, with annotated questions in training only.
pub struct TrainingSet {
    pub train: Vec<Example>,
    pub dev: Vec<Example>,
    pub feedback: FeedbackUse,
}

/// Splits off the dev rows first (`dev`, else the stratified share of `examples` that
/// [`train_examples`] would hold out), then adds the annotated questions `feedback` (oldest
/// first) to the training rows only: the newest label of each question, when the training data
/// has that label, the question is neither a dev row nor already a training row. Questions are
/// compared as the encoder sees them (NFKC, whitespace).
pub fn with_feedback(
    examples: &[Example],
    dev: Option<&[Example]>,
    feedback: &[Example],
    opts: &TrainOptions,
) -> TrainingSet {
    let key = |t: &str| crate::embed::normalize(t);
    let (mut train, dev) = match dev {
        Some(d) => (examples.to_vec(), d.to_vec()),
        None => stratified_split(examples, opts.dev_fraction, opts.seed),
    };
    let labels: BTreeSet<&str> = examples.iter().map(|x| x.label.as_str()).collect();
    let dev_texts: HashSet<String> = dev.iter().map(|x| key(&x.text)).collect();
    let mut file_label: HashMap<String, String> = HashMap::new();
    for x in &train {
        file_label
            .entry(key(&x.text))
            .or_insert_with(|| x.label.clone());
    }
    // The newest label of each question, in the order the questions were first annotated.
    let mut order: Vec<String> = Vec::new();
    let mut newest: HashMap<String, &Example> = HashMap::new();
    for x in feedback {
        let k = key(&x.text);
        if k.is_empty() || x.label.trim().is_empty() {
            continue;
        }
        if newest.insert(k.clone(), x).is_none() {
            order.push(k);
        }
    }
    let mut used = FeedbackUse {
        annotated: order.len(),
        ..Default::default()
    };
    for k in order {
        let x = newest[&k];
        let label = x.label.trim();
        if !labels.contains(label) {
            *used.unknown_labels.entry(label.to_string()).or_default() += 1;
        } else if dev_texts.contains(&k) {
            used.in_dev += 1;
        } else if let Some(l) = file_label.get(&k) {
            if l == label {
                used.duplicates += 1;
            } else {
                used.conflicts.push(LabelConflict {
                    text: x.text.trim().to_string(),
                    file_label: l.clone(),
                    annotated_label: label.to_string(),
                });
            }
        } else {
            train.push(Example {
                text: x.text.trim().to_string(),
                label: label.to_string(),
            });
            used.added += 1;
        }
    }
    TrainingSet {
        train,
        dev,
        feedback: used,
    }
}

/// Fine-tuning for [`train_examples`]: options, the encoder's directory, the checkpoint
/// directory and whether to resume from it.
pub struct Finetune<'a> {
    pub options: &'a super::finetune::FinetuneOptions,
    pub encoder_dir: &'a std::path::Path,
    pub checkpoint: &'a std::path::Path,
    pub resume: bool,
}

/// Embeds `train` and `dev` (a stratified share of `train` when `None`; through the cache in
/// `cache` when given) and trains on them; with `finetune`, the encoder's top layers are
/// fine-tuned first and the heads trained on their vectors.
#[allow(clippy::too_many_arguments)] // data, options, provenance, cache, tuning, Ctrl-C
pub fn train_examples(
    e: &crate::embed::Embedder,
    examples: &[Example],
    dev: Option<&[Example]>,
    opts: &TrainOptions,
    mut training: serde_json::Value,
    cache: Option<&std::path::Path>,
    finetune: Option<Finetune>,
    stop: Option<&AtomicBool>,
) -> anyhow::Result<(IntentModel, FitReport)> {
    let (train, dev) = match dev {
        Some(d) => (examples.to_vec(), d.to_vec()),
        None => stratified_split(examples, opts.dev_fraction, opts.seed),
    };
    if let Some(ft) = finetune {
        let tokenize = |xs: &[Example]| -> anyhow::Result<Vec<Vec<u32>>> {
            xs.iter()
                .map(|x| Ok(e.tokenize(&crate::embed::normalize(&x.text))?.ids))
                .collect()
        };
        let labels: Vec<String> = train
            .iter()
            .map(|x| x.label.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let index: BTreeMap<&str, u32> = labels
            .iter()
            .enumerate()
            .map(|(i, l)| (l.as_str(), i as u32))
            .collect();
        let y: Vec<u32> = train.iter().map(|x| index[x.label.as_str()]).collect();
        let tuned = super::finetune::finetune(
            ft.encoder_dir,
            &tokenize(&train)?,
            &y,
            labels.len(),
            ft.options,
            ft.checkpoint,
            ft.resume,
            stop,
        )?;
        let dx = tuned.encoder.embed(&tokenize(&dev)?)?;
        let ty: Vec<String> = train.iter().map(|x| x.label.clone()).collect();
        let dy: Vec<String> = dev.iter().map(|x| x.label.clone()).collect();
        training["finetune"] = serde_json::json!({
            "options": ft.options,
            "final_loss": tuned.final_loss,
            "examples_per_second": tuned.examples_per_second,
        });
        let (mut model, report) = fit(
            &tuned.train_vectors,
            &ty,
            &dx,
            &dy,
            opts,
            EncoderRef::of(e.manifest()),
            training,
            stop,
        )?;
        model.card.finetune = Some(tuned.card);
        model.tuned_tensors = tuned.tensors;
        model.tuned = Some(std::sync::Arc::new(tuned.encoder));
        return Ok((model, report));
    }
    let embed = |xs: &[Example], what: &str| -> anyhow::Result<Matrix> {
        let texts: Vec<String> = xs.iter().map(|x| x.text.clone()).collect();
        super::features::embed_all(e, &texts, cache, what, stop)
    };
    let tx = embed(&train, "training examples")?;
    let dx = embed(&dev, "dev examples")?;
    let ty: Vec<String> = train.iter().map(|x| x.label.clone()).collect();
    let dy: Vec<String> = dev.iter().map(|x| x.label.clone()).collect();
    fit(
        &tx,
        &ty,
        &dx,
        &dy,
        opts,
        EncoderRef::of(e.manifest()),
        training,
        stop,
    )
}

/// Trains on embedded examples. `train_y`/`dev_y` are the labels of the rows of `train_x` and
/// `dev_x`; dev rows whose label the training data lacks are ignored, except out-of-scope rows,
/// which choose the threshold. `stop` ends training early with an error (Ctrl-C).
#[allow(clippy::too_many_arguments)] // data, options, provenance: each a distinct input
pub fn fit(
    train_x: &Matrix,
    train_y: &[String],
    dev_x: &Matrix,
    dev_y: &[String],
    opts: &TrainOptions,
    encoder: EncoderRef,
    training: serde_json::Value,
    stop: Option<&AtomicBool>,
) -> anyhow::Result<(IntentModel, FitReport)> {
    let started = Instant::now();
    anyhow::ensure!(train_x.rows() == train_y.len() && dev_x.rows() == dev_y.len());
    let labels: Vec<String> = train_y
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    anyhow::ensure!(
        labels.len() >= 2,
        "training needs at least two labels, found {}",
        labels.len()
    );
    anyhow::ensure!(
        opts.epochs > 0 && opts.batch_size > 0 && opts.hidden > 0,
        "epochs, batch size and hidden units must be at least 1"
    );
    let index: BTreeMap<&str, u32> = labels
        .iter()
        .enumerate()
        .map(|(i, l)| (l.as_str(), i as u32))
        .collect();
    let oos_label = labels
        .contains(&opts.oos_label)
        .then(|| opts.oos_label.clone());
    let d = train_x.dim;
    // Standardisation from the training rows.
    let (mean, inv_std) = moments(train_x);
    let standardise = |m: &Matrix| standardise_rows(m, &mean, &inv_std);
    let xs = standardise(train_x);
    let ys: Vec<u32> = train_y.iter().map(|l| index[l.as_str()]).collect();
    // Dev rows with a known label (for accuracy and temperature).
    let known: Vec<usize> = (0..dev_y.len())
        .filter(|&i| index.contains_key(dev_y[i].as_str()))
        .collect();
    let dev_std = standardise(dev_x);
    let dev_known: Vec<f32> = known
        .iter()
        .flat_map(|&i| dev_std[i * d..(i + 1) * d].to_vec())
        .collect();
    let dev_ys: Vec<u32> = known.iter().map(|&i| index[dev_y[i].as_str()]).collect();
    anyhow::ensure!(
        !known.is_empty(),
        "the dev set has no example of a label the training set has"
    );

    let heads = match opts.head {
        Some(h) => vec![h],
        None => vec![Head::Linear, Head::Mlp],
    };
    let mut dev_accuracy = BTreeMap::new();
    let mut best_epoch = BTreeMap::new();
    let mut best: Option<(f64, Head, Vec<Layer>, usize)> = None;
    for head in heads {
        let (acc, epoch, layers, schedule) = train_head(
            head,
            &xs,
            &ys,
            Some((&dev_known, &dev_ys)),
            d,
            labels.len(),
            opts,
            None,
            stop,
        )?;
        let name = format!("{head:?}").to_lowercase();
        tracing::info!("{name} head: dev accuracy {acc:.4} (epoch {epoch})");
        dev_accuracy.insert(name.clone(), acc);
        best_epoch.insert(name, epoch);
        if best.as_ref().is_none_or(|b| acc > b.0) {
            best = Some((acc, head, layers, schedule));
        }
    }
    let (_, head, layers, _) = best.expect("at least one head");
    let weights = Weights {
        mean: mean.clone(),
        inv_std: inv_std.clone(),
        layers,
    };

    // Temperature scaling on the dev rows of known labels.
    let dev_logits: Vec<Vec<f32>> = (0..dev_y.len())
        .map(|i| weights.logits(dev_x.row(i)))
        .collect();
    let known_logits: Vec<&Vec<f32>> = known.iter().map(|&i| &dev_logits[i]).collect();
    let nll = |t: f32| -> f64 {
        known_logits
            .iter()
            .zip(&dev_ys)
            .map(|(l, &y)| -(super::model::softmax(l, t)[y as usize].max(1e-12) as f64).ln())
            .sum::<f64>()
            / known_logits.len() as f64
    };
    let temperature = fit_temperature(&nll);
    let dev_nll_before = nll(1.0);
    let dev_nll_after = nll(temperature);

    let mut model = IntentModel {
        card: ModelCard {
            format: FORMAT.to_string(),
            head,
            labels: labels.clone(),
            oos_label: oos_label.clone(),
            calibration: IntentCalibration {
                temperature,
                oos_threshold: 0.0,
                threshold_rule: String::new(),
            },
            encoder,
            training,
            metrics: serde_json::Value::Null,
            created_at: crate::kb::entry::now_rfc3339(),
            finetune: None,
        },
        weights,
        tuned_tensors: HashMap::new(),
        tuned: None,
        origin: None,
    };

    // The out-of-scope threshold.
    let is_oos: Vec<bool> = dev_y.iter().map(|l| *l == opts.oos_label).collect();
    let n_oos = is_oos.iter().filter(|&&o| o).count();
    let in_scope: Vec<usize> = (0..dev_y.len())
        .filter(|&i| !is_oos[i] && index.contains_key(dev_y[i].as_str()))
        .collect();
    let judge = |model: &IntentModel, t: f32| -> (f64, Option<f64>) {
        let mut in_ok = 0usize;
        let mut oos_ok = 0usize;
        for (i, logits) in dev_logits.iter().enumerate() {
            let p = model.decide(logits, t);
            if is_oos[i] {
                oos_ok += p.out_of_scope as usize;
            } else if p.intent == dev_y[i] {
                in_ok += 1;
            }
        }
        (
            in_ok as f64 / in_scope.len().max(1) as f64,
            (n_oos > 0).then(|| oos_ok as f64 / n_oos as f64),
        )
    };
    let (threshold, rule) = if n_oos > 0 {
        let mut candidates: Vec<f32> = dev_logits
            .iter()
            .map(|l| model.decide(l, 0.0).confidence)
            .collect();
        candidates.push(0.0);
        candidates.sort_by(f32::total_cmp);
        candidates.dedup();
        // In-scope accuracy only falls as the threshold rises: take the highest threshold
        // that costs at most `oos_max_in_scope_drop` of it.
        let floor = judge(&model, 0.0).0 - opts.oos_max_in_scope_drop;
        let mut best = 0.0f32;
        for &c in &candidates {
            if judge(&model, c).0 + 1e-12 >= floor {
                best = c;
            } else {
                break;
            }
        }
        (
            best,
            format!(
                "the highest threshold costing at most {:.1} points of dev in-scope accuracy ({} in-scope, {n_oos} out-of-scope dev rows)",
                opts.oos_max_in_scope_drop * 100.0,
                in_scope.len()
            ),
        )
    } else if opts.oos_reject_rate > 0.0 {
        let mut conf: Vec<f64> = in_scope
            .iter()
            .map(|&i| model.decide(&dev_logits[i], 0.0).confidence as f64)
            .collect();
        conf.sort_by(f64::total_cmp);
        let t = crate::eval::percentile(&conf, opts.oos_reject_rate) as f32;
        (
            t,
            format!(
                "rejects {:.1}% of the {} in-scope dev rows (no out-of-scope dev rows)",
                opts.oos_reject_rate * 100.0,
                in_scope.len()
            ),
        )
    } else {
        (0.0, "disabled (--oos-reject-rate 0)".to_string())
    };
    model.card.calibration.oos_threshold = threshold;
    model.card.calibration.threshold_rule = rule;
    let (dev_in_scope_accuracy, dev_oos_recall) = judge(&model, threshold);
    let epochs_chosen = best_epoch[&format!("{head:?}").to_lowercase()];
    if opts.refit {
        // Train and dev rows of known labels together: the chosen head trained as many epochs
        // as were best on dev (the learning rate decaying over those).
        let mut all = train_x.clone();
        let mut all_y = ys.clone();
        for (&i, &y) in known.iter().zip(&dev_ys) {
            all.data.extend_from_slice(dev_x.row(i));
            all_y.push(y);
        }
        let (mean, inv_std) = moments(&all);
        let xs = standardise_rows(&all, &mean, &inv_std);
        let (_, _, layers, _) = train_head(
            head,
            &xs,
            &all_y,
            None,
            d,
            labels.len(),
            opts,
            Some((epochs_chosen, epochs_chosen)),
            stop,
        )?;
        model.weights = Weights {
            mean,
            inv_std,
            layers,
        };
    }
    let report = FitReport {
        train_examples: train_y.len(),
        dev_examples: dev_y.len(),
        labels: labels.len(),
        dev_accuracy,
        best_epoch,
        head,
        temperature,
        dev_nll_before,
        dev_nll_after,
        oos_threshold: threshold,
        dev_in_scope_accuracy,
        dev_oos_recall,
        seconds: started.elapsed().as_secs_f64(),
    };
    model.card.metrics = serde_json::to_value(&report)?;
    Ok((model, report))
}

/// The temperature minimising `nll`, searched on a log scale between 0.25 and 20 (a dev set the
/// model separates perfectly would otherwise drive it to the bottom of any range).
fn fit_temperature(nll: &dyn Fn(f32) -> f64) -> f32 {
    let (mut lo, mut hi) = (0.25f64.ln(), 20f64.ln());
    // Coarse grid, then golden-section refinement around the best point.
    let grid: Vec<f64> = (0..=40).map(|i| lo + (hi - lo) * i as f64 / 40.0).collect();
    let best = grid
        .iter()
        .copied()
        .min_by(|a, b| nll(a.exp() as f32).total_cmp(&nll(b.exp() as f32)))
        .expect("grid");
    let step = (hi - lo) / 40.0;
    lo = best - step;
    hi = best + step;
    let g = (5f64.sqrt() - 1.0) / 2.0;
    for _ in 0..30 {
        let a = hi - g * (hi - lo);
        let b = lo + g * (hi - lo);
        if nll(a.exp() as f32) < nll(b.exp() as f32) {
            hi = b;
        } else {
            lo = a;
        }
    }
    (((lo + hi) / 2.0).exp() as f32).clamp(0.25, 20.0)
}

/// Mean and 1 / standard deviation of every feature.
fn moments(m: &Matrix) -> (Vec<f32>, Vec<f32>) {
    let (n, d) = (m.rows(), m.dim);
    let mut mean = vec![0f64; d];
    for i in 0..n {
        for (a, x) in mean.iter_mut().zip(m.row(i)) {
            *a += *x as f64 / n as f64;
        }
    }
    let mut var = vec![0f64; d];
    for i in 0..n {
        for ((v, x), a) in var.iter_mut().zip(m.row(i)).zip(&mean) {
            *v += (*x as f64 - a).powi(2) / n as f64;
        }
    }
    (
        mean.iter().map(|&x| x as f32).collect(),
        var.iter()
            .map(|v| (1.0 / (v.sqrt() + 1e-6)) as f32)
            .collect(),
    )
}

fn standardise_rows(m: &Matrix, mean: &[f32], inv_std: &[f32]) -> Vec<f32> {
    m.data
        .chunks(m.dim)
        .flat_map(|r| {
            r.iter()
                .zip(mean)
                .zip(inv_std)
                .map(|((x, m), s)| (x - m) * s)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Points around one centre per label in 8 dimensions, seeded.
    fn blobs(labels: &[&str], per: usize, seed: u64) -> (Matrix, Vec<String>) {
        use rand::Rng;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut data = Vec::new();
        let mut y = Vec::new();
        for (k, l) in labels.iter().enumerate() {
            for _ in 0..per {
                for j in 0..8 {
                    let centre = if j == k { 1.0 } else { 0.0 };
                    data.push(centre + rng.random_range(-0.35..0.35));
                }
                y.push(l.to_string());
            }
        }
        (Matrix { dim: 8, data }, y)
    }

    fn encoder() -> EncoderRef {
        EncoderRef {
            name: "toy".into(),
            version: "toy@0".into(),
            sha256: "0".into(),
        }
    }

    #[test]
    fn training_converges_and_predicts_held_out_points() {
        let labels = ["a", "b", "c", "d"];
        let (tx, ty) = blobs(&labels, 40, 1);
        let (dx, dy) = blobs(&labels, 10, 2);
        let (test_x, test_y) = blobs(&labels, 25, 3);
        let opts = TrainOptions {
            epochs: 15,
            ..Default::default()
        };
        let (m, r) = fit(
            &tx,
            &ty,
            &dx,
            &dy,
            &opts,
            encoder(),
            serde_json::json!({}),
            None,
        )
        .unwrap();
        assert_eq!(r.dev_accuracy.len(), 2, "both heads are tried");
        assert!(r.temperature > 0.0 && r.dev_nll_after <= r.dev_nll_before + 1e-9);
        let right = (0..test_y.len())
            .filter(|&i| m.predict(test_x.row(i)).ranking[0].intent == test_y[i])
            .count();
        assert!(
            right as f64 / test_y.len() as f64 > 0.95,
            "{right}/{}",
            test_y.len()
        );
        // No out-of-scope rows: the threshold rejects 1% of dev.
        assert!(m.card.calibration.threshold_rule.contains("1.0% of the 40"));
    }

    #[test]
    fn out_of_scope_examples_choose_the_threshold() {
        let labels = ["a", "b", "c", "oos"];
        let (tx, ty) = blobs(&labels, 40, 4);
        let (dx, dy) = blobs(&labels, 10, 5);
        let opts = TrainOptions {
            head: Some(Head::Linear),
            epochs: 15,
            ..Default::default()
        };
        let (m, r) = fit(
            &tx,
            &ty,
            &dx,
            &dy,
            &opts,
            encoder(),
            serde_json::json!({}),
            None,
        )
        .unwrap();
        assert_eq!(m.card.oos_label.as_deref(), Some("oos"));
        assert!(
            m.card
                .calibration
                .threshold_rule
                .contains("costing at most 1.0 points of dev in-scope accuracy")
        );
        assert!(r.dev_oos_recall.unwrap() > 0.9, "{r:?}");
        let mut oos = vec![0.0; 8];
        oos[3] = 1.0;
        assert!(m.predict(&oos).out_of_scope);

        // The refit head saw the dev rows too: its standardisation differs from train-only.
        let (train_only, _) = fit(
            &tx,
            &ty,
            &dx,
            &dy,
            &TrainOptions {
                refit: false,
                ..opts.clone()
            },
            encoder(),
            serde_json::json!({}),
            None,
        )
        .unwrap();
        assert_eq!(train_only.weights.mean, moments(&tx).0);
        assert_ne!(m.weights.mean, train_only.weights.mean);
        assert_eq!(
            m.card.calibration.oos_threshold, train_only.card.calibration.oos_threshold,
            "the threshold is chosen before the refit"
        );
    }

    #[test]
    fn annotated_questions_join_training_only_with_known_labels() {
        let ex = |t: &str, l: &str| Example {
            text: t.into(),
            label: l.into(),
        };
        let examples: Vec<Example> = (0..20)
            .map(|i| ex(&format!("refund {i}"), "refund"))
            .chain((0..20).map(|i| ex(&format!("ship {i}"), "shipping")))
            .collect();
        let opts = TrainOptions::default();
        let plain = with_feedback(&examples, None, &[], &opts);
        assert_eq!(
            (plain.train.clone(), plain.dev.clone()),
            stratified_split(&examples, opts.dev_fraction, opts.seed),
            "without feedback: the split train_examples makes"
        );
        let dev_text = plain.dev[0].text.clone();
        let trained = |label: &str| {
            plain
                .train
                .iter()
                .find(|x| x.label == label)
                .unwrap()
                .text
                .clone()
        };
        let (refund_row, ship_row) = (trained("refund"), trained("shipping"));
        let feedback = vec![
            ex("where is my money", "shipping"),
            ex("where  is my money", "refund"), // the same question again: newest label wins
            ex(&refund_row, "refund"),
            ex(&dev_text, "refund"),
            ex(&ship_row, "refund"),
            ex("cancel my order", "cancel"),
            ex("cancel it now", "cancel"),
            ex("how do i pay", "billing"),
            ex("where is the parcel", "shipping"),
        ];
        let t = with_feedback(&examples, None, &feedback, &opts);
        assert_eq!(t.dev, plain.dev, "the dev rows do not change");
        let added: Vec<&Example> = t.train[plain.train.len()..].iter().collect();
        assert_eq!(
            added,
            vec![
                &ex("where  is my money", "refund"),
                &ex("where is the parcel", "shipping")
            ]
        );
        let f = &t.feedback;
        assert_eq!(
            (f.annotated, f.added, f.in_dev, f.duplicates),
            (8, 2, 1, 1),
            "{f:?}"
        );
        assert_eq!(
            f.conflicts,
            vec![LabelConflict {
                text: ship_row,
                file_label: "shipping".into(),
                annotated_label: "refund".into()
            }]
        );
        assert_eq!(
            f.unknown_labels,
            BTreeMap::from([("billing".to_string(), 1), ("cancel".to_string(), 2)])
        );

        // A dev file: annotated questions in it stay out of training.
        let dev = vec![ex("where is the parcel", "shipping")];
        let t = with_feedback(&examples, Some(&dev), &feedback, &opts);
        assert_eq!(t.train.len(), examples.len() + 1);
        assert_eq!(t.dev, dev);
        assert_eq!(t.feedback.in_dev, 1);
        assert!(
            t.train
                .iter()
                .all(|x| crate::embed::normalize(&x.text) != "where is the parcel")
        );
    }

    #[test]
    fn stratified_split_keeps_every_label_in_training() {
        let ex: Vec<Example> = (0..45)
            .map(|i| Example {
                text: format!("t{i}"),
                label: if i < 40 {
                    "big"
                } else if i < 44 {
                    "small"
                } else {
                    "one"
                }
                .into(),
            })
            .collect();
        let (train, dev) = stratified_split(&ex, 0.1, 7);
        assert_eq!(train.len() + dev.len(), 45);
        let count = |v: &[Example], l: &str| v.iter().filter(|e| e.label == l).count();
        assert_eq!(
            (count(&dev, "big"), count(&dev, "small"), count(&dev, "one")),
            (4, 1, 0)
        );
        assert_eq!(count(&train, "one"), 1);
        assert_eq!(stratified_split(&ex, 0.1, 7).1, dev, "seeded");
    }

    #[test]
    fn needs_two_labels() {
        let (tx, ty) = blobs(&["a"], 5, 1);
        let e = fit(
            &tx,
            &ty,
            &tx,
            &ty,
            &TrainOptions::default(),
            encoder(),
            serde_json::json!({}),
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("two labels"), "{e}");
    }
}
