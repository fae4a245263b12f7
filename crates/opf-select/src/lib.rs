//! Which weight matrices OPF over-parameterizes, and when (Gao et al., ACL 2023; code
//! `zfgao66/OPF`). Model-independent: scores are fed plain `&[f32]` gradient/weight slices.
//!
//! A pipeline of small stages:
//!
//! 1. **Address** candidates with [`MatrixId`] (stack, layer, [`MatrixKind`]); filter them with
//!    [`WeightTypes`], parsed from the released `"FFN_1,FFN_2,attention"` string.
//! 2. **Score** them into a [`ScoreTable`]:
//!    * [`FisherAccumulator`]: the released ChildTuning-D score, Σ_batches mean(clip(g)²) with a
//!      per-tensor clip to norm 1 (`calculate_fisher`, `bert/trainer_bert.py:580-630`). One extra
//!      pass over the training set, at initialisation (static) or at each round (dynamic).
//!    * [`TaylorAccumulator`]: the paper's dynamic score |⟨∇W L, W⟩_F|, accumulated over the
//!      last t optimizer steps (paper Eq. 7), no extra pass.
//!    * [`ablation_scores`]: the paper's static score |L_W − L_{W=0}| (paper Eq. 6).
//! 3. **Select** the top N per [`Group`] with [`select`] (`determine_weight_across_layers`,
//!    `bert/trainer_bert.py:790-799`), under a [`GroupRule`]: [`GroupRule::Strict`] (one group
//!    per module type) or [`GroupRule::CompatMixedPool`] (the released BERT quirk where the
//!    FFN_2 pool also holds the attention-output matrices). Matrices already decomposed are
//!    passed in and never re-selected.
//! 4. **Schedule** rounds with [`Schedule`]: static, the released epoch rounds of
//!    `--dynamic_decom --split_num` (`bert/trainer_bert.py:974-980,1006-1015`), or the paper's
//!    step rounds. [`Plan::warnings`] says when fewer than N per group will be selected.
//!
//! ```
//! use std::collections::BTreeSet;
//! use opf_select::{
//!     FisherAccumulator, GroupRule, Horizon, MatrixId, MatrixKind, Schedule, WeightTypes, select,
//! };
//!
//! let weight_types: WeightTypes = "FFN_1,FFN_2,attention".parse()?;
//! let plan = Schedule::EpochRounds { split_num: 3 }.plan(9, Horizon { epochs: 10, total_steps: 0 })?;
//! assert!(plan.warnings().is_empty());
//!
//! let mut decomposed = BTreeSet::new();
//! for round in &plan.rounds {
//!     // One scoring pass: per batch, per candidate matrix, feed its gradient.
//!     let mut fisher = FisherAccumulator::new();
//!     for layer in 0..12 {
//!         for kind in MatrixKind::ENCODER_LAYER {
//!             let grad = vec![0.01 * (layer + 1) as f32; 16];
//!             fisher.add(MatrixId::encoder(layer, kind), &grad)?;
//!         }
//!     }
//!     let selection = select(
//!         &fisher.into_scores(),
//!         GroupRule::Strict,
//!         round.per_group,
//!         weight_types,
//!         &decomposed,
//!     )?;
//!     // ... decompose `selection.matrices()` here ...
//!     decomposed.extend(selection.matrices());
//! }
//! assert_eq!(decomposed.len(), 6 * 9);
//! let first = MatrixId::encoder(11, MatrixKind::Ffn1);
//! assert!(decomposed.contains(&first));
//! assert_eq!(
//!     first.hf_name(opf_select::Arch::Bert).to_string(),
//!     "bert.encoder.layer.11.intermediate.dense.weight"
//! );
//! # Ok::<(), opf_select::SelectError>(())
//! ```
#![warn(missing_docs)]

mod error;
mod group;
mod matrix;
mod schedule;
mod score;
mod select;

pub use error::SelectError;
pub use group::{Group, GroupRule, WeightType, WeightTypes};
pub use matrix::{Arch, HfName, MatrixId, MatrixKind, Stack};
pub use schedule::{Horizon, Plan, Round, RoundAt, Schedule, ScheduleWarning};
pub use score::{
    AblationLoss, FisherAccumulator, ScoreTable, TaylorAccumulator, ablation_scores,
    clipped_mean_square,
};
pub use select::{Selected, Selection, Shortfall, select};
