//! Implicit-feedback matrix factorisation (Hu, Koren & Volinsky, "Collaborative Filtering for
//! Implicit Feedback Datasets", 2008) fitted by alternating least squares with exact solves.
//!
//! Every customer u and item i get `factors`-dimensional vectors x_u, y_i. The preference
//! p_ui is 1 when the item is in the customer's history (0 otherwise) and its confidence is
//! c_ui = 1 + α·(times the item occurs there). ALS minimises
//! Σ_ui c_ui (p_ui − x_uᵀy_i)² + reg (Σ‖x_u‖² + Σ‖y_i‖²) by solving, per customer,
//! (YᵀY + Yᵀ(C_u − I)Y + reg·I) x_u = YᵀC_u p(u) — YᵀY computed once per half-sweep, the
//! correction only over the customer's own items — and the same for items with X fixed.
//! Customers are never stored: a history's vector is solved on demand ("fold-in") with the
//! item factors fixed, so customers unseen in training are served without retraining.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::data::{Event, History};

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AlsParams {
    /// Dimensions of the customer and item vectors.
    pub factors: usize,
    /// L2 regularisation of both sides.
    pub reg: f32,
    /// Confidence per occurrence: c = 1 + α·count.
    pub alpha: f32,
    /// Alternating sweeps (customers, then items).
    pub iterations: usize,
}

/// The validation grid: few enough settings that `kefu eval recommend` stays quick (each fit
/// takes about a second on MovieLens-100k with 2 cores). On MovieLens, weak confidence (small
/// α) with a strong ridge does best on `last20`; the single-item `last` split is noisier.
pub const GRID: &[AlsParams] = &[
    AlsParams {
        factors: 32,
        reg: 3.0,
        alpha: 2.0,
        iterations: 15,
    },
    AlsParams {
        factors: 32,
        reg: 10.0,
        alpha: 0.5,
        iterations: 15,
    },
    AlsParams {
        factors: 64,
        reg: 1.0,
        alpha: 1.0,
        iterations: 15,
    },
    AlsParams {
        factors: 64,
        reg: 1.0,
        alpha: 5.0,
        iterations: 15,
    },
    AlsParams {
        factors: 64,
        reg: 10.0,
        alpha: 0.25,
        iterations: 15,
    },
    AlsParams {
        factors: 64,
        reg: 10.0,
        alpha: 0.5,
        iterations: 15,
    },
    AlsParams {
        factors: 64,
        reg: 30.0,
        alpha: 2.0,
        iterations: 15,
    },
];

/// Seed of the initial item factors everywhere a model is fitted for real.
pub const SEED: u64 = 42;

/// Learned item factors, with what fold-in needs precomputed.
pub struct Als {
    pub params: AlsParams,
    pub n_items: usize,
    /// n_items × factors, row-major.
    pub item_factors: Vec<f32>,
    /// YᵀY (factors × factors, row-major), shared by every fold-in.
    pub gram: Vec<f64>,
    /// ‖y_i‖ per item (for cosines).
    norms: Vec<f32>,
}

/// A sparse row-major matrix of counts.
struct Csr {
    ptr: Vec<usize>,
    idx: Vec<u32>,
    val: Vec<f32>,
}

impl Csr {
    fn row(&self, r: usize) -> impl Iterator<Item = (usize, f32)> + '_ {
        let (a, b) = (self.ptr[r], self.ptr[r + 1]);
        self.idx[a..b]
            .iter()
            .zip(&self.val[a..b])
            .map(|(&i, &v)| (i as usize, v))
    }

    fn rows(&self) -> usize {
        self.ptr.len() - 1
    }

    /// Per customer, each distinct item (below `n_items`) with how often it occurs.
    fn from_histories(n_items: usize, histories: &[History]) -> Self {
        let mut ptr = vec![0];
        let (mut idx, mut val) = (Vec::new(), Vec::new());
        for h in histories {
            let (i, v) = counts(n_items, h);
            idx.extend(i);
            val.extend(v);
            ptr.push(idx.len());
        }
        Self { ptr, idx, val }
    }

    fn transpose(&self, n_cols: usize) -> Self {
        let mut ptr = vec![0usize; n_cols + 1];
        for &i in &self.idx {
            ptr[i as usize + 1] += 1;
        }
        for c in 0..n_cols {
            ptr[c + 1] += ptr[c];
        }
        let mut next = ptr.clone();
        let mut idx = vec![0u32; self.idx.len()];
        let mut val = vec![0f32; self.idx.len()];
        for r in 0..self.rows() {
            for (c, v) in self.row(r) {
                idx[next[c]] = r as u32;
                val[next[c]] = v;
                next[c] += 1;
            }
        }
        Self { ptr, idx, val }
    }
}

