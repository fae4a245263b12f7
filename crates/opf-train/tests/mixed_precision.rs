//! Mixed precision in the trainer (issue 7 item 2) on the tiny random BERT of `opf-models`:
//!
//! * one optimizer step under bf16 moves the parameters as the f32 step does, and every
//!   parameter stays f32;
//! * gradients of a scaled loss through the f16 products overflow and the scaler reports it;
//! * whole f16 and bf16 runs finish, record their precision (and f16 its loss scale) in
//!   `metrics.json`, and keep f32 weights.
//!
//! burn-flex seeds one global RNG (dropout, head initialisation), so every test holds
//! [`rng_lock`].

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{DType, Device, Tensor};
use opf_glue::{BatchLabels, Features, Label, Split, Task};
use opf_models::{BertForSequenceClassification, Precision};
use opf_train::optim::{AdamWParams, build_optimizer};
use opf_train::{
    GradScaler, Silent, TrainArgs, TrainData, TrainerState, batch_tensors, forward_backward_scaled,
    train, train_step,
};

static RNG: Mutex<()> = Mutex::new(());

fn rng_lock() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

/// The tiny BERT fixture with a fresh 2-label head drawn from `seed`.
fn tiny_model(seed: u64, device: &Device) -> BertForSequenceClassification {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../opf-models/tests/fixtures/tiny-bert");
    device.seed(seed);
    let mut model = BertForSequenceClassification::load(dir, None, None, device)
        .expect("tiny BERT fixture loads")
        .0;
    model.classifier = burn::nn::LinearConfig::new(32, 2).init(device);
    model
}

/// `n` sentence pairs of 2–6 + 2–6 tokens; label = parity of the first token.
fn pairs(n: usize) -> Vec<Features> {
    (0..n)
        .map(|k| {
            let (a, b) = (2 + k % 5, 2 + (k * 7) % 5);
            let word = |i: usize| 5 + ((k * 31 + i * 17) % 94) as i64;
            let mut ids = vec![2];
            ids.extend((0..a).map(word));
            ids.push(3);
            ids.extend((a..a + b).map(word));
            ids.push(3);
            let types = (0..ids.len()).map(|i| i64::from(i > a + 1)).collect();
            Features {
                label: Some(Label::Class((ids[1] % 2) as usize)),
                input_ids: ids,
                token_type_ids: types,
            }
        })
        .collect()
}

/// Every float parameter, flattened in visiting order, and whether all are f32.
fn flat_params<M: Module>(module: &M) -> (Vec<f32>, bool) {
    struct Collect(Vec<f32>, bool);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let value = param.val();
            self.1 &= value.dtype() == DType::F32;
            let data = value.into_data();
            self.0.extend(data.convert::<f32>().iter::<f32>());
        }
    }
    let mut c = Collect(Vec::new(), true);
    module.visit(&mut c);
    (c.0, c.1)
}

/// Every gradient of `module`'s float parameters, flattened in visiting order.
fn flat_grads<M: Module>(module: &M, grads: &GradientsParams) -> Vec<f32> {
    struct Collect<'a>(&'a GradientsParams, Vec<f32>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(param.id) {
                assert_eq!(g.dtype(), DType::F32, "gradients arrive in f32");
                self.1.extend(g.into_data().iter::<f32>());
            }
        }
    }
    let mut c = Collect(grads, Vec::new());
    module.visit(&mut c);
    c.1
}

/// ‖a − b‖ / ‖b‖ in f64.
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (x, y) in a.iter().zip(b) {
        num += (f64::from(*x) - f64::from(*y)).powi(2);
        den += f64::from(*y).powi(2);
    }
    (num / den).sqrt()
}

/// What one trainer step of the tiny BERT on a fixed batch under a precision gives.
struct Step {
    before: Vec<f32>,
    grads: Vec<f32>,
    after: Vec<f32>,
    all_f32: bool,
}

/// One trainer step (forward, backward, clipping, AdamW) under `precision`, with the same
/// dropout masks whatever the precision.
fn one_step(precision: Precision) -> Step {
    let device = Device::flex().autodiff();
    let model = tiny_model(3, &device);
    let (before, _) = flat_params(&model);
    let batch = opf_glue::Batches::new(&pairs(8), 8, 0, opf_glue::Order::Sequential)
        .unwrap()
        .next()
        .unwrap();
    let labels = batch.labels.clone().unwrap();
    let _autocast = precision.autocast();
    device.seed(9);
    let (grads, _) = forward_backward_scaled(
        &model,
        batch_tensors(&batch, &device),
        &labels,
        None,
        &device,
    )
    .expect("finite loss");
    let grads = flat_grads(&model, &grads);
    let mut optim = build_optimizer(AdamWParams::default(), 1.0);
    device.seed(9);
    let (model, _, _) = train_step(
        model,
        &mut optim,
        batch_tensors(&batch, &device),
        &labels,
        1e-3,
        1.0,
        &device,
    )
    .expect("finite loss");
    let (after, all_f32) = flat_params(&model);
    Step {
        before,
        grads,
        after,
        all_f32,
    }
}

