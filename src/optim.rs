//! What kefu's two trainers (`embed::train`, `intent::finetune`) share: AdamW whose state goes
//! into checkpoints (so `--resume` continues exactly), the warm-up learning-rate schedule,
//! seeded initialisation and where a run keeps its checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use candle_nn::VarMap;
use rand::Rng;
use rand::rngs::StdRng;

const BETA1: f64 = 0.9;
const BETA2: f64 = 0.999;
const EPS: f64 = 1e-8;

/// AdamW (decoupled weight decay, 0.01 unless set; β = 0.9 / 0.999) over the variables of a
/// `VarMap`, with its moments and step count open to checkpoints (candle's AdamW keeps them
/// private).
pub struct AdamW {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: usize,
    weight_decay: f64,
}

impl AdamW {
    pub fn new(vm: &VarMap) -> candle_core::Result<Self> {
        let mut vars: Vec<(String, Var)> = vm
            .data()
            .lock()
            .expect("var map lock")
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        let m = vars
            .iter()
            .map(|(_, v)| v.as_tensor().zeros_like())
            .collect::<candle_core::Result<Vec<_>>>()?;
        let v = m.clone();
        Ok(Self {
            vars,
            m,
            v,
            t: 0,
            weight_decay: 0.01,
        })
    }

    pub fn with_weight_decay(mut self, weight_decay: f64) -> Self {
        self.weight_decay = weight_decay;
        self
    }

    /// One update with learning rate `lr`; variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore, lr: f64) -> candle_core::Result<()> {
        self.t += 1;
        let c1 = 1.0 - BETA1.powi(self.t as i32);
        let c2 = 1.0 - BETA2.powi(self.t as i32);
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let m = ((&self.m[i] * BETA1)? + (g * (1.0 - BETA1))?)?;
            let v = ((&self.v[i] * BETA2)? + (g.sqr()? * (1.0 - BETA2))?)?;
            let update = ((&m / c1)? / ((&v / c2)?.sqrt()? + EPS)?)?;
            let theta = ((var.as_tensor() * (1.0 - lr * self.weight_decay))? - (update * lr)?)?;
            var.set(&theta)?;
            self.m[i] = m;
            self.v[i] = v;
        }
        Ok(())
    }

    /// Updates done (also those before a restore).
    pub fn steps(&self) -> usize {
        self.t
    }

    /// The variables by name, in name order.
    pub fn vars(&self) -> &[(String, Var)] {
        &self.vars
    }

    /// The state to checkpoint: weights under their own names, moments under `adam.m.<name>`
    /// and `adam.v.<name>`. The step count is the caller's to keep (see [`AdamW::restore`]).
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (k, var)) in self.vars.iter().enumerate() {
            out.insert(k.clone(), var.as_tensor().clone());
            out.insert(format!("adam.m.{k}"), self.m[i].clone());
            out.insert(format!("adam.v.{k}"), self.v[i].clone());
        }
        out
    }

    /// Sets weights and moments from `saved` (as [`AdamW::tensors`] wrote them, possibly
    /// with other tensors beside) and the step count to `steps`.
    pub fn restore(&mut self, saved: &HashMap<String, Tensor>, steps: usize) -> anyhow::Result<()> {
        for (i, (k, var)) in self.vars.iter().enumerate() {
            let get = |n: &str| {
                saved
                    .get(n)
                    .with_context(|| format!("the checkpoint has no tensor {n}"))
            };
            var.set(get(k)?)?;
            self.m[i] = get(&format!("adam.m.{k}"))?.clone();
            self.v[i] = get(&format!("adam.v.{k}"))?.clone();
        }
        self.t = steps;
        Ok(())
    }
}

/// Learning-rate factor per step: rising linearly over the warm-up steps, then falling
/// linearly to 0 at the last step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    warmup: usize,
    total: usize,
}

impl Schedule {
    /// `warmup` steps (at least 1) of `total`.
    pub fn new(total: usize, warmup: usize) -> Self {
        Self {
            warmup: warmup.max(1),
            total,
        }
    }

    pub fn scale(&self, step: usize) -> f64 {
        if step < self.warmup {
            (step + 1) as f64 / self.warmup as f64
        } else {
            self.total.saturating_sub(step) as f64
                / (self.total.saturating_sub(self.warmup)).max(1) as f64
        }
    }
}

/// Sets the variables of `vm` that `pick` names (weights `[out, in]`, biases) to
/// U(-1/√in, 1/√in), in name order, from `rng` (candle's own initialisation cannot be seeded on
/// the CPU).
pub fn seeded_init(
    vm: &VarMap,
    rng: &mut StdRng,
    pick: impl Fn(&str) -> bool,
) -> candle_core::Result<()> {
    let data = vm.data().lock().expect("var map lock");
    let mut names: Vec<&String> = data.keys().filter(|k| pick(k)).collect();
    names.sort();
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        // A bias's fan-in is its weight's: the sibling weight's second dimension.
        let fan_in = if dims.len() == 2 {
            dims[1]
        } else {
            let w = name.replace(".bias", ".weight");
            data.get(&w).map_or(dims[0], |w| w.dims()[1])
        };
        let bound = 1.0 / (fan_in as f32).sqrt();
        let vals: Vec<f32> = (0..var.elem_count())
            .map(|_| rng.random_range(-bound..bound))
            .collect();
        var.set(&Tensor::from_vec(vals, dims, &Device::Cpu)?)?;
    }
    Ok(())
}

