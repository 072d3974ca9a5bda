"""Benchmark TagOOD's training, projection and decomposition throughput on synthetic data.

Run: .venv/bin/python bench/tagood.py [--n-train 512] [--batch-size 64] [--n-images 48] [--head-batch 2] [--device auto]
     [--threads N] [--skip training projection head decomposition]

Training: one epoch of `train_tagood` (the released model, width 512) on --n-train synthetic object-token records,
with length bucketing and without (the release's random batches); prints samples/s, the share of padded positions
and the ratio. Record lengths K follow a log-normal law (median --k-median, log-sd --k-sigma) clipped to 1..145: no
measured distribution is published, only the bound K <= 145 (RAM's 145 tokens) and K ~ 40 as our rough storage estimate;
the projection benchmark adds 10 % empty records (OOD images without an in-distribution tag).

Projection: `project` (length-sorted batches) against one image at a time without a mask (the release's inference).

Tag head: RAM's tagging head (the released sizes: 2 layers, 768 wide, 4 heads, on 145 tokens of width 512) for all
4585 tags against TagOOD's 719 in-distribution tags only, on --head-batch random token sets; prints images/s, the
ratio, and checks that the subset's logits and attention equal the full head's columns (the head has no
self-attention among tags). Then the RAM extractor's own path: the subset head plus `RAM.top_tag_logit`, the maximum
logit over the other 3866 tags that TagOOD's official zero-tag rule needs (logits only, in chunks of 1024 tags);
prints its cost over the subset head alone, and checks the maximum equals the full head's. With --swin-images N > 0
it also times the Swin-L 384 image encoder (random weights) on N images, so the extra cost is also stated as a share
of a whole RAM forward pass.

Decomposition: images/s of `decompose` on synthetic RAM outputs for --n-images images (a few in-distribution tags
predicted per image, 10 % with none), in the layouts an extractor can cache: the full tag head (tag probabilities
(N, 4585), attention (N, 4, 4585, 145) float32), the 719 in-distribution tags only ((N, 719), (N, 4, 719, 145)),
that subset summed over heads in float16 ((N, 719, 145)) read from a memory-mapped .npy, and the rows of the predicted
tags only (ood_repro.ram's attention="predicted": a ragged memory map with the rows' tags, logits); plus a per-image loop
written like the release's (gen_data_tokens.py) as the reference. The full-head and subset results, and the loop's,
must be identical; the script exits with status 1 if they are not.
"""
import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

# Benchmark the checkout this script lives in, not whichever ood_repro happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from timing import best_time  # noqa: E402
from ood_repro.store import RaggedArray  # noqa: E402
from ood_repro.config import get_device  # noqa: E402
from ood_repro.ram import RAM, REAL_CONFIG, TINY_CONFIG, imagenet_class_tags, ram_tag_list  # noqa: E402
from ood_repro.tagood import TagOODProjector, decompose, ind_tag_set, project, train_tagood  # noqa: E402

N_TAGS, N_IND_TAGS, N_TOKENS, WIDTH = 4585, 719, 145, 512


def synthetic_lengths(rng, n, median, sigma, empty_share=0.0):
    "Skewed record lengths in 1..145 (log-normal), with a share of empty records."
    lengths = np.clip(np.round(rng.lognormal(np.log(median), sigma, n)), 1, N_TOKENS).astype(np.int64)
    lengths[rng.random(n) < empty_share] = 0
    return lengths


def synthetic_records(rng, lengths):
    return [rng.normal(size=(int(k), WIDTH)).astype(np.float32) for k in lengths]


def synthetic_ram_outputs(rng, n_images):
    "Full-head tag probabilities and layer attention, tokens, and the in-distribution tag indices."
    ind_tags = np.sort(rng.choice(N_TAGS, N_IND_TAGS, replace=False))
    probs = rng.uniform(0.0, 0.5, size=(n_images, N_TAGS)).astype(np.float32)
    for i in range(n_images):
        probs[i, rng.choice(N_TAGS, 10, replace=False)] = rng.uniform(0.5, 0.95, 10)  # other tags that fire
        probs[i, ind_tags] = np.minimum(probs[i, ind_tags], 0.45)
        if rng.random() > 0.1:
            probs[i, rng.choice(ind_tags, rng.integers(1, 5), replace=False)] = rng.uniform(0.55, 0.95)
    attention = rng.random((n_images, 4, N_TAGS, N_TOKENS), dtype=np.float32)
    tokens = rng.normal(size=(n_images, N_TOKENS, WIDTH)).astype(np.float32)
    return probs, attention, tokens, ind_tags


