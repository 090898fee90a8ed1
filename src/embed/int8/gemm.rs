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

/// `embed.cpu`: which int8 kernels run the encoder. `auto` takes the fastest the CPU has; the
/// others force one (refused at load when the CPU lacks it), so that every path can be tested
/// and benchmarked on one machine.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum CpuPath {
    #[default]
    Auto,
    /// AVX-512 VNNI (`vpdpbusd` on 512-bit vectors).
    Avx512,
    /// 256-bit VNNI (`vpdpbusd` on 256-bit vectors: AVX-VNNI, or AVX-512 VNNI with VL).
    Avxvnni,
    /// AVX2 (`vpmaddubsw` + `vpmaddwd` on 256-bit vectors).
    Avx2,
    /// ARM NEON, with the ARMv8.2 dot product (`sdot`) where the CPU has it.
    Neon,
    /// The portable loop: correct everywhere, and the slowest.
    Scalar,
}

/// The matrix-product kernel a layer runs, fixed when its weights are packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    Avx512Vnni,
    /// The AVX2 tile with `vpdpbusd` on 256-bit vectors: VEX-encoded on CPUs with AVX-VNNI
    /// (Intel since Alder Lake and Sapphire Rapids, AMD since Zen 5), EVEX-encoded on CPUs with
    /// AVX-512 VNNI and VL (the same operation; it lets the path run, and be tested, there).
    AvxVnni,
    Avx2,
    NeonDot,
    Neon,
    Scalar,
}

impl Kernel {
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Avx512Vnni => "avx512-vnni",
            Kernel::AvxVnni => "avx-vnni",
            Kernel::Avx2 => "avx2",
            Kernel::NeonDot => "neon-dotprod",
            Kernel::Neon => "neon",
            Kernel::Scalar => "scalar",
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn supported(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni => {
                is_x86_feature_detected!("avx512f")
                    && is_x86_feature_detected!("avx512bw")
                    && is_x86_feature_detected!("avx512vnni")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::AvxVnni => {
                Kernel::Avx2.supported()
                    && (is_x86_feature_detected!("avxvnni")
                        || (is_x86_feature_detected!("avx512vnni")
                            && is_x86_feature_detected!("avx512vl")))
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "aarch64")]
            Kernel::NeonDot => std::arch::is_aarch64_feature_detected!("dotprod"),
            #[cfg(target_arch = "aarch64")]
            Kernel::Neon => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    /// The fastest kernel this CPU runs.
    pub fn best() -> Kernel {
        [
            Kernel::Avx512Vnni,
            Kernel::AvxVnni,
            Kernel::Avx2,
            Kernel::NeonDot,
            Kernel::Neon,
        ]
        .into_iter()
        .find(|k| k.supported())
        .unwrap_or(Kernel::Scalar)
    }

    /// The kernel `embed.cpu` asks for, or why this CPU cannot run it.
    pub fn select(path: CpuPath) -> Result<Kernel, String> {
        let (kernel, needs) = match path {
            CpuPath::Auto => return Ok(Kernel::best()),
            CpuPath::Scalar => return Ok(Kernel::Scalar),
            CpuPath::Avx512 => (Kernel::Avx512Vnni, "AVX-512 F, BW and VNNI"),
            CpuPath::Avxvnni => (
                Kernel::AvxVnni,
                "AVX2, FMA and AVX-VNNI (or AVX-512 VNNI with VL)",
            ),
            CpuPath::Avx2 => (Kernel::Avx2, "AVX2 and FMA"),
            CpuPath::Neon => {
                if Kernel::NeonDot.supported() {
                    return Ok(Kernel::NeonDot);
                }
                (Kernel::Neon, "ARM NEON (aarch64)")
            }
        };
        if kernel.supported() {
            Ok(kernel)
        } else {
            Err(format!(
                "embed.cpu = {:?} needs {needs}, which this CPU lacks; use \"auto\"",
                path.as_str()
            ))
        }
    }

    /// The widest vector level the element-wise code around the products may use with it.
    fn simd(self) -> crate::embed::ops::Simd {
        use crate::embed::ops::Simd;
        match self {
            Kernel::Avx512Vnni => Simd::Avx512,
            Kernel::AvxVnni | Kernel::Avx2 => Simd::Avx2,
            _ => Simd::Base,
        }
    }

    /// Output columns in one packed block of weights.
    fn block(self) -> usize {
        match self {
            Kernel::Avx512Vnni => 16,
            Kernel::AvxVnni | Kernel::Avx2 => 8,
            Kernel::NeonDot | Kernel::Neon => 4,
            Kernel::Scalar => 1,
        }
    }

    /// Largest weight magnitude after quantisation. `vpmaddubsw` adds two u8 × i8 products into
    /// a saturating i16: with activations up to 255, weights must stay within ±63 (7 bits) so
    /// that 2 · 255 · 63 fits.
    fn weight_max(self) -> f32 {
        match self {
            Kernel::Avx2 => 63.0,
            _ => 127.0,
        }
    }
}

impl CpuPath {
    pub fn as_str(self) -> &'static str {
        match self {
            CpuPath::Auto => "auto",
            CpuPath::Avx512 => "avx512",
            CpuPath::Avxvnni => "avxvnni",
            CpuPath::Avx2 => "avx2",
            CpuPath::Neon => "neon",
            CpuPath::Scalar => "scalar",
        }
    }
}

