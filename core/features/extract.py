"""Batched, resumable, shardable feature extraction.

`extract_features` runs ``model.features(x)`` (B, D) and ``model.forward_head(f)`` (B, K) over a
dataset and writes them to ``.npy`` files (features float16, logits float32, labels int64) that are
preallocated as ``*.partial.npy`` and filled in place (`core.features.npy_writer.NpyRowWriter`). Work
is committed in chunks: after each chunk the arrays are fsync-ed and a small ``progress.json`` is
replaced atomically (`core.workspace.atomic_file`), so a killed run re-started with the same
arguments continues from the last committed chunk and produces byte-identical files (batch boundaries
are fixed multiples of ``batch_size`` in dataset index space, independent of where a run stopped).
When every row is in, the partial files are renamed onto their final names.

`extract_to_workspace` extracts one split of a registered dataset with a registered model into
``features/<dataset>/<model>/<split>/`` and records the feature set. Under PyTorch's launcher
(``torchrun --nproc-per-node K -m core extract ...``; ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) each
rank extracts its shard and rank 0 merges them (`core.features.sharding`); the merged arrays equal a
single-process run's.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from core.data import load_manifest
from core.device import resolve_device
from core.errors import SpurAuditError, check_choice
from core.features.npy_writer import NpyRowWriter
from core.features.pipeline import AMP_CHOICES, PhotoDataset, PipelineConfig, autocast, default_workers, to_device
from core.features.sharding import DistInfo, merge_shards, process_group, shard_range, shard_rels
from core.features.store import (ARRAY_FILES, FEATURE_DTYPE, FEATURES_FILE, LOGIT_DTYPE, LOGITS_FILE,
                                 has_feature_files)
from core.models.checkpoints import load_model
from core.progress import ProgressFn, null_progress, sub_progress
from core.workspace import FeatureSetRecord, Workspace, atomic_file, fsync_dir

PROGRESS_FILE = "progress.json"
_FORMAT_VERSION = 1


@dataclass
class ExtractConfig:
    """Options of a feature extraction.

    ``batch_size``: images per forward pass. ``chunk_size``: rows per committed chunk (rounded up to a
    multiple of ``batch_size``). ``num_workers``: DataLoader worker processes. ``device``: "auto",
    "cpu", "cuda", "cuda:N", "mps". ``amp``: autocast precision on CUDA ("auto" = bf16 when supported,
    else fp16; "off" = float32); ignored on CPU/MPS. ``channels_last``: NHWC model and batches on CUDA.
    ``compile``: ``torch.compile`` the model's ``features`` (issue 14's input pipeline,
    `core.features.pipeline`).
    """

    batch_size: int = 256
    chunk_size: int = 4096
    num_workers: int = 0
    device: str = "auto"
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False

    def validate(self) -> "ExtractConfig":
        if int(self.batch_size) < 1:
            raise SpurAuditError(f"batch_size must be >= 1, got {self.batch_size}")
        if int(self.chunk_size) < 1:
            raise SpurAuditError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if int(self.num_workers) < 0:
            raise SpurAuditError(f"num_workers must be >= 0, got {self.num_workers}")
        check_choice("amp", self.amp, AMP_CHOICES)
        return self


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------
def _model_digest(model: nn.Module) -> str:
    """A hash of the model's parameters and buffers (so a resume never mixes two models' rows)."""
    h = hashlib.blake2b(digest_size=16)
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        h.update(str(t.dtype).encode() + str(tuple(t.shape)).encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _batch_bounds(start: int, stop: int, batch_size: int) -> list[tuple[int, int]]:
    """Batches ``[k*B, (k+1)*B) ∩ [start, stop)`` — fixed in dataset index space."""
    out = []
    first = (start // batch_size) * batch_size
    for b0 in range(first, stop, batch_size):
        lo, hi = max(b0, start), min(b0 + batch_size, stop)
        if hi > lo:
            out.append((lo, hi))
    return out


def _iter_batches(dataset: Dataset, bounds: Sequence[tuple[int, int]], *, num_workers: int,
                  pin_memory: bool) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    """Yield (x, y) per batch; y is None when the dataset yields images only.

    A `TensorDataset` read without workers is sliced directly (no per-sample collate)."""
    if isinstance(dataset, TensorDataset) and num_workers == 0:
        tensors = dataset.tensors
        for lo, hi in bounds:
            x = tensors[0][lo:hi]
            y = tensors[1][lo:hi] if len(tensors) > 1 else None
            yield (x.pin_memory() if pin_memory else x), y
        return
    loader = DataLoader(dataset, batch_sampler=[list(range(lo, hi)) for lo, hi in bounds], num_workers=num_workers,
                        pin_memory=pin_memory, persistent_workers=False)
    for batch in loader:
        if isinstance(batch, (list, tuple)):
            x = batch[0]
            y = batch[1] if len(batch) > 1 and torch.is_tensor(batch[1]) else None
        else:
            x, y = batch, None
        yield x, y


def _check_model(model: nn.Module) -> None:
    if not isinstance(model, nn.Module) or not callable(getattr(model, "features", None)) \
            or not callable(getattr(model, "forward_head", None)):
        raise SpurAuditError("extraction needs a model with features(x) -> (B, D) and forward_head(f) -> (B, K) "
                             "(an AuditModel from core.models.build_model/load_model)")


def _row_range(dataset: Dataset, index_range: tuple[int, int] | None) -> tuple[int, int, int]:
    """(dataset length, start, stop) of the rows to extract."""
    try:
        n_total = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise SpurAuditError("extraction needs a map-style dataset with a length (e.g. Manifest.to_dataset())") from None
    start, stop = (0, n_total) if index_range is None else (int(index_range[0]), int(index_range[1]))
    if not 0 <= start <= stop <= n_total:
        raise SpurAuditError(f"index_range {index_range} is outside the dataset [0, {n_total}]")
    return n_total, start, stop


# --------------------------------------------------------------------------------------------------
# the files of one extraction: partial arrays and progress.json
# --------------------------------------------------------------------------------------------------
Writers = dict[str, NpyRowWriter]


def _partial(out_dir: Path, fname: str) -> Path:
    return out_dir / fname.replace(".npy", ".partial.npy")


def _close(writers: Writers) -> None:
    for w in writers.values():
        w.close()


def _open_writers(out_dir: Path, shapes: dict[str, tuple] | None = None) -> Writers:
    """Create (``shapes`` given) or reopen the partial files of an extraction."""
    writers: Writers = {}
    try:
        for key, (fname, dtype) in ARRAY_FILES.items():
            writers[key] = NpyRowWriter(_partial(out_dir, fname), create_shape=None if shapes is None else shapes[key],
                                        dtype=dtype)
            if writers[key].dtype != np.dtype(dtype):
                raise ValueError(f"{fname} has dtype {writers[key].dtype}")
    except BaseException:
        _close(writers)
        raise
    return writers


@dataclass
class _Target:
    """What one `extract_features` call writes: rows ``[start, stop)`` of the dataset into ``out_dir``,
    committed every ``chunk`` rows, under the resume ``identity``."""

    out_dir: Path
    start: int
    stop: int
    chunk: int
    identity: dict[str, Any]

    @property
    def n(self) -> int:
        return self.stop - self.start

    @property
    def progress_path(self) -> Path:
        return self.out_dir / PROGRESS_FILE

    def write_state(self, status: str, done: int, dim: int, num_classes: int) -> None:
        """Replace ``progress.json`` atomically (compact JSON, sorted keys)."""
        state = {"identity": self.identity, "status": status, "done": done, "dim": dim, "num_classes": num_classes}
        with atomic_file(self.progress_path) as tmp:
            tmp.write_text(json.dumps(state, sort_keys=True), encoding="utf-8")

    def is_complete(self, state: dict | None) -> bool:
        """A previous run with this identity finished and its files are in place."""
        return bool(state and state.get("identity") == self.identity and state.get("status") == "complete"
                    and has_feature_files(self.out_dir))

    def resume(self, state: dict | None) -> tuple[Writers | None, int]:
        """(reopened partial arrays, rows committed) of an interrupted run with this identity; otherwise
        (None, 0), after deleting any stale partial files."""
        if state and state.get("identity") == self.identity and state.get("status") == "running":
            writers = None
            try:
                writers = _open_writers(self.out_dir)
                if writers["features"].shape == (self.n, state["dim"]) \
                        and writers["logits"].shape == (self.n, state["num_classes"]) \
                        and writers["labels"].shape == (self.n,):
                    return writers, int(state["done"])
            except (FileNotFoundError, ValueError, KeyError, OSError):
                pass
            if writers is not None:
                _close(writers)
        for f in self.out_dir.glob("*.partial.npy"):
            f.unlink()
        return None, 0

    def create(self, dim: int, num_classes: int) -> Writers:
        """Preallocate the partial arrays of a fresh run (now that D and K are known) and record it."""
        writers = _open_writers(self.out_dir, {"features": (self.n, dim), "logits": (self.n, num_classes),
                                               "labels": (self.n,)})
        self.write_state("running", 0, dim, num_classes)
        return writers

    def commit(self, writers: Writers, done: int) -> None:
        """fsync the arrays, then record ``done`` rows as committed."""
        for w in writers.values():
            w.commit()
        self.write_state("running", done, int(writers["features"].shape[1]), int(writers["logits"].shape[1]))

    def publish(self, writers: Writers) -> None:
        """Rename the complete partial arrays onto their final names and record the run complete."""
        for fname, _ in ARRAY_FILES.values():
            os.replace(_partial(self.out_dir, fname), self.out_dir / fname)
        fsync_dir(self.out_dir)
        self.write_state("complete", self.n, int(writers["features"].shape[1]), int(writers["logits"].shape[1]))

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        return np.load(self.out_dir / FEATURES_FILE, mmap_mode="r"), np.load(self.out_dir / LOGITS_FILE, mmap_mode="r")


# --------------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------------
def _forward(model: nn.Module, x: torch.Tensor, device: torch.device, cfg: ExtractConfig,
             features_fn=None) -> tuple[np.ndarray, np.ndarray]:
    """(features (B, D) float16, logits (B, K) float32) of one batch (uint8 batches are scaled to [0, 1]
    on the device after a non-blocking copy); logits come from the float32 features with autocast off."""
    x = to_device(x, device, PipelineConfig(channels_last=bool(cfg.channels_last)))
    with autocast(device, cfg.amp):
        feats = (features_fn or model.features)(x)
    if feats.ndim != 2 or feats.shape[0] != x.shape[0]:
        raise SpurAuditError(f"model.features returned shape {tuple(feats.shape)}; expected "
                             f"(batch={x.shape[0]}, D)")
    feats = feats.float()
    logits = model.forward_head(feats).float()  # (B, K), autocast off
    return feats.to(torch.float16).cpu().numpy(), logits.cpu().numpy()


def _extract_rows(model: nn.Module, dataset: Dataset, target: _Target, cfg: ExtractConfig, device: torch.device,
                  writers: Writers | None, done: int, progress: ProgressFn) -> Writers:
    """Extract the rows after the ``done`` committed ones, committing at every global chunk boundary
    and at the end; returns the (closed) writers. The model is in eval mode on ``device`` meanwhile."""
    was_training = model.training
    model.eval()
    model.to(device)
    pin = device.type == "cuda"
    if cfg.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    features_fn = torch.compile(model.features) if cfg.compile else model.features
    bounds = _batch_bounds(target.start + done, target.stop, int(cfg.batch_size))
    t0 = time.perf_counter()
    rows_this_run = 0
    try:
        with torch.inference_mode():
            for x, y in _iter_batches(dataset, bounds, num_workers=cfg.num_workers, pin_memory=pin):
                lo = target.start + done + rows_this_run  # absolute dataset index of this batch
                hi = lo + x.shape[0]
                feats16, logits32 = _forward(model, x, device, cfg, features_fn)
                if writers is None:  # first batch of a fresh run
                    writers = target.create(feats16.shape[1], logits32.shape[1])
                r0, r1 = lo - target.start, hi - target.start
                writers["features"].write(r0, feats16)
                writers["logits"].write(r0, logits32)
                writers["labels"].write(r0, y.cpu().numpy().astype(np.int64).reshape(-1) if y is not None
                                        else np.full(r1 - r0, -1, np.int64))
                rows_this_run += hi - lo
                committed = done + rows_this_run
                if (hi % target.chunk == 0) or hi == target.stop:  # chunk boundary (global) or the end
                    target.commit(writers, committed)
                rate = rows_this_run / max(time.perf_counter() - t0, 1e-9)
                progress(committed / target.n, f"{committed}/{target.n} rows ({rate:.0f}/s)")
    finally:
        model.train(was_training)
        if writers is not None:
            _close(writers)
    assert writers is not None
    return writers


def extract_features(model: nn.Module, dataset: Dataset, *, out_dir: str | Path, batch_size: int = 256,
                     device: str | torch.device = "auto", num_workers: int = 0, chunk_size: int = 4096,
                     index_range: tuple[int, int] | None = None, amp: str = "auto", resume_key: str | None = None,
                     channels_last: bool = True, compile: bool = False,
                     progress: ProgressFn | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Extract features and logits of ``dataset[start:stop]`` into ``out_dir`` (resumable).

    Args:
        model: has ``features(x) -> (B, D)`` and ``forward_head(f) -> (B, K)`` (an ``AuditModel``).
            It is put in eval mode and moved to ``device`` (its mode is restored afterwards).
        dataset: a map-style torch Dataset yielding ``(x, y, ...)`` or ``x`` with x a (C, H, W) tensor
            (``Manifest.to_dataset()``, ``TensorDataset``).
        out_dir: folder receiving ``features.npy`` (n, D) float16, ``logits.npy`` (n, K) float32,
            ``labels.npy`` (n,) int64 (-1 when the dataset yields no labels) and ``progress.json``.
            Row i is dataset index ``start + i``.
        index_range: ``(start, stop)`` rows of the dataset (default: all).
        chunk_size: rows per commit (rounded up to a multiple of ``batch_size``).
        amp: autocast precision on CUDA ("auto", "bf16", "fp16", "off"); CPU/MPS always run float32.
            Logits are computed from the float32 features with autocast off.
        resume_key: extra identity of the inputs (e.g. the manifest version); a run resumes only when
            the dataset length, range, batch/chunk size, model weights and this key all match,
            otherwise it starts over.

    Returns:
        ``(features, logits)`` as read-only memmaps of shapes (n, D) float16 and (n, K) float32.
        An empty range returns arrays of shape (0, 0).

    A previous complete run with the same identity is returned without recomputation.
    """
    cfg = ExtractConfig(batch_size=batch_size, chunk_size=chunk_size, num_workers=num_workers,
                        device=str(device), amp=amp, channels_last=channels_last, compile=compile).validate()
    _check_model(model)
    progress = progress or null_progress
    n_total, start, stop = _row_range(dataset, index_range)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if stop == start:
        progress(1.0, "empty range")
        return np.zeros((0, 0), FEATURE_DTYPE), np.zeros((0, 0), LOGIT_DTYPE)
    bs = int(cfg.batch_size)
    chunk = int(math.ceil(cfg.chunk_size / bs) * bs)  # commits fall on batch boundaries
    identity = {"format": _FORMAT_VERSION, "n_total": n_total, "start": start, "stop": stop, "batch_size": bs,
                "chunk_size": chunk, "model": _model_digest(model), "key": resume_key}
    target = _Target(out_dir=out_dir, start=start, stop=stop, chunk=chunk, identity=identity)
    dev = resolve_device(device)
    state = _read_json(target.progress_path)
    if target.is_complete(state):
        progress(1.0, f"{target.n} rows already extracted")
        return target.result()
    writers, done = target.resume(state)
    writers = _extract_rows(model, dataset, target, cfg, dev, writers, done, progress)
    target.publish(writers)
    progress(1.0, f"{target.n} rows extracted")
    return target.result()


