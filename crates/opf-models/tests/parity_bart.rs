//! BART in burn against `transformers`, and OPF on BART.
//!
//! * Parity with the tiny random `BartForSequenceClassification` of
//!   `scripts/gen_bart_fixtures.py` (encoder 4 heads / ffn 37, decoder 2 heads / ffn 24, d_model
//!   16, scaled embeddings, a padded batch of sentence pairs with three `<eos>` per row): encoder
//!   and decoder last hidden states and logits within [`PARITY_TOLERANCE`] (max |a − b| /
//!   max |b|), the loss likewise.
//! * Loading: missing, misshaped, unexpected and untied tensors are errors naming the tensor;
//!   tied copies and base-model checkpoints load.
//! * OPF: every projection (self-attention, cross-attention, fc1, fc2 of both stacks)
//!   over-parameterized equals the dense model before training; merging after training gives the
//!   MPO-form logits and the dense parameter count; the merged model exports to a Hugging Face
//!   checkpoint that reloads bit for bit. Tolerances: [`TOLERANCE`] (relative Frobenius, f32).
//!
//! The export test also writes `opf_inputs.json` and `opf_logits.json` next to the checkpoint,
//! for `scripts/check_export.py`; set `OPF_EXPORT_DIR` to keep them (`$OPF_EXPORT_DIR/tiny-bart`).

mod common;

use std::path::PathBuf;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use mpo_core::Preset;
use opf_models::{
    BartForSequenceClassification, BartLinearKind, BartLinearPath, CoreTraining, Labels,
    ModelError, MpoReplacement, shift_tokens_right,
};

/// Max absolute error over max absolute reference value allowed against `transformers` (f32
/// against f32, reference rounded to 7 digits).
const PARITY_TOLERANCE: f64 = 1e-4;
/// Relative Frobenius error allowed between mathematically equal models (f32).
const TOLERANCE: f64 = 1e-5;
/// Relative Frobenius error allowed between a model and its reloaded checkpoint: the tensors
/// round-trip bit for bit (checked), but a trained weight is a contiguous `(in, out)` buffer and a
/// loaded one a transposed view, summed in another order by the matmul (as in `tests/opf.rs`).
const RELOAD_TOLERANCE: f64 = 1e-6;
/// Learning rate of the test training steps: large enough to move the logits visibly.
const LR: f64 = 1e-3;

type Model = BartForSequenceClassification;
type Batch = (Tensor<2, Int>, Tensor<2, Int>);

// ------------------------------------------------------------------------------------------------
// Helpers
// ------------------------------------------------------------------------------------------------

fn fixture() -> serde_json::Value {
    common::read_json("tiny-bart.json")
}

fn tiny(device: &Device) -> Model {
    device.seed(11);
    Model::load(common::tiny_bart_dir(), None, None, device)
        .expect("tiny BART fixture loads")
        .0
}

fn tiny_batch(device: &Device) -> Batch {
    let fixture = fixture();
    (
        common::int_tensor(&fixture["input_ids"], device),
        common::int_tensor(&fixture["attention_mask"], device),
    )
}

fn tiny_labels(device: &Device) -> Tensor<1, Int> {
    let labels: Vec<i64> = serde_json::from_value(fixture()["labels"].clone()).unwrap();
    Tensor::from_data(TensorData::new(labels, [3]), device)
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_into_vec().unwrap()
}

/// ‖a − b‖_F / ‖b‖_F, accumulated in f64.
fn rel_err<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f64 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    let (a, b) = (to_vec(a), to_vec(b));
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(&b) {
        num += (f64::from(*x) - f64::from(*y)).powi(2);
        den += f64::from(*y).powi(2);
    }
    (num / den).sqrt()
}

/// Logits, encoder and decoder states in evaluation mode.
fn eval(model: &Model, (ids, mask): &Batch) -> (Tensor<2>, Tensor<3>, Tensor<3>) {
    let model = model.valid();
    let device = model.classification_head.dense.weight.val().device();
    let (ids, mask) = (
        ids.clone().to_device(&device),
        mask.clone().to_device(&device),
    );
    let out = model.model.forward(ids.clone(), mask.clone());
    let logits = model
        .forward(ids, mask)
        .expect("fixture rows have equal <eos> counts");
    (logits, out.encoder_last_hidden_state, out.last_hidden_state)
}

fn expected_params(dense: usize, replacements: &[MpoReplacement<BartLinearPath>]) -> usize {
    let added: isize = replacements
        .iter()
        .map(|r| r.params as isize - r.shape.dense_params() as isize)
        .sum();
    (dense as isize + added) as usize
}

