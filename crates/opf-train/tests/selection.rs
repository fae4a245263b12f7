//! The paper's selection scores wired into training (spec §4.3): the Taylor score accumulated
//! from the trainer's own gradients, the zero-ablation score, and rounds every t optimizer steps.
//! Checked against direct computations on the tiny BERT; tolerances relative, f32 model.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use opf_glue::{Batches, Features, Label, Order, Split, Task};
use opf_models::{BertForSequenceClassification, CoreTraining, LinearKind, LinearPath, ProjLinear};
use opf_select::{GroupRule, Horizon, RoundAt, Schedule};
use opf_train::select::{OpfModel, Score, SelectionRounds, ablation_pass_scores, matrix_id};
use opf_train::{RoundHook, RunDir, Silent, TrainArgs, TrainData, batch_tensors, task_loss};

/// burn-flex seeds one global RNG (dropout, head initialisation): tests that build or train a
/// model hold this lock so that parallel tests do not draw from each other's streams.
static RNG: Mutex<()> = Mutex::new(());

fn rng_lock() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn tiny_model(device: &Device) -> BertForSequenceClassification {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../opf-models/tests/fixtures/tiny-bert");
    device.seed(3);
    let mut model = BertForSequenceClassification::load(dir, None, None, device)
        .expect("tiny BERT fixture loads")
        .0;
    model.classifier = burn::nn::LinearConfig::new(32, 2).init(device);
    model
}

/// `n` pair examples with ids < 99 and labels 0/1, deterministic in `seed`.
fn examples(n: usize, seed: u64) -> Vec<Features> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    let mut next = move |bound: u64| {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) % bound
    };
    (0..n)
        .map(|_| {
            let len = 3 + next(8) as usize;
            let mut ids = vec![2i64];
            ids.extend((0..len).map(|_| 5 + next(94) as i64));
            ids.push(3);
            let types = (0..ids.len()).map(|i| i64::from(i > len / 2 + 1)).collect();
            let label = Label::Class((ids[1] % 2) as usize);
            Features {
                input_ids: ids,
                token_type_ids: types,
                label: Some(label),
            }
        })
        .collect()
}

fn ffn1(layer: usize) -> LinearPath {
    LinearPath::new(layer, LinearKind::Ffn1)
}

fn rounds<'a>(
    schedule: Schedule,
    top_n: usize,
    score: Score,
    train: &'a [Features],
    device: &Device,
) -> SelectionRounds<'a> {
    let plan = schedule
        .plan(
            top_n,
            Horizon {
                epochs: 2,
                total_steps: 10,
            },
        )
        .unwrap();
    SelectionRounds::new(
        plan,
        GroupRule::Strict,
        "FFN_1".parse().unwrap(),
        "opf:3".parse().unwrap(),
        CoreTraining::All,
        score,
        train,
        8,
        0,
        42,
        device.clone(),
    )
    .unwrap()
}

/// |⟨∇W L, W⟩| of the FFN_1 weight of `layer`, on the host in f64.
fn taylor_term(
    model: &BertForSequenceClassification,
    grads: &GradientsParams,
    layer: usize,
) -> f64 {
    let ProjLinear::Dense(l) = model.bert.linear(ffn1(layer)) else {
        panic!("dense")
    };
    let g = grads
        .get::<2>(l.weight.id)
        .unwrap()
        .into_data()
        .convert::<f32>();
    let w = l.weight.val().inner().into_data().convert::<f32>();
    let (g, w) = (g.as_slice::<f32>().unwrap(), w.as_slice::<f32>().unwrap());
    g.iter()
        .zip(w)
        .map(|(&a, &b)| f64::from(a) * f64::from(b))
        .sum::<f64>()
        .abs()
}

