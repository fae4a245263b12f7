//! End to end through the `opf` binary on the tiny random BERT, BART and T5 and the hand-written
//! MRPC fixtures: an OPF run (FFN matrices over-parameterized; for BART and T5 also the decoder's
//! cross-attention) trains, predicts the test split and exports a merged Hugging Face directory;
//! `opf export` rebuilds the same directory from the run's checkpoint; selection runs record
//! their rounds; bad arguments and unsupported architectures are clear errors.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use safetensors::SafeTensors;

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A model directory: the tiny random BERT of `opf-models` (without its classification head) plus
/// a 73-token WordPiece tokenizer.
fn tiny_model(root: &Path) -> PathBuf {
    fixture_model(root, "tiny-bert", "classifier.", "tiny-tokenizer.json")
}

/// A model directory: the tiny random BART of `opf-models` (without its classification head) plus
/// a word-level tokenizer with BART's special tokens and pair template
/// (`scripts/gen_tiny_bart_tokenizer.py`).
fn tiny_bart(root: &Path) -> PathBuf {
    fixture_model(
        root,
        "tiny-bart",
        "classification_head.",
        "tiny-bart-tokenizer.json",
    )
}

/// A model directory: the tiny random T5 of `opf-models` (v1.0, tied head) with `</s>` = 1 as eos
/// (the fixture's own eos id was picked for the generation parity test) plus the word-level T5
/// tokenizer of `opf-glue` (`scripts/gen_t5_tokenizer_fixture.py`).
fn tiny_t5(root: &Path) -> PathBuf {
    let src = manifest_dir().join("../opf-models/tests/fixtures/tiny-t5");
    let dir = root.join("tiny-t5");
    std::fs::create_dir_all(&dir).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config["eos_token_id"] = 1.into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(src.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    std::fs::copy(
        manifest_dir().join("../opf-glue/tests/fixtures/tiny-t5-tokenizer.json"),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    dir
}

/// The `opf-models` fixture `name` without the tensors starting with `head` (a base checkpoint, as
/// a fine-tuning run starts from), with the tokenizer fixture `tokenizer`.
fn fixture_model(root: &Path, name: &str, head: &str, tokenizer: &str) -> PathBuf {
    let src = manifest_dir()
        .join("../opf-models/tests/fixtures")
        .join(name);
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(src.join("config.json"), dir.join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let tensors = SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<_> = tensors
        .tensors()
        .into_iter()
        .filter(|(name, _)| !name.starts_with(head))
        .collect();
    safetensors::serialize_to_file(kept, None, &dir.join("model.safetensors")).unwrap();
    std::fs::copy(
        manifest_dir().join("tests/fixtures").join(tokenizer),
        dir.join("tokenizer.json"),
    )
    .unwrap();
    dir
}

/// The MRPC fixtures of `opf-glue` under their standard names (`MRPC/train.tsv`, ...).
fn glue(root: &Path) -> PathBuf {
    let src = manifest_dir().join("../opf-glue/tests/fixtures/glue/MRPC");
    let dir = root.join("glue");
    std::fs::create_dir_all(dir.join("MRPC")).unwrap();
    for split in ["train", "dev", "test"] {
        std::fs::copy(
            src.join(format!("fixture-{split}.tsv")),
            dir.join("MRPC").join(format!("{split}.tsv")),
        )
        .unwrap();
    }
    dir
}

fn opf(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opf"))
        .args(args)
        .env_remove("GLUE_DIR")
        .output()
        .expect("opf runs")
}

/// `opf glue MRPC` on `model` with the MRPC fixtures in `glue`, output in `run`, the shipped
/// `configs/mrpc.toml` and length 32, then `extra` flags.
fn glue_mrpc(model: &Path, glue: &Path, run: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_opf"))
        .args(["glue", "MRPC", "--config"])
        .arg(manifest_dir().join("../../configs/mrpc.toml"))
        .arg("--model")
        .arg(model)
        .arg("--data-dir")
        .arg(glue)
        .arg("--output-dir")
        .arg(run)
        .args(["--max-seq-length", "32"])
        .args(extra)
        .env_remove("GLUE_DIR")
        .output()
        .expect("opf runs")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "opf failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn tensor_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let mut names: Vec<String> = SafeTensors::deserialize(&bytes)
        .unwrap()
        .names()
        .into_iter()
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// Asserts that two safetensors files hold the same tensors, bit for bit; returns their names.
fn assert_same_tensors(a: &Path, b: &Path) -> Vec<String> {
    let names = tensor_names(a);
    assert_eq!(tensor_names(b), names);
    let (a, b) = (std::fs::read(a).unwrap(), std::fs::read(b).unwrap());
    let (a, b) = (
        SafeTensors::deserialize(&a).unwrap(),
        SafeTensors::deserialize(&b).unwrap(),
    );
    for name in &names {
        assert_eq!(
            a.tensor(name).unwrap().data(),
            b.tensor(name).unwrap().data(),
            "{name}"
        );
    }
    names
}

#[test]
fn opf_run_predicts_and_exports_and_opf_export_rebuilds_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, glue, run) = (
        tiny_model(tmp.path()),
        glue(tmp.path()),
        tmp.path().join("run"),
    );
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let log = stdout(&glue_mrpc(
        &model,
        &glue,
        &run,
        &[
            "--num-train-epochs",
            "2",
            "--per-device-train-batch-size",
            "2",
            "--mpo-preset",
            "opf:3",
            "--mpo-targets",
            "ffn",
            "--do-predict",
        ],
    ));
    assert!(log.contains("OPF: 4 matrices over-parameterized"), "{log}");
    assert!(log.contains("(merged)"), "{log}");
    assert!(log.contains("4 MPO layers merged"), "{log}");
    for f in [
        "run.json",
        "metrics.json",
        "curves.svg",
        "MRPC.tsv",
        "checkpoint/best.bpk",
    ] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    let exported = run.join("model");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "README.md",
    ] {
        assert!(exported.join(f).is_file(), "missing model/{f}");
    }
    let names = tensor_names(&exported.join("model.safetensors"));
    for dense in ["intermediate.dense", "output.dense"] {
        let name = format!("bert.encoder.layer.1.{dense}.weight");
        assert!(names.contains(&name), "{name} not in {names:?}");
    }
    assert!(names.iter().all(|n| !n.contains("cores")));
    let readme = std::fs::read_to_string(exported.join("README.md")).unwrap();
    assert!(
        readme.contains("4 projections were trained as MPO cores"),
        "{readme}"
    );
    assert!(readme.contains("| 2.00 | dev |"), "{readme}");

    // `opf export` finds the base model in run.json and rebuilds the MPO layers from the
    // checkpoint: the same tensors as the run's own export.
    let again = tmp.path().join("again");
    let log = stdout(&opf(&["export", &s(&run), "--output", &s(&again)]));
    assert!(log.contains("4 MPO layers merged"), "{log}");
    assert_same_tensors(
        &exported.join("model.safetensors"),
        &again.join("model.safetensors"),
    );

    // Clear errors: no such run, no manifest and no --model.
    let err = opf(&[
        "export",
        &s(&tmp.path().join("nope")),
        "--model",
        &s(&model),
    ]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("no checkpoint"));
    std::fs::remove_file(run.join("run.json")).unwrap();
    let err = opf(&["export", &s(&run)]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("--model"));
}

#[test]
fn bench_steps_times_dense_and_opf_variants() {
    let out = opf(&[
        "bench",
        "steps",
        "--arch",
        "tiny",
        "--batch",
        "4",
        "--seq-len",
        "16",
        "--steps",
        "2",
        "--warmup",
        "1",
        "--variants",
        "dense,opf:3/ffn",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    let dense = rows[0]["params_train"].as_u64().unwrap();
    assert_eq!(rows[0]["params_merged"].as_u64(), Some(dense));
    assert_eq!(rows[1]["params_merged"].as_u64(), Some(dense));
    assert!(rows[1]["params_train"].as_u64().unwrap() > dense);
    for r in rows {
        assert!(r["final_loss"].as_f64().unwrap().is_finite());
        assert!(r["step_s"].as_f64().unwrap() > 0.0);
    }
    let err = opf(&[
        "bench",
        "steps",
        "--arch",
        "tiny",
        "--seq-len",
        "16",
        "--variants",
        "opf:3",
    ]);
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("preset/targets"));
}

#[test]
fn seeds_report_mean_and_std_over_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, glue, run) = (
        tiny_model(tmp.path()),
        glue(tmp.path()),
        tmp.path().join("run"),
    );
    let log = stdout(&glue_mrpc(
        &model,
        &glue,
        &run,
        &[
            "--num-train-epochs",
            "1",
            "--per-device-train-batch-size",
            "2",
            "--seed",
            "7",
            "--seeds",
            "2",
        ],
    ));
    assert!(log.contains("2 seeds [7, 8]"), "{log}");
    for seed in ["seed-7", "seed-8"] {
        assert!(
            run.join(seed).join("model/model.safetensors").is_file(),
            "{seed}"
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("seeds.json")).unwrap()).unwrap();
    let acc = &v["metrics"]["dev/acc"];
    let values: Vec<f64> = serde_json::from_value(acc["values"].clone()).unwrap();
    assert_eq!(values.len(), 2);
    let mean = values.iter().sum::<f64>() / 2.0;
    assert!((acc["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
    let std = ((values[0] - mean).powi(2) + (values[1] - mean).powi(2)).sqrt();
    assert!((acc["std"].as_f64().unwrap() - std).abs() < 1e-12);
}

#[test]
fn taylor_step_rounds_and_ablation_selection_run_and_are_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, glue) = (tiny_model(tmp.path()), glue(tmp.path()));
    let cases: [(&str, &[&str], &str); 2] = [
        (
            "taylor",
            &[
                "--dynamic-decom",
                "--round-steps",
                "1",
                "--per-round",
                "1",
                "--score",
                "taylor",
            ],
            "after step 1",
        ),
        (
            "ablation",
            &[
                "--score",
                "ablation",
                "--ablation-batches",
                "1",
                "--child-tuning-reserve",
                "0.5",
            ],
            "at epoch 0",
        ),
    ];
    for (name, extra, at) in cases {
        let run = tmp.path().join(name);
        let mut args = vec![
            "--num-train-epochs",
            "2",
            "--per-device-train-batch-size",
            "2",
            "--mpo-preset",
            "opf:3",
            "--top-n",
            "1",
            "--weight-types",
            "FFN_1",
        ];
        args.extend_from_slice(extra);
        let log = stdout(&glue_mrpc(&model, &glue, &run, &args));
        assert!(
            log.contains(&format!("selection round {at}")),
            "{name}: {log}"
        );
        let metrics: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap())
                .unwrap();
        let rounds = metrics["selection"].as_array().unwrap();
        assert_eq!(rounds.len(), 1, "{name}");
        assert_eq!(rounds[0]["chosen"].as_array().unwrap().len(), 1, "{name}");
    }
}

