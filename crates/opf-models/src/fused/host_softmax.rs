//! Attention probabilities on burn-flex's f32 tensors: `softmax(scores · scale + bias) ⊙ noise`
//! along the last axis, and its gradient, in one row-parallel pass each.
//!
//! The composed form is five passes forward (scale, bias, softmax, dropout's product, and
//! burn-flex's binary operations run on one thread) and six backward (dropout's product, the
//! softmax gradient's product, row sum, product and difference, the scale) over the largest
//! tensors of a BERT layer, `[batch, heads, seq, seq]`. Here each row is read once, while it is
//! in cache, and the rows are split across rayon's threads.
//!
//! - forward: `t = s·scale + b` (two roundings, as the composed form), `y = exp(t − max t) / Σ`
//!   (the sum's reciprocal times each term, as PyTorch's `_vec_softmax_lastdim`), `out = y ⊙ m`;
//! - backward, with `g` the gradient of `out`: `g' = g ⊙ m`, `dt = y ⊙ g' − y Σ(y ⊙ g')`,
//!   `ds = dt · scale`.
//!
//! NaN in a row makes the whole row NaN, as PyTorch's softmax.

use super::host::{contiguous, elements, exp_nonpositive};
use burn::backend::flex::FlexTensor;
use burn::backend::{DType, TensorMetadata};
use burn::tensor::{Shape, TensorData};
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Rows per rayon task.
const ROWS_PER_TASK: usize = 64;
/// Accumulator lanes of the row reductions (one AVX2 register of f32).
const LANES: usize = 8;

/// The additive bias broadcast to `[batch, heads, queries, keys]`: where each row starts.
struct Bias<'a> {
    data: &'a [f32],
    heads: usize,
    queries: usize,
    /// Element strides of the batch, head and query axes (0 where the bias broadcasts).
    strides: [usize; 3],
}

impl<'a> Bias<'a> {
    /// `None` unless `bias` has rank 4, `keys` last, and each other axis 1 or that of `scores`.
    fn new(data: &'a [f32], bias: &Shape, scores: &Shape) -> Option<Self> {
        if bias.num_dims() != 4 || scores.num_dims() != 4 || bias[3] != scores[3] {
            return None;
        }
        if (0..3).any(|d| bias[d] != 1 && bias[d] != scores[d]) {
            return None;
        }
        let stride = |d: usize| {
            if bias[d] == 1 {
                0
            } else {
                (d + 1..4).map(|e| bias[e]).product()
            }
        };
        Some(Self {
            data,
            heads: scores[1],
            queries: scores[2],
            strides: [stride(0), stride(1), stride(2)],
        })
    }

    /// The bias row of score row `row` (row-major over batch, head, query).
    #[inline(always)]
    fn row(&self, row: usize, keys: usize) -> &'a [f32] {
        let (batch, rest) = (
            row / (self.heads * self.queries),
            row % (self.heads * self.queries),
        );
        let (head, query) = (rest / self.queries, rest % self.queries);
        let [sb, sh, sq] = self.strides;
        let start = batch * sb + head * sh + query * sq;
        &self.data[start..start + keys]
    }
}

/// Largest element (NaN elements ignored; they reach the result through the exponentials).
#[inline(always)]
fn row_max(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a = if v > *a { v } else { *a };
        }
    }
    acc.iter()
        .chain(tail)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// `x ← exp(x − max)` over the row, returning the sum; in [`LANES`] independent lanes, so that
/// the loop vectorises.
#[inline(always)]
fn exp_sum_in_place(x: &mut [f32], max: f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c.iter_mut()) {
            *v = exp_nonpositive(*v - max);
            *a += *v;
        }
    }
    let mut tail = 0.0;
    for v in chunks.into_remainder() {
        *v = exp_nonpositive(*v - max);
        tail += *v;
    }
    acc.iter().sum::<f32>() + tail
}

/// `Σ a ⊙ b` in [`LANES`] independent lanes.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (ca, cb) in ca.zip(cb) {
        for ((s, x), y) in acc.iter_mut().zip(ca).zip(cb) {
            *s += x * y;
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `y = softmax(s·scale + b)` of one row.
#[inline(always)]
fn softmax_row(s: &[f32], b: &[f32], scale: f32, y: &mut [f32]) {
    for ((y, &s), &b) in y.iter_mut().zip(s).zip(b) {
        *y = s * scale + b;
    }
    let max = row_max(y);
    let inv = 1.0 / exp_sum_in_place(y, max);
    y.iter_mut().for_each(|y| *y *= inv);
}

/// One task's rows of the forward pass.
struct ForwardRows<'a> {
    scores: &'a [f32],
    bias: &'a Bias<'a>,
    noise: Option<&'a [f32]>,
    scale: f32,
    keys: usize,
    first_row: usize,
    y: &'a mut [f32],
    /// `y ⊙ noise`; empty without noise.
    out: &'a mut [f32],
}

