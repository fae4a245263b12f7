//! Structured matrix addresses (bug 12 fix: no `eval` of rewritten names) and their Hugging Face
//! parameter names for logs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{SelectError, WeightType};

/// Which transformer stack a layer belongs to. Encoder sorts first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stack {
    /// The encoder (BERT's only stack).
    Encoder,
    /// The decoder (BART, T5).
    Decoder,
}

impl Stack {
    /// `encoder` or `decoder`.
    pub fn name(self) -> &'static str {
        match self {
            Stack::Encoder => "encoder",
            Stack::Decoder => "decoder",
        }
    }
}

/// One weight matrix of a transformer layer (spec §2.1).
///
/// Declaration order is BERT's `named_parameters()` order inside a layer (Q, K, V, O, FFN_1, FFN_2;
/// a decoder's cross-attention sits between self-attention and the FFN). Together with
/// [`MatrixId`]'s field order this gives the released code's tie-break order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatrixKind {
    /// Self-attention query.
    Query,
    /// Self-attention key.
    Key,
    /// Self-attention value.
    Value,
    /// Self-attention output projection (O).
    AttentionOutput,
    /// Decoder cross-attention query.
    CrossQuery,
    /// Decoder cross-attention key.
    CrossKey,
    /// Decoder cross-attention value.
    CrossValue,
    /// Decoder cross-attention output projection.
    CrossOutput,
    /// First FFN matrix (hidden → intermediate).
    Ffn1,
    /// Second FFN matrix (intermediate → hidden).
    Ffn2,
}

impl MatrixKind {
    /// Every kind, in declaration order.
    pub const ALL: [MatrixKind; 10] = [
        MatrixKind::Query,
        MatrixKind::Key,
        MatrixKind::Value,
        MatrixKind::AttentionOutput,
        MatrixKind::CrossQuery,
        MatrixKind::CrossKey,
        MatrixKind::CrossValue,
        MatrixKind::CrossOutput,
        MatrixKind::Ffn1,
        MatrixKind::Ffn2,
    ];

    /// The six kinds of an encoder layer (BERT), in `named_parameters()` order.
    pub const ENCODER_LAYER: [MatrixKind; 6] = [
        MatrixKind::Query,
        MatrixKind::Key,
        MatrixKind::Value,
        MatrixKind::AttentionOutput,
        MatrixKind::Ffn1,
        MatrixKind::Ffn2,
    ];

    /// The short name used by [`MatrixId`]'s `Display`: `query`, …, `cross_output`, `ffn_1`, `ffn_2`.
    pub fn name(self) -> &'static str {
        match self {
            MatrixKind::Query => "query",
            MatrixKind::Key => "key",
            MatrixKind::Value => "value",
            MatrixKind::AttentionOutput => "attention_output",
            MatrixKind::CrossQuery => "cross_query",
            MatrixKind::CrossKey => "cross_key",
            MatrixKind::CrossValue => "cross_value",
            MatrixKind::CrossOutput => "cross_output",
            MatrixKind::Ffn1 => "ffn_1",
            MatrixKind::Ffn2 => "ffn_2",
        }
    }

    /// The `weight_types` entry that makes this kind a candidate.
    pub fn weight_type(self) -> WeightType {
        match self {
            MatrixKind::Query
            | MatrixKind::Key
            | MatrixKind::Value
            | MatrixKind::AttentionOutput => WeightType::Attention,
            MatrixKind::CrossQuery
            | MatrixKind::CrossKey
            | MatrixKind::CrossValue
            | MatrixKind::CrossOutput => WeightType::CrossAttention,
            MatrixKind::Ffn1 => WeightType::Ffn1,
            MatrixKind::Ffn2 => WeightType::Ffn2,
        }
    }
}

impl fmt::Display for MatrixKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The address of one candidate matrix: stack, layer (from 0) and kind.
///
/// Ordered by (stack, layer, kind), which is `named_parameters()` order: the stable tie-break of
/// the released selection. `Display`/`FromStr` use the short form `encoder.3.ffn_1`, which is also
/// the serde form (so a [`crate::ScoreTable`] serializes as a JSON object). For the Hugging Face
/// parameter name use [`MatrixId::hf_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct MatrixId {
    /// Encoder or decoder.
    pub stack: Stack,
    /// Layer index inside the stack, from 0.
    pub layer: usize,
    /// Which matrix of the layer.
    pub kind: MatrixKind,
}

