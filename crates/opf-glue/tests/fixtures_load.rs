//! Every task and split loads from the hand-written fixtures in `tests/fixtures/glue` (real GLUE
//! column layouts, invented sentences); malformed files fail with the file and line.

use std::path::{Path, PathBuf};

use opf_glue::{Example, GlueError, Label, Split, Task, load_examples, read_examples};

mod common;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load(task: Task, split: Split) -> Vec<Example> {
    load_examples(common::glue_dir(), task, split).unwrap_or_else(|e| panic!("{task} {split}: {e}"))
}

fn guids(ex: &[Example]) -> Vec<&str> {
    ex.iter().map(|e| e.guid.as_str()).collect()
}

fn labels(ex: &[Example]) -> Vec<Option<Label>> {
    ex.iter().map(|e| e.label).collect()
}

#[test]
fn every_task_and_split_loads() {
    for task in Task::ALL {
        for &split in task.splits() {
            let ex = load(task, split);
            assert!(!ex.is_empty(), "{task} {split}");
            for e in &ex {
                assert_eq!(
                    e.text_b.is_some(),
                    task.is_pair(),
                    "{task} {split} {}",
                    e.guid
                );
                assert_eq!(
                    e.label.is_none(),
                    split.is_test(),
                    "{task} {split} {}",
                    e.guid
                );
                assert!(e.guid.starts_with(split.set_type(task)), "{}", e.guid);
                assert!(!e.text_a.is_empty());
            }
        }
    }
}

#[test]
fn cola_headerless_train_dev_and_headed_test() {
    let train = load(Task::Cola, Split::Train);
    assert_eq!(guids(&train), ["train-0", "train-1", "train-2", "train-3"]);
    assert_eq!(train[1].text_a, "Mat the on sat cat the.");
    assert_eq!(labels(&train), [1, 0, 1, 0].map(|c| Some(Label::Class(c))));
    // dev.tsv has no final newline; quotes are kept verbatim (quotechar=None).
    let dev = load(Task::Cola, Split::Dev);
    assert_eq!(dev.len(), 3);
    assert_eq!(dev[2].text_a, "They will arrive \"soon\".");
    let test = load(Task::Cola, Split::Test);
    assert_eq!(guids(&test), ["test-0", "test-1"]);
    assert_eq!(test[0].text_a, "Birds sing in the morning.");
}

#[test]
fn sst2_counter_guids_and_text_columns() {
    let train = load(Task::Sst2, Split::Train);
    assert_eq!(guids(&train), ["train-1", "train-2", "train-3"]);
    assert_eq!(train[0].text_a, "a warm and funny film ");
    assert_eq!(labels(&train), [1, 0, 1].map(|c| Some(Label::Class(c))));
    let test = load(Task::Sst2, Split::Test);
    assert_eq!(test[1].text_a, "it drags .");
    assert_eq!(guids(&test), ["test-1", "test-2"]);
}

#[test]
fn mrpc_bom_and_columns() {
    let dev = load(Task::Mrpc, Split::Dev);
    assert_eq!(guids(&dev), ["dev-1", "dev-2"]);
    assert_eq!(labels(&dev), [0, 1].map(|c| Some(Label::Class(c))));
    assert_eq!(dev[1].text_a, "The storm hit the coast late on Tuesday .");
    assert_eq!(
        dev[1].text_b.as_deref(),
        Some("Late Tuesday , the storm struck the coast .")
    );
    let train = load(Task::Mrpc, Split::Train);
    assert_eq!(train[2].text_a, "\" We are pleased , \" he said .");
    let test = load(Task::Mrpc, Split::Test);
    assert_eq!(
        test[0].text_b.as_deref(),
        Some("Officials approved the plan .")
    );
}

#[test]
fn stsb_scores_and_index_guids() {
    let train = load(Task::Stsb, Split::Train);
    assert_eq!(guids(&train), ["train-0", "train-1", "train-2"]);
    assert_eq!(
        labels(&train),
        [4.8, 0.0, 3.6].map(|s| Some(Label::Score(s)))
    );
    assert_eq!(train[0].text_a, "A dog runs in a park.");
    assert_eq!(
        train[0].text_b.as_deref(),
        Some("A dog is running in the park.")
    );
    let test = load(Task::Stsb, Split::Test);
    assert_eq!(test[1].text_b.as_deref(), Some("Prices of stocks drop."));
}

#[test]
fn qqp_train_and_test_columns() {
    let train = load(Task::Qqp, Split::Train);
    assert_eq!(guids(&train), ["train-10", "train-11", "train-12"]);
    assert_eq!(train[0].text_a, "How do I learn Rust?");
    assert_eq!(labels(&train), [1, 0, 1].map(|c| Some(Label::Class(c))));
    let test = load(Task::Qqp, Split::Test);
    assert_eq!(test[0].text_a, "Where do penguins live?");
    assert_eq!(
        test[0].text_b.as_deref(),
        Some("Which places do penguins live in?")
    );
}