# --------------------------------------------------------------------------------------------------
# workspace (+ torchrun)
# --------------------------------------------------------------------------------------------------
def _resume_key(ws: Workspace, dataset: str, model: str, split: str) -> str:
    rec = ws.get_dataset(dataset)
    stamp = ""
    try:
        st = rec.manifest_path.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        pass
    return f"{dataset}/{split}/{model}/{stamp}"


def _split_dataset(ws: Workspace, dataset: str, split: str, image_size: int | None = None) -> Dataset:
    """The split as a torch Dataset: images as stored (float in [0, 1]), or with ``image_size`` decoded,
    resized and centre-cropped in the DataLoader workers as uint8 (`core.features.pipeline.PhotoDataset`)."""
    manifest = load_manifest(ws, dataset).split(split)
    if len(manifest) == 0:
        raise SpurAuditError(f"split {split!r} of dataset {dataset!r} is empty; pick another split")
    if image_size is not None:
        return PhotoDataset.from_manifest(manifest, image_size=int(image_size))
    return manifest.to_dataset()


def _workers(num_workers: int | None, image_size: int | None) -> int:
    """Decode workers: as given; by default from the cores for photo pipelines, else 0 (decoded tensors)."""
    if num_workers is not None:
        return int(num_workers)
    return default_workers() if image_size is not None else 0


