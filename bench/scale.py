"""Does each full-dataset stage's host memory grow with the dataset? Peak anonymous memory at N and at 4N images.

Run: .venv/bin/python bench/scale.py [--n 16384] [--ram-n 256] [--stages vim mds ...] [--dir DIR]

The paper profile reads 1.28M ImageNet training images on a box with 64 GB of RAM, so no stage may hold a whole
dataset in memory. This script measures it. For each stage it writes synthetic cache-like arrays of N and of 4N
images at the paper profile's real widths (Swin-L features: 1536-d, 1000 classes; RAM: 145 tokens of 512-d, 719
IND tags) as memory-mapped .npy files, as the feature cache stores them. Then it runs the stage on them in a fresh
subprocess (`python bench/scale.py --worker STAGE ...`).

The subprocess samples its own anonymous resident memory (`RssAnon` in /proc/self/status, every 2 ms on a thread)
and prints the peak above its level just before the stage started. Pages of a memory-mapped file read by the stage
are not counted: they are the page cache's to drop, not the process's to hold. The ratio peak(4N) / peak(N) says
whether the stage's memory grows with the dataset (near 4: it holds the data, or a copy of it) or is bounded
(near 1: it streams). The fits stream blocks of 8,192 rows (`ood_repro.distance_baselines.CHUNK_ROWS`), so N must
be at least one block for the ratio to say anything: below it, one block is the whole set and grows with it.

Stages, each as the library's runner calls it on ImageNet train:

- `vim`, `mds`, `rmds`, `react`, `dice`: `fit` of the baseline on N penultimate features (and labels, for the
  Mahalanobis scorers).
- `knn`: `fit` and then `score` of 2,048 queries at the paper's k = 1000. KNN's bank is the training set by definition
  (Sun et al. 2022); `fit` keeps the memory map it is given and `score` streams it in blocks.
- `tagood-decompose`: TagOOD's decomposition of ImageNet train (`ood_repro.tagood.decompose`, written block by block
  to a folder) on N images' RAM outputs as the paper profile stores them: tag logits, the head-summed attention rows
  of the predicted tags only (`attention="predicted"`), tokens in float16.
- `tagood-fit`: `TagOOD.fit` with a workspace, as the runner calls it: that decomposition, then one epoch of
  training (a small projector: its own size does not depend on N) read from the memory-mapped object tokens.

Only measurements are printed; the script fails only if a stage crashes. Linux only (it reads /proc).

Then, always, the estimate of the whole paper profile of both papers by stage (`ood_repro.costs`: disk at rest
and at its peak, host memory, GPU hours), against the goals of one machine: 24 GPU-hours on one H100-class GPU,
1 TB of disk, 64 GB of RAM. It says which stages do not fit and why, and lists every assumption it rests on
(throughputs included, each with its source); `--estimate-only` prints only it.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

# Benchmark the checkout this script lives in, not whichever ood_repro happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

FEATURE_WIDTH, NUM_CLASSES = 1536, 1000  # Swin-L's penultimate features and ImageNet-1k's classes
RAM_TOKENS, RAM_WIDTH, IND_TAGS = 145, 512, 719  # RAM's tokens per image, their width, TagOOD's IND tags
FEATURE_STAGES = ("vim", "mds", "rmds", "react", "dice", "knn")
RAM_STAGES = ("tagood-decompose", "tagood-fit")
STAGES = FEATURE_STAGES + RAM_STAGES
KNN_QUERIES = 2048  # test images scored by the knn stage
WRITE_ROWS = 2048  # rows written per chunk when making the arrays, so the parent process stays small


def anonymous_memory() -> int:
    "This process's anonymous resident memory in bytes (RssAnon of /proc/self/status)."
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no RssAnon line: this benchmark needs Linux.")


class PeakSampler:
    "The largest anonymous resident memory seen on a background thread while the `with` block runs."

    def __init__(self, interval: float = 0.002):
        self.interval, self.peak, self._running = interval, 0, False

    def _sample(self) -> None:
        while self._running:
            self.peak = max(self.peak, anonymous_memory())
            time.sleep(self.interval)

    def __enter__(self) -> "PeakSampler":
        self.baseline = self.peak = anonymous_memory()
        self._running = True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._running = False
        self._thread.join()
        self.peak = max(self.peak, anonymous_memory())


def write_array(path: Path, shape: tuple, dtype, fill) -> None:
    "An .npy file of `shape` written WRITE_ROWS rows at a time by fill(rng, rows) -> array."
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    rng = np.random.default_rng(len(path.name) + shape[0])
    for start in range(0, shape[0], WRITE_ROWS):
        rows = min(WRITE_ROWS, shape[0] - start)
        array[start:start + rows] = fill(rng, rows)
    array.flush()
    del array


def make_feature_data(folder: Path, n: int) -> None:
    "Non-negative penultimate features (post-ReLU, like Swin-L's pooled features), labels, and a random head."
    write_array(folder / "features.npy", (n, FEATURE_WIDTH), np.float32,
                lambda rng, rows: np.abs(rng.normal(size=(rows, FEATURE_WIDTH))).astype(np.float32))
    write_array(folder / "labels.npy", (n,), np.int64, lambda rng, rows: rng.integers(0, NUM_CLASSES, rows))
    rng = np.random.default_rng(0)
    np.save(folder / "head_weight.npy", (rng.normal(size=(NUM_CLASSES, FEATURE_WIDTH)) / 40).astype(np.float32))
    np.save(folder / "head_bias.npy", (rng.normal(size=NUM_CLASSES) / 10).astype(np.float32))


def make_ram_data(folder: Path, n: int) -> None:
    """RAM outputs as the paper profile's cache stores them for TagOOD: IND tag logits (about 3 tags above 0.5 per
    image), the head-summed attention rows of those tags and the arg-max tag with their tags, float16 tokens, labels."""
    write_array(folder / "tag_logits.npy", (n, IND_TAGS), np.float32,
                lambda rng, rows: rng.normal(-4.0, 1.5, size=(rows, IND_TAGS)).astype(np.float32))
    logits = np.load(folder / "tag_logits.npy", mmap_mode="r")
    offsets = np.zeros(n + 1, dtype=np.int64)
    for start in range(0, n, WRITE_ROWS):
        block = logits[start:start + WRITE_ROWS]
        offsets[start + 1:start + len(block) + 1] = np.maximum((block > 0).sum(axis=1), 1)  # the arg-max is always stored
    np.cumsum(offsets, out=offsets)
    np.save(folder / "attention_offsets.npy", offsets)
    tags = np.lib.format.open_memmap(folder / "attention_tags.npy", mode="w+", dtype=np.int64, shape=(int(offsets[-1]),))
    for start in range(0, n, WRITE_ROWS):
        block = np.asarray(logits[start:start + WRITE_ROWS])
        stored = block > 0
        stored[np.arange(len(block)), block.argmax(axis=1)] = True
        tags[offsets[start]:offsets[start + len(block)]] = np.nonzero(stored)[1]
    tags.flush()
    del tags
    write_array(folder / "attention.npy", (int(offsets[-1]), RAM_TOKENS), np.float16,
                lambda rng, rows: rng.random((rows, RAM_TOKENS), dtype=np.float32).astype(np.float16))
    write_array(folder / "tokens.npy", (n, RAM_TOKENS, RAM_WIDTH), np.float16,
                lambda rng, rows: rng.normal(size=(rows, RAM_TOKENS, RAM_WIDTH)).astype(np.float16))
    write_array(folder / "labels.npy", (n,), np.int64, lambda rng, rows: rng.integers(0, NUM_CLASSES, rows))


def run_stage(stage: str, folder: Path) -> None:
    "The stage on the arrays in `folder`, read as memory maps (what the cache hands the runner)."
    if stage in RAM_STAGES:
        from ood_repro.store import RaggedArray
        from ood_repro.tagood import TagOOD, decompose
        arrays = {name: np.load(folder / f"{name}.npy", mmap_mode="r")
                  for name in ("tag_logits", "attention", "attention_tags", "tokens", "labels")}
        offsets = np.load(folder / "attention_offsets.npy")
        attention, attention_tags = RaggedArray(arrays["attention"], offsets), RaggedArray(arrays["attention_tags"], offsets)
        with tempfile.TemporaryDirectory(dir=folder) as workspace:
            if stage == "tagood-decompose":
                decomposition = decompose(arrays["tag_logits"], attention, arrays["tokens"], np.arange(IND_TAGS), tau=0.5,
                                          is_id=True, attention_tags=attention_tags, from_logits=True, folder=workspace)
                assert len(decomposition) == len(arrays["tokens"])
                return
            class_tags = np.arange(NUM_CLASSES) % IND_TAGS  # 1000 classes on 719 tags, as ImageNet's
            training = dict(epochs=1, batch_size=256, model_options=dict(width=64, heads=4, mlp_dim=128))
            TagOOD(class_tags, np.arange(IND_TAGS), training=training, workspace=workspace).fit(
                arrays["tag_logits"], attention, arrays["tokens"], attention_tags, labels=arrays["labels"])
            return
    from ood_repro.baselines import make
    features = np.load(folder / "features.npy", mmap_mode="r")
    labels = np.load(folder / "labels.npy", mmap_mode="r")
    head = (np.load(folder / "head_weight.npy"), np.load(folder / "head_bias.npy"))
    scorers = {"vim": lambda: make("vim", head=head), "mds": lambda: make("mds"), "rmds": lambda: make("rmds"),
               "react": lambda: make("react", head=head), "dice": lambda: make("dice", head=head),
               "knn": lambda: make("knn", k=1000)}
    scorer = scorers[stage]().fit(features=features, labels=labels)
    if stage == "knn":
        scorer.score(features=features[:KNN_QUERIES])


def worker(stage: str, folder: Path) -> None:
    "Subprocess side: import what the stage needs first, then report the stage's own peak above that level."
    run_stage_imports = "ood_repro.tagood" if stage in RAM_STAGES else "ood_repro.baselines"
    __import__(run_stage_imports)
    with PeakSampler() as sampler:
        started = time.perf_counter()
        run_stage(stage, folder)
        seconds = time.perf_counter() - started
    print(json.dumps({"peak_bytes": sampler.peak - sampler.baseline, "seconds": seconds}))


def measure(stage: str, folder: Path) -> dict:
    "Run one stage in a fresh interpreter (one BLAS thread, as the tests run) and read its report."
    environment = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    finished = subprocess.run([sys.executable, __file__, "--worker", stage, "--data", str(folder)], env=environment,
                              capture_output=True, text=True)
    if finished.returncode:
        raise RuntimeError(f"stage {stage} failed:\n{finished.stderr[-3000:]}")
    return json.loads(finished.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=16384, help="images of the feature stages (and 4x that); at least 8192")
    parser.add_argument("--ram-n", type=int, default=1024,
                        help="images of the TagOOD stages (and 4x that); at least 256, decompose's block")
    parser.add_argument("--stages", nargs="+", default=list(STAGES), choices=STAGES)
    parser.add_argument("--dir", help="where to write the arrays (default: a temporary folder)")
    parser.add_argument("--worker", choices=STAGES, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--estimate-only", action="store_true", help="print only the paper profile's estimate")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, Path(args.data))
        return 0
    if args.estimate_only:
        print_paper_profile()
        return 0
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        rows = []
        for stage in args.stages:
            base = args.ram_n if stage in RAM_STAGES else args.n
            peaks = {}
            for n in (base, 4 * base):
                folder = Path(scratch) / f"{'ram' if stage in RAM_STAGES else 'features'}-{n}"
                if not folder.exists():
                    folder.mkdir()
                    (make_ram_data if stage in RAM_STAGES else make_feature_data)(folder, n)
                peaks[n] = measure(stage, folder)
            small, large = peaks[base]["peak_bytes"], peaks[4 * base]["peak_bytes"]
            ratio = large / max(small, 1)
            rows.append((stage, base, small, large, ratio, peaks[4 * base]["seconds"]))
            print(f"{stage:17s} N={base:>6,}: {small / 2**20:8.1f} MiB   4N={4 * base:>7,}: {large / 2**20:8.1f} MiB   "
                  f"ratio 4N/N {ratio:4.2f} ({'grows with N' if ratio > 2 else 'bounded'}), "
                  f"{peaks[4 * base]['seconds']:.1f} s at 4N", flush=True)
    growing = [stage for stage, *_, ratio, _ in rows if ratio > 2]
    print(f"\n{len(growing)} of {len(rows)} stages grow with the dataset: {', '.join(growing) or 'none'}.")
    print()
    print_paper_profile()
    return 0


GOAL_GPU_HOURS, GOAL_DISK, GOAL_RAM = 24, 10**12, 64 * 2**30  # the target: one H100-class GPU, 1 TB of disk, 64 GB


def print_paper_profile() -> None:
    "The paper profile of both papers by stage, from ood_repro.costs, against GOAL_*; which stages do not fit."
    from ood_repro.cli import requirements
    from ood_repro.costs import (ASSUMPTIONS, EXPERIMENT_WORK, by_stage, disk_needed, estimate,
                                     experiment_parameters, format_bytes, input_bytes, profile_work)

    table = estimate(profile_work({name: experiment_parameters(name) for name in EXPERIMENT_WORK}))
    stages = by_stage(table)
    print(f"The paper profile of both papers ({len(EXPERIMENT_WORK)} experiments, work they share counted once), by "
          f"stage, against one H100-class GPU for {GOAL_GPU_HOURS} hours, {format_bytes(GOAL_DISK)} of disk and "
          f"{GOAL_RAM / 2**30:.0f} GiB of RAM:")
    width = max(len(name) for name in stages.index)
    print(f"  {'stage':<{width}}  {'disk at rest':>12}  {'at its peak':>12}  {'host RAM':>9}  {'GPU hours':>9}  "
          f"{'of the goal':>11}")
    for name, row in stages.iterrows():
        print(f"  {name:<{width}}  {format_bytes(row['disk']):>12}  {format_bytes(row['disk'] + row['peak_extra']):>12}  "
              f"{format_bytes(row['ram']):>9}  {row['gpu_hours']:>9.2f}  {row['gpu_hours'] / GOAL_GPU_HOURS:>10.0%}")
    total = stages.loc["total"]
    inputs = input_bytes({dataset for name in EXPERIMENT_WORK for dataset in requirements(name)[0]})
    disk = disk_needed(table) + inputs
    print(f"\ndisk: {format_bytes(disk_needed(table))} written at the peak + {format_bytes(inputs)} of input "
          f"datasets on the same disk = {format_bytes(disk)} of {format_bytes(GOAL_DISK)}: "
          f"{'fits' if disk <= GOAL_DISK else 'does not fit'}.")
    print(f"host RAM: {format_bytes(total['ram'])} at the most ({stages.drop('total')['ram'].idxmax()}) of "
          f"{GOAL_RAM / 2**30:.0f} GiB: {'fits' if total['ram'] <= GOAL_RAM else 'does not fit'}, if every stage "
          f"streams as estimated (TagOOD's decomposition written block by block, KNN streaming its bank); the "
          f"measurements above say whether each stage does.")
    verdict = "fits" if total["gpu_hours"] <= GOAL_GPU_HOURS else (
        f"does not fit, {total['gpu_hours'] - GOAL_GPU_HOURS:.1f} hours over")
    print(f"GPU: {total['gpu_hours']:.1f} hours of {GOAL_GPU_HOURS}: {verdict}. Where they go (items of an hour or more):")
    for name, row in stages.drop("total").sort_values("gpu_hours", ascending=False).iterrows():
        items = table[(table["stage"] == name) & (table["gpu_hours"] >= 1)].sort_values("gpu_hours", ascending=False)
        if len(items):
            alone = "; over the goal on its own" if row["gpu_hours"] > GOAL_GPU_HOURS else ""
            print(f"  {name}, {row['gpu_hours']:.1f} h{alone}: "
                  + ", ".join(f"{item.what} ({item.images:,} images) {item.gpu_hours:.1f} h" for item in items.itertuples()))
    print("\nAssumptions (ood_repro.costs.ASSUMPTIONS; a measured figure replaces one there):")
    for name, record in ASSUMPTIONS.items():
        value = f"{record.value:g}" if isinstance(record.value, (int, float)) else record.value
        print(f"  {name} = {value} {record.unit}: {record.source}")


if __name__ == "__main__":
    sys.exit(main())
