//! Importance scores on a live model ([`OpfModel`]: BERT, BART, T5), the selection rounds that use
//! them during training, and the matrix naming bridge to `opf-select`.
//!
//! The Fisher (ChildTuning-D) pass follows `bert/trainer_bert.py:580-630`: one pass over the
//! training data in shuffled order with dropout active, the task loss, `backward()`, and for each
//! candidate weight the per-tensor clipped squared gradient mean is added to its score; no
//! optimizer step. The paper's Taylor score (§4.3, Eq. 7) accumulates |⟨∇W L, W⟩| during
//! training (computed on the device after each backward pass); its static zero-ablation score
//! (Eq. 6) compares the loss with each matrix zeroed.

use std::collections::BTreeSet;
use std::fmt;

use burn::module::Param;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use opf_glue::{Batches, Features, Order};
use opf_models::{
    BartForSequenceClassification, BartLinearKind, BartLinearPath, BertForSequenceClassification,
    CoreTraining, LinearKind, LinearPath, ModelError, MpoReplacement, ProjLinear, T5LinearKind,
    T5LinearPath, T5StackKind,
};
use opf_select::{
    AblationLoss, Arch, FisherAccumulator, GroupRule, MatrixId, MatrixKind, Plan, RoundAt,
    ScoreTable, Selected, Stack, TaylorAccumulator, WeightTypes, ablation_scores,
};

use crate::t5::T5TextToText;
use crate::{RoundHook, TaskModel, TrainError, batch_tensors};

/// A model whose projections OPF addresses by path: the selection rounds score, choose and
/// over-parameterize them through this trait, whatever the architecture.
pub trait OpfModel: TaskModel {
    /// The address of one projection.
    type Path: Copy + Eq + fmt::Display;
    /// The checkpoint naming convention of [`MatrixId::hf_name`] for logs.
    const ARCH: Arch;
    /// Every projection path, in `named_parameters()` order.
    fn linear_paths(&self) -> Vec<Self::Path>;
    /// The projection at `path` (panics on a path outside the model).
    fn linear(&self, path: Self::Path) -> &ProjLinear;
    /// Replaces the projection at `path` (same `(out, in)` shape), returning the old one.
    fn set_linear(
        &mut self,
        path: Self::Path,
        linear: ProjLinear,
    ) -> Result<ProjLinear, ModelError>;
    /// Over-parameterizes the dense projections at `paths` with `preset`'s shapes.
    fn over_parameterize(
        &mut self,
        paths: &[Self::Path],
        preset: &mpo_core::Preset,
        training: CoreTraining,
    ) -> Result<Vec<MpoReplacement<Self::Path>>, ModelError>;
    /// Contracts every MPO projection back into a dense one.
    fn merge_mpo(&mut self);
    /// Paths of the MPO-factored projections.
    fn mpo_paths(&self) -> Vec<Self::Path>;
    /// The `opf-select` id of a projection.
    fn matrix_id(path: Self::Path) -> MatrixId;
    /// The projection of an `opf-select` id (`None` for an id the architecture does not have).
    fn linear_path(id: MatrixId) -> Option<Self::Path>;
}

/// The `opf-select` id of a BERT projection.
pub fn matrix_id(path: LinearPath) -> MatrixId {
    let kind = match path.kind {
        LinearKind::Query => MatrixKind::Query,
        LinearKind::Key => MatrixKind::Key,
        LinearKind::Value => MatrixKind::Value,
        LinearKind::AttentionOutput => MatrixKind::AttentionOutput,
        LinearKind::Ffn1 => MatrixKind::Ffn1,
        LinearKind::Ffn2 => MatrixKind::Ffn2,
    };
    MatrixId::encoder(path.layer, kind)
}

