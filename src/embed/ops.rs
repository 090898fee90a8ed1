//! Element-wise kernels candle runs with scalar libm calls on CPU, written here so the compiler
//! vectorises them: on a 12-layer encoder GELU alone is ~20M erf evaluations per 1k tokens.

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};

/// erf(x) as a rational function on [-4, 4] (outside it erf is ±1 in f32); max error ~1e-7.
/// Coefficients from Eigen's `generic_fast_erf_float`.
#[inline(always)]
pub fn fast_erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = x2.mul_add(-2.726_142_3e-10, 2.770_681_4e-8);
    p = x2.mul_add(p, -2.101_024e-6);
    p = x2.mul_add(p, -5.692_506_4e-5);
    p = x2.mul_add(p, -7.349_906_3e-4);
    p = x2.mul_add(p, -2.954_6e-3);
    p = x2.mul_add(p, -1.609_603_3e-2);
    p *= x;
    let mut q = x2.mul_add(-1.456_607_2e-5, -2.133_740_6e-4);
    q = x2.mul_add(q, -1.682_827e-3);
    q = x2.mul_add(q, -7.373_329e-3);
    q = x2.mul_add(q, -1.426_474e-2);
    p / q
}

/// e^x for x ≤ 88 without libm, so that loops over it vectorise: x = n·ln 2 + r, a degree-6
/// polynomial for e^r, 2^n from the exponent bits. Relative error ~1e-7; underflows to ~0 below
/// −87.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2²³: adding and subtracting it rounds to an integer
    let x = x.clamp(-87.0, 88.0);
    let n = (x * std::f32::consts::LOG2_E + ROUND) - ROUND;
    let r = x - n * 0.693_145_75 - n * 1.428_606_8e-6;
    let mut p = r.mul_add(1.0 / 720.0, 1.0 / 120.0);
    p = r.mul_add(p, 1.0 / 24.0);
    p = r.mul_add(p, 1.0 / 6.0);
    p = r.mul_add(p, 0.5);
    p = r.mul_add(p, 1.0);
    p = r.mul_add(p, 1.0);
    // SAFETY: n is an integer in [-126, 127] after the clamp.
    let e: i32 = unsafe { n.to_int_unchecked() };
    p * f32::from_bits(((e + 127) << 23) as u32)
}

