//! BERT (Devlin et al., 2019) in burn, ported from Hugging Face `transformers`
//! [`models/bert/modeling_bert.py`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bert/modeling_bert.py) (v5.24.0), read in the same order: config, embeddings,
//! self-attention, self-output, attention, intermediate, output, layer, encoder, pooler, model,
//! sequence-classification head. Each struct links the Python class it follows.
//!
//! * Inputs are burn `Int` tensors `[batch, seq]`: token ids, token type ids and Hugging Face's
//!   attention mask (1 = attend, 0 = padding), which [`extended_attention_mask`] turns into the
//!   additive mask used by every layer.
//! * Dropout is burn's module, applied by [`rng::dropout`]: active when the model's tensors live
//!   on an autodiff device (`Device::flex().autodiff()`) and the module is in training mode, the
//!   identity otherwise (as `model.eval()` in PyTorch); its masks come from PyTorch's generator
//!   when one is installed ([`rng::install`]), from burn's otherwise.
//! * The six projections of each layer are [`ProjLinear`]s addressed by [`LinearPath`]
//!   ([`BertModel::linear`], [`BertModel::set_linear`], [`BertModel::linear_paths`]).
//! * Checkpoints: [`BertForSequenceClassification::load`] reads a Hugging Face `model.safetensors`
//!   (with or without the `bert.` prefix); [`BertForSequenceClassification::save_pretrained`]
//!   writes `model.safetensors` + `config.json` in the Hugging Face layout. All checkpoint names
//!   live in the "Checkpoint layout" section at the end of this file.
//!
//! ```no_run
//! use burn::prelude::*;
//! use opf_models::BertForSequenceClassification;
//!
//! let device = Device::flex();
//! let (model, report) =
//!     BertForSequenceClassification::load("path/to/bert-base-uncased", None, Some(2), &device)?;
//! println!("{report}");
//! let ids = Tensor::<2, Int>::from_data([[101, 7592, 102]], &device);
//! let types = Tensor::<2, Int>::zeros([1, 3], &device);
//! let mask = Tensor::<2, Int>::ones([1, 3], &device);
//! let logits = model.forward(ids, types, mask); // [1, 2]
//! # Ok::<(), opf_models::ModelError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn::module::Initializer;
use burn::nn::loss::{CrossEntropyLoss, MseLoss, Reduction};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation::{gelu_approximate, relu};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::checkpoint::{
    Checkpoint, HfEntry, HfModule, LoadReport, layout_tensors, load_layout, write_safetensors,
};
use crate::config_io;
use crate::fused::{self, LayerNorm};
use crate::linear::{self, LinearSlots, MpoReplacement, ProjLinear, ProjLinearConfig, init_dense};
use crate::precision;
use crate::rng;

// ------------------------------------------------------------------------------------------------
// Config
// ------------------------------------------------------------------------------------------------

/// The feed-forward activation, `hidden_act` in `config.json`.
///
/// Follows `transformers/activations.py` `ACT2FN`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HiddenAct {
    /// `"gelu"`: exact GELU, `x Φ(x)` with the error function.
    #[serde(rename = "gelu")]
    Gelu,
    /// `"gelu_new"` (also read from `"gelu_pytorch_tanh"`): the tanh approximation.
    #[serde(rename = "gelu_new", alias = "gelu_pytorch_tanh")]
    GeluTanh,
    /// `"relu"`.
    #[serde(rename = "relu")]
    Relu,
}

impl HiddenAct {
    /// Applies the activation element-wise.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        match self {
            HiddenAct::Gelu => crate::fused::gelu(x),
            HiddenAct::GeluTanh => gelu_approximate(x),
            HiddenAct::Relu => relu(x),
        }
    }
}

/// The training objective of the classification head, `problem_type` in `config.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemType {
    /// One score per example, mean squared error (`num_labels == 1`).
    Regression,
    /// One class per example, cross-entropy.
    SingleLabelClassification,
    /// Several binary labels per example. Read from configs, but not supported by this crate.
    MultiLabelClassification,
}

/// A Hugging Face BERT `config.json`
/// ([`transformers` `BertConfig`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bert/configuration_bert.py)
/// + `PretrainedConfig`).
///
/// Missing keys take `bert-base-uncased`'s values ([`Default`]); keys this crate does not use
/// (`architectures`, `transformers_version`, ...) are kept in [`extra`](Self::extra) so that a
/// loaded config is written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BertConfig {
    /// Always `"bert"`.
    pub model_type: String,
    /// Vocabulary size. Default 30522.
    pub vocab_size: usize,
    /// Width of every hidden state. Default 768.
    pub hidden_size: usize,
    /// Number of encoder layers. Default 12.
    pub num_hidden_layers: usize,
    /// Attention heads per layer; must divide `hidden_size`. Default 12.
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer. Default 3072.
    pub intermediate_size: usize,
    /// Feed-forward activation. Default `"gelu"` (exact).
    pub hidden_act: HiddenAct,
    /// Dropout after embeddings and each sub-layer. Default 0.1.
    pub hidden_dropout_prob: f64,
    /// Dropout on attention probabilities. Default 0.1.
    pub attention_probs_dropout_prob: f64,
    /// Number of position embeddings (maximum sequence length). Default 512.
    pub max_position_embeddings: usize,
    /// Number of token types (segments). Default 2.
    pub type_vocab_size: usize,
    /// Standard deviation of the normal initialisation of fresh weights. Default 0.02.
    pub initializer_range: f64,
    /// Layer-norm epsilon. Default 1e-12.
    pub layer_norm_eps: f64,
    /// Padding token id. Default 0. Only documents the tokenizer's convention here: padding is
    /// handled by the attention mask.
    pub pad_token_id: Option<usize>,
    /// Must be `"absolute"` (relative position embeddings are not implemented).
    pub position_embedding_type: String,
    /// Dropout before the classifier; `None` means `hidden_dropout_prob`.
    pub classifier_dropout: Option<f64>,
    /// Explicit `num_labels`, if the file has one (Hugging Face derives it from `id2label`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_labels: Option<usize>,
    /// Class index → label name.
    #[serde(
        skip_serializing_if = "Option::is_none",
        deserialize_with = "deserialize_id2label"
    )]
    pub id2label: Option<BTreeMap<usize, String>>,
    /// Label name → class index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label2id: Option<BTreeMap<String, usize>>,
    /// Training objective; `None` means regression for one label, classification otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem_type: Option<ProblemType>,
    /// Keys this crate does not interpret, kept for writing the config back.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// Reads `id2label`, whose JSON keys are decimal strings. (`serde_json` parses such keys into
