//! The demo knowledge base (datasets/demo), built into the binary so that `kefu serve` has
//! something to answer from on a fresh machine.

use super::FaqEntry;
use super::import::{self, Format};

pub const FAQ_JSONL: &str = include_str!("../../datasets/demo/faq.jsonl");

pub fn entries() -> Vec<FaqEntry> {
    import::parse(Format::Jsonl, FAQ_JSONL, "demo").expect("the demo KB is valid (tested)")
}