/// The BERT projection of an `opf-select` id (`None` for decoder / cross-attention ids).
pub fn linear_path(id: MatrixId) -> Option<LinearPath> {
    let kind = match id.kind {
        MatrixKind::Query => LinearKind::Query,
        MatrixKind::Key => LinearKind::Key,
        MatrixKind::Value => LinearKind::Value,
        MatrixKind::AttentionOutput => LinearKind::AttentionOutput,
        MatrixKind::Ffn1 => LinearKind::Ffn1,
        MatrixKind::Ffn2 => LinearKind::Ffn2,
        _ => return None,
    };
    (id.stack == Stack::Encoder).then_some(LinearPath::new(id.layer, kind))
}

/// The `opf-select` id of a BART projection: self-attention k/v/q/out are `key`, `value`,
/// `query`, `attention_output`; `encoder_attn` are the `cross_*` kinds; `fc1`/`fc2` are
/// `ffn_1`/`ffn_2`.
pub fn bart_matrix_id(path: BartLinearPath) -> MatrixId {
    let kind = match path.kind {
        BartLinearKind::SelfKey => MatrixKind::Key,
        BartLinearKind::SelfValue => MatrixKind::Value,
        BartLinearKind::SelfQuery => MatrixKind::Query,
        BartLinearKind::SelfOut => MatrixKind::AttentionOutput,
        BartLinearKind::CrossKey => MatrixKind::CrossKey,
        BartLinearKind::CrossValue => MatrixKind::CrossValue,
        BartLinearKind::CrossQuery => MatrixKind::CrossQuery,
        BartLinearKind::CrossOut => MatrixKind::CrossOutput,
        BartLinearKind::Fc1 => MatrixKind::Ffn1,
        BartLinearKind::Fc2 => MatrixKind::Ffn2,
    };
    let stack = match path.stack {
        opf_models::BartStack::Encoder => Stack::Encoder,
        opf_models::BartStack::Decoder => Stack::Decoder,
    };
    MatrixId::new(stack, path.layer, kind)
}

/// The BART projection of an `opf-select` id (`None` for encoder cross-attention ids).
pub fn bart_linear_path(id: MatrixId) -> Option<BartLinearPath> {
    let kind = match id.kind {
        MatrixKind::Key => BartLinearKind::SelfKey,
        MatrixKind::Value => BartLinearKind::SelfValue,
        MatrixKind::Query => BartLinearKind::SelfQuery,
        MatrixKind::AttentionOutput => BartLinearKind::SelfOut,
        MatrixKind::CrossKey => BartLinearKind::CrossKey,
        MatrixKind::CrossValue => BartLinearKind::CrossValue,
        MatrixKind::CrossQuery => BartLinearKind::CrossQuery,
        MatrixKind::CrossOutput => BartLinearKind::CrossOut,
        MatrixKind::Ffn1 => BartLinearKind::Fc1,
        MatrixKind::Ffn2 => BartLinearKind::Fc2,
    };
    match id.stack {
        Stack::Encoder if kind.is_cross() => None,
        Stack::Encoder => Some(BartLinearPath::encoder(id.layer, kind)),
        Stack::Decoder => Some(BartLinearPath::decoder(id.layer, kind)),
    }
}

/// The `opf-select` id of a T5 projection: self-attention q/k/v/o are `query`, `key`, `value`,
/// `attention_output`; `EncDecAttention` q/k/v/o the `cross_*` kinds; `wi` / `wo` `ffn_1` /
/// `ffn_2` (the T5 candidates of spec §2.1).
///
/// # Panics
///
/// Panics on a gated feed-forward's `wi_0` / `wi_1`, which have no kind of their own
/// ([`T5TextToText::new`] refuses gated models).
pub fn t5_matrix_id(path: T5LinearPath) -> MatrixId {
    let kind = match path.kind {
        T5LinearKind::SelfQ => MatrixKind::Query,
        T5LinearKind::SelfK => MatrixKind::Key,
        T5LinearKind::SelfV => MatrixKind::Value,
        T5LinearKind::SelfO => MatrixKind::AttentionOutput,
        T5LinearKind::CrossQ => MatrixKind::CrossQuery,
        T5LinearKind::CrossK => MatrixKind::CrossKey,
        T5LinearKind::CrossV => MatrixKind::CrossValue,
        T5LinearKind::CrossO => MatrixKind::CrossOutput,
        T5LinearKind::Wi => MatrixKind::Ffn1,
        T5LinearKind::Wo => MatrixKind::Ffn2,
        T5LinearKind::Wi0 | T5LinearKind::Wi1 => {
            panic!("{path}: a gated T5 feed-forward has no opf-select matrix kind")
        }
    };
    let stack = match path.stack {
        T5StackKind::Encoder => Stack::Encoder,
        T5StackKind::Decoder => Stack::Decoder,
    };
    MatrixId::new(stack, path.block, kind)
}

