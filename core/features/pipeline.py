"""The input pipeline for photo datasets (issue 14): decode and resize in ``DataLoader`` workers, uint8
batches in pinned memory, non-blocking copies, ``channels_last`` and AMP (bf16/fp16) on CUDA,
``torch.compile`` as an option.

- `PhotoDataset` decodes an image file with PIL (JPEG draft mode: the decoder scales by 1/2, 1/4 or 1/8
  while decoding when the target is that much smaller, which is most of the decode cost saved on large
  photos), resizes the shorter side to ``resize_size`` and centre-crops ``image_size`` (the torchvision
  ImageNet evaluation recipe: 256 -> 224), and yields ``(uint8 (3, S, S), label, index)``. uint8 batches
  are 4x smaller to pin and copy than float32; they are scaled to [0, 1] on the device.
- `photo_loader` builds the DataLoader (``num_workers`` default `default_workers()`: the cores this
  process may use, minus one for the main process, at most 16).
- `prepare_model` puts a model on the device in eval mode (channels_last on CUDA, optionally compiled);
  `to_device` moves a batch (non-blocking from pinned memory) and scales uint8; `autocast` is the AMP
  context (bf16 where supported, else fp16; off on CPU).
- `predict_classes`: logits-only predictions over a dataset (the study's per-model pass) with all of the
  above.

Feature extraction into the resumable, torchrun-sharded store (`core.features.extract`) takes the same
``PhotoDataset`` (via ``extract_splits(..., image_size=...)``) and the same device options.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from core.device import resolve_device
from core.errors import SpurAuditError, check_choice
from core.progress import ProgressFn, null_progress

AMP_CHOICES = ("auto", "bf16", "fp16", "off")

__all__ = ["AMP_CHOICES", "PipelineConfig", "PhotoDataset", "default_workers", "photo_loader", "prepare_model",
           "to_device", "autocast", "predict_classes", "decode_resize"]


def default_workers() -> int:
    """DataLoader workers by default: the CPUs this process may use minus one (for the main process), 1..16."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    return int(min(16, max(1, cores - 1)))


@dataclass
class PipelineConfig:
    """image_size: centre crop side (None = images as stored; then all must share one size).
    resize_size: shorter side before the crop (None = round(image_size * 256 / 224)).
    num_workers: decode processes (None = `default_workers()`; 0 = decode in the main process).
    amp: autocast on CUDA (auto = bf16 where supported else fp16; off = fp32). channels_last: NHWC on
    CUDA. compile: ``torch.compile`` the model (CUDA or CPU; first batches are slow while it compiles)."""

    image_size: int | None = 224
    resize_size: int | None = None
    batch_size: int = 256
    num_workers: int | None = None
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    prefetch_factor: int = 4

    def validate(self) -> "PipelineConfig":
        if self.image_size is not None and int(self.image_size) < 8:
            raise SpurAuditError(f"image_size must be >= 8 pixels (e.g. 224), got {self.image_size}")
        if self.resize_size is not None and self.image_size is not None and int(self.resize_size) < int(self.image_size):
            raise SpurAuditError(f"resize_size ({self.resize_size}) must be >= image_size ({self.image_size})")
        if int(self.batch_size) < 1:
            raise SpurAuditError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.num_workers is not None and int(self.num_workers) < 0:
            raise SpurAuditError(f"num_workers must be >= 0, got {self.num_workers}")
        if int(self.prefetch_factor) < 1:
            raise SpurAuditError("prefetch_factor must be >= 1")
        check_choice("amp", self.amp, AMP_CHOICES)
        return self

    @property
    def workers(self) -> int:
        return default_workers() if self.num_workers is None else int(self.num_workers)

    @property
    def resize(self) -> int | None:
        if self.image_size is None:
            return None
        return int(self.resize_size) if self.resize_size is not None else int(round(int(self.image_size) * 256 / 224))


def decode_resize(path: str | Path, *, image_size: int | None, resize_size: int | None) -> np.ndarray:
    """(S, S, 3) uint8: decode (JPEG draft mode when much larger than needed), resize the shorter side to
    ``resize_size`` (bilinear, antialiased), centre-crop ``image_size``. ``image_size`` None: as stored."""
    with Image.open(path) as img:
        if image_size is None:
            return np.array(img.convert("RGB"), dtype=np.uint8)
        target = int(resize_size or image_size)
        if img.format == "JPEG":
            w, h = img.size
            scale = target / min(w, h)
            img.draft("RGB", (max(1, int(w * scale)), max(1, int(h * scale))))  # scales by 1/2^k >= target
        img = img.convert("RGB")
        w, h = img.size
        scale = target / min(w, h)
        nw, nh = max(target, round(w * scale)), max(target, round(h * scale))
        img = img.resize((nw, nh), Image.BILINEAR, reducing_gap=None)
        s = int(image_size)
        left, top = (nw - s) // 2, (nh - s) // 2
        img = img.crop((left, top, left + s, top + s))
        return np.array(img, dtype=np.uint8)          # a writable copy (torch.from_numpy needs one)


