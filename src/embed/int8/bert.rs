//! The BERT forward pass with int8 linear layers.
//!
//! A batch is run as one packed sequence of tokens: the linear layers see every token of every
//! input back to back (no padding), and attention runs per input over its own tokens. So a
//! batch of mixed lengths costs what its tokens cost, and no attention mask is needed.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use half::f16;
use rayon::prelude::*;

use super::gemm::{Epilogue, Kernel, PackedLinear, QuantRows};
use crate::embed::ops::{fast_exp, reduce};
use crate::embed::qbert::Config;
use crate::model::Pooling;
use crate::model::e5s1::{Q4_BLOCK, q4_0_values};

struct LayerNorm {
    w: Vec<f32>,
    b: Vec<f32>,
    eps: f32,
}

impl LayerNorm {
    /// `x = LN(x + add)` row by row (`add` may be empty for plain LN).
    fn apply(&self, x: &mut [f32], add: &[f32], parallel: bool) {
        let h = self.w.len();
        let one = |(r, row): (usize, &mut [f32])| {
            let add = if add.is_empty() {
                &[][..]
            } else {
                &add[r * h..(r + 1) * h]
            };
            layer_norm_row(row, add, &self.w, &self.b, self.eps);
        };
        if parallel {
            x.par_chunks_exact_mut(h)
                .enumerate()
                .with_min_len(16)
                .for_each(one);
        } else {
            x.chunks_exact_mut(h).enumerate().for_each(one);
        }
    }
}

crate::multiversion! {
    /// `row = LN(row + add)` (`add` may be empty).
    fn layer_norm_row(row: &mut [f32], add: &[f32], w: &[f32], b: &[f32], eps: f32) {
        if !add.is_empty() {
            for (v, a) in row.iter_mut().zip(add) {
                *v += a;
            }
        }
        let h = row.len() as f32;
        let mean = reduce::sum(row) / h;
        let var = reduce::sq_dev(row, mean) / h;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, w), b) in row.iter_mut().zip(w).zip(b) {
            *v = (*v - mean) * inv * w + b;
        }
    }
}

struct Layer {
    qkv: PackedLinear,
    attn_out: PackedLinear,
    attn_ln: LayerNorm,
    inter: PackedLinear,
    out: PackedLinear,
    out_ln: LayerNorm,
}

/// The word embedding table, the model's largest part (96 M of the default model's 118 M
/// values).
enum WordTable {
    /// ggml's Q4_0 blocks (32 values: an f16 scale `d`, 4-bit `q`, value `(q - 8) · d`; value `j`
    /// in the low half of byte `j`, value `j + 16` in the high half), kept when every block of
    /// the table is exactly such a block. The default model is published in Q4_0, so its table
    /// is: this form is lossless and takes 4.5 bits per value (54 MB instead of 97 MB as int8).
    Q4 { nibbles: Vec<u8>, scales: Vec<f16> },
    /// int8 rows with one scale each (a quarter of f32's memory).
    Int8 { q: Vec<i8>, scale: Vec<f32> },
}

impl WordTable {
    /// `out` = the embedding of word `id` + `add` (both `h` wide).
    #[inline]
    fn add_row(&self, id: usize, add: &[f32], out: &mut [f32]) {
        let h = out.len();
        match self {
            WordTable::Q4 { nibbles, scales } => {
                let blocks = h / Q4_BLOCK;
                let mut vals = [0f32; Q4_BLOCK];
                for b in 0..blocks {
                    let i = id * blocks + b;
                    q4_0_values(scales[i].to_f32(), &nibbles[i * 16..], &mut vals);
                    let span = b * Q4_BLOCK..(b + 1) * Q4_BLOCK;
                    for ((o, v), a) in out[span.clone()].iter_mut().zip(vals).zip(&add[span]) {
                        *o = v + a;
                    }
                }
            }
            WordTable::Int8 { q, scale } => {
                let sc = scale[id];
                for ((o, &v), &a) in out.iter_mut().zip(&q[id * h..(id + 1) * h]).zip(add) {
                    *o = v as f32 * sc + a;
                }
            }
        }
    }

