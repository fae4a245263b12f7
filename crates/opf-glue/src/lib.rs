//! GLUE for opf: task definitions, TSV readers, tokenization, dynamic-padding batches, GLUE
//! metrics, submission files and the text-to-text form of the tasks for T5. Framework-free (no burn): batches are flat row-major `i64`
//! vectors ready for any tensor library.
//!
//! Everything follows Hugging Face transformers 4.x:
//! `transformers/data/processors/glue.py` (the per-task `*Processor` classes, `glue_processors`,
//! `glue_tasks_num_labels`, `glue_output_modes`), `transformers/data/metrics/__init__.py`
//! (`glue_compute_metrics`) and `examples/text-classification/run_glue.py` (test prediction
//! files).
//!
//! Typical use:
//!
//! ```no_run
//! use std::path::Path;
//! use opf_glue::{Batches, GlueTokenizer, Order, Split, Task, load_examples, resolve_data_dir};
//!
//! # fn main() -> Result<(), opf_glue::GlueError> {
//! let task: Task = "mrpc".parse()?;
//! let glue = resolve_data_dir(None, std::env::var_os("GLUE_DIR").as_deref())?;
//! let train = load_examples(&glue, task, Split::Train)?;
//! let tok = GlueTokenizer::from_file(Path::new("tokenizer.json"), 128)?;
//! let features = tok.encode(&train)?;
//! for batch in Batches::new(&features, 32, tok.pad_id(), Order::Shuffled { seed: 42, epoch: 0 })? {
//!     assert_eq!(batch.input_ids.len(), batch.batch_size * batch.seq_len);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The library performs I/O only in [`read_examples`], [`load_examples`],
//! [`resolve_data_dir`] (a directory check) and [`GlueTokenizer::from_file`]; it never prints.

#![warn(missing_docs)]

mod batch;
mod data;
mod error;
mod metrics;
mod submission;
mod task;
mod text_to_text;
mod tokenize;

pub use batch::{Batch, BatchLabels, Batches, Order};
pub use data::{
    DEFAULT_DATA_DIR, Example, Label, load_examples, parse_examples, read_examples,
    resolve_data_dir,
};
pub use error::GlueError;
pub use metrics::{
    Predictions, accuracy, compute_metrics, f1_binary, matthews_corrcoef, pearson, spearman,
};
pub use submission::{Submission, format_submission};
pub use task::{Metric, Split, Task};
pub use text_to_text::{
    LABEL_PAD_ID, T5Text, round_stsb_target, t5_class, t5_predictions, t5_prefix, t5_score,
    t5_source, t5_target,
};
pub use tokenize::{Features, GlueTokenizer};
