//! Training an intent head (linear, or one hidden GELU layer with dropout) with AdamW on plain
//! buffers: forward, backward and update written out for these two shapes.
//!
//! The heads are small (384 × 512 × ~30) and trained for thousands of steps of 64 rows, where a
//! general autograd spends most of its time outside the arithmetic (graph building, scalar libm
//! GELU, thread hand-offs): written out, a step is a few dot products and axpys per row, and
//! training the demo models takes seconds instead of minutes. Same maths as before: U(±1/√in)
//! initialisation in name order from the seeded generator, inverted dropout from the same
//! generator, mean cross-entropy, AdamW with decoupled weight decay, a linear warm-down.

use std::sync::atomic::{AtomicBool, Ordering};

use rand::Rng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::model::{Head, Layer};
use super::train::TrainOptions;
use crate::embed::ops::fast_exp;

const BETA1: f32 = 0.9;
const BETA2: f32 = 0.999;
const EPS: f32 = 1e-8;

/// A dense layer `[out][in]` (as `Linear` stores it) with its AdamW moments and gradients.
struct Dense {
    inputs: usize,
    outputs: usize,
    w: Vec<f32>,
    b: Vec<f32>,
    gw: Vec<f32>,
    gb: Vec<f32>,
    mw: Vec<f32>,
    vw: Vec<f32>,
    mb: Vec<f32>,
    vb: Vec<f32>,
}

impl Dense {
    /// U(-1/√in, 1/√in): the bias first, then the weight (name order: `layerN.bias` <
    /// `layerN.weight`).
    fn new(inputs: usize, outputs: usize, rng: &mut StdRng) -> Self {
        let bound = 1.0 / (inputs as f32).sqrt();
        let b: Vec<f32> = (0..outputs)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        let w: Vec<f32> = (0..inputs * outputs)
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        Self {
            inputs,
            outputs,
            gw: vec![0.0; w.len()],
            gb: vec![0.0; b.len()],
            mw: vec![0.0; w.len()],
            vw: vec![0.0; w.len()],
            mb: vec![0.0; b.len()],
            vb: vec![0.0; b.len()],
            w,
            b,
        }
    }

    /// `y[r] = W · x[r] + b` for each of `rows` rows. Weight rows outside, input rows inside:
    /// a weight row stays in L1 while the (small) batch streams past it, instead of the whole
    /// matrix being read once per input row.
    fn forward(&self, x: &[f32], rows: usize, y: &mut Vec<f32>) {
        y.clear();
        y.resize(rows * self.outputs, 0.0);
        for (j, (wj, b)) in self.w.chunks_exact(self.inputs).zip(&self.b).enumerate() {
            for (r, xr) in x.chunks_exact(self.inputs).enumerate() {
                y[r * self.outputs + j] = dot(xr, wj) + b;
            }
        }
    }

    /// Gradients for upstream `dy` (`rows × out`) and this layer's input `x`; with `dx`, also
    /// the gradient of the input.
    fn backward(&mut self, x: &[f32], dy: &[f32], dx: Option<&mut Vec<f32>>) {
        let rows = dy.len() / self.outputs;
        for (j, (gwj, gb)) in self
            .gw
            .chunks_exact_mut(self.inputs)
            .zip(self.gb.iter_mut())
            .enumerate()
        {
            gwj.iter_mut().for_each(|g| *g = 0.0);
            *gb = 0.0;
            for (r, xr) in x.chunks_exact(self.inputs).enumerate() {
                let d = dy[r * self.outputs + j];
                *gb += d;
                if d != 0.0 {
                    axpy(d, xr, gwj);
                }
            }
        }
        if let Some(dx) = dx {
            dx.clear();
            dx.resize(rows * self.inputs, 0.0);
            for (dxr, dyr) in dx
                .chunks_exact_mut(self.inputs)
                .zip(dy.chunks_exact(self.outputs))
            {
                for (wj, &d) in self.w.chunks_exact(self.inputs).zip(dyr) {
                    if d != 0.0 {
                        axpy(d, wj, dxr);
                    }
                }
            }
        }
    }

    fn step(&mut self, t: usize, lr: f32, weight_decay: f32) {
        let c1 = 1.0 - BETA1.powi(t as i32);
        let c2 = 1.0 - BETA2.powi(t as i32);
        let decay = 1.0 - lr * weight_decay;
        adamw(
            &mut self.w,
            &self.gw,
            &mut self.mw,
            &mut self.vw,
            c1,
            c2,
            lr,
            decay,
        );
        adamw(
            &mut self.b,
            &self.gb,
            &mut self.mb,
            &mut self.vb,
            c1,
            c2,
            lr,
            decay,
        );
    }

