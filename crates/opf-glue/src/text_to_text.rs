//! GLUE as text-to-text for T5, as the original OPF T5 code formats it (spec §5.7; its
//! `t5/data/tasks.py`): the source is `"{task} {field1}: {text_a} {field2}: {text_b}"`, the
//! target the label as a string, and a generated string is mapped back to a label, `-1` when it
//! is not one.
//!
//! [`GlueTokenizer::encode_t5`] tokenizes the sources, [`T5Text`] the targets (decoder labels
//! padded with [`LABEL_PAD_ID`], as Hugging Face's `DataCollatorForSeq2Seq`) and decodes
//! generated ids; [`t5_predictions`] turns generated texts into [`Predictions`] for the GLUE
//! metrics.

use crate::{BatchLabels, Example, Features, GlueError, GlueTokenizer, Label, Predictions, Task};

/// The value decoder labels are padded with, which the loss ignores: Hugging Face's
/// `DataCollatorForSeq2Seq(label_pad_token_id=-100)` and PyTorch's `ignore_index` default.
pub const LABEL_PAD_ID: i64 = -100;

/// The task-name prefix of the source text: `cola`, `sst2`, `mrpc`, `stsb`, `qqp`, `mnli`,
/// `qnli`, `rte`, `wnli` (the `datasets` names, without the dashes of [`Task::name`]).
pub fn t5_prefix(task: Task) -> &'static str {
    match task {
        Task::Cola => "cola",
        Task::Sst2 => "sst2",
        Task::Mrpc => "mrpc",
        Task::Stsb => "stsb",
        Task::Qqp => "qqp",
        Task::Mnli => "mnli",
        Task::Qnli => "qnli",
        Task::Rte => "rte",
        Task::Wnli => "wnli",
    }
}

/// The field names before `text_a` and `text_b`. MNLI's second field has no colon, as in the
/// original code.
fn fields(task: Task) -> (&'static str, &'static str) {
    match task {
        Task::Cola | Task::Sst2 => ("sentence:", ""),
        Task::Mrpc | Task::Stsb | Task::Rte | Task::Wnli => ("sentence1:", "sentence2:"),
        Task::Qqp => ("question1:", "question2:"),
        Task::Mnli => ("premise:", "hypothesis"),
        Task::Qnli => ("question:", "sentence:"),
    }
}

/// The source text of `example`, e.g. `"mrpc sentence1: … sentence2: …"`,
/// `"cola sentence: …"`, `"mnli premise: … hypothesis …"`: words joined by single spaces.
pub fn t5_source(task: Task, example: &Example) -> String {
    let (first, second) = fields(task);
    let mut parts = vec![t5_prefix(task), first, example.text_a.as_str()];
    if let Some(text_b) = &example.text_b {
        parts.extend([second, text_b.as_str()]);
    }
    parts.join(" ")
}

/// An STS-B score rounded to the nearest 0.2 (`round(x·5)/5`, as the original documents; its
/// code rounds to one decimal, spec §5.7).
pub fn round_stsb_target(score: f32) -> f32 {
    (score * 5.0).round() / 5.0
}

/// The target text of a label: the class id (`"0"`, `"1"`, `"2"`; ids are [`Task::labels`]
/// indices) or the STS-B score rounded by [`round_stsb_target`] with one decimal (`"3.8"`).
pub fn t5_target(label: Label) -> String {
    match label {
        Label::Class(id) => id.to_string(),
        Label::Score(score) => format!("{:.1}", round_stsb_target(score)),
    }
}

/// The class id of a generated text (surrounding whitespace ignored): a decimal id below
/// `task.num_labels()`, else `-1` (scored as wrong).
pub fn t5_class(task: Task, text: &str) -> i64 {
    match text.trim().parse::<usize>() {
        Ok(id) if id < task.labels().len() => id as i64,
        _ => -1,
    }
}

/// The STS-B score of a generated text (surrounding whitespace ignored), `-1.0` when it is not a
/// number.
pub fn t5_score(text: &str) -> f32 {
    text.trim()
        .parse::<f32>()
        .ok()
        .filter(|x| x.is_finite())
        .unwrap_or(-1.0)
}

impl GlueTokenizer {
    /// Tokenizes `examples` as T5 reads them: the single text [`t5_source`] (special tokens added,
    /// truncated from the right to `max_seq_length`), token type ids 0, labels kept.
    pub fn encode_t5(&self, task: Task, examples: &[Example]) -> Result<Vec<Features>, GlueError> {
        let sources: Vec<Example> = examples
            .iter()
            .map(|e| Example {
                guid: e.guid.clone(),
                text_a: t5_source(task, e),
                text_b: None,
                label: e.label,
            })
            .collect();
        self.encode(&sources)
    }
}

