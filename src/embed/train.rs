//! Domain adaptation of the encoder (`kefu train embed`): contrastive fine-tuning of its top
//! transformer layers on paraphrase pairs and knowledge-base questions, on CPU with candle's
//! autograd.
//!
//! The lower layers stay frozen and run once per distinct training text (their outputs are
//! cached in memory), so a step only runs the top layers forward and backward — the machinery of
//! [`crate::intent::finetune`], with its classification head replaced by a multiple-negatives
//! ranking loss: for every anchor, cross-entropy over the scaled cosines with its positive, the
//! other positives of the batch and the batch's hard negatives (both directions, anchor →
//! positive and positive → anchor). The result is an ordinary model directory: the base's files
//! with the tuned layers' tensors replaced under their Hugging Face names, a fresh manifest and
//! `training.json`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::intent::tuned::{
    Lower, TunedLayer, bert_config, build_layers, pad_states, pool, run_layers,
};
use crate::model::manifest::{Manifest, ManifestSpec, WEIGHTS_FILE, sha256_file};
use crate::optim::{AdamW, Schedule, checkpoint_dir, seeded_init};

/// Cosines are multiplied by this before the softmax (sentence-transformers' default).
pub const SCALE: f64 = 20.0;
/// Additive logit of candidates that must not count as negatives (duplicates, known positives).
const MASKED: f32 = -1e4;
/// Hard negatives kept per text.
const MAX_HARD: usize = 8;
/// Examples the before/after loss is measured on.
const PROBE_EXAMPLES: usize = 512;

/// What `kefu train embed` can change.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EmbedTrainOptions {
    /// Top transformer layers to train; 0: all of them (the embeddings stay frozen).
    pub layers: usize,
    pub learning_rate: f64,
    /// Share of the steps with a linearly rising learning rate (then linear decay to 0).
    pub warmup: f64,
    pub batch_size: usize,
    pub epochs: usize,
    /// Longest input in tokens (prefix and special tokens included).
    pub max_tokens: usize,
    pub seed: u64,
    /// Only the first N records of each data file.
    pub limit: Option<usize>,
    /// Save a checkpoint every N steps (and after every epoch).
    pub checkpoint_every: usize,
    /// Hard negatives mined per text with the starting model: its nearest training texts that
    /// are not known positives and score below the text's own positive (0: none).
    #[serde(default)]
    pub mine_negatives: usize,
    /// Rank of the low-rank adapters (LoRA) trained beside every linear map of the top
    /// `layers`, whose own weights then stay frozen (0: train the layers' weights themselves).
    #[serde(default)]
    pub adapter_rank: usize,
    /// Adapters add `adapter_alpha / adapter_rank · x·Aᵀ·Bᵀ` to each linear map.
    #[serde(default = "default_alpha")]
    pub adapter_alpha: f64,
}

fn default_alpha() -> f64 {
    16.0
}

