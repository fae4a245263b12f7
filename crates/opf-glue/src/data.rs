//! GLUE TSV readers, following `transformers/data/processors/glue.py`.
//!
//! `DataProcessor._read_tsv` opens each file with `encoding="utf-8-sig"` (a leading byte-order mark
//! is dropped) and universal newlines, and parses it with
//! `csv.reader(f, delimiter="\t", quotechar=None)`, i.e. no quote processing: a record is one
//! line, split on tabs. This module does the same. Unlike HF, it checks every row's column count
//! (the header's count, or 4 for the header-less CoLA train/dev files) and every label, and
//! reports the file and 1-based line of the first malformed row.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use crate::error::GlueError;
use crate::task::{Split, Task};

/// Default GLUE directory, relative to the working directory; the last resort of
/// [`resolve_data_dir`].
pub const DEFAULT_DATA_DIR: &str = "datasets/glue";

/// A gold label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Label {
    /// Class id: index into [`Task::labels`] (HF `label_map`).
    Class(usize),
    /// STS-B similarity score (HF `float(example.label)`).
    Score(f32),
}

/// One GLUE example (HF `InputExample`).
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// HF guid: `"{set_type}-{i}"` (row counter) or `"{set_type}-{first column}"`, per processor.
    pub guid: String,
    /// First sentence.
    pub text_a: String,
    /// Second sentence; `None` for the single-sentence tasks CoLA and SST-2.
    pub text_b: Option<String>,
    /// Gold label; `None` on test splits.
    pub label: Option<Label>,
}

/// Where a column is taken from.
#[derive(Clone, Copy)]
enum Col {
    At(usize),
    /// Python `line[-1]`.
    Last,
}

/// How the guid suffix is formed.
#[derive(Clone, Copy)]
enum Guid {
    /// `enumerate` index of the row; `first` is the index of the first data row.
    Counter { first: usize },
    /// `line[0]`.
    FirstColumn,
}

/// Column layout of one (task, split) file, transcribed from the HF processors.
struct Layout {
    /// Whether line 1 is a header (skipped, and its column count is the expected one).
    header: bool,
    /// Column count of header-less files.
    fixed_columns: usize,
    guid: Guid,
    text_a: usize,
    text_b: Option<usize>,
    label: Option<Col>,
    /// HF `QqpProcessor` skips rows that raise `IndexError` (too few columns).
    skip_short_rows: bool,
}

impl Layout {
    fn of(task: Task, split: Split) -> Layout {
        let test = split.is_test();
        let labelled = |col| if test { None } else { Some(col) };
        let paired = |a, b, label, guid| Layout {
            header: true,
            fixed_columns: 0,
            guid,
            text_a: a,
            text_b: Some(b),
            label,
            skip_short_rows: false,
        };
        match task {
            // ColaProcessor: train/dev have no header, guid counter from 0, text line[3], label
            // line[1]; test drops its header (`lines[1:]`), text line[1].
            Task::Cola => Layout {
                header: test,
                fixed_columns: 4,
                guid: Guid::Counter { first: 0 },
                text_a: if test { 1 } else { 3 },
                text_b: None,
                label: labelled(Col::At(1)),
                skip_short_rows: false,
            },
            // Sst2Processor: header skipped (`i == 0`), guid counter, text line[0] (test line[1]),
            // label line[1].
            Task::Sst2 => Layout {
                header: true,
                fixed_columns: 0,
                guid: Guid::Counter { first: 1 },
                text_a: if test { 1 } else { 0 },
                text_b: None,
                label: labelled(Col::At(1)),
                skip_short_rows: false,
            },
            // MrpcProcessor: guid counter, texts line[3], line[4], label line[0].
            Task::Mrpc => paired(3, 4, labelled(Col::At(0)), Guid::Counter { first: 1 }),
            // StsbProcessor: guid line[0], texts line[7], line[8], label line[-1].
            Task::Stsb => paired(7, 8, labelled(Col::Last), Guid::FirstColumn),
            // QqpProcessor: guid line[0]; texts line[3], line[4], label line[5]; test line[1],
            // line[2]; rows raising IndexError are skipped.
            Task::Qqp => Layout {
                skip_short_rows: true,
                ..if test {
                    paired(1, 2, None, Guid::FirstColumn)
                } else {
                    paired(3, 4, Some(Col::At(5)), Guid::FirstColumn)
                }
            },
            // MnliProcessor / MnliMismatchedProcessor: guid line[0], texts line[8], line[9],
            // label line[-1].
            Task::Mnli => paired(8, 9, labelled(Col::Last), Guid::FirstColumn),
            // QnliProcessor, RteProcessor, WnliProcessor: guid line[0], texts line[1], line[2],
            // label line[-1].
            Task::Qnli | Task::Rte | Task::Wnli => {
                paired(1, 2, labelled(Col::Last), Guid::FirstColumn)
            }
        }
    }

