//! The fine-tuning loop: shuffled dynamic-padding batches, forward/backward, global-norm clipping,
//! HF-exact AdamW with a linear schedule, evaluation every N steps and per epoch, best-model
//! selection, resumable checkpoints, NaN detection, `metrics.json` and a loss/metric SVG.
//!
//! Follows the HF 4.0 `Trainer.train` loop that OPF patches (`bert/trainer_bert.py:859-1080`).
//!
//! The loop is generic over [`TaskModel`]: a loss for a labelled batch and host predictions.
//! Sequence classifiers (BERT, BART; [`SequenceClassifier`]) get it from their logits; T5 is
//! fine-tuned text to text ([`crate::t5::T5TextToText`]).

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor, TensorData};
use opf_glue::{Batch, BatchLabels, Batches, Features, Label, Order, Predictions, Split, Task};
use opf_models::Precision;
use opf_models::rng::{self, TorchGenerator};
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::amp::GradScaler;
use crate::optim::{AdamWParams, AdamWRule, build_optimizer, clip_grad_norm, params_finite};
use crate::plot::{Series, svg};
use crate::schedule::LinearSchedule;

/// A model the trainer fine-tunes on a GLUE task: the training loss of a labelled batch and
/// predictions for any batch. Batches are `(input_ids, token_type_ids, attention_mask)` as
/// [`batch_tensors`] makes them.
pub trait TaskModel: Module + Clone + core::fmt::Debug {
    /// The loss of a labelled batch, with dropout when the model is on an autodiff device in
    /// training mode.
    fn loss(&self, inputs: [Tensor<2, Int>; 3], labels: &BatchLabels, device: &Device)
    -> Tensor<1>;

    /// The predictions of `task` for a batch and, when `labels` are given, its mean loss.
    fn predict_batch(
        &self,
        task: Task,
        inputs: [Tensor<2, Int>; 3],
        labels: Option<&BatchLabels>,
        device: &Device,
    ) -> Result<(Predictions, Option<f64>), TrainError>;

    /// This model with the MPO layout of the burn record at `path` (projections stored as MPO
    /// cores become zero MPO layers of the stored shapes), so a checkpoint written after
    /// selection rounds loads into the dense model a resumed run starts from.
    fn adopt_record_layout(self, path: &Path, device: &Device) -> Result<Self, TrainError>;
}

/// A sequence classifier: maps a batch to logits `[batch, num_labels]`. Its [`TaskModel`] loss
/// is [`task_loss`] of the logits and its predictions [`Predictions::from_logits`].
pub trait SequenceClassifier: Module + Clone + core::fmt::Debug {
    /// Logits `[batch, num_labels]` (one column for regression).
    fn logits(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
    ) -> Tensor<2>;

    /// This model with the MPO layout of the burn record at `path` (projections stored as MPO
    /// cores become zero MPO layers of the stored shapes), so a checkpoint written after
    /// selection rounds loads into the dense model a resumed run starts from.
    fn adopt_record_layout(self, path: &Path, device: &Device) -> Result<Self, TrainError>;
}

impl<M: SequenceClassifier> TaskModel for M {
    fn loss(
        &self,
        [ids, types, mask]: [Tensor<2, Int>; 3],
        labels: &BatchLabels,
        device: &Device,
    ) -> Tensor<1> {
        task_loss(self.logits(ids, types, mask), labels, device)
    }

    fn predict_batch(
        &self,
        task: Task,
        [ids, types, mask]: [Tensor<2, Int>; 3],
        labels: Option<&BatchLabels>,
        device: &Device,
    ) -> Result<(Predictions, Option<f64>), TrainError> {
        let logits = self.logits(ids, types, mask);
        let loss =
            labels.map(|labels| task_loss(logits.clone(), labels, device).into_scalar::<f64>());
        let data = logits.into_data().convert::<f32>();
        let preds = Predictions::from_logits(task, data.as_slice::<f32>().expect("f32 logits"))?;
        Ok((preds, loss))
    }

    fn adopt_record_layout(self, path: &Path, device: &Device) -> Result<Self, TrainError> {
        SequenceClassifier::adopt_record_layout(self, path, device)
    }
}

impl SequenceClassifier for opf_models::BertForSequenceClassification {
    fn logits(
        &self,
        input_ids: Tensor<2, Int>,
        token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
    ) -> Tensor<2> {
        self.forward(input_ids, token_type_ids, attention_mask)
    }

    fn adopt_record_layout(self, path: &Path, device: &Device) -> Result<Self, TrainError> {
        Ok(opf_models::BertForSequenceClassification::with_record_layout(self, path, device)?)
    }
}

