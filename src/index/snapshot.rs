//! Index snapshots in the data directory: every indexed text with its vector, and the HNSW
//! graph when there is one, saved with the model version that computed them. At start a
//! snapshot from the serving model saves re-embedding the whole KB; one from any other model
//! is never used.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::hnsw::Graph;

/// Vectors (and a graph) a new index generation may reuse instead of embedding again.
pub struct Prior {
    pub model_version: String,
    pub dim: usize,
    pub texts: Vec<String>,
    /// `texts.len() × dim`, row-major.
    pub vectors: Vec<f32>,
    pub graph: Option<Arc<Graph>>,
}

#[derive(Serialize, Deserialize)]
struct Meta {
    format: u32,
    model_version: String,
    dim: usize,
    texts: Vec<String>,
    graph: bool,
}

const FORMAT: u32 = 1;

/// Where snapshots live: `<data_dir>/index`.
pub fn dir(data_dir: &Path) -> PathBuf {
    data_dir.join("index")
}

/// Temporary directories of snapshot writes are named this (`<data_dir>/.index-…`).
const TMP_PREFIX: &str = ".index-";

/// Puts the newest complete snapshot back in `dir` when a crash left none there (see
/// [`crate::atomic::recover_dir`]) and removes what interrupted writes left behind.
pub fn recover(dir: &Path) -> anyhow::Result<()> {
    if let Some(from) =
        crate::atomic::recover_dir(dir, TMP_PREFIX, |p| p.join("meta.json").exists())?
    {
        tracing::info!(from = %from.display(), "index snapshot recovered after an interrupted write");
    }
    Ok(())
}

/// Writes `prior` as the snapshot in `dir`: into a fresh sibling directory first, then swapped
/// in whole, so a crash leaves the old snapshot or the new one, never a mix.
pub fn save(dir: &Path, prior: &Prior) -> anyhow::Result<()> {
    let meta = Meta {
        format: FORMAT,
        model_version: prior.model_version.clone(),
        dim: prior.dim,
        texts: prior.texts.clone(),
        graph: prior.graph.is_some(),
    };
    let mut bytes = Vec::with_capacity(prior.vectors.len() * 4);
    for x in &prior.vectors {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    crate::atomic::replace_dir(dir, TMP_PREFIX, |tmp| {
        std::fs::write(tmp.join("vectors.f32"), bytes)?;
        if let Some(g) = &prior.graph {
            g.save(tmp)?;
        }
        // meta.json last: a directory without it is not a snapshot.
        std::fs::write(tmp.join("meta.json"), serde_json::to_vec(&meta)?)?;
        Ok(())
    })
}

/// Why a snapshot was not used.
#[derive(Debug, PartialEq)]
pub enum Unusable {
    Missing,
    OtherModel(String),
    Broken(String),
}

/// Loads the snapshot in `dir` if it was made by `model_version`.
pub fn load(dir: &Path, model_version: &str) -> Result<Prior, Unusable> {
    let meta = match std::fs::read(dir.join("meta.json")) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Unusable::Missing),
        Err(e) => return Err(Unusable::Broken(format!("reading meta.json: {e}"))),
    };
    let meta: Meta = serde_json::from_slice(&meta)
        .map_err(|e| Unusable::Broken(format!("parsing meta.json: {e}")))?;
    if meta.format != FORMAT {
        return Err(Unusable::Broken(format!(
            "snapshot format {} (this kefu reads {FORMAT})",
            meta.format
        )));
    }
    if meta.model_version != model_version {
        return Err(Unusable::OtherModel(meta.model_version));
    }
    let bytes = std::fs::read(dir.join("vectors.f32"))
        .map_err(|e| Unusable::Broken(format!("reading vectors.f32: {e}")))?;
    if bytes.len() != meta.texts.len() * meta.dim * 4 {
        return Err(Unusable::Broken(format!(
            "vectors.f32 has {} bytes, expected {} texts × {} dims",
            bytes.len(),
            meta.texts.len(),
            meta.dim
        )));
    }
    let vectors = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let graph = if meta.graph {
        Some(Arc::new(
            Graph::load(dir).map_err(|e| Unusable::Broken(format!("{e:#}")))?,
        ))
    } else {
        None
    };
    Ok(Prior {
        model_version: meta.model_version,
        dim: meta.dim,
        texts: meta.texts,
        vectors,
        graph,
    })
}
