//! Importance scores on a live BERT and the matrix naming bridge to `opf-select`.
//!
//! The Fisher (ChildTuning-D) pass follows `bert/trainer_bert.py:580-630`: one pass over the
//! training data in shuffled order with dropout active, the task loss, `backward()`, and for each
//! candidate weight the per-tensor clipped squared gradient mean is added to its score; no
//! optimizer step.

use std::collections::BTreeSet;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::Device;
use opf_glue::{Batches, Features, Order};
use opf_models::{BertForSequenceClassification, CoreTraining, LinearKind, LinearPath, ProjLinear};
use opf_select::{
    Arch, FisherAccumulator, GroupRule, MatrixId, MatrixKind, Plan, RoundAt, ScoreTable, Selected,
    WeightTypes,
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
    let candidates: Vec<(LinearPath, burn::module::ParamId)> = model
        .bert
        .linear_paths()
        .into_iter()
        .filter_map(|p| match model.bert.linear(p) {
            ProjLinear::Dense(l) => Some((p, l.weight.id)),
            ProjLinear::Mpo(_) => None,
        })
        .collect();
    let mut acc = FisherAccumulator::new();
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
        for &(path, id) in &candidates {
            if let Some(g) = grads.get::<2>(id) {
                let data = g.into_data().convert::<f32>();
                let slice = data.as_slice::<f32>().expect("f32 gradient");
                acc.add(matrix_id(path), slice)?;
            }
        }
    }
    Ok(acc.into_scores())
}

/// One selection round as logged and recorded in `metrics.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RoundLog {
    /// Epoch at whose start the round ran.
    pub epoch: usize,
    /// Matrices per group asked for.
    pub per_group: usize,
    /// The chosen matrices with score, group and rank.
    pub chosen: Vec<Selected>,
    /// Train-time parameters after the round.
    pub params_after: usize,
}

/// Static or dynamic OPF selection (`--top-n`, `--dynamic-decom --split-num`): at each round of
/// `plan` the current model is scored with the Fisher pass, the top matrices per group that are
/// still dense are chosen, and they are over-parameterized with `preset`.
pub struct FisherRounds<'a> {
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
    /// Training data for the scoring pass.
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
}

impl RoundHook<BertForSequenceClassification> for FisherRounds<'_> {
    fn at_epoch_start(
        &mut self,
        epoch: usize,
        mut model: BertForSequenceClassification,
    ) -> Result<BertForSequenceClassification, TrainError> {
        let Some(round) = self.plan.round_at(RoundAt::Epoch(epoch)).cloned() else {
            return Ok(model);
        };
        let scores = fisher_scores(
            &model,
            self.train,
            self.batch_size,
            self.pad_id,
            self.seed.wrapping_add(epoch as u64),
            &self.device,
        )?;
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
                epoch,
                matrix = %s.matrix.hf_name(Arch::Bert),
                score = s.score,
                group = ?s.group,
                rank = s.rank,
                "selected for over-parameterization"
            );
        }
        self.decomposed.extend(selection.matrices());
        self.log.push(RoundLog {
            epoch,
            per_group: round.per_group,
            chosen: selection.chosen,
            params_after: model.num_params(),
        });
        Ok(model)
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