def release_loop(tag_probs, attention, tokens, ind_tags, tau=0.5, tag_threshold=0.5):
    "One image at a time, tag by tag, as gen_data_tokens.py does for ImageNet images (fallback included)."
    records = []
    for i in range(len(tag_probs)):
        probs = torch.from_numpy(tag_probs[i])
        predicted = [int(t) for t in ind_tags if probs[t] > tag_threshold]
        if not predicted:
            predicted = [int(ind_tags[int(torch.argmax(probs[ind_tags]))])]
        combined = None
        for t in predicted:
            m = torch.from_numpy(attention[i, :, t, :]).sum(dim=0)
            m = (m - m.min()) / (m.max() - m.min())
            combined = m if combined is None else torch.maximum(combined, m)
        records.append(tokens[i][(combined > tau).numpy()])
    return records


def bench_training(args, device):
    rng = np.random.default_rng(args.seed)
    lengths = synthetic_lengths(rng, args.n_train, args.k_median, args.k_sigma)
    records = synthetic_records(rng, lengths)
    labels = rng.integers(0, 1000, args.n_train)
    print(f"\n== training: {args.n_train} records, K mean {lengths.mean():.1f}, median {np.median(lengths):.0f}, "
          f"max {lengths.max()}; batch {args.batch_size}, one epoch, released model (width 512), {device}")
    rates = {}
    for bucketing in (False, True):
        result = train_tagood(records, labels, 1000, epochs=1, batch_size=args.batch_size, bucketing=bucketing,
                              seed=args.seed, device=str(device), progress=False)
        row = result.history.iloc[0]
        rates[bucketing] = row["samples_per_second"]
        print(f"bucketing={bucketing!s:5}: {row['samples_per_second']:8.1f} samples/s, padded positions {row['padding']:.0%}")
    print(f"ratio bucketing / random batches: {rates[True] / rates[False]:.2f}")


def bench_projection(args, device):
    rng = np.random.default_rng(args.seed + 1)
    lengths = synthetic_lengths(rng, args.n_project, args.k_median, args.k_sigma, empty_share=0.1)
    records = synthetic_records(rng, lengths)
    torch.manual_seed(args.seed)
    model = TagOODProjector().to(device).eval()
    print(f"\n== projection (test time): {args.n_project} records, {int((lengths == 0).sum())} empty, {device}")
    batched_time, batched = best_time(lambda: project(model, records, batch_size=256, device=device))

    def one_at_a_time():
        features = np.zeros_like(batched)
        with torch.no_grad():
            for i, record in enumerate(records):
                if len(record):
                    features[i] = model.features(torch.from_numpy(record)[None].to(device))[0].cpu().numpy()
        return features

    single_time, single = best_time(one_at_a_time)
    difference = float(np.abs(batched - single).max())
    print(f"project (sorted batches of 256): {args.n_project / batched_time:8.1f} images/s")
    print(f"one image at a time (release) : {args.n_project / single_time:8.1f} images/s")
    print(f"ratio batched / one at a time: {single_time / batched_time:.2f}   (max |difference| {difference:.1e})")
    return difference < 1e-3