    fn bytes(&self) -> usize {
        match self {
            WordTable::Q4 { nibbles, scales } => nibbles.len() + 2 * scales.len(),
            WordTable::Int8 { q, scale } => q.len() + 4 * scale.len(),
        }
    }

    /// Which form the table is held in.
    fn form(&self) -> &'static str {
        match self {
            WordTable::Q4 { .. } => "q4_0",
            WordTable::Int8 { .. } => "int8",
        }
    }
}

/// Reads 32 values as one Q4_0 block, if they are exactly one (ggml's rule: `d` = the value of
/// largest magnitude / -8, rounded to f16; every value `(q - 8) · d` with `q` in 0..=15).
fn q4_block(v: &[f32], out: &mut [u8]) -> Option<f16> {
    let (mut max, mut amax) = (0f32, 0f32);
    for &x in v {
        if x.abs() > amax {
            (amax, max) = (x.abs(), x);
        }
    }
    let d = f16::from_f32(max / -8.0);
    let df = d.to_f32();
    let q = |x: f32| -> Option<u8> {
        let q = if df == 0.0 {
            8.0
        } else {
            (x / df).round() + 8.0
        };
        if !(0.0..=15.0).contains(&q) || (q - 8.0) * df != x {
            return None;
        }
        Some(q as u8)
    };
    for j in 0..16 {
        out[j] = q(v[j])? | (q(v[j + 16])? << 4);
    }
    Some(d)
}

/// The table as Q4_0 blocks when every row is exactly such blocks (see `WordTable::Q4`).
fn exact_q4(rows: impl Iterator<Item = Vec<f32>>, vocab: usize, h: usize) -> Option<WordTable> {
    if !h.is_multiple_of(Q4_BLOCK) {
        return None;
    }
    let blocks = vocab * h / Q4_BLOCK;
    let mut nibbles = vec![0u8; blocks * 16];
    let mut scales = Vec::with_capacity(blocks);
    let mut dst = nibbles.chunks_exact_mut(16);
    for row in rows {
        for block in row.chunks_exact(Q4_BLOCK) {
            scales.push(q4_block(block, dst.next()?)?);
        }
    }
    (scales.len() == blocks).then_some(WordTable::Q4 { nibbles, scales })
}

struct Embeddings {
    words: WordTable,
    /// position embedding + token type 0, `[max_positions × h]`
    pos_type: Vec<f32>,
    ln: LayerNorm,
}

/// Passes of at most this many tokens keep their working buffers for the next call.
const KEEP_SCRATCH_TOKENS: usize = 256;

/// Working buffers of one forward pass, kept between calls (see `KEEP_SCRATCH_TOKENS`).
#[derive(Default)]
struct Scratch {
    q: QuantRows,
    qkv: Vec<f32>,
    ctx: Vec<f32>,
    tmp: Vec<f32>,
    inter: Vec<f32>,
}

pub struct Int8Bert {
    kernel: Kernel,
    scratch: std::sync::Mutex<Scratch>,
    pool: rayon::ThreadPool,
    emb: Embeddings,
    layers: Vec<Layer>,
    hidden: usize,
    heads: usize,
    head_dim: usize,
    intermediate: usize,
    vocab: usize,
    max_positions: usize,
}

/// Checkpoints may put the encoder under `bert.` or `roberta.`.
fn model_root(vb: VarBuilder) -> VarBuilder {
    for prefix in ["bert", "roberta"] {
        if vb.contains_tensor(&format!("{prefix}.embeddings.word_embeddings.weight")) {
            return vb.pp(prefix);
        }
    }
    vb
}

fn vec1(t: Tensor) -> candle_core::Result<Vec<f32>> {
    t.flatten_all()?.to_vec1::<f32>()
}

/// Quantises one row to int8 with its own scale.
fn quantize_word(src: impl Iterator<Item = f32> + Clone, dst: &mut [i8]) -> f32 {
    let max = src.clone().fold(0f32, |m, v| m.max(v.abs()));
    let s = if max > 0.0 { max / 127.0 } else { 1.0 };
    for (d, v) in dst.iter_mut().zip(src) {
        *d = (v / s).round() as i8;
    }
    s
}

