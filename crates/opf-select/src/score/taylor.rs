//! The paper's dynamic-selection score (OPF paper §4.3, Eq. 7; spec §4.3): the first-order
//! Taylor estimate I_W ≈ |⟨∇_W L, W⟩_F|, accumulated over the last `t` optimizer steps.
//! The released code does not implement it (it re-runs `calculate_fisher` instead).

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::{MatrixId, ScoreTable, SelectError};

/// Accumulates Σ_{last t steps} |⟨∇_W L, W⟩_F| per matrix, without an extra data pass.
///
/// Usage: after each optimizer step's backward (after gradient accumulation, before the
/// update), call [`add`](Self::add) once per candidate matrix with its gradient and weight (same
/// element order), then [`end_step`](Self::end_step). [`scores`](Self::scores) sums the last
/// `window` completed steps. Calling `add` twice for one matrix in one step adds both terms.
///
/// Serializes (for training checkpoints) as `{window, step, terms: [[matrix, [[step, value]]]]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "TaylorState", try_from = "TaylorState")]
pub struct TaylorAccumulator {
    window: usize,
    /// Completed steps so far; `add` writes into step `step`.
    step: usize,
    terms: BTreeMap<MatrixId, VecDeque<(usize, f64)>>,
}

impl TaylorAccumulator {
    /// An accumulator over the last `window` steps (the paper's `t`).
    pub fn new(window: usize) -> Result<Self, SelectError> {
        if window == 0 {
            return Err(SelectError::ZeroWindow);
        }
        Ok(TaylorAccumulator {
            window,
            step: 0,
            terms: BTreeMap::new(),
        })
    }

    /// Adds |⟨grad, weight⟩| (computed in f64) for `matrix` to the current step.
    pub fn add(
        &mut self,
        matrix: MatrixId,
        grad: &[f32],
        weight: &[f32],
    ) -> Result<(), SelectError> {
        if grad.len() != weight.len() {
            return Err(SelectError::LengthMismatch {
                matrix,
                grad: grad.len(),
                weight: weight.len(),
            });
        }
        if grad.is_empty() {
            return Err(SelectError::EmptyGradient { matrix });
        }
        let inner: f64 = grad
            .iter()
            .zip(weight)
            .map(|(&g, &w)| f64::from(g) * f64::from(w))
            .sum();
        self.add_inner(matrix, inner)
    }

    /// Adds |`inner`| for `matrix` to the current step, where `inner` = ⟨grad, weight⟩ was
    /// computed elsewhere (on the training device, say).
    pub fn add_inner(&mut self, matrix: MatrixId, inner: f64) -> Result<(), SelectError> {
        if !inner.is_finite() {
            return Err(SelectError::NonFiniteGradient { matrix });
        }
        let terms = self.terms.entry(matrix).or_default();
        match terms.back_mut() {
            Some((step, value)) if *step == self.step => *value += inner.abs(),
            _ => terms.push_back((self.step, inner.abs())),
        }
        Ok(())
    }

    /// Closes the current optimizer step and forgets steps that left the window.
    pub fn end_step(&mut self) {
        self.step += 1;
        let oldest = self.step.saturating_sub(self.window);
        for terms in self.terms.values_mut() {
            while terms.front().is_some_and(|(step, _)| *step < oldest) {
                terms.pop_front();
            }
        }
        self.terms.retain(|_, terms| !terms.is_empty());
    }

    /// Completed steps so far.
    pub fn steps(&self) -> usize {
        self.step
    }

    /// Σ |⟨∇W, W⟩| over the last `window` completed steps, per matrix seen in them.
    pub fn scores(&self) -> ScoreTable {
        let oldest = self.step.saturating_sub(self.window);
        self.terms
            .iter()
            .map(|(id, terms)| {
                let sum = terms
                    .iter()
                    .filter(|(step, _)| (oldest..self.step).contains(step))
                    .map(|(_, value)| value)
                    .sum();
                (*id, sum)
            })
            .collect()
    }

    /// Drops `matrix` (e.g. once it is decomposed and has no dense weight any more).
    pub fn forget(&mut self, matrix: MatrixId) {
        self.terms.remove(&matrix);
    }
}

