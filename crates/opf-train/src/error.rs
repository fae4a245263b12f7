use std::path::PathBuf;

/// Errors of the training loop.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The training set is empty.
    #[error("the training set is empty")]
    EmptyTrainSet,
    /// A training batch has no labels (test split used for training?).
    #[error("training batch without labels")]
    MissingLabels,
    /// Invalid hyper-parameters.
    #[error("invalid training arguments: {0}")]
    InvalidArgs(String),
    /// The loss became NaN or infinite; the last good checkpoint is kept.
    #[error(
        "loss is {loss} at step {step}: training stopped; {} (lower the learning rate or check the data)",
        kept_checkpoint(*.last_checkpoint)
    )]
    NonFiniteLoss {
        /// The optimizer step whose loss was non-finite, 1-based like the step logs (the step
        /// that would have made `global_step` equal to this).
        step: usize,
        /// The loss value.
        loss: f64,
        /// Step of the last checkpoint this run wrote or resumed from (`None`: there is none).
        last_checkpoint: Option<usize>,
    },
    /// The weights became NaN or infinite (found before writing a checkpoint, which is then
    /// not written); the last good checkpoint is kept.
    #[error(
        "weights are not finite after step {step}: training stopped; {} (lower the learning rate or weight decay)",
        kept_checkpoint(*.last_checkpoint)
    )]
    NonFiniteWeights {
        /// The optimizer step (1-based) whose update made them non-finite or after which it was
        /// noticed.
        step: usize,
        /// Step of the last checkpoint this run wrote or resumed from (`None`: there is none).
        last_checkpoint: Option<usize>,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Data, batching or metric error.
    #[error(transparent)]
    Glue(#[from] opf_glue::GlueError),
    /// Changing the model (over-parameterizing) failed.
    #[error(transparent)]
    Model(#[from] opf_models::ModelError),
    /// Scoring or selecting matrices failed.
    #[error(transparent)]
    Select(#[from] opf_select::SelectError),
    /// A gated-activation T5 (v1.1) was given for text-to-text fine-tuning.
    #[error(
        "gated-activation T5 (v1.1: wi_0, wi_1) is not supported: OPF addresses one FFN_1 matrix per \
         layer; use a T5 v1.0 checkpoint (feed_forward_proj \"relu\", e.g. t5-base)"
    )]
    GatedT5,
    /// Saving or loading a checkpoint failed.
    #[error("checkpoint: {0}")]
    Checkpoint(String),
}

fn kept_checkpoint(step: Option<usize>) -> String {
    match step {
        Some(step) => {
            format!("the last good checkpoint (step {step}) is kept in the output directory")
        }
        None => "no checkpoint was written yet".to_string(),
    }
}
