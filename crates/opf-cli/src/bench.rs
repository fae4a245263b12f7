//! `opf bench steps`: fine-tuning step time of a randomly initialised BERT on fixed MRPC-shaped
//! batches (sentence pairs, `--batch` × `--seq-len`, two labels), dense and OPF variants, on any
//! compiled-in backend. The step is the trainer's own ([`opf_train::train_step`]: forward,
//! cross-entropy, backward, global-norm clipping, HF AdamW in its parameter groups), then the
//! merged model's inference time. This is what `scripts/gpu-bench/run.sh` runs on a GPU machine
//! beside `torch_steps.py`, PyTorch eager on the same shapes.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use opf_glue::BatchLabels;
use opf_models::{BertConfig, BertForSequenceClassification, CoreTraining, Precision, ProjLinear};
use opf_train::optim::{AdamWParams, build_optimizer};
use serde::Serialize;

use crate::arch::mpo_paths;
use crate::backend;

/// `opf bench steps` arguments.
#[derive(Debug, clap::Args)]
pub struct StepsCmd {
    /// Device: `cpu`, `cuda[:N]`, `wgpu`, `tch`, `tch-cuda[:N]` (backend compiled in).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Model shape: `bert-base` (12 × 768), `minilm` (6 × 384), `tiny` (2 × 32), or a
    /// `config.json` path. Weights are random: the timing does not depend on them.
    #[arg(long, default_value = "bert-base")]
    pub arch: String,
    /// Sequences per batch.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Tokens per sequence (the padded MRPC length at `--max-seq-length 128`).
    #[arg(long, default_value_t = 128)]
    pub seq_len: usize,
    /// Timed optimizer steps per variant.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Untimed steps first (allocator, autotune, kernel compilation).
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Variants, comma separated: `dense` or `preset/targets` (e.g. `balanced:5/all`,
    /// `opf:15/ffn`; targets as `opf glue --mpo-targets`).
    #[arg(long, default_value = "dense,balanced:5/all,opf:15/ffn")]
    pub variants: String,
    /// Seed of the random weights and batch.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Time the steps and inference with the matrix products in bfloat16 (as `opf glue --bf16`).
    #[arg(long, conflicts_with = "fp16")]
    pub bf16: bool,
    /// Time the steps and inference with the matrix products in f16 (as `opf glue --fp16`, but
    /// without its loss scaling: one extra pass over the gradients per step).
    #[arg(long)]
    pub fp16: bool,
}

impl StepsCmd {
    fn precision(&self) -> Precision {
        match (self.bf16, self.fp16) {
            (true, _) => Precision::Bf16,
            (false, true) => Precision::F16,
            (false, false) => Precision::F32,
        }
    }
}

/// One variant's timings.
#[derive(Debug, Serialize)]
struct Row {
    variant: String,
    params_train: usize,
    params_merged: usize,
    /// Median seconds per optimizer step.
    step_s: f64,
    /// Median seconds per forward pass of the trained model after merging (inference mode).
    infer_s: f64,
    final_loss: f64,
}

fn config(arch: &str) -> Result<BertConfig> {
    let base = BertConfig::default();
    Ok(match arch {
        "bert-base" => base,
        "minilm" => BertConfig {
            hidden_size: 384,
            num_hidden_layers: 6,
            intermediate_size: 1536,
            ..base
        },
        "tiny" => BertConfig {
            vocab_size: 99,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 37,
            max_position_embeddings: 64,
            ..base
        },
        path => BertConfig::from_file(path)
            .with_context(|| format!("--arch {path:?} is neither a known shape nor a config"))?,
    }
    .with_num_labels(2))
}

/// A fixed pair batch: random word ids, segment 0 then 1, no padding, labels alternating.
fn batch(cfg: &StepsCmd, vocab: usize, device: &Device) -> ([Tensor<2, Int>; 3], BatchLabels) {
    let (b, t) = (cfg.batch, cfg.seq_len);
    let mut state = cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let ids: Vec<i64> = (0..b * t)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            1 + (state % (vocab as u64 - 1)) as i64
        })
        .collect();
    let types: Vec<i64> = (0..b * t).map(|i| i64::from(i % t >= t / 2)).collect();
    let tensor = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, [b, t]), device);
    let labels = BatchLabels::Class((0..b).map(|i| (i % 2) as i64).collect());
    ([tensor(ids), tensor(types), tensor(vec![1; b * t])], labels)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The random model with its projections laid out as a loaded checkpoint holds them (a
/// transposed view of a contiguous `(out, in)` buffer), as real runs start and as merged models
/// end up.
fn original(
    cmd: &StepsCmd,
    config: &BertConfig,
    device: &Device,
) -> Result<BertForSequenceClassification> {
    device.seed(cmd.seed);
    let mut model = BertForSequenceClassification::new(config, device);
    for path in model.bert.linear_paths() {
        let linear = model.bert.linear(path);
        let weight = Tensor::<2>::from_data(linear.weight_out_in().into_data(), device);
        let hf = ProjLinear::from_hf(weight, linear.bias());
        model.bert.set_linear(path, hf)?;
    }
    Ok(model)
}

/// Median seconds of a forward pass (inference mode) over the fixed batch.
fn infer_time(cmd: &StepsCmd, model: &BertForSequenceClassification, device: &Device) -> f64 {
    let ([ids, types, mask], _) = batch(cmd, model.config().vocab_size, device);
    let mut times = Vec::with_capacity(cmd.steps);
    for step in 0..cmd.warmup + cmd.steps {
        let t0 = Instant::now();
        let logits = model.forward(ids.clone(), types.clone(), mask.clone());
        let _ = logits.into_data();
        if step >= cmd.warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
    }
    median(times)
}

fn run_variant(cmd: &StepsCmd, variant: &str, config: &BertConfig, device: &Device) -> Result<Row> {
    let train_device = device.clone().autodiff();
    let mut model = original(cmd, config, &train_device)?;
    if variant != "dense" {
        let (preset, targets) = variant
            .split_once('/')
            .with_context(|| format!("variant {variant:?}: expected `dense` or preset/targets"))?;
        let paths = mpo_paths(&model, targets, None)?;
        model
            .bert
            .over_parameterize(&paths, &preset.parse()?, CoreTraining::All)?;
    }
    let params_train = model.num_params();
    let mut optim = build_optimizer(
        AdamWParams {
            weight_decay: 0.01,
            ..AdamWParams::default()
        },
        1.0,
    );
    let (inputs, labels) = batch(cmd, config.vocab_size, &train_device);
    let mut times = Vec::with_capacity(cmd.steps);
    let mut final_loss = f64::NAN;
    for step in 0..cmd.warmup + cmd.steps {
        let t0 = Instant::now();
        let (next, loss, _) = opf_train::train_step(
            model,
            &mut optim,
            inputs.clone(),
            &labels,
            2e-5,
            1.0,
            &train_device,
        )
        .map_err(|e| anyhow::anyhow!("{variant}: non-finite loss {}", e.0))?;
        model = next;
        train_device.sync()?;
        if step >= cmd.warmup {
            times.push(t0.elapsed().as_secs_f64());
        }
        final_loss = loss;
    }
    let mut merged = model.valid();
    merged.bert.merge_mpo();
    Ok(Row {
        variant: variant.to_string(),
        params_train,
        params_merged: merged.num_params(),
        step_s: median(times),
        infer_s: infer_time(cmd, &merged, device),
        final_loss,
    })
}

/// Runs `opf bench steps`.
pub fn steps(cmd: StepsCmd) -> Result<()> {
    if cmd.steps == 0 || cmd.batch == 0 || cmd.seq_len < 2 {
        bail!("--steps and --batch must be positive and --seq-len at least 2");
    }
    let config = config(&cmd.arch)?;
    if cmd.seq_len > config.max_position_embeddings {
        bail!(
            "--seq-len {} exceeds the model's {} positions",
            cmd.seq_len,
            config.max_position_embeddings
        );
    }
    let device = backend::device(&cmd.device)?;
    let precision = cmd.precision();
    precision.check(&device.clone().autodiff())?;
    let _autocast = precision.autocast();
    let mut rows = Vec::new();
    for variant in cmd.variants.split(',').map(str::trim) {
        let row = run_variant(&cmd, variant, &config, &device)?;
        if !cmd.json {
            eprintln!(
                "{:<20} step {:>9.2} ms  infer {:>8.2} ms  loss {:.4}",
                row.variant,
                row.step_s * 1e3,
                row.infer_s * 1e3,
                row.final_loss
            );
        }
        rows.push(row);
    }
    // Timed after the variants, on a warm process, like the merged models.
    let original_infer_s = infer_time(&cmd, &original(&cmd, &config, &device)?, &device);
    if cmd.json {
        let out = serde_json::json!({
            "device": format!("{device:?}"),
            "arch": cmd.arch,
            "precision": precision,
            "batch": cmd.batch,
            "seq_len": cmd.seq_len,
            "steps": cmd.steps,
            "warmup": cmd.warmup,
            "original_infer_s": original_infer_s,
            "rows": rows,
        });
        println!("{out}");
        return Ok(());
    }
    let dense = rows.iter().find(|r| r.variant == "dense");
    println!(
        "opf bench steps | {device:?} | {} | {precision} | batch {} × {} tokens | {} timed steps (+{} warm-up), median",
        cmd.arch, cmd.batch, cmd.seq_len, cmd.steps, cmd.warmup
    );
    println!(
        "original model (untrained, as loaded): inference {:.2} ms; `infer` is the trained model \
         after merging, `infer ×` relative to the original",
        original_infer_s * 1e3
    );
    println!(
        "{:<20} {:>12} {:>12} {:>10} {:>10} {:>9} {:>9}",
        "variant", "params train", "params test", "step ms", "infer ms", "step ×", "infer ×"
    );
    for r in &rows {
        let ratio = |a: f64, b: Option<f64>| b.map_or("-".to_string(), |b| format!("{:.3}", a / b));
        println!(
            "{:<20} {:>12} {:>12} {:>10.2} {:>10.2} {:>9} {:>9}",
            r.variant,
            r.params_train,
            r.params_merged,
            r.step_s * 1e3,
            r.infer_s * 1e3,
            ratio(r.step_s, dense.map(|d| d.step_s)),
            ratio(r.infer_s, Some(original_infer_s)),
        );
    }
    Ok(())
}
