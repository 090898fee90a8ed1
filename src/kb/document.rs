//! Knowledge documents (product manuals, after-sales policies) as Markdown or plain text,
//! split into passages that are indexed beside the FAQ entries and matched as
//! `kind: "passage"` with their source and heading.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::FaqEntry;
use super::entry::{FieldError, MAX_ID_CHARS, MAX_TEXT_CHARS, label};
use crate::text::check::{checked_chars, schema};

/// Most characters of one document's content.
pub const MAX_DOCUMENT_CHARS: usize = 1_000_000;
/// Passages are cut near this many characters, at paragraph or sentence ends.
pub const PASSAGE_CHARS: usize = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DocFormat {
    /// Headings (`#`…`######`) give each passage its heading path.
    #[default]
    Markdown,
    /// Paragraphs separated by blank lines.
    Text,
}

/// A knowledge document as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Letters, digits and `-_.:`, at most 128 characters.
    #[schema(schema_with = schema::kb_id)]
    pub id: String,
    #[schema(schema_with = schema::question)]
    pub title: String,
    /// Where it comes from (a file name or URL), shown with its passages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::question)]
    pub source: Option<String>,
    #[serde(default)]
    pub format: DocFormat,
    #[schema(schema_with = schema::content)]
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::label)]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = schema::locale)]
    pub locale: Option<String>,
}

/// One indexed piece of a document.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Passage {
    /// `<document id>#<n>`, n from 1.
    pub id: String,
    pub document_id: String,
    /// Heading path, e.g. `退换货政策 > 运费`; the title when the text has no heading.
    pub heading: String,
    pub text: String,
}

impl Document {
    pub fn validate(&self) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut err = |field: &str, message: String| {
            errs.push(FieldError {
                field: field.to_string(),
                message,
            })
        };
        let id_ok = !self.id.is_empty()
            && self.id.chars().count() <= MAX_ID_CHARS
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c));
        if !id_ok {
            err(
                "id",
                format!(
                    "must be 1–{MAX_ID_CHARS} letters, digits or -_.: (got {:?})",
                    self.id
                ),
            );
        }
        if self.title.trim().is_empty() {
            err("title", "must not be empty".into());
        } else if self.title.chars().count() > MAX_TEXT_CHARS {
            err(
                "title",
                format!("is longer than {MAX_TEXT_CHARS} characters"),
            );
        } else if let Err(m) = checked_chars(&self.title, false) {
            err("title", m);
        }
        if let Some(src) = &self.source {
            if src.chars().count() > MAX_TEXT_CHARS {
                err(
                    "source",
                    format!("is longer than {MAX_TEXT_CHARS} characters"),
                );
            } else if let Err(m) = checked_chars(src, false) {
                err("source", m);
            }
        }
        let n = self.content.chars().count();
        if self.content.trim().is_empty() {
            err("content", "must not be empty".into());
        } else if n > MAX_DOCUMENT_CHARS {
            err(
                "content",
                format!("has {n} characters; at most {MAX_DOCUMENT_CHARS} are allowed"),
            );
        } else if let Err(m) = checked_chars(&self.content, true) {
            err("content", m);
        }
        if let Some(c) = &self.category {
            label(&mut err, "category", c);
        }
        if let Some(l) = &self.locale
            && let Err(m) = crate::text::check::checked_locale(l)
        {
            err("locale", m);
        }
        errs
    }

    /// The document cut into passages of about [`PASSAGE_CHARS`] characters, each under its
    /// heading path.
    pub fn passages(&self) -> Vec<Passage> {
        let mut out = Vec::new();
        let mut path: Vec<(usize, String)> = Vec::new();
        let mut para = String::new();
        let mut sections: Vec<(String, Vec<String>)> = vec![(self.title.clone(), vec![])];
        let flush = |para: &mut String, sections: &mut Vec<(String, Vec<String>)>| {
            let p = para.trim();
            if !p.is_empty() {
                sections
                    .last_mut()
                    .expect("a section")
                    .1
                    .push(p.to_string());
            }
            para.clear();
        };
        for line in self.content.lines() {
            let heading = (self.format == DocFormat::Markdown)
                .then(|| markdown_heading(line))
                .flatten();
            if let Some((level, text)) = heading {
                flush(&mut para, &mut sections);
                path.retain(|(l, _)| *l < level);
                path.push((level, text));
                let names: Vec<&str> = path.iter().map(|(_, t)| t.as_str()).collect();
                sections.push((names.join(" > "), vec![]));
            } else if line.trim().is_empty() {
                flush(&mut para, &mut sections);
            } else {
                if !para.is_empty() {
                    para.push('\n');
                }
                para.push_str(line.trim_end());
            }
        }
        flush(&mut para, &mut sections);
        for (heading, paras) in sections {
            for text in pack(&paras) {
                out.push(Passage {
                    id: format!("{}#{}", self.id, out.len() + 1),
                    document_id: self.id.clone(),
                    heading: heading.clone(),
                    text,
                });
            }
        }
        out
    }

    /// Passages as index entries: question = heading, answer = the passage text.
    pub fn passage_entries(&self) -> Vec<(FaqEntry, Passage)> {
        self.passages()
            .into_iter()
            .map(|p| {
                let e = FaqEntry {
                    category: self.category.clone(),
                    locale: self.locale.clone(),
                    ..FaqEntry::new(
                        p.id.clone(),
                        format!("{}: {}", p.heading, p.text),
                        p.text.clone(),
                    )
                };
                (e, p)
            })
            .collect()
    }
}

