//! A trained intent model: its directory (`intent.json` + `model.safetensors`) and prediction.
//!
//! Prediction runs in plain Rust on one embedding: standardise, one linear layer (or two with a
//! GELU between them), softmax at the calibrated temperature; out of scope when the best class
//! is the `oos` class or its probability is under the calibrated threshold.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::model::Manifest;
use crate::model::manifest::WEIGHTS_FILE;

pub const CARD_FILE: &str = "intent.json";
pub const INTENT_WEIGHTS_FILE: &str = "model.safetensors";
pub const FORMAT: &str = "kefu-intent/1";

/// The classifier on top of the embeddings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Head {
    /// Multinomial logistic regression.
    Linear,
    /// One hidden layer with GELU.
    Mlp,
}

/// The encoder a model was trained on; a model only serves next to the same weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct EncoderRef {
    pub name: String,
    pub version: String,
    /// sha256 of the encoder's weights file.
    pub sha256: String,
}

impl EncoderRef {
    pub fn of(m: &Manifest) -> Self {
        Self {
            name: m.name.clone(),
            version: m.version.clone(),
            sha256: m.files.get(WEIGHTS_FILE).cloned().unwrap_or_default(),
        }
    }
}

/// Probability calibration and the out-of-scope rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct IntentCalibration {
    /// Logits are divided by this before the softmax (fitted on dev by negative log-likelihood).
    pub temperature: f32,
    /// Below this calibrated confidence a prediction is out of scope.
    pub oos_threshold: f32,
    /// How the threshold was chosen.
    pub threshold_rule: String,
}

/// `intent.json`: everything about a model except its weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    pub format: String,
    pub head: Head,
    pub labels: Vec<String>,
    /// The label of out-of-scope training examples, when the training data had some.
    pub oos_label: Option<String>,
    pub calibration: IntentCalibration,
    pub encoder: EncoderRef,
    /// Options and data of the training run.
    pub training: serde_json::Value,
    /// Dev-set metrics of the training run.
    pub metrics: serde_json::Value,
    pub created_at: String,
    /// Present when the encoder's top layers were fine-tuned: the model then carries them and
    /// computes its own sentence vectors (lower layers from the serving encoder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<super::tuned::FinetuneCard>,
}

/// A dense layer: `out = in · w + b`, `w` row-major `[inputs, outputs]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Layer {
    pub inputs: usize,
    pub outputs: usize,
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

impl Layer {
    fn apply(&self, x: &[f32]) -> Vec<f32> {
        let mut out = self.b.clone();
        for (i, &xi) in x.iter().enumerate() {
            if xi == 0.0 {
                continue;
            }
            let row = &self.w[i * self.outputs..(i + 1) * self.outputs];
            for (o, &wij) in out.iter_mut().zip(row) {
                *o += xi * wij;
            }
        }
        out
    }
}

/// The weights: feature standardisation and one or two layers.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    pub mean: Vec<f32>,
    /// 1 / standard deviation of each feature on the training set.
    pub inv_std: Vec<f32>,
    pub layers: Vec<Layer>,
}

impl Weights {
    /// Raw class scores (before temperature) of one embedding.
    pub fn logits(&self, v: &[f32]) -> Vec<f32> {
        let mut x: Vec<f32> = v
            .iter()
            .zip(&self.mean)
            .zip(&self.inv_std)
            .map(|((x, m), s)| (x - m) * s)
            .collect();
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.apply(&x);
            if i + 1 < self.layers.len() {
                x.iter_mut().for_each(|h| *h = gelu(*h));
            }
        }
        x
    }
}

/// GELU, tanh approximation (as candle's `gelu`, used in training).
pub fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044_715 * x * x * x)).tanh())
}

/// Softmax of `logits / t`.
pub fn softmax(logits: &[f32], t: f32) -> Vec<f32> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    let mut p: Vec<f32> = logits.iter().map(|l| ((l - max) / t).exp()).collect();
    let sum: f32 = p.iter().sum();
    p.iter_mut().for_each(|x| *x /= sum);
    p
}

