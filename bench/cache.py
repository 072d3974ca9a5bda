"""Benchmark what the feature cache's checksums cost: writing, merging, opening and verifying an entry of --gib GiB.

Run: .venv/bin/python bench/cache.py [--gib 1.0] [--width 16384] [--shard-size 1024] [--repeats 3] [--dir DIR]

Builds one entry of --gib GiB of float32 features (rows of --width values, shards of --shard-size rows) with
`extract` and a synthetic extractor, in a temporary directory (or under --dir), and a second one of exactly
VERIFY_CONTENT_BYTES (the size up to which opening an entry reads every byte). Then prints:

- merging the shards into the entry (`consolidate`, which checks every shard byte against its checksum) against a
  plain concatenation of the same shard files (same reads and writes, no hashing);
- the disk the merge needs beyond the shards: the peak of the files in `shards/` and `merging/`, sampled at each of
  its events (a shard both merged and still in its folder included), as a fraction of the entry; against the
  previous design, which copied every shard before deleting any (measured as the shards plus their plain
  concatenation);
- opening the large entry (`FeatureCache.open`: sizes and headers only, since it is above the limit), against
  reading and checking its manifest alone (what opening an entry did before checksums);
- opening the entry at the limit (every byte hashed);
- `verify` of the large entry (every byte hashed) against a plain read of all its bytes, both from the page cache
  ("warm") and with the files dropped from the page cache first ("cold", posix_fadvise DONTNEED, where supported);
- sha256 throughput on this machine.

Checks on the way: the merge's peak extra disk stays under two shards, the entry opens, verifies clean, a flipped byte is found by `verify` in the right shard, and the
entry is repaired by `extract`. The script exits with status 1 if any of these fails; timings are only printed.
"""
import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

# Benchmark the checkout this script lives in, not whichever ood_repro happens to be installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from timing import best_time  # noqa: E402
from ood_repro import cache, store  # noqa: E402
from ood_repro.cache import FeatureCache, consolidate, extract, verify_cache  # noqa: E402


class Rows(torch.utils.data.Dataset):
    "n items whose 'image' is their own index: the extractor makes the rows."
    name = "bench-rows"

    def __init__(self, n: int):
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, index: int) -> dict:
        return {"image": torch.tensor([float(index)]), "label": index % 10, "index": index, "error": None}

    def manifest_id(self) -> str:
        return f"bench-rows-{self.n}"


class WideExtractor:
    "Rows of `width` pseudo-random float32 values, seeded by the batch's first index (so reruns give the same bytes)."

    def __init__(self, width: int):
        self.width = width

    def cache_id(self) -> dict:
        return {"model_id": "bench-wide", "weights_id": "none", "preprocessing": "none", "extractor_version": 1,
                "width": self.width}

    def to(self, device):
        return self

    def __call__(self, images: torch.Tensor) -> dict:
        generator = torch.Generator().manual_seed(int(images[0, 0]))
        return {"features": torch.rand(len(images), self.width, generator=generator)}


class Stop(Exception):
    "Raised from on_event to leave the shards unmerged."


def stop_before_merge(event: str, info: dict) -> None:
    if event == "consolidating":
        raise Stop


def data_files(entry) -> list:
    return sorted(entry.data_dir.glob("*.npy"))