    /// Smallest column count for which every index of the layout exists.
    fn min_columns(&self) -> usize {
        let label = match self.label {
            Some(Col::At(i)) => i + 1,
            Some(Col::Last) | None => 1,
        };
        [self.text_a + 1, self.text_b.map_or(0, |b| b + 1), label]
            .into_iter()
            .max()
            .unwrap_or(1)
    }
}

/// Splits `text` into lines the way Python's universal-newlines mode does (`\n`, `\r\n` and `\r`
/// all end a line; a final terminator does not start an extra line).
fn lines(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => {
                out.push(&text[start..i]);
                i += 1;
                start = i;
            }
            b'\r' => {
                out.push(&text[start..i]);
                i += if bytes.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                start = i;
            }
            _ => i += 1,
        }
    }
    if start < bytes.len() {
        out.push(&text[start..]);
    }
    out
}

/// Parses the contents of one GLUE TSV file of `task`/`split`; `path` is used in errors only.
///
/// Follows the HF processor of the task (`ColaProcessor`, `Sst2Processor`, `MrpcProcessor`,
/// `StsbProcessor`, `QqpProcessor`, `MnliProcessor`, `MnliMismatchedProcessor`, `QnliProcessor`,
/// `RteProcessor`, `WnliProcessor` in `transformers/data/processors/glue.py`): same columns, same
/// guids, labels mapped through [`Task::labels`] (STS-B scores parsed as floats after trimming
/// whitespace, as Python's `float` does; non-finite scores are rejected). A leading UTF-8 BOM is
/// removed. Rows whose column count differs from the header's are errors, except that QQP rows
/// with too few columns are skipped as HF does.
pub fn parse_examples(
    text: &str,
    path: &Path,
    task: Task,
    split: Split,
) -> Result<Vec<Example>, GlueError> {
    task.file_name(split)?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let layout = Layout::of(task, split);
    let set_type = split.set_type(task);
    let rows = lines(text);
    let column_error = |line: usize, expected: usize, found: usize| GlueError::ColumnCount {
        path: path.to_owned(),
        line,
        expected,
        found,
    };
    let (expected, data_start) = if layout.header {
        let Some(header) = rows.first() else {
            return Err(column_error(1, layout.min_columns(), 0));
        };
        let n = header.split('\t').count();
        if n < layout.min_columns() {
            return Err(column_error(1, layout.min_columns(), n));
        }
        (n, 1)
    } else {
        (layout.fixed_columns, 0)
    };

    let mut examples = Vec::with_capacity(rows.len().saturating_sub(data_start));
    for (k, row) in rows.iter().enumerate().skip(data_start) {
        let line = k + 1;
        let fields: Vec<&str> = if row.is_empty() {
            Vec::new()
        } else {
            row.split('\t').collect()
        };
        if fields.len() != expected {
            if layout.skip_short_rows && !fields.is_empty() && fields.len() < expected {
                continue;
            }
            return Err(column_error(line, expected, fields.len()));
        }
        let guid = match layout.guid {
            Guid::Counter { first } => format!("{set_type}-{}", k - data_start + first),
            Guid::FirstColumn => format!("{set_type}-{}", fields[0]),
        };
        let label = match layout.label {
            None => None,
            Some(col) => {
                let raw = match col {
                    Col::At(i) => fields[i],
                    Col::Last => fields[fields.len() - 1],
                };
                Some(parse_label(raw, task, path, line)?)
            }
        };
        examples.push(Example {
            guid,
            text_a: fields[layout.text_a].to_owned(),
            text_b: layout.text_b.map(|b| fields[b].to_owned()),
            label,
        });
    }
    Ok(examples)
}

