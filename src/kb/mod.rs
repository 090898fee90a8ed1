//! The knowledge base: FAQ entries, their storage, import and export.

pub mod demo;
pub mod entry;
pub mod import;
pub mod store;

pub use entry::FaqEntry;
pub use store::{KbStore, StoredEntry};