/// The word embedding table: exact Q4_0 blocks when the table is made of them (the default
/// model's), else int8 rows. An f32 table (the usual case) is read row by row from the mapped
/// file, so that its 4 bytes per value are never copied into memory (384 MB for the default
/// model's 250k × 384 table); other types go through `f32`.
fn word_table(
    path: &Path,
    cfg: &Config,
    f32_table: impl FnOnce() -> candle_core::Result<Vec<f32>>,
) -> candle_core::Result<WordTable> {
    let h = cfg.hidden_size;
    let vocab = cfg.vocab_size;
    // SAFETY: model directories are written atomically and not modified in place.
    let st = unsafe { candle_core::safetensors::MmapedSafetensors::new(path)? };
    let view = ["bert.", "roberta.", ""].into_iter().find_map(|p| {
        st.get(&format!("{p}embeddings.word_embeddings.weight"))
            .ok()
    });
    let int8 = |rows: &mut dyn Iterator<Item = Vec<f32>>| {
        let mut q = vec![0i8; vocab * h];
        let mut scale = vec![0f32; vocab];
        for ((src, dst), s) in rows.zip(q.chunks_exact_mut(h)).zip(&mut scale) {
            *s = quantize_word(src.iter().copied(), dst);
        }
        WordTable::Int8 { q, scale }
    };
    match view {
        Some(v)
            if v.dtype() == safetensors::Dtype::F32
                && v.shape() == [vocab, h]
                && v.data().len() == vocab * h * 4 =>
        {
            let rows = || {
                v.data().chunks_exact(4 * h).map(|src| {
                    src.chunks_exact(4)
                        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                        .collect::<Vec<f32>>()
                })
            };
            Ok(exact_q4(rows(), vocab, h).unwrap_or_else(|| int8(&mut rows())))
        }
        _ => {
            let table = f32_table()?;
            let rows = || table.chunks_exact(h).map(<[f32]>::to_vec);
            Ok(exact_q4(rows(), vocab, h).unwrap_or_else(|| int8(&mut rows())))
        }
    }
}

/// Most tokens in one pass through the layers: a bigger batch runs as several passes, so that
/// the working buffers (about 17 kB per token) stay small whatever the batch.
const PASS_TOKENS: usize = 1024;