/// Over-parameterizes every projection with `preset` and checks the bookkeeping.
fn over_parameterize_all(model: &mut Model, preset: &str) {
    let dense = model.num_params();
    let paths = model.model.linear_paths();
    let preset: Preset = preset.parse().unwrap();
    let done = model
        .model
        .over_parameterize(&paths, &preset, CoreTraining::All)
        .unwrap_or_else(|e| panic!("{preset}: {e}"));
    assert_eq!(done.iter().map(|r| r.path).collect::<Vec<_>>(), paths);
    assert_eq!(model.model.mpo_paths(), paths);
    assert_eq!(
        model.num_params(),
        expected_params(dense, &done),
        "{preset}"
    );
}

fn train(mut model: Model, (ids, mask): &Batch, labels: &Tensor<1, Int>, steps: usize) -> Model {
    let mut optim = AdamWConfig::new().with_weight_decay(0.0).init();
    for _ in 0..steps {
        let logits = model.forward(ids.clone(), mask.clone()).unwrap();
        let loss = model.loss(logits, Labels::Classes(labels.clone()));
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(LR, model, grads);
    }
    model
}

/// A model directory with the tiny config and `tensors` as weights.
fn variant(tensors: &common::Tensors) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        common::tiny_bart_dir().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    common::write_tensors(&dir.path().join("model.safetensors"), tensors);
    dir
}

fn tiny_tensors() -> common::Tensors {
    common::read_tensors(&common::tiny_bart_dir().join("model.safetensors"))
}

fn load_err(tensors: &common::Tensors) -> ModelError {
    let dir = variant(tensors);
    Model::load(dir.path(), None, None, &Device::flex()).expect_err("the variant must not load")
}

// ------------------------------------------------------------------------------------------------
// Parity
// ------------------------------------------------------------------------------------------------

#[test]
fn tiny_bart_matches_transformers() {
    let device = Device::flex();
    let fixture = fixture();
    let (model, report) = Model::load(common::tiny_bart_dir(), None, None, &device).unwrap();
    assert_eq!(report.prefix, "model.");
    assert_eq!(report.loaded.len(), tiny_tensors().len());
    assert!(report.initialized.is_empty() && report.unused.is_empty() && report.upcast.is_empty());
    assert_eq!(model.num_labels(), 3);
    assert_eq!(
        model.num_params() as u64,
        fixture["num_parameters"].as_u64().unwrap()
    );

    let batch = tiny_batch(&device);
    let decoder_ids = shift_tokens_right(batch.0.clone(), 2);
    decoder_ids.into_data().assert_eq(
        &common::int_tensor(&fixture["decoder_input_ids"], &device).into_data(),
        true,
    );
    let (logits, encoder, decoder) = eval(&model, &batch);
    let errors = [
        (
            "encoder_last_hidden_state",
            common::relative_error(encoder, &fixture["encoder_last_hidden_state"]),
        ),
        (
            "last_hidden_state",
            common::relative_error(decoder, &fixture["last_hidden_state"]),
        ),
        (
            "logits",
            common::relative_error(logits.clone(), &fixture["logits"]),
        ),
    ];
    for (name, error) in errors {
        println!("tiny-bart {name}: max relative error {error:.3e}");
        assert!(error < PARITY_TOLERANCE, "{name}: {error:.3e}");
    }

    let loss = model
        .loss(logits, Labels::Classes(tiny_labels(&device)))
        .into_scalar::<f32>();
    let expected = fixture["loss"].as_f64().unwrap();
    println!("tiny-bart loss {loss} vs {expected}");
    assert!((f64::from(loss) - expected).abs() < PARITY_TOLERANCE * expected.abs());
}

#[test]
fn uneven_eos_counts_are_an_error() {
    let device = Device::flex();
    let model = tiny(&device);
    let ids = Tensor::<2, Int>::from_data([[0, 5, 2, 2, 6, 2], [0, 7, 8, 9, 2, 1]], &device);
    let mask = ids.clone().not_equal_elem(1).int();
    match model.forward(ids, mask) {
        Err(ModelError::EosTokens { counts }) => assert_eq!(counts, vec![3, 1]),
        other => panic!("expected EosTokens, got {other:?}"),
    }
}

// ------------------------------------------------------------------------------------------------
// Loading
// ------------------------------------------------------------------------------------------------

#[test]
fn missing_tensor_is_named() {
    let mut tensors = tiny_tensors();
    let name = "model.decoder.layers.1.encoder_attn.v_proj.weight";
    tensors.remove(name).unwrap();
    match load_err(&tensors) {
        ModelError::MissingTensor { name: missing, .. } => assert_eq!(missing, name),
        other => panic!("expected MissingTensor, got {other}"),
    }
}

