//! Text embeddings: the `Encoder` trait, the candle BERT encoders, the batching worker and the
//! query-embedding cache, put together by [`Embedder`].

pub mod batcher;
pub mod bert;
pub mod cache;
pub mod int8;
pub mod ops;
pub mod qbert;
pub mod tokenize;
pub mod train;
pub mod unigram;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use unicode_normalization::UnicodeNormalization;

use crate::analytics::metrics::Metrics;
use crate::model::{self, Manifest};
pub use batcher::{Batcher, BatcherConfig};
pub use bert::{BertEncoder, EngineInfo, EngineKind};
use cache::EmbeddingCache;
pub use int8::gemm::{CpuPath, Kernel};
pub use qbert::Weights;
use tokenize::{TextTokenizer, Tokens};

/// `[embed]` in kefu.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbedConfig {
    /// `kefu` (tuned, quantised weights) or `candle` (candle-transformers' BertModel, f32).
    pub engine: EngineKind,
    /// Weight storage for the `kefu` engine: `int8` (kefu's kernels), `q8_0`, `q4_0` (candle's
    /// quantised matmul) or `f32`.
    pub weights: Weights,
    /// Which int8 kernels run the model: `auto` (the fastest this CPU has), or a forced
    /// `avx512`, `avx2`, `neon` or `scalar` (refused at start when the CPU lacks it).
    pub cpu: int8::gemm::CpuPath,
    /// Override the manifest's pooling (`mean` or `cls`).
    pub pooling: Option<model::Pooling>,
    /// Override the manifest's input prefix.
    pub prefix: Option<String>,
    /// Truncate inputs to fewer tokens than the model allows.
    pub max_tokens: Option<usize>,
    /// Most tokens in one round of the worker (requests take turns adding sequences to it,
    /// so no request holds the model longer than a round while others wait) and most padded
    /// tokens in one forward pass.
    pub max_batch_tokens: usize,
    /// Most sequences in one round and in one forward pass.
    pub max_batch_size: usize,
    /// Most requests accepted by the model and not yet answered; beyond it requests get 429.
    pub max_queue: usize,
    /// Query embeddings kept in the LRU cache (0 disables it).
    pub cache_size: usize,
    /// Threads for inference; 0 uses every core.
    pub threads: usize,
    /// Check the model files' sha256 against the manifest at load.
    pub verify_checksums: bool,
}

impl Default for EmbedConfig {
    fn default() -> Self {
        Self {
            engine: EngineKind::Kefu,
            weights: Weights::Int8,
            cpu: int8::gemm::CpuPath::Auto,
            pooling: None,
            prefix: None,
            max_tokens: None,
            max_batch_tokens: 16384,
            max_batch_size: 64,
            max_queue: 512,
            cache_size: 20_000,
            threads: 0,
            verify_checksums: true,
        }
    }
}