/// The T5 projection of an `opf-select` id (`None` for encoder cross-attention ids); FFN ids
/// map to the non-gated `wi` / `wo`.
pub fn t5_linear_path(id: MatrixId) -> Option<T5LinearPath> {
    let kind = match id.kind {
        MatrixKind::Query => T5LinearKind::SelfQ,
        MatrixKind::Key => T5LinearKind::SelfK,
        MatrixKind::Value => T5LinearKind::SelfV,
        MatrixKind::AttentionOutput => T5LinearKind::SelfO,
        MatrixKind::CrossQuery => T5LinearKind::CrossQ,
        MatrixKind::CrossKey => T5LinearKind::CrossK,
        MatrixKind::CrossValue => T5LinearKind::CrossV,
        MatrixKind::CrossOutput => T5LinearKind::CrossO,
        MatrixKind::Ffn1 => T5LinearKind::Wi,
        MatrixKind::Ffn2 => T5LinearKind::Wo,
    };
    match id.stack {
        Stack::Encoder if kind.is_cross() => None,
        Stack::Encoder => Some(T5LinearPath::new(T5StackKind::Encoder, id.layer, kind)),
        Stack::Decoder => Some(T5LinearPath::new(T5StackKind::Decoder, id.layer, kind)),
    }
}

/// Implements [`OpfModel`] for a model whose projections live in field `$base`.
macro_rules! opf_model {
    ($model:ty, $base:ident, $path:ty, $arch:expr, $id:path, $from_id:path) => {
        impl OpfModel for $model {
            type Path = $path;
            const ARCH: Arch = $arch;
            fn linear_paths(&self) -> Vec<$path> {
                self.$base.linear_paths()
            }
            fn linear(&self, path: $path) -> &ProjLinear {
                self.$base.linear(path)
            }
            fn set_linear(
                &mut self,
                path: $path,
                linear: ProjLinear,
            ) -> Result<ProjLinear, ModelError> {
                self.$base.set_linear(path, linear)
            }
            fn over_parameterize(
                &mut self,
                paths: &[$path],
                preset: &mpo_core::Preset,
                training: CoreTraining,
            ) -> Result<Vec<MpoReplacement<$path>>, ModelError> {
                self.$base.over_parameterize(paths, preset, training)
            }
            fn merge_mpo(&mut self) {
                self.$base.merge_mpo();
            }
            fn mpo_paths(&self) -> Vec<$path> {
                self.$base.mpo_paths()
            }
            fn matrix_id(path: $path) -> MatrixId {
                $id(path)
            }
            fn linear_path(id: MatrixId) -> Option<$path> {
                $from_id(id)
            }
        }
    };
}

opf_model!(
    BertForSequenceClassification,
    bert,
    LinearPath,
    Arch::Bert,
    matrix_id,
    linear_path
);
opf_model!(
    BartForSequenceClassification,
    model,
    BartLinearPath,
    Arch::Bart,
    bart_matrix_id,
    bart_linear_path
);
opf_model!(
    T5TextToText,
    model,
    T5LinearPath,
    Arch::T5,
    t5_matrix_id,
    t5_linear_path
);

