//! `cargo xtask bench train`: training and evaluation throughput of MiniLM-L6 on MRPC, opf (dense
//! and OPF variants, on the CPU backend or with `--backend tch` on LibTorch) against
//! `../shared/reference/hf_mrpc.py` (PyTorch eager) in the same run, same thread count, same
//! recipe, printed as examples/second, padded tokens/second and ratios.
//!
//! Every variant trains `--steps` optimizer steps (batch 32) on the first `32·steps` MRPC training
//! pairs and then evaluates the 408 dev pairs; the timed opf dev pass is the one after training,
//! on the merged model, so the OPF rows give merged-inference time / dense inference time.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;

/// Arguments of `cargo xtask bench train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Optimizer steps per variant (batch 32).
    #[arg(long, default_value_t = 20)]
    steps: usize,
    /// Threads for every side (RAYON_NUM_THREADS / torch.set_num_threads).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// OPF variants as `preset/targets` (e.g. `opf:5/all`, `opf:15/ffn`), comma separated.
    #[arg(long, default_value = "balanced:5/all,opf:15/ffn")]
    opf: String,
    /// Skip the PyTorch reference.
    #[arg(long)]
    no_reference: bool,
    /// Backend of the opf rows: `cpu` (burn-flex, the default) or `tch` (LibTorch on the CPU;
    /// build-time `LIBTORCH_USE_PYTORCH=1` with torch 2.9.0 and its `torch/lib` on
    /// `LD_LIBRARY_PATH`, see the README).
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "tch"])]
    backend: String,
}

struct Row {
    name: String,
    train_eps: f64,
    /// Padded training tokens per second: the batches differ between opf and the reference
    /// (different shuffles), so this is the rate with padding differences taken out.
    train_tps: f64,
    eval_eps: f64,
    params: String,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "n/a".into())
}

fn run_opf(
    root: &Path,
    work: &Path,
    args: &TrainArgs,
    name: &str,
    extra: &[String],
) -> anyhow::Result<Row> {
    let out = work.join(name.replace([':', '/'], "_"));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .env("RAYON_NUM_THREADS", args.threads.to_string())
        .args(["run", "--quiet", "-p", "opf-cli"]);
    if args.backend == "tch" {
        // LibTorch's intra-op pool, like torch.set_num_threads in the reference.
        cmd.args(["--features", "tch"])
            .env("OMP_NUM_THREADS", args.threads.to_string());
    }
    cmd.args(["--", "glue", "MRPC", "--device", &args.backend, "--config"])
        .arg(root.join("configs/mrpc.toml"))
        .args(["--num-train-epochs", "1", "--logging-steps", "1"])
        .args(["--max-train-samples", &(32 * args.steps).to_string()])
        .arg("--output-dir")
        .arg(&out)
        .args(extra);
    let output = cmd.output().context("running opf glue")?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "opf glue ({name}) failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let metrics: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("metrics.json")).context("reading metrics.json")?,
    )?;
    // Every step counts, the first (allocation, warm-up) included, as in the reference's
    // per-epoch rate.
    let logs = metrics["log"].as_array().context("log entries")?;
    let (mut examples, mut tokens, mut seconds) = (0.0, 0.0, 0.0);
    for l in logs {
        let n = l["examples"]
            .as_f64()
            .context("`examples` in the training log (an opf binary from before it was logged?)")?;
        examples += n;
        tokens += l["padded_tokens"].as_f64().context("padded tokens")?;
        seconds += n / l["examples_per_second"].as_f64().context("rate")?;
    }
    let (train_eps, train_tps) = (examples / seconds, tokens / seconds);
    // The dev pass after training runs on the merged (dense) model; the CLI prints its rate.
    let eval_eps = stdout
        .lines()
        .find(|l| l.starts_with("dev (dev"))
        .and_then(|l| l.rsplit('|').next())
        .and_then(|r| r.trim().trim_end_matches("ex/s").trim().parse::<f64>().ok())
        .context("merged dev evaluation rate in the opf output")?;
    let params = stdout
        .lines()
        .find(|l| l.starts_with("parameters:"))
        .unwrap_or("")
        .to_string();
    Ok(Row {
        name: name.to_string(),
        train_eps,
        train_tps,
        eval_eps,
        params,
    })
}

