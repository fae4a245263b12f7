//! opf-train on the tiny random BERT of `opf-models` (vocab 99, hidden 32, 2 layers): optimizer
//! groups on real parameter paths, MPO cores in and out of training (spec §8 item 12), and the
//! training loop — exact resume, NaN detection, reports; and the same loop on a tiny BART.
//!
//! burn-flex seeds one global RNG (dropout, head initialisation), so every test that builds or
//! trains a model holds [`rng_lock`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use opf_glue::{Features, Label, Split, Task};
use opf_models::{
    BartConfig, BartForSequenceClassification, BertForSequenceClassification, CoreTraining,
    LinearKind, LinearPath, Precision,
};
use opf_train::optim::{AdamWParams, MPO_CORE_PATTERN, NO_DECAY_PATTERN, build_optimizer};
use opf_train::{
    EvalLog, Observer, RandomStreams, RunDir, StepLog, TrainArgs, TrainData, TrainError,
    TrainerState, predict, train,
};

static RNG: Mutex<()> = Mutex::new(());

fn rng_lock() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn tiny_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../opf-models/tests/fixtures/tiny-bert")
}

/// The tiny BERT with a fresh 2-label head (MRPC) drawn from `seed`. The fixture is a 3-label
/// classifier and loading refuses a mismatched head, so the head is replaced after loading.
fn tiny_model(seed: u64, device: &Device) -> BertForSequenceClassification {
    device.seed(seed);
    let mut model = BertForSequenceClassification::load(tiny_dir(), None, None, device)
        .expect("tiny BERT fixture loads")
        .0;
    model.classifier = burn::nn::LinearConfig::new(32, 2).init(device);
    model
}

// ------------------------------------------------------------------------------------------------
// Parameter values by path
// ------------------------------------------------------------------------------------------------

/// `path → values` of every float parameter (the paths the optimizer groups match).
fn snapshot<M: Module>(module: &M) -> BTreeMap<String, Vec<f32>> {
    struct Collect {
        path: Vec<String>,
        out: BTreeMap<String, Vec<f32>>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = param
                .val()
                .into_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .unwrap();
            assert!(self.out.insert(self.path.join("."), values).is_none());
        }
    }
    let mut c = Collect {
        path: Vec::new(),
        out: BTreeMap::new(),
    };
    module.visit(&mut c);
    c.out
}

fn matcher(pattern: &str) -> impl Fn(&str) -> bool {
    let group = ParamGroup::from_regex(pattern).expect("valid regex");
    move |path| group.matches(&ParamId::new(), Some(path))
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

// ------------------------------------------------------------------------------------------------
// Groups (spec §2.4, §8 item 12)
// ------------------------------------------------------------------------------------------------

const MPO_PATHS: [LinearPath; 2] = [
    LinearPath {
        layer: 0,
        kind: LinearKind::Query,
    },
    LinearPath {
        layer: 1,
        kind: LinearKind::Ffn1,
    },
];

fn over_parameterized(training: CoreTraining, device: &Device) -> BertForSequenceClassification {
    let mut model = tiny_model(1, device);
    let preset: mpo_core::Preset = "balanced:2".parse().expect("preset parses");
    let done = model
        .bert
        .over_parameterize(&MPO_PATHS, &preset, training)
        .expect("tiny projections factor");
    assert_eq!(done.len(), 2);
    model
}

/// Every parameter path of the tiny BERT falls in the intended group: biases and LayerNorm
/// gamma/beta undecayed, MPO cores (and only they) in the MPO group, their biases undecayed.
#[test]
fn groups_on_tiny_bert_paths() {
    let _lock = rng_lock();
    let device = Device::flex();
    let no_decay = matcher(NO_DECAY_PATTERN);
    let mpo = matcher(MPO_CORE_PATTERN);

    let dense = opf_train::optim::param_paths(&tiny_model(1, &device));
    assert_eq!(
        dense.len(),
        41,
        "HF tensors of the tiny BERT with a 2-label head"
    );
    let undecayed: Vec<&str> = dense
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| no_decay(p))
        .collect();
    // 12 projection biases, pooler and classifier biases; 5 LayerNorms × (gamma, beta).
    assert_eq!(undecayed.len(), 24, "{undecayed:?}");
    for path in &undecayed {
        let leaf = path.rsplit('.').next().unwrap();
        assert!(["bias", "gamma", "beta"].contains(&leaf), "{path}");
    }
    for needle in [
        "bert.embeddings.layer_norm.gamma",
        "bert.embeddings.layer_norm.beta",
        "classifier.bias",
    ] {
        assert!(
            undecayed.contains(&needle),
            "{needle} missing from {undecayed:?}"
        );
    }
    assert!(dense.iter().all(|(p, _)| !mpo(p)), "no cores before OPF");
    assert!(
        dense
            .iter()
            .any(|(p, _)| p == "bert.embeddings.word_embeddings.weight" && !no_decay(p))
    );

    let model = over_parameterized(CoreTraining::All, &device);
    let paths = opf_train::optim::param_paths(&model);
    let cores: Vec<&str> = paths
        .iter()
        .map(|(p, _)| p.as_str())
        .filter(|p| mpo(p))
        .collect();
    // Balanced(2): two cores per factored projection, each a rank-4 tensor.
    assert_eq!(cores.len(), 4, "{cores:?}");
    for (path, shape) in &paths {
        if mpo(path) {
            assert_eq!(shape.len(), 4, "{path}");
            assert!(!no_decay(path), "{path}: cores decay like weights");
        }
    }
    // The factored projections keep their (undecayed) biases; the dense weights are gone.
    assert_eq!(paths.len(), 41 - 2 + 4);
    let mpo_biases = paths.iter().filter(|(p, _)| !mpo(p) && no_decay(p)).count();
    assert_eq!(mpo_biases, 24);
}

