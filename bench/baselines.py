"""Time ood_repro's baseline scorers against pytorch-ood on a synthetic feature cache at the papers' sizes.

Run: .venv/bin/python bench/baselines.py [--scale 1.0] [--bank 100000] [--methods knn vim ...] [--repeats 3] [--seed 0]

The synthetic cache has the sizes of the papers' ImageNet tables: 50,000 ID validation and 45,640 OOD samples
(iNaturalist, SUN, Places and Textures together) of 1536-d Swin-L features with 1000-class logits, plus an
ID training bank (default 100,000 samples) for the methods that fit statistics (KNN, ViM, MDS, RMDS, DICE,
ReAct), and CLIP ViT-B/16-sized image and text embeddings (512-d) for MCM. All arrays are float32, as in the
cache; `--scale 0.1` shrinks every sample count tenfold for a quick run.

For every method that pytorch-ood 0.4.0 also implements, the script fits both implementations on the same bank,
scores the same ID and OOD arrays, checks that the scores agree up to the known sign or scale (pytorch-ood
returns outlier scores; see the notebooks for each method's relation), and prints ours / pytorch-ood's scoring
time. Where pytorch-ood's scoring would take many minutes at full size (KNN through scikit-learn, Mahalanobis and
RMD with a Python loop over the 1000 classes, DICE through a samples × classes × features tensor), it scores
a few hundred to a few thousand samples (half ID, half OOD) and its time is extrapolated linearly to the full
count: the work per scored sample is constant for every method here. Methods of ood_repro that are not there yet are
skipped with a note. The last lines give our total time to fit and to score the whole table.

KNN also runs the search it replaced, one faiss IndexFlatIP over the whole normalised bank (a copy of the bank in
memory), on the same arrays: a second line gives both fit and scoring times, ours / the whole index's scoring
time, and the largest difference of the scores (at most KNN_TOLERANCE: the same float32 search, blocked
differently). `--scale 0.1 --methods knn` runs in well under a minute on two cores.
Exits with status 1 if any method's scores disagree with pytorch-ood's or KNN's with the whole index's.
"""
import argparse
import importlib
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import faiss
import numpy as np
import torch

# Benchmark the checkout this script lives in, not whichever ood_repro happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from timing import best_time  # noqa: E402
from ood_repro.scorer import Scorer  # noqa: E402
from ood_repro.distance_baselines import CHUNK_ROWS, unit_rows  # noqa: E402

ID_SAMPLES, OOD_SAMPLES, FEATURES, CLASSES, CLIP_DIMENSIONS = 50_000, 45_640, 1536, 1000, 512
TOLERANCE = 1e-3  # largest |ours − expected| allowed, relative to the range of our scores (pytorch-ood works in float32)
KNN_TOLERANCE = 1e-5  # largest |ours − whole index's| KNN score: both are the same float32 search


def ours(module: str, class_name: str):
    "The scorer class `class_name` of ood_repro.`module`, or None if it does not exist yet."
    try:
        return getattr(importlib.import_module(f"ood_repro.{module}"), class_name, None)
    except ImportError:
        return None


@dataclass
class Case:
    "One method: how to build and run ours and pytorch-ood's, and how pytorch-ood's scores map onto ours."
    name: str
    scorer_class: type | None  # ours; None: not implemented yet
    make_ours: Callable  # (scorer_class, data) -> Scorer
    inputs: str  # "logits", "features", "features+logits" or "clip"
    to_ours: Callable  # pytorch-ood scores, data -> the scores ours must equal
    reference_samples: int | None = None  # pytorch-ood scores at most this many samples; its time is extrapolated


