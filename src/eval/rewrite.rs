//! `kefu eval rewrite`: context rewriting on the shared `rewrite` format
//! (`{"context": [earlier turns], "utterance", "rewrite"}`), against two trivial baselines —
//! the bare utterance and the utterance glued to the previous turn. Besides exact match and
//! character F1, `retrieval_agreement` asks what matters for a support bot: does the rewrite
//! retrieve the same entry as the gold rewrite from a KB made of all the gold rewrites (the
//! serving matcher: spelling correction, dense + BM25 + fuzzy, fused)?

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::embed::Embedder;
use crate::matcher::{FusionWeights, IndexOptions, KbIndex};

#[derive(Debug, Clone, Deserialize)]
pub struct Row {
    pub context: Vec<String>,
    pub utterance: String,
    pub rewrite: String,
}

pub fn read(path: &Path, limit: Option<usize>) -> anyhow::Result<Vec<Row>> {
    let rows: Vec<(usize, Row)> = super::read_jsonl(
        path,
        limit,
        r#"{"context": [...], "utterance": "...", "rewrite": "..."}"#,
    )?;
    anyhow::ensure!(!rows.is_empty(), "{} has no rows", path.display());
    Ok(rows.into_iter().map(|(_, r)| r).collect())
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Scores {
    pub exact_match: f64,
    pub char_f1: f64,
    pub retrieval_agreement: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Baselines {
    pub bare: Scores,
    pub concat: Scores,
}

#[derive(Debug, Clone, Serialize)]
pub struct RewriteReport {
    pub data: String,
    pub n: usize,
    pub exact_match: f64,
    pub char_f1: f64,
    pub retrieval_agreement: f64,
    /// Share of utterances the rewriter changed.
    pub rewritten: f64,
    pub baselines: Baselines,
    /// Distinct gold rewrites in the KB.
    pub kb_entries: usize,
    pub interrupted: bool,
    pub seconds: f64,
}

/// Characters compared: everything but whitespace.
fn chars(s: &str) -> HashMap<char, usize> {
    let mut m = HashMap::new();
    for c in crate::embed::normalize(s)
        .chars()
        .filter(|c| !c.is_whitespace())
    {
        *m.entry(c).or_default() += 1;
    }
    m
}

/// F1 of the multisets of characters of `got` and `gold`.
pub fn char_f1(got: &str, gold: &str) -> f64 {
    let (a, b) = (chars(got), chars(gold));
    let common: usize = a
        .iter()
        .map(|(c, n)| (*n).min(*b.get(c).unwrap_or(&0)))
        .sum();
    let (na, nb) = (a.values().sum::<usize>(), b.values().sum::<usize>());
    if common == 0 || na == 0 || nb == 0 {
        return 0.0;
    }
    let (p, r) = (common as f64 / na as f64, common as f64 / nb as f64);
    2.0 * p * r / (p + r)
}

fn same(a: &str, b: &str) -> bool {
    let strip = |s: &str| -> String {
        crate::embed::normalize(s)
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect()
    };
    strip(a) == strip(b)
}

/// The three candidates for a row: kefu's rewrite, the bare utterance, the glued one.
pub fn candidates(r: &Row) -> [String; 3] {
    let h: Vec<&str> = r.context.iter().map(String::as_str).collect();
    let ours =
        crate::dialog::context::rewrite(&h, &r.utterance).unwrap_or_else(|| r.utterance.clone());
    let concat = match r.context.last() {
        Some(prev) => format!("{prev}{}{}", sep(prev, &r.utterance), r.utterance),
        None => r.utterance.clone(),
    };
    [ours, r.utterance.clone(), concat]
}

/// A space between two Latin words, nothing between Chinese ones.
fn sep(a: &str, b: &str) -> &'static str {
    let ends = a.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
    let starts = b.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    if ends || starts || !a.chars().any(crate::text::is_cjk) {
        " "
    } else {
        ""
    }
}

pub fn run(
    e: &Embedder,
    data: &Path,
    rows: &[Row],
    index_opts: &IndexOptions,
    weights: FusionWeights,
) -> anyhow::Result<RewriteReport> {
    let started = Instant::now();
    let stop = super::interrupt_flag();
    // The KB: one entry per distinct gold rewrite.
    let mut ids: HashMap<&str, usize> = HashMap::new();
    let mut entries = Vec::new();
    for r in rows {
        let next = ids.len();
        ids.entry(r.rewrite.as_str()).or_insert_with(|| {
            entries.push(crate::kb::FaqEntry::new(
                format!("r{next}"),
                r.rewrite.clone(),
                "-".into(),
            ));
            next
        });
    }
    let kb_entries = entries.len();
    let b = super::texts_bar(0, "indexing the gold rewrites");
    let index = KbIndex::build(entries, &[], &[], e, None, index_opts, |done, total| {
        b.set_length(total as u64);
        b.set_position(done as u64);
    })?;
    b.finish_and_clear();

    let cands: Vec<[String; 3]> = rows.iter().map(candidates).collect();
    let b = super::texts_bar(rows.len(), "matching rewrites and baselines");
    // Top entry per distinct text, as the serving matcher finds it.
    let mut top: HashMap<String, Option<usize>> = HashMap::new();
    let mut lookup = |text: &str| -> anyhow::Result<Option<usize>> {
        if let Some(t) = top.get(text) {
            return Ok(*t);
        }
        let corrected = index.correct(text);
        let used = corrected.as_deref().unwrap_or(text).to_string();
        let v = e.embed_blocking(std::slice::from_ref(&used))?;
        let best = index
            .search(&v[0].vector, &used, 1, weights)
            .first()
            .map(|c| c.entry);
        top.insert(text.to_string(), best);
        Ok(best)
    };
    let mut sums = [Scores::default(), Scores::default(), Scores::default()];
    let (mut n, mut changed, mut interrupted) = (0usize, 0usize, false);
    for (r, c) in rows.iter().zip(&cands) {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let gold_top = lookup(&r.rewrite)?;
        for (k, text) in c.iter().enumerate() {
            let s = &mut sums[k];
            s.exact_match += same(text, &r.rewrite) as u8 as f64;
            s.char_f1 += char_f1(text, &r.rewrite);
            s.retrieval_agreement += (lookup(text)? == gold_top) as u8 as f64;
        }
        changed += (!same(&c[0], &r.utterance)) as usize;
        n += 1;
        b.inc(1);
    }
    b.finish_and_clear();
    anyhow::ensure!(n > 0, "interrupted before the first row");
    let mean = |s: &Scores| Scores {
        exact_match: s.exact_match / n as f64,
        char_f1: s.char_f1 / n as f64,
        retrieval_agreement: s.retrieval_agreement / n as f64,
    };
    let [ours, bare, concat] = sums.each_ref().map(mean);
    Ok(RewriteReport {
        data: data.display().to_string(),
        n,
        exact_match: ours.exact_match,
        char_f1: ours.char_f1,
        retrieval_agreement: ours.retrieval_agreement,
        rewritten: changed as f64 / n as f64,
        baselines: Baselines { bare, concat },
        kb_entries,
        interrupted,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn char_f1_on_known_pairs() {
        assert_eq!(char_f1("马云是谁", "马云是谁"), 1.0);
        assert_eq!(char_f1("abc", "xyz"), 0.0);
        // got 他是谁 (3), gold 马云是谁 (4): common 是谁 = 2 → p 2/3, r 1/2 → f1 4/7.
        assert!((char_f1("他是谁", "马云是谁") - 4.0 / 7.0).abs() < 1e-12);
        assert!(same("Do you ship  to Japan?", "Do you ship to Japan?"));
    }

    #[test]
    fn baselines_are_the_bare_and_the_glued_utterance() {
        let r = Row {
            context: vec!["马云是谁".into(), "做过中国首富".into()],
            utterance: "他是共产党员吗".into(),
            rewrite: "马云是共产党员吗".into(),
        };
        let [_, bare, concat] = candidates(&r);
        assert_eq!(bare, "他是共产党员吗");
        assert_eq!(concat, "做过中国首富他是共产党员吗");
        let r = Row {
            context: vec!["Do you ship to Canada?".into()],
            utterance: "what about Japan?".into(),
            rewrite: "Do you ship to Japan?".into(),
        };
        assert_eq!(
            candidates(&r)[2],
            "Do you ship to Canada? what about Japan?"
        );
    }
}