class PhotoDataset(Dataset):
    """Image files -> ``(uint8 (3, S, S), label, index)``; decoding and resizing happen in ``__getitem__``,
    i.e. in the DataLoader workers."""

    def __init__(self, paths: Sequence[str | Path], labels: Sequence[int] | np.ndarray, *,
                 image_size: int | None = 224, resize_size: int | None = None) -> None:
        if len(paths) != len(labels):
            raise SpurAuditError(f"{len(paths)} image paths but {len(labels)} labels")
        self.paths = [str(p) for p in paths]
        self.labels = np.asarray(labels, dtype=np.int64)
        self.image_size = None if image_size is None else int(image_size)
        self.resize_size = resize_size if resize_size is not None or image_size is None \
            else int(round(int(image_size) * 256 / 224))

    @classmethod
    def from_manifest(cls, manifest, *, image_size: int | None = 224, resize_size: int | None = None) -> "PhotoDataset":
        """The rows of a `core.data.manifest.Manifest` (paths under its root) in row order."""
        return cls([manifest.root / p for p in manifest.df["path"]], manifest.labels, image_size=image_size,
                   resize_size=resize_size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int]:
        try:
            a = decode_resize(self.paths[i], image_size=self.image_size, resize_size=self.resize_size)
        except (OSError, ValueError) as exc:
            raise SpurAuditError(f"could not read image {self.paths[i]!r}: {exc}; fix or remove the file "
                                 "(python -m core dataset validate --skip-bad)") from None
        return torch.from_numpy(a).permute(2, 0, 1), int(self.labels[i]), int(i)  # (3, S, S)


def photo_loader(dataset: Dataset, cfg: PipelineConfig, device: torch.device, *,
                 indices: Sequence[int] | None = None) -> DataLoader:
    """A DataLoader over ``dataset`` (optionally only ``indices``, in order) with ``cfg.workers`` decode
    processes and pinned memory on CUDA."""
    workers = cfg.workers
    kwargs = dict(num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=False)
    if workers > 0:
        kwargs["prefetch_factor"] = int(cfg.prefetch_factor)
    if indices is None:
        return DataLoader(dataset, batch_size=int(cfg.batch_size), shuffle=False, **kwargs)
    idx = list(indices)
    bs = int(cfg.batch_size)
    return DataLoader(dataset, batch_sampler=[idx[i:i + bs] for i in range(0, len(idx), bs)], **kwargs)


def prepare_model(model: nn.Module, device: torch.device, cfg: PipelineConfig) -> nn.Module:
    """``model`` in eval mode on ``device``; channels_last on CUDA when asked; compiled when asked
    (returns the compiled module — call it, keep the original for its attributes)."""
    model.eval().to(device)
    if cfg.channels_last and device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    if cfg.compile:
        return torch.compile(model)
    return model


def to_device(x: torch.Tensor, device: torch.device, cfg: PipelineConfig) -> torch.Tensor:
    """A batch on ``device`` as float32 in [0, 1] (uint8 scaled there, after a non-blocking copy from
    pinned memory), channels_last on CUDA when asked."""
    x = x.to(device, non_blocking=device.type == "cuda")
    x = x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()
    if cfg.channels_last and device.type == "cuda" and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def autocast(device: torch.device, amp: str) -> contextlib.AbstractContextManager:
    """Autocast on CUDA (bf16 where supported, else fp16, or as asked); nothing on CPU/MPS or with "off"."""
    if device.type != "cuda" or amp == "off":
        return contextlib.nullcontext()
    if amp == "auto":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def _batches(loader: DataLoader) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
    for batch in loader:
        if isinstance(batch, (list, tuple)):
            yield batch[0], (batch[1] if len(batch) > 1 and torch.is_tensor(batch[1]) else None)
        else:
            yield batch, None


@torch.inference_mode()
def predict_classes(model: nn.Module, dataset: Dataset, *, config: PipelineConfig | None = None,
                    device: str | torch.device = "auto", progress: ProgressFn | None = None) -> np.ndarray:
    """(N,) int64 predicted class (argmax of ``model(x)``) for every item of ``dataset``, in order; only
    logits are computed (no features stored)."""
    cfg = (config or PipelineConfig()).validate()
    dev = resolve_device(device)
    progress = progress or null_progress
    net = prepare_model(model, dev, cfg)
    n = len(dataset)
    out = np.empty(n, dtype=np.int64)
    done = 0
    for x, _ in _batches(photo_loader(dataset, cfg, dev)):
        xb = to_device(x, dev, cfg)
        with autocast(dev, cfg.amp):
            logits = net(xb)
        out[done:done + len(xb)] = logits.float().argmax(1).cpu().numpy()
        done += len(xb)
        progress(done / max(n, 1), f"predict {done}/{n}")
    if done != n:
        raise SpurAuditError(f"the data loader yielded {done} of {n} items")
    return out
