"""Time tab1_synood's post-hoc rows from a memory-mapped feature cache of the paper profile's shape, and its exact KNN
against a plain blocked matrix-product floor of the same shape (issue 15, part 4).

Run: .venv/bin/python bench/table_from_cache.py [--bank-fraction 0.02] [--query-fraction 1.0] [--k 1000]
     [--check-queries 32] [--repeats 1] [--seed 0] [--dir DIR]

The shape is the one `nbs/tab1_synood.ipynb` scores with `-p profile paper`:
- KNN's k = 1000 (its cell `knn_k = knn_k if knn_k is not None else (1000 if profile == "paper" else 10)`) over the
  whole ID training set (`knn_sample_ratio = 1.0`, the paper's α = 1), i.e. a bank of ImageNet-1k train,
  1,281,167 images (`ood_repro.data.DATASETS["imagenet-train"].count`);
- 768-d float32 features and 1000 logits of the ViT-B/16 classifier (`model = "vit-b16"`, timm
  vit_base_patch16_224: embed_dim 768), ODIN's logits of the perturbed images, and 512-d CLIP ViT-B/16 image
  embeddings for MCM;
- scored sets: ImageNet val (50,000) and the "mos" benchmark's iNaturalist, SUN, Places (10,000 each) and Textures
  (5,640), each scored on its own as `Evaluator.metrics` does (ID once per row, then every OOD set).

The synthetic cache is written as .npy files (class-structured features with a decaying spectrum, logits from a
random head) in a temporary folder (or under --dir) and opened as memory maps, as the feature cache is; they are
read once before timing, so every timing is from the page cache. `--bank-fraction` keeps that fraction of the
training bank and `--query-fraction` of every scored set (1 and 1: the full size, about 10 GB on disk);
at a fraction the measured times are also printed extrapolated linearly to the full size: KNN's search and the
floor grow with bank rows × scored rows, scoring with scored rows, fits with bank rows. Keep --query-fraction at 1
for the KNN / floor ratio: below 1 the sets are scored in fewer blocks of CHUNK_ROWS, so KNN's once-per-block costs
(reading and normalising every bank block again) weigh differently than at full size.

Printed:
(a) every baseline row of tab1_synood except KNN (MSP, ODIN, Energy, GradNorm, ViM, DICE, ReAct from the training
    bank, MCM), with the notebook's default hyperparameters: fit time, and time to score every set and compute its
    metrics; a fit's full-size time is extended from its times on half and all of the bank (a constant plus a
    part linear in the bank's rows);
(b) KNN (ood_repro.distance_baselines.KNN): fit and scoring of all sets;
(c) the floor of (b): the same float32 products queries × bankᵀ over unit rows already in memory, blocked the same
    way (CHUNK_ROWS queries against CHUNK_ROWS bank rows), alone and with the same running top-k;
with the work in GFLOP (2 × scored rows × bank rows × width) and the achieved GFLOP/s, and KNN / floor ratios.

Check: KNN's scores of --check-queries rows (half ID, half OOD) equal an independent float64 numpy search
(np.partition over every similarity) up to KNN_TOLERANCE, and the floor's k-th similarities equal KNN's.
Exits with status 1 if either disagrees; timings are only printed.
"""
import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

# Benchmark the checkout this script lives in, not whichever ood_repro happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from timing import best_time  # noqa: E402
from ood_repro.baselines import make  # noqa: E402
from ood_repro.data import BENCHMARKS, DATASETS  # noqa: E402
from ood_repro.distance_baselines import CHUNK_ROWS, unit_rows  # noqa: E402
from ood_repro.metrics import evaluate  # noqa: E402

TRAIN, ID_TEST, OOD_SETS = "imagenet-train", "imagenet-val", BENCHMARKS["mos"]
FEATURES, CLASSES, CLIP_DIMENSIONS = 768, 1000, 512  # ViT-B/16 classifier's features and classes; CLIP ViT-B/16's embedding
PAPER_K = 1000  # tab1_synood's knn_k in the paper profile
KNN_TOLERANCE = 1e-5  # largest |KNN − float64 search| score: KNN searches in float32 (about 1e-7 relative per product)
WRITE_ROWS = 65_536  # rows generated and written at a time


