//! The candle encoder for BERT-family Hugging Face model directories.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as CandleBertConfig};
use candle_transformers::models::xlm_roberta::{Config as XlmrConfig, XLMRobertaModel};

use super::int8::Int8Bert;
use super::int8::gemm::{CpuPath, Kernel};
use super::qbert::{self, QBert, Weights};
use super::{EmbedError, Encoder};
use crate::model::{Manifest, Pooling};

/// Which forward pass runs the model.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// kefu's tuned forward pass (`embed::qbert`), quantised weights.
    Kefu,
    /// candle-transformers' `bert::BertModel`, f32: the reference.
    Candle,
}

enum Net {
    Candle(BertModel),
    CandleXlmr(XLMRobertaModel),
    Kefu(QBert),
    Int8(Int8Bert),
}

/// What actually runs a loaded model (after any fallback).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EngineInfo {
    /// `kefu` or `candle`.
    pub kind: String,
    /// `int8`, `q8_0`, `q4_0` or `f32`.
    pub weights: String,
    /// The int8 kernels, for the int8 engine.
    pub kernel: Option<String>,
    /// How the int8 engine holds the word embedding table: `q4_0` (exact blocks of a Q4_0
    /// model, the default's) or `int8`.
    pub word_table: Option<String>,
}

pub struct BertEncoder {
    net: Net,
    weights: Weights,
    pooling: Pooling,
    pad_id: u32,
    device: Device,
}

impl BertEncoder {
    pub fn info(&self) -> EngineInfo {
        let (kind, weights, kernel, word_table) = match &self.net {
            Net::Candle(_) | Net::CandleXlmr(_) => ("candle", "f32".to_string(), None, None),
            Net::Kefu(_) => (
                "kefu",
                format!("{:?}", self.weights).to_lowercase(),
                None,
                None,
            ),
            Net::Int8(m) => (
                "kefu",
                "int8".into(),
                Some(m.kernel().name().to_string()),
                Some(m.word_table().to_string()),
            ),
        };
        EngineInfo {
            kind: kind.into(),
            weights,
            kernel,
            word_table,
        }
    }

    pub fn load(
        dir: &Path,
        manifest: &Manifest,
        pad_id: u32,
        engine: EngineKind,
        weights: Weights,
        cpu: CpuPath,
    ) -> Result<Self, EmbedError> {
        let device = Device::Cpu;
        let cfg_path = dir.join("config.json");
        let cfg_text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| EmbedError::Load(format!("{}: {e}", cfg_path.display())))?;
        let bad_config =
            |e: serde_json::Error| EmbedError::Load(format!("{}: {e}", cfg_path.display()));
        let weights_path = dir.join("model.safetensors");
        let bad_weights =
            |e: candle_core::Error| EmbedError::Load(format!("{}: {e}", weights_path.display()));
        let cfg: qbert::Config = serde_json::from_str(&cfg_text).map_err(bad_config)?;
        let kernel = Kernel::select(cpu).map_err(EmbedError::Load)?;
        let engine = if engine == EngineKind::Kefu
            && weights == Weights::Int8
            && cpu == CpuPath::Auto
            && kernel == Kernel::Scalar
        {
            // The portable int8 loop is correct but slower than candle's f32 path.
            tracing::warn!(
                "this CPU has neither AVX2, AVX-512 VNNI nor NEON: serving with engine \"candle\" instead of int8"
            );
            EngineKind::Candle
        } else {
            engine
        };
        let mmap = || {
            // SAFETY: model directories are written atomically and not modified in place.
            unsafe { VarBuilder::from_mmaped_safetensors(&[&weights_path], DType::F32, &device) }
                .map_err(bad_weights)
        };
        let net = match engine {
            EngineKind::Candle if cfg.is_roberta() => {
                let xcfg: XlmrConfig = serde_json::from_str(&cfg_text).map_err(bad_config)?;
                let vb = mmap()?;
                let vb = if vb.contains_tensor("roberta.embeddings.word_embeddings.weight") {
                    vb.pp("roberta")
                } else {
                    vb
                };
                Net::CandleXlmr(XLMRobertaModel::new(&xcfg, vb).map_err(bad_weights)?)
            }
            EngineKind::Candle => {
                let bcfg: CandleBertConfig = serde_json::from_str(&cfg_text).map_err(bad_config)?;
                Net::Candle(BertModel::load(mmap()?, &bcfg).map_err(bad_weights)?)
            }
            EngineKind::Kefu if weights == Weights::Int8 => {
                let m = Int8Bert::load(&weights_path, &cfg, kernel).map_err(bad_weights)?;
                tracing::info!(kernel = kernel.name(), "int8 engine");
                Net::Int8(m)
            }
            EngineKind::Kefu => {
                Net::Kefu(qbert::load_cpu(&weights_path, &cfg, weights).map_err(bad_weights)?)
            }
        };
        Ok(Self {
            net,
            weights,
            pooling: manifest.pooling,
            pad_id,
            device,
        })
    }

    fn forward(&self, batch: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        if let Net::Int8(m) = &self.net {
            return m
                .embed(batch, self.pooling)
                .map_err(candle_core::Error::msg);
        }
        let b = batch.len();
        let l = batch.iter().map(|t| t.len()).max().unwrap_or(0);
        let padded = batch.iter().any(|t| t.len() != l);
        let mut ids = Vec::with_capacity(b * l);
        let mut mask = Vec::with_capacity(b * l);
        for t in batch {
            ids.extend_from_slice(t);
            ids.extend(std::iter::repeat_n(self.pad_id, l - t.len()));
            mask.extend(std::iter::repeat_n(1u32, t.len()));
            mask.extend(std::iter::repeat_n(0u32, l - t.len()));
        }
        let ids = Tensor::from_vec(ids, (b, l), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, l), &self.device)?;
        let states = match &self.net {
            Net::Candle(m) => m.forward(&ids, &ids.zeros_like()?, Some(&mask))?,
            Net::CandleXlmr(m) => m.forward(&ids, &mask, &ids.zeros_like()?, None, None, None)?,
            Net::Kefu(m) => m.forward(&ids, padded.then_some(&mask))?,
            Net::Int8(_) => unreachable!("handled above"),
        };
        let pooled = match self.pooling {
            Pooling::Cls => states.narrow(1, 0, 1)?.squeeze(1)?,
            Pooling::Mean => {
                let m = mask.to_dtype(DType::F32)?.unsqueeze(2)?; // [b, l, 1]
                let summed = states.broadcast_mul(&m)?.sum(1)?; // [b, h]
                summed.broadcast_div(&m.sum(1)?)?
            }
        };
        let norm = pooled
            .sqr()?
            .sum_keepdim(1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        pooled.broadcast_div(&norm)?.to_vec2::<f32>()
    }
}

impl Encoder for BertEncoder {
    fn embed(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.forward(batch)
            .map_err(|e| EmbedError::Inference(e.to_string()))
    }
}
