//! The knowledge base: FAQ entries and knowledge documents, their storage, import and export.

pub mod demo;
pub mod document;
pub mod entry;
pub mod import;
pub mod out_of_scope;
pub mod store;

pub use document::{Document, Passage};
pub use entry::FaqEntry;
pub use store::{KbStore, StoredEntry};

use serde::{Deserialize, Serialize};

/// `[kb]` in kefu.toml.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KbConfig {
    /// Load the built-in demo knowledge base (datasets/demo) when the KB is empty at start.
    pub load_demo: bool,
    /// Most out-of-scope examples the KB keeps (`PUT /v1/out-of-scope`, `kefu kb
    /// out-of-scope`): each one is embedded by the index rebuild that follows a change.
    pub max_out_of_scope: usize,
}

impl Default for KbConfig {
    fn default() -> Self {
        Self {
            load_demo: true,
            max_out_of_scope: 10_000,
        }
    }
}

impl KbConfig {
    /// Checks values that parse but make no sense, naming the key.
    pub fn validate(&self) -> Result<(), String> {
        let max = out_of_scope::MAX_EXAMPLES;
        if !(1..=max).contains(&self.max_out_of_scope) {
            return Err(format!(
                "kb.max_out_of_scope must be between 1 and {max}, got {}",
                self.max_out_of_scope
            ));
        }
        Ok(())
    }
}