/// Makes the element-wise code (quantisation, layer norm, attention) use no wider vectors than
/// `kernel` does, so that a forced path is that path throughout. Process-wide.
pub fn limit_simd_to(kernel: Kernel) {
    crate::embed::ops::set_simd_cap(kernel.simd());
}

/// A linear layer's weights, quantised per output channel and packed for one kernel.
pub struct PackedLinear {
    pub n: usize,
    pub k: usize,
    stride: usize,
    kernel: Kernel,
    /// `[n / block][stride / 4][block][4]`: one vector load holds 4 consecutive inputs for
    /// `block` outputs (for `Scalar`, block 1: plain rows).
    w: Vec<i8>,
    scale: Vec<f32>,
    /// 128 · Σₖ w[j][k]: removes the +128 offset of the activations.
    offset: Vec<i32>,
    bias: Vec<f32>,
}

impl PackedLinear {
    /// `w` is `n × k` row-major (Hugging Face `[out, in]`), `bias` has `n` entries. The SIMD
    /// kernels take whole tiles of 32 outputs; a layer of another width runs the scalar loop.
    pub fn new(w: &[f32], bias: &[f32], n: usize, k: usize, kernel: Kernel) -> Self {
        assert_eq!(w.len(), n * k);
        assert_eq!(bias.len(), n);
        let kernel = if n.is_multiple_of(32) {
            kernel
        } else {
            Kernel::Scalar
        };
        let stride = k.div_ceil(4) * 4;
        let groups = stride / 4;
        let block = kernel.block();
        let qmax = kernel.weight_max();
        let mut packed = vec![0i8; n * stride];
        let mut scale = vec![0f32; n];
        let mut offset = vec![0i32; n];
        for j in 0..n {
            let row = &w[j * k..(j + 1) * k];
            let max = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            let s = if max > 0.0 { max / qmax } else { 1.0 };
            let mut sum = 0i32;
            let (jb, jj) = (j / block, j % block);
            for (c, &v) in row.iter().enumerate() {
                let q = (v / s).round().clamp(-qmax, qmax) as i8;
                let (g, t) = (c / 4, c % 4);
                packed[((jb * groups + g) * block + jj) * 4 + t] = q;
                sum += q as i32;
            }
            scale[j] = s;
            offset[j] = 128 * sum;
        }
        Self {
            n,
            k,
            stride,
            kernel,
            w: packed,
            scale,
            offset,
            bias: bias.to_vec(),
        }
    }

    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// The quantised weight of output `j`, input `c` (whatever the layout).
    #[inline(always)]
    fn weight(&self, j: usize, c: usize) -> i8 {
        let block = self.kernel.block();
        let groups = self.stride / 4;
        self.w[(((j / block) * groups + c / 4) * block + j % block) * 4 + c % 4]
    }

