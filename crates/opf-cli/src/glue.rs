//! `opf glue <TASK>`: fine-tune on a GLUE task (run_glue-style flags over a TOML config), evaluate
//! the best model on dev, optionally predict the test split, and export the model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use opf_glue::{Features, GlueTokenizer, Split, Task};
use opf_models::rng::{self, TorchGenerator};
use opf_models::{
    BartForSequenceClassification, BertForSequenceClassification, CoreTraining, Precision,
};
use opf_select::{GroupRule, Horizon, RoundAt, Schedule, WeightTypes};
use opf_train::child_tuning::{ChildTuningD, ChildTuningMasks};
use opf_train::optim::AdamWRule;
use opf_train::select::{RoundLog, Score, SelectionRounds};
use opf_train::t5::T5TextToText;
use opf_train::{
    EvalLog, NoRounds, Observer, RandomStreams, RoundHook, RunDir, StepLog, TrainArgs, TrainData,
};
use serde::{Deserialize, Serialize};

use crate::arch::{Architecture, DEFAULT_MAX_TARGET_LENGTH, GlueModel, Setup, mpo_paths};
use crate::backend;
use crate::export::{self, RunManifest};
use crate::hub;

/// Settings of one GLUE run; every field is optional so a TOML file and the flags can each set a
/// subset. Keys are run_glue.py argument names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// GLUE task (set by the positional argument; a config may name it too).
    #[arg(skip)]
    pub task: Option<String>,
    /// Model directory or Hugging Face hub id.
    #[arg(long)]
    pub model: Option<String>,
    /// GLUE data directory (else `GLUE_DIR`, else `datasets/glue`).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Maximum tokens per example (longest-first truncation).
    #[arg(long)]
    pub max_seq_length: Option<usize>,
    /// T5: maximum tokens per target (label string and `</s>`) and per generated prediction
    /// (default 128, the original's).
    #[arg(long)]
    pub max_target_length: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub learning_rate: Option<f64>,
    /// Epochs.
    #[arg(long)]
    pub num_train_epochs: Option<usize>,
    /// Training batch size.
    #[arg(long)]
    pub per_device_train_batch_size: Option<usize>,
    /// Evaluation batch size.
    #[arg(long)]
    pub per_device_eval_batch_size: Option<usize>,
    /// Warmup steps (overrides the ratio).
    #[arg(long)]
    pub warmup_steps: Option<usize>,
    /// Warmup as a fraction of all steps.
    #[arg(long)]
    pub warmup_ratio: Option<f64>,
    /// AdamW weight decay (not applied to biases and LayerNorm).
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Global gradient-norm clip.
    #[arg(long)]
    pub max_grad_norm: Option<f64>,
    /// AdamW rule (HF `--optim` names): `adamw_hf` (`transformers.AdamW` v4.0, OPF's; the
    /// default) or `adamw_torch` (`torch.optim.AdamW`, as `hf_mrpc.py`).
    #[arg(long)]
    pub optim: Option<AdamWRule>,
    /// Seed of shuffling, dropout and head initialisation.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Random streams the seed drives: `torch` (PyTorch's CPU generator: the fresh head, the
    /// epoch orders and the dropout masks of a PyTorch script seeded alike, as `hf_mrpc.py`) or
    /// `burn` (burn's backend generator; the default).
    #[arg(long)]
    pub rng: Option<RandomStreams>,
    /// Evaluate every N steps (besides every epoch end).
    #[arg(long)]
    pub eval_steps: Option<usize>,
    /// Log the loss every N steps.
    #[arg(long)]
    pub logging_steps: Option<usize>,
    /// Checkpoint every N steps (besides every epoch end).
    #[arg(long)]
    pub save_steps: Option<usize>,
    /// Output directory.
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Use only the first N training examples.
    #[arg(long)]
    pub max_train_samples: Option<usize>,
    /// Use only the first N dev examples.
    #[arg(long)]
    pub max_eval_samples: Option<usize>,
    /// Predict the test split and write GLUE submission files.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub do_predict: Option<bool>,
    /// OPF: MPO shape preset for the over-parameterized matrices (`bert15`, `paper11`, `t5`,
    /// `bart7`, `svd`, `opf:N`, `balanced:N`; see `opf mpo plan`). Unset = dense fine-tuning.
    #[arg(long)]
    pub mpo_preset: Option<String>,
    /// OPF: which projections to over-parameterize: comma list of `query`, `key`, `value`,
    /// `attention_output`, `ffn_1`, `ffn_2`, BART's decoder `cross_query`, `cross_key`,
    /// `cross_value`, `cross_output`, or the groups `attention`, `cross_attention`, `ffn`, `all`;
    /// an `encoder.` / `decoder.` prefix limits an entry to one stack (BART).
    #[arg(long)]
    pub mpo_targets: Option<String>,
    /// OPF: layers whose targets are over-parameterized (comma list; default all layers; a bare
    /// number is that layer of every stack, `encoder.N` / `decoder.N` one stack's).
    #[arg(long)]
    pub mpo_layers: Option<String>,
    /// OPF: learning rate of the MPO cores (default: --learning-rate).
    #[arg(long)]
    pub mpo_lr: Option<f64>,
    /// OPF: which cores train: all (default), central, auxiliary, frozen.
    #[arg(long)]
    pub core_training: Option<CoreTraining>,
    /// OPF selection (ChildTuning-D mode): over-parameterize the top N matrices per group, scored
    /// by the Fisher pass, instead of `--mpo-targets`.
    #[arg(long)]
    pub top_n: Option<usize>,
    /// OPF selection: candidate types, e.g. `FFN_1,FFN_2,attention` (BART also
    /// `cross_attention`).
    #[arg(long)]
    pub weight_types: Option<String>,
    /// OPF selection: `strict` groups (default) or the released `compat` mixed output.dense pool.
    #[arg(long)]
    pub group_rule: Option<String>,
    /// OPF selection: dynamic rounds at epoch boundaries (with `--split-num`).
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub dynamic_decom: Option<bool>,
    /// OPF selection: number of dynamic rounds (⌊N/s⌋ per round every ⌈E/s⌉ epochs).
    #[arg(long)]
    pub split_num: Option<usize>,
    /// OPF selection score: `fisher` (the released ChildTuning-D pass, default), `taylor` (the
    /// paper's |⟨∇W L, W⟩| over the last optimizer steps) or `ablation` (the paper's static
    /// zero-ablation loss change).
    #[arg(long)]
    pub score: Option<String>,
    /// OPF selection, `--score taylor`: optimizer steps summed (default `--round-steps`, else
    /// one epoch).
    #[arg(long)]
    pub taylor_window: Option<usize>,
    /// OPF selection, `--score ablation`: training batches each loss is averaged over (default 8).
    #[arg(long)]
    pub ablation_batches: Option<usize>,
    /// OPF selection: the paper's dynamic schedule, a round after every t optimizer steps (with
    /// `--dynamic-decom --per-round n`) instead of epoch rounds.
    #[arg(long)]
    pub round_steps: Option<usize>,
    /// OPF selection, `--round-steps`: matrices added per group per round (the paper's n).
    #[arg(long)]
    pub per_round: Option<usize>,
    /// ChildTuning-D (the released optimizer's mode): only this fraction of the encoder-layer
    /// weights, the largest by a Fisher pass before training, receive gradients (0 < p ≤ 1).
    #[arg(long)]
    pub child_tuning_reserve: Option<f64>,
    /// Mixed precision: matrix products in bfloat16, parameters and optimizer state in f32 (the
    /// backend must support bf16; burn-flex, CUDA and LibTorch do). Excludes `--fp16`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub bf16: Option<bool>,
    /// Mixed precision: matrix products in f16 with dynamic loss scaling, parameters and
    /// optimizer state in f32. Excludes `--bf16`.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub fp16: Option<bool>,
    /// Run this many seeds (`seed`, `seed + 1`, …), each in `<output_dir>/seed-<s>`, and report
    /// the mean ± standard deviation of the final dev metrics (in `<output_dir>/seeds.json`).
    #[arg(long)]
    pub seeds: Option<usize>,
}

