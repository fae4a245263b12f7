//! T5 (Raffel et al., 2020) in burn, ported from Hugging Face `transformers`
//! [`models/t5/modeling_t5.py`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/t5/modeling_t5.py)
//! (v5.24.0), read in the same order: config, layer norm, feed-forward, attention (relative
//! position buckets and bias), self- and cross-attention layers, block, stack, conditional
//! generation model. Each item cites the line of `modeling_t5.py` it follows.
//!
//! * Inputs are burn `Int` tensors `[batch, seq]`: token ids and Hugging Face's attention mask
//!   (1 = attend, 0 = padding). The decoder is causal and attends to every decoder position up
//!   to its own (no decoder padding mask, as `generate` and the loss use it).
//! * Dropout is burn's module, applied by [`rng::dropout`]: active on an autodiff device in
//!   training mode, the identity otherwise.
//! * Every projection (self- and cross-attention q/k/v/o, feed-forward wi or wi_0/wi_1, wo, in
//!   the encoder and the decoder) is a [`ProjLinear`] without bias, addressed by
//!   [`T5LinearPath`] for OPF ([`T5ForConditionalGeneration::over_parameterize`],
//!   [`T5ForConditionalGeneration::merge_mpo`]).
//! * Checkpoints: [`T5ForConditionalGeneration::load`] reads a Hugging Face `model.safetensors`;
//!   [`T5ForConditionalGeneration::save_pretrained`] writes one back. All checkpoint names live
//!   in the "Checkpoint layout" section at the end of this file.
//! * The language-model head is tied to the shared embedding (decoder output scaled by
//!   `d_model^-0.5`, T5 v1.0) unless the checkpoint has its own `lm_head.weight` (T5 v1.1,
//!   `tie_word_embeddings: false`, no scaling).
//!
//! ```no_run
//! use burn::prelude::*;
//! use opf_models::T5ForConditionalGeneration;
//!
//! let device = Device::flex();
//! let (model, report) = T5ForConditionalGeneration::load("path/to/t5-base", None, &device)?;
//! println!("{report}");
//! let ids = Tensor::<2, Int>::from_data([[13, 27, 1]], &device);
//! let mask = ids.ones_like();
//! let generated = model.generate_greedy(ids, mask, 8); // [1, ≤ 9], starts with the start id
//! # Ok::<(), opf_models::ModelError>(())
//! ```

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use burn::module::{Initializer, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::bert::{HiddenAct, extended_attention_mask};
use crate::checkpoint::{Checkpoint, LoadReport, write_safetensors};
use crate::config_io;
use crate::fused::softmax;
use crate::linear::{
    self, LinearSlots, MpoReplacement, ProjLinear, ProjLinearConfig, dense_from_hf,
};
use crate::precision::{self, Precision};
use crate::rng;

// ------------------------------------------------------------------------------------------------
// Config
// ------------------------------------------------------------------------------------------------

/// A Hugging Face T5 `config.json`
/// ([`transformers` `T5Config`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/t5/configuration_t5.py)).
///
/// Missing keys take `T5Config`'s defaults (t5-small); keys this crate does not use
/// (`architectures`, `dense_act_fn`, `transformers_version`, ...) are kept in
/// [`extra`](Self::extra) so that a loaded config is written back unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct T5Config {
    /// Always `"t5"`.
    pub model_type: String,
    /// Vocabulary size. Default 32128.
    pub vocab_size: usize,
    /// Width of the hidden states. Default 512.
    pub d_model: usize,
    /// Width of one attention head. Default 64.
    pub d_kv: usize,
    /// Width of the feed-forward layer. Default 2048.
    pub d_ff: usize,
    /// Encoder blocks. Default 6.
    pub num_layers: usize,
    /// Decoder blocks; `None` means `num_layers`.
    pub num_decoder_layers: Option<usize>,
    /// Attention heads. Default 8.
    pub num_heads: usize,
    /// Relative-position buckets. Default 32.
    pub relative_attention_num_buckets: usize,
    /// Distance from which relative positions share the last bucket. Default 128.
    pub relative_attention_max_distance: usize,
    /// Dropout after embeddings, each sub-layer, inside the feed-forward layer and on attention
    /// probabilities. Default 0.1.
    pub dropout_rate: f64,
    /// RMS-norm epsilon. Default 1e-6.
    pub layer_norm_epsilon: f64,
    /// Scale of the initialisation of fresh weights. Default 1.0.
    pub initializer_factor: f64,
    /// `"{act}"` or `"gated-{act}"` with act `relu`, `gelu` or `gelu_new`; `"gated-gelu"` means
    /// gelu_new (T5 v1.1). Default `"relu"`.
    pub feed_forward_proj: String,
    /// Whether the LM head is the shared embedding. Default true. A checkpoint written with
    /// `false` (T5 v1.1) has its own `lm_head.weight` and no output scaling.
    pub tie_word_embeddings: bool,
    /// Whether the decoder output is scaled by `d_model^-0.5` before the LM head. Written by
    /// transformers 5 (which always ties and keeps this instead); `None` means
    /// `tie_word_embeddings`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_decoder_outputs: Option<bool>,
    /// Padding id, also filled into shifted labels. Default 0.
    pub pad_token_id: usize,
    /// End-of-sequence id at which generation stops. Default 1.
    pub eos_token_id: usize,
    /// First decoder input. Default 0 (the padding id, as every T5 checkpoint).
    pub decoder_start_token_id: usize,
    /// Keys this crate does not interpret, kept for writing the config back.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl Default for T5Config {
    /// The defaults of `transformers` `T5Config` (configuration_t5.py:43-60).
    fn default() -> Self {
        Self {
            model_type: "t5".to_string(),
            vocab_size: 32128,
            d_model: 512,
            d_kv: 64,
            d_ff: 2048,
            num_layers: 6,
            num_decoder_layers: None,
            num_heads: 8,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            dropout_rate: 0.1,
            layer_norm_epsilon: 1e-6,
            initializer_factor: 1.0,
            feed_forward_proj: "relu".to_string(),
            tie_word_embeddings: true,
            scale_decoder_outputs: None,
            pad_token_id: 0,
            eos_token_id: 1,
            decoder_start_token_id: 0,
            extra: serde_json::Map::new(),
        }
    }
}

impl T5Config {
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

    /// Checks that the values describe a T5 this crate can build.
    pub fn validate(&self) -> Result<(), ModelError> {
        let fail = |msg: String| Err(ModelError::InvalidConfig(msg));
        config_io::check_type_and_sizes(
            &self.model_type,
            "t5",
            &[
                ("vocab_size", self.vocab_size),
                ("d_model", self.d_model),
                ("d_kv", self.d_kv),
                ("d_ff", self.d_ff),
                ("num_layers", self.num_layers),
                ("num_decoder_layers", self.num_decoder_layers()),
                ("num_heads", self.num_heads),
                (
                    "relative_attention_num_buckets",
                    self.relative_attention_num_buckets,
                ),
            ],
        )?;
        // The bucket function takes logs of max_distance / max_exact (modeling_t5.py:252).
        let max_exact = self.relative_attention_num_buckets / 4;
        if max_exact == 0 || self.relative_attention_max_distance <= max_exact {
            return fail(format!(
                "relative_attention_max_distance {} must exceed relative_attention_num_buckets / 4 \
                 (= {max_exact}, at least 1)",
                self.relative_attention_max_distance
            ));
        }
        if !(0.0..1.0).contains(&self.dropout_rate) {
            return fail(format!(
                "dropout_rate is {}, expected a value in [0, 1)",
                self.dropout_rate
            ));
        }
        let ids = [
            ("pad_token_id", self.pad_token_id),
            ("eos_token_id", self.eos_token_id),
            ("decoder_start_token_id", self.decoder_start_token_id),
        ];
        if let Some((name, id)) = ids.iter().find(|(_, id)| *id >= self.vocab_size) {
            return fail(format!("{name} {id} is not below vocab_size"));
        }
        self.feed_forward().map(|_| ())
    }

    /// Decoder blocks: `num_decoder_layers`, else `num_layers` (configuration_t5.py:64).
    pub fn num_decoder_layers(&self) -> usize {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }

    /// Whether the decoder output is scaled by `d_model^-0.5` (configuration_t5.py:81,
    /// modeling_t5.py:1047).
    pub fn scales_decoder_outputs(&self) -> bool {
        self.scale_decoder_outputs
            .unwrap_or(self.tie_word_embeddings)
    }

    /// The feed-forward variant of `feed_forward_proj`: `(gated, activation)`
    /// (configuration_t5.py:68-74).
    ///
    /// # Errors
    ///
    /// [`ModelError::InvalidConfig`] for other forms or activations.
    pub fn feed_forward(&self) -> Result<(bool, HiddenAct), ModelError> {
        let (gated, act) = match self.feed_forward_proj.split_once('-') {
            Some(("gated", act)) => (true, act),
            None => (false, self.feed_forward_proj.as_str()),
            // Not `gated-…`: rejected below.
            Some(_) => (false, ""),
        };
        let act = match (gated, act) {
            (true, "gelu") | (_, "gelu_new") => HiddenAct::GeluTanh,
            (false, "gelu") => HiddenAct::Gelu,
            (_, "relu") => HiddenAct::Relu,
            _ => {
                return Err(ModelError::InvalidConfig(format!(
                    "feed_forward_proj {:?} is not supported (relu, gelu, gelu_new, optionally \
                     gated-)",
                    self.feed_forward_proj
                )));
            }
        };
        Ok((gated, act))
    }

