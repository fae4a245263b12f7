//! The crate's single error type.

use std::path::PathBuf;

use crate::task::{Split, Task};

/// Every failure this crate reports. Variants carry the data needed to locate the problem
/// (file path and 1-based line number for malformed TSV rows).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GlueError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file that was being read.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A TSV file is not valid UTF-8 (Python's `open(encoding="utf-8-sig")` would also fail).
    #[error("{path}:{line}: invalid UTF-8")]
    InvalidUtf8 {
        /// The TSV file.
        path: PathBuf,
        /// 1-based line number of the first invalid byte.
        line: usize,
    },
    /// A TSV row has the wrong number of tab-separated columns.
    #[error("{path}:{line}: expected {expected} columns, found {found}")]
    ColumnCount {
        /// The TSV file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Columns the layout requires (the header's count, or the fixed count of a header-less file).
        expected: usize,
        /// Columns found on this row.
        found: usize,
    },
    /// A classification label is not one of the task's labels.
    #[error("{path}:{line}: unknown {task} label {label:?} (valid: {valid})")]
    UnknownLabel {
        /// The TSV file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The task being read.
        task: Task,
        /// The label string found.
        label: String,
        /// The task's labels, comma-separated.
        valid: String,
    },
    /// An STS-B similarity score is not a finite number.
    #[error("{path}:{line}: score {value:?} is not a finite number")]
    BadScore {
        /// The TSV file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// The text found in the score column.
        value: String,
    },
    /// A task name was not recognised.
    #[error("unknown GLUE task {name:?} (valid: {valid})")]
    UnknownTask {
        /// The name given.
        name: String,
        /// The accepted names, comma-separated.
        valid: String,
    },
    /// A split name was not recognised.
    #[error("unknown split {name:?} (valid: train, dev, dev_mismatched, test, test_mismatched)")]
    UnknownSplit {
        /// The name given.
        name: String,
    },
    /// The split does not exist for the task (the mismatched splits are MNLI-only), or the
    /// operation needs a different split (submission files need a test split).
    #[error("split {split} is not valid for {task} here")]
    UnsupportedSplit {
        /// The task.
        task: Task,
        /// The split requested.
        split: Split,
    },
    /// No GLUE data directory was found; `tried` lists each candidate and why it was rejected.
    #[error("no GLUE data directory found; tried: {tried}")]
    DataDirNotFound {
        /// Candidates in resolution order, with the reason each was rejected.
        tried: String,
    },
    /// An error from the `tokenizers` crate (loading `tokenizer.json` or encoding).
    #[error("tokenizer error ({context}): {source}")]
    Tokenizer {
        /// What was being done (for loading, the file path).
        context: String,
        /// The underlying error.
        #[source]
        source: tokenizers::Error,
    },
    /// The tokenizer has no padding configuration and no `[PAD]` or `<pad>` token; pass an
    /// explicit pad id.
    #[error(
        "tokenizer has no pad token (no padding config and no [PAD] or <pad> in its vocabulary)"
    )]
    NoPadToken,
    /// `max_seq_length` cannot even hold the special tokens the post-processor adds.
    #[error("max_seq_length {max_seq_length} is shorter than the {special_tokens} special tokens")]
    MaxSeqLengthTooShort {
        /// The requested maximum length.
        max_seq_length: usize,
        /// Special tokens added per example (3 for a BERT pair).
        special_tokens: usize,
    },
    /// Two sequences that must have equal length do not.
    #[error("length mismatch: {what}: {left} vs {right}")]
    LengthMismatch {
        /// What was compared.
        what: &'static str,
        /// Length of the first sequence.
        left: usize,
        /// Length of the second sequence.
        right: usize,
    },
    /// A metric was asked for on too few examples.
    #[error("{metric} needs at least {needed} examples, got {found}")]
    TooFewExamples {
        /// The metric.
        metric: &'static str,
        /// Minimum number of examples.
        needed: usize,
        /// Number given.
        found: usize,
    },
    /// Predictions or labels are of the wrong kind for the task (class ids for a regression task,
    /// or scores for a classification task).
    #[error("{task} needs {expected}")]
    WrongKind {
        /// The task.
        task: Task,
        /// What the task needs, e.g. "class ids" or "scores".
        expected: &'static str,
    },
    /// A class id is outside `0..num_labels`.
    #[error("class id {id} out of range for {task} ({num_labels} labels)")]
    ClassOutOfRange {
        /// The task.
        task: Task,
        /// The offending id.
        id: usize,
        /// The task's number of labels.
        num_labels: usize,
    },
    /// Features passed to the batcher mix labelled and unlabelled examples, or class ids and
    /// scores; `index` is the first feature that differs from feature 0.
    #[error("feature {index} has a different kind of label than feature 0")]
    MixedLabels {
        /// Index of the first inconsistent feature.
        index: usize,
    },
    /// A batch size of zero was requested.
    #[error("batch size must be positive")]
    ZeroBatchSize,
    /// A given visiting order is not a permutation of the features.
    #[error("batch order is not a permutation of the {features} features: {problem}")]
    NotAPermutation {
        /// Number of features.
        features: usize,
        /// What is wrong (length, an index out of range or repeated).
        problem: String,
    },
}