impl WithSimd for ForwardRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let k = self.keys;
        for (i, (s, y)) in self.scores.chunks(k).zip(self.y.chunks_mut(k)).enumerate() {
            softmax_row(s, self.bias.row(self.first_row + i, k), self.scale, y);
            if let Some(noise) = self.noise {
                let (m, out) = (
                    &noise[i * k..(i + 1) * k],
                    &mut self.out[i * k..(i + 1) * k],
                );
                for ((o, &y), &m) in out.iter_mut().zip(y.iter()).zip(m) {
                    *o = y * m;
                }
            }
        }
    }
}

/// One task's rows of the backward pass.
struct BackwardRows<'a> {
    y: &'a [f32],
    noise: Option<&'a [f32]>,
    grad: &'a [f32],
    scale: f32,
    keys: usize,
    dx: &'a mut [f32],
}

impl WithSimd for BackwardRows<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let k = self.keys;
        for (i, dx) in self.dx.chunks_mut(k).enumerate() {
            let (y, g) = (&self.y[i * k..(i + 1) * k], &self.grad[i * k..(i + 1) * k]);
            match self.noise {
                Some(noise) => {
                    let m = &noise[i * k..(i + 1) * k];
                    for ((d, &g), &m) in dx.iter_mut().zip(g).zip(m) {
                        *d = g * m;
                    }
                }
                None => dx.copy_from_slice(g),
            }
            let dot = dot(y, dx);
            for (d, &y) in dx.iter_mut().zip(y) {
                *d = (y * *d - y * dot) * self.scale;
            }
        }
    }
}

/// `(softmax(scores · scale + bias), that ⊙ noise)` along the last axis; the second is `None`
/// without noise. `None` unless every tensor is f32, `scores` (and `noise`) `[batch, heads,
/// queries, keys]` and `bias` broadcastable to it with `keys` last.
pub(crate) fn attention_probs(
    scores: &FlexTensor,
    bias: &FlexTensor,
    scale: f32,
    noise: Option<&FlexTensor>,
) -> Option<(FlexTensor, Option<FlexTensor>)> {
    let f32s = [Some(scores), Some(bias), noise];
    if f32s.iter().flatten().any(|t| t.dtype() != DType::F32) {
        return None;
    }
    let shape = scores.shape();
    if noise.is_some_and(|m| m.shape() != shape) {
        return None;
    }
    let bias_contiguous = contiguous(bias);
    let bias = Bias::new(elements(&bias_contiguous), &bias.shape(), &shape)?;
    let keys = shape[3];
    let n = shape.num_elements();
    if n == 0 {
        return None;
    }
    let scores_contiguous = contiguous(scores);
    let noise_contiguous = noise.map(contiguous);
    let (s, m) = (
        elements(&scores_contiguous),
        noise_contiguous.as_deref().map(elements),
    );
    let mut y = vec![0.0f32; n];
    let mut out = vec![0.0f32; if m.is_some() { n } else { 0 }];
    let task = ROWS_PER_TASK * keys;
    let arch = Arch::new();
    let out_chunks: Vec<&mut [f32]> = if m.is_some() {
        out.chunks_mut(task).collect()
    } else {
        (0..n.div_ceil(task)).map(|_| Default::default()).collect()
    };
    y.par_chunks_mut(task)
        .zip(out_chunks)
        .enumerate()
        .for_each(|(t, (y, out))| {
            let rows = t * task..t * task + y.len();
            arch.dispatch(ForwardRows {
                scores: &s[rows.clone()],
                bias: &bias,
                noise: m.map(|m| &m[rows]),
                scale,
                keys,
                first_row: t * ROWS_PER_TASK,
                y,
                out,
            })
        });
    let tensor = |v: Vec<f32>| FlexTensor::from_data(TensorData::new(v, shape.clone()));
    let out = m.is_some().then(|| tensor(out));
    Some((tensor(y), out))
}

/// The gradient of [`attention_probs`]' output with respect to `scores`, from the softmax `y`,
/// the noise and the output's gradient `grad`. `None` unless all are f32 of one rank-4 shape.
pub(crate) fn attention_probs_grad(
    y: &FlexTensor,
    noise: Option<&FlexTensor>,
    grad: &FlexTensor,
    scale: f32,
) -> Option<FlexTensor> {
    let shape = y.shape();
    let tensors = [Some(y), noise, Some(grad)];
    let ok = tensors
        .iter()
        .flatten()
        .all(|t| t.dtype() == DType::F32 && t.shape() == shape);
    if !ok || shape.num_dims() != 4 || shape.num_elements() == 0 {
        return None;
    }
    let keys = shape[3];
    let (y_contiguous, grad_contiguous) = (contiguous(y), contiguous(grad));
    let noise_contiguous = noise.map(contiguous);
    let (y, g, m) = (
        elements(&y_contiguous),
        elements(&grad_contiguous),
        noise_contiguous.as_deref().map(elements),
    );
    let mut dx = vec![0.0f32; y.len()];
    let task = ROWS_PER_TASK * keys;
    let arch = Arch::new();
    dx.par_chunks_mut(task).enumerate().for_each(|(t, dx)| {
        let rows = t * task..t * task + dx.len();
        arch.dispatch(BackwardRows {
            y: &y[rows.clone()],
            noise: m.map(|m| &m[rows.clone()]),
            grad: &g[rows],
            scale,
            keys,
            dx,
        })
    });
    Some(FlexTensor::from_data(TensorData::new(dx, shape)))
}
