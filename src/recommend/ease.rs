//! Recency-weighted EASE (Steck, "Embarrassingly Shallow Autoencoders", 2019): item-to-item
//! weights B = −P / diag(P) with P = (XᵀX + λI)⁻¹ over the binary customer × item matrix, the
//! diagonal zeroed; a customer's scores are Σ_j w(j)·B[j, ·] over the items they have, each
//! weighted by how recent it is — w(j) = exp(−r/τ) + floor, r = 0 for the newest. Histories
//! arrive in sessions, so what a customer did last says most about what comes next.

use nalgebra::DMatrix;

use super::data::{Event, History};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EaseParams {
    /// L2 regularisation of the item-to-item weights.
    pub lambda: f64,
    /// Recency decay in interactions (the weight halves every τ·ln 2 steps back).
    pub tau: f32,
    /// Weight every item the customer has keeps, however old.
    pub floor: f32,
}

/// The validation grid (kept small: one inverse per λ).
pub const LAMBDAS: &[f64] = &[100.0, 200.0, 300.0, 500.0, 1000.0];
pub const TAUS: &[f32] = &[3.0, 5.0, 7.0, 10.0, 15.0, 20.0];
pub const FLOORS: &[f32] = &[0.0, 0.02, 0.05, 0.1];

/// Item-to-item weights, row j = what having item j says about every item.
pub struct Ease {
    pub n_items: usize,
    pub b: Vec<f32>,
}

impl Ease {
    /// Fits B on the items of each training history (repeats count once).
    pub fn fit(n_items: usize, histories: &[History], lambda: f64) -> Self {
        let n = n_items;
        let mut g = DMatrix::<f64>::zeros(n, n);
        let mut items: Vec<usize> = Vec::new();
        for h in histories {
            items.clear();
            items.extend(h.iter().map(|&(i, _, _)| i as usize));
            items.sort_unstable();
            items.dedup();
            for &a in &items {
                for &b in &items {
                    g[(a, b)] += 1.0;
                }
            }
        }
        for i in 0..n {
            g[(i, i)] += lambda;
        }
        // XᵀX + λI is symmetric positive definite (λ > 0).
        let p = g
            .cholesky()
            .expect("XᵀX + λI is positive definite")
            .inverse();
        let mut b = vec![0f32; n * n];
        for j in 0..n {
            for i in 0..n {
                if i != j {
                    b[j * n + i] = (-p[(j, i)] / p[(i, i)]) as f32;
                }
            }
        }
        Self { n_items: n, b }
    }

    pub fn row(&self, j: u32) -> &[f32] {
        let n = self.n_items;
        &self.b[j as usize * n..(j as usize + 1) * n]
    }

    /// Scores of every item for a customer with `history` (oldest first).
    pub fn scores(&self, history: &[Event], tau: f32, floor: f32) -> Vec<f32> {
        let mut out = vec![0f32; self.n_items];
        for (j, w) in recency_weights(history, tau, floor) {
            for (o, b) in out.iter_mut().zip(self.row(j)) {
                *o += w * b;
            }
        }
        out
    }
}

/// Each distinct item of `history` with its weight: exp(−r/τ) + floor, r its most recent
/// position counted from the end (0 = newest).
pub fn recency_weights(history: &[Event], tau: f32, floor: f32) -> Vec<(u32, f32)> {
    let mut seen = std::collections::HashSet::new();
    history
        .iter()
        .rev()
        .enumerate()
        .filter(|(_, (i, _, _))| seen.insert(*i))
        .map(|(r, &(i, _, _))| (i, (-(r as f32) / tau).exp() + floor))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recency_weights_favour_the_newest_and_count_repeats_once() {
        let h = [(5, 1.0, 1), (7, 1.0, 2), (5, 1.0, 3)];
        let w = recency_weights(&h, 1.0, 0.1);
        assert_eq!(w.len(), 2);
        assert_eq!(w[0].0, 5);
        assert!(
            (w[0].1 - 1.1).abs() < 1e-6,
            "item 5's latest use is the newest"
        );
        assert!((w[1].1 - ((-1f32).exp() + 0.1)).abs() < 1e-6);
    }

    #[test]
    fn co_occurring_items_score_each_other() {
        // Items 0 and 1 always go together, 2 and 3 always together.
        let h = |a: u32, b: u32| vec![(a, 1.0, 0), (b, 1.0, 1)];
        let train: Vec<_> = (0..20)
            .map(|k| if k % 2 == 0 { h(0, 1) } else { h(2, 3) })
            .collect();
        let e = Ease::fit(4, &train, 1.0);
        let s = e.scores(&[(0, 1.0, 0)], 5.0, 0.0);
        assert!(
            s[1] > 0.5 && s[2].abs() < 1e-3 && s[3].abs() < 1e-3,
            "{s:?}"
        );
        assert_eq!(e.row(0)[0], 0.0, "the diagonal is zero");
    }
}
