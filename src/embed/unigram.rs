//! A compact Unigram (SentencePiece) model for the `tokenizers` pipeline.
//!
//! The `tokenizers` crate keeps a Unigram vocabulary as a trie with a hash map per node: for
//! the default model's 250,002 pieces that is about 280 MB, more than the int8 encoder itself.
//! This model holds the same vocabulary as a finite-state transducer (piece bytes → id, a few
//! MB, `fst` crate), the pieces' text in one buffer and their scores, and finds the best
//! segmentation with the same Viterbi pass as `tokenizers`' `Unigram::encode_optimized`: the
//! same scores, the same unknown-piece penalty, the same tie-breaking (shorter piece first, the
//! first best path kept), unknown characters fused. Normalisation, pre-tokenisation, special
//! tokens and the post-processor stay `tokenizers`' own, so the two give the same ids (a test
//! checks it token for token on the shared datasets).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use fst::raw::Output;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use tokenizers::models::unigram::UnigramTrainer;
use tokenizers::{Model, Token};

/// The score given to a character no piece covers, below the lowest piece's (as `tokenizers`).
const UNK_PENALTY: f64 = 10.0;

pub struct LeanUnigram {
    /// Piece bytes → id.
    index: fst::Map<Vec<u8>>,
    /// Every piece's text, in id order; piece `i` is `text[ends[i - 1]..ends[i]]`.
    text: String,
    ends: Vec<u32>,
    scores: Vec<f64>,
    min_score: f64,
    unk_id: Option<u32>,
    byte_fallback: bool,
}

impl fmt::Debug for LeanUnigram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeanUnigram")
            .field("pieces", &self.scores.len())
            .field("unk_id", &self.unk_id)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UnigramError {
    #[error("the vocabulary is empty")]
    Empty,
    #[error("unk_id {0} is outside the vocabulary")]
    UnkOutside(u32),
    #[error("a piece is not covered and the vocabulary has no unk_id")]
    MissingUnk,
    #[error("the vocabulary is too large for one buffer")]
    TooLarge,
    #[error("{0}")]
    Index(#[from] fst::Error),
}

impl LeanUnigram {
    /// Builds the model from `(piece, score)` pairs in id order.
    pub fn new(
        pieces: Vec<(String, f64)>,
        unk_id: Option<u32>,
        byte_fallback: bool,
    ) -> Result<Self, UnigramError> {
        let mut text = String::new();
        let mut ends = Vec::with_capacity(pieces.len());
        let mut scores = Vec::with_capacity(pieces.len());
        for (piece, score) in &pieces {
            text.push_str(piece);
            ends.push(u32::try_from(text.len()).map_err(|_| UnigramError::TooLarge)?);
            scores.push(*score);
        }
        drop(pieces);
        Self::from_parts(text, ends, scores, unk_id, byte_fallback)
    }

    fn from_parts(
        mut text: String,
        ends: Vec<u32>,
        scores: Vec<f64>,
        unk_id: Option<u32>,
        byte_fallback: bool,
    ) -> Result<Self, UnigramError> {
        if scores.is_empty() {
            return Err(UnigramError::Empty);
        }
        if let Some(unk) = unk_id
            && unk as usize >= scores.len()
        {
            return Err(UnigramError::UnkOutside(unk));
        }
        text.shrink_to_fit();
        let piece = |i: usize| piece_of(&text, &ends, i).unwrap_or_default().as_bytes();
        // The FST wants its keys sorted and unique; of two equal pieces the later id wins, as
        // in `tokenizers`' token → id map. The empty piece is never matched there either.
        let mut order: Vec<u32> = (0..scores.len() as u32)
            .filter(|&i| !piece(i as usize).is_empty())
            .collect();
        order.sort_by(|&a, &b| piece(a as usize).cmp(piece(b as usize)).then(a.cmp(&b)));
        let mut builder = fst::MapBuilder::memory();
        for (n, &id) in order.iter().enumerate() {
            let key = piece(id as usize);
            if order
                .get(n + 1)
                .is_some_and(|&next| piece(next as usize) == key)
            {
                continue;
            }
            builder.insert(key, u64::from(id))?;
        }
        let index = fst::Map::new(builder.into_inner()?)?;
        let min_score = scores.iter().copied().fold(f64::INFINITY, f64::min);
        Ok(Self {
            index,
            text,
            ends,
            scores,
            min_score,
            unk_id,
            byte_fallback,
        })
    }

    fn piece(&self, id: u32) -> Option<&str> {
        piece_of(&self.text, &self.ends, id as usize)
    }

    fn lookup(&self, piece: &str) -> Option<u32> {
        self.index.get(piece).map(|id| id as u32)
    }

    /// Bytes held by the vocabulary (index, text, offsets and scores).
    pub fn heap_bytes(&self) -> usize {
        self.index.as_fst().as_bytes().len()
            + self.text.capacity()
            + self.ends.capacity() * 4
            + self.scores.capacity() * 8
    }

    /// The best segmentation of `sentence` as byte ranges with their ids (unknown runs fused,
    /// with `None` for an id when the fused run is not itself a piece).
    fn segment(&self, sentence: &str) -> Result<Vec<(usize, usize, Option<u32>)>, UnigramError> {
        #[derive(Clone, Copy)]
        struct Best {
            id: u32,
            score: f64,
            start: Option<usize>,
        }
        let size = sentence.len();
        let bytes = sentence.as_bytes();
        let unk_score = self.min_score - UNK_PENALTY;
        let fst = self.index.as_fst();
        let mut best = vec![
            Best {
                id: 0,
                score: 0.0,
                start: None
            };
            size + 1
        ];
        let mut start = 0;
        while start < size {
            let here = best[start].score;
            let char_len = sentence[start..].chars().next().map_or(1, char::len_utf8);
            let mut single = false;
            let mut node = fst.root();
            let mut out = Output::zero();
            for (i, &b) in bytes[start..].iter().enumerate() {
                let Some(t) = node.find_input(b) else { break };
                let tr = node.transition(t);
                out = out.cat(tr.out);
                node = fst.node(tr.addr);
                if node.is_final() {
                    let len = i + 1;
                    let id = out.cat(node.final_output()).value() as u32;
                    let candidate = self.scores[id as usize] + here;
                    let target = &mut best[start + len];
                    if target.start.is_none() || candidate > target.score {
                        *target = Best {
                            id,
                            score: candidate,
                            start: Some(start),
                        };
                    }
                    single |= len == char_len;
                }
            }
            if !single {
                let unk = self.unk_id.ok_or(UnigramError::MissingUnk)?;
                let candidate = unk_score + here;
                let target = &mut best[start + char_len];
                if target.start.is_none() || candidate > target.score {
                    *target = Best {
                        id: unk,
                        score: candidate,
                        start: Some(start),
                    };
                }
            }
            start += char_len;
        }
        // Backtrack; consecutive unknown characters become one piece.
        let mut spans = Vec::new();
        let mut end = size;
        let mut unk_run: Option<(usize, usize)> = None;
        while end > 0 {
            let node = best[end];
            let begin = node.start.expect("every character boundary is reached");
            if Some(node.id) == self.unk_id {
                unk_run = Some((begin, unk_run.map_or(end, |(_, e)| e)));
            } else {
                if let Some((b, e)) = unk_run.take() {
                    spans.push((b, e, self.lookup(&sentence[b..e])));
                }
                spans.push((begin, end, Some(node.id)));
            }
            end = begin;
        }
        if let Some((b, e)) = unk_run {
            spans.push((b, e, self.lookup(&sentence[b..e])));
        }
        spans.reverse();
        Ok(spans)
    }
}

/// Piece `i` of pieces stored end to end in `text`, `ends[i]` being where it ends.
fn piece_of<'a>(text: &'a str, ends: &[u32], i: usize) -> Option<&'a str> {
    let end = *ends.get(i)? as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    Some(&text[start..end])
}

