"""Batched, resumable, shardable feature extraction.

`extract_features` runs ``model.features(x)`` (B, D) and ``model.forward_head(f)`` (B, K) over a
dataset and writes them to ``.npy`` files (features float16, logits float32, labels int64) that are
preallocated with ``np.lib.format.open_memmap`` and filled in place. Work is committed in chunks:
after each chunk the memmaps are flushed and a small ``progress.json`` is replaced atomically, so a
killed run re-started with the same arguments continues from the last committed chunk and produces
byte-identical files (batch boundaries are fixed multiples of ``batch_size`` in dataset index space,
independent of where a run stopped).

`extract_to_workspace` extracts one split of a registered dataset with a registered model into
``features/<dataset>/<model>/<split>/`` and records the feature set. Under PyTorch's launcher
(``torchrun --nproc-per-node K -m core extract ...``; ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` set) each
rank takes a fixed contiguous range of whole batches (no padded ``DistributedSampler``), writes its
shard, and rank 0 waits at a gloo barrier, merges the shards and records the feature set. Because
batch boundaries are global, the merged arrays equal a single-process run's.
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
from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from core.device import resolve_device
from core.errors import SpurAuditError, check_choice
from core.features.store import FEATURE_DTYPE, FEATURES_FILE, LABELS_FILE, LOGIT_DTYPE, LOGITS_FILE
from core.progress import ProgressFn, null_progress, sub_progress

if TYPE_CHECKING:  # pragma: no cover
    from core.workspace import FeatureSetRecord, Workspace

PROGRESS_FILE = "progress.json"
AMP_CHOICES = ("auto", "bf16", "fp16", "off")
_FORMAT_VERSION = 1


@dataclass
class ExtractConfig:
    """Options of a feature extraction.

    ``batch_size``: images per forward pass. ``chunk_size``: rows per committed chunk (rounded up to a
    multiple of ``batch_size``). ``num_workers``: DataLoader worker processes. ``device``: "auto",
    "cpu", "cuda", "cuda:N", "mps". ``amp``: autocast precision on CUDA ("auto" = bf16 when supported,
    else fp16; "off" = float32); ignored on CPU/MPS.
    """

    batch_size: int = 256
    chunk_size: int = 4096
    num_workers: int = 0
    device: str = "auto"
    amp: str = "auto"

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


def _write_json_atomic(path: Path, obj: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    if device.type != "cuda" or amp == "off":
        return contextlib.nullcontext()
    if amp == "auto":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


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


class _NpyRowWriter:
    """Writes rows into a preallocated ``.npy`` file with positional writes (``os.pwrite``).

    Unlike a writable memmap, written pages are not mapped into this process, so the extractor's
    resident memory stays flat however large N is; ``commit`` fsyncs."""

    def __init__(self, path: Path, *, create_shape: tuple[int, ...] | None = None, dtype: Any = None) -> None:
        self.path = path
        if create_shape is not None:  # preallocate: header + sparse body
            mm = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=create_shape)
            del mm
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) \
                else np.lib.format.read_array_header_2_0
            shape, fortran, file_dtype = read_header(fh)
            self.offset = fh.tell()
        if fortran:
            raise ValueError(f"{path} is Fortran-ordered")
        self.shape: tuple[int, ...] = tuple(shape)
        self.dtype = np.dtype(file_dtype)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self.fd = os.open(path, os.O_RDWR)

    def write(self, row: int, values: np.ndarray) -> None:
        data = np.ascontiguousarray(values, dtype=self.dtype)
        if data.shape[1:] != self.shape[1:]:
            raise SpurAuditError(f"rows of shape {data.shape[1:]} do not fit {self.path.name} {self.shape}")
        buf = memoryview(data).cast("B")
        pos = self.offset + row * self.row_bytes
        while len(buf):
            written = os.pwrite(self.fd, buf, pos)
            buf, pos = buf[written:], pos + written

    def commit(self) -> None:
        os.fsync(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_ARRAYS = {"features": (FEATURES_FILE, FEATURE_DTYPE), "logits": (LOGITS_FILE, LOGIT_DTYPE),
           "labels": (LABELS_FILE, np.int64)}


def _partial(out_dir: Path, fname: str) -> Path:
    return out_dir / fname.replace(".npy", ".partial.npy")


def _open_writers(out_dir: Path, shapes: dict[str, tuple] | None = None) -> dict[str, _NpyRowWriter]:
    """Create (``shapes`` given) or reopen the partial files of an extraction."""
    writers: dict[str, _NpyRowWriter] = {}
    try:
        for key, (fname, dtype) in _ARRAYS.items():
            writers[key] = _NpyRowWriter(_partial(out_dir, fname), create_shape=None if shapes is None else shapes[key],
                                         dtype=dtype)
            if writers[key].dtype != np.dtype(dtype):
                raise ValueError(f"{fname} has dtype {writers[key].dtype}")
    except BaseException:
        for w in writers.values():
            w.close()
        raise
    return writers


def _final_exists(out_dir: Path) -> bool:
    return all((out_dir / f).exists() for f in (FEATURES_FILE, LOGITS_FILE, LABELS_FILE))


# --------------------------------------------------------------------------------------------------
# extraction
# --------------------------------------------------------------------------------------------------
def extract_features(model: nn.Module, dataset: Dataset, *, out_dir: str | Path, batch_size: int = 256,
                     device: str | torch.device = "auto", num_workers: int = 0, chunk_size: int = 4096,
                     index_range: tuple[int, int] | None = None, amp: str = "auto", resume_key: str | None = None,
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
                        device=str(device), amp=amp).validate()
    _check_model(model)
    progress = progress or null_progress
    try:
        n_total = len(dataset)  # type: ignore[arg-type]
    except TypeError:
        raise SpurAuditError("extraction needs a map-style dataset with a length (e.g. Manifest.to_dataset())") from None
    start, stop = (0, n_total) if index_range is None else (int(index_range[0]), int(index_range[1]))
    if not 0 <= start <= stop <= n_total:
        raise SpurAuditError(f"index_range {index_range} is outside the dataset [0, {n_total}]")
    n = stop - start
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if n == 0:
        progress(1.0, "empty range")
        return np.zeros((0, 0), FEATURE_DTYPE), np.zeros((0, 0), LOGIT_DTYPE)

    bs = int(cfg.batch_size)
    chunk = int(math.ceil(cfg.chunk_size / bs) * bs)
    dev = resolve_device(device)
    identity = {"format": _FORMAT_VERSION, "n_total": n_total, "start": start, "stop": stop, "batch_size": bs,
                "chunk_size": chunk, "model": _model_digest(model), "key": resume_key}
    progress_path = out_dir / PROGRESS_FILE
    state = _read_json(progress_path)

    if state and state.get("identity") == identity and state.get("status") == "complete" and _final_exists(out_dir):
        progress(1.0, f"{n} rows already extracted")
        return np.load(out_dir / FEATURES_FILE, mmap_mode="r"), np.load(out_dir / LOGITS_FILE, mmap_mode="r")

    arrays: dict[str, _NpyRowWriter] | None = None
    done = 0  # rows committed, relative to start
    if state and state.get("identity") == identity and state.get("status") == "running":
        try:
            arrays = _open_writers(out_dir)
            if arrays["features"].shape != (n, state["dim"]) or arrays["logits"].shape != (n, state["num_classes"]) \
                    or arrays["labels"].shape != (n,):
                for w in arrays.values():
                    w.close()
                arrays = None
            else:
                done = int(state["done"])
        except (FileNotFoundError, ValueError, KeyError, OSError):
            arrays = None
    if arrays is None:
        done = 0
        for f in out_dir.glob("*.partial.npy"):
            f.unlink()

    was_training = model.training
    model.eval()
    model.to(dev)
    pin = dev.type == "cuda"
    bounds = _batch_bounds(start + done, stop, bs)
    t0 = time.perf_counter()
    rows_this_run = 0
    try:
        with torch.inference_mode():
            for x, y in _iter_batches(dataset, bounds, num_workers=cfg.num_workers, pin_memory=pin):
                lo = start + done + rows_this_run  # absolute dataset index of this batch
                hi = lo + x.shape[0]
                x = x.to(dev, non_blocking=pin)
                with _autocast(dev, cfg.amp):
                    feats = model.features(x)
                if feats.ndim != 2 or feats.shape[0] != x.shape[0]:
                    raise SpurAuditError(f"model.features returned shape {tuple(feats.shape)}; expected "
                                         f"(batch={x.shape[0]}, D)")
                feats = feats.float()
                logits = model.forward_head(feats).float()  # (B, K), autocast off
                feats16 = feats.to(torch.float16).cpu().numpy()
                logits32 = logits.cpu().numpy()
                if arrays is None:  # first batch of a fresh run: now D and K are known
                    dim, k = feats16.shape[1], logits32.shape[1]
                    arrays = _open_writers(out_dir, {"features": (n, dim), "logits": (n, k), "labels": (n,)})
                    _write_json_atomic(progress_path, {"identity": identity, "status": "running", "done": 0,
                                                       "dim": dim, "num_classes": k})
                r0, r1 = lo - start, hi - start
                arrays["features"].write(r0, feats16)
                arrays["logits"].write(r0, logits32)
                arrays["labels"].write(r0, y.cpu().numpy().astype(np.int64).reshape(-1) if y is not None
                                       else np.full(r1 - r0, -1, np.int64))
                rows_this_run += hi - lo
                committed = done + rows_this_run
                if (hi % chunk == 0) or hi == stop:  # chunk boundary (global) or the end: commit
                    for arr in arrays.values():
                        arr.commit()
                    _write_json_atomic(progress_path, {"identity": identity, "status": "running", "done": committed,
                                                       "dim": int(arrays["features"].shape[1]),
                                                       "num_classes": int(arrays["logits"].shape[1])})
                rate = rows_this_run / max(time.perf_counter() - t0, 1e-9)
                progress(committed / n, f"{committed}/{n} rows ({rate:.0f}/s)")
    finally:
        model.train(was_training)
        if arrays is not None:
            for arr in arrays.values():
                arr.close()

    assert arrays is not None
    dim, k = int(arrays["features"].shape[1]), int(arrays["logits"].shape[1])
    for fname in (FEATURES_FILE, LOGITS_FILE, LABELS_FILE):
        os.replace(_partial(out_dir, fname), out_dir / fname)
    from core.workspace import _fsync_dir

    _fsync_dir(out_dir)
    _write_json_atomic(progress_path, {"identity": identity, "status": "complete", "done": n, "dim": dim,
                                       "num_classes": k})
    progress(1.0, f"{n} rows extracted")
    return np.load(out_dir / FEATURES_FILE, mmap_mode="r"), np.load(out_dir / LOGITS_FILE, mmap_mode="r")


# --------------------------------------------------------------------------------------------------
# workspace + torchrun
# --------------------------------------------------------------------------------------------------
@dataclass
class DistInfo:
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


def _resume_key(ws: "Workspace", dataset: str, model: str, split: str) -> str:
    rec = ws.get_dataset(dataset)
    stamp = ""
    try:
        st = rec.manifest_path.stat()
        stamp = f"{st.st_size}:{st.st_mtime_ns}"
    except OSError:
        pass
    return f"{dataset}/{split}/{model}/{stamp}"


def _merge_shards(ws: "Workspace", out_rel: str, shard_rels: list[str], *, n: int) -> tuple[int, int]:
    """Concatenate shard arrays (in rank order) into ``out_rel``'s final files; streamed, atomic."""
    parts = []
    for rel in shard_rels:
        d = ws.path(rel)
        if not _final_exists(d):
            continue  # an empty shard
        parts.append({k: np.load(d / f, mmap_mode="r") for k, f in
                      (("features", FEATURES_FILE), ("logits", LOGITS_FILE), ("labels", LABELS_FILE))})
    if not parts:
        raise SpurAuditError("no shard produced any rows; is the split empty?")
    dim, k = parts[0]["features"].shape[1], parts[0]["logits"].shape[1]
    total = sum(p["features"].shape[0] for p in parts)
    if total != n:
        raise SpurAuditError(f"shards hold {total} rows but the split has {n}; re-run the extraction")
    shapes = {"features": ((n, dim), FEATURE_DTYPE, FEATURES_FILE), "logits": ((n, k), LOGIT_DTYPE, LOGITS_FILE),
              "labels": ((n,), np.int64, LABELS_FILE)}
    block = 65536
    for key, (shape, dtype, fname) in shapes.items():
        with ws.atomic_path(f"{out_rel}/{fname}") as tmp:
            out = _NpyRowWriter(tmp, create_shape=shape, dtype=dtype)
            try:
                row = 0
                for p in parts:
                    src = p[key]
                    for s in range(0, src.shape[0], block):
                        piece = np.asarray(src[s:s + block])
                        out.write(row, piece)
                        row += piece.shape[0]
                out.commit()
            finally:
                out.close()
    return int(dim), int(k)


