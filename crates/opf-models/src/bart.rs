//! BART (Lewis et al., 2020) in burn, ported from Hugging Face `transformers`
//! [`models/bart/modeling_bart.py`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bart/modeling_bart.py) (v5.24.0), read in the same order: config,
//! `shift_tokens_right`, positional embedding, attention, encoder layer, decoder layer,
//! classification head, encoder, decoder, model, sequence classification. Each item links the
//! Python line it follows (`modeling_bart.py:LINE`).
//!
//! * Inputs are burn `Int` tensors `[batch, seq]`: token ids and Hugging Face's attention mask
//!   (1 = attend, 0 = padding), which [`extended_attention_mask`] turns into the additive mask
//!   of the encoder self-attention and the decoder cross-attention; the decoder self-attention
//!   uses [`causal_attention_mask`]. There are no token types.
//! * The decoder reads `shift_tokens_right(input_ids)`, as `BartModel.forward` does when it gets
//!   no `decoder_input_ids`; its self-attention masks only the future, not the padding (Hugging
//!   Face's default without `decoder_attention_mask`).
//! * Dropout is burn's module, applied by [`rng::dropout`]: active on an autodiff device in
//!   training mode, the identity otherwise.
//!   Layer drop is not implemented (configs with `encoder_layerdrop`/`decoder_layerdrop` > 0 are
//!   rejected).
//! * The projections of every layer (self-attention q/k/v/out, decoder cross-attention q/k/v/out,
//!   fc1, fc2) are [`ProjLinear`]s addressed by [`BartLinearPath`] ([`BartModel::linear`],
//!   [`BartModel::set_linear`], [`BartModel::linear_paths`], [`BartModel::over_parameterize`],
//!   [`BartModel::merge_mpo`]).
//! * Checkpoints: [`BartForSequenceClassification::load`] reads a Hugging Face
//!   `model.safetensors` (with or without the `model.` prefix; the word embedding is `shared`,
//!   tied to `encoder.embed_tokens` and `decoder.embed_tokens`);
//!   [`BartForSequenceClassification::save_pretrained`] writes `model.safetensors` +
//!   `config.json` in the Hugging Face layout. All checkpoint names live in the "Checkpoint
//!   layout" section at the end of this file.
//!
//! ```no_run
//! use burn::prelude::*;
//! use opf_models::BartForSequenceClassification;
//!
//! let device = Device::flex();
//! let (model, report) =
//!     BartForSequenceClassification::load("path/to/bart-base", None, Some(2), &device)?;
//! println!("{report}");
//! let ids = Tensor::<2, Int>::from_data([[0, 31414, 2]], &device);
//! let mask = Tensor::<2, Int>::ones([1, 3], &device);
//! let logits = model.forward(ids, mask)?; // [1, 2]
//! # Ok::<(), opf_models::ModelError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn::module::{Initializer, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, Linear};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::bert::{
    HiddenAct, Labels, ProblemType, deserialize_id2label, extended_attention_mask,
    sequence_classification_loss,
};
use crate::checkpoint::{
    Checkpoint, HfEntry, HfModule, LoadReport, layout_tensors, load_layout, write_safetensors,
};
use crate::config_io;
use crate::fused::{self, LayerNorm};
use crate::linear::{self, LinearSlots, MpoReplacement, ProjLinear, ProjLinearConfig, init_dense};
use crate::precision;
use crate::rng;

/// Permalink prefix of the ported file, for the item docs below.
macro_rules! hf_bart {
    ($line:literal) => {
        concat!(
            "https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bart/modeling_bart.py#L",
            $line
        )
    };
}

// ------------------------------------------------------------------------------------------------
// Config
// ------------------------------------------------------------------------------------------------

/// A Hugging Face BART `config.json`
/// ([`transformers` `BartConfig`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/bart/configuration_bart.py)
/// + `PretrainedConfig`).
///
/// Missing keys take `facebook/bart-large`'s values ([`Default`], the defaults of `BartConfig`);
/// keys this crate does not use (`architectures`, `forced_eos_token_id`, ...) are kept in
/// [`extra`](Self::extra) so that a loaded config is written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BartConfig {
    /// Always `"bart"`.
    pub model_type: String,
    /// Vocabulary size. Default 50265.
    pub vocab_size: usize,
    /// Width of every hidden state. Default 1024.
    pub d_model: usize,
    /// Number of encoder layers. Default 12.
    pub encoder_layers: usize,
    /// Number of decoder layers. Default 12.
    pub decoder_layers: usize,
    /// Attention heads per encoder layer; must divide `d_model`. Default 16.
    pub encoder_attention_heads: usize,
    /// Attention heads per decoder layer (self and cross); must divide `d_model`. Default 16.
    pub decoder_attention_heads: usize,
    /// Width of the encoder feed-forward layers. Default 4096.
    pub encoder_ffn_dim: usize,
    /// Width of the decoder feed-forward layers. Default 4096.
    pub decoder_ffn_dim: usize,
    /// Feed-forward activation. Default `"gelu"` (exact).
    pub activation_function: HiddenAct,
    /// Dropout after embeddings and each sub-layer. Default 0.1.
    pub dropout: f64,
    /// Dropout on attention probabilities. Default 0.0.
    pub attention_dropout: f64,
    /// Dropout after the feed-forward activation. Default 0.0.
    pub activation_dropout: f64,
    /// Probability of skipping an encoder layer in training; must be 0 (not implemented).
    pub encoder_layerdrop: f64,
    /// Probability of skipping a decoder layer in training; must be 0 (not implemented).
    pub decoder_layerdrop: f64,
    /// Number of learned positions (maximum sequence length); the tables have 2 more rows.
    /// Default 1024.
    pub max_position_embeddings: usize,
    /// Standard deviation of the normal initialisation of fresh weights. Default 0.02.
    pub init_std: f64,
    /// Whether token embeddings are multiplied by `√d_model`. Default false.
    pub scale_embedding: bool,
    /// Padding token id, needed by [`shift_tokens_right`]. Default 1.
    pub pad_token_id: Option<usize>,
    /// Beginning-of-sequence token id. Default 0. Only documents the tokenizer's convention.
    pub bos_token_id: Option<usize>,
    /// End-of-sequence token id, whose last occurrence the classification head reads. Default 2.
    pub eos_token_id: Option<usize>,
    /// First decoder input token, put in front by [`shift_tokens_right`]. Default 2.
    pub decoder_start_token_id: Option<usize>,
    /// Dropout inside the classification head. Default 0.0.
    pub classifier_dropout: f64,
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

impl Default for BartConfig {
    /// `facebook/bart-large`, as the defaults of `transformers` `BartConfig`.
    fn default() -> Self {
        Self {
            model_type: "bart".to_string(),
            vocab_size: 50265,
            d_model: 1024,
            encoder_layers: 12,
            decoder_layers: 12,
            encoder_attention_heads: 16,
            decoder_attention_heads: 16,
            encoder_ffn_dim: 4096,
            decoder_ffn_dim: 4096,
            activation_function: HiddenAct::Gelu,
            dropout: 0.1,
            attention_dropout: 0.0,
            activation_dropout: 0.0,
            encoder_layerdrop: 0.0,
            decoder_layerdrop: 0.0,
            max_position_embeddings: 1024,
            init_std: 0.02,
            scale_embedding: false,
            pad_token_id: Some(1),
            bos_token_id: Some(0),
            eos_token_id: Some(2),
            decoder_start_token_id: Some(2),
            classifier_dropout: 0.0,
            num_labels: None,
            id2label: None,
            label2id: None,
            problem_type: None,
            extra: serde_json::Map::new(),
        }
    }
}

impl BartConfig {
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