    /// As an intent model stores it: `[in, out]` row-major.
    fn layer(&self) -> Layer {
        let mut w = vec![0f32; self.w.len()];
        for (j, row) in self.w.chunks_exact(self.inputs).enumerate() {
            for (i, &v) in row.iter().enumerate() {
                w[i * self.outputs + j] = v;
            }
        }
        Layer {
            inputs: self.inputs,
            outputs: self.outputs,
            w,
            b: self.b.clone(),
        }
    }
}

/// `a · b`. Written with AVX2 intrinsics where the CPU has them: as a plain loop over lanes
/// the compiler leaves this reduction mostly scalar.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if crate::embed::ops::simd() >= crate::embed::ops::Simd::Avx2 {
        // SAFETY: AVX2 and FMA were detected at run time.
        return unsafe { dot_avx2(a, b) };
    }
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut i = 0;
    // SAFETY: every load reads 8 floats at i < n - 7 of both slices.
    unsafe {
        let mut acc = [_mm256_setzero_ps(); 4];
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let x = _mm256_loadu_ps(pa.add(i + 8 * k));
                let y = _mm256_loadu_ps(pb.add(i + 8 * k));
                *acc = _mm256_fmadd_ps(x, y, *acc);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i)),
                _mm256_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let s = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        let mut sum = _mm_cvtss_f32(s);
        while i < n {
            sum += a[i] * b[i];
            i += 1;
        }
        sum
    }
}

crate::multiversion! {
    /// `y += a · x`
    fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = a.mul_add(x, *y);
        }
    }
}

crate::multiversion! {
    #[allow(clippy::too_many_arguments)]
    fn adamw(
        theta: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32],
        c1: f32, c2: f32, lr: f32, decay: f32,
    ) {
        for (((t, &g), m), v) in theta.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
            *m = *m * BETA1 + g * (1.0 - BETA1);
            *v = *v * BETA2 + g * g * (1.0 - BETA2);
            let update = (*m / c1) / ((*v / c2).sqrt() + EPS);
            *t = *t * decay - update * lr;
        }
    }
}

const GELU_C: f32 = 0.797_884_6; // √(2/π)
const GELU_A: f32 = 0.044_715;

/// tanh through the vectorisable exp: 1 − 2 / (e^{2x} + 1).
#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (fast_exp(2.0 * x) + 1.0)
}

crate::multiversion! {
    /// GELU (tanh approximation, as the served model applies it), in place.
    fn gelu(z: &[f32], a: &mut [f32]) {
        for (a, &x) in a.iter_mut().zip(z) {
            *a = 0.5 * x * (1.0 + tanh(GELU_C * (x + GELU_A * x * x * x)));
        }
    }
}

crate::multiversion! {
    /// `d *= gelu'(z)`
    fn gelu_backward(z: &[f32], d: &mut [f32]) {
        for (d, &x) in d.iter_mut().zip(z) {
            let t = tanh(GELU_C * (x + GELU_A * x * x * x));
            let dt = GELU_C * (1.0 + 3.0 * GELU_A * x * x);
            *d *= 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dt;
        }
    }
}

/// Softmax cross-entropy of each row; turns `logits` into `(p − onehot) / rows`, the gradient
/// of the mean loss. Returns the summed loss.
fn cross_entropy_backward(logits: &mut [f32], ys: &[u32], classes: usize) -> f64 {
    let rows = ys.len() as f32;
    let mut loss = 0f64;
    for (row, &y) in logits.chunks_exact_mut(classes).zip(ys) {
        let max = row.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
        let mut sum = 0f32;
        for v in row.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        loss -= ((row[y as usize] / sum).max(f32::MIN_POSITIVE) as f64).ln();
        for v in row.iter_mut() {
            *v /= sum * rows;
        }
        row[y as usize] -= 1.0 / rows;
    }
    loss
}

struct Net {
    layers: Vec<Dense>,
    // Working buffers.
    z: Vec<f32>,
    a: Vec<f32>,
    mask: Vec<f32>,
    logits: Vec<f32>,
    dh: Vec<f32>,
}

impl Net {
    fn new(layers: Vec<Dense>) -> Self {
        Self {
            layers,
            z: Vec::new(),
            a: Vec::new(),
            mask: Vec::new(),
            logits: Vec::new(),
            dh: Vec::new(),
        }
    }

