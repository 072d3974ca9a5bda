"""Benchmark CSP and AdaNeg against a plain NegLabel score on the same synthetic CLIP-sized features.

Run: .venv/bin/python bench/negative_labels.py [--images 60000] [--repeats 2] [--seed 0] [--threads N] [--device cpu]

Random unit vectors stand in for CLIP's 512-d features; the images are CLIP-like (a direction all image features
share, plus a class prompt for the in-distribution half and a negative label for the OOD half), so that AdaNeg's
memory fills as it does on real features. Every ratio divides by NegLabel's grouped score of the same images
(`neglabel_score`: 1,000 classes, 10,499 negatives, 100 groups), timed in the same loop so that a change of the
machine's load hits both alike:

1. Mining: CSP's (`mine_csp_negatives`: NegLabel's percentile plus the largest cosine, for its 0.95 filter) of the
   56,620 candidates of the release's lists, and AdaNeg's rank statistic and selection (`rank_similarity`,
   `select_adaneg_negatives`) of 69,554, each against NegLabel's mining of 70,000 (`mine_negatives`).
2. CSP's score: the `CSP` scorer, 8,492 negatives in 100 groups (NegLabel's code, fewer negatives).
3. AdaNeg: one stream of `--images` images in the release's protocol (`AdaNeg.score_pair`: the OOD half, then the
   ID half, in the release's shuffle, batches of 256, memory of 9 per label; 1,000 classes and 10,000 negatives in
   5 groups), with mean proxies (the release's default) and with attention proxies (`samada`).

Values checked (exit status 1 on a mismatch): CSP's first 256 scores against a float64 loop over the groups, and
AdaNeg's scores for the first two batches of the stream against the release's per-batch arithmetic re-expressed in
float64 (the memory tensor, next-slot index, entropy rule and bank means of `TTAPromptPostprocessor_noadagap`).
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# Benchmark the checkout this script lives in, not whichever ood_repro happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from timing import best_time  # noqa: E402
from ood_repro.adaneg import AdaNeg, rank_similarity, release_stream_order, select_adaneg_negatives  # noqa: E402
from ood_repro.csp import CSP, mine_csp_negatives  # noqa: E402
from ood_repro.neglabel import group_indices, mine_negatives, neglabel_score  # noqa: E402

DIM, N_CLASSES, N_GROUPS = 512, 1_000, 100
N_NEGLABEL = 10_499  # NegLabel's labels: 8,578 nouns + 1,921 adjectives
CSP_NOUNS, CSP_ADJECTIVES = 46_808, 9_812  # CSP's corpus from the release's lists (notebook 21)
CSP_NEGATIVES = int(0.15 * CSP_NOUNS) + int(0.15 * CSP_ADJECTIVES)  # 8,492
ADANEG_NOUNS, ADANEG_ADJECTIVES = 58_101, 11_453  # AdaNeg's corpus from the release's lists (notebook 22)
ADANEG_NEGATIVES, ADANEG_GROUPS, BATCH, MEMLENG = 10_000, 5, 256, 10
NEGLABEL_CANDIDATES = 70_000
TOLERANCE = 1e-4


def unit(generator, rows, dim=DIM):
    return F.normalize(torch.randn(rows, dim, generator=generator), dim=1)


def clip_like(generator, prompts, rows, weight):
    "Image features: noise plus a direction all images share plus `weight` times a random prompt, normalised."
    common = unit(torch.Generator().manual_seed(1), 1)
    chosen = prompts[torch.randint(len(prompts), (rows,), generator=generator)]
    return F.normalize(unit(generator, rows) + common + weight * chosen, dim=1)


def loop_scores(images, classes, negatives, groups, scale=100.0):
    "NegLabel's definition in float64: per group, the class share of a softmax over [classes, group]; averaged."
    images, classes, negatives = images.double(), classes.double(), negatives.double()
    shares = [torch.softmax(scale * images @ torch.cat([classes, negatives[members]]).T, dim=1)[:, :len(classes)].sum(1)
              for members in groups]
    return torch.stack(shares).mean(dim=0).numpy()


def release_first_batches(images, classes, negatives, n_batches=2, scale=100.0, lam=0.1, thres=0.5, gap=0.5):
    "The release's postprocess for the first batches of a stream, float64, mean proxies: their scores in order."
    text = torch.cat([classes, negatives]).double()
    n_classes, kept = len(classes), len(negatives) - len(negatives) % ADANEG_GROUPS
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        permutation = torch.randperm(kept)
    memory = torch.cat([text[:, None], torch.zeros(len(text), MEMLENG, text.shape[1], dtype=torch.float64)], dim=1)
    next_slot, entropies = torch.ones(len(text), dtype=torch.long), torch.zeros(len(text), MEMLENG + 1, dtype=torch.float64)

    def grouped(output):
        negative = output[:, n_classes:n_classes + kept][:, permutation].reshape(len(output), ADANEG_GROUPS, -1)
        return torch.stack([torch.softmax(torch.cat([output[:, :n_classes], negative[:, g]], 1), 1)[:, :n_classes].sum(1)
                            for g in range(ADANEG_GROUPS)], 1).mean(1)

    scores = []
    for start in range(0, n_batches * BATCH, BATCH):
        x = images[start:start + BATCH].double()
        output = scale * x @ text.T
        vanilla = grouped(output)
        for i in range(len(x)):
            if vanilla[i] > thres + gap * (1 - thres):
                block, offset = output[i, :n_classes], 0
            elif vanilla[i] < thres - gap * thres:
                block, offset = output[i, n_classes:], n_classes
            else:
                continue
            label, probabilities = offset + int(block.argmax()), torch.softmax(block, 0)
            entropy = -(probabilities * torch.log(probabilities + 1e-8)).sum()
            if next_slot[label] == MEMLENG:
                if (entropy < entropies[label]).sum() == 0:
                    continue
                slot = int(torch.sort(entropies[label]).indices[-1])
            else:
                slot = int(next_slot[label])
                next_slot[label] += 1
            memory[label, slot], entropies[label, slot] = x[i], entropy
        scores.append(grouped(scale * x @ F.normalize(memory.mean(dim=1), dim=1).T) + lam * vanilla)
    return torch.cat(scores).numpy()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=60_000, help="images per AdaNeg stream (the release's MOS "
                        "streams: 10,000 OOD + 50,000 ID), half OOD-like, half ID-like")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="where the scores are computed: cpu or cuda")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(args.seed)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    failures = []

    # 1. mining, each against NegLabel's
    classes = unit(generator, N_CLASSES)
    neglabel_candidates = unit(generator, NEGLABEL_CANDIDATES)
    neglabel_parts = ["noun"] * 57_189 + ["adjective"] * 12_811
    csp_parts = ["noun"] * CSP_NOUNS + ["adjective"] * CSP_ADJECTIVES
    adaneg_parts = ["noun"] * ADANEG_NOUNS + ["adjective"] * ADANEG_ADJECTIVES
    times = {"neglabel": [], "csp": [], "adaneg": []}
    for _ in range(args.repeats):
        times["neglabel"].append(best_time(lambda: mine_negatives(neglabel_candidates, classes, neglabel_parts))[0])
        times["csp"].append(best_time(lambda: mine_csp_negatives(neglabel_candidates[:len(csp_parts)], classes,
                                                                 csp_parts))[0])
        times["adaneg"].append(best_time(lambda: select_adaneg_negatives(
            rank_similarity(neglabel_candidates[:len(adaneg_parts)], classes, int(0.95 * N_CLASSES)).numpy(),
            adaneg_parts, ADANEG_NEGATIVES))[0])
    mining = {name: min(values) for name, values in times.items()}
    print(f"mining: NegLabel {NEGLABEL_CANDIDATES:,} candidates {mining['neglabel']:.2f} s; CSP "
          f"{len(csp_parts):,} {mining['csp']:.2f} s (ratio {mining['csp'] / mining['neglabel']:.2f}); AdaNeg "
          f"{len(adaneg_parts):,} {mining['adaneg']:.2f} s (ratio {mining['adaneg'] / mining['neglabel']:.2f})")

    # 2. and 3. scoring, on the same images
    half = args.images // 2
    neglabel_negatives, csp_negatives = unit(generator, N_NEGLABEL), unit(generator, CSP_NEGATIVES)
    adaneg_negatives = neglabel_negatives[:ADANEG_NEGATIVES]
    id_images = clip_like(generator, classes, args.images - half, 0.6)
    ood_images = clip_like(generator, adaneg_negatives, half, 0.5)
    images = torch.cat([ood_images, id_images]).to(device)
    csp = CSP(classes, csp_negatives, N_GROUPS, device=device)
    adaneg = {proxy: AdaNeg(classes, adaneg_negatives, ADANEG_GROUPS, proxy=proxy, device=device)
              for proxy in ("mean", "attention")}
    times = {"neglabel": [], "csp": [], "mean": [], "attention": []}
    for _ in range(args.repeats):
        times["neglabel"].append(best_time(lambda: neglabel_score(images, classes, neglabel_negatives, N_GROUPS))[0])
        seconds, csp_scores = best_time(lambda: csp.score(features=images))
        times["csp"].append(seconds)
        for proxy, scorer in adaneg.items():
            seconds, pair = best_time(lambda: scorer.score_pair({"features": id_images.to(device)},
                                                                 {"features": ood_images.to(device)}))
            times[proxy].append(seconds)
            if proxy == "mean":
                mean_pair = pair
    scoring = {name: min(values) for name, values in times.items()}
    floor = scoring["neglabel"]
    print(f"NegLabel: {args.images:,} images x ({N_CLASSES:,} + {N_NEGLABEL:,}) labels, {N_GROUPS} groups: "
          f"{floor:.2f} s ({1e3 * floor / args.images:.3f} ms/image)")
    print(f"CSP: ({N_CLASSES:,} + {CSP_NEGATIVES:,}) labels, {N_GROUPS} groups: {scoring['csp']:.2f} s -> ratio "
          f"{scoring['csp'] / floor:.2f}")
    stream = adaneg["mean"].new_stream(device)
    order = release_stream_order(args.images, ADANEG_NEGATIVES)
    streamed = F.normalize(torch.cat([ood_images, id_images])[order], dim=1)
    for start in range(0, len(streamed), BATCH):
        stream.step(streamed[start:start + BATCH].to(device))
    stored = int(stream.memory.count.sum())
    print(f"AdaNeg: one stream of {args.images:,} images ({half:,} OOD-like first, release's shuffle, batches of "
          f"{BATCH}), ({N_CLASSES:,} + {ADANEG_NEGATIVES:,}) labels, {ADANEG_GROUPS} groups; the memory ends with "
          f"{stored:,} features in {int((stream.memory.count > 0).sum()):,} banks")
    for proxy in ("mean", "attention"):
        print(f"  {proxy} proxies: {scoring[proxy]:.2f} s -> ratio {scoring[proxy] / floor:.2f}")

    # the values
    checked = 256
    reference = loop_scores(images[:checked].cpu(), classes, csp_negatives, group_indices(CSP_NEGATIVES, N_GROUPS, 0,
                                                                                          images.device).cpu())
    error = float(np.abs(csp_scores[:checked] - reference).max())
    print(f"CSP: max |error| of the first {checked} scores vs a float64 loop {error:.1e}")
    if error > TOLERANCE:
        failures.append(f"CSP scores differ from the float64 loop by {error:.1e}")
    ids, oods = mean_pair
    in_stream = np.concatenate([oods, ids])[order.numpy()]
    reference = release_first_batches(torch.cat([ood_images, id_images])[order[:2 * BATCH]], classes, adaneg_negatives)
    error = float(np.abs(in_stream[:2 * BATCH] - reference).max())
    print(f"AdaNeg: max |error| of the first {2 * BATCH} stream scores vs the release's arithmetic in float64 {error:.1e}")
    if error > TOLERANCE:
        failures.append(f"AdaNeg scores differ from the release's arithmetic by {error:.1e}")
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
