//! The nine GLUE tasks, their splits and metrics.
//!
//! Label lists, task names and metric keys follow Hugging Face transformers
//! (`transformers/data/processors/glue.py`: `glue_processors`, `glue_output_modes`,
//! `glue_tasks_num_labels`, each processor's `get_labels`; `transformers/data/metrics/__init__.py`:
//! `glue_compute_metrics`).

use std::fmt;
use std::str::FromStr;

use crate::error::GlueError;

/// A GLUE task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Task {
    /// Corpus of Linguistic Acceptability (single sentence, 2 classes, Matthews correlation).
    Cola,
    /// Stanford Sentiment Treebank (single sentence, 2 classes, accuracy).
    Sst2,
    /// Microsoft Research Paraphrase Corpus (pairs, 2 classes, accuracy and F1).
    Mrpc,
    /// Semantic Textual Similarity Benchmark (pairs, regression on 0..5, Pearson/Spearman).
    Stsb,
    /// Quora Question Pairs (pairs, 2 classes, accuracy and F1).
    Qqp,
    /// Multi-Genre NLI (pairs, 3 classes, accuracy on matched and mismatched dev sets).
    Mnli,
    /// Question NLI (pairs, 2 classes, accuracy).
    Qnli,
    /// Recognizing Textual Entailment (pairs, 2 classes, accuracy).
    Rte,
    /// Winograd NLI (pairs, 2 classes, accuracy).
    Wnli,
}

/// A data split. The mismatched splits exist for MNLI only
/// (HF `MnliMismatchedProcessor`: `dev_mismatched.tsv`, `test_mismatched.tsv`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Split {
    /// `train.tsv`.
    Train,
    /// `dev.tsv` (MNLI: `dev_matched.tsv`).
    Dev,
    /// MNLI `dev_mismatched.tsv`.
    DevMismatched,
    /// `test.tsv` (MNLI: `test_matched.tsv`); unlabelled.
    Test,
    /// MNLI `test_mismatched.tsv`; unlabelled.
    TestMismatched,
}

/// A metric computed by HF `glue_compute_metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Accuracy (`simple_accuracy`), key `acc`.
    Acc,
    /// Binary F1 with positive class 1 (sklearn `f1_score`), key `f1`.
    F1,
    /// Mean of accuracy and F1, key `acc_and_f1`.
    AccAndF1,
    /// Matthews correlation (sklearn `matthews_corrcoef`), key `mcc`.
    Mcc,
    /// Pearson correlation (scipy `pearsonr`), key `pearson`.
    Pearson,
    /// Spearman rank correlation (scipy `spearmanr`), key `spearmanr`.
    Spearmanr,
    /// Mean of Pearson and Spearman, key `corr`.
    Corr,
}

impl Metric {
    /// The HF result key (`acc`, `f1`, `acc_and_f1`, `mcc`, `pearson`, `spearmanr`, `corr`).
    pub fn key(self) -> &'static str {
        match self {
            Metric::Acc => "acc",
            Metric::F1 => "f1",
            Metric::AccAndF1 => "acc_and_f1",
            Metric::Mcc => "mcc",
            Metric::Pearson => "pearson",
            Metric::Spearmanr => "spearmanr",
            Metric::Corr => "corr",
        }
    }
}

impl Task {
    /// All nine tasks, in the GLUE benchmark's usual order.
    pub const ALL: [Task; 9] = [
        Task::Cola,
        Task::Sst2,
        Task::Mrpc,
        Task::Stsb,
        Task::Qqp,
        Task::Mnli,
        Task::Qnli,
        Task::Rte,
        Task::Wnli,
    ];

