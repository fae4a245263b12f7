//! T5 fine-tuned text to text by the GLUE trainer on the tiny random T5 of `opf-models` and the
//! MRPC fixtures of `opf-glue` (sources `mrpc sentence1: … sentence2: …`, targets `0` / `1`
//! with `</s>`, tokenized by the tiny T5 tokenizer fixture): the loss is the label-smoothed
//! seq2seq loss of the tokenized targets, it decreases over a few steps, dev metrics come from
//! generated strings, and the static OPF path and a selection round run on T5's matrices.
//!
//! burn-flex seeds one global RNG (dropout), so every test that trains holds [`rng_lock`].

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor, TensorData};
use opf_glue::{
    Batches, Features, GlueTokenizer, Order, Predictions, Split, T5Text, Task, read_examples,
};
use opf_models::{CoreTraining, T5Config, T5ForConditionalGeneration};
use opf_select::{GroupRule, Horizon, Schedule, WeightTypes};
use opf_train::select::{OpfModel, Score, SelectionRounds};
use opf_train::t5::{T5_LABEL_SMOOTHING, T5TextToText};
use opf_train::{
    RunDir, Silent, TaskModel, TrainArgs, TrainData, TrainError, batch_tensors, predict, train,
    train_with_rounds,
};

static RNG: Mutex<()> = Mutex::new(());

fn rng_lock() -> MutexGuard<'static, ()> {
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn tokenizer() -> GlueTokenizer {
    let path = workspace().join("opf-glue/tests/fixtures/tiny-t5-tokenizer.json");
    GlueTokenizer::from_file(&path, 64).expect("tiny T5 tokenizer")
}

/// The tiny random T5 (v1.0: relu feed-forward, tied head) with the tokenizer's `</s>` (1) as
/// eos; the fixture's own eos id was picked for the generation parity test.
fn tiny_t5(device: &Device) -> T5TextToText {
    let dir = workspace().join("opf-models/tests/fixtures/tiny-t5");
    let mut config = T5Config::from_file(dir.join("config.json")).expect("config");
    config.eos_token_id = 1;
    let (model, _) = T5ForConditionalGeneration::load(&dir, Some(&config), device).expect("loads");
    let text = T5Text::new(&tokenizer(), 4).expect("targets");
    T5TextToText::new(model, text).expect("relu T5")
}

/// The MRPC fixture split (3 training pairs, 2 dev pairs) as T5 sources, repeated `repeat` times.
fn mrpc(split: &str, repeat: usize) -> Vec<Features> {
    let path = workspace().join(format!(
        "opf-glue/tests/fixtures/glue/MRPC/fixture-{split}.tsv"
    ));
    let split = match split {
        "train" => Split::Train,
        _ => Split::Dev,
    };
    let examples = read_examples(&path, Task::Mrpc, split).expect("fixture");
    let features = tokenizer()
        .encode_t5(Task::Mrpc, &examples)
        .expect("tokenizes");
    features
        .iter()
        .cycle()
        .take(features.len() * repeat)
        .cloned()
        .collect()
}

fn args(epochs: usize) -> TrainArgs {
    TrainArgs {
        learning_rate: 3e-3,
        num_train_epochs: epochs,
        per_device_train_batch_size: 4,
        per_device_eval_batch_size: 2,
        warmup_ratio: 0.0,
        logging_steps: 1,
        ..TrainArgs::default()
    }
}

/// The trainer's loss is the label-smoothed cross-entropy of the tokenized targets (`"1" </s>`
/// for a paraphrase) under teacher forcing with the labels shifted right.
#[test]
fn loss_is_label_smoothed_seq2seq_loss_of_the_targets() {
    let _lock = rng_lock();
    let device = Device::flex();
    let model = tiny_t5(&device);
    assert_eq!(model.label_smoothing(), T5_LABEL_SMOOTHING);
    let train = mrpc("train", 1);
    let batch = Batches::new(&train, 4, 0, Order::Sequential)
        .unwrap()
        .next()
        .unwrap();
    let labels = batch.labels.as_ref().unwrap();
    let loss = model
        .loss(batch_tensors(&batch, &device), labels, &device)
        .into_scalar::<f64>();

    // By hand: targets are the label's digit token and </s> (id 1); the labels are 1, 0, 1.
    let tok = tokenizer();
    let id = |s: &str| i64::from(tok.inner().token_to_id(s).unwrap());
    let rows: Vec<i64> = [1, 0, 1]
        .iter()
        .flat_map(|c| [id(&c.to_string()), 1])
        .collect();
    let targets = Tensor::<2, Int>::from_data(TensorData::new(rows, [3, 2]), &device);
    let [ids, _, mask] = batch_tensors(&batch, &device);
    let logits = model
        .model
        .forward(ids, mask, model.model.shift_right(targets.clone()));
    let expected = model.model.loss(logits, targets, 0.1).into_scalar::<f64>();
    assert!((loss - expected).abs() < 1e-6, "{loss} vs {expected}");
}

