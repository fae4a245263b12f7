//! GLUE metrics, as HF `glue_compute_metrics` (`transformers/data/metrics/__init__.py`) computes
//! them with scikit-learn and SciPy: `simple_accuracy`, `acc_and_f1` (sklearn `f1_score`,
//! binary, positive class 1), sklearn `matthews_corrcoef`, and `pearson_and_spearman`
//! (scipy `pearsonr`, `spearmanr` with average ranks for ties).
//!
//! All arithmetic is in `f64` (scores are widened from `f32`), matching SciPy on `float64` input;
//! the tests compare with stored sklearn/SciPy results to 1e-12.

use std::collections::BTreeMap;

use crate::data::Label;
use crate::error::GlueError;
use crate::task::{Metric, Split, Task};

/// Model predictions for a set of examples.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    /// Predicted class ids (classification tasks).
    Class(Vec<usize>),
    /// Predicted scores (STS-B).
    Score(Vec<f32>),
}

impl Predictions {
    /// Turns row-major logits `[n, task.num_labels()]` into predictions as HF `Trainer` does for
    /// GLUE: `np.argmax(axis=1)` for classification (first maximum wins; a NaN counts as the
    /// maximum, as in NumPy), `np.squeeze` for regression.
    pub fn from_logits(task: Task, logits: &[f32]) -> Result<Predictions, GlueError> {
        let k = task.num_labels();
        if !logits.len().is_multiple_of(k) {
            return Err(GlueError::LengthMismatch {
                what: "logits length vs a multiple of num_labels",
                left: logits.len(),
                right: k,
            });
        }
        if task.is_regression() {
            return Ok(Predictions::Score(logits.to_vec()));
        }
        let argmax = |row: &[f32]| {
            let mut best = 0;
            for j in 1..row.len() {
                if row[best].is_nan() {
                    break;
                }
                if row[j] > row[best] || row[j].is_nan() {
                    best = j;
                }
            }
            best
        };
        Ok(Predictions::Class(logits.chunks(k).map(argmax).collect()))
    }

    /// Number of predictions.
    pub fn len(&self) -> usize {
        match self {
            Predictions::Class(v) => v.len(),
            Predictions::Score(v) => v.len(),
        }
    }

    /// True when there are no predictions.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn check_lengths(metric: &'static str, a: usize, b: usize, needed: usize) -> Result<(), GlueError> {
    if a != b {
        return Err(GlueError::LengthMismatch {
            what: "predictions vs labels",
            left: a,
            right: b,
        });
    }
    if a < needed {
        return Err(GlueError::TooFewExamples {
            metric,
            needed,
            found: a,
        });
    }
    Ok(())
}

/// Fraction of predictions equal to the label (HF `simple_accuracy`: `(preds == labels).mean()`).
pub fn accuracy(preds: &[usize], labels: &[usize]) -> Result<f64, GlueError> {
    check_lengths("accuracy", preds.len(), labels.len(), 1)?;
    let correct = preds.iter().zip(labels).filter(|(p, l)| p == l).count();
    Ok(correct as f64 / preds.len() as f64)
}

/// Binary F1 with positive class 1 (sklearn `f1_score(y_true, y_pred)`, `average="binary"`):
/// `2·tp / (2·tp + fp + fn)`, 0 when there are no positive labels or predictions (sklearn's
/// `zero_division` default). Ids other than 1 count as negative.
pub fn f1_binary(preds: &[usize], labels: &[usize]) -> Result<f64, GlueError> {
    check_lengths("f1", preds.len(), labels.len(), 1)?;
    let (mut tp, mut pred_pos, mut true_pos) = (0usize, 0usize, 0usize);
    for (&p, &l) in preds.iter().zip(labels) {
        tp += usize::from(p == 1 && l == 1);
        pred_pos += usize::from(p == 1);
        true_pos += usize::from(l == 1);
    }
    let denom = (pred_pos + true_pos) as f64;
    Ok(if denom == 0.0 {
        0.0
    } else {
        2.0 * tp as f64 / denom
    })
}

