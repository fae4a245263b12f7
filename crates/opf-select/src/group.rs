//! Candidate filtering (`weight_types`) and grouping rules (spec §2.1, §3.3).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{MatrixKind, SelectError};

/// One entry of the `weight_types` comma string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum WeightType {
    /// `FFN_1`: the first FFN matrix.
    #[serde(rename = "FFN_1")]
    Ffn1,
    /// `FFN_2`: the second FFN matrix.
    #[serde(rename = "FFN_2")]
    Ffn2,
    /// `attention`: self-attention Q, K, V and O.
    #[serde(rename = "attention")]
    Attention,
    /// `cross_attention`: decoder cross-attention (not a released-code name; selectable only
    /// under [`GroupRule::Strict`]).
    #[serde(rename = "cross_attention")]
    CrossAttention,
}

impl WeightType {
    /// Every weight type.
    pub const ALL: [WeightType; 4] = [
        WeightType::Ffn1,
        WeightType::Ffn2,
        WeightType::Attention,
        WeightType::CrossAttention,
    ];

    /// The name used in `weight_types`: `FFN_1`, `FFN_2`, `attention`, `cross_attention`.
    pub fn name(self) -> &'static str {
        match self {
            WeightType::Ffn1 => "FFN_1",
            WeightType::Ffn2 => "FFN_2",
            WeightType::Attention => "attention",
            WeightType::CrossAttention => "cross_attention",
        }
    }

    fn bit(self) -> u8 {
        1 << self as u8
    }
}

impl fmt::Display for WeightType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The set of candidate weight types, parsed from the comma string `"FFN_1,FFN_2,attention"`
/// (bug 13 fix: the released code tests membership by substring on the raw string,
/// `bert/trainer_bert.py:590,607`).
///
/// Names match case-insensitively, whitespace around entries is ignored, duplicates are harmless;
/// an unknown or empty entry is an error. [`Default`] is the released default
/// `FFN_1,FFN_2,attention`. Serializes as its canonical comma string.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct WeightTypes(u8);

impl WeightTypes {
    /// No weight types.
    pub const fn empty() -> Self {
        WeightTypes(0)
    }

    /// This set plus `weight_type`.
    pub fn with(self, weight_type: WeightType) -> Self {
        WeightTypes(self.0 | weight_type.bit())
    }

    /// Whether `weight_type` is in the set.
    pub fn contains(self, weight_type: WeightType) -> bool {
        self.0 & weight_type.bit() != 0
    }

    /// Whether matrices of `kind` are candidates.
    pub fn allows(self, kind: MatrixKind) -> bool {
        self.contains(kind.weight_type())
    }

    /// The members, in [`WeightType::ALL`] order.
    pub fn iter(self) -> impl Iterator<Item = WeightType> {
        WeightType::ALL
            .into_iter()
            .filter(move |t| self.contains(*t))
    }
}

impl Default for WeightTypes {
    fn default() -> Self {
        [WeightType::Ffn1, WeightType::Ffn2, WeightType::Attention]
            .into_iter()
            .collect()
    }
}

impl FromIterator<WeightType> for WeightTypes {
    fn from_iter<I: IntoIterator<Item = WeightType>>(iter: I) -> Self {
        iter.into_iter()
            .fold(WeightTypes::empty(), WeightTypes::with)
    }
}

impl FromStr for WeightTypes {
    type Err = SelectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Err(SelectError::EmptyWeightTypes);
        }
        s.split(',')
            .map(|entry| {
                let entry = entry.trim();
                WeightType::ALL
                    .into_iter()
                    .find(|t| t.name().eq_ignore_ascii_case(entry))
                    .ok_or_else(|| SelectError::UnknownWeightType {
                        name: entry.to_string(),
                        input: s.to_string(),
                    })
            })
            .collect()
    }
}

impl fmt::Display for WeightTypes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(t.name())?;
        }
        Ok(())
    }
}

impl From<WeightTypes> for String {
    fn from(types: WeightTypes) -> String {
        types.to_string()
    }
}

