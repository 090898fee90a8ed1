//! Item-to-item co-occurrence ("customers who bought this also bought"): the cosine of two
//! items' binary customer columns, |U_a ∩ U_b| / √(|U_a|·|U_b|), kept dense with a zero
//! diagonal; a customer's scores sum the rows of the items they have, recency-weighted as in
//! EASE. Also the time-decayed popularity baseline.

use serde::{Deserialize, Serialize};

use super::data::{Event, History};
use super::ease::recency_weights;

/// How a customer's items are weighted (see [`recency_weights`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CoocParams {
    pub tau: f32,
    pub floor: f32,
}

/// The validation grid (scoring only: the similarities do not depend on it).
pub const TAUS: &[f32] = &[3.0, 7.0, 15.0, 50.0];
pub const FLOORS: &[f32] = &[0.0, 0.05, 0.2, 1.0];

/// Half-lives tried for the decayed popularity.
pub const HALF_LIVES_DAYS: &[f64] = &[7.0, 30.0, 90.0, 365.0];
/// The half-life used when none was chosen.
pub const DEFAULT_HALF_LIFE_DAYS: f64 = 30.0;

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PopularityParams {
    pub half_life_days: f64,
}

pub struct Cooc {
    pub n_items: usize,
    /// n_items × n_items, row-major.
    pub sim: Vec<f32>,
}

impl Cooc {
    /// Cosines over the distinct items of each history (repeats count once).
    pub fn fit(n_items: usize, histories: &[History]) -> Self {
        let n = n_items;
        let mut co = vec![0f32; n * n];
        let mut items: Vec<usize> = Vec::new();
        for h in histories {
            items.clear();
            items.extend(h.iter().map(|&(i, _, _)| i as usize).filter(|&i| i < n));
            items.sort_unstable();
            items.dedup();
            for &a in &items {
                let row = &mut co[a * n..(a + 1) * n];
                for &b in &items {
                    row[b] += 1.0;
                }
            }
        }
        let norm: Vec<f32> = (0..n).map(|i| co[i * n + i].sqrt()).collect();
        for a in 0..n {
            for b in 0..n {
                let v = &mut co[a * n + b];
                *v = if a == b || *v == 0.0 {
                    0.0
                } else {
                    *v / (norm[a] * norm[b])
                };
            }
        }
        Self {
            n_items: n,
            sim: co,
        }
    }

    pub fn row(&self, j: u32) -> &[f32] {
        let n = self.n_items;
        &self.sim[j as usize * n..(j as usize + 1) * n]
    }

    /// Σ over the distinct items j of `history` of recency weight(j) · row(j) (items outside
    /// the model are ignored).
    pub fn scores(&self, history: &[Event], tau: f32, floor: f32) -> Vec<f32> {
        let mut out = vec![0f32; self.n_items];
        for (j, w) in recency_weights(history, tau, floor) {
            if (j as usize) < self.n_items {
                for (o, s) in out.iter_mut().zip(self.row(j)) {
                    *o += w * s;
                }
            }
        }
        out
    }
}

/// Time-decayed popularity: Σ over all events of 0.5^((now − ts)/half_life_secs) (events after
/// `now` count 1).
pub fn decayed_popularity(
    n_items: usize,
    histories: &[History],
    now: i64,
    half_life_secs: f64,
) -> Vec<f32> {
    let mut out = vec![0f64; n_items];
    for h in histories {
        for &(i, _, ts) in h {
            if let Some(o) = out.get_mut(i as usize) {
                let age = (now - ts).max(0) as f64;
                *o += 0.5f64.powf(age / half_life_secs);
            }
        }
    }
    out.into_iter().map(|x| x as f32).collect()
}

/// The latest timestamp of any event (0 for none).
pub fn latest_ts(histories: &[History]) -> i64 {
    histories
        .iter()
        .filter_map(|h| h.iter().map(|&(_, _, ts)| ts).max())
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(items: &[u32]) -> History {
        items
            .iter()
            .enumerate()
            .map(|(k, &i)| (i, 1.0, k as i64))
            .collect()
    }

    #[test]
    fn cosines_on_a_hand_made_log() {
        // Item 0: customers {0, 1, 2}; item 1: {0, 1}; item 2: {2, 3}; item 3: nobody.
        // Customer 1 has item 1 twice: it still counts once.
        let log = [h(&[0, 1]), h(&[1, 0, 1]), h(&[0, 2]), h(&[2])];
        let c = Cooc::fit(4, &log);
        let close = |a: f32, b: f64| (a as f64 - b).abs() < 1e-6;
        assert!(close(c.row(0)[1], 2.0 / 6f64.sqrt()), "{:?}", c.row(0));
        assert!(close(c.row(1)[0], 2.0 / 6f64.sqrt()), "symmetric");
        assert!(close(c.row(0)[2], 1.0 / 6f64.sqrt()));
        assert_eq!(c.row(1)[2], 0.0, "never together");
        assert_eq!(c.row(3), [0.0; 4], "no customers");
        for i in 0..4 {
            assert_eq!(c.row(i)[i as usize], 0.0, "zero diagonal");
        }
        // Scores: item 2 newest (weight 1 + floor), item 1 one step back.
        let s = c.scores(&[(1, 1.0, 0), (2, 1.0, 1)], 1.0, 0.5);
        let (w2, w1) = (1.5, (-1f64).exp() + 0.5);
        assert!(
            close(s[0], w1 * 2.0 / 6f64.sqrt() + w2 * 1.0 / 6f64.sqrt()),
            "{s:?}"
        );
        assert_eq!(s[3], 0.0);
        // Items beyond the model are ignored.
        assert_eq!(c.scores(&[(9, 1.0, 0)], 1.0, 0.0), [0.0; 4]);
    }

    #[test]
    fn decayed_popularity_on_a_hand_made_log() {
        let day = 86_400;
        // Item 0: now, one half-life ago, two half-lives ago → 1 + 0.5 + 0.25.
        // Item 1: one event after `now` → 1. Item 2: nothing.
        let log = vec![
            vec![(0, 1.0, 100 * day), (1, 1.0, 101 * day)],
            vec![(0, 1.0, 93 * day), (0, 1.0, 86 * day)],
        ];
        let p = decayed_popularity(3, &log, 100 * day, 7.0 * day as f64);
        assert_eq!(p, [1.75, 1.0, 0.0]);
        assert_eq!(latest_ts(&log), 101 * day);
        let p = decayed_popularity(3, &log, 100 * day, 14.0 * day as f64);
        let want = 1.0 + 0.5f64.sqrt() + 0.5;
        assert!((p[0] as f64 - want).abs() < 1e-6, "{p:?}");
    }
}