/// Gradients of one batch of the synthetic data through `model`.
fn one_batch_grads(model: &BertForSequenceClassification, device: &Device) -> GradientsParams {
    let data = synthetic(8, 1);
    let batch = opf_glue::Batches::new(&data, 8, 0, opf_glue::Order::Sequential)
        .unwrap()
        .next()
        .unwrap();
    let [ids, types, mask] = opf_train::batch_tensors(&batch, device);
    let logits = model.forward(ids, types, mask);
    let loss = opf_train::task_loss(logits, batch.labels.as_ref().unwrap(), device);
    GradientsParams::from_grads(loss.backward(), model)
}

/// One optimizer step at `lr` with the MPO group at `mpo_lr_scale × lr`; returns the parameter
/// values before and after.
fn one_step(
    training: CoreTraining,
    mpo_lr_scale: f64,
    lr: f64,
) -> (BTreeMap<String, Vec<f32>>, BTreeMap<String, Vec<f32>>) {
    let device = Device::flex().autodiff();
    let model = over_parameterized(training, &device);
    let before = snapshot(&model);
    let grads = one_batch_grads(&model, &device);
    let mut optim = build_optimizer(AdamWParams::default(), mpo_lr_scale);
    let model = optim.step(lr, model, grads);
    (before, snapshot(&model))
}

/// The key bias shifts every attention score of a row by the same amount, so softmax makes its
/// gradient zero up to rounding and Adam's ε keeps its first step far below `lr`.
fn zero_grad(path: &str) -> bool {
    path.contains(".key.") && path.ends_with("bias")
}

/// Spec §8 item 12 and the `mpo_lr` group: cores train at `mpo_lr` — frozen at scale 0, moving
/// by `mpo_lr` at the first Adam step (|Δ| ≈ lr·scale·|g|/(|g|+ε'), max within 1%) — while the
/// other weights move by `lr`.
#[test]
fn mpo_group_learning_rate_reaches_every_core() {
    let _lock = rng_lock();
    let mpo = matcher(MPO_CORE_PATTERN);
    let lr = 1e-3;

    let (before, after) = one_step(CoreTraining::All, 0.0, lr);
    for (path, b) in &before {
        if mpo(path) {
            assert_eq!(b, &after[path], "{path}: core moved with mpo_lr = 0");
        } else {
            let d = max_abs_diff(b, &after[path]) as f64;
            assert!(
                d <= 1.01 * lr && (d > 0.99 * lr || zero_grad(path)),
                "{path}: max |Δ| {d}"
            );
        }
    }

    let scale = 0.5;
    let (before, after) = one_step(CoreTraining::All, scale, lr);
    let mut cores = 0;
    for (path, b) in &before {
        let d = max_abs_diff(b, &after[path]) as f64;
        let want = if mpo(path) { lr * scale } else { lr };
        cores += mpo(path) as usize;
        assert!(
            d <= 1.01 * want && (d > 0.99 * want || zero_grad(path)),
            "{path}: max |Δ| {d}, want {want}"
        );
    }
    assert_eq!(cores, 4);
}

