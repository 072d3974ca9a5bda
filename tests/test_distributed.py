"""Two CPU processes (gloo) extract the toy world into one cache entry, equal to a single-process run.

`ood-repro extract` is started under `accelerate launch --multi_gpu --num_processes 2` (torchrun underneath), with
`--device cpu`: each process computes every other shard and rank 0 merges them (`ood_repro.distributed`). The
merged entry must be the single-process entry exactly: same key, equal arrays, same shards and skipped items. Each
process reports the shards it computed, which shows the work was really split (the pitfall this guards against:
`accelerate launch --cpu` starts one process, and an Accelerator without `cpu=True` on a machine without GPUs makes
every process rank 0 of 1, each doing all the work).
"""
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from ood_repro.backbones import get_extractor
from ood_repro.cache import FeatureCache, extract
from ood_repro.data import get_dataset


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_two_processes_merge_into_the_single_process_entry(tmp_path):
    script = Path(sys.executable).parent / "ood-repro"
    assert script.is_file(), f"{script} is missing: run `make install` (settings.ini declares the console script)"
    env = {key: value for key, value in os.environ.items() if not key.startswith("OOD_REPRO_CONFIG")}
    env.update(OOD_REPRO_CACHE=str(tmp_path / "two_processes"), HF_HUB_OFFLINE="1")
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
               "--main_process_port", str(free_port()), str(script),
               "extract", "--model", "resnet50", "--dataset", "imagenet-val", "--device", "cpu",
               "--shard-size", "40", "--batch-size", "20"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"

    extractor = get_extractor("resnet50", "smoke", seed=0)
    dataset = get_dataset("imagenet-val", "smoke", transform=extractor.transform)
    single = extract(extractor, dataset, FeatureCache(tmp_path / "one_process"), shard_size=40, batch_size=20,
                     progress=False)
    n_shards = len(single.manifest["shards"])
    assert n_shards == 8, "the toy ImageNet validation set has 300 images: 8 shards of up to 40"

    assert "rank 0 of 2: computed shards 0, 2, 4, 6" in result.stdout, result.stdout
    assert "rank 1 of 2: computed shards 1, 3, 5, 7" in result.stdout, result.stdout
    assert result.stdout.count("cache entry ") == 1, "only rank 0 reports the merged entry"

    merged = FeatureCache(tmp_path / "two_processes").open(single.key)
    assert sorted(path.name for path in merged.path.iterdir()) == ["data", "plan.json"]
    assert merged.names == single.names
    for name in single.names:
        assert merged[name].dtype == single[name].dtype and np.array_equal(merged[name], single[name]), name
    assert merged.skipped == single.skipped
    assert merged.manifest["shards"] == single.manifest["shards"]
