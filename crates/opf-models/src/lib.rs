//! BERT in burn with Hugging Face checkpoint loading and saving, and addressable projections for
//! over-parameterized fine-tuning (OPF).
//!
//! * Module [`bert`]: the model, ported from `transformers` `modeling_bert.py`, and its
//!   checkpoint layout.
//! * Module [`linear`]: [`ProjLinear`], the swappable type of the per-layer projections.
//! * Module [`checkpoint`]: safetensors reading/writing and the [`LoadReport`].
//! * Module [`error`]: [`ModelError`].
#![warn(missing_docs)]

pub mod bert;
pub mod checkpoint;
pub mod error;
pub mod linear;
pub mod mpo_linear;

pub use bert::{
    BertAttention, BertAttentionConfig, BertConfig, BertEmbeddings, BertEmbeddingsConfig,
    BertEncoder, BertEncoderConfig, BertForSequenceClassification,
    BertForSequenceClassificationConfig, BertIntermediate, BertIntermediateConfig, BertLayer,
    BertLayerConfig, BertModel, BertModelConfig, BertModelOutput, BertOutput, BertOutputConfig,
    BertPooler, BertPoolerConfig, BertSelfAttention, BertSelfAttentionConfig, BertSelfOutput,
    BertSelfOutputConfig, HiddenAct, Labels, LinearKind, LinearPath, MpoReplacement, ProblemType,
    extended_attention_mask,
};
pub use checkpoint::LoadReport;
pub use error::ModelError;
pub use linear::{ProjLinear, ProjLinearConfig};
pub use mpo_linear::{CoreTraining, ForwardMode, MpoLinear};
