//! kefu's own BERT forward pass, tuned for CPU serving.
//!
//! Same maths as candle-transformers' `bert::BertModel` (which `engine = "candle"` runs), with:
//! weights served as GGML blocks through candle's SIMD quantised matmul (`QMatMul`, Q8_0 by
//! default: the default model's weights are 4-bit, so 8-bit blocks hold them almost exactly);
//! one fused QKV projection with the 1/√d attention scale folded into the query weights; a
//! vectorised GELU; the attention mask skipped when no row is padded; and the word embedding
//! table kept quantised (it is 250k × 384: 384 MB as f32, 100 MB as Q8_0).

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};
use std::sync::Arc;

use super::ops;

/// The subset of a Hugging Face BERT `config.json` this model reads.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// `bert`, or `xlm-roberta` / `roberta` (position ids start after the padding id).
    #[serde(default)]
    pub model_type: Option<String>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
}

impl Config {
    /// Whether this is an XLM-RoBERTa-style model (bge-m3, multilingual-e5-base/large…).
    pub fn is_roberta(&self) -> bool {
        matches!(
            self.model_type.as_deref(),
            Some("xlm-roberta" | "roberta" | "camembert")
        )
    }

    /// Position id of the first token: 0 for BERT, `pad_token_id + 1` for RoBERTa models.
    pub fn position_offset(&self) -> usize {
        if self.is_roberta() {
            self.pad_token_id.unwrap_or(1) as usize + 1
        } else {
            0
        }
    }
}

fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_act() -> String {
    "gelu".into()
}

/// How the matrices are stored for serving.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Weights {
    /// kefu's own int8 forward pass (`embed::int8`): per-channel int8 weights, per-token int8
    /// activations, AVX-512 VNNI kernels.
    #[value(name = "int8")]
    Int8,
    #[value(name = "f32")]
    F32,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
}

struct Linear {
    w: QMatMul,
    b: Tensor,
}

impl Linear {
    fn new(w: Tensor, b: Tensor, weights: Weights) -> Result<Self> {
        let w = match weights {
            Weights::F32 | Weights::Int8 => QMatMul::Tensor(w),
            Weights::Q8_0 => QMatMul::QTensor(Arc::new(QTensor::quantize(&w, GgmlDType::Q8_0)?)),
            Weights::Q4_0 => QMatMul::QTensor(Arc::new(QTensor::quantize(&w, GgmlDType::Q4_0)?)),
        };
        Ok(Self { w, b })
    }

    fn load(vb: VarBuilder, in_dim: usize, out_dim: usize, weights: Weights) -> Result<Self> {
        let w = vb.get((out_dim, in_dim), "weight")?;
        let b = vb.get(out_dim, "bias")?;
        Self::new(w, b, weights)
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.w.forward(xs)?.broadcast_add(&self.b)
    }
}

fn layer_norm(vb: VarBuilder, size: usize, eps: f64) -> Result<LayerNorm> {
    let w = vb.get(size, "weight")?;
    let b = vb.get(size, "bias")?;
    Ok(LayerNorm::new(w, b, eps))
}

struct Layer {
    qkv: Linear,
    attn_out: Linear,
    attn_ln: LayerNorm,
    inter: Linear,
    out: Linear,
    out_ln: LayerNorm,
}

pub struct QBert {
    word: QMatMul,
    position: Tensor,
    token_type0: Tensor,
    emb_ln: LayerNorm,
    layers: Vec<Layer>,
    heads: usize,
    head_dim: usize,
    hidden: usize,
}