/// integers itself, but not through the buffering that `#[serde(flatten)]` imposes.)
pub(crate) fn deserialize_id2label<'de, D>(
    deserializer: D,
) -> Result<Option<BTreeMap<usize, String>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let Some(labels) = Option::<BTreeMap<String, String>>::deserialize(deserializer)? else {
        return Ok(None);
    };
    labels
        .into_iter()
        .map(|(id, label)| {
            id.parse().map(|id| (id, label)).map_err(|_| {
                serde::de::Error::custom(format!("id2label key {id:?} is not an index"))
            })
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

impl Default for BertConfig {
    /// `bert-base-uncased`, as the defaults of `transformers` `BertConfig.__init__`.
    fn default() -> Self {
        Self {
            model_type: "bert".to_string(),
            vocab_size: 30522,
            hidden_size: 768,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            intermediate_size: 3072,
            hidden_act: HiddenAct::Gelu,
            hidden_dropout_prob: 0.1,
            attention_probs_dropout_prob: 0.1,
            max_position_embeddings: 512,
            type_vocab_size: 2,
            initializer_range: 0.02,
            layer_norm_eps: 1e-12,
            pad_token_id: Some(0),
            position_embedding_type: "absolute".to_string(),
            classifier_dropout: None,
            num_labels: None,
            id2label: None,
            label2id: None,
            problem_type: None,
            extra: serde_json::Map::new(),
        }
    }
}

impl BertConfig {
    /// Parses and [validates](Self::validate) a `config.json` text.
    pub fn from_json_str(json: &str) -> Result<Self, ModelError> {
        config_io::parse(json, Self::validate)
    }

    /// Reads and [validates](Self::validate) a `config.json` file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ModelError> {
        config_io::read(path.as_ref(), Self::validate)
    }

    /// The config as pretty-printed JSON, in the `config.json` format.
    pub fn to_json_string(&self) -> String {
        config_io::to_json(self)
    }

    /// Writes [`to_json_string`](Self::to_json_string) to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        config_io::write(self, path.as_ref())
    }

    /// Checks that the values describe a BERT this crate can build.
    pub fn validate(&self) -> Result<(), ModelError> {
        let fail = |msg: String| Err(ModelError::InvalidConfig(msg));
        config_io::check_type_and_sizes(
            &self.model_type,
            "bert",
            &[
                ("vocab_size", self.vocab_size),
                ("hidden_size", self.hidden_size),
                ("num_hidden_layers", self.num_hidden_layers),
                ("num_attention_heads", self.num_attention_heads),
                ("intermediate_size", self.intermediate_size),
                ("max_position_embeddings", self.max_position_embeddings),
                ("type_vocab_size", self.type_vocab_size),
            ],
        )?;
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return fail(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        let probs = [
            ("hidden_dropout_prob", Some(self.hidden_dropout_prob)),
            (
                "attention_probs_dropout_prob",
                Some(self.attention_probs_dropout_prob),
            ),
            ("classifier_dropout", self.classifier_dropout),
        ];
        for (name, p) in probs {
            if let Some(p) = p
                && !(0.0..1.0).contains(&p)
            {
                return fail(format!("{name} is {p}, expected a value in [0, 1)"));
            }
        }
        if self.position_embedding_type != "absolute" {
            return fail(format!(
                "position_embedding_type {:?} is not supported (only \"absolute\")",
                self.position_embedding_type
            ));
        }
        if let (Some(n), Some(labels)) = (self.num_labels, &self.id2label)
            && n != labels.len()
        {
            return fail(format!(
                "num_labels is {n} but id2label has {} entries",
                labels.len()
            ));
        }
        if self.num_labels() == 0 {
            return fail("num_labels must be positive".to_string());
        }
        match self.problem_type() {
            ProblemType::MultiLabelClassification => {
                fail("problem_type multi_label_classification is not supported".to_string())
            }
            ProblemType::Regression if self.num_labels() != 1 => fail(format!(
                "problem_type regression needs num_labels 1, not {}",
                self.num_labels()
            )),
            _ => Ok(()),
        }
    }

    /// Number of classifier outputs: `num_labels`, else the size of `id2label`, else 2 (as
    /// `PretrainedConfig`).
    pub fn num_labels(&self) -> usize {
        match (&self.id2label, self.num_labels) {
            (_, Some(n)) => n,
            (Some(labels), None) => labels.len(),
            (None, None) => 2,
        }
    }

    /// The same config with `n` labels. Label names are kept when their count already is `n`,
    /// otherwise replaced by `LABEL_0..LABEL_{n-1}` (as `PretrainedConfig.num_labels`).
    pub fn with_num_labels(mut self, n: usize) -> Self {
        let keep = self.id2label.as_ref().is_some_and(|l| l.len() == n);
        if !keep {
            let id2label: BTreeMap<usize, String> =
                (0..n).map(|i| (i, format!("LABEL_{i}"))).collect();
            self.label2id = Some(id2label.iter().map(|(i, l)| (l.clone(), *i)).collect());
            self.id2label = Some(id2label);
        }
        self.num_labels = None;
        self
    }

    /// The objective: explicit `problem_type`, else regression for one label and single-label
    /// classification otherwise (as `BertForSequenceClassification.forward`).
    pub fn problem_type(&self) -> ProblemType {
        match (self.problem_type, self.num_labels()) {
            (Some(p), _) => p,
            (None, 1) => ProblemType::Regression,
            (None, _) => ProblemType::SingleLabelClassification,
        }
    }

    /// The burn configuration of the encoder.
    pub fn model_config(&self) -> BertModelConfig {
        let r = self.initializer_range;
        let self_attention = BertSelfAttentionConfig::new(
            self.hidden_size,
            self.num_attention_heads,
            self.attention_probs_dropout_prob,
        )
        .with_initializer_range(r);
        let self_output = BertSelfOutputConfig::new(
            self.hidden_size,
            self.layer_norm_eps,
            self.hidden_dropout_prob,
        )
        .with_initializer_range(r);
        let intermediate =
            BertIntermediateConfig::new(self.hidden_size, self.intermediate_size, self.hidden_act)
                .with_initializer_range(r);
        let output = BertOutputConfig::new(
            self.intermediate_size,
            self.hidden_size,
            self.layer_norm_eps,
            self.hidden_dropout_prob,
        )
        .with_initializer_range(r);
        let layer = BertLayerConfig::new(
            BertAttentionConfig::new(self_attention, self_output),
            intermediate,
            output,
        );
        BertModelConfig::new(
            BertEmbeddingsConfig::new(
                self.vocab_size,
                self.hidden_size,
                self.max_position_embeddings,
                self.type_vocab_size,
                self.layer_norm_eps,
                self.hidden_dropout_prob,
            )
            .with_initializer_range(r),
            BertEncoderConfig::new(self.num_hidden_layers, layer),
            BertPoolerConfig::new(self.hidden_size).with_initializer_range(r),
        )
    }

    /// The burn configuration of the encoder plus classification head.
    pub fn classification_config(&self) -> BertForSequenceClassificationConfig {
        BertForSequenceClassificationConfig::new(
            self.model_config(),
            self.num_labels(),
            self.classifier_dropout.unwrap_or(self.hidden_dropout_prob),
        )
        .with_initializer_range(self.initializer_range)
    }
}

// ------------------------------------------------------------------------------------------------
// Attention mask
// ------------------------------------------------------------------------------------------------

/// Turns Hugging Face's attention mask (1 = attend, 0 = padding) into the additive mask added to
/// the attention scores: `(1 − m) · f32::MIN`, broadcast over heads and query positions.
///
/// The eager-attention mask of `transformers` (`masking_utils.create_bidirectional_mask`, called
/// from [`BertModel.forward`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bert/modeling_bert.py#L708);
/// `ModuleUtilsMixin.get_extended_attention_mask` in v4), like candle's
/// `get_extended_attention_mask`. A fully padded row attends uniformly instead of producing NaN.
///
/// # Shapes
///
/// - attention_mask: `[batch, seq]`
/// - output: `[batch, 1, 1, seq]`
pub fn extended_attention_mask(attention_mask: Tensor<2, Int>) -> Tensor<4> {
    let [batch, seq] = attention_mask.dims();
    let keep = attention_mask.float();
    (keep.neg() + 1.0)
        .mul_scalar(f32::MIN)
        .reshape([batch, 1, 1, seq])
}

// ------------------------------------------------------------------------------------------------
// Embeddings
// ------------------------------------------------------------------------------------------------

/// Configuration of [`BertEmbeddings`].
#[derive(Config, Debug)]
pub struct BertEmbeddingsConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Number of positions.
    pub max_position_embeddings: usize,
    /// Number of token types.
    pub type_vocab_size: usize,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// Dropout probability.
    pub hidden_dropout_prob: f64,
    /// Standard deviation of the initial embeddings. Default: 0.02.
    #[config(default = 0.02)]
    pub initializer_range: f64,
}

/// Word + position + token-type embeddings, layer norm, dropout.
///
/// [HF `BertEmbeddings`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bert/modeling_bert.py#L54). Positions are `0..seq` (absolute).
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    /// `word_embeddings`, `[vocab_size, hidden]`.
    pub word_embeddings: Embedding,
    /// `position_embeddings`, `[max_position_embeddings, hidden]`.
    pub position_embeddings: Embedding,
    /// `token_type_embeddings`, `[type_vocab_size, hidden]`.
    pub token_type_embeddings: Embedding,
    /// `LayerNorm`.
    pub layer_norm: LayerNorm,
    /// `dropout`.
    pub dropout: Dropout,
}

impl BertEmbeddingsConfig {
    /// Initialises the embeddings as `BertPreTrainedModel._init_weights`: `N(0, r²)` tables,
    /// layer norm `γ = 1, β = 0`.
    pub fn init(&self, device: &Device) -> BertEmbeddings {
        let table = |n| {
            EmbeddingConfig::new(n, self.hidden_size)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: self.initializer_range,
                })
                .init(device)
        };
        BertEmbeddings {
            word_embeddings: table(self.vocab_size),
            position_embeddings: table(self.max_position_embeddings),
            token_type_embeddings: table(self.type_vocab_size),
            layer_norm: LayerNorm::new(self.hidden_size, self.layer_norm_eps, device),
            dropout: DropoutConfig::new(self.hidden_dropout_prob).init(),
        }
    }
}

impl BertEmbeddings {
    /// Embeds token ids.
    ///
    /// # Shapes
    ///
    /// - input_ids, token_type_ids: `[batch, seq]`
    /// - output: `[batch, seq, hidden]`
    ///
    /// # Panics
    ///
    /// Panics if `seq` exceeds `max_position_embeddings` or the two inputs differ in shape.
    pub fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>) -> Tensor<3> {
        let [batch, seq] = input_ids.dims();
        assert_shape!(token_type_ids, [batch, seq]);
        let [max_positions, _] = self.position_embeddings.weight.lazy_shape().dims();
        assert!(
            seq <= max_positions,
            "sequence length {seq} exceeds max_position_embeddings {max_positions}"
        );
        let position_ids = Tensor::<1, Int>::arange(0..seq as i64, &input_ids.device()).unsqueeze();
        let embeddings = self.word_embeddings.forward(input_ids)
            + self.token_type_embeddings.forward(token_type_ids)
            + self.position_embeddings.forward(position_ids);
        rng::dropout(&self.dropout, self.layer_norm.forward(embeddings))
    }
}

// ------------------------------------------------------------------------------------------------
// Attention
// ------------------------------------------------------------------------------------------------

/// Configuration of [`BertSelfAttention`].
#[derive(Config, Debug)]
pub struct BertSelfAttentionConfig {
    /// Hidden width.
    pub hidden_size: usize,
    /// Number of heads; divides `hidden_size`.
    pub num_attention_heads: usize,
    /// Dropout on attention probabilities.
    pub attention_probs_dropout_prob: f64,
    /// Standard deviation of the initial weights. Default: 0.02.
    #[config(default = 0.02)]
    pub initializer_range: f64,
}