#[test]
fn bart_opf_run_with_cross_attention_predicts_exports_and_reexports() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, glue, run) = (
        tiny_bart(tmp.path()),
        glue(tmp.path()),
        tmp.path().join("run"),
    );
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let log = stdout(&glue_mrpc(
        &model,
        &glue,
        &run,
        &[
            "--num-train-epochs",
            "2",
            "--per-device-train-batch-size",
            "2",
            "--learning-rate",
            "1e-3",
            "--logging-steps",
            "1",
            "--mpo-preset",
            "opf:3",
            "--mpo-targets",
            "ffn,decoder.cross_attention",
            "--do-predict",
        ],
    ));
    // FFN of 2 encoder + 2 decoder layers, 4 cross-attention projections of 2 decoder layers.
    assert!(log.contains("OPF: 16 matrices over-parameterized"), "{log}");
    assert!(
        log.contains("model.decoder.layers.1.encoder_attn.q_proj"),
        "{log}"
    );
    assert!(log.contains("16 MPO layers merged"), "{log}");
    assert!(
        log.contains("dev (dev, best model, merged): acc = "),
        "{log}"
    );
    for f in [
        "run.json",
        "metrics.json",
        "MRPC.tsv",
        "checkpoint/best.bpk",
    ] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    let predictions = std::fs::read_to_string(run.join("MRPC.tsv")).unwrap();
    assert_eq!(predictions.lines().count(), 1 + 2, "{predictions}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let losses: Vec<f64> = metrics["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["loss"].as_f64().unwrap())
        .collect();
    assert_eq!(losses.len(), 4, "{losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert_ne!(losses[0], losses[3], "{losses:?}");

    let exported = run.join("model");
    let names = tensor_names(&exported.join("model.safetensors"));
    for name in [
        "model.shared.weight",
        "model.encoder.layers.0.fc1.weight",
        "model.decoder.layers.1.encoder_attn.q_proj.weight",
        "model.decoder.layers.1.fc2.weight",
        "classification_head.out_proj.weight",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
    assert!(
        names
            .iter()
            .all(|n| !n.contains("cores") && !n.contains("Mpo")),
        "{names:?}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(exported.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model_type"], "bart");
    assert_eq!(config["architectures"][0], "BartForSequenceClassification");
    assert_eq!(config["id2label"].as_object().unwrap().len(), 2);
    let readme = std::fs::read_to_string(exported.join("README.md")).unwrap();
    assert!(readme.contains("BartForSequenceClassification"), "{readme}");
    assert!(
        readme.contains("16 projections were trained as MPO cores"),
        "{readme}"
    );
    assert!(exported.join("tokenizer.json").is_file());

    // `opf export` reads the architecture from the base model's config and rebuilds the MPO
    // layers from the checkpoint: the same tensors as the run's own export.
    let again = tmp.path().join("again");
    let log = stdout(&opf(&["export", &s(&run), "--output", &s(&again)]));
    assert!(log.contains("16 MPO layers merged"), "{log}");
    assert_same_tensors(
        &exported.join("model.safetensors"),
        &again.join("model.safetensors"),
    );
}