def split_rows(bank_fraction: float, query_fraction: float, k: int) -> dict:
    "Rows of every split at the given fractions (the bank at least k, every scored set at least one row)."
    rows = {TRAIN: max(k, round(bank_fraction * DATASETS[TRAIN].count))}
    for dataset in (ID_TEST, *OOD_SETS):
        rows[dataset] = max(1, round(query_fraction * DATASETS[dataset].count))
    return rows


def write_cache(folder: Path, rows: dict, seed: int) -> dict:
    """Write each split's arrays as .npy files, WRITE_ROWS rows at a time, and open them as memory maps.
    Returns {"head": (W, b), "text": CLIP text features, split: {array name: memory map}}."""
    rng = np.random.default_rng(seed)
    spectrum = np.exp(-2.5 * np.arange(FEATURES) / FEATURES).astype(np.float32)
    class_means = rng.standard_normal((CLASSES, FEATURES), dtype=np.float32) * spectrum * 0.6
    weight = 1.2 * class_means / np.linalg.norm(class_means, axis=1, keepdims=True)  # ID max logit about 12
    bias = 0.1 * rng.standard_normal(CLASSES, dtype=np.float32)
    text = rng.standard_normal((CLASSES, CLIP_DIMENSIONS), dtype=np.float32)
    text /= np.linalg.norm(text, axis=1, keepdims=True)
    cache = {"head": (weight, bias), "text": text}
    for split, count in rows.items():
        widths = {"features": FEATURES, "logits": CLASSES}
        if split != TRAIN:  # ODIN's perturbed-input logits and CLIP's embeddings are extracted for scored sets only
            widths |= {"odin_logits": CLASSES, "image_features": CLIP_DIMENSIONS}
        arrays = {name: np.lib.format.open_memmap(folder / f"{split}_{name}.npy", mode="w+", dtype=np.float32,
                                                  shape=(count, width)) for name, width in widths.items()}
        labels = np.lib.format.open_memmap(folder / f"{split}_labels.npy", mode="w+", dtype=np.int64, shape=(count,))
        is_ood = split in OOD_SETS
        ood_offset = 0.3 * spectrum * rng.standard_normal(FEATURES, dtype=np.float32)
        for start in range(0, count, WRITE_ROWS):
            n = min(WRITE_ROWS, count - start)
            block_labels = rng.integers(0, CLASSES, n)
            noise = rng.standard_normal((n, FEATURES), dtype=np.float32) * spectrum
            features = (1.2 * noise + ood_offset if is_ood else class_means[block_labels] + noise) + 0.3
            labels[start:start + n] = block_labels
            arrays["features"][start:start + n] = features
            arrays["logits"][start:start + n] = features @ weight.T + bias
            if "odin_logits" in arrays:
                perturbation = 0.05 * rng.standard_normal((n, CLASSES), dtype=np.float32)
                arrays["odin_logits"][start:start + n] = arrays["logits"][start:start + n] + perturbation
                images = (rng.standard_normal((n, CLIP_DIMENSIONS), dtype=np.float32) if is_ood else
                          3.0 * text[block_labels] + rng.standard_normal((n, CLIP_DIMENSIONS), dtype=np.float32) / 8)
                arrays["image_features"][start:start + n] = images / np.linalg.norm(images, axis=1, keepdims=True)
        for array in (*arrays.values(), labels):
            array.flush()
        cache[split] = {name: np.load(folder / f"{split}_{name}.npy", mmap_mode="r") for name in (*widths, "labels")}
    return cache


def warm_page_cache(cache: dict, rows: dict) -> None:
    "Read every array once, so that the timings below all start from the page cache."
    for split in rows:
        for array in cache[split].values():
            for start in range(0, array.shape[0], WRITE_ROWS):
                np.asarray(array[start:start + WRITE_ROWS]).sum()


