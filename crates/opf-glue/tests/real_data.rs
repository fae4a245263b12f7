//! Tests on the real GLUE data and the real MiniLM tokenizer. Each is skipped, with a printed
//! message, when its input is absent. GLUE is looked up in `GLUE_DIR`, then `../shared/glue`
//! next to the workspace; the tokenizer in `$HF_HOME/hub`, then `../shared/hf/hub`.

use std::path::{Path, PathBuf};

mod common;

use opf_glue::{
    BatchLabels, Batches, GlueError, GlueTokenizer, Label, Order, Split, Task, load_examples,
    resolve_data_dir,
};
use serde::Deserialize;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn glue_dir() -> Option<PathBuf> {
    let fallback = workspace().join("../shared/glue");
    let found = resolve_data_dir(None, std::env::var_os("GLUE_DIR").as_deref())
        .ok()
        .or_else(|| resolve_data_dir(Some(&fallback), None).ok());
    if found.is_none() {
        println!(
            "skipping: no GLUE data (set GLUE_DIR or provide {})",
            fallback.display()
        );
    }
    found
}

fn tokenizer_json() -> Option<PathBuf> {
    let hub = std::env::var_os("HF_HOME")
        .map(|h| PathBuf::from(h).join("hub"))
        .filter(|h| h.is_dir())
        .unwrap_or_else(|| workspace().join("../shared/hf/hub"));
    let snapshots = hub.join("models--sentence-transformers--all-MiniLM-L6-v2/snapshots");
    let found = std::fs::read_dir(&snapshots)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("tokenizer.json"))
        .find(|p| p.is_file());
    if found.is_none() {
        println!(
            "skipping: no all-MiniLM-L6-v2 tokenizer.json under {}",
            snapshots.display()
        );
    }
    found
}

/// Row counts of the standard GLUE release (spec §5.2 for train/dev; test counts checked here
/// where the test files are available).
const COUNTS: &[(Task, Split, usize)] = &[
    (Task::Mrpc, Split::Train, 3668),
    (Task::Mrpc, Split::Dev, 408),
    (Task::Mrpc, Split::Test, 1725),
    (Task::Cola, Split::Train, 8551),
    (Task::Cola, Split::Dev, 1043),
    (Task::Cola, Split::Test, 1063),
    (Task::Sst2, Split::Train, 67349),
    (Task::Sst2, Split::Dev, 872),
    (Task::Sst2, Split::Test, 1821),
    (Task::Stsb, Split::Train, 5749),
    (Task::Stsb, Split::Dev, 1500),
    (Task::Stsb, Split::Test, 1379),
    (Task::Qnli, Split::Train, 104_743),
    (Task::Qnli, Split::Dev, 5463),
    (Task::Qnli, Split::Test, 5463),
    (Task::Wnli, Split::Train, 635),
    (Task::Wnli, Split::Dev, 71),
    (Task::Wnli, Split::Test, 146),
    (Task::Rte, Split::Train, 2490),
    (Task::Rte, Split::Dev, 277),
    (Task::Qqp, Split::Train, 363_846),
    (Task::Qqp, Split::Dev, 40_430),
    (Task::Mnli, Split::Train, 392_702),
    (Task::Mnli, Split::Dev, 9815),
    (Task::Mnli, Split::DevMismatched, 9832),
];

#[test]
fn real_glue_files_load_with_standard_counts() {
    let Some(glue) = glue_dir() else { return };
    let mut loaded = 0;
    for &(task, split, count) in COUNTS {
        let file = glue
            .join(task.dir_name())
            .join(task.file_name(split).unwrap());
        if !file.is_file() {
            println!("skipping {}: absent", file.display());
            continue;
        }
        let ex = load_examples(&glue, task, split).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ex.len(), count, "{task} {split}");
        assert!(
            ex.iter().all(|e| e.label.is_some() != split.is_test()),
            "{task} {split}"
        );
        loaded += 1;
    }
    println!("loaded {loaded} real GLUE files from {}", glue.display());
    if glue.join("MRPC/dev.tsv").is_file() {
        // dev.tsv starts with a BOM; the first row is a paraphrase.
        let dev = load_examples(&glue, Task::Mrpc, Split::Dev).unwrap();
        assert_eq!(dev[0].guid, "dev-1");
        assert_eq!(dev[0].label, Some(Label::Class(1)));
        assert!(
            dev[0]
                .text_a
                .starts_with("He said the foodservice pie business")
        );
        let train = load_examples(&glue, Task::Mrpc, Split::Train).unwrap();
        let positives = train
            .iter()
            .filter(|e| e.label == Some(Label::Class(1)))
            .count();
        assert_eq!(positives, 2474);
    }
    if glue.join("STS-B/train.tsv").is_file() {
        let train = load_examples(&glue, Task::Stsb, Split::Train).unwrap();
        assert_eq!(train[0].label, Some(Label::Score(5.0)));
        assert!(
            train
                .iter()
                .all(|e| matches!(e.label, Some(Label::Score(s)) if (0.0..=5.0).contains(&s)))
        );
    }
}

#[derive(Deserialize)]
struct TokFixture {
    cases: Vec<TokCase>,
}

#[derive(Deserialize)]
struct TokCase {
    name: String,
    source: String,
    max_length: usize,
    guids: Vec<String>,
    encodings: Vec<Encoded>,
}

