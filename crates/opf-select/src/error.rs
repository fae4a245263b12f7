//! The crate's single error type.

use crate::MatrixId;

/// Everything that can go wrong when parsing selection settings, accumulating scores, selecting
/// matrices or planning a schedule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SelectError {
    /// A `weight_types` entry that names no weight type.
    #[error(
        "unknown weight type {name:?} in {input:?}: expected a comma-separated list of \
         FFN_1, FFN_2, attention, cross_attention"
    )]
    UnknownWeightType {
        /// The offending entry, trimmed.
        name: String,
        /// The whole comma string.
        input: String,
    },
    /// A `weight_types` string with no entries at all.
    #[error("weight_types is empty: name at least one of FFN_1, FFN_2, attention, cross_attention")]
    EmptyWeightTypes,
    /// A matrix id that does not parse (see [`MatrixId`]'s `FromStr`).
    #[error(
        "bad matrix id {0:?}: expected `{{encoder|decoder}}.{{layer}}.{{kind}}`, e.g. `encoder.3.ffn_1`"
    )]
    BadMatrixId(String),
    /// A score that is NaN or infinite reached [`crate::select`].
    #[error("score of {matrix} is {score}, not a finite number")]
    NonFiniteScore {
        /// The matrix.
        matrix: MatrixId,
        /// Its score.
        score: f64,
    },
    /// A gradient with no elements.
    #[error("gradient of {matrix} is empty")]
    EmptyGradient {
        /// The matrix.
        matrix: MatrixId,
    },
    /// A gradient (or weight) containing NaN or infinity.
    #[error("gradient or weight of {matrix} contains a non-finite value")]
    NonFiniteGradient {
        /// The matrix.
        matrix: MatrixId,
    },
    /// Gradient and weight slices of different lengths.
    #[error("gradient of {matrix} has {grad} elements but its weight has {weight}")]
    LengthMismatch {
        /// The matrix.
        matrix: MatrixId,
        /// Gradient length.
        grad: usize,
        /// Weight length.
        weight: usize,
    },
    /// A loss that is NaN or infinite in a zero-ablation pair.
    #[error("ablation losses of {matrix} are not finite (baseline {baseline}, zeroed {zeroed})")]
    NonFiniteLoss {
        /// The matrix.
        matrix: MatrixId,
        /// Loss of the intact model.
        baseline: f64,
        /// Loss with the matrix zeroed.
        zeroed: f64,
    },
    /// A Taylor window of zero steps.
    #[error("the Taylor score window must be at least one step")]
    ZeroWindow,
    /// `split_num = 0`.
    #[error("split_num must be at least 1 (1 is the static schedule)")]
    SplitNumZero,
    /// `split_num > top_n`, which the released code asserts against (`bert/trainer_bert.py:974-980`).
    #[error(
        "split_num {split_num} exceeds top_n {top_n}: each round would select zero matrices per group"
    )]
    SplitNumExceedsTopN {
        /// Number of rounds asked for.
        split_num: usize,
        /// Matrices per group in total.
        top_n: usize,
    },
    /// A step schedule with `every_steps = 0`.
    #[error("every_steps must be at least 1")]
    ZeroRoundInterval,
    /// A step schedule with `per_round = 0`, or more per round than `top_n`.
    #[error("per_round {per_round} must be between 1 and top_n {top_n}")]
    BadPerRound {
        /// Matrices per group per round.
        per_round: usize,
        /// Matrices per group in total.
        top_n: usize,
    },
}