/// Every still-dense projection of `model` with its weight parameter.
fn dense_candidates<M: OpfModel>(model: &M) -> Vec<(M::Path, Param<Tensor<2>>)> {
    model
        .linear_paths()
        .into_iter()
        .filter_map(|p| match model.linear(p) {
            ProjLinear::Dense(l) => Some((p, l.weight.clone())),
            ProjLinear::Mpo(_) => None,
        })
        .collect()
}

/// One scoring pass over `train` (shuffled with `seed`, dropout on, no optimizer step): after
/// each batch's backward, `visit` sees every still-dense projection with its gradient and
/// weight (both `(in, out)`, on the inner backend).
fn gradient_pass<M: OpfModel>(
    model: &M,
    train: &[Features],
    batch_size: usize,
    pad_id: i64,
    seed: u64,
    device: &Device,
    mut visit: impl FnMut(MatrixId, Tensor<2>, Tensor<2>) -> Result<(), TrainError>,
) -> Result<(), TrainError> {
    let candidates = dense_candidates(model);
    // The released code draws the scoring order from the same RandomSampler as training; a
    // distinct epoch index keeps it reproducible without replaying a training epoch's order.
    let order = Order::Shuffled {
        seed,
        epoch: u64::MAX,
    };
    for (k, batch) in Batches::new(train, batch_size, pad_id, order)?.enumerate() {
        device.seed(seed.wrapping_add(u64::MAX / 2).wrapping_add(k as u64));
        let labels = batch.labels.as_ref().ok_or(TrainError::MissingLabels)?;
        let loss = model.loss(batch_tensors(&batch, device), labels, device);
        let grads = GradientsParams::from_grads(loss.backward(), model);
        for (path, weight) in &candidates {
            if let Some(g) = grads.get::<2>(weight.id) {
                visit(M::matrix_id(*path), g, weight.val().inner())?;
            }
        }
    }
    Ok(())
}

/// Fisher scores of every still-dense projection of `model` over one pass of `train` (batch
/// `batch_size`, shuffled with `seed`), on an autodiff `device`.
pub fn fisher_scores<M: OpfModel>(
    model: &M,
    train: &[Features],
    batch_size: usize,
    pad_id: i64,
    seed: u64,
    device: &Device,
) -> Result<ScoreTable, TrainError> {
    let mut acc = FisherAccumulator::new();
    gradient_pass(
        model,
        train,
        batch_size,
        pad_id,
        seed,
        device,
        |id, g, _| {
            let data = g.into_data().convert::<f32>();
            let slice = data.as_slice::<f32>().expect("f32 gradient");
            Ok(acc.add(id, slice)?)
        },
    )?;
    Ok(acc.into_scores())
}

/// The paper's Taylor score over one pass of `train` instead of past optimizer steps (for a
/// round before any step): Σ over batches of |⟨∇W L, W⟩_F| per still-dense projection.
pub fn taylor_pass_scores<M: OpfModel>(
    model: &M,
    train: &[Features],
    batch_size: usize,
    pad_id: i64,
    seed: u64,
    device: &Device,
) -> Result<ScoreTable, TrainError> {
    let mut acc = TaylorAccumulator::new(usize::MAX)?;
    gradient_pass(
        model,
        train,
        batch_size,
        pad_id,
        seed,
        device,
        |id, g, w| Ok(acc.add_inner(id, (g * w).sum().into_scalar::<f64>())?),
    )?;
    acc.end_step();
    Ok(acc.scores())
}