fn parse_label(raw: &str, task: Task, path: &Path, line: usize) -> Result<Label, GlueError> {
    if task.is_regression() {
        match raw.trim().parse::<f32>() {
            Ok(v) if v.is_finite() => Ok(Label::Score(v)),
            _ => Err(GlueError::BadScore {
                path: path.to_owned(),
                line,
                value: raw.to_owned(),
            }),
        }
    } else {
        task.labels()
            .iter()
            .position(|l| *l == raw)
            .map(Label::Class)
            .ok_or_else(|| GlueError::UnknownLabel {
                path: path.to_owned(),
                line,
                task,
                label: raw.to_owned(),
                valid: task.labels().join(", "),
            })
    }
}

/// Reads one GLUE TSV file of `task`/`split` (see [`parse_examples`]).
pub fn read_examples(path: &Path, task: Task, split: Split) -> Result<Vec<Example>, GlueError> {
    let bytes = std::fs::read(path).map_err(|source| GlueError::Io {
        path: path.to_owned(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let bad = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..bad].iter().filter(|b| **b == b'\n').count();
        GlueError::InvalidUtf8 {
            path: path.to_owned(),
            line,
        }
    })?;
    parse_examples(&text, path, task, split)
}

/// Reads `task`/`split` from a GLUE directory in the standard layout:
/// `glue_dir/<Task::dir_name>/<Task::file_name>`, e.g. `glue_dir/MNLI/dev_matched.tsv`.
pub fn load_examples(glue_dir: &Path, task: Task, split: Split) -> Result<Vec<Example>, GlueError> {
    let path = glue_dir.join(task.dir_name()).join(task.file_name(split)?);
    read_examples(&path, task, split)
}