    /// The HF task name (key of `glue_processors`): `cola`, `sst-2`, `mrpc`, `sts-b`, `qqp`,
    /// `mnli`, `qnli`, `rte`, `wnli`.
    pub fn name(self) -> &'static str {
        match self {
            Task::Cola => "cola",
            Task::Sst2 => "sst-2",
            Task::Mrpc => "mrpc",
            Task::Stsb => "sts-b",
            Task::Qqp => "qqp",
            Task::Mnli => "mnli",
            Task::Qnli => "qnli",
            Task::Rte => "rte",
            Task::Wnli => "wnli",
        }
    }

    /// The task's directory in the standard GLUE layout (`download_glue_data.py`): `CoLA`,
    /// `SST-2`, `MRPC`, `STS-B`, `QQP`, `MNLI`, `QNLI`, `RTE`, `WNLI`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Task::Cola => "CoLA",
            Task::Sst2 => "SST-2",
            Task::Mrpc => "MRPC",
            Task::Stsb => "STS-B",
            Task::Qqp => "QQP",
            Task::Mnli => "MNLI",
            Task::Qnli => "QNLI",
            Task::Rte => "RTE",
            Task::Wnli => "WNLI",
        }
    }

    /// The label strings in HF `get_labels()` order; class id `i` is `labels()[i]`.
    /// Empty for the regression task STS-B (HF returns `[None]`).
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            Task::Cola | Task::Sst2 | Task::Mrpc | Task::Qqp | Task::Wnli => &["0", "1"],
            Task::Mnli => &["contradiction", "entailment", "neutral"],
            Task::Qnli | Task::Rte => &["entailment", "not_entailment"],
            Task::Stsb => &[],
        }
    }

    /// Size of the model's output layer (HF `glue_tasks_num_labels`): 1 for STS-B regression.
    pub fn num_labels(self) -> usize {
        if self.is_regression() {
            1
        } else {
            self.labels().len()
        }
    }

    /// True for STS-B, the only regression task (HF `glue_output_modes["sts-b"] == "regression"`).
    pub fn is_regression(self) -> bool {
        self == Task::Stsb
    }

    /// True when examples have a second sentence (`text_b`); false for CoLA and SST-2.
    pub fn is_pair(self) -> bool {
        !matches!(self, Task::Cola | Task::Sst2)
    }

    /// The splits of the task in the GLUE release.
    pub fn splits(self) -> &'static [Split] {
        if self == Task::Mnli {
            &[
                Split::Train,
                Split::Dev,
                Split::DevMismatched,
                Split::Test,
                Split::TestMismatched,
            ]
        } else {
            &[Split::Train, Split::Dev, Split::Test]
        }
    }

    /// The TSV file of `split` inside [`Task::dir_name`] (HF `get_*_examples`).
    pub fn file_name(self, split: Split) -> Result<&'static str, GlueError> {
        match (self, split) {
            (_, Split::Train) => Ok("train.tsv"),
            (Task::Mnli, Split::Dev) => Ok("dev_matched.tsv"),
            (Task::Mnli, Split::DevMismatched) => Ok("dev_mismatched.tsv"),
            (Task::Mnli, Split::Test) => Ok("test_matched.tsv"),
            (Task::Mnli, Split::TestMismatched) => Ok("test_mismatched.tsv"),
            (_, Split::Dev) => Ok("dev.tsv"),
            (_, Split::Test) => Ok("test.tsv"),
            (task, split) => Err(GlueError::UnsupportedSplit { task, split }),
        }
    }

    /// The metrics HF `glue_compute_metrics` reports for the task.
    pub fn metrics(self) -> &'static [Metric] {
        match self {
            Task::Cola => &[Metric::Mcc],
            Task::Mrpc | Task::Qqp => &[Metric::Acc, Metric::F1, Metric::AccAndF1],
            Task::Stsb => &[Metric::Pearson, Metric::Spearmanr, Metric::Corr],
            Task::Sst2 | Task::Mnli | Task::Qnli | Task::Rte | Task::Wnli => &[Metric::Acc],
        }
    }

    /// The metric used for model selection, as reported by GLUE and the OPF paper (spec §5.5):
    /// CoLA `mcc`, MRPC `f1`, STS-B `spearmanr`, `acc` for the others (QQP included).
    pub fn main_metric(self) -> Metric {
        match self {
            Task::Cola => Metric::Mcc,
            Task::Mrpc => Metric::F1,
            Task::Stsb => Metric::Spearmanr,
            Task::Sst2 | Task::Qqp | Task::Mnli | Task::Qnli | Task::Rte | Task::Wnli => {
                Metric::Acc
            }
        }
    }

    /// The key under which `metric` appears in [`crate::compute_metrics`]' map for `split`.
    /// This is [`Metric::key`], except for MNLI, which HF prefixes with the evaluated set:
    /// `mnli/acc` (matched) and `mnli-mm/acc` (mismatched).
    pub fn metric_key(self, split: Split, metric: Metric) -> String {
        match (self, split) {
            (Task::Mnli, Split::DevMismatched | Split::TestMismatched) => {
                format!("mnli-mm/{}", metric.key())
            }
            (Task::Mnli, _) => format!("mnli/{}", metric.key()),
            _ => metric.key().to_owned(),
        }
    }
}

impl fmt::Display for Task {
    /// Writes [`Task::dir_name`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

impl FromStr for Task {
    type Err = GlueError;

    /// Case-insensitive; accepts the GLUE directory names and HF task names with or without the
    /// hyphen or an underscore (`CoLA`, `sst-2`, `sst2`, `sst_2`, `STS-B`, `stsb`, `mnli`, …).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .trim()
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        Task::ALL
            .into_iter()
            .find(|t| t.name().replace('-', "") == norm)
            .ok_or_else(|| GlueError::UnknownTask {
                name: s.to_owned(),
                valid: Task::ALL.map(Task::name).join(", "),
            })
    }
}