    /// The burn configuration of the model.
    ///
    /// # Panics
    ///
    /// Panics if `feed_forward_proj` is not supported (see [`validate`](Self::validate)).
    pub fn model_config(&self) -> T5ForConditionalGenerationConfig {
        let (gated, activation) = self.feed_forward().unwrap_or_else(|err| panic!("{err}"));
        let factor = self.initializer_factor;
        let attention = T5AttentionConfig::new(
            self.d_model,
            self.d_kv,
            self.num_heads,
            self.relative_attention_num_buckets,
            self.relative_attention_max_distance,
            self.dropout_rate,
        )
        .with_initializer_factor(factor);
        let ff = T5DenseConfig::new(
            self.d_model,
            self.d_ff,
            gated,
            activation,
            self.dropout_rate,
        )
        .with_initializer_factor(factor);
        let block = |is_decoder| {
            T5BlockConfig::new(
                attention.clone(),
                ff.clone(),
                is_decoder,
                self.layer_norm_epsilon,
                self.dropout_rate,
            )
        };
        T5ForConditionalGenerationConfig::new(
            self.vocab_size,
            self.d_model,
            T5StackConfig::new(self.num_layers, block(false)),
            T5StackConfig::new(self.num_decoder_layers(), block(true)),
        )
        .with_initializer_factor(factor)
    }
}

// ------------------------------------------------------------------------------------------------
// Layer norm
// ------------------------------------------------------------------------------------------------

/// Configuration of [`T5LayerNorm`].
#[derive(Config, Debug)]
pub struct T5LayerNormConfig {
    /// Normalised width.
    pub d_model: usize,
    /// Epsilon added to the mean square. Default 1e-6.
    #[config(default = 1e-6)]
    pub epsilon: f64,
}

/// RMS norm: `w · x / sqrt(mean(x²) + ε)`, no mean subtraction and no bias, in f32.
///
/// [HF `T5LayerNorm`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/t5/modeling_t5.py#L51).
#[derive(Module, Debug)]
pub struct T5LayerNorm {
    /// `weight`, `[d_model]`.
    pub weight: Param<Tensor<1>>,
    /// `variance_epsilon`.
    pub epsilon: f64,
}

impl T5LayerNormConfig {
    /// A norm with unit weight (`_init_weights`, modeling_t5.py:571).
    pub fn init(&self, device: &Device) -> T5LayerNorm {
        T5LayerNorm {
            weight: Initializer::Ones.init([self.d_model], device),
            epsilon: self.epsilon,
        }
    }
}

impl T5LayerNorm {
    /// # Shapes
    ///
    /// - input, output: `[..., d_model]`
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        let variance = input.clone().square().mean_dim(D - 1);
        let normed = input * (variance + self.epsilon).sqrt().recip();
        normed * self.weight.val().unsqueeze::<D>()
    }
}

// ------------------------------------------------------------------------------------------------
// Feed-forward
// ------------------------------------------------------------------------------------------------

/// Configuration of [`T5Dense`].
#[derive(Config, Debug)]
pub struct T5DenseConfig {
    /// Hidden width.
    pub d_model: usize,
    /// Feed-forward width.
    pub d_ff: usize,
    /// Gated (`wi_0`, `wi_1`) or not (`wi`).
    pub gated: bool,
    /// Activation.
    pub activation: HiddenAct,
    /// Dropout after the activation.
    pub dropout_rate: f64,
    /// Initialisation scale. Default 1.0.
    #[config(default = 1.0)]
    pub initializer_factor: f64,
}

/// `wo(dropout(act(wi(x))))`.
///
/// [HF `T5DenseActDense`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/t5/modeling_t5.py#L76).
#[derive(Module, Debug)]
pub struct T5DenseActDense {
    /// `wi`, d_model → d_ff.
    pub wi: ProjLinear,
    /// `wo`, d_ff → d_model.
    pub wo: ProjLinear,
    /// `dropout`.
    pub dropout: Dropout,
    /// `act`.
    #[module(skip)]
    pub activation: HiddenAct,
}

/// `wo(dropout(act(wi_0(x)) · wi_1(x)))` (T5 v1.1).
///
/// [HF `T5DenseGatedActDense`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/t5/modeling_t5.py#L98).
#[derive(Module, Debug)]
pub struct T5DenseGatedActDense {
    /// `wi_0`, d_model → d_ff, activated.
    pub wi_0: ProjLinear,
    /// `wi_1`, d_model → d_ff, linear.
    pub wi_1: ProjLinear,
    /// `wo`, d_ff → d_model.
    pub wo: ProjLinear,
    /// `dropout`.
    pub dropout: Dropout,
    /// `act`.
    #[module(skip)]
    pub activation: HiddenAct,
}

/// The feed-forward network of a block, `DenseReluDense` in the checkpoint.
#[derive(Module, Debug)]
pub enum T5Dense {
    /// `feed_forward_proj` without `gated-`.
    Act(T5DenseActDense),
    /// `feed_forward_proj = "gated-…"`.
    GatedAct(T5DenseGatedActDense),
}

impl T5DenseConfig {
    /// Initialises as `_init_weights` (modeling_t5.py:593-608): `wi*` `N(0, f²/d_model)`, `wo`
    /// `N(0, f²/d_ff)`, no biases.
    pub fn init(&self, device: &Device) -> T5Dense {
        let f = self.initializer_factor;
        let proj = |d_in: usize, d_out| {
            ProjLinearConfig::new(d_in, d_out)
                .with_initializer_range(f * (d_in as f64).powf(-0.5))
                .with_bias(false)
                .init(device)
        };
        let dropout = DropoutConfig::new(self.dropout_rate).init();
        let wo = proj(self.d_ff, self.d_model);
        if self.gated {
            T5Dense::GatedAct(T5DenseGatedActDense {
                wi_0: proj(self.d_model, self.d_ff),
                wi_1: proj(self.d_model, self.d_ff),
                wo,
                dropout,
                activation: self.activation,
            })
        } else {
            T5Dense::Act(T5DenseActDense {
                wi: proj(self.d_model, self.d_ff),
                wo,
                dropout,
                activation: self.activation,
            })
        }
    }
}

impl T5Dense {
    /// modeling_t5.py:84-95 and 107-124.
    ///
    /// # Shapes
    ///
    /// - hidden_states, output: `[batch, seq, d_model]`
    pub fn forward(&self, hidden_states: Tensor<3>) -> Tensor<3> {
        match self {
            T5Dense::Act(d) => {
                let h = d.activation.forward(d.wi.forward(hidden_states));
                d.wo.forward(rng::dropout(&d.dropout, h))
            }
            T5Dense::GatedAct(d) => {
                let gate = d.activation.forward(d.wi_0.forward(hidden_states.clone()));
                let h = gate * d.wi_1.forward(hidden_states);
                d.wo.forward(rng::dropout(&d.dropout, h))
            }
        }
    }
}

/// Configuration of [`T5LayerFF`].
#[derive(Config, Debug)]
pub struct T5LayerFFConfig {
    /// The feed-forward network.
    pub dense: T5DenseConfig,
    /// RMS-norm epsilon.
    pub layer_norm_epsilon: f64,
    /// Residual dropout.
    pub dropout_rate: f64,
}

/// Pre-norm feed-forward sub-layer with residual: `x + dropout(ff(norm(x)))`.
///
/// [HF `T5LayerFF`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/t5/modeling_t5.py#L127).
#[derive(Module, Debug)]
pub struct T5LayerFF {
    /// `DenseReluDense`.
    pub dense: T5Dense,
    /// `layer_norm`.
    pub layer_norm: T5LayerNorm,
    /// `dropout`.
    pub dropout: Dropout,
}

impl T5LayerFFConfig {
    /// Initialises the network and a unit norm.
    pub fn init(&self, device: &Device) -> T5LayerFF {
        T5LayerFF {
            dense: self.dense.init(device),
            layer_norm: T5LayerNormConfig::new(self.dense.d_model)
                .with_epsilon(self.layer_norm_epsilon)
                .init(device),
            dropout: DropoutConfig::new(self.dropout_rate).init(),
        }
    }
}

impl T5LayerFF {
    /// modeling_t5.py:138-142.
    ///
    /// # Shapes
    ///
    /// - hidden_states, output: `[batch, seq, d_model]`
    pub fn forward(&self, hidden_states: Tensor<3>) -> Tensor<3> {
        let ff = self
            .dense
            .forward(self.layer_norm.forward(hidden_states.clone()));
        hidden_states + rng::dropout(&self.dropout, ff)
    }
}

// ------------------------------------------------------------------------------------------------
// Attention
// ------------------------------------------------------------------------------------------------

/// The bucket of a relative position `memory − query`, as Mesh TensorFlow's T5
/// ([HF `T5Attention._relative_position_bucket`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/t5/modeling_t5.py#L218)).
///
/// Bidirectional (encoder): half the buckets for positive positions. Causal (decoder): positive
/// positions fall into bucket 0. Of the remaining `n` buckets, distances below `n / 2` get one
/// bucket each and larger ones logarithmically sized buckets up to `max_distance`, beyond which
/// all share the last. The logarithm is taken in f32, as PyTorch does.
pub fn relative_position_bucket(
    relative_position: i64,
    bidirectional: bool,
    num_buckets: usize,
    max_distance: usize,
) -> usize {
    let mut num_buckets = num_buckets as i64;
    let mut bucket = 0;
    let distance = if bidirectional {
        num_buckets /= 2;
        if relative_position > 0 {
            bucket += num_buckets;
        }
        relative_position.abs()
    } else {
        -relative_position.min(0)
    };
    let max_exact = num_buckets / 2;
    bucket += if distance < max_exact {
        distance
    } else {
        let log_ratio = (distance as f32 / max_exact as f32).ln()
            / (max_distance as f64 / max_exact as f64).ln() as f32;
        let large = max_exact + (log_ratio * (num_buckets - max_exact) as f32) as i64;
        large.min(num_buckets - 1)
    };
    bucket as usize
}