/// Picks the GLUE data directory: the explicit `--data-dir` if given, else the `GLUE_DIR`
/// environment value if set and non-empty, else [`DEFAULT_DATA_DIR`]. The first of these that is
/// *given* is used and must be an existing directory (an explicit choice never silently falls
/// through to a later one); the error lists what was tried.
///
/// Pure apart from the directory-existence check: the caller passes
/// `std::env::var_os("GLUE_DIR")` as `glue_dir_env`.
pub fn resolve_data_dir(
    explicit: Option<&Path>,
    glue_dir_env: Option<&OsStr>,
) -> Result<PathBuf, GlueError> {
    let mut tried = Vec::new();
    let candidate = if let Some(p) = explicit {
        (p.to_owned(), "--data-dir")
    } else {
        tried.push("--data-dir: not given".to_owned());
        match glue_dir_env.filter(|v| !v.is_empty()) {
            Some(v) => (PathBuf::from(v), "GLUE_DIR"),
            None => {
                tried.push("GLUE_DIR: not set".to_owned());
                (PathBuf::from(DEFAULT_DATA_DIR), "default")
            }
        }
    };
    let (path, source) = candidate;
    if path.is_dir() {
        Ok(path)
    } else {
        tried.push(format!("{source}: {} is not a directory", path.display()));
        Err(GlueError::DataDirNotFound {
            tried: tried.join("; "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn universal_newlines() {
        assert_eq!(lines("a\nb\r\nc\rd"), ["a", "b", "c", "d"]);
        assert_eq!(lines("a\n\nb\n"), ["a", "", "b"]);
        assert!(lines("").is_empty());
    }

    #[test]
    fn no_quote_processing_and_bom() {
        let text = "\u{feff}Quality\t#1 ID\t#2 ID\t#1 String\t#2 String\n\
                    1\t1\t2\t\" quoted \"start\tends with \"\n";
        let ex = parse_examples(text, Path::new("x.tsv"), Task::Mrpc, Split::Train).unwrap();
        assert_eq!(ex.len(), 1);
        assert_eq!(ex[0].guid, "train-1");
        assert_eq!(ex[0].text_a, "\" quoted \"start");
        assert_eq!(ex[0].text_b.as_deref(), Some("ends with \""));
        assert_eq!(ex[0].label, Some(Label::Class(1)));
    }

    #[test]
    fn score_parsing_trims_and_rejects_nan() {
        let head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore\n";
        let ok = format!("{head}7\tg\tf\ty\to\ts\ts\tA\tB\t 3.25 \n");
        let ex = parse_examples(&ok, Path::new("s.tsv"), Task::Stsb, Split::Dev).unwrap();
        assert_eq!(ex[0].label, Some(Label::Score(3.25)));
        assert_eq!(ex[0].guid, "dev-7");
        let bad = format!("{head}7\tg\tf\ty\to\ts\ts\tA\tB\tnan\n");
        let err = parse_examples(&bad, Path::new("s.tsv"), Task::Stsb, Split::Dev).unwrap_err();
        assert!(matches!(err, GlueError::BadScore { line: 2, ref value, .. } if value == "nan"));
    }

    #[test]
    fn qqp_short_rows_are_skipped_like_hf() {
        let text = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n\
                    1\t1\t2\tq1\tq2\t0\n\
                    2\t3\t4\tq3\n\
                    3\t5\t6\tq5\tq6\t1\n";
        let ex = parse_examples(text, Path::new("q.tsv"), Task::Qqp, Split::Train).unwrap();
        let guids: Vec<_> = ex.iter().map(|e| e.guid.as_str()).collect();
        assert_eq!(guids, ["train-1", "train-3"]);
        let long = "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n1\t1\t2\tq1\tq2\t0\tx\n";
        assert!(matches!(
            parse_examples(long, Path::new("q.tsv"), Task::Qqp, Split::Train),
            Err(GlueError::ColumnCount {
                line: 2,
                expected: 6,
                found: 7,
                ..
            })
        ));
    }

    #[test]
    fn short_header_is_an_error() {
        let err = parse_examples("a\tb\n", Path::new("m.tsv"), Task::Mrpc, Split::Dev).unwrap_err();
        assert!(matches!(
            err,
            GlueError::ColumnCount {
                line: 1,
                expected: 5,
                found: 2,
                ..
            }
        ));
        let err = parse_examples("", Path::new("m.tsv"), Task::Mrpc, Split::Dev).unwrap_err();
        assert!(matches!(
            err,
            GlueError::ColumnCount {
                line: 1,
                found: 0,
                ..
            }
        ));
    }

    #[test]
    fn data_dir_resolution_order() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let missing = here.join("no-such-dir");
        assert_eq!(
            resolve_data_dir(Some(here), Some(OsStr::new("/x"))).unwrap(),
            here
        );
        assert_eq!(
            resolve_data_dir(None, Some(here.as_os_str())).unwrap(),
            here
        );
        let err = resolve_data_dir(Some(&missing), Some(here.as_os_str())).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--data-dir:") && msg.contains("no-such-dir"),
            "{msg}"
        );
        let err = resolve_data_dir(None, Some(missing.as_os_str())).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("--data-dir: not given") && msg.contains("GLUE_DIR:"),
            "{msg}"
        );
        // Tests run in the crate directory, which has no datasets/glue.
        let err = resolve_data_dir(None, Some(OsStr::new(""))).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("GLUE_DIR: not set") && msg.contains("default: datasets/glue"),
            "{msg}"
        );
    }
}
