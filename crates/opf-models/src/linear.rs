//! [`ProjLinear`]: the type of every addressable projection (Q, K, V, attention output, FFN_1,
//! FFN_2) of a model, and the OPF operations shared by the models that address them by path
//! ([`MpoReplacement`]; `over_parameterize`, `merge_mpo`, `set_linear` on each model).
//!
//! Each projection is `y = x W + b` with `W` stored `(in, out)` as burn's [`Linear`] does, the
//! transpose of PyTorch's `nn.Linear.weight` `(out, in)`. Accessors give both orientations so that
//! code following Hugging Face or the OPF paper (which decomposes the `(out, in)` matrix) never
//! transposes by hand.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use burn::module::{Initializer, Module, Param, ParamId};
use burn::nn::Linear;
use burn::prelude::*;
use mpo_core::{DecomposeOptions, MpoShape, Orientation};

use crate::checkpoint::param_paths;
use crate::error::ModelError;
use crate::mpo_linear::{CoreTraining, MpoLinear};
use crate::precision;

/// Configuration of a freshly initialised dense [`ProjLinear`], initialised as Hugging Face's
/// `BertPreTrainedModel._init_weights` does for `nn.Linear`.
#[derive(Config, Debug)]
pub struct ProjLinearConfig {
    /// Input features.
    pub d_input: usize,
    /// Output features.
    pub d_output: usize,
    /// Standard deviation of the normal weight initialisation. Default: 0.02 (BERT's
    /// `initializer_range`).
    #[config(default = 0.02)]
    pub initializer_range: f64,
    /// Whether the projection has a bias (T5's have none). Default: true.
    #[config(default = true)]
    pub bias: bool,
}

impl ProjLinearConfig {
    /// A dense projection with `W ~ N(0, initializer_range²)` and `b = 0` (if any).
    pub fn init(&self, device: &Device) -> ProjLinear {
        let mut linear = init_dense(self.d_input, self.d_output, self.initializer_range, device);
        if !self.bias {
            linear.bias = None;
        }
        ProjLinear::Dense(linear)
    }
}

/// A burn [`Linear`] initialised as Hugging Face BERT initialises `nn.Linear`: weight normal with
/// standard deviation `std`, bias zero (burn's `LinearConfig` uses one initialiser for both).
pub(crate) fn init_dense(d_input: usize, d_output: usize, std: f64, device: &Device) -> Linear {
    Linear {
        weight: Initializer::Normal { mean: 0.0, std }.init([d_input, d_output], device),
        bias: Some(Initializer::Zeros.init([d_output], device)),
    }
}