/// Spec §8 item 12, `--compat-frozen-cores`: frozen cores get no gradient and stay bit-identical
/// while the biases of the factored projections still train.
#[test]
fn frozen_cores_stay_put_while_their_biases_train() {
    let _lock = rng_lock();
    let mpo = matcher(MPO_CORE_PATTERN);
    let (before, after) = one_step(CoreTraining::Frozen, 1.0, 1e-3);
    let mut cores = 0;
    for (path, b) in &before {
        if mpo(path) {
            cores += 1;
            assert_eq!(b, &after[path], "{path}: frozen core moved");
        } else {
            assert_ne!(b, &after[path], "{path} did not train");
        }
    }
    assert_eq!(cores, 4);
    for bias in [
        "bert.encoder.layers.0.attention.self_attention.query",
        "bert.encoder.layers.1.intermediate.dense",
    ] {
        let path = before
            .keys()
            .find(|p| p.starts_with(bias) && p.ends_with(".bias"))
            .unwrap_or_else(|| panic!("no bias under {bias}: {:?}", before.keys()));
        assert_ne!(before[path], after[path], "{path}");
    }
}

// ------------------------------------------------------------------------------------------------
// Training loop
// ------------------------------------------------------------------------------------------------

/// `n` MRPC-like examples: `[CLS] a [SEP] b [SEP]` with ids < 99, lengths 5..=16, labels 0/1;
/// deterministic in `seed`.
fn synthetic(n: usize, seed: u64) -> Vec<Features> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move |bound: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % bound
    };
    (0..n)
        .map(|_| {
            let (a, b) = (1 + next(6) as usize, 1 + next(6) as usize);
            let mut ids = vec![2i64];
            let mut types = vec![0i64];
            for _ in 0..a {
                ids.push(5 + next(94) as i64);
                types.push(0);
            }
            ids.push(3);
            types.push(0);
            for _ in 0..b {
                ids.push(5 + next(94) as i64);
                types.push(1);
            }
            ids.push(3);
            types.push(1);
            // Learnable: label = parity of the first token of sentence a.
            let label = (ids[1] % 2) as usize;
            Features {
                input_ids: ids,
                token_type_ids: types,
                label: Some(Label::Class(label)),
            }
        })
        .collect()
}

fn data() -> TrainData {
    TrainData {
        train: synthetic(40, 7),
        dev: vec![(Split::Dev, synthetic(12, 8))],
        pad_id: 0,
    }
}

/// 40 examples, batch 8 → 5 steps/epoch, 10 in all. Evaluations at 4, 5, 8, 10; logs at 3, 6, 9;
/// checkpoints at 3, 5, 6, 9, 10.
fn base_args() -> TrainArgs {
    TrainArgs {
        learning_rate: 1e-3,
        mpo_lr: None,
        num_train_epochs: 2,
        per_device_train_batch_size: 8,
        per_device_eval_batch_size: 8,
        warmup_steps: 0,
        warmup_ratio: 0.2,
        weight_decay: 0.01,
        max_grad_norm: 1.0,
        optim: opf_train::optim::AdamWRule::Hf,
        seed: 42,
        rng: RandomStreams::Burn,
        eval_steps: 4,
        logging_steps: 3,
        save_steps: 3,
        precision: Precision::F32,
    }
}

/// Records `on_start` and stops after step `stop_after`.
#[derive(Default)]
struct Probe {
    stop_after: Option<usize>,
    start: Option<(usize, usize)>,
    steps: Vec<usize>,
}