def _record(ws: Workspace, dataset: str, model: str, split: str, out_rel: str, *, n: int, dim: int,
            num_classes: int) -> FeatureSetRecord:
    return ws.add_feature_set(dataset=dataset, model=model, split=split, features_rel=f"{out_rel}/{FEATURES_FILE}",
                              logits_rel=f"{out_rel}/{LOGITS_FILE}", n=n, dim=dim, num_classes=num_classes)


def _extract_sharded(ws: Workspace, dataset: str, model: str, split: str, module: nn.Module, data: Dataset, *,
                     out_rel: str, dist_info: DistInfo, cfg: ExtractConfig, device: torch.device, resume_key: str,
                     progress: ProgressFn) -> FeatureSetRecord:
    """Under torchrun: this rank extracts its shard; rank 0 merges the shards, records the feature set
    and removes the shards (and leftovers of an earlier single-process run); every rank returns the record."""
    n = len(data)  # type: ignore[arg-type]
    with process_group():
        world, rank = dist_info.world_size, dist_info.rank
        rels = shard_rels(out_rel, world)
        lo, hi = shard_range(n, rank=rank, world_size=world, batch_size=cfg.batch_size)
        extract_features(module, data, out_dir=ws.path(rels[rank]), batch_size=cfg.batch_size, device=device,
                         num_workers=cfg.num_workers, chunk_size=cfg.chunk_size, index_range=(lo, hi), amp=cfg.amp,
                         resume_key=resume_key, channels_last=cfg.channels_last, compile=cfg.compile,
                         progress=sub_progress(progress, 0.0, 0.95))
        dist.barrier()
        if rank == 0:
            progress(0.95, f"merging {world} shards")
            dim, k = merge_shards(ws, out_rel, rels, n=n)
            _record(ws, dataset, model, split, out_rel, n=n, dim=dim, num_classes=k)
            shutil.rmtree(ws.path(f"{out_rel}/shards"), ignore_errors=True)
            # leftovers of an earlier single-process run no longer match the merged files
            for stale in [ws.path(f"{out_rel}/{PROGRESS_FILE}"), *ws.path(out_rel).glob("*.partial.npy")]:
                stale.unlink(missing_ok=True)
        dist.barrier()
        progress(1.0, "done")
        return ws.get_feature_set(dataset, model, split)


