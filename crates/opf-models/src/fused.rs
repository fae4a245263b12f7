//! Softmax, attention probabilities, layer norm and GELU as single operations under autodiff.
//!
//! burn 0.22's autodiff backend has no softmax or layer-norm operation of its own: both fall back
//! to the defaults in `burn_backend` (`ActivationOps::softmax`, `ModuleOps::layer_norm`), which
//! compose them from element-wise operations, each recorded with its own backward. A BERT layer
//! then spends a dozen passes over its attention probabilities and each layer norm's activations
//! that PyTorch's fused `_softmax` / `native_layer_norm` kernels and their backwards do not.
//!
//! [`softmax`] and [`layer_norm`] run the inner backend's own kernel forward (LibTorch's and
//! burn-flex's are fused) and record one backward each, written here from the closed-form
//! gradients:
//!
//! - softmax `y = softmax(x)`: `dx = y ⊙ g − y ⊙ Σ(y ⊙ g)` (sum along the softmax axis);
//! - layer norm `y = x̂ γ + β`, `x̂ = (x − μ) σ⁻¹`: `dβ = Σ g`, `dγ = Σ g ⊙ x̂` (sums over rows)
//!   and `dx = σ⁻¹ (g γ − mean(g γ) − x̂ mean(g γ ⊙ x̂))` (means along the row), as PyTorch's
//!   `layer_norm_backward_cpu` (`aten/src/ATen/native/cpu/layer_norm_kernel.cpp`).
//!
//! [`attention_probs`] is `softmax(scores · scale + mask) ⊙ dropout noise` as one operation with
//! one backward, `(y ⊙ g' − y Σ(y ⊙ g')) · scale` with `g' = g ⊙ noise`; on burn-flex one
//! row-parallel pass each way (module `host_softmax`) in place of five and six passes over the
//! `[batch, heads, seq, seq]` scores, most of them burn-flex's single-threaded binary operations.
//!
//! [`gelu`] is one operation on every backend with the exact gradient `Φ(x) + x φ(x)`; on
//! burn-flex, forward and backward are one vectorised pass each, as PyTorch's CPU kernels
//! (burn-flex has no GELU: burn composes it from five element-wise passes and libm's scalar
//! `erff`, which took ~12 % of a MiniLM training step).
//!
//! Off autodiff softmax and layer norm are the backend's own `softmax` / `layer_norm`.
//! [`attention`] is for inference: the backend's attention kernel, with the additive mask as its
//! bias.

// burn-tch is deprecated in burn 0.22; still the LibTorch option here.
#![cfg_attr(feature = "tch", allow(deprecated))]

use burn::backend::autodiff::Autodiff;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Dispatch, TensorMetadata, backend_extension};
use burn::module::{Initializer, Param};
use burn::prelude::*;
use burn::tensor::Shape;
use burn::tensor::ops::AttentionModuleOptions;
use std::f64::consts::{FRAC_1_SQRT_2, FRAC_2_SQRT_PI};

/// `1 / √(2π)`, the normal density's factor in the GELU gradient, as PyTorch writes it
/// (`M_2_SQRTPI * M_SQRT1_2 * 0.5`, `aten/src/ATen/native/cpu/Activation.cpp`).
const INV_SQRT_2PI: f64 = 0.5 * FRAC_2_SQRT_PI * FRAC_1_SQRT_2;

#[cfg(feature = "cpu")]
mod host;
#[cfg(feature = "cpu")]
mod host_gelu;
#[cfg(feature = "cpu")]
mod host_softmax;

/// The fused operations, as a burn backend extension.
#[backend_extension(
    Flex: cfg(feature = "cpu"),
    LibTorch: cfg(feature = "tch"),
    Cube: cfg(any(feature = "wgpu", feature = "cuda")),
    Autodiff,
)]
pub trait FusedOps: Backend {
    /// Softmax along `dim`.
    fn fused_softmax(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        Self::softmax(tensor, dim)
    }

    /// Layer norm over the last axis with scale `gamma` and shift `beta`.
    fn fused_layer_norm(
        tensor: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(tensor, gamma, Some(beta), epsilon)
    }

    /// `softmax(Q Kᵀ scale + bias) V`, the bias broadcast over heads and query rows: the
    /// backend's attention kernel (burn-flex's flash attention).
    fn fused_attention(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        let options = AttentionModuleOptions {
            scale: Some(scale),
            softcap: None,
            is_causal: false,
        };
        Self::attention(query, key, value, None, Some(bias), options)
    }

    /// Attention probabilities, `softmax(scores · scale + bias)` along the last axis.
    fn fused_attention_probs(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        composed_attention_probs::<Self>(scores, bias, scale, None).0
    }

    /// Attention probabilities with dropout, `softmax(scores · scale + bias) ⊙ noise` (`noise`:
    /// dropout's scaled mask).
    fn fused_attention_probs_dropout(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f64,
        noise: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        Self::fused_attention_probs_dropout_forward(scores, bias, scale, noise).1
    }

    /// [`FusedOps::fused_attention_probs_dropout`] with the softmax it multiplies:
    /// `(y, y ⊙ noise)`.
    fn fused_attention_probs_dropout_forward(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f64,
        noise: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        composed_attention_probs::<Self>(scores, bias, scale, Some(noise))
    }

