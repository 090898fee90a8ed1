//! The tuned top layers of an intent model at inference: a BERT layer built from
//! differentiable tensor operations (so `finetune` can train the same code), the frozen lower
//! layers, and [`TunedEncoder`], which puts them together. Training lives in `finetune`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;
use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Linear, VarBuilder};
use candle_transformers::models::bert::{BertModel, Config as BertConfig};
use serde::{Deserialize, Serialize};

use super::features::Matrix;
use crate::model::manifest::WEIGHTS_FILE;

/// Prefix of the tuned layers' tensors inside an intent model's safetensors.
pub const TUNED_PREFIX: &str = "tuned.";

/// The part of the model card about fine-tuned layers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneCard {
    /// Layers of the encoder (the tuned ones are the top `layers` of them).
    pub encoder_layers: usize,
    pub layers: usize,
}

/// One BERT layer built from differentiable tensor operations (candle's fused layer norm has
/// no backward pass), with the Hugging Face parameter names.
pub struct TunedLayer {
    q: Linear,
    k: Linear,
    v: Linear,
    attn_out: Linear,
    ln1: (Tensor, Tensor),
    inter: Linear,
    out: Linear,
    ln2: (Tensor, Tensor),
    heads: usize,
    eps: f64,
    /// Low-rank adapters beside the linear maps, in the order of [`LINEARS`] (empty: none).
    adapters: Vec<Adapter>,
}

/// A layer's linear maps by their Hugging Face names, in the order adapters attach to them.
pub(crate) const LINEARS: [&str; 6] = [
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
];

/// A low-rank adapter (LoRA) beside a frozen linear map `W`: the map becomes
/// `x·Wᵀ + scale·x·Aᵀ·Bᵀ`, with `A` (rank × in) and `B` (out × rank) trained and `B` starting
/// at zero, so that training starts from the base model exactly.
pub(crate) struct Adapter {
    a: Tensor,
    b: Tensor,
    scale: f64,
}

impl Adapter {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.broadcast_matmul(&self.a.t()?)?
            .broadcast_matmul(&self.b.t()?)?
            * self.scale
    }
}

fn layer_norm(x: &Tensor, (w, b): &(Tensor, Tensor), eps: f64) -> candle_core::Result<Tensor> {
    let mean = x.mean_keepdim(D::Minus1)?;
    let xc = x.broadcast_sub(&mean)?;
    let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
    xc.broadcast_div(&(var + eps)?.sqrt()?)?
        .broadcast_mul(w)?
        .broadcast_add(b)
}

