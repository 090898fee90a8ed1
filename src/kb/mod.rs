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
