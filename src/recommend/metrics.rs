//! Top-k metrics over a full ranking of every item (no sampled negatives), each user's
//! training items excluded: HR, recall, NDCG (binary gains, ideal DCG over min(|test|, k)
//! hits) and catalogue coverage.

use serde::Serialize;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TopK {
    pub users: usize,
    pub hr_at_10: f64,
    pub recall_at_10: f64,
    pub ndcg_at_10: f64,
    /// Standard error of the per-user NDCG@10 mean.
    pub ndcg_at_10_se: f64,
    /// Distinct items recommended to anyone / all items.
    pub coverage_at_10: f64,
}

/// The `k` best items of `scores` (descending), skipping `seen`.
pub fn top_k(scores: &[f32], seen: &[u32], k: usize) -> Vec<u32> {
    let mut mask = vec![false; scores.len()];
    for &i in seen {
        if let Some(m) = mask.get_mut(i as usize) {
            *m = true;
        }
    }
    let mut idx: Vec<u32> = (0..scores.len() as u32)
        .filter(|&i| !mask[i as usize])
        .collect();
    let k = k.min(idx.len());
    if k == 0 {
        return vec![];
    }
    // Ties go to the lower index, so results do not depend on the sort.
    let cmp = |a: &u32, b: &u32| {
        scores[*b as usize]
            .total_cmp(&scores[*a as usize])
            .then(a.cmp(b))
    };
    idx.select_nth_unstable_by(k - 1, cmp);
    idx.truncate(k);
    idx.sort_unstable_by(cmp);
    idx
}

/// Scores every user with a test set: `rank(user)` gives the top 10 (training items already
/// excluded).
pub fn evaluate(
    n_items: usize,
    test: &[Vec<u32>],
    mut rank: impl FnMut(usize) -> Vec<u32>,
) -> TopK {
    const K: usize = 10;
    let mut ndcgs = Vec::new();
    let (mut hr, mut recall) = (0.0, 0.0);
    let mut covered = vec![false; n_items];
    for (u, held) in test.iter().enumerate() {
        if held.is_empty() {
            continue;
        }
        let top = rank(u);
        let mut dcg = 0.0;
        let mut hits = 0usize;
        for (r, i) in top.iter().take(K).enumerate() {
            covered[*i as usize] = true;
            if held.contains(i) {
                hits += 1;
                dcg += 1.0 / ((r + 2) as f64).log2();
            }
        }
        let ideal: f64 = (0..held.len().min(K))
            .map(|r| 1.0 / ((r + 2) as f64).log2())
            .sum();
        ndcgs.push(dcg / ideal);
        hr += (hits > 0) as u8 as f64;
        recall += hits as f64 / held.len() as f64;
    }
    let n = ndcgs.len().max(1) as f64;
    let mean = ndcgs.iter().sum::<f64>() / n;
    let var = ndcgs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    TopK {
        users: ndcgs.len(),
        hr_at_10: hr / n,
        recall_at_10: recall / n,
        ndcg_at_10: mean,
        ndcg_at_10_se: (var / n).sqrt(),
        coverage_at_10: covered.iter().filter(|&&c| c).count() as f64 / n_items.max(1) as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_skips_seen_items_and_breaks_ties_by_index() {
        let s = [0.1, 0.9, 0.5, 0.9, 0.3];
        assert_eq!(top_k(&s, &[], 3), [1, 3, 2]);
        assert_eq!(top_k(&s, &[1], 2), [3, 2]);
        assert_eq!(top_k(&s, &[0, 1, 2, 3, 4], 2), Vec::<u32>::new());
    }

    #[test]
    fn metrics_on_known_rankings() {
        // User 0: its one held-out item at rank 2 → NDCG 1/log2(3); user 1: two held out, one
        // at rank 1 → DCG 1, IDCG 1 + 1/log2(3); user 2: a miss.
        let test = vec![vec![7], vec![3, 9], vec![5]];
        let tops = [vec![1, 7, 2], vec![3, 4, 6], vec![1, 2, 4]];
        let m = evaluate(10, &test, |u| tops[u].clone());
        assert_eq!(m.users, 3);
        assert!((m.hr_at_10 - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.recall_at_10 - (1.0 + 0.5 + 0.0) / 3.0).abs() < 1e-12);
        let l3 = 3f64.log2();
        let want = (1.0 / l3 + 1.0 / (1.0 + 1.0 / l3) + 0.0) / 3.0;
        assert!((m.ndcg_at_10 - want).abs() < 1e-12, "{m:?}");
        // Items 1, 7, 2, 3, 4, 6 were shown: 6 of 10.
        assert!((m.coverage_at_10 - 0.6).abs() < 1e-12);
    }
}
