//! Exact GELU and its gradient on burn-flex's f32 tensors: one vectorised pass each, as PyTorch's
//! CPU kernels.
//!
//! burn-flex has no GELU of its own: burn's default composes it from five element-wise passes
//! with libm's scalar `erff` (branchy), and the backward from more. In a MiniLM training step on
//! MRPC, `erff` and its `expf` took ~12 % of the samples; these kernels take ~1.6 %.
//!
//! Here both follow PyTorch's AVX2 kernels, `approximate='none'`:
//!
//! - forward, `GeluKernelImpl` (`aten/src/ATen/native/cpu/Activation.cpp`):
//!   `x · 0.5 · (1 + erf(x / √2))`;
//! - backward, `GeluBackwardKernelImpl` (same file):
//!   `g · (Φ(x) + x φ(x))`, `Φ(x) = 0.5 (1 + erf(x / √2))`, `φ(x) = exp(−x² / 2) / √(2π)`;
//! - `erf`, `Vectorized<float>::erf` (`aten/src/ATen/cpu/vec/vec256/vec256_float.h`):
//!   Abramowitz & Stegun 7.1.26, `1 − (a₁t + … + a₅t⁵) e^{−x²}` with `t = 1 / (1 + p|x|)`
//!   (absolute error ≤ 1.5e-7), evaluated with fused multiply-adds;
//! - `exp` of a non-positive argument: Cephes' `expf` (range reduction by `ln 2` in two parts,
//!   degree-7 polynomial; PyTorch uses Sleef's `expf8_u10`, both within about an ulp).
//!
//! The loops are branch-free so that LLVM vectorises them; [`pulp::Arch::dispatch`] compiles them
//! for AVX2 + FMA (or AVX-512) when the CPU has them, and rayon splits the buffer across threads.

use super::host::{contiguous, elements, exp_nonpositive};
use burn::backend::flex::FlexTensor;
use burn::backend::{DType, TensorMetadata};
use burn::tensor::TensorData;
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Elements per rayon task (64 KiB of f32).
const CHUNK: usize = 1 << 14;

/// `1 / √2`.
const SQRT1_2: f32 = std::f32::consts::FRAC_1_SQRT_2;
/// `1 / √(2π)` in f32.
const INV_SQRT_2PI: f32 = super::INV_SQRT_2PI as f32;

/// `erf(x)` as PyTorch's `Vectorized<float>::erf` (A&S 7.1.26).
#[inline(always)]
fn erf(x: f32) -> f32 {
    const P: f32 = 0.327_591_1;
    const A: [f32; 5] = [
        1.061_405_4,
        -1.453_152,
        1.421_413_8,
        -0.284_496_74,
        0.254_829_6,
    ];
    let t = 1.0 / P.mul_add(x.abs(), 1.0);
    let r = A[1..].iter().fold(A[0], |acc, &c| acc.mul_add(t, c));
    let e = exp_nonpositive(-(x * x));
    (-e * t).mul_add(r, 1.0).copysign(x)
}

/// `x Φ(x)`.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    x * 0.5 * (1.0 + erf(x * SQRT1_2))
}

/// `g (Φ(x) + x φ(x))`, the gradient of [`gelu`] at `x` times `g`.
#[inline(always)]
fn gelu_grad(x: f32, g: f32) -> f32 {
    let cdf = 0.5 * (1.0 + erf(x * SQRT1_2));
    let pdf = INV_SQRT_2PI * exp_nonpositive(x * x * -0.5);
    g * (cdf + x * pdf)
}

/// `out[i] = gelu(x[i])` (`grad: None`) or `out[i] = gelu'(x[i]) · grad[i]` over one chunk.
///
/// A [`WithSimd`] operation rather than a closure: pulp compiles `with_simd` (always inlined)
/// inside its AVX2/AVX-512 entry points, so the loop is vectorised with FMA. A closure body is
/// a function of its own, compiled for the baseline target (`mul_add` there calls `fmaf`).
struct GeluChunk<'a> {
    x: &'a [f32],
    grad: Option<&'a [f32]>,
    out: &'a mut [f32],
}

impl WithSimd for GeluChunk<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        match self.grad {
            None => {
                for (o, &x) in self.out.iter_mut().zip(self.x) {
                    *o = gelu(x);
                }
            }
            Some(grad) => {
                for ((o, &x), &g) in self.out.iter_mut().zip(self.x).zip(grad) {
                    *o = gelu_grad(x, g);
                }
            }
        }
    }
}

/// `out[i] = gelu(x[i])`, vectorised and split across rayon's threads.
pub(crate) fn gelu_slice(x: &[f32], out: &mut [f32]) {
    let arch = Arch::new();
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(out, x)| arch.dispatch(GeluChunk { x, grad: None, out }));
}

/// `out[i] = gelu'(x[i]) · g[i]`, vectorised and split across rayon's threads.
pub(crate) fn gelu_grad_slice(x: &[f32], g: &[f32], out: &mut [f32]) {
    let arch = Arch::new();
    out.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK)))
        .for_each(|(out, (x, g))| {
            arch.dispatch(GeluChunk {
                x,
                grad: Some(g),
                out,
            })
        });
}

/// [`gelu_slice`] on a tensor; `None` unless it is f32.
pub(crate) fn gelu_tensor(x: &FlexTensor) -> Option<FlexTensor> {
    if x.dtype() != DType::F32 {
        return None;
    }
    let x_contiguous = contiguous(x);
    let input = elements(&x_contiguous);
    let mut out = vec![0.0; input.len()];
    gelu_slice(input, &mut out);
    Some(FlexTensor::from_data(TensorData::new(out, x.shape())))
}

/// [`gelu_grad_slice`] on tensors of one shape; `None` unless both are f32.
pub(crate) fn gelu_grad_tensor(x: &FlexTensor, grad: &FlexTensor) -> Option<FlexTensor> {
    if x.dtype() != DType::F32 || grad.dtype() != DType::F32 {
        return None;
    }
    assert_eq!(x.shape(), grad.shape(), "GELU input and gradient shapes");
    let (x_contiguous, grad_contiguous) = (contiguous(x), contiguous(grad));
    let (input, g) = (elements(&x_contiguous), elements(&grad_contiguous));
    let mut out = vec![0.0; input.len()];
    gelu_grad_slice(input, g, &mut out);
    Some(FlexTensor::from_data(TensorData::new(out, x.shape())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The threaded, dispatched loops give each element exactly the scalar functions' value
    /// (FMA rounds once either way), across chunk boundaries and a ragged tail.
    #[test]
    fn slices_equal_the_scalar_functions_across_chunks() {
        let n = 3 * CHUNK + 5;
        let x: Vec<f32> = (0..n).map(|i| (i as f32 * 0.618_034).sin() * 9.0).collect();
        let g: Vec<f32> = (0..n).map(|i| (i as f32 * 0.414_213_6).cos()).collect();
        let (mut y, mut dx) = (vec![f32::NAN; n], vec![f32::NAN; n]);
        gelu_slice(&x, &mut y);
        gelu_grad_slice(&x, &g, &mut dx);
        for i in 0..n {
            assert_eq!(y[i].to_bits(), gelu(x[i]).to_bits(), "gelu at {i}");
            assert_eq!(
                dx[i].to_bits(),
                gelu_grad(x[i], g[i]).to_bits(),
                "grad at {i}"
            );
        }
    }
}
