"""torchrun sharding (`core.features.sharding`): rank ranges and a real two-process gloo run."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from core.features.extract import extract_splits
from core.features.sharding import shard_range
from core.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _standin import array_bytes, make_toy_workspace  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
torch.set_num_threads(1)


def test_shard_ranges_cover_whole_batches() -> None:
    for n, world, bs in [(103, 2, 8), (103, 3, 8), (5, 4, 8), (64, 4, 16), (1000, 7, 32)]:
        ranges = [shard_range(n, rank=r, world_size=world, batch_size=bs) for r in range(world)]
        assert ranges[0][0] == 0 and ranges[-1][1] == n
        for (a0, a1), (b0, b1) in zip(ranges, ranges[1:]):
            assert a1 == b0 and a0 <= a1
        assert all(lo % bs == 0 for lo, _ in ranges)


def test_torchrun_two_processes_equal_single(tmp_path: Path) -> None:
    """`torchrun --nproc-per-node 2 -m core extract ...` (gloo, CPU) gives the single-process files."""
    single = make_toy_workspace(tmp_path / "single")
    shutil.copytree(single.root, tmp_path / "dist")
    ws2 = Workspace(tmp_path / "dist")
    records = extract_splits(single, "toy", "cnn", "all", batch_size=4, chunk_size=8, device="cpu")
    assert [r.split for r in records] == ["train", "val"]

    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR",
                                                              "MASTER_PORT")}
    env.update(PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           "-m", "core", "extract", "--dataset", "toy", "--model", "cnn", "--split", "all",
                           "--batch-size", "4", "--chunk-size", "8", "--device", "cpu", "--workspace", str(ws2.root),
                           "--json"], env=env, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(out) == 1  # only rank 0 reports
    assert [(f["split"], f["n"]) for f in out[0]["feature_sets"]] == [("train", 20), ("val", 10)]
    for split in ("train", "val"):
        a, b = single.get_feature_set("toy", "cnn", split), ws2.get_feature_set("toy", "cnn", split)
        assert (b.n, b.dim, b.num_classes) == (a.n, a.dim, a.num_classes)
        assert array_bytes(b.features_path.parent) == array_bytes(a.features_path.parent)
        assert not (b.features_path.parent / "shards").exists()
        assert not (b.features_path.parent / "progress.json").exists()  # the sharded path ran, not one rank alone
