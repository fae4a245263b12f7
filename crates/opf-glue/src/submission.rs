//! Test-set prediction files in the GLUE submission format.

use std::fmt::Write as _;

use crate::error::GlueError;
use crate::metrics::Predictions;
use crate::task::{Split, Task};

/// A prediction file for the GLUE server: write `contents` to `file_name` inside the submission
/// folder (the caller does the I/O).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    /// Canonical file name: `CoLA.tsv`, `SST-2.tsv`, `MRPC.tsv`, `STS-B.tsv`, `QQP.tsv`,
    /// `MNLI-m.tsv`, `MNLI-mm.tsv`, `QNLI.tsv`, `RTE.tsv`, `WNLI.tsv`.
    pub file_name: &'static str,
    /// The file's text.
    pub contents: String,
}

/// Formats test predictions as HF `run_glue.py` writes them (`test_results_<task>.txt`), which is
/// the GLUE server's format: a header line `index\tprediction`, then one line per example in
/// test-file order, `index` counting from 0; classification predictions as label strings
/// ([`Task::labels`]: `0`/`1` for CoLA, SST-2, MRPC, QQP, WNLI; `entailment`/`not_entailment` for
/// QNLI, RTE; `contradiction`/`entailment`/`neutral` for MNLI), STS-B scores as `%3.3f`.
///
/// `split` must be [`Split::Test`] or, for MNLI, [`Split::TestMismatched`] (`MNLI-mm.tsv`).
pub fn format_submission(
    task: Task,
    split: Split,
    preds: &Predictions,
) -> Result<Submission, GlueError> {
    let file_name = match (task, split) {
        (Task::Mnli, Split::TestMismatched) => "MNLI-mm.tsv",
        (_, Split::Test) => match task {
            Task::Cola => "CoLA.tsv",
            Task::Sst2 => "SST-2.tsv",
            Task::Mrpc => "MRPC.tsv",
            Task::Stsb => "STS-B.tsv",
            Task::Qqp => "QQP.tsv",
            Task::Mnli => "MNLI-m.tsv",
            Task::Qnli => "QNLI.tsv",
            Task::Rte => "RTE.tsv",
            Task::Wnli => "WNLI.tsv",
        },
        _ => return Err(GlueError::UnsupportedSplit { task, split }),
    };
    let mut contents = String::from("index\tprediction\n");
    match (task.is_regression(), preds) {
        (true, Predictions::Score(scores)) => {
            for (i, s) in scores.iter().enumerate() {
                // Infallible: writing to a String.
                let _ = writeln!(contents, "{i}\t{:.3}", f64::from(*s));
            }
        }
        (false, Predictions::Class(ids)) => {
            let labels = task.labels();
            for (i, &id) in ids.iter().enumerate() {
                let label = labels.get(id).ok_or(GlueError::ClassOutOfRange {
                    task,
                    id,
                    num_labels: labels.len(),
                })?;
                let _ = writeln!(contents, "{i}\t{label}");
            }
        }
        (true, _) => {
            return Err(GlueError::WrongKind {
                task,
                expected: "scores",
            });
        }
        (false, _) => {
            return Err(GlueError::WrongKind {
                task,
                expected: "class ids",
            });
        }
    }
    Ok(Submission {
        file_name,
        contents,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let s = format_submission(Task::Rte, Split::Test, &Predictions::Class(vec![1, 0])).unwrap();
        assert_eq!(s.file_name, "RTE.tsv");
        assert_eq!(
            s.contents,
            "index\tprediction\n0\tnot_entailment\n1\tentailment\n"
        );
        let s =
            format_submission(Task::Mrpc, Split::Test, &Predictions::Class(vec![0, 1])).unwrap();
        assert_eq!(
            (s.file_name, s.contents.as_str()),
            ("MRPC.tsv", "index\tprediction\n0\t0\n1\t1\n")
        );
        let s = format_submission(
            Task::Stsb,
            Split::Test,
            &Predictions::Score(vec![1.23456, 0.5, -0.25]),
        )
        .unwrap();
        assert_eq!(s.file_name, "STS-B.tsv");
        assert_eq!(
            s.contents,
            "index\tprediction\n0\t1.235\n1\t0.500\n2\t-0.250\n"
        );
        let mm = Predictions::Class(vec![2]);
        let s = format_submission(Task::Mnli, Split::TestMismatched, &mm).unwrap();
        assert_eq!(
            (s.file_name, s.contents.as_str()),
            ("MNLI-mm.tsv", "index\tprediction\n0\tneutral\n")
        );
        assert_eq!(
            format_submission(Task::Mnli, Split::Test, &mm)
                .unwrap()
                .file_name,
            "MNLI-m.tsv"
        );
    }

    #[test]
    fn rejects_bad_input() {
        let p = Predictions::Class(vec![0]);
        assert!(matches!(
            format_submission(Task::Cola, Split::Dev, &p),
            Err(GlueError::UnsupportedSplit {
                split: Split::Dev,
                ..
            })
        ));
        assert!(matches!(
            format_submission(Task::Sst2, Split::TestMismatched, &p),
            Err(GlueError::UnsupportedSplit { .. })
        ));
        assert!(matches!(
            format_submission(Task::Stsb, Split::Test, &p),
            Err(GlueError::WrongKind {
                expected: "scores",
                ..
            })
        ));
        assert!(matches!(
            format_submission(Task::Qnli, Split::Test, &Predictions::Class(vec![2])),
            Err(GlueError::ClassOutOfRange { id: 2, .. })
        ));
    }
}