impl RunConfig {
    /// Fields set in `over` replace those of `self`.
    pub fn overlay(self, over: RunConfig) -> RunConfig {
        macro_rules! pick {
            ($($f:ident),*) => { RunConfig { $($f: over.$f.or(self.$f)),* } };
        }
        pick!(
            task,
            model,
            data_dir,
            max_seq_length,
            max_target_length,
            learning_rate,
            num_train_epochs,
            per_device_train_batch_size,
            per_device_eval_batch_size,
            warmup_steps,
            warmup_ratio,
            weight_decay,
            max_grad_norm,
            optim,
            seed,
            rng,
            eval_steps,
            logging_steps,
            save_steps,
            output_dir,
            max_train_samples,
            max_eval_samples,
            do_predict,
            mpo_preset,
            mpo_targets,
            mpo_layers,
            mpo_lr,
            core_training,
            top_n,
            weight_types,
            group_rule,
            dynamic_decom,
            split_num,
            score,
            taylor_window,
            ablation_batches,
            round_steps,
            per_round,
            child_tuning_reserve,
            bf16,
            fp16,
            seeds
        )
    }

    /// Reads a TOML config; unknown keys are errors.
    pub fn load(path: &Path) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing config {}", path.display()))
    }

    /// The mixed precision `bf16` / `fp16` ask for (f32 when neither).
    ///
    /// # Errors
    ///
    /// Both set.
    pub fn precision(&self) -> Result<Precision> {
        match (self.bf16.unwrap_or(false), self.fp16.unwrap_or(false)) {
            (true, true) => bail!("--bf16 and --fp16 exclude each other"),
            (true, false) => Ok(Precision::Bf16),
            (false, true) => Ok(Precision::F16),
            (false, false) => Ok(Precision::F32),
        }
    }

    fn train_args(&self) -> Result<TrainArgs> {
        let d = TrainArgs::default();
        Ok(TrainArgs {
            learning_rate: self.learning_rate.unwrap_or(d.learning_rate),
            mpo_lr: self.mpo_lr.or(d.mpo_lr),
            num_train_epochs: self.num_train_epochs.unwrap_or(d.num_train_epochs),
            per_device_train_batch_size: self
                .per_device_train_batch_size
                .unwrap_or(d.per_device_train_batch_size),
            per_device_eval_batch_size: self
                .per_device_eval_batch_size
                .unwrap_or(d.per_device_eval_batch_size),
            warmup_steps: self.warmup_steps.unwrap_or(d.warmup_steps),
            warmup_ratio: self.warmup_ratio.unwrap_or(d.warmup_ratio),
            weight_decay: self.weight_decay.unwrap_or(d.weight_decay),
            max_grad_norm: self.max_grad_norm.unwrap_or(d.max_grad_norm),
            optim: self.optim.unwrap_or(d.optim),
            seed: self.seed.unwrap_or(d.seed),
            rng: self.rng.unwrap_or(d.rng),
            eval_steps: self.eval_steps.unwrap_or(d.eval_steps),
            logging_steps: self.logging_steps.unwrap_or(d.logging_steps),
            save_steps: self.save_steps.unwrap_or(d.save_steps),
            precision: self.precision()?,
        })
    }
}

