//! Importance scores: the table [`crate::select`] ranks, and the three ways to fill it.
//!
//! * [`FisherAccumulator`]: the released ChildTuning-D score (compat, static and dynamic).
//! * [`TaylorAccumulator`]: the paper's first-order Taylor score (dynamic, paper profile).
//! * [`ablation_scores`]: the paper's zero-ablation score (static, paper profile).

mod ablation;
mod fisher;
mod taylor;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::MatrixId;

pub use ablation::{AblationLoss, ablation_scores};
pub use fisher::{FisherAccumulator, clipped_mean_square};
pub use taylor::TaylorAccumulator;

/// Importance score per matrix, iterated in [`MatrixId`] order (`named_parameters()` order).
///
/// Serializes as a JSON object keyed by the short matrix id (`"encoder.3.ffn_1": 0.25`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScoreTable(BTreeMap<MatrixId, f64>);

impl ScoreTable {
    /// An empty table.
    pub fn new() -> Self {
        ScoreTable::default()
    }

    /// Sets `matrix`'s score, returning the previous one.
    pub fn insert(&mut self, matrix: MatrixId, score: f64) -> Option<f64> {
        self.0.insert(matrix, score)
    }

    /// Adds `delta` to `matrix`'s score (starting from 0).
    pub fn add(&mut self, matrix: MatrixId, delta: f64) {
        *self.0.entry(matrix).or_insert(0.0) += delta;
    }

    /// `matrix`'s score, if it has one.
    pub fn get(&self, matrix: MatrixId) -> Option<f64> {
        self.0.get(&matrix).copied()
    }

    /// Removes `matrix`, returning its score.
    pub fn remove(&mut self, matrix: MatrixId) -> Option<f64> {
        self.0.remove(&matrix)
    }

    /// Number of scored matrices.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no matrix is scored.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `(matrix, score)` pairs in [`MatrixId`] order.
    pub fn iter(&self) -> impl Iterator<Item = (MatrixId, f64)> + '_ {
        self.0.iter().map(|(id, score)| (*id, *score))
    }
}

impl FromIterator<(MatrixId, f64)> for ScoreTable {
    fn from_iter<I: IntoIterator<Item = (MatrixId, f64)>>(iter: I) -> Self {
        ScoreTable(iter.into_iter().collect())
    }
}

impl IntoIterator for ScoreTable {
    type Item = (MatrixId, f64);
    type IntoIter = std::collections::btree_map::IntoIter<MatrixId, f64>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MatrixKind;

    #[test]
    fn serializes_as_object_keyed_by_short_id() {
        let table: ScoreTable = [
            (MatrixId::encoder(1, MatrixKind::Ffn1), 0.5),
            (MatrixId::encoder(0, MatrixKind::Query), 0.25),
        ]
        .into_iter()
        .collect();
        let json = serde_json::to_string(&table).unwrap();
        assert_eq!(json, r#"{"encoder.0.query":0.25,"encoder.1.ffn_1":0.5}"#);
        assert_eq!(serde_json::from_str::<ScoreTable>(&json).unwrap(), table);
    }
}
