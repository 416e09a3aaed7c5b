"""Scaling extraction out with PyTorch's launcher (``torchrun --nproc-per-node K -m core extract ...``).

Each rank takes a fixed contiguous range of whole batches (`shard_range`; no padded
``DistributedSampler``) and writes its shard to ``features/<dataset>/<model>/<split>/shards/<K>-<rank>/``;
rank 0 waits at a barrier and `merge_shards` concatenates the shards in rank order into the split's
final arrays. Because batch boundaries are global, the merged files equal a single-process run's.
The process group uses gloo: it serves barriers only, compute stays on each rank's device (the same
path runs on CPU, which is how it is tested).
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch.distributed as dist

from core.errors import SpurAuditError
from core.features.npy_writer import NpyRowWriter
from core.features.store import ARRAY_FILES, has_feature_files
from core.workspace import Workspace

MERGE_BLOCK_ROWS = 65536   # rows copied per write while merging (bounded memory)


@dataclass
class DistInfo:
    """This process's place in a torchrun launch (``world_size`` 1 = not launched by torchrun)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @classmethod
    def from_env(cls) -> "DistInfo":
        """Read torch.distributed's launcher variables (RANK, WORLD_SIZE, LOCAL_RANK)."""
        try:
            return cls(rank=int(os.environ.get("RANK", "0")), world_size=int(os.environ.get("WORLD_SIZE", "1")),
                       local_rank=int(os.environ.get("LOCAL_RANK", "0")))
        except ValueError:
            raise SpurAuditError("RANK/WORLD_SIZE/LOCAL_RANK must be integers (set by torchrun)") from None


def shard_range(n: int, *, rank: int, world_size: int, batch_size: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of rank ``rank``: a fixed contiguous run of whole batches (the last rank may
    get the short final batch; ranks past the number of batches get an empty range)."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise SpurAuditError(f"rank {rank} is not in [0, world_size={world_size})")
    n_batches = math.ceil(n / batch_size)
    b0 = rank * n_batches // world_size
    b1 = (rank + 1) * n_batches // world_size
    return min(b0 * batch_size, n), min(b1 * batch_size, n)


def shard_rels(out_rel: str, world_size: int) -> list[str]:
    """Workspace-relative folders of the ``world_size`` shards of the feature folder ``out_rel``."""
    return [f"{out_rel}/shards/{world_size}-{r}" for r in range(world_size)]


@contextlib.contextmanager
def process_group() -> Iterator[None]:
    """Join torchrun's process group (gloo: used for barriers only; compute stays on each rank's
    device) unless already joined; leave it on exit when this call joined it. Outside torchrun it
    does nothing."""
    if not DistInfo.from_env().distributed or dist.is_initialized():
        yield
        return
    dist.init_process_group(backend="gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def merge_shards(ws: Workspace, out_rel: str, rels: list[str], *, n: int) -> tuple[int, int]:
    """Concatenate the shard arrays of the folders ``rels`` (in rank order; empty shards skipped) into
    ``out_rel``'s final files, streamed and each written atomically. Returns (D, K)."""
    parts = []
    for rel in rels:
        folder = ws.path(rel)
        if not has_feature_files(folder):
            continue  # an empty shard
        parts.append({key: np.load(folder / fname, mmap_mode="r") for key, (fname, _) in ARRAY_FILES.items()})
    if not parts:
        raise SpurAuditError("no shard produced any rows; is the split empty?")
    dim, k = parts[0]["features"].shape[1], parts[0]["logits"].shape[1]
    total = sum(p["features"].shape[0] for p in parts)
    if total != n:
        raise SpurAuditError(f"shards hold {total} rows but the split has {n}; re-run the extraction")
    shapes = {"features": (n, dim), "logits": (n, k), "labels": (n,)}
    for key, (fname, dtype) in ARRAY_FILES.items():
        with ws.atomic_path(f"{out_rel}/{fname}") as tmp:
            _concatenate_rows([p[key] for p in parts], tmp, shape=shapes[key], dtype=dtype)
    return int(dim), int(k)


def _concatenate_rows(sources: list[np.ndarray], path: Path, *, shape: tuple[int, ...], dtype: object) -> None:
    """Write the rows of ``sources`` one after the other into a new ``.npy`` of ``shape`` at ``path``."""
    out = NpyRowWriter(path, create_shape=shape, dtype=dtype)
    try:
        row = 0
        for src in sources:
            for s in range(0, src.shape[0], MERGE_BLOCK_ROWS):
                piece = np.asarray(src[s:s + MERGE_BLOCK_ROWS])
                out.write(row, piece)
                row += piece.shape[0]
        out.commit()
    finally:
        out.close()


__all__ = ["DistInfo", "merge_shards", "process_group", "shard_range", "shard_rels"]