    /// Bytes of weights held (int8 values, scales, offsets, bias).
    pub fn bytes(&self) -> usize {
        self.w.len() + 4 * (self.scale.len() + self.offset.len() + self.bias.len())
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
        // Work is split by output columns (tiles of 32): each thread reads only its share of
        // the weights, which matters most for a single short query.
        let pairs = self.n.div_ceil(32);
        let threads = if parallel {
            rayon::current_num_threads().max(1)
        } else {
            1
        };
        let chunk = pairs.div_ceil(threads).max(1);
        let work = |c: usize| {
            let cols = (c * chunk * 32)..((c + 1) * chunk * 32).min(self.n);
            // SAFETY: each task writes only its own columns of every row; the kernel was
            // checked to be supported when it was selected, and SIMD layers have n % 32 == 0.
            unsafe {
                match self.kernel {
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx512Vnni => vnni::run(self, x, out_ptr.get(), cols, epi),
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2 | Kernel::AvxVnni => avx2::run(self, x, out_ptr.get(), cols, epi),
                    #[cfg(target_arch = "aarch64")]
                    Kernel::NeonDot | Kernel::Neon => neon::run(self, x, out_ptr.get(), cols, epi),
                    _ => portable(self, x, out_ptr.get(), cols, epi),
                }
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
            let acc: i32 = if w.kernel == Kernel::Scalar {
                let b = &w.w[j * w.stride..(j + 1) * w.stride];
                a.iter().zip(b).map(|(&a, &b)| a as i32 * b as i32).sum()
            } else {
                a.iter()
                    .enumerate()
                    .map(|(c, &a)| a as i32 * w.weight(j, c) as i32)
                    .sum()
            };
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
    /// whole 32-column tiles within `0..w.n`.
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
            let b0 = w.w.as_ptr().add((c0 / 16) * block);
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

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use super::{Epilogue, Kernel, PackedLinear, QuantRows, finish};

    const MR: usize = 4;

    /// How a tile multiplies a group of 4 inputs into its i32 accumulators.
    const MADD: u8 = 0;
    /// `vpdpbusd`, VEX-encoded (AVX-VNNI).
    const VNNI_VEX: u8 = 1;
    /// `vpdpbusd` on 256-bit vectors, EVEX-encoded (AVX-512 VNNI + VL).
    const VNNI_EVEX: u8 = 2;

    /// # Safety
    /// The kernel's features must be available (`Kernel::supported`); `out` holds
    /// `x.rows × w.n` floats; `cols` is a range of whole 32-column tiles within `0..w.n`.
    pub unsafe fn run(
        w: &PackedLinear,
        x: &QuantRows,
        out: *mut f32,
        cols: std::ops::Range<usize>,
        epi: Epilogue,
    ) {
        let mode = match w.kernel {
            Kernel::AvxVnni if is_x86_feature_detected!("avxvnni") => VNNI_VEX,
            Kernel::AvxVnni => VNNI_EVEX,
            _ => MADD,
        };
        let mut c = cols.start;
        while c < cols.end {
            let mut r = 0;
            while r < x.rows {
                let mr = (x.rows - r).min(MR);
                unsafe {
                    match (mode, mr) {
                        (VNNI_VEX, 4) => tile_vex::<4>(w, x, out, r, c, epi),
                        (VNNI_VEX, 3) => tile_vex::<3>(w, x, out, r, c, epi),
                        (VNNI_VEX, 2) => tile_vex::<2>(w, x, out, r, c, epi),
                        (VNNI_VEX, _) => tile_vex::<1>(w, x, out, r, c, epi),
                        (VNNI_EVEX, 4) => tile_evex::<4>(w, x, out, r, c, epi),
                        (VNNI_EVEX, 3) => tile_evex::<3>(w, x, out, r, c, epi),
                        (VNNI_EVEX, 2) => tile_evex::<2>(w, x, out, r, c, epi),
                        (VNNI_EVEX, _) => tile_evex::<1>(w, x, out, r, c, epi),
                        (_, 4) => tile::<4>(w, x, out, r, c, epi),
                        (_, 3) => tile::<3>(w, x, out, r, c, epi),
                        (_, 2) => tile::<2>(w, x, out, r, c, epi),
                        (_, _) => tile::<1>(w, x, out, r, c, epi),
                    }
                }
                r += mr;
            }
            c += 16;
        }
    }

    /// AVX2: per group of 4 inputs, `vpmaddubsw` multiplies u8 activations by i8 weights and
    /// adds neighbouring pairs into i16 (no saturation: weights are 7-bit), `vpmaddwd` by ones
    /// adds those pairs into i32.
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const R: usize>(
        w: &PackedLinear,
        x: &QuantRows,
        out: *mut f32,
        r0: usize,
        c0: usize,
        epi: Epilogue,
    ) {
        unsafe { tile_body::<R, MADD>(w, x, out, r0, c0, epi) }
    }

    /// AVX-VNNI: `vpdpbusd` does the four u8 × i8 products and their sum into i32 in one
    /// instruction, without saturation (weights keep 8 bits).
    #[target_feature(enable = "avx2,fma,avxvnni")]
    unsafe fn tile_vex<const R: usize>(
        w: &PackedLinear,
        x: &QuantRows,
        out: *mut f32,
        r0: usize,
        c0: usize,
        epi: Epilogue,
    ) {
        unsafe { tile_body::<R, VNNI_VEX>(w, x, out, r0, c0, epi) }
    }

    /// The same with the EVEX encoding, on CPUs with AVX-512 VNNI and VL.
    #[target_feature(enable = "avx2,fma,avx512f,avx512vl,avx512vnni")]
    unsafe fn tile_evex<const R: usize>(
        w: &PackedLinear,
        x: &QuantRows,
        out: *mut f32,
        r0: usize,
        c0: usize,
        epi: Epilogue,
    ) {
        unsafe { tile_body::<R, VNNI_EVEX>(w, x, out, r0, c0, epi) }
    }

    /// Rows `r0..r0+R` × columns `c0..c0+16`: 2·R accumulators of 8 i32 lanes, the products
    /// done as `MODE` says; compiled into each wrapper with its features.
    #[inline(always)]
    unsafe fn tile_body<const R: usize, const MODE: u8>(
        w: &PackedLinear,
        x: &QuantRows,
        out: *mut f32,
        r0: usize,
        c0: usize,
        epi: Epilogue,
    ) {
        let groups = w.stride / 4;
        let block = groups * 32;
        unsafe {
            let b0 = w.w.as_ptr().add((c0 / 8) * block);
            let b1 = b0.add(block);
            let a = x.data.as_ptr().add(r0 * x.stride);
            let ones = _mm256_set1_epi16(1);
            let mut acc = [[_mm256_setzero_si256(); 2]; R];
            for g in 0..groups {
                let w0 = _mm256_loadu_si256(b0.add(g * 32) as *const __m256i);
                let w1 = _mm256_loadu_si256(b1.add(g * 32) as *const __m256i);
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm256_set1_epi32(
                        (a.add(i * x.stride + g * 4) as *const i32).read_unaligned(),
                    );
                    match MODE {
                        VNNI_VEX => {
                            row[0] = _mm256_dpbusd_avx_epi32(row[0], av, w0);
                            row[1] = _mm256_dpbusd_avx_epi32(row[1], av, w1);
                        }
                        VNNI_EVEX => {
                            row[0] = _mm256_dpbusd_epi32(row[0], av, w0);
                            row[1] = _mm256_dpbusd_epi32(row[1], av, w1);
                        }
                        _ => {
                            let p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, w0), ones);
                            let p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(av, w1), ones);
                            row[0] = _mm256_add_epi32(row[0], p0);
                            row[1] = _mm256_add_epi32(row[1], p1);
                        }
                    }
                }
            }
            for (h, col) in [c0, c0 + 8].into_iter().enumerate() {
                let off = _mm256_loadu_si256(w.offset.as_ptr().add(col) as *const __m256i);
                let ws = _mm256_loadu_ps(w.scale.as_ptr().add(col));
                let bias = _mm256_loadu_ps(w.bias.as_ptr().add(col));
                for (i, row) in acc.iter().enumerate() {
                    let v = _mm256_cvtepi32_ps(_mm256_sub_epi32(row[h], off));
                    let s = _mm256_mul_ps(ws, _mm256_set1_ps(x.scales[r0 + i]));
                    let y = _mm256_fmadd_ps(v, s, bias);
                    let dst = out.add((r0 + i) * w.n + col);
                    _mm256_storeu_ps(dst, y);
                    if epi != Epilogue::None {
                        let s = std::slice::from_raw_parts_mut(dst, 8);
                        for v in s {
                            *v = finish(*v, epi);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "aarch64")]
mod neon {
    use std::arch::aarch64::*;

    use super::{Epilogue, Kernel, PackedLinear, QuantRows, finish};

    const MR: usize = 4;

    /// # Safety
    /// NEON (and, for `NeonDot`, the dot-product extension) must be available; `out` holds
    /// `x.rows × w.n` floats; `cols` is a range of whole 32-column tiles within `0..w.n`.
    pub unsafe fn run(
        w: &PackedLinear,
        x: &QuantRows,
        out: *mut f32,
        cols: std::ops::Range<usize>,
        epi: Epilogue,
    ) {
        let dot = w.kernel == Kernel::NeonDot;
        let mut c = cols.start;
        while c < cols.end {
            let mut r = 0;
            while r < x.rows {
                let mr = (x.rows - r).min(MR);
                unsafe {
                    match (dot, mr) {
                        (true, 4) => tile_dot::<4>(w, x, out, r, c, epi),
                        (true, 3) => tile_dot::<3>(w, x, out, r, c, epi),
                        (true, 2) => tile_dot::<2>(w, x, out, r, c, epi),
                        (true, _) => tile_dot::<1>(w, x, out, r, c, epi),
                        (false, 4) => tile::<4>(w, x, out, r, c, epi),
                        (false, 3) => tile::<3>(w, x, out, r, c, epi),
                        (false, 2) => tile::<2>(w, x, out, r, c, epi),
                        (false, _) => tile::<1>(w, x, out, r, c, epi),
                    }
                }
                r += mr;
            }
            c += 16;
        }
    }

    /// `acc[i] += Σ₄ a[4i..4i+4] · b[4i..4i+4]` (`sdot`). Written as assembly: the
    /// `vdotq_s32` intrinsic is not stable in Rust yet.
    #[inline(always)]
    unsafe fn sdot(mut acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: only called from functions compiled with the dot-product extension, which
        // the caller checked at run time.
        unsafe {
            std::arch::asm!(
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack)
            );
        }
        acc
    }

    /// 4 bytes of a row (stored +128) as signed int8, repeated over a vector.
    #[inline(always)]
    unsafe fn activations(p: *const u8) -> int8x16_t {
        unsafe {
            let v = vreinterpretq_u8_u32(vld1q_dup_u32(p as *const u32));
            vreinterpretq_s8_u8(veorq_u8(v, vdupq_n_u8(0x80)))
        }
    }

    /// Rows `r0..r0+R` × columns `c0..c0+16` with `sdot`: each 16-byte weight vector holds 4
    /// inputs for 4 outputs; activations are signed, so no offset is removed.
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn tile_dot<const R: usize>(
        w: &PackedLinear,
        x: &QuantRows,
        out: *mut f32,
        r0: usize,
        c0: usize,
        epi: Epilogue,
    ) {
        unsafe { tile_body::<R, true>(w, x, out, r0, c0, epi) }
    }

    /// The same without the dot product.
    #[target_feature(enable = "neon")]
    unsafe fn tile<const R: usize>(
        w: &PackedLinear,
        x: &QuantRows,
        out: *mut f32,
        r0: usize,
        c0: usize,
        epi: Epilogue,
    ) {
        unsafe { tile_body::<R, false>(w, x, out, r0, c0, epi) }
    }

    /// The tile, compiled into each wrapper with its features. Without `DOT`: widening
    /// multiplies, then pairwise adds (two int8 products fit an i16).
    #[inline(always)]
    unsafe fn tile_body<const R: usize, const DOT: bool>(
        w: &PackedLinear,
        x: &QuantRows,
        out: *mut f32,
        r0: usize,
        c0: usize,
        epi: Epilogue,
    ) {
        let groups = w.stride / 4;
        let block = groups * 16;
        unsafe {
            let b = w.w.as_ptr().add((c0 / 4) * block);
            let a = x.data.as_ptr().add(r0 * x.stride);
            let mut acc = [[vdupq_n_s32(0); 4]; R];
            for g in 0..groups {
                let wv = [0, 1, 2, 3].map(|v| vld1q_s8(b.add(v * block + g * 16)));
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = activations(a.add(i * x.stride + g * 4));
                    for (acc, wv) in row.iter_mut().zip(&wv) {
                        *acc = if DOT {
                            sdot(*acc, av, *wv)
                        } else {
                            let lo = vmull_s8(vget_low_s8(av), vget_low_s8(*wv));
                            let hi = vmull_high_s8(av, *wv);
                            vpadalq_s16(*acc, vpaddq_s16(lo, hi))
                        };
                    }
                }
            }
            store(w, x, out, r0, c0, &acc, epi);
        }
    }

    #[inline(always)]
    unsafe fn store<const R: usize>(
        w: &PackedLinear,
        x: &QuantRows,
        out: *mut f32,
        r0: usize,
        c0: usize,
        acc: &[[int32x4_t; 4]; R],
        epi: Epilogue,
    ) {
        unsafe {
            for h in 0..4 {
                let col = c0 + 4 * h;
                let ws = vld1q_f32(w.scale.as_ptr().add(col));
                let bias = vld1q_f32(w.bias.as_ptr().add(col));
                for (i, row) in acc.iter().enumerate() {
                    let v = vcvtq_f32_s32(row[h]);
                    let s = vmulq_n_f32(ws, x.scales[r0 + i]);
                    let y = vfmaq_f32(bias, v, s);
                    let dst = out.add((r0 + i) * w.n + col);
                    vst1q_f32(dst, y);
                    if epi != Epilogue::None {
                        for v in std::slice::from_raw_parts_mut(dst, 4) {
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

    /// Every kernel this CPU runs, and the portable loop.
    fn kernels() -> Vec<Kernel> {
        [
            Kernel::Avx512Vnni,
            Kernel::AvxVnni,
            Kernel::Avx2,
            Kernel::NeonDot,
            Kernel::Neon,
            Kernel::Scalar,
        ]
        .into_iter()
        .filter(|k| k.supported())
        .collect()
    }

    #[test]
    fn int8_product_is_close_to_f32_for_every_row_count_and_kernel() {
        let (n, k) = (64, 72);
        let w = data(n * k, 1);
        let b = data(n, 2);
        for kernel in kernels() {
            let lin = PackedLinear::new(&w, &b, n, k, kernel);
            assert_eq!(lin.kernel(), kernel);
            for rows in [1, 3, 4, 5, 8, 13] {
                let x = data(rows * k, 3 + rows as u32);
                let mut q = QuantRows::new();
                q.quantize(&x, rows, k);
                let mut y = Vec::new();
                lin.forward(&q, &mut y, Epilogue::None, true);
                let want = reference(&x, &w, &b, rows, n, k);
                // The portable loop over the same packed weights: exact integer sums.
                let mut p = vec![0f32; rows * n];
                unsafe { portable(&lin, &q, p.as_mut_ptr(), 0..n, Epilogue::None) };
                for ((a, b), c) in y.iter().zip(&want).zip(&p) {
                    assert!(
                        (a - b).abs() < 0.08,
                        "{kernel:?} rows {rows}: int8 {a} vs f32 {b}"
                    );
                    assert!(
                        (a - c).abs() < 1e-4,
                        "{kernel:?} rows {rows}: kernel {a} vs portable {c}"
                    );
                }
            }
        }
    }

    #[test]
    fn extreme_values_do_not_saturate() {
        // Activations at the top of the u8 range against weights at the top of theirs: the
        // AVX2 pair sums would saturate an i16 with 8-bit weights.
        let (n, k) = (32, 64);
        let w: Vec<f32> = (0..n * k)
            .map(|i| if i % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let b = vec![0f32; n];
        let x: Vec<f32> = (0..2 * k)
            .map(|i| if i % 2 == 0 { 1.0 } else { -1.0 })
            .collect();
        let want = reference(&x, &w, &b, 2, n, k);
        for kernel in kernels() {
            let lin = PackedLinear::new(&w, &b, n, k, kernel);
            let mut q = QuantRows::new();
            q.quantize(&x, 2, k);
            let mut y = Vec::new();
            lin.forward(&q, &mut y, Epilogue::None, false);
            for (a, b) in y.iter().zip(&want) {
                assert!((a - b).abs() < 0.05, "{kernel:?}: {a} vs {b}");
            }
        }
    }

    #[test]
    fn odd_widths_run_the_portable_loop() {
        let lin = PackedLinear::new(&data(20 * 9, 8), &data(20, 9), 20, 9, Kernel::best());
        assert_eq!(lin.kernel(), Kernel::Scalar);
        let mut q = QuantRows::new();
        q.quantize(&data(9, 10), 1, 9);
        let mut y = Vec::new();
        lin.forward(&q, &mut y, Epilogue::None, true);
        assert_eq!(y.len(), 20);
    }

    #[test]
    fn a_forced_path_the_cpu_lacks_is_refused_by_name() {
        assert_eq!(Kernel::select(CpuPath::Scalar), Ok(Kernel::Scalar));
        assert_eq!(Kernel::select(CpuPath::Auto), Ok(Kernel::best()));
        for (path, kernel) in [
            (CpuPath::Avx512, Kernel::Avx512Vnni),
            (CpuPath::Avxvnni, Kernel::AvxVnni),
            (CpuPath::Avx2, Kernel::Avx2),
        ] {
            match Kernel::select(path) {
                Ok(k) => assert_eq!(k, kernel),
                Err(e) => {
                    assert!(!kernel.supported());
                    assert!(e.contains(path.as_str()), "{e}");
                }
            }
        }
    }

    #[test]
    fn gelu_epilogue_applies() {
        let (n, k) = (32, 8);
        let w = data(n * k, 5);
        let b = data(n, 6);
        for kernel in kernels() {
            let lin = PackedLinear::new(&w, &b, n, k, kernel);
            let x = data(2 * k, 7);
            let mut q = QuantRows::new();
            q.quantize(&x, 2, k);
            let (mut plain, mut act) = (Vec::new(), Vec::new());
            lin.forward(&q, &mut plain, Epilogue::None, false);
            lin.forward(&q, &mut act, Epilogue::Gelu, true);
            for (p, a) in plain.iter().zip(&act) {
                assert!((gelu_scalar(*p) - a).abs() < 1e-6, "{kernel:?}");
            }
        }
    }
}