def drop_from_page_cache(paths) -> bool:
    "Ask the kernel to forget the cached pages of `paths` (clean after fsync); False where it cannot be asked."
    if not hasattr(os, "posix_fadvise"):
        return False
    for path in paths:
        descriptor = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(descriptor, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(descriptor)
    return True


def read_all(paths, chunk: int = 8 * 2**20) -> int:
    "Read every byte of `paths` through one buffer, as verification does, without hashing."
    buffer, total = bytearray(chunk), 0
    for path in paths:
        with open(path, "rb") as file:
            while read := file.readinto(buffer):
                total += read
    return total


def disk_bytes(*folders: Path) -> int:
    "The disk taken by the files under `folders`: their allocated blocks (a missing folder takes none)."
    return sum(path.stat().st_blocks * 512 for folder in folders for path in folder.rglob("*") if path.is_file())


def concatenate_plain(sources, destination: Path) -> None:
    "The merge's I/O without its checks: read each shard file whole, write its bytes after the other's, fsync."
    with open(destination, "wb") as output:
        for source in sources:
            output.write(Path(source).read_bytes())
        output.flush()
        os.fsync(output.fileno())


def build(root: Path, n_rows: int, width: int, shard_size: int, merge: bool = True):
    "Extract the entry; unless `merge`, leave its shards unmerged. The entry and the extraction's wall time."
    started = time.perf_counter()
    try:
        entry = extract(WideExtractor(width), Rows(n_rows), FeatureCache(root), batch_size=256, shard_size=shard_size,
                        progress=False, on_event=None if merge else stop_before_merge)
    except Stop:
        entry = FeatureCache(root).entry(store.cache_key(**cache.extraction_parts(WideExtractor(width), Rows(n_rows))))
    return entry, time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--gib", type=float, default=1.0, help="size of the large entry's features, GiB")
    parser.add_argument("--width", type=int, default=16384, help="float32 values per row")
    parser.add_argument("--shard-size", type=int, default=1024, help="rows per shard")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="where to build the entries (default: a new temporary directory)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    row_bytes = 4 * args.width
    n_large = int(args.gib * 2**30) // row_bytes
    n_limit = (cache.VERIFY_CONTENT_BYTES - 3 * 128) // (row_bytes + 16)  # labels and indices: 8 bytes each, headers
    work = Path(tempfile.mkdtemp(prefix="ood_repro_bench_cache_", dir=args.dir))
    failures = []
    try:
        data = np.random.default_rng(0).integers(0, 255, 256 * 2**20, dtype=np.uint8)
        seconds, _ = best_time(lambda: hashlib.sha256(data).hexdigest(), args.repeats)
        print(f"sha256 on this machine: {data.nbytes / seconds / 1e9:.2f} GB/s (one core)")

        large, seconds = build(work / "large", n_large, args.width, args.shard_size, merge=False)
        shards = large.finished_shards()
        print(f"\nlarge entry: {n_large} rows of {args.width} float32 = {n_large * row_bytes / 2**30:.2f} GiB, "
              f"{len(shards)} shards; extraction to unmerged shards {seconds:.1f} s")
        sources = [large.shard_path(shard) / "features.npy" for shard in shards]
        plain, _ = best_time(lambda: concatenate_plain(sources, work / "plain.npy"), args.repeats)
        shards_disk = disk_bytes(large.shards_dir)
        copied_disk = disk_bytes(large.shards_dir) + (work / "plain.npy").stat().st_blocks * 512
        (work / "plain.npy").unlink()
        samples = []
        started = time.perf_counter()
        consolidate(large, on_event=lambda event, info: samples.append(disk_bytes(large.shards_dir, large.merge_dir)))
        merged = time.perf_counter() - started
        print(f"merge with checks (consolidate): {merged:.2f} s; plain concatenation of the same shard files: "
              f"{plain:.2f} s; ratio {merged / plain:.2f}")
        entry_bytes, shard_bytes = disk_bytes(large.data_dir), shards_disk / len(shards)
        extra, copy_extra = max(samples) - shards_disk, copied_disk - shards_disk
        print(f"disk beyond the shards ({shards_disk / 2**20:.0f} MiB) while merging, peak of {len(samples)} samples: "
              f"{extra / 2**20:.1f} MiB = {extra / entry_bytes:.3f} of the entry ({extra / shard_bytes:.2f} shards); "
              f"copying the shards first (the previous design): {copy_extra / 2**20:.0f} MiB = "
              f"{copy_extra / entry_bytes:.3f} of the entry")
        if extra >= 2 * shard_bytes:
            failures.append(f"the merge needed {extra / shard_bytes:.2f} shards of disk beyond the shards, not under 2")

        size = large.size_bytes if large.complete else 0
        opened, entry = best_time(lambda: FeatureCache(large.path.parent).open(large.key), args.repeats)
        before, _ = best_time(lambda: cache.CacheEntry(large.path).manifest, args.repeats)
        print(f"\nread and check the manifest only (what opening did before checksums): {before * 1e3:.2f} ms")
        what = "above" if size > cache.VERIFY_CONTENT_BYTES else "NOT above (a quick run)"
        print(f"open the large entry ({size / 2**30:.2f} GiB, {what} the {cache.VERIFY_CONTENT_BYTES / 2**20:.0f} MiB "
              f"limit up to which every byte is checked): {opened * 1e3:.2f} ms")
        if not np.array_equal(entry["features"][:3], WideExtractor(args.width)(torch.zeros(3, 1))["features"].numpy()):
            failures.append("the large entry's first rows differ from the extractor's")
        files = data_files(large)
        verified, found = best_time(large.verify, args.repeats)
        read, total = best_time(lambda: read_all(files), args.repeats)
        print(f"verify, warm (page cache): {verified:.2f} s = {total / verified / 1e9:.2f} GB/s; plain read of the same "
              f"{total / 2**30:.2f} GiB: {read:.2f} s; ratio {verified / read:.1f}")
        if found:
            failures.append(f"an intact entry verified with damage: {found}")
        if drop_from_page_cache(files):
            started = time.perf_counter()
            large.verify()
            cold_verified = time.perf_counter() - started
            drop_from_page_cache(files)
            started = time.perf_counter()
            read_all(files)
            cold_read = time.perf_counter() - started
            print(f"verify, cold (files dropped from the page cache first): {cold_verified:.2f} s; plain cold read: "
                  f"{cold_read:.2f} s; ratio {cold_verified / cold_read:.1f}")
        else:
            print("verify, cold: not measured (no posix_fadvise here)")

        at_limit, seconds = build(work / "limit", n_limit, args.width, args.shard_size)
        opened, _ = best_time(lambda: FeatureCache(at_limit.path.parent).open(at_limit.key), args.repeats)
        if at_limit.size_bytes > cache.VERIFY_CONTENT_BYTES:
            failures.append("the entry at the limit is above it")
        print(f"\nopen an entry at the limit ({at_limit.size_bytes / 2**20:.1f} MiB, every byte checked): "
              f"{opened:.3f} s")
        shutil.rmtree(at_limit.path)

        # a flipped byte in the middle shard: verify must name it, extract must repair it (that shard alone)
        spec, damaged = large.manifest["files"]["features.npy"], len(shards) // 2
        start, stop, _ = spec["ranges"][damaged]
        with open(large.data_dir / "features.npy", "r+b") as file:
            file.seek((start + stop) // 2)
            value = file.read(1)[0]
            file.seek((start + stop) // 2)
            file.write(bytes([value ^ 0xFF]))
        found = verify_cache(FeatureCache(large.path.parent))[large.key]
        if [(item.file, item.shard) for item in found] != [("data/features.npy", damaged)]:
            failures.append(f"verify found {found}, not shard {damaged} of data/features.npy")
        computed = []
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            extract(WideExtractor(args.width), Rows(n_large), FeatureCache(large.path.parent), batch_size=256,
                    shard_size=args.shard_size, progress=False,
                    on_event=lambda event, info: computed.append(info["shard"]) if event == "shard_written" else None)
        print(f"repair of one flipped byte by extract: shards {computed} computed again, "
              f"{time.perf_counter() - started:.2f} s (its check of the marked shard included)")
        if computed != [damaged] or verify_cache(FeatureCache(large.path.parent))[large.key]:
            failures.append(f"the repair computed {computed} and left the entry damaged or not")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for failure in failures:
        print(f"FAILED: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
