//! Fine-tuning the encoder's top layers for intent classification, on CPU with candle's
//! autograd. The lower layers stay frozen: their outputs are computed once per training text
//! and cached in memory, so each step only runs (forward and backward) the top `layers`
//! transformer layers, mean pooling and a temporary linear head. Afterwards the tuned layers
//! produce the sentence vectors the ordinary heads (`train::fit`) are trained on, and the
//! intent model carries them: at serving time the lower layers come from the serving encoder
//! (f32, candle-transformers) and the tuned ones from the intent model.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use candle_core::{DType, Device, Module, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::features::Matrix;
use super::tuned::{
    FinetuneCard, Lower, TUNED_PREFIX, TunedEncoder, bert_config, build_layers, pad_states, pool,
    run_layers,
};
use crate::model::manifest::WEIGHTS_FILE;
use crate::optim::{AdamW, Schedule, save_tensors, seeded_init};

pub use crate::optim::checkpoint_dir;

/// What `kefu train intent --finetune-layers` can change.
#[derive(Debug, Clone, Serialize)]
pub struct FinetuneOptions {
    /// Top transformer layers to train (the rest stay frozen).
    pub layers: usize,
    pub epochs: usize,
    pub learning_rate: f64,
    /// Learning rate of the temporary classification head.
    pub head_learning_rate: f64,
    pub batch_size: usize,
    /// Share of the steps with a linearly rising learning rate.
    pub warmup: f64,
    pub seed: u64,
}

impl Default for FinetuneOptions {
    fn default() -> Self {
        Self {
            layers: 0,
            epochs: 2,
            learning_rate: 1e-4,
            head_learning_rate: 2e-3,
            batch_size: 32,
            warmup: 0.1,
            seed: 42,
        }
    }
}

/// The result of fine-tuning: the tuned layers' tensors (prefixed) and the encoder that uses
/// them, plus the vectors of the training texts.
pub struct Tuned {
    pub card: FinetuneCard,
    pub tensors: HashMap<String, Tensor>,
    pub encoder: TunedEncoder,
    pub train_vectors: Matrix,
    pub final_loss: f64,
    pub examples_per_second: f64,
}

#[derive(Serialize, Deserialize)]
struct CheckpointState {
    epochs_done: usize,
    layers: usize,
    /// Optimiser steps done; the optimisers' moments are in the weights file beside. `None`:
    /// written before kefu kept them (weights only).
    #[serde(default)]
    steps: Option<usize>,
}