impl TunedLayer {
    pub(crate) fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let d = cfg.hidden_size;
        let ln = |vb: VarBuilder| -> candle_core::Result<(Tensor, Tensor)> {
            Ok((
                vb.get_with_hints(d, "weight", candle_nn::Init::Const(1.0))?,
                vb.get_with_hints(d, "bias", candle_nn::Init::Const(0.0))?,
            ))
        };
        Ok(Self {
            q: candle_nn::linear(d, d, vb.pp("attention.self.query"))?,
            k: candle_nn::linear(d, d, vb.pp("attention.self.key"))?,
            v: candle_nn::linear(d, d, vb.pp("attention.self.value"))?,
            attn_out: candle_nn::linear(d, d, vb.pp("attention.output.dense"))?,
            ln1: ln(vb.pp("attention.output.LayerNorm"))?,
            inter: candle_nn::linear(d, cfg.intermediate_size, vb.pp("intermediate.dense"))?,
            out: candle_nn::linear(cfg.intermediate_size, d, vb.pp("output.dense"))?,
            ln2: ln(vb.pp("output.LayerNorm"))?,
            heads: cfg.num_attention_heads,
            eps: cfg.layer_norm_eps,
            adapters: Vec::new(),
        })
    }

    fn linears(&self) -> [&Linear; 6] {
        [
            &self.q,
            &self.k,
            &self.v,
            &self.attn_out,
            &self.inter,
            &self.out,
        ]
    }

    /// Adds rank-`rank` adapters to every linear map, their tensors taken from `vb` (this
    /// layer's prefix) as `<linear>.lora_a` (zeros until set) and `<linear>.lora_b` (zeros).
    pub(crate) fn add_adapters(
        &mut self,
        vb: VarBuilder,
        rank: usize,
        alpha: f64,
    ) -> candle_core::Result<()> {
        let mut adapters = Vec::with_capacity(LINEARS.len());
        for (name, lin) in LINEARS.iter().zip(self.linears()) {
            let (out, inp) = lin.weight().dims2()?;
            let vb = vb.pp(name);
            adapters.push(Adapter {
                a: vb.get_with_hints((rank, inp), "lora_a", candle_nn::Init::Const(0.0))?,
                b: vb.get_with_hints((out, rank), "lora_b", candle_nn::Init::Const(0.0))?,
                scale: alpha / rank as f64,
            });
        }
        self.adapters = adapters;
        Ok(())
    }

    /// With adapters: every linear map's weight with its adapter merged in
    /// (`W + scale·B·A`), under `<prefix>.<linear>.weight`.
    pub(crate) fn merged_weights(
        &self,
        prefix: &str,
    ) -> candle_core::Result<Vec<(String, Tensor)>> {
        LINEARS
            .iter()
            .zip(self.linears())
            .zip(&self.adapters)
            .map(|((name, lin), ad)| {
                let delta = (ad.b.matmul(&ad.a)? * ad.scale)?;
                Ok((format!("{prefix}.{name}.weight"), (lin.weight() + delta)?))
            })
            .collect()
    }

    /// Linear map `i` (of [`LINEARS`]) with its adapter, if any.
    fn apply(&self, i: usize, x: &Tensor) -> candle_core::Result<Tensor> {
        let y = self.linears()[i].forward(x)?;
        match self.adapters.get(i) {
            Some(ad) => y + ad.forward(x)?,
            None => Ok(y),
        }
    }

    /// `h`: (batch, seq, dim); `mask`: additive, (batch, 1, 1, seq).
    pub(crate) fn forward(&self, h: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let (b, s, d) = h.dims3()?;
        let hd = d / self.heads;
        let split = |x: Tensor| -> candle_core::Result<Tensor> {
            x.reshape((b, s, self.heads, hd))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = split(self.apply(0, h)?)?;
        let k = split(self.apply(1, h)?)?;
        let v = split(self.apply(2, h)?)?;
        let scores =
            (q.matmul(&k.t()?.contiguous()?)? / (hd as f64).sqrt())?.broadcast_add(mask)?;
        let p = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let ctx = p
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, s, d))?;
        let a = layer_norm(&(self.apply(3, &ctx)? + h)?, &self.ln1, self.eps)?;
        let i = self.apply(4, &a)?.gelu_erf()?;
        layer_norm(&(self.apply(5, &i)? + &a)?, &self.ln2, self.eps)
    }
}

/// (batch, seq, dim) mean over the kept tokens, then L2-normalised as the encoder does.
pub(crate) fn pool(h: &Tensor, mask01: &Tensor) -> candle_core::Result<Tensor> {
    let m = mask01.unsqueeze(2)?;
    let sum = h.broadcast_mul(&m)?.sum(1)?;
    let n = m.sum(1)?;
    let mean = sum.broadcast_div(&n)?;
    let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
    mean.broadcast_div(&(norm + 1e-12)?)
}

pub(crate) fn bert_config(encoder_dir: &Path) -> anyhow::Result<BertConfig> {
    let p = encoder_dir.join("config.json");
    let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a BERT config", p.display()))
}

/// The frozen lower layers: embeddings and the first `layers` transformer layers, f32.
pub struct Lower {
    model: BertModel,
}

impl Lower {
    pub fn load(encoder_dir: &Path, layers: usize) -> anyhow::Result<(Self, BertConfig)> {
        let mut cfg = bert_config(encoder_dir)?;
        let full = cfg.clone();
        cfg.num_hidden_layers = layers;
        let weights = encoder_dir.join(WEIGHTS_FILE);
        // SAFETY: the weights file is memory-mapped read-only and not modified while mapped.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[&weights], DType::F32, &Device::Cpu)
                .with_context(|| format!("reading {}", weights.display()))?
        };
        let model = BertModel::load(vb, &cfg)
            .with_context(|| format!("loading the lower layers of {}", encoder_dir.display()))?;
        Ok((Self { model }, full))
    }

    /// Hidden states after the lower layers, one `len × dim` row-major block per sequence.
    pub(crate) fn forward(&self, batch: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let (ids, mask01) = pad_ids(batch)?;
        let h = self
            .model
            .forward(&ids, &ids.zeros_like()?, Some(&mask01))?;
        let mut out = Vec::with_capacity(batch.len());
        for (i, t) in batch.iter().enumerate() {
            out.push(h.get(i)?.narrow(0, 0, t.len())?.flatten_all()?.to_vec1()?);
        }
        Ok(out)
    }
}