/// The paper's static ablation score: |L(W) − L(W = 0)| per still-dense projection, each loss
/// the mean over the first `batches` training batches in order, dropout off. The bias stays.
pub fn ablation_pass_scores<M: OpfModel>(
    model: &M,
    train: &[Features],
    batches: usize,
    batch_size: usize,
    pad_id: i64,
    device: &Device,
) -> Result<ScoreTable, TrainError> {
    let inner = device.clone().inner();
    let model = model.valid();
    let data: Vec<_> = Batches::new(train, batch_size, pad_id, Order::Sequential)?
        .take(batches.max(1))
        .collect();
    let loss = |m: &M| -> Result<f64, TrainError> {
        let mut total = 0.0;
        for batch in &data {
            let labels = batch.labels.as_ref().ok_or(TrainError::MissingLabels)?;
            total += m
                .loss(batch_tensors(batch, &inner), labels, &inner)
                .into_scalar::<f64>();
        }
        Ok(total / data.len() as f64)
    };
    let baseline = loss(&model)?;
    let mut losses = Vec::new();
    for (path, _) in dense_candidates(&model) {
        let mut zeroed = model.clone();
        let l = zeroed.linear(path);
        let zero =
            ProjLinear::from_hf(Tensor::zeros([l.d_output(), l.d_input()], &inner), l.bias());
        zeroed.set_linear(path, zero)?;
        let zeroed = loss(&zeroed)?;
        losses.push((M::matrix_id(path), AblationLoss { baseline, zeroed }));
    }
    Ok(ablation_scores(losses)?)
}

/// Which importance score the selection rounds use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Score {
    /// The released ChildTuning-D Fisher pass ([`fisher_scores`]).
    Fisher,
    /// The paper's Taylor score |⟨∇W L, W⟩|, summed over the last `window` optimizer steps of
    /// training; a round before any step uses one pass of the data ([`taylor_pass_scores`]).
    Taylor {
        /// Optimizer steps summed (the paper's t).
        window: usize,
    },
    /// The paper's static zero-ablation score over the first `batches` training batches
    /// ([`ablation_pass_scores`]).
    Ablation {
        /// Batches each loss is averaged over.
        batches: usize,
    },
}

/// One selection round as logged and recorded in `metrics.json` (and in checkpoints).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RoundLog {
    /// When the round ran: at an epoch start or after a number of optimizer steps.
    pub at: RoundAt,
    /// Matrices per group asked for.
    pub per_group: usize,
    /// The chosen matrices with score, group and rank.
    pub chosen: Vec<Selected>,
    /// Train-time parameters after the round.
    pub params_after: usize,
}

/// Static or dynamic OPF selection (`--top-n`, `--dynamic-decom --split-num`, step rounds): at
/// each round of `plan` the current model is scored, the top still-dense matrices per group are
/// chosen and over-parameterized with `preset`; new cores train from the next step on.
pub struct SelectionRounds<'a> {
    /// The schedule.
    pub plan: Plan,
    /// Strict groups or the released mixed pool.
    pub rule: GroupRule,
    /// Candidate types.
    pub weight_types: WeightTypes,
    /// MPO shapes.
    pub preset: mpo_core::Preset,
    /// Which cores train.
    pub core_training: CoreTraining,
    /// The importance score.
    pub score: Score,
    /// Training data for scoring passes.
    pub train: &'a [Features],
    /// Scoring batch size (the training batch size in the released code).
    pub batch_size: usize,
    /// Padding id.
    pub pad_id: i64,
    /// Seed of the scoring order and dropout.
    pub seed: u64,
    /// The autodiff device.
    pub device: Device,
    /// Matrices over-parameterized so far (never re-selected).
    pub decomposed: BTreeSet<MatrixId>,
    /// The rounds run so far.
    pub log: Vec<RoundLog>,
    /// Taylor terms of the last optimizer steps (with [`Score::Taylor`]).
    taylor: Option<TaylorAccumulator>,
}