#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Ranked {
    pub intent: String,
    pub confidence: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    /// The best intent, or `oos` when out of scope.
    pub intent: String,
    /// Calibrated probability of the best class.
    pub confidence: f32,
    pub out_of_scope: bool,
    /// Every class, most likely first.
    pub ranking: Vec<Ranked>,
}

/// A loaded intent model.
#[derive(Debug, Clone)]
pub struct IntentModel {
    pub card: ModelCard,
    pub weights: Weights,
    /// Tensors of the fine-tuned layers (named `tuned.encoder.layer.N…`), when any.
    pub tuned_tensors: HashMap<String, Tensor>,
    /// The encoder with the tuned layers, once attached to the serving encoder's directory.
    pub tuned: Option<Arc<super::tuned::TunedEncoder>>,
    /// The directory it was loaded from and its version (`DIR@sha`); None before it is saved.
    pub origin: Option<crate::model::registry::ModelRef>,
}

impl IntentModel {
    pub fn dim(&self) -> usize {
        self.weights.mean.len()
    }

    /// Whether this model computes its own sentence vectors (fine-tuned layers).
    pub fn is_tuned(&self) -> bool {
        self.card.finetune.is_some()
    }

    /// Builds the tuned encoder from the serving encoder's directory (lower layers) and this
    /// model's tuned layers; nothing to do for a model on frozen embeddings.
    pub fn attach_encoder(&mut self, encoder_dir: &Path) -> anyhow::Result<()> {
        if let Some(card) = &self.card.finetune {
            let enc = super::tuned::TunedEncoder::load(encoder_dir, card, &self.tuned_tensors)?;
            self.tuned = Some(Arc::new(enc));
        }
        Ok(())
    }

    /// The sentence vectors this model classifies: the encoder's embeddings (through the cache
    /// in `cache` when given), or the tuned encoder's vectors. `stop` (Ctrl-C) ends a long run
    /// between batches with an error.
    pub fn vectors(
        &self,
        e: &crate::embed::Embedder,
        texts: &[String],
        cache: Option<&Path>,
        what: &str,
        stop: Option<&std::sync::atomic::AtomicBool>,
    ) -> anyhow::Result<super::features::Matrix> {
        if !self.is_tuned() {
            return super::features::embed_all(e, texts, cache, what, stop);
        }
        let tuned = self
            .tuned
            .as_ref()
            .context("the fine-tuned layers are not attached to an encoder")?;
        let mut tokens = Vec::with_capacity(texts.len());
        for t in texts {
            tokens.push(e.tokenize(&crate::embed::normalize(t))?.ids);
        }
        let bar = crate::eval::texts_bar(
            texts.len(),
            format!("encoding {what} with the tuned layers"),
        );
        let mut data = Vec::with_capacity(texts.len() * self.dim());
        for chunk in tokens.chunks(256) {
            if stop.is_some_and(|s| s.load(std::sync::atomic::Ordering::SeqCst)) {
                bar.abandon();
                anyhow::bail!("interrupted while encoding {what}");
            }
            data.extend(tuned.embed(chunk)?.data);
            bar.inc(chunk.len() as u64);
        }
        bar.finish_and_clear();
        Ok(super::features::Matrix {
            dim: self.dim(),
            data,
        })
    }

    pub fn predict(&self, v: &[f32]) -> Prediction {
        let logits = self.weights.logits(v);
        self.decide(&logits, self.card.calibration.oos_threshold)
    }