/// Multi-head scaled dot-product self-attention (no output projection).
///
/// [HF `BertSelfAttention`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bert/modeling_bert.py#L140), absolute positions, no cache.
#[derive(Module, Debug)]
pub struct BertSelfAttention {
    /// `query` projection.
    pub query: ProjLinear,
    /// `key` projection.
    pub key: ProjLinear,
    /// `value` projection.
    pub value: ProjLinear,
    /// `dropout` on attention probabilities.
    pub dropout: Dropout,
    /// Number of heads.
    pub num_heads: usize,
    /// Width of one head, `hidden / num_heads`.
    pub head_size: usize,
}

impl BertSelfAttentionConfig {
    /// Initialises the three projections, `N(0, r²)` weights and zero biases.
    ///
    /// # Panics
    ///
    /// Panics if `num_attention_heads` does not divide `hidden_size`.
    pub fn init(&self, device: &Device) -> BertSelfAttention {
        assert_eq!(
            self.hidden_size % self.num_attention_heads,
            0,
            "hidden_size must be a multiple of num_attention_heads"
        );
        let proj = || {
            ProjLinearConfig::new(self.hidden_size, self.hidden_size)
                .with_initializer_range(self.initializer_range)
                .init(device)
        };
        BertSelfAttention {
            query: proj(),
            key: proj(),
            value: proj(),
            dropout: DropoutConfig::new(self.attention_probs_dropout_prob).init(),
            num_heads: self.num_attention_heads,
            head_size: self.hidden_size / self.num_attention_heads,
        }
    }
}

impl BertSelfAttention {
    /// `softmax(Q Kᵀ / √d + mask) V`, heads concatenated ([HF `eager_attention_forward`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bert/modeling_bert.py#L112)).
    ///
    /// # Shapes
    ///
    /// - hidden_states: `[batch, seq, hidden]`
    /// - mask: `[batch, 1, 1, seq]` (from [`extended_attention_mask`])
    /// - output: `[batch, seq, hidden]`
    pub fn forward(&self, hidden_states: Tensor<3>, mask: Tensor<4>) -> Tensor<3> {
        let [batch, seq, hidden] = hidden_states.dims();
        let heads = |x: Tensor<3>| {
            x.reshape([batch, seq, self.num_heads, self.head_size])
                .swap_dims(1, 2)
        };
        let query = heads(self.query.forward(hidden_states.clone()));
        let key = heads(self.key.forward(hidden_states.clone()));
        let value = heads(self.value.forward(hidden_states));

        let scaling = (self.head_size as f64).powf(-0.5);
        let context = if fused::attention_applies(&mask) {
            fused::attention(query, key, value, mask, scaling)
        } else {
            let scores = precision::matmul(query, key.swap_dims(2, 3));
            let noise = rng::dropout_noise(&self.dropout, &scores);
            let probs = fused::attention_probs(scores, mask, scaling, noise);
            precision::matmul(probs, value)
        };
        context.swap_dims(1, 2).reshape([batch, seq, hidden])
    }
}

/// Configuration of [`BertSelfOutput`].
#[derive(Config, Debug)]
pub struct BertSelfOutputConfig {
    /// Hidden width.
    pub hidden_size: usize,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// Dropout probability.
    pub hidden_dropout_prob: f64,
    /// Standard deviation of the initial weights. Default: 0.02.
    #[config(default = 0.02)]
    pub initializer_range: f64,
}

/// Attention output projection, dropout, residual, layer norm.
///
/// [HF `BertSelfOutput`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bert/modeling_bert.py#L283).
#[derive(Module, Debug)]
pub struct BertSelfOutput {
    /// `dense`, the attention output projection O.
    pub dense: ProjLinear,
    /// `LayerNorm`.
    pub layer_norm: LayerNorm,
    /// `dropout`.
    pub dropout: Dropout,
}

impl BertSelfOutputConfig {
    /// Initialises the projection (`N(0, r²)`, zero bias) and the layer norm (`γ = 1, β = 0`).
    pub fn init(&self, device: &Device) -> BertSelfOutput {
        BertSelfOutput {
            dense: ProjLinearConfig::new(self.hidden_size, self.hidden_size)
                .with_initializer_range(self.initializer_range)
                .init(device),
            layer_norm: LayerNorm::new(self.hidden_size, self.layer_norm_eps, device),
            dropout: DropoutConfig::new(self.hidden_dropout_prob).init(),
        }
    }
}

impl BertSelfOutput {
    /// `LayerNorm(dropout(dense(hidden_states)) + input)`.
    ///
    /// # Shapes
    ///
    /// - hidden_states, input, output: `[batch, seq, hidden]`
    pub fn forward(&self, hidden_states: Tensor<3>, input: Tensor<3>) -> Tensor<3> {
        let x = rng::dropout(&self.dropout, self.dense.forward(hidden_states));
        self.layer_norm.forward(x + input)
    }
}

/// Configuration of [`BertAttention`].
#[derive(Config, Debug)]
pub struct BertAttentionConfig {
    /// Self-attention.
    pub self_attention: BertSelfAttentionConfig,
    /// Output projection and norm.
    pub output: BertSelfOutputConfig,
}

/// Self-attention followed by its output block.
///
/// [HF `BertAttention`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bert/modeling_bert.py#L297).
#[derive(Module, Debug)]
pub struct BertAttention {
    /// `self` (Q, K, V).
    pub self_attention: BertSelfAttention,
    /// `output` (O, norm).
    pub output: BertSelfOutput,
}

impl BertAttentionConfig {
    /// Initialises both parts.
    pub fn init(&self, device: &Device) -> BertAttention {
        BertAttention {
            self_attention: self.self_attention.init(device),
            output: self.output.init(device),
        }
    }
}

impl BertAttention {
    /// # Shapes
    ///
    /// - hidden_states, output: `[batch, seq, hidden]`
    /// - mask: `[batch, 1, 1, seq]`
    pub fn forward(&self, hidden_states: Tensor<3>, mask: Tensor<4>) -> Tensor<3> {
        let context = self.self_attention.forward(hidden_states.clone(), mask);
        self.output.forward(context, hidden_states)
    }
}

// ------------------------------------------------------------------------------------------------
// Feed-forward
// ------------------------------------------------------------------------------------------------

/// Configuration of [`BertIntermediate`].
#[derive(Config, Debug)]
pub struct BertIntermediateConfig {
    /// Hidden width.
    pub hidden_size: usize,
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Activation.
    pub hidden_act: HiddenAct,
    /// Standard deviation of the initial weights. Default: 0.02.
    #[config(default = 0.02)]
    pub initializer_range: f64,
}

/// First feed-forward projection (FFN_1) and activation.
///
/// [HF `BertIntermediate`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bert/modeling_bert.py#L327).
#[derive(Module, Debug)]
pub struct BertIntermediate {
    /// `dense`, FFN_1, hidden → intermediate.
    pub dense: ProjLinear,
    /// `intermediate_act_fn`.
    #[module(skip)]
    pub activation: HiddenAct,
}

impl BertIntermediateConfig {
    /// Initialises the projection, `N(0, r²)` weight and zero bias.
    pub fn init(&self, device: &Device) -> BertIntermediate {
        BertIntermediate {
            dense: ProjLinearConfig::new(self.hidden_size, self.intermediate_size)
                .with_initializer_range(self.initializer_range)
                .init(device),
            activation: self.hidden_act,
        }
    }
}

impl BertIntermediate {
    /// `act(dense(hidden_states))`.
    ///
    /// # Shapes
    ///
    /// - hidden_states: `[batch, seq, hidden]`
    /// - output: `[batch, seq, intermediate]`
    pub fn forward(&self, hidden_states: Tensor<3>) -> Tensor<3> {
        self.activation.forward(self.dense.forward(hidden_states))
    }
}

/// Configuration of [`BertOutput`].
#[derive(Config, Debug)]
pub struct BertOutputConfig {
    /// Feed-forward width.
    pub intermediate_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// Layer-norm epsilon.
    pub layer_norm_eps: f64,
    /// Dropout probability.
    pub hidden_dropout_prob: f64,
    /// Standard deviation of the initial weights. Default: 0.02.
    #[config(default = 0.02)]
    pub initializer_range: f64,
}

/// Second feed-forward projection (FFN_2), dropout, residual, layer norm.
///
/// [HF `BertOutput`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bert/modeling_bert.py#L342).
#[derive(Module, Debug)]
pub struct BertOutput {
    /// `dense`, FFN_2, intermediate → hidden.
    pub dense: ProjLinear,
    /// `LayerNorm`.
    pub layer_norm: LayerNorm,
    /// `dropout`.
    pub dropout: Dropout,
}

impl BertOutputConfig {
    /// Initialises the projection (`N(0, r²)`, zero bias) and the layer norm (`γ = 1, β = 0`).
    pub fn init(&self, device: &Device) -> BertOutput {
        BertOutput {
            dense: ProjLinearConfig::new(self.intermediate_size, self.hidden_size)
                .with_initializer_range(self.initializer_range)
                .init(device),
            layer_norm: LayerNorm::new(self.hidden_size, self.layer_norm_eps, device),
            dropout: DropoutConfig::new(self.hidden_dropout_prob).init(),
        }
    }
}