impl Split {
    /// The HF `set_type` string used in example guids: `train`, `dev`, `test`; for MNLI
    /// `dev_matched`, `dev_mismatched`, `test_matched`, `test_mismatched`.
    pub fn set_type(self, task: Task) -> &'static str {
        match (task, self) {
            (_, Split::Train) => "train",
            (Task::Mnli, Split::Dev) => "dev_matched",
            (Task::Mnli, Split::Test) => "test_matched",
            (_, Split::Dev) => "dev",
            (_, Split::Test) => "test",
            (_, Split::DevMismatched) => "dev_mismatched",
            (_, Split::TestMismatched) => "test_mismatched",
        }
    }

    /// True for the unlabelled test splits.
    pub fn is_test(self) -> bool {
        matches!(self, Split::Test | Split::TestMismatched)
    }
}

impl fmt::Display for Split {
    /// Writes `train`, `dev`, `dev_mismatched`, `test` or `test_mismatched`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::DevMismatched => "dev_mismatched",
            Split::Test => "test",
            Split::TestMismatched => "test_mismatched",
        })
    }
}

impl FromStr for Split {
    type Err = GlueError;

    /// Case-insensitive; accepts the [`Display`](fmt::Display) names plus `validation`,
    /// `dev_matched`, `test_matched` and hyphenated forms.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "train" => Ok(Split::Train),
            "dev" | "validation" | "dev_matched" => Ok(Split::Dev),
            "dev_mismatched" => Ok(Split::DevMismatched),
            "test" | "test_matched" => Ok(Split::Test),
            "test_mismatched" => Ok(Split::TestMismatched),
            _ => Err(GlueError::UnknownSplit { name: s.to_owned() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_spellings() {
        for (s, t) in [
            ("mrpc", Task::Mrpc),
            ("MRPC", Task::Mrpc),
            ("sst-2", Task::Sst2),
            ("SST2", Task::Sst2),
            ("sst_2", Task::Sst2),
            ("STS-B", Task::Stsb),
            ("stsb", Task::Stsb),
            ("CoLA", Task::Cola),
            ("mnli", Task::Mnli),
            ("QNLI", Task::Qnli),
            ("rte", Task::Rte),
            ("wnli", Task::Wnli),
            ("qqp", Task::Qqp),
        ] {
            assert_eq!(s.parse::<Task>().unwrap(), t, "{s}");
        }
        for t in Task::ALL {
            assert_eq!(t.dir_name().parse::<Task>().unwrap(), t);
            assert_eq!(t.name().parse::<Task>().unwrap(), t);
        }
    }

    #[test]
    fn unknown_task_lists_valid_names() {
        let err = "mnli-m".parse::<Task>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("\"mnli-m\""), "{msg}");
        assert!(
            msg.contains("cola, sst-2, mrpc, sts-b, qqp, mnli, qnli, rte, wnli"),
            "{msg}"
        );
    }

    #[test]
    fn labels_and_metrics() {
        assert_eq!(
            Task::Mnli.labels(),
            ["contradiction", "entailment", "neutral"]
        );
        assert_eq!(Task::Rte.labels(), ["entailment", "not_entailment"]);
        assert_eq!(Task::Stsb.num_labels(), 1);
        assert_eq!(Task::Mnli.num_labels(), 3);
        assert!(Task::Stsb.is_regression() && !Task::Cola.is_regression());
        assert_eq!(Task::Cola.main_metric(), Metric::Mcc);
        assert_eq!(Task::Stsb.main_metric(), Metric::Spearmanr);
        assert_eq!(Task::Mrpc.main_metric(), Metric::F1);
        assert_eq!(
            Task::Mnli.metric_key(Split::DevMismatched, Metric::Acc),
            "mnli-mm/acc"
        );
        assert_eq!(Task::Mnli.metric_key(Split::Dev, Metric::Acc), "mnli/acc");
        assert_eq!(
            Task::Qqp.metric_key(Split::Dev, Metric::AccAndF1),
            "acc_and_f1"
        );
        for t in Task::ALL {
            assert!(t.metrics().contains(&t.main_metric()), "{t}");
        }
    }

    #[test]
    fn file_names() {
        assert_eq!(Task::Mnli.file_name(Split::Dev).unwrap(), "dev_matched.tsv");
        assert_eq!(
            Task::Mnli.file_name(Split::TestMismatched).unwrap(),
            "test_mismatched.tsv"
        );
        assert_eq!(Task::Rte.file_name(Split::Test).unwrap(), "test.tsv");
        assert!(matches!(
            Task::Rte.file_name(Split::DevMismatched),
            Err(GlueError::UnsupportedSplit {
                task: Task::Rte,
                split: Split::DevMismatched
            })
        ));
        assert_eq!(Split::Dev.set_type(Task::Mnli), "dev_matched");
        assert_eq!("validation".parse::<Split>().unwrap(), Split::Dev);
        assert!("val".parse::<Split>().is_err());
    }
}
