//! T5 against Hugging Face `transformers`, on the two tiny random checkpoints written by
//! `crates/opf-models/scripts/gen_t5_fixtures.py` (`tiny-t5`: relu, tied head; `tiny-t5-gated`:
//! gated-gelu, untied head, 3 decoder blocks), plus checkpoint errors and OPF on T5.
//!
//! Tolerances: encoder states and logits within `1e-4` of the reference, max absolute error
//! over max absolute reference value (the fixtures are rounded to 7 significant digits); losses
//! within `1e-5` absolute; greedy generation token-identical. OPF: the over-parameterized and
//! merged models within `1e-5` relative Frobenius error of the dense / MPO forms (f32).
//!
//! The export test writes `opf_inputs.json` and `opf_logits.json` next to the checkpoint for
//! `crates/opf-models/scripts/check_t5_export.py`; set `OPF_EXPORT_DIR` to keep them
//! (`$OPF_EXPORT_DIR/tiny-t5`, `$OPF_EXPORT_DIR/tiny-t5-gated`).

mod common;

use std::path::{Path, PathBuf};

use burn::prelude::*;
use mpo_core::Preset;
use opf_models::{
    CoreTraining, ModelError, T5ForConditionalGeneration, T5LinearKind, T5LinearPath, T5StackKind,
};

/// Max error of outputs relative to the largest reference value.
const PARITY_TOLERANCE: f64 = 1e-4;
/// Absolute error allowed on the mean token losses.
const LOSS_TOLERANCE: f64 = 1e-5;
/// Relative Frobenius error allowed between mathematically equal models.
const OPF_TOLERANCE: f64 = 1e-5;

const FIXTURES: [&str; 2] = ["tiny-t5", "tiny-t5-gated"];

type Model = T5ForConditionalGeneration;

fn load(name: &str) -> Model {
    Model::load(common::fixtures().join(name), None, &Device::flex())
        .unwrap_or_else(|err| panic!("{name}: {err}"))
        .0
}

struct Batch {
    input_ids: Tensor<2, Int>,
    attention_mask: Tensor<2, Int>,
    labels: Tensor<2, Int>,
    decoder_input_ids: Tensor<2, Int>,
}

fn batch(fixture: &serde_json::Value) -> Batch {
    let device = Device::flex();
    Batch {
        input_ids: common::int_tensor(&fixture["input_ids"], &device),
        attention_mask: common::int_tensor(&fixture["attention_mask"], &device),
        labels: common::int_tensor(&fixture["labels"], &device),
        decoder_input_ids: common::int_tensor(&fixture["decoder_input_ids"], &device),
    }
}

fn logits(model: &Model, b: &Batch) -> Tensor<3> {
    model.forward(
        b.input_ids.clone(),
        b.attention_mask.clone(),
        b.decoder_input_ids.clone(),
    )
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().unwrap()
}

/// ‖a − b‖_F / ‖b‖_F in f64.
fn rel_err<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f64 {
    assert_eq!(a.dims(), b.dims());
    let (a, b) = (to_vec(a), to_vec(b));
    let num: f64 = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den).sqrt()
}

fn ints(t: Tensor<2, Int>) -> Vec<Vec<i64>> {
    let [_, cols] = t.dims();
    let flat: Vec<i64> = t.into_data().convert::<i64>().try_into_vec().unwrap();
    flat.chunks(cols).map(<[i64]>::to_vec).collect()
}

// ------------------------------------------------------------------------------------------------
// Parity with transformers
// ------------------------------------------------------------------------------------------------

#[test]
fn tiny_t5_matches_transformers() {
    for name in FIXTURES {
        let fixture = common::read_json(&format!("{name}.json"));
        let model = load(name);
        let b = batch(&fixture);
        assert_eq!(
            model.shift_right(b.labels.clone()).into_data(),
            b.decoder_input_ids.clone().into_data()
        );

        let encoded = model.encode(b.input_ids.clone(), b.attention_mask.clone());
        let encoder_error = common::relative_error(encoded, &fixture["encoder_last_hidden_state"]);
        let out = logits(&model, &b);
        let logits_error = common::relative_error(out.clone(), &fixture["logits"]);
        let loss = model
            .loss(out.clone(), b.labels.clone(), 0.0)
            .into_scalar::<f64>();
        let smoothed = model.loss(out, b.labels.clone(), 0.1).into_scalar::<f64>();
        let loss_error = (loss - fixture["loss"].as_f64().unwrap()).abs();
        let smoothed_error =
            (smoothed - fixture["loss_label_smoothing_0.1"].as_f64().unwrap()).abs();
        println!(
            "{name}: encoder {encoder_error:.3e}, logits {logits_error:.3e} (max relative); \
             loss {loss_error:.3e}, smoothed loss {smoothed_error:.3e} (absolute)"
        );
        assert!(
            encoder_error < PARITY_TOLERANCE,
            "{name} encoder {encoder_error}"
        );
        assert!(
            logits_error < PARITY_TOLERANCE,
            "{name} logits {logits_error}"
        );
        assert!(loss_error < LOSS_TOLERANCE, "{name} loss {loss_error}");
        assert!(
            smoothed_error < LOSS_TOLERANCE,
            "{name} smoothed {smoothed_error}"
        );

        let generated = model.generate_greedy(b.input_ids, b.attention_mask, 8);
        let expected: Vec<Vec<i64>> = serde_json::from_value(fixture["generated"].clone()).unwrap();
        assert_eq!(ints(generated), expected, "{name} greedy generation");
        assert_eq!(
            model.num_params(),
            fixture["num_params"].as_u64().unwrap() as usize,
            "{name} parameter count"
        );
    }
}