#[derive(Deserialize)]
struct Encoded {
    input_ids: Vec<i64>,
    token_type_ids: Vec<i64>,
}

#[test]
fn tokenization_matches_transformers() {
    let Some(tokenizer) = tokenizer_json() else {
        return;
    };
    let fx: TokFixture = serde_json::from_str(include_str!("fixtures/tokenizer.json")).unwrap();
    let own = common::glue_dir();
    let glue = glue_dir();
    let mut checked = 0;
    for case in &fx.cases {
        let examples = match case.source.as_str() {
            "MRPC/dev.tsv" => match &glue {
                Some(g) => load_examples(g, Task::Mrpc, Split::Dev).unwrap(),
                None => continue,
            },
            "fixture:SST-2/train.tsv" => load_examples(own, Task::Sst2, Split::Train).unwrap(),
            other => panic!("unknown source {other}"),
        };
        let examples = &examples[..case.guids.len()];
        let got_guids: Vec<&str> = examples.iter().map(|e| e.guid.as_str()).collect();
        assert_eq!(got_guids, case.guids, "{}", case.name);
        let tok = GlueTokenizer::from_file(&tokenizer, case.max_length).unwrap();
        assert_eq!(tok.pad_id(), 0, "[PAD] of the MiniLM vocabulary");
        let features = tok.encode(examples).unwrap();
        for ((f, want), guid) in features.iter().zip(&case.encodings).zip(&case.guids) {
            assert_eq!(f.input_ids, want.input_ids, "{} {guid}", case.name);
            assert_eq!(
                f.token_type_ids, want.token_type_ids,
                "{} {guid}",
                case.name
            );
            assert!(f.input_ids.len() <= case.max_length);
        }
        checked += 1;
    }
    assert!(checked >= 2, "the own-fixture cases always run");
    println!("{checked} tokenizer cases match transformers");
}

#[test]
fn real_tokenizer_batches_pad_dynamically() {
    let Some(tokenizer) = tokenizer_json() else {
        return;
    };
    let own = common::glue_dir();
    let ex = load_examples(own, Task::Stsb, Split::Train).unwrap();
    let tok = GlueTokenizer::from_file(&tokenizer, 128)
        .unwrap()
        .with_pad_id(7);
    let features = tok.encode(&ex).unwrap();
    let max = features.iter().map(|f| f.input_ids.len()).max().unwrap();
    let batches: Vec<_> = Batches::new(&features, 2, tok.pad_id(), Order::Sequential)
        .unwrap()
        .collect();
    assert_eq!(batches.len(), 2);
    let b = &batches[0];
    assert_ne!(
        features[0].input_ids.len(),
        features[1].input_ids.len(),
        "one row is padded"
    );
    assert_eq!(
        b.seq_len,
        features[0].input_ids.len().max(features[1].input_ids.len())
    );
    assert!(
        b.seq_len <= max && b.seq_len < 128,
        "padded to the batch, not to 128"
    );
    for (r, f) in features[..2].iter().enumerate() {
        let row = &b.input_ids[r * b.seq_len..(r + 1) * b.seq_len];
        let mask = &b.attention_mask[r * b.seq_len..(r + 1) * b.seq_len];
        assert_eq!(&row[..f.input_ids.len()], f.input_ids.as_slice());
        assert!(row[f.input_ids.len()..].iter().all(|&t| t == 7));
        assert_eq!(mask.iter().sum::<i64>() as usize, f.input_ids.len());
    }
    assert_eq!(b.labels, Some(BatchLabels::Score(vec![4.8, 0.0])));

    // A pair needs 3 special tokens; 2 cannot hold them.
    let short = GlueTokenizer::from_file(&tokenizer, 2).unwrap();
    let err = short.encode(&ex).unwrap_err();
    assert!(
        matches!(
            err,
            GlueError::MaxSeqLengthTooShort {
                max_seq_length: 2,
                special_tokens: 3
            }
        ),
        "{err}"
    );
}

/// MRPC dev (408 pairs, MiniLM tokenizer, max length 128) at 32 per batch pads to 31,616 tokens in
/// input order and 22,680 longest first (counted independently with the Python `tokenizers`
/// package, 21,723 real tokens); the longest-first batches hold every example once.
#[test]
fn longest_first_pads_mrpc_dev_less() {
    let (Some(dir), Some(tokenizer)) = (glue_dir(), tokenizer_json()) else {
        return;
    };
    let ex = load_examples(&dir, Task::Mrpc, Split::Dev).unwrap();
    let tok = GlueTokenizer::from_file(&tokenizer, 128).unwrap();
    let features = tok.encode(&ex).unwrap();
    let real: usize = features.iter().map(|f| f.input_ids.len()).sum();
    assert_eq!((features.len(), real), (408, 21_723));
    let padded = |order| -> (usize, Vec<usize>) {
        let batches = Batches::new(&features, 32, tok.pad_id(), order).unwrap();
        let mut seen = Vec::new();
        let mut total = 0;
        for b in batches {
            total += b.batch_size * b.seq_len;
            seen.extend(b.indices);
        }
        seen.sort_unstable();
        (total, seen)
    };
    let all: Vec<usize> = (0..408).collect();
    assert_eq!(padded(Order::Sequential), (31_616, all.clone()));
    assert_eq!(padded(Order::LongestFirst), (22_680, all));
}
