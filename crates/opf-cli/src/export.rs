//! `opf export <RUN_DIR>`: a run's checkpoint (dense, or holding MPO cores) becomes a Hugging Face
//! model directory with the original architecture: every MPO layer is contracted back into a
//! dense matrix, so the export holds no MPO tensor and loads in `transformers`
//! (`AutoModelForSequenceClassification`, T5 `AutoModelForSeq2SeqLM`) and in opf. `opf glue` writes the same directory at the
//! end of a run through [`write_hf_dir`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use opf_glue::Task;
use opf_models::{BartForSequenceClassification, BertForSequenceClassification, Precision};
use opf_train::t5::T5TextToText;
use opf_train::{RunDir, TrainerState};
use serde::{Deserialize, Serialize};

use crate::arch::{Architecture, GlueModel};
use crate::backend;
use crate::hub;

/// Tokenizer files copied next to the weights when the base model has them.
const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
    "special_tokens_map.json",
];

/// Name of the run manifest `opf glue` writes into its output directory.
pub const MANIFEST: &str = "run.json";

/// What `opf glue` records about a run so that it can be exported later.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    /// The GLUE task.
    pub task: String,
    /// `--model` as given (directory or hub id).
    pub model: String,
    /// The directory it resolved to.
    pub model_dir: PathBuf,
    /// Precision of the training matrix products (`--bf16` / `--fp16`; f32 for runs of older
    /// opf builds). The checkpoint and the export hold f32 weights either way.
    #[serde(default)]
    pub precision: Precision,
}

impl RunManifest {
    /// Writes `run.json` into `run_dir`, creating it.
    pub fn write(&self, run_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
        let path = run_dir.join(MANIFEST);
        std::fs::write(&path, serde_json::to_string_pretty(self)?)
            .with_context(|| format!("writing {}", path.display()))
    }

    /// Reads `run.json` from `run_dir`; `None` when the run has none (runs of older opf builds).
    fn read(run_dir: &Path) -> Result<Option<Self>> {
        let path = run_dir.join(MANIFEST);
        if !path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let manifest =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        Ok(Some(manifest))
    }
}

/// Which checkpoint of a run to export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Which {
    /// The best model on dev (`checkpoint/best.bpk`).
    Best,
    /// The last saved training state (`checkpoint/model.bpk`).
    Last,
}

/// `opf export` arguments.
#[derive(Debug, clap::Args)]
pub struct ExportCmd {
    /// Output directory of an `opf glue` run (holds `checkpoint/`, `metrics.json`, `run.json`).
    pub run_dir: PathBuf,
    /// Which checkpoint to export.
    #[arg(long, value_enum, default_value = "best")]
    pub checkpoint: Which,
    /// The base model the run fine-tuned (directory or hub id); default: the one in `run.json`.
    #[arg(long)]
    pub model: Option<String>,
    /// Output directory; default `<RUN_DIR>/model`.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// How a model came to be exported, for the printed summary and the README.
pub struct Provenance<'a> {
    /// Where the base model's config and tokenizer came from.
    pub model_dir: &'a Path,
    /// The run directory (its `metrics.json` goes into the README).
    pub run_dir: &'a Path,
    /// Parameters while training (dense + MPO cores).
    pub train_params: usize,
    /// How many projections were MPO cores before the merge.
    pub merged_layers: usize,
}

/// Runs `opf export`.
pub fn run(cmd: ExportCmd) -> Result<()> {
    let run_dir = RunDir::new(&cmd.run_dir);
    let manifest = RunManifest::read(&cmd.run_dir)?;
    let model_id = match (&cmd.model, &manifest) {
        (Some(model), _) => model.clone(),
        (None, Some(m)) => m.model.clone(),
        (None, None) => bail!(
            "{} has no {MANIFEST}: name the base model the run fine-tuned with --model",
            cmd.run_dir.display()
        ),
    };
    let model_dir = hub::resolve_model(&model_id, hub::offline_from_env())?;
    let file = cmd.run_dir.join("checkpoint").join(match cmd.checkpoint {
        Which::Best => "best.bpk",
        Which::Last => "model.bpk",
    });
    if !file.is_file() {
        bail!(
            "no checkpoint {}: is {} the output directory of an `opf glue` run?",
            file.display(),
            cmd.run_dir.display()
        );
    }
    let export = match Architecture::of_model_dir(&model_dir)? {
        Architecture::Bert => export_checkpoint::<BertForSequenceClassification>,
        Architecture::Bart => export_checkpoint::<BartForSequenceClassification>,
        Architecture::T5 => export_checkpoint::<T5TextToText>,
    };
    let out = cmd.output.unwrap_or_else(|| cmd.run_dir.join("model"));
    export(&file, &model_dir, run_dir.root(), &out)
}