impl TryFrom<String> for WeightTypes {
    type Error = SelectError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A selection pool: top-N is taken per group, across layers (and, for BART/T5, across the
/// encoder and decoder stacks, which share one pool per type).
///
/// Declaration order is the released target order (`bert/trainer_bert.py:790-799`): FFN_1, FFN_2,
/// Q, K, V, O, then the cross-attention groups that only [`GroupRule::Strict`] can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Group {
    /// `intermediate.dense.weight` / `fc1.weight`.
    #[serde(rename = "FFN_1")]
    Ffn1,
    /// `output.dense.weight` / `fc2.weight`. Under [`GroupRule::CompatMixedPool`] this pool also
    /// holds the attention-output matrices.
    #[serde(rename = "FFN_2")]
    Ffn2,
    /// `attention.self.query.weight` / `self_attn.q_proj.weight`.
    #[serde(rename = "Q")]
    Query,
    /// `attention.self.key.weight` / `self_attn.k_proj.weight`.
    #[serde(rename = "K")]
    Key,
    /// `attention.self.value.weight` / `self_attn.v_proj.weight`.
    #[serde(rename = "V")]
    Value,
    /// `attention.output.dense.weight` / `self_attn.out_proj.weight`.
    #[serde(rename = "O")]
    AttentionOutput,
    /// Cross-attention query.
    #[serde(rename = "cross_Q")]
    CrossQuery,
    /// Cross-attention key.
    #[serde(rename = "cross_K")]
    CrossKey,
    /// Cross-attention value.
    #[serde(rename = "cross_V")]
    CrossValue,
    /// Cross-attention output.
    #[serde(rename = "cross_O")]
    CrossOutput,
}

impl Group {
    /// Every group, in declaration order.
    pub const ALL: [Group; 10] = [
        Group::Ffn1,
        Group::Ffn2,
        Group::Query,
        Group::Key,
        Group::Value,
        Group::AttentionOutput,
        Group::CrossQuery,
        Group::CrossKey,
        Group::CrossValue,
        Group::CrossOutput,
    ];

    /// The exact (strict) group of a kind: one group per module type.
    pub fn of_kind(kind: MatrixKind) -> Group {
        match kind {
            MatrixKind::Query => Group::Query,
            MatrixKind::Key => Group::Key,
            MatrixKind::Value => Group::Value,
            MatrixKind::AttentionOutput => Group::AttentionOutput,
            MatrixKind::CrossQuery => Group::CrossQuery,
            MatrixKind::CrossKey => Group::CrossKey,
            MatrixKind::CrossValue => Group::CrossValue,
            MatrixKind::CrossOutput => Group::CrossOutput,
            MatrixKind::Ffn1 => Group::Ffn1,
            MatrixKind::Ffn2 => Group::Ffn2,
        }
    }

    /// Log name: `FFN_1`, `FFN_2`, `Q`, `K`, `V`, `O`, `cross_Q`, ….
    pub fn name(self) -> &'static str {
        match self {
            Group::Ffn1 => "FFN_1",
            Group::Ffn2 => "FFN_2",
            Group::Query => "Q",
            Group::Key => "K",
            Group::Value => "V",
            Group::AttentionOutput => "O",
            Group::CrossQuery => "cross_Q",
            Group::CrossKey => "cross_K",
            Group::CrossValue => "cross_V",
            Group::CrossOutput => "cross_O",
        }
    }
}

