"""Issue 15, item 9: ``label export | head`` exits quietly (no BrokenPipeError traceback)."""
from __future__ import annotations

import os
import subprocess
import sys

from core.workspace import Workspace
from tests.workspace._cli import REPO


def test_export_into_a_closed_pipe_exits_quietly(tmp_path):
    ws = Workspace(tmp_path / "ws")
    ws.add_dataset("d", manifest_rel="m", root_rel="r", source="x", class_names=["a", "b"])
    ws.add_model("m", dataset="d", arch="small_cnn", checkpoint_rel="models/m/model.pt")
    ws.add_labels([dict(dataset="d", model="m", class_index=i % 2, feature=i, answer="core", annotator="a" * 40)
                   for i in range(20000)])                # far more than a pipe buffer holds
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = (f"{sys.executable} -m core label export --workspace {ws.root} --dataset d --model m | head -n 2; "
           "echo rc=${PIPESTATUS[0]}")
    proc = subprocess.run(["bash", "-c", cmd], env=env, capture_output=True, text=True, timeout=120)
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, proc.stdout[:300]
    assert proc.stderr == "", proc.stderr
    assert lines[-1] == "rc=141"                          # 128 + SIGPIPE, like any Unix filter