    /// Checks that the values describe a BART this crate can build and classify with.
    pub fn validate(&self) -> Result<(), ModelError> {
        let fail = |msg: String| Err(ModelError::InvalidConfig(msg));
        config_io::check_type_and_sizes(
            &self.model_type,
            "bart",
            &[
                ("vocab_size", self.vocab_size),
                ("d_model", self.d_model),
                ("encoder_layers", self.encoder_layers),
                ("decoder_layers", self.decoder_layers),
                ("encoder_attention_heads", self.encoder_attention_heads),
                ("decoder_attention_heads", self.decoder_attention_heads),
                ("encoder_ffn_dim", self.encoder_ffn_dim),
                ("decoder_ffn_dim", self.decoder_ffn_dim),
                ("max_position_embeddings", self.max_position_embeddings),
            ],
        )?;
        for (name, heads) in [
            ("encoder_attention_heads", self.encoder_attention_heads),
            ("decoder_attention_heads", self.decoder_attention_heads),
        ] {
            if !self.d_model.is_multiple_of(heads) {
                return fail(format!(
                    "d_model {} is not a multiple of {name} {heads}",
                    self.d_model
                ));
            }
        }
        let probs = [
            ("dropout", self.dropout),
            ("attention_dropout", self.attention_dropout),
            ("activation_dropout", self.activation_dropout),
            ("classifier_dropout", self.classifier_dropout),
        ];
        for (name, p) in probs {
            if !(0.0..1.0).contains(&p) {
                return fail(format!("{name} is {p}, expected a value in [0, 1)"));
            }
        }
        for (name, p) in [
            ("encoder_layerdrop", self.encoder_layerdrop),
            ("decoder_layerdrop", self.decoder_layerdrop),
        ] {
            if p != 0.0 {
                return fail(format!("{name} is {p}; layer drop is not supported"));
            }
        }
        let tokens = [
            ("pad_token_id", self.pad_token_id),
            ("eos_token_id", self.eos_token_id),
            ("decoder_start_token_id", self.decoder_start_token_id),
        ];
        for (name, id) in tokens {
            match id {
                None => return fail(format!("{name} must be set")),
                Some(id) if id >= self.vocab_size => {
                    return fail(format!("{name} {id} is outside the vocabulary"));
                }
                Some(_) => {}
            }
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

    /// Number of classifier outputs: `num_labels`, else the size of `id2label`, else 3 (the
    /// default of `BartConfig`, unlike `PretrainedConfig`'s 2).
    pub fn num_labels(&self) -> usize {
        match (&self.id2label, self.num_labels) {
            (_, Some(n)) => n,
            (Some(labels), None) => labels.len(),
            (None, None) => 3,
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
    /// classification otherwise (as `BartForSequenceClassification.forward`).
    pub fn problem_type(&self) -> ProblemType {
        match (self.problem_type, self.num_labels()) {
            (Some(p), _) => p,
            (None, 1) => ProblemType::Regression,
            (None, _) => ProblemType::SingleLabelClassification,
        }
    }

    /// The burn configuration of one encoder layer.
    fn encoder_layer_config(&self) -> BartLayerConfig {
        BartLayerConfig::new(
            self.d_model,
            self.encoder_attention_heads,
            self.encoder_ffn_dim,
            self.activation_function,
            self.dropout,
            self.attention_dropout,
            self.activation_dropout,
        )
        .with_init_std(self.init_std)
    }

    /// The burn configuration of one decoder layer.
    fn decoder_layer_config(&self) -> BartLayerConfig {
        BartLayerConfig::new(
            self.d_model,
            self.decoder_attention_heads,
            self.decoder_ffn_dim,
            self.activation_function,
            self.dropout,
            self.attention_dropout,
            self.activation_dropout,
        )
        .with_init_std(self.init_std)
    }

    /// The burn configuration of the encoder-decoder.
    ///
    /// # Panics
    ///
    /// Panics if a token id is unset (a [validated](Self::validate) config has them all).
    pub fn model_config(&self) -> BartModelConfig {
        let stack = |layers, layer| {
            BartStackConfig::new(layers, layer, self.max_position_embeddings, self.dropout)
                .with_init_std(self.init_std)
        };
        BartModelConfig::new(
            self.vocab_size,
            self.d_model,
            self.scale_embedding,
            self.pad_token_id.expect("pad_token_id is set"),
            self.decoder_start_token_id
                .expect("decoder_start_token_id is set"),
            stack(self.encoder_layers, self.encoder_layer_config()),
            stack(self.decoder_layers, self.decoder_layer_config()),
        )
        .with_init_std(self.init_std)
    }

    /// The burn configuration of the encoder-decoder plus classification head.
    ///
    /// # Panics
    ///
    /// As [`model_config`](Self::model_config).
    pub fn classification_config(&self) -> BartForSequenceClassificationConfig {
        BartForSequenceClassificationConfig::new(
            self.model_config(),
            BartClassificationHeadConfig::new(
                self.d_model,
                self.d_model,
                self.num_labels(),
                self.classifier_dropout,
            )
            .with_init_std(self.init_std),
        )
    }
}

// ------------------------------------------------------------------------------------------------
// Inputs: decoder ids, masks, <eos> positions
// ------------------------------------------------------------------------------------------------

#[doc = concat!("The decoder inputs made from `input_ids`: every row shifted one token to the right, `decoder_start_token_id` in front, the last token dropped ([HF `shift_tokens_right`](", hf_bart!("59"), ")).")]
///
/// (Hugging Face also replaces the label filler `-100` by the pad id; token ids are never
/// negative here.)
///
/// # Shapes
///
/// - input_ids, output: `[batch, seq]`
pub fn shift_tokens_right(
    input_ids: Tensor<2, Int>,
    decoder_start_token_id: usize,
) -> Tensor<2, Int> {
    let [batch, seq] = input_ids.dims();
    let start = Tensor::<2, Int>::full(
        [batch, 1],
        decoder_start_token_id as i64,
        &input_ids.device(),
    );
    match seq {
        1 => start,
        _ => Tensor::cat(vec![start, input_ids.narrow(1, 0, seq - 1)], 1),
    }
}

/// The additive causal mask of the decoder self-attention: 0 where a query may attend (key
/// position ≤ query position), `f32::MIN` above the diagonal, as the eager mask of
/// `masking_utils.create_causal_mask` (called at `modeling_bart.py:631`).
///
/// # Shapes
///
/// - output: `[1, 1, seq, seq]`
pub fn causal_attention_mask(seq: usize, device: &Device) -> Tensor<4> {
    let future = Tensor::<2, Bool>::tril_mask([seq, seq], 0, device);
    Tensor::<2>::zeros([seq, seq], device)
        .mask_fill(future, f32::MIN)
        .reshape([1, 1, seq, seq])
}

#[doc = concat!("For each row of `input_ids`, the position of its last `eos_token_id`: the token whose decoder state [`BartForSequenceClassification`] classifies ([HF](", hf_bart!("1038"), ")).")]
///
/// The ids are read back to the host (one sync per batch, as Hugging Face's check does).
///
/// # Errors
///
/// [`ModelError::EosTokens`] if the rows hold different numbers of `<eos>` tokens, or none, as
/// Hugging Face refuses them.
pub fn last_eos_positions(
    input_ids: &Tensor<2, Int>,
    eos_token_id: usize,
) -> Result<Vec<usize>, ModelError> {
    let [_, seq] = input_ids.dims();
    let ids: Vec<i64> = input_ids
        .clone()
        .into_data()
        .convert::<i64>()
        .try_into_vec()
        .expect("integer ids");
    let eos = eos_token_id as i64;
    let counts: Vec<usize> = ids
        .chunks(seq)
        .map(|row| row.iter().filter(|&&id| id == eos).count())
        .collect();
    if counts.iter().any(|&c| c == 0 || c != counts[0]) {
        return Err(ModelError::EosTokens { counts });
    }
    Ok(ids
        .chunks(seq)
        .map(|row| row.iter().rposition(|&id| id == eos).expect("counted"))
        .collect())
}

// ------------------------------------------------------------------------------------------------
// Positional embedding
// ------------------------------------------------------------------------------------------------

/// Rows skipped at the start of BART's position tables: position `p` reads row `p + 2`
/// (`modeling_bart.py:83`, a fairseq legacy).
pub const POSITION_OFFSET: usize = 2;

/// Configuration of [`BartLearnedPositionalEmbedding`].
#[derive(Config, Debug)]
pub struct BartLearnedPositionalEmbeddingConfig {
    /// Number of positions (the table has [`POSITION_OFFSET`] more rows).
    pub max_position_embeddings: usize,
    /// Hidden width.
    pub d_model: usize,
    /// Standard deviation of the initial table. Default: 0.02.
    #[config(default = 0.02)]
    pub init_std: f64,
}

#[doc = concat!("Learned absolute positions with BART's offset of 2 ([HF `BartLearnedPositionalEmbedding`](", hf_bart!("75"), ")).")]
#[derive(Module, Debug)]
pub struct BartLearnedPositionalEmbedding {
    /// The table, `[max_position_embeddings + 2, d_model]`.
    pub embedding: Embedding,
}

impl BartLearnedPositionalEmbeddingConfig {
    /// Initialises the table `N(0, init_std²)`.
    pub fn init(&self, device: &Device) -> BartLearnedPositionalEmbedding {
        let rows = self.max_position_embeddings + POSITION_OFFSET;
        BartLearnedPositionalEmbedding {
            embedding: Embedding {
                weight: normal([rows, self.d_model], self.init_std, device),
            },
        }
    }
}

impl BartLearnedPositionalEmbedding {
    /// The embeddings of positions `0..seq` (rows `2..seq + 2`).
    ///
    /// # Shapes
    ///
    /// - output: `[1, seq, d_model]`
    ///
    /// # Panics
    ///
    /// Panics if `seq` exceeds `max_position_embeddings`.
    pub fn forward(&self, seq: usize) -> Tensor<3> {
        let [rows, _] = self.embedding.weight.lazy_shape().dims();
        let max_positions = rows - POSITION_OFFSET;
        assert!(
            seq <= max_positions,
            "sequence length {seq} exceeds max_position_embeddings {max_positions}"
        );
        let device = self.embedding.weight.val().device();
        let offset = POSITION_OFFSET as i64;
        let positions = Tensor::<1, Int>::arange(offset..offset + seq as i64, &device);
        self.embedding.forward(positions.unsqueeze())
    }
}

// ------------------------------------------------------------------------------------------------
// Attention
// ------------------------------------------------------------------------------------------------

/// Configuration of [`BartAttention`].
#[derive(Config, Debug)]
pub struct BartAttentionConfig {
    /// Hidden width.
    pub d_model: usize,
    /// Number of heads; divides `d_model`.
    pub num_heads: usize,
    /// Dropout on attention probabilities.
    pub dropout: f64,
    /// Standard deviation of the initial weights. Default: 0.02.
    #[config(default = 0.02)]
    pub init_std: f64,
}

#[doc = concat!("Multi-head scaled dot-product attention with output projection, used as self-attention and as the decoder's cross-attention ([HF `BartAttention`](", hf_bart!("142"), "), no cache).")]
#[derive(Module, Debug)]
pub struct BartAttention {
    /// `k_proj`.
    pub k_proj: ProjLinear,
    /// `v_proj`.
    pub v_proj: ProjLinear,
    /// `q_proj`.
    pub q_proj: ProjLinear,
    /// `out_proj`.
    pub out_proj: ProjLinear,
    /// Dropout on attention probabilities.
    pub dropout: Dropout,
    /// Number of heads.
    pub num_heads: usize,
    /// Width of one head, `d_model / num_heads`.
    pub head_dim: usize,
}

impl BartAttentionConfig {
    /// Initialises the four projections, `N(0, init_std²)` weights and zero biases.
    ///
    /// # Panics
    ///
    /// Panics if `num_heads` does not divide `d_model`.
    pub fn init(&self, device: &Device) -> BartAttention {
        assert_eq!(
            self.d_model % self.num_heads,
            0,
            "d_model must be a multiple of num_heads"
        );
        let proj = || {
            ProjLinearConfig::new(self.d_model, self.d_model)
                .with_initializer_range(self.init_std)
                .init(device)
        };
        BartAttention {
            k_proj: proj(),
            v_proj: proj(),
            q_proj: proj(),
            out_proj: proj(),
            dropout: DropoutConfig::new(self.dropout).init(),
            num_heads: self.num_heads,
            head_dim: self.d_model / self.num_heads,
        }
    }
}

impl BartAttention {
    #[doc = concat!("`out_proj(softmax(Q Kᵀ / √d + mask) V)` with queries from `hidden_states` and keys and values from `key_value_states` (the same tensor for self-attention, the encoder output for cross-attention) ([HF](", hf_bart!("185"), "), [eager attention](", hf_bart!("114"), ")).")]
    ///
    /// # Shapes
    ///
    /// - hidden_states, output: `[batch, seq_q, d_model]`
    /// - key_value_states: `[batch, seq_k, d_model]`
    /// - mask: broadcastable to `[batch, heads, seq_q, seq_k]` (`[batch, 1, 1, seq_k]` from
    ///   [`extended_attention_mask`], `[1, 1, seq_q, seq_q]` from [`causal_attention_mask`])
    pub fn forward(
        &self,
        hidden_states: Tensor<3>,
        key_value_states: Tensor<3>,
        mask: Tensor<4>,
    ) -> Tensor<3> {
        let [batch, seq_q, d_model] = hidden_states.dims();
        let [_, seq_k, _] = key_value_states.dims();
        let heads = |x: Tensor<3>, seq| {
            x.reshape([batch, seq, self.num_heads, self.head_dim])
                .swap_dims(1, 2)
        };
        let query = heads(self.q_proj.forward(hidden_states), seq_q);
        let key = heads(self.k_proj.forward(key_value_states.clone()), seq_k);
        let value = heads(self.v_proj.forward(key_value_states), seq_k);

        let scaling = (self.head_dim as f64).powf(-0.5);
        let scores = precision::matmul(query, key.swap_dims(2, 3));
        let noise = rng::dropout_noise(&self.dropout, &scores);
        let probs = fused::attention_probs(scores, mask, scaling, noise);
        let context = precision::matmul(probs, value)
            .swap_dims(1, 2)
            .reshape([batch, seq_q, d_model]);
        self.out_proj.forward(context)
    }
}

// ------------------------------------------------------------------------------------------------
// Layers
// ------------------------------------------------------------------------------------------------

/// Configuration of [`BartEncoderLayer`] and [`BartDecoderLayer`] (`BartConfig`'s `encoder_*` or
/// `decoder_*` values).
#[derive(Config, Debug)]
pub struct BartLayerConfig {
    /// Hidden width.
    pub d_model: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Feed-forward width.
    pub ffn_dim: usize,
    /// Feed-forward activation.
    pub activation_function: HiddenAct,
    /// Dropout after each sub-layer.
    pub dropout: f64,
    /// Dropout on attention probabilities.
    pub attention_dropout: f64,
    /// Dropout after the activation.
    pub activation_dropout: f64,
    /// Standard deviation of the initial weights. Default: 0.02.
    #[config(default = 0.02)]
    pub init_std: f64,
}

impl BartLayerConfig {
    fn attention(&self, device: &Device) -> BartAttention {
        BartAttentionConfig::new(self.d_model, self.num_heads, self.attention_dropout)
            .with_init_std(self.init_std)
            .init(device)
    }

    fn proj(&self, d_input: usize, d_output: usize, device: &Device) -> ProjLinear {
        ProjLinearConfig::new(d_input, d_output)
            .with_initializer_range(self.init_std)
            .init(device)
    }

    /// Initialises an encoder layer: projections `N(0, init_std²)` with zero biases, layer norms
    /// `γ = 1, β = 0`.
    pub fn init_encoder_layer(&self, device: &Device) -> BartEncoderLayer {
        BartEncoderLayer {
            self_attn: self.attention(device),
            self_attn_layer_norm: layer_norm(self.d_model, device),
            fc1: self.proj(self.d_model, self.ffn_dim, device),
            fc2: self.proj(self.ffn_dim, self.d_model, device),
            final_layer_norm: layer_norm(self.d_model, device),
            dropout: DropoutConfig::new(self.dropout).init(),
            activation_dropout: DropoutConfig::new(self.activation_dropout).init(),
            activation_fn: self.activation_function,
        }
    }

    /// Initialises a decoder layer, as [`init_encoder_layer`](Self::init_encoder_layer) plus
    /// the cross-attention block.
    pub fn init_decoder_layer(&self, device: &Device) -> BartDecoderLayer {
        BartDecoderLayer {
            self_attn: self.attention(device),
            self_attn_layer_norm: layer_norm(self.d_model, device),
            encoder_attn: self.attention(device),
            encoder_attn_layer_norm: layer_norm(self.d_model, device),
            fc1: self.proj(self.d_model, self.ffn_dim, device),
            fc2: self.proj(self.ffn_dim, self.d_model, device),
            final_layer_norm: layer_norm(self.d_model, device),
            dropout: DropoutConfig::new(self.dropout).init(),
            activation_dropout: DropoutConfig::new(self.activation_dropout).init(),
            activation_fn: self.activation_function,
        }
    }
}

/// `nn.LayerNorm(d)`: PyTorch's default epsilon 1e-5, `γ = 1, β = 0`.
fn layer_norm(d_model: usize, device: &Device) -> LayerNorm {
    LayerNorm::new(d_model, 1e-5, device)
}

/// A `N(0, std²)` parameter.
fn normal(shape: [usize; 2], std: f64, device: &Device) -> Param<Tensor<2>> {
    Initializer::Normal { mean: 0.0, std }.init(shape, device)
}

#[doc = concat!("One encoder layer, post-norm: self-attention → dropout → residual → LayerNorm, then fc1 → activation → dropout → fc2 → dropout → residual → LayerNorm ([HF `BartEncoderLayer`](", hf_bart!("260"), ")).")]
#[derive(Module, Debug)]
pub struct BartEncoderLayer {
    /// `self_attn`.
    pub self_attn: BartAttention,
    /// `self_attn_layer_norm`.
    pub self_attn_layer_norm: LayerNorm,
    /// `fc1`, FFN_1, d_model → ffn_dim.
    pub fc1: ProjLinear,
    /// `fc2`, FFN_2, ffn_dim → d_model.
    pub fc2: ProjLinear,
    /// `final_layer_norm`.
    pub final_layer_norm: LayerNorm,
    /// Dropout after each sub-layer (`dropout`).
    pub dropout: Dropout,
    /// Dropout after the activation (`activation_dropout`).
    pub activation_dropout: Dropout,
    /// `activation_fn`.
    #[module(skip)]
    pub activation_fn: HiddenAct,
}

impl BartEncoderLayer {
    /// # Shapes
    ///
    /// - hidden_states, output: `[batch, seq, d_model]`
    /// - mask: `[batch, 1, 1, seq]` (from [`extended_attention_mask`])
    pub fn forward(&self, hidden_states: Tensor<3>, mask: Tensor<4>) -> Tensor<3> {
        let attended = self
            .self_attn
            .forward(hidden_states.clone(), hidden_states.clone(), mask);
        let hidden_states = self
            .self_attn_layer_norm
            .forward(hidden_states + rng::dropout(&self.dropout, attended));
        feed_forward(
            hidden_states,
            [&self.fc1, &self.fc2],
            self.activation_fn,
            [&self.activation_dropout, &self.dropout],
            &self.final_layer_norm,
        )
    }
}

#[doc = concat!("The feed-forward block of both layer kinds: `LayerNorm(x + dropout(fc2(activation_dropout(act(fc1(x))))))` ([HF](", hf_bart!("296"), ")).")]
fn feed_forward(
    hidden_states: Tensor<3>,
    [fc1, fc2]: [&ProjLinear; 2],
    activation: HiddenAct,
    [activation_dropout, dropout]: [&Dropout; 2],
    norm: &LayerNorm,
) -> Tensor<3> {
    let x = rng::dropout(
        activation_dropout,
        activation.forward(fc1.forward(hidden_states.clone())),
    );
    let x = rng::dropout(dropout, fc2.forward(x));
    norm.forward(hidden_states + x)
}

#[doc = concat!("One decoder layer, post-norm: causal self-attention, cross-attention on the encoder output, feed-forward, each followed by dropout, residual and LayerNorm ([HF `BartDecoderLayer`](", hf_bart!("311"), ")).")]
#[derive(Module, Debug)]
pub struct BartDecoderLayer {
    /// `self_attn` (causal).
    pub self_attn: BartAttention,
    /// `self_attn_layer_norm`.
    pub self_attn_layer_norm: LayerNorm,
    /// `encoder_attn`, the cross-attention: queries from the decoder, keys and values from the
    /// encoder output.
    pub encoder_attn: BartAttention,
    /// `encoder_attn_layer_norm`.
    pub encoder_attn_layer_norm: LayerNorm,
    /// `fc1`, FFN_1, d_model → ffn_dim.
    pub fc1: ProjLinear,
    /// `fc2`, FFN_2, ffn_dim → d_model.
    pub fc2: ProjLinear,
    /// `final_layer_norm`.
    pub final_layer_norm: LayerNorm,
    /// Dropout after each sub-layer (`dropout`).
    pub dropout: Dropout,
    /// Dropout after the activation (`activation_dropout`).
    pub activation_dropout: Dropout,
    /// `activation_fn`.
    #[module(skip)]
    pub activation_fn: HiddenAct,
}

impl BartDecoderLayer {
    /// # Shapes
    ///
    /// - hidden_states, output: `[batch, seq, d_model]`
    /// - causal_mask: `[1, 1, seq, seq]` (from [`causal_attention_mask`])
    /// - encoder_hidden_states: `[batch, src_seq, d_model]`
    /// - encoder_mask: `[batch, 1, 1, src_seq]` (from [`extended_attention_mask`])
    pub fn forward(
        &self,
        hidden_states: Tensor<3>,
        causal_mask: Tensor<4>,
        encoder_hidden_states: Tensor<3>,
        encoder_mask: Tensor<4>,
    ) -> Tensor<3> {
        let attended =
            self.self_attn
                .forward(hidden_states.clone(), hidden_states.clone(), causal_mask);
        let hidden_states = self
            .self_attn_layer_norm
            .forward(hidden_states + rng::dropout(&self.dropout, attended));
        let crossed =
            self.encoder_attn
                .forward(hidden_states.clone(), encoder_hidden_states, encoder_mask);
        let hidden_states = self
            .encoder_attn_layer_norm
            .forward(hidden_states + rng::dropout(&self.dropout, crossed));
        feed_forward(
            hidden_states,
            [&self.fc1, &self.fc2],
            self.activation_fn,
            [&self.activation_dropout, &self.dropout],
            &self.final_layer_norm,
        )
    }
}

// ------------------------------------------------------------------------------------------------
// Classification head
// ------------------------------------------------------------------------------------------------

/// Configuration of [`BartClassificationHead`].
#[derive(Config, Debug)]
pub struct BartClassificationHeadConfig {
    /// Input width (d_model).
    pub input_dim: usize,
    /// Inner width (d_model).
    pub inner_dim: usize,
    /// Outputs; 1 means regression.
    pub num_classes: usize,
    /// Dropout before each dense layer (`classifier_dropout`).
    pub pooler_dropout: f64,
    /// Standard deviation of the initial weights. Default: 0.02.
    #[config(default = 0.02)]
    pub init_std: f64,
}

#[doc = concat!("`out_proj(dropout(tanh(dense(dropout(x)))))` ([HF `BartClassificationHead`](", hf_bart!("394"), ")). Not an OPF candidate, so plain [`Linear`]s.")]
#[derive(Module, Debug)]
pub struct BartClassificationHead {
    /// `dense`, input_dim → inner_dim.
    pub dense: Linear,
    /// `dropout`.
    pub dropout: Dropout,
    /// `out_proj`, inner_dim → num_classes.
    pub out_proj: Linear,
}

impl BartClassificationHeadConfig {
    /// Initialises both layers, `N(0, init_std²)` weights and zero biases.
    pub fn init(&self, device: &Device) -> BartClassificationHead {
        BartClassificationHead {
            dense: init_dense(self.input_dim, self.inner_dim, self.init_std, device),
            dropout: DropoutConfig::new(self.pooler_dropout).init(),
            out_proj: init_dense(self.inner_dim, self.num_classes, self.init_std, device),
        }
    }
}

impl BartClassificationHead {
    /// # Shapes
    ///
    /// - hidden_states: `[batch, input_dim]`
    /// - output: `[batch, num_classes]`
    pub fn forward(&self, hidden_states: Tensor<2>) -> Tensor<2> {
        let x = self
            .dense
            .forward(rng::dropout(&self.dropout, hidden_states))
            .tanh();
        self.out_proj.forward(rng::dropout(&self.dropout, x))
    }
}

// ------------------------------------------------------------------------------------------------
// Encoder, decoder
// ------------------------------------------------------------------------------------------------

/// Configuration of [`BartEncoder`] and [`BartDecoder`].
#[derive(Config, Debug)]
pub struct BartStackConfig {
    /// Number of layers.
    pub layers: usize,
    /// Every layer's configuration.
    pub layer: BartLayerConfig,
    /// Number of positions.
    pub max_position_embeddings: usize,
    /// Dropout after the embedding layer norm.
    pub dropout: f64,
    /// Standard deviation of the initial position table. Default: 0.02.
    #[config(default = 0.02)]
    pub init_std: f64,
}

impl BartStackConfig {
    fn positions(&self, device: &Device) -> BartLearnedPositionalEmbedding {
        BartLearnedPositionalEmbeddingConfig::new(self.max_position_embeddings, self.layer.d_model)
            .with_init_std(self.init_std)
            .init(device)
    }

    /// Initialises an encoder of `layers` independent layers.
    pub fn init_encoder(&self, device: &Device) -> BartEncoder {
        BartEncoder {
            embed_positions: self.positions(device),
            layers: (0..self.layers)
                .map(|_| self.layer.init_encoder_layer(device))
                .collect(),
            layernorm_embedding: layer_norm(self.layer.d_model, device),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }

    /// Initialises a decoder of `layers` independent layers.
    pub fn init_decoder(&self, device: &Device) -> BartDecoder {
        BartDecoder {
            embed_positions: self.positions(device),
            layers: (0..self.layers)
                .map(|_| self.layer.init_decoder_layer(device))
                .collect(),
            layernorm_embedding: layer_norm(self.layer.d_model, device),
            dropout: DropoutConfig::new(self.dropout).init(),
        }
    }
}

#[doc = concat!("The encoder: token embeddings (given) + positions → LayerNorm → dropout → layers ([HF `BartEncoder`](", hf_bart!("463"), ")). The token embedding is [`BartModel::shared`].")]
#[derive(Module, Debug)]
pub struct BartEncoder {
    /// `embed_positions`.
    pub embed_positions: BartLearnedPositionalEmbedding,
    /// `layers.{i}`.
    pub layers: Vec<BartEncoderLayer>,
    /// `layernorm_embedding`.
    pub layernorm_embedding: LayerNorm,
    /// `dropout` after the embeddings.
    pub dropout: Dropout,
}

impl BartEncoder {
    #[doc = concat!("Encodes embedded tokens ([HF](", hf_bart!("507"), ")).")]
    ///
    /// # Shapes
    ///
    /// - inputs_embeds: `[batch, seq, d_model]` (scaled token embeddings)
    /// - attention_mask: `[batch, seq]` (1 = attend, 0 = padding)
    /// - output: `[batch, seq, d_model]`
    ///
    /// # Panics
    ///
    /// Panics if `seq` exceeds `max_position_embeddings`.
    pub fn forward(&self, inputs_embeds: Tensor<3>, attention_mask: Tensor<2, Int>) -> Tensor<3> {
        let [_, seq, _] = inputs_embeds.dims();
        let hidden = inputs_embeds + self.embed_positions.forward(seq);
        let hidden = self
            .dropout
            .forward(self.layernorm_embedding.forward(hidden));
        let mask = extended_attention_mask(attention_mask);
        self.layers
            .iter()
            .fold(hidden, |h, layer| layer.forward(h, mask.clone()))
    }
}

#[doc = concat!("The decoder: token embeddings (given) + positions → LayerNorm → dropout → layers with causal self-attention and cross-attention ([HF `BartDecoder`](", hf_bart!("552"), ")). The token embedding is [`BartModel::shared`].")]
#[derive(Module, Debug)]
pub struct BartDecoder {
    /// `embed_positions`.
    pub embed_positions: BartLearnedPositionalEmbedding,
    /// `layers.{i}`.
    pub layers: Vec<BartDecoderLayer>,
    /// `layernorm_embedding`.
    pub layernorm_embedding: LayerNorm,
    /// `dropout` after the embeddings.
    pub dropout: Dropout,
}

impl BartDecoder {
    #[doc = concat!("Decodes embedded tokens against the encoder output, without cache or decoder padding mask ([HF](", hf_bart!("595"), ")).")]
    ///
    /// # Shapes
    ///
    /// - inputs_embeds: `[batch, seq, d_model]` (scaled token embeddings)
    /// - encoder_hidden_states: `[batch, src_seq, d_model]`
    /// - encoder_attention_mask: `[batch, src_seq]` (1 = attend, 0 = padding)
    /// - output: `[batch, seq, d_model]`
    ///
    /// # Panics
    ///
    /// Panics if `seq` exceeds `max_position_embeddings`.
    pub fn forward(
        &self,
        inputs_embeds: Tensor<3>,
        encoder_hidden_states: Tensor<3>,
        encoder_attention_mask: Tensor<2, Int>,
    ) -> Tensor<3> {
        let [_, seq, _] = inputs_embeds.dims();
        let causal = causal_attention_mask(seq, &inputs_embeds.device());
        let encoder_mask = extended_attention_mask(encoder_attention_mask);
        let hidden = inputs_embeds + self.embed_positions.forward(seq);
        let hidden = self
            .dropout
            .forward(self.layernorm_embedding.forward(hidden));
        self.layers.iter().fold(hidden, |h, layer| {
            layer.forward(
                h,
                causal.clone(),
                encoder_hidden_states.clone(),
                encoder_mask.clone(),
            )
        })
    }
}

// ------------------------------------------------------------------------------------------------
// Linear paths
// ------------------------------------------------------------------------------------------------

/// Which half of BART a layer belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BartStack {
    /// `encoder`.
    Encoder,
    /// `decoder`.
    Decoder,
}

impl BartStack {
    /// `encoder` or `decoder`.
    pub fn name(self) -> &'static str {
        match self {
            BartStack::Encoder => "encoder",
            BartStack::Decoder => "decoder",
        }
    }
}

/// Which projection of a layer; the OPF candidates (spec §2.1). Cross-attention exists in
/// decoder layers only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BartLinearKind {
    /// `self_attn.k_proj`.
    SelfKey,
    /// `self_attn.v_proj`.
    SelfValue,
    /// `self_attn.q_proj`.
    SelfQuery,
    /// `self_attn.out_proj`.
    SelfOut,
    /// `encoder_attn.k_proj` (decoder only).
    CrossKey,
    /// `encoder_attn.v_proj` (decoder only).
    CrossValue,
    /// `encoder_attn.q_proj` (decoder only).
    CrossQuery,
    /// `encoder_attn.out_proj` (decoder only).
    CrossOut,
    /// `fc1` (FFN_1, d_model → ffn_dim).
    Fc1,
    /// `fc2` (FFN_2, ffn_dim → d_model).
    Fc2,
}

impl BartLinearKind {
    /// An encoder layer's kinds in `named_parameters()` order (`BartAttention` declares k, v, q,
    /// out).
    pub const ENCODER: [BartLinearKind; 6] = [
        BartLinearKind::SelfKey,
        BartLinearKind::SelfValue,
        BartLinearKind::SelfQuery,
        BartLinearKind::SelfOut,
        BartLinearKind::Fc1,
        BartLinearKind::Fc2,
    ];

    /// A decoder layer's kinds in `named_parameters()` order.
    pub const DECODER: [BartLinearKind; 10] = [
        BartLinearKind::SelfKey,
        BartLinearKind::SelfValue,
        BartLinearKind::SelfQuery,
        BartLinearKind::SelfOut,
        BartLinearKind::CrossKey,
        BartLinearKind::CrossValue,
        BartLinearKind::CrossQuery,
        BartLinearKind::CrossOut,
        BartLinearKind::Fc1,
        BartLinearKind::Fc2,
    ];

    /// The Hugging Face module path inside a layer, e.g. `encoder_attn.k_proj`.
    pub fn hf_module(self) -> &'static str {
        match self {
            BartLinearKind::SelfKey => "self_attn.k_proj",
            BartLinearKind::SelfValue => "self_attn.v_proj",
            BartLinearKind::SelfQuery => "self_attn.q_proj",
            BartLinearKind::SelfOut => "self_attn.out_proj",
            BartLinearKind::CrossKey => "encoder_attn.k_proj",
            BartLinearKind::CrossValue => "encoder_attn.v_proj",
            BartLinearKind::CrossQuery => "encoder_attn.q_proj",
            BartLinearKind::CrossOut => "encoder_attn.out_proj",
            BartLinearKind::Fc1 => "fc1",
            BartLinearKind::Fc2 => "fc2",
        }
    }

    /// Whether the kind is a cross-attention projection.
    pub fn is_cross(self) -> bool {
        matches!(
            self,
            BartLinearKind::CrossKey
                | BartLinearKind::CrossValue
                | BartLinearKind::CrossQuery
                | BartLinearKind::CrossOut
        )
    }

    /// The kinds of a layer of `stack`.
    pub fn all(stack: BartStack) -> &'static [BartLinearKind] {
        match stack {
            BartStack::Encoder => &Self::ENCODER,
            BartStack::Decoder => &Self::DECODER,
        }
    }
}

