//! Parity with `transformers` on the tiny random BERT of `scripts/gen_bert_fixtures.py`.

mod common;

use burn::prelude::*;
use opf_models::{BertForSequenceClassification, Labels};

const TOLERANCE: f64 = 1e-4;

#[test]
fn tiny_bert_matches_transformers() {
    let device = Device::flex();
    let fixture = common::read_json("tiny-bert.json");
    let (model, report) =
        BertForSequenceClassification::load(common::tiny_dir(), None, None, &device).unwrap();
    assert_eq!(report.prefix, "bert.");
    assert_eq!(report.loaded.len(), 41);
    assert!(report.initialized.is_empty() && report.unused.is_empty() && report.upcast.is_empty());
    assert_eq!(model.num_labels(), 3);
    assert_eq!(
        model.num_params() as u64,
        fixture["num_parameters"].as_u64().unwrap()
    );

    let (ids, types, mask) = common::inputs(&fixture, &device);
    let out = model.bert.forward(ids.clone(), types.clone(), mask.clone());
    let logits = model.forward(ids, types, mask);
    let errors = [
        (
            "last_hidden_state",
            common::relative_error(out.last_hidden_state, &fixture["last_hidden_state"]),
        ),
        (
            "pooler_output",
            common::relative_error(out.pooler_output, &fixture["pooler_output"]),
        ),
        (
            "logits",
            common::relative_error(logits.clone(), &fixture["logits"]),
        ),
    ];
    for (name, error) in errors {
        println!("tiny-bert {name}: max relative error {error:.3e}");
        assert!(error < TOLERANCE, "{name}: {error:.3e}");
    }

    let labels: Vec<i64> = serde_json::from_value(fixture["labels"].clone()).unwrap();
    let labels = Tensor::from_data(TensorData::new(labels, [3]), &device);
    let loss = model
        .loss(logits, Labels::Classes(labels))
        .into_scalar::<f32>();
    let expected = fixture["loss"].as_f64().unwrap();
    println!("tiny-bert loss {loss} vs {expected}");
    assert!((f64::from(loss) - expected).abs() < TOLERANCE * expected.abs());
}
