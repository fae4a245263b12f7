//! The only place that touches faer: a thin SVD and a GEMM on row-major `f64` buffers.
//!
//! faer stores matrices column-major; a row-major buffer is read as the transpose of a column-major
//! one, so no data is copied on the way in.

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, get_global_parallelism};

use crate::MpoError;

/// Thin SVD `A = U diag(s) Vᵀ` of a row-major `m × n` matrix, with `k = min(m, n)`.
pub(crate) struct Svd {
    /// Left singular vectors, row-major `m × k`.
    pub u: Vec<f64>,
    /// Singular values, descending, length `k`.
    pub s: Vec<f64>,
    /// Right singular vectors transposed, row-major `k × n`.
    pub vt: Vec<f64>,
}

/// Thin SVD of the row-major `m × n` matrix `a` (faer `Mat::thin_svd`, global parallelism).
pub(crate) fn thin_svd(a: &[f64], m: usize, n: usize) -> Result<Svd, MpoError> {
    debug_assert_eq!(a.len(), m * n);
    let svd = MatRef::from_row_major_slice(a, m, n)
        .thin_svd()
        .map_err(|_| MpoError::SvdNoConvergence { rows: m, cols: n })?;
    let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
    let k = m.min(n);
    let mut u_rm = vec![0.0; m * k];
    for row in 0..m {
        for col in 0..k {
            u_rm[row * k + col] = u[(row, col)];
        }
    }
    let mut vt = vec![0.0; k * n];
    for (a_idx, vt_row) in vt.chunks_exact_mut(n).enumerate() {
        for (c, x) in vt_row.iter_mut().enumerate() {
            *x = v[(c, a_idx)];
        }
    }
    Ok(Svd {
        u: u_rm,
        s: (0..k).map(|i| s[i]).collect(),
        vt,
    })
}

/// Row-major `C (m × n) = A (m × k) · B (k × n)`.
///
/// Computed as `Cᵀ = Bᵀ Aᵀ`, which is exactly the column-major reading of the row-major buffers.
pub(crate) fn matmul_rm(a: &[f64], m: usize, k: usize, b: &[f64], n: usize) -> Vec<f64> {
    debug_assert_eq!(a.len(), m * k);
    debug_assert_eq!(b.len(), k * n);
    let mut c = vec![0.0; m * n];
    matmul(
        MatMut::from_column_major_slice_mut(&mut c, n, m),
        Accum::Replace,
        MatRef::from_column_major_slice(b, n, k),
        MatRef::from_column_major_slice(a, k, m),
        1.0,
        get_global_parallelism(),
    );
    c
}

/// Singular values of a row-major `m × n` matrix, descending (test reference).
#[cfg(test)]
pub(crate) fn singular_values(a: &[f64], m: usize, n: usize) -> Vec<f64> {
    MatRef::from_row_major_slice(a, m, n)
        .singular_values()
        .expect("reference SVD converges")
}