    /// The gradient of [`FusedOps::fused_attention_probs`] with respect to `scores`, from its
    /// output `y` and the output's gradient: `(y ⊙ g − y Σ(y ⊙ g)) · scale`.
    fn fused_attention_probs_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        composed_attention_probs_backward::<Self>(y, None, grad, scale)
    }

    /// The gradient of [`FusedOps::fused_attention_probs_dropout`] with respect to `scores`:
    /// [`FusedOps::fused_attention_probs_backward`] of `grad ⊙ noise`.
    fn fused_attention_probs_dropout_backward(
        y: FloatTensor<Self>,
        noise: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        composed_attention_probs_backward::<Self>(y, Some(noise), grad, scale)
    }

    /// Exact GELU, `x Φ(x)`.
    fn fused_gelu(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(tensor)
    }

    /// The exact GELU's gradient times `grad`: `grad (Φ(x) + x φ(x))`. burn's default
    /// `gelu_backward` is the tanh approximation's derivative.
    fn fused_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        composed_gelu_backward::<Self>(x, grad)
    }
}

/// `(y, y ⊙ noise)` (`(y, y)` without noise), `y = softmax(scores · scale + bias)`, from the
/// backend's operations.
fn composed_attention_probs<B: Backend>(
    scores: FloatTensor<B>,
    bias: FloatTensor<B>,
    scale: f64,
    noise: Option<FloatTensor<B>>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let last = scores.shape().num_dims() - 1;
    let scaled = B::float_mul_scalar(scores, scale.into());
    let y = B::softmax(B::float_add(scaled, bias), last);
    let out = match noise {
        Some(noise) => B::float_mul(y.clone(), noise),
        None => y.clone(),
    };
    (y, out)
}

/// The gradient of [`composed_attention_probs`]' second output, from the backend's operations.
fn composed_attention_probs_backward<B: Backend>(
    y: FloatTensor<B>,
    noise: Option<FloatTensor<B>>,
    grad: FloatTensor<B>,
    scale: f64,
) -> FloatTensor<B> {
    let last = y.shape().num_dims() - 1;
    let grad = match noise {
        Some(noise) => B::float_mul(grad, noise),
        None => grad,
    };
    let yg = B::float_mul(grad, y.clone());
    let sum = B::float_sum_dim(yg.clone(), last);
    let dt = B::float_sub(yg, B::float_mul(y, sum));
    B::float_mul_scalar(dt, scale.into())
}

/// [`FusedOps::fused_gelu_backward`] from element-wise operations.
fn composed_gelu_backward<B: Backend>(x: FloatTensor<B>, grad: FloatTensor<B>) -> FloatTensor<B> {
    let erf = B::float_erf(B::float_mul_scalar(x.clone(), FRAC_1_SQRT_2.into()));
    let cdf = B::float_mul_scalar(B::float_add_scalar(erf, 1.0.into()), 0.5.into());
    let x2 = B::float_mul(x.clone(), x.clone());
    let pdf = B::float_mul_scalar(
        B::float_exp(B::float_mul_scalar(x2, (-0.5).into())),
        INV_SQRT_2PI.into(),
    );
    B::float_mul(grad, B::float_add(cdf, B::float_mul(x, pdf)))
}

/// GELU and its gradient in one vectorised pass each (module `host_gelu`), as PyTorch's CPU
/// kernels; the attention probabilities and their gradient in one row-parallel pass each (module
/// `host_softmax`).
#[cfg(feature = "cpu")]
impl FusedOps for burn::backend::Flex {
    fn fused_attention_probs(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        match host_softmax::attention_probs(&scores, &bias, scale as f32, None) {
            Some((y, _)) => y,
            None => composed_attention_probs::<Self>(scores, bias, scale, None).0,
        }
    }

    fn fused_attention_probs_dropout_forward(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f64,
        noise: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        match host_softmax::attention_probs(&scores, &bias, scale as f32, Some(&noise)) {
            Some((y, Some(out))) => (y, out),
            _ => composed_attention_probs::<Self>(scores, bias, scale, Some(noise)),
        }
    }

    fn fused_attention_probs_backward(
        y: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        host_softmax::attention_probs_grad(&y, None, &grad, scale as f32)
            .unwrap_or_else(|| composed_attention_probs_backward::<Self>(y, None, grad, scale))
    }

    fn fused_attention_probs_dropout_backward(
        y: FloatTensor<Self>,
        noise: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        host_softmax::attention_probs_grad(&y, Some(&noise), &grad, scale as f32).unwrap_or_else(
            || composed_attention_probs_backward::<Self>(y, Some(noise), grad, scale),
        )
    }

    fn fused_gelu(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        host_gelu::gelu_tensor(&tensor)
            .unwrap_or_else(|| <Self as burn::backend::ops::ActivationOps<Self>>::gelu(tensor))
    }

    fn fused_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        host_gelu::gelu_grad_tensor(&x, &grad)
            .unwrap_or_else(|| composed_gelu_backward::<Self>(x, grad))
    }
}

/// burn-tch's `attention` falls back to the composed form when given a bias, and passes a
/// boolean mask to `torch.nn.functional.scaled_dot_product_attention` unchanged, whose `True`
/// means attend where burn's means mask out. The additive bias goes to PyTorch's kernel
/// directly, as Hugging Face's `sdpa_attention_forward` passes its additive mask.
#[cfg(feature = "tch")]
impl FusedOps for burn::backend::LibTorch {
    fn fused_attention(
        query: FloatTensor<Self>,
        key: FloatTensor<Self>,
        value: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        burn::backend::libtorch::TchTensor::new(tch::Tensor::scaled_dot_product_attention(
            &query.tensor,
            &key.tensor,
            &value.tensor,
            Some(bias.tensor),
            0.0,
            false,
            scale,
            false,
        ))
    }

    /// `torch.ops.aten.gelu_backward(grad, x, approximate="none")`.
    fn fused_gelu_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>) -> FloatTensor<Self> {
        <Self as burn::backend::ops::ActivationOps<Self>>::gelu_backward(x, grad)
    }
}

