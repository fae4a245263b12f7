//! Per-group top-N selection: `determine_weight_across_layers` (`bert/trainer_bert.py:790-799`;
//! BART `bart/trainer_bart.py:733-734`; spec §3.3).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::{Group, GroupRule, MatrixId, ScoreTable, SelectError, WeightTypes};

/// One chosen matrix, for logs, `metrics.json` and checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selected {
    /// The matrix. Its shape family (attention or FFN) follows its kind, not its group.
    pub matrix: MatrixId,
    /// Its score.
    pub score: f64,
    /// The first group (in [`Group`] order) that picked it.
    pub group: Group,
    /// Its rank in `group`, from 0.
    pub rank: usize,
    /// Further groups that picked it too (only under [`GroupRule::CompatMixedPool`]: an O matrix
    /// picked by both the FFN_2 and the O pool). It is still decomposed once.
    pub also_in: Vec<Group>,
}

/// A group whose pool held fewer than `top_n` selectable matrices, so it chose them all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shortfall {
    /// The group.
    pub group: Group,
    /// `top_n`.
    pub wanted: usize,
    /// Matrices it could choose from (after removing already-decomposed ones).
    pub available: usize,
}

/// The result of one [`select`] call (one round).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    /// The grouping rule used.
    pub rule: GroupRule,
    /// Matrices asked for per group.
    pub top_n: usize,
    /// Each chosen matrix once, by group order then rank.
    pub chosen: Vec<Selected>,
    /// Groups that could not fill `top_n`.
    pub shortfalls: Vec<Shortfall>,
}

impl Selection {
    /// The distinct chosen matrices: the set to decompose (and to add to `already`).
    pub fn matrices(&self) -> BTreeSet<MatrixId> {
        self.chosen.iter().map(|s| s.matrix).collect()
    }

    /// Number of distinct chosen matrices.
    pub fn len(&self) -> usize {
        self.chosen.len()
    }

    /// Whether nothing was chosen.
    pub fn is_empty(&self) -> bool {
        self.chosen.is_empty()
    }

    /// What `group` picked, in its rank order (including matrices it shares with an earlier
    /// group, whose [`Selected::rank`] refers to that earlier group).
    pub fn picked_by(&self, group: Group) -> Vec<&Selected> {
        let mut picked: Vec<&Selected> = self
            .chosen
            .iter()
            .filter(|s| s.group == group || s.also_in.contains(&group))
            .collect();
        picked.sort_by(|a, b| descending(a.score, b.score).then(a.matrix.cmp(&b.matrix)));
        picked
    }
}

/// Descending order of finite scores; `-0.0 == 0.0` so ties fall through to the caller's order.
fn descending(a: f64, b: f64) -> std::cmp::Ordering {
    b.partial_cmp(&a).unwrap_or(std::cmp::Ordering::Equal)
}