fn pad_ids(batch: &[&[u32]]) -> candle_core::Result<(Tensor, Tensor)> {
    let s = batch.iter().map(|t| t.len()).max().unwrap_or(1).max(1);
    let mut ids = vec![0u32; batch.len() * s];
    let mut mask = vec![0u32; batch.len() * s];
    for (i, t) in batch.iter().enumerate() {
        ids[i * s..i * s + t.len()].copy_from_slice(t);
        mask[i * s..i * s + t.len()].iter_mut().for_each(|m| *m = 1);
    }
    Ok((
        Tensor::from_vec(ids, (batch.len(), s), &Device::Cpu)?,
        Tensor::from_vec(mask, (batch.len(), s), &Device::Cpu)?,
    ))
}

/// Pads cached lower-layer states to (batch, seq, dim) with their masks (0/1 and additive).
pub(crate) fn pad_states(
    states: &[&[f32]],
    dim: usize,
) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
    let s = states
        .iter()
        .map(|x| x.len() / dim)
        .max()
        .unwrap_or(1)
        .max(1);
    let mut h = vec![0f32; states.len() * s * dim];
    let mut m = vec![0f32; states.len() * s];
    for (i, x) in states.iter().enumerate() {
        h[i * s * dim..i * s * dim + x.len()].copy_from_slice(x);
        m[i * s..i * s + x.len() / dim]
            .iter_mut()
            .for_each(|v| *v = 1.0);
    }
    let h = Tensor::from_vec(h, (states.len(), s, dim), &Device::Cpu)?;
    let m01 = Tensor::from_vec(m, (states.len(), s), &Device::Cpu)?;
    let additive = ((m01.ones_like()? - &m01)? * -10_000.0)?
        .unsqueeze(1)?
        .unsqueeze(1)?;
    Ok((h, m01, additive))
}

pub(crate) fn run_layers(
    layers: &[TunedLayer],
    h: &Tensor,
    mask: &Tensor,
) -> candle_core::Result<Tensor> {
    let mut h = h.clone();
    for l in layers {
        h = l.forward(&h, mask)?;
    }
    Ok(h)
}

/// Lower layers from the encoder plus tuned top layers: turns token ids into sentence vectors.
pub struct TunedEncoder {
    lower: Lower,
    layers: Vec<TunedLayer>,
    dim: usize,
}

impl std::fmt::Debug for TunedEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TunedEncoder({} tuned layers)", self.layers.len())
    }
}

pub(crate) fn build_layers(
    vb: VarBuilder,
    cfg: &BertConfig,
    k: usize,
) -> candle_core::Result<Vec<TunedLayer>> {
    let l = cfg.num_hidden_layers;
    (l - k..l)
        .map(|i| TunedLayer::load(vb.pp(format!("encoder.layer.{i}")), cfg))
        .collect()
}

impl TunedEncoder {
    pub(crate) fn new(lower: Lower, layers: Vec<TunedLayer>, dim: usize) -> Self {
        Self { lower, layers, dim }
    }