def extract_to_workspace(ws: Workspace, dataset: str, model: str, split: str, *, batch_size: int = 256,
                         device: str = "auto", num_workers: int | None = 0, chunk_size: int = 4096, amp: str = "auto",
                         module: nn.Module | None = None, data: Dataset | None = None,
                         image_size: int | None = None, channels_last: bool = True, compile: bool = False,
                         progress: ProgressFn | None = None) -> FeatureSetRecord:
    """Extract split ``split`` of registered dataset ``dataset`` with registered model ``model`` into
    ``features/<dataset>/<model>/<split>/`` and record the feature set.

    The model is loaded with ``core.models.load_model(ws.get_model(model).checkpoint)`` and the data
    from ``core.data.load_manifest(ws, dataset).split(split).to_dataset()`` unless ``module``/``data``
    are given (rows of ``data`` must align with the manifest split). Resumable (see
    `extract_features`). Under torchrun (WORLD_SIZE > 1) every rank calls this; each extracts its
    shard, rank 0 merges and records, and all ranks return the record.

    Photo datasets (images of many sizes): ``image_size`` (e.g. 224) decodes, resizes (shorter side
    256/224 of it) and centre-crops in ``num_workers`` DataLoader workers (None = from the cores) and
    sends uint8 batches (`core.features.pipeline`); ``channels_last``/``compile`` as in `ExtractConfig`.
    """
    progress = progress or null_progress
    num_workers = _workers(num_workers, image_size)
    ws.get_dataset(dataset)
    ws.get_model(model)
    if not str(split).strip():
        raise SpurAuditError("split is empty; use train, val or test")
    dist_info = DistInfo.from_env()
    dev = resolve_device(device)
    if dist_info.distributed and dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", dist_info.local_rank)
    if module is None:
        module = load_model(ws.get_model(model).checkpoint, device="cpu")
    if data is None:
        data = _split_dataset(ws, dataset, split, image_size)
    n = len(data)  # type: ignore[arg-type]
    if n == 0:
        raise SpurAuditError(f"split {split!r} of dataset {dataset!r} is empty; pick another split")
    out_rel = ws.feature_dir(dataset, model, split)
    key = _resume_key(ws, dataset, model, split) + (f"/image_size={int(image_size)}" if image_size else "")
    if dist_info.distributed:
        cfg = ExtractConfig(batch_size=batch_size, chunk_size=chunk_size, num_workers=num_workers, device=str(device),
                            amp=amp, channels_last=channels_last, compile=compile).validate()
        return _extract_sharded(ws, dataset, model, split, module, data, out_rel=out_rel, dist_info=dist_info,
                                cfg=cfg, device=dev, resume_key=key, progress=progress)
    feats, logits = extract_features(module, data, out_dir=ws.path(out_rel), batch_size=batch_size, device=dev,
                                     num_workers=num_workers, chunk_size=chunk_size, amp=amp, resume_key=key,
                                     channels_last=channels_last, compile=compile, progress=progress)
    return _record(ws, dataset, model, split, out_rel, n=n, dim=int(feats.shape[1]), num_classes=int(logits.shape[1]))