#[test]
fn taylor_rounds_score_with_the_trainers_gradients() {
    let _lock = rng_lock();
    let device = Device::flex().autodiff();
    let model = tiny_model(&device);
    let train = examples(8, 1);
    let schedule = Schedule::StepRounds {
        every_steps: 2,
        per_round: 1,
    };
    let mut hook = rounds(schedule, 2, Score::Taylor { window: 2 }, &train, &device);

    // Two backward passes (as two training steps would run them), then the round after step 2.
    let mut expected = [0.0; 2];
    for seed in [5, 6] {
        let batch = Batches::new(&examples(8, seed), 8, 0, Order::Sequential)
            .unwrap()
            .next()
            .unwrap();
        let [ids, types, mask] = batch_tensors(&batch, &device);
        let loss = task_loss(
            model.forward(ids, types, mask),
            batch.labels.as_ref().unwrap(),
            &device,
        );
        let mut grads = GradientsParams::from_grads(loss.backward(), &model);
        for (layer, e) in expected.iter_mut().enumerate() {
            *e += taylor_term(&model, &grads, layer);
        }
        hook.after_backward(&model, &mut grads).unwrap();
    }
    let model = hook.after_step(1, model).unwrap();
    assert!(
        hook.log.is_empty() && model.bert.mpo_paths().is_empty(),
        "no round at step 1"
    );
    let model = hook.after_step(2, model).unwrap();
    let round = &hook.log[0];
    assert_eq!(round.at, RoundAt::Step(2));
    let best = if expected[0] >= expected[1] { 0 } else { 1 };
    assert_eq!(round.chosen.len(), 1);
    assert_eq!(round.chosen[0].matrix, matrix_id(ffn1(best)));
    let rel = (round.chosen[0].score - expected[best]).abs() / expected[best];
    assert!(
        rel < 1e-5,
        "Taylor score {} vs {} ({rel:.1e})",
        round.chosen[0].score,
        expected[best]
    );
    assert_eq!(model.bert.mpo_paths(), vec![ffn1(best)]);
}

#[test]
fn ablation_scores_are_the_loss_change_of_zeroing_each_matrix() {
    let _lock = rng_lock();
    let device = Device::flex().autodiff();
    let model = tiny_model(&device);
    let train = examples(24, 2);
    let scores = ablation_pass_scores(&model, &train, 2, 8, 0, &device).unwrap();
    assert_eq!(scores.len(), 12, "every projection of both layers");
    // By hand for one matrix: mean loss over the first two batches, intact and zeroed.
    let inner = device.clone().inner();
    let valid = model.valid();
    let loss = |m: &BertForSequenceClassification| -> f64 {
        let batches: Vec<_> = Batches::new(&train, 8, 0, Order::Sequential)
            .unwrap()
            .take(2)
            .collect();
        batches
            .iter()
            .map(|b| {
                let [ids, types, mask] = batch_tensors(b, &inner);
                task_loss(
                    m.forward(ids, types, mask),
                    b.labels.as_ref().unwrap(),
                    &inner,
                )
                .into_scalar::<f64>()
            })
            .sum::<f64>()
            / 2.0
    };
    let path = LinearPath::new(1, LinearKind::Value);
    let mut zeroed = valid.clone();
    let l = zeroed.bert.linear(path);
    let zero = ProjLinear::from_hf(Tensor::zeros([l.d_output(), l.d_input()], &inner), l.bias());
    zeroed.bert.set_linear(path, zero).unwrap();
    let want = (loss(&valid) - loss(&zeroed)).abs();
    let got = scores.get(matrix_id(path)).unwrap();
    assert!(
        (got - want).abs() <= 1e-6 * want.max(1e-6),
        "{got} vs {want}"
    );
}

/// 40 training and 8 dev examples of [`examples`]: 5 steps per epoch at batch 8.
fn step_round_data(train: &[Features]) -> TrainData {
    TrainData {
        train: train.to_vec(),
        dev: vec![(Split::Dev, examples(8, 8))],
        pad_id: 0,
    }
}

/// Two epochs at batch 8, lr 1e-3, no warmup, evaluation at epoch ends.
fn step_round_args(weight_decay: f64, logging_steps: usize, save_steps: usize) -> TrainArgs {
    TrainArgs {
        learning_rate: 1e-3,
        mpo_lr: None,
        num_train_epochs: 2,
        per_device_train_batch_size: 8,
        per_device_eval_batch_size: 8,
        warmup_steps: 0,
        warmup_ratio: 0.0,
        weight_decay,
        max_grad_norm: 1.0,
        seed: 42,
        eval_steps: 0,
        logging_steps,
        save_steps,
        ..TrainArgs::default()
    }
}