impl<'a> SelectionRounds<'a> {
    /// Rounds of `plan` scored by `score`; the other fields as documented on the struct.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        plan: Plan,
        rule: GroupRule,
        weight_types: WeightTypes,
        preset: mpo_core::Preset,
        core_training: CoreTraining,
        score: Score,
        train: &'a [Features],
        batch_size: usize,
        pad_id: i64,
        seed: u64,
        device: Device,
    ) -> Result<Self, TrainError> {
        let taylor = match score {
            Score::Taylor { window } => Some(TaylorAccumulator::new(window)?),
            _ => None,
        };
        Ok(Self {
            plan,
            rule,
            weight_types,
            preset,
            core_training,
            score,
            train,
            batch_size,
            pad_id,
            seed,
            device,
            decomposed: BTreeSet::new(),
            log: Vec::new(),
            taylor,
        })
    }

    /// The scores a round at `at` uses.
    fn scores<M: OpfModel>(&self, model: &M, at: RoundAt) -> Result<ScoreTable, TrainError> {
        let seed = self.seed.wrapping_add(match at {
            RoundAt::Epoch(e) => e as u64,
            RoundAt::Step(s) => s as u64,
        });
        let (train, bs, pad, device) = (self.train, self.batch_size, self.pad_id, &self.device);
        match (self.score, &self.taylor) {
            (Score::Taylor { .. }, Some(acc)) if acc.steps() > 0 => Ok(acc.scores()),
            (Score::Taylor { .. }, _) => taylor_pass_scores(model, train, bs, pad, seed, device),
            (Score::Fisher, _) => fisher_scores(model, train, bs, pad, seed, device),
            (Score::Ablation { batches }, _) => {
                ablation_pass_scores(model, train, batches, bs, pad, device)
            }
        }
    }

    /// Runs the round of `plan` at `at`, if any.
    fn round<M: OpfModel>(&mut self, at: RoundAt, mut model: M) -> Result<M, TrainError> {
        let Some(round) = self.plan.round_at(at).cloned() else {
            return Ok(model);
        };
        let scores = self.scores(&model, at)?;
        let selection = opf_select::select(
            &scores,
            self.rule,
            round.per_group,
            self.weight_types,
            &self.decomposed,
        )?;
        for short in &selection.shortfalls {
            tracing::warn!(?short, "fewer matrices than asked for in a group");
        }
        let paths: Vec<M::Path> = selection
            .chosen
            .iter()
            .filter_map(|s| M::linear_path(s.matrix))
            .collect();
        model.over_parameterize(&paths, &self.preset, self.core_training)?;
        for s in &selection.chosen {
            tracing::info!(
                ?at,
                matrix = %s.matrix.hf_name(M::ARCH),
                score = s.score,
                group = ?s.group,
                rank = s.rank,
                "selected for over-parameterization"
            );
        }
        for m in selection.matrices() {
            if let Some(acc) = &mut self.taylor {
                acc.forget(m);
            }
            self.decomposed.insert(m);
        }
        self.log.push(RoundLog {
            at,
            per_group: round.per_group,
            chosen: selection.chosen,
            params_after: model.num_params(),
        });
        Ok(model)
    }
}