def synthetic_cache(scale: float, bank: int, seed: int) -> dict:
    "Class-structured float32 features with a decaying spectrum (distinct eigenvalues), their logits, CLIP embeddings."
    rng = np.random.default_rng(seed)
    counts = {"train": round(bank * scale), "id": round(ID_SAMPLES * scale), "ood": round(OOD_SAMPLES * scale)}
    spectrum = np.exp(-2.5 * np.arange(FEATURES) / FEATURES).astype(np.float32)
    class_means = rng.standard_normal((CLASSES, FEATURES), dtype=np.float32) * spectrum * 0.6
    # logits about as peaked as an ImageNet classifier's (ID max logit about 12)
    weight = 1.2 * class_means / np.linalg.norm(class_means, axis=1, keepdims=True)
    bias = 0.1 * rng.standard_normal(CLASSES, dtype=np.float32)
    text = rng.standard_normal((CLASSES, CLIP_DIMENSIONS), dtype=np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    data = {"head": (weight, bias), "text": text, "counts": counts}
    for split, count in counts.items():
        noise = rng.standard_normal((count, FEATURES), dtype=np.float32) * spectrum
        if split == "ood":
            features = 1.2 * noise + 0.3 * spectrum * rng.standard_normal(FEATURES, dtype=np.float32)
            images = rng.standard_normal((count, CLIP_DIMENSIONS), dtype=np.float32)
        else:
            labels = rng.integers(0, CLASSES, count)
            features = class_means[labels] + noise
            images = 3.0 * text[labels] + rng.standard_normal((count, CLIP_DIMENSIONS), dtype=np.float32) / 8
            data[f"{split}_labels"] = labels
        features += 0.3
        data[f"{split}_features"] = features
        data[f"{split}_logits"] = features @ weight.T + bias
        data[f"{split}_images"] = images / np.linalg.norm(images, axis=1, keepdims=True)
    return data


def our_arrays(data: dict, split: str, inputs: str) -> dict:
    "The keyword arguments of our `score` (and `fit`) for a split."
    if inputs == "clip":
        return {"features": data[f"{split}_images"]}
    arrays = {}
    if "features" in inputs:
        arrays["features"] = data[f"{split}_features"]
    if "logits" in inputs:
        arrays["logits"] = data[f"{split}_logits"]
    return arrays


def reference_array(data: dict, split: str, inputs: str, rows=slice(None)) -> torch.Tensor:
    "The one array pytorch-ood's detector reads for a split (its feature methods recompute logits themselves)."
    key = {"logits": "logits", "clip": "images"}.get(inputs, "features")
    return torch.from_numpy(data[f"{split}_{key}"][rows])


def whole_index_knn(train: np.ndarray, k: int) -> Callable:
    "KNN's search before it streamed its bank: a faiss IndexFlatIP over the whole normalised bank; returns score(features)."
    index = faiss.IndexFlatIP(train.shape[1])
    index.add(np.ascontiguousarray(unit_rows(torch.from_numpy(train)).numpy()))

    def score(features: np.ndarray) -> np.ndarray:
        queries = np.ascontiguousarray(unit_rows(torch.from_numpy(features)).numpy())
        kth_similarity = np.concatenate([index.search(queries[start:start + CHUNK_ROWS], k)[0][:, -1]
                                         for start in range(0, len(queries), CHUNK_ROWS)])
        return -np.sqrt(np.maximum(2.0 - 2.0 * kth_similarity.astype(np.float64), 0.0))
    return score


def compare_whole_index_knn(scorer: Scorer, scores: dict, data: dict, fit_ours: float, score_ours: float, repeats: int) -> bool:
    "Print our KNN's times against the whole-index search on the same arrays; True if the scores agree."
    fit_whole, score = best_time(lambda: whole_index_knn(data["train_features"], scorer.k))
    score_whole, whole_scores = best_time(lambda: {split: score(data[f"{split}_features"]) for split in ("id", "ood")}, repeats)
    deviation = max(np.abs(scores[split] - whole_scores[split]).max() for split in ("id", "ood"))
    agree = deviation <= KNN_TOLERANCE
    print(f"{'':9} streamed bank vs one faiss IndexFlatIP over the whole bank: fit {fit_ours:.2f}s vs {fit_whole:.2f}s, "
          f"score {score_ours:.2f}s vs {score_whole:.2f}s, ratio {score_ours / score_whole:.3f}; "
          f"max |diff| {deviation:.1e} {'ok' if agree else 'MISMATCH'}")
    return agree


# ---- pytorch-ood detectors, each as (fit on the train split or None, score one array) ----
def reference_cases() -> dict:
    "pytorch-ood's detectors by our method name; a missing package stops the script with what to install."
    try:
        from pytorch_ood import detector
    except ImportError as error:
        raise SystemExit(f"pytorch-ood is needed for this benchmark ({error}); install the dev extra: "
                         "pip install -e '.[dev]'") from error

    def head_module(data):
        weight, bias = (torch.from_numpy(array) for array in data["head"])
        return lambda maps: maps.flatten(1) @ weight.T + bias

    def as_maps(array):
        return array.reshape(array.shape[0], -1, 1, 1)

    def labels(data):
        return torch.from_numpy(data["train_labels"])

    def logits_only(detector_object):
        return lambda data: (None, detector_object.predict_logits)

    def feature_detector(build):
        def make(data):
            reference = build(data)
            fit = lambda: reference.fit_features(torch.from_numpy(data["train_features"]), labels(data))  # noqa: E731
            return fit, lambda array: reference.predict_features(array)
        return make

    def maps_detector(build, fit_maps=False):
        def make(data):
            reference = build(data)
            fit = None
            if fit_maps:
                fit = lambda: reference.fit_feature_maps(as_maps(torch.from_numpy(data["train_features"])), labels(data))  # noqa: E731
            return fit, lambda array: reference.predict_feature_maps(as_maps(array))
        return make

    def batched(score, rows=64):
        "pytorch-ood's DICE builds a (samples × classes × features) tensor: score a few rows at a time."
        return lambda array: torch.cat([score(array[start:start + rows]) for start in range(0, len(array), rows)])

    def dice(data):
        weight, bias = (torch.from_numpy(array) for array in data["head"])
        reference = detector.DICE(None, w=weight, b=bias, p=0.9)
        fit = lambda: reference.fit_features(torch.from_numpy(data["train_features"]), labels(data))  # noqa: E731
        return fit, batched(reference.predict_features)

    def gradnorm(data):
        weight, bias = (torch.from_numpy(array) for array in data["head"])
        layer = torch.nn.Linear(FEATURES, CLASSES)
        with torch.no_grad():
            layer.weight.copy_(weight)
            layer.bias.copy_(bias)
        # only the weight's gradient, as GradNorm's paper (and our closed form) uses the last layer's weight
        reference = detector.GradNorm(layer, param_filter=lambda name: name == "weight", micro_batch_size=16)
        return None, reference.predict

    return {
        "msp": logits_only(detector.MaxSoftmax(None)),
        "maxlogit": logits_only(detector.MaxLogit(None)),
        "energy": logits_only(detector.EnergyBased(None)),
        "gen": logits_only(detector.GEN(None, gamma=0.1, M=100)),
        "gradnorm": gradnorm,
        "react": maps_detector(lambda data: detector.ReAct(None, head_module(data), percentile=0.9), fit_maps=True),
        "ash_p": maps_detector(lambda data: detector.ASH(None, head_module(data), variant="ash-p", percentile=0.6)),
        "ash_b": maps_detector(lambda data: detector.ASH(None, head_module(data), variant="ash-b", percentile=0.65)),
        "ash_s": maps_detector(lambda data: detector.ASH(None, head_module(data), variant="ash-s", percentile=0.9)),
        "scale": maps_detector(lambda data: detector.SCALE(None, head_module(data), percentile=0.85)),
        "dice": dice,
        "knn": feature_detector(lambda data: detector.KNN(None, k=min(1000, data["counts"]["train"]), normalize=True)),
        "vim": feature_detector(lambda data: detector.ViM(None, d=512, w=torch.from_numpy(data["head"][0]),
                                                           b=torch.from_numpy(data["head"][1]))),
        "mds": feature_detector(lambda data: detector.Mahalanobis(None)),
        "rmds": feature_detector(lambda data: detector.RMD(None)),
        "mcm": lambda data: (None, detector.MCM(None, torch.from_numpy(data["text"]), temperature=1.0).predict_features),
    }


def cases() -> list:
    "Every method pytorch-ood also implements, with our hyperparameters matched to the reference's."
    negated = lambda reference, data: -reference  # noqa: E731  pytorch-ood returns outlier scores
    head = lambda scorer_class, data: scorer_class(head=data["head"])  # noqa: E731
    plain = lambda scorer_class, data: scorer_class()  # noqa: E731
    n_train = lambda data: data["counts"]["train"]  # noqa: E731
    return [
        Case("msp", ours("logit_baselines", "MSP"), plain, "logits", negated),
        Case("maxlogit", ours("logit_baselines", "MaxLogit"), plain, "logits", negated),
        Case("energy", ours("logit_baselines", "Energy"), plain, "logits", negated),
        # pytorch-ood averages over the top M instead of summing: a factor M (= 100)
        Case("gen", ours("logit_baselines", "GEN"), lambda cls, data: cls(gamma=0.1, m=100), "logits",
             lambda reference, data: -100 * reference),
        Case("gradnorm", ours("logit_baselines", "GradNorm"), head, "features", negated, reference_samples=400),
        Case("react", ours("activation_baselines", "ReAct"), lambda cls, data: cls(head=data["head"], percentile=90),
             "features", negated),
        Case("ash_p", ours("activation_baselines", "ASHP"), lambda cls, data: cls(head=data["head"], percentile=60),
             "features", negated),
        Case("ash_b", ours("activation_baselines", "ASHB"), lambda cls, data: cls(head=data["head"], percentile=65),
             "features", negated),
        Case("ash_s", ours("activation_baselines", "ASHS"), lambda cls, data: cls(head=data["head"], percentile=90),
             "features", negated),
        Case("scale", ours("activation_baselines", "SCALE"), lambda cls, data: cls(head=data["head"], percentile=85),
             "features", negated),
        Case("dice", ours("activation_baselines", "DICE"), lambda cls, data: cls(head=data["head"], sparsity=0.9),
             "features", negated, reference_samples=2000),
        Case("knn", ours("distance_baselines", "KNN"), lambda cls, data: cls(k=min(1000, n_train(data))), "features",
             negated, reference_samples=2000),
        Case("vim", ours("distance_baselines", "ViM"), lambda cls, data: cls(head=data["head"], dim=512),
             "features+logits", negated),
        # pytorch-ood 0.4.0: half the distance, covariance = the unnormalised scatter matrix (N × ours)
        Case("mds", ours("distance_baselines", "Mahalanobis"), plain, "features",
             lambda reference, data: -2 * n_train(data) * reference, reference_samples=1000),
        # pytorch-ood 0.4.0: min_c(d_c − d_0) with both covariances unnormalised (N × ours)
        Case("rmds", ours("distance_baselines", "RelativeMahalanobis"), plain, "features",
             lambda reference, data: -n_train(data) * reference, reference_samples=1000),
        Case("mcm", ours("clip_baselines", "MCM"), lambda cls, data: cls(text_features=data["text"]), "clip", negated),
    ]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the papers' sample counts (e.g. 0.1)")
    parser.add_argument("--bank", type=int, default=100_000, help="ID training samples before --scale")
    parser.add_argument("--methods", nargs="*", help="only these methods (default: all)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="scoring repeats, the best kept (pytorch-ood's extrapolated methods run once)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 1 or args.bank < 2 or args.repeats < 1:
        parser.error("--scale must be in (0, 1], --bank at least 2 and --repeats at least 1")
    references = reference_cases()

    build_time, data = best_time(lambda: synthetic_cache(args.scale, args.bank, args.seed))
    counts = data["counts"]
    n_scored = counts["id"] + counts["ood"]
    print(f"synthetic cache: {counts['train']:,} train, {counts['id']:,} ID, {counts['ood']:,} OOD samples; "
          f"{FEATURES}-d features, {CLASSES} classes, {CLIP_DIMENSIONS}-d CLIP embeddings (built in {build_time:.1f} s); "
          f"torch threads {torch.get_num_threads()}")
    print(f"{'method':9} {'fit ours':>9} {'fit ref':>9} {'score ours':>11} {'score ref':>11} {'ratio':>7}  agreement")

    total_fit = total_score = 0.0
    all_agree = True
    for case in cases():
        if args.methods and case.name not in args.methods:
            continue
        if case.scorer_class is None:
            print(f"{case.name:9} skipped: not in ood_repro yet")
            continue
        scorer: Scorer = case.make_ours(case.scorer_class, data)
        fit_ours = 0.0
        if scorer.requires_fit:
            fit_ours, _ = best_time(lambda: scorer.fit(**our_arrays(data, "train", case.inputs), labels=data["train_labels"]))
        score_ours, scores = best_time(lambda: {split: scorer.score(**our_arrays(data, split, case.inputs)) for split in ("id", "ood")},
                                   args.repeats)
        total_fit += fit_ours
        total_score += score_ours

        fit_reference, score_reference = references[case.name](data)
        fit_ref = best_time(fit_reference)[0] if fit_reference is not None else 0.0
        if case.reference_samples is not None and case.reference_samples < n_scored:
            rows = {split: slice(0, min(counts[split], case.reference_samples // 2)) for split in ("id", "ood")}
        else:
            rows = {split: slice(None) for split in ("id", "ood")}
        repeats = 1 if rows["id"] != slice(None) else args.repeats
        with torch.no_grad():  # pytorch-ood's GradNorm enables gradients itself
            score_ref, reference_scores = best_time(lambda: {split: score_reference(reference_array(data, split, case.inputs, rows[split]))
                                                         for split in ("id", "ood")}, repeats)
        n_reference = sum(len(reference_scores[split]) for split in ("id", "ood"))
        score_ref *= n_scored / n_reference

        ours_subset = np.concatenate([scores[split][rows[split]] for split in ("id", "ood")])
        expected = np.concatenate([case.to_ours(reference_scores[split].detach().double().numpy(), data) for split in ("id", "ood")])
        deviation = np.abs(ours_subset - expected).max() / max(np.ptp(ours_subset), 1e-300)
        agree = deviation <= TOLERANCE
        all_agree &= agree
        extrapolated = f" (pytorch-ood on {n_reference:,} samples, extrapolated)" if n_reference < n_scored else ""
        print(f"{case.name:9} {fit_ours:8.2f}s {fit_ref:8.2f}s {score_ours:10.2f}s {score_ref:10.2f}s {score_ours / score_ref:7.3f}  "
              f"max |diff| / range {deviation:.1e} {'ok' if agree else 'MISMATCH'}{extrapolated}")
        if case.name == "knn":
            all_agree &= compare_whole_index_knn(scorer, scores, data, fit_ours, score_ours, args.repeats)

    print(f"ours, whole table ({n_scored:,} scored samples per method): fit {total_fit:.1f} s, score {total_score:.1f} s")
    if not all_agree:
        print(f"Some methods disagree with pytorch-ood beyond the tolerance {TOLERANCE}, or KNN with the whole index beyond {KNN_TOLERANCE}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
