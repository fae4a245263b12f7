//! `cargo xtask glue <TASK> [--backend B] [opf glue flags...]`: builds the `opf` binary with the
//! chosen backend feature (in the same dev profile as the tests, so nothing is compiled twice) and
//! runs `opf glue` with the task's config from `configs/` and the default `opf` profile
//! (`configs/profiles/opf.toml`; `--profile` picks another), or with the file `--config` names
//! alone.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Backends the `opf` binary can be built with, and the cargo feature of each.
const BACKENDS: [&str; 4] = ["cpu", "wgpu", "cuda", "tch"];

/// The profile the main job runs with when none is given: OPF as measured best.
const DEFAULT_PROFILE: &str = "opf";

/// `cargo xtask glue` arguments.
#[derive(Debug, clap::Args)]
pub struct GlueTask {
    /// GLUE task: CoLA, SST-2, MRPC, STS-B, QQP, MNLI, QNLI, RTE, WNLI.
    pub task: String,
    /// Backend feature to build: cpu (default), wgpu, cuda, tch.
    #[arg(long, default_value = "cpu")]
    pub backend: String,
    /// Further `opf glue` flags (run_glue names: --model, --learning-rate, --output-dir, ...).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub rest: Vec<String>,
}

/// The config file of `task` in `configs/`, matched case-insensitively without dashes.
fn config_for(root: &Path, task: &str) -> Result<std::path::PathBuf> {
    let want = task.to_ascii_lowercase().replace('-', "");
    let path = root.join("configs").join(format!("{want}.toml"));
    if !path.is_file() {
        let mut known: Vec<String> = std::fs::read_dir(root.join("configs"))
            .context("reading configs/")?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.strip_suffix(".toml").map(str::to_owned)
            })
            .collect();
        known.sort();
        bail!(
            "unknown GLUE task {task:?}: configs/ has {}",
            known.join(", ")
        );
    }
    Ok(path)
}

/// Runs the task.
pub fn run(root: &Path, t: GlueTask) -> Result<()> {
    if !BACKENDS.contains(&t.backend.as_str()) {
        bail!(
            "unknown backend {:?}: choose one of {}",
            t.backend,
            BACKENDS.join(", ")
        );
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args(["run", "--quiet", "-p", "opf-cli"]);
    if t.backend != "cpu" {
        cmd.args(["--no-default-features", "--features", &t.backend]);
    }
    let device = match t.backend.as_str() {
        "cuda" => "cuda:0",
        other => other,
    };
    cmd.args(["--", "glue", &t.task]);
    let given = |flag: &str| {
        t.rest
            .iter()
            .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
    };
    if !given("--config") {
        cmd.arg("--config").arg(config_for(root, &t.task)?);
        if !given("--profile") {
            cmd.args(["--profile", DEFAULT_PROFILE]);
        }
    }
    if !given("--device") {
        cmd.args(["--device", device]);
    }
    cmd.args(&t.rest);
    let status = cmd.status().context("running cargo")?;
    if !status.success() {
        bail!("opf glue {} failed ({status})", t.task);
    }
    Ok(())
}