#[cfg(any(feature = "wgpu", feature = "cuda"))]
impl FusedOps for burn::backend::Cube {}

/// The backward of [`attention_probs`] under autodiff. Only `scores` is a parent: the bias and
/// the noise are constants ([`attention_probs`] refuses a tracked bias; the noise is drawn off
/// the graph). State: the softmax, the noise, the scale.
#[derive(Debug)]
struct AttentionProbs;

impl<B: Backend + FusedOps> Backward<B, 1> for AttentionProbs {
    type State = (
        B::FloatTensorPrimitive,
        Option<B::FloatTensorPrimitive>,
        f64,
    );

    fn backward(
        self,
        ops: Ops<Self::State, 1>,
        grads: &mut Gradients,
        _checkpointer: &mut Checkpointer,
    ) {
        let (y, noise, scale) = ops.state;
        unary::<B, _>(ops.parents, ops.node, grads, |grad| match noise {
            Some(noise) => B::fused_attention_probs_dropout_backward(y, noise, grad, scale),
            None => B::fused_attention_probs_backward(y, grad, scale),
        });
    }
}

/// [`attention_probs`] under autodiff: `forward` maps the inner scores to `(softmax, output)`;
/// the output is returned, recorded with [`AttentionProbs`] (state: the softmax, the noise, the
/// scale) when `scores` is tracked.
fn record_attention_probs<B: Backend + FusedOps, C: CheckpointStrategy>(
    scores: FloatTensor<Autodiff<B, C>>,
    noise: Option<B::FloatTensorPrimitive>,
    scale: f64,
    forward: impl FnOnce(B::FloatTensorPrimitive) -> (B::FloatTensorPrimitive, B::FloatTensorPrimitive),
) -> FloatTensor<Autodiff<B, C>> {
    let node = scores.node();
    let (y, out) = forward(scores.into_primitive());
    match AttentionProbs
        .prepare::<C>([node])
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => prep.finish((y, noise, scale), out),
        OpsKind::UnTracked(prep) => prep.finish(out),
    }
}

impl<B: Backend + FusedOps, C: CheckpointStrategy> FusedOps for Autodiff<B, C> {
    fn fused_softmax(tensor: FloatTensor<Self>, dim: usize) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Softmax;

        impl<B: Backend> Backward<B, 1> for Softmax {
            type State = (B::FloatTensorPrimitive, usize);

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let (y, dim) = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    let yg = B::float_mul(grad, y.clone());
                    let sum = B::float_sum_dim(yg.clone(), dim);
                    B::float_sub(yg, B::float_mul(y, sum))
                });
            }
        }

        let node = tensor.node();
        let y = B::softmax(tensor.into_primitive(), dim);
        match Softmax.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((y.clone(), dim), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_layer_norm(
        tensor: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f64,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct LayerNorm;

        impl<B: Backend> Backward<B, 3> for LayerNorm {
            type State = (B::FloatTensorPrimitive, B::FloatTensorPrimitive, f64);

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let (x, gamma, epsilon) = ops.state;
                let [node_x, node_gamma, node_beta] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);

                let shape = x.shape();
                let d = shape[shape.num_dims() - 1];
                let rows = shape.num_elements() / d;
                let x = B::float_reshape(x, Shape::new([rows, d]));
                let grad = B::float_reshape(grad, Shape::new([rows, d]));

                // μ, σ⁻¹ and x̂ per row, recomputed (the forward kernel keeps none of them).
                let mean = B::float_mean_dim(x.clone(), 1);
                let centered = B::float_sub(x, mean);
                let var = B::float_mean_dim(B::float_mul(centered.clone(), centered.clone()), 1);
                let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(var, epsilon.into())));
                let x_hat = B::float_mul(centered, rstd.clone());

                let column_sum = |t| B::float_reshape(B::float_sum_dim(t, 0), Shape::new([d]));
                if let Some(node) = node_beta {
                    grads.register::<B>(node.id, column_sum(grad.clone()));
                }
                if let Some(node) = node_gamma {
                    let g_x_hat = B::float_mul(grad.clone(), x_hat.clone());
                    grads.register::<B>(node.id, column_sum(g_x_hat));
                }
                if let Some(node) = node_x {
                    let g_gamma = B::float_mul(grad, B::float_reshape(gamma, Shape::new([1, d])));
                    let mean_g = B::float_mean_dim(g_gamma.clone(), 1);
                    let mean_g_x_hat =
                        B::float_mean_dim(B::float_mul(g_gamma.clone(), x_hat.clone()), 1);
                    let dx = B::float_sub(
                        B::float_sub(g_gamma, mean_g),
                        B::float_mul(x_hat, mean_g_x_hat),
                    );
                    let dx = B::float_mul(dx, rstd);
                    grads.register::<B>(node.id, B::float_reshape(dx, shape));
                }
            }
        }

        let nodes = [tensor.node(), gamma.node(), beta.node()];
        let (x, gamma) = (tensor.into_primitive(), gamma.into_primitive());
        let y = B::layer_norm(
            x.clone(),
            gamma.clone(),
            Some(beta.into_primitive()),
            epsilon,
        );
        match LayerNorm.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish((x, gamma, epsilon), y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }

    fn fused_attention_probs(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f64,
    ) -> FloatTensor<Self> {
        record_attention_probs::<B, C>(scores, None, scale, |scores| {
            let y = B::fused_attention_probs(scores, bias.into_primitive(), scale);
            (y.clone(), y)
        })
    }

    fn fused_attention_probs_dropout(
        scores: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        scale: f64,
        noise: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let noise = noise.into_primitive();
        record_attention_probs::<B, C>(scores, Some(noise.clone()), scale, |scores| {
            B::fused_attention_probs_dropout_forward(scores, bias.into_primitive(), scale, noise)
        })
    }

    fn fused_gelu(tensor: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct Gelu;

        impl<B: Backend + FusedOps> Backward<B, 1> for Gelu {
            type State = B::FloatTensorPrimitive;

            fn backward(
                self,
                ops: Ops<Self::State, 1>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let x = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| {
                    B::fused_gelu_backward(x, grad)
                });
            }
        }

        let node = tensor.node();
        let x = tensor.into_primitive();
        let y = B::fused_gelu(x.clone());
        match Gelu.prepare::<C>([node]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => prep.finish(x, y),
            OpsKind::UnTracked(prep) => prep.finish(y),
        }
    }
}

