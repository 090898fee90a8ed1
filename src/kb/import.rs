//! Reading and writing knowledge bases: JSONL, CSV and Markdown. Parsing validates every entry
//! and reports every problem with its line number before anything is stored.

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::entry::FaqEntry;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize, clap::ValueEnum, ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Jsonl,
    Csv,
    #[value(alias = "markdown")]
    Md,
}

impl Format {
    /// From a file name's extension.
    pub fn from_path(path: &std::path::Path) -> Option<Self> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "jsonl" | "ndjson" | "json" => Some(Self::Jsonl),
            "csv" => Some(Self::Csv),
            "md" | "markdown" => Some(Self::Md),
            _ => None,
        }
    }
}

/// One problem in an import, located by line.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Problem {
    /// 1-based line of the entry in the input (for CSV, the record's line).
    pub line: usize,
    /// The field at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "line {}: {field}: {}", self.line, self.message),
            None => write!(f, "line {}: {}", self.line, self.message),
        }
    }
}

/// Entries with the line each started on.
pub type Parsed = Vec<(usize, FaqEntry)>;

/// Parses `text`; on any problem returns all of them.
pub fn parse(format: Format, text: &str, id_prefix: &str) -> Result<Vec<FaqEntry>, Vec<Problem>> {
    let (entries, mut problems) = match format {
        Format::Jsonl => parse_jsonl(text),
        Format::Csv => parse_csv(text),
        Format::Md => parse_markdown(text, id_prefix),
    };
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (line, e) in &entries {
        for f in e.validate() {
            problems.push(Problem {
                line: *line,
                field: Some(f.field),
                message: f.message,
            });
        }
        if let Some(first) = seen.insert(e.id.as_str(), *line) {
            problems.push(Problem {
                line: *line,
                field: Some("id".into()),
                message: format!("{:?} is also used on line {first}", e.id),
            });
        }
    }
    if entries.is_empty() && problems.is_empty() {
        problems.push(Problem {
            line: 1,
            field: None,
            message: "no entries found".into(),
        });
    }
    if problems.is_empty() {
        Ok(entries.into_iter().map(|(_, e)| e).collect())
    } else {
        problems.sort_by_key(|p| p.line);
        Err(problems)
    }
}

fn parse_jsonl(text: &str) -> (Parsed, Vec<Problem>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<FaqEntry>(line) {
            Ok(e) => entries.push((i + 1, e)),
            Err(e) => problems.push(Problem {
                line: i + 1,
                field: None,
                message: e.to_string(),
            }),
        }
    }
    (entries, problems)
}

/// CSV columns: `id,question,similar,answer,category,tags,locale,enabled` (header required;
/// only id, question and answer must be present). Lists are separated by `|`.
pub const CSV_COLUMNS: &[&str] = &[
    "id", "question", "similar", "answer", "category", "tags", "locale", "enabled",
];