impl fmt::Display for BartLinearKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hf_module())
    }
}

/// The address of one projection: stack, layer index and kind.
///
/// Displayed as its Hugging Face module name in `BartForSequenceClassification`, e.g.
/// `model.decoder.layers.3.encoder_attn.k_proj`; [`FromStr`] accepts that with or without the
/// `model.` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BartLinearPath {
    /// Encoder or decoder.
    pub stack: BartStack,
    /// Layer within the stack, from 0.
    pub layer: usize,
    /// Projection within the layer.
    pub kind: BartLinearKind,
}

impl BartLinearPath {
    /// The path of `kind` in encoder layer `layer`.
    ///
    /// # Panics
    ///
    /// Panics if `kind` is a cross-attention projection.
    pub fn encoder(layer: usize, kind: BartLinearKind) -> Self {
        assert!(!kind.is_cross(), "encoder layers have no cross-attention");
        Self {
            stack: BartStack::Encoder,
            layer,
            kind,
        }
    }

    /// The path of `kind` in decoder layer `layer`.
    pub fn decoder(layer: usize, kind: BartLinearKind) -> Self {
        Self {
            stack: BartStack::Decoder,
            layer,
            kind,
        }
    }

    /// The module name relative to [`BartModel`], e.g. `decoder.layers.3.fc1`.
    fn module_name(self) -> String {
        format!(
            "{}.layers.{}.{}",
            self.stack.name(),
            self.layer,
            self.kind.hf_module()
        )
    }
}