/// Softmax along `dim` (negative counts from the end) as one autodiff operation.
///
/// # Shapes
///
/// - input and output: any, equal
pub fn softmax<const D: usize>(tensor: Tensor<D>, dim: isize) -> Tensor<D> {
    let dim = if dim < 0 { D as isize + dim } else { dim };
    assert!(
        (0..D as isize).contains(&dim),
        "softmax axis {dim} out of range for rank {D}"
    );
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_softmax(
        tensor.into_dispatch(),
        dim as usize,
    ))
}

/// Attention probabilities with dropout, `softmax(scores · scale + bias) ⊙ noise` along the last
/// axis, as one operation: on burn-flex one row-parallel pass forward and one backward; elsewhere
/// the backend's softmax and element-wise operations, with one backward. `noise` is dropout's
/// multiplier ([`crate::rng::dropout_noise`]; `None` when dropout is the identity). The bias (an
/// attention mask) is a constant.
///
/// # Panics
///
/// If `bias` is part of an autodiff graph (its gradient would be lost).
///
/// # Shapes
///
/// - scores, noise, output: `[batch, heads, queries, keys]`
/// - bias: broadcastable to the scores, keys last, e.g. `[batch, 1, 1, keys]`
pub fn attention_probs(
    scores: Tensor<4>,
    bias: Tensor<4>,
    scale: f64,
    noise: Option<Tensor<4>>,
) -> Tensor<4> {
    assert!(
        !bias.is_tracked(),
        "attention_probs takes a constant bias; this one is tracked for a gradient"
    );
    let (scores, bias) = (scores.into_dispatch(), bias.into_dispatch());
    Tensor::from_dispatch(match noise {
        Some(noise) => <Dispatch as FusedOps>::fused_attention_probs_dropout(
            scores,
            bias,
            scale,
            noise.into_dispatch(),
        ),
        None => <Dispatch as FusedOps>::fused_attention_probs(scores, bias, scale),
    })
}

/// Exact GELU, `x Φ(x)` (`torch.nn.functional.gelu`), as one operation: on burn-flex one
/// vectorised pass forward and one backward (PyTorch's CPU kernels); under autodiff its backward
/// is the exact gradient `Φ(x) + x φ(x)` on every backend (burn's default `gelu_backward`, which
/// a backend without its own would use, is the tanh approximation's).
///
/// # Shapes
///
/// - input and output: any, equal
pub fn gelu<const D: usize>(tensor: Tensor<D>) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_gelu(tensor.into_dispatch()))
}

/// `softmax(Q Kᵀ scale + bias) V` by the backend's attention kernel (PyTorch's
/// `scaled_dot_product_attention` on LibTorch, flash attention on burn-flex). Without dropout:
/// for inference. Under autodiff it is burn's composed attention.
///
/// # Shapes
///
/// - query: `[batch, heads, seq_q, head_dim]`; key, value: `[batch, heads, seq_k, head_dim]`
/// - bias: broadcastable to `[batch, heads, seq_q, seq_k]`, e.g. `[batch, 1, 1, seq_k]`
/// - output: `[batch, heads, seq_q, head_dim]`
pub fn attention(
    query: Tensor<4>,
    key: Tensor<4>,
    value: Tensor<4>,
    bias: Tensor<4>,
    scale: f64,
) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_attention(
        query.into_dispatch(),
        key.into_dispatch(),
        value.into_dispatch(),
        bias.into_dispatch(),
        scale,
    ))
}

/// Whether [`attention`] replaces the composed attention for an input on this tensor's device:
/// off autodiff (inference: no dropout, no backward), in f32 (under a half-precision
/// [`crate::Autocast`] the composed form's products are the autocast ones), and on LibTorch,
/// where PyTorch's kernel made MiniLM-L6 evaluation on MRPC faster. burn-flex's flash attention
/// was slower there than its composed form (16.3-16.8 against 17.5-18.1 examples/s), so Flex
/// keeps the composed form, as do the GPU backends, which the tests here do not reach.
pub fn attention_applies<const D: usize>(tensor: &Tensor<D>) -> bool {
    #[cfg(feature = "tch")]
    {
        use crate::precision::Precision;
        let device = tensor.device();
        let libtorch = matches!(
            device.as_dispatch(),
            burn::backend::DispatchDevice::LibTorch(_)
        );
        libtorch && !device.is_autodiff() && Precision::current() == Precision::F32
    }
    #[cfg(not(feature = "tch"))]
    {
        let _ = tensor;
        false
    }
}

/// Layer norm over the last axis as one autodiff operation: `(x − μ) / √(σ² + ε) γ + β` with the
/// biased variance, as `torch.nn.functional.layer_norm`.
///
/// # Shapes
///
/// - input and output: `[..., d_model]`
/// - gamma, beta: `[d_model]`
pub fn layer_norm<const D: usize>(
    tensor: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    Tensor::from_dispatch(<Dispatch as FusedOps>::fused_layer_norm(
        tensor.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        epsilon,
    ))
}