/// Exact-form GELU of one value.
#[inline(always)]
pub fn gelu_scalar(x: f32) -> f32 {
    0.5 * x * (1.0 + fast_erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "kefu-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            candle_core::bail!("gelu: only f32 is supported");
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("gelu: input must be contiguous");
        };
        let out: Vec<f32> = data[start..end].iter().map(|&x| gelu_scalar(x)).collect();
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// Exact-form GELU, `0.5·x·(1 + erf(x/√2))`, with the vectorisable erf above.
pub fn gelu(xs: &Tensor) -> Result<Tensor> {
    let xs = xs.contiguous()?;
    xs.apply_op1_no_bwd(&GeluErf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference erf from its Taylor series (converges fast for |x| <= 4 in f64).
    fn erf_ref(x: f64) -> f64 {
        if x.abs() > 5.0 {
            return x.signum();
        }
        let (mut term, mut sum, mut n) = (x, x, 0.0);
        while term.abs() > 1e-17 {
            n += 1.0;
            term *= -x * x / n;
            sum += term / (2.0 * n + 1.0);
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn fast_erf_is_accurate() {
        let mut worst = 0f64;
        for i in -6000..=6000 {
            let x = i as f32 / 1000.0;
            let err = (fast_erf(x) as f64 - erf_ref(x as f64)).abs();
            worst = worst.max(err);
        }
        assert!(worst < 2e-6, "max erf error {worst}");
    }

    #[test]
    fn fast_exp_is_accurate() {
        for i in -8700..=8800 {
            let x = i as f32 / 100.0;
            let (got, want) = (fast_exp(x) as f64, (x as f64).exp());
            assert!(
                ((got - want) / want).abs() < 1e-6,
                "exp({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn gelu_matches_candle() {
        let dev = candle_core::Device::Cpu;
        let xs = Tensor::arange(-500f32, 500., &dev)
            .unwrap()
            .affine(0.01, 0.)
            .unwrap();
        let ours = gelu(&xs).unwrap().to_vec1::<f32>().unwrap();
        let theirs = xs.gelu_erf().unwrap().to_vec1::<f32>().unwrap();
        for (a, b) in ours.iter().zip(&theirs) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
    }
}

/// Reductions written with 16 independent lanes so that they vectorise (a plain `iter().sum()`
/// over f32 is a serial chain of dependent adds).
pub mod reduce {
    const L: usize = 16;

    #[inline]
    pub fn sum(x: &[f32]) -> f32 {
        let mut acc = [0f32; L];
        let chunks = x.chunks_exact(L);
        let tail = chunks.remainder();
        for c in chunks {
            for i in 0..L {
                acc[i] += c[i];
            }
        }
        acc.iter().sum::<f32>() + tail.iter().sum::<f32>()
    }

    /// Σ (x − mean)²
    #[inline]
    pub fn sq_dev(x: &[f32], mean: f32) -> f32 {
        let mut acc = [0f32; L];
        let chunks = x.chunks_exact(L);
        let tail = chunks.remainder();
        for c in chunks {
            for i in 0..L {
                let d = c[i] - mean;
                acc[i] += d * d;
            }
        }
        acc.iter().sum::<f32>() + tail.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>()
    }

    #[inline]
    pub fn max_abs(x: &[f32]) -> f32 {
        let mut acc = [0f32; L];
        let chunks = x.chunks_exact(L);
        let tail = chunks.remainder();
        for c in chunks {
            for i in 0..L {
                let a = c[i].abs();
                acc[i] = if a > acc[i] { a } else { acc[i] };
            }
        }
        let m = acc.iter().fold(0f32, |m, &v| if v > m { v } else { m });
        tail.iter()
            .fold(m, |m, v| if v.abs() > m { v.abs() } else { m })
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn reductions_match_plain_loops() {
            let x: Vec<f32> = (0..37)
                .map(|i| ((i * 7919) % 101) as f32 / 10.0 - 5.0)
                .collect();
            let plain_sum: f32 = x.iter().sum();
            assert!((super::sum(&x) - plain_sum).abs() < 1e-4);
            let mean = plain_sum / x.len() as f32;
            let plain_dev: f32 = x.iter().map(|v| (v - mean) * (v - mean)).sum();
            assert!((super::sq_dev(&x, mean) - plain_dev).abs() < 1e-3);
            let plain_max = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(super::max_abs(&x), plain_max);
            assert_eq!(super::max_abs(&[]), 0.0);
        }
    }
}

/// Vector widths the element-wise code is compiled for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Simd {
    Base = 0,
    Avx2 = 1,
    Avx512 = 2,
}

static SIMD_CAP: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(Simd::Avx512 as u8);

/// Caps the level [`simd`] returns (a forced `embed.cpu` path). Process-wide.
pub fn set_simd_cap(cap: Simd) {
    SIMD_CAP.store(cap as u8, std::sync::atomic::Ordering::Relaxed);
}

/// The widest level the CPU has (checked once), within the cap.
pub fn simd() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        static DETECTED: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
        let detected = *DETECTED.get_or_init(|| {
            if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vl")
            {
                Simd::Avx512
            } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                Simd::Avx2
            } else {
                Simd::Base
            }
        });
        let cap = match SIMD_CAP.load(std::sync::atomic::Ordering::Relaxed) {
            0 => Simd::Base,
            1 => Simd::Avx2,
            _ => Simd::Avx512,
        };
        detected.min(cap)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Simd::Base
    }
}

/// Defines `pub fn $name` that runs `$body` compiled for AVX-512 or AVX2 (with FMA) when the
/// CPU has it and for the baseline target otherwise. The crate is built for baseline x86-64
/// (SSE2), so plain loops only use wide vectors inside such a wrapper. On aarch64 the baseline
/// already has NEON.
#[macro_export]
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? { body($($arg),*) }
                match $crate::embed::ops::simd() {
                    // SAFETY: the features were detected at run time.
                    $crate::embed::ops::Simd::Avx512 => return unsafe { wide($($arg),*) },
                    $crate::embed::ops::Simd::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::embed::ops::Simd::Base => {}
                }
            }
            body($($arg),*)
        }
    };
}