/// A few epochs on the MRPC fixtures: the loss decreases and every dev evaluation scores the
/// generated strings with the GLUE metrics.
#[test]
fn t5_trains_text_to_text_and_scores_generations() {
    let _lock = rng_lock();
    let device = Device::flex().autodiff();
    device.seed(3);
    let data = TrainData {
        train: mrpc("train", 4),
        dev: vec![(Split::Dev, mrpc("dev", 1))],
        pad_id: 0,
    };
    let dir = tempfile::tempdir().unwrap();
    let outcome = train(
        tiny_t5(&device),
        Task::Mrpc,
        &data,
        &args(4),
        &RunDir::new(dir.path()),
        false,
        &device,
        &mut Silent,
    )
    .expect("T5 run");
    let losses: Vec<f64> = outcome.state.log.iter().map(|l| l.loss).collect();
    // 3 pairs × 4 = 12 examples, 3 steps per epoch.
    assert_eq!(losses.len(), 12);
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    let first = losses[..3].iter().sum::<f64>();
    let last = losses[9..].iter().sum::<f64>();
    assert!(last < first, "loss did not decrease: {losses:?}");
    assert_eq!(outcome.state.evals.len(), 4);
    for e in &outcome.state.evals {
        assert!(e.loss.is_finite());
        for key in ["acc", "f1", "acc_and_f1"] {
            assert!(
                (0.0..=1.0).contains(&e.metrics[key]),
                "{key}: {:?}",
                e.metrics
            );
        }
    }
    let (preds, loss) = predict(&outcome.best, Task::Mrpc, &data.dev[0].1, 2, 0, &device).unwrap();
    assert!(loss.is_some_and(f64::is_finite));
    match preds {
        Predictions::Class(c) => assert_eq!(c.len(), 2),
        other => panic!("MRPC predicts classes, got {other:?}"),
    }
}

/// Static OPF on every T5 projection (encoder and decoder self-attention, cross-attention,
/// wi/wo): training moves the cores, and merging gives the dense architecture back.
#[test]
fn static_opf_over_every_t5_projection_trains_and_merges() {
    let _lock = rng_lock();
    let device = Device::flex().autodiff();
    device.seed(4);
    let mut model = tiny_t5(&device);
    let dense = model.num_params();
    let paths = model.linear_paths();
    // 2 encoder blocks × (4 + 2) and 2 decoder blocks × (4 + 4 + 2).
    assert_eq!(paths.len(), 32);
    let done = model
        .over_parameterize(&paths, &mpo_core::Preset::Opf(3), CoreTraining::All)
        .expect("tiny T5 projections factor");
    assert_eq!(done.len(), 32);
    assert_eq!(
        done[12].path.to_string(),
        "decoder.block.0.layer.0.SelfAttention.q"
    );
    let data = TrainData {
        train: mrpc("train", 2),
        dev: vec![(Split::Dev, mrpc("dev", 1))],
        pad_id: 0,
    };
    let dir = tempfile::tempdir().unwrap();
    let outcome = train(
        model,
        Task::Mrpc,
        &data,
        &args(1),
        &RunDir::new(dir.path()),
        false,
        &device,
        &mut Silent,
    )
    .expect("OPF T5 run");
    let mut best = outcome.best;
    assert_eq!(best.mpo_paths().len(), 32);
    best.merge_mpo();
    assert!(best.mpo_paths().is_empty());
    assert_eq!(best.num_params(), dense);
}

/// A Fisher selection round scores T5's still-dense matrices with the seq2seq loss and
/// over-parameterizes the top one per group, cross-attention included.
#[test]
fn selection_round_picks_t5_matrices() {
    let _lock = rng_lock();
    let device = Device::flex().autodiff();
    device.seed(5);
    let train_set = mrpc("train", 2);
    let data = TrainData {
        train: train_set.clone(),
        dev: vec![(Split::Dev, mrpc("dev", 1))],
        pad_id: 0,
    };
    let plan = Schedule::Static
        .plan(
            1,
            Horizon {
                epochs: 1,
                total_steps: 2,
            },
        )
        .unwrap();
    let mut rounds = SelectionRounds::new(
        plan,
        GroupRule::Strict,
        "FFN_1,cross_attention".parse::<WeightTypes>().unwrap(),
        mpo_core::Preset::Opf(3),
        CoreTraining::All,
        Score::Fisher,
        &train_set,
        4,
        0,
        42,
        device.clone(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let outcome = train_with_rounds(
        tiny_t5(&device),
        Task::Mrpc,
        &data,
        &args(1),
        &RunDir::new(dir.path()),
        false,
        &device,
        &mut Silent,
        &mut rounds,
    )
    .expect("selection run");
    let chosen: Vec<String> = rounds.log[0]
        .chosen
        .iter()
        .map(|c| c.matrix.to_string())
        .collect();
    assert!(!chosen.is_empty());
    assert!(
        chosen
            .iter()
            .all(|m| m.ends_with("ffn_1") || m.starts_with("decoder.") && m.contains("cross_")),
        "{chosen:?}"
    );
    assert_eq!(outcome.last.mpo_paths().len(), chosen.len());
}

/// A gated (v1.1) T5 is refused with a clear error.
#[test]
fn gated_t5_is_refused() {
    let device = Device::flex();
    let dir = workspace().join("opf-models/tests/fixtures/tiny-t5-gated");
    let (model, _) = T5ForConditionalGeneration::load(&dir, None, &device).expect("loads");
    let text = T5Text::new(&tokenizer(), 4).unwrap();
    let err = T5TextToText::new(model, text).unwrap_err();
    assert!(matches!(err, TrainError::GatedT5), "{err}");
    assert!(err.to_string().contains("wi_0"), "{err}");
}
