//! Matrix product operator (MPO, tensor-train matrix) decomposition as used by OPF
//! (Gao et al., ACL 2023; code `zfgao66/OPF` `compress_tools/Matrix2MPO.py`).
//!
//! A matrix `W` of shape `(I, J) = (∏ i_k, ∏ j_k)` is reshaped row-major to
//! `(i_1..i_n, j_1..j_n)`, interleaved to `(i_1, j_1, …, i_n, j_n)` and split by a left-to-right
//! TT-SVD into cores of dims `(r_k, i_k, j_k, r_{k+1})` (row-major `f64`), optionally followed by
//! the original's symmetric gauge. For a weight the factorised view is always (out, in): the row
//! factors split `out_features` ([`Orientation`] handles burn's `(in, out)` storage).
//!
//! ```
//! use mpo_core::{DecomposeOptions, Orientation, Preset, decompose_weight};
//!
//! // A 768 -> 3072 layer stored (in, out) as in burn, with the released code's 15-core shape.
//! let shape = "bert15".parse::<Preset>()?.shape(3072, 768)?;
//! assert_eq!(shape.param_count(&shape.full_ranks()), 20_938_752);
//! let weight: Vec<f32> = (0..3072 * 768usize).map(|k| (k % 1013) as f32 / 1013.0 - 0.5).collect();
//! let mpo = decompose_weight(&weight, Orientation::InOut, &shape, &DecomposeOptions::default())?;
//! assert_eq!(mpo.ranks()[1], 1152);
//! let back = mpo.to_weight_f32(Orientation::InOut);
//! let err = back.iter().zip(&weight).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
//! assert!(err < 1e-4);
//! # Ok::<(), mpo_core::MpoError>(())
//! ```
#![warn(missing_docs)]

mod decompose;
mod error;
mod linalg;
mod mpo;
mod preset;
mod shape;
#[cfg(test)]
mod testutil;

pub use decompose::{DecomposeOptions, Gauge, decompose, decompose_weight};
pub use error::MpoError;
pub use mpo::{Core, Mpo, Orientation};
pub use preset::Preset;
pub use shape::{MpoShape, Truncation, parse_factors};