impl MatrixId {
    /// A matrix of `stack`'s layer `layer`.
    pub const fn new(stack: Stack, layer: usize, kind: MatrixKind) -> Self {
        MatrixId { stack, layer, kind }
    }

    /// A matrix of encoder layer `layer`.
    pub const fn encoder(layer: usize, kind: MatrixKind) -> Self {
        MatrixId::new(Stack::Encoder, layer, kind)
    }

    /// A matrix of decoder layer `layer`.
    pub const fn decoder(layer: usize, kind: MatrixKind) -> Self {
        MatrixId::new(Stack::Decoder, layer, kind)
    }

    /// The Hugging Face parameter name in `arch`'s checkpoint layout, for logs:
    /// `bert.encoder.layer.3.intermediate.dense.weight`,
    /// `model.decoder.layers.1.encoder_attn.q_proj.weight`,
    /// `decoder.block.1.layer.1.EncDecAttention.q.weight`.
    pub fn hf_name(self, arch: Arch) -> HfName {
        HfName { id: self, arch }
    }
}

impl fmt::Display for MatrixId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.stack.name(), self.layer, self.kind)
    }
}

impl FromStr for MatrixId {
    type Err = SelectError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SelectError::BadMatrixId(s.to_string());
        let mut parts = s.splitn(3, '.');
        let (Some(stack), Some(layer), Some(kind)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let stack = match stack {
            "encoder" => Stack::Encoder,
            "decoder" => Stack::Decoder,
            _ => return Err(bad()),
        };
        let layer = layer.parse().map_err(|_| bad())?;
        let kind = MatrixKind::ALL
            .into_iter()
            .find(|k| k.name() == kind)
            .ok_or_else(bad)?;
        Ok(MatrixId::new(stack, layer, kind))
    }
}

impl From<MatrixId> for String {
    fn from(id: MatrixId) -> String {
        id.to_string()
    }
}