/// `## Heading` → (2, "Heading").
fn markdown_heading(line: &str) -> Option<(usize, String)> {
    let t = line.trim_start();
    let level = t.chars().take_while(|&c| c == '#').count();
    if !(1..=6).contains(&level) {
        return None;
    }
    let rest = &t[level..];
    if !rest.starts_with(' ') {
        return None;
    }
    let text = rest.trim().trim_end_matches('#').trim();
    (!text.is_empty()).then(|| (level, text.to_string()))
}

/// Joins paragraphs into chunks near [`PASSAGE_CHARS`]; a longer paragraph is cut at sentence
/// ends.
fn pack(paras: &[String]) -> Vec<String> {
    let mut pieces = Vec::new();
    for p in paras {
        if p.chars().count() <= PASSAGE_CHARS {
            pieces.push(p.clone());
        } else {
            pieces.extend(sentences(p));
        }
    }
    let mut out: Vec<String> = Vec::new();
    let mut cur = String::new();
    for piece in pieces {
        if !cur.is_empty() && cur.chars().count() + piece.chars().count() > PASSAGE_CHARS {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push('\n');
        }
        cur.push_str(&piece);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Sentences of `p` (ending in 。！？!?. or a newline), grouped up to [`PASSAGE_CHARS`];
/// a sentence longer than that is cut by characters.
fn sentences(p: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for c in p.chars() {
        cur.push(c);
        let end = matches!(c, '。' | '！' | '？' | '!' | '?' | '\n' | '；')
            || (c == '.' && cur.chars().count() > 1);
        if (end && cur.chars().count() >= PASSAGE_CHARS / 3) || cur.chars().count() >= PASSAGE_CHARS
        {
            out.push(std::mem::take(&mut cur).trim().to_string());
        }
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(content: &str) -> Document {
        Document {
            id: "policy".into(),
            title: "退换货政策".into(),
            source: Some("return-policy.md".into()),
            format: DocFormat::Markdown,
            content: content.into(),
            category: None,
            locale: Some("zh-CN".into()),
        }
    }

    #[test]
    fn headings_become_paths_and_every_word_is_kept() {
        let d = doc(
            "intro line\n\n# 退货\n\n七天无理由。\n\n## 运费\n\n质量问题我们出运费。\n\n# 换货\n\n换货一次。\n",
        );
        let p = d.passages();
        let got: Vec<(&str, &str)> = p
            .iter()
            .map(|p| (p.heading.as_str(), p.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("退换货政策", "intro line"),
                ("退货", "七天无理由。"),
                ("退货 > 运费", "质量问题我们出运费。"),
                ("换货", "换货一次。"),
            ]
        );
        assert_eq!(p[2].id, "policy#3");
        assert_eq!(p[2].document_id, "policy");
    }

    #[test]
    fn long_sections_are_cut_near_the_passage_size() {
        let sentence = "退货商品需保持完好，配件齐全，不影响二次销售。";
        let long = sentence.repeat(60);
        let p = doc(&format!("# 要求\n\n{long}")).passages();
        assert!(p.len() > 3, "{}", p.len());
        assert!(
            p.iter().all(|p| p.text.chars().count() <= PASSAGE_CHARS),
            "sizes"
        );
        let joined: String = p.iter().map(|p| p.text.replace('\n', "")).collect();
        assert_eq!(joined, long);
    }

    #[test]
    fn validation_names_fields() {
        let mut d = doc("");
        d.id = "bad id".into();
        d.title = " ".into();
        let fields: Vec<String> = d.validate().into_iter().map(|e| e.field).collect();
        assert_eq!(fields, ["id", "title", "content"]);
        assert!(doc("text").validate().is_empty());
    }

    #[test]
    fn plain_text_ignores_hashes() {
        let mut d = doc("# not a heading\n\npara two");
        d.format = DocFormat::Text;
        let p = d.passages();
        assert_eq!(p.len(), 1, "small paragraphs pack together");
        assert!(p[0].text.starts_with("# not a heading"));
        assert_eq!(p[0].heading, "退换货政策");
    }
}
