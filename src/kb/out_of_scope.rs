//! Out-of-scope examples: questions customers ask that the KB must not answer (a bank's fees,
//! the weather, another shop's orders). A query nearer to one of them than to its best KB match
//! (by `out_of_scope_margin`) is not answered directly — the evidence-against that a score
//! alone lacks when a question shares the KB's words but not its subject.

use super::import::Problem;

/// Longest example accepted, in characters.
pub const MAX_CHARS: usize = 1000;
/// The most `kb.max_out_of_scope` may allow (and what an evaluation reads).
pub const MAX_EXAMPLES: usize = 100_000;

/// Checks texts (trimmed, duplicates dropped, order kept), reporting every problem with its
/// 1-based position; more than `max` (`kb.max_out_of_scope`) is a problem too.
pub fn check(
    texts: impl IntoIterator<Item = String>,
    max: usize,
) -> Result<Vec<String>, Vec<Problem>> {
    let (mut out, mut problems) = (Vec::new(), Vec::new());
    let mut seen = std::collections::HashSet::new();
    for (i, t) in texts.into_iter().enumerate() {
        let t = t.trim().to_string();
        let problem = if t.is_empty() {
            Some("is empty".to_string())
        } else if t.chars().count() > MAX_CHARS {
            Some(format!("is longer than {MAX_CHARS} characters"))
        } else {
            crate::text::check::checked_chars(&t, false).err()
        };
        match problem {
            Some(message) => problems.push(Problem {
                line: i + 1,
                field: Some("text".into()),
                message,
            }),
            None if seen.insert(t.clone()) => out.push(t),
            None => {}
        }
    }
    if out.len() > max {
        problems.push(Problem {
            line: 0,
            field: None,
            message: too_many(out.len(), max),
        });
    }
    match problems.is_empty() {
        true => Ok(out),
        false => Err(problems),
    }
}

/// What is said when there are `n` examples and `max` are allowed.
pub fn too_many(n: usize, max: usize) -> String {
    format!("{n} out-of-scope examples; at most {max} are allowed (kb.max_out_of_scope)")
}

/// Examples from JSONL: one object per line with the text under `text` (as in intent files —
/// every row counts, whatever its label), `query` or `question`. Blank lines are skipped.
pub fn parse_jsonl(content: &str, max: usize) -> Result<Vec<String>, Vec<Problem>> {
    #[derive(serde::Deserialize)]
    struct Row {
        #[serde(alias = "query", alias = "question")]
        text: String,
    }
    let (mut texts, mut problems) = (Vec::new(), Vec::new());
    let mut lines = Vec::new();
    for (i, line) in content.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Row>(line) {
            Ok(r) => {
                texts.push(r.text);
                lines.push(i + 1);
            }
            Err(e) => problems.push(Problem {
                line: i + 1,
                field: None,
                message: format!("not an object with a \"text\" string: {e}"),
            }),
        }
    }
    // Positions from `check` are rows; report them as file lines.
    let checked = check(texts, max).map_err(|ps| {
        ps.into_iter()
            .map(|mut p| {
                p.line = lines.get(p.line.wrapping_sub(1)).copied().unwrap_or(0);
                p
            })
            .collect::<Vec<_>>()
    });
    match (checked, problems.is_empty()) {
        (Ok(t), true) => Ok(t),
        (Ok(_), false) => Err(problems),
        (Err(more), _) => {
            problems.extend(more);
            problems.sort_by_key(|p| p.line);
            Err(problems)
        }
    }
}

/// Reads a JSONL file of examples (at most `max`), naming the file and every bad line.
pub fn read(path: &std::path::Path, max: usize) -> anyhow::Result<Vec<String>> {
    let content = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
    parse_jsonl(&content, max).map_err(|ps| {
        let shown: Vec<String> = ps
            .iter()
            .take(20)
            .map(|p| format!("  line {}: {}", p.line, p.message))
            .collect();
        anyhow::anyhow!(
            "{}: {} invalid line(s):\n{}",
            path.display(),
            ps.len(),
            shown.join("\n")
        )
    })
}

/// The examples of every file, together (duplicates across files kept once), at most `max`.
pub fn read_all(paths: &[std::path::PathBuf], max: usize) -> anyhow::Result<Vec<String>> {
    let mut examples = Vec::new();
    for p in paths {
        examples.extend(read(p, max)?);
    }
    check(examples, max).map_err(|ps| {
        let messages: Vec<&str> = ps.iter().map(|p| p.message.as_str()).collect();
        anyhow::anyhow!("out-of-scope examples: {}", messages.join("; "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_examples_and_reports_every_bad_line() {
        let ok = "{\"text\": \"what's the weather\", \"label\": \"oos\"}\n\n{\"query\": \"book a table\"}\n{\"text\": \"what's the weather\"}\n";
        assert_eq!(
            parse_jsonl(ok, 10).unwrap(),
            vec!["what's the weather", "book a table"]
        );
        let bad = "{\"text\": \"fine\"}\n{\"text\": \"  \"}\nnot json\n{\"label\": \"x\"}\n";
        let problems = parse_jsonl(bad, 10).unwrap_err();
        let lines: Vec<usize> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![2, 3, 4]);
        assert!(problems[0].message.contains("empty"));
        let long = format!("{{\"text\": \"{}\"}}", "x".repeat(MAX_CHARS + 1));
        assert!(
            parse_jsonl(&long, 10).unwrap_err()[0]
                .message
                .contains("longer")
        );
        let three = "{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": \"c\"}\n";
        assert_eq!(parse_jsonl(three, 3).unwrap().len(), 3);
        let over = parse_jsonl(three, 2).unwrap_err();
        assert!(over[0].message.contains("kb.max_out_of_scope"), "{over:?}");
    }
}