    /// The decision for raw `logits` with out-of-scope threshold `threshold`.
    pub fn decide(&self, logits: &[f32], threshold: f32) -> Prediction {
        let p = softmax(logits, self.card.calibration.temperature);
        let mut order: Vec<usize> = (0..p.len()).collect();
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]));
        let best = order[0];
        let label = &self.card.labels[best];
        let oos_class = self.card.oos_label.as_deref() == Some(label.as_str());
        let out_of_scope = oos_class || p[best] < threshold;
        Prediction {
            intent: if out_of_scope {
                self.card
                    .oos_label
                    .clone()
                    .unwrap_or_else(|| super::OOS_LABEL.to_string())
            } else {
                label.clone()
            },
            confidence: p[best],
            out_of_scope,
            ranking: order
                .iter()
                .map(|&i| Ranked {
                    intent: self.card.labels[i].clone(),
                    confidence: p[i],
                })
                .collect(),
        }
    }

    /// Refuses a model trained on other encoder weights than `serving`'s.
    pub fn check_encoder(&self, serving: &Manifest) -> anyhow::Result<()> {
        let s = EncoderRef::of(serving);
        let m = &self.card.encoder;
        if m.sha256 != s.sha256 || self.dim() != serving.dimension {
            anyhow::bail!(
                "it was trained on encoder {} (weights sha256 {}) but the serving encoder is {} (weights sha256 {}); train it again with `kefu train intent` on the serving encoder",
                m.version,
                short(&m.sha256),
                s.version,
                short(&s.sha256)
            );
        }
        Ok(())
    }

    /// The version it serves as (`unsaved` for a model that was never written).
    pub fn version(&self) -> &str {
        self.origin
            .as_ref()
            .map_or("unsaved", |o| o.version.as_str())
    }

    /// Loads a model directory, checking that its parts agree.
    pub fn load(dir: &Path) -> anyhow::Result<Self> {
        let card_path = dir.join(CARD_FILE);
        let text = std::fs::read_to_string(&card_path)
            .with_context(|| format!("reading {}", card_path.display()))?;
        let card: ModelCard = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an intent model card", card_path.display()))?;
        anyhow::ensure!(
            card.format == FORMAT,
            "{}: format {:?} is not {FORMAT:?}",
            card_path.display(),
            card.format
        );
        anyhow::ensure!(
            !card.labels.is_empty(),
            "{}: no labels",
            card_path.display()
        );
        let t = card.calibration.temperature;
        anyhow::ensure!(
            t.is_finite() && t > 0.0,
            "{}: calibration.temperature must be positive, got {t}",
            card_path.display()
        );
        let wpath = dir.join(INTENT_WEIGHTS_FILE);
        let tensors = candle_core::safetensors::load(&wpath, &Device::Cpu)
            .with_context(|| format!("reading {}", wpath.display()))?;
        let weights = read_weights(&tensors, card.head, card.labels.len())
            .with_context(|| format!("{} does not fit {}", wpath.display(), CARD_FILE))?;
        let tuned_tensors: HashMap<String, Tensor> = tensors
            .into_iter()
            .filter(|(k, _)| k.starts_with(super::tuned::TUNED_PREFIX))
            .collect();
        anyhow::ensure!(
            card.finetune.is_none() || !tuned_tensors.is_empty(),
            "{}: the card names fine-tuned layers but the weights hold none",
            wpath.display()
        );
        let origin = crate::model::registry::ModelRef {
            path: crate::model::registry::absolute(dir),
            version: crate::model::registry::dir_version(dir, INTENT_WEIGHTS_FILE)?,
        };
        Ok(Self {
            card,
            weights,
            tuned_tensors,
            tuned: None,
            origin: Some(origin),
        })
    }

    /// Writes the model directory: to a temporary directory beside `dir`, then renamed into
    /// place, so a reader never sees half a model and an existing one is replaced whole.
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let mut tensors = HashMap::new();
        tensors.insert(
            "mean".to_string(),
            Tensor::new(self.weights.mean.as_slice(), &Device::Cpu)?,
        );
        tensors.insert(
            "inv_std".to_string(),
            Tensor::new(self.weights.inv_std.as_slice(), &Device::Cpu)?,
        );
        for (i, l) in self.weights.layers.iter().enumerate() {
            tensors.insert(
                format!("layer{i}.weight"),
                Tensor::from_slice(&l.w, (l.inputs, l.outputs), &Device::Cpu)?,
            );
            tensors.insert(
                format!("layer{i}.bias"),
                Tensor::new(l.b.as_slice(), &Device::Cpu)?,
            );
        }
        for (k, v) in &self.tuned_tensors {
            tensors.insert(k.clone(), v.clone());
        }
        crate::atomic::replace_dir(dir, ".kefu-intent-", |tmp| {
            candle_core::safetensors::save(&tensors, tmp.join(INTENT_WEIGHTS_FILE))?;
            std::fs::write(
                tmp.join(CARD_FILE),
                serde_json::to_string_pretty(&self.card)? + "\n",
            )?;
            Ok(())
        })
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

