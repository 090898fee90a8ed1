//! Embeddings of whole data files for training and evaluation, with a progress bar, Ctrl-C
//! and an on-disk cache keyed by the encoder version and the exact texts, so that training
//! again (other options, another head) or evaluating again does not re-encode anything.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::embed::Embedder;

/// Row-major embeddings: row `i` is `data[i * dim..(i + 1) * dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn rows(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// The rows at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Matrix {
        let mut data = Vec::with_capacity(idx.len() * self.dim);
        for &i in idx {
            data.extend_from_slice(self.row(i));
        }
        Matrix {
            dim: self.dim,
            data,
        }
    }
}

/// The default cache directory: `<data_dir>/cache/embeddings`.
pub fn default_cache_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("cache").join("embeddings")
}

fn cache_key(version: &str, texts: &[String]) -> String {
    let mut h = Sha256::new();
    h.update(version.as_bytes());
    for t in texts {
        h.update([0u8]);
        h.update(t.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Embeds `texts` (64 at a time), reading and writing the cache in `cache` when given.
/// `what` names the texts in the progress bar. `stop` (Ctrl-C) ends the run between batches
/// with an error; the cache is only written complete.
pub fn embed_all(
    e: &Embedder,
    texts: &[String],
    cache: Option<&Path>,
    what: &str,
    stop: Option<&AtomicBool>,
) -> anyhow::Result<Matrix> {
    let dim = e.dim();
    let path = cache.map(|d| d.join(format!("{}.f32", cache_key(e.version(), texts))));
    if let Some(p) = &path
        && let Ok(bytes) = std::fs::read(p)
        && bytes.len() == texts.len() * dim * 4
    {
        tracing::info!(
            "{what}: {} embeddings from the cache {}",
            texts.len(),
            p.display()
        );
        let data = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        return Ok(Matrix { dim, data });
    }
    let bar = crate::eval::texts_bar(texts.len(), format!("embedding {what}"));
    let mut data = Vec::with_capacity(texts.len() * dim);
    for chunk in texts.chunks(64) {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            bar.abandon();
            anyhow::bail!("interrupted while embedding {what}; nothing was written");
        }
        for v in e.embed_blocking(chunk)? {
            data.extend_from_slice(&v.vector);
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    if let Some(p) = &path {
        let dir = p.parent().expect("cache file has a directory");
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating the embedding cache {}", dir.display()))?;
        let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        crate::eval::report::write_atomic(p, &bytes)?;
    }
    Ok(Matrix { dim, data })
}
