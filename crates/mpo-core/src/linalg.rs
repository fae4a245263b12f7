//! The only place that touches faer: a truncated SVD and a GEMM on row-major `f64` buffers.
//!
//! faer stores matrices column-major; a row-major buffer is read as the transpose of a column-major
//! one, so no data is copied on the way in.

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, MatMut, MatRef, get_global_parallelism};

use crate::MpoError;

mod eigen;

/// Truncated SVD `A ≈ U diag(s[..r]) Vᵀ` of a row-major `m × n` matrix, `k = min(m, n)`.
pub(crate) struct Svd {
    /// Left singular vectors, row-major `m × r`.
    pub u: Left,
    /// All `k` singular values, descending.
    pub s: Vec<f64>,
    /// The first `r` right singular vectors as rows, row-major `r × n`.
    pub vt: Vec<f64>,
}

/// The left factor `U` (row-major `m × r`) of an [`Svd`].
pub(crate) enum Left {
    /// `U` itself.
    Dense(Vec<f64>),
    /// `U = A W`, not formed: the cut `A` (row-major `m × n`) and `W = V_r diag(s)⁻¹` (row-major
    /// `n × r`), from the Gram route of a tall cut. A product `U B` then costs one large GEMM,
    /// `A (W B)`, where forming `U` first would cost two.
    Product {
        /// The cut, row-major `m × n`.
        a: Vec<f64>,
        /// `V_r diag(s)⁻¹`, row-major `n × r`.
        w: Vec<f64>,
    },
}

impl Left {
    /// `U B` for a row-major `r × cols` matrix `B`; `U` has `m` rows and `r` columns.
    pub(crate) fn matmul(&self, m: usize, r: usize, b: &[f64], cols: usize) -> Vec<f64> {
        match self {
            Left::Dense(u) => matmul_rm(u, m, r, b, cols),
            Left::Product { a, w } => {
                let n = a.len() / m;
                matmul_rm(a, m, n, &matmul_rm(w, n, r, b, cols), cols)
            }
        }
    }

    /// `U diag(d)`, row-major `m × r`.
    pub(crate) fn scale_cols(self, m: usize, d: &[f64]) -> Vec<f64> {
        let r = d.len();
        match self {
            Left::Dense(mut u) => {
                scale_cols_in_place(&mut u, d);
                u
            }
            Left::Product { a, mut w } => {
                scale_cols_in_place(&mut w, d);
                matmul_rm(&a, m, a.len() / m, &w, r)
            }
        }
    }

    /// `U`, formed: row-major `m × r`.
    pub(crate) fn into_dense(self, m: usize, r: usize) -> Vec<f64> {
        match self {
            Left::Dense(u) => u,
            Left::Product { a, w } => matmul_rm(&a, m, a.len() / m, &w, r),
        }
    }
}

/// `A ← A diag(d)` for a row-major `A` with `d.len()` columns.
pub(crate) fn scale_cols_in_place(a: &mut [f64], d: &[f64]) {
    a.chunks_exact_mut(d.len())
        .for_each(|row| row.iter_mut().zip(d).for_each(|(x, &f)| *x *= f));
}

/// Largest condition number `s_0 / s_{k-1}` of a cut for which [`svd`] takes the Gram route.
/// Forming the Gram matrix squares the condition number: the vectors come out orthonormal and
/// every singular value (discarded ones too, which give the error bound) relatively accurate to
/// about `ε·κ²`, ~1e-10 at `κ = 10³`. Worse-conditioned cuts (rank-deficient ones included) go
/// through faer's bidiagonal SVD.
const GRAM_MAX_CONDITION: f64 = 1e3;

/// SVD of the row-major `m × n` matrix `a`, keeping the rank `rank(s)` chosen from the full
/// descending spectrum (clamped to `1..=k`).
///
/// Well-conditioned cuts use the Gram route: one GEMM for the `k × k` Gram matrix on the short
/// side, a symmetric eigendecomposition, and the other factor from one GEMM (`V = Aᵀ U
/// diag(s)⁻¹` for a wide cut) or left as the product `U = A V diag(s)⁻¹` ([`Left::Product`],
/// tall cut, which takes `a`). That is several times faster than a bidiagonal SVD and reconstructs
/// as exactly (`U diag(s) Vᵀ = A V Vᵀ`, with `V` orthonormal to machine precision). Otherwise
/// faer's thin SVD runs. Both use faer's global parallelism.
pub(crate) fn svd(
    a: Vec<f64>,
    m: usize,
    n: usize,
    rank: impl Fn(&[f64]) -> usize,
) -> Result<Svd, MpoError> {
    match gram_svd(&a, m, n, &rank)? {
        Some(Gram::Wide(svd)) => Ok(svd),
        Some(Gram::Tall { w, s, vt }) => Ok(Svd {
            u: Left::Product { a, w },
            s,
            vt,
        }),
        None => {
            let full = bidiagonal_svd(&a, m, n, m.min(n))?;
            let r = rank(&full.s).clamp(1, m.min(n));
            Ok(truncate(full, m, n, r))
        }
    }
}

