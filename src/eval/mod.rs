//! Metrics and report plumbing shared by the `kefu eval` subcommands.

pub mod compare;
pub mod faq;
pub mod pairs;
pub mod report;
pub mod rewrite;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Reads a JSONL file of `T`, skipping blank lines, with each record's 1-based line number;
/// a line that does not parse is an error naming the file, the line and `expected`.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    limit: Option<usize>,
    expected: &str,
) -> anyhow::Result<Vec<(usize, T)>> {
    use anyhow::Context;
    use std::io::BufRead;
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in std::io::BufReader::new(f).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let v = serde_json::from_str(&line)
            .with_context(|| format!("{}:{}: expected {expected}", path.display(), i + 1))?;
        out.push((i + 1, v));
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
    }
    Ok(out)
}

/// Set by Ctrl-C during long evaluations: loops check it between batches and stop cleanly.
pub fn interrupt_flag() -> Arc<AtomicBool> {
    static FLAG: std::sync::OnceLock<Arc<AtomicBool>> = std::sync::OnceLock::new();
    FLAG.get_or_init(|| {
        let flag = Arc::new(AtomicBool::new(false));
        let f = flag.clone();
        let _ = ctrlc_hook(move || f.store(true, Ordering::SeqCst));
        flag
    })
    .clone()
}

/// Installs a SIGINT handler on a background thread of its own tokio runtime.
fn ctrlc_hook(on_signal: impl Fn() + Send + 'static) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("kefu-sigint".into())
        .spawn(move || {
            rt.block_on(async {
                if tokio::signal::ctrl_c().await.is_ok() {
                    eprintln!("\ninterrupted: finishing the current batch and stopping");
                    on_signal();
                }
            })
        })?;
    Ok(())
}

/// A progress bar over `len` texts (rate and time left), labelled `msg`.
pub fn texts_bar(
    len: usize,
    msg: impl Into<std::borrow::Cow<'static, str>>,
) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg} {bar:40} {pos}/{len} texts ({per_sec}, eta {eta})",
        )
        .expect("template"),
    );
    bar.set_message(msg);
    bar
}

/// The `p` quantile (0–1) of ascending `sorted` values by nearest rank; 0 when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted
        .get(((sorted.len().max(1) - 1) as f64 * p).round() as usize)
        .copied()
        .unwrap_or(0.0)
}

/// 1-based ranks of `scores`, ties given their average rank.
pub fn average_ranks(scores: &[f32]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let mut ranks = vec![0f64; scores.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let r = (i + j) as f64 / 2.0 + 1.0;
        for k in i..=j {
            ranks[idx[k]] = r;
        }
        i = j + 1;
    }
    ranks
}

/// Spearman's rank correlation of `scores` with binary `labels` (the Pearson correlation of
/// their average ranks; NaN when either is constant).
pub fn spearman(scores: &[f32], labels: &[bool]) -> f64 {
    let a = average_ranks(scores);
    let b = average_ranks(
        &labels
            .iter()
            .map(|&l| f32::from(u8::from(l)))
            .collect::<Vec<_>>(),
    );
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let cov: f64 = a.iter().zip(&b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = a.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = b.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

/// Area under the ROC curve of `scores` for binary `labels` (ties count half).
pub fn roc_auc(scores: &[f32], labels: &[bool]) -> f64 {
    // Mann–Whitney U with average ranks for ties.
    let ranks = average_ranks(scores);
    let pos = labels.iter().filter(|&&l| l).count() as f64;
    let neg = labels.len() as f64 - pos;
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    let rank_sum: f64 = ranks
        .iter()
        .zip(labels)
        .filter(|(_, l)| **l)
        .map(|(r, _)| r)
        .sum();
    (rank_sum - pos * (pos + 1.0) / 2.0) / (pos * neg)
}

/// The threshold that classifies `score >= t` as positive with the best accuracy.
pub fn best_threshold(scores: &[f32], labels: &[bool]) -> (f32, f64) {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let total_pos = labels.iter().filter(|&&l| l).count();
    // Threshold below everything: all predicted positive.
    let mut correct = total_pos;
    let mut best = (scores[idx[0]], correct);
    for (n, &i) in idx.iter().enumerate() {
        // Moving the threshold above scores[i] flips i to negative.
        if labels[i] {
            correct -= 1;
        } else {
            correct += 1;
        }
        let next_is_tie = n + 1 < idx.len() && scores[idx[n + 1]] == scores[i];
        if !next_is_tie && correct > best.1 {
            let t = idx
                .get(n + 1)
                .map_or(scores[i] + 1e-6, |&j| (scores[i] + scores[j]) / 2.0);
            best = (t, correct);
        }
    }
    (best.0, best.1 as f64 / scores.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_and_threshold_on_known_cases() {
        let s = [0.1, 0.4, 0.35, 0.8];
        let l = [false, false, true, true];
        assert!((roc_auc(&s, &l) - 0.75).abs() < 1e-12);
        assert_eq!(roc_auc(&[0.1, 0.9], &[false, true]), 1.0);
        assert_eq!(roc_auc(&[0.5, 0.5], &[false, true]), 0.5);
        let (t, acc) = best_threshold(&[0.1, 0.2, 0.7, 0.9], &[false, false, true, true]);
        assert_eq!(acc, 1.0);
        assert!(t > 0.2 && t <= 0.7, "{t}");
        let (_, acc) = best_threshold(&s, &l);
        assert_eq!(acc, 0.75);
    }
}