/// BART has no token types: `token_type_ids` is ignored. The logits come from the decoder state
/// at each row's last `<eos>` (spec §5.7).
///
/// # Panics
///
/// Panics if the rows of a batch hold different numbers of `<eos>` tokens, or none (Hugging Face
/// raises an error there too); a BART tokenizer ends every sequence with one.
impl SequenceClassifier for opf_models::BartForSequenceClassification {
    fn logits(
        &self,
        input_ids: Tensor<2, Int>,
        _token_type_ids: Tensor<2, Int>,
        attention_mask: Tensor<2, Int>,
    ) -> Tensor<2> {
        self.forward(input_ids, attention_mask)
            .unwrap_or_else(|err| panic!("BART classification: {err}"))
    }

    fn adopt_record_layout(self, path: &Path, device: &Device) -> Result<Self, TrainError> {
        Ok(opf_models::BartForSequenceClassification::with_record_layout(self, path, device)?)
    }
}

/// Hyper-parameters of one run (run_glue names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainArgs {
    /// Peak learning rate.
    pub learning_rate: f64,
    /// Learning rate of MPO cores (`None` = `learning_rate`).
    pub mpo_lr: Option<f64>,
    /// Epochs.
    pub num_train_epochs: usize,
    /// Training batch size.
    pub per_device_train_batch_size: usize,
    /// Evaluation batch size.
    pub per_device_eval_batch_size: usize,
    /// Warmup steps (0 = use `warmup_ratio`).
    pub warmup_steps: usize,
    /// Warmup as a fraction of the total steps.
    pub warmup_ratio: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// The AdamW rule: OPF's `adamw_hf` or `adamw_torch` (`torch.optim.AdamW`, as `hf_mrpc.py`).
    #[serde(default)]
    pub optim: AdamWRule,
    /// Seed for shuffling, dropout and head initialisation.
    pub seed: u64,
    /// Whose random streams the seed drives: burn's, or PyTorch's (the same head, data order and
    /// dropout masks as a PyTorch script seeded alike; see [`RandomStreams::Torch`]).
    #[serde(default)]
    pub rng: RandomStreams,
    /// Evaluate every N optimizer steps (0 = only at epoch ends).
    pub eval_steps: usize,
    /// Log the running loss every N steps.
    pub logging_steps: usize,
    /// Write a resumable checkpoint every N steps (0 = only at epoch ends).
    pub save_steps: usize,
    /// Mixed precision of the training and evaluation forward passes (`--bf16` / `--fp16`):
    /// the matrix products in half under an [`opf_models::Autocast`] guard, parameters and
    /// optimizer state in f32; f16 adds dynamic loss scaling ([`GradScaler`]). The selection and
    /// ChildTuning scoring passes of the rounds stay in f32.
    #[serde(default)]
    pub precision: Precision,
}

impl Default for TrainArgs {
    fn default() -> Self {
        Self {
            learning_rate: 2e-5,
            mpo_lr: None,
            num_train_epochs: 3,
            per_device_train_batch_size: 32,
            per_device_eval_batch_size: 64,
            warmup_steps: 0,
            warmup_ratio: 0.1,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            optim: AdamWRule::Hf,
            seed: 42,
            rng: RandomStreams::Burn,
            eval_steps: 0,
            logging_steps: 10,
            save_steps: 0,
            precision: Precision::F32,
        }
    }
}

/// Where the randomness of a run comes from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RandomStreams {
    /// burn's backend generator, reseeded from (seed, step) before every step; shuffles from
    /// (seed, epoch).
    #[default]
    Burn,
    /// PyTorch's CPU generator ([`opf_models::rng`]), as `hf_mrpc.py`: dropout masks from the
    /// thread's default [`TorchGenerator`] (the one installed by the caller, which drew the
    /// fresh head from it, else a fresh `torch.manual_seed(seed)`), the epoch order from
    /// `torch.randperm(n, torch.Generator().manual_seed(seed))`, one permutation per epoch. The
    /// generator's state is part of every checkpoint. The masks are drawn on the host and
    /// uploaded, so this is for host devices (`opf glue` uses [`RandomStreams::Burn`] on
    /// accelerators, where PyTorch too draws from the device's own generator).
    Torch,
}

impl std::fmt::Display for RandomStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Burn => "burn",
            Self::Torch => "torch",
        })
    }
}

impl std::str::FromStr for RandomStreams {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "burn" => Ok(Self::Burn),
            "torch" => Ok(Self::Torch),
            other => Err(format!("unknown random streams {other:?} (burn, torch)")),
        }
    }
}

/// The order of `epoch` (0-based) under [`RandomStreams::Torch`]: the `epoch + 1`-th
/// `torch.randperm(n)` of a generator seeded `seed`.
fn torch_epoch_order(seed: u64, n: usize, epoch: usize) -> Vec<usize> {
    let mut g = TorchGenerator::new(seed);
    for _ in 0..epoch {
        g.randperm(n);
    }
    g.randperm(n)
}

