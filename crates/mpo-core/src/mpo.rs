//! The decomposed operator: cores, ranks, spectra, and contraction back to a matrix.

use std::sync::Arc;

use crate::linalg::matmul_rm;
use crate::{MpoError, MpoShape};

/// How a weight matrix is stored.
///
/// The MPO always factorises the (out, in) view, as the original does with PyTorch's
/// `nn.Linear.weight` (spec §1.1); the orientation only says how to read and write the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orientation {
    /// Row-major `(out_features, in_features)`: PyTorch, Hugging Face checkpoints, candle.
    OutIn,
    /// Row-major `(in_features, out_features)`: burn's `Linear`.
    InOut,
}

/// One MPO core: a row-major `(r_left, i, j, r_right)` tensor of `f64`.
///
/// The data is immutable and reference-counted: the identity cores of an OPF shape (13 of them,
/// ~140 MB for a BERT FFN matrix in the 15-core shape) share one buffer per rank, and cloning a
/// core is cheap.
#[derive(Debug, Clone, PartialEq)]
pub struct Core {
    pub(crate) dims: [usize; 4],
    pub(crate) data: Arc<Vec<f64>>,
}

impl Core {
    /// A core from its dims `(r_left, i, j, r_right)` and row-major data.
    pub fn new(dims: [usize; 4], data: Vec<f64>) -> Result<Self, MpoError> {
        let expected = dims.iter().product();
        if data.len() != expected {
            return Err(MpoError::BufferLength {
                rows: dims[0] * dims[1] * dims[2],
                cols: dims[3],
                expected,
                got: data.len(),
            });
        }
        Ok(Self {
            dims,
            data: Arc::new(data),
        })
    }

    /// `(r_left, i, j, r_right)`.
    pub fn dims(&self) -> [usize; 4] {
        self.dims
    }

    /// Row-major data, `data[((a·i + x)·j + y)·r_right + b]`.
    pub fn data(&self) -> &[f64] {
        &self.data
    }

    /// The data rounded to `f32`.
    pub fn to_f32(&self) -> Vec<f32> {
        self.data.iter().map(|&x| x as f32).collect()
    }

    /// True for an `r × 1 × 1 × r` identity, which contraction can skip.
    fn is_identity(&self) -> bool {
        let [r, i, j, r2] = self.dims;
        i * j == 1
            && r == r2
            && self
                .data
                .iter()
                .enumerate()
                .all(|(k, &x)| x == if k / r == k % r { 1.0 } else { 0.0 })
    }
}

/// A matrix product operator: `n` cores whose chain contraction is the matrix (spec §1.7).
#[derive(Debug, Clone, PartialEq)]
pub struct Mpo {
    pub(crate) shape: MpoShape,
    pub(crate) ranks: Vec<usize>,
    pub(crate) cores: Vec<Core>,
    pub(crate) spectra: Option<Vec<Vec<f64>>>,
    pub(crate) error_bound: f64,
}

impl Mpo {
    /// Wraps existing cores (e.g. trained ones) for contraction. The dims must chain:
    /// core `k` is `(r_k, i_k, j_k, r_{k+1})` with `r_0 = r_n = 1`. No spectra are attached.
    pub fn from_cores(shape: MpoShape, cores: Vec<Core>) -> Result<Self, MpoError> {
        let n = shape.n_cores();
        if cores.len() != n {
            return Err(MpoError::BondCount {
                expected: n.saturating_sub(1),
                got: cores.len().saturating_sub(1),
            });
        }
        let mut ranks = vec![1; n + 1];
        for k in 1..n {
            ranks[k] = cores[k].dims[0];
        }
        for (k, core) in cores.iter().enumerate() {
            let expected = [
                ranks[k],
                shape.row_factors()[k],
                shape.col_factors()[k],
                ranks[k + 1],
            ];
            if core.dims != expected {
                return Err(MpoError::CoreDims {
                    index: k,
                    expected,
                    got: core.dims,
                });
            }
        }
        Ok(Self {
            shape,
            ranks,
            cores,
            spectra: None,
            error_bound: 0.0,
        })
    }

    /// The shape this MPO factorises.
    pub fn shape(&self) -> &MpoShape {
        &self.shape
    }

    /// Bond ranks `r_0..r_n` (`r_0 = r_n = 1`).
    pub fn ranks(&self) -> &[usize] {
        &self.ranks
    }

    /// The cores, `(r_k, i_k, j_k, r_{k+1})` each.
    pub fn cores(&self) -> &[Core] {
        &self.cores
    }

    /// Consumes the MPO, returning its cores.
    pub fn into_cores(self) -> Vec<Core> {
        self.cores
    }

    /// With [`crate::Gauge::Symmetric`]: the bond spectra `λ_b` for the inner bonds `b = 1..n`
    /// (entry `b - 1`), descending. They are the singular values of the matrix's interleaved
    /// tensor cut after site `b` (spec §1.5), and the original's `lamda_set_value`.
    pub fn spectra(&self) -> Option<&[Vec<f64>]> {
        self.spectra.as_deref()
    }

    /// Frobenius-norm bound on the truncation error, `√(Σ discarded σ²)`; `0` when lossless.
    pub fn error_bound(&self) -> f64 {
        self.error_bound
    }

    /// `Σ_k r_k i_k j_k r_{k+1}` (spec §1.8).
    pub fn param_count(&self) -> usize {
        self.shape.param_count(&self.ranks)
    }