/// Matthews correlation coefficient, multiclass (sklearn `matthews_corrcoef`, computed from the
/// confusion matrix `C` exactly as sklearn does:
/// `(trace(C)·n − t·p) / sqrt((n² − p·p)(n² − t·t))`, 0 when the denominator is 0).
pub fn matthews_corrcoef(preds: &[usize], labels: &[usize]) -> Result<f64, GlueError> {
    check_lengths("mcc", preds.len(), labels.len(), 1)?;
    let k = preds.iter().chain(labels).max().map_or(0, |m| m + 1);
    let mut t_sum = vec![0.0f64; k];
    let mut p_sum = vec![0.0f64; k];
    let mut n_correct = 0.0f64;
    for (&p, &l) in preds.iter().zip(labels) {
        t_sum[l] += 1.0;
        p_sum[p] += 1.0;
        if p == l {
            n_correct += 1.0;
        }
    }
    let n = preds.len() as f64;
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let cov_ytyp = n_correct * n - dot(&t_sum, &p_sum);
    let cov_ypyp = n * n - dot(&p_sum, &p_sum);
    let cov_ytyt = n * n - dot(&t_sum, &t_sum);
    let denom = cov_ypyp * cov_ytyt;
    Ok(if denom == 0.0 {
        0.0
    } else {
        cov_ytyp / denom.sqrt()
    })
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

fn is_constant(x: &[f64]) -> bool {
    x.iter().all(|v| *v == x[0])
}

/// Pearson correlation in `f64` (scipy `pearsonr(...)[0]`, same algorithm: centre, scale by the
/// largest absolute deviation, normalise, dot, clip to [-1, 1]; exactly ±1 for two points).
/// NaN when either input is constant, as SciPy returns. Needs at least 2 examples.
pub fn pearson(preds: &[f32], labels: &[f32]) -> Result<f64, GlueError> {
    check_lengths("pearson", preds.len(), labels.len(), 2)?;
    let x: Vec<f64> = preds.iter().map(|&v| f64::from(v)).collect();
    let y: Vec<f64> = labels.iter().map(|&v| f64::from(v)).collect();
    Ok(pearson_f64(&x, &y))
}

fn pearson_f64(x: &[f64], y: &[f64]) -> f64 {
    if is_constant(x) || is_constant(y) {
        return f64::NAN;
    }
    let normalised = |v: &[f64]| -> Vec<f64> {
        let m = mean(v);
        let centred: Vec<f64> = v.iter().map(|a| a - m).collect();
        let max = centred.iter().fold(0.0f64, |acc, a| acc.max(a.abs()));
        let norm = max
            * centred
                .iter()
                .map(|a| (a / max).powi(2))
                .sum::<f64>()
                .sqrt();
        centred.iter().map(|a| a / norm).collect()
    };
    let (xn, yn) = (normalised(x), normalised(y));
    let r = xn
        .iter()
        .zip(&yn)
        .map(|(a, b)| a * b)
        .sum::<f64>()
        .clamp(-1.0, 1.0);
    if x.len() == 2 { r.round() } else { r }
}

/// Ranks 1..=n with ties given their average rank (scipy `rankdata(method="average")`).
fn average_ranks(x: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..x.len()).collect();
    order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut ranks = vec![0.0; x.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i + 1;
        while j < order.len() && x[order[j]] == x[order[i]] {
            j += 1;
        }
        // Positions i..j (0-based) share the average of ranks i+1..=j.
        let avg = (i + 1 + j) as f64 / 2.0;
        for &o in &order[i..j] {
            ranks[o] = avg;
        }
        i = j;
    }
    ranks
}