impl fmt::Display for BartLinearPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{BASE_PREFIX}{}", self.module_name())
    }
}

impl FromStr for BartLinearPath {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ModelError::ParseLinearPath(s.to_string());
        let rest = s.strip_prefix(BASE_PREFIX).unwrap_or(s);
        let (stack, rest) = rest.split_once(".layers.").ok_or_else(err)?;
        let stack = [BartStack::Encoder, BartStack::Decoder]
            .into_iter()
            .find(|st| st.name() == stack)
            .ok_or_else(err)?;
        let (layer, module) = rest.split_once('.').ok_or_else(err)?;
        let layer = layer.parse().map_err(|_| err())?;
        let kind = BartLinearKind::all(stack)
            .iter()
            .copied()
            .find(|k| k.hf_module() == module)
            .ok_or_else(err)?;
        Ok(Self { stack, layer, kind })
    }
}

impl BartEncoderLayer {
    /// The projection of `kind`.
    ///
    /// # Panics
    ///
    /// Panics if `kind` is a cross-attention projection.
    pub fn linear(&self, kind: BartLinearKind) -> &ProjLinear {
        match kind {
            BartLinearKind::SelfKey => &self.self_attn.k_proj,
            BartLinearKind::SelfValue => &self.self_attn.v_proj,
            BartLinearKind::SelfQuery => &self.self_attn.q_proj,
            BartLinearKind::SelfOut => &self.self_attn.out_proj,
            BartLinearKind::Fc1 => &self.fc1,
            BartLinearKind::Fc2 => &self.fc2,
            cross => panic!("encoder layers have no {cross}"),
        }
    }

