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
}

impl Default for KbConfig {
    fn default() -> Self {
        Self { load_demo: true }
    }
}