impl Int8Bert {
    pub fn load(weights: &Path, cfg: &Config, kernel: Kernel) -> candle_core::Result<Self> {
        if cfg.hidden_act != "gelu" {
            candle_core::bail!(
                "hidden_act {:?} is not supported (only \"gelu\")",
                cfg.hidden_act
            );
        }
        // SAFETY: model directories are written atomically and not modified in place.
        let vb =
            unsafe { VarBuilder::from_mmaped_safetensors(&[weights], DType::F32, &Device::Cpu)? };
        let vb = model_root(vb);
        let h = cfg.hidden_size;
        let ff = cfg.intermediate_size;
        let eps = cfg.layer_norm_eps as f32;
        let heads = cfg.num_attention_heads;
        let head_dim = h / heads;
        let ln = |vb: VarBuilder| -> candle_core::Result<LayerNorm> {
            Ok(LayerNorm {
                w: vec1(vb.get(h, "weight")?)?,
                b: vec1(vb.get(h, "bias")?)?,
                eps,
            })
        };
        let lin = |vb: VarBuilder, n: usize, k: usize| -> candle_core::Result<PackedLinear> {
            let w = vec1(vb.get((n, k), "weight")?)?;
            let b = vec1(vb.get(n, "bias")?)?;
            Ok(PackedLinear::new(&w, &b, n, k, kernel))
        };

        let e = vb.pp("embeddings");
        let words = word_table(weights, cfg, || {
            vec1(e.get((cfg.vocab_size, h), "word_embeddings.weight")?)
        })?;
        let offset = cfg.position_offset();
        if offset >= cfg.max_position_embeddings {
            candle_core::bail!("pad_token_id leaves no positions");
        }
        let pos = vec1(e.get(
            (cfg.max_position_embeddings, h),
            "position_embeddings.weight",
        )?)?;
        // Position p of a sequence uses row offset + p (BERT: 0; RoBERTa: after the padding id).
        let pos = pos[offset * h..].to_vec();
        let type0 = vec1(
            e.get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?
                .get(0)?,
        )?;
        let pos_type = pos
            .chunks_exact(h)
            .flat_map(|p| p.iter().zip(&type0).map(|(a, b)| a + b))
            .collect();
        let emb = Embeddings {
            words,
            pos_type,
            ln: ln(e.pp("LayerNorm"))?,
        };

        let scale = 1.0 / (head_dim as f32).sqrt();
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let l = vb.pp(format!("encoder.layer.{i}"));
            let sa = l.pp("attention.self");
            // Fused QKV, with the attention scale folded into the query projection.
            let mut w = vec1(sa.get((h, h), "query.weight")?)?;
            w.iter_mut().for_each(|v| *v *= scale);
            w.extend(vec1(sa.get((h, h), "key.weight")?)?);
            w.extend(vec1(sa.get((h, h), "value.weight")?)?);
            let mut b = vec1(sa.get(h, "query.bias")?)?;
            b.iter_mut().for_each(|v| *v *= scale);
            b.extend(vec1(sa.get(h, "key.bias")?)?);
            b.extend(vec1(sa.get(h, "value.bias")?)?);
            layers.push(Layer {
                qkv: PackedLinear::new(&w, &b, 3 * h, h, kernel),
                attn_out: lin(l.pp("attention.output.dense"), h, h)?,
                attn_ln: ln(l.pp("attention.output.LayerNorm"))?,
                inter: lin(l.pp("intermediate.dense"), ff, h)?,
                out: lin(l.pp("output.dense"), h, ff)?,
                out_ln: ln(l.pp("output.LayerNorm"))?,
            });
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(candle_core::utils::get_num_threads())
            .thread_name(|i| format!("kefu-int8-{i}"))
            .build()
            .map_err(candle_core::Error::wrap)?;
        super::gemm::limit_simd_to(kernel);
        Ok(Self {
            kernel,
            scratch: Default::default(),
            pool,
            emb,
            layers,
            hidden: h,
            heads,
            head_dim,
            intermediate: ff,
            vocab: cfg.vocab_size,
            max_positions: cfg.max_position_embeddings - offset,
        })
    }