impl Model for LeanUnigram {
    type Trainer = UnigramTrainer;

    fn tokenize(&self, sentence: &str) -> tokenizers::Result<Vec<Token>> {
        if sentence.is_empty() {
            return Ok(Vec::new());
        }
        let mut tokens = Vec::new();
        for (b, e, id) in self.segment(sentence)? {
            let piece = &sentence[b..e];
            let id = match id {
                Some(id) => id,
                None => {
                    if self.byte_fallback {
                        let bytes: Option<Vec<u32>> = piece
                            .bytes()
                            .map(|byte| self.lookup(&format!("<0x{byte:02X}>")))
                            .collect();
                        if let Some(ids) = bytes {
                            for (byte, id) in piece.bytes().zip(ids) {
                                tokens.push(Token::new(id, format!("<0x{byte:02X}>"), (b, e)));
                            }
                            continue;
                        }
                    }
                    self.unk_id.ok_or(UnigramError::MissingUnk)?
                }
            };
            tokens.push(Token::new(id, piece.to_string(), (b, e)));
        }
        Ok(tokens)
    }

    fn token_to_id(&self, token: &str) -> Option<u32> {
        self.lookup(token)
    }

    fn id_to_token(&self, id: u32) -> Option<String> {
        self.piece(id).map(str::to_string)
    }

    fn get_vocab(&self) -> HashMap<String, u32> {
        let mut stream = self.index.stream();
        let mut vocab = HashMap::with_capacity(self.scores.len());
        use fst::Streamer;
        while let Some((k, v)) = stream.next() {
            vocab.insert(String::from_utf8_lossy(k).into_owned(), v as u32);
        }
        vocab
    }

    fn get_vocab_size(&self) -> usize {
        self.scores.len()
    }

