//! The candle encoder for BERT-family Hugging Face model directories.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config as CandleBertConfig};

use super::int8::Int8Bert;
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
    Kefu(QBert),
    Int8(Int8Bert),
}

pub struct BertEncoder {
    net: Net,
    pooling: Pooling,
    pad_id: u32,
    dim: usize,
    device: Device,
}

impl BertEncoder {
    pub fn load(
        dir: &Path,
        manifest: &Manifest,
        pad_id: u32,
        engine: EngineKind,
        weights: Weights,
    ) -> Result<Self, EmbedError> {
        let device = Device::Cpu;
        let cfg_path = dir.join("config.json");
        let cfg_text = std::fs::read_to_string(&cfg_path)
            .map_err(|e| EmbedError::Load(format!("{}: {e}", cfg_path.display())))?;
        let weights_path = dir.join("model.safetensors");
        let net =
            match engine {
                EngineKind::Candle => {
                    let cfg: CandleBertConfig = serde_json::from_str(&cfg_text)
                        .map_err(|e| EmbedError::Load(format!("{}: {e}", cfg_path.display())))?;
                    // SAFETY: model directories are written atomically and not modified in place.
                    let vb = unsafe {
                        VarBuilder::from_mmaped_safetensors(&[&weights_path], DType::F32, &device)
                    }
                    .map_err(|e| EmbedError::Load(format!("{}: {e}", weights_path.display())))?;
                    Net::Candle(
                        BertModel::load(vb, &cfg).map_err(|e| EmbedError::Load(e.to_string()))?,
                    )
                }
                EngineKind::Kefu if weights == Weights::Int8 => {
                    let cfg: qbert::Config = serde_json::from_str(&cfg_text)
                        .map_err(|e| EmbedError::Load(format!("{}: {e}", cfg_path.display())))?;
                    Net::Int8(Int8Bert::load(&weights_path, &cfg).map_err(|e| {
                        EmbedError::Load(format!("{}: {e}", weights_path.display()))
                    })?)
                }
                EngineKind::Kefu => {
                    let cfg: qbert::Config = serde_json::from_str(&cfg_text)
                        .map_err(|e| EmbedError::Load(format!("{}: {e}", cfg_path.display())))?;
                    Net::Kefu(qbert::load_cpu(&weights_path, &cfg, weights).map_err(|e| {
                        EmbedError::Load(format!("{}: {e}", weights_path.display()))
                    })?)
                }
            };
        Ok(Self {
            net,
            pooling: manifest.pooling,
            pad_id,
            dim: manifest.dimension,
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
    fn dim(&self) -> usize {
        self.dim
    }

    fn embed(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.forward(batch)
            .map_err(|e| EmbedError::Inference(e.to_string()))
    }
}