/// Configuration of [`T5Attention`].
#[derive(Config, Debug)]
pub struct T5AttentionConfig {
    /// Hidden width.
    pub d_model: usize,
    /// Width of one head.
    pub d_kv: usize,
    /// Number of heads.
    pub num_heads: usize,
    /// Relative-position buckets.
    pub relative_attention_num_buckets: usize,
    /// Distance from which positions share the last bucket.
    pub relative_attention_max_distance: usize,
    /// Dropout on attention probabilities.
    pub dropout_rate: f64,
    /// Initialisation scale. Default 1.0.
    #[config(default = 1.0)]
    pub initializer_factor: f64,
}

/// Multi-head attention without `1/√d` scaling (folded into the initialisation), with an
/// optional learned relative-position bias.
///
/// [HF `T5Attention`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/t5/modeling_t5.py#L177), eager path, no cache.
#[derive(Module, Debug)]
pub struct T5Attention {
    /// `q`, d_model → heads·d_kv.
    pub q: ProjLinear,
    /// `k`, d_model → heads·d_kv.
    pub k: ProjLinear,
    /// `v`, d_model → heads·d_kv.
    pub v: ProjLinear,
    /// `o`, heads·d_kv → d_model.
    pub o: ProjLinear,
    /// `relative_attention_bias`, `[num_buckets, num_heads]`; only in the first self-attention
    /// of each stack.
    pub relative_attention_bias: Option<Embedding>,
    /// Dropout on attention probabilities.
    pub dropout: Dropout,
    /// Number of heads.
    pub num_heads: usize,
    /// Width of one head.
    pub d_kv: usize,
    /// Relative-position buckets.
    pub num_buckets: usize,
    /// Distance from which positions share the last bucket.
    pub max_distance: usize,
}

impl T5AttentionConfig {
    /// Initialises as `_init_weights` (modeling_t5.py:610-620): q `N(0, f²/(d_model·d_kv))`,
    /// k and v `N(0, f²/d_model)`, o `N(0, f²/(heads·d_kv))`, the bias table `N(0, f²/d_model)`.
    pub fn init(&self, has_relative_attention_bias: bool, device: &Device) -> T5Attention {
        let f = self.initializer_factor;
        let inner = self.num_heads * self.d_kv;
        let proj = |d_in, d_out, var: usize| {
            ProjLinearConfig::new(d_in, d_out)
                .with_initializer_range(f * (var as f64).powf(-0.5))
                .with_bias(false)
                .init(device)
        };
        T5Attention {
            q: proj(self.d_model, inner, self.d_model * self.d_kv),
            k: proj(self.d_model, inner, self.d_model),
            v: proj(self.d_model, inner, self.d_model),
            o: proj(inner, self.d_model, inner),
            relative_attention_bias: has_relative_attention_bias.then(|| {
                EmbeddingConfig::new(self.relative_attention_num_buckets, self.num_heads)
                    .with_initializer(Initializer::Normal {
                        mean: 0.0,
                        std: f * (self.d_model as f64).powf(-0.5),
                    })
                    .init(device)
            }),
            dropout: DropoutConfig::new(self.dropout_rate).init(),
            num_heads: self.num_heads,
            d_kv: self.d_kv,
            num_buckets: self.relative_attention_num_buckets,
            max_distance: self.relative_attention_max_distance,
        }
    }
}

impl T5Attention {
    /// The learned bias of each (query, key) position pair (modeling_t5.py:265-281).
    ///
    /// # Shapes
    ///
    /// - output: `[1, num_heads, query_len, key_len]`
    ///
    /// # Panics
    ///
    /// Panics if the layer has no relative-attention bias table.
    pub fn compute_bias(
        &self,
        query_len: usize,
        key_len: usize,
        bidirectional: bool,
        device: &Device,
    ) -> Tensor<4> {
        let table = self
            .relative_attention_bias
            .as_ref()
            .expect("compute_bias needs a relative_attention_bias table");
        let buckets: Vec<i64> = (0..query_len as i64)
            .flat_map(|q| {
                (0..key_len as i64).map(move |k| {
                    relative_position_bucket(
                        k - q,
                        bidirectional,
                        self.num_buckets,
                        self.max_distance,
                    ) as i64
                })
            })
            .collect();
        let buckets =
            Tensor::<2, Int>::from_data(TensorData::new(buckets, [query_len, key_len]), device);
        table.forward(buckets).permute([2, 0, 1]).unsqueeze()
    }

    /// `softmax(Q Kᵀ + position_bias + mask) V`, heads concatenated, through `o`
    /// (modeling_t5.py:283-371 with `eager_attention_forward`, modeling_t5.py:145-174).
    ///
    /// Self-attention when `key_value_states` is `None`, cross-attention over it otherwise.
    /// Without `position_bias` a layer with a bias table computes it (`bidirectional` selects the
    /// encoder's buckets); one without adds nothing (HF adds zeros). Returns the output and the
    /// bias used, for the later blocks of the stack.
    ///
    /// # Shapes
    ///
    /// - hidden_states: `[batch, q_len, d_model]`
    /// - key_value_states: `[batch, k_len, d_model]`
    /// - mask: additive, broadcastable to `[batch, heads, q_len, k_len]`
    /// - position_bias: `[1, heads, q_len, k_len]`
    /// - output: `[batch, q_len, d_model]`
    pub fn forward(
        &self,
        hidden_states: Tensor<3>,
        key_value_states: Option<Tensor<3>>,
        mask: Tensor<4>,
        position_bias: Option<Tensor<4>>,
        bidirectional: bool,
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        let [batch, q_len, _] = hidden_states.dims();
        let source = key_value_states.unwrap_or_else(|| hidden_states.clone());
        let k_len = source.dims()[1];
        let heads = |x: Tensor<3>, len| {
            x.reshape([batch, len, self.num_heads, self.d_kv])
                .swap_dims(1, 2)
        };
        let query = heads(self.q.forward(hidden_states), q_len);
        let key = heads(self.k.forward(source.clone()), k_len);
        let value = heads(self.v.forward(source), k_len);

        let position_bias = match (position_bias, &self.relative_attention_bias) {
            (Some(bias), _) => Some(bias),
            (None, Some(_)) => {
                Some(self.compute_bias(q_len, k_len, bidirectional, &query.device()))
            }
            (None, None) => None,
        };
        let mut scores = precision::matmul(query, key.swap_dims(2, 3));
        if let Some(bias) = &position_bias {
            scores = scores + bias.clone();
        }
        let probs = rng::dropout(&self.dropout, softmax(scores + mask, 3));
        let context = precision::matmul(probs, value).swap_dims(1, 2).reshape([
            batch,
            q_len,
            self.num_heads * self.d_kv,
        ]);
        (self.o.forward(context), position_bias)
    }
}

/// Pre-norm attention sub-layer with residual, self- (`SelfAttention`, `layer.0`) or
/// cross-attention (`EncDecAttention`, decoder `layer.1`).
///
/// [HF `T5LayerSelfAttention`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/t5/modeling_t5.py#L374),
/// [`T5LayerCrossAttention`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/t5/modeling_t5.py#L407).
#[derive(Module, Debug)]
pub struct T5LayerAttention {
    /// `SelfAttention` or `EncDecAttention`.
    pub attention: T5Attention,
    /// `layer_norm`.
    pub layer_norm: T5LayerNorm,
    /// `dropout`.
    pub dropout: Dropout,
}

impl T5LayerAttention {
    /// `x + dropout(attention(norm(x), …))` (modeling_t5.py:396-404, 427-436); see
    /// [`T5Attention::forward`].
    ///
    /// # Shapes
    ///
    /// - hidden_states, output: `[batch, q_len, d_model]`
    /// - key_value_states: `[batch, k_len, d_model]`
    pub fn forward(
        &self,
        hidden_states: Tensor<3>,
        key_value_states: Option<Tensor<3>>,
        mask: Tensor<4>,
        position_bias: Option<Tensor<4>>,
        bidirectional: bool,
    ) -> (Tensor<3>, Option<Tensor<4>>) {
        let (attention, bias) = self.attention.forward(
            self.layer_norm.forward(hidden_states.clone()),
            key_value_states,
            mask,
            position_bias,
            bidirectional,
        );
        (hidden_states + rng::dropout(&self.dropout, attention), bias)
    }
}

// ------------------------------------------------------------------------------------------------
// Block and stack
// ------------------------------------------------------------------------------------------------

/// Configuration of [`T5Block`].
#[derive(Config, Debug)]
pub struct T5BlockConfig {
    /// Self- and cross-attention.
    pub attention: T5AttentionConfig,
    /// Feed-forward network.
    pub dense: T5DenseConfig,
    /// Decoder block (causal self-attention plus cross-attention).
    pub is_decoder: bool,
    /// RMS-norm epsilon.
    pub layer_norm_epsilon: f64,
    /// Residual dropout.
    pub dropout_rate: f64,
}

