//! Loading errors, tolerated checkpoint variants and the save → load round trip, on the tiny
//! random BERT fixture.

mod common;

use burn::prelude::*;
use burn::tensor::{DType, Tolerance};
use common::Tensors;
use opf_models::{BertConfig, BertForSequenceClassification, LoadReport, ModelError};
use safetensors::tensor::Dtype;

fn tiny_tensors() -> Tensors {
    common::read_tensors(&common::tiny_dir().join("model.safetensors"))
}

fn load(dir: &std::path::Path) -> Result<(BertForSequenceClassification, LoadReport), ModelError> {
    BertForSequenceClassification::load(dir, None, None, &Device::flex())
}

/// Logits and last hidden state on the fixture batch.
fn outputs(model: &BertForSequenceClassification) -> (TensorData, TensorData) {
    let fixture = common::read_json("tiny-bert.json");
    let (ids, types, mask) = common::inputs(&fixture, &Device::flex());
    let hidden = model.bert.forward(ids.clone(), types.clone(), mask.clone());
    let logits = model.forward(ids, types, mask);
    (logits.into_data(), hidden.last_hidden_state.into_data())
}

#[test]
fn missing_files_are_io_errors_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    match load(dir.path()) {
        Err(ModelError::Io { path, .. }) => assert_eq!(path, dir.path().join("config.json")),
        other => panic!("expected Io, got {other:?}"),
    }
    std::fs::copy(
        common::tiny_dir().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    match load(dir.path()) {
        Err(ModelError::Io { path, .. }) => assert_eq!(path, dir.path().join("model.safetensors")),
        other => panic!("expected Io, got {other:?}"),
    }
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"not a safetensors file",
    )
    .unwrap();
    assert!(matches!(
        load(dir.path()),
        Err(ModelError::Safetensors { .. })
    ));
}

