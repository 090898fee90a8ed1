//! Int8 matrix products for the encoder's linear layers.
//!
//! `y = x · Wᵀ + b` with x quantised per row (symmetric int8, one scale per token) and W per
//! output channel (one scale per row of W). On CPUs with AVX-512 VNNI one `vpdpbusd` multiplies
//! 64 byte pairs at once: W is packed so that one 64-byte load holds 4 consecutive inputs for 16
//! outputs, and x is stored offset by +128 as unsigned bytes (what `vpdpbusd` takes), the offset
//! being removed with precomputed column sums. Elsewhere a portable loop computes the same sums.

use rayon::prelude::*;

use super::super::ops::{gelu_scalar, reduce};

/// What to apply after the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    None,
    Gelu,
}

/// Rows of activations quantised to int8 (stored +128 as u8), with one scale per row.
pub struct QuantRows {
    pub data: Vec<u8>,
    pub scales: Vec<f32>,
    pub rows: usize,
    /// Row length, padded to a multiple of 4 with zeros (stored as 128).
    pub stride: usize,
}

impl QuantRows {
    pub fn new() -> Self {
        Self {
            data: Vec::new(),
            scales: Vec::new(),
            rows: 0,
            stride: 0,
        }
    }

    /// Quantises `x` (`rows × k`, row-major) into self, reusing the buffers.
    pub fn quantize(&mut self, x: &[f32], rows: usize, k: usize) {
        let stride = k.div_ceil(4) * 4;
        self.rows = rows;
        self.stride = stride;
        self.data.clear();
        self.data.resize(rows * stride, 128);
        self.scales.clear();
        self.scales.resize(rows, 0.0);
        for (r, (src, dst)) in x
            .chunks_exact(k)
            .zip(self.data.chunks_exact_mut(stride))
            .enumerate()
        {
            self.scales[r] = quantize_row(src, dst);
        }
    }
}

crate::multiversion! {
    /// Quantises one row to int8 stored +128; returns its scale. Rounds by adding ±0.5 and
    /// truncating, so that the loop vectorises.
    fn quantize_row(src: &[f32], dst: &mut [u8]) -> f32 {
        let max = reduce::max_abs(src);
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        let inv = 1.0 / scale;
        for (d, &v) in dst.iter_mut().zip(src) {
            let x = v * inv;
            // SAFETY: |x| <= 127 by construction of `scale`, well inside i32 (and x is finite
            // because max is).
            let q: i32 = unsafe { (x + 0.5f32.copysign(x)).to_int_unchecked() };
            *d = (q + 128) as u8;
        }
        scale
    }
}

impl Default for QuantRows {
    fn default() -> Self {
        Self::new()
    }
}

/// A linear layer's weights, quantised per output channel and packed for the kernel.
pub struct PackedLinear {
    pub n: usize,
    pub k: usize,
    stride: usize,
    /// VNNI layout: `[n/16][stride/4][16][4]`.
    packed: Vec<i8>,
    /// Plain layout `[n][stride]` for the portable kernel.
    plain: Vec<i8>,
    scale: Vec<f32>,
    /// 128 · Σₖ w[j][k]: removes the +128 offset of the activations.
    offset: Vec<i32>,
    bias: Vec<f32>,
}

impl PackedLinear {
    /// `w` is `n × k` row-major (Hugging Face `[out, in]`), `bias` has `n` entries.
    pub fn new(w: &[f32], bias: &[f32], n: usize, k: usize) -> Self {
        assert_eq!(w.len(), n * k);
        assert_eq!(bias.len(), n);
        let stride = k.div_ceil(4) * 4;
        let mut plain = vec![0i8; n * stride];
        let mut scale = vec![0f32; n];
        let mut offset = vec![0i32; n];
        for j in 0..n {
            let row = &w[j * k..(j + 1) * k];
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = if max > 0.0 { max / 127.0 } else { 1.0 };
            let mut sum = 0i32;
            for (c, &v) in row.iter().enumerate() {
                let q = (v / s).round().clamp(-127.0, 127.0) as i8;
                plain[j * stride + c] = q;
                sum += q as i32;
            }
            scale[j] = s;
            offset[j] = 128 * sum;
        }
        let mut packed = Vec::new();
        if n.is_multiple_of(16) {
            packed = vec![0i8; n * stride];
            let groups = stride / 4;
            for jb in 0..n / 16 {
                for g in 0..groups {
                    for jj in 0..16 {
                        for t in 0..4 {
                            packed[((jb * groups + g) * 16 + jj) * 4 + t] =
                                plain[(jb * 16 + jj) * stride + g * 4 + t];
                        }
                    }
                }
            }
        }
        Self {
            n,
            k,
            stride,
            packed,
            plain,
            scale,
            offset,
            bias: bias.to_vec(),
        }
    }

