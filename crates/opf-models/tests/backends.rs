//! Backend parity (issue 7): on every backend compiled into this test binary, the tiny BERT's
//! logits — dense and over-parameterized, before and after one AdamW step — are within `1e-4`
//! relative (Frobenius) of the CPU backend's (burn-flex, the reference).
//!
//! With the default features there is no other backend and the test says so. Run the others with
//! `cargo test -p opf-models --features wgpu --test backends` (on a CPU machine through Mesa's
//! software Vulkan: `apt-get install mesa-vulkan-drivers libvulkan1`), `--features cuda` on an
//! NVIDIA machine, `--features tch` with LibTorch (README). Dropout is off so that the training
//! step is deterministic on every backend.

mod common;

use std::panic::AssertUnwindSafe;

use burn::module::Module;
use burn::optim::{AdamWConfig, GradientsParams};
use burn::prelude::*;
use opf_models::{BertForSequenceClassification, Labels};

/// Relative Frobenius error allowed between backends (f32 kernels sum in different orders).
const TOLERANCE: f64 = 1e-4;

/// The backends compiled in besides the CPU reference, with a device for each.
#[allow(clippy::vec_init_then_push)] // the pushes depend on the features
fn other_backends() -> Vec<(&'static str, Device)> {
    #[allow(unused_mut)]
    let mut found = Vec::new();
    #[cfg(feature = "wgpu")]
    found.push((
        "wgpu",
        Device::wgpu(burn::tensor::DeviceKind::DefaultDevice),
    ));
    #[cfg(feature = "cuda")]
    found.push(("cuda", Device::cuda(0)));
    #[cfg(feature = "tch")]
    #[allow(deprecated)] // burn-tch is deprecated in burn 0.22; still the LibTorch option here
    found.push(("tch", Device::libtorch()));
    found
}

/// Whether `device` can run a kernel (a backend compiled in may have no hardware here).
fn usable(device: &Device) -> bool {
    let device = device.clone();
    let probe = std::panic::catch_unwind(AssertUnwindSafe(move || {
        Tensor::<1>::from_data([1.0, 2.0], &device)
            .sum()
            .into_scalar::<f32>()
    }));
    matches!(probe, Ok(x) if x == 3.0)
}

fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    let (num, den) = a.iter().zip(b).fold((0.0, 0.0), |(n, d), (&x, &y)| {
        let (x, y) = (f64::from(x), f64::from(y));
        (n + (x - y) * (x - y), d + y * y)
    });
    (num / den).sqrt()
}

/// Logits (eval mode, then after one AdamW step) of the tiny BERT on `device`, dense or with the
/// FFN projections over-parameterized.
fn logits(device: &Device, opf: bool) -> (Vec<f32>, Vec<f32>) {
    let device = device.clone().autodiff();
    let model = common::tiny_bert(&device, opf);
    let fixture = common::read_json("tiny-bert.json");
    let (ids, types, mask) = common::inputs(&fixture, &device);
    let eval = |model: &BertForSequenceClassification| -> Vec<f32> {
        let model = model.valid();
        let inner = model.classifier.weight.val().device();
        let out = model.forward(
            ids.clone().to_device(&inner),
            types.clone().to_device(&inner),
            mask.clone().to_device(&inner),
        );
        out.into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
    };
    let before = eval(&model);
    let labels = Tensor::<1, Int>::from_data([0, 2, 1], &device);
    let out = model.forward(ids.clone(), types.clone(), mask.clone());
    let loss = model.loss(out, Labels::Classes(labels));
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    let mut optim = AdamWConfig::new().with_weight_decay(0.01).init();
    let model = optim.step(1e-3, model, grads);
    (before, eval(&model))
}

#[test]
fn every_compiled_backend_matches_the_cpu_backend() {
    let backends = other_backends();
    if backends.is_empty() {
        println!("only the CPU backend is compiled in: nothing to compare (see the module docs)");
        return;
    }
    let cpu = Device::flex();
    for opf in [false, true] {
        let (cpu_before, cpu_after) = logits(&cpu, opf);
        for (name, device) in &backends {
            if !usable(device) {
                println!("{name}: compiled in but no usable device here, skipped");
                continue;
            }
            let (before, after) = logits(device, opf);
            let (e0, e1) = (rel_err(&before, &cpu_before), rel_err(&after, &cpu_after));
            println!("{name} (opf {opf}): logits vs cpu {e0:.2e}, after one AdamW step {e1:.2e}");
            assert!(
                e0 <= TOLERANCE && e1 <= TOLERANCE,
                "{name}: {e0:.2e} / {e1:.2e}"
            );
        }
    }
}
