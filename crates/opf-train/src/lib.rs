//! Fine-tuning for opf: the training loop, HF-exact AdamW with parameter groups, the linear
//! warmup/decay schedule, global-norm clipping, checkpoints and reports, the OPF selection
//! rounds, ChildTuning-D gradient masking, and mixed precision (`TrainArgs::precision`, with
//! [`GradScaler`] loss scaling for f16). BERT and BART train as sequence classifiers, T5 text to
//! text ([`t5`]).
#![warn(missing_docs)]

pub mod amp;
pub mod child_tuning;
mod error;
pub mod optim;
mod plot;
pub mod schedule;
pub mod select;
pub mod t5;
mod trainer;

pub use amp::GradScaler;
pub use error::TrainError;
pub use trainer::{
    EvalLog, NoRounds, NonFiniteLoss, Observer, RandomStreams, RoundHook, RunDir,
    SequenceClassifier, Silent, StepLog, TaskModel, TrainArgs, TrainData, TrainOutcome,
    TrainerState, batch_tensors, forward_backward, forward_backward_scaled, optimizer_step,
    predict, task_loss, train, train_step, train_with_rounds, write_reports,
};