impl TryFrom<String> for MatrixId {
    type Error = SelectError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A checkpoint naming convention, for [`MatrixId::hf_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// `BertForSequenceClassification`: `bert.encoder.layer.{i}.…`. BERT has no decoder; a
    /// decoder id renders as `bert.decoder.layer.{i}.…` and cross-attention as HF's
    /// `crossattention.…` so that logs stay readable.
    Bert,
    /// `BartForSequenceClassification`: `model.{encoder,decoder}.layers.{i}.…`.
    Bart,
    /// `T5ForConditionalGeneration`: `{encoder,decoder}.block.{i}.layer.{j}.…`.
    T5,
}

/// A [`MatrixId`] rendered as a Hugging Face parameter name; see [`MatrixId::hf_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HfName {
    id: MatrixId,
    arch: Arch,
}

impl fmt::Display for HfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use MatrixKind as K;
        let MatrixId { stack, layer, kind } = self.id;
        let stack = stack.name();
        match self.arch {
            Arch::Bert => {
                let module = match kind {
                    K::Query => "attention.self.query",
                    K::Key => "attention.self.key",
                    K::Value => "attention.self.value",
                    K::AttentionOutput => "attention.output.dense",
                    K::CrossQuery => "crossattention.self.query",
                    K::CrossKey => "crossattention.self.key",
                    K::CrossValue => "crossattention.self.value",
                    K::CrossOutput => "crossattention.output.dense",
                    K::Ffn1 => "intermediate.dense",
                    K::Ffn2 => "output.dense",
                };
                write!(f, "bert.{stack}.layer.{layer}.{module}.weight")
            }
            Arch::Bart => {
                let module = match kind {
                    K::Query => "self_attn.q_proj",
                    K::Key => "self_attn.k_proj",
                    K::Value => "self_attn.v_proj",
                    K::AttentionOutput => "self_attn.out_proj",
                    K::CrossQuery => "encoder_attn.q_proj",
                    K::CrossKey => "encoder_attn.k_proj",
                    K::CrossValue => "encoder_attn.v_proj",
                    K::CrossOutput => "encoder_attn.out_proj",
                    K::Ffn1 => "fc1",
                    K::Ffn2 => "fc2",
                };
                write!(f, "model.{stack}.layers.{layer}.{module}.weight")
            }
            Arch::T5 => {
                // Decoder blocks insert EncDecAttention as layer.1, pushing the FFN to layer.2.
                let ffn = match self.id.stack {
                    Stack::Encoder => 1,
                    Stack::Decoder => 2,
                };
                let (sub, module) = match kind {
                    K::Query => (0, "SelfAttention.q"),
                    K::Key => (0, "SelfAttention.k"),
                    K::Value => (0, "SelfAttention.v"),
                    K::AttentionOutput => (0, "SelfAttention.o"),
                    K::CrossQuery => (1, "EncDecAttention.q"),
                    K::CrossKey => (1, "EncDecAttention.k"),
                    K::CrossValue => (1, "EncDecAttention.v"),
                    K::CrossOutput => (1, "EncDecAttention.o"),
                    K::Ffn1 => (ffn, "DenseReluDense.wi"),
                    K::Ffn2 => (ffn, "DenseReluDense.wo"),
                };
                write!(f, "{stack}.block.{layer}.layer.{sub}.{module}.weight")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_names() {
        let id = MatrixId::encoder(3, MatrixKind::Ffn1);
        assert_eq!(
            id.hf_name(Arch::Bert).to_string(),
            "bert.encoder.layer.3.intermediate.dense.weight"
        );
        assert_eq!(
            MatrixId::encoder(0, MatrixKind::AttentionOutput)
                .hf_name(Arch::Bert)
                .to_string(),
            "bert.encoder.layer.0.attention.output.dense.weight"
        );
        assert_eq!(
            MatrixId::decoder(5, MatrixKind::CrossQuery)
                .hf_name(Arch::Bart)
                .to_string(),
            "model.decoder.layers.5.encoder_attn.q_proj.weight"
        );
        assert_eq!(
            MatrixId::decoder(1, MatrixKind::Ffn2)
                .hf_name(Arch::T5)
                .to_string(),
            "decoder.block.1.layer.2.DenseReluDense.wo.weight"
        );
        assert_eq!(
            MatrixId::encoder(1, MatrixKind::Ffn2)
                .hf_name(Arch::T5)
                .to_string(),
            "encoder.block.1.layer.1.DenseReluDense.wo.weight"
        );
    }

    #[test]
    fn short_form_round_trips() {
        for stack in [Stack::Encoder, Stack::Decoder] {
            for kind in MatrixKind::ALL {
                let id = MatrixId::new(stack, 11, kind);
                assert_eq!(id.to_string().parse::<MatrixId>().unwrap(), id);
            }
        }
        assert_eq!(
            MatrixId::encoder(3, MatrixKind::Ffn1).to_string(),
            "encoder.3.ffn_1"
        );
        for bad in [
            "",
            "encoder.3",
            "encoder.x.ffn_1",
            "middle.3.ffn_1",
            "encoder.3.ffn_3",
        ] {
            assert_eq!(
                bad.parse::<MatrixId>(),
                Err(SelectError::BadMatrixId(bad.into()))
            );
        }
    }

    #[test]
    fn order_is_named_parameters_order() {
        let mut ids = vec![
            MatrixId::decoder(0, MatrixKind::Query),
            MatrixId::encoder(1, MatrixKind::Query),
            MatrixId::encoder(0, MatrixKind::Ffn2),
            MatrixId::encoder(0, MatrixKind::AttentionOutput),
        ];
        ids.sort();
        assert_eq!(
            ids,
            [
                MatrixId::encoder(0, MatrixKind::AttentionOutput),
                MatrixId::encoder(0, MatrixKind::Ffn2),
                MatrixId::encoder(1, MatrixKind::Query),
                MatrixId::decoder(0, MatrixKind::Query),
            ]
        );
    }
}
