//! The crate's single error type.

/// Everything that can go wrong when building shapes, decomposing or contracting an MPO.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MpoError {
    /// A factor list that does not parse (see [`crate::parse_factors`]).
    #[error(
        "bad factor list {0:?}: expected comma-separated positive integers, `VxC` = C copies of V"
    )]
    BadFactorList(String),
    /// A shape with no cores.
    #[error("an MPO shape needs at least one core")]
    EmptyShape,
    /// The row and column factor lists differ in length.
    #[error("row factors have {rows} entries but column factors have {cols}; they must match")]
    FactorCountMismatch {
        /// Number of row factors.
        rows: usize,
        /// Number of column factors.
        cols: usize,
    },
    /// A factor equal to zero.
    #[error("{side} factor {index} is zero")]
    ZeroFactor {
        /// `"row"` or `"column"`.
        side: &'static str,
        /// Position of the factor.
        index: usize,
    },
    /// The factors do not multiply to the matrix dimension.
    #[error("{side} factors multiply to {product}, expected {expected}")]
    DimMismatch {
        /// `"row"` or `"column"`.
        side: &'static str,
        /// The matrix dimension.
        expected: usize,
        /// The product of the factors.
        product: usize,
    },
    /// A matrix buffer of the wrong length.
    #[error("matrix buffer has {got} elements, expected {expected} ({rows} x {cols})")]
    BufferLength {
        /// Rows of the expected matrix.
        rows: usize,
        /// Columns of the expected matrix.
        cols: usize,
        /// Expected number of elements.
        expected: usize,
        /// Actual number of elements.
        got: usize,
    },
    /// A NaN or infinite input entry.
    #[error("matrix entry {index} is not finite")]
    NonFinite {
        /// Flat index of the first non-finite entry.
        index: usize,
    },
    /// Per-bond rank caps of the wrong length.
    #[error("{got} per-bond rank caps given, the shape has {expected} bonds")]
    BondCount {
        /// Number of inner bonds (`n - 1`).
        expected: usize,
        /// Number of caps given.
        got: usize,
    },
    /// A rank cap of zero.
    #[error("rank cap of bond {bond} is zero")]
    ZeroRank {
        /// Inner bond index, 1-based as in the spec (`1..n`).
        bond: usize,
    },
    /// A relative error tolerance that is negative or not finite.
    #[error("relative error tolerance {0} must be finite and >= 0")]
    BadTolerance(f64),
    /// A core whose dimensions do not fit the shape and its neighbours.
    #[error("core {index} has dims {got:?}, expected {expected:?}")]
    CoreDims {
        /// Core position.
        index: usize,
        /// `(r_left, i, j, r_right)` the shape requires.
        expected: [usize; 4],
        /// Dimensions found.
        got: [usize; 4],
    },
    /// A preset name that does not parse.
    #[error("unknown preset {0:?} (known: bert15, paper11, bart7, t5, svd, opf:N, balanced:N)")]
    UnknownPreset(String),
    /// A preset that has no shape for these matrix dimensions.
    #[error("preset {preset} has no shape for a {rows} x {cols} (out x in) matrix")]
    UnsupportedDims {
        /// The preset's name.
        preset: String,
        /// Rows (out_features).
        rows: usize,
        /// Columns (in_features).
        cols: usize,
    },
    /// The SVD did not converge (faer `SvdError::NoConvergence`).
    #[error("SVD of a {rows} x {cols} matrix did not converge")]
    SvdNoConvergence {
        /// Rows of the matrix.
        rows: usize,
        /// Columns of the matrix.
        cols: usize,
    },
}