/// `opf glue` arguments.
#[derive(Debug, clap::Args)]
pub struct GlueCmd {
    /// GLUE task: CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI.
    pub task: String,
    /// TOML config (run_glue keys); default `configs/<task>.toml` when it exists.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Profile overlaid on the task config, from `configs/profiles/<name>.toml`: `opf` (our
    /// default, which `cargo xtask glue` applies), `dense` (no over-parameterization), `compat`
    /// (the released code) or `paper` (the published method); or a path to a TOML file.
    #[arg(long)]
    pub profile: Option<String>,
    /// Device: `cpu`, `cuda:0`, `wgpu` (must be compiled in; see README).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Continue from `<output_dir>/checkpoint` when present.
    #[arg(long)]
    pub resume: bool,
    /// Reproduce the released OPF code: MPO cores frozen, biases train (same as
    /// `--core-training frozen`).
    #[arg(long)]
    pub compat_frozen_cores: bool,
    /// Settings overriding the config.
    #[command(flatten)]
    pub overrides: RunConfig,
}

fn default_config_path(task: Task) -> PathBuf {
    let name = task.dir_name().to_ascii_lowercase().replace('-', "");
    Path::new("configs").join(format!("{name}.toml"))
}

/// Progress bar plus log lines.
struct Progress {
    bar: ProgressBar,
    start: Instant,
}

impl Observer for Progress {
    fn on_start(&mut self, total: usize, start: usize) {
        self.bar.set_length(total as u64);
        self.bar.set_position(start as u64);
        self.bar.reset_eta();
        self.start = Instant::now();
    }
    fn on_step(&mut self, step: usize, loss: f64, lr: f64) {
        self.bar.set_position(step as u64);
        self.bar.set_message(format!("loss {loss:.4} lr {lr:.2e}"));
    }
    fn on_log(&mut self, log: &StepLog) {
        let line = format!(
            "loss {:.4} lr {:.2e} |g| {:.2} {:.1} ex/s",
            log.loss, log.lr, log.grad_norm, log.examples_per_second
        );
        if self.bar.is_hidden() {
            // Not a terminal (CI, a log file): print the progress as lines instead.
            println!(
                "step {:>6}/{} epoch {:.2} {line} elapsed {:.0}s",
                log.step,
                self.bar.length().unwrap_or(0),
                log.epoch,
                self.start.elapsed().as_secs_f64()
            );
        } else {
            self.bar.set_message(line);
        }
    }
    fn on_eval(&mut self, e: &EvalLog) {
        let metrics: Vec<String> = e
            .metrics
            .iter()
            .map(|(k, v)| format!("{k} {v:.4}"))
            .collect();
        self.bar.println(format!(
            "step {:>6} epoch {:.2} {} loss {:.4} | {} | {:.1} ex/s",
            e.step,
            e.epoch,
            e.split,
            e.loss,
            metrics.join(" "),
            e.examples_per_second
        ));
    }
    fn on_message(&mut self, msg: &str) {
        self.bar.println(msg);
    }
}