impl Default for EmbedTrainOptions {
    fn default() -> Self {
        Self {
            layers: 2,
            learning_rate: 5e-5,
            warmup: 0.1,
            batch_size: 32,
            epochs: 1,
            max_tokens: 64,
            seed: 42,
            limit: None,
            checkpoint_every: 200,
            mine_negatives: 0,
            adapter_rank: 0,
            adapter_alpha: default_alpha(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Data

/// One KB record as far as training is concerned (other fields are ignored).
#[derive(Debug, Clone, Deserialize)]
pub struct KbRow {
    #[serde(default)]
    pub id: Option<String>,
    pub question: String,
    #[serde(default)]
    pub similar: Vec<String>,
    #[serde(default)]
    pub category: Option<String>,
}

#[derive(Deserialize)]
struct PairRow {
    a: String,
    b: String,
    label: u8,
}

/// Training texts (normalised, deduplicated) and what is known about them.
#[derive(Debug, Default)]
pub struct TrainData {
    pub texts: Vec<String>,
    /// (anchor, positive) text ids, each unordered pair once.
    pub examples: Vec<(u32, u32)>,
    /// Hard negatives of each text.
    pub hard: Vec<Vec<u32>>,
    /// Unordered positive pairs (smaller id first): never used as each other's negatives.
    pub positives: HashSet<(u32, u32)>,
}

impl TrainData {
    fn id(&mut self, index: &mut HashMap<String, u32>, t: &str) -> u32 {
        if let Some(&i) = index.get(t) {
            return i;
        }
        let i = self.texts.len() as u32;
        self.texts.push(t.to_string());
        self.hard.push(Vec::new());
        index.insert(t.to_string(), i);
        i
    }

    fn key(a: u32, b: u32) -> (u32, u32) {
        (a.min(b), a.max(b))
    }

    pub fn is_positive(&self, a: u32, b: u32) -> bool {
        a == b || self.positives.contains(&Self::key(a, b))
    }

    /// Examples whose anchor has at least one hard negative.
    pub fn with_hard_negatives(&self) -> usize {
        self.examples
            .iter()
            .filter(|&&(a, _)| !self.hard[a as usize].is_empty())
            .count()
    }
}

/// Builds the training set from labelled pairs (`(a, b, positive)`, texts already normalised)
/// and KB records: positive pairs become examples, negative pairs hard negatives of both texts;
/// every similar question of a KB record is an example with its standard question as positive,
/// and the standard questions of other records (of the same category when there are any) are
/// its hard negatives.
pub fn assemble(pairs: &[(String, String, bool)], kb: &[KbRow]) -> TrainData {
    let mut d = TrainData::default();
    let mut index = HashMap::new();
    let mut negatives: Vec<(u32, u32)> = Vec::new();
    fn add_positive(d: &mut TrainData, a: u32, b: u32) {
        if a != b && d.positives.insert(TrainData::key(a, b)) {
            d.examples.push((a, b));
        }
    }
    for (a, b, positive) in pairs {
        let (a, b) = (d.id(&mut index, a), d.id(&mut index, b));
        if *positive {
            add_positive(&mut d, a, b);
        } else if a != b {
            negatives.push((a, b));
        }
    }
    let norm = |s: &str| super::normalize(s);
    let questions: Vec<u32> = kb
        .iter()
        .map(|r| d.id(&mut index, &norm(&r.question)))
        .collect();
    let mut by_category: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, r) in kb.iter().enumerate() {
        by_category
            .entry(r.category.as_deref().unwrap_or(""))
            .or_default()
            .push(i);
    }
    for (i, r) in kb.iter().enumerate() {
        let q = questions[i];
        let mut anchors = Vec::new();
        for s in &r.similar {
            let s = norm(s);
            if s.is_empty() {
                continue;
            }
            let s = d.id(&mut index, &s);
            add_positive(&mut d, s, q);
            anchors.push(s);
        }
        if anchors.is_empty() {
            continue;
        }
        // The next records after this one (cyclically) in its category, else in the file.
        let same = &by_category[r.category.as_deref().unwrap_or("")];
        let pool: Vec<usize> = if same.len() > 1 {
            let at = same.iter().position(|&j| j == i).unwrap_or(0);
            (1..same.len())
                .map(|k| same[(at + k) % same.len()])
                .collect()
        } else {
            (1..kb.len()).map(|k| (i + k) % kb.len()).collect()
        };
        let others: Vec<u32> = pool
            .into_iter()
            .map(|j| questions[j])
            .filter(|&o| o != q)
            .take(MAX_HARD)
            .collect();
        for s in anchors {
            for &o in &others {
                negatives.push((s, o));
            }
        }
    }
    for (a, b) in negatives {
        if d.is_positive(a, b) {
            continue;
        }
        for (x, y) in [(a, b), (b, a)] {
            let h = &mut d.hard[x as usize];
            if h.len() < MAX_HARD && !h.contains(&y) {
                h.push(y);
            }
        }
    }
    d
}

/// A data file with its checksum and the records taken from it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DataFile {
    pub kind: String,
    pub path: String,
    pub sha256: String,
    pub records: usize,
}

/// Reads every pairs and KB file (the first `limit` records of each), failing on the first bad
/// line with `file:line`.
pub fn read_data(
    pairs: &[PathBuf],
    kb: &[PathBuf],
    limit: Option<usize>,
) -> anyhow::Result<(TrainData, Vec<DataFile>)> {
    let mut rows = Vec::new();
    let mut files = Vec::new();
    for p in pairs {
        let recs = crate::eval::read_jsonl::<PairRow>(p, limit, r#"a pair {"a", "b", "label"}"#)?;
        for (line, r) in &recs {
            anyhow::ensure!(
                r.label <= 1,
                "{}:{line}: label must be 0 or 1, got {}",
                p.display(),
                r.label
            );
            let (a, b) = (super::normalize(&r.a), super::normalize(&r.b));
            anyhow::ensure!(
                !a.is_empty() && !b.is_empty(),
                "{}:{line}: \"a\" and \"b\" must not be empty",
                p.display()
            );
            rows.push((a, b, r.label == 1));
        }
        files.push(DataFile {
            kind: "pairs".into(),
            path: p.display().to_string(),
            sha256: sha256_file(p)?,
            records: recs.len(),
        });
    }
    let mut entries = Vec::new();
    for p in kb {
        let recs = crate::eval::read_jsonl::<KbRow>(
            p,
            limit,
            r#"a KB entry {"id", "question", "similar": [...], ...}"#,
        )?;
        for (line, r) in &recs {
            anyhow::ensure!(
                !super::normalize(&r.question).is_empty(),
                "{}:{line}: \"question\" must not be empty",
                p.display()
            );
        }
        files.push(DataFile {
            kind: "kb".into(),
            path: p.display().to_string(),
            sha256: sha256_file(p)?,
            records: recs.len(),
        });
        entries.extend(recs.into_iter().map(|(_, r)| r));
    }
    let d = assemble(&rows, &entries);
    anyhow::ensure!(
        !d.examples.is_empty(),
        "no positive examples: the pairs files need rows labelled 1, or the KB files entries with \"similar\" questions"
    );
    Ok((d, files))
}

// ---------------------------------------------------------------------------------------------
// Loss

/// Multiple-negatives ranking loss: row `i` of `anchors` should be closest to row `targets[i]`
/// of `candidates` (all L2-normalised); mean cross-entropy over `scale` × cosine plus `mask`
/// (additive, anchors × candidates).
pub fn contrastive_loss(
    anchors: &Tensor,
    candidates: &Tensor,
    targets: &[u32],
    mask: &Tensor,
    scale: f64,
) -> candle_core::Result<Tensor> {
    let logits = ((anchors.matmul(&candidates.t()?)? * scale)? + mask)?;
    let t = Tensor::from_slice(targets, targets.len(), anchors.device())?;
    candle_nn::loss::cross_entropy(&logits, &t)
}

/// The loss of one batch of examples: `picks` holds the hard negative drawn for each example's
/// anchor and positive (if any).
fn batch_loss(
    layers: &[TunedLayer],
    states: &[Vec<f32>],
    dim: usize,
    data: &TrainData,
    batch: &[(u32, u32)],
    picks: &[(Option<u32>, Option<u32>)],
) -> candle_core::Result<Tensor> {
    let mut unique: Vec<u32> = Vec::new();
    let mut row: HashMap<u32, u32> = HashMap::new();
    let mut at = |t: u32| -> u32 {
        *row.entry(t).or_insert_with(|| {
            unique.push(t);
            unique.len() as u32 - 1
        })
    };
    let anchors: Vec<u32> = batch.iter().map(|e| e.0).collect();
    let positives: Vec<u32> = batch.iter().map(|e| e.1).collect();
    let hard_a: Vec<u32> = picks.iter().filter_map(|p| p.0).collect();
    let hard_b: Vec<u32> = picks.iter().filter_map(|p| p.1).collect();
    let rows = |ids: &[u32], at: &mut dyn FnMut(u32) -> u32| -> Vec<u32> {
        ids.iter().map(|&t| at(t)).collect()
    };
    let (ra, rp) = (rows(&anchors, &mut at), rows(&positives, &mut at));
    let (rha, rhb) = (rows(&hard_a, &mut at), rows(&hard_b, &mut at));
    let views: Vec<&[f32]> = unique
        .iter()
        .map(|&t| states[t as usize].as_slice())
        .collect();
    let (h, m01, add) = pad_states(&views, dim)?;
    let u = pool(&run_layers(layers, &h, &add)?, &m01)?;
    let dev = u.device().clone();
    let select = |r: &[u32]| -> candle_core::Result<Tensor> {
        u.index_select(&Tensor::from_slice(r, r.len(), &dev)?, 0)
    };
    let targets: Vec<u32> = (0..batch.len() as u32).collect();
    // One direction: rows `from` against candidates `to` ++ `extra`.
    let direction = |from: &[u32],
                     rf: &[u32],
                     to: &[u32],
                     rt: &[u32],
                     extra: &[u32],
                     re: &[u32]|
     -> candle_core::Result<Tensor> {
        let cand_ids: Vec<u32> = to.iter().chain(extra).copied().collect();
        let mut mask = vec![0f32; from.len() * cand_ids.len()];
        for (i, &a) in from.iter().enumerate() {
            for (j, &c) in cand_ids.iter().enumerate() {
                if j != i && (c == to[i] || data.is_positive(a, c)) {
                    mask[i * cand_ids.len() + j] = MASKED;
                }
            }
        }
        let mask = Tensor::from_vec(mask, (from.len(), cand_ids.len()), &dev)?;
        let cand = if re.is_empty() {
            select(rt)?
        } else {
            Tensor::cat(&[&select(rt)?, &select(re)?], 0)?
        };
        contrastive_loss(&select(rf)?, &cand, &targets, &mask, SCALE)
    };
    let l1 = direction(&anchors, &ra, &positives, &rp, &hard_a, &rha)?;
    let l2 = direction(&positives, &rp, &anchors, &ra, &hard_b, &rhb)?;
    (l1 + l2)? / 2.0
}

// ---------------------------------------------------------------------------------------------
// Checkpoints

/// Everything a checkpoint must share with the run that resumes it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Fingerprint {
    base_version: String,
    base_weights_sha256: String,
    /// (kind, sha256) of every data file, in order.
    data: Vec<(String, String)>,
    layers: usize,
    learning_rate: f64,
    warmup: f64,
    batch_size: usize,
    max_tokens: usize,
    seed: u64,
    limit: Option<usize>,
    #[serde(default)]
    mine_negatives: usize,
    #[serde(default)]
    adapter_rank: usize,
    #[serde(default = "default_alpha")]
    adapter_alpha: f64,
}

impl Fingerprint {
    /// The first field that differs, as "field (checkpoint X, now Y)".
    fn difference(&self, now: &Fingerprint) -> Option<String> {
        let (a, b) = (
            serde_json::to_value(self).expect("serialises"),
            serde_json::to_value(now).expect("serialises"),
        );
        let (a, b) = (a.as_object()?, b.as_object()?);
        a.iter().find_map(|(k, va)| {
            let vb = &b[k];
            (va != vb).then(|| {
                let name = if k == "data" {
                    "data (files or their contents)".to_string()
                } else {
                    k.replace('_', "-")
                };
                format!("{name} (checkpoint {va}, now {vb})")
            })
        })
    }
}

#[derive(Debug, Serialize, Deserialize)]
struct CheckpointState {
    /// Optimiser steps done.
    step: usize,
    /// The epochs the run that wrote it was asked for (its schedule).
    epochs: usize,
    fingerprint: Fingerprint,
    initial_loss: f64,
}

const STATE_FILE: &str = "state.json";
const CKPT_WEIGHTS: &str = "layers.safetensors";

fn save_checkpoint(dir: &Path, adam: &AdamW, state: &CheckpointState) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    crate::optim::save_tensors(&adam.tensors(), &dir.join(CKPT_WEIGHTS))?;
    crate::eval::report::write_atomic(
        &dir.join(STATE_FILE),
        serde_json::to_string_pretty(state)?.as_bytes(),
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The run

/// `training.json`, written beside the tuned model's files (and returned).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainingCard {
    pub model_version: String,
    pub base: BaseCard,
    pub data: Vec<DataFile>,
    pub options: EmbedTrainOptions,
    /// The top `layers_tuned` of `encoder_layers` layers were trained.
    pub encoder_layers: usize,
    pub layers_tuned: usize,
    /// Parameters the optimiser changed (the layers' weights, or their adapters').
    #[serde(default)]
    pub trained_parameters: usize,
    pub texts: usize,
    pub examples: usize,
    pub examples_with_hard_negatives: usize,
    /// Hard negatives mined with the starting model (`mine_negatives`).
    #[serde(default)]
    pub mined_negatives: usize,
    pub steps_per_epoch: usize,
    /// Optimiser steps in all (with those of the checkpoint a run resumed from).
    pub steps: usize,
    pub resumed_from_step: Option<usize>,
    pub steps_this_run: usize,
    /// Loss on a fixed sample of the examples (up to 512) before any training and at the end.
    pub initial_loss: f64,
    pub final_loss: f64,
    /// Mean training loss over the last epoch's steps run here.
    pub last_epoch_train_loss: Option<f64>,
    pub examples_per_second: f64,
    pub caching_seconds: f64,
    pub training_seconds: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BaseCard {
    pub path: String,
    pub name: String,
    pub version: String,
    pub weights_sha256: String,
}

pub const TRAINING_FILE: &str = "training.json";

fn probe_loss(
    layers: &[TunedLayer],
    states: &[Vec<f32>],
    dim: usize,
    data: &TrainData,
    probe: &[usize],
    batch_size: usize,
) -> candle_core::Result<f64> {
    let mut sum = 0f64;
    for chunk in probe.chunks(batch_size.max(2)) {
        let batch: Vec<(u32, u32)> = chunk.iter().map(|&i| data.examples[i]).collect();
        let picks: Vec<_> = batch
            .iter()
            .map(|&(a, b)| {
                (
                    data.hard[a as usize].first().copied(),
                    data.hard[b as usize].first().copied(),
                )
            })
            .collect();
        let l = batch_loss(layers, states, dim, data, &batch, &picks)?;
        sum += l.to_scalar::<f32>()? as f64 * chunk.len() as f64;
    }
    Ok(sum / probe.len().max(1) as f64)
}

/// Mines up to `k` hard negatives for every text that has a positive, with the starting model:
/// its nearest training texts that are neither the text nor a known positive of it and whose
/// cosine stays below the text's least similar positive (closer ones are too often unlabelled
/// paraphrases). They follow the text's labelled hard negatives. Returns the number added.
fn mine_negatives(
    layers: &[TunedLayer],
    states: &[Vec<f32>],
    dim: usize,
    data: &mut TrainData,
    k: usize,
    stop: Option<&AtomicBool>,
) -> anyhow::Result<usize> {
    let n = data.texts.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(states[i].len()));
    let mut vectors = vec![0f32; n * dim];
    let bar = crate::eval::texts_bar(n, "mining hard negatives: encoding".to_string());
    for chunk in order.chunks(128) {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            bar.abandon();
            anyhow::bail!("interrupted before training started; nothing was written");
        }
        let views: Vec<&[f32]> = chunk.iter().map(|&i| states[i].as_slice()).collect();
        let (h, m01, add) = pad_states(&views, dim)?;
        let u = pool(&run_layers(layers, &h, &add)?, &m01)?.to_vec2::<f32>()?;
        for (&i, row) in chunk.iter().zip(u) {
            vectors[i * dim..(i + 1) * dim].copy_from_slice(&row);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let dot = |a: u32, b: u32| -> f32 {
        let (a, b) = (a as usize * dim, b as usize * dim);
        crate::index::dense::dot(&vectors[a..a + dim], &vectors[b..b + dim])
    };
    // Every text of an example with its least similar positive's cosine.
    let mut bound: BTreeMap<u32, f32> = BTreeMap::new();
    for &(a, b) in &data.examples {
        let c = dot(a, b);
        for t in [a, b] {
            let e = bound.entry(t).or_insert(f32::INFINITY);
            *e = e.min(c);
        }
    }
    let anchors: Vec<(u32, f32)> = bound.into_iter().collect();
    let all = Tensor::from_vec(vectors.clone(), (n, dim), &Device::Cpu)?;
    let bar = crate::eval::texts_bar(
        anchors.len(),
        "mining hard negatives: nearest texts".to_string(),
    );
    let mut added = 0;
    for chunk in anchors.chunks(256) {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            bar.abandon();
            anyhow::bail!("interrupted before training started; nothing was written");
        }
        let rows: Vec<f32> = chunk
            .iter()
            .flat_map(|&(t, _)| {
                vectors[t as usize * dim..(t as usize + 1) * dim]
                    .iter()
                    .copied()
            })
            .collect();
        let q = Tensor::from_vec(rows, (chunk.len(), dim), &Device::Cpu)?;
        let scores = q.matmul(&all.t()?)?.to_vec2::<f32>()?;
        let found: Vec<Vec<u32>> = {
            use rayon::prelude::*;
            chunk
                .par_iter()
                .zip(scores.par_iter())
                .map(|(&(t, limit), row)| {
                    let mut cand: Vec<(f32, u32)> = row
                        .iter()
                        .enumerate()
                        .filter(|&(j, &c)| c < limit && !data.is_positive(t, j as u32))
                        .map(|(j, &c)| (c, j as u32))
                        .collect();
                    let take = k.min(cand.len());
                    if take < cand.len() {
                        cand.select_nth_unstable_by(take, |x, y| y.0.total_cmp(&x.0));
                    }
                    cand.truncate(take);
                    cand.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
                    cand.into_iter().map(|(_, j)| j).collect()
                })
                .collect()
        };
        for (&(t, _), negs) in chunk.iter().zip(found) {
            let h = &mut data.hard[t as usize];
            for j in negs {
                if !h.contains(&j) {
                    h.push(j);
                    added += 1;
                }
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    tracing::info!("mined {added} hard negatives for {} texts", anchors.len());
    Ok(added)
}

/// Fine-tunes the top layers of the model in `base` on `pairs` and `kb` files and writes the
/// tuned model directory `out`; checkpoints go to `<out>.checkpoint/` (kept afterwards, so a
/// later `resume` with more epochs continues from there).
pub fn train(
    base: &Path,
    pairs: &[PathBuf],
    kb: &[PathBuf],
    out: &Path,
    opts: &EmbedTrainOptions,
    resume: bool,
    stop: Option<&AtomicBool>,
) -> anyhow::Result<TrainingCard> {
    let started = Instant::now();
    anyhow::ensure!(
        !pairs.is_empty() || !kb.is_empty(),
        "give at least one --pairs or --kb file"
    );
    anyhow::ensure!(
        opts.batch_size >= 2 && opts.epochs >= 1 && opts.checkpoint_every >= 1,
        "--batch-size must be at least 2, --epochs and --checkpoint-every at least 1"
    );
    anyhow::ensure!(
        (0.0..1.0).contains(&opts.warmup) && opts.learning_rate > 0.0,
        "--warmup must be in [0, 1) and --learning-rate positive"
    );
    anyhow::ensure!(opts.max_tokens >= 4, "--max-tokens must be at least 4");
    anyhow::ensure!(
        opts.adapter_alpha > 0.0 && opts.adapter_alpha.is_finite(),
        "--adapter-alpha must be positive"
    );
    // Everything cheap (and every input error) first.
    let (mut data, files) = read_data(pairs, kb, opts.limit)?;
    let cfg = bert_config(base)?;
    let l = cfg.num_hidden_layers;
    anyhow::ensure!(
        opts.layers <= l,
        "--layers must be between 0 (all) and {l} (the encoder's layers)"
    );
    let tuned_layers = if opts.layers == 0 { l } else { opts.layers };
    let manifest = crate::model::load_manifest(base, false)?;
    let base_sha = manifest
        .files
        .get(WEIGHTS_FILE)
        .cloned()
        .context("the base model's manifest lists no weights")?;
    let fingerprint = Fingerprint {
        base_version: manifest.version.clone(),
        base_weights_sha256: base_sha.clone(),
        data: files
            .iter()
            .map(|f| (f.kind.clone(), f.sha256.clone()))
            .collect(),
        layers: tuned_layers,
        learning_rate: opts.learning_rate,
        warmup: opts.warmup,
        batch_size: opts.batch_size,
        max_tokens: opts.max_tokens,
        seed: opts.seed,
        limit: opts.limit,
        mine_negatives: opts.mine_negatives,
        adapter_rank: opts.adapter_rank,
        adapter_alpha: opts.adapter_alpha,
    };
    let checkpoint = checkpoint_dir(out);
    let resumed: Option<(CheckpointState, HashMap<String, Tensor>)> = if resume
        && checkpoint.join(STATE_FILE).exists()
    {
        let p = checkpoint.join(STATE_FILE);
        let st: CheckpointState = serde_json::from_str(
            &std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?,
        )
        .with_context(|| format!("reading {}", p.display()))?;
        if let Some(d) = st.fingerprint.difference(&fingerprint) {
            anyhow::bail!(
                "the checkpoint in {} was made with other settings: {d}; run without --resume to start over",
                checkpoint.display()
            );
        }
        let w = checkpoint.join(CKPT_WEIGHTS);
        let t = candle_core::safetensors::load(&w, &Device::Cpu)
            .with_context(|| format!("reading {}", w.display()))?;
        Some((st, t))
    } else {
        if resume {
            tracing::warn!(
                "no checkpoint in {}: starting from the base model",
                checkpoint.display()
            );
        }
        None
    };

    // Tokenise as the serving embedder does (normalised text, the manifest's prefix).
    let tokenizer = super::tokenize::TextTokenizer::from_file(
        &base.join("tokenizer.json"),
        &manifest.prefix,
        opts.max_tokens.min(manifest.max_tokens),
    )?;
    let tokens: Vec<Vec<u32>> = data
        .texts
        .iter()
        .map(|t| Ok(tokenizer.encode(t)?.ids))
        .collect::<anyhow::Result<_>>()?;

    // The frozen layers' outputs, once per text (longest first keeps padding low).
    let caching = Instant::now();
    let dim = cfg.hidden_size;
    let (lower, _) = Lower::load(base, l - tuned_layers)?;
    let mut order: Vec<usize> = (0..tokens.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(tokens[i].len()));
    let mut states: Vec<Vec<f32>> = vec![Vec::new(); tokens.len()];
    let bar = crate::eval::texts_bar(
        tokens.len(),
        format!("running the {} frozen layers", l - tuned_layers),
    );
    for chunk in order.chunks(64) {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            bar.abandon();
            anyhow::bail!("interrupted before training started; nothing was written");
        }
        let refs: Vec<&[u32]> = chunk.iter().map(|&i| tokens[i].as_slice()).collect();
        for (&i, s) in chunk.iter().zip(lower.forward(&refs)?) {
            states[i] = s;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    drop(lower);
    let caching_seconds = caching.elapsed().as_secs_f64();
    tracing::info!(
        "{} texts through the frozen layers in {caching_seconds:.1} s",
        tokens.len()
    );

    // The tuned layers, from the base (then possibly the checkpoint): their weights as
    // variables, or frozen with adapters as the variables.
    let vm = VarMap::new();
    let weights = base.join(WEIGHTS_FILE);
    let layers = if opts.adapter_rank > 0 {
        // SAFETY: the weights file is memory-mapped read-only and not modified while mapped.
        let frozen = unsafe {
            VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu)
                .with_context(|| format!("reading {}", weights.display()))?
        };
        let mut layers = build_layers(frozen, &cfg, tuned_layers)?;
        let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
        for (j, layer) in layers.iter_mut().enumerate() {
            let i = l - tuned_layers + j;
            layer.add_adapters(
                vb.pp(format!("encoder.layer.{i}")),
                opts.adapter_rank,
                opts.adapter_alpha,
            )?;
        }
        // Every adapter's `A` seeded uniform in ±1/√fan-in; the `B`s stay zero.
        let mut rng = StdRng::seed_from_u64(opts.seed ^ 0x10a4_ada9);
        seeded_init(&vm, &mut rng, |k| k.ends_with(".lora_a"))?;
        layers
    } else {
        let layers = build_layers(
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
            &cfg,
            tuned_layers,
        )?;
        // SAFETY: the weights file is memory-mapped read-only and not modified while mapped.
        let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(&weights) }
            .with_context(|| format!("reading {}", weights.display()))?;
        for (k, var) in vm.data().lock().expect("var map lock").iter() {
            var.set(&st.load(k, &Device::Cpu)?.to_dtype(DType::F32)?)
                .with_context(|| format!("initialising {k} from the base model"))?;
        }
        layers
    };
    let trained_parameters: usize = vm
        .all_vars()
        .iter()
        .map(|v| v.as_tensor().elem_count())
        .sum();
    let what = if opts.adapter_rank > 0 {
        format!(
            "training rank-{} adapters on {tuned_layers} layers",
            opts.adapter_rank
        )
    } else {
        format!("training {tuned_layers} layers")
    };
    tracing::info!("{what}: {trained_parameters} parameters");
    let mined = if opts.mine_negatives > 0 {
        mine_negatives(&layers, &states, dim, &mut data, opts.mine_negatives, stop)?
    } else {
        0
    };
    let mut adam = AdamW::new(&vm)?;

    let n = data.examples.len();
    let steps_per_epoch = n.div_ceil(opts.batch_size);
    let total = steps_per_epoch * opts.epochs;
    let schedule = Schedule::new(total, (total as f64 * opts.warmup).ceil() as usize);
    let mut probe: Vec<usize> = (0..n).collect();
    probe.shuffle(&mut StdRng::seed_from_u64(opts.seed ^ 0x9e37_79b9));
    probe.truncate(PROBE_EXAMPLES);
    let (start_step, initial_loss) = match &resumed {
        Some((st, tensors)) => {
            adam.restore(tensors, st.step)?;
            tracing::info!(
                "resuming from {} at step {} (of {total})",
                checkpoint.display(),
                st.step
            );
            (st.step, st.initial_loss)
        }
        None => (
            0,
            probe_loss(&layers, &states, dim, &data, &probe, opts.batch_size)?,
        ),
    };
    let state_at = |step: usize| CheckpointState {
        step,
        epochs: opts.epochs,
        fingerprint: fingerprint.clone(),
        initial_loss,
    };

    let bar = indicatif::ProgressBar::new(total as u64).with_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} step {pos}/{len} (eta {eta})")
            .expect("template"),
    );
    bar.set_position(start_step.min(total) as u64);
    let training = Instant::now();
    let mut seen = 0usize;
    let mut step = start_step;
    let mut last_epoch_train_loss = None;
    while step < total {
        let epoch = step / steps_per_epoch;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut StdRng::seed_from_u64(
            opts.seed.wrapping_add(epoch as u64),
        ));
        let (mut loss_sum, mut count) = (0f64, 0usize);
        for batch_idx in order
            .chunks(opts.batch_size)
            .skip(step - epoch * steps_per_epoch)
        {
            if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                bar.abandon();
                save_checkpoint(&checkpoint, &adam, &state_at(step))?;
                anyhow::bail!(
                    "interrupted at step {step} of {total}; the checkpoint in {} continues it (add --resume)",
                    checkpoint.display()
                );
            }
            let lr_scale = schedule.scale(step);
            let mut rng = StdRng::seed_from_u64(opts.seed.wrapping_mul(0x100_0193) ^ step as u64);
            let mut pick = |t: u32| -> Option<u32> {
                let h = &data.hard[t as usize];
                (!h.is_empty()).then(|| h[rng.random_range(0..h.len())])
            };
            let batch: Vec<(u32, u32)> = batch_idx.iter().map(|&i| data.examples[i]).collect();
            let picks: Vec<_> = batch.iter().map(|&(a, b)| (pick(a), pick(b))).collect();
            let loss = batch_loss(&layers, &states, dim, &data, &batch, &picks)?;
            let grads = loss.backward()?;
            adam.step(&grads, opts.learning_rate * lr_scale)?;
            let lv = loss.to_scalar::<f32>()? as f64;
            loss_sum += lv * batch.len() as f64;
            count += batch.len();
            seen += batch.len();
            step += 1;
            bar.set_message(format!(
                "{what}, epoch {}/{}: loss {:.4}, {:.1} examples/s",
                epoch + 1,
                opts.epochs,
                loss_sum / count as f64,
                seen as f64 / training.elapsed().as_secs_f64()
            ));
            bar.inc(1);
            if step % opts.checkpoint_every == 0 && step % steps_per_epoch != 0 {
                save_checkpoint(&checkpoint, &adam, &state_at(step))?;
            }
        }
        last_epoch_train_loss = Some(loss_sum / count.max(1) as f64);
        tracing::info!(
            "epoch {}: training loss {:.4}",
            epoch + 1,
            loss_sum / count.max(1) as f64
        );
        save_checkpoint(&checkpoint, &adam, &state_at(step))?;
    }
    bar.finish_and_clear();
    let training_seconds = training.elapsed().as_secs_f64();
    let examples_per_second = seen as f64 / training_seconds.max(1e-9);
    let final_loss = probe_loss(&layers, &states, dim, &data, &probe, opts.batch_size)?;
    drop(states);