/// Distinct items of `history` (sorted, those below `n_items`) and their counts.
fn counts(n_items: usize, history: &[Event]) -> (Vec<u32>, Vec<f32>) {
    let mut items: Vec<u32> = history
        .iter()
        .map(|&(i, _, _)| i)
        .filter(|&i| (i as usize) < n_items)
        .collect();
    items.sort_unstable();
    let (mut idx, mut val) = (Vec::new(), Vec::<f32>::new());
    for i in items {
        if idx.last() == Some(&i) {
            *val.last_mut().expect("same length") += 1.0;
        } else {
            idx.push(i);
            val.push(1.0);
        }
    }
    (idx, val)
}

/// AᵀA of a rows × f row-major matrix.
fn gram(a: &[f32], f: usize) -> Vec<f64> {
    let mut g = vec![0f64; f * f];
    for row in a.chunks_exact(f) {
        for (r, &x) in row.iter().enumerate() {
            let x = x as f64;
            for (gc, &y) in g[r * f..(r + 1) * f].iter_mut().zip(row).skip(r) {
                *gc += x * y as f64;
            }
        }
    }
    for r in 0..f {
        for c in 0..r {
            g[r * f + c] = g[c * f + r];
        }
    }
    g
}

/// Reused buffers of one solve.
struct Scratch {
    upper: Vec<f32>,
    a: Vec<f64>,
    b: Vec<f64>,
}

impl Scratch {
    fn new(f: usize) -> Self {
        Self {
            upper: vec![0.0; f * f],
            a: vec![0.0; f * f],
            b: vec![0.0; f],
        }
    }
}

/// One side's vector given the other side's factors `other` (with Gram matrix `g`) and this
/// row's `(index, count)` pairs: (G + Σ (c−1) y yᵀ + reg·I) x = Σ c y. Zero for an empty row.
fn solve_row(
    other: &[f32],
    g: &[f64],
    row: impl Iterator<Item = (usize, f32)>,
    p: &AlsParams,
    s: &mut Scratch,
    out: &mut [f32],
) {
    let f = p.factors;
    s.upper.fill(0.0);
    s.b.fill(0.0);
    let mut any = false;
    for (j, count) in row {
        any = true;
        let c = 1.0 + p.alpha * count;
        let y = &other[j * f..(j + 1) * f];
        for (r, &yr) in y.iter().enumerate() {
            s.b[r] += (c * yr) as f64;
            let w = (c - 1.0) * yr;
            for (u, &yc) in s.upper[r * f + r..(r + 1) * f].iter_mut().zip(&y[r..]) {
                *u += w * yc;
            }
        }
    }
    if !any {
        out.fill(0.0);
        return;
    }
    for r in 0..f {
        for c in r..f {
            let v = g[r * f + c] + s.upper[r * f + c] as f64;
            s.a[r * f + c] = v;
            s.a[c * f + r] = v;
        }
        s.a[r * f + r] += p.reg as f64;
    }
    cholesky_solve(&mut s.a, &mut s.b, f);
    for (o, &x) in out.iter_mut().zip(&s.b) {
        *o = x as f32;
    }
}

/// Solves A x = b in place (x into `b`) for symmetric positive definite A (row-major; its
/// strict lower triangle is overwritten by the Cholesky factor, the upper one is kept). A tiny
/// ridge is added should rounding have made A indefinite.
fn cholesky_solve(a: &mut [f64], b: &mut [f64], f: usize) {
    let diag: Vec<f64> = (0..f).map(|k| a[k * f + k]).collect();
    let scale = diag.iter().fold(0f64, |m, &d| m.max(d.abs())).max(1e-30);
    let mut jitter = 0.0;
    while !cholesky(a, &diag, jitter, f) {
        jitter = if jitter == 0.0 {
            scale * 1e-10
        } else {
            jitter * 100.0
        };
    }
    // L z = b, then Lᵀ x = z.
    for i in 0..f {
        let dot: f64 = a[i * f..i * f + i]
            .iter()
            .zip(&b[..i])
            .map(|(x, y)| x * y)
            .sum();
        b[i] = (b[i] - dot) / a[i * f + i];
    }
    for i in (0..f).rev() {
        let mut s = b[i];
        for k in i + 1..f {
            s -= a[k * f + i] * b[k];
        }
        b[i] = s / a[i * f + i];
    }
}

