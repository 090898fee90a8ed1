//! Turning text into model input: the manifest's prefix, the tokenizer, truncation.

use std::path::Path;

use tokenizers::decoders::DecoderWrapper;
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{
    Tokenizer, TokenizerImpl, TruncationDirection, TruncationParams, TruncationStrategy,
};

use super::EmbedError;
use super::unigram::LeanUnigram;

/// `tokenizers`' pipeline around the compact Unigram model.
type LeanTokenizer = TokenizerImpl<
    LeanUnigram,
    NormalizerWrapper,
    PreTokenizerWrapper,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// The loaded tokenizer: a Unigram vocabulary (the default model's) in its compact form, any
/// other model type as `tokenizers` reads it.
enum Inner {
    Lean(Box<LeanTokenizer>),
    Full(Box<Tokenizer>),
}

macro_rules! both {
    ($inner:expr, $t:ident => $body:expr) => {
        match $inner {
            Inner::Lean($t) => $body,
            Inner::Full($t) => $body,
        }
    };
}

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
    inner: Inner,
    prefix: String,
    pad_id: u32,
}

impl TextTokenizer {
    /// Loads `tokenizer.json`, replacing whatever padding and truncation presets it carries:
    /// kefu truncates at `max_tokens` and pads only inside a batch, to the batch's longest.
    pub fn from_file(path: &Path, prefix: &str, max_tokens: usize) -> Result<Self, EmbedError> {
        let mut inner = load(path)?;
        let truncation = Some(TruncationParams {
            max_length: max_tokens,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: TruncationDirection::Right,
        });
        let pad_id = both!(&mut inner, t => {
            t.with_padding(None);
            let pad_id = t
                .token_to_id("<pad>")
                .or_else(|| t.token_to_id("[PAD]"))
                .unwrap_or(0);
            t.with_truncation(truncation)
                .map_err(|e| EmbedError::Load(format!("truncation: {e}")))?;
            pad_id
        });
        Ok(Self {
            inner,
            prefix: prefix.to_string(),
            pad_id,
        })
    }

    /// Bytes the vocabulary holds when it is a Unigram one in the compact form; `None` when
    /// `tokenizers` holds the model.
    pub fn compact_vocab_bytes(&self) -> Option<usize> {
        match &self.inner {
            Inner::Lean(t) => Some(t.get_model().heap_bytes()),
            Inner::Full(_) => None,
        }
    }

    pub fn pad_id(&self) -> u32 {
        self.pad_id
    }

    /// Entries in the vocabulary, added tokens included: valid ids are below it.
    pub fn vocab_size(&self) -> usize {
        both!(&self.inner, t => t.get_vocab_size(true))
    }

    /// The text `ids` spell, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, EmbedError> {
        both!(&self.inner, t => t.decode(ids, true))
            .map_err(|e| EmbedError::Tokenize(e.to_string()))
    }

    pub fn encode(&self, text: &str) -> Result<Tokens, EmbedError> {
        let input = format!("{}{}", self.prefix, text);
        let enc = both!(&self.inner, t => t.encode(input, true))
            .map_err(|e| EmbedError::Tokenize(e.to_string()))?;
        Ok(Tokens {
            ids: enc.get_ids().to_vec(),
        })
    }
}

/// Reads `tokenizer.json`: a Unigram model into the compact form, anything else as
/// `tokenizers` does. Both read the same normaliser, pre-tokeniser, special tokens and
/// post-processor from the file.
fn load(path: &Path) -> Result<Inner, EmbedError> {
    let json = std::fs::read_to_string(path)
        .map_err(|e| EmbedError::Load(format!("{}: {e}", path.display())))?;
    if let Ok(lean) = serde_json::from_str::<LeanTokenizer>(&json) {
        return Ok(Inner::Lean(Box::new(lean)));
    }
    let full: Tokenizer = json
        .parse()
        .map_err(|e| EmbedError::Load(format!("{}: {e}", path.display())))?;
    Ok(Inner::Full(Box::new(full)))
}
