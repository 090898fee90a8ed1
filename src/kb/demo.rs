//! The demo knowledge base (datasets/demo), built into the binary so that `kefu serve` has
//! something to answer from on a fresh machine.

use super::FaqEntry;
use super::import::{self, Format};

pub const FAQ_JSONL: &str = include_str!("../../datasets/demo/faq.jsonl");

pub fn entries() -> Vec<FaqEntry> {
    import::parse(Format::Jsonl, FAQ_JSONL, "demo").expect("the demo KB is valid (tested)")
}

pub const OUT_OF_SCOPE_JSONL: &str = include_str!("../../datasets/demo/out_of_scope.jsonl");

/// Questions the demo shop does not answer (weather, banks, taxes, other shops' orders …).
pub fn out_of_scope() -> Vec<String> {
    super::out_of_scope::parse_jsonl(OUT_OF_SCOPE_JSONL, super::out_of_scope::MAX_EXAMPLES)
        .expect("the demo examples are valid (tested)")
}

const RETURN_POLICY: &str = include_str!("../../datasets/demo/docs/return-policy.md");
const SHIPPING_POLICY: &str = include_str!("../../datasets/demo/docs/shipping-policy.en.md");

/// The demo's two policy documents.
pub fn documents() -> Vec<super::Document> {
    use super::document::{DocFormat, Document};
    let doc = |id: &str, title: &str, source: &str, content: &str, locale: &str| Document {
        id: id.into(),
        title: title.into(),
        source: Some(source.into()),
        format: DocFormat::Markdown,
        content: content.into(),
        category: Some("policies".into()),
        locale: Some(locale.into()),
    };
    vec![
        doc(
            "goodbuy-return-policy",
            "退换货与退款政策",
            "datasets/demo/docs/return-policy.md",
            RETURN_POLICY,
            "zh-CN",
        ),
        doc(
            "goodbuy-shipping-policy",
            "Shipping & delivery policy",
            "datasets/demo/docs/shipping-policy.en.md",
            SHIPPING_POLICY,
            "en",
        ),
    ]
}

#[cfg(test)]
mod tests {
    #[test]
    fn demo_out_of_scope_examples_are_valid() {
        let texts = super::out_of_scope();
        assert!(texts.len() >= 300, "{} examples", texts.len());
        let zh = (texts.iter())
            .filter(|t| t.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)))
            .count();
        assert!(zh >= 150 && texts.len() - zh >= 150, "{zh} Chinese");
    }
}
