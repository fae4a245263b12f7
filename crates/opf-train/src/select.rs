//! Importance scores on a live BERT and the matrix naming bridge to `opf-select`.
//!
//! The Fisher (ChildTuning-D) pass follows `bert/trainer_bert.py:580-630`: one pass over the
//! training data in shuffled order with dropout active, the task loss, `backward()`, and for each
//! candidate weight the per-tensor clipped squared gradient mean is added to its score; no
//! optimizer step.

use burn::optim::GradientsParams;
use burn::tensor::Device;
use opf_glue::{Batches, Features, Order};
use opf_models::{BertForSequenceClassification, LinearKind, LinearPath, ProjLinear};
use opf_select::{FisherAccumulator, MatrixId, MatrixKind, ScoreTable};

use crate::{SequenceClassifier, TrainError, batch_tensors, task_loss};

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