#[test]
fn generation_stops_when_every_row_is_finished() {
    let fixture = common::read_json("tiny-t5.json");
    let model = load("tiny-t5");
    let b = batch(&fixture);
    // Row 0 of the fixture emits eos at its second new token.
    let first = |t: Tensor<2, Int>| t.narrow(0, 0, 1);
    let generated = model.generate_greedy(first(b.input_ids), first(b.attention_mask), 8);
    let expected: Vec<Vec<i64>> = serde_json::from_value(fixture["generated"].clone()).unwrap();
    let eos = fixture["eos_token_id"].as_i64().unwrap();
    let row = &expected[0];
    let stop = row.iter().position(|t| *t == eos).unwrap();
    assert_eq!(ints(generated), vec![row[..=stop].to_vec()]);
}

// ------------------------------------------------------------------------------------------------
// Checkpoint errors
// ------------------------------------------------------------------------------------------------

/// A copy of fixture `name` whose tensors went through `edit`.
fn edited(name: &str, edit: impl FnOnce(&mut common::Tensors)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let source = common::fixtures().join(name);
    std::fs::copy(source.join("config.json"), dir.path().join("config.json")).unwrap();
    let mut tensors = common::read_tensors(&source.join("model.safetensors"));
    edit(&mut tensors);
    common::write_tensors(&dir.path().join("model.safetensors"), &tensors);
    dir
}

fn load_err(dir: &Path) -> ModelError {
    match Model::load(dir, None, &Device::flex()) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(err) => err,
    }
}