#[test]
fn misshaped_tensor_is_named() {
    let mut tensors = tiny_tensors();
    let name = "model.encoder.layers.0.fc1.weight";
    tensors.insert(name.to_string(), common::f32_bytes(&[36, 16], 0.5));
    match load_err(&tensors) {
        ModelError::ShapeMismatch {
            name: found,
            expected,
            found: shape,
        } => {
            assert_eq!(found, name);
            assert_eq!((expected, shape), (vec![37, 16], vec![36, 16]));
        }
        other => panic!("expected ShapeMismatch, got {other}"),
    }
}

#[test]
fn unexpected_tensor_is_named() {
    let mut tensors = tiny_tensors();
    let name = "model.encoder.layers.0.adapter.weight";
    tensors.insert(name.to_string(), common::f32_bytes(&[4], 1.0));
    match load_err(&tensors) {
        ModelError::UnexpectedTensor { name: found, .. } => assert_eq!(found, name),
        other => panic!("expected UnexpectedTensor, got {other}"),
    }
}

#[test]
fn tied_embedding_copies_load_or_are_named() {
    let device = Device::flex();
    let reference = tiny(&device);
    let batch = tiny_batch(&device);
    let (want, ..) = eval(&reference, &batch);

    // Identical copies beside `shared` (older checkpoints, e.g. facebook/bart-base) are unused.
    let mut tensors = tiny_tensors();
    let shared = tensors["model.shared.weight"].clone();
    tensors.insert("model.encoder.embed_tokens.weight".into(), shared.clone());
    tensors.insert("model.decoder.embed_tokens.weight".into(), shared.clone());
    let dir = variant(&tensors);
    let (model, report) = Model::load(dir.path(), None, None, &device).unwrap();
    assert_eq!(
        report.unused,
        [
            "model.decoder.embed_tokens.weight",
            "model.encoder.embed_tokens.weight"
        ]
    );
    assert_eq!(rel_err(eval(&model, &batch).0, want.clone()), 0.0);

    // Without `shared`, the encoder's copy is read.
    tensors.remove("model.shared.weight");
    let dir = variant(&tensors);
    let (model, report) = Model::load(dir.path(), None, None, &device).unwrap();
    assert!(
        report
            .loaded
            .contains(&"model.encoder.embed_tokens.weight".to_string())
    );
    assert_eq!(report.unused, ["model.decoder.embed_tokens.weight"]);
    assert_eq!(rel_err(eval(&model, &batch).0, want), 0.0);

    // A copy that differs cannot be tied.
    let mut tensors = tiny_tensors();
    let (dtype, shape, _) = &shared;
    let other = common::f32_bytes(shape, 0.25);
    assert_eq!(*dtype, other.0);
    tensors.insert("model.decoder.embed_tokens.weight".into(), other);
    match load_err(&tensors) {
        ModelError::UntiedTensor { name, tied_to } => {
            assert_eq!(name, "model.decoder.embed_tokens.weight");
            assert_eq!(tied_to, "model.shared.weight");
        }
        other => panic!("expected UntiedTensor, got {other}"),
    }
}

#[test]
fn base_model_checkpoint_loads_with_fresh_head() {
    let device = Device::flex();
    // A `BartModel` checkpoint: no `model.` prefix, no head, fairseq version buffers.
    let mut tensors: common::Tensors = tiny_tensors()
        .into_iter()
        .filter_map(|(name, t)| name.strip_prefix("model.").map(|n| (n.to_string(), t)))
        .collect();
    tensors.insert("encoder.version".into(), common::f32_bytes(&[1], 2.0));
    let dir = variant(&tensors);
    let (model, report) = Model::load(dir.path(), None, Some(2), &device).unwrap();
    assert_eq!(report.prefix, "");
    assert_eq!(report.unused, ["encoder.version"]);
    assert_eq!(
        report.initialized,
        [
            "classification_head.dense.weight",
            "classification_head.dense.bias",
            "classification_head.out_proj.weight",
            "classification_head.out_proj.bias",
        ]
    );
    assert_eq!(model.num_labels(), 2);
    // The encoder-decoder is the fixture's.
    let batch = tiny_batch(&device);
    let (_, encoder, decoder) = eval(&model, &batch);
    let (_, want_encoder, want_decoder) = eval(&tiny(&device), &batch);
    assert_eq!(rel_err(encoder, want_encoder), 0.0);
    assert_eq!(rel_err(decoder, want_decoder), 0.0);
}

// ------------------------------------------------------------------------------------------------
// OPF
// ------------------------------------------------------------------------------------------------