/// The target side of T5 text-to-text fine-tuning: label → target ids ([`t5_target`] tokenized
/// with special tokens, so T5's ends with `</s>`, truncated to `max_target_length` tokens) and
/// generated ids → text.
#[derive(Debug, Clone)]
pub struct T5Text {
    targets: GlueTokenizer,
}

impl T5Text {
    /// The targets of `tokenizer`'s vocabulary, at most `max_target_length` tokens each (the
    /// original's `max_target_length`, 128; also the generation budget).
    pub fn new(tokenizer: &GlueTokenizer, max_target_length: usize) -> Result<Self, GlueError> {
        let targets = GlueTokenizer::new(tokenizer.inner().clone(), max_target_length)?
            .with_pad_id(tokenizer.pad_id());
        Ok(Self { targets })
    }

    /// Longest target, in tokens (special tokens included).
    pub fn max_target_length(&self) -> usize {
        self.targets.max_seq_length()
    }

    /// The target ids of `label`.
    pub fn target_ids(&self, label: Label) -> Result<Vec<i64>, GlueError> {
        let example = Example {
            guid: "target".to_owned(),
            text_a: t5_target(label),
            text_b: None,
            label: None,
        };
        let mut features = self.targets.encode(std::slice::from_ref(&example))?;
        Ok(features.pop().map(|f| f.input_ids).unwrap_or_default())
    }

    /// The decoder labels of a batch: row-major `[batch, len]` target ids, each row padded on the
    /// right with [`LABEL_PAD_ID`] to the longest target of the batch; returns them and `len`.
    pub fn decoder_labels(&self, labels: &BatchLabels) -> Result<(Vec<i64>, usize), GlueError> {
        let labels: Vec<Label> = match labels {
            BatchLabels::Class(ids) => ids.iter().map(|&c| Label::Class(c as usize)).collect(),
            BatchLabels::Score(scores) => scores.iter().map(|&s| Label::Score(s)).collect(),
        };
        let rows = labels
            .into_iter()
            .map(|l| self.target_ids(l))
            .collect::<Result<Vec<_>, _>>()?;
        let len = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut out = vec![LABEL_PAD_ID; rows.len() * len];
        for (r, row) in rows.iter().enumerate() {
            out[r * len..r * len + row.len()].copy_from_slice(row);
        }
        Ok((out, len))
    }

    /// The text of generated ids, special tokens (start, `</s>`, padding) skipped, as
    /// `tokenizer.batch_decode(ids, skip_special_tokens=True)`; negative ids are skipped too.
    pub fn decode(&self, ids: &[i64]) -> Result<String, GlueError> {
        let ids: Vec<u32> = ids.iter().filter_map(|&i| u32::try_from(i).ok()).collect();
        self.targets
            .inner()
            .decode(&ids, true)
            .map_err(|source| GlueError::Tokenizer {
                context: format!("decoding {} generated ids", ids.len()),
                source,
            })
    }
}