/// Loads the run checkpoint `file` of base model `model_dir` as an `M`, merges its MPO layers
/// and writes it to `out` with [`write_hf_dir`].
fn export_checkpoint<M: GlueModel>(
    file: &Path,
    model_dir: &Path,
    run_dir: &Path,
    out: &Path,
) -> Result<()> {
    let device = backend::device("cpu")?;
    let mut model = M::load_run_checkpoint(file, model_dir, &device)?;
    let train_params = model.num_params();
    let merged_layers = model.mpo_paths().len();
    model.merge_mpo();
    write_hf_dir(
        &model,
        out,
        &Provenance {
            model_dir,
            run_dir,
            train_params,
            merged_layers,
        },
    )
}

/// Writes `model` (which must hold no MPO layer) as a Hugging Face directory: `config.json`,
/// `model.safetensors`, the base model's tokenizer files and a README with the run's metrics.
pub(crate) fn write_hf_dir<M: GlueModel>(
    model: &M,
    out: &Path,
    from: &Provenance<'_>,
) -> Result<()> {
    if !model.mpo_paths().is_empty() {
        bail!("merge the MPO layers before exporting");
    }
    model.save_hf(out)?;
    let mut copied = vec!["config.json", "model.safetensors"];
    for f in TOKENIZER_FILES {
        let src = from.model_dir.join(f);
        if src.is_file() {
            std::fs::copy(&src, out.join(f))
                .with_context(|| format!("copying {} to {}", src.display(), out.display()))?;
            copied.push(f);
        }
    }
    let readme = readme(model, from)?;
    std::fs::write(out.join("README.md"), readme)
        .with_context(|| format!("writing {}", out.join("README.md").display()))?;
    copied.push("README.md");
    println!(
        "exported {} ({}): {} parameters, the dense architecture{}",
        out.display(),
        copied.join(", "),
        model.num_params(),
        if from.merged_layers > 0 {
            format!(
                " ({} MPO layers merged; {} parameters while training)",
                from.merged_layers, from.train_params
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// The export's README: provenance, parameter counts and the dev metrics of `metrics.json`.
fn readme<M: GlueModel>(model: &M, from: &Provenance<'_>) -> Result<String> {
    let run = RunDir::new(from.run_dir);
    let manifest = RunManifest::read(from.run_dir)?;
    let task = manifest.as_ref().map_or("a GLUE task", |m| m.task.as_str());
    let mut s = String::new();
    writeln!(s, "# Fine-tuned on {task} with opf\n")?;
    writeln!(
        s,
        "Base model: `{}`. Exported from the run in `{}`.\n",
        from.model_dir.display(),
        from.run_dir.display()
    )?;
    writeln!(
        s,
        "Architecture: {}, {}, {} parameters (the base model's own size).",
        M::CLASS,
        model.head(),
        model.num_params()
    )?;
    if from.merged_layers > 0 {
        writeln!(
            s,
            "{} projections were trained as MPO cores (over-parameterized fine-tuning, {} \
             parameters during training) and contracted back into dense matrices: inference \
             costs exactly what the original model costs.",
            from.merged_layers, from.train_params
        )?;
    }
    if run.metrics().is_file() {
        let text = std::fs::read_to_string(run.metrics())
            .with_context(|| format!("reading {}", run.metrics().display()))?;
        let state: TrainerState = serde_json::from_str(&text)
            .with_context(|| format!("parsing {}", run.metrics().display()))?;
        writeln!(s, "\n## Dev metrics\n")?;
        writeln!(s, "| step | epoch | split | loss | metrics |")?;
        writeln!(s, "|---:|---:|---|---:|---|")?;
        for e in &state.evals {
            let metrics: Vec<String> = e
                .metrics
                .iter()
                .map(|(k, v)| format!("{k} {v:.4}"))
                .collect();
            writeln!(
                s,
                "| {} | {:.2} | {} | {:.4} | {} |",
                e.step,
                e.epoch,
                e.split,
                e.loss,
                metrics.join(", ")
            )?;
        }
        if let (Some((value, step)), Some(task)) = (
            state.best,
            manifest.and_then(|m| m.task.parse::<Task>().ok()),
        ) {
            writeln!(
                s,
                "\nBest {}: {value:.4} at step {step}.",
                task.main_metric().key()
            )?;
        }
    }
    writeln!(
        s,
        "\n## Load\n\n```python\nfrom transformers import {auto}, AutoTokenizer\nmodel = \
         {auto}.from_pretrained(\"<this directory>\")\ntokenizer = \
         AutoTokenizer.from_pretrained(\"<this directory>\")\n```",
        auto = M::AUTO_CLASS
    )?;
    Ok(s)
}