fn split_list(s: &str) -> Vec<String> {
    s.split('|')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn parse_csv(text: &str) -> (Parsed, Vec<Problem>) {
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut rdr = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = match rdr.headers() {
        Ok(h) => h.clone(),
        Err(e) => {
            return (
                entries,
                vec![Problem {
                    line: 1,
                    field: None,
                    message: e.to_string(),
                }],
            );
        }
    };
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
    };
    for required in ["id", "question", "answer"] {
        if col(required).is_none() {
            problems.push(Problem {
                line: 1,
                field: Some(required.into()),
                message: "column is missing".into(),
            });
        }
    }
    for h in headers.iter() {
        if !CSV_COLUMNS.contains(&h.trim().to_ascii_lowercase().as_str()) {
            problems.push(Problem {
                line: 1,
                field: Some(h.into()),
                message: format!("unknown column (known: {})", CSV_COLUMNS.join(", ")),
            });
        }
    }
    if !problems.is_empty() {
        return (entries, problems);
    }
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line() as usize);
                problems.push(Problem {
                    line,
                    field: None,
                    message: e.to_string(),
                });
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line() as usize);
        let get = |name: &str| {
            col(name)
                .and_then(|i| rec.get(i))
                .map(str::trim)
                .unwrap_or("")
        };
        let opt = |name: &str| Some(get(name)).filter(|s| !s.is_empty()).map(String::from);
        let enabled = match get("enabled").to_ascii_lowercase().as_str() {
            "" | "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            other => {
                problems.push(Problem {
                    line,
                    field: Some("enabled".into()),
                    message: format!("{other:?} is not true/false"),
                });
                true
            }
        };
        entries.push((
            line,
            FaqEntry {
                id: get("id").into(),
                question: get("question").into(),
                similar: split_list(get("similar")),
                answer: get("answer").into(),
                answers: Default::default(),
                category: opt("category"),
                tags: split_list(get("tags")),
                locale: opt("locale"),
                enabled,
                valid_from: None,
                valid_to: None,
            },
        ));
    }
    (entries, problems)
}

/// Markdown: every `## question` heading starts an entry; the text up to the next heading is
/// the answer. Lines `> key: value` right under the heading set `id`, `similar` (`|`-separated),
/// `category`, `tags` and `locale`; without an `id`, entries are numbered `PREFIX-001`, ….
fn parse_markdown(text: &str, id_prefix: &str) -> (Parsed, Vec<Problem>) {
    let mut entries: Parsed = Vec::new();
    let mut problems = Vec::new();
    let mut current: Option<(usize, FaqEntry, Vec<String>, bool)> = None;
    let finish = |cur: Option<(usize, FaqEntry, Vec<String>, bool)>, entries: &mut Parsed| {
        if let Some((line, mut e, body, _)) = cur {
            e.answer = body.join("\n").trim().to_string();
            if e.id.is_empty() {
                e.id = format!("{id_prefix}-{:03}", entries.len() + 1);
            }
            entries.push((line, e));
        }
    };
    for (i, raw) in text.lines().enumerate() {
        if let Some(q) = raw.strip_prefix("## ") {
            finish(current.take(), &mut entries);
            let e = FaqEntry::new(String::new(), q.trim().into(), String::new());
            current = Some((i + 1, e, Vec::new(), true));
            continue;
        }
        let Some((_, e, body, in_meta)) = current.as_mut() else {
            continue;
        };
        if *in_meta && let Some(meta) = raw.strip_prefix('>') {
            match meta.split_once(':') {
                Some((k, v)) => {
                    let v = v.trim();
                    match k.trim() {
                        "id" => e.id = v.into(),
                        "similar" => e.similar = split_list(v),
                        "category" => e.category = Some(v.into()),
                        "tags" => e.tags = split_list(v),
                        "locale" => e.locale = Some(v.into()),
                        other => problems.push(Problem {
                            line: i + 1,
                            field: Some(other.into()),
                            message: "unknown key (id, similar, category, tags, locale)".into(),
                        }),
                    }
                }
                None => problems.push(Problem {
                    line: i + 1,
                    field: None,
                    message: "expected `> key: value`".into(),
                }),
            }
            continue;
        }
        if !raw.trim().is_empty() {
            *in_meta = false;
        }
        if !*in_meta {
            body.push(raw.to_string());
        }
    }
    finish(current, &mut entries);
    (entries, problems)
}

