//! One backward pass on the autodiff CPU device reaches every parameter.

mod common;

use burn::optim::GradientsParams;
use burn::prelude::*;
use opf_models::{BertForSequenceClassification, Labels};

fn is_nonzero(t: Tensor<2>) -> bool {
    t.abs().sum().into_scalar::<f32>() > 0.0
}

#[test]
fn backward_reaches_the_classifier_and_every_projection() {
    let device = Device::flex().autodiff();
    device.seed(5);
    let (model, _) =
        BertForSequenceClassification::load(common::tiny_dir(), None, None, &device).unwrap();
    let fixture = common::read_json("tiny-bert.json");
    let (ids, types, mask) = common::inputs(&fixture, &device);
    let labels = Tensor::<1, Int>::from_data([0, 2, 1], &device);

    let logits = model.forward(ids, types, mask);
    let loss = model.loss(logits, Labels::Classes(labels));
    let grads = loss.backward();

    let classifier = model
        .classifier
        .weight
        .val()
        .grad(&grads)
        .expect("classifier grad");
    assert!(is_nonzero(classifier));
    for path in model.bert.linear_paths() {
        let weight = model.bert.linear(path).weight_in_out();
        let grad = weight
            .grad(&grads)
            .unwrap_or_else(|| panic!("no gradient for {path}"));
        assert_eq!(grad.dims(), weight.dims());
        assert!(is_nonzero(grad), "zero gradient for {path}");
    }
    let params = GradientsParams::from_grads(grads, &model);
    assert_eq!(params.len(), 41, "every HF tensor gets a gradient");
}