#[test]
fn step_rounds_run_inside_training() {
    let _lock = rng_lock();
    let device = Device::flex().autodiff();
    let train = examples(40, 7);
    let data = step_round_data(&train);
    let args = step_round_args(0.0, 5, 0);
    let schedule = Schedule::StepRounds {
        every_steps: 3,
        per_round: 1,
    };
    let mut hook = rounds(schedule, 2, Score::Taylor { window: 3 }, &train, &device);
    let dir = tempfile::tempdir().unwrap();
    let out: PathBuf = dir.path().join("run");
    let outcome = opf_train::train_with_rounds(
        tiny_model(&device),
        Task::Mrpc,
        &data,
        &args,
        &RunDir::new(&out),
        false,
        &device,
        &mut Silent,
        &mut hook,
    )
    .unwrap();
    let ats: Vec<RoundAt> = hook.log.iter().map(|r| r.at).collect();
    assert_eq!(ats, vec![RoundAt::Step(3), RoundAt::Step(6)]);
    let mut paths = outcome.last.bert.mpo_paths();
    paths.sort_by_key(|p| p.layer);
    assert_eq!(
        paths,
        vec![ffn1(0), ffn1(1)],
        "both FFN_1 matrices, one per round"
    );
    assert!(
        hook.log
            .iter()
            .all(|r| r.chosen.iter().all(|c| c.score > 0.0))
    );
}

/// Records the step a run starts from and stops it after `stop_after`.
#[derive(Default)]
struct Segment {
    stop_after: Option<usize>,
    start: Option<usize>,
}

impl opf_train::Observer for Segment {
    fn on_start(&mut self, _total: usize, start: usize) {
        self.start = Some(start);
    }
    fn should_stop(&mut self, step: usize) -> bool {
        self.stop_after == Some(step)
    }
}

impl Segment {
    fn until(step: usize) -> Self {
        Segment {
            stop_after: Some(step),
            start: None,
        }
    }
}