/// Writes `entries` in `format`; what this writes, [`parse`] reads back.
pub fn write(format: Format, entries: &[FaqEntry]) -> String {
    match format {
        Format::Jsonl => entries
            .iter()
            .map(|e| serde_json::to_string(e).expect("entry serialises") + "\n")
            .collect(),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(CSV_COLUMNS).expect("in-memory write");
            for e in entries {
                w.write_record([
                    e.id.as_str(),
                    &e.question,
                    &e.similar.join(" | "),
                    &e.answer,
                    e.category.as_deref().unwrap_or(""),
                    &e.tags.join(" | "),
                    e.locale.as_deref().unwrap_or(""),
                    if e.enabled { "true" } else { "false" },
                ])
                .expect("in-memory write");
            }
            String::from_utf8(w.into_inner().expect("flush")).expect("UTF-8")
        }
        Format::Md => {
            let mut s = String::new();
            for e in entries {
                s.push_str(&format!("## {}\n> id: {}\n", e.question, e.id));
                if !e.similar.is_empty() {
                    s.push_str(&format!("> similar: {}\n", e.similar.join(" | ")));
                }
                if let Some(c) = &e.category {
                    s.push_str(&format!("> category: {c}\n"));
                }
                if !e.tags.is_empty() {
                    s.push_str(&format!("> tags: {}\n", e.tags.join(" | ")));
                }
                if let Some(l) = &e.locale {
                    s.push_str(&format!("> locale: {l}\n"));
                }
                s.push_str(&format!("\n{}\n\n", e.answer));
            }
            s
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSONL: &str = r#"{"id": "a-1", "question": "退款多久到账", "similar": ["钱什么时候退回来"], "answer": "1-3个工作日", "category": "refunds", "tags": ["退款"], "locale": "zh-CN"}
{"id": "a-2", "question": "How do I reset my password?", "answer": "Use the reset link.", "locale": "en"}
"#;

    #[test]
    fn jsonl_problems_come_with_line_numbers() {
        let text = "{\"id\": \"x\", \"question\": \"q\", \"answer\": \"a\"}\n\n{\"id\": \"x\", \"question\": \"q2\", \"answer\": \"a\"}\n{\"id\": \"y\", \"question\": \"\", \"answer\": \"a\"}\nnot json\n";
        let errs = parse(Format::Jsonl, text, "kb").unwrap_err();
        let got: Vec<(usize, Option<&str>)> =
            errs.iter().map(|p| (p.line, p.field.as_deref())).collect();
        assert_eq!(got, [(3, Some("id")), (4, Some("question")), (5, None)]);
        assert!(errs[0].message.contains("line 1"), "{}", errs[0]);
    }

    #[test]
    fn every_format_round_trips() {
        let entries = parse(Format::Jsonl, JSONL, "kb").unwrap();
        assert_eq!(entries.len(), 2);
        for format in [Format::Jsonl, Format::Csv, Format::Md] {
            let text = write(format, &entries);
            let back =
                parse(format, &text, "kb").unwrap_or_else(|e| panic!("{format:?}: {e:?}\n{text}"));
            assert_eq!(back, entries, "{format:?}:\n{text}");
        }
    }

    #[test]
    fn markdown_without_ids_is_numbered() {
        let md = "# Shop FAQ\n\n## 怎么退货\n在订单页申请。\n\n第二段。\n\n## Where is my order?\n> similar: order status | track my parcel\nSee the tracking page.\n";
        let e = parse(Format::Md, md, "faq").unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].id, "faq-001");
        assert_eq!(e[0].answer, "在订单页申请。\n\n第二段。");
        assert_eq!(e[1].similar, ["order status", "track my parcel"]);
    }

    #[test]
    fn csv_needs_its_columns() {
        let errs = parse(Format::Csv, "id,question,colour\n1,q,red\n", "kb").unwrap_err();
        let fields: Vec<&str> = errs.iter().filter_map(|p| p.field.as_deref()).collect();
        assert_eq!(fields, ["answer", "colour"]);
        let errs = parse(
            Format::Csv,
            "id,question,answer,enabled\nx,q,a,maybe\ny,,a,true\n",
            "kb",
        )
        .unwrap_err();
        let got: Vec<(usize, Option<&str>)> =
            errs.iter().map(|p| (p.line, p.field.as_deref())).collect();
        assert_eq!(got, [(2, Some("enabled")), (3, Some("question"))]);
    }
}