impl Observer for Probe {
    fn on_start(&mut self, total: usize, start: usize) {
        self.start = Some((total, start));
    }
    fn on_step(&mut self, step: usize, _loss: f64, _lr: f64) {
        self.steps.push(step);
    }
    fn should_stop(&mut self, step: usize) -> bool {
        self.stop_after == Some(step)
    }
}

/// The parts of a log entry that do not depend on wall time.
fn step_key(l: &StepLog) -> (usize, f64, f64, f64, f64, usize, usize) {
    (
        l.step,
        l.epoch,
        l.loss,
        l.lr,
        l.grad_norm,
        l.examples,
        l.padded_tokens,
    )
}

fn eval_key(e: &EvalLog) -> (usize, f64, String, f64, BTreeMap<String, f64>) {
    (e.step, e.epoch, e.split.clone(), e.loss, e.metrics.clone())
}

fn assert_same_history(a: &TrainerState, b: &TrainerState) {
    assert_eq!(a.global_step, b.global_step);
    assert_eq!(a.best, b.best);
    let steps = |s: &TrainerState| s.log.iter().map(step_key).collect::<Vec<_>>();
    assert_eq!(steps(a), steps(b));
    let evals = |s: &TrainerState| s.evals.iter().map(eval_key).collect::<Vec<_>>();
    assert_eq!(evals(a), evals(b));
}

fn dev_logits(model: &BertForSequenceClassification, device: &Device) -> Vec<f32> {
    logits(model, &synthetic(12, 8), device)
}

