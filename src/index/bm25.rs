//! Okapi BM25 over pre-tokenised documents.

use std::collections::HashMap;

pub struct Bm25 {
    postings: HashMap<String, Vec<(u32, u16)>>,
    doc_len: Vec<u32>,
    avg_len: f32,
    k1: f32,
    b: f32,
}

impl Bm25 {
    pub fn build(docs: &[Vec<String>]) -> Self {
        let mut postings: HashMap<String, Vec<(u32, u16)>> = HashMap::new();
        let mut doc_len = Vec::with_capacity(docs.len());
        for (d, toks) in docs.iter().enumerate() {
            let mut tf: HashMap<&str, u16> = HashMap::new();
            for t in toks {
                *tf.entry(t.as_str()).or_default() += 1;
            }
            for (t, n) in tf {
                postings
                    .entry(t.to_string())
                    .or_default()
                    .push((d as u32, n));
            }
            doc_len.push(toks.len() as u32);
        }
        let avg_len = doc_len.iter().sum::<u32>() as f32 / doc_len.len().max(1) as f32;
        Self {
            postings,
            doc_len,
            avg_len: avg_len.max(1.0),
            k1: 1.2,
            b: 0.75,
        }
    }

    fn idf(&self, df: usize) -> f32 {
        let n = self.doc_len.len() as f32;
        ((n - df as f32 + 0.5) / (df as f32 + 0.5) + 1.0).ln()
    }

    /// BM25 score of every document that shares a term with the query (doc id → score).
    pub fn scores(&self, query: &[String]) -> HashMap<u32, f32> {
        let mut out: HashMap<u32, f32> = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        for t in query {
            if !seen.insert(t) {
                continue;
            }
            let Some(list) = self.postings.get(t) else {
                continue;
            };
            let idf = self.idf(list.len());
            for &(d, tf) in list {
                let tf = tf as f32;
                let len = self.doc_len[d as usize] as f32;
                let s = idf * tf * (self.k1 + 1.0)
                    / (tf + self.k1 * (1.0 - self.b + self.b * len / self.avg_len));
                *out.entry(d).or_default() += s;
            }
        }
        out
    }

    /// The score a document identical to the query would get: an upper bound used to bring
    /// scores into [0, 1] independently of the query's length.
    pub fn self_score(&self, query: &[String]) -> f32 {
        let mut seen = std::collections::HashSet::new();
        let len = query.len() as f32;
        query
            .iter()
            .filter(|t| seen.insert(*t))
            .map(|t| {
                let df = self.postings.get(t).map_or(0, |l| l.len());
                let tf = query.iter().filter(|x| *x == t).count() as f32;
                self.idf(df) * tf * (self.k1 + 1.0)
                    / (tf + self.k1 * (1.0 - self.b + self.b * len / self.avg_len))
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn rarer_terms_weigh_more() {
        let idx = Bm25::build(&[
            toks("refund time"),
            toks("refund policy"),
            toks("shipping time"),
        ]);
        let s = idx.scores(&toks("refund policy"));
        assert!(s[&1] > s[&0], "{s:?}");
        assert!(!s.contains_key(&2));
        assert!(idx.self_score(&toks("refund policy")) >= s[&1] * 0.99);
    }
}