/// The predictions of generated `texts` for `task`: [`t5_score`] for STS-B, [`t5_class`] for
/// the classification tasks. A text that is no class id counts as wrong, as the original T5
/// metrics count it (`t5/metrics/metrics.py`, spec §5.5: F1 flips it to `1 − target`): it
/// becomes the class after its label (`(label + 1) mod num_labels`, i.e. `1 − label` for the
/// binary tasks), or class 0 when `labels` is `None` (test splits have no labels).
pub fn t5_predictions(task: Task, texts: &[String], labels: Option<&BatchLabels>) -> Predictions {
    if task.is_regression() {
        return Predictions::Score(texts.iter().map(|t| t5_score(t)).collect());
    }
    let k = task.num_labels();
    Predictions::Class(
        texts
            .iter()
            .enumerate()
            .map(|(i, text)| match usize::try_from(t5_class(task, text)) {
                Ok(id) => id,
                Err(_) => match labels {
                    Some(BatchLabels::Class(l)) => (l[i] as usize + 1) % k,
                    _ => 0,
                },
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(a: &str, b: Option<&str>) -> Example {
        Example {
            guid: "dev-0".into(),
            text_a: a.into(),
            text_b: b.map(Into::into),
            label: None,
        }
    }

    #[test]
    fn sources_follow_the_original_prefixes() {
        let pair = example("A b .", Some("C d ."));
        let single = example("It is.", None);
        let cases = [
            (Task::Mrpc, &pair, "mrpc sentence1: A b . sentence2: C d ."),
            (Task::Stsb, &pair, "stsb sentence1: A b . sentence2: C d ."),
            (Task::Rte, &pair, "rte sentence1: A b . sentence2: C d ."),
            (Task::Wnli, &pair, "wnli sentence1: A b . sentence2: C d ."),
            (Task::Qqp, &pair, "qqp question1: A b . question2: C d ."),
            (Task::Mnli, &pair, "mnli premise: A b . hypothesis C d ."),
            (Task::Qnli, &pair, "qnli question: A b . sentence: C d ."),
            (Task::Cola, &single, "cola sentence: It is."),
            (Task::Sst2, &single, "sst2 sentence: It is."),
        ];
        for (task, ex, expected) in cases {
            assert_eq!(t5_source(task, ex), expected, "{task:?}");
        }
    }

    #[test]
    fn targets_are_class_ids_and_rounded_scores() {
        assert_eq!(t5_target(Label::Class(0)), "0");
        assert_eq!(t5_target(Label::Class(2)), "2");
        for (score, text) in [
            (3.8, "3.8"),
            (3.75, "3.8"),
            (3.69, "3.6"),
            (0.0, "0.0"),
            (5.0, "5.0"),
        ] {
            assert_eq!(t5_target(Label::Score(score)), text, "{score}");
        }
    }

    #[test]
    fn predictions_map_back_with_minus_one_for_invalid() {
        assert_eq!(t5_class(Task::Mrpc, "1"), 1);
        assert_eq!(t5_class(Task::Mrpc, " 0 "), 0);
        assert_eq!(t5_class(Task::Mrpc, "2"), -1);
        assert_eq!(t5_class(Task::Mnli, "2"), 2);
        assert_eq!(t5_class(Task::Mnli, "entailment"), -1);
        assert_eq!(t5_class(Task::Cola, ""), -1);
        assert_eq!(t5_class(Task::Cola, "-1"), -1);
        assert_eq!(t5_score("3.8"), 3.8);
        assert_eq!(t5_score(" 4 "), 4.0);
        assert_eq!(t5_score("four"), -1.0);
        assert_eq!(t5_score("nan"), -1.0);
    }

    /// The tiny T5 tokenizer fixture (`scripts/gen_t5_tokenizer_fixture.py`).
    fn tiny_t5(max_len: usize) -> GlueTokenizer {
        let json = include_str!("../tests/fixtures/tiny-t5-tokenizer.json");
        let tok: tokenizers::Tokenizer = json.parse().expect("tokenizer fixture");
        GlueTokenizer::new(tok, max_len).expect("has <pad>")
    }

    #[test]
    fn sources_and_targets_tokenize_as_t5_reads_them() {
        let tok = tiny_t5(8);
        assert_eq!(tok.pad_id(), 0);
        let ex = Example {
            label: Some(Label::Class(1)),
            ..example("The company said profits rose .", Some("Profits rose ."))
        };
        let f = tok.encode_t5(Task::Mrpc, &[ex]).unwrap();
        // mrpc sentence1 : the company said profits </s>, truncated to 8.
        assert_eq!(f[0].input_ids.len(), 8);
        assert_eq!(f[0].input_ids[..3], [3, 7, 9]);
        assert_eq!(f[0].input_ids[7], 1);
        assert!(f[0].token_type_ids.iter().all(|&t| t == 0));
        assert_eq!(f[0].label, Some(Label::Class(1)));

        let text = T5Text::new(&tok, 4).unwrap();
        assert_eq!(text.max_target_length(), 4);
        let one = text.target_ids(Label::Class(1)).unwrap();
        assert_eq!(one.len(), 2);
        assert_eq!(one[1], 1, "ends with </s>");
        let (labels, len) = text
            .decoder_labels(&BatchLabels::Score(vec![3.75, 1.0]))
            .unwrap();
        assert_eq!(len, 4);
        assert_eq!(labels[4..], text.target_ids(Label::Score(1.0)).unwrap()[..]);
        assert_eq!(text.decode(&labels[..4]).unwrap(), "3.8");
        // Start id, pads, </s> and the ignore value are skipped.
        assert_eq!(text.decode(&[0, one[0], 1, 0, -100]).unwrap(), "1");
        // Truncated to the budget, </s> kept.
        let short = T5Text::new(&tok, 2).unwrap();
        assert_eq!(short.target_ids(Label::Score(3.8)).unwrap().len(), 2);
    }

    #[test]
    fn invalid_generations_count_wrong() {
        let texts: Vec<String> = ["1", "yes", "0", ""].map(String::from).to_vec();
        let labels = BatchLabels::Class(vec![1, 1, 1, 0]);
        assert_eq!(
            t5_predictions(Task::Mrpc, &texts, Some(&labels)),
            Predictions::Class(vec![1, 0, 0, 1])
        );
        assert_eq!(
            t5_predictions(Task::Mrpc, &texts, None),
            Predictions::Class(vec![1, 0, 0, 0])
        );
        let mnli = BatchLabels::Class(vec![2, 2, 0, 1]);
        assert_eq!(
            t5_predictions(Task::Mnli, &texts, Some(&mnli)),
            Predictions::Class(vec![1, 0, 0, 2])
        );
        let scores: Vec<String> = ["3.8", "x"].map(String::from).to_vec();
        assert_eq!(
            t5_predictions(Task::Stsb, &scores, None),
            Predictions::Score(vec![3.8, -1.0])
        );
    }
}