impl BertOutput {
    /// `LayerNorm(dropout(dense(hidden_states)) + input)`.
    ///
    /// # Shapes
    ///
    /// - hidden_states: `[batch, seq, intermediate]`
    /// - input, output: `[batch, seq, hidden]`
    pub fn forward(&self, hidden_states: Tensor<3>, input: Tensor<3>) -> Tensor<3> {
        let x = rng::dropout(&self.dropout, self.dense.forward(hidden_states));
        self.layer_norm.forward(x + input)
    }
}

// ------------------------------------------------------------------------------------------------
// Layer, encoder, pooler
// ------------------------------------------------------------------------------------------------

/// Configuration of [`BertLayer`].
#[derive(Config, Debug)]
pub struct BertLayerConfig {
    /// Attention block.
    pub attention: BertAttentionConfig,
    /// FFN_1 block.
    pub intermediate: BertIntermediateConfig,
    /// FFN_2 block.
    pub output: BertOutputConfig,
}

/// One transformer encoder layer (post-norm).
///
/// [HF `BertLayer`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bert/modeling_bert.py#L356), without cross-attention or feed-forward chunking.
#[derive(Module, Debug)]
pub struct BertLayer {
    /// `attention`.
    pub attention: BertAttention,
    /// `intermediate`.
    pub intermediate: BertIntermediate,
    /// `output`.
    pub output: BertOutput,
}

impl BertLayerConfig {
    /// Initialises the three blocks.
    pub fn init(&self, device: &Device) -> BertLayer {
        BertLayer {
            attention: self.attention.init(device),
            intermediate: self.intermediate.init(device),
            output: self.output.init(device),
        }
    }
}

impl BertLayer {
    /// # Shapes
    ///
    /// - hidden_states, output: `[batch, seq, hidden]`
    /// - mask: `[batch, 1, 1, seq]`
    pub fn forward(&self, hidden_states: Tensor<3>, mask: Tensor<4>) -> Tensor<3> {
        let attention = self.attention.forward(hidden_states, mask);
        let intermediate = self.intermediate.forward(attention.clone());
        self.output.forward(intermediate, attention)
    }

    /// The projection of `kind`.
    pub fn linear(&self, kind: LinearKind) -> &ProjLinear {
        match kind {
            LinearKind::Query => &self.attention.self_attention.query,
            LinearKind::Key => &self.attention.self_attention.key,
            LinearKind::Value => &self.attention.self_attention.value,
            LinearKind::AttentionOutput => &self.attention.output.dense,
            LinearKind::Ffn1 => &self.intermediate.dense,
            LinearKind::Ffn2 => &self.output.dense,
        }
    }

    /// All six projections, mutably, in [`LinearKind::ALL`] order.
    pub fn linears_mut(&mut self) -> [(LinearKind, &mut ProjLinear); 6] {
        let BertLayer {
            attention,
            intermediate,
            output,
        } = self;
        let BertSelfAttention {
            query, key, value, ..
        } = &mut attention.self_attention;
        [
            (LinearKind::Query, query),
            (LinearKind::Key, key),
            (LinearKind::Value, value),
            (LinearKind::AttentionOutput, &mut attention.output.dense),
            (LinearKind::Ffn1, &mut intermediate.dense),
            (LinearKind::Ffn2, &mut output.dense),
        ]
    }
}

/// Configuration of [`BertEncoder`].
#[derive(Config, Debug)]
pub struct BertEncoderConfig {
    /// Number of layers.
    pub num_hidden_layers: usize,
    /// Every layer's configuration.
    pub layer: BertLayerConfig,
}

/// The stack of encoder layers.
///
/// [HF `BertEncoder`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bert/modeling_bert.py#L422).
#[derive(Module, Debug)]
pub struct BertEncoder {
    /// `layer.{i}`.
    pub layers: Vec<BertLayer>,
}

impl BertEncoderConfig {
    /// Initialises `num_hidden_layers` independent layers.
    pub fn init(&self, device: &Device) -> BertEncoder {
        BertEncoder {
            layers: (0..self.num_hidden_layers)
                .map(|_| self.layer.init(device))
                .collect(),
        }
    }
}

impl BertEncoder {
    /// # Shapes
    ///
    /// - hidden_states, output: `[batch, seq, hidden]`
    /// - mask: `[batch, 1, 1, seq]`
    pub fn forward(&self, hidden_states: Tensor<3>, mask: Tensor<4>) -> Tensor<3> {
        self.layers
            .iter()
            .fold(hidden_states, |h, layer| layer.forward(h, mask.clone()))
    }
}

/// Configuration of [`BertPooler`].
#[derive(Config, Debug)]
pub struct BertPoolerConfig {
    /// Hidden width.
    pub hidden_size: usize,
    /// Standard deviation of the initial weight. Default: 0.02.
    #[config(default = 0.02)]
    pub initializer_range: f64,
}

/// `tanh(dense(h[:, 0]))`: the first token's state through a dense layer.
///
/// [HF `BertPooler`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bert/modeling_bert.py#L455).
#[derive(Module, Debug)]
pub struct BertPooler {
    /// `dense`, hidden → hidden. Not an OPF candidate, so a plain [`Linear`].
    pub dense: Linear,
}

impl BertPoolerConfig {
    /// Initialises the dense layer, `N(0, r²)` weight and zero bias.
    pub fn init(&self, device: &Device) -> BertPooler {
        BertPooler {
            dense: init_dense(
                self.hidden_size,
                self.hidden_size,
                self.initializer_range,
                device,
            ),
        }
    }
}

impl BertPooler {
    /// # Shapes
    ///
    /// - hidden_states: `[batch, seq, hidden]`
    /// - output: `[batch, hidden]`
    pub fn forward(&self, hidden_states: Tensor<3>) -> Tensor<2> {
        let first: Tensor<2> = hidden_states.narrow(1, 0, 1).squeeze_dim(1);
        self.dense.forward(first).tanh()
    }
}

// ------------------------------------------------------------------------------------------------
// Linear paths
// ------------------------------------------------------------------------------------------------

/// Which of a layer's six projections; the OPF candidates (spec §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LinearKind {
    /// `attention.self.query`.
    Query,
    /// `attention.self.key`.
    Key,
    /// `attention.self.value`.
    Value,
    /// `attention.output.dense` (O).
    AttentionOutput,
    /// `intermediate.dense` (FFN_1, hidden → intermediate).
    Ffn1,
    /// `output.dense` (FFN_2, intermediate → hidden).
    Ffn2,
}

impl LinearKind {
    /// All kinds in the order of the layer's parameters in `named_parameters()`.
    pub const ALL: [LinearKind; 6] = [
        LinearKind::Query,
        LinearKind::Key,
        LinearKind::Value,
        LinearKind::AttentionOutput,
        LinearKind::Ffn1,
        LinearKind::Ffn2,
    ];

    /// The short name used by [`Display`](fmt::Display) and [`FromStr`]: `query`, `key`, `value`,
    /// `attention_output`, `ffn_1`, `ffn_2`.
    pub fn name(self) -> &'static str {
        match self {
            LinearKind::Query => "query",
            LinearKind::Key => "key",
            LinearKind::Value => "value",
            LinearKind::AttentionOutput => "attention_output",
            LinearKind::Ffn1 => "ffn_1",
            LinearKind::Ffn2 => "ffn_2",
        }
    }

    /// The Hugging Face module path inside `encoder.layer.{i}`, e.g. `attention.self.query`.
    pub fn hf_module(self) -> &'static str {
        match self {
            LinearKind::Query => "attention.self.query",
            LinearKind::Key => "attention.self.key",
            LinearKind::Value => "attention.self.value",
            LinearKind::AttentionOutput => "attention.output.dense",
            LinearKind::Ffn1 => "intermediate.dense",
            LinearKind::Ffn2 => "output.dense",
        }
    }
}

impl fmt::Display for LinearKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for LinearKind {
    type Err = ModelError;

    /// Accepts the short name (`ffn_1`) or the Hugging Face module path (`intermediate.dense`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LinearKind::ALL
            .into_iter()
            .find(|k| k.name() == s || k.hf_module() == s)
            .ok_or_else(|| ModelError::ParseLinearPath(s.to_string()))
    }
}

/// The address of one projection: layer index and kind.
///
/// Displayed as its Hugging Face module path relative to [`BertModel`],
/// `encoder.layer.{layer}.{kind.hf_module()}`. [`FromStr`] accepts that (optionally with a
/// `bert.` prefix) or the short form `{layer}.{kind}`, e.g. `3.ffn_1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinearPath {
    /// Encoder layer, from 0.
    pub layer: usize,
    /// Projection within the layer.
    pub kind: LinearKind,
}

impl LinearPath {
    /// The path of `kind` in `layer`.
    pub fn new(layer: usize, kind: LinearKind) -> Self {
        Self { layer, kind }
    }
}

impl fmt::Display for LinearPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "encoder.layer.{}.{}", self.layer, self.kind.hf_module())
    }
}

impl FromStr for LinearPath {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ModelError::ParseLinearPath(s.to_string());
        let rest = s.strip_prefix("bert.").unwrap_or(s);
        let rest = rest.strip_prefix("encoder.layer.").unwrap_or(rest);
        let (layer, kind) = rest.split_once('.').ok_or_else(err)?;
        Ok(Self {
            layer: layer.parse().map_err(|_| err())?,
            kind: kind.parse().map_err(|_| err())?,
        })
    }
}