/// Spec §8 item 7 on BART: every projection, cross-attention included, over-parameterized with
/// a generic preset, no training yet.
#[test]
fn tiny_bart_over_parameterized_equals_dense() {
    let device = Device::flex();
    let dense = tiny(&device);
    let batch = tiny_batch(&device);
    let (logits, encoder, decoder) = eval(&dense, &batch);
    for preset in ["opf:3", "balanced:3"] {
        let mut model = dense.clone();
        over_parameterize_all(&mut model, preset);
        let cross = BartLinearPath::decoder(1, BartLinearKind::CrossKey);
        assert!(model.model.linear(cross).is_mpo());
        let (l, e, d) = eval(&model, &batch);
        let errors = [
            ("logits", rel_err(l, logits.clone())),
            ("encoder", rel_err(e, encoder.clone())),
            ("decoder", rel_err(d, decoder.clone())),
        ];
        for (name, err) in errors {
            println!("tiny-bart {preset}: {name} {err:.2e}");
            assert!(err < TOLERANCE, "{preset}: {name} {err:.2e}");
        }
    }
}

/// Spec §8 item 11 on BART: after k steps in MPO form, merging keeps the logits and restores the
/// dense parameter count; the merged model exports and reloads (also in `transformers`, with
/// `scripts/check_export.py`).
#[test]
fn tiny_bart_merge_and_export() {
    let device = Device::flex().autodiff();
    let dense = tiny(&device);
    let dense_params = dense.num_params();
    let batch = tiny_batch(&device);
    let labels = tiny_labels(&device);
    let (before, ..) = eval(&dense, &batch);

    let mut model = dense.clone();
    over_parameterize_all(&mut model, "opf:3");
    let model = train(model, &batch, &labels, 3);
    let (mpo_logits, ..) = eval(&model, &batch);
    let moved = rel_err(mpo_logits.clone(), before);
    assert!(moved > 1e-3, "training moved the logits by {moved:.2e}");

    let mut merged = model.clone();
    merged.model.merge_mpo();
    assert!(merged.model.mpo_paths().is_empty());
    assert_eq!(merged.num_params(), dense_params);
    let err = rel_err(eval(&merged, &batch).0, mpo_logits);
    println!("tiny-bart opf:3: merged vs MPO logits after 3 steps {err:.2e} (moved {moved:.2e})");
    assert!(err < TOLERANCE, "{err:.2e}");

    let (dir, _guard) = export_dir();
    merged.save_pretrained(&dir).unwrap();
    let plain = Device::flex();
    let (reloaded, report) = Model::load(&dir, None, None, &plain).unwrap();
    assert!(
        report.initialized.is_empty() && report.unused.is_empty(),
        "{report}"
    );
    for ((name_a, a), (name_b, b)) in reloaded.hf_tensors().into_iter().zip(merged.hf_tensors()) {
        assert_eq!(name_a, name_b);
        assert!(a == b, "{name_a} changed in the round trip");
    }
    let want = eval(&merged, &batch).0;
    let got = eval(&reloaded, &batch).0;
    let err = rel_err(got, want.clone());
    println!("tiny-bart: reloaded vs merged logits {err:.2e}");
    assert!(err < RELOAD_TOLERANCE, "{err:.2e}");

    let rows = |t: &Tensor<2, Int>| {
        let [_, seq] = t.dims();
        let flat: Vec<i64> = t
            .clone()
            .into_data()
            .convert::<i64>()
            .try_into_vec()
            .unwrap();
        serde_json::json!(flat.chunks(seq).collect::<Vec<_>>())
    };
    let inputs = serde_json::json!({
        "input_ids": rows(&batch.0),
        "attention_mask": rows(&batch.1),
    });
    let logits = serde_json::json!({ "shape": want.dims(), "data": to_vec(want) });
    std::fs::write(dir.join("opf_inputs.json"), inputs.to_string()).unwrap();
    std::fs::write(dir.join("opf_logits.json"), logits.to_string()).unwrap();
    println!("tiny-bart: exported to {}", dir.display());
}

/// `$OPF_EXPORT_DIR/tiny-bart` (kept), else a temporary directory (removed with the guard).
fn export_dir() -> (PathBuf, Option<tempfile::TempDir>) {
    match std::env::var_os("OPF_EXPORT_DIR") {
        Some(root) => {
            let dir = PathBuf::from(root).join("tiny-bart");
            std::fs::create_dir_all(&dir).unwrap();
            (dir, None)
        }
        None => {
            let tmp = tempfile::tempdir().unwrap();
            (tmp.path().to_path_buf(), Some(tmp))
        }
    }
}