def bench_head(args, device):
    # the released head on a tiny Swin: tag_head takes the tokens directly, so the Swin's size does not matter here
    sizes = {name: getattr(REAL_CONFIG, name) for name in
             ("embed_dim", "hidden_size", "num_heads", "intermediate_size", "num_layers", "num_tags", "layer_norm_eps")}
    model = RAM(dataclasses.replace(TINY_CONFIG, tags=None, **sizes), seed=args.seed).to(device)
    ind_tags = torch.from_numpy(ind_tag_set(imagenet_class_tags(), ram_tag_list())).to(device)
    tokens = torch.randn(args.head_batch, REAL_CONFIG.num_tokens, REAL_CONFIG.embed_dim,
                         generator=torch.Generator().manual_seed(args.seed)).to(device)
    print(f"\n== tag head: {args.head_batch} images of {REAL_CONFIG.num_tokens} tokens, all {REAL_CONFIG.num_tags} tags "
          f"vs the {len(ind_tags)} in-distribution tags, {device}")
    with torch.no_grad():
        full_time, (full_logits, full_attentions) = best_time(lambda: model.tag_head(tokens), args.repeats)
        subset_time, (subset_logits, subset_attentions) = best_time(lambda: model.tag_head(tokens, ind_tags), args.repeats)
        top_time, top_logit = best_time(
            lambda: model.top_tag_logit(tokens, model.tag_head(tokens, ind_tags)[0], ind_tags), args.repeats)
    difference = float((full_logits[:, ind_tags] - subset_logits).abs().max())
    for full, subset in zip(full_attentions, subset_attentions):
        difference = max(difference, float((full[:, :, ind_tags] - subset).abs().max()))
    top_difference = float((full_logits.max(dim=1).values - top_logit).abs().max())
    for label, seconds in ((f"full head ({REAL_CONFIG.num_tags} tags)", full_time), (f"subset head ({len(ind_tags)} tags)", subset_time),
                           ("subset + top tag logit", top_time)):
        print(f"{label:24}: {args.head_batch / seconds:8.2f} images/s")
    print(f"ratio subset / full head: {full_time / subset_time:.2f}   (max |difference| {difference:.1e})")
    print(f"ratio (subset + top tag logit) / subset head: {top_time / subset_time:.2f}   "
          f"(max |difference| to the full head's maximum {top_difference:.1e})")
    if args.swin_images:
        encoder = RAM(dataclasses.replace(REAL_CONFIG, num_tags=1, tags=None), seed=args.seed).to(device)
        images = torch.randn(args.swin_images, 3, REAL_CONFIG.image_size, REAL_CONFIG.image_size).to(device)
        with torch.no_grad():
            swin_time, _ = best_time(lambda: encoder.image_tokens(images), 1)
        per_image = {"swin": swin_time / args.swin_images, "subset": subset_time / args.head_batch,
                     "top": (top_time - subset_time) / args.head_batch}
        print(f"Swin-L 384 image encoder: {1 / per_image['swin']:8.2f} images/s; the top tag logit adds "
              f"{per_image['top'] / (per_image['swin'] + per_image['subset']):.0%} to a RAM forward with the subset head")
        del encoder
    return difference < 1e-4 and top_difference < 1e-4