#[test]
fn missing_tensor_is_named() {
    let mut tensors = tiny_tensors();
    tensors
        .remove("bert.encoder.layer.1.output.dense.bias")
        .unwrap();
    let dir = common::tiny_variant(&tensors);
    match load(dir.path()) {
        Err(ModelError::MissingTensor { name, .. }) => {
            assert_eq!(name, "bert.encoder.layer.1.output.dense.bias")
        }
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
fn half_a_pooler_is_missing_not_optional() {
    let mut tensors = tiny_tensors();
    tensors.remove("bert.pooler.dense.bias").unwrap();
    let dir = common::tiny_variant(&tensors);
    match load(dir.path()) {
        Err(ModelError::MissingTensor { name, .. }) => assert_eq!(name, "bert.pooler.dense.bias"),
        other => panic!("expected MissingTensor, got {other:?}"),
    }
}

#[test]
fn wrongly_shaped_tensor_is_named_with_both_shapes() {
    let mut tensors = tiny_tensors();
    let name = "bert.encoder.layer.0.attention.self.query.weight";
    tensors.insert(name.into(), common::f32_bytes(&[32, 31], 0.0));
    let dir = common::tiny_variant(&tensors);
    match load(dir.path()) {
        Err(ModelError::ShapeMismatch {
            name: found_name,
            expected,
            found,
        }) => {
            assert_eq!(found_name, name);
            assert_eq!((expected, found), (vec![32, 32], vec![32, 31]));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn checkpoint_head_of_another_size_is_a_shape_error() {
    let result =
        BertForSequenceClassification::load(common::tiny_dir(), None, Some(2), &Device::flex());
    match result {
        Err(ModelError::ShapeMismatch {
            name,
            expected,
            found,
        }) => {
            assert_eq!(name, "classifier.weight");
            assert_eq!((expected, found), (vec![2, 32], vec![3, 32]));
        }
        other => panic!("expected ShapeMismatch, got {other:?}"),
    }
}

#[test]
fn unexpected_tensor_is_named() {
    let mut tensors = tiny_tensors();
    let name = "bert.encoder.layer.2.attention.self.query.weight";
    tensors.insert(name.into(), common::f32_bytes(&[32, 32], 0.0));
    let dir = common::tiny_variant(&tensors);
    match load(dir.path()) {
        Err(ModelError::UnexpectedTensor { name: found, .. }) => assert_eq!(found, name),
        other => panic!("expected UnexpectedTensor, got {other:?}"),
    }
}

#[test]
fn integer_weight_is_an_unsupported_dtype() {
    let mut tensors = tiny_tensors();
    let name = "bert.embeddings.token_type_embeddings.weight";
    tensors.insert(name.into(), (Dtype::I32, vec![2, 32], vec![0; 2 * 32 * 4]));
    let dir = common::tiny_variant(&tensors);
    match load(dir.path()) {
        Err(ModelError::UnsupportedDtype { name: found, dtype }) => {
            assert_eq!(found, name);
            assert_eq!(dtype, "I32");
        }
        other => panic!("expected UnsupportedDtype, got {other:?}"),
    }
}

/// A pre-training style checkpoint: LayerNorm `gamma`/`beta`, `position_ids`, `cls.*` heads.
#[test]
fn legacy_names_and_pretraining_heads_are_accepted() {
    let original = outputs(&load(&common::tiny_dir()).unwrap().0);
    let mut tensors: Tensors = tiny_tensors()
        .into_iter()
        .map(|(name, t)| {
            let name = name
                .replace("LayerNorm.weight", "LayerNorm.gamma")
                .replace("LayerNorm.bias", "LayerNorm.beta");
            (name, t)
        })
        .collect();
    tensors.insert(
        "bert.embeddings.position_ids".into(),
        (Dtype::I64, vec![1, 64], vec![0; 64 * 8]),
    );
    tensors.insert("cls.predictions.bias".into(), common::f32_bytes(&[99], 0.0));
    let dir = common::tiny_variant(&tensors);
    let (model, report) = load(dir.path()).unwrap();
    assert!(
        report
            .loaded
            .contains(&"bert.embeddings.LayerNorm.gamma".to_string())
    );
    assert_eq!(
        report.unused,
        ["bert.embeddings.position_ids", "cls.predictions.bias"]
    );
    assert_eq!(outputs(&model), original);
}

/// A `BertModel` checkpoint: no prefix, no classifier (freshly initialised and reported).
#[test]
fn base_checkpoint_without_prefix_gets_a_fresh_classifier() {
    let original = outputs(&load(&common::tiny_dir()).unwrap().0);
    let tensors: Tensors = tiny_tensors()
        .into_iter()
        .filter_map(|(name, t)| name.strip_prefix("bert.").map(|n| (n.to_string(), t)))
        .collect();
    let dir = common::tiny_variant(&tensors);
    let (model, report) = load(dir.path()).unwrap();
    assert_eq!(report.prefix, "");
    assert_eq!(report.initialized, ["classifier.weight", "classifier.bias"]);
    let (logits, hidden) = outputs(&model);
    assert_eq!(hidden, original.1);
    assert_ne!(logits, original.0);
}

/// With PyTorch's generator installed, the fresh classifier is its `normal_(0, 0.02)` on the
/// `(out, in)` weight (the draws themselves are checked against torch in `rng.rs`), the bias zero,
/// and the generator has moved past those draws.
#[test]
fn fresh_classifier_draws_from_the_installed_torch_generator() {
    use opf_models::rng::{self, TorchGenerator};
    let tensors: Tensors = tiny_tensors()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("classifier."))
        .collect();
    let dir = common::tiny_variant(&tensors);
    let (model, after) = {
        let _installed = rng::install(Some(TorchGenerator::new(42)));
        let (model, report) = load(dir.path()).unwrap();
        assert_eq!(report.initialized, ["classifier.weight", "classifier.bias"]);
        (model, rng::current().unwrap())
    };
    let mut expected = TorchGenerator::new(42);
    // tiny-bert: hidden 32, 3 labels.
    let weight = expected.normal(3 * 32, 0.0, 0.02).unwrap();
    assert_eq!(after, expected);
    let hf: Vec<f32> = model
        .classifier
        .weight
        .val()
        .transpose()
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(hf, weight);
    let bias = model.classifier.bias.as_ref().unwrap().val().into_data();
    assert_eq!(bias.try_to_vec::<f32>().unwrap(), [0.0; 3]);
    // Without a generator the head is burn's draw, and nothing is installed afterwards.
    assert_eq!(rng::current(), None);
    let (plain, _) = load(dir.path()).unwrap();
    assert_ne!(
        plain.classifier.weight.val().into_data(),
        model.classifier.weight.val().into_data()
    );
}

#[test]
fn half_precision_tensors_are_upcast() {
    let (reference, _) = load(&common::tiny_dir()).unwrap();
    let to_f16 = |(dtype, shape, bytes): (Dtype, Vec<usize>, Vec<u8>)| {
        assert_eq!(dtype, Dtype::F32);
        let data = TensorData::from_bytes_vec(bytes, shape.clone(), DType::F32);
        let half = data.convert_dtype(DType::F16);
        (Dtype::F16, shape, half.as_bytes().to_vec())
    };
    let tensors: Tensors = tiny_tensors()
        .into_iter()
        .map(|(name, t)| (name, to_f16(t)))
        .collect();
    let dir = common::tiny_variant(&tensors);
    let (model, report) = load(dir.path()).unwrap();
    assert_eq!(report.upcast.len(), 41);
    let (logits, _) = outputs(&model);
    logits.assert_approx_eq::<f32>(&outputs(&reference).0, Tolerance::rel_abs(2e-2, 2e-2));
}

#[test]
fn save_then_load_round_trips() {
    let (model, _) = load(&common::tiny_dir()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    model.save_pretrained(dir.path()).unwrap();

    // Same tensors, bit for bit, under the same names as the transformers-written file.
    let saved = common::read_tensors(&dir.path().join("model.safetensors"));
    assert_eq!(saved, tiny_tensors());

    let (reloaded, report) = load(dir.path()).unwrap();
    assert_eq!(report.loaded.len(), 41);
    assert_eq!(outputs(&reloaded), outputs(&model));

    let config = BertConfig::from_file(dir.path().join("config.json")).unwrap();
    assert_eq!(config, *model.config());
    assert_eq!(config.num_labels(), 3);
    assert_eq!(
        config.extra["architectures"],
        serde_json::json!(["BertForSequenceClassification"])
    );
}

#[test]
fn a_weights_file_can_be_loaded_with_an_explicit_config() {
    let config = BertConfig::from_file(common::tiny_dir().join("config.json")).unwrap();
    let file = common::tiny_dir().join("model.safetensors");
    let (model, report) =
        BertForSequenceClassification::load(&file, Some(&config), None, &Device::flex()).unwrap();
    assert_eq!(report.path, file);
    assert_eq!(
        outputs(&model),
        outputs(&load(&common::tiny_dir()).unwrap().0)
    );
}