/// A logged training step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    /// Optimizer steps done.
    pub step: usize,
    /// Epoch (fractional).
    pub epoch: f64,
    /// Mean loss over the steps since the last log.
    pub loss: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Gradient norm before clipping of the last step taken (f16 steps skipped for non-finite
    /// gradients are not).
    pub grad_norm: f64,
    /// Training examples per second since the last log.
    pub examples_per_second: f64,
    /// Training examples since the last log.
    #[serde(default)]
    pub examples: usize,
    /// Padded tokens (batch size × padded length, summed over batches) since the last log.
    #[serde(default)]
    pub padded_tokens: usize,
}

/// One evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalLog {
    /// Optimizer steps done.
    pub step: usize,
    /// Epoch (fractional).
    pub epoch: f64,
    /// Dev set name (`dev`, or `dev_matched` / `dev_mismatched` for MNLI).
    pub split: String,
    /// Mean dev loss.
    pub loss: f64,
    /// GLUE metrics, HF key names.
    pub metrics: std::collections::BTreeMap<String, f64>,
    /// Evaluation examples per second.
    pub examples_per_second: f64,
}

/// Everything needed to resume, plus the run history written to `metrics.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub global_step: usize,
    /// Best main-metric value so far and the step it was reached at.
    pub best: Option<(f64, usize)>,
    /// Step logs.
    pub log: Vec<StepLog>,
    /// Evaluations.
    pub evals: Vec<EvalLog>,
    /// Training wall time in seconds (summed over resumed segments).
    pub train_seconds: f64,
    /// Precision the run trains in (recorded in `metrics.json`).
    #[serde(default)]
    pub precision: Precision,
    /// f16 loss scale and skipped-step count (`None` unless training in f16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_scaler: Option<GradScaler>,
    /// PyTorch's generator after the last step ([`RandomStreams::Torch`] only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_generator: Option<TorchGenerator>,
}

/// Progress callbacks: the CLI draws bars and prints lines; the library only reports.
pub trait Observer {
    /// Training is about to run `total` steps, starting at `start`.
    fn on_start(&mut self, _total: usize, _start: usize) {}
    /// One optimizer step finished.
    fn on_step(&mut self, _step: usize, _loss: f64, _lr: f64) {}
    /// A logging interval finished.
    fn on_log(&mut self, _log: &StepLog) {}
    /// An evaluation finished.
    fn on_eval(&mut self, _eval: &EvalLog) {}
    /// A free-form message (checkpoint written, resumed, ...).
    fn on_message(&mut self, _msg: &str) {}
    /// Asked after every optimizer step, once that step's evaluation and checkpoint are done
    /// (HF's `control.should_training_stop`): `true` ends training early. [`train`] then writes the
    /// reports and returns normally, without an extra checkpoint, so a later resume continues from
    /// the last checkpoint written (`save_steps` or epoch end) with the same schedule.
    fn should_stop(&mut self, _step: usize) -> bool {
        false
    }
}

/// An observer that reports nothing.
pub struct Silent;
impl Observer for Silent {}

/// Tokenized data of one run.
pub struct TrainData {
    /// Training examples.
    pub train: Vec<Features>,
    /// Dev sets (MNLI has two); the first is used for model selection.
    pub dev: Vec<(Split, Vec<Features>)>,
    /// Padding id.
    pub pad_id: i64,
}

/// The result of [`train`].
pub struct TrainOutcome<M> {
    /// The model after the last step.
    pub last: M,
    /// The model with the best dev main metric (the last one when no evaluation ran).
    pub best: M,
    /// History.
    pub state: TrainerState,
}

/// Converts a host batch to device tensors `(input_ids, token_type_ids, attention_mask)`.
pub fn batch_tensors(batch: &Batch, device: &Device) -> [Tensor<2, Int>; 3] {
    let shape = [batch.batch_size, batch.seq_len];
    let t = |v: &[i64]| Tensor::<2, Int>::from_data(TensorData::new(v.to_vec(), shape), device);
    [
        t(&batch.input_ids),
        t(&batch.token_type_ids),
        t(&batch.attention_mask),
    ]
}

/// A loss that is NaN or infinite; the step was not taken.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NonFiniteLoss(pub f64);

/// Forward, task loss (checked finite before anything changes) and backward, as the trainer
/// runs them: the gradients of every trainable parameter and the loss.
///
/// # Errors
///
/// [`NonFiniteLoss`] when the loss is not finite.
pub fn forward_backward<M: TaskModel>(
    model: &M,
    inputs: [Tensor<2, Int>; 3],
    labels: &BatchLabels,
    device: &Device,
) -> Result<(GradientsParams, f64), NonFiniteLoss> {
    forward_backward_scaled(model, inputs, labels, None, device)
}

