//! Parity with `transformers` on sentence-transformers/all-MiniLM-L6-v2 (a `BertModel`
//! checkpoint without `bert.` prefix or classifier), read from the Hugging Face cache.
//!
//! The cache is `$HF_HOME`, else `shared/hf` next to the workspace root; without the snapshot the
//! test prints why and passes.

mod common;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use opf_models::BertForSequenceClassification;

const TOLERANCE: f64 = 1e-4;
const REPO_DIR: &str = "models--sentence-transformers--all-MiniLM-L6-v2";

/// The snapshot directory of all-MiniLM-L6-v2, if cached.
fn snapshot() -> Option<PathBuf> {
    let hf_home = std::env::var_os("HF_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/hf"));
    let repo = hf_home.join("hub").join(REPO_DIR);
    let revision = std::fs::read_to_string(repo.join("refs/main")).ok()?;
    let dir = repo.join("snapshots").join(revision.trim());
    dir.join("model.safetensors").is_file().then_some(dir)
}

#[test]
fn minilm_matches_transformers() {
    let Some(dir) = snapshot() else {
        println!("skipped: all-MiniLM-L6-v2 is not in the Hugging Face cache (set HF_HOME)");
        return;
    };
    let device = Device::flex();
    let fixture = common::read_json("minilm.json");
    let (model, report) =
        BertForSequenceClassification::load(&dir, None, Some(2), &device).unwrap();
    println!("{report}");
    assert_eq!(report.prefix, "");
    assert_eq!(report.loaded.len(), 5 + 6 * 16 + 2);
    assert_eq!(report.initialized, ["classifier.weight", "classifier.bias"]);
    assert_eq!(report.unused, ["embeddings.position_ids"]);

    let (ids, types, mask) = common::inputs(&fixture, &device);
    let out = model.bert.forward(ids, types, mask);
    let errors = [
        (
            "last_hidden_state",
            common::relative_error(out.last_hidden_state, &fixture["last_hidden_state"]),
        ),
        (
            "pooler_output",
            common::relative_error(out.pooler_output, &fixture["pooler_output"]),
        ),
    ];
    for (name, error) in errors {
        println!("all-MiniLM-L6-v2 {name}: max relative error {error:.3e}");
        assert!(error < TOLERANCE, "{name}: {error:.3e}");
    }
}