def extract_splits(ws: Workspace, dataset: str, model: str, splits: Sequence[str] | str = "all", *,
                   batch_size: int = 256, device: str = "auto", num_workers: int | None = 0, chunk_size: int = 4096,
                   amp: str = "auto", image_size: int | None = None, channels_last: bool = True,
                   compile: bool = False, progress: ProgressFn | None = None) -> list[FeatureSetRecord]:
    """Extract several splits ("all" = every non-empty split of the manifest); returns their records."""
    if splits == "all" or splits == ["all"]:
        names = list(load_manifest(ws, dataset).splits())
    else:
        names = [splits] if isinstance(splits, str) else list(splits)
    if not names:
        raise SpurAuditError(f"dataset {dataset!r} has no non-empty split to extract")
    with process_group():  # one group for all splits under torchrun
        records = []
        for i, name in enumerate(names):
            part = sub_progress(progress, i / len(names), (i + 1) / len(names))
            records.append(extract_to_workspace(ws, dataset, model, name, batch_size=batch_size, device=device,
                                                num_workers=num_workers, chunk_size=chunk_size, amp=amp,
                                                image_size=image_size, channels_last=channels_last, compile=compile,
                                                progress=lambda f, m, _p=part, _s=name: _p(f, f"{_s}: {m}")))
    return records


__all__ = ["AMP_CHOICES", "DistInfo", "ExtractConfig", "PROGRESS_FILE", "extract_features", "extract_splits",
           "extract_to_workspace", "shard_range"]