/// [`forward_backward`] with the loss multiplied by `loss_scale` (f16 loss scaling,
/// [`GradScaler::scale`]) before the backward pass: the gradients come out scaled, the returned
/// loss is not.
///
/// # Errors
///
/// [`NonFiniteLoss`] when the (unscaled) loss is not finite.
pub fn forward_backward_scaled<M: TaskModel>(
    model: &M,
    inputs: [Tensor<2, Int>; 3],
    labels: &BatchLabels,
    loss_scale: Option<f64>,
    device: &Device,
) -> Result<(GradientsParams, f64), NonFiniteLoss> {
    let loss = model.loss(inputs, labels, device);
    let loss_value = loss.clone().into_scalar::<f64>();
    if !loss_value.is_finite() {
        return Err(NonFiniteLoss(loss_value));
    }
    let loss = match loss_scale {
        Some(scale) => loss.mul_scalar(scale),
        None => loss,
    };
    Ok((
        GradientsParams::from_grads(loss.backward(), model),
        loss_value,
    ))
}

/// Global-norm clipping to `max_grad_norm`, then the optimizer step at `lr`; returns the model
/// and the gradient norm before clipping.
pub fn optimizer_step<M: TaskModel>(
    model: M,
    optim: &mut ModuleOptimizer,
    mut grads: GradientsParams,
    lr: f64,
    max_grad_norm: f64,
) -> (M, f64) {
    let grad_norm = clip_grad_norm(&model, &mut grads, max_grad_norm);
    (optim.step(lr, model, grads), grad_norm)
}

/// One whole optimizer step as the trainer takes it ([`forward_backward`], then
/// [`optimizer_step`]); returns the updated model, the loss and the gradient norm.
///
/// # Errors
///
/// [`NonFiniteLoss`] when the loss is not finite.
pub fn train_step<M: TaskModel>(
    model: M,
    optim: &mut ModuleOptimizer,
    batch: [Tensor<2, Int>; 3],
    labels: &BatchLabels,
    lr: f64,
    max_grad_norm: f64,
    device: &Device,
) -> Result<(M, f64, f64), NonFiniteLoss> {
    let (grads, loss) = forward_backward(&model, batch, labels, device)?;
    let (model, grad_norm) = optimizer_step(model, optim, grads, lr, max_grad_norm);
    Ok((model, loss, grad_norm))
}

/// Task loss (`BertForSequenceClassification.forward`): cross-entropy over classes, or MSE on the
/// squeezed logits for regression (`num_labels == 1`).
pub fn task_loss(logits: Tensor<2>, labels: &BatchLabels, device: &Device) -> Tensor<1> {
    match labels {
        BatchLabels::Class(ids) => {
            let targets =
                Tensor::<1, Int>::from_data(TensorData::new(ids.clone(), [ids.len()]), device);
            burn::nn::loss::CrossEntropyLossConfig::new()
                .init(device)
                .forward(logits, targets)
        }
        BatchLabels::Score(scores) => {
            let n = scores.len();
            let targets = Tensor::<1>::from_data(TensorData::new(scores.clone(), [n]), device);
            let pred = logits.reshape([n]);
            (pred - targets).square().mean()
        }
    }
}

/// Runs `model` over `examples` (no gradients) and returns predictions, in the order of
/// `examples`, and the mean loss. Batches go longest first ([`Order::LongestFirst`]): on MRPC
/// dev at 32 per batch that is 22,680 padded tokens instead of 31,616 in input order.
pub fn predict<M: TaskModel>(
    model: &M,
    task: Task,
    examples: &[Features],
    batch_size: usize,
    pad_id: i64,
    device: &Device,
) -> Result<(Predictions, Option<f64>), TrainError> {
    let model = model.valid();
    let n = examples.len();
    let mut classes: Vec<Option<usize>> = Vec::new();
    let mut scores: Vec<Option<f32>> = Vec::new();
    let mut loss_sum = 0.0;
    let mut loss_n = 0usize;
    for batch in Batches::new(examples, batch_size, pad_id, Order::LongestFirst)? {
        let inputs = batch_tensors(&batch, device);
        let (preds, loss) = model.predict_batch(task, inputs, batch.labels.as_ref(), device)?;
        if let Some(l) = loss {
            loss_sum += l * batch.batch_size as f64;
            loss_n += batch.batch_size;
        }
        match preds {
            Predictions::Class(c) => scatter(&mut classes, n, &batch.indices, c),
            Predictions::Score(s) => scatter(&mut scores, n, &batch.indices, s),
        }
    }
    let preds = match (task.is_regression(), classes.is_empty(), scores.is_empty()) {
        (true, true, _) => scores
            .into_iter()
            .collect::<Option<_>>()
            .map(Predictions::Score),
        (false, _, true) => classes
            .into_iter()
            .collect::<Option<_>>()
            .map(Predictions::Class),
        _ => None,
    };
    let Some(preds) = preds else {
        return Err(opf_glue::GlueError::WrongKind {
            task,
            expected: if task.is_regression() {
                "scores"
            } else {
                "class ids"
            },
        }
        .into());
    };
    Ok((preds, (loss_n > 0).then(|| loss_sum / loss_n as f64)))
}

