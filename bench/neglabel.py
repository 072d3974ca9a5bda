"""Benchmark NegLabel mining and scoring and SynOOD's fine-tuning epochs on synthetic CLIP-sized features.

Run: .venv/bin/python bench/neglabel.py [--images 100000] [--finetune-features 100000] [--repeats 2] [--seed 0]
     [--threads N]

Random unit vectors stand in for CLIP features (timing does not depend on their values):

1. Mining: the 95th-percentile similarity of 70,000 candidate words (512-d) to 1,000 class prompts and the
   per-part-of-speech selection of the lowest 15% (`ood_repro.neglabel.mine_negatives`).
2. Scoring: `neglabel_score` of `--images` images against 1,000 classes + 10,499 negatives in 100 groups, divided
   by the time of one plain matrix product of the same shape (images × 11,499 labels), the floor. Target: ratio
   <= 1.5. Also divided by the product of the 11,400 labels the score really multiplies (NegLabel drops the last
   99 negatives): on CPU BLAS an odd row length such as 11,499 is itself some 40% slower than 11,400, which
   flatters the first ratio. All run over the same chunks of 4,096 images, so none ever holds the whole
   100,000 × 11,499 logit matrix (4.6 GB). The scores of the first 256 images are checked against a float64 loop
   over the groups; the script exits with status 1 if they disagree.
3. Fine-tuning: one epoch of the projection (`train_projection`) on `--finetune-features` cached features (100,000
   as in the paper: 50,000 ID over 1,000 classes + 50,000 synthetic over M' = 5,620 labels, batch 128), and one
   epoch of label tuning (`tune_negative_labels`) on the synthetic half.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# Benchmark the checkout this script lives in, not whichever ood_repro happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from timing import best_time  # noqa: E402
from ood_repro.neglabel import group_indices, mine_negatives, neglabel_score  # noqa: E402
from ood_repro.synood.finetune import train_projection, tune_negative_labels  # noqa: E402

DIM, N_CLASSES, N_NEGATIVES, N_GROUPS = 512, 1_000, 10_499, 100
N_NOUNS, N_ADJECTIVES = 57_189, 12_811  # the release's word lists, 70,000 words (Debian's WordNet 3.0: 69,917)
N_MINED = 5_620  # M': distinct labels assigned to the release's 50,000 synthetic images
CHUNK = 4_096
TOLERANCE = 1e-5


def unit(generator, rows, dim=DIM):
    return F.normalize(torch.randn(rows, dim, generator=generator), dim=1)


def plain_product(images, labels_t):
    "The floor: the same matrix product as the score, over the same chunks, and nothing else."
    for start in range(0, len(images), CHUNK):
        torch.mm(images[start:start + CHUNK], labels_t)


def reference_scores(images, classes, negatives, groups, scale=100.0):
    "The definition in float64: per group, the class share of a softmax over [classes, group]; averaged."
    images, classes, negatives = images.double(), classes.double(), negatives.double()
    shares = []
    for members in groups:
        logits = scale * images @ torch.cat([classes, negatives[members]]).T
        shares.append(torch.softmax(logits, dim=1)[:, :len(classes)].sum(dim=1))
    return torch.stack(shares).mean(dim=0).numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--finetune-features", type=int, default=100_000,
                        help="cached features of the fine-tuning epochs, half ID and half synthetic")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(args.seed)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    # 1. mining
    candidates, classes = unit(generator, N_NOUNS + N_ADJECTIVES), unit(generator, N_CLASSES)
    parts = ["noun"] * N_NOUNS + ["adjective"] * N_ADJECTIVES
    seconds, (kept, _) = best_time(lambda: mine_negatives(candidates, classes, parts), args.repeats)
    assert len(kept) == int(0.15 * N_NOUNS) + int(0.15 * N_ADJECTIVES)
    print(f"mining: {N_NOUNS + N_ADJECTIVES:,} words x {N_CLASSES:,} classes -> {len(kept):,} negatives "
          f"in {seconds:.2f} s")

    # 2. scoring against the floor
    images, negatives = unit(generator, args.images), unit(generator, N_NEGATIVES)
    all_labels_t = torch.cat([classes, negatives]).T.contiguous()
    used = N_NEGATIVES - N_NEGATIVES % N_GROUPS
    used_labels_t = torch.cat([classes, negatives[:used]]).T.contiguous()
    # interleaved, so that a change of the machine's load hits all three alike
    floors, used_floors, times = [], [], []
    for _ in range(args.repeats):
        floors.append(best_time(lambda: plain_product(images, all_labels_t), 1)[0])
        used_floors.append(best_time(lambda: plain_product(images, used_labels_t), 1)[0])
        seconds, scores = best_time(lambda: neglabel_score(images, classes, negatives, N_GROUPS, chunk_size=CHUNK), 1)
        times.append(seconds)
    floor, used_floor, seconds = min(floors), min(used_floors), min(times)
    checked = 256
    reference = reference_scores(images[:checked], classes, negatives, group_indices(N_NEGATIVES, N_GROUPS, 0))
    error = float(np.abs(scores[:checked] - reference).max())
    print(f"scoring: {args.images:,} images x ({N_CLASSES:,} + {N_NEGATIVES:,}) labels, {N_GROUPS} groups: "
          f"{seconds:.2f} s ({1e3 * seconds / args.images:.3f} ms/image); max |error| vs float64 loop {error:.1e}")
    print(f"  plain product, same shape (x {N_CLASSES + N_NEGATIVES:,} labels): {floor:.2f} s -> ratio "
          f"{seconds / floor:.2f} (target <= 1.5)")
    print(f"  plain product of the {N_CLASSES + used:,} labels the score multiplies (the last {N_NEGATIVES - used} "
          f"negatives are dropped): {used_floor:.2f} s -> ratio {seconds / used_floor:.2f}")

    # 3. fine-tuning epochs on cached features
    half = args.finetune_features // 2
    id_features = 10.0 * unit(generator, half)
    id_labels = torch.randint(N_CLASSES, (half,), generator=generator)
    synthetic_features = 10.0 * unit(generator, half)
    synthetic_targets = torch.randint(N_MINED, (half,), generator=generator)
    mined = 8.0 * unit(generator, N_MINED)
    start = time.perf_counter()
    train_projection(id_features, id_labels, synthetic_features, synthetic_targets, classes, mined, epochs=1)
    projection_epoch = time.perf_counter() - start
    start = time.perf_counter()
    tune_negative_labels(synthetic_features, synthetic_targets, mined, epochs=1)
    tuning_epoch = time.perf_counter() - start
    print(f"projection: one epoch over {2 * half:,} cached features ({N_CLASSES:,} + {N_MINED:,} labels, batch 128) "
          f"in {projection_epoch:.1f} s; label tuning: one epoch over {half:,} in {tuning_epoch:.1f} s")

    if error > TOLERANCE:
        print(f"FAILED: grouped scores differ from the float64 loop by {error:.1e} > {TOLERANCE:.0e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
