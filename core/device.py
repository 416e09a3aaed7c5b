"""Device selection: device is a parameter everywhere, ``"auto"`` picks cuda, then mps, then cpu."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


# --------------------------------------------------------------------------------------------------
# the GPUs torch sees (issue 14): the device choice of the dashboard and the CLI lists them with free memory
# --------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device as torch sees it (indices are those inside ``CUDA_VISIBLE_DEVICES``)."""

    index: int
    name: str
    free_bytes: int | None      # None when the driver could not be asked (e.g. the device is busy/lost)
    total_bytes: int

    @property
    def device(self) -> str:
        return f"cuda:{self.index}"

    def label(self) -> str:
        gib = 1024 ** 3
        total = f"{self.total_bytes / gib:.1f} GiB"
        free = "free memory unknown" if self.free_bytes is None else f"{self.free_bytes / gib:.1f} of {total} free"
        return f"{self.device} · {self.name} ({free})"


def list_gpus(cuda: Any = None) -> list[GpuInfo]:
    """Every CUDA device torch sees with its name and free/total memory (``torch.cuda.mem_get_info``).

    ``cuda``: the ``torch.cuda`` module (default) or any object with ``is_available``, ``device_count``,
    ``get_device_properties(i)`` (``.name``, ``.total_memory``) and ``mem_get_info(i)`` — tests pass a fake.
    An empty list without CUDA.
    """
    cuda = torch.cuda if cuda is None else cuda
    try:
        if not cuda.is_available():
            return []
        count = int(cuda.device_count())
    except Exception:  # noqa: BLE001 - a broken driver means "no usable GPU", not a crash of the picker
        return []
    out = []
    for i in range(count):
        props = cuda.get_device_properties(i)
        try:
            free, total = cuda.mem_get_info(i)
            free, total = int(free), int(total)
        except Exception:  # noqa: BLE001 - busy or lost device: listed, free memory unknown
            free, total = None, int(getattr(props, "total_memory", 0))
        out.append(GpuInfo(index=i, name=str(getattr(props, "name", f"GPU {i}")), free_bytes=free, total_bytes=total))
    return out


def device_options(cuda: Any = None, *, mps: bool | None = None) -> dict[str, str]:
    """{device value: label} for a device picker: "auto", "cpu", each GPU with its free memory, and "mps"
    on Apple silicon. Values are what `core.jobs.submit(device=...)` takes."""
    gpus = list_gpus(cuda)
    out = {"auto": "auto (cuda:0)" if gpus else "auto (cpu: no GPU visible)", "cpu": "cpu"}
    out.update({g.device: g.label() for g in gpus})
    if mps is None:
        backend = getattr(torch.backends, "mps", None)
        mps = bool(backend is not None and backend.is_available())
    if mps:
        out["mps"] = "mps (Apple GPU)"
    return out