/// What the Gram route of [`svd`] computes.
enum Gram {
    /// A wide cut's SVD (`m < n`).
    Wide(Svd),
    /// A tall cut's (`m >= n`) singular values, `Vᵀ` and `W = V_r diag(s)⁻¹`; `U = A W`.
    Tall {
        w: Vec<f64>,
        s: Vec<f64>,
        vt: Vec<f64>,
    },
}

/// The Gram route of [`svd`]; `None` when the cut is too ill-conditioned for it.
fn gram_svd(
    a: &[f64],
    m: usize,
    n: usize,
    rank: impl Fn(&[f64]) -> usize,
) -> Result<Option<Gram>, MpoError> {
    debug_assert_eq!(a.len(), m * n);
    let k = m.min(n);
    // The row-major buffer read column-major is Aᵀ (n × m).
    let at = MatRef::from_column_major_slice(a, n, m);
    let par = get_global_parallelism();
    // Only the lower triangle is formed (half the GEMM) and read by the eigensolver.
    let (lhs, rhs) = if m >= n {
        (at, at.transpose())
    } else {
        (at.transpose(), at)
    };
    let mut gram = Mat::<f64>::zeros(k, k);
    triangular::matmul(
        gram.as_mut(),
        BlockStructure::TriangularLower,
        Accum::Replace,
        lhs,
        BlockStructure::Rectangular,
        rhs,
        BlockStructure::Rectangular,
        1.0,
        par,
    );
    let (lam, vectors) = eigen::symmetric_eigen(gram)
        .map_err(|_| MpoError::SvdNoConvergence { rows: m, cols: n })?;
    // Eigenvalues come nondecreasing; singular values are their square roots, descending.
    let s: Vec<f64> = (0..k).map(|i| lam[k - 1 - i].max(0.0).sqrt()).collect();
    let r = rank(&s).clamp(1, k);
    if !(s[0].is_finite() && s[0] > 0.0 && s[k - 1] * GRAM_MAX_CONDITION >= s[0]) {
        return Ok(None);
    }
    // The kept eigenvectors, descending: the last `r` columns of `U`, reversed (a view).
    let w = vectors.as_ref().reverse_cols().subcols(0, r);
    let inv: Vec<f64> = s[..r].iter().map(|x| x.recip()).collect();
    if m >= n {
        // w = V_r (n × r); its column-major buffer is Vᵀ row-major.
        let mut vt = vec![0.0; r * n];
        MatMut::from_column_major_slice_mut(&mut vt, n, r).copy_from(w);
        // W = V_r diag(1/s), row-major n × r.
        let mut w_rm = vec![0.0; n * r];
        MatMut::from_row_major_slice_mut(&mut w_rm, n, r).copy_from(w);
        scale_cols_in_place(&mut w_rm, &inv);
        Ok(Some(Gram::Tall { w: w_rm, s, vt }))
    } else {
        // w = U_r (m × r). Vᵀ row-major (r × n) is V column-major (n × r) = Aᵀ (U_r diag(1/s)),
        // the small factor scaled (and copied to positive strides) before the product.
        let mut u = vec![0.0; m * r];
        MatMut::from_row_major_slice_mut(&mut u, m, r).copy_from(w);
        let mut scaled = u.clone();
        scale_cols_in_place(&mut scaled, &inv);
        let mut vt = vec![0.0; r * n];
        matmul(
            MatMut::from_column_major_slice_mut(&mut vt, n, r),
            Accum::Replace,
            at,
            MatRef::from_row_major_slice(&scaled, m, r),
            1.0,
            par,
        );
        Ok(Some(Gram::Wide(Svd {
            u: Left::Dense(u),
            s,
            vt,
        })))
    }
}

/// faer's thin (bidiagonal) SVD, truncated to rank `r`.
fn bidiagonal_svd(a: &[f64], m: usize, n: usize, r: usize) -> Result<Svd, MpoError> {
    let svd = MatRef::from_row_major_slice(a, m, n)
        .thin_svd()
        .map_err(|_| MpoError::SvdNoConvergence { rows: m, cols: n })?;
    let (u, s, v) = (svd.U(), svd.S().column_vector(), svd.V());
    Ok(Svd {
        u: Left::Dense((0..m * r).map(|idx| u[(idx / r, idx % r)]).collect()),
        s: (0..m.min(n)).map(|i| s[i]).collect(),
        vt: (0..r * n).map(|idx| v[(idx % n, idx / n)]).collect(),
    })
}