    /// Logits of `x` (`rows × d`) into `self.logits`; with `dropout`, a fresh mask from `rng`.
    fn forward(&mut self, x: &[f32], rows: usize, dropout: Option<(f32, &mut StdRng)>) {
        let Net {
            layers,
            z,
            a,
            mask,
            logits,
            ..
        } = self;
        match layers.as_slice() {
            [only] => only.forward(x, rows, logits),
            [hidden, out] => {
                hidden.forward(x, rows, z);
                a.resize(z.len(), 0.0);
                gelu(z, a);
                mask.clear();
                if let Some((p, rng)) = dropout {
                    let keep = 1.0 - p;
                    mask.extend((0..a.len()).map(|_| {
                        if rng.random::<f32>() < keep {
                            1.0 / keep
                        } else {
                            0.0
                        }
                    }));
                    a.iter_mut().zip(mask.iter()).for_each(|(a, m)| *a *= m);
                }
                out.forward(a, rows, logits);
            }
            _ => unreachable!("heads have one or two layers"),
        }
    }

    /// Backward from `self.logits` holding the loss gradient; `x` is the forward's input.
    fn backward(&mut self, x: &[f32]) {
        let Net {
            layers,
            z,
            a,
            mask,
            logits,
            dh,
        } = self;
        match layers.as_mut_slice() {
            [only] => only.backward(x, logits, None),
            [hidden, out] => {
                out.backward(a, logits, Some(dh));
                if !mask.is_empty() {
                    dh.iter_mut().zip(mask.iter()).for_each(|(d, m)| *d *= m);
                }
                gelu_backward(z, dh);
                hidden.backward(x, dh, None);
            }
            _ => unreachable!("heads have one or two layers"),
        }
    }

    fn step(&mut self, t: usize, lr: f32, weight_decay: f32) {
        for l in &mut self.layers {
            l.step(t, lr, weight_decay);
        }
    }

    /// Share of `ys` the argmax of the logits gets right.
    fn accuracy(&mut self, x: &[f32], ys: &[u32], classes: usize) -> f64 {
        self.forward(x, ys.len(), None);
        let right = self
            .logits
            .chunks_exact(classes)
            .zip(ys)
            .filter(|(row, y)| {
                let best = row
                    .iter()
                    .enumerate()
                    .fold(
                        (0, f32::NEG_INFINITY),
                        |b, (i, &v)| if v > b.1 { (i, v) } else { b },
                    );
                best.0 == **y as usize
            })
            .count();
        right as f64 / ys.len().max(1) as f64
    }
}