/// One encoder or decoder block: self-attention, cross-attention (decoder), feed-forward.
///
/// [HF `T5Block`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/t5/modeling_t5.py#L439).
#[derive(Module, Debug)]
pub struct T5Block {
    /// `layer.0`.
    pub self_attention: T5LayerAttention,
    /// Decoder `layer.1`.
    pub cross_attention: Option<T5LayerAttention>,
    /// `layer.1` (encoder) or `layer.2` (decoder).
    pub ff: T5LayerFF,
}

impl T5BlockConfig {
    /// Initialises the sub-layers; only the first block of a stack has the relative-position bias
    /// table (modeling_t5.py:652).
    pub fn init(&self, has_relative_attention_bias: bool, device: &Device) -> T5Block {
        let layer = |bias| T5LayerAttention {
            attention: self.attention.init(bias, device),
            layer_norm: T5LayerNormConfig::new(self.attention.d_model)
                .with_epsilon(self.layer_norm_epsilon)
                .init(device),
            dropout: DropoutConfig::new(self.dropout_rate).init(),
        };
        T5Block {
            self_attention: layer(has_relative_attention_bias),
            cross_attention: self.is_decoder.then(|| layer(false)),
            ff: T5LayerFFConfig::new(
                self.dense.clone(),
                self.layer_norm_epsilon,
                self.dropout_rate,
            )
            .init(device),
        }
    }
}

/// Configuration of [`T5Stack`].
#[derive(Config, Debug)]
pub struct T5StackConfig {
    /// Number of blocks.
    pub num_layers: usize,
    /// Every block's configuration.
    pub block: T5BlockConfig,
}

/// The encoder or the decoder: dropout, blocks, final norm, dropout. The token embedding is the
/// model's shared one.
///
/// [HF `T5Stack`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/t5/modeling_t5.py#L644).
#[derive(Module, Debug)]
pub struct T5Stack {
    /// `block.{i}`.
    pub blocks: Vec<T5Block>,
    /// `final_layer_norm`.
    pub final_layer_norm: T5LayerNorm,
    /// `dropout`.
    pub dropout: Dropout,
    /// Decoder stack (causal, with cross-attention).
    pub is_decoder: bool,
}

impl T5StackConfig {
    /// Initialises `num_layers` blocks, the first with the relative-position bias table.
    pub fn init(&self, device: &Device) -> T5Stack {
        T5Stack {
            blocks: (0..self.num_layers)
                .map(|i| self.block.init(i == 0, device))
                .collect(),
            final_layer_norm: T5LayerNormConfig::new(self.block.attention.d_model)
                .with_epsilon(self.block.layer_norm_epsilon)
                .init(device),
            dropout: DropoutConfig::new(self.block.dropout_rate).init(),
            is_decoder: self.block.is_decoder,
        }
    }
}

impl T5Stack {
    /// Runs the stack on embedded tokens (modeling_t5.py:668-752). The first block's
    /// relative-position bias is reused by the others.
    ///
    /// # Shapes
    ///
    /// - inputs_embeds, output: `[batch, seq, d_model]`
    /// - mask: additive self-attention mask, `[batch, 1, 1, seq]` (encoder, from
    ///   [`extended_attention_mask`]) or `[1, 1, seq, seq]` (decoder, [`causal_mask`])
    /// - encoder: the encoder's states `[batch, src, d_model]` and their additive mask
    ///   `[batch, 1, 1, src]`; decoder only
    ///
    /// # Panics
    ///
    /// Panics if a decoder stack gets no encoder states.
    pub fn forward(
        &self,
        inputs_embeds: Tensor<3>,
        mask: Tensor<4>,
        encoder: Option<(Tensor<3>, Tensor<4>)>,
    ) -> Tensor<3> {
        let bidirectional = !self.is_decoder;
        let mut hidden = rng::dropout(&self.dropout, inputs_embeds);
        let mut position_bias = None;
        for block in &self.blocks {
            let (h, bias) = block.self_attention.forward(
                hidden,
                None,
                mask.clone(),
                position_bias,
                bidirectional,
            );
            position_bias = bias;
            hidden = h;
            if let Some(cross) = &block.cross_attention {
                let (states, encoder_mask) = encoder
                    .clone()
                    .expect("a decoder stack needs encoder states");
                hidden = cross
                    .forward(hidden, Some(states), encoder_mask, None, true)
                    .0;
            }
            hidden = block.ff.forward(hidden);
        }
        rng::dropout(&self.dropout, self.final_layer_norm.forward(hidden))
    }
}

/// The decoder's additive causal mask: 0 where key ≤ query, `f32::MIN` after.
///
/// # Shapes
///
/// - output: `[1, 1, seq, seq]`
pub fn causal_mask(seq: usize, device: &Device) -> Tensor<4> {
    let data: Vec<f32> = (0..seq)
        .flat_map(|q| (0..seq).map(move |k| if k > q { f32::MIN } else { 0.0 }))
        .collect();
    Tensor::from_data(TensorData::new(data, [1, 1, seq, seq]), device)
}

/// Labels → decoder inputs: shifted one position right, `decoder_start_token_id` first, `-100`
/// replaced by `pad_token_id`
/// ([HF `_shift_right`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/t5/modeling_t5.py#L622)).
///
/// # Shapes
///
/// - labels, output: `[batch, seq]`
pub fn shift_right(
    labels: Tensor<2, Int>,
    decoder_start_token_id: usize,
    pad_token_id: usize,
) -> Tensor<2, Int> {
    let [batch, seq] = labels.dims();
    let start = Tensor::<2, Int>::full([batch, 1], decoder_start_token_id as i64, &labels.device());
    let shifted = Tensor::cat(vec![start, labels.narrow(1, 0, seq - 1)], 1);
    let ignored = shifted.clone().equal_elem(IGNORE_INDEX);
    shifted.mask_fill(ignored, pad_token_id as i64)
}

/// The label value that [`T5ForConditionalGeneration::loss`] ignores (PyTorch `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

// ------------------------------------------------------------------------------------------------
// Linear paths
// ------------------------------------------------------------------------------------------------

/// Encoder or decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum T5StackKind {
    /// `encoder`.
    Encoder,
    /// `decoder`.
    Decoder,
}

impl T5StackKind {
    /// `encoder` or `decoder`.
    pub fn name(self) -> &'static str {
        match self {
            T5StackKind::Encoder => "encoder",
            T5StackKind::Decoder => "decoder",
        }
    }
}

/// Which projection of a block: the OPF candidates of T5 (spec §2.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum T5LinearKind {
    /// Self-attention `q`.
    SelfQ,
    /// Self-attention `k`.
    SelfK,
    /// Self-attention `v`.
    SelfV,
    /// Self-attention `o`.
    SelfO,
    /// Cross-attention `q` (decoder).
    CrossQ,
    /// Cross-attention `k` (decoder).
    CrossK,
    /// Cross-attention `v` (decoder).
    CrossV,
    /// Cross-attention `o` (decoder).
    CrossO,
    /// Feed-forward `wi` (not gated).
    Wi,
    /// Feed-forward `wi_0`, the activated half (gated).
    Wi0,
    /// Feed-forward `wi_1`, the linear half (gated).
    Wi1,
    /// Feed-forward `wo`.
    Wo,
}

impl T5LinearKind {
    /// Every kind, in `named_parameters()` order within a decoder block.
    pub const ALL: [T5LinearKind; 12] = [
        T5LinearKind::SelfQ,
        T5LinearKind::SelfK,
        T5LinearKind::SelfV,
        T5LinearKind::SelfO,
        T5LinearKind::CrossQ,
        T5LinearKind::CrossK,
        T5LinearKind::CrossV,
        T5LinearKind::CrossO,
        T5LinearKind::Wi,
        T5LinearKind::Wi0,
        T5LinearKind::Wi1,
        T5LinearKind::Wo,
    ];

    /// The Hugging Face module path inside `{stack}.block.{i}`, e.g. `layer.1.EncDecAttention.k`;
    /// the feed-forward sub-layer is `layer.1` in the encoder and `layer.2` in the decoder.
    pub fn hf_module(self, stack: T5StackKind) -> String {
        let ff = match stack {
            T5StackKind::Encoder => 1,
            T5StackKind::Decoder => 2,
        };
        match self {
            T5LinearKind::SelfQ => "layer.0.SelfAttention.q".into(),
            T5LinearKind::SelfK => "layer.0.SelfAttention.k".into(),
            T5LinearKind::SelfV => "layer.0.SelfAttention.v".into(),
            T5LinearKind::SelfO => "layer.0.SelfAttention.o".into(),
            T5LinearKind::CrossQ => "layer.1.EncDecAttention.q".into(),
            T5LinearKind::CrossK => "layer.1.EncDecAttention.k".into(),
            T5LinearKind::CrossV => "layer.1.EncDecAttention.v".into(),
            T5LinearKind::CrossO => "layer.1.EncDecAttention.o".into(),
            T5LinearKind::Wi => format!("layer.{ff}.DenseReluDense.wi"),
            T5LinearKind::Wi0 => format!("layer.{ff}.DenseReluDense.wi_0"),
            T5LinearKind::Wi1 => format!("layer.{ff}.DenseReluDense.wi_1"),
            T5LinearKind::Wo => format!("layer.{ff}.DenseReluDense.wo"),
        }
    }