/// Row-major logits of `features` run as one batch (padded to the longest) in inference mode.
fn logits(
    model: &BertForSequenceClassification,
    features: &[Features],
    device: &Device,
) -> Vec<f32> {
    let batch = opf_glue::Batches::new(features, features.len(), 0, opf_glue::Order::Sequential)
        .unwrap()
        .next()
        .unwrap();
    let [ids, types, mask] = opf_train::batch_tensors(&batch, device);
    model
        .valid()
        .forward(ids, types, mask)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

/// Issue acceptance: a run stopped after step 8 and resumed from its step-6 checkpoint (mid
/// epoch 2) ends bit-identical to an uninterrupted run — history, best step, final and best
/// weights, dev logits — on the CPU backend (same schedule: the stop does not change the total).
/// Also checks metrics.json / curves.svg.
#[test]
fn stopped_and_resumed_run_equals_uninterrupted_run() {
    stopped_and_resumed(RandomStreams::Burn);
}

/// The same with PyTorch's generator: its state travels in the checkpoint.
#[test]
fn stopped_and_resumed_run_equals_uninterrupted_run_with_torch_streams() {
    stopped_and_resumed(RandomStreams::Torch);
}

fn stopped_and_resumed(rng: RandomStreams) {
    let _lock = rng_lock();
    let device = Device::flex().autodiff();
    let data = data();
    let args = TrainArgs { rng, ..base_args() };

    let full_dir = tempfile::tempdir().unwrap();
    let full_run = RunDir::new(full_dir.path());
    let mut probe = Probe::default();
    let full = train(
        tiny_model(11, &device),
        Task::Mrpc,
        &data,
        &args,
        &full_run,
        false,
        &device,
        &mut probe,
    )
    .expect("full run");
    assert_eq!(probe.start, Some((10, 0)));
    assert_eq!(probe.steps, (1..=10).collect::<Vec<_>>());
    assert_eq!(full.state.global_step, 10);
    let eval_steps: Vec<usize> = full.state.evals.iter().map(|e| e.step).collect();
    assert_eq!(eval_steps, [4, 5, 8, 10]);
    let log_steps: Vec<usize> = full.state.log.iter().map(|l| l.step).collect();
    assert_eq!(log_steps, [3, 6, 9]);
    // Each interval is 3 full batches of 8, each padded to its longest example.
    let lengths: Vec<usize> = data.train.iter().map(|f| f.input_ids.len()).collect();
    let (shortest, longest) = (
        *lengths.iter().min().unwrap(),
        *lengths.iter().max().unwrap(),
    );
    for l in &full.state.log {
        assert_eq!(l.examples, 24);
        assert_eq!(l.padded_tokens % 8, 0);
        assert!((24 * shortest..=24 * longest).contains(&l.padded_tokens));
    }
    assert!(
        full.state
            .log
            .iter()
            .all(|l| l.loss.is_finite() && l.grad_norm > 0.0)
    );
    // Learning happened: the last step's weights differ from the fixture.
    let initial = snapshot(&tiny_model(11, &device));
    assert_ne!(initial, snapshot(&full.last));

    // Reports: metrics.json is the returned history; curves.svg is an SVG.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(full_run.metrics()).unwrap()).unwrap();
    assert_eq!(json["global_step"], 10);
    assert_eq!(json["evals"].as_array().unwrap().len(), 4);
    assert_eq!(json["log"].as_array().unwrap().len(), 3);
    let main = Task::Mrpc.metric_key(Split::Dev, Task::Mrpc.main_metric());
    let f1 = json["evals"][3]["metrics"][&main].as_f64();
    assert!(
        f1.is_some(),
        "{main} missing: {}",
        json["evals"][3]["metrics"]
    );
    let parsed: TrainerState = serde_json::from_value(json).unwrap();
    assert_eq!(parsed.evals.len(), 4);
    let svg = std::fs::read_to_string(full_run.curves()).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(80)]);
    assert!(svg.trim_end().ends_with("</svg>"));

    // Interrupted: stop after step 8; the last checkpoint is step 6 (save_steps = 3).
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let mut probe = Probe {
        stop_after: Some(8),
        ..Probe::default()
    };
    let stopped = train(
        tiny_model(11, &device),
        Task::Mrpc,
        &data,
        &args,
        &run,
        false,
        &device,
        &mut probe,
    )
    .expect("stopped run");
    assert_eq!(stopped.state.global_step, 8);
    assert_eq!(probe.steps, (1..=8).collect::<Vec<_>>());
    let ck: TrainerState = serde_json::from_slice(
        &std::fs::read(dir.path().join("checkpoint/trainer_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(ck.global_step, 6);
    assert_eq!(
        ck.torch_generator.is_some(),
        rng == RandomStreams::Torch,
        "PyTorch's generator is checkpointed exactly when it drives the run"
    );
    // metrics.json reflects the stop, not the checkpoint.
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.metrics()).unwrap()).unwrap();
    assert_eq!(json["global_step"], 8);

    // Resume with a differently initialised head: the checkpoint must overwrite everything.
    let mut probe = Probe::default();
    let resumed = train(
        tiny_model(99, &device),
        Task::Mrpc,
        &data,
        &args,
        &run,
        true,
        &device,
        &mut probe,
    )
    .expect("resumed run");
    assert_eq!(probe.start, Some((10, 6)));
    assert_eq!(probe.steps, [7, 8, 9, 10]);

    assert_same_history(&full.state, &resumed.state);
    assert_eq!(
        snapshot(&full.last),
        snapshot(&resumed.last),
        "last weights"
    );
    assert_eq!(
        snapshot(&full.best),
        snapshot(&resumed.best),
        "best weights"
    );
    assert_eq!(
        dev_logits(&full.last, &device),
        dev_logits(&resumed.last, &device)
    );
    let (p_full, l_full) = predict(&full.best, Task::Mrpc, &data.dev[0].1, 8, 0, &device).unwrap();
    let (p_res, l_res) = predict(&resumed.best, Task::Mrpc, &data.dev[0].1, 8, 0, &device).unwrap();
    assert_eq!(p_full, p_res);
    assert_eq!(l_full, l_res);

    // A resume of a finished run does nothing and keeps the history.
    let mut probe = Probe::default();
    let again = train(
        tiny_model(5, &device),
        Task::Mrpc,
        &data,
        &args,
        &full_run,
        true,
        &device,
        &mut probe,
    )
    .expect("resume of a finished run");
    assert_eq!(probe.start, Some((10, 10)));
    assert!(probe.steps.is_empty());
    assert_same_history(&full.state, &again.state);
    assert_eq!(snapshot(&full.last), snapshot(&again.last));
}