fn run_reference(root: &Path, work: &Path, args: &TrainArgs) -> anyhow::Result<Row> {
    let python = root.join(".venv/bin/python");
    let script = root.join("../shared/reference/hf_mrpc.py");
    if !python.exists() || !script.exists() {
        bail!(
            "the reference needs {} (python3 -m venv .venv && .venv/bin/pip install torch==2.9.0 \
             transformers numpy scikit-learn) and {}",
            python.display(),
            script.display()
        );
    }
    let json = work.join("hf_mrpc.json");
    let status = Command::new(&python)
        .arg(&script)
        .args(["--epochs", "1", "--max-steps", &args.steps.to_string()])
        .args(["--threads", &args.threads.to_string(), "--json"])
        .arg(&json)
        .status()
        .context("running hf_mrpc.py")?;
    if !status.success() {
        bail!("hf_mrpc.py failed ({status})");
    }
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json)?)?;
    let e = &v["epochs"][0];
    Ok(Row {
        name: "pytorch (hf_mrpc.py)".into(),
        train_eps: e["train_examples_per_sec"].as_f64().context("train rate")?,
        train_tps: e["train_padded_tokens"].as_f64().context("train tokens")?
            / e["train_seconds"].as_f64().context("train seconds")?,
        eval_eps: e["eval_examples_per_sec"].as_f64().context("eval rate")?,
        params: format!("parameters: {}", v["n_params"]),
    })
}

/// Runs the benchmark and prints the table.
pub fn run(args: &TrainArgs) -> anyhow::Result<()> {
    let root: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask has a parent directory")?
        .to_path_buf();
    let work = root.join("target/bench-train");
    std::fs::create_dir_all(&work)?;
    println!("load before: {}", loadavg());
    println!("opf backend: {}", args.backend);
    let mut rows = vec![run_opf(&root, &work, args, "opf dense", &[])?];
    for variant in args.opf.split(',').filter(|v| !v.is_empty()) {
        let (preset, targets) = variant.split_once('/').unwrap_or((variant, "all"));
        let extra = vec![
            "--mpo-preset".to_string(),
            preset.to_string(),
            "--mpo-targets".to_string(),
            targets.to_string(),
        ];
        rows.push(run_opf(
            &root,
            &work,
            args,
            &format!("opf {variant}"),
            &extra,
        )?);
    }
    if !args.no_reference {
        rows.push(run_reference(&root, &work, args)?);
    }
    println!("load after: {}", loadavg());
    let dense = (rows[0].train_eps, rows[0].eval_eps);
    println!(
        "\n{:<24} {:>10} {:>12} {:>10} {:>14} {:>14}",
        "variant", "train ex/s", "train tok/s", "eval ex/s", "train step ×", "eval time ×"
    );
    for r in &rows {
        println!(
            "{:<24} {:>10.2} {:>12.0} {:>10.2} {:>14.3} {:>14.3}",
            r.name,
            r.train_eps,
            r.train_tps,
            r.eval_eps,
            dense.0 / r.train_eps,
            dense.1 / r.eval_eps
        );
    }
    println!("(× columns: time relative to opf dense; > 1 is slower)");
    if !args.no_reference {
        let reference = &rows[rows.len() - 1];
        println!(
            "opf dense / PyTorch: train {:.3} (examples/s), {:.3} (padded tokens/s); eval {:.3}",
            rows[0].train_eps / reference.train_eps,
            rows[0].train_tps / reference.train_tps,
            rows[0].eval_eps / reference.eval_eps
        );
    }
    for r in &rows {
        println!("{}: {}", r.name, r.params);
    }
    Ok(())
}
