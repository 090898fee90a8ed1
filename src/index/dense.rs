//! Exact nearest-neighbour search over L2-normalised vectors.

crate::multiversion! {
    /// Dot product of two equally long vectors (the cosine of L2-normalised ones): kefu's one
    /// f32 dot product, used by every module that compares embeddings.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        debug_assert_eq!(a.len(), b.len());
        dot16(a, b)
    }
}

/// 16 running sums, which the compiler turns into vector lanes.
#[inline(always)]
fn dot16(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 16];
    for (x, y) in a.chunks_exact(16).zip(b.chunks_exact(16)) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    let tail = n - n % 16;
    acc.iter().sum::<f32>()
        + a[tail..]
            .iter()
            .zip(&b[tail..])
            .map(|(x, y)| x * y)
            .sum::<f32>()
}

pub struct DenseIndex {
    dim: usize,
    data: Vec<f32>,
}

crate::multiversion! {
    fn dots(data: &[f32], q: &[f32], out: &mut Vec<f32>) {
        out.clear();
        out.extend(data.chunks_exact(q.len()).map(|row| dot16(row, q)));
    }
}

impl DenseIndex {
    pub fn new(dim: usize) -> Self {
        Self {
            dim,
            data: Vec::new(),
        }
    }

    pub fn push(&mut self, v: &[f32]) {
        assert_eq!(v.len(), self.dim);
        self.data.extend_from_slice(v);
    }

    pub fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }

    /// Every vector, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The `k` best rows for `q` with their cosine, in no particular order.
    pub fn top(&self, q: &[f32], k: usize) -> Vec<(u32, f32)> {
        let scores = self.all_scores(q);
        let mut idx: Vec<u32> = (0..scores.len() as u32).collect();
        let k = k.min(idx.len());
        if k > 0 && k < idx.len() {
            idx.select_nth_unstable_by(k - 1, |&a, &b| {
                scores[b as usize].total_cmp(&scores[a as usize])
            });
        }
        idx.truncate(k);
        idx.into_iter().map(|i| (i, scores[i as usize])).collect()
    }

    /// Cosine of `q` with every stored vector, in insertion order.
    pub fn all_scores(&self, q: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.len());
        dots(&self.data, q, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_the_plain_sum_at_every_length() {
        for n in [0, 1, 15, 16, 17, 384, 389] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "length {n}");
        }
        let mut ix = DenseIndex::new(3);
        ix.push(&[1.0, 0.0, 0.0]);
        ix.push(&[0.0, 0.6, 0.8]);
        assert_eq!(
            ix.all_scores(&[0.0, 0.6, 0.8]),
            [dot(ix.row(0), &[0.0, 0.6, 0.8]), 1.0]
        );
    }
}