/// A checkpoint resumes only with the random streams it was written with (burn's have no
/// PyTorch generator to continue; PyTorch's would silently become another run): an error that
/// says so.
#[test]
fn checkpoints_resume_only_with_their_own_random_streams() {
    let _lock = rng_lock();
    let device = Device::flex().autodiff();
    let data = data();
    let with = |rng| TrainArgs { rng, ..base_args() };
    // The tiny model trained with `rng` in `dir`: resumed, or fresh and stopped after step 3
    // (a checkpoint is written at step 3).
    let run = |rng, dir: &Path, resume| {
        let mut probe = Probe {
            stop_after: Some(3),
            ..Probe::default()
        };
        let model = tiny_model(11, &device);
        let (args, dir) = (with(rng), RunDir::new(dir));
        train(
            model,
            Task::Mrpc,
            &data,
            &args,
            &dir,
            resume,
            &device,
            &mut probe,
        )
    };
    let (burn_dir, torch_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let burn_run = run(RandomStreams::Burn, burn_dir.path(), false).unwrap();
    let torch_run = run(RandomStreams::Torch, torch_dir.path(), false).unwrap();
    // The streams matter: the same 3 steps under PyTorch's generator log other losses.
    assert_ne!(torch_run.state.log[0].loss, burn_run.state.log[0].loss);
    for (rng, dir, fix) in [
        (
            RandomStreams::Torch,
            burn_dir.path(),
            "resume with rng = burn",
        ),
        (
            RandomStreams::Burn,
            torch_dir.path(),
            "resume with rng = torch",
        ),
    ] {
        let Err(err) = run(rng, dir, true) else {
            panic!("resumed a checkpoint of the other streams with {rng}");
        };
        assert!(
            matches!(&err, TrainError::InvalidArgs(m) if m.contains(fix)),
            "{err}"
        );
    }
}

fn checkpoint_entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("checkpoint"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A diverging run (lr 1e30) stops with `NonFiniteLoss` naming the step, and the checkpoint of
/// the step before stays complete; a NaN weight fails at step 1 with no checkpoint claimed.
#[test]
fn non_finite_loss_stops_and_keeps_the_last_checkpoint() {
    let _lock = rng_lock();
    let device = Device::flex().autodiff();
    let data = data();
    // No weight decay: with lr·wd = 1e28 the decay itself overflows the weights (case below).
    let args = TrainArgs {
        learning_rate: 1e30,
        warmup_ratio: 0.0,
        weight_decay: 0.0,
        save_steps: 1,
        eval_steps: 0,
        ..base_args()
    };
    let dir = tempfile::tempdir().unwrap();
    let run = RunDir::new(dir.path());
    let mut probe = Probe::default();
    let err = train(
        tiny_model(11, &device),
        Task::Mrpc,
        &data,
        &args,
        &run,
        false,
        &device,
        &mut probe,
    )
    .err()
    .expect("lr 1e30 diverges");
    let (step, loss, last_checkpoint) = match &err {
        TrainError::NonFiniteLoss {
            step,
            loss,
            last_checkpoint,
        } => (*step, *loss, *last_checkpoint),
        other => panic!("expected NonFiniteLoss, got {other}"),
    };
    assert!(!loss.is_finite());
    // The first step starts from the fixture, so its loss is finite; a checkpoint follows every
    // step, so the last one is the step before.
    assert!(step >= 2, "step {step}");
    assert_eq!(probe.steps, (1..step).collect::<Vec<_>>());
    assert_eq!(last_checkpoint, Some(step - 1));
    let msg = err.to_string();
    assert!(msg.contains(&format!("at step {step}:")), "{msg}");
    assert!(msg.contains(&format!("(step {})", step - 1)), "{msg}");

    let ck: TrainerState = serde_json::from_slice(
        &std::fs::read(dir.path().join("checkpoint/trainer_state.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(ck.global_step, step - 1);
    let entries = checkpoint_entries(dir.path());
    assert_eq!(entries.len(), 4, "{entries:?}");
    for prefix in ["best", "model", "optimizer", "trainer_state.json"] {
        assert!(entries.iter().any(|e| e.starts_with(prefix)), "{entries:?}");
    }
    assert!(!dir.path().join("checkpoint.partial").exists());
    // The kept model loads and holds finite weights.
    let file = entries.iter().find(|e| e.starts_with("model")).unwrap();
    let kept = tiny_model(11, &device)
        .try_load_file(dir.path().join("checkpoint").join(file))
        .expect("checkpointed model loads");
    assert!(snapshot(&kept).values().flatten().all(|x| x.is_finite()));
    assert!(opf_train::optim::params_finite(&kept));

    // With weight decay the first update overflows the weights (p −= 1e28·p) while the first loss
    // was finite: caught before the step-1 checkpoint, which is not written.
    let dir = tempfile::tempdir().unwrap();
    let err = train(
        tiny_model(11, &device),
        Task::Mrpc,
        &data,
        &TrainArgs {
            weight_decay: 0.01,
            ..args.clone()
        },
        &RunDir::new(dir.path()),
        false,
        &device,
        &mut Probe::default(),
    )
    .err()
    .expect("weights overflow");
    assert!(
        matches!(
            err,
            TrainError::NonFiniteWeights {
                step: 1,
                last_checkpoint: None
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("after step 1:"), "{err}");
    assert!(!dir.path().join("checkpoint").exists());

    // A NaN in the classifier bias: the very first loss is NaN and nothing was saved.
    let mut model = tiny_model(11, &device);
    model.classifier.bias = Some(Param::from_tensor(Tensor::<1>::from_data(
        TensorData::new(vec![f32::NAN, 0.0], [2]),
        &device,
    )));
    let dir = tempfile::tempdir().unwrap();
    let err = train(
        model,
        Task::Mrpc,
        &data,
        &TrainArgs {
            save_steps: 1,
            ..base_args()
        },
        &RunDir::new(dir.path()),
        false,
        &device,
        &mut Probe::default(),
    )
    .err()
    .expect("NaN weight");
    assert!(
        matches!(
            err,
            TrainError::NonFiniteLoss {
                step: 1,
                last_checkpoint: None,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("no checkpoint"), "{err}");
    assert!(!dir.path().join("checkpoint").exists());
}

#[test]
fn batch_tensors_keep_the_host_layout() {
    // batch_tensors keeps the host layout: row-major [batch, seq] with padding = pad_id.
    let device = Device::flex();
    let feats = synthetic(3, 1);
    let batch = opf_glue::Batches::new(&feats, 3, 0, opf_glue::Order::Sequential)
        .unwrap()
        .next()
        .unwrap();
    let [ids, _, mask] = opf_train::batch_tensors(&batch, &device);
    let ids: Tensor<2, Int> = ids;
    assert_eq!(ids.dims(), [3, batch.seq_len]);
    let first: Vec<i64> = ids
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap();
    assert_eq!(&first[..feats[0].input_ids.len()], &feats[0].input_ids[..]);
    let ones: i64 = mask.sum().into_scalar::<i64>();
    let tokens: usize = feats.iter().map(|f| f.input_ids.len()).sum();
    assert_eq!(ones as usize, tokens);
}

// ------------------------------------------------------------------------------------------------
// BART
// ------------------------------------------------------------------------------------------------

/// The examples of [`synthetic`] in BART's pair format, `<s> a </s></s> b </s>` (bos 0, eos 2,
/// pad 1; the words keep their ids 5..=98), token types all 0: every row has three `<eos>`.
fn synthetic_bart(n: usize, seed: u64) -> Vec<Features> {
    synthetic(n, seed)
        .into_iter()
        .map(|f| {
            let ids = &f.input_ids;
            let sep = ids.iter().position(|&id| id == 3).expect("[SEP] after a");
            let (a, b) = (&ids[1..sep], &ids[sep + 1..ids.len() - 1]);
            let input_ids: Vec<i64> = [&[0][..], a, &[2, 2], b, &[2]].concat();
            Features {
                token_type_ids: vec![0; input_ids.len()],
                input_ids,
                label: f.label,
            }
        })
        .collect()
}

/// The trainer fine-tunes BART through its `SequenceClassifier` impl (spec §5.7): a random tiny
/// BART with the fixture's shapes and 2 labels, every projection (cross-attention included)
/// over-parameterized, 2 epochs on MRPC-like pairs; every step is finite, the cores move, and
/// dev predictions come out of the trained model.
#[test]
fn bart_trains_with_the_glue_trainer() {
    let _lock = rng_lock();
    let device = Device::flex().autodiff();
    device.seed(5);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../opf-models/tests/fixtures/tiny-bart/config.json");
    let config = BartConfig::from_file(fixture)
        .expect("tiny BART config")
        .with_num_labels(2);
    let mut model = BartForSequenceClassification::new(&config, &device);
    let paths = model.model.linear_paths();
    let done = model
        .model
        .over_parameterize(&paths, &mpo_core::Preset::Opf(3), CoreTraining::All)
        .expect("tiny BART projections factor");
    assert_eq!(done.len(), 2 * 6 + 2 * 10);
    let initial = snapshot(&model);

    let data = TrainData {
        train: synthetic_bart(40, 7),
        dev: vec![(Split::Dev, synthetic_bart(12, 8))],
        pad_id: 1,
    };
    let dir = tempfile::tempdir().unwrap();
    let outcome = train(
        model,
        Task::Mrpc,
        &data,
        &base_args(),
        &RunDir::new(dir.path()),
        false,
        &device,
        &mut Probe::default(),
    )
    .expect("BART run");
    assert_eq!(outcome.state.global_step, 10);
    assert!(outcome.state.log.iter().all(|l| l.loss.is_finite()));
    let after = snapshot(&outcome.last);
    let core = "model.decoder.layers.1.encoder_attn.k_proj.Mpo.cores.1";
    assert!(after.contains_key(core), "{:?}", after.keys().take(8));
    assert!(max_abs_diff(&initial[core], &after[core]) > 0.0);

    let (predictions, loss) = predict(
        &outcome.last,
        Task::Mrpc,
        &data.dev[0].1,
        8,
        data.pad_id,
        &device,
    )
    .expect("BART predictions");
    assert!(loss.is_some_and(f64::is_finite));
    match predictions {
        opf_glue::Predictions::Class(classes) => assert_eq!(classes.len(), 12),
        other => panic!("MRPC predicts classes, got {other:?}"),
    }
}

/// `predict` batches longest first but returns predictions in input order: each one equals the
/// model's output for its example alone (no padding), for class ids (MRPC) and for scores (STS-B,
/// 1e-5 absolute in f32: padding changes only the reduction shapes).
#[test]
fn predictions_come_back_in_input_order() {
    let _lock = rng_lock();
    let device = Device::flex().autodiff();
    let dev = synthetic(13, 21);
    for (task, labels) in [(Task::Mrpc, 2), (Task::Stsb, 1)] {
        let mut model = tiny_model(9, &device);
        model.classifier = burn::nn::LinearConfig::new(32, labels).init(&device);
        let examples: Vec<Features> = dev
            .iter()
            .map(|f| Features {
                label: Some(match task {
                    Task::Stsb => Label::Score(1.5),
                    _ => f.label.unwrap(),
                }),
                ..f.clone()
            })
            .collect();
        let alone: Vec<Vec<f32>> = examples
            .iter()
            .map(|f| logits(&model, std::slice::from_ref(f), &device))
            .collect();
        let (preds, loss) = predict(&model, task, &examples, 5, 0, &device).unwrap();
        assert!(loss.is_some_and(f64::is_finite));
        match preds {
            opf_glue::Predictions::Class(classes) => {
                let want: Vec<usize> = alone.iter().map(|l| usize::from(l[1] > l[0])).collect();
                assert_eq!(classes, want);
            }
            opf_glue::Predictions::Score(scores) => {
                assert_eq!(scores.len(), examples.len());
                for (s, l) in scores.iter().zip(&alone) {
                    assert!((s - l[0]).abs() < 1e-5, "{s} vs {}", l[0]);
                }
            }
        }
    }
}