/// The serialized form of [`TaylorAccumulator`]: JSON maps need string keys, so the terms are a
/// list of `(matrix, [(step, value)])`.
#[derive(Serialize, Deserialize)]
struct TaylorState {
    window: usize,
    step: usize,
    terms: Vec<(MatrixId, Vec<(usize, f64)>)>,
}

impl From<TaylorAccumulator> for TaylorState {
    fn from(acc: TaylorAccumulator) -> Self {
        TaylorState {
            window: acc.window,
            step: acc.step,
            terms: acc
                .terms
                .into_iter()
                .map(|(id, terms)| (id, terms.into()))
                .collect(),
        }
    }
}

impl TryFrom<TaylorState> for TaylorAccumulator {
    type Error = SelectError;

    fn try_from(state: TaylorState) -> Result<Self, SelectError> {
        let mut acc = TaylorAccumulator::new(state.window)?;
        acc.step = state.step;
        acc.terms = state
            .terms
            .into_iter()
            .map(|(id, terms)| (id, terms.into()))
            .collect();
        Ok(acc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MatrixKind;

    #[test]
    fn window_keeps_last_t_steps_of_abs_inner_products() {
        let q = MatrixId::encoder(0, MatrixKind::Query);
        let mut acc = TaylorAccumulator::new(2).unwrap();
        let w = [1.0f32, -2.0];
        // Step 0: ⟨(1, 1), w⟩ = -1 → 1.
        acc.add(q, &[1.0, 1.0], &w).unwrap();
        // The in-progress step does not count.
        assert_eq!(acc.scores().get(q), Some(0.0));
        acc.end_step();
        // Step 1: ⟨(2, 0), w⟩ = 2, plus a second call in the same step, ⟨(0, 1), w⟩ = -2 → 2.
        acc.add(q, &[2.0, 0.0], &w).unwrap();
        acc.add(q, &[0.0, 1.0], &w).unwrap();
        acc.end_step();
        assert_eq!(acc.scores().get(q), Some(5.0));
        // Step 2: ⟨(0, 0.5), w⟩ = -1 → 1; step 0 leaves the window.
        acc.add(q, &[0.0, 0.5], &w).unwrap();
        acc.end_step();
        assert_eq!(acc.steps(), 3);
        assert_eq!(acc.scores().get(q), Some(5.0));
        // Two steps without q: it drops out entirely.
        acc.end_step();
        acc.end_step();
        assert_eq!(acc.scores().get(q), None);
    }

    #[test]
    fn errors() {
        let q = MatrixId::encoder(0, MatrixKind::Query);
        assert_eq!(
            TaylorAccumulator::new(0).unwrap_err(),
            SelectError::ZeroWindow
        );
        let mut acc = TaylorAccumulator::new(1).unwrap();
        assert_eq!(
            acc.add(q, &[1.0], &[1.0, 2.0]),
            Err(SelectError::LengthMismatch {
                matrix: q,
                grad: 1,
                weight: 2
            })
        );
        assert_eq!(
            acc.add(q, &[], &[]),
            Err(SelectError::EmptyGradient { matrix: q })
        );
        assert_eq!(
            acc.add(q, &[f32::INFINITY], &[1.0]),
            Err(SelectError::NonFiniteGradient { matrix: q })
        );
    }

    #[test]
    fn checkpoint_round_trip_keeps_the_window() {
        let q = MatrixId::encoder(0, MatrixKind::Query);
        let k = MatrixId::encoder(1, MatrixKind::Key);
        let mut acc = TaylorAccumulator::new(2).unwrap();
        for step in 0..3 {
            acc.add_inner(q, f64::from(step) + 0.5).unwrap();
            acc.add_inner(k, -1.0).unwrap();
            acc.end_step();
        }
        let json = serde_json::to_string(&acc).unwrap();
        let mut back: TaylorAccumulator = serde_json::from_str(&json).unwrap();
        assert_eq!(back, acc);
        // Both continue identically.
        for a in [&mut acc, &mut back] {
            a.add_inner(q, 4.0).unwrap();
            a.end_step();
        }
        assert_eq!(back.scores(), acc.scores());
        assert_eq!(acc.scores().get(q), Some(2.5 + 4.0));
        let bad = json.replacen("\"window\":2", "\"window\":0", 1);
        assert!(serde_json::from_str::<TaylorAccumulator>(&bad).is_err());
    }
}