impl QBert {
    pub fn load(vb: VarBuilder, cfg: &Config, weights: Weights) -> Result<Self> {
        if cfg.is_roberta() {
            candle_core::bail!(
                "weights {weights:?} run BERT models only; use weights = \"int8\" or engine = \"candle\" for {:?}",
                cfg.model_type.as_deref().unwrap_or_default()
            );
        }
        if cfg.hidden_act != "gelu" {
            candle_core::bail!(
                "hidden_act {:?} is not supported (only \"gelu\")",
                cfg.hidden_act
            );
        }
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let h = cfg.hidden_size;
        let heads = cfg.num_attention_heads;
        let head_dim = h / heads;
        let emb = vb.pp("embeddings");
        let word_f32 = emb.get((cfg.vocab_size, h), "word_embeddings.weight")?;
        let word = match weights {
            Weights::F32 | Weights::Int8 => QMatMul::Tensor(word_f32),
            // Row lookups dequantise one block row; Q8_0 keeps them close to exact.
            _ => QMatMul::QTensor(Arc::new(QTensor::quantize(&word_f32, GgmlDType::Q8_0)?)),
        };
        let position = emb.get(
            (cfg.max_position_embeddings, h),
            "position_embeddings.weight",
        )?;
        let token_type0 = emb
            .get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?
            .get(0)?;
        let emb_ln = layer_norm(emb.pp("LayerNorm"), h, cfg.layer_norm_eps)?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let sa = l.pp("attention.self");
            let q_w = (sa.get((h, h), "query.weight")? * scale)?;
            let q_b = (sa.get(h, "query.bias")? * scale)?;
            let qkv_w = Tensor::cat(
                &[
                    q_w,
                    sa.get((h, h), "key.weight")?,
                    sa.get((h, h), "value.weight")?,
                ],
                0,
            )?;
            let qkv_b = Tensor::cat(&[q_b, sa.get(h, "key.bias")?, sa.get(h, "value.bias")?], 0)?;
            layers.push(Layer {
                qkv: Linear::new(qkv_w, qkv_b, weights)?,
                attn_out: Linear::load(l.pp("attention.output.dense"), h, h, weights)?,
                attn_ln: layer_norm(l.pp("attention.output.LayerNorm"), h, cfg.layer_norm_eps)?,
                inter: Linear::load(
                    l.pp("intermediate.dense"),
                    h,
                    cfg.intermediate_size,
                    weights,
                )?,
                out: Linear::load(l.pp("output.dense"), cfg.intermediate_size, h, weights)?,
                out_ln: layer_norm(l.pp("output.LayerNorm"), h, cfg.layer_norm_eps)?,
            });
        }
        Ok(Self {
            word,
            position,
            token_type0,
            emb_ln,
            layers,
            heads,
            head_dim,
            hidden: h,
        })
    }

    /// Token states `[batch, seq, hidden]` for `ids` `[batch, seq]`; `mask` `[batch, seq]`
    /// (1 keep, 0 pad) is `None` when no row is padded.
    pub fn forward(&self, ids: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let flat = ids.flatten_all()?;
        let words = self.word.embedding(&flat)?; // [b*l, h]
        let pos = self
            .position
            .narrow(0, 0, l)?
            .broadcast_add(&self.token_type0)?; // [l, h]
        let xs = words.reshape((b, l, self.hidden))?.broadcast_add(&pos)?;
        let mut xs = self.emb_ln.forward(&xs)?.reshape((b * l, self.hidden))?;
        // Additive mask [b, 1, 1, l]: 0 where kept, a large negative where padded.
        let bias = match mask {
            Some(m) => Some(((m.to_dtype(DType::F32)? - 1.0)? * 1e4)?.reshape((b, 1, 1, l))?),
            None => None,
        };
        for layer in &self.layers {
            xs = self.layer(layer, &xs, b, l, bias.as_ref())?;
        }
        xs.reshape((b, l, self.hidden))
    }

    fn layer(
        &self,
        layer: &Layer,
        xs: &Tensor,
        b: usize,
        l: usize,
        bias: Option<&Tensor>,
    ) -> Result<Tensor> {
        let (nh, hd) = (self.heads, self.head_dim);
        let qkv = layer.qkv.forward(xs)?.reshape((b, l, 3, nh, hd))?;
        let q = qkv
            .narrow(2, 0, 1)?
            .squeeze(2)?
            .transpose(1, 2)?
            .contiguous()?; // [b, nh, l, hd]
        let k = qkv
            .narrow(2, 1, 1)?
            .squeeze(2)?
            .transpose(1, 2)?
            .contiguous()?;
        let v = qkv
            .narrow(2, 2, 1)?
            .squeeze(2)?
            .transpose(1, 2)?
            .contiguous()?;
        let mut scores = q.matmul(&k.t()?)?; // [b, nh, l, l], already scaled
        if let Some(bias) = bias {
            scores = scores.broadcast_add(bias)?;
        }
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let ctx = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((b * l, self.hidden))?;
        let attn = layer.attn_out.forward(&ctx)?;
        let xs = layer.attn_ln.forward(&(attn + xs)?)?;
        let inter = ops::gelu(&layer.inter.forward(&xs)?)?;
        let out = layer.out.forward(&inter)?;
        layer.out_ln.forward(&(out + xs)?)
    }
}

/// Loads the model from a safetensors file on the CPU.
pub fn load_cpu(weights_path: &std::path::Path, cfg: &Config, weights: Weights) -> Result<QBert> {
    // SAFETY: the file is not modified while mapped; model directories are written atomically.
    let vb =
        unsafe { VarBuilder::from_mmaped_safetensors(&[weights_path], DType::F32, &Device::Cpu)? };
    QBert::load(vb, cfg, weights)
}
