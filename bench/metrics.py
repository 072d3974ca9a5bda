"""Benchmark ood_repro.metrics.evaluate against scikit-learn on large score arrays.

Run: .venv/bin/python bench/metrics.py [--n 1000000] [--repeats 3] [--seed 0]

Generates n ID and n OOD scores (seeded, rounded to 5 decimals, so that about a third of them share their value with another), then times, best of
`repeats`, the scikit-learn calls that produce the same numbers (roc_auc_score, roc_curve, and average_precision_score
for AUPR-In and AUPR-Out) against `evaluate` under each convention, which sorts once. Every value of `evaluate` is
checked against scikit-learn; the script exits with status 1 if any disagrees. Prints the time ratio ours / sklearn
(target: <= 0.5).
"""
import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

# Benchmark the checkout this script lives in, not whichever ood_repro happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from timing import best_time  # noqa: E402
from ood_repro.metrics import CONVENTIONS, evaluate  # noqa: E402

TOLERANCE = 1e-12


def sklearn_metrics(scores, is_id):
    "AUROC, the ID-positive ROC curve and both average precisions, as the MCM / TagOOD code computes them."
    return {"auroc": roc_auc_score(is_id, scores), "roc": roc_curve(is_id, scores),
            "aupr_in": average_precision_score(is_id, scores), "aupr_out": average_precision_score(1 - is_id, -scores)}


def reference_fpr(scores, is_id, convention):
    "FPR95 of `convention` computed on scikit-learn's roc_curve (not timed)."
    if convention == "openood":
        fpr, tpr, _ = roc_curve(1 - is_id, -scores)
        return fpr[np.argmax(tpr >= 0.95)]
    if convention == "tagood":
        fpr, tpr, _ = roc_curve(is_id, scores)
        upper = np.argmax(tpr >= 0.95)
        return ((0.95 - tpr[upper - 1]) * fpr[upper] + (tpr[upper] - 0.95) * fpr[upper - 1]) / (tpr[upper] - tpr[upper - 1])
    # mcm: every distinct point (drop_intermediate=False, skip the prepended origin), cut at full recall,
    # nearest recall with ties to the lowest threshold
    fpr, tpr, _ = roc_curve(is_id, scores, drop_intermediate=False)
    fpr, tpr = fpr[1:], tpr[1:]
    full = int(np.argmax(tpr == 1.0))
    distance = np.abs(tpr[:full + 1] - 0.95)
    return fpr[full - int(np.argmin(distance[::-1]))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="number of ID and of OOD scores (each)")
    parser.add_argument("--repeats", type=int, default=3, help="timing repeats; the best is kept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.n < 1 or args.repeats < 1:
        parser.error("--n and --repeats must be positive")

    rng = np.random.default_rng(args.seed)
    id_scores = np.round(rng.normal(1.0, 1.0, args.n), 5)
    ood_scores = np.round(rng.normal(0.0, 1.2, args.n), 5)
    scores = np.concatenate([id_scores, ood_scores])
    is_id = np.concatenate([np.ones(args.n), np.zeros(args.n)])
    print(f"{args.n:,} ID + {args.n:,} OOD scores, {np.unique(scores).size:,} distinct values; best of {args.repeats}")

    sklearn_time, reference = best_time(lambda: sklearn_metrics(scores, is_id), args.repeats)
    precision_in, recall_in, _ = precision_recall_curve(is_id, scores)
    precision_out, recall_out, _ = precision_recall_curve(1 - is_id, -scores)
    trapezoids = {"aupr_in": auc(recall_in, precision_in), "aupr_out": auc(recall_out, precision_out)}
    print(f"scikit-learn (roc_auc_score + roc_curve + 2 x average_precision_score): {sklearn_time:.3f} s")

    all_agree = True
    for convention in CONVENTIONS:
        ours_time, ours = best_time(lambda: evaluate(id_scores, ood_scores, convention), args.repeats)
        expected = {"auroc": reference["auroc"], "fpr95": reference_fpr(scores, is_id, convention)}
        expected.update(trapezoids if convention == "openood" else
                        {"aupr_in": reference["aupr_in"], "aupr_out": reference["aupr_out"]})
        differences = {key: abs(ours[key] - expected[key]) for key in expected}
        agree = max(differences.values()) <= TOLERANCE
        all_agree &= agree
        values = ", ".join(f"{key} {ours[key]:.6f}" for key in ours)
        print(f"ours, convention={convention!r:9}: {ours_time:.3f} s, ratio ours/sklearn = {ours_time / sklearn_time:.3f}"
              f"  [{values}; max |diff| {max(differences.values()):.1e} {'ok' if agree else 'MISMATCH'}]")
    if not all_agree:
        print("Some values disagree with scikit-learn beyond", TOLERANCE)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