    /// Whether this is a cross-attention projection.
    pub fn is_cross(self) -> bool {
        matches!(
            self,
            T5LinearKind::CrossQ
                | T5LinearKind::CrossK
                | T5LinearKind::CrossV
                | T5LinearKind::CrossO
        )
    }
}

/// The address of one projection: stack, block and kind.
///
/// Displayed as its Hugging Face module path, e.g. `decoder.block.1.layer.1.EncDecAttention.k`,
/// which [`FromStr`] parses back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct T5LinearPath {
    /// Encoder or decoder.
    pub stack: T5StackKind,
    /// Block index, from 0.
    pub block: usize,
    /// Projection within the block.
    pub kind: T5LinearKind,
}

impl T5LinearPath {
    /// The path of `kind` in block `block` of `stack`.
    pub fn new(stack: T5StackKind, block: usize, kind: T5LinearKind) -> Self {
        Self { stack, block, kind }
    }
}

impl fmt::Display for T5LinearPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.block.{}.{}",
            self.stack.name(),
            self.block,
            self.kind.hf_module(self.stack)
        )
    }
}

impl FromStr for T5LinearPath {
    type Err = ModelError;

    /// Parses `{encoder|decoder}.block.{i}.{module}`; cross-attention only in the decoder.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ModelError::ParseLinearPath(s.to_string());
        let (stack, rest) = s.split_once(".block.").ok_or_else(err)?;
        let stack = match stack {
            "encoder" => T5StackKind::Encoder,
            "decoder" => T5StackKind::Decoder,
            _ => return Err(err()),
        };
        let (block, module) = rest.split_once('.').ok_or_else(err)?;
        let block = block.parse().map_err(|_| err())?;
        let kind = T5LinearKind::ALL
            .into_iter()
            .filter(|k| stack == T5StackKind::Decoder || !k.is_cross())
            .find(|k| k.hf_module(stack) == module)
            .ok_or_else(err)?;
        Ok(Self { stack, block, kind })
    }
}

/// Looks up the projection at a [`T5LinearPath`] in a [`T5ForConditionalGeneration`]:
/// `select_linear!(model, path)` borrows it shared, `select_linear!(model, path, mut)` mutably.
macro_rules! select_linear {
    ($model:ident, $path:expr $(, $mut:tt)?) => {{
        let path: T5LinearPath = $path;
        let missing = || -> ! { panic!("the model has no projection {path}") };
        let stack = match path.stack {
            T5StackKind::Encoder => &$($mut)? $model.encoder,
            T5StackKind::Decoder => &$($mut)? $model.decoder,
        };
        if path.block >= stack.blocks.len() {
            missing();
        }
        let block = &$($mut)? stack.blocks[path.block];
        match (path.kind, &$($mut)? block.cross_attention, &$($mut)? block.ff.dense) {
            (T5LinearKind::SelfQ, ..) => &$($mut)? block.self_attention.attention.q,
            (T5LinearKind::SelfK, ..) => &$($mut)? block.self_attention.attention.k,
            (T5LinearKind::SelfV, ..) => &$($mut)? block.self_attention.attention.v,
            (T5LinearKind::SelfO, ..) => &$($mut)? block.self_attention.attention.o,
            (T5LinearKind::CrossQ, Some(c), _) => &$($mut)? c.attention.q,
            (T5LinearKind::CrossK, Some(c), _) => &$($mut)? c.attention.k,
            (T5LinearKind::CrossV, Some(c), _) => &$($mut)? c.attention.v,
            (T5LinearKind::CrossO, Some(c), _) => &$($mut)? c.attention.o,
            (T5LinearKind::Wi, _, T5Dense::Act(d)) => &$($mut)? d.wi,
            (T5LinearKind::Wo, _, T5Dense::Act(d)) => &$($mut)? d.wo,
            (T5LinearKind::Wi0, _, T5Dense::GatedAct(d)) => &$($mut)? d.wi_0,
            (T5LinearKind::Wi1, _, T5Dense::GatedAct(d)) => &$($mut)? d.wi_1,
            (T5LinearKind::Wo, _, T5Dense::GatedAct(d)) => &$($mut)? d.wo,
            _ => missing(),
        }
    }};
}

// ------------------------------------------------------------------------------------------------
// Model
// ------------------------------------------------------------------------------------------------

/// Configuration of [`T5ForConditionalGeneration`].
#[derive(Config, Debug)]
pub struct T5ForConditionalGenerationConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Hidden width.
    pub d_model: usize,
    /// Encoder.
    pub encoder: T5StackConfig,
    /// Decoder.
    pub decoder: T5StackConfig,
    /// Initialisation scale. Default 1.0.
    #[config(default = 1.0)]
    pub initializer_factor: f64,
}

/// T5 with its language-model head: shared embedding, encoder, decoder, LM head.
///
/// [HF `T5ForConditionalGeneration`](https://github.com/huggingface/transformers/blob/v5.24.0/src/transformers/models/t5/modeling_t5.py#L900).
#[derive(Module, Debug)]
pub struct T5ForConditionalGeneration {
    /// `shared`, `[vocab_size, d_model]`, the input embedding of both stacks.
    pub shared: Embedding,
    /// `encoder`.
    pub encoder: T5Stack,
    /// `decoder`.
    pub decoder: T5Stack,
    /// `lm_head` when untied (T5 v1.1), weight `[d_model, vocab_size]`, no bias; `None` means
    /// the shared embedding.
    pub lm_head: Option<Linear>,
    /// The Hugging Face config, written back by [`save_pretrained`](Self::save_pretrained).
    #[module(skip)]
    config: T5Config,
}

impl T5ForConditionalGenerationConfig {
    /// Initialises a random model with the tied head (`shared` `N(0, f²)`,
    /// modeling_t5.py:577); its Hugging Face config has default token ids.
    pub fn init(&self, device: &Device) -> T5ForConditionalGeneration {
        let attention = &self.encoder.block.attention;
        let dense = &self.encoder.block.dense;
        let config = T5Config {
            vocab_size: self.vocab_size,
            d_model: self.d_model,
            d_kv: attention.d_kv,
            d_ff: dense.d_ff,
            num_layers: self.encoder.num_layers,
            num_decoder_layers: Some(self.decoder.num_layers),
            num_heads: attention.num_heads,
            relative_attention_num_buckets: attention.relative_attention_num_buckets,
            relative_attention_max_distance: attention.relative_attention_max_distance,
            dropout_rate: self.encoder.block.dropout_rate,
            layer_norm_epsilon: self.encoder.block.layer_norm_epsilon,
            initializer_factor: self.initializer_factor,
            feed_forward_proj: format!(
                "{}{}",
                if dense.gated { "gated-" } else { "" },
                match dense.activation {
                    HiddenAct::Gelu => "gelu",
                    HiddenAct::GeluTanh => "gelu_new",
                    HiddenAct::Relu => "relu",
                }
            ),
            ..T5Config::default()
        };
        T5ForConditionalGeneration {
            shared: EmbeddingConfig::new(self.vocab_size, self.d_model)
                .with_initializer(Initializer::Normal {
                    mean: 0.0,
                    std: self.initializer_factor,
                })
                .init(device),
            encoder: self.encoder.init(device),
            decoder: self.decoder.init(device),
            lm_head: None,
            config,
        }
    }
}

impl T5ForConditionalGeneration {
    /// A randomly initialised model for `config` (which must [validate](T5Config::validate)).
    /// With `tie_word_embeddings: false` the LM head is a separate `N(0, f²)` matrix.
    ///
    /// # Panics
    ///
    /// Panics if `config` does not validate.
    pub fn new(config: &T5Config, device: &Device) -> Self {
        if let Err(err) = config.validate() {
            panic!("{err}");
        }
        let mut model = config.model_config().init(device);
        if !config.tie_word_embeddings {
            let std = config.initializer_factor;
            model.lm_head = Some(Linear {
                weight: Initializer::Normal { mean: 0.0, std }
                    .init([config.d_model, config.vocab_size], device),
                bias: None,
            });
        }
        model.config = config.clone();
        model
    }

    /// The Hugging Face config of this model.
    pub fn config(&self) -> &T5Config {
        &self.config
    }

    /// The device of the model's tensors.
    pub fn device(&self) -> Device {
        self.shared.weight.val().device()
    }

    /// Encodes a batch (HF `T5Stack` as encoder, modeling_t5.py:1010).
    ///
    /// # Shapes
    ///
    /// - input_ids, attention_mask: `[batch, src]` (mask: 1 = attend, 0 = pad)
    /// - output: the encoder's last hidden state `[batch, src, d_model]`
    pub fn encode(&self, input_ids: Tensor<2, Int>, attention_mask: Tensor<2, Int>) -> Tensor<3> {
        let [batch, src] = input_ids.dims();
        assert_shape!(attention_mask, [batch, src]);
        let embeds = self.shared.forward(input_ids);
        self.encoder
            .forward(embeds, extended_attention_mask(attention_mask), None)
    }

