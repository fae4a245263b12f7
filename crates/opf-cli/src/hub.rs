//! `--model` resolution: a local directory, or a Hugging Face hub id looked up in the standard
//! cache (`HF_HOME`, default `~/.cache/huggingface`) and downloaded when online.
//!
//! hf-hub 1.0 ignores `HF_HUB_OFFLINE`, so it is honoured here by asking for cached files only.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Files a BERT-style model directory needs.
pub const MODEL_FILES: [&str; 3] = ["config.json", "model.safetensors", "tokenizer.json"];

/// Whether `HF_HUB_OFFLINE` asks for cache-only resolution (`1`, `true`, `yes`, `on`).
pub fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE")
        .map(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on"))
        .unwrap_or(false)
}

/// Resolves `model` to a directory holding [`MODEL_FILES`].
pub fn resolve_model(model: &str, offline: bool) -> Result<PathBuf> {
    let local = Path::new(model);
    if local.is_dir() {
        for f in MODEL_FILES {
            if !local.join(f).is_file() {
                bail!("model directory {} has no {f}", local.display());
            }
        }
        return Ok(local.to_path_buf());
    }
    let Some((owner, name)) = model.split_once('/') else {
        bail!(
            "--model {model:?} is neither a directory nor a hub id of the form owner/name \
             (e.g. sentence-transformers/all-MiniLM-L6-v2)"
        );
    };
    let client = hf_hub::HFClientSync::new().context("creating the Hugging Face client")?;
    let repo = client.model(owner, name);
    let mut dir = None;
    for f in MODEL_FILES {
        let path = repo
            .download_file()
            .filename(f)
            .local_files_only(offline)
            .send()
            .with_context(|| {
                let hint = if offline {
                    " (HF_HUB_OFFLINE is set: only the local cache was searched; check HF_HOME)"
                } else {
                    ""
                };
                format!("resolving {f} of {model} from the Hugging Face hub{hint}")
            })?;
        dir = path.parent().map(Path::to_path_buf);
    }
    dir.context("empty model file list")
}