// ------------------------------------------------------------------------------------------------
// Model
// ------------------------------------------------------------------------------------------------

/// Configuration of [`BertModel`].
#[derive(Config, Debug)]
pub struct BertModelConfig {
    /// Embeddings.
    pub embeddings: BertEmbeddingsConfig,
    /// Encoder.
    pub encoder: BertEncoderConfig,
    /// Pooler.
    pub pooler: BertPoolerConfig,
}

/// The outputs of [`BertModel::forward`].
#[derive(Debug, Clone)]
pub struct BertModelOutput {
    /// Final hidden states, `[batch, seq, hidden]`.
    pub last_hidden_state: Tensor<3>,
    /// Pooled first token, `[batch, hidden]`.
    pub pooler_output: Tensor<2>,
}

/// The BERT encoder with pooler.
///
/// [HF `BertModel`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bert/modeling_bert.py#L597), with `add_pooling_layer=True`, no decoder use.
#[derive(Module, Debug)]
pub struct BertModel {
    /// `embeddings`.
    pub embeddings: BertEmbeddings,
    /// `encoder`.
    pub encoder: BertEncoder,
    /// `pooler`.
    pub pooler: BertPooler,
}

impl BertModelConfig {
    /// Initialises a random model.
    pub fn init(&self, device: &Device) -> BertModel {
        BertModel {
            embeddings: self.embeddings.init(device),
            encoder: self.encoder.init(device),
            pooler: self.pooler.init(device),
        }
    }
}

impl BertModel {
    /// Encodes a batch.
    ///
    /// # Shapes
    ///
    /// - input_ids, token_type_ids, attention_mask: `[batch, seq]` (mask: 1 = attend, 0 = pad)
    /// - output: `last_hidden_state` `[batch, seq, hidden]`, `pooler_output` `[batch, hidden]`
    ///
    /// # Panics
    ///
    /// Panics if the inputs differ in shape or `seq` exceeds `max_position_embeddings`.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
    ) -> BertModelOutput {
        let [batch, seq] = input_ids.dims();
        assert_shape!(attention_mask, [batch, seq]);
        let mask = extended_attention_mask(attention_mask);
        let embeddings = self.embeddings.forward(input_ids, token_type_ids);
        let last_hidden_state = self.encoder.forward(embeddings, mask);
        let pooler_output = self.pooler.forward(last_hidden_state.clone());
        BertModelOutput {
            last_hidden_state,
            pooler_output,
        }
    }

    /// Number of encoder layers.
    pub fn num_layers(&self) -> usize {
        self.encoder.layers.len()
    }

    /// Every projection path, `6 · num_layers`, in `named_parameters()` order: layer 0 first,
    /// within a layer [`LinearKind::ALL`].
    pub fn linear_paths(&self) -> Vec<LinearPath> {
        (0..self.num_layers())
            .flat_map(|layer| LinearKind::ALL.map(|kind| LinearPath::new(layer, kind)))
            .collect()
    }

    /// The projection at `path`.
    ///
    /// # Panics
    ///
    /// Panics if `path.layer >= num_layers()`.
    pub fn linear(&self, path: LinearPath) -> &ProjLinear {
        self.encoder.layers[path.layer].linear(path.kind)
    }

    /// Replaces the projection at `path`, returning the old one.
    ///
    /// # Errors
    ///
    /// [`ModelError::ShapeMismatch`] (named by the path) if `linear`'s `(out, in)` shape differs
    /// from the current one; the model is then unchanged.
    ///
    /// # Panics
    ///
    /// Panics if `path.layer >= num_layers()`.
    pub fn set_linear(
        &mut self,
        path: LinearPath,
        linear: ProjLinear,
    ) -> Result<ProjLinear, ModelError> {
        linear::set_linear(self, path, linear)
    }

    /// Over-parameterizes the projections at `paths` (OPF, spec §2.3): each dense `(out, in)`
    /// weight becomes MPO cores of `preset`'s shape for its dims, with the bias reused. All shapes
    /// are checked before anything changes; already factored paths are left as they are. Returns
    /// one [`MpoReplacement`] per newly factored path.
    ///
    /// # Errors
    ///
    /// [`ModelError::Mpo`] if the preset has no shape for a projection's dims.
    ///
    /// # Panics
    ///
    /// Panics if a path's layer is `>= num_layers()`.
    pub fn over_parameterize(
        &mut self,
        paths: &[LinearPath],
        preset: &mpo_core::Preset,
        training: crate::CoreTraining,
    ) -> Result<Vec<MpoReplacement>, ModelError> {
        linear::over_parameterize(self, paths, preset, training)
    }

    /// Contracts every MPO projection back into a dense one (spec §2.5): the result has the
    /// original architecture and parameter count.
    pub fn merge_mpo(&mut self) {
        linear::merge_mpo(self);
    }

    /// Paths of the MPO-factored projections.
    pub fn mpo_paths(&self) -> Vec<LinearPath> {
        linear::mpo_paths(self)
    }
}

impl LinearSlots for BertModel {
    type Path = LinearPath;

    fn slot_paths(&self) -> Vec<LinearPath> {
        self.linear_paths()
    }

    fn slot(&self, path: LinearPath) -> &ProjLinear {
        self.linear(path)
    }

    fn slot_mut(&mut self, path: LinearPath) -> &mut ProjLinear {
        self.encoder.layers[path.layer]
            .linears_mut()
            .into_iter()
            .find_map(|(kind, slot)| (kind == path.kind).then_some(slot))
            .expect("a layer has every kind of projection")
    }
}

// ------------------------------------------------------------------------------------------------
// Sequence classification
// ------------------------------------------------------------------------------------------------

/// Configuration of [`BertForSequenceClassification`].
#[derive(Config, Debug)]
pub struct BertForSequenceClassificationConfig {
    /// The encoder.
    pub bert: BertModelConfig,
    /// Classifier outputs; 1 means regression.
    pub num_labels: usize,
    /// Dropout before the classifier.
    pub classifier_dropout: f64,
    /// Standard deviation of the initial classifier weight. Default: 0.02.
    #[config(default = 0.02)]
    pub initializer_range: f64,
}

/// Targets for [`BertForSequenceClassification::loss`].
#[derive(Debug, Clone)]
pub enum Labels {
    /// Class indices `[batch]`, for `num_labels > 1` (cross-entropy).
    Classes(Tensor<1, Int>),
    /// Scores `[batch]`, for `num_labels == 1` (mean squared error).
    Scores(Tensor<1>),
}

/// BERT with dropout and a linear classifier on the pooled output.
///
/// [HF `BertForSequenceClassification`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bert/modeling_bert.py#L1070).
#[derive(Module, Debug)]
pub struct BertForSequenceClassification {
    /// `bert`.
    pub bert: BertModel,
    /// `dropout` (`classifier_dropout`, else `hidden_dropout_prob`).
    pub dropout: Dropout,
    /// `classifier`, hidden → num_labels.
    pub classifier: Linear,
    /// The Hugging Face config, written back by [`save_pretrained`](Self::save_pretrained).
    #[module(skip)]
    config: BertConfig,
}

impl BertForSequenceClassificationConfig {
    /// Initialises a random model; its Hugging Face config (for saving) is rebuilt from this one
    /// with default label names.
    pub fn init(&self, device: &Device) -> BertForSequenceClassification {
        BertForSequenceClassification {
            bert: self.bert.init(device),
            dropout: DropoutConfig::new(self.classifier_dropout).init(),
            classifier: init_dense(
                self.bert.pooler.hidden_size,
                self.num_labels,
                self.initializer_range,
                device,
            ),
            config: self.hf_config(),
        }
    }

    /// The Hugging Face config describing this model, the inverse of
    /// [`BertConfig::classification_config`].
    fn hf_config(&self) -> BertConfig {
        let embeddings = &self.bert.embeddings;
        let layer = &self.bert.encoder.layer;
        let attention = &layer.attention.self_attention;
        BertConfig {
            vocab_size: embeddings.vocab_size,
            hidden_size: embeddings.hidden_size,
            num_hidden_layers: self.bert.encoder.num_hidden_layers,
            num_attention_heads: attention.num_attention_heads,
            intermediate_size: layer.intermediate.intermediate_size,
            hidden_act: layer.intermediate.hidden_act,
            hidden_dropout_prob: embeddings.hidden_dropout_prob,
            attention_probs_dropout_prob: attention.attention_probs_dropout_prob,
            max_position_embeddings: embeddings.max_position_embeddings,
            type_vocab_size: embeddings.type_vocab_size,
            initializer_range: self.initializer_range,
            layer_norm_eps: embeddings.layer_norm_eps,
            classifier_dropout: Some(self.classifier_dropout),
            ..BertConfig::default()
        }
        .with_num_labels(self.num_labels)
    }
}

impl BertForSequenceClassification {
    /// A randomly initialised model for `config` (which must [validate](BertConfig::validate)).
    ///
    /// # Panics
    ///
    /// Panics if `config` does not validate.
    pub fn new(config: &BertConfig, device: &Device) -> Self {
        if let Err(err) = config.validate() {
            panic!("{err}");
        }
        let mut model = config.classification_config().init(device);
        model.config = config.clone();
        model
    }