/// Loads and tokenizes `split` as model `M` reads it.
fn encode<M: GlueModel>(
    tok: &GlueTokenizer,
    task: Task,
    glue: &Path,
    split: Split,
) -> Result<Vec<Features>> {
    let examples = opf_glue::load_examples(glue, task, split)?;
    M::encode(tok, task, &examples)
}

/// Runs `opf glue`.
pub fn run(cmd: GlueCmd) -> Result<()> {
    let task: Task = cmd.task.parse()?;
    let config_path = cmd.config.clone().or_else(|| {
        let p = default_config_path(task);
        p.exists().then_some(p)
    });
    let base = match &config_path {
        Some(p) => RunConfig::load(p)?,
        None => RunConfig::default(),
    };
    if let Some(t) = &base.task {
        let named: Task = t.parse()?;
        if named != task {
            bail!("config names task {named} but the command asks for {task}");
        }
    }
    let base = match &cmd.profile {
        Some(profile) => {
            let dir = config_path
                .as_deref()
                .and_then(Path::parent)
                .unwrap_or(Path::new("configs"))
                .join("profiles");
            let path = if Path::new(profile).is_file() {
                PathBuf::from(profile)
            } else {
                dir.join(format!("{profile}.toml"))
            };
            if !path.is_file() {
                let mut known: Vec<String> = std::fs::read_dir(&dir)
                    .into_iter()
                    .flatten()
                    .filter_map(|e| e.ok())
                    .filter_map(|e| {
                        let name = e.file_name().to_string_lossy().into_owned();
                        name.strip_suffix(".toml").map(str::to_owned)
                    })
                    .collect();
                known.sort();
                bail!(
                    "unknown profile {profile:?}: no {} (profiles in {}: {})",
                    path.display(),
                    dir.display(),
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                );
            }
            base.overlay(RunConfig::load(&path)?)
        }
        None => base,
    };
    let cfg = base.overlay(cmd.overrides.clone());
    let seeds = cfg.seeds.unwrap_or(1);
    if seeds <= 1 {
        run_one(&cmd, task, cfg, config_path.as_deref())?;
        return Ok(());
    }
    let first = cfg.seed.unwrap_or(42);
    let root = cfg
        .output_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(task.dir_name()));
    let mut runs = Vec::with_capacity(seeds);
    for seed in (first..).take(seeds) {
        println!("=== seed {seed} ({} of {seeds}) ===", seed - first + 1);
        let cfg = RunConfig {
            seed: Some(seed),
            seeds: None,
            output_dir: Some(root.join(format!("seed-{seed}"))),
            ..cfg.clone()
        };
        runs.push(run_one(&cmd, task, cfg, config_path.as_deref())?);
    }
    report_seeds(&root, &runs)
}

/// The final (merged, best-model) dev metrics of one run.
#[derive(Debug, Clone, Serialize)]
struct RunSummary {
    seed: u64,
    /// Per dev split, the GLUE metrics.
    dev: Vec<(String, BTreeMap<String, f64>)>,
    train_params: usize,
    train_seconds: f64,
}

