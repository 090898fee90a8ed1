//! Exact nearest-neighbour search over L2-normalised vectors.

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

    /// Cosine of `q` with every stored vector, in insertion order.
    pub fn all_scores(&self, q: &[f32]) -> Vec<f32> {
        let mut out = Vec::with_capacity(self.len());
        dots(&self.data, q, &mut out);
        out
    }
}