/// A burn [`Linear`] holding a Hugging Face `(out, in)` weight and its bias as trainable
/// parameters.
///
/// # Panics
///
/// Panics if the bias length differs from the weight's first axis.
pub(crate) fn dense_from_hf(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Linear {
    let [d_output, _] = weight.dims();
    if let Some(bias) = &bias {
        assert_shape!(bias, [d_output]);
    }
    Linear {
        weight: Param::from_tensor(weight.transpose()),
        bias: bias.map(Param::from_tensor),
    }
}

/// One projection of a BERT layer: dense, or over-parameterized as MPO cores (OPF).
///
/// Code outside this crate should go through the methods, which hold for every variant.
#[derive(Module, Debug)]
pub enum ProjLinear {
    /// A dense burn [`Linear`]; weight `[d_input, d_output]`.
    Dense(Linear),
    /// MPO cores whose contraction is the `(out, in)` weight.
    Mpo(MpoLinear),
}

impl ProjLinear {
    /// A dense projection from a Hugging Face `(out, in)` weight and its bias.
    ///
    /// The tensors become trainable parameters on their own device.
    ///
    /// # Shapes
    ///
    /// - weight: `[d_output, d_input]`
    /// - bias: `[d_output]`
    ///
    /// # Panics
    ///
    /// Panics if the bias length differs from `d_output`.
    pub fn from_hf(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        ProjLinear::Dense(dense_from_hf(weight, bias))
    }

    /// Applies `y = x W + b`.
    ///
    /// # Shapes
    ///
    /// - input: `[..., d_input]`
    /// - output: `[..., d_output]`
    ///
    /// # Panics
    ///
    /// Panics if the last axis of `input` is not `d_input`.
    ///
    /// Under a half-precision [`crate::Autocast`] guard the product `x W` runs in that precision
    /// (an MPO weight is still contracted in f32 first); the bias is added in f32.
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        match self {
            ProjLinear::Dense(linear) => precision::linear(
                input,
                linear.weight.val(),
                linear.bias.as_ref().map(Param::val),
            ),
            ProjLinear::Mpo(mpo) => mpo.forward(input),
        }
    }

    /// Input features.
    pub fn d_input(&self) -> usize {
        self.dims_in_out()[0]
    }

    /// Output features.
    pub fn d_output(&self) -> usize {
        self.dims_in_out()[1]
    }

    fn dims_in_out(&self) -> [usize; 2] {
        match self {
            ProjLinear::Dense(linear) => linear.weight.lazy_shape().dims(),
            ProjLinear::Mpo(mpo) => {
                let (d_out, d_in) = mpo.dims();
                [d_in, d_out]
            }
        }
    }

    /// The weight in burn orientation, `[d_input, d_output]` (`y = x W`).
    pub fn weight_in_out(&self) -> Tensor<2> {
        match self {
            ProjLinear::Dense(linear) => linear.weight.val(),
            ProjLinear::Mpo(mpo) => mpo.weight().transpose(),
        }
    }

    /// The weight in Hugging Face / PyTorch orientation, `[d_output, d_input]` (`y = x Wᵀ`).
    pub fn weight_out_in(&self) -> Tensor<2> {
        self.weight_in_out().transpose()
    }

    /// The bias, `[d_output]`, if any.
    pub fn bias(&self) -> Option<Tensor<1>> {
        match self {
            ProjLinear::Dense(linear) => linear.bias.as_ref().map(Param::val),
            ProjLinear::Mpo(mpo) => mpo.bias.as_ref().map(Param::val),
        }
    }

    /// Parameters of the weight as trained: `in·out` dense, the core sizes for MPO.
    pub fn weight_params(&self) -> usize {
        match self {
            ProjLinear::Dense(_) => self.d_input() * self.d_output(),
            ProjLinear::Mpo(mpo) => mpo.core_params(),
        }
    }

    /// Whether the projection is MPO-factored.
    pub fn is_mpo(&self) -> bool {
        matches!(self, ProjLinear::Mpo(_))
    }

    /// Replaces a dense projection by MPO cores of its current weight (OPF spec §2.3): the
    /// `(out, in)` weight is decomposed exactly in f64 on the host with `shape` (row factors split
    /// `out`), the cores are stored in f32 on the weight's device and train as `training` says,
    /// and the bias parameter is reused. An MPO projection is returned unchanged.
    ///
    /// # Errors
    ///
    /// [`ModelError::Mpo`] if `shape` does not factorise `(out, in)`.
    pub fn over_parameterize(
        self,
        shape: &MpoShape,
        training: CoreTraining,
    ) -> Result<ProjLinear, ModelError> {
        let ProjLinear::Dense(linear) = self else {
            return Ok(self);
        };
        let weight = linear.weight.val();
        let device = weight.device();
        let data: Vec<f32> = weight
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .expect("f32 weight");
        let mpo = mpo_core::decompose_weight(
            &data,
            Orientation::InOut,
            shape,
            &DecomposeOptions::default(),
        )?;
        Ok(ProjLinear::Mpo(MpoLinear::from_mpo(
            &mpo,
            linear.bias,
            training,
            &device,
        )))
    }

    /// Contracts MPO cores back into a dense projection (spec §2.5); dense stays dense.
    pub fn merge(self) -> ProjLinear {
        match self {
            ProjLinear::Mpo(mpo) => ProjLinear::Dense(mpo.merge()),
            dense => dense,
        }
    }
}

/// One projection replaced by MPO cores. `P` is the model's path type ([`crate::LinearPath`]
/// for BERT, [`crate::BartLinearPath`] for BART, [`crate::T5LinearPath`] for T5).
#[derive(Debug, Clone, PartialEq)]
pub struct MpoReplacement<P = crate::LinearPath> {
    /// Where.
    pub path: P,
    /// The MPO shape (row factors split out_features).
    pub shape: mpo_core::MpoShape,
    /// Parameters in the cores (the dense weight had `shape.dense_params()`).
    pub params: usize,
}

/// A model whose projections are [`ProjLinear`]s addressed by a path type; the models' public
/// `linear_paths` / `set_linear` / `over_parameterize` / `merge_mpo` / `mpo_paths` delegate to
/// the functions below.
pub(crate) trait LinearSlots {
    /// The address of one projection.
    type Path: Copy + Eq + fmt::Display;
    /// Every path, in `named_parameters()` order.
    fn slot_paths(&self) -> Vec<Self::Path>;
    /// The projection at `path` (panics on a path outside the model).
    fn slot(&self, path: Self::Path) -> &ProjLinear;
    /// The projection at `path`, mutably (panics on a path outside the model).
    fn slot_mut(&mut self, path: Self::Path) -> &mut ProjLinear;
}