    /// The form the word embedding table is held in: `q4_0` or `int8`.
    pub fn word_table(&self) -> &'static str {
        self.emb.words.form()
    }

    /// The matrix-product kernel its layers run.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Bytes of weights held in memory.
    pub fn weight_bytes(&self) -> usize {
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                l.qkv.bytes()
                    + l.attn_out.bytes()
                    + l.inter.bytes()
                    + l.out.bytes()
                    + 4 * 2 * (l.attn_ln.w.len() + l.out_ln.w.len())
            })
            .sum();
        layers + self.emb.words.bytes() + 4 * self.emb.pos_type.len()
    }

    /// Pooled, L2-normalised embeddings of each token sequence.
    pub fn embed(&self, batch: &[&[u32]], pooling: Pooling) -> Result<Vec<Vec<f32>>, String> {
        // Run on the pool so that the parallel parts are forked from one of its own threads
        // (cheap) instead of being injected from outside for every operation.
        self.pool.install(|| self.embed_on_pool(batch, pooling))
    }

    fn embed_on_pool(&self, batch: &[&[u32]], pooling: Pooling) -> Result<Vec<Vec<f32>>, String> {
        let mut out = Vec::with_capacity(batch.len());
        let mut start = 0;
        while start < batch.len() {
            let mut end = start + 1;
            let mut tokens = batch[start].len();
            while end < batch.len() && tokens + batch[end].len() <= PASS_TOKENS {
                tokens += batch[end].len();
                end += 1;
            }
            out.extend(self.pass(&batch[start..end], pooling)?);
            start = end;
        }
        Ok(out)
    }

    /// One pass of the packed sequence of `batch` through every layer.
    fn pass(&self, batch: &[&[u32]], pooling: Pooling) -> Result<Vec<Vec<f32>>, String> {
        let h = self.hidden;
        let mut offsets = Vec::with_capacity(batch.len() + 1);
        offsets.push(0usize);
        for seq in batch {
            if seq.is_empty() {
                return Err("empty token sequence".into());
            }
            if seq.len() > self.max_positions {
                return Err(format!(
                    "{} tokens exceed the model's {} positions",
                    seq.len(),
                    self.max_positions
                ));
            }
            if let Some(bad) = seq.iter().find(|&&id| id as usize >= self.vocab) {
                return Err(format!(
                    "token id {bad} is outside the vocabulary ({})",
                    self.vocab
                ));
            }
            offsets.push(offsets.last().unwrap() + seq.len());
        }
        let total = *offsets.last().unwrap();

        // Embeddings.
        let mut x = vec![0f32; total * h];
        for (s, seq) in batch.iter().enumerate() {
            for (p, &id) in seq.iter().enumerate() {
                let row = &mut x[(offsets[s] + p) * h..(offsets[s] + p + 1) * h];
                let pt = &self.emb.pos_type[p * h..(p + 1) * h];
                self.emb.words.add_row(id as usize, pt, row);
            }
        }
        // Forked from a pool thread, splitting even a one-question batch pays off.
        let parallel = self.pool.current_num_threads() > 1;
        self.emb.ln.apply(&mut x, &[], parallel);

        // Buffers live across calls: reallocating megabytes per batch costs page faults.
        let mut scratch = self.scratch.lock().unwrap_or_else(|p| p.into_inner());
        let Scratch {
            q,
            qkv,
            ctx,
            tmp,
            inter,
        } = &mut *scratch;
        ctx.clear();
        ctx.resize(total * h, 0.0);
        for layer in &self.layers {
            q.quantize(&x, total, h);
            layer.qkv.forward(q, qkv, Epilogue::None, parallel);
            self.attention(qkv, &offsets, ctx, parallel);
            q.quantize(ctx, total, h);
            layer.attn_out.forward(q, tmp, Epilogue::None, parallel);
            layer.attn_ln.apply(&mut x, tmp, parallel);
            q.quantize(&x, total, h);
            layer.inter.forward(q, inter, Epilogue::Gelu, parallel);
            q.quantize(inter, total, self.intermediate);
            layer.out.forward(q, tmp, Epilogue::None, parallel);
            layer.out_ln.apply(&mut x, tmp, parallel);
        }

        // A large pass (indexing, a big batch) would otherwise leave ~15 MB of buffers held for
        // good; questions come a few tokens at a time.
        if total > KEEP_SCRATCH_TOKENS {
            *scratch = Scratch::default();
        }
        drop(scratch);

        Ok((0..batch.len())
            .map(|s| {
                let rows = &x[offsets[s] * h..offsets[s + 1] * h];
                let mut v: Vec<f32> = match pooling {
                    Pooling::Cls => rows[..h].to_vec(),
                    Pooling::Mean => {
                        let n = (offsets[s + 1] - offsets[s]) as f32;
                        let mut m = vec![0f32; h];
                        for row in rows.chunks_exact(h) {
                            for (a, b) in m.iter_mut().zip(row) {
                                *a += b;
                            }
                        }
                        m.iter_mut().for_each(|a| *a /= n);
                        m
                    }
                };
                let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt().max(1e-12);
                v.iter_mut().for_each(|a| *a /= norm);
                v
            })
            .collect())
    }

    /// Self-attention of each sequence over its own tokens; `qkv` rows are `[q | k | v]`.
    fn attention(&self, qkv: &[f32], offsets: &[usize], ctx: &mut [f32], parallel: bool) {
        let (h, hd, nh) = (self.hidden, self.head_dim, self.heads);
        let ctx_ptr = CtxPtr(ctx.as_mut_ptr());
        let jobs: Vec<(usize, usize)> = (0..offsets.len() - 1)
            .flat_map(|s| (0..nh).map(move |head| (s, head)))
            .collect();
        let run = |(kt, scores): &mut (Vec<f32>, Vec<f32>), (s, head): (usize, usize)| {
            let (t0, l) = (offsets[s], offsets[s + 1] - offsets[s]);
            kt.resize(hd * l, 0.0);
            scores.resize(l, 0.0);
            // Each (sequence, head) job writes only its own slices of ctx.
            attend(qkv, t0, l, h, hd, head, kt, scores, ctx_ptr);
        };
        if parallel {
            jobs.into_par_iter()
                .for_each_init(|| (Vec::new(), Vec::new()), run);
        } else {
            let mut bufs = (Vec::new(), Vec::new());
            jobs.into_iter().for_each(|job| run(&mut bufs, job));
        }
    }
}