    /// The Hugging Face config of this model.
    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    /// Number of classifier outputs.
    pub fn num_labels(&self) -> usize {
        self.config.num_labels()
    }

    /// Classification logits (or the regression score when `num_labels == 1`).
    ///
    /// # Shapes
    ///
    /// - input_ids, token_type_ids, attention_mask: `[batch, seq]`
    /// - output: `[batch, num_labels]`
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
    ) -> Tensor<2> {
        let pooled = self
            .bert
            .forward(input_ids, token_type_ids, attention_mask)
            .pooler_output;
        self.classifier.forward(rng::dropout(&self.dropout, pooled))
    }

    /// The mean loss of `logits` (from [`forward`](Self::forward)) against `labels`, as
    /// `BertForSequenceClassification.forward` computes it: cross-entropy for classes, mean
    /// squared error of the single output for scores.
    ///
    /// # Shapes
    ///
    /// - logits: `[batch, num_labels]`
    /// - labels: `[batch]`
    /// - output: `[1]`
    ///
    /// # Panics
    ///
    /// Panics if the label kind does not match the problem type ([`Labels::Scores`] needs
    /// `num_labels == 1`, [`Labels::Classes`] more) or the shapes disagree.
    pub fn loss(&self, logits: Tensor<2>, labels: Labels) -> Tensor<1> {
        sequence_classification_loss(self.config.problem_type(), logits, labels)
    }

    /// Loads a Hugging Face checkpoint.
    ///
    /// `path` is a directory holding `model.safetensors` (and `config.json` unless `config` is
    /// given) or a `.safetensors` file (its directory's `config.json` is read unless `config` is
    /// given). `num_labels` overrides the config's label count (the head is then freshly
    /// initialised if the checkpoint has none; a checkpoint head of another size is an error).
    ///
    /// The checkpoint may be a `BertModel` (names without prefix, e.g. all-MiniLM-L6-v2), a
    /// `BertForPreTraining`/`BertForMaskedLM` (`bert.` prefix, `cls.*` heads, which are reported
    /// unused) or a `BertForSequenceClassification` (`bert.` + `classifier.*`). LayerNorm
    /// `gamma`/`beta` names are accepted for `weight`/`bias`. `f16`, `bf16` and `f64` tensors are
    /// converted to `f32`.
    ///
    /// # Errors
    ///
    /// I/O and parse errors name the file; a missing tensor (other than the whole pooler or
    /// classifier), an unexpected one, a wrongly shaped one or a non-float one is an error naming
    /// the tensor.
    pub fn load(
        path: impl AsRef<Path>,
        config: Option<&BertConfig>,
        num_labels: Option<usize>,
        device: &Device,
    ) -> Result<(Self, LoadReport), ModelError> {
        let path = path.as_ref();
        let (dir, weights) = if path.is_dir() {
            (path.to_path_buf(), path.join(SAFETENSORS_FILE))
        } else {
            let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
            (dir, path.to_path_buf())
        };
        let config = match config {
            Some(config) => config.clone(),
            None => BertConfig::from_file(dir.join(CONFIG_FILE))?,
        };
        let config = match num_labels {
            Some(n) => config.with_num_labels(n),
            None => config,
        };
        config.validate()?;
        let checkpoint = Checkpoint::open(&weights)?;
        let mut model = Self::new(&config, device);
        let report = model.load_checkpoint(&checkpoint, device)?;
        Ok((model, report))
    }

    /// Loads a training checkpoint written by burn's `save_file` (a run's `checkpoint/best.bpk`)
    /// into a model of `config`: the number of labels comes from the stored classifier and every
    /// projection stored as MPO cores is rebuilt as an [`MpoLinear`](crate::MpoLinear) of the
    /// stored core shapes before the tensors are read, so over-parameterized runs load as they
    /// were trained.
    ///
    /// # Errors
    ///
    /// [`ModelError::Record`] if the file is unreadable or does not fit the model (another config,
    /// a checkpoint of another architecture).
    pub fn load_record(
        path: impl AsRef<Path>,
        config: &BertConfig,
        device: &Device,
    ) -> Result<Self, ModelError> {
        linear::load_record(
            path.as_ref(),
            |num_labels| match num_labels {
                Some(n) => Self::new(&config.clone().with_num_labels(n), device),
                None => Self::new(config, device),
            },
            |model| model.classifier.weight.id,
            |model| &mut model.bert,
            device,
        )
    }

    /// Gives every dense projection that the burn record at `path` (a training checkpoint) stores
    /// as MPO cores an MPO layer of the stored core shapes, with zero cores, so that the record
    /// loads into this model: a run whose selection rounds over-parameterized matrices during
    /// training resumes from a dense model. Projections already MPO are kept.
    ///
    /// # Errors
    ///
    /// [`ModelError::Record`] if the file is unreadable or a stored core shape is invalid.
    pub fn with_record_layout(
        self,
        path: impl AsRef<Path>,
        device: &Device,
    ) -> Result<Self, ModelError> {
        linear::with_record_layout(self, path.as_ref(), |model| &mut model.bert, device)
    }

    /// Every tensor in the Hugging Face `BertForSequenceClassification` layout: `bert.`-prefixed
    /// names, `(out, in)` linear weights, `f32` data, in `named_parameters()` order.
    pub fn hf_tensors(&self) -> Vec<(String, TensorData)> {
        // The layout table hands out `&mut`; a clone shares the tensors, so this copies nothing.
        let mut model = self.clone();
        layout_tensors(model.hf_modules_mut(), BASE_PREFIX)
    }

    /// Writes [`hf_tensors`](Self::hf_tensors) to a safetensors file.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        write_safetensors(path.as_ref(), &self.hf_tensors())
    }

    /// Writes `model.safetensors` and `config.json` (with `id2label` and
    /// `architectures: ["BertForSequenceClassification"]`) into `dir`, creating it, so that
    /// [`load`](Self::load) and `transformers`' `from_pretrained` read the model back.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<(), ModelError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut config = self.config.clone().with_num_labels(self.num_labels());
        config.extra.insert(
            "architectures".to_string(),
            serde_json::json!(["BertForSequenceClassification"]),
        );
        config.save(dir.join(CONFIG_FILE))?;
        self.save_safetensors(dir.join(SAFETENSORS_FILE))
    }
}

/// The mean loss of sequence-classification `logits` against `labels` for `problem`, as the Hugging
/// Face `*ForSequenceClassification.forward`s compute it: cross-entropy for classes, mean squared
/// error of the single output for scores.
///
/// # Panics
///
/// Panics if the label kind does not match the problem type or the shapes disagree.
pub(crate) fn sequence_classification_loss(
    problem: ProblemType,
    logits: Tensor<2>,
    labels: Labels,
) -> Tensor<1> {
    let [batch, num_labels] = logits.dims();
    match (problem, labels) {
        (ProblemType::SingleLabelClassification, Labels::Classes(classes)) => {
            assert_shape!(classes, [batch]);
            CrossEntropyLoss::new(None, &logits.device()).forward(logits, classes)
        }
        (ProblemType::Regression, Labels::Scores(scores)) => {
            assert_shape!(scores, [batch]);
            MseLoss::new().forward(logits.reshape([batch]), scores, Reduction::Mean)
        }
        (problem, labels) => panic!(
            "labels {} do not fit problem type {problem:?} with {num_labels} labels",
            match labels {
                Labels::Classes(_) => "Classes",
                Labels::Scores(_) => "Scores",
            }
        ),
    }
}

// ------------------------------------------------------------------------------------------------
// Checkpoint layout: the only place where Hugging Face tensor names appear
// ------------------------------------------------------------------------------------------------

/// Weights file inside a model directory.
const SAFETENSORS_FILE: &str = "model.safetensors";
/// Config file inside a model directory.
const CONFIG_FILE: &str = "config.json";
/// Prefix of the encoder's names in task-model checkpoints.
const BASE_PREFIX: &str = "bert.";
/// The key whose presence with [`BASE_PREFIX`] marks a prefixed checkpoint.
const PROBE_KEY: &str = "embeddings.word_embeddings.weight";

/// Checkpoint tensors that no module uses and that are safe to ignore: the position-id buffer
/// and the pre-training heads.
fn is_ignorable(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix) == Some("embeddings.position_ids") || name.starts_with("cls.")
}