/// Where a run that writes `out` keeps its checkpoint: `<out>.checkpoint/`.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".checkpoint");
    out.with_file_name(name)
}

/// Writes `tensors` to `path` through a temporary file, so a crash leaves the old file whole.
pub fn save_tensors(tensors: &HashMap<String, Tensor>, path: &Path) -> anyhow::Result<()> {
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    candle_core::safetensors::save(tensors, &tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::DType;
    use candle_nn::{Module, VarBuilder};
    use rand::SeedableRng;

    /// A linear map 3 → 2 with seeded weights, and the loss of a fixed batch through it.
    fn model() -> (VarMap, candle_nn::Linear) {
        let vm = VarMap::new();
        let lin = candle_nn::linear(
            3,
            2,
            VarBuilder::from_varmap(&vm, DType::F32, &Device::Cpu).pp("head"),
        )
        .unwrap();
        seeded_init(&vm, &mut StdRng::seed_from_u64(5), |_| true).unwrap();
        (vm, lin)
    }

    fn grads(lin: &candle_nn::Linear, k: usize) -> GradStore {
        let x = Tensor::new(&[[1f32, -2.0, 0.5], [0.3, 0.1, k as f32]], &Device::Cpu).unwrap();
        let y = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
        candle_nn::loss::cross_entropy(&lin.forward(&x).unwrap(), &y)
            .unwrap()
            .backward()
            .unwrap()
    }

    fn values(vm: &VarMap) -> Vec<Vec<f32>> {
        let mut vars: Vec<(String, Var)> = vm.data().lock().unwrap().clone().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        vars.iter()
            .map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1().unwrap())
            .collect()
    }

    #[test]
    fn state_survives_a_checkpoint_and_the_run_continues_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.safetensors");
        let (vm, lin) = model();
        let mut opt = AdamW::new(&vm).unwrap();
        for k in 0..3 {
            opt.step(&grads(&lin, k), 0.1).unwrap();
        }
        save_tensors(&opt.tensors(), &path).unwrap();
        let saved = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
        assert!(saved.contains_key("adam.m.head.weight") && saved.contains_key("adam.v.head.bias"));

        // A fresh model (other weights) restored from the file, then both take the same steps.
        let (vm2, lin2) = model();
        seeded_init(&vm2, &mut StdRng::seed_from_u64(6), |_| true).unwrap();
        let mut resumed = AdamW::new(&vm2).unwrap();
        resumed.restore(&saved, opt.steps()).unwrap();
        assert_eq!(resumed.steps(), 3);
        assert_eq!(values(&vm2), values(&vm));
        for k in 3..5 {
            opt.step(&grads(&lin, k), 0.1).unwrap();
            resumed.step(&grads(&lin2, k), 0.1).unwrap();
        }
        assert_eq!(values(&vm2), values(&vm), "moments and step count restored");

        // Without the moments the same steps go elsewhere: the test can tell.
        let (vm3, lin3) = model();
        let mut fresh = AdamW::new(&vm3).unwrap();
        let weights: HashMap<String, Tensor> = saved
            .iter()
            .filter(|(k, _)| !k.starts_with("adam."))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (k, var) in fresh.vars() {
            var.set(&weights[k]).unwrap();
        }
        for k in 3..5 {
            fresh.step(&grads(&lin3, k), 0.1).unwrap();
        }
        assert_ne!(values(&vm3), values(&vm));

        let err = AdamW::new(&vm3).unwrap().restore(&weights, 3).unwrap_err();
        assert!(err.to_string().contains("adam.m.head.bias"), "{err}");
    }

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let s = Schedule::new(10, 2);
        let got: Vec<f64> = (0..10).map(|i| s.scale(i)).collect();
        assert_eq!(got[..3], [0.5, 1.0, 1.0]);
        assert_eq!(got[9], 0.125);
        assert_eq!(
            Schedule::new(4, 0).scale(0),
            1.0,
            "at least one warm-up step"
        );
    }

    #[test]
    fn seeded_init_is_reproducible_and_picks_by_name() {
        let (a, _) = model();
        let (b, _) = model();
        assert_eq!(values(&a), values(&b));
        let bound = 1.0 / 3f32.sqrt();
        assert!(values(&a).concat().iter().all(|x| x.abs() <= bound));
        let before = values(&a);
        seeded_init(&a, &mut StdRng::seed_from_u64(9), |k| k.ends_with(".bias")).unwrap();
        let after = values(&a);
        assert_ne!(after[0], before[0], "head.bias changed");
        assert_eq!(after[1], before[1], "head.weight kept");
    }
}
