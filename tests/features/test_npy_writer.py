"""`NpyRowWriter` (`core.features.npy_writer`): positional row writes give the file `np.save` would."""
from __future__ import annotations

import numpy as np
import pytest

from core.errors import SpurAuditError
from core.features.npy_writer import NpyRowWriter


def test_rows_written_out_of_order_equal_np_save(tmp_path):
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((37, 5)).astype(np.float16)
    w = NpyRowWriter(tmp_path / "a.npy", create_shape=ref.shape, dtype=np.float16)
    for lo in (30, 0, 10, 20):          # any order: each write lands at its rows
        w.write(lo, ref[lo:lo + 10])
    w.commit()
    w.close()
    np.save(tmp_path / "b.npy", ref)
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "b.npy").read_bytes()

    again = NpyRowWriter(tmp_path / "a.npy")   # reopened: shape and dtype read from the header
    assert again.shape == (37, 5) and again.dtype == np.float16
    again.write(36, np.zeros((1, 5), np.float16))
    again.close()
    assert np.load(tmp_path / "a.npy")[36].tolist() == [0.0] * 5
    with pytest.raises(SpurAuditError, match="do not fit"):
        NpyRowWriter(tmp_path / "a.npy").write(0, np.zeros((1, 4), np.float16))