impl BertModel {
    /// The layout table of the encoder, in `named_parameters()` order.
    fn hf_modules_mut(&mut self) -> Vec<HfEntry<'_>> {
        let row = |name: String, optional, module| match optional {
            true => HfEntry::base(name, module).optional(),
            false => HfEntry::base(name, module),
        };
        let BertModel {
            embeddings,
            encoder,
            pooler,
        } = self;
        let mut rows = vec![
            row(
                "embeddings.word_embeddings".into(),
                false,
                HfModule::Embedding(&mut embeddings.word_embeddings),
            ),
            row(
                "embeddings.position_embeddings".into(),
                false,
                HfModule::Embedding(&mut embeddings.position_embeddings),
            ),
            row(
                "embeddings.token_type_embeddings".into(),
                false,
                HfModule::Embedding(&mut embeddings.token_type_embeddings),
            ),
            row(
                "embeddings.LayerNorm".into(),
                false,
                HfModule::LayerNorm(&mut embeddings.layer_norm),
            ),
        ];
        for (i, layer) in encoder.layers.iter_mut().enumerate() {
            let BertLayer {
                attention,
                intermediate,
                output,
            } = layer;
            let BertSelfAttention {
                query, key, value, ..
            } = &mut attention.self_attention;
            let path = |kind| LinearPath::new(i, kind).to_string();
            rows.extend([
                row(path(LinearKind::Query), false, HfModule::Proj(query)),
                row(path(LinearKind::Key), false, HfModule::Proj(key)),
                row(path(LinearKind::Value), false, HfModule::Proj(value)),
                row(
                    path(LinearKind::AttentionOutput),
                    false,
                    HfModule::Proj(&mut attention.output.dense),
                ),
                row(
                    format!("encoder.layer.{i}.attention.output.LayerNorm"),
                    false,
                    HfModule::LayerNorm(&mut attention.output.layer_norm),
                ),
                row(
                    path(LinearKind::Ffn1),
                    false,
                    HfModule::Proj(&mut intermediate.dense),
                ),
                row(
                    path(LinearKind::Ffn2),
                    false,
                    HfModule::Proj(&mut output.dense),
                ),
                row(
                    format!("encoder.layer.{i}.output.LayerNorm"),
                    false,
                    HfModule::LayerNorm(&mut output.layer_norm),
                ),
            ]);
        }
        rows.push(row(
            "pooler.dense".into(),
            true,
            HfModule::Linear(&mut pooler.dense),
        ));
        rows
    }
}