def same_records(a, b):
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def bench_decomposition(args):
    rng = np.random.default_rng(args.seed + 2)
    n = args.n_images
    probs, attention, tokens, ind_tags = synthetic_ram_outputs(rng, n)
    print(f"\n== decomposition: {n} images, τ 0.5, tag threshold 0.5, official rule (ImageNet images), CPU")
    results, times = {}, {}
    times["full"], results["full"] = best_time(lambda: decompose(probs, attention, tokens, ind_tags, is_id=True), args.repeats)
    subset_probs = np.ascontiguousarray(probs[:, ind_tags])
    subset_attention = np.ascontiguousarray(attention[:, :, ind_tags])
    times["subset"], results["subset"] = best_time(
        lambda: decompose(subset_probs, subset_attention, tokens, ind_tags, tag_ids=ind_tags, is_id=True), args.repeats)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "attention.npy"
        np.save(path, subset_attention.sum(axis=1).astype(np.float16))
        tokens_path = Path(folder) / "tokens.npy"
        np.save(tokens_path, tokens.astype(np.float16))
        summed, tokens16 = np.load(path, mmap_mode="r"), np.load(tokens_path, mmap_mode="r")
        times["summed"], results["summed"] = best_time(
            lambda: decompose(subset_probs, summed, tokens16, ind_tags, tag_ids=ind_tags, is_id=True), args.repeats)
        # the RAM extractor's attention="predicted": per image the head-summed rows of the tags above 0.5 and the
        # arg-max IND tag, stored flat with offsets (a ragged cache array), logits instead of probabilities
        stored = [np.flatnonzero((subset_probs[i] > 0.5) | (np.arange(N_IND_TAGS) == np.argmax(subset_probs[i])))
                  for i in range(n)]
        rows = RaggedArray.from_rows([subset_attention[i][:, keep].sum(axis=0) for i, keep in enumerate(stored)])
        row_tags = RaggedArray.from_rows([ind_tags[keep] for keep in stored])
        np.save(Path(folder) / "rows.npy", rows.flat)
        rows = RaggedArray(np.load(Path(folder) / "rows.npy", mmap_mode="r"), rows.offsets)
        logits = np.log(subset_probs) - np.log1p(-subset_probs)
        times["rows"], results["rows"] = best_time(
            lambda: decompose(logits, rows, tokens16, ind_tags, tag_ids=ind_tags, attention_tags=row_tags,
                              from_logits=True, is_id=True), args.repeats)
        times["loop"], loop_records = best_time(lambda: release_loop(probs, attention, tokens, ind_tags), args.repeats)
        del summed, tokens16, rows
    labels = {"full": "full head, (N,4,4585,145) float32", "subset": "IND subset, (N,4,719,145) float32",
              "summed": "IND subset, head-summed float16 memmap",
              "rows": "stored rows of predicted tags, float32 memmap", "loop": "release-style per-image loop, full head"}
    for name, label in labels.items():
        print(f"{label:46}: {n / times[name]:9.1f} images/s")
    print(f"ratio IND subset / full head (same decomposition): {times['full'] / times['subset']:.2f}")
    print(f"ratio head-summed float16 memmap / full head     : {times['full'] / times['summed']:.2f}")
    print(f"ratio stored predicted rows / full head          : {times['full'] / times['rows']:.2f}")
    print(f"ratio vectorised full head / per-image loop      : {times['loop'] / times['full']:.2f}")
    full = results["full"]
    agree_subset = same_records(full.object_tokens, results["subset"].object_tokens)
    agree_loop = same_records(full.object_tokens, loop_records)
    masks_equal = float((results["summed"].keep == full.keep).all(axis=1).mean())
    rows_equal = float((results["rows"].keep == full.keep).all(axis=1).mean())
    print(f"K mean {full.lengths.mean():.1f}; {int(full.fallback.sum())} fallbacks; identical records: subset {agree_subset}, "
          f"loop {agree_loop}; masks identical to the full head's for {masks_equal:.0%} of images with float16 "
          f"head-summed attention, {rows_equal:.0%} with stored float32 rows (heads summed before storage)")
    return agree_subset and agree_loop


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-train", type=int, default=512, help="training records (one epoch)")
    parser.add_argument("--batch-size", type=int, default=64, help="256 in the release; smaller by default so that a CPU run has several batches in minutes")
    parser.add_argument("--n-project", type=int, default=512, help="records for the projection benchmark")
    parser.add_argument("--n-images", type=int, default=48, help="images for the decomposition benchmark")
    parser.add_argument("--head-batch", type=int, default=2, help="token sets (images) for the tag-head benchmark")
    parser.add_argument("--swin-images", type=int, default=1,
                        help="images for timing RAM's Swin-L 384 encoder beside the head (0: skip; about 1 GB of weights)")
    parser.add_argument("--k-median", type=float, default=30.0, help="median number of object tokens per record")
    parser.add_argument("--k-sigma", type=float, default=0.8, help="log-normal sigma of the record lengths")
    parser.add_argument("--repeats", type=int, default=2, help="decomposition timing repeats; the best is kept")
    parser.add_argument("--device", default="auto", help="training and projection device: auto, cpu, cuda")
    parser.add_argument("--skip", nargs="*", default=[], choices=["training", "projection", "head", "decomposition"])
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's); 1 is steadier on a CPU shared with other processes")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    if min(args.n_train, args.batch_size, args.n_project, args.n_images, args.head_batch, args.repeats) < 1:
        parser.error("sizes and --repeats must be positive")
    device = get_device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, device {device}")
    ok = True
    if "training" not in args.skip:
        bench_training(args, device)
    if "projection" not in args.skip:
        ok &= bench_projection(args, device)
    if "head" not in args.skip:
        ok &= bench_head(args, device)
    if "decomposition" not in args.skip:
        ok &= bench_decomposition(args)
    if not ok:
        print("Some results disagree with their reference.")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
