//! Retrieval indexes: dense vectors (exact search, and an HNSW graph for large KBs), lexical
//! BM25 (words or character n-grams), and snapshots of the vectors on disk.

pub mod bm25;
pub mod dense;
pub mod hnsw;
pub mod snapshot;

use serde::{Deserialize, Serialize};

/// How the index is built (from `[index]` in the config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IndexOptions {
    /// Below this many texts, dense search is exact; from it on, an HNSW graph.
    pub exact_below: usize,
    pub ann: hnsw::AnnParams,
}

impl Default for IndexOptions {
    fn default() -> Self {
        IndexConfig::default().options()
    }
}

/// `[index]` in kefu.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IndexConfig {
    /// Below this many indexed questions dense search is exact (faster there: about half the
    /// time of HNSW at 10,000, docs/BENCHMARKS.md); from it on it goes through an HNSW graph.
    pub exact_below: usize,
    /// HNSW neighbours per node.
    pub hnsw_m: usize,
    /// HNSW candidate list while building (higher: better graph, slower build).
    pub hnsw_ef_construction: usize,
    /// HNSW candidate list while searching (higher: better recall, slower search).
    pub hnsw_ef_search: usize,
    /// Save the index (vectors and graph, with the model version) in `<data_dir>/index` and
    /// reload it at start instead of embedding the KB again.
    pub snapshot: bool,
}

impl Default for IndexConfig {
    fn default() -> Self {
        Self {
            exact_below: 20_000,
            hnsw_m: 16,
            hnsw_ef_construction: 200,
            hnsw_ef_search: 64,
            snapshot: true,
        }
    }
}

impl IndexConfig {
    pub fn options(&self) -> IndexOptions {
        IndexOptions {
            exact_below: self.exact_below,
            ann: hnsw::AnnParams {
                m: self.hnsw_m,
                ef_construction: self.hnsw_ef_construction,
                ef_search: self.hnsw_ef_search,
            },
        }
    }

    /// Checks values that parse but make no sense, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(2..=255).contains(&self.hnsw_m) {
            return Err(format!(
                "index.hnsw_m must be between 2 and 255, got {}",
                self.hnsw_m
            ));
        }
        if self.hnsw_ef_construction == 0 || self.hnsw_ef_search == 0 {
            return Err(
                "index.hnsw_ef_construction and index.hnsw_ef_search must be at least 1".into(),
            );
        }
        Ok(())
    }
}
