//! Test helpers: random matrices and reference computations written independently of the
//! library's own index arithmetic.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::{Mpo, MpoShape};

/// Standard normal entries (Box–Muller), deterministic in `seed`.
pub fn gaussian(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..len)
        .map(|_| {
            let (u1, u2): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        })
        .collect()
}

/// `‖a − b‖_F / ‖b‖_F`.
pub fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let n: f64 = b.iter().map(|y| y * y).sum();
    (d / n).sqrt()
}

/// `‖a − b‖_F`.
pub fn abs_err(a: &[f64], b: &[f64]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f64>()
        .sqrt()
}

/// Row-major digits of `index` in the mixed radix `factors` (first factor most significant).
pub fn digits(mut index: usize, factors: &[usize]) -> Vec<usize> {
    let mut out = vec![0; factors.len()];
    for k in (0..factors.len()).rev() {
        out[k] = index % factors[k];
        index /= factors[k];
    }
    out
}

/// The matrix of the interleaved tensor cut after site `b`: rows enumerate
/// `(i_1, j_1, …, i_b, j_b)`, columns the remaining pairs, both row-major (spec §1.2).
pub fn cut_matrix(w: &[f64], shape: &MpoShape, b: usize) -> (Vec<f64>, usize, usize) {
    let (i, j) = (shape.row_factors(), shape.col_factors());
    let p: Vec<usize> = i.iter().zip(j).map(|(a, c)| a * c).collect();
    let (m, n): (usize, usize) = (p[..b].iter().product(), p[b..].iter().product());
    let cols = shape.cols();
    let mut out = vec![0.0; m * n];
    for (row, w_row) in w.chunks_exact(cols).enumerate() {
        let a = digits(row, i);
        for (col, &x) in w_row.iter().enumerate() {
            let c = digits(col, j);
            let (mut left, mut right) = (0, 0);
            for k in 0..p.len() {
                if k < b {
                    left = left * p[k] + a[k] * j[k] + c[k];
                } else {
                    right = right * p[k] + a[k] * j[k] + c[k];
                }
            }
            out[left * n + right] = x;
        }
    }
    (out, m, n)
}

/// Entry-by-entry contraction `W[row, col] = Σ Π_k core_k[r_k, a_k, b_k, r_{k+1}]`.
pub fn naive_dense(mpo: &Mpo) -> Vec<f64> {
    let shape = mpo.shape();
    let (i, j) = (shape.row_factors(), shape.col_factors());
    let mut out = Vec::with_capacity(shape.dense_params());
    for row in 0..shape.rows() {
        let a = digits(row, i);
        for col in 0..shape.cols() {
            let c = digits(col, j);
            let mut v = vec![1.0];
            for (k, core) in mpo.cores().iter().enumerate() {
                let [r0, ik, jk, r1] = core.dims();
                let d = core.data();
                v = (0..r1)
                    .map(|y| {
                        (0..r0)
                            .map(|x| v[x] * d[((x * ik + a[k]) * jk + c[k]) * r1 + y])
                            .sum()
                    })
                    .collect();
            }
            out.push(v[0]);
        }
    }
    out
}

/// Gram matrices of the left block at every bond `b = 1..n` (cores `0..b`, as `(∏, r_b)`:
/// `Lᵀ L`) and of the right block (cores `b..n`, as `(r_b, ∏)`: `R Rᵀ`), row-major `r_b × r_b`.
pub fn block_grams(mpo: &Mpo) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let cores = mpo.cores();
    let n = cores.len();
    let mut left = Vec::new();
    // acc: (P × r) row-major.
    let mut acc = vec![1.0];
    let mut rows = 1;
    for core in &cores[..n - 1] {
        let [r0, ik, jk, r1] = core.dims();
        let d = core.data();
        let mut next = vec![0.0; rows * ik * jk * r1];
        for p in 0..rows {
            for x in 0..r0 {
                let s = acc[p * r0 + x];
                for q in 0..ik * jk * r1 {
                    next[p * ik * jk * r1 + q] += s * d[x * ik * jk * r1 + q];
                }
            }
        }
        acc = next;
        rows *= ik * jk;
        left.push(gram(&acc, rows, r1, true));
    }
    let mut right = vec![Vec::new(); n - 1];
    // acc: (r × P) row-major.
    let mut acc = vec![1.0];
    let mut cols = 1;
    for b in (1..n).rev() {
        let [r0, ik, jk, r1] = cores[b].dims();
        let d = cores[b].data();
        let mut next = vec![0.0; r0 * ik * jk * cols];
        for x in 0..r0 * ik * jk {
            for y in 0..r1 {
                let s = d[x * r1 + y];
                for c in 0..cols {
                    next[x * cols + c] += s * acc[y * cols + c];
                }
            }
        }
        acc = next;
        cols *= ik * jk;
        right[b - 1] = gram(&acc, r0, cols, false);
    }
    (left, right)
}

/// `AᵀA` (columns) or `AAᵀ` (rows) of a row-major `m × n` matrix.
fn gram(a: &[f64], m: usize, n: usize, of_columns: bool) -> Vec<f64> {
    let (dim, len) = if of_columns { (n, m) } else { (m, n) };
    let at = |v: usize, t: usize| {
        if of_columns {
            a[t * n + v]
        } else {
            a[v * n + t]
        }
    };
    let mut g = vec![0.0; dim * dim];
    for x in 0..dim {
        for y in 0..dim {
            g[x * dim + y] = (0..len).map(|t| at(x, t) * at(y, t)).sum();
        }
    }
    g
}
