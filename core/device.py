"""Device selection: device is a parameter everywhere, ``"auto"`` picks cuda, then mps, then cpu."""
from __future__ import annotations

import torch

from core.errors import SpurAuditError


def resolve_device(device: "str | torch.device | None" = "auto") -> torch.device:
    """Turn ``"auto"``/``"cpu"``/``"cuda"``/``"cuda:1"``/``"mps"`` into a `torch.device`.

    ``"auto"`` (or None) prefers CUDA, then Apple MPS, then CPU. Asking for CUDA on a machine
    without it raises `SpurAuditError` instead of failing later inside a kernel.
    """
    if isinstance(device, torch.device):
        return device
    name = (device or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SpurAuditError(f"device {device!r} requested but CUDA is not available; use --device cpu or auto")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise SpurAuditError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps") from exc
