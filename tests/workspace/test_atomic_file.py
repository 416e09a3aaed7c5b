"""`core.workspace.atomic_file` / `fsync_dir`: atomic replacement of a file at a plain path."""
from __future__ import annotations

import os

import pytest

from core.workspace import atomic_file, fsync_dir


def test_atomic_file_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path):
    target = tmp_path / "sub" / "state.json"
    with atomic_file(target) as tmp:
        assert tmp.parent == target.parent and tmp.suffix == ".json" and not target.exists()
        tmp.write_text("one")
    assert target.read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("two")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "one" and os.listdir(target.parent) == ["state.json"]
    fsync_dir(target.parent)   # a no-op where unsupported; never raises
