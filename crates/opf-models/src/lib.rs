//! BERT and T5 in burn with Hugging Face checkpoint loading and saving, and addressable
//! projections for over-parameterized fine-tuning (OPF).
//!
//! * Module [`bert`]: the model, ported from `transformers` `modeling_bert.py`, and its
//!   checkpoint layout.
//! * Module [`t5`]: T5 (v1.0 and v1.1) with its language-model head and greedy generation,
//!   ported from `modeling_t5.py`, and its checkpoint layout.
//! * Module [`linear`]: [`ProjLinear`], the swappable type of the per-layer projections, and
//!   [`MpoReplacement`].
//! * Module [`checkpoint`]: safetensors reading/writing and the [`LoadReport`].
//! * Module [`error`]: [`ModelError`].
#![warn(missing_docs)]

pub mod bert;
pub mod checkpoint;
pub mod error;
pub mod linear;
pub mod mpo_linear;
pub mod t5;

pub use bert::{
    BertAttention, BertAttentionConfig, BertConfig, BertEmbeddings, BertEmbeddingsConfig,
    BertEncoder, BertEncoderConfig, BertForSequenceClassification,
    BertForSequenceClassificationConfig, BertIntermediate, BertIntermediateConfig, BertLayer,
    BertLayerConfig, BertModel, BertModelConfig, BertModelOutput, BertOutput, BertOutputConfig,
    BertPooler, BertPoolerConfig, BertSelfAttention, BertSelfAttentionConfig, BertSelfOutput,
    BertSelfOutputConfig, HiddenAct, Labels, LinearKind, LinearPath, ProblemType,
    extended_attention_mask,
};
pub use checkpoint::LoadReport;
pub use error::ModelError;
pub use linear::{MpoReplacement, ProjLinear, ProjLinearConfig};
pub use mpo_linear::{CoreTraining, ForwardMode, MpoLinear};
pub use t5::{
    IGNORE_INDEX, T5Attention, T5AttentionConfig, T5Block, T5BlockConfig, T5Config, T5Dense,
    T5DenseActDense, T5DenseConfig, T5DenseGatedActDense, T5ForConditionalGeneration,
    T5ForConditionalGenerationConfig, T5LayerAttention, T5LayerFF, T5LayerFFConfig, T5LayerNorm,
    T5LayerNormConfig, T5LinearKind, T5LinearPath, T5Stack, T5StackConfig, T5StackKind,
    causal_mask, relative_position_bucket, shift_right,
};
