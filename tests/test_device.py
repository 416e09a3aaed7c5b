"""`core.device`: the GPU listing behind the device choice (issue 14), tested with a fake ``torch.cuda``
(this machine has no GPU)."""
from __future__ import annotations

from types import SimpleNamespace

import pytest

from core.device import device_options, list_gpus, resolve_device
from core.errors import SpurAuditError

GIB = 1024 ** 3


class FakeCuda:
    def __init__(self, gpus: list[tuple[str, int, int | None]], available: bool = True):
        self.gpus, self.available = gpus, available

    def is_available(self) -> bool:
        return self.available

    def device_count(self) -> int:
        return len(self.gpus)

    def get_device_properties(self, i: int):
        name, total, _ = self.gpus[i]
        return SimpleNamespace(name=name, total_memory=total)

    def mem_get_info(self, i: int):
        _, total, free = self.gpus[i]
        if free is None:
            raise RuntimeError("CUDA error: device busy")
        return free, total


def test_lists_every_gpu_with_free_memory() -> None:
    fake = FakeCuda([("NVIDIA H200", 140 * GIB, 120 * GIB), ("NVIDIA A100", 80 * GIB, 8 * GIB)])
    gpus = list_gpus(fake)
    assert [g.device for g in gpus] == ["cuda:0", "cuda:1"]
    assert gpus[1].free_bytes == 8 * GIB and gpus[1].total_bytes == 80 * GIB
    opts = device_options(fake, mps=False)
    assert list(opts) == ["auto", "cpu", "cuda:0", "cuda:1"]
    assert opts["cuda:0"] == "cuda:0 · NVIDIA H200 (120.0 of 140.0 GiB free)"
    assert opts["cuda:1"] == "cuda:1 · NVIDIA A100 (8.0 of 80.0 GiB free)"
    assert opts["auto"] == "auto (cuda:0)"


def test_busy_gpu_is_listed_with_unknown_free_memory() -> None:
    gpus = list_gpus(FakeCuda([("GPU X", 16 * GIB, None)]))
    assert gpus[0].free_bytes is None and "free memory unknown" in gpus[0].label()


def test_no_cuda_lists_nothing() -> None:
    assert list_gpus(FakeCuda([("x", 1, 1)], available=False)) == []
    assert device_options(FakeCuda([], available=False), mps=False) == {"auto": "auto (cpu: no GPU visible)",
                                                                       "cpu": "cpu"}
    assert device_options(FakeCuda([], available=False), mps=True)["mps"].startswith("mps")


def test_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    assert len(list_gpus()) == torch.cuda.device_count()
    if not torch.cuda.is_available():
        with pytest.raises(SpurAuditError, match="CUDA is not available"):
            resolve_device("cuda:0")
