//! Interaction logs (`user_id,item_id,rating,timestamp` CSV, the MovieLens layout) turned into
//! each customer's history in time order — ties broken by position in the file, a later line
//! being later — and the hold-out splits `kefu eval recommend` scores.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context;

/// `(item, rating, timestamp)` in a customer's history.
pub type Event = (u32, f32, i64);
/// A customer's events, oldest first.
pub type History = Vec<Event>;

/// One interaction of a user with an item; `line` is its line in the file (1 = header).
#[derive(Debug, Clone, PartialEq)]
pub struct Interaction {
    pub user: String,
    pub item: String,
    pub rating: f32,
    pub ts: i64,
    pub line: usize,
}

/// Reads and checks the CSV; every bad line is reported with its number.
pub fn read_interactions(path: &Path) -> anyhow::Result<Vec<Interaction>> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    parse_interactions(f, path)
}

/// Reads and checks interactions CSV from `input`; `path` names it in errors.
pub fn parse_interactions(
    input: impl std::io::Read,
    path: &Path,
) -> anyhow::Result<Vec<Interaction>> {
    let mut r = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(input);
    let headers = r.headers()?.clone();
    let col = |name: &str| {
        headers.iter().position(|h| h == name).with_context(|| {
            format!(
                "{}: no `{name}` column (need user_id,item_id,rating,timestamp)",
                path.display()
            )
        })
    };
    let (u, i, ra, t) = (
        col("user_id")?,
        col("item_id")?,
        col("rating")?,
        col("timestamp")?,
    );
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for (n, rec) in r.records().enumerate() {
        // The reader's own count: blank lines and quoted line breaks move it, not the records'.
        let rec = match rec {
            Ok(x) => x,
            Err(e) => {
                let line = e.position().map_or(n + 2, |p| p.line() as usize);
                problems.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let line = rec.position().map_or(n + 2, |p| p.line() as usize);
        let get = |k: usize| rec.get(k).unwrap_or("");
        let rating = get(ra).parse::<f32>().ok().filter(|x| x.is_finite());
        let ts = get(t).parse::<i64>().ok();
        match (get(u), get(i), rating, ts) {
            ("", _, _, _) => problems.push(format!("line {line}: user_id is empty")),
            (_, "", _, _) => problems.push(format!("line {line}: item_id is empty")),
            (_, _, None, _) => {
                problems.push(format!("line {line}: rating {:?} is not a number", get(ra)))
            }
            (_, _, _, None) => problems.push(format!(
                "line {line}: timestamp {:?} is not Unix seconds",
                get(t)
            )),
            (user, item, Some(rating), Some(ts)) => out.push(Interaction {
                user: user.to_string(),
                item: item.to_string(),
                rating,
                ts,
                line,
            }),
        }
    }
    if !problems.is_empty() {
        let shown: Vec<&str> = problems.iter().take(20).map(String::as_str).collect();
        anyhow::bail!(
            "{}: {} bad line(s):\n{}",
            path.display(),
            problems.len(),
            shown.join("\n")
        );
    }
    anyhow::ensure!(!out.is_empty(), "{} has no interactions", path.display());
    Ok(out)
}

/// The `id` of every line of an items JSONL file (the catalogue).
pub fn read_item_ids(path: &Path) -> anyhow::Result<Vec<String>> {
    #[derive(serde::Deserialize)]
    struct Item {
        id: String,
    }
    let rows: Vec<(usize, Item)> =
        crate::eval::read_jsonl(path, None, r#"{"id": "...", ...} (an item)"#)?;
    Ok(rows.into_iter().map(|(_, i)| i.id).collect())
}

/// Users' histories over dense item indices.
#[derive(Debug, Clone)]
pub struct Histories {
    pub users: Vec<String>,
    pub items: Vec<String>,
    pub item_index: HashMap<String, u32>,
    /// Per user, `(item, rating, ts)` oldest first.
    pub seqs: Vec<History>,
}

impl Histories {
    /// Groups by user (in order of first appearance) and sorts each history by time, then line.
    /// `catalogue` lists items that exist without interactions (they are ranked too).
    pub fn build(log: &[Interaction], catalogue: &[String]) -> Self {
        let mut users = Vec::new();
        let mut user_index: HashMap<&str, usize> = HashMap::new();
        let mut items = Vec::new();
        let mut item_index: HashMap<String, u32> = HashMap::new();
        let mut add_item = |id: &str, items: &mut Vec<String>| -> u32 {
            if let Some(&i) = item_index.get(id) {
                return i;
            }
            let i = items.len() as u32;
            items.push(id.to_string());
            item_index.insert(id.to_string(), i);
            i
        };
        let mut seqs: Vec<Vec<(u32, f32, i64, usize)>> = Vec::new();
        for x in log {
            let u = *user_index.entry(x.user.as_str()).or_insert_with(|| {
                users.push(x.user.clone());
                seqs.push(Vec::new());
                users.len() - 1
            });
            let i = add_item(&x.item, &mut items);
            seqs[u].push((i, x.rating, x.ts, x.line));
        }
        for id in catalogue {
            add_item(id, &mut items);
        }
        let seqs = seqs
            .into_iter()
            .map(|mut s| {
                s.sort_by_key(|&(_, _, ts, line)| (ts, line));
                s.into_iter().map(|(i, r, ts, _)| (i, r, ts)).collect()
            })
            .collect();
        let item_index = items
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as u32))
            .collect();
        Self {
            users,
            items,
            item_index,
            seqs,
        }
    }
}

/// Which interactions are held out.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Split {
    /// Each user's last interaction.
    Last,
    /// The last max(1, floor(0.2·n)) of a user's n interactions.
    Last20,
}

