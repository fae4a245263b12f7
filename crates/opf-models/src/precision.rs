//! Mixed precision (`--bf16` / `--fp16`) with PyTorch `torch.autocast` semantics: parameters,
//! optimizer state and the MPO decomposition stay in full precision, and only the compute-heavy
//! matrix products run in half precision.
//!
//! Under an [`Autocast`] guard ([`Precision::autocast`]) the models' projections
//! ([`crate::ProjLinear`], dense and MPO), the attention score and context products of BERT, BART
//! and T5, and T5's language-model head multiply half-precision copies of their operands and
//! return the product cast back to the operands' dtype (f32). Everything else (embeddings, layer
//! norm, softmax, activations, losses, reductions, the MPO core contraction) runs in f32 as
//! without the guard. The casts are autodiff operations, so the gradients flow back through the
//! half-precision products and arrive in f32 on the f32 parameters (master weights).
//!
//! # Why a scoped guard and not a module field
//!
//! The setting is a property of a forward pass, not of a model: the same model trains under
//! `--bf16` and is evaluated, merged and exported in f32. A thread-local guard (as
//! `torch.autocast`) reaches every layer without threading a flag through each `forward`
//! signature or each module struct, leaves the module structure, its records and the checkpoints
//! unchanged, and is restored when the guard drops. The casts are recorded in the autodiff graph,
//! so the backward pass needs no guard. The guard is per thread: a forward pass run on another
//! thread needs its own.
//!
//! # Tolerances and speed
//!
//! bf16 keeps f32's exponent range with an 8-bit significand (relative rounding 2⁻⁹ ≈ 2e-3 per
//! operand); f16 has an 11-bit significand (≈ 5e-4) but overflows above 65504, so f16 training
//! needs dynamic loss scaling (opf-train's `GradScaler`). burn's CPU backend (flex) computes the
//! half-precision products correctly but more slowly than f32 (MiniLM-shaped training step
//! ≈ 1.1–1.3× the f32 time: the casts around each product, no native half GEMM); the speed-up is
//! for GPUs with tensor cores.

use std::cell::Cell;
use std::fmt;
use std::marker::PhantomData;

use burn::tensor::{Device, FloatDType, Tensor, module};

use crate::ModelError;

/// The dtype of the compute-heavy matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32 (no autocast).
    #[default]
    F32,
    /// Products in bfloat16 (f32's exponent range, 8-bit significand).
    Bf16,
    /// Products in IEEE half precision (needs loss scaling to train).
    F16,
}

thread_local! {
    static CURRENT: Cell<Precision> = const { Cell::new(Precision::F32) };
}

impl Precision {
    /// The half-precision dtype of the products, `None` for [`Precision::F32`].
    pub fn half_dtype(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
            Precision::F16 => Some(FloatDType::F16),
        }
    }

    /// The precision in force on this thread (the innermost live [`Autocast`] guard's, else
    /// [`Precision::F32`]).
    pub fn current() -> Precision {
        CURRENT.with(Cell::get)
    }

    /// Makes `self` the precision of the matrix products on this thread until the returned guard
    /// drops, when the previous one comes back. Guards nest.
    #[must_use = "the precision reverts when the guard drops"]
    pub fn autocast(self) -> Autocast {
        let previous = CURRENT.with(|c| c.replace(self));
        Autocast {
            previous,
            _not_send: PhantomData,
        }
    }

    /// Checks that `device`'s backend can store and compute in this precision's dtype.
    ///
    /// # Errors
    ///
    /// [`ModelError::UnsupportedPrecision`] if the backend lacks the dtype (burn's
    /// `Device::supports_dtype`; e.g. bf16 on most wgpu adapters).
    pub fn check(self, device: &Device) -> Result<(), ModelError> {
        match self.half_dtype() {
            Some(dtype) if !device.supports_dtype(dtype) => Err(ModelError::UnsupportedPrecision {
                precision: self,
                device: format!("{device:?}"),
            }),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    /// Parses `f32`, `bf16` or `f16` (also `fp32`, `fp16`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f32" | "fp32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "f16" | "fp16" => Ok(Precision::F16),
            _ => Err(format!(
                "unknown precision {s:?}: expected f32, bf16 or f16"
            )),
        }
    }
}