    /// Decodes against encoder states and returns LM logits (modeling_t5.py:1031-1051): the
    /// decoder output is scaled by `d_model^-0.5` when the config says so, then multiplied by the
    /// LM head (the shared embedding when tied).
    ///
    /// # Shapes
    ///
    /// - encoder_hidden_states: `[batch, src, d_model]`
    /// - attention_mask: the encoder's mask `[batch, src]`
    /// - decoder_input_ids: `[batch, tgt]`
    /// - output: `[batch, tgt, vocab_size]`
    pub fn decode(
        &self,
        encoder_hidden_states: Tensor<3>,
        attention_mask: Tensor<2, Int>,
        decoder_input_ids: Tensor<2, Int>,
    ) -> Tensor<3> {
        let tgt = decoder_input_ids.dims()[1];
        let device = decoder_input_ids.device();
        let embeds = self.shared.forward(decoder_input_ids);
        let encoder_mask = extended_attention_mask(attention_mask);
        let mut sequence = self.decoder.forward(
            embeds,
            causal_mask(tgt, &device),
            Some((encoder_hidden_states, encoder_mask)),
        );
        if self.config.scales_decoder_outputs() {
            sequence = sequence.mul_scalar((self.config.d_model as f64).powf(-0.5));
        }
        match &self.lm_head {
            Some(head) if Precision::current() != Precision::F32 => precision::linear(
                sequence,
                head.weight.val(),
                head.bias.as_ref().map(Param::val),
            ),
            Some(head) => head.forward(sequence),
            None => precision::matmul(sequence, self.shared.weight.val().transpose().unsqueeze()),
        }
    }

    /// LM logits for a batch: [`encode`](Self::encode) then [`decode`](Self::decode).
    ///
    /// # Shapes
    ///
    /// - input_ids, attention_mask: `[batch, src]`
    /// - decoder_input_ids: `[batch, tgt]` (e.g. [`shift_right`](Self::shift_right) of labels)
    /// - output: `[batch, tgt, vocab_size]`
    pub fn forward(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        decoder_input_ids: Tensor<2, Int>,
    ) -> Tensor<3> {
        let encoded = self.encode(input_ids, attention_mask.clone());
        self.decode(encoded, attention_mask, decoder_input_ids)
    }

    /// Labels → decoder inputs with this model's start and padding ids (see [`shift_right`]).
    pub fn shift_right(&self, labels: Tensor<2, Int>) -> Tensor<2, Int> {
        shift_right(
            labels,
            self.config.decoder_start_token_id,
            self.config.pad_token_id,
        )
    }

    /// Mean token cross-entropy of `logits` against `labels`, ignoring [`IGNORE_INDEX`]
    /// (modeling_t5.py:1053-1058), with PyTorch's `label_smoothing` ε: each token's loss is
    /// `(1 − ε)·nll + ε·mean over the vocabulary of −log p` (the original OPF T5 trainer uses
    /// ε = 0.1, spec §5.7).
    ///
    /// # Shapes
    ///
    /// - logits: `[batch, tgt, vocab_size]`
    /// - labels: `[batch, tgt]`
    /// - output: `[1]` (NaN if every label is ignored, as PyTorch)
    pub fn loss(
        &self,
        logits: Tensor<3>,
        labels: Tensor<2, Int>,
        label_smoothing: f64,
    ) -> Tensor<1> {
        let [batch, tgt, _] = logits.dims();
        assert_shape!(labels, [batch, tgt]);
        let log_probs = log_softmax(logits, 2);
        let ignored = labels.clone().equal_elem(IGNORE_INDEX);
        let targets = labels.mask_fill(ignored.clone(), 0).unsqueeze_dim::<3>(2);
        let nll = log_probs
            .clone()
            .gather(2, targets)
            .neg()
            .reshape([batch, tgt]);
        let smooth = log_probs.mean_dim(2).neg().reshape([batch, tgt]);
        let per_token = nll.mul_scalar(1.0 - label_smoothing) + smooth.mul_scalar(label_smoothing);
        let kept = ignored.bool_not().float();
        (per_token * kept.clone()).sum() / kept.sum()
    }

    /// Greedy decoding, as `generate(num_beams=1, do_sample=False)`: starting from
    /// `decoder_start_token_id`, append the arg-max token of each row; a row that has produced
    /// `eos_token_id` is padded with `pad_token_id` afterwards; stop when every row is finished
    /// or after `max_new_tokens`. The decoder is rerun on the whole prefix at each step (no key /
    /// value cache).
    ///
    /// # Shapes
    ///
    /// - input_ids, attention_mask: `[batch, src]`
    /// - output: `[batch, 1 + steps]`, steps ≤ `max_new_tokens`, starting with the start id
    pub fn generate_greedy(
        &self,
        input_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
        max_new_tokens: usize,
    ) -> Tensor<2, Int> {
        let [batch, _] = input_ids.dims();
        let device = input_ids.device();
        let encoded = self.encode(input_ids, attention_mask.clone());
        let (start, eos, pad) = (
            self.config.decoder_start_token_id as i64,
            self.config.eos_token_id as i64,
            self.config.pad_token_id as i64,
        );
        let mut tokens = vec![start; batch];
        let mut len = 1;
        let mut finished = vec![false; batch];
        while len <= max_new_tokens && !finished.iter().all(|f| *f) {
            let decoder_input_ids =
                Tensor::<2, Int>::from_data(TensorData::new(tokens.clone(), [batch, len]), &device);
            let logits = self.decode(encoded.clone(), attention_mask.clone(), decoder_input_ids);
            let vocab = logits.dims()[2];
            let next: Vec<i64> = logits
                .narrow(1, len - 1, 1)
                .reshape([batch, vocab])
                .argmax(1)
                .into_data()
                .convert::<i64>()
                .try_into_vec()
                .expect("i64 token ids");
            let mut grown = Vec::with_capacity(batch * (len + 1));
            for (row, (&token, done)) in next.iter().zip(finished.iter_mut()).enumerate() {
                grown.extend_from_slice(&tokens[row * len..(row + 1) * len]);
                let token = if *done { pad } else { token };
                *done |= token == eos;
                grown.push(token);
            }
            tokens = grown;
            len += 1;
        }
        Tensor::from_data(TensorData::new(tokens, [batch, len]), &device)
    }

    // --------------------------------------------------------------------------------------------
    // OPF: projections by path
    // --------------------------------------------------------------------------------------------

    /// Whether the feed-forward networks are gated (`wi_0`/`wi_1` instead of `wi`).
    pub fn is_gated(&self) -> bool {
        matches!(self.encoder.blocks[0].ff.dense, T5Dense::GatedAct(_))
    }

    /// Every projection path in `named_parameters()` order: encoder blocks (self q, k, v, o,
    /// feed-forward), then decoder blocks (self, cross, feed-forward).
    pub fn linear_paths(&self) -> Vec<T5LinearPath> {
        let ff: &[T5LinearKind] = if self.is_gated() {
            &[T5LinearKind::Wi0, T5LinearKind::Wi1, T5LinearKind::Wo]
        } else {
            &[T5LinearKind::Wi, T5LinearKind::Wo]
        };
        let mut paths = Vec::new();
        for (stack, blocks) in [
            (T5StackKind::Encoder, self.encoder.blocks.len()),
            (T5StackKind::Decoder, self.decoder.blocks.len()),
        ] {
            for block in 0..blocks {
                let kinds = T5LinearKind::ALL[..8]
                    .iter()
                    .filter(|k| stack == T5StackKind::Decoder || !k.is_cross())
                    .chain(ff);
                paths.extend(kinds.map(|&kind| T5LinearPath::new(stack, block, kind)));
            }
        }
        paths
    }

    /// The projection at `path`.
    ///
    /// # Panics
    ///
    /// Panics if the model has no such projection (block out of range, cross-attention in the
    /// encoder, `wi` in a gated model or `wi_0`/`wi_1` in a plain one).
    pub fn linear(&self, path: T5LinearPath) -> &ProjLinear {
        select_linear!(self, path)
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
    /// Panics if the model has no such projection.
    pub fn set_linear(
        &mut self,
        path: T5LinearPath,
        linear: ProjLinear,
    ) -> Result<ProjLinear, ModelError> {
        linear::set_linear(self, path, linear)
    }

    /// Over-parameterizes the projections at `paths` (OPF, spec §2.3): each dense `(out, in)`
    /// weight becomes MPO cores of `preset`'s shape for its dims. All shapes are checked before
    /// anything changes; already factored paths are left as they are. Returns one
    /// [`MpoReplacement`] per newly factored path.
    ///
    /// # Errors
    ///
    /// [`ModelError::Mpo`] if the preset has no shape for a projection's dims.
    ///
    /// # Panics
    ///
    /// Panics if the model has no projection at one of the paths.
    pub fn over_parameterize(
        &mut self,
        paths: &[T5LinearPath],
        preset: &mpo_core::Preset,
        training: crate::CoreTraining,
    ) -> Result<Vec<MpoReplacement<T5LinearPath>>, ModelError> {
        linear::over_parameterize(self, paths, preset, training)
    }

    /// Contracts every MPO projection back into a dense one (spec §2.5): the result has the
    /// original architecture and parameter count.
    pub fn merge_mpo(&mut self) {
        linear::merge_mpo(self);
    }

    /// Paths of the MPO-factored projections.
    pub fn mpo_paths(&self) -> Vec<T5LinearPath> {
        linear::mpo_paths(self)
    }

    // --------------------------------------------------------------------------------------------
    // Checkpoints
    // --------------------------------------------------------------------------------------------

    /// Loads a Hugging Face checkpoint.
    ///
    /// `path` is a directory holding `model.safetensors` (and `config.json` unless `config` is
    /// given) or a `.safetensors` file (its directory's `config.json` is read unless `config` is
    /// given). The LM head is untied when the config says `tie_word_embeddings: false` or the
    /// checkpoint's `lm_head.weight` differs from `shared.weight` (as transformers 5 decides);
    /// an `lm_head.weight` equal to it, `encoder.embed_tokens.weight` and
    /// `decoder.embed_tokens.weight` (ties) and the cross-attention bias table that
    /// transformers ignores are reported unused. `f16`, `bf16` and `f64` tensors are converted to
    /// `f32`.
    ///
    /// # Errors
    ///
    /// I/O and parse errors name the file; a missing, unexpected, wrongly shaped or non-float
    /// tensor is an error naming the tensor.
    pub fn load(
        path: impl AsRef<Path>,
        config: Option<&T5Config>,
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
            None => T5Config::from_file(dir.join(CONFIG_FILE))?,
        };
        config.validate()?;
        let checkpoint = Checkpoint::open(&weights)?;
        let mut model = Self::new(&config, device);
        let report = model.load_checkpoint(&checkpoint, device)?;
        Ok((model, report))
    }