    // The model directory: the base's files, its weights with the tuned layers replaced
    // (adapters merged into the weights they adapt).
    let tuned: HashMap<String, Tensor> = if opts.adapter_rank > 0 {
        let mut m = HashMap::new();
        for (j, layer) in layers.iter().enumerate() {
            let prefix = format!("encoder.layer.{}", l - tuned_layers + j);
            m.extend(layer.merged_weights(&prefix)?);
        }
        m
    } else {
        adam.vars()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect()
    };
    let mut card = TrainingCard {
        model_version: String::new(),
        base: BaseCard {
            path: base.display().to_string(),
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            weights_sha256: base_sha,
        },
        data: files,
        options: opts.clone(),
        encoder_layers: l,
        layers_tuned: tuned_layers,
        trained_parameters,
        texts: data.texts.len(),
        examples: n,
        examples_with_hard_negatives: data.with_hard_negatives(),
        mined_negatives: mined,
        steps_per_epoch,
        steps: step,
        resumed_from_step: resumed.as_ref().map(|(st, _)| st.step),
        steps_this_run: step - start_step,
        initial_loss,
        final_loss,
        last_epoch_train_loss,
        examples_per_second,
        caching_seconds,
        training_seconds,
        seconds: 0.0,
    };
    crate::atomic::replace_dir(out, ".kefu-embed-", |dir| {
        write_model(base, &manifest, &tuned, dir, &mut card, started)
    })?;
    Ok(card)
}

