//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while configuring, loading or saving a model.
///
/// Variants carry the data needed to act on them: the checkpoint tensor name, the expected and
/// found shapes, the file path. Misuse of an already built model (a tensor of the wrong rank passed
/// to `forward`) panics instead, as burn's layers do.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// Reading or writing a file failed.
    #[error("i/o error on {}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A `config.json` is not valid JSON or does not describe a model of the expected type.
    #[error("cannot parse model config {}: {source}", path.display())]
    ConfigParse {
        /// The config file (empty when parsed from a string).
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },

    /// A burn record file (a training checkpoint) is unreadable or does not fit the model.
    #[error("cannot load checkpoint {}: {message}", path.display())]
    Record {
        /// The record file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// An MPO shape does not fit a projection, or the decomposition failed.
    #[error("MPO decomposition: {0}")]
    Mpo(#[from] mpo_core::MpoError),

    /// The backend cannot compute in the requested mixed precision.
    #[error(
        "{precision} mixed precision is not supported by the backend of device {device} (burn reports no {precision} arithmetic there); use f32 or another backend"
    )]
    UnsupportedPrecision {
        /// The precision asked for.
        precision: crate::Precision,
        /// The device, as burn prints it.
        device: String,
    },

    /// A config parsed but its values are inconsistent or unsupported.
    #[error("invalid model config: {0}")]
    InvalidConfig(String),

    /// A safetensors file is malformed, or serialising one failed.
    #[error("safetensors error on {}: {source}", path.display())]
    Safetensors {
        /// The safetensors file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: safetensors::SafeTensorError,
    },

    /// The checkpoint lacks a tensor the model needs.
    #[error("checkpoint {} has no tensor `{name}`", path.display())]
    MissingTensor {
        /// The checkpoint file.
        path: PathBuf,
        /// The Hugging Face name the model looked for.
        name: String,
    },

    /// The checkpoint holds a tensor that no part of the model uses and that is not known to be
    /// safe to ignore.
    #[error("checkpoint {} has unexpected tensor `{name}`", path.display())]
    UnexpectedTensor {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor's name in the checkpoint.
        name: String,
    },

    /// A checkpoint tensor has a different shape from the model's parameter.
    #[error("tensor `{name}` has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// The tensor's name in the checkpoint (or the projection path for a replacement).
        name: String,
        /// The shape the model needs (Hugging Face orientation).
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },

    /// A checkpoint tensor's element type cannot be converted to `f32`.
    #[error("tensor `{name}` has unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// The tensor's name in the checkpoint.
        name: String,
        /// The safetensors dtype, as text.
        dtype: String,
    },

    /// A checkpoint holds two copies of a tensor that the model ties (BART's
    /// `encoder.embed_tokens` and `shared`), and they differ.
    #[error("tensor `{name}` differs from `{tied_to}`, which the model ties it to")]
    UntiedTensor {
        /// The copy's name in the checkpoint.
        name: String,
        /// The loaded tensor it should equal.
        tied_to: String,
    },

    /// A batch for BART sequence classification whose rows hold different numbers of `<eos>`
    /// tokens, or none (`BartForSequenceClassification` reads the decoder state at the last one).
    #[error("every row needs the same positive number of <eos> tokens, found {counts:?}")]
    EosTokens {
        /// The count per row.
        counts: Vec<usize>,
    },

    /// A string does not name a projection (see [`crate::LinearPath`], [`crate::BartLinearPath`]).
    #[error("cannot parse linear path `{0}`")]
    ParseLinearPath(String),
}