/// Fine-tunes the top `opts.layers` layers of the encoder in `encoder_dir` on tokenised texts
/// with labels `y` (indices below `classes`). After every epoch the tuned layers, the head and
/// both optimisers' state are saved in `checkpoint`; with `resume`, a run continues from there.
#[allow(clippy::too_many_arguments)] // data, options, checkpointing: each a distinct input
pub fn finetune(
    encoder_dir: &Path,
    tokens: &[Vec<u32>],
    y: &[u32],
    classes: usize,
    opts: &FinetuneOptions,
    checkpoint: &Path,
    resume: bool,
    stop: Option<&AtomicBool>,
) -> anyhow::Result<Tuned> {
    let cfg = bert_config(encoder_dir)?;
    let l = cfg.num_hidden_layers;
    anyhow::ensure!(
        (1..=l).contains(&opts.layers),
        "--finetune-layers must be between 1 and {l} (the encoder's layers)"
    );
    anyhow::ensure!(
        opts.batch_size > 0 && opts.epochs > 0,
        "batch size and epochs must be at least 1"
    );
    let dim = cfg.hidden_size;
    let (lower, _) = Lower::load(encoder_dir, l - opts.layers)?;

    // The frozen layers' outputs, once per text (longest first keeps padding low).
    let mut order: Vec<usize> = (0..tokens.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(tokens[i].len()));
    let mut states: Vec<Vec<f32>> = vec![Vec::new(); tokens.len()];
    let bar = crate::eval::texts_bar(
        tokens.len(),
        format!("running the {} frozen layers", l - opts.layers),
    );
    for chunk in order.chunks(64) {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            bar.abandon();
            anyhow::bail!("interrupted before fine-tuning started; nothing was written");
        }
        let refs: Vec<&[u32]> = chunk.iter().map(|&i| tokens[i].as_slice()).collect();
        for (&i, s) in chunk.iter().zip(lower.forward(&refs)?) {
            states[i] = s;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();

    let mut vm = VarMap::new();
    let vb = VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu);
    let layers = build_layers(vb, &cfg, opts.layers)?;
    let state_file = checkpoint.join("state.json");
    let ckpt_weights = checkpoint.join("layers.safetensors");
    let resumed: Option<CheckpointState> = if resume && state_file.exists() {
        let st: CheckpointState = serde_json::from_str(&std::fs::read_to_string(&state_file)?)
            .with_context(|| format!("reading {}", state_file.display()))?;
        anyhow::ensure!(
            st.layers == opts.layers,
            "the checkpoint in {} tunes {} layers, not {}",
            checkpoint.display(),
            st.layers,
            opts.layers
        );
        Some(st)
    } else {
        None
    };
    vm.load(encoder_dir.join(WEIGHTS_FILE))
        .context("initialising the tuned layers from the encoder")?;
    let head_vm = VarMap::new();
    let head = candle_nn::linear(
        dim,
        classes,
        VarBuilder::from_varmap(&head_vm, DType::F32, &Device::Cpu).pp("head"),
    )?;
    seeded_init(&head_vm, &mut StdRng::seed_from_u64(opts.seed), |_| true)?;
    let mut opt = AdamW::new(&vm)?;
    let mut head_opt = AdamW::new(&head_vm)?;
    let mut start_epoch = 0;
    if let Some(st) = &resumed {
        let saved = candle_core::safetensors::load(&ckpt_weights, &Device::Cpu)
            .with_context(|| format!("reading {}", ckpt_weights.display()))?;
        match st.steps {
            Some(steps) => {
                opt.restore(&saved, steps)?;
                head_opt.restore(&saved, steps)?;
            }
            None => {
                tracing::warn!(
                    "the checkpoint in {} has no optimiser state (an older kefu wrote it): the optimiser starts afresh",
                    checkpoint.display()
                );
                for (k, var) in opt.vars() {
                    let t = saved
                        .get(k)
                        .with_context(|| format!("the checkpoint has no tensor {k}"))?;
                    var.set(t)?;
                }
            }
        }
        start_epoch = st.epochs_done;
        tracing::info!(
            "resuming from {} after epoch {start_epoch}",
            checkpoint.display()
        );
    }
    // Both optimisers (layers and head) in one file; their variables' names do not overlap.
    let save_checkpoint =
        |opt: &AdamW, head_opt: &AdamW, epochs_done: usize| -> anyhow::Result<()> {
            std::fs::create_dir_all(checkpoint)
                .with_context(|| format!("creating {}", checkpoint.display()))?;
            let mut tensors = opt.tensors();
            tensors.extend(head_opt.tensors());
            save_tensors(&tensors, &ckpt_weights)?;
            crate::eval::report::write_atomic(
                &state_file,
                serde_json::to_string(&CheckpointState {
                    epochs_done,
                    layers: opts.layers,
                    steps: Some(opt.steps()),
                })?
                .as_bytes(),
            )?;
            Ok(())
        };

    let n = tokens.len();
    let steps_per_epoch = n.div_ceil(opts.batch_size);
    let total = steps_per_epoch * opts.epochs;
    let schedule = Schedule::new(total, (total as f64 * opts.warmup) as usize);
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let mut idx: Vec<usize> = (0..n).collect();
    let bar = indicatif::ProgressBar::new(total as u64).with_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} step {pos}/{len} (eta {eta})")
            .expect("template"),
    );
    bar.set_position((start_epoch * steps_per_epoch) as u64);
    let started = std::time::Instant::now();
    let mut seen = 0usize;
    let mut final_loss = f64::NAN;
    // Shuffles of the epochs already done, so a resumed run sees the same order.
    for _ in 0..start_epoch {
        idx.shuffle(&mut rng);
    }
    for epoch in start_epoch..opts.epochs {
        idx.shuffle(&mut rng);
        let mut loss_sum = 0f64;
        let mut count = 0usize;
        for (b, batch) in idx.chunks(opts.batch_size).enumerate() {
            if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
                bar.abandon();
                anyhow::bail!(
                    "interrupted in epoch {}; the tuned layers after epoch {epoch} are in {} (continue with --resume)",
                    epoch + 1,
                    checkpoint.display()
                );
            }
            let step = epoch * steps_per_epoch + b;
            let scale = schedule.scale(step);
            let views: Vec<&[f32]> = batch.iter().map(|&i| states[i].as_slice()).collect();
            let (h, m01, add) = pad_states(&views, dim)?;
            let pooled = pool(&run_layers(&layers, &h, &add)?, &m01)?;
            // Normalised vectors are small: scale them so the head's logits can grow.
            let logits = head.forward(&(pooled * 20.0)?)?;
            let yb: Vec<u32> = batch.iter().map(|&i| y[i]).collect();
            let yb = Tensor::from_vec(yb, batch.len(), &Device::Cpu)?;
            let loss = candle_nn::loss::cross_entropy(&logits, &yb)?;
            let grads = loss.backward()?;
            opt.step(&grads, opts.learning_rate * scale)?;
            head_opt.step(&grads, opts.head_learning_rate * scale)?;
            let lv = loss.to_scalar::<f32>()? as f64;
            loss_sum += lv * batch.len() as f64;
            count += batch.len();
            seen += batch.len();
            bar.set_message(format!(
                "fine-tuning {} layers, epoch {}/{}: loss {:.4}, {:.0} examples/s",
                opts.layers,
                epoch + 1,
                opts.epochs,
                loss_sum / count as f64,
                seen as f64 / started.elapsed().as_secs_f64()
            ));
            bar.inc(1);
        }
        final_loss = loss_sum / count.max(1) as f64;
        tracing::info!("fine-tuning epoch {}: loss {final_loss:.4}", epoch + 1);
        save_checkpoint(&opt, &head_opt, epoch + 1)?;
    }
    bar.finish_and_clear();
    let examples_per_second = seen as f64 / started.elapsed().as_secs_f64().max(1e-9);

    // Vectors of the training texts from the tuned layers (reusing the cached states).
    let mut data = Vec::with_capacity(n * dim);
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let views: Vec<&[f32]> = chunk.iter().map(|&i| states[i].as_slice()).collect();
        let (h, m01, add) = pad_states(&views, dim)?;
        data.extend(
            pool(&run_layers(&layers, &h, &add)?, &m01)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        );
    }
    let tensors: HashMap<String, Tensor> = vm
        .data()
        .lock()
        .expect("var map lock")
        .iter()
        .map(|(k, v)| (format!("{TUNED_PREFIX}{k}"), v.as_tensor().clone()))
        .collect();
    Ok(Tuned {
        card: FinetuneCard {
            encoder_layers: l,
            layers: opts.layers,
        },
        tensors,
        encoder: TunedEncoder::new(lower, layers, dim),
        train_vectors: Matrix { dim, data },
        final_loss,
        examples_per_second,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_transformers::models::bert::{BertModel, Config as BertConfig};

    /// A 2-layer BERT (hidden size 8) with random weights, written as a model directory.
    fn tiny_encoder(dir: &Path) {
        let cfg = serde_json::json!({
            "vocab_size": 20, "hidden_size": 8, "num_hidden_layers": 2,
            "num_attention_heads": 2, "intermediate_size": 16, "hidden_act": "gelu",
            "hidden_dropout_prob": 0.0, "max_position_embeddings": 16, "type_vocab_size": 2,
            "initializer_range": 0.02, "layer_norm_eps": 1e-12, "pad_token_id": 0,
            "classifier_dropout": null, "model_type": null
        });
        std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
        let cfg: BertConfig = serde_json::from_value(cfg).unwrap();
        let vm = VarMap::new();
        BertModel::load(VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu), &cfg).unwrap();
        vm.save(dir.join(WEIGHTS_FILE)).unwrap();
    }

    #[test]
    fn checkpoint_keeps_the_optimiser_state_and_resume_restores_it() {
        let tmp = tempfile::tempdir().unwrap();
        tiny_encoder(tmp.path());
        let tokens: Vec<Vec<u32>> = (0..12u32)
            .map(|i| vec![1, 2 + i % 5, 3 + i % 7, 4])
            .collect();
        let y: Vec<u32> = (0..12).map(|i| i % 2).collect();
        let opts = FinetuneOptions {
            layers: 1,
            epochs: 1,
            batch_size: 4,
            ..FinetuneOptions::default()
        };
        let ckpt = tmp.path().join("m.checkpoint");
        let run = |epochs: usize, resume: bool| {
            let o = FinetuneOptions {
                epochs,
                ..opts.clone()
            };
            finetune(tmp.path(), &tokens, &y, 2, &o, &ckpt, resume, None).unwrap()
        };
        let first = run(1, false);

        let st: CheckpointState =
            serde_json::from_str(&std::fs::read_to_string(ckpt.join("state.json")).unwrap())
                .unwrap();
        assert_eq!((st.epochs_done, st.steps), (1, Some(3)), "3 batches of 4");
        let saved =
            candle_core::safetensors::load(ckpt.join("layers.safetensors"), &Device::Cpu).unwrap();
        for name in [
            "encoder.layer.1.output.dense.weight",
            "head.weight",
            "head.bias",
        ] {
            for k in [
                name.to_string(),
                format!("adam.m.{name}"),
                format!("adam.v.{name}"),
            ] {
                let t = saved.get(&k).unwrap_or_else(|| panic!("{k} not saved"));
                let sum = t
                    .abs()
                    .unwrap()
                    .sum_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap();
                assert!(sum > 0.0, "{k} is all zeros");
            }
        }

        // Resumed with nothing left to do, the tuned layers are the checkpoint's.
        let again = run(1, true);
        let vals = |t: &Tuned, k: &str| -> Vec<f32> {
            t.tensors[k].flatten_all().unwrap().to_vec1().unwrap()
        };
        let k = "tuned.encoder.layer.1.output.dense.weight";
        assert_eq!(vals(&again, k), vals(&first, k));

        // Resumed for another epoch, the optimisers continue from the saved step count.
        let more = run(2, true);
        assert_ne!(vals(&more, k), vals(&first, k));
        let st: CheckpointState =
            serde_json::from_str(&std::fs::read_to_string(ckpt.join("state.json")).unwrap())
                .unwrap();
        assert_eq!((st.epochs_done, st.steps), (2, Some(6)));
    }
}
