"""Issue 15, item 9: artifacts (reports, checkpoints, arrays, JSON, folders) are written following the
process umask, like any file the user creates, so a team can share a workspace (``mkstemp`` alone
gives 0600)."""
from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from core.workspace import Workspace


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_artifacts_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        ws = Workspace(tmp_path / "ws")
        written = [ws.write_text("reports/r.html", "<html></html>"), ws.write_json("runs/1/metrics.json", {"a": 1}),
                   ws.save_npy("features/d/m/val/features.npy", np.zeros(3)),
                   ws.save_torch("models/m/model.pt", {"w": 1})]
        with ws.atomic_dir("datasets/d") as tmp:
            (tmp / "manifest.parquet").write_bytes(b"x")
    finally:
        os.umask(old)
    for path in written:
        assert _mode(path) == 0o666 & ~umask, path
    assert _mode(ws.root / "datasets/d") == 0o777 & ~umask
