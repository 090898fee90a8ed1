//! Turning text into model input: the manifest's prefix, the tokenizer, truncation.

use std::path::Path;

use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use super::EmbedError;

/// Token ids for one text, special tokens included, truncated to the model's limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Tokens {
    pub ids: Vec<u32>,
}

impl Tokens {
    pub fn len(&self) -> usize {
        self.ids.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

pub struct TextTokenizer {
    inner: Tokenizer,
    prefix: String,
    pad_id: u32,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, replacing whatever padding and truncation presets it carries:
    /// kefu truncates at `max_tokens` and pads only inside a batch, to the batch's longest.
    pub fn from_file(path: &Path, prefix: &str, max_tokens: usize) -> Result<Self, EmbedError> {
        let mut inner = Tokenizer::from_file(path)
            .map_err(|e| EmbedError::Load(format!("{}: {e}", path.display())))?;
        inner.with_padding(None);
        inner
            .with_truncation(Some(TruncationParams {
                max_length: max_tokens,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
                direction: TruncationDirection::Right,
            }))
            .map_err(|e| EmbedError::Load(format!("truncation: {e}")))?;
        let pad_id = inner
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| inner.token_to_id("<pad>"))
            .or_else(|| inner.token_to_id("[PAD]"))
            .unwrap_or(0);
        Ok(Self {
            inner,
            prefix: prefix.to_string(),
            pad_id,
        })
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Entries in the vocabulary, added tokens included: valid ids are below it.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The text `ids` spell, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, EmbedError> {
        self.inner
            .decode(ids, true)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))
    }

    pub fn encode(&self, text: &str) -> Result<Tokens, EmbedError> {
        let input = format!("{}{}", self.prefix, text);
        let enc = self
            .inner
            .encode(input, true)
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        Ok(Tokens {
            ids: enc.get_ids().to_vec(),
        })
    }
}