crate::multiversion! {
    /// One head of one sequence: softmax(q·kᵀ)·v for its `l` tokens starting at `t0`, written
    /// to the head's columns of `ctx` (rows of `h`). The query is already scaled by 1/√hd.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        qkv: &[f32], t0: usize, l: usize, h: usize, hd: usize, head: usize,
        kt: &mut [f32], scores: &mut [f32], ctx: CtxPtr,
    ) {
        // Kᵀ for this head, [hd × l], so that scores are computed as vectorised axpys.
        for j in 0..l {
            let k = &qkv[(t0 + j) * 3 * h + h + head * hd..][..hd];
            for (d, &v) in k.iter().enumerate() {
                kt[d * l + j] = v;
            }
        }
        for i in 0..l {
            let qi = &qkv[(t0 + i) * 3 * h + head * hd..][..hd];
            scores.iter_mut().for_each(|s| *s = 0.0);
            for (d, &qv) in qi.iter().enumerate() {
                for (s, &k) in scores.iter_mut().zip(&kt[d * l..(d + 1) * l]) {
                    *s += qv * k;
                }
            }
            let max = scores.iter().fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
            for s in scores.iter_mut() {
                *s = fast_exp(*s - max);
            }
            let inv = 1.0 / reduce::sum(scores);
            // SAFETY: ctx holds rows of h for every token; row t0 + i, columns of this head,
            // are written by this call alone (one call per sequence and head).
            let out = unsafe { std::slice::from_raw_parts_mut(ctx.get().add((t0 + i) * h + head * hd), hd) };
            out.iter_mut().for_each(|o| *o = 0.0);
            for (j, &p) in scores.iter().enumerate() {
                let v = &qkv[(t0 + j) * 3 * h + 2 * h + head * hd..][..hd];
                let p = p * inv;
                for (o, &vv) in out.iter_mut().zip(v) {
                    *o += p * vv;
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
struct CtxPtr(*mut f32);

impl CtxPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: attention jobs write disjoint (token, head) slices.
unsafe impl Send for CtxPtr {}
unsafe impl Sync for CtxPtr {}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Q4_0 block as ggml's dequantiser writes it.
    fn block(d: f32, q: impl Fn(usize) -> u8) -> Vec<f32> {
        let d = f16::from_f32(d).to_f32();
        (0..32).map(|j| (i32::from(q(j)) - 8) as f32 * d).collect()
    }

    #[test]
    fn exact_q4_blocks_are_kept_and_read_back_bit_for_bit() {
        // The value of largest magnitude is q = 0 (ggml's d = max / -8).
        let rows = [
            block(0.031, |j| if j == 5 { 0 } else { (j % 16) as u8 }),
            block(-0.5, |j| if j == 30 { 0 } else { (15 - j % 16) as u8 }),
        ];
        let flat: Vec<f32> = rows.concat();
        let t = exact_q4(flat.chunks(64).map(<[f32]>::to_vec), 1, 64).expect("exact blocks");
        assert_eq!(t.form(), "q4_0");
        assert_eq!(t.bytes(), 2 * 18);
        let mut out = vec![0f32; 64];
        let add = vec![0.25f32; 64];
        t.add_row(0, &add, &mut out);
        for (o, v) in out.iter().zip(&flat) {
            assert_eq!(*o, v + 0.25);
        }
        // All zero is a block too.
        assert!(exact_q4(std::iter::once(vec![0f32; 32]), 1, 32).is_some());
    }

    #[test]
    fn a_table_that_is_not_q4_falls_back() {
        let mut v = block(0.031, |j| if j == 0 { 0 } else { 9 });
        v[3] += 1e-4;
        assert!(exact_q4(std::iter::once(v), 1, 32).is_none());
        // A width that is not a multiple of 32.
        assert!(exact_q4(std::iter::once(vec![0f32; 48]), 1, 48).is_none());
    }
}