    /// Loads a training checkpoint written by burn's `save_file` (a run's `checkpoint/best.bpk`)
    /// into `module`, a freshly built dense module that holds a T5 which `t5` finds (the T5
    /// itself, or a fine-tuning wrapper around it): every projection stored as MPO cores is first
    /// rebuilt as an [`MpoLinear`](crate::MpoLinear) of the stored core shapes, so
    /// over-parameterized runs load as they were trained.
    ///
    /// # Errors
    ///
    /// [`ModelError::Record`] if the file is unreadable or does not fit the module (another
    /// config, a checkpoint of another architecture).
    pub fn load_record_into<M: Module>(
        path: impl AsRef<Path>,
        module: M,
        t5: impl Fn(&mut M) -> &mut Self,
        device: &Device,
    ) -> Result<M, ModelError> {
        linear::load_record_into(path.as_ref(), module, t5, device)
    }

    /// Gives every dense projection of the T5 inside `module` (found by `t5`) that the burn record
    /// at `path` (a training checkpoint) stores as MPO cores an MPO layer of the stored core
    /// shapes, with zero cores, so that the record loads into `module`: a run whose selection
    /// rounds over-parameterized matrices during training resumes from a dense model.
    ///
    /// # Errors
    ///
    /// [`ModelError::Record`] if the file is unreadable or a stored core shape is invalid.
    pub fn with_record_layout<M: Module>(
        module: M,
        path: impl AsRef<Path>,
        t5: impl Fn(&mut M) -> &mut Self,
        device: &Device,
    ) -> Result<M, ModelError> {
        linear::with_record_layout(module, path.as_ref(), t5, device)
    }

    /// Every tensor in the Hugging Face `T5ForConditionalGeneration` layout, as
    /// `save_pretrained` writes it: `(out, in)` projection weights, `f32` data, in
    /// `named_parameters()` order, without the `embed_tokens` ties and with `lm_head.weight`
    /// only when untied.
    pub fn hf_tensors(&self) -> Vec<(String, TensorData)> {
        // The layout table hands out `&mut`; a clone shares the tensors, so this copies nothing.
        let mut model = self.clone();
        model
            .hf_modules_mut()
            .into_iter()
            .map(|(name, module)| (format!("{name}.weight"), module.data()))
            .collect()
    }

    /// Writes [`hf_tensors`](Self::hf_tensors) to a safetensors file.
    pub fn save_safetensors(&self, path: impl AsRef<Path>) -> Result<(), ModelError> {
        write_safetensors(path.as_ref(), &self.hf_tensors())
    }