fn write_model(
    base: &Path,
    manifest: &Manifest,
    tuned: &HashMap<String, Tensor>,
    dir: &Path,
    card: &mut TrainingCard,
    started: Instant,
) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(base).with_context(|| format!("reading {}", base.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_file()
            && ![
                WEIGHTS_FILE,
                crate::model::manifest::MANIFEST_FILE,
                TRAINING_FILE,
            ]
            .contains(&name.as_str())
        {
            std::fs::copy(entry.path(), dir.join(&name))
                .with_context(|| format!("copying {}", entry.path().display()))?;
        }
    }
    let weights = base.join(WEIGHTS_FILE);
    // SAFETY: the weights file is memory-mapped read-only and not modified while mapped.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(&weights) }
        .with_context(|| format!("reading {}", weights.display()))?;
    let mut all: HashMap<String, Tensor> = HashMap::new();
    for (name, _) in st.tensors() {
        let t = st.load(&name, &Device::Cpu)?;
        all.insert(name, t);
    }
    for (k, t) in tuned {
        let old = all
            .get(k)
            .with_context(|| format!("the base model has no tensor {k}"))?;
        anyhow::ensure!(
            old.dims() == t.dims(),
            "{k}: shape {:?} in the base, {:?} tuned",
            old.dims(),
            t.dims()
        );
        let t = t.to_dtype(old.dtype())?;
        all.insert(k.clone(), t);
    }
    candle_core::safetensors::save(&all, dir.join(WEIGHTS_FILE))?;
    drop(all);
    let m = Manifest::compute(
        dir,
        ManifestSpec {
            name: format!("{}-tuned", manifest.name),
            dimension: manifest.dimension,
            pooling: manifest.pooling,
            prefix: manifest.prefix.clone(),
            max_tokens: manifest.max_tokens,
        },
    )?;
    m.write(dir)?;
    card.model_version = m.version;
    card.seconds = started.elapsed().as_secs_f64();
    std::fs::write(dir.join(TRAINING_FILE), serde_json::to_string_pretty(card)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(rows: &[&[f32]]) -> Tensor {
        let cols = rows[0].len();
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_vec(flat, (rows.len(), cols), &Device::Cpu).unwrap()
    }

    #[test]
    fn loss_of_known_cosines() {
        // Cosines 0.6 (target) and 1.0: logits 12 and 20, loss = ln(e^12 + e^20) - 12.
        let a = t(&[&[1.0, 0.0]]);
        let c = t(&[&[0.6, 0.8], &[1.0, 0.0]]);
        let zero = Tensor::zeros((1, 2), DType::F32, &Device::Cpu).unwrap();
        let l = contrastive_loss(&a, &c, &[0], &zero, SCALE)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let want = (12f64.exp() + 20f64.exp()).ln() - 12.0;
        assert!((l - want).abs() < 1e-4, "{l} vs {want}");
        // Masking the second candidate leaves only the target: loss 0.
        let mask = t(&[&[0.0, MASKED]]);
        let l = contrastive_loss(&a, &c, &[0], &mask, SCALE)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(l.abs() < 1e-5, "{l}");
        // Two anchors, mean of both rows: row 2 targets candidate 1 (cosine 1 vs 0.8).
        let a = t(&[&[1.0, 0.0], &[0.0, 1.0]]);
        let c = t(&[&[0.0, 1.0], &[0.6, 0.8]]);
        let zero = Tensor::zeros((2, 2), DType::F32, &Device::Cpu).unwrap();
        let l = contrastive_loss(&a, &c, &[1, 0], &zero, SCALE)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as f64;
        let row1 = (0f64.exp() + 12f64.exp()).ln() - 12.0;
        let row2 = (20f64.exp() + 16f64.exp()).ln() - 20.0;
        assert!((l - (row1 + row2) / 2.0).abs() < 1e-4, "{l}");
    }

    fn kb(id: &str, q: &str, similar: &[&str], cat: Option<&str>) -> KbRow {
        KbRow {
            id: Some(id.into()),
            question: q.into(),
            similar: similar.iter().map(|s| s.to_string()).collect(),
            category: cat.map(Into::into),
        }
    }

    #[test]
    fn kb_similar_questions_are_positives_and_category_peers_hard_negatives() {
        let rows = vec![
            kb(
                "1",
                "怎么退款",
                &["钱怎么退回来", "退款 在哪里"],
                Some("refunds"),
            ),
            kb("2", "退款多久到账", &[], Some("refunds")),
            kb("3", "怎么修改地址", &["地址写错了"], Some("orders")),
            kb("4", "订单在哪里看", &[], Some("orders")),
            kb("5", "发票怎么开", &[], Some("invoices")),
        ];
        let d = assemble(&[], &rows);
        let id = |s: &str| d.texts.iter().position(|t| t == s).unwrap() as u32;
        let mut ex: Vec<(u32, u32)> = d.examples.clone();
        ex.sort();
        let mut want = vec![
            (id("钱怎么退回来"), id("怎么退款")),
            (id("退款 在哪里"), id("怎么退款")),
            (id("地址写错了"), id("怎么修改地址")),
        ];
        want.sort();
        assert_eq!(ex, want);
        // Hard negatives from the same category only.
        assert_eq!(
            d.hard[id("钱怎么退回来") as usize],
            vec![id("退款多久到账")]
        );
        assert_eq!(d.hard[id("地址写错了") as usize], vec![id("订单在哪里看")]);
        assert!(d.is_positive(id("怎么退款"), id("退款 在哪里")));
        assert_eq!(d.with_hard_negatives(), 3);
    }

    #[test]
    fn negative_pairs_become_hard_negatives_of_both_texts() {
        let p = |a: &str, b: &str, y: bool| (a.to_string(), b.to_string(), y);
        let d = assemble(
            &[
                p("花呗怎么还款", "花呗如何还钱", true),
                p("花呗怎么还款", "借呗怎么还款", false),
                p("花呗如何还钱", "花呗怎么还款", true), // the same pair reversed: once
                p("借呗额度", "借呗额度", true),         // identical texts: no example
                p("花呗如何还钱", "花呗怎么还款", false), // contradicts a positive: ignored
            ],
            &[],
        );
        let id = |s: &str| d.texts.iter().position(|t| t == s).unwrap() as u32;
        assert_eq!(d.examples, vec![(id("花呗怎么还款"), id("花呗如何还钱"))]);
        assert_eq!(
            d.hard[id("花呗怎么还款") as usize],
            vec![id("借呗怎么还款")]
        );
        assert_eq!(
            d.hard[id("借呗怎么还款") as usize],
            vec![id("花呗怎么还款")]
        );
        assert!(d.hard[id("花呗如何还钱") as usize].is_empty());
    }

    #[test]
    fn fingerprint_names_the_difference() {
        let a = Fingerprint {
            base_version: "m@1".into(),
            base_weights_sha256: "x".into(),
            data: vec![("pairs".into(), "abc".into())],
            layers: 2,
            learning_rate: 5e-5,
            warmup: 0.1,
            batch_size: 32,
            max_tokens: 64,
            seed: 42,
            limit: None,
            mine_negatives: 0,
            adapter_rank: 0,
            adapter_alpha: 16.0,
        };
        assert_eq!(a.difference(&a.clone()), None);
        let r = Fingerprint {
            adapter_rank: 8,
            ..a.clone()
        };
        assert_eq!(
            a.difference(&r).unwrap(),
            "adapter-rank (checkpoint 0, now 8)"
        );
        let b = Fingerprint {
            batch_size: 16,
            ..a.clone()
        };
        assert_eq!(
            a.difference(&b).unwrap(),
            "batch-size (checkpoint 32, now 16)"
        );
        let c = Fingerprint {
            data: vec![("pairs".into(), "abd".into())],
            ..a.clone()
        };
        assert!(a.difference(&c).unwrap().starts_with("data"));
    }
}
