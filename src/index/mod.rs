//! Retrieval indexes: dense vectors (exact search) and lexical BM25 (words or character
//! n-grams).

pub mod bm25;
pub mod dense;