/// Keeps the first `r` singular triplets of a full thin SVD.
fn truncate(svd: Svd, m: usize, n: usize, r: usize) -> Svd {
    let k = m.min(n);
    let u = svd.u.into_dense(m, k);
    Svd {
        u: Left::Dense(
            (0..m)
                .flat_map(|row| &u[row * k..row * k + r])
                .copied()
                .collect(),
        ),
        vt: svd.vt[..r * n].to_vec(),
        s: svd.s,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::gaussian;

    /// Max |UᵀU − I| over the `r` columns of a row-major `m × r` matrix.
    fn orthonormality_defect(u: &[f64], m: usize, r: usize) -> f64 {
        let ut = (0..r * m)
            .map(|idx| u[(idx % m) * r + idx / m])
            .collect::<Vec<_>>();
        let g = matmul_rm(&ut, r, m, u, r);
        (0..r * r)
            .map(|idx| (g[idx] - f64::from(idx / r == idx % r)).abs())
            .fold(0.0, f64::max)
    }

    /// Checks `svd` of the row-major `m × n` matrix `a` at rank `r` and returns `U`, formed.
    fn check(a: &[f64], m: usize, n: usize, svd: Svd, r: usize, tol: f64) -> Vec<f64> {
        let reference = singular_values(a, m, n);
        for (x, y) in svd.s.iter().zip(&reference) {
            assert!((x - y).abs() <= tol * reference[0], "{x} vs {y}");
        }
        assert_eq!((svd.s.len(), svd.vt.len()), (m.min(n), r * n));
        let u = svd.u.into_dense(m, r);
        assert_eq!(u.len(), m * r);
        assert!(orthonormality_defect(&u, m, r) <= tol);
        let v = (0..n * r)
            .map(|idx| svd.vt[(idx % r) * n + idx / r])
            .collect::<Vec<_>>();
        assert!(orthonormality_defect(&v, n, r) <= tol);
        if r == m.min(n) {
            let us: Vec<f64> = (0..m * r).map(|idx| u[idx] * svd.s[idx % r]).collect();
            let back = matmul_rm(&us, m, r, &svd.vt, n);
            let err = back
                .iter()
                .zip(a)
                .map(|(x, y)| (x - y).powi(2))
                .sum::<f64>();
            let norm = a.iter().map(|y| y * y).sum::<f64>();
            assert!((err / norm).sqrt() <= 1e-13, "{}", (err / norm).sqrt());
        }
        u
    }

    /// Tolerance (f64, relative to s_0) of both routes on these inputs.
    const TOL: f64 = 1e-10;

    #[test]
    fn gram_route_on_tall_and_wide_well_conditioned_cuts() {
        for (m, n, r) in [
            (60, 20, 20),
            (20, 60, 20),
            (40, 40, 40),
            (60, 20, 7),
            (12, 300, 5),
        ] {
            let a = gaussian(m * n, (m * 1000 + n) as u64);
            let gram = gram_svd(&a, m, n, |_| r).unwrap();
            assert!(gram.is_some(), "a Gaussian cut is well conditioned");
            let svd_of = || svd(a.clone(), m, n, |_| r).unwrap();
            // A tall cut's `U` stays unformed; its products equal the formed `U`'s.
            let (b, d): (_, Vec<f64>) = (gaussian(r * 3, 5), (1..=r).map(|c| c as f64).collect());
            let first = svd_of();
            assert_eq!(matches!(first.u, Left::Product { .. }), m >= n);
            let ub = first.u.matmul(m, r, &b, 3);
            let ud = svd_of().u.scale_cols(m, &d);
            let u = check(&a, m, n, first, r, TOL);
            let reference = matmul_rm(&u, m, r, &b, 3);
            assert!(
                ub.iter()
                    .zip(&reference)
                    .all(|(x, y)| (x - y).abs() <= 1e-12)
            );
            for (idx, (x, y)) in ud.iter().zip(&u).enumerate() {
                assert!((x - y * d[idx % r]).abs() <= 1e-12 * d[idx % r]);
            }
        }
    }

    #[test]
    fn ill_conditioned_cuts_take_the_bidiagonal_route() {
        // Rank 3 of 10: the Gram route declines and `svd` stays orthonormal.
        let (m, n) = (30, 10);
        let (l, rt) = (gaussian(m * 3, 1), gaussian(3 * n, 2));
        let a = matmul_rm(&l, m, 3, &rt, n);
        assert!(gram_svd(&a, m, n, |s| s.len()).unwrap().is_none());
        let low = svd(a.clone(), m, n, |s| s.len()).unwrap();
        let tail_small = low.s[3..].iter().all(|&x| x <= 1e-12 * low.s[0]);
        check(&a, m, n, low, n, TOL);
        assert!(tail_small);
        let zero = svd(vec![0.0; 12], 4, 3, |s| s.len()).unwrap();
        assert!(zero.s.iter().all(|&x| x == 0.0));
        assert!(zero.u.into_dense(4, 3).iter().all(|x| x.is_finite()));
    }
}