/// The lower factor L of A + jitter·I into the lower triangle (diagonal included), reading A
/// from `diag` and the upper triangle; false if a pivot is not positive.
fn cholesky(a: &mut [f64], diag: &[f64], jitter: f64, f: usize) -> bool {
    for j in 0..f {
        let lj = &a[j * f..j * f + j];
        let d = diag[j] + jitter - lj.iter().map(|x| x * x).sum::<f64>();
        if !(d > 0.0 && d.is_finite()) {
            return false;
        }
        let d = d.sqrt();
        a[j * f + j] = d;
        for i in j + 1..f {
            let dot: f64 = a[i * f..i * f + j]
                .iter()
                .zip(&a[j * f..j * f + j])
                .map(|(x, y)| x * y)
                .sum();
            a[i * f + j] = (a[j * f + i] - dot) / d;
        }
    }
    true
}

/// Solves every row of `rows` into `out` (rows × f), in parallel.
fn solve_side(other: &[f32], rows: &Csr, p: &AlsParams, out: &mut [f32]) {
    let f = p.factors;
    let g = gram(other, f);
    out.par_chunks_mut(f).enumerate().for_each_init(
        || Scratch::new(f),
        |s, (r, x)| solve_row(other, &g, rows.row(r), p, s, x),
    );
}

/// SplitMix64: small, seeded, good enough for initial values.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Als {
    /// Seeded initialisation (small random values), `iterations` alternating sweeps.
    pub fn fit(n_items: usize, histories: &[History], params: AlsParams, seed: u64) -> Self {
        let (items, _) = train(n_items, histories, params, seed, |_, _| {});
        Self::from_item_factors(params, n_items, items)
    }

    /// Rebuild from saved item factors (recomputes caches).
    pub fn from_item_factors(params: AlsParams, n_items: usize, item_factors: Vec<f32>) -> Self {
        let f = params.factors;
        assert_eq!(
            item_factors.len(),
            n_items * f,
            "item factors are n_items × factors"
        );
        let gram = gram(&item_factors, f);
        let norms = item_factors
            .chunks_exact(f.max(1))
            .map(|y| y.iter().map(|v| v * v).sum::<f32>().sqrt())
            .collect();
        Self {
            params,
            n_items,
            item_factors,
            gram,
            norms,
        }
    }

    fn item(&self, i: usize) -> &[f32] {
        let f = self.params.factors;
        &self.item_factors[i * f..(i + 1) * f]
    }

    /// Fold-in: the customer's factor vector solved from `history` with item factors fixed (no
    /// retraining). Zero for an empty history (items outside the model are ignored).
    pub fn user_vector(&self, history: &[Event]) -> Vec<f32> {
        let (idx, val) = counts(self.n_items, history);
        let mut x = vec![0f32; self.params.factors];
        solve_row(
            &self.item_factors,
            &self.gram,
            idx.iter().zip(&val).map(|(&i, &v)| (i as usize, v)),
            &self.params,
            &mut Scratch::new(self.params.factors),
            &mut x,
        );
        x
    }

    /// Scores of every item for a customer with `history` (via user_vector).
    pub fn scores(&self, history: &[Event]) -> Vec<f32> {
        let x = self.user_vector(history);
        (0..self.n_items)
            .map(|i| self.item(i).iter().zip(&x).map(|(a, b)| a * b).sum())
            .collect()
    }

    /// Cosine of two items' factors (for explanations: which history item is closest to a
    /// recommendation). 0 when either is unknown or has a zero vector.
    pub fn item_similarity(&self, a: u32, b: u32) -> f32 {
        let (a, b) = (a as usize, b as usize);
        if a >= self.n_items || b >= self.n_items {
            return 0.0;
        }
        let d = self.norms[a] * self.norms[b];
        if d <= 0.0 {
            return 0.0;
        }
        let dot: f32 = self
            .item(a)
            .iter()
            .zip(self.item(b))
            .map(|(x, y)| x * y)
            .sum();
        dot / d
    }
}

