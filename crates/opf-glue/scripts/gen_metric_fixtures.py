"""Generate sklearn/scipy reference values for opf-glue's metric tests.

Run from the workspace root:
    .venv/bin/python crates/opf-glue/scripts/gen_metric_fixtures.py

Writes crates/opf-glue/tests/fixtures/metrics.json. Classification cases store integer
labels/predictions with sklearn's accuracy_score, f1_score (binary, pos_label=1; only for
binary cases) and matthews_corrcoef. Regression cases store float32-representable values
(cast to float64 before calling scipy, as opf-glue computes in f64) with scipy's pearsonr and
spearmanr statistics; NaN (constant input) is stored as null.
"""

import json
import math
import pathlib
import warnings

import numpy as np
import scipy
import sklearn
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "metrics.json"
rng = np.random.default_rng(20230709)


def nan_to_none(x):
    x = float(x)
    return None if math.isnan(x) else x


def class_case(name, labels, preds, num_classes):
    labels = [int(v) for v in labels]
    preds = [int(v) for v in preds]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        case = {
            "name": name,
            "labels": labels,
            "preds": preds,
            "acc": float(accuracy_score(labels, preds)),
            "mcc": float(matthews_corrcoef(labels, preds)),
            "f1": float(f1_score(labels, preds)) if num_classes == 2 else None,
        }
    return case


def score_case(name, labels, preds):
    labels = np.asarray(labels, dtype=np.float32).astype(np.float64)
    preds = np.asarray(preds, dtype=np.float32).astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = pearsonr(preds, labels).statistic
        s = spearmanr(preds, labels).statistic
    return {
        "name": name,
        "labels": [float(v) for v in labels],
        "preds": [float(v) for v in preds],
        "pearson": nan_to_none(p),
        "spearmanr": nan_to_none(s),
    }


classification = []
for n in (10, 57, 300):
    y = rng.integers(0, 2, n)
    flip = rng.random(n) < 0.25
    classification.append(class_case(f"binary_random_{n}", y, np.where(flip, 1 - y, y), 2))
y = rng.integers(0, 3, 500)
p = np.where(rng.random(500) < 0.4, rng.integers(0, 3, 500), y)
classification.append(class_case("three_class_random_500", y, p, 3))
classification += [
    class_case("all_one_class_labels_and_preds", [1] * 8, [1] * 8, 2),
    class_case("all_zero_labels_and_preds", [0] * 6, [0] * 6, 2),
    class_case("constant_preds", [0, 1, 1, 0, 1, 0, 0], [1] * 7, 2),
    class_case("constant_labels_mixed_preds", [0] * 5, [0, 1, 0, 1, 1], 2),
    class_case("perfect", [0, 1, 1, 0, 1], [0, 1, 1, 0, 1], 2),
    class_case("inverted", [0, 1, 1, 0, 1], [1, 0, 0, 1, 0], 2),
    class_case("no_true_positives", [1, 1, 0, 0], [0, 0, 1, 1], 2),
    class_case("single_example", [1], [0], 2),
    class_case("three_class_missing_pred_class", [0, 1, 2, 2, 1, 0], [0, 0, 2, 2, 0, 0], 3),
]

regression = []
for n in (5, 100, 400):
    labels = rng.uniform(0.0, 5.0, n)
    preds = labels + rng.normal(0.0, 0.8, n)
    regression.append(score_case(f"random_{n}", labels, preds))
labels = np.round(rng.uniform(0.0, 5.0, 200) * 5) / 5  # many ties (STS-B style 0.2 steps)
preds = np.round((labels + rng.normal(0.0, 1.0, 200)) * 2) / 2  # ties in predictions too
regression.append(score_case("ties_both", labels, preds))
regression += [
    score_case("two_points", [1.0, 2.0], [0.5, 0.25]),
    score_case("perfect_monotone_nonlinear", [0.0, 1.0, 2.0, 3.0, 4.0], [0.0, 1.0, 8.0, 27.0, 64.0]),
    score_case("constant_preds", [0.0, 1.0, 2.0, 3.0], [2.5, 2.5, 2.5, 2.5]),
    score_case("constant_labels", [3.0, 3.0, 3.0], [0.1, 0.2, 0.3]),
    score_case("all_tied_but_one", [1.0, 1.0, 1.0, 4.0], [2.0, 2.0, 3.0, 2.0]),
    score_case("anticorrelated", [5.0, 4.0, 3.0, 2.0, 1.0], [0.1, 0.4, 0.35, 0.8, 0.9]),
]

OUT.parent.mkdir(parents=True, exist_ok=True)
OUT.write_text(
    json.dumps(
        {
            "generator": "crates/opf-glue/scripts/gen_metric_fixtures.py",
            "versions": {
                "numpy": np.__version__,
                "scipy": scipy.__version__,
                "sklearn": sklearn.__version__,
            },
            "classification": classification,
            "regression": regression,
        },
        separators=(",", ":"),
    )
    + "\n"
)
print(f"wrote {OUT} ({len(classification)} classification, {len(regression)} regression cases)")