impl BertForSequenceClassification {
    /// The layout table of the whole model, in `named_parameters()` order.
    fn hf_modules_mut(&mut self) -> Vec<HfEntry<'_>> {
        let mut rows = self.bert.hf_modules_mut();
        rows.push(HfEntry::head(
            "classifier",
            HfModule::Linear(&mut self.classifier),
        ));
        rows
    }

    /// Copies every tensor of `checkpoint` into the model (see [`load`](Self::load)).
    fn load_checkpoint(
        &mut self,
        checkpoint: &Checkpoint,
        device: &Device,
    ) -> Result<LoadReport, ModelError> {
        let init_std = self.config.initializer_range;
        load_layout(
            checkpoint,
            self.hf_modules_mut(),
            BASE_PREFIX,
            &[PROBE_KEY],
            is_ignorable,
            init_std,
            device,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tolerance;

    /// The tiny configuration of the parity fixture.
    fn tiny_config() -> BertConfig {
        BertConfig {
            vocab_size: 99,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 37,
            max_position_embeddings: 64,
            ..BertConfig::default()
        }
        .with_num_labels(3)
    }

    fn ints<const D: usize>(data: impl Into<TensorData>, device: &Device) -> Tensor<D, Int> {
        Tensor::from_data(data.into(), device)
    }

    const MINILM_CONFIG: &str = r#"{
      "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
      "architectures": ["BertModel"],
      "attention_probs_dropout_prob": 0.1,
      "gradient_checkpointing": false,
      "hidden_act": "gelu",
      "hidden_dropout_prob": 0.1,
      "hidden_size": 384,
      "initializer_range": 0.02,
      "intermediate_size": 1536,
      "layer_norm_eps": 1e-12,
      "max_position_embeddings": 512,
      "model_type": "bert",
      "num_attention_heads": 12,
      "num_hidden_layers": 6,
      "pad_token_id": 0,
      "position_embedding_type": "absolute",
      "transformers_version": "4.8.2",
      "type_vocab_size": 2,
      "use_cache": true,
      "vocab_size": 30522
    }"#;

    #[test]
    fn extended_mask_is_zero_to_keep_and_min_for_padding() {
        let device = Device::flex();
        let mask = extended_attention_mask(ints([[1, 1, 0], [1, 0, 0]], &device));
        assert_eq!(mask.dims(), [2, 1, 1, 3]);
        let m = f32::MIN;
        mask.into_data().assert_eq(
            &TensorData::from([[[[0.0f32, 0.0, m]]], [[[0.0, m, m]]]]),
            true,
        );
    }

    #[test]
    fn padded_keys_get_no_attention_and_full_padding_gives_no_nan() {
        let device = Device::flex();
        device.seed(3);
        let attention = BertSelfAttentionConfig::new(8, 2, 0.0).init(&device);
        let x = Tensor::<3>::random([1, 3, 8], burn::tensor::Distribution::Default, &device);
        let masked = attention.forward(
            x.clone(),
            extended_attention_mask(ints([[1, 1, 0]], &device)),
        );
        // Changing the padded token must not change the others' outputs.
        let x2 = x
            .clone()
            .slice_assign(s![.., 2..3, ..], Tensor::ones([1, 1, 8], &device));
        let masked2 = attention.forward(x2, extended_attention_mask(ints([[1, 1, 0]], &device)));
        masked
            .slice(s![.., 0..2, ..])
            .into_data()
            .assert_approx_eq::<f32>(
                &masked2.slice(s![.., 0..2, ..]).into_data(),
                Tolerance::default(),
            );
        let none = attention.forward(x, extended_attention_mask(ints([[0, 0, 0]], &device)));
        let values: Vec<f32> = none.into_data().convert::<f32>().try_into_vec().unwrap();
        assert!(values.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn activations_follow_act2fn() {
        let device = Device::flex();
        let x = || Tensor::<1>::from_data([-1.0, 1.0], &device);
        // torch.nn.functional.gelu(x), gelu(x, approximate="tanh"), relu(x)
        let cases = [
            (HiddenAct::Gelu, [-0.15865526f32, 0.8413447]),
            (HiddenAct::GeluTanh, [-0.15880801, 0.841192]),
            (HiddenAct::Relu, [0.0, 1.0]),
        ];
        for (act, expected) in cases {
            act.forward(x())
                .into_data()
                .assert_approx_eq::<f32>(&TensorData::from(expected), Tolerance::absolute(1e-6));
        }
    }

    #[test]
    fn config_parses_minilm() {
        let config = BertConfig::from_json_str(MINILM_CONFIG).unwrap();
        assert_eq!(config.hidden_size, 384);
        assert_eq!(config.num_hidden_layers, 6);
        assert_eq!(config.intermediate_size, 1536);
        assert_eq!(config.layer_norm_eps, 1e-12);
        assert_eq!(config.hidden_act, HiddenAct::Gelu);
        assert_eq!(config.num_labels(), 2);
        assert_eq!(
            config.problem_type(),
            ProblemType::SingleLabelClassification
        );
        assert_eq!(
            config.extra["architectures"],
            serde_json::json!(["BertModel"])
        );
        let model = config.model_config();
        assert_eq!(
            model
                .encoder
                .layer
                .attention
                .self_attention
                .num_attention_heads,
            12
        );
        assert_eq!(model.embeddings.vocab_size, 30522);
    }

    #[test]
    fn config_defaults_and_aliases() {
        let config = BertConfig::from_json_str("{}").unwrap();
        assert_eq!(config, BertConfig::default());
        let config = BertConfig::from_json_str(
            r#"{"hidden_act": "gelu_pytorch_tanh", "pad_token_id": null, "num_labels": 1}"#,
        )
        .unwrap();
        assert_eq!(config.hidden_act, HiddenAct::GeluTanh);
        assert_eq!(config.pad_token_id, None);
        assert_eq!(config.problem_type(), ProblemType::Regression);
    }

    #[test]
    fn config_round_trips_with_labels_and_unknown_keys() {
        let config = BertConfig::from_json_str(MINILM_CONFIG)
            .unwrap()
            .with_num_labels(3);
        let json = config.to_json_string();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["id2label"]["2"], "LABEL_2");
        assert_eq!(value["label2id"]["LABEL_1"], 1);
        assert_eq!(value["transformers_version"], "4.8.2");
        assert!(value.get("num_labels").is_none());
        let back = BertConfig::from_json_str(&json).unwrap();
        assert_eq!(back, config);
        assert_eq!(back.num_labels(), 3);
    }

    #[test]
    fn with_num_labels_keeps_matching_names() {
        let config = BertConfig {
            id2label: Some(BTreeMap::from([(0, "neg".into()), (1, "pos".into())])),
            ..BertConfig::default()
        };
        let kept = config.clone().with_num_labels(2);
        assert_eq!(kept.id2label, config.id2label);
        let replaced = config.with_num_labels(1);
        assert_eq!(
            replaced.id2label,
            Some(BTreeMap::from([(0, "LABEL_0".into())]))
        );
        assert_eq!(replaced.problem_type(), ProblemType::Regression);
    }

    #[test]
    fn bad_configs_are_rejected_with_reason() {
        let invalid = [
            (
                r#"{"hidden_size": 30, "num_attention_heads": 4}"#,
                "not a multiple",
            ),
            (
                r#"{"position_embedding_type": "relative_key"}"#,
                "relative_key",
            ),
            (r#"{"model_type": "roberta"}"#, "roberta"),
            (r#"{"hidden_dropout_prob": 1.0}"#, "hidden_dropout_prob"),
            (r#"{"num_hidden_layers": 0}"#, "num_hidden_layers"),
            (
                r#"{"problem_type": "multi_label_classification"}"#,
                "multi_label",
            ),
            (
                r#"{"problem_type": "regression", "num_labels": 3}"#,
                "regression",
            ),
            (r#"{"num_labels": 3, "id2label": {"0": "a"}}"#, "id2label"),
        ];
        for (json, needle) in invalid {
            match BertConfig::from_json_str(json) {
                Err(ModelError::InvalidConfig(msg)) => assert!(msg.contains(needle), "{msg}"),
                other => panic!("{json}: expected InvalidConfig, got {other:?}"),
            }
        }
        for json in [
            r#"{"hidden_act": "swish"}"#,
            r#"{"hidden_size": "big"}"#,
            r#"{"id2label": {"x": "a"}}"#,
            "{",
        ] {
            assert!(
                matches!(
                    BertConfig::from_json_str(json),
                    Err(ModelError::ConfigParse { .. })
                ),
                "{json}"
            );
        }
    }

    #[test]
    fn forward_shapes() {
        let device = Device::flex();
        let model = BertForSequenceClassification::new(&tiny_config(), &device);
        let ids = ints([[2, 5, 6, 3, 0], [2, 7, 3, 0, 0]], &device);
        let types = Tensor::<2, Int>::zeros([2, 5], &device);
        let mask = ints([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]], &device);
        let out = model.bert.forward(ids.clone(), types.clone(), mask.clone());
        assert_eq!(out.last_hidden_state.dims(), [2, 5, 32]);
        assert_eq!(out.pooler_output.dims(), [2, 32]);
        assert_eq!(model.forward(ids, types, mask).dims(), [2, 3]);
    }

    #[test]
    #[should_panic(expected = "exceeds max_position_embeddings")]
    fn too_long_input_panics() {
        let device = Device::flex();
        let model = BertForSequenceClassification::new(&tiny_config(), &device);
        let ids = Tensor::<2, Int>::ones([1, 65], &device);
        let _ = model.forward(ids.clone(), ids.zeros_like(), ids);
    }

    #[test]
    fn num_params_matches_hugging_face_count() {
        let device = Device::flex();
        let model = BertForSequenceClassification::new(&tiny_config(), &device);
        // sum(p.numel() for p in BertForSequenceClassification(tiny).parameters())
        let embeddings = (99 + 64 + 2) * 32 + 2 * 32;
        let layer = 4 * (32 * 32 + 32) + 2 * 2 * 32 + (32 * 37 + 37) + (37 * 32 + 32);
        let head = (32 * 32 + 32) + (32 * 3 + 3);
        assert_eq!(model.num_params(), embeddings + 2 * layer + head);
    }

    #[test]
    fn linear_paths_are_in_named_parameters_order_and_parse_back() {
        let device = Device::flex();
        let model = BertForSequenceClassification::new(&tiny_config(), &device);
        let paths = model.bert.linear_paths();
        assert_eq!(paths.len(), 12);
        let names: Vec<String> = paths.iter().map(ToString::to_string).collect();
        assert_eq!(
            names[..6],
            [
                "encoder.layer.0.attention.self.query",
                "encoder.layer.0.attention.self.key",
                "encoder.layer.0.attention.self.value",
                "encoder.layer.0.attention.output.dense",
                "encoder.layer.0.intermediate.dense",
                "encoder.layer.0.output.dense",
            ]
        );
        assert_eq!(paths[6], LinearPath::new(1, LinearKind::Query));
        for (path, name) in paths.iter().zip(&names) {
            assert_eq!(&name.parse::<LinearPath>().unwrap(), path);
            assert_eq!(&format!("bert.{name}").parse::<LinearPath>().unwrap(), path);
            let short = format!("{}.{}", path.layer, path.kind);
            assert_eq!(&short.parse::<LinearPath>().unwrap(), path);
        }
        assert_eq!("ffn_1".parse::<LinearKind>().unwrap(), LinearKind::Ffn1);
        for bad in [
            "",
            "query",
            "x.query",
            "0.ffn",
            "encoder.layer.0.attention.self",
        ] {
            assert!(
                matches!(bad.parse::<LinearPath>(), Err(ModelError::ParseLinearPath(s)) if s == bad),
                "{bad}"
            );
        }
        let ffn1 = model.bert.linear(LinearPath::new(1, LinearKind::Ffn1));
        assert_eq!((ffn1.d_input(), ffn1.d_output()), (32, 37));
        let ffn2 = model.bert.linear(LinearPath::new(1, LinearKind::Ffn2));
        assert_eq!((ffn2.d_input(), ffn2.d_output()), (37, 32));
    }

    #[test]
    fn set_linear_replaces_and_checks_shape() {
        let device = Device::flex();
        let mut model = BertForSequenceClassification::new(&tiny_config(), &device);
        let path = LinearPath::new(1, LinearKind::Value);
        let zero = ProjLinear::from_hf(Tensor::zeros([32, 32], &device), None);
        let old = model.bert.set_linear(path, zero).unwrap();
        assert_eq!(old.d_output(), 32);
        assert!(model.bert.linear(path).bias().is_none());

        let wrong = ProjLinearConfig::new(32, 37).init(&device);
        match model.bert.set_linear(path, wrong) {
            Err(ModelError::ShapeMismatch {
                name,
                expected,
                found,
            }) => {
                assert_eq!(name, "encoder.layer.1.attention.self.value");
                assert_eq!((expected, found), (vec![32, 32], vec![37, 32]));
            }
            other => panic!("expected ShapeMismatch, got {other:?}"),
        }
        assert!(
            model.bert.linear(path).bias().is_none(),
            "unchanged on error"
        );
    }

    #[test]
    fn dropout_is_active_only_when_training_on_autodiff() {
        let config = BertConfig {
            hidden_dropout_prob: 0.5,
            ..tiny_config()
        };
        let forward = |model: &BertForSequenceClassification, device: &Device| {
            let ids = ints([[2, 5, 6, 3]], device);
            let mask = ids.ones_like();
            model
                .forward(ids.clone(), ids.zeros_like(), mask)
                .into_data()
        };
        let device = Device::flex().autodiff();
        device.seed(11);
        let model = BertForSequenceClassification::new(&config, &device);
        assert_ne!(forward(&model, &device), forward(&model, &device));

        let eval = model.valid();
        let plain = Device::flex();
        assert_eq!(forward(&eval, &plain), forward(&eval, &plain));
    }

    #[test]
    fn loss_is_cross_entropy_or_mse() {
        let device = Device::flex();
        let model = BertForSequenceClassification::new(&tiny_config(), &device);
        let logits = Tensor::<2>::from_data([[1.0, 2.0, 3.0], [0.5, 0.0, -0.5]], &device);
        let loss = model.loss(logits, Labels::Classes(ints([2, 0], &device)));
        // mean(-log_softmax) = ((log(e+e²+e³) - 3) + (log(e^.5+1+e^-.5) - .5)) / 2
        let lse = |v: [f64; 3]| v.iter().map(|x| x.exp()).sum::<f64>().ln();
        let expected = ((lse([1.0, 2.0, 3.0]) - 3.0) + (lse([0.5, 0.0, -0.5]) - 0.5)) / 2.0;
        loss.into_data().assert_approx_eq::<f32>(
            &TensorData::from([expected as f32]),
            Tolerance::absolute(1e-6),
        );

        let regression =
            BertForSequenceClassification::new(&tiny_config().with_num_labels(1), &device);
        let scores = Tensor::<2>::from_data([[1.0], [3.0]], &device);
        let loss = regression.loss(
            scores,
            Labels::Scores(Tensor::from_data([2.0, 0.0], &device)),
        );
        loss.into_data()
            .assert_approx_eq::<f32>(&TensorData::from([5.0f32]), Tolerance::default());
    }

    #[test]
    #[should_panic(expected = "do not fit problem type Regression")]
    fn loss_rejects_classes_for_regression() {
        let device = Device::flex();
        let model = BertForSequenceClassification::new(&tiny_config().with_num_labels(1), &device);
        let logits = Tensor::<2>::zeros([2, 1], &device);
        let _ = model.loss(logits, Labels::Classes(ints([0, 1], &device)));
    }

    #[test]
    fn hf_tensors_use_hugging_face_names_and_orientation() {
        let device = Device::flex();
        let model = BertForSequenceClassification::new(&tiny_config(), &device);
        let tensors = model.hf_tensors();
        // 5 embedding tensors, 16 per layer, pooler 2, classifier 2.
        assert_eq!(tensors.len(), 5 + 2 * 16 + 2 + 2);
        let shape = |name: &str| {
            let (_, data) = tensors.iter().find(|(n, _)| n == name).unwrap();
            data.shape().to_vec()
        };
        assert_eq!(tensors[0].0, "bert.embeddings.word_embeddings.weight");
        assert_eq!(
            shape("bert.encoder.layer.1.intermediate.dense.weight"),
            [37, 32]
        );
        assert_eq!(shape("bert.encoder.layer.1.output.dense.weight"), [32, 37]);
        assert_eq!(shape("bert.encoder.layer.0.output.LayerNorm.bias"), [32]);
        assert_eq!(shape("classifier.weight"), [3, 32]);
        assert_eq!(tensors.last().unwrap().0, "classifier.bias");
        let ffn1 = model.bert.linear(LinearPath::new(1, LinearKind::Ffn1));
        let (_, data) = &tensors
            .iter()
            .find(|(n, _)| n == "bert.encoder.layer.1.intermediate.dense.weight")
            .unwrap();
        data.assert_eq(&ffn1.weight_out_in().into_data(), true);
    }
}