/// The alternating sweeps; `after_sweep(items, users)` sees both sides after each one.
/// Returns (item factors, customer factors).
fn train(
    n_items: usize,
    histories: &[History],
    p: AlsParams,
    seed: u64,
    mut after_sweep: impl FnMut(&[f32], &[f32]),
) -> (Vec<f32>, Vec<f32>) {
    let f = p.factors;
    let users = Csr::from_histories(n_items, histories);
    let items = users.transpose(n_items);
    let mut state = seed;
    let scale = 0.01;
    let mut y: Vec<f32> = (0..n_items * f)
        .map(|_| ((splitmix(&mut state) >> 40) as f32 / (1u64 << 24) as f32) * scale)
        .collect();
    let mut x = vec![0f32; histories.len() * f];
    for _ in 0..p.iterations {
        solve_side(&y, &users, &p, &mut x);
        solve_side(&x, &items, &p, &mut y);
        after_sweep(&y, &x);
    }
    (y, x)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Σ_ui c_ui (p_ui − x_uᵀy_i)² + reg (‖X‖² + ‖Y‖²), over every customer × item.
    fn objective(
        n_items: usize,
        histories: &[History],
        p: &AlsParams,
        y: &[f32],
        x: &[f32],
    ) -> f64 {
        let f = p.factors;
        let mut loss = 0.0;
        for (u, h) in histories.iter().enumerate() {
            let (idx, val) = counts(n_items, h);
            for i in 0..n_items {
                let pred: f32 = x[u * f..(u + 1) * f]
                    .iter()
                    .zip(&y[i * f..(i + 1) * f])
                    .map(|(a, b)| a * b)
                    .sum();
                let (pref, c) = match idx.binary_search(&(i as u32)) {
                    Ok(k) => (1.0, 1.0 + p.alpha * val[k]),
                    Err(_) => (0.0, 1.0),
                };
                loss += (c * (pref - pred) * (pref - pred)) as f64;
            }
        }
        let sq = |v: &[f32]| v.iter().map(|a| (a * a) as f64).sum::<f64>();
        loss + p.reg as f64 * (sq(x) + sq(y))
    }

    /// Two clusters: customers of the first buy among items 0..4, the second among 4..8.
    fn two_clusters() -> Vec<History> {
        (0..40u32)
            .map(|u| {
                let base = if u % 2 == 0 { 0 } else { 4 };
                (0..3u32)
                    .map(|k| (base + (u / 2 + k) % 4, 1.0, k as i64))
                    .collect()
            })
            .collect()
    }

    const P: AlsParams = AlsParams {
        factors: 4,
        reg: 0.1,
        alpha: 10.0,
        iterations: 10,
    };

    #[test]
    fn same_cluster_items_rank_first_and_new_histories_fold_in() {
        let als = Als::fit(9, &two_clusters(), P, 7);
        // A customer never seen in training who has items 0 and 1.
        let s = als.scores(&[(0, 1.0, 0), (1, 1.0, 1)]);
        let top = crate::recommend::metrics::top_k(&s, &[0, 1], 2);
        assert_eq!(top.len(), 2);
        assert!(top.iter().all(|&i| i == 2 || i == 3), "{top:?} {s:?}");
        let s = als.scores(&[(5, 1.0, 0)]);
        let top = crate::recommend::metrics::top_k(&s, &[5], 3);
        assert!(top.iter().all(|&i| (4..8).contains(&i)), "{top:?} {s:?}");
        // Item 8 never occurs: its factors shrink to zero.
        assert!(s[8].abs() < 1e-6, "{s:?}");
        assert!(als.item_similarity(0, 1) > als.item_similarity(0, 5));
        assert!(als.item_similarity(0, 8) == 0.0);
        assert_eq!(als.user_vector(&[]), vec![0.0; 4], "empty history");
        // Fold-in matches rebuilding from the saved factors.
        let back = Als::from_item_factors(P, 9, als.item_factors.clone());
        assert_eq!(back.scores(&[(6, 1.0, 0)]), als.scores(&[(6, 1.0, 0)]));
    }

    #[test]
    fn every_sweep_lowers_the_objective() {
        let h = two_clusters();
        let mut losses = vec![];
        train(9, &h, P, 3, |y, x| losses.push(objective(9, &h, &P, y, x)));
        assert_eq!(losses.len(), P.iterations);
        for w in losses.windows(2) {
            assert!(w[1] <= w[0] * (1.0 + 1e-5), "{losses:?}");
        }
        // After the first sweep the fit is already decent; it keeps improving.
        assert!(losses[P.iterations - 1] < losses[0], "{losses:?}");
        // The exact per-row solve: the folded-in vector of a training customer is optimal
        // for the final item factors, so it cannot do worse than the stored one.
        let (y, x) = train(9, &h, P, 3, |_, _| {});
        let als = Als::from_item_factors(P, 9, y.clone());
        let folded: Vec<f32> = h.iter().flat_map(|u| als.user_vector(u)).collect();
        assert!(objective(9, &h, &P, &y, &folded) <= objective(9, &h, &P, &y, &x) * (1.0 + 1e-6));
    }

    #[test]
    fn cholesky_solves_a_known_system() {
        // [[4, 2], [2, 3]] x = [2, 1] → x = [0.5, 0].
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        let mut b = vec![2.0, 1.0];
        cholesky_solve(&mut a, &mut b, 2);
        assert!((b[0] - 0.5).abs() < 1e-12 && b[1].abs() < 1e-12, "{b:?}");
    }

    #[test]
    fn repeated_items_raise_confidence() {
        let (idx, val) = counts(5, &[(3, 1.0, 0), (1, 1.0, 1), (3, 1.0, 2), (9, 1.0, 3)]);
        assert_eq!(idx, [1, 3]);
        assert_eq!(val, [1.0, 2.0]);
    }
}