/// Replaces the projection at `path` by `linear` if their `(out, in)` shapes agree, returning the
/// old one; otherwise [`ModelError::ShapeMismatch`] named by the path, model unchanged.
pub(crate) fn set_linear<M: LinearSlots>(
    model: &mut M,
    path: M::Path,
    linear: ProjLinear,
) -> Result<ProjLinear, ModelError> {
    let slot = model.slot_mut(path);
    let expected = [slot.d_output(), slot.d_input()];
    let found = [linear.d_output(), linear.d_input()];
    if expected != found {
        return Err(ModelError::ShapeMismatch {
            name: path.to_string(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        });
    }
    Ok(std::mem::replace(slot, linear))
}

/// Over-parameterizes the dense projections at `paths` with `preset`'s shapes (OPF, spec §2.3),
/// checking every shape before changing anything; already factored and repeated paths are
/// skipped. One [`MpoReplacement`] per newly factored path.
pub(crate) fn over_parameterize<M: LinearSlots>(
    model: &mut M,
    paths: &[M::Path],
    preset: &mpo_core::Preset,
    training: CoreTraining,
) -> Result<Vec<MpoReplacement<M::Path>>, ModelError> {
    let mut todo = Vec::new();
    for &path in paths {
        let proj = model.slot(path);
        if proj.is_mpo() || todo.iter().any(|(p, _)| *p == path) {
            continue;
        }
        todo.push((path, preset.shape(proj.d_output(), proj.d_input())?));
    }
    let mut done = Vec::with_capacity(todo.len());
    for (path, shape) in todo {
        let mpo = model
            .slot(path)
            .clone()
            .over_parameterize(&shape, training)?;
        let params = mpo.weight_params();
        set_linear(model, path, mpo)?;
        done.push(MpoReplacement {
            path,
            shape,
            params,
        });
    }
    Ok(done)
}

/// Contracts every MPO projection back into a dense one (spec §2.5).
pub(crate) fn merge_mpo<M: LinearSlots>(model: &mut M) {
    for path in mpo_paths(model) {
        let slot = model.slot_mut(path);
        *slot = slot.clone().merge();
    }
}

/// Paths of the MPO-factored projections, in [`LinearSlots::slot_paths`] order.
pub(crate) fn mpo_paths<M: LinearSlots>(model: &M) -> Vec<M::Path> {
    model
        .slot_paths()
        .into_iter()
        .filter(|p| model.slot(*p).is_mpo())
        .collect()
}

/// Loads a training checkpoint written by burn's `save_file` (a run's `checkpoint/best.bpk`) into
/// a model built by `new`: the number of labels is read from the stored shape of the head weight
/// `head` names (`[_, num_labels]`) and passed to `new`, then [`load_record_into`] reads it.
///
/// # Errors
///
/// [`ModelError::Record`] if the file is unreadable or does not fit the model (another config,
/// a checkpoint of another architecture).
pub(crate) fn load_record<M: Module, S: LinearSlots>(
    path: &Path,
    new: impl Fn(Option<usize>) -> M,
    head: impl Fn(&M) -> ParamId,
    slots: impl Fn(&mut M) -> &mut S,
    device: &Device,
) -> Result<M, ModelError> {
    let shapes = crate::checkpoint::record_shapes(path)?;
    let probe = new(None);
    let names = param_paths(&probe);
    let head_name = &names[&head(&probe)];
    let num_labels = match shapes.get(head_name).map(Vec::as_slice) {
        Some(&[_, n]) => n,
        other => {
            return Err(ModelError::Record {
                path: path.to_path_buf(),
                message: format!("{head_name} has shape {other:?}"),
            });
        }
    };
    let model = adopt_mpo_layout(new(Some(num_labels)), path, &shapes, slots, device)?;
    try_load(model, path)
}

/// Reads a burn record into `model` after [`with_record_layout`]: every dense projection of
/// `slots` that the record stores as MPO cores (`<name>.Mpo.cores.<k>`) is first rebuilt as an
/// [`MpoLinear`] of the stored core shapes, so over-parameterized runs load as they were trained.
///
/// # Errors
///
/// [`ModelError::Record`] if the file is unreadable or does not fit the model.
pub(crate) fn load_record_into<M: Module, S: LinearSlots>(
    path: &Path,
    model: M,
    slots: impl Fn(&mut M) -> &mut S,
    device: &Device,
) -> Result<M, ModelError> {
    try_load(with_record_layout(model, path, slots, device)?, path)
}

fn try_load<M: Module>(model: M, path: &Path) -> Result<M, ModelError> {
    model.try_load_file(path).map_err(|e| ModelError::Record {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// [`adopt_mpo_layout`] with the shapes read from the record file at `path`.
pub(crate) fn with_record_layout<M: Module, S: LinearSlots>(
    model: M,
    path: &Path,
    slots: impl Fn(&mut M) -> &mut S,
    device: &Device,
) -> Result<M, ModelError> {
    let shapes = crate::checkpoint::record_shapes(path)?;
    adopt_mpo_layout(model, path, &shapes, slots, device)
}

/// Replaces every dense projection of `model` that is an MPO layer in the record at `path` (tensor
/// shapes `shapes`, from [`crate::checkpoint::record_shapes`]) by a zero MPO layer of the stored
/// core shapes, so that the record loads. Projections already MPO stay as they are.
fn adopt_mpo_layout<M: Module, S: LinearSlots>(
    mut model: M,
    path: &Path,
    shapes: &BTreeMap<String, Vec<usize>>,
    slots: impl Fn(&mut M) -> &mut S,
    device: &Device,
) -> Result<M, ModelError> {
    let mismatch = |message: String| ModelError::Record {
        path: path.to_path_buf(),
        message,
    };
    let names = param_paths(&model);
    let paths = slots(&mut model).slot_paths();
    for path in paths {
        let ProjLinear::Dense(dense) = slots(&mut model).slot(path) else {
            continue;
        };
        let name = &names[&dense.weight.id];
        let prefix = name.strip_suffix(".Dense.weight").unwrap_or(name);
        let cores: Vec<[usize; 4]> = (0..)
            .map_while(|k| shapes.get(&format!("{prefix}.Mpo.cores.{k}")))
            .map(|dims| {
                <[usize; 4]>::try_from(dims.as_slice())
                    .map_err(|_| mismatch(format!("{prefix}: core of shape {dims:?}")))
            })
            .collect::<Result<_, _>>()?;
        if !cores.is_empty() {
            let bias = shapes.contains_key(&format!("{prefix}.Mpo.bias"));
            let mpo = MpoLinear::zeros(&cores, bias, device)
                .map_err(|e| mismatch(format!("{prefix}: {e}")))?;
            set_linear(slots(&mut model), path, ProjLinear::Mpo(mpo))
                .map_err(|e| mismatch(e.to_string()))?;
        }
    }
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tolerance;

    #[test]
    fn from_hf_matches_pytorch_linear() {
        let device = Device::flex();
        // PyTorch: nn.Linear(3, 2) with weight [[1,2,3],[4,5,6]], bias [0.5,-1]; x = [[1,0,-1]]
        // gives [[-1.5, -3.0]].
        let weight = Tensor::<2>::from_data([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], &device);
        let bias = Tensor::<1>::from_data([0.5, -1.0], &device);
        let proj = ProjLinear::from_hf(weight.clone(), Some(bias));
        assert_eq!((proj.d_input(), proj.d_output()), (3, 2));

        let y = proj.forward(Tensor::<2>::from_data([[1.0, 0.0, -1.0]], &device));
        y.into_data()
            .assert_approx_eq::<f32>(&TensorData::from([[-1.5f32, -3.0]]), Tolerance::default());
        proj.weight_out_in()
            .into_data()
            .assert_eq(&weight.clone().into_data(), true);
        proj.weight_in_out()
            .into_data()
            .assert_eq(&weight.transpose().into_data(), true);
    }

    #[test]
    fn config_init_is_normal_weight_zero_bias() {
        let device = Device::flex();
        device.seed(7);
        let proj = ProjLinearConfig::new(64, 48).init(&device);
        assert_eq!((proj.d_input(), proj.d_output()), (64, 48));
        let bias = proj.bias().expect("dense projections have a bias");
        bias.into_data()
            .assert_eq(&TensorData::zeros::<f32, _>([48]), true);
        let w: Vec<f32> = proj.weight_in_out().into_data().try_into_vec().unwrap();
        let n = w.len() as f32;
        let mean = w.iter().sum::<f32>() / n;
        let std = (w.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / n).sqrt();
        assert!(mean.abs() < 0.002, "mean {mean}");
        assert!((std - 0.02).abs() < 0.002, "std {std}");
    }

    #[test]
    #[should_panic(expected = "assert_shape!(bias, [d_output])")]
    fn from_hf_rejects_wrong_bias() {
        let device = Device::flex();
        let weight = Tensor::<2>::zeros([2, 3], &device);
        let _ = ProjLinear::from_hf(weight, Some(Tensor::<1>::zeros([3], &device)));
    }
}