/// Restores the previous [`Precision`] of this thread when dropped (from
/// [`Precision::autocast`]). Not `Send`: the setting belongs to the thread that made it.
#[derive(Debug)]
pub struct Autocast {
    previous: Precision,
    _not_send: PhantomData<*const ()>,
}

impl Drop for Autocast {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.previous));
    }
}

/// `lhs.matmul(rhs)`, in the current [`Precision`]: under a half-precision guard both operands are
/// cast to it and the product is cast back to `lhs`'s dtype; otherwise a plain matmul.
pub fn matmul<const D: usize>(lhs: Tensor<D>, rhs: Tensor<D>) -> Tensor<D> {
    match Precision::current().half_dtype() {
        None => lhs.matmul(rhs),
        Some(half) => {
            let dtype = lhs.dtype();
            lhs.cast(half).matmul(rhs.cast(half)).cast(dtype)
        }
    }
}

/// `x W (+ b)` with `W` `[d_input, d_output]`, as burn's `Linear::forward`: in f32 it is burn's
/// `linear`, on the rows folded into one axis where [`folds_rows`] says so; under a half-precision
/// guard the product runs in that precision ([`matmul`], always folded: one GEMM) and the bias is
/// added in f32.
///
/// # Shapes
///
/// - input: `[..., d_input]`
/// - output: `[..., d_output]`
pub(crate) fn linear<const D: usize>(
    input: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    let [d_input, d_output] = weight.dims();
    assert_eq!(input.dims()[D - 1], d_input, "input width must be d_input");
    if Precision::current() == Precision::F32 {
        return if folds_rows(&input.device()) {
            on_rows(input, d_output, |x| module::linear(x, weight, bias))
        } else {
            module::linear(input, weight, bias)
        };
    }
    on_rows(input, d_output, |x| {
        let out = matmul(x, weight);
        match bias {
            Some(b) => out + b.unsqueeze::<2>(),
            None => out,
        }
    })
}

/// Applies a row-wise map `[rows, d_in] -> [rows, d_out]` to `[..., d_in]` by folding the leading
/// axes into the row axis, then unfolds the result to `[..., d_out]`.
pub(crate) fn on_rows<const D: usize>(
    input: Tensor<D>,
    d_out: usize,
    f: impl FnOnce(Tensor<2>) -> Tensor<2>,
) -> Tensor<D> {
    let mut dims = input.dims();
    let rows = dims[..D - 1].iter().product();
    let out = f(input.reshape([rows, dims[D - 1]]));
    dims[D - 1] = d_out;
    out.reshape(dims)
}