impl fmt::Display for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How candidate matrices are pooled into [`Group`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupRule {
    /// One group per module type (bug 4 fix; the paper's rule). Each allowed kind is in exactly
    /// its own group, encoder and decoder layers pooled. Cross-attention groups exist when
    /// `weight_types` contains `cross_attention`. With the default weight types this is also
    /// exactly the released **BART** behaviour, whose targets do not collide (spec §3.3).
    #[default]
    Strict,
    /// The released **BERT** behaviour (`bert/trainer_bert.py:793`): target `output.dense.weight`
    /// is a substring of `attention.output.dense.weight`, so the FFN_2 pool also holds every
    /// attention-output matrix (when `attention` is a weight type, even if `FFN_2` is not). An O
    /// matrix therefore sits in two pools; if both pick it, it is decomposed once. Cross-attention
    /// is never selectable.
    CompatMixedPool,
}

impl GroupRule {
    /// The pools a matrix of `kind` belongs to, in group order; empty when it is not selectable.
    pub fn groups_of(self, kind: MatrixKind, weight_types: WeightTypes) -> Vec<Group> {
        if !weight_types.allows(kind) {
            return Vec::new();
        }
        match (self, kind) {
            (GroupRule::CompatMixedPool, MatrixKind::AttentionOutput) => {
                vec![Group::Ffn2, Group::AttentionOutput]
            }
            (GroupRule::CompatMixedPool, k) if k.weight_type() == WeightType::CrossAttention => {
                Vec::new()
            }
            (_, k) => vec![Group::of_kind(k)],
        }
    }

    /// The groups that have at least one selectable kind under `weight_types`, in group order.
    pub fn active_groups(self, weight_types: WeightTypes) -> Vec<Group> {
        let mut groups: Vec<Group> = MatrixKind::ALL
            .into_iter()
            .flat_map(|k| self.groups_of(k, weight_types))
            .collect();
        groups.sort();
        groups.dedup();
        groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_released_default() {
        let types: WeightTypes = "FFN_1,FFN_2,attention".parse().unwrap();
        assert_eq!(types, WeightTypes::default());
        assert_eq!(types.to_string(), "FFN_1,FFN_2,attention");
        assert!(!types.contains(WeightType::CrossAttention));
        let types: WeightTypes = " ffn_2 , Attention,FFN_2".parse().unwrap();
        assert_eq!(types.to_string(), "FFN_2,attention");
    }

    #[test]
    fn rejects_unknown_names() {
        // The released substring test would accept "FFN" (a substring of "FFN_1,...").
        for (input, name) in [("FFN", "FFN"), ("FFN_1,,FFN_2", ""), ("FFN_1,mlp", "mlp")] {
            assert_eq!(
                input.parse::<WeightTypes>(),
                Err(SelectError::UnknownWeightType {
                    name: name.into(),
                    input: input.into()
                })
            );
        }
        assert_eq!(
            " ".parse::<WeightTypes>(),
            Err(SelectError::EmptyWeightTypes)
        );
        let msg = "FFN_3".parse::<WeightTypes>().unwrap_err().to_string();
        assert!(
            msg.contains("\"FFN_3\"") && msg.contains("FFN_1, FFN_2, attention"),
            "{msg}"
        );
    }

    #[test]
    fn compat_pools() {
        let all = WeightTypes::default();
        let rule = GroupRule::CompatMixedPool;
        assert_eq!(
            rule.groups_of(MatrixKind::AttentionOutput, all),
            [Group::Ffn2, Group::AttentionOutput]
        );
        assert!(
            rule.groups_of(MatrixKind::CrossQuery, all.with(WeightType::CrossAttention))
                .is_empty()
        );
        assert_eq!(rule.active_groups(all), &Group::ALL[..6]);
        // Without FFN_2 the FFN_2 pool still exists, holding O matrices only (released quirk).
        let no_ffn2: WeightTypes = "FFN_1,attention".parse().unwrap();
        assert!(rule.active_groups(no_ffn2).contains(&Group::Ffn2));
        // Without attention the FFN_2 pool is FFN_2 only.
        let ffn: WeightTypes = "FFN_1,FFN_2".parse().unwrap();
        assert_eq!(rule.active_groups(ffn), [Group::Ffn1, Group::Ffn2]);
        assert!(rule.groups_of(MatrixKind::AttentionOutput, ffn).is_empty());
    }

    #[test]
    fn strict_pools() {
        let rule = GroupRule::Strict;
        let all = WeightTypes::default().with(WeightType::CrossAttention);
        for kind in MatrixKind::ALL {
            assert_eq!(rule.groups_of(kind, all), [Group::of_kind(kind)]);
        }
        assert_eq!(rule.active_groups(all), Group::ALL);
        assert_eq!(rule.active_groups(WeightTypes::default()), &Group::ALL[..6]);
    }
}