    fn linear_mut(&mut self, kind: BartLinearKind) -> &mut ProjLinear {
        match kind {
            BartLinearKind::SelfKey => &mut self.self_attn.k_proj,
            BartLinearKind::SelfValue => &mut self.self_attn.v_proj,
            BartLinearKind::SelfQuery => &mut self.self_attn.q_proj,
            BartLinearKind::SelfOut => &mut self.self_attn.out_proj,
            BartLinearKind::Fc1 => &mut self.fc1,
            BartLinearKind::Fc2 => &mut self.fc2,
            cross => panic!("encoder layers have no {cross}"),
        }
    }
}

impl BartDecoderLayer {
    /// The projection of `kind`.
    pub fn linear(&self, kind: BartLinearKind) -> &ProjLinear {
        match kind {
            BartLinearKind::SelfKey => &self.self_attn.k_proj,
            BartLinearKind::SelfValue => &self.self_attn.v_proj,
            BartLinearKind::SelfQuery => &self.self_attn.q_proj,
            BartLinearKind::SelfOut => &self.self_attn.out_proj,
            BartLinearKind::CrossKey => &self.encoder_attn.k_proj,
            BartLinearKind::CrossValue => &self.encoder_attn.v_proj,
            BartLinearKind::CrossQuery => &self.encoder_attn.q_proj,
            BartLinearKind::CrossOut => &self.encoder_attn.out_proj,
            BartLinearKind::Fc1 => &self.fc1,
            BartLinearKind::Fc2 => &self.fc2,
        }
    }

