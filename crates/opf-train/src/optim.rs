//! AdamW exactly as `transformers.AdamW` / OPF's `ChildTuningAdamW`, parameter groups, and
//! global-norm gradient clipping.
//!
//! The update follows `compress_tools/ChildTuningOptimizer.py:60-103` (OPF) and
//! `transformers/optimization.py` `AdamW.step` (v4.0):
//!
//! ```text
//! m ← β1·m + (1−β1)·g          v ← β2·v + (1−β2)·g²
//! step = lr·√(1−β2ᵗ)/(1−β1ᵗ)   p ← p − step·m/(√v + ε)      (ε outside the sqrt, on the raw v)
//! p ← p − lr·wd·p                                              (decoupled decay, after the update)
//! ```
//!
//! burn's own `AdamW` adds ε to the bias-corrected √v̂ and decays before the update, so it is not
//! used. Groups (`trainer_bert.py:666-683`): weights with decay, biases and LayerNorm without
//! decay, and MPO cores with their own learning rate (`mpo_lr`, bug 1 of spec §7 fixed: cores are
//! registered wherever they appear, matched by path).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamGroup};
use burn::optim::{
    AdaptiveMomentumState, GradientsParams, LearningRate, ModuleOptimizer, Optimizer,
};
use burn::tensor::{Device, Tensor};

/// Hyper-parameters of [`HfAdamW`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamWParams {
    /// β1 (default 0.9).
    pub beta_1: f64,
    /// β2 (default 0.999).
    pub beta_2: f64,
    /// ε, added to √v outside the bias correction (default 1e-8).
    pub epsilon: f64,
    /// Decoupled weight decay, applied after the update (default 0.0, as HF).
    pub weight_decay: f64,
}

impl Default for AdamWParams {
    fn default() -> Self {
        Self {
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-8,
            weight_decay: 0.0,
        }
    }
}

/// One parameter group's AdamW: the HF update rule, a weight decay and a learning-rate scale
/// relative to the scheduled rate (the MPO group uses `mpo_lr / lr`).
#[derive(Debug, Clone)]
pub struct HfAdamW {
    params: AdamWParams,
    lr_scale: f64,
}

impl HfAdamW {
    /// An optimizer for one group; `lr_scale` multiplies the scheduled learning rate.
    pub fn new(params: AdamWParams, lr_scale: f64) -> Self {
        Self { params, lr_scale }
    }
}

impl Optimizer for HfAdamW {
    type State<const D: usize> = AdaptiveMomentumState<D>;

    fn step<const D: usize>(
        &self,
        lr: LearningRate,
        tensor: Tensor<D>,
        grad: Tensor<D>,
        state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        let AdamWParams {
            beta_1,
            beta_2,
            epsilon,
            weight_decay,
        } = self.params;
        let lr = lr * self.lr_scale;
        let state = match state {
            Some(mut s) => {
                s.moment_1 = s.moment_1.mul_scalar(beta_1) + grad.clone().mul_scalar(1.0 - beta_1);
                s.moment_2 = s.moment_2.mul_scalar(beta_2) + grad.square().mul_scalar(1.0 - beta_2);
                s.time += 1;
                s
            }
            None => AdaptiveMomentumState::new(
                1,
                grad.clone().mul_scalar(1.0 - beta_1),
                grad.square().mul_scalar(1.0 - beta_2),
            ),
        };
        let t = state.time as i32;
        let step_size = lr * (1.0 - beta_2.powi(t)).sqrt() / (1.0 - beta_1.powi(t));
        let denom = state.moment_2.clone().sqrt().add_scalar(epsilon);
        let mut updated = tensor - state.moment_1.clone().div(denom).mul_scalar(step_size);
        if weight_decay > 0.0 {
            updated = updated.clone() - updated.mul_scalar(lr * weight_decay);
        }
        (updated, Some(state))
    }

    fn to_device<const D: usize>(mut state: Self::State<D>, device: &Device) -> Self::State<D> {
        state.moment_1 = state.moment_1.to_device(device);
        state.moment_2 = state.moment_2.to_device(device);
        state
    }
}

/// Path pattern of parameters that get no weight decay: biases and LayerNorm (burn's `gamma` /
/// `beta`), as `no_decay = ["bias", "LayerNorm.weight"]` in `trainer_bert.py:666`.
pub const NO_DECAY_PATTERN: &str = r"(bias|gamma|beta)$";

/// Path pattern of MPO cores (`MpoLinear::cores`).
pub const MPO_CORE_PATTERN: &str = r"(^|\.)cores(\.|$)";

/// Builds the three-group optimizer: decayed weights, undecayed biases/norms, and MPO cores with
/// learning rate `mpo_lr_scale × lr` and the weight decay of the first group.
pub fn build_optimizer(params: AdamWParams, mpo_lr_scale: f64) -> ModuleOptimizer {
    let no_decay = AdamWParams {
        weight_decay: 0.0,
        ..params
    };
    ModuleOptimizer::from(HfAdamW::new(params, 1.0))
        .with_group(
            ParamGroup::from_regex(NO_DECAY_PATTERN).expect("valid regex"),
            HfAdamW::new(no_decay, 1.0),
            None,
        )
        .with_group(
            ParamGroup::from_regex(MPO_CORE_PATTERN).expect("valid regex"),
            HfAdamW::new(params, mpo_lr_scale),
            None,
        )
}

/// Global L2 norm of all gradients of `module`, computed on the device with one host sync.
pub fn grad_global_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        total: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                let s = g.square().sum();
                self.total = Some(match self.total.take() {
                    Some(t) => t + s,
                    None => s,
                });
            }
        }
    }
    let mut v = SumSquares { grads, total: None };
    module.visit(&mut v);
    v.total
        .map(|t| t.into_scalar::<f64>().sqrt())
        .unwrap_or(0.0)
}

/// Scales every gradient of `module` by `factor` in place.
pub fn scale_grads<M: Module>(module: &M, grads: &mut GradientsParams, factor: f64) {
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads
                    .register::<D>(param.id, g.mul_scalar(self.factor));
            }
        }
    }
    module.visit(&mut Scale { grads, factor });
}

/// Clips gradients to a global L2 norm of `max_norm` (`torch.nn.utils.clip_grad_norm_`:
/// scale = max_norm / (total + 1e-6) when that is < 1) and returns the norm before clipping.
pub fn clip_grad_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let total = grad_global_norm(module, grads);
    let coef = max_norm / (total + 1e-6);
    if coef < 1.0 {
        scale_grads(module, grads, coef);
    }
    total
}

/// Collects `(path, shape)` of every float parameter: the names the optimizer groups match on.
pub fn param_paths<M: Module>(module: &M) -> Vec<(String, Vec<usize>)> {
    struct Paths {
        path: Vec<String>,
        out: Vec<(String, Vec<usize>)>,
    }
    impl ModuleMapper for Paths {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            self.out
                .push((self.path.join("."), param.lazy_shape().dims::<D>().to_vec()));
            param
        }
    }
    let mut p = Paths {
        path: Vec::new(),
        out: Vec::new(),
    };
    let _ = module.clone().map(&mut p);
    p.out
}
