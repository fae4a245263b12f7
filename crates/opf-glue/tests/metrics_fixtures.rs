//! Metrics against scikit-learn / SciPy values stored by `scripts/gen_metric_fixtures.py`.

use opf_glue::{
    Label, Predictions, Split, Task, accuracy, compute_metrics, f1_binary, matthews_corrcoef,
    pearson, spearman,
};
use serde::Deserialize;

const TOL: f64 = 1e-12;

#[derive(Deserialize)]
struct Fixture {
    classification: Vec<ClassCase>,
    regression: Vec<ScoreCase>,
}

#[derive(Deserialize)]
struct ClassCase {
    name: String,
    labels: Vec<usize>,
    preds: Vec<usize>,
    acc: f64,
    f1: Option<f64>,
    mcc: f64,
}

#[derive(Deserialize)]
struct ScoreCase {
    name: String,
    labels: Vec<f64>,
    preds: Vec<f64>,
    /// `None` means SciPy returned NaN.
    pearson: Option<f64>,
    spearmanr: Option<f64>,
}

fn fixture() -> Fixture {
    let text = include_str!("fixtures/metrics.json");
    serde_json::from_str(text).expect("metrics.json parses")
}

fn close(name: &str, what: &str, got: f64, want: Option<f64>) {
    match want {
        Some(w) => assert!(
            (got - w).abs() <= TOL,
            "{name} {what}: got {got}, sklearn/scipy {w}"
        ),
        None => assert!(got.is_nan(), "{name} {what}: got {got}, scipy NaN"),
    }
}

/// The fixture stores f32-representable values as f64; narrowing is exact.
fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter()
        .map(|&x| {
            let y = x as f32;
            assert_eq!(f64::from(y), x, "fixture value {x} is not an f32");
            y
        })
        .collect()
}

#[test]
fn classification_metrics_match_sklearn() {
    let fx = fixture();
    assert!(fx.classification.len() >= 10);
    for c in &fx.classification {
        close(
            &c.name,
            "acc",
            accuracy(&c.preds, &c.labels).unwrap(),
            Some(c.acc),
        );
        close(
            &c.name,
            "mcc",
            matthews_corrcoef(&c.preds, &c.labels).unwrap(),
            Some(c.mcc),
        );
        if let Some(f1) = c.f1 {
            close(
                &c.name,
                "f1",
                f1_binary(&c.preds, &c.labels).unwrap(),
                Some(f1),
            );
        }
    }
}

#[test]
fn correlations_match_scipy() {
    let fx = fixture();
    assert!(fx.regression.len() >= 8);
    for c in &fx.regression {
        let (p, l) = (f32s(&c.preds), f32s(&c.labels));
        close(&c.name, "pearson", pearson(&p, &l).unwrap(), c.pearson);
        close(&c.name, "spearmanr", spearman(&p, &l).unwrap(), c.spearmanr);
    }
}

#[test]
fn task_maps_match_fixture_values() {
    let fx = fixture();
    for c in fx.classification.iter().filter(|c| c.f1.is_some()) {
        let labels: Vec<Label> = c.labels.iter().map(|&l| Label::Class(l)).collect();
        let preds = Predictions::Class(c.preds.clone());
        let m = compute_metrics(Task::Mrpc, Split::Dev, &preds, &labels).unwrap();
        let f1 = c.f1.unwrap();
        close(&c.name, "mrpc acc", m["acc"], Some(c.acc));
        close(&c.name, "mrpc f1", m["f1"], Some(f1));
        close(
            &c.name,
            "mrpc acc_and_f1",
            m["acc_and_f1"],
            Some((c.acc + f1) / 2.0),
        );
        let m = compute_metrics(Task::Cola, Split::Dev, &preds, &labels).unwrap();
        close(&c.name, "cola mcc", m["mcc"], Some(c.mcc));
    }
    let three = fx
        .classification
        .iter()
        .find(|c| c.labels.contains(&2))
        .expect("a three-class case");
    let labels: Vec<Label> = three.labels.iter().map(|&l| Label::Class(l)).collect();
    let m = compute_metrics(
        Task::Mnli,
        Split::Dev,
        &Predictions::Class(three.preds.clone()),
        &labels,
    )
    .unwrap();
    close(&three.name, "mnli/acc", m["mnli/acc"], Some(three.acc));
    for c in fx
        .regression
        .iter()
        .filter(|c| c.pearson.is_some() && c.spearmanr.is_some())
    {
        let labels: Vec<Label> = f32s(&c.labels).into_iter().map(Label::Score).collect();
        let preds = Predictions::Score(f32s(&c.preds));
        let m = compute_metrics(Task::Stsb, Split::Dev, &preds, &labels).unwrap();
        let (p, s) = (c.pearson.unwrap(), c.spearmanr.unwrap());
        close(&c.name, "stsb pearson", m["pearson"], Some(p));
        close(&c.name, "stsb spearmanr", m["spearmanr"], Some(s));
        close(&c.name, "stsb corr", m["corr"], Some((p + s) / 2.0));
    }
}