def extract_to_workspace(ws: "Workspace", dataset: str, model: str, split: str, *, batch_size: int = 256,
                         device: str = "auto", num_workers: int = 0, chunk_size: int = 4096, amp: str = "auto",
                         module: nn.Module | None = None, data: Dataset | None = None,
                         progress: ProgressFn | None = None) -> "FeatureSetRecord":
    """Extract split ``split`` of registered dataset ``dataset`` with registered model ``model`` into
    ``features/<dataset>/<model>/<split>/`` and record the feature set.

    The model is loaded with ``core.models.load_model(ws.get_model(model).checkpoint)`` and the data
    from ``core.data.load_manifest(ws, dataset).split(split).to_dataset()`` unless ``module``/``data``
    are given (rows of ``data`` must align with the manifest split). Resumable (see
    `extract_features`). Under torchrun (WORLD_SIZE > 1) every rank calls this; each extracts its
    shard, rank 0 merges and records, and all ranks return the record.
    """
    progress = progress or null_progress
    ws.get_dataset(dataset)
    ws.get_model(model)
    if not str(split).strip():
        raise SpurAuditError("split is empty; use train, val or test")
    dist_info = DistInfo.from_env()
    dev = resolve_device(device)
    if dist_info.distributed and dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", dist_info.local_rank)
    if module is None:
        from core.models import load_model

        module = load_model(ws.get_model(model).checkpoint, device="cpu")
    if data is None:
        from core.data import load_manifest

        manifest = load_manifest(ws, dataset).split(split)
        if len(manifest) == 0:
            raise SpurAuditError(f"split {split!r} of dataset {dataset!r} is empty; pick another split")
        data = manifest.to_dataset()
    n = len(data)  # type: ignore[arg-type]
    if n == 0:
        raise SpurAuditError(f"split {split!r} of dataset {dataset!r} is empty; pick another split")
    out_rel = ws.feature_dir(dataset, model, split)
    key = _resume_key(ws, dataset, model, split)

    if not dist_info.distributed:
        feats, logits = extract_features(module, data, out_dir=ws.path(out_rel), batch_size=batch_size, device=dev,
                                         num_workers=num_workers, chunk_size=chunk_size, amp=amp, resume_key=key,
                                         progress=progress)
        return ws.add_feature_set(dataset=dataset, model=model, split=split, features_rel=f"{out_rel}/{FEATURES_FILE}",
                                  logits_rel=f"{out_rel}/{LOGITS_FILE}", n=n, dim=int(feats.shape[1]),
                                  num_classes=int(logits.shape[1]))

    import torch.distributed as dist

    with _process_group():
        world, rank = dist_info.world_size, dist_info.rank
        shard_rels = [f"{out_rel}/shards/{world}-{r}" for r in range(world)]
        lo, hi = shard_range(n, rank=rank, world_size=world, batch_size=batch_size)
        extract_features(module, data, out_dir=ws.path(shard_rels[rank]), batch_size=batch_size, device=dev,
                         num_workers=num_workers, chunk_size=chunk_size, index_range=(lo, hi), amp=amp,
                         resume_key=key, progress=sub_progress(progress, 0.0, 0.95))
        dist.barrier()
        if rank == 0:
            progress(0.95, f"merging {world} shards")
            dim, k = _merge_shards(ws, out_rel, shard_rels, n=n)
            ws.add_feature_set(dataset=dataset, model=model, split=split, features_rel=f"{out_rel}/{FEATURES_FILE}",
                               logits_rel=f"{out_rel}/{LOGITS_FILE}", n=n, dim=dim, num_classes=k)
            shutil.rmtree(ws.path(f"{out_rel}/shards"), ignore_errors=True)
            # leftovers of an earlier single-process run no longer match the merged files
            for stale in [ws.path(f"{out_rel}/{PROGRESS_FILE}"), *ws.path(out_rel).glob("*.partial.npy")]:
                stale.unlink(missing_ok=True)
        dist.barrier()
        progress(1.0, "done")
        return ws.get_feature_set(dataset, model, split)


