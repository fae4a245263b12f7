//! BERT, BART and T5 in burn with Hugging Face checkpoint loading and saving, and addressable
//! projections for over-parameterized fine-tuning (OPF).
//!
//! * Module [`bert`]: BERT, ported from `transformers` `modeling_bert.py`, and its checkpoint
//!   layout; projections addressed by [`LinearPath`].
//! * Module [`bart`]: BART (encoder-decoder, sequence classification), ported from
//!   `modeling_bart.py`, and its checkpoint layout; projections addressed by [`BartLinearPath`].
//! * Module [`t5`]: T5 (v1.0 and v1.1) with its language-model head and greedy generation,
//!   ported from `modeling_t5.py`, and its checkpoint layout.
//! * Module [`linear`]: [`ProjLinear`], the swappable type of the per-layer projections, and the
//!   OPF operations shared by the models ([`MpoReplacement`]).
//! * Module [`checkpoint`]: safetensors reading/writing, the layout tables and the
//!   [`LoadReport`].
//! * Module [`precision`]: mixed precision ([`Precision`], the [`Autocast`] guard): the matrix
//!   products in bf16 or f16, parameters in f32.
//! * Module [`rng`]: PyTorch's CPU random streams (dropout masks, head initialisation,
//!   shuffling), so that a seed means the same run as in PyTorch.
//! * Module [`error`]: [`ModelError`].
#![warn(missing_docs)]

pub mod bart;
pub mod bert;
pub mod checkpoint;
mod config_io;
pub mod error;
pub mod fused;
pub mod linear;
pub mod mpo_linear;
pub mod precision;
pub mod rng;
pub mod t5;

pub use bart::{
    BartAttention, BartAttentionConfig, BartClassificationHead, BartClassificationHeadConfig,
    BartConfig, BartDecoder, BartDecoderLayer, BartEncoder, BartEncoderLayer,
    BartForSequenceClassification, BartForSequenceClassificationConfig, BartLayerConfig,
    BartLearnedPositionalEmbedding, BartLearnedPositionalEmbeddingConfig, BartLinearKind,
    BartLinearPath, BartModel, BartModelConfig, BartModelOutput, BartStack, BartStackConfig,
    POSITION_OFFSET, causal_attention_mask, last_eos_positions, shift_tokens_right,
};
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
pub use precision::{Autocast, Precision};
pub use t5::{
    IGNORE_INDEX, T5Attention, T5AttentionConfig, T5Block, T5BlockConfig, T5Config, T5Dense,
    T5DenseActDense, T5DenseConfig, T5DenseGatedActDense, T5ForConditionalGeneration,
    T5ForConditionalGenerationConfig, T5LayerAttention, T5LayerFF, T5LayerFFConfig, T5LayerNorm,
    T5LayerNormConfig, T5LinearKind, T5LinearPath, T5Stack, T5StackConfig, T5StackKind,
    causal_mask, relative_position_bucket, shift_right,
};
