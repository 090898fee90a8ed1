//! Retrieval indexes: dense vectors (exact search, and an HNSW graph for large KBs), lexical
//! BM25 (words or character n-grams), and snapshots of the vectors on disk.

pub mod bm25;
pub mod dense;
pub mod hnsw;
pub mod snapshot;
