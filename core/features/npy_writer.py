"""`NpyRowWriter`: rows written into a preallocated ``.npy`` file by position.

Feature extraction fills its (N, D) arrays chunk by chunk and the torchrun merge streams shards into
one file; both write through this class. Unlike a writable memmap, written pages are not mapped into
this process, so the writer's resident memory stays flat however large N is.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import SpurAuditError


class NpyRowWriter:
    """Writes rows into a ``.npy`` file with positional writes (``os.pwrite``); ``commit`` fsyncs.

    ``create_shape``/``dtype`` given: the file is created (header + sparse body, via
    ``np.lib.format.open_memmap``); otherwise an existing C-ordered ``.npy`` is reopened and its shape
    and dtype read from its header. Rows ``[row, row + len(values))`` of ``write`` are rows of the
    array (shape ``(N, *shape[1:])``). Call ``close`` when done (the file descriptor stays open until then).
    """

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


__all__ = ["NpyRowWriter"]