#[test]
fn mnli_matched_mismatched_and_gold_label_last() {
    let train = load(Task::Mnli, Split::Train);
    assert_eq!(labels(&train), [1, 0, 2].map(|c| Some(Label::Class(c))));
    assert_eq!(train[0].text_a, "The boy ran home.");
    assert_eq!(train[0].text_b.as_deref(), Some("A child went home."));
    let dev = load(Task::Mnli, Split::Dev);
    assert_eq!(guids(&dev), ["dev_matched-10", "dev_matched-11"]);
    // gold_label (last column) is used, not label1..label5.
    assert_eq!(labels(&dev), [1, 0].map(|c| Some(Label::Class(c))));
    let mm = load(Task::Mnli, Split::DevMismatched);
    assert_eq!(guids(&mm), ["dev_mismatched-20", "dev_mismatched-21"]);
    assert_eq!(labels(&mm), [2, 0].map(|c| Some(Label::Class(c))));
    assert_eq!(guids(&load(Task::Mnli, Split::Test)), ["test_matched-30"]);
    let tm = load(Task::Mnli, Split::TestMismatched);
    assert_eq!(guids(&tm), ["test_mismatched-40", "test_mismatched-41"]);
    assert_eq!(tm[1].text_b.as_deref(), Some("Pots can be made of clay."));
}

#[test]
fn qnli_rte_wnli() {
    let qnli = load(Task::Qnli, Split::Dev);
    assert_eq!(labels(&qnli), [0, 1].map(|c| Some(Label::Class(c))));
    assert_eq!(qnli[0].text_a, "When did the war end?");
    // RTE train uses CRLF line endings.
    let rte = load(Task::Rte, Split::Train);
    assert_eq!(guids(&rte), ["train-0", "train-1"]);
    assert_eq!(labels(&rte), [0, 1].map(|c| Some(Label::Class(c))));
    assert_eq!(rte[1].text_b.as_deref(), Some("The bridge was demolished."));
    let wnli = load(Task::Wnli, Split::Train);
    assert_eq!(labels(&wnli), [1, 0].map(|c| Some(Label::Class(c))));
    assert_eq!(
        load(Task::Wnli, Split::Test)[0].text_b.as_deref(),
        Some("The window was fragile.")
    );
}

fn malformed(name: &str, task: Task, split: Split) -> (PathBuf, GlueError) {
    let path = fixtures().join("malformed").join(name);
    let err = read_examples(&path, task, split).expect_err(name);
    (path, err)
}

#[test]
fn short_row_reports_file_line_and_counts() {
    let (path, err) = malformed("mrpc_short_row.tsv", Task::Mrpc, Split::Dev);
    match &err {
        GlueError::ColumnCount {
            path: p,
            line,
            expected,
            found,
        } => {
            assert_eq!((p, *line, *expected, *found), (&path, 3, 5, 4));
        }
        other => panic!("unexpected {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("mrpc_short_row.tsv:3") && msg.contains("expected 5 columns, found 4"),
        "{msg}"
    );
}

#[test]
fn extra_column_and_blank_line_are_errors() {
    let (_, err) = malformed("sst2_extra_column.tsv", Task::Sst2, Split::Train);
    assert!(
        matches!(
            err,
            GlueError::ColumnCount {
                line: 3,
                expected: 2,
                found: 3,
                ..
            }
        ),
        "{err}"
    );
    let (_, err) = malformed("wnli_blank_line.tsv", Task::Wnli, Split::Dev);
    assert!(
        matches!(
            err,
            GlueError::ColumnCount {
                line: 3,
                expected: 4,
                found: 0,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn bad_labels_report_line_and_valid_labels() {
    let (path, err) = malformed("cola_bad_label.tsv", Task::Cola, Split::Train);
    match &err {
        GlueError::UnknownLabel {
            path: p,
            line,
            label,
            task,
            ..
        } => {
            assert_eq!(
                (p, *line, label.as_str(), *task),
                (&path, 3, "2", Task::Cola)
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    let (_, err) = malformed("rte_unknown_label.tsv", Task::Rte, Split::Dev);
    let msg = err.to_string();
    assert!(
        msg.contains("rte_unknown_label.tsv:3")
            && msg.contains("\"contradiction\"")
            && msg.contains("entailment, not_entailment"),
        "{msg}"
    );
    let (_, err) = malformed("stsb_bad_score.tsv", Task::Stsb, Split::Dev);
    assert!(
        matches!(&err, GlueError::BadScore { line: 3, value, .. } if value == "five"),
        "{err}"
    );
}

#[test]
fn missing_file_and_unsupported_split() {
    let err = load_examples(common::glue_dir(), Task::Qnli, Split::DevMismatched).unwrap_err();
    assert!(matches!(
        err,
        GlueError::UnsupportedSplit {
            task: Task::Qnli,
            ..
        }
    ));
    let err = load_examples(&fixtures().join("nowhere"), Task::Mrpc, Split::Train).unwrap_err();
    match err {
        GlueError::Io { path, .. } => assert!(path.ends_with("nowhere/MRPC/train.tsv")),
        other => panic!("unexpected {other:?}"),
    }
}