/// Chooses the top `top_n` matrices of every group.
///
/// * Candidates: every matrix in `scores` whose kind `weight_types` allows and `rule` assigns a
///   group, minus `already` (bug 5 fix: matrices decomposed in earlier rounds are never
///   re-selected, rather than relying on their `.weight` names vanishing).
/// * Per group: sort by score descending; ties keep [`MatrixId`] order (encoder before decoder,
///   lower layer first), as Python's stable sort over `named_parameters()` does. Take the first
///   `top_n`; a smaller pool is taken whole and reported in [`Selection::shortfalls`].
/// * Union over groups: a matrix picked by two pools appears once.
///
/// Errors on a NaN or infinite score of a candidate.
pub fn select(
    scores: &ScoreTable,
    rule: GroupRule,
    top_n: usize,
    weight_types: WeightTypes,
    already: &BTreeSet<MatrixId>,
) -> Result<Selection, SelectError> {
    let mut pools: BTreeMap<Group, Vec<(MatrixId, f64)>> = rule
        .active_groups(weight_types)
        .into_iter()
        .map(|g| (g, Vec::new()))
        .collect();
    for (matrix, score) in scores.iter() {
        let groups = rule.groups_of(matrix.kind, weight_types);
        if groups.is_empty() || already.contains(&matrix) {
            continue;
        }
        if !score.is_finite() {
            return Err(SelectError::NonFiniteScore { matrix, score });
        }
        for group in groups {
            pools.entry(group).or_default().push((matrix, score));
        }
    }

    let mut chosen: Vec<Selected> = Vec::new();
    let mut position: BTreeMap<MatrixId, usize> = BTreeMap::new();
    let mut shortfalls = Vec::new();
    for (group, mut pool) in pools {
        // Stable: ties keep MatrixId (named_parameters) order.
        pool.sort_by(|a, b| descending(a.1, b.1));
        if pool.len() < top_n {
            shortfalls.push(Shortfall {
                group,
                wanted: top_n,
                available: pool.len(),
            });
        }
        for (rank, (matrix, score)) in pool.into_iter().take(top_n).enumerate() {
            match position.get(&matrix) {
                Some(&i) => chosen[i].also_in.push(group),
                None => {
                    position.insert(matrix, chosen.len());
                    chosen.push(Selected {
                        matrix,
                        score,
                        group,
                        rank,
                        also_in: Vec::new(),
                    });
                }
            }
        }
    }
    Ok(Selection {
        rule,
        top_n,
        chosen,
        shortfalls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{MatrixKind, WeightType};
    use proptest::prelude::*;

    const LAYERS: usize = 12;

    /// A 12-layer BERT-like table: every encoder matrix of `ENCODER_LAYER` kinds.
    fn bert_table(score: impl Fn(MatrixId) -> f64) -> ScoreTable {
        (0..LAYERS)
            .flat_map(|l| MatrixKind::ENCODER_LAYER.map(|k| MatrixId::encoder(l, k)))
            .map(|id| (id, score(id)))
            .collect()
    }

    fn layers_of(selection: &Selection, group: Group) -> Vec<(usize, MatrixKind)> {
        selection
            .picked_by(group)
            .iter()
            .map(|s| (s.matrix.layer, s.matrix.kind))
            .collect()
    }

    fn none() -> BTreeSet<MatrixId> {
        BTreeSet::new()
    }

    #[test]
    fn golden_all_equal_strict_picks_first_layers() {
        let table = bert_table(|_| 1.0);
        for n in [1, 4, 8, 12] {
            let sel = select(
                &table,
                GroupRule::Strict,
                n,
                WeightTypes::default(),
                &none(),
            )
            .unwrap();
            assert_eq!(sel.len(), 6 * n);
            for group in &Group::ALL[..6] {
                let picked = sel.picked_by(*group);
                assert_eq!(picked.len(), n);
                let layers: Vec<usize> = picked.iter().map(|s| s.matrix.layer).collect();
                assert_eq!(layers, (0..n).collect::<Vec<_>>(), "{group}");
                let ranks: Vec<usize> = picked.iter().map(|s| s.rank).collect();
                assert_eq!(ranks, (0..n).collect::<Vec<_>>());
            }
            assert!(sel.shortfalls.is_empty());
        }
    }

    #[test]
    fn golden_all_equal_compat_interleaves_mixed_pool() {
        // Ties keep named_parameters order, where layer l's O precedes its FFN_2.
        let table = bert_table(|_| 1.0);
        let sel = select(
            &table,
            GroupRule::CompatMixedPool,
            4,
            WeightTypes::default(),
            &none(),
        )
        .unwrap();
        assert_eq!(
            layers_of(&sel, Group::Ffn2),
            [
                (0, MatrixKind::AttentionOutput),
                (0, MatrixKind::Ffn2),
                (1, MatrixKind::AttentionOutput),
                (1, MatrixKind::Ffn2)
            ]
        );
        for group in [
            Group::Ffn1,
            Group::Query,
            Group::Key,
            Group::Value,
            Group::AttentionOutput,
        ] {
            let layers: Vec<usize> = sel
                .picked_by(group)
                .iter()
                .map(|s| s.matrix.layer)
                .collect();
            assert_eq!(layers, [0, 1, 2, 3], "{group}");
        }
        // O0 and O1 were picked by both pools: 6·4 − 2 distinct matrices.
        assert_eq!(sel.len(), 22);
        let o0 = sel
            .chosen
            .iter()
            .find(|s| s.matrix == MatrixId::encoder(0, MatrixKind::AttentionOutput))
            .unwrap();
        assert_eq!(
            (o0.group, o0.also_in.as_slice()),
            (Group::Ffn2, &[Group::AttentionOutput][..])
        );
    }

    #[test]
    fn golden_compat_attention_output_fills_ffn2_pool() {
        // O scores 10 + layer, above every FFN_2 (≤ 1).
        let table = bert_table(|id| match id.kind {
            MatrixKind::AttentionOutput => 10.0 + id.layer as f64,
            MatrixKind::Ffn2 => 1.0 - id.layer as f64 / 100.0,
            _ => 0.5,
        });
        let n = 8;
        let sel = select(
            &table,
            GroupRule::CompatMixedPool,
            n,
            WeightTypes::default(),
            &none(),
        )
        .unwrap();
        let ffn2_pool = sel.picked_by(Group::Ffn2);
        assert_eq!(ffn2_pool.len(), n);
        assert!(
            ffn2_pool
                .iter()
                .all(|s| s.matrix.kind == MatrixKind::AttentionOutput)
        );
        let ffn2_layers: Vec<usize> = ffn2_pool.iter().map(|s| s.matrix.layer).collect();
        assert_eq!(ffn2_layers, [11, 10, 9, 8, 7, 6, 5, 4]);
        assert!(!sel.matrices().iter().any(|m| m.kind == MatrixKind::Ffn2));
        // The O pool picks the same 8: union semantics, x = 8, total 6N − x.
        assert_eq!(sel.len(), 6 * n - n);
        // Strict on the same table: FFN_2 gets its own N, layers by descending score.
        let strict = select(
            &table,
            GroupRule::Strict,
            n,
            WeightTypes::default(),
            &none(),
        )
        .unwrap();
        assert_eq!(strict.len(), 6 * n);
        let layers: Vec<usize> = strict
            .picked_by(Group::Ffn2)
            .iter()
            .map(|s| s.matrix.layer)
            .collect();
        assert_eq!(layers, (0..n).collect::<Vec<_>>());
    }

    #[test]
    fn compat_without_attention_has_pure_ffn2_pool() {
        let table = bert_table(|id| match id.kind {
            MatrixKind::AttentionOutput => 10.0,
            _ => 1.0,
        });
        let ffn: WeightTypes = "FFN_1,FFN_2".parse().unwrap();
        let sel = select(&table, GroupRule::CompatMixedPool, 3, ffn, &none()).unwrap();
        assert_eq!(sel.len(), 6);
        assert!(
            sel.matrices()
                .iter()
                .all(|m| matches!(m.kind, MatrixKind::Ffn1 | MatrixKind::Ffn2))
        );
    }

    #[test]
    fn sorted_descending_with_stable_layer_tie_break() {
        // Query scores: layer 5 highest, then layers 2 and 7 tied, then the rest tied.
        let table = bert_table(|id| match id.layer {
            5 => 3.0,
            2 | 7 => 2.0,
            _ => 1.0,
        });
        let sel = select(
            &table,
            GroupRule::Strict,
            5,
            WeightTypes::default(),
            &none(),
        )
        .unwrap();
        let layers: Vec<usize> = sel
            .picked_by(Group::Query)
            .iter()
            .map(|s| s.matrix.layer)
            .collect();
        assert_eq!(layers, [5, 2, 7, 0, 1]);
    }

    #[test]
    fn bart_pools_encoder_and_decoder_and_skips_cross() {
        let mut table = ScoreTable::new();
        for stack in [crate::Stack::Encoder, crate::Stack::Decoder] {
            for l in 0..6 {
                for kind in MatrixKind::ALL {
                    if stack == crate::Stack::Encoder
                        && kind.weight_type() == WeightType::CrossAttention
                    {
                        continue;
                    }
                    // Decoder scores higher, cross-attention highest of all.
                    let score = match (stack, kind.weight_type()) {
                        (_, WeightType::CrossAttention) => 100.0,
                        (crate::Stack::Decoder, _) => 2.0,
                        _ => 1.0,
                    };
                    table.insert(MatrixId::new(stack, l, kind), score);
                }
            }
        }
        let sel = select(
            &table,
            GroupRule::Strict,
            8,
            WeightTypes::default(),
            &none(),
        )
        .unwrap();
        assert_eq!(sel.len(), 48);
        assert!(
            !sel.matrices()
                .iter()
                .any(|m| m.kind.weight_type() == WeightType::CrossAttention)
        );
        let picked = sel.picked_by(Group::Query);
        // 6 decoder layers first, then encoder layers 0 and 1.
        let ids: Vec<MatrixId> = picked.iter().map(|s| s.matrix).collect();
        let mut expected: Vec<MatrixId> = (0..6)
            .map(|l| MatrixId::decoder(l, MatrixKind::Query))
            .collect();
        expected.extend((0..2).map(|l| MatrixId::encoder(l, MatrixKind::Query)));
        assert_eq!(ids, expected);
        // Opting in to cross-attention under Strict adds four 6-matrix pools, taken whole.
        let with_cross = WeightTypes::default().with(WeightType::CrossAttention);
        let sel = select(&table, GroupRule::Strict, 8, with_cross, &none()).unwrap();
        assert_eq!(sel.len(), 48 + 4 * 6);
        assert_eq!(sel.shortfalls.len(), 4);
        assert_eq!(
            sel.shortfalls[0],
            Shortfall {
                group: Group::CrossQuery,
                wanted: 8,
                available: 6
            }
        );
        // Compat never selects cross-attention.
        let sel = select(&table, GroupRule::CompatMixedPool, 8, with_cross, &none()).unwrap();
        assert!(
            !sel.matrices()
                .iter()
                .any(|m| m.kind.weight_type() == WeightType::CrossAttention)
        );
    }

    #[test]
    fn already_decomposed_never_reselected() {
        let table = bert_table(|id| 100.0 - id.layer as f64);
        let already: BTreeSet<MatrixId> = (0..3)
            .map(|l| MatrixId::encoder(l, MatrixKind::Key))
            .collect();
        let sel = select(
            &table,
            GroupRule::Strict,
            2,
            WeightTypes::default(),
            &already,
        )
        .unwrap();
        let layers: Vec<usize> = sel
            .picked_by(Group::Key)
            .iter()
            .map(|s| s.matrix.layer)
            .collect();
        assert_eq!(layers, [3, 4]);
        assert!(sel.matrices().is_disjoint(&already));
    }

    #[test]
    fn non_finite_candidate_score_is_an_error() {
        let mut table = bert_table(|_| 1.0);
        let bad = MatrixId::encoder(4, MatrixKind::Value);
        table.insert(bad, f64::NAN);
        let err = select(
            &table,
            GroupRule::Strict,
            2,
            WeightTypes::default(),
            &none(),
        )
        .unwrap_err();
        assert!(matches!(err, SelectError::NonFiniteScore { matrix, .. } if matrix == bad));
        // Not a candidate (already decomposed): ignored.
        let already = BTreeSet::from([bad]);
        assert!(
            select(
                &table,
                GroupRule::Strict,
                2,
                WeightTypes::default(),
                &already
            )
            .is_ok()
        );
    }

    #[test]
    fn serializes_for_metrics() {
        let table = bert_table(|_| 0.5);
        let sel = select(
            &table,
            GroupRule::Strict,
            1,
            "FFN_1".parse().unwrap(),
            &none(),
        )
        .unwrap();
        let json = serde_json::to_string(&sel).unwrap();
        assert_eq!(
            json,
            r#"{"rule":"strict","top_n":1,"chosen":[{"matrix":"encoder.0.ffn_1","score":0.5,"group":"FFN_1","rank":0,"also_in":[]}],"shortfalls":[]}"#
        );
    }

    proptest! {
        #[test]
        fn strict_selects_exactly_min_n_pool_per_group(
            scores in proptest::collection::vec(0.0f64..1.0, LAYERS * 6),
            n in 0usize..15,
        ) {
            let table: ScoreTable = bert_table(|_| 0.0)
                .iter()
                .zip(&scores)
                .map(|((id, _), s)| (id, *s))
                .collect();
            let sel = select(&table, GroupRule::Strict, n, WeightTypes::default(), &none()).unwrap();
            prop_assert_eq!(sel.len(), 6 * n.min(LAYERS));
            for group in &Group::ALL[..6] {
                let picked = sel.picked_by(*group);
                prop_assert_eq!(picked.len(), n.min(LAYERS));
                // Every picked score ≥ every unpicked score of the group.
                let min_picked = picked.iter().map(|s| s.score).fold(f64::INFINITY, f64::min);
                let chosen = sel.matrices();
                for (id, s) in table.iter() {
                    if Group::of_kind(id.kind) == *group && !chosen.contains(&id) {
                        prop_assert!(s <= min_picked);
                    }
                }
            }
            let compat = select(&table, GroupRule::CompatMixedPool, n, WeightTypes::default(), &none()).unwrap();
            let m = n.min(LAYERS);
            prop_assert!(compat.len() <= 6 * m && compat.len() >= 5 * m);
        }
    }
}
