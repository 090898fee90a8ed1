//! Import of the `E5S1` 4-bit model image (see DESIGN.md) into a Hugging Face model directory.
//!
//! The image holds a BERT encoder whose matrices are GGML-style Q4_0 blocks. We dequantise them
//! to f32 and write `config.json`, `model.safetensors` and the tokenizer beside a manifest, so
//! that the result is an ordinary model directory that any BERT loader reads.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use half::f16;

use super::{ModelError, manifest::Pooling};

const MAGIC: &[u8; 4] = b"E5S1";
const Q4_BLOCK_BYTES: usize = 18;

/// Shape parameters read from the image header.
#[derive(Debug, Clone, PartialEq)]
pub struct E5s1Header {
    pub version: u32,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub intermediate: usize,
    pub vocab: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    pub eps: f32,
    pub q_block: usize,
}

#[derive(Debug, Clone)]
struct DirEntry {
    dtype: u8,
    count: usize,
    offset: usize,
    nbytes: usize,
}

/// A parsed image: header and tensor directory over the borrowed bytes.
pub struct E5s1Image<'a> {
    pub header: E5s1Header,
    bytes: &'a [u8],
    dir: HashMap<String, DirEntry>,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], ModelError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len());
        match end {
            Some(end) => {
                let s = &self.bytes[self.pos..end];
                self.pos = end;
                Ok(s)
            }
            None => Err(ModelError::Corrupt(format!(
                "truncated image: {what} needs {n} bytes at offset {} but the file has {}",
                self.pos,
                self.bytes.len()
            ))),
        }
    }
    fn u16(&mut self, what: &str) -> Result<u16, ModelError> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().unwrap()))
    }
    fn u32(&mut self, what: &str) -> Result<u32, ModelError> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn i32(&mut self, what: &str) -> Result<i32, ModelError> {
        Ok(i32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64, ModelError> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn f32(&mut self, what: &str) -> Result<f32, ModelError> {
        Ok(f32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn count(&mut self, what: &str, max: usize) -> Result<usize, ModelError> {
        let v = self.i32(what)?;
        if v < 0 || v as usize > max {
            return Err(ModelError::Corrupt(format!("{what} = {v} is out of range")));
        }
        Ok(v as usize)
    }
}

impl<'a> E5s1Image<'a> {
    /// Parses the header and directory, checking every tensor lies inside the file.
    pub fn parse(bytes: &'a [u8]) -> Result<Self, ModelError> {
        let mut c = Cursor { bytes, pos: 0 };
        if c.take(4, "magic")? != MAGIC {
            return Err(ModelError::Corrupt("not an E5S1 image (bad magic)".into()));
        }
        let version = c.u32("version")?;
        if version != 1 {
            return Err(ModelError::Corrupt(format!(
                "unsupported E5S1 version {version}"
            )));
        }
        const DIM_MAX: usize = 1 << 24;
        let hidden = c.count("hidden size", DIM_MAX)?;
        let layers = c.count("layer count", 1024)?;
        let heads = c.count("head count", 1024)?;
        let intermediate = c.count("intermediate size", DIM_MAX)?;
        let vocab = c.count("vocabulary size", DIM_MAX)?;
        let max_positions = c.count("max positions", DIM_MAX)?;
        let type_vocab = c.count("type vocabulary size", 1024)?;
        let eps = c.f32("layer norm eps")?;
        let q_block = c.count("quantisation block", 1024)?;
        if hidden == 0 || heads == 0 || hidden % heads != 0 || layers == 0 {
            return Err(ModelError::Corrupt(format!(
                "inconsistent shape: hidden {hidden}, heads {heads}, layers {layers}"
            )));
        }
        if q_block != Q4_BLOCK {
            return Err(ModelError::Corrupt(format!(
                "unsupported quantisation block {q_block}"
            )));
        }
        if !(eps > 0.0 && eps < 1.0) {
            return Err(ModelError::Corrupt(format!(
                "layer norm eps {eps} is out of range"
            )));
        }
        let header = E5s1Header {
            version,
            hidden,
            layers,
            heads,
            intermediate,
            vocab,
            max_positions,
            type_vocab,
            eps,
            q_block,
        };

        // The embedded tokenizer is skipped: kefu reads the Hugging Face tokenizer.json.
        let n_pieces = c.count("tokenizer piece count", DIM_MAX)?;
        c.take(16, "tokenizer special ids")?;
        let blob_len = c.u64("tokenizer blob length")? as usize;
        c.take((n_pieces + 1) * 4, "tokenizer offsets")?;
        c.take(n_pieces * 4, "tokenizer scores")?;
        c.take(blob_len, "tokenizer blob")?;
        let _n_norm = c.count("normaliser entry count", DIM_MAX)?;
        let nm_bytes = c.u32("normaliser byte count")? as usize;
        c.take(nm_bytes, "normaliser table")?;

        let ndir = c.count("tensor count", 1 << 16)?;
        let mut dir = HashMap::with_capacity(ndir);
        for _ in 0..ndir {
            let name_len = c.u16("tensor name length")? as usize;
            let name = std::str::from_utf8(c.take(name_len, "tensor name")?)
                .map_err(|_| ModelError::Corrupt("tensor name is not UTF-8".into()))?
                .to_string();
            let dtype = c.take(1, "tensor dtype")?[0];
            let count = c.u32("tensor element count")? as usize;
            let offset = c.u64("tensor offset")? as usize;
            let nbytes = c.u64("tensor byte count")? as usize;
            let fits = offset.checked_add(nbytes).is_some_and(|e| e <= bytes.len());
            if !fits {
                return Err(ModelError::Corrupt(format!(
                    "truncated image: tensor {name} ends past the end of the file ({} bytes)",
                    bytes.len()
                )));
            }
            dir.insert(
                name,
                DirEntry {
                    dtype,
                    count,
                    offset,
                    nbytes,
                },
            );
        }
        Ok(Self { header, bytes, dir })
    }

    /// Reads tensor `name` as f32 with the given shape, dequantising Q4_0 blocks.
    pub fn tensor_f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, ModelError> {
        let e = self
            .dir
            .get(name)
            .ok_or_else(|| ModelError::Corrupt(format!("tensor {name} is missing")))?;
        let n: usize = shape.iter().product();
        if e.count != n {
            return Err(ModelError::Corrupt(format!(
                "tensor {name} has {} elements, expected {n} ({shape:?})",
                e.count
            )));
        }
        let data = &self.bytes[e.offset..e.offset + e.nbytes];
        if e.nbytes == n * 4 {
            return Ok(data
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect());
        }
        if n.is_multiple_of(Q4_BLOCK) && e.nbytes == n / Q4_BLOCK * Q4_BLOCK_BYTES {
            return Ok(dequantize_q4_0(data));
        }
        Err(ModelError::Corrupt(format!(
            "tensor {name} (dtype {}) has {} bytes, which is neither f32 nor Q4_0 for {n} elements",
            e.dtype, e.nbytes
        )))
    }

    /// All tensors under their Hugging Face BERT names.
    pub fn hf_tensors(&self) -> Result<HashMap<String, Tensor>, ModelError> {
        let h = &self.header;
        let (hd, ff) = (h.hidden, h.intermediate);
        let mut out = HashMap::new();
        let mut put = |hf: String, src: String, shape: Vec<usize>| -> Result<(), ModelError> {
            let v = self.tensor_f32(&src, &shape)?;
            let t = Tensor::from_vec(v, shape, &Device::Cpu)?;
            out.insert(hf, t);
            Ok(())
        };
        put(
            "embeddings.word_embeddings.weight".into(),
            "emb.word".into(),
            vec![h.vocab, hd],
        )?;
        put(
            "embeddings.position_embeddings.weight".into(),
            "emb.pos".into(),
            vec![h.max_positions, hd],
        )?;
        put(
            "embeddings.token_type_embeddings.weight".into(),
            "emb.type".into(),
            vec![h.type_vocab, hd],
        )?;
        put(
            "embeddings.LayerNorm.weight".into(),
            "emb.ln.w".into(),
            vec![hd],
        )?;
        put(
            "embeddings.LayerNorm.bias".into(),
            "emb.ln.b".into(),
            vec![hd],
        )?;
        for i in 0..h.layers {
            let p = format!("encoder.layer.{i}");
            let linears = [
                ("q", "attention.self.query", hd, hd),
                ("k", "attention.self.key", hd, hd),
                ("v", "attention.self.value", hd, hd),
                ("ao", "attention.output.dense", hd, hd),
                ("fi", "intermediate.dense", ff, hd),
                ("fo", "output.dense", hd, ff),
            ];
            for (short, long, rows, cols) in linears {
                put(
                    format!("{p}.{long}.weight"),
                    format!("l{i}.{short}.w"),
                    vec![rows, cols],
                )?;
                put(
                    format!("{p}.{long}.bias"),
                    format!("l{i}.{short}.b"),
                    vec![rows],
                )?;
            }
            for (short, long) in [
                ("aln", "attention.output.LayerNorm"),
                ("oln", "output.LayerNorm"),
            ] {
                put(
                    format!("{p}.{long}.weight"),
                    format!("l{i}.{short}.w"),
                    vec![hd],
                )?;
                put(
                    format!("{p}.{long}.bias"),
                    format!("l{i}.{short}.b"),
                    vec![hd],
                )?;
            }
        }
        Ok(out)
    }

    /// The Hugging Face `config.json` for this image.
    pub fn hf_config(&self) -> serde_json::Value {
        let h = &self.header;
        serde_json::json!({
            "architectures": ["BertModel"],
            "model_type": "bert",
            "hidden_size": h.hidden,
            "num_hidden_layers": h.layers,
            "num_attention_heads": h.heads,
            "intermediate_size": h.intermediate,
            "vocab_size": h.vocab,
            "max_position_embeddings": h.max_positions,
            "type_vocab_size": h.type_vocab,
            "layer_norm_eps": h.eps,
            "hidden_act": "gelu",
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
            "initializer_range": 0.02,
            "pad_token_id": 0,
            "position_embedding_type": "absolute",
            "torch_dtype": "float32"
        })
    }
}

/// Values in one GGML Q4_0 block.
pub const Q4_BLOCK: usize = 32;

/// One GGML Q4_0 block's values, `(q - 8) * d`: the low nibbles of its 16 bytes are values
/// 0..16, the high nibbles values 16..32.
#[inline]
pub fn q4_0_values(d: f32, qs: &[u8], out: &mut [f32; Q4_BLOCK]) {
    for (j, &b) in qs[..16].iter().enumerate() {
        out[j] = ((b & 0x0f) as i32 - 8) as f32 * d;
        out[j + 16] = ((b >> 4) as i32 - 8) as f32 * d;
    }
}

/// Dequantises GGML Q4_0 blocks: an f16 scale, then 16 bytes of nibbles (see
/// [`q4_0_values`]).
pub fn dequantize_q4_0(data: &[u8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(data.len() / Q4_BLOCK_BYTES * Q4_BLOCK);
    for block in data.chunks_exact(Q4_BLOCK_BYTES) {
        let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
        let mut vals = [0f32; Q4_BLOCK];
        q4_0_values(d, &block[2..], &mut vals);
        out.extend_from_slice(&vals);
    }
    out
}

/// What the importer writes into the manifest besides the file checksums.
pub struct ImportOptions<'a> {
    pub name: &'a str,
    pub pooling: Pooling,
    pub prefix: &'a str,
    /// Replace an existing directory at the destination.
    pub force: bool,
}

/// Imports `image` with `tokenizer` into `out`. The directory appears whole or not at all: it
/// is written beside its destination and renamed into place.
pub fn import(
    image: &Path,
    tokenizer: &Path,
    out: &Path,
    opts: &ImportOptions<'_>,
) -> Result<super::Manifest, ModelError> {
    let bytes = std::fs::read(image).map_err(|e| ModelError::io(image, e))?;
    let img = E5s1Image::parse(&bytes)?;
    // Validate the tokenizer before writing anything.
    tokenizers::Tokenizer::from_file(tokenizer).map_err(|e| {
        ModelError::Corrupt(format!(
            "tokenizer {} cannot be read: {e}",
            tokenizer.display()
        ))
    })?;
    let tensors = img.hf_tensors()?;
    let h = img.header.clone();
    super::write_model_dir_opts(out, opts.force, |tmp| {
        let cfg = serde_json::to_vec_pretty(&img.hf_config()).expect("config serialises");
        std::fs::write(tmp.join("config.json"), cfg).map_err(|e| ModelError::io(tmp, e))?;
        candle_core::safetensors::save(&tensors, tmp.join("model.safetensors"))?;
        std::fs::copy(tokenizer, tmp.join("tokenizer.json"))
            .map_err(|e| ModelError::io(tokenizer, e))?;
        Ok(super::ManifestSpec {
            name: opts.name.to_string(),
            dimension: h.hidden,
            pooling: opts.pooling,
            prefix: opts.prefix.to_string(),
            max_tokens: h.max_positions,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn q4_0_block_layout() {
        // scale 0.5; byte j = (low = j % 16, high = 15 - j % 16)
        let mut block = f16::from_f32(0.5).to_le_bytes().to_vec();
        for j in 0..16u8 {
            block.push((j & 0x0f) | ((15 - j) << 4));
        }
        let v = dequantize_q4_0(&block);
        assert_eq!(v.len(), 32);
        assert_eq!(v[0], -4.0); // (0 - 8) * 0.5
        assert_eq!(v[15], 3.5); // (15 - 8) * 0.5
        assert_eq!(v[16], 3.5); // high nibble of byte 0 is 15
        assert_eq!(v[31], -4.0);
    }

    #[test]
    fn rejects_bad_magic_and_truncation() {
        assert!(matches!(
            E5s1Image::parse(b"NOPE\x01\0\0\0"),
            Err(ModelError::Corrupt(_))
        ));
        let err = E5s1Image::parse(b"E5S1\x01\0\0\0\x80\x01").err().unwrap();
        assert!(err.to_string().contains("truncated"), "{err}");
    }
}