/// Mean and sample standard deviation.
fn mean_std(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

/// Prints mean ± std over seeds of every final dev metric and writes `seeds.json`.
fn report_seeds(root: &Path, runs: &[RunSummary]) -> Result<()> {
    let mut table: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for run in runs {
        for (split, metrics) in &run.dev {
            for (k, v) in metrics {
                table
                    .entry((split.clone(), k.clone()))
                    .or_default()
                    .push(*v);
            }
        }
    }
    let seeds: Vec<u64> = runs.iter().map(|r| r.seed).collect();
    println!(
        "=== {} seeds {seeds:?}: final dev metrics (best model, merged), mean ± std ===",
        runs.len()
    );
    let mut summary = serde_json::Map::new();
    for ((split, key), values) in &table {
        let (mean, std) = mean_std(values);
        println!(
            "{split} {key}: {mean:.4} ± {std:.4}  ({})",
            values
                .iter()
                .map(|v| format!("{v:.4}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        summary.insert(
            format!("{split}/{key}"),
            serde_json::json!({"mean": mean, "std": std, "values": values}),
        );
    }
    let (secs, _) = mean_std(&runs.iter().map(|r| r.train_seconds).collect::<Vec<_>>());
    println!(
        "train-time parameters {}, mean training wall time {secs:.0} s",
        runs[0].train_params
    );
    let path = root.join("seeds.json");
    let out = serde_json::json!({"seeds": seeds, "metrics": summary, "runs": runs});
    std::fs::create_dir_all(root).with_context(|| format!("creating {}", root.display()))?;
    std::fs::write(&path, serde_json::to_string_pretty(&out)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// One fine-tuning run with the resolved config.
fn run_one(
    cmd: &GlueCmd,
    task: Task,
    cfg: RunConfig,
    config_path: Option<&Path>,
) -> Result<RunSummary> {
    let model_id = cfg
        .model
        .clone()
        .context("no --model given and none in the config")?;
    let model_dir = hub::resolve_model(&model_id, hub::offline_from_env())?;
    let run = match Architecture::of_model_dir(&model_dir)? {
        Architecture::Bert => run_model::<BertForSequenceClassification>,
        Architecture::Bart => run_model::<BartForSequenceClassification>,
        Architecture::T5 => run_model::<T5TextToText>,
    };
    run(cmd, task, cfg, config_path, model_id, model_dir)
}

/// [`run_one`] for the architecture `M` of the model in `model_dir`.
fn run_model<M: GlueModel>(
    cmd: &GlueCmd,
    task: Task,
    cfg: RunConfig,
    config_path: Option<&Path>,
    model_id: String,
    model_dir: PathBuf,
) -> Result<RunSummary> {
    let mut args = cfg.train_args()?;
    let device = backend::device(&cmd.device)?;
    if args.rng == RandomStreams::Torch && !backend::is_host(&device) {
        // PyTorch's CPU streams reproduce a CPU run (PyTorch on a GPU draws from the device's own
        // generator); here every dropout mask would be drawn on the host and uploaded each step.
        println!(
            "random streams: burn's on {} (PyTorch's CPU streams only reproduce a CPU run)",
            cmd.device
        );
        args.rng = RandomStreams::Burn;
    }
    let out = cfg
        .output_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("runs").join(task.dir_name()));
    let glue = opf_glue::resolve_data_dir(
        cfg.data_dir.as_deref(),
        std::env::var_os("GLUE_DIR").as_deref(),
    )?;
    RunManifest {
        task: task.to_string(),
        model: model_id.clone(),
        model_dir: model_dir.clone(),
        precision: args.precision,
    }
    .write(&out)?;
    tracing::info!(
        task = %task,
        config = ?config_path,
        data = %glue.display(),
        model = %model_dir.display(),
        "glue run"
    );

    let max_len = cfg.max_seq_length.unwrap_or(128);
    let tok = GlueTokenizer::from_file(&model_dir.join("tokenizer.json"), max_len)?;
    let t0 = Instant::now();
    let mut train = encode::<M>(&tok, task, &glue, Split::Train)?;
    if let Some(n) = cfg.max_train_samples {
        train.truncate(n);
    }
    let dev_splits: &[Split] = if task == Task::Mnli {
        &[Split::Dev, Split::DevMismatched]
    } else {
        &[Split::Dev]
    };
    let mut dev = Vec::new();
    for &s in dev_splits {
        let mut f = encode::<M>(&tok, task, &glue, s)?;
        if let Some(n) = cfg.max_eval_samples {
            f.truncate(n);
        }
        dev.push((s, f));
    }
    println!(
        "{task}: {} train / {} dev examples tokenized in {:.1}s (max length {max_len})",
        train.len(),
        dev[0].1.len(),
        t0.elapsed().as_secs_f64()
    );

    device.seed(args.seed);
    // `torch.manual_seed(seed)` before the model is built: the fresh head, then (in the trainer)
    // the dropout masks, draw from it.
    let _torch_rng = (args.rng == RandomStreams::Torch)
        .then(|| rng::install(Some(TorchGenerator::new(args.seed))));
    let train_device = device.clone().autodiff();
    args.precision.check(&train_device)?;
    let setup = Setup {
        task,
        tokenizer: &tok,
        max_target_length: cfg.max_target_length.unwrap_or(DEFAULT_MAX_TARGET_LENGTH),
    };
    let (model, report) = M::load_hf(&model_dir, &setup, &train_device)?;
    println!("model {}: {report}", model_dir.display());
    let dense_params = model.num_params();
    let mut model = model;
    let core_training = if cmd.compat_frozen_cores {
        CoreTraining::Frozen
    } else {
        cfg.core_training.unwrap_or_default()
    };
    let preset: Option<mpo_core::Preset> = cfg.mpo_preset.as_deref().map(str::parse).transpose()?;
    if cfg.top_n.is_some() && preset.is_none() {
        bail!("--top-n selects matrices to over-parameterize: give their shape with --mpo-preset");
    }
    if let (Some(preset), None) = (&preset, cfg.top_n) {
        let paths = mpo_paths(
            &model,
            cfg.mpo_targets.as_deref().unwrap_or("all"),
            cfg.mpo_layers.as_deref(),
        )?;
        let t0 = Instant::now();
        let done = model.over_parameterize(&paths, preset, core_training)?;
        println!(
            "OPF: {} matrices over-parameterized with {preset} in {:.1}s (cores train: {core_training:?})",
            done.len(),
            t0.elapsed().as_secs_f64()
        );
        for r in &done {
            let dense = r.shape.dense_params();
            println!(
                "  {:<44} i={:?} j={:?} ranks={:?} params {} ({:.3}x dense)",
                r.path.to_string(),
                r.shape.row_factors(),
                r.shape.col_factors(),
                r.shape.full_ranks(),
                r.params,
                r.params as f64 / dense as f64
            );
        }
    }
    println!(
        "parameters: {} at train time, {dense_params} dense ({:.3}x) | device {device:?}, {} | {} epochs × {} steps, lr {:.1e}, batch {}",
        model.num_params(),
        model.num_params() as f64 / dense_params as f64,
        match args.precision {
            Precision::F32 => "f32".to_string(),
            p => format!("{p} mixed precision"),
        },
        args.num_train_epochs,
        train.len().div_ceil(args.per_device_train_batch_size),
        args.learning_rate,
        args.per_device_train_batch_size,
    );
    println!(
        "optimizer {}, weight decay {}, seed {} ({} random streams)",
        args.optim, args.weight_decay, args.seed, args.rng
    );

    let data = TrainData {
        train,
        dev,
        pad_id: tok.pad_id(),
    };
    let run_dir = RunDir::new(&out);
    let bar = ProgressBar::new(0).with_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        )
        .expect("valid template"),
    );
    let mut progress = Progress {
        bar,
        start: Instant::now(),
    };
    let t_train = Instant::now();
    let mut rounds = match (cfg.top_n, preset) {
        (Some(top_n), Some(preset)) => Some(selection_rounds(
            &cfg,
            top_n,
            preset,
            core_training,
            &data,
            &args,
            &train_device,
        )?),
        _ => None,
    };
    let mut no_rounds = NoRounds;
    let hook: &mut dyn RoundHook<M> = match rounds.as_mut() {
        Some(r) => r,
        None => &mut no_rounds,
    };
    let mut child_tuning;
    let hook: &mut dyn RoundHook<M> = match cfg.child_tuning_reserve {
        Some(reserve_p) => {
            let t0 = Instant::now();
            let masks = ChildTuningMasks::fisher(
                &model,
                &data.train,
                args.per_device_train_batch_size,
                data.pad_id,
                args.seed,
                reserve_p,
                args.max_grad_norm,
                &train_device,
            )?;
            let (kept, total) = masks.counts();
            println!(
                "ChildTuning-D: gradients of {kept} of {total} encoder-layer elements pass ({:.1} %), Fisher pass {:.1}s",
                100.0 * kept as f64 / total.max(1) as f64,
                t0.elapsed().as_secs_f64()
            );
            child_tuning = ChildTuningD { inner: hook, masks };
            &mut child_tuning
        }
        None => hook,
    };
    let outcome = opf_train::train_with_rounds(
        model,
        task,
        &data,
        &args,
        &run_dir,
        cmd.resume,
        &train_device,
        &mut progress,
        hook,
    )?;
    progress.bar.finish_and_clear();
    let train_secs = t_train.elapsed().as_secs_f64();
    if let Some(r) = &rounds {
        for round in &r.log {
            let at = match round.at {
                RoundAt::Epoch(e) => format!("at epoch {e}"),
                RoundAt::Step(s) => format!("after step {s}"),
            };
            println!(
                "selection round {at} ({} per group): {} matrices, {} parameters after",
                round.per_group,
                round.chosen.len(),
                round.params_after
            );
            for c in &round.chosen {
                println!(
                    "  {:<52} score {:.6e} group {:?} rank {}",
                    c.matrix.hf_name(M::ARCH).to_string(),
                    c.score,
                    c.group,
                    c.rank
                );
            }
        }
        record_selection(&run_dir, &r.log)?;
    }

    // Evaluation, prediction and export run on the merged model: original architecture and cost.
    let mut best = outcome.best;
    let train_params = best.num_params();
    let merged_layers = best.mpo_paths().len();
    best.merge_mpo();
    let test_params = best.num_params();
    println!(
        "parameters at test time (merged): {test_params}{}",
        if test_params == dense_params {
            " = dense".to_string()
        } else {
            format!(" != dense {dense_params}")
        }
    );
    if test_params != dense_params {
        bail!("merged model has {test_params} parameters, the dense model {dense_params}");
    }
    println!(
        "trained {} steps in {:.1}s; best dev {}: {}",
        outcome.state.global_step,
        train_secs,
        task.main_metric().key(),
        outcome
            .state
            .best
            .map_or("n/a".to_string(), |(v, s)| format!("{v:.4} (step {s})"))
    );
    let mut dev_metrics = Vec::new();
    for (split, features) in &data.dev {
        let t_eval = Instant::now();
        let (preds, _) = opf_train::predict(
            &best,
            task,
            features,
            args.per_device_eval_batch_size,
            data.pad_id,
            &device,
        )?;
        let labels: Vec<_> = features.iter().filter_map(|f| f.label).collect();
        let metrics = opf_glue::compute_metrics(task, *split, &preds, &labels)?;
        dev_metrics.push((
            split.to_string(),
            metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        ));
        let line: Vec<String> = metrics
            .iter()
            .map(|(k, v)| format!("{k} = {v:.4}"))
            .collect();
        println!(
            "dev ({split}, best model, merged): {} | {:.2} ex/s",
            line.join(", "),
            features.len() as f64 / t_eval.elapsed().as_secs_f64()
        );
    }

    if cfg.do_predict.unwrap_or(false) {
        let test_splits: &[Split] = if task == Task::Mnli {
            &[Split::Test, Split::TestMismatched]
        } else {
            &[Split::Test]
        };
        for &s in test_splits {
            let features = encode::<M>(&tok, task, &glue, s)?;
            let (preds, _) = opf_train::predict(
                &best,
                task,
                &features,
                args.per_device_eval_batch_size,
                data.pad_id,
                &device,
            )?;
            let sub = opf_glue::format_submission(task, s, &preds)?;
            let path = out.join(sub.file_name);
            std::fs::write(&path, sub.contents)
                .with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {} ({} predictions)", path.display(), preds.len());
        }
    }

    export::write_hf_dir(
        &best,
        &out.join("model"),
        &export::Provenance {
            model_dir: &model_dir,
            run_dir: &out,
            train_params,
            merged_layers,
        },
    )?;
    println!("metrics.json and curves.svg in {}", out.display());
    Ok(RunSummary {
        seed: args.seed,
        dev: dev_metrics,
        train_params,
        train_seconds: outcome.state.train_seconds,
    })
}

/// The selection schedule of `--top-n` / `--dynamic-decom --split-num`.
#[allow(clippy::too_many_arguments)]
fn selection_rounds<'a>(
    cfg: &RunConfig,
    top_n: usize,
    preset: mpo_core::Preset,
    core_training: CoreTraining,
    data: &'a TrainData,
    args: &TrainArgs,
    device: &burn::tensor::Device,
) -> Result<SelectionRounds<'a>> {
    let dynamic = cfg.dynamic_decom.unwrap_or(false);
    let steps = data.train.len().div_ceil(args.per_device_train_batch_size);
    let schedule = match (dynamic, cfg.round_steps) {
        (true, Some(every_steps)) => Schedule::StepRounds {
            every_steps,
            per_round: cfg
                .per_round
                .context("--dynamic-decom --round-steps needs --per-round")?,
        },
        (true, None) => Schedule::EpochRounds {
            split_num: cfg
                .split_num
                .context("--dynamic-decom needs --split-num (epoch rounds) or --round-steps")?,
        },
        (false, _) => Schedule::Static,
    };
    let score = match cfg.score.as_deref().unwrap_or("fisher") {
        "fisher" => Score::Fisher,
        "taylor" => Score::Taylor {
            window: cfg.taylor_window.or(cfg.round_steps).unwrap_or(steps),
        },
        "ablation" => Score::Ablation {
            batches: cfg.ablation_batches.unwrap_or(8),
        },
        other => bail!("--score {other:?}: expected fisher, taylor or ablation"),
    };
    let plan = schedule.plan(
        top_n,
        Horizon {
            epochs: args.num_train_epochs,
            total_steps: steps * args.num_train_epochs,
        },
    )?;
    for w in plan.warnings() {
        println!("warning: {w}");
    }
    let rule = match cfg.group_rule.as_deref().unwrap_or("strict") {
        "strict" => GroupRule::Strict,
        "compat" => GroupRule::CompatMixedPool,
        other => bail!("--group-rule {other:?}: expected strict or compat"),
    };
    let weight_types: WeightTypes = cfg
        .weight_types
        .as_deref()
        .unwrap_or("FFN_1,FFN_2,attention")
        .parse()?;
    Ok(SelectionRounds::new(
        plan,
        rule,
        weight_types,
        preset,
        core_training,
        score,
        &data.train,
        args.per_device_train_batch_size,
        data.pad_id,
        args.seed,
        device.clone(),
    )?)
}

