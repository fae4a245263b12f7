//! Importance scores on a live BERT, the selection rounds that use them during training, and
//! the matrix naming bridge to `opf-select`.
//!
//! The Fisher (ChildTuning-D) pass follows `bert/trainer_bert.py:580-630`: one pass over the
//! training data in shuffled order with dropout active, the task loss, `backward()`, and for each
//! candidate weight the per-tensor clipped squared gradient mean is added to its score; no
//! optimizer step. The paper's Taylor score (§4.3, Eq. 7) accumulates |⟨∇W L, W⟩| during
//! training (computed on the device after each backward pass); its static zero-ablation score
//! (Eq. 6) compares the loss with each matrix zeroed.

use std::collections::BTreeSet;

use burn::module::{Module, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use opf_glue::{Batches, Features, Order};
use opf_models::{BertForSequenceClassification, CoreTraining, LinearKind, LinearPath, ProjLinear};
use opf_select::{
    AblationLoss, Arch, FisherAccumulator, GroupRule, MatrixId, MatrixKind, Plan, RoundAt,
    ScoreTable, Selected, TaylorAccumulator, WeightTypes, ablation_scores,
};

use crate::{RoundHook, SequenceClassifier, TrainError, batch_tensors, task_loss};

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
    (id.stack == opf_select::Stack::Encoder).then_some(LinearPath::new(id.layer, kind))
}

/// Every still-dense projection of `model` with its weight parameter.
fn dense_candidates(model: &BertForSequenceClassification) -> Vec<(LinearPath, Param<Tensor<2>>)> {
    model
        .bert
        .linear_paths()
        .into_iter()
        .filter_map(|p| match model.bert.linear(p) {
            ProjLinear::Dense(l) => Some((p, l.weight.clone())),
            ProjLinear::Mpo(_) => None,
        })
        .collect()
}

/// One scoring pass over `train` (shuffled with `seed`, dropout on, no optimizer step): after
/// each batch's backward, `visit` sees every still-dense projection with its gradient and
/// weight (both `(in, out)`, on the inner backend).
fn gradient_pass(
    model: &BertForSequenceClassification,
    train: &[Features],
    batch_size: usize,
    pad_id: i64,
    seed: u64,
    device: &Device,
    mut visit: impl FnMut(LinearPath, Tensor<2>, Tensor<2>) -> Result<(), TrainError>,
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
        let [ids, types, mask] = batch_tensors(&batch, device);
        let labels = batch.labels.as_ref().ok_or(TrainError::MissingLabels)?;
        let loss = task_loss(model.logits(ids, types, mask), labels, device);
        let grads = GradientsParams::from_grads(loss.backward(), model);
        for (path, weight) in &candidates {
            if let Some(g) = grads.get::<2>(weight.id) {
                visit(*path, g, weight.val().inner())?;
            }
        }
    }
    Ok(())
}

/// Fisher scores of every still-dense projection of `model` over one pass of `train` (batch
/// `batch_size`, shuffled with `seed`), on an autodiff `device`.
pub fn fisher_scores(
    model: &BertForSequenceClassification,
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
        |path, g, _| {
            let data = g.into_data().convert::<f32>();
            let slice = data.as_slice::<f32>().expect("f32 gradient");
            Ok(acc.add(matrix_id(path), slice)?)
        },
    )?;
    Ok(acc.into_scores())
}

/// The paper's Taylor score over one pass of `train` instead of past optimizer steps (for a
/// round before any step): Σ over batches of |⟨∇W L, W⟩_F| per still-dense projection.
pub fn taylor_pass_scores(
    model: &BertForSequenceClassification,
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
        |path, g, w| Ok(acc.add_inner(matrix_id(path), (g * w).sum().into_scalar::<f64>())?),
    )?;
    acc.end_step();
    Ok(acc.scores())
}

/// The paper's static ablation score: |L(W) − L(W = 0)| per still-dense projection, each loss
/// the mean over the first `batches` training batches in order, dropout off. The bias stays.
pub fn ablation_pass_scores(
    model: &BertForSequenceClassification,
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
    let loss = |m: &BertForSequenceClassification| -> Result<f64, TrainError> {
        let mut total = 0.0;
        for batch in &data {
            let labels = batch.labels.as_ref().ok_or(TrainError::MissingLabels)?;
            let [ids, types, mask] = batch_tensors(batch, &inner);
            total += task_loss(m.logits(ids, types, mask), labels, &inner).into_scalar::<f64>();
        }
        Ok(total / data.len() as f64)
    };
    let baseline = loss(&model)?;
    let mut losses = Vec::new();
    for (path, _) in dense_candidates(&model) {
        let mut zeroed = model.clone();
        let l = zeroed.bert.linear(path);
        let zero =
            ProjLinear::from_hf(Tensor::zeros([l.d_output(), l.d_input()], &inner), l.bias());
        zeroed.bert.set_linear(path, zero)?;
        let zeroed = loss(&zeroed)?;
        losses.push((matrix_id(path), AblationLoss { baseline, zeroed }));
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

/// One selection round as logged and recorded in `metrics.json`.
#[derive(Debug, Clone, serde::Serialize)]
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
    fn scores(
        &self,
        model: &BertForSequenceClassification,
        at: RoundAt,
    ) -> Result<ScoreTable, TrainError> {
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
    fn round(
        &mut self,
        at: RoundAt,
        mut model: BertForSequenceClassification,
    ) -> Result<BertForSequenceClassification, TrainError> {
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
        let paths: Vec<LinearPath> = selection
            .chosen
            .iter()
            .filter_map(|s| linear_path(s.matrix))
            .collect();
        model
            .bert
            .over_parameterize(&paths, &self.preset, self.core_training)?;
        for s in &selection.chosen {
            tracing::info!(
                ?at,
                matrix = %s.matrix.hf_name(Arch::Bert),
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

impl RoundHook<BertForSequenceClassification> for SelectionRounds<'_> {
    fn at_epoch_start(
        &mut self,
        epoch: usize,
        model: BertForSequenceClassification,
    ) -> Result<BertForSequenceClassification, TrainError> {
        self.round(RoundAt::Epoch(epoch), model)
    }

    fn after_backward(
        &mut self,
        model: &BertForSequenceClassification,
        grads: &mut GradientsParams,
    ) -> Result<(), TrainError> {
        let Some(acc) = &mut self.taylor else {
            return Ok(());
        };
        for (path, weight) in dense_candidates(model) {
            if let Some(g) = grads.get::<2>(weight.id) {
                let inner = (g * weight.val().inner()).sum().into_scalar::<f64>();
                acc.add_inner(matrix_id(path), inner)?;
            }
        }
        acc.end_step();
        Ok(())
    }

    fn after_step(
        &mut self,
        step: usize,
        model: BertForSequenceClassification,
    ) -> Result<BertForSequenceClassification, TrainError> {
        self.round(RoundAt::Step(step), model)
    }
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
}