@contextlib.contextmanager
def _process_group() -> Iterator[None]:
    """Join torchrun's process group (gloo: used for barriers only; compute stays on each rank's
    device) unless already joined; leave it on exit when this call joined it."""
    import torch.distributed as dist

    if not DistInfo.from_env().distributed or dist.is_initialized():
        yield
        return
    dist.init_process_group(backend="gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def extract_splits(ws: "Workspace", dataset: str, model: str, splits: Sequence[str] | str = "all", *,
                   batch_size: int = 256, device: str = "auto", num_workers: int = 0, chunk_size: int = 4096,
                   amp: str = "auto", progress: ProgressFn | None = None) -> list["FeatureSetRecord"]:
    """Extract several splits ("all" = every non-empty split of the manifest); returns their records."""
    if splits == "all" or splits == ["all"]:
        from core.data import load_manifest

        names = list(load_manifest(ws, dataset).splits())
    else:
        names = [splits] if isinstance(splits, str) else list(splits)
    if not names:
        raise SpurAuditError(f"dataset {dataset!r} has no non-empty split to extract")
    with _process_group():  # one group for all splits under torchrun
        records = _extract_each(ws, dataset, model, names, batch_size=batch_size, device=device,
                                num_workers=num_workers, chunk_size=chunk_size, amp=amp, progress=progress)
    return records


def _extract_each(ws: "Workspace", dataset: str, model: str, names: list[str], *, batch_size: int, device: str,
                  num_workers: int, chunk_size: int, amp: str, progress: ProgressFn | None) -> list["FeatureSetRecord"]:
    records = []
    for i, name in enumerate(names):
        part = sub_progress(progress, i / len(names), (i + 1) / len(names))
        records.append(extract_to_workspace(ws, dataset, model, name, batch_size=batch_size, device=device,
                                            num_workers=num_workers, chunk_size=chunk_size, amp=amp,
                                            progress=lambda f, m, _p=part, _s=name: _p(f, f"{_s}: {m}")))
    return records