    fn vnni_ok(&self) -> bool {
        self.n.is_multiple_of(32) && !self.packed.is_empty() && has_vnni()
    }

    /// `out` (`rows × n`) = dequant(x · Wᵀ) + bias, then the epilogue.
    /// With `parallel`, output columns are shared among the current rayon pool's threads.
    pub fn forward(&self, x: &QuantRows, out: &mut Vec<f32>, epi: Epilogue, parallel: bool) {
        assert_eq!(
            x.stride, self.stride,
            "activation width {} vs weights {}",
            x.stride, self.stride
        );
        out.clear();
        out.resize(x.rows * self.n, 0.0);
        let out_ptr = SendPtr(out.as_mut_ptr());
        // Work is split by output columns (pairs of 16-wide blocks): each thread reads only its
        // share of the weights, which matters most for a single short query.
        let pairs = self.n.div_ceil(32);
        let threads = if parallel {
            rayon::current_num_threads().max(1)
        } else {
            1
        };
        let chunk = pairs.div_ceil(threads).max(1);
        let use_vnni = self.vnni_ok();
        let work = |c: usize| {
            let cols = (c * chunk * 32)..((c + 1) * chunk * 32).min(self.n);
            // SAFETY: each task writes only its own columns of every row.
            unsafe {
                #[cfg(target_arch = "x86_64")]
                if use_vnni {
                    vnni::run(self, x, out_ptr.get(), cols.clone(), epi);
                    return;
                }
                portable(self, x, out_ptr.get(), cols, epi);
            }
        };
        let chunks = pairs.div_ceil(chunk);
        if chunks == 1 {
            work(0);
        } else {
            (0..chunks).into_par_iter().for_each(work);
        }
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

impl SendPtr {
    /// Taking the pointer through a method makes closures capture the whole (Send) wrapper.
    fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: used only to hand disjoint column ranges of one buffer to worker threads.
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

pub fn has_vnni() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static VNNI: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *VNNI.get_or_init(|| {
            std::env::var("KEFU_NO_VNNI").is_err()
                && is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[inline(always)]
fn finish(v: f32, epi: Epilogue) -> f32 {
    match epi {
        Epilogue::None => v,
        Epilogue::Gelu => gelu_scalar(v),
    }
}

/// # Safety
/// `out` must hold `x.rows × w.n` floats; `cols` must lie within `0..w.n`.
unsafe fn portable(
    w: &PackedLinear,
    x: &QuantRows,
    out: *mut f32,
    cols: std::ops::Range<usize>,
    epi: Epilogue,
) {
    for r in 0..x.rows {
        let a = &x.data[r * x.stride..(r + 1) * x.stride];
        for j in cols.clone() {
            let b = &w.plain[j * w.stride..(j + 1) * w.stride];
            let acc: i32 = a.iter().zip(b).map(|(&a, &b)| a as i32 * b as i32).sum();
            let v = (acc - w.offset[j]) as f32 * x.scales[r] * w.scale[j] + w.bias[j];
            unsafe { *out.add(r * w.n + j) = finish(v, epi) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use std::arch::x86_64::*;

    use super::{Epilogue, PackedLinear, QuantRows, finish};

    const MR: usize = 8;

    /// # Safety
    /// AVX-512 VNNI must be available; `out` holds `x.rows × w.n` floats; `cols` is a range of
    /// whole 32-column pairs within `0..w.n`.
    pub unsafe fn run(
        w: &PackedLinear,
        x: &QuantRows,
        out: *mut f32,
        cols: std::ops::Range<usize>,
        epi: Epilogue,
    ) {
        let mut c = cols.start;
        while c < cols.end {
            let mut r = 0;
            while r < x.rows {
                let mr = (x.rows - r).min(MR);
                unsafe {
                    match mr {
                        8 => tile::<8>(w, x, out, r, c, epi),
                        7 => tile::<7>(w, x, out, r, c, epi),
                        6 => tile::<6>(w, x, out, r, c, epi),
                        5 => tile::<5>(w, x, out, r, c, epi),
                        4 => tile::<4>(w, x, out, r, c, epi),
                        3 => tile::<3>(w, x, out, r, c, epi),
                        2 => tile::<2>(w, x, out, r, c, epi),
                        _ => tile::<1>(w, x, out, r, c, epi),
                    }
                }
                r += mr;
            }
            c += 32;
        }
    }

    /// Rows `r0..r0+R` × columns `c0..c0+32`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile<const R: usize>(
        w: &PackedLinear,
        x: &QuantRows,
        out: *mut f32,
        r0: usize,
        c0: usize,
        epi: Epilogue,
    ) {
        let groups = w.stride / 4;
        let block = groups * 64;
        unsafe {
            let b0 = w.packed.as_ptr().add((c0 / 16) * block);
            let b1 = b0.add(block);
            let a = x.data.as_ptr().add(r0 * x.stride);
            let mut acc = [[_mm512_setzero_si512(); 2]; R];
            for g in 0..groups {
                let w0 = _mm512_loadu_si512(b0.add(g * 64) as *const _);
                let w1 = _mm512_loadu_si512(b1.add(g * 64) as *const _);
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_epi32(
                        (a.add(i * x.stride + g * 4) as *const i32).read_unaligned(),
                    );
                    row[0] = _mm512_dpbusd_epi32(row[0], av, w0);
                    row[1] = _mm512_dpbusd_epi32(row[1], av, w1);
                }
            }
            for (h, col) in [c0, c0 + 16].into_iter().enumerate() {
                let off = _mm512_loadu_si512(w.offset.as_ptr().add(col) as *const _);
                let ws = _mm512_loadu_ps(w.scale.as_ptr().add(col));
                let bias = _mm512_loadu_ps(w.bias.as_ptr().add(col));
                for (i, row) in acc.iter().enumerate() {
                    let v = _mm512_cvtepi32_ps(_mm512_sub_epi32(row[h], off));
                    let s = _mm512_mul_ps(ws, _mm512_set1_ps(x.scales[r0 + i]));
                    let y = _mm512_fmadd_ps(v, s, bias);
                    let dst = out.add((r0 + i) * w.n + col);
                    _mm512_storeu_ps(dst, y);
                    if epi != Epilogue::None {
                        let s = std::slice::from_raw_parts_mut(dst, 16);
                        for v in s {
                            *v = finish(*v, epi);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(x: &[f32], w: &[f32], b: &[f32], rows: usize, n: usize, k: usize) -> Vec<f32> {
        let mut y = vec![0f32; rows * n];
        for r in 0..rows {
            for j in 0..n {
                y[r * n + j] = (0..k).map(|c| x[r * k + c] * w[j * k + c]).sum::<f32>() + b[j];
            }
        }
        y
    }

    fn data(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed;
        (0..len)
            .map(|_| {
                s = s.wrapping_mul(1664525).wrapping_add(1013904223);
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    #[test]
    fn int8_product_is_close_to_f32_for_every_row_count() {
        let (n, k) = (64, 72);
        let w = data(n * k, 1);
        let b = data(n, 2);
        let lin = PackedLinear::new(&w, &b, n, k);
        for rows in [1, 3, 8, 13] {
            let x = data(rows * k, 3 + rows as u32);
            let mut q = QuantRows::new();
            q.quantize(&x, rows, k);
            let mut y = Vec::new();
            lin.forward(&q, &mut y, Epilogue::None, true);
            let want = reference(&x, &w, &b, rows, n, k);
            let mut p = vec![0f32; rows * n];
            unsafe { portable(&lin, &q, p.as_mut_ptr(), 0..n, Epilogue::None) };
            for ((a, b), c) in y.iter().zip(&want).zip(&p) {
                assert!((a - b).abs() < 0.05, "rows {rows}: int8 {a} vs f32 {b}");
                assert!(
                    (a - c).abs() < 1e-4,
                    "rows {rows}: kernel {a} vs portable {c}"
                );
            }
        }
    }

    #[test]
    fn gelu_epilogue_applies() {
        let (n, k) = (32, 8);
        let w = data(n * k, 5);
        let b = data(n, 6);
        let lin = PackedLinear::new(&w, &b, n, k);
        let x = data(2 * k, 7);
        let mut q = QuantRows::new();
        q.quantize(&x, 2, k);
        let (mut plain, mut act) = (Vec::new(), Vec::new());
        lin.forward(&q, &mut plain, Epilogue::None, false);
        lin.forward(&q, &mut act, Epilogue::Gelu, true);
        for (p, a) in plain.iter().zip(&act) {
            assert!((gelu_scalar(*p) - a).abs() < 1e-6);
        }
    }
}