#[test]
fn missing_tensor_is_named() {
    for key in [
        "decoder.block.1.layer.1.EncDecAttention.k.weight",
        "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
        "decoder.final_layer_norm.weight",
    ] {
        let dir = edited("tiny-t5", |t| {
            t.remove(key).unwrap();
        });
        match load_err(dir.path()) {
            ModelError::MissingTensor { name, .. } => assert_eq!(name, key),
            other => panic!("expected MissingTensor, got {other:?}"),
        }
    }
    let dir = edited("tiny-t5-gated", |t| {
        t.remove("lm_head.weight").unwrap();
    });
    match load_err(dir.path()) {
        ModelError::MissingTensor { name, .. } => assert_eq!(name, "lm_head.weight"),
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
fn misshaped_and_unexpected_tensors_are_named() {
    let key = "encoder.block.1.layer.1.DenseReluDense.wi.weight";
    let dir = edited("tiny-t5", |t| {
        let (dtype, _, bytes) = t.remove(key).unwrap();
        t.insert(key.into(), (dtype, vec![32, 37], bytes));
    });
    match load_err(dir.path()) {
        ModelError::ShapeMismatch {
            name,
            expected,
            found,
        } => {
            assert_eq!(name, key);
            assert_eq!((expected, found), (vec![37, 32], vec![32, 37]));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
    let extra = "encoder.block.1.layer.0.SelfAttention.relative_attention_bias.weight";
    let dir = edited("tiny-t5", |t| {
        let table =
            t["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].clone();
        t.insert(extra.into(), table);
    });
    match load_err(dir.path()) {
        ModelError::UnexpectedTensor { name, .. } => assert_eq!(name, extra),
        other => panic!("expected UnexpectedTensor, got {other:?}"),
    }
}

#[test]
fn ties_are_accepted_and_reported_unused() {
    // What transformers 4 wrote: the stacks' embeddings and the tied head, equal to `shared`.
    let dir = edited("tiny-t5", |t| {
        let shared = t["shared.weight"].clone();
        for key in [
            "encoder.embed_tokens.weight",
            "decoder.embed_tokens.weight",
            "lm_head.weight",
        ] {
            t.insert(key.into(), shared.clone());
        }
    });
    let (model, report) = Model::load(dir.path(), None, &Device::flex()).unwrap();
    assert!(model.lm_head.is_none());
    assert_eq!(report.unused.len(), 3, "{report}");
    let fixture = common::read_json("tiny-t5.json");
    let b = batch(&fixture);
    assert_eq!(
        logits(&model, &b).into_data(),
        logits(&load("tiny-t5"), &b).into_data()
    );
}

// ------------------------------------------------------------------------------------------------
// OPF
// ------------------------------------------------------------------------------------------------

#[test]
fn linear_paths_cover_every_projection_and_parse_back() {
    let model = load("tiny-t5-gated");
    let paths = model.linear_paths();
    // Encoder: 4 attention + 3 feed-forward per block; decoder: 8 attention + 3.
    assert_eq!(paths.len(), 2 * 7 + 3 * 11);
    let names: Vec<String> = paths.iter().map(ToString::to_string).collect();
    assert_eq!(names[0], "encoder.block.0.layer.0.SelfAttention.q");
    assert_eq!(names[4], "encoder.block.0.layer.1.DenseReluDense.wi_0");
    assert!(names.contains(&"decoder.block.1.layer.1.EncDecAttention.k".to_string()));
    assert_eq!(
        names.last().unwrap(),
        "decoder.block.2.layer.2.DenseReluDense.wo"
    );
    let tensors: Vec<String> = model.hf_tensors().into_iter().map(|(n, _)| n).collect();
    for (path, name) in paths.iter().zip(&names) {
        assert_eq!(&name.parse::<T5LinearPath>().unwrap(), path);
        assert!(tensors.contains(&format!("{name}.weight")), "{name}");
    }
    let cross_k = model.linear(T5LinearPath::new(
        T5StackKind::Decoder,
        1,
        T5LinearKind::CrossK,
    ));
    assert_eq!((cross_k.d_input(), cross_k.d_output()), (16, 16));
    for bad in [
        "encoder.block.0.layer.1.EncDecAttention.k",
        "decoder.block.0.layer.1.DenseReluDense.wi",
        "encoder.block.x.layer.0.SelfAttention.q",
        "block.0.layer.0.SelfAttention.q",
    ] {
        assert!(
            matches!(bad.parse::<T5LinearPath>(), Err(ModelError::ParseLinearPath(s)) if s == bad),
            "{bad}"
        );
    }
}

#[test]
fn over_parameterized_t5_is_exact_and_merges_back() {
    for name in FIXTURES {
        let fixture = common::read_json(&format!("{name}.json"));
        let b = batch(&fixture);
        let dense = load(name);
        let reference = logits(&dense, &b);
        for preset in ["opf:3", "balanced:3"] {
            let preset: Preset = preset.parse().unwrap();
            let mut model = dense.clone();
            let paths = model.linear_paths();
            let done = model
                .over_parameterize(&paths, &preset, CoreTraining::All)
                .unwrap();
            assert_eq!(done.len(), paths.len());
            assert_eq!(model.mpo_paths(), paths);
            assert!(model.num_params() > dense.num_params());
            let mpo_logits = logits(&model, &b);
            let error = rel_err(mpo_logits.clone(), reference.clone());
            println!("{name} {preset}: MPO vs dense logits {error:.3e}");
            assert!(error < OPF_TOLERANCE, "{name} {preset}: {error}");

            model.merge_mpo();
            assert!(model.mpo_paths().is_empty());
            assert_eq!(model.num_params(), dense.num_params());
            let error = rel_err(logits(&model, &b), mpo_logits);
            println!("{name} {preset}: merged vs MPO logits {error:.3e}");
            assert!(error < OPF_TOLERANCE, "{name} {preset}: {error}");
        }
    }
}

/// Where the export test writes: `$OPF_EXPORT_DIR/{name}` if set, else a temporary directory.
fn export_dir(name: &str) -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("OPF_EXPORT_DIR") {
        Some(root) => (PathBuf::from(root).join(name), None),
        None => {
            let tmp = tempfile::tempdir().unwrap();
            (tmp.path().join(name), Some(tmp))
        }
    }
}

#[test]
fn merged_export_reloads_with_identical_logits() {
    for name in FIXTURES {
        let fixture = common::read_json(&format!("{name}.json"));
        let b = batch(&fixture);
        let mut model = load(name);
        let paths = model.linear_paths();
        model
            .over_parameterize(&paths, &"opf:3".parse().unwrap(), CoreTraining::All)
            .unwrap();
        model.merge_mpo();
        let expected = logits(&model, &b);

        let (dir, _guard) = export_dir(name);
        model.save_pretrained(&dir).unwrap();
        let (reloaded, report) = Model::load(&dir, None, &Device::flex()).unwrap();
        assert!(report.unused.is_empty(), "{report}");
        assert_eq!(reloaded.lm_head.is_some(), model.lm_head.is_some());
        for ((n1, a), (n2, b)) in model.hf_tensors().iter().zip(reloaded.hf_tensors().iter()) {
            assert_eq!(n1, n2);
            a.assert_eq(b, true);
        }
        let got = logits(&reloaded, &b);
        let error = rel_err(got, expected.clone());
        assert!(error < OPF_TOLERANCE, "{name}: reload {error}");

        let inputs = serde_json::json!({
            "input_ids": fixture["input_ids"],
            "attention_mask": fixture["attention_mask"],
            "decoder_input_ids": fixture["decoder_input_ids"],
        });
        std::fs::write(dir.join("opf_inputs.json"), inputs.to_string()).unwrap();
        let out = serde_json::json!({
            "shape": expected.dims().to_vec(),
            "data": to_vec(expected),
        });
        std::fs::write(dir.join("opf_logits.json"), out.to_string()).unwrap();
    }
}