fn vec1(t: &HashMap<String, Tensor>, name: &str, len: usize) -> anyhow::Result<Vec<f32>> {
    let x = t
        .get(name)
        .with_context(|| format!("tensor {name} is missing"))?;
    anyhow::ensure!(
        x.dims() == [len],
        "tensor {name} has shape {:?}, expected [{len}]",
        x.dims()
    );
    Ok(x.to_dtype(candle_core::DType::F32)?.to_vec1()?)
}

fn read_weights(
    t: &HashMap<String, Tensor>,
    head: Head,
    classes: usize,
) -> anyhow::Result<Weights> {
    let w0 = t
        .get("layer0.weight")
        .context("tensor layer0.weight is missing")?;
    let d = w0.dims().first().copied().unwrap_or(0);
    let n_layers = match head {
        Head::Linear => 1,
        Head::Mlp => 2,
    };
    let mut layers = Vec::new();
    let mut inputs = d;
    for i in 0..n_layers {
        let name = format!("layer{i}.weight");
        let w = t
            .get(&name)
            .with_context(|| format!("tensor {name} is missing"))?;
        let dims = w.dims().to_vec();
        anyhow::ensure!(
            dims.len() == 2 && dims[0] == inputs,
            "tensor {name} has shape {dims:?}, expected [{inputs}, _]"
        );
        let outputs = dims[1];
        if i + 1 == n_layers {
            anyhow::ensure!(
                outputs == classes,
                "tensor {name} has {outputs} outputs for {classes} labels"
            );
        }
        let w = w
            .to_dtype(candle_core::DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        let b = vec1(t, &format!("layer{i}.bias"), outputs)?;
        layers.push(Layer {
            inputs,
            outputs,
            w,
            b,
        });
        inputs = outputs;
    }
    Ok(Weights {
        mean: vec1(t, "mean", d)?,
        inv_std: vec1(t, "inv_std", d)?,
        layers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn toy(head: Head) -> IntentModel {
        // Two inputs; classes a, b, oos: a when x0 is large, b when x1 is.
        let layers = match head {
            Head::Linear => vec![Layer {
                inputs: 2,
                outputs: 3,
                w: vec![4.0, -4.0, 0.0, -4.0, 4.0, 0.0],
                b: vec![0.0, 0.0, 1.0],
            }],
            Head::Mlp => vec![
                Layer {
                    inputs: 2,
                    outputs: 2,
                    w: vec![1.0, 0.0, 0.0, 1.0],
                    b: vec![0.0, 0.0],
                },
                Layer {
                    inputs: 2,
                    outputs: 3,
                    w: vec![4.0, -4.0, 0.0, -4.0, 4.0, 0.0],
                    b: vec![0.0, 0.0, 1.0],
                },
            ],
        };
        IntentModel {
            card: ModelCard {
                format: FORMAT.into(),
                head,
                labels: vec!["a".into(), "b".into(), "oos".into()],
                oos_label: Some("oos".into()),
                calibration: IntentCalibration {
                    temperature: 1.0,
                    oos_threshold: 0.7,
                    threshold_rule: "test".into(),
                },
                encoder: EncoderRef {
                    name: "enc".into(),
                    version: "enc@0123".into(),
                    sha256: "0123".into(),
                },
                training: serde_json::json!({}),
                metrics: serde_json::json!({}),
                created_at: "2026-01-01T00:00:00Z".into(),
                finetune: None,
            },
            weights: Weights {
                mean: vec![0.0, 0.0],
                inv_std: vec![1.0, 1.0],
                layers,
            },
            tuned_tensors: HashMap::new(),
            tuned: None,
            origin: None,
        }
    }

    #[test]
    fn predicts_classes_and_out_of_scope() {
        let m = toy(Head::Linear);
        let p = m.predict(&[1.0, 0.0]);
        assert_eq!((p.intent.as_str(), p.out_of_scope), ("a", false));
        assert!(p.confidence > 0.9);
        assert_eq!(p.ranking.len(), 3);
        assert!(
            p.ranking
                .windows(2)
                .all(|w| w[0].confidence >= w[1].confidence)
        );
        // Nothing stands out: the oos class wins.
        let p = m.predict(&[0.0, 0.0]);
        assert_eq!((p.intent.as_str(), p.out_of_scope), ("oos", true));
        // A weak winner falls under the threshold.
        let p = m.predict(&[0.7, 0.3]);
        assert_eq!(p.ranking[0].intent, "a");
        assert!(p.out_of_scope && p.intent == "oos", "{p:?}");
        // Temperature flattens without changing the order.
        let sharp = softmax(&[2.0, 1.0], 1.0);
        let flat = softmax(&[2.0, 1.0], 4.0);
        assert!(sharp[0] > flat[0] && flat[0] > 0.5);
        assert!((gelu(1.0) - 0.8412).abs() < 1e-3);
    }

    #[test]
    fn model_directory_round_trip_and_broken_files() {
        let tmp = tempfile::tempdir().unwrap();
        for head in [Head::Linear, Head::Mlp] {
            let dir = tmp.path().join(format!("{head:?}"));
            let m = toy(head);
            m.save(&dir).unwrap();
            let back = IntentModel::load(&dir).unwrap();
            assert_eq!(back.weights, m.weights);
            assert_eq!(back.card.labels, m.card.labels);
            assert_eq!(back.predict(&[0.2, 0.9]), m.predict(&[0.2, 0.9]));
            // Saving again replaces the directory whole.
            m.save(&dir).unwrap();
            assert!(IntentModel::load(&dir).is_ok());
        }
        let dir = tmp.path().join("Linear");
        let card = std::fs::read_to_string(dir.join(CARD_FILE)).unwrap();
        // Labels that do not fit the weights.
        let mut v: serde_json::Value = serde_json::from_str(&card).unwrap();
        v["labels"] = serde_json::json!(["a", "b"]);
        std::fs::write(dir.join(CARD_FILE), v.to_string()).unwrap();
        let e = format!("{:#}", IntentModel::load(&dir).unwrap_err());
        assert!(e.contains("3 outputs for 2 labels"), "{e}");
        // A card that is not one.
        std::fs::write(dir.join(CARD_FILE), "{").unwrap();
        let e = format!("{:#}", IntentModel::load(&dir).unwrap_err());
        assert!(e.contains("not an intent model card"), "{e}");
        // Missing weights.
        std::fs::write(dir.join(CARD_FILE), &card).unwrap();
        std::fs::remove_file(dir.join(INTENT_WEIGHTS_FILE)).unwrap();
        let e = format!("{:#}", IntentModel::load(&dir).unwrap_err());
        assert!(e.contains(INTENT_WEIGHTS_FILE), "{e}");
    }

    #[test]
    fn refuses_another_encoder() {
        let m = toy(Head::Linear);
        let mut manifest = Manifest {
            name: "enc".into(),
            version: "enc@0123".into(),
            dimension: 2,
            pooling: crate::model::Pooling::Mean,
            prefix: String::new(),
            max_tokens: 8,
            files: [(WEIGHTS_FILE.to_string(), "0123".to_string())].into(),
        };
        assert!(m.check_encoder(&manifest).is_ok());
        manifest.files.insert(WEIGHTS_FILE.into(), "4567".into());
        manifest.version = "enc@4567".into();
        let e = m.check_encoder(&manifest).unwrap_err().to_string();
        assert!(e.contains("enc@0123") && e.contains("enc@4567"), "{e}");
    }
}