#[test]
fn bart_selection_round_is_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, glue, run) = (
        tiny_bart(tmp.path()),
        glue(tmp.path()),
        tmp.path().join("run"),
    );
    let log = stdout(&glue_mrpc(
        &model,
        &glue,
        &run,
        &[
            "--num-train-epochs",
            "1",
            "--per-device-train-batch-size",
            "2",
            "--mpo-preset",
            "opf:3",
            "--top-n",
            "1",
            "--weight-types",
            "FFN_1,cross_attention",
        ],
    ));
    assert!(log.contains("selection round at epoch 0"), "{log}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let rounds = metrics["selection"].as_array().unwrap();
    assert_eq!(rounds.len(), 1);
    let chosen: Vec<&str> = rounds[0]["chosen"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["matrix"].as_str().unwrap())
        .collect();
    assert!(!chosen.is_empty());
    assert!(
        chosen
            .iter()
            .all(|m| m.ends_with("ffn_1") || m.starts_with("decoder.") && m.contains("cross_")),
        "{chosen:?}"
    );
    assert!(log.contains("model."), "{log}");
    assert!(run.join("model/model.safetensors").is_file());
}

#[test]
fn t5_text_to_text_opf_run_predicts_exports_and_reexports() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, glue, run) = (
        tiny_t5(tmp.path()),
        glue(tmp.path()),
        tmp.path().join("run"),
    );
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let log = stdout(&glue_mrpc(
        &model,
        &glue,
        &run,
        &[
            "--num-train-epochs",
            "3",
            "--per-device-train-batch-size",
            "2",
            "--learning-rate",
            "3e-3",
            "--warmup-ratio",
            "0",
            "--logging-steps",
            "1",
            "--max-target-length",
            "4",
            "--mpo-preset",
            "opf:3",
            "--mpo-targets",
            "ffn,decoder.cross_attention",
            "--do-predict",
        ],
    ));
    // wi/wo of 2 encoder + 2 decoder blocks, 4 EncDecAttention projections of 2 decoder blocks.
    assert!(log.contains("OPF: 16 matrices over-parameterized"), "{log}");
    assert!(
        log.contains("decoder.block.1.layer.1.EncDecAttention.q"),
        "{log}"
    );
    assert!(log.contains("16 MPO layers merged"), "{log}");
    assert!(
        log.contains("dev (dev, best model, merged): acc = "),
        "{log}"
    );
    for f in [
        "run.json",
        "metrics.json",
        "MRPC.tsv",
        "checkpoint/best.bpk",
    ] {
        assert!(run.join(f).is_file(), "missing {f}");
    }
    let predictions = std::fs::read_to_string(run.join("MRPC.tsv")).unwrap();
    assert_eq!(predictions.lines().count(), 1 + 2, "{predictions}");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("metrics.json")).unwrap()).unwrap();
    let losses: Vec<f64> = metrics["log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["loss"].as_f64().unwrap())
        .collect();
    // 3 training pairs, batch 2: 2 steps per epoch.
    assert_eq!(losses.len(), 6, "{losses:?}");
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    assert!(losses[4] + losses[5] < losses[0] + losses[1], "{losses:?}");
    let evals = metrics["evals"].as_array().unwrap();
    assert_eq!(evals.len(), 3);
    for e in evals {
        for key in ["acc", "f1", "acc_and_f1"] {
            let v = e["metrics"][key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} {v}");
        }
    }

    let exported = run.join("model");
    let names = tensor_names(&exported.join("model.safetensors"));
    for name in [
        "shared.weight",
        "encoder.block.0.layer.1.DenseReluDense.wi.weight",
        "decoder.block.1.layer.1.EncDecAttention.q.weight",
        "decoder.block.1.layer.2.DenseReluDense.wo.weight",
    ] {
        assert!(names.iter().any(|n| n == name), "{name} not in {names:?}");
    }
    assert!(
        names
            .iter()
            .all(|n| !n.contains("cores") && !n.contains("Mpo")),
        "{names:?}"
    );
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(exported.join("config.json")).unwrap())
            .unwrap();
    assert_eq!(config["model_type"], "t5");
    assert_eq!(config["architectures"][0], "T5ForConditionalGeneration");
    let readme = std::fs::read_to_string(exported.join("README.md")).unwrap();
    assert!(
        readme.contains("T5ForConditionalGeneration, text to text"),
        "{readme}"
    );
    assert!(readme.contains("AutoModelForSeq2SeqLM"), "{readme}");
    assert!(
        readme.contains("16 projections were trained as MPO cores"),
        "{readme}"
    );
    assert!(exported.join("tokenizer.json").is_file());

    // `opf export` rebuilds the MPO layers of the T5 checkpoint: the same tensors.
    let again = tmp.path().join("again");
    let log = stdout(&opf(&["export", &s(&run), "--output", &s(&again)]));
    assert!(log.contains("16 MPO layers merged"), "{log}");
    assert_same_tensors(
        &exported.join("model.safetensors"),
        &again.join("model.safetensors"),
    );
}

#[test]
fn unknown_model_types_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let glue = glue(tmp.path());
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let dir = tmp.path().join("gpt2");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), r#"{"model_type": "gpt2"}"#).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::write(dir.join(f), "").unwrap();
    }
    let err = opf(&[
        "glue",
        "MRPC",
        "--model",
        &s(&dir),
        "--data-dir",
        &s(&glue),
        "--output-dir",
        &s(&tmp.path().join("run")),
    ]);
    assert!(!err.status.success());
    let stderr = String::from_utf8_lossy(&err.stderr);
    assert!(
        stderr.contains("supported model types: bert, bart, t5"),
        "{stderr}"
    );
}