/// Spearman rank correlation (scipy `spearmanr(...)[0]`: average ranks for ties, then
/// `np.corrcoef` of the ranks). NaN when either input is constant, as SciPy returns. Needs at
/// least 2 examples.
pub fn spearman(preds: &[f32], labels: &[f32]) -> Result<f64, GlueError> {
    check_lengths("spearmanr", preds.len(), labels.len(), 2)?;
    let x: Vec<f64> = preds.iter().map(|&v| f64::from(v)).collect();
    let y: Vec<f64> = labels.iter().map(|&v| f64::from(v)).collect();
    if is_constant(&x) || is_constant(&y) {
        return Ok(f64::NAN);
    }
    let (rx, ry) = (average_ranks(&x), average_ranks(&y));
    let (mx, my) = (mean(&rx), mean(&ry));
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in rx.iter().zip(&ry) {
        let (da, db) = (a - mx, b - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    let f = (x.len() - 1) as f64;
    Ok(((sxy / f) / (sxx / f).sqrt() / (syy / f).sqrt()).clamp(-1.0, 1.0))
}

fn class_ids(task: Task, values: &[usize]) -> Result<(), GlueError> {
    let num_labels = task.num_labels();
    match values.iter().find(|&&id| id >= num_labels) {
        Some(&id) => Err(GlueError::ClassOutOfRange {
            task,
            id,
            num_labels,
        }),
        None => Ok(()),
    }
}

/// The metrics of HF `glue_compute_metrics(task_name, preds, labels)`, keyed as HF keys them:
/// CoLA `mcc`; SST-2, QNLI, RTE, WNLI `acc`; MRPC, QQP `acc`, `f1`, `acc_and_f1`;
/// STS-B `pearson`, `spearmanr`, `corr`; MNLI `mnli/acc` or, for the mismatched splits,
/// `mnli-mm/acc` (see [`Task::metric_key`]). `split` only matters for MNLI.
///
/// Fails when lengths differ, the input is empty (or has fewer than 2 scores for STS-B), the
/// predictions or labels are of the wrong kind for the task, or a class id is out of range.
pub fn compute_metrics(
    task: Task,
    split: Split,
    preds: &Predictions,
    labels: &[Label],
) -> Result<BTreeMap<String, f64>, GlueError> {
    let mut out = BTreeMap::new();
    let mut put = |metric: Metric, value: f64| {
        out.insert(task.metric_key(split, metric), value);
    };
    if task.is_regression() {
        let wrong = || GlueError::WrongKind {
            task,
            expected: "scores",
        };
        let Predictions::Score(p) = preds else {
            return Err(wrong());
        };
        let l = labels
            .iter()
            .map(|l| match l {
                Label::Score(s) => Ok(*s),
                Label::Class(_) => Err(wrong()),
            })
            .collect::<Result<Vec<f32>, _>>()?;
        let (pr, sp) = (pearson(p, &l)?, spearman(p, &l)?);
        put(Metric::Pearson, pr);
        put(Metric::Spearmanr, sp);
        put(Metric::Corr, (pr + sp) / 2.0);
    } else {
        let wrong = || GlueError::WrongKind {
            task,
            expected: "class ids",
        };
        let Predictions::Class(p) = preds else {
            return Err(wrong());
        };
        let l = labels
            .iter()
            .map(|l| match l {
                Label::Class(c) => Ok(*c),
                Label::Score(_) => Err(wrong()),
            })
            .collect::<Result<Vec<usize>, _>>()?;
        class_ids(task, p)?;
        class_ids(task, &l)?;
        match task {
            Task::Cola => put(Metric::Mcc, matthews_corrcoef(p, &l)?),
            Task::Mrpc | Task::Qqp => {
                let (acc, f1) = (accuracy(p, &l)?, f1_binary(p, &l)?);
                put(Metric::Acc, acc);
                put(Metric::F1, f1);
                put(Metric::AccAndF1, (acc + f1) / 2.0);
            }
            _ => put(Metric::Acc, accuracy(p, &l)?),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(average_ranks(&[3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0]);
        assert_eq!(average_ranks(&[5.0, 5.0, 5.0]), [2.0, 2.0, 2.0]);
    }

    #[test]
    fn argmax_first_max_and_squeeze() {
        let p = Predictions::from_logits(Task::Mnli, &[0.1, 0.7, 0.7, 2.0, -1.0, 0.0]).unwrap();
        assert_eq!(p, Predictions::Class(vec![1, 0]));
        let p = Predictions::from_logits(Task::Mrpc, &[0.0, f32::NAN, 1.0, 0.0]).unwrap();
        assert_eq!(p, Predictions::Class(vec![1, 0]));
        let p = Predictions::from_logits(Task::Stsb, &[1.5, 2.5]).unwrap();
        assert_eq!(p, Predictions::Score(vec![1.5, 2.5]));
        assert!(matches!(
            Predictions::from_logits(Task::Mnli, &[0.0; 4]),
            Err(GlueError::LengthMismatch {
                left: 4,
                right: 3,
                ..
            })
        ));
    }

    #[test]
    fn task_maps_and_errors() {
        let labels = [
            Label::Class(1),
            Label::Class(0),
            Label::Class(1),
            Label::Class(1),
        ];
        let preds = Predictions::Class(vec![1, 1, 0, 1]);
        let m = compute_metrics(Task::Mrpc, Split::Dev, &preds, &labels).unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["acc", "acc_and_f1", "f1"]);
        assert_eq!(m["acc"], 0.5);
        assert!((m["f1"] - 2.0 / 3.0).abs() < 1e-15);
        assert!((m["acc_and_f1"] - (0.5 + 2.0 / 3.0) / 2.0).abs() < 1e-15);
        let m = compute_metrics(Task::Mnli, Split::DevMismatched, &preds, &labels).unwrap();
        assert_eq!(m.keys().collect::<Vec<_>>(), ["mnli-mm/acc"]);
        assert!(matches!(
            compute_metrics(Task::Stsb, Split::Dev, &preds, &labels),
            Err(GlueError::WrongKind {
                expected: "scores",
                ..
            })
        ));
        assert!(matches!(
            compute_metrics(
                Task::Rte,
                Split::Dev,
                &Predictions::Class(vec![2, 0, 0, 0]),
                &labels
            ),
            Err(GlueError::ClassOutOfRange {
                id: 2,
                num_labels: 2,
                ..
            })
        ));
        assert!(matches!(
            compute_metrics(Task::Rte, Split::Dev, &Predictions::Class(vec![0]), &labels),
            Err(GlueError::LengthMismatch {
                left: 1,
                right: 4,
                ..
            })
        ));
        assert!(matches!(
            compute_metrics(Task::Cola, Split::Dev, &Predictions::Class(vec![]), &[]),
            Err(GlueError::TooFewExamples { metric: "mcc", .. })
        ));
        let scores = [Label::Score(1.0), Label::Score(2.0), Label::Score(4.0)];
        let m = compute_metrics(
            Task::Stsb,
            Split::Dev,
            &Predictions::Score(vec![1.0, 3.0, 2.0]),
            &scores,
        )
        .unwrap();
        assert_eq!(
            m.keys().collect::<Vec<_>>(),
            ["corr", "pearson", "spearmanr"]
        );
        assert!((m["spearmanr"] - 0.5).abs() < 1e-15);
        assert!((m["corr"] - (m["pearson"] + m["spearmanr"]) / 2.0).abs() < 1e-15);
    }

    #[test]
    fn keys_match_task_metrics() {
        for task in Task::ALL {
            for split in task.splits() {
                let (preds, labels) = if task.is_regression() {
                    (
                        Predictions::Score(vec![0.0, 1.0]),
                        vec![Label::Score(0.0), Label::Score(1.0)],
                    )
                } else {
                    (
                        Predictions::Class(vec![0, 1]),
                        vec![Label::Class(0), Label::Class(1)],
                    )
                };
                let got: Vec<String> = compute_metrics(task, *split, &preds, &labels)
                    .unwrap()
                    .into_keys()
                    .collect();
                let mut want: Vec<String> = task
                    .metrics()
                    .iter()
                    .map(|m| task.metric_key(*split, *m))
                    .collect();
                want.sort();
                assert_eq!(got, want, "{task} {split}");
            }
        }
    }
}
