//! Exact nearest-neighbour search over L2-normalised vectors.

/// Dot product of two equally long vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut out = Vec::with_capacity(1);
    dots(a, b, &mut out);
    out[0]
}

pub struct DenseIndex {
    dim: usize,
    data: Vec<f32>,
}

crate::multiversion! {
    fn dots(data: &[f32], q: &[f32], out: &mut Vec<f32>) {
        let dim = q.len();
        out.clear();
        for row in data.chunks_exact(dim) {
            let mut acc = [0f32; 16];
            let (chunks, tail) = (row.chunks_exact(16), row.len() % 16);
            for (c, qc) in chunks.zip(q.chunks_exact(16)) {
                for i in 0..16 {
                    acc[i] += c[i] * qc[i];
                }
            }
            let mut s: f32 = acc.iter().sum();
            for i in dim - tail..dim {
                s += row[i] * q[i];
            }
            out.push(s);
        }
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