impl Split {
    pub fn held_out(self, n: usize) -> usize {
        match self {
            Split::Last => n.min(1),
            Split::Last20 => (n / 5).max(1).min(n),
        }
    }
}

/// Per user: the history kept for training and the items held out.
pub fn split(seqs: &[History], how: Split) -> (Vec<History>, Vec<Vec<u32>>) {
    seqs.iter()
        .map(|s| {
            let cut = s.len() - how.held_out(s.len());
            (
                s[..cut].to_vec(),
                s[cut..].iter().map(|&(i, _, _)| i).collect(),
            )
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn x(user: &str, item: &str, ts: i64, line: usize) -> Interaction {
        Interaction {
            user: user.into(),
            item: item.into(),
            rating: 1.0,
            ts,
            line,
        }
    }

    #[test]
    fn histories_are_in_time_order_with_ties_by_line() {
        let log = [
            x("u1", "b", 20, 2),
            x("u1", "a", 10, 3),
            x("u1", "c", 20, 4),
            x("u2", "a", 5, 5),
        ];
        let h = Histories::build(&log, &["z".to_string()]);
        assert_eq!(h.items, ["b", "a", "c", "z"]);
        let seq: Vec<&str> = h.seqs[0]
            .iter()
            .map(|s| h.items[s.0 as usize].as_str())
            .collect();
        assert_eq!(
            seq,
            ["a", "b", "c"],
            "ts 10 first; b and c tie at 20, b's line is earlier"
        );
    }

    #[test]
    fn splits_hold_out_the_end() {
        assert_eq!(Split::Last.held_out(7), 1);
        assert_eq!(Split::Last20.held_out(4), 1);
        assert_eq!(Split::Last20.held_out(10), 2);
        assert_eq!(Split::Last20.held_out(14), 2);
        assert_eq!(Split::Last20.held_out(1), 1);
        let seqs = vec![(0..10).map(|i| (i, 1.0, i as i64)).collect::<Vec<_>>()];
        let (train, test) = split(&seqs, Split::Last20);
        assert_eq!(train[0].len(), 8);
        assert_eq!(test[0], [8, 9]);
    }
}