/// Adds the selection rounds to `metrics.json` under `"selection"`.
fn record_selection(run_dir: &RunDir, log: &[RoundLog]) -> Result<()> {
    let path = run_dir.metrics();
    let mut v: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?,
    )?;
    v["selection"] = serde_json::to_value(log)?;
    std::fs::write(&path, serde_json::to_vec_pretty(&v)?)
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_config() {
        let file: RunConfig =
            toml::from_str("learning_rate = 2e-5\nseed = 1\nmpo_preset = \"t5\"").unwrap();
        let flags = RunConfig {
            seed: Some(7),
            ..RunConfig::default()
        };
        let cfg = file.overlay(flags);
        assert_eq!(cfg.seed, Some(7));
        assert_eq!(cfg.learning_rate, Some(2e-5));
        assert_eq!(cfg.mpo_preset.as_deref(), Some("t5"));
        assert!(toml::from_str::<RunConfig>("learning_rte = 1.0").is_err());
    }

    /// `rng` and `optim` read the names `--rng` / `--optim` take and print back.
    #[test]
    fn random_streams_and_adamw_rule_parse_and_print() {
        let cfg: RunConfig = toml::from_str("rng = \"torch\"\noptim = \"adamw_torch\"").unwrap();
        let args = cfg.train_args().unwrap();
        assert_eq!(args.rng, RandomStreams::Torch);
        assert_eq!(args.optim, AdamWRule::Torch);
        let defaults = RunConfig::default().train_args().unwrap();
        assert_eq!(
            (defaults.rng, defaults.optim),
            (RandomStreams::Burn, AdamWRule::Hf)
        );
        for name in ["burn", "torch"] {
            assert_eq!(name.parse::<RandomStreams>().unwrap().to_string(), name);
        }
        for name in ["adamw_hf", "adamw_torch"] {
            assert_eq!(name.parse::<AdamWRule>().unwrap().to_string(), name);
        }
        assert!(
            "numpy"
                .parse::<RandomStreams>()
                .unwrap_err()
                .contains("burn, torch")
        );
        assert!(
            "sgd"
                .parse::<AdamWRule>()
                .unwrap_err()
                .contains("adamw_torch")
        );
        assert!(toml::from_str::<RunConfig>("rng = \"numpy\"").is_err());
        let mrpc =
            RunConfig::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/mrpc.toml"))
                .unwrap();
        assert_eq!(
            (mrpc.rng, mrpc.optim),
            (Some(RandomStreams::Torch), Some(AdamWRule::Torch)),
            "configs/mrpc.toml is hf_mrpc.py's recipe"
        );
    }

    #[test]
    fn shipped_configs_and_profiles_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let mut n = 0;
        for dir in [root.clone(), root.join("profiles"), root.join("gpu")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "toml") {
                    let cfg = RunConfig::load(&path).unwrap();
                    if let Some(task) = &cfg.task {
                        task.parse::<Task>().unwrap();
                    }
                    if let Some(p) = &cfg.mpo_preset {
                        p.parse::<mpo_core::Preset>().unwrap();
                    }
                    if let Some(w) = &cfg.weight_types {
                        w.parse::<WeightTypes>().unwrap();
                    }
                    n += 1;
                }
            }
        }
        assert_eq!(n, 15, "9 task configs, 4 profiles and 2 GPU configs");
    }
}
