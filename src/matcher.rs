//! FAQ matching: one query against the knowledge base through three signals — dense cosine
//! (the encoder), lexical BM25 over words (jieba for Chinese) and BM25 over character bigrams
//! (typos, homophone slips of one character) — fused into one score per entry.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::embed::{EmbedError, Embedder};
use crate::index::bm25::Bm25;
use crate::index::dense::DenseIndex;
use crate::kb::FaqEntry;
use crate::text;

/// Weights of the fused score `dense + lexical_weight · lexical + fuzzy_weight · fuzzy`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct FusionWeights {
    pub lexical: f32,
    pub fuzzy: f32,
}

impl Default for FusionWeights {
    fn default() -> Self {
        // Chosen with `kefu eval faq --sweep` on the shared sets (docs/EVALUATION.md).
        Self {
            lexical: 0.01,
            fuzzy: 0.03,
        }
    }
}

/// One knowledge-base entry scored against a query.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Candidate {
    /// Index of the entry in the index's entry list.
    pub entry: usize,
    /// Index of the entry's text (standard or similar question) that matched best.
    pub text: usize,
    /// Best cosine between the query and the entry's questions.
    pub dense: f32,
    /// Word BM25 against the entry's best question, over the query's own BM25 (0–1).
    pub lexical: f32,
    /// Character-bigram BM25, normalised the same way (0–1).
    pub fuzzy: f32,
    pub score: f32,
}

/// Everything needed to match queries against a fixed set of entries.
pub struct KbIndex {
    pub entries: Vec<FaqEntry>,
    /// (entry index, text) for every standard and similar question.
    pub texts: Vec<(usize, String)>,
    dense: DenseIndex,
    words: Bm25,
    grams: Bm25,
    pub model_version: String,
}

/// Candidates taken from each signal before fusion.
const POOL: usize = 64;

impl KbIndex {
    /// Embeds every question of `entries` (enabled ones only) and builds the indexes.
    pub fn build(
        entries: Vec<FaqEntry>,
        embedder: &Embedder,
        progress: impl Fn(usize, usize),
    ) -> Result<Self, EmbedError> {
        let entries: Vec<FaqEntry> = entries.into_iter().filter(|e| e.enabled).collect();
        let mut texts = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            texts.push((i, e.question.clone()));
            for s in &e.similar {
                texts.push((i, s.clone()));
            }
        }
        let mut dense = DenseIndex::new(embedder.dim());
        let all: Vec<String> = texts.iter().map(|t| t.1.clone()).collect();
        for (n, chunk) in all.chunks(64).enumerate() {
            for v in embedder.embed_blocking(chunk)? {
                dense.push(&v.vector);
            }
            progress((n * 64 + chunk.len()).min(all.len()), all.len());
        }
        let words = Bm25::build(&all.iter().map(|t| text::tokens(t)).collect::<Vec<_>>());
        let grams = Bm25::build(
            &all.iter()
                .map(|t| text::char_bigrams(t))
                .collect::<Vec<_>>(),
        );
        Ok(Self {
            entries,
            texts,
            dense,
            words,
            grams,
            model_version: embedder.version().to_string(),
        })
    }

    /// The best `top_k` entries for a query (its vector and its text), best first.
    pub fn search(
        &self,
        q_vec: &[f32],
        q_text: &str,
        top_k: usize,
        w: FusionWeights,
    ) -> Vec<Candidate> {
        let dense = self.dense.all_scores(q_vec);
        let q_words = text::tokens(q_text);
        let q_grams = text::char_bigrams(q_text);
        let lex = normalised(&self.words, &q_words);
        let fuz = normalised(&self.grams, &q_grams);

        // Entries reached by any signal's top texts, then every signal over all their texts.
        let mut pool: Vec<usize> = top_indices(&dense, POOL);
        pool.extend(top_keys(&lex, POOL));
        pool.extend(top_keys(&fuz, POOL));
        let mut entries: Vec<usize> = pool.into_iter().map(|t| self.texts[t].0).collect();
        entries.sort_unstable();
        entries.dedup();
        let mut out: Vec<Candidate> = entries
            .into_iter()
            .map(|e| {
                let (lo, hi) = self.text_range(e);
                let mut c = Candidate {
                    entry: e,
                    text: lo,
                    dense: f32::MIN,
                    lexical: 0.0,
                    fuzzy: 0.0,
                    score: 0.0,
                };
                for (t, &d) in dense.iter().enumerate().take(hi).skip(lo) {
                    if d > c.dense {
                        c.dense = d;
                        c.text = t;
                    }
                    c.lexical = c.lexical.max(lex.get(&(t as u32)).copied().unwrap_or(0.0));
                    c.fuzzy = c.fuzzy.max(fuz.get(&(t as u32)).copied().unwrap_or(0.0));
                }
                c.score = c.dense + w.lexical * c.lexical + w.fuzzy * c.fuzzy;
                c
            })
            .collect();
        out.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.entry.cmp(&b.entry)));
        out.truncate(top_k);
        out
    }

    /// Texts of entry `e` are contiguous: [lo, hi).
    fn text_range(&self, e: usize) -> (usize, usize) {
        let lo = self.texts.partition_point(|t| t.0 < e);
        let hi = self.texts.partition_point(|t| t.0 <= e);
        (lo, hi)
    }
}

/// BM25 scores divided by the query's own score, capped at 1.
fn normalised(idx: &Bm25, q: &[String]) -> HashMap<u32, f32> {
    let top = idx.self_score(q);
    if top <= 0.0 {
        return HashMap::new();
    }
    idx.scores(q)
        .into_iter()
        .map(|(d, s)| (d, (s / top).min(1.0)))
        .collect()
}

fn top_indices(v: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    let k = k.min(idx.len());
    if k == 0 {
        return idx;
    }
    idx.select_nth_unstable_by(k - 1, |&a, &b| v[b].total_cmp(&v[a]));
    idx.truncate(k);
    idx
}

fn top_keys(m: &HashMap<u32, f32>, k: usize) -> Vec<usize> {
    let mut v: Vec<(u32, f32)> = m.iter().map(|(&a, &b)| (a, b)).collect();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v.into_iter().take(k).map(|(d, _)| d as usize).collect()
}