/// Whether a projection of a `[batch, seq, d_in]` input on `device` should run as one
/// `[batch * seq, d_in] x [d_in, d_out]` GEMM ([`on_rows`]) rather than a batched matmul against
/// the weight broadcast over `batch`.
///
/// burn 0.22's `linear` keeps the batched form whenever `seq` is a multiple of 32 or folding
/// would not make the product squarer (`burn_std::MatmulTransformPolicy::BetterTiling`), which
/// is nearly always for BERT batches. LibTorch runs that as `batch` small GEMMs (`torch.matmul`
/// expands the weight into a `bmm`): folding made MiniLM-L6 training on MRPC 1.27x and
/// evaluation 1.19x faster there. burn-flex instead runs the batches in parallel, one
/// single-threaded GEMM each (packing the weight again for each), which beat its one
/// multi-threaded GEMM by 1.2x in evaluation, so Flex keeps the batched form off autodiff. In
/// training (under autodiff) folding is faster on Flex too: six alternating runs of ten MiniLM-L6
/// steps on MRPC trained 1.12-1.43x (median 1.29x) faster folded, with the same losses.
pub(crate) fn folds_rows(device: &Device) -> bool {
    #[cfg(feature = "cpu")]
    return *device != Device::flex() || device.is_autodiff();
    #[cfg(not(feature = "cpu"))]
    {
        let _ = device;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{DType, Distribution, Tolerance};

    #[test]
    fn guards_nest_and_restore() {
        assert_eq!(Precision::current(), Precision::F32);
        {
            let _outer = Precision::Bf16.autocast();
            assert_eq!(Precision::current(), Precision::Bf16);
            {
                let _inner = Precision::F16.autocast();
                assert_eq!(Precision::current(), Precision::F16);
            }
            assert_eq!(Precision::current(), Precision::Bf16);
        }
        assert_eq!(Precision::current(), Precision::F32);
    }

    #[test]
    fn parses_and_prints() {
        for p in [Precision::F32, Precision::Bf16, Precision::F16] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        assert_eq!("FP16".parse::<Precision>(), Ok(Precision::F16));
        assert!("f8".parse::<Precision>().is_err());
        assert_eq!(serde_json::to_string(&Precision::Bf16).unwrap(), "\"bf16\"");
    }

    #[test]
    fn cpu_backend_supports_both_half_types() {
        let device = Device::flex().autodiff();
        for p in [Precision::F32, Precision::Bf16, Precision::F16] {
            p.check(&device).unwrap();
        }
    }

    /// ‖a − b‖_F / ‖b‖_F.
    fn rel_err(a: Tensor<2>, b: Tensor<2>) -> f32 {
        let diff = (a - b.clone()).square().sum().sqrt().into_scalar::<f32>();
        diff / b.square().sum().sqrt().into_scalar::<f32>()
    }

    /// The product runs in half (its rounding shows) and comes back in f32; the gradient of an
    /// f32 parameter through it arrives in f32 and matches the f32 gradient to half precision.
    #[test]
    fn half_matmul_is_differentiable_and_returns_f32() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let x = Tensor::<2>::random([5, 16], Distribution::Normal(0.0, 1.0), &device);
        let w =
            Tensor::<2>::random([16, 4], Distribution::Normal(0.0, 1.0), &device).require_grad();
        let exact = x.clone().matmul(w.clone());
        let exact_grad = w.grad(&exact.clone().square().sum().backward()).unwrap();
        for (p, tol) in [(Precision::Bf16, 1e-2), (Precision::F16, 2e-3)] {
            let _guard = p.autocast();
            let y = matmul(x.clone(), w.clone());
            assert_eq!(y.dtype(), DType::F32);
            let err = rel_err(y.clone(), exact.clone());
            assert!(err > 0.0 && err < tol, "{p} forward: {err}");
            let grad = w.grad(&y.square().sum().backward()).unwrap();
            assert_eq!(grad.dtype(), DType::F32);
            let err = rel_err(grad, exact_grad.clone());
            assert!(err > 0.0 && err < tol, "{p} gradient: {err}");
        }
    }

    /// In f32, [`linear`] is burn's `linear`; folding `[batch, seq]` into rows ([`on_rows`])
    /// computes the same projection as burn's batched form (f32, default tolerance); Flex keeps
    /// the batched form for inference and folds under autodiff.
    #[test]
    fn linear_and_folded_rows_match_burn_linear_in_f32() {
        let device = Device::flex();
        device.seed(4);
        let layer = crate::linear::init_dense(6, 3, 0.5, &device);
        let x = Tensor::<3>::random([2, 4, 6], Distribution::Normal(0.0, 1.0), &device);
        let bias = layer.bias.as_ref().map(|b| b.val() + 0.25);
        let expected = burn::tensor::module::linear(x.clone(), layer.weight.val(), bias.clone());
        linear(x.clone(), layer.weight.val(), bias)
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::default());

        let folded = on_rows(x.clone(), 3, |rows| {
            assert_eq!(rows.dims(), [8, 6]);
            layer.forward(rows)
        });
        assert_eq!(folded.dims(), [2, 4, 3]);
        folded
            .into_data()
            .assert_approx_eq::<f32>(&layer.forward(x).into_data(), Tolerance::default());
        assert!(!folds_rows(&device));
        assert!(folds_rows(&device.autodiff()));
    }
}