    /// Writes `model.safetensors` and `config.json` (with
    /// `architectures: ["T5ForConditionalGeneration"]`, and `tie_word_embeddings: false` when the
    /// head is untied) into `dir`, creating it, so that [`load`](Self::load) and `transformers`'
    /// `from_pretrained` read the model back.
    pub fn save_pretrained(&self, dir: impl AsRef<Path>) -> Result<(), ModelError> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|source| ModelError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let mut config = self.config.clone();
        if self.lm_head.is_some() {
            // transformers 5 keeps a head that differs from `shared` untied; it reads
            // `tie_word_embeddings: false` as "no scaling" unless `scale_decoder_outputs` says.
            config.tie_word_embeddings = false;
            config.scale_decoder_outputs = Some(self.config.scales_decoder_outputs());
        }
        config.extra.insert(
            "architectures".to_string(),
            serde_json::json!(["T5ForConditionalGeneration"]),
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
/// The shared embedding.
const SHARED: &str = "shared";
/// The untied LM head.
const LM_HEAD: &str = "lm_head";
/// Checkpoint tensors no module uses that are safe to ignore: the stacks' views of the shared
/// embedding, and the bias table transformers ignores (`_keys_to_ignore_on_load_unexpected`,
/// modeling_t5.py:901).
const IGNORABLE: [&str; 3] = [
    "encoder.embed_tokens.weight",
    "decoder.embed_tokens.weight",
    "decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight",
];

/// A module owning one checkpoint tensor, `{name}.weight`.
enum HfTensor<'a> {
    Proj(&'a mut ProjLinear),
    Embedding(&'a mut Embedding),
    Norm(&'a mut T5LayerNorm),
    Head(&'a mut Linear),
}

impl HfTensor<'_> {
    /// The Hugging Face shape: `(out, in)` for projections and the head.
    fn shape(&self) -> Vec<usize> {
        match self {
            HfTensor::Proj(p) => vec![p.d_output(), p.d_input()],
            HfTensor::Embedding(e) => e.weight.lazy_shape().to_vec(),
            HfTensor::Norm(n) => n.weight.lazy_shape().to_vec(),
            HfTensor::Head(h) => {
                let [d_in, d_out] = h.weight.lazy_shape().dims();
                vec![d_out, d_in]
            }
        }
    }

    /// Replaces the tensor by checkpoint data of [`shape`](Self::shape).
    fn assign(self, data: TensorData, device: &Device) {
        match self {
            HfTensor::Proj(p) => *p = ProjLinear::from_hf(Tensor::from_data(data, device), None),
            HfTensor::Embedding(e) => {
                e.weight = Param::from_tensor(Tensor::from_data(data, device))
            }
            HfTensor::Norm(n) => n.weight = Param::from_tensor(Tensor::from_data(data, device)),
            HfTensor::Head(h) => *h = dense_from_hf(Tensor::from_data(data, device), None),
        }
    }

    /// The tensor as `f32` data in Hugging Face orientation.
    fn data(&self) -> TensorData {
        match self {
            HfTensor::Proj(p) => p.weight_out_in().into_data(),
            HfTensor::Embedding(e) => e.weight.val().into_data(),
            HfTensor::Norm(n) => n.weight.val().into_data(),
            HfTensor::Head(h) => h.weight.val().transpose().into_data(),
        }
        .convert::<f32>()
    }
}

/// The layout rows of an attention sub-layer at `layer` (`{stack}.block.{i}.layer.{j}`), whose
/// attention module is called `module`.
fn attention_rows<'a>(
    layer: &str,
    module: &str,
    sub_layer: &'a mut T5LayerAttention,
    rows: &mut Vec<(String, HfTensor<'a>)>,
) {
    let T5Attention {
        q,
        k,
        v,
        o,
        relative_attention_bias,
        ..
    } = &mut sub_layer.attention;
    let name = |p: &str| format!("{layer}.{module}.{p}");
    rows.extend([
        (name("q"), HfTensor::Proj(q)),
        (name("k"), HfTensor::Proj(k)),
        (name("v"), HfTensor::Proj(v)),
        (name("o"), HfTensor::Proj(o)),
    ]);
    if let Some(table) = relative_attention_bias {
        rows.push((name("relative_attention_bias"), HfTensor::Embedding(table)));
    }
    rows.push((
        format!("{layer}.layer_norm"),
        HfTensor::Norm(&mut sub_layer.layer_norm),
    ));
}

impl T5Stack {
    /// The stack's rows of the layout table, in `named_parameters()` order (modeling_t5.py:644).
    fn hf_tensors_mut(&mut self, stack: T5StackKind) -> Vec<(String, HfTensor<'_>)> {
        let mut rows = Vec::new();
        let prefix = stack.name();
        for (i, block) in self.blocks.iter_mut().enumerate() {
            let T5Block {
                self_attention,
                cross_attention,
                ff,
            } = block;
            let layer = |l: usize| format!("{prefix}.block.{i}.layer.{l}");
            attention_rows(&layer(0), "SelfAttention", self_attention, &mut rows);
            if let Some(cross) = cross_attention {
                attention_rows(&layer(1), "EncDecAttention", cross, &mut rows);
            }
            let ff_layer = match stack {
                T5StackKind::Encoder => "layer.1",
                T5StackKind::Decoder => "layer.2",
            };
            let name = |p: &str| format!("{prefix}.block.{i}.{ff_layer}.{p}");
            match &mut ff.dense {
                T5Dense::Act(d) => rows.extend([
                    (name("DenseReluDense.wi"), HfTensor::Proj(&mut d.wi)),
                    (name("DenseReluDense.wo"), HfTensor::Proj(&mut d.wo)),
                ]),
                T5Dense::GatedAct(d) => rows.extend([
                    (name("DenseReluDense.wi_0"), HfTensor::Proj(&mut d.wi_0)),
                    (name("DenseReluDense.wi_1"), HfTensor::Proj(&mut d.wi_1)),
                    (name("DenseReluDense.wo"), HfTensor::Proj(&mut d.wo)),
                ]),
            }
            rows.push((name("layer_norm"), HfTensor::Norm(&mut ff.layer_norm)));
        }
        rows.push((
            format!("{prefix}.final_layer_norm"),
            HfTensor::Norm(&mut self.final_layer_norm),
        ));
        rows
    }
}

impl T5ForConditionalGeneration {
    /// The layout table of the whole model, in `named_parameters()` order.
    fn hf_modules_mut(&mut self) -> Vec<(String, HfTensor<'_>)> {
        let mut rows = vec![(SHARED.to_string(), HfTensor::Embedding(&mut self.shared))];
        rows.extend(self.encoder.hf_tensors_mut(T5StackKind::Encoder));
        rows.extend(self.decoder.hf_tensors_mut(T5StackKind::Decoder));
        if let Some(head) = &mut self.lm_head {
            rows.push((LM_HEAD.to_string(), HfTensor::Head(head)));
        }
        rows
    }

    /// Copies every tensor of `checkpoint` into the model (see [`load`](Self::load)).
    fn load_checkpoint(
        &mut self,
        checkpoint: &Checkpoint,
        device: &Device,
    ) -> Result<LoadReport, ModelError> {
        let mut report = LoadReport {
            path: checkpoint.path().to_path_buf(),
            ..LoadReport::default()
        };
        let head_key = format!("{LM_HEAD}.weight");
        let untied = !self.config.tie_word_embeddings
            || (checkpoint.shape(&head_key).is_some()
                && checkpoint.read_f32(&head_key)?.0
                    != checkpoint.read_f32(&format!("{SHARED}.weight"))?.0);
        if untied && self.lm_head.is_none() {
            self.lm_head = Some(Linear {
                weight: Initializer::Zeros
                    .init([self.config.d_model, self.config.vocab_size], device),
                bias: None,
            });
        }
        if !untied {
            self.lm_head = None;
        }
        for (name, tensor) in self.hf_modules_mut() {
            let key = format!("{name}.weight");
            let expected = tensor.shape();
            let found = checkpoint
                .shape(&key)
                .ok_or_else(|| ModelError::MissingTensor {
                    path: checkpoint.path().to_path_buf(),
                    name: key.clone(),
                })?;
            if found != expected.as_slice() {
                return Err(ModelError::ShapeMismatch {
                    name: key,
                    expected,
                    found: found.to_vec(),
                });
            }
            let (data, upcast) = checkpoint.read_f32(&key)?;
            if upcast {
                report.upcast.push(key.clone());
            }
            tensor.assign(data, device);
            report.loaded.push(key);
        }
        for name in checkpoint.names() {
            if report.loaded.iter().any(|l| l == name) {
                continue;
            }
            if !IGNORABLE.contains(&name) && name != head_key {
                return Err(ModelError::UnexpectedTensor {
                    path: checkpoint.path().to_path_buf(),
                    name: name.to_string(),
                });
            }
            report.unused.push(name.to_string());
        }
        Ok(report)
    }
}

impl LinearSlots for T5ForConditionalGeneration {
    type Path = T5LinearPath;

    fn slot_paths(&self) -> Vec<T5LinearPath> {
        self.linear_paths()
    }

    fn slot(&self, path: T5LinearPath) -> &ProjLinear {
        self.linear(path)
    }

    fn slot_mut(&mut self, path: T5LinearPath) -> &mut ProjLinear {
        select_linear!(self, path, mut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Tolerance;

    /// `T5Attention._relative_position_bucket` values written by `scripts/gen_t5_fixtures.py`.
    const BUCKETS: &str = include_str!("../tests/fixtures/t5-buckets.json");

    #[test]
    fn relative_position_buckets_match_transformers() {
        let fixture: serde_json::Value = serde_json::from_str(BUCKETS).unwrap();
        let positions: Vec<i64> =
            serde_json::from_value(fixture["relative_positions"].clone()).unwrap();
        let cases = fixture["cases"].as_array().unwrap();
        assert_eq!(cases.len(), 2);
        for case in cases {
            let num_buckets = case["num_buckets"].as_u64().unwrap() as usize;
            let max_distance = case["max_distance"].as_u64().unwrap() as usize;
            for (key, bidirectional) in [("bidirectional", true), ("causal", false)] {
                let expected: Vec<usize> = serde_json::from_value(case[key].clone()).unwrap();
                let got: Vec<usize> = positions
                    .iter()
                    .map(|&p| relative_position_bucket(p, bidirectional, num_buckets, max_distance))
                    .collect();
                assert_eq!(got, expected, "{key} {num_buckets}/{max_distance}");
            }
        }
    }

    #[test]
    fn shift_right_prepends_start_and_replaces_ignored_labels() {
        let device = Device::flex();
        let labels = Tensor::<2, Int>::from_data([[4, 9, 1], [7, 1, -100]], &device);
        shift_right(labels, 5, 0)
            .into_data()
            .assert_eq(&TensorData::from([[5i64, 4, 9], [5, 7, 1]]), false);
        let labels = Tensor::<2, Int>::from_data([[3, -100, -100]], &device);
        shift_right(labels, 0, 2)
            .into_data()
            .assert_eq(&TensorData::from([[0i64, 3, 2]]), false);
    }

    #[test]
    fn rms_norm_scales_without_centering() {
        let device = Device::flex();
        let mut norm = T5LayerNormConfig::new(2).with_epsilon(0.0).init(&device);
        norm.weight = Param::from_tensor(Tensor::from_data([1.0, 2.0], &device));
        // x = [3, 4]: mean square 12.5, x / √12.5 · w = [0.8485281, 2.2627417].
        let y = norm.forward(Tensor::<2>::from_data([[3.0, 4.0], [1.0, 1.0]], &device));
        y.into_data().assert_approx_eq::<f32>(
            &TensorData::from([[0.848_528_1f32, 2.262_741_7], [1.0, 2.0]]),
            Tolerance::absolute(1e-6),
        );
    }

    #[test]
    fn causal_mask_hides_the_future() {
        let m = f32::MIN;
        causal_mask(3, &Device::flex()).into_data().assert_eq(
            &TensorData::from([[[[0.0f32, m, m], [0.0, 0.0, m], [0.0, 0.0, 0.0]]]]),
            true,
        );
    }

    #[test]
    fn config_defaults_variants_and_errors() {
        let config = T5Config::from_json_str("{}").unwrap();
        assert_eq!(config, T5Config::default());
        assert_eq!(config.num_decoder_layers(), 6);
        assert!(config.scales_decoder_outputs());
        assert_eq!(config.feed_forward().unwrap(), (false, HiddenAct::Relu));

        let v11 = T5Config::from_json_str(
            r#"{"feed_forward_proj": "gated-gelu", "tie_word_embeddings": false,
                "num_decoder_layers": 3, "architectures": ["T5ForConditionalGeneration"]}"#,
        )
        .unwrap();
        assert_eq!(v11.feed_forward().unwrap(), (true, HiddenAct::GeluTanh));
        assert_eq!(v11.num_decoder_layers(), 3);
        assert!(!v11.scales_decoder_outputs());
        let back = T5Config::from_json_str(&v11.to_json_string()).unwrap();
        assert_eq!(back, v11);

        // transformers 5 writes tied + explicit scaling flag.
        let v5 = T5Config::from_json_str(r#"{"scale_decoder_outputs": false}"#).unwrap();
        assert!(!v5.scales_decoder_outputs());

        for (json, needle) in [
            (r#"{"feed_forward_proj": "gated-silu"}"#, "gated-silu"),
            (r#"{"feed_forward_proj": "fancy-relu"}"#, "fancy-relu"),
            (r#"{"model_type": "bart"}"#, "bart"),
            (r#"{"d_kv": 0}"#, "d_kv"),
            (r#"{"relative_attention_max_distance": 4}"#, "max_distance"),
            (r#"{"eos_token_id": 40000}"#, "eos_token_id"),
        ] {
            match T5Config::from_json_str(json) {
                Err(ModelError::InvalidConfig(msg)) => assert!(msg.contains(needle), "{msg}"),
                other => panic!("{json}: expected InvalidConfig, got {other:?}"),
            }
        }
    }

    #[test]
    fn random_model_shapes_and_head() {
        let device = Device::flex();
        let config = T5Config {
            vocab_size: 50,
            d_model: 16,
            d_kv: 4,
            d_ff: 24,
            num_layers: 2,
            num_decoder_layers: Some(1),
            num_heads: 2,
            relative_attention_num_buckets: 8,
            relative_attention_max_distance: 16,
            tie_word_embeddings: false,
            ..T5Config::default()
        };
        let model = T5ForConditionalGeneration::new(&config, &device);
        assert!(model.lm_head.is_some());
        assert_eq!(model.linear_paths().len(), 2 * 6 + 10);
        let ids = Tensor::<2, Int>::from_data([[3, 4, 1], [5, 1, 0]], &device);
        let mask = Tensor::<2, Int>::from_data([[1, 1, 1], [1, 1, 0]], &device);
        let logits = model.forward(ids, mask, Tensor::zeros([2, 4], &device));
        assert_eq!(logits.dims(), [2, 4, 50]);
        let names: Vec<String> = model.hf_tensors().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names[0], "shared.weight");
        assert_eq!(names.last().unwrap(), "lm_head.weight");
        assert!(names.contains(&"decoder.block.0.layer.2.layer_norm.weight".to_string()));
    }
}
