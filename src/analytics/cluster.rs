//! Grouping questions by meaning: average-linkage agglomerative clustering of unit vectors.
//!
//! The knowledge-gap report groups the questions kefu could not answer by what they ask. Their
//! encoder vectors (L2-normalised, one row each of an `ndarray` matrix) are merged bottom-up:
//! the two groups with the highest *average* cosine between their members merge first
//! (UPGMA), found with the nearest-neighbour chain, which needs O(n²) time and one n × n
//! similarity matrix. Average linkage is reducible, so the merge tree is the same as the naive
//! algorithm's and cutting it at a similarity gives the groups whose members are, on average,
//! at least that similar: one cluster per paraphrase set, not chains of near neighbours
//! (single linkage) nor one outlier splitting a group (complete linkage).

use ndarray::{Array2, ArrayView2, Axis};

/// One group of questions.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    /// Row indices of the members, in input order.
    pub members: Vec<usize>,
    /// The member closest on average to the others (the medoid): the group's representative.
    pub representative: usize,
    /// Mean cosine between distinct members (1 for a single member).
    pub cohesion: f32,
}

/// Clusters the rows of `vectors` (unit length) whose average-linkage similarity is at least
/// `min_similarity`; groups with fewer than `min_size` members are left out. Largest first
/// (ties: earliest first member first).
pub fn agglomerate(
    vectors: ArrayView2<'_, f32>,
    min_similarity: f32,
    min_size: usize,
) -> Vec<Cluster> {
    let n = vectors.nrows();
    if n == 0 {
        return Vec::new();
    }
    let sim: Array2<f32> = vectors.dot(&vectors.t());
    let merges = nn_chain(sim.clone());
    // Cut the tree: apply every merge at or above the threshold (union-find).
    let mut parent: Vec<usize> = (0..n).collect();
    fn find(p: &mut [usize], mut i: usize) -> usize {
        while p[i] != i {
            p[i] = p[p[i]];
            i = p[i];
        }
        i
    }
    for &(a, b, s) in &merges {
        if s >= min_similarity {
            let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
            if ra != rb {
                parent[ra.max(rb)] = ra.min(rb);
            }
        }
    }
    let mut groups: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
    for i in 0..n {
        let r = find(&mut parent, i);
        groups.entry(r).or_default().push(i);
    }
    let mut out: Vec<Cluster> = groups
        .into_values()
        .filter(|m| m.len() >= min_size.max(1))
        .map(|members| {
            let k = members.len();
            let mut best = (members[0], f32::NEG_INFINITY);
            let mut total = 0f32;
            for &i in &members {
                let s: f32 = members
                    .iter()
                    .filter(|&&j| j != i)
                    .map(|&j| sim[[i, j]])
                    .sum();
                total += s;
                if s > best.1 {
                    best = (i, s);
                }
            }
            let cohesion = if k > 1 {
                total / (k * (k - 1)) as f32
            } else {
                1.0
            };
            Cluster {
                members,
                representative: best.0,
                cohesion,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.members
            .len()
            .cmp(&a.members.len())
            .then(a.members[0].cmp(&b.members[0]))
    });
    out
}

/// The average-linkage merge tree of a similarity matrix, as `(a, b, similarity)` merges of
/// the groups whose lowest rows are `a` and `b`, by the nearest-neighbour chain.
fn nn_chain(mut sim: Array2<f32>) -> Vec<(usize, usize, f32)> {
    let n = sim.nrows();
    let mut size = vec![1usize; n];
    let mut alive = vec![true; n];
    let mut merges = Vec::with_capacity(n.saturating_sub(1));
    let mut chain: Vec<usize> = Vec::new();
    let mut remaining = n;
    while remaining > 1 {
        if chain.is_empty() {
            chain.push(alive.iter().position(|&a| a).expect("a live group"));
        }
        let a = *chain.last().expect("non-empty chain");
        // The most similar live group; the previous link wins ties, which keeps the chain
        // from cycling.
        let prev = chain.len().checked_sub(2).map(|i| chain[i]);
        let row = sim.index_axis(Axis(0), a);
        let mut best: Option<(usize, f32)> = prev.map(|p| (p, row[p]));
        for (j, &s) in row.iter().enumerate() {
            if j != a && alive[j] && best.is_none_or(|(_, b)| s > b) {
                best = Some((j, s));
            }
        }
        let (b, s) = best.expect("another live group");
        if Some(b) == prev {
            chain.pop();
            chain.pop();
            // Merge b into a (keep the lower index as the group's row).
            let (keep, gone) = (a.min(b), a.max(b));
            let (nk, ng) = (size[keep] as f32, size[gone] as f32);
            for k in 0..n {
                if alive[k] && k != keep && k != gone {
                    let v = (nk * sim[[keep, k]] + ng * sim[[gone, k]]) / (nk + ng);
                    sim[[keep, k]] = v;
                    sim[[k, keep]] = v;
                }
            }
            size[keep] += size[gone];
            alive[gone] = false;
            remaining -= 1;
            merges.push((keep, gone, s));
        } else {
            chain.push(b);
        }
    }
    merges
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn unit(rows: &[[f32; 3]]) -> Array2<f32> {
        let mut m = Array2::zeros((rows.len(), 3));
        for (i, r) in rows.iter().enumerate() {
            let n = r.iter().map(|v| v * v).sum::<f32>().sqrt();
            for (j, v) in r.iter().enumerate() {
                m[[i, j]] = v / n;
            }
        }
        m
    }

    #[test]
    fn paraphrase_groups_come_out_whole_and_apart() {
        // Two tight groups along x and y, one stray along z.
        let m = unit(&[
            [1.0, 0.05, 0.0],
            [0.0, 1.0, 0.02],
            [1.0, 0.0, 0.06],
            [0.05, 1.0, 0.0],
            [0.0, 0.0, 1.0],
            [1.0, 0.03, 0.03],
        ]);
        let c = agglomerate(m.view(), 0.9, 1);
        let members: Vec<Vec<usize>> = c.iter().map(|c| c.members.clone()).collect();
        assert_eq!(members, vec![vec![0, 2, 5], vec![1, 3], vec![4]]);
        assert!(
            c[0].cohesion > 0.99 && c[0].cohesion <= 1.0001,
            "{}",
            c[0].cohesion
        );
        assert!(c[0].members.contains(&c[0].representative));
        // Singletons are left out on request.
        assert_eq!(agglomerate(m.view(), 0.9, 2).len(), 2);
        // A low threshold joins everything; an impossible one nothing.
        assert_eq!(agglomerate(m.view(), -1.0, 1).len(), 1);
        assert_eq!(agglomerate(m.view(), 1.01, 1).len(), 6);
    }

    /// Average linkage: a chain of near neighbours whose ends are far apart is not one group
    /// (single linkage would make it one).
    #[test]
    fn a_chain_of_neighbours_is_not_one_group() {
        let angles = [0.0f32, 0.35, 0.7, 1.05, 1.4];
        let rows: Vec<[f32; 3]> = angles.iter().map(|a| [a.cos(), a.sin(), 0.0]).collect();
        let m = unit(&rows);
        // Neighbours are cos(0.35) = 0.94 apart; the ends cos(1.4) = 0.17.
        let c = agglomerate(m.view(), 0.9, 1);
        assert!(c.len() >= 2, "{c:?}");
        assert!(c.iter().all(|c| c.members.len() <= 2), "{c:?}");
    }

    /// The chain gives the naive algorithm's merges (the most similar pair of groups first).
    #[test]
    fn the_chain_matches_the_naive_merge_order() {
        let mut seed = 7u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            (seed % 1000) as f32 / 500.0 - 1.0
        };
        let rows: Vec<[f32; 3]> = (0..40).map(|_| [next(), next(), next()]).collect();
        let m = unit(&rows);
        for t in [0.95, 0.8, 0.5] {
            let fast = agglomerate(m.view(), t, 1);
            let slow = naive(&m, t);
            let mut a: Vec<Vec<usize>> = fast.into_iter().map(|c| c.members).collect();
            a.sort();
            assert_eq!(a, slow, "threshold {t}");
        }
    }

    fn naive(m: &Array2<f32>, t: f32) -> Vec<Vec<usize>> {
        let n = m.nrows();
        let mut groups: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
        let avg = |a: &[usize], b: &[usize]| {
            let mut s = 0f32;
            for &i in a {
                for &j in b {
                    s += m.row(i).dot(&m.row(j));
                }
            }
            s / (a.len() * b.len()) as f32
        };
        loop {
            let mut best: Option<(usize, usize, f32)> = None;
            for i in 0..groups.len() {
                for j in i + 1..groups.len() {
                    let s = avg(&groups[i], &groups[j]);
                    if best.is_none_or(|(_, _, b)| s > b) {
                        best = Some((i, j, s));
                    }
                }
            }
            match best {
                Some((i, j, s)) if s >= t => {
                    let g = groups.remove(j);
                    groups[i].extend(g);
                    groups[i].sort();
                }
                _ => break,
            }
        }
        groups.sort();
        groups
    }

    #[test]
    fn nothing_in_nothing_out() {
        let m = Array2::<f32>::zeros((0, 3));
        assert!(agglomerate(m.view(), 0.5, 1).is_empty());
        let one = unit(&[[1.0, 0.0, 0.0]]);
        let c = agglomerate(one.view(), 0.5, 1);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].representative, 0);
    }
}