    /// Contracts the cores back to the row-major (out, in) matrix (spec §1.7,
    /// `Matrix2MPO.py:214-234`): left-to-right chain, then the inverse of the interleaving.
    pub fn to_dense(&self) -> Vec<f64> {
        self.to_weight(Orientation::OutIn)
    }

    /// Contracts the cores into a weight buffer in the given storage orientation.
    pub fn to_weight(&self, orientation: Orientation) -> Vec<f64> {
        let tensor = self.contract();
        let (rows, cols) = (self.shape.rows(), self.shape.cols());
        let (row_off, col_off) = interleave_offsets(&self.shape);
        let mut out = vec![0.0; rows * cols];
        for (r, &ro) in row_off.iter().enumerate() {
            for (c, &co) in col_off.iter().enumerate() {
                out[flat_index(orientation, rows, cols, r, c)] = tensor[ro + co];
            }
        }
        out
    }

    /// [`Mpo::to_weight`] rounded to `f32`.
    pub fn to_weight_f32(&self, orientation: Orientation) -> Vec<f32> {
        self.to_weight(orientation)
            .into_iter()
            .map(|x| x as f32)
            .collect()
    }

    /// The chain contraction in interleaved order `(i_1, j_1, …, i_n, j_n)`, row-major.
    fn contract(&self) -> Vec<f64> {
        let mut t = self.cores[0].data.to_vec();
        let mut outer = self.cores[0].dims[1] * self.cores[0].dims[2];
        for core in &self.cores[1..] {
            if core.is_identity() {
                continue;
            }
            let [r, i, j, r2] = core.dims;
            t = matmul_rm(&t, outer, r, &core.data, i * j * r2);
            outer *= i * j;
        }
        t
    }
}

/// Offsets into the interleaved tensor: element `(row, col)` of the matrix sits at
/// `row_off[row] + col_off[col]` (spec §1.2, `Matrix2MPO.py:69-72`).
pub(crate) fn interleave_offsets(shape: &MpoShape) -> (Vec<usize>, Vec<usize>) {
    let p = shape.site_sizes();
    let n = p.len();
    let mut stride = vec![1; n];
    for k in (0..n.saturating_sub(1)).rev() {
        stride[k] = stride[k + 1] * p[k + 1];
    }
    let expand = |factors: &[usize], step: &dyn Fn(usize) -> usize| {
        let mut off = vec![0usize];
        for (k, &f) in factors.iter().enumerate() {
            off = off
                .iter()
                .flat_map(|&o| (0..f).map(move |a| o + a * step(k)))
                .collect();
        }
        off
    };
    let j = shape.col_factors();
    (
        expand(shape.row_factors(), &|k| j[k] * stride[k]),
        expand(j, &|k| stride[k]),
    )
}

/// Flat index of `(row, col)` of the (out, in) view in a buffer of the given orientation.
pub(crate) fn flat_index(
    orientation: Orientation,
    rows: usize,
    cols: usize,
    r: usize,
    c: usize,
) -> usize {
    match orientation {
        Orientation::OutIn => r * cols + c,
        Orientation::InOut => c * rows + r,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{gaussian, naive_dense, rel_err};

    fn random_mpo(i: Vec<usize>, j: Vec<usize>, ranks: &[usize]) -> Mpo {
        let shape = MpoShape::new(i, j).unwrap();
        let cores = (0..shape.n_cores())
            .map(|k| {
                let dims = [
                    ranks[k],
                    shape.row_factors()[k],
                    shape.col_factors()[k],
                    ranks[k + 1],
                ];
                Core::new(dims, gaussian(dims.iter().product(), k as u64)).unwrap()
            })
            .collect();
        Mpo::from_cores(shape, cores).unwrap()
    }

    /// The GEMM chain and the identity skip agree with an entry-by-entry contraction.
    #[test]
    fn contraction_matches_naive_reference() {
        let mpo = random_mpo(vec![2, 1, 3], vec![3, 1, 2], &[1, 3, 3, 1]);
        let w = mpo.to_dense();
        assert!(rel_err(&w, &naive_dense(&mpo)) < 1e-14);
        let mut cores = mpo.clone().into_cores();
        cores[1] = Core::new([3, 1, 1, 3], vec![1., 0., 0., 0., 1., 0., 0., 0., 1.]).unwrap();
        assert!(cores[1].is_identity());
        let with_identity = Mpo::from_cores(mpo.shape().clone(), cores).unwrap();
        assert!(rel_err(&with_identity.to_dense(), &naive_dense(&with_identity)) < 1e-14);
        let t = mpo.to_weight(Orientation::InOut);
        for r in 0..6 {
            for c in 0..6 {
                assert_eq!(t[c * 6 + r], w[r * 6 + c]);
            }
        }
    }

    #[test]
    fn from_cores_checks_dims() {
        let shape = MpoShape::new(vec![2, 3], vec![4, 5]).unwrap();
        let c0 = Core::new([1, 2, 4, 3], vec![0.0; 24]).unwrap();
        let c1 = Core::new([3, 3, 4, 1], vec![0.0; 36]).unwrap();
        assert_eq!(
            Mpo::from_cores(shape, vec![c0, c1]),
            Err(MpoError::CoreDims {
                index: 1,
                expected: [3, 3, 5, 1],
                got: [3, 3, 4, 1]
            })
        );
        assert!(Core::new([1, 2, 2, 1], vec![0.0; 3]).is_err());
    }
}
