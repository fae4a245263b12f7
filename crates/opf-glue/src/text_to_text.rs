//! GLUE as text-to-text for T5, as the original OPF T5 code formats it (spec §5.7; its
//! `t5/data/tasks.py`): the source is `"{task} {field1}: {text_a} {field2}: {text_b}"`, the
//! target the label as a string, and a generated string is mapped back to a label, `-1` when it
//! is not one.

use crate::{Example, Label, Task};

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
}