    fn save(&self, folder: &Path, prefix: Option<&str>) -> tokenizers::Result<Vec<PathBuf>> {
        let name = match prefix {
            Some(p) => format!("{p}-unigram.json"),
            None => "unigram.json".to_string(),
        };
        let vocab: Vec<(&str, f64)> = (0..self.scores.len() as u32)
            .map(|i| (self.piece(i).unwrap_or_default(), self.scores[i as usize]))
            .collect();
        let json = serde_json::json!({
            "type": "Unigram",
            "unk_id": self.unk_id,
            "vocab": vocab,
            "byte_fallback": self.byte_fallback,
        });
        let path = folder.join(name);
        std::fs::write(&path, serde_json::to_vec_pretty(&json)?)?;
        Ok(vec![path])
    }

    fn get_trainer(&self) -> UnigramTrainer {
        UnigramTrainer::default()
    }
}

/// Reads the `model` object of a `tokenizer.json` whose type is `Unigram`, streaming the
/// vocabulary into one buffer (no per-piece `String`s held). Any other model type is an error,
/// so that the caller can fall back to `tokenizers`' own models.
impl<'de> Deserialize<'de> for LeanUnigram {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ModelVisitor)
    }
}

struct ModelVisitor;

#[derive(Default)]
struct Pieces {
    text: String,
    ends: Vec<u32>,
    scores: Vec<f64>,
}

impl<'de> Deserialize<'de> for Pieces {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Seq;
        impl<'de> Visitor<'de> for Seq {
            type Value = Pieces;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of [piece, score] pairs")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pieces, A::Error> {
                let mut p = Pieces::default();
                if let Some(n) = seq.size_hint() {
                    p.ends.reserve(n);
                    p.scores.reserve(n);
                }
                while let Some((piece, score)) = seq.next_element::<(String, f64)>()? {
                    p.text.push_str(&piece);
                    p.ends.push(
                        u32::try_from(p.text.len())
                            .map_err(|_| de::Error::custom(UnigramError::TooLarge))?,
                    );
                    p.scores.push(score);
                }
                Ok(p)
            }
        }
        d.deserialize_seq(Seq)
    }
}

impl<'de> Visitor<'de> for ModelVisitor {
    type Value = LeanUnigram;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Unigram model")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LeanUnigram, A::Error> {
        let mut kind: Option<String> = None;
        let mut unk_id: Option<u32> = None;
        let mut byte_fallback = false;
        let mut pieces: Option<Pieces> = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" => {
                    let t: String = map.next_value()?;
                    if t != "Unigram" {
                        return Err(de::Error::custom(format!("not a Unigram model: {t}")));
                    }
                    kind = Some(t);
                }
                "unk_id" => unk_id = map.next_value()?,
                "byte_fallback" => byte_fallback = map.next_value()?,
                "vocab" => pieces = Some(map.next_value()?),
                _ => {
                    map.next_value::<de::IgnoredAny>()?;
                }
            }
        }
        if kind.is_none() {
            return Err(de::Error::custom("the model has no type"));
        }
        let p = pieces.ok_or_else(|| de::Error::missing_field("vocab"))?;
        LeanUnigram::from_parts(p.text, p.ends, p.scores, unk_id, byte_fallback)
            .map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokenizers::models::unigram::Unigram;

    fn pieces() -> Vec<(String, f64)> {
        [
            ("<unk>", 0.0),
            ("a", 0.0),
            ("b", 0.0),
            ("c", 0.0),
            ("d", 0.0),
            ("cd", 1.0),
            ("ab", 2.0),
            ("abc", 5.0),
            ("abcd", 10.0),
            ("▁", -1.0),
            ("中", -2.0),
            ("中文", -2.5),
        ]
        .iter()
        .map(|(p, s)| (p.to_string(), *s))
        .collect()
    }

    #[test]
    fn segments_as_tokenizers_unigram_does() {
        let lean = LeanUnigram::new(pieces(), Some(0), false).unwrap();
        let full = Unigram::from(pieces(), Some(0), false).unwrap();
        for text in [
            "abcdacdxx",
            "中文abc",
            "x中y文z",
            "▁ab▁cd",
            "dcba",
            "é",
            "aé中",
        ] {
            let a: Vec<(u32, String)> = lean
                .tokenize(text)
                .unwrap()
                .into_iter()
                .map(|t| (t.id, t.value))
                .collect();
            let b: Vec<(u32, String)> = full
                .tokenize(text)
                .unwrap()
                .into_iter()
                .map(|t| (t.id, t.value))
                .collect();
            assert_eq!(a, b, "{text}");
        }
        assert_eq!(lean.token_to_id("abcd"), Some(8));
        assert_eq!(lean.id_to_token(11).as_deref(), Some("中文"));
        assert_eq!(lean.get_vocab().len(), 12);
    }

    #[test]
    fn an_uncovered_character_without_unk_is_an_error() {
        let lean = LeanUnigram::new(vec![("a".into(), 0.0)], None, false).unwrap();
        assert!(lean.tokenize("ab").is_err());
        assert!(LeanUnigram::new(vec![("a".into(), 0.0)], Some(3), false).is_err());
    }
}