impl<M: OpfModel> RoundHook<M> for SelectionRounds<'_> {
    fn at_epoch_start(&mut self, epoch: usize, model: M) -> Result<M, TrainError> {
        self.round(RoundAt::Epoch(epoch), model)
    }

    fn after_backward(&mut self, model: &M, grads: &mut GradientsParams) -> Result<(), TrainError> {
        let Some(acc) = &mut self.taylor else {
            return Ok(());
        };
        // ⟨∇W, W⟩ of every candidate on the device, then one host transfer for all of them.
        let (ids, inners): (Vec<_>, Vec<_>) = dense_candidates(model)
            .into_iter()
            .filter_map(|(path, weight)| {
                let g = grads.get::<2>(weight.id)?;
                Some((M::matrix_id(path), (g * weight.val().inner()).sum()))
            })
            .unzip();
        if !inners.is_empty() {
            let values = Tensor::cat(inners, 0).into_data().convert::<f64>();
            let values = values.as_slice::<f64>().expect("f64 data");
            for (id, &inner) in ids.into_iter().zip(values) {
                acc.add_inner(id, inner)?;
            }
        }
        acc.end_step();
        Ok(())
    }

    fn after_step(&mut self, step: usize, model: M) -> Result<M, TrainError> {
        self.round(RoundAt::Step(step), model)
    }

    /// The rounds run so far and the Taylor window: the MPO layout itself is in the checkpoint's
    /// model record, and Fisher and ablation rounds rescore from the model when they run.
    fn save_state(&self) -> Option<serde_json::Value> {
        let state = RoundsState {
            log: self.log.clone(),
            taylor: self.taylor.clone(),
        };
        Some(serde_json::to_value(state).expect("selection state serializes"))
    }

    fn restore_state(&mut self, state: serde_json::Value) -> Result<(), TrainError> {
        let state: RoundsState = serde_json::from_value(state)
            .map_err(|e| TrainError::Checkpoint(format!("selection state: {e}")))?;
        if state.taylor.is_some() != self.taylor.is_some() {
            return Err(TrainError::Checkpoint(
                "selection state: the checkpoint was written with another --score".into(),
            ));
        }
        self.decomposed = state
            .log
            .iter()
            .flat_map(|round| round.chosen.iter().map(|c| c.matrix))
            .collect();
        self.log = state.log;
        self.taylor = state.taylor;
        Ok(())
    }
}

/// What [`SelectionRounds`] keeps in a checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct RoundsState {
    log: Vec<RoundLog>,
    taylor: Option<TaylorAccumulator>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for layer in 0..3 {
            for kind in LinearKind::ALL {
                let p = LinearPath::new(layer, kind);
                assert_eq!(linear_path(matrix_id(p)), Some(p));
            }
        }
        assert_eq!(
            linear_path(MatrixId::decoder(0, MatrixKind::CrossQuery)),
            None
        );
    }

    #[test]
    fn bart_ids_round_trip() {
        for layer in 0..3 {
            for &kind in &BartLinearKind::ENCODER {
                let p = BartLinearPath::encoder(layer, kind);
                assert_eq!(bart_matrix_id(p).stack, Stack::Encoder);
                assert_eq!(bart_linear_path(bart_matrix_id(p)), Some(p));
            }
            for &kind in &BartLinearKind::DECODER {
                let p = BartLinearPath::decoder(layer, kind);
                assert_eq!(bart_matrix_id(p).stack, Stack::Decoder);
                assert_eq!(bart_linear_path(bart_matrix_id(p)), Some(p));
            }
        }
        let cross = BartLinearPath::decoder(1, BartLinearKind::CrossQuery);
        assert_eq!(
            bart_matrix_id(cross),
            MatrixId::decoder(1, MatrixKind::CrossQuery)
        );
        assert_eq!(
            bart_matrix_id(cross).hf_name(Arch::Bart).to_string(),
            format!("{cross}.weight")
        );
        assert_eq!(
            bart_linear_path(MatrixId::encoder(0, MatrixKind::CrossKey)),
            None
        );
    }

    #[test]
    fn t5_ids_round_trip_with_checkpoint_names() {
        let kinds = T5LinearKind::ALL
            .into_iter()
            .filter(|k| !matches!(k, T5LinearKind::Wi0 | T5LinearKind::Wi1));
        for kind in kinds {
            for stack in [T5StackKind::Encoder, T5StackKind::Decoder] {
                if stack == T5StackKind::Encoder && kind.is_cross() {
                    continue;
                }
                let p = T5LinearPath::new(stack, 1, kind);
                let id = t5_matrix_id(p);
                assert_eq!(t5_linear_path(id), Some(p));
                assert_eq!(id.hf_name(Arch::T5).to_string(), format!("{p}.weight"));
            }
        }
        assert_eq!(
            t5_linear_path(MatrixId::encoder(0, MatrixKind::CrossValue)),
            None
        );
    }
}