/// Layer norm over the last axis with scale and shift, as `torch.nn.LayerNorm`: the parameters
/// (and record names) of burn's `nn::LayerNorm` with a bias, the forward [`layer_norm`].
#[derive(Module, Debug)]
pub struct LayerNorm {
    /// Scale γ, `[d_model]`.
    pub gamma: Param<Tensor<1>>,
    /// Shift β, `[d_model]`.
    pub beta: Param<Tensor<1>>,
    /// Added to the variance.
    #[module(skip)]
    pub epsilon: f64,
}

impl LayerNorm {
    /// `γ = 1`, `β = 0`.
    pub fn new(d_model: usize, epsilon: f64, device: &Device) -> Self {
        Self {
            gamma: Initializer::Ones.init([d_model], device),
            beta: Initializer::Zeros.init([d_model], device),
            epsilon,
        }
    }

    /// Normalises the last axis.
    ///
    /// # Shapes
    ///
    /// - input and output: `[..., d_model]`
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        layer_norm(input, self.gamma.val(), self.beta.val(), self.epsilon)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, Tolerance, activation};

    /// Relative tolerance of the f32 comparisons: both sides round differently (one kernel
    /// against a chain of element-wise operations), by a few ulps times the row length.
    const TOL: f32 = 1e-5;

    fn assert_close<const D: usize>(actual: Tensor<D>, expected: Tensor<D>, what: &str) {
        let scale = expected.clone().abs().max().into_scalar::<f32>();
        let diff = (actual - expected).abs().max().into_scalar::<f32>();
        assert!(
            diff <= TOL * scale,
            "{what}: max |diff| {diff} vs scale {scale}"
        );
    }

    /// PyTorch's CPU `gelu` and its gradient on 1015 points, with the exact values (float64
    /// scipy), from `scripts/gen_gelu_fixture.py` (torch 2.9.0, AVX2 kernels).
    #[derive(serde::Deserialize)]
    struct GeluFixture {
        x: Vec<f32>,
        g: Vec<f32>,
        gelu: Vec<f32>,
        grad: Vec<f32>,
        gelu_exact: Vec<f64>,
        grad_exact: Vec<f64>,
    }

    fn gelu_fixture() -> GeluFixture {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gelu.json");
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_into_vec::<f32>().unwrap()
    }

    /// Largest `|actual − expected| / max(1, |expected|)`.
    fn errors(actual: &[f32], expected: impl ExactSizeIterator<Item = f64>) -> f64 {
        assert_eq!(actual.len(), expected.len());
        actual
            .iter()
            .zip(expected)
            .map(|(&a, e)| (a as f64 - e).abs() / e.abs().max(1.0))
            .fold(0.0, f64::max)
    }

    /// Largest deviation, relative to `max(1, |value|)`, allowed from PyTorch's f32 kernels:
    /// the same formulas, but a different `exp` (Sleef's) and other roundings. Measured: 1.1e-7
    /// (forward, 88 % of the values bit-equal) and 2.0e-7 (gradient).
    const GELU_TOL_TORCH: f64 = 3e-7;
    /// From the exact values: A&S 7.1.26's 1.5e-7 on `erf` plus f32 rounding. Measured 2.6e-7
    /// (forward) and 2.7e-7 (gradient); PyTorch's own are 3.7e-7 and 2.7e-7.
    const GELU_TOL_EXACT: f64 = 4e-7;

    fn check_gelu_values(what: &str, ours: &[f32], torch: &[f32], exact: &[f64]) {
        let vs_torch = errors(ours, torch.iter().map(|&v| v as f64));
        let vs_exact = errors(ours, exact.iter().copied());
        assert!(
            vs_torch <= GELU_TOL_TORCH,
            "{what}: {vs_torch:e} from PyTorch"
        );
        assert!(
            vs_exact <= GELU_TOL_EXACT,
            "{what}: {vs_exact:e} from exact"
        );
    }

    /// [`gelu`] and its autodiff gradient on burn-flex against PyTorch and the exact values.
    #[test]
    fn gelu_and_its_gradient_match_pytorch() {
        check_gelu(&Device::flex().autodiff());
    }

    /// The same on LibTorch (its own kernels, `aten::gelu_backward` for the gradient). The
    /// forward is PyTorch's kernel for the CPU at hand, which is not the fixture's everywhere:
    /// torch 2.9's AVX-512 `gelu` is 6.1e-7 from the exact values (7.7e-7 from its AVX2 kernel,
    /// which made the fixture), so the forward is held to the exact values within
    /// [`GELU_TOL_LIBTORCH_FORWARD`]; the gradient, through this crate's autodiff operation, to
    /// both as on burn-flex.
    #[cfg(feature = "tch")]
    #[test]
    fn gelu_and_its_gradient_match_pytorch_on_libtorch() {
        let (y, dx) = gelu_and_gradient(&Device::libtorch().autodiff());
        let f = gelu_fixture();
        let vs_exact = errors(&y, f.gelu_exact.iter().copied());
        assert!(
            vs_exact <= GELU_TOL_LIBTORCH_FORWARD,
            "gelu: {vs_exact:e} from exact"
        );
        check_gelu_values("gradient", &dx, &f.grad, &f.grad_exact);
    }

    /// Largest deviation of PyTorch's own forward kernels from the exact values, relative to
    /// `max(1, |value|)`, over the CPUs met so far: AVX2 3.7e-7, AVX-512 6.1e-7 (torch 2.9).
    #[cfg(feature = "tch")]
    const GELU_TOL_LIBTORCH_FORWARD: f64 = 1e-6;

    /// [`gelu`] of the fixture's points on `device` and the gradient of `Σ g ⊙ gelu(x)`.
    fn gelu_and_gradient(device: &Device) -> (Vec<f32>, Vec<f32>) {
        let f = gelu_fixture();
        let n = f.x.len();
        let x = Tensor::<1>::from_data(TensorData::new(f.x.clone(), [n]), device).require_grad();
        let g = Tensor::<1>::from_data(TensorData::new(f.g.clone(), [n]), device);
        let y = gelu(x.clone());
        let grads = (y.clone() * g).sum().backward();
        let dx = values(x.grad(&grads).expect("gradient of x"));
        (values(y), dx)
    }

    fn check_gelu(device: &Device) {
        let f = gelu_fixture();
        let (y, dx) = gelu_and_gradient(device);
        check_gelu_values("gelu", &y, &f.gelu, &f.gelu_exact);
        check_gelu_values("gradient", &dx, &f.grad, &f.grad_exact);
    }

    /// The element-wise form of the gradient (the default of [`FusedOps::fused_gelu_backward`],
    /// the GPU backends' path) on burn-flex's primitives.
    #[test]
    fn composed_gelu_gradient_matches_pytorch() {
        use burn::backend::Flex;
        use burn::backend::flex::FlexTensor;
        let f = gelu_fixture();
        let n = f.x.len();
        let x = FlexTensor::from_data(TensorData::new(f.x.clone(), [n]));
        let g = FlexTensor::from_data(TensorData::new(f.g.clone(), [n]));
        let dx = composed_gelu_backward::<Flex>(x, g)
            .into_data()
            .try_into_vec::<f32>()
            .unwrap();
        check_gelu_values("composed gradient", &dx, &f.grad, &f.grad_exact);
    }

    /// Strided inputs are read in logical order: GELU of a transposed view equals the transpose
    /// of GELU, and so does the gradient.
    #[test]
    fn gelu_reads_transposed_views_in_logical_order() {
        let device = Device::flex().autodiff();
        let a = Tensor::<2>::random([37, 53], Distribution::Normal(0.0, 3.0), &device);
        let g = Tensor::<2>::random([53, 37], Distribution::Normal(0.0, 1.0), &device);
        let at = a.clone().transpose().require_grad();
        let grads = (gelu(at.clone()) * g.clone()).sum().backward();
        let expected = gelu(a.clone()).transpose();
        assert_eq!(values(gelu(a.clone().transpose())), values(expected));
        let contiguous = a.transpose().into_data();
        let ac = Tensor::<2>::from_data(contiguous, &device).require_grad();
        let grads_c = (gelu(ac.clone()) * g).sum().backward();
        assert_eq!(
            values(at.grad(&grads).unwrap()),
            values(ac.grad(&grads_c).unwrap())
        );
    }

    /// Values and input gradients equal burn's composed softmax (through autodiff's element-wise
    /// operations) under a random upstream gradient, on the last and a middle axis.
    #[test]
    fn softmax_matches_composed_softmax_and_its_gradient() {
        let device = Device::flex().autodiff();
        device.seed(11);
        for dim in [3usize, 1] {
            let x = Tensor::<4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 3.0), &device)
                .require_grad();
            let w = Tensor::<4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 1.0), &device);
            let fused = softmax(x.clone(), dim as isize);
            let composed = activation::softmax(x.clone(), dim);
            assert_close(fused.clone(), composed.clone(), "softmax values");
            let g_fused = x.grad(&(fused * w.clone()).sum().backward()).unwrap();
            let g_composed = x.grad(&(composed * w).sum().backward()).unwrap();
            assert_close(g_fused, g_composed, "softmax input gradient");
        }
        assert_close(
            softmax(Tensor::<2>::from_floats([[1.0, 2.0, 3.0]], &device), -1),
            Tensor::<2>::from_floats([[0.090_030_57, 0.244_728_48, 0.665_240_94]], &device),
            "softmax([1, 2, 3]) (scipy.special.softmax)",
        );
    }

    /// `softmax(s · scale + bias) ⊙ noise` through burn's element-wise operations and softmax,
    /// each recorded by autodiff: the reference for [`attention_probs`].
    fn composed_probs(
        s: Tensor<4>,
        bias: Tensor<4>,
        scale: f64,
        noise: Option<Tensor<4>>,
    ) -> Tensor<4> {
        let y = activation::softmax(s.mul_scalar(scale) + bias, 3);
        match noise {
            Some(noise) => y * noise,
            None => y,
        }
    }

    /// [`attention_probs`] and its gradient equal the composed form on burn-flex (the host
    /// kernels) with and without dropout, for a padding mask `[batch, 1, 1, keys]`, a full bias
    /// and one shared by the batch, with ragged row lengths (not a multiple of 8) and enough rows
    /// for several threaded tasks.
    #[test]
    fn attention_probs_match_the_composed_form_and_its_gradient() {
        check_attention_probs(&Device::flex().autodiff());
    }

    /// The same on LibTorch: the composed operations of the trait's defaults, under one autodiff
    /// node with the closed-form backward.
    #[cfg(feature = "tch")]
    #[test]
    fn attention_probs_match_the_composed_form_and_its_gradient_on_libtorch() {
        check_attention_probs(&Device::libtorch().autodiff());
    }

    fn check_attention_probs(device: &Device) {
        device.seed(14);
        let (b, h, q, k) = (3, 4, 37, 21);
        let scale = 0.125;
        let keep = Tensor::<2, Int>::from_data(
            TensorData::new(
                (0..b * k)
                    .map(|i| i64::from(i % k < k - 5 * (i / k)))
                    .collect::<Vec<_>>(),
                [b, k],
            ),
            device,
        );
        let biases = [
            crate::bert::extended_attention_mask(keep),
            Tensor::<4>::random([b, h, q, k], Distribution::Normal(0.0, 2.0), device),
            Tensor::<4>::random([1, h, q, k], Distribution::Normal(0.0, 2.0), device),
        ];
        let noise = Tensor::<4>::random([b, h, q, k], Distribution::Bernoulli(0.9), device) / 0.9;
        for bias in biases {
            for noise in [None, Some(noise.clone())] {
                let s = Tensor::<4>::random([b, h, q, k], Distribution::Normal(0.0, 4.0), device)
                    .require_grad();
                let w = Tensor::<4>::random([b, h, q, k], Distribution::Normal(0.0, 1.0), device);
                let fused = attention_probs(s.clone(), bias.clone(), scale, noise.clone());
                let composed = composed_probs(s.clone(), bias.clone(), scale, noise);
                assert_close(fused.clone(), composed.clone(), "attention probabilities");
                let g_fused = s.grad(&(fused * w.clone()).sum().backward()).unwrap();
                let g_composed = s.grad(&(composed * w).sum().backward()).unwrap();
                assert_close(g_fused, g_composed, "scores gradient");
            }
        }
    }

    /// PyTorch's eager attention probabilities with dropout and their gradient, from
    /// `scripts/gen_attention_probs_fixture.py` (torch 2.9.0, float32 and float64).
    #[derive(serde::Deserialize)]
    struct AttentionProbsFixture {
        shape: [usize; 4],
        scaling: f64,
        scores: Vec<f32>,
        keep: Vec<f32>,
        noise: Vec<f32>,
        w: Vec<f32>,
        probs: Vec<f32>,
        grad: Vec<f32>,
        probs_f64: Vec<f64>,
        grad_f64: Vec<f64>,
    }

    /// Largest deviation, relative to the largest value, from PyTorch's float32 and float64
    /// results (f32: a few ulps of the exponentials and of a 13-term sum). Measured on
    /// burn-flex: probabilities 9.3e-8 / 1.4e-7, gradient 1.1e-7 / 7.4e-8; PyTorch's own float32
    /// is 1.4e-7 / 7.6e-8 from its float64.
    const ATTENTION_TOL: f64 = 5e-7;

    /// [`attention_probs`] with a padding mask and dropout noise, and its gradient, against
    /// PyTorch (`softmax(s · scaling + mask) ⊙ noise`, Hugging Face's eager attention).
    #[test]
    fn attention_probs_match_pytorch() {
        check_attention_probs_against_pytorch(&Device::flex().autodiff());
    }

    /// The same on LibTorch (the trait's composed defaults under one autodiff node).
    #[cfg(feature = "tch")]
    #[test]
    fn attention_probs_match_pytorch_on_libtorch() {
        check_attention_probs_against_pytorch(&Device::libtorch().autodiff());
    }

    fn check_attention_probs_against_pytorch(device: &Device) {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/attention_probs.json"
        );
        let f: AttentionProbsFixture =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let [b, _, _, k] = f.shape;
        let tensor =
            |v: &[f32]| Tensor::<4>::from_data(TensorData::new(v.to_vec(), f.shape), device);
        let keep = f.keep.iter().map(|&v| v as i64).collect::<Vec<_>>();
        let mask = crate::bert::extended_attention_mask(Tensor::<2, Int>::from_data(
            TensorData::new(keep, [b, k]),
            device,
        ));
        let s = tensor(&f.scores).require_grad();
        let p = attention_probs(s.clone(), mask, f.scaling, Some(tensor(&f.noise)));
        let grads = (p.clone() * tensor(&f.w)).sum().backward();
        let dx = values(s.grad(&grads).unwrap());
        for (what, ours, torch, exact) in [
            ("probabilities", values(p), &f.probs, &f.probs_f64),
            ("gradient", dx, &f.grad, &f.grad_f64),
        ] {
            let scale = exact.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let max_diff = |other: &mut dyn Iterator<Item = f64>| {
                ours.iter()
                    .zip(other)
                    .map(|(&a, e)| (a as f64 - e).abs())
                    .fold(0.0, f64::max)
                    / scale
            };
            let vs_torch = max_diff(&mut torch.iter().map(|&v| v as f64));
            let vs_exact = max_diff(&mut exact.iter().copied());
            assert!(
                vs_torch <= ATTENTION_TOL,
                "{what}: {vs_torch:e} from PyTorch"
            );
            assert!(
                vs_exact <= ATTENTION_TOL,
                "{what}: {vs_exact:e} from float64"
            );
        }
    }

    /// Off autodiff (inference) the kernel gives the composed values; rows are distributions; a
    /// fully masked row is uniform (as Hugging Face's eager attention with `finfo.min`); NaN in a
    /// row makes that row NaN and leaves the others finite.
    #[test]
    fn attention_probs_rows_masks_and_nan() {
        let device = Device::flex();
        let s = Tensor::<4>::from_floats([[[[1.0, 2.0, 3.0], [0.5, f32::NAN, 0.0]]]], &device);
        let bias = Tensor::<4>::from_floats([[[[0.0, 0.0, 0.0]]]], &device);
        let y = values(attention_probs(s, bias, 1.0, None));
        let expected = [0.090_030_57, 0.244_728_48, 0.665_240_94];
        for (a, e) in y[..3].iter().zip(expected) {
            assert!((a - e).abs() <= 1e-6, "{y:?}");
        }
        assert!(y[3..].iter().all(|v| v.is_nan()), "{y:?}");

        let s = Tensor::<4>::random([2, 3, 5, 11], Distribution::Normal(0.0, 3.0), &device);
        let keep = Tensor::<2, Int>::from_ints([[1; 11], [0; 11]], &device);
        let mask = crate::bert::extended_attention_mask(keep);
        let fused = attention_probs(s.clone(), mask.clone(), 0.3, None);
        assert_close(
            fused.clone(),
            composed_probs(s, mask, 0.3, None),
            "inference",
        );
        let sums = values(fused.clone().sum_dim(3));
        assert!(sums.iter().all(|v| (v - 1.0).abs() <= 1e-6), "{sums:?}");
        let masked = values(fused.slice(s![1..2, .., .., ..]));
        assert!(
            masked.iter().all(|v| (v - 1.0 / 11.0).abs() <= 1e-7),
            "{masked:?}"
        );
    }

    /// A bias with a gradient would lose it: refused.
    #[test]
    #[should_panic(expected = "constant bias")]
    fn attention_probs_refuse_a_tracked_bias() {
        let device = Device::flex().autodiff();
        let s = Tensor::<4>::zeros([1, 1, 2, 2], &device);
        let bias = Tensor::<4>::zeros([1, 1, 2, 2], &device).require_grad();
        let _ = attention_probs(s, bias, 1.0, None);
    }

    /// Values and the gradients of input, γ and β equal burn's `nn::LayerNorm` forward through
    /// autodiff's element-wise operations, with non-trivial γ, β and a random upstream gradient.
    #[test]
    fn layer_norm_matches_composed_layer_norm_and_its_gradients() {
        let device = Device::flex().autodiff();
        device.seed(12);
        let d = 16;
        let x = (Tensor::<3>::random([2, 5, d], Distribution::Normal(0.0, 2.0), &device) + 1.5)
            .require_grad();
        let w = Tensor::<3>::random([2, 5, d], Distribution::Normal(0.0, 1.0), &device);
        let gamma = Tensor::<1>::random([d], Distribution::Normal(1.0, 0.5), &device);
        let beta = Tensor::<1>::random([d], Distribution::Normal(0.0, 0.5), &device);
        let ours = LayerNorm {
            gamma: Param::from_tensor(gamma.clone()),
            beta: Param::from_tensor(beta.clone()),
            epsilon: 1e-5,
        };
        let mut theirs = burn::nn::LayerNormConfig::new(d)
            .with_epsilon(1e-5)
            .init(&device);
        theirs.gamma = Param::from_tensor(gamma);
        theirs.beta = Some(Param::from_tensor(beta));

        let fused = ours.forward(x.clone());
        let composed = theirs.forward(x.clone());
        assert_close(fused.clone(), composed.clone(), "layer norm values");
        let grads_fused = (fused * w.clone()).sum().backward();
        let grads_composed = (composed * w).sum().backward();
        assert_close(
            x.grad(&grads_fused).unwrap(),
            x.grad(&grads_composed).unwrap(),
            "input gradient",
        );
        assert_close(
            ours.gamma.val().grad(&grads_fused).unwrap(),
            theirs.gamma.val().grad(&grads_composed).unwrap(),
            "gamma gradient",
        );
        assert_close(
            ours.beta.val().grad(&grads_fused).unwrap(),
            theirs
                .beta
                .as_ref()
                .unwrap()
                .val()
                .grad(&grads_composed)
                .unwrap(),
            "beta gradient",
        );
    }

    /// The attention kernel equals the composed `softmax(Q Kᵀ s + bias) V` with a BERT padding
    /// mask (`f32::MIN` on padded keys, [`crate::bert::extended_attention_mask`]).
    #[test]
    fn attention_matches_composed_attention_with_padding_mask() {
        let device = Device::flex();
        device.seed(13);
        let qkv = || Tensor::<4>::random([2, 3, 5, 4], Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = (qkv(), qkv(), qkv());
        let keep = Tensor::<2, Int>::from_ints([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], &device);
        let bias = crate::bert::extended_attention_mask(keep);
        let scale = 0.5;
        let composed = activation::softmax(
            q.clone().matmul(k.clone().swap_dims(2, 3)) * scale + bias.clone(),
            3,
        )
        .matmul(v.clone());
        assert!(!attention_applies(&q), "Flex keeps the composed form");
        let fused = attention(q, k, v.clone(), bias, scale);
        assert_close(fused.clone(), composed, "attention");
        // The second example's queries see only its first three values.
        let first_three = v.slice(s![1..2, .., 0..3, ..]);
        let mixed = fused.slice(s![1..2, .., .., ..]);
        assert!(mixed.max().into_scalar::<f32>() <= first_three.max().into_scalar::<f32>() + 1e-6);
        assert!(!attention_applies(&Tensor::<1>::zeros(
            [1],
            &device.autodiff()
        )));
    }

    /// Off autodiff the fused operations are the backend's own (a LayerNorm with γ = 1, β = 0
    /// standardises each row).
    #[test]
    fn layer_norm_standardises_rows_without_autodiff() {
        let device = Device::flex();
        let norm = LayerNorm::new(4, 0.0, &device);
        let y = norm.forward(Tensor::<2>::from_floats([[1.0, 2.0, 3.0, 4.0]], &device));
        let s = 1.0 / 1.25f32.sqrt();
        y.into_data().assert_approx_eq::<f32>(
            &TensorData::from([[-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s]]),
            Tolerance::absolute(1e-6),
        );
    }
}