/// Puts one batch's predictions at their examples' positions (`slots` grows to `n` on first use).
fn scatter<T>(slots: &mut Vec<Option<T>>, n: usize, indices: &[usize], values: Vec<T>) {
    slots.resize_with(n, || None);
    for (&i, v) in indices.iter().zip(values) {
        slots[i] = Some(v);
    }
}

/// Paths inside the output directory.
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    /// Wraps an output directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    /// The output directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
    fn checkpoint(&self) -> PathBuf {
        self.root.join("checkpoint")
    }
    /// `metrics.json`.
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.json")
    }
    /// `curves.svg`.
    pub fn curves(&self) -> PathBuf {
        self.root.join("curves.svg")
    }
    /// Whether a resumable checkpoint exists.
    pub fn has_checkpoint(&self) -> bool {
        self.checkpoint().join("trainer_state.json").exists()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn save_checkpoint<M: TaskModel>(
    dir: &RunDir,
    model: &M,
    best: &M,
    optim: &ModuleOptimizer,
    state: &TrainerState,
    rounds: Option<serde_json::Value>,
) -> Result<(), TrainError> {
    // Written into a fresh directory, then swapped in, so an interruption keeps the last good one.
    let ck = dir.checkpoint();
    let tmp = dir.root.join("checkpoint.partial");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(io_err(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(io_err(&tmp))?;
    let rec = |e: burn::store::RecordError| TrainError::Checkpoint(e.to_string());
    model.clone().save_file(tmp.join("model")).map_err(rec)?;
    best.clone().save_file(tmp.join("best")).map_err(rec)?;
    optim.save(tmp.join("optimizer")).map_err(rec)?;
    let json = serde_json::to_vec_pretty(state).expect("state serializes");
    std::fs::write(tmp.join("trainer_state.json"), json).map_err(io_err(&tmp))?;
    if let Some(rounds) = rounds {
        let json = serde_json::to_vec_pretty(&rounds).expect("JSON value serializes");
        std::fs::write(tmp.join(ROUNDS_STATE), json).map_err(io_err(&tmp))?;
    }
    if ck.exists() {
        std::fs::remove_dir_all(&ck).map_err(io_err(&ck))?;
    }
    std::fs::rename(&tmp, &ck).map_err(io_err(&ck))
}

/// The [`RoundHook::save_state`] file inside a checkpoint.
const ROUNDS_STATE: &str = "rounds.json";

/// Loads the checkpoint into `model`'s architecture, each of the model and the best model in the
/// MPO layout it was saved with; also returns the round hook's state when one was saved.
#[allow(clippy::type_complexity)]
fn load_checkpoint<M: TaskModel>(
    dir: &RunDir,
    model: M,
    optim: ModuleOptimizer,
    device: &Device,
) -> Result<
    (
        M,
        M,
        ModuleOptimizer,
        TrainerState,
        Option<serde_json::Value>,
    ),
    TrainError,
> {
    let ck = dir.checkpoint();
    let rec = |e: burn::store::RecordError| TrainError::Checkpoint(e.to_string());
    let read_json = |name: &str| -> Result<Option<Vec<u8>>, TrainError> {
        let path = ck.join(name);
        match std::fs::read(&path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    };
    let parse_err = |name: &str, e: serde_json::Error| {
        TrainError::Checkpoint(format!("{}: {e}", ck.join(name).display()))
    };
    let bytes = read_json("trainer_state.json")?.ok_or_else(|| {
        TrainError::Checkpoint(format!("{}: trainer_state.json is missing", ck.display()))
    })?;
    let state: TrainerState =
        serde_json::from_slice(&bytes).map_err(|e| parse_err("trainer_state.json", e))?;
    let rounds = read_json(ROUNDS_STATE)?
        .map(|bytes| serde_json::from_slice(&bytes).map_err(|e| parse_err(ROUNDS_STATE, e)))
        .transpose()?;
    // burn appends the record extension to these stems.
    let record = |stem: &str| ck.join(format!("{stem}.bpk"));
    let best = model
        .clone()
        .adopt_record_layout(&record("best"), device)?
        .try_load_file(ck.join("best"))
        .map_err(rec)?;
    let model = model
        .adopt_record_layout(&record("model"), device)?
        .try_load_file(ck.join("model"))
        .map_err(rec)?;
    let optim = optim.load(ck.join("optimizer")).map_err(rec)?;
    Ok((model, best, optim, state, rounds))
}

/// Fine-tunes `model` on `data` for `task`, writing checkpoints, `metrics.json` and `curves.svg`
/// under `out`. With `resume`, continues from `out/checkpoint` when present. Deterministic for a
/// fixed seed on the CPU backend: with [`RandomStreams::Burn`] the shuffling seed depends on
/// (seed, epoch) and the dropout seed on (seed, step); with [`RandomStreams::Torch`] the order on
/// (seed, epoch) and the checkpoint keeps PyTorch's generator; either way a resumed run replays
/// the same batches and masks.
#[allow(clippy::too_many_arguments)]
pub fn train<M: TaskModel>(
    model: M,
    task: Task,
    data: &TrainData,
    args: &TrainArgs,
    out: &RunDir,
    resume: bool,
    device: &Device,
    observer: &mut dyn Observer,
) -> Result<TrainOutcome<M>, TrainError> {
    train_with_rounds(
        model,
        task,
        data,
        args,
        out,
        resume,
        device,
        observer,
        &mut NoRounds,
    )
}

/// Changes the model at epoch starts: OPF's dynamic rounds (`bert/trainer_bert.py:1006-1015`),
/// which score the current model and over-parameterize more matrices. New parameters get fresh
/// optimizer state in their group (the released code's bug 1 does not apply).
pub trait RoundHook<M> {
    /// Called before the first step of `epoch` (not when resuming inside that epoch).
    fn at_epoch_start(&mut self, epoch: usize, model: M) -> Result<M, TrainError>;

    /// Called after every backward pass with its gradients, before clipping and the optimizer
    /// step (where the paper's Taylor score accumulates and ChildTuning-D masks).
    fn after_backward(
        &mut self,
        _model: &M,
        _grads: &mut GradientsParams,
    ) -> Result<(), TrainError> {
        Ok(())
    }

    /// Called once `step` optimizer steps are complete; may change the model (step rounds).
    fn after_step(&mut self, _step: usize, model: M) -> Result<M, TrainError> {
        Ok(model)
    }

    /// State to keep in every checkpoint (rounds run so far, accumulated scores), restored by
    /// [`restore_state`](Self::restore_state) when the run resumes. `None`: nothing to keep.
    fn save_state(&self) -> Option<serde_json::Value> {
        None
    }

    /// Takes back the state [`save_state`](Self::save_state) put in the checkpoint a run resumes
    /// from.
    fn restore_state(&mut self, _state: serde_json::Value) -> Result<(), TrainError> {
        Ok(())
    }
}

/// No rounds: the model is not changed during training.
pub struct NoRounds;

impl<M> RoundHook<M> for NoRounds {
    fn at_epoch_start(&mut self, _epoch: usize, model: M) -> Result<M, TrainError> {
        Ok(model)
    }
}

/// [`train`] with a [`RoundHook`] called at every epoch start, after every backward pass and
/// after every optimizer step.
#[allow(clippy::too_many_arguments)]
pub fn train_with_rounds<M: TaskModel>(
    model: M,
    task: Task,
    data: &TrainData,
    args: &TrainArgs,
    out: &RunDir,
    resume: bool,
    device: &Device,
    observer: &mut dyn Observer,
    rounds: &mut dyn RoundHook<M>,
) -> Result<TrainOutcome<M>, TrainError> {
    if data.train.is_empty() {
        return Err(TrainError::EmptyTrainSet);
    }
    if args.per_device_train_batch_size == 0 || args.per_device_eval_batch_size == 0 {
        return Err(TrainError::InvalidArgs(
            "batch sizes must be positive".into(),
        ));
    }
    std::fs::create_dir_all(out.root()).map_err(io_err(out.root()))?;
    let bs = args.per_device_train_batch_size;
    let steps_per_epoch = data.train.len().div_ceil(bs);
    let total = steps_per_epoch * args.num_train_epochs;
    let schedule = LinearSchedule::new(
        args.learning_rate,
        args.warmup_steps,
        args.warmup_ratio,
        total,
    );
    let mpo_scale = args.mpo_lr.map_or(1.0, |m| m / args.learning_rate);
    let mut optim = build_optimizer(
        AdamWParams {
            weight_decay: args.weight_decay,
            rule: args.optim,
            ..AdamWParams::default()
        },
        mpo_scale,
    );

    args.precision.check(device)?;

    let mut model = model;
    let mut best = model.clone();
    let mut state = TrainerState::default();
    let resumed = resume && out.has_checkpoint();
    if resumed {
        let (m, b, o, s, hook_state) = load_checkpoint(out, model, optim, device)?;
        (model, best, optim, state) = (m, b, o, s);
        if let Some(hook_state) = hook_state {
            rounds.restore_state(hook_state)?;
        }
        observer.on_message(&format!(
            "resumed from {} at step {}",
            out.checkpoint().display(),
            state.global_step
        ));
    }
    state.precision = args.precision;
    if args.precision == Precision::F16 {
        // A resumed f16 run continues with its scale.
        state.grad_scaler.get_or_insert_with(GradScaler::default);
    } else {
        state.grad_scaler = None;
    }

    // Installed for the whole loop, restored (the caller's generator back) however it ends.
    let _streams = match args.rng {
        RandomStreams::Burn if resumed && state.torch_generator.is_some() => {
            return Err(TrainError::InvalidArgs(format!(
                "the checkpoint in {} continues PyTorch's random streams; resume with rng = torch",
                out.root().display()
            )));
        }
        RandomStreams::Burn => rng::install(None),
        RandomStreams::Torch => {
            let generator = if resumed {
                state.torch_generator.clone().ok_or_else(|| {
                    TrainError::InvalidArgs(format!(
                        "the checkpoint in {} has no PyTorch generator state (it was written with \
                         rng = burn); resume with rng = burn",
                        out.root().display()
                    ))
                })?
            } else {
                rng::current().unwrap_or_else(|| TorchGenerator::new(args.seed))
            };
            rng::install(Some(generator))
        }
    };

    observer.on_start(total, state.global_step);
    let mut interval_loss = 0.0;
    let mut interval_steps = 0usize;
    let mut interval_examples = 0usize;
    let mut interval_tokens = 0usize;
    let mut interval_start = Instant::now();
    let mut last_checkpoint = resumed.then_some(state.global_step);
    let segment_start = Instant::now();
    let train_seconds_before = state.train_seconds;

    let start_epoch = state.global_step / steps_per_epoch;
    // Gradient norm of the last step taken (0 until one is).
    let mut grad_norm = 0.0;
    'epochs: for epoch in start_epoch..args.num_train_epochs {
        let skip = state.global_step - epoch * steps_per_epoch;
        if skip == 0 {
            model = rounds.at_epoch_start(epoch, model)?;
        }
        let batches = match args.rng {
            RandomStreams::Burn => {
                let order = Order::Shuffled {
                    seed: args.seed,
                    epoch: epoch as u64,
                };
                Batches::new(&data.train, bs, data.pad_id, order)?
            }
            RandomStreams::Torch => {
                let order = torch_epoch_order(args.seed, data.train.len(), epoch);
                Batches::with_order(&data.train, bs, data.pad_id, order)?
            }
        };
        for batch in batches.skip(skip) {
            let step = state.global_step;
            if args.rng == RandomStreams::Burn {
                device.seed(args.seed.wrapping_add(step as u64 + 1));
            }
            let labels = batch.labels.as_ref().ok_or(TrainError::MissingLabels)?;
            let loss_scale = state.grad_scaler.as_ref().map(GradScaler::scale);
            let (mut grads, loss_value) = {
                let _autocast = args.precision.autocast();
                forward_backward_scaled(
                    &model,
                    batch_tensors(&batch, device),
                    labels,
                    loss_scale,
                    device,
                )
            }
            .map_err(|NonFiniteLoss(loss)| TrainError::NonFiniteLoss {
                step: step + 1,
                loss,
                last_checkpoint,
            })?;
            // f16: gradients unscaled before any hook or clipping; non-finite ones (the scale
            // was too large) skip the optimizer step and back the scale off. Not a failure: the
            // batch counts as a step, as in the HF Trainer.
            let take_step = match &mut state.grad_scaler {
                Some(scaler) => {
                    let finite = scaler.unscale(&model, &mut grads);
                    scaler.update(finite)
                }
                None => true,
            };
            let lr = schedule.lr(step);
            if take_step {
                rounds.after_backward(&model, &mut grads)?;
                (model, grad_norm) =
                    optimizer_step(model, &mut optim, grads, lr, args.max_grad_norm);
            } else if let Some(scaler) = &state.grad_scaler {
                observer.on_message(&format!(
                    "step {}: non-finite f16 gradients, optimizer step skipped; loss scale now {}",
                    step + 1,
                    scaler.scale()
                ));
            }
            state.global_step += 1;
            model = rounds.after_step(state.global_step, model)?;
            observer.on_step(state.global_step, loss_value, lr);

            interval_loss += loss_value;
            interval_steps += 1;
            interval_examples += batch.batch_size;
            interval_tokens += batch.batch_size * batch.seq_len;
            let epoch_f = state.global_step as f64 / steps_per_epoch as f64;
            if args.logging_steps > 0 && state.global_step % args.logging_steps == 0 {
                let log = StepLog {
                    step: state.global_step,
                    epoch: epoch_f,
                    loss: interval_loss / interval_steps as f64,
                    lr,
                    grad_norm,
                    examples_per_second: interval_examples as f64
                        / interval_start.elapsed().as_secs_f64(),
                    examples: interval_examples,
                    padded_tokens: interval_tokens,
                };
                observer.on_log(&log);
                state.log.push(log);
                interval_loss = 0.0;
                interval_steps = 0;
                interval_examples = 0;
                interval_tokens = 0;
                interval_start = Instant::now();
            }
            let epoch_end = state.global_step % steps_per_epoch == 0;
            if epoch_end || (args.eval_steps > 0 && state.global_step % args.eval_steps == 0) {
                evaluate_into(
                    &model, &mut best, task, data, args, device, &mut state, observer,
                )?;
            }
            if epoch_end || (args.save_steps > 0 && state.global_step % args.save_steps == 0) {
                // The loss check runs before the update, so an update that overflowed (or NaN
                // gradients) would otherwise be checkpointed as "good".
                if !params_finite(&model) {
                    return Err(TrainError::NonFiniteWeights {
                        step: state.global_step,
                        last_checkpoint,
                    });
                }
                state.train_seconds = train_seconds_before + segment_start.elapsed().as_secs_f64();
                state.torch_generator = rng::current();
                save_checkpoint(out, &model, &best, &optim, &state, rounds.save_state())?;
                write_reports(out, task, &state)?;
                last_checkpoint = Some(state.global_step);
                observer.on_message(&format!("checkpoint at step {}", state.global_step));
            }
            if observer.should_stop(state.global_step) {
                observer.on_message(&format!("stopped early at step {}", state.global_step));
                break 'epochs;
            }
        }
    }
    state.train_seconds = train_seconds_before + segment_start.elapsed().as_secs_f64();
    if state.evals.is_empty() {
        best = model.clone();
    }
    write_reports(out, task, &state)?;
    Ok(TrainOutcome {
        last: model,
        best,
        state,
    })
}

#[allow(clippy::too_many_arguments)]
fn evaluate_into<M: TaskModel>(
    model: &M,
    best: &mut M,
    task: Task,
    data: &TrainData,
    args: &TrainArgs,
    device: &Device,
    state: &mut TrainerState,
    observer: &mut dyn Observer,
) -> Result<(), TrainError> {
    let steps_per_epoch = data.train.len().div_ceil(args.per_device_train_batch_size);
    let _autocast = args.precision.autocast();
    for (k, (split, examples)) in data.dev.iter().enumerate() {
        let t0 = Instant::now();
        let (preds, loss) = predict(
            model,
            task,
            examples,
            args.per_device_eval_batch_size,
            data.pad_id,
            device,
        )?;
        let labels: Vec<Label> = examples
            .iter()
            .map(|f| f.label.ok_or(TrainError::MissingLabels))
            .collect::<Result<_, _>>()?;
        let metrics = opf_glue::compute_metrics(task, *split, &preds, &labels)?;
        let eval = EvalLog {
            step: state.global_step,
            epoch: state.global_step as f64 / steps_per_epoch as f64,
            split: split.to_string(),
            loss: loss.unwrap_or(f64::NAN),
            metrics,
            examples_per_second: examples.len() as f64 / t0.elapsed().as_secs_f64(),
        };
        observer.on_eval(&eval);
        if k == 0 {
            let main = eval.metrics[&task.metric_key(*split, task.main_metric())];
            if state.best.is_none_or(|(b, _)| main > b) {
                state.best = Some((main, state.global_step));
                *best = model.clone();
            }
        }
        state.evals.push(eval);
    }
    Ok(())
}

/// Writes `metrics.json` (the full history) and `curves.svg`.
pub fn write_reports(out: &RunDir, task: Task, state: &TrainerState) -> Result<(), TrainError> {
    let json = serde_json::to_vec_pretty(state).expect("state serializes");
    write_atomic(&out.metrics(), &json)?;
    let loss: Vec<(f64, f64)> = state.log.iter().map(|l| (l.step as f64, l.loss)).collect();
    let main_key = task.metric_key(Split::Dev, task.main_metric());
    let main = main_key.as_str();
    let metric: Vec<(f64, f64)> = state
        .evals
        .iter()
        .filter(|e| state.evals.first().is_some_and(|f| f.split == e.split))
        .map(|e| (e.step as f64, e.metrics[main]))
        .collect();
    let dev_loss: Vec<(f64, f64)> = state
        .evals
        .iter()
        .filter(|e| state.evals.first().is_some_and(|f| f.split == e.split))
        .map(|e| (e.step as f64, e.loss))
        .collect();
    let picture = svg(
        &format!("{task} fine-tuning"),
        &[
            (
                "loss",
                vec![
                    Series {
                        label: "train loss",
                        color: "steelblue",
                        points: &loss,
                    },
                    Series {
                        label: "dev loss",
                        color: "firebrick",
                        points: &dev_loss,
                    },
                ],
            ),
            (
                main,
                vec![Series {
                    label: main,
                    color: "darkorange",
                    points: &metric,
                }],
            ),
        ],
    );
    write_atomic(&out.curves(), picture.as_bytes())
}