impl EmbedConfig {
    /// Checks values that parse but make no sense, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        for (key, v) in [
            ("embed.max_batch_tokens", self.max_batch_tokens),
            ("embed.max_batch_size", self.max_batch_size),
            ("embed.max_queue", self.max_queue),
        ] {
            if v == 0 {
                return Err(format!("{key} must be at least 1"));
            }
        }
        if self.max_tokens == Some(0) {
            return Err("embed.max_tokens must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum EmbedError {
    #[error("loading the model failed: {0}")]
    Load(String),
    #[error("tokenization failed: {0}")]
    Tokenize(String),
    #[error("inference failed: {0}")]
    Inference(String),
    #[error("the embedding queue is full ({0} requests waiting); retry later")]
    Overloaded(usize),
    #[error("the embedding worker has stopped")]
    WorkerGone,
}

/// A model that turns token id sequences into L2-normalised vectors. Implementations own the
/// weights and run on the batching worker's thread; they never see text.
pub trait Encoder: Send {
    fn embed(&mut self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// One embedding with the number of tokens the model saw for it.
#[derive(Debug, Clone)]
pub struct Embedded {
    pub vector: Arc<[f32]>,
    pub tokens: usize,
}

/// The form of a text used both as cache key and as model input: NFKC (full-width forms become
/// ASCII), surrounding whitespace removed, inner runs of whitespace collapsed to one space.
pub fn normalize(text: &str) -> String {
    let nfkc: String = text.nfkc().collect();
    nfkc.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Everything needed to embed text with one loaded model.
pub struct Embedder {
    dir: std::path::PathBuf,
    manifest: Manifest,
    version: Arc<str>,
    tokenizer: TextTokenizer,
    batcher: Batcher,
    cache: EmbeddingCache<Embedded>,
    metrics: Arc<Metrics>,
    engine: EngineInfo,
}

impl Embedder {
    /// Loads the model directory (verifying checksums), starts its worker thread.
    pub fn load(dir: &Path, cfg: &EmbedConfig, metrics: Arc<Metrics>) -> Result<Self, EmbedError> {
        let mut manifest = model::load_manifest(dir, cfg.verify_checksums)
            .map_err(|e| EmbedError::Load(e.to_string()))?;
        if let Some(p) = cfg.pooling {
            manifest.pooling = p;
        }
        if let Some(prefix) = &cfg.prefix {
            manifest.prefix = prefix.clone();
        }
        let max_tokens = manifest
            .max_tokens
            .min(cfg.max_tokens.unwrap_or(usize::MAX));
        let tokenizer =
            TextTokenizer::from_file(&dir.join("tokenizer.json"), &manifest.prefix, max_tokens)?;
        let encoder = BertEncoder::load(
            dir,
            &manifest,
            tokenizer.pad_id(),
            cfg.engine,
            cfg.weights,
            cfg.cpu,
        )?;
        let engine = encoder.info();
        let batcher = Batcher::spawn(
            Box::new(encoder),
            BatcherConfig {
                max_batch_tokens: cfg.max_batch_tokens,
                max_batch_size: cfg.max_batch_size,
                max_queue: cfg.max_queue,
            },
            metrics.clone(),
        );
        Ok(Self {
            dir: dir.to_path_buf(),
            version: manifest.version.clone().into(),
            manifest,
            tokenizer,
            batcher,
            cache: EmbeddingCache::new(cfg.cache_size),
            metrics,
            engine,
        })
    }

    /// The forward pass and kernels serving this model.
    pub fn engine(&self) -> &EngineInfo {
        &self.engine
    }

    /// The model directory it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn version(&self) -> &str {
        &self.version
    }

    pub fn dim(&self) -> usize {
        self.manifest.dimension
    }

    /// Tokenizes one normalised text (used for tests and token counting).
    pub fn tokenize(&self, text: &str) -> Result<Tokens, EmbedError> {
        self.tokenizer.encode(text)
    }

    /// Valid token ids are below this (`/v1/embeddings` takes ids).
    pub fn vocab_size(&self) -> usize {
        self.tokenizer.vocab_size()
    }

    /// The text token ids of this model spell (special tokens left out).
    pub fn decode(&self, ids: &[u32]) -> Result<String, EmbedError> {
        self.tokenizer.decode(ids)
    }

    /// Splits `texts` into cache hits and misses; misses come back tokenized.
    fn prepare(&self, texts: &[String]) -> Result<Prepared, EmbedError> {
        let mut out = vec![None; texts.len()];
        let mut misses = Vec::new();
        let started = Instant::now();
        for (i, t) in texts.iter().enumerate() {
            let key = normalize(t);
            match self.cache.get(&self.version, &key) {
                Some(hit) => {
                    self.metrics.cache_hits.inc();
                    out[i] = Some(hit);
                }
                None => {
                    self.metrics.cache_misses.inc();
                    let tokens = self.tokenizer.encode(&key)?;
                    misses.push((i, key, tokens));
                }
            }
        }
        if !misses.is_empty() {
            self.metrics
                .tokenization_seconds
                .observe(started.elapsed().as_secs_f64());
        }
        Ok(Prepared { out, misses })
    }

    fn finish(&self, mut p: Prepared, vectors: Vec<Vec<f32>>) -> Vec<Embedded> {
        for ((i, key, tokens), v) in p.misses.into_iter().zip(vectors) {
            let e = Embedded {
                vector: v.into(),
                tokens: tokens.len(),
            };
            self.cache.put(&self.version, key, e.clone());
            p.out[i] = Some(e);
        }
        p.out
            .into_iter()
            .map(|e| e.expect("every input is a hit or was embedded"))
            .collect()
    }

    /// Embeds `texts` (in order), from the cache where possible.
    pub async fn embed(&self, texts: &[String]) -> Result<Vec<Embedded>, EmbedError> {
        let p = self.prepare(texts)?;
        if p.misses.is_empty() {
            return Ok(self.finish(p, Vec::new()));
        }
        let tokens = p.misses.iter().map(|m| m.2.clone()).collect();
        let vectors = self
            .batcher
            .submit(tokens)?
            .await
            .map_err(|_| EmbedError::WorkerGone)??;
        Ok(self.finish(p, vectors))
    }

    /// The same as [`Embedder::embed`] for callers outside an async runtime (CLI, eval).
    pub fn embed_blocking(&self, texts: &[String]) -> Result<Vec<Embedded>, EmbedError> {
        let p = self.prepare(texts)?;
        if p.misses.is_empty() {
            return Ok(self.finish(p, Vec::new()));
        }
        let tokens = p.misses.iter().map(|m| m.2.clone()).collect();
        let vectors = self
            .batcher
            .submit(tokens)?
            .blocking_recv()
            .map_err(|_| EmbedError::WorkerGone)??;
        Ok(self.finish(p, vectors))
    }

    /// Embeds pre-tokenized inputs straight through the worker, bypassing the cache (bench).
    pub fn embed_tokens_blocking(&self, tokens: Vec<Tokens>) -> Result<Vec<Vec<f32>>, EmbedError> {
        self.batcher
            .submit(tokens)?
            .blocking_recv()
            .map_err(|_| EmbedError::WorkerGone)?
    }

    /// Requests accepted by the worker and not yet answered.
    pub fn queue_len(&self) -> usize {
        self.batcher.pending()
    }
}

struct Prepared {
    out: Vec<Option<Embedded>>,
    misses: Vec<(usize, String, Tokens)>,
}

/// Cosine similarity of two L2-normalised vectors: their dot product.
pub use crate::index::dense::dot as cosine;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_folds_width_and_whitespace() {
        assert_eq!(
            normalize("  ＡＢＣ１２３  退款\t\n怎么  办 "),
            "ABC123 退款 怎么 办"
        );
        assert_eq!(normalize("？"), "?");
    }
}