    fn linear_mut(&mut self, kind: BartLinearKind) -> &mut ProjLinear {
        match kind {
            BartLinearKind::SelfKey => &mut self.self_attn.k_proj,
            BartLinearKind::SelfValue => &mut self.self_attn.v_proj,
            BartLinearKind::SelfQuery => &mut self.self_attn.q_proj,
            BartLinearKind::SelfOut => &mut self.self_attn.out_proj,
            BartLinearKind::CrossKey => &mut self.encoder_attn.k_proj,
            BartLinearKind::CrossValue => &mut self.encoder_attn.v_proj,
            BartLinearKind::CrossQuery => &mut self.encoder_attn.q_proj,
            BartLinearKind::CrossOut => &mut self.encoder_attn.out_proj,
            BartLinearKind::Fc1 => &mut self.fc1,
            BartLinearKind::Fc2 => &mut self.fc2,
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Model
// ------------------------------------------------------------------------------------------------

/// Configuration of [`BartModel`].
#[derive(Config, Debug)]
pub struct BartModelConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub d_model: usize,
    /// Whether token embeddings are multiplied by `√d_model`.
    pub scale_embedding: bool,
    /// Padding token id (its embedding row starts at zero).
    pub pad_token_id: usize,
    /// First decoder input token.
    pub decoder_start_token_id: usize,
    /// Encoder.
    pub encoder: BartStackConfig,
    /// Decoder.
    pub decoder: BartStackConfig,
    /// Standard deviation of the initial token embeddings. Default: 0.02.
    #[config(default = 0.02)]
    pub init_std: f64,
}

/// The outputs of [`BartModel::forward`].
#[derive(Debug, Clone)]
pub struct BartModelOutput {
    /// The encoder's final hidden states, `[batch, seq, d_model]`.
    pub encoder_last_hidden_state: Tensor<3>,
    /// The decoder's final hidden states, `[batch, seq, d_model]`.
    pub last_hidden_state: Tensor<3>,
}

#[doc = concat!("The BART encoder-decoder with its shared token embedding ([HF `BartModel`](", hf_bart!("677"), ")).")]
#[derive(Module, Debug)]
pub struct BartModel {
    /// `shared`, `[vocab_size, d_model]`: the token embedding of encoder and decoder (Hugging
    /// Face's tied `encoder.embed_tokens` and `decoder.embed_tokens`).
    pub shared: Embedding,
    /// `encoder`.
    pub encoder: BartEncoder,
    /// `decoder`.
    pub decoder: BartDecoder,
    /// Factor applied to token embeddings: `√d_model` with `scale_embedding`, else 1.
    pub embed_scale: f64,
    /// First decoder input token.
    pub decoder_start_token_id: usize,
}

impl BartModelConfig {
    /// Initialises a random model: tables `N(0, init_std²)` with the padding row of `shared`
    /// zeroed, as `PreTrainedModel._init_weights` does for `nn.Embedding(padding_idx=pad)`.
    pub fn init(&self, device: &Device) -> BartModel {
        let pad = self.pad_token_id;
        let table = normal([self.vocab_size, self.d_model], self.init_std, device)
            .val()
            .slice_assign(
                s![pad..pad + 1, ..],
                Tensor::zeros([1, self.d_model], device),
            )
            // A fresh leaf, so that it can be a parameter on autodiff devices.
            .detach();
        BartModel {
            shared: Embedding {
                weight: Param::from_tensor(table),
            },
            encoder: self.encoder.init_encoder(device),
            decoder: self.decoder.init_decoder(device),
            embed_scale: match self.scale_embedding {
                true => (self.d_model as f64).sqrt(),
                false => 1.0,
            },
            decoder_start_token_id: self.decoder_start_token_id,
        }
    }
}

impl BartModel {
    #[doc = concat!("Token embeddings scaled by `embed_scale` ([HF `BartScaledWordEmbedding`](", hf_bart!("100"), ")).")]
    ///
    /// # Shapes
    ///
    /// - input_ids: `[batch, seq]`
    /// - output: `[batch, seq, d_model]`
    pub fn embed_tokens(&self, input_ids: Tensor<2, Int>) -> Tensor<3> {
        self.shared.forward(input_ids).mul_scalar(self.embed_scale)
    }

    #[doc = concat!("Encodes `input_ids` and decodes `shift_tokens_right(input_ids)` against it, as `BartModel.forward` without `decoder_input_ids` ([HF](", hf_bart!("707"), ")).")]
    ///
    /// # Shapes
    ///
    /// - input_ids, attention_mask: `[batch, seq]` (mask: 1 = attend, 0 = pad)
    /// - output: both states `[batch, seq, d_model]`
    ///
    /// # Panics
    ///
    /// Panics if the inputs differ in shape or `seq` exceeds `max_position_embeddings`.
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
    ) -> BartModelOutput {
        let [batch, seq] = input_ids.dims();
        assert_shape!(attention_mask, [batch, seq]);
        let decoder_input_ids = shift_tokens_right(input_ids.clone(), self.decoder_start_token_id);
        let encoder_last_hidden_state = self
            .encoder
            .forward(self.embed_tokens(input_ids), attention_mask.clone());
        let last_hidden_state = self.decoder.forward(
            self.embed_tokens(decoder_input_ids),
            encoder_last_hidden_state.clone(),
            attention_mask,
        );
        BartModelOutput {
            encoder_last_hidden_state,
            last_hidden_state,
        }
    }

    /// Every projection path in `named_parameters()` order: encoder layers (6 each, see
    /// [`BartLinearKind::ENCODER`]), then decoder layers (10 each, [`BartLinearKind::DECODER`]).
    pub fn linear_paths(&self) -> Vec<BartLinearPath> {
        let encoder = (0..self.encoder.layers.len()).flat_map(|layer| {
            BartLinearKind::ENCODER.map(|kind| BartLinearPath::encoder(layer, kind))
        });
        let decoder = (0..self.decoder.layers.len()).flat_map(|layer| {
            BartLinearKind::DECODER.map(|kind| BartLinearPath::decoder(layer, kind))
        });
        encoder.chain(decoder).collect()
    }

    /// The projection at `path`.
    ///
    /// # Panics
    ///
    /// Panics if the layer is out of range or an encoder path names cross-attention.
    pub fn linear(&self, path: BartLinearPath) -> &ProjLinear {
        match path.stack {
            BartStack::Encoder => self.encoder.layers[path.layer].linear(path.kind),
            BartStack::Decoder => self.decoder.layers[path.layer].linear(path.kind),
        }
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
    /// As [`linear`](Self::linear).
    pub fn set_linear(
        &mut self,
        path: BartLinearPath,
        linear: ProjLinear,
    ) -> Result<ProjLinear, ModelError> {
        linear::set_linear(self, path, linear)
    }

    /// Over-parameterizes the projections at `paths` (OPF, spec §2.3), as
    /// [`BertModel::over_parameterize`](crate::BertModel::over_parameterize): MPO cores of
    /// `preset`'s shape, bias reused, all shapes checked first, factored paths skipped.
    ///
    /// # Errors
    ///
    /// [`ModelError::Mpo`] if the preset has no shape for a projection's dims.
    ///
    /// # Panics
    ///
    /// As [`linear`](Self::linear).
    pub fn over_parameterize(
        &mut self,
        paths: &[BartLinearPath],
        preset: &mpo_core::Preset,
        training: crate::CoreTraining,
    ) -> Result<Vec<MpoReplacement<BartLinearPath>>, ModelError> {
        linear::over_parameterize(self, paths, preset, training)
    }

    /// Contracts every MPO projection back into a dense one (spec §2.5): the result has the
    /// original architecture and parameter count.
    pub fn merge_mpo(&mut self) {
        linear::merge_mpo(self);
    }

    /// Paths of the MPO-factored projections.
    pub fn mpo_paths(&self) -> Vec<BartLinearPath> {
        linear::mpo_paths(self)
    }
}

impl LinearSlots for BartModel {
    type Path = BartLinearPath;

    fn slot_paths(&self) -> Vec<BartLinearPath> {
        self.linear_paths()
    }

    fn slot(&self, path: BartLinearPath) -> &ProjLinear {
        self.linear(path)
    }

    fn slot_mut(&mut self, path: BartLinearPath) -> &mut ProjLinear {
        match path.stack {
            BartStack::Encoder => self.encoder.layers[path.layer].linear_mut(path.kind),
            BartStack::Decoder => self.decoder.layers[path.layer].linear_mut(path.kind),
        }
    }
}

// ------------------------------------------------------------------------------------------------
// Sequence classification
// ------------------------------------------------------------------------------------------------

/// Configuration of [`BartForSequenceClassification`].
#[derive(Config, Debug)]
pub struct BartForSequenceClassificationConfig {
    /// The encoder-decoder.
    pub model: BartModelConfig,
    /// The head.
    pub classification_head: BartClassificationHeadConfig,
}

#[doc = concat!("BART with a classification head on the decoder state at each row's last `<eos>` ([HF `BartForSequenceClassification`](", hf_bart!("965"), ")).")]
#[derive(Module, Debug)]
pub struct BartForSequenceClassification {
    /// `model`.
    pub model: BartModel,
    /// `classification_head`.
    pub classification_head: BartClassificationHead,
    /// The Hugging Face config, written back by [`save_pretrained`](Self::save_pretrained).
    #[module(skip)]
    config: BartConfig,
}

impl BartForSequenceClassification {
    /// A randomly initialised model for `config`.
    ///
    /// # Panics
    ///
    /// Panics if `config` does not [validate](BartConfig::validate).
    pub fn new(config: &BartConfig, device: &Device) -> Self {
        if let Err(err) = config.validate() {
            panic!("{err}");
        }
        let burn_config = config.classification_config();
        Self {
            model: burn_config.model.init(device),
            classification_head: burn_config.classification_head.init(device),
            config: config.clone(),
        }
    }

    /// The Hugging Face config of this model.
    pub fn config(&self) -> &BartConfig {
        &self.config
    }

    /// Number of classifier outputs.
    pub fn num_labels(&self) -> usize {
        self.config.num_labels()
    }

    #[doc = concat!("Classification logits (or the regression score when `num_labels == 1`) from the decoder state at each row's last `<eos>` ([HF](", hf_bart!("1025"), ")).")]
    ///
    /// # Shapes
    ///
    /// - input_ids, attention_mask: `[batch, seq]`
    /// - output: `[batch, num_labels]`
    ///
    /// # Errors
    ///
    /// [`ModelError::EosTokens`] if the rows hold different numbers of `<eos>`, or none (see
    /// [`last_eos_positions`]).
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
    ) -> Result<Tensor<2>, ModelError> {
        let eos = self
            .config
            .eos_token_id
            .expect("a validated config has eos");
        let positions = last_eos_positions(&input_ids, eos)?;
        let hidden = self
            .model
            .forward(input_ids, attention_mask)
            .last_hidden_state;
        let [batch, seq, d_model] = hidden.dims();
        let rows: Vec<i64> = positions
            .iter()
            .enumerate()
            .map(|(row, &pos)| (row * seq + pos) as i64)
            .collect();
        let rows = Tensor::<1, Int>::from_data(TensorData::new(rows, [batch]), &hidden.device());
        let sentence = hidden.reshape([batch * seq, d_model]).select(0, rows);
        Ok(self.classification_head.forward(sentence))
    }

    /// The mean loss of `logits` (from [`forward`](Self::forward)) against `labels`, as
    /// `BartForSequenceClassification.forward` computes it: cross-entropy for classes, mean
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
    /// Panics if the label kind does not match the problem type or the shapes disagree.
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
    /// The checkpoint may be a `BartModel` (names without prefix), a
    /// `BartForConditionalGeneration` (`model.` prefix; `lm_head.weight` and `final_logits_bias`
    /// are reported unused) or a `BartForSequenceClassification` (`model.` +
    /// `classification_head.*`). The word embedding is read from `shared.weight`, else from
    /// `encoder.embed_tokens.weight` / `decoder.embed_tokens.weight`; copies present beside it
    /// must be identical (they are tied). `f16`, `bf16` and `f64` tensors are converted to
    /// `f32`.
    ///
    /// # Errors
    ///
    /// I/O and parse errors name the file; a missing tensor (other than the whole head), an
    /// unexpected one, a wrongly shaped one, a differing tied copy or a non-float one is an
    /// error naming the tensor.
    pub fn load(
        path: impl AsRef<Path>,
        config: Option<&BartConfig>,
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
            None => BartConfig::from_file(dir.join(CONFIG_FILE))?,
        };
        let config = match num_labels {
            Some(n) => config.with_num_labels(n),
            None => config,
        };
        config.validate()?;
        let checkpoint = Checkpoint::open(&weights)?;
        let mut model = Self::new(&config, device);
        let report = load_layout(
            &checkpoint,
            model.hf_modules_mut(),
            BASE_PREFIX,
            PROBE_KEYS,
            is_ignorable,
            config.init_std,
            device,
        )?;
        Ok((model, report))
    }

