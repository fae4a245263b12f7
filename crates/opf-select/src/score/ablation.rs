//! The paper's static-selection score (OPF paper §4.3, Eq. 6, Algorithm 1 lines 2–7; spec §3.4):
//! I_W = |L_W − L_{W=0}|, the change in training loss when matrix W is zeroed, measured on a
//! model fine-tuned to convergence. The released code does not implement it.

use serde::{Deserialize, Serialize};

use crate::{MatrixId, ScoreTable, SelectError};

/// The two losses zero-ablation compares for one matrix, measured on the same data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AblationLoss {
    /// Loss of the intact model, L_W.
    pub baseline: f64,
    /// Loss with the matrix set to zero, L_{W=0}.
    pub zeroed: f64,
}

/// |baseline − zeroed| per matrix. Each matrix carries its own baseline so that the trainer may
/// evaluate matrices on different batches.
pub fn ablation_scores(
    losses: impl IntoIterator<Item = (MatrixId, AblationLoss)>,
) -> Result<ScoreTable, SelectError> {
    losses
        .into_iter()
        .map(|(matrix, AblationLoss { baseline, zeroed })| {
            if baseline.is_finite() && zeroed.is_finite() {
                Ok((matrix, (baseline - zeroed).abs()))
            } else {
                Err(SelectError::NonFiniteLoss {
                    matrix,
                    baseline,
                    zeroed,
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MatrixKind;

    #[test]
    fn absolute_loss_change() {
        let q = MatrixId::encoder(0, MatrixKind::Query);
        let f = MatrixId::encoder(1, MatrixKind::Ffn2);
        let scores = ablation_scores([
            (
                q,
                AblationLoss {
                    baseline: 0.5,
                    zeroed: 0.75,
                },
            ),
            // Zeroing can lower the loss; the score is still its magnitude.
            (
                f,
                AblationLoss {
                    baseline: 0.5,
                    zeroed: 0.25,
                },
            ),
        ])
        .unwrap();
        assert_eq!(scores.get(q), Some(0.25));
        assert_eq!(scores.get(f), Some(0.25));
        let nan = AblationLoss {
            baseline: 0.5,
            zeroed: f64::NAN,
        };
        assert!(matches!(
            ablation_scores([(q, nan)]),
            Err(SelectError::NonFiniteLoss { matrix, .. }) if matrix == q
        ));
    }
}