/// The bf16 gradients match the f32 ones to bf16 precision: relative error measured 3.5e-2
/// (bound 1e-1; f16 4.2e-3, bound 1.5e-2: the ratio of their rounding units, so rounding and not
/// a wrong computation; the tiny model's small gradients pass two layers of half-precision
/// products backwards). The first AdamW step moves each parameter by ±lr·sign(g) (m/√v =
/// g/|g|), so the updates are compared element by element: an element whose gradient is near
/// zero may flip sign, the others move as in f32 (measured 98.0 % within 1 % of the f32 update;
/// bound 96 %).
#[test]
fn bf16_step_moves_parameters_as_the_f32_step_and_keeps_them_f32() {
    let _lock = rng_lock();
    let exact = one_step(Precision::F32);
    let half = one_step(Precision::Bf16);
    assert_eq!(exact.before, half.before, "same initial model");
    assert!(half.all_f32, "a bf16 step left a parameter outside f32");
    let grad_err = rel_err(&half.grads, &exact.grads);
    let agree = exact
        .before
        .iter()
        .zip(&exact.after)
        .zip(&half.after)
        .filter(|((b, e), h)| {
            let (de, dh) = (*e - *b, *h - *b);
            (dh - de).abs() <= 0.01 * de.abs().max(1e-12)
        })
        .count() as f64
        / exact.before.len() as f64;
    println!(
        "bf16 step: gradient relative error {grad_err:.2e}, updates within 1 % of f32: {:.2} %",
        100.0 * agree
    );
    assert!(grad_err > 0.0, "the gradients were not computed in bf16");
    assert!(
        grad_err < 1e-1,
        "bf16 gradients differ from f32 by {grad_err:.3e}"
    );
    assert!(
        agree > 0.96,
        "only {:.2} % of the updates agree",
        100.0 * agree
    );
    // f16's 3 more significand bits: the same computation, 8× closer.
    let f16 = one_step(Precision::F16);
    let f16_err = rel_err(&f16.grads, &exact.grads);
    println!("f16 step: gradient relative error {f16_err:.2e}");
    assert!(f16.all_f32);
    assert!(
        f16_err < 1.5e-2 && f16_err * 3.0 < grad_err,
        "f16 {f16_err:.3e}"
    );
}

/// A loss scale far too large overflows the f16 products of the backward pass; the scaler sees
/// non-finite gradients (the trainer then skips the step). A sane scale gives finite ones.
#[test]
fn overflowing_f16_gradients_are_detected() {
    let _lock = rng_lock();
    let device = Device::flex().autodiff();
    let model = tiny_model(3, &device);
    let batch = opf_glue::Batches::new(&pairs(8), 8, 0, opf_glue::Order::Sequential)
        .unwrap()
        .next()
        .unwrap();
    let labels: BatchLabels = batch.labels.clone().unwrap();
    let _autocast = Precision::F16.autocast();
    for (scale, finite) in [(1e12, false), (1024.0, true)] {
        let scaler = GradScaler::new(scale, 2.0, 0.5, 2000);
        let (mut grads, loss) = forward_backward_scaled(
            &model,
            batch_tensors(&batch, &device),
            &labels,
            Some(scaler.scale()),
            &device,
        )
        .expect("the forward pass itself is finite");
        assert!(loss.is_finite());
        assert_eq!(scaler.unscale(&model, &mut grads), finite, "scale {scale}");
    }
}

fn run(precision: Precision, out: &Path) -> (TrainerState, BertForSequenceClassification) {
    let device = Device::flex().autodiff();
    let model = tiny_model(1, &device);
    let data = TrainData {
        train: pairs(24),
        dev: vec![(Split::Dev, pairs(8))],
        pad_id: 0,
    };
    let args = TrainArgs {
        learning_rate: 1e-3,
        num_train_epochs: 2,
        per_device_train_batch_size: 8,
        per_device_eval_batch_size: 8,
        logging_steps: 2,
        precision,
        ..TrainArgs::default()
    };
    let outcome = train(
        model,
        Task::Mrpc,
        &data,
        &args,
        &opf_train::RunDir::new(out),
        false,
        &device,
        &mut Silent,
    )
    .expect("training runs");
    let metrics: TrainerState =
        serde_json::from_slice(&std::fs::read(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics, outcome.state, "metrics.json holds the state");
    (outcome.state, outcome.last)
}

#[test]
fn half_precision_runs_record_their_precision_and_keep_f32_weights() {
    let _lock = rng_lock();
    let dir = tempfile::tempdir().unwrap();
    for precision in [Precision::Bf16, Precision::F16] {
        let out: PathBuf = dir.path().join(precision.to_string());
        let (state, model) = run(precision, &out);
        assert_eq!(state.global_step, 6);
        assert_eq!(state.precision, precision);
        let (params, all_f32) = flat_params(&model);
        assert!(all_f32, "{precision}: weights left f32");
        assert!(params.iter().all(|p| p.is_finite()));
        let json = std::fs::read_to_string(out.join("metrics.json")).unwrap();
        assert!(json.contains(&format!("\"precision\": \"{precision}\"")));
        match precision {
            Precision::F16 => {
                let scaler = state.grad_scaler.expect("f16 keeps a loss scale");
                println!(
                    "f16 run: loss scale {} after 6 steps, {} skipped",
                    scaler.scale(),
                    scaler.skipped_steps()
                );
                assert!(scaler.skipped_steps() < 6, "no step was taken");
                assert_eq!(
                    scaler.scale(),
                    65536.0 * 0.5f64.powi(scaler.skipped_steps() as i32)
                );
                assert!(json.contains("\"grad_scaler\""));
            }
            _ => assert!(state.grad_scaler.is_none()),
        }
    }
}