/// Trains `head` on standardised features `xs` (`n × d`) with labels `ys`, keeping the epoch
/// with the best dev accuracy (ties: the later), or, with `fixed_epochs = (stop, schedule)`,
/// training as long as `stop` epochs of a `schedule`-epoch warm-down and keeping the last.
/// Returns (dev accuracy, epoch kept, layers as `[in, out]`, the schedule's length in epochs).
#[allow(clippy::too_many_arguments)]
pub(super) fn train_head(
    head: Head,
    xs: &[f32],
    ys: &[u32],
    dev_set: Option<(&[f32], &[u32])>,
    d: usize,
    classes: usize,
    opts: &TrainOptions,
    fixed_epochs: Option<(usize, usize)>,
    stop: Option<&AtomicBool>,
) -> anyhow::Result<(f64, usize, Vec<Layer>, usize)> {
    use rand::SeedableRng;
    let n = ys.len();
    anyhow::ensure!(n > 0 && xs.len() == n * d, "no training rows");
    let mut rng = StdRng::seed_from_u64(opts.seed);
    let layers = match head {
        Head::Linear => vec![Dense::new(d, classes, &mut rng)],
        Head::Mlp => {
            let hidden = Dense::new(d, opts.hidden, &mut rng);
            let out = Dense::new(opts.hidden, classes, &mut rng);
            vec![hidden, out]
        }
    };
    let mut net = Net::new(layers);
    let mut order: Vec<u32> = (0..n as u32).collect();
    let steps_per_epoch = n.div_ceil(opts.batch_size);
    // Adam moves each weight by about the learning rate per step: small data sets get more
    // epochs so that every run takes at least MIN_STEPS steps.
    let schedule = match fixed_epochs {
        Some((_, schedule)) => schedule,
        None => opts
            .epochs
            .max(super::train::MIN_STEPS.div_ceil(steps_per_epoch)),
    };
    let epochs = fixed_epochs.map_or(schedule, |(stop_at, _)| stop_at.min(schedule));
    let total = (steps_per_epoch * schedule) as f64;
    let name = format!("{head:?}").to_lowercase();
    let bar = indicatif::ProgressBar::new(epochs as u64).with_style(
        indicatif::ProgressStyle::with_template("{msg} {bar:30} epoch {pos}/{len} (eta {eta})")
            .expect("template"),
    );
    bar.set_message(format!("training {name} head"));
    let dropout = (head == Head::Mlp && opts.dropout > 0.0).then_some(opts.dropout);
    let mut best: (f64, usize, Vec<Layer>) = (-1.0, 0, Vec::new());
    let mut step = 0usize;
    let (mut xb, mut yb) = (Vec::new(), Vec::new());
    for epoch in 1..=epochs {
        if stop.is_some_and(|s| s.load(Ordering::SeqCst)) {
            bar.abandon();
            anyhow::bail!("interrupted while training; nothing was written");
        }
        order.shuffle(&mut rng);
        let mut loss_sum = 0f64;
        for batch in order.chunks(opts.batch_size) {
            // Linear warm-down to zero over the whole run.
            let lr = opts.learning_rate * (1.0 - step as f64 / total);
            step += 1;
            xb.clear();
            yb.clear();
            for &i in batch {
                xb.extend_from_slice(&xs[i as usize * d..(i as usize + 1) * d]);
                yb.push(ys[i as usize]);
            }
            net.forward(&xb, batch.len(), dropout.map(|p| (p, &mut rng)));
            loss_sum += cross_entropy_backward(&mut net.logits, &yb, classes);
            net.backward(&xb);
            net.step(step, lr as f32, opts.weight_decay as f32);
        }
        let acc = match dev_set {
            Some((dx, dy)) => net.accuracy(dx, dy, classes),
            // Without dev rows the last epoch is the one kept.
            None => epoch as f64,
        };
        bar.set_message(if dev_set.is_some() {
            format!(
                "training {name} head: loss {:.4}, dev accuracy {acc:.4}",
                loss_sum / n as f64
            )
        } else {
            format!(
                "training {name} head on all rows: loss {:.4}",
                loss_sum / n as f64
            )
        });
        bar.inc(1);
        // Ties go to the later epoch (further down the learning-rate schedule).
        if acc >= best.0 {
            best = (acc, epoch, net.layers.iter().map(Dense::layer).collect());
        }
    }
    bar.finish_and_clear();
    Ok((best.0, best.1, best.2, schedule))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = StdRng::seed_from_u64(7);
        let (d, h, c, rows) = (6, 5, 3, 4);
        let mut net = Net::new(vec![Dense::new(d, h, &mut rng), Dense::new(h, c, &mut rng)]);
        let x: Vec<f32> = (0..rows * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        let y = vec![0u32, 2, 1, 2];
        let loss = |net: &mut Net| {
            net.forward(&x, rows, None);
            let mut l = net.logits.clone();
            cross_entropy_backward(&mut l, &y, c) / rows as f64
        };
        net.forward(&x, rows, None);
        cross_entropy_backward(&mut net.logits, &y, c);
        net.backward(&x);
        for layer in 0..2 {
            for i in [0, 3, 7] {
                let analytic = net.layers[layer].gw[i] as f64;
                let eps = 1e-2f32;
                net.layers[layer].w[i] += eps;
                let up = loss(&mut net);
                net.layers[layer].w[i] -= 2.0 * eps;
                let down = loss(&mut net);
                net.layers[layer].w[i] += eps;
                let numeric = (up - down) / (2.0 * eps as f64);
                assert!(
                    (analytic - numeric).abs() < 2e-3,
                    "layer {layer} w[{i}]: analytic {analytic}, numeric {numeric}"
                );
            }
        }
    }

    #[test]
    fn dot_matches_a_plain_sum_at_every_length() {
        for n in [0, 1, 7, 8, 9, 31, 32, 33, 100, 384] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let want: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - want).abs() < 1e-4, "n = {n}");
        }
    }

    #[test]
    fn fast_gelu_matches_the_served_one() {
        for i in -800..800 {
            let x = i as f32 / 100.0;
            let mut a = [0f32];
            gelu(&[x], &mut a);
            assert!((a[0] - super::super::model::gelu(x)).abs() < 1e-5, "{x}");
        }
    }
}