    /// Loads a training checkpoint written by burn's `save_file` (a run's `checkpoint/best.bpk`)
    /// into a model of `config`, as
    /// [`BertForSequenceClassification::load_record`](crate::BertForSequenceClassification::load_record):
    /// the number of labels comes from the stored `classification_head.out_proj` and every
    /// projection stored as MPO cores is rebuilt with the stored core shapes before the tensors
    /// are read.
    ///
    /// # Errors
    ///
    /// [`ModelError::Record`] if the file is unreadable or does not fit the model (another config,
    /// a checkpoint of another architecture).
    pub fn load_record(
        path: impl AsRef<Path>,
        config: &BartConfig,
        device: &Device,
    ) -> Result<Self, ModelError> {
        linear::load_record(
            path.as_ref(),
            |num_labels| match num_labels {
                Some(n) => Self::new(&config.clone().with_num_labels(n), device),
                None => Self::new(config, device),
            },
            |model| model.classification_head.out_proj.weight.id,
            |model| &mut model.model,
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
        linear::with_record_layout(self, path.as_ref(), |model| &mut model.model, device)
    }

    /// Every tensor in the Hugging Face `BartForSequenceClassification` layout: `model.`-prefixed
    /// names, `shared.weight` only (no tied copies), `(out, in)` linear weights, `f32` data, in
    /// `named_parameters()` order.
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
    /// `architectures: ["BartForSequenceClassification"]`) into `dir`, creating it, so that
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
            serde_json::json!(["BartForSequenceClassification"]),
        );
        config.save(dir.join(CONFIG_FILE))?;
        self.save_safetensors(dir.join(SAFETENSORS_FILE))
    }
}

// ------------------------------------------------------------------------------------------------
// Checkpoint layout: the only place where Hugging Face tensor names appear
// ------------------------------------------------------------------------------------------------

/// Weights file inside a model directory.
const SAFETENSORS_FILE: &str = "model.safetensors";
/// Config file inside a model directory.
const CONFIG_FILE: &str = "config.json";
/// Prefix of the encoder-decoder's names in task-model checkpoints.
const BASE_PREFIX: &str = "model.";
/// The keys whose presence with [`BASE_PREFIX`] marks a prefixed checkpoint: the word embedding
/// under any of its tied names.
const PROBE_KEYS: &[&str] = &[
    "shared.weight",
    "encoder.embed_tokens.weight",
    "decoder.embed_tokens.weight",
];

/// Checkpoint tensors that no module uses and that are safe to ignore: fairseq's version
/// buffers (`_keys_to_ignore_on_load_unexpected`, `modeling_bart.py:423`) and the
/// language-modelling head of `BartForConditionalGeneration`.
fn is_ignorable(name: &str, prefix: &str) -> bool {
    let base = name.strip_prefix(prefix);
    matches!(base, Some("encoder.version" | "decoder.version"))
        || name == "lm_head.weight"
        || name == "final_logits_bias"
}

impl BartModel {
    /// The layout table of the encoder-decoder, in `named_parameters()` order.
    fn hf_modules_mut(&mut self) -> Vec<HfEntry<'_>> {
        let BartModel {
            shared,
            encoder,
            decoder,
            ..
        } = self;
        let mut rows = vec![
            HfEntry::base("shared", HfModule::Embedding(shared))
                .with_aliases(&["encoder.embed_tokens", "decoder.embed_tokens"]),
            HfEntry::base(
                "encoder.embed_positions",
                HfModule::Embedding(&mut encoder.embed_positions.embedding),
            ),
        ];
        for (i, layer) in encoder.layers.iter_mut().enumerate() {
            let name = |module: &str| format!("encoder.layers.{i}.{module}");
            let BartEncoderLayer {
                self_attn,
                self_attn_layer_norm,
                fc1,
                fc2,
                final_layer_norm,
                ..
            } = layer;
            rows.extend(attention_rows(self_attn, &name("self_attn")));
            rows.extend([
                HfEntry::base(
                    name("self_attn_layer_norm"),
                    HfModule::LayerNorm(self_attn_layer_norm),
                ),
                HfEntry::base(name("fc1"), HfModule::Proj(fc1)),
                HfEntry::base(name("fc2"), HfModule::Proj(fc2)),
                HfEntry::base(
                    name("final_layer_norm"),
                    HfModule::LayerNorm(final_layer_norm),
                ),
            ]);
        }
        rows.extend([
            HfEntry::base(
                "encoder.layernorm_embedding",
                HfModule::LayerNorm(&mut encoder.layernorm_embedding),
            ),
            HfEntry::base(
                "decoder.embed_positions",
                HfModule::Embedding(&mut decoder.embed_positions.embedding),
            ),
        ]);
        for (i, layer) in decoder.layers.iter_mut().enumerate() {
            let name = |module: &str| format!("decoder.layers.{i}.{module}");
            let BartDecoderLayer {
                self_attn,
                self_attn_layer_norm,
                encoder_attn,
                encoder_attn_layer_norm,
                fc1,
                fc2,
                final_layer_norm,
                ..
            } = layer;
            rows.extend(attention_rows(self_attn, &name("self_attn")));
            rows.push(HfEntry::base(
                name("self_attn_layer_norm"),
                HfModule::LayerNorm(self_attn_layer_norm),
            ));
            rows.extend(attention_rows(encoder_attn, &name("encoder_attn")));
            rows.extend([
                HfEntry::base(
                    name("encoder_attn_layer_norm"),
                    HfModule::LayerNorm(encoder_attn_layer_norm),
                ),
                HfEntry::base(name("fc1"), HfModule::Proj(fc1)),
                HfEntry::base(name("fc2"), HfModule::Proj(fc2)),
                HfEntry::base(
                    name("final_layer_norm"),
                    HfModule::LayerNorm(final_layer_norm),
                ),
            ]);
        }
        rows.push(HfEntry::base(
            "decoder.layernorm_embedding",
            HfModule::LayerNorm(&mut decoder.layernorm_embedding),
        ));
        rows
    }
}

/// The rows of one attention block named `name`, in declaration order (k, v, q, out).
fn attention_rows<'a>(attention: &'a mut BartAttention, name: &str) -> Vec<HfEntry<'a>> {
    let BartAttention {
        k_proj,
        v_proj,
        q_proj,
        out_proj,
        ..
    } = attention;
    [
        ("k_proj", k_proj),
        ("v_proj", v_proj),
        ("q_proj", q_proj),
        ("out_proj", out_proj),
    ]
    .into_iter()
    .map(|(proj, module)| HfEntry::base(format!("{name}.{proj}"), HfModule::Proj(module)))
    .collect()
}

impl BartForSequenceClassification {
    /// The layout table of the whole model, in `named_parameters()` order.
    fn hf_modules_mut(&mut self) -> Vec<HfEntry<'_>> {
        let mut rows = self.model.hf_modules_mut();
        let BartClassificationHead {
            dense, out_proj, ..
        } = &mut self.classification_head;
        rows.extend([
            HfEntry::head("classification_head.dense", HfModule::Linear(dense)),
            HfEntry::head("classification_head.out_proj", HfModule::Linear(out_proj)),
        ]);
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tolerance;

    /// The tiny configuration of the parity fixture.
    fn tiny_config() -> BartConfig {
        BartConfig {
            vocab_size: 100,
            d_model: 16,
            encoder_layers: 2,
            decoder_layers: 2,
            encoder_attention_heads: 4,
            decoder_attention_heads: 2,
            encoder_ffn_dim: 37,
            decoder_ffn_dim: 24,
            max_position_embeddings: 64,
            scale_embedding: true,
            ..BartConfig::default()
        }
        .with_num_labels(3)
    }

    fn ints<const D: usize>(data: impl Into<TensorData>, device: &Device) -> Tensor<D, Int> {
        Tensor::from_data(data.into(), device)
    }