/// Dynamic Taylor step rounds (after steps 3 and 6, window 3) survive interruptions: a run
/// stopped after step 5 (epoch-end checkpoint: one matrix decomposed, the Taylor window of the
/// step-6 round half full) and after step 8 (checkpoint at step 8, whose best model, from step 5,
/// has fewer MPO layers than the model) and resumed each time ends bit-identical to an
/// uninterrupted run: rounds, scores, history and weights.
#[test]
fn dynamic_rounds_resume_exactly() {
    let _lock = rng_lock();
    let device = Device::flex().autodiff();
    let train = examples(40, 7);
    let data = step_round_data(&train);
    let args = step_round_args(0.01, 1, 4);
    let schedule = Schedule::StepRounds {
        every_steps: 3,
        per_round: 1,
    };
    let run = |out: &Path, resume: bool, observer: &mut dyn opf_train::Observer| {
        let mut hook = rounds(schedule, 2, Score::Taylor { window: 3 }, &train, &device);
        let outcome = opf_train::train_with_rounds(
            tiny_model(&device),
            Task::Mrpc,
            &data,
            &args,
            &RunDir::new(out),
            resume,
            &device,
            observer,
            &mut hook,
        )
        .unwrap();
        (outcome, hook.log)
    };
    let full_dir = tempfile::tempdir().unwrap();
    let (full, full_log) = run(full_dir.path(), false, &mut Silent);

    let dir = tempfile::tempdir().unwrap();
    let (first, _) = run(dir.path(), false, &mut Segment::until(5));
    assert_eq!(first.state.global_step, 5);
    let mut segment = Segment::until(8);
    let (second, _) = run(dir.path(), true, &mut segment);
    assert_eq!(
        (segment.start, second.state.global_step),
        (Some(5), 8),
        "resumed at the epoch-end checkpoint"
    );
    assert_eq!(
        second.best.bert.mpo_paths().len() + 1,
        second.last.bert.mpo_paths().len(),
        "the step-8 checkpoint holds a best model of another layout"
    );
    let mut segment = Segment::default();
    let (resumed, resumed_log) = run(dir.path(), true, &mut segment);
    assert_eq!(
        segment.start,
        Some(8),
        "resumed at the save_steps checkpoint"
    );

    let rounds = |log: &[opf_train::select::RoundLog]| -> Vec<(RoundAt, Vec<(String, f64)>)> {
        log.iter()
            .map(|r| {
                let chosen = r
                    .chosen
                    .iter()
                    .map(|c| (format!("{:?}", c.matrix), c.score))
                    .collect();
                (r.at, chosen)
            })
            .collect()
    };
    assert_eq!(rounds(&resumed_log), rounds(&full_log));
    assert_eq!(full_log.len(), 2);
    let steps = |o: &opf_train::TrainOutcome<BertForSequenceClassification>| {
        o.state
            .log
            .iter()
            .map(|l| (l.step, l.loss, l.lr, l.grad_norm))
            .collect::<Vec<_>>()
    };
    assert_eq!(steps(&resumed), steps(&full));
    assert_eq!(resumed.state.best, full.state.best);
    let weights = |m: &BertForSequenceClassification| {
        let mut m = m.clone();
        m.merge_mpo();
        let ProjLinear::Dense(l) = m.bert.linear(ffn1(1)) else {
            panic!("merged")
        };
        l.weight
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(weights(&resumed.last), weights(&full.last));
    assert_eq!(weights(&resumed.best), weights(&full.best));
}

/// ChildTuning-D: the Fisher pass keeps the requested fraction of the encoder-layer elements and
/// the hook zeroes exactly the other gradients (a masked element does not move in an AdamW step
/// without weight decay); parameters outside the layers are not masked.
#[test]
fn child_tuning_masks_keep_the_top_fraction_and_zero_the_rest() {
    let _lock = rng_lock();
    use opf_train::NoRounds;
    use opf_train::child_tuning::{ChildTuningD, ChildTuningMasks};
    let device = Device::flex().autodiff();
    let model = tiny_model(&device);
    let train = examples(16, 4);
    let masks = ChildTuningMasks::fisher(&model, &train, 8, 0, 42, 0.3, 1.0, &device).unwrap();
    let (kept, total) = masks.counts();
    let ProjLinear::Dense(ffn) = model.bert.linear(ffn1(0)) else {
        panic!("dense")
    };
    let (in_f, out_f) = (32, 37);
    assert!(
        total > in_f * out_f,
        "every encoder-layer parameter is scored"
    );
    let frac = kept as f64 / total as f64;
    assert!((0.3..0.31).contains(&frac), "kept {kept} of {total}");

    let batch = Batches::new(&examples(8, 9), 8, 0, Order::Sequential)
        .unwrap()
        .next()
        .unwrap();
    let [ids, types, mask] = batch_tensors(&batch, &device);
    let loss = task_loss(
        model.forward(ids, types, mask),
        batch.labels.as_ref().unwrap(),
        &device,
    );
    let mut grads = GradientsParams::from_grads(loss.backward(), &model);
    let before = grads
        .get::<2>(ffn.weight.id)
        .unwrap()
        .into_data()
        .convert::<f32>();
    let word = model.bert.embeddings.word_embeddings.weight.id;
    let word_before = grads.get::<2>(word).unwrap().into_data();
    let mut inner = NoRounds;
    let mut hook = ChildTuningD {
        inner: &mut inner,
        masks,
    };
    hook.after_backward(&model, &mut grads).unwrap();
    let after = grads
        .get::<2>(ffn.weight.id)
        .unwrap()
        .into_data()
        .convert::<f32>();
    let (b, a) = (
        before.as_slice::<f32>().unwrap(),
        after.as_slice::<f32>().unwrap(),
    );
    let zeroed = a
        .iter()
        .zip(b)
        .filter(|(x, y)| **x == 0.0 && **y != 0.0)
        .count();
    assert!(zeroed > 0, "some FFN gradients are masked");
    assert!(
        a.iter().zip(b).all(|(x, y)| *x == 0.0 || x == y),
        "kept ones are untouched"
    );
    assert_eq!(
        grads.get::<2>(word).unwrap().into_data(),
        word_before,
        "embeddings unmasked"
    );
}
