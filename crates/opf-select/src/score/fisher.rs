//! The released ChildTuning-D score, `calculate_fisher` (`bert/trainer_bert.py:580-630`; BART
//! `bart/trainer_bart.py:521-571`; spec §3.2).

use crate::{MatrixId, ScoreTable, SelectError};

/// `torch.nn.utils.clip_grad_norm_`'s guard added to the norm.
const CLIP_EPS: f64 = 1e-6;

/// mean(g'²) where g' = g·min(1, max_norm / (‖g‖_F + 1e-6)): one tensor's contribution to the
/// Fisher score for one batch (`clip_grad_norm_(param, max_norm)` per tensor, then
/// `(param.grad ** 2).mean()`). Computed in f64.
///
/// # Panics
/// On an empty gradient (the mean is undefined); [`FisherAccumulator::add`] reports that as an
/// error instead.
pub fn clipped_mean_square(grad: &[f32], max_norm: f64) -> f64 {
    assert!(!grad.is_empty(), "clipped_mean_square of an empty gradient");
    let sum_sq: f64 = grad.iter().map(|&g| f64::from(g) * f64::from(g)).sum();
    let coef = (max_norm / (sum_sq.sqrt() + CLIP_EPS)).min(1.0);
    coef * coef * sum_sq / grad.len() as f64
}

/// Accumulates Σ_batches mean(clip(g)²) per matrix, exactly as the released `calculate_fisher`.
///
/// Usage: for each batch of one full pass over the training set (train mode, dropout active, no
/// optimizer step), run forward + backward, then call [`add`](Self::add) once per candidate
/// matrix with its gradient, then zero the gradients. Which matrices are candidates is the
/// caller's business: feed every matrix whose kind is in `weight_types`; decomposed matrices have
/// no dense gradient and are simply not fed. Biases and LayerNorms are never scored here (the
/// released code scores them but its targets drop them).
#[derive(Debug, Clone)]
pub struct FisherAccumulator {
    max_norm: f64,
    scores: ScoreTable,
}

impl Default for FisherAccumulator {
    fn default() -> Self {
        FisherAccumulator::new()
    }
}

impl FisherAccumulator {
    /// An accumulator with the released `max_grad_norm = 1.0`.
    pub fn new() -> Self {
        FisherAccumulator::with_max_norm(1.0)
    }

    /// An accumulator clipping each tensor to `max_norm` (the trainer's `max_grad_norm`).
    pub fn with_max_norm(max_norm: f64) -> Self {
        FisherAccumulator {
            max_norm,
            scores: ScoreTable::new(),
        }
    }

    /// Adds one batch's contribution for `matrix`, given its gradient in any fixed element order.
    pub fn add(&mut self, matrix: MatrixId, grad: &[f32]) -> Result<(), SelectError> {
        if grad.is_empty() {
            return Err(SelectError::EmptyGradient { matrix });
        }
        if grad.iter().any(|g| !g.is_finite()) {
            return Err(SelectError::NonFiniteGradient { matrix });
        }
        self.scores
            .add(matrix, clipped_mean_square(grad, self.max_norm));
        Ok(())
    }

    /// The scores so far.
    pub fn scores(&self) -> &ScoreTable {
        &self.scores
    }

    /// The final scores.
    pub fn into_scores(self) -> ScoreTable {
        self.scores
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MatrixKind;

    fn rel(a: f64, b: f64) -> f64 {
        (a - b).abs() / b.abs()
    }

    /// Spec §8 item 9 with hand-computed numbers: two batches, one tensor clipped, one not.
    #[test]
    fn hand_computed_fisher() {
        let q = MatrixId::encoder(0, MatrixKind::Query);
        let f = MatrixId::encoder(0, MatrixKind::Ffn1);
        let mut acc = FisherAccumulator::new();
        // Batch 1. q: g = (3, 4), ‖g‖ = 5, coef = 1/5.000001, mean(g'²) = 25·coef²/2.
        acc.add(q, &[3.0, 4.0]).unwrap();
        // f: g = (0.1, 0.2, 0.2), ‖g‖ = 0.3 < 1: unclipped, mean = 0.09/3 = 0.03.
        acc.add(f, &[0.1, 0.2, 0.2]).unwrap();
        // Batch 2. q: g = (0, 0.6), ‖g‖ = 0.6: unclipped, mean = 0.36/2 = 0.18.
        acc.add(q, &[0.0, 0.6]).unwrap();
        // f: g = (2, 0, 0), ‖g‖ = 2, coef = 1/2.000001, mean = 4·coef²/3.
        acc.add(f, &[2.0, 0.0, 0.0]).unwrap();

        let q_expected = 12.5 / (5.000001f64 * 5.000001) + 0.18;
        let f_expected = 0.03 + 4.0 / 3.0 / (2.000001f64 * 2.000001);
        let scores = acc.into_scores();
        // The inputs are f32 (0.1, 0.2, 0.6 are inexact): tolerance well above f32 epsilon.
        assert!(rel(scores.get(q).unwrap(), q_expected) < 1e-6);
        assert!(rel(scores.get(f).unwrap(), f_expected) < 1e-6);
        // The clip's +1e-6 is visible: without it q would be 0.5 + 0.18 exactly.
        assert!((scores.get(q).unwrap() - 0.68).abs() > 1e-7);
    }

    #[test]
    fn clip_reduces_norm_to_max_norm() {
        let g = [30.0f32, -40.0];
        // Clipped g has norm ≈ 1, so Σg'² ≈ 1 and mean ≈ 1/2.
        assert!((clipped_mean_square(&g, 1.0) - 0.5).abs() < 1e-6);
        assert!((clipped_mean_square(&g, 2.0) - 2.0).abs() < 1e-5);
    }

    #[test]
    fn bad_gradients_are_errors() {
        let q = MatrixId::encoder(0, MatrixKind::Query);
        let mut acc = FisherAccumulator::new();
        assert_eq!(
            acc.add(q, &[]),
            Err(SelectError::EmptyGradient { matrix: q })
        );
        assert_eq!(
            acc.add(q, &[1.0, f32::NAN]),
            Err(SelectError::NonFiniteGradient { matrix: q })
        );
        assert!(acc.scores().is_empty());
    }
}