    /// The lower layers from `encoder_dir`, the tuned ones from `tensors` (names prefixed with
    /// [`TUNED_PREFIX`]).
    pub fn load(
        encoder_dir: &Path,
        card: &FinetuneCard,
        tensors: &HashMap<String, Tensor>,
    ) -> anyhow::Result<Self> {
        let cfg = bert_config(encoder_dir)?;
        anyhow::ensure!(
            cfg.num_hidden_layers == card.encoder_layers && card.layers <= card.encoder_layers,
            "the intent model tunes {} of {} layers but the encoder has {}",
            card.layers,
            card.encoder_layers,
            cfg.num_hidden_layers
        );
        let (lower, _) = Lower::load(encoder_dir, card.encoder_layers - card.layers)?;
        let tuned: HashMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix(TUNED_PREFIX)
                    .map(|n| (n.to_string(), v.clone()))
            })
            .collect();
        let vb = VarBuilder::from_tensors(tuned, DType::F32, &Device::Cpu);
        let layers = build_layers(vb, &cfg, card.layers).context("reading the tuned layers")?;
        Ok(Self {
            lower,
            layers,
            dim: cfg.hidden_size,
        })
    }

    /// Sentence vectors of token id sequences, 32 at a time.
    pub fn embed(&self, tokens: &[Vec<u32>]) -> anyhow::Result<Matrix> {
        let mut data = Vec::with_capacity(tokens.len() * self.dim);
        for chunk in tokens.chunks(32) {
            let refs: Vec<&[u32]> = chunk.iter().map(|t| t.as_slice()).collect();
            let states = self.lower.forward(&refs)?;
            let views: Vec<&[f32]> = states.iter().map(|s| s.as_slice()).collect();
            let (h, m01, add) = pad_states(&views, self.dim)?;
            let v = pool(&run_layers(&self.layers, &h, &add)?, &m01)?;
            data.extend(v.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(Matrix {
            dim: self.dim,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_nn::VarMap;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    /// A tiny BERT layer (hidden 8, 2 heads, intermediate 16) with seeded random weights.
    fn layer_tensors(seed: u64) -> (HashMap<String, Tensor>, BertConfig) {
        use rand::Rng;
        let cfg = BertConfig {
            hidden_size: 8,
            intermediate_size: 16,
            num_attention_heads: 2,
            num_hidden_layers: 1,
            ..BertConfig::default()
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let mut t = HashMap::new();
        let mut rand = |shape: &[usize]| {
            let n: usize = shape.iter().product();
            let v: Vec<f32> = (0..n).map(|_| rng.random_range(-0.5..0.5)).collect();
            Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
        };
        for (name, out, inp) in [
            ("attention.self.query", 8, 8),
            ("attention.self.key", 8, 8),
            ("attention.self.value", 8, 8),
            ("attention.output.dense", 8, 8),
            ("intermediate.dense", 16, 8),
            ("output.dense", 8, 16),
        ] {
            t.insert(format!("{name}.weight"), rand(&[out, inp]));
            t.insert(format!("{name}.bias"), rand(&[out]));
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            t.insert(format!("{ln}.weight"), (rand(&[8]) + 1.0).unwrap());
            t.insert(format!("{ln}.bias"), rand(&[8]));
        }
        (t, cfg)
    }

    #[test]
    fn adapters_start_neutral_and_merge_exactly() {
        let (base, cfg) = layer_tensors(1);
        let x = layer_tensors(2).0["intermediate.dense.weight"]
            .reshape((2, 8, 8))
            .unwrap()
            .narrow(1, 0, 3)
            .unwrap()
            .contiguous()
            .unwrap();
        let mask = Tensor::zeros((2, 1, 1, 3), DType::F32, &Device::Cpu).unwrap();
        let plain = TunedLayer::load(
            VarBuilder::from_tensors(base.clone(), DType::F32, &Device::Cpu),
            &cfg,
        )
        .unwrap();
        let vm = VarMap::new();
        let mut adapted = TunedLayer::load(
            VarBuilder::from_tensors(base.clone(), DType::F32, &Device::Cpu),
            &cfg,
        )
        .unwrap();
        adapted
            .add_adapters(
                VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu),
                2,
                4.0,
            )
            .unwrap();
        let vals = |x: &Tensor| -> Vec<f32> { x.flatten_all().unwrap().to_vec1().unwrap() };
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| (p - q).abs() < 1e-5);
        // B = 0: the adapted layer is the plain one.
        let y0 = vals(&plain.forward(&x, &mask).unwrap());
        assert!(close(&y0, &vals(&adapted.forward(&x, &mask).unwrap())));
        assert_eq!(vm.all_vars().len(), 12, "A and B for six linear maps");

        // Non-zero adapters change the output; the merged weights reproduce it exactly.
        let mut rng = StdRng::seed_from_u64(3);
        for v in vm.all_vars() {
            let shape = v.as_tensor().dims().to_vec();
            let n: usize = shape.iter().product();
            let r: Vec<f32> = (0..n)
                .map(|_| rand::Rng::random_range(&mut rng, -0.3..0.3))
                .collect();
            v.set(&Tensor::from_vec(r, shape, &Device::Cpu).unwrap())
                .unwrap();
        }
        let y1 = vals(&adapted.forward(&x, &mask).unwrap());
        assert!(!close(&y0, &y1));
        let mut merged = base.clone();
        for (k, w) in adapted.merged_weights("").unwrap() {
            let k = k.trim_start_matches('.').to_string();
            assert!(merged.contains_key(&k), "{k}");
            merged.insert(k, w);
        }
        let m = TunedLayer::load(
            VarBuilder::from_tensors(merged, DType::F32, &Device::Cpu),
            &cfg,
        )
        .unwrap();
        assert!(close(&y1, &vals(&m.forward(&x, &mask).unwrap())));
    }
}