def table_rows(cache: dict) -> list:
    "(row name, scorer, {score argument: cache array}) of tab1_synood's baseline rows but KNN, with its defaults."
    head, plain = cache["head"], {"features": "features", "logits": "logits"}
    return [
        ("MSP", make("msp"), plain),
        ("ODIN", make("odin", temperature=1000.0, epsilon=0.0014), {"logits": "odin_logits"}),
        ("Energy", make("energy", temperature=1.0), plain),
        ("GradNorm", make("gradnorm", head=head, temperature=1.0), plain),
        ("ViM", make("vim", head=head, dim=None), plain),
        ("DICE", make("dice", head=head, sparsity=0.9), plain),
        ("ReAct", make("react", head=head, percentile=90.0, fit_split="train"), plain),
        ("MCM", make("mcm", text_features=cache["text"], temperature=1.0), {"features": "image_features"}),
    ]


def run_row(scorer, inputs: dict, cache: dict, repeats: int) -> tuple:
    """Fit on the bank (if the method needs it) and score ID then each OOD set, as Evaluator.metrics does. Returns the
    fit times on the first half of the bank and on all of it (0 for methods without a fit), and the scoring time."""
    def fit_seconds(rows: int | None) -> float:
        arrays = {argument: cache[TRAIN][name][:rows] for argument, name in inputs.items()}
        return best_time(lambda: scorer.fit(**arrays, labels=cache[TRAIN]["labels"][:rows]), repeats)[0]
    half_fit = whole_fit = 0.0
    if scorer.requires_fit:
        half_fit, whole_fit = fit_seconds(cache[TRAIN]["labels"].shape[0] // 2), fit_seconds(None)

    def score_all():
        scores = {dataset: scorer.score(**{argument: cache[dataset][name] for argument, name in inputs.items()})
                  for dataset in (ID_TEST, *OOD_SETS)}
        return {dataset: evaluate(scores[ID_TEST], scores[dataset], convention="mcm") for dataset in OOD_SETS}
    score_seconds, _ = best_time(score_all, repeats)
    return half_fit, whole_fit, score_seconds


def floor_search(queries: dict, bank: torch.Tensor, k: int | None) -> dict:
    """The products queries × bankᵀ of unit rows already in memory, CHUNK_ROWS × CHUNK_ROWS at a time as KNN blocks
    them; with k, also KNN's running top-k, returning each query's k-th similarity (without k, the largest)."""
    result = {}
    for dataset, matrix in queries.items():
        kth = torch.empty(matrix.shape[0])
        for start in range(0, matrix.shape[0], CHUNK_ROWS):
            chunk = matrix[start:start + CHUNK_ROWS]
            if k is None:
                best = torch.full((chunk.shape[0],), -torch.inf)
                for block_start in range(0, bank.shape[0], CHUNK_ROWS):
                    best = torch.maximum(best, (chunk @ bank[block_start:block_start + CHUNK_ROWS].T).amax(dim=1))
                kth[start:start + chunk.shape[0]] = best
                continue
            nearest = torch.full((chunk.shape[0], k), -torch.inf)
            for block_start in range(0, bank.shape[0], CHUNK_ROWS):
                candidates = torch.cat([nearest, chunk @ bank[block_start:block_start + CHUNK_ROWS].T], dim=1)
                nearest = torch.topk(candidates, k, dim=1, sorted=False).values
            kth[start:start + chunk.shape[0]] = nearest.min(dim=1).values
        result[dataset] = kth
    return result


def numpy_knn_scores(queries: np.ndarray, bank: np.ndarray, k: int) -> np.ndarray:
    "Exact KNN scores in float64 numpy: every similarity to the unit bank, the k-th largest by np.partition."
    unit_queries = queries.astype(np.float64)
    unit_queries /= np.linalg.norm(unit_queries, axis=1, keepdims=True)
    similarities = np.empty((len(queries), bank.shape[0]))
    for start in range(0, bank.shape[0], WRITE_ROWS):
        block = np.asarray(bank[start:start + WRITE_ROWS], dtype=np.float64)
        similarities[:, start:start + len(block)] = unit_queries @ (block / np.linalg.norm(block, axis=1, keepdims=True)).T
    kth = -np.partition(-similarities, k - 1, axis=1)[:, k - 1]
    return -np.sqrt(np.maximum(2.0 - 2.0 * kth, 0.0))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bank-fraction", type=float, default=0.02,
                        help="fraction of ImageNet train's 1,281,167 rows in the KNN bank and fits (1: full size)")
    parser.add_argument("--query-fraction", type=float, default=1.0, help="fraction of every scored set's rows (1: full size)")
    parser.add_argument("--k", type=int, default=PAPER_K, help=f"KNN's k (the paper profile's: {PAPER_K})")
    parser.add_argument("--check-queries", type=int, default=32, help="rows checked against numpy, half ID, half OOD")
    parser.add_argument("--repeats", type=int, default=1, help="repeats of every timing, the best kept")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, help="folder for the synthetic cache (default: a temporary folder, removed)")
    args = parser.parse_args(argv)
    if not (0 < args.bank_fraction <= 1 and 0 < args.query_fraction <= 1):
        parser.error("--bank-fraction and --query-fraction must be in (0, 1]")
    if args.k < 1 or args.check_queries < 2 or args.repeats < 1:
        parser.error("--k must be at least 1, --check-queries at least 2 and --repeats at least 1")

    rows = split_rows(args.bank_fraction, args.query_fraction, args.k)
    full_rows = split_rows(1.0, 1.0, args.k)
    n_bank, n_scored = rows[TRAIN], sum(rows[dataset] for dataset in (ID_TEST, *OOD_SETS))
    full_scored = sum(full_rows[dataset] for dataset in (ID_TEST, *OOD_SETS))
    bank_scale, query_scale = full_rows[TRAIN] / n_bank, full_scored / n_scored
    folder = Path(tempfile.mkdtemp(prefix="table_from_cache_", dir=args.dir))
    try:
        write_seconds, cache = best_time(lambda: write_cache(folder, rows, args.seed))
        warm_page_cache(cache, rows)
        size_gb = sum(path.stat().st_size for path in folder.iterdir()) / 1e9
        print(f"synthetic cache: bank {n_bank:,} of {full_rows[TRAIN]:,} ImageNet train rows (fraction {n_bank / full_rows[TRAIN]:.4f}), "
              f"{n_scored:,} of {full_scored:,} scored rows ({', '.join(f'{d} {rows[d]:,}' for d in (ID_TEST, *OOD_SETS))}); "
              f"{FEATURES}-d features, {CLASSES} classes, {CLIP_DIMENSIONS}-d CLIP; {size_gb:.2f} GB written in {write_seconds:.1f} s, "
              f"memory-mapped, page cache warm; KNN k = {args.k}; torch threads {torch.get_num_threads()}")
        scale_note = "" if bank_scale == query_scale == 1 else ", extrapolated to full size"

        print(f"(a) tab1_synood's baseline rows without KNN{scale_note}: fit on the bank, score every set and "
              "compute its metrics (best of --repeats)")
        print(f"{'row':9} {'fit':>8} {'score':>8} {'full fit':>9} {'full score':>10}")
        total_fit = total_score = full_fit = full_score = 0.0
        for name, scorer, inputs in table_rows(cache):
            half_fit, fit_seconds, score_seconds = run_row(scorer, inputs, cache, args.repeats)
            # a fit's time is a constant (ViM's least squares and eigendecomposition) plus a part linear in the bank's
            # rows: the line through the fits on half and all of the bank, extended to the full bank
            per_row = max(fit_seconds - half_fit, 0.0) / (n_bank - n_bank // 2)
            row_full_fit = fit_seconds + per_row * (full_rows[TRAIN] - n_bank)
            row_full_score = score_seconds * query_scale  # every scored row is read once
            total_fit, total_score = total_fit + fit_seconds, total_score + score_seconds
            full_fit, full_score = full_fit + row_full_fit, full_score + row_full_score
            print(f"{name:9} {fit_seconds:7.2f}s {score_seconds:7.2f}s {row_full_fit:8.2f}s {row_full_score:9.2f}s")
        print(f"{'table':9} {total_fit:7.2f}s {total_score:7.2f}s {full_fit:8.2f}s {full_score:9.2f}s  "
              f"= {total_fit + total_score:.1f} s here, {full_fit + full_score:.1f} s at full size")

        knn = make("knn", k=args.k, sample_ratio=1.0, seed=args.seed)
        fit_seconds, _ = best_time(lambda: knn.fit(features=cache[TRAIN]["features"]))
        knn_seconds, knn_scores = best_time(lambda: {dataset: knn.score(features=cache[dataset]["features"])
                                                     for dataset in (ID_TEST, *OOD_SETS)}, args.repeats)
        unit_queries = {dataset: unit_rows(torch.from_numpy(np.array(cache[dataset]["features"]))) for dataset in (ID_TEST, *OOD_SETS)}
        unit_bank = unit_rows(torch.from_numpy(np.array(cache[TRAIN]["features"])))
        matmul_seconds, _ = best_time(lambda: floor_search(unit_queries, unit_bank, None), args.repeats)
        topk_seconds, floor_kth = best_time(lambda: floor_search(unit_queries, unit_bank, args.k), args.repeats)

        gflop = 2 * n_scored * n_bank * FEATURES / 1e9
        work_scale = bank_scale * query_scale
        print(f"(b, c) KNN k = {args.k} over the bank vs the floor: {gflop:,.1f} GFLOP here ({gflop * work_scale:,.0f} at full size), "
              f"queries and bank in blocks of {CHUNK_ROWS:,} rows")
        print(f"{'':26} {'time':>9} {'GFLOP/s':>8} {'full size':>10} {'KNN / this':>10}")
        for label, seconds in [("KNN fit", fit_seconds), ("KNN score", knn_seconds),
                               ("floor: products (row max)", matmul_seconds), ("floor: products + top-k", topk_seconds)]:
            rate = f"{gflop / seconds:8.1f}" if label != "KNN fit" else f"{'':8}"
            full = seconds * (bank_scale if label == "KNN fit" else work_scale)
            ratio = f"{knn_seconds / seconds:10.2f}" if label.startswith("floor") else ""
            print(f"{label:26} {seconds:8.2f}s {rate} {full:9.1f}s {ratio}")

        rng = np.random.default_rng(args.seed)
        checked_sets = {ID_TEST: args.check_queries // 2, OOD_SETS[0]: args.check_queries - args.check_queries // 2}
        deviation = floor_deviation = 0.0
        for dataset, count in checked_sets.items():
            picked = np.sort(rng.choice(rows[dataset], min(count, rows[dataset]), replace=False))
            expected = numpy_knn_scores(np.asarray(cache[dataset]["features"][picked]), cache[TRAIN]["features"], args.k)
            deviation = max(deviation, np.abs(knn_scores[dataset][picked] - expected).max())
            floor_scores = -np.sqrt(np.maximum(2.0 - 2.0 * floor_kth[dataset].double().numpy(), 0.0))
            floor_deviation = max(floor_deviation, np.abs(knn_scores[dataset] - floor_scores).max())
        agree = deviation <= KNN_TOLERANCE and floor_deviation <= KNN_TOLERANCE
        print(f"check: KNN vs float64 numpy on {sum(checked_sets.values())} rows (ID and {OOD_SETS[0]}): max |diff| {deviation:.1e}; "
              f"KNN vs the floor's top-k on every row: max |diff| {floor_deviation:.1e} {'ok' if agree else 'MISMATCH'}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if not agree:
        print(f"KNN's scores differ from an exact search by more than {KNN_TOLERANCE}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