    #[test]
    fn shift_tokens_right_prepends_the_start_token() {
        let device = Device::flex();
        // transformers shift_tokens_right([[0, 5, 6, 2, 1], [0, 7, 2, 1, 1]], pad=1, start=2)
        let shifted = shift_tokens_right(ints([[0, 5, 6, 2, 1], [0, 7, 2, 1, 1]], &device), 2);
        shifted.into_data().assert_eq(
            &TensorData::from([[2i64, 0, 5, 6, 2], [2, 0, 7, 2, 1]]),
            false,
        );
    }

    #[test]
    fn causal_mask_hides_the_future() {
        let device = Device::flex();
        let mask = causal_attention_mask(3, &device);
        let m = f32::MIN;
        mask.into_data().assert_eq(
            &TensorData::from([[[[0.0f32, m, m], [0.0, 0.0, m], [0.0, 0.0, 0.0]]]]),
            true,
        );
    }

    #[test]
    fn positions_start_at_row_two() {
        let device = Device::flex();
        // Row r of the table holds the value r in every column.
        let rows = Tensor::<1, Int>::arange(0..6, &device).float();
        let table = rows.unsqueeze_dim::<2>(1).repeat_dim(1, 3);
        let positions = BartLearnedPositionalEmbedding {
            embedding: Embedding {
                weight: Param::from_tensor(table),
            },
        };
        let out = positions.forward(3);
        assert_eq!(out.dims(), [1, 3, 3]);
        out.into_data().assert_eq(
            &TensorData::from([[[2.0f32, 2.0, 2.0], [3.0, 3.0, 3.0], [4.0, 4.0, 4.0]]]),
            true,
        );
    }

    #[test]
    #[should_panic(expected = "exceeds max_position_embeddings 4")]
    fn positions_beyond_the_table_panic() {
        let device = Device::flex();
        let positions = BartLearnedPositionalEmbeddingConfig::new(4, 8).init(&device);
        assert_eq!(positions.embedding.weight.val().dims(), [6, 8]);
        let _ = positions.forward(5);
    }

    #[test]
    fn last_eos_is_selected_and_counts_must_agree() {
        let device = Device::flex();
        let ids = ints([[0, 5, 2, 2, 7, 2, 1], [0, 2, 2, 9, 2, 1, 1]], &device);
        assert_eq!(last_eos_positions(&ids, 2).unwrap(), vec![5, 4]);
        let uneven = ints([[0, 5, 2, 2], [0, 7, 2, 1]], &device);
        match last_eos_positions(&uneven, 2) {
            Err(ModelError::EosTokens { counts }) => assert_eq!(counts, vec![2, 1]),
            other => panic!("expected EosTokens, got {other:?}"),
        }
        let none = ints([[0, 5, 1], [0, 7, 1]], &device);
        assert!(matches!(
            last_eos_positions(&none, 2),
            Err(ModelError::EosTokens { counts }) if counts == vec![0, 0]
        ));
    }

    #[test]
    fn classification_reads_the_last_eos_state() {
        let device = Device::flex();
        device.seed(5);
        let model = BartForSequenceClassification::new(&tiny_config(), &device);
        let ids = ints([[0, 5, 2, 2, 7, 2, 1], [0, 2, 2, 9, 2, 1, 1]], &device);
        let mask = ids.clone().not_equal_elem(1).int();
        let hidden = model
            .model
            .forward(ids.clone(), mask.clone())
            .last_hidden_state;
        let picked = Tensor::cat(
            vec![
                hidden.clone().slice(s![0..1, 5..6, ..]),
                hidden.slice(s![1..2, 4..5, ..]),
            ],
            0,
        )
        .reshape([2, 16]);
        let expected = model.classification_head.forward(picked);
        let logits = model.forward(ids, mask).unwrap();
        logits
            .into_data()
            .assert_approx_eq::<f32>(&expected.into_data(), Tolerance::default());
    }

    #[test]
    fn config_defaults_are_bart_large() {
        let config = BartConfig::from_json_str("{}").unwrap();
        assert_eq!(config, BartConfig::default());
        assert_eq!(config.num_labels(), 3);
        assert_eq!(
            config.problem_type(),
            ProblemType::SingleLabelClassification
        );
        let burn = config.model_config();
        assert_eq!(burn.encoder.layer.num_heads, 16);
        assert_eq!(burn.decoder.layer.ffn_dim, 4096);
        assert_eq!(burn.pad_token_id, 1);
    }

    #[test]
    fn bad_configs_are_rejected_with_reason() {
        let invalid = [
            (
                r#"{"d_model": 30, "decoder_attention_heads": 4, "encoder_attention_heads": 5}"#,
                "decoder_attention_heads",
            ),
            (r#"{"model_type": "bert"}"#, "bert"),
            (r#"{"encoder_layerdrop": 0.1}"#, "layer drop"),
            (r#"{"eos_token_id": null}"#, "eos_token_id"),
            (r#"{"vocab_size": 2}"#, "eos_token_id 2 is outside"),
            (r#"{"dropout": 1.0}"#, "dropout"),
            (
                r#"{"problem_type": "regression", "num_labels": 3}"#,
                "regression",
            ),
        ];
        for (json, needle) in invalid {
            match BartConfig::from_json_str(json) {
                Err(ModelError::InvalidConfig(msg)) => assert!(msg.contains(needle), "{msg}"),
                other => panic!("{json}: expected InvalidConfig, got {other:?}"),
            }
        }
        assert!(matches!(
            BartConfig::from_json_str(r#"{"activation_function": "swish"}"#),
            Err(ModelError::ConfigParse { .. })
        ));
    }

    #[test]
    fn linear_paths_are_in_named_parameters_order_and_parse_back() {
        let device = Device::flex();
        let model = BartForSequenceClassification::new(&tiny_config(), &device);
        let paths = model.model.linear_paths();
        assert_eq!(paths.len(), 2 * 6 + 2 * 10);
        assert_eq!(
            paths[0].to_string(),
            "model.encoder.layers.0.self_attn.k_proj"
        );
        assert_eq!(paths[5].to_string(), "model.encoder.layers.0.fc2");
        assert_eq!(
            paths[12 + 10 + 4].to_string(),
            "model.decoder.layers.1.encoder_attn.k_proj"
        );
        for path in &paths {
            let name = path.to_string();
            assert_eq!(&name.parse::<BartLinearPath>().unwrap(), path);
            let relative = name.strip_prefix("model.").unwrap();
            assert_eq!(&relative.parse::<BartLinearPath>().unwrap(), path);
        }
        for bad in [
            "",
            "fc1",
            "model.encoder.layers.0.encoder_attn.q_proj",
            "encoder.layers.x.fc1",
            "decoder.layers.0.fc3",
            "middle.layers.0.fc1",
        ] {
            assert!(
                matches!(bad.parse::<BartLinearPath>(), Err(ModelError::ParseLinearPath(s)) if s == bad),
                "{bad}"
            );
        }
        let fc1 = model
            .model
            .linear(BartLinearPath::decoder(1, BartLinearKind::Fc1));
        assert_eq!((fc1.d_input(), fc1.d_output()), (16, 24));
        let fc2 = model
            .model
            .linear(BartLinearPath::encoder(0, BartLinearKind::Fc2));
        assert_eq!((fc2.d_input(), fc2.d_output()), (37, 16));
    }

    #[test]
    fn set_linear_checks_shape() {
        let device = Device::flex();
        let mut model = BartForSequenceClassification::new(&tiny_config(), &device);
        let path = BartLinearPath::decoder(0, BartLinearKind::CrossValue);
        let wrong = ProjLinearConfig::new(16, 24).init(&device);
        match model.model.set_linear(path, wrong) {
            Err(ModelError::ShapeMismatch {
                name,
                expected,
                found,
            }) => {
                assert_eq!(name, "model.decoder.layers.0.encoder_attn.v_proj");
                assert_eq!((expected, found), (vec![16, 16], vec![24, 16]));
            }
            other => panic!("expected ShapeMismatch, got {other:?}"),
        }
        let zero = ProjLinear::from_hf(Tensor::zeros([16, 16], &device), None);
        model.model.set_linear(path, zero).unwrap();
        assert!(model.model.linear(path).bias().is_none());
    }

    #[test]
    fn hf_tensors_use_hugging_face_names_and_count() {
        let device = Device::flex();
        let model = BartForSequenceClassification::new(&tiny_config(), &device);
        let tensors = model.hf_tensors();
        // shared, 2 position tables, 2 embedding norms (2 each), encoder layers 16 tensors,
        // decoder layers 26, head 4.
        assert_eq!(tensors.len(), 1 + 2 + 4 + 2 * 16 + 2 * 26 + 4);
        assert_eq!(tensors[0].0, "model.shared.weight");
        let shape = |name: &str| {
            let (_, data) = tensors.iter().find(|(n, _)| n == name).unwrap();
            data.shape().to_vec()
        };
        assert_eq!(shape("model.encoder.embed_positions.weight"), [66, 16]);
        assert_eq!(shape("model.encoder.layers.1.fc1.weight"), [37, 16]);
        assert_eq!(shape("model.decoder.layers.1.fc2.weight"), [16, 24]);
        assert_eq!(shape("classification_head.out_proj.weight"), [3, 16]);
        // The padding row of a fresh embedding is zero.
        let (_, shared) = &tensors[0];
        let shared: Vec<f32> = shared.clone().try_into_vec().unwrap();
        assert!(shared[16..32].iter().all(|&x| x == 0.0));
        assert!(shared[..16].iter().any(|&x| x != 0.0));
        let params: usize = tensors.iter().map(|(_, d)| d.num_elements()).sum();
        assert_eq!(params, model.num_params());
    }
}
