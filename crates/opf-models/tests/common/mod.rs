//! Helpers shared by the integration tests: fixture paths, JSON tensors, error measures and
//! safetensors rewriting.
#![allow(dead_code)] // each test binary uses a different subset

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::prelude::*;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};

/// `tests/fixtures`.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// The tiny random BERT written by `scripts/gen_bert_fixtures.py`.
pub fn tiny_dir() -> PathBuf {
    fixtures().join("tiny-bert")
}

/// The tiny random BART written by `scripts/gen_bart_fixtures.py`.
pub fn tiny_bart_dir() -> PathBuf {
    fixtures().join("tiny-bart")
}

/// A JSON fixture.
pub fn read_json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join(name)).expect("fixture exists");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// A `[batch, seq]` integer tensor from nested JSON lists.
pub fn int_tensor(value: &serde_json::Value, device: &Device) -> Tensor<2, Int> {
    let rows: Vec<Vec<i64>> = serde_json::from_value(value.clone()).expect("int matrix");
    let (batch, seq) = (rows.len(), rows[0].len());
    let flat: Vec<i64> = rows.into_iter().flatten().collect();
    Tensor::from_data(TensorData::new(flat, [batch, seq]), device)
}

/// The three model inputs of a fixture.
pub fn inputs(
    fixture: &serde_json::Value,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2, Int>, Tensor<2, Int>) {
    (
        int_tensor(&fixture["input_ids"], device),
        int_tensor(&fixture["token_type_ids"], device),
        int_tensor(&fixture["attention_mask"], device),
    )
}

/// Max absolute difference over max absolute reference value, after checking the shape.
pub fn relative_error<const D: usize>(actual: Tensor<D>, expected: &serde_json::Value) -> f64 {
    let shape: Vec<usize> = serde_json::from_value(expected["shape"].clone()).unwrap();
    let reference: Vec<f64> = serde_json::from_value(expected["data"].clone()).unwrap();
    assert_eq!(actual.dims().to_vec(), shape, "shape");
    let actual: Vec<f32> = actual.into_data().convert::<f32>().try_into_vec().unwrap();
    let scale = reference.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    let diff = actual
        .iter()
        .zip(&reference)
        .fold(0.0f64, |m, (a, b)| m.max((f64::from(*a) - b).abs()));
    diff / scale
}

/// A safetensors file as editable `name → (dtype, shape, bytes)`.
pub type Tensors = BTreeMap<String, (Dtype, Vec<usize>, Vec<u8>)>;

/// Reads every tensor of a safetensors file.
pub fn read_tensors(path: &Path) -> Tensors {
    let bytes = std::fs::read(path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    st.tensors()
        .into_iter()
        .map(|(name, view)| {
            (
                name,
                (view.dtype(), view.shape().to_vec(), view.data().to_vec()),
            )
        })
        .collect()
}

/// Writes tensors as a safetensors file.
pub fn write_tensors(path: &Path, tensors: &Tensors) {
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(name, (dtype, shape, data))| {
            (
                name.clone(),
                TensorView::new(*dtype, shape.clone(), data).unwrap(),
            )
        })
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// A temporary model directory holding the tiny config and `tensors` as weights.
pub fn tiny_variant(tensors: &Tensors) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        tiny_dir().join("config.json"),
        dir.path().join("config.json"),
    )
    .unwrap();
    write_tensors(&dir.path().join("model.safetensors"), tensors);
    dir
}

/// An `f32` tensor of `shape` filled with `value`, as safetensors bytes.
pub fn f32_bytes(shape: &[usize], value: f32) -> (Dtype, Vec<usize>, Vec<u8>) {
    let n: usize = shape.iter().product();
    let bytes = std::iter::repeat_n(value.to_le_bytes(), n)
        .flatten()
        .collect();
    (Dtype::F32, shape.to_vec(), bytes)
}

/// The tiny BERT's config with dropout off, so that a training step is deterministic.
pub fn tiny_config_without_dropout() -> opf_models::BertConfig {
    let mut config = opf_models::BertConfig::from_file(tiny_dir().join("config.json")).unwrap();
    config.hidden_dropout_prob = 0.0;
    config.attention_probs_dropout_prob = 0.0;
    config
}

/// The tiny BERT (dropout off) on `device`, with its FFN projections over-parameterized as
/// trainable `opf:3` MPOs when `opf` is set.
pub fn tiny_bert(device: &Device, opf: bool) -> opf_models::BertForSequenceClassification {
    use opf_models::{CoreTraining, LinearKind};
    let (mut model, _) = opf_models::BertForSequenceClassification::load(
        tiny_dir(),
        Some(&tiny_config_without_dropout()),
        None,
        device,
    )
    .unwrap();
    if opf {
        let paths: Vec<_> = model
            .bert
            .linear_paths()
            .into_iter()
            .filter(|p| matches!(p.kind, LinearKind::Ffn1 | LinearKind::Ffn2))
            .collect();
        model
            .bert
            .over_parameterize(&paths, &"opf:3".parse().unwrap(), CoreTraining::All)
            .unwrap();
    }
    model
}
