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

/// The first AdamW step on every MPO core (4-D parameters whose gradients come back through
/// reshapes and `swap_dims` of the contraction) is exactly burn's update rule applied to that
/// core's gradient: `p·(1 − lr·wd) − lr·g/(|g| + ε)` at step 1. A backend that reads such
/// gradients with the wrong layout fails here (on wgpu + fusion the `[4, 4, 1, 1]` last core of
/// an FFN_2 matrix came out 1.26 relative off while its gradient matched; see README, Backends).
#[test]
fn first_adamw_step_on_mpo_cores_is_the_update_rule() {
    use burn::module::{ModuleVisitor, Param};
    use burn::optim::AdamWConfig;

    /// `(path, values)` of every 4-D parameter (the cores), or of their gradients.
    struct Cores<'a> {
        path: Vec<String>,
        grads: Option<&'a GradientsParams>,
        out: Vec<(String, Vec<f32>)>,
    }
    impl ModuleVisitor for Cores<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D != 4 {
                return;
            }
            let t = match self.grads {
                Some(grads) => grads.get::<D>(param.id).expect("every core has a gradient"),
                None => param.val(),
            };
            let values = t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            self.out.push((self.path.join("."), values));
        }
    }
    let cores = |model: &BertForSequenceClassification, grads: Option<&GradientsParams>| {
        let mut v = Cores {
            path: Vec::new(),
            grads,
            out: Vec::new(),
        };
        model.visit(&mut v);
        v.out
    };

    let device = Device::flex().autodiff();
    let model = common::tiny_bert(&device, true);
    let fixture = common::read_json("tiny-bert.json");
    let (ids, types, mask) = common::inputs(&fixture, &device);
    let logits = model.forward(ids, types, mask);
    let labels = Tensor::<1, Int>::from_data([0, 2, 1], &device);
    let loss = model.loss(logits, Labels::Classes(labels));
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let before = cores(&model, None);
    let grad = cores(&model, Some(&grads));
    let (lr, wd, eps) = (1e-3, 0.01, 1e-5);
    let mut optim = AdamWConfig::new()
        .with_weight_decay(wd as f32)
        .with_epsilon(eps as f32)
        .init();
    let model = optim.step(lr, model, grads);
    let after = cores(&model, None);
    assert_eq!(
        after.len(),
        3 * 2 * 2,
        "3 cores × 2 FFN matrices × 2 layers"
    );
    for (((path, p0), (_, g)), (_, p1)) in before.iter().zip(&grad).zip(&after) {
        for ((&p0, &g), &p1) in p0.iter().zip(g).zip(p1) {
            let (p0, g) = (f64::from(p0), f64::from(g));
            let want = p0 * (1.0 - lr * wd) - lr * g / (g.abs() + eps);
            assert!(
                (f64::from(p1) - want).abs() <= 1e-6,
                "{path}: {p1} vs {want} (p {p0}, g {g})"
            );
        }
    }
}
